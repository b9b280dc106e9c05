"""The event relay against a real NATS JetStream (a nats-server of each test's own, never the
machine's): events reach ``seats.events.<account>`` in order, exactly as ListSeatEvents lists them,
each once, with ``Nats-Msg-Id: <account>:<sequence>``, through a kill -9 of the server, a NATS
restart, a crash between publish and outbox delete, and the death of the leader among two relays.

The server processes are started as an operator starts them, with --nats-url."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc
import nats
import psycopg2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from seats.v1 import resources_pb2, seat_service_pb2

from service.config import Config
from service.relay import (
    PG_LOCK_CLASS,
    STREAM,
    SUBJECTS,
    NatsJetStreamPublisher,
    PgAdvisoryLock,
    Relay,
    leader_lock,
    start_relay,
)
from service.server import create_server
from service.store import Store, open_store
from tests.conftest import POSTGRES_URL, database_url
from tests.natsserver import NatsServer, nats_server_available
from tests.served import REPO, ServerProcess, free_port, launch, wait_until_serving
from tests.toolkit import unique_email

from .support import CALL_SECONDS, PROFESSIONAL, SALES, SERVICE, STARTER, Client, actor, all_events, call

pytestmark = pytest.mark.slow

WAIT_SECONDS = 30.0
"""Bound of every wait for a condition (a relay to lead, the outbox to empty)."""
READ_SECONDS = 5.0
"""How long the stream reader waits for the next message the stream says is there."""
KILLS = 2
POOLS = ((SALES, PROFESSIONAL), (SERVICE, STARTER))
CHANNEL_OPTIONS = [  # reconnect at once to a server restarted on the same port
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]


# ---- waiting, NATS and the stream ---------------------------------------------------------------


def wait_for(condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.02)


@pytest.fixture
def bus(tmp_path: Path) -> Iterator[NatsServer]:
    """A NATS server with JetStream of this test's own, on a free port."""
    missing = nats_server_available()
    if missing is not None:
        pytest.skip(missing)
    with NatsServer(tmp_path / "nats") as server:
        yield server


@pytest.fixture
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL schema of this test's own (skipped without SEATS_TEST_POSTGRES_URL)."""
    url = database_url("postgres", tmp_path_factory)
    try:
        yield url
    finally:
        store = open_store(url)
        try:
            store.drop_schema()
        finally:
            store.close()


@dataclass(frozen=True)
class Received:
    """One message of the stream: its subject, its Nats-Msg-Id and the event it carries."""

    subject: str
    message_id: str
    event: resources_pb2.SeatEvent


async def _read_stream(url: str) -> list[Received]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(STREAM)
        if not info.state.messages:
            return []
        subscription = await js.subscribe(SUBJECTS, ordered_consumer=True)  # from the start of the stream
        received: list[Received] = []
        while True:
            message = await subscription.next_msg(timeout=READ_SECONDS)
            headers = message.headers or {}
            received.append(
                Received(
                    message.subject, headers.get("Nats-Msg-Id", ""), resources_pb2.SeatEvent.FromString(message.data)
                )
            )
            if message.metadata.num_pending == 0:
                await subscription.unsubscribe()
                return received
    finally:
        await nc.close()


def read_stream(url: str) -> list[Received]:
    """Every message of SEATS_EVENTS, in stream order, read by a JetStream consumer on seats.events.>."""
    return asyncio.run(_read_stream(url))


async def _stream_config(url: str) -> tuple[float, str]:
    nc = await nats.connect(url)
    try:
        info = await nc.jetstream().stream_info(STREAM)
        return float(info.config.duplicate_window or 0), str(info.config.storage)
    finally:
        await nc.close()


def check_stream(received: list[Received], account_id: str, listed: list[resources_pb2.SeatEvent]) -> str:
    """The account's messages are exactly its events as ListSeatEvents lists them, in order, each
    once, with their message ids; returns the figures."""
    subject = f"seats.events.{account_id}"
    mine = [r for r in received if r.subject == subject]
    sequences = [r.event.sequence for r in mine]
    copies = [s for s, n in Counter(sequences).items() if n > 1]
    assert not copies, f"{account_id}: events on the stream twice: {copies[:10]}"
    want = [e.sequence for e in listed]
    assert sequences == want, (
        f"{account_id}: the stream has sequences {sequences[:5]}..{sequences[-5:]} ({len(sequences)}), "
        f"ListSeatEvents {want[:5]}..{want[-5:]} ({len(want)}); missing {sorted(set(want) - set(sequences))[:10]}"
    )
    assert [r.message_id for r in mine] == [f"{account_id}:{s}" for s in want], "a Nats-Msg-Id is not account:sequence"
    for got, expected in zip(mine, listed, strict=True):
        assert got.event == expected, f"{account_id}: event {expected.sequence} differs:\n{got.event}\n{expected}"
    return f"{len(mine)} events of {account_id} on {subject}, in order, each once, equal to ListSeatEvents"


# ---- servers and writers --------------------------------------------------------------------------


@contextmanager
def channel_to(address: str) -> Iterator[Client]:
    from seats.v1 import seat_service_pb2_grpc, user_service_pb2_grpc

    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    try:
        yield Client(
            address,
            channel,
            seat_service_pb2_grpc.SeatServiceStub(channel),
            user_service_pb2_grpc.UserServiceStub(channel),
        )
    finally:
        channel.close()


@dataclass
class InProcess:
    """A server of this process with its relay."""

    client: Client
    store: Store
    relay: Relay


@contextmanager
def relaying_server(url: str, nats_url: str, publisher: NatsJetStreamPublisher | None = None) -> Iterator[InProcess]:
    """A server of this process on url, with the relay start_relay makes, or one of the same
    wiring over publisher. The server itself is built without a bus, so that the relay is this
    test's whatever create_server wires."""
    store = open_store(url)
    store.migrate()
    config = Config(address="127.0.0.1:0", database_url=url, sweep_interval_seconds=0)
    server, port = create_server(config, store)
    if publisher is None:
        relay = start_relay(replace(config, nats_url=nats_url), store)
        assert relay is not None
    else:
        store.outbox = True
        relay = Relay(store, publisher, lock=leader_lock(store))
        store.add_commit_listener(lambda _account_id: relay.wake())
        relay.start()
    server.start()
    try:
        with channel_to(f"127.0.0.1:{port}") as client:
            yield InProcess(client, store, relay)
    finally:
        relay.stop()
        server.stop(None).wait()
        store.close()


def launch_relaying(directory: Path, port: int, url: str, nats_url: str, metrics_port: int) -> ServerProcess:
    """A server process as an operator starts it with --nats-url, metrics on metrics_port."""
    flags = ("--nats-url", nats_url, "--metrics-address", f"127.0.0.1:{metrics_port}", "--sweep-interval-seconds", "0")
    server = launch(directory, port=port, database_url=url, flags=flags)
    wait_until_serving(server)
    return server


def scrape(metrics_port: int, name: str) -> float | None:
    """A series of a server's /metrics, None when it does not answer or lacks it."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def wait_value(metrics_port: int, name: str) -> float:
    """A series of a server's /metrics, scraped until the server answers."""
    found: list[float] = []

    def answered() -> bool:
        value = scrape(metrics_port, name)
        if value is not None:
            found.append(value)
        return bool(found)

    wait_for(answered, f"{name} on metrics port {metrics_port}")
    return found[0]


def new_tenant(client: Client) -> tuple[str, tuple[tuple[str, str], ...]]:
    created = client.seats.CreateAccount(
        seat_service_pb2.CreateAccountRequest(
            display_name="Relay",
            owner_email=unique_email("relay"),
            term_months=1,
            subscriptions=[resources_pb2.Subscription(hub=h, tier=t) for h, t in POOLS],
        ),
        timeout=CALL_SECONDS,
    )
    return created.account.account_id, actor(created.account.owner_user_id)


@dataclass
class Writer:
    """Buys one seat at a time on one account, through whichever server `target` names, each
    purchase with a request id of its own, re-sent until answered OK: a purchase whose answer was
    lost to a kill counts once (I5), so the account's events have no hole of the writer's making."""

    target: list[Client]
    account_id: str
    owner: tuple[tuple[str, str], ...]
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            request = seat_service_pb2.PurchaseSeatsRequest(
                account_id=self.account_id,
                hub=SALES,
                tier=PROFESSIONAL,
                quantity=1,
                request_id=f"relay-{uuid.uuid4().hex[:16]}",
            )
            while not self.stop.is_set():
                seats = self.target[0].seats
                answer = call(seats.PurchaseSeats, request, op="purchase", metadata=self.owner, timeout=5)
                if answer.ok:
                    self.ok += 1
                    break
                self.failures.append(answer.outcome)
                time.sleep(0.05)

    @contextmanager
    def running(self) -> Iterator[Writer]:
        thread = threading.Thread(target=self.run, name="writer", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.stop.set()
            thread.join(timeout=CALL_SECONDS)
            assert not thread.is_alive(), "the writer still runs"


def outbox_empty(url: str) -> Callable[[], bool]:
    """Whether the database's outbox is empty, read through a store of the test's own."""

    def empty() -> bool:
        store = open_store(url)
        try:
            return store.read(store.outbox_backlog)[0] == 0
        finally:
            store.close()

    return empty


def wait_purchases(writer: Writer, more: int) -> None:
    target = writer.ok + more
    wait_for(lambda: writer.ok >= target, f"{target} purchases")


# ---- 1. events reach NATS in order ------------------------------------------------------------------


def test_events_reach_nats_in_order_with_message_ids(db_url: str, bus: NatsServer) -> None:
    """Writes on two accounts: each account's events are on seats.events.<account>, in order, equal
    to ListSeatEvents, with Nats-Msg-Id account:sequence; the outbox ends empty; the stream is the
    one the relay made (file storage, a two-minute duplicate window); the example consumer prints
    every event once."""
    with relaying_server(db_url, bus.url) as served:
        tenants = [new_tenant(served.client) for _ in range(2)]
        for account_id, owner in tenants:
            for i in range(5):
                reply = call(
                    served.client.seats.PurchaseSeats,
                    seat_service_pb2.PurchaseSeatsRequest(
                        account_id=account_id,
                        hub=SALES,
                        tier=PROFESSIONAL,
                        quantity=i + 1,
                        request_id=f"relay-{uuid.uuid4().hex[:16]}",
                    ),
                    op="purchase",
                    metadata=owner,
                )
                assert reply.ok, reply.describe()
        registry = served.relay.registry
        wait_for(lambda: served.store.read(served.store.outbox_backlog) == (0, None), "the outbox empties")
        wait_for(lambda: registry.get_sample_value("seats_relay_lag_seconds") == 0.0, "the lag gauge reads 0")
        listed = {a: all_events(served.client, a) for a, _ in tenants}
        assert registry.get_sample_value("seats_relay_published_total") == sum(map(len, listed.values()))
    received = read_stream(bus.url)
    figures = [check_stream(received, a, events) for a, events in listed.items()]
    window, storage = asyncio.run(_stream_config(bus.url))
    assert (window, storage) == (120.0, "file"), (window, storage)
    print(f"\n[relay {db_url.split(':')[0]}] " + "; ".join(figures))

    if db_url.startswith("sqlite"):
        consumer = subprocess.run(
            [sys.executable, str(REPO / "examples" / "nats_consumer.py"), "--url", bus.url, "--idle-exit", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=REPO,
        )
        assert consumer.returncode == 0, consumer.stderr
        printed = [line.split() for line in consumer.stdout.splitlines()]
        want = [
            [a, str(e.sequence), resources_pb2.SeatEventType.Name(e.type).removeprefix("SEAT_EVENT_TYPE_")]
            for a, events in listed.items()
            for e in events
        ]
        assert sorted(printed) == sorted(want), consumer.stdout
        for account_id in listed:  # in order per account
            assert [int(p[1]) for p in printed if p[0] == account_id] == [e.sequence for e in listed[account_id]]


def test_republished_events_are_dropped_by_jetstream(
    tmp_path: Path, bus: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash between publish and the outbox delete, three times: the relay publishes those events
    again, JetStream acknowledges the copies as duplicates and keeps each event once."""
    with relaying_server(f"sqlite:///{tmp_path / 'seats.db'}", bus.url) as served:
        forget = served.store.outbox_done
        crashes = [3]

        def crash_before_delete(account_id: str, through: int) -> None:
            if crashes[0] > 0:
                crashes[0] -= 1
                raise RuntimeError("crashed between publish and the outbox delete")
            forget(account_id, through)

        monkeypatch.setattr(served.store, "outbox_done", crash_before_delete)
        account_id, _ = new_tenant(served.client)
        wait_for(lambda: served.store.read(served.store.outbox_backlog)[0] == 0, "the outbox empties")
        publisher = served.relay.publisher
        assert isinstance(publisher, NatsJetStreamPublisher)
        listed = all_events(served.client, account_id)
        assert crashes == [0]
        assert publisher.duplicates >= 3, publisher.duplicates  # the events of each crashed batch, again
        failures = served.relay.registry.get_sample_value("seats_relay_failures_total", {"stage": "database"})
        assert failures == 3, failures
    print(
        f"\n[relay dedupe] {check_stream(read_stream(bus.url), account_id, listed)}; "
        f"{publisher.duplicates} republished copies dropped by JetStream"
    )


# ---- 2. kill -9 of the server in the middle of a stream of writes ---------------------------------


def test_kill_9_mid_stream_loses_and_repeats_nothing_on_the_bus(db_url: str, tmp_path: Path, bus: NatsServer) -> None:
    """A server with a relay, writes from a client thread; kill -9 twice, each time started again on
    the same port: the stream holds every event of the account, in order, once."""
    port, metrics_port = free_port(), free_port()
    servers: list[ServerProcess] = []
    try:
        servers.append(launch_relaying(tmp_path, port, db_url, bus.url, metrics_port))
        with channel_to(servers[-1].address) as client:
            account_id, owner = new_tenant(client)
            writer = Writer([client], account_id, owner)
            with writer.running():
                for _ in range(KILLS):
                    wait_purchases(writer, 30)
                    wait_for(lambda: (scrape(metrics_port, "seats_relay_published_total") or 0) > 0, "publishes")
                    servers[-1].kill()  # SIGKILL: mid-publish, or between publish and outbox delete
                    servers.append(launch_relaying(tmp_path, port, db_url, bus.url, metrics_port))
                wait_purchases(writer, 30)
            wait_for(outbox_empty(db_url), "the outbox empties")
            listed = all_events(client, account_id)
        leads = sum(len(s.logged("relay leads")) for s in servers)
        assert leads == KILLS + 1, f"every server led once: {leads} 'relay leads' lines"
        figures = check_stream(read_stream(bus.url), account_id, listed)
        print(
            f"\n[relay kill -9 {db_url.split(':')[0]}] {KILLS} kills, {writer.ok} purchases, "
            f"{len(writer.failures)} calls failed while the server was down; {figures}"
        )
    finally:
        for s in servers:
            s.kill()


# ---- 3. NATS restart ---------------------------------------------------------------------------------


def test_nats_restart_loses_nothing_and_the_lag_rises_then_falls(db_url: str, bus: NatsServer) -> None:
    """NATS stops while writes go on (they never fail: the outbox holds the events), then starts
    again on the same port and store: nothing lost, nothing reordered; the lag rose while NATS was
    down and is back to 0. Publishes wait half a second for their acknowledgement, so that the
    outage fails several of them, each retried."""
    with relaying_server(db_url, bus.url, NatsJetStreamPublisher(bus.url, ack_seconds=0.5)) as served:
        registry = served.relay.registry

        def sample(name: str, labels: dict[str, str] | None = None) -> float:
            return registry.get_sample_value(name, labels) or 0.0

        account_id, owner = new_tenant(served.client)
        writer = Writer([served.client], account_id, owner)
        with writer.running():
            wait_for(lambda: sample("seats_relay_published_total") >= 10, "10 events published")
            bus.stop()
            wait_for(lambda: sample("seats_relay_lag_seconds") >= 1.0, "the lag passes 1 s")
            rising = sample("seats_relay_lag_seconds")
            wait_for(lambda: sample("seats_relay_lag_seconds") >= rising + 1.0, "the lag keeps rising")
            down = (sample("seats_relay_lag_seconds"), sample("seats_relay_backlog_events"), writer.ok)
            assert down[1] > 0, "events wait in the outbox while NATS is down"
            bus.start()
            wait_purchases(writer, 20)
        wait_for(
            lambda: sample("seats_relay_backlog_events") == 0 and sample("seats_relay_lag_seconds") == 0.0,
            "the backlog and the lag fall back to 0",
        )
        assert not writer.failures, f"writes failed while NATS was down: {writer.failures[:5]}"
        failures = sample("seats_relay_failures_total", {"stage": "publish"})
        assert failures > 0, "publishes failed while NATS was down, and were retried"
        listed = all_events(served.client, account_id)
    figures = check_stream(read_stream(bus.url), account_id, listed)
    print(
        f"\n[relay NATS restart {db_url.split(':')[0]}] lag {down[0]:.1f}s and backlog {down[1]:.0f} while down "
        f"({down[2]} writes OK by then), {failures:.0f} publishes timed out and were retried, lag back to 0; "
        f"{figures}"
    )


# ---- 4. two relays on one database ---------------------------------------------------------------------


def test_two_servers_relay_once_and_the_survivor_takes_over(db_url: str, tmp_path: Path, bus: NatsServer) -> None:
    """Two servers with relays on one database: one leads, the other does not publish; kill -9 the
    leader: the other leads and relays the rest."""
    ports = [(free_port(), free_port()) for _ in range(2)]
    servers = [launch_relaying(tmp_path, port, db_url, bus.url, metrics) for port, metrics in ports]
    samples: list[list[float | None]] = []
    sampled = threading.Event()

    def leaders() -> list[float | None]:
        return [scrape(metrics, "seats_relay_leader") for _, metrics in ports]

    def sample_leaders() -> None:  # both servers' seats_relay_leader, every 50 ms until the kill
        while not sampled.wait(0.05):
            sample = leaders()
            if None not in sample:  # both answered (a scrape may time out on a loaded machine)
                samples.append(sample)

    sampler = threading.Thread(target=sample_leaders, daemon=True)
    try:
        wait_for(lambda: sorted(leaders(), key=str) == [0.0, 1.0], "one leader, one follower")
        first = 0 if wait_value(ports[0][1], "seats_relay_leader") == 1.0 else 1
        leader, survivor = servers[first], servers[1 - first]
        sampler.start()
        with channel_to(survivor.address) as client, channel_to(leader.address) as other:
            account_id, owner = new_tenant(other)
            writer = Writer([other], account_id, owner)
            with writer.running():
                wait_for(lambda: writer.ok >= 20, "20 purchases through the leader's server")
                writer.target[0] = client
                wait_for(lambda: writer.ok >= 40, "20 purchases through the other server")
                wait_for(lambda: len(samples) >= 30, "30 samples of both leader gauges")  # 1.5 s: elections ran
                sampled.set()
                sampler.join()
                assert wait_value(ports[1 - first][1], "seats_relay_published_total") == 0, "the follower published"
                leader.kill()
                wait_for(lambda: scrape(ports[1 - first][1], "seats_relay_leader") == 1.0, "the survivor leads")
                wait_for(lambda: writer.ok >= 60, "20 more purchases")
            wait_for(outbox_empty(db_url), "the outbox empties")
            listed = all_events(client, account_id)
        one = [1.0, 0.0] if first == 0 else [0.0, 1.0]
        assert all(s == one for s in samples), f"seats_relay_leader of both servers: {samples}"
        assert len(survivor.logged("relay leads")) == 1 and len(leader.logged("relay leads")) == 1
        figures = check_stream(read_stream(bus.url), account_id, listed)
        taken = wait_value(ports[1 - first][1], "seats_relay_published_total")
        print(
            f"\n[relay two servers {db_url.split(':')[0]}] {len(samples)} samples, one leader; the survivor "
            f"published {taken:.0f} after the kill; {figures}"
        )
    finally:
        sampled.set()
        for s in servers:
            s.kill()


def test_leader_whose_lock_connection_dies_steps_down(pg_url: str, bus: NatsServer) -> None:
    """PostgreSQL: the leader's lock session is terminated (a failover, a network cut): it stops
    publishing, the other relay takes the lock and relays what follows; the first one follows."""
    with relaying_server(pg_url, bus.url) as served:
        store = served.store
        assert store.schema is not None
        second = Relay(store, NatsJetStreamPublisher(bus.url), lock=PgAdvisoryLock.from_url(pg_url, store.schema))
        store.add_commit_listener(lambda _account_id: second.wake())
        second.start()
        try:
            relays = [served.relay, second]
            wait_for(lambda: sum(r.leader for r in relays) == 1, "one leader")
            leader = next(r for r in relays if r.leader)
            follower = next(r for r in relays if r is not leader)
            account_id, owner = new_tenant(served.client)
            wait_for(lambda: store.read(store.outbox_backlog)[0] == 0, "the outbox empties")
            key = PgAdvisoryLock.from_url(pg_url, store.schema).key
            assert key[0] == PG_LOCK_CLASS
            with psycopg2.connect(POSTGRES_URL) as admin, admin.cursor() as cur:
                cur.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND classid = %s AND objid = %s AND objsubid = 2 AND granted",
                    key,
                )
                assert cur.fetchall() == [(True,)], "one session held the relay lock"
            admin.close()
            wait_for(lambda: follower.leader and not leader.leader, "the other relay leads")
            writer = Writer([served.client], account_id, owner)
            with writer.running():
                wait_for(lambda: writer.ok >= 20, "20 purchases")
            wait_for(lambda: store.read(store.outbox_backlog)[0] == 0, "the new leader empties the outbox")
            assert (follower.registry.get_sample_value("seats_relay_published_total") or 0) >= 20
            listed = all_events(served.client, account_id)
        finally:
            second.stop()
    print(f"\n[relay lock lost] {check_stream(read_stream(bus.url), account_id, listed)}")
