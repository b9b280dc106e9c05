"""Etags on seat pools (AIP-154): a purchase or removal sent with the etag it read is refused
with ABORTED when the pool changed since, so two administrators cannot act on stale counts."""

from __future__ import annotations

import grpc
from seats.v1 import seat_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import PROFESSIONAL, SALES, new_account, pool
from tests.toolkit import refused


def test_pool_etag_changes_with_every_change(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 2))
    first = pool(running.seats, tenant, SALES, PROFESSIONAL).etag
    assert first
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).etag == first  # reading changes nothing
    bought = running.seats.PurchaseSeats(
        seat_service_pb2.PurchaseSeatsRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1, etag=first
        ),
        metadata=actor(tenant.owner_id),
    )
    assert bought.pool.etag not in ("", first)
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).etag == bought.pool.etag


def test_a_purchase_on_a_stale_etag_is_aborted_and_changes_nothing(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 2))
    stale = pool(running.seats, tenant, SALES, PROFESSIONAL).etag
    running.seats.ScheduleSeatRemoval(
        seat_service_pb2.ScheduleSeatRemovalRequest(account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1),
        metadata=actor(tenant.owner_id),
    )
    with refused(grpc.StatusCode.ABORTED, "ETAG_MISMATCH") as refusal:
        running.seats.PurchaseSeats(
            seat_service_pb2.PurchaseSeatsRequest(
                account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=5, etag=stale
            ),
            metadata=actor(tenant.owner_id),
        )
    assert refusal.info.metadata["etag"] == pool(running.seats, tenant, SALES, PROFESSIONAL).etag
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).purchased == 2


def test_removals_on_a_stale_etag_are_aborted(running: Running) -> None:
    tenant = new_account(running.seats, (SALES, PROFESSIONAL, 3))
    stale = pool(running.seats, tenant, SALES, PROFESSIONAL).etag
    running.seats.ScheduleSeatRemoval(
        seat_service_pb2.ScheduleSeatRemovalRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1, etag=stale
        ),
        metadata=actor(tenant.owner_id),
    )
    for request in (
        seat_service_pb2.ScheduleSeatRemovalRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1, etag=stale
        ),
    ):
        with refused(grpc.StatusCode.ABORTED, "ETAG_MISMATCH"):
            running.seats.ScheduleSeatRemoval(request, metadata=actor(tenant.owner_id))
    with refused(grpc.StatusCode.ABORTED, "ETAG_MISMATCH"):
        running.seats.CancelSeatRemoval(
            seat_service_pb2.CancelSeatRemovalRequest(
                account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1, etag=stale
            ),
            metadata=actor(tenant.owner_id),
        )
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).pending_removal == 1
