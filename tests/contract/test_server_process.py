"""The server as an operator runs it: `python -m service.server` in its own process, reached over real sockets
by grpcurl and by Python channels. Migrations, reflection, health, SIGTERM and one listener per port."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc

from tests.served import (
    CALL_SECONDS,
    COMMAND_SECONDS,
    REPO,
    ServerProcess,
    grpcurl,
    grpcurl_ok,
    health_status,
    json_field,
    launch,
    seats_command,
    server_env,
    serving,
)
from tests.toolkit import health_watch

GRACE_SECONDS = 5.0
"""--grace-seconds of the servers that are sent SIGTERM."""
EXIT_AFTER_SIGTERM_SECONDS = GRACE_SECONDS + 5.0
"""A stopped server has the grace period to finish its calls, then a few seconds to let go of the process."""
SAME_PORT_EXIT_SECONDS = 15.0
"""A server that cannot listen has this long to say so and exit."""

SERVED_NAMES = ("", "seats.v1.SeatService", "seats.v1.UserService")
"""The health service names the server reports: the whole server and each of its services."""

ACME = {
    "display_name": "Acme",
    "owner_email": "owner@acme.test",
    "term_months": 12,
    "subscriptions": [{"hub": "HUB_SALES", "tier": "TIER_PROFESSIONAL", "purchased_seats": 1}],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that only talk to it."""
    with serving(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def stoppable(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own, for a test that sends it SIGTERM."""
    with serving(tmp_path, flags=("--grace-seconds", str(GRACE_SECONDS))) as running:
        yield running


def test_migrate_twice_exits_zero_and_the_second_run_applies_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    runs = [
        subprocess.run(
            seats_command("migrate", "--database-url", url),
            cwd=REPO,
            env=server_env(),
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        for _ in range(2)
    ]
    for number, run in enumerate(runs, start=1):
        assert run.returncode == 0, f"migrate run {number} exited {run.returncode}\n{run.stderr}"
    ready = [json.loads(line) for line in runs[1].stderr.splitlines() if '"schema ready"' in line]
    assert len(ready) == 1, runs[1].stderr
    assert ready[0]["applied"] == [], f"the second migrate applied migrations again: {ready[0]}"
    assert ready[0]["version"] >= 1, ready[0]


# 2. grpcurl over reflection.


def test_grpcurl_lists_the_seat_user_and_health_services(server: ServerProcess) -> None:
    listed = set(grpcurl_ok(server, "list").split())
    assert {"seats.v1.SeatService", "seats.v1.UserService", "grpc.health.v1.Health"} <= listed, listed


def test_grpcurl_describes_seat_service_rpcs(server: ServerProcess) -> None:
    described = grpcurl_ok(server, "describe", "seats.v1.SeatService")
    assert "seats.v1.SeatService is a service" in described, described
    for rpc in ("CreateAccount", "AssignSeat", "PurchaseSeats", "GetSeatSummary", "WatchSeatEvents"):
        assert f"rpc {rpc} " in described, f"{rpc} missing from:\n{described}"


def test_grpcurl_describes_assign_seat_request_fields(server: ServerProcess) -> None:
    described = grpcurl_ok(server, "describe", "seats.v1.AssignSeatRequest")
    assert "seats.v1.AssignSeatRequest is a message" in described, described
    for declaration in (
        "string account_id = 1;",
        "string user_id = 2;",
        ".seats.v1.Hub hub = 3;",
        ".seats.v1.Tier tier = 4;",
        "bool purchase_if_needed = 5;",
        "string request_id = 6;",
    ):
        assert declaration in described, f"{declaration!r} missing from:\n{described}"


def test_grpcurl_creates_an_account_and_reads_its_pool(server: ServerProcess) -> None:
    created = json.loads(grpcurl_ok(server, "seats.v1.SeatService/CreateAccount", data=ACME))
    account = json_field(created, "account")
    account_id, owner_id = json_field(account, "account_id"), json_field(account, "owner_user_id")
    assert account_id and owner_id, created
    assert json_field(account, "display_name") == "Acme", account

    found = json.loads(
        grpcurl_ok(
            server,
            "seats.v1.SeatService/GetSeatSummary",
            data={"account_id": account_id},
            headers=(f"x-seats-actor: {owner_id}",),
        )
    )
    pools = json_field(found, "pools", [])
    assert [(p.get("hub"), p.get("tier")) for p in pools] == [("HUB_SALES", "TIER_PROFESSIONAL")], found
    assert json_field(pools[0], "included", 0) == 2, pools[0]
    assert json_field(pools[0], "purchased", 0) == 1, pools[0]


def test_grpcurl_purchase_with_unspecified_hub_is_invalid_argument(server: ServerProcess) -> None:
    acme_two = ACME | {"owner_email": "owner@acme-two.test"}
    created = json.loads(grpcurl_ok(server, "seats.v1.SeatService/CreateAccount", data=acme_two))
    account = json_field(created, "account")
    refused = grpcurl(
        server,
        "seats.v1.SeatService/PurchaseSeats",
        data={
            "account_id": json_field(account, "account_id"),
            "hub": "HUB_UNSPECIFIED",
            "tier": "TIER_PROFESSIONAL",
            "quantity": 1,
        },
        headers=(f"x-seats-actor: {json_field(account, 'owner_user_id')}",),
    )
    assert refused.returncode != 0, f"PurchaseSeats with HUB_UNSPECIFIED succeeded: {refused.stdout}"
    assert "Code: InvalidArgument" in refused.stderr, refused.stderr
    assert "hub" in refused.stderr, f"the refusal does not name the hub field:\n{refused.stderr}"


# 3. Health.


def test_grpcurl_health_check_says_serving(server: ServerProcess) -> None:
    answer = json.loads(grpcurl_ok(server, "grpc.health.v1.Health/Check"))
    assert answer == {"status": "SERVING"}, answer


@pytest.mark.parametrize("service", SERVED_NAMES)
def test_health_check_says_serving_for_the_server_and_each_service(server: ServerProcess, service: str) -> None:
    with grpc.insecure_channel(server.address) as channel:
        assert health_status(channel, service) == health_pb2.HealthCheckResponse.SERVING


def test_log_is_json_lines_and_says_where_it_serves(server: ServerProcess) -> None:
    entries = server.log_entries()
    assert entries, "the server logged nothing on stderr"
    for entry in entries:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
        # RFC 3339 in UTC to the microsecond (whole seconds could not order the lines of a second)
        stamp = datetime.fromisoformat(entry["time"])
        assert stamp.utcoffset() == timedelta(0) and len(entry["time"].split(".")[1]) == 6 + 6, entry["time"]
    serving_lines = server.logged("serving")
    assert len(serving_lines) == 1, entries
    assert serving_lines[0]["port"] == server.port, serving_lines[0]


# 4. Graceful shutdown.


def create_account(channel: grpc.Channel) -> resources_pb2.Account:
    seats = seat_service_pb2_grpc.SeatServiceStub(channel)
    request = seat_service_pb2.CreateAccountRequest(
        display_name="Stopping",
        owner_email="owner@stopping.test",
        term_months=1,
        subscriptions=[resources_pb2.Subscription(hub=resources_pb2.HUB_SALES, tier=resources_pb2.TIER_STARTER)],
    )
    return seats.CreateAccount(request, timeout=CALL_SECONDS).account


def test_sigterm_exits_zero_within_the_grace_period_with_an_open_watch(stoppable: ServerProcess) -> None:
    with grpc.insecure_channel(stoppable.address) as channel:
        account = create_account(channel)
        stream = seat_service_pb2_grpc.SeatServiceStub(channel).WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=account.account_id),
            timeout=EXIT_AFTER_SIGTERM_SECONDS + CALL_SECONDS,
        )
        first = next(iter(stream))
        assert first.event.sequence == 1, first

        stoppable.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = stoppable.wait_for_exit(EXIT_AFTER_SIGTERM_SECONDS)
        took = time.monotonic() - sent
        assert code == 0, f"exit code {code} after SIGTERM\n{stoppable.log_text()}"
        assert took <= EXIT_AFTER_SIGTERM_SECONDS, took

        try:
            for _ in stream:
                pass
            ended = "OK"
        except grpc.RpcError as err:
            ended = err.code().name
        assert ended != grpc.StatusCode.DEADLINE_EXCEEDED.name, "the watch stream outlived the server"

    shutting_down = stoppable.logged("shutting down")
    assert len(shutting_down) == 1, stoppable.log_text()
    assert shutting_down[0].get("signal") == "SIGTERM", shutting_down[0]
    assert shutting_down[0].get("grace_seconds") == GRACE_SECONDS, shutting_down[0]
    assert stoppable.logged("stopped"), f"no 'stopped' line after SIGTERM\n{stoppable.log_text()}"


def test_calls_after_the_server_stopped_fail_unavailable(stoppable: ServerProcess) -> None:
    stoppable.process.send_signal(signal.SIGTERM)
    assert stoppable.wait_for_exit(EXIT_AFTER_SIGTERM_SECONDS) == 0, stoppable.log_text()
    with grpc.insecure_channel(stoppable.address) as channel:
        with pytest.raises(grpc.RpcError) as raised:
            health_status(channel, timeout=CALL_SECONDS)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value
        with pytest.raises(grpc.RpcError) as raised:
            create_account(channel)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value


def test_sigterm_tells_health_watchers_not_serving(stoppable: ServerProcess) -> None:
    """Load balancers watching health must hear NOT_SERVING (or lose the stream), never just silence."""
    with grpc.insecure_channel(stoppable.address) as channel:
        watch_health = health_watch(channel)
        watches = {
            name: watch_health(
                health_pb2.HealthCheckRequest(service=name), timeout=EXIT_AFTER_SIGTERM_SECONDS + CALL_SECONDS
            )
            for name in SERVED_NAMES
        }
        for name, watch in watches.items():
            assert next(iter(watch)).status == health_pb2.HealthCheckResponse.SERVING, name

        stoppable.process.send_signal(signal.SIGTERM)

        heard = {}
        for name, watch in watches.items():
            try:
                heard[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(next(iter(watch)).status)
            except StopIteration:
                heard[name] = "stream ended"
            except grpc.RpcError as err:
                heard[name] = f"stream ended {err.code().name}"
        assert stoppable.wait_for_exit(EXIT_AFTER_SIGTERM_SECONDS) == 0, stoppable.log_text()

    for name, what in heard.items():
        assert what == "NOT_SERVING" or what.startswith("stream ended"), f"{name or '(server)'}: {what}"
        assert what != f"stream ended {grpc.StatusCode.DEADLINE_EXCEEDED.name}", f"{name or '(server)'}: {what}"


# 5. One listener per port.


def test_a_second_server_on_a_used_port_exits_nonzero(server: ServerProcess, tmp_path: Path) -> None:
    """grpc.so_reuseport is off by default: a second instance must not silently share the port."""
    second = launch(tmp_path, port=server.port, database_url=server.database_url)
    try:
        code = second.wait_for_exit(SAME_PORT_EXIT_SECONDS)
    finally:
        second.kill()
    assert code != 0, f"the second server exited {code}\n{second.log_text()}"
    assert str(server.port) in second.log_text(), f"the failure does not name the port:\n{second.log_text()}"
    with grpc.insecure_channel(server.address) as channel:
        assert health_status(channel) == health_pb2.HealthCheckResponse.SERVING, "the first server was disturbed"
