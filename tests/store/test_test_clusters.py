"""The test clusters themselves (tests/pgcluster.py, tests/natsserver.py): a streaming standby sees the
primary's writes and refuses its own, a transaction-mode PgBouncer reaches the primary, and a JetStream
stream outlives a restart of its server. The deployment tests build on these; they prove here that
the clusters are what they claim to be."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import nats
import psycopg2
import pytest

from tests.natsserver import NatsServer, nats_server_available
from tests.pgcluster import PgBouncer, PgCluster, pgbouncer_available, postgres_binaries_available, primary, standby
from tests.pgcluster import wait_replayed as wait_replayed_by


@pytest.fixture(scope="module")
def pg_primary(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgCluster]:
    reason = postgres_binaries_available()
    if reason:
        pytest.skip(reason)
    with primary(tmp_path_factory.mktemp("pg")) as cluster:
        yield cluster


def test_standby_replays_the_primary_and_refuses_writes(pg_primary: PgCluster, tmp_path: Path) -> None:
    assert not pg_primary.is_in_recovery()
    assert pg_primary.port != 5432
    with standby(pg_primary, tmp_path) as replica:
        assert replica.port not in (5432, pg_primary.port)
        assert replica.is_in_recovery()
        marker = uuid.uuid4().hex
        pg_primary.query("CREATE TABLE IF NOT EXISTS replicated (marker text PRIMARY KEY)")
        pg_primary.query("INSERT INTO replicated VALUES (%s)", (marker,))

        wait_replayed_by(pg_primary, replica, timeout=15)

        assert replica.query("SELECT marker FROM replicated WHERE marker = %s", (marker,)) == [(marker,)]
        assert replica.psql(f"SELECT count(*) FROM replicated WHERE marker = '{marker}'") == "1"
        with pytest.raises(psycopg2.errors.ReadOnlySqlTransaction, match="read-only transaction"):
            replica.query("INSERT INTO replicated VALUES ('written on the standby')")
        streaming = pg_primary.query("SELECT state FROM pg_stat_replication")
        assert streaming == [("streaming",)]


def test_pgbouncer_in_transaction_mode_reaches_the_primary(pg_primary: PgCluster, tmp_path: Path) -> None:
    reason = pgbouncer_available()
    if reason:
        pytest.skip(reason)
    pg_primary.create_database("through_bouncer")
    pg_primary.query("CREATE TABLE greeting (word text)", dbname="through_bouncer")
    pg_primary.query("INSERT INTO greeting VALUES ('hello')", dbname="through_bouncer")
    with PgBouncer(pg_primary, tmp_path) as bouncer:
        assert bouncer.port not in (5432, 6432, pg_primary.port)
        conn = psycopg2.connect(bouncer.url("through_bouncer", application_name="seats", connect_timeout=5))
        try:
            with conn, conn.cursor() as cur:
                cur.execute("SELECT word, inet_server_port(), current_setting('application_name') FROM greeting")
                assert cur.fetchall() == [("hello", pg_primary.port, "seats")]
        finally:
            conn.close()
        config = {row[0]: row[1] for row in bouncer.admin("SHOW CONFIG")}
        assert config["pool_mode"] == "transaction"
        assert config["default_pool_size"] == "20"
        assert config["max_client_conn"] == "500"
        # The service's ?schema= travels as options=-c search_path=...: pgbouncer 1.18 refuses it rather
        # than dropping it, so such a URL cannot silently land in the public schema.
        with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter: options"):
            psycopg2.connect(bouncer.url("through_bouncer", options="-c search_path=elsewhere", connect_timeout=5))


def test_jetstream_stream_survives_a_restart(tmp_path: Path) -> None:
    reason = nats_server_available()
    if reason:
        pytest.skip(reason)
    with NatsServer(tmp_path / "nats") as server:
        assert server.port != 4222
        assert server.url == f"nats://127.0.0.1:{server.port}"
        port = server.port

        async def publish() -> int:
            nc = await nats.connect(server.url, connect_timeout=5, allow_reconnect=False)
            try:
                js = nc.jetstream()
                await js.add_stream(name="SMOKE", subjects=["smoke.>"])
                ack = await js.publish("smoke.one", b"kept across restarts")
                return ack.seq
            finally:
                await nc.close()

        async def read(seq: int) -> tuple[bytes, int]:
            nc = await nats.connect(server.url, connect_timeout=5, allow_reconnect=False)
            try:
                js = nc.jetstream()
                message = await js.get_msg("SMOKE", seq)
                info = await js.stream_info("SMOKE")
                return message.data or b"", info.state.messages
            finally:
                await nc.close()

        seq = asyncio.run(publish())
        server.restart()
        assert server.port == port
        assert asyncio.run(read(seq)) == (b"kept across restarts", 1)
