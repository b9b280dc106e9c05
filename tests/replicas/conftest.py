"""Fixtures of the replica tests: a fresh PostgreSQL schema per test. Several server processes on
one database need a database they can share, so these tests run on PostgreSQL only and are
skipped, with the reason shown, when SEATS_TEST_POSTGRES_URL is not set."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.store import open_store
from tests.conftest import POSTGRES_URL, database_url


@pytest.fixture
def pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty PostgreSQL schema of this test's own, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("replicas share one database: these tests need PostgreSQL (set SEATS_TEST_POSTGRES_URL)")
    url = database_url("postgres", tmp_path_factory)
    try:
        yield url
    finally:
        store = open_store(url)
        try:
            store.drop_schema()
        finally:
            store.close()
