"""seatctl's seat request commands: ``seats request`` (a user asks, for themselves or, with account
access, for someone else), ``seats requests`` (the list, oldest first), ``seats approve`` (a free seat
at once, ``--buy`` for a bought one, else the waiting list), ``seats deny``, and ``seats policy
--auto-approve-requests``. The installed console script runs in a process of its own against an
in-process server on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from tests.cli.test_seatctl import Seatctl, row
from tests.conftest import Running


@pytest.fixture
def acme(server: Running) -> Seatctl:
    """Sales Professional with its 2 included seats, both given; Service Starter with 1, free."""
    acme = Seatctl(server.target).create_account("sales:professional:0", "service:starter")
    acme.new_user("--seat", "sales:professional")
    acme.new_user("--seat", "sales:professional")
    return acme


def test_a_user_asks_and_the_owner_approves_into_the_waiting_list_then_a_seat_frees(acme: Seatctl) -> None:
    eve, fay = acme.new_user(), acme.new_user()
    asked = acme.ok("seats", "request", "--hub", "sales", "--tier", "professional", "--reason", "new AE", actor=eve)
    eve_asks = asked.split(":")[0]
    assert asked.strip() == f"{eve_asks}: pending"
    fay_asks = acme.ok("seats", "request", "--hub", "sales", "--tier", "professional", "-q", actor=fay).strip()
    assert fay_asks.startswith("sreq_")

    # everyone's list needs account access; a user's own does not
    assert acme.ok("seats", "requests", "--user", eve, "-q", actor=eve).split() == [eve_asks]
    assert acme.refused("seats", "requests", actor=eve).startswith("seatctl: PERMISSION_MISSING:")

    listed = acme.ok("seats", "requests")
    assert row(listed, "REQUEST") == ["REQUEST", "USER", "POOL", "STATE", "ASKED", "DECIDED", "BY", "REASON"]
    assert row(listed, eve_asks)[:5] == [eve_asks, eve, "Sales", "Professional", "pending"]
    assert row(listed, eve_asks)[-2:] == ["new", "AE"]

    first = acme.ok("seats", "approve", "--request", eve_asks)
    assert first.splitlines()[0] == f"{eve_asks}: waiting; it gets the next free seat of its pool, oldest first"
    acme.ok("seats", "approve", "--request", fay_asks)
    assert acme.ok("seats", "requests", "--state", "waiting", "-q").split() == [eve_asks, fay_asks]
    sales = next(p for p in acme.json("seats", "summary")["pools"] if p["hub"] == "HUB_SALES")
    assert (sales["assigned"], sales["waiting_requests"]) == (2, 2)

    holder = acme.json("seats", "list", "--hub", "sales")["assignments"][0]["user_id"]
    acme.ok("seats", "unassign", "--user", holder, "--hub", "sales")
    states = {q["seat_request_id"]: q["state"] for q in acme.json("seats", "requests")["seat_requests"]}
    assert states == {eve_asks: "SEAT_REQUEST_STATE_GRANTED", fay_asks: "SEAT_REQUEST_STATE_WAITING"}
    assert eve in acme.ok("seats", "list", "--hub", "sales", "-q").split()

    denied = acme.ok("seats", "deny", "--request", fay_asks)
    assert denied.strip() == f"{fay_asks}: denied"
    assert acme.refused("seats", "deny", "--request", fay_asks).startswith("seatctl: SEAT_REQUEST_CLOSED:")
    events = acme.ok("events", "tail").splitlines()
    assert [line.split()[2] for line in events[-4:]] == [
        "SEAT_REQUEST_WAITING",
        "SEAT_UNASSIGNED",
        "SEAT_ASSIGNED",
        "SEAT_REQUEST_DENIED",
    ]


def test_approve_with_buy_and_a_request_for_another_user(acme: Seatctl) -> None:
    eve, clerk = acme.new_user(), acme.new_user()
    refusal = acme.refused("seats", "request", "--hub", "sales", "--tier", "professional", "--user", eve, actor=clerk)
    assert refusal.startswith("seatctl: PERMISSION_MISSING:")
    asked = acme.json("seats", "request", "--hub", "sales", "--tier", "professional", "--user", eve)
    seat_request = asked["seat_request"]
    assert (seat_request["user_id"], seat_request["state"]) == (eve, "SEAT_REQUEST_STATE_PENDING")
    bought = acme.ok("seats", "approve", "--request", seat_request["seat_request_id"], "--buy")
    lines = bought.splitlines()
    assert lines[0] == f"{seat_request['seat_request_id']}: granted; {eve} holds the seat"
    assert any("Sales Professional" in line and "prorated" in line for line in lines[1:]), bought
    assert row(bought, "Sales")[:5] == ["Sales", "Professional", "2", "1", "3"]
    again = acme.refused("seats", "request", "--hub", "sales", "--tier", "professional", actor=eve)
    assert again.startswith("seatctl: SEAT_ALREADY_HELD:")


def test_a_pool_that_approves_by_itself(acme: Seatctl) -> None:
    policy = acme.ok("seats", "policy", "--hub", "service", "--tier", "starter", "--auto-approve-requests", "on")
    assert row(policy, "auto-approve") == ["auto-approve", "requests", "at", "once", "while", "a", "seat", "is", "free"]
    assert row(policy, "idle")[2:4] == ["off:", "seats"]
    eve, fay = acme.new_user(), acme.new_user()
    granted = acme.ok("seats", "request", "--hub", "service", "--tier", "starter", actor=eve)
    assert granted.split(":")[1].strip().startswith("granted")
    pending = acme.ok("seats", "request", "--hub", "service", "--tier", "starter", actor=fay)
    assert pending.strip().endswith(": pending")  # the one seat is taken
    off = acme.json("seats", "policy", "--hub", "service", "--tier", "starter", "--auto-approve-requests", "off")
    assert off["pool"]["auto_approve_requests"] is False
    usage = acme.run("seats", "policy", "--hub", "service", "--tier", "starter")
    assert usage.returncode == 2 and "--idle-reclaim-days, --auto-approve-requests, or both" in usage.stderr
