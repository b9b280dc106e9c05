"""Wakes event watchers when a transaction that appended events commits in this process.
Commits of other replicas are seen by the watchers' polling."""

from __future__ import annotations

import threading


class EventHub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._closed = False

    def publish(self, account_id: str) -> None:
        with self._cond:
            self._versions[account_id] = self._versions.get(account_id, 0) + 1
            self._cond.notify_all()

    def version(self, account_id: str) -> int:
        with self._cond:
            return self._versions.get(account_id, 0)

    def wait(self, account_id: str, seen: int, timeout: float) -> None:
        """Returns when the account has news after version ``seen``, on close, or after timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._versions.get(account_id, 0) != seen, timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
