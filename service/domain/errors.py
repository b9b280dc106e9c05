"""Domain refusals. Each carries a canonical kind and an UPPER_SNAKE reason (AIP-193), the name
of a value of the seats.v1.ErrorReason enum (protos/seats/v1/error_reason.proto), written as
``reason(ErrorReason.NO_SEAT_AVAILABLE)``; service/errors.py turns them into gRPC statuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from seats.v1.error_reason_pb2 import ErrorReason as ErrorReason

REASONS: frozenset[str] = frozenset(ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED"}
"""Every reason string the service may send: the names of the ErrorReason values."""


def reason(value: ErrorReason.ValueType) -> str:
    """The ErrorInfo reason string of an ErrorReason value: its name, e.g. "NO_SEAT_AVAILABLE"."""
    if value == ErrorReason.ERROR_REASON_UNSPECIFIED:
        raise ValueError("ERROR_REASON_UNSPECIFIED is never sent")
    return ErrorReason.Name(value)


class Kind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    UNAVAILABLE = "UNAVAILABLE"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"


@dataclass
class SeatError(Exception):
    """A refusal: the kind says how, the reason says why."""

    kind: Kind
    reason: str
    message: str
    metadata: dict[str, str] = field(default_factory=dict)
    fields: list[tuple[str, str]] = field(default_factory=list)
    preconditions: list[tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


def invalid(field_name: str, description: str) -> SeatError:
    return SeatError(
        Kind.INVALID_ARGUMENT,
        reason(ErrorReason.INVALID_FIELD),
        f"{field_name}: {description}",
        {"field": field_name},
        fields=[(field_name, description)],
    )


def precondition(why: ErrorReason.ValueType, subject: str, message: str, **metadata: str) -> SeatError:
    """A rule refusal (FAILED_PRECONDITION), with a PreconditionFailure whose type is the reason."""
    name = reason(why)
    return SeatError(Kind.FAILED_PRECONDITION, name, message, dict(metadata), preconditions=[(name, subject, message)])


def account_not_found(account_id: str) -> SeatError:
    return SeatError(
        Kind.NOT_FOUND,
        reason(ErrorReason.ACCOUNT_NOT_FOUND),
        f"account {account_id!r} does not exist",
        {"account_id": account_id},
    )


def user_not_found(user_id: str) -> SeatError:
    return SeatError(
        Kind.NOT_FOUND,
        reason(ErrorReason.USER_NOT_FOUND),
        f"user {user_id!r} does not exist in this account",
        {"user_id": user_id},
    )


def permission_missing(permission: str, what: str) -> SeatError:
    return SeatError(
        Kind.PERMISSION_DENIED,
        reason(ErrorReason.PERMISSION_MISSING),
        f"the acting user needs the {permission} permission to {what}",
        {"permission": permission},
    )


def actor_not_in_account(actor: str) -> SeatError:
    return SeatError(
        Kind.PERMISSION_DENIED,
        reason(ErrorReason.ACTOR_NOT_IN_ACCOUNT),
        f"the acting user {actor!r} is not a user of this account",
        {"actor": actor},
    )


def unavailable() -> SeatError:
    """The database cannot be reached. The details go to the log, not to callers: they name
    hosts and ports."""
    return SeatError(
        Kind.UNAVAILABLE, reason(ErrorReason.STORE_UNAVAILABLE), "the service cannot reach its database; retry later"
    )


def concurrent_change() -> SeatError:
    """A write that kept losing races to concurrent writes of the same account."""
    return SeatError(Kind.ABORTED, reason(ErrorReason.CONCURRENT_CHANGE), "a concurrent change won; retry the call")
