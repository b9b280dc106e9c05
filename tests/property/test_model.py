"""A model of the seat rules, in a few dozen lines of plain Python, run side by side with the real server:
random sequences of operations by the owner and by users with or without permissions, renewals included.
After every step the server must have refused exactly when the model refuses (with the model's reason), and
its pools and assignments must be the model's.

What the model holds: pools per (hub, tier) with included, purchased, assigned and pending_removal; users
with at most one seat per hub (I3) and their permissions (S7, S12, S19, S20); the renewal date. The rules:
a grant takes a free seat first, else a seat pending removal and cancels one seat of that removal (S11),
else buys one when asked by an actor with edit billing (S14); a batch is judged on its final state, all
or nothing (S17); only unassigned purchased seats can be scheduled for removal (S8, I2); a user with a
seat cannot be deleted (S10); at the renewal date pending seats leave (S5, S9); an upgrade from Free
closes the free pool and its seats (S6); permissions only flow downward: an actor grants or removes only
what it holds, only a super admin changes or deletes a super admin, only the owner the owner (S20).

Seat activity and idle seats: each seat knows when it was given (the clock's time of the grant or of its
last move) and its last reported use; a report moves the last use forward only, never before the seat
was given, skips users without a seat of the hub, and refuses a time more than 5 minutes ahead; a move
to another tier of the hub keeps the last reported use and counts as a use itself (idleness runs from
the later of the two), an unassign forgets it. Each pool has idle_reclaim_days (0, or 7 to 3650): the
policy answers the seats last used at or before now minus those days, and the
sweep unassigns them, each with a SEAT_RECLAIMED event, leaving the seat in its pool (S18).

Seat requests and the waiting list: a user asks for a seat of a pool for themselves (anyone else asking
for them needs account access); one open request per user and hub, none for the seat the user holds. An
approval gives the seat as a grant would (a free one, else one pending removal while nobody waits, else
one bought on request by an actor with edit billing) or puts the request at the end of the pool's waiting
list; a denial closes it. After every change that commits, the pools with a free seat and a waiting list
give their seats to the oldest waiting requests (a user holding another tier of the hub is moved, which
frees a seat there), until no pool has both. A pool that approves requests by itself grants one at once
while a seat is free and nobody waits. Deleting a user cancels their open requests; closing the free pool
(an upgrade) cancels its waiting ones."""

from __future__ import annotations

import calendar
import copy
import itertools
import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from hypothesis import HealthCheck, note, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import Tenant, cents, events, pools, timestamp
from tests.property.refusals import reason_of
from tests.toolkit import (
    CANCELLED,
    DENIED,
    GRANTED,
    PENDING,
    WAITING,
    EventKey,
    check_log_leaves_pools,
    check_pool_invariants,
    event_key,
    event_type,
    replay_log,
)

r = resources_pb2
s = seat_service_pb2
u = user_service_pb2

Hub: TypeAlias = r.Hub.ValueType
Tier: TypeAlias = r.Tier.ValueType
Outcome: TypeAlias = s.SeatChangeOutcome.ValueType
SALES, SERVICE = r.HUB_SALES, r.HUB_SERVICE
NO_TIER, FREE, STARTER, PROFESSIONAL, ENTERPRISE = (
    r.TIER_UNSPECIFIED,
    r.TIER_FREE,
    r.TIER_STARTER,
    r.TIER_PROFESSIONAL,
    r.TIER_ENTERPRISE,
)
HUBS = (SALES, SERVICE)
TIERS = (FREE, STARTER, PROFESSIONAL, ENTERPRISE)
INCLUDED = {FREE: 2, STARTER: 1, PROFESSIONAL: 2, ENTERPRISE: 5}
"""The default price book: seats each tier includes. Free seats cannot be bought."""
TERM_MONTHS = 1
ACTIVITY_AHEAD = timedelta(minutes=5)
"""How far ahead of the server's clock an activity time may be (clock skew); later is INVALID_FIELD."""
MIN_IDLE_DAYS, MAX_IDLE_DAYS = 7, 3650

OWNER = "owner"
SYSTEM = "system"
"""Stand-ins for the acting user in the steps: the account's owner, and no actor (a trusted system call)."""
UNKNOWN_USER = "usr_0000000000000000000000"

SCALE = int(os.environ.get("SEATS_PROPERTY_SCALE", "1"))
"""Multiplies the runs for a deeper search (e.g. SEATS_PROPERTY_SCALE=10); 1 keeps the suite fast."""

MODEL_SETTINGS = settings(
    max_examples=25 * SCALE,
    stateful_step_count=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

T = TypeVar("T")
Listed: TypeAlias = tuple[str, Hub, Tier, datetime, datetime | None]
"""A seat as ListSeatAssignments shows it: user, hub, tier, assign time, last activity (None: no use)."""


# ---- the model ---------------------------------------------------------------------------------------


class Refused(Exception):
    """The model's prediction that the server refuses, with the README's reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Pool:
    included: int
    purchased: int = 0
    assigned: int = 0
    pending: int = 0
    idle_reclaim_days: int = 0
    """0: never reclaim; else the sweep unassigns seats unused for that many days."""
    waiting: list[str] = field(default_factory=list)
    """The waiting list: ids of approved requests, oldest first."""
    auto_approve: bool = False
    """Grant requests at once while a seat is free and nobody waits."""

    @property
    def capacity(self) -> int:
        return self.included + self.purchased

    @property
    def free(self) -> int:
        """Seats nobody holds and nobody asked to remove."""
        return self.capacity - self.assigned - self.pending

    @property
    def removable(self) -> int:
        """Purchased seats not held by anyone and not already pending (S8): held seats use included ones first."""
        return self.purchased - max(0, self.assigned - self.included) - self.pending


@dataclass
class Seat:
    tier: Tier
    given: datetime
    """The seat's assign_time: when it was given, or moved to this tier."""
    last_activity: datetime | None = None
    """The latest reported use; None until one is recorded."""

    @property
    def last_use(self) -> datetime:
        """What idleness is measured from: the later of the last activity and the grant or
        move (a move is an administrator's use of the seat)."""
        if self.last_activity is not None and self.last_activity > self.given:
            return self.last_activity
        return self.given


@dataclass
class Ask:
    """A seat request: whose, for which pool, and where it stands (a SeatRequestState)."""

    user_id: str
    hub: Hub
    tier: Tier
    state: int


@dataclass
class Member:
    email: str
    super_admin: bool = False
    edit_billing: bool = False
    account_access: bool = False
    seats: dict[Hub, Seat] = field(default_factory=dict)
    """hub -> seat: at most one seat per hub (I3)."""

    def tier(self, hub: Hub) -> Tier | None:
        seat = self.seats.get(hub)
        return seat.tier if seat is not None else None


def add_months(t: datetime, months: int) -> datetime:
    """Calendar months; a day past the end of a shorter month becomes its last day."""
    index = t.month - 1 + months
    year, month = t.year + index // 12, index % 12 + 1
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


@dataclass
class Model:
    pools: dict[tuple[Hub, Tier], Pool]
    members: dict[str, Member]
    owner_id: str
    term_start: datetime
    now: datetime
    """The server's clock: the machine moves both together."""
    terms: int = 1
    """Terms begun so far: the renewal date is `terms` terms after the first term start."""
    asks: dict[str, Ask] = field(default_factory=dict)
    """Seat requests by id, in the order they were made."""
    served: int = 0
    """Requests the waiting lists granted so far (for the run's tally)."""
    log: list[EventKey] = field(default_factory=list)
    """The request events (SEAT_REQUESTED, SEAT_REQUEST_WAITING, SEAT_REQUEST_DENIED, and the SEAT_ASSIGNED
    of each grant) the change under way appends, in order."""

    @property
    def renewal(self) -> datetime:
        return add_months(self.term_start, self.terms * TERM_MONTHS)

    # Who may do what (S7, S12, S19).

    def acting(self, who: str | None, need: str | None) -> None:
        """The checks every write makes first: the actor is a user of the account, and has the permission."""
        if who is not None and who not in self.members:
            raise Refused("ACTOR_NOT_IN_ACCOUNT")
        if need is not None:
            self.require(who, need)

    def may(self, who: str | None, permission: str) -> bool:
        if who is None:
            return True  # a trusted system call
        member = self.members[who]
        return member.super_admin or bool(getattr(member, permission))

    def require(self, who: str | None, permission: str) -> None:
        if not self.may(who, permission):
            raise Refused("PERMISSION_MISSING")

    def reach(self, who: str | None, user_id: str) -> None:
        """S20: only the owner changes or deletes the owner, only a super admin a super admin; a system
        call reaches every user."""
        if who is None:
            return
        if user_id == self.owner_id and who != self.owner_id:
            raise Refused("OWNER_ONLY")
        if self.members[user_id].super_admin and not self.members[who].super_admin:
            raise Refused("PERMISSION_MISSING")

    def user(self, user_id: str) -> Member:
        if user_id not in self.members:
            raise Refused("USER_NOT_FOUND")
        return self.members[user_id]

    def pool(self, hub: Hub, tier: Tier) -> Pool:
        if (hub, tier) not in self.pools:
            raise Refused("NOT_SUBSCRIBED")
        return self.pools[(hub, tier)]

    # Seats.

    def take_seat(self, who: str | None, hub: Hub, tier: Tier, purchase_if_needed: bool) -> None:
        """S13: one seat of the pool. A free one first; else one pending removal, which cancels one seat of
        the removal (S11); else, when asked, one bought with the grant by an actor with edit billing (S14)."""
        pool = self.pool(hub, tier)
        if pool.free > 0:
            pool.assigned += 1
        elif pool.pending > 0:
            pool.pending -= 1
            pool.assigned += 1
        elif not purchase_if_needed:
            raise Refused("NO_SEAT_AVAILABLE")
        else:
            self.require(who, "edit_billing")
            self.buy(pool, tier, 1)
            pool.assigned += 1

    def buy(self, pool: Pool, tier: Tier, quantity: int) -> None:
        if tier == FREE:
            raise Refused("TIER_NOT_PURCHASABLE")
        pool.purchased += quantity

    def release(self, user_id: str, hub: Hub) -> Seat:
        """S18: the seat goes back to its pool, which keeps it. Returns the seat given up, whose last
        activity a move to another tier of the hub carries over."""
        seat = self.members[user_id].seats.pop(hub)
        self.pools[(hub, seat.tier)].assigned -= 1
        return seat

    def give(self, user_id: str, hub: Hub, tier: Tier, moved: Seat | None = None) -> None:
        """The user holds a seat of the tier from now on (its pool already counts it). A move (`moved`
        is the seat of the hub's other tier) keeps the last activity; a new seat has none."""
        kept = moved.last_activity if moved is not None else None
        self.members[user_id].seats[hub] = Seat(tier, self.now, kept)

    def assign(self, who: str | None, user_id: str, hub: Hub, tier: Tier, purchase_if_needed: bool) -> tuple[bool, int]:
        """(changed, previous tier) of AssignSeat: the same seat again changes nothing; another tier of the
        hub moves the seat (I3)."""
        self.acting(who, "account_access")
        member = self.user(user_id)
        self.pool(hub, tier)
        held = member.tier(hub)
        if held == tier:
            return False, NO_TIER
        moved = self.release(user_id, hub) if held is not None else None
        self.take_seat(who, hub, tier, purchase_if_needed)
        self.give(user_id, hub, tier, moved)
        return True, held or NO_TIER

    def unassign(self, who: str | None, user_id: str, hub: Hub) -> None:
        self.acting(who, "account_access")
        if hub not in self.user(user_id).seats:
            raise Refused("SEAT_NOT_ASSIGNED")
        self.release(user_id, hub)

    def batch(self, who: str | None, changes: list[tuple[str, Hub, Tier]]) -> list[tuple[Tier, Tier, Outcome]]:
        """S17, judged on the final state: every seat the batch gives up is back in its pool before any seat
        is taken. Per change: (tier after, tier before, outcome)."""
        if len(set((user_id, hub) for user_id, hub, _ in changes)) != len(changes):
            raise Refused("INVALID_FIELD")
        self.acting(who, "account_access")
        for user_id, _, _ in changes:
            self.user(user_id)
        for _, hub, tier in changes:
            if tier != NO_TIER:
                self.pool(hub, tier)
        before = {(user_id, hub): self.members[user_id].tier(hub) for user_id, hub, _ in changes}
        freed: dict[tuple[str, Hub], Seat] = {}
        for user_id, hub, tier in changes:
            held = before[(user_id, hub)]
            if held is not None and held != tier:
                freed[(user_id, hub)] = self.release(user_id, hub)
        results = []
        for user_id, hub, tier in changes:
            held = before[(user_id, hub)]
            if tier == NO_TIER:
                outcome = s.SEAT_CHANGE_OUTCOME_UNASSIGNED if held else s.SEAT_CHANGE_OUTCOME_UNCHANGED
            elif held == tier:
                outcome = s.SEAT_CHANGE_OUTCOME_UNCHANGED
            else:
                self.take_seat(who, hub, tier, purchase_if_needed=False)
                self.give(user_id, hub, tier, freed.get((user_id, hub)))
                outcome = s.SEAT_CHANGE_OUTCOME_MOVED if held else s.SEAT_CHANGE_OUTCOME_ASSIGNED
            results.append((tier, held or NO_TIER, outcome))
        return results

    # Paid seats (S3, S5, S7, S8).

    def purchase(self, who: str | None, hub: Hub, tier: Tier, quantity: int) -> None:
        self.acting(who, "edit_billing")
        self.buy(self.pool(hub, tier), tier, quantity)

    def schedule_removal(self, who: str | None, hub: Hub, tier: Tier, quantity: int) -> None:
        self.acting(who, "edit_billing")
        pool = self.pool(hub, tier)
        if quantity > pool.removable:
            raise Refused("SEATS_ASSIGNED")
        pool.pending += quantity

    def cancel_removal(self, who: str | None, hub: Hub, tier: Tier, quantity: int) -> None:
        self.acting(who, "edit_billing")
        pool = self.pool(hub, tier)
        if quantity > pool.pending:
            raise Refused("NOT_PENDING_REMOVAL")
        pool.pending -= quantity

    def renew(self) -> list[EventKey]:
        """S5, S9: at the renewal date the pending seats leave and the next term begins. Returns the
        events of the renewal: SEATS_REMOVED per pool with seats pending (by hub and tier), TERM_RENEWED."""
        renewed: list[EventKey] = []
        for (hub, tier), pool in sorted(self.pools.items()):
            if pool.pending:
                renewed.append(("SEATS_REMOVED", "", hub, tier, 0, pool.pending))
            pool.purchased -= pool.pending
            pool.pending = 0
        self.terms += 1
        return [*renewed, ("TERM_RENEWED", "", 0, 0, 0, 0)]

    def upgrade(self, who: str | None, hub: Hub, tier: Tier, purchased: int, assign_user_ids: list[str]) -> None:
        """S6: a tier above every tier the hub has. The free pool closes at once and its holders lose their
        seat; the new pool opens with its included seats plus `purchased`; the named users get a seat of it
        (a seat they hold in the hub moves), or nothing happens."""
        if tier == FREE:
            raise Refused("NOT_AN_UPGRADE")
        self.acting(who, "edit_billing")
        if assign_user_ids:
            self.require(who, "account_access")
        if any(h == hub and t >= tier for h, t in self.pools):
            raise Refused("NOT_AN_UPGRADE")
        for user_id in assign_user_ids:
            self.user(user_id)
        if (hub, FREE) in self.pools:
            for member in self.members.values():
                if member.tier(hub) == FREE:
                    del member.seats[hub]  # the seat and its activity are gone
            for ask_id in self.pools[(hub, FREE)].waiting:
                self.asks[ask_id].state = CANCELLED
            del self.pools[(hub, FREE)]
        self.pools[(hub, tier)] = Pool(INCLUDED[tier], purchased)
        for user_id in assign_user_ids:
            moved = self.release(user_id, hub) if hub in self.members[user_id].seats else None
            self.take_seat(who, hub, tier, purchase_if_needed=False)
            self.give(user_id, hub, tier, moved)

    # Users (S10, S12, S15, S16, S19, S20).

    def create_user(
        self, who: str | None, user_id: str, member: Member, seats: list[tuple[Hub, Tier]], purchase_if_needed: bool
    ) -> None:
        if len({hub for hub, _ in seats}) != len(seats):
            raise Refused("INVALID_FIELD")
        self.acting(who, "account_access")
        if member.super_admin and who is not None and not self.members[who].super_admin:
            raise Refused("PERMISSION_MISSING")
        if member.edit_billing:
            self.require(who, "edit_billing")
        if any(m.email.casefold() == member.email.casefold() for m in self.members.values()):
            raise Refused("EMAIL_TAKEN")
        self.members[user_id] = member
        for hub, tier in seats:  # S15: seats only when asked for
            self.take_seat(who, hub, tier, purchase_if_needed)
            self.give(user_id, hub, tier)

    def update_permissions(self, who: str | None, user_id: str, changes: dict[str, bool]) -> Member:
        """UpdateUser of a display name and the permissions in `changes` (the others stay): the actor
        reaches the user, and grants or removes only what it holds (S20); the owner stays a super admin."""
        self.acting(who, "account_access")
        member = self.user(user_id)
        self.reach(who, user_id)
        for flag in PERMISSION_FLAGS:  # in the order the server checks them
            if flag in changes and changes[flag] != getattr(member, flag) and not self.may(who, flag):
                raise Refused("PERMISSION_MISSING")
        if user_id == self.owner_id and not changes.get("super_admin", True):
            raise Refused("OWNER_STAYS_SUPER_ADMIN")
        for flag, value in changes.items():
            setattr(member, flag, value)
        return member

    def delete_user(self, who: str | None, user_id: str) -> None:
        self.acting(who, "account_access")
        member = self.user(user_id)
        self.reach(who, user_id)
        if user_id == self.owner_id:
            raise Refused("OWNER_NOT_DELETABLE")
        if member.seats:
            raise Refused("USER_HOLDS_SEATS")
        del self.members[user_id]
        for ask_id, ask in self.asks.items():
            if ask.user_id == user_id and ask.state in OPEN:
                if ask.state == WAITING and (ask.hub, ask.tier) in self.pools:
                    self.pools[(ask.hub, ask.tier)].waiting.remove(ask_id)
                ask.state = CANCELLED

    # Seat activity and idle seats.

    def record_activity(self, who: str | None, reports: Sequence[tuple[str, Hub, datetime]]) -> tuple[int, int]:
        """(recorded, skipped) of RecordSeatActivity: a time too far ahead refuses the whole call; per seat
        the latest report counts, and moves the last activity only forward and never before the seat was
        given; a report for a user without a seat of the hub is skipped. No event, no pool changes."""
        if any(used > self.now + ACTIVITY_AHEAD for _, _, used in reports):
            raise Refused("INVALID_FIELD")
        self.acting(who, "account_access")
        latest: dict[tuple[str, Hub], datetime] = {}
        for user_id, hub, used in reports:
            latest[(user_id, hub)] = max(used, latest.get((user_id, hub), used))
        recorded = 0
        for (user_id, hub), used in latest.items():
            member = self.members.get(user_id)
            seat = member.seats.get(hub) if member is not None else None
            if seat is None or used < seat.given:
                continue
            if seat.last_activity is None or seat.last_activity < used:
                seat.last_activity = used
                recorded += 1
        return recorded, len(reports) - recorded

    def idle_seats(self, hub: Hub, tier: Tier, days: int) -> list[str]:
        """Holders of the pool's seats last used at or before now minus `days`, by user id."""
        cutoff = self.now - timedelta(days=days)
        return sorted(
            user_id for user_id, m in self.members.items() if (seat := m.seats.get(hub)) is not None
            and seat.tier == tier and seat.last_use <= cutoff
        )  # fmt: skip

    def update_policy(
        self, who: str | None, hub: Hub, tier: Tier, days: int, validate_only: bool
    ) -> tuple[list[str], list[EventKey]]:
        """(idle seats answered, events) of UpdateSeatPolicy: the idle seats are those the policy would
        reclaim now; an event only when the policy changes, and nothing at all with validate_only."""
        if days != 0 and not MIN_IDLE_DAYS <= days <= MAX_IDLE_DAYS:
            raise Refused("INVALID_FIELD")
        self.acting(who, "account_access")
        pool = self.pool(hub, tier)
        changes: list[EventKey] = []
        if pool.idle_reclaim_days != days and not validate_only:
            pool.idle_reclaim_days = days  # the machine's mask names only this field
            changes.append(("SEAT_POLICY_UPDATED", "", hub, tier, 0, days))
        return (self.idle_seats(hub, tier, days) if days else []), changes

    def reclaim(self) -> list[EventKey]:
        """The sweep: every seat of a pool with a policy, last used at or before now minus its days, goes
        back to the pool (S18). Returns a SEAT_RECLAIMED event per seat, by pool then user id."""
        reclaimed: list[EventKey] = []
        for (hub, tier), pool in sorted(self.pools.items()):
            if pool.idle_reclaim_days:
                for user_id in self.idle_seats(hub, tier, pool.idle_reclaim_days):
                    self.release(user_id, hub)
                    reclaimed.append(("SEAT_RECLAIMED", user_id, hub, tier, 0, 0))
        return reclaimed

    # Seat requests and the waiting list.

    def request_seat(self, who: str | None, target: str | None, hub: Hub, tier: Tier, ask_id: str) -> Ask:
        """RequestSeat for `target` (None: the call names no user)."""
        if target is None:
            raise Refused("INVALID_FIELD")
        self.acting(who, None)
        if target != who:
            self.require(who, "account_access")
        member = self.user(target)
        pool = self.pool(hub, tier)
        if member.tier(hub) == tier:
            raise Refused("SEAT_ALREADY_HELD")
        if any(a.state in OPEN and (a.user_id, a.hub) == (target, hub) for a in self.asks.values()):
            raise Refused("SEAT_REQUEST_EXISTS")
        self.asks[ask_id] = ask = Ask(target, hub, tier, PENDING)
        self.log.append(("SEAT_REQUESTED", target, hub, tier, 0, 0))
        if pool.auto_approve and pool.free > 0 and not pool.waiting:
            self.grant(ask_id)
        return ask

    def open_ask(self, ask_id: str) -> Ask:
        ask = self.asks.get(ask_id)
        if ask is None:
            raise Refused("SEAT_REQUEST_NOT_FOUND")
        if ask.state not in OPEN:
            raise Refused("SEAT_REQUEST_CLOSED")
        return ask

    def grant(self, ask_id: str) -> None:
        """The request's user gets its seat (a seat of another tier of the hub moves), as a grant takes one."""
        ask = self.asks[ask_id]
        held = self.members[ask.user_id].tier(ask.hub)
        ask.state = GRANTED
        if held == ask.tier:  # given meanwhile
            return
        moved = self.release(ask.user_id, ask.hub) if held is not None else None
        self.take_seat(None, ask.hub, ask.tier, purchase_if_needed=False)
        self.give(ask.user_id, ask.hub, ask.tier, moved)
        self.log.append(("SEAT_ASSIGNED", ask.user_id, ask.hub, ask.tier, held or NO_TIER, 0))

    def approve(self, who: str | None, ask_id: str, buy: bool) -> int:
        """ApproveSeatRequest; returns the request's state after it."""
        self.acting(who, "account_access")
        ask = self.open_ask(ask_id)
        pool = self.pool(ask.hub, ask.tier)
        if self.members[ask.user_id].tier(ask.hub) == ask.tier:
            if ask.state == WAITING:
                pool.waiting.remove(ask_id)
            ask.state = GRANTED
            return GRANTED
        can_take = pool.free > 0 or (pool.pending > 0 and not pool.waiting)
        if can_take or buy:
            if ask.state == WAITING:
                pool.waiting.remove(ask_id)
            if not can_take:
                self.require(who, "edit_billing")
                self.buy(pool, ask.tier, 1)
            self.grant(ask_id)
            return GRANTED
        if ask.state == PENDING:
            ask.state = WAITING
            pool.waiting.append(ask_id)
            self.log.append(("SEAT_REQUEST_WAITING", ask.user_id, ask.hub, ask.tier, 0, 0))
        return WAITING

    def deny(self, who: str | None, ask_id: str) -> None:
        self.acting(who, "account_access")
        ask = self.open_ask(ask_id)
        pool = self.pools.get((ask.hub, ask.tier))
        if pool is not None and ask.state == WAITING:
            pool.waiting.remove(ask_id)
        ask.state = DENIED
        where = (ask.hub, ask.tier) if pool is not None else (0, 0)
        self.log.append(("SEAT_REQUEST_DENIED", ask.user_id, *where, 0, 0))

    def set_auto_approve(self, who: str | None, hub: Hub, tier: Tier, on: bool) -> None:
        self.acting(who, "account_access")
        pool = self.pool(hub, tier)
        if pool.auto_approve != on:
            pool.auto_approve = on
            self.log.append(("SEAT_POLICY_UPDATED", "", hub, tier, 0, pool.idle_reclaim_days))

    def serve_waiting(self) -> None:
        """What every committed change ends with: the pools (in order) with a free seat and a waiting list
        give seats to their oldest requests, pass after pass, until no pool has both."""
        while due := [k for k in sorted(self.pools) if self.pools[k].waiting and self.pools[k].free > 0]:
            for key in due:
                pool = self.pools[key]
                for ask_id in pool.waiting[: min(pool.free, len(pool.waiting))]:
                    pool.waiting.remove(ask_id)
                    self.grant(ask_id)
                    self.served += 1

    # What GetSeatSummary and ListSeatAssignments should show.

    def summary(self) -> dict[tuple[Hub, Tier], tuple[int, int, int, int, int, int, int, bool]]:
        return {
            key: (
                p.included, p.purchased, p.assigned, p.free, p.pending, p.idle_reclaim_days, len(p.waiting),
                p.auto_approve,
            )
            for key, p in sorted(self.pools.items())
        }  # fmt: skip

    def requests(self) -> dict[str, tuple[str, Hub, Tier, int]]:
        return {ask_id: (a.user_id, a.hub, a.tier, a.state) for ask_id, a in self.asks.items()}

    def assignments(self) -> list[Listed]:
        """(user, hub, tier, assign time, last activity) of every seat."""
        return sorted(
            (user_id, hub, seat.tier, seat.given, seat.last_activity)
            for user_id, m in self.members.items()
            for hub, seat in m.seats.items()
        )


# ---- the machine: every step on the server and on the model ---------------------------------------


def pool_view(p: resources_pb2.SeatPool) -> tuple[int, int, int, int, int, int, int, bool]:
    return (
        p.included, p.purchased, p.assigned, p.available, p.pending_removal, p.idle_reclaim_days, p.waiting_requests,
        p.auto_approve_requests,
    )  # fmt: skip


def listed(a: resources_pb2.SeatAssignment) -> Listed:
    used = a.last_activity_time.ToDatetime(tzinfo=UTC) if a.HasField("last_activity_time") else None
    return (a.user_id, a.hub, a.tier, a.assign_time.ToDatetime(tzinfo=UTC), used)


def moment(t: datetime | None) -> str:
    return "-" if t is None else f"{t:%Y-%m-%d %H:%M:%S.%f}"


def name(hub: Hub, tier: Tier = NO_TIER) -> str:
    hub_name = r.Hub.Name(hub).removeprefix("HUB_")
    return hub_name if tier == NO_TIER else f"{hub_name}/{r.Tier.Name(tier).removeprefix('TIER_')}"


PERMISSION_SETS = {
    "none": r.Permissions(),
    "edit_billing": r.Permissions(edit_billing=True),
    "account_access": r.Permissions(account_access=True),
    "both": r.Permissions(edit_billing=True, account_access=True),
    "super_admin": r.Permissions(super_admin=True),
}

PERMISSION_FLAGS = ("super_admin", "edit_billing", "account_access")

UPDATE_MASKS: list[list[str] | None] = [
    None,
    ["display_name", "permissions"],
    ["permissions.super_admin"],
    ["permissions.edit_billing"],
    ["permissions.account_access"],
]
"""The update masks of the model's UpdateUser: none (AIP-134: the populated fields, so only the permissions
sent as true), the whole permissions, or one of them."""

OPENING_TIERS: list[tuple[Tier, ...]] = [(FREE,), (STARTER,), (PROFESSIONAL,), (ENTERPRISE,), (STARTER, PROFESSIONAL)]
"""The tiers a hub starts with: one, or two paid ones (separate pools)."""

SEEDED_USERS = ["none", "edit_billing", "account_access"]
"""Users every account starts with besides its owner: one per permission set that lacks something."""

OPENINGS = [(2, MIN_IDLE_DAYS), (1, 30), (0, 0), (3, MIN_IDLE_DAYS), (1, 0), (2, 30)]
"""(seeded users with a seat, idle_reclaim_days of the first pool) of a new account."""

ACTIVITY_TIMES = (
    "now",
    "a minute ago",
    "a week ago",
    "a month ago",
    "at the grant",
    "before the grant",
    "at the last use",
    "before the last use",
    "5 minutes ahead",
    "too far ahead",
)
"""When a reported use happened, relative to the clock and to the seat reported (see `activity_time`)."""

POLICY_DAYS = (0, 7, 7, 30, 30, 3)
"""idle_reclaim_days an UpdateSeatPolicy asks for: off, a week, a month, or too few (INVALID_FIELD)."""

EVERY_ACCOUNT = 1_000_000
"""A limit of the sweep's queries of accounts that no test database reaches."""

SPECIAL_EVENTS = (
    "SEAT_RECLAIMED", "SEAT_POLICY_UPDATED", "SEAT_REQUESTED", "SEAT_REQUEST_WAITING", "SEAT_REQUEST_DENIED"
)  # fmt: skip
"""The event types whose every occurrence the machine predicts, step by step; so is every event of a
grant of a request (a SEAT_ASSIGNED that names the request)."""

OPEN = (PENDING, WAITING)
UNKNOWN_REQUEST = "sreq_0000000000000000000000"
NEW_USER = "a new user"
NEW_REQUEST = "new request"
"""The model's id of a request until the server's answer names it."""

hubs = st.sampled_from(HUBS)
tiers = st.sampled_from(TIERS)
quantities = st.integers(1, 3)
flags = st.booleans()


class SeatMachine(RuleBasedStateMachine):
    """Random operations against the server and the model side by side."""

    users = Bundle("users")

    def __init__(self, running: Running, tally: Counter[tuple[str, str]]) -> None:
        super().__init__()
        self.running = running
        self.tally = tally
        self.seats = running.seats
        self.user_service = running.users
        self.tenant: Tenant | None = None
        self.model: Model | None = None
        self.emails: dict[str, str] = {}
        self.emails_made = itertools.count(1)
        self.steps = 0
        self.seen = 0
        """The last event sequence the checks have read."""
        self.expected_events: list[EventKey] = []
        """The SEAT_RECLAIMED and SEAT_POLICY_UPDATED events the last step should have appended."""
        self.no_events = False
        """The last step should have appended no event at all."""

    # Plumbing.

    @property
    def account_id(self) -> str:
        assert self.tenant is not None
        return self.tenant.id

    def actor_id(self, who: str) -> str | None:
        """The acting user id: OWNER is the owner, SYSTEM is no actor, anything else is a user id."""
        assert self.model is not None
        if who == SYSTEM:
            return None
        return self.model.owner_id if who == OWNER else who

    def metadata(self, who: str | None) -> tuple[tuple[str, str], ...]:
        return actor(who) if who is not None else ()

    def step(
        self, what: str, model_change: Callable[[Model], T], server_call: Callable[[], Any], *, kind: str
    ) -> tuple[T | None, Any]:
        """Runs one operation on a copy of the model and on the server; they must agree on OK or the
        refusal's reason. The model keeps the change only when it succeeded (all or nothing)."""
        assert self.model is not None
        self.steps += 1
        trial = copy.deepcopy(self.model)
        try:
            expected: T | None = model_change(trial)
            trial.serve_waiting()
            predicted = "OK"
        except Refused as refusal:
            expected, predicted = None, refusal.reason
        try:
            response, answered = server_call(), "OK"
        except grpc.RpcError as err:
            response, answered = None, reason_of(err)
        self.record(kind, what, predicted, answered)
        if predicted == "OK":
            self.model = trial
            self.expected_events += trial.log  # a rule of several steps expects the events of them all
            trial.log = []
            self.tally[("#waiting list", "granted")] += trial.served
            trial.served = 0
        return expected, response

    def record(self, kind: str, what: str, predicted: str, answered: str) -> None:
        note(f"step {self.steps}: {what}: model {predicted}, server {answered}")
        self.tally[(kind, answered)] += 1
        assert answered == predicted, f"{what}: the model expects {predicted}, the server answered {answered}"

    def label(self, user_id: str) -> str:
        """A short name of a user for the notes: its email's local part."""
        assert self.model is not None
        if user_id == self.model.owner_id:
            return "owner"
        return self.emails.get(user_id, user_id).split("@")[0]

    def who_label(self, who: str) -> str:
        return who if who in (OWNER, SYSTEM) else self.label(who)

    # The account.

    @initialize(
        target=users,
        subscriptions=st.lists(
            st.tuples(hubs, st.sampled_from(OPENING_TIERS), st.integers(0, 2)),
            min_size=1,
            max_size=2,
            unique_by=lambda sub: sub[0],
        ),
        opening=st.sampled_from(OPENINGS),
    )
    def open_account(self, subscriptions: list[tuple[Hub, tuple[Tier, ...], int]], opening: tuple[int, int]) -> Any:
        """A new account for every run (the clock is shared by the whole session and only moves forward),
        with a user of each permission set besides the owner, made by system calls. The first `seated` of
        them get a seat of the first pool with one free, and the first pool may reclaim seats idle for
        `policy` days, so that activity and reclaims have seats to work on from the start."""
        seated, policy = opening
        pools = {
            (hub, tier): Pool(INCLUDED[tier], 0 if tier == FREE else purchased)
            for hub, tier_set, purchased in subscriptions
            for tier in tier_set
        }
        response = self.seats.CreateAccount(
            s.CreateAccountRequest(
                display_name="Model",
                owner_email="owner@model.test",
                term_months=TERM_MONTHS,
                subscriptions=[
                    r.Subscription(hub=hub, tier=tier, purchased_seats=p.purchased) for (hub, tier), p in pools.items()
                ],
            )
        )
        account = response.account
        self.tenant = Tenant(account, tuple(response.charges))
        owner = Member("owner@model.test", super_admin=True, edit_billing=True, account_access=True)
        self.model = Model(
            pools,
            {account.owner_user_id: owner},
            account.owner_user_id,
            account.term_start.ToDatetime(tzinfo=UTC),
            self.running.clock.now(),
        )
        self.emails[account.owner_user_id] = owner.email
        note(f"account with {', '.join(f'{name(*k)} +{p.purchased}' for k, p in pools.items())}")
        seeded = [account.owner_user_id]
        for i, permissions in enumerate(SEEDED_USERS):
            email = f"{permissions}@model.test"
            granted = PERMISSION_SETS[permissions]
            free = [key for key, pool in sorted(self.model.pools.items()) if pool.free > 0]
            seats = free[:1] if i < seated else []
            made = self.user_service.CreateUser(
                u.CreateUserRequest(
                    account_id=account.account_id,
                    email=email,
                    permissions=granted,
                    seats=[r.SeatRef(hub=hub, tier=tier) for hub, tier in seats],
                )
            ).user
            member = Member(email, granted.super_admin, granted.edit_billing, granted.account_access)
            self.model.create_user(None, made.user_id, member, seats, purchase_if_needed=False)
            self.emails[made.user_id] = email
            seeded.append(made.user_id)
        used = [(user_id, hub, self.model.now) for user_id, m in self.model.members.items() for hub in m.seats]
        if used:  # the seeded seats were used: a move must keep that, an unassign forget it
            self.seats.RecordSeatActivity(
                s.RecordSeatActivityRequest(
                    account_id=account.account_id,
                    activities=[r.SeatActivity(user_id=u, hub=h, activity_time=timestamp(t)) for u, h, t in used],
                )
            )
            self.model.record_activity(None, used)
        first = min(self.model.pools)
        if policy:
            self.seats.UpdateSeatPolicy(
                s.UpdateSeatPolicyRequest(
                    account_id=account.account_id, hub=first[0], tier=first[1], idle_reclaim_days=policy
                )
            )
            self.expected_events = self.model.update_policy(None, *first, policy, validate_only=False)[1]
            note(f"{name(*first)} reclaims seats idle for {policy} days")
        return multiple(*seeded)

    def pool_keys(self) -> st.SearchStrategy[tuple[Hub, Tier]]:
        """Mostly a pool of the account; now and then any hub and tier (most of those it lacks)."""
        assert self.model is not None
        own = st.sampled_from(sorted(self.model.pools))
        return st.one_of(own, own, own, st.tuples(hubs, tiers))

    def actors(self) -> st.SearchStrategy[str]:
        """Mostly the owner; sometimes any user (one without a permission, a deleted one), or no actor."""
        return st.one_of(st.just(OWNER), st.just(OWNER), st.just(OWNER), self.users, st.just(SYSTEM))

    # Seats: assign, unassign, batches.

    @rule(data=st.data(), user=st.one_of(users, users, users, users, st.just(UNKNOWN_USER)), purchase_if_needed=flags)
    def assign(self, data: st.DataObject, user: str, purchase_if_needed: bool) -> None:
        """A seat for a user (now and then one the account never had)."""
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        what = (
            f"{self.who_label(who)} assigns {self.label(user)} {name(hub, tier)} "
            f"purchase_if_needed={purchase_if_needed}"
        )
        expected, response = self.step(
            what,
            lambda m: m.assign(acting, user, hub, tier, purchase_if_needed),
            lambda: self.seats.AssignSeat(
                s.AssignSeatRequest(
                    account_id=self.account_id, user_id=user, hub=hub, tier=tier, purchase_if_needed=purchase_if_needed
                ),
                metadata=self.metadata(acting),
            ),
            kind="assign",
        )
        if expected is not None:
            changed, previous = expected
            assert (response.changed, response.previous_tier) == (changed, previous), f"{what}: {response}"
            given = response.assignment
            assert (given.user_id, given.hub, given.tier) == (user, hub, tier), f"{what}: {given}"

    @rule(data=st.data())
    def unassign(self, data: st.DataObject) -> None:
        """Mostly a seat somebody holds, above all one of a pool with a waiting list; else any user and hub."""
        assert self.model is not None
        anyone = st.tuples(self.users, hubs)
        held = sorted((user_id, hub) for user_id, m in self.model.members.items() for hub in m.seats)
        queued = [
            (user_id, hub)
            for user_id, hub in held
            if self.model.pools[(hub, self.model.members[user_id].seats[hub].tier)].waiting
        ]
        choices = [st.sampled_from(held)] * 2 if held else []
        choices += [st.sampled_from(queued)] * 4 if queued else []
        user, hub = data.draw(st.one_of(*choices, anyone))  # a seat somebody waits for, most of all
        self.unassign_step(data.draw(self.actors(), label="actor"), user, hub)

    def unassign_step(self, who: str, user: str, hub: Hub) -> None:
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} unassigns {self.label(user)} {name(hub)}",
            lambda m: m.unassign(acting, user, hub),
            lambda: self.seats.UnassignSeat(
                s.UnassignSeatRequest(account_id=self.account_id, user_id=user, hub=hub),
                metadata=self.metadata(acting),
            ),
            kind="unassign",
        )

    @rule(data=st.data(), size=st.integers(1, 4))
    def batch(self, data: st.DataObject, size: int) -> None:
        """1 to 4 changes; a change to no tier takes the user's seat of the hub."""
        unassign = st.tuples(hubs, st.just(NO_TIER))
        changes = [
            (data.draw(self.users, label="user"), *data.draw(st.one_of(self.pool_keys(), unassign), label="seat"))
            for _ in range(size)
        ]
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        shown = ", ".join(
            f"{self.label(user)} {name(hub, tier) if tier else name(hub) + ' none'}" for user, hub, tier in changes
        )
        expected, response = self.step(
            f"{self.who_label(who)} saves a batch [{shown}]",
            lambda m: m.batch(acting, changes),
            lambda: self.seats.BatchUpdateSeatAssignments(
                s.BatchUpdateSeatAssignmentsRequest(
                    account_id=self.account_id,
                    changes=[s.SeatChange(user_id=user, hub=hub, tier=tier) for user, hub, tier in changes],
                ),
                metadata=self.metadata(acting),
            ),
            kind="batch",
        )
        if expected is not None:
            got = [(x.tier, x.previous_tier, x.outcome) for x in response.results]
            assert got == expected, f"batch results (tier, previous tier, outcome): {got}, the model: {expected}"
            assert [(x.user_id, x.hub) for x in response.results] == [(user, hub) for user, hub, _ in changes]

    # Paid seats.

    @rule(data=st.data(), quantity=quantities)
    def purchase(self, data: st.DataObject, quantity: int) -> None:
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} buys {quantity} {name(hub, tier)}",
            lambda m: m.purchase(acting, hub, tier, quantity),
            lambda: self.seats.PurchaseSeats(
                s.PurchaseSeatsRequest(account_id=self.account_id, hub=hub, tier=tier, quantity=quantity),
                metadata=self.metadata(acting),
            ),
            kind="purchase",
        )

    @rule(data=st.data(), quantity=quantities)
    def schedule_removal(self, data: st.DataObject, quantity: int) -> None:
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} schedules the removal of {quantity} {name(hub, tier)}",
            lambda m: m.schedule_removal(acting, hub, tier, quantity),
            lambda: self.seats.ScheduleSeatRemoval(
                s.ScheduleSeatRemovalRequest(account_id=self.account_id, hub=hub, tier=tier, quantity=quantity),
                metadata=self.metadata(acting),
            ),
            kind="schedule_removal",
        )

    @rule(data=st.data(), quantity=quantities)
    def cancel_removal(self, data: st.DataObject, quantity: int) -> None:
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} cancels the removal of {quantity} {name(hub, tier)}",
            lambda m: m.cancel_removal(acting, hub, tier, quantity),
            lambda: self.seats.CancelSeatRemoval(
                s.CancelSeatRemovalRequest(account_id=self.account_id, hub=hub, tier=tier, quantity=quantity),
                metadata=self.metadata(acting),
            ),
            kind="cancel_removal",
        )

    @rule(
        data=st.data(),
        hub=hubs,
        tier=st.sampled_from((STARTER, PROFESSIONAL, ENTERPRISE, FREE)),
        purchased=st.integers(0, 2),
        assign_to=st.lists(users, max_size=2, unique=True),
        occasionally=st.integers(0, 2),
    )
    def upgrade(
        self, data: st.DataObject, hub: Hub, tier: Tier, purchased: int, assign_to: list[str], occasionally: int
    ) -> None:
        if occasionally:
            return  # upgrades only now and then: they open pools for good
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        named = ", ".join(self.label(user) for user in assign_to)
        self.step(
            f"{self.who_label(who)} upgrades {name(hub)} to {name(hub, tier)} buying {purchased}, for [{named}]",
            lambda m: m.upgrade(acting, hub, tier, purchased, assign_to),
            lambda: self.seats.UpgradeSubscription(
                s.UpgradeSubscriptionRequest(
                    account_id=self.account_id,
                    hub=hub,
                    tier=tier,
                    purchased_seats=purchased,
                    assign_user_ids=assign_to,
                ),
                metadata=self.metadata(acting),
            ),
            kind="upgrade",
        )

    # Users.

    @rule(
        target=users,
        data=st.data(),
        permissions=st.sampled_from(sorted(PERMISSION_SETS)),
        seat_count=st.sampled_from([0, 0, 1, 1, 2]),
        purchase_if_needed=flags,
        reuse_email_of=st.one_of(st.none(), st.none(), st.none(), users),
    )
    def create_user(
        self,
        data: st.DataObject,
        permissions: str,
        seat_count: int,
        purchase_if_needed: bool,
        reuse_email_of: str | None,
    ) -> Any:
        """A user with 0 to 2 seats (two of one hub are refused), maybe with another user's email."""
        seats = [data.draw(self.pool_keys(), label="seat") for _ in range(seat_count)]
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        if reuse_email_of is not None:  # S16: the same email in other case, taken unless its user was deleted
            email = self.emails[reuse_email_of].upper()
        else:
            email = f"user{next(self.emails_made)}@model.test"
        granted = PERMISSION_SETS[permissions]
        member = Member(email, granted.super_admin, granted.edit_billing, granted.account_access)
        made: dict[str, str] = {}

        def create() -> u.CreateUserResponse:
            response = self.user_service.CreateUser(
                u.CreateUserRequest(
                    account_id=self.account_id,
                    email=email,
                    permissions=granted,
                    seats=[r.SeatRef(hub=hub, tier=tier) for hub, tier in seats],
                    purchase_if_needed=purchase_if_needed,
                ),
                metadata=self.metadata(acting),
            )
            made["id"] = response.user.user_id
            return response

        # The model learns the new id from the server: create on the server first, then on the model.
        shown = ", ".join(name(hub, tier) for hub, tier in seats)
        what = (
            f"{self.who_label(who)} creates {email} ({permissions}) with [{shown}] "
            f"purchase_if_needed={purchase_if_needed}"
        )
        try:
            response, answered = create(), "OK"
        except grpc.RpcError as err:
            response, answered = None, reason_of(err)
        assert self.model is not None
        self.steps += 1
        trial = copy.deepcopy(self.model)
        try:
            trial.create_user(acting, made.get("id", "usr_new"), member, seats, purchase_if_needed)
            predicted = "OK"
        except Refused as refusal:
            predicted = refusal.reason
        self.record("create_user", what, predicted, answered)
        if response is None:
            return multiple()
        self.model = trial
        user_id = response.user.user_id
        self.emails[user_id] = email
        assert sorted((x.hub, x.tier) for x in response.user.seats) == sorted(seats), response.user
        return user_id

    @rule(
        data=st.data(),
        user=users,
        permissions=st.sampled_from(sorted(PERMISSION_SETS)),
        mask=st.sampled_from(UPDATE_MASKS),
    )
    def update_user(self, data: st.DataObject, user: str, permissions: str, mask: list[str] | None) -> None:
        """A new display name and permissions, with an update mask or without one; acted on by any user
        half of the time, so that S20 refuses now and then."""
        who = data.draw(st.one_of(self.users, self.actors()), label="actor")
        acting = self.actor_id(who)
        sent = PERMISSION_SETS[permissions]
        if mask is None:
            changes = {flag: True for flag in PERMISSION_FLAGS if getattr(sent, flag)}
        elif "permissions" in mask:
            changes = {flag: getattr(sent, flag) for flag in PERMISSION_FLAGS}
        else:
            flag = mask[0].removeprefix("permissions.")
            changes = {flag: getattr(sent, flag)}
        request = u.UpdateUserRequest(
            user=r.User(account_id=self.account_id, user_id=user, display_name=f"Name {self.steps}", permissions=sent)
        )
        if mask is not None:
            request.update_mask.paths.extend(mask)
        expected, response = self.step(
            f"{self.who_label(who)} updates {self.label(user)} to {permissions} with mask {mask}",
            lambda m: m.update_permissions(acting, user, changes),
            lambda: self.user_service.UpdateUser(request, metadata=self.metadata(acting)),
            kind="update_user",
        )
        if expected is not None:
            got = response.user.permissions
            assert (got.super_admin, got.edit_billing, got.account_access) == (
                expected.super_admin,
                expected.edit_billing,
                expected.account_access,
            ), f"permissions after the update: {got}, the model: {expected}"

    @rule(data=st.data(), user=users)
    def delete_user(self, data: st.DataObject, user: str) -> None:
        who = data.draw(st.one_of(self.users, self.actors()), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} deletes {self.label(user)}",
            lambda m: m.delete_user(acting, user),
            lambda: self.user_service.DeleteUser(
                u.DeleteUserRequest(account_id=self.account_id, user_id=user), metadata=self.metadata(acting)
            ),
            kind="delete_user",
        )

    # Seat activity and idle seats.

    def activity_time(self, user_id: str, hub: Hub, when: str) -> datetime:
        """A time of use: around the clock, or around the reported seat's grant and last use (the clock's
        time for a user without a seat of the hub)."""
        assert self.model is not None
        now = self.model.now
        member = self.model.members.get(user_id)
        seat = member.seats.get(hub) if member is not None else None
        given = seat.given if seat is not None else now
        used = seat.last_activity if seat is not None and seat.last_activity is not None else now
        return {
            "now": now,
            "a minute ago": now - timedelta(minutes=1),
            "a week ago": now - timedelta(days=MIN_IDLE_DAYS),
            "a month ago": now - timedelta(days=30),
            "at the grant": given,
            "before the grant": given - timedelta(seconds=1),
            "at the last use": used,
            "before the last use": used - timedelta(seconds=1),
            "5 minutes ahead": now + ACTIVITY_AHEAD,
            "too far ahead": now + ACTIVITY_AHEAD + timedelta(milliseconds=1),
        }[when]

    @rule(data=st.data(), size=st.integers(1, 4))
    def record_activity(self, data: st.DataObject, size: int) -> None:
        """1 to 4 reports, mostly of seats somebody holds, some of users without one; times before the
        grant or the last use are skipped, one over 5 minutes ahead refuses the call and records nothing."""
        assert self.model is not None
        held = sorted((user_id, hub) for user_id, m in self.model.members.items() for hub in m.seats)
        anyone = st.tuples(st.one_of(self.users, st.just(UNKNOWN_USER)), hubs)
        seat = st.one_of(st.sampled_from(held), st.sampled_from(held), anyone) if held else anyone
        reports: list[tuple[str, Hub, datetime]] = []
        shown = []
        for _ in range(size):
            user, hub = data.draw(seat, label="seat")
            when = data.draw(st.sampled_from(ACTIVITY_TIMES), label="when")
            reports.append((user, hub, self.activity_time(user, hub, when)))
            shown.append(f"{self.label(user)} {name(hub)} {when}")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        what = f"{self.who_label(who)} reports use [{', '.join(shown)}]"
        expected, response = self.step(
            what,
            lambda m: m.record_activity(acting, reports),
            lambda: self.seats.RecordSeatActivity(
                s.RecordSeatActivityRequest(
                    account_id=self.account_id,
                    activities=[
                        r.SeatActivity(user_id=user, hub=hub, activity_time=timestamp(used))
                        for user, hub, used in reports
                    ],
                ),
                metadata=self.metadata(acting),
            ),
            kind="activity",
        )
        if expected is not None:
            got = (response.recorded, response.skipped)
            assert got == expected, f"{what}: (recorded, skipped) {got}, the model: {expected}"
            self.tally[("#activity", "seats moved")] += expected[0]
        self.no_events = True  # activity is no change of the account, refused or not

    @rule(data=st.data(), days=st.sampled_from(POLICY_DAYS), validate_only=st.sampled_from([False, False, True]))
    def set_policy(self, data: st.DataObject, days: int, validate_only: bool) -> None:
        """A pool's idle_reclaim_days: it answers the seats idle that long now (at the boundary included);
        ListSeatAssignments with idle_since at that boundary lists the ones idle longer."""
        assert self.model is not None
        taken = sorted({(hub, seat.tier) for m in self.model.members.values() for hub, seat in m.seats.items()})
        pool = st.one_of(st.sampled_from(taken), self.pool_keys()) if taken else self.pool_keys()
        hub, tier = data.draw(pool, label="pool")  # mostly one with seats to reclaim
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        what = f"{self.who_label(who)} sets {name(hub, tier)} idle_reclaim_days={days} validate_only={validate_only}"
        expected, response = self.step(
            what,
            lambda m: m.update_policy(acting, hub, tier, days, validate_only),
            lambda: self.seats.UpdateSeatPolicy(
                s.UpdateSeatPolicyRequest(
                    account_id=self.account_id,
                    hub=hub,
                    tier=tier,
                    idle_reclaim_days=days,
                    validate_only=validate_only,
                    update_mask=FieldMask(paths=["idle_reclaim_days"]),
                ),
                metadata=self.metadata(acting),
            ),
            kind="policy",
        )
        if expected is None:
            return
        idle, changes = expected
        self.expected_events = changes
        shown = pool_view(response.pool)
        assert shown[:6] == (*self.model.summary()[(hub, tier)][:5], days), f"{what}: the pool {shown}"
        seats = {(user_id, h): seat for user_id, h, *seat in map(listed, response.idle_seats)}
        model_seats = {(user_id, h): seat for user_id, h, *seat in self.model.assignments()}
        assert [user_id for user_id, _ in seats] == idle, (
            f"{what}: idle seats {self.readable_users(seats)}, the model: {self.readable_users(idle)}"
        )
        assert all(seat == model_seats[key] for key, seat in seats.items()), f"{what}: {response.idle_seats}"
        self.tally[("#policy", "idle seats answered")] += len(idle)
        if days:
            cutoff = self.model.now - timedelta(days=days)
            request = s.ListSeatAssignmentsRequest(account_id=self.account_id, hub=hub, tier=tier, page_size=1000)
            request.idle_since.CopyFrom(timestamp(cutoff))
            before = [a.user_id for a in self.seats.ListSeatAssignments(request).assignments]
            idler = [u for u in idle if self.model.members[u].seats[hub].last_use < cutoff]
            assert before == idler, f"idle_since {moment(cutoff)} lists {before}, the model: {idler}"

    @rule(days=st.sampled_from([MIN_IDLE_DAYS, 0, 1, MIN_IDLE_DAYS + 1]))
    def sweep(self, days: int) -> None:
        """`days` later, the periodic sweep: the renewals due (S5, S9), then every seat idle past its pool's
        policy goes back to the pool, each with a SEAT_RECLAIMED event by the system (S18).

        Done as Sweeper.sweep_once does it, for this account only: it must be among the accounts due and
        among the reclaim candidates exactly when the model renews and reclaims, and then renew_account and
        reclaim_account run. The whole sweep_once would also renew every other account of the session's
        database each time the clock passes a month, which makes the run several times slower once the
        other suites have made their accounts."""
        assert self.model is not None
        self.steps += 1
        renewed = self.move_clock(timedelta(days=days))
        reclaimed = self.model.reclaim()
        self.model.serve_waiting()  # the seats reclaimed go to the waiting lists in the same transaction
        granted, self.model.log = self.model.log, []
        self.tally[("#waiting list", "granted")] += self.model.served
        self.model.served = 0
        store, domain, now = self.running.store, self.running.server.domain, self.model.now
        due = self.account_id in store.read(lambda: store.due_accounts(now, EVERY_ACCOUNT))
        assert due == bool(renewed), f"due for renewal: {due}, the model renews {renewed}"
        if due:
            domain.renew_account(self.account_id)
        idle = self.account_id in store.read(lambda: store.reclaim_candidates(now, EVERY_ACCOUNT))
        note(f"step {self.steps}: sweep after {days} days: reclaims {self.readable_users(e[1] for e in reclaimed)}")
        assert idle == bool(reclaimed), f"a reclaim candidate: {idle}, the model reclaims {reclaimed}"
        if idle:
            domain.reclaim_account(self.account_id)
        appended = self.new_events()
        swept = ("SEATS_REMOVED", "TERM_RENEWED", "SEAT_RECLAIMED")
        got = [event_key(e) for e in appended if event_type(e) in swept]
        assert got == renewed + reclaimed, f"the sweep appended {got}, the model expects {renewed + reclaimed}"
        grants = [event_key(e) for e in appended if e.seat_request_id]
        assert grants == granted, f"the sweep granted {grants}, the model expects {granted}"
        assert all(e.actor == SYSTEM for e in appended), [e.actor for e in appended]
        self.tally[("sweep", "OK")] += 1
        self.tally[("#sweep", "seats reclaimed")] += len(reclaimed)

    # Seat requests and the waiting list.

    @rule(data=st.data(), user=st.one_of(users, users, users, st.just(UNKNOWN_USER)))
    def request_seat(self, data: st.DataObject, user: str) -> None:
        """Mostly the user asks for themselves; sometimes the owner, a trusted system (naming the user or,
        wrongly, no one) or another user asks for them."""
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(st.one_of(st.just(user), st.just(user), self.actors()), label="actor")
        acting = self.actor_id(who)
        target: str | None = user
        if acting is None and data.draw(st.booleans(), label="names no user"):
            target = None
        what = f"{self.who_label(who)} asks for a {name(hub, tier)} seat for {self.label(target or '-')}"
        request = s.RequestSeatRequest(account_id=self.account_id, hub=hub, tier=tier)
        if target != acting and target is not None:
            request.user_id = target
        _, response = self.step(
            what,
            lambda m: m.request_seat(acting, target, hub, tier, NEW_REQUEST),
            lambda: self.seats.RequestSeat(request, metadata=self.metadata(acting)),
            kind="request",
        )
        if response is not None:
            assert self.model is not None
            made = response.seat_request
            self.model.asks[made.seat_request_id] = self.model.asks.pop(NEW_REQUEST)
            for pool in self.model.pools.values():
                assert NEW_REQUEST not in pool.waiting  # a new request waits only once approved
            assert made.state == self.model.asks[made.seat_request_id].state, f"{what}: {made}"

    def new_member(self, seats: list[tuple[Hub, Tier]]) -> str:
        """A user without permissions, with seats, made by a system call (its events are no step's)."""
        assert self.model is not None
        email = f"asker{next(self.emails_made)}@model.test"
        created = self.user_service.CreateUser(
            u.CreateUserRequest(
                account_id=self.account_id, email=email, seats=[r.SeatRef(hub=h, tier=t) for h, t in seats]
            )
        )
        self.model.create_user(None, created.user.user_id, Member(email), seats, purchase_if_needed=False)
        self.emails[created.user.user_id] = email
        self.new_events()
        return created.user.user_id

    @rule(
        data=st.data(),
        user=st.one_of(users, st.just(NEW_USER)),
        buy=st.sampled_from([False, False, False, True]),
        fill=st.booleans(),
    )
    def ask_and_approve(self, data: st.DataObject, user: str, buy: bool, fill: bool) -> None:
        """A user (now and then one just made, without seats) asks for a seat of a pool, mostly a full one,
        and the owner approves it at once: the waiting lists fill up faster than by the two rules apart.
        With `fill`, users made by system calls first take the pool's last free seats (three at most)."""
        assert self.model is not None
        if user == NEW_USER:
            user = self.new_member([])
        full = sorted(k for k, p in self.model.pools.items() if p.free == 0)
        every = st.sampled_from(sorted(self.model.pools))
        hub, tier = data.draw(st.one_of(st.sampled_from(full), st.sampled_from(full), every) if full else every)
        pool = self.model.pools[(hub, tier)]
        if fill and 0 < pool.free <= 3:
            while pool.free > 0:
                self.new_member([(hub, tier)])
        before = set(self.model.asks)
        self.step(
            f"{self.label(user)} asks for a {name(hub, tier)} seat",
            lambda m: m.request_seat(user, user, hub, tier, NEW_REQUEST),
            lambda: self.seats.RequestSeat(
                s.RequestSeatRequest(account_id=self.account_id, hub=hub, tier=tier), metadata=self.metadata(user)
            ),
            kind="request",
        )
        made = [a for a in self.model.asks if a not in before]
        if made and NEW_REQUEST in self.model.asks:
            self.rename_new_request(made)
        self.check_new_events()
        owner = self.model.owner_id
        for ask_id in [a for a in self.model.asks if a not in before and self.model.asks[a].state == PENDING]:
            expected, _ = self.step(
                f"owner approves it purchase_if_needed={buy}",
                lambda m, ask_id=ask_id: m.approve(owner, ask_id, buy),  # type: ignore[misc]
                lambda ask_id=ask_id: self.seats.ApproveSeatRequest(  # type: ignore[misc]
                    s.ApproveSeatRequestRequest(
                        account_id=self.account_id, seat_request_id=ask_id, purchase_if_needed=buy
                    ),
                    metadata=self.metadata(owner),
                ),
                kind="approve",
            )
            if expected is not None:
                self.tally[("#approve", r.SeatRequestState.Name(r.SeatRequestState.ValueType(expected)))] += 1

    def rename_new_request(self, made: list[str]) -> None:
        """Gives the model's new request the id of the server's: the one request the server lists that the
        model does not know."""
        assert self.model is not None
        listed_ids = [
            q.seat_request_id
            for q in self.seats.ListSeatRequests(
                s.ListSeatRequestsRequest(account_id=self.account_id, page_size=1000)
            ).seat_requests
        ]
        (server_id,) = [q for q in listed_ids if q not in self.model.asks]
        self.model.asks[server_id] = self.model.asks.pop(NEW_REQUEST)
        assert made == [NEW_REQUEST]

    def ask_ids(self) -> st.SearchStrategy[str]:
        """Mostly a request the account has (an open one more often); now and then one it never had."""
        assert self.model is not None
        made = list(self.model.asks)
        open_ones = [a for a in made if self.model.asks[a].state in OPEN]
        choices = [st.just(UNKNOWN_REQUEST)]
        if made:
            choices += [st.sampled_from(made)] * 2
        if open_ones:
            choices += [st.sampled_from(open_ones)] * 6
        return st.one_of(*choices)

    @rule(data=st.data(), buy=st.sampled_from([False, False, True]))
    def approve(self, data: st.DataObject, buy: bool) -> None:
        ask_id = data.draw(self.ask_ids(), label="request")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        what = f"{self.who_label(who)} approves {ask_id} purchase_if_needed={buy}"
        expected, response = self.step(
            what,
            lambda m: m.approve(acting, ask_id, buy),
            lambda: self.seats.ApproveSeatRequest(
                s.ApproveSeatRequestRequest(account_id=self.account_id, seat_request_id=ask_id, purchase_if_needed=buy),
                metadata=self.metadata(acting),
            ),
            kind="approve",
        )
        if expected is not None:
            assert response.seat_request.state == expected, f"{what}: {response.seat_request}"
            self.tally[("#approve", r.SeatRequestState.Name(r.SeatRequestState.ValueType(expected)))] += 1

    @rule(data=st.data())
    def deny(self, data: st.DataObject) -> None:
        ask_id = data.draw(self.ask_ids(), label="request")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} denies {ask_id}",
            lambda m: m.deny(acting, ask_id),
            lambda: self.seats.DenySeatRequest(
                s.DenySeatRequestRequest(account_id=self.account_id, seat_request_id=ask_id),
                metadata=self.metadata(acting),
            ),
            kind="deny",
        )

    @rule(data=st.data(), on=st.booleans())
    def set_auto_approve(self, data: st.DataObject, on: bool) -> None:
        hub, tier = data.draw(self.pool_keys(), label="pool")
        who = data.draw(self.actors(), label="actor")
        acting = self.actor_id(who)
        self.step(
            f"{self.who_label(who)} sets {name(hub, tier)} auto_approve_requests={on}",
            lambda m: m.set_auto_approve(acting, hub, tier, on),
            lambda: self.seats.UpdateSeatPolicy(
                s.UpdateSeatPolicyRequest(
                    account_id=self.account_id, hub=hub, tier=tier, auto_approve_requests=on,
                    update_mask=FieldMask(paths=["auto_approve_requests"]),
                ),
                metadata=self.metadata(acting),
            ),
            kind="auto_approve",
        )  # fmt: skip

    # Time.

    def move_clock(self, by: timedelta) -> list[EventKey]:
        """Moves the server's clock and the model's. At every renewal date passed the model renews (S5, S9),
        as the server does at its next call or sweep; returns the events of those renewals."""
        assert self.model is not None
        self.model.now = self.running.clock.advance(by)
        renewed: list[EventKey] = []
        while self.model.renewal <= self.model.now:
            renewed += self.model.renew()
        note(f"clock -> {self.model.now.isoformat()}; renewal {self.model.renewal.isoformat()}")
        return renewed

    @rule(past_renewal=st.booleans(), fraction=st.floats(0.05, 0.95))
    def advance_clock(self, past_renewal: bool, fraction: float) -> None:
        """Past the renewal date (pending seats leave, S5), or part of the way to it (nothing shrinks, S4).
        One rule among a dozen, half of the time past the renewal: about one step in twenty renews."""
        assert self.model is not None
        left = self.model.renewal - self.model.now
        if past_renewal:
            self.move_clock(left + timedelta(hours=1 + 71 * fraction))
            self.tally[("renewal", "OK")] += 1
        elif left > timedelta(seconds=2):
            self.move_clock(left * fraction)
            self.tally[("mid-term", "OK")] += 1

    # After every step.

    @invariant()
    def server_matches_model(self) -> None:
        if self.model is None:
            return
        summary = self.seats.GetSeatSummary(s.GetSeatSummaryRequest(account_id=self.account_id))
        for pool in summary.pools:
            check_pool_invariants(pool)
            pending_until = pool.removal_effective_time.ToDatetime(tzinfo=UTC) if pool.pending_removal else None
            assert pool.HasField("removal_effective_time") == bool(pool.pending_removal), pool
            if pending_until is not None:
                assert pending_until == self.model.renewal, f"{name(pool.hub, pool.tier)} leaves at {pending_until}"
        shown = {(p.hub, p.tier): pool_view(p) for p in summary.pools}
        assert shown == self.model.summary(), (
            "pools (included, purchased, assigned, available, pending_removal, idle_reclaim_days) differ:\n"
            f"  server {self.readable(shown)}\n  model  {self.readable(self.model.summary())}"
        )
        assert summary.renewal_time.ToDatetime(tzinfo=UTC) == self.model.renewal
        self.check_invoices()
        requests = self.seats.ListSeatRequests(s.ListSeatRequestsRequest(account_id=self.account_id, page_size=1000))
        got_requests = {q.seat_request_id: (q.user_id, q.hub, q.tier, q.state) for q in requests.seat_requests}
        assert got_requests == self.model.requests(), (
            f"seat requests differ:\n  server {got_requests}\n  model  {self.model.requests()}"
        )
        assert list(got_requests) == list(self.model.asks), "the requests are listed oldest first"
        held = self.seats.ListSeatAssignments(s.ListSeatAssignmentsRequest(account_id=self.account_id, page_size=1000))
        got = sorted(map(listed, held.assignments))
        expected = self.model.assignments()
        assert got == expected, (
            "assignments (tier, assign time, last activity) differ:\n"
            f"  server {self.readable_seats(got)}\n  model  {self.readable_seats(expected)}"
        )
        asked = [*sorted(self.model.members), UNKNOWN_USER]
        for hub in (r.HUB_SALES, r.HUB_SERVICE):
            answer = self.seats.CheckSeats(s.CheckSeatsRequest(account_id=self.account_id, hub=hub, user_ids=asked))
            held_tiers = [
                (self.model.members[u].tier(hub) or NO_TIER) if u in self.model.members else NO_TIER for u in asked
            ]
            assert list(answer.tiers) == held_tiers, (
                f"CheckSeats of {name(hub)} differs: {list(answer.tiers)} != {held_tiers}"
            )
        self.check_new_events()

    def check_invoices(self) -> None:
        """One invoice per ended term, in order, and the invoices plus the current term's charges add up
        to every charge the account ever had (read from the store itself)."""
        assert self.model is not None
        billed = self.seats.ListInvoices(s.ListInvoicesRequest(account_id=self.account_id, page_size=1000)).invoices
        ends = [add_months(self.model.term_start, n * TERM_MONTHS) for n in range(1, self.model.terms)]
        assert [i.period_end.ToDatetime(tzinfo=UTC) for i in billed] == ends, f"invoices {billed}"
        current = self.seats.PreviewInvoice(s.PreviewInvoiceRequest(account_id=self.account_id))
        store = self.running.store
        every = store.read(lambda: store.charges_since(self.account_id, datetime(1970, 1, 1, tzinfo=UTC)))
        total = sum(cents(i.total) for i in billed) + cents(current.current_term_total)
        assert total == sum(c.amount_minor for c in every), "the invoices and the current term miss a charge"
        self.tally[("#invoices", "checked")] += 1

    def new_events(self) -> list[resources_pb2.SeatEvent]:
        """The events appended since the checks last read the log."""
        appended = events(self.seats, self.tenant, after=self.seen) if self.tenant is not None else []
        if appended:
            self.seen = appended[-1].sequence
        return appended

    def check_new_events(self) -> None:
        """The log grew by exactly the reclaims and policy changes the model expects of the last step (the
        other events are I3 and I4's business, see teardown), and by nothing after a report of activity."""
        appended = self.new_events()
        got = [event_key(e) for e in appended if event_type(e) in SPECIAL_EVENTS or e.seat_request_id]
        assert got == self.expected_events, f"events appended {got}, the model expects {self.expected_events}"
        assert not (self.no_events and appended), f"a report of activity appended {[event_key(e) for e in appended]}"
        self.expected_events, self.no_events = [], False

    def readable(self, pools: Mapping[tuple[Hub, Tier], tuple[int, ...]]) -> str:
        return ", ".join(f"{name(*key)} {counts}" for key, counts in sorted(pools.items()))

    def readable_seats(self, seats: Sequence[Listed]) -> str:
        return ", ".join(
            f"{self.label(user)}:{name(hub, tier)} given {moment(given)} used {moment(used)}"
            for user, hub, tier, given, used in seats
        )

    def readable_users(self, user_ids: Iterable[str | tuple[str, Hub]]) -> str:
        return "[" + ", ".join(self.label(u if isinstance(u, str) else u[0]) for u in user_ids) + "]"

    def teardown(self) -> None:
        """I3 and I4 over the run's event log (a reclaim counts as the unassign it is): numbered without gaps,
        one seat per user and hub, and its counts add up to the pools."""
        if self.tenant is not None:
            log = replay_log(events(self.seats, self.tenant))
            check_log_leaves_pools(log, pools(self.seats, self.tenant))


def test_the_server_follows_the_model_of_the_rules(running: Running) -> None:
    """Random sequences of seat operations: the server refuses exactly when the model does, with the same
    reason, and shows the model's pools and assignments after every step. The server sweeps only when the
    machine's sweep rule says so (the session's server has no background sweep)."""
    tally: Counter[tuple[str, str]] = Counter()
    run_state_machine_as_test(lambda: SeatMachine(running, tally), settings=MODEL_SETTINGS)  # type: ignore[arg-type]
    steps = sum(n for (kind, _), n in tally.items() if not kind.startswith("#"))
    print(f"{running.backend}: {steps} steps; " + ", ".join(f"{k}={v}" for k, v in sorted(tally.items())))


class WaitingListMachine(SeatMachine):
    """The same machine with the waiting list's rules drawn three times as often: asks approved into full
    pools, and the unassigns, purchases, batches and sweeps that free seats for them. Every other rule
    still runs in between."""

    @rule(
        data=st.data(),
        user=st.one_of(SeatMachine.users, st.just(NEW_USER)),
        buy=st.sampled_from([False, False, False, True]),
        fill=st.booleans(),
    )
    def ask_and_approve_again(self, data: st.DataObject, user: str, buy: bool, fill: bool) -> None:
        self.ask_and_approve(data, user, buy, fill)

    @rule(data=st.data(), user=st.one_of(SeatMachine.users, st.just(NEW_USER)), fill=st.just(True))
    def ask_and_approve_into_a_full_pool(self, data: st.DataObject, user: str, fill: bool) -> None:
        self.ask_and_approve(data, user, False, fill)

    @rule(data=st.data())
    def unassign_again(self, data: st.DataObject) -> None:
        self.unassign(data)

    @rule(data=st.data())
    def queue_then_free_a_seat(self, data: st.DataObject) -> None:
        """A new user's request approved into a full pool (filled first if need be), then the owner
        takes a seat back from a holder of a pool with a waiting list: the oldest waiting request gets it."""
        assert self.model is not None
        self.ask_and_approve(data, NEW_USER, False, True)
        queued = sorted(
            (user_id, hub)
            for user_id, m in self.model.members.items()
            for hub, seat in m.seats.items()
            if self.model.pools[(hub, seat.tier)].waiting
        )
        if queued:
            user, hub = data.draw(st.sampled_from(queued), label="holder")
            self.unassign_step(OWNER, user, hub)

    @rule(data=st.data(), quantity=quantities)
    def purchase_again(self, data: st.DataObject, quantity: int) -> None:
        self.purchase(data, quantity)

    @rule(data=st.data())
    def deny_again(self, data: st.DataObject) -> None:
        self.deny(data)


def test_the_waiting_lists_follow_the_model(running: Running) -> None:
    """The machine above, weighted towards seat requests and the seats that free for them: the oldest
    waiting request gets each freed seat in the call that frees it, and the pools, the requests and the
    events stay the model's."""
    tally: Counter[tuple[str, str]] = Counter()
    run_state_machine_as_test(lambda: WaitingListMachine(running, tally), settings=MODEL_SETTINGS)  # type: ignore[arg-type]
    steps = sum(n for (kind, _), n in tally.items() if not kind.startswith("#"))
    print(f"{running.backend}: {steps} steps; " + ", ".join(f"{k}={v}" for k, v in sorted(tally.items())))
    assert tally[("#waiting list", "granted")] > 0, "no run granted a waiting request: the rules above do not reach it"
