"""The rules S1..S19 and the invariants I1..I6, proved against the use cases (SeatDomain) over an
in-memory store: no gRPC, no database. Each test is named after the rule it proves.

After every test an autouse check replays each account's event log and compares it with the
stored pools and assignments (I1..I4), so every scenario below also proves that it logged one
event per change."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from functools import partial
from typing import TypeVar

import peewee as pw
import pytest

from service.clock import ManualClock
from service.domain.errors import Kind, SeatError
from service.domain.model import (
    Assignment,
    Call,
    ChangeOutcome,
    Charge,
    ChargeKind,
    Event,
    EventType,
    Hub,
    Page,
    Permissions,
    Pool,
    PoolCounts,
    PoolView,
    SeatRef,
    Tier,
    User,
)
from service.domain.ports import SeatStore
from service.domain.prices import PriceBook
from service.domain.requests import run_once
from service.domain.seats import NewAccount, SeatDomain, UserChanges
from tests.domain.memory_store import MemoryStore

SALES, SERVICE = Hub.SALES, Hub.SERVICE
FREE, STARTER, PROFESSIONAL, ENTERPRISE = Tier.FREE, Tier.STARTER, Tier.PROFESSIONAL, Tier.ENTERPRISE
START = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)  # a monthly term from here has 31 days
SYSTEM = Call()
NOTHING = Permissions()
ACCESS = Permissions(account_access=True)
BILLING = Permissions(edit_billing=True)
BOTH = Permissions(edit_billing=True, account_access=True)
SUPER = Permissions(super_admin=True)
PRICES = PriceBook.default()
ALL = 10**6  # a limit larger than any test's rows
T = TypeVar("T")


# ---- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def domain(store: MemoryStore, clock: ManualClock) -> SeatDomain:
    return SeatDomain(store, PriceBook.default(), clock)


@pytest.fixture(autouse=True)
def invariants_hold_afterwards(store: MemoryStore) -> Iterator[None]:
    yield
    for account_id in store.account_ids():
        assert_invariants(store, account_id)


@dataclass(frozen=True)
class Tenant:
    account_id: str
    owner_id: str
    created_charges: list[Charge]

    @property
    def owner(self) -> Call:
        return Call(actor=self.owner_id)


def open_account(domain: SeatDomain, *subscriptions: tuple[Hub, Tier, int], term_months: int = 1) -> Tenant:
    view, charges = domain.create_account(
        SYSTEM, NewAccount("Acme", "owner@acme.test", "", list(subscriptions), term_months, None)
    )
    return Tenant(view.account.account_id, view.account.owner_user_id, charges)


def new_user(
    domain: SeatDomain,
    tenant: Tenant,
    name: str,
    perms: Permissions = NOTHING,
    seats: tuple[tuple[Hub, Tier], ...] = (),
) -> User:
    user, _ = domain.create_user(
        tenant.owner, tenant.account_id, f"{name}@acme.test", name, perms, [SeatRef(h, t) for h, t in seats]
    )
    return user


def as_user(user: User) -> Call:
    return Call(actor=user.user_id)


def pools(domain: SeatDomain, tenant: Tenant) -> dict[tuple[Hub, Tier], PoolView]:
    return {(p.hub, p.tier): p for p in domain.get_account(SYSTEM, tenant.account_id).pools}


def counts(view: PoolView) -> dict[str, int]:
    return {
        "included": view.included,
        "purchased": view.purchased,
        "assigned": view.assigned,
        "available": view.available,
        "pending_removal": view.pending_removal,
    }


def pool_counts(domain: SeatDomain, tenant: Tenant, hub: Hub, tier: Tier) -> dict[str, int]:
    return counts(pools(domain, tenant)[(hub, tier)])


def seats_of(domain: SeatDomain, tenant: Tenant, user_id: str) -> set[tuple[Hub, Tier]]:
    return {(s.hub, s.tier) for s in domain.get_user(SYSTEM, tenant.account_id, user_id).seats}


def events(store: MemoryStore, tenant: Tenant, after: int = 0) -> list[Event]:
    return store.list_events(tenant.account_id, after, ALL)


def types_since(store: MemoryStore, tenant: Tenant, after: int) -> list[EventType]:
    return [e.type for e in events(store, tenant, after)]


def sequence(store: MemoryStore, tenant: Tenant) -> int:
    return store.account_sequence(tenant.account_id)


def renewal_time(domain: SeatDomain, tenant: Tenant) -> datetime:
    return domain.get_account(SYSTEM, tenant.account_id).account.renewal_time


def prorated(amount_minor: int, left: int, term: int) -> int:
    """The expected share of a whole-term amount for `left` of `term` (days or seconds), by hand."""
    return round(Fraction(amount_minor * left, term))


@contextmanager
def refused(kind: Kind, reason: str, **metadata: str) -> Iterator[pytest.ExceptionInfo[SeatError]]:
    with pytest.raises(SeatError) as caught:
        yield caught
    assert (caught.value.kind, caught.value.reason) == (kind, reason), caught.value
    for key, value in metadata.items():
        assert caught.value.metadata.get(key) == value, caught.value.metadata


@contextmanager
def nothing_changes(store: MemoryStore) -> Iterator[None]:
    """Every table, row for row, is the same afterwards."""
    before = copy.deepcopy(store.tables)
    yield
    assert store.tables == before


def assert_invariants(store: MemoryStore, account_id: str) -> None:
    """I1 and I2 per pool; I3; pool counters equal the assignments they count; I4: the log is
    gapless, and replaying it, event by event, gives exactly the stored pools and seats."""
    stored_pools = store.load_pools(account_id)
    assignments = store.list_assignments(account_id, None, ALL, None, None)
    for key, pool in stored_pools.items():
        assert 0 <= pool.assigned <= pool.included + pool.purchased, key  # I1
        assert 0 <= pool.pending_removal <= pool.purchased - max(0, pool.assigned - pool.included), key  # I2
        assert pool.assigned == sum(1 for a in assignments if (a.hub, a.tier) == key), key
    holders = [(a.user_id, a.hub) for a in assignments]
    assert len(holders) == len(set(holders))  # I3: one seat per user and hub
    assert set(store.get_users(account_id, [a.user_id for a in assignments])) == {a.user_id for a in assignments}

    log = store.list_events(account_id, 0, ALL)
    assert [e.sequence for e in log] == list(range(1, len(log) + 1))  # I4: gapless, in order
    assert store.account_sequence(account_id) == len(log)
    replayed: dict[tuple[Hub, Tier], PoolCounts] = {}
    held: dict[tuple[str, Hub], Tier] = {}
    for e in log:
        if e.hub:
            key = (Hub(e.hub), Tier(e.tier))
            if e.type is EventType.POOL_OPENED:
                assert key not in replayed and e.before == PoolCounts(), e
            else:
                assert replayed[key] == e.before, f"event {e.sequence} does not start where the last one ended"
            replayed[key] = e.after
            if e.type is EventType.POOL_CLOSED:
                del replayed[key]
        if e.type is EventType.SEAT_ASSIGNED:
            assert (e.user_id, Hub(e.hub)) not in held, e
            held[(e.user_id, Hub(e.hub))] = Tier(e.tier)
        if e.type is EventType.SEAT_UNASSIGNED:
            assert held.pop((e.user_id, Hub(e.hub))) == Tier(e.tier), e
    assert replayed == {key: pool.counts() for key, pool in stored_pools.items()}
    assert held == {(a.user_id, a.hub): a.tier for a in assignments}


def test_memory_store_implements_the_port(store: MemoryStore) -> None:
    port: SeatStore = store  # mypy checks the Protocol here
    assert port.account_sequence("acc_none") == 0


# ---- S1, S2: seats and subscriptions -----------------------------------------------------------


def test_s1_seats_decide_how_many_users_may_use_a_hub(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))  # 1 included + 1 purchased
    ann, bob, cy = (new_user(domain, tenant, name) for name in ("ann", "bob", "cy"))
    domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, STARTER)
    domain.assign_seat(tenant.owner, tenant.account_id, bob.user_id, SALES, STARTER)

    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE", capacity="2"):
        domain.assign_seat(tenant.owner, tenant.account_id, cy.user_id, SALES, STARTER)

    assert seats_of(domain, tenant, cy.user_id) == set()
    assert pool_counts(domain, tenant, SALES, STARTER) == {
        "included": 1,
        "purchased": 1,
        "assigned": 2,
        "available": 0,
        "pending_removal": 0,
    }


def test_s1_a_hub_without_a_subscription_has_no_seats(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann")

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NOT_SUBSCRIBED", hub="SERVICE"):
        domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SERVICE, STARTER)
    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NOT_SUBSCRIBED", tier="PROFESSIONAL"):
        domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, PROFESSIONAL)


@pytest.mark.parametrize("hub", list(Hub))
@pytest.mark.parametrize("tier", list(Tier))
def test_s2_a_subscription_includes_the_seats_of_its_tier(domain: SeatDomain, hub: Hub, tier: Tier) -> None:
    tenant = open_account(domain, (hub, tier, 0))

    view = pools(domain, tenant)[(hub, tier)]

    price = PRICES.price(hub, tier)
    assert (view.included, view.purchased, view.available) == (price.included_seats, 0, price.included_seats)
    assert (view.unit_price_minor, view.currency_code) == (price.seat_month_minor, "USD")


def test_s2_account_creation_charges_the_plan_and_the_purchased_seats_for_the_first_term(
    domain: SeatDomain,
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2), (SERVICE, STARTER, 0), term_months=12)

    charged = {(c.kind, c.hub, c.tier): c for c in tenant.created_charges}
    assert {key: (c.quantity, c.amount_minor) for key, c in charged.items()} == {
        (ChargeKind.PLAN, SALES, PROFESSIONAL): (0, 50000 * 12),
        (ChargeKind.SEATS, SALES, PROFESSIONAL): (2, 9000 * 12 * 2),
        (ChargeKind.PLAN, SERVICE, STARTER): (0, 2000 * 12),
    }
    account = domain.get_account(SYSTEM, tenant.account_id).account
    assert (account.term_start, account.renewal_time) == (START, START.replace(year=2027))
    preview = domain.preview_invoice(tenant.owner, tenant.account_id)
    assert sorted(c.charge_id for c in preview.current_term_charges) == sorted(
        c.charge_id for c in tenant.created_charges
    )
    assert preview.current_term_total_minor == 50000 * 12 + 9000 * 24 + 2000 * 12


def test_s2_account_creation_makes_the_owner_a_super_admin_and_logs_it(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, FREE, 0))

    owner = domain.get_user(SYSTEM, tenant.account_id, tenant.owner_id)
    assert owner.permissions == Permissions(True, True, True)
    assert types_since(store, tenant, 0) == [
        EventType.ACCOUNT_CREATED,
        EventType.USER_CREATED,
        EventType.POOL_OPENED,
        EventType.POOL_OPENED,
    ]


# ---- S3, I6: purchases and money ---------------------------------------------------------------


def test_s3_purchased_seats_count_at_once(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann, bob = new_user(domain, tenant, "ann"), new_user(domain, tenant, "bob")
    domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, STARTER)

    view, _ = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)

    assert (view.purchased, view.available) == (1, 1)
    domain.assign_seat(tenant.owner, tenant.account_id, bob.user_id, SALES, STARTER)
    assert seats_of(domain, tenant, bob.user_id) == {(SALES, STARTER)}


def test_s3_a_purchase_is_charged_pro_rata_for_the_rest_of_the_term(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 0))
    clock.advance(days=10)  # 21 of 31 days left

    view, charge = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 2)

    assert (charge.kind, charge.quantity, charge.unit_price_minor) == (ChargeKind.PRORATED_SEATS, 2, 9000)
    assert charge.amount_minor == prorated(2 * 9000, 21, 31) == 12194
    assert (charge.period_start, charge.period_end, charge.charge_time) == (
        START,
        renewal_time(domain, tenant),
        clock.now(),
    )
    assert view.purchased == 2
    assert charge in domain.preview_invoice(tenant.owner, tenant.account_id).current_term_charges
    purchase = events(store, tenant)[-1]
    assert (purchase.type, purchase.quantity, purchase.before.purchased, purchase.after.purchased) == (
        EventType.SEATS_PURCHASED,
        2,
        0,
        2,
    )


def test_i6_proration_rounds_half_to_even_in_integer_minor_units(domain: SeatDomain, clock: ManualClock) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 0))
    renewal = renewal_time(domain, tenant)
    # 9000 cents over a 31-day term (2,678,400 s): 2232 s left is 7.5 cents, 744 s is 2.5 cents.
    clock.advance(renewal - timedelta(seconds=2232) - clock.now())
    _, seven_and_a_half = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    clock.advance(seconds=2232 - 744)
    _, two_and_a_half = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)

    assert (seven_and_a_half.amount_minor, two_and_a_half.amount_minor) == (8, 2)
    charges = domain.preview_invoice(tenant.owner, tenant.account_id).current_term_charges
    assert all(type(c.amount_minor) is int and type(c.unit_price_minor) is int for c in charges)


def test_s3_validate_only_prices_a_purchase_without_making_it(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    with nothing_changes(store):
        view, charge = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 3, validate_only=True)

    assert (view.purchased, charge.quantity, charge.amount_minor) == (3, 3, 3 * 2000)
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 0


def test_s3_free_tools_have_no_seats_to_buy(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, FREE, 0))

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "TIER_NOT_PURCHASABLE"):
        domain.purchase_seats(tenant.owner, tenant.account_id, SALES, FREE, 1)


def test_s3_a_stale_pool_etag_refuses_the_purchase(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    etag = pools(domain, tenant)[(SALES, STARTER)].etag
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1, etag=etag)

    with nothing_changes(store), refused(Kind.ABORTED, "ETAG_MISMATCH"):
        domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1, etag=etag)


# ---- S4, S5, S9: removals and renewals ---------------------------------------------------------


def test_s4_a_scheduled_removal_never_takes_effect_mid_term(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    clock.advance(renewal_time(domain, tenant) - timedelta(seconds=1) - clock.now())

    assert pool_counts(domain, tenant, SALES, PROFESSIONAL) == {
        "included": 2,
        "purchased": 2,
        "assigned": 0,
        "available": 3,
        "pending_removal": 1,
    }
    assert domain.renew_due() == 0
    assert EventType.SEATS_REMOVED not in types_since(store, tenant, 0)


def test_s5_unassigned_purchased_seats_can_be_scheduled_for_removal_at_the_renewal_date(
    domain: SeatDomain, store: MemoryStore
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    before = sequence(store, tenant)

    view = domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 2)

    assert (view.purchased, view.pending_removal, view.available) == (2, 2, 2)
    assert view.removal_effective_time == renewal_time(domain, tenant)
    assert types_since(store, tenant, before) == [EventType.SEAT_REMOVAL_SCHEDULED]


def test_s5_the_removal_takes_effect_at_the_renewal_date(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    renewal = renewal_time(domain, tenant)
    before = sequence(store, tenant)
    clock.advance(renewal - clock.now() + timedelta(hours=1))

    view = domain.get_account(tenant.owner, tenant.account_id)

    assert (view.account.term_start, view.account.renewal_time) == (renewal, datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert counts(view.pools[0]) == {
        "included": 2,
        "purchased": 1,
        "assigned": 0,
        "available": 3,
        "pending_removal": 0,
    }
    assert view.pools[0].removal_effective_time is None
    assert types_since(store, tenant, before) == [
        EventType.INVOICE_ISSUED,  # the ended term's, with the seats still billed in it (S9)
        EventType.SEATS_REMOVED,
        EventType.TERM_RENEWED,
    ]


def test_s5_the_renewal_catches_up_over_several_terms(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))
    before = sequence(store, tenant)
    clock.advance(days=31 + 28 + 31 + 1)  # past the renewals of Feb 1, Mar 1 and Apr 1

    renewed = domain.renew_due()

    assert renewed == 1
    assert renewal_time(domain, tenant) == datetime(2026, 5, 1, 9, tzinfo=UTC)
    assert types_since(store, tenant, before) == [EventType.INVOICE_ISSUED, EventType.TERM_RENEWED] * 3
    term_charges = domain.preview_invoice(tenant.owner, tenant.account_id).current_term_charges
    assert {(c.kind, c.amount_minor, c.period_start) for c in term_charges} == {
        (ChargeKind.PLAN, 2000, datetime(2026, 4, 1, 9, tzinfo=UTC)),
        (ChargeKind.SEATS, 2000, datetime(2026, 4, 1, 9, tzinfo=UTC)),
    }


def test_s5_an_account_started_in_the_past_is_renewed_up_to_now(domain: SeatDomain, store: MemoryStore) -> None:
    started = datetime(2025, 10, 15, 9, tzinfo=UTC)

    view, charges = domain.create_account(
        SYSTEM, NewAccount("Old", "owner@old.test", "", [(SALES, STARTER, 1)], 1, started)
    )

    account = view.account
    assert (account.term_start, account.renewal_time) == (
        datetime(2025, 12, 15, 9, tzinfo=UTC),
        datetime(2026, 1, 15, 9, tzinfo=UTC),
    )
    assert {(c.kind, c.period_start) for c in charges} == {(ChargeKind.PLAN, started), (ChargeKind.SEATS, started)}
    renewals = [EventType.INVOICE_ISSUED, EventType.TERM_RENEWED] * 2
    assert [e.type for e in store.list_events(account.account_id, 0, ALL)][-4:] == renewals
    current = domain.preview_invoice(Call(account.owner_user_id), account.account_id).current_term_charges
    assert {(c.kind, c.period_start) for c in current} == {
        (ChargeKind.PLAN, account.term_start),
        (ChargeKind.SEATS, account.term_start),
    }


def test_s5_a_write_after_the_renewal_date_applies_the_renewal_first(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, STARTER, 2)
    before = sequence(store, tenant)
    clock.advance(days=32)

    view, charge = domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)

    assert (view.purchased, view.pending_removal) == (1, 0)
    assert charge.period_start == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert types_since(store, tenant, before) == [
        EventType.INVOICE_ISSUED,
        EventType.SEATS_REMOVED,
        EventType.TERM_RENEWED,
        EventType.SEATS_PURCHASED,
    ]


def test_s5_cancelling_a_removal_keeps_the_seats(domain: SeatDomain, store: MemoryStore, clock: ManualClock) -> None:
    tenant = open_account(domain, (SALES, STARTER, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, STARTER, 2)

    view = domain.cancel_removal(tenant.owner, tenant.account_id, SALES, STARTER, 1)

    assert (view.purchased, view.pending_removal) == (2, 1)
    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NOT_PENDING_REMOVAL", pending_removal="1"):
        domain.cancel_removal(tenant.owner, tenant.account_id, SALES, STARTER, 2)
    clock.advance(days=32)
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 1


def test_s5_included_seats_cannot_be_scheduled_for_removal(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, ENTERPRISE, 0))  # 5 included, none purchased

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "SEATS_ASSIGNED", removable="0"):
        domain.schedule_removal(tenant.owner, tenant.account_id, SALES, ENTERPRISE, 1)


def test_s9_a_removal_lowers_the_next_renewal_but_not_the_current_term(domain: SeatDomain, clock: ManualClock) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    charged_before = domain.preview_invoice(tenant.owner, tenant.account_id)

    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)

    preview = domain.preview_invoice(tenant.owner, tenant.account_id)
    assert preview.current_term_charges == charged_before.current_term_charges  # still billed, no refund
    assert preview.current_term_total_minor == 50000 + 2 * 9000
    assert [(line.kind, line.quantity, line.amount_minor) for line in preview.next_renewal_lines] == [
        (ChargeKind.PLAN, 0, 50000),
        (ChargeKind.SEATS, 1, 9000),
    ]
    assert preview.next_renewal_total_minor == 59000


def test_s9_the_next_term_is_charged_at_the_new_count(domain: SeatDomain, clock: ManualClock) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    clock.advance(days=31, hours=1)

    preview = domain.preview_invoice(tenant.owner, tenant.account_id)

    assert preview.term_start == datetime(2026, 2, 1, 9, tzinfo=UTC)
    assert {(c.kind, c.quantity, c.amount_minor) for c in preview.current_term_charges} == {
        (ChargeKind.PLAN, 0, 50000),
        (ChargeKind.SEATS, 1, 9000),
    }


# ---- S6: upgrades ------------------------------------------------------------------------------


def test_s6_upgrade_from_free_releases_the_free_seats_and_buys_seats_in_the_same_call(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, FREE, 0), (SERVICE, STARTER, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, FREE), (SERVICE, STARTER)))
    bob = new_user(domain, tenant, "bob", seats=((SALES, FREE),))
    clock.advance(days=10)  # 21 of 31 days left
    before = sequence(store, tenant)

    result = domain.upgrade(tenant.owner, tenant.account_id, SALES, STARTER, 1, [ann.user_id, tenant.owner_id])

    after = pools(domain, tenant)
    assert set(after) == {(SALES, STARTER), (SERVICE, STARTER)}
    assert (
        counts(result.pool)
        == counts(after[(SALES, STARTER)])
        == {
            "included": 1,
            "purchased": 1,
            "assigned": 2,
            "available": 0,
            "pending_removal": 0,
        }
    )
    assert seats_of(domain, tenant, ann.user_id) == {(SALES, STARTER), (SERVICE, STARTER)}
    assert seats_of(domain, tenant, tenant.owner_id) == {(SALES, STARTER)}
    assert seats_of(domain, tenant, bob.user_id) == set(), "the free seats go at the moment of the upgrade"
    assert {(c.kind, c.quantity, c.amount_minor) for c in result.charges} == {
        (ChargeKind.PRORATED_PLAN, 0, prorated(2000, 21, 31)),
        (ChargeKind.PRORATED_SEATS, 1, prorated(2000, 21, 31)),
    }
    assert types_since(store, tenant, before) == [
        EventType.SEAT_UNASSIGNED,  # the two free seats
        EventType.SEAT_UNASSIGNED,
        EventType.POOL_CLOSED,
        EventType.POOL_OPENED,
        EventType.SEAT_ASSIGNED,
        EventType.SEAT_ASSIGNED,
    ]


def test_s6_upgrade_without_room_for_the_named_users_changes_nothing(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, FREE, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, FREE),))

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        domain.upgrade(tenant.owner, tenant.account_id, SALES, STARTER, 0, [ann.user_id, tenant.owner_id])

    assert seats_of(domain, tenant, ann.user_id) == {(SALES, FREE)}


def test_s6_an_upgrade_must_raise_the_tier(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 0))

    for tier in (STARTER, PROFESSIONAL):
        with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NOT_AN_UPGRADE", current_tier="PROFESSIONAL"):
            domain.upgrade(tenant.owner, tenant.account_id, SALES, tier, 0, [])
    with refused(Kind.FAILED_PRECONDITION, "NOT_AN_UPGRADE"):
        domain.upgrade(tenant.owner, tenant.account_id, SALES, FREE, 0, [])


def test_s6_upgrade_between_paid_tiers_moves_the_named_users(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))
    mover = new_user(domain, tenant, "mover", seats=((SALES, STARTER),))
    stayer = new_user(domain, tenant, "stayer", seats=((SALES, STARTER),))

    result = domain.upgrade(tenant.owner, tenant.account_id, SALES, ENTERPRISE, 0, [mover.user_id])

    assert (result.pool.tier, result.pool.assigned) == (ENTERPRISE, 1)
    assert seats_of(domain, tenant, mover.user_id) == {(SALES, ENTERPRISE)}
    assert seats_of(domain, tenant, stayer.user_id) == {(SALES, STARTER)}
    old = pools(domain, tenant)[(SALES, STARTER)]
    assert (old.purchased, old.assigned) == (1, 1), "the old pool keeps its purchased seats until renewal (S4)"


def test_s6_validate_only_prices_an_upgrade_without_making_it(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, FREE, 0))
    new_user(domain, tenant, "ann", seats=((SALES, FREE),))

    with nothing_changes(store):
        result = domain.upgrade(
            tenant.owner, tenant.account_id, SALES, STARTER, 1, [tenant.owner_id], validate_only=True
        )

    assert {c.kind for c in result.charges} == {ChargeKind.PRORATED_PLAN, ChargeKind.PRORATED_SEATS}
    assert set(pools(domain, tenant)) == {(SALES, FREE)}


# ---- S7, S12, S19: permissions -----------------------------------------------------------------

BillingCall = Callable[[SeatDomain, Tenant, Call], object]
BILLING_CALLS: dict[str, BillingCall] = {
    "purchase": lambda d, t, c: d.purchase_seats(c, t.account_id, SALES, PROFESSIONAL, 1),
    "schedule_removal": lambda d, t, c: d.schedule_removal(c, t.account_id, SALES, PROFESSIONAL, 1),
    "cancel_removal": lambda d, t, c: d.cancel_removal(c, t.account_id, SALES, PROFESSIONAL, 1),
    "upgrade": lambda d, t, c: d.upgrade(c, t.account_id, SERVICE, STARTER, 0, []),
}


@pytest.mark.parametrize("operation", sorted(BILLING_CALLS))
@pytest.mark.parametrize("perms", [NOTHING, ACCESS], ids=["nothing", "account_access"])
def test_s7_adding_or_removing_paid_seats_needs_edit_billing(
    domain: SeatDomain, store: MemoryStore, operation: str, perms: Permissions
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)  # so a cancel has one
    actor = new_user(domain, tenant, "actor", perms)

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="edit_billing"):
        BILLING_CALLS[operation](domain, tenant, as_user(actor))


@pytest.mark.parametrize("operation", sorted(BILLING_CALLS))
def test_s7_edit_billing_alone_may_add_and_remove_paid_seats(
    domain: SeatDomain, store: MemoryStore, operation: str
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 2))
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    biller = new_user(domain, tenant, "biller", BILLING)
    before = sequence(store, tenant)

    BILLING_CALLS[operation](domain, tenant, as_user(biller))

    assert sequence(store, tenant) > before
    assert all(e.actor == biller.user_id for e in events(store, tenant, before))


def _create(d: SeatDomain, t: Tenant, c: Call, target: User) -> object:
    return d.create_user(c, t.account_id, "new@acme.test", "", NOTHING, [])


ACCESS_CALLS: dict[str, Callable[[SeatDomain, Tenant, Call, User], object]] = {
    "assign": lambda d, t, c, u: d.assign_seat(c, t.account_id, u.user_id, SERVICE, STARTER),
    "unassign": lambda d, t, c, u: d.unassign_seat(c, t.account_id, u.user_id, SALES),
    "batch": lambda d, t, c, u: d.batch_update(c, t.account_id, [(u.user_id, SALES, None)]),
    "create_user": _create,
    "update_user": lambda d, t, c, u: d.update_user(c, t.account_id, u.user_id, UserChanges(display_name="X"), ""),
    "delete_user": lambda d, t, c, u: d.delete_user(c, t.account_id, u.user_id, ""),
}


@pytest.mark.parametrize("operation", sorted(ACCESS_CALLS))
@pytest.mark.parametrize("perms", [NOTHING, BILLING], ids=["nothing", "edit_billing"])
def test_s12_giving_or_taking_seats_and_managing_users_needs_account_access(
    domain: SeatDomain, store: MemoryStore, operation: str, perms: Permissions
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SERVICE, STARTER, 0))
    target = new_user(domain, tenant, "target", seats=((SALES, STARTER),))
    actor = new_user(domain, tenant, "actor", perms)

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="account_access"):
        ACCESS_CALLS[operation](domain, tenant, as_user(actor), target)


@pytest.mark.parametrize("operation", sorted(set(ACCESS_CALLS) - {"delete_user"}))
def test_s12_account_access_alone_may_manage_seats_and_users(
    domain: SeatDomain, store: MemoryStore, operation: str
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SERVICE, STARTER, 0))
    target = new_user(domain, tenant, "target", seats=((SALES, STARTER),))
    manager = new_user(domain, tenant, "manager", ACCESS)
    before = sequence(store, tenant)

    ACCESS_CALLS[operation](domain, tenant, as_user(manager), target)

    assert sequence(store, tenant) > before


def test_s12_an_upgrade_that_gives_seats_needs_account_access_too(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann")
    biller = new_user(domain, tenant, "biller", BILLING)

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="account_access"):
        domain.upgrade(as_user(biller), tenant.account_id, SALES, PROFESSIONAL, 0, [ann.user_id])

    domain.upgrade(as_user(biller), tenant.account_id, SALES, PROFESSIONAL, 0, [])
    assert (SALES, PROFESSIONAL) in pools(domain, tenant)


def test_s12_an_actor_of_another_account_has_no_permission_here(domain: SeatDomain, store: MemoryStore) -> None:
    home, other = open_account(domain, (SALES, STARTER, 1)), open_account(domain, (SALES, STARTER, 1))
    member = new_user(domain, home, "member")

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT", actor=other.owner_id):
        domain.assign_seat(other.owner, home.account_id, member.user_id, SALES, STARTER)
    with refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        domain.get_account(other.owner, home.account_id)
    with refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        domain.check_seats(other.owner, home.account_id, SALES, [member.user_id])


def test_s12_an_unknown_account_is_not_told_to_an_actor(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    with refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        domain.purchase_seats(tenant.owner, "acc_missing", SALES, STARTER, 1)
    with refused(Kind.NOT_FOUND, "ACCOUNT_NOT_FOUND"):
        domain.purchase_seats(SYSTEM, "acc_missing", SALES, STARTER, 1)


def test_s19_the_owner_is_a_super_admin_without_a_seat(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    owner = domain.get_user(tenant.owner, tenant.account_id, tenant.owner_id)

    assert owner.permissions.super_admin and owner.seats == ()
    tiers, _ = domain.check_seats(tenant.owner, tenant.account_id, SALES, [tenant.owner_id])
    assert tiers == [None], "a super admin still needs a seat for paid features"


def test_s19_a_super_admin_holds_every_permission(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", SUPER)  # neither flag set, only super admin
    ann = new_user(domain, tenant, "ann")

    domain.assign_seat(as_user(admin), tenant.account_id, ann.user_id, SALES, STARTER)
    result = domain.assign_seat(as_user(admin), tenant.account_id, admin.user_id, SALES, STARTER, True)

    assert result.charge is not None and result.charge.quantity == 1
    assert pool_counts(domain, tenant, SALES, STARTER)["assigned"] == 2


def test_s19_only_a_super_admin_grants_super_admin(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", BOTH)
    ann = new_user(domain, tenant, "ann")

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="super_admin"):
        domain.create_user(as_user(manager), tenant.account_id, "boss@acme.test", "", SUPER, [])
    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="super_admin"):
        domain.update_user(as_user(manager), tenant.account_id, ann.user_id, UserChanges(super_admin=True), "")

    promoted = domain.update_user(tenant.owner, tenant.account_id, ann.user_id, UserChanges(super_admin=True), "")
    assert promoted.permissions.super_admin


def test_s19_accounts_are_made_by_system_calls_only(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "SYSTEM_CALL_ONLY"):
        domain.create_account(tenant.owner, NewAccount("Other", "x@other.test", "", [], 1, None))


# ---- S8, S10, S11, S18: seats that are held ------------------------------------------------------


def test_s8_assigned_seats_cannot_be_removed(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 1))  # 2 included + 1 purchased
    holders = [new_user(domain, tenant, name, seats=((SALES, PROFESSIONAL),)) for name in ("ann", "bob", "cy")]

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "SEATS_ASSIGNED", removable="0", requested="1"):
        domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)

    domain.unassign_seat(tenant.owner, tenant.account_id, holders[0].user_id, SALES)
    view = domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    assert (view.pending_removal, view.available) == (1, 0)
    with refused(Kind.FAILED_PRECONDITION, "SEATS_ASSIGNED", removable="0"):
        domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)


def test_s10_user_with_seat_cannot_be_deleted(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, STARTER), (SERVICE, STARTER)))

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "USER_HOLDS_SEATS", hubs="SALES,SERVICE"):
        domain.delete_user(tenant.owner, tenant.account_id, ann.user_id, "")

    domain.unassign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES)
    with refused(Kind.FAILED_PRECONDITION, "USER_HOLDS_SEATS", hubs="SERVICE"):
        domain.delete_user(tenant.owner, tenant.account_id, ann.user_id, "")
    domain.unassign_seat(tenant.owner, tenant.account_id, ann.user_id, SERVICE)
    before = sequence(store, tenant)
    domain.delete_user(tenant.owner, tenant.account_id, ann.user_id, "")
    assert types_since(store, tenant, before) == [EventType.USER_DELETED]
    with refused(Kind.NOT_FOUND, "USER_NOT_FOUND"):
        domain.get_user(tenant.owner, tenant.account_id, ann.user_id)


def test_s10_the_store_refuses_to_delete_a_user_holding_a_seat(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, STARTER),))

    with nothing_changes(store), pytest.raises(pw.IntegrityError):
        store.write(lambda: store.delete_user(tenant.account_id, ann.user_id))


def test_s10_the_owner_cannot_be_deleted(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "OWNER_NOT_DELETABLE"):
        domain.delete_user(tenant.owner, tenant.account_id, tenant.owner_id, "")


def test_s11_assigning_a_seat_pending_removal_cancels_it(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 1))  # 3 seats
    *_, cy = [new_user(domain, tenant, name, seats=((SALES, PROFESSIONAL),)) for name in ("ann", "bob", "cy")]
    domain.unassign_seat(tenant.owner, tenant.account_id, cy.user_id, SALES)
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, PROFESSIONAL, 1)
    dee = new_user(domain, tenant, "dee")

    result = domain.assign_seat(tenant.owner, tenant.account_id, dee.user_id, SALES, PROFESSIONAL)

    assert result.charge is None
    assert counts(result.pool) == {"included": 2, "purchased": 1, "assigned": 3, "available": 0, "pending_removal": 0}
    assert result.pool.removal_effective_time is None
    clock.advance(days=31, hours=1)
    assert pool_counts(domain, tenant, SALES, PROFESSIONAL)["purchased"] == 1, "the seat survives the renewal"
    assert seats_of(domain, tenant, dee.user_id) == {(SALES, PROFESSIONAL)}


def test_s11_a_batch_that_takes_a_pending_seat_cancels_its_removal(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))  # 2 seats
    ann = new_user(domain, tenant, "ann", seats=((SALES, STARTER),))
    bob = new_user(domain, tenant, "bob")
    domain.schedule_removal(tenant.owner, tenant.account_id, SALES, STARTER, 1)

    result = domain.batch_update(tenant.owner, tenant.account_id, [(bob.user_id, SALES, STARTER)])

    assert [r.outcome for r in result.results] == [ChangeOutcome.ASSIGNED]
    assert pool_counts(domain, tenant, SALES, STARTER) == {
        "included": 1,
        "purchased": 1,
        "assigned": 2,
        "available": 0,
        "pending_removal": 0,
    }
    assert seats_of(domain, tenant, ann.user_id) == {(SALES, STARTER)}


def test_s18_unassigning_keeps_the_seat_in_the_pool(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 1))  # 3 seats
    *_, cy = [new_user(domain, tenant, name, seats=((SALES, PROFESSIONAL),)) for name in ("ann", "bob", "cy")]
    charges_before = domain.preview_invoice(tenant.owner, tenant.account_id)

    view = domain.unassign_seat(tenant.owner, tenant.account_id, cy.user_id, SALES)

    assert counts(view) == {"included": 2, "purchased": 1, "assigned": 2, "available": 1, "pending_removal": 0}
    assert domain.preview_invoice(tenant.owner, tenant.account_id) == charges_before, "billed until renewal"
    dee = new_user(domain, tenant, "dee")
    domain.assign_seat(tenant.owner, tenant.account_id, dee.user_id, SALES, PROFESSIONAL)
    assert pool_counts(domain, tenant, SALES, PROFESSIONAL)["purchased"] == 1, "the seat was reused, not bought"


def test_s18_a_user_without_a_seat_of_the_hub_has_nothing_to_unassign(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann")

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "SEAT_NOT_ASSIGNED", hub="SALES"):
        domain.unassign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES)


# ---- S13, S14: grants --------------------------------------------------------------------------


def test_s13_each_grant_takes_exactly_one_seat_of_its_hub_and_tier(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, PROFESSIONAL, 0), (SALES, ENTERPRISE, 0), (SERVICE, PROFESSIONAL, 0))
    ann = new_user(domain, tenant, "ann")
    before = sequence(store, tenant)

    first = domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, PROFESSIONAL)
    with nothing_changes(store):
        again = domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, PROFESSIONAL)
    moved = domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, ENTERPRISE)

    assert (first.changed, again.changed, moved.changed) == (True, False, True)
    assert moved.previous_tier is PROFESSIONAL
    assert {key: p.assigned for key, p in pools(domain, tenant).items()} == {
        (SALES, PROFESSIONAL): 0,
        (SALES, ENTERPRISE): 1,
        (SERVICE, PROFESSIONAL): 0,
    }
    assert seats_of(domain, tenant, ann.user_id) == {(SALES, ENTERPRISE)}
    assert types_since(store, tenant, before) == [
        EventType.SEAT_ASSIGNED,
        EventType.SEAT_UNASSIGNED,
        EventType.SEAT_ASSIGNED,
    ]


def test_s13_a_user_without_a_seat_has_no_paid_access(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SERVICE, STARTER, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, STARTER),))
    bob = new_user(domain, tenant, "bob")

    assert domain.check_seats(tenant.owner, tenant.account_id, SALES, [ann.user_id, bob.user_id])[0] == [STARTER, None]
    assert domain.check_seats(tenant.owner, tenant.account_id, SERVICE, [ann.user_id])[0] == [None]


def test_s14_a_full_pool_can_buy_a_seat_with_the_grant(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))  # 1 seat
    new_user(domain, tenant, "ann", seats=((SALES, STARTER),))
    bob = new_user(domain, tenant, "bob")
    clock.advance(days=10)
    before = sequence(store, tenant)

    result = domain.assign_seat(tenant.owner, tenant.account_id, bob.user_id, SALES, STARTER, purchase_if_needed=True)

    assert result.charge is not None
    assert (result.charge.kind, result.charge.quantity, result.charge.amount_minor) == (
        ChargeKind.PRORATED_SEATS,
        1,
        prorated(2000, 21, 31),
    )
    assert counts(result.pool) == {"included": 1, "purchased": 1, "assigned": 2, "available": 0, "pending_removal": 0}
    assert types_since(store, tenant, before) == [EventType.SEATS_PURCHASED, EventType.SEAT_ASSIGNED]


def test_s14_no_seat_is_bought_while_one_is_free(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann")

    result = domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, STARTER, purchase_if_needed=True)

    assert result.charge is None
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 0


def test_s14_buying_with_the_grant_needs_edit_billing(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    new_user(domain, tenant, "ann", seats=((SALES, STARTER),))
    bob = new_user(domain, tenant, "bob")
    manager = new_user(domain, tenant, "manager", ACCESS)

    with nothing_changes(store), refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="edit_billing"):
        domain.assign_seat(as_user(manager), tenant.account_id, bob.user_id, SALES, STARTER, purchase_if_needed=True)

    both = new_user(domain, tenant, "both", BOTH)
    result = domain.assign_seat(as_user(both), tenant.account_id, bob.user_id, SALES, STARTER, purchase_if_needed=True)
    assert result.charge is not None


def test_s14_create_user_can_buy_the_seats_it_grants(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    new_user(domain, tenant, "ann", seats=((SALES, STARTER), (SERVICE, STARTER)))

    user, charges = domain.create_user(
        tenant.owner,
        tenant.account_id,
        "bob@acme.test",
        "",
        NOTHING,
        [SeatRef(SALES, STARTER), SeatRef(SERVICE, STARTER)],
        purchase_if_needed=True,
    )

    assert sorted((c.hub, c.quantity) for c in charges) == [(SALES, 1), (SERVICE, 1)]
    assert seats_of(domain, tenant, user.user_id) == {(SALES, STARTER), (SERVICE, STARTER)}


# ---- S15, S16: users ---------------------------------------------------------------------------


@pytest.mark.parametrize("perms", [NOTHING, SUPER], ids=["plain", "super_admin"])
def test_s15_creating_a_user_grants_no_seat(domain: SeatDomain, store: MemoryStore, perms: Permissions) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))
    before = sequence(store, tenant)

    user = new_user(domain, tenant, "ann", perms)

    assert user.seats == () and seats_of(domain, tenant, user.user_id) == set()
    assert pool_counts(domain, tenant, SALES, STARTER)["assigned"] == 0
    assert types_since(store, tenant, before) == [EventType.USER_CREATED]


def test_s16_a_user_gets_a_sales_and_a_service_seat_in_the_create_call(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, PROFESSIONAL, 0))
    before = sequence(store, tenant)

    user = new_user(domain, tenant, "ann", seats=((SERVICE, PROFESSIONAL), (SALES, STARTER)))

    assert user.seats == (SeatRef(SALES, STARTER), SeatRef(SERVICE, PROFESSIONAL))
    assert seats_of(domain, tenant, user.user_id) == {(SALES, STARTER), (SERVICE, PROFESSIONAL)}
    assert types_since(store, tenant, before) == [
        EventType.USER_CREATED,
        EventType.SEAT_ASSIGNED,
        EventType.SEAT_ASSIGNED,
    ]


def test_s16_email_is_unique_in_the_account_case_insensitively(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    domain.create_user(tenant.owner, tenant.account_id, "Ann@Acme.test", "", NOTHING, [])

    with nothing_changes(store), refused(Kind.ALREADY_EXISTS, "EMAIL_TAKEN"):
        domain.create_user(tenant.owner, tenant.account_id, "ann@ACME.TEST", "", NOTHING, [])
    with refused(Kind.ALREADY_EXISTS, "EMAIL_TAKEN"):
        domain.create_user(tenant.owner, tenant.account_id, "  OWNER@acme.test ", "", NOTHING, [])


def test_s16_the_same_email_in_another_account_is_fine(domain: SeatDomain) -> None:
    first, second = open_account(domain, (SALES, STARTER, 0)), open_account(domain, (SALES, STARTER, 0))

    a = domain.create_user(first.owner, first.account_id, "ann@acme.test", "", NOTHING, [])[0]
    b = domain.create_user(second.owner, second.account_id, "ANN@acme.test", "", NOTHING, [])[0]

    assert a.user_id != b.user_id and (a.account_id, b.account_id) == (first.account_id, second.account_id)


def test_s16_an_email_change_to_a_taken_email_is_refused(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    new_user(domain, tenant, "ann")
    bob = new_user(domain, tenant, "bob")

    with nothing_changes(store), refused(Kind.ALREADY_EXISTS, "EMAIL_TAKEN"):
        domain.update_user(tenant.owner, tenant.account_id, bob.user_id, UserChanges(email="ANN@acme.test"), "")

    renamed = domain.update_user(tenant.owner, tenant.account_id, bob.user_id, UserChanges(email="BOB@acme.test"), "")
    assert renamed.email == "BOB@acme.test" and renamed.version == bob.version + 1


def test_s16_the_store_refuses_a_second_email_key_in_the_account(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    twin = User("usr_twin", tenant.account_id, "OWNER@acme.test", "twin", NOTHING, 1, START, START)

    with nothing_changes(store), pytest.raises(pw.IntegrityError):
        store.write(lambda: store.insert_user(twin, "owner@acme.test"))


def test_s16_two_seats_of_one_hub_in_one_create_call_are_refused(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))

    with nothing_changes(store), refused(Kind.INVALID_ARGUMENT, "INVALID_FIELD", field="seats"):
        new_user(domain, tenant, "ann", seats=((SALES, STARTER), (SALES, PROFESSIONAL)))


def test_s16_a_create_call_whose_seat_is_full_creates_nobody(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    new_user(domain, tenant, "ann", seats=((SERVICE, STARTER),))

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        new_user(domain, tenant, "bob", seats=((SALES, STARTER), (SERVICE, STARTER)))

    assert [u.email for u in domain.list_users(tenant.owner, tenant.account_id, None, 0, "").items].count(
        "bob@acme.test"
    ) == 0


# ---- S17: batches ------------------------------------------------------------------------------


def test_s17_the_view_shows_purchased_and_assigned_per_pool(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 2), (SERVICE, PROFESSIONAL, 1))
    new_user(domain, tenant, "ann", seats=((SALES, STARTER), (SERVICE, PROFESSIONAL)))
    new_user(domain, tenant, "bob", seats=((SALES, STARTER),))

    shown = domain.get_account(tenant.owner, tenant.account_id).pools

    assert [(p.hub, p.tier, p.purchased, p.assigned, p.available) for p in shown] == [
        (SALES, STARTER, 2, 2, 1),
        (SERVICE, PROFESSIONAL, 1, 1, 2),
    ]


def test_s17_a_batch_saves_every_change_at_once(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0))
    mover = new_user(domain, tenant, "mover", seats=((SALES, STARTER),))
    leaver = new_user(domain, tenant, "leaver", seats=((SERVICE, STARTER),))
    keeper = new_user(domain, tenant, "keeper", seats=((SALES, STARTER),))
    newcomer = new_user(domain, tenant, "newcomer")

    result = domain.batch_update(
        tenant.owner,
        tenant.account_id,
        [
            (mover.user_id, SALES, PROFESSIONAL),
            (leaver.user_id, SERVICE, None),
            (keeper.user_id, SALES, STARTER),
            (newcomer.user_id, SERVICE, STARTER),
            (newcomer.user_id, SALES, None),
        ],
    )

    assert [(r.user_id, r.tier, r.previous_tier, r.outcome) for r in result.results] == [
        (mover.user_id, PROFESSIONAL, STARTER, ChangeOutcome.MOVED),
        (leaver.user_id, None, STARTER, ChangeOutcome.UNASSIGNED),
        (keeper.user_id, STARTER, STARTER, ChangeOutcome.UNCHANGED),
        (newcomer.user_id, STARTER, None, ChangeOutcome.ASSIGNED),
        (newcomer.user_id, None, None, ChangeOutcome.UNCHANGED),
    ]
    assert [(p.hub, p.tier, p.assigned) for p in result.pools] == [
        (SALES, STARTER, 1),
        (SALES, PROFESSIONAL, 1),
        (SERVICE, STARTER, 1),
    ]
    assert seats_of(domain, tenant, mover.user_id) == {(SALES, PROFESSIONAL)}
    assert seats_of(domain, tenant, leaver.user_id) == set()
    assert seats_of(domain, tenant, newcomer.user_id) == {(SERVICE, STARTER)}


def test_s17_a_batch_is_all_or_nothing(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    holder = new_user(domain, tenant, "holder", seats=((SALES, STARTER),))
    first, second = new_user(domain, tenant, "first"), new_user(domain, tenant, "second")

    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as caught:
        domain.batch_update(
            tenant.owner,
            tenant.account_id,
            [
                (holder.user_id, SALES, None),
                (first.user_id, SERVICE, STARTER),
                (first.user_id, SALES, STARTER),
                (second.user_id, SALES, STARTER),
            ],
        )

    assert caught.value.preconditions[0][1] == "changes[3]"
    assert seats_of(domain, tenant, holder.user_id) == {(SALES, STARTER)}


def test_s17_a_batch_with_an_unknown_user_changes_nothing(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 2))
    ann = new_user(domain, tenant, "ann")

    with nothing_changes(store), refused(Kind.NOT_FOUND, "USER_NOT_FOUND", user_id="usr_missing", change="1"):
        domain.batch_update(
            tenant.owner, tenant.account_id, [(ann.user_id, SALES, STARTER), ("usr_missing", SALES, STARTER)]
        )


def test_s17_a_batch_is_judged_on_its_final_state(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))  # 1 and 2 seats
    low = new_user(domain, tenant, "low", seats=((SALES, STARTER),))
    high = new_user(domain, tenant, "high", seats=((SALES, PROFESSIONAL),))
    new_user(domain, tenant, "other", seats=((SALES, PROFESSIONAL),))
    newcomer = new_user(domain, tenant, "newcomer")

    swap = domain.batch_update(
        tenant.owner, tenant.account_id, [(low.user_id, SALES, PROFESSIONAL), (high.user_id, SALES, STARTER)]
    )
    hand_over = domain.batch_update(
        tenant.owner, tenant.account_id, [(newcomer.user_id, SALES, STARTER), (high.user_id, SALES, None)]
    )

    assert [r.outcome for r in swap.results] == [ChangeOutcome.MOVED, ChangeOutcome.MOVED]
    assert [r.outcome for r in hand_over.results] == [ChangeOutcome.ASSIGNED, ChangeOutcome.UNASSIGNED]
    assert seats_of(domain, tenant, low.user_id) == {(SALES, PROFESSIONAL)}
    assert seats_of(domain, tenant, newcomer.user_id) == {(SALES, STARTER)}
    assert seats_of(domain, tenant, high.user_id) == set()


def test_s17_validate_only_leaves_nothing(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))
    ann = new_user(domain, tenant, "ann")
    seen: list[str] = []
    store.add_commit_listener(seen.append)

    with nothing_changes(store):
        result = domain.batch_update(tenant.owner, tenant.account_id, [(ann.user_id, SALES, STARTER)], True)

    assert [r.outcome for r in result.results] == [ChangeOutcome.ASSIGNED]
    assert [(p.tier, p.assigned) for p in result.pools] == [(STARTER, 1)]
    assert seen == [], "a dry run notifies nobody"
    assert seats_of(domain, tenant, ann.user_id) == set()
    assert pool_counts(domain, tenant, SALES, STARTER)["assigned"] == 0


def test_s17_two_changes_for_one_user_and_hub_are_refused(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0))
    ann = new_user(domain, tenant, "ann")

    with nothing_changes(store), refused(Kind.INVALID_ARGUMENT, "INVALID_FIELD", field="changes[1]"):
        domain.batch_update(
            tenant.owner, tenant.account_id, [(ann.user_id, SALES, STARTER), (ann.user_id, SALES, PROFESSIONAL)]
        )


# ---- I1..I6 against the store ---------------------------------------------------------------------


def _stored_pool(store: MemoryStore, tenant: Tenant, hub: Hub, tier: Tier) -> Pool:
    return store.load_pools(tenant.account_id)[(hub, tier)]


def test_i1_the_store_refuses_more_assigned_than_capacity(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1))
    over = Pool(SALES, STARTER, 1, 1, 3, 0, dirty=True)

    with nothing_changes(store), pytest.raises(pw.IntegrityError):
        store.write(lambda: store.save_pools(tenant.account_id, [over]))
    with pytest.raises(pw.IntegrityError):
        store.write(lambda: store.save_pools(tenant.account_id, [Pool(SALES, STARTER, 1, 1, -1, 0, dirty=True)]))


def test_i2_the_store_refuses_pending_removal_of_assigned_seats(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 2))  # 1 included + 2 purchased

    for bad in (Pool(SALES, STARTER, 1, 2, 2, 2, dirty=True), Pool(SALES, STARTER, 1, 2, 0, 3, dirty=True)):
        with nothing_changes(store), pytest.raises(pw.IntegrityError):
            store.write(partial(store.save_pools, tenant.account_id, [bad]))
    ok = Pool(SALES, STARTER, 1, 2, 0, 1, dirty=True)
    store.write(lambda: store.save_pools(tenant.account_id, [ok]))
    assert (ok.dirty, _stored_pool(store, tenant, SALES, STARTER).pending_removal) == (False, 1)
    # Put the row back: the change bypassed the domain and logged no event (the check after the test replays the log).
    store.write(lambda: store.save_pools(tenant.account_id, [Pool(SALES, STARTER, 1, 2, 0, 0, dirty=True)]))


def test_i3_the_store_keeps_one_seat_per_user_and_hub_in_the_users_own_account(
    domain: SeatDomain, store: MemoryStore
) -> None:
    home = open_account(domain, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))
    other = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, home, "ann")
    seat = Assignment(ann.user_id, SALES, STARTER, START)

    def in_a_pool_of_another_account() -> None:
        store.insert_assignment(other.account_id, seat)

    def to_a_user_of_no_account() -> None:
        store.insert_assignment(home.account_id, Assignment("usr_nobody", SALES, STARTER, START))

    def in_a_pool_that_does_not_exist() -> None:
        store.insert_assignment(home.account_id, Assignment(ann.user_id, SERVICE, STARTER, START))

    def a_second_seat_of_the_hub() -> None:
        store.insert_assignment(home.account_id, seat)
        store.insert_assignment(home.account_id, Assignment(ann.user_id, SALES, PROFESSIONAL, START))

    def a_move_to_a_pool_that_does_not_exist() -> None:
        store.insert_assignment(home.account_id, seat)
        store.move_assignment(home.account_id, Assignment(ann.user_id, SALES, ENTERPRISE, START))

    for refusal in (
        in_a_pool_of_another_account,
        to_a_user_of_no_account,
        in_a_pool_that_does_not_exist,
        a_second_seat_of_the_hub,
        a_move_to_a_pool_that_does_not_exist,
    ):
        with nothing_changes(store), pytest.raises(pw.IntegrityError):
            store.write(refusal)


def test_i4_every_change_appends_exactly_one_event_in_order(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0))
    ann = new_user(domain, tenant, "ann")
    owner, acc = tenant.owner, tenant.account_id

    def renew() -> int:
        clock.advance(days=32)
        return domain.renew_due()

    steps: list[tuple[Callable[[], object], list[EventType]]] = [
        (lambda: domain.assign_seat(owner, acc, ann.user_id, SALES, STARTER), [EventType.SEAT_ASSIGNED]),
        (
            lambda: domain.assign_seat(owner, acc, ann.user_id, SALES, PROFESSIONAL),
            [EventType.SEAT_UNASSIGNED, EventType.SEAT_ASSIGNED],  # two pools change
        ),
        (lambda: domain.purchase_seats(owner, acc, SALES, STARTER, 2), [EventType.SEATS_PURCHASED]),
        (lambda: domain.schedule_removal(owner, acc, SALES, STARTER, 2), [EventType.SEAT_REMOVAL_SCHEDULED]),
        (lambda: domain.cancel_removal(owner, acc, SALES, STARTER, 1), [EventType.SEAT_REMOVAL_CANCELLED]),
        (lambda: domain.unassign_seat(owner, acc, ann.user_id, SALES), [EventType.SEAT_UNASSIGNED]),
        (
            lambda: domain.update_user(owner, acc, ann.user_id, UserChanges(display_name="A"), ""),
            [EventType.USER_UPDATED],
        ),
        (lambda: domain.update_user(owner, acc, ann.user_id, UserChanges(display_name="A"), ""), []),
        (lambda: domain.delete_user(owner, acc, ann.user_id, ""), [EventType.USER_DELETED]),
        (renew, [EventType.INVOICE_ISSUED, EventType.SEATS_REMOVED, EventType.TERM_RENEWED]),
        (lambda: domain.renew_due(), []),
    ]
    for run, expected in steps:
        before = sequence(store, tenant)
        run()
        logged = events(store, tenant, before)
        assert [e.type for e in logged] == expected
        renewal = run is renew
        assert all(e.actor == ("system" if renewal else tenant.owner_id) for e in logged)


def test_i4_the_store_refuses_a_second_event_with_the_same_sequence(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    stale = store.get_account(tenant.account_id)
    assert stale is not None
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)

    with nothing_changes(store), pytest.raises(pw.IntegrityError):
        store.write(lambda: store.append_events(stale, [Event(EventType.TERM_RENEWED, "system", START)]))


def test_i4_concurrent_writers_all_land_with_a_gapless_log(store: MemoryStore, clock: ManualClock) -> None:
    first, second = SeatDomain(store, PRICES, clock), SeatDomain(store, PRICES, clock)  # two processes
    tenant = open_account(first, (SALES, STARTER, 0))
    errors: list[BaseException] = []

    def buy(domain: SeatDomain) -> None:
        try:
            for _ in range(10):
                domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=buy, args=(d,)) for d in (first, second) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)

    assert errors == []
    assert pool_counts(first, tenant, SALES, STARTER)["purchased"] == 80
    assert types_since(store, tenant, 0).count(EventType.SEATS_PURCHASED) == 80
    assert len(first.preview_invoice(tenant.owner, tenant.account_id).current_term_charges) == 1 + 80


def _replay(store: MemoryStore, clock: ManualClock, scope: str, request_id: str, compute: Callable[[], bytes]) -> bytes:
    """What the servicers do with a request id (service/servicers/common.py, Replay): in one write,
    the use case looks the id up once it holds the account and checked the actor, and answers
    the first result of the id, or runs and its result is recorded."""
    return run_once(
        store, clock, timedelta(hours=24), scope, request_id, "fingerprint", compute, lambda b: b, lambda b: b
    )


def test_i5_a_retried_request_has_its_effect_once_and_returns_the_first_result(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))

    def purchase() -> bytes:
        _, charge = domain.purchase_seats(Call(tenant.owner_id, "req-1"), tenant.account_id, SALES, STARTER, 1)
        return charge.charge_id.encode()

    first = _replay(store, clock, tenant.account_id, "req-1", purchase)
    clock.advance(hours=1)
    again = _replay(store, clock, tenant.account_id, "req-1", purchase)

    assert again == first
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 1
    clock.advance(hours=24)  # the record expired: the same id is a new request
    assert _replay(store, clock, tenant.account_id, "req-1", purchase) != first
    assert store.write(lambda: store.purge_requests(clock.now() + timedelta(hours=24, seconds=1))) == 1
    assert store.find_request(tenant.account_id, "req-1", START) is None


def test_i5_a_twin_request_record_runs_the_write_again(store: MemoryStore, clock: ManualClock) -> None:
    """A call that lost the race for its request id is undone and run again, and then finds the
    twin's result (the real store's retry)."""
    now = clock.now()
    store.write(lambda: store.save_request("system", "req-1", "fp", b"first", now, now - timedelta(hours=1)))
    attempts: list[int] = []

    def blind() -> bytes:
        attempts.append(1)
        if len(attempts) == 1:  # as if the twin committed while this call ran
            store.save_request("system", "req-1", "fp", b"second", now, now - timedelta(hours=1))
        found = store.find_request("system", "req-1", now - timedelta(hours=1))
        assert found is not None
        return found[1]

    assert store.write(blind) == b"first"
    assert len(attempts) == 2


# ---- the in-memory unit of work keeps the real store's promises ------------------------------------


def test_unit_of_work_nested_writes_join_and_commit_callbacks_wait_for_the_outermost(
    domain: SeatDomain, store: MemoryStore
) -> None:
    """The servicers wrap a use case in a write of their own (request ids): the use case's write
    joins it, and nothing of it is kept or announced unless the outer write commits."""
    tenant = open_account(domain, (SALES, STARTER, 0))
    announced: list[str] = []
    store.add_commit_listener(announced.append)

    def outer_then_fail() -> None:
        domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
        assert announced == [], "not before the outer write commits"
        raise RuntimeError("the outer write fails after the use case")

    with nothing_changes(store), pytest.raises(RuntimeError):
        store.write(outer_then_fail)
    with nothing_changes(store):
        store.write(lambda: domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1), dry_run=True)

    assert announced == []
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 0, "the domain kept no copy of either"
    store.write(lambda: domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1))
    assert announced == [tenant.account_id]
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 1
    with pytest.raises(RuntimeError):
        store.after_commit(lambda: None)


def test_unit_of_work_reads_never_see_a_write_that_has_not_committed(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    committed = sequence(store, tenant)
    inside, release = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow_purchase() -> None:
        domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
        inside.set()
        assert release.wait(10)

    writer = threading.Thread(target=store.write, args=(slow_purchase,))
    writer.start()
    assert inside.wait(10)
    readers = [
        threading.Thread(target=lambda: seen.append(store.read(lambda: store.account_sequence(tenant.account_id)))),
        threading.Thread(target=lambda: seen.append(store.account_sequence(tenant.account_id))),  # as _state does
    ]
    for reader in readers:
        reader.start()
        reader.join(0.05)
        assert reader.is_alive(), "a read waits for the write"
    assert seen == []
    release.set()
    writer.join(10)
    for reader in readers:
        reader.join(10)
    assert seen == [committed + 1, committed + 1]


# ---- check_seats, reads and paging ---------------------------------------------------------------


def test_check_seats_answers_in_request_order_with_the_sequence_it_reflects(
    domain: SeatDomain, store: MemoryStore
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 1), (SALES, ENTERPRISE, 0))
    ann = new_user(domain, tenant, "ann", seats=((SALES, ENTERPRISE),))
    bob = new_user(domain, tenant, "bob")
    cy = new_user(domain, tenant, "cy", seats=((SALES, STARTER),))
    reader = new_user(domain, tenant, "reader")  # no permission is needed to read

    tiers, at = domain.check_seats(
        as_user(reader), tenant.account_id, SALES, [bob.user_id, ann.user_id, "usr_nobody", cy.user_id, ann.user_id]
    )

    assert tiers == [None, ENTERPRISE, None, STARTER, ENTERPRISE]
    assert at == sequence(store, tenant)
    domain.assign_seat(tenant.owner, tenant.account_id, bob.user_id, SALES, STARTER)
    tiers, later = domain.check_seats(as_user(reader), tenant.account_id, SALES, [bob.user_id])
    assert (tiers, later) == ([STARTER], at + 1)
    with refused(Kind.INVALID_ARGUMENT, "INVALID_FIELD", field="user_ids"):
        domain.check_seats(tenant.owner, tenant.account_id, SALES, [])


def test_get_user_shows_its_seats_and_hides_other_accounts_users(domain: SeatDomain) -> None:
    tenant, other = open_account(domain, (SALES, STARTER, 0)), open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann", BILLING, seats=((SALES, STARTER),))

    got = domain.get_user(tenant.owner, tenant.account_id, ann.user_id)

    assert (got.email, got.permissions, got.seats, got.etag) == (
        "ann@acme.test",
        BILLING,
        (SeatRef(SALES, STARTER),),
        "1",
    )
    with refused(Kind.NOT_FOUND, "USER_NOT_FOUND", user_id=ann.user_id):
        domain.get_user(other.owner, other.account_id, ann.user_id)


def test_list_users_pages_in_user_id_order_and_filters_by_hub(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 5), (SERVICE, STARTER, 5))
    made = [
        new_user(domain, tenant, f"user{i}", seats=((SALES, STARTER),) if i % 2 else ((SERVICE, STARTER),))
        for i in range(7)
    ]
    new_user(domain, open_account(domain, (SALES, STARTER, 0)), "stranger")

    everyone = _all_pages(lambda token: domain.list_users(tenant.owner, tenant.account_id, None, 3, token))
    sales = _all_pages(lambda token: domain.list_users(tenant.owner, tenant.account_id, SALES, 2, token))

    ids = [u.user_id for page in everyone for u in page]
    assert [len(page) for page in everyone] == [3, 3, 2] and ids == sorted(ids)
    assert {u.email for page in everyone for u in page} == {"owner@acme.test"} | {
        f"user{i}@acme.test" for i in range(7)
    }
    assert [len(page) for page in sales] == [2, 1]
    assert [u.user_id for page in sales for u in page] == sorted(u.user_id for u in made[1::2])
    assert all(u.seats == (SeatRef(SALES, STARTER),) for page in sales for u in page)
    token = domain.list_users(tenant.owner, tenant.account_id, None, 3, "").next_key
    assert token is not None
    with refused(Kind.INVALID_ARGUMENT, "INVALID_FIELD", field="page_token"):
        domain.list_users(tenant.owner, tenant.account_id, SALES, 3, token)


def test_list_assignments_pages_by_user_and_hub_and_filters(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 5), (SERVICE, PROFESSIONAL, 5))
    for i in range(4):
        new_user(domain, tenant, f"user{i}", seats=((SALES, STARTER), (SERVICE, PROFESSIONAL)))

    pages = _all_pages(lambda token: domain.list_assignments(tenant.owner, tenant.account_id, None, None, 3, token))
    service = _all_pages(
        lambda token: domain.list_assignments(tenant.owner, tenant.account_id, SERVICE, PROFESSIONAL, 3, token)
    )

    keys = [(a.user_id, a.hub) for page in pages for a in page]
    assert [len(page) for page in pages] == [3, 3, 2]
    assert keys == sorted(keys) and len(set(keys)) == 8
    assert [len(page) for page in service] == [3, 1]
    assert all((a.hub, a.tier) == (SERVICE, PROFESSIONAL) for page in service for a in page)
    assert domain.list_assignments(tenant.owner, tenant.account_id, SALES, ENTERPRISE, 3, "").items == []


def test_list_events_pages_through_the_whole_log(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    for i in range(3):
        new_user(domain, tenant, f"user{i}")

    pages = _all_pages(lambda token: domain.list_events(tenant.owner, tenant.account_id, 0, 2, token))
    tail = domain.list_events(tenant.owner, tenant.account_id, 4, 10, "")

    assert [e.sequence for page in pages for e in page] == list(range(1, sequence(store, tenant) + 1))
    assert [e.sequence for e in tail.items] == [5, 6] and tail.next_key is None


def _all_pages(fetch: Callable[[str], Page[T]]) -> list[list[T]]:
    pages: list[list[T]] = []
    token = ""
    while True:
        page = fetch(token)
        pages.append(page.items)
        if page.next_key is None:
            return pages
        token = page.next_key


# ---- the snapshot cache never serves a stale account ------------------------------------------------


def test_the_snapshot_cache_never_serves_a_state_another_process_changed(
    store: MemoryStore, clock: ManualClock
) -> None:
    mine, theirs = SeatDomain(store, PRICES, clock), SeatDomain(store, PRICES, clock)  # one store, two processes
    tenant = open_account(mine, (SALES, STARTER, 0))
    ann = new_user(mine, tenant, "ann", seats=((SALES, STARTER),))
    bob = new_user(mine, tenant, "bob")
    acc = tenant.account_id
    assert mine.check_seats(tenant.owner, acc, SALES, [ann.user_id, bob.user_id])[0] == [STARTER, None]
    assert mine.get_user(tenant.owner, acc, bob.user_id).display_name == "bob"
    cached = mine.snapshots.get(acc, sequence(store, tenant))
    assert cached is not None, "the reads above filled the cache"

    theirs.unassign_seat(tenant.owner, acc, ann.user_id, SALES)
    theirs.assign_seat(tenant.owner, acc, bob.user_id, SALES, STARTER)
    theirs.update_user(tenant.owner, acc, bob.user_id, UserChanges(display_name="Bob B."), "")

    assert mine.check_seats(tenant.owner, acc, SALES, [ann.user_id, bob.user_id]) == (
        [None, STARTER],
        sequence(store, tenant),
    )
    assert mine.get_user(tenant.owner, acc, bob.user_id).display_name == "Bob B."
    assert counts(pools(mine, tenant)[(SALES, STARTER)])["assigned"] == 1

    theirs.purchase_seats(tenant.owner, acc, SALES, STARTER, 1)
    assert pools(mine, tenant)[(SALES, STARTER)].purchased == 1
    cy = new_user(theirs, tenant, "cy", seats=((SALES, STARTER),))  # takes the seat just bought
    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):  # a write judged on the stored state
        mine.assign_seat(tenant.owner, acc, ann.user_id, SALES, STARTER)
    theirs.delete_user(tenant.owner, acc, ann.user_id, "")
    with refused(Kind.NOT_FOUND, "USER_NOT_FOUND"):
        mine.get_user(tenant.owner, acc, ann.user_id)
    assert mine.check_seats(tenant.owner, acc, SALES, [cy.user_id])[0] == [STARTER]


def test_the_snapshot_cache_keeps_nothing_of_a_dry_run_or_a_refusal(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    ann = new_user(domain, tenant, "ann")
    domain.get_account(tenant.owner, tenant.account_id)

    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 2, validate_only=True)
    domain.batch_update(tenant.owner, tenant.account_id, [(ann.user_id, SALES, STARTER)], validate_only=True)
    bob = new_user(domain, tenant, "bob", seats=((SALES, STARTER),))  # the only seat
    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        domain.assign_seat(tenant.owner, tenant.account_id, ann.user_id, SALES, STARTER)

    assert pool_counts(domain, tenant, SALES, STARTER) == {
        "included": 1,
        "purchased": 0,
        "assigned": 1,
        "available": 0,
        "pending_removal": 0,
    }
    tiers, _ = domain.check_seats(tenant.owner, tenant.account_id, SALES, [ann.user_id, bob.user_id])
    assert tiers == [None, STARTER]
