"""Shared helpers of the contract tests: make accounts and users, read pools, events, money and errors."""

from __future__ import annotations

import calendar
import threading
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import TypeAlias, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2
from seats.v1 import (
    resources_pb2,
    seat_service_pb2,
    seat_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)

from tests.conftest import actor
from tests.toolkit import Hub, PoolKey, Tier, check_log_leaves_pools, replay_log, unique_email

SALES = resources_pb2.HUB_SALES
SERVICE = resources_pb2.HUB_SERVICE
FREE = resources_pb2.TIER_FREE
STARTER = resources_pb2.TIER_STARTER
PROFESSIONAL = resources_pb2.TIER_PROFESSIONAL
ENTERPRISE = resources_pb2.TIER_ENTERPRISE
NO_TIER = resources_pb2.TIER_UNSPECIFIED
NO_HUB = resources_pb2.HUB_UNSPECIFIED

NOTHING = resources_pb2.Permissions()
BILLING = resources_pb2.Permissions(edit_billing=True)
ACCESS = resources_pb2.Permissions(account_access=True)
SUPER = resources_pb2.Permissions(super_admin=True)

T = TypeVar("T")

Seats = seat_service_pb2_grpc.SeatServiceStub
Users = user_service_pb2_grpc.UserServiceStub
Metadata: TypeAlias = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Price:
    """One tier of the default price book, in cents per month."""

    included: int
    seat: int
    plan: int


PRICE_BOOK = {
    FREE: Price(included=2, seat=0, plan=0),
    STARTER: Price(included=1, seat=2000, plan=2000),
    PROFESSIONAL: Price(included=2, seat=9000, plan=50000),
    ENTERPRISE: Price(included=5, seat=15000, plan=150000),
}


@dataclass(frozen=True)
class Tenant:
    """An account made for one test, with its super admin owner."""

    account: resources_pb2.Account
    charges: tuple[resources_pb2.Charge, ...]

    @property
    def id(self) -> str:
        return self.account.account_id

    @property
    def owner_id(self) -> str:
        return self.account.owner_user_id

    @property
    def as_owner(self) -> tuple[tuple[str, str], ...]:
        return actor(self.owner_id)


def new_account(
    seats: Seats,
    *subscriptions: tuple[Hub, Tier, int],
    term_months: int = 1,
    term_start: datetime | None = None,
    request_id: str = "",
) -> Tenant:
    """Creates an account by a system call; subscriptions are (hub, tier, purchased seats)."""
    request = seat_service_pb2.CreateAccountRequest(
        display_name=f"Account {uuid.uuid4().hex[:8]}",
        owner_email=unique_email("owner"),
        subscriptions=[
            resources_pb2.Subscription(hub=hub, tier=tier, purchased_seats=purchased)
            for hub, tier, purchased in subscriptions or ((SALES, PROFESSIONAL, 0),)
        ],
        term_months=term_months,
        request_id=request_id,
    )
    if term_start is not None:
        request.term_start.CopyFrom(timestamp(term_start))
    response = seats.CreateAccount(request)
    return Tenant(response.account, tuple(response.charges))


def new_user(
    users: Users,
    tenant: Tenant,
    *,
    permissions: resources_pb2.Permissions = NOTHING,
    seats: Iterable[PoolKey] = (),
    email: str = "",
    by: str = "",
    purchase_if_needed: bool = False,
) -> resources_pb2.User:
    """Creates a user on behalf of the owner (or of `by`)."""
    return create_user(
        users, tenant, permissions=permissions, seats=seats, email=email, by=by,
        purchase_if_needed=purchase_if_needed,
    ).user


def create_user(
    users: Users,
    tenant: Tenant,
    *,
    permissions: resources_pb2.Permissions = NOTHING,
    seats: Iterable[PoolKey] = (),
    email: str = "",
    by: str = "",
    purchase_if_needed: bool = False,
    request_id: str = "",
) -> user_service_pb2.CreateUserResponse:
    return users.CreateUser(
        user_service_pb2.CreateUserRequest(
            account_id=tenant.id,
            email=email or unique_email(),
            permissions=permissions,
            seats=[resources_pb2.SeatRef(hub=hub, tier=tier) for hub, tier in seats],
            purchase_if_needed=purchase_if_needed,
            request_id=request_id,
        ),
        metadata=actor(by or tenant.owner_id),
    )


def assign(
    seats: Seats,
    tenant: Tenant,
    user_id: str,
    hub: Hub,
    tier: Tier,
    *,
    by: str = "",
    purchase_if_needed: bool = False,
    request_id: str = "",
) -> seat_service_pb2.AssignSeatResponse:
    """Gives a seat on behalf of the owner (or of `by`)."""
    return seats.AssignSeat(
        seat_service_pb2.AssignSeatRequest(
            account_id=tenant.id, user_id=user_id, hub=hub, tier=tier,
            purchase_if_needed=purchase_if_needed, request_id=request_id,
        ),
        metadata=actor(by or tenant.owner_id),
    )


def unassign(
    seats: Seats, tenant: Tenant, user_id: str, hub: Hub, *, by: str = ""
) -> seat_service_pb2.UnassignSeatResponse:
    return seats.UnassignSeat(
        seat_service_pb2.UnassignSeatRequest(account_id=tenant.id, user_id=user_id, hub=hub),
        metadata=actor(by or tenant.owner_id),
    )


def purchase(
    seats: Seats, tenant: Tenant, hub: Hub, tier: Tier, quantity: int, *,
    by: str = "", validate_only: bool = False, request_id: str = "",
) -> seat_service_pb2.PurchaseSeatsResponse:
    return seats.PurchaseSeats(
        seat_service_pb2.PurchaseSeatsRequest(
            account_id=tenant.id, hub=hub, tier=tier, quantity=quantity,
            validate_only=validate_only, request_id=request_id,
        ),
        metadata=actor(by or tenant.owner_id),
    )


def schedule_removal(
    seats: Seats, tenant: Tenant, hub: Hub, tier: Tier, quantity: int, *, by: str = ""
) -> seat_service_pb2.ScheduleSeatRemovalResponse:
    return seats.ScheduleSeatRemoval(
        seat_service_pb2.ScheduleSeatRemovalRequest(
            account_id=tenant.id, hub=hub, tier=tier, quantity=quantity
        ),
        metadata=actor(by or tenant.owner_id),
    )


def cancel_removal(
    seats: Seats, tenant: Tenant, hub: Hub, tier: Tier, quantity: int, *, by: str = ""
) -> seat_service_pb2.CancelSeatRemovalResponse:
    return seats.CancelSeatRemoval(
        seat_service_pb2.CancelSeatRemovalRequest(
            account_id=tenant.id, hub=hub, tier=tier, quantity=quantity
        ),
        metadata=actor(by or tenant.owner_id),
    )


def batch(
    seats: Seats, tenant: Tenant, *changes: tuple[str, Hub, Tier], by: str = "", validate_only: bool = False
) -> seat_service_pb2.BatchUpdateSeatAssignmentsResponse:
    """Saves a batch of (user_id, hub, tier) changes; NO_TIER takes the user's seat of the hub."""
    return seats.BatchUpdateSeatAssignments(
        seat_service_pb2.BatchUpdateSeatAssignmentsRequest(
            account_id=tenant.id,
            changes=[seat_service_pb2.SeatChange(user_id=u, hub=h, tier=t) for u, h, t in changes],
            validate_only=validate_only,
        ),
        metadata=actor(by or tenant.owner_id),
    )


def summary(seats: Seats, tenant: Tenant) -> seat_service_pb2.GetSeatSummaryResponse:
    """The seat summary, read by a system call (which also applies a due renewal)."""
    return seats.GetSeatSummary(seat_service_pb2.GetSeatSummaryRequest(account_id=tenant.id))


def pools(seats: Seats, tenant: Tenant) -> dict[PoolKey, resources_pb2.SeatPool]:
    return {(p.hub, p.tier): p for p in summary(seats, tenant).pools}


def pool(seats: Seats, tenant: Tenant, hub: Hub, tier: Tier) -> resources_pb2.SeatPool:
    every = pools(seats, tenant)
    assert (hub, tier) in every, f"no pool {hub_tier(hub, tier)} in {sorted(every)}"
    return every[(hub, tier)]


def counts(p: resources_pb2.SeatPool) -> dict[str, int]:
    """The numbers of a pool, for readable comparisons."""
    return {
        "included": p.included, "purchased": p.purchased, "assigned": p.assigned,
        "available": p.available, "pending_removal": p.pending_removal,
    }


def user(users: Users, tenant: Tenant, user_id: str) -> resources_pb2.User:
    return users.GetUser(user_service_pb2.GetUserRequest(account_id=tenant.id, user_id=user_id)).user


def seat_refs(users: Users, tenant: Tenant, user_id: str) -> set[PoolKey]:
    """The (hub, tier) seats a user holds, from GetUser."""
    return {(s.hub, s.tier) for s in user(users, tenant, user_id).seats}


def assignments(
    seats: Seats, tenant: Tenant, hub: Hub = NO_HUB, tier: Tier = NO_TIER
) -> list[tuple[str, Hub, Tier]]:
    response = seats.ListSeatAssignments(
        seat_service_pb2.ListSeatAssignmentsRequest(account_id=tenant.id, hub=hub, tier=tier, page_size=1000)
    )
    assert not response.next_page_token
    return [(a.user_id, a.hub, a.tier) for a in response.assignments]


def events(seats: Seats, tenant: Tenant, after: int = 0) -> list[resources_pb2.SeatEvent]:
    """Every event of the account after a sequence number, over as many pages as it takes."""
    found: list[resources_pb2.SeatEvent] = []
    token = ""
    while True:
        response = seats.ListSeatEvents(
            seat_service_pb2.ListSeatEventsRequest(
                account_id=tenant.id, after_sequence=after, page_size=1000, page_token=token
            )
        )
        found.extend(response.events)
        token = response.next_page_token
        if not token:
            return found


def last_sequence(seats: Seats, tenant: Tenant) -> int:
    every = events(seats, tenant)
    return every[-1].sequence if every else 0


def event_types(found: Iterable[resources_pb2.SeatEvent]) -> list[str]:
    """Event types without their prefix, e.g. ["SEATS_PURCHASED", "SEAT_ASSIGNED"]."""
    return [resources_pb2.SeatEventType.Name(e.type).removeprefix("SEAT_EVENT_TYPE_") for e in found]


def hub_tier(hub: Hub, tier: Tier) -> str:
    return f"{resources_pb2.Hub.Name(hub)}/{resources_pb2.Tier.Name(tier)}"


def preview(seats: Seats, tenant: Tenant) -> seat_service_pb2.PreviewInvoiceResponse:
    request = seat_service_pb2.PreviewInvoiceRequest(account_id=tenant.id)
    return seats.PreviewInvoice(request, metadata=tenant.as_owner)


def renewal_line(
    invoice: seat_service_pb2.PreviewInvoiceResponse, kind: resources_pb2.ChargeKind.ValueType, hub: Hub, tier: Tier
) -> tuple[int, int]:
    """(quantity, amount in cents) of one next-renewal line; (0, 0) when the line is left out."""
    lines = [ln for ln in invoice.next_renewal_lines if (ln.kind, ln.hub, ln.tier) == (kind, hub, tier)]
    assert len(lines) <= 1, lines
    return (lines[0].quantity, cents(lines[0].amount)) if lines else (0, 0)


# Money (I6) and time.


def cents(money: money_pb2.Money, currency: str = "USD") -> int:
    """The amount in cents, after checking that it is exact money: integer units and whole-cent nanos."""
    assert isinstance(money, money_pb2.Money), type(money)
    assert isinstance(money.units, int) and isinstance(money.nanos, int)
    assert money.currency_code == currency, f"currency {money.currency_code!r} in {money}"
    assert -999_999_999 <= money.nanos <= 999_999_999, money
    assert money.units * money.nanos >= 0, f"units and nanos of different signs: {money}"
    assert money.nanos % 10_000_000 == 0, f"not a whole number of cents: {money}"
    return money.units * 100 + money.nanos // 10_000_000


def prorated(
    quantity: int,
    monthly_cents: int,
    term_months: int,
    term_start: datetime,
    renewal: datetime,
    now: datetime,
) -> int:
    """quantity x monthly price x term months x remaining / term, rounded half-even to the cent."""
    remaining = Fraction((renewal - now) // timedelta(microseconds=1))
    term = Fraction((renewal - term_start) // timedelta(microseconds=1))
    return round(quantity * monthly_cents * term_months * remaining / term)  # Fraction rounds half-even


def to_dt(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def timestamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


def add_months(when: datetime, months: int) -> datetime:
    """Calendar months later, the day clamped to the month's last day."""
    index = when.month - 1 + months
    year, month = when.year + index // 12, index % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def first_of_month(when: datetime) -> datetime:
    """Midnight of the first day of the month: a term start whose renewals need no day clamping."""
    return when.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# Concurrency and the event log (I1..I4).


def run_together(calls: list[Callable[[], T]], timeout: float = 30) -> list[T | grpc.RpcError]:
    """Runs every call on its own thread, released at the same moment; returns results or errors in order."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], T]) -> T | grpc.RpcError:
        barrier.wait(timeout=timeout)
        try:
            return call()
        except grpc.RpcError as err:
            return err

    with ThreadPoolExecutor(max_workers=len(calls)) as executor:
        return list(executor.map(run, calls, timeout=timeout))


def check_event_log(seats: Seats, tenant: Tenant) -> list[resources_pb2.SeatEvent]:
    """I3 and I4 over the account's whole event log (see `replay_log`), and the last event of every
    pool shows what GetSeatSummary shows."""
    log = replay_log(events(seats, tenant))
    check_log_leaves_pools(log, pools(seats, tenant))
    return log.events
