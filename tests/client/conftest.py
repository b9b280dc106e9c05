"""Fixtures of the client tests: SeatsClient over a real channel to the session's in-process server
(SQLite, and PostgreSQL when configured), and accounts made through the client itself."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TypedDict, Unpack

import pytest
from seats import RetryPolicy, SeatsClient
from seats.requests import HubLike, TierLike
from seats.v1 import resources_pb2

from tests.conftest import Running
from tests.toolkit import unique_email

FAST_RETRY = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)
"""Retries with a backoff short enough for a test."""

CALL_TIMEOUT = 10.0
"""Each attempt's deadline: no call of a test blocks longer."""


class Permissions(TypedDict, total=False):
    """The permissions of a new user, as create_user takes them."""

    super_admin: bool
    edit_billing: bool
    account_access: bool


@dataclass
class Tenant:
    """An account made for one test, and clients acting as the system and as its owner."""

    system: SeatsClient
    owner: SeatsClient
    account: resources_pb2.Account
    charges: tuple[resources_pb2.Charge, ...]

    @property
    def id(self) -> str:
        return self.account.account_id

    @property
    def owner_id(self) -> str:
        return self.account.owner_user_id

    def user(
        self, *, seats: tuple[tuple[HubLike, TierLike], ...] = (), **permissions: Unpack[Permissions]
    ) -> resources_pb2.User:
        """A new user of the account, created by its owner."""
        return self.owner.create_user(self.id, unique_email(), seats=seats, **permissions).user

    def as_user(self, user_id: str) -> SeatsClient:
        return self.owner.with_actor(user_id)


def new_tenant(system: SeatsClient, *subscriptions: tuple[HubLike, TierLike, int], term_months: int = 1) -> Tenant:
    """An account made by a system call; subscriptions are (hub, tier, purchased seats)."""
    response = system.create_account(
        f"Account {uuid.uuid4().hex[:8]}",
        unique_email("owner"),
        subscriptions or (("sales", "professional", 0),),
        term_months=term_months,
    )
    owner = system.with_actor(response.account.owner_user_id)
    return Tenant(system, owner, response.account, tuple(response.charges))


@pytest.fixture
def system(running: Running) -> Iterator[SeatsClient]:
    """A client without an actor (trusted system calls), on its own channel."""
    with SeatsClient(running.target, timeout=CALL_TIMEOUT, retry=FAST_RETRY) as client:
        yield client


@pytest.fixture
def tenant(system: SeatsClient) -> Tenant:
    """An account with Sales Professional (2 included seats) and 1 purchased seat, on a 1-month term."""
    return new_tenant(system, ("sales", "professional", 1))
