"""An in-memory SeatStore: the persistence port (service/domain/ports.py) over plain dicts, for the
fast rule tests. It keeps the promises of the Peewee store (service/store/store.py) that the rules
rely on:

- a write is one transaction on the live tables, undone on any exception and at the end of a dry
  run; nested writes join the outer one; `savepoint` undoes only its own part (tables and
  after-commit callbacks) when it raises; `after_commit` callbacks run once the outermost write
  committed, never after a rollback or a dry run; one write at a time (a lock); reads, and
  statements called outside a write, wait for a running write to end, so they see committed
  rows only;
- the constraints of the schema (service/store/migrations.py) raise `peewee.IntegrityError`:
  I1 and I2 on pool rows, I3 (one seat per user and hub, in a pool and of a user of the same
  account), S10 (no deleting a user that holds a seat), S16 (one email key per account), unique
  event sequences per account, unique request ids per scope;
- `append_events` numbers events after `account.last_sequence` and runs the whole write again
  when the stored counter moved on (a compare-and-set), like the real store's retry;
- list methods return rows in the order of the SQL's ORDER BY.

Tables are dicts keyed like the tables' primary keys. Values going in and out are copies, so a
caller never shares an object with the tables (a database hands out fresh rows too).
"""

from __future__ import annotations

import copy
import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import peewee as pw

from service.domain.model import (
    Account,
    Assignment,
    Charge,
    Event,
    Hub,
    Invoice,
    Pool,
    RequestState,
    SeatRef,
    SeatRequest,
    Tier,
    User,
)
from service.domain.ports import RequestRecord

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])
MAX_ATTEMPTS = 30  # like the real store: a write that keeps losing its compare-and-set gives up


class _Retry(Exception):
    """Raised inside a write to undo it and run it again (the stored counter moved on, or a twin
    request record won)."""


@dataclass(frozen=True)
class PoolRow:
    included: int
    purchased: int
    assigned: int
    pending_removal: int
    version: int
    idle_reclaim_days: int = 0
    waiting_requests: int = 0
    auto_approve_requests: bool = False


@dataclass(frozen=True)
class UserRow:
    user: User  # without seats: those live in the assignments table
    email_key: str


@dataclass(frozen=True)
class AssignmentRow:
    account_id: str
    tier: Tier
    assign_time: datetime
    last_activity_time: datetime | None = None


@dataclass(frozen=True)
class ChargeRow:
    account_id: str
    charge: Charge
    invoice_id: str | None = None


@dataclass(frozen=True)
class RequestRow:
    fingerprint: str
    response: bytes
    refusal: str | None
    create_time: datetime


@dataclass
class Tables:
    accounts: dict[str, Account] = field(default_factory=dict)  # (account_id)
    pools: dict[tuple[str, Hub, Tier], PoolRow] = field(default_factory=dict)  # (account_id, hub, tier)
    users: dict[str, UserRow] = field(default_factory=dict)  # (user_id)
    assignments: dict[tuple[str, Hub], AssignmentRow] = field(default_factory=dict)  # (user_id, hub)
    events: dict[tuple[str, int], Event] = field(default_factory=dict)  # (account_id, sequence)
    charges: dict[str, ChargeRow] = field(default_factory=dict)  # (charge_id)
    requests: dict[tuple[str, str], RequestRow] = field(default_factory=dict)  # (scope, request_id)
    seat_requests: dict[tuple[str, str], SeatRequest] = field(default_factory=dict)  # (account_id, seat_request_id)
    invoices: dict[tuple[str, str], Invoice] = field(default_factory=dict)  # (account_id, invoice_id), no lines


def _refuse(constraint: str) -> pw.IntegrityError:
    return pw.IntegrityError(f"constraint failed: {constraint}")


def _check(condition: bool, constraint: str) -> None:
    if not condition:
        raise _refuse(constraint)


def _statement(method: F) -> F:
    """One statement. Called outside a write (the use cases read the account's version that way), it
    waits for a write running on another thread to end: like a database, it never shows rows that
    are not committed."""

    @functools.wraps(method)
    def run(self: MemoryStore, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            return method(self, *args, **kwargs)

    return cast(F, run)


class MemoryStore:
    """Implements service.domain.ports.SeatStore in memory."""

    def __init__(self) -> None:
        self.tables = Tables()
        self._lock = threading.RLock()
        self._local = threading.local()  # .callbacks: the after-commit list of this thread's write
        self._listeners: list[Callable[[str], None]] = []

    # ---- unit of work ---------------------------------------------------------------------

    def write(self, fn: Callable[[], T], *, dry_run: bool = False) -> T:
        """Runs fn in one transaction; a nested call joins the outer one (and its dry_run is
        ignored, as in the real store)."""
        if self._callbacks() is not None:
            return fn()
        with self._lock:
            result, callbacks = self._transaction(fn, dry_run)
        for callback in callbacks:
            callback()
        return result

    def _transaction(self, fn: Callable[[], T], dry_run: bool) -> tuple[T, list[Callable[[], None]]]:
        for _ in range(MAX_ATTEMPTS):
            saved = copy.deepcopy(self.tables)
            callbacks: list[Callable[[], None]] = []
            self._local.callbacks = callbacks
            try:
                result = fn()
            except _Retry:
                self.tables = saved
                continue
            except BaseException:
                self.tables = saved
                raise
            finally:
                self._local.callbacks = None
            if dry_run:
                self.tables = saved
                return result, []
            return result, callbacks
        raise RuntimeError("a write call lost too many races")

    def savepoint(self, fn: Callable[[], T]) -> T:
        """Inside a write: if fn raises, the tables are as they were before it, the after-commit
        callbacks it added are dropped, and the exception goes on; the write goes on."""
        callbacks = self._callbacks()
        if callbacks is None:
            raise RuntimeError("savepoint needs a write transaction")
        with self._lock:
            saved, count = copy.deepcopy(self.tables), len(callbacks)
            try:
                return fn()
            except BaseException:
                self.tables = saved
                del callbacks[count:]
                raise

    def _callbacks(self) -> list[Callable[[], None]] | None:
        callbacks: list[Callable[[], None]] | None = getattr(self._local, "callbacks", None)
        return callbacks

    def read(self, fn: Callable[[], T]) -> T:
        with self._lock:
            return fn()

    def snapshot_read(self, account_id: str, fn: Callable[[], T]) -> tuple[int, T]:
        with self._lock:
            return self.account_sequence(account_id), fn()

    def stale_read(self, account_id: str, fn: Callable[[MemoryStore], T]) -> tuple[int, T]:
        """No standby here: the primary's state, as snapshot_read reads it."""
        return self.snapshot_read(account_id, lambda: fn(self))

    def after_commit(self, callback: Callable[[], None]) -> None:
        callbacks = self._callbacks()
        if callbacks is None:
            raise RuntimeError("after_commit needs a write transaction")
        callbacks.append(callback)

    def stage(self, key: str, value: object) -> None:
        """One call per transaction here: nothing later in the transaction reads it back."""
        if self._callbacks() is None:
            raise RuntimeError("stage needs a write transaction")

    def staged(self, key: str) -> Any:
        return None

    def add_commit_listener(self, fn: Callable[[str], None]) -> None:
        """fn(account_id) runs after a write that appended events to that account commits."""
        self._listeners.append(fn)

    def _notify(self, account_id: str) -> None:
        for fn in self._listeners:
            fn(account_id)

    def account_ids(self) -> list[str]:
        """Every account (for tests that check invariants over the whole store)."""
        with self._lock:
            return sorted(self.tables.accounts)

    # ---- accounts -------------------------------------------------------------------------

    @_statement
    def insert_account(self, a: Account) -> None:
        _check(a.account_id not in self.tables.accounts, "accounts primary key")
        _check(a.term_months in (1, 12), "accounts.term_months")
        _check(a.renewal_time > a.term_start, "accounts renewal_time > term_start")
        _check(a.last_sequence >= 0, "accounts.last_sequence")
        self.tables.accounts[a.account_id] = replace(a)

    @_statement
    def get_account(self, account_id: str, *, lock: bool = False) -> Account | None:
        """lock changes nothing here: writes are already one at a time."""
        stored = self.tables.accounts.get(account_id)
        return replace(stored) if stored is not None else None

    @_statement
    def account_sequence(self, account_id: str) -> int:
        stored = self.tables.accounts.get(account_id)
        return stored.last_sequence if stored is not None else 0

    @_statement
    def save_account_term(self, a: Account) -> None:
        stored = self.tables.accounts.get(a.account_id)
        if stored is None:
            return
        _check(a.renewal_time > a.term_start, "accounts renewal_time > term_start")
        stored.term_start, stored.renewal_time = a.term_start, a.renewal_time

    @_statement
    def due_accounts(self, now: datetime, limit: int) -> list[str]:
        due = [a for a in self.tables.accounts.values() if a.renewal_time <= now]
        due.sort(key=lambda a: (a.renewal_time, a.account_id))  # ORDER BY renewal_time
        return [a.account_id for a in due[:limit]]

    # ---- pools ----------------------------------------------------------------------------

    @_statement
    def load_pools(self, account_id: str) -> dict[tuple[Hub, Tier], Pool]:
        pools = {}
        for acc, hub, tier in sorted(self.tables.pools):  # ORDER BY hub, tier
            if acc == account_id:
                r = self.tables.pools[(acc, hub, tier)]
                pools[(hub, tier)] = Pool(
                    hub,
                    tier,
                    r.included,
                    r.purchased,
                    r.assigned,
                    r.pending_removal,
                    r.version,
                    r.idle_reclaim_days,
                    r.waiting_requests,
                    r.auto_approve_requests,
                )
        return pools

    @_statement
    def save_pools(self, account_id: str, pools: Iterable[Pool]) -> None:
        """Inserts new pools and updates dirty ones (an update of a missing row changes
        nothing); clears both flags."""
        for pool in pools:
            if pool.new or pool.dirty:
                key = (account_id, pool.hub, pool.tier)
                row = PoolRow(
                    pool.included,
                    pool.purchased,
                    pool.assigned,
                    pool.pending_removal,
                    pool.version,
                    pool.idle_reclaim_days,
                    pool.waiting_requests,
                    pool.auto_approve_requests,
                )
                _check_pool_row(pool.hub, pool.tier, row)
                if pool.new:
                    _check(account_id in self.tables.accounts, "seat_pools.account_id references accounts")
                    _check(key not in self.tables.pools, "seat_pools primary key")
                    self.tables.pools[key] = row
                elif key in self.tables.pools:
                    self.tables.pools[key] = row
            pool.new = pool.dirty = False

    @_statement
    def delete_pool(self, account_id: str, hub: Hub, tier: Tier) -> None:
        _check(
            not any(
                a.account_id == account_id and h is hub and a.tier is tier
                for (_, h), a in self.tables.assignments.items()
            ),
            "seat_assignments (account_id, hub, tier) references seat_pools",
        )
        self.tables.pools.pop((account_id, hub, tier), None)

    # ---- users ----------------------------------------------------------------------------

    def _user_row(self, account_id: str, user_id: str) -> UserRow | None:
        row = self.tables.users.get(user_id)
        return row if row is not None and row.user.account_id == account_id else None

    @_statement
    def get_users(self, account_id: str, user_ids: Sequence[str]) -> dict[str, User]:
        found = {}
        for user_id in user_ids:
            row = self._user_row(account_id, user_id)
            if row is not None:
                found[user_id] = row.user
        return found

    @_statement
    def email_owner(self, account_id: str, email_key: str) -> str | None:
        for user_id, row in self.tables.users.items():
            if row.user.account_id == account_id and row.email_key == email_key:
                return user_id
        return None

    @_statement
    def insert_user(self, u: User, email_key: str) -> None:
        _check(u.account_id in self.tables.accounts, "users.account_id references accounts")
        _check(u.user_id not in self.tables.users, "users primary key")
        _check(self.email_owner(u.account_id, email_key) is None, "users unique (account_id, email_key)")
        self.tables.users[u.user_id] = UserRow(replace(u, seats=()), email_key)

    @_statement
    def update_user(self, u: User, email_key: str, expected_version: int) -> bool:
        """Writes u if the stored version is still expected_version; False when it moved on."""
        row = self._user_row(u.account_id, u.user_id)
        if row is None or row.user.version != expected_version:
            return False
        _check(self.email_owner(u.account_id, email_key) in (None, u.user_id), "users unique (account_id, email_key)")
        updated = replace(
            row.user,
            email=u.email,
            display_name=u.display_name,
            permissions=u.permissions,
            version=u.version,
            update_time=u.update_time,
        )
        self.tables.users[u.user_id] = UserRow(updated, email_key)
        return True

    @_statement
    def delete_user(self, account_id: str, user_id: str) -> bool:
        if self._user_row(account_id, user_id) is None:
            return False
        _check(  # S10: the assignments' foreign key to users refuses it
            not any(u == user_id for u, _ in self.tables.assignments),
            "seat_assignments (account_id, user_id) references users",
        )
        del self.tables.users[user_id]
        return True

    def _seats_of(self, user_id: str) -> tuple[SeatRef, ...]:
        held = self.tables.assignments
        return tuple(SeatRef(hub, held[(user_id, hub)].tier) for hub in sorted(Hub) if (user_id, hub) in held)

    @_statement
    def list_users(self, account_id: str, after: str | None, limit: int, hub: Hub | None) -> list[User]:
        rows = [
            row.user
            for user_id, row in sorted(self.tables.users.items())  # ORDER BY user_id
            if row.user.account_id == account_id
            and (not after or user_id > after)
            and (hub is None or (user_id, hub) in self.tables.assignments)
        ]
        return [replace(user, seats=self._seats_of(user.user_id)) for user in rows[:limit]]

    # ---- assignments ----------------------------------------------------------------------

    @_statement
    def assignments_for(self, account_id: str, user_ids: list[str]) -> dict[tuple[str, Hub], Assignment]:
        wanted = set(user_ids)
        return {
            (user_id, hub): Assignment(user_id, hub, a.tier, a.assign_time)
            for (user_id, hub), a in self.tables.assignments.items()
            if a.account_id == account_id and user_id in wanted
        }

    def _check_assignment_refs(self, account_id: str, a: Assignment) -> None:
        _check(
            self._user_row(account_id, a.user_id) is not None,
            "seat_assignments (account_id, user_id) references users",
        )
        _check(
            (account_id, a.hub, a.tier) in self.tables.pools,
            "seat_assignments (account_id, hub, tier) references seat_pools",
        )

    @_statement
    def insert_assignment(self, account_id: str, a: Assignment) -> None:
        _check((a.user_id, a.hub) not in self.tables.assignments, "seat_assignments primary key (user_id, hub)")
        self._check_assignment_refs(account_id, a)
        self.tables.assignments[(a.user_id, a.hub)] = AssignmentRow(account_id, a.tier, a.assign_time)

    @_statement
    def move_assignment(self, account_id: str, a: Assignment) -> None:
        row = self.tables.assignments.get((a.user_id, a.hub))
        if row is None or row.account_id != account_id:
            return
        self._check_assignment_refs(account_id, a)
        self.tables.assignments[(a.user_id, a.hub)] = AssignmentRow(
            account_id, a.tier, a.assign_time, row.last_activity_time
        )

    @_statement
    def delete_assignment(self, account_id: str, user_id: str, hub: Hub) -> None:
        row = self.tables.assignments.get((user_id, hub))
        if row is not None and row.account_id == account_id:
            del self.tables.assignments[(user_id, hub)]

    @_statement
    def holders(self, account_id: str, hub: Hub, tier: Tier) -> list[str]:
        return sorted(  # ORDER BY user_id
            user_id
            for (user_id, h), a in self.tables.assignments.items()
            if a.account_id == account_id and h is hub and a.tier is tier
        )

    @_statement
    def list_assignments(
        self,
        account_id: str,
        after: tuple[str, int] | None,
        limit: int,
        hub: Hub | None,
        tier: Tier | None,
        idle_before: datetime | None = None,
    ) -> list[Assignment]:
        rows = [
            Assignment(user_id, h, a.tier, a.assign_time, a.last_activity_time)
            for (user_id, h), a in sorted(self.tables.assignments.items())  # ORDER BY user_id, hub
            if a.account_id == account_id
            and (hub is None or h is hub)
            and (tier is None or a.tier is tier)
            and (idle_before is None or _last_use(a) < idle_before)
            and (not after or (user_id, int(h)) > (after[0], after[1]))
        ]
        return rows[:limit]

    @_statement
    def record_activity(self, account_id: str, reports: Sequence[tuple[str, Hub, int]]) -> int:
        moved = 0
        for user_id, hub, micros in reports:
            time = datetime.fromtimestamp(micros // 1_000_000, UTC).replace(microsecond=micros % 1_000_000)
            row = self.tables.assignments.get((user_id, hub))
            if row is None or row.account_id != account_id or time < row.assign_time:
                continue
            if row.last_activity_time is None or row.last_activity_time < time:
                self.tables.assignments[(user_id, hub)] = replace(row, last_activity_time=time)
                moved += 1
        return moved

    @_statement
    def idle_seats(self, account_id: str, hub: Hub, tier: Tier, idle_before: datetime, limit: int) -> list[Assignment]:
        return [
            Assignment(user_id, h, a.tier, a.assign_time, a.last_activity_time)
            for (user_id, h), a in sorted(self.tables.assignments.items())
            if a.account_id == account_id and h is hub and a.tier is tier and _last_use(a) <= idle_before
        ][:limit]

    @_statement
    def delete_idle_assignment(self, account_id: str, user_id: str, hub: Hub, idle_before: datetime) -> bool:
        row = self.tables.assignments.get((user_id, hub))
        if row is None or row.account_id != account_id or _last_use(row) > idle_before:
            return False
        del self.tables.assignments[(user_id, hub)]
        return True

    @_statement
    def reclaim_candidates(self, now: datetime, limit: int) -> list[str]:
        found = {
            a.account_id
            for (_, h), a in self.tables.assignments.items()
            if (days := self.tables.pools[(a.account_id, h, a.tier)].idle_reclaim_days)
            and _last_use(a) <= now - timedelta(days=days)
        }
        return sorted(found)[:limit]

    # ---- seat requests ----------------------------------------------------------------------

    def _requests_of(self, account_id: str) -> list[SeatRequest]:
        found = [r for (a, _), r in self.tables.seat_requests.items() if a == account_id]
        return sorted(found, key=lambda r: r.number)  # ORDER BY number

    @_statement
    def next_request_number(self, account_id: str) -> int:
        return max((r.number for r in self._requests_of(account_id)), default=0) + 1

    @_statement
    def insert_seat_request(self, account_id: str, r: SeatRequest) -> None:
        """The constraints of seat_requests: the keys, one number per account, and at most one open
        request per user and hub."""
        _check(account_id in self.tables.accounts, "seat_requests.account_id references accounts")
        _check((account_id, r.seat_request_id) not in self.tables.seat_requests, "seat_requests primary key")
        others = self._requests_of(account_id)
        _check(r.number > 0 and all(o.number != r.number for o in others), "seat_requests unique (account_id, number)")
        _check(
            not r.state.open or not any(o.state.open and (o.user_id, o.hub) == (r.user_id, r.hub) for o in others),
            "seat_requests_one_open",
        )
        self.tables.seat_requests[(account_id, r.seat_request_id)] = r

    @_statement
    def get_seat_request(self, account_id: str, seat_request_id: str) -> SeatRequest | None:
        return self.tables.seat_requests.get((account_id, seat_request_id))

    @_statement
    def open_seat_requests(self, account_id: str, user_id: str) -> list[SeatRequest]:
        return [r for r in self._requests_of(account_id) if r.user_id == user_id and r.state.open]

    @_statement
    def waiting_seat_requests(self, account_id: str, hub: Hub, tier: Tier, limit: int) -> list[SeatRequest]:
        found = [
            r
            for r in self._requests_of(account_id)
            if r.hub is hub and r.tier is tier and r.state is RequestState.WAITING
        ]
        return found[:limit]

    @_statement
    def close_seat_request(
        self, account_id: str, seat_request_id: str, state: RequestState, when: datetime, decided_by: str
    ) -> bool:
        row = self.tables.seat_requests.get((account_id, seat_request_id))
        if row is None or not row.state.open:
            return False
        self.tables.seat_requests[(account_id, seat_request_id)] = replace(
            row, state=state, update_time=when, decided_by=decided_by
        )
        return True

    @_statement
    def list_seat_requests(
        self,
        account_id: str,
        after: int,
        limit: int,
        state: RequestState | None,
        hub: Hub | None,
        user_id: str | None,
    ) -> list[SeatRequest]:
        found = [
            r
            for r in self._requests_of(account_id)
            if r.number > after
            and (state is None or r.state is state)
            and (hub is None or r.hub is hub)
            and (user_id is None or r.user_id == user_id)
        ]
        return found[:limit]

    # ---- events (I4) ----------------------------------------------------------------------

    @_statement
    def append_events(self, account: Account, events: list[Event]) -> None:
        """Numbers events after account.last_sequence; a duplicate sequence is refused, and a
        stored counter that moved on since account was read runs the whole write again."""
        if not events:
            return
        account_id = account.account_id
        _check(account_id in self.tables.accounts, "seat_events.account_id references accounts")
        first = account.last_sequence + 1
        numbered = [replace(e, sequence=first + i) for i, e in enumerate(events)]
        for e in numbered:
            _check(e.sequence > 0, "seat_events.sequence > 0")
            _check((account_id, e.sequence) not in self.tables.events, "seat_events primary key (account_id, sequence)")
        for e in numbered:
            self.tables.events[(account_id, e.sequence)] = e
        stored = self.tables.accounts[account_id]
        if stored.last_sequence != first - 1:
            raise _Retry
        stored.last_sequence = account.last_sequence = numbered[-1].sequence
        self.after_commit(lambda: self._notify(account_id))

    @_statement
    def list_events(self, account_id: str, after: int, limit: int) -> list[Event]:
        sequences = sorted(s for a, s in self.tables.events if a == account_id and s > after)  # ORDER BY sequence
        return [self.tables.events[(account_id, s)] for s in sequences[:limit]]

    # ---- charges (I6) ---------------------------------------------------------------------

    @_statement
    def insert_charges(self, account_id: str, charges: list[Charge]) -> None:
        for c in charges:
            _check(account_id in self.tables.accounts, "charges.account_id references accounts")
            _check(c.charge_id not in self.tables.charges, "charges primary key")
            _check(c.quantity >= 0 and c.unit_price_minor >= 0 and c.amount_minor >= 0, "charges checks")
            _check(all(type(v) is int for v in (c.quantity, c.unit_price_minor, c.amount_minor)), "charges integers")
            self.tables.charges[c.charge_id] = ChargeRow(account_id, c)

    @_statement
    def charges_since(self, account_id: str, period_start: datetime) -> list[Charge]:
        found = [
            r.charge
            for r in self.tables.charges.values()
            if r.account_id == account_id and r.charge.period_start >= period_start
        ]
        return sorted(found, key=lambda c: (c.charge_time, c.charge_id))  # ORDER BY charge_time, charge_id

    # ---- invoices --------------------------------------------------------------------------

    @_statement
    def issue_invoice(
        self,
        account_id: str,
        invoice_id: str,
        period_start: datetime,
        period_end: datetime,
        now: datetime,
        currency_code: str,
    ) -> Invoice:
        """Bills the unbilled charges of terms that began before period_end; the constraints of
        invoices: the key, one number and one period start per account, a positive period."""
        _check(account_id in self.tables.accounts, "invoices.account_id references accounts")
        _check(period_end > period_start, "invoices period_end > period_start")
        mine = [i for (a, _), i in self.tables.invoices.items() if a == account_id]
        _check(all(i.period_start != period_start for i in mine), "invoices unique (account_id, period_start)")
        _check((account_id, invoice_id) not in self.tables.invoices, "invoices primary key")
        billed = [
            (key, row)
            for key, row in self.tables.charges.items()
            if row.account_id == account_id and row.invoice_id is None and row.charge.period_start < period_end
        ]
        for key, row in billed:
            self.tables.charges[key] = replace(row, invoice_id=invoice_id)
        number = max((i.number for i in mine), default=0) + 1
        invoice = Invoice(
            invoice_id,
            number,
            period_start,
            period_end,
            now,
            currency_code,
            sum(row.charge.amount_minor for _, row in billed),
            len(billed),
        )
        self.tables.invoices[(account_id, invoice_id)] = invoice
        return invoice

    @_statement
    def get_invoice(self, account_id: str, invoice_id: str) -> Invoice | None:
        invoice = self.tables.invoices.get((account_id, invoice_id))
        if invoice is None:
            return None
        lines = [
            r.charge for r in self.tables.charges.values() if (r.account_id, r.invoice_id) == (account_id, invoice_id)
        ]
        return replace(invoice, lines=tuple(sorted(lines, key=lambda c: (c.charge_time, c.charge_id))))

    @_statement
    def list_invoices(self, account_id: str, after: int, limit: int) -> list[Invoice]:
        found = sorted(
            (i for (a, _), i in self.tables.invoices.items() if a == account_id and i.number > after),
            key=lambda i: i.number,
        )
        return found[:limit]

    # ---- request records (I5) -------------------------------------------------------------

    @_statement
    def find_request(self, scope: str, request_id: str, not_before: datetime) -> RequestRecord | None:
        row = self.tables.requests.get((scope, request_id))
        if row is None or row.create_time < not_before:
            return None
        return RequestRecord(row.fingerprint, row.response, row.refusal)

    @_statement
    def save_request(
        self,
        scope: str,
        request_id: str,
        fingerprint: str,
        response: bytes,
        now: datetime,
        not_before: datetime,
        *,
        refusal: str | None = None,
    ) -> None:
        """Records a first result (a response, or a refusal), or replaces an expired one; an
        unexpired twin means this call lost a race: the write runs again (and finds the twin's
        result)."""
        row = self.tables.requests.get((scope, request_id))
        if row is not None and row.create_time >= not_before:
            raise _Retry
        self.tables.requests[(scope, request_id)] = RequestRow(fingerprint, bytes(response), refusal, now)

    @_statement
    def purge_requests(self, before: datetime) -> int:
        old = [key for key, row in self.tables.requests.items() if row.create_time < before]
        for key in old:
            del self.tables.requests[key]
        return len(old)


def _check_pool_row(hub: Hub, tier: Tier, r: PoolRow) -> None:
    """The CHECKs of seat_pools: I1 and I2."""
    _check(int(hub) in (1, 2) and 1 <= int(tier) <= 4, "seat_pools hub and tier")
    _check(r.included >= 0 and r.purchased >= 0, "seat_pools included, purchased >= 0")
    _check(0 <= r.assigned <= r.included + r.purchased, "seat_pools I1: 0 <= assigned <= included + purchased")
    _check(
        0 <= r.pending_removal <= r.purchased and r.pending_removal <= r.included + r.purchased - r.assigned,
        "seat_pools I2: 0 <= pending_removal <= purchased, pending_removal <= included + purchased - assigned",
    )
    _check(r.idle_reclaim_days == 0 or 7 <= r.idle_reclaim_days <= 3650, "seat_pools idle_reclaim_days")
    _check(
        r.waiting_requests >= 0
        and (r.waiting_requests == 0 or r.included + r.purchased - r.assigned - r.pending_removal == 0),
        "seat_pools waiting_requests only while no seat is free",
    )


def _last_use(row: AssignmentRow) -> datetime:
    """When the seat was last used: the later of its last activity and its grant (or move)."""
    if row.last_activity_time is not None and row.last_activity_time > row.assign_time:
        return row.last_activity_time
    return row.assign_time
