"""Fixtures of the fault tests: a fresh database per test on SQLite and on PostgreSQL. Their
`slow` marker is registered in pyproject.toml; slow tests still run in a plain `pytest` run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.store import open_store
from tests.conftest import BACKENDS, database_url


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An empty database for one test: a SQLite file, or a PostgreSQL schema of its own that is
    dropped afterwards (skipped with a reason when SEATS_TEST_POSTGRES_URL is not set)."""
    url = database_url(request.param, tmp_path_factory)
    try:
        yield url
    finally:
        if url.startswith("postgres"):
            store = open_store(url)
            try:
                store.drop_schema()
            finally:
                store.close()
