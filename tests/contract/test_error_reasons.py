"""The ErrorReason enum (protos/seats/v1/error_reason.proto) is the one list of refusal reasons:
the server raises only its values, each with the gRPC code its comment states; the Python client
has an exception class for each; seatctl's hints are keyed by them; the README's error table lists
exactly them, with the same codes."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import cast

import grpc
import pytest
from seats import cli, errors
from seats.v1.error_reason_pb2 import ErrorReason

from service.domain.errors import REASONS, Kind, SeatError, precondition, reason
from tests.conftest import REPO
from tests.property.refusals import documented_reasons

PROTO = REPO / "protos/seats/v1/error_reason.proto"
UNSPECIFIED = "ERROR_REASON_UNSPECIFIED"

_VALUE = re.compile(r"^\s*([A-Z][A-Z0-9_]*) = (\d+);")
_COMMENT = re.compile(r"^\s*//\s?(.*)$")
_CODE_FIRST = re.compile(r"^([A-Z_]+): \S")


@cache
def enum_codes() -> dict[str, str]:
    """reason -> gRPC code name, from the comment above each value of ErrorReason in the .proto:
    its first line starts with the code, e.g. `// FAILED_PRECONDITION: every seat ...`."""
    codes: dict[str, str] = {}
    comment: list[str] = []
    for line in PROTO.read_text().splitlines():
        if found := _COMMENT.match(line):
            comment.append(found.group(1))
            continue
        if found := _VALUE.match(line):
            name = found.group(1)
            if name != UNSPECIFIED:
                assert comment, f"ErrorReason.{name} has no comment"
                code = _CODE_FIRST.match(comment[0])
                assert code, f"the comment of ErrorReason.{name} does not start with its gRPC code: {comment[0]!r}"
                codes[name] = code.group(1)
        comment = []
    return codes


def enum_names() -> set[str]:
    return set(ErrorReason.DESCRIPTOR.values_by_name) - {UNSPECIFIED}


def test_the_enum_comments_state_a_grpc_code_for_every_value() -> None:
    codes = enum_codes()
    assert set(codes) == enum_names() == REASONS
    assert ErrorReason.Value(UNSPECIFIED) == 0
    for name, code in codes.items():
        assert code in grpc.StatusCode.__members__, f"ErrorReason.{name}: {code} is not a gRPC status code"
        assert code != "OK", name


def test_reason_is_the_value_name_sent_as_it_always_was() -> None:
    assert reason(ErrorReason.NO_SEAT_AVAILABLE) == "NO_SEAT_AVAILABLE"
    assert reason(ErrorReason.INTERNAL) == "INTERNAL"
    with pytest.raises(ValueError):
        reason(ErrorReason.ERROR_REASON_UNSPECIFIED)
    refusal = precondition(ErrorReason.SEATS_ASSIGNED, "SALES/STARTER", "assigned seats cannot be removed")
    assert refusal.kind == Kind.FAILED_PRECONDITION
    assert refusal.reason == "SEATS_ASSIGNED"
    assert refusal.preconditions == [("SEATS_ASSIGNED", "SALES/STARTER", "assigned seats cannot be removed")]


# ---- the server ------------------------------------------------------------------------------

# Where a reason is given: the callable and the position of its reason and code arguments (None:
# the code is not an argument). precondition() is always FAILED_PRECONDITION.
REASON_ARGUMENTS: dict[str, tuple[int, int | None]] = {
    "SeatError": (1, 0),
    "precondition": (0, None),
    "_refusal": (1, 0),
    "ErrorInfo": (-1, None),  # reason=...
}


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _reason_argument(call: ast.Call, position: int) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg in ("reason", "why"):
            return keyword.value
    return call.args[position] if 0 <= position < len(call.args) else None


def _enum_name(node: ast.expr | None) -> str | None:
    """X for `ErrorReason.X`, `reason(ErrorReason.X)` or the literal "X"; None for anything else
    (a variable that carries a reason through, e.g. a stored refusal read back)."""
    if isinstance(node, ast.Call) and _callee(node) == "reason" and len(node.args) == 1:
        node = node.args[0]
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "ErrorReason":
        return node.attr
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    return None


def _code_name(node: ast.expr | None) -> str | None:
    """K for `Kind.K` or `code_pb2.K`."""
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in ("Kind", "code_pb2"):
        return node.attr
    return None


Found = tuple[str, str, str | None, bool]


def scan(path: Path) -> list[Found]:
    """(where, reason, code or None, written as a string literal) for each refusal in a file."""
    found: list[Found] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call) or _callee(node) not in REASON_ARGUMENTS:
            continue
        reason_at, code_at = REASON_ARGUMENTS[_callee(node)]
        argument = _reason_argument(node, reason_at)
        name = _enum_name(argument)
        if name is None:
            continue
        if _callee(node) == "precondition":
            code: str | None = "FAILED_PRECONDITION"
        else:
            code = _code_name(node.args[code_at]) if code_at is not None and len(node.args) > code_at else None
        found.append((f"{path.name}:{node.lineno}", name, code, isinstance(argument, ast.Constant)))
    return sorted(found, key=lambda f: int(f[0].rsplit(":", 1)[1]))


def raised_reasons(root: Path) -> list[Found]:
    return [found for path in sorted(root.rglob("*.py")) for found in scan(path)]


def test_every_reason_the_server_raises_is_a_value_of_the_enum_with_its_code() -> None:
    codes = enum_codes()
    found = list(raised_reasons(REPO / "service"))
    assert len(found) > 30, found
    for where, name, code, _ in found:
        assert name in codes, f"{where}: the reason {name} is not a value of seats.v1.ErrorReason"
        if code is not None:
            assert code == codes[name], f"{where}: {name} is raised as {code}, the enum says {codes[name]}"


def test_the_server_writes_reasons_from_the_enum_not_as_strings() -> None:
    literals = [f"{where}: {name!r}" for where, name, _, literal in raised_reasons(REPO / "service") if literal]
    assert literals == [], "write reason(ErrorReason.X) instead of a string"


def test_every_value_of_the_enum_is_raised_somewhere() -> None:
    raised = {name for _, name, _, _ in raised_reasons(REPO / "service")}
    assert enum_names() - raised == set(), "values of ErrorReason that the server never sends"


def test_the_scan_sees_string_reasons_and_wrong_codes(tmp_path: Path) -> None:
    """The scan above would catch a hand-written reason, an unknown one and a wrong code."""
    source = tmp_path / "refusals.py"
    source.write_text(
        "def f():\n"
        "    raise SeatError(Kind.NOT_FOUND, 'NO_SUCH_REASON', 'gone')\n"
        "def g():\n"
        "    raise SeatError(Kind.ABORTED, reason(ErrorReason.NO_SEAT_AVAILABLE), 'taken')\n"
        "def h():\n"
        "    raise precondition(ErrorReason.SEAT_LIMIT, 'pool', 'too many')\n"
    )
    found = [(name, code, literal) for _, name, code, literal in scan(source)]
    assert found == [
        ("NO_SUCH_REASON", "NOT_FOUND", True),
        ("NO_SEAT_AVAILABLE", "ABORTED", False),
        ("SEAT_LIMIT", "FAILED_PRECONDITION", False),
    ]
    assert "NO_SUCH_REASON" not in enum_codes()
    assert enum_codes()["NO_SEAT_AVAILABLE"] != "ABORTED"


def test_seat_error_kinds_are_codes_the_enum_uses() -> None:
    assert {kind.name for kind in Kind} <= set(grpc.StatusCode.__members__)
    assert str(SeatError(Kind.ABORTED, reason(ErrorReason.ETAG_MISMATCH), "stale")) == "ETAG_MISMATCH: stale"


# ---- the Python client -----------------------------------------------------------------------


def _reason_classes() -> list[type[errors.SeatsError]]:
    classes, todo = [], [errors.SeatsError]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.error_reason:
                classes.append(sub)
    return classes


def test_the_client_has_an_exception_class_for_every_value_with_its_code() -> None:
    codes = enum_codes()
    assert set(errors.BY_REASON) == set(codes)
    for name, code in codes.items():
        cls = errors.BY_REASON[name]
        assert cls.error_reason == name
        assert cls.status_code is not None and cls.status_code.name == code, f"{cls.__name__}: {cls.status_code}"
        assert issubclass(cls, errors.BY_CODE[cls.status_code])


def test_every_exception_class_reason_is_a_value_of_the_enum_once() -> None:
    reasons = [cls.error_reason or "" for cls in _reason_classes()]
    assert sorted(reasons) == sorted(set(reasons)), "two classes for one reason"
    assert set(reasons) == enum_names()


# ---- seatctl ---------------------------------------------------------------------------------


def _ctx() -> cli.Context:
    return cast(cli.Context, SimpleNamespace(target="localhost:50051", timeout=5.0, account="acc_1"))


def _refusal(name: str) -> errors.SeatsError:
    code = grpc.StatusCode[enum_codes()[name]] if name in enum_codes() else grpc.StatusCode.FAILED_PRECONDITION
    return errors.BY_REASON.get(name, errors.SeatsError)(code, name, "refused")


def test_every_seatctl_hint_is_keyed_by_a_value_of_the_enum() -> None:
    values = set(ErrorReason.values()) - {ErrorReason.ERROR_REASON_UNSPECIFIED}
    assert cli.HINTS, "seatctl has no hints"
    assert set(cli.HINTS) <= values
    for value, text in cli.HINTS.items():
        assert cli.hint(_refusal(ErrorReason.Name(value)), _ctx()) == text


def test_seatctl_reads_the_reason_of_a_refusal_as_the_enum() -> None:
    assert cli.reason_of(_refusal("NO_SEAT_AVAILABLE")) == ErrorReason.NO_SEAT_AVAILABLE
    assert cli.reason_of(_refusal("SOMETHING_NEWER")) == ErrorReason.ERROR_REASON_UNSPECIFIED
    assert cli.hint(_refusal("SOMETHING_NEWER"), _ctx()) == ""
    assert "acc_1" in cli.hint(_refusal("ACTOR_NOT_IN_ACCOUNT"), _ctx())
    assert "edit_billing" in cli.hint(
        errors.PermissionMissing(
            grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_MISSING", "no", {"permission": "edit_billing"}
        ),
        _ctx(),
    )


def test_seatctl_hints_do_not_repeat_the_servers_advice() -> None:
    """The server's message already says "unassign them first"; the hint adds the command."""
    advice = cli.hint(_refusal("SEATS_ASSIGNED"), _ctx())
    assert "first" not in advice and "`seatctl seats unassign`" in advice
    assert "first" not in cli.hint(_refusal("USER_HOLDS_SEATS"), _ctx())


# ---- the README ------------------------------------------------------------------------------


def test_the_readme_error_table_lists_exactly_the_enum_values_with_their_codes() -> None:
    assert documented_reasons() == enum_codes()
