"""How far a hot standby is behind its primary, as a bound the service can promise.

Every ``interval`` the monitor reads the primary's WAL position (``pg_current_wal_insert_lsn``)
and remembers it with the time it read it; then it reads how far the standby has replayed
(``pg_last_wal_replay_lsn``). A position read at time t that the standby has replayed means the
standby holds every transaction that committed before t. So the standby is at most
``now - t`` behind, for the newest such t: that is the lag the monitor reports, and it is an
upper bound, not an estimate. A standby that stops replaying, or stops answering, sees its lag
grow, or is marked unusable, and the reads that could go to it go to the primary instead.

A standby with nothing to replay (an idle primary) has replayed the newest position: its lag
is one interval at most.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import peewee as pw

if TYPE_CHECKING:
    from .store import Store

log = logging.getLogger("seats.standby")

INTERVAL = 0.05
"""Seconds between two looks at the primary and the standby."""


def _lsn(text: str | None) -> int:
    """A WAL position ``X/Y`` as one number."""
    if not text:
        return -1
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class StandbyMonitor:
    """Tells whether a standby is within max_lag seconds of its primary."""

    def __init__(self, primary: Store, standby: Store, max_lag: float, interval: float = INTERVAL) -> None:
        self.primary = primary
        self.standby = standby
        self.max_lag = max_lag
        self.interval = interval
        self._positions: deque[tuple[float, int]] = deque()  # (monotonic time, primary position)
        self._fresh_at = float("-inf")  # the newest time whose primary position the standby replayed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="seats-standby-monitor", daemon=True)
        self._healthy = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def lag(self) -> float:
        """Seconds the standby may be behind (infinite when it was never seen caught up)."""
        return time.monotonic() - self._fresh_at

    def usable(self) -> bool:
        """Whether reads that tolerate max_lag seconds of staleness may go to the standby."""
        return self.lag() <= self.max_lag

    def failed(self) -> None:
        """A read on the standby failed: use the primary until the standby is seen again."""
        self._fresh_at = float("-inf")

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.look()
                if not self._healthy:
                    log.info("standby back within its staleness bound", extra={"lag_seconds": round(self.lag(), 3)})
                    self._healthy = True
            except (pw.PeeweeException, OSError) as exc:
                self.failed()
                if self._healthy:
                    log.warning(
                        "standby unusable: its reads go to the primary",
                        extra={"error": " ".join(str(exc).split())},
                    )
                    self._healthy = False
                self.primary._reset_connection()
                self.standby._reset_connection()

    def look(self) -> None:
        """One look: the primary's position now, then how far the standby has replayed."""
        now = time.monotonic()
        position = _lsn(self.primary.db.execute_sql("SELECT pg_current_wal_insert_lsn()").fetchone()[0])
        self._positions.append((now, position))
        replayed = _lsn(self.standby.db.execute_sql("SELECT pg_last_wal_replay_lsn()").fetchone()[0])
        while self._positions and self._positions[0][1] <= replayed:
            self._fresh_at = max(self._fresh_at, self._positions.popleft()[0])
        horizon = now - 10 * max(self.max_lag, 1.0)  # positions too old to matter again
        while len(self._positions) > 1 and self._positions[0][0] < horizon:
            self._positions.popleft()
