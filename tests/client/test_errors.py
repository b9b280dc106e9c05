"""Refusals reach the caller as the SeatsError subclass of their ErrorInfo reason, under the class
of their status code, with the status's message, metadata and details: one test per reason, each
provoked for real against the in-process server (SQLite and PostgreSQL)."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from seats import SeatsClient, errors

from tests.client.conftest import Permissions, Tenant, new_tenant
from tests.property.refusals import documented_reasons
from tests.toolkit import client_refused, unique_email

FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def full_pool(tenant: Tenant) -> None:
    """Gives every seat of the tenant's Sales Professional pool (2 included + 1 purchased) away."""
    for _ in range(3):
        tenant.user(seats=(("sales", "professional"),))


# ---- FAILED_PRECONDITION: the rules ---------------------------------------------------------


def test_no_seat_available_when_every_seat_is_taken(tenant: Tenant) -> None:
    full_pool(tenant)
    dee = tenant.user()

    error = client_refused(
        errors.NoSeatAvailable, lambda: tenant.owner.assign_seat(tenant.id, dee.user_id, "sales", "professional")
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.code == FAILED_PRECONDITION
    assert error.metadata == {"hub": "SALES", "tier": "PROFESSIONAL", "capacity": "3"}
    assert [v.type for v in error.precondition_violations] == ["NO_SEAT_AVAILABLE"]


def test_seats_assigned_when_a_removal_would_take_assigned_seats(tenant: Tenant) -> None:
    full_pool(tenant)

    error = client_refused(
        errors.SeatsAssigned, lambda: tenant.owner.schedule_seat_removal(tenant.id, "sales", "professional", 1)
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"removable": "0", "requested": "1"}
    assert [(v.type, v.subject) for v in error.precondition_violations] == [("SEATS_ASSIGNED", "SALES/PROFESSIONAL")]


def test_user_holds_seats_when_deleting_a_user_with_a_seat(tenant: Tenant) -> None:
    ann = tenant.user(seats=(("sales", "professional"),))

    error = client_refused(errors.UserHoldsSeats, lambda: tenant.owner.delete_user(tenant.id, ann.user_id))

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"hubs": "SALES"}
    assert [v.subject for v in error.precondition_violations] == [ann.user_id]
    assert tenant.owner.get_user(tenant.id, ann.user_id).user.user_id == ann.user_id


def test_not_subscribed_for_a_hub_and_tier_the_account_lacks(tenant: Tenant) -> None:
    error = client_refused(
        errors.NotSubscribed, lambda: tenant.owner.purchase_seats(tenant.id, "service", "starter", 1)
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"hub": "SERVICE", "tier": "STARTER"}


def test_not_pending_removal_when_cancelling_more_than_is_pending(tenant: Tenant) -> None:
    error = client_refused(
        errors.NotPendingRemoval, lambda: tenant.owner.cancel_seat_removal(tenant.id, "sales", "professional", 1)
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"pending_removal": "0"}


def test_seat_not_assigned_when_unassigning_a_hub_the_user_has_no_seat_of(tenant: Tenant) -> None:
    ann = tenant.user()

    error = client_refused(errors.SeatNotAssigned, lambda: tenant.owner.unassign_seat(tenant.id, ann.user_id, "sales"))

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"hub": "SALES", "user_id": ann.user_id}


def test_not_an_upgrade_for_a_tier_below_the_hubs_tier(tenant: Tenant) -> None:
    error = client_refused(
        errors.NotAnUpgrade, lambda: tenant.owner.upgrade_subscription(tenant.id, "sales", "starter")
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"current_tier": "PROFESSIONAL"}


def test_tier_not_purchasable_for_free_seats(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("service", "free", 0))

    error = client_refused(
        errors.TierNotPurchasable, lambda: tenant.owner.purchase_seats(tenant.id, "service", "free", 1)
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"hub": "SERVICE", "tier": "FREE"}


def test_owner_not_deletable(tenant: Tenant) -> None:
    error = client_refused(errors.OwnerNotDeletable, lambda: tenant.owner.delete_user(tenant.id, tenant.owner_id))

    assert isinstance(error, errors.FailedPrecondition)
    assert [v.subject for v in error.precondition_violations] == [tenant.owner_id]
    assert error.metadata, "ErrorInfo.metadata is empty: it should name the owner (user_id)"


def test_owner_stays_super_admin(tenant: Tenant) -> None:
    error = client_refused(
        errors.OwnerStaysSuperAdmin, lambda: tenant.owner.update_user(tenant.id, tenant.owner_id, super_admin=False)
    )

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata, "ErrorInfo.metadata is empty: it should name the owner (user_id)"


def test_seat_limit_when_a_pool_would_pass_a_million_seats(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 0))  # 1 included seat
    for _ in range(99):
        tenant.owner.purchase_seats(tenant.id, "sales", "starter", 10_000)
    at_limit = tenant.owner.purchase_seats(tenant.id, "sales", "starter", 9_999).pool
    assert at_limit.included + at_limit.purchased == 1_000_000

    error = client_refused(errors.SeatLimit, lambda: tenant.owner.purchase_seats(tenant.id, "sales", "starter", 1))

    assert isinstance(error, errors.FailedPrecondition)
    assert error.metadata == {"limit": "1000000"}


# ---- PERMISSION_DENIED ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("permissions", "action", "missing"),
    [
        ({}, "purchase", "edit_billing"),
        ({"account_access": True}, "purchase", "edit_billing"),
        ({"edit_billing": True}, "create_user", "account_access"),
        ({}, "assign", "account_access"),
        ({"account_access": True}, "assign_and_buy", "edit_billing"),
        ({"account_access": True}, "grant_super_admin", "super_admin"),
    ],
)
def test_permission_missing_names_the_permission(
    tenant: Tenant, permissions: Permissions, action: str, missing: str
) -> None:
    actor = tenant.as_user(tenant.user(**permissions).user_id)
    bob = tenant.user()
    if action == "assign_and_buy":
        full_pool(tenant)
    calls: dict[str, Callable[[], Any]] = {
        "purchase": lambda: actor.purchase_seats(tenant.id, "sales", "professional", 1),
        "create_user": lambda: actor.create_user(tenant.id, unique_email()),
        "assign": lambda: actor.assign_seat(tenant.id, bob.user_id, "sales", "professional"),
        "assign_and_buy": lambda: actor.assign_seat(
            tenant.id, bob.user_id, "sales", "professional", purchase_if_needed=True
        ),
        "grant_super_admin": lambda: actor.update_user(tenant.id, bob.user_id, super_admin=True),
    }

    error = client_refused(errors.PermissionMissing, calls[action])

    assert isinstance(error, errors.PermissionDenied)
    assert error.code == grpc.StatusCode.PERMISSION_DENIED
    assert error.permission == missing
    assert error.metadata == {"permission": missing}


def test_actor_not_in_account_for_a_user_of_another_account(system: SeatsClient, tenant: Tenant) -> None:
    stranger = new_tenant(system)

    error = client_refused(errors.ActorNotInAccount, lambda: stranger.owner.get_seat_summary(tenant.id))

    assert isinstance(error, errors.PermissionDenied)
    assert error.metadata == {"actor": stranger.owner_id}


def test_actor_not_in_account_comes_before_account_not_found(tenant: Tenant) -> None:
    error = client_refused(errors.ActorNotInAccount, lambda: tenant.owner.get_account("acc_does_not_exist"))
    assert error.metadata == {"actor": tenant.owner_id}


def test_system_call_only_for_create_account_with_an_actor(tenant: Tenant) -> None:
    error = client_refused(
        errors.SystemCallOnly,
        lambda: tenant.owner.create_account("Nope", unique_email("owner"), [("sales", "starter", 0)]),
    )

    assert isinstance(error, errors.PermissionDenied)
    assert error.metadata, "ErrorInfo.metadata is empty: it should name the actor that made the call"


# ---- NOT_FOUND, ALREADY_EXISTS, ABORTED -------------------------------------------------------


def test_account_not_found_on_a_system_call(system: SeatsClient) -> None:
    error = client_refused(errors.AccountNotFound, lambda: system.get_seat_summary("acc_does_not_exist"))

    assert isinstance(error, errors.NotFound)
    assert error.metadata == {"account_id": "acc_does_not_exist"}


def test_user_not_found_in_the_account(system: SeatsClient, tenant: Tenant) -> None:
    outsider = new_tenant(system).owner_id

    error = client_refused(errors.UserNotFound, lambda: tenant.owner.get_user(tenant.id, outsider))

    assert isinstance(error, errors.NotFound)
    assert error.metadata == {"user_id": outsider}


def test_email_taken_case_insensitively(tenant: Tenant) -> None:
    ann = tenant.user()
    shouted = ann.email.upper()

    error = client_refused(errors.EmailTaken, lambda: tenant.owner.create_user(tenant.id, shouted))

    assert isinstance(error, errors.AlreadyExists)
    assert error.code == grpc.StatusCode.ALREADY_EXISTS
    assert error.metadata == {"email": shouted}


def test_etag_mismatch_for_a_stale_etag(tenant: Tenant) -> None:
    ann = tenant.user()
    tenant.owner.update_user(tenant.id, ann.user_id, display_name="Ann")

    error = client_refused(
        errors.EtagMismatch, lambda: tenant.owner.update_user(tenant.id, ann.user_id, display_name="B", etag=ann.etag)
    )

    assert isinstance(error, errors.Aborted)
    assert error.code == grpc.StatusCode.ABORTED
    assert error.metadata == {"user_id": ann.user_id}


# ---- INVALID_ARGUMENT -----------------------------------------------------------------------


def test_request_id_reused_for_another_request(tenant: Tenant) -> None:
    tenant.owner.purchase_seats(tenant.id, "sales", "professional", 1, request_id="client-test-reuse")

    error = client_refused(
        errors.RequestIdReused,
        lambda: tenant.owner.purchase_seats(tenant.id, "sales", "professional", 2, request_id="client-test-reuse"),
    )

    assert isinstance(error, errors.InvalidArgument)
    assert error.metadata == {"request_id": "client-test-reuse"}
    assert [v.field for v in error.field_violations] == ["request_id"]


@pytest.mark.parametrize(
    ("field", "call"),
    [
        ("quantity", lambda t: t.owner.purchase_seats(t.id, "sales", "professional", 0)),
        ("hub", lambda t: t.owner.purchase_seats(t.id, 0, "professional", 1)),
        ("tier", lambda t: t.owner.assign_seat(t.id, t.owner_id, "sales", 0)),
        ("email", lambda t: t.owner.create_user(t.id, "not-an-email")),
        (
            "term_months",
            lambda t: t.system.create_account("X", unique_email(), [("sales", "starter", 0)], term_months=5),
        ),
        ("page_size", lambda t: t.owner.list_users(t.id, page_size=-1)),
        ("page_token", lambda t: t.owner.list_seat_events(t.id, page_token="not-a-token")),
    ],
)
def test_invalid_field_names_the_field(tenant: Tenant, field: str, call: Callable[[Tenant], Any]) -> None:
    error = client_refused(errors.InvalidField, lambda: call(tenant))

    assert isinstance(error, errors.InvalidArgument)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in error.field_violations] == [field]
    assert all(v.description for v in error.field_violations)
    assert error.metadata.get("field") == field


def test_every_reason_of_the_readme_has_its_class() -> None:
    reasons = set(documented_reasons())
    assert reasons <= set(errors.BY_REASON)
    for reason in reasons:
        cls = errors.BY_REASON[reason]
        assert cls.status_code is not None
        assert issubclass(cls, errors.BY_CODE[cls.status_code])


def test_a_refusal_survives_pickling_with_its_details(tenant: Tenant) -> None:
    # Errors cross process boundaries (a process pool, a task queue) intact.
    error = client_refused(
        errors.InvalidField, lambda: tenant.owner.purchase_seats(tenant.id, "sales", "professional", 0)
    )

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is errors.InvalidField
    assert (copy.code, copy.reason, copy.message, copy.metadata) == (
        error.code,
        error.reason,
        error.message,
        error.metadata,
    )
    assert copy.field_violations == error.field_violations
