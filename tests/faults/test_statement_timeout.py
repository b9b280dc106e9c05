"""A statement that cannot finish (here: it waits on a row lock another session holds) ends the
call after --statement-timeout-ms with UNAVAILABLE, instead of holding a handler thread and a
database connection for as long as the lock lasts; the next call, once the lock is gone, works."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg2
import pytest
from seats.v1 import seat_service_pb2, seat_service_pb2_grpc

from service.store import open_store
from tests.conftest import POSTGRES_URL, database_url
from tests.contract.helpers import PROFESSIONAL, SALES, new_account
from tests.served import serving

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL, reason="statement timeouts are PostgreSQL's: set SEATS_TEST_POSTGRES_URL"
)

TIMEOUT_MS = 300


@pytest.fixture
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = database_url("postgres", tmp_path_factory)
    try:
        yield url
    finally:
        store = open_store(url)
        store.drop_schema()
        store.close()


def test_a_write_stuck_on_a_lock_ends_unavailable_after_the_statement_timeout(pg_url: str, tmp_path: Path) -> None:
    schema = pg_url.rsplit("schema=", 1)[1]
    flags = ("--statement-timeout-ms", str(TIMEOUT_MS))
    with (
        serving(tmp_path, database_url=pg_url, flags=flags) as server,
        grpc.insecure_channel(server.address) as channel,
    ):
        seats = seat_service_pb2_grpc.SeatServiceStub(channel)
        tenant = new_account(seats, (SALES, PROFESSIONAL, 0))
        request = seat_service_pb2.PurchaseSeatsRequest(account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, quantity=1)
        holder = psycopg2.connect(POSTGRES_URL, options=f"-c search_path={schema}")
        try:
            with holder.cursor() as cursor:  # a transaction that holds the account's row
                cursor.execute("SELECT 1 FROM accounts WHERE account_id = %s FOR UPDATE", (tenant.id,))
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                seats.PurchaseSeats(request, metadata=tenant.as_owner, timeout=30)
            took = time.monotonic() - start
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, refused.value
            assert took < 10, f"the call waited {took:.1f}s on the lock"
        finally:
            holder.rollback()
            holder.close()
        answer = seats.PurchaseSeats(request, metadata=tenant.as_owner, timeout=30)
        assert answer.pool.purchased == 1
