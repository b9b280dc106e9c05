"""Several replicas of the server on one PostgreSQL schema, each a process on a port of its own with
its Prometheus metrics on another, and the typed client's calls kept as the fault tests' Answers,
so that tests/faults/support.py checks them against the event log (I4, I5)."""

from __future__ import annotations

import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from seats import SeatsClient, errors

from tests.faults.support import Answer
from tests.served import ServerProcess, free_port, launch, wait_until_serving
from tests.toolkit import UnaryUnaryInterceptor

SEAT_SERVICE = "seats.v1.SeatService"
GRACE_SECONDS = 5.0
"""--grace-seconds of every replica: how long a stopping replica lets its calls in flight finish."""
EXIT_SECONDS = GRACE_SECONDS + 15.0
"""How long a replica may take from SIGTERM to exit: its grace, and the rest of its shutdown."""
METRICS_SECONDS = 5.0


@dataclass
class Replica:
    """One replica: a server process that may be stopped and started again on the same ports."""

    directory: Path
    database_url: str
    port: int
    metrics_port: int
    process: ServerProcess | None = None
    generations: list[ServerProcess] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Starts the process, without waiting for it to serve."""
        self.process = launch(
            self.directory,
            port=self.port,
            database_url=self.database_url,
            flags=("--metrics-address", f"127.0.0.1:{self.metrics_port}", "--grace-seconds", str(GRACE_SECONDS)),
        )
        self.generations.append(self.process)

    def wait_until_serving(self) -> None:
        assert self.process is not None
        wait_until_serving(self.process)

    def terminate(self) -> int:
        """SIGTERM, as an orchestrator stops a replica, and waits for the graceful exit; its exit code."""
        assert self.process is not None
        self.process.process.send_signal(signal.SIGTERM)
        code = self.process.wait_for_exit(EXIT_SECONDS)
        return code

    def kill(self) -> None:
        for generation in self.generations:
            generation.kill()

    def handled(self, service: str = SEAT_SERVICE) -> Counter[tuple[str, str]]:
        """grpc_server_handled_total of the running process by (method, code), for one service."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=METRICS_SECONDS) as response:
            text = response.read().decode()
        counts: Counter[tuple[str, str]] = Counter()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "grpc_server_handled_total" and sample.labels.get("grpc_service") == service:
                    counts[(sample.labels["grpc_method"], sample.labels["grpc_code"])] += int(sample.value)
        return counts

    def handled_calls(self, method: str) -> int:
        """Calls of ``method`` this process has answered, whatever their code."""
        return sum(n for (m, _), n in self.handled().items() if m == method)

    def error_log_lines(self) -> list[str]:
        return [str(e) for p in self.generations for e in p.log_entries() if e.get("level") in ("ERROR", "CRITICAL")]


@contextmanager
def replicas(directory: Path, database_url: str, count: int = 3) -> Iterator[list[Replica]]:
    """``count`` replicas of one database, started at once (they migrate the fresh schema together)
    and serving; every process any of them ran is killed on the way out."""
    started = [Replica(directory, database_url, free_port(), free_port()) for _ in range(count)]
    try:
        for replica in started:
            replica.launch()
        for replica in started:
            replica.wait_until_serving()
        yield started
    finally:
        for replica in started:
            replica.kill()


def balanced_target(group: list[Replica]) -> str:
    """The client's target for every replica: ip:port,ip:port,... (round robin)."""
    return ",".join(r.address for r in group)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Polls ``condition`` until it holds; the seconds it took. Fails the test at ``timeout``."""
    began = time.monotonic()
    while not condition():
        if time.monotonic() - began > timeout:
            pytest.fail(f"{what}: not within {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - began


def client_call(client: SeatsClient, name: str, *args: Any, op: str, server: int = -1, **kwargs: Any) -> Answer:
    """Calls the client's method ``name`` and keeps the answer as the fault tests do: the request
    it sent (built as the client builds it, so with the given request id), the response or the
    status code, reason and message of the SeatsError it raised. ``server`` -1: the balanced client."""
    request = getattr(SeatsClient, name).request(*args, **kwargs)
    started = time.monotonic()
    try:
        response = getattr(client, name)(*args, **kwargs)
    except errors.SeatsError as err:
        seconds = time.monotonic() - started
        return Answer(op, server, request, None, err.code.name, err.reason, err.message, started, seconds)
    return Answer(op, server, request, response, started=started, seconds=time.monotonic() - started)


class Attempts(UnaryUnaryInterceptor):
    """Counts the attempts of a client's unary calls by method and the status code each ended
    with: a call the client retried shows as its failed attempts and then its last one."""

    def __init__(self) -> None:
        self.codes: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        with self.lock:
            self.codes[(details.method.rpartition("/")[2], outcome.code().name)] += 1
        return outcome

    def of(self, *methods: str) -> int:
        """Attempts of these methods, whatever they ended with."""
        with self.lock:
            return sum(n for (method, _), n in self.codes.items() if method in methods)

    def failed(self) -> dict[str, int]:
        """Failed attempts by status code."""
        failed: Counter[str] = Counter()
        with self.lock:
            for (_, code), n in self.codes.items():
                if code != "OK":
                    failed[code] += n
        return dict(sorted(failed.items()))
