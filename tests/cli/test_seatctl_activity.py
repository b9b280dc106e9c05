"""seatctl's seat activity commands: ``seats activity`` (reports from flags, a file or standard
input), ``seats policy`` (a pool's idle-seat policy and the seats it would reclaim) and ``seats
list --idle-since``. The installed console script runs in a process of its own against an
in-process server (SQLite and PostgreSQL) whose manual clock the tests move forward, so that days
go by between uses of a seat; its periodic sweep is off, and a test sweeps when it means to. One
test runs against a server process on the real clock, for the default time of a report: now."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from seats.cli import TABLE_WIDTH

from tests.cli.test_seatctl import CLI_SECONDS, ISO_UTC, Seatctl, row, seatctl_command
from tests.conftest import Running
from tests.served import REPO, ServerProcess, serving


def iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fits(output: str) -> None:
    widest = max(output.splitlines(), key=len)
    assert len(widest) <= TABLE_WIDTH, f"{len(widest)} columns wide:\n{widest}"


@pytest.fixture
def acme(server: Running) -> Seatctl:
    """Sales Professional: 2 included + 2 purchased seats; Service Starter: 1 included."""
    return Seatctl(server.target).create_account("sales:professional:2", "service:starter")


def last_activity(acme: Seatctl, user: str, hub: str = "sales") -> str | None:
    """The user's seat's last_activity_time as --json prints it; None when unset."""
    (seat,) = [a for a in acme.json("seats", "list", "--hub", hub)["assignments"] if a["user_id"] == user]
    value = seat.get("last_activity_time")
    return str(value) if value is not None else None


def stdin_run(acme: Seatctl, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*seatctl_command(), *args],
        cwd=REPO,
        env=acme.env(),
        input=text,
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS,
        check=False,
    )


def usage_error(acme: Seatctl, *args: str) -> str:
    done = acme.run(*args)
    assert done.returncode == 2, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
    assert "usage: seatctl" in done.stderr
    return done.stderr


# ---- seats activity -------------------------------------------------------------------------


def test_activity_from_users_records_their_seats_and_counts_the_skipped(server: Running, acme: Seatctl) -> None:
    ann = acme.new_user("--seat", "sales:professional")
    bob = acme.new_user("--seat", "service:starter")
    at = server.clock.now() + timedelta(minutes=1)

    done = acme.ok("seats", "activity", "--hub", "sales", "--user", ann, "--user", bob, "--at", iso(at))
    lines = done.splitlines()
    assert lines[0] == "recorded 1 seat(s), skipped 1 of 2 report(s)"
    assert lines[1].startswith("(skipped: no seat of that hub")
    fits(done)
    assert last_activity(acme, ann) == iso(at)
    assert last_activity(acme, bob, "service") is None, "bob's seat is of service, not sales"

    again = acme.json("seats", "activity", "--hub", "sales", "--user", ann, "--at", iso(at))
    assert again == {"recorded": 0, "skipped": 1}, "the same use again moves nothing"


def test_activity_from_a_file_and_from_standard_input(server: Running, acme: Seatctl, tmp_path: Path) -> None:
    ann = acme.new_user("--seat", "sales:professional")
    bob = acme.new_user("--seat", "service:starter", "--seat", "sales:professional")
    now = server.clock.now()
    early, late = now + timedelta(minutes=1), now + timedelta(minutes=2)
    usage = tmp_path / "usage.txt"
    usage.write_text(
        f"# yesterday's log\n{ann}:sales:{iso(late)}\n\n{bob}:SERVICE  # no time: --at\n{bob}:sales:{iso(early)}\n"
    )

    done = acme.json("seats", "activity", "--file", str(usage), "--at", iso(early))
    assert done == {"recorded": 3, "skipped": 0}
    assert last_activity(acme, ann) == iso(late)
    assert last_activity(acme, bob, "service") == iso(early)
    assert last_activity(acme, bob, "sales") == iso(early)

    piped = stdin_run(acme, f"{bob}:sales:{iso(late)}\n{ann}:sales:{iso(early)}\n", "seats", "activity", "--file", "-")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout.splitlines()[0] == "recorded 1 seat(s), skipped 1 of 2 report(s)"
    assert last_activity(acme, bob, "sales") == iso(late)
    assert last_activity(acme, ann) == iso(late), "an older use does not move it back"


def test_an_activity_ahead_of_the_servers_clock_is_refused_with_the_field(server: Running, acme: Seatctl) -> None:
    ann = acme.new_user("--seat", "sales:professional")
    ahead = iso(server.clock.now() + timedelta(minutes=10))
    line = acme.refused("seats", "activity", "--hub", "sales", "--user", ann, "--at", ahead)
    assert line.startswith("seatctl: INVALID_FIELD: ") and "activity_time" in line, line
    refusal = acme.run("--json", "seats", "activity", "--hub", "sales", "--user", ann, "--at", ahead)
    assert refusal.returncode == 1
    error = json.loads(refusal.stdout)["error"]
    assert (error["code"], error["reason"]) == ("INVALID_ARGUMENT", "INVALID_FIELD")
    assert last_activity(acme, ann) is None


def test_activity_usage_errors_say_what_is_missing(acme: Seatctl, tmp_path: Path) -> None:
    assert "--user needs --hub" in usage_error(acme, "seats", "activity", "--user", "usr_a")
    assert "--hub goes with --user" in usage_error(acme, "seats", "activity", "--hub", "sales")
    assert "no reports" in usage_error(acme, "seats", "activity")
    assert "not an ISO 8601" in usage_error(acme, "seats", "activity", "--hub", "sales", "--user", "u", "--at", "soon")
    bad = tmp_path / "bad.txt"
    bad.write_text("usr_a:sales\nusr_b\nusr_c:marketing\n")
    assert f"{bad}, line 2: expected USER:HUB[:TIME]" in usage_error(acme, "seats", "activity", "--file", str(bad))
    bad.write_text("usr_a:sales:yesterday\n")
    assert f"{bad}, line 1: not an ISO 8601" in usage_error(acme, "seats", "activity", "--file", str(bad))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A server process on the real clock."""
    with serving(tmp_path_factory.mktemp("seatctl-activity")) as running:
        yield running


def test_a_report_without_a_time_is_a_use_now(live: ServerProcess) -> None:
    acme = Seatctl(live.address).create_account("sales:professional")
    ann = acme.new_user("--seat", "sales:professional")
    before = datetime.now(UTC).replace(microsecond=0)
    assert acme.json("seats", "activity", "--hub", "sales", "--user", ann) == {"recorded": 1, "skipped": 0}
    recorded = datetime.fromisoformat(str(last_activity(acme, ann)))
    assert before <= recorded <= datetime.now(UTC)


# ---- seats policy ---------------------------------------------------------------------------


def test_policy_shows_the_idle_seats_then_sets_the_policy_the_sweep_follows(server: Running, acme: Seatctl) -> None:
    day0 = server.clock.now()
    busy, idle = acme.new_user("--seat", "sales:professional"), acme.new_user("--seat", "sales:professional")
    server.clock.advance(days=1)
    used = server.clock.now()
    acme.ok("seats", "activity", "--hub", "sales", "--user", idle, "--at", iso(used))
    server.clock.advance(days=8)
    acme.ok("seats", "activity", "--hub", "sales", "--user", busy, "--at", iso(server.clock.now()))
    server.clock.advance(days=1)

    checked = acme.ok(
        "seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "7", "--validate-only"
    )
    fits(checked)
    lines = checked.splitlines()
    assert lines[0] == "validate only: nothing was changed. Sales Professional would have:"
    assert row(checked, "idle", "reclaim") == ["idle", "reclaim", "after", "7", "days", "without", "activity"]
    assert row(checked, "Sales")[:6] == ["Sales", "Professional", "2", "2", "2", "2"]
    assert row(checked, "IDLE", "USER") == ["IDLE", "USER", "TIER", "LAST", "ACTIVITY", "ASSIGNED"]
    assert row(checked, idle) == [idle, "Professional", iso(used), iso(day0)]
    assert lines[-1].startswith("1 seat(s) idle 7 days or more: the next sweep would reclaim them")
    assert all(busy not in line for line in lines), "the seat used yesterday is not idle"
    pools = acme.json("seats", "summary")["pools"]
    assert next(p for p in pools if p["hub"] == "HUB_SALES")["idle_reclaim_days"] == 0, "validate only changed nothing"

    as_json = acme.json("seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "7")
    assert as_json["pool"]["idle_reclaim_days"] == 7
    assert [a["user_id"] for a in as_json["idle_seats"]] == [idle]
    sales = next(p for p in acme.json("seats", "summary")["pools"] if p["hub"] == "HUB_SALES")
    assert sales["idle_reclaim_days"] == 7

    server.server.sweeper.sweep_once()
    assert acme.ok("seats", "list", "-q").splitlines() == [busy]
    tail = acme.ok("events", "tail").splitlines()
    reclaimed = [line.split() for line in tail if "SEAT_RECLAIMED" in line]
    assert len(reclaimed) == 1 and reclaimed[0][2] == "SEAT_RECLAIMED" and idle in reclaimed[0], tail
    assert any(line.split()[2] == "SEAT_POLICY_UPDATED" for line in tail[1:])


def test_policy_off_and_a_period_under_7_days(acme: Seatctl) -> None:
    off = acme.ok("seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "0")
    assert off.splitlines()[0] == "set the policy of Sales Professional:"
    assert row(off, "idle", "reclaim")[2:] == ["off:", "seats", "are", "never", "reclaimed"]
    assert "IDLE USER" not in off

    none_idle = acme.ok("seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "30")
    assert none_idle.splitlines()[-1] == "no seat has been idle 30 days or more"

    line = acme.refused("seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "3")
    assert line.startswith("seatctl: INVALID_FIELD: ") and line.endswith("(check idle_reclaim_days)"), line
    assert "must be 0 or more" in usage_error(
        acme, "seats", "policy", "--hub", "sales", "--tier", "professional", "--idle-reclaim-days", "-7"
    )
    assert "--idle-reclaim-days" in usage_error(acme, "seats", "policy", "--hub", "sales", "--tier", "professional")


# ---- seats list --idle-since ----------------------------------------------------------------


def test_list_idle_since_a_time_or_an_age(server: Running, acme: Seatctl) -> None:
    given = server.clock.now()
    busy, idle = acme.new_user("--seat", "sales:professional"), acme.new_user("--seat", "service:starter")
    server.clock.advance(days=3)
    acme.ok("seats", "activity", "--hub", "sales", "--user", busy, "--at", iso(server.clock.now()))

    since = iso(given + timedelta(days=1))
    listed = acme.ok("seats", "list", "--idle-since", since)
    fits(listed)
    assert row(listed, "USER") == ["USER", "HUB", "TIER", "ASSIGNED", "LAST", "ACTIVITY"]
    assert row(listed, idle) == [idle, "Service", "Starter", iso(given), "-"]
    assert all(busy not in line for line in listed.splitlines())
    assert listed.splitlines()[-1] == f"1 seat(s) idle since {since}"
    assert [a["user_id"] for a in acme.json("seats", "list", "--idle-since", since)["assignments"]] == [idle]

    everything = acme.ok("seats", "list")
    assert row(everything, busy)[-1] == iso(server.clock.now()), "the last activity is listed"
    assert ISO_UTC.fullmatch(row(everything, busy)[-1])
    assert everything.splitlines()[-1] == "2 seat(s) assigned"

    # An age counts back from this machine's clock, which the server's manual clock need not follow:
    # pick ages that fall a day after, and a day before, the seats were given.
    days_since_given = (datetime.now(UTC) - given).days
    recent = acme.ok("seats", "list", "-q", "--idle-since", f"{days_since_given - 4}d").splitlines()
    assert sorted(recent) == sorted([busy, idle])
    assert acme.ok("seats", "list", "-q", "--idle-since", f"{days_since_given + 2}d") == ""
    assert "nor an age" in usage_error(acme, "seats", "list", "--idle-since", "a month")
