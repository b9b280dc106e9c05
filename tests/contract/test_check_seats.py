"""CheckSeats over the real channel, on SQLite and PostgreSQL: each user's tier in a hub, in
request order, with the event sequence the answer reflects exactly (I4); the read rules and the
input checks of the other reads."""

from __future__ import annotations

import grpc
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import (
    ENTERPRISE,
    FREE,
    NO_TIER,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Seats,
    Tenant,
    assign,
    batch,
    events,
    last_sequence,
    new_account,
    new_user,
    purchase,
    unassign,
)
from tests.toolkit import Hub, refused

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
NOT_FOUND = grpc.StatusCode.NOT_FOUND
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
MAX_IDS = 1000
MAX_ID_LENGTH = 128


def check(
    seats: Seats, tenant: Tenant, hub: Hub, user_ids: list[str], *, by: str | None = None
) -> seat_service_pb2.CheckSeatsResponse:
    """CheckSeats acting as the owner (or as `by`)."""
    return seats.CheckSeats(
        seat_service_pb2.CheckSeatsRequest(account_id=tenant.id, hub=hub, user_ids=user_ids),
        metadata=actor(by or tenant.owner_id),
    )


def tiers(seats: Seats, tenant: Tenant, hub: Hub, user_ids: list[str]) -> list[int]:
    return list(check(seats, tenant, hub, user_ids).tiers)


# ---- answers ------------------------------------------------------------------------------------


def test_s13_check_seats_answers_in_request_order(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, STARTER, 3), (SALES, PROFESSIONAL, 3), (SALES, ENTERPRISE, 0))
    starter = new_user(users, tenant, seats=[(SALES, STARTER)])
    pro = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    enterprise = new_user(users, tenant, seats=[(SALES, ENTERPRISE)])
    none = new_user(users, tenant)
    ids = [starter.user_id, pro.user_id, enterprise.user_id, none.user_id]

    assert tiers(seats, tenant, SALES, ids) == [STARTER, PROFESSIONAL, ENTERPRISE, NO_TIER]
    assert tiers(seats, tenant, SALES, ids[::-1]) == [NO_TIER, ENTERPRISE, PROFESSIONAL, STARTER]
    assert tiers(seats, tenant, SALES, [pro.user_id, none.user_id, starter.user_id]) == [PROFESSIONAL, NO_TIER, STARTER]


def test_s13_check_seats_answers_each_duplicate(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 1))
    holder = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    other = new_user(users, tenant)

    ids = [holder.user_id, other.user_id, holder.user_id, holder.user_id, other.user_id]
    assert tiers(seats, tenant, SALES, ids) == [PROFESSIONAL, NO_TIER, PROFESSIONAL, PROFESSIONAL, NO_TIER]


def test_s13_user_without_seat_has_no_tier(running: Running) -> None:
    """S13: a user holds paid access only through a seat; one of another hub gives none in this hub."""
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 1), (SERVICE, STARTER, 1))
    seatless = new_user(users, tenant)
    service_only = new_user(users, tenant, seats=[(SERVICE, STARTER)])

    assert tiers(seats, tenant, SALES, [seatless.user_id, service_only.user_id, tenant.owner_id]) == [NO_TIER] * 3
    assert tiers(seats, tenant, SERVICE, [seatless.user_id, service_only.user_id]) == [NO_TIER, STARTER]


def test_s13_unknown_user_has_no_tier(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    holder = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])

    answer = tiers(seats, tenant, SALES, ["usr_does_not_exist", holder.user_id, "x" * MAX_ID_LENGTH])
    assert answer == [NO_TIER, PROFESSIONAL, NO_TIER]


def test_s13_a_user_of_another_account_has_no_tier_here(running: Running) -> None:
    """Tenancy: the seat of a user of account B does not show through account A."""
    seats, users = running.seats, running.users
    home, other = new_account(seats, (SALES, PROFESSIONAL, 0)), new_account(seats, (SALES, PROFESSIONAL, 0))
    foreign = new_user(users, other, seats=[(SALES, PROFESSIONAL)])

    assert tiers(seats, home, SALES, [foreign.user_id]) == [NO_TIER]
    assert tiers(seats, other, SALES, [foreign.user_id]) == [PROFESSIONAL]


def test_s18_an_unassigned_user_has_no_tier(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    holder = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    unassign(seats, tenant, holder.user_id, SALES)

    assert tiers(seats, tenant, SALES, [holder.user_id]) == [NO_TIER]


def test_i3_check_seats_shows_a_moved_seat_at_its_new_tier(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, STARTER, 2), (SALES, PROFESSIONAL, 2))
    moved = new_user(users, tenant, seats=[(SALES, STARTER)])
    swapped = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])

    response = assign(seats, tenant, moved.user_id, SALES, PROFESSIONAL)
    assert response.previous_tier == STARTER
    assert tiers(seats, tenant, SALES, [moved.user_id, swapped.user_id]) == [PROFESSIONAL, PROFESSIONAL]

    batch(seats, tenant, (moved.user_id, SALES, STARTER), (swapped.user_id, SALES, STARTER))
    assert tiers(seats, tenant, SALES, [moved.user_id, swapped.user_id]) == [STARTER, STARTER]


def test_s6_check_seats_after_an_upgrade_from_free(running: Running) -> None:
    """S6: the free seats go at the upgrade; the users named in it hold the new tier."""
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, FREE, 0))
    kept = new_user(users, tenant, seats=[(SALES, FREE)])
    dropped = new_user(users, tenant, seats=[(SALES, FREE)])
    assert tiers(seats, tenant, SALES, [kept.user_id, dropped.user_id]) == [FREE, FREE]

    seats.UpgradeSubscription(
        seat_service_pb2.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, assign_user_ids=[kept.user_id]
        ),
        metadata=tenant.as_owner,
    )

    assert tiers(seats, tenant, SALES, [kept.user_id, dropped.user_id]) == [PROFESSIONAL, NO_TIER]


def test_s10_a_deleted_user_has_no_tier(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    gone = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    unassign(seats, tenant, gone.user_id, SALES)
    users.DeleteUser(
        user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=gone.user_id), metadata=tenant.as_owner
    )

    assert tiers(seats, tenant, SALES, [gone.user_id]) == [NO_TIER]


def test_s13_any_user_of_the_account_may_check_seats(running: Running) -> None:
    """Read rules: a user without any permission, and a system call, read it too."""
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    holder = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    plain = new_user(users, tenant)

    assert tiers(seats, tenant, SALES, [holder.user_id]) == [PROFESSIONAL]
    assert list(check(seats, tenant, SALES, [holder.user_id], by=plain.user_id).tiers) == [PROFESSIONAL]
    system = seats.CheckSeats(
        seat_service_pb2.CheckSeatsRequest(account_id=tenant.id, hub=SALES, user_ids=[holder.user_id])
    )
    assert list(system.tiers) == [PROFESSIONAL]


# ---- the sequence (I4) ------------------------------------------------------------------------


def test_i4_check_seats_sequence_is_the_last_event_and_moves_with_each_change(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    member = new_user(users, tenant)

    def sequence() -> int:
        answer = check(seats, tenant, SALES, [member.user_id]).sequence
        assert answer == last_sequence(seats, tenant), "the sequence is the last event of ListSeatEvents"
        return answer

    seen = [sequence()]
    assign(seats, tenant, member.user_id, SALES, PROFESSIONAL)
    seen.append(sequence())
    purchase(seats, tenant, SALES, PROFESSIONAL, 1)  # not a seat assignment, still an event
    seen.append(sequence())
    unassign(seats, tenant, member.user_id, SALES)
    seen.append(sequence())
    new_user(users, tenant)
    seen.append(sequence())

    assert seen == sorted(set(seen)), f"the sequence moves with each change: {seen}"
    assert [e.sequence for e in events(seats, tenant, after=seen[0])] == list(range(seen[0] + 1, seen[-1] + 1))
    assert check(seats, tenant, SALES, [member.user_id]).sequence == seen[-1], "a read moves nothing"


def test_i4_the_sequence_of_an_answer_names_the_state_it_reflects(running: Running) -> None:
    """The tier answered at sequence n is the one the log gives after replaying events 1..n."""
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, STARTER, 1), (SALES, PROFESSIONAL, 1))
    member = new_user(users, tenant)
    answers = []
    for tier in (STARTER, PROFESSIONAL, None, STARTER):
        if tier is None:
            unassign(seats, tenant, member.user_id, SALES)
        else:
            assign(seats, tenant, member.user_id, SALES, tier)
        answer = check(seats, tenant, SALES, [member.user_id])
        answers.append((answer.sequence, answer.tiers[0]))

    log = events(seats, tenant)
    for sequence, tier in answers:
        held = NO_TIER
        for event in log[:sequence]:
            if event.user_id == member.user_id and event.hub == SALES:
                assigned = event.type == resources_pb2.SEAT_EVENT_TYPE_SEAT_ASSIGNED
                held = event.tier if assigned else NO_TIER
        assert held == tier, f"at sequence {sequence} the log gives {held}, CheckSeats said {tier}"
    assert [t for _, t in answers] == [STARTER, PROFESSIONAL, NO_TIER, STARTER]


def test_i4_a_refused_change_leaves_the_sequence(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    holders = [new_user(users, tenant, seats=[(SALES, PROFESSIONAL)]) for _ in range(2)]
    late = new_user(users, tenant)
    before = check(seats, tenant, SALES, [late.user_id]).sequence

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(seats, tenant, late.user_id, SALES, PROFESSIONAL)

    after = check(seats, tenant, SALES, [late.user_id, *(h.user_id for h in holders)])
    assert after.sequence == before
    assert list(after.tiers) == [NO_TIER, PROFESSIONAL, PROFESSIONAL]


# ---- how many ids -----------------------------------------------------------------------------


def test_check_seats_takes_up_to_1000_ids(running: Running) -> None:
    seats, users = running.seats, running.users
    tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
    holder = new_user(users, tenant, seats=[(SALES, PROFESSIONAL)])
    ids = [f"usr_unknown_{i}" for i in range(MAX_IDS - 1)] + [holder.user_id]

    answer = tiers(seats, tenant, SALES, ids)

    assert len(answer) == MAX_IDS
    assert answer[-1] == PROFESSIONAL
    assert set(answer[:-1]) == {NO_TIER}


def test_check_seats_refuses_no_ids(running: Running) -> None:
    tenant = new_account(running.seats)
    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        check(running.seats, tenant, SALES, [])
    assert refusal.names_field("user_ids"), refusal.fields


def test_check_seats_refuses_1001_ids(running: Running) -> None:
    tenant = new_account(running.seats)
    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        check(running.seats, tenant, SALES, [tenant.owner_id] * (MAX_IDS + 1))
    assert refusal.names_field("user_ids"), refusal.fields


# ---- bad input --------------------------------------------------------------------------------


def test_check_seats_refuses_a_bad_id(running: Running) -> None:
    tenant = new_account(running.seats)
    for bad in ("usr\x00nul", "usr\nnewline", "tab\there", "del\x7f", "x" * (MAX_ID_LENGTH + 1), ""):
        with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
            check(running.seats, tenant, SALES, [tenant.owner_id, bad])
        assert refusal.names_field("user_ids[1]"), f"{bad!r}: {refusal.fields}"


def test_check_seats_refuses_a_missing_or_unknown_hub(running: Running) -> None:
    tenant = new_account(running.seats)
    for hub in (resources_pb2.HUB_UNSPECIFIED, Hub(99)):
        with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
            check(running.seats, tenant, hub, [tenant.owner_id])
        assert refusal.names_field("hub"), refusal.fields


def test_check_seats_refuses_a_missing_account_id(running: Running) -> None:
    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        running.seats.CheckSeats(seat_service_pb2.CheckSeatsRequest(hub=SALES, user_ids=["usr_x"]))
    assert refusal.names_field("account_id"), refusal.fields


# ---- who may ask ------------------------------------------------------------------------------


def test_s12_an_outsider_actor_is_refused(running: Running) -> None:
    seats, users = running.seats, running.users
    home, other = new_account(seats, (SALES, PROFESSIONAL, 0)), new_account(seats, (SALES, PROFESSIONAL, 0))
    holder = new_user(users, home, seats=[(SALES, PROFESSIONAL)])

    for outsider in (other.owner_id, "usr_nobody"):
        with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
            check(seats, home, SALES, [holder.user_id], by=outsider)


def test_s12_an_outsider_learns_nothing_about_an_unknown_account(running: Running) -> None:
    """ACTOR_NOT_IN_ACCOUNT comes before the account is looked up: same answer whether it exists."""
    tenant = new_account(running.seats)
    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        running.seats.CheckSeats(
            seat_service_pb2.CheckSeatsRequest(account_id="acc_does_not_exist", hub=SALES, user_ids=["usr_x"]),
            metadata=tenant.as_owner,
        )


def test_check_seats_of_an_unknown_account_is_not_found(running: Running) -> None:
    with refused(NOT_FOUND, "ACCOUNT_NOT_FOUND"):
        running.seats.CheckSeats(
            seat_service_pb2.CheckSeatsRequest(account_id="acc_does_not_exist", hub=SALES, user_ids=["usr_x"])
        )
