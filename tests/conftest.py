"""Fixtures: a real server on an ephemeral port, on SQLite and (when configured) on PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import pytest
from seats.v1 import seat_service_pb2_grpc, user_service_pb2_grpc

from service.clock import ManualClock
from service.config import Config
from service.server import SeatServer, create_server
from service.store import Store, open_store

POSTGRES_URL = os.environ.get("SEATS_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def pytest_report_header(config: pytest.Config) -> str:
    if POSTGRES_URL:
        return f"seats: PostgreSQL tests run against {POSTGRES_URL}"
    return "seats: SEATS_TEST_POSTGRES_URL is not set: the PostgreSQL half of the store tests is SKIPPED"


def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database of the given kind."""
    if backend == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'seats.db'}"
    if not POSTGRES_URL:
        pytest.skip("PostgreSQL tests need SEATS_TEST_POSTGRES_URL")
    schema = f"seats_test_{uuid.uuid4().hex[:12]}"
    sep = "&" if "?" in POSTGRES_URL else "?"
    return f"{POSTGRES_URL}{sep}schema={schema}"


@dataclass
class Running:
    """A served instance: its channel, stubs and clock."""

    backend: str
    target: str
    channel: grpc.Channel
    seats: seat_service_pb2_grpc.SeatServiceStub
    users: user_service_pb2_grpc.UserServiceStub
    clock: ManualClock
    database_url: str
    server: SeatServer
    store: Store


@contextmanager
def served(backend: str, url: str, **settings: Any) -> Iterator[Running]:
    """A server on a fresh database at url, with Config's defaults and settings, a manual clock
    and a channel; the schema is dropped on the way out."""
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    store = open_store(url)
    store.migrate()
    config = Config(address="127.0.0.1:0", database_url=url, **settings)
    server, port = create_server(config, store=store, clock=clock)
    server.start()
    target = f"127.0.0.1:{port}"
    channel = grpc.insecure_channel(target)
    try:
        yield Running(
            backend=backend,
            target=target,
            channel=channel,
            seats=seat_service_pb2_grpc.SeatServiceStub(channel),
            users=user_service_pb2_grpc.UserServiceStub(channel),
            clock=clock,
            database_url=url,
            server=server,
            store=store,
        )
    finally:
        channel.close()
        server.stop(None).wait()
        store.drop_schema()
        store.close()


@pytest.fixture(scope="session", params=BACKENDS)
def running(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One server per database kind for the whole session; tests make their own accounts. Its
    sweep runs when a test calls sweep_once, never by itself: a background sweep at a moment of
    real time would renew or reclaim between a test's clock moves and its checks."""
    with served(request.param, database_url(request.param, tmp_path_factory), sweep_interval_seconds=0) as running:
        yield running


@pytest.fixture
def seats(running: Running) -> seat_service_pb2_grpc.SeatServiceStub:
    return running.seats


@pytest.fixture
def users(running: Running) -> user_service_pb2_grpc.UserServiceStub:
    return running.users


@pytest.fixture
def clock(running: Running) -> ManualClock:
    return running.clock


def actor(user_id: str) -> tuple[tuple[str, str], ...]:
    """Call metadata that names the acting user."""
    return (("x-seats-actor", user_id),)


REPO = Path(__file__).resolve().parent.parent
