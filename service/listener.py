"""Commits of other processes, pushed: a PostgreSQL LISTEN on a direct connection.

Every transaction that appends events to an account runs ``pg_notify(channel, account_id)``
(service/store/store.py), which PostgreSQL delivers at commit, and only then, to every session
that listens on the channel. This thread is such a session: it hands each account id to the
event hub, which wakes the watches of that account on this server at once, whichever replica
made the change. LISTEN needs a session of its own, so the connection is a direct one (never
through a transaction-pooling PgBouncer, which would hand the session to others between
transactions).

Nothing depends on a notification arriving: a watch still polls (watch_poll_seconds), so a
lost connection only makes other replicas' commits slower to arrive until it is back. After a
reconnection every watch is woken once, for the notifications missed meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions

log = logging.getLogger("seats.listener")

BACKOFF_FIRST = 0.05
BACKOFF_MOST = 2.0


class EventListener:
    """Listens on one channel and calls on_account(account_id) per notification; calls
    on_gap() after each (re)connection, when notifications may have been missed."""

    def __init__(
        self,
        connect: Callable[[], Any],
        channel: str,
        on_account: Callable[[str], None],
        on_gap: Callable[[], None],
    ) -> None:
        self._connect = connect
        self.channel = channel
        self._on_account = [on_account]
        self._on_gap = on_gap
        self._stop = threading.Event()
        self._conn: Any = None
        self._thread = threading.Thread(target=self._run, name="seats-listener", daemon=True)
        self.connected = threading.Event()
        """Set while the LISTEN is in place (tests and the health of the push path)."""
        self.notifications = 0

    @classmethod
    def for_database(
        cls, db: Any, channel: str, on_account: Callable[[str], None], on_gap: Callable[[], None]
    ) -> EventListener:
        """A listener on the database a Peewee PostgresqlDatabase names (not connected by it)."""
        database = db.database
        # named for pg_stat_activity: an operator sees which sessions are listeners
        params = dict(db.connect_params) | {"application_name": f"seats listener {channel}"[:63]}
        return cls(lambda: psycopg2.connect(dbname=database, **params), channel, on_account, on_gap)

    def also_notify(self, fn: Callable[[str], None]) -> None:
        """Calls fn(account_id) too, for each notification (before start)."""
        self._on_account.append(fn)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():  # a server stopped before it started has no thread to join
            self._thread.join(timeout)

    def _run(self) -> None:
        delay = BACKOFF_FIRST
        while not self._stop.is_set():
            try:
                self._listen()
                delay = BACKOFF_FIRST
            except (psycopg2.Error, OSError) as exc:
                if self._stop.is_set():
                    break
                log.warning(
                    "event listener lost its connection; watches poll until it is back",
                    extra={"error": " ".join(str(exc).split()), "retry_seconds": round(delay, 3)},
                )
            finally:
                self.connected.clear()
                self._close()
            self._stop.wait(delay)
            delay = min(BACKOFF_MOST, delay * 2)

    def _listen(self) -> None:
        conn = self._conn = self._connect()
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        with conn.cursor() as cursor:
            cursor.execute(f'LISTEN "{self.channel}"')
        self.connected.set()
        self._on_gap()  # whatever committed before the LISTEN took hold
        log.info("listening for commits of other processes", extra={"channel": self.channel})
        last_check = time.monotonic()
        while not self._stop.is_set():
            readable, _, _ = select.select([conn], [], [], 1.0)
            if readable:
                conn.poll()
            elif time.monotonic() - last_check >= 5.0:
                # a quiet connection may be a dead one: a round trip tells
                with conn.cursor() as cursor:
                    cursor.execute("SELECT 1")
                last_check = time.monotonic()
            seen: set[str] = set()
            while conn.notifies:
                notify = conn.notifies.pop(0)
                seen.add(notify.payload)
            for account_id in seen:  # one wake per account, however many commits it had
                self.notifications += 1
                for fn in self._on_account:
                    fn(account_id)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg2.Error):
                conn.close()
