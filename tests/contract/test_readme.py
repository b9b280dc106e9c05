"""The README's grpcurl walk-through, run as written against a fresh server: the seed story
(create an account, add users, assign until full, buy a seat, schedule a removal, see it
cancelled by a re-assignment) cannot drift from what the service does."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.served import COMMAND_SECONDS, REPO, grpcurl_executable, serving


def block(name: str, language: str = "sh") -> str:
    """The code block of README.md between the <!-- name:start --> and <!-- name:end --> markers."""
    readme = (REPO / "README.md").read_text()
    found = re.search(rf"<!-- {name}:start -->\n```{language}\n(.*?)```\n<!-- {name}:end -->", readme, re.S)
    assert found, f"README.md has no {name} block"
    return found.group(1)


def walkthrough() -> str:
    return block("walkthrough")


def json_documents(text: str) -> list[dict[str, Any]]:
    """The JSON replies grpcurl printed, in order (JSON of any shape, read by key)."""
    decoder = json.JSONDecoder()
    docs: list[dict[str, Any]] = []
    i = 0
    while (start := text.find("{", i)) != -1:
        doc, i = decoder.raw_decode(text, start)
        docs.append(doc)
    return docs


def run_shell(script: str, server_address: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SEATS_ADDRESS": server_address,
        "PATH": f"{Path(grpcurl_executable()).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS * 2,
        check=False,
    )


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        done = run_shell(walkthrough(), server.address, tmp_path)
    assert done.returncode == 0, f"the walk-through failed:\n{done.stdout}\n{done.stderr}"
    # Step 4 is the one refusal: the pool was full.
    assert done.stderr.count("Code: FailedPrecondition") == 1
    assert '"reason":"NO_SEAT_AVAILABLE"' in done.stderr
    summaries = [d for d in json_documents(done.stdout) if "renewal_time" in d and "pools" in d]
    assert len(summaries) == 2
    full, after_reassignment = (s["pools"][0] for s in summaries)
    assert (full["included"], full["purchased"], full["assigned"]) == (2, 1, 3)
    assert "available" not in full  # 0: grpcurl leaves defaults out
    # S11: Cy's re-assignment cancelled the scheduled removal.
    assert (after_reassignment["purchased"], after_reassignment["assigned"]) == (2, 4)
    assert "pending_removal" not in after_reassignment
    removal = next(d for d in json_documents(done.stdout) if d.get("pool", {}).get("pending_removal") == 1)
    assert removal["pool"]["removal_effective_time"] == summaries[1]["renewal_time"]


RULES = [f"S{n}" for n in range(1, 21)] + [f"I{n}" for n in range(1, 7)]


def test_readme_lists_an_existing_test_for_every_rule_and_invariant() -> None:
    readme = (REPO / "README.md").read_text()
    for rule in RULES:
        row = re.search(rf"^\| {rule} \|[^|]*\|(.*)\|$", readme, re.M)
        assert row, f"README.md has no row for {rule}"
        listed = re.findall(r"`(tests/[\w/]+\.py)::(test_\w+)`", row.group(1))
        assert listed, f"README.md lists no test for {rule}"
        for path, name in listed:
            assert f"def {name}(" in (REPO / path).read_text(), f"README.md names {path}::{name}, which does not exist"
            assert name.startswith(f"test_{rule.lower()}_") or name.startswith("test_i1_i2_"), name


def test_readme_shows_every_rpc_as_a_grpcurl_call_and_each_runs(tmp_path: Path) -> None:
    from seats.v1 import seat_service_pb2, user_service_pb2

    script = walkthrough() + block("every-rpc")
    shown = script + block("waiting-list")  # the seat-request RPCs: run by the waiting-list test below
    for module in (seat_service_pb2, user_service_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                assert f"{service.name}/{method.name}" in shown, f"README.md shows no grpcurl call of {method.name}"
    with serving(tmp_path) as server:
        done = run_shell(script, server.address, tmp_path)
    assert done.returncode == 0, f"the grpcurl calls failed:\n{done.stdout}\n{done.stderr}"
    # Every call but the two that are meant to stop (the full pool, the watch's -max-time) answered.
    assert done.stderr.count("ERROR:") == 2
    assert "Code: DeadlineExceeded" in done.stderr
    replies = json_documents(done.stdout)
    assert any(r.get("user", {}).get("display_name") == "Cy Young" for r in replies)
    (billed,) = [r["invoice"] for r in replies if "invoice" in r]
    assert (billed["number"], billed["total"]["units"]) == ("1", "20")  # a month of the Starter plan
    assert any(r.get("proposed_charges") for r in replies)
    outcomes = [x["outcome"] for r in replies for x in r.get("results", [])]
    assert outcomes == ["SEAT_CHANGE_OUTCOME_ASSIGNED", "SEAT_CHANGE_OUTCOME_UNASSIGNED"]
    watched = [int(r["event"]["sequence"]) for r in replies if "event" in r]
    assert watched and watched == list(range(21, 21 + len(watched)))


def test_readme_waiting_list_story_runs_as_written(tmp_path: Path) -> None:
    """A full pool, two requests approved into its waiting list, a seat unassigned: the older request
    gets the seat in that same transaction, and the event log shows it right after the unassign."""
    with serving(tmp_path) as server:
        done = run_shell(walkthrough() + block("waiting-list"), server.address, tmp_path)
    assert done.returncode == 0, f"the waiting-list story failed:\n{done.stdout}\n{done.stderr}"
    replies = json_documents(done.stdout)
    approvals = [r["seat_request"] for r in replies if "seat_request" in r and "pool" in r]
    assert [a["state"] for a in approvals] == ["SEAT_REQUEST_STATE_WAITING"] * 2
    eve_asks, fay_asks = (a["seat_request_id"] for a in approvals)
    waiting = next(r["seat_requests"] for r in replies if "seat_requests" in r)
    assert [q["seat_request_id"] for q in waiting] == [eve_asks, fay_asks]  # oldest first
    log = next(r["events"] for r in replies if "events" in r and r["events"][0].get("request_id") == "free-bobs-seat")
    assert [(e["type"], e.get("seat_request_id", "")) for e in log] == [
        ("SEAT_EVENT_TYPE_SEAT_UNASSIGNED", ""),
        ("SEAT_EVENT_TYPE_SEAT_ASSIGNED", eve_asks),
    ]
    assert {e["request_id"] for e in log} == {"free-bobs-seat"}
    assert int(log[1]["sequence"]) == int(log[0]["sequence"]) + 1
    everyone = [r["seat_requests"] for r in replies if "seat_requests" in r][1]
    assert [q["state"] for q in everyone] == ["SEAT_REQUEST_STATE_GRANTED", "SEAT_REQUEST_STATE_WAITING"]
    pool = next(r["pools"][0] for r in replies if "pools" in r and r["pools"][0].get("waiting_requests"))
    assert (pool["assigned"], pool["waiting_requests"], pool.get("available", 0)) == (4, 1, 0)
    denied = replies[-1]["seat_request"]
    assert (denied["seat_request_id"], denied["state"]) == (fay_asks, "SEAT_REQUEST_STATE_DENIED")


def test_readme_invoices_example_runs(tmp_path: Path) -> None:
    """The Invoices section's block, as written, against a fresh server."""
    with serving(tmp_path) as server:
        out = run_client_example(sys.executable, server.address, tmp_path, "invoices")
    assert out.splitlines() == [
        "invoice 1: 2 lines, 60.00 USD",
        "invoice 2: 2 lines, 60.00 USD",
        "3 seats now: 3 x Sales Starter seat - prorated: True",
        "next renewal with them: 120.00 USD",
        "still bought: 2",
    ]


def run_client_example(python: str, server_address: str, cwd: Path, name: str = "client-example") -> str:
    """Runs the README's Python block `name` against the server; its output."""
    done = subprocess.run(
        [python, "-c", block(name, "python")],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "SEATS_TARGET": server_address},
        timeout=COMMAND_SECONDS,
        check=False,
    )
    assert done.returncode == 0, f"the client example failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def check_client_example_output(out: str) -> None:
    lines = out.splitlines()
    assert "refused: NO_SEAT_AVAILABLE 1" in lines
    assert "charged: 20 USD" in lines  # a month of Sales Starter, bought at the start of the term
    assert "pool: 1 purchased, 2 assigned" in lines
    assert "users: ['owner@globex.test', 'ann@globex.test', 'bob@globex.test']" in lines
    assert "events: [1, 2, 3, 4, 5, 6, 7, 8]" in lines


def test_readme_client_example_runs(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        check_client_example_output(run_client_example(sys.executable, server.address, tmp_path))


def test_readme_client_example_runs_with_only_the_client_distribution(tmp_path: Path) -> None:
    """The client distribution stands alone: a fresh virtual environment with only it (and
    what it depends on) installed runs the README example; the server package is not there."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=COMMAND_SECONDS)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO / "clients" / "python")],
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS * 5,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    probe = subprocess.run(
        [python, "-c", "import importlib.util as u; print(u.find_spec('service'), u.find_spec('peewee'))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        check=True,
    )
    assert probe.stdout.split() == ["None", "None"]
    assert (venv / "bin" / "seatctl").exists()
    with serving(tmp_path) as server:
        check_client_example_output(run_client_example(python, server.address, tmp_path))


def test_readme_idle_seats_example_runs(tmp_path: Path) -> None:
    """The Idle seats section's block, as written, against a fresh server."""
    with serving(tmp_path) as server:
        out = run_client_example(sys.executable, server.address, tmp_path, "idle-seats")
    assert out.splitlines() == [
        "recorded: 2 skipped: 0",
        "idle since now: ['cy']",
        "would reclaim: []",
        "policy: 30 days",
    ]
