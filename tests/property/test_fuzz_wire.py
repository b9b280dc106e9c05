"""Fuzzing on the wire: every RPC of both services is sent raw bytes, not messages. The bytes are
valid messages built from the method's descriptor (values of every field type, the ids of a real
account mixed in), then damaged (cut short, a byte flipped or inserted, junk appended), or plain
random bytes. Whatever arrives, the answer is OK or a documented refusal (a code and reason from
the README's error table, with exactly one ErrorInfo), never UNKNOWN or INTERNAL; the real
account keeps I1, I2 and a gapless event log. SEATS_PROPERTY_SCALE multiplies the examples for a
longer search; at 1 the whole file runs in well under a minute per store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from seats.v1 import seat_service_pb2, user_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import (
    ENTERPRISE,
    SALES,
    STARTER,
    Tenant,
    check_event_log,
    new_account,
    new_user,
    pools,
)
from tests.property.refusals import reason_of
from tests.toolkit import check_pool_invariants, raw_unary_stream, raw_unary_unary

SCALE = int(os.environ.get("SEATS_PROPERTY_SCALE", "1"))
EXAMPLES = 150 * SCALE
"""Examples per RPC and database."""
WATCH_DEADLINE = 0.15
CALL_DEADLINE = 30.0
METHODS: list[MethodDescriptor] = [
    *seat_service_pb2.DESCRIPTOR.services_by_name["SeatService"].methods,
    *user_service_pb2.DESCRIPTOR.services_by_name["UserService"].methods,
]
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
}


@dataclass
class Real:
    """The ids of a real account, so that fuzzed messages reach the rules, not only the id checks."""

    tenant: Tenant
    user_id: str

    def ids(self) -> list[str]:
        return [self.tenant.id, self.tenant.owner_id, self.user_id]


@pytest.fixture(scope="module")
def real(running: Running) -> Real:
    tenant = new_account(running.seats, (SALES, STARTER, 2), (SALES, ENTERPRISE, 0))
    user = new_user(running.users, tenant, seats=[(SALES, STARTER)])
    return Real(tenant, user.user_id)


def values(field: FieldDescriptor, real: Real, depth: int) -> SearchStrategy[object]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return st.one_of(st.sampled_from(real.ids()), st.text(max_size=40), st.just(""))
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=40)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None, field.full_name
        return st.one_of(st.sampled_from([v.number for v in field.enum_type.values]), st.integers(-3, 50))
    if kind in INT_RANGES:
        low, high = INT_RANGES[kind]
        return st.one_of(st.integers(-2, 12), st.integers(low, high)).filter(lambda n: low <= n <= high)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(allow_nan=True, width=32 if kind == FieldDescriptor.TYPE_FLOAT else 64)
    if kind == FieldDescriptor.TYPE_MESSAGE and depth < 3:
        assert field.message_type is not None, field.full_name
        return messages(field.message_type, real, depth + 1)
    return st.nothing()


def messages(descriptor: Descriptor, real: Real, depth: int = 0) -> SearchStrategy[Message]:
    """Messages of this type with any subset of their fields set (repeated ones up to 4 entries)."""
    cls = GetMessageClass(descriptor)
    per_field: dict[str, SearchStrategy[object]] = {}
    for field in descriptor.fields:
        strategy = values(field, real, depth)
        if field.is_repeated:
            strategy = st.lists(strategy, max_size=4)
        per_field[field.name] = strategy

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        message = cls()
        for name in draw(st.lists(st.sampled_from(sorted(per_field)), unique=True)) if per_field else []:
            field = descriptor.fields_by_name[name]
            value = draw(per_field[name])
            try:
                if field.is_repeated:
                    target = getattr(message, name)
                    if field.type == FieldDescriptor.TYPE_MESSAGE:
                        for item in value:  # type: ignore[attr-defined]
                            target.add().CopyFrom(item)
                    else:
                        target.extend(value)
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    getattr(message, name).CopyFrom(value)
                else:
                    setattr(message, name, value)
            except (ValueError, TypeError):
                pass  # a value the Python runtime refuses to set (e.g. an unknown closed enum): skip it
        return message

    return build()


def damaged(data: SearchStrategy[bytes]) -> SearchStrategy[bytes]:
    """data as it is, cut short, with a byte flipped or inserted, or with junk appended."""

    @st.composite
    def damage(draw: st.DrawFn) -> bytes:
        raw = draw(data)
        how = draw(st.sampled_from(["none", "cut", "flip", "insert", "append"]))
        if how == "cut" and raw:
            return raw[: draw(st.integers(0, len(raw) - 1))]
        if how == "flip" and raw:
            at = draw(st.integers(0, len(raw) - 1))
            return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]
        if how == "insert":
            at = draw(st.integers(0, len(raw)))
            return raw[:at] + draw(st.binary(min_size=1, max_size=4)) + raw[at:]
        if how == "append":
            return raw + draw(st.binary(min_size=1, max_size=16))
        return raw

    return damage()


def wire_bytes(method: MethodDescriptor, real: Real) -> SearchStrategy[bytes]:
    valid = messages(method.input_type, real).map(lambda m: m.SerializeToString())
    return st.one_of(damaged(valid), st.binary(max_size=64))


def send(
    running: Running, method: MethodDescriptor, data: bytes, metadata: tuple[tuple[str, str], ...]
) -> grpc.RpcError | None:
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            for _ in raw_unary_stream(running.channel, path)(data, timeout=WATCH_DEADLINE, metadata=metadata):
                pass
        else:
            raw_unary_unary(running.channel, path)(data, timeout=CALL_DEADLINE, metadata=metadata)
    except grpc.RpcError as err:
        return err
    return None


@pytest.fixture(scope="module")
def outcomes() -> Iterator[dict[str, dict[str, int]]]:
    seen: dict[str, dict[str, int]] = {}
    yield seen
    for method, counts in sorted(seen.items()):
        print(f"[fuzz] {method}: {dict(sorted(counts.items(), key=lambda kv: -kv[1]))}")


@pytest.mark.parametrize("method", METHODS, ids=[m.name for m in METHODS])
def test_raw_bytes_get_ok_or_a_documented_refusal(
    running: Running, real: Real, outcomes: dict[str, dict[str, int]], method: MethodDescriptor
) -> None:
    counts = outcomes.setdefault(method.name, {})
    deadline_ok = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED}) if method.server_streaming else frozenset()

    @FUZZ_SETTINGS
    @given(data=wire_bytes(method, real), as_owner=st.booleans())
    def answer(data: bytes, as_owner: bool) -> None:
        metadata = actor(real.tenant.owner_id) if as_owner else ()
        err = send(running, method, data, metadata)
        outcome = "OK" if err is None else reason_of(err, also=deadline_ok)
        counts[outcome] = counts.get(outcome, 0) + 1

    answer()
    assert "MALFORMED_REQUEST" in counts, f"{method.name}: no damaged message reached the parser: {counts}"
    assert set(counts) - {"MALFORMED_REQUEST"}, f"{method.name}: no example parsed: {counts}"
    for pool in pools(running.seats, real.tenant).values():
        check_pool_invariants(pool)
    check_event_log(running.seats, real.tenant)
