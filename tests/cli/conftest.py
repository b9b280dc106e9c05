"""The server most seatctl tests run against: in-process, one per module and database kind, on a
manual clock the tests move; its periodic sweep is off, and a test sweeps when it means to. A module
that needs a server process of its own (test_seatctl.py, test_seatctl_more.py) defines its own
``server``, which takes the place of this one there."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import BACKENDS, Running, database_url, served


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with served(request.param, database_url(request.param, tmp_path_factory), sweep_interval_seconds=0) as running:
        yield running
