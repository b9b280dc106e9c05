"""Twin calls (I5): one request, one request id, sent four times at the same moment, twice to each
of two server processes on one database. The request id is looked up under the account lock, so
every twin waits for the first call and gets its answer: the same response, or the same refusal,
and one effect. A call that names no account yet (CreateAccount) has no lock to wait on: a twin
gets the first answer or ABORTED CONCURRENT_CHANGE, never a second account."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.store import open_store
from tests.served import serving
from tests.toolkit import replay_log, unique_email

from .support import (
    SALES,
    SERVICE,
    STARTER,
    Answer,
    Client,
    Metadata,
    actor,
    all_events,
    all_users,
    call,
    call_at_once,
    check_answers_against_log,
    check_final_state,
    connected,
    new_request_id,
)

ROUNDS = 8
"""Rounds of twins per kind of call; each round is four calls with one request id."""


def twins(clients: list[Client], service: str, method: str, request: Message, metadata: Metadata = ()) -> list[Answer]:
    """The same request to the first, second, first and second server at once."""
    stubs = [getattr(getattr(c, service), method) for c in (*clients, *clients)]
    return call_at_once(stubs, request, op=method, metadata=metadata)


def alike(answers: list[Answer]) -> str | None:
    """What is wrong with a set of twin answers that should all be the first call's answer."""
    first = answers[0]
    for a in answers[1:]:
        if (a.code, a.reason, a.message, a.response) != (first.code, first.reason, first.message, first.response):
            return f"twins answered differently: {[x.describe() for x in answers]}"
    return None


@pytest.mark.slow
def test_twin_calls_on_two_servers_get_the_first_answer(db_url: str, tmp_path: Path) -> None:
    """CreateUser with a seat, UnassignSeat, and an AssignSeat refused for want of a seat, each sent
    as four twins: every twin gets the same answer, and the log holds each effect once."""
    with (
        serving(tmp_path, database_url=db_url) as first,
        serving(tmp_path, database_url=db_url) as second,
        connected(first.address) as a,
        connected(second.address) as b,
    ):
        account = a.seats.CreateAccount(
            seat_service_pb2.CreateAccountRequest(
                display_name="Twins",
                owner_email=unique_email("owner"),
                term_months=1,
                # Sales Starter: one seat, taken and given back each round; Service Starter: one
                # seat, held by a blocker so that assigning it is refused.
                subscriptions=[
                    resources_pb2.Subscription(hub=SALES, tier=STARTER),
                    resources_pb2.Subscription(hub=SERVICE, tier=STARTER),
                ],
                request_id=new_request_id("setup"),
            )
        ).account
        owner = actor(account.owner_user_id)
        blocker = call(
            a.users.CreateUser,
            user_service_pb2.CreateUserRequest(
                account_id=account.account_id,
                email=unique_email("blocker"),
                seats=[resources_pb2.SeatRef(hub=SERVICE, tier=STARTER)],
                request_id=new_request_id("setup"),
            ),
            op="setup_user",
            metadata=owner,
        )
        assert blocker.ok, blocker.describe()
        sent: list[Answer] = [blocker]
        problems: list[str] = []
        for _ in range(ROUNDS):
            created = twins(
                [a, b],
                "users",
                "CreateUser",
                user_service_pb2.CreateUserRequest(
                    account_id=account.account_id,
                    email=unique_email("twin"),
                    seats=[resources_pb2.SeatRef(hub=SALES, tier=STARTER)],
                    request_id=new_request_id("create"),
                ),
                owner,
            )
            sent += created
            problems += [p for p in [alike(created)] if p]
            if not created[0].ok:
                problems.append(f"CreateUser: {created[0].describe()}")
                break
            user_id = created[0].response.user.user_id
            refused = twins(
                [a, b],
                "seats",
                "AssignSeat",
                seat_service_pb2.AssignSeatRequest(
                    account_id=account.account_id,
                    user_id=user_id,
                    hub=SERVICE,
                    tier=STARTER,
                    request_id=new_request_id("full"),
                ),
                owner,
            )
            sent += refused
            problems += [p for p in [alike(refused)] if p]
            if refused[0].reason != "NO_SEAT_AVAILABLE":
                problems.append(f"AssignSeat on a full pool: {refused[0].describe()}")
            unassigned = twins(
                [a, b],
                "seats",
                "UnassignSeat",
                seat_service_pb2.UnassignSeatRequest(
                    account_id=account.account_id, user_id=user_id, hub=SALES, request_id=new_request_id("unassign")
                ),
                owner,
            )
            sent += unassigned
            problems += [p for p in [alike(unassigned)] if p]
            if not unassigned[0].ok:
                problems.append(f"UnassignSeat: {unassigned[0].describe()}")
        assert not problems, "\n".join(problems)

        log = replay_log(all_events(a, account.account_id))
        check_final_state(a, account.account_id, log)
        check_answers_against_log(sent, log)
        users = all_users(b, account.account_id)
        assert len(users) == 2 + ROUNDS, f"{len(users)} users: the owner, the blocker and one per round expected"


@pytest.mark.slow
def test_twin_account_creations_on_two_servers_make_one_account(db_url: str, tmp_path: Path) -> None:
    """CreateAccount names no account to lock: a twin gets the first answer or ABORTED
    CONCURRENT_CHANGE (a retry then gets the first answer), and one account is made."""
    with (
        serving(tmp_path, database_url=db_url) as first,
        serving(tmp_path, database_url=db_url) as second,
        connected(first.address) as a,
        connected(second.address) as b,
    ):
        names = []
        problems: list[str] = []
        for round_ in range(ROUNDS):
            name = f"Twin account {round_} {new_request_id('name')}"
            names.append(name)
            request = seat_service_pb2.CreateAccountRequest(
                display_name=name,
                owner_email=unique_email("owner"),
                term_months=1,
                subscriptions=[resources_pb2.Subscription(hub=SALES, tier=STARTER, purchased_seats=1)],
                request_id=new_request_id("open"),
            )
            answers = twins([a, b], "seats", "CreateAccount", request)
            ok = [x for x in answers if x.ok]
            others = [x.describe() for x in answers if not x.ok and x.reason != "CONCURRENT_CHANGE"]
            if not ok or others:
                problems.append(f"{name}: {[x.describe() for x in answers]}")
                continue
            problems += [p for p in [alike(ok)] if p]
            again = call(b.seats.CreateAccount, request, op="CreateAccount")
            if not again.ok or again.response != ok[0].response:
                problems.append(f"{name}: sent again: {again.describe()}")
        assert not problems, "\n".join(problems)

    store = open_store(db_url)
    try:
        for name in names:
            accounts = store.m.Account
            assert accounts.select().where(accounts.display_name == name).count() == 1, f"{name}: not one account"
    finally:
        store.close()
