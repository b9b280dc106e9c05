"""A SeatCache following a server in a process of its own (SQLite and PostgreSQL): the server is
killed (SIGKILL, or stopped with SIGTERM) right after a burst of changes, then restarted on the
same database, several times. While it is down the cache never answers from memory once
max_silence has passed (tier_of raises); after each restart it reloads by itself and the changes
made before the stop and after the restart all show up in it, answered from memory exactly like
CheckSeats."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from seats import RetryPolicy, SeatCache, SeatsClient, errors
from seats.v1 import resources_pb2

from tests.client.test_seat_cache import SteppedClock
from tests.served import ServerProcess, free_port, launch, wait_until_serving
from tests.toolkit import unique_email

from .support import CALL_SECONDS

pytestmark = pytest.mark.slow

CYCLES = 3
"""Stops and restarts per test."""
CONVERGE_SECONDS = 30.0
"""How long the cache may take to reload after a restart (reconnects back off; it takes about a second)."""
MAX_SILENCE = 2.0
HUBS = ("sales", "service")
TIERS = {"sales": ("starter", "professional"), "service": ("starter",)}
WRITE_RETRY = RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=0.5)
CACHE_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.05, max_backoff=0.1)
RELOAD_BACKOFF = RetryPolicy(max_attempts=1, initial_backoff=0.05, max_backoff=0.5)
QUICK_RECONNECT = (("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 500))
"""The cache's channel reconnects within half a second of the server coming back."""


def start(directory: Path, port: int, url: str, servers: list[ServerProcess]) -> ServerProcess:
    server = launch(directory, port=port, database_url=url)
    servers.append(server)
    wait_until_serving(server)
    return server


@contextmanager
def writer(server: ServerProcess, actor: str | None = None) -> Iterator[SeatsClient]:
    """A client of one server's lifetime (a fresh channel after each restart)."""
    with SeatsClient(server.address, actor=actor, retry=WRITE_RETRY, timeout=CALL_SECONDS) as client:
        yield client


def burst(client: SeatsClient, account_id: str, users: list[str], rng: random.Random, writes: int) -> int:
    """`writes` random seat changes (assign, move, unassign, batch, user creation and deletion);
    returns the account's last sequence after them."""
    for _ in range(writes):
        kind = rng.choice(["assign", "assign", "unassign", "batch", "create", "delete"])
        user = rng.choice(users)
        if kind == "assign":
            hub = rng.choice(HUBS)
            client.assign_seat(account_id, user, hub, rng.choice(TIERS[hub]), purchase_if_needed=True)
        elif kind == "unassign":
            holds = client.check_seats(account_id, "sales", [user]).tiers[0]
            if holds:
                client.unassign_seat(account_id, user, "sales")
        elif kind == "batch":
            picked = rng.sample(users, min(3, len(users)))
            tiers = (*TIERS["sales"], None)
            client.batch_update_seat_assignments(account_id, [(u, "sales", rng.choice(tiers)) for u in picked])
        elif kind == "create":
            created = client.create_user(
                account_id, unique_email("cache"), seats=[("sales", "starter")], purchase_if_needed=True
            )
            users.append(created.user.user_id)
        elif len(users) > 2:
            users.remove(user)
            for hub in HUBS:
                if client.check_seats(account_id, hub, [user]).tiers[0]:
                    client.unassign_seat(account_id, user, hub)
            client.delete_user(account_id, user)
    return client.check_seats(account_id, "sales", [users[0]]).sequence


def check_against_server(cache: SeatCache, client: SeatsClient, account_id: str, user_ids: list[str]) -> int:
    """Waits for the cache to reach the account's sequence, then checks that it answers like
    CheckSeats for every user and hub, from memory. Returns the sequence."""
    answers = {hub: client.check_seats(account_id, hub, user_ids) for hub in HUBS}
    sequence = max(a.sequence for a in answers.values())
    assert cache.wait_for_sequence(sequence, CONVERGE_SECONDS), (
        f"the cache is at {cache.sequence}, the account at {sequence}; last error {cache.last_error!r}"
    )
    remote = cache.remote_checks
    for hub, answer in answers.items():
        cached = [cache.tier_of(u, hub) for u in user_ids]
        assert cached == list(answer.tiers), f"{hub}: cache {cached} != CheckSeats {list(answer.tiers)}"
    assert cache.remote_checks == remote, "answered from CheckSeats, not from memory"
    return sequence


@pytest.mark.parametrize("stop", ["kill", "terminate"])
def test_seat_cache_converges_after_the_server_is_stopped_and_restarted(db_url: str, tmp_path: Path, stop: str) -> None:
    began = time.monotonic()
    port = free_port()
    servers: list[ServerProcess] = []
    clock = SteppedClock()
    figures: list[str] = []
    try:
        server = start(tmp_path, port, db_url, servers)
        with writer(server) as system:
            account = system.create_account(
                "Cached",
                unique_email("owner"),
                [("sales", "starter", 2), ("sales", "professional", 1), ("service", "starter", 2)],
                term_months=1,
            ).account
            owner = system.with_actor(account.owner_user_id)
            users = [owner.create_user(account.account_id, unique_email("cache")).user.user_id for _ in range(6)]
            burst(owner, account.account_id, users, random.Random(0), writes=10)

        channel = grpc.insecure_channel(server.address, options=QUICK_RECONNECT)
        cache_client = SeatsClient(
            channel=channel, actor=account.owner_user_id, retry=CACHE_RETRY, timeout=CALL_SECONDS
        )
        with SeatCache(
            cache_client,
            account.account_id,
            max_silence=MAX_SILENCE,
            heartbeat_interval=0.1,
            backoff=RELOAD_BACKOFF,
            clock=clock,
        ) as cache:
            assert cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            with writer(server, account.owner_user_id) as owner:
                check_against_server(cache, owner, account.account_id, users)

            for cycle in range(1, CYCLES + 1):
                rng = random.Random(cycle)
                with writer(server, account.owner_user_id) as owner:
                    before_stop = burst(owner, account.account_id, users, rng, writes=8)
                if stop == "kill":
                    server.kill()  # right after the burst: the last events may not have reached the cache
                else:
                    server.process.terminate()
                    assert server.wait_for_exit(15.0) == 0
                stopped = time.monotonic()

                clock.advance(MAX_SILENCE + 0.001)  # past max_silence with nothing confirmed since the stop
                assert not cache.fresh and not cache.healthy
                for user in users[:3]:
                    with pytest.raises(errors.Unavailable):
                        cache.tier_of(user, "sales")

                launched = time.monotonic()
                server = start(tmp_path, port, db_url, servers)
                serving = time.monotonic()
                assert cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
                healthy = time.monotonic()
                with writer(server, account.owner_user_id) as owner:
                    assert check_against_server(cache, owner, account.account_id, users) >= before_stop
                    after_restart = burst(owner, account.account_id, users, rng, writes=8)
                    sent = time.monotonic()
                    created = owner.create_user(  # USER_CREATED, SEAT_ASSIGNED (and SEATS_PURCHASED if full)
                        account.account_id,
                        unique_email("late"),
                        seats=[("service", "starter")],
                        purchase_if_needed=True,
                    ).user.user_id
                    answered = time.monotonic()
                    assert cache.wait_for_sequence(after_restart + 2, CONVERGE_SECONDS), repr(cache.last_error)
                    applied = time.monotonic()
                    users.append(created)
                    assert check_against_server(cache, owner, account.account_id, users) >= after_restart + 2
                    assert cache.tier_of(created, "service") == resources_pb2.TIER_STARTER
                figures.append(
                    f"cycle {cycle}: {stop} at sequence {before_stop}; down {launched - stopped:.2f}s; the new server "
                    f"served {serving - launched:.2f}s after its launch, the cache was reloaded and healthy "
                    f"{healthy - launched:.2f}s after it; a write after the "
                    f"restart applied {(applied - sent) * 1e3:.1f} ms after its send "
                    f"({(applied - answered) * 1e3:.1f} ms after its answer); reloads so far {cache.resyncs}"
                )
                print(f"\n[seat cache crash {db_url.split(':')[0]}] {figures[-1]}")
            assert cache.resyncs == 1 + CYCLES, f"one reload per restart: {cache.resyncs} ({cache.last_error!r})"
        cache_client.close()
        channel.close()
        print(f"[seat cache crash {db_url.split(':')[0]}] {CYCLES} {stop}s, {time.monotonic() - began:.1f}s in all")
    finally:
        for s in servers:
            s.kill()
