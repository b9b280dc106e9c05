"""h2load, the load generator: the command line for one gRPC request, and what it reports
(its summary, and per-request latencies from --log-file)."""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .cases import Probe
from .servers import pin_prefix


@dataclass(frozen=True)
class Load:
    """-c connections x -m streams each, for -D seconds, or -n requests when requests > 0."""

    connections: int = 4
    streams: int = 8
    seconds: float = 5.0
    requests: int = 0


@dataclass(frozen=True)
class Summary:
    """h2load's own account of a run. It sees HTTP statuses only: a gRPC error is a 200 too."""

    seconds: float
    done: int
    succeeded: int
    failed: int
    errored: int
    timeout: int
    status_2xx: int
    status_other: int


@dataclass(frozen=True)
class Run:
    summary: Summary
    latencies_us: list[int]  # of the requests that finished, from --log-file
    command: list[str]


class H2loadError(RuntimeError):
    pass


def binary() -> str:
    found = shutil.which("h2load")
    if not found:
        raise H2loadError("h2load not found: apt-get install nghttp2-client")
    return found


def command(
    probe: Probe, target: str, load: Load, body_file: Path, log_file: Path | None, cpu: int | None
) -> list[str]:
    host = target.rsplit(":", 1)[0]
    if host != "127.0.0.1":
        raise H2loadError(f"the bench only loads loopback addresses, not {host}")
    args = [*pin_prefix(cpu), binary(), "-c", str(load.connections), "-m", str(load.streams), "-t", "1"]
    if load.requests > 0:
        args += ["-n", str(load.requests)]
    else:
        args += ["-D", f"{round(load.seconds * 1000)}ms"]
    args += ["-d", str(body_file)]
    for name, value in probe.headers:
        args += ["-H", f"{name}: {value}"]
    if log_file is not None:
        args += ["--log-file", str(log_file)]
    args.append(f"http://{target}{probe.path}")
    return args


_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}


def parse_summary(stdout: str) -> Summary:
    finished = re.search(r"^finished in ([\d.]+)(s|ms|us),", stdout, re.M)
    requests = re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, "
        r"(\d+) timeout",
        stdout,
        re.M,
    )
    codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", stdout, re.M)
    if not (finished and requests and codes):
        raise H2loadError(f"cannot read h2load's summary:\n{stdout[-2000:]}")
    _total, _started, done, succeeded, failed, errored, timeout = (int(g) for g in requests.groups())
    c2, c3, c4, c5 = (int(g) for g in codes.groups())
    return Summary(
        seconds=float(finished.group(1)) * _UNITS[finished.group(2)],
        done=done,
        succeeded=succeeded,
        failed=failed,
        errored=errored,
        timeout=timeout,
        status_2xx=c2,
        status_other=c3 + c4 + c5,
    )


def parse_log(text: str) -> list[int]:
    """--log-file: start time (us since the epoch), HTTP status, us until the end of the response."""
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[2].strip().lstrip("-").isdigit():
            out.append(int(parts[2]))
    return out


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile (q in 0..1) of values; nan for none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[max(0, math.ceil(q * len(ordered)) - 1)])


def run(probe: Probe, target: str, load: Load, work_dir: Path, cpu: int | None, *, keep_log: bool = True) -> Run:
    body_file = work_dir / "body.bin"
    body_file.write_bytes(probe.body)
    log_file = work_dir / "latency.tsv" if keep_log else None
    if log_file is not None:
        log_file.unlink(missing_ok=True)
    args = command(probe, target, load, body_file, log_file, cpu)
    limit = (load.seconds if load.requests <= 0 else 600.0) + 60.0
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired as exc:
        raise H2loadError(f"h2load ran past {limit:.0f} s: {' '.join(args)}") from exc
    if done.returncode != 0:
        raise H2loadError(f"h2load exited with {done.returncode}: {done.stderr[-2000:]}{done.stdout[-2000:]}")
    latencies = parse_log(log_file.read_text()) if log_file is not None and log_file.exists() else []
    return Run(parse_summary(done.stdout), latencies, args)
