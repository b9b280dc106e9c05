"""Migration 5 on a live PostgreSQL: writes go on while it builds its indexes. A writer inserts
users one at a time through its own connection, before, during and after `migrate()` on a database
with 300,000 users and as many charges; the longest any insert waited is a small part of what the
migration took, because the index builds run CONCURRENTLY outside the migration's transaction and
the transaction only moves catalog entries. Built inside the transaction, the indexes would hold
the tables' locks, and the writer, for about the whole migration."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import psycopg2
import pytest

from service.store import Store, open_store
from tests.conftest import POSTGRES_URL, database_url

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="a live migration is PostgreSQL's: set SEATS_TEST_POSTGRES_URL"
)

ROWS = 300_000


@pytest.fixture
def at_version_4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = open_store(database_url("postgres", tmp_path_factory))
    try:
        assert store.migrate(target=4) == [1, 2, 3, 4]
        store.db.execute_sql("INSERT INTO accounts VALUES ('acc_1', 'A', 'usr_1', 'USD', 1, 0, 0, 10, 0, 0)")
        store.db.execute_sql(
            "INSERT INTO users SELECT 'usr_' || g, 'acc_1', 'u' || g || '@x', 'u' || g || '@x', 'U', "
            "false, false, false, 1, 0, 0 FROM generate_series(1, %s) g",
            (ROWS,),
        )
        store.db.execute_sql(
            "INSERT INTO charges SELECT 'chg_' || g, 'acc_1', 1, 1, 1, 1, 0, 0, 'USD', 0, 0, 0, 'd' "
            "FROM generate_series(1, %s) g",
            (ROWS,),
        )
        yield store
    finally:
        store.drop_schema()
        store.close()


def test_writes_go_on_while_migration_5_builds_its_indexes(at_version_4: Store) -> None:
    store = at_version_4
    schema = store.schema
    assert schema
    waits: list[tuple[float, float]] = []  # (when it started, how long it took)
    failures: list[BaseException] = []
    stop = threading.Event()

    def write() -> None:
        conn = psycopg2.connect(POSTGRES_URL, options=f"-c search_path={schema}")
        conn.autocommit = True
        try:
            with conn.cursor() as cursor:
                n = 0
                while not stop.is_set():
                    n += 1
                    started = time.monotonic()
                    cursor.execute(
                        "INSERT INTO users VALUES (%s, 'acc_1', %s, %s, 'W', false, false, false, 1, 0, 0)",
                        (f"usr_w{n}", f"w{n}@x", f"w{n}@x"),
                    )
                    waits.append((started, time.monotonic() - started))
        except BaseException as exc:  # the test fails on it
            failures.append(exc)
        finally:
            conn.close()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(0.2)  # the writer is going
        began = time.monotonic()
        assert store.migrate(target=5) == [5]
        ended = time.monotonic()
        time.sleep(0.2)
    finally:
        stop.set()
        writer.join(10)
    assert not failures, failures
    took = ended - began
    during = [wait for started, wait in waits if began <= started <= ended]
    longest = max(wait for _, wait in waits)
    print(f"\nmigration 5 took {took * 1000:.0f} ms; {len(during)} inserts meanwhile", end="")
    print(f", the longest waited {longest * 1000:.0f} ms")
    assert len(during) >= 20, "the writer hardly ran while the migration did"
    assert longest < took / 3, f"an insert waited {longest * 1000:.0f} ms of a {took * 1000:.0f} ms migration"
    # and the switch happened: the new keys are in place and valid
    keys = store.db.execute_sql(
        "SELECT conname, convalidated FROM pg_constraint WHERE conrelid IN ('users'::regclass, "
        "'seat_assignments'::regclass) AND contype IN ('p', 'f') ORDER BY conname"
    ).fetchall()
    assert all(valid for _, valid in keys), keys
    count = store.db.execute_sql("SELECT COUNT(*) FROM users").fetchone()[0]
    assert count == ROWS + len(waits)
