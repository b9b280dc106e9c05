"""The event relay without a bus (service/relay.py): a fake Publisher that fails now and then shows
that the relay publishes each account's events in order, each only after the previous one was
acknowledged, retries a failed event instead of skipping it, and empties the outbox; two relays on
one SQLite database elect one leader, and the other takes over when it stops. The relay against a
real NATS server is tests/faults/test_nats_relay.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from seats.v1 import resources_pb2

from service.config import Config
from service.relay import FileLock, Relay, leader_lock, start_relay
from service.store import Store, open_store
from tests.conftest import Running, served

from .helpers import PROFESSIONAL, SALES, SERVICE, STARTER, Tenant, events, new_account, new_user, purchase

WAIT_SECONDS = 15.0


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.01)


def backlog(store: Store) -> int:
    return store.read(store.outbox_backlog)[0]


class FlakyPublisher:
    """Fails every third publish (the retry of that event is another publish), and checks, at the
    moment of each call, what the relay promises: no two publishes of one account at once, and the
    next event of an account only after the one before was acknowledged."""

    def __init__(self) -> None:
        self.calls = 0
        self.failed = 0
        self.acked: dict[str, int] = {}
        self.bodies: dict[str, list[bytes]] = {}
        self.busy: set[str] = set()
        self.broken: list[str] = []
        self.overlapped = 0  # publishes that ran while another account's was in flight

    async def connect(self) -> None:
        pass

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        account, _, number = message_id.rpartition(":")
        sequence = int(number)
        if subject != f"seats.events.{account}":
            self.broken.append(f"{message_id} published on {subject}")
        if account in self.busy:
            self.broken.append(f"{message_id} published while another event of {account} was in flight")
        if sequence != self.acked.get(account, 0) + 1:
            self.broken.append(f"{message_id} published after {account}:{self.acked.get(account, 0)} was acked")
        self.overlapped += bool(self.busy)
        self.busy.add(account)
        try:
            await asyncio.sleep(0.001)  # other accounts' publishes run meanwhile
            self.calls += 1
            if self.calls % 3 == 0:
                self.failed += 1
                raise ConnectionError("the bus refused it")
            self.acked[account] = sequence
            self.bodies.setdefault(account, []).append(body)
        finally:
            self.busy.discard(account)

    async def close(self) -> None:
        pass


@contextmanager
def relaying(store: Store, publisher: FlakyPublisher, lock_path: Path) -> Iterator[Relay]:
    relay = Relay(
        store,
        publisher,
        lock=FileLock(lock_path),
        registry=CollectorRegistry(),
        backoff_first=0.001,
        backoff_max=0.01,
    )
    store.add_commit_listener(lambda _account_id: relay.wake())
    relay.start()
    try:
        yield relay
    finally:
        relay.stop()


@pytest.fixture
def outboxed(tmp_path: Path) -> Iterator[Running]:
    """A server on a fresh SQLite database whose events go to the outbox."""
    with served("sqlite", f"sqlite:///{tmp_path / 'seats.db'}") as running:
        running.store.outbox = True
        yield running


def write_some(running: Running, tenant: Tenant, n: int) -> None:
    for i in range(n):
        purchase(running.seats, tenant, SALES, PROFESSIONAL, 1)
        new_user(running.users, tenant, seats=[(SERVICE, STARTER)] if i % 2 else [], purchase_if_needed=True)


def test_relay_publishes_each_account_in_order_and_retries_instead_of_skipping(
    outboxed: Running, tmp_path: Path
) -> None:
    """Four accounts written at once; one publish in three fails: every event reaches the bus once
    acknowledged, in sequence order per account, equal to ListSeatEvents; the outbox ends empty."""
    publisher = FlakyPublisher()
    with relaying(outboxed.store, publisher, tmp_path / "relay.lock") as relay:
        tenants = [new_account(outboxed.seats, (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0)) for _ in range(4)]
        writers = [threading.Thread(target=write_some, args=(outboxed, t, 6)) for t in tenants]
        for w in writers:
            w.start()
        for w in writers:
            w.join(timeout=60)
        wait_for(lambda: backlog(outboxed.store) == 0, "the outbox is empty")
        wait_for(lambda: not publisher.busy, "no publish in flight")
        published = relay.registry.get_sample_value("seats_relay_published_total")
        failures = relay.registry.get_sample_value("seats_relay_failures_total", {"stage": "publish"})
    assert not publisher.broken, "\n".join(publisher.broken[:10])
    total = 0
    for tenant in tenants:
        listed = events(outboxed.seats, tenant)
        got = [resources_pb2.SeatEvent.FromString(b) for b in publisher.bodies[tenant.id]]
        assert got == listed, f"{tenant.id}: the bus got {len(got)} events, ListSeatEvents has {len(listed)}"
        total += len(listed)
    assert publisher.failed > 0 and failures == publisher.failed, (publisher.failed, failures)
    assert published == total, (published, total)
    print(
        f"\n[relay] {total} events of 4 accounts, {publisher.calls} publishes of which {publisher.failed} failed "
        f"and were retried; {publisher.overlapped} publishes overlapped another account's"
    )


def test_two_relays_elect_one_leader_and_the_other_takes_over(outboxed: Running, tmp_path: Path) -> None:
    first, second = FlakyPublisher(), FlakyPublisher()
    lock = tmp_path / "relay.lock"
    with relaying(outboxed.store, first, lock) as a, relaying(outboxed.store, second, lock) as b:
        wait_for(lambda: a.leader or b.leader, "a leader")
        leader, follower = (a, b) if a.leader else (b, a)
        tenant = new_account(outboxed.seats)
        wait_for(lambda: backlog(outboxed.store) == 0, "the leader empties the outbox")
        assert not follower.leader
        assert (first if leader is a else second).acked.get(tenant.id), "the leader published"
        assert not (second if leader is a else first).acked, "the follower published nothing"
        leader.stop()
        wait_for(lambda: follower.leader, "the follower takes the lead")
        purchase(outboxed.seats, tenant, SALES, PROFESSIONAL, 2)
        wait_for(lambda: backlog(outboxed.store) == 0, "the new leader empties the outbox")
        took_over = second if leader is a else first
        assert took_over.acked.get(tenant.id) == events(outboxed.seats, tenant)[-1].sequence


def test_a_relay_started_before_migration_waits_for_the_outbox(tmp_path: Path) -> None:
    """A server starts its relay, then migrates: the relay waits for the outbox table, then leads."""
    store = open_store(f"sqlite:///{tmp_path / 'seats.db'}")
    publisher = FlakyPublisher()
    try:
        with relaying(store, publisher, tmp_path / "relay.lock") as relay:
            store.migrate()
            wait_for(lambda: relay.leader, "the relay leads once the outbox exists")
    finally:
        store.close()


def test_file_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "seats.db.relay.lock"
    one, two = FileLock(path), FileLock(path)
    assert one.acquire() and one.holds()
    assert not two.acquire() and not two.holds()
    one.release()
    assert two.acquire()
    two.release()


def test_sqlite_lock_sits_next_to_the_database(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'seats.db'}")
    lock = leader_lock(store)
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "seats.db.relay.lock"


def test_no_bus_no_relay(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'seats.db'}")
    assert start_relay(Config(nats_url=""), store) is None
    assert store.outbox is False
