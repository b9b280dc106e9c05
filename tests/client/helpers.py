"""Small readers shared by the client tests: money in cents, pools by key, timestamps, events."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2
from seats.v1 import resources_pb2, seat_service_pb2

SALES = resources_pb2.HUB_SALES
SERVICE = resources_pb2.HUB_SERVICE
NO_HUB = resources_pb2.HUB_UNSPECIFIED
FREE = resources_pb2.TIER_FREE
STARTER = resources_pb2.TIER_STARTER
PROFESSIONAL = resources_pb2.TIER_PROFESSIONAL
ENTERPRISE = resources_pb2.TIER_ENTERPRISE
NO_TIER = resources_pb2.TIER_UNSPECIFIED

PLAN = resources_pb2.CHARGE_KIND_PLAN
SEATS = resources_pb2.CHARGE_KIND_SEATS
PRORATED_SEATS = resources_pb2.CHARGE_KIND_PRORATED_SEATS
PRORATED_PLAN = resources_pb2.CHARGE_KIND_PRORATED_PLAN

ACCOUNT_CREATED = resources_pb2.SEAT_EVENT_TYPE_ACCOUNT_CREATED
POOL_OPENED = resources_pb2.SEAT_EVENT_TYPE_POOL_OPENED
POOL_CLOSED = resources_pb2.SEAT_EVENT_TYPE_POOL_CLOSED
SEATS_PURCHASED = resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED
REMOVAL_SCHEDULED = resources_pb2.SEAT_EVENT_TYPE_SEAT_REMOVAL_SCHEDULED
REMOVAL_CANCELLED = resources_pb2.SEAT_EVENT_TYPE_SEAT_REMOVAL_CANCELLED
SEAT_ASSIGNED = resources_pb2.SEAT_EVENT_TYPE_SEAT_ASSIGNED
SEAT_UNASSIGNED = resources_pb2.SEAT_EVENT_TYPE_SEAT_UNASSIGNED
USER_CREATED = resources_pb2.SEAT_EVENT_TYPE_USER_CREATED
USER_UPDATED = resources_pb2.SEAT_EVENT_TYPE_USER_UPDATED
USER_DELETED = resources_pb2.SEAT_EVENT_TYPE_USER_DELETED

UNCHANGED = seat_service_pb2.SEAT_CHANGE_OUTCOME_UNCHANGED
ASSIGNED = seat_service_pb2.SEAT_CHANGE_OUTCOME_ASSIGNED
MOVED = seat_service_pb2.SEAT_CHANGE_OUTCOME_MOVED
UNASSIGNED = seat_service_pb2.SEAT_CHANGE_OUTCOME_UNASSIGNED


def cents(money: money_pb2.Money) -> int:
    """An amount in USD cents; fails on anything finer than a cent (I6)."""
    assert money.currency_code == "USD", money
    assert money.nanos % 10_000_000 == 0, money
    return money.units * 100 + money.nanos // 10_000_000


def to_dt(ts: Timestamp) -> datetime:
    return ts.ToDatetime(tzinfo=UTC)


def pool(pools: Iterable[resources_pb2.SeatPool], hub: int, tier: int) -> resources_pb2.SeatPool:
    """The pool of a hub and tier among `pools`; fails when there is none."""
    found = [p for p in pools if p.hub == hub and p.tier == tier]
    assert len(found) == 1, f"no single pool {hub}/{tier} in {list(pools)}"
    return found[0]


def counts(p: resources_pb2.SeatPool) -> tuple[int, int, int, int, int]:
    """(included, purchased, assigned, available, pending_removal) of a pool."""
    return p.included, p.purchased, p.assigned, p.available, p.pending_removal


def kinds(events: Iterable[resources_pb2.SeatEvent]) -> list[int]:
    return [e.type for e in events]


class InjectedError(grpc.RpcError, grpc.Call):
    """A failed call made up by a client interceptor: a status code and no details."""

    def __init__(self, code: grpc.StatusCode, details: str = "injected by the test") -> None:
        super().__init__()
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    # The stubs give RpcError and Call different metadata types; no method satisfies both.
    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:  # type: ignore[override]
        return ()

    def is_active(self) -> bool:
        return False

    # grpc returns None for a call without a deadline, where the stubs say float.
    def time_remaining(self) -> float | None:  # type: ignore[override]
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False
