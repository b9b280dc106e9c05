"""Domain refusals. Each carries a canonical kind and an UPPER_SNAKE reason (AIP-193);
service/errors.py turns them into gRPC statuses."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


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
        "INVALID_FIELD",
        f"{field_name}: {description}",
        {"field": field_name},
        fields=[(field_name, description)],
    )


def precondition(reason: str, subject: str, message: str, **metadata: str) -> SeatError:
    return SeatError(
        Kind.FAILED_PRECONDITION, reason, message, dict(metadata), preconditions=[(reason, subject, message)]
    )


def account_not_found(account_id: str) -> SeatError:
    return SeatError(
        Kind.NOT_FOUND, "ACCOUNT_NOT_FOUND", f"account {account_id!r} does not exist", {"account_id": account_id}
    )


def user_not_found(user_id: str) -> SeatError:
    return SeatError(
        Kind.NOT_FOUND, "USER_NOT_FOUND", f"user {user_id!r} does not exist in this account", {"user_id": user_id}
    )


def permission_missing(permission: str, what: str) -> SeatError:
    return SeatError(
        Kind.PERMISSION_DENIED,
        "PERMISSION_MISSING",
        f"the acting user needs the {permission} permission to {what}",
        {"permission": permission},
    )


def actor_not_in_account(actor: str) -> SeatError:
    return SeatError(
        Kind.PERMISSION_DENIED,
        "ACTOR_NOT_IN_ACCOUNT",
        f"the acting user {actor!r} is not a user of this account",
        {"actor": actor},
    )


def unavailable() -> SeatError:
    """The database cannot be reached. The details go to the log, not to callers: they name
    hosts and ports."""
    return SeatError(Kind.UNAVAILABLE, "STORE_UNAVAILABLE", "the service cannot reach its database; retry later")


def concurrent_change() -> SeatError:
    """A write that kept losing races to concurrent writes of the same account."""
    return SeatError(Kind.ABORTED, "CONCURRENT_CHANGE", "a concurrent change won; retry the call")
