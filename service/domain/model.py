"""Values of the seat domain. Enum numbers match the seats.v1 contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Generic, TypeVar

T = TypeVar("T")


class Hub(IntEnum):
    SALES = 1
    SERVICE = 2


class Tier(IntEnum):
    FREE = 1
    STARTER = 2
    PROFESSIONAL = 3
    ENTERPRISE = 4


class Permission(IntEnum):
    EDIT_BILLING = 1
    ACCOUNT_ACCESS = 2
    SUPER_ADMIN = 3


PERMISSION_NAMES = {
    Permission.EDIT_BILLING: "edit_billing",
    Permission.ACCOUNT_ACCESS: "account_access",
    Permission.SUPER_ADMIN: "super_admin",
}


class EventType(IntEnum):
    ACCOUNT_CREATED = 1
    POOL_OPENED = 2
    POOL_CLOSED = 3
    SEATS_PURCHASED = 4
    SEAT_REMOVAL_SCHEDULED = 5
    SEAT_REMOVAL_CANCELLED = 6
    SEATS_REMOVED = 7
    TERM_RENEWED = 8
    SEAT_ASSIGNED = 9
    SEAT_UNASSIGNED = 10
    USER_CREATED = 11
    USER_UPDATED = 12
    USER_DELETED = 13
    SEAT_RECLAIMED = 14
    SEAT_POLICY_UPDATED = 15
    SEAT_REQUESTED = 16
    SEAT_REQUEST_WAITING = 17
    SEAT_REQUEST_DENIED = 18
    INVOICE_ISSUED = 19


class RequestState(IntEnum):
    """Where a seat request stands: open (pending, waiting) or closed (the rest)."""

    PENDING = 1
    WAITING = 2
    GRANTED = 3
    DENIED = 4
    CANCELLED = 5

    @property
    def open(self) -> bool:
        return self in (RequestState.PENDING, RequestState.WAITING)


class ChargeKind(IntEnum):
    PLAN = 1
    SEATS = 2
    PRORATED_SEATS = 3
    PRORATED_PLAN = 4


class ChangeOutcome(IntEnum):
    UNCHANGED = 1
    ASSIGNED = 2
    MOVED = 3
    UNASSIGNED = 4


SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Call:
    """Who is calling, and the idempotency key of the call (AIP-155)."""

    actor: str | None = None
    request_id: str = ""

    @property
    def actor_label(self) -> str:
        return self.actor or SYSTEM_ACTOR


@dataclass
class Account:
    account_id: str
    display_name: str
    owner_user_id: str
    currency_code: str
    term_months: int
    term_anchor: datetime
    term_start: datetime
    renewal_time: datetime
    last_sequence: int
    create_time: datetime


@dataclass
class Pool:
    """One seat pool. Mutable inside a unit of work; saved by the store when dirty."""

    hub: Hub
    tier: Tier
    included: int
    purchased: int
    assigned: int
    pending_removal: int
    version: int = 0
    idle_reclaim_days: int = 0  # the pool's policy: 0, never; else the sweep unassigns seats idle that long
    waiting_requests: int = 0  # approved seat requests waiting for a seat; while above 0, available is 0
    auto_approve_requests: bool = False  # the pool's policy: grant requests at once while seats are free
    dirty: bool = field(default=False, compare=False)
    new: bool = field(default=False, compare=False)

    def touch(self) -> None:
        """Marks a change: saved with the unit, and a new etag (AIP-154)."""
        self.version += 1
        self.dirty = True

    @property
    def etag(self) -> str:
        return f"{self.version}"

    @property
    def capacity(self) -> int:
        return self.included + self.purchased

    @property
    def available(self) -> int:
        """Seats free to assign without cancelling a pending removal."""
        return self.capacity - self.assigned - self.pending_removal

    @property
    def removable(self) -> int:
        """Unassigned purchased seats that may still be scheduled for removal (I2, S8)."""
        return self.purchased - max(0, self.assigned - self.included) - self.pending_removal

    def counts(self) -> PoolCounts:
        return PoolCounts(self.included, self.purchased, self.assigned, self.pending_removal)


@dataclass(frozen=True)
class PoolCounts:
    included: int = 0
    purchased: int = 0
    assigned: int = 0
    pending_removal: int = 0


@dataclass(frozen=True)
class Permissions:
    super_admin: bool = False
    edit_billing: bool = False
    account_access: bool = False

    def has(self, permission: Permission) -> bool:
        """A super admin holds every permission (S19)."""
        if self.super_admin:
            return True
        if permission is Permission.EDIT_BILLING:
            return self.edit_billing
        if permission is Permission.ACCOUNT_ACCESS:
            return self.account_access
        return False


@dataclass(frozen=True)
class SeatRef:
    hub: Hub
    tier: Tier


@dataclass(frozen=True)
class User:
    user_id: str
    account_id: str
    email: str
    display_name: str
    permissions: Permissions
    version: int
    create_time: datetime
    update_time: datetime
    seats: tuple[SeatRef, ...] = ()

    @property
    def etag(self) -> str:
        return f"{self.version}"


@dataclass(frozen=True)
class Assignment:
    user_id: str
    hub: Hub
    tier: Tier
    assign_time: datetime
    last_activity_time: datetime | None = None
    """Set only where a call reads it (lists, idle seats): activity moves no account version,
    so copies kept in memory do not carry it."""

    @property
    def ref(self) -> SeatRef:
        return SeatRef(self.hub, self.tier)


@dataclass(frozen=True)
class Charge:
    charge_id: str
    kind: ChargeKind
    hub: Hub
    tier: Tier
    quantity: int
    unit_price_minor: int
    amount_minor: int
    currency_code: str
    period_start: datetime
    period_end: datetime
    charge_time: datetime
    description: str


@dataclass(frozen=True)
class Invoice:
    """The bill of one ended term: every charge of the term (its lines), issued when the renewal
    was applied. number counts an account's invoices from 1, in term order."""

    invoice_id: str
    number: int
    period_start: datetime
    period_end: datetime
    issue_time: datetime
    currency_code: str
    total_minor: int
    line_count: int
    lines: tuple[Charge, ...] = ()


@dataclass(frozen=True)
class Event:
    """One entry of an account's log (I4); sequence is given by the store on append."""

    type: EventType
    actor: str
    time: datetime
    request_id: str = ""
    user_id: str = ""
    hub: int = 0
    tier: int = 0
    previous_tier: int = 0
    quantity: int = 0
    before: PoolCounts = PoolCounts()
    after: PoolCounts = PoolCounts()
    sequence: int = 0
    seat_request_id: str = ""
    invoice_id: str = ""


@dataclass(frozen=True)
class SeatRequest:
    """A user's request for a seat of one hub and tier. number orders an account's requests:
    the waiting ones are granted in it."""

    seat_request_id: str
    number: int
    user_id: str
    hub: Hub
    tier: Tier
    state: RequestState
    create_time: datetime
    update_time: datetime
    requested_by: str
    decided_by: str = ""
    reason: str = ""


@dataclass(frozen=True)
class PoolView:
    """A pool as shown to callers, with its price and removal date."""

    hub: Hub
    tier: Tier
    included: int
    purchased: int
    assigned: int
    available: int
    pending_removal: int
    removal_effective_time: datetime | None
    unit_price_minor: int
    currency_code: str
    etag: str
    idle_reclaim_days: int = 0
    waiting_requests: int = 0
    auto_approve_requests: bool = False


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next_key: str | None
