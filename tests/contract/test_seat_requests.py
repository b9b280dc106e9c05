"""Seat requests and the waiting list, on both stores: a user asks for a seat without any
permission (RequestSeat); an administrator lists, approves (a free seat at once, a bought one on
request, else the request waits) or denies; a seat that frees (an unassign, a purchase, a
cancelled removal, a reclaim) goes to the oldest waiting request in the same transaction, with
its SEAT_ASSIGNED event; a pool may approve requests by itself while seats are free. I1-I4 hold
throughout, and while anyone waits no seat of the pool is free."""

from __future__ import annotations

import functools
from collections.abc import Callable

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import (
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Tenant,
    check_event_log,
    events,
    new_account,
    new_user,
    pool,
    purchase,
    run_together,
    schedule_removal,
    unassign,
)
from tests.toolkit import CANCELLED, DENIED, GRANTED, PENDING, WAITING, event_type, refused

ADMIN = resources_pb2.Permissions(account_access=True)
BILLING_ADMIN = resources_pb2.Permissions(account_access=True, edit_billing=True)


def ask(
    running: Running,
    tenant: Tenant,
    user_id: str,
    hub: resources_pb2.Hub.ValueType = SALES,
    tier: resources_pb2.Tier.ValueType = PROFESSIONAL,
    *,
    by: str | None = "",
    why: str = "",
    request_id: str = "",
) -> seat_service_pb2.RequestSeatResponse:
    """The user asks for a seat themselves (by=""), or `by` asks for them (None: a trusted system)."""
    request = seat_service_pb2.RequestSeatRequest(
        account_id=tenant.id, hub=hub, tier=tier, reason=why, request_id=request_id
    )
    if by is None or by:
        request.user_id = user_id
    metadata = () if by is None else actor(by or user_id)
    return running.seats.RequestSeat(request, metadata=metadata)


def approve(
    running: Running, tenant: Tenant, seat_request_id: str, *, by: str = "", buy: bool = False, request_id: str = ""
) -> seat_service_pb2.ApproveSeatRequestResponse:
    return running.seats.ApproveSeatRequest(
        seat_service_pb2.ApproveSeatRequestRequest(
            account_id=tenant.id, seat_request_id=seat_request_id, purchase_if_needed=buy, request_id=request_id
        ),
        metadata=actor(by or tenant.owner_id),
    )


def deny(running: Running, tenant: Tenant, seat_request_id: str, *, by: str = "") -> resources_pb2.SeatRequest:
    return running.seats.DenySeatRequest(
        seat_service_pb2.DenySeatRequestRequest(account_id=tenant.id, seat_request_id=seat_request_id),
        metadata=actor(by or tenant.owner_id),
    ).seat_request


def listed(
    running: Running,
    tenant: Tenant,
    *,
    state: int = 0,
    user_id: str = "",
    by: str = "",
    page_size: int = 0,
) -> list[resources_pb2.SeatRequest]:
    """Every page of ListSeatRequests."""
    found: list[resources_pb2.SeatRequest] = []
    token = ""
    while True:
        page = running.seats.ListSeatRequests(
            seat_service_pb2.ListSeatRequestsRequest(
                account_id=tenant.id,
                state=resources_pb2.SeatRequestState.ValueType(state),
                user_id=user_id,
                page_size=page_size,
                page_token=token,
            ),
            metadata=actor(by or tenant.owner_id),
        )
        found.extend(page.seat_requests)
        token = page.next_page_token
        if not token:
            return found


def states(running: Running, tenant: Tenant) -> dict[str, int]:
    return {q.seat_request_id: q.state for q in listed(running, tenant)}


def policy(
    running: Running, tenant: Tenant, *, days: int = 0, auto: bool = False, mask: tuple[str, ...] = ()
) -> resources_pb2.SeatPool:
    """Sets the Sales Professional pool's policy as the owner. The session's server is shared: a
    test that turns idle reclaim on turns it off again, so that later sweeps leave its seats be."""
    return running.seats.UpdateSeatPolicy(
        seat_service_pb2.UpdateSeatPolicyRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, idle_reclaim_days=days, auto_approve_requests=auto,
            update_mask=FieldMask(paths=list(mask)),
        ),
        metadata=tenant.as_owner,
    ).pool  # fmt: skip


def full_pool(running: Running, holders: int = 2) -> tuple[Tenant, list[str]]:
    """Sales Professional with 2 included seats and holders - 2 bought, all given (the owner holds
    none), and Sales Starter with its 1 included seat, free."""
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, holders - 2), (SALES, STARTER, 0))
    users = [new_user(running.users, tenant, seats=[(SALES, PROFESSIONAL)]).user_id for _ in range(holders)]
    return tenant, users


def test_a_user_asks_for_a_seat_without_any_permission(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0))
    ann = new_user(running.users, tenant).user_id
    answer = ask(running, tenant, ann, why="I run the Q3 pipeline")
    request = answer.seat_request
    assert request.seat_request_id.startswith("sreq_")
    assert (request.user_id, request.hub, request.tier, request.state) == (ann, SALES, PROFESSIONAL, PENDING)
    assert (request.requested_by, request.decided_by, request.reason) == (ann, "", "I run the Q3 pipeline")
    assert not answer.HasField("assignment")  # asking grants nothing (S13)
    last = events(running.seats, tenant)[-1]
    assert (event_type(last), last.user_id, last.seat_request_id) == ("SEAT_REQUESTED", ann, request.seat_request_id)
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).assigned == 0

    # the user lists their own; everyone's needs account access
    assert [q.seat_request_id for q in listed(running, tenant, user_id=ann, by=ann)] == [request.seat_request_id]
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):
        listed(running, tenant, by=ann)
    # asking for someone else needs account access; an administrator or a trusted system may
    bob = new_user(running.users, tenant).user_id
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):
        ask(running, tenant, bob, by=ann)
    admin = new_user(running.users, tenant, permissions=ADMIN).user_id
    assert ask(running, tenant, bob, by=admin).seat_request.requested_by == admin
    assert ask(running, tenant, admin, by=None).seat_request.requested_by == "system"
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):  # a system call names the user
        running.seats.RequestSeat(
            seat_service_pb2.RequestSeatRequest(account_id=tenant.id, hub=SALES, tier=PROFESSIONAL)
        )


def test_approval_grants_a_free_seat_at_once_with_the_request_on_its_event(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0))
    ann = new_user(running.users, tenant).user_id
    admin = new_user(running.users, tenant, permissions=ADMIN).user_id
    request = ask(running, tenant, ann).seat_request
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):  # S12
        approve(running, tenant, request.seat_request_id, by=ann)
    answer = approve(running, tenant, request.seat_request_id, by=admin)
    assert (answer.seat_request.state, answer.seat_request.decided_by) == (GRANTED, admin)
    assert (answer.assignment.user_id, answer.assignment.tier) == (ann, PROFESSIONAL)
    assert (answer.pool.assigned, answer.pool.available) == (1, 1)
    assert not answer.HasField("charge")
    last = events(running.seats, tenant)[-1]
    assert (event_type(last), last.user_id, last.seat_request_id) == ("SEAT_ASSIGNED", ann, request.seat_request_id)
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "SEAT_REQUEST_CLOSED"):
        approve(running, tenant, request.seat_request_id)
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "SEAT_REQUEST_CLOSED"):
        deny(running, tenant, request.seat_request_id)
    check_event_log(running.seats, tenant)


def test_waiting_list_the_oldest_request_gets_the_seat_an_unassign_frees_in_that_transaction(
    running: Running,
) -> None:
    tenant, (ann, _bob) = full_pool(running)
    cy, dee = (new_user(running.users, tenant).user_id for _ in range(2))
    first = ask(running, tenant, cy).seat_request.seat_request_id
    second = ask(running, tenant, dee).seat_request.seat_request_id
    for seat_request_id in (first, second):
        answer = approve(running, tenant, seat_request_id)
        assert answer.seat_request.state == WAITING and not answer.HasField("assignment")
    full = pool(running.seats, tenant, SALES, PROFESSIONAL)
    assert (full.waiting_requests, full.available, full.assigned) == (2, 0, 2)
    assert [q.seat_request_id for q in listed(running, tenant, state=WAITING)] == [first, second]

    after_unassign = running.seats.UnassignSeat(
        seat_service_pb2.UnassignSeatRequest(account_id=tenant.id, user_id=ann, hub=SALES, request_id="free-ann"),
        metadata=tenant.as_owner,
    ).pool
    # the answer shows the pool as it committed: the freed seat already went to the waiting list
    assert (after_unassign.assigned, after_unassign.available, after_unassign.waiting_requests) == (2, 0, 1)
    log = check_event_log(running.seats, tenant)
    freed = [e for e in log if e.request_id == "free-ann"]
    assert [(event_type(e), e.user_id, e.seat_request_id) for e in freed] == [
        ("SEAT_UNASSIGNED", ann, ""),
        ("SEAT_ASSIGNED", cy, first),
    ]
    assert freed[1].sequence == freed[0].sequence + 1  # one transaction, in order
    after = pool(running.seats, tenant, SALES, PROFESSIONAL)
    assert (after.waiting_requests, after.available, after.assigned) == (1, 0, 2)
    assert states(running, tenant) == {first: GRANTED, second: WAITING}
    granted = listed(running, tenant, user_id=cy)[0]
    assert granted.decided_by == tenant.owner_id  # who approved it, not who freed the seat

    # a purchase frees a seat too: the next in line gets it
    bought = purchase(running.seats, tenant, SALES, PROFESSIONAL, 1).pool
    assert (bought.assigned, bought.available, bought.waiting_requests) == (3, 0, 0)
    assert states(running, tenant)[second] == GRANTED
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).waiting_requests == 0
    check_event_log(running.seats, tenant)


def test_an_approval_takes_a_seat_pending_removal_cancelling_the_removal(running: Running) -> None:
    tenant, (ann, _bob, _cy) = full_pool(running, holders=3)  # 2 included + 1 purchased, all given
    unassign(running.seats, tenant, ann, SALES)
    schedule_removal(running.seats, tenant, SALES, PROFESSIONAL, 1)  # the free seat leaves at renewal
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).available == 0
    dee = new_user(running.users, tenant).user_id
    request = ask(running, tenant, dee).seat_request.seat_request_id
    assert approve(running, tenant, request).seat_request.state == GRANTED  # as AssignSeat would (S11)
    after = pool(running.seats, tenant, SALES, PROFESSIONAL)
    assert (after.pending_removal, after.assigned, after.waiting_requests) == (0, 3, 0)
    log = check_event_log(running.seats, tenant)
    assert event_type(log[-1]) == "SEAT_ASSIGNED" and log[-1].before.pending_removal == 1


def test_approval_buys_a_seat_on_request_with_edit_billing(running: Running) -> None:
    tenant, _ = full_pool(running)
    cy = new_user(running.users, tenant).user_id
    admin = new_user(running.users, tenant, permissions=ADMIN).user_id
    billing = new_user(running.users, tenant, permissions=BILLING_ADMIN).user_id
    request = ask(running, tenant, cy).seat_request.seat_request_id
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):  # S7, S14
        approve(running, tenant, request, by=admin, buy=True)
    assert states(running, tenant)[request] == PENDING  # the refusal changed nothing
    answer = approve(running, tenant, request, by=billing, buy=True)
    assert answer.seat_request.state == GRANTED
    assert (answer.charge.quantity, answer.pool.purchased, answer.pool.assigned) == (1, 1, 3)
    log = check_event_log(running.seats, tenant)
    assert [event_type(e) for e in log[-2:]] == ["SEATS_PURCHASED", "SEAT_ASSIGNED"]


def test_a_bought_seat_goes_to_the_approved_request_even_past_the_waiting_list(running: Running) -> None:
    tenant, _ = full_pool(running)
    cy, dee = (new_user(running.users, tenant).user_id for _ in range(2))
    queued = ask(running, tenant, cy).seat_request.seat_request_id
    approve(running, tenant, queued)
    urgent = ask(running, tenant, dee).seat_request.seat_request_id
    assert approve(running, tenant, urgent, buy=True).seat_request.state == GRANTED
    assert states(running, tenant) == {queued: WAITING, urgent: GRANTED}
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).available == 0


def test_deny_closes_a_pending_or_a_waiting_request(running: Running) -> None:
    tenant, _ = full_pool(running)
    cy, dee = (new_user(running.users, tenant).user_id for _ in range(2))
    pending = ask(running, tenant, cy).seat_request.seat_request_id
    waiting = ask(running, tenant, dee).seat_request.seat_request_id
    approve(running, tenant, waiting)
    admin = new_user(running.users, tenant, permissions=ADMIN).user_id
    with refused(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING"):
        deny(running, tenant, pending, by=cy)
    assert (deny(running, tenant, pending, by=admin).decided_by, deny(running, tenant, waiting).state) == (
        admin,
        DENIED,
    )
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).waiting_requests == 0
    last = events(running.seats, tenant)[-1]
    assert (event_type(last), last.seat_request_id) == ("SEAT_REQUEST_DENIED", waiting)
    # a denied user may ask again
    assert ask(running, tenant, cy).seat_request.state == PENDING
    check_event_log(running.seats, tenant)


def test_one_open_request_per_user_and_hub_and_none_for_a_seat_held(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0))
    ann = new_user(running.users, tenant, seats=[(SERVICE, STARTER)]).user_id
    first = ask(running, tenant, ann).seat_request.seat_request_id
    with refused(grpc.StatusCode.ALREADY_EXISTS, "SEAT_REQUEST_EXISTS") as refusal:
        ask(running, tenant, ann)
    assert refusal.info.metadata["seat_request_id"] == first
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "SEAT_ALREADY_HELD"):
        ask(running, tenant, ann, SERVICE, STARTER)
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        ask(running, tenant, ann, SERVICE, PROFESSIONAL)
    with refused(grpc.StatusCode.NOT_FOUND, "SEAT_REQUEST_NOT_FOUND"):
        approve(running, tenant, "sreq_nothing")
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        ask(running, tenant, ann, hub=resources_pb2.HUB_UNSPECIFIED)
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        ask(running, tenant, ann, why="x" * 201)
    with refused(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"):
        ask(running, tenant, "usr_nobody", by=None)
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        listed(running, tenant, state=99)


def test_a_pool_that_approves_by_itself_grants_while_seats_are_free(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0))
    first = policy(running, tenant, days=30)
    assert (first.idle_reclaim_days, first.auto_approve_requests) == (30, False)
    # a mask sets only what it names: the idle policy stays
    answer = policy(running, tenant, auto=True, mask=("auto_approve_requests",))
    assert (answer.idle_reclaim_days, answer.auto_approve_requests) == (30, True)
    assert policy(running, tenant, mask=("idle_reclaim_days",)).auto_approve_requests  # reclaim off, approval on
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        running.seats.UpdateSeatPolicy(
            seat_service_pb2.UpdateSeatPolicyRequest(
                account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, update_mask=FieldMask(paths=["included"])
            ),
            metadata=tenant.as_owner,
        )
    users = [new_user(running.users, tenant).user_id for _ in range(3)]
    answers = [ask(running, tenant, u) for u in users]
    assert [a.seat_request.state for a in answers] == [GRANTED, GRANTED, PENDING]  # 2 seats, then none free
    assert [a.seat_request.decided_by for a in answers[:2]] == ["policy", "policy"]
    assert answers[0].assignment.user_id == users[0]
    log = check_event_log(running.seats, tenant)
    granted = [e for e in log if e.seat_request_id == answers[0].seat_request.seat_request_id]
    assert [event_type(e) for e in granted] == ["SEAT_REQUESTED", "SEAT_ASSIGNED"]


def test_a_waiting_user_with_a_seat_of_another_tier_is_moved(running: Running) -> None:
    tenant, _ = full_pool(running)
    starter_user = new_user(running.users, tenant, seats=[(SALES, STARTER)]).user_id
    request = ask(running, tenant, starter_user).seat_request.seat_request_id
    approve(running, tenant, request)
    starter_waiter = new_user(running.users, tenant).user_id
    other = ask(running, tenant, starter_waiter, SALES, STARTER).seat_request.seat_request_id
    assert approve(running, tenant, other).seat_request.state == WAITING  # the one Starter seat is taken
    purchase(running.seats, tenant, SALES, PROFESSIONAL, 1)
    # the move frees the Starter seat, which goes to the Starter waiting list in the same call
    assert states(running, tenant) == {request: GRANTED, other: GRANTED}
    assert pool(running.seats, tenant, SALES, STARTER).assigned == 1
    check_event_log(running.seats, tenant)


def test_the_sweep_hands_reclaimed_seats_to_the_waiting_list(running: Running) -> None:
    tenant, (ann, _bob) = full_pool(running)
    policy(running, tenant, days=7)
    running.clock.advance(days=8)
    cy = new_user(running.users, tenant).user_id
    request = ask(running, tenant, cy).seat_request.seat_request_id
    approve(running, tenant, request)
    running.server.sweeper.sweep_once()
    assert states(running, tenant)[request] == GRANTED
    log = check_event_log(running.seats, tenant)
    assert [event_type(e) for e in log[-3:]] == ["SEAT_RECLAIMED", "SEAT_RECLAIMED", "SEAT_ASSIGNED"]
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).assigned == 1
    assert listed(running, tenant, user_id=cy)[0].state == GRANTED
    assert ann not in {a.user_id for a in running.seats.ListSeatAssignments(
        seat_service_pb2.ListSeatAssignmentsRequest(account_id=tenant.id, hub=SALES), metadata=tenant.as_owner
    ).assignments}  # fmt: skip
    policy(running, tenant)  # off again (see policy)


def test_deleting_a_user_cancels_their_requests(running: Running) -> None:
    tenant, _ = full_pool(running)
    cy = new_user(running.users, tenant).user_id
    request = ask(running, tenant, cy).seat_request.seat_request_id
    approve(running, tenant, request)
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).waiting_requests == 1
    etag = running.users.GetUser(
        user_service_pb2.GetUserRequest(account_id=tenant.id, user_id=cy), metadata=tenant.as_owner
    ).user.etag
    running.users.DeleteUser(
        user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=cy, etag=etag), metadata=tenant.as_owner
    )
    assert states(running, tenant)[request] == CANCELLED
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).waiting_requests == 0
    check_event_log(running.seats, tenant)


def test_a_request_under_a_request_id_is_made_once(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0))
    ann = new_user(running.users, tenant).user_id
    first = ask(running, tenant, ann, request_id="ask-1").seat_request
    again = ask(running, tenant, ann, request_id="ask-1").seat_request
    assert again == first
    assert len(listed(running, tenant)) == 1
    once = approve(running, tenant, first.seat_request_id, request_id="ok-1")
    assert approve(running, tenant, first.seat_request_id, request_id="ok-1") == once


def test_list_pages_oldest_first(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0), (SERVICE, STARTER, 0))
    users = [new_user(running.users, tenant).user_id for _ in range(5)]
    made = [ask(running, tenant, u).seat_request.seat_request_id for u in users]
    made.append(ask(running, tenant, users[0], SERVICE, STARTER).seat_request.seat_request_id)
    assert [q.seat_request_id for q in listed(running, tenant, page_size=2)] == made
    assert [q.hub for q in listed(running, tenant, user_id=users[0])] == [SALES, SERVICE]
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        running.seats.ListSeatRequests(
            seat_service_pb2.ListSeatRequestsRequest(account_id=tenant.id, page_token="garbage"),
            metadata=tenant.as_owner,
        )


def test_concurrent_frees_and_approvals_keep_the_waiting_list_and_the_invariants(running: Running) -> None:
    tenant, holders = full_pool(running, holders=6)
    askers = [new_user(running.users, tenant).user_id for _ in range(6)]
    made = [ask(running, tenant, u).seat_request.seat_request_id for u in askers]
    calls: list[Callable[[], Message]] = [functools.partial(approve, running, tenant, r) for r in made]
    calls += [functools.partial(unassign, running.seats, tenant, u, SALES) for u in holders[:4]]
    results = run_together(calls)
    assert not [r for r in results if isinstance(r, grpc.RpcError)]
    final = pool(running.seats, tenant, SALES, PROFESSIONAL)
    now = states(running, tenant)
    granted = [r for r in made if now[r] == GRANTED]
    waiting = [r for r in made if now[r] == WAITING]
    assert len(granted) == 4 and len(waiting) == 2, now  # every freed seat went to a request
    assert (final.assigned, final.waiting_requests, final.available) == (6, 2, 0)
    check_event_log(running.seats, tenant)
