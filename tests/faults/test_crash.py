"""kill -9 in the middle of a write load, then a restart on the same database: every write answered
OK before the kill is there, nothing is half-written (I1, I2, the assignments, the charges and the
event log agree), and re-sending every request id after the restart returns the first result
without a second effect (I5), so the lost answers can be reconciled exactly."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.message import Message
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.served import ServerProcess, free_port, launch, wait_until_serving
from tests.toolkit import PoolKey, pool_name, replay_log, unique_email

from .support import (
    CALL_SECONDS,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Answer,
    Client,
    actor,
    all_events,
    all_users,
    call,
    check_answers_against_log,
    check_final_state,
    connected,
    expected_events,
    new_request_id,
    raw_store_text,
    tally,
)

pytestmark = pytest.mark.slow

WRITERS = 8
CYCLES = 4
"""Kill and restart this many times, each in the middle of a load."""
KILL_AFTER_OK = 40
"""Kill once this many writes of the cycle were answered OK..."""
KILL_LATEST_SECONDS = 20.0
"""...or after this long, whichever comes first."""
MAX_CALLS_PER_WRITER = 400
JOIN_SECONDS = CALL_SECONDS + 10
POOLS = ((SALES, PROFESSIONAL), (SERVICE, STARTER))


@dataclass
class Load:
    """The writes of one cycle, and the users created OK whose seat is still to give."""

    owner: tuple[tuple[str, str], ...]
    account_id: str
    seatless: list[str]
    rng: random.Random
    answers: list[Answer] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def ok_count(self) -> int:
        with self.lock:
            return sum(1 for a in self.answers if a.ok)

    def next_call(self, client: Client) -> tuple[str, Callable[..., Any], Message]:
        with self.lock:
            kind = self.rng.choice(["purchase", "create_user", "assign"])
            user = self.seatless.pop() if kind == "assign" and self.seatless else None
            quantity = self.rng.randint(1, 3)
            with_seat = self.rng.random() < 0.5
        rid = new_request_id("crash")
        if kind == "purchase":
            return kind, client.seats.PurchaseSeats, seat_service_pb2.PurchaseSeatsRequest(
                account_id=self.account_id, hub=SALES, tier=PROFESSIONAL, quantity=quantity, request_id=rid
            )
        if kind == "assign" and user is not None:
            return kind, client.seats.AssignSeat, seat_service_pb2.AssignSeatRequest(
                account_id=self.account_id, user_id=user, hub=SALES, tier=PROFESSIONAL,
                purchase_if_needed=True, request_id=rid,
            )
        return "create_user", client.users.CreateUser, user_service_pb2.CreateUserRequest(
            account_id=self.account_id, email=unique_email("crash"),
            seats=[resources_pb2.SeatRef(hub=SERVICE, tier=STARTER)] if with_seat else [],
            purchase_if_needed=True, request_id=rid,
        )

    def write(self, client: Client) -> None:
        for _ in range(MAX_CALLS_PER_WRITER):
            if self.stop.is_set():
                return
            op, method, request = self.next_call(client)
            answer = call(method, request, op=op, metadata=self.owner, timeout=CALL_SECONDS)
            with self.lock:
                self.answers.append(answer)
                if answer.ok and op == "create_user" and not created_seats(answer):
                    self.seatless.append(answer.response.user.user_id)
            if not answer.ok:
                return


def start(directory: Path, port: int, url: str, servers: list[ServerProcess]) -> ServerProcess:
    server = launch(directory, port=port, database_url=url)
    servers.append(server)
    wait_until_serving(server)
    return server


def resend(client: Client, answer: Answer, owner: tuple[tuple[str, str], ...]) -> Answer:
    """The same request, same request id and actor, to the restarted server."""
    stub = client.users if isinstance(answer.request, user_service_pb2.CreateUserRequest) else client.seats
    method = getattr(stub, type(answer.request).__name__.removesuffix("Request"))
    return call(method, answer.request, op=answer.op, metadata=owner)


def created_seats(answer: Answer) -> list[resources_pb2.SeatRef]:
    """The seats a CreateUser call asked for."""
    assert isinstance(answer.request, user_service_pb2.CreateUserRequest), answer.request
    return list(answer.request.seats)


def created_email(answer: Answer) -> str:
    """The email a CreateUser call gave."""
    assert isinstance(answer.request, user_service_pb2.CreateUserRequest), answer.request
    return answer.request.email


def summary(client: Client, account_id: str) -> dict[PoolKey, resources_pb2.SeatPool]:
    response = client.seats.GetSeatSummary(
        seat_service_pb2.GetSeatSummaryRequest(account_id=account_id), timeout=CALL_SECONDS
    )
    return {(p.hub, p.tier): p for p in response.pools}


def bought(answers: list[Answer]) -> Counter[tuple[int, int]]:
    """Seats bought per pool, by what OK answers say their calls did."""
    seats: Counter[tuple[int, int]] = Counter()
    for a in answers:
        for (kind, _, hub, tier, _, quantity), n in expected_events(a).items():
            if kind == "SEATS_PURCHASED":
                seats[(hub, tier)] += quantity * n
    return seats


def purchased_by(log_events: list[resources_pb2.SeatEvent], request_ids: set[str]) -> Counter[tuple[int, int]]:
    bought: Counter[tuple[int, int]] = Counter()
    for e in log_events:
        if e.type == resources_pb2.SEAT_EVENT_TYPE_SEATS_PURCHASED and e.request_id in request_ids:
            bought[(e.hub, e.tier)] += e.quantity
    return bought


def test_kill_9_during_writes_loses_no_answered_write_and_half_writes_nothing(db_url: str, tmp_path: Path) -> None:
    """SIGKILL the server while writers run; restart it on the same database; check durability of
    every OK answer, the invariants, the charges against the events, and I5 by re-sending every id."""
    began = time.monotonic()
    port = free_port()
    servers: list[ServerProcess] = []
    figures: list[str] = []
    try:
        server = start(tmp_path, port, db_url, servers)
        with connected(server.address) as client:
            created = client.seats.CreateAccount(
                seat_service_pb2.CreateAccountRequest(
                    display_name="Crash", owner_email=unique_email("owner"), term_months=1,
                    subscriptions=[resources_pb2.Subscription(hub=h, tier=t) for h, t in POOLS],
                ),
                timeout=CALL_SECONDS,
            )
        account = created.account
        owner = actor(account.owner_user_id)
        initial = {(p.hub, p.tier): p.purchased_seats for p in account.subscriptions}
        seatless: list[str] = []
        every_retry: list[Answer] = []
        for cycle in range(1, CYCLES + 1):
            load = Load(owner, account.account_id, seatless, random.Random(cycle))
            with connected(server.address) as client:
                writers = [
                    threading.Thread(target=load.write, args=(client,), name=f"writer-{i}", daemon=True)
                    for i in range(WRITERS)
                ]
                for w in writers:
                    w.start()
                deadline = time.monotonic() + KILL_LATEST_SECONDS
                while load.ok_count < KILL_AFTER_OK and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(load.rng.uniform(0, 0.05))
                killed_at = time.monotonic()
                server.kill()  # SIGKILL: no shutdown hook, no rollback of anything by the server
                load.stop.set()
                for w in writers:
                    w.join(timeout=JOIN_SECONDS)
                assert not any(w.is_alive() for w in writers), f"a writer still runs {JOIN_SECONDS}s after the kill"
            answers = list(load.answers)
            stats = tally(answers)
            before_kill = [a for a in answers if a.started + a.seconds < killed_at]
            refused = [a.describe() for a in before_kill if not a.ok]
            assert not refused, "writes refused while the server ran:\n" + "\n".join(refused[:10]) + f"\n{stats}"
            leaks = [a.describe() for a in answers if raw_store_text(a)]
            assert not leaks, "raw database text reached clients:\n" + "\n".join(leaks[:10])
            in_flight = [a for a in answers if not a.ok]

            server = start(tmp_path, port, db_url, servers)
            with connected(server.address) as client:
                log = replay_log(all_events(client, account.account_id))
                state = f"cycle {cycle}: {stats} | events {log.last}"
                check_final_state(client, account.account_id, log, state)
                ok = [a for a in answers if a.ok]
                # Durability: every OK answer's effect is in the log, exactly as answered.
                missing = [a.describe() for a in ok if a.request_id not in log.by_request]
                assert not missing, "writes answered OK before the kill are gone after the restart:\n" + "\n".join(
                    missing[:10]
                ) + f"\n{state}"
                check_answers_against_log(ok, log, state)
                committed = {a.request_id for a in answers if a.request_id in log.by_request}
                lost_answers = [a for a in in_flight if a.request_id in committed]
                users = {u.user_id: u for u in all_users(client, account.account_id)}
                for a in ok:
                    if a.op == "create_user":
                        u = users.get(a.response.user.user_id)
                        assert u is not None and u.email == created_email(a), (
                            f"user of an OK CreateUser is missing or changed: {a.response.user.user_id}\n{state}"
                        )
                created_in_log = {e.user_id for e in log.events if e.type == resources_pb2.SEAT_EVENT_TYPE_USER_CREATED}
                assert set(users) == created_in_log, (  # the owner's USER_CREATED comes with the account
                    f"users and USER_CREATED events disagree: {len(users)} users, {len(created_in_log)} events\n{state}"
                )
                pools_before = summary(client, account.account_id)
                # Half-written transactions: the charges are written with the events, in one transaction.
                invoice = client.seats.PreviewInvoice(
                    seat_service_pb2.PreviewInvoiceRequest(account_id=account.account_id), timeout=CALL_SECONDS
                )
                charged = Counter[tuple[int, int]]()
                for c in invoice.current_term_charges:
                    if c.kind == resources_pb2.CHARGE_KIND_PRORATED_SEATS:
                        charged[(c.hub, c.tier)] += c.quantity
                assert charged == purchased_by(log.events, {e.request_id for e in log.events}), (
                    f"prorated seat charges {dict(charged)} != SEATS_PURCHASED events "
                    f"{dict(purchased_by(log.events, {e.request_id for e in log.events}))}\n{state}"
                )

                # I5 across the crash: every request id of the cycle, sent again, returns its first result once.
                retries = [resend(client, a, owner) for a in answers]
                failed = [r.describe() for r in retries if not r.ok]
                assert not failed, "re-sent requests failed after the restart:\n" + "\n".join([*failed[:10], state])
                for a, r in zip(answers, retries, strict=True):
                    if a.ok:
                        assert r.response == a.response, (
                            f"I5: {a.request_id} ({a.op}) answered OK before the kill, and now differently:\n"
                            f"{a.response}\n{r.response}\n{state}"
                        )
                    if a.op == "create_user" and not created_seats(a) and not a.ok:
                        seatless.append(r.response.user.user_id)
                after = replay_log(all_events(client, account.account_id))
                check_final_state(client, account.account_id, after, state)
                check_answers_against_log(retries, after, state)
                for request_id in committed:
                    assert after.events_of(request_id) == log.events_of(request_id), (
                        f"I5: re-sending {request_id}, whose effect committed before the kill, changed its events\n"
                        + state
                    )
                # Purchases reconciled: the first result of every id says what it bought (E); before the
                # re-sending, purchased is E summed over the ids whose effect committed (at least the OK
                # ones); after it, E summed over every id: each purchase had its effect exactly once.
                prior = bought(every_retry)
                pools_after = summary(client, account.account_id)
                for key in pools_after:
                    was, now = pools_before[key].purchased - initial[key], pools_after[key].purchased - initial[key]
                    want_committed = prior[key] + bought([r for r in retries if r.request_id in committed])[key]
                    want_ok = prior[key] + bought([r for r, a in zip(retries, answers, strict=True) if a.ok])[key]
                    want_all = prior[key] + bought(retries)[key]
                    where = f"{pool_name(key)} purchased before re-sending {was}, after {now} (+ {initial[key]})"
                    assert was >= want_ok, f"{where}: below the {want_ok} seats of OK purchases\n{state}"
                    assert was == want_committed, f"{where}: != {want_committed} seats of committed ids\n{state}"
                    assert now == want_all, f"{where}: != {want_all} seats of every id, each once\n{state}"
                every_retry.extend(retries)
                replayed = len(committed)
                figures.append(
                    f"cycle {cycle}: {stats} | answered OK before the kill {len(ok)}, all found after the restart | "
                    f"in flight at the kill {len(in_flight)}, of which committed (lost answers) {len(lost_answers)} | "
                    f"re-sent {len(retries)}: {replayed} returned the first result, {len(retries) - replayed} took "
                    f"effect now, once | events {after.last}, no gap"
                )
                print(f"\n[crash {db_url.split(':')[0]}] {figures[-1]}")
        print(f"[crash {db_url.split(':')[0]}] {CYCLES} kills, {time.monotonic() - began:.1f}s in all")
    finally:
        for s in servers:
            s.kill()
