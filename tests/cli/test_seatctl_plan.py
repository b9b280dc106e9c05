"""Seats as code from the shell: ``seatctl plan -f FILE`` and ``seatctl apply -f FILE``, the
installed console script in a process of its own against an in-process server, on SQLite and on
PostgreSQL. The server's clock stands at 2026-01-01, so a 12-month account renews at
2027-01-01T00:00:00Z, the date every reduction waits for (S4, S5)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from seats import SeatsClient
from seats.plan import Batch, CancelRemoval, Purchase, execute_plan, make_plan, parse_file, read_state

from tests.cli.test_seatctl import Seatctl, run
from tests.conftest import REPO, Running

RENEWAL = "2027-01-01T00:00:00Z"


@pytest.fixture
def acme(server: Running) -> Seatctl:
    """Sales Starter (1 included), Sales Professional (2 included + 1 purchased), Service Starter (1)."""
    return Seatctl(server.target).create_account("sales:starter", "sales:professional:1", "service:starter")


@pytest.fixture
def team(acme: Seatctl) -> dict[str, str]:
    """Users without seats, by name: their emails are NAME-xxxx@acme.test (``email(team, name)``)."""
    return {name: acme.new_user() for name in ("ann", "bob", "cy")}


def email_of(acme: Seatctl, user_id: str) -> str:
    return str(acme.json("users", "show", "--user", user_id)["email"])


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def last_sequence(acme: Seatctl) -> int:
    """The account's last event sequence (I4): every write appends one or more events."""
    sequences = acme.ok("events", "tail", "-q").split()
    return int(sequences[-1])


def event_types(acme: Seatctl, after: int) -> list[str]:
    done = acme.ok("--json", "events", "tail", "--after", str(after))
    return [json.loads(line)["type"].removeprefix("SEAT_EVENT_TYPE_") for line in done.splitlines()]


def pool(acme: Seatctl, hub: str, tier: str) -> dict[str, Any]:
    pools = acme.json("seats", "summary")["pools"]
    found = [p for p in pools if p["hub"] == f"HUB_{hub.upper()}" and p["tier"] == f"TIER_{tier.upper()}"]
    assert len(found) == 1, pools
    return dict(found[0])


def holders(acme: Seatctl, hub: str, tier: str) -> set[str]:
    seats = acme.json("seats", "list", "--hub", hub, "--tier", tier)["assignments"]
    return {seat["user_id"] for seat in seats}


def usage_error(acme: Seatctl, *args: str) -> str:
    done = acme.run(*args)
    assert done.returncode == 2, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stdout}{done.stderr}"
    assert "usage: seatctl" in done.stderr
    return done.stderr


# ---- plan and apply ---------------------------------------------------------------------------


def test_plan_on_a_fresh_account_then_apply_then_a_second_apply_changes_nothing(
    acme: Seatctl, team: dict[str, str], tmp_path: Path
) -> None:
    ann, bob = email_of(acme, team["ann"]), email_of(acme, team["bob"])
    seats_file = write(
        tmp_path / "seats.yaml",
        f"""pools:
  - hub: sales
    tier: professional
    purchased: 3
    holders: [{ann.upper()}, {team["bob"]}, {acme.owner}]
""",
    )
    before = last_sequence(acme)
    plan = acme.ok("plan", "-f", seats_file)
    assert f"Account {acme.account}, as of event {before}; the term renews at {RENEWAL}." in plan
    assert "+ Sales Professional: buy 2 seats now, charged pro rata for the rest of the term (S3)" in plan
    assert f"+ {ann} ({team['ann']}) gets a Sales Professional seat" in plan
    assert f"+ {bob} ({team['bob']}) gets a Sales Professional seat" in plan
    assert "Plan: 2 to buy, 0 to remove at 2027-01-01, 3 seat changes." in plan
    assert last_sequence(acme) == before, "plan changes nothing"

    applied = acme.ok("apply", "-f", seats_file)
    assert "done 1/2: buy 2 seats of Sales Professional, charged USD " in applied
    assert "done 2/2: 3 seat changes" in applied
    assert applied.rstrip().endswith("Apply complete: 2 bought, 0 to remove at 2027-01-01, 3 seat changes.")
    professional = pool(acme, "sales", "professional")
    assert (professional["purchased"], professional["assigned"], professional["pending_removal"]) == (3, 3, 0)
    assert holders(acme, "sales", "professional") == {team["ann"], team["bob"], acme.owner}
    assert event_types(acme, before) == ["SEATS_PURCHASED", *["SEAT_ASSIGNED"] * 3]

    settled = last_sequence(acme)
    again = acme.run("apply", "-f", seats_file)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"No changes. Account {acme.account} matches {seats_file}.\n"
    assert last_sequence(acme) == settled, "an apply with nothing to do appends no event"
    assert acme.ok("plan", "-f", seats_file) == f"No changes. Account {acme.account} matches {seats_file}.\n"


def test_drift_after_a_manual_change_shows_in_the_plan_and_in_the_detailed_exit_code(
    acme: Seatctl, team: dict[str, str], tmp_path: Path
) -> None:
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - {{hub: sales, tier: professional, purchased: 1, holders: [{team['ann']}]}}\n",
    )
    acme.ok("apply", "-f", seats_file)
    quiet = acme.run("plan", "-f", seats_file, "--detailed-exitcode")
    assert quiet.returncode == 0, quiet.stderr

    acme.ok("seats", "unassign", "--user", team["ann"], "--hub", "sales")
    acme.ok("seats", "assign", "--user", team["bob"], "--hub", "sales", "--tier", "professional")
    acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    drifted = acme.run("plan", "-f", seats_file, "--detailed-exitcode")
    assert drifted.returncode == 2, drifted.stderr
    ann, bob = email_of(acme, team["ann"]), email_of(acme, team["bob"])
    assert f"+ {ann} ({team['ann']}) gets a Sales Professional seat" in drifted.stdout
    assert f"- {bob} ({team['bob']}) gives back the Sales Professional seat" in drifted.stdout
    assert f"- Sales Professional: remove 2 seats at the renewal date {RENEWAL}, not before" in drifted.stdout
    assert "Plan: 0 to buy, 2 to remove at 2027-01-01, 2 seat changes." in drifted.stdout

    acme.ok("apply", "-f", seats_file)
    assert acme.run("plan", "-f", seats_file, "--detailed-exitcode").returncode == 0


def test_s4_a_reduction_is_scheduled_for_the_renewal_not_made_mid_term(acme: Seatctl, tmp_path: Path) -> None:
    acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "3")
    seats_file = write(tmp_path / "seats.yaml", "pools:\n  - hub: sales\n    tier: professional\n    purchased: 1\n")
    plan = acme.ok("plan", "-f", seats_file)
    assert f"- Sales Professional: remove 3 seats at the renewal date {RENEWAL}, not before" in plan
    assert "Plan: 0 to buy, 3 to remove at 2027-01-01, 0 seat changes." in plan

    acme.ok("apply", "-f", seats_file)
    professional = pool(acme, "sales", "professional")
    assert professional["purchased"] == 4, "the seats stay, and are billed, until the renewal (S4, S9)"
    assert professional["pending_removal"] == 3
    assert professional["removal_effective_time"] == RENEWAL


def test_an_increase_cancels_pending_removals_before_buying(acme: Seatctl, tmp_path: Path) -> None:
    acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    acme.ok("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    seats_file = write(tmp_path / "seats.yaml", "pools:\n  - {hub: sales, tier: professional, purchased: 4}\n")
    plan = acme.ok("plan", "-f", seats_file)
    cancel = plan.index("~ Sales Professional: cancel the removal of 2 seats pending for")
    buy = plan.index("+ Sales Professional: buy 1 seat now")
    assert cancel < buy
    assert "Plan: 1 to buy, 2 kept from removal, 0 to remove at 2027-01-01, 0 seat changes." in plan

    before = last_sequence(acme)
    acme.ok("apply", "-f", seats_file)
    assert event_types(acme, before) == ["SEAT_REMOVAL_CANCELLED", "SEATS_PURCHASED"]
    professional = pool(acme, "sales", "professional")
    assert (professional["purchased"], professional["pending_removal"]) == (4, 0)


def test_a_holder_named_in_another_tier_of_the_hub_moves(acme: Seatctl, team: dict[str, str], tmp_path: Path) -> None:
    acme.ok("seats", "assign", "--user", team["ann"], "--hub", "sales", "--tier", "starter")
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - hub: sales\n    tier: professional\n    holders: [{email_of(acme, team['ann'])}]\n",
    )
    plan = acme.ok("plan", "-f", seats_file)
    assert f"({team['ann']}) moves from Sales Starter to Sales Professional" in plan
    assert "Plan: 0 to buy, 0 to remove at 2027-01-01, 1 seat change." in plan

    acme.ok("apply", "-f", seats_file)
    assert holders(acme, "sales", "professional") == {team["ann"]}
    assert holders(acme, "sales", "starter") == set()
    assert acme.ok("plan", "-f", seats_file).startswith("No changes.")


def test_holders_the_file_does_not_name_are_unassigned_and_unlisted_pools_left_alone(
    acme: Seatctl, team: dict[str, str], tmp_path: Path
) -> None:
    for name in ("ann", "bob"):
        acme.ok("seats", "assign", "--user", team[name], "--hub", "sales", "--tier", "professional")
    acme.ok("seats", "assign", "--user", team["cy"], "--hub", "service", "--tier", "starter")
    seats_file = write(
        tmp_path / "seats.yaml", f"pools:\n  - {{hub: sales, tier: professional, holders: [{team['ann']}]}}\n"
    )
    plan = acme.ok("plan", "-f", seats_file)
    assert f"({team['bob']}) gives back the Sales Professional seat" in plan
    assert team["cy"] not in plan, "Service Starter is not in the file"

    acme.ok("apply", "-f", seats_file)
    assert holders(acme, "sales", "professional") == {team["ann"]}
    assert holders(acme, "service", "starter") == {team["cy"]}
    professional = pool(acme, "sales", "professional")
    assert (professional["purchased"], professional["pending_removal"]) == (1, 0), "no count was declared"


# ---- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pools:\n  - hub: marketing\n    tier: starter\n    purchased: 1\n", "line 2: unknown hub 'marketing'"),
        ("pools:\n  - hub: sales\n    tier: gold\n    purchased: 1\n", "line 3: unknown tier 'gold'"),
        ("pools:\n  - hub: sales\n    tier: professional\n    purchased: -1\n", "line 4: purchased: must be 0 or more"),
        ("pools:\n  - hub: sales\n    tier: starter\n    seats: 2\n", "line 4: unknown key 'seats' in a pool"),
        ("pool:\n  - hub: sales\n", "line 1: unknown key 'pool' in the file"),
        ("pools:\n  - hub: sales\n    tier: starter\n    holders: [nobody@acme.test]\n", "line 4: no user of account"),
        ("pools: [\n", "not valid YAML"),
        ("pools:\n  - {hub: sales, tier: enterprise, purchased: 1}\n", "has no Sales Enterprise pool"),
    ],
)
def test_a_bad_file_is_a_usage_error_naming_its_line(acme: Seatctl, tmp_path: Path, text: str, message: str) -> None:
    seats_file = write(tmp_path / "seats.yaml", text)
    before = last_sequence(acme)
    for command in ("plan", "apply"):
        stderr = usage_error(acme, command, "-f", seats_file)
        assert f"{seats_file}, " in stderr and message in stderr, stderr
    assert last_sequence(acme) == before


def test_a_user_named_twice_in_a_hub_is_a_usage_error(acme: Seatctl, team: dict[str, str], tmp_path: Path) -> None:
    ann = email_of(acme, team["ann"])
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - {{hub: sales, tier: starter, holders: [{ann}]}}\n"
        f"  - {{hub: sales, tier: professional, holders: [{team['ann']}]}}\n",
    )
    stderr = usage_error(acme, "plan", "-f", seats_file)
    assert "line 3: " in stderr and "already a holder in Sales (line 2)" in stderr, stderr


def test_the_account_of_the_file_and_of_the_flag_must_agree(acme: Seatctl, server: Running, tmp_path: Path) -> None:
    other = Seatctl(server.target).create_account("sales:starter")
    seats_file = write(tmp_path / "seats.yaml", f"account: {other.account}\npools: []\n")
    stderr = usage_error(acme, "plan", "-f", seats_file)  # SEATS_ACCOUNT names acme's account
    assert f"line 1: the file is for account {other.account}, but SEATS_ACCOUNT names {acme.account}" in stderr
    done = run("plan", "-f", seats_file, env=other.env() | {"SEATS_ACCOUNT": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"No changes. Account {other.account} matches {seats_file}.\n"


def test_more_holders_than_the_declared_seats_is_refused_before_any_call(
    acme: Seatctl, team: dict[str, str], tmp_path: Path
) -> None:
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - hub: sales\n    tier: professional\n    purchased: 0\n"
        f"    holders: [{team['ann']}, {team['bob']}, {team['cy']}]\n",
    )
    before = last_sequence(acme)
    line = acme.refused("apply", "-f", seats_file)
    assert line.startswith(
        f"seatctl: PLAN_IMPOSSIBLE: {seats_file}, line 4: Sales Professional: 3 holders need 3 seats"
    )
    assert "declare `purchased: 1` or more" in line
    assert last_sequence(acme) == before


def test_an_actor_without_edit_billing_is_refused_while_validating_and_nothing_changes(
    acme: Seatctl, team: dict[str, str], tmp_path: Path
) -> None:
    clerk = acme.new_user("--account-access")
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - {{hub: sales, tier: professional, purchased: 0, holders: [{team['ann']}]}}\n",
    )
    before = last_sequence(acme)
    done = acme.run("apply", "-f", seats_file, actor=clerk)
    assert done.returncode == 1, done.stderr
    first, second = done.stderr.splitlines()
    assert first == (
        "seatctl: apply: the service refused step 2 of 2 (remove 1 seat of Sales Professional at the renewal) "
        "while validating; nothing was changed"
    )
    assert second.startswith("seatctl: PERMISSION_MISSING: ")
    assert last_sequence(acme) == before, "the batch, which the clerk may make, was not made either"


# ---- JSON -------------------------------------------------------------------------------------


def test_json_plan_and_apply(acme: Seatctl, team: dict[str, str], tmp_path: Path) -> None:
    acme.ok("seats", "assign", "--user", team["bob"], "--hub", "sales", "--tier", "starter")
    seats_file = write(
        tmp_path / "seats.yaml",
        f"pools:\n  - {{hub: sales, tier: professional, purchased: 2, holders: [{team['ann']}, {team['bob']}]}}\n",
    )
    plan = acme.json("plan", "-f", seats_file)
    assert plan["account_id"] == acme.account and plan["file"] == seats_file and plan["changes"] is True
    assert plan["renewal_time"] == RENEWAL
    assert plan["summary"] == {"to_buy": 1, "removals_to_cancel": 0, "to_remove": 0, "seat_changes": 2}
    buy, batch = plan["steps"]
    assert (buy["action"], buy["hub"], buy["tier"], buy["quantity"]) == ("purchase_seats", "sales", "professional", 1)
    assert batch["action"] == "batch_update_seat_assignments"
    assert {(c["user_id"], c["from_tier"], c["to_tier"], c["kind"]) for c in batch["changes"]} == {
        (team["ann"], None, "professional", "assign"),
        (team["bob"], "starter", "professional", "move"),
    }
    assert re.fullmatch(r"[0-9a-f-]{36}", buy["request_id"]) and buy["request_id"] != batch["request_id"]
    assert acme.json("plan", "-f", seats_file) == plan, "the same state gives the same plan and request ids"

    applied = acme.json("apply", "-f", seats_file)
    assert applied["plan"] == plan
    assert [step["action"] for step in applied["applied"]] == ["purchase_seats", "batch_update_seat_assignments"]
    assert applied["applied"][0]["response"]["pool"]["purchased"] == 2
    assert acme.json("apply", "-f", seats_file) == {"plan": {**plan, **after_plan(acme, seats_file)}, "applied": []}


def after_plan(acme: Seatctl, seats_file: str) -> dict[str, Any]:
    """The fields of the empty plan after an apply: a later sequence, no steps."""
    empty = acme.json("plan", "-f", seats_file)
    assert empty["changes"] is False and empty["steps"] == []
    return {
        "sequence": empty["sequence"],
        "changes": False,
        "steps": [],
        "summary": {"to_buy": 0, "removals_to_cancel": 0, "to_remove": 0, "seat_changes": 0},
    }


# ---- interrupted applies and request ids ------------------------------------------------------


def test_an_apply_interrupted_after_its_first_steps_finishes_when_run_again(
    acme: Seatctl, server: Running, team: dict[str, str], tmp_path: Path
) -> None:
    acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "1")
    acme.ok("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "1")
    text = f"pools:\n  - {{hub: sales, tier: professional, purchased: 4, holders: [{team['ann']}, {team['bob']}]}}\n"
    seats_file = write(tmp_path / "seats.yaml", text)
    with SeatsClient(server.target, actor=acme.owner) as owner:
        plan = make_plan(read_state(owner, acme.account), parse_file(text, seats_file))
        assert [type(step) for step in plan.steps] == [CancelRemoval, Purchase, Batch]
        execute_plan(owner, plan, acme.owner, steps=plan.steps[:1])  # the apply stopped here

    rest = acme.ok("plan", "-f", seats_file)
    assert "cancel the removal" not in rest, "the step made is not planned again"
    assert "Plan: 2 to buy, 0 to remove at 2027-01-01, 2 seat changes." in rest
    acme.ok("apply", "-f", seats_file)
    professional = pool(acme, "sales", "professional")
    assert (professional["purchased"], professional["pending_removal"], professional["assigned"]) == (4, 0, 2)
    assert acme.ok("plan", "-f", seats_file).startswith("No changes.")


def test_a_plan_made_again_from_the_same_state_has_its_effect_once(
    acme: Seatctl, server: Running, team: dict[str, str], tmp_path: Path
) -> None:
    """Two applies from one state (one rerun after its answers were lost, or two racing) send the
    same request ids, so the second replays the first's answers (I5): nothing happens twice. The
    same step planned from a later state is a new request, and is made."""
    acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    acme.ok("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    text = f"pools:\n  - {{hub: sales, tier: professional, purchased: 3, holders: [{team['cy']}]}}\n"
    with SeatsClient(server.target, actor=acme.owner) as owner:
        state = read_state(owner, acme.account)
        first = make_plan(state, parse_file(text))
        twin = make_plan(state, parse_file(text))
        assert [type(step) for step in first.steps] == [CancelRemoval, Batch]
        answers = execute_plan(owner, first, acme.owner)
        settled = last_sequence(acme)
        replayed = execute_plan(owner, twin, acme.owner)
    assert replayed == answers, "the same answers, from the server's record of each request id"
    assert last_sequence(acme) == settled, "no event: nothing ran twice"
    assert pool(acme, "sales", "professional")["pending_removal"] == 0

    acme.ok("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "2")
    seats_file = write(tmp_path / "seats.yaml", text)
    again = acme.json("plan", "-f", seats_file)
    assert [step["action"] for step in again["steps"]] == ["cancel_seat_removal"], "the same step, a later state"
    acme.ok("apply", "-f", seats_file)
    assert pool(acme, "sales", "professional")["pending_removal"] == 0, "a new request, not a replay"


# ---- the README's example ---------------------------------------------------------------------


def readme_block(name: str, language: str) -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {name}:start -->\n```{language}\n(.*?)```\n<!-- {name}:end -->", readme, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def test_the_readme_example_runs_as_written(server: Running, tmp_path: Path) -> None:
    """The README's seats.yaml and its commands: the account and users it makes, plan, apply,
    apply again (no changes), and the CI form of plan (exit 0: no drift)."""
    (tmp_path / "seats.yaml").write_text(readme_block("seats-as-code-file", "yaml"))
    commands = readme_block("seats-as-code-commands", "sh").replace("\\\n", " ")
    seatctl = Seatctl(server.target)
    outputs: list[str] = []
    for raw in commands.splitlines():
        words = shlex.split(raw, comments=True)
        if words[0] == "export":
            continue  # the ids the create printed: the Seatctl made by the create carries them
        assert words[0] == "seatctl", raw
        args = [word.replace("seats.yaml", str(tmp_path / "seats.yaml")) for word in words[1:]]
        if args[:2] == ["accounts", "create"]:
            created = json.loads(seatctl.ok_system("--json", *args))["account"]
            seatctl = Seatctl(server.target, created["account_id"], created["owner_user_id"])
            continue
        done = seatctl.run(*args)
        assert done.returncode == 0, f"{raw}\n{done.stdout}{done.stderr}"
        outputs.append(done.stdout)
    plan, applied, again, ci = outputs[-4:]
    assert "Plan: 1 to buy, 0 to remove at 2027-01-01, 4 seat changes." in plan
    assert "Apply complete: 1 bought, 0 to remove at 2027-01-01, 4 seat changes." in applied
    assert again == f"No changes. Account {seatctl.account} matches {tmp_path / 'seats.yaml'}.\n"
    assert json.loads(ci)["changes"] is False
    professional = pool(seatctl, "sales", "professional")
    assert (professional["purchased"], professional["assigned"]) == (2, 3)
    assert len(holders(seatctl, "service", "starter")) == 1
