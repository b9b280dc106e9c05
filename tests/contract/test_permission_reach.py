"""S20 of docs/rules.md over a real channel, on SQLite and PostgreSQL: permissions only flow
downward. An actor grants or removes only permissions it holds itself; only a super admin creates,
changes or deletes a super admin; only the owner changes the owner; a system call reaches every
user. And UpdateUser without an update mask changes only the populated fields (AIP-134)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import field_mask_pb2
from seats import SeatsClient, errors
from seats.v1 import resources_pb2, seat_service_pb2_grpc, user_service_pb2, user_service_pb2_grpc

from tests.conftest import Running, actor
from tests.contract.helpers import (
    ACCESS,
    BILLING,
    NOTHING,
    SUPER,
    Tenant,
    last_sequence,
    new_account,
    new_user,
    user,
)
from tests.property.refusals import documented_reasons
from tests.toolkit import refused, unique_email

Seats = seat_service_pb2_grpc.SeatServiceStub
Users = user_service_pb2_grpc.UserServiceStub
Perms = resources_pb2.Permissions

PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
BOTH = Perms(edit_billing=True, account_access=True)


def update(
    users: Users,
    tenant: Tenant,
    user_id: str,
    mask: list[str] | None,
    *,
    by: str | None = "",
    email: str = "",
    display_name: str = "",
    permissions: Perms | None = None,
) -> resources_pb2.User:
    """UpdateUser on behalf of the owner, of `by`, or (by=None) a system call; mask None sends none."""
    target = resources_pb2.User(account_id=tenant.id, user_id=user_id, email=email, display_name=display_name)
    if permissions is not None:
        target.permissions.CopyFrom(permissions)
    request = user_service_pb2.UpdateUserRequest(user=target)
    if mask is not None:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
    metadata = () if by is None else actor(by or tenant.owner_id)
    return users.UpdateUser(request, metadata=metadata).user


def delete(users: Users, tenant: Tenant, user_id: str, *, by: str | None = "") -> None:
    metadata = () if by is None else actor(by or tenant.owner_id)
    users.DeleteUser(user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=user_id), metadata=metadata)


# ---- the four reaches that were too far ----------------------------------------------------------


def test_s20_account_access_cannot_delete_a_super_admin(seats: Seats, users: Users) -> None:
    """S20: Only a super admin creates, changes or deletes a super admin."""
    tenant = new_account(seats)
    manager = new_user(users, tenant, permissions=BOTH)
    admin = new_user(users, tenant, permissions=SUPER)
    sequence = last_sequence(seats, tenant)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        delete(users, tenant, admin.user_id, by=manager.user_id)

    assert refusal.info.metadata["permission"] == "super_admin"
    assert user(users, tenant, admin.user_id).permissions.super_admin
    assert last_sequence(seats, tenant) == sequence


@pytest.mark.parametrize("path", ["email", "display_name", "permissions.super_admin"])
def test_s20_account_access_cannot_change_a_super_admin(seats: Seats, users: Users, path: str) -> None:
    """S20: Only a super admin creates, changes or deletes a super admin (its email, name and permissions)."""
    tenant = new_account(seats)
    manager = new_user(users, tenant, permissions=BOTH)
    admin = new_user(users, tenant, permissions=SUPER)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
        update(users, tenant, admin.user_id, [path], by=manager.user_id, email=unique_email(), display_name="Mine")

    assert refusal.info.metadata["permission"] == "super_admin"
    assert user(users, tenant, admin.user_id) == admin


def test_s20_account_access_cannot_take_edit_billing_from_a_billing_admin(seats: Seats, users: Users) -> None:
    """S20: An actor grants or removes only permissions it holds itself."""
    tenant = new_account(seats)
    manager = new_user(users, tenant, permissions=ACCESS)
    biller = new_user(users, tenant, permissions=BILLING)

    for mask in (["permissions.edit_billing"], ["permissions"], ["*"]):
        with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as refusal:
            update(
                users, tenant, biller.user_id, mask, by=manager.user_id,
                email=biller.email, display_name=biller.display_name, permissions=ACCESS,
            )  # fmt: skip
        assert refusal.info.metadata["permission"] == "edit_billing"
    assert user(users, tenant, biller.user_id).permissions == BILLING

    # What it holds, it may give and take: account access.
    assert update(users, tenant, biller.user_id, ["permissions.account_access"], by=manager.user_id,
                  permissions=ACCESS).permissions == BOTH  # fmt: skip
    assert update(users, tenant, biller.user_id, ["permissions.account_access"], by=manager.user_id,
                  permissions=NOTHING).permissions == BILLING  # fmt: skip


@pytest.mark.parametrize("path", ["email", "display_name", "permissions.edit_billing"])
def test_s20_a_super_admin_who_is_not_the_owner_cannot_change_the_owner(seats: Seats, users: Users, path: str) -> None:
    """S20: Only the owner can change or delete the account's owner."""
    tenant = new_account(seats)
    admin = new_user(users, tenant, permissions=SUPER)
    before = user(users, tenant, tenant.owner_id)

    with refused(PERMISSION_DENIED, "OWNER_ONLY") as refusal:
        update(users, tenant, tenant.owner_id, [path], by=admin.user_id, email=unique_email(), display_name="Mine")
    with refused(PERMISSION_DENIED, "OWNER_ONLY"):
        delete(users, tenant, tenant.owner_id, by=admin.user_id)

    assert refusal.info.metadata["user_id"] == tenant.owner_id
    assert user(users, tenant, tenant.owner_id) == before


# ---- what stays allowed ------------------------------------------------------------------------------


def test_s20_the_owner_changes_itself_and_super_admins_manage_super_admins(seats: Seats, users: Users) -> None:
    """S20: ... only the owner can change the owner; a super admin changes and deletes a super admin."""
    tenant = new_account(seats)
    admin = new_user(users, tenant, permissions=SUPER)
    other = new_user(users, tenant, permissions=SUPER)
    email = unique_email("owner")

    assert update(users, tenant, tenant.owner_id, ["email"], email=email).email == email
    with refused(FAILED_PRECONDITION, "OWNER_NOT_DELETABLE"):
        delete(users, tenant, tenant.owner_id)
    demoted = update(users, tenant, other.user_id, ["permissions"], by=admin.user_id, permissions=BILLING)
    assert demoted.permissions == BILLING
    delete(users, tenant, other.user_id, by=admin.user_id)


def test_s20_a_system_call_reaches_every_user(seats: Seats, users: Users) -> None:
    """S20 binds actors: a call without one is a trusted system call, allowed what it was before."""
    tenant = new_account(seats)
    admin = new_user(users, tenant, permissions=SUPER)
    biller = new_user(users, tenant, permissions=BILLING)
    email = unique_email("owner")

    assert update(users, tenant, tenant.owner_id, ["email"], by=None, email=email).email == email
    assert update(users, tenant, biller.user_id, ["permissions"], by=None, permissions=NOTHING).permissions == NOTHING
    delete(users, tenant, admin.user_id, by=None)


def test_s20_owner_only_is_documented_and_has_its_client_class(running: Running) -> None:
    """S20: the new refusal is in the README's error table and the client raises its own class for it."""
    assert documented_reasons()["OWNER_ONLY"] == "PERMISSION_DENIED"
    tenant = new_account(running.seats)
    admin = new_user(running.users, tenant, permissions=SUPER)

    with (
        SeatsClient(running.target, timeout=10.0, actor=admin.user_id) as client,
        pytest.raises(errors.OwnerOnly) as caught,
    ):
        client.update_user(tenant.id, tenant.owner_id, display_name="Not yours")

    assert isinstance(caught.value, errors.PermissionDenied)
    assert caught.value.metadata["user_id"] == tenant.owner_id


# ---- UpdateUser without an update mask (AIP-134) ----------------------------------------------------


def test_aip134_renaming_a_super_admin_without_a_mask_keeps_its_permissions(seats: Seats, users: Users) -> None:
    """AIP-134: with no update mask, only the populated fields change; the permissions not sent stay."""
    tenant = new_account(seats)
    admin = new_user(users, tenant, permissions=Perms(super_admin=True, edit_billing=True))

    renamed = update(users, tenant, admin.user_id, None, display_name="Boss")

    assert (renamed.display_name, renamed.email) == ("Boss", admin.email)
    assert renamed.permissions == admin.permissions
    assert user(users, tenant, admin.user_id) == renamed


def test_aip134_without_a_mask_a_false_permission_is_not_populated(seats: Seats, users: Users) -> None:
    """AIP-134: proto3 bools have no presence, so a false one is not populated: without a mask it never
    takes a permission away, while a true one is granted."""
    tenant = new_account(seats)
    member = new_user(users, tenant, permissions=BILLING)

    granted = update(users, tenant, member.user_id, None, permissions=ACCESS)
    assert granted.permissions == BOTH
    assert update(users, tenant, member.user_id, None, permissions=NOTHING).permissions == BOTH
    assert update(users, tenant, member.user_id, []).permissions == BOTH

    # A mask naming the permission takes it away; `*` replaces every field.
    assert update(users, tenant, member.user_id, ["permissions.edit_billing"]).permissions == ACCESS
    email = unique_email("replaced")
    replaced = update(users, tenant, member.user_id, ["*"], email=email, display_name="Whole")
    assert (replaced.email, replaced.display_name, replaced.permissions) == (email, "Whole", NOTHING)


def test_aip134_the_client_sends_a_mask_and_changes_only_what_it_names(running: Running) -> None:
    """The client builds an update mask of the fields given: callers that send a mask see no change."""
    tenant = new_account(running.seats)
    member = new_user(running.users, tenant, permissions=BOTH)

    with SeatsClient(running.target, timeout=10.0, actor=tenant.owner_id) as client:
        renamed = client.update_user(tenant.id, member.user_id, display_name="Named").user
        removed = client.update_user(tenant.id, member.user_id, edit_billing=False).user

    assert (renamed.display_name, renamed.permissions) == ("Named", BOTH)
    assert (removed.display_name, removed.permissions) == ("Named", ACCESS)
