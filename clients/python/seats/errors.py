"""Exceptions of the seat service, one class per ErrorInfo reason (a value of the
seats.v1.ErrorReason enum), each under the class of its canonical status code: catch
``NoSeatAvailable`` for one rule, ``FailedPrecondition`` for every rule refusal, or
``SeatsError`` for anything the service refused."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

DOMAIN = "seats.v1"


@dataclass(frozen=True)
class FieldViolation:
    """A bad request field (google.rpc.BadRequest)."""

    field: str
    description: str


@dataclass(frozen=True)
class PreconditionViolation:
    """A rule that refused the call (google.rpc.PreconditionFailure)."""

    type: str
    subject: str
    description: str


@dataclass
class SeatsError(Exception):
    """A call the service refused, or could not answer."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    precondition_violations: list[PreconditionViolation] = field(default_factory=list)

    status_code: ClassVar[grpc.StatusCode | None] = None
    error_reason: ClassVar[str | None] = None

    def __str__(self) -> str:
        return f"{self.reason or self.code.name}: {self.message}"

    def __hash__(self) -> int:
        return id(self)


# ---- by status code -------------------------------------------------------------------------


class InvalidArgument(SeatsError):
    status_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(SeatsError):
    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(SeatsError):
    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(SeatsError):
    status_code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(SeatsError):
    status_code = grpc.StatusCode.UNAUTHENTICATED


class FailedPrecondition(SeatsError):
    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(SeatsError):
    status_code = grpc.StatusCode.ABORTED


class ResourceExhausted(SeatsError):
    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(SeatsError):
    status_code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(SeatsError):
    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(SeatsError):
    status_code = grpc.StatusCode.CANCELLED


class Internal(SeatsError):
    """The service failed on a bug of its own (reason ``INTERNAL``), or an INTERNAL status from
    elsewhere (no reason)."""

    status_code = grpc.StatusCode.INTERNAL
    error_reason = "INTERNAL"


class Unknown(SeatsError):
    status_code = grpc.StatusCode.UNKNOWN


# ---- by reason ------------------------------------------------------------------------------


class InvalidField(InvalidArgument):
    """A field is missing or malformed; ``field_violations`` names it."""

    error_reason = "INVALID_FIELD"


class RequestIdReused(InvalidArgument):
    """The request id was used before for another request (I5)."""

    error_reason = "REQUEST_ID_REUSED"


class AccountNotFound(NotFound):
    error_reason = "ACCOUNT_NOT_FOUND"


class UserNotFound(NotFound):
    error_reason = "USER_NOT_FOUND"


class InvoiceNotFound(NotFound):
    error_reason = "INVOICE_NOT_FOUND"


class SeatRequestNotFound(NotFound):
    error_reason = "SEAT_REQUEST_NOT_FOUND"


class SeatRequestExists(AlreadyExists):
    """The user already has an open request for a seat of that hub; metadata names it."""

    error_reason = "SEAT_REQUEST_EXISTS"


class EmailTaken(AlreadyExists):
    """Another user of the account has this email, case-insensitively (S16)."""

    error_reason = "EMAIL_TAKEN"


class PermissionMissing(PermissionDenied):
    """The acting user lacks a permission (S7, S12, S14, S20)."""

    error_reason = "PERMISSION_MISSING"

    @property
    def permission(self) -> str:
        """``edit_billing``, ``account_access`` or ``super_admin``."""
        return self.metadata.get("permission", "")


class ActorNotInAccount(PermissionDenied):
    error_reason = "ACTOR_NOT_IN_ACCOUNT"


class SystemCallOnly(PermissionDenied):
    error_reason = "SYSTEM_CALL_ONLY"


class OwnerOnly(PermissionDenied):
    """Only the account's owner may change or delete the owner (S20)."""

    error_reason = "OWNER_ONLY"


class TokenMissing(Unauthenticated):
    """The server wants a service token (``token=``) and got none."""

    error_reason = "TOKEN_MISSING"


class TokenInvalid(Unauthenticated):
    """The service token is not one the server knows."""

    error_reason = "TOKEN_INVALID"


class TokenNotForAccount(PermissionDenied):
    """The service token is limited to other accounts than the one the call names."""

    error_reason = "TOKEN_NOT_FOR_ACCOUNT"


class MalformedRequest(InvalidArgument):
    """The request bytes are not a valid protobuf message of the method's request type."""

    error_reason = "MALFORMED_REQUEST"


class RequestTimeout(DeadlineExceeded):
    """The call's request message did not reach the server in time after its headers."""

    error_reason = "REQUEST_TIMEOUT"


class TooManyCalls(ResourceExhausted):
    """The server runs as many calls at once as it may; retry with backoff."""

    error_reason = "TOO_MANY_CALLS"


class ActorRequired(PermissionDenied):
    """The service token acts for users: every call must name an actor."""

    error_reason = "ACTOR_REQUIRED"


class NoSeatAvailable(FailedPrecondition):
    """Every seat of the pool is taken (S13)."""

    error_reason = "NO_SEAT_AVAILABLE"


class SeatsAssigned(FailedPrecondition):
    """A removal larger than the unassigned purchased seats (S8)."""

    error_reason = "SEATS_ASSIGNED"


class UserHoldsSeats(FailedPrecondition):
    """A user holding a seat cannot be deleted (S10)."""

    error_reason = "USER_HOLDS_SEATS"


class NotSubscribed(FailedPrecondition):
    error_reason = "NOT_SUBSCRIBED"


class TierNotPurchasable(FailedPrecondition):
    error_reason = "TIER_NOT_PURCHASABLE"


class NotAnUpgrade(FailedPrecondition):
    error_reason = "NOT_AN_UPGRADE"


class NotPendingRemoval(FailedPrecondition):
    error_reason = "NOT_PENDING_REMOVAL"


class SeatNotAssigned(FailedPrecondition):
    error_reason = "SEAT_NOT_ASSIGNED"


class SeatRequestClosed(FailedPrecondition):
    """The seat request was already granted, denied or cancelled."""

    error_reason = "SEAT_REQUEST_CLOSED"


class SeatAlreadyHeld(FailedPrecondition):
    error_reason = "SEAT_ALREADY_HELD"


class OwnerNotDeletable(FailedPrecondition):
    error_reason = "OWNER_NOT_DELETABLE"


class OwnerStaysSuperAdmin(FailedPrecondition):
    error_reason = "OWNER_STAYS_SUPER_ADMIN"


class SeatLimit(FailedPrecondition):
    error_reason = "SEAT_LIMIT"


class EtagMismatch(Aborted):
    """The resource changed since it was read (AIP-154): read it again."""

    error_reason = "ETAG_MISMATCH"


class ConcurrentChange(Aborted):
    error_reason = "CONCURRENT_CHANGE"


class TooManyWatches(ResourceExhausted):
    error_reason = "TOO_MANY_WATCHES"


class StoreUnavailable(Unavailable):
    error_reason = "STORE_UNAVAILABLE"


class ShuttingDown(Unavailable):
    error_reason = "SHUTTING_DOWN"


class WatchExpired(Unavailable):
    """A watch reached the server's longest life (--watch-max-seconds); the clients resume it from
    metadata ``after_sequence`` on their own, so callers of watch_seat_events never see this."""

    error_reason = "WATCH_EXPIRED"


def _subclasses(cls: type[SeatsError]) -> list[type[SeatsError]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


BY_REASON: dict[str, type[SeatsError]] = {c.error_reason: c for c in _subclasses(SeatsError) if c.error_reason}
BY_CODE: dict[grpc.StatusCode, type[SeatsError]] = {
    c.status_code: c for c in SeatsError.__subclasses__() if c.status_code is not None
}


def from_rpc_error(error: grpc.RpcError) -> SeatsError:
    """The SeatsError for a failed call, with the details of its google.rpc.Status."""
    if not callable(getattr(error, "code", None)):  # a bare RpcError, e.g. from an interceptor
        return Unknown(grpc.StatusCode.UNKNOWN, "", str(error))
    call: grpc.Call = error  # type: ignore[assignment]  # grpc.Call, or grpc.aio.AioRpcError alike
    code = call.code()
    message = call.details() or ""
    reason = ""
    metadata: dict[str, str] = {}
    fields: list[FieldViolation] = []
    preconditions: list[PreconditionViolation] = []
    try:
        status = rpc_status.from_call(call)
    except ValueError:  # a status whose details disagree with its code: keep what the call says
        status = None
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == DOMAIN:
                    reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields += [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.PreconditionFailure.DESCRIPTOR):
                failure = error_details_pb2.PreconditionFailure()
                detail.Unpack(failure)
                preconditions += [PreconditionViolation(v.type, v.subject, v.description) for v in failure.violations]
    cls = BY_REASON.get(reason) or BY_CODE.get(code) or SeatsError
    if cls.status_code is not None and cls.status_code != code:
        cls = BY_CODE.get(code, SeatsError)
    return cls(code, reason, message, metadata, fields, preconditions)
