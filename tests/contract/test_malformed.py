"""Malformed request bytes: every method of both services answers INVALID_ARGUMENT with the
ErrorInfo reason MALFORMED_REQUEST, never INTERNAL or UNKNOWN, and only after the credentials
were checked: a caller without a token learns UNAUTHENTICATED, whatever the bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor, MethodDescriptor
from seats.v1 import seat_service_pb2, user_service_pb2

from service.auth import hash_token
from service.config import Config
from service.server import create_server
from service.store import open_store
from tests.toolkit import raw_unary_stream, raw_unary_unary, refused

TOKEN = "seats_malformed-test-token"
METHODS: list[MethodDescriptor] = [
    *seat_service_pb2.DESCRIPTOR.services_by_name["SeatService"].methods,
    *user_service_pb2.DESCRIPTOR.services_by_name["UserService"].methods,
]


def string_tag(method: MethodDescriptor) -> bytes:
    """The tag of the request's first top-level string field, length-delimited."""
    field = next(f for f in method.input_type.fields if f.type == FieldDescriptor.TYPE_STRING)
    return bytes([(field.number << 3) | 2])


def malformed(method: MethodDescriptor) -> dict[str, bytes]:
    tag = string_tag(method)
    return {
        "invalid UTF-8 in a string": tag + b"\x02\xff\xfe",
        "a length past the end": tag + b"\x10abc",
        "wire type 7": b"\x0f\x00",
        "field number 0": b"\x02\x00",
        "a truncated varint": b"\x08\xff\xff",
    }


CASES = [(m, name, data) for m in METHODS for name, data in malformed(m).items()]


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    directory = tmp_path_factory.mktemp("malformed")
    tokens = directory / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [{"name": "system", "scope": "system", "sha256": hash_token(TOKEN)}]}))
    url = f"sqlite:///{directory / 'seats.db'}"
    store = open_store(url)
    store.migrate()
    config = Config(address="127.0.0.1:0", auth_tokens_file=str(tokens), sweep_interval_seconds=0)
    server, bound = create_server(replace(config, database_url=url), store=store)
    server.start()
    yield bound
    server.stop(None).wait()
    store.close()


@pytest.fixture(scope="module")
def channel(port: int) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


def send(channel: grpc.Channel, method: MethodDescriptor, data: bytes, *, token: bool) -> None:
    """Sends `data` as the request of `method`, reading a stream to its end."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    metadata = (("authorization", f"Bearer {TOKEN}"),) if token else ()
    if method.server_streaming:
        for _ in raw_unary_stream(channel, path)(data, timeout=10, metadata=metadata):
            pass
    else:
        raw_unary_unary(channel, path)(data, timeout=10, metadata=metadata)


@pytest.mark.parametrize(("method", "case", "data"), CASES, ids=[f"{m.name}-{c}" for m, c, _ in CASES])
def test_malformed_bytes_are_invalid_argument(
    channel: grpc.Channel, method: MethodDescriptor, case: str, data: bytes
) -> None:
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST") as refusal:
        send(channel, method, data, token=True)
    assert method.input_type.full_name in refusal.message, (case, refusal.message)


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_credentials_are_checked_before_the_bytes(channel: grpc.Channel, method: MethodDescriptor) -> None:
    with refused(grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING"):
        send(channel, method, b"\x0f\x00", token=False)


def test_health_parses_its_own_requests_too(channel: grpc.Channel) -> None:
    """Health needs no token; its malformed requests are INVALID_ARGUMENT as well."""
    with refused(grpc.StatusCode.INVALID_ARGUMENT, "MALFORMED_REQUEST"):
        raw_unary_unary(channel, "/grpc.health.v1.Health/Check")(b"\x0a\x02\xff\xfe", timeout=10)


def test_a_well_formed_request_still_works(channel: grpc.Channel, tmp_path: Path) -> None:
    request = seat_service_pb2.GetSeatSummaryRequest(account_id="acc_nothing_here")
    with pytest.raises(grpc.RpcError) as raised:
        raw_unary_unary(channel, "/seats.v1.SeatService/GetSeatSummary")(
            request.SerializeToString(), timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),)
        )
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
