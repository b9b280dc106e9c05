"""WatchSeatEvents ends when it should and shares its slots fairly: a watch checks its actor again
before it sends the events of a newer account version (an actor deleted from the account gets no
event committed with or after the deletion, and the stream ends as a unary call would be refused),
it ends after --watch-max-seconds with UNAVAILABLE / WATCH_EXPIRED and the cursor, and its slots
are counted per account as well as per server. On SQLite and on PostgreSQL; every wait is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from seats.v1 import (
    resources_pb2,
    seat_service_pb2,
    seat_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)

from service.config import Config
from service.domain.errors import Kind, SeatError
from service.domain.model import Call
from service.server import SeatServer, create_server
from service.store import Store, open_store
from tests.conftest import BACKENDS, actor, database_url
from tests.contract.helpers import (
    SALES,
    STARTER,
    Tenant,
    batch,
    new_account,
    new_user,
)
from tests.toolkit import Refusal, refusal_of, refused

POLL_SECONDS = 0.05
"""How often the servers of these tests look for commits of other replicas."""
STREAM_SECONDS = 30.0
"""The deadline of every watch: the tests end long before unless a stream fails to end."""
WAIT_SECONDS = 15.0


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One migrated database per kind for the module; each test serves it with its own settings."""
    url = database_url(request.param, tmp_path_factory)
    store = open_store(url)
    store.migrate()
    try:
        yield url
    finally:
        store.drop_schema()
        store.close()


@dataclass
class Served:
    server: SeatServer
    store: Store
    channel: grpc.Channel
    seats: seat_service_pb2_grpc.SeatServiceStub
    users: user_service_pb2_grpc.UserServiceStub


@contextmanager
def served(url: str, **settings: Any) -> Iterator[Served]:
    """A server (a replica: its own store, memory and event hub) on the database, with settings."""
    store = open_store(url)
    settings.setdefault("watch_poll_seconds", POLL_SECONDS)
    config = Config(address="127.0.0.1:0", database_url=url, sweep_interval_seconds=0, **settings)
    server, port = create_server(config, store=store)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(
            server,
            store,
            channel,
            seat_service_pb2_grpc.SeatServiceStub(channel),
            user_service_pb2_grpc.UserServiceStub(channel),
        )
    finally:
        channel.close()
        server.stop(None).wait()
        store.close()


class Stream:
    """One WatchSeatEvents call, read on a thread of its own: the events it sent, then how it ended."""

    def __init__(
        self, seats: seat_service_pb2_grpc.SeatServiceStub, account_id: str, user_id: str, after_sequence: int = 0
    ) -> None:
        request = seat_service_pb2.WatchSeatEventsRequest(account_id=account_id, after_sequence=after_sequence)
        self.call: Any = seats.WatchSeatEvents(request, metadata=actor(user_id), timeout=STREAM_SECONDS)
        self.events: list[resources_pb2.SeatEvent] = []
        self.error: grpc.RpcError | None = None
        self.finished = False
        self.ended_at = 0.0
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        error: grpc.RpcError | None = None
        try:
            for message in self.call:
                with self._changed:
                    self.events.append(message.event)
                    self._changed.notify_all()
        except grpc.RpcError as raised:
            error = raised
        with self._changed:
            self.error, self.finished, self.ended_at = error, True, time.monotonic()
            self._changed.notify_all()

    @property
    def sequences(self) -> list[int]:
        with self._changed:
            return [e.sequence for e in self.events]

    def wait_until(self, done: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done() and (left := deadline - time.monotonic()) > 0:
                self._changed.wait(left)

    def started_or_ended(self) -> bool:
        return self.finished or bool(self.events)

    def wait_for(self, sequence: int, timeout: float = WAIT_SECONDS) -> list[int]:
        """The sequences sent, once `sequence` is among them; fails if the stream ended first."""
        self.wait_until(lambda: self.finished or (bool(self.events) and self.events[-1].sequence >= sequence), timeout)
        seen = self.sequences
        assert seen and seen[-1] >= sequence, f"the watch sent {seen}, wanted up to {sequence}; ended: {self.error!r}"
        return seen

    def wait_until_refused(self, timeout: float = WAIT_SECONDS) -> Refusal:
        """How the server ended the stream; fails if it still runs after `timeout`."""
        self.wait_until(lambda: self.finished, timeout)
        assert self.finished, f"the watch still runs after {timeout}s; it sent {self.sequences}"
        assert self.error is not None, "the watch ended without a status"
        return refusal_of(self.error)

    def close(self) -> None:
        self.call.cancel()
        self._thread.join(WAIT_SECONDS)
        assert not self._thread.is_alive(), "the watch thread did not end after its call was cancelled"


@pytest.fixture
def streams() -> Iterator[list[Stream]]:
    """The streams of a test, all cancelled at its end whatever happened."""
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.close()


def open_stream(
    opened: list[Stream], seats: seat_service_pb2_grpc.SeatServiceStub, tenant: Tenant, user_id: str = ""
) -> Stream:
    stream = Stream(seats, tenant.id, user_id or tenant.owner_id)
    opened.append(stream)
    return stream


def last_sequence(seats: seat_service_pb2_grpc.SeatServiceStub, tenant: Tenant) -> int:
    return seats.CheckSeats(
        seat_service_pb2.CheckSeatsRequest(account_id=tenant.id, hub=SALES, user_ids=[tenant.owner_id])
    ).sequence


def delete_user(users: user_service_pb2_grpc.UserServiceStub, tenant: Tenant, user_id: str) -> None:
    users.DeleteUser(
        user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=user_id), metadata=tenant.as_owner
    )


def unary_refusal_of_a_read(seats: seat_service_pb2_grpc.SeatServiceStub, tenant: Tenant, user_id: str) -> Refusal:
    """What a unary read of the account's events by user_id gets."""
    with refused(grpc.StatusCode.PERMISSION_DENIED) as refusal:
        seats.ListSeatEvents(seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id), metadata=actor(user_id))
    return refusal


# ---- the actor checked again ------------------------------------------------------------


def test_a_deleted_actors_watch_ends_with_permission_denied_and_gets_nothing_from_the_deletion_on(
    database: str, streams: list[Stream]
) -> None:
    with served(database) as one:
        tenant = new_account(one.seats)
        member = new_user(one.users, tenant)  # no permission: events are open to every user
        before = last_sequence(one.seats, tenant)
        stream = open_stream(streams, one.seats, tenant, member.user_id)
        assert stream.wait_for(before) == list(range(1, before + 1))

        delete_user(one.users, tenant, member.user_id)
        deleted_at = last_sequence(one.seats, tenant)
        for _ in range(6):
            new_user(one.users, tenant)
        ended = stream.wait_until_refused()
        unary = unary_refusal_of_a_read(one.seats, tenant, member.user_id)

    assert (ended.code, ended.info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT")
    assert (ended.info.reason, dict(ended.info.metadata)) == (unary.info.reason, dict(unary.info.metadata))
    assert stream.sequences == list(range(1, deleted_at))  # not the USER_DELETED event, nor any after it


def test_a_deletion_on_another_replica_ends_the_watch_before_its_events(database: str, streams: list[Stream]) -> None:
    """The replica that holds the watch learns of the deletion only by polling, and has no copy of
    the account at the new version: it reads the actor from the database."""
    with served(database) as watched, served(database) as other:
        tenant = new_account(watched.seats)
        member = new_user(watched.users, tenant)
        before = last_sequence(watched.seats, tenant)
        stream = open_stream(streams, watched.seats, tenant, member.user_id)
        stream.wait_for(before)

        delete_user(other.users, tenant, member.user_id)
        deleted_at = last_sequence(other.seats, tenant)
        for _ in range(3):
            new_user(other.users, tenant)
        ended = stream.wait_until_refused()

    assert (ended.code, ended.info.reason) == (grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT")
    assert stream.sequences == list(range(1, deleted_at))


def test_the_recheck_trusts_memory_only_at_the_version_the_events_end_with(database: str) -> None:
    """At the version the events read end with (a committed version), the copy in memory answers;
    events that may end inside a transaction (a full batch) are checked against the database."""
    with served(database) as watched, served(database) as other:
        domain = watched.server.domain
        tenant = new_account(watched.seats)
        member = new_user(watched.users, tenant)
        call = Call(actor=member.user_id)
        version = domain.check_watch(call, tenant.id, 0)
        assert version == last_sequence(watched.seats, tenant)

        delete_user(other.users, tenant, member.user_id)  # the watched replica's memory still says `version`

        # The member was a user of the account at `version`: events up to it may be sent.
        assert domain.recheck_watch(call, tenant.id, version, head=True) == version
        with pytest.raises(SeatError) as refusal:
            domain.recheck_watch(call, tenant.id, version, head=False)
        with pytest.raises(SeatError) as newer:
            domain.recheck_watch(call, tenant.id, version + 1, head=True)

    assert (refusal.value.kind, refusal.value.reason) == (Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT")
    assert (newer.value.kind, newer.value.reason) == (Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT")


class Reads:
    """Counts the account, user and sequence reads the watch's handler thread makes."""

    NAMES = ("account_sequence", "get_account", "get_users", "assignments_for", "load_pools")

    def __init__(self, served: Served) -> None:
        self.counts: dict[str, int] = {}
        self.watch_thread: int | None = None
        domain, store = served.server.domain, served.store
        events_after = domain.events_after

        def recording(account_id: str, after_sequence: int, limit: int) -> list[Any]:
            self.watch_thread = threading.get_ident()
            return events_after(account_id, after_sequence, limit)

        domain.events_after = recording  # type: ignore[method-assign]
        for name in self.NAMES:
            setattr(store, name, self._counting(name, getattr(store, name)))

    def _counting(self, name: str, read: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == self.watch_thread:
                self.counts[name] = self.counts.get(name, 0) + 1
            return read(*args, **kwargs)

        return counted


def test_a_live_watch_checks_its_actor_from_memory(database: str, streams: list[Stream]) -> None:
    """Writes of the watch's own replica leave the account's new version in memory, with the actor:
    re-checking the actor at each of them reads nothing from the database."""
    with served(database) as one:
        tenant = new_account(one.seats, (SALES, STARTER, 5))
        member = new_user(one.users, tenant)
        reads = Reads(one)
        stream = open_stream(streams, one.seats, tenant, member.user_id)
        stream.wait_for(last_sequence(one.seats, tenant))
        reads.counts.clear()

        for _ in range(8):
            new_user(one.users, tenant, seats=[(SALES, STARTER)], purchase_if_needed=True)
            stream.wait_for(last_sequence(one.seats, tenant))

    assert reads.watch_thread is not None
    assert reads.counts == {}


def test_a_watch_by_a_system_call_is_not_ended_by_deletions(database: str, streams: list[Stream]) -> None:
    with served(database) as one:
        tenant = new_account(one.seats)
        member = new_user(one.users, tenant)
        request = seat_service_pb2.WatchSeatEventsRequest(account_id=tenant.id)
        call: Any = one.seats.WatchSeatEvents(request, timeout=STREAM_SECONDS)
        try:
            delete_user(one.users, tenant, member.user_id)
            last = last_sequence(one.seats, tenant)
            messages = iter(call)
            seen = [next(messages).event.sequence for _ in range(last)]
        finally:
            call.cancel()

    assert seen == list(range(1, last + 1))


# ---- the longest life -------------------------------------------------------------------


def test_a_watch_ends_after_its_longest_life_with_the_cursor_and_its_slot_is_free_again(
    database: str, streams: list[Stream]
) -> None:
    with served(database, watch_max_seconds=1.0, max_watch_streams_per_account=1) as one:
        tenant = new_account(one.seats)
        last = last_sequence(one.seats, tenant)
        opened = time.monotonic()
        stream = open_stream(streams, one.seats, tenant)
        stream.wait_for(last)
        ended = stream.wait_until_refused()
        lived = stream.ended_at - opened

        again = open_stream(streams, one.seats, tenant)  # the account's one slot was given back
        again_seen = again.wait_for(last)

    assert (ended.code, ended.info.reason) == (grpc.StatusCode.UNAVAILABLE, "WATCH_EXPIRED")
    assert dict(ended.info.metadata) == {"after_sequence": str(last)}
    assert 1.0 <= lived < 1.0 + 5.0, lived
    assert stream.sequences == list(range(1, last + 1))
    assert again_seen == list(range(1, last + 1))


def test_watch_max_seconds_must_be_positive(database: str) -> None:
    store = open_store(database)
    try:
        with pytest.raises(ValueError, match="watch-max-seconds"):
            create_server(Config(address="127.0.0.1:0", database_url=database, watch_max_seconds=0), store=store)
    finally:
        store.close()


def test_the_watch_settings_come_from_flags_and_the_environment() -> None:
    _, defaults = Config.parse([], env={})
    _, flagged = Config.parse(["--watch-max-seconds", "90", "--max-watch-streams-per-account", "2"], env={})
    _, from_env = Config.parse([], env={"SEATS_WATCH_MAX_SECONDS": "5.5", "SEATS_MAX_WATCH_STREAMS_PER_ACCOUNT": "3"})

    assert (defaults.watch_max_seconds, defaults.max_watch_streams_per_account, defaults.max_watch_streams) == (
        1800.0,
        4,
        8,
    )
    assert (flagged.watch_max_seconds, flagged.max_watch_streams_per_account) == (90.0, 2)
    assert (from_env.watch_max_seconds, from_env.max_watch_streams_per_account) == (5.5, 3)


# ---- slots per account and per server ---------------------------------------------------


def test_a_tenant_at_its_cap_does_not_block_another_tenants_watch(database: str, streams: list[Stream]) -> None:
    with served(database, max_watch_streams=4, max_watch_streams_per_account=2) as one:
        busy, quiet, late = new_account(one.seats), new_account(one.seats), new_account(one.seats)
        for _ in range(2):
            open_stream(streams, one.seats, busy).wait_for(last_sequence(one.seats, busy))
        over_own_cap = open_stream(streams, one.seats, busy).wait_until_refused()

        quiet_streams = [open_stream(streams, one.seats, quiet) for _ in range(2)]
        quiet_seen = [s.wait_for(last_sequence(one.seats, quiet)) for s in quiet_streams]
        new_user(one.users, quiet)
        quiet_live = [s.wait_for(last_sequence(one.seats, quiet)) for s in quiet_streams]
        server_full = open_stream(streams, one.seats, late).wait_until_refused()

        streams[0].close()  # one of the busy tenant's watches ends: it may watch again
        readmitted = wait_for_a_slot(streams, one.seats, busy)

    assert (over_own_cap.code, over_own_cap.info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHES")
    assert dict(over_own_cap.info.metadata) == {"limit": "account", "max": "2"}
    assert quiet_seen == [list(range(1, quiet_seen[0][-1] + 1))] * 2
    assert all(seen[-1] == quiet_seen[0][-1] + 1 for seen in quiet_live)
    assert (server_full.code, server_full.info.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHES")
    assert dict(server_full.info.metadata) == {"limit": "server", "max": "4"}
    assert readmitted


def wait_for_a_slot(
    opened: list[Stream], seats: seat_service_pb2_grpc.SeatServiceStub, tenant: Tenant, timeout: float = WAIT_SECONDS
) -> bool:
    """Opens watches until one is admitted (a closed watch gives its slot back once its handler
    notices, within a poll); True when one was."""
    deadline = time.monotonic() + timeout
    last = last_sequence(seats, tenant)
    while time.monotonic() < deadline:
        stream = open_stream(opened, seats, tenant)
        stream.wait_until(stream.started_or_ended, WAIT_SECONDS)
        if stream.events and stream.wait_for(last):
            return True
        refusal = stream.wait_until_refused()
        assert refusal.info.metadata["limit"] == "account", refusal.text
        time.sleep(POLL_SECONDS)
    return False


def test_a_cancelled_watch_gives_its_slot_back_at_once_not_at_the_next_poll(
    database: str, streams: list[Stream]
) -> None:
    """A client that cancels its watch and watches again at once (its account at its cap) is
    admitted long before the handler would have looked at the call again by itself."""
    with served(database, watch_poll_seconds=30.0, max_watch_streams_per_account=1) as one:
        tenant = new_account(one.seats)
        last = last_sequence(one.seats, tenant)
        first = open_stream(streams, one.seats, tenant)
        first.wait_for(last)
        started = time.monotonic()
        first.close()
        admitted = wait_for_a_slot(streams, one.seats, tenant, timeout=10.0)
        took = time.monotonic() - started

    assert admitted
    assert took < 10.0, took


def test_a_watch_ended_by_the_recheck_gives_its_slot_back(database: str, streams: list[Stream]) -> None:
    with served(database, max_watch_streams=3, max_watch_streams_per_account=1) as one:
        tenant = new_account(one.seats)
        member = new_user(one.users, tenant)
        first = open_stream(streams, one.seats, tenant, member.user_id)
        first.wait_for(last_sequence(one.seats, tenant))
        delete_user(one.users, tenant, member.user_id)  # ends the member's watch
        assert first.wait_until_refused().info.reason == "ACTOR_NOT_IN_ACCOUNT"
        admitted = wait_for_a_slot(streams, one.seats, tenant)

    assert admitted


def test_a_batch_that_deletes_nobody_keeps_the_watch(database: str, streams: list[Stream]) -> None:
    """Writes that touch other users (a batch of seat changes, many events in one transaction) do
    not end the watch of an actor that keeps its access."""
    with served(database) as one:
        tenant = new_account(one.seats, (SALES, STARTER, 10))
        member = new_user(one.users, tenant)
        others = [new_user(one.users, tenant).user_id for _ in range(6)]
        stream = open_stream(streams, one.seats, tenant, member.user_id)
        stream.wait_for(last_sequence(one.seats, tenant))
        batch(one.seats, tenant, *[(u, SALES, STARTER) for u in others])
        last = last_sequence(one.seats, tenant)
        seen = stream.wait_for(last)
        still_open = not stream.finished

    assert seen == list(range(1, last + 1))
    assert still_open
