"""Event watches: the hub wakes watchers when a transaction that appended events commits, in
this process or, through the PostgreSQL listener (service/listener.py), in another one; the
watchers' polling is the fallback. The slots bound how many watches the server, and each
account, may hold open."""

from __future__ import annotations

import threading
from collections.abc import Callable


class EventHub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = {}
        self._epoch = 0  # moved by publish_all: every account has news
        self._closed = False

    def publish(self, account_id: str) -> None:
        with self._cond:
            self._versions[account_id] = self._versions.get(account_id, 0) + 1
            self._cond.notify_all()

    def publish_all(self) -> None:
        """Wakes every watcher: commits may have been missed (the listener reconnected)."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()

    def version(self, account_id: str) -> int:
        with self._cond:
            return self._versions.get(account_id, 0) + self._epoch

    def wait(self, account_id: str, seen: int, timeout: float, stop: Callable[[], bool] | None = None) -> None:
        """Returns when the account has news after version ``seen``, on close, when ``stop()``
        says so after an ``interrupt()``, or after timeout. ``stop`` runs under the hub's lock:
        it must take no lock itself."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._closed
                    or self._versions.get(account_id, 0) + self._epoch != seen
                    or (stop is not None and stop())
                ),
                timeout,
            )

    def interrupt(self) -> None:
        """Makes every waiter look at its ``stop`` again (a watch's call ended)."""
        with self._cond:
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class WatchSlots:
    """Open watches of this server, counted per server and per account. Each watch holds a
    handler thread for its whole life, so the server-wide cap keeps threads for unary calls;
    the per-account cap keeps one tenant from taking every slot of the server."""

    SERVER = "server"
    ACCOUNT = "account"

    def __init__(self, per_server: int, per_account: int) -> None:
        self.per_server = per_server
        self.per_account = per_account
        self._lock = threading.Lock()
        self._open: dict[str, int] = {}
        self._total = 0

    def take(self, account_id: str) -> str | None:
        """Takes a slot for a watch of the account: None when admitted, else the limit it
        hit (ACCOUNT is told first: it is the one the caller can do something about)."""
        with self._lock:
            held = self._open.get(account_id, 0)
            if held >= self.per_account:
                return self.ACCOUNT
            if self._total >= self.per_server:
                return self.SERVER
            self._open[account_id] = held + 1
            self._total += 1
            return None

    def give_back(self, account_id: str) -> None:
        """Gives back a slot take() gave the account."""
        with self._lock:
            held = self._open.get(account_id, 0)
            if held <= 0:
                raise RuntimeError(f"no watch slot of account {account_id!r} is taken")
            if held == 1:
                del self._open[account_id]
            else:
                self._open[account_id] = held - 1
            self._total -= 1
