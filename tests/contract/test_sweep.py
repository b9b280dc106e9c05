"""The periodic sweep: renewals of accounts nobody touches (S5, S9), and request ids that
expire after their window (I5)."""

from __future__ import annotations

from datetime import timedelta

import grpc
import pytest

from service.domain.model import EventType, Tier
from tests.conftest import Running
from tests.contract.helpers import PROFESSIONAL, SALES, new_account, pool, purchase, schedule_removal, to_dt


def test_s5_sweep_renews_an_account_nobody_touches(running: Running) -> None:
    """S5: the removal takes effect at the renewal date, even for an account no call touches."""
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 3))
    schedule_removal(running.seats, tenant, SALES, PROFESSIONAL, 2)
    renewal = to_dt(tenant.account.renewal_time)
    running.clock.advance(renewal - running.clock.now() + timedelta(seconds=1))

    running.server.sweeper.sweep_once()

    # Read straight from the store: a call through the API would renew the account itself.
    account = running.store.get_account(tenant.id)
    assert account is not None
    assert account.term_start == renewal
    stored = running.store.load_pools(tenant.id)
    sales = next(p for p in stored.values() if p.tier == Tier.PROFESSIONAL)
    assert (sales.purchased, sales.pending_removal) == (1, 0)
    types = [e.type for e in running.store.list_events(tenant.id, 0, 1000)]
    assert types[-2:] == [EventType.SEATS_REMOVED, EventType.TERM_RENEWED]
    # A second sweep finds nothing left to do for this account.
    running.server.sweeper.sweep_once()
    assert [e.type for e in running.store.list_events(tenant.id, 0, 1000)] == types


def test_i5_request_ids_expire_after_their_window(running: Running) -> None:
    """I5 holds within the window (24 hours by default); after it, the id may name a new request."""
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 0))
    purchase(running.seats, tenant, SALES, PROFESSIONAL, 1, request_id="buy-once")
    running.clock.advance(hours=23)
    again = purchase(running.seats, tenant, SALES, PROFESSIONAL, 1, request_id="buy-once")
    assert again.pool.purchased == 1  # replayed: no second seat
    with pytest.raises(grpc.RpcError) as refused:  # another payload under a remembered id
        purchase(running.seats, tenant, SALES, PROFESSIONAL, 5, request_id="buy-once")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    running.clock.advance(hours=2)
    running.server.sweeper.sweep_once()
    fresh = purchase(running.seats, tenant, SALES, PROFESSIONAL, 5, request_id="buy-once")
    assert fresh.pool.purchased == 6
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).purchased == 6
