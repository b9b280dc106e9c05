"""Typed pieces every suite may use: the one matcher of refusals (`refused` for a call on the wire,
`client_refused` and `code_and_reason` for the client's errors, `describe` when nothing is to be
asserted), the one checker of the invariants (`check_pool_invariants` for I1 and I2, `replay_log`
for I3 and I4 over an event log), `unique_email` for new owners and users, the enum types of the
contract, client interceptor bases that grpc's stubs describe as generic, the health and reflection
calls (whose stubs lack them), calls of raw bytes and the cancelling of a call."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias, TypeVar

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from seats import errors
from seats.v1 import resources_pb2

Hub: TypeAlias = resources_pb2.Hub.ValueType
Tier: TypeAlias = resources_pb2.Tier.ValueType
PoolKey: TypeAlias = tuple[Hub, Tier]
"""A seat pool: (hub, tier)."""

DOMAIN = "seats.v1"
"""The ErrorInfo domain of every refusal of the service."""

if TYPE_CHECKING:
    # The stubs make the interceptor classes generic in (request, response); grpc's own classes are
    # not, so a subscript would fail when the test module is imported.
    UnaryUnaryInterceptor: TypeAlias = grpc.UnaryUnaryClientInterceptor[Message, Message]
    UnaryStreamInterceptor: TypeAlias = grpc.UnaryStreamClientInterceptor[Message, Message]
    AsyncUnaryUnaryInterceptor: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Message, Message]
    AsyncUnaryStreamInterceptor: TypeAlias = grpc.aio.UnaryStreamClientInterceptor[Message, Message]
else:
    UnaryUnaryInterceptor = grpc.UnaryUnaryClientInterceptor
    UnaryStreamInterceptor = grpc.UnaryStreamClientInterceptor
    AsyncUnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    AsyncUnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor


def unique_email(prefix: str = "user") -> str:
    """An email address no other test uses, for a new account's owner or a new user."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


# Refusals: a refused call's status code, message and google.rpc details, and the matcher.


@dataclass
class Refusal:
    """What a refused call said: status code, message and the google.rpc details."""

    code: grpc.StatusCode | None = None
    message: str = ""
    info: error_details_pb2.ErrorInfo = field(default_factory=error_details_pb2.ErrorInfo)
    bad_request: error_details_pb2.BadRequest = field(default_factory=error_details_pb2.BadRequest)
    precondition: error_details_pb2.PreconditionFailure = field(default_factory=error_details_pb2.PreconditionFailure)
    detail_types: list[str] = field(default_factory=list)

    def read(self, err: grpc.RpcError) -> None:
        assert isinstance(err, grpc.Call), err
        self.code = err.code()
        self.message = err.details() or ""
        status = rpc_status.from_call(err)
        assert status is not None, f"{self.code} {self.message!r} carries no google.rpc.Status details"
        for detail in status.details:
            for message in (self.info, self.bad_request, self.precondition):
                if detail.Is(message.DESCRIPTOR):
                    detail.Unpack(message)
                    self.detail_types.append(message.DESCRIPTOR.full_name)

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.bad_request.field_violations]

    def names_field(self, name: str) -> bool:
        """True when a BadRequest violation is about `name` (or a nested path ending in it)."""
        return any(f == name or f.endswith("." + name) or f.startswith(name + "[") for f in self.fields)

    @property
    def text(self) -> str:
        """Everything the refusal says, to check that it names something."""
        parts = [self.message, *self.info.metadata.values(), *self.info.metadata.keys()]
        parts += [v.field + " " + v.description for v in self.bad_request.field_violations]
        parts += [v.type + " " + v.subject + " " + v.description for v in self.precondition.violations]
        return "\n".join(parts)


@contextmanager
def refused(code: grpc.StatusCode, reason: str | None = None) -> Iterator[Refusal]:
    """Expects the block to be refused with `code` and an ErrorInfo of domain seats.v1 and `reason`."""
    refusal = Refusal()
    try:
        yield refusal
    except grpc.RpcError as err:
        refusal.read(err)
    else:
        pytest.fail(f"expected {code.name} {reason or ''}, but the call succeeded")
    said = f"{refusal.code} {refusal.info.reason} {refusal.message!r}"
    assert refusal.code == code, f"expected {code.name} {reason or ''}, got {said}"
    assert refusal.detail_types.count(error_details_pb2.ErrorInfo.DESCRIPTOR.full_name) == 1, (
        f"a refusal carries exactly one ErrorInfo: {said} {refusal.detail_types}"
    )
    assert refusal.info.domain == DOMAIN, f"ErrorInfo domain {refusal.info.domain!r}: {said}"
    if reason is not None:
        assert refusal.info.reason == reason, f"expected reason {reason}, got {said}"


def refusal_of(err: grpc.RpcError) -> Refusal:
    """The parsed refusal of a call that failed (it must carry a google.rpc.Status)."""
    refusal = Refusal()
    refusal.read(err)
    return refusal


def describe(error: grpc.RpcError) -> tuple[str, str, str]:
    """(status code name, ErrorInfo reason of domain seats.v1 or "", message) of a failed call, without
    checking anything: for calls that may fail in the transport or with details that do not parse."""
    if not isinstance(error, grpc.Call):
        return "UNKNOWN", "", str(error)
    code = error.code()
    message = error.details() or ""
    reason = ""
    try:
        status = rpc_status.from_call(error)
    except ValueError as exc:  # details that disagree with the code: keep what we can
        return code.name, "", f"{message} (bad status details: {exc})"
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == DOMAIN:
                    reason = info.reason
    return code.name, reason, message


# Refusals as the Python client raises them (seats.errors).

E = TypeVar("E", bound=errors.SeatsError)


def client_error(call: Callable[[], object]) -> errors.SeatsError:
    """The SeatsError that `call` raises; fails when it raises nothing."""
    with pytest.raises(errors.SeatsError) as raised:
        call()
    return raised.value


def code_and_reason(call: Callable[[], object]) -> tuple[grpc.StatusCode, str]:
    """(status code, ErrorInfo reason) of the SeatsError that `call` raises; fails when it raises nothing."""
    error = client_error(call)
    return error.code, error.reason


def client_refused(cls: type[E], call: Callable[[], object]) -> E:
    """The error `call` raises; fails unless it is exactly `cls`, with every part of the status filled."""
    error = client_error(call)
    assert type(error) is cls, f"expected {cls.__name__}, got {error!r}"
    assert cls.status_code is not None and cls.error_reason is not None
    code_class = errors.BY_CODE[cls.status_code]
    assert isinstance(error, code_class) and isinstance(error, errors.SeatsError) and isinstance(error, Exception)
    assert code_class is not cls and issubclass(cls, code_class)
    assert error.code == cls.status_code
    assert error.reason == cls.error_reason
    assert error.message
    assert str(error) == f"{cls.error_reason}: {error.message}"
    assert error.__cause__ is None and error.__suppress_context__
    assert isinstance(error.metadata, dict)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in error.metadata.items())
    return error


# Invariants: I1 and I2 on a pool, I3 and I4 over an account's event log (docs/rules.md).

Counts: TypeAlias = tuple[int, int, int, int]
"""(included, purchased, assigned, pending_removal) of a pool."""
EventKey: TypeAlias = tuple[str, str, int, int, int, int]
"""(type, user_id, hub, tier, previous_tier, quantity) of an event: what a call's answer predicts."""


def pool_name(key: PoolKey) -> str:
    return f"{resources_pb2.Hub.Name(key[0])}/{resources_pb2.Tier.Name(key[1])}"


def event_type(event: resources_pb2.SeatEvent) -> str:
    """The type of an event without its prefix, e.g. "SEATS_PURCHASED"."""
    return resources_pb2.SeatEventType.Name(event.type).removeprefix("SEAT_EVENT_TYPE_")


def counts(pool: resources_pb2.SeatPool | resources_pb2.PoolCounts) -> Counts:
    return (pool.included, pool.purchased, pool.assigned, pool.pending_removal)


def event_key(event: resources_pb2.SeatEvent) -> EventKey:
    return (event_type(event), event.user_id, event.hub, event.tier, event.previous_tier, event.quantity)


def pool_problem(pool: resources_pb2.SeatPool) -> str | None:
    """What is wrong with a pool's counts under I1, I2 and the definition of available, if anything."""
    c = (
        f"{pool_name((pool.hub, pool.tier))} included={pool.included} purchased={pool.purchased} "
        f"assigned={pool.assigned} pending_removal={pool.pending_removal} available={pool.available}"
    )
    if not 0 <= pool.assigned <= pool.included + pool.purchased:
        return f"I1 broken: {c}"
    if not 0 <= pool.pending_removal <= pool.purchased - max(0, pool.assigned - pool.included):
        return f"I2 broken: {c}"
    if pool.available != pool.included + pool.purchased - pool.assigned - pool.pending_removal:
        return f"available is not included + purchased - assigned - pending_removal: {c}"
    return None


def check_pool_invariants(pool: resources_pb2.SeatPool, figures: str = "") -> None:
    """I1, I2 and the definition of available."""
    problem = pool_problem(pool)
    assert problem is None, f"{problem}\n{figures}" if figures else problem


PER_QUANTITY = {
    "SEATS_PURCHASED": (1, 0, 0),
    "SEAT_REMOVAL_SCHEDULED": (0, 0, 1),
    "SEAT_REMOVAL_CANCELLED": (0, 0, -1),
    "SEATS_REMOVED": (-1, 0, -1),
}
"""How each pool event moves (purchased, assigned, pending_removal), per unit of its quantity."""


@dataclass
class Log:
    """An account's event log, checked and replayed: the pool counts after every event, the pools
    and the seat holders at the end, and the events of each request id."""

    events: list[resources_pb2.SeatEvent]
    after: dict[int, dict[PoolKey, Counts]] = field(default_factory=dict)
    pools: dict[PoolKey, Counts] = field(default_factory=dict)
    holders: dict[tuple[str, int], int] = field(default_factory=dict)
    by_request: dict[str, list[resources_pb2.SeatEvent]] = field(default_factory=dict)

    @property
    def last(self) -> int:
        return self.events[-1].sequence if self.events else 0

    def events_of(self, request_id: str) -> Counter[EventKey]:
        return Counter(event_key(e) for e in self.by_request.get(request_id, []))


PENDING, WAITING, GRANTED, DENIED, CANCELLED = (
    resources_pb2.SEAT_REQUEST_STATE_PENDING,
    resources_pb2.SEAT_REQUEST_STATE_WAITING,
    resources_pb2.SEAT_REQUEST_STATE_GRANTED,
    resources_pb2.SEAT_REQUEST_STATE_DENIED,
    resources_pb2.SEAT_REQUEST_STATE_CANCELLED,
)
"""The states of a seat request (SeatRequestState), by their short names."""

SEAT_TAKEN = ("SEAT_UNASSIGNED", "SEAT_RECLAIMED")
"""Events that take a seat from its user, leaving it in the pool (S18): by a call, or by the sweep
from a seat idle past its pool's policy."""
REQUEST_STEPS = ("SEAT_REQUESTED", "SEAT_REQUEST_WAITING", "SEAT_REQUEST_DENIED", "SEAT_POLICY_UPDATED")
"""Events about a pool that move none of its counts: a seat request's steps, and a policy change
(a grant of a request is a SEAT_ASSIGNED event)."""


def replay_log(events: Sequence[resources_pb2.SeatEvent]) -> Log:
    """I4 over a whole log: sequences are exactly 1..n; every pool event starts from where the last
    event of its pool left the pool (a pool opens from nothing) and moves it the way its type says;
    a seat event names its user; the events of one request id are one block of the log; the seat
    events of each user and hub follow each other (I3: one seat per hub, a move leaves the old tier
    first)."""
    log = Log(list(events))
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, len(events) + 1)), (
        f"I4: event sequences are not exactly 1..{len(events)}: "
        f"missing {sorted(set(range(1, len(events) + 1)) - set(sequences))[:20]}, "
        f"repeated {sorted(s for s, n in Counter(sequences).items() if n > 1)[:20]}"
    )
    state: dict[PoolKey, Counts] = {}
    for e in events:
        kind = event_type(e)
        where = f"event {e.sequence} {kind} request_id={e.request_id!r} user={e.user_id!r}"
        if e.request_id:
            log.by_request.setdefault(e.request_id, []).append(e)
        if e.hub:
            key = (e.hub, e.tier)
            before, after = counts(e.before), counts(e.after)
            assert before == state.get(key, (0, 0, 0, 0)), (
                f"I4: {where} on {pool_name(key)} starts from {before}, but the pool was {state.get(key)}"
            )
            moved = (after[1] - before[1], after[2] - before[2], after[3] - before[3])
            if kind in PER_QUANTITY:
                assert e.quantity > 0 and moved == tuple(d * e.quantity for d in PER_QUANTITY[kind]), (
                    f"I4: {where} quantity {e.quantity} moved (purchased, assigned, pending) by {moved}"
                )
            elif kind == "SEAT_ASSIGNED":  # S11: it may take a pending seat
                assert moved in ((0, 1, 0), (0, 1, -1)), f"I4: {where} moved the pool by {moved}"
            elif kind in SEAT_TAKEN:
                assert moved == (0, -1, 0), f"I4: {where} moved the pool by {moved}"
            elif kind in REQUEST_STEPS:
                assert after == before, f"I4: {where} moved the pool from {before} to {after}"
            elif kind == "POOL_OPENED":
                assert before == (0, 0, 0, 0), f"I4: {where} opens {pool_name(key)} from {before}"
            if kind == "SEAT_ASSIGNED" or kind in SEAT_TAKEN:
                assert e.user_id, f"I4: {where} names no user"
            if kind in PER_QUANTITY or kind == "SEAT_ASSIGNED" or kind in SEAT_TAKEN:
                assert after[0] == before[0], f"I4: {where} changed the included seats"
            state[key] = after
            if kind == "POOL_CLOSED":
                del state[key]
            if kind == "SEAT_ASSIGNED":
                held = log.holders.get((e.user_id, e.hub))
                assert held is None, f"I3: {where} gives {pool_name(key)} to a user who still holds tier {held}"
                log.holders[(e.user_id, e.hub)] = e.tier
            elif kind in SEAT_TAKEN:
                held = log.holders.pop((e.user_id, e.hub), None)
                assert held == e.tier, f"I3: {where} takes {pool_name(key)} from a user who held tier {held}"
        log.after[e.sequence] = dict(state)
    log.pools = state
    for request_id, found in log.by_request.items():
        seqs = [e.sequence for e in found]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), (
            f"I4: the events of request {request_id!r} are not one block of the log (one transaction): {seqs}"
        )
    return log


def check_log_leaves_pools(log: Log, pools: Mapping[PoolKey, resources_pb2.SeatPool], figures: str = "") -> None:
    """I4: the last event of every pool shows the pool's current counts (and no other pool is open)."""
    shown = {key: counts(p) for key, p in pools.items()}
    assert shown == log.pools, f"the pools are not where the event log leaves them: {shown} != {log.pools}\n{figures}"


def cancel(call: grpc.RpcContext) -> None:
    """Cancels a call (a server stream's iterator, a future) from the client side."""
    call.cancel()  # type: ignore[no-untyped-call]  # grpc's stubs leave RpcContext.cancel unannotated


def health_check(
    channel: grpc.Channel,
) -> grpc.UnaryUnaryMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """grpc.health.v1.Health/Check on a channel."""
    return health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined,no-any-return]  # not in the stubs


def health_watch(
    channel: grpc.Channel,
) -> grpc.UnaryStreamMultiCallable[health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse]:
    """grpc.health.v1.Health/Watch on a channel."""
    return health_pb2_grpc.HealthStub(channel).Watch  # type: ignore[attr-defined,no-any-return]  # not in the stubs


def reflection_info(
    channel: grpc.Channel,
) -> grpc.StreamStreamMultiCallable[reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse]:
    """grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo on a channel."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return stub.ServerReflectionInfo  # type: ignore[return-value]  # the stubs leave it untyped


# Calls by method path that send and receive bytes as they are (no serializers), for malformed input.


def raw_unary_unary(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


def raw_unary_stream(channel: grpc.Channel, path: str) -> grpc.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(path, request_serializer=None, response_deserializer=None)


def raw_stream_unary(channel: grpc.Channel, path: str) -> grpc.StreamUnaryMultiCallable[bytes, bytes]:
    return channel.stream_unary(path, request_serializer=None, response_deserializer=None)
