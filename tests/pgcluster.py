"""PostgreSQL as it is deployed, for the tests: clusters of the tests' own (a primary, a streaming hot
standby made with pg_basebackup) and a PgBouncer in transaction mode in front of one, each on free
ports of 127.0.0.1 and in a folder of its own, so that no test touches the machine's server on 5432
or a packaged pgbouncer on 6432.

initdb, postgres and pgbouncer refuse to run as root: when the tests run as root, every one of these
binaries runs as the ``postgres`` OS user (through runuser, or su when runuser is missing) and the
folders they write are chowned to it. Such folders must be reachable by that user, which pytest's
own temporary folders (mode 0700 under /tmp/pytest-of-root) are not: a folder given here that the
user cannot reach is replaced by a fresh one under the system's temporary folder, removed on
``close()``.

Fixture-friendly use::

    with primary(tmp_path) as pg, standby(pg, tmp_path) as replica, PgBouncer(pg, tmp_path) as bouncer:
        ...
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlencode

import psycopg2

from tests.served import free_port, wait_started

PG_BIN = Path("/usr/lib/postgresql/15/bin")
"""The machine's PostgreSQL 15 binaries (Debian's postgresql-15)."""
PG_BINARIES = ("initdb", "pg_ctl", "pg_basebackup", "postgres")
PGBOUNCER = Path("/usr/sbin/pgbouncer")
"""Debian's pgbouncer (1.18 on bookworm)."""
OS_USER = "postgres"
"""The OS user the binaries run as when the tests run as root."""
SUPERUSER = "postgres"
"""The database superuser every cluster is made with (trust authentication)."""

START_SECONDS = 60.0
"""How long a cluster or a bouncer may take to accept connections."""
COMMAND_SECONDS = 120.0
"""Bound of every initdb, pg_basebackup and pg_ctl run."""
SOCKET_PATH_MAX = 100
"""A unix socket path longer than this (the kernel's limit is 107 bytes) does not bind."""

PRIMARY_SETTINGS: Mapping[str, str | int] = {
    "wal_level": "replica",
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "hot_standby": "on",
    "wal_keep_size": "64MB",
    # A cluster of the tests' own does not fsync (the machine does not crash under a test), but a commit
    # is written to the WAL before it is acknowledged, as deployed: with synchronous_commit off, a row
    # acknowledged just before an immediate stop or a kill of the postmaster could be lost.
    "fsync": "off",
    "synchronous_commit": "on",
    # pg_rewind, for a failed-over primary, needs hint-bit changes in the WAL.
    "wal_log_hints": "on",
    "max_connections": 200,
    "shared_buffers": "16MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


# Who runs the binaries, and where.


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _as_os_user(command: Sequence[str]) -> list[str]:
    """The command as the postgres OS user when running as root (the binaries refuse root), else as is."""
    if not _running_as_root():
        return list(command)
    runuser = shutil.which("runuser") or ("/usr/sbin/runuser" if Path("/usr/sbin/runuser").exists() else None)
    if runuser:
        return [runuser, "-u", OS_USER, "--", *command]
    su = shutil.which("su") or "/bin/su"
    return [su, OS_USER, "-s", "/bin/sh", "-c", shlex.join(command)]


def _give_to_os_user(path: Path) -> None:
    """Make a folder or file the tests created belong to the user the binaries run as."""
    if _running_as_root():
        entry = pwd.getpwnam(OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(command: Sequence[str], cwd: Path, timeout: float = COMMAND_SECONDS) -> str:
    """Run a PostgreSQL binary to completion; its output is in the error when it fails."""
    result = subprocess.run(
        _as_os_user(command),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=timeout,
        check=False,
    )
    output = result.stdout.decode(errors="replace")
    if result.returncode != 0:
        raise RuntimeError(f"{shlex.join(command)} exited with {result.returncode}:\n{output}")
    return output


def _reachable_by_os_user(folder: Path) -> bool:
    """Whether the binaries' user can reach (search) the folder: every parent must let it through."""
    if not _running_as_root():
        return True
    probe = subprocess.run(
        _as_os_user(["test", "-x", str(folder)]),
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    return probe.returncode == 0


def _workdir(tmp: Path, prefix: str) -> tuple[Path, bool]:
    """A new folder for one cluster or bouncer, owned by the binaries' user, and whether it lies outside
    ``tmp`` (then its owner removes it). It is made in ``tmp`` when the binaries' user can reach it and the
    socket path fits, else under the system's temporary folder (mode 1777, so reachable)."""
    tmp = tmp.resolve()
    inside = tmp.is_dir() and _reachable_by_os_user(tmp) and len(str(tmp)) + 60 < SOCKET_PATH_MAX
    parent = tmp if inside else Path(tempfile.gettempdir())
    folder = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=parent))
    folder.chmod(0o755)
    _give_to_os_user(folder)
    return folder, not inside


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _conf_value(value: str | int) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + value.replace("'", "''") + "'"


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _url(port: int, dbname: str, options: Mapping[str, str | int]) -> str:
    """A libpq URL of the superuser on 127.0.0.1:port; options go in the query."""
    url = f"postgresql://{SUPERUSER}@127.0.0.1:{port}/{quote(dbname, safe='')}"
    if options:
        url += "?" + urlencode({name: str(value) for name, value in options.items()})
    return url


def postgres_binaries_available() -> str | None:
    """None when clusters of the tests' own can be made here, else why not (for a visible skip)."""
    for name in PG_BINARIES:
        if not (PG_BIN / name).is_file():
            return f"{PG_BIN / name} is missing (Debian package postgresql-15)"
    if _running_as_root():
        try:
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} OS user to run PostgreSQL as"
        try:
            _run(["true"], cwd=Path("/"), timeout=30)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            return f"running as root and cannot run commands as {OS_USER!r}: {e}"
    return None


def pgbouncer_available() -> str | None:
    """None when a PgBouncer of the tests' own can be started here, else why not."""
    if not PGBOUNCER.is_file():
        return f"{PGBOUNCER} is missing (Debian package pgbouncer)"
    return postgres_binaries_available()


# Clusters.


class PgCluster:
    """One PostgreSQL cluster of the tests' own: its data folder, a unix socket folder beside it, a
    TCP port of 127.0.0.1, trust authentication (replication included) for the superuser postgres."""

    def __init__(self, folder: Path, port: int, *, remove_folder: bool = False) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.sockets = folder / "sockets"
        self.log = folder / "postgres.log"
        self.port = port
        self._remove_folder = remove_folder
        if not self.sockets.exists():
            self.sockets.mkdir(mode=0o755)
            _give_to_os_user(self.sockets)

    def __repr__(self) -> str:
        return f"PgCluster(port={self.port}, data={str(self.data)!r})"

    # Life cycle.

    def initdb(self) -> None:
        """A new, empty cluster with trust authentication for local, host and replication connections."""
        _run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=self.folder,
        )
        (self.data / "pg_hba.conf").write_text(
            "# The tests' own cluster: anyone on this machine, trusted.\n"
            "local   all           all                 trust\n"
            "local   replication   all                 trust\n"
            "host    all           all   127.0.0.1/32  trust\n"
            "host    replication   all   127.0.0.1/32  trust\n"
        )

    def configure(self, settings: Mapping[str, str | int]) -> None:
        """Append settings to postgresql.conf (the last value of a setting wins), with this cluster's
        port, socket folder and listen address, which a base-backed-up standby must not inherit."""
        own: dict[str, str | int] = {
            **settings,
            "listen_addresses": "127.0.0.1",
            "port": self.port,
            "unix_socket_directories": str(self.sockets),
        }
        lines = "".join(f"{name} = {_conf_value(value)}\n" for name, value in own.items())
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# The tests' settings.\n{lines}")

    def start(self) -> None:
        """Start the postmaster and wait until it accepts connections (a standby: until it is consistent)."""
        _run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                str(int(START_SECONDS)),
                "start",
            ],
            cwd=self.folder,
        )

    def stop(self, mode: str = "immediate") -> None:
        """Stop the postmaster (``immediate`` by default: the tests do not need a shutdown checkpoint).
        When pg_ctl cannot, the postmaster named in postmaster.pid is killed; a stopped cluster is left
        alone, so stop() may be called any number of times."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        try:
            _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "20", "stop"], self.folder)
        except (RuntimeError, OSError, subprocess.SubprocessError):
            self._kill(pid)

    def _kill(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 20
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's process id, from postmaster.pid; None when it is not running."""
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, IndexError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def promote(self) -> None:
        """Turn a standby into a primary and wait until it accepts writes."""
        seconds = str(int(START_SECONDS))
        _run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-t", seconds, "promote"], self.folder)

    def close(self) -> None:
        """Stop, and remove the folder when it was made outside the caller's temporary folder."""
        try:
            self.stop()
        finally:
            if self._remove_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # Connections.

    def url(self, dbname: str = "postgres", **options: str | int) -> str:
        """A libpq URL of this cluster over TCP, as the service is given one; options go in the query."""
        return _url(self.port, dbname, options)

    def connect(self, dbname: str = "postgres", **options: str | int) -> Any:
        """A psycopg2 connection in autocommit mode; the caller closes it."""
        conn = psycopg2.connect(self.url(dbname, connect_timeout=10, **options))
        conn.autocommit = True
        return conn

    def query(self, sql: str, params: Sequence[Any] = (), dbname: str = "postgres") -> list[tuple[Any, ...]]:
        """Run one statement on a connection of its own (autocommit) and return its rows ([] when none)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, tuple(params) or None)
                return [tuple(row) for row in cur.fetchall()] if cur.description is not None else []
        finally:
            conn.close()

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run one statement and return its rows as psql's unaligned output would: a line per row,
        values separated by '|'."""
        rows = self.query(sql, dbname=dbname)
        return "\n".join("|".join("" if value is None else str(value) for value in row) for row in rows)

    def create_database(self, name: str) -> None:
        self.query(f"CREATE DATABASE {_quote_ident(name)}")

    def is_in_recovery(self) -> bool:
        """True on a standby (read-only), False on a primary."""
        return bool(self.query("SELECT pg_is_in_recovery()")[0][0])


def primary(tmp: Path, settings: Mapping[str, str | int] | None = None) -> PgCluster:
    """A started primary ready for streaming replication (wal_level=replica, max_wal_senders=10,
    hot_standby=on), without fsync; ``settings`` are added to (or override) PRIMARY_SETTINGS, which a
    standby inherits through its base backup."""
    folder, remove = _workdir(tmp, "pg-primary")
    cluster = PgCluster(folder, free_port(), remove_folder=remove)
    try:
        cluster.initdb()
        cluster.configure({**PRIMARY_SETTINGS, **(settings or {})})
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


def standby(of: PgCluster, tmp: Path, settings: Mapping[str, str | int] | None = None) -> PgCluster:
    """A started streaming hot standby of ``of``: a pg_basebackup -R -X stream of it (so
    standby.signal and primary_conninfo are written) on a port of its own."""
    folder, remove = _workdir(tmp, "pg-standby")
    cluster = PgCluster(folder, free_port(), remove_folder=remove)
    try:
        _run(
            [
                str(PG_BIN / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(of.port),
                "-U",
                SUPERUSER,
                "-D",
                str(cluster.data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
            cwd=folder,
        )
        cluster.configure({"hot_standby": "on", **(settings or {})})
        cluster.start()
    except BaseException:
        cluster.close()
        raise
    return cluster


def wait_replayed(of: PgCluster, replica: PgCluster, timeout: float = 30.0) -> None:
    """Wait until the standby has replayed everything the primary had written when this was called.
    The target is the insert position, not pg_current_wal_lsn() (the written one), which lags behind an
    asynchronous commit."""
    target = of.query("SELECT pg_current_wal_insert_lsn()::text")[0][0]
    deadline = time.monotonic() + timeout
    while True:
        caught_up, replayed = replica.query(
            "SELECT coalesce(pg_last_wal_replay_lsn() >= %s::pg_lsn, false), pg_last_wal_replay_lsn()::text",
            (target,),
        )[0]
        if caught_up:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"standby on port {replica.port} replayed {replayed}, not {target}, in {timeout}s")
        time.sleep(0.02)


# PgBouncer.


class PgBouncer:
    """Debian's pgbouncer in transaction mode in front of one cluster, on a free port of 127.0.0.1,
    every database name mapped to the same name on that cluster, trust authentication.

    pgbouncer 1.18 refuses a startup parameter it does not know unless told to ignore it: libpq and
    psycopg2 send only user, database and (when given) application_name, which pgbouncer knows; the
    service's ``?schema=`` becomes ``options=-c search_path=...``, which pgbouncer refuses. Ignoring
    ``options`` would let such a connection in with the search_path silently dropped, so it is not
    ignored unless ``ignore_startup_parameters`` says so."""

    def __init__(
        self,
        backend: PgCluster,
        tmp: Path,
        *,
        pool_mode: str = "transaction",
        default_pool_size: int = 20,
        max_client_conn: int = 500,
        ignore_startup_parameters: Sequence[str] = ("extra_float_digits",),
        settings: Mapping[str, str | int] | None = None,
    ) -> None:
        self.backend = backend
        self.folder, self._remove_folder = _workdir(tmp, "pgbouncer")
        self.port = free_port()
        self.ini = self.folder / "pgbouncer.ini"
        self.log = self.folder / "pgbouncer.log"
        self.pidfile = self.folder / "pgbouncer.pid"
        self.process: subprocess.Popen[bytes] | None = None
        config: dict[str, str | int] = {
            "listen_addr": "127.0.0.1",
            "listen_port": self.port,
            "unix_socket_dir": "",
            "auth_type": "trust",
            "auth_file": str(self.folder / "userlist.txt"),
            "admin_users": SUPERUSER,
            "pool_mode": pool_mode,
            "max_client_conn": max_client_conn,
            "default_pool_size": default_pool_size,
            "ignore_startup_parameters": ",".join(ignore_startup_parameters),
            "logfile": str(self.log),
            "pidfile": str(self.pidfile),
            "server_login_retry": 1,
            **(settings or {}),
        }
        # trust still wants the user named in the auth file.
        (self.folder / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
        self.ini.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={backend.port}\n"
            "\n[pgbouncer]\n" + "".join(f"{name} = {value}\n" for name, value in config.items())
        )
        for path in (self.ini, self.folder / "userlist.txt"):
            _give_to_os_user(path)

    def __repr__(self) -> str:
        return f"PgBouncer(port={self.port}, backend={self.backend!r})"

    def start(self) -> None:
        """Start pgbouncer in the foreground as a child and wait until its port answers."""
        if self.process is not None and self.process.poll() is None:
            return
        self.pidfile.unlink(missing_ok=True)
        with (self.folder / "pgbouncer.out").open("ab") as out:
            self.process = subprocess.Popen(
                _as_os_user([str(PGBOUNCER), str(self.ini)]),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        port = self.port
        wait_started(self.process, lambda: _port_answers(port), "pgbouncer", self._logs, self.stop, START_SECONDS)

    def _logs(self) -> str:
        parts = []
        for path in (self.folder / "pgbouncer.out", self.log):
            if path.exists():
                parts.append(path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def _pid(self) -> int | None:
        """pgbouncer's own process id: as root the child is runuser, whose child pgbouncer is."""
        try:
            return int(self.pidfile.read_text().split()[0])
        except (OSError, IndexError, ValueError):
            return None

    def stop(self) -> None:
        """Stop at once (SIGTERM is pgbouncer 1.18's immediate shutdown), SIGKILL when that is not enough."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        pid = self._pid() or process.pid
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            try:
                process.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue
        process.kill()
        process.wait(timeout=10)

    def close(self) -> None:
        """Stop, and remove the folder when it was made outside the caller's temporary folder."""
        try:
            self.stop()
        finally:
            if self._remove_folder:
                shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def url(self, dbname: str = "postgres", **options: str | int) -> str:
        """A libpq URL through the bouncer."""
        return _url(self.port, dbname, options)

    def admin(self, command: str) -> list[tuple[Any, ...]]:
        """A command of pgbouncer's admin console (``SHOW POOLS``, ``RECONNECT``, ...) and its rows."""
        conn = psycopg2.connect(self.url("pgbouncer", connect_timeout=10))
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(command)
                return [tuple(row) for row in cur.fetchall()] if cur.description is not None else []
        finally:
            conn.close()
