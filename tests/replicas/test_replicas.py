"""Three replicas on one PostgreSQL database behind the client's own load balancing (a target of
several addresses: gRPC's round_robin). A race through the balanced client and per-replica clients
keeps I1..I5; a rolling restart (SIGTERM, graceful exit, start again on the same port, one replica
at a time) under a steady load costs the client no failed call and the database no purchase,
lost or doubled; seatctl takes two addresses."""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from seats import AsyncSeatsClient, SeatsClient, cli, errors
from seats._retry import safe_to_retry
from seats.client import channel_target
from seats.v1 import resources_pb2, seat_service_pb2

from tests.client.helpers import InjectedError
from tests.conftest import database_url, served
from tests.faults.support import (
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Answer,
    check_answers_against_log,
    check_final_state,
    connected,
    raw_store_text,
    tally,
)
from tests.faults.support import all_events as all_events_of
from tests.toolkit import UnaryUnaryInterceptor, pool_name, pool_problem, replay_log, unique_email

from .cluster import (
    Attempts,
    Replica,
    balanced_target,
    client_call,
    replicas,
    wait_for,
)

CALL_SECONDS = 10.0
"""Deadline of every call, over all its attempts (the client's retries)."""
SEED = 20260301
USERS = 30
THREADS = 32
OPERATIONS = 2000
TWIN_SHARE = 0.1
"""Share of writes sent at once through the balanced client and a per-replica client, same request id."""
BALANCED_SHARE = 0.7
"""Share of the race's calls made through the balanced client; the rest through one replica's own."""
RACE_SECONDS = 60.0
MIN_SHARE = 0.2
"""Each of 3 replicas must answer at least this share of the balanced client's reads (round robin: 1/3)."""
ALLOWED_REFUSALS = frozenset({"NO_SEAT_AVAILABLE", "SEATS_ASSIGNED", "NOT_PENDING_REMOVAL", "SEAT_NOT_ASSIGNED"})
INITIAL = ((SALES, PROFESSIONAL, 3), (SALES, STARTER, 1), (SERVICE, STARTER, 2))
"""(hub, tier, purchased) of the raced account."""


def rid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def create_account(client: SeatsClient, users: int) -> tuple[resources_pb2.Account, list[str]]:
    """An account of INITIAL's pools with ``users`` users besides its owner (setup- request ids)."""
    created = client.create_account(
        "Replicas",
        unique_email("owner"),
        subscriptions=INITIAL,
        term_months=1,
        request_id=rid("setup"),
    )
    owner = client.with_actor(created.account.owner_user_id)
    user_ids = [
        owner.create_user(created.account.account_id, unique_email(), request_id=rid("setup")).user.user_id
        for _ in range(users)
    ]
    return created.account, user_ids


# ---- the race ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Planned:
    """One raced call: the client method, its arguments (a write with its request id), whether it
    goes through the balanced client (else through replica ``server``'s own) and whether it is sent
    through both at the same moment."""

    op: str
    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    balanced: bool
    server: int
    twin: bool


def plan(rng: random.Random, account_id: str, user_ids: list[str], replicas_count: int) -> list[Planned]:
    planned = []
    kinds = ["assign", "assign_service", "unassign", "purchase", "schedule_removal", "summary", "check"]
    weights = [30, 10, 20, 8, 10, 10, 12]
    for _ in range(OPERATIONS):
        kind = rng.choices(kinds, weights)[0]
        user = rng.choice(user_ids)
        request_id = {"request_id": rid("race")}
        name: str
        args: tuple[Any, ...]
        kwargs: dict[str, Any] = {}
        if kind == "assign":
            tier = rng.choice([PROFESSIONAL, PROFESSIONAL, STARTER])
            name, args, kwargs = "assign_seat", (account_id, user, SALES, tier), request_id
        elif kind == "assign_service":
            name, args, kwargs = "assign_seat", (account_id, user, SERVICE, STARTER), request_id
        elif kind == "unassign":
            name, args, kwargs = "unassign_seat", (account_id, user, rng.choice([SALES, SERVICE])), request_id
        elif kind == "purchase":
            hub, tier = rng.choice([(SALES, PROFESSIONAL), (SERVICE, STARTER)])
            name, args, kwargs = "purchase_seats", (account_id, hub, tier, 1), request_id
        elif kind == "schedule_removal":
            hub, tier, _ = rng.choice(INITIAL)
            name, args, kwargs = "schedule_seat_removal", (account_id, hub, tier, 1), request_id
        elif kind == "summary":
            name, args = "get_seat_summary", (account_id,)
        else:
            name, args = "check_seats", (account_id, SALES, rng.sample(user_ids, 5))
        writes = "request_id" in kwargs
        balanced = rng.random() < BALANCED_SHARE
        twin = writes and rng.random() < TWIN_SHARE
        planned.append(Planned(kind, name, args, kwargs, balanced, rng.randrange(replicas_count), twin))
    return planned


def run_race(balanced: SeatsClient, own: list[SeatsClient], planned: list[Planned]) -> list[Answer]:
    """Every planned call from a pool of threads; a twin goes through the balanced client and
    through one replica's own client at the same moment, with the same request id."""
    answers: list[Answer] = []
    lock = threading.Lock()

    def one(p: Planned, through_balanced: bool) -> Answer:
        client = balanced if through_balanced else own[p.server]
        server = -1 if through_balanced else p.server
        return client_call(client, p.name, *p.args, op=p.op, server=server, timeout=CALL_SECONDS, **p.kwargs)

    def run(p: Planned, pool: ThreadPoolExecutor) -> None:
        if p.twin:
            other = pool.submit(one, p, False)  # on the twin pool: both halves in flight at once
            got = [one(p, True), other.result(timeout=CALL_SECONDS + 5)]
        else:
            got = [one(p, p.balanced)]
        with lock:
            answers.extend(got)

    # the twins' second halves run on a pool of their own, so a full race pool cannot starve them
    with (
        ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="race") as pool,
        ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="twin") as twins,
    ):
        futures = [pool.submit(run, p, twins) for p in planned]
        done, pending = wait(futures, timeout=RACE_SECONDS)
        for f in pending:
            f.cancel()
        assert not pending, f"{len(pending)} of {len(futures)} raced calls still running after {RACE_SECONDS}s"
        for f in done:
            f.result()
    return answers


def spread(group: list[Replica], method: str) -> list[int]:
    return [r.handled_calls(method) for r in group]


def test_three_replicas_behind_round_robin_keep_every_invariant_under_a_race(pg_url: str, tmp_path: Path) -> None:
    """I1..I5 on one account raced over three replicas of one database, through one client that
    balances over all three and through each replica's own client, twins sending one request id
    through both at once; and round robin really spreads the balanced client's calls."""
    began = time.monotonic()
    reads = ("CheckSeats", "GetSeatSummary")
    with replicas(tmp_path, pg_url) as group:
        target = balanced_target(group)
        attempts = Attempts()  # of the balanced client
        own_attempts = [Attempts() for _ in group]
        own = [
            SeatsClient(r.address, timeout=CALL_SECONDS, interceptors=[a])
            for r, a in zip(group, own_attempts, strict=True)
        ]
        try:
            with SeatsClient(target, timeout=CALL_SECONDS, interceptors=[attempts]) as system:
                account, user_ids = create_account(system, USERS)
                balanced = system.with_actor(account.owner_user_id)
                mine = [c.with_actor(account.owner_user_id) for c in own]
                planned = plan(random.Random(SEED), account.account_id, user_ids, len(group))
                before = [sum(r.handled_calls(m) for m in reads) for r in group]
                raced_at = time.monotonic()
                answers = run_race(balanced, mine, planned)
                race_seconds = time.monotonic() - raced_at
        finally:
            for c in own:
                c.close()

        # Only the race reads (CheckSeats, GetSeatSummary): what each replica answered of them, less
        # what its own client sent it, is what round robin gave it of the balanced client's reads.
        after = [sum(r.handled_calls(m) for m in reads) for r in group]
        via_balancer = [a - b - sent.of(*reads) for a, b, sent in zip(after, before, own_attempts, strict=True)]
        balanced_reads = attempts.of(*reads)
        handled = [sum(r.handled().values()) for r in group]
        figures = tally(answers)
        figures += (
            f" | race {race_seconds:.1f}s | twins {sum(p.twin for p in planned)} | balanced client calls "
            f"{sum(1 for a in answers if a.server == -1)} | its attempts that ended in an error "
            f"(refusals included) {attempts.failed() or 'none'} | its reads per replica {via_balancer} "
            f"of {balanced_reads} | SeatService calls handled per replica {handled}"
        )
        print(f"\n[replicas race] {figures}")
        assert sum(via_balancer) == balanced_reads, f"the replicas answered other reads than sent\n{figures}"
        for i, n in enumerate(via_balancer):
            assert n >= MIN_SHARE * balanced_reads, (
                f"replica {i} answered {n} of the balanced client's {balanced_reads} reads: round robin would "
                f"give it about a third\n{figures}"
            )

        unexpected = [a.describe() for a in answers if not a.ok and a.reason not in ALLOWED_REFUSALS]
        assert not unexpected, (
            "calls got other answers than OK or a documented refusal:\n" + "\n".join(unexpected[:20]) + f"\n{figures}"
        )
        leaks = [f"{raw_store_text(a)}: {a.describe()}" for a in answers if raw_store_text(a)]
        assert not leaks, "raw database text reached clients:\n" + "\n".join(leaks[:10]) + f"\n{figures}"
        for a in answers:
            if a.ok and a.op == "summary":
                for p in a.response.pools:
                    assert pool_problem(p) is None, f"a summary read in the race: {pool_problem(p)}\n{figures}"

        with connected(group[0].address) as reader:
            log = replay_log(all_events_of(reader, account.account_id))
            figures += f" | events {log.last}"
            pools = check_final_state(reader, account.account_id, log, figures)
        writes = [a for a in answers if a.request_id]
        check_answers_against_log(writes, log, figures)
        ours = {a.request_id for a in writes}
        orphans = [e.sequence for e in log.events if e.request_id not in ours and not e.request_id.startswith("setup-")]
        assert not orphans, f"events no raced call asked for: {orphans[:10]}\n{figures}"
        initial = {(h, t): n for h, t, n in INITIAL}
        purchased: dict[str, Any] = {a.request_id: a.request for a in writes if a.ok and a.op == "purchase"}
        for key, p in pools.items():
            bought = sum(r.quantity for r in purchased.values() if (r.hub, r.tier) == key)
            assert p.purchased - initial[key] == bought, (
                f"{pool_name(key)}: purchased {p.purchased} - initial {initial[key]} != {bought} seats of the "
                f"acknowledged purchases\n{figures}"
            )
        for r in group:
            assert r.process is not None and r.process.process.poll() is None, f"replica {r.address} died"
            logged = r.error_log_lines()
            assert not logged, f"replica {r.address} logged errors:\n" + "\n".join(logged[:5]) + f"\n{figures}"
    print(f"[replicas race] {figures} | {time.monotonic() - began:.1f}s in all")


# ---- the rolling restart --------------------------------------------------------------------------

LOAD_THREADS = {"purchase": 6, "summary": 2, "check": 2}
MAX_LOAD_CALLS = 5000
"""Bound of each load thread's calls; the load stops when the restarts are done, long before it."""
SETTLE_CALLS = 30
"""Calls the load completes after the last restart, before it stops: the client uses every replica."""
BACK_IN_ROTATION_SECONDS = 20.0
"""How long a restarted replica may take to get the balanced client's calls again (gRPC's
reconnect backoff: 1 s, then 1.6 times more each try, jittered)."""


@dataclass
class Load:
    """A steady load from one balanced client: each thread calls in a loop, until stopped."""

    client: SeatsClient
    account_id: str
    owner_id: str
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for kind, n in LOAD_THREADS.items():
            for i in range(n):
                thread = threading.Thread(target=self.run, args=(kind, i), name=f"load-{kind}-{i}", daemon=True)
                self.threads.append(thread)
                thread.start()

    def run(self, kind: str, seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(MAX_LOAD_CALLS):
            if self.stop.is_set():
                return
            if kind == "purchase":
                quantity = rng.randint(1, 3)
                answer = client_call(
                    self.client,
                    "purchase_seats",
                    self.account_id,
                    SALES,
                    PROFESSIONAL,
                    quantity,
                    op=kind,
                    request_id=rid("roll"),
                    timeout=CALL_SECONDS,
                )
            elif kind == "summary":
                answer = client_call(self.client, "get_seat_summary", self.account_id, op=kind, timeout=CALL_SECONDS)
            else:
                answer = client_call(
                    self.client, "check_seats", self.account_id, SALES, [self.owner_id], op=kind, timeout=CALL_SECONDS
                )
            with self.lock:
                self.answers.append(answer)

    def completed(self, since: float = 0.0, until: float = float("inf")) -> list[Answer]:
        """The calls that ended OK within [since, until]."""
        with self.lock:
            return [a for a in self.answers if a.ok and since <= a.started + a.seconds <= until]

    def count(self) -> int:
        with self.lock:
            return len(self.answers)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=CALL_SECONDS + 5)
        assert not any(t.is_alive() for t in self.threads), "a load thread is still running"


@dataclass
class Restart:
    replica: int
    down_at: float
    exited_at: float
    up_at: float
    exit_code: int
    back_in_rotation: float
    calls_while_down: int = 0

    def describe(self) -> str:
        return (
            f"replica {self.replica}: exit {self.exit_code} after {self.exited_at - self.down_at:.2f}s, serving again "
            f"after {self.up_at - self.down_at:.2f}s, back in rotation {self.back_in_rotation:.2f}s later, "
            f"{self.calls_while_down} calls completed meanwhile"
        )


def restart(group: list[Replica], i: int, load: Load) -> Restart:
    """SIGTERM replica i, wait for its graceful exit, start it again on the same port, wait until it
    serves and until the balanced client's calls reach it again."""
    replica = group[i]
    down_at = time.monotonic()
    code = replica.terminate()
    exited_at = time.monotonic()
    replica.launch()
    replica.wait_until_serving()
    up_at = time.monotonic()
    back = wait_for(
        lambda: replica.handled_calls("PurchaseSeats") > 0 and replica.handled_calls("GetSeatSummary") > 0,
        BACK_IN_ROTATION_SECONDS,
        f"the balanced client sends no calls to restarted replica {i}",
    )
    done = Restart(i, down_at, exited_at, up_at, code, back)
    done.calls_while_down = len(load.completed(down_at, up_at))
    return done


def test_a_rolling_restart_of_three_replicas_costs_the_balanced_client_no_call(pg_url: str, tmp_path: Path) -> None:
    """One replica at a time: SIGTERM, graceful exit (--grace-seconds), a new process on the same
    port. Under a steady load of purchases (request ids) and reads through one client balanced over
    all three, with its deadlines and default retries: no call fails, the load goes on while each
    replica is down, and every acknowledged purchase is in the database exactly once (I4, I5). A
    watch of the account through the balanced client, resumed by the client whenever its replica
    stops, receives every event once, in order."""
    began = time.monotonic()
    attempts = Attempts()
    with (
        replicas(tmp_path, pg_url) as group,
        SeatsClient(balanced_target(group), timeout=CALL_SECONDS, interceptors=[attempts]) as system,
    ):
        account, _ = create_account(system, 0)
        watched: list[int] = []
        watcher = SeatsClient(balanced_target(group), timeout=CALL_SECONDS).with_actor(account.owner_user_id)

        def watch() -> None:
            try:
                for event in watcher.watch_seat_events(account.account_id):
                    watched.append(event.sequence)
            except (errors.SeatsError, ValueError):
                pass  # the watcher's channel is closed at the end

        threading.Thread(target=watch, daemon=True).start()
        load = Load(system.with_actor(account.owner_user_id), account.account_id, account.owner_user_id)
        before = [r.handled_calls("PurchaseSeats") for r in group]
        load.start()
        restarts: list[Restart] = []
        try:
            wait_for(
                lambda: all(r.handled_calls("PurchaseSeats") > b for r, b in zip(group, before, strict=True)),
                BACK_IN_ROTATION_SECONDS,
                "the load reaches every replica",
            )
            for i in range(len(group)):
                restarts.append(restart(group, i, load))
            settled = load.count()
            wait_for(lambda: load.count() >= settled + SETTLE_CALLS, CALL_SECONDS, "the load goes on")
        finally:
            load.finish()

        answers = load.answers
        failed = [a for a in answers if not a.ok]
        per_replica = [sum(r.handled().values()) for r in group]
        figures = (
            f"{tally(answers)} | attempts that ended in an error, then retried: {attempts.failed() or 'none'} | "
            f"since the last restart, SeatService calls per replica {per_replica} | "
            + " | ".join(r.describe() for r in restarts)
        )
        print(f"\n[rolling restart] {figures}")
        assert not failed, (
            f"{len(failed)} calls failed:\n" + "\n".join(a.describe() for a in failed[:20]) + (f"\n{figures}")
        )
        for r in restarts:
            assert r.exit_code == 0, f"replica {r.replica} exited {r.exit_code} on SIGTERM\n{figures}"
            assert r.calls_while_down > 0, f"the load stalled while replica {r.replica} restarted\n{figures}"

        with connected(group[0].address) as reader:
            log = replay_log(all_events_of(reader, account.account_id))
        last = log.events[-1].sequence
        wait_for(lambda: len(watched) >= last, CALL_SECONDS, "the watch catches up")
        watcher.close()
        assert watched == list(range(1, last + 1)), f"the watch missed, repeated or reordered events\n{figures}"
        with connected(group[0].address) as reader:
            check_final_state(reader, account.account_id, log, figures)
            pools = {(p.hub, p.tier): p for p in system.get_seat_summary(account.account_id).pools}
        purchases = [a for a in answers if a.op == "purchase"]
        check_answers_against_log(purchases, log, figures)
        acknowledged = sum(int(getattr(a.request, "quantity", 0)) for a in purchases)
        initial = dict(((h, t), n) for h, t, n in INITIAL)
        bought = pools[(SALES, PROFESSIONAL)].purchased - initial[(SALES, PROFESSIONAL)]
        assert bought == acknowledged, (
            f"Sales Professional: {bought} seats bought in the database, {acknowledged} acknowledged\n{figures}"
        )
        purchase_events = [e for e in log.events if e.type == resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED]
        assert Counter(e.request_id for e in purchase_events) == Counter(a.request_id for a in purchases), (
            f"SEATS_PURCHASED events are not one per acknowledged purchase\n{figures}"
        )
        for replica in group:
            logged = replica.error_log_lines()
            assert not logged, f"replica {replica.address} logged errors:\n" + "\n".join(logged[:5]) + f"\n{figures}"
    print(f"[rolling restart] {len(purchases)} purchases, {acknowledged} seats | {time.monotonic() - began:.1f}s")


# ---- seatctl -------------------------------------------------------------------------------------


def test_seatctl_takes_two_addresses_and_carries_on_when_one_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`seatctl --target ip:port,ip:port` (or SEATS_TARGET) calls whichever replica is up: with the
    first one stopped, the same command still answers, from the second, where a target of the first
    alone is unreachable; a host name in a list is a usage error that points to dns:///. Two
    replicas of one SQLite file: this needs no PostgreSQL."""
    with replicas(tmp_path, f"sqlite:///{tmp_path / 'seats.db'}", count=2) as group:
        target = balanced_target(group)
        with SeatsClient(target, timeout=CALL_SECONDS) as system:
            account, _ = create_account(system, 0)
        summary = ["--json", "seats", "summary", "--account", account.account_id, "--actor", account.owner_user_id]

        def seatctl(*args: str) -> tuple[int, str, str]:
            code = cli.main([*args, *summary])
            out, err = capsys.readouterr()
            return code, out, err

        code, out, err = seatctl("--target", target)
        assert code == cli.EXIT_OK, err
        assert [p["hub"] for p in json.loads(out)["pools"]], out

        assert group[0].terminate() == 0
        answered = group[1].handled_calls("GetSeatSummary")
        code, out, err = seatctl("--target", target)
        assert code == cli.EXIT_OK, f"with {group[0].address} down: {err}"
        monkeypatch.setenv("SEATS_TARGET", target)
        code, out, err = seatctl()
        assert code == cli.EXIT_OK, f"SEATS_TARGET={target} with {group[0].address} down: {err}"
        monkeypatch.delenv("SEATS_TARGET")
        assert group[1].handled_calls("GetSeatSummary") == answered + 2, "the second replica answered both"
        code, out, err = seatctl("--target", group[0].address)
        assert code == cli.EXIT_UNREACHABLE, f"{group[0].address} alone answered although it is down: {out}"

        code, out, err = seatctl("--target", f"localhost:{group[0].port},localhost:{group[1].port}")
        assert code == cli.EXIT_USAGE, err
        assert f"dns:///localhost:{group[0].port}" in err, err


# ---- the target forms and the retry rule, without replicas ----------------------------------------


@pytest.mark.parametrize(
    ("target", "uri", "balanced"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051", False),
        ("seats.internal:50051", "seats.internal:50051", False),
        ("127.0.0.1:5001,127.0.0.1:5002", "ipv4:127.0.0.1:5001,127.0.0.1:5002", True),
        (" 127.0.0.1:5001 , 127.0.0.1:5002 ", "ipv4:127.0.0.1:5001,127.0.0.1:5002", True),
        ("[::1]:5001,[::1]:5002", "ipv6:[::1]:5001,[::1]:5002", True),
        ("dns:///seats.internal:50051", "dns:///seats.internal:50051", True),
        ("ipv4:10.0.0.1:50051,10.0.0.2:50051", "ipv4:10.0.0.1:50051,10.0.0.2:50051", True),
        ("ipv4:10.0.0.1:50051", "ipv4:10.0.0.1:50051", False),
        ("unix:/run/seats.sock", "unix:/run/seats.sock", False),
    ],
)
def test_a_target_names_one_server_or_replicas_to_balance_over(target: str, uri: str, balanced: bool) -> None:
    """The forms the client and seatctl accept, and what gRPC gets: a list of several is balanced
    round robin through the channel's service config; one address keeps gRPC's default."""
    where = channel_target(target)
    assert (where.uri, where.balanced) == (uri, balanced)
    config = dict(where.options()).get("grpc.service_config")
    assert (json.loads(config) if config else None) == (
        {"loadBalancingConfig": [{"round_robin": {}}]} if balanced else None
    )
    own = '{"loadBalancingConfig": [{"pick_first": {}}]}'
    assert dict(where.options([("grpc.service_config", own)]))["grpc.service_config"] == own


@pytest.mark.parametrize(
    ("target", "says"),
    [
        ("seats-a:5001,seats-b:5002", "use dns:///seats-a:5001"),
        ("127.0.0.1:5001,[::1]:5002", "mixes IPv4 and IPv6"),
        ("127.0.0.1,127.0.0.2:5002", "is not ip:port"),
        ("127.0.0.1:5001,127.0.0.1:99999", "the port must be 1..65535"),
        ("::1:5001,::1:5002", "[::1]:5001"),
        ("  ", "the target is empty"),
    ],
)
def test_a_malformed_list_of_replicas_is_refused_with_what_to_write(target: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        channel_target(target)
    with pytest.raises(ValueError, match=re.escape(says)):
        SeatsClient(target)


def test_a_write_is_retried_only_under_a_request_id() -> None:
    """A read is always safe to send again; a write only with the request id that makes a second
    attempt replay the first (I5)."""
    assert safe_to_retry(seat_service_pb2.GetSeatSummaryRequest(account_id="acc_1"))
    assert safe_to_retry(seat_service_pb2.PurchaseSeatsRequest(account_id="acc_1", quantity=1, request_id="r-1"))
    assert not safe_to_retry(seat_service_pb2.PurchaseSeatsRequest(account_id="acc_1", quantity=1))


class CancelFirstAnswer(UnaryUnaryInterceptor):
    """Lets the first attempt of ``method`` reach the server and finish there, then ends it
    CANCELLED, as a replica shutting down ends a call it has not handed to a handler."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.request_ids: list[str] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        if details.method.endswith(f"/{self.method}"):
            self.request_ids.append(request.request_id)
            if len(self.request_ids) == 1:
                outcome.result()
                raise InjectedError(grpc.StatusCode.CANCELLED, "CANCELLED")
        return outcome


def test_a_call_the_server_cancelled_is_retried_and_has_its_effect_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """CANCELLED from the server (never from the client itself, whose calls end by deadline) is
    retried like UNAVAILABLE: the purchase is made once, under the one request id of both attempts."""
    cancel = CancelFirstAnswer("PurchaseSeats")
    with (
        served("sqlite", database_url("sqlite", tmp_path_factory)) as running,
        SeatsClient(running.target, timeout=CALL_SECONDS) as system,
    ):
        account, _ = create_account(system, 0)
        with SeatsClient(running.target, actor=account.owner_user_id, interceptors=[cancel]) as owner:
            response = owner.purchase_seats(account.account_id, SALES, PROFESSIONAL, 2)
            assert response.pool.purchased == 3 + 2
            assert len(cancel.request_ids) == 2 and len(set(cancel.request_ids)) == 1, cancel.request_ids
            bought = [
                e
                for e in owner.iter_seat_events(account.account_id)
                if e.type == resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED and e.request_id == cancel.request_ids[0]
            ]
            assert [e.quantity for e in bought] == [2]


def test_the_asyncio_client_takes_a_list_of_replicas(tmp_path_factory: pytest.TempPathFactory) -> None:
    """AsyncSeatsClient reads the target as SeatsClient does: a list of addresses (here one server
    listed twice, each a round robin subchannel of its own) makes a balanced channel that answers."""
    with (
        served("sqlite", database_url("sqlite", tmp_path_factory)) as running,
        SeatsClient(running.target, timeout=CALL_SECONDS) as system,
    ):
        account, _ = create_account(system, 0)
        twice = f"{running.target},{running.target}"

        async def summaries() -> list[int]:
            async with AsyncSeatsClient(twice, actor=account.owner_user_id, timeout=CALL_SECONDS) as seats:
                return [len((await seats.get_seat_summary(account.account_id)).pools) for _ in range(4)]

        assert asyncio.run(summaries()) == [len(INITIAL)] * 4
