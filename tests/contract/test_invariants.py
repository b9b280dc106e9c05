"""The invariants I1..I6 of docs/rules.md: after mixed sequences, under concurrency, on retries."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from datetime import timedelta
from functools import partial

import grpc
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.clock import ManualClock
from tests.contract.helpers import (
    ENTERPRISE,
    FREE,
    NO_TIER,
    PRICE_BOOK,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Seats,
    Tenant,
    Users,
    assign,
    assignments,
    batch,
    cancel_removal,
    cents,
    check_event_log,
    create_user,
    event_types,
    events,
    hub_tier,
    last_sequence,
    new_account,
    new_user,
    pool,
    pools,
    preview,
    prorated,
    purchase,
    run_together,
    schedule_removal,
    seat_refs,
    summary,
    to_dt,
    unassign,
    user,
)
from tests.toolkit import check_pool_invariants, refusal_of, refused, unique_email

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


def check_every_pool(seats: Seats, tenant: Tenant) -> None:
    for seat_pool in summary(seats, tenant).pools:
        check_pool_invariants(seat_pool)


def outcomes(results: Iterable[object]) -> list[str]:
    """"OK" for a success, else the refusal's reason."""
    return ["OK" if not isinstance(r, grpc.RpcError) else refusal_of(r).info.reason for r in results]


# I1, I2


def test_i1_i2_hold_after_a_mixed_sequence_of_operations(seats: Seats, users: Users) -> None:
    """I1: 0 <= assigned <= included + purchased. I2: 0 <= pending <= purchased - max(0, assigned - included)."""
    tenant = new_account(seats, (SALES, STARTER, 2), (SERVICE, PROFESSIONAL, 1))
    people = [new_user(users, tenant) for _ in range(6)]
    ids = [p.user_id for p in people]
    steps: list[Callable[[], Message]] = [
        lambda: assign(seats, tenant, ids[0], SALES, STARTER),
        lambda: assign(seats, tenant, ids[1], SALES, STARTER),
        lambda: schedule_removal(seats, tenant, SALES, STARTER, 1),
        lambda: purchase(seats, tenant, SALES, STARTER, 2),
        lambda: schedule_removal(seats, tenant, SALES, STARTER, 2),
        lambda: assign(seats, tenant, ids[2], SALES, STARTER),  # the last free seat
        lambda: assign(seats, tenant, ids[3], SALES, STARTER),  # takes a pending seat (S11)
        lambda: assign(seats, tenant, ids[0], SERVICE, PROFESSIONAL),
        lambda: unassign(seats, tenant, ids[1], SALES),
        lambda: cancel_removal(seats, tenant, SALES, STARTER, 1),
        lambda: batch(
            seats, tenant, (ids[4], SALES, STARTER), (ids[2], SALES, NO_TIER), (ids[5], SERVICE, PROFESSIONAL)
        ),
        lambda: schedule_removal(seats, tenant, SERVICE, PROFESSIONAL, 1),
        lambda: assign(seats, tenant, ids[1], SERVICE, PROFESSIONAL, purchase_if_needed=True),
        lambda: unassign(seats, tenant, ids[0], SERVICE),
    ]
    for step in steps:
        step()
        check_every_pool(seats, tenant)

    every = pools(seats, tenant)
    listed = assignments(seats, tenant)
    for key, seat_pool in every.items():
        assert seat_pool.assigned == sum((hub, tier) == key for _, hub, tier in listed)
    assert every[(SALES, STARTER)].purchased == 4
    check_event_log(seats, tenant)


def test_i1_an_assignment_beyond_capacity_is_refused(seats: Seats, users: Users) -> None:
    """I1: For every pool: 0 <= assigned <= included + purchased."""
    tenant = new_account(seats, (SERVICE, ENTERPRISE, 1))  # capacity 6
    people = [new_user(users, tenant) for _ in range(7)]
    for person in people[:6]:
        assign(seats, tenant, person.user_id, SERVICE, ENTERPRISE)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, people[6].user_id, SERVICE, ENTERPRISE)
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        batch(seats, tenant, (people[6].user_id, SERVICE, ENTERPRISE))
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        new_user(users, tenant, seats=[(SERVICE, ENTERPRISE)])

    seat_pool = pool(seats, tenant, SERVICE, ENTERPRISE)
    check_pool_invariants(seat_pool)
    assert (seat_pool.assigned, seat_pool.available) == (6, 0)


def test_i2_a_removal_beyond_the_unassigned_purchased_seats_is_refused(seats: Seats, users: Users) -> None:
    """I2: For every pool: 0 <= pending_removal <= purchased - max(0, assigned - included)."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 3))  # included 2, capacity 5
    for _ in range(3):
        new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    # assigned 3 of included 2: one purchased seat is taken, two may go

    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, PROFESSIONAL, 3)
    schedule_removal(seats, tenant, SALES, PROFESSIONAL, 2)
    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, PROFESSIONAL, 1)

    seat_pool = pool(seats, tenant, SALES, PROFESSIONAL)
    check_pool_invariants(seat_pool)
    assert (seat_pool.pending_removal, seat_pool.available) == (2, 0)


def test_i1_concurrent_assignments_never_overfill_a_pool(seats: Seats, users: Users) -> None:
    """I1: For every pool: 0 <= assigned <= included + purchased (under any concurrency)."""
    tenant = new_account(seats, (SALES, STARTER, 2))  # 3 free seats
    people = [new_user(users, tenant) for _ in range(8)]

    results = run_together([
        partial(assign, seats, tenant, person.user_id, SALES, STARTER) for person in people
    ])

    assert sorted(outcomes(results)) == ["NO_SEAT_AVAILABLE"] * 5 + ["OK"] * 3
    seat_pool = pool(seats, tenant, SALES, STARTER)
    check_pool_invariants(seat_pool)
    assert seat_pool.assigned == seat_pool.included + seat_pool.purchased == 3
    winners = {r.assignment.user_id for r in results if not isinstance(r, grpc.RpcError)}
    assert {user_id for user_id, _, _ in assignments(seats, tenant)} == winners
    log = check_event_log(seats, tenant)
    assert event_types(log).count("SEAT_ASSIGNED") == 3


def test_i1_concurrent_purchases_with_the_grant_buy_one_seat_each(seats: Seats, users: Users) -> None:
    """I1: For every pool: 0 <= assigned <= included + purchased (under any concurrency)."""
    tenant = new_account(seats, (SERVICE, PROFESSIONAL, 0))
    for _ in range(2):
        new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    people = [new_user(users, tenant) for _ in range(5)]

    results = run_together([
        partial(assign, seats, tenant, person.user_id, SERVICE, PROFESSIONAL, purchase_if_needed=True)
        for person in people
    ])

    assert outcomes(results) == ["OK"] * 5
    seat_pool = pool(seats, tenant, SERVICE, PROFESSIONAL)
    check_pool_invariants(seat_pool)
    assert (seat_pool.purchased, seat_pool.assigned, seat_pool.available) == (5, 7, 0)
    check_event_log(seats, tenant)


def test_i2_concurrent_removals_never_exceed_the_unassigned_purchased_seats(seats: Seats, users: Users) -> None:
    """I2: For every pool: 0 <= pending_removal <= purchased - max(0, assigned - included) (under any concurrency)."""
    tenant = new_account(seats, (SALES, STARTER, 3))
    new_user(users, tenant, seats=[(SALES, STARTER)])  # takes the included seat

    results = run_together([(lambda: schedule_removal(seats, tenant, SALES, STARTER, 1)) for _ in range(6)])

    assert sorted(outcomes(results)) == ["OK"] * 3 + ["SEATS_ASSIGNED"] * 3
    seat_pool = pool(seats, tenant, SALES, STARTER)
    check_pool_invariants(seat_pool)
    assert (seat_pool.purchased, seat_pool.pending_removal) == (3, 3)
    check_event_log(seats, tenant)


def test_i1_i2_hold_when_assignments_and_removals_race(seats: Seats, users: Users) -> None:
    """I1 and I2 hold under any concurrency, also when assignments race removals for the same seats."""
    tenant = new_account(seats, (SALES, STARTER, 3))  # capacity 4
    people = [new_user(users, tenant) for _ in range(4)]
    calls: list[Callable[[], Message]] = [
        partial(assign, seats, tenant, person.user_id, SALES, STARTER) for person in people
    ]
    calls += [(lambda: schedule_removal(seats, tenant, SALES, STARTER, 1)) for _ in range(3)]

    results = run_together(calls)

    assert set(outcomes(results)) <= {"OK", "SEATS_ASSIGNED"}
    seat_pool = pool(seats, tenant, SALES, STARTER)
    check_pool_invariants(seat_pool)
    assert seat_pool.assigned == 4, "every assignment found a seat: free, or pending and taken back (S11)"
    assert seat_pool.pending_removal == 0
    check_event_log(seats, tenant)


# I3


def test_i3_assigning_another_tier_moves_the_seat(seats: Seats, users: Users) -> None:
    """I3: A user holds at most one seat per hub, and only in a pool of its own account."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0))
    member = new_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, STARTER)])
    sequence = last_sequence(seats, tenant)

    moved = assign(seats, tenant, member.user_id, SALES, PROFESSIONAL)

    assert moved.changed and moved.previous_tier == STARTER
    assert (moved.assignment.hub, moved.assignment.tier) == (SALES, PROFESSIONAL)
    assert seat_refs(users, tenant, member.user_id) == {(SALES, PROFESSIONAL), (SERVICE, STARTER)}
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 0, (SALES, PROFESSIONAL): 1, (SERVICE, STARTER): 1,
    }
    unassigned, assigned = events(seats, tenant, after=sequence)
    assert event_types([unassigned, assigned]) == ["SEAT_UNASSIGNED", "SEAT_ASSIGNED"]
    assert (unassigned.hub, unassigned.tier, unassigned.user_id) == (SALES, STARTER, member.user_id)
    assert (assigned.hub, assigned.tier, assigned.previous_tier) == (SALES, PROFESSIONAL, STARTER)
    check_event_log(seats, tenant)


def test_i3_a_move_into_a_full_pool_keeps_the_old_seat(seats: Seats, users: Users) -> None:
    """I3: A user holds at most one seat per hub (a refused move changes nothing)."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SALES, PROFESSIONAL, 0))
    for _ in range(2):
        new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    member = new_user(users, tenant, seats=[(SALES, STARTER)])

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, member.user_id, SALES, PROFESSIONAL)

    assert seat_refs(users, tenant, member.user_id) == {(SALES, STARTER)}
    assert {key: p.assigned for key, p in pools(seats, tenant).items()} == {
        (SALES, STARTER): 1, (SALES, PROFESSIONAL): 2,
    }


def test_i3_a_user_of_another_account_cannot_get_a_seat(seats: Seats, users: Users) -> None:
    """I3: A user holds at most one seat per hub, and only in a pool of its own account."""
    home, other = new_account(seats, (SALES, STARTER, 1)), new_account(seats, (SALES, STARTER, 1))
    stranger = new_user(users, other)

    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        seats.AssignSeat(
            seat_service_pb2.AssignSeatRequest(
                account_id=home.id, user_id=stranger.user_id, hub=SALES, tier=STARTER
            )
        )
    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        assign(seats, home, stranger.user_id, SALES, STARTER)
    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        batch(seats, home, (stranger.user_id, SALES, STARTER))
    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        user(users, home, stranger.user_id)
    with refused(NOT_FOUND, "USER_NOT_FOUND"):
        seats.UpgradeSubscription(
            seat_service_pb2.UpgradeSubscriptionRequest(
                account_id=home.id, hub=SALES, tier=PROFESSIONAL, assign_user_ids=[stranger.user_id]
            ),
            metadata=home.as_owner,
        )
    assert set(pools(seats, home)) == {(SALES, STARTER)}

    assert assignments(seats, home) == [] and assignments(seats, other) == []
    assert pool(seats, home, SALES, STARTER).assigned == 0


def test_i3_concurrent_grants_of_one_user_leave_one_seat(seats: Seats, users: Users) -> None:
    """I3: A user holds at most one seat per hub (under any concurrency)."""
    tenant = new_account(seats, (SALES, STARTER, 3))
    member = new_user(users, tenant)

    results = run_together([(lambda: assign(seats, tenant, member.user_id, SALES, STARTER)) for _ in range(6)])

    assert outcomes(results) == ["OK"] * 6
    assert sum(r.changed for r in results if not isinstance(r, grpc.RpcError)) == 1
    assert assignments(seats, tenant) == [(member.user_id, SALES, STARTER)]
    assert pool(seats, tenant, SALES, STARTER).assigned == 1
    check_event_log(seats, tenant)


def test_i3_concurrent_moves_of_one_user_leave_one_seat(seats: Seats, users: Users) -> None:
    """I3: A user holds at most one seat per hub (under any concurrency)."""
    tenant = new_account(seats, (SALES, STARTER, 3), (SALES, PROFESSIONAL, 3))
    member = new_user(users, tenant)
    tiers = [STARTER, PROFESSIONAL] * 4

    results = run_together([partial(assign, seats, tenant, member.user_id, SALES, tier) for tier in tiers])

    assert outcomes(results) == ["OK"] * len(tiers)
    [(_, hub, tier)] = assignments(seats, tenant)
    assert seat_refs(users, tenant, member.user_id) == {(hub, tier)}
    assert sum(p.assigned for p in pools(seats, tenant).values()) == 1
    for seat_pool in pools(seats, tenant).values():
        check_pool_invariants(seat_pool)
    check_event_log(seats, tenant)


# I4


def test_i4_every_change_appends_exactly_one_event(seats: Seats, users: Users) -> None:
    """I4: Every change of a pool or an assignment appends exactly one event to the account's ordered event log."""
    tenant = new_account(seats, (SALES, STARTER, 1), (SERVICE, PROFESSIONAL, 0))
    assert event_types(events(seats, tenant)) == ["ACCOUNT_CREATED", "USER_CREATED", "POOL_OPENED", "POOL_OPENED"]
    assert {e.actor for e in events(seats, tenant)} == {"system"}
    member = new_user(users, tenant)
    other = new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    steps: list[tuple[Callable[[], Message], list[str]]] = [
        (lambda: new_user(users, tenant), ["USER_CREATED"]),
        (lambda: new_user(users, tenant, seats=[(SALES, STARTER)]), ["USER_CREATED", "SEAT_ASSIGNED"]),
        (lambda: assign(seats, tenant, member.user_id, SALES, STARTER), ["SEAT_ASSIGNED"]),
        (lambda: assign(seats, tenant, member.user_id, SALES, STARTER), []),
        (lambda: purchase(seats, tenant, SALES, STARTER, 2), ["SEATS_PURCHASED"]),
        (lambda: purchase(seats, tenant, SALES, STARTER, 1, validate_only=True), []),
        (lambda: schedule_removal(seats, tenant, SALES, STARTER, 2), ["SEAT_REMOVAL_SCHEDULED"]),
        (lambda: cancel_removal(seats, tenant, SALES, STARTER, 1), ["SEAT_REMOVAL_CANCELLED"]),
        (lambda: assign(seats, tenant, member.user_id, SERVICE, PROFESSIONAL), ["SEAT_ASSIGNED"]),
        (lambda: unassign(seats, tenant, other.user_id, SERVICE), ["SEAT_UNASSIGNED"]),
        (lambda: assign(seats, tenant, other.user_id, SERVICE, PROFESSIONAL), ["SEAT_ASSIGNED"]),
        (
            lambda: new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)], purchase_if_needed=True),
            ["USER_CREATED", "SEATS_PURCHASED", "SEAT_ASSIGNED"],
        ),
        (
            lambda: users.UpdateUser(
                user_service_pb2.UpdateUserRequest(
                    user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, display_name="M"),
                    update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                ),
                metadata=tenant.as_owner,
            ),
            ["USER_UPDATED"],
        ),
        (lambda: unassign(seats, tenant, member.user_id, SERVICE), ["SEAT_UNASSIGNED"]),
        (lambda: unassign(seats, tenant, member.user_id, SALES), ["SEAT_UNASSIGNED"]),
        (
            lambda: users.DeleteUser(
                user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id),
                metadata=tenant.as_owner,
            ),
            ["USER_DELETED"],
        ),
    ]
    for number, (step, expected) in enumerate(steps):
        sequence = last_sequence(seats, tenant)
        step()
        later = events(seats, tenant, after=sequence)
        assert event_types(later) == expected, f"step {number}"
        assert all(e.actor == tenant.owner_id for e in later), f"step {number}"

    log = check_event_log(seats, tenant)
    for event in log:
        if event_types([event])[0].startswith("USER_"):
            assert event.user_id, event


def test_i4_refused_calls_append_no_event(seats: Seats, users: Users) -> None:
    """I4: Every change of a pool or an assignment appends exactly one event (and no change appends none)."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    holder = new_user(users, tenant, seats=[(SALES, STARTER)])
    member = new_user(users, tenant)
    sequence = last_sequence(seats, tenant)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, member.user_id, SALES, STARTER)
    with refused(FAILED_PRECONDITION, "SEATS_ASSIGNED"):
        schedule_removal(seats, tenant, SALES, STARTER, 1)
    with refused(FAILED_PRECONDITION, "USER_HOLDS_SEATS"):
        users.DeleteUser(
            user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=holder.user_id), metadata=tenant.as_owner
        )
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):
        purchase(seats, tenant, SALES, STARTER, 1, by=member.user_id)

    assert last_sequence(seats, tenant) == sequence


def test_i4_events_page_after_a_sequence(seats: Seats, users: Users) -> None:
    """I4: Every change ... appends exactly one event to the account's ordered event log."""
    tenant = new_account(seats, (SALES, STARTER, 3))
    for _ in range(3):
        new_user(users, tenant, seats=[(SALES, STARTER)])
    log = events(seats, tenant)

    assert [e.sequence for e in events(seats, tenant, after=4)] == [e.sequence for e in log[4:]]
    assert events(seats, tenant, after=log[-1].sequence) == []
    other = new_account(seats, (SALES, STARTER, 3))
    assert [e.sequence for e in events(seats, other)] == [1, 2, 3], "each account has its own sequence"


# I5


def test_i5_retried_purchase_returns_the_first_result_once(seats: Seats, clock: ManualClock) -> None:
    """I5: A retried call with the same request id has its effect once, and returns the first call's result."""
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    sequence = last_sequence(seats, tenant)
    request_id = str(uuid.uuid4())

    first = purchase(seats, tenant, SALES, PROFESSIONAL, 2, request_id=request_id)
    clock.advance(hours=7)  # a recomputed charge would differ
    again = purchase(seats, tenant, SALES, PROFESSIONAL, 2, request_id=request_id)

    assert again == first
    assert pool(seats, tenant, SALES, PROFESSIONAL).purchased == 2
    [event] = events(seats, tenant, after=sequence)
    assert event_types([event]) == ["SEATS_PURCHASED"]
    assert event.request_id == request_id
    charged = preview(seats, tenant).current_term_charges
    prorated_seats = [c.charge_id for c in charged if c.kind == resources_pb2.CHARGE_KIND_PRORATED_SEATS]
    assert prorated_seats == [first.charge.charge_id]


def test_i5_retried_assignment_is_not_repeated(seats: Seats, users: Users) -> None:
    """I5: A retried call with the same request id has its effect once, and returns the first call's result."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)
    request_id = str(uuid.uuid4())
    first = assign(seats, tenant, member.user_id, SALES, STARTER, request_id=request_id)
    unassign(seats, tenant, member.user_id, SALES)

    again = assign(seats, tenant, member.user_id, SALES, STARTER, request_id=request_id)

    assert again == first
    assert seat_refs(users, tenant, member.user_id) == set(), "the retry did not give the seat again"
    assert event_types(events(seats, tenant)).count("SEAT_ASSIGNED") == 1


def test_i5_retried_batch_returns_the_first_result_once(seats: Seats, users: Users) -> None:
    """I5: A retried call with the same request id has its effect once, and returns the first call's result."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    first_user, second_user = new_user(users, tenant), new_user(users, tenant)
    request = seat_service_pb2.BatchUpdateSeatAssignmentsRequest(
        account_id=tenant.id,
        changes=[
            seat_service_pb2.SeatChange(user_id=first_user.user_id, hub=SALES, tier=STARTER),
            seat_service_pb2.SeatChange(user_id=second_user.user_id, hub=SALES, tier=STARTER),
        ],
        request_id=str(uuid.uuid4()),
    )
    first = seats.BatchUpdateSeatAssignments(request, metadata=tenant.as_owner)
    unassign(seats, tenant, first_user.user_id, SALES)
    sequence = last_sequence(seats, tenant)

    again = seats.BatchUpdateSeatAssignments(request, metadata=tenant.as_owner)

    assert again == first
    assert last_sequence(seats, tenant) == sequence
    assert seat_refs(users, tenant, first_user.user_id) == set()


def test_i5_retried_user_creation_returns_the_same_user(seats: Seats, users: Users) -> None:
    """I5: A retried call with the same request id has its effect once, and returns the first call's result."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    email, request_id = unique_email(), str(uuid.uuid4())

    first = create_user(users, tenant, email=email, seats=[(SALES, STARTER)], request_id=request_id)
    again = create_user(users, tenant, email=email, seats=[(SALES, STARTER)], request_id=request_id)

    assert again == first
    assert pool(seats, tenant, SALES, STARTER).assigned == 1
    assert event_types(events(seats, tenant)).count("USER_CREATED") == 2  # the owner and this user


def test_i5_retried_account_creation_returns_the_same_account(seats: Seats) -> None:
    """I5: A retried call with the same request id has its effect once, and returns the first call's result."""
    request = seat_service_pb2.CreateAccountRequest(
        display_name="Retry Ltd", owner_email=unique_email("owner"), term_months=12,
        subscriptions=[resources_pb2.Subscription(hub=SALES, tier=STARTER, purchased_seats=1)],
        request_id=str(uuid.uuid4()),
    )

    first = seats.CreateAccount(request)
    again = seats.CreateAccount(request)

    assert again == first
    assert len(events(seats, Tenant(first.account, tuple(first.charges)))) == 3


def test_i5_request_id_reused_with_another_payload_is_refused(seats: Seats, users: Users) -> None:
    """I5: A retried call with the same request id has its effect once (another payload is not a retry)."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    member = new_user(users, tenant)
    request_id = str(uuid.uuid4())
    purchase(seats, tenant, SALES, STARTER, 1, request_id=request_id)

    with refused(INVALID_ARGUMENT, "REQUEST_ID_REUSED"):
        purchase(seats, tenant, SALES, STARTER, 2, request_id=request_id)
    with refused(INVALID_ARGUMENT, "REQUEST_ID_REUSED"):
        assign(seats, tenant, member.user_id, SALES, STARTER, request_id=request_id)

    assert pool(seats, tenant, SALES, STARTER).purchased == 1
    assert seat_refs(users, tenant, member.user_id) == set()


def test_i5_concurrent_retries_have_one_effect(seats: Seats) -> None:
    """I5: A retried call with the same request id has its effect once (under any concurrency)."""
    tenant = new_account(seats, (SERVICE, STARTER, 0))
    request_id = str(uuid.uuid4())

    results = run_together(
        [(lambda: purchase(seats, tenant, SERVICE, STARTER, 3, request_id=request_id)) for _ in range(5)]
    )

    assert outcomes(results) == ["OK"] * 5
    assert all(r == results[0] for r in results)
    assert pool(seats, tenant, SERVICE, STARTER).purchased == 3
    assert event_types(events(seats, tenant)).count("SEATS_PURCHASED") == 1


# I6


def test_i6_every_amount_is_exact_money(seats: Seats, users: Users, clock: ManualClock) -> None:
    """I6: Money is exact: integer minor units (or google.type.Money), no floats."""
    tenant = new_account(seats, (SALES, FREE, 0), (SERVICE, PROFESSIONAL, 1), term_months=12)
    clock.advance(days=17, hours=13, minutes=11, seconds=7)
    new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    bought = purchase(seats, tenant, SERVICE, PROFESSIONAL, 3)
    grant = assign(seats, tenant, new_user(users, tenant).user_id, SERVICE, PROFESSIONAL)
    upgrade = seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(account_id=tenant.id, hub=SALES, tier=STARTER, purchased_seats=1),
        metadata=tenant.as_owner,
    )
    invoice = preview(seats, tenant)

    charges = [*tenant.charges, bought.charge, *upgrade.charges, *invoice.current_term_charges]
    assert not grant.HasField("charge")
    for charge in charges:
        cents(charge.amount), cents(charge.unit_price)
    for line in invoice.next_renewal_lines:
        cents(line.amount), cents(line.unit_price)
    for seat_pool in summary(seats, tenant).pools:
        cents(seat_pool.unit_price)
    assert cents(invoice.current_term_total) == sum(cents(c.amount) for c in invoice.current_term_charges)
    assert cents(invoice.next_renewal_total) == sum(cents(ln.amount) for ln in invoice.next_renewal_lines)
    assert cents(invoice.next_renewal_total) == 12 * (
        PRICE_BOOK[PROFESSIONAL].plan + 4 * PRICE_BOOK[PROFESSIONAL].seat
        + PRICE_BOOK[STARTER].plan + PRICE_BOOK[STARTER].seat
    )


def half_cent_remaining(term_seconds: int, yearly_cents: int, below: int, odd_half: int) -> tuple[int, int]:
    """A remaining time (seconds, below `below`) at which yearly_cents x remaining / term is m / 2
    with m odd and m % 4 == odd_half; returns (remaining seconds, m)."""
    for m in range(2 * yearly_cents - 1, 0, -2):
        if m % 4 == odd_half and (m * term_seconds) % (2 * yearly_cents) == 0:
            remaining = m * term_seconds // (2 * yearly_cents)
            if remaining < below:
                return remaining, m
    raise AssertionError("no half-cent moment in this term")


def test_i6_prorated_amount_is_the_exact_fraction_rounded_half_even(seats: Seats, clock: ManualClock) -> None:
    """I6: Money is exact: the prorated amount is the exact fraction, rounded half-even to the cent."""
    tenant = new_account(seats, (SALES, STARTER, 0), term_months=12)
    term = summary(seats, tenant)
    start, renewal = to_dt(term.term_start), to_dt(term.renewal_time)
    term_seconds = int((renewal - start).total_seconds())
    yearly = 12 * PRICE_BOOK[STARTER].seat

    # x.5 cents with an even x: half-even rounds down (half-up would round up)
    remaining, m = half_cent_remaining(term_seconds, yearly, int((renewal - clock.now()).total_seconds()), 1)
    clock.advance(renewal - clock.now() - timedelta(seconds=remaining))
    down = purchase(seats, tenant, SALES, STARTER, 1).charge
    assert cents(down.amount) == (m - 1) // 2 == prorated(1, PRICE_BOOK[STARTER].seat, 12, start, renewal, clock.now())

    # x.5 cents with an odd x: half-even rounds up
    remaining, m = half_cent_remaining(term_seconds, yearly, remaining, 3)
    clock.advance(renewal - clock.now() - timedelta(seconds=remaining))
    up = purchase(seats, tenant, SALES, STARTER, 1).charge
    assert cents(up.amount) == (m + 1) // 2 == prorated(1, PRICE_BOOK[STARTER].seat, 12, start, renewal, clock.now())


def test_i6_prorated_amounts_match_the_formula_at_odd_moments(seats: Seats, clock: ManualClock) -> None:
    """I6: Money is exact: integer minor units, the prorated amount rounded half-even from the exact fraction."""
    tenant = new_account(seats, (SALES, ENTERPRISE, 0), (SERVICE, STARTER, 0))
    term = summary(seats, tenant)
    start, renewal = to_dt(term.term_start), to_dt(term.renewal_time)

    for step_seconds, quantity in [(1, 1), (3_599, 7), (86_399, 3), (123_457, 11)]:
        clock.advance(seconds=step_seconds)
        for hub, tier in [(SALES, ENTERPRISE), (SERVICE, STARTER)]:
            charge = purchase(seats, tenant, hub, tier, quantity).charge
            expected = prorated(quantity, PRICE_BOOK[tier].seat, 1, start, renewal, clock.now())
            assert cents(charge.amount) == expected, (step_seconds, quantity, hub_tier(hub, tier))
