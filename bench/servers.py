"""The servers under test, as subprocesses pinned to one CPU: the seat server started the way
`make run` starts it, and the empty grpcio handler (bench/empty_server.py). Their CPU time
and memory come from /proc."""

from __future__ import annotations

import functools
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
READY_TIMEOUT = 60.0


class ServerError(RuntimeError):
    """A server that would not start, or died."""


def busy_seconds(cpu: int | None) -> float:
    """CPU time one CPU (None: all of them) spent busy since boot (user, nice, system, irq,
    softirq, steal), from /proc/stat."""
    name = "cpu" if cpu is None else f"cpu{cpu}"
    for line in Path("/proc/stat").read_text().splitlines():
        fields = line.split()
        if fields and fields[0] == name:
            user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
            return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS
    raise ValueError(f"no {name} in /proc/stat")


def children_cpu_seconds() -> float:
    """CPU time of this process's waited-for children (h2load), from getrusage."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin_prefix(cpu: int | None) -> list[str]:
    """`taskset -c CPU` when there is such a CPU and taskset; nothing otherwise."""
    if cpu is None or cpu not in os.sched_getaffinity(0) or not shutil.which("taskset"):
        return []
    return ["taskset", "-c", str(cpu)]


@dataclass(frozen=True)
class CodeUnderTest:
    """Where the seat server's code lives (a checkout) and the interpreter that runs it."""

    root: Path
    python: str

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        """The caller's environment without its SEATS_* settings (flags and defaults decide, as
        for the empty handler), the checkout first on the path, plus extra."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEATS_")}
        path = [str(self.root), str(self.root / "clients" / "python")]
        if env.get("PYTHONPATH"):
            path.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(path)
        env.update(extra)
        return env

    @functools.cached_property
    def revision(self) -> str:
        """git's short commit of the checkout (+dirty when service/ has changes), read once."""
        try:
            out = subprocess.run(
                ["git", "-C", str(self.root), "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        dirty = subprocess.run(
            ["git", "-C", str(self.root), "status", "--porcelain", "--", "service"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")


class ServerProcess:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path, metrics_address: str) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self.metrics_address = metrics_address
        self.port = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_lines(self) -> list[dict[str, Any]]:
        return list(self.iter_log())

    def iter_log(self) -> Iterator[dict[str, Any]]:
        """The log's entries one at a time (with --rpc-log all it holds a line per call)."""
        try:
            log = self.log_path.open(errors="replace")
        except OSError:
            return
        with log:
            for raw in log:
                raw = raw.rstrip("\n")
                try:
                    entry = json.loads(raw)
                except ValueError:
                    entry = {"level": "RAW", "message": raw}
                if isinstance(entry, dict):
                    yield entry

    def log_tail(self, n: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_summary(self) -> dict[str, Any]:
        """Log lines per level, and the distinct messages of the warnings and errors."""
        levels: Counter[str] = Counter()
        bad: Counter[str] = Counter()
        for e in self.iter_log():
            levels[str(e.get("level", ""))] += 1
            if e.get("level") not in ("INFO", "DEBUG"):
                bad[str(e.get("message", ""))[:200]] += 1
        return {"levels": dict(levels), "warnings_and_errors": dict(bad.most_common(10))}

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the log says "serving" with the port (the seat server's log line, which the
        empty handler writes too)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for entry in self.log_lines():
                if entry.get("message") == "serving" and entry.get("port"):
                    self.port = int(entry["port"])
                    return
            if self.popen.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}")
            time.sleep(0.05)
        raise ServerError(f"{self.name} not serving after {timeout:.0f} s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """utime + stime of the whole process (all threads), from /proc/PID/stat."""
        seconds = process_cpu_seconds(self.pid)
        if seconds is None:
            raise ServerError(f"{self.name} is gone:\n{self.log_tail()}")
        return seconds

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (resident now) and VmHWM (the peak), from /proc/PID/status."""
        out = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
        return out

    def affinity(self) -> list[int]:
        try:
            return sorted(os.sched_getaffinity(self.pid))
        except OSError:
            return []

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(5)


def migrate(code: CodeUnderTest, database_url: str, log_dir: Path) -> None:
    log_path = log_dir / "migrate.log"
    with log_path.open("wb") as log:
        done = subprocess.run(
            [code.python, "-m", "service.server", "migrate", "--database-url", database_url],
            cwd=code.root,
            env=code.env({}),
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
    if done.returncode != 0:
        raise ServerError(f"migrate exited with {done.returncode}:\n{log_path.read_text(errors='replace')[-2000:]}")


def start_service(
    code: CodeUnderTest, database_url: str, cpu: int | None, log_dir: Path, settings: dict[str, str] | None = None
) -> ServerProcess:
    """python -m service.server serve, as `make run` runs it, with metrics on a free port and
    settings (SEATS_* variables, e.g. SEATS_RPC_LOG=all) on top."""
    metrics = f"127.0.0.1:{free_port()}"
    env = code.env(
        {
            "SEATS_SWEEP_INTERVAL_SECONDS": "0",
            "SEATS_METRICS_ADDRESS": metrics,
            "SEATS_GRACE_SECONDS": "2",
            **(settings or {}),
        }
    )
    command = [
        *pin_prefix(cpu),
        code.python,
        "-m",
        "service.server",
        "serve",
        "--address",
        "127.0.0.1:0",
        "--database-url",
        database_url,
    ]
    return _start("seat server", command, code.root, env, log_dir / "service.log", metrics)


def start_empty(code: CodeUnderTest, cpu: int | None, log_dir: Path) -> ServerProcess:
    """bench/empty_server.py, run as a script so that `service.config` comes from the code under test."""
    metrics = f"127.0.0.1:{free_port()}"
    command = [
        *pin_prefix(cpu),
        code.python,
        str(BENCH_DIR / "empty_server.py"),
        "--address",
        "127.0.0.1:0",
        "--metrics-address",
        metrics,
    ]
    return _start("empty handler", command, code.root, code.env({}), log_dir / "empty.log", metrics)


def _start(
    name: str, command: list[str], cwd: Path, env: dict[str, str], log_path: Path, metrics: str
) -> ServerProcess:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    server = ServerProcess(name, popen, log_path, metrics)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


# ---- PostgreSQL backends ------------------------------------------------------------------------


def _tcp_table() -> dict[int, tuple[int, int]]:
    """socket inode -> (local port, remote port), for every TCP socket of this network namespace."""
    table = {}
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9:
                table[int(f[9])] = (int(f[1].rsplit(":", 1)[1], 16), int(f[2].rsplit(":", 1)[1], 16))
    return table


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def postgres_backends(client_pid: int, port: int = 5432) -> list[int]:
    """The PostgreSQL backend processes at the other end of client_pid's connections to port."""
    table = _tcp_table()
    ours = {table[i][0] for i in _socket_inodes(client_pid) if i in table and table[i][1] == port}
    if not ours:
        return []
    wanted = {inode for inode, (local, remote) in table.items() if local == port and remote in ours}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if Path(f"/proc/{entry}/comm").read_text().strip() != "postgres":
                continue
        except OSError:
            continue
        if _socket_inodes(int(entry)) & wanted:
            found.append(int(entry))
    return sorted(found)


def process_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads), from /proc/PID/stat; None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; fields[0] is field 3
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
