"""The front door: how an operator starts the server. Every setting from flags, SEATS_* and `make run`
alike; every configuration it cannot run with stops it with exit code 2 and one line naming the
setting; `--version`; the next command to try once it serves; libpq options in PostgreSQL URLs;
and the release files (one version, CHANGELOG, LICENSE)."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import seats

import service
from service.config import Config
from service.server import next_command
from service.store import open_store
from tests.conftest import POSTGRES_URL, database_url
from tests.served import (
    COMMAND_SECONDS,
    REPO,
    ServerProcess,
    free_port,
    grpcurl_executable,
    seats_command,
    server_env,
    serving,
    wait_until_serving,
)

FAIL_SECONDS = 30.0
"""A server that cannot start has this long (imports, one refused connection) to say so and exit."""
STOP_SECONDS = 20.0
"""`make run` stopped with SIGTERM: the server's grace (1 s here) and make's own exit."""


def start(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `python -m service.server ARGS` to its end, from the repository, with only `env` as SEATS_*."""
    return subprocess.run(
        seats_command(*args),
        cwd=REPO,
        env={**server_env(), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=FAIL_SECONDS,
        check=False,
    )


def is_context(line: str) -> bool:
    """A log line that only tells what happened before the failure (an INFO or DEBUG JSON line)."""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        return False
    return isinstance(entry, dict) and entry.get("level") in ("DEBUG", "INFO")


def the_failure(done: subprocess.CompletedProcess[str]) -> str:
    """The one line that says why the server did not start; fails unless there is exactly one, the
    exit code is 2 and there is no traceback."""
    report = f"exit {done.returncode}\n--- stderr ---\n{done.stderr}--- stdout ---\n{done.stdout}"
    assert done.returncode == 2, report
    assert "Traceback" not in done.stderr, report
    lines = [line for line in done.stderr.splitlines() if line.strip() and not is_context(line)]
    assert len(lines) == 1, f"expected one line about the failure:\n{report}"
    line = lines[0]
    if line.startswith("{"):
        entry = json.loads(line)
        assert entry["level"] == "ERROR", line
        assert entry["message"].startswith("cannot start: "), line
        return str(entry["message"])
    assert line.startswith("seats-server: error: "), line
    return line


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'seats.db'}"


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another process-like listener holds."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def serve_args(sqlite_url: str, *flags: str) -> tuple[str, ...]:
    return ("serve", "--address", f"127.0.0.1:{free_port()}", "--database-url", sqlite_url, *flags)


# ---- one line, exit code 2 -------------------------------------------------------------------


def test_a_port_in_use_names_the_address_and_the_port(tmp_path: Path, sqlite_url: str, busy_port: int) -> None:
    line = the_failure(start(tmp_path, "serve", "--address", f"127.0.0.1:{busy_port}", "--database-url", sqlite_url))
    assert "--address (SEATS_ADDRESS)" in line and f"port {busy_port}" in line and "in use" in line, line


def test_a_bad_log_level_names_the_flag(tmp_path: Path, sqlite_url: str) -> None:
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--log-level", "LOUD")))
    assert "--log-level (SEATS_LOG_LEVEL) 'LOUD'" in line and "INFO" in line, line


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("SEATS_MAX_WORKERS", "abc", "expected an integer"),
        ("SEATS_GRACE_SECONDS", "soon", "expected a number"),
        ("SEATS_INSECURE", "maybe", "expected true or false"),
        ("SEATS_LOG_LEVEL", "chatty", "expected one of DEBUG"),
        ("SEATS_MAX_CONCURRENT_RPCS", "0", "expected 1 or more"),
        ("SEATS_ADDRESS", "localhost", "expected host:port"),
    ],
)
def test_a_bad_seats_value_names_the_variable(tmp_path: Path, variable: str, value: str, expected: str) -> None:
    env = {variable: value, "SEATS_DATABASE_URL": f"sqlite:///{tmp_path / 'seats.db'}"}
    line = the_failure(start(tmp_path, "serve", env=env))
    assert variable in line and value in line and expected in line, line


def test_a_bad_flag_value_names_the_flag(tmp_path: Path, sqlite_url: str) -> None:
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--max-workers", "abc")))
    assert "--max-workers" in line and "'abc'" in line, line
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--watch-max-seconds", "-1")))
    assert "--watch-max-seconds (SEATS_WATCH_MAX_SECONDS) -1.0" in line, line


def test_an_unreachable_database_names_the_url_without_its_password(tmp_path: Path) -> None:
    closed = free_port()
    url = f"postgresql://seats:s3cret@127.0.0.1:{closed}/seats?connect_timeout=3"
    line = the_failure(start(tmp_path, "serve", "--address", "127.0.0.1:0", "--database-url", url))
    assert "--database-url (SEATS_DATABASE_URL): cannot open the database" in line, line
    assert f"postgresql://seats:***@127.0.0.1:{closed}/seats" in line and "s3cret" not in line, line
    assert "refused" in line.lower(), line


def test_a_sqlite_file_in_a_missing_directory_names_the_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nowhere' / 'seats.db'}"
    line = the_failure(start(tmp_path, "migrate", "--database-url", url))
    assert "--database-url (SEATS_DATABASE_URL)" in line and f"{str(tmp_path / 'nowhere')!r} does not exist" in line


def test_an_unsupported_database_scheme_is_refused(tmp_path: Path) -> None:
    line = the_failure(start(tmp_path, "serve", "--database-url", "mysql://seats:s3cret@127.0.0.1/seats"))
    assert "--database-url (SEATS_DATABASE_URL): unsupported database scheme 'mysql'" in line, line
    assert "s3cret" not in line, line


@pytest.mark.parametrize(
    ("url", "option"),
    [
        ("postgresql://postgres@127.0.0.1:1/test?sslmod=require", '"sslmod"'),
        ("sqlite:///var/seats.db?journal=wal", "'journal'"),
    ],
)
def test_an_unknown_database_url_option_is_refused_before_connecting(tmp_path: Path, url: str, option: str) -> None:
    line = the_failure(start(tmp_path, "serve", "--address", "127.0.0.1:0", "--database-url", url))
    assert "--database-url (SEATS_DATABASE_URL)" in line and option in line and "option" in line, line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "No such file or directory"),
        ('{"tokens": [', "is not JSON"),
        ("[]", "is not a tokens file"),
        ('{"tokens": [{"name": "x", "scope": "root", "sha256": "00"}]}', "scope must be one of"),
    ],
)
def test_a_missing_or_malformed_tokens_file_names_the_flag(
    tmp_path: Path, sqlite_url: str, content: str | None, expected: str
) -> None:
    tokens = tmp_path / "tokens.json"
    if content is not None:
        tokens.write_text(content)
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--auth-tokens-file", str(tokens))))
    assert "--auth-tokens-file (SEATS_AUTH_TOKENS_FILE)" in line and expected in line, line


def test_missing_tls_files_name_the_flag(tmp_path: Path, sqlite_url: str) -> None:
    key = tmp_path / "server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    flags = ("--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", str(key))
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, *flags)))
    assert "--tls-cert (SEATS_TLS_CERT): cannot read" in line and "missing.pem" in line, line
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--tls-cert", str(key))))
    assert "--tls-key" in line and "--tls-cert" in line, line


def test_a_missing_price_book_names_the_flag(tmp_path: Path, sqlite_url: str) -> None:
    line = the_failure(start(tmp_path, *serve_args(sqlite_url, "--price-book", str(tmp_path / "prices.json"))))
    assert "--price-book (SEATS_PRICE_BOOK): cannot read" in line, line


# ---- version and help ------------------------------------------------------------------------


def test_version_prints_the_one_version(tmp_path: Path) -> None:
    done = start(tmp_path, "--version")
    assert (done.returncode, done.stdout, done.stderr) == (0, f"seats-server {service.__version__}\n", "")
    assert service.__version__ == "0.2.0"
    assert seats.__version__ == service.__version__, "the server and the client are released together"
    for pyproject, module in ((REPO / "pyproject.toml", "service"), (REPO / "clients/python/pyproject.toml", "seats")):
        meta = tomllib.loads(pyproject.read_text())
        assert "version" not in meta["project"] and "version" in meta["project"]["dynamic"], pyproject
        assert meta["tool"]["setuptools"]["dynamic"]["version"] == {"attr": f"{module}.__version__"}, pyproject


def test_help_lists_every_command_and_the_version_flag(tmp_path: Path) -> None:
    done = start(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    for word in ("serve", "migrate", "new-token", "--version", "SEATS_ADDRESS", "SEATS_DATABASE_URL"):
        assert word in done.stdout, f"{word} missing from --help:\n{done.stdout}"


def test_the_changelog_and_the_license_are_there() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert "keepachangelog.com" in changelog
    unreleased, _, released = changelog.partition("## [0.1.0] - ")
    assert "## [Unreleased]" in unreleased and f"To be released as {service.__version__}." in unreleased
    assert released and "The first version." in released
    license_text = (REPO / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert license_text.startswith("Copyright 2026 the seats authors\n")


# ---- serving ---------------------------------------------------------------------------------


def test_serving_is_followed_by_the_next_command_to_try_and_it_works(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        [hint] = [e for e in server.log_entries() if str(e.get("message", "")).startswith("next: ")]
        assert hint["command"] == f"grpcurl -plaintext 127.0.0.1:{server.port} list", hint
        assert hint["message"] == f"next: {hint['command']}"
        messages = [e.get("message") for e in server.log_entries()]
        assert messages.index("serving") + 1 == messages.index(hint["message"]), messages
        _, *args = shlex.split(hint["command"])
        done = subprocess.run(
            [grpcurl_executable(), *args], capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False
        )
    assert done.returncode == 0, done.stderr
    assert {"seats.v1.SeatService", "seats.v1.UserService", "grpc.health.v1.Health"} <= set(done.stdout.split())


def test_the_next_command_follows_tls_tokens_and_wildcard_addresses() -> None:
    assert next_command(Config(address="0.0.0.0:0"), 7000) == "grpcurl -plaintext 127.0.0.1:7000 list"
    assert next_command(Config(address="[::]:7000"), 7000) == "grpcurl -plaintext [::1]:7000 list"
    mutual = Config(address="10.0.0.5:7000", tls_cert="c.pem", tls_key="k.pem", tls_client_ca="ca.pem")
    assert next_command(mutual, 7000) == "grpcurl -cacert ca.pem -cert client.pem -key client.key 10.0.0.5:7000 list"
    tokens = Config(auth_tokens_file="tokens.json")
    assert next_command(tokens, 50051) == (
        'grpcurl -plaintext -H "authorization: Bearer $SEATS_TOKEN" 127.0.0.1:50051 list'
    )


# ---- make run --------------------------------------------------------------------------------


def make_env(**variables: str) -> dict[str, str]:
    """The environment of a `make` of the test's own: no SEATS_*, nor the flags of a make that runs pytest."""
    env = {k: v for k, v in server_env().items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEFILES")}
    return env | variables


def make(*args: str, env: dict[str, str]) -> list[str]:
    """The server commands `make -n` would run (`-o protos`: the build steps are not under test)."""
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", "-o", "protos", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=True,
    )
    return [line for line in done.stdout.splitlines() if "service.server" in line]


def test_make_run_passes_only_the_settings_given_on_its_command_line() -> None:
    env = make_env(ADDRESS="127.0.0.1:1", DATABASE_URL="sqlite:///from-the-environment.db")
    migrate, serve = make("run", env=env)
    assert migrate.split()[-1] == "migrate" and serve.split()[-1] == "serve", (migrate, serve)
    migrate, serve = make("run", "ADDRESS=127.0.0.1:50099", "DATABASE_URL=sqlite:///x.db", env=make_env())
    assert migrate.endswith("migrate --database-url 'sqlite:///x.db'"), migrate
    assert serve.endswith("serve --address '127.0.0.1:50099' --database-url 'sqlite:///x.db'"), serve


def test_make_run_honors_seats_address_and_seats_database_url(tmp_path: Path) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    url = f"sqlite:///{tmp_path / 'made.db'}"
    env = make_env(SEATS_ADDRESS=address, SEATS_DATABASE_URL=url, SEATS_GRACE_SECONDS="1")
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "-o", "protos", "run"],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # make and the server in a group of their own, stopped together
        )
    made = ServerProcess(process, address, port, url, log_path)
    try:
        wait_until_serving(made)
        serving_lines = [line for line in made.log_text().splitlines() if '"message": "serving"' in line]
        assert len(serving_lines) == 1 and json.loads(serving_lines[0])["port"] == port, made.log_text()
        assert (tmp_path / "made.db").exists()
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=STOP_SECONDS)
        assert group_ends(process.pid, STOP_SECONDS), f"the server outlived make\n{made.log_text()}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=COMMAND_SECONDS)
    assert '"message": "stopped"' in made.log_text(), made.log_text()


def group_ends(group: int, timeout: float) -> bool:
    """Whether every process of the group has ended within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


# ---- libpq options ---------------------------------------------------------------------------


def test_libpq_options_of_a_sqlite_or_postgres_url_are_checked_without_a_connection() -> None:
    with pytest.raises(ValueError, match='invalid connection option "sslmod"'):
        open_store("postgresql://postgres@127.0.0.1:1/test?sslmod=require&schema=x")
    with pytest.raises(ValueError, match="unknown SQLite option 'sslmode'"):
        open_store("sqlite:///var/x.db?sslmode=require")
    store = open_store("postgresql://postgres@127.0.0.1:1/test?sslmode=require&options=-c%20work_mem%3D8MB&schema=x")
    assert store.db.connect_params["sslmode"] == "require"
    assert store.db.connect_params["options"] == "-c work_mem=8MB -c search_path=x"
    assert store.db.connect_params["connect_timeout"] == "5" and store.db.connect_params["application_name"] == "seats"


@pytest.mark.postgres
def test_libpq_options_reach_the_postgres_connection(tmp_path_factory: pytest.TempPathFactory) -> None:
    assert POSTGRES_URL, "PostgreSQL tests need SEATS_TEST_POSTGRES_URL"
    name = f"seats_front_door_{uuid.uuid4().hex[:8]}"
    url = f"{database_url('postgres', tmp_path_factory)}&application_name={name}&sslmode=disable&connect_timeout=7"
    try:
        with serving(tmp_path_factory.mktemp("libpq"), database_url=url):
            watcher = psycopg2.connect(POSTGRES_URL)
            try:
                with watcher.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,))
                    row = cursor.fetchone()
            finally:
                watcher.close()
            assert row is not None and row[0] >= 1, f"no connection of the server is named {name}"
        store = open_store(url)
        try:
            parameters = store.db.connection().get_dsn_parameters()
            assert (parameters["sslmode"], parameters["connect_timeout"]) == ("disable", "7"), parameters
            assert store.db.execute_sql("SHOW application_name").fetchone() == (name,)
        finally:
            store.close()
    finally:
        cleanup = open_store(url)
        cleanup.drop_schema()
        cleanup.close()
