"""The store on both databases: migrations, and the constraints that back the rules even
when the domain is bypassed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import peewee as pw
import pytest

from service.domain.model import Account, Assignment, Event, EventType, Hub, Permissions, Pool, Tier, User
from service.store import Store, open_store
from service.store.migrations import MIGRATIONS
from tests.conftest import BACKENDS, database_url

NOW = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = open_store(database_url(request.param, tmp_path_factory))
    s.migrate()
    try:
        yield s
    finally:
        s.drop_schema()
        s.close()


def make_account(store: Store, account_id: str = "acc_1") -> Account:
    account = Account(account_id, "Acme", "usr_owner", "USD", 1, NOW, NOW, NOW + timedelta(days=31), 0, NOW)
    store.write(lambda: store.insert_account(account))
    return account


def make_user(store: Store, account_id: str, user_id: str, email: str) -> User:
    user = User(user_id, account_id, email, email, Permissions(), 1, NOW, NOW)
    store.write(lambda: store.insert_user(user, email.casefold()))
    return user


def make_pool(
    store: Store,
    account_id: str,
    hub: Hub = Hub.SALES,
    tier: Tier = Tier.STARTER,
    included: int = 1,
    purchased: int = 1,
) -> None:
    pool = Pool(hub, tier, included, purchased, 0, 0, new=True)
    store.write(lambda: store.save_pools(account_id, [pool]))


def test_migrations_are_versioned_and_idempotent(store: Store) -> None:
    assert store.schema_version() == MIGRATIONS[-1].version
    assert store.migrate() == []
    assert store.schema_version() == MIGRATIONS[-1].version


def test_i1_database_refuses_more_assigned_than_capacity(store: Store) -> None:
    make_account(store)
    make_pool(store, "acc_1", included=1, purchased=1)
    over = Pool(Hub.SALES, Tier.STARTER, 1, 1, 3, 0, dirty=True)
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.save_pools("acc_1", [over]))
    assert store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)].assigned == 0


def test_i2_database_refuses_pending_removal_of_assigned_seats(store: Store) -> None:
    make_account(store)
    make_pool(store, "acc_1", included=1, purchased=2)
    # 3 seats, 2 assigned: only one unassigned purchased seat may be pending.
    bad = Pool(Hub.SALES, Tier.STARTER, 1, 2, 2, 2, dirty=True)
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.save_pools("acc_1", [bad]))
    ok = Pool(Hub.SALES, Tier.STARTER, 1, 2, 2, 1, dirty=True)
    store.write(lambda: store.save_pools("acc_1", [ok]))
    assert store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)].pending_removal == 1


def test_i3_database_refuses_second_seat_of_a_hub(store: Store) -> None:
    make_account(store)
    make_pool(store, "acc_1", tier=Tier.STARTER)
    make_pool(store, "acc_1", tier=Tier.PROFESSIONAL)
    make_user(store, "acc_1", "usr_a", "a@x.test")
    store.write(lambda: store.insert_assignment("acc_1", Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)))
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.insert_assignment("acc_1", Assignment("usr_a", Hub.SALES, Tier.PROFESSIONAL, NOW)))


def test_i3_database_refuses_seat_in_a_pool_of_another_account(store: Store) -> None:
    make_account(store, "acc_1")
    make_account(store, "acc_2")
    make_pool(store, "acc_2")
    make_user(store, "acc_1", "usr_a", "a@x.test")
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.insert_assignment("acc_2", Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)))


def test_s10_database_refuses_deleting_a_user_with_a_seat(store: Store) -> None:
    make_account(store)
    make_pool(store, "acc_1")
    make_user(store, "acc_1", "usr_a", "a@x.test")
    store.write(lambda: store.insert_assignment("acc_1", Assignment("usr_a", Hub.SALES, Tier.STARTER, NOW)))
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.delete_user("acc_1", "usr_a"))
    assert store.get_user("acc_1", "usr_a") is not None


def test_s16_database_refuses_same_email_in_other_case(store: Store) -> None:
    make_account(store)
    make_user(store, "acc_1", "usr_a", "Ann@X.test")
    with pytest.raises(pw.IntegrityError):
        make_user(store, "acc_1", "usr_b", "ann@x.TEST")


def test_i4_event_sequences_are_gapless_and_unique(store: Store) -> None:
    account = make_account(store)

    def append(n: int) -> None:
        locked = store.get_account("acc_1", lock=True)
        assert locked is not None
        store.append_events(locked, [Event(EventType.TERM_RENEWED, "system", NOW) for _ in range(n)])

    store.write(lambda: append(3))
    store.write(lambda: append(2))
    assert [e.sequence for e in store.list_events(account.account_id, 0, 100)] == [1, 2, 3, 4, 5]
    with pytest.raises(pw.IntegrityError):  # a stale counter cannot write a duplicate sequence
        store.write(lambda: store.append_events(account, [Event(EventType.TERM_RENEWED, "system", NOW)]))


def test_concurrent_writers_are_serialized_without_errors(store: Store) -> None:
    """Counter increments from many threads all land: the store retries busy and
    serialization failures instead of surfacing them."""
    make_account(store)
    make_pool(store, "acc_1", included=0, purchased=0)
    errors: list[BaseException] = []

    def buy_one() -> None:
        def work() -> None:
            store.get_account("acc_1", lock=True)
            pool = store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)]
            pool.purchased += 1
            pool.dirty = True
            store.save_pools("acc_1", [pool])

        try:
            for _ in range(10):
                store.write(work)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=buy_one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)].purchased == 60


def test_dry_run_rolls_back(store: Store) -> None:
    make_account(store)
    make_pool(store, "acc_1", purchased=1)

    def grow() -> int:
        pool = store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)]
        pool.purchased += 5
        pool.dirty = True
        store.save_pools("acc_1", [pool])
        return pool.purchased

    assert store.write(grow, dry_run=True) == 6
    assert store.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)].purchased == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_migration_2_upgrades_a_version_1_database(backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """A database made by an older release keeps its data and gains pool versions (etags)."""
    old = open_store(database_url(backend, tmp_path_factory))
    try:
        assert old.migrate(target=1) == [1]
        make_account(old)
        old.db.execute_sql(
            "INSERT INTO seat_pools (account_id, hub, tier, included, purchased, assigned, pending_removal) "
            "VALUES ('acc_1', 1, 2, 1, 3, 2, 1)"
        )
        assert old.migrate(target=2) == [2]
        assert old.schema_version() == 2
        old.migrate()  # the later versions, which the store's reads expect
        pool = old.load_pools("acc_1")[(Hub.SALES, Tier.STARTER)]
        assert (pool.purchased, pool.assigned, pool.pending_removal, pool.version) == (3, 2, 1, 0)
    finally:
        old.drop_schema()
        old.close()


def test_the_outbox_gives_each_account_its_oldest_events_in_turn(store: Store) -> None:
    """The relay's batches: per account a prefix of its events in sequence order (never n+1
    without n), at most per_account of them, starting after the account the last batch ended
    on, so that one account with a long backlog cannot hold the others back."""
    store.outbox = True
    backlog = {"acc_a": 7, "acc_b": 2, "acc_c": 3}
    for account_id, count in backlog.items():
        make_account(store, account_id)

        def append(account_id: str = account_id, count: int = count) -> None:
            locked = store.get_account(account_id, lock=True)
            assert locked is not None
            store.append_events(locked, [Event(EventType.TERM_RENEWED, "system", NOW) for _ in range(count)])

        store.write(append)

    def batch(limit: int, after: str = "") -> list[tuple[str, int]]:
        return [(a, e.sequence) for a, e in store.read(lambda: store.outbox_batch(limit, after, per_account=3))]

    assert batch(100) == [
        ("acc_a", 1),
        ("acc_a", 2),
        ("acc_a", 3),
        ("acc_b", 1),
        ("acc_b", 2),
        *[("acc_c", n) for n in (1, 2, 3)],
    ]
    assert batch(4, after="acc_a") == [("acc_b", 1), ("acc_b", 2), ("acc_c", 1), ("acc_c", 2)]
    assert batch(5, after="acc_c") == [("acc_a", 1), ("acc_a", 2), ("acc_a", 3), ("acc_b", 1), ("acc_b", 2)]
    store.write(lambda: store.outbox_done("acc_a", 3))
    assert batch(2) == [("acc_a", 4), ("acc_a", 5)]
    assert store.read(store.outbox_backlog)[0] == 9
