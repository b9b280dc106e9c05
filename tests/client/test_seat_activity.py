"""Seat activity and the idle-seat policy through both clients: ``record_seat_activity``,
``update_seat_policy`` and the ``idle_since`` filter of ``list_seat_assignments``.

Two halves. A small gRPC server stands in for the service where a test needs to see the request
that arrives (the messages the client builds from tuples, objects and names; request ids; retries);
those tests need no service. The others run against the real in-process server, on SQLite and
PostgreSQL, on a server of this module's own whose manual clock the tests move forward (days go
by between uses of a seat) without moving the clock of the session's shared server; its periodic
sweep is off, so that only a test's own ``sweep_once`` reclaims anything."""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections import namedtuple
from collections.abc import Awaitable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from seats import AsyncSeatsClient, SeatsClient, UnknownName, errors, requests, views
from seats._retry import IDEMPOTENT_WRITES, safe_to_retry
from seats.cache import View
from seats.cli import event_type_name
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc

from tests.client.conftest import CALL_TIMEOUT, FAST_RETRY, Tenant, new_tenant
from tests.client.helpers import PROFESSIONAL, SALES, SEAT_UNASSIGNED, SERVICE, STARTER, InjectedError, pool, to_dt
from tests.conftest import BACKENDS, Running, database_url, served
from tests.toolkit import UnaryUnaryInterceptor

T = TypeVar("T")

SEAT_RECLAIMED = resources_pb2.SEAT_EVENT_TYPE_SEAT_RECLAIMED
SEAT_POLICY_UPDATED = resources_pb2.SEAT_EVENT_TYPE_SEAT_POLICY_UPDATED
MAX_REPORTS = 1000
"""Reports one RecordSeatActivity call takes at most."""
AHEAD = timedelta(minutes=5)
"""How far ahead of the server's clock an activity time may be."""


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, CALL_TIMEOUT * 3)

    return asyncio.run(bounded())


def stamp(when: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(when)
    return ts


# ==== what the client sends: a stand-in server =================================================


@dataclass
class Stand(seat_service_pb2_grpc.SeatServiceServicer):
    """RecordSeatActivity, UpdateSeatPolicy and ListSeatAssignments: records each attempt's
    request and headers; the first ``fail`` attempts end UNAVAILABLE. ListSeatAssignments answers
    two pages, the first with the token ``page-2``."""

    fail: int = 0
    requests: list[Message] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _attempt(self, request: Message, context: grpc.ServicerContext) -> None:
        with self.lock:
            self.requests.append(request)
            self.headers.append({k: str(v) for k, v in context.invocation_metadata()})
            failing = len(self.requests) <= self.fail
        if failing:
            context.abort(grpc.StatusCode.UNAVAILABLE, "the stand refuses")

    def RecordSeatActivity(
        self, request: seat_service_pb2.RecordSeatActivityRequest, context: grpc.ServicerContext
    ) -> seat_service_pb2.RecordSeatActivityResponse:
        self._attempt(request, context)
        return seat_service_pb2.RecordSeatActivityResponse(recorded=len(request.activities) - 1, skipped=1)

    def UpdateSeatPolicy(
        self, request: seat_service_pb2.UpdateSeatPolicyRequest, context: grpc.ServicerContext
    ) -> seat_service_pb2.UpdateSeatPolicyResponse:
        self._attempt(request, context)
        pool = resources_pb2.SeatPool(hub=request.hub, tier=request.tier, idle_reclaim_days=request.idle_reclaim_days)
        return seat_service_pb2.UpdateSeatPolicyResponse(pool=pool)

    def ListSeatAssignments(
        self, request: seat_service_pb2.ListSeatAssignmentsRequest, context: grpc.ServicerContext
    ) -> seat_service_pb2.ListSeatAssignmentsResponse:
        self._attempt(request, context)
        first = not request.page_token
        user = "usr_a" if first else "usr_b"
        return seat_service_pb2.ListSeatAssignmentsResponse(
            assignments=[resources_pb2.SeatAssignment(user_id=user, hub=request.hub or SALES)],
            next_page_token="page-2" if first else "",
        )


@dataclass
class StandServer:
    target: str
    stand: Stand

    def client(self, **settings: Any) -> SeatsClient:
        return SeatsClient(self.target, timeout=CALL_TIMEOUT, retry=FAST_RETRY, **settings)

    def aclient(self, **settings: Any) -> AsyncSeatsClient:
        return AsyncSeatsClient(self.target, timeout=CALL_TIMEOUT, retry=FAST_RETRY, **settings)


@pytest.fixture
def stand() -> Iterator[StandServer]:
    """A fresh stand behind a real gRPC server."""
    servicer = Stand()  # type: ignore[abstract]  # serves only the three methods the tests call
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    seat_service_pb2_grpc.add_SeatServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield StandServer(f"127.0.0.1:{port}", servicer)
    finally:
        server.stop(0).wait()


@dataclass(frozen=True)
class Use:
    """A caller's own record of a use, read by attribute."""

    user_id: str
    hub: str
    activity_time: datetime


Logged = namedtuple("Logged", ["activity_time", "hub", "user_id"])  # fields not in the tuple order of the API
"""A named tuple whose fields come in another order than ``(user_id, hub, activity_time)``."""

MORNING = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_record_seat_activity_sends_messages_tuples_and_objects_as_seat_activities(stand: StandServer) -> None:
    message = resources_pb2.SeatActivity(user_id="usr_m", hub=SERVICE, activity_time=stamp(MORNING))
    paris = timezone(timedelta(hours=1))
    with stand.client(actor="usr_owner") as client:
        reply = client.record_seat_activity(
            "acc_1",
            [
                message,
                ("usr_t", "sales", MORNING),
                ("usr_n", resources_pb2.HUB_SERVICE, datetime(2026, 11, 30, 9, 0)),  # naive: UTC
                Use("usr_o", "HUB_SALES", datetime(2026, 11, 30, 10, 0, tzinfo=paris)),
                Logged(MORNING, "Service", "usr_l"),
            ],
        )

    assert (reply.recorded, reply.skipped) == (4, 1)
    (request,) = stand.stand.requests
    assert isinstance(request, seat_service_pb2.RecordSeatActivityRequest)
    assert request.account_id == "acc_1"
    assert [(a.user_id, a.hub, to_dt(a.activity_time)) for a in request.activities] == [
        ("usr_m", SERVICE, MORNING),
        ("usr_t", SALES, MORNING),
        ("usr_n", SERVICE, MORNING),
        ("usr_o", SALES, MORNING),  # 10:00 at UTC+1
        ("usr_l", SERVICE, MORNING),  # read by field name, whatever the tuple's order
    ]
    assert stand.stand.headers[0]["x-seats-actor"] == "usr_owner"
    message.user_id = "usr_changed"
    assert request.activities[0].user_id == "usr_m", "the request holds a copy of the caller's message"


def test_record_seat_activity_takes_a_generator_and_carries_no_request_id(stand: StandServer) -> None:
    with stand.client() as client:
        client.record_seat_activity("acc_1", ((f"usr_{n}", "sales", MORNING) for n in range(3)))
    (request,) = stand.stand.requests
    assert [a.user_id for a in request.activities] == ["usr_0", "usr_1", "usr_2"]  # type: ignore[attr-defined]
    assert "request_id" not in request.DESCRIPTOR.fields_by_name


@pytest.mark.parametrize(
    ("report", "error"),
    [
        (("usr_1", "sales"), TypeError),
        (("usr_1", "sales", "2026-11-30T09:00:00Z"), TypeError),  # a time is a datetime, not text
        ("usr_1:sales", TypeError),
        (("usr_1", "marketing", MORNING), UnknownName),
    ],
    ids=["short-tuple", "text-time", "text", "unknown-hub"],
)
def test_a_malformed_report_is_refused_before_any_call(stand: StandServer, report: Any, error: type[Exception]) -> None:
    with stand.client() as client, pytest.raises(error):
        client.record_seat_activity("acc_1", [("usr_ok", "sales", MORNING), report])
    assert stand.stand.requests == []


def test_record_seat_activity_is_retried_as_it_is_idempotent_by_nature(stand: StandServer) -> None:
    stand.stand.fail = 2
    with stand.client() as client:
        reply = client.record_seat_activity("acc_1", [("usr_1", "sales", MORNING), ("usr_2", "sales", MORNING)])
    assert (reply.recorded, reply.skipped) == (1, 1)
    first, second, third = stand.stand.requests
    assert first == second == third, "every attempt sends the same reports"


def test_safe_to_retry_names_record_seat_activity_and_still_refuses_a_write_without_its_request_id() -> None:
    assert seat_service_pb2.RecordSeatActivityRequest.DESCRIPTOR.full_name in IDEMPOTENT_WRITES
    assert safe_to_retry(seat_service_pb2.RecordSeatActivityRequest(account_id="acc_1"))
    assert safe_to_retry(seat_service_pb2.UpdateSeatPolicyRequest(account_id="acc_1", request_id="r-1"))
    assert not safe_to_retry(seat_service_pb2.UpdateSeatPolicyRequest(account_id="acc_1"))
    assert safe_to_retry(seat_service_pb2.ListSeatAssignmentsRequest(account_id="acc_1"))


def test_update_seat_policy_sends_the_policy_under_one_request_id_over_its_retries(stand: StandServer) -> None:
    stand.stand.fail = 1
    with stand.client() as client:
        reply = client.update_seat_policy("acc_1", "sales", "Professional", 30, validate_only=True)
    assert reply.pool.idle_reclaim_days == 30
    first, second = stand.stand.requests
    assert isinstance(first, seat_service_pb2.UpdateSeatPolicyRequest)
    assert (first.account_id, first.hub, first.tier, first.idle_reclaim_days, first.validate_only) == (
        "acc_1",
        SALES,
        PROFESSIONAL,
        30,
        True,
    )
    assert first.request_id and first == second, "a retry goes under the first attempt's request id"


def test_update_seat_policy_gives_each_call_its_own_request_id_and_keeps_a_callers(stand: StandServer) -> None:
    with stand.client() as client:
        client.update_seat_policy("acc_1", "sales", "professional", 0)
        client.update_seat_policy("acc_1", "sales", "professional", 0)
        client.update_seat_policy("acc_1", "sales", "professional", 7, request_id="mine")
    ids = [r.request_id for r in stand.stand.requests]  # type: ignore[attr-defined]
    assert ids[0] and ids[1] and ids[0] != ids[1]
    assert ids[2] == "mine"
    assert not any(r.validate_only for r in stand.stand.requests)  # type: ignore[attr-defined]


def test_idle_since_goes_with_every_page_and_is_unset_when_not_given(stand: StandServer) -> None:
    since = datetime(2026, 11, 1, tzinfo=UTC)
    with stand.client() as client:
        users = [a.user_id for a in client.iter_seat_assignments("acc_1", hub="sales", idle_since=since)]
        client.list_seat_assignments("acc_1")
    assert users == ["usr_a", "usr_b"]
    first, second, plain = stand.stand.requests
    assert isinstance(first, seat_service_pb2.ListSeatAssignmentsRequest)
    assert isinstance(second, seat_service_pb2.ListSeatAssignmentsRequest)
    assert isinstance(plain, seat_service_pb2.ListSeatAssignmentsRequest)
    assert to_dt(first.idle_since) == to_dt(second.idle_since) == since
    assert second.page_token == "page-2" and second.hub == SALES
    assert not plain.HasField("idle_since")


def test_async_client_sends_the_same_requests(stand: StandServer) -> None:
    since = datetime(2026, 11, 1, tzinfo=UTC)

    async def scenario() -> tuple[int, int, list[str]]:
        async with stand.aclient() as client:
            recorded = await client.record_seat_activity(
                "acc_1", [("usr_1", "sales", MORNING), Use("usr_2", "service", MORNING)]
            )
            policy = await client.update_seat_policy("acc_1", "service", "starter", 14)
            users = [a.user_id async for a in client.iter_seat_assignments("acc_1", idle_since=since)]
            return recorded.recorded, policy.pool.idle_reclaim_days, users

    assert run(scenario()) == (1, 14, ["usr_a", "usr_b"])
    activity, policy, page_1, page_2 = stand.stand.requests
    assert [(a.user_id, a.hub) for a in activity.activities] == [("usr_1", SALES), ("usr_2", SERVICE)]  # type: ignore[attr-defined]
    assert isinstance(policy, seat_service_pb2.UpdateSeatPolicyRequest)
    assert (policy.hub, policy.tier, policy.idle_reclaim_days) == (SERVICE, STARTER, 14) and policy.request_id
    assert to_dt(page_1.idle_since) == to_dt(page_2.idle_since) == since  # type: ignore[attr-defined]


def test_the_new_methods_have_their_builders_signature_and_documentation() -> None:
    with SeatsClient("127.0.0.1:1") as client:
        for name in ("record_seat_activity", "update_seat_policy", "list_seat_assignments"):
            bound = getattr(client, name)
            builder = getattr(requests, name)
            assert bound.__name__ == name
            assert bound.__doc__ == builder.__doc__
            assert list(inspect_parameters(bound)) == list(inspect_parameters(builder))
    assert "idle_since" in inspect_parameters(SeatsClient.iter_seat_assignments)
    assert "idle_since" in inspect_parameters(AsyncSeatsClient.iter_seat_assignments)


def inspect_parameters(function: Any) -> dict[str, inspect.Parameter]:
    return dict(inspect.signature(function).parameters)


# ---- replies read through the client's helpers -------------------------------------------------


def test_the_new_event_types_read_by_name() -> None:
    reclaimed = resources_pb2.SeatEvent(sequence=9, type=SEAT_RECLAIMED, hub=SALES, tier=PROFESSIONAL, user_id="u")
    policy = resources_pb2.SeatEvent(sequence=10, type=SEAT_POLICY_UPDATED, hub=SALES, tier=PROFESSIONAL, quantity=30)
    assert views.view(reclaimed)["type"] == "seat_reclaimed"
    assert views.view(policy)["type"] == "seat_policy_updated"
    assert (event_type_name(SEAT_RECLAIMED), event_type_name(SEAT_POLICY_UPDATED)) == (
        "SEAT_RECLAIMED",
        "SEAT_POLICY_UPDATED",
    )


def test_a_seat_cache_drops_a_reclaimed_seat() -> None:
    """The sweep's unassignment comes as SEAT_RECLAIMED: a cache that ignored it would go on
    answering that the user holds the seat."""
    view = View(sequence=0, floor=0)
    view.load([resources_pb2.SeatAssignment(user_id="usr_idle", hub=SALES, tier=PROFESSIONAL)])
    view.load([resources_pb2.SeatAssignment(user_id="usr_busy", hub=SALES, tier=PROFESSIONAL)])
    view.apply(
        resources_pb2.SeatEvent(sequence=1, type=SEAT_RECLAIMED, hub=SALES, tier=PROFESSIONAL, user_id="usr_idle"), 0.0
    )
    assert view.by_hub[SALES] == {"usr_busy": PROFESSIONAL}
    assert view.sequence == 1


# ==== against the service ======================================================================


@pytest.fixture(scope="module", params=BACKENDS)
def own(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server of this module's own, on each database kind: its clock moves only when these tests
    move it, and no periodic sweep runs."""
    with served(request.param, database_url(request.param, tmp_path_factory), sweep_interval_seconds=0) as running:
        yield running


@pytest.fixture
def own_system(own: Running) -> Iterator[SeatsClient]:
    with SeatsClient(own.target, timeout=CALL_TIMEOUT, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def acme(own_system: SeatsClient) -> Tenant:
    """Sales Professional with 2 included + 2 purchased seats, and Service Starter (1 included)."""
    return new_tenant(own_system, ("sales", "professional", 2), ("service", "starter", 0))


def seat_of(tenant: Tenant, user_id: str, hub: int = SALES) -> resources_pb2.SeatAssignment:
    found = [a for a in tenant.owner.iter_seat_assignments(tenant.id, hub=hub) if a.user_id == user_id]
    assert len(found) == 1, f"{user_id} holds no single seat of hub {hub}"
    return found[0]


def last_activity(tenant: Tenant, user_id: str, hub: int = SALES) -> datetime | None:
    seat = seat_of(tenant, user_id, hub)
    return to_dt(seat.last_activity_time) if seat.HasField("last_activity_time") else None


def holder(tenant: Tenant, *seats: tuple[str, str]) -> str:
    return tenant.user(seats=seats or (("sales", "professional"),)).user_id


def test_activity_moves_a_seats_last_activity_forward_and_skips_users_without_that_seat(
    own: Running, acme: Tenant
) -> None:
    ann, bob = holder(acme), holder(acme, ("service", "starter"))
    now = own.clock.now()
    assert last_activity(acme, ann) is None, "no use recorded yet"

    reply = acme.owner.record_seat_activity(
        acme.id,
        [
            (ann, "sales", now + timedelta(minutes=1)),
            (bob, "sales", now),  # bob holds a seat of service, not sales
            ("usr_nobody", "sales", now),
        ],
    )
    assert (reply.recorded, reply.skipped) == (1, 2)
    assert last_activity(acme, ann) == now + timedelta(minutes=1)
    assert last_activity(acme, bob, SERVICE) is None

    older = acme.owner.record_seat_activity(acme.id, [(ann, "sales", now)])
    assert (older.recorded, older.skipped) == (0, 1), "an older use does not move it back"
    assert last_activity(acme, ann) == now + timedelta(minutes=1)

    own.clock.advance(hours=2)
    later = acme.system.record_seat_activity(acme.id, [(ann, "sales", own.clock.now())])  # a system call
    assert (later.recorded, later.skipped) == (1, 0)
    assert last_activity(acme, ann) == own.clock.now()


def test_several_reports_of_one_seat_in_a_call_count_as_the_latest(own: Running, acme: Tenant) -> None:
    ann = holder(acme)
    now = own.clock.now()
    times = [now + timedelta(minutes=2), now + timedelta(minutes=3), now + timedelta(minutes=1)]
    reply = acme.owner.record_seat_activity(acme.id, [(ann, SALES, when) for when in times])
    assert reply.recorded == 1, "one seat moved forward"
    assert last_activity(acme, ann) == now + timedelta(minutes=3)


def test_a_use_before_the_seat_was_given_is_skipped(own: Running, acme: Tenant) -> None:
    before = own.clock.now()
    own.clock.advance(hours=1)
    ann = holder(acme)
    reply = acme.owner.record_seat_activity(acme.id, [(ann, "sales", before)])
    assert (reply.recorded, reply.skipped) == (0, 1)
    assert last_activity(acme, ann) is None


def test_an_activity_time_more_than_5_minutes_ahead_of_the_server_is_refused(own: Running, acme: Tenant) -> None:
    ann = holder(acme)
    now = own.clock.now()
    with pytest.raises(errors.InvalidField) as refused:
        acme.owner.record_seat_activity(
            acme.id, [(ann, "sales", now), (ann, "sales", now + AHEAD + timedelta(seconds=1))]
        )
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.reason == "INVALID_FIELD"
    assert any("activity_time" in v.field for v in refused.value.field_violations), refused.value.field_violations
    assert last_activity(acme, ann) is None, "a refused call records none of its reports"

    near = acme.owner.record_seat_activity(acme.id, [(ann, "sales", now + AHEAD - timedelta(seconds=1))])
    assert near.recorded == 1


@pytest.mark.parametrize("count", [0, MAX_REPORTS + 1], ids=["empty", "oversized"])
def test_an_empty_or_oversized_list_is_refused(acme: Tenant, own: Running, count: int) -> None:
    reports = [(f"usr_{n}", "sales", own.clock.now()) for n in range(count)]
    with pytest.raises(errors.InvalidArgument) as refused:
        acme.owner.record_seat_activity(acme.id, reports)
    assert refused.value.reason == "INVALID_FIELD"


def test_a_full_list_of_1000_reports_is_taken(own: Running, acme: Tenant) -> None:
    ann = holder(acme)
    now = own.clock.now()
    reports = [(ann, "sales", now), *((f"usr_unknown_{n}", "sales", now) for n in range(MAX_REPORTS - 1))]
    reply = acme.owner.record_seat_activity(acme.id, reports)
    assert (reply.recorded, reply.skipped) == (1, MAX_REPORTS - 1)


def test_activity_needs_account_access(acme: Tenant, own: Running) -> None:
    ann = holder(acme)
    clerk = acme.user().user_id
    with pytest.raises(errors.PermissionMissing):
        acme.as_user(clerk).record_seat_activity(acme.id, [(ann, "sales", own.clock.now())])
    manager = acme.user(account_access=True).user_id
    assert acme.as_user(manager).record_seat_activity(acme.id, [(ann, "sales", own.clock.now())]).recorded == 1


class LoseFirstAnswer(UnaryUnaryInterceptor):
    """The first call of ``method`` reaches the server and is done there; its answer is replaced
    by UNAVAILABLE, as when a replica goes away after committing."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.answers: list[Any] = []

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        outcome = continuation(details, request)
        if not details.method.endswith(f"/{self.method}"):
            return outcome
        self.answers.append(outcome.result())
        if len(self.answers) == 1:
            raise InjectedError(grpc.StatusCode.UNAVAILABLE)
        return outcome


def test_a_lost_answer_of_record_seat_activity_is_retried_and_records_once(own: Running, acme: Tenant) -> None:
    ann = holder(acme)
    when = own.clock.now() + timedelta(minutes=1)
    lose = LoseFirstAnswer("RecordSeatActivity")
    with SeatsClient(own.target, actor=acme.owner_id, retry=FAST_RETRY, interceptors=[lose]) as client:
        reply = client.record_seat_activity(acme.id, [(ann, "sales", when)])
    first, retried = lose.answers
    assert (first.recorded, first.skipped) == (1, 0), "the first attempt recorded the use"
    assert (retried.recorded, retried.skipped) == (0, 1), "the retry found it recorded"
    assert reply == retried
    assert last_activity(acme, ann) == when


# ---- UpdateSeatPolicy -------------------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 6, -1])
def test_a_reclaim_period_of_1_to_6_days_is_refused(acme: Tenant, days: int) -> None:
    with pytest.raises(errors.InvalidArgument) as refused:
        acme.owner.update_seat_policy(acme.id, "sales", "professional", days)
    assert refused.value.reason == "INVALID_FIELD"
    assert any("idle_reclaim_days" in v.field for v in refused.value.field_violations), refused.value.field_violations
    assert pool(acme.owner.get_seat_summary(acme.id).pools, SALES, PROFESSIONAL).idle_reclaim_days == 0


def test_update_seat_policy_sets_the_pools_policy_and_logs_it(acme: Tenant) -> None:
    reply = acme.owner.update_seat_policy(acme.id, "sales", "professional", 30)
    assert (reply.pool.hub, reply.pool.tier, reply.pool.idle_reclaim_days) == (SALES, PROFESSIONAL, 30)
    assert list(reply.idle_seats) == []
    pools = acme.owner.get_seat_summary(acme.id).pools
    assert pool(pools, SALES, PROFESSIONAL).idle_reclaim_days == 30
    assert pool(pools, SERVICE, STARTER).idle_reclaim_days == 0, "the policy is the pool's own"
    logged = [e for e in acme.owner.iter_seat_events(acme.id) if e.type == SEAT_POLICY_UPDATED]
    assert [(e.hub, e.tier, e.quantity, e.actor) for e in logged] == [(SALES, PROFESSIONAL, 30, acme.owner_id)]

    off = acme.owner.update_seat_policy(acme.id, "sales", "professional", 0)
    assert off.pool.idle_reclaim_days == 0
    assert pool(acme.owner.get_seat_summary(acme.id).pools, SALES, PROFESSIONAL).idle_reclaim_days == 0


def test_update_seat_policy_validate_only_changes_nothing(acme: Tenant) -> None:
    sequence = max(e.sequence for e in acme.owner.iter_seat_events(acme.id))
    reply = acme.owner.update_seat_policy(acme.id, "sales", "professional", 14, validate_only=True)
    assert reply.pool.idle_reclaim_days == 14, "the pool as it would be"
    assert pool(acme.owner.get_seat_summary(acme.id).pools, SALES, PROFESSIONAL).idle_reclaim_days == 0
    assert list(acme.owner.iter_seat_events(acme.id, after_sequence=sequence)) == []


def test_update_seat_policy_needs_account_access(acme: Tenant) -> None:
    clerk = acme.user().user_id
    with pytest.raises(errors.PermissionMissing):
        acme.as_user(clerk).update_seat_policy(acme.id, "sales", "professional", 30)


def test_idle_seats_and_the_idle_since_filter_follow_the_last_activity(own: Running, acme: Tenant) -> None:
    """Four seats given on day 0: busy used on day 9, early used on day 1, idle never used; the
    fourth is of another pool. On day 10 with a 7-day policy, early and idle are idle."""
    day0 = own.clock.now()
    busy, early, idle = holder(acme), holder(acme), holder(acme)
    other = holder(acme, ("service", "starter"))
    own.clock.advance(days=1)
    acme.owner.record_seat_activity(acme.id, [(early, "sales", own.clock.now()), (other, "service", day0)])
    own.clock.advance(days=8)
    acme.owner.record_seat_activity(acme.id, [(busy, "sales", own.clock.now())])
    own.clock.advance(days=1)
    now = own.clock.now()

    checked = acme.owner.update_seat_policy(acme.id, "sales", "professional", 7, validate_only=True)
    assert {(a.user_id, a.tier) for a in checked.idle_seats} == {(early, PROFESSIONAL), (idle, PROFESSIONAL)}
    by_user = {a.user_id: a for a in checked.idle_seats}
    assert to_dt(by_user[early].last_activity_time) == day0 + timedelta(days=1)
    assert not by_user[idle].HasField("last_activity_time")
    assert to_dt(by_user[idle].assign_time) == day0

    longer = acme.owner.update_seat_policy(acme.id, "sales", "professional", 10, validate_only=True)
    assert [a.user_id for a in longer.idle_seats] == [idle], "only the seat idle 10 days or more"

    week_ago = [a.user_id for a in acme.owner.iter_seat_assignments(acme.id, idle_since=now - timedelta(days=7))]
    assert sorted(week_ago) == sorted([early, idle, other]), "other pools count too, unless filtered"
    sales_only = acme.owner.iter_seat_assignments(acme.id, hub="sales", idle_since=now - timedelta(days=7))
    assert sorted(a.user_id for a in sales_only) == sorted([early, idle])
    assert [a.user_id for a in acme.owner.iter_seat_assignments(acme.id, idle_since=day0)] == [], (
        "a seat given at day0 is not idle since day0: its assignment is not before it"
    )
    everyone = acme.owner.iter_seat_assignments(acme.id, idle_since=now + timedelta(seconds=1))
    assert sorted(a.user_id for a in everyone) == sorted([busy, early, idle, other])
    assert len(list(acme.owner.iter_seat_assignments(acme.id))) == 4, "without the filter: every seat"


def test_the_sweep_reclaims_the_idle_seats_into_their_pool(own: Running, acme: Tenant) -> None:
    busy, idle = holder(acme), holder(acme)
    acme.owner.update_seat_policy(acme.id, "sales", "professional", 7)
    sequence = max(e.sequence for e in acme.owner.iter_seat_events(acme.id))
    before = pool(acme.owner.get_seat_summary(acme.id).pools, SALES, PROFESSIONAL)
    own.clock.advance(days=6)
    acme.owner.record_seat_activity(acme.id, [(busy, "sales", own.clock.now())])
    own.clock.advance(days=2)

    own.server.sweeper.sweep_once()

    assert [a.user_id for a in acme.owner.iter_seat_assignments(acme.id, hub="sales")] == [busy]
    after = pool(acme.owner.get_seat_summary(acme.id).pools, SALES, PROFESSIONAL)
    assert (after.purchased, after.assigned, after.available) == (
        before.purchased,
        before.assigned - 1,
        before.available + 1,
    ), "the seat stays in the pool, and billed (S18)"
    events = list(acme.owner.iter_seat_events(acme.id, after_sequence=sequence))
    reclaimed = [e for e in events if e.type == SEAT_RECLAIMED]
    assert [(e.user_id, e.hub, e.tier) for e in reclaimed] == [(idle, SALES, PROFESSIONAL)]
    assert not [e for e in events if e.type == SEAT_UNASSIGNED and e.user_id == busy]
    assert acme.owner.check_seats(acme.id, "sales", [busy, idle]).tiers == [PROFESSIONAL, 0]


def test_async_client_records_activity_and_sets_the_policy(own: Running, acme: Tenant) -> None:
    ann = holder(acme)
    when = own.clock.now() + timedelta(seconds=30)

    async def scenario() -> tuple[int, int, list[str]]:
        async with AsyncSeatsClient(own.target, actor=acme.owner_id, retry=FAST_RETRY) as client:
            reply = await client.record_seat_activity(acme.id, [(ann, "sales", when)])
            policy = await client.update_seat_policy(acme.id, "sales", "professional", 7, validate_only=True)
            idle = [a.user_id async for a in client.iter_seat_assignments(acme.id, idle_since=when)]
            return reply.recorded, policy.pool.idle_reclaim_days, idle

    assert run(scenario()) == (1, 7, [])
    assert last_activity(acme, ann) == when
