"""seatctl's other commands (users update, accounts upgrade, seats batch, seats check), --version,
completion, -q and table widths: the installed console script against a server process, on
SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from seats.cli import CUT_MARK, TABLE_WIDTH, table

from service.store import open_store
from tests.cli.test_seatctl import CLI_SECONDS, ISO_UTC, Seatctl, row, run, seatctl_command, unique_email
from tests.conftest import BACKENDS, database_url
from tests.served import REPO, ServerProcess, free_port, serving


@pytest.fixture(scope="module", params=BACKENDS)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    url = database_url(request.param, tmp_path_factory)
    try:
        with serving(tmp_path_factory.mktemp("seatctl-more"), database_url=url) as running:
            yield running
    finally:
        if url.startswith("postgres"):
            store = open_store(url)
            try:
                store.drop_schema()
            finally:
                store.close()


@pytest.fixture
def acme(server: ServerProcess) -> Seatctl:
    """A fresh account with Sales Professional: 2 included + 1 purchased seats, and Service Free."""
    return Seatctl(server.address).create_account("sales:professional:1", "service:free")


def usage_error(acme: Seatctl, *args: str) -> str:
    """The stderr of a run that must exit 2 (a usage error)."""
    done = acme.run(*args)
    assert done.returncode == 2, f"seatctl {' '.join(args)} exited {done.returncode}\n{done.stderr}"
    assert "usage: seatctl" in done.stderr
    return done.stderr


def tiers(acme: Seatctl, hub: str, *users: str) -> list[str]:
    checked = acme.json("seats", "check", "--hub", hub, *(f for u in users for f in ("--user", u)))
    return list(checked["tiers"])


# ---- users update ---------------------------------------------------------------------------


def test_users_update_changes_only_the_fields_given_and_a_no_flag_takes_a_permission(acme: Seatctl) -> None:
    email = unique_email("bob")
    user = acme.new_user("--edit-billing", "--account-access")
    updated = acme.json("users", "update", "--user", user, "--name", "Bob", "--no-edit-billing")["user"]
    assert updated["display_name"] == "Bob"
    assert updated["permissions"] == {"super_admin": False, "edit_billing": False, "account_access": True}

    # The permission is gone in the service: buying seats as the user is now refused.
    line = acme.refused("seats", "buy", "--hub", "sales", "--tier", "professional", "--quantity", "1", actor=user)
    assert line.startswith("seatctl: PERMISSION_MISSING: ")

    shown = acme.ok("users", "update", "--user", user, "--email", email, "--super-admin")
    assert row(shown, "email") == ["email", email]
    assert row(shown, "name") == ["name", "Bob"], "a field not given stays as it is"
    assert row(shown, "permissions") == ["permissions", "super_admin,account_access"]


def test_users_update_with_a_stale_etag_is_refused_and_without_a_field_is_a_usage_error(acme: Seatctl) -> None:
    user = acme.new_user()
    etag = acme.json("users", "show", "--user", user)["etag"]
    acme.ok("users", "update", "--user", user, "--name", "First", "--etag", etag)
    line = acme.refused("users", "update", "--user", user, "--name", "Second", "--etag", etag)
    assert line.startswith("seatctl: ETAG_MISMATCH: ")
    assert acme.json("users", "show", "--user", user)["display_name"] == "First"

    assert "nothing to change" in usage_error(acme, "users", "update", "--user", user)


# ---- accounts upgrade -----------------------------------------------------------------------


def test_accounts_upgrade_validate_only_changes_nothing_then_upgrades_and_assigns(acme: Seatctl) -> None:
    user = acme.new_user("--seat", "service:free")
    before = acme.json("seats", "summary")

    checked = acme.ok(
        "accounts", "upgrade", "--hub", "service", "--tier", "professional", "--assign", user, "--validate-only"
    )
    assert checked.startswith("validate only: upgrading Service to Professional is allowed")
    assert row(checked, "Service")[:2] == ["Service", "Professional"]
    assert acme.json("seats", "summary") == before, "a validate-only upgrade changes nothing"
    assert tiers(acme, "service", user) == ["TIER_FREE"]

    done = acme.ok(
        "accounts", "upgrade", "--hub", "service", "--tier", "professional", "--purchased", "1", "--assign", user
    )
    assert done.startswith("upgraded Service to Professional")
    assert row(done, "Service")[2:6] == ["2", "1", "1", "2"]
    assert any(line.startswith("charge  USD ") for line in done.splitlines())
    assert tiers(acme, "service", user) == ["TIER_PROFESSIONAL"]
    account = acme.json("accounts", "show")
    assert {(s["hub"], s["tier"]) for s in account["subscriptions"]} == {
        ("HUB_SALES", "TIER_PROFESSIONAL"),
        ("HUB_SERVICE", "TIER_PROFESSIONAL"),
    }


def test_accounts_upgrade_needs_edit_billing(acme: Seatctl) -> None:
    clerk = acme.new_user("--account-access")
    line = acme.refused("accounts", "upgrade", "--hub", "service", "--tier", "starter", actor=clerk)
    assert line.startswith("seatctl: PERMISSION_MISSING: ")


# ---- seats batch ----------------------------------------------------------------------------


def test_seats_batch_from_changes_and_a_file(acme: Seatctl, tmp_path: Path) -> None:
    ann, bob, cat = (acme.new_user() for _ in range(3))
    acme.ok("seats", "assign", "--user", ann, "--hub", "sales", "--tier", "professional")

    done = acme.ok("seats", "batch", "--change", f"{ann}:sales:none", "--change", f"{bob}:sales:professional")
    assert row(done, ann)[1:] == ["Sales", "Professional", "-", "UNASSIGNED"]
    assert row(done, bob)[1:] == ["Sales", "-", "Professional", "ASSIGNED"]
    assert row(done, "Sales")[4] == "1", "the pools after the batch follow"

    changes = tmp_path / "changes.txt"
    changes.write_text(f"# morning changes\n{ann}:sales:professional\n\n{cat}:SALES:TIER_PROFESSIONAL  # new\n")
    checked = acme.ok("seats", "batch", "--file", str(changes), "--validate-only")
    assert checked.startswith("validate only: the batch is allowed")
    assert tiers(acme, "sales", ann, bob, cat) == ["TIER_UNSPECIFIED", "TIER_PROFESSIONAL", "TIER_UNSPECIFIED"]

    results = acme.json("seats", "batch", "--file", str(changes), "--change", f"{bob}:sales")["results"]
    assert [(r["user_id"], r["outcome"]) for r in results] == [
        (bob, "SEAT_CHANGE_OUTCOME_UNASSIGNED"),
        (ann, "SEAT_CHANGE_OUTCOME_ASSIGNED"),
        (cat, "SEAT_CHANGE_OUTCOME_ASSIGNED"),
    ]
    assert tiers(acme, "sales", ann, bob, cat) == ["TIER_PROFESSIONAL", "TIER_UNSPECIFIED", "TIER_PROFESSIONAL"]


def test_seats_batch_is_all_or_nothing(acme: Seatctl) -> None:
    users = [acme.new_user() for _ in range(4)]  # the pool has 3 seats
    flags = [f for u in users for f in ("--change", f"{u}:sales:professional")]
    line = acme.refused("seats", "batch", *flags)
    assert line.startswith("seatctl: NO_SEAT_AVAILABLE: ")
    assert tiers(acme, "sales", *users) == ["TIER_UNSPECIFIED"] * 4


def test_seats_batch_usage_errors_name_the_bad_line(acme: Seatctl, tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("usr_a:sales:professional\nusr_b:sales:platinum\n")
    assert f"{bad}, line 2: unknown tier 'platinum'" in usage_error(acme, "seats", "batch", "--file", str(bad))
    assert "no changes" in usage_error(acme, "seats", "batch")
    assert "cannot read --file" in usage_error(acme, "seats", "batch", "--file", str(tmp_path / "missing.txt"))
    assert "expected USER:HUB:TIER" in usage_error(acme, "seats", "batch", "--change", "usr_a")


# ---- seats check ----------------------------------------------------------------------------


def test_seats_check_answers_in_order_with_the_sequence_it_reflects(acme: Seatctl) -> None:
    holder = acme.new_user("--seat", "sales:professional")
    idle = acme.new_user()
    checked = acme.ok("seats", "check", "--hub", "sales", "--user", idle, "--user", holder, "--user", "usr_nobody")
    assert row(checked, "USER") == ["USER", "SALES", "TIER"]
    lines = checked.splitlines()
    assert [line.split() for line in lines[1:4]] == [[idle, "-"], [holder, "Professional"], ["usr_nobody", "-"]]
    last_event = acme.ok("events", "tail", "-q").split()[-1]
    assert lines[-1] == f"as of event {last_event}"
    assert acme.json("seats", "check", "--hub", "sales", "--user", holder)["sequence"] == last_event


# ---- -q -------------------------------------------------------------------------------------


def test_quiet_list_commands_print_only_ids_one_a_line(acme: Seatctl) -> None:
    ann = acme.new_user("--seat", "sales:professional", "--seat", "service:free")
    bob = acme.new_user()
    assert acme.ok("users", "list", "-q").splitlines() == sorted([acme.owner, ann, bob])
    assert acme.ok("users", "list", "--hub", "sales", "--quiet").splitlines() == [ann]
    assert acme.ok("seats", "list", "-q").splitlines() == [ann], "a user holding two seats is listed once"
    sequences = acme.ok("events", "tail", "-q").splitlines()
    assert sequences == [str(n) for n in range(1, len(sequences) + 1)]
    assert len(sequences) == len(acme.ok("events", "tail").splitlines()) - 1

    assert "do not go together" in usage_error(acme, "--json", "users", "list", "-q")


# ---- widths ---------------------------------------------------------------------------------


def test_tables_fit_100_columns_without_cutting_ids(acme: Seatctl) -> None:
    long_email = f"a.person.with.a.very.long.address.{unique_email('x')}".replace("@", "@subsidiary.example.")
    user = acme.new_user(
        "--super-admin",
        "--name",
        "Maximiliana Evangelina Bartholomew-Featherstonehaugh",
        "--edit-billing",
        "--account-access",
        "--seat",
        "sales:professional",
        "--seat",
        "service:free",
    )
    acme.ok("users", "update", "--user", user, "--email", long_email)
    acme.ok("accounts", "upgrade", "--hub", "service", "--tier", "professional", "--purchased", "1")
    acme.ok("seats", "remove", "--hub", "service", "--tier", "professional", "--quantity", "1")

    listing = acme.ok("users", "list")
    outputs = {
        "users list": listing,
        "invoice preview": acme.ok("invoice", "preview"),
        "seats summary": acme.ok("seats", "summary"),
        "seats list": acme.ok("seats", "list"),
        "accounts show": acme.ok("accounts", "show"),
    }
    for name, output in outputs.items():
        widest = max(output.splitlines(), key=len)
        assert len(widest) <= TABLE_WIDTH, f"{name} is {len(widest)} columns wide:\n{widest}"
    cells = row(listing, user)
    assert cells[0] == user, "ids are never cut"
    assert cells[1].endswith(CUT_MARK) and long_email.startswith(cells[1][:-1])
    assert long_email in acme.ok("users", "show", "--user", user), "users show gives everything"
    assert ISO_UTC.fullmatch(row(outputs["seats summary"], "Service")[-1]), "the widest pool row: a removal date"


def test_table_cuts_only_the_shrinkable_columns_and_leaves_narrow_tables_alone() -> None:
    narrow = table(("ID", "NAME"), [["usr_1", "Ann"]], shrink=(1,))
    assert narrow == ["ID     NAME", "usr_1  Ann"]
    wide = table(("ID", "NAME", "NOTE"), [["i" * 40, "n" * 60, "t" * 60]], shrink=(1, 2), width=100)
    assert all(len(line) <= 100 for line in wide)
    cells = wide[1].split()
    assert cells[0] == "i" * 40
    assert cells[1].endswith(CUT_MARK) and cells[2].endswith(CUT_MARK)
    assert abs(len(cells[1]) - len(cells[2])) <= 1, "the widest column narrows first"


# ---- --version and completion ---------------------------------------------------------------


def test_version_prints_the_client_package_version() -> None:
    done = run("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"seatctl {importlib.metadata.version('seats-client')}"


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_prints_a_script_that_knows_every_command(shell: str) -> None:
    done = subprocess.run(
        [*seatctl_command(), "completion", shell],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_SECONDS,
        check=False,
        env={"PATH": "/usr/bin:/bin", "SEATS_TARGET": f"127.0.0.1:{free_port()}"},  # no server needed
    )
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for word in (
        "accounts", "seats", "users", "events", "invoice", "completion",
        "upgrade", "batch", "check", "update", "assign", "tail",
        "--quiet", "--validate-only", "--no-edit-billing", "--change", "--account",
    ):  # fmt: skip
        assert word in script, f"the {shell} script does not mention {word}"
    if shell == "bash":
        assert "complete" in script
        checked = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr
    else:
        assert script.startswith("#compdef seatctl")
        zsh = shutil.which("zsh")
        if zsh:
            checked = subprocess.run([zsh, "-n"], input=script, capture_output=True, text=True, check=False)
            assert checked.returncode == 0, checked.stderr


def test_help_lists_the_new_commands() -> None:
    for noun, verbs in (("accounts", ("upgrade",)), ("seats", ("batch", "check")), ("users", ("update",))):
        done = run(noun, "--help")
        assert done.returncode == 0, done.stderr
        for verb in verbs:
            assert verb in done.stdout
    assert "completion" in run("--help").stdout
