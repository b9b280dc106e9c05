"""The store: Peewee over SQLite or PostgreSQL, the only place that knows SQL.

Writes run in `Store.write`, one transaction per call: `BEGIN IMMEDIATE` on SQLite, and on
PostgreSQL a row lock on the account (`SELECT ... FOR UPDATE`) taken by `lock_account`, so
the check and the write of every rule happen under one lock. Transient errors (a busy
SQLite file, a serialization failure or deadlock, a dropped connection, a lost race on a
request id) are retried here, so callers never see them.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import peewee as pw

from ..domain.errors import unavailable
from ..domain.model import (
    Account,
    Assignment,
    Charge,
    ChargeKind,
    Event,
    EventType,
    Hub,
    Permissions,
    Pool,
    PoolCounts,
    SeatRef,
    Tier,
    User,
)
from .migrations import MIGRATIONS, Migration
from .models import build_models

T = TypeVar("T")
log = logging.getLogger("seats.store")

MAX_ATTEMPTS = 30
PG_RETRYABLE = {"40001", "40P01", "55P03"}  # serialization failure, deadlock, lock not available
PG_ADVISORY_MIGRATION_LOCK = 0x5EA75


class _Retry(Exception):
    """Raised inside a transaction to roll it back and run it again."""


class _DryRun(Exception):
    """Rolls back a validate-only transaction after it ran to the end."""


def to_micros(t: datetime) -> int:
    return int(t.timestamp()) * 1_000_000 + t.microsecond


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def open_store(url: str) -> Store:
    """Opens the database a URL names: ``sqlite:///relative.db``, ``sqlite:////abs.db`` or
    ``postgresql://user:password@host:port/dbname?schema=name``."""
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)
        if not path or path == ":memory:":
            raise ValueError("SQLite needs a file: an in-memory database is one per connection")
        db: pw.Database = pw.SqliteDatabase(
            path,
            pragmas={
                "busy_timeout": 10_000,  # first: switching to WAL may wait for another process
                "journal_mode": "wal",
                "foreign_keys": 1,
                "synchronous": "normal",
            },
            check_same_thread=False,
        )
        return Store(db, dialect="sqlite", schema=None)
    if parsed.scheme in ("postgresql", "postgres"):
        query = parse_qs(parsed.query)
        schema = query.get("schema", [None])[0]
        kwargs: dict[str, Any] = {
            "user": unquote(parsed.username) if parsed.username else None,
            "password": unquote(parsed.password) if parsed.password else None,
            "host": parsed.hostname or None,
            "port": parsed.port or None,
            "connect_timeout": int(query.get("connect_timeout", ["5"])[0]),
            "application_name": "seats",
        }
        if schema:
            if not schema.replace("_", "").isalnum():
                raise ValueError(f"bad schema name {schema!r}")
            kwargs["options"] = f"-c search_path={schema}"
        db = pw.PostgresqlDatabase(
            parsed.path.lstrip("/") or "postgres", **{k: v for k, v in kwargs.items() if v is not None}
        )
        return Store(db, dialect="postgres", schema=schema)
    raise ValueError(f"unsupported database URL {url!r}: use sqlite:/// or postgresql://")


class Store:
    def __init__(self, db: pw.Database, *, dialect: str, schema: str | None) -> None:
        self.db = db
        self.dialect = dialect
        self.schema = schema
        self.m = build_models(db)
        self._local = threading.local()
        self._listeners: list[Callable[[str], None]] = []

    # ---- transactions -------------------------------------------------------------------

    def write(self, fn: Callable[[], T], *, dry_run: bool = False) -> T:
        """Runs fn in one write transaction, retrying transient failures. Nested calls join
        the outer transaction. With dry_run the transaction is rolled back at the end."""
        if self.db.in_transaction():
            return fn()
        attempt = 0
        while True:
            attempt += 1
            self._local.touched = set()
            result: T
            try:
                try:
                    lock = "IMMEDIATE" if self.dialect == "sqlite" else None
                    with self.db.atomic(lock) if lock else self.db.atomic():
                        result = fn()
                        if dry_run:
                            raise _DryRun
                except _DryRun:
                    return result
            except _Retry:
                pass
            except (pw.OperationalError, pw.InterfaceError, pw.InternalError) as exc:
                if not self._transient(exc) or attempt >= MAX_ATTEMPTS:
                    if self._connection_lost(exc):
                        self._reset_connection()
                        log.warning("database unavailable", extra={"error": str(exc)})
                        raise unavailable() from exc
                    raise
            else:
                self._notify(self._local.touched)
                return result
            time.sleep(min(0.2, 0.002 * attempt) * random.random())

    def read(self, fn: Callable[[], T]) -> T:
        """Runs fn outside a write transaction, reconnecting once after a dropped connection."""
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
            with self.db.atomic() if self.dialect == "sqlite" else self.db.atomic(isolation_level="REPEATABLE READ"):
                A = self.m.Account
                rows = list(A.select(A.last_sequence).where(A.account_id == account_id).tuples())
                return (int(rows[0][0]) if rows else 0), fn()

        return self.read(run)

    def _transient(self, exc: Exception) -> bool:
        orig = exc.args[0] if exc.args else exc
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
        orig = exc.args[0] if exc.args else exc
        if getattr(orig, "pgcode", None):
            return False
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

    def _notify(self, touched: set[str]) -> None:
        for account_id in touched:
            for fn in self._listeners:
                fn(account_id)

    # ---- schema -------------------------------------------------------------------------

    def migrate(self, target: int | None = None) -> list[int]:
        """Applies the migrations not applied yet (up to ``target``, default all); returns their
        versions. Safe to run from several processes at once: on PostgreSQL they queue on an
        advisory lock; on SQLite each migration re-checks, inside its IMMEDIATE transaction,
        whether another process applied it first."""
        if self.dialect == "postgres":
            self.db.execute_sql("SELECT pg_advisory_lock(%s)", (PG_ADVISORY_MIGRATION_LOCK,))
        try:
            if self.schema:
                self.db.execute_sql(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            return self.write(lambda: self._migrate_step(None)) + self._apply_migrations(target)
        finally:
            if self.dialect == "postgres":
                self.db.execute_sql("SELECT pg_advisory_unlock(%s)", (PG_ADVISORY_MIGRATION_LOCK,))

    def _apply_migrations(self, target: int | None) -> list[int]:
        applied: list[int] = []
        for migration in MIGRATIONS:
            if target is not None and migration.version > target:
                break
            applied += self.write(functools.partial(self._migrate_step, migration))
        return applied

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
        for statement in migration.statements:
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
        self.m.Account.insert(
            account_id=a.account_id,
            display_name=a.display_name,
            owner_user_id=a.owner_user_id,
            currency_code=a.currency_code,
            term_months=a.term_months,
            term_anchor=to_micros(a.term_anchor),
            term_start=to_micros(a.term_start),
            renewal_time=to_micros(a.renewal_time),
            last_sequence=a.last_sequence,
            create_time=to_micros(a.create_time),
        ).execute()

    def get_account(self, account_id: str, *, lock: bool = False) -> Account | None:
        """Reads an account; with lock, holds its row until the transaction ends (the
        per-account write lock on PostgreSQL; SQLite's IMMEDIATE transaction already is one)."""
        A = self.m.Account
        q = A.select().where(A.account_id == account_id)
        if lock and self.dialect == "postgres":
            q = q.for_update()
        rows = list(q.dicts())
        if not rows:
            return None
        r = rows[0]
        return Account(
            r["account_id"],
            r["display_name"],
            r["owner_user_id"],
            r["currency_code"],
            r["term_months"],
            from_micros(r["term_anchor"]),
            from_micros(r["term_start"]),
            from_micros(r["renewal_time"]),
            r["last_sequence"],
            from_micros(r["create_time"]),
        )

    def save_account_term(self, a: Account) -> None:
        A = self.m.Account
        A.update(term_start=to_micros(a.term_start), renewal_time=to_micros(a.renewal_time)).where(
            A.account_id == a.account_id
        ).execute()

    def due_accounts(self, now: datetime, limit: int) -> list[str]:
        A = self.m.Account
        q = A.select(A.account_id).where(A.renewal_time <= to_micros(now)).order_by(A.renewal_time).limit(limit)
        return [r[0] for r in q.tuples()]

    # ---- pools --------------------------------------------------------------------------

    def load_pools(self, account_id: str) -> dict[tuple[Hub, Tier], Pool]:
        P = self.m.SeatPool
        pools = {}
        for r in P.select().where(P.account_id == account_id).order_by(P.hub, P.tier).dicts():
            pool = Pool(
                Hub(r["hub"]),
                Tier(r["tier"]),
                r["included"],
                r["purchased"],
                r["assigned"],
                r["pending_removal"],
                r["version"],
            )
            pools[(pool.hub, pool.tier)] = pool
        return pools

    def save_pools(self, account_id: str, pools: Iterable[Pool]) -> None:
        """Inserts new pools and updates changed ones. The table's CHECKs refuse any row
        that breaks I1 or I2, whatever the caller computed."""
        P = self.m.SeatPool
        for pool in pools:
            values = dict(
                included=pool.included,
                purchased=pool.purchased,
                assigned=pool.assigned,
                pending_removal=pool.pending_removal,
                version=pool.version,
            )
            if pool.new:
                P.insert(account_id=account_id, hub=int(pool.hub), tier=int(pool.tier), **values).execute()
            elif pool.dirty:
                P.update(**values).where(
                    (P.account_id == account_id) & (P.hub == int(pool.hub)) & (P.tier == int(pool.tier))
                ).execute()
            pool.new = pool.dirty = False

    def delete_pool(self, account_id: str, hub: Hub, tier: Tier) -> None:
        P = self.m.SeatPool
        P.delete().where((P.account_id == account_id) & (P.hub == int(hub)) & (P.tier == int(tier))).execute()

    # ---- users --------------------------------------------------------------------------

    def _user(self, r: dict[str, Any], seats: tuple[SeatRef, ...] = ()) -> User:
        return User(
            r["user_id"],
            r["account_id"],
            r["email"],
            r["display_name"],
            Permissions(bool(r["super_admin"]), bool(r["edit_billing"]), bool(r["account_access"])),
            r["version"],
            from_micros(r["create_time"]),
            from_micros(r["update_time"]),
            seats,
        )

    def get_user(self, account_id: str, user_id: str, *, with_seats: bool = False) -> User | None:
        U = self.m.User
        rows = list(U.select().where((U.account_id == account_id) & (U.user_id == user_id)).dicts())
        if not rows:
            return None
        seats = self.seats_of(account_id, [user_id]).get(user_id, ()) if with_seats else ()
        return self._user(rows[0], seats)

    def seats_of(self, account_id: str, user_ids: list[str]) -> dict[str, tuple[SeatRef, ...]]:
        """The seats of several users in one query (no query per user)."""
        if not user_ids:
            return {}
        S = self.m.SeatAssignment
        out: dict[str, list[SeatRef]] = {}
        q = (
            S.select(S.user_id, S.hub, S.tier)
            .where((S.account_id == account_id) & (S.user_id.in_(user_ids)))
            .order_by(S.user_id, S.hub)
        )
        for user_id, hub, tier in q.tuples():
            out.setdefault(user_id, []).append(SeatRef(Hub(hub), Tier(tier)))
        return {k: tuple(v) for k, v in out.items()}

    def existing_users(self, account_id: str, user_ids: list[str]) -> set[str]:
        if not user_ids:
            return set()
        U = self.m.User
        q = U.select(U.user_id).where((U.account_id == account_id) & U.user_id.in_(user_ids))
        return {r[0] for r in q.tuples()}

    def email_owner(self, account_id: str, email_key: str) -> str | None:
        U = self.m.User
        rows = list(U.select(U.user_id).where((U.account_id == account_id) & (U.email_key == email_key)).tuples())
        return rows[0][0] if rows else None

    def insert_user(self, u: User, email_key: str) -> None:
        self.m.User.insert(
            user_id=u.user_id,
            account_id=u.account_id,
            email=u.email,
            email_key=email_key,
            display_name=u.display_name,
            super_admin=u.permissions.super_admin,
            edit_billing=u.permissions.edit_billing,
            account_access=u.permissions.account_access,
            version=u.version,
            create_time=to_micros(u.create_time),
            update_time=to_micros(u.update_time),
        ).execute()

    def update_user(self, u: User, email_key: str, expected_version: int) -> bool:
        """Writes u if the stored version is still expected_version; False when it moved on."""
        U = self.m.User
        n = (
            U.update(
                email=u.email,
                email_key=email_key,
                display_name=u.display_name,
                super_admin=u.permissions.super_admin,
                edit_billing=u.permissions.edit_billing,
                account_access=u.permissions.account_access,
                version=u.version,
                update_time=to_micros(u.update_time),
            )
            .where((U.account_id == u.account_id) & (U.user_id == u.user_id) & (U.version == expected_version))
            .execute()
        )
        return bool(n)

    def delete_user(self, account_id: str, user_id: str) -> bool:
        U = self.m.User
        return bool(U.delete().where((U.account_id == account_id) & (U.user_id == user_id)).execute())

    def list_users(self, account_id: str, after: str | None, limit: int, hub: Hub | None) -> list[User]:
        U, S = self.m.User, self.m.SeatAssignment
        q = U.select().where(U.account_id == account_id)
        if after:
            q = q.where(U.user_id > after)
        if hub is not None:
            q = q.where(pw.fn.EXISTS(S.select(S.user_id).where((S.user_id == U.user_id) & (S.hub == int(hub)))))
        rows = list(q.order_by(U.user_id).limit(limit).dicts())
        seats = self.seats_of(account_id, [r["user_id"] for r in rows])
        return [self._user(r, seats.get(r["user_id"], ())) for r in rows]

    # ---- assignments --------------------------------------------------------------------

    def get_assignments(self, account_id: str, user_id: str) -> dict[Hub, Assignment]:
        S = self.m.SeatAssignment
        q = S.select(S.hub, S.tier, S.assign_time).where((S.account_id == account_id) & (S.user_id == user_id))
        return {Hub(h): Assignment(user_id, Hub(h), Tier(t), from_micros(at)) for h, t, at in q.tuples()}

    def assignments_for(self, account_id: str, user_ids: list[str]) -> dict[tuple[str, Hub], Assignment]:
        if not user_ids:
            return {}
        S = self.m.SeatAssignment
        q = S.select(S.user_id, S.hub, S.tier, S.assign_time).where(
            (S.account_id == account_id) & S.user_id.in_(user_ids)
        )
        return {(u, Hub(h)): Assignment(u, Hub(h), Tier(t), from_micros(at)) for u, h, t, at in q.tuples()}

    def tiers_of(self, account_id: str, hub: Hub, user_ids: list[str]) -> dict[str, Tier]:
        """The tier each of these users holds in a hub; users without a seat are absent."""
        S = self.m.SeatAssignment
        q = S.select(S.user_id, S.tier).where(
            (S.account_id == account_id) & (S.hub == int(hub)) & S.user_id.in_(user_ids)
        )
        return {u: Tier(t) for u, t in q.tuples()}

    def insert_assignment(self, account_id: str, a: Assignment) -> None:
        self.m.SeatAssignment.insert(
            account_id=account_id,
            user_id=a.user_id,
            hub=int(a.hub),
            tier=int(a.tier),
            assign_time=to_micros(a.assign_time),
        ).execute()

    def move_assignment(self, account_id: str, a: Assignment) -> None:
        S = self.m.SeatAssignment
        S.update(tier=int(a.tier), assign_time=to_micros(a.assign_time)).where(
            (S.account_id == account_id) & (S.user_id == a.user_id) & (S.hub == int(a.hub))
        ).execute()

    def delete_assignment(self, account_id: str, user_id: str, hub: Hub) -> None:
        S = self.m.SeatAssignment
        S.delete().where((S.account_id == account_id) & (S.user_id == user_id) & (S.hub == int(hub))).execute()

    def holders(self, account_id: str, hub: Hub, tier: Tier) -> list[str]:
        S = self.m.SeatAssignment
        q = (
            S.select(S.user_id)
            .where((S.account_id == account_id) & (S.hub == int(hub)) & (S.tier == int(tier)))
            .order_by(S.user_id)
        )
        return [r[0] for r in q.tuples()]

    def list_assignments(
        self, account_id: str, after: tuple[str, int] | None, limit: int, hub: Hub | None, tier: Tier | None
    ) -> list[Assignment]:
        S = self.m.SeatAssignment
        q = S.select(S.user_id, S.hub, S.tier, S.assign_time).where(S.account_id == account_id)
        if hub is not None:
            q = q.where(S.hub == int(hub))
        if tier is not None:
            q = q.where(S.tier == int(tier))
        if after:
            q = q.where((S.user_id > after[0]) | ((S.user_id == after[0]) & (S.hub > after[1])))
        q = q.order_by(S.user_id, S.hub).limit(limit)
        return [Assignment(u, Hub(h), Tier(t), from_micros(at)) for u, h, t, at in q.tuples()]

    # ---- events -------------------------------------------------------------------------

    def append_events(self, account: Account, events: list[Event]) -> list[Event]:
        """Appends events after the account's last sequence and moves the counter on, in the
        caller's transaction (I4). The account row must be locked by this transaction."""
        if not events:
            return []
        E, A = self.m.SeatEvent, self.m.Account
        first = account.last_sequence + 1
        rows = []
        numbered = []
        for i, e in enumerate(events):
            seq = first + i
            numbered.append(Event(**{**e.__dict__, "sequence": seq}))
            rows.append(
                dict(
                    account_id=account.account_id,
                    sequence=seq,
                    event_type=int(e.type),
                    actor=e.actor,
                    event_time=to_micros(e.time),
                    request_id=e.request_id,
                    user_id=e.user_id,
                    hub=e.hub,
                    tier=e.tier,
                    previous_tier=e.previous_tier,
                    quantity=e.quantity,
                    before_included=e.before.included,
                    before_purchased=e.before.purchased,
                    before_assigned=e.before.assigned,
                    before_pending=e.before.pending_removal,
                    after_included=e.after.included,
                    after_purchased=e.after.purchased,
                    after_assigned=e.after.assigned,
                    after_pending=e.after.pending_removal,
                )
            )
        for start in range(0, len(rows), 100):
            E.insert_many(rows[start : start + 100]).execute()
        account.last_sequence = first + len(events) - 1
        n = (
            A.update(last_sequence=account.last_sequence)
            .where((A.account_id == account.account_id) & (A.last_sequence == first - 1))
            .execute()
        )
        if n != 1:  # the row moved under us: another writer got in; run the whole call again
            raise _Retry
        self._local.touched.add(account.account_id)
        return numbered

    def list_events(self, account_id: str, after: int, limit: int) -> list[Event]:
        E = self.m.SeatEvent
        q = (
            E.select()
            .where((E.account_id == account_id) & (E.sequence > after))
            .order_by(E.sequence)
            .limit(limit)
            .dicts()
        )
        return [
            Event(
                type=EventType(r["event_type"]),
                actor=r["actor"],
                time=from_micros(r["event_time"]),
                request_id=r["request_id"],
                user_id=r["user_id"],
                hub=r["hub"],
                tier=r["tier"],
                previous_tier=r["previous_tier"],
                quantity=r["quantity"],
                before=PoolCounts(
                    r["before_included"], r["before_purchased"], r["before_assigned"], r["before_pending"]
                ),
                after=PoolCounts(r["after_included"], r["after_purchased"], r["after_assigned"], r["after_pending"]),
                sequence=r["sequence"],
            )
            for r in q
        ]

    # ---- charges ------------------------------------------------------------------------

    def insert_charges(self, account_id: str, charges: list[Charge]) -> None:
        if not charges:
            return
        self.m.Charge.insert_many(
            [
                dict(
                    charge_id=c.charge_id,
                    account_id=account_id,
                    kind=int(c.kind),
                    hub=int(c.hub),
                    tier=int(c.tier),
                    quantity=c.quantity,
                    unit_price_minor=c.unit_price_minor,
                    amount_minor=c.amount_minor,
                    currency_code=c.currency_code,
                    period_start=to_micros(c.period_start),
                    period_end=to_micros(c.period_end),
                    charge_time=to_micros(c.charge_time),
                    description=c.description,
                )
                for c in charges
            ]
        ).execute()

    def charges_since(self, account_id: str, period_start: datetime) -> list[Charge]:
        C = self.m.Charge
        q = (
            C.select()
            .where((C.account_id == account_id) & (C.period_start >= to_micros(period_start)))
            .order_by(C.charge_time, C.charge_id)
            .dicts()
        )
        return [
            Charge(
                r["charge_id"],
                ChargeKind(r["kind"]),
                Hub(r["hub"]),
                Tier(r["tier"]),
                r["quantity"],
                r["unit_price_minor"],
                r["amount_minor"],
                r["currency_code"],
                from_micros(r["period_start"]),
                from_micros(r["period_end"]),
                from_micros(r["charge_time"]),
                r["description"],
            )
            for r in q
        ]

    # ---- request records (I5) -----------------------------------------------------------

    def find_request(self, scope: str, request_id: str, not_before: datetime) -> tuple[str, bytes] | None:
        R = self.m.RequestRecord
        rows = list(
            R.select(R.fingerprint, R.response)
            .where((R.scope == scope) & (R.request_id == request_id) & (R.create_time >= to_micros(not_before)))
            .tuples()
        )
        return (rows[0][0], bytes(rows[0][1])) if rows else None

    def save_request(
        self, scope: str, request_id: str, fingerprint: str, response: bytes, now: datetime, not_before: datetime
    ) -> None:
        """Records a first result, replacing an expired record of the same id. Losing a race
        to a twin call rolls this one back and runs it again, so that it finds and returns
        the twin's result instead of making a second effect."""
        R = self.m.RequestRecord
        R.delete().where(
            (R.scope == scope) & (R.request_id == request_id) & (R.create_time < to_micros(not_before))
        ).execute()
        try:
            R.insert(
                scope=scope,
                request_id=request_id,
                fingerprint=fingerprint,
                response=response,
                create_time=to_micros(now),
            ).execute()
        except pw.IntegrityError as exc:
            raise _Retry from exc

    def purge_requests(self, before: datetime) -> int:
        R = self.m.RequestRecord
        return int(R.delete().where(R.create_time < to_micros(before)).execute())
