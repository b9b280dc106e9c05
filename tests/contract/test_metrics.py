"""The server's Prometheus metrics: every call counted with its method and code, refusals of the
credential check included, and no label that names an account or a user."""

from __future__ import annotations

import json
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from seats import SeatsClient, errors
from seats.v1 import seat_service_pb2

from service.auth import hash_token
from service.config import Config
from service.server import SeatServer, create_server
from service.store import open_store

TOKEN = "seats_metrics-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """The samples of the grpc_server_* families, keyed by name and labels as exposed."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("grpc_server_"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def handled(samples: dict[str, float], method: str, code: str) -> float:
    return sum(
        v
        for k, v in samples.items()
        if k.startswith("grpc_server_handled_total{") and f'grpc_method="{method}"' in k and f'grpc_code="{code}"' in k
    )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, int, SeatServer]]:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "t", "scope": "system", "sha256": hash_token(TOKEN)}]}))
    url = f"sqlite:///{tmp_path / 'seats.db'}"
    store = open_store(url)
    store.migrate()
    metrics_port = free_port()
    config = Config(
        address="127.0.0.1:0",
        database_url=url,
        sweep_interval_seconds=0,
        auth_tokens_file=str(tokens),
        metrics_address=f"127.0.0.1:{metrics_port}",
    )
    server, port = create_server(config, store)
    server.start()
    try:
        yield f"127.0.0.1:{port}", metrics_port, server
    finally:
        server.stop(None).wait()
        store.close()


def test_every_call_is_counted_with_its_method_and_code(served: tuple[str, int, SeatServer]) -> None:
    target, metrics_port, _ = served
    with SeatsClient(target, token=TOKEN) as client:
        account = client.create_account("M", "owner@m.test", [("sales", "professional", 0)]).account
        owner = client.with_actor(account.owner_user_id)
        for _ in range(3):
            owner.get_seat_summary(account.account_id)
        with pytest.raises(errors.SeatsError):
            owner.get_seat_summary("acc_missing")
    with SeatsClient(target) as no_token, pytest.raises(errors.SeatsError) as refused:
        no_token.get_seat_summary(account.account_id)
    assert refused.value.code == grpc.StatusCode.UNAUTHENTICATED
    samples = scrape(metrics_port)
    assert handled(samples, "GetSeatSummary", "OK") == 3
    assert handled(samples, "GetSeatSummary", "PERMISSION_DENIED") == 1  # an actor of another account
    assert handled(samples, "GetSeatSummary", "UNAUTHENTICATED") == 1  # refused by the credential check
    assert handled(samples, "CreateAccount", "OK") == 1
    started = sum(v for k, v in samples.items() if k.startswith("grpc_server_started_total{") and "GetSeatSummary" in k)
    assert started == 5
    count = sum(
        v for k, v in samples.items() if k.startswith("grpc_server_handling_seconds_count{") and "GetSeatSummary" in k
    )
    assert count == 5


def test_no_label_names_an_account_or_a_user(served: tuple[str, int, SeatServer]) -> None:
    target, metrics_port, _ = served
    with SeatsClient(target, token=TOKEN) as client:
        account = client.create_account("M", "owner@m.test", [("sales", "professional", 0)]).account
        client.with_actor(account.owner_user_id).get_user(account.account_id, account.owner_user_id)
    text = "\n".join(scrape(metrics_port))
    assert account.account_id not in text
    assert account.owner_user_id not in text
    assert seat_service_pb2.DESCRIPTOR.services_by_name["SeatService"].full_name in text
