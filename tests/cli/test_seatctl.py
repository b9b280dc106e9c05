"""seatctl as a person runs it: the installed console script in a process of its own, against a
server in a process of its own, read through its output and exit codes (0 done, 1 refused,
2 usage, 3 unreachable)."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.type import money_pb2
from seats.cli import format_money

from tests.served import REPO, ServerProcess, free_port, serving

CLI_SECONDS = 20.0
"""Bound of every seatctl run."""
LINE_SECONDS = 10.0
"""How long a follow may take to print a line."""
UNREACHABLE_SECONDS = 5.0
"""An unreachable target is reported within this time (one quick retry)."""

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
MONEY = re.compile(r"USD [\d,]+\.\d\d")


def seatctl_command() -> list[str]:
    """The console script declared in clients/python/pyproject.toml, else the module."""
    script = shutil.which("seatctl", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "seats.cli"]


def clean_env(**settings: str) -> dict[str, str]:
    """The runner's environment without SEATS_* settings, plus the given ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEATS_")}
    env.update(settings)
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*seatctl_command(), *args],
        cwd=REPO,
        env=env if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS,
        check=False,
    )


def unique_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@acme.test"


@dataclass
class Seatctl:
    """seatctl bound to a server, and (once made) to an account and its owner through SEATS_*."""

    target: str
    account: str = ""
    owner: str = ""

    def env(self, actor: str | None = None) -> dict[str, str]:
        settings = {"SEATS_TARGET": self.target}
        if self.account:
            settings["SEATS_ACCOUNT"] = self.account
        if actor or self.owner:
            settings["SEATS_ACTOR"] = actor or self.owner
        return clean_env(**settings)

    def run(self, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
        return run(*args, env=self.env(actor))

    def ok(self, *args: str, actor: str | None = None) -> str:
        done = self.run(*args, actor=actor)
        assert done.returncode == 0, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
        assert done.stderr == "", done.stderr
        return done.stdout

    def json(self, *args: str, actor: str | None = None) -> Any:
        return json.loads(self.ok("--json", *args, actor=actor))

    def refused(self, *args: str, actor: str | None = None) -> str:
        """The one stderr line of a refusal (exit 1)."""
        done = self.run(*args, actor=actor)
        assert done.returncode == 1, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
        lines = done.stderr.splitlines()
        assert len(lines) == 1, f"a refusal is one stderr line, not {lines}"
        return lines[0]

    def create_account(self, *subscriptions: str) -> Seatctl:
        """A new account (a system call: no actor) with its owner as the actor of later runs."""
        flags = [flag for sub in subscriptions for flag in ("--subscription", sub)]
        created = json.loads(
            self.ok_system("--json", "accounts", "create", "--name", "Acme", "--owner-email", unique_email("o"), *flags)
        )
        return Seatctl(self.target, created["account"]["account_id"], created["account"]["owner_user_id"])

    def ok_system(self, *args: str) -> str:
        done = run(*args, env=clean_env(SEATS_TARGET=self.target))
        assert done.returncode == 0, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
        return done.stdout

    def new_user(self, *flags: str) -> str:
        return str(self.json("users", "create", "--email", unique_email("u"), *flags)["user"]["user_id"])


def row(output: str, *first: str) -> list[str]:
    """The whitespace-split table row that starts with the given cells."""
    for line in output.splitlines():
        cells = line.split()
        if cells[: len(first)] == list(first):
            return cells
    raise AssertionError(f"no row starting with {first} in\n{output}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serving(tmp_path_factory.mktemp("seatctl")) as running:
        yield running


@pytest.fixture
def acme(server: ServerProcess) -> Seatctl:
    """A fresh account with Sales Professional: 2 included + 1 purchased seats, and Service Starter: 1."""
    return Seatctl(server.address).create_account("sales:professional:1", "service:starter")


# ---- accounts and the summary ---------------------------------------------------------------


def test_accounts_create_prints_the_ids_then_seats_summary_shows_the_pools(server: ServerProcess) -> None:
    created = run(
        "--target",
        server.address,
        "accounts",
        "create",
        "--name",
        "Acme",
        "--owner-email",
        unique_email("owner"),
        "--subscription",
        "sales:professional:1",
        "--subscription",
        "SERVICE:TIER_STARTER:0",
    )
    assert created.returncode == 0, created.stderr
    account = row(created.stdout, "account")[1]
    owner = row(created.stdout, "owner", "user")[2]
    assert account.startswith("acc_") and owner.startswith("usr_")
    assert ISO_UTC.fullmatch(row(created.stdout, "renewal", "date")[2])

    # Global options after the subcommand, the account as a flag.
    summary = run("seats", "summary", "--account", account, "--target", server.address, "--actor", owner)
    assert summary.returncode == 0, summary.stderr
    assert row(summary.stdout, "HUB") == [
        "HUB", "TIER", "INCLUDED", "PURCHASED", "ASSIGNED", "AVAILABLE", "PENDING", "REMOVAL", "DATE"
    ]  # fmt: skip
    assert row(summary.stdout, "Sales") == ["Sales", "Professional", "2", "1", "0", "3", "0", "-"]
    assert row(summary.stdout, "Service") == ["Service", "Starter", "1", "0", "0", "1", "0", "-"]
    assert ISO_UTC.fullmatch(row(summary.stdout, "renewal", "date")[2])


def test_json_outputs_parse_and_carry_the_ids(acme: Seatctl) -> None:
    account = acme.json("accounts", "show")
    assert account["account_id"] == acme.account
    assert account["owner_user_id"] == acme.owner
    assert {(s["hub"], s["tier"]) for s in account["subscriptions"]} == {
        ("HUB_SALES", "TIER_PROFESSIONAL"),
        ("HUB_SERVICE", "TIER_STARTER"),
    }
    pools = acme.json("seats", "summary")["pools"]
    sales = next(p for p in pools if p["hub"] == "HUB_SALES")
    assert (sales["included"], sales["purchased"], sales["assigned"], sales["available"]) == (2, 1, 0, 3)
    users = acme.json("users", "list")["users"]
    assert [u["user_id"] for u in users] == [acme.owner]
    assert users[0]["permissions"]["super_admin"] is True


# ---- users and seats ------------------------------------------------------------------------


def test_s16_users_create_with_a_seat(acme: Seatctl) -> None:
    created = acme.json(
        "users", "create", "--email", unique_email("ann"), "--name", "Ann", "--seat", "sales:professional"
    )
    user = created["user"]
    assert user["seats"] == [{"hub": "HUB_SALES", "tier": "TIER_PROFESSIONAL"}]

    shown = acme.ok("users", "show", "--user", user["user_id"])
    assert row(shown, "seats") == ["seats", "Sales", "Professional"]
    assert row(shown, "name") == ["name", "Ann"]
    listed = acme.ok("seats", "list", "--hub", "sales")
    assert row(listed, user["user_id"])[1:3] == ["Sales", "Professional"]
    assert row(acme.ok("seats", "summary"), "Sales")[4] == "1"


def test_s13_assigning_past_a_full_pool_is_refused_with_a_hint_then_s3_a_bought_seat_is_assignable(
    acme: Seatctl,
) -> None:
    users = [acme.new_user() for _ in range(4)]
    for user in users[:3]:
        assert "assigned a Sales Professional seat" in acme.ok(
            "seats", "assign", "--user", user, "--hub", "sales", "--tier", "professional"
        )

    line = acme.refused("seats", "assign", "--user", users[3], "--hub", "sales", "--tier", "professional")
    assert line.startswith("seatctl: NO_SEAT_AVAILABLE: ")
    assert line.endswith("(buy a seat with `seatctl seats buy` or pass --buy)")

    refusal = acme.run("--json", "seats", "assign", "--user", users[3], "--hub", "sales", "--tier", "professional")
    assert refusal.returncode == 1
    assert refusal.stderr.count("\n") == 1 and "NO_SEAT_AVAILABLE" in refusal.stderr
    error = json.loads(refusal.stdout)["error"]
    assert (error["code"], error["reason"]) == ("FAILED_PRECONDITION", "NO_SEAT_AVAILABLE")
    assert error["metadata"]["hub"] == "SALES"

    bought = acme.ok("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "1")
    assert row(bought, "Sales") == ["Sales", "Professional", "2", "2", "3", "1", "0", "-"]
    charge = next(line for line in bought.splitlines() if line.startswith("charge"))
    assert MONEY.fullmatch(charge.split("  ")[1]), charge
    acme.ok("seats", "assign", "--user", users[3], "--hub", "sales", "--tier", "professional")
    assert row(acme.ok("seats", "summary"), "Sales")[2:6] == ["2", "2", "4", "0"]


def test_s14_assign_with_buy_purchases_a_seat_for_a_full_pool(acme: Seatctl) -> None:
    users = [acme.new_user() for _ in range(2)]
    acme.ok("seats", "assign", "--user", users[0], "--hub", "service", "--tier", "starter")
    assigned = acme.json("seats", "assign", "--user", users[1], "--hub", "service", "--tier", "starter", "--buy")
    assert assigned["changed"] is True
    assert assigned["pool"]["purchased"] == 1 and assigned["pool"]["assigned"] == 2
    assert assigned["charge"]["kind"] == "CHARGE_KIND_PRORATED_SEATS"


def test_s5_remove_schedules_seats_for_the_renewal_date_and_cancel_removal_keeps_them(acme: Seatctl) -> None:
    renewal = acme.json("seats", "summary")["renewal_time"]
    removed = acme.json("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "1")["pool"]
    assert (removed["purchased"], removed["pending_removal"]) == (1, 1)
    assert removed["removal_effective_time"] == renewal
    summary = acme.ok("seats", "summary")
    assert row(summary, "Sales")[2:7] == ["2", "1", "0", "2", "1"]
    assert ISO_UTC.fullmatch(row(summary, "Sales")[7])

    line = acme.refused("seats", "remove", "--hub", "sales", "--tier", "professional", "--quantity", "1")
    assert line.startswith("seatctl: SEATS_ASSIGNED: ")
    assert line.endswith("(free seats with `seatctl seats unassign`, or remove fewer)")
    assert line.count("first") == 1, line

    kept = acme.ok("seats", "cancel-removal", "--hub", "sales", "--tier", "professional", "--quantity", "1")
    assert row(kept, "Sales") == ["Sales", "Professional", "2", "1", "0", "3", "0", "-"]


def test_s10_users_delete_is_refused_while_the_user_holds_a_seat_then_works_after_unassign(acme: Seatctl) -> None:
    user = acme.new_user("--seat", "sales:professional")
    line = acme.refused("users", "delete", "--user", user)
    assert line.startswith("seatctl: USER_HOLDS_SEATS: ")
    assert line.endswith("(free them with `seatctl seats unassign`)") and line.count("first") == 1, line

    assert "back into its pool" in acme.ok("seats", "unassign", "--user", user, "--hub", "sales")
    stale = acme.refused("users", "delete", "--user", user, "--etag", "stale")
    assert stale.startswith("seatctl: ETAG_MISMATCH: ") and "show the user again" in stale
    assert acme.ok("users", "delete", "--user", user).strip() == f"deleted user {user}"
    gone = acme.refused("users", "show", "--user", user)
    assert gone.startswith("seatctl: USER_NOT_FOUND: ")


# ---- events ---------------------------------------------------------------------------------


def test_i4_events_tail_lists_the_log_in_order(acme: Seatctl) -> None:
    user = acme.new_user("--seat", "sales:professional")
    acme.ok("seats", "unassign", "--user", user, "--hub", "sales")

    lines = acme.ok("events", "tail").splitlines()
    assert lines[0].split()[:3] == ["SEQ", "TIME", "TYPE"]
    events = [line.split() for line in lines[1:]]
    assert [int(e[0]) for e in events] == list(range(1, len(events) + 1))
    assert all(ISO_UTC.fullmatch(e[1]) for e in events)
    types = [e[2] for e in events]
    assert types[0] == "ACCOUNT_CREATED"
    assert types[-3:] == ["USER_CREATED", "SEAT_ASSIGNED", "SEAT_UNASSIGNED"]
    assigned = events[-2]
    assert assigned[3] == acme.owner and assigned[4] == "Sales/Professional" and assigned[5] == user
    assert " ".join(assigned[-3:]) == "2/1/0/0 -> 2/1/1/0"

    after = len(events) - 2
    tail = [json.loads(line) for line in acme.ok("--json", "events", "tail", "--after", str(after)).splitlines()]
    assert [int(e["sequence"]) for e in tail] == [after + 1, after + 2]
    assert [e["type"] for e in tail] == ["SEAT_EVENT_TYPE_SEAT_ASSIGNED", "SEAT_EVENT_TYPE_SEAT_UNASSIGNED"]


def test_events_tail_follow_prints_a_new_event_and_sigint_ends_it_with_0(acme: Seatctl) -> None:
    known = len(acme.ok("events", "tail").splitlines()) - 1
    follow = subprocess.Popen(
        [*seatctl_command(), "events", "tail", "--follow"],
        cwd=REPO,
        env=acme.env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def read_lines() -> None:
        for line in follow.stdout or ():
            lines.put(line)

    threading.Thread(target=read_lines, daemon=True).start()

    def next_line() -> str:
        try:
            return lines.get(timeout=LINE_SECONDS)
        except queue.Empty:
            pytest.fail(f"the follow printed nothing within {LINE_SECONDS}s")

    try:
        assert next_line().split()[0] == "SEQ"
        backlog = [next_line() for _ in range(known)]  # once the backlog is out, the watch is live
        assert int(backlog[-1].split()[0]) == known

        user = acme.new_user()
        new = next_line().split()
        assert (int(new[0]), new[2], new[5]) == (known + 1, "USER_CREATED", user)

        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=CLI_SECONDS) == 0
        assert follow.stderr is not None and follow.stderr.read() == "", "Ctrl-C ends a follow quietly"
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait(timeout=CLI_SECONDS)


# ---- billing --------------------------------------------------------------------------------


def test_invoice_preview_shows_the_charges_and_totals(acme: Seatctl) -> None:
    preview = acme.ok("invoice", "preview")
    # Sales Professional: plan 12 x 500.00 + 1 seat x 12 x 90.00; Service Starter: plan 12 x 20.00.
    assert row(preview, "current", "term", "total") == ["current", "term", "total", "USD", "7,320.00"]
    assert row(preview, "next", "renewal", "total") == ["next", "renewal", "total", "USD", "7,320.00"]
    assert row(preview, "SEATS", "Sales", "Professional")[3:8] == ["1", "USD", "1,080.00", "USD", "1,080.00"]
    as_json = acme.json("invoice", "preview")
    assert as_json["next_renewal_total"] == {"currency_code": "USD", "units": "7320", "nanos": 0}


@pytest.mark.parametrize(
    ("currency", "units", "nanos", "text"),
    [
        ("USD", 1080, 0, "USD 1,080.00"),
        ("USD", 1234567, 10_000_000, "USD 1,234,567.01"),
        ("USD", -5, -500_000_000, "USD -5.50"),
        ("USD", 0, 123_456_789, "USD 0.123456789"),
        ("JPY", 1000, 0, "JPY 1,000"),
        ("BHD", 1, 5_000_000, "BHD 1.005"),
    ],
)
def test_i6_money_prints_exactly_from_units_and_nanos(currency: str, units: int, nanos: int, text: str) -> None:
    assert format_money(money_pb2.Money(currency_code=currency, units=units, nanos=nanos)) == text


# ---- refusals, reachability, usage ----------------------------------------------------------


def test_s7_buying_seats_without_edit_billing_exits_1_with_permission_missing(acme: Seatctl) -> None:
    clerk = acme.new_user("--account-access")
    line = acme.refused("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "1", actor=clerk)
    assert line.startswith("seatctl: PERMISSION_MISSING: ")
    assert "ask a user with the edit_billing permission" in line and "--actor" in line
    assert row(acme.ok("seats", "summary"), "Sales")[3] == "1", "nothing was bought"


def test_an_unreachable_target_exits_3_quickly() -> None:
    target = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = run("--target", target, "seats", "summary", "--account", "acc_nowhere")
    elapsed = time.monotonic() - started
    assert done.returncode == 3, done.stderr
    assert elapsed < UNREACHABLE_SECONDS
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("seatctl: UNAVAILABLE: ")
    assert lines[0].endswith(f"(is the server running at {target}?)")


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["seats"],
        ["seats", "summary"],  # no --account and no SEATS_ACCOUNT
        ["seats", "buy", "--account", "a", "--hub", "nowhere", "--tier", "professional", "--quantity", "1"],
        ["seats", "buy", "--account", "a", "--hub", "sales", "--tier", "professional", "--quantity", "0"],
        ["accounts", "create", "--name", "A", "--owner-email", "a@b.test", "--subscription", "sales"],
    ],
    ids=["nothing", "no-verb", "no-account", "bad-hub", "zero-quantity", "bad-subscription"],
)
def test_a_usage_error_exits_2_without_calling_anything(args: list[str]) -> None:
    done = run("--target", f"127.0.0.1:{free_port()}", *args)
    assert done.returncode == 2, done.stderr
    assert "usage: seatctl" in done.stderr and "error:" in done.stderr


def test_help_describes_the_commands_and_their_options() -> None:
    top = run("--help")
    assert top.returncode == 0
    for word in ("accounts", "seats", "users", "events", "invoice", "--target", "--actor", "--json", "--timeout"):
        assert word in top.stdout
    buy = run("seats", "buy", "--help")
    assert buy.returncode == 0
    for option in ("--hub", "--tier", "--quantity", "--validate-only", "--account", "--target"):
        assert option in buy.stdout
