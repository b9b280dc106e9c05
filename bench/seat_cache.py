"""The SeatCache as a calling service sees it, against the seat server under test: the time of one
in-process check, and the time from a write to the cache applying its event.

A write (AssignSeat or UnassignSeat of one user of the probe account, alternating) appends
exactly one event; the cache has applied it when its sequence reaches the one before the write
plus one. "from commit" is bounded by two figures: from the write's OK answer (the commit came
before it, so this can undercount by the answer's trip) and from the write's send (the commit
came after it, so this overcounts by the trip there).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

from seats import SeatCache, SeatsClient

CHECKS = 200_000
BATCH = 10_000


@dataclass(frozen=True)
class CacheFigures:
    check_ns_median: float  # one tier_of from memory, median over batches
    writes: int
    after_answer_ms_p50: float
    after_answer_ms_p99: float
    after_send_ms_p50: float
    after_send_ms_p99: float
    resyncs: int
    remote_checks: int

    def lines(self) -> list[str]:
        return [
            f"SeatCache: tier_of from memory {self.check_ns_median / 1000:.2f} us a check (median of "
            f"{CHECKS // BATCH} batches of {BATCH:,})",
            f"SeatCache: write to applied, {self.writes} writes: after the OK answer p50 "
            f"{self.after_answer_ms_p50:.2f} ms, p99 {self.after_answer_ms_p99:.2f} ms; after the send p50 "
            f"{self.after_send_ms_p50:.2f} ms, p99 {self.after_send_ms_p99:.2f} ms "
            f"(resyncs {self.resyncs}, answers through CheckSeats {self.remote_checks})",
        ]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(target: str, account_id: str, owner: str, user_id: str, writes: int = 200) -> CacheFigures:
    """user_id holds a Sales Professional seat of account_id; it holds it again at the end."""
    with SeatsClient(target, actor=owner) as client, SeatCache(client, account_id, max_silence=5.0) as cache:
        if not cache.wait_until_healthy(timeout=30):
            raise RuntimeError(f"the seat cache did not load: {cache.last_error!r}")
        batches = []
        for _ in range(CHECKS // BATCH):
            start = time.perf_counter_ns()
            for _ in range(BATCH):
                cache.tier_of(user_id, "sales")
            batches.append((time.perf_counter_ns() - start) / BATCH)
        after_answer, after_send = [], []
        for i in range(writes):
            before = cache.sequence
            sent = time.perf_counter()
            if i % 2 == 0:
                client.unassign_seat(account_id, user_id, "sales")
            else:
                client.assign_seat(account_id, user_id, "sales", "professional")
            answered = time.perf_counter()
            if not cache.wait_for_sequence(before + 1, timeout=10):
                raise RuntimeError(f"the seat cache did not apply event {before + 1} within 10 s")
            applied = time.perf_counter()
            after_answer.append(max(0.0, applied - answered) * 1000)
            after_send.append((applied - sent) * 1000)
        if writes % 2:
            client.assign_seat(account_id, user_id, "sales", "professional")
        return CacheFigures(
            statistics.median(batches),
            writes,
            percentile(after_answer, 0.5),
            percentile(after_answer, 0.99),
            percentile(after_send, 0.5),
            percentile(after_send, 0.99),
            cache.resyncs,
            cache.remote_checks,
        )
