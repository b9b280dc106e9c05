"""The event relay: publishes the event outbox to a message bus, in order per account, at least once.

Why an outbox: a write appends its events and, when a bus is configured, one outbox row per event,
in the same transaction (`Store.append_events`). The bus is never part of that transaction, so a
write is never slowed or failed by the bus; the relay publishes the rows after they commit and
deletes them once the bus has acknowledged them. A crash between the acknowledgement and the delete
publishes the event again: the bus drops it by its message id (NATS JetStream: the ``Nats-Msg-Id``
header, within the stream's duplicate window) and consumers dedupe by (account, sequence).

Order: the events of one account are published one at a time, each only after the previous one was
acknowledged, and a failed publish is retried (with a bounded exponential backoff) until it is
acknowledged: never skipped, never overtaken. Accounts are independent and go in parallel.

One relay per database: every process that has a bus configured runs a `Relay`, and they elect a
leader; only the leader publishes. On PostgreSQL the leader holds a session advisory lock on a
connection of its own (the direct URL: a transaction-pooling PgBouncer would hand the session to
others), and steps down when that connection dies; on SQLite it holds an ``flock`` on
``<database>.relay.lock``. The others try again every second, so a leader that dies (its
connection closed, its file lock released by the kernel) is replaced within about a second.

The bus is behind `Publisher`, three coroutines, so that another bus (Kafka, RabbitMQ) can sit
beside `NatsJetStreamPublisher` without touching the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
import weakref
import zlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg2
from prometheus_client import CollectorRegistry, Counter, Gauge

from .config import Config
from .domain.model import Event
from .servicers.common import event_pb
from .store import Store, open_store

log = logging.getLogger("seats.relay")

STREAM = "SEATS_EVENTS"
SUBJECT_PREFIX = "seats.events."
"""An event of account A goes to ``seats.events.A`` (account ids are ``acc_`` and hex: one subject
token). The message does not carry the account id; the subject does."""
SUBJECTS = SUBJECT_PREFIX + ">"
DUPLICATE_WINDOW_SECONDS = 120.0
"""How long JetStream remembers a message id to drop a second copy: a relay that republishes after
a crash or a lost acknowledgement does so within seconds, far inside it."""
ACK_SECONDS = 5.0
"""How long a publish waits for JetStream's acknowledgement before it counts as failed (and is
retried: a late acknowledgement of the first copy makes the retry a dropped duplicate)."""
CONNECT_SECONDS = 5.0
BATCH = 500
"""Outbox rows read at once."""
IDLE_SECONDS = 0.2
"""How long an idle leader waits for a `Relay.wake` before it looks at the outbox again. Commits of
its own process wake it, and on PostgreSQL those of the other processes too (the server hands it
the listener's notifications); on SQLite other processes' commits wait for this."""
ELECTION_SECONDS = 1.0
"""How often a follower tries to take the lead, and a leader checks that it still holds it."""
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
BACKLOG_SECONDS = 1.0
"""How often every relay, leader or not, reads the outbox's size and oldest event for its gauges."""
WARN_EVERY_SECONDS = 10.0
"""A failure that goes on is logged again at most this often."""
ACCOUNTS_IN_FLIGHT = 64
"""Accounts of a batch published in parallel (each account's events one after the other)."""
OUTBOX_MIGRATION = 4
"""The schema version that made the outbox table: the relay waits for it before it starts."""
PG_LOCK_CLASS = 0x5EA7
"""The first key of the PostgreSQL advisory lock (the two-int4 form); the second is the schema's
crc32, so that services in different schemas of one database each elect their own leader. The
two-key space does not overlap the bigint one of the migration lock."""


# ---- the bus ---------------------------------------------------------------------------------


class Publisher(Protocol):
    """A message bus, as the relay sees it. Every method runs on the relay's event loop."""

    async def connect(self) -> None:
        """Connects (may be called again after `close`); raises when the bus cannot be reached."""

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        """Returns once the bus has durably stored the message; raises on any failure (the relay
        then retries the same message, with the same message_id, which the bus uses to drop a
        second copy)."""

    async def close(self) -> None:
        """Closes the connection; never raises."""


class NatsJetStreamPublisher:
    """NATS JetStream: stream `STREAM` over ``seats.events.>`` (file storage, a duplicate window
    of `DUPLICATE_WINDOW_SECONDS`), made if missing. A stream that exists is left as its operator
    configured it. The connection reconnects forever; each publish waits `ACK_SECONDS` at most."""

    def __init__(
        self,
        url: str,
        *,
        stream: str = STREAM,
        subjects: str = SUBJECTS,
        duplicate_window: float = DUPLICATE_WINDOW_SECONDS,
        ack_seconds: float = ACK_SECONDS,
        connect_seconds: float = CONNECT_SECONDS,
    ) -> None:
        self.url = url
        self.stream = stream
        self.subjects = subjects
        self.duplicate_window = duplicate_window
        self.ack_seconds = ack_seconds
        self.connect_seconds = connect_seconds
        self.duplicates = 0
        """Publishes JetStream acknowledged as duplicates (dropped): republished events."""
        self._nc: Any = None  # nats.aio.client.Client; nats-py is only partly typed
        self._js: Any = None
        self._stream_ready = False

    async def connect(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            return
        from nats.aio.client import Client  # imported here: a service without a bus never loads it

        async def disconnected() -> None:
            if self._nc is not nc:
                return  # closed by the relay, or never connected
            log.warning("relay disconnected from NATS; reconnecting", extra={"nats_url": _without_password(self.url)})

        async def reconnected() -> None:
            log.info("relay reconnected to NATS", extra={"nats_url": _without_password(self.url)})

        async def error(exc: Exception) -> None:  # every failed reconnect: the relay logs the outage itself
            log.debug("NATS client error", extra={"error": repr(exc)})

        nc = Client()
        try:
            await asyncio.wait_for(
                nc.connect(
                    self.url,
                    name="seats-relay",
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,  # reconnect forever; publishes fail (and are retried) meanwhile
                    reconnect_time_wait=1,
                    connect_timeout=max(1, int(self.connect_seconds)),
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                ),
                self.connect_seconds,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await nc.close()
            raise
        self._nc, self._js, self._stream_ready = nc, nc.jetstream(timeout=self.ack_seconds), False

    async def _ensure_stream(self) -> None:
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=[self.subjects],
                    storage=StorageType.FILE,
                    duplicate_window=self.duplicate_window,
                )
            )
            log.info("NATS stream created", extra={"stream": self.stream, "subjects": self.subjects})
        self._stream_ready = True

    async def publish(self, subject: str, body: bytes, message_id: str) -> None:
        from nats.js.errors import NoStreamResponseError

        if self._nc is None or self._nc.is_closed:
            await self.connect()
        if not self._stream_ready:
            await self._ensure_stream()
        try:
            ack = await self._js.publish(
                subject,
                body,
                timeout=self.ack_seconds,
                stream=self.stream,  # refused unless it lands in this stream
                headers={"Nats-Msg-Id": message_id},
            )
        except NoStreamResponseError:
            self._stream_ready = False  # the stream is gone (a NATS with a new store): make it again
            raise
        if ack.duplicate:
            self.duplicates += 1

    async def close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(nc.close(), self.connect_seconds)


def _without_password(url: str) -> str:
    """A NATS URL fit for a log line: user and password dropped."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=host).geturl() if "@" in parts.netloc else url


# ---- leader election ---------------------------------------------------------------------------


class LeaderLock(Protocol):
    """The lock that makes one relay the leader among the processes that share a database."""

    def acquire(self) -> bool:
        """Takes the lock if it is free (without waiting); True while this holder has it."""

    def holds(self) -> bool:
        """Whether the lock is still this holder's (on PostgreSQL, a round trip on its connection)."""

    def release(self) -> None:
        """Gives the lock up; never raises."""


class FileLock:
    """SQLite: an exclusive ``flock`` on a file next to the database. The kernel drops it when the
    process dies, however it dies. The file holds the leader's process id, for an operator."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def holds(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the descriptor releases the flock


class PgAdvisoryLock:
    """PostgreSQL: a session advisory lock on a connection of its own, outside the store's. The
    server releases it when the session ends, so a leader that dies, or loses its connection,
    frees it for another. The connection has TCP keepalives and a TCP user timeout, so that a
    check on a connection whose network died fails in seconds instead of hanging."""

    def __init__(self, database: str, connect_params: dict[str, Any], schema: str | None) -> None:
        self.params: dict[str, Any] = {
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 10_000,
            **connect_params,
            "dbname": database,
        }
        self.key = (PG_LOCK_CLASS, zlib.crc32((schema or "public").encode()) & 0x7FFFFFFF)
        self._conn: Any = None
        self._held = False

    @classmethod
    def from_url(cls, url: str, schema: str | None) -> PgAdvisoryLock:
        """A lock over a connection opened from url, keyed by schema (the store's, whatever the
        URL's own schema option says: every process must compute the same key)."""
        db = open_store(url).db  # the URL's meaning (libpq options, defaults) as the store reads it
        return cls(db.database, dict(db.connect_params), schema)

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg2.connect(**self.params)
            self._conn.autocommit = True
        return self._conn

    def acquire(self) -> bool:
        if self._held:
            return self.holds()
        try:
            with self._connection().cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s, %s)", self.key)
                self._held = bool(cur.fetchone()[0])
        except psycopg2.Error as exc:
            log.debug("relay lock connection failed", extra={"error": str(exc).strip()})
            self._drop()
            return False
        return self._held

    def holds(self) -> bool:
        if not self._held or self._conn is None or self._conn.closed:
            return False
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND classid = %s AND objid = %s AND objsubid = 2 AND granted)",
                    self.key,
                )
                still = bool(cur.fetchone()[0])
        except psycopg2.Error as exc:
            log.warning("relay lock connection lost", extra={"error": str(exc).strip()})
            self._drop()
            return False
        if not still:
            self._held = False
        return still

    def release(self) -> None:
        if self._held and self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg2.Error), self._conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s, %s)", self.key)
        self._drop()

    def _drop(self) -> None:
        conn, self._conn, self._held = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()


def leader_lock(store: Store, direct_url: str = "") -> LeaderLock:
    """The lock of the store's database: a file lock for SQLite; for PostgreSQL an advisory lock
    on a connection opened from direct_url, else with the store's own connection settings."""
    if store.dialect == "sqlite":
        return FileLock(Path(f"{store.db.database}.relay.lock"))
    if direct_url:
        return PgAdvisoryLock.from_url(direct_url, store.schema)
    return PgAdvisoryLock(store.db.database, dict(store.db.connect_params), store.schema)


# ---- metrics ------------------------------------------------------------------------------------


class RelayMetrics:
    """The relay's series, on the registry the service's metrics server exposes. Every process
    reports the backlog, leader or not, so that an alert on the lag fires even when no leader
    runs."""

    def __init__(self, registry: CollectorRegistry, lag: Callable[[], float]) -> None:
        self.lag = Gauge(
            "seats_relay_lag_seconds",
            "Age of the oldest event not yet acknowledged by the message bus; 0 when none waits.",
            registry=registry,
        )
        self.lag.set_function(lag)
        self.backlog = Gauge(
            "seats_relay_backlog_events", "Events in the outbox, waiting for the message bus.", registry=registry
        )
        self.published = Counter(
            "seats_relay_published", "Events the message bus acknowledged (duplicates included).", registry=registry
        )
        self.failures = Counter(
            "seats_relay_failures",
            "Failed attempts of the relay, by stage: publish (the bus) or database (the outbox).",
            ["stage"],
            registry=registry,
        )
        self.publish_failures = self.failures.labels("publish")
        self.database_failures = self.failures.labels("database")
        self.leader = Gauge(
            "seats_relay_leader", "1 while this process is the relay that publishes, else 0.", registry=registry
        )


# ---- the relay ----------------------------------------------------------------------------------


class Relay:
    """Publishes the outbox of store through publisher while this process is the leader. A thread
    of its own runs an asyncio loop; `start`, `wake` and `stop` may be called from any thread."""

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        *,
        lock: LeaderLock | None = None,
        registry: CollectorRegistry | None = None,
        batch: int = BATCH,
        idle_seconds: float = IDLE_SECONDS,
        election_seconds: float = ELECTION_SECONDS,
        backoff_first: float = BACKOFF_FIRST,
        backoff_max: float = BACKOFF_MAX,
        name: str = "seats-relay",
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.lock = lock if lock is not None else leader_lock(store)
        self.batch = batch
        self.idle_seconds = idle_seconds
        self.election_seconds = election_seconds
        self.backoff_first = backoff_first
        self.backoff_max = backoff_max
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the relay's series are (a registry of its own unless one was given)."""
        self.metrics = RelayMetrics(self.registry, self._lag)
        self._oldest: datetime | None = None
        self._lock_checked = 0.0
        self._lost = False
        self._leading = False
        self._woken = False
        self._after_account = ""  # where the last batch ended: the next starts after it
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._warned: dict[str, float] = {}
        self._failing: dict[str, int] = {}

    # ---- from other threads ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """Looks at the outbox now (a commit appended events). Cheap: one loop call per idle spell."""
        loop = self._loop
        if loop is None or self._woken:
            return
        self._woken = True
        with contextlib.suppress(RuntimeError):  # the loop just closed
            loop.call_soon_threadsafe(self._wake_now)

    def stop(self, timeout: float = 10.0) -> None:
        """Ends the thread: a publish in flight is abandoned (its event stays in the outbox), the
        lock is released and the bus connection closed."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive():
            self._thread.join(timeout)
        if _RELAYS.get(self.store) is self:
            del _RELAYS[self.store]

    @property
    def leader(self) -> bool:
        """Whether this relay is the one that publishes, now."""
        return self._leading

    # ---- the loop ------------------------------------------------------------------------------

    def _wake_now(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        finally:
            self._loop = None
            loop.close()

    async def _main(self) -> None:
        self._task = asyncio.current_task()
        self._wakeup = asyncio.Event()
        gauges: asyncio.Task[None] | None = None
        try:
            if self._stopping.is_set():
                return
            await self._wait_for_outbox()
            gauges = asyncio.create_task(self._watch_backlog())
            while not self._stopping.is_set():
                if not self.lock.acquire():
                    await asyncio.sleep(self.election_seconds)  # not woken by commits: a follower only waits
                    continue
                failed = False
                try:
                    await self._lead()
                except Exception:
                    log.exception("relay failed; it steps down and tries to lead again")
                    failed = True
                finally:
                    await self._resign()
                if failed:
                    await asyncio.sleep(self.backoff_max)
                elif self._lost:
                    # Its session died (a failover, a network cut): the followers, whose sessions
                    # may be healthier, get two election rounds to take the lead first.
                    await asyncio.sleep(2 * self.election_seconds)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        finally:
            if gauges is not None:
                gauges.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await gauges
            await self._resign()
            with contextlib.suppress(Exception):
                self.store.db.close()  # this thread's connection

    async def _resign(self) -> None:
        """Stops leading: closes the bus connection, then gives the lock up. What this relay
        published but did not delete from the outbox is published again by the next leader."""
        self._leading = False
        self.metrics.leader.set(0)
        await self.publisher.close()
        self.lock.release()

    async def _idle(self, seconds: float) -> None:
        """A leader with nothing to publish: waits seconds, or less if woken by a commit."""
        assert self._wakeup is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), seconds)

    async def _wait_for_outbox(self) -> None:
        """Waits until the schema has the outbox (a server starts its relay before it migrates)."""
        while not self._stopping.is_set():
            try:
                if self.store.read(self.store.schema_version) >= OUTBOX_MIGRATION:
                    return
            except Exception as exc:
                self._warn("database", "relay cannot read the schema version", exc)
            await asyncio.sleep(self.idle_seconds)

    async def _lead(self) -> None:
        log.info("relay leads", extra={"pid": os.getpid()})
        self._leading = True
        self.metrics.leader.set(1)
        self._lost = False
        self._lock_checked = time.monotonic()
        await self._connect()
        while not self._stopping.is_set() and not self._lost:
            if not self._still_leader():
                break
            assert self._wakeup is not None
            self._woken = False
            self._wakeup.clear()
            try:
                batch = self.store.read(functools.partial(self.store.outbox_batch, self.batch, self._after_account))
            except Exception as exc:
                self.metrics.database_failures.inc()
                self._warn("database", "relay cannot read the outbox", exc)
                await asyncio.sleep(self.backoff_max)
                continue
            self._recovered("database")
            if not batch:
                self._oldest = None
                self.metrics.backlog.set(0)
                await self._idle(self.idle_seconds)
                continue
            self._after_account = batch[-1][0]  # the next batch starts with the accounts after it
            await self._relay(batch)
        if self._lost:
            log.warning("relay lost its leader lock", extra={"pid": os.getpid()})

    async def _relay(self, batch: list[tuple[str, Event]]) -> None:
        """Publishes a batch: each account's events in order, one acknowledged before the next is
        sent; accounts in parallel. Then forgets, per account, the events up to the last one
        acknowledged, also when the batch was cut short."""
        by_account: dict[str, list[Event]] = {}
        for account_id, event in batch:
            by_account.setdefault(account_id, []).append(event)
        acked: dict[str, int] = {}
        gate = asyncio.Semaphore(ACCOUNTS_IN_FLIGHT)

        async def account(account_id: str, events: list[Event]) -> None:
            async with gate:
                for event in events:
                    if not await self._publish(account_id, event):
                        return
                    acked[account_id] = event.sequence

        try:
            async with asyncio.TaskGroup() as group:
                for account_id, events in by_account.items():
                    group.create_task(account(account_id, events))
        finally:
            if acked:
                self._done(acked)

    async def _publish(self, account_id: str, event: Event) -> bool:
        """Publishes one event until the bus acknowledges it (True), or the relay stops or loses
        the lead (False)."""
        subject = SUBJECT_PREFIX + account_id
        body = event_pb(event).SerializeToString()
        message_id = f"{account_id}:{event.sequence}"
        delay = self.backoff_first
        while True:
            try:
                await self.publisher.publish(subject, body, message_id)
            except Exception as exc:
                self.metrics.publish_failures.inc()
                self._warn("publish", "relay cannot publish; retrying the same event", exc)
                if self._stopping.is_set() or not self._still_leader():
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self.metrics.published.inc()
            self._recovered("publish")
            return True

    async def _connect(self) -> None:
        """Connects to the bus, retrying while this relay leads."""
        delay = self.backoff_first
        while not self._stopping.is_set() and self._still_leader():
            try:
                await self.publisher.connect()
            except Exception as exc:
                self.metrics.publish_failures.inc()
                self._warn("connect", "relay cannot connect to the message bus; retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
                continue
            self._recovered("connect")
            return

    def _done(self, acked: dict[str, int]) -> None:
        """Forgets acknowledged events, all accounts in one transaction. On failure they stay in
        the outbox and are published again: the bus drops the second copies."""

        def forget() -> None:
            for account_id, through in acked.items():
                self.store.outbox_done(account_id, through)

        try:
            self.store.write(forget)
        except Exception as exc:
            self.metrics.database_failures.inc()
            self._warn("database", "relay cannot delete published events from the outbox", exc)

    def _still_leader(self) -> bool:
        """Checks the lock at most once per election interval; remembers a loss."""
        now = time.monotonic()
        if now - self._lock_checked >= self.election_seconds:
            self._lock_checked = now
            if not self.lock.holds():
                self._lost = True
        return not self._lost

    async def _watch_backlog(self) -> None:
        """Reads the backlog every BACKLOG_SECONDS, on its own: a leader stuck on a bus that does
        not answer (each attempt waits for its timeout) still shows its lag rising, and a
        follower shows the lag of a leader that does not publish."""
        while True:
            try:
                count, oldest = self.store.read(self.store.outbox_backlog)
            except Exception as exc:
                self._warn("backlog", "relay cannot read the outbox backlog", exc)
            else:
                self.metrics.backlog.set(count)
                self._oldest = oldest
            await asyncio.sleep(BACKLOG_SECONDS)

    def _lag(self) -> float:
        oldest = self._oldest
        if oldest is None:
            return 0.0
        return max(0.0, (datetime.now(UTC) - oldest).total_seconds())

    def _warn(self, stage: str, message: str, exc: BaseException) -> None:
        """Logs a failure when it starts, then at most every WARN_EVERY_SECONDS while it goes on."""
        self._failing[stage] = self._failing.get(stage, 0) + 1
        now = time.monotonic()
        if now - self._warned.get(stage, -WARN_EVERY_SECONDS) >= WARN_EVERY_SECONDS:
            self._warned[stage] = now
            log.warning(message, extra={"error": repr(exc), "failures": self._failing[stage]})

    def _recovered(self, stage: str) -> None:
        failures = self._failing.pop(stage, 0)
        if failures:
            self._warned.pop(stage, None)
            log.info("relay recovered", extra={"stage": stage, "failures": failures})


_RELAYS: weakref.WeakKeyDictionary[Store, Relay] = weakref.WeakKeyDictionary()
"""The relay started for a store: one per store, however many times start_relay is called."""


def start_relay(config: Config, store: Store, *, registry: CollectorRegistry | None = None) -> Relay | None:
    """The server's one call: None when no bus is configured (config.nats_url empty). Otherwise
    turns the store's outbox on (appended events get an outbox row), starts a relay to NATS
    JetStream whose metrics go to registry, and wakes it on every commit of this process. Calling
    it again for the same store returns the relay already running. Call `Relay.stop` at shutdown."""
    if not config.nats_url:
        return None
    running = _RELAYS.get(store)
    if running is not None:
        return running
    store.outbox = True
    relay = Relay(
        store,
        NatsJetStreamPublisher(config.nats_url),
        lock=leader_lock(store, config.direct_database_url),
        registry=registry,
    )
    _RELAYS[store] = relay
    store.add_commit_listener(lambda _account_id: relay.wake())
    relay.start()
    return relay
