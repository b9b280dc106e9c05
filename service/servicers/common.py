"""What every servicer shares: the acting user, enum parsing, error mapping, request-id
replay (I5) and converters between domain values and seats.v1 messages."""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
import peewee as pw
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from google.type import money_pb2
from seats.v1 import resources_pb2 as r

from ..auth import ACTOR_HEADER
from ..clock import Clock
from ..domain.errors import SeatError, concurrent_change, invalid, unavailable
from ..domain.model import (
    Assignment,
    Call,
    Charge,
    Event,
    Hub,
    Invoice,
    PoolCounts,
    PoolView,
    SeatRequest,
    Tier,
    User,
)
from ..domain.ports import SeatStore
from ..domain.requests import SYSTEM_SCOPE as SYSTEM_SCOPE  # the scope of calls that name no account yet
from ..domain.requests import run_once
from ..domain.seats import AccountView, check_id
from ..errors import internal_status, to_status
from ..store.store import Fault, fault_of

log = logging.getLogger("seats.rpc")
M = TypeVar("M", bound=Message)
MAX_REQUEST_ID = 128


def call_of(context: grpc.ServicerContext, request_id: str = "") -> Call:
    actor = None
    for key, value in context.invocation_metadata():
        if key == ACTOR_HEADER:
            actor = value if isinstance(value, str) else value.decode()
    if actor is not None and not actor.strip():
        raise invalid(ACTOR_HEADER, "names no user")
    if actor is not None and len(actor) > MAX_REQUEST_ID:
        raise invalid(ACTOR_HEADER, f"at most {MAX_REQUEST_ID} characters")
    if len(request_id) > MAX_REQUEST_ID:
        raise invalid("request_id", f"at most {MAX_REQUEST_ID} characters")
    if any(ord(ch) < 32 for ch in request_id):
        raise invalid("request_id", "must not contain control characters")
    return Call(actor=actor, request_id=request_id)


def _fail(context: grpc.ServicerContext, exc: Exception, method: str) -> None:
    """Ends the call with the status for exc: a domain refusal with its details; a store
    failure as ABORTED (a lost race), INVALID_ARGUMENT (values the database cannot take: the
    caller's fault, never retried) or UNAVAILABLE (only a lost connection, a lock or a timeout);
    anything else as a logged INTERNAL."""
    fault = fault_of(exc) if isinstance(exc, pw.DatabaseError | pw.InterfaceError) else Fault.BUG
    if isinstance(exc, SeatError):
        error = exc
    elif isinstance(exc, pw.IntegrityError):
        error = concurrent_change()
    elif fault is Fault.INPUT:  # input checks should have refused it first
        log.warning("database refused a value of the request in %s", method, extra={"error": str(exc)})
        error = invalid("request", "holds a value or a list larger than the service takes")
    elif fault is Fault.OUTAGE:
        log.warning("database error", extra={"error": str(exc)})
        error = unavailable()
    else:
        log.exception("internal error in %s", method, exc_info=exc)
        context.abort_with_status(internal_status())
        return
    context.abort_with_status(to_status(error))


F = TypeVar("F", bound=Callable[..., Any])


def rpc(method: F) -> F:
    """Turns domain refusals into statuses with details, and anything else into a logged
    INTERNAL: bad input never leaves as UNKNOWN."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except Exception as exc:
            _fail(context, exc, method.__name__)
            raise  # not reached: abort_with_status raises

    return wrapper  # type: ignore[return-value]


def stream_rpc(method: F) -> F:
    """rpc() for server-streaming handlers (generators)."""

    @functools.wraps(method)
    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            yield from method(self, request, context)
        except Exception as exc:
            _fail(context, exc, method.__name__)
            raise

    return wrapper  # type: ignore[return-value]


# ---- enums ----------------------------------------------------------------------------------


def hub_of(value: int, field: str, *, optional: bool = False) -> Hub | None:
    if value == 0 and optional:
        return None
    if value == 0:
        raise invalid(field, "is required (HUB_SALES or HUB_SERVICE)")
    try:
        return Hub(value)
    except ValueError:
        raise invalid(field, f"unknown hub {value}") from None


def tier_of(value: int, field: str, *, optional: bool = False) -> Tier | None:
    if value == 0 and optional:
        return None
    if value == 0:
        raise invalid(field, "is required (TIER_FREE, TIER_STARTER, TIER_PROFESSIONAL or TIER_ENTERPRISE)")
    try:
        return Tier(value)
    except ValueError:
        raise invalid(field, f"unknown tier {value}") from None


def req_hub(value: int, field: str = "hub") -> Hub:
    hub = hub_of(value, field)
    assert hub is not None
    return hub


def req_tier(value: int, field: str = "tier") -> Tier:
    tier = tier_of(value, field)
    assert tier is not None
    return tier


# ---- request ids (I5) -------------------------------------------------------------------


class Replay:
    """Runs a mutating call once per request id (AIP-155, I5): the call's unit of work looks
    the id up under the account lock, after the actor check; a retry with the same id and
    payload gets the first answer back (its response, or the rule refusal it met), from the
    record kept in the same transaction as the effect; the same id with another payload is
    refused (REQUEST_ID_REUSED). See service/domain/requests.py."""

    def __init__(self, store: SeatStore, clock: Clock, window: timedelta) -> None:
        self.store = store
        self.clock = clock
        self.window = window

    def run(
        self,
        call: Call,
        scope: str,
        method: str,
        request: Message,
        response_type: type[M],
        compute: Callable[[], M],
        *,
        scope_field: str = "account_id",
    ) -> M:
        """scope is the account the call acts on (named by scope_field), or SYSTEM_SCOPE."""
        if not call.request_id:
            return compute()
        if scope != SYSTEM_SCOPE:
            check_id(scope_field, scope)  # before the id reaches the database
        payload = type(request)()
        payload.CopyFrom(request)
        payload.ClearField("request_id")
        digest = hashlib.sha256()
        for part in (method.encode(), (call.actor or "").encode(), payload.SerializeToString(deterministic=True)):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
        return run_once(
            self.store,
            self.clock,
            self.window,
            scope,
            call.request_id,
            digest.hexdigest(),
            compute,
            encode=lambda response: response.SerializeToString(),
            decode=response_type.FromString,
        )


# ---- replies built once -------------------------------------------------------------------


R = TypeVar("R")


class Replies:
    """Replies built once per read result: the use cases hand out the same object for the same
    account version (see SeatDomain._at_version), so the same object means the same reply."""

    MAX = 4096

    def __init__(self) -> None:
        self._kept: dict[tuple[str, int], tuple[object, Any]] = {}

    def get(self, name: str, result: object, build: Callable[[], R]) -> R:
        slot = (name, id(result))
        kept = self._kept.get(slot)
        if kept is not None and kept[0] is result:
            return kept[1]  # type: ignore[no-any-return]
        reply = build()
        if len(self._kept) >= self.MAX:
            self._kept.clear()
        self._kept[slot] = (result, reply)  # holding result keeps its id from being reused
        return reply


# ---- converters ---------------------------------------------------------------------------


def ts(t: datetime) -> timestamp_pb2.Timestamp:
    micros = int(t.timestamp()) * 1_000_000 + t.microsecond
    return timestamp_pb2.Timestamp(seconds=micros // 1_000_000, nanos=(micros % 1_000_000) * 1000)


def from_ts(t: timestamp_pb2.Timestamp, field: str) -> datetime:
    try:
        return t.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        raise invalid(field, "is not a valid timestamp (years 1 to 9999, nanos below one second)") from None


TIMESTAMP_SECONDS = (-62_135_596_800, 253_402_300_799)  # 0001-01-01 to 9999-12-31, as protobuf allows


def micros_of(t: timestamp_pb2.Timestamp, field: str) -> int:
    """A Timestamp as microseconds since the epoch, without making a datetime (a call may carry
    a thousand); the same range as from_ts."""
    seconds, nanos = t.seconds, t.nanos
    if not (TIMESTAMP_SECONDS[0] <= seconds <= TIMESTAMP_SECONDS[1] and 0 <= nanos < 1_000_000_000):
        raise invalid(field, "is not a valid timestamp (years 1 to 9999, nanos below one second)")
    return seconds * 1_000_000 + nanos // 1000


def money(minor: int, currency: str, minor_per_unit: int = 100) -> money_pb2.Money:
    units, rest = divmod(minor, minor_per_unit)
    return money_pb2.Money(currency_code=currency, units=units, nanos=rest * (1_000_000_000 // minor_per_unit))


def pool_pb(p: PoolView, minor_per_unit: int = 100) -> r.SeatPool:
    msg = r.SeatPool(
        hub=r.Hub.ValueType(p.hub),
        tier=r.Tier.ValueType(p.tier),
        included=p.included,
        purchased=p.purchased,
        assigned=p.assigned,
        available=p.available,
        pending_removal=p.pending_removal,
        unit_price=money(p.unit_price_minor, p.currency_code, minor_per_unit),
        etag=p.etag,
        idle_reclaim_days=p.idle_reclaim_days,
        waiting_requests=p.waiting_requests,
        auto_approve_requests=p.auto_approve_requests,
    )
    if p.removal_effective_time is not None:
        msg.removal_effective_time.CopyFrom(ts(p.removal_effective_time))
    return msg


def account_pb(view: AccountView) -> r.Account:
    a = view.account
    return r.Account(
        account_id=a.account_id,
        display_name=a.display_name,
        owner_user_id=a.owner_user_id,
        term_start=ts(a.term_start),
        renewal_time=ts(a.renewal_time),
        term_months=a.term_months,
        subscriptions=[
            r.Subscription(
                hub=r.Hub.ValueType(p.hub),
                tier=r.Tier.ValueType(p.tier),
                purchased_seats=p.purchased,
                included_seats=p.included,
            )
            for p in view.pools
        ],
        currency_code=a.currency_code,
        create_time=ts(a.create_time),
    )


def charge_pb(c: Charge, minor_per_unit: int = 100, *, saved: bool = True) -> r.Charge:
    """A charge; one that a validate_only call priced but did not save has no id."""
    return r.Charge(
        charge_id=c.charge_id if saved else "",
        kind=r.ChargeKind.ValueType(c.kind),
        hub=r.Hub.ValueType(c.hub),
        tier=r.Tier.ValueType(c.tier),
        quantity=c.quantity,
        unit_price=money(c.unit_price_minor, c.currency_code, minor_per_unit),
        amount=money(c.amount_minor, c.currency_code, minor_per_unit),
        period_start=ts(c.period_start),
        period_end=ts(c.period_end),
        charge_time=ts(c.charge_time),
        description=c.description,
    )


def counts_pb(c: PoolCounts) -> r.PoolCounts:
    return r.PoolCounts(
        included=c.included, purchased=c.purchased, assigned=c.assigned, pending_removal=c.pending_removal
    )


def event_pb(e: Event) -> r.SeatEvent:
    """An event; before and after are set only for an event about a pool."""
    message = r.SeatEvent(
        sequence=e.sequence,
        type=r.SeatEventType.ValueType(e.type),
        actor=e.actor,
        event_time=ts(e.time),
        request_id=e.request_id,
        user_id=e.user_id,
        hub=r.Hub.ValueType(e.hub),
        tier=r.Tier.ValueType(e.tier),
        previous_tier=r.Tier.ValueType(e.previous_tier),
        quantity=e.quantity,
        seat_request_id=e.seat_request_id,
        invoice_id=e.invoice_id,
    )
    if e.hub:
        message.before.CopyFrom(counts_pb(e.before))
        message.after.CopyFrom(counts_pb(e.after))
    return message


def assignment_pb(a: Assignment) -> r.SeatAssignment:
    message = r.SeatAssignment(
        user_id=a.user_id, hub=r.Hub.ValueType(a.hub), tier=r.Tier.ValueType(a.tier), assign_time=ts(a.assign_time)
    )
    if a.last_activity_time is not None:
        message.last_activity_time.CopyFrom(ts(a.last_activity_time))
    return message


def invoice_pb(i: Invoice, minor_per_unit: int = 100) -> r.Invoice:
    return r.Invoice(
        invoice_id=i.invoice_id,
        number=i.number,
        period_start=ts(i.period_start),
        period_end=ts(i.period_end),
        issue_time=ts(i.issue_time),
        lines=[charge_pb(c, minor_per_unit) for c in i.lines],
        line_count=i.line_count,
        total=money(i.total_minor, i.currency_code, minor_per_unit),
    )


def seat_request_pb(q: SeatRequest) -> r.SeatRequest:
    return r.SeatRequest(
        seat_request_id=q.seat_request_id,
        user_id=q.user_id,
        hub=r.Hub.ValueType(q.hub),
        tier=r.Tier.ValueType(q.tier),
        state=r.SeatRequestState.ValueType(q.state),
        create_time=ts(q.create_time),
        update_time=ts(q.update_time),
        requested_by=q.requested_by,
        decided_by=q.decided_by,
        reason=q.reason,
    )


def user_pb(u: User) -> r.User:
    p = u.permissions
    return r.User(
        user_id=u.user_id,
        account_id=u.account_id,
        email=u.email,
        display_name=u.display_name,
        permissions=r.Permissions(
            super_admin=p.super_admin, edit_billing=p.edit_billing, account_access=p.account_access
        ),
        seats=[r.SeatRef(hub=r.Hub.ValueType(s.hub), tier=r.Tier.ValueType(s.tier)) for s in u.seats],
        etag=u.etag,
        create_time=ts(u.create_time),
        update_time=ts(u.update_time),
    )
