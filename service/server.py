"""The server: create_server() builds everything; main() only parses flags and calls it."""

from __future__ import annotations

import argparse
import errno
import json
import logging
import signal
import socket
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import unquote, urlparse

import grpc
import peewee as pw
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc
from opentelemetry.trace import TracerProvider
from seats.v1 import seat_service_pb2, seat_service_pb2_grpc, user_service_pb2, user_service_pb2_grpc

from . import admission, contract, tracing
from .auth import AuthInterceptor, check_token_account, hash_token, is_loopback, load_tokens, new_token
from .clock import Clock, SystemClock
from .config import Config, ConfigError, setting
from .domain.errors import SeatError
from .domain.prices import PriceBook
from .domain.seats import SeatDomain
from .events import EventHub
from .listener import EventListener
from .observe import Metrics, register
from .relay import Relay, start_relay
from .servicers.common import Replay
from .servicers.seat_service import SeatServicer
from .servicers.user_service import UserServicer
from .store import Store, open_store
from .store.standby import StandbyMonitor

log = logging.getLogger("seats.server")

SERVICE_NAMES = (
    seat_service_pb2.DESCRIPTOR.services_by_name["SeatService"].full_name,
    user_service_pb2.DESCRIPTOR.services_by_name["UserService"].full_name,
)


class Sweeper:
    """Applies due renewals (S5, S9) of accounts nobody touched, reclaims seats idle past their
    pool's policy, and forgets expired request records, every interval."""

    def __init__(self, domain: SeatDomain, store: Store, clock: Clock, interval: float, ttl: timedelta) -> None:
        self.domain, self.store, self.clock = domain, store, clock
        self.interval, self.ttl = interval, ttl
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seats-sweeper", daemon=True)

    def start(self) -> None:
        if self.interval > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sweep_once(self) -> int:
        renewed = 0
        while True:
            n = self.domain.renew_due(limit=100)
            renewed += n
            if n < 100:
                break
        reclaimed = 0
        for _ in range(100):  # seats idle past their pool's policy (UpdateSeatPolicy); the rest next time
            n = self.domain.reclaim_idle(limit=100)
            reclaimed += n
            if n == 0:
                break
        purged = self.store.write(lambda: self.store.purge_requests(self.clock.now() - self.ttl))
        if renewed or purged or reclaimed:
            log.info(
                "sweep",
                extra={"renewed_accounts": renewed, "reclaimed_seats": reclaimed, "purged_request_records": purged},
            )
        return renewed

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweep failed")


class SeatServer:
    """A configured grpc.Server with health, reflection and the renewal sweeper. stop()
    turns health NOT_SERVING first, then stops with a grace period."""

    def __init__(
        self,
        server: grpc.Server,
        health_servicer: health.HealthServicer,
        sweeper: Sweeper,
        hub: EventHub,
        domain: SeatDomain,
        pool: admission.WorkerPool | None = None,
        listener: EventListener | None = None,
        standby: StandbyMonitor | None = None,
        relay: Relay | None = None,
    ) -> None:
        self.relay = relay
        self.pool = pool
        self.listener = listener
        self.standby = standby
        self.grpc_server = server
        self.health = health_servicer
        self.sweeper = sweeper
        self.hub = hub
        self.domain = domain

    def start(self) -> None:
        self.grpc_server.start()
        self.sweeper.start()
        if self.listener is not None:
            self.listener.start()
        if self.standby is not None:
            self.standby.start()
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None) -> threading.Event:
        self.health.enter_graceful_shutdown()
        self.sweeper.stop()
        done = self.grpc_server.stop(grace)
        self.hub.close()
        if self.listener is not None:
            self.listener.stop()
        if self.relay is not None:
            self.relay.stop()
        if self.standby is not None:
            self.standby.stop()
        if self.pool is not None:
            self.pool.stop_timeouts()
        return done

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        """True when the server has terminated, False when the timeout ran out first."""
        return not self.grpc_server.wait_for_termination(timeout)


def _read_file(name: str, path: str, what: str) -> bytes:
    """The bytes of the file a setting names; a missing or unreadable one is a ConfigError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{setting(name)}: cannot read the {what} {path!r}: {exc.strerror or exc}") from None


def _credentials(config: Config) -> grpc.ServerCredentials | None:
    if not (config.tls_cert or config.tls_key):
        if config.tls_client_ca:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if not (config.tls_cert and config.tls_key):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    key = _read_file("tls_key", config.tls_key, "TLS private key")
    cert = _read_file("tls_cert", config.tls_cert, "TLS certificate chain")
    client_ca = _read_file("tls_client_ca", config.tls_client_ca, "client CA") if config.tls_client_ca else None
    for name, path, pem in (("tls_key", config.tls_key, key), ("tls_cert", config.tls_cert, cert)):
        if b"-----BEGIN " not in pem:
            raise ConfigError(f"{setting(name)}: {path!r} is not PEM")
    return grpc.ssl_server_credentials(
        [(key, cert)],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def _tokens(config: Config) -> list[Any]:
    if not config.auth_tokens_file:
        return []
    path = config.auth_tokens_file
    try:
        return load_tokens(path)
    except OSError as exc:
        raise ConfigError(f"{setting('auth_tokens_file')}: cannot read {path!r}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{setting('auth_tokens_file')}: {path!r} is not JSON: {exc}") from None
    except (ValueError, AttributeError, TypeError) as exc:
        if isinstance(exc, ValueError):
            raise ConfigError(f"{setting('auth_tokens_file')}: {exc}") from None
        expected = '{"tokens": [{"name": ..., "scope": ..., "sha256": ...}, ...]}'
        raise ConfigError(
            f"{setting('auth_tokens_file')}: {path!r} is not a tokens file: expected {expected}"
        ) from None


def _price_book(config: Config) -> PriceBook:
    if not config.price_book:
        return PriceBook.default()
    try:
        return PriceBook.load(config.price_book)
    except OSError as exc:
        raise ConfigError(f"{setting('price_book')}: cannot read {config.price_book!r}: {exc.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{setting('price_book')}: {config.price_book!r} is not a price book: {exc!r}") from None


def check_address(address: str) -> None:
    """Binds host:port once, as gRPC is about to, so that a port in use, a port that needs privileges
    or an unknown host is one ConfigError naming --address (gRPC's own failure is a RuntimeError
    and a log line of its C core). Port 0 and unix: addresses are left to gRPC."""
    if address.startswith(("unix:", "unix-abstract:")):
        return
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    port = int(port_text)
    if port == 0:
        return
    try:
        resolved = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{setting('address')}: cannot resolve the host of {address!r}: {exc.strerror}") from None
    for family, kind, proto, _, sockaddr in resolved:
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"{setting('address')}: port {port} of {address} is in use by another process: "
                        "choose another port, or stop that process"
                    ) from None
                if exc.errno == errno.EACCES:
                    raise ConfigError(
                        f"{setting('address')}: port {port} of {address} needs privileges this process lacks: "
                        "choose a port above 1023"
                    ) from None
                # other failures (e.g. no IPv6 here) are gRPC's to judge: it serves on what it can bind


def create_server(
    config: Config,
    store: Store | None = None,
    clock: Clock | None = None,
    *,
    tracer_provider: TracerProvider | None = None,
) -> tuple[SeatServer, int]:
    """Builds the server on config.address (port 0 picks a free port); returns it, not yet
    started, and the bound port. Traces go to tracer_provider, else where the OTEL_* environment
    variables say (service/tracing.py); with neither, nowhere."""
    store = store or open_store(config.database_url)
    store.statement_timeout_ms = config.statement_timeout_ms
    standby = _standby(config, store)
    clock = clock or SystemClock()
    prices = _price_book(config)
    domain = SeatDomain(store, prices, clock)
    hub = EventHub()
    store.add_commit_listener(hub.publish)
    replay = Replay(store, clock, timedelta(hours=config.request_id_ttl_hours))
    tokens = _tokens(config)
    credentials = _credentials(config)
    if not is_loopback(config.address) and not tokens and not config.tls_client_ca:
        if not config.insecure:
            raise ConfigError(
                f"refusing to serve on {config.address} without authentication: configure service tokens "
                "(--auth-tokens-file) or mutual TLS (--tls-client-ca), or pass --insecure"
            )
        log.warning(
            "INSECURE: serving on a non-loopback address without authentication; anyone who reaches "
            "it may call every RPC as a trusted system",
            extra={"address": config.address},
        )

    provider = tracer_provider if tracer_provider is not None else tracing.provider_from_env()
    try:
        metrics = Metrics(config.rpc_log, config.rpc_log_sample, tracing.tracer_of(provider))
    except ValueError as exc:
        raise ConfigError(f"{setting('rpc_log')}, {setting('rpc_log_sample')}: {exc}") from None
    metrics.observe_store(store)
    interceptors: list[Any] = (
        [AuthInterceptor(tokens, metrics, public_reflection=config.public_reflection)] if tokens else []
    )
    if not admission.SUPPORTED:
        log.warning(
            "this grpcio version lacks what admission needs: a caller that opens calls and sends nothing "
            "holds a worker thread per call",
            extra={"grpcio": grpc.__version__},
        )
    pool = admission.WorkerPool(config.max_workers, config.receive_timeout_seconds, config.max_concurrent_rpcs)
    server = grpc.server(
        pool,
        # the pool counts the calls that have their message; grpcio would count waiting ones too
        maximum_concurrent_rpcs=None if admission.SUPPORTED else config.max_concurrent_rpcs,
        interceptors=interceptors,
        options=[
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ],
    )
    register(
        server,
        seat_service_pb2_grpc.add_SeatServiceServicer_to_server,
        SeatServicer(
            domain,
            replay,
            hub,
            watch_poll_seconds=config.watch_poll_seconds,
            max_watch_streams=config.max_watch_streams,
            max_watch_streams_per_account=config.max_watch_streams_per_account,
            watch_max_seconds=config.watch_max_seconds,
        ),
        metrics,
        check_token_account,
    )
    register(
        server,
        user_service_pb2_grpc.add_UserServiceServicer_to_server,
        UserServicer(domain, replay),
        metrics,
        check_token_account,
    )
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    register(server, health_pb2_grpc.add_HealthServicer_to_server, health_servicer, metrics)
    # Reflection as enable_server_reflection registers it, but through register() so that it
    # parses its own requests; its calls stream requests and run on threads of their own (admission.py).
    # Its pool is the committed descriptor set (contract.py): methods resolve, comments are served.
    reflection_servicer = reflection.ReflectionServicer(
        (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
        pool=contract.reflection_pool(),
    )
    register(server, reflection_pb2_grpc.add_ServerReflectionServicer_to_server, reflection_servicer, metrics)
    if not config.reuse_port:
        check_address(config.address)
    try:
        if credentials is not None:
            port = server.add_secure_port(config.address, credentials)
        else:
            port = server.add_insecure_port(config.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"{setting('address')}: cannot listen on {config.address}")
    sweeper = Sweeper(domain, store, clock, config.sweep_interval_seconds, timedelta(hours=config.request_id_ttl_hours))
    if config.metrics_address:
        try:
            metrics.serve(config.metrics_address)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{setting('metrics_address')}: cannot serve on {config.metrics_address}: {exc}"
            ) from None
    listener = None
    if store.dialect == "postgres":
        # a session of its own: on the direct URL when database_url goes through a pooler
        direct = open_store(config.direct_database_url) if config.direct_database_url else store
        listener = EventListener.for_database(direct.db, store.notify_channel, hub.publish, hub.publish_all)
    # last: a create_server that fails leaves no relay thread holding the leader lock
    relay = start_relay(config, store, registry=metrics.registry)  # None without --nats-url
    if relay is not None and listener is not None:
        listener.also_notify(lambda _account_id: relay.wake())  # commits of the other replicas
    return SeatServer(server, health_servicer, sweeper, hub, domain, pool, listener, standby, relay), port


def _standby(config: Config, store: Store) -> StandbyMonitor | None:
    """The hot standby of read_database_url, for the reads that tolerate staleness."""
    if not config.read_database_url:
        return None
    if store.dialect != "postgres":
        raise ConfigError(f"{setting('read_database_url')}: a standby needs a PostgreSQL database_url")
    try:
        standby = open_store(config.read_database_url)
    except ValueError as exc:
        raise ConfigError(f"{setting('read_database_url')}: {exc}") from None
    if standby.dialect != "postgres":
        raise ConfigError(f"{setting('read_database_url')}: a standby is a PostgreSQL database")
    standby.statement_timeout_ms = config.statement_timeout_ms
    return store.use_standby(standby, config.read_max_lag_seconds)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any extra fields."""

    SKIP = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            # RFC 3339 in UTC to the microsecond: lines of one second stay in order, and the
            # per-call log's durations can be matched against the times.
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self.SKIP})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def new_token_command(argv: list[str]) -> int:
    """Prints a new service token, and the entry for the tokens file that accepts it."""
    parser = argparse.ArgumentParser(prog="seats-server new-token", description=new_token_command.__doc__)
    parser.add_argument("--name", required=True, help="who holds the token, e.g. billing-service")
    parser.add_argument("--scope", choices=["system", "actor"], required=True)
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="ACCOUNT_ID",
        help="limit the token to this account (repeat for several); without it, every account",
    )
    args = parser.parse_args(argv)
    token = new_token()
    entry: dict[str, Any] = {"name": args.name, "scope": args.scope, "sha256": hash_token(token)}
    if args.account:
        entry["accounts"] = args.account
    print(token)
    print(json.dumps(entry))
    return 0


def redacted(url: str) -> str:
    """A database URL without its password, for logs and messages."""
    parsed = urlparse(url)
    netloc = parsed.netloc
    if parsed.password is not None:
        netloc = netloc.replace(f":{parsed.password}@", ":***@", 1)
    query = "&".join(
        part.split("=", 1)[0] + "=***" if part.lower().startswith(("password=", "sslpassword=")) else part
        for part in parsed.query.split("&")
    )
    if (netloc, query) == (parsed.netloc, parsed.query):
        return url
    return parsed._replace(netloc=netloc, query=query).geturl()


def database_problem(config: Config, exc: Exception) -> str:
    """One line on a database the server cannot open: the setting, the URL without its password,
    the driver's words, and for a SQLite file in a missing directory, which one."""
    detail = " ".join(str(exc).split()) or type(exc).__name__
    problem = f"{setting('database_url')}: cannot open the database {redacted(config.database_url)}: {detail}"
    parsed = urlparse(config.database_url)
    if parsed.scheme == "sqlite":
        directory = Path(unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)).parent
        if not directory.is_dir():
            problem += f" (the directory {str(directory)!r} does not exist)"
    return problem


def next_command(config: Config, port: int) -> str:
    """The first command to try against a server that just started: a grpcurl listing of its services."""
    if config.address.startswith("unix:"):
        target = f"-unix {config.address.removeprefix('unix:')}"
    else:
        host = config.address.rpartition(":")[0]
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "::": "[::1]"}.get(host, host)
        target = f"{host}:{port}"
    flags = ["-cacert ca.pem"] if config.tls_cert else ["-plaintext"]
    if config.tls_client_ca:
        flags.append("-cert client.pem -key client.key")
    if config.auth_tokens_file and not config.public_reflection:
        flags.append('-H "authorization: Bearer $SEATS_TOKEN"')
    return f"grpcurl {' '.join(flags)} {target} list"


def cannot_start(problem: str) -> int:
    log.error("cannot start: %s", problem)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Every configuration the server refuses ends it with exit code 2 and one line naming the setting
    to fix: a bad flag or SEATS_* value as a plain line (before logging is set up), anything found
    later (the database, the port, tokens and TLS files) as one JSON log line."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["new-token"]:
        return new_token_command(argv[1:])
    command, config = Config.parse(argv)
    setup_logging(config.log_level)
    try:
        store = open_store(config.database_url)
    except ValueError as exc:
        return cannot_start(f"{setting('database_url')}: {exc}")
    try:
        # the server is built (its port bound, its files read) before the database is touched, so
        # that a mistake in either is found without waiting on the other
        server, port = create_server(config, store) if command == "serve" else (None, 0)
        try:
            # migrations take a session lock: on the direct URL when database_url goes through a pooler
            migrator = open_store(config.direct_database_url) if config.direct_database_url else store
            applied = migrator.migrate()
            version = migrator.schema_version()
            if migrator is not store:
                migrator.close()
        except (pw.PeeweeException, SeatError) as exc:
            raise ConfigError(database_problem(config, exc)) from None
    except (ConfigError, ValueError, OSError) as exc:
        return cannot_start(str(exc))
    log.info("schema ready", extra={"applied": applied, "version": version})
    if server is None:
        return 0
    server.start()
    log.info("serving", extra={"address": config.address, "port": port, "database": config.database_url.split("@")[-1]})
    hint = next_command(config, port)
    log.info(f"next: {hint}", extra={"command": hint})

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stopping.is_set():
            return
        stopping.set()
        log.info("shutting down", extra={"signal": signal.Signals(signum).name, "grace_seconds": config.grace_seconds})
        server.stop(config.grace_seconds)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not server.wait_for_termination(timeout=1.0):
        pass  # wakes every second so that signal handlers run
    store.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
