"""The store: Peewee over SQLite or PostgreSQL, the only place that knows SQL.

Every hot statement is written once, below, as SQL text with placeholders, and run with
``execute_sql``: a call runs a handful of statements and builds no query objects. Peewee still
owns the connections, the transactions and the error types.

Writes run in `Store.write`, one transaction per group of calls: the account row is locked
first (`SELECT ... FOR UPDATE` on PostgreSQL; SQLite's `BEGIN IMMEDIATE` locks the database), so
the check and the write of every rule happen under one lock. Concurrent write calls of one
process are committed in groups (see `_GroupCommit`): one transaction, and so one fsync, for
many calls, each in a savepoint of its own. On PostgreSQL a call's writes and savepoints travel
with its next statement, so a call costs two round trips. Transient errors (a busy SQLite file,
a serialization failure or deadlock, a dropped connection, a lost race on a request id) are
retried here, so callers never see them.
"""

from __future__ import annotations

import functools
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import peewee as pw

from ..domain.errors import SeatError, concurrent_change, unavailable
from ..domain.model import (
    Account,
    Assignment,
    Charge,
    ChargeKind,
    Event,
    EventType,
    Hub,
    Invoice,
    Permissions,
    Pool,
    PoolCounts,
    RequestState,
    SeatRef,
    SeatRequest,
    Tier,
    User,
)
from ..domain.ports import RequestRecord
from .migrations import MIGRATIONS, Migration
from .models import build_models
from .standby import StandbyMonitor

T = TypeVar("T")
log = logging.getLogger("seats.store")

MAX_ATTEMPTS = 30
PG_RETRYABLE = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
PG_ADVISORY_MIGRATION_LOCK = 0x5EA75
MAX_GROUP = 64  # write calls committed together at most
SQLITE_SYNCHRONOUS = ("full", "normal", "extra")
EXCEPTION_WRAPPER = vars(pw)["__exception_wrapper__"]  # maps driver errors to Peewee's types


class _Retry(Exception):
    """Raised inside a transaction to roll it back and run it again."""


class _DryRun(Exception):
    """Rolls back a validate-only transaction after it ran to the end."""


# ---- what a database error means ------------------------------------------------------------


class Fault(Enum):
    """Whose fault a database error is, which decides its status code."""

    INPUT = "input"
    """The request's values do not fit (too many of them, a value too big or out of range):
    INVALID_ARGUMENT, never retried. Input checks make these impossible; this is the backstop."""
    OUTAGE = "outage"
    """The database cannot serve now (a lost connection, a lock or a timeout, no resources):
    retried by the store, then UNAVAILABLE."""
    BUG = "bug"
    """Anything else: a bug of the service, INTERNAL."""


SQLITE_OUTAGE = {
    sqlite3.SQLITE_BUSY,
    sqlite3.SQLITE_LOCKED,
    sqlite3.SQLITE_NOMEM,
    sqlite3.SQLITE_READONLY,
    sqlite3.SQLITE_INTERRUPT,
    sqlite3.SQLITE_IOERR,
    sqlite3.SQLITE_FULL,
    sqlite3.SQLITE_CANTOPEN,
    sqlite3.SQLITE_PROTOCOL,
    sqlite3.SQLITE_NOLFS,
}
SQLITE_INPUT = {sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_RANGE}  # string or blob too big; bind index out of range
SQLITE_INPUT_TEXT = (  # limits SQLite reports as a plain SQLITE_ERROR
    "too many sql variables",
    "too many terms in compound select",
    "expression tree is too large",
    "too many arguments on function",
    "parser stack overflow",
    "string or blob too big",
    "integer overflow",
)
PG_INPUT_CLASSES = {"22", "54"}  # data exception (value out of range, too long, ...); program limit exceeded
PG_OUTAGE_CLASSES = {"08", "53", "57", "58"}  # connection; insufficient resources; operator intervention
# (shutdown, statement timeout); system error (I/O)
PG_OUTAGE = {
    "40001",  # serialization failure, after the store's retries
    "40P01",  # deadlock, after the store's retries
    "55P03",  # lock not available (lock timeout)
    "25006",  # read-only transaction: a standby during a failover
    "25P03",  # idle in transaction session timeout
}


def driver_error(exc: BaseException) -> BaseException:
    """The driver's error a Peewee error wraps (Peewee keeps it as `orig`), else exc itself."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, BaseException):
        return orig
    return exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else exc


def fault_of(exc: BaseException) -> Fault:
    """Whose fault a database error (a Peewee error wrapping the driver's) is. Only connection,
    lock and timeout failures are outages; values the database cannot take are the caller's."""
    orig = driver_error(exc)
    if isinstance(orig, OverflowError | ValueError):  # a value the driver could not bind (see _exec)
        return Fault.INPUT
    if isinstance(orig, sqlite3.Error):
        code = getattr(orig, "sqlite_errorcode", 0) & 0xFF  # the primary code of an extended one
        if code in SQLITE_OUTAGE:
            return Fault.OUTAGE
        if code in SQLITE_INPUT or any(text in str(orig).lower() for text in SQLITE_INPUT_TEXT):
            return Fault.INPUT
        return Fault.BUG
    pgcode = getattr(orig, "pgcode", None)
    if isinstance(pgcode, str) and pgcode:
        if pgcode[:2] in PG_INPUT_CLASSES:
            return Fault.INPUT
        if pgcode[:2] in PG_OUTAGE_CLASSES or pgcode in PG_OUTAGE:
            return Fault.OUTAGE
        return Fault.BUG
    if isinstance(exc, pw.OperationalError | pw.InterfaceError):
        return Fault.OUTAGE  # no answer from the server: the connection failed or was lost
    return Fault.BUG


def to_micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def open_store(url: str) -> Store:
    """Opens the database a URL names: ``sqlite:///relative.db``, ``sqlite:////abs.db`` or
    ``postgresql://user:password@host:port/dbname?schema=name&sslmode=require``.

    SQLite commits are durable by default (``synchronous=full``: an OK answer survives a power
    cut); ``?synchronous=normal`` trades that for speed (a power cut may lose the last commits,
    a crash of the process loses nothing); it takes no other option.

    On PostgreSQL, ``schema`` is the service's own option (the schema its tables live in); every
    other query option is a libpq connection parameter (``sslmode``, ``sslrootcert``,
    ``connect_timeout``, default 5, ``application_name``, default ``seats``, ``options``, ...),
    passed to the driver as it is. An option that is neither is refused (ValueError), so that a
    misspelt ``sslmode`` is not silently dropped."""
    parsed = urlparse(url)
    query = {name: values[-1] for name, values in parse_qs(parsed.query, keep_blank_values=True).items()}
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)
        if not path or path == ":memory:":
            raise ValueError("SQLite needs a file: an in-memory database is one per connection")
        unknown = sorted(set(query) - {"synchronous"})
        if unknown:
            raise ValueError(f"unknown SQLite option {unknown[0]!r} in the database URL: the only one is synchronous")
        synchronous = query.get("synchronous", "full").lower()
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        db: pw.Database = pw.SqliteDatabase(
            path,
            pragmas={
                "busy_timeout": 10_000,  # first: switching to WAL may wait for another process
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": synchronous,
            },
            check_same_thread=False,
        )
        return Store(db, dialect="sqlite", schema=None)
    if parsed.scheme in ("postgresql", "postgres"):
        schema = query.pop("schema", "") or None
        database = query.pop("dbname", "") or parsed.path.lstrip("/") or "postgres"
        kwargs: dict[str, Any] = {
            "user": unquote(parsed.username) if parsed.username else None,
            "password": unquote(parsed.password) if parsed.password else None,
            "host": parsed.hostname or None,
            "port": parsed.port or None,
            "connect_timeout": "5",
            "application_name": "seats",
        }
        kwargs = {k: v for k, v in kwargs.items() if v is not None} | query
        if schema:
            if not schema.replace("_", "").isalnum():
                raise ValueError(f"bad schema name {schema!r}")
            kwargs["options"] = f"{kwargs.get('options', '')} -c search_path={schema}".strip()
        _check_libpq_options(kwargs)
        db = pw.PostgresqlDatabase(database, **kwargs)
        return Store(db, dialect="postgres", schema=schema)
    what = f"scheme {parsed.scheme!r}" if parsed.scheme else "URL without a scheme"
    raise ValueError(f"unsupported database {what}: use sqlite:///path.db or postgresql://user@host:port/dbname")


def _check_libpq_options(kwargs: dict[str, Any]) -> None:
    """Refuses a name libpq does not know, before any connection is tried."""
    from psycopg2 import ProgrammingError
    from psycopg2.extensions import make_dsn

    try:
        make_dsn(**kwargs)
    except ProgrammingError as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(
            f"{detail.removeprefix('invalid dsn: ')} in the database URL: "
            "its options are schema and libpq's (sslmode, connect_timeout, application_name, ...)"
        ) from None


# ---- the statements ---------------------------------------------------------------------------

ACCOUNT_COLUMNS = (
    "account_id, display_name, owner_user_id, currency_code, term_months, term_anchor, term_start, "
    "renewal_time, last_sequence, create_time"
)
USER_COLUMNS = (
    "user_id, account_id, email, display_name, super_admin, edit_billing, account_access, version, "
    "create_time, update_time"
)
EVENT_COLUMNS = (
    "sequence, event_type, actor, event_time, request_id, user_id, hub, tier, previous_tier, quantity, "
    "before_included, before_purchased, before_assigned, before_pending, "
    "after_included, after_purchased, after_assigned, after_pending, seat_request_id, invoice_id"
)
INVOICE_COLUMNS = "invoice_id, number, period_start, period_end, issue_time, currency_code, total_minor, line_count"
SEAT_REQUEST_COLUMNS = (
    "seat_request_id, number, user_id, hub, tier, state, create_time, update_time, requested_by, decided_by, reason"
)
CHARGE_COLUMNS = (
    "charge_id, kind, hub, tier, quantity, unit_price_minor, amount_minor, currency_code, period_start, "
    "period_end, charge_time, description"
)


def last_use(table: str = "") -> str:
    """A seat's last use, in SQL: the later of its last activity and its assign_time (a grant,
    or a move to another tier: an administrator's act counts as a use); with no activity
    recorded (NULL), assign_time."""
    t = f"{table}." if table else ""
    return f"(CASE WHEN {t}last_activity_time > {t}assign_time THEN {t}last_activity_time ELSE {t}assign_time END)"


LAST_USE = last_use()


@functools.lru_cache(maxsize=4096)
def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


class Sql:
    """The statements, in the placeholder style of one dialect; written with ``?``."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        lock = " FOR UPDATE" if dialect == "postgres" else ""
        self.get_account = self.q(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?")
        self.lock_account = self.q(f"SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE account_id = ?{lock}")
        self.account_sequence = self.q("SELECT last_sequence FROM accounts WHERE account_id = ?")
        self.insert_account = self.q(f"INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ({_placeholders(10)})")
        self.save_account_term = self.q("UPDATE accounts SET term_start = ?, renewal_time = ? WHERE account_id = ?")
        self.move_sequence = self.q("UPDATE accounts SET last_sequence = ? WHERE account_id = ? AND last_sequence = ?")
        self.due_accounts = self.q(
            "SELECT account_id FROM accounts WHERE renewal_time <= ? ORDER BY renewal_time LIMIT ?"
        )
        self.load_pools = self.q(
            "SELECT hub, tier, included, purchased, assigned, pending_removal, version, idle_reclaim_days, "
            "waiting_requests, auto_approve_requests FROM seat_pools WHERE account_id = ? ORDER BY hub, tier"
        )
        self.insert_pool = self.q(
            "INSERT INTO seat_pools (included, purchased, assigned, pending_removal, version, idle_reclaim_days, "
            "waiting_requests, auto_approve_requests, account_id, hub, tier) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        self.update_pool = self.q(
            "UPDATE seat_pools SET included = ?, purchased = ?, assigned = ?, pending_removal = ?, version = ?, "
            "idle_reclaim_days = ?, waiting_requests = ?, auto_approve_requests = ? "
            "WHERE account_id = ? AND hub = ? AND tier = ?"
        )
        self.delete_pool = self.q("DELETE FROM seat_pools WHERE account_id = ? AND hub = ? AND tier = ?")
        self.get_user = self.q(f"SELECT {USER_COLUMNS} FROM users WHERE account_id = ? AND user_id = ?")
        self.email_owner = self.q("SELECT user_id FROM users WHERE account_id = ? AND email_key = ?")
        self.insert_user = self.q(f"INSERT INTO users ({USER_COLUMNS}, email_key) VALUES ({_placeholders(11)})")
        self.update_user = self.q(
            "UPDATE users SET email = ?, email_key = ?, display_name = ?, super_admin = ?, edit_billing = ?, "
            "account_access = ?, version = ?, update_time = ? WHERE account_id = ? AND user_id = ? AND version = ?"
        )
        self.delete_user = self.q("DELETE FROM users WHERE account_id = ? AND user_id = ?")
        self.insert_assignment = self.q(
            "INSERT INTO seat_assignments (account_id, user_id, hub, tier, assign_time) VALUES (?, ?, ?, ?, ?)"
        )
        self.move_assignment = self.q(
            "UPDATE seat_assignments SET tier = ?, assign_time = ? WHERE account_id = ? AND user_id = ? AND hub = ?"
        )
        self.delete_assignment = self.q("DELETE FROM seat_assignments WHERE account_id = ? AND user_id = ? AND hub = ?")
        self.holders = self.q(
            "SELECT user_id FROM seat_assignments WHERE account_id = ? AND hub = ? AND tier = ? ORDER BY user_id"
        )
        self.insert_event = self.q(
            f"INSERT INTO seat_events (account_id, {EVENT_COLUMNS}) VALUES ({_placeholders(21)})"
        )
        self.list_events = self.q(
            f"SELECT {EVENT_COLUMNS} FROM seat_events WHERE account_id = ? AND sequence > ? ORDER BY sequence LIMIT ?"
        )
        self.insert_charge = self.q(f"INSERT INTO charges (account_id, {CHARGE_COLUMNS}) VALUES ({_placeholders(13)})")
        self.charges_since = self.q(
            f"SELECT {CHARGE_COLUMNS} FROM charges WHERE account_id = ? AND period_start >= ? "
            "ORDER BY charge_time, charge_id"
        )
        self.find_request = self.q(
            "SELECT fingerprint, response, refusal FROM request_records "
            "WHERE scope = ? AND request_id = ? AND create_time >= ?"
        )
        # One statement records a first result, or replaces an expired record of the same id;
        # an unexpired twin leaves it unchanged (no row counted): the caller lost a race.
        self.save_request = self.q(
            "INSERT INTO request_records (scope, request_id, fingerprint, response, refusal, create_time) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, request_id) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, response = excluded.response, refusal = excluded.refusal, "
            "create_time = excluded.create_time WHERE request_records.create_time < ?"
        )
        self.purge_requests = self.q("DELETE FROM request_records WHERE create_time < ?")
        # Activity moves a seat's last use forward only, and never before the seat was given.
        # A seat's last use is the later of its last activity and its assign_time (a grant, or a
        # move to another tier: an administrator's act is a use too); NULL activity: assign_time.
        self.record_activity = self.q(
            "UPDATE seat_assignments SET last_activity_time = ? WHERE account_id = ? AND user_id = ? AND hub = ? "
            "AND assign_time <= ? AND (last_activity_time IS NULL OR last_activity_time < ?)"
        )
        self.record_activity_arrays = self.q(
            "UPDATE seat_assignments s SET last_activity_time = v.t "
            "FROM unnest(?::text[], ?::smallint[], ?::bigint[]) AS v(user_id, hub, t) "
            "WHERE s.account_id = ? AND s.user_id = v.user_id AND s.hub = v.hub AND s.assign_time <= v.t "
            "AND (s.last_activity_time IS NULL OR s.last_activity_time < v.t)"
        )
        self.idle_seats = self.q(
            "SELECT user_id, hub, tier, assign_time, last_activity_time FROM seat_assignments "
            f"WHERE account_id = ? AND hub = ? AND tier = ? AND {LAST_USE} <= ? "
            "ORDER BY user_id LIMIT ?"
        )
        # Takes a seat only if it is still idle when the row is written (activity is recorded
        # without the account's lock).
        self.delete_idle_assignment = self.q(
            f"DELETE FROM seat_assignments WHERE account_id = ? AND user_id = ? AND hub = ? AND {LAST_USE} <= ?"
        )
        self.reclaim_candidates = self.q(
            "SELECT DISTINCT p.account_id FROM seat_pools p JOIN seat_assignments s "
            "ON s.account_id = p.account_id AND s.hub = p.hub AND s.tier = p.tier "
            "WHERE p.idle_reclaim_days > 0 "
            f"AND {last_use('s')} <= ? - p.idle_reclaim_days * 86400000000 "
            "ORDER BY p.account_id LIMIT ?"
        )
        self.next_invoice_number = self.q("SELECT COALESCE(MAX(number), 0) + 1 FROM invoices WHERE account_id = ?")
        # The charges of the term that ends: every one not yet billed that the term began.
        self.bill_charges = self.q(
            "UPDATE charges SET invoice_id = ? WHERE account_id = ? AND invoice_id IS NULL AND period_start < ?"
        )
        self.invoice_sum = self.q(
            "SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM charges WHERE account_id = ? AND invoice_id = ?"
        )
        self.insert_invoice = self.q(
            f"INSERT INTO invoices (account_id, {INVOICE_COLUMNS}) VALUES ({_placeholders(9)})"
        )
        self.get_invoice = self.q(f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = ? AND invoice_id = ?")
        self.list_invoices = self.q(
            f"SELECT {INVOICE_COLUMNS} FROM invoices WHERE account_id = ? AND number > ? ORDER BY number LIMIT ?"
        )
        self.invoice_lines = self.q(
            f"SELECT {CHARGE_COLUMNS} FROM charges WHERE account_id = ? AND invoice_id = ? "
            "ORDER BY charge_time, charge_id"
        )
        self.insert_seat_request = self.q(
            f"INSERT INTO seat_requests (account_id, {SEAT_REQUEST_COLUMNS}) VALUES ({_placeholders(12)})"
        )
        self.next_request_number = self.q("SELECT COALESCE(MAX(number), 0) + 1 FROM seat_requests WHERE account_id = ?")
        self.get_seat_request = self.q(
            f"SELECT {SEAT_REQUEST_COLUMNS} FROM seat_requests WHERE account_id = ? AND seat_request_id = ?"
        )
        self.open_seat_requests = self.q(
            f"SELECT {SEAT_REQUEST_COLUMNS} FROM seat_requests WHERE account_id = ? AND user_id = ? "
            "AND state IN (1, 2) ORDER BY number"
        )
        self.waiting_seat_requests = self.q(
            f"SELECT {SEAT_REQUEST_COLUMNS} FROM seat_requests WHERE account_id = ? AND hub = ? AND tier = ? "
            "AND state = 2 ORDER BY number LIMIT ?"
        )
        # A request moves only from an open state: a decision made meanwhile is not overwritten.
        self.close_seat_request = self.q(
            "UPDATE seat_requests SET state = ?, update_time = ?, decided_by = ? "
            "WHERE account_id = ? AND seat_request_id = ? AND state IN (1, 2)"
        )
        self.insert_outbox = self.q("INSERT INTO event_outbox (account_id, sequence) VALUES (?, ?)")
        # What a relay sends next: the oldest events of each account, in sequence order, at most
        # a share per account, starting with the accounts after the one the last batch ended on
        # (round robin: an account with a long backlog cannot hold the others back).
        self.outbox_batch = self.q(
            f"SELECT w.account_id, {', '.join('e.' + c.strip() for c in EVENT_COLUMNS.split(','))} FROM ("
            "SELECT account_id, sequence, ROW_NUMBER() OVER (PARTITION BY account_id ORDER BY sequence) AS n "
            "FROM event_outbox) w "
            "JOIN seat_events e ON e.account_id = w.account_id AND e.sequence = w.sequence "
            "WHERE w.n <= ? ORDER BY w.account_id <= ?, w.account_id, w.sequence LIMIT ?"
        )
        self.outbox_done = self.q("DELETE FROM event_outbox WHERE account_id = ? AND sequence <= ?")
        self.outbox_size = self.q(
            "SELECT COUNT(*), MIN(e.event_time) FROM event_outbox o JOIN seat_events e "
            "ON e.account_id = o.account_id AND e.sequence = o.sequence"
        )
        self.notify = self.q("SELECT pg_notify(?, ?)")

    def q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.dialect == "postgres" else sql

    @functools.lru_cache(maxsize=512)  # noqa: B019 - one Sql per store, a bounded set of shapes
    def shaped(self, sql: str, n: int = 0) -> str:
        """A statement whose shape depends on the call (optional filters, a list of n ids as
        ``@ids``), made once per shape."""
        return self.q(sql.replace("@ids", _placeholders(n)))


# ---- group commit -------------------------------------------------------------------------------


@dataclass
class _Job:
    fn: Callable[[], Any]
    dry_run: bool
    result: Any = None
    error: BaseException | None = None
    done: bool = False
    after: list[Callable[[], None]] = field(default_factory=list)
    staged: dict[str, Any] = field(default_factory=dict)
    wake: threading.Event = field(default_factory=threading.Event)
    group: int = 0  # the calls of the group commit it ran in


class StoreObserver(Protocol):
    """Who watches the store's transactions (service/observe.py): asked nothing when there is none."""

    def read(self, run: Callable[[Callable[[], T]], T], fn: Callable[[], T]) -> T:
        """Runs run(fn): one read."""

    def write(self, run: Callable[[_Job], None], job: _Job) -> None:
        """Runs run(job): one write call, from its queueing to its group's commit."""

    def committed(self, size: int, seconds: float) -> None:
        """A group commit of size calls took seconds."""

    def events(self, events: Sequence[Event]) -> None:
        """Events that were just committed."""


class _GroupCommit:
    """Commits concurrent write calls of one process together: a caller that finds no commit
    under way leads; it runs its own call and every call queued by then in one transaction,
    each in its own savepoint (a call that fails rolls back alone), commits once, and wakes
    them; then the oldest call queued meanwhile leads the next group. A call's answer is
    given only after the commit that made it durable."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.lock = threading.Lock()
        self.queue: list[_Job] = []
        self.leading = False

    def run(self, job: _Job) -> None:
        with self.lock:
            follow = self.leading
            if follow:
                self.queue.append(job)
            else:
                self.leading = True
        if follow:
            job.wake.wait()
            if job.done:
                return
        # this call leads: the group is itself and whoever queued before it took the lead
        with self.lock:
            batch = [job, *self.queue[: MAX_GROUP - 1]]
            del self.queue[: MAX_GROUP - 1]
        start = time.perf_counter()
        try:
            self.store._run_group(batch)
        finally:
            size = len(batch)
            for j in batch:
                j.done = True
                j.group = size
                if j is not job:
                    j.wake.set()
            with self.lock:
                if self.queue:
                    self.queue.pop(0).wake.set()  # not done: it leads the next group
                else:
                    self.leading = False
            observer = self.store.observer
            if observer is not None:  # after the hand-off: the next group does not wait for it
                observer.committed(size, time.perf_counter() - start)


class Store:
    def __init__(self, db: pw.Database, *, dialect: str, schema: str | None) -> None:
        self.db = db
        self.dialect = dialect
        self.schema = schema
        self.m = build_models(db)
        self.sql = Sql(dialect)
        self._local = threading.local()
        self._listeners: list[Callable[[str], None]] = []
        self._group = _GroupCommit(self)
        self.observer: StoreObserver | None = None
        self.standby: Store | None = None
        """A hot standby for reads that tolerate staleness (see stale_read), with its monitor."""
        self.standby_monitor: StandbyMonitor | None = None
        self.stale_reads = {"standby": 0, "primary": 0}
        """Reads stale_read served, by where (read by the metrics)."""
        self.statement_timeout_ms = 0
        """On PostgreSQL, the longest a statement of a write or a snapshot read may run (0: no bound)."""
        self.outbox = False
        """Whether appended events also go to the outbox, for a relay to a message bus."""
        self.notify_channel = f"seats_events_{schema}" if schema else "seats_events"
        """The PostgreSQL channel a commit that appended events notifies (payload: the account
        id), so that other processes' watches wake at once (see service/listener.py)."""

    # ---- statements ---------------------------------------------------------------------

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """Runs a statement now, after the writes deferred before it, in the same round trip."""
        pending: list[tuple[str, Sequence[Any]]] | None = getattr(self._local, "pending", None)
        deferred: list[tuple[str, Sequence[Any]]] = []
        if pending:
            deferred = list(pending)
            pending.append((sql, params))
            sql = "; ".join(q for q, _ in pending)
            params = [p for _, ps in pending for p in ps]
            pending.clear()
        try:
            with EXCEPTION_WRAPPER:
                cursor = self.db.cursor()
                cursor.execute(sql, params)
        except (OverflowError, ValueError) as exc:
            if pending is not None:
                pending[:0] = deferred
            raise self._unbound(exc) from exc
        return cursor

    def _defer(self, sql: str, params: Sequence[Any], *, item: tuple[str, Sequence[Any]] | None = None) -> None:
        """A write whose result nobody reads. On PostgreSQL, inside a transaction, it waits and
        travels with the next statement (or the flush at the end of the call): a call's writes
        cost one round trip, not one each. Its errors surface there, inside the same call."""
        pending: list[tuple[str, Sequence[Any]]] | None = getattr(self._local, "pending", None)
        if pending is None:
            self._exec(sql, params)
        else:
            pending.append(item or (sql, params))

    def _flush(self) -> None:
        pending: list[tuple[str, Sequence[Any]]] | None = getattr(self._local, "pending", None)
        if pending:
            sql, params = pending.pop()
            self._exec(sql, params)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(self._exec(sql, params).fetchall())

    def _many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """An INSERT of several rows: one statement with a VALUES list on PostgreSQL."""
        if self.dialect == "postgres":
            head, _, values = sql.partition(" VALUES ")
            self._defer(f"{head} VALUES {', '.join([values] * len(rows))}", [p for row in rows for p in row])
            return
        try:
            with EXCEPTION_WRAPPER:
                self.db.cursor().executemany(sql, rows)
        except (OverflowError, ValueError) as exc:
            raise self._unbound(exc) from exc

    @staticmethod
    def _unbound(exc: Exception) -> pw.DataError:
        """The driver could not bind a value (an integer beyond 64 bits, a NUL, a lone surrogate)
        and sent nothing (the statements deferred before it stay pending, the call's savepoint
        among them): a data error, the caller's fault (see fault_of)."""
        return pw.DataError(exc)

    # ---- transactions -------------------------------------------------------------------

    def write(self, fn: Callable[[], T], *, dry_run: bool = False) -> T:
        """Runs fn in one write transaction, retrying transient failures. Nested calls join
        the outer transaction. With dry_run the transaction is rolled back at the end.
        Callbacks fn registers with `after_commit` run once the change is durable."""
        if self.db.in_transaction():
            return fn()
        job = _Job(fn, dry_run)
        observer = self.observer
        if observer is None:
            self._group.run(job)
        else:
            observer.write(self._group.run, job)
        if job.error is not None:
            raise job.error
        for callback in job.after:
            callback()
        return job.result  # type: ignore[no-any-return]

    def stage(self, key: str, value: object) -> None:
        """Keeps value for the later calls of the current transaction (under the same key),
        once the current call's changes are kept; gone when the transaction ends."""
        job: _Job | None = getattr(self._local, "job", None)
        if job is None:
            raise RuntimeError("stage needs a write transaction")
        job.staged[key] = value

    def staged(self, key: str) -> Any:
        """What an earlier call of the current transaction staged under key, or None."""
        job: _Job | None = getattr(self._local, "job", None)
        if job is not None and key in job.staged:
            return job.staged[key]
        group: dict[str, Any] | None = getattr(self._local, "group", None)
        return group.get(key) if group is not None else None

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Runs callback after the current write commits; never if it rolls back."""
        job: _Job | None = getattr(self._local, "job", None)
        if job is None:
            raise RuntimeError("after_commit needs a write transaction")
        job.after.append(callback)

    def _run_group(self, batch: list[_Job]) -> None:
        """The leader's transaction for a group of write calls: each in a savepoint of its own,
        one commit for all. On PostgreSQL the savepoint statements travel with the calls'
        own statements, so they cost no round trip of their own."""
        attempt = 0
        while True:
            attempt += 1
            self._local.group = {}
            self._local.pending = [] if self.dialect == "postgres" else None
            if self._local.pending is not None and self.statement_timeout_ms:
                self._local.pending.append(self._timeout_statement())
            try:
                with self.db.atomic("IMMEDIATE") if self.dialect == "sqlite" else self.db.atomic():
                    for job in batch:
                        self._run_savepoint(job)
                        if job.error is None and not job.dry_run:
                            self._local.group.update(job.staged)
                    self._flush()
                return
            except (pw.OperationalError, pw.InterfaceError, pw.InternalError) as exc:
                if not self._transient(exc) or attempt >= MAX_ATTEMPTS:
                    error = self._outage(exc)
                    for job in batch:
                        job.error, job.after = error, []
                    return
            finally:
                self._local.group = None
                self._local.pending = None
            self._backoff(attempt)

    def _run_savepoint(self, job: _Job) -> None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            job.after, job.error, job.staged = [], None, {}
            self._local.job = job
            savepoint = ("SAVEPOINT call", ())
            self._defer(*savepoint, item=savepoint)
            try:
                job.result = job.fn()
                self._flush()  # this call's writes, inside its own savepoint
            except _Retry:
                self._undo(savepoint)
                if attempt < MAX_ATTEMPTS:
                    continue
                job.error = concurrent_change()
            except (pw.OperationalError, pw.InterfaceError, pw.InternalError) as exc:
                if fault_of(exc) is not Fault.INPUT:
                    raise  # the transaction itself is in trouble: the whole group is retried
                job.error = exc  # the call's own values do not fit: it fails alone, not retried
            except BaseException as exc:
                job.error = exc
            finally:
                self._local.job = None
            if job.error is not None or job.dry_run:
                job.after = []
                self._undo(savepoint)
            else:
                self._defer("RELEASE SAVEPOINT call", ())
            return

    def savepoint(self, fn: Callable[[], T]) -> T:
        """Inside a write call: runs fn in a savepoint of its own. If fn raises, its writes, and
        the after-commit callbacks and staged values it left, are undone and the exception goes
        on; the call goes on and may still commit. On PostgreSQL the savepoint statements travel
        with the call's own, and a savepoint whose writes were not sent yet is undone by
        dropping them: no round trip of its own either way."""
        job: _Job | None = getattr(self._local, "job", None)
        if job is None:
            raise RuntimeError("savepoint needs a write transaction")
        after, staged = len(job.after), dict(job.staged)
        savepoint = ("SAVEPOINT work", ())
        self._defer(*savepoint, item=savepoint)
        try:
            result = fn()
        except (pw.OperationalError, pw.InterfaceError, pw.InternalError):
            raise  # the transaction itself is in trouble: the whole group is retried
        except BaseException:
            del job.after[after:]
            job.staged = staged
            self._undo(savepoint, "work")
            raise
        self._defer("RELEASE SAVEPOINT work", ())
        return result

    def _undo(self, savepoint: tuple[str, Sequence[Any]], name: str = "call") -> None:
        """Rolls back to a savepoint of the current call (its own, or a savepoint inside it);
        the statements not sent yet after it are dropped (with the savepoint itself, if it was
        not sent either)."""
        pending: list[tuple[str, Sequence[Any]]] | None = self._local.pending
        if pending is not None:
            for i, item in enumerate(pending):
                if item is savepoint:
                    del pending[i:]
                    return
            pending.clear()
        self._exec(f"ROLLBACK TO SAVEPOINT {name}")
        self._defer(f"RELEASE SAVEPOINT {name}", ())

    @staticmethod
    def _backoff(attempt: int) -> None:
        time.sleep(min(0.2, 0.002 * attempt) * random.random())

    def _outage(self, exc: Exception) -> Exception:
        if self._connection_lost(exc):
            self._reset_connection()
            log.warning("database unavailable", extra={"error": str(exc)})
            return unavailable()
        return exc

    def read(self, fn: Callable[[], T]) -> T:
        """Runs fn outside a write transaction, reconnecting once after a dropped connection."""
        observer = self.observer
        return self._read(fn) if observer is None else observer.read(self._read, fn)

    def _read(self, fn: Callable[[], T]) -> T:
        for attempt in (1, 2):
            try:
                return fn()
            except (pw.OperationalError, pw.InterfaceError) as exc:
                if not self._connection_lost(exc):
                    raise
                self._reset_connection()
                if attempt == 2:
                    log.warning("database unavailable", extra={"error": str(exc)})
                    raise unavailable() from exc
        raise AssertionError("unreachable")

    def snapshot_read(self, account_id: str, fn: Callable[[], T]) -> tuple[int, T]:
        """Runs fn in one read transaction that sees a single committed state, and returns the
        account's last event sequence in that state with fn's result: the result reflects
        exactly the events up to that sequence."""

        def run() -> tuple[int, T]:
            if self.dialect == "sqlite":
                with self.db.atomic():
                    return self.account_sequence(account_id), fn()
            with self.db.atomic(isolation_level="REPEATABLE READ"):
                bound = self.statement_timeout_ms and getattr(self._local, "pending", None) is None
                if bound:  # travels with the first statement
                    self._local.pending = [self._timeout_statement()]
                try:
                    return self.account_sequence(account_id), fn()
                finally:
                    if bound:
                        self._local.pending = None

        return self.read(run)

    def _timeout_statement(self) -> tuple[str, Sequence[Any]]:
        """Bounds each statement of the current transaction (a lock wait included): a stuck
        statement ends as an outage instead of holding a handler thread and a connection.
        Transaction-scoped (SET LOCAL), so it needs no session state and works through a
        transaction-pooling PgBouncer, and it costs no round trip: it travels with the
        transaction's first statement."""
        return ("SET LOCAL statement_timeout = %s", (self.statement_timeout_ms,))

    def use_standby(self, standby: Store, max_lag: float) -> StandbyMonitor:
        """Sends the reads that tolerate staleness to standby while it is within max_lag
        seconds of this primary; returns its monitor, to start and stop with the server."""
        self.standby = standby
        self.standby_monitor = StandbyMonitor(self, standby, max_lag)
        return self.standby_monitor

    def stale_read(self, account_id: str, fn: Callable[[Store], T]) -> tuple[int, T]:
        """As snapshot_read, for reads that may be up to the standby's bound behind: fn(store)
        runs on the standby while its monitor says it is within the bound (its answer is
        that of a committed state of the primary at most that old), else on this primary.
        A standby that fails is left for the primary until its monitor sees it again."""
        standby, monitor = self.standby, self.standby_monitor
        if standby is not None and monitor is not None and monitor.usable():
            try:
                result = standby.snapshot_read(account_id, lambda: fn(standby))
                self.stale_reads["standby"] += 1
                return result
            except (pw.PeeweeException, SeatError) as exc:
                monitor.failed()
                standby._reset_connection()
                log.warning("standby read failed: reading the primary", extra={"error": " ".join(str(exc).split())})
        self.stale_reads["primary"] += 1
        return self.snapshot_read(account_id, lambda: fn(self))

    def _transient(self, exc: Exception) -> bool:
        if fault_of(exc) is Fault.INPUT:
            return False  # the same values fail the same way again
        orig = driver_error(exc)
        if self.dialect == "sqlite":
            text = str(orig).lower()
            return "locked" in text or "busy" in text
        if getattr(orig, "pgcode", None) in PG_RETRYABLE:
            return True
        if self._connection_lost(exc):
            self._reset_connection()
            return True
        return False

    def _connection_lost(self, exc: Exception) -> bool:
        if self.dialect != "postgres":
            return False
        if getattr(driver_error(exc), "pgcode", None) and fault_of(exc) is not Fault.OUTAGE:
            return False  # the server answered about the statement: the connection works
        try:
            return self.db.is_closed() or not self.db.is_connection_usable()
        except Exception:
            return True

    def _reset_connection(self) -> None:
        try:
            self.db.close()
        except Exception:  # a broken connection may fail to close; drop it anyway
            self.db._state.reset()  # type: ignore[attr-defined]

    # ---- listeners (event notification inside one process) ---------------------------------

    def add_commit_listener(self, fn: Callable[[str], None]) -> None:
        """fn(account_id) runs after a transaction that appended events to that account commits."""
        self._listeners.append(fn)

    def _notify(self, account_id: str) -> None:
        for fn in self._listeners:
            fn(account_id)

    # ---- schema -------------------------------------------------------------------------

    def migrate(self, target: int | None = None) -> list[int]:
        """Applies the migrations not applied yet (up to ``target``, default all); returns their
        versions. Safe to run from several processes at once: on PostgreSQL they take turns on
        an advisory lock; on SQLite each migration re-checks, inside its IMMEDIATE transaction,
        whether another process applied it first."""
        if self.dialect == "postgres":
            self._take_migration_lock()
        timeout, self.statement_timeout_ms = self.statement_timeout_ms, 0  # a migration may take long
        try:
            if self.schema:
                self.db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            return self.write(lambda: self._migrate_step(None)) + self._apply_migrations(target)
        finally:
            self.statement_timeout_ms = timeout
            if self.dialect == "postgres":
                self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (PG_ADVISORY_MIGRATION_LOCK,))

    def _take_migration_lock(self) -> None:
        """Takes the migration lock, waiting for another process that holds it. It is tried,
        not waited on in the database: a session that waits on a lock keeps its statement's
        transaction open, and CREATE INDEX CONCURRENTLY in the holder waits for every open
        transaction to end, so two replicas starting together would deadlock."""
        waited = 0.0
        while not self.db.execute_sql("SELECT pg_try_advisory_lock(%s)", (PG_ADVISORY_MIGRATION_LOCK,)).fetchone()[0]:
            if waited == 0.0:
                log.info("waiting for another process's migrations")
            pause = min(0.2, 0.01 + waited / 10)
            time.sleep(pause)
            waited += pause

    def _apply_migrations(self, target: int | None) -> list[int]:
        applied: list[int] = []
        done = self._applied_versions()
        for migration in MIGRATIONS:
            if target is not None and migration.version > target:
                break
            if self.dialect == "postgres" and migration.version not in done:
                for name, statement in migration.postgres_indexes:
                    self._build_index(name, statement)
            applied += self.write(functools.partial(self._migrate_step, migration))
            if self.dialect == "postgres":
                for statement in migration.postgres_after:
                    self.db.execute_sql(statement)
        return applied

    def _applied_versions(self) -> set[int]:
        M = self.m.SchemaMigration
        return {row.version for row in M.select(M.version)}

    def _build_index(self, name: str, statement: str) -> None:
        """Builds an index CONCURRENTLY, outside a transaction: the table takes writes all the
        while. A build that failed (or whose process died) left an invalid index of that name,
        which IF NOT EXISTS would keep: it is dropped and built again."""
        invalid = self.db.execute_sql(
            "SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid) AND NOT i.indisvalid",
            (name,),
        ).fetchone()
        if invalid:
            log.warning("dropping an index a failed build left", extra={"index": name})
            self.db.execute_sql(f'DROP INDEX CONCURRENTLY IF EXISTS "{name}"')
        self.db.execute_sql(statement)

    def _migrate_step(self, migration: Migration | None) -> list[int]:
        """In a write transaction: makes the bookkeeping table (None), or applies one migration
        unless it is already applied."""
        if migration is None:
            self.db.execute_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)"
            )
            return []
        M = self.m.SchemaMigration
        if M.select(M.version).where(M.version == migration.version).exists():
            return []
        blob = "BLOB" if self.dialect == "sqlite" else "BYTEA"
        for statement in migration.statements_for(self.dialect):  # the shared ones, then this dialect's
            self.db.execute_sql(statement.replace("{blob}", blob))
        M.insert(version=migration.version, name=migration.name, applied_at=to_micros(datetime.now(UTC))).execute()
        log.info("migration applied", extra={"version": migration.version, "migration": migration.name})
        return [migration.version]

    def schema_version(self) -> int:
        try:
            row = self.m.SchemaMigration.select(pw.fn.MAX(self.m.SchemaMigration.version)).scalar()
        except (pw.OperationalError, pw.ProgrammingError):
            return 0
        return int(row or 0)

    def drop_schema(self) -> None:
        """Drops the PostgreSQL schema this store was opened on (test databases only)."""
        if self.dialect == "postgres" and self.schema:
            self.db.execute_sql(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')

    def close(self) -> None:
        if not self.db.is_closed():
            self.db.close()

    # ---- accounts -----------------------------------------------------------------------

    def insert_account(self, a: Account) -> None:
        self._defer(
            self.sql.insert_account,
            (
                a.account_id,
                a.display_name,
                a.owner_user_id,
                a.currency_code,
                a.term_months,
                to_micros(a.term_anchor),
                to_micros(a.term_start),
                to_micros(a.renewal_time),
                a.last_sequence,
                to_micros(a.create_time),
            ),
        )

    def get_account(self, account_id: str, *, lock: bool = False) -> Account | None:
        """Reads an account; with lock, holds its row until the transaction ends (the
        per-account write lock on PostgreSQL; SQLite's IMMEDIATE transaction already is one)."""
        rows = self._rows(self.sql.lock_account if lock else self.sql.get_account, (account_id,))
        if not rows:
            return None
        r = rows[0]
        return Account(
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            from_micros(r[5]),
            from_micros(r[6]),
            from_micros(r[7]),
            r[8],
            from_micros(r[9]),
        )

    def account_sequence(self, account_id: str) -> int:
        """The account's last event sequence: its version, since every change appends an event
        (I4). 0 when the account does not exist."""
        rows = self._rows(self.sql.account_sequence, (account_id,))
        return int(rows[0][0]) if rows else 0

    def save_account_term(self, a: Account) -> None:
        self._defer(self.sql.save_account_term, (to_micros(a.term_start), to_micros(a.renewal_time), a.account_id))

    def due_accounts(self, now: datetime, limit: int) -> list[str]:
        return [r[0] for r in self._rows(self.sql.due_accounts, (to_micros(now), limit))]

    # ---- pools --------------------------------------------------------------------------

    def load_pools(self, account_id: str) -> dict[tuple[Hub, Tier], Pool]:
        pools = {}
        for hub, tier, included, purchased, assigned, pending, version, idle_days, waiting, auto in self._rows(
            self.sql.load_pools, (account_id,)
        ):
            pool = Pool(
                Hub(hub), Tier(tier), included, purchased, assigned, pending, version, idle_days, waiting, bool(auto)
            )
            pools[(pool.hub, pool.tier)] = pool
        return pools

    def save_pools(self, account_id: str, pools: Iterable[Pool]) -> None:
        """Inserts new pools and updates changed ones. The table's CHECKs refuse any row
        that breaks I1 or I2, whatever the caller computed."""
        for pool in pools:
            if pool.new or pool.dirty:
                self._defer(
                    self.sql.insert_pool if pool.new else self.sql.update_pool,
                    (
                        pool.included,
                        pool.purchased,
                        pool.assigned,
                        pool.pending_removal,
                        pool.version,
                        pool.idle_reclaim_days,
                        pool.waiting_requests,
                        pool.auto_approve_requests,
                        account_id,
                        int(pool.hub),
                        int(pool.tier),
                    ),
                )
            pool.new = pool.dirty = False

    def delete_pool(self, account_id: str, hub: Hub, tier: Tier) -> None:
        self._defer(self.sql.delete_pool, (account_id, int(hub), int(tier)))

    # ---- users --------------------------------------------------------------------------

    @staticmethod
    def _user(r: Sequence[Any], seats: tuple[SeatRef, ...] = ()) -> User:
        return User(
            r[0],
            r[1],
            r[2],
            r[3],
            Permissions(bool(r[4]), bool(r[5]), bool(r[6])),
            r[7],
            from_micros(r[8]),
            from_micros(r[9]),
            seats,
        )

    def get_user(self, account_id: str, user_id: str, *, with_seats: bool = False) -> User | None:
        rows = self._rows(self.sql.get_user, (account_id, user_id))
        if not rows:
            return None
        seats = self.seats_of(account_id, [user_id]).get(user_id, ()) if with_seats else ()
        return self._user(rows[0], seats)

    def get_users(self, account_id: str, user_ids: Sequence[str]) -> dict[str, User]:
        """Several users (without seats) in one statement; unknown ids are absent."""
        if not user_ids:
            return {}
        sql = self.sql.shaped(
            f"SELECT {USER_COLUMNS} FROM users WHERE account_id = ? AND user_id IN (@ids)", len(user_ids)
        )
        return {r[0]: self._user(r) for r in self._rows(sql, (account_id, *user_ids))}

    def seats_of(self, account_id: str, user_ids: list[str]) -> dict[str, tuple[SeatRef, ...]]:
        """The seats of several users in one query (no query per user)."""
        out: dict[str, list[SeatRef]] = {}
        for user_id, hub, tier, _ in self._assignment_rows(account_id, user_ids):
            out.setdefault(user_id, []).append(SeatRef(Hub(hub), Tier(tier)))
        return {k: tuple(sorted(v, key=lambda s: s.hub)) for k, v in out.items()}

    def email_owner(self, account_id: str, email_key: str) -> str | None:
        rows = self._rows(self.sql.email_owner, (account_id, email_key))
        return rows[0][0] if rows else None

    def insert_user(self, u: User, email_key: str) -> None:
        p = u.permissions
        self._defer(
            self.sql.insert_user,
            (
                u.user_id,
                u.account_id,
                u.email,
                u.display_name,
                p.super_admin,
                p.edit_billing,
                p.account_access,
                u.version,
                to_micros(u.create_time),
                to_micros(u.update_time),
                email_key,
            ),
        )

    def update_user(self, u: User, email_key: str, expected_version: int) -> bool:
        """Writes u if the stored version is still expected_version; False when it moved on."""
        p = u.permissions
        cursor = self._exec(
            self.sql.update_user,
            (
                u.email,
                email_key,
                u.display_name,
                p.super_admin,
                p.edit_billing,
                p.account_access,
                u.version,
                to_micros(u.update_time),
                u.account_id,
                u.user_id,
                expected_version,
            ),
        )
        return bool(cursor.rowcount)

    def delete_user(self, account_id: str, user_id: str) -> bool:
        return bool(self._exec(self.sql.delete_user, (account_id, user_id)).rowcount)

    def list_users(self, account_id: str, after: str | None, limit: int, hub: Hub | None) -> list[User]:
        where, params = ["account_id = ?"], [account_id]
        if after:
            where.append("user_id > ?")
            params.append(after)
        if hub is not None:
            where.append(
                "EXISTS (SELECT 1 FROM seat_assignments s WHERE s.account_id = users.account_id "
                "AND s.user_id = users.user_id AND s.hub = ?)"
            )
            params.append(int(hub))  # type: ignore[arg-type]
        sql = self.sql.shaped(
            f"SELECT {USER_COLUMNS} FROM users WHERE {' AND '.join(where)} ORDER BY user_id LIMIT ?", 0
        )
        rows = self._rows(sql, (*params, limit))
        seats = self.seats_of(account_id, [r[0] for r in rows])
        return [self._user(r, seats.get(r[0], ())) for r in rows]

    # ---- assignments --------------------------------------------------------------------

    def _assignment_rows(self, account_id: str, user_ids: Sequence[str]) -> list[Any]:
        if not user_ids:
            return []
        sql = self.sql.shaped(
            "SELECT user_id, hub, tier, assign_time FROM seat_assignments WHERE account_id = ? AND user_id IN (@ids)",
            len(user_ids),
        )
        return self._rows(sql, (account_id, *user_ids))

    def assignments_for(self, account_id: str, user_ids: list[str]) -> dict[tuple[str, Hub], Assignment]:
        return {
            (u, Hub(h)): Assignment(u, Hub(h), Tier(t), from_micros(at))
            for u, h, t, at in self._assignment_rows(account_id, user_ids)
        }

    def insert_assignment(self, account_id: str, a: Assignment) -> None:
        self._defer(
            self.sql.insert_assignment, (account_id, a.user_id, int(a.hub), int(a.tier), to_micros(a.assign_time))
        )

    def move_assignment(self, account_id: str, a: Assignment) -> None:
        self._defer(
            self.sql.move_assignment, (int(a.tier), to_micros(a.assign_time), account_id, a.user_id, int(a.hub))
        )

    def delete_assignment(self, account_id: str, user_id: str, hub: Hub) -> None:
        self._defer(self.sql.delete_assignment, (account_id, user_id, int(hub)))

    def holders(self, account_id: str, hub: Hub, tier: Tier) -> list[str]:
        return [r[0] for r in self._rows(self.sql.holders, (account_id, int(hub), int(tier)))]

    def list_assignments(
        self,
        account_id: str,
        after: tuple[str, int] | None,
        limit: int,
        hub: Hub | None,
        tier: Tier | None,
        idle_before: datetime | None = None,
    ) -> list[Assignment]:
        where, params = ["account_id = ?"], [account_id]
        if idle_before is not None:
            where.append(f"{LAST_USE} < ?")
            params.append(to_micros(idle_before))  # type: ignore[arg-type]
        if hub is not None:
            where.append("hub = ?")
            params.append(int(hub))  # type: ignore[arg-type]
        if tier is not None:
            where.append("tier = ?")
            params.append(int(tier))  # type: ignore[arg-type]
        if after:
            where.append("(user_id > ? OR (user_id = ? AND hub > ?))")
            params += [after[0], after[0], after[1]]  # type: ignore[list-item]
        sql = self.sql.shaped(
            "SELECT user_id, hub, tier, assign_time, last_activity_time FROM seat_assignments "
            f"WHERE {' AND '.join(where)} ORDER BY user_id, hub LIMIT ?",
            0,
        )
        return [self._assignment(r) for r in self._rows(sql, (*params, limit))]

    @staticmethod
    def _assignment(r: Sequence[Any]) -> Assignment:
        return Assignment(
            r[0], Hub(r[1]), Tier(r[2]), from_micros(r[3]), from_micros(r[4]) if r[4] is not None else None
        )

    def record_activity(self, account_id: str, reports: Sequence[tuple[str, Hub, int]]) -> int:
        """Moves each reported seat's last activity forward to its time (microseconds since the
        epoch; never back, never before the seat was given); returns how many seats moved. One
        statement per call."""
        if not reports:
            return 0
        if self.dialect == "postgres":  # one UPDATE joined to three arrays: one statement text, three parameters
            users, hubs, times = zip(*reports, strict=True)
            cursor = self._exec(
                self.sql.record_activity_arrays, (list(users), [int(h) for h in hubs], list(times), account_id)
            )
            return int(cursor.rowcount)
        rows = [(t, account_id, u, int(h), t, t) for u, h, t in reports]
        try:
            with EXCEPTION_WRAPPER:
                cursor = self.db.cursor()
                cursor.executemany(self.sql.record_activity, rows)
        except (OverflowError, ValueError) as exc:
            raise self._unbound(exc) from exc
        return int(cursor.rowcount)

    def idle_seats(self, account_id: str, hub: Hub, tier: Tier, idle_before: datetime, limit: int) -> list[Assignment]:
        """A pool's seats last used (see last_use) at or before idle_before."""
        rows = self._rows(self.sql.idle_seats, (account_id, int(hub), int(tier), to_micros(idle_before), limit))
        return [self._assignment(r) for r in rows]

    def delete_idle_assignment(self, account_id: str, user_id: str, hub: Hub, idle_before: datetime) -> bool:
        """Takes a seat if it is still idle since idle_before; False when it was used meanwhile."""
        cursor = self._exec(self.sql.delete_idle_assignment, (account_id, user_id, int(hub), to_micros(idle_before)))
        return bool(cursor.rowcount)

    def reclaim_candidates(self, now: datetime, limit: int) -> list[str]:
        """Accounts with a seat idle past its pool's policy."""
        return [r[0] for r in self._rows(self.sql.reclaim_candidates, (to_micros(now), limit))]

    # ---- events -------------------------------------------------------------------------

    def append_events(self, account: Account, events: list[Event]) -> None:
        """Appends events after the account's last sequence and moves the counter on, in the
        caller's transaction (I4). The account row must be locked by this transaction."""
        if not events:
            return
        first = account.last_sequence + 1
        self._many(
            self.sql.insert_event,
            [
                (
                    account.account_id,
                    first + i,
                    int(e.type),
                    e.actor,
                    to_micros(e.time),
                    e.request_id,
                    e.user_id,
                    e.hub,
                    e.tier,
                    e.previous_tier,
                    e.quantity,
                    e.before.included,
                    e.before.purchased,
                    e.before.assigned,
                    e.before.pending_removal,
                    e.after.included,
                    e.after.purchased,
                    e.after.assigned,
                    e.after.pending_removal,
                    e.seat_request_id,
                    e.invoice_id,
                )
                for i, e in enumerate(events)
            ],
        )
        last = first + len(events) - 1
        if self.outbox:
            self._many(self.sql.insert_outbox, [(account.account_id, first + i) for i in range(len(events))])
        if self.dialect == "postgres":  # delivered at commit, to the listeners of every process
            self._defer(self.sql.notify, (self.notify_channel, account.account_id))
        moved = self._exec(self.sql.move_sequence, (last, account.account_id, first - 1)).rowcount
        if moved != 1:  # the row moved under us: another writer got in; run the whole call again
            raise _Retry
        account.last_sequence = last
        account_id = account.account_id
        self.after_commit(lambda: self._notify(account_id))
        if self.observer is not None:
            self.after_commit(functools.partial(self.observer.events, list(events)))

    def list_events(self, account_id: str, after: int, limit: int) -> list[Event]:
        return [self._event(r) for r in self._rows(self.sql.list_events, (account_id, after, limit))]

    @staticmethod
    def _event(r: Sequence[Any]) -> Event:
        return Event(
            type=EventType(r[1]),
            actor=r[2],
            time=from_micros(r[3]),
            request_id=r[4],
            user_id=r[5],
            hub=r[6],
            tier=r[7],
            previous_tier=r[8],
            quantity=r[9],
            before=PoolCounts(r[10], r[11], r[12], r[13]),
            after=PoolCounts(r[14], r[15], r[16], r[17]),
            sequence=r[0],
            seat_request_id=r[18],
            invoice_id=r[19],
        )

    # ---- seat requests ----------------------------------------------------------------

    def next_request_number(self, account_id: str) -> int:
        """The number of the account's next request; the account's lock makes it unique."""
        return int(self._rows(self.sql.next_request_number, (account_id,))[0][0])

    def insert_seat_request(self, account_id: str, r: SeatRequest) -> None:
        self._defer(
            self.sql.insert_seat_request,
            (
                account_id,
                r.seat_request_id,
                r.number,
                r.user_id,
                int(r.hub),
                int(r.tier),
                int(r.state),
                to_micros(r.create_time),
                to_micros(r.update_time),
                r.requested_by,
                r.decided_by,
                r.reason,
            ),
        )

    @staticmethod
    def _seat_request(r: Sequence[Any]) -> SeatRequest:
        return SeatRequest(
            r[0],
            r[1],
            r[2],
            Hub(r[3]),
            Tier(r[4]),
            RequestState(r[5]),
            from_micros(r[6]),
            from_micros(r[7]),
            r[8],
            r[9],
            r[10],
        )

    def get_seat_request(self, account_id: str, seat_request_id: str) -> SeatRequest | None:
        rows = self._rows(self.sql.get_seat_request, (account_id, seat_request_id))
        return self._seat_request(rows[0]) if rows else None

    def open_seat_requests(self, account_id: str, user_id: str) -> list[SeatRequest]:
        """A user's pending and waiting requests, at most one per hub."""
        return [self._seat_request(r) for r in self._rows(self.sql.open_seat_requests, (account_id, user_id))]

    def waiting_seat_requests(self, account_id: str, hub: Hub, tier: Tier, limit: int) -> list[SeatRequest]:
        """A pool's waiting list, oldest first."""
        rows = self._rows(self.sql.waiting_seat_requests, (account_id, int(hub), int(tier), limit))
        return [self._seat_request(r) for r in rows]

    def close_seat_request(
        self, account_id: str, seat_request_id: str, state: RequestState, when: datetime, decided_by: str
    ) -> bool:
        """Moves an open request to state; False when it was no longer open."""
        cursor = self._exec(
            self.sql.close_seat_request, (int(state), to_micros(when), decided_by, account_id, seat_request_id)
        )
        return bool(cursor.rowcount)

    def list_seat_requests(
        self,
        account_id: str,
        after: int,
        limit: int,
        state: RequestState | None,
        hub: Hub | None,
        user_id: str | None,
    ) -> list[SeatRequest]:
        where, params = ["account_id = ?", "number > ?"], [account_id, after]
        if state is not None:
            where.append("state = ?")
            params.append(int(state))
        if hub is not None:
            where.append("hub = ?")
            params.append(int(hub))
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        sql = self.sql.shaped(
            f"SELECT {SEAT_REQUEST_COLUMNS} FROM seat_requests WHERE {' AND '.join(where)} ORDER BY number LIMIT ?"
        )
        return [self._seat_request(r) for r in self._rows(sql, (*params, limit))]

    # ---- the outbox (events for a message bus) -------------------------------------------

    def outbox_batch(self, limit: int, after_account: str = "", per_account: int = 50) -> list[tuple[str, Event]]:
        """Up to limit events the relay has yet to publish, with their accounts: for each
        account its oldest ones (per_account at most), in sequence order, accounts after
        after_account first, then from the start."""
        rows = self._rows(self.sql.outbox_batch, (per_account, after_account, limit))
        return [(r[0], self._event(r[1:])) for r in rows]

    def outbox_done(self, account_id: str, through: int) -> None:
        """Forgets the account's outbox rows up to sequence through: the bus has them."""
        self._exec(self.sql.outbox_done, (account_id, through))

    def outbox_backlog(self) -> tuple[int, datetime | None]:
        """How many events wait in the outbox, and the time of the oldest of them."""
        count, oldest = self._rows(self.sql.outbox_size)[0]
        return int(count), from_micros(oldest) if oldest is not None else None

    # ---- charges ------------------------------------------------------------------------

    def insert_charges(self, account_id: str, charges: list[Charge]) -> None:
        if not charges:
            return
        self._many(
            self.sql.insert_charge,
            [
                (
                    account_id,
                    c.charge_id,
                    int(c.kind),
                    int(c.hub),
                    int(c.tier),
                    c.quantity,
                    c.unit_price_minor,
                    c.amount_minor,
                    c.currency_code,
                    to_micros(c.period_start),
                    to_micros(c.period_end),
                    to_micros(c.charge_time),
                    c.description,
                )
                for c in charges
            ],
        )

    @staticmethod
    def _charge(r: Sequence[Any]) -> Charge:
        return Charge(
            r[0],
            ChargeKind(r[1]),
            Hub(r[2]),
            Tier(r[3]),
            r[4],
            r[5],
            r[6],
            r[7],
            from_micros(r[8]),
            from_micros(r[9]),
            from_micros(r[10]),
            r[11],
        )

    def charges_since(self, account_id: str, period_start: datetime) -> list[Charge]:
        return [self._charge(r) for r in self._rows(self.sql.charges_since, (account_id, to_micros(period_start)))]

    # ---- invoices -----------------------------------------------------------------------

    def issue_invoice(
        self,
        account_id: str,
        invoice_id: str,
        period_start: datetime,
        period_end: datetime,
        now: datetime,
        currency_code: str,
    ) -> Invoice:
        """Bills every charge not yet billed whose term began before period_end on a new invoice,
        numbered after the account's last; inside the caller's write, which holds the account."""
        number = int(self._rows(self.sql.next_invoice_number, (account_id,))[0][0])
        self._exec(self.sql.bill_charges, (invoice_id, account_id, to_micros(period_end)))
        count, total = self._rows(self.sql.invoice_sum, (account_id, invoice_id))[0]
        invoice = Invoice(invoice_id, number, period_start, period_end, now, currency_code, int(total), int(count))
        self._defer(
            self.sql.insert_invoice,
            (
                account_id,
                invoice_id,
                number,
                to_micros(period_start),
                to_micros(period_end),
                to_micros(now),
                currency_code,
                invoice.total_minor,
                invoice.line_count,
            ),
        )
        return invoice

    @staticmethod
    def _invoice(r: Sequence[Any]) -> Invoice:
        return Invoice(
            r[0], int(r[1]), from_micros(r[2]), from_micros(r[3]), from_micros(r[4]), r[5], int(r[6]), int(r[7])
        )

    def get_invoice(self, account_id: str, invoice_id: str) -> Invoice | None:
        """An invoice with its lines (the charges it bills, oldest first)."""
        rows = self._rows(self.sql.get_invoice, (account_id, invoice_id))
        if not rows:
            return None
        lines = tuple(self._charge(r) for r in self._rows(self.sql.invoice_lines, (account_id, invoice_id)))
        return replace(self._invoice(rows[0]), lines=lines)

    def list_invoices(self, account_id: str, after: int, limit: int) -> list[Invoice]:
        """Invoices after number `after`, by number, without their lines."""
        return [self._invoice(r) for r in self._rows(self.sql.list_invoices, (account_id, after, limit))]

    # ---- request records (I5) -----------------------------------------------------------

    def find_request(self, scope: str, request_id: str, not_before: datetime) -> RequestRecord | None:
        rows = self._rows(self.sql.find_request, (scope, request_id, to_micros(not_before)))
        return RequestRecord(rows[0][0], bytes(rows[0][1]), rows[0][2]) if rows else None

    def save_request(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        response: bytes,
        now: datetime,
        not_before: datetime,
        *,
        refusal: str | None = None,
    ) -> None:
        """Records a first result (a response, or a refusal), replacing an expired record of
        the same id. Losing a race to a twin call rolls this one back and runs it again, so
        that it finds and returns the twin's result instead of making a second effect."""
        saved = self._exec(
            self.sql.save_request,
            (scope, request_id, fingerprint, response, refusal, to_micros(now), to_micros(not_before)),
        ).rowcount
        if saved != 1:
            raise _Retry

    def purge_requests(self, before: datetime) -> int:
        return int(self._exec(self.sql.purge_requests, (to_micros(before),)).rowcount)
