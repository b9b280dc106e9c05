"""The data set: accounts made through CreateAccount (and PurchaseSeats for seats beyond one
call's limit), then users and seat assignments written straight into the migrated schema in
one transaction that also sets each pool's assigned count to its assignment rows.

Seeded users and assignments have no events (the brief allows it): each account's
last_sequence stays the one its RPCs wrote, consistent with its events. Seat purchases go
through the RPCs, so charges and purchase events match the pools.
"""

from __future__ import annotations

import ipaddress
import random
import secrets
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import grpc
from seats.v1 import resources_pb2 as r
from seats.v1 import seat_service_pb2 as seat_pb
from seats.v1 import seat_service_pb2_grpc as seat_grpc

SALES, SERVICE = 1, 2  # seats.v1.Hub
STARTER, PROFESSIONAL = 2, 3  # seats.v1.Tier
INCLUDED = {(SALES, PROFESSIONAL): 2, (SERVICE, STARTER): 1}  # the default price book
MAX_SEATS_PER_CALL = 10_000  # service.domain.seats.MAX_QUANTITY
SAMPLE = 100  # ids kept per account for CheckSeats(100)
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


# ---- the database ----------------------------------------------------------------------------


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class Database:
    """The database the seat server under test uses, and a direct connection to it for seeding."""

    url: str
    store: str  # "sqlite" or "postgres"
    sqlite_path: str = ""
    pg: dict[str, Any] = field(default_factory=dict)
    schema: str = ""
    owned_dir: str = ""  # a temporary directory to remove at the end
    owned_schema: bool = False  # a schema this run created, to drop at the end

    @staticmethod
    def fresh_sqlite() -> Database:
        directory = tempfile.mkdtemp(prefix="seats-bench-")
        path = f"{directory}/bench.db"
        return Database(f"sqlite:///{path}", "sqlite", sqlite_path=path, owned_dir=directory)

    @staticmethod
    def fresh_postgres(base_url: str = DEFAULT_POSTGRES) -> Database:
        schema = f"bench_{secrets.token_hex(4)}"
        sep = "&" if "?" in base_url else "?"
        return Database.from_url(f"{base_url}{sep}schema={schema}")

    @staticmethod
    def from_url(url: str) -> Database:
        parsed = urlparse(url)
        if parsed.scheme == "sqlite":
            path = unquote(parsed.path[1:]) if parsed.path.startswith("/") else unquote(parsed.path)
            return Database(url, "sqlite", sqlite_path=path)
        if parsed.scheme in ("postgresql", "postgres"):
            host = parsed.hostname or "127.0.0.1"
            if not _is_loopback(host):
                raise ValueError(f"the bench only talks to loopback addresses, not {host}")
            schema = parse_qs(parsed.query).get("schema", [""])[0]
            if not schema or not schema.replace("_", "").isalnum():
                raise ValueError("a PostgreSQL URL for the bench needs ?schema=<name> (letters, digits, _)")
            pg = {
                "host": host,
                "port": parsed.port or 5432,
                "user": unquote(parsed.username) if parsed.username else "postgres",
                "dbname": parsed.path.lstrip("/") or "postgres",
                "options": f"-c search_path={schema}",
                "connect_timeout": 5,
            }
            if parsed.password:
                pg["password"] = unquote(parsed.password)
            return Database(url, "postgres", pg=pg, schema=schema)
        raise ValueError(f"unsupported database URL {url!r}")

    @property
    def label(self) -> str:
        return self.url.split("@")[-1]

    def claim_schema(self) -> None:
        """Before migrating: a PostgreSQL schema must not exist yet; this run then owns it."""
        if self.store != "postgres":
            return
        import psycopg2

        conn = psycopg2.connect(**{k: v for k, v in self.pg.items() if k != "options"})
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (self.schema,))
                if cur.fetchone():
                    raise ValueError(f"schema {self.schema} exists: the bench needs a schema of its own")
        finally:
            conn.close()
        self.owned_schema = True

    @contextmanager
    def connect(self) -> Iterator[tuple[Any, str]]:
        """A DB-API connection and its placeholder; commits at the end, rolls back on error."""
        if self.store == "sqlite":
            conn: Any = sqlite3.connect(self.sqlite_path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("BEGIN IMMEDIATE")
            mark = "?"
        else:
            import psycopg2

            conn = psycopg2.connect(**self.pg)
            mark = "%s"
        try:
            yield conn, mark
            if self.store == "sqlite":
                conn.execute("COMMIT")
            else:
                conn.commit()
        except BaseException:
            if self.store == "sqlite":
                conn.execute("ROLLBACK")
            else:
                conn.rollback()
            raise
        finally:
            conn.close()

    def cleanup(self) -> None:
        if self.owned_schema:
            import psycopg2

            conn = psycopg2.connect(**{k: v for k, v in self.pg.items() if k != "options"})
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
                conn.commit()
            finally:
                conn.close()
        if self.owned_dir:
            shutil.rmtree(self.owned_dir, ignore_errors=True)


# ---- the data set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSpec:
    accounts: int  # in all, the big one included
    big_users: int  # users of the big account
    small_users: int  # users of every other account
    sales_share: float = 0.6  # users holding a Sales Professional seat
    service_share: float = 0.25  # users holding a Service Starter seat
    spare_share: float = 0.05  # purchased seats nobody holds, per pool
    seed: int = 20240601

    @property
    def users(self) -> int:
        return self.big_users + (self.accounts - 1) * self.small_users


@dataclass(frozen=True)
class SeededAccount:
    account_id: str
    owner: str  # a super admin: the actor of every call
    users: int
    seated: str  # a user holding a Sales Professional seat
    sample: list[str]  # up to SAMPLE user ids spread over the account, in id order


@dataclass(frozen=True)
class DataSet:
    spec: DataSpec
    probe: SeededAccount  # the small account every read and AssignSeat uses
    big: SeededAccount
    purchase_accounts: list[SeededAccount]  # PurchaseSeats: one per round, the last for the warm-up
    users: int
    assignments: int
    seconds: float


def _user_id(rng: random.Random, ms: int) -> str:
    """The service's id shape (service.domain.seats.new_id): prefix, milliseconds, 12 hex digits."""
    return f"usr_{ms:011x}{rng.getrandbits(48):012x}"


def _seats_needed(spec: DataSpec, users: int) -> tuple[int, int]:
    return round(users * spec.sales_share), round(users * spec.service_share)


def _purchased(seated: int, included: int, spare: float) -> int:
    return max(0, seated - included) + max(1, round(seated * spare))


def _create_account(stub: seat_grpc.SeatServiceStub, name: str, spec: DataSpec, users: int) -> tuple[str, str]:
    sales, service = _seats_needed(spec, users)
    sales_bought = _purchased(sales, INCLUDED[(SALES, PROFESSIONAL)], spec.spare_share)
    service_bought = _purchased(service, INCLUDED[(SERVICE, STARTER)], spec.spare_share)
    request = seat_pb.CreateAccountRequest(
        display_name=name,
        owner_email=f"owner@{name}.test",
        term_months=12,
        subscriptions=[
            r.Subscription(
                hub=r.HUB_SALES, tier=r.TIER_PROFESSIONAL, purchased_seats=min(sales_bought, MAX_SEATS_PER_CALL)
            ),
            r.Subscription(
                hub=r.HUB_SERVICE, tier=r.TIER_STARTER, purchased_seats=min(service_bought, MAX_SEATS_PER_CALL)
            ),
        ],
    )
    account = stub.CreateAccount(request, timeout=30).account
    actor = (("x-seats-actor", account.owner_user_id),)
    for hub, tier, bought in (
        (r.HUB_SALES, r.TIER_PROFESSIONAL, sales_bought),
        (r.HUB_SERVICE, r.TIER_STARTER, service_bought),
    ):
        left = bought - min(bought, MAX_SEATS_PER_CALL)
        while left > 0:
            n = min(left, MAX_SEATS_PER_CALL)
            stub.PurchaseSeats(
                seat_pb.PurchaseSeatsRequest(account_id=account.account_id, hub=hub, tier=tier, quantity=n),
                metadata=actor,
                timeout=30,
            )
            left -= n
    return account.account_id, account.owner_user_id


def _spread(ids: Sequence[str], n: int) -> list[str]:
    """n ids evenly spread over the sorted ids (all of them when there are fewer)."""
    ordered = sorted(ids)
    if len(ordered) <= n:
        return ordered
    step = len(ordered) / n
    return [ordered[int(i * step)] for i in range(n)]


def seed(db: Database, target: str, spec: DataSpec, purchase_accounts: int) -> DataSet:
    """Creates the data set through the seat server at target and the database db."""
    if spec.accounts < purchase_accounts + 2:
        raise ValueError(f"need at least {purchase_accounts + 2} accounts")
    started = time.monotonic()
    rng = random.Random(spec.seed)
    sizes = [spec.big_users] + [spec.small_users] * (spec.accounts - 1)
    with grpc.insecure_channel(target) as channel:
        stub = seat_grpc.SeatServiceStub(channel)
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            made = list(pool.map(lambda i: _create_account(stub, f"bench{i:05d}", spec, sizes[i]), range(len(sizes))))

    now_us = time.time_ns() // 1000
    users_rows: list[tuple[Any, ...]] = []
    seat_rows: list[tuple[Any, ...]] = []
    accounts: list[SeededAccount] = []
    base_ms = time.time_ns() // 1_000_000 - 10 * 86_400_000  # ids as if made over the last days
    for index, ((account_id, owner), size) in enumerate(zip(made, sizes, strict=True)):
        name = f"bench{index:05d}"
        ids = [owner]
        for n in range(1, size):  # the owner is user number 0
            user_id = _user_id(rng, base_ms + n)
            ids.append(user_id)
            email = f"user{n}@{name}.test"
            users_rows.append((user_id, account_id, email, email, f"User {n}", False, False, False, 1, now_us, now_us))
        sales, service = _seats_needed(spec, size)
        seated_sales = rng.sample(ids, sales)
        for user_id in seated_sales:
            seat_rows.append((account_id, user_id, SALES, PROFESSIONAL, now_us))
        for user_id in rng.sample(ids, service):
            seat_rows.append((account_id, user_id, SERVICE, STARTER, now_us))
        sample = _spread(ids, SAMPLE)
        seated_set = set(seated_sales)
        in_sample = [u for u in sample if u in seated_set]
        seated = in_sample[len(in_sample) // 2] if in_sample else sorted(seated_sales)[len(seated_sales) // 2]
        accounts.append(SeededAccount(account_id, owner, size, seated, sample))

    _bulk_write(db, users_rows, seat_rows, [a for a, _ in made])
    return DataSet(
        spec=spec,
        probe=accounts[1],
        big=accounts[0],
        purchase_accounts=accounts[2 : 2 + purchase_accounts],
        users=len(users_rows) + len(made),
        assignments=len(seat_rows),
        seconds=time.monotonic() - started,
    )


USER_COLUMNS = (
    "user_id, account_id, email, email_key, display_name, super_admin, edit_billing, account_access, "
    "version, create_time, update_time"
)
SEAT_COLUMNS = "account_id, user_id, hub, tier, assign_time"
FIX_POOLS = """UPDATE seat_pools SET
    assigned = (SELECT COUNT(*) FROM seat_assignments s
                WHERE s.account_id = seat_pools.account_id AND s.hub = seat_pools.hub AND s.tier = seat_pools.tier),
    version = version + 1"""
CHECK_POOLS = """SELECT COUNT(*) FROM seat_pools p WHERE p.assigned <> (SELECT COUNT(*) FROM seat_assignments s
    WHERE s.account_id = p.account_id AND s.hub = p.hub AND s.tier = p.tier)"""


def _insert(conn: Any, store: str, mark: str, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
    if not rows:
        return
    if store == "postgres":
        from psycopg2.extras import execute_values

        with conn.cursor() as cur:
            execute_values(cur, f"INSERT INTO {table} ({columns}) VALUES %s", rows, page_size=5000)
    else:
        marks = ", ".join([mark] * len(rows[0]))
        conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)


def _bulk_write(
    db: Database, users: list[tuple[Any, ...]], seats: list[tuple[Any, ...]], account_ids: list[str]
) -> None:
    """Users, then assignments, then every pool's assigned count, in one transaction."""
    with db.connect() as (conn, mark):
        _insert(conn, db.store, mark, "users", USER_COLUMNS, users)
        _insert(conn, db.store, mark, "seat_assignments", SEAT_COLUMNS, seats)
        cur = conn.cursor()
        cur.execute(FIX_POOLS)
        cur.execute(CHECK_POOLS)
        wrong = cur.fetchone()[0]
        if wrong:
            raise RuntimeError(f"{wrong} pools do not count their assignments")
    if db.store == "postgres":
        # Autovacuum would analyze the new rows at some moment of the run; do it now, before measuring.
        with db.connect() as (conn, _), conn.cursor() as cur:
            for table in ("accounts", "seat_pools", "users", "seat_assignments", "seat_events", "charges"):
                cur.execute(f"ANALYZE {table}")
