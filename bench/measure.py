"""One measured round: scrape the server's counters, read its CPU time, run h2load, read
both again. Calls/s counts the answers the server says were OK; h2load's own count is
used only when the server has no counters, and then the round says it is unverified.

The rate is OK answers over h2load's measured duration (-D). The calls still in flight when
h2load stops (at most -c x -m) finish on the server and are counted too: with 4 x 8 streams,
at most 32 calls, about 1% of a 2 s round at 1,000 calls/s. wall_seconds (scrape to scrape,
h2load's start-up and connections included) is kept beside it."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from . import h2load, metrics
from .cases import Probe
from .servers import ServerError, ServerProcess, busy_seconds, children_cpu_seconds, process_cpu_seconds


@dataclass(frozen=True)
class Round:
    round_no: int
    arm: str  # "empty handler" or the arm's label
    ok: int  # answers counted as OK (by the server, or by h2load when unverified)
    non_ok: dict[str, int]  # answers by non-OK grpc_code, from the server's counters
    verified: bool  # counted by the server's own counters
    why_unverified: str
    seconds: float  # h2load's measured duration
    wall_seconds: float  # from the scrape before to the scrape after
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    latency_samples: int
    server_cpu_s: float
    cpu_us_per_call: float
    foreign_cpu: float  # other programs' work on the servers' CPU during the round, in cores (0.5 = half)
    foreign_load_cpu: float  # the same on h2load's CPU
    load_cpu_busy: float  # how busy h2load's CPU was in all (1.0: full, h2load had to share it)
    db_cpu_s: float  # CPU time of the PostgreSQL backends serving the seat server (0 on SQLite)
    db_us_per_call: float
    noisy: bool  # other programs competed for the servers' CPU, or filled h2load's
    h2load: dict[str, int] = field(default_factory=dict)  # its own counts, for the record

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _counts(server: ServerProcess, probe: Probe) -> tuple[metrics.Handled | None, str]:
    try:
        samples = metrics.scrape(server.metrics_address)
    except metrics.MetricsUnavailable as exc:
        return None, f"no metrics endpoint ({exc})"
    return metrics.handled(samples, probe.service, probe.method), ""


def metrics_available(server: ServerProcess, wait_seconds: float = 3.0) -> str:
    """ "" when the server answers on its metrics address, else why not (waits a little: the
    endpoint may come up just after the gRPC port)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            metrics.scrape(server.metrics_address)
            return ""
        except metrics.MetricsUnavailable as exc:
            if time.monotonic() >= deadline:
                return str(exc)
        time.sleep(0.2)


def preflight(server: ServerProcess, probe: Probe) -> str:
    """Sends the request once through grpcio with the same bytes and metadata: "OK", or the
    status it got, so that a table never shows the speed of an error."""
    with grpc.insecure_channel(server.target) as channel:
        call = channel.unary_unary(probe.path, request_serializer=None, response_deserializer=None)
        try:
            call(probe.message, metadata=tuple((h, v) for h, v in probe.headers[2:]), timeout=30)
        except grpc.RpcError as exc:
            return f"{exc.code().name}: {exc.details()}"
    return "OK"


def warm_up(server: ServerProcess, probe: Probe, load: h2load.Load, work_dir: Path, cpu: int | None) -> None:
    h2load.run(probe, server.target, load, work_dir, cpu, keep_log=False)


NOISY_SERVER_CPU = 0.10  # other programs' share of the servers' CPU above which a round is noisy
NOISY_TOTAL_CPU = 0.2  # without pinning, or with a database: other programs' CPU on all CPUs
NOISY_LOAD_CPU = 0.3  # the same on h2load's CPU, when that CPU was nearly full (above FULL)
FULL = 0.85


def measure(
    server: ServerProcess,
    bystanders: list[ServerProcess],
    probe: Probe,
    arm: str,
    round_no: int,
    load: h2load.Load,
    work_dir: Path,
    cpu: int | None,
    server_cpu: int | None,
    db_backends: list[int],
) -> Round:
    """One round against server; bystanders are this run's other servers, whose CPU is not
    foreign. cpu is h2load's CPU, server_cpu the servers' (None: not pinned, all CPUs count).
    db_backends are the PostgreSQL processes serving it: their CPU is the database's, not
    foreign, and since they run on any CPU, noise is then judged on all CPUs together."""
    before, why_before = _counts(server, probe)
    cpu_before = server.cpu_seconds()
    others_before = sum(b.cpu_seconds() for b in bystanders)
    pinned = cpu is not None and server_cpu is not None and not db_backends
    db_before = {pid: t for pid in db_backends if (t := process_cpu_seconds(pid)) is not None}
    busy_server_before = busy_seconds(server_cpu if pinned else None)
    busy_load_before = busy_seconds(cpu) if pinned else 0.0
    h2load_before, own_before = children_cpu_seconds(), time.process_time()
    wall_start = time.monotonic()
    run = h2load.run(probe, server.target, load, work_dir, cpu)
    if not server.alive():
        raise ServerError(f"{server.name} died during {arm}:\n{server.log_tail()}")
    cpu_after = server.cpu_seconds()
    busy_server = busy_seconds(server_cpu if pinned else None) - busy_server_before
    busy_load = busy_seconds(cpu) - busy_load_before if pinned else 0.0
    db_used = 0.0
    for pid, t in db_before.items():
        now = process_cpu_seconds(pid)
        db_used += (now - t) if now is not None else 0.0
    servers = (cpu_after - cpu_before) + (sum(b.cpu_seconds() for b in bystanders) - others_before)
    client = (children_cpu_seconds() - h2load_before) + (time.process_time() - own_before)
    h2load_wall = time.monotonic() - wall_start
    if pinned:
        foreign = max(0.0, busy_server - servers) / h2load_wall
        foreign_load = max(0.0, busy_load - client) / h2load_wall
        load_busy = busy_load / h2load_wall
    else:
        foreign = max(0.0, busy_server - servers - client - db_used) / h2load_wall
        foreign_load = load_busy = 0.0
    after, why_after = _counts(server, probe)
    wall = time.monotonic() - wall_start
    s = run.summary

    if before is not None and after is not None and after.present:
        ok = round(after.ok - before.ok)
        non_ok = {code: n for code, n in after.minus(before).items() if code != metrics.OK}
        verified, why = True, ""
    else:
        ok = s.status_2xx
        non_ok = {}
        verified = False
        why = why_before or why_after or "the server's counters have no series for this method"
    seconds = s.seconds if s.seconds > 0 else wall
    cpu_used = cpu_after - cpu_before
    return Round(
        round_no=round_no,
        arm=arm,
        ok=ok,
        non_ok=non_ok,
        verified=verified,
        why_unverified=why,
        seconds=seconds,
        wall_seconds=wall,
        calls_per_s=ok / seconds if seconds else 0.0,
        p50_ms=h2load.percentile(run.latencies_us, 0.50) / 1000,
        p99_ms=h2load.percentile(run.latencies_us, 0.99) / 1000,
        latency_samples=len(run.latencies_us),
        server_cpu_s=cpu_used,
        cpu_us_per_call=cpu_used * 1e6 / ok if ok else 0.0,
        foreign_cpu=round(foreign, 3),
        foreign_load_cpu=round(foreign_load, 3),
        load_cpu_busy=round(load_busy, 3),
        db_cpu_s=db_used,
        db_us_per_call=db_used * 1e6 / ok if ok else 0.0,
        noisy=(
            foreign > NOISY_SERVER_CPU or (foreign_load > NOISY_LOAD_CPU and load_busy > FULL)
            if pinned
            else foreign > NOISY_TOTAL_CPU
        ),
        h2load={
            "done": s.done,
            "succeeded": s.succeeded,
            "failed": s.failed,
            "errored": s.errored,
            "timeout": s.timeout,
            "status_2xx": s.status_2xx,
            "status_other": s.status_other,
        },
    )
