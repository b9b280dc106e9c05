"""seats/plan.py without a server: the file format and its errors, the planner's choices that the
property test does not single out, the request ids, and the example file in examples/."""

from __future__ import annotations

import pytest
from seats.plan import (
    AccountState,
    Batch,
    CancelRemoval,
    Desired,
    FileError,
    Infeasible,
    PoolState,
    Purchase,
    ScheduleRemoval,
    UserState,
    make_plan,
    parse_file,
    render_plan,
    request_id,
)
from seats.v1 import resources_pb2 as r

from tests.conftest import REPO

SALES, SERVICE = int(r.HUB_SALES), int(r.HUB_SERVICE)
FREE, STARTER, PROFESSIONAL = int(r.TIER_FREE), int(r.TIER_STARTER), int(r.TIER_PROFESSIONAL)


def state(*pools: PoolState, users: tuple[UserState, ...] = (), sequence: int = 7) -> AccountState:
    return AccountState("acc_1", sequence, {p.key: p for p in pools}, users)


def test_the_example_file_parses() -> None:
    desired = parse_file((REPO / "examples" / "seats.yaml").read_text(), "examples/seats.yaml")
    assert desired.account is None
    assert [(p.hub, p.tier, p.purchased) for p in desired.pools] == [
        (SALES, PROFESSIONAL, 3),
        (SALES, STARTER, None),
        (SERVICE, STARTER, 0),
    ]
    assert desired.pools[2].holders is None, "holders left out: left as they are"
    assert [h.ref for h in desired.pools[1].holders or ()] == ["eve@acme.test"]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("pools:\n  - hub: sales\n    tier: starter\n    tier: free\n    purchased: 1\n", 4, "given twice"),
        ("pools:\n  - {hub: sales, tier: starter, purchased: 1}\n  - {hub: SALES, tier: STARTER, holders: []}\n", 3,
         "Sales Starter is listed twice (first at line 2)"),
        ("pools:\n  - {hub: sales, tier: starter}\n", 2, "give purchased:, holders: or both"),
        ("pools:\n  - {hub: sales, tier: starter, purchased: 1.5}\n", 2, "must be a whole number"),
        ("pools:\n  - {hub: sales, tier: starter, purchased: true}\n", 2, "must be a whole number"),
        ("pools:\n  - {hub: sales, tier: starter, holders: ann}\n", 2, "holders: must be a list"),
        ("pools:\n  - {hub: sales, tier: starter, holders: [ann]}\n", 2, "an email or a user id"),
        ("account: 12\npools: []\n", 1, "account: must be an account id"),
        ("- hub: sales\n", 1, "must be a mapping"),
    ],
)  # fmt: skip
def test_file_errors_name_their_line(text: str, line: int, message: str) -> None:
    with pytest.raises(FileError) as caught:
        parse_file(text, "f.yaml")
    assert caught.value.line == line, caught.value.where()
    assert message in caught.value.message
    assert caught.value.where().startswith(f"f.yaml, line {line}: ")


def test_an_empty_file_is_an_error_and_an_empty_pool_list_manages_nothing() -> None:
    with pytest.raises(FileError, match="the file is empty"):
        parse_file("# nothing\n")
    plan = make_plan(state(PoolState(SALES, STARTER, 1, 2, 1, 1)), parse_file("pools: []\n", "s.yaml"))
    assert plan.steps == ()
    assert render_plan(plan) == ["No changes. Account acc_1 matches s.yaml."]


def test_grants_into_a_pool_whose_count_is_left_alone_take_pending_seats_and_say_so() -> None:
    users = tuple(UserState(f"usr_{n}", f"{n}@acme.test", {}) for n in "abcd")
    now = state(PoolState(SALES, STARTER, 1, 2, 2, 0), users=users)
    plan = make_plan(now, parse_file("pools:\n  - {hub: sales, tier: starter, holders: [a@acme.test, B@ACME.TEST]}\n"))
    (batch,) = plan.steps
    assert isinstance(batch, Batch)
    assert [(c.user_id, c.kind) for c in batch.changes] == [("usr_a", "assign"), ("usr_b", "assign")]
    assert batch.pending_taken == ((SALES, STARTER, 1),), "no edit billing needed: the grant cancels it (S11)"
    assert any("cancels that removal (S11)" in line for line in render_plan(plan))
    with pytest.raises(Infeasible, match="4 holders need 4 seats, but the pool has 1 included"):
        make_plan(now, parse_file("pools:\n  - {hub: sales, tier: starter, holders: [usr_a, usr_b, usr_c, usr_d]}\n"))


def test_free_tools_seats_cannot_be_bought() -> None:
    now = state(PoolState(SALES, FREE, 2, 0, 0, 0, purchasable=False))
    assert make_plan(now, parse_file("pools:\n  - {hub: sales, tier: free, purchased: 0}\n")).steps == ()
    with pytest.raises(Infeasible, match="Sales Free seats cannot be bought"):
        make_plan(now, parse_file("pools:\n  - {hub: sales, tier: free, purchased: 1}\n"))


def test_counts_cancel_then_buy_and_reductions_wait_for_the_renewal() -> None:
    pool = PoolState(SALES, PROFESSIONAL, 2, 5, 3, 0)  # next term keeps 2
    up = make_plan(state(pool), parse_file("pools:\n  - {hub: sales, tier: professional, purchased: 6}\n"))
    assert up.steps == (CancelRemoval(SALES, PROFESSIONAL, 3), Purchase(SALES, PROFESSIONAL, 1))
    down = make_plan(state(pool), parse_file("pools:\n  - {hub: sales, tier: professional, purchased: 0}\n"))
    assert down.steps == (ScheduleRemoval(SALES, PROFESSIONAL, 2),)


def test_request_ids_follow_the_account_the_actor_the_state_and_the_step() -> None:
    text = "pools:\n  - {hub: sales, tier: professional, purchased: 4}\n"
    pool = PoolState(SALES, PROFESSIONAL, 2, 1, 0, 0)
    plan = make_plan(state(pool), parse_file(text))
    (step,) = plan.steps
    same = request_id(make_plan(state(pool), parse_file(text)), step, "usr_owner")
    assert request_id(plan, step, "usr_owner") == same, "the same step from the same state: the same request"
    assert len(same) == 36 and all(ord(ch) >= 32 for ch in same), "a UUID, well within the service's 128 characters"
    later = make_plan(state(pool, sequence=8), parse_file(text))
    assert request_id(later, later.steps[0], "usr_owner") != same, "a later state: a new request"
    assert request_id(plan, step, "usr_other") != same, "another actor: another request"
    assert request_id(plan, Purchase(SALES, PROFESSIONAL, 2), "usr_owner") != same, "another step"


def test_a_desired_state_naming_no_account_keeps_the_source_for_messages() -> None:
    desired = parse_file("pools: []\n", "team.yaml")
    assert desired == Desired(None, (), "team.yaml", 0)
