"""What a refusal must look like, read from the README's error table: a documented code, a
google.rpc.Status whose code is the call's, exactly one ErrorInfo of domain seats.v1, and a reason
the README lists with that very code."""

from __future__ import annotations

import re
from functools import cache

import grpc
from google.rpc import error_details_pb2

from tests.conftest import REPO
from tests.toolkit import DOMAIN, refusal_of

REFUSAL_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
"""The codes a caller may get for anything it sends (UNAVAILABLE, INTERNAL and UNKNOWN are not among them)."""

_ROW = re.compile(r"^\|\s*`([A-Z_]+)`\s*\|\s*([A-Z_]+)\s*\|")


@cache
def documented_reasons() -> dict[str, str]:
    """reason -> code name, from the table under the README's `## Errors` heading."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    table = {m.group(1): m.group(2) for line in section.splitlines() if (m := _ROW.match(line))}
    assert len(table) > 10, f"could not read the README's error table: {table}"
    return table


def reason_of(err: grpc.RpcError, *, also: frozenset[grpc.StatusCode] = frozenset()) -> str:
    """Checks that `err` is a documented refusal and returns its reason. Codes in `also` are accepted
    as they are (they come from the transport or the client, with no details): their reason is the code name."""
    assert isinstance(err, grpc.Call), err
    code, message = err.code(), err.details() or ""
    said = f"{code.name} {message[:300]!r}"
    if code in also:
        return code.name
    assert code in REFUSAL_CODES, f"undocumented status: {said}"
    refusal = refusal_of(err)  # raises ValueError when the Status disagrees with the call's code
    infos = refusal.detail_types.count(error_details_pb2.ErrorInfo.DESCRIPTOR.full_name)
    assert infos == 1, f"{infos} ErrorInfo details, expected exactly one: {said}"
    info = refusal.info
    assert info.domain == DOMAIN, f"ErrorInfo domain {info.domain!r}: {said}"
    table = documented_reasons()
    assert info.reason in table, f"reason {info.reason!r} is not in the README's error table: {said}"
    assert table[info.reason] == code.name, (
        f"the README gives {info.reason} the code {table[info.reason]}, the server sent {said}"
    )
    return info.reason
