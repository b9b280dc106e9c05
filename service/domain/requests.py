"""Request ids (I5, AIP-155): a mutating call runs once per request id, and every later call with
the same id and payload gets the first call's answer back, a refusal as much as a response.

`run_once` runs a call in one write transaction. The call's unit of work looks the id up with
`check`, in one statement, at the point where the call would start to act: under the account
lock, after the actor check (an actor who is not a user of the account, or lacks the call's
permission, is refused whatever id it names, and learns nothing about the ids of the account).
A call that ran before answers from its record; the same id with another payload is refused
(REQUEST_ID_REUSED). A call that runs keeps its answer with the id, in the same transaction as
its effect: its response, or a rule refusal (`KEPT`), whose writes `keeping` undoes in a
savepoint while the record stays. Bad input (INVALID_ARGUMENT), a lost race (ABORTED) and an
outage (UNAVAILABLE) keep nothing: a retry with the same id runs again.

A twin (the same id sent again while the first call runs) waits for the account lock and then
finds the first call's record. Calls with no account yet (SYSTEM_SCOPE) have no lock to wait
on: a twin finds the record once it commits, or is refused with ABORTED CONCURRENT_CHANGE.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from ..clock import Clock
from .errors import ErrorReason, Kind, SeatError, reason
from .ports import SeatStore

T = TypeVar("T")

SYSTEM_SCOPE = "system"
"""The request-id scope of calls that name no account yet (CreateAccount)."""

KEPT = frozenset(
    {
        Kind.FAILED_PRECONDITION,
        Kind.NOT_FOUND,
        Kind.ALREADY_EXISTS,
        Kind.PERMISSION_DENIED,
        Kind.RESOURCE_EXHAUSTED,
    }
)
"""The refusals a call that ran keeps with its request id: the rules' answers to the state the
call met. PERMISSION_DENIED counts when the work raised it (a permission the call needs only for
part of what it asked, such as buying a seat with a grant); the permission the call needs at all
is checked before the id is, and such a refusal keeps nothing."""


@dataclass
class Request:
    """One attempt of a call under a request id."""

    scope: str  # the account the call acts on, or SYSTEM_SCOPE
    request_id: str
    fingerprint: str  # the method, the actor and the payload: what makes a retry the same call
    now: datetime
    not_before: datetime  # records older than this have expired
    checked: bool = False
    refusal: SeatError | None = None  # the refusal kept with the id in this attempt


REFUSED_RESPONSE = b"\x00"
"""The response column of a kept refusal: bytes no protobuf message parses (field number 0). A
server that predates kept refusals, reading such a record during a rolling upgrade, fails the
call instead of answering OK with an empty response."""


class Replayed(Exception):
    """The call ran before under its request id: the response it stored."""

    def __init__(self, response: bytes) -> None:
        super().__init__("replayed")
        self.response = response


_CURRENT: ContextVar[Request | None] = ContextVar("seats_request", default=None)


def current() -> Request | None:
    """The request id of the call running in this context, if it sent one and is under
    `run_once`; the unit of work checks it."""
    return _CURRENT.get()


def check(store: SeatStore, request: Request, scope: str) -> None:
    """The lookup (one statement), for the unit of work that holds scope's lock and has checked
    the actor: returns when the call is new; raises REQUEST_ID_REUSED for another payload, the
    kept refusal, or Replayed with the kept response."""
    if request.checked:
        raise RuntimeError("a call checks its request id once")
    if scope != request.scope:
        raise RuntimeError(f"the request id was sent for {request.scope!r}, but the call acts on {scope!r}")
    request.checked = True
    found = store.find_request(scope, request.request_id, request.not_before)
    if found is None:
        return
    if found.fingerprint != request.fingerprint:
        raise SeatError(
            Kind.INVALID_ARGUMENT,
            reason(ErrorReason.REQUEST_ID_REUSED),
            "this request_id was used for another request; use a new id for a new request",
            {"request_id": request.request_id},
            fields=[("request_id", "used for another request")],
        )
    if found.refusal is not None:
        raise decode_refusal(found.refusal)
    raise Replayed(found.response)


def keeping(store: SeatStore, request: Request, work: Callable[[], T]) -> T:
    """Runs the checked call's work in a savepoint. A rule refusal (KEPT) undoes the work's
    writes and is recorded with the request id before it goes on; anything else goes on with
    nothing recorded."""
    try:
        return store.savepoint(work)
    except SeatError as exc:
        if exc.kind not in KEPT:
            raise
        store.save_request(
            request.scope,
            request.request_id,
            request.fingerprint,
            REFUSED_RESPONSE,
            request.now,
            request.not_before,
            refusal=encode_refusal(exc),
        )
        request.refusal = exc
        raise


def run_once(
    store: SeatStore,
    clock: Clock,
    window: timedelta,
    scope: str,
    request_id: str,
    fingerprint: str,
    compute: Callable[[], T],
    encode: Callable[[T], bytes],
    decode: Callable[[bytes], T],
) -> T:
    """Runs compute (a use case, and the reply made of its result) once per request id, in one
    write transaction with the record of its answer; records live for window. The use case's
    unit of work must check the id (`check`): compute returning without that is a bug."""

    def once() -> T | SeatError:
        now = clock.now()
        request = Request(scope, request_id, fingerprint, now, now - window)
        token = _CURRENT.set(request)
        try:
            answer = compute()
        except Replayed as replayed:
            return decode(replayed.response)
        except SeatError as exc:
            if exc is request.refusal:
                return exc  # kept: the record commits, then the caller gets the refusal
            raise
        finally:
            _CURRENT.reset(token)
        if not request.checked:
            raise RuntimeError("the call ran no unit of work that checks its request id")
        store.save_request(scope, request_id, fingerprint, encode(answer), now, request.not_before)
        return answer

    outcome = store.write(once)
    if isinstance(outcome, SeatError):
        raise outcome
    return outcome


def encode_refusal(error: SeatError) -> str:
    return json.dumps(
        {
            "kind": error.kind.value,
            "reason": error.reason,
            "message": error.message,
            "metadata": error.metadata,
            "fields": error.fields,
            "preconditions": error.preconditions,
        },
        separators=(",", ":"),
        sort_keys=True,
    )


def decode_refusal(text: str) -> SeatError:
    data = json.loads(text)
    return SeatError(
        Kind(data["kind"]),
        str(data["reason"]),
        str(data["message"]),
        {str(k): str(v) for k, v in data["metadata"].items()},
        [(str(f), str(d)) for f, d in data["fields"]],
        [(str(t), str(s), str(d)) for t, s, d in data["preconditions"]],
    )
