"""The README's grpcurl walk-through, run as written against a fresh server: the seed story
(create an account, add users, assign until full, buy a seat, schedule a removal, see it
cancelled by a re-assignment) cannot drift from what the service does."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from tests.served import COMMAND_SECONDS, REPO, grpcurl_executable, serving


def walkthrough() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- walkthrough:start -->\n```sh\n(.*?)```\n<!-- walkthrough:end -->", readme, re.S)
    assert found, "README.md has no walk-through block"
    return found.group(1)


def json_documents(text: str) -> list[dict[str, object]]:
    """The JSON replies grpcurl printed, in order."""
    decoder = json.JSONDecoder()
    docs, i = [], 0
    while (start := text.find("{", i)) != -1:
        doc, i = decoder.raw_decode(text, start)
        docs.append(doc)
    return docs


def test_readme_walkthrough_runs_as_written(tmp_path: Path) -> None:
    with serving(tmp_path) as server:
        env = {
            **os.environ,
            "SEATS_ADDRESS": server.address,
            "PATH": f"{Path(grpcurl_executable()).parent}{os.pathsep}{os.environ['PATH']}",
        }
        done = subprocess.run(
            ["bash", "-e", "-c", walkthrough()],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS * 2,
            check=False,
        )
    assert done.returncode == 0, f"the walk-through failed:\n{done.stdout}\n{done.stderr}"
    # Step 4 is the one refusal: the pool was full.
    assert done.stderr.count("Code: FailedPrecondition") == 1
    assert '"reason":"NO_SEAT_AVAILABLE"' in done.stderr
    summaries = [d for d in json_documents(done.stdout) if "renewal_time" in d and "pools" in d]
    assert len(summaries) == 2
    full, after_reassignment = (s["pools"][0] for s in summaries)  # type: ignore[index]
    assert (full["included"], full["purchased"], full["assigned"]) == (2, 1, 3)
    assert "available" not in full  # 0: grpcurl leaves defaults out
    # S11: Cy's re-assignment cancelled the scheduled removal.
    assert (after_reassignment["purchased"], after_reassignment["assigned"]) == (2, 4)
    assert "pending_removal" not in after_reassignment
    removal = next(d for d in json_documents(done.stdout) if d.get("pool", {}).get("pending_removal") == 1)  # type: ignore[union-attr]
    assert removal["pool"]["removal_effective_time"] == summaries[1]["renewal_time"]  # type: ignore[index]


RULES = [f"S{n}" for n in range(1, 20)] + [f"I{n}" for n in range(1, 7)]


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
