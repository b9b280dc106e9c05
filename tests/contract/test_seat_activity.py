"""Seat activity and idle seats, on both stores: RecordSeatActivity moves a seat's last use forward
and never back, ListSeatAssignments shows it and filters idle_since, UpdateSeatPolicy sets a pool's
idle_reclaim_days (validate_only lists what it would take), and the sweep unassigns the seats idle
that long, each with a SEAT_RECLAIMED event, leaving them in the pool (S18) with I1-I4 intact."""

from __future__ import annotations

from datetime import datetime, timedelta

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from seats.v1 import resources_pb2, seat_service_pb2

from service.servicers.common import ts
from tests.conftest import Running, actor
from tests.contract.helpers import (
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Tenant,
    assign,
    events,
    new_account,
    new_user,
    pool,
    to_dt,
)
from tests.toolkit import refused

INVALID = grpc.StatusCode.INVALID_ARGUMENT
DENIED = grpc.StatusCode.PERMISSION_DENIED


def record(
    running: Running, tenant: Tenant, *reports: tuple[str, resources_pb2.Hub.ValueType, datetime], by: str | None = ""
) -> seat_service_pb2.RecordSeatActivityResponse:
    """Reports activity as the owner (by=""), as another user, or as a trusted system (by=None)."""
    request = seat_service_pb2.RecordSeatActivityRequest(
        account_id=tenant.id,
        activities=[resources_pb2.SeatActivity(user_id=u, hub=h, activity_time=ts(t)) for u, h, t in reports],
    )
    metadata = () if by is None else actor(by or tenant.owner_id)
    return running.seats.RecordSeatActivity(request, metadata=metadata)


def seats_listed(running: Running, tenant: Tenant, idle_since: datetime | None = None) -> dict[str, Timestamp | None]:
    """user_id -> last_activity_time (None when no use was reported) of the listed Sales seats."""
    request = seat_service_pb2.ListSeatAssignmentsRequest(account_id=tenant.id, hub=SALES, page_size=1000)
    if idle_since is not None:
        request.idle_since.CopyFrom(ts(idle_since))
    answer = running.seats.ListSeatAssignments(request, metadata=tenant.as_owner)
    return {a.user_id: (a.last_activity_time if a.HasField("last_activity_time") else None) for a in answer.assignments}


def policy(
    running: Running, tenant: Tenant, days: int, *, validate_only: bool = False, by: str = "", request_id: str = ""
) -> seat_service_pb2.UpdateSeatPolicyResponse:
    return running.seats.UpdateSeatPolicy(
        seat_service_pb2.UpdateSeatPolicyRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, idle_reclaim_days=days,
            validate_only=validate_only, request_id=request_id,
        ),
        metadata=actor(by or tenant.owner_id),
    )  # fmt: skip


def team(running: Running, size: int) -> tuple[Tenant, list[str]]:
    """An account whose Sales Professional pool seats `size` users (the owner holds none)."""
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, max(0, size - 2)))
    return tenant, [new_user(running.users, tenant, seats=[(SALES, PROFESSIONAL)]).user_id for _ in range(size)]


def test_activity_moves_a_seats_last_use_forward_and_never_back(running: Running) -> None:
    tenant, (ann, bob) = team(running, 2)
    now = running.clock.now()
    assert seats_listed(running, tenant) == {ann: None, bob: None}

    answer = record(running, tenant, (ann, SALES, now - timedelta(hours=1)), (ann, SALES, now))
    assert (answer.recorded, answer.skipped) == (1, 1)  # two reports of one seat: the later wins
    assert to_dt(seats_listed(running, tenant)[ann]) == now  # type: ignore[arg-type]

    older = record(running, tenant, (ann, SALES, now - timedelta(minutes=5)))
    assert (older.recorded, older.skipped) == (0, 1)
    assert to_dt(seats_listed(running, tenant)[ann]) == now  # type: ignore[arg-type]

    # no seat of that hub, another account's user, a time before the seat was given: skipped
    other = new_user(running.users, tenant).user_id
    before_seat = to_dt(running.seats.ListSeatAssignments(
        seat_service_pb2.ListSeatAssignmentsRequest(account_id=tenant.id), metadata=tenant.as_owner
    ).assignments[0].assign_time) - timedelta(days=1)  # fmt: skip
    skipped = record(
        running, tenant, (other, SALES, now), (bob, SERVICE, now), ("usr_nobody", SALES, now), (bob, SALES, before_seat)
    )
    assert (skipped.recorded, skipped.skipped) == (0, 4)
    assert seats_listed(running, tenant)[bob] is None

    # activity is no change of the account: no event, the pools' etags stay
    sequence_before = len(events(running.seats, tenant))
    etag = pool(running.seats, tenant, SALES, PROFESSIONAL).etag
    record(running, tenant, (bob, SALES, now), by=None)
    assert len(events(running.seats, tenant)) == sequence_before
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).etag == etag
    assert to_dt(seats_listed(running, tenant)[bob]) == now  # type: ignore[arg-type]


def test_a_move_to_another_tier_keeps_the_last_use_and_an_unassign_forgets_it(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0), (SALES, STARTER, 1))
    ann = new_user(running.users, tenant, seats=[(SALES, PROFESSIONAL)]).user_id
    now = running.clock.now()
    record(running, tenant, (ann, SALES, now))
    running.clock.advance(days=40)
    assert set(seats_listed(running, tenant, idle_since=running.clock.now())) == {ann}
    assign(running.seats, tenant, ann, SALES, STARTER)  # an administrator's move: a use of the seat
    assert to_dt(seats_listed(running, tenant)[ann]) == now  # type: ignore[arg-type]
    assert set(seats_listed(running, tenant, idle_since=running.clock.now())) == set()
    running.seats.UnassignSeat(
        seat_service_pb2.UnassignSeatRequest(account_id=tenant.id, user_id=ann, hub=SALES), metadata=tenant.as_owner
    )
    running.clock.advance(seconds=1)
    assign(running.seats, tenant, ann, SALES, STARTER)
    assert seats_listed(running, tenant)[ann] is None


def test_idle_since_lists_the_seats_nobody_used_since(running: Running) -> None:
    tenant, (ann, bob, cy) = team(running, 3)
    start = running.clock.now()
    running.clock.advance(days=10)
    now = running.clock.now()
    record(running, tenant, (ann, SALES, now), (bob, SALES, start + timedelta(days=2)))
    assert set(seats_listed(running, tenant, idle_since=now - timedelta(days=5))) == {bob, cy}
    assert set(seats_listed(running, tenant, idle_since=start + timedelta(days=1))) == {cy}
    assert set(seats_listed(running, tenant, idle_since=start)) == set()
    # pages of a filtered list carry the filter: a token with another one is refused
    first = running.seats.ListSeatAssignments(
        seat_service_pb2.ListSeatAssignmentsRequest(
            account_id=tenant.id, page_size=1, idle_since=ts(now - timedelta(days=5))
        ),
        metadata=tenant.as_owner,
    )
    assert [a.user_id for a in first.assignments] == [min(bob, cy)] and first.next_page_token
    with refused(INVALID):
        running.seats.ListSeatAssignments(
            seat_service_pb2.ListSeatAssignmentsRequest(
                account_id=tenant.id, page_size=1, page_token=first.next_page_token, idle_since=ts(now)
            ),
            metadata=tenant.as_owner,
        )


def test_bad_activity_reports_are_invalid_argument_and_record_nothing(running: Running) -> None:
    tenant, (ann,) = team(running, 1)
    now = running.clock.now()
    with refused(INVALID, "INVALID_FIELD") as refusal:
        running.seats.RecordSeatActivity(
            seat_service_pb2.RecordSeatActivityRequest(account_id=tenant.id), metadata=tenant.as_owner
        )
    assert refusal.fields == ["activities"]
    with refused(INVALID, "INVALID_FIELD") as refusal:
        record(running, tenant, (ann, SALES, now), (ann, SALES, now + timedelta(minutes=6)))
    assert refusal.fields == ["activities[1].activity_time"]
    with refused(INVALID, "INVALID_FIELD") as refusal:
        running.seats.RecordSeatActivity(
            seat_service_pb2.RecordSeatActivityRequest(
                account_id=tenant.id, activities=[resources_pb2.SeatActivity(user_id=ann, hub=SALES)]
            ),
            metadata=tenant.as_owner,
        )
    assert refusal.fields == ["activities[0].activity_time"]
    with refused(INVALID, "INVALID_FIELD") as refusal:
        running.seats.RecordSeatActivity(
            seat_service_pb2.RecordSeatActivityRequest(
                account_id=tenant.id, activities=[resources_pb2.SeatActivity(user_id=ann, activity_time=ts(now))]
            ),
            metadata=tenant.as_owner,
        )
    assert refusal.fields == ["activities[0].hub"]
    with refused(INVALID, "INVALID_FIELD") as refusal:  # past 9999-12-31, which a Timestamp cannot hold
        running.seats.RecordSeatActivity(
            seat_service_pb2.RecordSeatActivityRequest(
                account_id=tenant.id,
                activities=[
                    resources_pb2.SeatActivity(user_id=ann, hub=SALES, activity_time=ts(now)),
                    resources_pb2.SeatActivity(
                        user_id=ann, hub=SALES, activity_time=Timestamp(seconds=253_402_300_800)
                    ),
                ],
            ),
            metadata=tenant.as_owner,
        )
    assert refusal.fields == ["activities[1].activity_time"]
    assert seats_listed(running, tenant)[ann] is None


def test_activity_needs_account_access_or_a_trusted_system(running: Running) -> None:
    tenant, (ann,) = team(running, 1)
    now = running.clock.now()
    with refused(DENIED, "PERMISSION_MISSING"):
        record(running, tenant, (ann, SALES, now), by=ann)  # a user without account access
    admin = new_user(running.users, tenant, permissions=resources_pb2.Permissions(account_access=True)).user_id
    assert record(running, tenant, (ann, SALES, now), by=admin).recorded == 1
    outsider = new_account(running.seats, (SALES, STARTER, 0))
    with refused(DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        record(running, tenant, (ann, SALES, now), by=outsider.owner_id)


def test_a_policy_lists_the_idle_seats_and_the_sweep_reclaims_them(running: Running) -> None:
    tenant, (ann, bob, cy) = team(running, 3)
    running.clock.advance(days=20)
    record(running, tenant, (ann, SALES, running.clock.now()))
    running.clock.advance(days=11)  # bob and cy: idle 31 days; ann: 11

    preview = policy(running, tenant, 30, validate_only=True)
    assert preview.pool.idle_reclaim_days == 30
    assert [a.user_id for a in preview.idle_seats] == sorted([bob, cy])
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).idle_reclaim_days == 0  # validate_only: nothing
    running.server.sweeper.sweep_once()
    assert set(seats_listed(running, tenant)) == {ann, bob, cy}

    kept = len(events(running.seats, tenant))
    answer = policy(running, tenant, 30)
    assert answer.pool.idle_reclaim_days == 30
    assert [a.user_id for a in answer.idle_seats] == sorted([bob, cy])
    policy_events = events(running.seats, tenant)[kept:]
    assert [(e.type, e.quantity) for e in policy_events] == [(resources_pb2.SEAT_EVENT_TYPE_SEAT_POLICY_UPDATED, 30)]
    assert len(events(running.seats, tenant)) == kept + 1
    policy(running, tenant, 30)  # the same policy again: no change, no event
    assert len(events(running.seats, tenant)) == kept + 1

    record(running, tenant, (cy, SALES, running.clock.now()))  # cy comes back before the sweep
    before = pool(running.seats, tenant, SALES, PROFESSIONAL)
    registry = running.store.observer.metrics.registry  # type: ignore[union-attr]
    labels = {"hub": "sales", "tier": "professional", "change": "reclaimed"}
    counted = registry.get_sample_value("seat_assignments_total", labels) or 0
    running.server.sweeper.sweep_once()
    after = pool(running.seats, tenant, SALES, PROFESSIONAL)
    assert set(seats_listed(running, tenant)) == {ann, cy}
    assert (after.assigned, after.purchased) == (before.assigned - 1, before.purchased)  # S18: still in the pool
    reclaimed = events(running.seats, tenant)[kept + 1 :]
    assert [(e.type, e.user_id, e.actor) for e in reclaimed] == [
        (resources_pb2.SEAT_EVENT_TYPE_SEAT_RECLAIMED, bob, "system")
    ]
    assert reclaimed[0].before.assigned == before.assigned and reclaimed[0].after.assigned == after.assigned
    assert registry.get_sample_value("seat_assignments_total", labels) == counted + 1
    running.server.sweeper.sweep_once()  # nothing more is idle that long
    assert len(events(running.seats, tenant)) == kept + 2

    policy(running, tenant, 0)  # off: ann idles forever
    running.clock.advance(days=400)
    running.server.sweeper.sweep_once()
    assert set(seats_listed(running, tenant)) == {ann, cy}


@pytest.mark.parametrize("days", [-1, 1, 6, 3651])
def test_a_policy_under_a_week_or_over_ten_years_is_invalid(running: Running, days: int) -> None:
    tenant, _ = team(running, 1)
    with refused(INVALID, "INVALID_FIELD") as refusal:
        policy(running, tenant, days)
    assert refusal.fields == ["idle_reclaim_days"]


def test_a_policy_needs_account_access_and_a_pool(running: Running) -> None:
    tenant, (ann,) = team(running, 1)
    with refused(DENIED, "PERMISSION_MISSING"):
        policy(running, tenant, 30, by=ann)
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        running.seats.UpdateSeatPolicy(
            seat_service_pb2.UpdateSeatPolicyRequest(
                account_id=tenant.id, hub=SERVICE, tier=STARTER, idle_reclaim_days=30
            ),
            metadata=tenant.as_owner,
        )


def test_a_policy_change_under_a_request_id_happens_once(running: Running) -> None:
    tenant, _ = team(running, 1)
    first = policy(running, tenant, 14, request_id="policy-once")
    again = policy(running, tenant, 14, request_id="policy-once")
    assert first == again
    assert [e.type for e in events(running.seats, tenant)].count(resources_pb2.SEAT_EVENT_TYPE_SEAT_POLICY_UPDATED) == 1
