"""Seats as code: ``seatctl plan -f seats.yaml`` and ``seatctl apply -f seats.yaml``.

A file declares, for some pools of one account, how many purchased seats the next term keeps and
who holds the pool's seats. ``plan`` reads the account, compares and prints the steps that would
make the account match; ``apply`` validates those steps and makes them. Only the existing RPCs are
used, through ``SeatsClient``: nothing here needs the server to know about files.

The parts, each usable on its own (the tests use them without a command line):

* ``parse_file``: the file, to a ``Desired`` state, with the file's line in every error;
* ``read_state``: the account, to an ``AccountState`` read at one event sequence;
* ``make_plan``: a pure function, ``AccountState`` + ``Desired`` -> ``Plan`` (a list of steps);
* ``render_plan`` / ``plan_document``: the plan for people, and as JSON;
* ``validate_plan`` / ``execute_plan``: the steps as RPCs, validated first, then made.

Why the steps come in this order (cancel removals, purchases, one batch, removals) and why
every reduction waits for the renewal date (S4, S5): see docs/seats-as-code.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
import yaml
from google.protobuf.message import Message

from . import errors
from .cli import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    PROG,
    Context,
    format_money,
    hub_name,
    message_dict,
    pool_name,
    print_json,
    report_refusal,
)
from .requests import UnknownName, to_hub, to_tier
from .v1 import resources_pb2 as r
from .v1 import seat_service_pb2

if TYPE_CHECKING:
    from .client import SeatsClient

PoolKey = tuple[int, int]
"""A pool: (hub, tier) as enum numbers."""

MAX_BATCH = 1000
"""Changes one BatchUpdateSeatAssignments takes: the plan's seat changes go in one batch (S17),
so a file that changes more seats than this is refused rather than applied in parts."""
MAX_QUANTITY = 10_000
"""Seats one PurchaseSeats, ScheduleSeatRemoval or CancelSeatRemoval moves."""

REQUEST_ID_NAMESPACE = uuid.UUID("5b0d7c1e-3f4a-5e8b-9c2d-7a1f0e6b4d33")
"""The uuid5 namespace of the request ids of plan steps (any fixed UUID: it only keeps these ids
apart from other uuid5 ids)."""

STATE_READS = 5
"""Times ``read_state`` reads the account before giving up on a state that keeps changing."""

PROBE_USER = "seatctl-plan-probe"
"""A made-up user id for CheckSeats, which answers the account's last event sequence."""


# ---- errors ---------------------------------------------------------------------------------


class PlanError(Exception):
    """A problem found before any write, with the file and line it is about (line 0: none)."""

    def __init__(self, message: str, source: str = "", line: int = 0) -> None:
        super().__init__(message)
        self.message, self.source, self.line = message, source, line

    def where(self) -> str:
        """``seats.yaml, line 4: ...``: the message with its place in the file."""
        place = self.source + (f", line {self.line}" if self.line else "")
        return f"{place}: {self.message}" if place else self.message


class FileError(PlanError):
    """The file is wrong: bad YAML, an unknown key, hub, tier, pool or user, a negative count, a
    user named twice in a hub. A usage error (exit 2)."""


class Infeasible(PlanError):
    """The file is well formed but the rules cannot reach it: more holders than the declared seats
    (I1, I2), seats of a tier that cannot be bought, more changes than one call takes. The plan is
    refused (exit 1) before anything is sent."""


# ---- the file -------------------------------------------------------------------------------


class Located(dict[Any, Any]):
    """A YAML mapping with the line it starts on and the line of each key."""

    line: int = 0
    key_lines: dict[Any, int]


class LocatedList(list[Any]):
    """A YAML sequence with the line it starts on and the line of each item."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """``yaml.safe_load``'s loader (plain data only: no Python objects, no code), whose mappings
    and lists also remember their lines, so that an error can name the line, and which refuses a
    key given twice (PyYAML would keep the last one without a word)."""


def _mapping(loader: _LineLoader, node: yaml.MappingNode) -> Located:
    loader.flatten_mapping(node)
    result = Located()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            seen = key in result
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain name", key_node.start_mark
            ) from None
        if seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"the key {key!r} is given twice (first at line {result.key_lines[key]})",
                key_node.start_mark,
            )
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = line
    return result


def _sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _mapping)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _sequence)


@dataclass(frozen=True)
class Holder:
    """A user named in ``holders``: an email (case-insensitive) or a user id, as written."""

    ref: str
    line: int

    @property
    def is_id(self) -> bool:
        return self.ref.startswith("usr_")


@dataclass(frozen=True)
class DesiredPool:
    """One entry of ``pools``: None for ``purchased`` or ``holders`` leaves that part as it is."""

    hub: int
    tier: int
    purchased: int | None
    holders: tuple[Holder, ...] | None
    line: int
    purchased_line: int = 0


@dataclass(frozen=True)
class Desired:
    """The declared state of a file: the account it names, if any, and its pools."""

    account: str | None
    pools: tuple[DesiredPool, ...]
    source: str = "seats.yaml"
    account_line: int = 0


TOP_KEYS = ("account", "pools")
POOL_KEYS = ("hub", "tier", "purchased", "holders")


def parse_file(text: str, source: str = "seats.yaml") -> Desired:
    """The declared state of a seats file; FileError names what is wrong and its line."""
    try:
        document = yaml.load(text, Loader=_LineLoader)  # a SafeLoader: plain data only
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = err.problem or err.context or "not valid YAML"
        raise FileError(f"not valid YAML: {problem}", source, mark.line + 1 if mark else 0) from None
    except yaml.YAMLError as err:
        raise FileError(f"not valid YAML: {err}", source) from None
    if document is None:
        raise FileError("the file is empty: it needs at least `pools:` (see docs/seats-as-code.md)", source)
    if not isinstance(document, Located):
        raise FileError("the file must be a mapping with `pools:` (and optionally `account:`)", source, 1)
    _no_unknown_keys(document, TOP_KEYS, "the file", source)
    account = document.get("account")
    if account is not None and (not isinstance(account, str) or not account.strip()):
        raise FileError("account: must be an account id such as acc_...", source, document.key_lines["account"])
    if "pools" not in document:
        raise FileError("`pools:` is missing: list the pools to manage (`pools: []` for none)", source, document.line)
    entries = document["pools"]
    if entries is None:
        entries = LocatedList()
    if not isinstance(entries, LocatedList):
        raise FileError("pools: must be a list of pools", source, document.key_lines["pools"])
    pools: list[DesiredPool] = []
    seen: dict[PoolKey, int] = {}
    for index, entry in enumerate(entries):
        line = entries.item_lines[index]
        pool = _parse_pool(entry, line, source)
        key = (pool.hub, pool.tier)
        if key in seen:
            raise FileError(f"{_pool_name(key)} is listed twice (first at line {seen[key]})", source, line)
        seen[key] = line
        pools.append(pool)
    return Desired(
        account.strip() if isinstance(account, str) else None,
        tuple(pools),
        source,
        document.key_lines.get("account", 0),
    )


def _no_unknown_keys(mapping: Located, allowed: Sequence[str], what: str, source: str) -> None:
    for key, line in mapping.key_lines.items():
        if key not in allowed:
            raise FileError(f"unknown key {key!r} in {what}: the keys are {', '.join(allowed)}", source, line)


def _parse_pool(entry: Any, line: int, source: str) -> DesiredPool:
    if not isinstance(entry, Located):
        raise FileError("a pool is a mapping: hub, tier, purchased, holders", source, line)
    _no_unknown_keys(entry, POOL_KEYS, "a pool", source)
    for required in ("hub", "tier"):
        if required not in entry:
            raise FileError(f"this pool has no {required}:", source, entry.line)
    hub = _enum(entry, "hub", source, to_hub)
    tier = _enum(entry, "tier", source, to_tier)
    if "purchased" not in entry and "holders" not in entry:
        raise FileError("this pool says nothing to do: give purchased:, holders: or both", source, entry.line)
    purchased: int | None = None
    if "purchased" in entry:
        value = entry["purchased"]
        if isinstance(value, bool) or not isinstance(value, int):
            raise FileError(f"purchased: must be a whole number, not {value!r}", source, entry.key_lines["purchased"])
        if value < 0:
            raise FileError(f"purchased: must be 0 or more, not {value}", source, entry.key_lines["purchased"])
        purchased = value
    holders: tuple[Holder, ...] | None = None
    if "holders" in entry:
        listed = entry["holders"]
        if not isinstance(listed, LocatedList):
            raise FileError(
                "holders: must be a list of emails or user ids (`holders: []` for nobody)",
                source,
                entry.key_lines["holders"],
            )
        found: list[Holder] = []
        for index, ref in enumerate(listed):
            where = listed.item_lines[index]
            if not isinstance(ref, str) or not ref.strip():
                raise FileError(f"a holder is an email or a user id (usr_...), not {ref!r}", source, where)
            text = ref.strip()
            if not text.startswith("usr_") and "@" not in text:
                raise FileError(f"a holder is an email or a user id (usr_...), not {text!r}", source, where)
            found.append(Holder(text, where))
        holders = tuple(found)
    return DesiredPool(hub, tier, purchased, holders, entry.line, entry.key_lines.get("purchased", 0))


def _enum(entry: Located, key: str, source: str, convert: Callable[[str], int]) -> int:
    value = entry[key]
    line = entry.key_lines[key]
    choices = "sales or service" if key == "hub" else "free, starter, professional or enterprise"
    if not isinstance(value, str):
        raise FileError(f"{key}: must be a name ({choices}), not {value!r}", source, line)
    try:
        number = int(convert(value))
    except UnknownName:
        number = 0
    if number == 0:
        raise FileError(f"unknown {key} {value!r}: use {choices}", source, line)
    return number


def read_file(path: str) -> tuple[str, str]:
    """The text of ``-f PATH`` (``-``: standard input) and the name errors call it by."""
    if path == "-":
        return sys.stdin.read(), "standard input"
    return Path(path).read_text(encoding="utf-8"), path


# ---- the account as it is -------------------------------------------------------------------


@dataclass(frozen=True)
class PoolState:
    """A pool as read: its counts, whether its seats can be bought (a price above zero) and its
    etag, which makes each write conditional on the pool the plan was made from."""

    hub: int
    tier: int
    included: int
    purchased: int
    pending_removal: int
    assigned: int
    purchasable: bool = True
    etag: str = ""

    @property
    def key(self) -> PoolKey:
        return (self.hub, self.tier)

    @property
    def next_term(self) -> int:
        """Purchased seats the next term keeps: those not pending removal."""
        return self.purchased - self.pending_removal


@dataclass(frozen=True)
class UserState:
    """A user: its id, email and seats (hub -> tier)."""

    user_id: str
    email: str
    seats: Mapping[int, int]


@dataclass(frozen=True)
class AccountState:
    """An account at one event sequence: its pools, users and renewal date."""

    account_id: str
    sequence: int
    pools: Mapping[PoolKey, PoolState]
    users: tuple[UserState, ...]
    renewal_time: datetime | None = None


def read_state(client: SeatsClient, account_id: str) -> AccountState:
    """The account read at one event sequence (I4): the last sequence, the summary, every user
    with its seats, the last sequence again; read again when a change landed in between, so the
    plan is made from one state, and that state's sequence names it in the request ids."""
    for _ in range(STATE_READS):
        before = client.check_seats(account_id, r.HUB_SALES, [PROBE_USER]).sequence
        summary = client.get_seat_summary(account_id)
        users = list(client.iter_users(account_id, page_size=500))
        after = client.check_seats(account_id, r.HUB_SALES, [PROBE_USER]).sequence
        if before == after:
            break
    else:
        raise errors.ConcurrentChange(
            grpc.StatusCode.ABORTED,
            "CONCURRENT_CHANGE",
            f"account {account_id} changed every time it was read ({STATE_READS} times); try again",
        )
    pools = {
        (int(p.hub), int(p.tier)): PoolState(
            int(p.hub),
            int(p.tier),
            p.included,
            p.purchased,
            p.pending_removal,
            p.assigned,
            purchasable=p.unit_price.units > 0 or p.unit_price.nanos > 0,
            etag=p.etag,
        )
        for p in summary.pools
    }
    people = tuple(UserState(u.user_id, u.email, {int(seat.hub): int(seat.tier) for seat in u.seats}) for u in users)
    renewal = summary.renewal_time.ToDatetime(tzinfo=UTC) if summary.HasField("renewal_time") else None
    return AccountState(account_id, int(after), pools, people, renewal)


# ---- the plan -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CancelRemoval:
    """Keep ``quantity`` seats pending removal (CancelSeatRemoval): they stay for the next term."""

    hub: int
    tier: int
    quantity: int
    action = "cancel_seat_removal"

    def key(self) -> str:
        return f"{self.action} {self.hub} {self.tier} {self.quantity}"


@dataclass(frozen=True)
class Purchase:
    """Buy ``quantity`` seats now (PurchaseSeats), charged pro rata for the rest of the term (S3)."""

    hub: int
    tier: int
    quantity: int
    action = "purchase_seats"

    def key(self) -> str:
        return f"{self.action} {self.hub} {self.tier} {self.quantity}"


@dataclass(frozen=True)
class SeatChange:
    """One user's seat of one hub: from a tier (None: no seat) to a tier (None: unassigned)."""

    user_id: str
    email: str
    hub: int
    before: int | None
    after: int | None

    @property
    def kind(self) -> str:
        if self.before is None:
            return "assign"
        return "unassign" if self.after is None else "move"


@dataclass(frozen=True)
class Batch:
    """Every seat change, in one BatchUpdateSeatAssignments: all or nothing (S17). ``pending_taken``
    names the pools whose grants take seats pending removal, which cancels those removals (S11)."""

    changes: tuple[SeatChange, ...]
    pending_taken: tuple[tuple[int, int, int], ...] = ()
    action = "batch_update_seat_assignments"

    def key(self) -> str:
        return f"{self.action} " + ",".join(f"{c.user_id}:{c.hub}:{c.after or 0}" for c in self.changes)


@dataclass(frozen=True)
class ScheduleRemoval:
    """Schedule ``quantity`` unassigned purchased seats to leave at the renewal date
    (ScheduleSeatRemoval): never mid-term (S4, S5), billed until then (S9)."""

    hub: int
    tier: int
    quantity: int
    action = "schedule_seat_removal"

    def key(self) -> str:
        return f"{self.action} {self.hub} {self.tier} {self.quantity}"


Step = CancelRemoval | Purchase | Batch | ScheduleRemoval
PoolAnswer = (
    seat_service_pb2.CancelSeatRemovalResponse
    | seat_service_pb2.PurchaseSeatsResponse
    | seat_service_pb2.ScheduleSeatRemovalResponse
)


@dataclass(frozen=True)
class Plan:
    """The steps that take the account from ``state`` to the file, in the order they run."""

    state: AccountState
    steps: tuple[Step, ...]
    source: str = "seats.yaml"

    @property
    def changes(self) -> bool:
        return bool(self.steps)

    def count(self, kind: type[CancelRemoval] | type[Purchase] | type[ScheduleRemoval]) -> int:
        return sum(step.quantity for step in self.steps if isinstance(step, kind))

    @property
    def seat_changes(self) -> int:
        return sum(len(step.changes) for step in self.steps if isinstance(step, Batch))


def make_plan(state: AccountState, desired: Desired) -> Plan:
    """The steps from ``state`` to ``desired``: a pure function, no call.

    Holders: every user named in a listed pool gets that pool's seat (a move when the user holds
    another tier of the hub); a holder of a pool listed with ``holders`` who is named nowhere in
    that hub loses the seat. Counts: the declared ``purchased`` is the next term's count
    (purchased - pending removal). Higher: cancel pending removals first, then buy the rest. Lower:
    schedule the difference for removal at the renewal date; that is possible only when the
    holders fit the included and the declared purchased seats (I2: only unassigned purchased seats
    can be pending). FileError for names the account does not have; Infeasible for a declared
    state the rules cannot reach."""
    source = desired.source
    listed: dict[PoolKey, DesiredPool] = {}
    for pool in desired.pools:
        key = (pool.hub, pool.tier)
        if key not in state.pools:
            have = ", ".join(_pool_name(k) for k in sorted(state.pools)) or "none"
            raise FileError(
                f"account {state.account_id} has no {_pool_name(key)} pool (its pools: {have}); "
                "`seatctl accounts upgrade` changes a hub's tier",
                source,
                pool.line,
            )
        listed[key] = pool

    by_id = {user.user_id: user for user in state.users}
    by_email = {user.email.casefold(): user for user in state.users}
    wanted: dict[tuple[str, int], tuple[int, Holder]] = {}
    for pool in desired.pools:
        for holder in pool.holders or ():
            user = by_id.get(holder.ref) if holder.is_id else by_email.get(holder.ref.casefold())
            if user is None:
                what = "user id" if holder.is_id else "email"
                raise FileError(
                    f"no user of account {state.account_id} has the {what} {holder.ref!r} "
                    "(`seatctl users create` makes one)",
                    source,
                    holder.line,
                )
            taken = wanted.get((user.user_id, pool.hub))
            if taken is not None:
                raise FileError(
                    f"{holder.ref} is already a holder in {_hub(pool.hub)} (line {taken[1].line}): "
                    "a user holds at most one seat per hub (I3)",
                    source,
                    holder.line,
                )
            wanted[(user.user_id, pool.hub)] = (pool.tier, holder)

    managed = {key for key, pool in listed.items() if pool.holders is not None}
    changes: list[SeatChange] = []
    for user in state.users:
        for hub, tier in user.seats.items():
            if (hub, tier) in managed and (user.user_id, hub) not in wanted:
                changes.append(SeatChange(user.user_id, user.email, hub, tier, None))
    for (user_id, hub), (tier, _holder) in wanted.items():
        user = by_id[user_id]
        held = user.seats.get(hub)
        if held != tier:
            changes.append(SeatChange(user_id, user.email, hub, held, tier))
    changes.sort(key=lambda c: (c.hub, c.email.casefold(), c.user_id))
    if len(changes) > MAX_BATCH:
        raise Infeasible(
            f"{len(changes)} seat changes: one all-or-nothing batch takes at most {MAX_BATCH}; "
            "split the file and apply it in parts",
            source,
        )

    holders = Counter({key: pool.assigned for key, pool in state.pools.items()})
    for change in changes:
        if change.before is not None:
            holders[(change.hub, change.before)] -= 1
        if change.after is not None:
            holders[(change.hub, change.after)] += 1

    cancels: list[Step] = []
    purchases: list[Step] = []
    removals: list[Step] = []
    pending_taken: list[tuple[int, int, int]] = []
    for key in sorted(state.pools):
        now = state.pools[key]
        declared = listed.get(key)
        need = holders[key]
        target = declared.purchased if declared is not None else None
        line = (declared.purchased_line or declared.line) if declared is not None else 0
        if target is None:
            # The count is left as it is; grants may still take seats pending removal (S11).
            if need > now.included + now.purchased:
                raise Infeasible(
                    f"{_pool_name(key)}: {need} holders need {need} seats, but the pool has {now.included} "
                    f"included + {now.purchased} purchased; declare `purchased: {need - now.included}` "
                    "to buy the rest, or name fewer holders",
                    source,
                    declared.line if declared is not None else 0,
                )
            short = need - (now.included + now.next_term)
            if short > 0:
                pending_taken.append((now.hub, now.tier, short))
            continue
        if need > now.included + target:
            raise Infeasible(
                f"{_pool_name(key)}: {need} holders need {need} seats, but {now.included} included + "
                f"{target} purchased (declared) make {now.included + target}; declare "
                f"`purchased: {need - now.included}` or more, or name fewer holders (I1, I2: assigned "
                "seats cannot be removed)",
                source,
                line,
            )
        if target > now.next_term:
            cancel = min(now.pending_removal, target - now.next_term)
            buy = target - now.next_term - cancel
            if buy and not now.purchasable:
                raise Infeasible(f"{_pool_name(key)} seats cannot be bought (the tier has no seat price)", source, line)
            for quantity, step_type in ((cancel, CancelRemoval), (buy, Purchase)):
                if quantity > MAX_QUANTITY:
                    raise Infeasible(
                        f"{_pool_name(key)}: {quantity} seats at once; the service moves at most {MAX_QUANTITY} a call",
                        source,
                        line,
                    )
                if quantity:
                    (cancels if step_type is CancelRemoval else purchases).append(
                        step_type(now.hub, now.tier, quantity)
                    )
        elif target < now.next_term:
            quantity = now.next_term - target
            if quantity > MAX_QUANTITY:
                raise Infeasible(
                    f"{_pool_name(key)}: {quantity} seats at once; the service moves at most {MAX_QUANTITY} a call",
                    source,
                    line,
                )
            removals.append(ScheduleRemoval(now.hub, now.tier, quantity))

    batch: list[Step] = [Batch(tuple(changes), tuple(pending_taken))] if changes else []
    return Plan(state, (*cancels, *purchases, *batch, *removals), source)


# ---- request ids ----------------------------------------------------------------------------


def request_id(plan: Plan, step: Step, actor: str | None) -> str:
    """The request id (AIP-155) of a step: a uuid5 of the account, the actor, the event sequence
    the plan was read at, and the step. The same step of the same plan is the same request, so a
    retry, or a second apply made from the same state (a rerun after an interruption that changed
    nothing, two applies racing), has its effect once (I5). A later state is a new sequence, so the
    same step planned again after other changes (buy 2 seats again next month) is a new request
    and not the replay of the old one. The actor is in it because the server's request fingerprint
    holds the actor: another actor's call is another request."""
    name = "\n".join((plan.state.account_id, actor or "", str(plan.state.sequence), step.key()))
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, name))


# ---- names and rendering --------------------------------------------------------------------


def _hub(hub: int) -> str:
    return hub_name(hub)


def _pool_name(key: PoolKey) -> str:
    return pool_name(*key)


def _lower(enum_name: Callable[[Any], str], value: int | None, prefix: str) -> str | None:
    if not value:
        return None
    return enum_name(value).removeprefix(prefix).lower()


def _hub_word(hub: int) -> str | None:
    return _lower(r.Hub.Name, hub, "HUB_")


def _tier_word(tier: int | None) -> str | None:
    return _lower(r.Tier.Name, tier, "TIER_")


def _iso(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if when else "-"


def _date(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d") if when else "the renewal date"


def _seats(n: int) -> str:
    return f"{n} seat{'s' if n != 1 else ''}"


def change_line(change: SeatChange) -> str:
    """One seat change for people: ``+``, ``~`` or ``-``, the user, the seat."""
    who = f"{change.email} ({change.user_id})"
    if change.before is None and change.after is not None:
        return f"+ {who} gets a {_pool_name((change.hub, change.after))} seat"
    if change.after is None and change.before is not None:
        return (
            f"- {who} gives back the {_pool_name((change.hub, change.before))} seat "
            "(it stays in the pool, billed until the renewal, S18)"
        )
    assert change.before is not None and change.after is not None
    return f"~ {who} moves from {_pool_name((change.hub, change.before))} to {_pool_name((change.hub, change.after))}"


def step_lines(step: Step, renewal: datetime | None) -> list[str]:
    """A step for people, in the plan's ``+ ~ -`` notation."""
    if isinstance(step, CancelRemoval):
        return [
            f"~ {_pool_name((step.hub, step.tier))}: cancel the removal of {_seats(step.quantity)} pending for "
            f"{_iso(renewal)}: they stay for the next term (S5)"
        ]
    if isinstance(step, Purchase):
        return [
            f"+ {_pool_name((step.hub, step.tier))}: buy {_seats(step.quantity)} now, charged pro rata for the rest "
            "of the term (S3)"
        ]
    if isinstance(step, ScheduleRemoval):
        return [
            f"- {_pool_name((step.hub, step.tier))}: remove {_seats(step.quantity)} at the renewal date "
            f"{_iso(renewal)}, not before; billed until then (S4, S5, S9)"
        ]
    lines = [f"~ seats: {len(step.changes)} change{'s' if len(step.changes) != 1 else ''}, all or nothing (S17)"]
    lines += [f"    {change_line(change)}" for change in step.changes]
    lines += [
        f"    ~ {_pool_name((hub, tier))}: the grants take {_seats(n)} pending removal, which cancels "
        "that removal (S11)"
        for hub, tier, n in step.pending_taken
    ]
    return lines


def summary_line(plan: Plan) -> str:
    """``Plan: 2 to buy, 1 to remove at 2027-01-01, 3 seat changes.``"""
    parts = [f"{plan.count(Purchase)} to buy"]
    if plan.count(CancelRemoval):
        parts.append(f"{plan.count(CancelRemoval)} kept from removal")
    parts.append(f"{plan.count(ScheduleRemoval)} to remove at {_date(plan.state.renewal_time)}")
    changes = plan.seat_changes
    parts.append(f"{changes} seat change{'s' if changes != 1 else ''}")
    return "Plan: " + ", ".join(parts) + "."


def applied_line(plan: Plan) -> str:
    """``Apply complete: 2 bought, 1 to remove at 2027-01-01, 3 seat changes.``"""
    parts = [f"{plan.count(Purchase)} bought"]
    if plan.count(CancelRemoval):
        parts.append(f"{plan.count(CancelRemoval)} kept from removal")
    parts.append(f"{plan.count(ScheduleRemoval)} to remove at {_date(plan.state.renewal_time)}")
    changes = plan.seat_changes
    parts.append(f"{changes} seat change{'s' if changes != 1 else ''}")
    return "Apply complete: " + ", ".join(parts) + "."


def no_changes_line(plan: Plan) -> str:
    return f"No changes. Account {plan.state.account_id} matches {plan.source}."


def render_plan(plan: Plan) -> list[str]:
    """The plan for people, like a Terraform plan: the steps in the order apply makes them, then
    the summary line; or the one line saying nothing is to change."""
    if not plan.changes:
        return [no_changes_line(plan)]
    state = plan.state
    lines = [
        f"Account {state.account_id}, as of event {state.sequence}; the term renews at {_iso(state.renewal_time)}.",
        f"To match {plan.source}, seatctl apply would, in this order:",
        "",
    ]
    for step in plan.steps:
        lines += [f"  {line}" for line in step_lines(step, state.renewal_time)]
    return [*lines, "", summary_line(plan)]


def step_document(plan: Plan, step: Step, actor: str | None) -> dict[str, Any]:
    """A step as JSON: the RPC it makes (``action``), what it changes and its request id."""
    document: dict[str, Any] = {"action": step.action}
    if isinstance(step, Batch):
        document["changes"] = [
            {
                "user_id": c.user_id,
                "email": c.email,
                "hub": _hub_word(c.hub),
                "from_tier": _tier_word(c.before),
                "to_tier": _tier_word(c.after),
                "kind": c.kind,
            }
            for c in step.changes
        ]
        document["pending_taken"] = [
            {"hub": _hub_word(hub), "tier": _tier_word(tier), "quantity": n} for hub, tier, n in step.pending_taken
        ]
    else:
        document.update(hub=_hub_word(step.hub), tier=_tier_word(step.tier), quantity=step.quantity)
        if isinstance(step, ScheduleRemoval):
            document["effective_time"] = _iso(plan.state.renewal_time)
    document["request_id"] = request_id(plan, step, actor)
    return document


def plan_document(plan: Plan, actor: str | None) -> dict[str, Any]:
    """The plan as one JSON object (``--json``)."""
    return {
        "account_id": plan.state.account_id,
        "file": plan.source,
        "sequence": plan.state.sequence,
        "renewal_time": _iso(plan.state.renewal_time),
        "changes": plan.changes,
        "steps": [step_document(plan, step, actor) for step in plan.steps],
        "summary": {
            "to_buy": plan.count(Purchase),
            "removals_to_cancel": plan.count(CancelRemoval),
            "to_remove": plan.count(ScheduleRemoval),
            "seat_changes": plan.seat_changes,
        },
    }


# ---- validating and applying ----------------------------------------------------------------


@dataclass
class StepFailed(Exception):
    """A step the service refused: which one (1-based), of how many, how many were made before it
    (0 while validating: nothing was changed), and the refusal."""

    index: int
    total: int
    done: int
    step: Step
    error: errors.SeatsError
    validating: bool = False


def step_title(step: Step) -> str:
    """A step in a few words, for progress and failure lines."""
    if isinstance(step, Batch):
        return f"{len(step.changes)} seat change{'s' if len(step.changes) != 1 else ''}"
    pool = _pool_name((step.hub, step.tier))
    if isinstance(step, CancelRemoval):
        return f"keep {_seats(step.quantity)} of {pool} from removal"
    if isinstance(step, Purchase):
        return f"buy {_seats(step.quantity)} of {pool}"
    return f"remove {_seats(step.quantity)} of {pool} at the renewal"


def _reason_pool(err: errors.SeatsError) -> PoolKey | None:
    hub, tier = err.metadata.get("hub", ""), err.metadata.get("tier", "")
    try:
        return (int(to_hub(hub)), int(to_tier(tier))) if hub and tier else None
    except UnknownName:
        return None


def validate_plan(client: SeatsClient, plan: Plan) -> None:
    """Asks the service about every step before any is made, with validate_only where the RPC
    has it, so that a permission, a stale pool or a rule stops the apply before it changes
    anything. Purchases: PurchaseSeats(validate_only) with the pool's etag as read. The batch:
    BatchUpdateSeatAssignments(validate_only), judged on today's seats: a NO_SEAT_AVAILABLE for a
    pool the plan buys seats for is expected (the seats come first) and the planner has counted
    them. Cancel and schedule have no validate_only: the edit billing permission they need (S7)
    is asked with a validate-only purchase of one seat of the pool, which needs the same
    permission and changes nothing; their counts are the planner's, from the same state.
    Raises StepFailed."""
    account = plan.state.account_id
    buying = {(s.hub, s.tier) for s in plan.steps if isinstance(s, Purchase)}
    probed = False
    total = len(plan.steps)
    for index, step in enumerate(plan.steps, start=1):
        try:
            if isinstance(step, Purchase):
                etag = plan.state.pools[(step.hub, step.tier)].etag
                client.purchase_seats(account, step.hub, step.tier, step.quantity, validate_only=True, etag=etag)
                probed = True
            elif isinstance(step, Batch):
                try:
                    client.batch_update_seat_assignments(account, _batch_changes(step), validate_only=True)
                except errors.NoSeatAvailable as err:
                    if _reason_pool(err) not in buying:
                        raise
            elif not probed:
                etag = plan.state.pools[(step.hub, step.tier)].etag
                # A refused purchase (a seat limit) is not this step's business: only the permission was asked.
                with contextlib.suppress(errors.FailedPrecondition):
                    client.purchase_seats(account, step.hub, step.tier, 1, validate_only=True, etag=etag)
                probed = True
        except errors.SeatsError as err:
            raise StepFailed(index, total, 0, step, err, validating=True) from None


def _batch_changes(step: Batch) -> list[tuple[str, int, int | None]]:
    return [(c.user_id, c.hub, c.after) for c in step.changes]


def execute_plan(
    client: SeatsClient,
    plan: Plan,
    actor: str | None,
    *,
    steps: Iterable[Step] | None = None,
    progress: Callable[[int, Step, Message], None] | None = None,
) -> list[Message]:
    """Makes the steps (all of the plan's by default, in its order) under their request ids, each
    pool write conditional on the pool's etag (as read, then as the previous step left it):
    a pool someone changed since the plan stops the apply with ETAG_MISMATCH rather than acting
    on a stale count. Returns the responses; raises StepFailed."""
    account = plan.state.account_id
    etags = {key: pool.etag for key, pool in plan.state.pools.items()}
    chosen = list(plan.steps if steps is None else steps)
    responses: list[Message] = []
    for index, step in enumerate(chosen, start=1):
        rid = request_id(plan, step, actor)
        response: Message
        try:
            if isinstance(step, Batch):
                batch = client.batch_update_seat_assignments(account, _batch_changes(step), request_id=rid)
                etags.update({(int(p.hub), int(p.tier)): p.etag for p in batch.pools})
                response = batch
            else:
                key = (step.hub, step.tier)
                answer: PoolAnswer
                if isinstance(step, CancelRemoval):
                    answer = client.cancel_seat_removal(
                        account, step.hub, step.tier, step.quantity, etag=etags[key], request_id=rid
                    )
                elif isinstance(step, Purchase):
                    answer = client.purchase_seats(
                        account, step.hub, step.tier, step.quantity, etag=etags[key], request_id=rid
                    )
                else:
                    answer = client.schedule_seat_removal(
                        account, step.hub, step.tier, step.quantity, etag=etags[key], request_id=rid
                    )
                etags[key] = answer.pool.etag
                response = answer
        except errors.SeatsError as err:
            raise StepFailed(index, len(chosen), index - 1, step, err) from None
        responses.append(response)
        if progress is not None:
            progress(index, step, response)
    return responses


# ---- the commands ---------------------------------------------------------------------------


@dataclass
class Prepared:
    """What both commands start from: the client acting as the actor, and the plan."""

    client: SeatsClient
    actor: str | None
    plan: Plan
    extra: dict[str, Any] = field(default_factory=dict)


def _actor(args: argparse.Namespace) -> str | None:
    """--actor, else SEATS_ACTOR; ``''`` means a trusted system call, as for the other commands."""
    actor: str | None = args.actor
    if actor is None:
        actor = os.environ.get("SEATS_ACTOR")
    return actor or None


def _prepare(ctx: Context) -> Prepared:
    """Reads the file and the account and makes the plan. The account is the file's ``account:``,
    else --account / SEATS_ACCOUNT; when both name one they must agree (a usage error otherwise),
    since applying a file to another account than the one it was written for would unassign
    that account's users."""
    args = ctx.args
    parser: argparse.ArgumentParser = args.command_parser
    try:
        text, source = read_file(args.file)
    except OSError as err:
        parser.error(f"cannot read -f {args.file}: {err.strerror or err}")
    try:
        desired = parse_file(text, source)
    except FileError as err:
        parser.error(err.where())
    flag = getattr(args, "account", None) or os.environ.get("SEATS_ACCOUNT", "")
    if desired.account and flag and desired.account != flag:
        where = "--account" if getattr(args, "account", None) else "SEATS_ACCOUNT"
        parser.error(
            f"{source}, line {desired.account_line}: the file is for account {desired.account}, but {where} "
            f"names {flag}; make them agree (or leave one out)"
        )
    account = desired.account or flag
    if not account:
        parser.error(f"no account: give `account:` in {source}, --account, or SEATS_ACCOUNT")
    actor = _actor(args)
    client = ctx.client.with_actor(actor)
    state = read_state(client, account)
    try:
        plan = make_plan(state, desired)
    except FileError as err:
        parser.error(err.where())
    return Prepared(client, actor, plan)


def _print(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


def _refuse_plan(err: Infeasible, ctx: Context) -> int:
    print(f"{PROG}: PLAN_IMPOSSIBLE: {err.where()}", file=sys.stderr)
    if ctx.as_json:
        print_json({"error": {"reason": "PLAN_IMPOSSIBLE", "message": err.message, "line": err.line}})
    return EXIT_REFUSED


def run_plan(ctx: Context) -> int:
    """``seatctl plan``: prints the plan; exit 0 (with --detailed-exitcode: 0 nothing to change,
    2 changes)."""
    try:
        prepared = _prepare(ctx)
    except Infeasible as err:
        return _refuse_plan(err, ctx)
    plan = prepared.plan
    if ctx.as_json:
        print_json(plan_document(plan, prepared.actor))
    else:
        _print(render_plan(plan))
        if plan.changes:
            print(f"\nseatctl apply -f {ctx.args.file} makes these changes.")
    return EXIT_USAGE if ctx.args.detailed_exitcode and plan.changes else EXIT_OK


def _failed(failure: StepFailed, ctx: Context) -> int:
    """A refused step: one line on what was done and what to do, then the refusal as seatctl
    reports every refusal (exit 1, or 3 when the service could not be reached)."""
    what = f"step {failure.index} of {failure.total} ({step_title(failure.step)})"
    if failure.validating:
        line = f"{PROG}: apply: the service refused {what} while validating; nothing was changed"
    else:
        line = (
            f"{PROG}: apply: stopped at {what}; {failure.done} step(s) before it were made. "
            f"`seatctl plan -f {ctx.args.file}` shows what is left"
        )
    print(line, file=sys.stderr)
    return report_refusal(failure.error, ctx)


def run_apply(ctx: Context) -> int:
    """``seatctl apply``: prints the plan, validates every step, then makes them in order."""
    try:
        prepared = _prepare(ctx)
    except Infeasible as err:
        return _refuse_plan(err, ctx)
    plan, client, actor = prepared.plan, prepared.client, prepared.actor
    if not plan.changes:
        if ctx.as_json:
            print_json({"plan": plan_document(plan, actor), "applied": []})
        else:
            print(no_changes_line(plan))
        return EXIT_OK
    if not ctx.as_json:
        _print(render_plan(plan))
        print()

    def progress(index: int, step: Step, response: Message) -> None:
        if ctx.as_json:
            return
        done = f"  done {index}/{len(plan.steps)}: {step_title(step)}"
        charge = getattr(response, "charge", None)
        if isinstance(step, Purchase) and charge is not None and response.HasField("charge"):
            done += f", charged {format_money(charge.amount)}"
        print(done, flush=True)

    try:
        validate_plan(client, plan)
        responses = execute_plan(client, plan, actor, progress=progress)
    except StepFailed as failure:
        return _failed(failure, ctx)
    if ctx.as_json:
        print_json(
            {
                "plan": plan_document(plan, actor),
                "applied": [
                    {"action": step.action, "response": message_dict(response)}
                    for step, response in zip(plan.steps, responses, strict=True)
                ],
            }
        )
    else:
        print("\n" + applied_line(plan))
    return EXIT_OK
