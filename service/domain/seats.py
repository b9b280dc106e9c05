"""The seat rules (S1..S20) over the store. Every write runs as one unit of work inside one
store transaction: lock the account, apply a due renewal, check the actor, change pools and
assignments, append one event per change (I4), commit. No gRPC here."""

from __future__ import annotations

import re
import secrets
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TypeVar

from ..clock import Clock
from . import paging, requests
from .errors import (
    ErrorReason,
    Kind,
    SeatError,
    account_not_found,
    actor_not_in_account,
    concurrent_change,
    invalid,
    permission_missing,
    precondition,
    reason,
    user_not_found,
)
from .model import (
    PERMISSION_NAMES,
    Account,
    Assignment,
    Call,
    ChangeOutcome,
    Charge,
    ChargeKind,
    Event,
    EventType,
    Hub,
    Invoice,
    Page,
    Permission,
    Permissions,
    Pool,
    PoolCounts,
    PoolView,
    RequestState,
    SeatRef,
    SeatRequest,
    Tier,
    User,
)
from .ports import SeatStore
from .prices import PriceBook, prorate
from .snapshots import MAX_MEMO, Known, Snapshot, SnapshotCache, copy_pool
from .terms import add_months, next_renewal

T = TypeVar("T")

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_TEXT = 200
MAX_EMAIL = 254
MAX_BATCH = 1000
MAX_ID = 128
MAX_QUANTITY = 10_000  # seats per call
MAX_POOL_SEATS = 1_000_000  # seats per pool: counts stay far inside int32
MAX_RENEWALS_AT_ONCE = 1200  # a hundred years of monthly terms
ACTIVITY_AHEAD = timedelta(minutes=5)  # how far ahead of the clock an activity time may be (clock skew)
MIN_IDLE_DAYS = 7  # a seat idle over a weekend is not idle
MAX_IDLE_DAYS = 3650
MAX_IDLE_LISTED = 1000  # idle seats an UpdateSeatPolicy answer lists
RECLAIM_BATCH = 500  # seats one pool gives back per sweep transaction
FUTURE_TOLERANCE = timedelta(minutes=5)
MAX_PAST_TERM_START = timedelta(days=10 * 365)  # an account migrated from an older system
MAX_SEQUENCE = 2**62
POLICY_FIELDS = frozenset({"idle_reclaim_days", "auto_approve_requests"})  # what UpdateSeatPolicy may set
POLICY_ACTOR = "policy"  # decided_by of a request granted by a pool's auto-approval
MAX_KEPT_CHECK = 16  # CheckSeats answers of up to this many ids are kept per account version


def new_id(prefix: str) -> str:
    """Opaque ids that sort by creation time: prefix, milliseconds, randomness."""
    return f"{prefix}_{time.time_ns() // 1_000_000:011x}{secrets.token_hex(6)}"


def tier_name(hub: Hub, tier: Tier) -> str:
    return f"{hub.name.title()} {tier.name.title()}"


# ---- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountView:
    account: Account
    pools: list[PoolView]


@dataclass(frozen=True)
class NewAccount:
    display_name: str
    owner_email: str
    owner_display_name: str
    subscriptions: list[tuple[Hub, Tier, int]]
    term_months: int
    term_start: datetime | None


@dataclass(frozen=True)
class AssignResult:
    assignment: Assignment
    pool: PoolView
    changed: bool
    previous_tier: Tier | None
    charge: Charge | None


@dataclass(frozen=True)
class ChangeResult:
    user_id: str
    hub: Hub
    tier: Tier | None
    previous_tier: Tier | None
    outcome: ChangeOutcome


@dataclass(frozen=True)
class BatchResult:
    results: list[ChangeResult]
    pools: list[PoolView]


@dataclass(frozen=True)
class UpgradeResult:
    account: AccountView
    charges: list[Charge]
    pool: PoolView


@dataclass(frozen=True)
class InvoiceLine:
    kind: ChargeKind
    hub: Hub
    tier: Tier
    quantity: int
    unit_price_minor: int
    amount_minor: int
    description: str


@dataclass(frozen=True)
class InvoicePreview:
    term_start: datetime
    renewal_time: datetime
    currency_code: str
    current_term_charges: list[Charge]
    current_term_total_minor: int
    next_renewal_lines: list[InvoiceLine]
    next_renewal_total_minor: int
    proposed_charges: list[Charge] = field(default_factory=list)
    proposed_total_minor: int = 0


@dataclass(frozen=True)
class UserChanges:
    email: str | None = None
    display_name: str | None = None
    super_admin: bool | None = None
    edit_billing: bool | None = None
    account_access: bool | None = None


# ---- the unit of work ---------------------------------------------------------------------


@dataclass
class Unit:
    """One account's write transaction: the part of the account the call needs, loaded once
    (the term, every pool, the acting user and the users the call names, with their seats),
    changed by the rules, and what it will append."""

    account: Account
    call: Call
    now: datetime
    actor: User | None
    _pools: dict[tuple[Hub, Tier], Pool]
    base: Snapshot
    known: Known
    events: list[Event] = field(default_factory=list)
    charges: list[Charge] = field(default_factory=list)
    closed: list[tuple[Hub, Tier]] = field(default_factory=list)

    def user(self, user_id: str) -> User | None:
        """A user the call named when it opened, with its seats, as it was then; None if not
        in the account."""
        return self.known.user(user_id)

    def seats(self, user_id: str) -> dict[Hub, Assignment]:
        """The seats a user named by the call held when it opened."""
        return self.known.seats_of(user_id)

    def event(
        self,
        type: EventType,
        pool: Pool | None = None,
        before: PoolCounts | None = None,
        *,
        user_id: str = "",
        previous_tier: int = 0,
        quantity: int = 0,
        seat_request_id: str = "",
        invoice_id: str = "",
    ) -> None:
        """Records one change (I4); the store numbers it when the unit commits."""
        self.events.append(
            Event(
                type=type,
                actor=self.call.actor_label,
                time=self.now,
                request_id=self.call.request_id,
                user_id=user_id,
                hub=int(pool.hub) if pool else 0,
                tier=int(pool.tier) if pool else 0,
                previous_tier=previous_tier,
                quantity=quantity,
                before=(before or pool.counts()) if pool else PoolCounts(),
                after=pool.counts() if pool else PoolCounts(),
                seat_request_id=seat_request_id,
                invoice_id=invoice_id,
            )
        )


class SeatDomain:
    """Every operation of the service, as rules over the store."""

    def __init__(self, store: SeatStore, prices: PriceBook, clock: Clock) -> None:
        self.store = store
        self.prices = prices
        self.clock = clock
        self.snapshots = SnapshotCache()

    # ---- plumbing -----------------------------------------------------------------------

    def _write(
        self,
        call: Call,
        account_id: str,
        work: Callable[[Unit], T],
        *,
        need: Permission | None,
        what: str,
        dry_run: bool = False,
        users: Iterable[str] = (),
    ) -> T:
        """Runs work as one unit of work on the account: users names the users whose rows and
        seats it reads (the actor is always read). A call's request id is checked once the
        account is locked and the actor may make the call, and a rule refusal of the work is
        kept with it (see requests.py)."""

        def run() -> T:
            unit = self._open(call, account_id, need=need, what=what, users=users)
            request = None if dry_run else requests.current()
            if request is None:
                return self._apply(unit, work)
            requests.check(self.store, request, account_id)
            return requests.keeping(self.store, request, lambda: self._apply(unit, work))

        return self.store.write(run, dry_run=dry_run)

    def _apply(self, unit: Unit, work: Callable[[Unit], T]) -> T:
        """A due renewal first, then the work, then the unit saved."""
        self._renew_if_due(unit)
        result = work(unit)
        self._finish(unit)
        return result

    def _open(
        self, call: Call, account_id: str, *, need: Permission | None, what: str, users: Iterable[str] = ()
    ) -> Unit:
        """Locks the account, loads what the call needs (from memory where the stored version
        proves the copy current) and checks the actor."""
        check_id("account_id", account_id)
        account = self.store.get_account(account_id, lock=True)
        if account is None:
            raise self._missing(call, account_id)
        base = self._base(account)
        known = self._known(base, [*([call.actor] if call.actor else []), *users])
        assert known is not None
        actor = self._check_actor(call, known)
        if need is not None:
            self._require(actor, need, what)
        pools = {k: copy_pool(p) for k, p in base.pools.items()}
        return Unit(account, call, self.clock.now(), actor, pools, base, known)

    def _base(self, account: Account) -> Snapshot:
        """The locked account's snapshot: left by an earlier call of the same transaction (a
        group commit), kept in memory, or read."""
        account_id = account.account_id
        staged: Snapshot | None = self.store.staged(account_id)
        if staged is not None and staged.version == account.last_sequence:
            return staged
        return self.snapshots.get(account_id, account.last_sequence) or Snapshot(
            replace(account), self.store.load_pools(account_id)
        )

    def _known(
        self, snapshot: Snapshot, users: Iterable[str], seats: Iterable[str] = (), *, load: bool = True
    ) -> Known | None:
        """The rows and seats of users, and the seats of seats, at the snapshot's version: from
        memory, and what memory lacks read from the store (inside the caller's transaction,
        which saw that version), or None without load when memory lacks any."""
        user_ids = _only_ids(users)
        seat_ids = user_ids | _only_ids(seats)
        need_rows = user_ids - snapshot.users.keys()
        need_seats = seat_ids - snapshot.seats.keys()
        if not (need_rows or need_seats):  # the snapshot's entries are never removed: share them
            return Known(snapshot.users, snapshot.seats)
        if not load:
            return None
        account_id = snapshot.account.account_id
        loaded_rows: dict[str, User | None] = {}
        if need_rows:
            found_users = self.store.get_users(account_id, sorted(need_rows))
            loaded_rows = {u: found_users.get(u) for u in need_rows}
        loaded_seats: dict[str, dict[Hub, Assignment]] = {u: {} for u in need_seats}
        if need_seats:
            for (user_id, hub), assignment in self.store.assignments_for(account_id, sorted(need_seats)).items():
                loaded_seats[user_id][hub] = assignment
        snapshot.remember(loaded_rows, loaded_seats)
        return Known(ChainMap(loaded_rows, snapshot.users), ChainMap(loaded_seats, snapshot.seats))

    @staticmethod
    def _missing(call: Call, account_id: str) -> SeatError:
        """An actor is refused before the account's existence is told, so that an outsider
        learns nothing about another account (AIP-211)."""
        if call.actor is not None:
            return actor_not_in_account(call.actor)
        return account_not_found(account_id)

    @staticmethod
    def _check_actor(call: Call, known: Known) -> User | None:
        if call.actor is None:
            return None
        actor = known.users.get(call.actor)
        if actor is None:
            raise actor_not_in_account(call.actor)
        return actor

    @staticmethod
    def _require(actor: User | None, permission: Permission, what: str) -> None:
        """A call without an actor is a trusted system call; an actor needs the permission
        (S7, S12), which a super admin always has (S19)."""
        if actor is not None and not actor.permissions.has(permission):
            raise permission_missing(PERMISSION_NAMES[permission], what)

    def _pools(self, unit: Unit) -> dict[tuple[Hub, Tier], Pool]:
        return unit._pools

    def _pool(self, unit: Unit, hub: Hub, tier: Tier) -> Pool:
        pool = unit._pools.get((hub, tier))
        if pool is None:
            raise precondition(
                ErrorReason.NOT_SUBSCRIBED,
                f"{hub.name}/{tier.name}",
                f"the account has no {tier_name(hub, tier)} subscription",
                hub=hub.name,
                tier=tier.name,
            )
        return pool

    def _finish(self, unit: Unit) -> None:
        """Serves the waiting lists, saves the unit, and once it commits keeps the account's new
        version in memory."""
        self._serve_waiting(unit)
        account_id = unit.account.account_id
        for hub, tier in unit.closed:
            self.store.delete_pool(account_id, hub, tier)
        self.store.save_pools(account_id, unit._pools.values())
        self.store.insert_charges(account_id, unit.charges)
        self.store.append_events(unit.account, unit.events)
        after = unit.base
        if unit.events:
            after = unit.base.successor(unit.account, unit._pools, {e.user_id for e in unit.events if e.user_id})
        self.store.stage(account_id, after)
        self.store.after_commit(lambda: self.snapshots.put(after))

    # ---- reads ----------------------------------------------------------------------------

    def _state(
        self, call: Call, account_id: str, *, users: Iterable[str] = (), seats: Iterable[str] = ()
    ) -> tuple[Snapshot, Known]:
        """For reads: the account at its current version after the actor check, with the rows
        and seats of users and the seats of seats, and a due renewal applied first. One
        statement when everything is in memory; otherwise one read transaction."""
        check_id("account_id", account_id)
        wanted = [*([call.actor] if call.actor else []), *users]
        seat_ids = list(seats)
        for _ in range(3):
            version = self.store.read(lambda: self.store.account_sequence(account_id))
            snapshot = self.snapshots.get(account_id, version) if version else None
            known = self._known(snapshot, wanted, seat_ids, load=False) if snapshot is not None else None
            if snapshot is None or known is None:
                state = self.store.read(lambda: self._load_state(account_id, wanted, seat_ids))
                if state is None:
                    raise self._missing(call, account_id)
                snapshot, known = state
                self.snapshots.put(snapshot)
            self._check_actor(call, known)
            if snapshot.account.renewal_time > self.clock.now():
                return snapshot, known
            self.renew_account(account_id)
        raise concurrent_change()

    def _load_state(self, account_id: str, users: list[str], seats: list[str]) -> tuple[Snapshot, Known] | None:
        """In one read transaction: the account's version, then what the call lacks at it."""

        def load() -> tuple[Snapshot, Known] | None:
            account = self.store.get_account(account_id)
            if account is None:
                return None
            snapshot = self.snapshots.get(account_id, account.last_sequence) or Snapshot(
                account, self.store.load_pools(account_id)
            )
            known = self._known(snapshot, users, seats)
            assert known is not None
            return snapshot, known

        return self.store.snapshot_read(account_id, load)[1]

    def _view(self, account: Account, pool: Pool) -> PoolView:
        price = self.prices.price(pool.hub, pool.tier)
        return PoolView(  # idle_reclaim_days last
            pool.hub,
            pool.tier,
            pool.included,
            pool.purchased,
            pool.assigned,
            pool.available,
            pool.pending_removal,
            account.renewal_time if pool.pending_removal else None,
            price.seat_month_minor,
            account.currency_code,
            pool.etag,
            pool.idle_reclaim_days,
            pool.waiting_requests,
            pool.auto_approve_requests,
        )

    def _views(self, unit: Unit) -> list[PoolView]:
        return [self._view(unit.account, p) for _, p in sorted(self._pools(unit).items())]

    def _read_account(self, call: Call, account_id: str) -> Account:
        """For reads: the actor check, the account, and a due renewal applied first."""
        return self._state(call, account_id)[0].account

    # ---- renewal (S4, S5, S9) -----------------------------------------------------------

    def _renew_if_due(self, unit: Unit) -> None:
        """Applies every renewal date that has passed: pending removals leave, the next term
        starts and is charged at the new count. Nothing shrinks mid-term (S4)."""
        account = unit.account
        renewals = 0
        while account.renewal_time <= unit.now and renewals < MAX_RENEWALS_AT_ONCE:
            renewals += 1
            self._bill_term(unit)
            for pool in self._pools(unit).values():
                if pool.pending_removal:
                    before = pool.counts()
                    removed = pool.pending_removal
                    pool.purchased -= removed
                    pool.pending_removal = 0
                    pool.touch()
                    unit.event(EventType.SEATS_REMOVED, pool, before, quantity=removed)
            account.term_start = account.renewal_time
            account.renewal_time = next_renewal(account.term_anchor, account.term_start, account.term_months)
            self._charge_term(unit, unit_time=account.term_start)
            unit.event(EventType.TERM_RENEWED)
        if renewals:
            self.store.save_account_term(account)

    def _bill_term(self, unit: Unit) -> None:
        """Issues the invoice of the term that ends: every charge the term made, the ones this unit
        made included (they are saved first)."""
        account_id = unit.account.account_id
        self.store.insert_charges(account_id, unit.charges)
        unit.charges.clear()
        account = unit.account
        invoice = self.store.issue_invoice(
            account_id, new_id("inv"), account.term_start, account.renewal_time, unit.now, account.currency_code
        )
        unit.event(EventType.INVOICE_ISSUED, quantity=invoice.line_count, invoice_id=invoice.invoice_id)

    def _charge_term(self, unit: Unit, unit_time: datetime) -> None:
        """Charges a whole term for every pool: the plan, and the purchased seats."""
        account = unit.account
        for (hub, tier), pool in sorted(self._pools(unit).items()):
            price = self.prices.price(hub, tier)
            months = account.term_months
            if price.plan_month_minor:
                unit.charges.append(
                    self._charge(
                        unit,
                        ChargeKind.PLAN,
                        hub,
                        tier,
                        0,
                        price.plan_month_minor * months,
                        price.plan_month_minor * months,
                        unit_time,
                        f"{tier_name(hub, tier)} plan, {months} month(s)",
                    )
                )
            if pool.purchased and price.seat_month_minor:
                unit_price = price.seat_month_minor * months
                unit.charges.append(
                    self._charge(
                        unit,
                        ChargeKind.SEATS,
                        hub,
                        tier,
                        pool.purchased,
                        unit_price,
                        unit_price * pool.purchased,
                        unit_time,
                        f"{pool.purchased} x {tier_name(hub, tier)} seat, {months} month(s)",
                    )
                )

    def _charge(
        self,
        unit: Unit,
        kind: ChargeKind,
        hub: Hub,
        tier: Tier,
        quantity: int,
        unit_price: int,
        amount: int,
        charge_time: datetime,
        description: str,
    ) -> Charge:
        return Charge(
            new_id("chg"),
            kind,
            hub,
            tier,
            quantity,
            unit_price,
            amount,
            unit.account.currency_code,
            unit.account.term_start,
            unit.account.renewal_time,
            charge_time,
            description,
        )

    def _prorated(self, unit: Unit, kind: ChargeKind, hub: Hub, tier: Tier, quantity: int, month_price: int) -> Charge:
        """A charge for the rest of the term, rounded half-even to the minor unit (S3)."""
        account = unit.account
        unit_price = month_price * account.term_months
        amount = prorate(unit_price * max(quantity, 1), unit.now, account.term_start, account.renewal_time)
        days_left = round((account.renewal_time - unit.now).total_seconds() / 86400)
        term_days = round((account.renewal_time - account.term_start).total_seconds() / 86400)
        what = (
            f"{quantity} x {tier_name(hub, tier)} seat"
            if kind is ChargeKind.PRORATED_SEATS
            else f"{tier_name(hub, tier)} plan"
        )
        return self._charge(
            unit,
            kind,
            hub,
            tier,
            quantity,
            unit_price,
            amount,
            unit.now,
            f"{what}, prorated for {days_left} of {term_days} days",
        )

    def renew_due(self, limit: int = 100) -> int:
        """The periodic sweep: applies the renewals of accounts nobody touched. Returns how
        many accounts it renewed."""
        due = self.store.read(lambda: self.store.due_accounts(self.clock.now(), limit))
        return sum(self.renew_account(account_id) for account_id in due)

    def renew_account(self, account_id: str) -> bool:
        """Applies an account's due renewals as a system change; False when none was due
        (another call or replica got there first)."""

        def run() -> bool:
            account = self.store.get_account(account_id, lock=True)
            now = self.clock.now()
            if account is None or account.renewal_time > now:
                return False
            pools = self.store.load_pools(account_id)
            unit = Unit(account, Call(), now, None, pools, Snapshot(replace(account), pools), Known({}, {}))
            self._renew_if_due(unit)
            self._finish(unit)
            return True

        return self.store.write(run)

    # ---- accounts -----------------------------------------------------------------------

    def create_account(self, call: Call, spec: NewAccount) -> tuple[AccountView, list[Charge]]:
        if call.actor is not None:
            raise SeatError(
                Kind.PERMISSION_DENIED,
                reason(ErrorReason.SYSTEM_CALL_ONLY),
                "accounts are created by trusted system calls, without an acting user",
                {"actor": call.actor},
            )
        display_name = _text("display_name", spec.display_name, required=True)
        email = _email("owner_email", spec.owner_email)
        owner_name = _text("owner_display_name", spec.owner_display_name) or email
        if spec.term_months not in (1, 12):
            raise invalid("term_months", "must be 1 or 12")
        check_count("subscriptions", len(spec.subscriptions), "subscriptions")
        seen: set[tuple[Hub, Tier]] = set()
        for i, (hub, tier, purchased) in enumerate(spec.subscriptions):
            _quantity(f"subscriptions[{i}].purchased_seats", purchased, minimum=0)
            if (hub, tier) in seen:
                raise invalid(f"subscriptions[{i}]", "each hub and tier may appear once")
            seen.add((hub, tier))
            if purchased and not self.prices.price(hub, tier).purchasable:
                raise precondition(
                    ErrorReason.TIER_NOT_PURCHASABLE,
                    f"{hub.name}/{tier.name}",
                    f"{tier_name(hub, tier)} seats cannot be bought",
                    hub=hub.name,
                    tier=tier.name,
                )
        for i, (hub, tier, _) in enumerate(spec.subscriptions):
            if tier is Tier.FREE and any(h is hub and t is not Tier.FREE for h, t in seen):
                raise invalid(f"subscriptions[{i}].tier", "a hub with a paid tier has no free tools seats (S6)")
        now = self.clock.now()
        term_start = spec.term_start or now
        if term_start > now + FUTURE_TOLERANCE:
            raise invalid("term_start", "must not lie in the future")
        if term_start < now - MAX_PAST_TERM_START:
            raise invalid("term_start", f"must lie within the last {MAX_PAST_TERM_START.days // 365} years")

        def run() -> tuple[AccountView, list[Charge]]:
            request = requests.current()
            if request is not None:  # no account to lock yet: see requests.py for twins
                requests.check(self.store, request, requests.SYSTEM_SCOPE)
            account_id, owner_id = new_id("acc"), new_id("usr")
            renewal = add_months(term_start, spec.term_months)
            account = Account(
                account_id,
                display_name,
                owner_id,
                self.prices.currency_code,
                spec.term_months,
                term_start,
                term_start,
                renewal,
                0,
                now,
            )
            self.store.insert_account(account)
            owner = User(owner_id, account_id, email, owner_name, Permissions(True, True, True), 1, now, now)
            self.store.insert_user(owner, email.casefold())
            unit = Unit(account, call, now, None, {}, Snapshot(replace(account), {}), Known({}, {}))
            unit.event(EventType.ACCOUNT_CREATED)
            unit.event(EventType.USER_CREATED, user_id=owner_id)
            for hub, tier, purchased in spec.subscriptions:
                pool = Pool(hub, tier, self.prices.price(hub, tier).included_seats, purchased, 0, 0, new=True)
                self._pools(unit)[(hub, tier)] = pool
                unit.event(EventType.POOL_OPENED, pool, PoolCounts(), quantity=purchased)
            self._charge_term(unit, unit_time=now)
            first_charges = list(unit.charges)
            self._renew_if_due(unit)
            self._finish(unit)
            return AccountView(account, self._views(unit)), first_charges

        return self.store.write(run)

    def get_account(self, call: Call, account_id: str) -> AccountView:
        snapshot = self._state(call, account_id)[0]
        view = snapshot.memo_get("account")
        if view is None:  # made once per version
            view = AccountView(
                snapshot.account, [self._view(snapshot.account, p) for _, p in sorted(snapshot.pools.items())]
            )
            snapshot.memo_put("account", view)
        return view  # type: ignore[return-value]

    # ---- seats: buy and remove (S3, S4, S5, S7, S8, S9) ----------------------------------

    def _buy(self, unit: Unit, pool: Pool, quantity: int) -> Charge:
        price = self.prices.price(pool.hub, pool.tier)
        if not price.purchasable:
            raise precondition(
                ErrorReason.TIER_NOT_PURCHASABLE,
                f"{pool.hub.name}/{pool.tier.name}",
                f"{tier_name(pool.hub, pool.tier)} seats cannot be bought",
                hub=pool.hub.name,
                tier=pool.tier.name,
            )
        if pool.capacity + quantity > MAX_POOL_SEATS:
            raise precondition(
                ErrorReason.SEAT_LIMIT,
                f"{pool.hub.name}/{pool.tier.name}",
                f"a pool holds at most {MAX_POOL_SEATS} seats",
                limit=str(MAX_POOL_SEATS),
            )
        before = pool.counts()
        pool.purchased += quantity
        pool.touch()
        charge = self._prorated(unit, ChargeKind.PRORATED_SEATS, pool.hub, pool.tier, quantity, price.seat_month_minor)
        unit.charges.append(charge)
        unit.event(EventType.SEATS_PURCHASED, pool, before, quantity=quantity)
        return charge

    def purchase_seats(
        self,
        call: Call,
        account_id: str,
        hub: Hub,
        tier: Tier,
        quantity: int,
        validate_only: bool = False,
        etag: str = "",
    ) -> tuple[PoolView, Charge]:
        _quantity("quantity", quantity)

        def work(unit: Unit) -> tuple[PoolView, Charge]:
            pool = self._pool(unit, hub, tier)
            _check_pool_etag(pool, etag)
            charge = self._buy(unit, pool, quantity)
            self._serve_waiting(unit)  # the answer shows the pool after its waiting list was served
            return self._view(unit.account, pool), charge

        return self._write(
            call, account_id, work, need=Permission.EDIT_BILLING, what="buy seats", dry_run=validate_only
        )

    def schedule_removal(
        self, call: Call, account_id: str, hub: Hub, tier: Tier, quantity: int, etag: str = ""
    ) -> PoolView:
        """S5: unassigned purchased seats leave at the renewal date; S8: assigned ones cannot."""
        _quantity("quantity", quantity)

        def limit(pool: Pool) -> None:
            if quantity > pool.removable:
                raise precondition(
                    ErrorReason.SEATS_ASSIGNED,
                    f"{hub.name}/{tier.name}",
                    f"only {pool.removable} unassigned purchased seat(s) can be removed; assigned seats "
                    "cannot be removed (unassign them first)",
                    removable=str(pool.removable),
                    requested=str(quantity),
                )

        return self._change_pending(
            call, account_id, hub, tier, quantity, etag, limit, EventType.SEAT_REMOVAL_SCHEDULED, "remove seats"
        )

    def cancel_removal(
        self, call: Call, account_id: str, hub: Hub, tier: Tier, quantity: int, etag: str = ""
    ) -> PoolView:
        """Keeps seats that were pending removal."""
        _quantity("quantity", quantity)

        def limit(pool: Pool) -> None:
            if quantity > pool.pending_removal:
                raise precondition(
                    ErrorReason.NOT_PENDING_REMOVAL,
                    f"{hub.name}/{tier.name}",
                    f"only {pool.pending_removal} seat(s) are pending removal",
                    pending_removal=str(pool.pending_removal),
                )

        return self._change_pending(
            call,
            account_id,
            hub,
            tier,
            -quantity,
            etag,
            limit,
            EventType.SEAT_REMOVAL_CANCELLED,
            "cancel a seat removal",
        )

    def _change_pending(
        self,
        call: Call,
        account_id: str,
        hub: Hub,
        tier: Tier,
        delta: int,
        etag: str,
        limit: Callable[[Pool], None],
        event: EventType,
        what: str,
    ) -> PoolView:
        """Moves a pool's pending removal by delta, after the rule's limit check (S7: edit billing)."""

        def work(unit: Unit) -> PoolView:
            pool = self._pool(unit, hub, tier)
            _check_pool_etag(pool, etag)
            limit(pool)
            before = pool.counts()
            pool.pending_removal += delta
            pool.touch()
            unit.event(event, pool, before, quantity=abs(delta))
            return self._view(unit.account, pool)

        return self._write(call, account_id, work, need=Permission.EDIT_BILLING, what=what)

    # ---- seats: assign and unassign (S11, S12, S13, S14, S17, S18) ---------------------

    def _take_seat(
        self, unit: Unit, pool: Pool, purchase_if_needed: bool, subject: str
    ) -> tuple[Charge | None, PoolCounts]:
        """Takes one seat of a pool for a grant (S13): a free seat first; else a seat pending
        removal, which cancels that removal (S11); else, if asked and allowed, a new one (S14)."""
        charge = None
        if pool.available <= 0 and pool.pending_removal <= 0:
            if not purchase_if_needed:
                raise precondition(
                    ErrorReason.NO_SEAT_AVAILABLE,
                    subject,
                    f"every {tier_name(pool.hub, pool.tier)} seat is taken ({pool.assigned} of {pool.capacity}); "
                    "buy a seat or pass purchase_if_needed",
                    hub=pool.hub.name,
                    tier=pool.tier.name,
                    capacity=str(pool.capacity),
                )
            self._require(unit.actor, Permission.EDIT_BILLING, "buy a seat with the grant")
            charge = self._buy(unit, pool, 1)
        before = pool.counts()
        if pool.available <= 0:
            pool.pending_removal -= 1
        pool.assigned += 1
        pool.touch()
        return charge, before

    def _assign(
        self,
        unit: Unit,
        user_id: str,
        hub: Hub,
        tier: Tier,
        current: Assignment | None,
        purchase_if_needed: bool,
        subject: str,
        seat_request_id: str = "",
    ) -> AssignResult:
        account = unit.account
        pool = self._pool(unit, hub, tier)
        if current is not None and current.tier == tier:
            return AssignResult(current, self._view(account, pool), False, None, None)
        if current is not None:
            self._release(unit, current)
        charge, before = self._take_seat(unit, pool, purchase_if_needed, subject)
        assignment = Assignment(user_id, hub, tier, unit.now)
        if current is None:
            self.store.insert_assignment(account.account_id, assignment)
        else:
            self.store.move_assignment(account.account_id, assignment)
        unit.event(
            EventType.SEAT_ASSIGNED,
            pool,
            before,
            user_id=user_id,
            previous_tier=int(current.tier) if current else 0,
            seat_request_id=seat_request_id,
        )
        return AssignResult(assignment, self._view(account, pool), True, current.tier if current else None, charge)

    def _release(self, unit: Unit, current: Assignment) -> Pool:
        """Gives a seat back to its pool: it stays there, billed until renewal (S18)."""
        pool = self._pool(unit, current.hub, current.tier)
        before = pool.counts()
        pool.assigned -= 1
        pool.touch()
        unit.event(EventType.SEAT_UNASSIGNED, pool, before, user_id=current.user_id)
        return pool

    @staticmethod
    def _target_user(unit: Unit, user_id: str) -> None:
        check_id("user_id", user_id)
        if unit.user(user_id) is None:
            raise user_not_found(user_id)

    def assign_seat(
        self, call: Call, account_id: str, user_id: str, hub: Hub, tier: Tier, purchase_if_needed: bool = False
    ) -> AssignResult:
        def work(unit: Unit) -> AssignResult:
            self._target_user(unit, user_id)
            current = unit.seats(user_id).get(hub)
            return self._assign(unit, user_id, hub, tier, current, purchase_if_needed, user_id)

        return self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="assign seats", users=[user_id])

    def unassign_seat(self, call: Call, account_id: str, user_id: str, hub: Hub) -> PoolView:
        def work(unit: Unit) -> PoolView:
            self._target_user(unit, user_id)
            current = unit.seats(user_id).get(hub)
            if current is None:
                raise precondition(
                    ErrorReason.SEAT_NOT_ASSIGNED,
                    user_id,
                    f"the user holds no {hub.name.title()} seat",
                    hub=hub.name,
                    user_id=user_id,
                )
            pool = self._release(unit, current)
            self.store.delete_assignment(account_id, user_id, hub)
            self._serve_waiting(unit)  # the answer shows the pool after its waiting list was served
            return self._view(unit.account, pool)

        return self._write(
            call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="unassign seats", users=[user_id]
        )

    def batch_update(
        self, call: Call, account_id: str, changes: list[tuple[str, Hub, Tier | None]], validate_only: bool = False
    ) -> BatchResult:
        """Saves a batch all or nothing (S17), judged on its final state: every seat the
        batch frees is back in its pool before any seat is taken."""
        check_count("changes", len(changes), "changes")
        seen: set[tuple[str, Hub]] = set()
        for i, (user_id, hub, _tier) in enumerate(changes):
            check_id(f"changes[{i}].user_id", user_id)
            if (user_id, hub) in seen:
                raise invalid(f"changes[{i}]", "a user and hub may appear once per batch")
            seen.add((user_id, hub))

        user_ids = sorted({c[0] for c in changes})

        def work(unit: Unit) -> BatchResult:
            for i, (user_id, _hub, _tier) in enumerate(changes):
                if unit.user(user_id) is None:
                    err = user_not_found(user_id)
                    err.metadata["change"] = str(i)
                    raise err
            current = {(u, hub): a for u in user_ids for hub, a in unit.seats(u).items()}
            for _user_id, hub, tier in changes:  # NOT_SUBSCRIBED before anything moves
                if tier is not None:
                    self._pool(unit, hub, tier)
            # Phase 1: free every seat the batch gives up (unassigns, and the old seat of a move).
            for user_id, hub, tier in changes:
                held = current.get((user_id, hub))
                if held is not None and held.tier != tier:
                    self._release(unit, held)
                    if tier is None:
                        self.store.delete_assignment(account_id, user_id, hub)
            # Phase 2: take the seats the batch gives.
            results = []
            for i, (user_id, hub, tier) in enumerate(changes):
                held = current.get((user_id, hub))
                previous = held.tier if held else None
                if tier is None:
                    outcome = ChangeOutcome.UNASSIGNED if held else ChangeOutcome.UNCHANGED
                elif held is not None and held.tier == tier:
                    outcome = ChangeOutcome.UNCHANGED
                else:
                    pool = self._pool(unit, hub, tier)
                    _, before = self._take_seat(unit, pool, False, f"changes[{i}]")
                    assignment = Assignment(user_id, hub, tier, unit.now)
                    if held is None:
                        self.store.insert_assignment(account_id, assignment)
                    else:
                        self.store.move_assignment(account_id, assignment)
                    unit.event(
                        EventType.SEAT_ASSIGNED,
                        pool,
                        before,
                        user_id=user_id,
                        previous_tier=int(previous) if previous else 0,
                    )
                    outcome = ChangeOutcome.MOVED if held else ChangeOutcome.ASSIGNED
                results.append(ChangeResult(user_id, hub, tier, previous, outcome))
            self._serve_waiting(unit)  # the answer shows the pools after their waiting lists were served
            return BatchResult(results, self._views(unit))

        return self._write(
            call,
            account_id,
            work,
            need=Permission.ACCOUNT_ACCESS,
            what="assign seats",
            dry_run=validate_only,
            users=user_ids,
        )

    def list_assignments(
        self,
        call: Call,
        account_id: str,
        hub: Hub | None,
        tier: Tier | None,
        size: int,
        token: str,
        idle_since: datetime | None = None,
    ) -> Page[Assignment]:
        """Seats by user then hub, with each seat's last activity. Activity moves no account
        version (it is recorded without the account's lock, see record_seat_activity), so these
        pages are read each time rather than kept with the version."""
        limit = paging.page_size(size)
        filters = ["assignments", account_id, hub, tier, to_token_time(idle_since)]
        key = paging.decode_token(token, filters)
        after = _assignment_key(key) if key is not None else None
        snapshot = self._state(call, account_id)[0]

        def load(store: SeatStore) -> Page[Assignment]:
            rows = store.list_assignments(account_id, after, limit + 1, hub, tier, idle_since)
            more = len(rows) > limit
            rows = rows[:limit]
            next_token = paging.encode_token([rows[-1].user_id, int(rows[-1].hub)], filters) if more else None
            return Page(rows, next_token)

        return self.store.stale_read(snapshot.account.account_id, load)[1]

    # ---- seat activity and idle seats ---------------------------------------------------

    def record_seat_activity(
        self, call: Call, account_id: str, reports: list[tuple[str, Hub | None, int | None]]
    ) -> tuple[int, int]:
        """Moves each reported seat's last activity forward (never back, never before the seat
        was given); returns (seats moved, reports skipped). Times are microseconds since the
        epoch, as the store keeps them: a call of a thousand reports makes no datetime. No rule
        reads activity inside a write, so it takes no account lock and appends no event: it is
        a counter the sweep and the lists read, cheap enough to report on every use. Needs
        account access."""
        if not reports:
            raise invalid("activities", "report at least one activity")
        check_count("activities", len(reports), "activities")
        limit = micros(self.clock.now() + ACTIVITY_AHEAD)
        latest: dict[tuple[str, Hub], int] = {}
        if not _all_ids([user_id for user_id, _, _ in reports]):  # one pass in C; the first bad one named
            for i, (user_id, _, _) in enumerate(reports):
                check_id(f"activities[{i}].user_id", user_id)
        for i, (user_id, hub, used) in enumerate(reports):
            if hub is None:
                raise invalid(f"activities[{i}].hub", "required")
            if used is None:
                raise invalid(f"activities[{i}].activity_time", "required")
            if used > limit:
                raise invalid(f"activities[{i}].activity_time", "is in the future")
            key = (user_id, hub)
            if key not in latest or latest[key] < used:
                latest[key] = used
        snapshot, known = self._state(call, account_id)
        self._require(known.users.get(call.actor) if call.actor else None, Permission.ACCOUNT_ACCESS, "record activity")
        batch = [(u, h, t) for (u, h), t in latest.items()]
        moved = self.store.write(lambda: self.store.record_activity(snapshot.account.account_id, batch))
        return moved, len(reports) - moved

    def update_seat_policy(
        self,
        call: Call,
        account_id: str,
        hub: Hub,
        tier: Tier,
        idle_reclaim_days: int,
        *,
        validate_only: bool,
        auto_approve_requests: bool = False,
        fields: frozenset[str] = POLICY_FIELDS,
    ) -> tuple[PoolView, list[Assignment]]:
        """Sets the fields of a pool's policy (an event when it changes) and answers the seats
        idle for its idle_reclaim_days now, which the sweep would reclaim; validate_only changes
        nothing."""
        unknown = sorted(fields - POLICY_FIELDS)
        if unknown or not fields:
            raise invalid("update_mask", f"paths may be {', '.join(sorted(POLICY_FIELDS))}")
        days = idle_reclaim_days
        if "idle_reclaim_days" in fields and days != 0 and not MIN_IDLE_DAYS <= days <= MAX_IDLE_DAYS:
            raise invalid("idle_reclaim_days", f"must be 0 (never reclaim) or {MIN_IDLE_DAYS} to {MAX_IDLE_DAYS} days")

        def work(unit: Unit) -> tuple[PoolView, list[Assignment]]:
            pool = self._pool(unit, hub, tier)
            new_days = days if "idle_reclaim_days" in fields else pool.idle_reclaim_days
            new_auto = auto_approve_requests if "auto_approve_requests" in fields else pool.auto_approve_requests
            if (pool.idle_reclaim_days, pool.auto_approve_requests) != (new_days, new_auto):
                pool.idle_reclaim_days, pool.auto_approve_requests = new_days, new_auto
                pool.touch()
                unit.event(EventType.SEAT_POLICY_UPDATED, pool, quantity=new_days)
            days_now = pool.idle_reclaim_days
            idle = (
                self.store.idle_seats(account_id, hub, tier, unit.now - timedelta(days=days_now), MAX_IDLE_LISTED)
                if days_now
                else []
            )
            return self._view(unit.account, pool), idle

        return self._write(
            call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="change seat policies", dry_run=validate_only
        )

    def reclaim_idle(self, limit: int = 100) -> int:
        """The sweep: unassigns the seats idle past their pool's policy, account by account;
        returns how many."""
        due = self.store.read(lambda: self.store.reclaim_candidates(self.clock.now(), limit))
        return sum(self.reclaim_account(account_id) for account_id in due)

    def reclaim_account(self, account_id: str) -> int:
        """Unassigns an account's idle seats as a system change, each with a SEAT_RECLAIMED
        event; a seat used since the sweep looked (activity takes no lock) is left alone. The
        seats stay in their pools, billed until the renewal (S18)."""

        def run() -> int:
            account = self.store.get_account(account_id, lock=True)
            if account is None:
                return 0
            now = self.clock.now()
            pools = self.store.load_pools(account_id)
            unit = Unit(account, Call(), now, None, pools, Snapshot(replace(account), pools), Known({}, {}))
            self._renew_if_due(unit)
            taken = 0
            for (hub, tier), pool in sorted(unit._pools.items()):
                if not pool.idle_reclaim_days:
                    continue
                cutoff = now - timedelta(days=pool.idle_reclaim_days)
                for seat in self.store.idle_seats(account_id, hub, tier, cutoff, RECLAIM_BATCH):
                    if not self.store.delete_idle_assignment(account_id, seat.user_id, hub, cutoff):
                        continue
                    before = pool.counts()
                    pool.assigned -= 1
                    pool.touch()
                    unit.event(EventType.SEAT_RECLAIMED, pool, before, user_id=seat.user_id)
                    taken += 1
            self._finish(unit)
            return taken

        return self.store.write(run)

    # ---- seat requests and the waiting list ----------------------------------------------

    def request_seat(
        self, call: Call, account_id: str, user_id: str, hub: Hub, tier: Tier, why: str
    ) -> tuple[SeatRequest, Assignment | None]:
        """A user asks for a seat for themselves (no permission needed); asking for another
        user needs account access (S12). Granted at once when the pool approves automatically,
        a seat is free and nobody waits; otherwise pending."""
        target = user_id or call.actor or ""
        if not target:
            raise invalid("user_id", "required for a trusted system call")
        check_id("user_id", target)
        why = _text("reason", why)

        def work(unit: Unit) -> tuple[SeatRequest, Assignment | None]:
            if target != call.actor:
                self._require(unit.actor, Permission.ACCOUNT_ACCESS, "ask for a seat for another user")
            self._target_user(unit, target)
            pool = self._pool(unit, hub, tier)
            held = unit.seats(target).get(hub)
            if held is not None and held.tier == tier:
                raise precondition(
                    ErrorReason.SEAT_ALREADY_HELD,
                    target,
                    f"the user already holds a {tier_name(hub, tier)} seat",
                    user_id=target,
                    hub=hub.name,
                    tier=tier.name,
                )
            for other in self.store.open_seat_requests(account_id, target):
                if other.hub == hub:
                    raise SeatError(
                        Kind.ALREADY_EXISTS,
                        reason(ErrorReason.SEAT_REQUEST_EXISTS),
                        f"the user already has an open request for a {hub.name.title()} seat",
                        {"seat_request_id": other.seat_request_id},
                    )
            request = SeatRequest(
                new_id("sreq"),
                self.store.next_request_number(account_id),
                target,
                hub,
                tier,
                RequestState.PENDING,
                unit.now,
                unit.now,
                unit.call.actor_label,
                reason=why,
            )
            unit.event(EventType.SEAT_REQUESTED, pool, user_id=target, seat_request_id=request.seat_request_id)
            if pool.auto_approve_requests and pool.available > 0 and not pool.waiting_requests:
                request = replace(request, state=RequestState.GRANTED, decided_by=POLICY_ACTOR)
                self.store.insert_seat_request(account_id, request)
                result = self._assign(unit, target, hub, tier, held, False, target, request.seat_request_id)
                return request, result.assignment
            self.store.insert_seat_request(account_id, request)
            return request, None

        return self._write(call, account_id, work, need=None, what="ask for a seat", users=[target])

    def _open_request(self, unit: Unit, seat_request_id: str) -> SeatRequest:
        check_id("seat_request_id", seat_request_id)
        request = self.store.get_seat_request(unit.account.account_id, seat_request_id)
        if request is None:
            raise SeatError(
                Kind.NOT_FOUND,
                reason(ErrorReason.SEAT_REQUEST_NOT_FOUND),
                f"seat request {seat_request_id!r} does not exist in this account",
                {"seat_request_id": seat_request_id},
            )
        if not request.state.open:
            raise precondition(
                ErrorReason.SEAT_REQUEST_CLOSED,
                seat_request_id,
                f"the seat request is already {request.state.name.lower()}",
                state=request.state.name,
                seat_request_id=seat_request_id,
            )
        return request

    def approve_seat_request(
        self, call: Call, account_id: str, seat_request_id: str, purchase_if_needed: bool
    ) -> tuple[SeatRequest, Assignment | None, PoolView, Charge | None]:
        """Grants a request at once when a seat can be given as AssignSeat gives one (a free
        seat; else one pending removal, cancelling that removal, S11, unless others wait for
        it); else, with purchase_if_needed, buys one for it (S14, edit billing); otherwise the
        request waits, behind older waiting ones. While anyone waits no seat is free, so a
        grant never passes the waiting list except by a seat bought for it."""

        def work(unit: Unit) -> tuple[SeatRequest, Assignment | None, PoolView, Charge | None]:
            request = self._open_request(unit, seat_request_id)
            pool = self._pool(unit, request.hub, request.tier)
            decider = unit.call.actor_label
            held = self._current_seat(unit, request.user_id, request.hub)
            given = held is not None and held.tier == request.tier  # given meanwhile: nothing left to give
            can_take = pool.available > 0 or (pool.pending_removal > 0 and not pool.waiting_requests)
            if given or can_take or purchase_if_needed:
                self._leave_line(pool, request)
                charge = None
                if not (given or can_take):
                    self._require(unit.actor, Permission.EDIT_BILLING, "buy a seat with the grant")
                    charge = self._buy(unit, pool, 1)
                granted, assignment = self._grant(unit, request, held, decider)
                return granted, assignment, self._view(unit.account, pool), charge
            if request.state is RequestState.WAITING:  # already in line: nothing changes
                return request, None, self._view(unit.account, pool), None
            self.store.close_seat_request(account_id, seat_request_id, RequestState.WAITING, unit.now, decider)
            pool.waiting_requests += 1
            pool.touch()
            unit.event(EventType.SEAT_REQUEST_WAITING, pool, user_id=request.user_id, seat_request_id=seat_request_id)
            waiting = replace(request, state=RequestState.WAITING, update_time=unit.now, decided_by=decider)
            return waiting, None, self._view(unit.account, pool), None

        return self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="approve seat requests")

    def deny_seat_request(self, call: Call, account_id: str, seat_request_id: str) -> SeatRequest:
        def work(unit: Unit) -> SeatRequest:
            request = self._open_request(unit, seat_request_id)
            pool = unit._pools.get((request.hub, request.tier))
            self._leave_line(pool, request)
            denied = self._close(unit, request, RequestState.DENIED, unit.call.actor_label)
            unit.event(EventType.SEAT_REQUEST_DENIED, pool, user_id=request.user_id, seat_request_id=seat_request_id)
            return denied

        return self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="deny seat requests")

    @staticmethod
    def _leave_line(pool: Pool | None, request: SeatRequest) -> None:
        """A waiting request leaves its pool's waiting list (the pool may be gone: an upgrade
        closed it)."""
        if pool is not None and request.state is RequestState.WAITING:
            pool.waiting_requests -= 1
            pool.touch()

    def _grant(
        self, unit: Unit, request: SeatRequest, held: Assignment | None, decider: str
    ) -> tuple[SeatRequest, Assignment]:
        """Gives the request's user its seat (a seat of another tier of the hub moves, one of the
        same tier is already the grant) and closes the request as granted."""
        assignment = held
        if held is None or held.tier != request.tier:
            assignment = self._assign(
                unit,
                request.user_id,
                request.hub,
                request.tier,
                held,
                False,
                request.user_id,
                request.seat_request_id,
            ).assignment
        assert assignment is not None
        return self._close(unit, request, RequestState.GRANTED, decider), assignment

    def _close(self, unit: Unit, request: SeatRequest, state: RequestState, decider: str) -> SeatRequest:
        """Moves an open request to a closed state; a waiting one granted keeps its approver."""
        keep = request.state is RequestState.WAITING and state is RequestState.GRANTED
        decided_by = request.decided_by if keep else decider
        if not self.store.close_seat_request(
            unit.account.account_id, request.seat_request_id, state, unit.now, decided_by
        ):
            raise concurrent_change()  # the account's lock orders decisions: not expected
        return replace(request, state=state, update_time=unit.now, decided_by=decided_by)

    def _current_seat(self, unit: Unit, user_id: str, hub: Hub) -> Assignment | None:
        """A user's seat of a hub as this transaction sees it (read, not from memory: the unit
        may have moved it)."""
        return self.store.assignments_for(unit.account.account_id, [user_id]).get((user_id, hub))

    def _serve_waiting(self, unit: Unit) -> None:
        """Gives the free seats of pools with a waiting list to the oldest waiting requests, in
        the transaction that freed them, each grant with its SEAT_ASSIGNED event. A grant that
        moves a user from another tier frees a seat there, so pools are passed over again. Each
        pass closes at least one waiting request, so the passes end; at the end nobody waits
        where a seat is free (the seat_pools CHECK holds the store to it). A unit with no waiting
        list, every hot call's, pays one pass over its pools' counters."""
        if not any(p.waiting_requests for p in unit._pools.values()):
            return
        while True:
            due = [p for _, p in sorted(unit._pools.items()) if p.waiting_requests > 0 and p.available > 0]
            if not due:
                return
            for pool in due:
                waiting = self.store.waiting_seat_requests(
                    unit.account.account_id, pool.hub, pool.tier, min(pool.available, pool.waiting_requests)
                )
                if not waiting:  # the counter and the rows disagree: trust the rows
                    pool.waiting_requests = 0
                    pool.touch()
                    continue
                for request in waiting:
                    self._leave_line(pool, request)
                    self._grant(unit, request, self._current_seat(unit, request.user_id, request.hub), POLICY_ACTOR)

    def list_seat_requests(
        self,
        call: Call,
        account_id: str,
        state: RequestState | None,
        hub: Hub | None,
        user_id: str | None,
        size: int,
        token: str,
    ) -> Page[SeatRequest]:
        """Requests oldest first. A user may list their own; everyone's needs account access."""
        limit = paging.page_size(size)
        if user_id is not None:
            check_id("user_id", user_id)
        filters = ["seat_requests", account_id, state, hub, user_id]
        key = paging.decode_token(token, filters)
        after = _sequence_key(key) if key is not None else 0
        known = self._state(call, account_id)[1]
        if user_id is None or user_id != call.actor:
            self._require(
                known.users.get(call.actor) if call.actor else None, Permission.ACCOUNT_ACCESS, "list seat requests"
            )

        def load(store: SeatStore) -> Page[SeatRequest]:
            rows = store.list_seat_requests(account_id, after, limit + 1, state, hub, user_id)
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(rows, paging.encode_token(rows[-1].number, filters) if more else None)

        return self.store.read(lambda: load(self.store))

    def _at_version(self, snapshot: Snapshot, key: object, load: Callable[[SeatStore], T]) -> T:
        """A read result at the snapshot's version: kept with the snapshot once read, in one
        read transaction, at exactly that version; another state (newer, or an older one a
        standby still shows) is answered but not kept. These reads tolerate staleness (lists
        and history): the store may serve them from a standby within its staleness bound."""
        kept = snapshot.memo_get(key)
        if kept is not None:
            return kept  # type: ignore[return-value]
        version, value = self.store.stale_read(snapshot.account.account_id, load)
        if version == snapshot.version:
            snapshot.memo_put(key, value)
        return value

    def check_seats(self, call: Call, account_id: str, hub: Hub, user_ids: list[str]) -> tuple[list[Tier | None], int]:
        """Each user's tier in a hub (None: no seat, or no such user), in request order, and
        the account's event sequence that the answer reflects exactly."""
        if not user_ids:
            raise invalid("user_ids", "name at least one user")
        check_count("user_ids", len(user_ids), "ids")
        if not _all_ids(user_ids):  # one pass in C for the usual case; the first bad one named
            for i, user_id in enumerate(user_ids):
                check_id(f"user_ids[{i}]", user_id)
        snapshot, known = self._state(call, account_id, seats=user_ids)
        key = ("check", hub, tuple(user_ids)) if len(user_ids) <= MAX_KEPT_CHECK else None
        kept = snapshot.memo_get(key) if key else None
        if kept is not None:  # the same question at the same version: the same answer object
            return kept  # type: ignore[return-value]
        seats = known.seats
        tiers = [held[hub].tier if hub in held else None for held in map(seats.__getitem__, user_ids)]
        answer = (tiers, snapshot.version)
        if key:
            snapshot.memo_put(key, answer, limit=MAX_MEMO // 2)
        return answer

    # ---- upgrade (S6) -------------------------------------------------------------------

    def upgrade(
        self,
        call: Call,
        account_id: str,
        hub: Hub,
        tier: Tier,
        purchased: int,
        assign_user_ids: list[str],
        validate_only: bool = False,
    ) -> UpgradeResult:
        check_count("assign_user_ids", len(assign_user_ids), "ids")
        _quantity("purchased_seats", purchased, minimum=0)
        for i, user_id in enumerate(assign_user_ids):
            check_id(f"assign_user_ids[{i}]", user_id)
        if len(set(assign_user_ids)) != len(assign_user_ids):
            raise invalid("assign_user_ids", "a user may appear once")
        if tier is Tier.FREE:
            raise precondition(ErrorReason.NOT_AN_UPGRADE, f"{hub.name}/{tier.name}", "nothing upgrades to free tools")

        def work(unit: Unit) -> UpgradeResult:
            if assign_user_ids:
                self._require(unit.actor, Permission.ACCOUNT_ACCESS, "assign seats")
            pools = self._pools(unit)
            held_tiers = [t for (h, t) in pools if h is hub]
            if held_tiers and max(held_tiers) >= tier:
                raise precondition(
                    ErrorReason.NOT_AN_UPGRADE,
                    f"{hub.name}/{tier.name}",
                    f"the {hub.name.title()} hub already has tier {max(held_tiers).name}",
                    current_tier=max(held_tiers).name,
                )
            for user_id in assign_user_ids:
                if unit.user(user_id) is None:
                    raise user_not_found(user_id)
            current = {(u, h): a for u in assign_user_ids for h, a in unit.seats(u).items()}
            free = pools.get((hub, Tier.FREE))
            if free is not None:  # S6: the free seats go at the moment of the upgrade
                for holder in self.store.holders(account_id, hub, Tier.FREE):
                    self._release(unit, Assignment(holder, hub, Tier.FREE, unit.now))
                    self.store.delete_assignment(account_id, holder, hub)
                    current.pop((holder, hub), None)
                before = free.counts()
                unit.event(EventType.POOL_CLOSED, free, before, quantity=free.included)
                del pools[(hub, Tier.FREE)]
                unit.closed.append((hub, Tier.FREE))
                for waiting in self.store.waiting_seat_requests(account_id, hub, Tier.FREE, free.waiting_requests):
                    self.store.close_seat_request(
                        account_id, waiting.seat_request_id, RequestState.CANCELLED, unit.now, unit.call.actor_label
                    )
            price = self.prices.price(hub, tier)
            pool = Pool(hub, tier, price.included_seats, purchased, 0, 0, new=True)
            pools[(hub, tier)] = pool
            self.store.save_pools(account_id, [pool])  # now, so that assignments below can refer to it
            unit.event(EventType.POOL_OPENED, pool, PoolCounts(), quantity=purchased)
            charges = [self._prorated(unit, ChargeKind.PRORATED_PLAN, hub, tier, 0, price.plan_month_minor)]
            if purchased:
                charges.append(
                    self._prorated(unit, ChargeKind.PRORATED_SEATS, hub, tier, purchased, price.seat_month_minor)
                )
            unit.charges.extend(charges)
            for user_id in assign_user_ids:
                self._assign(unit, user_id, hub, tier, current.get((user_id, hub)), False, user_id)
            return UpgradeResult(AccountView(unit.account, self._views(unit)), charges, self._view(unit.account, pool))

        return self._write(
            call,
            account_id,
            work,
            need=Permission.EDIT_BILLING,
            what="upgrade a subscription",
            dry_run=validate_only,
            users=assign_user_ids,
        )

    # ---- invoice ------------------------------------------------------------------------

    def preview_invoice(
        self,
        call: Call,
        account_id: str,
        purchases: Sequence[tuple[Hub, Tier, int]] = (),
        removals: Sequence[tuple[Hub, Tier, int]] = (),
    ) -> InvoicePreview:
        """What the current term has charged and what the next renewal will charge. With
        hypothetical purchases or removals, priced as the real calls would (the same rules, the
        same proration) in a transaction that is rolled back: nothing is saved, so no permission
        beyond reading is needed."""
        if not purchases and not removals:
            account = self._read_account(call, account_id)
            pools, charges = self.store.read(
                lambda: (self.store.load_pools(account_id), self.store.charges_since(account_id, account.term_start))
            )
            return self._preview(account, pools, charges, [])
        for name, changes in (("purchases", purchases), ("removals", removals)):
            check_count(name, len(changes), "changes")
            for i, (_hub, _tier, quantity) in enumerate(changes):
                _quantity(f"{name}[{i}].quantity", quantity)

        def work(unit: Unit) -> InvoicePreview:
            proposed = [self._buy(unit, self._pool(unit, hub, tier), quantity) for hub, tier, quantity in purchases]
            for i, (hub, tier, quantity) in enumerate(removals):
                pool = self._pool(unit, hub, tier)
                if quantity > pool.removable:
                    raise precondition(
                        ErrorReason.SEATS_ASSIGNED,
                        f"removals[{i}]",
                        f"only {pool.removable} unassigned purchased seat(s) can be removed",
                        removable=str(pool.removable),
                        requested=str(quantity),
                    )
                pool.pending_removal += quantity
            charges = self.store.charges_since(account_id, unit.account.term_start)
            return self._preview(unit.account, unit._pools, charges, proposed)

        return self._write(call, account_id, work, need=None, what="preview an invoice", dry_run=True)

    def _preview(
        self, account: Account, pools: dict[tuple[Hub, Tier], Pool], charges: list[Charge], proposed: list[Charge]
    ) -> InvoicePreview:
        lines = []
        months = account.term_months
        for (hub, tier), pool in sorted(pools.items()):
            price = self.prices.price(hub, tier)
            if price.plan_month_minor:
                plan = price.plan_month_minor * months
                lines.append(
                    InvoiceLine(
                        ChargeKind.PLAN, hub, tier, 0, plan, plan, f"{tier_name(hub, tier)} plan, {months} month(s)"
                    )
                )
            staying = pool.purchased - pool.pending_removal  # S9: removals bill from renewal on
            if staying and price.seat_month_minor:
                unit_price = price.seat_month_minor * months
                lines.append(
                    InvoiceLine(
                        ChargeKind.SEATS,
                        hub,
                        tier,
                        staying,
                        unit_price,
                        unit_price * staying,
                        f"{staying} x {tier_name(hub, tier)} seat, {months} month(s)",
                    )
                )
        return InvoicePreview(
            account.term_start,
            account.renewal_time,
            account.currency_code,
            charges,
            sum(c.amount_minor for c in charges),
            lines,
            sum(x.amount_minor for x in lines),
            proposed,
            sum(c.amount_minor for c in proposed),
        )

    # ---- invoices ----------------------------------------------------------------------

    def list_invoices(self, call: Call, account_id: str, size: int, token: str) -> Page[Invoice]:
        """The account's invoices, oldest first, without their lines; open to every user of the
        account, like the other reads."""
        limit = paging.page_size(size)
        filters = ["invoices", account_id]
        key = paging.decode_token(token, filters)
        after = _sequence_key(key) if key is not None else 0
        self._state(call, account_id)  # the actor check, and a due renewal (and its invoice) first

        def load() -> Page[Invoice]:
            rows = self.store.list_invoices(account_id, after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(rows, paging.encode_token(rows[-1].number, filters) if more else None)

        return self.store.read(load)

    def get_invoice(self, call: Call, account_id: str, invoice_id: str) -> Invoice:
        check_id("invoice_id", invoice_id)
        self._state(call, account_id)
        invoice = self.store.read(lambda: self.store.get_invoice(account_id, invoice_id))
        if invoice is None:
            raise SeatError(
                Kind.NOT_FOUND,
                reason(ErrorReason.INVOICE_NOT_FOUND),
                f"invoice {invoice_id!r} does not exist in this account",
                {"invoice_id": invoice_id},
            )
        return invoice

    # ---- events (I4) --------------------------------------------------------------------

    def list_events(self, call: Call, account_id: str, after_sequence: int, size: int, token: str) -> Page[Event]:
        if after_sequence < 0:
            raise invalid("after_sequence", "must not be negative")
        limit = paging.page_size(size)
        filters = ["events", account_id, after_sequence]
        key = paging.decode_token(token, filters)
        after = _sequence_key(key) if key is not None else after_sequence
        snapshot = self._state(call, account_id)[0]

        def load(store: SeatStore) -> Page[Event]:
            rows = store.list_events(account_id, after, limit + 1)
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(rows, paging.encode_token(rows[-1].sequence, filters) if more else None)

        return self._at_version(snapshot, ("events", after, limit, after_sequence), load)

    def events_after(self, account_id: str, after_sequence: int, limit: int) -> list[Event]:
        """For a watch that already passed the access check."""
        return self.store.read(lambda: self.store.list_events(account_id, after_sequence, limit))

    def check_watch(self, call: Call, account_id: str, after_sequence: int) -> int:
        """Admits a watch as a read of the account's events (open to every user of the
        account); returns the version the actor was checked at: events up to it may be sent."""
        if after_sequence < 0:
            raise invalid("after_sequence", "must not be negative")
        return self._state(call, account_id)[0].version

    def recheck_watch(self, call: Call, account_id: str, through: int, *, head: bool) -> int:
        """Before an open watch sends events up to sequence ``through``: its actor must still
        read the account's events at a committed version at or after ``through``, so that
        nobody receives an event committed after, or in the same transaction as, the change
        that took their access (it refuses as a read call would: ACTOR_NOT_IN_ACCOUNT).
        ``head`` says ``through`` was the account's last committed sequence when the events
        were read; a transaction's events commit together, so a transaction ends there, and
        the snapshot of that version, when memory holds it with the actor, answers without a
        statement (a write that touched the actor keeps no copy of it, so the actor's deletion
        is always read). Otherwise the account is read as a read call reads it. Returns the
        version checked."""
        if call.actor is None:
            return through  # a trusted system call
        if head:
            snapshot = self.snapshots.get(account_id, through)
            known = self._known(snapshot, [call.actor], load=False) if snapshot is not None else None
            if known is not None:
                self._check_actor(call, known)
                return through
        return self._state(call, account_id)[0].version

    # ---- users (S10, S12, S15, S16, S19, S20) -------------------------------------------

    @staticmethod
    def _check_grants(actor: User | None, old: Permissions, new: Permissions) -> None:
        """S20: an actor grants or removes only permissions it holds itself (a super admin holds
        them all, S19). Sending a permission the user already has, or lacks, changes nothing and
        needs nothing. A system call (no actor) may grant and remove anything."""
        if actor is None:
            return
        for permission, had, has in (
            (Permission.SUPER_ADMIN, old.super_admin, new.super_admin),
            (Permission.EDIT_BILLING, old.edit_billing, new.edit_billing),
            (Permission.ACCOUNT_ACCESS, old.account_access, new.account_access),
        ):
            if had != has and not actor.permissions.has(permission):
                name = PERMISSION_NAMES[permission]
                raise permission_missing(name, f"{'grant' if has else 'remove'} {name.replace('_', ' ')}")

    @staticmethod
    def _check_reach(unit: Unit, target: User, what: str) -> None:
        """S20: only the owner changes or deletes the owner, and only a super admin changes or
        deletes a super admin. A system call (no actor) reaches every user."""
        actor = unit.actor
        if actor is None:
            return
        owner = unit.account.owner_user_id
        if target.user_id == owner and actor.user_id != owner:
            raise SeatError(
                Kind.PERMISSION_DENIED,
                reason(ErrorReason.OWNER_ONLY),
                f"only the account owner may {what} the account owner",
                {"user_id": owner},
            )
        if target.permissions.super_admin and not actor.permissions.super_admin:
            raise permission_missing("super_admin", f"{what} a super admin")

    def create_user(
        self,
        call: Call,
        account_id: str,
        email: str,
        display_name: str,
        perms: Permissions,
        seats: list[SeatRef],
        purchase_if_needed: bool = False,
    ) -> tuple[User, list[Charge]]:
        email = _email("email", email)
        display_name = _text("display_name", display_name) or email
        hubs = [s.hub for s in seats]
        if len(set(hubs)) != len(hubs):
            raise invalid("seats", "at most one seat per hub (I3)")

        def work(unit: Unit) -> tuple[User, list[Charge]]:
            self._check_grants(unit.actor, Permissions(), perms)
            key = email.casefold()
            if self.store.email_owner(account_id, key) is not None:
                raise SeatError(
                    Kind.ALREADY_EXISTS,
                    reason(ErrorReason.EMAIL_TAKEN),
                    f"a user with email {email!r} already exists in this account",
                    {"email": email},
                )
            user = User(new_id("usr"), account_id, email, display_name, perms, 1, unit.now, unit.now)
            self.store.insert_user(user, key)
            unit.event(EventType.USER_CREATED, user_id=user.user_id)
            charges = []
            for i, seat in enumerate(seats):  # S15: seats only when asked for
                result = self._assign(unit, user.user_id, seat.hub, seat.tier, None, purchase_if_needed, f"seats[{i}]")
                if result.charge:
                    charges.append(result.charge)
            return replace(user, seats=tuple(sorted(seats, key=lambda s: s.hub))), charges

        return self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="create users")

    def get_user(self, call: Call, account_id: str, user_id: str) -> User:
        check_id("user_id", user_id)
        snapshot, known = self._state(call, account_id, users=[user_id])
        user = snapshot.memo_get(("user", user_id))
        if user is None:
            user = known.user(user_id)
            if user is None:
                raise user_not_found(user_id)
            snapshot.memo_put(("user", user_id), user)  # known is exact at the snapshot's version
        return user  # type: ignore[return-value]

    def list_users(self, call: Call, account_id: str, hub: Hub | None, size: int, token: str) -> Page[User]:
        limit = paging.page_size(size)
        filters = ["users", account_id, hub]
        key = paging.decode_token(token, filters)
        snapshot = self._state(call, account_id)[0]
        after = _user_key(key) if key is not None else None

        def load(store: SeatStore) -> Page[User]:
            rows = store.list_users(account_id, after, limit + 1, hub)
            more = len(rows) > limit
            rows = rows[:limit]
            return Page(rows, paging.encode_token(rows[-1].user_id, filters) if more else None)

        return self._at_version(snapshot, ("users", after, limit, hub), load)

    def update_user(self, call: Call, account_id: str, user_id: str, changes: UserChanges, etag: str) -> User:
        check_id("user.user_id", user_id)
        new_email = _email("user.email", changes.email) if changes.email is not None else None
        new_name = (
            _text("user.display_name", changes.display_name, required=True)
            if changes.display_name is not None
            else None
        )

        def work(unit: Unit) -> User:
            user = unit.user(user_id)
            if user is None:
                raise user_not_found(user_id)
            self._check_reach(unit, user, "change")
            _check_etag(user, etag)
            old = user.permissions
            perms = Permissions(
                old.super_admin if changes.super_admin is None else changes.super_admin,
                old.edit_billing if changes.edit_billing is None else changes.edit_billing,
                old.account_access if changes.account_access is None else changes.account_access,
            )
            if perms != old:
                self._check_grants(unit.actor, old, perms)
                if old.super_admin and not perms.super_admin and user_id == unit.account.owner_user_id:
                    raise precondition(
                        ErrorReason.OWNER_STAYS_SUPER_ADMIN,
                        user_id,
                        "the account owner stays a super admin",
                        user_id=user_id,
                    )
            email = new_email if new_email is not None else user.email
            if email.casefold() != user.email.casefold():
                owner = self.store.email_owner(account_id, email.casefold())
                if owner is not None and owner != user_id:
                    raise SeatError(
                        Kind.ALREADY_EXISTS,
                        reason(ErrorReason.EMAIL_TAKEN),
                        f"a user with email {email!r} already exists in this account",
                        {"email": email},
                    )
            updated = replace(
                user,
                email=email,
                display_name=new_name or user.display_name,
                permissions=perms,
                version=user.version + 1,
                update_time=unit.now,
            )
            if updated == replace(user, version=updated.version, update_time=updated.update_time):
                return user  # nothing changed: no new version, no event
            if not self.store.update_user(updated, email.casefold(), user.version):
                raise _etag_mismatch(user_id)
            unit.event(EventType.USER_UPDATED, user_id=user_id)
            return updated

        return self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="change users", users=[user_id])

    def delete_user(self, call: Call, account_id: str, user_id: str, etag: str) -> None:
        check_id("user_id", user_id)

        def work(unit: Unit) -> None:
            user = unit.user(user_id)
            if user is None:
                raise user_not_found(user_id)
            self._check_reach(unit, user, "delete")
            _check_etag(user, etag)
            if user_id == unit.account.owner_user_id:
                raise precondition(
                    ErrorReason.OWNER_NOT_DELETABLE, user_id, "the account owner cannot be deleted", user_id=user_id
                )
            if user.seats:  # S10
                hubs = ",".join(s.hub.name for s in user.seats)
                raise precondition(
                    ErrorReason.USER_HOLDS_SEATS,
                    user_id,
                    f"the user holds {len(user.seats)} seat(s) ({hubs}); unassign them first",
                    hubs=hubs,
                )
            self.store.delete_user(account_id, user_id)
            for open_request in self.store.open_seat_requests(account_id, user_id):  # they go with the user
                self.store.close_seat_request(
                    account_id, open_request.seat_request_id, RequestState.CANCELLED, unit.now, unit.call.actor_label
                )
                self._leave_line(unit._pools.get((open_request.hub, open_request.tier)), open_request)
            unit.event(EventType.USER_DELETED, user_id=user_id)

        self._write(call, account_id, work, need=Permission.ACCOUNT_ACCESS, what="delete users", users=[user_id])


# ---- input checks -------------------------------------------------------------------------


def _text(field_name: str, value: str, *, required: bool = False) -> str:
    value = value.strip()
    if required and not value:
        raise invalid(field_name, "is required")
    if len(value) > MAX_TEXT:
        raise invalid(field_name, f"at most {MAX_TEXT} characters")
    _printable(field_name, value)
    return value


def _email(field_name: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise invalid(field_name, "is required")
    _printable(field_name, value)
    if len(value) > MAX_EMAIL or not EMAIL_RE.match(value):
        raise invalid(field_name, "is not an email address")
    return value


def micros(value: datetime) -> int:
    """A time as microseconds since the epoch, as the store keeps times."""
    return int(value.timestamp()) * 1_000_000 + value.microsecond


def to_token_time(value: datetime | None) -> int | None:
    """A time as page tokens hold it (a filter the next page must repeat)."""
    return int(value.timestamp() * 1_000_000) if value is not None else None


def check_count(field_name: str, count: int, what: str) -> None:
    """A repeated field of a request holds at most MAX_BATCH entries. Checked before any other
    work, in the servicer as well (before a request id is looked up), so that no list reaches
    the database unbounded."""
    if count > MAX_BATCH:
        raise invalid(field_name, f"at most {MAX_BATCH} {what} per call")


def check_id(field_name: str, value: str) -> None:
    """Ids are made by this service and short; anything else cannot name a thing here."""
    if not value:
        raise invalid(field_name, "is required")
    if len(value) > MAX_ID:
        raise invalid(field_name, f"at most {MAX_ID} characters")
    _printable(field_name, value)


def _all_ids(values: Iterable[str]) -> bool:
    """Whether every value passes check_id."""
    values = list(values)
    return all(0 < len(v) <= MAX_ID for v in values) and CONTROL.search("".join(values)) is None


def _only_ids(values: Iterable[str]) -> set[str]:
    """The values that pass check_id: anything else names nothing and is not looked up."""
    found = set(values)
    return found if _all_ids(found) else {v for v in found if _is_id(v)}


def _is_id(value: str) -> bool:
    """Whether value passes check_id: anything else names nothing and is not looked up."""
    return 0 < len(value) <= MAX_ID and CONTROL.search(value) is None


def _printable(field_name: str, value: str) -> None:
    if CONTROL.search(value) is not None:
        raise invalid(field_name, "must not contain control characters")


def _bad_token() -> SeatError:
    return paging.not_issued()


# The keys of page tokens: anyone can make a token with any key (the filter digest is no secret),
# so each list takes only the exact shape and range of the keys it issues.
_HUB_VALUES = frozenset(int(h) for h in Hub)


def _token_id(value: object) -> bool:
    """Whether a key part is an id: printable text (no surrogates) of 1 to MAX_ID characters."""
    return isinstance(value, str) and _is_id(value) and value.isprintable()


def _assignment_key(key: object) -> tuple[str, int]:
    """[user id, hub], as ListSeatAssignments issues it."""
    if not (
        isinstance(key, list) and len(key) == 2 and _token_id(key[0]) and type(key[1]) is int and key[1] in _HUB_VALUES
    ):
        raise _bad_token()
    return key[0], key[1]


def _sequence_key(key: object) -> int:
    """An event sequence, as ListSeatEvents issues it."""
    if type(key) is not int or not 0 <= key <= MAX_SEQUENCE:
        raise _bad_token()
    return key


def _user_key(key: object) -> str:
    """A user id, as ListUsers issues it."""
    if not (isinstance(key, str) and _token_id(key)):
        raise _bad_token()
    return key


def _quantity(field_name: str, value: int, *, minimum: int = 1) -> None:
    if value < minimum:
        raise invalid(field_name, f"must be at least {minimum}")
    if value > MAX_QUANTITY:
        raise invalid(field_name, f"at most {MAX_QUANTITY} seats per call")


def _etag_mismatch(user_id: str) -> SeatError:
    return SeatError(
        Kind.ABORTED,
        reason(ErrorReason.ETAG_MISMATCH),
        "the user changed since it was read; read it again and retry",
        {"user_id": user_id},
    )


def _check_pool_etag(pool: Pool, etag: str) -> None:
    if etag and etag != pool.etag:
        raise SeatError(
            Kind.ABORTED,
            reason(ErrorReason.ETAG_MISMATCH),
            "the seat pool changed since it was read; read it again and retry",
            {"hub": pool.hub.name, "tier": pool.tier.name, "etag": pool.etag},
        )


def _check_etag(user: User, etag: str) -> None:
    if etag and etag != user.etag:
        raise _etag_mismatch(user.user_id)
