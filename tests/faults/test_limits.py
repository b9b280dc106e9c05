"""The server's limits hold under pressure: messages over --max-message-bytes are refused with
RESOURCE_EXHAUSTED (requests and responses alike), a page_size above the cap returns at most 1000
items and paging still returns everything once, --max-concurrent-rpcs refuses calls beyond the
limit instead of queueing them forever, and a call against a busy server ends DEADLINE_EXCEEDED on
time. The transport limits do not depend on the database, so those tests run on SQLite only."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.store import open_store
from tests.conftest import BACKENDS, database_url
from tests.served import ServerProcess, serving
from tests.toolkit import cancel, describe, replay_log, unique_email

from .support import (
    CALL_SECONDS,
    ENTERPRISE,
    SALES,
    Answer,
    Client,
    actor,
    all_events,
    call,
    connected,
    list_all,
    new_request_id,
)

MAX_PAGE = 1000
BIG_USERS = MAX_PAGE + 5
"""Users of the big account, each holding a seat: more users, assignments and events than one page holds."""
CREATE_THREADS = 4
SMALL_MESSAGE_BYTES = 64 * 1024
DEADLINE = 0.5
DEADLINE_MARGIN = 0.5
"""A call with DEADLINE seconds must end within DEADLINE + DEADLINE_MARGIN."""
PROMPT_SECONDS = 1.0
"""A refusal for a limit comes at once: well within this."""
RECOVER_SECONDS = 10.0


@dataclass
class Big:
    url: str
    server: ServerProcess
    account_id: str
    owner: tuple[tuple[str, str], ...]
    directory: Path


@pytest.fixture(scope="module", params=BACKENDS)
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    """An account with BIG_USERS users, each given a Sales Enterprise seat in the create call (the
    seat bought with it, S14): > 1000 users, > 1000 assignments and > 3000 events."""
    url = database_url(request.param, tmp_path_factory)
    directory = tmp_path_factory.mktemp("big")
    try:
        with serving(directory, database_url=url) as server, connected(server.address) as client:
            account = client.seats.CreateAccount(
                seat_service_pb2.CreateAccountRequest(
                    display_name="Big", owner_email=unique_email("owner"), term_months=1,
                    subscriptions=[resources_pb2.Subscription(hub=SALES, tier=ENTERPRISE)],
                ),
                timeout=CALL_SECONDS,
            ).account
            owner = actor(account.owner_user_id)

            def create(n: int) -> str:
                answer = call(client.users.CreateUser, user_service_pb2.CreateUserRequest(
                    account_id=account.account_id, email=f"user-{n:05d}@big.test",
                    seats=[resources_pb2.SeatRef(hub=SALES, tier=ENTERPRISE)], purchase_if_needed=True,
                    request_id=new_request_id("big"),
                ), op="create_user", metadata=owner)
                return "" if answer.ok else answer.describe()

            with ThreadPoolExecutor(max_workers=CREATE_THREADS) as pool:
                failed = [f for f in pool.map(create, range(BIG_USERS), timeout=300) if f]
            assert not failed, failed[:5]
            yield Big(url, server, account.account_id, owner, directory)
    finally:
        if url.startswith("postgres"):
            store = open_store(url)
            store.drop_schema()
            store.close()


@pytest.mark.slow
def test_page_size_above_the_cap_returns_at_most_1000_and_paging_returns_everything_once(big: Big) -> None:
    """AIP-158: page_size is capped at 1000; a larger one is not an error and not a bigger page, and
    paging with it still returns every item exactly once."""
    with connected(big.server.address) as client:
        for page_size in (MAX_PAGE + 1, 5000, 2**31 - 1):
            users = client.users.ListUsers(
                user_service_pb2.ListUsersRequest(account_id=big.account_id, page_size=page_size),
                metadata=big.owner, timeout=CALL_SECONDS,
            )
            assert len(users.users) == MAX_PAGE and users.next_page_token, (page_size, len(users.users))
            seats = client.seats.ListSeatAssignments(
                seat_service_pb2.ListSeatAssignmentsRequest(account_id=big.account_id, page_size=page_size),
                timeout=CALL_SECONDS,
            )
            assert len(seats.assignments) == MAX_PAGE and seats.next_page_token, (page_size, len(seats.assignments))
            events = client.seats.ListSeatEvents(
                seat_service_pb2.ListSeatEventsRequest(account_id=big.account_id, page_size=page_size),
                timeout=CALL_SECONDS,
            )
            assert len(events.events) == MAX_PAGE and events.next_page_token, (page_size, len(events.events))
        every_user = list_all(client.users.ListUsers, lambda t: user_service_pb2.ListUsersRequest(
            account_id=big.account_id, page_size=5000, page_token=t), "users", big.owner)
        ids = [u.user_id for u in every_user]
        assert len(ids) == len(set(ids)) == BIG_USERS + 1, f"{len(ids)} users listed, {len(set(ids))} distinct"
        every_seat = list_all(client.seats.ListSeatAssignments, lambda t: seat_service_pb2.ListSeatAssignmentsRequest(
            account_id=big.account_id, page_size=5000, page_token=t), "assignments")
        assert len({(a.user_id, a.hub) for a in every_seat}) == len(every_seat) == BIG_USERS
        every_event = all_events(client, big.account_id)
        replay_log(every_event)  # I3, I4: numbered 1..n without gaps, every pool event adds up
        assert len(every_event) > 2 * BIG_USERS  # each user: USER_CREATED, SEAT_ASSIGNED, mostly SEATS_PURCHASED
        print(f"\n[limits {big.url.split(':')[0]}] page cap: {len(ids)} users, {len(every_seat)} assignments, "
              f"{len(every_event)} events; page_size 1001 / 5000 / 2^31-1 give 1000 items each")


@pytest.mark.slow
def test_messages_over_max_message_bytes_are_resource_exhausted(big: Big) -> None:
    """--max-message-bytes bounds requests and responses: a larger request, or a page whose response
    would be larger, gets RESOURCE_EXHAUSTED at once (not UNKNOWN, INTERNAL or a hang), smaller ones
    are served, and the server serves on. Runs a second server on the big account's database."""
    flags = ("--max-message-bytes", str(SMALL_MESSAGE_BYTES))
    with serving(big.directory, database_url=big.url, flags=flags) as server, connected(server.address) as client:
        warm = call(client.users.ListUsers, user_service_pb2.ListUsersRequest(account_id=big.account_id, page_size=1),
                    op="list_users", metadata=big.owner)  # the connection is up before anything is timed
        assert warm.ok, warm.describe()
        big_name = "x" * (SMALL_MESSAGE_BYTES + 1024)
        request = user_service_pb2.CreateUserRequest(
            account_id=big.account_id, email=unique_email("huge"), display_name=big_name,
            request_id=new_request_id("huge"),
        )
        assert request.ByteSize() > SMALL_MESSAGE_BYTES
        huge = call(client.users.CreateUser, request, op="create_user", metadata=big.owner)
        assert huge.code == "RESOURCE_EXHAUSTED", huge.describe()
        assert huge.seconds < PROMPT_SECONDS, huge.describe()

        small = call(client.users.CreateUser, user_service_pb2.CreateUserRequest(
            account_id=big.account_id, email=unique_email("small"), display_name="x" * (SMALL_MESSAGE_BYTES // 2),
            request_id=new_request_id("small"),
        ), op="create_user", metadata=big.owner)
        assert small.code != "RESOURCE_EXHAUSTED" and small.code not in ("UNKNOWN", "INTERNAL"), small.describe()

        whole_page = call(client.users.ListUsers, user_service_pb2.ListUsersRequest(
            account_id=big.account_id, page_size=MAX_PAGE), op="list_users", metadata=big.owner)
        assert whole_page.code == "RESOURCE_EXHAUSTED", (
            f"a page of {MAX_PAGE} users is larger than {SMALL_MESSAGE_BYTES} bytes: {whole_page.describe()}"
        )
        small_page = call(client.users.ListUsers, user_service_pb2.ListUsersRequest(
            account_id=big.account_id, page_size=50), op="list_users", metadata=big.owner)
        assert small_page.ok and len(small_page.response.users) == 50, small_page.describe()
        assert server.process.poll() is None
    with connected(big.server.address) as default_client:  # pages of 1000 events are over the small limit
        assert huge.request_id not in {e.request_id for e in all_events(default_client, big.account_id)}
        print(f"\n[limits {big.url.split(':')[0]}] --max-message-bytes {SMALL_MESSAGE_BYTES}: request of "
              f"{request.ByteSize()} B -> {huge.code} in {huge.seconds:.3f}s; request of "
              f"{SMALL_MESSAGE_BYTES // 2} B -> {small.outcome}; page of {MAX_PAGE} users -> {whole_page.code}; "
              f"page of 50 -> OK")


class Watches:
    """WatchSeatEvents streams: each admitted one holds a handler thread for as long as it is open."""

    def __init__(self, client: Client, account_id: str, count: int) -> None:
        request = seat_service_pb2.WatchSeatEventsRequest(account_id=account_id)
        self.streams = [client.seats.WatchSeatEvents(request, timeout=60) for _ in range(count)]
        self.outcomes: list[str] = []
        for stream in self.streams:  # the first event proves the handler runs (the log is not empty)
            try:
                next(iter(stream))
                self.outcomes.append("OK")
            except grpc.RpcError as err:
                code, reason, _ = describe(err)
                self.outcomes.append(reason or code)

    def close(self) -> None:
        for stream in self.streams:
            cancel(stream)


def wait_until_ok(client: Client, account_id: str) -> float:
    """Seconds until a call succeeds again; fails after RECOVER_SECONDS."""
    began = time.monotonic()
    last = ""
    while time.monotonic() - began < RECOVER_SECONDS:
        answer = call(client.seats.GetSeatSummary, seat_service_pb2.GetSeatSummaryRequest(account_id=account_id),
                      op="summary", timeout=2.0)
        if answer.ok:
            return time.monotonic() - began
        last = answer.describe()
        time.sleep(0.1)
    pytest.fail(f"the server did not serve again within {RECOVER_SECONDS}s: {last}")


def make_account(client: Client) -> resources_pb2.Account:
    return client.seats.CreateAccount(
        seat_service_pb2.CreateAccountRequest(
            display_name="Busy", owner_email=unique_email("owner"), term_months=1,
            subscriptions=[resources_pb2.Subscription(hub=SALES, tier=ENTERPRISE)],
        ),
        timeout=CALL_SECONDS,
    ).account


@pytest.mark.slow
def test_calls_beyond_max_concurrent_rpcs_get_resource_exhausted_instead_of_queueing(tmp_path: Path) -> None:
    """With --max-concurrent-rpcs 2 --max-workers 2, a burst of watches (slow calls that hold their
    handler) takes both slots; every further call, streaming or unary, read or write, is refused
    with RESOURCE_EXHAUSTED at once, with no effect, and the server serves again once they end."""
    flags = ("--max-concurrent-rpcs", "2", "--max-workers", "2")
    with serving(tmp_path, flags=flags) as server, connected(server.address) as client:
        account = make_account(client)
        owner = actor(account.owner_user_id)
        watches = Watches(client, account.account_id, 4)
        try:
            assert sorted(watches.outcomes) == ["OK", "OK", *["TOO_MANY_CALLS"] * 2], watches.outcomes
            purchase = seat_service_pb2.PurchaseSeatsRequest(
                account_id=account.account_id, hub=SALES, tier=ENTERPRISE, quantity=1, request_id=new_request_id("cap")
            )
            refused = [
                call(client.seats.GetSeatSummary, seat_service_pb2.GetSeatSummaryRequest(account_id=account.account_id),
                     op="summary", timeout=5.0)
                for _ in range(5)
            ]
            refused += [
                call(client.seats.PurchaseSeats, purchase, op="purchase", metadata=owner, timeout=5.0) for _ in range(3)
            ]
            with ThreadPoolExecutor(max_workers=8) as pool:
                refused += list(pool.map(
                    lambda _: call(client.users.ListUsers, user_service_pb2.ListUsersRequest(
                        account_id=account.account_id), op="list_users", metadata=owner, timeout=5.0),
                    range(16), timeout=60,
                ))
            wrong = [a.describe() for a in refused if a.code != "RESOURCE_EXHAUSTED" or a.seconds >= PROMPT_SECONDS]
            assert not wrong, "calls beyond the limit were not refused at once:\n" + "\n".join(wrong[:10])
        finally:
            watches.close()
        recovered = wait_until_ok(client, account.account_id)
        events = all_events(client, account.account_id)
        assert purchase.request_id not in {e.request_id for e in events}, "a refused purchase took effect"
        print(f"\n[limits] --max-concurrent-rpcs 2: watches {watches.outcomes}; {len(refused)} further calls all "
              f"RESOURCE_EXHAUSTED (slowest {max(a.seconds for a in refused):.3f}s); serving again "
              f"{recovered:.2f}s after the watches closed")
        assert server.process.poll() is None


@pytest.mark.slow
def test_a_short_deadline_against_a_busy_server_ends_deadline_exceeded_on_time(tmp_path: Path) -> None:
    """With --max-workers 2 held by two watches, a call is admitted but waits for a thread: with a
    0.5 s deadline it ends DEADLINE_EXCEEDED within the deadline plus a small margin; a write cut
    short that way can be re-sent with its request id and has its effect once (I5)."""
    flags = ("--max-workers", "2", "--max-concurrent-rpcs", "16")
    with serving(tmp_path, flags=flags) as server, connected(server.address) as client:
        account = make_account(client)
        owner = actor(account.owner_user_id)
        watches = Watches(client, account.account_id, 2)
        purchase = seat_service_pb2.PurchaseSeatsRequest(
            account_id=account.account_id, hub=SALES, tier=ENTERPRISE, quantity=1, request_id=new_request_id("late")
        )
        try:
            assert watches.outcomes == ["OK", "OK"], watches.outcomes
            late = [
                call(client.seats.GetSeatSummary, seat_service_pb2.GetSeatSummaryRequest(account_id=account.account_id),
                     op="summary", timeout=DEADLINE),
                call(client.seats.PurchaseSeats, purchase, op="purchase", metadata=owner, timeout=DEADLINE),
            ]
            results: list[Answer] = []
            threads = [threading.Thread(target=lambda: results.append(call(
                client.users.ListUsers, user_service_pb2.ListUsersRequest(account_id=account.account_id),
                op="list_users", metadata=owner, timeout=DEADLINE))) for _ in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=DEADLINE + 10)
            late += results
        finally:
            watches.close()
        wrong = [a.describe() for a in late if a.code != "DEADLINE_EXCEEDED" or a.seconds > DEADLINE + DEADLINE_MARGIN]
        assert len(late) == 6 and not wrong, (
            f"calls with a {DEADLINE}s deadline against a busy server:\n" + "\n".join(wrong)
        )
        recovered = wait_until_ok(client, account.account_id)
        ran_anyway = purchase.request_id in {e.request_id for e in all_events(client, account.account_id)}
        again = call(client.seats.PurchaseSeats, purchase, op="purchase", metadata=owner)
        twice = call(client.seats.PurchaseSeats, purchase, op="purchase", metadata=owner)
        assert again.ok and twice.ok and again.response == twice.response, (again.describe(), twice.describe())
        made = [e for e in all_events(client, account.account_id) if e.request_id == purchase.request_id]
        assert len(made) == 1 and made[0].quantity == 1, f"I5: the re-sent purchase made {len(made)} events"
        print(f"\n[limits] --max-workers 2 held by 2 watches: {len(late)} calls with a {DEADLINE}s deadline ended "
              f"DEADLINE_EXCEEDED after {min(a.seconds for a in late):.3f}..{max(a.seconds for a in late):.3f}s; "
              f"serving again {recovered:.2f}s after; the timed-out purchase "
              f"{'ran anyway once a thread was free' if ran_anyway else 'never ran'}; re-sent: one effect")
        assert server.process.poll() is None
