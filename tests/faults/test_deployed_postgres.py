"""PostgreSQL as it is deployed: a primary with a streaming hot standby, and PgBouncer in
transaction pooling mode in front of the primary. Each test starts clusters of its own under a
temporary folder with the machine's PostgreSQL binaries (tests/pgcluster.py), never the
machine's own server.

- Standby: lists of users and assignments and the event history go to the standby while it is
  within --read-max-lag-seconds of the primary; when its replay stops they go to the primary
  once the bound is passed, so no answer is ever staler than the bound; whatever decides a
  write (an etag read by GetUser, the rules) reads the primary all along.
- PgBouncer: the service runs every call through a transaction-pooling PgBouncer (no session
  state), with migrations and the event listener on a direct connection.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc, user_service_pb2, user_service_pb2_grpc

from tests.conftest import actor
from tests.contract.helpers import PROFESSIONAL, SALES, new_account
from tests.pgcluster import (
    PgBouncer,
    PgCluster,
    pgbouncer_available,
    postgres_binaries_available,
    primary,
    standby,
    wait_replayed,
)
from tests.served import ServerProcess, free_port, serving
from tests.toolkit import unique_email

MISSING = postgres_binaries_available()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"PostgreSQL clusters of the tests' own: {MISSING}")

MAX_LAG = 1.0
WORKERS = 6
POOL_SIZE = 4
DATABASE = "seats"


@pytest.fixture
def clusters(tmp_path: Path) -> Iterator[tuple[PgCluster, PgCluster]]:
    """A primary with a database for the service, and its streaming hot standby."""
    first = primary(tmp_path / "primary")
    try:
        first.create_database(DATABASE)
        second = standby(first, tmp_path / "standby")
        try:
            yield first, second
        finally:
            second.close()
    finally:
        first.close()


def _metric(server_metrics: str, name: str, labels: str = "") -> float:
    """One sample of the server's Prometheus text."""
    text = urllib.request.urlopen(f"http://{server_metrics}/metrics", timeout=5).read().decode()
    wanted = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(wanted + " "):
            return float(line.split()[-1])
    raise AssertionError(f"no sample {wanted} in the metrics:\n{text}")


def _user_ids(users: user_service_pb2_grpc.UserServiceStub, account_id: str, owner: str) -> set[str]:
    answer = users.ListUsers(
        user_service_pb2.ListUsersRequest(account_id=account_id, page_size=1000), metadata=actor(owner), timeout=10
    )
    return {u.user_id for u in answer.users}


def _new_user(users: user_service_pb2_grpc.UserServiceStub, account_id: str, owner: str) -> str:
    answer = users.CreateUser(
        user_service_pb2.CreateUserRequest(account_id=account_id, email=unique_email("member"), display_name="Member"),
        metadata=actor(owner),
        timeout=10,
    )
    return str(answer.user.user_id)


def _wait(condition: object, timeout: float, what: str) -> float:
    """Waits until condition() holds; returns the seconds it took."""
    start = time.monotonic()
    while not condition():  # type: ignore[operator]
        assert time.monotonic() - start < timeout, f"{what} after {timeout}s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_lists_read_the_standby_within_the_bound_and_the_primary_beyond_it(
    clusters: tuple[PgCluster, PgCluster], tmp_path: Path
) -> None:
    first, second = clusters
    metrics = f"127.0.0.1:{free_port()}"
    flags = (
        "--read-database-url", second.url(DATABASE),
        "--read-max-lag-seconds", str(MAX_LAG),
        "--metrics-address", metrics,
    )  # fmt: skip
    with (
        serving(tmp_path, database_url=first.url(DATABASE), flags=flags) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        seats = seat_service_pb2_grpc.SeatServiceStub(channel)
        users = user_service_pb2_grpc.UserServiceStub(channel)
        tenant = new_account(seats, (SALES, PROFESSIONAL, 1))
        owner = tenant.owner_id
        member = _new_user(users, tenant.id, owner)

        # Replaying: the list comes from the standby, and shows the new user within the bound.
        took = _wait(lambda: member in _user_ids(users, tenant.id, owner), MAX_LAG + 1, "the new user is listed")
        assert _metric(metrics, "seats_stale_reads_total", 'target="standby"') > 0
        assert _metric(metrics, "seats_standby_lag_seconds") <= MAX_LAG
        print(f"\nlisted {took * 1000:.0f} ms after it was created, through the standby")

        # Replay paused: the standby stands still. Writes still decide on the primary.
        second.query("SELECT pg_wal_replay_pause()")
        paused_at = time.monotonic()
        late = _new_user(users, tenant.id, owner)
        got = users.GetUser(
            user_service_pb2.GetUserRequest(account_id=tenant.id, user_id=late), metadata=actor(owner), timeout=10
        )
        updated = users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(account_id=tenant.id, user_id=late, display_name="Renamed"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                etag=got.user.etag,
            ),
            metadata=actor(owner),
            timeout=10,
        )
        assert updated.user.display_name == "Renamed", "an etag read while the standby lags decides on the primary"
        # No answer is staler than the bound: once it has passed, the list shows the user.
        _wait(lambda: late in _user_ids(users, tenant.id, owner), MAX_LAG + 2, "the list reaches the primary")
        print(f"listed {(time.monotonic() - paused_at) * 1000:.0f} ms after the standby stopped replaying")
        assert second.query("SELECT pg_is_wal_replay_paused()")[0][0] is True
        assert late not in {r[0] for r in second.query("SELECT user_id FROM users", dbname=DATABASE)}
        primary_reads = _metric(metrics, "seats_stale_reads_total", 'target="primary"')
        assert primary_reads > 0
        assert _metric(metrics, "seats_standby_lag_seconds") > MAX_LAG

        # Replay resumed: back to the standby.
        second.query("SELECT pg_wal_replay_resume()")
        wait_replayed(first, second)
        _wait(lambda: _metric(metrics, "seats_standby_lag_seconds") <= MAX_LAG, 5, "the standby catches up")
        before = _metric(metrics, "seats_stale_reads_total", 'target="standby"')
        assert late in _user_ids(users, tenant.id, owner)
        page = seats.ListSeatEvents(
            seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id, page_size=100),
            metadata=actor(owner),
            timeout=10,
        )
        assert [e.sequence for e in page.events] == list(range(1, len(page.events) + 1))
        assert _metric(metrics, "seats_stale_reads_total", 'target="standby"') >= before + 1

        # The standby gone: lists still answer, from the primary.
        second.stop()
        assert late in _user_ids(users, tenant.id, owner)
        assert _user_ids(users, tenant.id, owner) == {owner, member, late}


def test_the_service_runs_through_a_transaction_pooling_pgbouncer(tmp_path: Path) -> None:
    missing = pgbouncer_available()
    if missing is not None:
        pytest.skip(f"PgBouncer: {missing}")
    with primary(tmp_path / "primary") as first:
        first.create_database(DATABASE)
        with PgBouncer(first, tmp_path / "bouncer", default_pool_size=POOL_SIZE) as bouncer:
            flags = ("--direct-database-url", first.url(DATABASE), "--max-workers", str(WORKERS))
            with serving(tmp_path, database_url=bouncer.url(DATABASE), flags=flags) as server:
                _workload_through(server, bouncer, first)


def _workload_through(server: ServerProcess, bouncer: PgBouncer, first: PgCluster) -> None:
    """Writes from several threads (more than the pooler's 4 server connections), lists and a
    watch: everything answers, and the transactions went through the pooler."""
    before = _bouncer_transactions(bouncer)
    with grpc.insecure_channel(server.address) as channel:
        seats = seat_service_pb2_grpc.SeatServiceStub(channel)
        users = user_service_pb2_grpc.UserServiceStub(channel)
        tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
        owner = tenant.owner_id
        members = [_new_user(users, tenant.id, owner) for _ in range(8)]
        watched: list[int] = []
        stream = seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=tenant.id), metadata=actor(owner), timeout=60
        )

        def watch() -> None:
            try:
                for message in stream:
                    watched.append(message.event.sequence)
            except grpc.RpcError:
                pass  # cancelled at the end

        threading.Thread(target=watch, daemon=True).start()
        failures: list[BaseException] = []

        def buy_and_assign(user_id: str) -> None:
            try:
                seats.PurchaseSeats(
                    seat_service_pb2.PurchaseSeatsRequest(
                        account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1, request_id=f"buy-{user_id}"
                    ),
                    metadata=actor(owner),
                    timeout=10,
                )
                seats.AssignSeat(
                    seat_service_pb2.AssignSeatRequest(
                        account_id=tenant.id, user_id=user_id, hub=SALES, tier=PROFESSIONAL
                    ),
                    metadata=actor(owner),
                    timeout=10,
                )
            except BaseException as exc:  # collected: the test fails on any of them
                failures.append(exc)

        threads = [threading.Thread(target=buy_and_assign, args=(m,)) for m in members]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not failures, failures
        summary = seats.GetSeatSummary(
            seat_service_pb2.GetSeatSummaryRequest(account_id=tenant.id), metadata=actor(owner), timeout=10
        )
        pool = next(p for p in summary.pools if p.hub == SALES and p.tier == PROFESSIONAL)
        assert (pool.purchased, pool.assigned) == (8, 8)
        last = len(
            seats.ListSeatEvents(
                seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id, page_size=1000),
                metadata=actor(owner),
                timeout=10,
            ).events
        )
        _wait(lambda: len(watched) >= last, 5, "the watch sees every event")
        stream.cancel()  # type: ignore[no-untyped-call]
        assert watched == list(range(1, last + 1))
    assert _bouncer_transactions(bouncer) - before >= 16, "the calls did not go through the pooler"
    # Connections: the process holds at most one per handler thread and one for the sweeper
    # (kept open, the store's per-thread connection), to the pooler; the primary sees at most
    # the pooler's pool, and the listener's direct session.
    clients = [row for row in bouncer.admin("SHOW CLIENTS") if row[2] == DATABASE]
    assert 0 < len(clients) <= WORKERS + 1, clients
    sessions = first.query(
        "SELECT application_name FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
        (DATABASE,),
    )
    names = sorted(name for (name,) in sessions)
    assert names.count("seats listener seats_events") == 1, names
    assert len(names) - 1 <= POOL_SIZE, names


def _bouncer_transactions(bouncer: PgBouncer) -> int:
    """Transactions PgBouncer has passed to the service's database."""
    rows = bouncer.admin("SHOW STATS")
    return sum(int(row[1]) for row in rows if row[0] == DATABASE)  # total_xact_count
