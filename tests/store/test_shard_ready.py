"""A schema ready to shard by account (migration 5): read from the database's own catalog, every
primary key, unique key and foreign key of the service's tables leads with account_id, the column
a sharded PostgreSQL (Citus) distributes rows by, so that each key is checked, and each join
along a foreign key runs, on one shard. Before migration 5 it did not; migration 5 keeps the
data, and the rules the constraints back still hold after it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee as pw
import pytest

from service.domain.model import (
    Account,
    Assignment,
    Charge,
    ChargeKind,
    EventType,
    Hub,
    Permissions,
    SeatRef,
    Tier,
    User,
)
from service.store import Store, open_store
from service.store.store import to_micros
from tests.conftest import BACKENDS, database_url

SHARD_READY = 5
"""The migration that makes every key lead with account_id."""

NOT_ACCOUNT_DATA = {
    "schema_migrations": "the store's record of the applied migrations: one row per schema "
    "version, owned by no account (a reference table, copied to every node, in a sharded cluster)",
}
"""Tables the rule does not apply to, and why."""

DISTRIBUTION_COLUMNS = {
    "request_records": "scope",
}
"""Tables distributed by a column not named account_id, which their keys lead with instead.
request_records.scope is the account a call under a request id acts on, or "system" for the
calls that name no account yet (CreateAccount, see service/domain/requests.py): the account id
under another name. Renaming it would break the statements of the replicas of the previous
release that still run while a new one migrates at start, so it keeps its name."""

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Key:
    """One key of a table, its columns in key order; a foreign key also names its parent."""

    table: str
    kind: str  # "primary key", "unique" or "foreign key"
    columns: tuple[str, ...]
    parent: str = ""
    parent_columns: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()  # a foreign key's ON UPDATE, ON DELETE and deferral


# ---- the catalog ------------------------------------------------------------------------------


def _rows(store: Store, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return list(store.db.execute_sql(sql, params).fetchall())


def tables(store: Store) -> set[str]:
    """The tables of the store's schema."""
    if store.dialect == "sqlite":
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
    else:
        sql = (
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')"
        )
    return {r[0] for r in _rows(store, sql)}


def _sqlite_keys(store: Store, table: str) -> list[Key]:
    keys: list[Key] = []
    info = _rows(store, f'PRAGMA table_info("{table}")')  # cid, name, type, notnull, default, pk
    primary = tuple(name for _, name, *_rest, pk in sorted(info, key=lambda r: r[5]) if pk)
    if primary:
        keys.append(Key(table, "primary key", primary))
    for _, index, unique, origin, _partial in _rows(store, f'PRAGMA index_list("{table}")'):
        if unique and origin != "pk":  # the primary key's own index is read from table_info
            columns = tuple(r[2] or "<expression>" for r in sorted(_rows(store, f'PRAGMA index_info("{index}")')))
            keys.append(Key(table, "unique", columns))
    foreign: dict[int, list[tuple[Any, ...]]] = {}
    for row in _rows(store, f'PRAGMA foreign_key_list("{table}")'):  # id, seq, table, from, to, ...
        foreign.setdefault(row[0], []).append(row)
    for parts in foreign.values():
        parts.sort(key=lambda r: r[1])
        parent = parts[0][2]
        referenced = tuple(r[4] for r in parts)
        if None in referenced:  # REFERENCES parent without columns: the parent's primary key
            referenced = next(k.columns for k in _sqlite_keys(store, parent) if k.kind == "primary key")
        on_update, on_delete, match = parts[0][5], parts[0][6], parts[0][7]
        keys.append(
            Key(table, "foreign key", tuple(r[3] for r in parts), parent, referenced, (on_update, on_delete, match))
        )
    return keys


PG_INDEX_KEYS = """
SELECT t.relname, i.indisprimary,
       ARRAY(SELECT pg_get_indexdef(i.indexrelid, k, true) FROM generate_series(1, i.indnkeyatts) AS k ORDER BY k)
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relnamespace = current_schema()::regnamespace AND i.indisunique
"""
PG_FOREIGN_KEYS = """
SELECT t.relname, p.relname,
       ARRAY(SELECT a.attname FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum ORDER BY k.n),
       ARRAY(SELECT a.attname FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n)
             JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum ORDER BY k.n),
       c.confupdtype, c.confdeltype, c.condeferrable, c.condeferred
FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid JOIN pg_class p ON p.oid = c.confrelid
WHERE t.relnamespace = current_schema()::regnamespace AND c.contype = 'f'
"""


def _postgres_keys(store: Store) -> list[Key]:
    """Unique keys from pg_index (constraints and bare unique indexes alike, partial ones too),
    foreign keys from pg_constraint, columns in key order."""
    keys = [
        Key(table, "primary key" if primary else "unique", tuple(columns))
        for table, primary, columns in _rows(store, PG_INDEX_KEYS)
    ]
    for table, parent, columns, referenced, on_update, on_delete, deferrable, deferred in _rows(store, PG_FOREIGN_KEYS):
        actions = (on_update, on_delete, f"deferrable={deferrable} deferred={deferred}")
        keys.append(Key(table, "foreign key", tuple(columns), parent, tuple(referenced), actions))
    return keys


def keys(store: Store) -> list[Key]:
    """Every primary, unique and foreign key of the store's tables, from the catalog."""
    if store.dialect == "sqlite":
        return [key for table in sorted(tables(store)) for key in _sqlite_keys(store, table)]
    return _postgres_keys(store)


def distribution_column(table: str) -> str:
    return DISTRIBUTION_COLUMNS.get(table, "account_id")


def violations(store: Store) -> list[str]:
    """The keys that do not lead with their table's distribution column (a foreign key: on
    either side), and the account tables without a primary key; sorted."""
    found = keys(store)
    out = [
        f"{table} has no primary key"
        for table in tables(store) - NOT_ACCOUNT_DATA.keys()
        if not any(k.table == table and k.kind == "primary key" for k in found)
    ]
    for key in found:
        if key.table in NOT_ACCOUNT_DATA:
            continue
        if key.columns[:1] != (distribution_column(key.table),):
            out.append(f"{key.table} {key.kind} {key.columns}")
        elif key.kind == "foreign key" and key.parent_columns[:1] != (distribution_column(key.parent),):
            out.append(f"{key.table} foreign key {key.columns} -> {key.parent} {key.parent_columns}")
    return sorted(out)


# ---- fixtures and data ------------------------------------------------------------------------


@pytest.fixture(params=BACKENDS)
def fresh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """An empty database, not migrated yet."""
    store = open_store(database_url(request.param, tmp_path_factory))
    try:
        yield store
    finally:
        store.drop_schema()
        store.close()


def fill(store: Store) -> tuple[User, User, Charge]:
    """An account with a pool, two users (one holding a seat), an event, a charge and a request
    record, written by the store's own write methods."""
    account = Account("acc_1", "Acme", "usr_owner", "USD", 1, NOW, NOW, NOW + timedelta(days=31), 0, NOW)
    holder = User("usr_a", "acc_1", "Ann@X.test", "Ann", Permissions(True, False, True), 3, NOW, NOW)
    other = User("usr_b", "acc_1", "bob@x.test", "Bob", Permissions(), 1, NOW, NOW)
    charge = Charge(
        "chg_1",
        ChargeKind.SEATS,
        Hub.SALES,
        Tier.STARTER,
        2,
        1500,
        3000,
        "USD",
        NOW,
        NOW + timedelta(days=31),
        NOW,
        "2 seats",
    )

    def work() -> None:
        store.insert_account(account)
        # as the schema of version 4 takes it (save_pools writes the columns of the newest one),
        # after the account (on PostgreSQL the store's writes wait to travel with the next statement)
        store._exec(
            "INSERT INTO seat_pools (account_id, hub, tier, included, purchased, assigned, pending_removal, version) "
            "VALUES ('acc_1', 1, 2, 1, 2, 1, 0, 0)"
        )
        store.insert_user(holder, holder.email.casefold())
        store.insert_user(other, other.email.casefold())
        store.insert_assignment("acc_1", Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW))
        store.insert_charges("acc_1", [charge])
        # an event as version 4 takes it (append_events writes the columns of the newest schema)
        store._exec(
            store.sql.q(
                "INSERT INTO seat_events (account_id, sequence, event_type, actor, event_time, request_id, user_id, "
                "hub, tier, previous_tier, quantity, before_included, before_purchased, before_assigned, "
                "before_pending, after_included, after_purchased, after_assigned, after_pending) "
                "VALUES ('acc_1', 1, ?, 'usr_owner', ?, 'req_1', 'usr_a', 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)"
            ),
            (int(EventType.SEAT_ASSIGNED), to_micros(NOW)),
        )
        store._exec("UPDATE accounts SET last_sequence = 1 WHERE account_id = 'acc_1'")
        store.save_request("acc_1", "req_1", "fp", b"answer", NOW, NOW - timedelta(days=1))

    store.write(work)
    return holder, other, charge


# ---- the tests --------------------------------------------------------------------------------


def test_every_key_leads_with_account_id(fresh: Store) -> None:
    fresh.migrate()
    assert fresh.schema_version() >= SHARD_READY
    found = tables(fresh)
    assert {"accounts", "seat_pools", "users", "seat_assignments", "seat_events", "charges", "request_records"} <= found
    assert (NOT_ACCOUNT_DATA.keys() | DISTRIBUTION_COLUMNS.keys()) <= found  # no exception outlives its table
    assert violations(fresh) == []

    by_table: dict[str, set[tuple[str, tuple[str, ...]]]] = {}
    for key in keys(fresh):
        by_table.setdefault(key.table, set()).add((key.kind, key.columns))
    # the new keys, and no unique key left that the primary key makes redundant
    assert by_table["users"] == {
        ("primary key", ("account_id", "user_id")),
        ("unique", ("account_id", "email_key")),
        ("foreign key", ("account_id",)),
    }
    assert ("primary key", ("account_id", "user_id", "hub")) in by_table["seat_assignments"]
    assert ("primary key", ("account_id", "charge_id")) in by_table["charges"]
    assert ("primary key", ("scope", "request_id")) in by_table["request_records"]


def test_keys_before_migration_5_do_not_lead_with_account_id(fresh: Store) -> None:
    """The check sees what migration 5 fixes: it fails on the schema before it."""
    fresh.migrate(target=SHARD_READY - 1)
    assert fresh.schema_version() == SHARD_READY - 1
    assert violations(fresh) == [
        "charges primary key ('charge_id',)",
        "seat_assignments primary key ('user_id', 'hub')",
        "users primary key ('user_id',)",
    ]
    assert fresh.migrate(target=SHARD_READY) == [SHARD_READY]
    assert violations(fresh) == []


def test_migration_5_keeps_the_foreign_keys_and_their_actions(fresh: Store) -> None:
    """The foreign keys after migration 5 are those before it, on the same columns and parents,
    with the same actions (NO ACTION: a parent with children cannot go) and deferral."""
    fresh.migrate(target=SHARD_READY - 1)
    before = {k for k in keys(fresh) if k.kind == "foreign key"}
    fresh.migrate(target=SHARD_READY)
    after = {k for k in keys(fresh) if k.kind == "foreign key"}
    assert after == before
    no_action = (
        ("NO ACTION", "NO ACTION", "NONE")
        if fresh.dialect == "sqlite"
        else ("a", "a", "deferrable=False deferred=False")
    )
    to_users = Key(
        "seat_assignments", "foreign key", ("account_id", "user_id"), "users", ("account_id", "user_id"), no_action
    )
    to_pools = Key(
        "seat_assignments",
        "foreign key",
        ("account_id", "hub", "tier"),
        "seat_pools",
        ("account_id", "hub", "tier"),
        no_action,
    )
    assert {to_users, to_pools} <= after
    assert all(key.actions == no_action for key in after)


def test_migration_5_keeps_the_data_and_the_rules(fresh: Store) -> None:
    fresh.migrate(target=SHARD_READY - 1)
    holder, other, charge = fill(fresh)
    assert fresh.migrate(target=SHARD_READY) == [SHARD_READY]
    fresh.migrate()  # the later versions, which the store's reads expect

    seat = (SeatRef(Hub.SALES, Tier.STARTER),)
    assert fresh.get_user("acc_1", "usr_a", with_seats=True) == User(
        holder.user_id,
        holder.account_id,
        holder.email,
        holder.display_name,
        holder.permissions,
        holder.version,
        holder.create_time,
        holder.update_time,
        seat,
    )
    assert fresh.get_user("acc_1", "usr_b") == other
    assert fresh.email_owner("acc_1", "ann@x.test") == "usr_a"
    assert [u.user_id for u in fresh.list_users("acc_1", None, 10, None)] == ["usr_a", "usr_b"]
    assert [u.user_id for u in fresh.list_users("acc_1", None, 10, Hub.SALES)] == ["usr_a"]
    assert fresh.list_assignments("acc_1", None, 10, None, None) == [Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)]
    assert fresh.holders("acc_1", Hub.SALES, Tier.STARTER) == ["usr_a"]
    assert fresh.charges_since("acc_1", NOW) == [charge]
    assert [(e.sequence, e.user_id) for e in fresh.list_events("acc_1", 0, 10)] == [(1, "usr_a")]
    record = fresh.find_request("acc_1", "req_1", NOW - timedelta(days=1))
    assert record is not None and (record.fingerprint, record.response, record.refusal) == ("fp", b"answer", None)
    pool = fresh.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)]
    assert (pool.included, pool.purchased, pool.assigned) == (1, 2, 1)

    # I3: one seat per user and hub
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_assignment("acc_1", Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)))
    # I3: a seat only for a user of the account, in a pool of the account
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_assignment("acc_1", Assignment("usr_nobody", Hub.SALES, Tier.STARTER, NOW)))
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_assignment("acc_1", Assignment("usr_b", Hub.SALES, Tier.ENTERPRISE, NOW)))
    # S10: a user holding a seat cannot be deleted; nor can the pool the seat is in
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.delete_user("acc_1", "usr_a"))
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.delete_pool("acc_1", Hub.SALES, Tier.STARTER))
    # S16: one user per email in an account, whatever its case
    clash = User("usr_c", "acc_1", "ANN@x.test", "Ann again", Permissions(), 1, NOW, NOW)
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_user(clash, clash.email.casefold()))
    # I6: the charges' CHECKs came along with the table
    refund = Charge("chg_2", ChargeKind.SEATS, Hub.SALES, Tier.STARTER, -1, 1500, 0, "USD", NOW, NOW, NOW, "negative")
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_charges("acc_1", [refund]))
    # a user of another account: the foreign key from users to accounts still holds
    stray = User("usr_d", "acc_missing", "d@x.test", "D", Permissions(), 1, NOW, NOW)
    with pytest.raises(pw.IntegrityError):
        fresh.write(lambda: fresh.insert_user(stray, stray.email))

    assert fresh.get_user("acc_1", "usr_a") is not None
    assert fresh.list_assignments("acc_1", None, 10, None, None) == [Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)]
    # without its seat the user can go: the foreign key refuses only what it should
    fresh.write(lambda: fresh.delete_assignment("acc_1", "usr_a", Hub.SALES))
    assert fresh.write(lambda: fresh.delete_user("acc_1", "usr_a")) is True
    assert fresh.get_user("acc_1", "usr_a") is None
