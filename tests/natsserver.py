"""A NATS server with JetStream of the tests' own: the machine's nats-server binary on a free port of
127.0.0.1 with its store in a temporary folder, so that no test touches the machine's NATS on 4222,
and so that a test can kill it or restart it (same port, same store: JetStream keeps its streams).

Fixture-friendly use::

    with NatsServer(tmp_path) as server:
        nc = await nats.connect(server.url)
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Self

from tests.served import free_port, wait_started

NATS_SERVER = Path("/usr/sbin/nats-server")
"""Debian's nats-server; one on PATH is used when it is not there."""
START_SECONDS = 30.0
"""How long the server may take from exec to greeting a client."""
STOP_SECONDS = 10.0
"""How long a SIGTERM may take before SIGKILL."""


def nats_server_binary() -> Path | None:
    if NATS_SERVER.is_file():
        return NATS_SERVER
    found = shutil.which("nats-server")
    return Path(found) if found else None


def nats_server_available() -> str | None:
    """None when a NATS server of the tests' own can be started here, else why not (for a visible skip)."""
    if nats_server_binary() is None:
        return f"nats-server is neither at {NATS_SERVER} nor on PATH (Debian package nats-server)"
    return None


def _greets(port: int) -> bool:
    """Whether a NATS server answers on the port: it sends INFO first to every client."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(1.0)
            return s.recv(5) == b"INFO "
    except OSError:
        return False


class NatsServer:
    """nats-server -js on a port chosen once (kept across restarts) with its JetStream store in
    ``folder/jetstream``; the server's output goes to ``folder/nats-server.log``."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        binary = nats_server_binary()
        if binary is None:
            raise RuntimeError(nats_server_available())
        self.binary = binary
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.store = folder / "jetstream"
        self.log = folder / "nats-server.log"
        self.port = port if port is not None else free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"NatsServer(url={self.url!r})"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it greets a client on its port."""
        if self.running():
            return
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(self.binary), "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port)],
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        port = self.port
        wait_started(self.process, lambda: _greets(port), "nats-server", self._log_tail, self.kill, START_SECONDS)

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        """Stop the server: SIGTERM (it flushes the JetStream store), SIGKILL if that takes too long."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_SECONDS)

    def kill(self) -> None:
        """Kill the server outright (SIGKILL), as a crash would."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait(timeout=STOP_SECONDS)

    def restart(self) -> None:
        """Stop, then start on the same port with the same store, as an operator's restart does."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
