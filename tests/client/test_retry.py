"""Retries (I5): the client retries UNAVAILABLE and DEADLINE_EXCEEDED under the same request id, so a
call whose answer was lost has its effect once. A client interceptor lets the first attempt reach
the server and finish there, then hands the client an error instead of the answer."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message
from seats import AsyncSeatsClient, RetryPolicy, SeatsClient, errors

from tests.client.conftest import FAST_RETRY, Tenant
from tests.client.helpers import (
    PROFESSIONAL,
    SALES,
    SEAT_ASSIGNED,
    SEATS_PURCHASED,
    USER_CREATED,
    InjectedError,
    pool,
)
from tests.conftest import Running
from tests.served import free_port
from tests.toolkit import AsyncUnaryUnaryInterceptor, UnaryUnaryInterceptor, unique_email

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED


class LoseAnswers(UnaryUnaryInterceptor):
    """For calls of `method`: every attempt reaches the server and waits for its answer; the
    first `lose` answers are replaced by an error with `code`. Records every attempt."""

    def __init__(self, method: str, code: grpc.StatusCode = UNAVAILABLE, lose: int = 1) -> None:
        self.method, self.code, self.lose = method, code, lose
        self.requests: list[Message] = []
        self.answers: list[Message] = []
        self.lock = threading.Lock()

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Message) -> Any:
        if not details.method.endswith(f"/{self.method}"):
            return continuation(details, request)
        with self.lock:
            self.requests.append(request)
            attempt = len(self.requests)
        outcome = continuation(details, request)
        answer = outcome.result()  # the server has answered: whatever the call does is done
        with self.lock:
            self.answers.append(answer)
        if attempt <= self.lose:
            raise InjectedError(self.code)
        return outcome

    @property
    def request_ids(self) -> list[str]:
        return [r.request_id for r in self.requests]  # type: ignore[attr-defined]


def client_with(running: Running, tenant: Tenant, *interceptors: Any, retry: RetryPolicy = FAST_RETRY) -> SeatsClient:
    return SeatsClient(running.target, actor=tenant.owner_id, retry=retry, interceptors=interceptors, timeout=10.0)


def events_of(tenant: Tenant, kind: int) -> list[Any]:
    return [e for e in tenant.owner.iter_seat_events(tenant.id) if e.type == kind]


def purchased(tenant: Tenant) -> int:
    return pool(tenant.owner.get_seat_summary(tenant.id).pools, SALES, PROFESSIONAL).purchased


@pytest.mark.parametrize("code", [UNAVAILABLE, DEADLINE_EXCEEDED])
def test_a_lost_answer_is_retried_under_the_same_request_id_and_buys_once(
    running: Running, tenant: Tenant, code: grpc.StatusCode
) -> None:
    lose = LoseAnswers("PurchaseSeats", code)

    with client_with(running, tenant, lose) as client:
        response = client.purchase_seats(tenant.id, "sales", "professional", 2)

    assert len(lose.requests) == 2
    first_id, second_id = lose.request_ids
    assert first_id and first_id == second_id
    # The retry returned the first call's result (I5) and bought nothing more.
    assert lose.answers[0] == lose.answers[1] == response
    assert response.pool.purchased == 3
    assert purchased(tenant) == 3
    [event] = events_of(tenant, SEATS_PURCHASED)
    assert (event.quantity, event.request_id) == (2, first_id)


def test_a_caller_supplied_request_id_is_kept_on_every_attempt(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("CreateUser", lose=2)
    request_id = f"caller-{unique_email()}"

    with client_with(running, tenant, lose) as client:
        user = client.create_user(tenant.id, unique_email(), seats=[("sales", "professional")], request_id=request_id)

    assert lose.request_ids == [request_id] * 3
    assert [(e.user_id, e.request_id) for e in events_of(tenant, USER_CREATED)][-1:] == [
        (user.user.user_id, request_id)
    ]
    assert [e.user_id for e in events_of(tenant, SEAT_ASSIGNED)] == [user.user.user_id]
    assert len(list(tenant.owner.iter_users(tenant.id))) == 2


def test_each_call_gets_its_own_request_id(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("PurchaseSeats", lose=0)

    with client_with(running, tenant, lose) as client:
        client.purchase_seats(tenant.id, "sales", "professional", 1)
        client.purchase_seats(tenant.id, "sales", "professional", 1)

    first, second = lose.request_ids
    assert first and second and first != second
    assert purchased(tenant) == 3


def test_without_retries_unavailable_surfaces_and_the_effect_happened_once(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("PurchaseSeats")

    with client_with(running, tenant, lose, retry=RetryPolicy(max_attempts=1)) as client:
        with pytest.raises(errors.Unavailable) as caught:
            client.purchase_seats(tenant.id, "sales", "professional", 2, request_id="client-no-retry")
        assert len(lose.requests) == 1
        error = caught.value
        assert isinstance(error, errors.SeatsError)
        assert (error.code, error.reason, error.message) == (UNAVAILABLE, "", "injected by the test")
        assert purchased(tenant) == 3

        # The caller's own retry under the same id has no second effect either (I5).
        again = client.purchase_seats(tenant.id, "sales", "professional", 2, request_id="client-no-retry")

    assert again == lose.answers[0]
    assert purchased(tenant) == 3
    assert len(events_of(tenant, SEATS_PURCHASED)) == 1


def test_without_retries_deadline_exceeded_surfaces(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("AssignSeat", DEADLINE_EXCEEDED)
    ann = tenant.user()

    with (
        client_with(running, tenant, lose, retry=RetryPolicy(max_attempts=1)) as client,
        pytest.raises(errors.DeadlineExceeded) as caught,
    ):
        client.assign_seat(tenant.id, ann.user_id, "sales", "professional")

    assert caught.value.code == DEADLINE_EXCEEDED
    assert [e.user_id for e in events_of(tenant, SEAT_ASSIGNED)] == [ann.user_id]


def test_retries_stop_after_max_attempts(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("PurchaseSeats", lose=10)
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)

    with client_with(running, tenant, lose, retry=policy) as client, pytest.raises(errors.Unavailable):
        client.purchase_seats(tenant.id, "sales", "professional", 2)

    assert len(lose.requests) == 3
    assert len(set(lose.request_ids)) == 1
    assert purchased(tenant) == 3
    assert len(events_of(tenant, SEATS_PURCHASED)) == 1


def test_reads_are_retried_too(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("GetSeatSummary", lose=2)

    with client_with(running, tenant, lose) as client:
        summary = client.get_seat_summary(tenant.id)

    assert len(lose.requests) == 3
    assert pool(summary.pools, SALES, PROFESSIONAL).purchased == 1


def test_a_refusal_is_not_retried(running: Running, tenant: Tenant) -> None:
    lose = LoseAnswers("CancelSeatRemoval", lose=0)

    with client_with(running, tenant, lose) as client, pytest.raises(errors.NotPendingRemoval):
        client.cancel_seat_removal(tenant.id, "sales", "professional", 1)

    assert len(lose.requests) == 1


def test_an_unreachable_server_is_tried_max_attempts_times_then_unavailable(tenant: Tenant) -> None:
    attempts: list[str] = []

    class Count(UnaryUnaryInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            attempts.append(details.method)
            return continuation(details, request)

    policy = RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.02)
    with (
        SeatsClient(f"127.0.0.1:{free_port()}", retry=policy, timeout=5.0, interceptors=[Count()]) as client,
        pytest.raises(errors.Unavailable) as caught,
    ):
        client.get_account(tenant.id)

    assert caught.value.code == UNAVAILABLE
    assert len(attempts) == 3


def test_retry_policy_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(initial_backoff=0.1, max_backoff=0.5, multiplier=2.0, max_attempts=4)
    for attempt in range(1, 10):
        ceiling = min(0.5, 0.1 * 2 ** (attempt - 1))
        assert all(0 <= policy.delay(attempt) <= ceiling for _ in range(50))
    unavailable = errors.Unavailable(UNAVAILABLE, "", "connection refused")
    assert policy.should_retry(unavailable, 3) and not policy.should_retry(unavailable, 4)
    assert policy.should_retry(errors.DeadlineExceeded(DEADLINE_EXCEEDED, "", "deadline"), 1)
    assert not policy.should_retry(
        errors.NoSeatAvailable(grpc.StatusCode.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE", ""), 1
    )
    # A lost race is retried; a stale etag is not: the caller must read again first.
    assert policy.should_retry(errors.ConcurrentChange(grpc.StatusCode.ABORTED, "CONCURRENT_CHANGE", ""), 1)
    assert not policy.should_retry(errors.EtagMismatch(grpc.StatusCode.ABORTED, "ETAG_MISMATCH", ""), 1)


# ---- asyncio ------------------------------------------------------------------------------------


class AsyncLoseAnswers(AsyncUnaryUnaryInterceptor):
    """LoseAnswers for grpc.aio."""

    def __init__(self, method: str, code: grpc.StatusCode = UNAVAILABLE, lose: int = 1) -> None:
        self.method, self.code, self.lose = method, code, lose
        self.requests: list[Message] = []
        self.answers: list[Message] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Message) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        if not method.endswith(f"/{self.method}"):
            return await continuation(details, request)
        self.requests.append(request)
        call = await continuation(details, request)
        self.answers.append(await call)
        if len(self.requests) <= self.lose:
            raise grpc.aio.AioRpcError(
                self.code, grpc.aio.Metadata(), grpc.aio.Metadata(), "injected by the test", None
            )
        return call


@pytest.mark.parametrize("code", [UNAVAILABLE, DEADLINE_EXCEEDED])
def test_async_a_lost_answer_is_retried_under_the_same_request_id(
    running: Running, tenant: Tenant, code: grpc.StatusCode
) -> None:
    lose = AsyncLoseAnswers("PurchaseSeats", code)

    async def scenario() -> Any:
        async with AsyncSeatsClient(
            running.target, actor=tenant.owner_id, retry=FAST_RETRY, interceptors=[lose], timeout=10.0
        ) as client:
            return await client.purchase_seats(tenant.id, "sales", "professional", 2)

    response = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert len(lose.requests) == 2
    assert lose.requests[0].request_id and lose.requests[0].request_id == lose.requests[1].request_id  # type: ignore[attr-defined]
    assert response == lose.answers[0]
    assert purchased(tenant) == 3
    assert len(events_of(tenant, SEATS_PURCHASED)) == 1


def test_async_without_retries_unavailable_surfaces(running: Running, tenant: Tenant) -> None:
    lose = AsyncLoseAnswers("PurchaseSeats")

    async def scenario() -> None:
        async with AsyncSeatsClient(
            running.target, actor=tenant.owner_id, retry=RetryPolicy(max_attempts=1), interceptors=[lose]
        ) as client:
            await client.purchase_seats(tenant.id, "sales", "professional", 2)

    with pytest.raises(errors.Unavailable) as caught:
        asyncio.run(asyncio.wait_for(scenario(), 30))

    assert caught.value.code == UNAVAILABLE
    assert len(lose.requests) == 1
    assert purchased(tenant) == 3
