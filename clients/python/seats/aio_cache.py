"""The asyncio twin of ``seats.cache.SeatCache``: the same live copy of one account's seat
assignments, loaded and followed by tasks of the running event loop.

    async with AsyncSeatsClient(target, actor=service_user_id) as client:
        async with AsyncSeatCache(client, account_id) as cache:
            tier = await cache.tier_of(user_id, "sales")

``seats.cache`` explains how the copy is made exact, how the cache tells an idle healthy watch
from a broken one (a CheckSeats heartbeat that confirms the sequence), how it resumes a watch the
server ends at its longest life (WATCH_EXPIRED) without reloading, and why ``tier_of`` never
answers from memory it cannot confirm within ``max_silence``. Use one cache from the event loop
that made it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import TypeAlias

import grpc
import grpc.aio

from . import requests
from ._retry import NO_RETRY, RetryPolicy
from .aio import AsyncSeatsClient
from .cache import (
    _NO_TIER,
    DEFAULT_BACKOFF,
    DEFAULT_MAX_SILENCE,
    PAGE_SIZE,
    PROBE_HUB,
    PROBE_USER_ID,
    CacheStatus,
    Clock,
    ForcedResync,
    State,
    Tier,
    View,
    check_arguments,
    first_message_timeout,
    resumable,
    watch_request,
)
from .v1 import seat_service_pb2

_WatchCall: TypeAlias = grpc.aio.UnaryStreamCall[
    seat_service_pb2.WatchSeatEventsRequest, seat_service_pb2.WatchSeatEventsResponse
]


class AsyncSeatCache(CacheStatus):
    """A live copy of one account's seat assignments, kept by two tasks of the running event
    loop (the load and watch, and the heartbeat). Make it inside a coroutine."""

    def __init__(
        self,
        client: AsyncSeatsClient,
        account_id: str,
        *,
        max_silence: float = DEFAULT_MAX_SILENCE,
        heartbeat_interval: float | None = None,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        page_size: int = PAGE_SIZE,
        clock: Clock = time.monotonic,
    ) -> None:
        """The arguments of ``SeatCache``, with an ``AsyncSeatsClient``. The tasks start at once."""
        self._heartbeat_interval = check_arguments(max_silence, heartbeat_interval)
        self._state = State(account_id, max_silence, clock)
        self._client = client
        probe = client.with_actor(client.actor)
        probe.retry = NO_RETRY
        probe.timeout = min(max_silence, client.timeout) if client.timeout else max_silence
        self._probe = probe
        self._backoff = backoff
        self._page_size = page_size
        self._waiters: set[asyncio.Future[None]] = set()
        self._watch: asyncio.Task[None] | None = None
        self._watched_for = 0.0
        self._tasks = [
            asyncio.create_task(self._follow(), name=f"seat-cache-follow-{account_id}"),
            asyncio.create_task(self._beat(), name=f"seat-cache-heartbeat-{account_id}"),
        ]

    # ---- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AsyncSeatCache:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancels the tasks and waits for them. Afterwards every ``tier_of`` asks CheckSeats."""
        self._state.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._notify()

    # ---- reading ------------------------------------------------------------------------------

    async def tier_of(self, user_id: str, hub: requests.HubLike) -> Tier:
        """``SeatCache.tier_of``: from memory while the copy is confirmed within ``max_silence``
        (no await happens then), else from CheckSeats."""
        state = self._state
        try:
            h = state.hubs[hub]
        except KeyError:
            h = state.hub(hub)
        view = state.published
        if state.clock() - view.confirmed_at <= state.max_silence:
            holders = view.by_hub.get(h)
            return holders.get(user_id, _NO_TIER) if holders is not None else _NO_TIER
        return await self._check_remote(user_id, h)

    async def _check_remote(self, user_id: str, hub: int) -> Tier:
        sent = self._state.clock()
        response = await self._client.check_seats(self._state.account_id, hub, [user_id])
        self._state.remote_checks += 1
        self._state.confirm(response.sequence, sent)
        self._notify()
        return response.tiers[0]

    async def wait_until(self, predicate: Callable[[AsyncSeatCache], bool], timeout: float | None = None) -> bool:
        """Waits until ``predicate(cache)`` holds, checking it again at every change of the
        cache; returns its last value at the timeout."""
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                while not predicate(self):
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.add(waiter)
                    try:
                        await waiter
                    finally:
                        self._waiters.discard(waiter)
        except TimeoutError:
            return predicate(self)
        return True

    async def wait_for_sequence(self, sequence: int, timeout: float | None = None) -> bool:
        """Waits until the copy readers see has applied ``sequence``; False at the timeout."""
        return await self.wait_until(lambda cache: cache.sequence >= sequence, timeout)

    async def wait_until_healthy(self, timeout: float | None = None) -> bool:
        """Waits until the cache is ``healthy``; False at the timeout."""
        return await self.wait_until(lambda cache: cache.healthy, timeout)

    def _notify(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)

    # ---- the background work ------------------------------------------------------------------

    async def _follow(self) -> None:
        failures = 0
        while True:
            self._watched_for = 0.0
            try:
                await self._load_and_watch()
            except Exception as error:
                self._state.failed(error)
            failures = 1 if self._watched_for > self._state.max_silence else failures + 1
            await asyncio.sleep(self._backoff.delay(min(failures, 8)))

    async def _sequence_now(self) -> tuple[int, float]:
        sent = self._state.clock()
        response = await self._probe.check_seats(self._state.account_id, PROBE_HUB, [PROBE_USER_ID])
        return response.sequence, sent

    async def _load_and_watch(self) -> None:
        """``SeatCache._load_and_watch``: the watch opens one event early and its first message
        proves it live before the load; then a task of its own reads it (and the streams that
        resume it), which the heartbeat cancels when the watch is open but not delivering."""
        state = self._state
        state.work = None
        before, _ = await self._sequence_now()
        call = self._open(before)
        watch: asyncio.Task[None] | None = None
        try:
            messages: AsyncIterator[seat_service_pb2.WatchSeatEventsResponse] = call.__aiter__()
            first = await self._first(messages) if before > 0 else None
            assignments = [
                a async for a in self._client.iter_seat_assignments(state.account_id, page_size=self._page_size)
            ]
            after, after_sent = await self._sequence_now()
            view = state.begin(before, assignments, after, after_sent)
            if first is not None:
                state.apply(view, first.event)
            state.watching, state.watch_since = True, state.clock()
            watch = asyncio.create_task(self._read(messages, view))
            self._watch = watch
            self._notify()
            await asyncio.wait({watch})
        finally:
            self._watch = None
            if watch is not None:
                watch.cancel()
            call.cancel()
            if state.watching:
                self._watched_for = state.clock() - state.watch_since
            state.watching = False
            self._notify()
        if watch.cancelled():
            raise state.forced or ForcedResync("the watch was cancelled")
        error = watch.exception()
        if error is not None:
            raise error

    def _open(self, sequence: int) -> _WatchCall:
        """WatchSeatEvents from one event before ``sequence`` (its first message proves it live)."""
        request = watch_request(self._state.account_id, sequence)
        call: _WatchCall = self._client._stubs["SeatService"].WatchSeatEvents(
            request, metadata=self._client._metadata()
        )
        return call

    async def _first(
        self, messages: AsyncIterator[seat_service_pb2.WatchSeatEventsResponse]
    ) -> seat_service_pb2.WatchSeatEventsResponse:
        """A new watch's first message; a watch that sends nothing within the call deadline is cut."""
        try:
            return await asyncio.wait_for(anext(messages), first_message_timeout(self._client.timeout))
        except TimeoutError:
            raise ForcedResync("the new watch sent nothing within the call deadline") from None

    async def _read(self, messages: AsyncIterator[seat_service_pb2.WatchSeatEventsResponse], view: View) -> None:
        """Applies the watch's events to the copy. When the server ends the stream at its longest
        life, the same watch from the last event applied carries on, in this task: cancelling
        it (the heartbeat, close()) cancels the stream it reads at the time."""
        state = self._state
        resumed = None
        try:
            while True:
                try:
                    async for message in messages:
                        state.apply(view, message.event)
                        self._notify()
                    return
                except grpc.RpcError as error:
                    if not resumable(error, view.sequence):
                        raise
                if resumed is not None:
                    resumed.cancel()
                resumed = self._open(view.sequence)
                messages = resumed.__aiter__()
                if view.sequence > 0:
                    first = await self._first(messages)
                    state.apply(view, first.event)
                    self._notify()
        finally:
            if resumed is not None:
                resumed.cancel()

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat_interval)
            try:
                sequence, sent = await self._sequence_now()
            except Exception as error:
                self._state.last_error = error
                continue
            self._state.confirm(sequence, sent)
            watch = self._watch
            if watch is not None and self._state.behind():
                self._state.forced = ForcedResync(
                    f"the watch did not bring, within {self._state.max_silence}s, a sequence CheckSeats named"
                )
                watch.cancel()
            self._notify()
