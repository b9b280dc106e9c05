"""Server configuration: defaults, then environment (SEATS_*), then flags."""

from __future__ import annotations

import argparse
import logging
import math
import os
from dataclasses import dataclass, fields
from typing import Any, NoReturn

from . import __version__

DEFAULT_DATABASE_URL = "sqlite:///var/seats.db"
PROG = "seats-server"
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
AT_LEAST_ONE = frozenset({"max_workers", "max_concurrent_rpcs", "max_message_bytes"})
"""Settings that make no server at 0."""
COMMANDS_HELP = (
    "serve (the default): migrate the database, then serve; "
    "migrate: apply the schema migrations and exit; "
    "new-token: print a new service token and its tokens-file entry (new-token --help)"
)


class ConfigError(ValueError):
    """A configuration the server refuses to run with; the message names the setting to fix. A
    ValueError, as the bad values create_server met were before it had this class."""


def setting(name: str) -> str:
    """How an operator sets a Config field: its flag and its environment variable."""
    return f"--{name.replace('_', '-')} (SEATS_{name.upper()})"


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _env_value(name: str, raw: str, default: Any) -> Any:
    variable = f"SEATS_{name.upper()}"
    if isinstance(default, bool):
        word = raw.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ConfigError(f"{variable}={raw!r}: expected true or false (1/0, yes/no, on/off)")
    kind = type(default)
    try:
        return kind(raw)
    except ValueError:
        expected = "an integer" if kind is int else "a number" if kind is float else "a value"
        raise ConfigError(f"{variable}={raw!r}: expected {expected}") from None


@dataclass(frozen=True)
class Config:
    address: str = "127.0.0.1:50051"
    database_url: str = DEFAULT_DATABASE_URL
    # A direct connection to the primary, for what needs a session of its own: migrations
    # (an advisory lock), the event listener (LISTEN) and the relay's leader lock. Set it when
    # database_url goes through a transaction-pooling PgBouncer; empty: database_url.
    direct_database_url: str = ""
    # A hot standby for reads that tolerate staleness (lists of users and assignments, event
    # history), used while it is at most read_max_lag_seconds behind the primary; otherwise
    # those reads go to the primary too. Empty: every read on the primary.
    read_database_url: str = ""
    read_max_lag_seconds: float = 1.0
    # A message bus for the events (NATS JetStream, stream SEATS_EVENTS): appended events go
    # to an outbox in their transaction and a relay publishes them. Set it on every replica
    # that shares the database. Empty: no outbox, no relay.
    nats_url: str = ""
    # PostgreSQL: the longest a statement of a write or a snapshot read may run, a lock wait
    # included; then the call ends UNAVAILABLE instead of holding a thread and a connection.
    # 0: no bound. Migrations are not bounded.
    statement_timeout_ms: int = 5000
    max_workers: int = 16
    max_concurrent_rpcs: int = 64
    receive_timeout_seconds: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    grace_seconds: float = 10.0
    price_book: str = ""
    sweep_interval_seconds: float = 60.0
    request_id_ttl_hours: float = 24.0
    watch_poll_seconds: float = 0.5
    # Each open watch holds one of the max_workers handler threads for its whole life (the
    # server is a synchronous one), and counts against max_concurrent_rpcs. The server-wide
    # cap stays at half the threads: with 16 workers, 8 watches leave 8 threads for unary
    # calls, which hold one for milliseconds but wait on the database (round trips, the group
    # commit's fsync), so fewer threads would cut write throughput; the 56 other calls that
    # max_concurrent_rpcs admits queue for those 8 threads. Growing this default alone would
    # take threads from unary calls; to serve more watches, raise max_workers with it (keep
    # it at most half of max_workers). Fairness between tenants comes from the per-account
    # cap, not from a bigger server-wide one.
    max_watch_streams: int = 8
    # Open watches of one account on this server: a tenant at its cap is refused, the others
    # keep watching up to max_watch_streams. Four covers a few processes of one tenant that
    # each follow the account (a SeatCache holds one watch).
    max_watch_streams_per_account: int = 4
    # A watch's longest life: then the server ends it (UNAVAILABLE / WATCH_EXPIRED) and the
    # client resumes from the last sequence it received. It bounds how long one admission (its
    # token, actor and replica) lasts and lets watches move to new replicas.
    watch_max_seconds: float = 1800.0
    reuse_port: bool = False
    log_level: str = "INFO"
    auth_tokens_file: str = ""
    insecure: bool = False
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    metrics_address: str = ""
    # The call log: one JSON line per call (logger seats.rpc). "errors", the default, logs every
    # call that does not end OK (refusals and failures: rare, and each one worth reading) and no
    # OK call, which on a hot service would be a line per call for little news; "all" logs OK
    # calls too, rpc_log_sample of them (1.0 all, 0.01 one in a hundred; refusals and failures
    # are always logged); "off" logs none.
    rpc_log: str = "errors"
    rpc_log_sample: float = 1.0
    # With service tokens: let reflection (the schema, no data) answer callers without a token, so
    # that grpcurl can find its way without one (e.g. to call the health check, itself open).
    public_reflection: bool = False

    def problem(self) -> str | None:
        """What is wrong with these values, naming the setting to fix; None when nothing is."""
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            return f"{setting('log_level')} {self.log_level!r}: expected one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if not math.isfinite(value) or value < 0:
                return f"{setting(f.name)} {value!r}: expected a number of 0 or more"
            if f.name in AT_LEAST_ONE and value < 1:
                return f"{setting(f.name)} {value!r}: expected 1 or more"
        if self.watch_poll_seconds <= 0:
            return f"{setting('watch_poll_seconds')} {self.watch_poll_seconds!r}: expected more than 0"
        if not self.address.startswith(("unix:", "unix-abstract:")):
            host, _, port = self.address.rpartition(":")
            if not host or not port.isdigit() or int(port) > 65535:
                return f"{setting('address')} {self.address!r}: expected host:port (port 0 picks a free one)"
        return None

    @staticmethod
    def parse(argv: list[str] | None = None, env: dict[str, str] | None = None) -> tuple[str, Config]:
        """Returns the command (serve or migrate) and the configuration. A bad flag, SEATS_* value
        or combination ends the process with one line on stderr and exit code 2, as argparse does."""
        env = dict(os.environ) if env is None else env
        defaults = Config()
        parser = _Parser(
            prog=PROG,
            description="The seat service. Every setting is a flag or an environment variable SEATS_<FLAG>; "
            "flags win over the environment, which wins over the defaults.",
        )
        parser.add_argument(
            "command",
            nargs="?",
            default="serve",
            choices=["serve", "migrate"],
            metavar="{serve,migrate,new-token}",
            help=COMMANDS_HELP,
        )
        parser.add_argument(
            "--version", action="version", version=f"{PROG} {__version__}", help="print the version and exit"
        )
        env_problems: list[str] = []
        for f in fields(Config):
            flag = "--" + f.name.replace("_", "-")
            env_value = env.get("SEATS_" + f.name.upper())
            default = getattr(defaults, f.name)
            start = default
            if env_value:
                try:
                    start = _env_value(f.name, env_value, default)
                except ConfigError as exc:
                    env_problems.append(str(exc))
            if f.type == "bool" or isinstance(default, bool):
                parser.add_argument(
                    flag,
                    action=argparse.BooleanOptionalAction,
                    default=start,
                    help=f"env SEATS_{f.name.upper()} (default {default})",
                )
            else:
                parser.add_argument(
                    flag,
                    type=type(default),
                    default=start,
                    help=f"env SEATS_{f.name.upper()} (default {default!r})",
                )
        ns = parser.parse_args(argv)
        if env_problems:
            parser.error(env_problems[0])
        values = {f.name: getattr(ns, f.name) for f in fields(Config)}
        config = Config(**values)
        problem = config.problem()
        if problem:
            parser.error(problem)
        return ns.command, config
