"""Two server processes on one database, raced from a thread pool. Every answer is kept and checked
afterwards against the pools, the assignments and the event log: I1 and I2 on every pool, I3 per
user and hub, I4 (a gapless log whose events are exactly what the OK answers say) and I5 (a request
id sent to both servers at once has one effect and one answer)."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.store import open_store
from tests.conftest import BACKENDS, database_url
from tests.served import ServerProcess, launch, serving, wait_until_serving
from tests.toolkit import cancel, pool_name, pool_problem, replay_log, unique_email

from .support import (
    CALL_SECONDS,
    NO_TIER,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Answer,
    Client,
    actor,
    all_events,
    call,
    call_at_once,
    check_answers_against_log,
    check_final_state,
    connected,
    new_request_id,
    raw_store_text,
    tally,
)

SEED = int(os.environ.get("SEATS_FAULTS_SEED", "20260101"))
"""The plan of calls is drawn from this seed (the interleaving is not: that is the point)."""
USERS = 40
THREADS = 32
OPERATIONS = 800
TWIN_SHARE = 0.12
"""Share of mutating operations sent to both servers at the same moment with the same request id."""
MIGRATING_REPLICAS = 4
MIGRATION_ROUNDS = 40
"""Rounds of replicas migrating one fresh database at once; the first round that fails ends the test."""
MIGRATION_SECONDS = 30.0
RACE_SECONDS = 150.0
"""Bound of the whole race; each call also has its own deadline."""
WATCH_CATCH_UP_SECONDS = 30.0

INITIAL = ((SALES, PROFESSIONAL, 3), (SALES, STARTER, 1), (SERVICE, STARTER, 2))
"""(hub, tier, purchased) of the raced account: Sales Professional has 2 included + 3 purchased = 5 seats."""
ALLOWED_REFUSALS = frozenset({"NO_SEAT_AVAILABLE", "SEATS_ASSIGNED", "NOT_PENDING_REMOVAL", "SEAT_NOT_ASSIGNED"})
"""The documented rule refusals this workload can meet; anything else a client sees is a failure."""

WEIGHTS = {
    "assign_last_seats": 28,
    "assign_move_tier": 7,
    "assign_service": 8,
    "assign_buying": 2,
    "purchase": 4,
    "schedule_removal": 8,
    "cancel_removal": 6,
    "unassign": 16,
    "batch": 12,
    "summary": 5,
}


@dataclass(frozen=True)
class Planned:
    op: str
    service: str
    method: str
    request: Message
    server: int
    twin: bool

    @property
    def request_id(self) -> str:
        return str(getattr(self.request, "request_id", ""))


def plan_calls(rng: random.Random, account_id: str, user_ids: list[str]) -> list[Planned]:
    """The raced calls, drawn up front: a mutating call gets a request id of its own."""
    kinds, weights = zip(*WEIGHTS.items(), strict=True)
    planned = []
    for _ in range(OPERATIONS):
        kind = rng.choices(kinds, weights)[0]
        rid = new_request_id("race")
        user = rng.choice(user_ids)
        service, method = "seats", ""
        request: Message
        if kind in ("assign_last_seats", "assign_buying"):
            method, request = "AssignSeat", seat_service_pb2.AssignSeatRequest(
                account_id=account_id, user_id=user, hub=SALES, tier=PROFESSIONAL,
                purchase_if_needed=kind == "assign_buying", request_id=rid,
            )
        elif kind == "assign_move_tier":
            method, request = "AssignSeat", seat_service_pb2.AssignSeatRequest(
                account_id=account_id, user_id=user, hub=SALES, tier=STARTER, request_id=rid
            )
        elif kind == "assign_service":
            method, request = "AssignSeat", seat_service_pb2.AssignSeatRequest(
                account_id=account_id, user_id=user, hub=SERVICE, tier=STARTER, request_id=rid
            )
        elif kind == "purchase":
            hub, tier = rng.choice([(SALES, PROFESSIONAL), (SERVICE, STARTER)])
            method, request = "PurchaseSeats", seat_service_pb2.PurchaseSeatsRequest(
                account_id=account_id, hub=hub, tier=tier, quantity=1, request_id=rid
            )
        elif kind in ("schedule_removal", "cancel_removal"):
            hub, tier, _ = rng.choice(INITIAL)
            message = (
                seat_service_pb2.ScheduleSeatRemovalRequest
                if kind == "schedule_removal"
                else seat_service_pb2.CancelSeatRemovalRequest
            )
            method = "ScheduleSeatRemoval" if kind == "schedule_removal" else "CancelSeatRemoval"
            request = message(account_id=account_id, hub=hub, tier=tier, quantity=1, request_id=rid)
        elif kind == "unassign":
            method, request = "UnassignSeat", seat_service_pb2.UnassignSeatRequest(
                account_id=account_id, user_id=user, hub=rng.choice([SALES, SERVICE]), request_id=rid
            )
        elif kind == "batch":
            changes = []
            for who in rng.sample(user_ids, rng.randint(2, 4)):
                hub = rng.choice([SALES, SERVICE])
                tier = rng.choice([PROFESSIONAL, STARTER, NO_TIER] if hub == SALES else [STARTER, NO_TIER])
                changes.append(seat_service_pb2.SeatChange(user_id=who, hub=hub, tier=tier))
            method, request = "BatchUpdateSeatAssignments", seat_service_pb2.BatchUpdateSeatAssignmentsRequest(
                account_id=account_id, changes=changes, request_id=rid
            )
        else:
            method, request = "GetSeatSummary", seat_service_pb2.GetSeatSummaryRequest(account_id=account_id)
        twin = kind != "summary" and rng.random() < TWIN_SHARE
        planned.append(Planned(kind, service, method, request, rng.randrange(2), twin))
    return planned


def stub_method(client: Client, planned: Planned) -> Callable[..., Any]:
    return getattr(client.users if planned.service == "users" else client.seats, planned.method)  # type: ignore[no-any-return]


class Watcher:
    """Follows the account's log on one server while the other server writes too: the stream must
    deliver every event of both replicas once, in sequence order."""

    def __init__(self, client: Client, account_id: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.events: list[resources_pb2.SeatEvent] = []
        self.error: str = ""
        self._stream = client.seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=account_id),
            metadata=metadata,
            timeout=RACE_SECONDS + 2 * WATCH_CATCH_UP_SECONDS,
        )
        self._thread = threading.Thread(target=self._run, name="race-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self._stream:
                self.events.append(message.event)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = f"{err.code()} {err.details()}"

    def wait_for(self, last_sequence: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.error:
            if self.events and self.events[-1].sequence >= last_sequence:
                return
            time.sleep(0.05)

    def stop(self) -> None:
        cancel(self._stream)
        self._thread.join(timeout=10)


def setup_account(client: Client) -> tuple[resources_pb2.Account, list[str], list[Answer]]:
    created = client.seats.CreateAccount(
        seat_service_pb2.CreateAccountRequest(
            display_name="Race",
            owner_email=unique_email("owner"),
            term_months=1,
            subscriptions=[resources_pb2.Subscription(hub=h, tier=t, purchased_seats=n) for h, t, n in INITIAL],
            request_id=new_request_id("setup"),
        ),
        timeout=CALL_SECONDS,
    )
    account = created.account
    answers = [
        call(
            client.users.CreateUser,
            user_service_pb2.CreateUserRequest(
                account_id=account.account_id, email=unique_email(), request_id=new_request_id("setup")
            ),
            op="setup_user",
            metadata=actor(account.owner_user_id),
        )
        for _ in range(USERS)
    ]
    assert all(a.ok for a in answers), [a.describe() for a in answers if not a.ok]
    return account, [a.response.user.user_id for a in answers], answers


def run_race(clients: list[Client], planned: list[Planned], metadata: tuple[tuple[str, str], ...]) -> list[Answer]:
    answers: list[Answer] = []
    lock = threading.Lock()

    def run(p: Planned) -> None:
        if p.twin:
            got = call_at_once([stub_method(c, p) for c in clients], p.request, op=p.op, metadata=metadata)
        else:
            got = [call(stub_method(clients[p.server], p), p.request, op=p.op, server=p.server, metadata=metadata)]
        with lock:
            answers.extend(got)

    with ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="race") as pool:
        futures = [pool.submit(run, p) for p in planned]
        done, pending = wait(futures, timeout=RACE_SECONDS)
        for f in pending:
            f.cancel()
        assert not pending, f"{len(pending)} of {len(futures)} raced calls still running after {RACE_SECONDS}s"
        for f in done:
            f.result()
    return answers


def error_log_lines(server: ServerProcess) -> list[str]:
    return [str(e) for e in server.log_entries() if e.get("level") in ("ERROR", "CRITICAL")]


@pytest.mark.slow
def test_two_servers_on_one_database_keep_every_invariant_under_a_race(db_url: str, tmp_path: Path) -> None:
    """I1..I5 under a race of two server processes sharing one database: assignments on the last
    seats, purchases, removals scheduled and cancelled, unassigns, batches and twin request ids."""
    began = time.monotonic()
    with (
        serving(tmp_path, database_url=db_url) as first,
        serving(tmp_path, database_url=db_url) as second,
        connected(first.address) as a,
        connected(second.address) as b,
    ):
        account, user_ids, setup_answers = setup_account(a)
        owner = actor(account.owner_user_id)
        initial = {(h, t): n for h, t, n in INITIAL}
        planned = plan_calls(random.Random(SEED), account.account_id, user_ids)
        watcher = Watcher(b, account.account_id, owner)
        try:
            raced_at = time.monotonic()
            answers = run_race([a, b], planned, owner)
            race_seconds = time.monotonic() - raced_at

            figures = tally(answers)
            twins = [p for p in planned if p.twin]
            figures += f" | twin request ids {len(twins)} | seed {SEED} | race {race_seconds:.1f}s"
            print(f"\n[race {db_url.split(':')[0]}] {figures}")

            unexpected = [x.describe() for x in answers if not x.ok and x.reason not in ALLOWED_REFUSALS]
            assert not unexpected, "calls got other answers than OK or a documented refusal:\n" + "\n".join(
                unexpected[:20]
            ) + f"\n{figures}"
            leaks = [f"{raw_store_text(x)}: {x.describe()}" for x in answers if raw_store_text(x)]
            assert not leaks, "raw database text reached clients:\n" + "\n".join(leaks[:10]) + f"\n{figures}"
            for x in answers:
                if x.ok and x.op == "summary":
                    for p in x.response.pools:
                        problem = pool_problem(p)
                        assert problem is None, f"a summary read during the race: {problem}\n{figures}"

            log = replay_log(all_events(a, account.account_id))
            figures += f" | events {log.last}"
            pools = check_final_state(a, account.account_id, log, figures)
            mutating = [x for x in [*setup_answers, *answers] if x.op != "summary"]
            check_answers_against_log(mutating, log, figures)

            ours = {x.request_id for x in mutating}
            orphans = [
                f"{e.sequence} {e.request_id!r}" for e in log.events
                if e.request_id not in ours and not e.request_id.startswith("setup-")
            ]
            assert not orphans, f"events no call of the test asked for: {orphans[:10]}\n{figures}"
            for key, p in pools.items():
                bought = sum(e.quantity for e in log.events if e.type == resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED
                             and (e.hub, e.tier) == key and e.request_id.startswith("race-"))
                assert p.purchased - initial[key] == bought, (
                    f"{pool_name(key)}: purchased {p.purchased} - initial {initial[key]} != {bought} seats bought "
                    f"in SEATS_PURCHASED events\n{figures}"
                )
            outcomes_by_id: dict[str, set[str]] = {}
            for x in answers:
                outcomes_by_id.setdefault(x.request_id, set()).add(x.outcome)
            twin_ok = sum(1 for p in twins if len(outcomes_by_id[p.request_id]) == 1)
            figures += f" | twin pairs answered alike {twin_ok}/{len(twins)}"

            # I5 again, after the race: every OK request sent once more gets its first answer back, nothing new.
            first_ok: dict[str, Answer] = {}
            for x in mutating:
                if x.ok:
                    first_ok.setdefault(x.request_id, x)
            with ThreadPoolExecutor(max_workers=8) as pool:
                resent = list(pool.map(
                    lambda x: call(
                        getattr(([a, b][1 - x.server]).users if x.op == "setup_user" else [a, b][1 - x.server].seats,
                                type(x.request).__name__.removesuffix("Request")),
                        x.request, op=x.op, server=1 - x.server, metadata=owner,
                    ),
                    first_ok.values(),
                    timeout=RACE_SECONDS,
                ))
            for again, x in zip(resent, first_ok.values(), strict=True):
                assert again.ok and again.response == x.response, (
                    f"I5: request {x.request_id!r} ({x.op}) sent again after the race: {again.describe()}\n"
                    f"first answer {x.response}\nnow {again.response}\n{figures}"
                )
            after_resend = all_events(b, account.account_id)
            assert len(after_resend) == log.last, (
                f"I5: re-sending {len(first_ok)} answered requests appended {len(after_resend) - log.last} events\n"
                + figures
            )

            watcher.wait_for(log.last, WATCH_CATCH_UP_SECONDS)
        finally:
            watcher.stop()
        assert not watcher.error, f"the watch on the second server failed: {watcher.error}\n{figures}"
        watched = [e.sequence for e in watcher.events]
        assert watched == list(range(1, log.last + 1)), (
            f"the watch on the second server saw sequences {watched[:5]}...{watched[-5:]} (of {len(watched)}), "
            f"not exactly 1..{log.last}\n{figures}"
        )
        assert list(watcher.events) == log.events, f"the watch and ListSeatEvents disagree on an event\n{figures}"
        for server in (first, second):
            assert server.process.poll() is None, f"server {server.address} died during the race\n{server.log_text()}"
            errors = error_log_lines(server)
            assert not errors, f"server {server.address} logged errors:\n" + "\n".join(errors[:5]) + f"\n{figures}"
    print(f"[race {db_url.split(':')[0]}] {figures} | resent {len(first_ok)} OK requests: same answers, no new event "
          f"| {time.monotonic() - began:.1f}s in all")


@pytest.mark.slow
def test_two_servers_started_at_once_on_a_fresh_database_both_serve(db_url: str, tmp_path: Path) -> None:
    """Two replicas started at the same moment on an empty database (README: migrations are safe
    to run from several processes at once): both migrate or wait, both serve, both see one account."""
    servers = [launch(tmp_path, database_url=db_url), launch(tmp_path, database_url=db_url)]
    try:
        for server in servers:
            wait_until_serving(server)
        with connected(servers[0].address) as a, connected(servers[1].address) as b:
            created = a.seats.CreateAccount(
                seat_service_pb2.CreateAccountRequest(
                    display_name="Twins", owner_email=unique_email("owner"), term_months=1,
                    subscriptions=[resources_pb2.Subscription(hub=SALES, tier=STARTER)],
                ),
                timeout=CALL_SECONDS,
            )
            seen = b.seats.GetAccount(
                seat_service_pb2.GetAccountRequest(account_id=created.account.account_id), timeout=CALL_SECONDS
            )
            assert seen.account == created.account
    finally:
        for server in servers:
            server.kill()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_replicas_migrating_one_fresh_database_at_once_all_succeed(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Store.migrate() says it is safe to run from several processes at once, and every replica runs
    it at start (README: "an advisory lock lets several replicas start at once"). Here several
    stores, each with a connection of its own as a replica has, migrate one fresh database at the
    same moment, round after round: every one of them must succeed."""
    failures: list[str] = []
    rounds = 0
    began = time.monotonic()
    while rounds < MIGRATION_ROUNDS and not failures and time.monotonic() - began < MIGRATION_SECONDS:
        rounds += 1
        url = database_url(backend, tmp_path_factory)
        stores = [open_store(url) for _ in range(MIGRATING_REPLICAS)]
        barrier = threading.Barrier(len(stores))

        def migrate(store: Any, barrier: threading.Barrier = barrier, round_no: int = rounds) -> None:
            barrier.wait(timeout=MIGRATION_SECONDS)
            try:
                store.migrate()
            except Exception as exc:
                failures.append(f"round {round_no}: {type(exc).__name__}: {str(exc).splitlines()[0]}")

        threads = [threading.Thread(target=migrate, args=(s,), daemon=True) for s in stores]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=MIGRATION_SECONDS)
            assert not any(t.is_alive() for t in threads), f"a migration still runs after {MIGRATION_SECONDS}s"
        finally:
            for store in stores:
                store.close()
            cleanup = open_store(url)
            cleanup.drop_schema()
            cleanup.close()
    print(f"\n[migrate at once {backend}] {rounds} rounds of {MIGRATING_REPLICAS} replicas, {len(failures)} failed")
    assert not failures, (
        f"{len(failures)} of {MIGRATING_REPLICAS} replicas failed to migrate a fresh database in round {rounds} "
        f"(after {rounds - 1} clean rounds):\n" + "\n".join(failures)
    )
