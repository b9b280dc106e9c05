"""seatctl's invoice commands: ``invoice list`` (one invoice per ended term), ``invoice show`` (an
invoice with its lines) and ``invoice preview --buy/--remove`` (what a change would charge, buying
nothing). The installed console script runs in a process of its own against an in-process server on
SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from tests.cli.test_seatctl import Seatctl, row, unique_email
from tests.conftest import Running


@pytest.fixture
def umbrella(server: Running) -> Seatctl:
    """Monthly terms begun 75 days ago: two have ended. Sales Starter with 2 purchased seats."""
    began = (server.clock.now() - timedelta(days=75)).strftime("%Y-%m-%dT%H:%M:%SZ")
    created = json.loads(
        Seatctl(server.target).ok_system(
            "--json", "accounts", "create", "--name", "Umbrella", "--owner-email", unique_email("o"),
            "--subscription", "sales:starter:2", "--term-months", "1", "--term-start", began,
        )
    )  # fmt: skip
    return Seatctl(server.target, created["account"]["account_id"], created["account"]["owner_user_id"])


def test_invoice_list_and_show(umbrella: Seatctl) -> None:
    listed = umbrella.ok("invoice", "list")
    assert row(listed, "#") == ["#", "INVOICE", "FROM", "TO", "LINES", "TOTAL"]
    first, second = umbrella.ok("invoice", "list", "-q").split()
    assert row(listed, "1")[1] == first and row(listed, "1")[-3:] == ["2", "USD", "60.00"]
    assert row(listed, "2")[1] == second

    shown = umbrella.ok("invoice", "show", "--invoice", first)
    lines = shown.splitlines()
    assert lines[0] == f"invoice 1  {first}"
    assert lines[-1] == "total  USD 60.00"
    assert any("Sales Starter plan, 1 month(s)" in line for line in lines)
    assert any("2 x Sales Starter seat, 1 month(s)" in line for line in lines)
    as_json = umbrella.json("invoice", "show", "--invoice", first)
    assert len(as_json["lines"]) == 2 and as_json["total"]["units"] == "60"
    refusal = umbrella.refused("invoice", "show", "--invoice", "inv_0000000000000000000000")
    assert refusal.startswith("seatctl: INVOICE_NOT_FOUND:")


def test_invoice_preview_of_a_change_buys_nothing(umbrella: Seatctl) -> None:
    what_if = umbrella.ok("invoice", "preview", "--buy", "sales:starter:3", "--remove", "sales:starter:1")
    lines = what_if.splitlines()
    assert lines[0] == "what if: nothing is bought or scheduled"
    assert row(what_if, "WOULD", "CHARGE")[:3] == ["WOULD", "CHARGE", "KIND"]
    assert any(line.startswith("would charge now  ") for line in lines)
    assert lines[-1] == "next renewal total  USD 100.00"  # the plan and 4 seats (2 + 3 - 1)
    summary = umbrella.json("seats", "summary")["pools"][0]
    assert (summary["purchased"], summary.get("pending_removal", 0)) == (2, 0)
    usage = umbrella.run("invoice", "preview", "--buy", "sales:starter")
    assert usage.returncode == 2 and "HUB:TIER:N" in usage.stderr
