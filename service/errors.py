"""Domain refusals -> gRPC statuses with google.rpc details (AIP-193): always an ErrorInfo
with domain "seats.v1" and the reason, plus BadRequest for bad fields or
PreconditionFailure for rule refusals. One table, one place."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .domain.errors import ErrorReason, Kind, SeatError, reason

DOMAIN = "seats.v1"

CODES: dict[Kind, int] = {
    Kind.INVALID_ARGUMENT: code_pb2.INVALID_ARGUMENT,
    Kind.NOT_FOUND: code_pb2.NOT_FOUND,
    Kind.ALREADY_EXISTS: code_pb2.ALREADY_EXISTS,
    Kind.PERMISSION_DENIED: code_pb2.PERMISSION_DENIED,
    Kind.FAILED_PRECONDITION: code_pb2.FAILED_PRECONDITION,
    Kind.ABORTED: code_pb2.ABORTED,
    Kind.UNAVAILABLE: code_pb2.UNAVAILABLE,
    Kind.RESOURCE_EXHAUSTED: code_pb2.RESOURCE_EXHAUSTED,
    Kind.DEADLINE_EXCEEDED: code_pb2.DEADLINE_EXCEEDED,
}


def _pack(message: object) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)  # type: ignore[arg-type]
    return detail


MAX_TEXT = 512  # trailers are small: nothing a caller sent is echoed at length


def _short(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 3] + "..."


def to_status(error: SeatError) -> grpc.Status:
    """The gRPC status (with rich details in the trailers) for a domain refusal."""
    metadata = {k: _short(v) for k, v in error.metadata.items()}
    details = [_pack(error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=metadata))]
    if error.fields:
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(field=f, description=_short(d))
                        for f, d in error.fields
                    ]
                )
            )
        )
    if error.preconditions:
        details.append(
            _pack(
                error_details_pb2.PreconditionFailure(
                    violations=[
                        error_details_pb2.PreconditionFailure.Violation(
                            type=t, subject=_short(s), description=_short(d)
                        )
                        for t, s, d in error.preconditions
                    ]
                )
            )
        )
    status = status_pb2.Status(code=CODES[error.kind], message=_short(error.message), details=details)
    return rpc_status.to_status(status)


def internal_status(message: str = "internal error; it was logged") -> grpc.Status:
    status = status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=message,
        details=[_pack(error_details_pb2.ErrorInfo(reason=reason(ErrorReason.INTERNAL), domain=DOMAIN))],
    )
    return rpc_status.to_status(status)
