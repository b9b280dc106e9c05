"""Tokens limited to accounts: a token whose tokens-file entry lists `accounts` acts on those
accounts only. Before, one actor-scoped token bought seats in two unrelated accounts, acting as
each owner."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from seats import RetryPolicy, SeatsClient

from service.auth import hash_token, load_tokens
from service.config import Config
from service.server import create_server
from service.store import open_store
from tests.conftest import BACKENDS, database_url
from tests.served import COMMAND_SECONDS, REPO
from tests.toolkit import code_and_reason

SYSTEM = "seats_accounts-test-system"
PORTAL = "seats_accounts-test-portal"  # actor scope, account A only
PROVISIONER = "seats_accounts-test-provisioner"  # system scope, account A only
ONE_TRY = RetryPolicy(max_attempts=1)


def entry(name: str, scope: str, token: str, accounts: list[str] | None = None) -> dict[str, object]:
    out: dict[str, object] = {"name": name, "scope": scope, "sha256": hash_token(token)}
    if accounts is not None:
        out["accounts"] = accounts
    return out


@contextmanager
def serving(url: str, tokens: Path) -> Iterator[str]:
    store = open_store(url)
    store.migrate()
    config = Config(address="127.0.0.1:0", sweep_interval_seconds=0, auth_tokens_file=str(tokens))
    server, port = create_server(replace(config, database_url=url), store=store)
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait()
        store.close()


@dataclass
class Setup:
    address: str
    a: str
    b: str
    owner_a: str
    owner_b: str


@pytest.fixture(params=BACKENDS)
def setup(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """Two unrelated accounts, then a server whose tokens file has an unlimited system token and
    two tokens limited to account A."""
    url = database_url(request.param, tmp_path_factory)
    directory = tmp_path_factory.mktemp("account-tokens")
    tokens = directory / "tokens.json"
    tokens.write_text(json.dumps({"tokens": [entry("system", "system", SYSTEM)]}))
    with serving(url, tokens) as address, SeatsClient(address, token=SYSTEM, retry=ONE_TRY) as system:
        a = system.create_account("A", "owner@a.test", [("sales", "starter", 0)]).account
        b = system.create_account("B", "owner@b.test", [("sales", "starter", 0)]).account
    tokens.write_text(
        json.dumps(
            {
                "tokens": [
                    entry("system", "system", SYSTEM),
                    entry("portal-a", "actor", PORTAL, [a.account_id]),
                    entry("provisioner-a", "system", PROVISIONER, [a.account_id]),
                ]
            }
        )
    )
    with serving(url, tokens) as address:
        yield Setup(address, a.account_id, b.account_id, a.owner_user_id, b.owner_user_id)


DENIED = (grpc.StatusCode.PERMISSION_DENIED, "TOKEN_NOT_FOR_ACCOUNT")


def test_an_account_limited_actor_token_cannot_act_in_another_account(setup: Setup) -> None:
    with SeatsClient(setup.address, token=PORTAL, retry=ONE_TRY) as portal:
        in_a = portal.with_actor(setup.owner_a)
        assert in_a.purchase_seats(setup.a, "sales", "starter", 1).pool.purchased == 1
        in_b = portal.with_actor(setup.owner_b)
        assert code_and_reason(lambda: in_b.purchase_seats(setup.b, "sales", "starter", 1)) == DENIED
        assert code_and_reason(lambda: in_b.get_seat_summary(setup.b)) == DENIED
        assert code_and_reason(lambda: in_b.list_users(setup.b)) == DENIED
        # An actor of account A naming account B is refused for the token first.
        assert code_and_reason(lambda: in_a.get_seat_summary(setup.b)) == DENIED
    with SeatsClient(setup.address, token=SYSTEM, retry=ONE_TRY) as system:
        assert system.get_seat_summary(setup.b).pools[0].purchased == 0, "account B changed"


def test_an_account_limited_system_token_cannot_create_accounts_or_reach_others(setup: Setup) -> None:
    with SeatsClient(setup.address, token=PROVISIONER, retry=ONE_TRY) as provisioner:
        assert provisioner.get_seat_summary(setup.a).pools[0].included == 1
        assert code_and_reason(lambda: provisioner.get_seat_summary(setup.b)) == DENIED
        assert (
            code_and_reason(lambda: provisioner.create_account("C", "owner@c.test", [("sales", "starter", 0)]))
            == DENIED
        )
        assert code_and_reason(lambda: list(provisioner.watch_seat_events(setup.b))) == DENIED


def test_an_unlimited_token_still_reaches_every_account(setup: Setup) -> None:
    with SeatsClient(setup.address, token=SYSTEM, retry=ONE_TRY) as system:
        assert system.get_seat_summary(setup.a).pools[0].included == 1
        assert system.get_seat_summary(setup.b).pools[0].included == 1


def test_the_tokens_file_refuses_an_empty_or_malformed_account_list(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    for accounts in ([], "acc_1", [""], [1]):
        path.write_text(
            json.dumps({"tokens": [{"name": "x", "scope": "actor", "sha256": "0" * 64, "accounts": accounts}]})
        )
        with pytest.raises(ValueError, match="accounts must be a non-empty list"):
            load_tokens(path)
    path.write_text(json.dumps({"tokens": [{"name": "x", "scope": "actor", "sha256": "0" * 64, "accounts": ["a"]}]}))
    assert load_tokens(path)[0].accounts == frozenset({"a"})


def test_new_token_limits_a_token_to_the_accounts_named() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "service.server", "new-token", "--name", "portal", "--scope", "actor",
         "--account", "acc_1", "--account", "acc_2"],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_SECONDS, check=True,
    )  # fmt: skip
    token, line = done.stdout.splitlines()
    assert json.loads(line) == {
        "name": "portal",
        "scope": "actor",
        "sha256": hash_token(token),
        "accounts": ["acc_1", "acc_2"],
    }
