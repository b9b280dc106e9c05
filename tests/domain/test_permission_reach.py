"""S20 of docs/rules.md, proved against the use cases over the in-memory store: permissions only
flow downward. An actor grants or removes only permissions it holds itself; only a super admin
creates, changes or deletes a super admin; only the owner changes the owner; a system call (no
actor) reaches every user. Also the implied update mask of UpdateUser without one (AIP-134)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from google.protobuf import field_mask_pb2
from seats.v1 import resources_pb2, user_service_pb2

from service.clock import ManualClock
from service.domain.errors import Kind
from service.domain.model import Permissions, User
from service.domain.prices import PriceBook
from service.domain.seats import SeatDomain, UserChanges
from service.servicers.user_service import user_changes
from tests.domain.memory_store import MemoryStore
from tests.domain.test_rules_in_memory import (
    ACCESS,
    BILLING,
    BOTH,
    NOTHING,
    SALES,
    START,
    STARTER,
    SUPER,
    SYSTEM,
    Tenant,
    as_user,
    assert_invariants,
    new_user,
    nothing_changes,
    open_account,
    refused,
)

PERMISSION_DENIED = Kind.PERMISSION_DENIED


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def domain(store: MemoryStore) -> SeatDomain:
    return SeatDomain(store, PriceBook.default(), ManualClock(START))


@pytest.fixture(autouse=True)
def invariants_hold_afterwards(store: MemoryStore) -> Iterator[None]:
    yield
    for account_id in store.account_ids():
        assert_invariants(store, account_id)


def user_of(domain: SeatDomain, tenant: Tenant, user_id: str) -> User:
    return domain.get_user(SYSTEM, tenant.account_id, user_id)


def change(domain: SeatDomain, tenant: Tenant, by: User | None, target: str, changes: UserChanges) -> User:
    """UpdateUser by a user, or (by=None) by a system call."""
    call = as_user(by) if by is not None else SYSTEM
    return domain.update_user(call, tenant.account_id, target, changes, "")


# ---- an actor grants or removes only permissions it holds ---------------------------------------


def test_s20_account_access_cannot_take_edit_billing_from_a_billing_admin(
    domain: SeatDomain, store: MemoryStore
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", ACCESS)
    biller = new_user(domain, tenant, "biller", BILLING)
    both = new_user(domain, tenant, "both", BOTH)

    for target in (biller, both):
        with nothing_changes(store), refused(PERMISSION_DENIED, "PERMISSION_MISSING", permission="edit_billing"):
            change(domain, tenant, manager, target.user_id, UserChanges(edit_billing=False))
    assert user_of(domain, tenant, biller.user_id).permissions == BILLING


def test_s20_an_actor_grants_and_removes_the_permissions_it_holds(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", ACCESS)
    full = new_user(domain, tenant, "full", BOTH)
    ann = new_user(domain, tenant, "ann")

    assert change(domain, tenant, manager, ann.user_id, UserChanges(account_access=True)).permissions == ACCESS
    assert change(domain, tenant, manager, ann.user_id, UserChanges(account_access=False)).permissions == NOTHING
    with refused(PERMISSION_DENIED, "PERMISSION_MISSING", permission="edit_billing"):
        change(domain, tenant, manager, ann.user_id, UserChanges(edit_billing=True))
    # Sending a permission the user already has, or lacks, grants and removes nothing.
    kept = change(domain, tenant, manager, full.user_id, UserChanges(edit_billing=True, display_name="Full"))
    assert (kept.display_name, kept.permissions) == ("Full", BOTH)
    renamed = change(domain, tenant, manager, ann.user_id, UserChanges(edit_billing=False, display_name="Ann"))
    assert (renamed.display_name, renamed.permissions) == ("Ann", NOTHING)

    assert change(domain, tenant, full, ann.user_id, UserChanges(edit_billing=True)).permissions == BILLING
    assert change(domain, tenant, full, ann.user_id, UserChanges(edit_billing=False)).permissions == NOTHING


def test_s20_creating_a_user_grants_only_permissions_the_actor_holds(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", ACCESS)
    admin = new_user(domain, tenant, "admin", SUPER)

    for perms, missing in ((BILLING, "edit_billing"), (SUPER, "super_admin")):
        with nothing_changes(store), refused(PERMISSION_DENIED, "PERMISSION_MISSING", permission=missing):
            domain.create_user(as_user(manager), tenant.account_id, "new@acme.test", "", perms, [])

    made = domain.create_user(as_user(admin), tenant.account_id, "boss@acme.test", "", SUPER, [])[0]
    assert made.permissions == SUPER


# ---- only a super admin creates, changes or deletes a super admin ---------------------------------


def test_s20_account_access_cannot_delete_a_super_admin(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", BOTH)
    admin = new_user(domain, tenant, "admin", SUPER)

    with nothing_changes(store), refused(PERMISSION_DENIED, "PERMISSION_MISSING", permission="super_admin"):
        domain.delete_user(as_user(manager), tenant.account_id, admin.user_id, "")

    assert user_of(domain, tenant, admin.user_id).permissions.super_admin


@pytest.mark.parametrize(
    "changes",
    [
        UserChanges(email="mine@acme.test"),
        UserChanges(display_name="Renamed"),
        UserChanges(super_admin=False),
        UserChanges(edit_billing=True),
        UserChanges(account_access=False),
    ],
    ids=["email", "display_name", "super_admin", "edit_billing", "account_access"],
)
def test_s20_account_access_cannot_change_a_super_admin(
    domain: SeatDomain, store: MemoryStore, changes: UserChanges
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    manager = new_user(domain, tenant, "manager", BOTH)
    admin = new_user(domain, tenant, "admin", Permissions(super_admin=True, account_access=True))

    with nothing_changes(store), refused(PERMISSION_DENIED, "PERMISSION_MISSING", permission="super_admin"):
        change(domain, tenant, manager, admin.user_id, changes)


def test_s20_a_super_admin_changes_and_deletes_another_super_admin(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", SUPER)
    other = new_user(domain, tenant, "other", SUPER)

    changed = change(domain, tenant, admin, other.user_id, UserChanges(email="other2@acme.test", super_admin=False))
    assert (changed.email, changed.permissions) == ("other2@acme.test", NOTHING)
    change(domain, tenant, admin, other.user_id, UserChanges(super_admin=True))
    domain.delete_user(as_user(admin), tenant.account_id, other.user_id, "")


# ---- only the owner changes the owner ---------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        UserChanges(email="mine@acme.test"),
        UserChanges(display_name="Renamed"),
        UserChanges(super_admin=False),
        UserChanges(edit_billing=True),
    ],
    ids=["email", "display_name", "super_admin", "edit_billing"],
)
def test_s20_a_super_admin_who_is_not_the_owner_cannot_change_the_owner(
    domain: SeatDomain, store: MemoryStore, changes: UserChanges
) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", SUPER)

    with nothing_changes(store), refused(PERMISSION_DENIED, "OWNER_ONLY", user_id=tenant.owner_id):
        change(domain, tenant, admin, tenant.owner_id, changes)


def test_s20_nobody_but_the_owner_deletes_the_owner(domain: SeatDomain, store: MemoryStore) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", SUPER)
    manager = new_user(domain, tenant, "manager", ACCESS)

    for actor in (admin, manager):
        with nothing_changes(store), refused(PERMISSION_DENIED, "OWNER_ONLY", user_id=tenant.owner_id):
            domain.delete_user(as_user(actor), tenant.account_id, tenant.owner_id, "")
    # The owner may change itself, but not delete itself or stop being a super admin (S10, S19).
    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "OWNER_NOT_DELETABLE"):
        domain.delete_user(tenant.owner, tenant.account_id, tenant.owner_id, "")
    with nothing_changes(store), refused(Kind.FAILED_PRECONDITION, "OWNER_STAYS_SUPER_ADMIN"):
        domain.update_user(tenant.owner, tenant.account_id, tenant.owner_id, UserChanges(super_admin=False), "")
    renamed = domain.update_user(
        tenant.owner, tenant.account_id, tenant.owner_id, UserChanges(email="boss@acme.test"), ""
    )
    assert renamed.email == "boss@acme.test"


# ---- a system call reaches every user ---------------------------------------------------------------


def test_s20_a_system_call_reaches_every_user(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", SUPER)
    biller = new_user(domain, tenant, "biller", BILLING)

    assert change(domain, tenant, None, tenant.owner_id, UserChanges(email="root@acme.test")).email == "root@acme.test"
    assert change(domain, tenant, None, biller.user_id, UserChanges(edit_billing=False)).permissions == NOTHING
    assert change(domain, tenant, None, biller.user_id, UserChanges(super_admin=True)).permissions == SUPER
    domain.delete_user(SYSTEM, tenant.account_id, admin.user_id, "")
    made = domain.create_user(SYSTEM, tenant.account_id, "new@acme.test", "", SUPER, [])[0]
    assert made.permissions == SUPER


# ---- UpdateUser without an update mask (AIP-134) ----------------------------------------------------


def update_request(
    mask: list[str] | None,
    *,
    user_id: str = "usr_1",
    email: str = "",
    display_name: str = "",
    permissions: resources_pb2.Permissions | None = None,
) -> user_service_pb2.UpdateUserRequest:
    """An UpdateUserRequest; mask None sends none."""
    user = resources_pb2.User(account_id="acc_1", user_id=user_id, email=email, display_name=display_name)
    if permissions is not None:
        user.permissions.CopyFrom(permissions)
    request = user_service_pb2.UpdateUserRequest(user=user)
    if mask is not None:
        request.update_mask.CopyFrom(field_mask_pb2.FieldMask(paths=mask))
    return request


def test_aip134_no_mask_changes_only_the_populated_fields() -> None:
    assert user_changes(update_request(None, display_name="Renamed")) == UserChanges(display_name="Renamed")
    assert user_changes(update_request(None, email="a@acme.test")) == UserChanges(email="a@acme.test")
    # A false permission is not populated: without a mask it is never taken away.
    granted = user_changes(update_request(None, permissions=resources_pb2.Permissions(edit_billing=True)))
    assert granted == UserChanges(edit_billing=True)
    assert user_changes(update_request(None, permissions=resources_pb2.Permissions())) == UserChanges()
    assert user_changes(update_request([])) == UserChanges()


def test_aip134_a_star_mask_replaces_every_field_and_a_mask_names_what_changes() -> None:
    star = user_changes(update_request(["*"], email="a@acme.test", display_name="A"))
    assert star == UserChanges(
        email="a@acme.test", display_name="A", super_admin=False, edit_billing=False, account_access=False
    )
    named = user_changes(update_request(["permissions.edit_billing"], display_name="ignored"))
    assert named == UserChanges(edit_billing=False)


def test_aip134_renaming_a_super_admin_without_a_mask_keeps_its_permissions(domain: SeatDomain) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    admin = new_user(domain, tenant, "admin", Permissions(super_admin=True, edit_billing=True))

    changes = user_changes(update_request(None, user_id=admin.user_id, display_name="Boss"))
    renamed = domain.update_user(tenant.owner, tenant.account_id, admin.user_id, changes, "")

    assert (renamed.display_name, renamed.permissions) == ("Boss", admin.permissions)
