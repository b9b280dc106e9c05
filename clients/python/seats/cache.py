"""A live, in-memory copy of one account's seat assignments, for services that ask "which tier
of this hub does this user hold?" on their hot path (``SeatCache``; ``AsyncSeatCache`` in
``seats.aio_cache`` is its asyncio twin).

    with SeatsClient(target, actor=service_user_id) as client, SeatCache(client, account_id) as cache:
        if cache.tier_of(user_id, "sales") >= resources_pb2.TIER_PROFESSIONAL:
            ...

How it stays exact
------------------

*Loading at a known sequence.* Each (re)load reads the account's last event sequence ``s1``
(CheckSeats of one id), opens WatchSeatEvents from ``s1 - 1`` and waits for its first message
(event ``s1``, which proves the stream is live: an idle stream sends nothing else, not even
headers), pages every assignment (ListSeatAssignments), reads the sequence again (``s2``), then
applies the watch's events after ``s1``; the server holds them meanwhile. The pages are separate reads, so together
they may mix states between ``s1`` and ``s2``; but every event that changes an assignment sets or
clears one (user, hub) key outright (SEAT_ASSIGNED sets the tier, SEAT_UNASSIGNED,
SEAT_RECLAIMED and USER_DELETED clear it), so replaying the events after ``s1`` over such a mix converges: a key no
event touched after ``s1`` had the same value at every moment the pages could have read it, and
a key some event touched ends with the value of the last such event. Once the replay has
applied ``s2``, the copy is exactly the account's state at the last applied sequence, and only
then does it replace the copy readers see (the previous copy keeps answering meanwhile, within
``max_silence``). When ``s1 == s2`` nothing moved during the load and the copy is exact at once.
This never has to retry a load because writers kept the account busy.

*Following.* Events are applied in sequence order; a sequence that is not the next one (a gap)
makes the cache reload. SEAT_ASSIGNED gives the user ``tier`` in ``hub`` (a move is
SEAT_UNASSIGNED of the old tier, then SEAT_ASSIGNED of the new one); SEAT_UNASSIGNED takes the
user's seat of ``hub``, and so does SEAT_RECLAIMED (the sweep took a seat idle for its pool's
``idle_reclaim_days``); USER_DELETED drops the user; POOL_CLOSED (the free pool at an S6
upgrade, whose holders were released by SEAT_UNASSIGNED events just before it) drops whoever
still holds a seat of that pool. Other events only advance the sequence.

*Telling "idle but healthy" from "broken".* A healthy watch of an idle account sends nothing,
and an open stream proves little (a wedged connection stays "open"). So the cache confirms
itself: every ``heartbeat_interval`` seconds it asks CheckSeats for one made-up id, which answers
the account's last sequence ``S``, read after the question was sent at ``t``. When the copy has
applied ``S`` (at once when idle, a few milliseconds later when busy), every change committed
before ``t`` is in memory: ``t`` becomes the copy's *confirmed* time. Any CheckSeats the cache
makes (loads, fallbacks) confirms the same way. ``staleness`` is now minus that time.

*Never answering from a state known to be stale.* ``tier_of`` answers from memory only while
``staleness <= max_silence``; beyond it (the server is down, the watch broke or fell behind,
the heartbeat cannot get through) it asks CheckSeats (one RPC, through the client you gave,
with its deadline and retries) and raises that call's ``SeatsError`` if it fails. So an answer
from memory reflects every change committed more than ``max_silence`` seconds before the call;
in practice, while healthy, changes arrive within milliseconds of their commit. When a
sequence that CheckSeats named more than ``max_silence`` ago has still not come through an open
watch (the watch is open but not delivering), the cache drops the watch and reloads.

*Resuming.* The server ends every watch at its longest life (``--watch-max-seconds``) with
UNAVAILABLE and the reason WATCH_EXPIRED, whose metadata ``after_sequence`` is the last event it
sent. That is no failure: when it agrees with the last sequence the copy applied, the worker
opens WatchSeatEvents again one event before that sequence, as a load does (the first message,
that event again, proves the new stream live and changes nothing), and goes on applying events
to the same copy: no load, no backoff, no resync counted, no gap and no event applied twice.
The copy stays published and ``watching`` stays true meanwhile. The new stream is the one
``close()`` and the heartbeat cancel, and it is cut like a load's when it sends nothing within
the call deadline; ``watch_since`` keeps the time the first stream of the load opened.

*Resyncing.* A gap, the watch ending any other way (a server restart ends it with UNAVAILABLE),
a WATCH_EXPIRED whose ``after_sequence`` disagrees with the copy, a forced reload, or any error
makes the background worker reload, with jittered exponential backoff (``backoff``), forever,
until ``close()``; ``last_error`` tells what went wrong last.

Readers never lock: ``tier_of`` reads the published copy, a dict per hub that the worker updates
one key at a time (atomic dict operations) or replaces whole. A move is two events, so for the
instant between applying them a reader sees the user without a seat of that hub.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Protocol, TypeAlias

import grpc

from . import errors, requests
from ._retry import NO_RETRY, RetryPolicy
from .client import SeatsClient, watch_expired
from .v1 import resources_pb2 as r
from .v1 import seat_service_pb2

Clock = Callable[[], float]
Tier: TypeAlias = r.Tier.ValueType

PROBE_USER_ID = "seat-cache-probe"
"""The id the cache asks CheckSeats about when it only wants the account's sequence: any
well-formed id will do (an unknown user simply holds no seat)."""
PROBE_HUB = r.HUB_SALES
PAGE_SIZE = 1000
DEFAULT_MAX_SILENCE = 5.0
DEFAULT_BACKOFF = RetryPolicy(max_attempts=1, initial_backoff=0.05, max_backoff=2.0)
"""Delays between reloads: jittered, doubling from 0.05 s up to 2 s."""
MAX_PENDING = 64
NEVER = -math.inf

_ASSIGNED = r.SEAT_EVENT_TYPE_SEAT_ASSIGNED
_UNASSIGNED = r.SEAT_EVENT_TYPE_SEAT_UNASSIGNED
_RECLAIMED = r.SEAT_EVENT_TYPE_SEAT_RECLAIMED
_USER_DELETED = r.SEAT_EVENT_TYPE_USER_DELETED
_POOL_CLOSED = r.SEAT_EVENT_TYPE_POOL_CLOSED
_NO_TIER = r.TIER_UNSPECIFIED


class _Cancellable(Protocol):
    def cancel(self) -> bool: ...


class _WatchStream(_Cancellable, Protocol):
    def __iter__(self) -> Iterator[seat_service_pb2.WatchSeatEventsResponse]: ...


class SequenceGap(Exception):
    """The watch skipped a sequence number: the copy cannot follow it, so it reloads."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected event {expected}, got {got}")
        self.expected, self.got = expected, got


class ForcedResync(Exception):
    """The cache dropped a watch that was open but not delivering: a sequence CheckSeats named
    more than max_silence ago had not come through it, or a new watch sent nothing (not even the
    event it starts with) within the client's call deadline."""


class View:
    """One copy of the account's assignments (hub -> user id -> tier) and how far it is known
    to be exact. Only the worker changes it; readers only look keys up."""

    __slots__ = ("by_hub", "confirmed_at", "event_at", "floor", "pending", "sequence")

    def __init__(self, sequence: int, floor: int) -> None:
        self.by_hub: dict[int, dict[str, Tier]] = {hub: {} for hub in r.Hub.values() if hub}
        self.sequence = sequence
        """The last event applied."""
        self.floor = floor
        """The copy is exact once it has applied this sequence (the one read after its load)."""
        self.confirmed_at = NEVER
        """Every change committed before this clock reading is in the copy."""
        self.event_at = NEVER
        """When the last event was applied."""
        self.pending: list[tuple[int, float]] = []
        """(sequence, sent at) of confirmations waiting for the copy to apply that sequence."""

    @property
    def exact(self) -> bool:
        return self.sequence >= self.floor

    def load(self, assignments: Iterable[r.SeatAssignment]) -> None:
        for a in assignments:
            self.by_hub.setdefault(a.hub, {})[a.user_id] = a.tier

    def apply(self, event: r.SeatEvent, now: float) -> None:
        """Applies the next event; raises SequenceGap when it is not the next one. A repeated
        event (at or below the last applied sequence) changes nothing."""
        if event.sequence <= self.sequence:
            return
        if event.sequence != self.sequence + 1:
            raise SequenceGap(self.sequence + 1, event.sequence)
        kind = event.type
        if kind == _ASSIGNED:
            self.by_hub.setdefault(event.hub, {})[event.user_id] = event.tier
        elif kind in (_UNASSIGNED, _RECLAIMED):  # a reclaimed seat is unassigned, by the sweep
            holders = self.by_hub.get(event.hub)
            if holders is not None:
                holders.pop(event.user_id, None)
        elif kind == _USER_DELETED:
            for holders in self.by_hub.values():
                holders.pop(event.user_id, None)
        elif kind == _POOL_CLOSED:
            holders = self.by_hub.get(event.hub)
            if holders is not None:
                for user_id in [u for u, t in holders.items() if t == event.tier]:
                    holders.pop(user_id, None)
        self.sequence = event.sequence
        self.event_at = now
        self._settle()

    def confirm(self, sequence: int, sent_at: float) -> None:
        """CheckSeats, asked at ``sent_at``, answered that the account's last event is
        ``sequence``: once the copy is exact and has applied it, every change committed before
        ``sent_at`` is in the copy."""
        target = max(sequence, self.floor)
        if self.sequence >= target:
            self.confirmed_at = max(self.confirmed_at, sent_at)
            return
        self.pending.append((target, sent_at))
        if len(self.pending) > MAX_PENDING:  # the watch is far behind; keep the latest questions
            del self.pending[0]

    def _settle(self) -> None:
        if not self.pending:
            return
        settled = [t for s, t in self.pending if s <= self.sequence]
        if settled:
            self.pending = [(s, t) for s, t in self.pending if s > self.sequence]
            self.confirmed_at = max(self.confirmed_at, *settled)


EMPTY = View(0, 1)
"""What readers see before the first load and after close(): never exact, never confirmed."""


class State:
    """What the sync and asyncio caches share: the published copy readers use, the copy the
    worker builds and follows, the health figures, and the hub names already resolved."""

    def __init__(self, account_id: str, max_silence: float, clock: Clock) -> None:
        self.account_id = account_id
        self.max_silence = max_silence
        self.clock = clock
        self.published = EMPTY
        self.work: View | None = None
        self.watching = False
        self.watch_since = NEVER
        self.resyncs = 0
        self.remote_checks = 0
        self.server_sequence = 0
        self.last_error: BaseException | None = None
        self.forced: ForcedResync | None = None
        self.hubs: dict[object, int] = {hub: hub for hub in r.Hub.values() if hub}

    # ---- readers ------------------------------------------------------------------------------

    def hub(self, hub: requests.HubLike) -> int:
        """The hub number of a HubLike, resolved once per distinct value."""
        if hub in self.hubs:
            return self.hubs[hub]
        value = int(requests.to_hub(hub))
        if value <= 0:
            raise ValueError(f"{hub!r} is not a hub")
        if len(self.hubs) < 256:
            self.hubs[hub] = value
        return value

    def staleness(self) -> float:
        return self.clock() - self.published.confirmed_at

    def last_event_age(self) -> float:
        view = self.published
        return self.clock() - max(view.event_at, view.confirmed_at)

    def known_server_sequence(self) -> int:
        return max(self.server_sequence, self.published.sequence)

    def failed(self, error: BaseException) -> None:
        """Records why the watch or a load ended: the cache's own reason when it cut the watch,
        else the error (a failed call as its SeatsError)."""
        if isinstance(error, grpc.RpcError) and not isinstance(error, errors.SeatsError):
            error = errors.from_rpc_error(error)
        self.last_error = self.forced or error
        self.forced = None

    def healthy(self) -> bool:
        view = self.published
        return self.watching and self.work is view and self.clock() - view.confirmed_at <= self.max_silence

    # ---- the worker ---------------------------------------------------------------------------

    def begin(self, before: int, assignments: Iterable[r.SeatAssignment], after: int, after_sent: float) -> View:
        """A new copy from a load: ``before`` was read before the pages, ``after`` (asked at
        ``after_sent``) after them; the watch follows from ``before``."""
        view = View(before, after)
        view.load(assignments)
        view.confirm(after, after_sent)
        self.server_sequence = max(self.server_sequence, after)
        self.work = view
        self.resyncs += 1
        self.publish()
        return view

    def apply(self, view: View, event: r.SeatEvent) -> None:
        view.apply(event, self.clock())
        self.publish()

    def confirm(self, sequence: int, sent_at: float) -> None:
        """Confirms both the copy readers see and the one being followed (when they differ,
        the older one is still exact at its own sequence)."""
        self.server_sequence = max(self.server_sequence, sequence)
        published, work = self.published, self.work
        if published is not EMPTY:
            published.confirm(sequence, sent_at)
        if work is not None and work is not published:
            work.confirm(sequence, sent_at)
            self.publish()

    def publish(self) -> None:
        work = self.work
        if work is not None and work is not self.published and work.exact and work.confirmed_at > NEVER:
            self.published = work

    def behind(self) -> bool:
        """The watch has been open longer than max_silence, yet a sequence that CheckSeats
        named more than max_silence ago has still not come through it: the watch is open but
        not delivering. (A slow heartbeat whose sequence the copy already holds is not this.)"""
        now, work = self.clock(), self.work
        if not self.watching or work is None or now - self.watch_since <= self.max_silence:
            return False
        return any(now - sent > self.max_silence for _, sent in work.pending)

    def close(self) -> None:
        self.published = EMPTY
        self.work = None
        self.watching = False


def resumable(error: BaseException, applied: int) -> bool:
    """The server ended the watch at its longest life (UNAVAILABLE / WATCH_EXPIRED) right after
    sending event ``applied``, the last one the copy applied (its metadata ``after_sequence``
    says so): the same watch from there carries on. Any other end is a failure."""
    if not isinstance(error, grpc.RpcError):
        return False
    if not isinstance(error, errors.SeatsError):
        error = errors.from_rpc_error(error)
    return watch_expired(error) and error.metadata.get("after_sequence") == str(applied)


def watch_request(account_id: str, sequence: int) -> seat_service_pb2.WatchSeatEventsRequest:
    """WatchSeatEvents one event before ``sequence``: its first message, event ``sequence``
    (already committed), comes at once and proves the stream live."""
    return seat_service_pb2.WatchSeatEventsRequest(account_id=account_id, after_sequence=max(sequence - 1, 0))


def first_message_timeout(client_timeout: float | None) -> float:
    """How long a new watch may take to send its first message (an event already committed):
    the client's call deadline, or 10 s without one."""
    return client_timeout if client_timeout else 10.0


def check_arguments(max_silence: float, heartbeat_interval: float | None) -> float:
    """The heartbeat interval to use: a quarter of max_silence unless given, and below it."""
    if not max_silence > 0:
        raise ValueError("max_silence must be positive")
    interval = max_silence / 4 if heartbeat_interval is None else heartbeat_interval
    if not 0 < interval < max_silence:
        raise ValueError("heartbeat_interval must be positive and shorter than max_silence")
    return interval


class CacheStatus:
    """What a seat cache tells about itself; SeatCache and AsyncSeatCache share it."""

    _state: State

    @property
    def account_id(self) -> str:
        return self._state.account_id

    @property
    def max_silence(self) -> float:
        return self._state.max_silence

    @property
    def sequence(self) -> int:
        """The last event applied to the copy ``tier_of`` answers from (0 before the first load)."""
        return self._state.published.sequence

    @property
    def server_sequence(self) -> int:
        """The highest sequence the account is known to have reached (named by CheckSeats, or
        applied): ``server_sequence - sequence`` is how many events the copy lags behind."""
        return self._state.known_server_sequence()

    @property
    def staleness(self) -> float:
        """Seconds since the copy was last confirmed: every change committed before then is in
        it (infinite before the first load)."""
        return self._state.staleness()

    @property
    def last_event_age(self) -> float:
        """Seconds since the last event was applied or the copy was last confirmed, whichever is later."""
        return self._state.last_event_age()

    @property
    def fresh(self) -> bool:
        """``tier_of`` answers from memory now (staleness within max_silence)."""
        return self._state.staleness() <= self._state.max_silence

    @property
    def watching(self) -> bool:
        """A watch stream is open and feeding the copy."""
        return self._state.watching

    @property
    def healthy(self) -> bool:
        """Watching, the copy readers see is the one being followed, and it is fresh."""
        return self._state.healthy()

    @property
    def resyncs(self) -> int:
        """Loads so far (the first one included)."""
        return self._state.resyncs

    @property
    def remote_checks(self) -> int:
        """``tier_of`` calls answered by CheckSeats because the copy was not fresh."""
        return self._state.remote_checks

    @property
    def last_error(self) -> BaseException | None:
        """The last error of the background work (a load, the watch, a heartbeat), if any."""
        return self._state.last_error


class SeatCache(CacheStatus):
    """A live copy of one account's seat assignments, kept by a background thread that loads
    the assignments and follows WatchSeatEvents (see the module documentation for why its
    answers are exact, and how it knows when they might not be)."""

    def __init__(
        self,
        client: SeatsClient,
        account_id: str,
        *,
        max_silence: float = DEFAULT_MAX_SILENCE,
        heartbeat_interval: float | None = None,
        backoff: RetryPolicy = DEFAULT_BACKOFF,
        page_size: int = PAGE_SIZE,
        clock: Clock = time.monotonic,
    ) -> None:
        """``client`` makes every call (its actor must be a user of the account, or none for a
        trusted system caller); the cache does not close it. ``max_silence`` (seconds) is how
        long the cache answers from memory without confirming it; ``heartbeat_interval``
        (default a quarter of it) is how often it confirms an idle watch with one CheckSeats;
        ``backoff`` spaces out reloads after failures; ``page_size`` is the ListSeatAssignments
        page of a load; ``clock`` is a monotonic clock in seconds. The worker starts at once;
        until its first load, ``tier_of`` asks CheckSeats."""
        self._heartbeat_interval = check_arguments(max_silence, heartbeat_interval)
        self._state = State(account_id, max_silence, clock)
        self._client = client
        probe = client.with_actor(client.actor)
        probe.retry = NO_RETRY
        probe.timeout = min(max_silence, client.timeout) if client.timeout else max_silence
        self._probe = probe
        self._backoff = backoff
        self._page_size = page_size
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._stream: _Cancellable | None = None
        self._watched_for = 0.0
        self._threads = [
            threading.Thread(target=self._follow, name=f"seat-cache-follow-{account_id}", daemon=True),
            threading.Thread(target=self._beat, name=f"seat-cache-heartbeat-{account_id}", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # ---- lifecycle ------------------------------------------------------------------------------

    def __enter__(self) -> SeatCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self, timeout: float | None = 10.0) -> None:
        """Stops the watch and the heartbeat and waits for both threads (at most ``timeout``
        seconds each). Afterwards every ``tier_of`` asks CheckSeats."""
        self._stop.set()
        with self._lock:
            stream = self._stream
            self._state.close()
            self._changed.notify_all()
        if stream is not None:
            stream.cancel()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)

    # ---- reading ------------------------------------------------------------------------------

    def tier_of(self, user_id: str, hub: requests.HubLike) -> Tier:
        """The tier of the seat ``user_id`` holds in ``hub`` (``TIER_UNSPECIFIED``, 0, for none or
        an unknown user), from memory while the copy is confirmed within ``max_silence``, else
        from CheckSeats (raising its SeatsError when the service cannot answer)."""
        state = self._state
        try:
            h = state.hubs[hub]
        except KeyError:
            h = state.hub(hub)
        view = state.published
        if state.clock() - view.confirmed_at <= state.max_silence:
            holders = view.by_hub.get(h)
            return holders.get(user_id, _NO_TIER) if holders is not None else _NO_TIER
        return self._check_remote(user_id, h)

    def _check_remote(self, user_id: str, hub: int) -> Tier:
        sent = self._state.clock()
        response = self._client.check_seats(self._state.account_id, hub, [user_id])
        with self._lock:
            self._state.remote_checks += 1
            self._state.confirm(response.sequence, sent)
            self._changed.notify_all()
        return response.tiers[0]

    def wait_until(self, predicate: Callable[[SeatCache], bool], timeout: float | None = None) -> bool:
        """Blocks until ``predicate(cache)`` holds, checking it again at every change of the
        cache (an event applied, a confirmation, a load, the watch opening or ending); returns
        its last value at the timeout. The predicate must not call ``tier_of``."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def wait_for_sequence(self, sequence: int, timeout: float | None = None) -> bool:
        """Blocks until the copy readers see has applied ``sequence`` (e.g. the ``sequence`` of
        a CheckSeats made after your write); False at the timeout."""
        return self.wait_until(lambda cache: cache.sequence >= sequence, timeout)

    def wait_until_healthy(self, timeout: float | None = None) -> bool:
        """Blocks until the cache is ``healthy``; False at the timeout."""
        return self.wait_until(lambda cache: cache.healthy, timeout)

    # ---- the background work ------------------------------------------------------------------

    def _follow(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._watched_for = 0.0
            try:
                self._load_and_watch()
            except Exception as error:
                if not self._stop.is_set():
                    with self._lock:
                        self._state.failed(error)
            # Back off more after each quick failure; a watch that held for a while starts over.
            failures = 1 if self._watched_for > self._state.max_silence else failures + 1
            if self._stop.wait(self._backoff.delay(min(failures, 8))):
                return

    def _sequence_now(self) -> tuple[int, float]:
        """The account's last event sequence, and the clock reading taken before asking."""
        sent = self._state.clock()
        return self._probe.check_seats(self._state.account_id, PROBE_HUB, [PROBE_USER_ID]).sequence, sent

    def _load_and_watch(self) -> None:
        """One load and the watch after it, until the watch breaks (a healthy watch only ends
        at its longest life, and is then resumed) or close() cancels it. The watch opens first,
        one event early, so that its first message proves it is live before the load pages
        anything."""
        state = self._state
        with self._lock:
            state.work = None
        before, _ = self._sequence_now()
        stream = self._open(before)
        if stream is None:
            return
        try:
            messages = iter(stream)
            first = self._first(stream, messages) if before > 0 else None
            assignments = list(self._client.iter_seat_assignments(state.account_id, page_size=self._page_size))
            after, after_sent = self._sequence_now()
            with self._lock:
                if self._stop.is_set():
                    return
                view = state.begin(before, assignments, after, after_sent)
                if first is not None:
                    state.apply(view, first.event)
                state.watching, state.watch_since = True, state.clock()
                self._changed.notify_all()
            while True:
                try:
                    for message in messages:
                        with self._lock:
                            state.apply(view, message.event)
                            self._changed.notify_all()
                    return
                except grpc.RpcError as error:
                    if not resumable(error, view.sequence):
                        raise
                    expired = error
                # The stream lived its full life: the same watch from the last event applied.
                stream.cancel()
                resumed = self._open(view.sequence, expired)
                if resumed is None:
                    return
                stream, messages = resumed, iter(resumed)
                if view.sequence > 0:
                    first = self._first(stream, messages)
                    with self._lock:
                        state.apply(view, first.event)
                        self._changed.notify_all()
        finally:
            stream.cancel()
            with self._lock:
                if state.watching:
                    self._watched_for = state.clock() - state.watch_since
                self._stream = None
                state.watching = False
                self._changed.notify_all()

    def _open(self, sequence: int, expired: grpc.RpcError | None = None) -> _WatchStream | None:
        """Opens the watch one event before ``sequence`` and makes it the stream close() and the
        heartbeat cancel; None once close() was called. ``expired`` is the WATCH_EXPIRED that
        ended the stream this one resumes: if the heartbeat meant to cut that stream meanwhile
        (it was behind), it is raised, and the account reloads for the heartbeat's reason."""
        request = watch_request(self._state.account_id, sequence)
        stream: _WatchStream = self._client._stubs["SeatService"].WatchSeatEvents(
            request, metadata=self._client._metadata()
        )
        with self._lock:
            closed = self._stop.is_set()
            cut = expired is not None and self._state.forced is not None
            if not closed and not cut:
                self._stream = stream
                return stream
        stream.cancel()
        if cut and expired is not None:
            raise expired
        return None

    def _first(
        self, stream: _Cancellable, messages: Iterator[seat_service_pb2.WatchSeatEventsResponse]
    ) -> seat_service_pb2.WatchSeatEventsResponse:
        """The new watch's first message; a watch that sends nothing within the call deadline is
        cut (and ``_cut_silent`` records why)."""
        timer = threading.Timer(first_message_timeout(self._client.timeout), self._cut_silent, (stream,))
        timer.daemon = True
        timer.start()
        try:
            return next(messages)
        finally:
            timer.cancel()

    def _cut_silent(self, stream: _Cancellable) -> None:
        with self._lock:
            self._state.forced = ForcedResync("the new watch sent nothing within the call deadline")
        stream.cancel()

    def _beat(self) -> None:
        while not self._stop.wait(self._heartbeat_interval):
            try:
                sequence, sent = self._sequence_now()
            except Exception as error:
                with self._lock:
                    self._state.last_error = error
                continue
            with self._lock:
                self._state.confirm(sequence, sent)
                stream = self._stream if self._state.behind() else None
                if stream is not None:
                    self._state.forced = ForcedResync(
                        f"the watch did not bring, within {self._state.max_silence}s, a sequence CheckSeats named"
                    )
                self._changed.notify_all()
            if stream is not None:
                stream.cancel()
