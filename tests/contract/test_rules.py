"""The seat rules S1..S19 of docs/rules.md, proved over a real channel, one test per rule edge."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.clock import ManualClock
from tests.conftest import actor
from tests.contract.helpers import (
    ACCESS,
    BILLING,
    ENTERPRISE,
    FREE,
    NO_TIER,
    NOTHING,
    PRICE_BOOK,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    SUPER,
    Metadata,
    Seats,
    Tenant,
    Users,
    add_months,
    assign,
    assignments,
    batch,
    cancel_removal,
    cents,
    counts,
    create_user,
    event_types,
    events,
    first_of_month,
    last_sequence,
    new_account,
    new_user,
    pool,
    pools,
    preview,
    prorated,
    purchase,
    renewal_line,
    schedule_removal,
    seat_refs,
    summary,
    to_dt,
    unassign,
    user,
)
from tests.toolkit import Hub, Tier, refused, unique_email

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS

PLAN = resources_pb2.CHARGE_KIND_PLAN
SEATS = resources_pb2.CHARGE_KIND_SEATS
PRORATED_SEATS = resources_pb2.CHARGE_KIND_PRORATED_SEATS
PRORATED_PLAN = resources_pb2.CHARGE_KIND_PRORATED_PLAN

UNCHANGED = seat_service_pb2.SEAT_CHANGE_OUTCOME_UNCHANGED
ASSIGNED = seat_service_pb2.SEAT_CHANGE_OUTCOME_ASSIGNED
MOVED = seat_service_pb2.SEAT_CHANGE_OUTCOME_MOVED
UNASSIGNED = seat_service_pb2.SEAT_CHANGE_OUTCOME_UNASSIGNED


def advance_past_renewal(seats: Seats, clock: ManualClock, tenant: Tenant) -> None:
    """Moves the shared clock one hour past the account's renewal date."""
    renewal = to_dt(summary(seats, tenant).renewal_time)
    clock.advance(renewal - clock.now() + timedelta(hours=1))


# S1


def test_s1_seats_decide_how_many_users_may_use_a_hub(seats: Seats, users: Users) -> None:
    """S1: Seats decide how many users of an account may use a hub's paid features."""
    tenant = new_account(seats, (SALES, STARTER, 1))  # 1 included + 1 purchased
    first, second, third = (new_user(users, tenant) for _ in range(3))
    assign(seats, tenant, first.user_id, SALES, STARTER)
    assign(seats, tenant, second.user_id, SALES, STARTER)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, third.user_id, SALES, STARTER)

    assert seat_refs(users, tenant, third.user_id) == set()
    assert counts(pool(seats, tenant, SALES, STARTER)) == {
        "included": 1, "purchased": 1, "assigned": 2, "available": 0, "pending_removal": 0,
    }


def test_s1_a_hub_without_a_subscription_has_no_seats(seats: Seats, users: Users) -> None:
    """S1: Seats decide how many users of an account may use a hub's paid features."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    member = new_user(users, tenant)

    with refused(FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        assign(seats, tenant, member.user_id, SERVICE, STARTER)
    with refused(FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        assign(seats, tenant, member.user_id, SALES, PROFESSIONAL)

    assert seat_refs(users, tenant, member.user_id) == set()


# S2


@pytest.mark.parametrize("hub", [SALES, SERVICE])
@pytest.mark.parametrize("tier", [FREE, STARTER, PROFESSIONAL, ENTERPRISE])
def test_s2_subscription_includes_seats_by_tier(seats: Seats, hub: Hub, tier: Tier) -> None:
    """S2: A subscription includes a number of seats that depends on its tier."""
    price = PRICE_BOOK[tier]
    tenant = new_account(seats, (hub, tier, 0))

    assert [(s.hub, s.tier, s.included_seats) for s in tenant.account.subscriptions] == [
        (hub, tier, price.included)
    ]
    assert tenant.account.currency_code == "USD"
    seat_pool = pool(seats, tenant, hub, tier)
    assert counts(seat_pool) == {
        "included": price.included, "purchased": 0, "assigned": 0, "available": price.included,
        "pending_removal": 0,
    }
    assert cents(seat_pool.unit_price) == price.seat


def test_s2_first_term_charges_the_plan_and_the_purchased_seats(seats: Seats) -> None:
    """S2: A subscription includes a number of seats that depends on its tier (a price book says at what price)."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 2), (SERVICE, STARTER, 0), term_months=12)

    expected = 12 * (PRICE_BOOK[PROFESSIONAL].plan + 2 * PRICE_BOOK[PROFESSIONAL].seat + PRICE_BOOK[STARTER].plan)
    assert sum(cents(c.amount) for c in tenant.charges) == expected
    invoice = preview(seats, tenant)
    assert cents(invoice.current_term_total) == expected
    assert cents(invoice.next_renewal_total) == expected


def test_s2_several_tiers_of_one_hub_are_separate_pools(seats: Seats) -> None:
    """S2: A subscription includes a number of seats that depends on its tier."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0), (SERVICE, ENTERPRISE, 0))

    every = summary(seats, tenant).pools
    assert [(p.hub, p.tier) for p in every] == [
        (SALES, STARTER), (SALES, PROFESSIONAL), (SERVICE, ENTERPRISE),
    ], "pools are ordered by hub then tier"
    assert [(p.included, p.purchased) for p in every] == [(1, 1), (2, 0), (5, 0)]


# S3


def test_s3_purchased_seats_count_at_once(seats: Seats, users: Users) -> None:
    """S3: Extra seats can be purchased at any time, at a per-seat rate set by the tier. They count at once."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    first, second, third = (new_user(users, tenant) for _ in range(3))
    assign(seats, tenant, first.user_id, SALES, STARTER)

    response = purchase(seats, tenant, SALES, STARTER, 2)

    assert counts(response.pool) == {
        "included": 1, "purchased": 2, "assigned": 1, "available": 2, "pending_removal": 0,
    }
    assert counts(pool(seats, tenant, SALES, STARTER)) == counts(response.pool)
    assign(seats, tenant, second.user_id, SALES, STARTER)
    assign(seats, tenant, third.user_id, SALES, STARTER)
    assert pool(seats, tenant, SALES, STARTER).assigned == 3


def test_s3_purchase_is_charged_pro_rata_for_the_rest_of_the_term(seats: Seats, clock: ManualClock) -> None:
    """S3: Extra seats can be purchased at any time, at a per-seat rate set by the tier."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    clock.advance(days=9, hours=5, minutes=7)
    term = summary(seats, tenant)

    charge = purchase(seats, tenant, SALES, PROFESSIONAL, 3).charge

    assert charge.kind == PRORATED_SEATS
    assert (charge.hub, charge.tier, charge.quantity) == (SALES, PROFESSIONAL, 3)
    assert cents(charge.unit_price) == PRICE_BOOK[PROFESSIONAL].seat
    assert cents(charge.amount) == prorated(
        3, PRICE_BOOK[PROFESSIONAL].seat, 1, to_dt(term.term_start), to_dt(term.renewal_time), clock.now()
    )
    assert 0 < cents(charge.amount) < 3 * PRICE_BOOK[PROFESSIONAL].seat
    assert charge.period_start.ToDatetime() <= clock.now().replace(tzinfo=None)
    assert charge.period_end == term.renewal_time


def test_s3_purchase_on_a_yearly_term_is_prorated_over_the_year(seats: Seats, clock: ManualClock) -> None:
    """S3: Extra seats can be purchased at any time, at a per-seat rate set by the tier."""
    tenant = new_account(seats, (SERVICE, ENTERPRISE, 0), term_months=12)
    clock.advance(days=3, hours=11)
    term = summary(seats, tenant)

    charge = purchase(seats, tenant, SERVICE, ENTERPRISE, 2).charge

    assert cents(charge.amount) == prorated(
        2, PRICE_BOOK[ENTERPRISE].seat, 12, to_dt(term.term_start), to_dt(term.renewal_time), clock.now()
    )


def test_s3_purchase_at_the_start_of_the_term_costs_the_whole_term(seats: Seats) -> None:
    """S3: Extra seats can be purchased at any time, at a per-seat rate set by the tier."""
    tenant = new_account(seats, (SALES, STARTER, 0), term_months=12)

    charge = purchase(seats, tenant, SALES, STARTER, 4).charge

    assert cents(charge.amount) == 4 * PRICE_BOOK[STARTER].seat * 12


def test_s3_validate_only_prices_a_purchase_without_making_it(seats: Seats) -> None:
    """S3: Extra seats can be purchased at any time (validate_only checks and prices without buying)."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 1))
    before = counts(pool(seats, tenant, SALES, PROFESSIONAL))
    sequence = last_sequence(seats, tenant)

    dry = purchase(seats, tenant, SALES, PROFESSIONAL, 2, validate_only=True)

    assert counts(pool(seats, tenant, SALES, PROFESSIONAL)) == before
    assert last_sequence(seats, tenant) == sequence
    assert sum(c.kind == PRORATED_SEATS for c in preview(seats, tenant).current_term_charges) == 0
    real = purchase(seats, tenant, SALES, PROFESSIONAL, 2)
    assert counts(dry.pool) == counts(real.pool) == {**before, "purchased": 3, "available": 5}
    assert (dry.charge.kind, dry.charge.quantity) == (real.charge.kind, real.charge.quantity)
    assert cents(dry.charge.amount) == cents(real.charge.amount)


def test_s3_free_tier_has_no_seats_to_buy(seats: Seats) -> None:
    """S3: Extra seats can be purchased ... at a per-seat rate set by the tier (free tools sell none)."""
    tenant = new_account(seats, (SALES, FREE, 0))

    with refused(FAILED_PRECONDITION, "TIER_NOT_PURCHASABLE"):
        purchase(seats, tenant, SALES, FREE, 1)
    with refused(FAILED_PRECONDITION, "TIER_NOT_PURCHASABLE"):
        new_account(seats, (SALES, FREE, 1))

    assert pool(seats, tenant, SALES, FREE).purchased == 0


def test_s3_seats_of_an_unsubscribed_pool_cannot_be_bought(seats: Seats) -> None:
    """S3: Extra seats can be purchased at any time, at a per-seat rate set by the tier."""
    tenant = new_account(seats, (SALES, STARTER, 0))

    with refused(FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        purchase(seats, tenant, SALES, ENTERPRISE, 1)
    with refused(FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        purchase(seats, tenant, SERVICE, STARTER, 1)

    assert set(pools(seats, tenant)) == {(SALES, STARTER)}


def test_s3_purchase_records_an_event_with_the_quantity(seats: Seats) -> None:
    """S3: Extra seats can be purchased at any time. They count at once."""
    tenant = new_account(seats, (SALES, STARTER, 2))
    sequence = last_sequence(seats, tenant)

    purchase(seats, tenant, SALES, STARTER, 3)

    [event] = events(seats, tenant, after=sequence)
    assert event_types([event]) == ["SEATS_PURCHASED"]
    assert (event.hub, event.tier, event.quantity, event.actor) == (SALES, STARTER, 3, tenant.owner_id)
    assert (event.before.purchased, event.after.purchased) == (2, 5)


# S4


def test_s4_scheduled_removal_never_takes_effect_mid_term(seats: Seats, clock: ManualClock) -> None:
    """S4: Purchased seats cannot be reduced before the next renewal date: a reduction never takes effect mid-term."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), term_start=first_of_month(clock.now()))

    response = schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    assert (response.pool.purchased, response.pool.pending_removal) == (3, 2)

    renewal = to_dt(summary(seats, tenant).renewal_time)
    clock.advance(renewal - clock.now() - timedelta(seconds=1))
    late = pool(seats, tenant, SALES, PROFESSIONAL)
    assert (late.purchased, late.pending_removal, late.available) == (3, 2, 3)
    assert to_dt(summary(seats, tenant).renewal_time) == renewal


# S5


def test_s5_unassigned_purchased_seats_can_be_scheduled_for_the_renewal_date(seats: Seats, users: Users) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal; the removal takes effect at the renewal date."""
    tenant = new_account(seats, (SALES, STARTER, 3))
    holder = new_user(users, tenant, seats=[(SALES, STARTER)])
    assert holder.seats

    response = schedule_removal(seats, tenant, SALES, STARTER, 2)

    assert counts(response.pool) == {
        "included": 1, "purchased": 3, "assigned": 1, "available": 1, "pending_removal": 2,
    }
    assert response.pool.removal_effective_time == summary(seats, tenant).renewal_time
    stored = pool(seats, tenant, SALES, STARTER)
    assert counts(stored) == counts(response.pool)
    assert stored.removal_effective_time == summary(seats, tenant).renewal_time


def test_s5_removal_takes_effect_at_the_renewal_date(seats: Seats, clock: ManualClock) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal; the removal takes effect at the renewal date."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), term_start=first_of_month(clock.now()))
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    old = summary(seats, tenant)
    sequence = last_sequence(seats, tenant)

    advance_past_renewal(seats, clock, tenant)
    renewed = summary(seats, tenant)

    [seat_pool] = renewed.pools
    assert counts(seat_pool) == {
        "included": 2, "purchased": 1, "assigned": 0, "available": 3, "pending_removal": 0,
    }
    assert not seat_pool.HasField("removal_effective_time")
    assert renewed.term_start == old.renewal_time
    assert to_dt(renewed.renewal_time) == add_months(to_dt(old.renewal_time), 1)
    later = events(seats, tenant, after=sequence)
    assert sorted(event_types(later)) == ["INVOICE_ISSUED", "SEATS_REMOVED", "TERM_RENEWED"]
    [removed] = [e for e in later if event_types([e]) == ["SEATS_REMOVED"]]
    assert (removed.hub, removed.tier, removed.quantity) == (SALES, PROFESSIONAL, 2)
    assert (removed.before.purchased, removed.after.purchased) == (3, 1)
    assert (removed.before.pending_removal, removed.after.pending_removal) == (2, 0)
    assert removed.actor == "system"


def test_s5_renewal_catches_up_over_several_terms(seats: Seats, clock: ManualClock) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal; the removal takes effect at the renewal date."""
    start = first_of_month(clock.now())
    tenant = new_account(seats, (SERVICE, STARTER, 2), term_start=start)
    schedule_removal(seats, tenant, SERVICE, STARTER, 1)
    sequence = last_sequence(seats, tenant)

    clock.advance(add_months(start, 3) - clock.now() + timedelta(days=2))
    renewed = summary(seats, tenant)

    assert to_dt(renewed.term_start) == add_months(start, 3)
    assert to_dt(renewed.renewal_time) == add_months(start, 4)
    assert (renewed.pools[0].purchased, renewed.pools[0].pending_removal) == (1, 0)
    later = event_types(events(seats, tenant, after=sequence))
    assert later.count("SEATS_REMOVED") == 1
    assert later.count("TERM_RENEWED") >= 1


def test_s5_an_account_started_in_the_past_is_renewed_up_to_now(seats: Seats, clock: ManualClock) -> None:
    """S5: ... the removal takes effect at the renewal date, for the next term (terms that passed are applied)."""
    clock.advance(minutes=1)  # never exactly on a month boundary
    this_month = first_of_month(clock.now())

    tenant = new_account(seats, (SALES, STARTER, 2), term_start=add_months(this_month, -3))

    assert to_dt(tenant.account.term_start) == this_month
    assert to_dt(tenant.account.renewal_time) == add_months(this_month, 1)
    assert pool(seats, tenant, SALES, STARTER).purchased == 2
    assert "TERM_RENEWED" in event_types(events(seats, tenant))


def test_s5_a_purchase_after_the_renewal_date_first_applies_the_renewal(seats: Seats, clock: ManualClock) -> None:
    """S5: ... the removal takes effect at the renewal date (whichever call touches the account first)."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), term_start=first_of_month(clock.now()))
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    old_renewal = summary(seats, tenant).renewal_time
    clock.advance(to_dt(old_renewal) - clock.now() + timedelta(days=3))

    response = purchase(seats, tenant, SALES, PROFESSIONAL, 1)

    assert (response.pool.purchased, response.pool.pending_removal) == (2, 0)
    assert response.charge.period_start == old_renewal
    assert to_dt(response.charge.period_end) == add_months(to_dt(old_renewal), 1)
    assert cents(response.charge.amount) == prorated(
        1, PRICE_BOOK[PROFESSIONAL].seat, 1, to_dt(old_renewal), add_months(to_dt(old_renewal), 1), clock.now()
    )


def test_s5_cancelling_a_removal_keeps_the_seats(seats: Seats, clock: ManualClock) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal (and the removal can be cancelled)."""
    tenant = new_account(seats, (SALES, STARTER, 3), term_start=first_of_month(clock.now()))
    schedule_removal(seats, tenant, SALES, STARTER, 2)

    response = cancel_removal(seats, tenant, SALES, STARTER, 1)
    assert (response.pool.pending_removal, response.pool.available) == (1, 3)
    with refused(FAILED_PRECONDITION, "NOT_PENDING_REMOVAL"):
        cancel_removal(seats, tenant, SALES, STARTER, 2)
    response = cancel_removal(seats, tenant, SALES, STARTER, 1)
    assert (response.pool.pending_removal, response.pool.available) == (0, 4)
    assert not response.pool.HasField("removal_effective_time")

    advance_past_renewal(seats, clock, tenant)
    assert pool(seats, tenant, SALES, STARTER).purchased == 3


def test_s5_nothing_pending_cannot_be_cancelled(seats: Seats) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal (only a pending removal can be cancelled)."""
    tenant = new_account(seats, (SALES, STARTER, 3))

    with refused(FAILED_PRECONDITION, "NOT_PENDING_REMOVAL"):
        cancel_removal(seats, tenant, SALES, STARTER, 1)


def test_s5_included_seats_cannot_be_scheduled_for_removal(seats: Seats) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal (included seats are not purchased)."""
    tenant = new_account(seats, (SALES, ENTERPRISE, 1))

    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, ENTERPRISE, 2)

    assert pool(seats, tenant, SALES, ENTERPRISE).pending_removal == 0


def test_s5_schedule_and_cancel_record_events(seats: Seats) -> None:
    """S5: Unassigned purchased seats can be scheduled for removal."""
    tenant = new_account(seats, (SALES, STARTER, 3))
    sequence = last_sequence(seats, tenant)

    schedule_removal(seats, tenant, SALES, STARTER, 2)
    cancel_removal(seats, tenant, SALES, STARTER, 1)

    scheduled, cancelled = events(seats, tenant, after=sequence)
    assert event_types([scheduled, cancelled]) == ["SEAT_REMOVAL_SCHEDULED", "SEAT_REMOVAL_CANCELLED"]
    assert (scheduled.quantity, scheduled.before.pending_removal, scheduled.after.pending_removal) == (2, 0, 2)
    assert (cancelled.quantity, cancelled.before.pending_removal, cancelled.after.pending_removal) == (1, 2, 1)


# S6


def test_s6_upgrade_from_free_removes_free_seats(seats: Seats, users: Users) -> None:
    """S6: Upgrading a hub from FREE to STARTER (or higher) removes the free seats at the moment of the upgrade."""
    tenant = new_account(seats, (SALES, FREE, 0), (SERVICE, STARTER, 0))
    holder = new_user(users, tenant, seats=[(SALES, FREE), (SERVICE, STARTER)])
    assign(seats, tenant, tenant.owner_id, SALES, FREE)
    sequence = last_sequence(seats, tenant)

    response = seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=STARTER, purchased_seats=1, assign_user_ids=[tenant.owner_id],
        ),
        metadata=tenant.as_owner,
    )

    after = pools(seats, tenant)
    assert (SALES, FREE) not in after
    assert counts(after[(SALES, STARTER)]) == {
        "included": 1, "purchased": 1, "assigned": 1, "available": 1, "pending_removal": 0,
    }
    assert counts(response.pool) == counts(after[(SALES, STARTER)])
    assert [s.tier for s in response.account.subscriptions if s.hub == SALES] == [STARTER]
    assert seat_refs(users, tenant, holder.user_id) == {(SERVICE, STARTER)}
    assert seat_refs(users, tenant, tenant.owner_id) == {(SALES, STARTER)}
    later = events(seats, tenant, after=sequence)
    assert [(e.hub, e.tier) for e in later if event_types([e]) == ["POOL_CLOSED"]] == [(SALES, FREE)]
    assert [(e.hub, e.tier) for e in later if event_types([e]) == ["POOL_OPENED"]] == [(SALES, STARTER)]


def test_s6_upgrade_charges_the_plan_and_seats_for_the_rest_of_the_term(seats: Seats, clock: ManualClock) -> None:
    """S6: Upgrading a hub from free tools ... the seats needed must be bought in the same checkout."""
    tenant = new_account(seats, (SALES, FREE, 0), term_months=12)
    clock.advance(days=45, hours=3)
    term = summary(seats, tenant)
    start, renewal, now = to_dt(term.term_start), to_dt(term.renewal_time), clock.now()

    response = seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, purchased_seats=2
        ),
        metadata=tenant.as_owner,
    )

    by_kind = {c.kind: c for c in response.charges}
    assert set(by_kind) == {PRORATED_PLAN, PRORATED_SEATS}
    assert cents(by_kind[PRORATED_PLAN].amount) == prorated(
        1, PRICE_BOOK[PROFESSIONAL].plan, 12, start, renewal, now
    )
    assert by_kind[PRORATED_SEATS].quantity == 2
    assert cents(by_kind[PRORATED_SEATS].amount) == prorated(
        2, PRICE_BOOK[PROFESSIONAL].seat, 12, start, renewal, now
    )
    assert counts(pool(seats, tenant, SALES, PROFESSIONAL))["available"] == 4
    charged = {c.charge_id for c in preview(seats, tenant).current_term_charges}
    assert {c.charge_id for c in response.charges} <= charged


def test_s6_upgrade_without_room_for_the_named_users_changes_nothing(seats: Seats, users: Users) -> None:
    """S6: ... removes the free seats at the moment of the upgrade; the seats needed must be bought at once."""
    tenant = new_account(seats, (SALES, FREE, 0))
    holder = new_user(users, tenant, seats=[(SALES, FREE)])
    assign(seats, tenant, tenant.owner_id, SALES, FREE)
    before = {key: counts(p) for key, p in pools(seats, tenant).items()}
    sequence = last_sequence(seats, tenant)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        seats.UpgradeSubscription(
            seat_service_pb2.UpgradeSubscriptionRequest(
                account_id=tenant.id, hub=SALES, tier=STARTER, purchased_seats=0,
                assign_user_ids=[tenant.owner_id, holder.user_id],
            ),
            metadata=tenant.as_owner,
        )

    assert {key: counts(p) for key, p in pools(seats, tenant).items()} == before
    assert seat_refs(users, tenant, holder.user_id) == {(SALES, FREE)}
    assert last_sequence(seats, tenant) == sequence


def test_s6_upgrade_must_raise_the_tier(seats: Seats) -> None:
    """S6: Upgrading a hub from free tools to STARTER (or higher) ..."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))

    for tier in (STARTER, PROFESSIONAL):
        with refused(FAILED_PRECONDITION, "NOT_AN_UPGRADE"):
            seats.UpgradeSubscription(
                seat_service_pb2.UpgradeSubscriptionRequest(account_id=tenant.id, hub=SALES, tier=tier),
                metadata=tenant.as_owner,
            )

    assert set(pools(seats, tenant)) == {(SALES, STARTER), (SALES, PROFESSIONAL)}


def test_s6_upgrade_between_paid_tiers_moves_the_named_users(seats: Seats, users: Users) -> None:
    """S6: Upgrading a hub ... to STARTER (or higher): named users get a seat of the new tier."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    mover = new_user(users, tenant, seats=[(SALES, STARTER)])
    stayer = new_user(users, tenant, seats=[(SALES, STARTER)])

    response = seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=ENTERPRISE, assign_user_ids=[mover.user_id]
        ),
        metadata=tenant.as_owner,
    )

    assert (response.pool.tier, response.pool.assigned) == (ENTERPRISE, 1)
    assert seat_refs(users, tenant, mover.user_id) == {(SALES, ENTERPRISE)}
    assert seat_refs(users, tenant, stayer.user_id) == {(SALES, STARTER)}
    old = pool(seats, tenant, SALES, STARTER)
    assert (old.purchased, old.assigned) == (1, 1), "a paid pool keeps its purchased seats until renewal (S4)"


def test_s6_validate_only_prices_an_upgrade_without_making_it(seats: Seats, users: Users) -> None:
    """S6: Upgrading a hub from free tools ... removes the free seats at the moment of the upgrade."""
    tenant = new_account(seats, (SALES, FREE, 0))
    holder = new_user(users, tenant, seats=[(SALES, FREE)])
    sequence = last_sequence(seats, tenant)

    response = seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=STARTER, purchased_seats=1, validate_only=True
        ),
        metadata=tenant.as_owner,
    )

    assert {c.kind for c in response.charges} == {PRORATED_PLAN, PRORATED_SEATS}
    assert set(pools(seats, tenant)) == {(SALES, FREE)}
    assert seat_refs(users, tenant, holder.user_id) == {(SALES, FREE)}
    assert last_sequence(seats, tenant) == sequence


# S7


def billing_call(name: str, seats: Seats, tenant: Tenant, metadata: Metadata) -> Message:
    """One of the calls that add or remove paid seats (S7)."""
    if name == "purchase":
        purchase = seat_service_pb2.PurchaseSeatsRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1
        )
        return seats.PurchaseSeats(purchase, metadata=metadata)
    if name == "schedule_removal":
        removal = seat_service_pb2.ScheduleSeatRemovalRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1
        )
        return seats.ScheduleSeatRemoval(removal, metadata=metadata)
    if name == "cancel_removal":
        cancel = seat_service_pb2.CancelSeatRemovalRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1
        )
        return seats.CancelSeatRemoval(cancel, metadata=metadata)
    upgrade = seat_service_pb2.UpgradeSubscriptionRequest(
        account_id=tenant.id, hub=SERVICE, tier=STARTER, purchased_seats=1
    )
    return seats.UpgradeSubscription(upgrade, metadata=metadata)


BILLING_CALLS = ["purchase", "schedule_removal", "cancel_removal", "upgrade"]


@pytest.mark.parametrize("call", BILLING_CALLS)
@pytest.mark.parametrize("permissions", [ACCESS, NOTHING], ids=["account_access", "no_permission"])
def test_s7_changing_paid_seats_needs_edit_billing(
    seats: Seats, users: Users, call: str, permissions: resources_pb2.Permissions
) -> None:
    """S7: Only actors with the edit billing permission may add or remove paid seats."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), (SERVICE, FREE, 0))
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 1)
    clerk = new_user(users, tenant, permissions=permissions)
    before = {key: counts(p) for key, p in pools(seats, tenant).items()}
    sequence = last_sequence(seats, tenant)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        billing_call(call, seats, tenant, actor(clerk.user_id))

    assert refusal.info.metadata["permission"] == "edit_billing"
    assert {key: counts(p) for key, p in pools(seats, tenant).items()} == before
    assert last_sequence(seats, tenant) == sequence


@pytest.mark.parametrize("call", BILLING_CALLS)
def test_s7_edit_billing_alone_may_change_paid_seats(seats: Seats, users: Users, call: str) -> None:
    """S7: Only actors with the edit billing permission may add or remove paid seats."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), (SERVICE, FREE, 0))
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 1)
    billing = new_user(users, tenant, permissions=BILLING)
    sequence = last_sequence(seats, tenant)

    billing_call(call, seats, tenant, actor(billing.user_id))

    later = events(seats, tenant, after=sequence)
    assert later, "the change is recorded"
    assert {e.actor for e in later} == {billing.user_id}


# S8


def test_s8_assigned_seats_cannot_be_removed(seats: Seats, users: Users) -> None:
    """S8: Seats that are assigned to users cannot be removed from the account."""
    tenant = new_account(seats, (SALES, STARTER, 2))  # capacity 3
    for _ in range(2):
        new_user(users, tenant, seats=[(SALES, STARTER)])
    # assigned 2 of included 1: one purchased seat is taken, one is free

    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, STARTER, 2)
    assert pool(seats, tenant, SALES, STARTER).pending_removal == 0

    schedule_removal(seats, tenant, SALES, STARTER, 1)
    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, STARTER, 1)
    assert counts(pool(seats, tenant, SALES, STARTER)) == {
        "included": 1, "purchased": 2, "assigned": 2, "available": 0, "pending_removal": 1,
    }


def test_s8_a_fully_assigned_pool_cannot_schedule_any_removal(seats: Seats, users: Users) -> None:
    """S8: Seats that are assigned to users cannot be removed from the account."""
    tenant = new_account(seats, (SERVICE, PROFESSIONAL, 1))  # capacity 3
    for _ in range(3):
        new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])

    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SERVICE, PROFESSIONAL, 1)


def test_s8_unassigning_frees_a_seat_for_removal(seats: Seats, users: Users) -> None:
    """S8: Seats that are assigned to users cannot be removed from the account (once unassigned, they can)."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    first = new_user(users, tenant, seats=[(SALES, STARTER)])
    new_user(users, tenant, seats=[(SALES, STARTER)])
    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, STARTER, 1)

    unassign(seats, tenant, first.user_id, SALES)

    assert schedule_removal(seats, tenant, SALES, STARTER, 1).pool.pending_removal == 1


# S9


def test_s9_removal_lowers_the_next_renewal_but_not_the_current_term(seats: Seats, clock: ManualClock) -> None:
    """S9: A removal changes billing only from the renewal date on; until then the seat is still billed."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), term_start=first_of_month(clock.now()))
    before = preview(seats, tenant)
    assert renewal_line(before, PLAN, SALES, PROFESSIONAL)[1] == PRICE_BOOK[PROFESSIONAL].plan
    assert renewal_line(before, SEATS, SALES, PROFESSIONAL) == (3, 3 * PRICE_BOOK[PROFESSIONAL].seat)

    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    after = preview(seats, tenant)

    assert list(after.current_term_charges) == list(before.current_term_charges)
    assert cents(after.current_term_total) == cents(before.current_term_total)
    assert renewal_line(after, SEATS, SALES, PROFESSIONAL) == (1, PRICE_BOOK[PROFESSIONAL].seat)
    assert cents(after.next_renewal_total) == cents(before.next_renewal_total) - 2 * PRICE_BOOK[PROFESSIONAL].seat
    assert cents(after.next_renewal_total) == sum(cents(line.amount) for line in after.next_renewal_lines)


def test_s9_the_next_term_is_charged_at_the_new_count(seats: Seats, clock: ManualClock) -> None:
    """S9: A removal changes billing only from the renewal date on."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3), term_start=first_of_month(clock.now()))
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    promised = cents(preview(seats, tenant).next_renewal_total)

    advance_past_renewal(seats, clock, tenant)
    renewed = preview(seats, tenant)

    assert promised == PRICE_BOOK[PROFESSIONAL].plan + PRICE_BOOK[PROFESSIONAL].seat
    assert cents(renewed.current_term_total) == promised
    assert all(c.period_start == renewed.term_start for c in renewed.current_term_charges)
    assert cents(renewed.next_renewal_total) == promised


def test_s9_yearly_renewal_line_prices_the_whole_term(seats: Seats) -> None:
    """S9: A removal changes billing only from the renewal date on; until then the seat is still billed."""
    tenant = new_account(seats, (SERVICE, ENTERPRISE, 2), term_months=12)
    schedule_removal(seats, tenant, SERVICE, ENTERPRISE, 1)

    invoice = preview(seats, tenant)

    [seat_line] = [ln for ln in invoice.next_renewal_lines if ln.kind == SEATS]
    assert seat_line.quantity == 1
    assert cents(seat_line.unit_price) == 12 * PRICE_BOOK[ENTERPRISE].seat
    assert renewal_line(invoice, PLAN, SERVICE, ENTERPRISE)[1] == 12 * PRICE_BOOK[ENTERPRISE].plan
    assert cents(invoice.next_renewal_total) == 12 * (PRICE_BOOK[ENTERPRISE].plan + PRICE_BOOK[ENTERPRISE].seat)


# S10


def test_s10_user_with_seat_cannot_be_deleted(seats: Seats, users: Users) -> None:
    """S10: A user who holds a seat cannot be deleted; every seat of that user must be unassigned first."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    member = new_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, STARTER)])
    delete = user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id)

    with refused(FAILED_PRECONDITION, "USER_HOLDS_SEATS"):
        users.DeleteUser(delete, metadata=tenant.as_owner)
    unassign(seats, tenant, member.user_id, SALES)
    with refused(FAILED_PRECONDITION, "USER_HOLDS_SEATS"):
        users.DeleteUser(delete, metadata=tenant.as_owner)
    assert seat_refs(users, tenant, member.user_id) == {(SERVICE, STARTER)}

    unassign(seats, tenant, member.user_id, SERVICE)
    users.DeleteUser(delete, metadata=tenant.as_owner)

    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        user(users, tenant, member.user_id)
    assert events(seats, tenant)[-1].type == resources_pb2.SEAT_EVENT_TYPE_USER_DELETED


def test_s10_user_without_seat_can_be_deleted(seats: Seats, users: Users) -> None:
    """S10: A user who holds a seat cannot be deleted (one without a seat can)."""
    tenant = new_account(seats)
    member = new_user(users, tenant)

    users.DeleteUser(
        user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id), metadata=tenant.as_owner
    )

    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        user(users, tenant, member.user_id)
    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        users.DeleteUser(
            user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id),
            metadata=tenant.as_owner,
        )


def test_s10_the_owner_cannot_be_deleted(seats: Seats, users: Users) -> None:
    """S10: A user who holds a seat cannot be deleted (and the account's owner never can)."""
    tenant = new_account(seats)

    with refused(FAILED_PRECONDITION, "OWNER_NOT_DELETABLE"):
        users.DeleteUser(
            user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=tenant.owner_id),
            metadata=tenant.as_owner,
        )

    assert user(users, tenant, tenant.owner_id).user_id == tenant.owner_id


# S11


def test_s11_reassign_cancels_removal(seats: Seats, users: Users) -> None:
    """S11: Assigning a seat that is pending removal before the removal's effective date cancels that removal."""
    tenant = new_account(seats, (SALES, STARTER, 2))  # capacity 3
    schedule_removal(seats, tenant, SALES, STARTER, 2)
    first, second, third, fourth = (new_user(users, tenant) for _ in range(4))

    taken = assign(seats, tenant, first.user_id, SALES, STARTER).pool
    assert (taken.pending_removal, taken.available) == (2, 0), "a free seat is used before a pending one"

    taken = assign(seats, tenant, second.user_id, SALES, STARTER).pool
    assert (taken.purchased, taken.assigned, taken.pending_removal, taken.available) == (2, 2, 1, 0)
    taken = assign(seats, tenant, third.user_id, SALES, STARTER).pool
    assert (taken.purchased, taken.assigned, taken.pending_removal, taken.available) == (2, 3, 0, 0)
    assert not taken.HasField("removal_effective_time")

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, fourth.user_id, SALES, STARTER)
    assert counts(pool(seats, tenant, SALES, STARTER)) == counts(taken)


def test_s11_reassigned_seat_survives_the_renewal(seats: Seats, users: Users, clock: ManualClock) -> None:
    """S11: Assigning a seat that is pending removal ... cancels that removal (the downgrade shrinks by one)."""
    tenant = new_account(seats, (SERVICE, PROFESSIONAL, 2), term_start=first_of_month(clock.now()))
    for _ in range(2):
        new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    schedule_removal(seats, tenant, SERVICE, PROFESSIONAL, 2)
    late = new_user(users, tenant)
    assign(seats, tenant, late.user_id, SERVICE, PROFESSIONAL)

    advance_past_renewal(seats, clock, tenant)

    after = pool(seats, tenant, SERVICE, PROFESSIONAL)
    assert (after.purchased, after.assigned, after.pending_removal) == (1, 3, 0)


def test_s11_a_batch_that_takes_a_pending_seat_cancels_its_removal(seats: Seats, users: Users) -> None:
    """S11: Assigning a seat that is pending removal before the removal's effective date cancels that removal."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    schedule_removal(seats, tenant, SALES, STARTER, 1)
    first, second = new_user(users, tenant), new_user(users, tenant)

    response = batch(seats, tenant, (first.user_id, SALES, STARTER), (second.user_id, SALES, STARTER))

    [after] = [p for p in response.pools if (p.hub, p.tier) == (SALES, STARTER)]
    assert (after.assigned, after.pending_removal, after.available) == (2, 0, 0)


# S12


def access_call(
    name: str, seats: Seats, users: Users, tenant: Tenant, member: resources_pb2.User, metadata: Metadata
) -> Message:
    """One of the calls that give or take seats, or create or delete users (S12)."""
    if name == "assign":
        assignment = seat_service_pb2.AssignSeatRequest(
            account_id=tenant.id, user_id=member.user_id, hub=SERVICE, tier=STARTER
        )
        return seats.AssignSeat(assignment, metadata=metadata)
    if name == "unassign":
        unassignment = seat_service_pb2.UnassignSeatRequest(account_id=tenant.id, user_id=member.user_id, hub=SALES)
        return seats.UnassignSeat(unassignment, metadata=metadata)
    if name == "batch":
        changes = seat_service_pb2.BatchUpdateSeatAssignmentsRequest(
            account_id=tenant.id,
            changes=[seat_service_pb2.SeatChange(user_id=member.user_id, hub=SERVICE, tier=STARTER)],
        )
        return seats.BatchUpdateSeatAssignments(changes, metadata=metadata)
    if name == "create_user":
        creation = user_service_pb2.CreateUserRequest(account_id=tenant.id, email=unique_email())
        return users.CreateUser(creation, metadata=metadata)
    if name == "delete_user":
        unassign(seats, tenant, member.user_id, SALES)
        deletion = user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id)
        return users.DeleteUser(deletion, metadata=metadata)
    update = user_service_pb2.UpdateUserRequest(
        user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, display_name="Renamed"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
    )
    return users.UpdateUser(update, metadata=metadata)


ACCESS_CALLS = ["assign", "unassign", "batch", "create_user", "delete_user", "update_user"]


@pytest.mark.parametrize("call", ACCESS_CALLS)
@pytest.mark.parametrize("permissions", [BILLING, NOTHING], ids=["edit_billing", "no_permission"])
def test_s12_managing_seats_and_users_needs_account_access(
    seats: Seats, users: Users, call: str, permissions: resources_pb2.Permissions
) -> None:
    """S12: Only actors with the account access permission may give or take seats and create or delete users."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SERVICE, STARTER, 1))
    member = new_user(users, tenant, seats=[(SALES, STARTER)])
    clerk = new_user(users, tenant, permissions=permissions)
    before = {key: counts(p) for key, p in pools(seats, tenant).items()}
    sequence = last_sequence(seats, tenant)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        access_call(call, seats, users, tenant, member, actor(clerk.user_id))

    assert refusal.info.metadata["permission"] == "account_access"
    if call != "delete_user":  # the setup of that call unassigned the seat first
        assert {key: counts(p) for key, p in pools(seats, tenant).items()} == before
        assert last_sequence(seats, tenant) == sequence
    assert user(users, tenant, member.user_id).display_name != "Renamed"


@pytest.mark.parametrize("call", ACCESS_CALLS)
def test_s12_account_access_alone_may_manage_seats_and_users(seats: Seats, users: Users, call: str) -> None:
    """S12: Only actors with the account access permission may give or take seats and create or delete users."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SERVICE, STARTER, 1))
    member = new_user(users, tenant, seats=[(SALES, STARTER)])
    manager = new_user(users, tenant, permissions=ACCESS)
    sequence = last_sequence(seats, tenant)

    access_call(call, seats, users, tenant, member, actor(manager.user_id))

    assert manager.user_id in {e.actor for e in events(seats, tenant, after=sequence)}


def test_s12_account_access_alone_may_assign_but_not_buy(seats: Seats, users: Users) -> None:
    """S12: Only actors with the account access permission may give or take seats (buying needs edit billing, S7)."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    manager = new_user(users, tenant, permissions=ACCESS)
    first, second = new_user(users, tenant), new_user(users, tenant)
    assign(seats, tenant, first.user_id, SALES, STARTER, by=manager.user_id)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        assign(seats, tenant, second.user_id, SALES, STARTER, by=manager.user_id, purchase_if_needed=True)
    assert refusal.info.metadata["permission"] == "edit_billing"
    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        purchase(seats, tenant, SALES, STARTER, 1, by=manager.user_id)
    assert refusal.info.metadata["permission"] == "edit_billing"

    assert counts(pool(seats, tenant, SALES, STARTER)) == {
        "included": 1, "purchased": 0, "assigned": 1, "available": 0, "pending_removal": 0,
    }


def test_s12_edit_billing_alone_may_buy_but_not_assign(seats: Seats, users: Users) -> None:
    """S12: Only actors with the account access permission may give or take seats (edit billing may buy, S7)."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    billing = new_user(users, tenant, permissions=BILLING)
    member = new_user(users, tenant)

    assert purchase(seats, tenant, SALES, STARTER, 1, by=billing.user_id).pool.purchased == 1
    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        assign(seats, tenant, member.user_id, SALES, STARTER, by=billing.user_id)

    assert refusal.info.metadata["permission"] == "account_access"
    assert seat_refs(users, tenant, member.user_id) == set()


def test_s12_an_actor_from_another_account_has_no_permission_here(seats: Seats, users: Users) -> None:
    """S12: Only actors with the account access permission may give or take seats (of their own account)."""
    home, other = new_account(seats, (SALES, STARTER, 1)), new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, home)

    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        assign(seats, home, member.user_id, SALES, STARTER, by=other.owner_id)
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        purchase(seats, home, SALES, STARTER, 1, by=other.owner_id)
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        seats.GetSeatSummary(
            seat_service_pb2.GetSeatSummaryRequest(account_id=home.id), metadata=actor(other.owner_id)
        )
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        users.ListUsers(user_service_pb2.ListUsersRequest(account_id=home.id), metadata=actor(other.owner_id))

    assert counts(pool(seats, home, SALES, STARTER))["assigned"] == 0


def test_s12_an_unknown_actor_is_refused_before_the_account_is_looked_up(seats: Seats) -> None:
    """S12: Only actors with the account access permission may give or take seats."""
    tenant = new_account(seats, (SALES, STARTER, 1))

    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        purchase(seats, tenant, SALES, STARTER, 1, by="no-such-user")
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        seats.GetAccount(seat_service_pb2.GetAccountRequest(account_id="no-such-account"), metadata=actor("nobody"))
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        seats.GetAccount(
            seat_service_pb2.GetAccountRequest(account_id="no-such-account"), metadata=tenant.as_owner
        )
    with refused(NOT_FOUND, "ACCOUNT_NOT_FOUND"):
        seats.GetAccount(seat_service_pb2.GetAccountRequest(account_id="no-such-account"))


# S13


def test_s13_each_grant_takes_exactly_one_seat_of_its_hub_and_tier(seats: Seats, users: Users) -> None:
    """S13: Each grant of paid access to a user takes exactly one seat of that hub and tier."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0), (SERVICE, PROFESSIONAL, 0))
    member = new_user(users, tenant)

    response = assign(seats, tenant, member.user_id, SALES, STARTER)

    assert response.changed
    assert (response.assignment.user_id, response.assignment.hub, response.assignment.tier) == (
        member.user_id, SALES, STARTER,
    )
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 1, (SALES, PROFESSIONAL): 0, (SERVICE, PROFESSIONAL): 0,
    }
    assert seat_refs(users, tenant, member.user_id) == {(SALES, STARTER)}
    assert assignments(seats, tenant) == [(member.user_id, SALES, STARTER)]

    assign(seats, tenant, member.user_id, SERVICE, PROFESSIONAL)
    assert seat_refs(users, tenant, member.user_id) == {(SALES, STARTER), (SERVICE, PROFESSIONAL)}
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 1, (SALES, PROFESSIONAL): 0, (SERVICE, PROFESSIONAL): 1,
    }


def test_s13_the_same_seat_again_takes_no_second_seat(seats: Seats, users: Users) -> None:
    """S13: Each grant of paid access to a user takes exactly one seat of that hub and tier."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant, seats=[(SALES, STARTER)])
    sequence = last_sequence(seats, tenant)

    again = assign(seats, tenant, member.user_id, SALES, STARTER)

    assert not again.changed
    assert (again.pool.assigned, again.pool.available) == (1, 1)
    assert last_sequence(seats, tenant) == sequence


def test_s13_a_user_without_a_seat_has_no_paid_access(seats: Seats, users: Users) -> None:
    """S13: A user without a seat has no paid access to that hub."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)

    assert list(user(users, tenant, member.user_id).seats) == []
    assert assignments(seats, tenant) == []
    assert pool(seats, tenant, SALES, STARTER).assigned == 0


# S14


def test_s14_a_full_pool_can_buy_a_seat_with_the_grant(seats: Seats, users: Users) -> None:
    """S14: When every seat of a pool is taken, a seat can be bought together with the grant."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))  # capacity 2
    for _ in range(2):
        new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    newcomer = new_user(users, tenant)
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, newcomer.user_id, SALES, PROFESSIONAL)
    sequence = last_sequence(seats, tenant)

    response = assign(seats, tenant, newcomer.user_id, SALES, PROFESSIONAL, purchase_if_needed=True)

    assert response.changed
    assert response.charge.kind == PRORATED_SEATS and response.charge.quantity == 1
    assert cents(response.charge.amount) > 0
    assert counts(response.pool) == {
        "included": 2, "purchased": 1, "assigned": 3, "available": 0, "pending_removal": 0,
    }
    assert event_types(events(seats, tenant, after=sequence)) == ["SEATS_PURCHASED", "SEAT_ASSIGNED"]


def test_s14_no_seat_is_bought_while_one_is_free(seats: Seats, users: Users) -> None:
    """S14: When every seat of a pool is taken, a seat can be bought together with the grant."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    member = new_user(users, tenant)

    response = assign(seats, tenant, member.user_id, SALES, PROFESSIONAL, purchase_if_needed=True)

    assert not response.HasField("charge")
    assert (response.pool.purchased, response.pool.assigned) == (0, 1)


def test_s14_buying_with_the_grant_needs_edit_billing(seats: Seats, users: Users) -> None:
    """S14: ... a seat can be bought together with the grant, by an actor who also has edit billing."""
    tenant = new_account(seats, (SERVICE, STARTER, 0))
    new_user(users, tenant, seats=[(SERVICE, STARTER)])
    manager = new_user(users, tenant, permissions=ACCESS)
    both = new_user(users, tenant, permissions=resources_pb2.Permissions(account_access=True, edit_billing=True))
    newcomer = new_user(users, tenant)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        assign(seats, tenant, newcomer.user_id, SERVICE, STARTER, by=manager.user_id, purchase_if_needed=True)
    assert refusal.info.metadata["permission"] == "edit_billing"
    assert pool(seats, tenant, SERVICE, STARTER).purchased == 0

    response = assign(seats, tenant, newcomer.user_id, SERVICE, STARTER, by=both.user_id, purchase_if_needed=True)
    assert (response.pool.purchased, response.pool.assigned) == (1, 2)


def test_s14_create_user_can_buy_the_seats_it_grants(seats: Seats, users: Users) -> None:
    """S14: When every seat of a pool is taken, a seat can be bought together with the grant."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    new_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, STARTER)])

    response = create_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, STARTER)], purchase_if_needed=True)

    assert {(c.kind, c.hub, c.tier, c.quantity) for c in response.charges} == {
        (PRORATED_SEATS, SALES, STARTER, 1), (PRORATED_SEATS, SERVICE, STARTER, 1),
    }
    assert {(s.hub, s.tier) for s in response.user.seats} == {(SALES, STARTER), (SERVICE, STARTER)}
    assert {key: (p.purchased, p.assigned) for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): (1, 2), (SERVICE, STARTER): (1, 2),
    }


# S15


def test_s15_creating_a_user_grants_no_seat(seats: Seats, users: Users) -> None:
    """S15: Creating a user, a super admin included, grants no seat; seats are given explicitly."""
    tenant = new_account(seats, (SALES, STARTER, 3), (SERVICE, FREE, 0))
    before = {key: counts(p) for key, p in pools(seats, tenant).items()}

    member = new_user(users, tenant)
    admin = new_user(users, tenant, permissions=SUPER)

    assert list(member.seats) == [] and list(admin.seats) == []
    assert seat_refs(users, tenant, member.user_id) == set()
    assert seat_refs(users, tenant, admin.user_id) == set()
    assert {key: counts(p) for key, p in pools(seats, tenant).items()} == before


def test_s15_seats_can_be_given_in_the_create_call(seats: Seats, users: Users) -> None:
    """S15: Creating a user ... grants no seat; seats are given explicitly, in the create call or afterwards."""
    tenant = new_account(seats, (SALES, STARTER, 1))

    member = new_user(users, tenant, seats=[(SALES, STARTER)])

    assert [(s.hub, s.tier) for s in member.seats] == [(SALES, STARTER)]
    assert assignments(seats, tenant) == [(member.user_id, SALES, STARTER)]
    assert pool(seats, tenant, SALES, STARTER).assigned == 1


# S16


def test_s16_email_is_unique_in_the_account_case_insensitively(seats: Seats, users: Users) -> None:
    """S16: Creating a user takes an email address (unique within the account, case-insensitive)."""
    tenant = new_account(seats)
    email = unique_email("ann")
    new_user(users, tenant, email=email)

    with refused(ALREADY_EXISTS, "EMAIL_TAKEN"):
        new_user(users, tenant, email=email)
    with refused(ALREADY_EXISTS, "EMAIL_TAKEN"):
        new_user(users, tenant, email=email.upper())

    listed = users.ListUsers(user_service_pb2.ListUsersRequest(account_id=tenant.id), metadata=tenant.as_owner)
    assert [u.email.lower() for u in listed.users].count(email) == 1


def test_s16_the_same_email_in_another_account_is_fine(seats: Seats, users: Users) -> None:
    """S16: Creating a user takes an email address (unique within the account, case-insensitive)."""
    first, second = new_account(seats), new_account(seats)
    email = unique_email("bob")

    one = new_user(users, first, email=email)
    two = new_user(users, second, email=email.upper())

    assert one.user_id != two.user_id
    assert (one.account_id, two.account_id) == (first.id, second.id)


def test_s16_an_email_change_to_a_taken_email_is_refused(seats: Seats, users: Users) -> None:
    """S16: Creating a user takes an email address (unique within the account, case-insensitive)."""
    tenant = new_account(seats)
    ann_email = unique_email("ann")
    new_user(users, tenant, email=ann_email)
    bob = new_user(users, tenant)

    with refused(ALREADY_EXISTS, "EMAIL_TAKEN"):
        users.UpdateUser(
            user_service_pb2.UpdateUserRequest(
                user=resources_pb2.User(account_id=tenant.id, user_id=bob.user_id, email=ann_email.upper()),
                update_mask=field_mask_pb2.FieldMask(paths=["email"]),
            ),
            metadata=tenant.as_owner,
        )

    assert user(users, tenant, bob.user_id).email == bob.email


def test_s16_a_user_can_get_a_sales_and_a_service_seat_in_one_call(seats: Seats, users: Users) -> None:
    """S16: Creating a user ... may grant a Sales seat and/or a Service seat of a chosen tier in the same call."""
    tenant = new_account(seats, (SALES, ENTERPRISE, 0), (SERVICE, STARTER, 0))
    sequence = last_sequence(seats, tenant)

    member = new_user(users, tenant, seats=[(SALES, ENTERPRISE), (SERVICE, STARTER)])

    assert seat_refs(users, tenant, member.user_id) == {(SALES, ENTERPRISE), (SERVICE, STARTER)}
    assert sorted(event_types(events(seats, tenant, after=sequence))) == [
        "SEAT_ASSIGNED", "SEAT_ASSIGNED", "USER_CREATED",
    ]


def test_s16_two_seats_of_one_hub_in_one_create_call_are_refused(seats: Seats, users: Users) -> None:
    """S16: Creating a user ... may grant a Sales seat and/or a Service seat (one per hub)."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))
    email = unique_email()

    with refused(INVALID_ARGUMENT):
        new_user(users, tenant, email=email, seats=[(SALES, STARTER), (SALES, PROFESSIONAL)])

    assert new_user(users, tenant, email=email).email == email, "the refused call created nobody"


def test_s16_a_create_call_whose_seat_is_full_creates_nobody(seats: Seats, users: Users) -> None:
    """S16: Creating a user ... may grant a Sales seat and/or a Service seat of a chosen tier in the same call."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    new_user(users, tenant, seats=[(SALES, STARTER)])
    email = unique_email()
    sequence = last_sequence(seats, tenant)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        new_user(users, tenant, email=email, seats=[(SERVICE, STARTER), (SALES, STARTER)])

    assert last_sequence(seats, tenant) == sequence
    assert pool(seats, tenant, SERVICE, STARTER).assigned == 0
    assert new_user(users, tenant, email=email).email == email


# S17


def test_s17_summary_shows_purchased_and_assigned_per_pool(seats: Seats, users: Users) -> None:
    """S17: The manage paid users view shows, per pool, the purchased and assigned counts."""
    tenant = new_account(seats, (SALES, STARTER, 2), (SERVICE, PROFESSIONAL, 1))
    new_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, PROFESSIONAL)])
    new_user(users, tenant, seats=[(SALES, STARTER)])

    shown = summary(seats, tenant)

    assert [(p.hub, p.tier, p.purchased, p.assigned, p.available) for p in shown.pools] == [
        (SALES, STARTER, 2, 2, 1), (SERVICE, PROFESSIONAL, 1, 1, 2),
    ]
    assert shown.HasField("renewal_time") and shown.HasField("term_start")


def test_s17_batch_saves_every_change_at_once(seats: Seats, users: Users) -> None:
    """S17: The manage paid users view ... saves a whole batch of assign/unassign changes at once."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0))
    mover = new_user(users, tenant, seats=[(SALES, STARTER)])
    leaver = new_user(users, tenant, seats=[(SERVICE, STARTER)])
    keeper = new_user(users, tenant, seats=[(SALES, STARTER)])
    newcomer = new_user(users, tenant)

    response = batch(
        seats, tenant,
        (mover.user_id, SALES, PROFESSIONAL),
        (leaver.user_id, SERVICE, NO_TIER),
        (keeper.user_id, SALES, STARTER),
        (newcomer.user_id, SERVICE, STARTER),
        (newcomer.user_id, SALES, NO_TIER),
    )

    assert [(r.user_id, r.hub, r.tier, r.previous_tier, r.outcome) for r in response.results] == [
        (mover.user_id, SALES, PROFESSIONAL, STARTER, MOVED),
        (leaver.user_id, SERVICE, NO_TIER, STARTER, UNASSIGNED),
        (keeper.user_id, SALES, STARTER, STARTER, UNCHANGED),
        (newcomer.user_id, SERVICE, STARTER, NO_TIER, ASSIGNED),
        (newcomer.user_id, SALES, NO_TIER, NO_TIER, UNCHANGED),
    ]
    assert [(p.hub, p.tier, p.assigned) for p in response.pools] == [
        (SALES, STARTER, 1), (SALES, PROFESSIONAL, 1), (SERVICE, STARTER, 1),
    ]
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 1, (SALES, PROFESSIONAL): 1, (SERVICE, STARTER): 1,
    }
    assert seat_refs(users, tenant, mover.user_id) == {(SALES, PROFESSIONAL)}
    assert seat_refs(users, tenant, leaver.user_id) == set()
    assert seat_refs(users, tenant, newcomer.user_id) == {(SERVICE, STARTER)}


def test_s17_batch_is_all_or_nothing(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch of assign/unassign changes at once: all of the batch or none of it."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    holder = new_user(users, tenant, seats=[(SALES, STARTER)])
    first, second = new_user(users, tenant), new_user(users, tenant)
    sequence = last_sequence(seats, tenant)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as refusal:
        batch(
            seats, tenant,
            (holder.user_id, SALES, NO_TIER),
            (first.user_id, SERVICE, STARTER),
            (first.user_id, SALES, STARTER),
            (second.user_id, SALES, STARTER),
        )

    assert second.user_id in refusal.text or "changes[3]" in refusal.text, f"the error names the change: {refusal}"
    assert seat_refs(users, tenant, holder.user_id) == {(SALES, STARTER)}
    assert seat_refs(users, tenant, first.user_id) == set()
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 1, (SERVICE, STARTER): 0,
    }
    assert last_sequence(seats, tenant) == sequence


def test_s17_batch_with_an_unknown_user_changes_nothing(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch of assign/unassign changes at once: all of the batch or none of it."""
    tenant = new_account(seats, (SALES, STARTER, 2))
    member = new_user(users, tenant)

    with refused(NOT_FOUND, "USER_NOT_FOUND") as refusal:
        batch(seats, tenant, (member.user_id, SALES, STARTER), ("no-such-user", SALES, STARTER))

    assert "no-such-user" in refusal.text or "changes[1]" in refusal.text, f"the error names the change: {refusal}"
    assert seat_refs(users, tenant, member.user_id) == set()


def test_s17_batch_is_judged_on_its_final_state(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch ... at once (seats freed by the batch count before seats taken)."""
    tenant = new_account(seats, (SALES, STARTER, 0))  # capacity 1
    holder = new_user(users, tenant, seats=[(SALES, STARTER)])
    newcomer = new_user(users, tenant)

    response = batch(seats, tenant, (newcomer.user_id, SALES, STARTER), (holder.user_id, SALES, NO_TIER))

    assert [r.outcome for r in response.results] == [ASSIGNED, UNASSIGNED]
    assert assignments(seats, tenant) == [(newcomer.user_id, SALES, STARTER)]


def test_s17_batch_can_swap_seats_between_full_pools(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch of assign/unassign changes at once (judged on its final state)."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))  # capacities 1 and 2
    low = new_user(users, tenant, seats=[(SALES, STARTER)])
    high = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])

    response = batch(seats, tenant, (low.user_id, SALES, PROFESSIONAL), (high.user_id, SALES, STARTER))

    assert [r.outcome for r in response.results] == [MOVED, MOVED]
    assert seat_refs(users, tenant, low.user_id) == {(SALES, PROFESSIONAL)}
    assert seat_refs(users, tenant, high.user_id) == {(SALES, STARTER)}
    assert {key: p.available for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 0, (SALES, PROFESSIONAL): 0,
    }


def test_s17_validate_only_batch_changes_nothing(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch of assign/unassign changes at once (validate_only checks without saving)."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)
    sequence = last_sequence(seats, tenant)

    response = batch(seats, tenant, (member.user_id, SALES, STARTER), validate_only=True)

    assert [r.outcome for r in response.results] == [ASSIGNED]
    assert seat_refs(users, tenant, member.user_id) == set()
    assert pool(seats, tenant, SALES, STARTER).assigned == 0
    assert last_sequence(seats, tenant) == sequence


def test_s17_two_changes_for_one_user_and_hub_are_refused(seats: Seats, users: Users) -> None:
    """S17: ... saves a whole batch of assign/unassign changes at once (at most one change per user and hub)."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 0))
    member = new_user(users, tenant)

    with refused(INVALID_ARGUMENT):
        batch(seats, tenant, (member.user_id, SALES, STARTER), (member.user_id, SALES, PROFESSIONAL))

    assert seat_refs(users, tenant, member.user_id) == set()


# S18


def test_s18_unassigning_keeps_the_seat_in_the_pool(seats: Seats, users: Users) -> None:
    """S18: Unassigning a seat does not remove it: the seat stays in the pool, available for another user."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 1))  # capacity 3
    holders = [new_user(users, tenant, seats=[(SALES, PROFESSIONAL)]) for _ in range(3)]
    newcomer = new_user(users, tenant)
    billed = cents(preview(seats, tenant).next_renewal_total)
    sequence = last_sequence(seats, tenant)

    response = unassign(seats, tenant, holders[0].user_id, SALES)

    assert counts(response.pool) == {
        "included": 2, "purchased": 1, "assigned": 2, "available": 1, "pending_removal": 0,
    }
    assert seat_refs(users, tenant, holders[0].user_id) == set()
    [event] = events(seats, tenant, after=sequence)
    assert event_types([event]) == ["SEAT_UNASSIGNED"]
    assert (event.user_id, event.before.assigned, event.after.assigned) == (holders[0].user_id, 3, 2)
    assert cents(preview(seats, tenant).next_renewal_total) == billed, "still billed until the renewal"
    assert assign(seats, tenant, newcomer.user_id, SALES, PROFESSIONAL).pool.purchased == 1


def test_s18_a_user_without_a_seat_of_the_hub_has_nothing_to_unassign(seats: Seats, users: Users) -> None:
    """S18: Unassigning a seat does not remove it (and there must be a seat to unassign)."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))
    member = new_user(users, tenant, seats=[(SERVICE, STARTER)])

    with refused(FAILED_PRECONDITION, "SEAT_NOT_ASSIGNED"):
        unassign(seats, tenant, member.user_id, SALES)

    assert seat_refs(users, tenant, member.user_id) == {(SERVICE, STARTER)}


# S19


def test_s19_the_owner_is_a_super_admin_without_a_seat(seats: Seats, users: Users) -> None:
    """S19: A super admin holds every permission, but still needs a seat for paid features (S15)."""
    tenant = new_account(seats, (SALES, STARTER, 0))

    owner = user(users, tenant, tenant.owner_id)

    assert owner.permissions.super_admin
    assert list(owner.seats) == []
    assert pool(seats, tenant, SALES, STARTER).assigned == 0


def test_s19_a_super_admin_may_buy_and_assign(seats: Seats, users: Users) -> None:
    """S19: A super admin holds every permission (edit billing and account access included)."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    admin = new_user(users, tenant, permissions=SUPER)
    member = new_user(users, tenant, by=admin.user_id)

    purchase(seats, tenant, SALES, STARTER, 1, by=admin.user_id)
    assign(seats, tenant, admin.user_id, SALES, STARTER, by=admin.user_id)
    assign(seats, tenant, member.user_id, SALES, STARTER, by=admin.user_id)
    response = assign(seats, tenant, tenant.owner_id, SALES, STARTER, by=admin.user_id, purchase_if_needed=True)

    assert (response.pool.purchased, response.pool.assigned) == (2, 3)
    assert seat_refs(users, tenant, admin.user_id) == {(SALES, STARTER)}


def test_s19_only_a_super_admin_may_grant_super_admin(seats: Seats, users: Users) -> None:
    """S19: A super admin holds every permission (granting super admin needs a super admin)."""
    tenant = new_account(seats)
    manager = new_user(users, tenant, permissions=ACCESS)
    member = new_user(users, tenant)
    grant = user_service_pb2.UpdateUserRequest(
        user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, permissions=SUPER),
        update_mask=field_mask_pb2.FieldMask(paths=["permissions.super_admin"]),
    )

    with refused(PERMISSION_DENIED):
        users.UpdateUser(grant, metadata=actor(manager.user_id))
    assert not user(users, tenant, member.user_id).permissions.super_admin

    updated = users.UpdateUser(grant, metadata=tenant.as_owner).user
    assert updated.permissions.super_admin
    assert list(updated.seats) == [], "a super admin still needs a seat (S15)"


def test_s19_even_a_super_admin_cannot_create_an_account(seats: Seats) -> None:
    """S19: A super admin holds every permission (of its account; accounts are made by trusted system calls)."""
    tenant = new_account(seats)

    with refused(PERMISSION_DENIED, "SYSTEM_CALL_ONLY"):
        seats.CreateAccount(
            seat_service_pb2.CreateAccountRequest(
                display_name="Sneaky", owner_email=unique_email("owner"), term_months=1,
                subscriptions=[resources_pb2.Subscription(hub=SALES, tier=STARTER)],
            ),
            metadata=tenant.as_owner,
        )
