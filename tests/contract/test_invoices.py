"""Invoices you can reconcile, on both stores: each ended term gets one invoice, issued when its
renewal is applied, billing every charge the term made (the plan and seats at its start, every
proration during it) with an exact total; ListInvoices and GetInvoice show them; the invoices and the
current term's charges add up to every charge the account ever had. PreviewInvoice prices a
hypothetical purchase or removal exactly as the real calls would, and saves nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
from seats.v1 import resources_pb2, seat_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import (
    FREE,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Tenant,
    add_months,
    assign,
    cents,
    events,
    new_account,
    new_user,
    pool,
    preview,
    purchase,
    to_dt,
)
from tests.toolkit import refused

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def invoices(running: Running, tenant: Tenant, page_size: int = 0) -> list[resources_pb2.Invoice]:
    """Every page of ListInvoices, as the owner."""
    found: list[resources_pb2.Invoice] = []
    token = ""
    while True:
        page = running.seats.ListInvoices(
            seat_service_pb2.ListInvoicesRequest(account_id=tenant.id, page_size=page_size, page_token=token),
            metadata=tenant.as_owner,
        )
        found.extend(page.invoices)
        if not (token := page.next_page_token):
            return found


def invoice(running: Running, tenant: Tenant, invoice_id: str, by: str = "") -> resources_pb2.Invoice:
    return running.seats.GetInvoice(
        seat_service_pb2.GetInvoiceRequest(account_id=tenant.id, invoice_id=invoice_id),
        metadata=actor(by or tenant.owner_id),
    ).invoice


def every_charge_minor(running: Running, tenant: Tenant) -> int:
    """The sum of every charge the account ever had, read from the store itself."""
    return sum(c.amount_minor for c in running.store.read(lambda: running.store.charges_since(tenant.id, EPOCH)))


def check_reconciles(running: Running, tenant: Tenant, first: datetime | None = None) -> list[resources_pb2.Invoice]:
    """The invariant: each invoice's total is the sum of its lines, the invoices cover the terms one
    after another from the account's first (`first`; by default the term the account was created in),
    and the invoices plus the current term's charges add up to every charge of the account."""
    found = invoices(running, tenant)
    assert [i.number for i in found] == list(range(1, len(found) + 1))
    start = first or to_dt(tenant.account.term_start)
    for listed in found:
        full = invoice(running, tenant, listed.invoice_id)
        assert not listed.lines and listed.line_count == len(full.lines)
        assert cents(full.total) == sum(cents(line.amount) for line in full.lines), full
        assert to_dt(full.period_start) == start, "the invoices follow each other, term after term"
        assert all(to_dt(line.period_start) == start for line in full.lines)
        start = to_dt(full.period_end)
    now = preview(running.seats, tenant)
    assert to_dt(now.term_start) == start
    billed = sum(cents(i.total) for i in found) + cents(now.current_term_total)
    assert billed == every_charge_minor(running, tenant)
    return found


def test_an_ended_term_gets_one_invoice_with_every_charge_of_the_term(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 1), (SERVICE, STARTER, 0))
    assert invoices(running, tenant) == []  # the first term runs
    running.clock.advance(days=10)
    purchase(running.seats, tenant, SALES, PROFESSIONAL, 2)
    running.clock.advance(days=5)
    purchase(running.seats, tenant, SERVICE, STARTER, 1)
    term = preview(running.seats, tenant)
    running.clock.advance(to_dt(term.renewal_time) - running.clock.now() + timedelta(hours=1))
    running.server.sweeper.sweep_once()  # the sweep applies the renewal and issues the invoice

    (issued,) = check_reconciles(running, tenant)
    full = invoice(running, tenant, issued.invoice_id)
    assert (to_dt(full.period_start), to_dt(full.period_end)) == (to_dt(term.term_start), to_dt(term.renewal_time))
    assert [line.charge_id for line in full.lines] == [c.charge_id for c in term.current_term_charges]
    kinds = [resources_pb2.ChargeKind.Name(line.kind).removeprefix("CHARGE_KIND_") for line in full.lines]
    assert sorted(kinds) == ["PLAN", "PLAN", "PRORATED_SEATS", "PRORATED_SEATS", "SEATS"]
    assert cents(full.total) == cents(term.current_term_total)
    assert to_dt(full.issue_time) >= to_dt(full.period_end)
    # the log announces it, first of the renewal's events, for watches and the message bus
    announced = [e for e in events(running.seats, tenant) if e.type == resources_pb2.SEAT_EVENT_TYPE_INVOICE_ISSUED]
    assert [(e.invoice_id, e.quantity, e.actor) for e in announced] == [(issued.invoice_id, 5, "system")]
    renewal = events(running.seats, tenant, after=announced[0].sequence)
    assert renewal[0].type == resources_pb2.SEAT_EVENT_TYPE_TERM_RENEWED

    # the next term's charges are not on it: they wait for their own renewal
    after = preview(running.seats, tenant)
    assert {c.charge_id for c in after.current_term_charges}.isdisjoint(line.charge_id for line in full.lines)
    assert cents(after.current_term_total) == cents(term.next_renewal_total)


def test_an_account_started_in_the_past_gets_an_invoice_for_each_past_term(running: Running) -> None:
    start = running.clock.now() - timedelta(days=95)
    tenant = new_account(running.seats, (SALES, STARTER, 2), term_start=start)
    found = check_reconciles(running, tenant, start)
    assert len(found) == 3  # three monthly terms have ended
    month = 2000 + 2 * 2000  # the plan and two seats, a month of Sales Starter
    assert [cents(i.total) for i in found] == [month] * 3
    assert [to_dt(i.period_end) for i in found] == [add_months(start, n) for n in (1, 2, 3)]
    assert [i.line_count for i in found] == [2, 2, 2]


def test_invoices_page_and_are_read_by_any_user_of_the_account_only(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, STARTER, 0), term_start=running.clock.now() - timedelta(days=100))
    paged = invoices(running, tenant, page_size=2)
    assert [i.number for i in paged] == [1, 2, 3]
    plain = new_user(running.users, tenant).user_id
    assert invoice(running, tenant, paged[0].invoice_id, by=plain).invoice_id == paged[0].invoice_id
    outsider = new_account(running.seats, (SALES, STARTER, 0))
    with refused(grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        invoice(running, tenant, paged[0].invoice_id, by=outsider.owner_id)
    with refused(grpc.StatusCode.NOT_FOUND, "INVOICE_NOT_FOUND"):
        invoice(running, outsider, paged[0].invoice_id)  # another account's invoice is none of this one's
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        invoice(running, tenant, "")
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        running.seats.ListInvoices(
            seat_service_pb2.ListInvoicesRequest(account_id=tenant.id, page_token="forged"), metadata=tenant.as_owner
        )


def proposal(
    running: Running,
    tenant: Tenant,
    purchases: list[tuple[int, int, int]] = [],  # noqa: B006 - read only
    removals: list[tuple[int, int, int]] = [],  # noqa: B006 - read only
    by: str = "",
) -> seat_service_pb2.PreviewInvoiceResponse:
    return running.seats.PreviewInvoice(
        seat_service_pb2.PreviewInvoiceRequest(
            account_id=tenant.id,
            purchases=[resources_pb2.SeatQuantity(hub=h, tier=t, quantity=q) for h, t, q in purchases],  # type: ignore[arg-type]
            removals=[resources_pb2.SeatQuantity(hub=h, tier=t, quantity=q) for h, t, q in removals],  # type: ignore[arg-type]
        ),
        metadata=actor(by or tenant.owner_id),
    )


def test_a_hypothetical_purchase_is_priced_as_the_real_one_and_saves_nothing(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 1))
    running.clock.advance(days=12)
    plain = new_user(running.users, tenant).user_id  # no permission: a preview changes nothing
    before, logged = pool(running.seats, tenant, SALES, PROFESSIONAL), len(events(running.seats, tenant))
    what_if = proposal(running, tenant, purchases=[(SALES, PROFESSIONAL, 3)], by=plain)
    assert pool(running.seats, tenant, SALES, PROFESSIONAL) == before
    assert len(events(running.seats, tenant)) == logged
    (proposed,) = what_if.proposed_charges
    assert proposed.charge_id == "" and proposed.quantity == 3
    assert cents(what_if.proposed_total) == cents(proposed.amount)
    assert cents(what_if.current_term_total) == cents(preview(running.seats, tenant).current_term_total)
    seats_line = [x for x in what_if.next_renewal_lines if x.kind == resources_pb2.CHARGE_KIND_SEATS]
    assert [x.quantity for x in seats_line] == [4]  # 1 bought + 3 proposed, billed from the renewal on

    real = purchase(running.seats, tenant, SALES, PROFESSIONAL, 3).charge  # at the same instant
    assert (cents(real.amount), real.description) == (cents(proposed.amount), proposed.description)
    assert cents(preview(running.seats, tenant).next_renewal_total) == cents(what_if.next_renewal_total)


def test_a_hypothetical_removal_lowers_the_next_renewal_and_keeps_the_rules(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 2), (SERVICE, FREE, 0))
    for _ in range(3):
        assign(running.seats, tenant, new_user(running.users, tenant).user_id, SALES, PROFESSIONAL)
    now = preview(running.seats, tenant)
    what_if = proposal(running, tenant, removals=[(SALES, PROFESSIONAL, 1)])
    assert cents(now.next_renewal_total) - cents(what_if.next_renewal_total) == 9000  # a month of one seat
    assert not what_if.proposed_charges and cents(what_if.current_term_total) == cents(now.current_term_total)
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).pending_removal == 0
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "SEATS_ASSIGNED"):  # S8: 3 of 4 seats are held
        proposal(running, tenant, removals=[(SALES, PROFESSIONAL, 2)])
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "TIER_NOT_PURCHASABLE"):
        proposal(running, tenant, purchases=[(SERVICE, FREE, 1)])
    with refused(grpc.StatusCode.FAILED_PRECONDITION, "NOT_SUBSCRIBED"):
        proposal(running, tenant, purchases=[(SERVICE, STARTER, 1)])
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"):
        proposal(running, tenant, purchases=[(SALES, PROFESSIONAL, 0)])
    outsider = new_account(running.seats, (SALES, STARTER, 0))
    with refused(grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        proposal(running, tenant, purchases=[(SALES, PROFESSIONAL, 1)], by=outsider.owner_id)
