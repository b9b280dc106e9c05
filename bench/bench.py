"""What a caller of the seat server sees, measured from outside with h2load, next to an
empty grpcio handler with the same server model.

    make bench                                   # SQLite, the full data set, 3 rounds of 5 s
    make bench BENCH_ARGS=--quick                # a small data set, 3 rounds of 2 s (under 3 minutes)
    make bench BENCH_ARGS=--postgres             # PostgreSQL on 127.0.0.1:5432, a schema of its own
    python -m bench.bench --server-root /tmp/seats-before --skip 'CheckSeats(1),CheckSeats(100)'
    make bench BENCH_ARGS='--rpc-log all --only GetUser,AssignSeat'   # the call log's cost: a line per call
    make bench BENCH_ARGS='--postgres --replicas 1,2,3'                # N replicas on one PostgreSQL, together
    make bench BENCH_ARGS='--postgres --quick --replicas 1,2,3'        # the same in a few minutes

Servers. The seat server (python -m service.server migrate, then serve, as `make run` runs it,
from --server-root) and the empty handler (bench/empty_server.py) run as subprocesses pinned to
CPU 0; h2load runs on CPU 1 and sends pre-encoded gRPC requests (-c 4 -m 8 by default).

Data set. --accounts accounts (1,000; --quick 50): one of --big-users users (100,000; --quick
2,000), every other one of --small-users (100); 60% hold a Sales seat, 25% a Service seat.
Accounts and seat purchases go through the RPCs, users and assignments straight into the
tables (bench/dataset.py). Reads and AssignSeat use a 100-user account; the "@N users" lines
send the same requests about the big account; PurchaseSeats buys on a fresh account each round.

Rounds. Each request is first sent once through grpcio: an RPC that does not answer OK is
skipped and says why. For each RPC, every round measures the empty handler and the seat server
in turn (the order flips every round, so drift hits both); the table shows medians over
rounds. Calls/s counts the OK answers in the servers' own grpc_server_handled_total counters
(SEATS_METRICS_ADDRESS), scraped before and after each round; non-OK answers are shown and
warned about; without counters it falls back to h2load's count and says UNVERIFIED. Server
CPU per call is utime+stime from /proc/PID/stat over the round over the OK answers; on
PostgreSQL, "db us/call" is the same for the backends serving the seat server. A round in
which other programs used the CPUs (from /proc/stat) is measured again, within
--noisy-retries for the whole run, and otherwise marked noisy.

Replicas (--replicas 1,2,3, PostgreSQL only). For each N in the list, N seat servers (python -m
service.server serve, each on a port of its own with its own SEATS_METRICS_ADDRESS) run on the
same PostgreSQL schema and are driven together: h2load talks to one host per process, so each
round runs one h2load per replica at the same time, the -c x -m in-flight calls split evenly
between them (bench/replicas.py split_load), and sums the OK answers of each replica's own
grpc_server_handled_total. The replicas start after the data set is seeded (through one server,
stopped before), so none keeps a copy from before the import; there is no empty handler. The
RPCs are GetSeatSummary, CheckSeats(1) and PurchaseSeats unless --only says otherwise (the
probe account's arm of each); PurchaseSeats buys on a fresh account per replica and round, as
a sharded load would, so the replicas do not queue on one account's lock. Per N the table shows
calls/s in all and per replica, how evenly they share it (the slowest replica over the
fastest), server CPU per call (the replicas' utime+stime added up), the PostgreSQL backends'
CPU per call, the machine's busy share over the round (/proc/stat) and the cores used by the
replicas, PostgreSQL (backends and background processes), the load (h2load and this program)
and other programs. Servers and h2load are not pinned in this mode (--server-cpu pins every
replica to one CPU, --load-cpu every h2load). On a 2-core machine h2load, PostgreSQL and the
replicas share the same two cores, so more replicas cannot show more calls/s there: what the
run shows is that the replicas share the load evenly and where the CPU goes. On a machine with
more cores than replicas + PostgreSQL + load, calls/s should grow with N until PostgreSQL's
write path (for writes) or the cores saturate. Writes bench/results/<time>-replicas.json and
.png (a chart of calls/s by N per RPC, and of the cores used). SQLite is refused: several
processes on one SQLite file serialise on its write lock, so the run would measure that lock.

Writes bench/results/<time>-<store>.json and .png (or --out PATH.json and PATH.png). The
parsers' unit tests: .venv/bin/python -m pytest bench (and tests/tools/test_bench.py)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import h2load, replicas, report, seat_cache
from .cases import Case, build_cases, goal
from .dataset import DEFAULT_POSTGRES, Database, DataSet, DataSpec, seed
from .measure import Round, measure, metrics_available, preflight, warm_up
from .servers import CodeUnderTest, ServerProcess, migrate, postgres_backends, start_empty, start_service

REPO = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Settings:
    store: str
    rounds: int
    load: h2load.Load
    warmup_seconds: float
    spec: DataSpec
    server_cpu: int | None
    load_cpu: int | None
    only: frozenset[str]
    skip: frozenset[str]
    noisy_retries: int
    service_env: dict[str, str]
    replicas: tuple[int, ...] = ()  # --replicas: the replica counts to measure, in order; () the normal run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="small data set, 2 s rounds (under 3 minutes in all)")
    p.add_argument("--postgres", action="store_true", help=f"PostgreSQL at {DEFAULT_POSTGRES}, a fresh schema")
    p.add_argument("--database-url", default="", help="an empty database (PostgreSQL: with ?schema=, must not exist)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per RPC (default 3)")
    p.add_argument("--seconds", type=float, default=0.0, help="h2load -D per round (default 5, --quick 2)")
    p.add_argument("--requests", type=int, default=0, help="h2load -n per round instead of -D")
    p.add_argument(
        "--warmup", type=float, default=0.0, help="warm-up seconds per RPC and server (default 1, --quick 0.5)"
    )
    p.add_argument("--connections", type=int, default=4, help="h2load -c (default 4)")
    p.add_argument("--streams", type=int, default=8, help="h2load -m, streams per connection (default 8)")
    p.add_argument("--accounts", type=int, default=0, help="accounts in all (default 1000, --quick 50)")
    p.add_argument("--big-users", type=int, default=0, help="users of the big account (default 100000, --quick 2000)")
    p.add_argument("--small-users", type=int, default=100, help="users of every other account (default 100)")
    p.add_argument("--only", default="", help="comma-separated RPC names to measure, e.g. GetUser,AssignSeat")
    p.add_argument("--skip", default="", help="comma-separated RPC names to leave out, e.g. CheckSeats(1)")
    p.add_argument("--server-root", default=str(REPO), help="the checkout whose service/ is measured")
    p.add_argument(
        "--server-cpu", type=int, default=None, help="CPU for both servers (default 0; --replicas: not pinned)"
    )
    p.add_argument("--load-cpu", type=int, default=None, help="CPU for h2load (default 1; --replicas: not pinned)")
    p.add_argument(
        "--replicas",
        default="",
        help="comma-separated replica counts, e.g. 1,2,3: for each N, N seat servers on one PostgreSQL schema "
        f"driven together (PostgreSQL only; default RPCs {','.join(replicas.DEFAULT_RPCS)})",
    )
    p.add_argument(
        "--noisy-retries",
        type=int,
        default=8,
        help="re-measurements allowed per run of rounds where other programs used the CPUs (default 8)",
    )
    p.add_argument("--out", default="", help="result path (.json; the chart goes beside it as .png)")
    p.add_argument(
        "--rpc-log",
        choices=["off", "errors", "all"],
        default="",
        help="the seat server's --rpc-log (default: its own, errors); 'all' measures a log line per call",
    )
    p.add_argument(
        "--rpc-log-sample",
        type=float,
        default=None,
        help="the seat server's --rpc-log-sample: the fraction of OK calls logged with --rpc-log all",
    )
    args = p.parse_args(argv)
    if args.rounds < 1 or args.rounds > 50:
        p.error("--rounds must be 1..50")
    if args.rpc_log_sample is not None and not 0.0 <= args.rpc_log_sample <= 1.0:
        p.error("--rpc-log-sample must be 0..1")
    if args.replicas:
        try:
            counts = replicas.parse_counts(args.replicas)
        except ValueError as exc:
            p.error(str(exc))
        if not (args.postgres or args.database_url.startswith("postgres")):
            p.error(
                "--replicas needs PostgreSQL (--postgres, or a postgresql:// --database-url): several server "
                "processes on one SQLite file serialise on its write lock, so more replicas would only measure "
                "that lock"
            )
        accounts = args.accounts or (50 if args.quick else 1000)
        needed = args.rounds * max(counts) + 3  # PurchaseSeats: an account per replica and round, the warm-up's
        if accounts < needed:
            p.error(f"--replicas {max(counts)} with --rounds {args.rounds} needs --accounts {needed} or more")
    return args


def settings_of(args: argparse.Namespace) -> Settings:
    quick = args.quick
    spec = DataSpec(
        accounts=args.accounts or (50 if quick else 1000),
        big_users=args.big_users or (2_000 if quick else 100_000),
        small_users=args.small_users,
    )
    seconds = args.seconds or (2.0 if quick else 5.0)
    store = "postgres" if args.postgres or args.database_url.startswith("postgres") else "sqlite"

    def names(text: str) -> frozenset[str]:
        return frozenset(n.strip() for n in text.split(",") if n.strip())

    cpus = os.sched_getaffinity(0)
    counts = tuple(replicas.parse_counts(args.replicas)) if args.replicas else ()
    # Normal runs pin the servers to CPU 0 and h2load to CPU 1. With several replicas, one CPU
    # for all of them would measure them queueing for it: unpinned unless asked.
    server_cpu = args.server_cpu if args.server_cpu is not None else (None if counts else 0)
    load_cpu = args.load_cpu if args.load_cpu is not None else (None if counts else 1)
    only = names(args.only) or (frozenset(replicas.DEFAULT_RPCS) if counts else frozenset())
    return Settings(
        store=store,
        rounds=args.rounds,
        load=h2load.Load(args.connections, args.streams, seconds, args.requests),
        warmup_seconds=args.warmup or (0.5 if quick else 1.0),
        spec=spec,
        server_cpu=server_cpu if server_cpu in cpus else None,
        load_cpu=load_cpu if load_cpu in cpus else None,
        only=only,
        skip=names(args.skip),
        noisy_retries=args.noisy_retries,
        service_env=service_env(args),
        replicas=counts,
    )


def service_env(args: argparse.Namespace) -> dict[str, str]:
    """The seat server's settings this run changes from its defaults (SEATS_* variables)."""
    env = {}
    if args.rpc_log:
        env["SEATS_RPC_LOG"] = args.rpc_log
    if args.rpc_log_sample is not None:
        env["SEATS_RPC_LOG_SAMPLE"] = repr(args.rpc_log_sample)
    return env


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def running(servers: list[ServerProcess]) -> Iterator[list[ServerProcess]]:
    try:
        yield servers
    finally:
        for s in servers:
            s.stop()


def noise(r: Round) -> str:
    if r.db_cpu_s or not r.load_cpu_busy:
        return f"other programs used {r.foreign_cpu:.2f} CPU"
    return f"other programs used {r.foreign_cpu:.2f} of the servers' CPU, {r.foreign_load_cpu:.2f} of h2load's"


class RetryBudget:
    """Re-measurements of noisy rounds left for the whole run (bounded, so a busy machine
    cannot stretch the run without end)."""

    def __init__(self, total: int) -> None:
        self.left = total

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


def measure_case(
    case: Case,
    service: ServerProcess,
    empty: ServerProcess,
    s: Settings,
    work: Path,
    budget: RetryBudget,
    discarded: list[Round],
) -> list[report.ArmResult]:
    results = [report.ArmResult(case.name, arm.label, arm.scale, case.kind, goal(case, s.store)) for arm in case.arms]
    # (result, server, request by round), the empty handler first; it gets the first arm's bytes.
    lanes: list[tuple[report.ArmResult | None, ServerProcess, Any]] = [(None, empty, case.arms[0].request)]
    for result, arm in zip(results, case.arms, strict=True):
        status = preflight(service, arm.request(-1))
        if status != "OK":
            result.skipped = f"the seat server answered {status}"
            log(f"{arm.label}: skipped, {result.skipped}")
            continue
        lanes.append((result, service, arm.request))
    if len(lanes) == 1:
        return results
    status = preflight(empty, case.arms[0].request(-1))
    if status != "OK":
        raise RuntimeError(f"the empty handler answered {status}")
    warm = h2load.Load(s.load.connections, s.load.streams, s.warmup_seconds)
    for _, server, request in lanes:  # requests(-1): the warm-up's own account for writes
        warm_up(server, request(-1), warm, work, s.load_cpu)
    empty_rounds: list[Round] = []
    for k in range(s.rounds):
        order = lanes if k % 2 == 0 else lanes[::-1]
        for lane_result, server, request in order:
            label = lane_result.label if lane_result else report.EMPTY
            bystanders = [empty if server is service else service]
            backends = postgres_backends(service.pid) if s.store == "postgres" and server is service else []
            r = measure(server, bystanders, request(k), label, k, s.load, work, s.load_cpu, s.server_cpu, backends)
            while r.noisy and budget.take():  # another program took CPU: measure this round again
                log(f"{case.name} round {k + 1} {label}: {noise(r)}; measuring it again")
                discarded.append(r)
                retry = measure(
                    server, bystanders, request(k), label, k, s.load, work, s.load_cpu, s.server_cpu, backends
                )
                r = retry if retry.foreign_cpu + retry.foreign_load_cpu < r.foreign_cpu + r.foreign_load_cpu else r
            (lane_result.rounds if lane_result else empty_rounds).append(r)
            flag = "" if r.verified else " (unverified)"
            bad = f" non-OK {r.non_ok}" if r.non_ok else ""
            noisy = f" NOISY ({noise(r)})" if r.noisy else ""
            log(f"{case.name} round {k + 1}/{s.rounds} {label}: {r.calls_per_s:,.0f} calls/s{flag}{bad}{noisy}")
    for lane_result, _, _ in lanes[1:]:
        if lane_result is not None:
            lane_result.empty_rounds = empty_rounds
    return results


def run(args: argparse.Namespace) -> int:
    s = settings_of(args)
    if s.replicas:
        return run_replicas(args, s)
    code = CodeUnderTest(Path(args.server_root).resolve(), sys.executable)
    if args.database_url:
        db = Database.from_url(args.database_url)
    else:
        db = Database.fresh_postgres() if s.store == "postgres" else Database.fresh_sqlite()
    started = dt.datetime.now(dt.UTC)
    work = Path(tempfile.mkdtemp(prefix="seats-bench-run-"))
    memory: dict[str, dict[str, int]] = {}
    results: list[report.ArmResult] = []
    discarded: list[Round] = []  # noisy rounds measured again
    notes: list[str] = []
    succeeded = False
    log(f"code under test: {code.root} ({code.revision or 'no git'}); database {db.label}")
    if s.service_env:
        log(f"seat server settings: {s.service_env}")
        notes.append(f"seat server settings: {s.service_env}")
    if s.server_cpu is None or s.load_cpu is None:
        notes.append("CPU pinning unavailable: servers and h2load share CPUs")
    try:
        db.claim_schema()
        migrate(code, db.url, work)
        service = start_service(code, db.url, s.server_cpu, work, s.service_env)
        with running([service]) as held:
            empty = start_empty(code, s.server_cpu, work)
            with running([empty]):
                memory["service_start"] = service.memory_kib()
                for server in (service, empty):
                    why = metrics_available(server)
                    if why:
                        notes.append(f"{server.name}: {why}; its answers are counted by h2load (UNVERIFIED)")
                        log(f"!!! {notes[-1]}")
                log(
                    f"seeding {s.spec.accounts:,} accounts, {s.spec.users:,} users "
                    f"(one account of {s.spec.big_users:,}, the others {s.spec.small_users:,})"
                )
                data = seed(db, service.target, s.spec, purchase_accounts=s.rounds + 1)
                log(f"seeded in {data.seconds:.1f} s: {data.users:,} users, {data.assignments:,} seats assigned")
                # The users and seats went straight into the tables, behind the server's back and
                # without events, so the accounts' versions did not move: start the server again,
                # as after any import, so that it keeps no copy from before the import.
                service.stop()
                service = held[0] = start_service(code, db.url, s.server_cpu, work, s.service_env)
                memory["service_seeded"] = service.memory_kib()
                budget = RetryBudget(s.noisy_retries)
                for case in build_cases(data):
                    if (s.only and case.name not in s.only) or case.name in s.skip:
                        continue
                    results += measure_case(case, service, empty, s, work, budget, discarded)
                cache_figures = None
                if (not s.only or "SeatCache" in s.only) and "SeatCache" not in s.skip:
                    log("SeatCache: loading the probe account and measuring checks and writes")
                    cache_figures = seat_cache.measure(
                        service.target, data.probe.account_id, data.probe.owner, data.probe.seated
                    )
                    for line in cache_figures.lines():
                        log(line)
                memory["service_end"] = service.memory_kib()
                memory["empty_end"] = empty.memory_kib()
                affinity = {"service": service.affinity(), "empty": empty.affinity()}
                logs = {"service": service.log_summary(), "empty": empty.log_summary()}
        finished = dt.datetime.now(dt.UTC)
        document = result_document(
            s, code, db, data, results, memory, notes, affinity, logs, started, finished, discarded
        )
        document["seat_cache"] = asdict(cache_figures) if cache_figures else None
        out = Path(args.out) if args.out else RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-{s.store}.json"
        print_report(s, db, code, data, results, memory, notes, logs)
        for line in cache_figures.lines() if cache_figures else []:
            print(line)
        report.write_json(out, document)
        title = (
            f"seats {code.revision} on {s.store}: calls/s over the empty grpcio handler's "
            f"(h2load -c {s.load.connections} -m {s.load.streams}, median of {s.rounds} rounds)"
        )
        report.chart(out.with_suffix(".png"), results, title)
        print(f"\nresults: {out}\nchart:   {out.with_suffix('.png')}")
        succeeded = True
    finally:
        db.cleanup()
        if succeeded:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"server logs kept in {work}")
    return 0


# ---- --replicas ---------------------------------------------------------------------------------


def start_replicas(code: CodeUnderTest, database_url: str, n: int, s: Settings, work: Path) -> list[ServerProcess]:
    """N seat servers on one database, started at once (PostgreSQL lets several start together),
    each with a log directory of its own and its own metrics address; all stopped if one fails."""
    dirs = [work / f"n{n}-replica{i + 1}" for i in range(n)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    with futures.ThreadPoolExecutor(max_workers=n) as pool:
        jobs = [pool.submit(start_service, code, database_url, s.server_cpu, d, s.service_env) for d in dirs]
    started: list[ServerProcess] = []
    failures: list[BaseException] = []
    for job in jobs:
        try:
            started.append(job.result())
        except Exception as exc:
            failures.append(exc)
    if failures:
        for server in started:
            server.stop()
        raise failures[0]
    for i, server in enumerate(started):
        server.name = f"seat server replica {i + 1}/{n}"
    return started


def measure_replicas_case(
    case: Case,
    group: list[ServerProcess],
    s: Settings,
    work: Path,
    budget: RetryBudget,
    discarded: list[replicas.ReplicaRound],
) -> replicas.ReplicasResult:
    """One RPC on len(group) replicas: a preflight on each, a warm-up of all together, then
    the rounds. The probe account's arm only: one line per RPC and replica count."""
    n = len(group)
    arm = next((a for a in case.arms if a.scale == ""), case.arms[0])
    loads = replicas.split_load(s.load, n)
    result = replicas.ReplicasResult(case.name, case.kind, n, loads)
    for server in group:
        status = preflight(server, arm.request(-1))
        if status != "OK":
            result.skipped = f"{server.name} answered {status}"
            log(f"{case.name} on {n}: skipped, {result.skipped}")
            return result
    warm = [h2load.Load(x.connections, x.streams, s.warmup_seconds) for x in loads]
    # request(-1): the warm-up's own account for writes.
    replicas.measure_round(group, [arm.request(-1)] * n, warm, case.name, -1, work, s.load_cpu)
    for k in range(s.rounds):
        # Writes: an account per replica and round (request(i) picks purchase account i), reads
        # the same request on every replica.
        probes = [arm.request(k * n + i) for i in range(n)]
        r = replicas.measure_round(group, probes, loads, case.name, k, work, s.load_cpu)
        while r.noisy and budget.take():  # another program took CPU: measure this round again
            log(f"{case.name} on {n} round {k + 1}: other programs used {r.cores['other']:.2f} cores; again")
            discarded.append(r)
            retry = replicas.measure_round(group, probes, loads, case.name, k, work, s.load_cpu)
            r = retry if retry.cores["other"] < r.cores["other"] else r
        result.rounds.append(r)
        per = "/".join(f"{x:,.0f}" for x in r.per_replica)
        flag = "" if r.verified else " (unverified)"
        bad = f" non-OK {r.non_ok}" if r.non_ok else ""
        silent = f" SILENT replica(s) {r.silent_replicas}" if r.silent_replicas else ""
        noisy = f" NOISY (other programs {r.cores['other']:.2f} cores)" if r.noisy else ""
        log(
            f"{case.name} on {n} round {k + 1}/{s.rounds}: {r.calls_per_s:,.0f} calls/s ({per}){flag}, "
            f"busy {r.busy_share:.0%}{bad}{silent}{noisy}"
        )
    return result


def run_replicas(args: argparse.Namespace, s: Settings) -> int:
    """--replicas: seeds the data set through one server, then for each N starts N replicas on
    the same schema, measures the chosen RPCs on all of them together, and stops them."""
    code = CodeUnderTest(Path(args.server_root).resolve(), sys.executable)
    db = Database.from_url(args.database_url) if args.database_url else Database.fresh_postgres()
    started = dt.datetime.now(dt.UTC)
    work = Path(tempfile.mkdtemp(prefix="seats-bench-run-"))
    results: list[replicas.ReplicasResult] = []
    discarded: list[replicas.ReplicaRound] = []
    notes: list[str] = []
    logs: dict[str, list[dict[str, Any]]] = {}
    affinity: dict[str, list[list[int]]] = {}
    most = max(s.replicas)
    cpus = os.cpu_count() or 1
    succeeded = False
    log(f"code under test: {code.root} ({code.revision or 'no git'}); database {db.label}; replicas {s.replicas}")
    if s.service_env:
        notes.append(f"seat server settings: {s.service_env}")
    for line in replicas.reading_notes(cpus, most, s.server_cpu is not None):
        log(line)
    try:
        db.claim_schema()
        migrate(code, db.url, work)
        seeder_dir = work / "seeding"
        seeder_dir.mkdir()
        seeder = start_service(code, db.url, s.server_cpu, seeder_dir, s.service_env)
        with running([seeder]):
            log(
                f"seeding {s.spec.accounts:,} accounts, {s.spec.users:,} users "
                f"(one account of {s.spec.big_users:,}, the others {s.spec.small_users:,})"
            )
            data = seed(db, seeder.target, s.spec, purchase_accounts=s.rounds * most + 1)
            log(f"seeded in {data.seconds:.1f} s: {data.users:,} users, {data.assignments:,} seats assigned")
        # The seeding server is stopped: the replicas start after the import, with no copy from before it.
        cases = [c for c in build_cases(data) if c.name in s.only and c.name not in s.skip]
        unknown = s.only - {c.name for c in build_cases(data)}
        if unknown:
            notes.append(f"--only names no such RPC: {', '.join(sorted(unknown))}")
        budget = RetryBudget(s.noisy_retries)
        for n in s.replicas:
            split = replicas.split_load(s.load, n)
            log(
                f"{n} replica(s): each driven by h2load "
                + ", ".join(f"-c {x.connections} -m {x.streams}" for x in split)
            )
            group = start_replicas(code, db.url, n, s, work)
            with running(group):
                for server in group:
                    why = metrics_available(server)
                    if why:
                        notes.append(f"{server.name}: {why}; its answers are counted by h2load (UNVERIFIED)")
                        log(f"!!! {notes[-1]}")
                for case in cases:
                    results.append(measure_replicas_case(case, group, s, work / f"n{n}-h2load", budget, discarded))
                affinity[str(n)] = [server.affinity() for server in group]
                logs[str(n)] = [server.log_summary() for server in group]
        finished = dt.datetime.now(dt.UTC)
        how = f"{s.load.requests} requests" if s.load.requests else f"{s.load.seconds:g} s"
        pinning = (f"replicas on CPU {s.server_cpu}" if s.server_cpu is not None else "replicas not pinned") + (
            f", h2load on CPU {s.load_cpu}" if s.load_cpu is not None else ", h2load not pinned"
        )
        title = (
            f"seats {code.revision} on {s.store} ({db.label}), {cpus} cores: N replicas on one schema, one h2load "
            f"per replica (-c {s.load.connections} -m {s.load.streams} split between them), {pinning}; "
            f"median of {s.rounds} rounds of {how}"
        )
        print()
        print(replicas.table(results, title))
        print()
        print(
            "even: the slowest replica's calls/s over the fastest's; busy: the machine's CPUs over the round; "
            "cores: replicas / PostgreSQL (backends + background) / load (h2load + the bench) / other programs"
        )
        for line in replicas.reading_notes(cpus, most, s.server_cpu is not None):
            print(line)
        for count, summaries in logs.items():
            bad = [x["warnings_and_errors"] for x in summaries]
            levels = [x["levels"] for x in summaries]
            print(f"replica logs with {count}: {levels}" + (f"; warnings/errors: {bad}" if any(bad) else ""))
        warnings = replicas.warnings(results)
        for line in notes + warnings:
            print(line)
        shown = [a for a in results if not a.skipped]
        document = run_header(s, code, db, data, affinity, started, finished)
        document["mode"] = "replicas"
        document["replica_counts"] = list(s.replicas)
        document["load"]["split"] = {str(n): [asdict(x) for x in replicas.split_load(s.load, n)] for n in s.replicas}
        document["data_set"]["purchase_accounts"] = [a.account_id for a in data.purchase_accounts]
        document |= {
            "answers_verified": all(a.verified for a in shown),
            "every_replica_answered": not any(a.silent_replicas for a in shown),
            "non_ok_answers": {f"{a.rpc} x{a.replicas}": a.non_ok for a in shown if a.non_ok},
            "notes": notes + warnings,
            "reading": replicas.reading_notes(cpus, most, s.server_cpu is not None),
            "discarded_noisy_rounds": [r.to_json() for r in discarded],
            "server_logs": logs,
            "results": [a.to_json() for a in results],
        }
        out = Path(args.out) if args.out else RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}-replicas.json"
        report.write_json(out, document)
        chart_title = (
            f"seats {code.revision}: N replicas on one PostgreSQL, {cpus} cores "
            f"(h2load -c {s.load.connections} -m {s.load.streams} split, median of {s.rounds} rounds)"
        )
        replicas.chart(out.with_suffix(".png"), results, chart_title, cpus)
        print(f"\nresults: {out}\nchart:   {out.with_suffix('.png')}")
        succeeded = True
    finally:
        db.cleanup()
        if succeeded:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"server logs kept in {work}")
    return 0


def print_report(
    s: Settings,
    db: Database,
    code: CodeUnderTest,
    data: DataSet,
    results: list[report.ArmResult],
    memory: dict[str, dict[str, int]],
    notes: list[str],
    logs: dict[str, Any],
) -> None:
    how = f"{s.load.requests} requests" if s.load.requests else f"{s.load.seconds:g} s"
    title = (
        f"seats {code.revision} on {s.store} ({db.label}): h2load -c {s.load.connections} -m {s.load.streams} "
        f"on CPU {s.load_cpu}, servers on CPU {s.server_cpu}; median of {s.rounds} rounds of {how}"
    )
    print()
    print(report.table(results, title))
    print()
    for line in report.scale_lines(results, data.probe.users, data.big.users):
        print(line)
    print(report.memory_line(memory, data.users, s.spec.accounts))
    service_log = logs["service"]
    bad = service_log["warnings_and_errors"]
    print(f"seat server log: {service_log['levels']}" + (f"; warnings/errors: {bad}" if bad else ""))
    for line in notes + report.warnings(results):
        print(line)


def run_header(
    s: Settings,
    code: CodeUnderTest,
    db: Database,
    data: DataSet,
    affinity: dict[str, Any],
    started: dt.datetime,
    finished: dt.datetime,
) -> dict[str, Any]:
    """What every result document says of its run: when, what code on which store and machine,
    the load and the data set."""
    return {
        "started": started.isoformat(),
        "finished": finished.isoformat(),
        "store": s.store,
        "database": db.label,
        "code_under_test": {"root": str(code.root), "commit": code.revision},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "service_settings": s.service_env,
        "load": {
            **asdict(s.load),
            "rounds": s.rounds,
            "warmup_seconds": s.warmup_seconds,
            "h2load_cpu": s.load_cpu,
            "server_cpu": s.server_cpu,
            "affinity": affinity,
        },
        "data_set": {
            **asdict(s.spec),
            "users_total": data.users,
            "assignments": data.assignments,
            "seed_seconds": round(data.seconds, 2),
            "probe_account": data.probe.account_id,
        },
    }


def result_document(
    s: Settings,
    code: CodeUnderTest,
    db: Database,
    data: DataSet,
    results: list[report.ArmResult],
    memory: dict[str, dict[str, int]],
    notes: list[str],
    affinity: dict[str, list[int]],
    logs: dict[str, Any],
    started: dt.datetime,
    finished: dt.datetime,
    discarded: list[Round],
) -> dict[str, Any]:
    document = run_header(s, code, db, data, affinity, started, finished)
    document["data_set"]["big_account"] = data.big.account_id
    return document | {
        "answers_verified": all(a.verified for a in results if not a.skipped),
        "non_ok_answers": {a.label: a.non_ok for a in results if a.non_ok},
        "notes": notes + report.warnings(results),
        "discarded_noisy_rounds": [r.to_json() for r in discarded],
        "memory_kib": memory,
        "server_logs": logs,
        "results": [a.to_json() for a in results],
    }


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
