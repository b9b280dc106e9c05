"""Bad input is INVALID_ARGUMENT with reason INVALID_FIELD and a BadRequest naming the field; no input
ever gets UNKNOWN or INTERNAL."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.conftest import Running
from tests.contract.helpers import (
    SALES,
    STARTER,
    Metadata,
    Tenant,
    new_account,
    new_user,
    user,
)
from tests.toolkit import Hub, Refusal, Tier, refusal_of, refused, unique_email

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
NO_HUB = resources_pb2.HUB_UNSPECIFIED
NO_TIER = resources_pb2.TIER_UNSPECIFIED
UNKNOWN_HUB = Hub(99)
UNKNOWN_TIER = Tier(99)

s = seat_service_pb2
u = user_service_pb2


def subscription(hub: Hub = SALES, tier: Tier = STARTER, purchased: int = 0) -> resources_pb2.Subscription:
    return resources_pb2.Subscription(hub=hub, tier=tier, purchased_seats=purchased)


def new_account_request(
    *,
    display_name: str = "Acme",
    owner_email: str | None = None,
    term_months: int = 1,
    subscriptions: Sequence[resources_pb2.Subscription] | None = None,
) -> s.CreateAccountRequest:
    return s.CreateAccountRequest(
        display_name=display_name,
        owner_email=unique_email("owner") if owner_email is None else owner_email,
        term_months=term_months,
        subscriptions=[subscription()] if subscriptions is None else subscriptions,
    )


def user_update(
    tenant: Tenant, member: resources_pb2.User, mask: list[str], *, email: str = ""
) -> u.UpdateUserRequest:
    return u.UpdateUserRequest(
        user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, email=email),
        update_mask=field_mask_pb2.FieldMask(paths=mask),
    )


def purchase_request(
    t: Tenant, hub: Hub = SALES, tier: Tier = STARTER, quantity: int = 1
) -> s.PurchaseSeatsRequest:
    return s.PurchaseSeatsRequest(account_id=t.id, hub=hub, tier=tier, quantity=quantity)


def assign_request(
    t: Tenant, m: resources_pb2.User, hub: Hub = SALES, tier: Tier = STARTER
) -> s.AssignSeatRequest:
    return s.AssignSeatRequest(account_id=t.id, user_id=m.user_id, hub=hub, tier=tier)


def schedule_request(
    t: Tenant, hub: Hub = SALES, tier: Tier = STARTER, quantity: int = 1
) -> s.ScheduleSeatRemovalRequest:
    return s.ScheduleSeatRemovalRequest(account_id=t.id, hub=hub, tier=tier, quantity=quantity)


def cancel_request(
    t: Tenant, hub: Hub = SALES, tier: Tier = STARTER, quantity: int = 1
) -> s.CancelSeatRemovalRequest:
    return s.CancelSeatRemovalRequest(account_id=t.id, hub=hub, tier=tier, quantity=quantity)


def upgrade_request(
    t: Tenant, hub: Hub = SALES, tier: Tier = STARTER, purchased: int = 0
) -> s.UpgradeSubscriptionRequest:
    return s.UpgradeSubscriptionRequest(account_id=t.id, hub=hub, tier=tier, purchased_seats=purchased)


def batch_request(
    t: Tenant, m: resources_pb2.User, hub: Hub = SALES, tier: Tier = STARTER
) -> s.BatchUpdateSeatAssignmentsRequest:
    return s.BatchUpdateSeatAssignmentsRequest(
        account_id=t.id, changes=[s.SeatChange(user_id=m.user_id, hub=hub, tier=tier)]
    )


def create_user_request(
    t: Tenant, email: str = "", hub: Hub = SALES, tier: Tier = STARTER
) -> u.CreateUserRequest:
    seat = [resources_pb2.SeatRef(hub=hub, tier=tier)] if (hub, tier) != (SALES, STARTER) else []
    return u.CreateUserRequest(account_id=t.id, email=email or unique_email(), seats=seat)


# (method, request builder taking (tenant, member), the field named); acted by the owner.
Build = Callable[[Tenant, resources_pb2.User], Message]
BAD_INPUTS: list[tuple[str, Build, str]] = [
    # enums: unspecified and unknown numbers
    ("PurchaseSeats", lambda t, m: purchase_request(t, hub=NO_HUB), "hub"),
    ("PurchaseSeats", lambda t, m: purchase_request(t, hub=UNKNOWN_HUB), "hub"),
    ("PurchaseSeats", lambda t, m: purchase_request(t, tier=NO_TIER), "tier"),
    ("PurchaseSeats", lambda t, m: purchase_request(t, tier=UNKNOWN_TIER), "tier"),
    ("AssignSeat", lambda t, m: assign_request(t, m, hub=NO_HUB), "hub"),
    ("AssignSeat", lambda t, m: assign_request(t, m, tier=UNKNOWN_TIER), "tier"),
    ("AssignSeat", lambda t, m: assign_request(t, m, tier=NO_TIER), "tier"),
    ("UnassignSeat", lambda t, m: s.UnassignSeatRequest(account_id=t.id, user_id=m.user_id, hub=NO_HUB), "hub"),
    ("UnassignSeat", lambda t, m: s.UnassignSeatRequest(account_id=t.id, user_id=m.user_id, hub=UNKNOWN_HUB), "hub"),
    ("ScheduleSeatRemoval", lambda t, m: schedule_request(t, hub=UNKNOWN_HUB), "hub"),
    ("CancelSeatRemoval", lambda t, m: cancel_request(t, tier=NO_TIER), "tier"),
    ("UpgradeSubscription", lambda t, m: upgrade_request(t, tier=NO_TIER), "tier"),
    ("UpgradeSubscription", lambda t, m: upgrade_request(t, hub=NO_HUB), "hub"),
    ("BatchUpdateSeatAssignments", lambda t, m: batch_request(t, m, hub=NO_HUB), "hub"),
    ("BatchUpdateSeatAssignments", lambda t, m: batch_request(t, m, tier=UNKNOWN_TIER), "tier"),
    ("ListUsers", lambda t, m: u.ListUsersRequest(account_id=t.id, hub=UNKNOWN_HUB), "hub"),
    ("ListSeatAssignments", lambda t, m: s.ListSeatAssignmentsRequest(account_id=t.id, tier=UNKNOWN_TIER), "tier"),
    ("CreateUser", lambda t, m: create_user_request(t, hub=NO_HUB), "hub"),
    ("CreateUser", lambda t, m: create_user_request(t, tier=UNKNOWN_TIER), "tier"),
    # quantities
    ("PurchaseSeats", lambda t, m: purchase_request(t, quantity=0), "quantity"),
    ("PurchaseSeats", lambda t, m: purchase_request(t, quantity=-3), "quantity"),
    ("ScheduleSeatRemoval", lambda t, m: schedule_request(t, quantity=0), "quantity"),
    ("ScheduleSeatRemoval", lambda t, m: schedule_request(t, quantity=-1), "quantity"),
    ("CancelSeatRemoval", lambda t, m: cancel_request(t, quantity=0), "quantity"),
    ("CancelSeatRemoval", lambda t, m: cancel_request(t, quantity=-2), "quantity"),
    ("UpgradeSubscription", lambda t, m: upgrade_request(t, purchased=-1), "purchased_seats"),
    # required ids
    ("AssignSeat", lambda t, m: s.AssignSeatRequest(account_id=t.id, hub=SALES, tier=STARTER), "user_id"),
    ("GetUser", lambda t, m: u.GetUserRequest(account_id=t.id, user_id=""), "user_id"),
    ("DeleteUser", lambda t, m: u.DeleteUserRequest(account_id=t.id, user_id=""), "user_id"),
    # emails
    ("CreateUser", lambda t, m: create_user_request(t, email="not-an-email"), "email"),
    ("CreateUser", lambda t, m: u.CreateUserRequest(account_id=t.id, email=""), "email"),
    ("CreateUser", lambda t, m: create_user_request(t, email="two@@example.com"), "email"),
    ("CreateUser", lambda t, m: create_user_request(t, email="spaced out@example.com"), "email"),
    ("UpdateUser", lambda t, m: user_update(t, m, ["email"], email="nope"), "email"),
    # update masks
    ("UpdateUser", lambda t, m: user_update(t, m, ["account_id"]), "update_mask"),
    ("UpdateUser", lambda t, m: user_update(t, m, ["no_such_field"]), "update_mask"),
    # paging
    ("ListUsers", lambda t, m: u.ListUsersRequest(account_id=t.id, page_token="garbage!"), "page_token"),
    ("ListUsers", lambda t, m: u.ListUsersRequest(account_id=t.id, page_size=-1), "page_size"),
    ("ListSeatAssignments", lambda t, m: s.ListSeatAssignmentsRequest(account_id=t.id, page_token="%%%"), "page_token"),
    ("ListSeatAssignments", lambda t, m: s.ListSeatAssignmentsRequest(account_id=t.id, page_size=-5), "page_size"),
    ("ListSeatEvents", lambda t, m: s.ListSeatEventsRequest(account_id=t.id, page_token="bm90IGEgdG9rZW4="),
     "page_token"),
    ("ListSeatEvents", lambda t, m: s.ListSeatEventsRequest(account_id=t.id, page_size=-1), "page_size"),
]

# System calls: nobody acts, so that only the input is wrong.
SystemBuild = Callable[[None, None], Message]
BAD_SYSTEM_INPUTS: list[tuple[str, SystemBuild, str]] = [
    ("GetAccount", lambda t, m: s.GetAccountRequest(account_id=""), "account_id"),
    ("GetSeatSummary", lambda t, m: s.GetSeatSummaryRequest(account_id=""), "account_id"),
    ("PurchaseSeats", lambda t, m: s.PurchaseSeatsRequest(account_id="", hub=SALES, tier=STARTER, quantity=1),
     "account_id"),
    ("ListUsers", lambda t, m: u.ListUsersRequest(account_id=""), "account_id"),
    ("ListSeatEvents", lambda t, m: s.ListSeatEventsRequest(account_id=""), "account_id"),
    ("CreateAccount", lambda t, m: new_account_request(display_name=""), "display_name"),
    ("CreateAccount", lambda t, m: new_account_request(owner_email="owner-at-example.com"), "owner_email"),
    ("CreateAccount", lambda t, m: new_account_request(owner_email=""), "owner_email"),
    ("CreateAccount", lambda t, m: new_account_request(term_months=5), "term_months"),
    ("CreateAccount", lambda t, m: new_account_request(term_months=0), "term_months"),
    ("CreateAccount", lambda t, m: new_account_request(term_months=24), "term_months"),
    ("CreateAccount", lambda t, m: new_account_request(subscriptions=[subscription(hub=NO_HUB)]), "hub"),
    ("CreateAccount", lambda t, m: new_account_request(subscriptions=[subscription(hub=UNKNOWN_HUB)]), "hub"),
    ("CreateAccount", lambda t, m: new_account_request(subscriptions=[subscription(tier=NO_TIER)]), "tier"),
    ("CreateAccount", lambda t, m: new_account_request(subscriptions=[subscription(tier=UNKNOWN_TIER)]), "tier"),
    ("CreateAccount", lambda t, m: new_account_request(subscriptions=[subscription(purchased=-1)]), "purchased_seats"),
]


def case_id(case: tuple[str, object, str]) -> str:
    method, _, field = case
    return f"{method}-{field}"


def call(running: Running, method: str, request: Message, metadata: Metadata = ()) -> object:
    stub = running.seats if hasattr(running.seats, method) else running.users
    return getattr(stub, method)(request, metadata=metadata)


@pytest.mark.parametrize(
    "method, build, field",
    [pytest.param(*case, id=f"{case_id(case)}-{i}") for i, case in enumerate(BAD_INPUTS)],
)
def test_bad_input_is_invalid_argument_naming_the_field(
    running: Running, method: str, build: Build, field: str
) -> None:
    """Bad input gives INVALID_ARGUMENT, reason INVALID_FIELD, and a BadRequest naming the field (AIP-193)."""
    tenant = new_account(running.seats)
    member = new_user(running.users, tenant)

    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        call(running, method, build(tenant, member), metadata=tenant.as_owner)

    assert refusal.names_field(field), f"BadRequest names {refusal.fields}, not {field}"


@pytest.mark.parametrize(
    "method, build, field",
    [pytest.param(*case, id=f"{case_id(case)}-{i}") for i, case in enumerate(BAD_SYSTEM_INPUTS)],
)
def test_bad_input_of_a_system_call_is_invalid_argument_naming_the_field(
    running: Running, method: str, build: SystemBuild, field: str
) -> None:
    """Bad input gives INVALID_ARGUMENT, reason INVALID_FIELD, and a BadRequest naming the field (AIP-193)."""
    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        call(running, method, build(None, None))

    assert refusal.names_field(field), f"BadRequest names {refusal.fields}, not {field}"


def test_a_refusal_names_every_bad_field_at_once_or_at_least_one(running: Running) -> None:
    """A BadRequest names the field that is wrong, never an unrelated one."""
    with refused(INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        call(running, "CreateAccount", new_account_request(term_months=5, owner_email="nope"))

    assert refusal.fields
    assert all(f in ("term_months", "owner_email") for f in refusal.fields), refusal.fields


def outcome(running: Running, method: str, request: Message, metadata: Metadata = ()) -> Refusal | None:
    """The refusal of a call, or None when it succeeded."""
    try:
        call(running, method, request, metadata)
    except grpc.RpcError as err:
        return refusal_of(err)
    return None


def test_odd_input_is_never_unknown_or_internal(running: Running) -> None:
    """No input, however odd, makes the server answer UNKNOWN or INTERNAL; every refusal carries an ErrorInfo."""
    tenant = new_account(running.seats)
    member = new_user(running.users, tenant)
    other = new_account(running.seats)
    other_token = running.users.ListUsers(
        u.ListUsersRequest(account_id=other.id, page_size=1), metadata=other.as_owner
    ).next_page_token
    events_token = running.seats.ListSeatEvents(
        s.ListSeatEventsRequest(account_id=tenant.id, page_size=1)
    ).next_page_token
    odd_ids = ["x" * 10_000, "'; DROP TABLE users; --", "ünïcødé-☃", "\x00", "%s%s%s", "../../etc/passwd"]
    requests: list[tuple[str, Message, Metadata]] = []
    for odd in odd_ids:
        requests += [
            ("GetAccount", s.GetAccountRequest(account_id=odd), ()),
            ("GetUser", u.GetUserRequest(account_id=tenant.id, user_id=odd), tenant.as_owner),
            ("AssignSeat", s.AssignSeatRequest(account_id=tenant.id, user_id=odd, hub=SALES, tier=STARTER), ()),
            ("PurchaseSeats", s.PurchaseSeatsRequest(account_id=odd, hub=SALES, tier=STARTER, quantity=1), ()),
            ("ListUsers", u.ListUsersRequest(account_id=tenant.id, page_token=odd), tenant.as_owner),
            ("ListSeatEvents", s.ListSeatEventsRequest(account_id=tenant.id, page_token=odd), ()),
            ("CreateUser", u.CreateUserRequest(account_id=tenant.id, email=odd), tenant.as_owner),
        ]
    for odd_actor in ["'; DROP TABLE users; --", "%s%s%s", "../../etc/passwd", "y" * 1000]:  # valid header values
        summary = s.GetSeatSummaryRequest(account_id=tenant.id)
        requests.append(("GetSeatSummary", summary, (("x-seats-actor", odd_actor),)))
    requests += [
        ("ListUsers", u.ListUsersRequest(account_id=tenant.id, page_token=other_token), tenant.as_owner),
        ("ListUsers", u.ListUsersRequest(account_id=tenant.id, page_token=events_token), tenant.as_owner),
        ("ListSeatAssignments", s.ListSeatAssignmentsRequest(account_id=tenant.id, page_token=events_token), ()),
        ("PurchaseSeats", s.PurchaseSeatsRequest(account_id=tenant.id, hub=SALES, tier=STARTER, quantity=2**31 - 1),
         tenant.as_owner),
        ("UpgradeSubscription", s.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=resources_pb2.TIER_ENTERPRISE, purchased_seats=2**31 - 1),
         tenant.as_owner),
        ("ListSeatEvents", s.ListSeatEventsRequest(account_id=tenant.id, after_sequence=2**62), ()),
        ("UpdateUser", u.UpdateUserRequest(user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id),
                                           etag="\x00garbage"), tenant.as_owner),
        ("BatchUpdateSeatAssignments", s.BatchUpdateSeatAssignmentsRequest(account_id=tenant.id), tenant.as_owner),
    ]

    wrong = []
    for method, request, metadata in requests:
        try:
            refusal = outcome(running, method, request, metadata)
        except AssertionError as err:  # no google.rpc.Status at all
            wrong.append(f"{method} {str(request)[:60]!r}: {err}"[:300])
            continue
        if refusal is not None and (
            refusal.code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL) or not refusal.info.reason
        ):
            wrong.append(f"{method} {str(request)[:60]!r}: {refusal.code} {refusal.info.reason} {refusal.message!r}")
    assert not wrong, "\n".join(wrong)


def test_unknown_account_is_not_found(running: Running) -> None:
    """An account that does not exist is NOT_FOUND with reason ACCOUNT_NOT_FOUND (for a system call)."""
    missing = "acc-does-not-exist"
    for method, request in [
        ("GetAccount", s.GetAccountRequest(account_id=missing)),
        ("GetSeatSummary", s.GetSeatSummaryRequest(account_id=missing)),
        ("PurchaseSeats", s.PurchaseSeatsRequest(account_id=missing, hub=SALES, tier=STARTER, quantity=1)),
        ("ListUsers", u.ListUsersRequest(account_id=missing)),
        ("PreviewInvoice", s.PreviewInvoiceRequest(account_id=missing)),
    ]:
        with refused(grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"):
            call(running, method, request)


def test_unknown_user_is_not_found(running: Running) -> None:
    """A user that does not exist is NOT_FOUND with reason USER_NOT_FOUND."""
    tenant = new_account(running.seats)

    with refused(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"):
        call(running, "AssignSeat", s.AssignSeatRequest(
            account_id=tenant.id, user_id="usr-does-not-exist", hub=SALES, tier=resources_pb2.TIER_PROFESSIONAL
        ), tenant.as_owner)
    with refused(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"):
        call(running, "GetUser", u.GetUserRequest(account_id=tenant.id, user_id="usr-does-not-exist"))


def test_stale_etag_is_aborted(running: Running) -> None:
    """UpdateUser and DeleteUser with a stale etag are ABORTED with reason ETAG_MISMATCH (AIP-154)."""
    tenant = new_account(running.seats)
    member = new_user(running.users, tenant)
    first_etag = member.etag
    assert first_etag

    renamed = running.users.UpdateUser(
        u.UpdateUserRequest(
            user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, display_name="First"),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
            etag=first_etag,
        ),
        metadata=tenant.as_owner,
    ).user
    assert renamed.display_name == "First"
    assert renamed.etag and renamed.etag != first_etag

    with refused(grpc.StatusCode.ABORTED, "ETAG_MISMATCH"):
        running.users.UpdateUser(
            u.UpdateUserRequest(
                user=resources_pb2.User(account_id=tenant.id, user_id=member.user_id, display_name="Second"),
                update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
                etag=first_etag,
            ),
            metadata=tenant.as_owner,
        )
    with refused(grpc.StatusCode.ABORTED, "ETAG_MISMATCH"):
        running.users.DeleteUser(
            u.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id, etag=first_etag),
            metadata=tenant.as_owner,
        )
    assert user(running.users, tenant, member.user_id).display_name == "First"

    running.users.DeleteUser(
        u.DeleteUserRequest(account_id=tenant.id, user_id=member.user_id, etag=renamed.etag),
        metadata=tenant.as_owner,
    )
    with refused(grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"):
        user(running.users, tenant, member.user_id)


def test_update_mask_changes_only_the_named_fields(running: Running) -> None:
    """UpdateUser changes only the fields of its update mask (AIP-161)."""
    tenant = new_account(running.seats)
    member = new_user(running.users, tenant, permissions=resources_pb2.Permissions(edit_billing=True))

    updated = running.users.UpdateUser(
        u.UpdateUserRequest(
            user=resources_pb2.User(
                account_id=tenant.id, user_id=member.user_id, display_name="Renamed", email=unique_email("ignored")
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["display_name"]),
        ),
        metadata=tenant.as_owner,
    ).user

    assert (updated.display_name, updated.email) == ("Renamed", member.email)
    assert updated.permissions.edit_billing
    assert user(running.users, tenant, member.user_id) == updated
