"""Accounts as committed at one version, kept in memory between calls.

Every change of an account appends at least one event to its log (I4) and moves the account's
`last_sequence` in the same transaction, so that number is the account's version: a copy in
memory taken at version N is exact for as long as the stored row still says N. A call reads
that one number (one statement on the primary key) and, when it matches, serves the account's
term, pools, the acting user's permissions and the seats of the users it names from memory.
Processes that share a database each check the stored number, so no copy is ever used after
another process changed the account. No I/O here: the use cases fill and check the copies.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from .model import Account, Assignment, Hub, Pool, Tier, User

MAX_ACCOUNTS = 4096  # accounts kept; the one stored longest ago goes first
MAX_USERS = 8192  # users and seat sets kept per account version
MAX_COPIED = 1024  # cached users and seat sets a write copies to the next version at most
MAX_MEMO = 256  # read results (pages, views) kept per account version


@dataclass
class Snapshot:
    """One account at one version. Its values never change once a call has it; only the
    user caches grow, with entries read at the same version."""

    account: Account
    pools: dict[tuple[Hub, Tier], Pool]
    users: dict[str, User | None] = field(default_factory=dict)  # None: not a user of the account
    seats: dict[str, dict[Hub, Assignment]] = field(default_factory=dict)  # every seat a user holds
    memo: dict[object, object] = field(default_factory=dict)  # read results at this version

    @property
    def version(self) -> int:
        return self.account.last_sequence

    def remember(self, users: dict[str, User | None], seats: dict[str, dict[Hub, Assignment]]) -> None:
        """Adds users and seat sets read at this version, while the snapshot holds fewer than
        MAX_USERS of each. Entries are never removed: a call that found one may rely on it."""
        if len(self.users) < MAX_USERS:
            self.users.update(users)
        if len(self.seats) < MAX_USERS:
            self.seats.update(seats)

    def memo_get(self, key: object) -> object | None:
        return self.memo.get(key)

    def memo_put(self, key: object, value: object, *, limit: int = MAX_MEMO) -> None:
        """Keeps a read result that reflects exactly this version, while fewer than limit are
        kept (a lower limit leaves room for the other kinds of result)."""
        if len(self.memo) < limit:
            self.memo[key] = value

    def successor(self, account: Account, pools: dict[tuple[Hub, Tier], Pool], touched: set[str]) -> Snapshot:
        """The account after a write that moved it from this version to account.last_sequence,
        changing the pools and the users named in touched (and nothing else). Users the write
        did not touch are the same at both versions: with none touched, both share one cache;
        otherwise the cache is copied without them, or started afresh when large (a copy per
        write would make writes cost more in larger accounts)."""
        if not touched:
            users, seats = self.users, self.seats
        elif len(self.users) + len(self.seats) > MAX_COPIED:
            users, seats = {}, {}
        else:
            users = {u: v for u, v in self.users.items() if u not in touched}
            seats = {u: v for u, v in self.seats.items() if u not in touched}
        return Snapshot(replace(account), {k: copy_pool(p) for k, p in pools.items()}, users, seats)


@dataclass(frozen=True)
class Known:
    """The users and seat sets one call named, at the version of its snapshot."""

    users: Mapping[str, User | None]
    seats: Mapping[str, dict[Hub, Assignment]]

    def user(self, user_id: str) -> User | None:
        """The user with its seats; None when not a user of the account."""
        user = self.users.get(user_id)
        if user is None:
            return None
        held = self.seats.get(user_id, {})
        return replace(user, seats=tuple(a.ref for _, a in sorted(held.items())))

    def seats_of(self, user_id: str) -> dict[Hub, Assignment]:
        return self.seats.get(user_id, {})


def copy_pool(pool: Pool) -> Pool:
    return Pool(
        pool.hub,
        pool.tier,
        pool.included,
        pool.purchased,
        pool.assigned,
        pool.pending_removal,
        pool.version,
        pool.idle_reclaim_days,
        pool.waiting_requests,
        pool.auto_approve_requests,
    )


class SnapshotCache:
    """The newest known snapshot per account, bounded: the account stored longest ago goes first."""

    def __init__(self, max_accounts: int = MAX_ACCOUNTS) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, Snapshot] = OrderedDict()
        self._max = max_accounts

    def get(self, account_id: str, version: int) -> Snapshot | None:
        """The snapshot of the account at exactly this version, if kept."""
        snapshot = self._entries.get(account_id)
        if snapshot is None or snapshot.version != version:
            return None
        return snapshot

    def put(self, snapshot: Snapshot) -> None:
        """Keeps snapshot unless the same or a newer version of the account is already kept."""
        account_id = snapshot.account.account_id
        with self._lock:
            kept = self._entries.get(account_id)
            if kept is not None and kept.version >= snapshot.version:
                return
            self._entries[account_id] = snapshot
            self._entries.move_to_end(account_id)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
