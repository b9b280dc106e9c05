"""When and how long to wait before trying a call again, and how long a whole call may take."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from .errors import SeatsError

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RETRYABLE_REASONS = frozenset({"CONCURRENT_CHANGE"})  # ABORTED, but not ETAG_MISMATCH: that needs a new read


@dataclass(frozen=True)
class RetryPolicy:
    """Retries UNAVAILABLE, DEADLINE_EXCEEDED and a lost race (ABORTED / CONCURRENT_CHANGE)
    with jittered exponential backoff. Mutating calls are retried with the same request id,
    so a retry never doubles an effect (I5). A call's timeout bounds all its attempts and
    the waits between them: no attempt starts, and no wait begins, that would end after it."""

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
