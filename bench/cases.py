"""What is measured: one gRPC request per RPC, pre-encoded as the bytes h2load sends, and the
goals each RPC's ratio to the empty handler should reach."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from seats.v1 import resources_pb2 as r
from seats.v1 import seat_service_pb2 as seat_pb
from seats.v1 import user_service_pb2 as user_pb

from .dataset import DataSet, SeededAccount

SEAT_SERVICE = "seats.v1.SeatService"
USER_SERVICE = "seats.v1.UserService"
ACTOR_HEADER = "x-seats-actor"


def grpc_frame(message: bytes) -> bytes:
    """One length-prefixed gRPC message: flag 0 (not compressed), 4-byte big-endian length, bytes."""
    return b"\x00" + len(message).to_bytes(4, "big") + message


@dataclass(frozen=True)
class Probe:
    """One request as h2load sends it: POST /service/method with the framed message."""

    service: str
    method: str
    message: bytes
    actor: str

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def body(self) -> bytes:
        return grpc_frame(self.message)

    @property
    def headers(self) -> list[tuple[str, str]]:
        return [("content-type", "application/grpc"), ("te", "trailers"), (ACTOR_HEADER, self.actor)]


def probe(service: str, method: str, request: Message, actor: str) -> Probe:
    return Probe(service, method, request.SerializeToString(), actor)


@dataclass(frozen=True)
class Arm:
    """One line of the table: a request sent to the seat server. scale is "" for the small
    probe account, or "big" for the same request on the big account."""

    label: str
    scale: str
    request: Callable[[int], Probe]  # round number -> the request of that round


@dataclass(frozen=True)
class Case:
    """One RPC: the empty handler and each arm are measured in turn, round after round."""

    name: str
    kind: str  # "read" or "write"
    arms: list[Arm] = field(default_factory=list)


# Ratio (service calls/s over empty-handler calls/s) each RPC should reach.
SQLITE_GOALS = {
    "GetSeatSummary": 0.7,
    "GetUser": 0.7,
    "CheckSeats(1)": 0.7,
    "CheckSeats(100)": 0.5,
    "ListUsers(50)": 0.3,
    "PurchaseSeats": 0.4,
    "AssignSeat": 0.4,
    # Not a goal the service was given: activity is meant to be reported on every use, so it should
    # cost about what a single write does, for a hundred seats at once.
    "RecordSeatActivity(100)": 0.4,
}
POSTGRES_READ_GOAL = 0.5
POSTGRES_WRITE_GOAL = 0.2


def goal(case: Case, store: str) -> float:
    """The SQLite goals as given; on PostgreSQL reads 0.5 (never above the SQLite goal, so
    ListUsers(50) keeps 0.3) and writes 0.2."""
    base = SQLITE_GOALS[case.name]
    if store != "postgres":
        return base
    return min(base, POSTGRES_READ_GOAL) if case.kind == "read" else POSTGRES_WRITE_GOAL


def _same_every_round(p: Probe) -> Callable[[int], Probe]:
    return lambda _round: p


def build_cases(data: DataSet) -> list[Case]:
    small, big = data.probe, data.big
    sales, pro = r.HUB_SALES, r.TIER_PROFESSIONAL

    def get_user(a: SeededAccount) -> Probe:
        return probe(
            USER_SERVICE, "GetUser", user_pb.GetUserRequest(account_id=a.account_id, user_id=a.seated), a.owner
        )

    def check_seats(a: SeededAccount, n: int) -> Probe:
        ids = [a.seated] if n == 1 else a.sample[:n]
        request = seat_pb.CheckSeatsRequest(account_id=a.account_id, hub=sales, user_ids=ids)
        return probe(SEAT_SERVICE, "CheckSeats", request, a.owner)

    def purchase(round_no: int) -> Probe:
        a = data.purchase_accounts[round_no % len(data.purchase_accounts)]
        request = seat_pb.PurchaseSeatsRequest(account_id=a.account_id, hub=sales, tier=pro, quantity=1)
        return probe(SEAT_SERVICE, "PurchaseSeats", request, a.owner)

    def activity(_round: int) -> Probe:
        # a new time every round: the first call of a round moves the seats, the others find
        # nothing newer (each runs the same statement); users without a seat are skipped
        now = Timestamp()
        now.GetCurrentTime()
        reports = [r.SeatActivity(user_id=u, hub=sales, activity_time=now) for u in small.sample[:100]]
        request = seat_pb.RecordSeatActivityRequest(account_id=small.account_id, activities=reports)
        return probe(SEAT_SERVICE, "RecordSeatActivity", request, small.owner)

    summary = probe(
        SEAT_SERVICE, "GetSeatSummary", seat_pb.GetSeatSummaryRequest(account_id=small.account_id), small.owner
    )
    list_users = probe(
        USER_SERVICE, "ListUsers", user_pb.ListUsersRequest(account_id=small.account_id, page_size=50), small.owner
    )
    assign = probe(
        SEAT_SERVICE,
        "AssignSeat",
        seat_pb.AssignSeatRequest(account_id=small.account_id, user_id=small.seated, hub=sales, tier=pro),
        small.owner,
    )
    big_label = f"@{big.users:,} users"
    return [
        Case("GetSeatSummary", "read", [Arm("GetSeatSummary", "", _same_every_round(summary))]),
        Case(
            "GetUser",
            "read",
            [
                Arm("GetUser", "", _same_every_round(get_user(small))),
                Arm(f"GetUser {big_label}", "big", _same_every_round(get_user(big))),
            ],
        ),
        Case(
            "CheckSeats(1)",
            "read",
            [
                Arm("CheckSeats(1)", "", _same_every_round(check_seats(small, 1))),
                Arm(f"CheckSeats(1) {big_label}", "big", _same_every_round(check_seats(big, 1))),
            ],
        ),
        Case(
            "CheckSeats(100)",
            "read",
            [
                Arm("CheckSeats(100)", "", _same_every_round(check_seats(small, 100))),
                Arm(f"CheckSeats(100) {big_label}", "big", _same_every_round(check_seats(big, 100))),
            ],
        ),
        Case("ListUsers(50)", "read", [Arm("ListUsers(50)", "", _same_every_round(list_users))]),
        Case("PurchaseSeats", "write", [Arm("PurchaseSeats", "", purchase)]),
        Case("AssignSeat", "write", [Arm("AssignSeat (already held)", "", _same_every_round(assign))]),
        Case("RecordSeatActivity(100)", "write", [Arm("RecordSeatActivity(100)", "", activity)]),
    ]
