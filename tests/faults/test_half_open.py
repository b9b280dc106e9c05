"""Half-open calls: a caller opens calls to a unary method and never sends the request. Such a
call must not hold a worker thread or a concurrency slot (service/admission.py): a caller
without credentials is refused on its headers, and a caller with credentials waits for its
message without a worker, up to --receive-timeout-seconds. Meanwhile, other callers are served
as fast as ever: every one of their calls here has a 200 ms deadline."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from seats.v1 import resources_pb2, seat_service_pb2, seat_service_pb2_grpc

from service import admission
from service.auth import hash_token
from tests.served import ServerProcess, serving
from tests.toolkit import describe, raw_stream_unary

SYSTEM_TOKEN = "seats_half-open-system-token"
HALF_OPEN = 200
VICTIM_CALLS = 20
VICTIM_DEADLINE = 0.2  # seconds, each call
CONNECTIONS = 4  # the half-open calls are spread over connections of their own
METHOD = "/seats.v1.SeatService/GetSeatSummary"


@dataclass
class HalfOpen:
    """HALF_OPEN calls of GetSeatSummary whose request never comes: each is a client-streaming
    call on the wire whose request iterator blocks until release()."""

    address: str
    metadata: tuple[tuple[str, str], ...] = ()
    release_event: threading.Event = field(default_factory=threading.Event)
    channels: list[grpc.Channel] = field(default_factory=list)
    calls: list[grpc.Future] = field(default_factory=list)  # type: ignore[type-arg]

    def open(self) -> None:
        def nothing() -> Iterator[bytes]:
            self.release_event.wait(120)
            yield from ()

        for i in range(CONNECTIONS):
            channel = grpc.insecure_channel(
                self.address, options=[("grpc.use_local_subchannel_pool", 1), ("seats.test.connection", i)]
            )
            self.channels.append(channel)
        for i in range(HALF_OPEN):
            method = raw_stream_unary(self.channels[i % CONNECTIONS], METHOD)
            self.calls.append(method.future(nothing(), timeout=120, metadata=self.metadata))

    def outcomes(self) -> list[tuple[str, str]]:
        """(code, reason) of every call that has ended so far."""
        ended = []
        for future in self.calls:
            if future.done():
                error = future.exception()
                assert isinstance(error, grpc.RpcError), f"a call without a request answered: {future.result()!r}"
                code, reason, _ = describe(error)
                ended.append((code, reason))
        return ended

    def wait_ended(self, seconds: float) -> list[tuple[str, str]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and len(self.outcomes()) < len(self.calls):
            time.sleep(0.05)
        return self.outcomes()

    def release(self) -> None:
        self.release_event.set()
        for future in self.calls:
            future.cancel()
        for channel in self.channels:
            channel.close()


@contextmanager
def half_open(address: str, metadata: tuple[tuple[str, str], ...] = ()) -> Iterator[HalfOpen]:
    calls = HalfOpen(address, metadata)
    try:
        calls.open()
        yield calls
    finally:
        calls.release()


def victim_calls(server: ServerProcess, account_id: str, metadata: tuple[tuple[str, str], ...]) -> list[str]:
    """VICTIM_CALLS GetSeatSummary calls, one after another, each with a 200 ms deadline: their
    codes, with the time each took."""
    results = []
    with grpc.insecure_channel(server.address) as channel:
        stub = seat_service_pb2_grpc.SeatServiceStub(channel)
        request = seat_service_pb2.GetSeatSummaryRequest(account_id=account_id)
        stub.GetSeatSummary(request, timeout=5, metadata=metadata)  # the connection is up before timing
        for _ in range(VICTIM_CALLS):
            began = time.monotonic()
            try:
                stub.GetSeatSummary(request, timeout=VICTIM_DEADLINE, metadata=metadata)
                code = "OK"
            except grpc.RpcError as err:
                code = err.code().name
            results.append(f"{code} {1000 * (time.monotonic() - began):.1f} ms")
    return results


def make_account(server: ServerProcess, metadata: tuple[tuple[str, str], ...]) -> str:
    with grpc.insecure_channel(server.address) as channel:
        response = seat_service_pb2_grpc.SeatServiceStub(channel).CreateAccount(
            seat_service_pb2.CreateAccountRequest(
                display_name="Victim",
                owner_email="owner@victim.example",
                term_months=1,
                subscriptions=[
                    resources_pb2.Subscription(hub=resources_pb2.HUB_SALES, tier=resources_pb2.TIER_STARTER)
                ],
            ),
            timeout=10,
            metadata=metadata,
        )
    return response.account.account_id


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(
        json.dumps({"tokens": [{"name": "provisioning", "scope": "system", "sha256": hash_token(SYSTEM_TOKEN)}]})
    )
    return path


def test_admission_is_active_with_this_grpcio() -> None:
    """The hooks admission needs exist in the installed grpcio: without them the server would
    run (with a warning) but half-open calls would hold workers again."""
    assert admission.SUPPORTED


@pytest.mark.slow
def test_half_open_calls_without_credentials_hold_nothing(tmp_path: Path, tokens: Path) -> None:
    """200 half-open calls without a token are refused UNAUTHENTICATED TOKEN_MISSING on their
    headers; 20 of 20 GetSeatSummary calls of a caller with a token answer OK within 200 ms
    each while the attacker holds its side open, and the server keeps serving."""
    system = (("authorization", f"Bearer {SYSTEM_TOKEN}"),)
    flags = ("--auth-tokens-file", str(tokens), "--sweep-interval-seconds", "0")
    with serving(tmp_path, flags=flags) as server:
        account_id = make_account(server, system)
        with half_open(server.address) as attacker:
            refused = attacker.wait_ended(10)
            results = victim_calls(server, account_id, system)
        assert len(refused) == HALF_OPEN, f"only {len(refused)} of {HALF_OPEN} half-open calls were refused"
        assert set(refused) == {("UNAUTHENTICATED", "TOKEN_MISSING")}, set(refused)
        slow = [r for r in results if not r.startswith("OK ")]
        print(f"\n[half-open] {HALF_OPEN} calls without credentials: refused on their headers; victim: {results}")
        assert not slow, f"calls of another caller failed or took over 200 ms: {results}"
        assert server.process.poll() is None


@pytest.mark.slow
def test_half_open_calls_with_credentials_wait_without_a_worker_until_the_timeout(tmp_path: Path, tokens: Path) -> None:
    """200 half-open calls with a valid token (more than the 16 workers and the 64 running calls
    the server allows) do not delay another caller: 20 of 20 calls answer OK within 200 ms; the
    half-open calls end DEADLINE_EXCEEDED REQUEST_TIMEOUT after --receive-timeout-seconds."""
    system = (("authorization", f"Bearer {SYSTEM_TOKEN}"),)
    flags = ("--auth-tokens-file", str(tokens), "--sweep-interval-seconds", "0", "--receive-timeout-seconds", "3")
    with serving(tmp_path, flags=flags) as server:
        account_id = make_account(server, system)
        with half_open(server.address, system) as attacker:
            time.sleep(0.5)  # every half-open call has reached the server
            still_open = HALF_OPEN - len(attacker.outcomes())
            results = victim_calls(server, account_id, system)
            ended = attacker.wait_ended(15)
        slow = [r for r in results if not r.startswith("OK ")]
        print(f"\n[half-open] {HALF_OPEN} calls with a token, {still_open} open while the victim called: {results}")
        assert still_open == HALF_OPEN, "half-open calls with credentials ended before their timeout"
        assert not slow, f"calls of another caller failed or took over 200 ms: {results}"
        assert len(ended) == HALF_OPEN, f"{HALF_OPEN - len(ended)} half-open calls outlived the receive timeout"
        assert set(ended) == {("DEADLINE_EXCEEDED", "REQUEST_TIMEOUT")}, set(ended)
        assert server.process.poll() is None


@pytest.mark.slow
def test_half_open_calls_on_a_server_without_tokens_take_no_worker(tmp_path: Path) -> None:
    """Without tokens (a loopback server) every caller is trusted; half-open calls still take no
    worker: another caller's calls answer OK within 200 ms each."""
    with serving(tmp_path, flags=("--sweep-interval-seconds", "0")) as server:
        account_id = make_account(server, ())
        with half_open(server.address) as attacker:
            time.sleep(0.5)
            still_open = HALF_OPEN - len(attacker.outcomes())
            results = victim_calls(server, account_id, ())
        assert still_open == HALF_OPEN
        assert all(r.startswith("OK ") for r in results), results
