"""Typed pieces every suite may use: the one matcher of refusals (`refused`), the enum types of the
contract, client interceptor bases that grpc's stubs describe as generic, the health and reflection
calls (whose stubs lack them), calls of raw bytes and the cancelling of a call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

import grpc
import grpc.aio
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from seats.v1 import resources_pb2

Hub: TypeAlias = resources_pb2.Hub.ValueType
Tier: TypeAlias = resources_pb2.Tier.ValueType
PoolKey: TypeAlias = tuple[Hub, Tier]
"""A seat pool: (hub, tier)."""

DOMAIN = "seats.v1"
"""The ErrorInfo domain of every refusal of the service."""

if TYPE_CHECKING:
    # The stubs make the interceptor classes generic in (request, response); grpc's own classes are
    # not, so a subscript would fail when the test module is imported.
    UnaryUnaryInterceptor: TypeAlias = grpc.UnaryUnaryClientInterceptor[Message, Message]
    UnaryStreamInterceptor: TypeAlias = grpc.UnaryStreamClientInterceptor[Message, Message]
    AsyncUnaryUnaryInterceptor: TypeAlias = grpc.aio.UnaryUnaryClientInterceptor[Message, Message]
    AsyncUnaryStreamInterceptor: TypeAlias = grpc.aio.UnaryStreamClientInterceptor[Message, Message]
else:
    UnaryUnaryInterceptor = grpc.UnaryUnaryClientInterceptor
    UnaryStreamInterceptor = grpc.UnaryStreamClientInterceptor
    AsyncUnaryUnaryInterceptor = grpc.aio.UnaryUnaryClientInterceptor
    AsyncUnaryStreamInterceptor = grpc.aio.UnaryStreamClientInterceptor


# Refusals: a refused call's status code, message and google.rpc details, and the matcher.


@dataclass
class Refusal:
    """What a refused call said: status code, message and the google.rpc details."""

    code: grpc.StatusCode | None = None
    message: str = ""
    info: error_details_pb2.ErrorInfo = field(default_factory=error_details_pb2.ErrorInfo)
    bad_request: error_details_pb2.BadRequest = field(default_factory=error_details_pb2.BadRequest)
    precondition: error_details_pb2.PreconditionFailure = field(
        default_factory=error_details_pb2.PreconditionFailure
    )
    detail_types: list[str] = field(default_factory=list)

    def read(self, err: grpc.RpcError) -> None:
        assert isinstance(err, grpc.Call), err
        self.code = err.code()
        self.message = err.details() or ""
        status = rpc_status.from_call(err)
        assert status is not None, f"{self.code} {self.message!r} carries no google.rpc.Status details"
        for detail in status.details:
            for message in (self.info, self.bad_request, self.precondition):
                if detail.Is(message.DESCRIPTOR):
                    detail.Unpack(message)
                    self.detail_types.append(message.DESCRIPTOR.full_name)

    @property
    def fields(self) -> list[str]:
        return [v.field for v in self.bad_request.field_violations]

    def names_field(self, name: str) -> bool:
        """True when a BadRequest violation is about `name` (or a nested path ending in it)."""
        return any(f == name or f.endswith("." + name) or f.startswith(name + "[") for f in self.fields)

    @property
    def text(self) -> str:
        """Everything the refusal says, to check that it names something."""
        parts = [self.message, *self.info.metadata.values(), *self.info.metadata.keys()]
        parts += [v.field + " " + v.description for v in self.bad_request.field_violations]
        parts += [v.type + " " + v.subject + " " + v.description for v in self.precondition.violations]
        return "\n".join(parts)


@contextmanager
def refused(code: grpc.StatusCode, reason: str | None = None) -> Iterator[Refusal]:
    """Expects the block to be refused with `code` and an ErrorInfo of domain seats.v1 and `reason`."""
    refusal = Refusal()
    try:
        yield refusal
    except grpc.RpcError as err:
        refusal.read(err)
    else:
        pytest.fail(f"expected {code.name} {reason or ''}, but the call succeeded")
    said = f"{refusal.code} {refusal.info.reason} {refusal.message!r}"
    assert refusal.code == code, f"expected {code.name} {reason or ''}, got {said}"
    assert refusal.detail_types.count(error_details_pb2.ErrorInfo.DESCRIPTOR.full_name) == 1, (
        f"a refusal carries exactly one ErrorInfo: {said} {refusal.detail_types}"
    )
    assert refusal.info.domain == DOMAIN, f"ErrorInfo domain {refusal.info.domain!r}: {said}"
    if reason is not None:
        assert refusal.info.reason == reason, f"expected reason {reason}, got {said}"


def refusal_of(err: grpc.RpcError) -> Refusal:
    """The parsed refusal of a call that failed (it must carry a google.rpc.Status)."""
    refusal = Refusal()
    refusal.read(err)
    return refusal


def cancel(call: grpc.RpcContext) -> None:
    """Cancels a call (a server stream's iterator, a future) from the client side."""
    call.cancel()  # type: ignore[no-untyped-call]  # grpc's stubs leave RpcContext.cancel unannotated


def health_check(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]:
    """grpc.health.v1.Health/Check on a channel."""
    return health_pb2_grpc.HealthStub(channel).Check  # type: ignore[attr-defined,no-any-return]  # not in the stubs


def health_watch(channel: grpc.Channel) -> grpc.UnaryStreamMultiCallable[
    health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
]:
    """grpc.health.v1.Health/Watch on a channel."""
    return health_pb2_grpc.HealthStub(channel).Watch  # type: ignore[attr-defined,no-any-return]  # not in the stubs


def reflection_info(channel: grpc.Channel) -> grpc.StreamStreamMultiCallable[
    reflection_pb2.ServerReflectionRequest, reflection_pb2.ServerReflectionResponse
]:
    """grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo on a channel."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    return stub.ServerReflectionInfo  # type: ignore[return-value]  # the stubs leave it untyped


# Calls by method path that send and receive bytes as they are (no serializers), for malformed input.


def raw_unary_unary(channel: grpc.Channel, path: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
    return channel.unary_unary(path, request_serializer=None, response_deserializer=None)


def raw_unary_stream(channel: grpc.Channel, path: str) -> grpc.UnaryStreamMultiCallable[bytes, bytes]:
    return channel.unary_stream(path, request_serializer=None, response_deserializer=None)


def raw_stream_unary(channel: grpc.Channel, path: str) -> grpc.StreamUnaryMultiCallable[bytes, bytes]:
    return channel.stream_unary(path, request_serializer=None, response_deserializer=None)
