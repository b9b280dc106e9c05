"""AsyncSeatsClient: the same methods as SeatsClient, awaited, over a grpc.aio channel to the
in-process server (SQLite and PostgreSQL); every method is called at least once and its answer
read, refusals raise the same exception classes, and the async iterators follow the log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable
from contextlib import aclosing
from typing import Any, TypeVar

import grpc.aio
import pytest
from seats import AsyncSeatsClient, errors
from seats.v1 import resources_pb2

from tests.client.conftest import CALL_TIMEOUT, FAST_RETRY
from tests.client.helpers import (
    ACCOUNT_CREATED,
    ASSIGNED,
    FREE,
    MOVED,
    NO_TIER,
    PROFESSIONAL,
    PRORATED_SEATS,
    SALES,
    SEAT_ASSIGNED,
    SEATS_PURCHASED,
    SERVICE,
    STARTER,
    UNCHANGED,
    USER_CREATED,
    cents,
    counts,
    pool,
)
from tests.conftest import Running
from tests.toolkit import AsyncUnaryUnaryInterceptor, unique_email

T = TypeVar("T")

SCENARIO_SECONDS = 30.0
"""Bound of every asyncio.run of these tests."""


def run(coroutine: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, SCENARIO_SECONDS)

    return asyncio.run(bounded())


def closing(events: AsyncIterator[T]) -> aclosing[AsyncGenerator[T, Any]]:
    """aclosing() around a watch of the client, which is an async generator."""
    assert isinstance(events, AsyncGenerator), type(events)
    return aclosing(events)


def client(running: Running, actor: str | None = None) -> AsyncSeatsClient:
    return AsyncSeatsClient(running.target, actor=actor, retry=FAST_RETRY, timeout=CALL_TIMEOUT)


async def new_account(system: AsyncSeatsClient, *subscriptions: tuple[Any, Any, int]) -> tuple[str, str]:
    response = await system.create_account("Async", unique_email("owner"), subscriptions, term_months=1)
    return response.account.account_id, response.account.owner_user_id


def test_async_accounts_pools_and_purchases(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            created = await system.create_account(
                "Async Acme",
                unique_email("owner"),
                [("sales", "PROFESSIONAL", 1), (resources_pb2.HUB_SERVICE, resources_pb2.TIER_STARTER, 0)],
                term_months=1,
            )
            account_id, owner_id = created.account.account_id, created.account.owner_user_id
            assert created.account.display_name == "Async Acme"
            assert {(s.hub, s.tier, s.purchased_seats) for s in created.account.subscriptions} == {
                (SALES, PROFESSIONAL, 1),
                (SERVICE, STARTER, 0),
            }
            assert created.charges

            owner = system.with_actor(owner_id)
            assert owner.channel is system.channel and owner.actor == owner_id and system.actor is None

            assert (await owner.get_account(account_id)).account == created.account
            summary = await owner.get_seat_summary(account_id)
            assert [(p.hub, p.tier) for p in summary.pools] == [(SALES, PROFESSIONAL), (SERVICE, STARTER)]
            assert counts(pool(summary.pools, SALES, PROFESSIONAL)) == (2, 1, 0, 3, 0)

            priced = await owner.purchase_seats(account_id, "sales", "professional", 2, validate_only=True)
            assert (priced.pool.purchased, cents(priced.charge.amount)) == (3, 18000)
            assert pool((await owner.get_seat_summary(account_id)).pools, SALES, PROFESSIONAL).purchased == 1

            bought = await owner.purchase_seats(account_id, SALES, PROFESSIONAL, 2)
            assert counts(bought.pool) == (2, 3, 0, 5, 0)
            assert (bought.charge.kind, bought.charge.quantity, cents(bought.charge.amount)) == (
                PRORATED_SEATS,
                2,
                18000,
            )

            scheduled = await owner.schedule_seat_removal(account_id, "sales", "professional", 2)
            assert counts(scheduled.pool) == (2, 3, 0, 3, 2)
            assert scheduled.pool.removal_effective_time == created.account.renewal_time
            cancelled = await owner.cancel_seat_removal(account_id, "sales", "professional", 2)
            assert counts(cancelled.pool) == (2, 3, 0, 5, 0)

            invoice = await owner.preview_invoice(account_id)
            assert cents(invoice.current_term_total) == 50000 + 9000 + 18000 + 2000
            assert cents(invoice.next_renewal_total) == 50000 + 3 * 9000 + 2000

            events = await owner.list_seat_events(account_id, page_size=3)
            assert [e.type for e in events.events][:1] == [ACCOUNT_CREATED]
            assert [e.sequence for e in events.events] == [1, 2, 3]
            assert events.next_page_token

    run(scenario())


def test_async_users_and_assignments(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            account_id, owner_id = await new_account(
                system, ("sales", "starter", 0), ("sales", "professional", 0), ("service", "free", 0)
            )
            owner = system.with_actor(owner_id)

            ann = (
                await owner.create_user(account_id, unique_email("ann"), display_name="Ann", account_access=True)
            ).user
            assert (ann.display_name, ann.permissions.account_access, list(ann.seats)) == ("Ann", True, [])
            bob = (await owner.create_user(account_id, unique_email("bob"), seats=[("sales", "starter")])).user
            assert [(s.hub, s.tier) for s in bob.seats] == [(SALES, STARTER)]

            as_ann = owner.with_actor(ann.user_id)
            given = await as_ann.assign_seat(account_id, ann.user_id, "sales", "professional")
            assert (given.changed, given.assignment.tier, given.pool.assigned) == (True, PROFESSIONAL, 1)
            with pytest.raises(errors.NoSeatAvailable):
                await as_ann.assign_seat(account_id, ann.user_id, "sales", "starter")
            bought = await owner.assign_seat(account_id, ann.user_id, "sales", "starter", purchase_if_needed=True)
            assert (bought.previous_tier, bought.pool.purchased, bought.charge.quantity) == (PROFESSIONAL, 1, 1)

            unassigned = await owner.unassign_seat(account_id, bob.user_id, "sales")
            assert counts(unassigned.pool) == (1, 1, 1, 1, 0)

            batch = await owner.batch_update_seat_assignments(
                account_id,
                [(ann.user_id, "sales", "professional"), (bob.user_id, "service", FREE), (ann.user_id, SERVICE, None)],
            )
            assert [(r.user_id, r.outcome, r.previous_tier) for r in batch.results] == [
                (ann.user_id, MOVED, STARTER),
                (bob.user_id, ASSIGNED, NO_TIER),
                (ann.user_id, UNCHANGED, NO_TIER),
            ]

            listed = await owner.list_seat_assignments(account_id, hub="sales")
            assert [(a.user_id, a.tier) for a in listed.assignments] == [(ann.user_id, PROFESSIONAL)]
            users = await owner.list_users(account_id, hub=SERVICE)
            assert [u.user_id for u in users.users] == [bob.user_id]

            got = (await owner.get_user(account_id, bob.user_id)).user
            updated = (await owner.update_user(account_id, bob.user_id, display_name="Bobby", etag=got.etag)).user
            assert (updated.display_name, updated.email) == ("Bobby", bob.email)
            with pytest.raises(errors.EtagMismatch):
                await owner.update_user(account_id, bob.user_id, display_name="Stale", etag=got.etag)
            with pytest.raises(errors.UserHoldsSeats):
                await owner.delete_user(account_id, bob.user_id)
            await owner.unassign_seat(account_id, bob.user_id, SERVICE)
            await owner.delete_user(
                account_id, bob.user_id, etag=(await owner.get_user(account_id, bob.user_id)).user.etag
            )
            with pytest.raises(errors.UserNotFound):
                await owner.get_user(account_id, bob.user_id)

    run(scenario())


def test_async_upgrade_subscription(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            account_id, owner_id = await new_account(system, ("sales", "free", 0))
            owner = system.with_actor(owner_id)
            ann = (await owner.create_user(account_id, unique_email(), seats=[("sales", "free")])).user

            upgraded = await owner.upgrade_subscription(
                account_id, "sales", "professional", purchased_seats=0, assign_user_ids=[ann.user_id]
            )

            assert [(s.tier, s.included_seats) for s in upgraded.account.subscriptions] == [(PROFESSIONAL, 2)]
            assert counts(upgraded.pool) == (2, 0, 1, 1, 0)
            assert [(p.hub, p.tier) for p in (await owner.get_seat_summary(account_id)).pools] == [
                (SALES, PROFESSIONAL)
            ]
            with pytest.raises(errors.NotAnUpgrade) as caught:
                await owner.upgrade_subscription(account_id, "sales", "starter")
            assert isinstance(caught.value, errors.FailedPrecondition)

    run(scenario())


def test_async_refusals_raise_the_reason_classes(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            account_id, owner_id = await new_account(system, ("sales", "professional", 0))
            owner = system.with_actor(owner_id)
            with pytest.raises(errors.AccountNotFound) as not_found:
                await system.get_account("acc_does_not_exist")
            assert not_found.value.metadata == {"account_id": "acc_does_not_exist"}
            with pytest.raises(errors.SystemCallOnly):
                await owner.create_account("Nope", unique_email(), [("sales", "starter", 0)])
            with pytest.raises(errors.InvalidField) as invalid:
                await owner.purchase_seats(account_id, "sales", "professional", 0)
            assert [v.field for v in invalid.value.field_violations] == ["quantity"]
            plain = (await owner.create_user(account_id, unique_email())).user
            with pytest.raises(errors.PermissionMissing) as missing:
                await owner.with_actor(plain.user_id).purchase_seats(account_id, "sales", "professional", 1)
            assert missing.value.permission == "edit_billing"

    run(scenario())


def test_async_watch_streams_past_then_new_events(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            account_id, owner_id = await new_account(system, ("sales", "professional", 0))
            owner = system.with_actor(owner_id)
            async with closing(owner.watch_seat_events(account_id)) as watch:
                past = [await asyncio.wait_for(anext(watch), 5) for _ in range(3)]
                assert [e.sequence for e in past] == [1, 2, 3]
                await owner.purchase_seats(account_id, "sales", "professional", 1)
                ann = (await owner.create_user(account_id, unique_email(), seats=[("sales", "professional")])).user
                new = [await asyncio.wait_for(anext(watch), 5) for _ in range(3)]
            assert [(e.sequence, e.type, e.user_id) for e in new] == [
                (4, SEATS_PURCHASED, ""),
                (5, USER_CREATED, ann.user_id),
                (6, SEAT_ASSIGNED, ann.user_id),
            ]

            async with closing(owner.watch_seat_events(account_id, after_sequence=4)) as resumed:
                assert [(await asyncio.wait_for(anext(resumed), 5)).sequence for _ in range(2)] == [5, 6]

    run(scenario())


def test_async_watch_of_another_account_is_refused(running: Running) -> None:
    async def scenario() -> None:
        async with client(running) as system:
            account_id, _ = await new_account(system)
            _, stranger = await new_account(system)
            watch = system.with_actor(stranger).watch_seat_events(account_id)
            async with closing(watch):
                with pytest.raises(errors.ActorNotInAccount):
                    await asyncio.wait_for(anext(watch), 5)

    run(scenario())


def test_async_client_on_a_channel_you_made_leaves_it_open(running: Running) -> None:
    async def scenario() -> None:
        async with grpc.aio.insecure_channel(running.target) as channel:
            async with AsyncSeatsClient(channel=channel) as system:
                account_id, _ = await new_account(system)
            again = AsyncSeatsClient(channel=channel)
            assert (await again.get_account(account_id)).account.account_id == account_id

    run(scenario())


class AsyncRecorder(AsyncUnaryUnaryInterceptor):
    """Records each call's method and metadata."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[tuple[str, str], ...]]] = []

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        self.seen.append((method, tuple((k, v) for k, v in (details.metadata or ()))))
        return await continuation(details, request)


def test_async_metadata_goes_with_every_call_beside_the_actor(running: Running) -> None:
    recorder = AsyncRecorder()

    async def scenario() -> str:
        async with client(running) as system:
            account_id, owner_id = await new_account(system)
        async with AsyncSeatsClient(
            running.target, actor=owner_id, metadata=[("x-trace", "t-1")], interceptors=[recorder]
        ) as traced:
            await traced.get_account(account_id)
            await traced.with_actor(None).get_account(account_id)
        return owner_id

    owner_id = run(scenario())

    assert recorder.seen == [
        ("/seats.v1.SeatService/GetAccount", (("x-trace", "t-1"), ("x-seats-actor", owner_id))),
        ("/seats.v1.SeatService/GetAccount", (("x-trace", "t-1"),)),
    ]


def test_async_interceptors_apply_to_a_channel_you_made(running: Running) -> None:
    # SeatsClient(channel=..., interceptors=...) wraps your channel; the asyncio client must not drop
    # them silently either (grpc.aio cannot wrap a made channel, so refusing the pair would do too).
    recorder = AsyncRecorder()

    async def scenario() -> None:
        async with grpc.aio.insecure_channel(running.target) as channel:
            try:
                made = AsyncSeatsClient(channel=channel, interceptors=[recorder])
            except (TypeError, ValueError):
                return
            await made.create_account("Intercepted", unique_email("owner"), [("sales", "starter", 0)])
            assert [method for method, _ in recorder.seen] == ["/seats.v1.SeatService/CreateAccount"], (
                "AsyncSeatsClient ignored the interceptors given with a channel"
            )

    run(scenario())
