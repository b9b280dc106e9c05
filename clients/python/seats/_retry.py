"""When and how long to wait before trying a call again, and how long a whole call may take."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc
from google.protobuf.message import Message

from .errors import SeatsError

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED})
"""CANCELLED is here because a unary call of these clients is never cancelled by the client itself
(a timeout ends it DEADLINE_EXCEEDED): a CANCELLED answer comes from a server that gave the call
up, above all one shutting down gracefully, whose gRPC core ends the calls it had received but
not yet handed to a handler with CANCELLED rather than UNAVAILABLE (grpc/grpc#41785). A replica
that stops for a rolling restart does that to a call or two; the next attempt goes to another."""
RETRYABLE_REASONS = frozenset({"CONCURRENT_CHANGE"})  # ABORTED, but not ETAG_MISMATCH: that needs a new read


@dataclass(frozen=True)
class RetryPolicy:
    """Retries UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED by the server and a lost race (ABORTED /
    CONCURRENT_CHANGE) with jittered exponential backoff, when a retry is safe (``safe_to_retry``).
    Mutating calls are retried with the same request id, so a retry never doubles an effect (I5),
    whichever replica it reaches. A call's timeout bounds all its attempts and the waits between
    them: no attempt starts, and no wait begins, that would end after it."""

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 2.0
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based): full jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * self.multiplier ** (attempt - 1))
        return random.uniform(0, ceiling)

    def should_retry(self, error: SeatsError, attempt: int) -> bool:
        retryable = error.code in RETRYABLE or error.reason in RETRYABLE_REASONS
        return retryable and attempt < self.max_attempts


IDEMPOTENT_WRITES = frozenset({"seats.v1.RecordSeatActivityRequest"})
"""Writes whose effect is the same however often they are done, so they carry no request id and
any number of attempts is safe: RecordSeatActivity only ever moves a seat's last activity forward
to the latest time reported (last write wins, never backwards), so a report applied twice, by
one replica or by two, leaves what applying it once leaves. Without this list such a write would
still pass the request_id test below as a read (it has no request_id field); naming it here keeps
it retried even if the message one day gains a request_id that callers leave empty."""


def safe_to_retry(request: Message) -> bool:
    """Whether sending ``request`` again cannot make its effect twice. A read (a request with no
    request_id field) has no effect; a write has one exactly once under its request id (I5), so
    a write is safe only when it carries one: the first attempt may have been done by a replica
    that went away before answering, and the retry may land on another replica. The client
    gives every write a request id, so this refuses only a write stripped of it. A write that is
    idempotent by nature (``IDEMPOTENT_WRITES``) needs no request id and is always safe."""
    if request.DESCRIPTOR.full_name in IDEMPOTENT_WRITES:
        return True
    if "request_id" not in request.DESCRIPTOR.fields_by_name:
        return True
    return bool(getattr(request, "request_id", ""))


ONE_TRY = RetryPolicy(max_attempts=1)
"""No retry: ``retry=ONE_TRY`` (or ``retry=None``) makes a call once."""
NO_RETRY = ONE_TRY


def check_timeout(timeout: float | None) -> float | None:
    """``timeout`` when it is positive seconds or None; ValueError otherwise."""
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be positive seconds or None, not {timeout!r}")
    return timeout


class Deadline:
    """The end of one call, over all its attempts: ``timeout`` seconds from now (None: none)."""

    def __init__(self, timeout: float | None) -> None:
        timeout = check_timeout(timeout)
        self.at = None if timeout is None else time.monotonic() + timeout

    def left(self) -> float | None:
        """Seconds left (0 when passed), or None without a deadline: the next attempt's timeout."""
        return None if self.at is None else max(0.0, self.at - time.monotonic())

    def pause_before_retry(self, policy: RetryPolicy, error: SeatsError, attempt: int) -> float | None:
        """How long to wait before attempt ``attempt + 1``, or None when there is none: the
        error is final, the attempts are spent, or the wait would end at or after the deadline."""
        if not policy.should_retry(error, attempt):
            return None
        pause = policy.delay(attempt)
        if self.at is not None and time.monotonic() + pause >= self.at:
            return None
        return pause
