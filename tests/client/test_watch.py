"""watch_seat_events against a server in a process of its own: the watch follows the log across a
restart of the server, and across the ends the server gives a watch at its longest life, without
missing or repeating an event; with resume=False (or when the reconnects run out) a break reaches
the caller as a SeatsError. Every wait is bounded."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio
import pytest
from seats import AsyncSeatsClient, RetryPolicy, SeatsClient, errors
from seats.v1 import resources_pb2, seat_service_pb2

from tests.served import ServerProcess, free_port, serving
from tests.toolkit import unique_email

WATCH_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.05, max_backoff=0.2)
"""Quick reconnects for the watcher and the writers."""
EVENT_SECONDS = 20.0
"""How long a watcher may take to see an event (a reconnect after a restart included)."""
JOIN_SECONDS = 10.0


class Collector:
    """What a watch running in a daemon thread yielded, or raised; waits on it are bounded."""

    def __init__(self) -> None:
        self.events: list[resources_pb2.SeatEvent] = []
        self.error: BaseException | None = None
        self.finished = False
        self._changed = threading.Condition()

    def _seen(self, event: resources_pb2.SeatEvent) -> None:
        with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def _ended(self, error: BaseException | None) -> None:
        with self._changed:
            self.error, self.finished = error, True
            self._changed.notify_all()

    @property
    def sequences(self) -> list[int]:
        with self._changed:
            return [e.sequence for e in self.events]

    def wait_for_events(self, count: int, timeout: float = EVENT_SECONDS) -> list[int]:
        """The sequences seen, once there are at least `count`; fails at the deadline or if the watch ended."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.events) < count and not self.finished:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            seen = [e.sequence for e in self.events]
            assert len(seen) >= count, f"the watcher saw {seen} (error {self.error!r}) after {timeout}s, wanted {count}"
            return seen

    def wait_until_finished(self, timeout: float = EVENT_SECONDS) -> BaseException | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.finished and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)
            assert self.finished, f"the watch still runs after {timeout}s; it saw {len(self.events)} events"
            return self.error

    def stop(self) -> None:
        raise NotImplementedError


class Watcher(Collector):
    """SeatsClient.watch_seat_events, iterated in a daemon thread."""

    def __init__(
        self, address: str, actor: str, account_id: str, *, interceptors: Sequence[Any] = (), **watch: Any
    ) -> None:
        super().__init__()
        self.client = SeatsClient(address, actor=actor, retry=WATCH_RETRY, timeout=5.0, interceptors=interceptors)
        self._thread = threading.Thread(target=self._run, args=(account_id, watch), daemon=True)
        self._thread.start()

    def _run(self, account_id: str, watch: dict[str, Any]) -> None:
        error: BaseException | None = None
        try:
            for event in self.client.watch_seat_events(account_id, **watch):
                self._seen(event)
        except BaseException as raised:
            error = raised
        self._ended(error)

    def stop(self) -> None:
        """Closes the watcher's channel, which ends the watch, and joins the thread."""
        self.client.close()
        self._thread.join(JOIN_SECONDS)
        assert not self._thread.is_alive(), "the watch thread did not end after its channel was closed"


class AsyncWatcher(Collector):
    """AsyncSeatsClient.watch_seat_events, iterated by an event loop of its own in a daemon thread."""

    def __init__(
        self, address: str, actor: str, account_id: str, *, interceptors: Sequence[Any] = (), **watch: Any
    ) -> None:
        super().__init__()
        self._address, self._actor, self._interceptors = address, actor, interceptors
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._running = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(account_id, watch),), daemon=True)
        self._thread.start()
        assert self._running.wait(JOIN_SECONDS), "the watcher's event loop did not start"

    async def _run(self, account_id: str, watch: dict[str, Any]) -> None:
        self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
        self._running.set()
        error: BaseException | None = None
        try:
            async with (
                AsyncSeatsClient(
                    self._address, actor=self._actor, retry=WATCH_RETRY, interceptors=self._interceptors
                ) as client,
                aclosing(cast(AsyncGenerator[Any, None], client.watch_seat_events(account_id, **watch))) as events,
            ):
                async for event in events:
                    self._seen(event)
        except asyncio.CancelledError:
            pass  # stop() asked for it
        except BaseException as raised:
            error = raised
        self._ended(error)

    def stop(self) -> None:
        """Cancels the watch's task and joins the thread."""
        assert self._loop is not None and self._task is not None
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(JOIN_SECONDS)
        assert not self._thread.is_alive(), "the async watch thread did not end after its task was cancelled"


WATCHERS: dict[str, type[Watcher] | type[AsyncWatcher]] = {"sync": Watcher, "async": AsyncWatcher}


@pytest.fixture
def watchers() -> Iterator[list[Collector]]:
    """Watchers of a test, all stopped at its end whatever happened."""
    started: list[Collector] = []
    yield started
    for watcher in started:
        watcher.stop()


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'watched.db'}"


def new_account(server: ServerProcess) -> tuple[str, str]:
    with SeatsClient(server.address, retry=WATCH_RETRY) as system:
        account = system.create_account("Watched", unique_email("owner"), [("sales", "professional", 0)]).account
    return account.account_id, account.owner_user_id


def make_changes(server: ServerProcess, owner: str, account_id: str, users: int) -> int:
    """Creates `users` users with a seat each (buying seats as needed); returns the last sequence."""
    with SeatsClient(server.address, actor=owner, retry=WATCH_RETRY) as client:
        for _ in range(users):
            client.create_user(account_id, unique_email(), seats=[("sales", "professional")], purchase_if_needed=True)
        return max(e.sequence for e in client.iter_seat_events(account_id))


@pytest.mark.parametrize(("kind", "stop"), [("sync", "kill"), ("sync", "terminate"), ("async", "kill")])
def test_watch_resumes_after_the_server_restarts_without_gaps_or_repeats(
    tmp_path: Path, watchers: list[Collector], kind: str, stop: str
) -> None:
    port, url = free_port(), sqlite_url(tmp_path)
    with serving(tmp_path, port=port, database_url=url) as first:
        account_id, owner = new_account(first)
        watcher = WATCHERS[kind](first.address, owner, account_id)
        watchers.append(watcher)
        before_restart = make_changes(first, owner, account_id, users=2)
        assert watcher.wait_for_events(before_restart) == list(range(1, before_restart + 1))
        if stop == "kill":
            first.kill()
        else:
            first.process.terminate()
            assert first.wait_for_exit(15.0) == 0

    with serving(tmp_path, port=port, database_url=url) as second:
        after_restart = make_changes(second, owner, account_id, users=3)
        assert after_restart > before_restart
        watcher.wait_for_events(after_restart)
        # One more change after the watcher caught up: anything repeated would show up before it.
        last = make_changes(second, owner, account_id, users=1)
        seen = watcher.wait_for_events(last)

    assert seen == list(range(1, last + 1))
    assert watcher.error is None
    types = [e.type for e in watcher.events]
    assert types[0] == resources_pb2.SEAT_EVENT_TYPE_ACCOUNT_CREATED
    assert types.count(resources_pb2.SEAT_EVENT_TYPE_USER_CREATED) == 1 + 2 + 3 + 1


def test_watch_from_a_cursor_resumes_from_there_after_a_restart(tmp_path: Path, watchers: list[Collector]) -> None:
    port, url = free_port(), sqlite_url(tmp_path)
    with serving(tmp_path, port=port, database_url=url) as first:
        account_id, owner = new_account(first)
        start = make_changes(first, owner, account_id, users=1)
        watcher = Watcher(first.address, owner, account_id, after_sequence=start - 1)
        watchers.append(watcher)
        assert watcher.wait_for_events(1) == [start]
        first.kill()

    with serving(tmp_path, port=port, database_url=url) as second:
        last = make_changes(second, owner, account_id, users=1)
        seen = watcher.wait_for_events(last - start + 1)

    assert seen == list(range(start, last + 1))


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_watch_without_resume_raises_unavailable_when_the_server_goes_away(
    tmp_path: Path, watchers: list[Collector], kind: str
) -> None:
    with serving(tmp_path) as server:
        account_id, owner = new_account(server)
        watcher = WATCHERS[kind](server.address, owner, account_id, resume=False)
        watchers.append(watcher)
        watcher.wait_for_events(3)
        server.kill()

        error = watcher.wait_until_finished()

    assert isinstance(error, errors.Unavailable), repr(error)
    assert isinstance(error, errors.SeatsError)
    assert watcher.sequences == [1, 2, 3]


def test_watch_without_resume_raises_shutting_down_with_the_cursor_on_sigterm(
    tmp_path: Path, watchers: list[Collector]
) -> None:
    with serving(tmp_path) as server:
        account_id, owner = new_account(server)
        last = make_changes(server, owner, account_id, users=1)
        watcher = Watcher(server.address, owner, account_id, resume=False)
        watchers.append(watcher)
        watcher.wait_for_events(last)
        server.process.terminate()

        error = watcher.wait_until_finished()
        assert server.wait_for_exit(15.0) == 0

    assert isinstance(error, errors.ShuttingDown), repr(error)
    assert isinstance(error, errors.Unavailable)
    assert error.metadata == {"after_sequence": str(last)}


def test_watch_gives_up_after_max_reconnects(tmp_path: Path, watchers: list[Collector]) -> None:
    with serving(tmp_path) as server:
        account_id, owner = new_account(server)
        watcher = Watcher(server.address, owner, account_id, max_reconnects=2)
        watchers.append(watcher)
        watcher.wait_for_events(3)
        server.kill()

        error = watcher.wait_until_finished()

    assert isinstance(error, errors.Unavailable), repr(error)
    assert watcher.sequences == [1, 2, 3]


def test_a_watch_beyond_max_watch_streams_raises_too_many_watches(tmp_path: Path, watchers: list[Collector]) -> None:
    with serving(tmp_path, flags=("--max-watch-streams", "1")) as server:
        account_id, owner = new_account(server)
        first = Watcher(server.address, owner, account_id)
        watchers.append(first)
        first.wait_for_events(3)
        second = Watcher(server.address, owner, account_id)
        watchers.append(second)

        error = second.wait_until_finished()

    assert isinstance(error, errors.TooManyWatches), repr(error)
    assert isinstance(error, errors.ResourceExhausted)
    assert error.metadata == {"limit": "server", "max": "1"}
    assert second.events == []


# ---- the server ends a watch at its longest life ------------------------------------------------

LIFETIME_SECONDS = 1.0
"""--watch-max-seconds of the servers below: short, so that a test sees several ends."""


WatchRequest = seat_service_pb2.WatchSeatEventsRequest
WatchResponse = seat_service_pb2.WatchSeatEventsResponse
if TYPE_CHECKING:  # generic in the type stubs only
    SyncInterceptor = grpc.UnaryStreamClientInterceptor[WatchRequest, WatchResponse]
    AsyncInterceptor = grpc.aio.UnaryStreamClientInterceptor[WatchRequest, WatchResponse]
else:
    SyncInterceptor = grpc.UnaryStreamClientInterceptor
    AsyncInterceptor = grpc.aio.UnaryStreamClientInterceptor


class CountWatches(SyncInterceptor):
    """Counts the WatchSeatEvents calls a sync client makes."""

    def __init__(self) -> None:
        self.calls = 0

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, WatchRequest], grpc.CallIterator[WatchResponse]],
        client_call_details: grpc.ClientCallDetails,
        request: WatchRequest,
    ) -> grpc.CallIterator[WatchResponse]:
        if isinstance(request, WatchRequest):
            self.calls += 1
        return continuation(client_call_details, request)


class AsyncCountWatches(AsyncInterceptor):
    """Counts the WatchSeatEvents calls an asyncio client makes."""

    def __init__(self) -> None:
        self.calls = 0

    async def intercept_unary_stream(
        self,
        continuation: Callable[
            [grpc.aio.ClientCallDetails, WatchRequest], grpc.aio.UnaryStreamCall[WatchRequest, WatchResponse]
        ],
        client_call_details: grpc.aio.ClientCallDetails,
        request: WatchRequest,
    ) -> AsyncIterable[WatchResponse] | grpc.aio.UnaryStreamCall[WatchRequest, WatchResponse]:
        if isinstance(request, WatchRequest):
            self.calls += 1
        pending: Any = continuation(client_call_details, request)  # awaitable at run time
        started: grpc.aio.UnaryStreamCall[WatchRequest, WatchResponse] = await pending
        return started


@pytest.mark.parametrize("kind", ["sync", "async"])
@pytest.mark.parametrize(
    "watch", [{}, {"max_reconnects": 0}, {"resume": False}], ids=["default", "no-reconnects", "no-resume"]
)
def test_watch_resumes_at_once_when_the_server_ends_it_at_its_longest_life(
    tmp_path: Path, watchers: list[Collector], kind: str, watch: dict[str, Any]
) -> None:
    """Every event before and after each end arrives once, in order; an end is no failed reconnect
    (max_reconnects=0 and resume=False still carry on) and costs no backoff."""
    counter: CountWatches | AsyncCountWatches = CountWatches() if kind == "sync" else AsyncCountWatches()
    flags = ("--watch-max-seconds", str(LIFETIME_SECONDS), "--watch-poll-seconds", "0.05")
    with serving(tmp_path, flags=flags) as server:
        account_id, owner = new_account(server)
        watcher = WATCHERS[kind](server.address, owner, account_id, interceptors=[counter], **watch)
        watchers.append(watcher)
        first = make_changes(server, owner, account_id, users=2)
        watcher.wait_for_events(first)
        time.sleep(2.5 * LIFETIME_SECONDS)  # at least two ends while idle
        second = make_changes(server, owner, account_id, users=2)
        watcher.wait_for_events(second)
        time.sleep(1.5 * LIFETIME_SECONDS)
        # One more change after the last end: anything repeated would show up before it.
        last = make_changes(server, owner, account_id, users=1)
        seen = watcher.wait_for_events(last)
        error = watcher.error

    assert seen == list(range(1, last + 1))
    assert error is None
    assert counter.calls >= 4, counter.calls  # the first watch, then one after each end


def test_a_watch_beyond_the_accounts_cap_raises_too_many_watches_naming_the_limit(
    tmp_path: Path, watchers: list[Collector]
) -> None:
    """Another account still watches while one is at its cap."""
    with serving(tmp_path, flags=("--max-watch-streams-per-account", "1")) as server:
        account_id, owner = new_account(server)
        other_id, other_owner = new_account(server)
        first = Watcher(server.address, owner, account_id)
        watchers.append(first)
        first.wait_for_events(3)
        second = Watcher(server.address, owner, account_id)
        watchers.append(second)
        error = second.wait_until_finished()
        other = Watcher(server.address, other_owner, other_id)
        watchers.append(other)
        other_seen = other.wait_for_events(3)

    assert isinstance(error, errors.TooManyWatches), repr(error)
    assert error.metadata == {"limit": "account", "max": "1"}
    assert other_seen[:3] == [1, 2, 3]
    assert other.error is None
