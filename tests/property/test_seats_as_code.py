"""Seats as code, by property: the planner of ``seatctl plan``/``apply`` (seats/plan.py) against a
small model of the rules, and against a real server.

The model holds pools (included, purchased, pending removal, purchasable) and each user's tier per
hub. It runs a plan's steps with the server's rules, each step refused as the server would refuse
it: a cancellation of more than is pending, a purchase of seats that cannot be bought, a batch that
needs more seats than the pool holds (a grant takes a free seat, else a seat pending removal,
cancelling that removal: S11), a removal of seats someone holds (S8, I2).

The properties: from any state that keeps I1 and I2, and for any file naming the account's pools and
users, the planner either refuses with a reason, exactly when the file's state cannot be reached
under the rules (an independent reading of the file says which), or its steps run without a refusal
and reach the file: the next term's purchased count (purchased - pending) is the declared one, and
every named user holds the named seat. Planning again from there changes nothing. Against a server
(SQLite, and PostgreSQL when configured), random files applied through the client leave an account
for which the plan is empty and whose pools keep I1 and I2."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from seats import SeatsClient
from seats.plan import (
    AccountState,
    Batch,
    CancelRemoval,
    Desired,
    DesiredPool,
    Holder,
    Infeasible,
    Plan,
    PoolKey,
    PoolState,
    Purchase,
    ScheduleRemoval,
    UserState,
    execute_plan,
    make_plan,
    read_state,
    validate_plan,
)
from seats.v1 import resources_pb2 as r

from tests.conftest import BACKENDS, Running, database_url, served
from tests.toolkit import check_pool_invariants

SALES: int = r.HUB_SALES
SERVICE: int = r.HUB_SERVICE
FREE: int = r.TIER_FREE
PAID_TIERS: tuple[int, ...] = (r.TIER_STARTER, r.TIER_PROFESSIONAL, r.TIER_ENTERPRISE)


# ---- the model --------------------------------------------------------------------------------


class Refused(Exception):
    """A step the rules refuse."""


@dataclass
class ModelPool:
    included: int
    purchased: int
    pending: int
    purchasable: bool


@dataclass
class Model:
    """An account: its pools and each user's seats (user -> hub -> tier)."""

    pools: dict[PoolKey, ModelPool]
    seats: dict[str, dict[int, int]]
    emails: dict[str, str]

    def assigned(self, key: PoolKey) -> int:
        return sum(1 for held in self.seats.values() if held.get(key[0]) == key[1])

    def state(self, sequence: int) -> AccountState:
        pools = {
            key: PoolState(key[0], key[1], p.included, p.purchased, p.pending, self.assigned(key), p.purchasable)
            for key, p in self.pools.items()
        }
        users = tuple(UserState(u, self.emails[u], dict(held)) for u, held in sorted(self.seats.items()))
        return AccountState("acc_model", sequence, pools, users)

    def check_invariants(self) -> None:
        for key, p in self.pools.items():
            assigned = self.assigned(key)
            assert 0 <= assigned <= p.included + p.purchased, f"I1 broken in {key}: {p}, assigned {assigned}"
            assert 0 <= p.pending <= p.purchased - max(0, assigned - p.included), f"I2 broken in {key}: {p}"

    def run(self, plan: Plan) -> None:
        """The plan's steps, with the rules of the server."""
        for step in plan.steps:
            if isinstance(step, Batch):
                self.batch(step)
                continue
            pool = self.pools[(step.hub, step.tier)]
            if isinstance(step, CancelRemoval):
                if not 0 < step.quantity <= pool.pending:
                    raise Refused(f"cancel {step.quantity} of {pool.pending} pending")
                pool.pending -= step.quantity
            elif isinstance(step, Purchase):
                if step.quantity < 1 or not pool.purchasable:
                    raise Refused(f"buy {step.quantity} of a pool that sells none: {pool}")
                pool.purchased += step.quantity
            else:
                assigned = self.assigned((step.hub, step.tier))
                removable = pool.purchased - max(0, assigned - pool.included) - pool.pending
                if not 0 < step.quantity <= removable:
                    raise Refused(f"remove {step.quantity} of {removable} removable (S8)")
                pool.pending += step.quantity
            self.check_invariants()

    def batch(self, step: Batch) -> None:
        """All or nothing, judged on the final state (S17): each pool holds its final holders in
        its seats, a free one first, else one pending removal, cancelling that removal (S11)."""
        seen: set[tuple[str, int]] = set()
        for change in step.changes:
            assert (change.user_id, change.hub) not in seen, "a user and hub appear once per batch"
            seen.add((change.user_id, change.hub))
            assert self.seats[change.user_id].get(change.hub) == change.before, "a change starts from the seat held"
            if change.after is None:
                del self.seats[change.user_id][change.hub]
            else:
                self.seats[change.user_id][change.hub] = change.after
        for key, pool in self.pools.items():
            assigned = self.assigned(key)
            if assigned > pool.included + pool.purchased:
                raise Refused(f"NO_SEAT_AVAILABLE in {key}")
            free = pool.included + pool.purchased - pool.pending
            if assigned > free:
                pool.pending -= assigned - free
        self.check_invariants()


# ---- random accounts and files ----------------------------------------------------------------


@st.composite
def models(draw: st.DrawFn) -> Model:
    """An account keeping I1 and I2: per hub free tools or one to three paid tiers, users holding
    at most one seat per hub, pending removals only of unassigned purchased seats."""
    pools: dict[PoolKey, ModelPool] = {}
    for hub in (SALES, SERVICE):
        if draw(st.booleans()):
            pools[(hub, FREE)] = ModelPool(draw(st.integers(0, 3)), 0, 0, False)
        else:
            paid = draw(st.lists(st.sampled_from(PAID_TIERS), min_size=1, max_size=3, unique=True))
            for tier in paid:
                pools[(hub, tier)] = ModelPool(draw(st.integers(0, 3)), draw(st.integers(0, 4)), 0, True)
    users = [f"usr_{i:02d}" for i in range(draw(st.integers(0, 7)))]
    seats: dict[str, dict[int, int]] = {user: {} for user in users}
    for user in users:
        for hub in (SALES, SERVICE):
            tiers = [tier for (h, tier) in pools if h == hub]
            tier = draw(st.sampled_from([0, *tiers]))
            if not tier:
                continue
            pool = pools[(hub, tier)]
            assigned = sum(1 for held in seats.values() if held.get(hub) == tier)
            if assigned < pool.included + pool.purchased:  # I1: a full pool gives no more seats
                seats[user][hub] = tier
    model = Model(pools, seats, {user: f"{user.removeprefix('usr_')}@acme.test" for user in users})
    for key, pool in pools.items():
        removable = pool.purchased - max(0, model.assigned(key) - pool.included)
        pool.pending = draw(st.integers(0, max(0, removable)))
    model.check_invariants()
    return model


@st.composite
def files(draw: st.DrawFn, model: Model) -> Desired:
    """A file naming some of the account's pools, each with a purchased count or holders or both;
    a user is named at most once per hub, by id or by email in any case."""
    listed = draw(st.lists(st.sampled_from(sorted(model.pools)), unique=True, min_size=1, max_size=len(model.pools)))
    with_holders = {key for key in listed if draw(st.booleans())}
    names: dict[PoolKey, list[Holder]] = {key: [] for key in with_holders}
    for user in sorted(model.seats):
        for hub in (SALES, SERVICE):
            choices = sorted(key for key in with_holders if key[0] == hub)
            key = draw(st.sampled_from([None, *choices])) if choices else None
            if key is None:
                continue
            email = model.emails[user]
            ref = draw(st.sampled_from([user, email, email.upper()]))
            names[key].append(Holder(ref, 0))
    pools = []
    for key in listed:
        counted = key not in with_holders or draw(st.booleans())
        purchased = draw(st.integers(0, 6)) if counted else None
        holders = tuple(names[key]) if key in with_holders else None
        pools.append(DesiredPool(key[0], key[1], purchased, holders, 1))
    return Desired(None, tuple(pools))


def resolve(model: Model, ref: str) -> str:
    return ref if ref.startswith("usr_") else next(u for u, e in model.emails.items() if e == ref.lower())


def declared_seats(model: Model, desired: Desired) -> dict[str, dict[int, int]]:
    """The seats the file asks for, read from the file alone: a named user holds the named pool's
    seat; a holder of a pool listed with holders who is named nowhere in its hub holds none."""
    seats = {user: dict(held) for user, held in model.seats.items()}
    named = {(resolve(model, h.ref), p.hub): p.tier for p in desired.pools for h in p.holders or ()}
    managed = {(p.hub, p.tier) for p in desired.pools if p.holders is not None}
    for user, held in seats.items():
        for hub, tier in list(held.items()):
            if (hub, tier) in managed and (user, hub) not in named:
                del held[hub]
    for (user, hub), tier in named.items():
        seats[user][hub] = tier
    return seats


def reachable(model: Model, desired: Desired) -> bool:
    """Whether the rules can reach the file: every pool holds its holders in included seats plus
    the declared purchased seats (the seats it has when it declares none), and a pool that must
    buy can buy."""
    seats = declared_seats(model, desired)
    holders = Counter((hub, tier) for held in seats.values() for hub, tier in held.items())
    declared = {(p.hub, p.tier): p.purchased for p in desired.pools}
    for key, pool in model.pools.items():
        target = declared.get(key)
        if target is None:
            if holders[key] > pool.included + pool.purchased:
                return False
        elif holders[key] > pool.included + target or (target > pool.purchased and not pool.purchasable):
            return False
    return True


# ---- the planner against the model ------------------------------------------------------------


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_a_plan_reaches_the_file_or_is_refused_exactly_when_the_file_cannot_be_reached(data: st.DataObject) -> None:
    model = data.draw(models(), "account")
    desired = data.draw(files(model), "file")
    possible = reachable(model, desired)
    try:
        plan = make_plan(model.state(1), desired)
    except Infeasible as refusal:
        assert not possible, f"refused a reachable file: {refusal.message}"
        assert refusal.message, "a refusal says why"
        return
    assert possible, "planned a file the rules cannot reach"
    model.run(plan)

    expected = declared_seats(model, desired)
    assert model.seats == expected, "every named user holds the named seat, and only those"
    for pool in desired.pools:
        if pool.purchased is not None:
            now = model.pools[(pool.hub, pool.tier)]
            assert now.purchased - now.pending == pool.purchased, "the next term keeps the declared seats"
    again = make_plan(model.state(2), desired)
    assert again.steps == (), f"planned again from the result: {again.steps}"


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_reductions_wait_for_the_renewal_and_purchases_cancel_removals_first(data: st.DataObject) -> None:
    """S4/S5: a plan never lowers the purchased count (only pending removals grow); S11/S5: it
    buys only when every pending removal of the pool is cancelled first."""
    model = data.draw(models(), "account")
    desired = data.draw(files(model), "file")
    try:
        plan = make_plan(model.state(1), desired)
    except Infeasible:
        return
    before = {key: (p.purchased, p.pending) for key, p in model.pools.items()}
    model.run(plan)
    for key, pool in model.pools.items():
        assert pool.purchased >= before[key][0], "purchased seats never go mid-term (S4)"
    bought = {(s.hub, s.tier) for s in plan.steps if isinstance(s, Purchase)}
    for key in bought:
        assert model.pools[key].pending == 0, "a pool buys only once nothing of it is pending removal"
    kinds = [type(step) for step in plan.steps]
    order = [CancelRemoval, Purchase, Batch, ScheduleRemoval]
    assert kinds == sorted(kinds, key=order.index), f"steps out of order: {kinds}"
    assert kinds.count(Batch) <= 1, "one batch for every seat change (S17)"


# ---- the planner against a server -------------------------------------------------------------


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with served(request.param, database_url(request.param, tmp_path_factory), sweep_interval_seconds=0) as running:
        yield running


SUBSCRIPTIONS = [
    [("sales", "starter"), ("sales", "professional"), ("service", "starter")],
    [("sales", "professional"), ("service", "free")],
    [("sales", "enterprise"), ("service", "starter"), ("service", "professional")],
]


@st.composite
def accounts(draw: st.DrawFn) -> tuple[list[tuple[str, str, int]], list[dict[str, str]], dict[tuple[str, str], int]]:
    """Subscriptions with purchased seats, users with seats given at creation, and removals to
    schedule: what a test account is made of."""
    subs = [
        (hub, tier, 0 if tier == "free" else draw(st.integers(0, 3)))
        for hub, tier in draw(st.sampled_from(SUBSCRIPTIONS))
    ]
    users = []
    for _ in range(draw(st.integers(0, 5))):
        seats = {}
        for hub in ("sales", "service"):
            tiers = [tier for h, tier, _ in subs if h == hub]
            tier = draw(st.sampled_from(["", *tiers]))
            if tier:
                seats[hub] = tier
        users.append(seats)
    removals = {(hub, tier): draw(st.integers(0, 2)) for hub, tier, n in subs if n}
    return subs, users, removals


def pool_of(client: SeatsClient, account_id: str, hub: str, tier: str) -> r.SeatPool:
    key = (r.Hub.Value(f"HUB_{hub.upper()}"), r.Tier.Value(f"TIER_{tier.upper()}"))
    return next(p for p in client.get_seat_summary(account_id).pools if (p.hub, p.tier) == key)


def make_account(
    system: SeatsClient,
    subs: list[tuple[str, str, int]],
    users: list[dict[str, str]],
    removals: dict[tuple[str, str], int],
) -> tuple[SeatsClient, str]:
    """The account on the server, with each user's seat given when a seat is free, and some
    removals scheduled; the owner's client and the account id."""
    account = system.create_account("Acme", f"o-{uuid.uuid4().hex[:8]}@acme.test", subs).account
    owner = system.with_actor(account.owner_user_id)
    for i, seats in enumerate(users):
        user = owner.create_user(account.account_id, f"u{i}@acme.test").user
        for hub, tier in seats.items():
            if pool_of(owner, account.account_id, hub, tier).available > 0:
                owner.assign_seat(account.account_id, user.user_id, hub, tier)
    for (hub, tier), quantity in removals.items():
        pool = pool_of(owner, account.account_id, hub, tier)
        removable = pool.purchased - max(0, pool.assigned - pool.included) - pool.pending_removal
        if min(quantity, removable) > 0:
            owner.schedule_seat_removal(account.account_id, hub, tier, min(quantity, removable))
    return owner, account.account_id


def model_of(state: AccountState) -> Model:
    pools = {
        key: ModelPool(p.included, p.purchased, p.pending_removal, p.purchasable) for key, p in state.pools.items()
    }
    seats = {u.user_id: dict(u.seats) for u in state.users}
    return Model(pools, seats, {u.user_id: u.email for u in state.users})


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_random_files_applied_to_a_server_leave_nothing_to_plan_and_keep_i1_i2(
    server: Running, data: st.DataObject
) -> None:
    with SeatsClient(server.target) as system:
        owner, account_id = make_account(system, *data.draw(accounts(), "account"))
        state = read_state(owner, account_id)
        model = model_of(state)
        desired = replace(data.draw(files(model), "file"), account=account_id)
        try:
            plan = make_plan(state, desired)
        except Infeasible:
            assert not reachable(model, desired), "refused a reachable file"
            assert read_state(owner, account_id).sequence == state.sequence, "a refused plan sends nothing"
            return
        assert reachable(model, desired)
        validate_plan(owner, plan)
        execute_plan(owner, plan, owner.actor)

        after = read_state(owner, account_id)
        assert make_plan(after, desired).steps == (), "the plan after apply is empty"
        for pool in owner.get_seat_summary(account_id).pools:
            check_pool_invariants(pool)
        assert {u.user_id: dict(u.seats) for u in after.users} == declared_seats(model, desired)
