"""SeatsClient, method by method, against the in-process server over a real channel (SQLite and
PostgreSQL): each call's response says what the rules say it should, and the server agrees."""

from __future__ import annotations

import inspect
import re
from datetime import timedelta
from typing import Any

import grpc
import pytest
from seats import ACTOR_HEADER, RetryPolicy, SeatsClient, errors, requests
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.client.conftest import CALL_TIMEOUT, FAST_RETRY, Tenant, new_tenant
from tests.client.helpers import (
    ACCOUNT_CREATED,
    ASSIGNED,
    ENTERPRISE,
    FREE,
    MOVED,
    NO_TIER,
    PLAN,
    POOL_CLOSED,
    POOL_OPENED,
    PROFESSIONAL,
    PRORATED_PLAN,
    PRORATED_SEATS,
    REMOVAL_CANCELLED,
    REMOVAL_SCHEDULED,
    SALES,
    SEAT_ASSIGNED,
    SEAT_UNASSIGNED,
    SEATS,
    SEATS_PURCHASED,
    SERVICE,
    STARTER,
    UNASSIGNED,
    UNCHANGED,
    USER_CREATED,
    USER_DELETED,
    USER_UPDATED,
    cents,
    counts,
    kinds,
    pool,
    to_dt,
)
from tests.toolkit import UnaryUnaryInterceptor, unique_email


def last_sequence(tenant: Tenant) -> int:
    return max(e.sequence for e in tenant.owner.iter_seat_events(tenant.id))


def events_after(tenant: Tenant, sequence: int) -> list[resources_pb2.SeatEvent]:
    return list(tenant.owner.iter_seat_events(tenant.id, after_sequence=sequence))


# ---- SeatService: accounts and pools ----------------------------------------------------------


def test_create_account_takes_hubs_and_tiers_as_names_and_as_enum_numbers(system: SeatsClient) -> None:
    email = unique_email("owner")
    response = system.create_account(
        "Acme",
        email,
        [("sales", "PROFESSIONAL", 1), (resources_pb2.HUB_SERVICE, resources_pb2.TIER_STARTER, 0)],
        term_months=12,
        owner_display_name="Olga Owner",
    )

    account = response.account
    assert account.account_id and account.owner_user_id
    assert account.display_name == "Acme"
    assert account.term_months == 12
    assert account.currency_code == "USD"
    assert {(s.hub, s.tier): (s.included_seats, s.purchased_seats) for s in account.subscriptions} == {
        (SALES, PROFESSIONAL): (2, 1),
        (SERVICE, STARTER): (1, 0),
    }
    start, renewal = to_dt(account.term_start), to_dt(account.renewal_time)
    assert timedelta(days=365) <= renewal - start <= timedelta(days=366)
    # The first term is charged at creation: plans plus purchased seats, for 12 months.
    charged = {(c.kind, c.hub, c.tier): (c.quantity, cents(c.amount)) for c in response.charges if cents(c.amount)}
    assert charged == {
        (PLAN, SALES, PROFESSIONAL): (0, 12 * 50000),
        (SEATS, SALES, PROFESSIONAL): (1, 12 * 9000),
        (PLAN, SERVICE, STARTER): (0, 12 * 2000),
    }
    # The owner is a super admin made with the account, and holds no seat (S15, S19).
    owner = system.with_actor(account.owner_user_id).get_user(account.account_id, account.owner_user_id).user
    assert (owner.email, owner.display_name) == (email, "Olga Owner")
    assert owner.permissions.super_admin
    assert list(owner.seats) == []


def test_create_account_accepts_prefixed_and_lowercase_names(system: SeatsClient) -> None:
    response = system.create_account(
        "Names", unique_email("owner"), [("HUB_SALES", "tier_enterprise", 0), (" service ", "Free", 0)]
    )
    assert {(s.hub, s.tier) for s in response.account.subscriptions} == {(SALES, ENTERPRISE), (SERVICE, FREE)}


def test_a_name_that_is_no_hub_is_refused_before_any_call(system: SeatsClient) -> None:
    with pytest.raises(ValueError):
        system.create_account("Bad", unique_email("owner"), [("marketing", "professional", 0)])


def test_get_account_returns_the_account_as_created(tenant: Tenant) -> None:
    assert tenant.owner.get_account(tenant.id).account == tenant.account
    assert tenant.system.get_account(tenant.id).account == tenant.account


def test_get_seat_summary_counts_every_pool_ordered_by_hub_then_tier(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("service", "starter", 0), ("sales", "enterprise", 2), ("sales", "starter", 1))
    tenant.user(seats=(("sales", "enterprise"),))

    summary = tenant.owner.get_seat_summary(tenant.id)

    assert [(p.hub, p.tier) for p in summary.pools] == [(SALES, STARTER), (SALES, ENTERPRISE), (SERVICE, STARTER)]
    assert counts(pool(summary.pools, SALES, ENTERPRISE)) == (5, 2, 1, 6, 0)
    assert counts(pool(summary.pools, SALES, STARTER)) == (1, 1, 0, 2, 0)
    assert counts(pool(summary.pools, SERVICE, STARTER)) == (1, 0, 0, 1, 0)
    assert cents(pool(summary.pools, SALES, ENTERPRISE).unit_price) == 15000
    assert summary.renewal_time == tenant.account.renewal_time
    assert summary.term_start == tenant.account.term_start


def test_purchase_seats_counts_at_once_and_charges_the_rest_of_the_term(tenant: Tenant) -> None:
    before = last_sequence(tenant)

    response = tenant.owner.purchase_seats(tenant.id, resources_pb2.HUB_SALES, resources_pb2.TIER_PROFESSIONAL, 2)

    assert counts(response.pool) == (2, 3, 0, 5, 0)
    charge = response.charge
    assert (charge.kind, charge.hub, charge.tier, charge.quantity) == (PRORATED_SEATS, SALES, PROFESSIONAL, 2)
    assert cents(charge.unit_price) == 9000
    # Bought at the first instant of the term: the whole term, 2 x 90.00.
    assert cents(charge.amount) == 18000
    assert charge.period_end == tenant.account.renewal_time
    assert counts(pool(tenant.owner.get_seat_summary(tenant.id).pools, SALES, PROFESSIONAL)) == (2, 3, 0, 5, 0)
    [event] = events_after(tenant, before)
    assert (event.type, event.hub, event.tier, event.quantity) == (SEATS_PURCHASED, SALES, PROFESSIONAL, 2)
    assert event.actor == tenant.owner_id
    assert (event.before.purchased, event.after.purchased) == (1, 3)


def test_purchase_seats_validate_only_prices_without_buying(tenant: Tenant) -> None:
    before = last_sequence(tenant)
    invoice = tenant.owner.preview_invoice(tenant.id)

    response = tenant.owner.purchase_seats(tenant.id, "sales", "PROFESSIONAL", 2, validate_only=True)

    assert response.pool.purchased == 3
    assert (response.charge.quantity, cents(response.charge.amount)) == (2, 18000)
    assert counts(pool(tenant.owner.get_seat_summary(tenant.id).pools, SALES, PROFESSIONAL)) == (2, 1, 0, 3, 0)
    assert events_after(tenant, before) == []
    assert tenant.owner.preview_invoice(tenant.id) == invoice


def test_schedule_and_cancel_seat_removal_change_only_what_leaves_at_renewal(tenant: Tenant) -> None:
    tenant.owner.purchase_seats(tenant.id, "sales", "professional", 2)
    before = last_sequence(tenant)

    scheduled = tenant.owner.schedule_seat_removal(tenant.id, "sales", "professional", 2).pool

    # Still purchased and billed until the renewal (S4, S9); no longer available for a grant.
    assert counts(scheduled) == (2, 3, 0, 3, 2)
    assert scheduled.removal_effective_time == tenant.account.renewal_time
    seats_line = [line for line in tenant.owner.preview_invoice(tenant.id).next_renewal_lines if line.kind == SEATS]
    assert [line.quantity for line in seats_line] == [1]

    cancelled = tenant.owner.cancel_seat_removal(tenant.id, SALES, PROFESSIONAL, 1).pool

    assert counts(cancelled) == (2, 3, 0, 4, 1)
    assert counts(pool(tenant.owner.get_seat_summary(tenant.id).pools, SALES, PROFESSIONAL)) == (2, 3, 0, 4, 1)
    assert [(e.type, e.quantity) for e in events_after(tenant, before)] == [
        (REMOVAL_SCHEDULED, 2),
        (REMOVAL_CANCELLED, 1),
    ]


# ---- SeatService: assignments -----------------------------------------------------------------


def test_assign_seat_gives_a_seat_once_and_moves_it_between_tiers(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 0), ("sales", "professional", 0))
    ann = tenant.user()

    first = tenant.owner.assign_seat(tenant.id, ann.user_id, "sales", "starter")

    assert first.changed
    assert (first.assignment.user_id, first.assignment.hub, first.assignment.tier) == (ann.user_id, SALES, STARTER)
    assert first.previous_tier == NO_TIER
    assert counts(first.pool) == (1, 0, 1, 0, 0)

    again = tenant.owner.assign_seat(tenant.id, ann.user_id, SALES, STARTER)

    assert not again.changed
    assert counts(again.pool) == (1, 0, 1, 0, 0)

    moved = tenant.owner.assign_seat(tenant.id, ann.user_id, "sales", resources_pb2.TIER_PROFESSIONAL)

    assert moved.changed
    assert moved.previous_tier == STARTER
    assert (moved.pool.tier, moved.pool.assigned) == (PROFESSIONAL, 1)
    summary = tenant.owner.get_seat_summary(tenant.id)
    assert pool(summary.pools, SALES, STARTER).assigned == 0
    assert [(s.hub, s.tier) for s in tenant.owner.get_user(tenant.id, ann.user_id).user.seats] == [
        (SALES, PROFESSIONAL)
    ]


def test_assign_seat_purchase_if_needed_buys_the_seat_a_full_pool_lacks(tenant: Tenant) -> None:
    for _ in range(3):
        tenant.user(seats=(("sales", "professional"),))
    dee = tenant.user()

    response = tenant.owner.assign_seat(tenant.id, dee.user_id, "sales", "professional", purchase_if_needed=True)

    assert response.changed
    assert counts(response.pool) == (2, 2, 4, 0, 0)
    assert (response.charge.kind, response.charge.quantity, cents(response.charge.amount)) == (PRORATED_SEATS, 1, 9000)


def test_assign_seat_without_a_purchase_leaves_the_charge_empty(tenant: Tenant) -> None:
    ann = tenant.user()
    response = tenant.owner.assign_seat(tenant.id, ann.user_id, "sales", "professional", purchase_if_needed=True)
    assert not response.HasField("charge")
    assert counts(response.pool) == (2, 1, 1, 2, 0)


def test_unassign_seat_returns_the_seat_to_its_pool(tenant: Tenant) -> None:
    ann = tenant.user(seats=(("sales", "professional"),))
    before = last_sequence(tenant)

    response = tenant.owner.unassign_seat(tenant.id, ann.user_id, "sales")

    # The seat stays in the pool, purchased and available (S18).
    assert counts(response.pool) == (2, 1, 0, 3, 0)
    assert list(tenant.owner.get_user(tenant.id, ann.user_id).user.seats) == []
    [event] = events_after(tenant, before)
    assert (event.type, event.user_id, event.hub, event.tier) == (SEAT_UNASSIGNED, ann.user_id, SALES, PROFESSIONAL)


def test_batch_update_seat_assignments_applies_every_change_in_request_order(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 1), ("sales", "professional", 0), ("service", "starter", 0))
    ann = tenant.user(seats=(("sales", "starter"),))
    bob = tenant.user(seats=(("sales", "starter"),))
    cy = tenant.user()

    response = tenant.owner.batch_update_seat_assignments(
        tenant.id,
        [
            (ann.user_id, "sales", "professional"),
            (bob.user_id, SALES, None),
            (cy.user_id, "service", resources_pb2.TIER_STARTER),
            (cy.user_id, "sales", None),
        ],
    )

    assert [(r.user_id, r.hub, r.tier, r.previous_tier, r.outcome) for r in response.results] == [
        (ann.user_id, SALES, PROFESSIONAL, STARTER, MOVED),
        (bob.user_id, SALES, NO_TIER, STARTER, UNASSIGNED),
        (cy.user_id, SERVICE, STARTER, NO_TIER, ASSIGNED),
        (cy.user_id, SALES, NO_TIER, NO_TIER, UNCHANGED),
    ]
    assert counts(pool(response.pools, SALES, STARTER)) == (1, 1, 0, 2, 0)
    assert counts(pool(response.pools, SALES, PROFESSIONAL)) == (2, 0, 1, 1, 0)
    assert counts(pool(response.pools, SERVICE, STARTER)) == (1, 0, 1, 0, 0)
    assert [(a.user_id, a.hub, a.tier) for a in tenant.owner.iter_seat_assignments(tenant.id)] == sorted(
        [(ann.user_id, SALES, PROFESSIONAL), (cy.user_id, SERVICE, STARTER)]
    )


def test_batch_update_validate_only_changes_nothing(tenant: Tenant) -> None:
    ann = tenant.user()
    before = last_sequence(tenant)

    response = tenant.owner.batch_update_seat_assignments(
        tenant.id, [(ann.user_id, "sales", "professional")], validate_only=True
    )

    assert [r.outcome for r in response.results] == [ASSIGNED]
    assert list(tenant.owner.iter_seat_assignments(tenant.id)) == []
    assert events_after(tenant, before) == []


def test_list_seat_assignments_filters_by_hub_and_tier(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 2), ("sales", "professional", 0), ("service", "starter", 0))
    ann = tenant.user(seats=(("sales", "starter"), ("service", "starter")))
    bob = tenant.user(seats=(("sales", "professional"),))
    cy = tenant.user(seats=(("sales", "starter"),))

    everything = tenant.owner.list_seat_assignments(tenant.id)
    sales_starter = tenant.owner.list_seat_assignments(tenant.id, hub="sales", tier=resources_pb2.TIER_STARTER)
    service = tenant.owner.list_seat_assignments(tenant.id, hub=resources_pb2.HUB_SERVICE)

    # Ordered by user id, then hub.
    assert [(a.user_id, a.hub, a.tier) for a in everything.assignments] == sorted(
        [
            (ann.user_id, SALES, STARTER),
            (ann.user_id, SERVICE, STARTER),
            (bob.user_id, SALES, PROFESSIONAL),
            (cy.user_id, SALES, STARTER),
        ]
    )
    assert everything.next_page_token == ""
    assert all(a.HasField("assign_time") for a in everything.assignments)
    assert sorted(a.user_id for a in sales_starter.assignments) == sorted([ann.user_id, cy.user_id])
    assert [(a.user_id, a.tier) for a in service.assignments] == [(ann.user_id, STARTER)]


def test_upgrade_subscription_from_free_replaces_the_free_seats(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "free", 0))
    ann = tenant.user(seats=(("sales", "free"),))
    bob = tenant.user(seats=(("sales", "free"),))
    before = last_sequence(tenant)

    preview = tenant.owner.upgrade_subscription(
        tenant.id, "sales", "starter", purchased_seats=1, assign_user_ids=[ann.user_id], validate_only=True
    )

    assert counts(preview.pool) == (1, 1, 1, 1, 0)
    assert events_after(tenant, before) == []
    assert [(p.tier, p.assigned) for p in tenant.owner.get_seat_summary(tenant.id).pools] == [(FREE, 2)]

    response = tenant.owner.upgrade_subscription(
        tenant.id, resources_pb2.HUB_SALES, "STARTER", purchased_seats=1, assign_user_ids=[ann.user_id]
    )

    assert [(s.hub, s.tier, s.included_seats, s.purchased_seats) for s in response.account.subscriptions] == [
        (SALES, STARTER, 1, 1)
    ]
    assert (response.pool.hub, response.pool.tier) == (SALES, STARTER)
    assert counts(response.pool) == (1, 1, 1, 1, 0)
    charged = {(c.kind, c.tier): (c.quantity, cents(c.amount)) for c in response.charges}
    assert charged == {(PRORATED_PLAN, STARTER): (0, 2000), (PRORATED_SEATS, STARTER): (1, 2000)}
    # The free pool is gone at once (S6): Bob lost his free seat, Ann holds a Starter one.
    assert [(p.hub, p.tier) for p in tenant.owner.get_seat_summary(tenant.id).pools] == [(SALES, STARTER)]
    assert [(s.hub, s.tier) for s in tenant.owner.get_user(tenant.id, ann.user_id).user.seats] == [(SALES, STARTER)]
    assert list(tenant.owner.get_user(tenant.id, bob.user_id).user.seats) == []
    happened = kinds(events_after(tenant, before))
    assert POOL_CLOSED in happened and POOL_OPENED in happened
    assert happened.count(SEAT_UNASSIGNED) == 2 and happened.count(SEAT_ASSIGNED) == 1


def test_preview_invoice_shows_this_terms_charges_and_the_next_renewal(tenant: Tenant) -> None:
    tenant.owner.purchase_seats(tenant.id, "sales", "professional", 2)
    tenant.owner.schedule_seat_removal(tenant.id, "sales", "professional", 1)

    invoice = tenant.owner.preview_invoice(tenant.id)

    assert invoice.term_start == tenant.account.term_start
    assert invoice.renewal_time == tenant.account.renewal_time
    assert sorted((c.kind, c.quantity, cents(c.amount)) for c in invoice.current_term_charges) == [
        (PLAN, 0, 50000),
        (SEATS, 1, 9000),
        (PRORATED_SEATS, 2, 18000),
    ]
    assert cents(invoice.current_term_total) == 50000 + 9000 + 18000
    # The scheduled removal lowers only the next renewal (S9): 3 purchased, 1 leaving.
    assert sorted((line.kind, line.quantity, cents(line.amount)) for line in invoice.next_renewal_lines) == [
        (PLAN, 0, 50000),
        (SEATS, 2, 18000),
    ]
    assert cents(invoice.next_renewal_total) == 50000 + 18000


def test_list_seat_events_pages_the_ordered_log_after_a_sequence(tenant: Tenant) -> None:
    first = tenant.owner.list_seat_events(tenant.id)

    assert kinds(first.events) == [ACCOUNT_CREATED, USER_CREATED, POOL_OPENED]
    assert [e.sequence for e in first.events] == [1, 2, 3]
    assert {e.actor for e in first.events} == {"system"}
    assert first.next_page_token == ""

    ann = tenant.user(seats=(("sales", "professional"),))
    page = tenant.owner.list_seat_events(tenant.id, after_sequence=3, page_size=1)

    assert [(e.sequence, e.type, e.user_id) for e in page.events] == [(4, USER_CREATED, ann.user_id)]
    assert page.next_page_token
    rest = tenant.owner.list_seat_events(tenant.id, after_sequence=3, page_size=1, page_token=page.next_page_token)
    assert [(e.sequence, e.type, e.user_id, e.hub, e.tier) for e in rest.events] == [
        (5, SEAT_ASSIGNED, ann.user_id, SALES, PROFESSIONAL)
    ]
    assert (rest.events[0].before.assigned, rest.events[0].after.assigned) == (0, 1)


# ---- UserService ------------------------------------------------------------------------------


def test_create_user_with_permissions_and_seats_in_one_call(tenant: Tenant) -> None:
    email = unique_email("ann")

    response = tenant.owner.create_user(
        tenant.id,
        email,
        display_name="Ann",
        edit_billing=True,
        account_access=True,
        seats=[("sales", "professional")],
    )

    user = response.user
    assert user.user_id and user.account_id == tenant.id
    assert (user.email, user.display_name) == (email, "Ann")
    assert (user.permissions.super_admin, user.permissions.edit_billing, user.permissions.account_access) == (
        False,
        True,
        True,
    )
    assert [(s.hub, s.tier) for s in user.seats] == [(SALES, PROFESSIONAL)]
    assert user.etag
    assert list(response.charges) == []
    assert tenant.owner.get_user(tenant.id, user.user_id).user == user


def test_create_user_purchase_if_needed_returns_the_charge(tenant: Tenant) -> None:
    tenant.user(seats=(("sales", "professional"),))
    tenant.user(seats=(("sales", "professional"),))
    tenant.user(seats=(("sales", "professional"),))

    response = tenant.owner.create_user(
        tenant.id, unique_email(), seats=[(SALES, PROFESSIONAL)], purchase_if_needed=True
    )

    assert [(c.kind, c.quantity, cents(c.amount)) for c in response.charges] == [(PRORATED_SEATS, 1, 9000)]
    assert pool(tenant.owner.get_seat_summary(tenant.id).pools, SALES, PROFESSIONAL).purchased == 2


def test_create_user_grants_no_seat_unless_asked(tenant: Tenant) -> None:
    admin = tenant.owner.create_user(tenant.id, unique_email("admin"), super_admin=True).user
    assert admin.permissions.super_admin
    assert list(admin.seats) == []
    assert list(tenant.owner.iter_seat_assignments(tenant.id)) == []


def test_get_user_returns_seats_and_etag(tenant: Tenant) -> None:
    ann = tenant.user(seats=(("sales", "professional"),))
    got = tenant.as_user(ann.user_id).get_user(tenant.id, ann.user_id).user
    assert got.user_id == ann.user_id
    assert got.email == ann.email
    assert [(s.hub, s.tier) for s in got.seats] == [(SALES, PROFESSIONAL)]
    assert got.etag == ann.etag


def test_list_users_lists_in_user_id_order_and_filters_by_hub(system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "professional", 0), ("service", "professional", 0))
    ann = tenant.user(seats=(("sales", "professional"),))
    bob = tenant.user(seats=(("service", "professional"),))
    cy = tenant.user()

    everyone = tenant.owner.list_users(tenant.id)
    sales = tenant.owner.list_users(tenant.id, hub="sales")
    service = tenant.owner.list_users(tenant.id, hub=resources_pb2.HUB_SERVICE)

    assert [u.user_id for u in everyone.users] == sorted([tenant.owner_id, ann.user_id, bob.user_id, cy.user_id])
    assert everyone.next_page_token == ""
    assert [u.user_id for u in sales.users] == [ann.user_id]
    assert [u.user_id for u in service.users] == [bob.user_id]


def test_update_user_changes_only_the_given_fields_and_checks_the_etag(tenant: Tenant) -> None:
    ann = tenant.owner.create_user(tenant.id, unique_email("ann"), display_name="Ann").user
    before = last_sequence(tenant)
    new_email = unique_email("ann.new")

    updated = tenant.owner.update_user(tenant.id, ann.user_id, email=new_email, edit_billing=True, etag=ann.etag).user

    assert updated.email == new_email
    assert updated.display_name == "Ann"
    assert updated.permissions.edit_billing and not updated.permissions.account_access
    assert updated.etag != ann.etag
    assert tenant.owner.get_user(tenant.id, ann.user_id).user == updated
    assert kinds(events_after(tenant, before)) == [USER_UPDATED]

    with pytest.raises(errors.EtagMismatch):
        tenant.owner.update_user(tenant.id, ann.user_id, display_name="Stale", etag=ann.etag)

    renamed = tenant.owner.update_user(tenant.id, ann.user_id, display_name="Annie").user
    assert (renamed.display_name, renamed.email) == ("Annie", new_email)


def test_update_user_needs_a_field_to_change(tenant: Tenant) -> None:
    with pytest.raises(ValueError):
        tenant.owner.update_user(tenant.id, tenant.owner_id)


def test_delete_user_removes_the_user(tenant: Tenant) -> None:
    ann = tenant.user()
    bob = tenant.user()
    before = last_sequence(tenant)

    tenant.owner.delete_user(tenant.id, ann.user_id, etag=ann.etag)
    tenant.owner.delete_user(tenant.id, bob.user_id)

    with pytest.raises(errors.UserNotFound):
        tenant.owner.get_user(tenant.id, ann.user_id)
    assert [u.user_id for u in tenant.owner.iter_users(tenant.id)] == [tenant.owner_id]
    assert [(e.type, e.user_id) for e in events_after(tenant, before)] == [
        (USER_DELETED, ann.user_id),
        (USER_DELETED, bob.user_id),
    ]


def test_delete_user_with_a_stale_etag_keeps_the_user(tenant: Tenant) -> None:
    ann = tenant.user()
    tenant.owner.update_user(tenant.id, ann.user_id, display_name="Ann")
    with pytest.raises(errors.EtagMismatch):
        tenant.owner.delete_user(tenant.id, ann.user_id, etag=ann.etag)
    assert tenant.owner.get_user(tenant.id, ann.user_id).user.display_name == "Ann"


# ---- the client itself ------------------------------------------------------------------------


def test_with_actor_acts_as_another_user_on_the_same_channel(tenant: Tenant) -> None:
    ann = tenant.user(account_access=True)
    as_ann = tenant.owner.with_actor(ann.user_id)
    bob = tenant.user()
    before = last_sequence(tenant)

    as_ann.assign_seat(tenant.id, bob.user_id, "sales", "professional")

    assert as_ann.channel is tenant.owner.channel
    assert (as_ann.actor, tenant.owner.actor) == (ann.user_id, tenant.owner_id)
    assert [(e.type, e.actor) for e in events_after(tenant, before)] == [(SEAT_ASSIGNED, ann.user_id)]
    # Ann has no edit billing: acting as her is really acting as her.
    with pytest.raises(errors.PermissionMissing):
        as_ann.purchase_seats(tenant.id, "sales", "professional", 1)
    # None is a system call again; closing a clone leaves the shared channel open.
    as_ann.with_actor(None).create_account("From a clone", unique_email("owner"), [("sales", "starter", 0)])
    as_ann.close()
    assert tenant.owner.get_account(tenant.id).account.account_id == tenant.id


def test_metadata_goes_with_every_call_beside_the_actor(running: Any, tenant: Tenant) -> None:
    seen: list[tuple[str, tuple[tuple[str, str], ...]]] = []

    class Recorder(UnaryUnaryInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append((details.method, tuple(details.metadata or ())))
            return continuation(details, request)

    with SeatsClient(
        running.target, actor=tenant.owner_id, metadata=[("x-trace", "t-1")], interceptors=[Recorder()]
    ) as client:
        client.get_account(tenant.id)
        client.with_actor(None).get_account(tenant.id)

    assert seen == [
        ("/seats.v1.SeatService/GetAccount", (("x-trace", "t-1"), (ACTOR_HEADER, tenant.owner_id))),
        ("/seats.v1.SeatService/GetAccount", (("x-trace", "t-1"),)),
    ]


def test_a_client_on_a_channel_you_made_leaves_it_open(running: Any, tenant: Tenant) -> None:
    with grpc.insecure_channel(running.target) as channel:
        with SeatsClient(channel=channel, actor=tenant.owner_id, timeout=CALL_TIMEOUT, retry=FAST_RETRY) as client:
            assert client.get_account(tenant.id).account == tenant.account
        again = SeatsClient(channel=channel, actor=tenant.owner_id)
        assert again.get_account(tenant.id).account == tenant.account


def test_a_closed_client_refuses_calls_without_retrying(running: Any, tenant: Tenant) -> None:
    client = SeatsClient(running.target, actor=tenant.owner_id, retry=FAST_RETRY)
    client.close()
    with pytest.raises(ValueError, match="closed channel"):
        client.get_account(tenant.id)


def test_credentials_make_a_tls_channel(running: Any) -> None:
    # The test server speaks plaintext only: a TLS handshake with it fails, so the call is UNAVAILABLE.
    tls = grpc.ssl_channel_credentials()
    with (
        SeatsClient(running.target, credentials=tls, retry=RetryPolicy(max_attempts=1), timeout=5.0) as client,
        pytest.raises(errors.Unavailable),
    ):
        client.get_account("acc_any")


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_every_unary_rpc_of_the_contract_is_a_method_with_the_builders_signature() -> None:
    unary = [
        method
        for module, service in ((seat_service_pb2, "SeatService"), (user_service_pb2, "UserService"))
        for method in module.DESCRIPTOR.services_by_name[service].methods
        if not method.server_streaming
    ]
    assert len(unary) == 27  # ListInvoices and GetInvoice are the newest
    with SeatsClient("127.0.0.1:1") as client:
        for method in unary:
            name = snake_case(method.name)
            bound = getattr(client, name)
            assert bound.__name__ == name
            assert inspect.signature(bound).parameters == inspect.signature(getattr(requests, name)).parameters
            assert bound.__doc__ == getattr(requests, name).__doc__


def test_interceptors_wrap_a_channel_you_made(running: Any) -> None:
    seen: list[str] = []

    class Recorder(UnaryUnaryInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            seen.append(details.method)
            return continuation(details, request)

    with grpc.insecure_channel(running.target) as channel:
        SeatsClient(channel=channel, interceptors=[Recorder()]).create_account(
            "Intercepted", unique_email("owner"), [("sales", "starter", 0)]
        )

    assert seen == ["/seats.v1.SeatService/CreateAccount"]
