"""Per-call options of both clients (``timeout=``, ``retry=``, ``metadata=``), the deadline a
call's timeout sets over all its attempts, the client's own error for an unknown hub or tier
name, and ``seats.views``. A small gRPC server stands in for the service where a test needs to
see what arrives or to refuse on purpose: it records each attempt's headers, time left and
arrival, and answers UNAVAILABLE (or nothing, until released) as told."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.money_pb2 import Money
from seats import ACTOR_HEADER, ONE_TRY, AsyncSeatsClient, RetryPolicy, SeatsClient, UnknownName, errors, views
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc

from tests.client.conftest import CALL_TIMEOUT, FAST_RETRY, Tenant
from tests.client.helpers import PROFESSIONAL, SALES, cents, pool, to_dt
from tests.conftest import Running
from tests.contract.test_readme import block
from tests.served import COMMAND_SECONDS
from tests.toolkit import unique_email

T = TypeVar("T")

SLACK = 0.3
"""What a call may run over its timeout: scheduling, and the last attempt's way back."""

ROUNDING = 0.15
"""What a server may read beyond a deadline: grpc-timeout travels rounded up."""

TRANSIT = 0.05
"""How long an attempt may take from the client to the server's handler."""

MANY_TRIES = RetryPolicy(max_attempts=1000, initial_backoff=0.02, max_backoff=0.1)
"""A policy that would go on for long: only the deadline stops it."""


@dataclass
class Attempt:
    headers: list[tuple[str, str]]
    time_left: float | None
    arrival: float
    request: Any

    def values(self, key: str) -> list[str]:
        return [v for k, v in self.headers if k == key]


@dataclass
class Stand(seat_service_pb2_grpc.SeatServiceServicer):
    """GetAccount and PurchaseSeats: the first ``fail`` attempts (all when ``fail`` is None) end
    with ``code``; with ``hang``, attempts wait for ``release`` instead of answering."""

    fail: int | None = 0
    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE
    hang: bool = False
    attempts: list[Attempt] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)

    def _attempt(self, request: Any, context: grpc.ServicerContext) -> None:
        remaining = context.time_remaining()
        self.attempts.append(
            Attempt(
                [(k, str(v)) for k, v in context.invocation_metadata()],
                remaining if remaining is not None and remaining < 1e6 else None,
                time.monotonic(),
                request,
            )
        )
        if self.hang:
            self.release.wait(CALL_TIMEOUT)
        if self.fail is None or len(self.attempts) <= self.fail:
            context.abort(self.code, "the stand refuses")

    def GetAccount(
        self, request: seat_service_pb2.GetAccountRequest, context: grpc.ServicerContext
    ) -> seat_service_pb2.GetAccountResponse:
        self._attempt(request, context)
        return seat_service_pb2.GetAccountResponse(account=resources_pb2.Account(account_id=request.account_id))

    def PurchaseSeats(
        self, request: seat_service_pb2.PurchaseSeatsRequest, context: grpc.ServicerContext
    ) -> seat_service_pb2.PurchaseSeatsResponse:
        self._attempt(request, context)
        return seat_service_pb2.PurchaseSeatsResponse()


@dataclass
class Served:
    target: str
    stand: Stand


@pytest.fixture
def served() -> Iterator[Served]:
    """A fresh stand behind a real gRPC server; a test sets the fields of ``served.stand``."""
    stand = Stand()  # type: ignore[abstract]  # serves only the two methods the tests call
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    seat_service_pb2_grpc.add_SeatServiceServicer_to_server(stand, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield Served(f"127.0.0.1:{port}", stand)
    finally:
        stand.release.set()
        server.stop(0).wait()


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, CALL_TIMEOUT * 3)

    return asyncio.run(bounded())


# ---- metadata -------------------------------------------------------------------------------


def test_per_call_metadata_reaches_the_server_merged_with_the_clients_headers(served: Served) -> None:
    with SeatsClient(served.target, actor="usr_a", token="tok", metadata=[("x-team", "blue")]) as client:
        client.get_account("acc_1", metadata=[("x-trace", "t1"), ("X-Team", "red")])
        client.get_account("acc_2")
    with_options, without = served.stand.attempts
    assert with_options.values(ACTOR_HEADER) == ["usr_a"]
    assert with_options.values("authorization") == ["Bearer tok"]
    assert with_options.values("x-trace") == ["t1"]
    assert with_options.values("x-team") == ["red"]  # the call's header replaces the client's
    assert without.values("x-trace") == []  # a call's headers are that call's only
    assert without.values("x-team") == ["blue"]


def test_per_call_metadata_may_replace_the_actor_of_one_call(served: Served) -> None:
    with SeatsClient(served.target, actor="usr_a") as client:
        client.get_account("acc_1", metadata=[(ACTOR_HEADER, "usr_b")])
    assert served.stand.attempts[0].values(ACTOR_HEADER) == ["usr_b"]


def test_async_per_call_metadata_reaches_the_server_merged_with_the_clients_headers(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncSeatsClient(served.target, actor="usr_a", token="tok") as client:
            await client.get_account("acc_1", metadata=[("x-trace", "t1")])

    run(scenario())
    (attempt,) = served.stand.attempts
    assert attempt.values(ACTOR_HEADER) == ["usr_a"]
    assert attempt.values("authorization") == ["Bearer tok"]
    assert attempt.values("x-trace") == ["t1"]


def test_per_call_metadata_reaches_the_real_service(tenant: Tenant) -> None:
    """The service takes a call with extra headers, and the call's actor header is the one used."""
    other = tenant.user()
    as_system = tenant.system
    reply = as_system.get_user(tenant.id, other.user_id, metadata=[(ACTOR_HEADER, tenant.owner_id), ("x-trace", "1")])
    assert reply.user.user_id == other.user_id
    with pytest.raises(errors.SeatsError):  # an actor of no account is refused: the header was sent
        as_system.get_user(tenant.id, other.user_id, metadata=[(ACTOR_HEADER, "usr_nobody")])


# ---- timeout --------------------------------------------------------------------------------


def test_per_call_timeout_reaches_the_server_as_the_deadline(served: Served) -> None:
    with SeatsClient(served.target, timeout=60.0) as client:
        client.get_account("acc_1", timeout=2.0)
        client.get_account("acc_2")
        client.get_account("acc_3", timeout=None)
    short, default, unbounded = served.stand.attempts
    assert short.time_left is not None and 1.0 < short.time_left <= 2.0 + ROUNDING
    assert default.time_left is not None and 50.0 < default.time_left <= 60.0 + ROUNDING
    assert unbounded.time_left is None


def test_a_timeout_that_is_not_positive_is_refused_before_any_call(served: Served) -> None:
    with SeatsClient(served.target) as client, pytest.raises(ValueError, match="timeout"):
        client.get_account("acc_1", timeout=0)
    assert served.stand.attempts == []


def test_async_per_call_timeout_reaches_the_server_as_the_deadline(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncSeatsClient(served.target, timeout=60.0) as client:
            await client.get_account("acc_1", timeout=2.0)
            await client.get_account("acc_2")

    run(scenario())
    short, default = served.stand.attempts
    assert short.time_left is not None and 1.0 < short.time_left <= 2.0 + ROUNDING
    assert default.time_left is not None and 50.0 < default.time_left <= 60.0 + ROUNDING


def test_async_a_calls_deadline_runs_from_when_it_is_awaited(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncSeatsClient(served.target) as client:
            pending = client.get_account("acc_1", timeout=1.0)
            await asyncio.sleep(0.6)
            await pending

    run(scenario())
    (attempt,) = served.stand.attempts
    assert attempt.time_left is not None and 0.8 < attempt.time_left <= 1.0 + ROUNDING


# ---- retry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("one_try", [None, ONE_TRY])
def test_retry_none_or_one_try_makes_one_attempt(served: Served, one_try: RetryPolicy | None) -> None:
    served.stand.fail = 2
    with SeatsClient(served.target, retry=FAST_RETRY) as client, pytest.raises(errors.Unavailable):
        client.get_account("acc_1", retry=one_try)
    assert len(served.stand.attempts) == 1


def test_a_per_call_retry_policy_replaces_the_clients(served: Served) -> None:
    served.stand.fail = 2
    with SeatsClient(served.target, retry=ONE_TRY) as client:
        reply = client.get_account("acc_1", retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
        assert reply.account.account_id == "acc_1"
        assert len(served.stand.attempts) == 3
        served.stand.attempts.clear()
        with pytest.raises(errors.Unavailable):
            client.get_account("acc_1", retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    assert len(served.stand.attempts) == 2


def test_a_mutating_call_retried_under_a_per_call_policy_keeps_its_request_id(served: Served) -> None:
    served.stand.fail = 2
    with SeatsClient(served.target, retry=ONE_TRY) as client:
        client.purchase_seats("acc_1", "sales", "professional", 1, retry=FAST_RETRY, timeout=5.0)
    ids = {attempt.request.request_id for attempt in served.stand.attempts}
    assert len(served.stand.attempts) == 3 and len(ids) == 1 and "" not in ids


def test_async_retry_none_makes_one_attempt_and_a_policy_retries(served: Served) -> None:
    served.stand.fail = 2

    async def scenario() -> None:
        async with AsyncSeatsClient(served.target, retry=FAST_RETRY) as client:
            with pytest.raises(errors.Unavailable):
                await client.get_account("acc_1", retry=None)
            assert len(served.stand.attempts) == 1
            reply = await client.get_account("acc_1", retry=RetryPolicy(max_attempts=3, initial_backoff=0.01))
            assert reply.account.account_id == "acc_1"

    run(scenario())
    assert len(served.stand.attempts) == 3


# ---- the deadline over all attempts ---------------------------------------------------------


def check_bounded(stand: Stand, started: float, elapsed: float, timeout: float) -> None:
    """The call took at most its timeout (and some slack), made several attempts, started none
    after the deadline, and gave each no more time than was left: every attempt's deadline is
    the call's."""
    assert elapsed <= timeout + SLACK, elapsed
    assert 3 <= len(stand.attempts) < MANY_TRIES.max_attempts
    for a in stand.attempts:
        assert a.arrival - started < timeout + TRANSIT
        assert a.time_left is not None
        assert a.arrival - started + a.time_left <= timeout + ROUNDING, (a.arrival - started, a.time_left)
    last = stand.attempts[-1]
    assert last.time_left is not None and last.time_left < timeout / 2  # later attempts got less time


def test_the_timeout_bounds_the_whole_call_with_its_retries(served: Served) -> None:
    served.stand.fail = None  # UNAVAILABLE for ever
    timeout = 1.0
    with SeatsClient(served.target, retry=MANY_TRIES, timeout=CALL_TIMEOUT) as client:
        started = time.monotonic()
        with pytest.raises(errors.Unavailable):
            client.get_account("acc_1", timeout=timeout)
        elapsed = time.monotonic() - started
    check_bounded(served.stand, started, elapsed, timeout)


def test_the_clients_timeout_bounds_each_call_with_its_retries(served: Served) -> None:
    served.stand.fail = None
    timeout = 0.8
    with SeatsClient(served.target, retry=MANY_TRIES, timeout=timeout) as client:
        started = time.monotonic()
        with pytest.raises(errors.Unavailable):
            client.get_account("acc_1")
        elapsed = time.monotonic() - started
    check_bounded(served.stand, started, elapsed, timeout)


def test_async_the_timeout_bounds_the_whole_call_with_its_retries(served: Served) -> None:
    served.stand.fail = None
    timeout = 1.0

    async def scenario() -> tuple[float, float]:
        async with AsyncSeatsClient(served.target, retry=MANY_TRIES, timeout=CALL_TIMEOUT) as client:
            started = time.monotonic()
            with pytest.raises(errors.Unavailable):
                await client.get_account("acc_1", timeout=timeout)
            return started, time.monotonic()

    started, ended = run(scenario())
    check_bounded(served.stand, started, ended - started, timeout)


def test_an_attempt_that_outlives_the_deadline_is_not_retried(served: Served) -> None:
    served.stand.hang = True
    with SeatsClient(served.target, retry=MANY_TRIES) as client:
        started = time.monotonic()
        with pytest.raises(errors.DeadlineExceeded):
            client.get_account("acc_1", timeout=0.5)
        elapsed = time.monotonic() - started
    assert elapsed <= 0.5 + SLACK
    assert len(served.stand.attempts) == 1


@dataclass(frozen=True)
class LongWaits(RetryPolicy):
    """Waits longer than any test's timeout before each retry."""

    def delay(self, attempt: int) -> float:
        return 5.0


def test_no_wait_begins_that_would_end_after_the_deadline(served: Served) -> None:
    served.stand.fail = None
    with SeatsClient(served.target, retry=LongWaits()) as client:
        started = time.monotonic()
        with pytest.raises(errors.Unavailable):
            client.get_account("acc_1", timeout=2.0)
        elapsed = time.monotonic() - started
    assert elapsed < 1.0  # the last error at once, not after a wait of 5 s
    assert len(served.stand.attempts) == 1


# ---- unknown names --------------------------------------------------------------------------


def test_an_unknown_hub_is_the_clients_own_error_listing_the_hubs(served: Served) -> None:
    with SeatsClient(served.target) as client, pytest.raises(UnknownName) as raised:
        client.assign_seat("acc_1", "usr_1", "marketing", "professional")
    assert isinstance(raised.value, ValueError)
    assert (raised.value.kind, raised.value.name, raised.value.choices) == ("hub", "marketing", ("sales", "service"))
    assert str(raised.value) == "unknown hub 'marketing': use one of sales, service"
    assert served.stand.attempts == []


def test_an_unknown_tier_is_the_clients_own_error_listing_the_tiers(served: Served) -> None:
    with SeatsClient(served.target) as client, pytest.raises(UnknownName) as raised:
        client.purchase_seats("acc_1", "sales", "gold", 1)
    assert raised.value.kind == "tier"
    assert str(raised.value) == "unknown tier 'gold': use one of free, starter, professional, enterprise"
    assert served.stand.attempts == []


def test_unknown_names_in_lists_of_pairs_are_refused_too(system: SeatsClient) -> None:
    with pytest.raises(UnknownName, match="unknown hub 'marketing'"):
        system.create_account("Bad", unique_email("owner"), [("sales", "starter", 0), ("marketing", "starter", 0)])
    with pytest.raises(UnknownName, match="unknown tier 'platinum'"):
        system.batch_update_seat_assignments("acc_1", [("usr_1", "sales", "platinum")])


def test_async_an_unknown_hub_is_refused_before_any_call(served: Served) -> None:
    async def scenario() -> None:
        async with AsyncSeatsClient(served.target) as client:
            with pytest.raises(UnknownName, match="use one of sales, service"):
                await client.list_users("acc_1", hub="support")

    run(scenario())
    assert served.stand.attempts == []


# ---- views ----------------------------------------------------------------------------------


def test_amount_is_an_exact_decimal_with_its_currency() -> None:
    assert views.amount(Money(units=20, currency_code="USD")) == views.Amount(Decimal("20.00"), "USD")
    assert views.amount(Money(units=-3, nanos=-250_000_000, currency_code="EUR")).value == Decimal("-3.25")
    tiny = views.amount(Money(units=0, nanos=1, currency_code="USD"))
    assert tiny.value == Decimal("0.000000001") and str(tiny) == "0.000000001 USD"
    assert str(views.amount(Money(units=1000, nanos=500_000_000, currency_code="USD"))) == "1000.50 USD"


def test_enum_names_are_short_and_lowercase() -> None:
    assert views.hub_name(resources_pb2.HUB_SALES) == "sales"
    assert views.tier_name(resources_pb2.TIER_PROFESSIONAL) == "professional"
    assert views.tier_name(resources_pb2.TIER_UNSPECIFIED) is None
    assert views.tier_name(99) == 99  # a value newer than this client
    event_type = resources_pb2.SeatEventType.DESCRIPTOR
    assert views.enum_name(event_type, resources_pb2.SEAT_EVENT_TYPE_SEAT_ASSIGNED) == "seat_assigned"


def test_moment_is_an_aware_utc_datetime() -> None:
    ts = Timestamp(seconds=1_767_225_600)
    assert views.moment(ts) == datetime(2026, 1, 1, tzinfo=UTC)
    assert views.moment(ts).tzinfo is UTC


def test_view_reads_a_reply_and_leaves_the_message_as_it_was(tenant: Tenant) -> None:
    reply = tenant.owner.get_seat_summary(tenant.id)
    before = reply.SerializeToString()
    seen = views.view(reply)
    assert reply.SerializeToString() == before
    sales = pool(reply.pools, SALES, PROFESSIONAL)
    (pool_view,) = (p for p in seen["pools"] if p["hub"] == "sales" and p["tier"] == "professional")
    assert pool_view["purchased"] == sales.purchased == 1
    assert pool_view["unit_price"] == views.Amount(Decimal(cents(sales.unit_price)) / 100, "USD")
    assert pool_view["removal_effective_time"] is None  # unset: no removal pending
    assert seen["renewal_time"] == to_dt(reply.renewal_time)
    assert seen["renewal_time"].tzinfo is UTC


def test_view_reads_charges_users_and_events(tenant: Tenant) -> None:
    (charge,) = (views.view(c) for c in tenant.charges if c.kind == resources_pb2.CHARGE_KIND_SEATS)
    assert (charge["kind"], charge["hub"], charge["tier"]) == ("seats", "sales", "professional")
    assert charge["amount"] == views.Amount(Decimal(cents(tenant.charges[1].amount)) / 100, "USD")
    assert isinstance(charge["amount"].value, Decimal) and charge["amount"].currency == "USD"
    assert isinstance(charge["period_start"], datetime) and charge["period_start"].tzinfo is UTC
    user = views.view(tenant.user(seats=(("sales", "professional"),), edit_billing=True))
    assert user["permissions"] == {"super_admin": False, "edit_billing": True, "account_access": False}
    assert user["seats"] == [{"hub": "sales", "tier": "professional"}]
    kinds = [views.view(e)["type"] for e in tenant.owner.iter_seat_events(tenant.id)]
    assert kinds[0] == "account_created" and "user_created" in kinds


def test_async_replies_have_the_same_views(running: Running, tenant: Tenant) -> None:
    async def scenario() -> dict[str, Any]:
        async with AsyncSeatsClient(running.target, actor=tenant.owner_id, timeout=CALL_TIMEOUT) as client:
            reply = await client.get_account(tenant.id, timeout=5.0, metadata=[("x-trace", "1")])
            return views.view(reply)["account"]  # type: ignore[no-any-return]

    account = run(scenario())
    assert account == views.view(tenant.account)
    assert account["subscriptions"][0]["hub"] == "sales"
    assert account["create_time"].tzinfo is UTC


# ---- the README's example -------------------------------------------------------------------


def test_readme_call_options_example_runs(running: Running) -> None:
    done = subprocess.run(
        [sys.executable, "-c", block("client-options", "python")],
        capture_output=True,
        text=True,
        env={**os.environ, "SEATS_TARGET": running.target},
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"the example failed:\n{done.stdout}\n{done.stderr}"
    lines = done.stdout.splitlines()
    assert "pool: sales professional 1 purchased" in lines
    assert "refused: unknown hub 'marketing': use one of sales, service" in lines
    (renews,) = (line for line in lines if line.startswith("renews: "))
    assert datetime.fromisoformat(renews.removeprefix("renews: ")).tzinfo is not None
    (charged,) = (line for line in lines if line.startswith("charged: "))
    amounts = charged.removeprefix("charged: ").split(", ")
    assert len(amounts) == 2 and all(a.endswith(" USD") and Decimal(a.split()[0]) > 0 for a in amounts), amounts
