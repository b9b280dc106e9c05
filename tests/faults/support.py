"""What the fault tests share: calls with deadlines whose answers are kept as data, the events
each answer says it made, and the checks of a server's state after the fault: the pools, the
assignments and the answers against the event log (I1..I5, on the invariant checks of
tests.toolkit)."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message
from seats.v1 import (
    resources_pb2,
    seat_service_pb2,
    seat_service_pb2_grpc,
    user_service_pb2,
    user_service_pb2_grpc,
)

from tests.toolkit import (
    EventKey,
    Log,
    PoolKey,
    check_log_leaves_pools,
    check_pool_invariants,
    counts,
    describe,
    event_type,
    pool_name,
)

CALL_SECONDS = 20.0
"""Deadline of every call a fault test makes (generous: two servers share two cores under load)."""
MAX_PAGES = 100
"""Bound of every paging loop: 100 pages of 1000 is far more than any test makes."""
RAW_STORE_TEXT = ("database is locked", "could not serialize", "deadlock detected", "traceback", "psycopg2", "peewee")
"""Text of a database or Python error that must never reach a client under load."""

SALES = resources_pb2.HUB_SALES
SERVICE = resources_pb2.HUB_SERVICE
STARTER = resources_pb2.TIER_STARTER
PROFESSIONAL = resources_pb2.TIER_PROFESSIONAL
ENTERPRISE = resources_pb2.TIER_ENTERPRISE
NO_TIER = resources_pb2.TIER_UNSPECIFIED

Metadata = tuple[tuple[str, str], ...]


def actor(user_id: str) -> Metadata:
    return (("x-seats-actor", user_id),)


def new_request_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


# ---- channels --------------------------------------------------------------------------------


@dataclass
class Client:
    """A channel to one server and the stubs over it."""

    address: str
    channel: grpc.Channel
    seats: seat_service_pb2_grpc.SeatServiceStub
    users: user_service_pb2_grpc.UserServiceStub


@contextmanager
def connected(address: str) -> Iterator[Client]:
    channel = grpc.insecure_channel(address)
    try:
        yield Client(
            address,
            channel,
            seat_service_pb2_grpc.SeatServiceStub(channel),
            user_service_pb2_grpc.UserServiceStub(channel),
        )
    finally:
        channel.close()


# ---- answers ---------------------------------------------------------------------------------


@dataclass
class Answer:
    """One call and what it got back: the response, or the status code, ErrorInfo reason and message."""

    op: str
    server: int
    request: Message
    response: Any = None
    code: str = "OK"
    reason: str = ""
    message: str = ""
    started: float = 0.0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.code == "OK"

    @property
    def request_id(self) -> str:
        return str(getattr(self.request, "request_id", ""))

    @property
    def outcome(self) -> str:
        """OK, the ErrorInfo reason of a refusal, or the bare status code when there is none."""
        return "OK" if self.ok else (self.reason or self.code)

    def describe(self) -> str:
        text = f"{self.op} on server {self.server} ({self.seconds:.2f}s): {self.code}"
        if not self.ok:
            text += f" {self.reason or '(no ErrorInfo)'} {self.message!r}"
        return text


def call(
    method: Callable[..., Any],
    request: Message,
    *,
    op: str,
    server: int = 0,
    metadata: Metadata = (),
    timeout: float = CALL_SECONDS,
) -> Answer:
    """Makes one unary call with a deadline and keeps whatever came back."""
    started = time.monotonic()
    try:
        response = method(request, timeout=timeout, metadata=metadata)
    except grpc.RpcError as err:
        code, reason, message = describe(err)
        return Answer(op, server, request, None, code, reason, message, started, time.monotonic() - started)
    return Answer(op, server, request, response, started=started, seconds=time.monotonic() - started)


def call_at_once(
    methods: Sequence[Callable[..., Any]],
    request: Message,
    *,
    op: str,
    metadata: Metadata = (),
    timeout: float = CALL_SECONDS,
) -> list[Answer]:
    """Sends the same request (same request id) to several servers at the same moment: every call
    is in flight before the first answer is awaited."""
    started = time.monotonic()
    futures = [method.future(request, timeout=timeout, metadata=metadata) for method in methods]  # type: ignore[attr-defined]
    answers = []
    for server, future in enumerate(futures):
        try:
            response = future.result(timeout=timeout + 5)
        except grpc.RpcError as err:
            code, reason, message = describe(err)
            elapsed = time.monotonic() - started
            answers.append(Answer(op, server, request, None, code, reason, message, started, elapsed))
        else:
            answers.append(Answer(op, server, request, response, started=started, seconds=time.monotonic() - started))
    return answers


def tally(answers: Sequence[Answer]) -> str:
    """The figures of a run: calls, OK, and refusals by reason, overall and per operation."""
    outcomes = Counter(a.outcome for a in answers)
    ok = outcomes.pop("OK", 0)
    refusals = " ".join(f"{reason}={n}" for reason, n in sorted(outcomes.items())) or "none"
    per_op: dict[str, Counter[str]] = {}
    for a in answers:
        per_op.setdefault(a.op, Counter())[a.outcome] += 1
    ops = "; ".join(
        f"{op} {sum(c.values())} (" + ", ".join(f"{k} {v}" for k, v in sorted(c.items())) + ")"
        for op, c in sorted(per_op.items())
    )
    slowest = max((a.seconds for a in answers), default=0.0)
    return f"calls={len(answers)} OK={ok} refusals: {refusals} | slowest call {slowest:.2f}s | by operation: {ops}"


def raw_store_text(answer: Answer) -> str | None:
    """The database or Python error text an answer leaks, if any."""
    lowered = answer.message.lower()
    return next((marker for marker in RAW_STORE_TEXT if marker in lowered), None)


# ---- what an answer says happened -------------------------------------------------------------


def expected_events(answer: Answer) -> Counter[EventKey]:
    """The events an OK answer says its call appended (I4): one per change of a pool or an assignment."""
    assert answer.ok, answer.describe()
    req, res = answer.request, answer.response
    out: Counter[EventKey] = Counter()
    if isinstance(req, seat_service_pb2.AssignSeatRequest):
        if res.changed:
            if res.previous_tier:
                out[("SEAT_UNASSIGNED", req.user_id, req.hub, res.previous_tier, 0, 0)] += 1
            if res.HasField("charge"):
                out[("SEATS_PURCHASED", "", req.hub, req.tier, 0, 1)] += 1
            out[("SEAT_ASSIGNED", req.user_id, req.hub, req.tier, res.previous_tier, 0)] += 1
    elif isinstance(req, seat_service_pb2.UnassignSeatRequest):
        out[("SEAT_UNASSIGNED", req.user_id, req.hub, res.pool.tier, 0, 0)] += 1
    elif isinstance(req, seat_service_pb2.PurchaseSeatsRequest):
        out[("SEATS_PURCHASED", "", req.hub, req.tier, 0, req.quantity)] += 1
    elif isinstance(req, seat_service_pb2.ScheduleSeatRemovalRequest):
        out[("SEAT_REMOVAL_SCHEDULED", "", req.hub, req.tier, 0, req.quantity)] += 1
    elif isinstance(req, seat_service_pb2.CancelSeatRemovalRequest):
        out[("SEAT_REMOVAL_CANCELLED", "", req.hub, req.tier, 0, req.quantity)] += 1
    elif isinstance(req, seat_service_pb2.BatchUpdateSeatAssignmentsRequest):
        outcome = seat_service_pb2.SeatChangeOutcome
        for r in res.results:
            if r.outcome in (outcome.SEAT_CHANGE_OUTCOME_MOVED, outcome.SEAT_CHANGE_OUTCOME_UNASSIGNED):
                out[("SEAT_UNASSIGNED", r.user_id, r.hub, r.previous_tier, 0, 0)] += 1
            if r.outcome in (outcome.SEAT_CHANGE_OUTCOME_MOVED, outcome.SEAT_CHANGE_OUTCOME_ASSIGNED):
                out[("SEAT_ASSIGNED", r.user_id, r.hub, r.tier, r.previous_tier, 0)] += 1
    elif isinstance(req, user_service_pb2.CreateUserRequest):
        user_id = res.user.user_id
        out[("USER_CREATED", user_id, 0, 0, 0, 0)] += 1
        for seat in req.seats:
            out[("SEAT_ASSIGNED", user_id, seat.hub, seat.tier, 0, 0)] += 1
        for charge in res.charges:
            out[("SEATS_PURCHASED", "", charge.hub, charge.tier, 0, charge.quantity)] += 1
    else:
        raise AssertionError(f"no expectation for {type(req).__name__}")
    return out


def answered_pools(answer: Answer) -> list[resources_pb2.SeatPool]:
    """The pools an OK answer shows as they were right after its call."""
    res = answer.response
    if isinstance(res, seat_service_pb2.BatchUpdateSeatAssignmentsResponse):
        return list(res.pools)
    pool = getattr(res, "pool", None)
    return [pool] if pool is not None else []


# ---- reading the state back ---------------------------------------------------------------------


def list_all(
    method: Callable[..., Any], build: Callable[[str], Message], field_name: str, metadata: Metadata = ()
) -> list[Any]:
    """Every item of a paged list (AIP-158), page by page, each page under a deadline."""
    items: list[Any] = []
    token = ""
    for _ in range(MAX_PAGES):
        page = method(build(token), timeout=CALL_SECONDS, metadata=metadata)
        items.extend(getattr(page, field_name))
        token = page.next_page_token
        if not token:
            return items
    raise AssertionError(f"more than {MAX_PAGES} pages of {field_name}")


def all_events(client: Client, account_id: str) -> list[resources_pb2.SeatEvent]:
    return list_all(
        client.seats.ListSeatEvents,
        lambda token: seat_service_pb2.ListSeatEventsRequest(account_id=account_id, page_size=1000, page_token=token),
        "events",
    )


def all_assignments(client: Client, account_id: str) -> list[resources_pb2.SeatAssignment]:
    return list_all(
        client.seats.ListSeatAssignments,
        lambda token: seat_service_pb2.ListSeatAssignmentsRequest(
            account_id=account_id, page_size=1000, page_token=token
        ),
        "assignments",
    )


def all_users(client: Client, account_id: str) -> list[resources_pb2.User]:
    return list_all(
        client.users.ListUsers,
        lambda token: user_service_pb2.ListUsersRequest(account_id=account_id, page_size=1000, page_token=token),
        "users",
    )


def summary_pools(client: Client, account_id: str) -> dict[PoolKey, resources_pb2.SeatPool]:
    response = client.seats.GetSeatSummary(
        seat_service_pb2.GetSeatSummaryRequest(account_id=account_id), timeout=CALL_SECONDS
    )
    return {(p.hub, p.tier): p for p in response.pools}


def check_final_state(
    client: Client, account_id: str, log: Log, figures: str = ""
) -> dict[PoolKey, resources_pb2.SeatPool]:
    """The pools (I1, I2, and equal to the log's last counts), the assignments (the holders the
    log leaves, one per user and hub, as many per pool as the pool says) and the users' seats."""
    pools = summary_pools(client, account_id)
    for p in pools.values():
        check_pool_invariants(p, figures)
    check_log_leaves_pools(log, pools, figures)
    for key, p in pools.items():
        seat_events = Counter(event_type(e) for e in log.events if (e.hub, e.tier) == key)
        assert seat_events["SEAT_ASSIGNED"] - seat_events["SEAT_UNASSIGNED"] == p.assigned, (
            f"{pool_name(key)}: SEAT_ASSIGNED {seat_events['SEAT_ASSIGNED']} - SEAT_UNASSIGNED "
            f"{seat_events['SEAT_UNASSIGNED']} events != assigned {p.assigned}\n{figures}"
        )
    listed = all_assignments(client, account_id)
    seats = [(a.user_id, a.hub) for a in listed]
    assert len(seats) == len(set(seats)), f"I3: a user holds two seats of one hub: {Counter(seats).most_common(3)}"
    held = {(a.user_id, a.hub): a.tier for a in listed}
    only_listed = sorted(set(held.items()) - set(log.holders.items()))[:5]
    only_logged = sorted(set(log.holders.items()) - set(held.items()))[:5]
    assert held == log.holders, (
        f"the assignments are not what the event log leaves: only listed {only_listed}, only in the log "
        f"{only_logged}\n{figures}"
    )
    per_pool = Counter((a.hub, a.tier) for a in listed)
    for key, p in pools.items():
        assert per_pool[key] == p.assigned, (
            f"{pool_name(key)}: assigned {p.assigned} but {per_pool[key]} users listed as holding it\n{figures}"
        )
    user_seats = {(u.user_id, s.hub): s.tier for u in all_users(client, account_id) for s in u.seats}
    assert user_seats == held, f"ListUsers shows other seats than ListSeatAssignments\n{figures}"
    return pools


def check_answers_against_log(answers: Sequence[Answer], log: Log, figures: str = "") -> None:
    """I4 and I5 per request id: the events carrying a request id are exactly what its OK answer
    says (once, however many times the id was sent); a request id that was never answered OK made
    no event; every OK answer's pools are the counts right after its last event; and OK answers to
    the same request id are the same answer."""
    by_id: dict[str, list[Answer]] = {}
    for a in answers:
        assert a.request_id, f"every mutating call of a fault test carries a request id: {a.describe()}"
        by_id.setdefault(a.request_id, []).append(a)
    for request_id, sent in by_id.items():
        oks = [a for a in sent if a.ok]
        made = log.events_of(request_id)
        if not oks:
            assert not made, (
                f"request {request_id!r} was never answered OK ({[a.outcome for a in sent]}) "
                f"but made events {dict(made)}\n{figures}"
            )
            continue
        first = oks[0]
        for other in oks[1:]:
            assert other.response == first.response, (
                f"I5: request {request_id!r} answered OK twice with different answers:\n"
                f"{first.describe()}: {first.response}\n{other.describe()}: {other.response}\n{figures}"
            )
        want = expected_events(first)
        assert made == want, (
            f"I4/I5: request {request_id!r} ({first.op}, sent {len(sent)}x: {[a.outcome for a in sent]}) "
            f"answered {first.response} but made events {dict(made)}, expected {dict(want)}\n{figures}"
        )
        if made:
            last = log.by_request[request_id][-1].sequence
            state = log.after[last]
            for p in answered_pools(first):
                key = (p.hub, p.tier)
                assert counts(p) == state.get(key), (
                    f"request {request_id!r} ({first.op}) answered {pool_name(key)} = {counts(p)}, but right "
                    f"after its event {last} the pool was {state.get(key)}\n{figures}"
                )
