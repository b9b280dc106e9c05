"""Request builders: one function per RPC, with keyword arguments and the rules it serves.
The sync and asyncio clients expose each of them as a method of the same name and
signature, so this is where the client's parameters are documented.

Each builder also takes the per-call options of ``CallOptions`` (``timeout``, ``retry``,
``metadata``), only so that the client methods are typed with them: the client takes them
off before building, and a request never carries them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol, TypedDict, Unpack

from google.protobuf import field_mask_pb2, timestamp_pb2
from google.protobuf.descriptor import EnumDescriptor

from ._retry import RetryPolicy
from .v1 import resources_pb2 as r
from .v1 import seat_service_pb2 as s
from .v1 import user_service_pb2 as u

HubLike = int | str
"""A hub: ``resources_pb2.HUB_SALES``, or a name like ``"sales"``, ``"SALES"``, ``"HUB_SALES"``."""
TierLike = int | str
"""A tier: ``resources_pb2.TIER_PROFESSIONAL``, or a name like ``"professional"``."""


class ActivityReport(Protocol):
    """Anything with the three fields of a report of seat use, such as a dataclass or a named
    tuple of the caller's: ``user_id``, ``hub`` (a HubLike) and ``activity_time`` (a datetime)."""

    @property
    def user_id(self) -> str: ...
    @property
    def hub(self) -> HubLike: ...
    @property
    def activity_time(self) -> datetime: ...


ActivityLike = r.SeatActivity | tuple[str, HubLike, datetime] | ActivityReport
"""A report that a user used their seat of a hub at a time: a ``resources_pb2.SeatActivity``,
a ``(user_id, hub, activity_time)`` tuple such as ``("usr_1", "sales", datetime.now(UTC))``, or
an object with those attributes (``ActivityReport``). A naive datetime is read as UTC."""


class CallOptions(TypedDict, total=False):
    """Options of one call, given as keyword arguments of any RPC method; each left out takes
    the client's setting."""

    timeout: float | None
    """Seconds the whole call may take, its retries and the waits between them included; each
    attempt gets what is left, and none starts after it. None: no deadline."""
    retry: RetryPolicy | None
    """The retry policy of this call; None (or ``ONE_TRY``) makes it once."""
    metadata: Sequence[tuple[str, str]]
    """Extra headers of this call, merged with the client's: a key given here replaces the
    client's header of that key (``authorization``, ``x-seats-actor``, ...)."""


CALL_OPTIONS = frozenset(CallOptions.__annotations__)


class UnknownName(ValueError):
    """A hub or tier name that is none of the enum's: raised while building the request,
    before any call. ``kind`` is ``"hub"`` or ``"tier"``, ``name`` the name given, and
    ``choices`` the names it accepts, lowercase and without the prefix."""

    def __init__(self, kind: str, name: str, choices: Sequence[str]) -> None:
        self.kind, self.name, self.choices = kind, name, tuple(choices)
        super().__init__(f"unknown {kind} {name!r}: use one of {', '.join(self.choices)}")


def _enum_value(kind: str, enum: EnumDescriptor, text: str) -> int:
    prefix = f"{kind.upper()}_"
    name = text.strip().upper()
    value = enum.values_by_name.get(name if name.startswith(prefix) else f"{prefix}{name}")
    if value is None:
        choices = [v.name.removeprefix(prefix).lower() for v in enum.values if v.number != 0]
        raise UnknownName(kind, text, choices)
    return value.number


def to_hub(value: HubLike) -> r.Hub.ValueType:
    """A Hub enum value from a number or a name; UnknownName for a name that is no hub."""
    if isinstance(value, str):
        return r.Hub.ValueType(_enum_value("hub", r.Hub.DESCRIPTOR, value))
    return r.Hub.ValueType(value)


def to_tier(value: TierLike) -> r.Tier.ValueType:
    """A Tier enum value from a number or a name; UnknownName for a name that is no tier."""
    if isinstance(value, str):
        return r.Tier.ValueType(_enum_value("tier", r.Tier.DESCRIPTOR, value))
    return r.Tier.ValueType(value)


def _timestamp(when: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


ACTIVITY_FIELDS = ("user_id", "hub", "activity_time")


def to_activity(report: ActivityLike) -> r.SeatActivity:
    """A SeatActivity from any ``ActivityLike``; a message is copied, so that the request never
    shares it with the caller. An object with the three attributes is read by name, a named tuple
    too (whatever the order of its fields); a plain tuple by position. TypeError for anything
    else, before any call."""
    if isinstance(report, r.SeatActivity):
        copy = r.SeatActivity()
        copy.CopyFrom(report)
        return copy
    if all(hasattr(report, name) for name in ACTIVITY_FIELDS):
        user_id, hub, when = (getattr(report, name) for name in ACTIVITY_FIELDS)
    elif isinstance(report, tuple) and len(report) == 3:
        user_id, hub, when = report
    else:
        raise TypeError(
            "an activity is a SeatActivity, a (user_id, hub, activity_time) tuple or an object with those "
            f"attributes, not {report!r}"
        )
    if not isinstance(when, datetime):
        raise TypeError(f"the activity_time of a report is a datetime, not {when!r}")
    return r.SeatActivity(user_id=user_id, hub=to_hub(hub), activity_time=_timestamp(when))


# ---- SeatService ----------------------------------------------------------------------------


def create_account(
    display_name: str,
    owner_email: str,
    subscriptions: Iterable[tuple[HubLike, TierLike, int]],
    *,
    term_months: int = 12,
    term_start: datetime | None = None,
    owner_display_name: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.CreateAccountRequest:
    """Creates an account with its pools and a super admin owner (a trusted system call: make
    it from a client without an actor). ``subscriptions`` are ``(hub, tier, purchased_seats)``;
    ``term_months`` is 1 or 12; ``term_start`` defaults to now and may lie in the past."""
    request = s.CreateAccountRequest(
        display_name=display_name,
        owner_email=owner_email,
        owner_display_name=owner_display_name,
        subscriptions=[r.Subscription(hub=to_hub(h), tier=to_tier(t), purchased_seats=n) for h, t, n in subscriptions],
        term_months=term_months,
        request_id=request_id,
    )
    if term_start is not None:
        request.term_start.CopyFrom(_timestamp(term_start))
    return request


def get_account(account_id: str, **options: Unpack[CallOptions]) -> s.GetAccountRequest:
    """Returns the account with its subscriptions and term dates."""
    return s.GetAccountRequest(account_id=account_id)


def get_seat_summary(account_id: str, **options: Unpack[CallOptions]) -> s.GetSeatSummaryRequest:
    """Returns every pool's included, purchased, assigned, available and pending counts (S17)."""
    return s.GetSeatSummaryRequest(account_id=account_id)


def purchase_seats(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    quantity: int,
    *,
    validate_only: bool = False,
    etag: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.PurchaseSeatsRequest:
    """Buys seats; they count at once and are charged pro rata for the rest of the term (S3).
    Needs edit billing (S7). ``validate_only`` prices the purchase without making it; ``etag``
    (the pool's, as read) makes it conditional: EtagMismatch when the pool changed since."""
    return s.PurchaseSeatsRequest(
        account_id=account_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        quantity=quantity,
        validate_only=validate_only,
        etag=etag,
        request_id=request_id,
    )


def schedule_seat_removal(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    quantity: int,
    *,
    etag: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.ScheduleSeatRemovalRequest:
    """Schedules unassigned purchased seats to leave at the renewal date (S4, S5); raises
    SeatsAssigned when fewer are unassigned (S8). Needs edit billing. ``etag`` as for purchases."""
    return s.ScheduleSeatRemovalRequest(
        account_id=account_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        quantity=quantity,
        etag=etag,
        request_id=request_id,
    )


def cancel_seat_removal(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    quantity: int,
    *,
    etag: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.CancelSeatRemovalRequest:
    """Keeps seats that were pending removal. Needs edit billing. ``etag`` as for purchases."""
    return s.CancelSeatRemovalRequest(
        account_id=account_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        quantity=quantity,
        etag=etag,
        request_id=request_id,
    )


def assign_seat(
    account_id: str,
    user_id: str,
    hub: HubLike,
    tier: TierLike,
    *,
    purchase_if_needed: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.AssignSeatRequest:
    """Gives a user a seat (S13): the same seat again changes nothing, another tier of the hub
    moves it, a seat pending removal is taken only when no other is free (S11). Raises
    NoSeatAvailable on a full pool unless ``purchase_if_needed`` (S14, needs edit billing).
    Needs account access (S12)."""
    return s.AssignSeatRequest(
        account_id=account_id,
        user_id=user_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        purchase_if_needed=purchase_if_needed,
        request_id=request_id,
    )


def unassign_seat(
    account_id: str, user_id: str, hub: HubLike, *, request_id: str = "", **options: Unpack[CallOptions]
) -> s.UnassignSeatRequest:
    """Takes a user's seat of a hub back into its pool, still billed until renewal (S18)."""
    return s.UnassignSeatRequest(account_id=account_id, user_id=user_id, hub=to_hub(hub), request_id=request_id)


def batch_update_seat_assignments(
    account_id: str,
    changes: Iterable[tuple[str, HubLike, TierLike | None]],
    *,
    validate_only: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.BatchUpdateSeatAssignmentsRequest:
    """Saves ``(user_id, hub, tier)`` changes all or nothing (S17); a tier of None unassigns."""
    return s.BatchUpdateSeatAssignmentsRequest(
        account_id=account_id,
        changes=[
            s.SeatChange(user_id=user_id, hub=to_hub(h), tier=to_tier(t) if t is not None else r.TIER_UNSPECIFIED)
            for user_id, h, t in changes
        ],
        validate_only=validate_only,
        request_id=request_id,
    )


def list_seat_assignments(
    account_id: str,
    *,
    hub: HubLike | None = None,
    tier: TierLike | None = None,
    idle_since: datetime | None = None,
    page_size: int = 0,
    page_token: str = "",
    **options: Unpack[CallOptions],
) -> s.ListSeatAssignmentsRequest:
    """One page of seat assignments, optionally of one hub and tier. ``idle_since`` keeps only
    the seats not used since then: their last activity and their assignment (a grant, or a move
    to another tier) are both before it; ``now - timedelta(days=30)`` lists the seats idle for
    30 days."""
    request = s.ListSeatAssignmentsRequest(
        account_id=account_id,
        hub=to_hub(hub) if hub is not None else r.HUB_UNSPECIFIED,
        tier=to_tier(tier) if tier is not None else r.TIER_UNSPECIFIED,
        page_size=page_size,
        page_token=page_token,
    )
    if idle_since is not None:
        request.idle_since.CopyFrom(_timestamp(idle_since))
    return request


def check_seats(
    account_id: str, hub: HubLike, user_ids: Sequence[str], **options: Unpack[CallOptions]
) -> s.CheckSeatsRequest:
    """The tier each of ``user_ids`` (1 to 1000) holds in ``hub``, in request order:
    ``TIER_UNSPECIFIED`` for a user without a seat of that hub (S13). The reply's ``sequence``
    names the account's last event the answer reflects."""
    return s.CheckSeatsRequest(account_id=account_id, hub=to_hub(hub), user_ids=list(user_ids))


def upgrade_subscription(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    *,
    purchased_seats: int = 0,
    assign_user_ids: Sequence[str] = (),
    validate_only: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.UpgradeSubscriptionRequest:
    """Moves a hub to a higher tier, buying ``purchased_seats`` and giving the listed users a
    seat; from TIER_FREE the free seats go at once (S6). Needs edit billing."""
    return s.UpgradeSubscriptionRequest(
        account_id=account_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        purchased_seats=purchased_seats,
        assign_user_ids=list(assign_user_ids),
        validate_only=validate_only,
        request_id=request_id,
    )


SeatQuantityLike = tuple[HubLike, TierLike, int]
"""A number of seats of a pool, e.g. ``("sales", "professional", 2)``."""


def _quantities(items: Iterable[SeatQuantityLike]) -> list[r.SeatQuantity]:
    return [r.SeatQuantity(hub=to_hub(hub), tier=to_tier(tier), quantity=quantity) for hub, tier, quantity in items]


def preview_invoice(
    account_id: str,
    *,
    purchases: Iterable[SeatQuantityLike] = (),
    removals: Iterable[SeatQuantityLike] = (),
    **options: Unpack[CallOptions],
) -> s.PreviewInvoiceRequest:
    """This term's charges so far and the next renewal's lines (S9). With ``purchases`` and
    ``removals`` (e.g. ``[("sales", "professional", 2)]``), what they would charge now
    (``proposed_charges``, priced as PurchaseSeats would) and the next renewal after them; nothing
    is bought or scheduled."""
    return s.PreviewInvoiceRequest(
        account_id=account_id, purchases=_quantities(purchases), removals=_quantities(removals)
    )


def list_invoices(
    account_id: str, *, page_size: int = 0, page_token: str = "", **options: Unpack[CallOptions]
) -> s.ListInvoicesRequest:
    """One page of the account's invoices (one per ended term), oldest first, without lines."""
    return s.ListInvoicesRequest(account_id=account_id, page_size=page_size, page_token=page_token)


def get_invoice(account_id: str, invoice_id: str, **options: Unpack[CallOptions]) -> s.GetInvoiceRequest:
    """An invoice with its lines: every charge of its term."""
    return s.GetInvoiceRequest(account_id=account_id, invoice_id=invoice_id)


def record_seat_activity(
    account_id: str, activities: Iterable[ActivityLike], **options: Unpack[CallOptions]
) -> s.RecordSeatActivityRequest:
    """Reports that users used their seats (1 to 1000 reports; each an ``ActivityLike``, e.g.
    ``("usr_1", "sales", when)``), so that the idle-seat policy of ``update_seat_policy`` counts
    them as active. Each seat's last activity moves to the latest time reported, never back; the
    reply counts the seats ``recorded`` and the reports ``skipped`` (no seat of that hub, or an
    older time). A time more than 5 minutes ahead of the server's clock is refused.

    It has no request id: reporting the same use twice records it once, so the client retries
    it like a read (``_retry.safe_to_retry``). Needs account access, or a system call."""
    return s.RecordSeatActivityRequest(account_id=account_id, activities=[to_activity(a) for a in activities])


def update_seat_policy(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    idle_reclaim_days: int | None = None,
    *,
    auto_approve_requests: bool | None = None,
    validate_only: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.UpdateSeatPolicyRequest:
    """Sets a pool's policy: seats idle ``idle_reclaim_days`` days (7 or more; 0 turns it off)
    are unassigned by the renewal sweep, each with a SEAT_RECLAIMED event; they stay in the
    pool and billed (S18). ``auto_approve_requests`` grants seat requests at once while a seat
    is free and nobody waits. Only what is given changes (the update mask names it); giving
    neither is a ValueError. The reply holds the pool with its policy and the seats idle that
    long now, which the next sweep would reclaim; ``validate_only`` only answers that, changing
    nothing, to see what a policy would do before setting it. Needs account access."""
    paths = [
        name
        for name, value in (("idle_reclaim_days", idle_reclaim_days), ("auto_approve_requests", auto_approve_requests))
        if value is not None
    ]
    if not paths:
        raise ValueError("give idle_reclaim_days, auto_approve_requests, or both")
    return s.UpdateSeatPolicyRequest(
        account_id=account_id,
        hub=to_hub(hub),
        tier=to_tier(tier),
        idle_reclaim_days=idle_reclaim_days or 0,
        auto_approve_requests=bool(auto_approve_requests),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
        validate_only=validate_only,
        request_id=request_id,
    )


def to_request_state(value: int | str) -> r.SeatRequestState.ValueType:
    """A SeatRequestState from a number or a name such as "waiting"."""
    if isinstance(value, str):
        return r.SeatRequestState.ValueType(
            _enum_value("seat_request_state", r.SeatRequestState.DESCRIPTOR, value)
        )
    return r.SeatRequestState.ValueType(value)


def request_seat(
    account_id: str,
    hub: HubLike,
    tier: TierLike,
    *,
    user_id: str = "",
    reason: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.RequestSeatRequest:
    """Asks for a seat of a hub and tier, for the actor (no permission needed) or, with
    ``user_id``, for another user (account access, or a system call). Pending until an
    administrator decides, or granted at once when the pool approves automatically and a seat is
    free. ALREADY_EXISTS (SEAT_REQUEST_EXISTS) when the user has an open request for that hub."""
    return s.RequestSeatRequest(
        account_id=account_id, user_id=user_id, hub=to_hub(hub), tier=to_tier(tier), reason=reason,
        request_id=request_id,
    )  # fmt: skip


def list_seat_requests(
    account_id: str,
    *,
    state: int | str | None = None,
    hub: HubLike | None = None,
    user_id: str = "",
    page_size: int = 0,
    page_token: str = "",
    **options: Unpack[CallOptions],
) -> s.ListSeatRequestsRequest:
    """One page of the account's seat requests, oldest first, optionally in one state (e.g.
    "waiting"), of one hub or of one user. Everyone's needs account access; a user may list
    their own (``user_id`` = the actor)."""
    return s.ListSeatRequestsRequest(
        account_id=account_id,
        state=to_request_state(state) if state is not None else r.SEAT_REQUEST_STATE_UNSPECIFIED,
        hub=to_hub(hub) if hub is not None else r.HUB_UNSPECIFIED,
        user_id=user_id,
        page_size=page_size,
        page_token=page_token,
    )


def approve_seat_request(
    account_id: str,
    seat_request_id: str,
    *,
    purchase_if_needed: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> s.ApproveSeatRequestRequest:
    """Approves a pending request: the seat is given at once if one is free (or pending removal,
    S11); else bought with ``purchase_if_needed`` (S14, edit billing); else the request waits,
    and is granted, oldest first, in the call that frees a seat of its pool. Account access."""
    return s.ApproveSeatRequestRequest(
        account_id=account_id, seat_request_id=seat_request_id, purchase_if_needed=purchase_if_needed,
        request_id=request_id,
    )  # fmt: skip


def deny_seat_request(
    account_id: str, seat_request_id: str, *, request_id: str = "", **options: Unpack[CallOptions]
) -> s.DenySeatRequestRequest:
    """Denies a pending or waiting request. Account access."""
    return s.DenySeatRequestRequest(account_id=account_id, seat_request_id=seat_request_id, request_id=request_id)


def list_seat_events(
    account_id: str,
    *,
    after_sequence: int = 0,
    page_size: int = 0,
    page_token: str = "",
    **options: Unpack[CallOptions],
) -> s.ListSeatEventsRequest:
    """One page of the account's ordered event log (I4), after a sequence."""
    return s.ListSeatEventsRequest(
        account_id=account_id, after_sequence=after_sequence, page_size=page_size, page_token=page_token
    )


# ---- UserService ----------------------------------------------------------------------------


def create_user(
    account_id: str,
    email: str,
    *,
    display_name: str = "",
    super_admin: bool = False,
    edit_billing: bool = False,
    account_access: bool = False,
    seats: Iterable[tuple[HubLike, TierLike]] = (),
    purchase_if_needed: bool = False,
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> u.CreateUserRequest:
    """Creates a user; ``seats`` are ``(hub, tier)`` pairs given in the same call, at most one
    per hub (S15, S16). Raises EmailTaken for an email in use. Needs account access."""
    return u.CreateUserRequest(
        account_id=account_id,
        email=email,
        display_name=display_name,
        permissions=r.Permissions(super_admin=super_admin, edit_billing=edit_billing, account_access=account_access),
        seats=[r.SeatRef(hub=to_hub(h), tier=to_tier(t)) for h, t in seats],
        purchase_if_needed=purchase_if_needed,
        request_id=request_id,
    )


def get_user(account_id: str, user_id: str, **options: Unpack[CallOptions]) -> u.GetUserRequest:
    """Returns a user with its seats and etag."""
    return u.GetUserRequest(account_id=account_id, user_id=user_id)


def list_users(
    account_id: str,
    *,
    hub: HubLike | None = None,
    page_size: int = 0,
    page_token: str = "",
    **options: Unpack[CallOptions],
) -> u.ListUsersRequest:
    """One page of users, optionally only those holding a seat of a hub."""
    return u.ListUsersRequest(
        account_id=account_id,
        hub=to_hub(hub) if hub is not None else r.HUB_UNSPECIFIED,
        page_size=page_size,
        page_token=page_token,
    )


def update_user(
    account_id: str,
    user_id: str,
    *,
    email: str | None = None,
    display_name: str | None = None,
    super_admin: bool | None = None,
    edit_billing: bool | None = None,
    account_access: bool | None = None,
    etag: str = "",
    request_id: str = "",
    **options: Unpack[CallOptions],
) -> u.UpdateUserRequest:
    """Changes only the fields given (an update mask of them). With ``etag``, raises
    EtagMismatch when the user changed since it was read (AIP-154)."""
    user = r.User(account_id=account_id, user_id=user_id)
    paths: list[str] = []
    if email is not None:
        user.email, paths = email, [*paths, "email"]
    if display_name is not None:
        user.display_name, paths = display_name, [*paths, "display_name"]
    for name, value in (
        ("super_admin", super_admin),
        ("edit_billing", edit_billing),
        ("account_access", account_access),
    ):
        if value is not None:
            setattr(user.permissions, name, value)
            paths.append(f"permissions.{name}")
    if not paths:
        raise ValueError("update_user needs at least one field to change")
    return u.UpdateUserRequest(
        user=user, update_mask=field_mask_pb2.FieldMask(paths=paths), etag=etag, request_id=request_id
    )


def delete_user(
    account_id: str, user_id: str, *, etag: str = "", request_id: str = "", **options: Unpack[CallOptions]
) -> u.DeleteUserRequest:
    """Deletes a user; raises UserHoldsSeats while it holds a seat (S10)."""
    return u.DeleteUserRequest(account_id=account_id, user_id=user_id, etag=etag, request_id=request_id)
