"""When and how long to wait before trying a call again."""

from __future__ import annotations

import random
from dataclasses import dataclass

import grpc

from .errors import SeatsError

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
RETRYABLE_REASONS = frozenset({"CONCURRENT_CHANGE"})  # ABORTED, but not ETAG_MISMATCH: that needs a new read


@dataclass(frozen=True)
class RetryPolicy:
    """Retries UNAVAILABLE, DEADLINE_EXCEEDED and a lost race (ABORTED / CONCURRENT_CHANGE)
    with jittered exponential backoff. Mutating calls are retried with the same request id,
    so a retry never doubles an effect (I5)."""

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


NO_RETRY = RetryPolicy(max_attempts=1)
