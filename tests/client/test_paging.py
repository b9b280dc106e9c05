"""The iterators page through every item once, in the list's order (AIP-158), with the sync and
the asyncio client: page_size=2 over seven or more items, so every iteration crosses pages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import pytest
from seats import AsyncSeatsClient, SeatsClient

from tests.client.conftest import FAST_RETRY, Tenant, new_tenant
from tests.client.helpers import ENTERPRISE, SALES, SERVICE, STARTER
from tests.conftest import Running
from tests.toolkit import UnaryUnaryInterceptor

T = TypeVar("T")


class CountPages(UnaryUnaryInterceptor):
    """Records the page token of every List call."""

    def __init__(self) -> None:
        self.tokens: dict[str, list[str]] = {}

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        name = details.method.rsplit("/", 1)[-1]
        if name.startswith("List"):
            self.tokens.setdefault(name, []).append(request.page_token)
        return continuation(details, request)


@pytest.fixture
def seven_seated(system: SeatsClient) -> tuple[Tenant, list[str]]:
    """An account with Sales Enterprise (5 included + 2 purchased) and Service Starter; seven users
    hold a Sales seat, and the first two a Service seat too."""
    tenant = new_tenant(system, ("sales", "enterprise", 2), ("service", "starter", 1))
    ids = [tenant.user(seats=(("sales", "enterprise"),)).user_id for _ in range(7)]
    for user_id in ids[:2]:
        tenant.owner.assign_seat(tenant.id, user_id, "service", "starter")
    return tenant, ids


def counting_client(running: Running, tenant: Tenant) -> tuple[SeatsClient, CountPages]:
    pages = CountPages()
    return SeatsClient(running.target, actor=tenant.owner_id, retry=FAST_RETRY, interceptors=[pages]), pages


def test_iter_users_returns_every_user_once_in_user_id_order(
    running: Running, seven_seated: tuple[Tenant, list[str]]
) -> None:
    tenant, ids = seven_seated
    client, pages = counting_client(running, tenant)
    with client:
        users = [u.user_id for u in client.iter_users(tenant.id, page_size=2)]

    assert users == sorted([tenant.owner_id, *ids])
    assert len(pages.tokens["ListUsers"]) == 4
    assert pages.tokens["ListUsers"][0] == "" and all(pages.tokens["ListUsers"][1:])


def test_iter_users_pages_through_a_hub_filter(running: Running, seven_seated: tuple[Tenant, list[str]]) -> None:
    tenant, ids = seven_seated
    with SeatsClient(running.target, actor=tenant.owner_id, retry=FAST_RETRY) as client:
        sales = [u.user_id for u in client.iter_users(tenant.id, hub="sales", page_size=2)]
        service = [u.user_id for u in client.iter_users(tenant.id, hub=SERVICE, page_size=1)]

    assert sales == sorted(ids)
    assert service == sorted(ids[:2])


def test_iter_seat_assignments_returns_each_once_by_user_then_hub(
    running: Running, seven_seated: tuple[Tenant, list[str]]
) -> None:
    tenant, ids = seven_seated
    client, pages = counting_client(running, tenant)
    with client:
        everything = [(a.user_id, a.hub, a.tier) for a in client.iter_seat_assignments(tenant.id, page_size=2)]
        sales = [
            a.user_id for a in client.iter_seat_assignments(tenant.id, hub="sales", tier="enterprise", page_size=2)
        ]

    expected = sorted([(i, SALES, ENTERPRISE) for i in ids] + [(i, SERVICE, STARTER) for i in ids[:2]])
    assert everything == expected
    assert sales == sorted(ids)
    assert len(pages.tokens["ListSeatAssignments"]) == 5 + 4


def test_iter_seat_events_returns_the_log_once_in_sequence_order(
    running: Running, seven_seated: tuple[Tenant, list[str]]
) -> None:
    tenant, _ = seven_seated
    client, pages = counting_client(running, tenant)
    with client:
        events = list(client.iter_seat_events(tenant.id, page_size=2))
        pages_of_everything = len(pages.tokens["ListSeatEvents"])
        later = [e.sequence for e in client.iter_seat_events(tenant.id, after_sequence=5, page_size=2)]

    # 1 account, 1 owner, 2 pools, 7 x (user, seat), 2 service seats.
    sequences = [e.sequence for e in events]
    assert sequences == list(range(1, 4 + 14 + 2 + 1))
    assert later == sequences[5:]
    # 20 events: 10 full pages, and maybe an empty 11th when the server cannot tell the 10th was the last.
    assert pages_of_everything in (10, 11)
    assert len(pages.tokens["ListSeatEvents"]) - pages_of_everything == 8


def test_an_exact_multiple_of_the_page_size_ends_cleanly(system: SeatsClient) -> None:
    tenant = new_tenant(system)
    ids = [tenant.user().user_id for _ in range(5)]  # six users with the owner

    assert [u.user_id for u in tenant.owner.iter_users(tenant.id, page_size=2)] == sorted([tenant.owner_id, *ids])
    assert [u.user_id for u in tenant.owner.iter_users(tenant.id, page_size=6)] == sorted([tenant.owner_id, *ids])
    assert list(tenant.owner.iter_seat_assignments(tenant.id, page_size=2)) == []


def test_iterators_are_lazy(running: Running, seven_seated: tuple[Tenant, list[str]]) -> None:
    tenant, _ = seven_seated
    client, pages = counting_client(running, tenant)
    with client:
        users = client.iter_users(tenant.id, page_size=2)
        assert pages.tokens == {}
        next(users)
        next(users)
        assert len(pages.tokens["ListUsers"]) == 1
        next(users)
        assert len(pages.tokens["ListUsers"]) == 2


# ---- asyncio ------------------------------------------------------------------------------------


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def test_async_iterators_return_every_item_once_in_order(
    running: Running, seven_seated: tuple[Tenant, list[str]]
) -> None:
    tenant, ids = seven_seated

    async def scenario() -> tuple[list[str], list[tuple[str, int]], list[int], list[str]]:
        async with AsyncSeatsClient(running.target, actor=tenant.owner_id, retry=FAST_RETRY) as client:
            users = [u.user_id for u in await collect(client.iter_users(tenant.id, page_size=2))]
            seated: list[tuple[str, int]] = [
                (a.user_id, a.hub) for a in await collect(client.iter_seat_assignments(tenant.id, page_size=2))
            ]
            events = [e.sequence for e in await collect(client.iter_seat_events(tenant.id, page_size=2))]
            service = [u.user_id for u in await collect(client.iter_users(tenant.id, hub="service", page_size=1))]
            return users, seated, events, service

    users, seated, events, service = asyncio.run(asyncio.wait_for(scenario(), 30))

    assert users == sorted([tenant.owner_id, *ids])
    assert seated == sorted([(i, SALES) for i in ids] + [(i, SERVICE) for i in ids[:2]])
    assert events == list(range(1, 21))
    assert service == sorted(ids[:2])
