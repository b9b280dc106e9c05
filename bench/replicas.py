"""--replicas: N seat-server replicas on one PostgreSQL schema, driven together.

h2load talks to one host per process, so a round runs one h2load per replica at the same
time, the run's -c connections x -m streams split between them (split_load), and counts the
OK answers in each replica's own grpc_server_handled_total (each replica has its own
SEATS_METRICS_ADDRESS), as the single-server rounds do. Besides calls/s in all and per
replica, a round keeps where the machine's CPU went: the replicas (utime+stime), the
PostgreSQL backends serving them, PostgreSQL's own background processes (WAL writer,
checkpointer: writes make them work), the load (the h2load processes and this program), and
the rest, which is other programs (noise). With all of it on one machine, these say whether
the cores, PostgreSQL or the service saturate first.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from concurrent import futures
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import h2load
from .cases import Probe
from .measure import NOISY_TOTAL_CPU, _counts
from .servers import (
    ServerError,
    ServerProcess,
    busy_seconds,
    children_cpu_seconds,
    postgres_backends,
    process_cpu_seconds,
)

MAX_REPLICAS = 16  # each replica holds its own PostgreSQL connections; PostgreSQL's default cap is 100
DEFAULT_RPCS = ("GetSeatSummary", "CheckSeats(1)", "PurchaseSeats")


# ---- the command line ---------------------------------------------------------------------------


def parse_counts(text: str) -> list[int]:
    """--replicas "1,2,3": the replica counts in the order given, each once. Refuses what is
    not a whole number in 1..MAX_REPLICAS, so a typo fails before the data set is seeded."""
    counts: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit():
            raise ValueError(f"--replicas takes whole numbers separated by commas, not {part!r}")
        n = int(part)
        if not 1 <= n <= MAX_REPLICAS:
            raise ValueError(f"--replicas: {n} is not in 1..{MAX_REPLICAS}")
        if n not in counts:
            counts.append(n)
    if not counts:
        raise ValueError("--replicas needs at least one count, e.g. 1,2,3")
    return counts


def split_load(load: h2load.Load, n: int) -> list[h2load.Load]:
    """The load of one h2load per replica, so that N replicas together get about the in-flight
    calls one server gets (connections x streams): every replica the same number of
    connections (at least one), and the streams spread so that the replicas' in-flight calls
    differ by at most one connection's rounding. Equal shares matter: h2load is a closed loop,
    so a replica given more streams would answer more and look faster. -n requests are split
    the same way; -D stays the same for all."""
    if n < 1:
        raise ValueError("n must be at least 1")
    connections = max(1, load.connections // n)
    in_flight = load.connections * load.streams
    base, extra = divmod(in_flight, n)
    requests_base, requests_extra = divmod(load.requests, n)
    out = []
    for i in range(n):
        mine = max(1, base + (1 if i < extra else 0))
        streams = max(1, math.ceil(mine / connections))
        requests = max(1, requests_base + (1 if i < requests_extra else 0)) if load.requests > 0 else 0
        out.append(h2load.Load(connections, streams, load.seconds, requests))
    return out


# ---- one round ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Share:
    """One replica's part of a round, counted by its own counters."""

    replica: int  # 1-based
    connections: int
    streams: int
    ok: int
    non_ok: dict[str, int]
    verified: bool
    why_unverified: str
    seconds: float  # its h2load's measured duration
    server_cpu_s: float
    h2load: dict[str, int] = field(default_factory=dict)

    @property
    def calls_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class CpuSplit:
    """Where the machine's CPU went during a round, in CPU seconds."""

    busy_s: float  # all CPUs, from /proc/stat
    replicas_s: float
    backends_s: float  # the PostgreSQL backends serving the replicas
    pg_background_s: float  # PostgreSQL's own processes (WAL writer, checkpointer, ...)
    load_s: float  # the h2load processes and this program

    @property
    def other_s(self) -> float:
        """Other programs' CPU (never below zero: the sources tick at different moments)."""
        return max(0.0, self.busy_s - self.replicas_s - self.backends_s - self.pg_background_s - self.load_s)

    def cores(self, wall_seconds: float) -> dict[str, float]:
        """Each part in cores used on average over wall_seconds (1.0: one core all the time)."""
        if wall_seconds <= 0:
            return {"replicas": 0.0, "postgres": 0.0, "load": 0.0, "other": 0.0}
        return {
            "replicas": self.replicas_s / wall_seconds,
            "postgres": (self.backends_s + self.pg_background_s) / wall_seconds,
            "load": self.load_s / wall_seconds,
            "other": self.other_s / wall_seconds,
        }


@dataclass(frozen=True)
class ReplicaRound:
    """One round of one RPC against N replicas at once."""

    rpc: str
    replicas: int
    round_no: int
    shares: list[Share]
    wall_seconds: float  # from starting the first h2load to the last one's end
    cpus: int
    cpu: CpuSplit
    db_backends: int
    p50_ms: float
    p99_ms: float
    latency_samples: int

    @property
    def ok(self) -> int:
        return sum(s.ok for s in self.shares)

    @property
    def calls_per_s(self) -> float:
        """The replicas' rates added up: each over its own h2load's duration, as they ran together."""
        return sum(s.calls_per_s for s in self.shares)

    @property
    def per_replica(self) -> list[float]:
        return [s.calls_per_s for s in self.shares]

    @property
    def balance(self) -> float:
        """The slowest replica's calls/s over the fastest's: 1.0 is an even share."""
        rates = self.per_replica
        return min(rates) / max(rates) if rates and max(rates) > 0 else math.nan

    @property
    def cpu_us_per_call(self) -> float:
        return self.cpu.replicas_s * 1e6 / self.ok if self.ok else math.nan

    @property
    def db_us_per_call(self) -> float:
        return self.cpu.backends_s * 1e6 / self.ok if self.ok else math.nan

    @property
    def busy_share(self) -> float:
        """How busy the machine's CPUs were over the round, 0..1 (from /proc/stat)."""
        return self.cpu.busy_s / (self.wall_seconds * self.cpus) if self.wall_seconds > 0 and self.cpus else math.nan

    @property
    def cores(self) -> dict[str, float]:
        return self.cpu.cores(self.wall_seconds)

    @property
    def noisy(self) -> bool:
        """Other programs used more than NOISY_TOTAL_CPU of a core on average."""
        return self.cores["other"] > NOISY_TOTAL_CPU

    @property
    def verified(self) -> bool:
        return all(s.verified for s in self.shares)

    @property
    def silent_replicas(self) -> list[int]:
        """Replicas that answered nothing OK in the round."""
        return [s.replica for s in self.shares if s.ok <= 0]

    @property
    def non_ok(self) -> dict[str, int]:
        return _add([s.non_ok for s in self.shares])

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            ok=self.ok,
            calls_per_s=_num(self.calls_per_s),
            balance=_num(self.balance),
            cpu_us_per_call=_num(self.cpu_us_per_call),
            db_us_per_call=_num(self.db_us_per_call),
            busy_share=_num(self.busy_share),
            cores={k: round(v, 3) for k, v in self.cores.items()},
            noisy=self.noisy,
            non_ok=self.non_ok,
        )
        for share, rate in zip(out["shares"], self.per_replica, strict=True):
            share["calls_per_s"] = _num(rate)
        return out


def _add(counts: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in counts:
        for code, n in c.items():
            total[code] = total.get(code, 0) + n
    return dict(sorted(total.items()))


def postgres_background() -> list[int]:
    """PostgreSQL's processes that serve no client: the postmaster, checkpointer, background
    and WAL writers, autovacuum. A client backend's title holds its client's address in
    parentheses ("postgres: 15/main: postgres test 127.0.0.1(48308) idle"); theirs does not."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
            title = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if "(" not in title:
            found.append(int(entry))
    return sorted(found)


def _cpu_of(pids: Sequence[int]) -> dict[int, float]:
    return {pid: t for pid in pids if (t := process_cpu_seconds(pid)) is not None}


def cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds of processes over an interval. A process seen only after it started during
    the interval (a connection opened mid-round), so all its time counts; one gone by the end
    left nothing to read, and counts for nothing."""
    return sum(t - before.get(pid, 0.0) for pid, t in after.items())


def measure_round(
    replicas: Sequence[ServerProcess],
    probes: Sequence[Probe],
    loads: Sequence[h2load.Load],
    rpc: str,
    round_no: int,
    work_dir: Path,
    load_cpu: int | None,
) -> ReplicaRound:
    """Scrapes every replica's counters and reads the CPU times, runs one h2load per replica
    at once (probes[i] and loads[i] for replicas[i]), then reads them all again."""
    n = len(replicas)
    dirs = [work_dir / f"h2load-{i + 1}" for i in range(n)]
    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    before = [_counts(r, p) for r, p in zip(replicas, probes, strict=True)]
    cpu_before = [r.cpu_seconds() for r in replicas]
    backends_before = _cpu_of([pid for r in replicas for pid in postgres_backends(r.pid)])
    background_before = _cpu_of(postgres_background())
    busy_before = busy_seconds(None)
    load_before, own_before = children_cpu_seconds(), time.process_time()
    started = time.monotonic()
    with futures.ThreadPoolExecutor(max_workers=n) as pool:
        runs = list(
            pool.map(
                lambda i: h2load.run(probes[i], replicas[i].target, loads[i], dirs[i], load_cpu),
                range(n),
            )
        )
    # The machine's busy time and the load's first, over the same interval as the wall time;
    # the scans of /proc below take this program's CPU outside it.
    busy = busy_seconds(None) - busy_before
    wall = time.monotonic() - started
    load = (children_cpu_seconds() - load_before) + (time.process_time() - own_before)
    for r in replicas:
        if not r.alive():
            raise ServerError(f"{r.name} died during {rpc}:\n{r.log_tail()}")
    cpu_after = [r.cpu_seconds() for r in replicas]
    backend_pids = [pid for r in replicas for pid in postgres_backends(r.pid)]
    backends_after = _cpu_of(backend_pids)
    background_after = _cpu_of(postgres_background())
    after = [_counts(r, p) for r, p in zip(replicas, probes, strict=True)]

    shares = []
    for i in range(n):
        (b, why_b), (a, why_a), run = before[i], after[i], runs[i]
        s = run.summary
        if b is not None and a is not None and a.present:
            ok, non_ok, verified, why = round(a.ok - b.ok), {c: k for c, k in a.minus(b).items() if c != "OK"}, True, ""
        else:
            ok, non_ok, verified = s.status_2xx, {}, False
            why = why_b or why_a or "the replica's counters have no series for this method"
        shares.append(
            Share(
                replica=i + 1,
                connections=loads[i].connections,
                streams=loads[i].streams,
                ok=ok,
                non_ok=non_ok,
                verified=verified,
                why_unverified=why,
                seconds=s.seconds if s.seconds > 0 else wall,
                server_cpu_s=cpu_after[i] - cpu_before[i],
                h2load={
                    "done": s.done,
                    "failed": s.failed,
                    "errored": s.errored,
                    "timeout": s.timeout,
                    "status_2xx": s.status_2xx,
                    "status_other": s.status_other,
                },
            )
        )
    latencies = [v for run in runs for v in run.latencies_us]
    return ReplicaRound(
        rpc=rpc,
        replicas=n,
        round_no=round_no,
        shares=shares,
        wall_seconds=wall,
        cpus=os.cpu_count() or 1,
        cpu=CpuSplit(
            busy_s=busy,
            replicas_s=sum(cpu_after) - sum(cpu_before),
            backends_s=cpu_used(backends_before, backends_after),
            pg_background_s=cpu_used(background_before, background_after),
            load_s=load,
        ),
        db_backends=len(set(backend_pids)),
        p50_ms=h2load.percentile(latencies, 0.50) / 1000,
        p99_ms=h2load.percentile(latencies, 0.99) / 1000,
        latency_samples=len(latencies),
    )


# ---- medians over rounds ------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


@dataclass
class ReplicasResult:
    """One RPC at one replica count: its rounds, and their medians."""

    rpc: str
    kind: str
    replicas: int
    loads: list[h2load.Load] = field(default_factory=list)
    rounds: list[ReplicaRound] = field(default_factory=list)
    skipped: str = ""

    @property
    def calls_per_s(self) -> float:
        return _median([r.calls_per_s for r in self.rounds])

    @property
    def per_replica(self) -> list[float]:
        """Each replica's median calls/s over the rounds."""
        return [_median([r.per_replica[i] for r in self.rounds]) for i in range(self.replicas)] if self.rounds else []

    @property
    def balance(self) -> float:
        return _median([r.balance for r in self.rounds])

    @property
    def p50_ms(self) -> float:
        return _median([r.p50_ms for r in self.rounds])

    @property
    def p99_ms(self) -> float:
        return _median([r.p99_ms for r in self.rounds])

    @property
    def cpu_us_per_call(self) -> float:
        return _median([r.cpu_us_per_call for r in self.rounds])

    @property
    def db_us_per_call(self) -> float:
        return _median([r.db_us_per_call for r in self.rounds])

    @property
    def busy_share(self) -> float:
        return _median([r.busy_share for r in self.rounds])

    @property
    def cores(self) -> dict[str, float]:
        keys = ("replicas", "postgres", "load", "other")
        return {k: _median([r.cores[k] for r in self.rounds]) for k in keys}

    @property
    def non_ok(self) -> dict[str, int]:
        return _add([r.non_ok for r in self.rounds])

    @property
    def verified(self) -> bool:
        return all(r.verified for r in self.rounds)

    @property
    def silent_replicas(self) -> list[int]:
        """Replicas that answered nothing OK in at least one round."""
        return sorted({i for r in self.rounds for i in r.silent_replicas})

    @property
    def noisy_rounds(self) -> int:
        return sum(r.noisy for r in self.rounds)

    @property
    def h2load_trouble(self) -> int:
        return sum(
            s.h2load.get("failed", 0) + s.h2load.get("errored", 0) + s.h2load.get("timeout", 0)
            for r in self.rounds
            for s in r.shares
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "rpc": self.rpc,
            "kind": self.kind,
            "replicas": self.replicas,
            "skipped": self.skipped,
            "h2load_per_replica": [{"connections": x.connections, "streams": x.streams} for x in self.loads],
            "calls_per_s": _num(self.calls_per_s),
            "per_replica_calls_per_s": [_num(x) for x in self.per_replica],
            "balance": _num(self.balance),
            "p50_ms": _num(self.p50_ms),
            "p99_ms": _num(self.p99_ms),
            "cpu_us_per_call": _num(self.cpu_us_per_call),
            "db_us_per_call": _num(self.db_us_per_call),
            "machine_busy_share": _num(self.busy_share),
            "cores": {k: _num(v) for k, v in self.cores.items()},
            "non_ok": self.non_ok,
            "answers_verified": self.verified,
            "silent_replicas": self.silent_replicas,
            "noisy_rounds": self.noisy_rounds,
            "h2load_http2_failures": self.h2load_trouble,
            "rounds": [r.to_json() for r in self.rounds],
        }


# ---- the table, warnings and the chart ----------------------------------------------------------


def _fmt(x: float, spec: str) -> str:
    return "-" if math.isnan(x) else format(x, spec)


def table(results: Sequence[ReplicasResult], title: str) -> str:
    head = (
        f"{'RPC':16} {'N':>2} {'calls/s':>8} {'per replica calls/s':24} {'even':>5} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'cpu us/call':>11} {'db us/call':>10} {'busy':>5} {'cores svc/pg/load/other':>24} {'non-OK':>7}"
        "  answers counted by"
    )
    lines = [title, head, "-" * len(head)]
    for a in results:
        if a.skipped:
            lines.append(f"{a.rpc:16} {a.replicas:>2} skipped: {a.skipped}")
            continue
        per = "/".join(_fmt(x, ",.0f") for x in a.per_replica)
        c = a.cores
        cores = "/".join(_fmt(c[k], ".2f") for k in ("replicas", "postgres", "load", "other"))
        non_ok = sum(a.non_ok.values())
        non_ok_text = f"{non_ok}!!" if non_ok else ("0" if a.verified else "?")
        counted = "servers" if a.verified else "h2load UNVERIFIED"
        if a.silent_replicas:
            counted += f"; replica(s) {a.silent_replicas} SILENT"
        if a.noisy_rounds:
            counted += f"; {a.noisy_rounds} noisy round(s)"
        busy = _fmt(a.busy_share * 100, "4.0f") + "%" if not math.isnan(a.busy_share) else "    -"
        lines.append(
            f"{a.rpc:16} {a.replicas:>2} {_fmt(a.calls_per_s, '8,.0f')} {per:24} {_fmt(a.balance, '5.2f')} "
            f"{_fmt(a.p50_ms, '7.2f')} {_fmt(a.p99_ms, '7.2f')} {_fmt(a.cpu_us_per_call, '11.0f')} "
            f"{_fmt(a.db_us_per_call, '10.0f')} {busy:>5} {cores:>24} {non_ok_text:>7}  {counted}"
        )
    return "\n".join(lines)


def warnings(results: Sequence[ReplicasResult]) -> list[str]:
    out = []
    for a in results:
        if a.skipped:
            continue
        label = f"{a.rpc} on {a.replicas} replica(s)"
        if a.non_ok:
            codes = ", ".join(f"{n} {code}" for code, n in a.non_ok.items())
            out.append(f"!!! NON-OK ANSWERS in {label}: {codes} (calls/s counts only OK answers)")
        if not a.verified:
            reasons = {s.why_unverified for r in a.rounds for s in r.shares if not s.verified}
            out.append(f"!!! UNVERIFIED {label}: answers counted by h2load ({'; '.join(sorted(reasons))})")
        if a.silent_replicas:
            out.append(f"!!! {label}: replica(s) {a.silent_replicas} answered nothing OK in some round")
        if a.noisy_rounds:
            worst = max(r.cores["other"] for r in a.rounds)
            out.append(
                f"!!! NOISY {label}: {a.noisy_rounds} round(s) while other programs used up to {worst:.2f} cores"
            )
        if a.h2load_trouble:
            out.append(f"!!! h2load saw {a.h2load_trouble} failed/errored/timed-out requests in {label}")
    return out


def reading_notes(cpus: int, most: int, pinned: bool) -> list[str]:
    """What the figures can and cannot say on this machine: with fewer cores than replicas,
    PostgreSQL and the load generator, they all share the cores, so calls/s cannot grow with N."""
    if cpus < most + 2:
        out = [
            f"This machine has {cpus} cores: h2load, PostgreSQL and up to {most} replicas share them, so more "
            "replicas cannot show more calls/s here. What it shows is whether the replicas share the load evenly "
            "(even = the slowest replica's calls/s over the fastest's) and where the CPU goes (cores: the "
            "replicas, PostgreSQL's backends and background processes, h2load with this program, other programs).",
            "On a machine with more cores than replicas + PostgreSQL + load, calls/s should grow with N until "
            "PostgreSQL's write path (for writes) or the cores saturate.",
        ]
    else:
        out = [
            f"{cpus} cores: calls/s should grow with N until PostgreSQL's write path (for writes) or the cores "
            "saturate; busy and the cores column say which."
        ]
    if pinned:
        out.append("The replicas are pinned to one CPU (--server-cpu): they compete for it.")
    return out


def chart(path: Path, results: Sequence[ReplicasResult], title: str, cpus: int) -> None:
    """Left: calls/s by replica count, a line per RPC. Right: the cores each part used, stacked,
    per RPC and replica count, under a line at the machine's cores."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [a for a in results if not a.skipped and a.rounds]
    rpcs = list(dict.fromkeys(a.rpc for a in shown))
    counts = sorted({a.replicas for a in shown})
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5), dpi=110, gridspec_kw={"width_ratios": [1, 1.4]})
    for rpc in rpcs:
        mine = sorted((a for a in shown if a.rpc == rpc), key=lambda a: a.replicas)
        xs = [a.replicas for a in mine]
        line = left.plot(xs, [a.calls_per_s for a in mine], marker="o", label=rpc)[0]
        for a in mine:
            left.scatter(
                [a.replicas] * len(a.per_replica), a.per_replica, marker="_", s=120, color=line.get_color(), alpha=0.7
            )
            left.annotate(f"{a.calls_per_s:,.0f}", (a.replicas, a.calls_per_s), fontsize=7, va="bottom")
    left.set_xticks(counts)
    left.set_xlabel("replicas (N)")
    left.set_ylabel("OK calls/s, all replicas (dashes: each replica)")
    left.set_ylim(bottom=0)
    left.grid(alpha=0.3)
    left.legend(fontsize=8)

    parts = (("replicas", "#2e86c1"), ("postgres", "#8e44ad"), ("load", "#f39c12"), ("other", "#95a5a6"))
    labels, bottoms = [], [0.0] * len(shown)
    ordered = sorted(shown, key=lambda a: (rpcs.index(a.rpc), a.replicas))
    xs = list(range(len(ordered)))
    for key, color in parts:
        values = [a.cores[key] if not math.isnan(a.cores[key]) else 0.0 for a in ordered]
        right.bar(xs, values, bottom=bottoms, color=color, width=0.7, label=key)
        bottoms = [b + v for b, v in zip(bottoms, values, strict=True)]
    labels = [f"{a.rpc}\nN={a.replicas}" for a in ordered]
    right.axhline(cpus, color="black", linewidth=1.5, linestyle="--", label=f"{cpus} cores")
    right.set_xticks(xs)
    right.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    right.set_ylabel("cores used, average over the round (median)")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    right.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
