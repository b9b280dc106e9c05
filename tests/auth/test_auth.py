"""Service authentication (bearer tokens with a scope), TLS and mutual TLS, the refusal to
serve a non-loopback address without authentication, and tenant isolation."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2
from seats import RetryPolicy, SeatsClient, errors
from seats.v1 import seat_service_pb2, seat_service_pb2_grpc, user_service_pb2

from service.auth import hash_token, is_loopback
from service.config import Config, ConfigError
from service.server import create_server
from service.store import open_store
from tests.auth.certs import Certificates, make_certificates
from tests.served import COMMAND_SECONDS, REPO, free_port
from tests.toolkit import code_and_reason, health_check, reflection_info

SYSTEM_TOKEN = "seats_system-token-for-tests"
ACTOR_TOKEN = "seats_actor-token-for-tests"
CALL_SECONDS = 10
ONE_TRY = RetryPolicy(max_attempts=1)


@pytest.fixture(scope="module")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    path.write_text(
        json.dumps(
            {
                "tokens": [
                    {"name": "provisioning", "scope": "system", "sha256": hash_token(SYSTEM_TOKEN)},
                    {"name": "support-desk", "scope": "actor", "sha256": hash_token(ACTOR_TOKEN)},
                ]
            }
        )
    )
    return path


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@contextmanager
def serving(config: Config, tmp_path: Path) -> Iterator[int]:
    """An in-process server with this configuration on a fresh SQLite file; yields its port."""
    url = f"sqlite:///{tmp_path / f'seats-{free_port()}.db'}"
    store = open_store(url)
    store.migrate()
    server, port = create_server(replace(config, database_url=url), store=store)
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()
        store.close()


@pytest.fixture(scope="module")
def token_port(tokens_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    config = Config(address="127.0.0.1:0", auth_tokens_file=str(tokens_file), sweep_interval_seconds=0)
    with serving(config, tmp_path_factory.mktemp("token-server")) as port:
        yield port


def test_a_call_without_a_token_is_unauthenticated(token_port: int) -> None:
    with SeatsClient(f"127.0.0.1:{token_port}") as anonymous:
        assert code_and_reason(lambda: anonymous.get_account("acc_x")) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_MISSING",
        )
        with pytest.raises(errors.TokenMissing):
            anonymous.create_account("Acme", "owner@acme.test", [("sales", "starter", 0)])


def test_a_wrong_token_is_unauthenticated(token_port: int) -> None:
    with SeatsClient(f"127.0.0.1:{token_port}", token="seats_not-a-real-token") as stranger:
        assert code_and_reason(lambda: stranger.get_seat_summary("acc_x")) == (
            grpc.StatusCode.UNAUTHENTICATED,
            "TOKEN_INVALID",
        )


def test_streams_are_checked_too(token_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_port}") as channel:
        stream = seat_service_pb2_grpc.SeatServiceStub(channel).WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id="acc_x"), timeout=CALL_SECONDS
        )
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stream))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_token(token_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_port}") as channel:
        answer = health_check(channel)(health_pb2.HealthCheckRequest(), timeout=CALL_SECONDS)
    assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_system_token_may_call_without_an_actor(token_port: int) -> None:
    with SeatsClient(f"127.0.0.1:{token_port}", token=SYSTEM_TOKEN) as system:
        account = system.create_account("Acme", "owner@acme.test", [("sales", "starter", 0)]).account
        assert system.get_seat_summary(account.account_id).pools[0].included == 1


def test_actor_token_must_name_an_actor(token_port: int) -> None:
    with SeatsClient(f"127.0.0.1:{token_port}", token=SYSTEM_TOKEN) as system:
        account = system.create_account("Acme", "owner@acme.test", [("sales", "starter", 0)]).account
    with SeatsClient(f"127.0.0.1:{token_port}", token=ACTOR_TOKEN) as desk:
        assert code_and_reason(lambda: desk.get_seat_summary(account.account_id)) == (
            grpc.StatusCode.PERMISSION_DENIED,
            "ACTOR_REQUIRED",
        )
        owner = desk.with_actor(account.owner_user_id)
        assert owner.get_seat_summary(account.account_id).pools[0].included == 1
        # With an actor, the user's permissions decide: creating accounts stays a system call.
        with pytest.raises(errors.SystemCallOnly):
            owner.create_account("Other", "other@acme.test", [("sales", "starter", 0)])


def test_actor_token_may_explore_the_contract_by_reflection(token_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{token_port}") as channel:
        answers = reflection_info(channel)(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
            metadata=(("authorization", f"Bearer {ACTOR_TOKEN}"),),
            timeout=CALL_SECONDS,
        )
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert "seats.v1.SeatService" in names


def test_tokens_file_with_a_bad_entry_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text(json.dumps({"tokens": [{"name": "x", "scope": "root", "sha256": "0" * 64}]}))
    with pytest.raises(ValueError, match="scope"):
        create_server(
            Config(address="127.0.0.1:0", auth_tokens_file=str(bad)), store=open_store(f"sqlite:///{tmp_path / 'x.db'}")
        )


def test_new_token_prints_a_token_and_its_entry() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.server", "new-token", "--name", "billing", "--scope", "system"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=True,
    )
    token, entry = done.stdout.splitlines()
    assert json.loads(entry) == {"name": "billing", "scope": "system", "sha256": hash_token(token)}


# ---- where the server may listen --------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1:50051", True),
        ("127.9.9.9:1", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.1.2.3:50051", False),
        ("seats.internal:50051", False),
    ],
)
def test_loopback_addresses(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_non_loopback_without_authentication_is_refused(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="without authentication"):
        create_server(Config(address="0.0.0.0:0"), store=store)


def test_non_loopback_insecure_serves_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    with caplog.at_level(logging.WARNING, logger="seats.server"):
        server, port = create_server(Config(address="0.0.0.0:0", insecure=True, sweep_interval_seconds=0), store=store)
    assert port > 0
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    server.stop(None).wait()


def test_non_loopback_with_tokens_serves(tmp_path: Path, tokens_file: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    store.migrate()
    server, port = create_server(
        Config(address="0.0.0.0:0", auth_tokens_file=str(tokens_file), sweep_interval_seconds=0), store=store
    )
    assert port > 0
    server.stop(None).wait()


def test_the_server_process_exits_2_on_a_non_loopback_address_without_authentication(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.server",
            "serve",
            "--address",
            f"0.0.0.0:{free_port()}",
            "--database-url",
            f"sqlite:///{tmp_path / 'x.db'}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert done.returncode == 2
    assert "without authentication" in done.stderr


# ---- TLS -------------------------------------------------------------------------------------


def test_tls_serves_clients_that_trust_the_ca(certs: Certificates, tmp_path: Path) -> None:
    config = Config(
        address="127.0.0.1:0", tls_cert=str(certs.server.cert), tls_key=str(certs.server.key), sweep_interval_seconds=0
    )
    with serving(config, tmp_path) as port:
        trusted = grpc.ssl_channel_credentials(root_certificates=certs.ca.read_bytes())
        with SeatsClient(f"localhost:{port}", credentials=trusted) as system:
            assert system.create_account("Acme", "o@acme.test", [("sales", "starter", 0)]).account.account_id
        with SeatsClient(f"localhost:{port}", retry=ONE_TRY, timeout=5) as plaintext, pytest.raises(errors.Unavailable):
            plaintext.get_account("acc_x")


def test_mutual_tls_needs_a_client_certificate_from_the_ca(certs: Certificates, tmp_path: Path) -> None:
    config = Config(
        address="127.0.0.1:0",
        tls_cert=str(certs.server.cert),
        tls_key=str(certs.server.key),
        tls_client_ca=str(certs.ca),
        sweep_interval_seconds=0,
    )
    ca = certs.ca.read_bytes()

    def client(pem: object | None) -> SeatsClient:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=pem.key.read_bytes() if pem else None,  # type: ignore[attr-defined]
            certificate_chain=pem.cert.read_bytes() if pem else None,  # type: ignore[attr-defined]
        )
        return SeatsClient(f"localhost:{port}", credentials=credentials, timeout=5, retry=ONE_TRY)

    with serving(config, tmp_path) as port:
        with client(certs.client) as known:
            assert known.create_account("Acme", "o@acme.test", [("sales", "starter", 0)]).account.account_id
        for pem in (None, certs.stranger):
            with client(pem) as refused, pytest.raises(errors.Unavailable):
                refused.get_account("acc_x")


# ---- tenant isolation ------------------------------------------------------------------------


def cross_account_calls(client: SeatsClient, account_id: str, user_id: str) -> dict[str, Callable[[], object]]:
    """Every RPC but CreateAccount, on one account and user."""
    return {
        "GetAccount": lambda: client.get_account(account_id),
        "GetSeatSummary": lambda: client.get_seat_summary(account_id),
        "PurchaseSeats": lambda: client.purchase_seats(account_id, "sales", "professional", 1),
        "ScheduleSeatRemoval": lambda: client.schedule_seat_removal(account_id, "sales", "professional", 1),
        "CancelSeatRemoval": lambda: client.cancel_seat_removal(account_id, "sales", "professional", 1),
        "AssignSeat": lambda: client.assign_seat(account_id, user_id, "sales", "professional"),
        "UnassignSeat": lambda: client.unassign_seat(account_id, user_id, "sales"),
        "BatchUpdateSeatAssignments": lambda: client.batch_update_seat_assignments(
            account_id, [(user_id, "sales", "professional")]
        ),
        "ListSeatAssignments": lambda: client.list_seat_assignments(account_id),
        "CheckSeats": lambda: client.check_seats(account_id, "sales", [user_id]),
        "RecordSeatActivity": lambda: client.record_seat_activity(account_id, [(user_id, "sales", datetime.now(UTC))]),
        "UpdateSeatPolicy": lambda: client.update_seat_policy(account_id, "sales", "professional", 30),
        "RequestSeat": lambda: client.request_seat(account_id, "sales", "professional", user_id=user_id),
        "ListSeatRequests": lambda: client.list_seat_requests(account_id),
        "ApproveSeatRequest": lambda: client.approve_seat_request(account_id, "sreq_0000000000000000000000"),
        "DenySeatRequest": lambda: client.deny_seat_request(account_id, "sreq_0000000000000000000000"),
        "ListInvoices": lambda: client.list_invoices(account_id),
        "GetInvoice": lambda: client.get_invoice(account_id, "inv_0000000000000000000000"),
        "UpgradeSubscription": lambda: client.upgrade_subscription(account_id, "sales", "enterprise"),
        "PreviewInvoice": lambda: client.preview_invoice(account_id),
        "ListSeatEvents": lambda: client.list_seat_events(account_id),
        "WatchSeatEvents": lambda: next(client.watch_seat_events(account_id, resume=False)),
        "CreateUser": lambda: client.create_user(account_id, "x@b.test"),
        "GetUser": lambda: client.get_user(account_id, user_id),
        "ListUsers": lambda: client.list_users(account_id),
        "UpdateUser": lambda: client.update_user(account_id, user_id, display_name="x"),
        "DeleteUser": lambda: client.delete_user(account_id, user_id),
    }


def test_an_actor_learns_nothing_about_another_account(token_port: int) -> None:
    """Every RPC on account B, by an actor of account A, is PERMISSION_DENIED before B is looked
    up: the answer is the same whether B exists or not (AIP-193, AIP-211)."""
    with SeatsClient(f"127.0.0.1:{token_port}", token=SYSTEM_TOKEN) as system:
        a = system.create_account("A", "owner@a.test", [("sales", "professional", 1)]).account
        b = system.create_account("B", "owner@b.test", [("sales", "professional", 1)]).account
        b_user = system.with_actor(b.owner_user_id).create_user(b.account_id, "u@b.test").user
    with SeatsClient(f"127.0.0.1:{token_port}", token=ACTOR_TOKEN, actor=a.owner_user_id) as actor_of_a:
        for account_id, user_id in ((b.account_id, b_user.user_id), ("acc_does_not_exist", "usr_nobody")):
            calls = cross_account_calls(actor_of_a, account_id, user_id)
            names = {
                m.name
                for s in (seat_service_pb2, user_service_pb2)
                for svc in s.DESCRIPTOR.services_by_name.values()
                for m in svc.methods
            }
            assert set(calls) == names - {"CreateAccount"}
            for name, call in calls.items():
                assert code_and_reason(call) == (grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"), name
    with SeatsClient(f"127.0.0.1:{token_port}", token=SYSTEM_TOKEN, actor=b.owner_user_id) as owner_of_b:
        assert owner_of_b.get_user(b.account_id, b_user.user_id).user.display_name == "u@b.test"
        assert owner_of_b.get_seat_summary(b.account_id).pools[0].purchased == 1


def test_seatctl_sends_the_token_from_the_environment(token_port: int) -> None:
    seatctl = [sys.executable, "-m", "seats.cli", "--target", f"127.0.0.1:{token_port}", "--json"]
    create = [
        "accounts",
        "create",
        "--name",
        "Acme",
        "--owner-email",
        "o@acme.test",
        "--subscription",
        "sales:starter:0",
    ]
    without = subprocess.run([*seatctl, *create], capture_output=True, text=True, timeout=COMMAND_SECONDS, check=False)
    assert without.returncode == 1
    assert "TOKEN_MISSING" in without.stderr
    with_token = subprocess.run(
        [*seatctl, *create],
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=False,
        env={**os.environ, "SEATS_TOKEN": SYSTEM_TOKEN},
    )
    assert with_token.returncode == 0, with_token.stderr
    assert json.loads(with_token.stdout)["account"]["account_id"].startswith("acc_")
