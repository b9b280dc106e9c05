"""Bounded input, on SQLite and on PostgreSQL.

- Page tokens: the filter digest inside a token is no secret, so anyone can make a token with any
  key. A token is bounded in length before it is decoded, and each list takes only the exact shape
  and range of the keys it issues: a forged, oversized or malformed token is INVALID_ARGUMENT
  (INVALID_FIELD, field page_token), never INTERNAL; a forged key of the right shape pages on.
- Repeated fields: every repeated field of a request holds at most 1000 entries (documented in
  the .proto files), refused with INVALID_ARGUMENT before any database work.
- Database errors that are the caller's fault (too many SQL variables, a value too big or out of
  range) are INVALID_ARGUMENT and are not retried; only connection, lock and timeout failures are
  UNAVAILABLE (which clients retry)."""

from __future__ import annotations

import base64
import json
import logging
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
import peewee as pw
import pytest
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2, status_pb2
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.domain.model import Account
from service.servicers.common import _fail
from service.store import Store, open_store
from service.store.store import Fault, fault_of
from tests.conftest import REPO, Running
from tests.contract.helpers import (
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Tenant,
    assign,
    events,
    new_account,
    new_user,
    pool,
)
from tests.toolkit import refused, unique_email

s = seat_service_pb2
u = user_service_pb2
r = resources_pb2

MAX_ENTRIES = 1000
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# ---- page tokens ------------------------------------------------------------------------------


@dataclass
class Lists:
    """An account with a few users, seats and events, and a page token each list issued for it."""

    running: Running
    tenant: Tenant
    user_ids: list[str]
    tokens: dict[str, str]

    def call(self, kind: str, token: str) -> Message:
        """One page of a list, with the filters its token was issued for."""
        if kind == "users":
            return self.running.users.ListUsers(
                u.ListUsersRequest(account_id=self.tenant.id, page_size=1, page_token=token),
                metadata=self.tenant.as_owner,
            )
        if kind == "assignments":
            return self.running.seats.ListSeatAssignments(
                s.ListSeatAssignmentsRequest(account_id=self.tenant.id, page_size=1, page_token=token)
            )
        return self.running.seats.ListSeatEvents(
            s.ListSeatEventsRequest(account_id=self.tenant.id, page_size=1, page_token=token)
        )


KINDS = ["users", "assignments", "events"]


@pytest.fixture
def lists(running: Running) -> Lists:
    tenant = new_account(running.seats, (SALES, STARTER, 3))
    user_ids = [new_user(running.users, tenant).user_id for _ in range(2)]
    for user_id in user_ids:
        assign(running.seats, tenant, user_id, SALES, STARTER)
    found = Lists(running, tenant, user_ids, {})
    for kind in KINDS:
        token = found.call(kind, "").next_page_token  # type: ignore[attr-defined]
        assert token, kind
        found.tokens[kind] = token
    return found


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def forged(token: str, key_json: str) -> str:
    """A token with the filter digest of an issued one (no secret) and any key, as JSON text."""
    digest = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["f"]
    return b64(('{"k":' + key_json + ',"f":' + json.dumps(digest) + "}").encode())


def check_bad_token(lists: Lists, kind: str, token: str) -> None:
    with refused(INVALID, "INVALID_FIELD") as refusal:
        lists.call(kind, token)
    assert refusal.fields == ["page_token"], refusal.text


NESTED = 50_000


@pytest.mark.parametrize("kind", KINDS)
def test_a_token_of_nested_brackets_is_invalid_argument(lists: Lists, kind: str) -> None:
    """50,000 nested `[` (once RecursionError, INTERNAL): as the token itself, base64-encoded, and
    as the key of a token with the right filter digest; and nesting short enough to pass the length
    bound."""
    deep = "[" * NESTED + "]" * NESTED
    for token in [
        "[" * NESTED,
        b64(("[" * NESTED).encode()),
        b64(deep.encode()),
        forged(lists.tokens[kind], deep),
        b64(("[" * 700).encode()),
        forged(lists.tokens[kind], "[" * 300 + "]" * 300),
    ]:
        check_bad_token(lists, kind, token)


BIG = 2**70
FORGED_KEYS: dict[str, list[str]] = {
    "assignments": [
        '["{user}", ' + str(BIG) + "]",  # once OverflowError on SQLite: INTERNAL
        '["{user}", ' + str(-BIG) + "]",
        '["{user}", ' + str(2**63) + "]",
        '["{user}", ' + str(2**63 - 1) + "]",  # within 64 bits, but no hub
        '["{user}", 0]',
        '["{user}", 3]',
        '["{user}", true]',
        '["{user}", 1.0]',
        '["{user}", "1"]',
        '["{user}", 1, 2]',
        '["{user}"]',
        '[1, "{user}"]',
        '["", 1]',
        '["' + "x" * 129 + '", 1]',
        '["\\ud800", 1]',  # a lone surrogate: no text a database takes
        '["a\\u0000b", 1]',
        '{"{user}": 1}',
        "null",
        str(BIG),
    ],
    "events": [
        str(BIG),
        str(-BIG),
        str(2**63),
        str(2**62 + 1),
        "-1",
        "1e400",
        "1.5",
        '"1"',
        "true",
        "null",
        "[1]",
        "{}",
    ],
    "users": [
        str(BIG),
        '"\\ud800"',
        '"x\\udfff"',
        '""',
        '"' + "x" * 129 + '"',
        '"a\\u0000b"',
        '"\\u2028"',
        '["{user}"]',
        "null",
        "true",
    ],
}


@pytest.mark.parametrize("kind", KINDS)
def test_a_forged_token_key_out_of_shape_or_range_is_invalid_argument(lists: Lists, kind: str) -> None:
    """Tokens with the right filter digest and a key the list never issues: beyond 64 bits (2**70),
    of another type or shape, or text that is not an id."""
    for key in FORGED_KEYS[kind]:
        check_bad_token(lists, kind, forged(lists.tokens[kind], key.replace("{user}", lists.user_ids[0])))


@pytest.mark.parametrize("kind", KINDS)
def test_a_malformed_or_oversized_token_is_invalid_argument(lists: Lists, kind: str) -> None:
    real = lists.tokens[kind]
    for token in [
        "A" * 100_000,
        real + "A" * 2000,
        forged(real, json.dumps("x" * 1000)),
        real + "==",
        real.replace(real[0], "+", 1),
        "!" + real,
        b64(b'{"k":1,"f":"x","extra":1}'),
        b64(json.dumps({"k": 1}).encode()),
        b64(json.dumps([1, 2]).encode()),
        b64(json.dumps("token").encode()),
        b64(b"\xff\xfe{}"),
        b64("\ufeff{}".encode()),
    ]:
        check_bad_token(lists, kind, token)


def test_a_forged_token_of_the_right_shape_pages_on(lists: Lists) -> None:
    """Validation is of shape and range, not secrecy: a key of the right shape is a place in the
    list, whoever made the token (tokens work across replicas and restarts)."""
    first, second = sorted(lists.user_ids)
    users = lists.call("users", forged(lists.tokens["users"], json.dumps(first)))
    assert [x.user_id for x in users.users] == [second]  # type: ignore[attr-defined]
    seats = lists.call("assignments", forged(lists.tokens["assignments"], json.dumps([first, int(SALES)])))
    assert [(a.user_id, a.hub) for a in seats.assignments] == [(second, SALES)]  # type: ignore[attr-defined]
    log = lists.call("events", forged(lists.tokens["events"], "1"))
    assert [e.sequence for e in log.events] == [2]  # type: ignore[attr-defined]
    every = lists.call("events", forged(lists.tokens["events"], str(2**62)))
    assert not every.events  # type: ignore[attr-defined]


def test_every_issued_token_pages_through_the_whole_list(lists: Lists) -> None:
    """The bounds take every token the lists issue."""
    seen: dict[str, int] = {}
    for kind in KINDS:
        token, pages = "", 0
        while True:
            page = lists.call(kind, token)
            pages += 1
            token = page.next_page_token  # type: ignore[attr-defined]
            if not token:
                break
            assert len(token) <= 1024
        seen[kind] = pages
    assert seen == {"users": 3, "assignments": 2, "events": len(events(lists.running.seats, lists.tenant))}


# ---- repeated fields --------------------------------------------------------------------------


def repeated_request_fields() -> set[tuple[str, str]]:
    """(request message, field) of every repeated field of a request message of the API."""
    found = set()
    for module in (seat_service_pb2, user_service_pb2):
        for message in module.DESCRIPTOR.message_types_by_name.values():
            if message.name.endswith("Request"):
                found |= {
                    (message.name, f.name)
                    for f in message.fields
                    if f.is_repeated
                }
    return found


def test_every_repeated_request_field_documents_its_maximum() -> None:
    """The .proto comment of every repeated field of a request message says it holds at most 1000
    entries."""
    documented = set()
    for path in sorted((REPO / "protos" / "seats" / "v1").glob("*.proto")):
        text = path.read_text()
        for name, body in re.findall(r"^message (\w+Request) \{\n(.*?)^\}", text, re.M | re.S):
            comment: list[str] = []
            for line in body.splitlines():
                line = line.strip()
                if line.startswith("//"):
                    comment.append(line)
                    continue
                field = re.match(r"repeated [\w.]+ (\w+) = \d+;", line)
                if field:
                    said = " ".join(comment)
                    assert re.search(r"(at most|to) 1000\b", said, re.I), f"{name}.{field.group(1)}: {said!r}"
                    documented.add((name, field.group(1)))
                comment = []
    assert documented == repeated_request_fields()


def too_many_changes(t: Tenant, n: int) -> Message:
    return s.BatchUpdateSeatAssignmentsRequest(
        account_id=t.id, changes=[s.SeatChange(user_id=f"usr_{i}", hub=SALES, tier=STARTER) for i in range(n)]
    )


def too_many_user_ids(t: Tenant, n: int) -> Message:
    return s.CheckSeatsRequest(account_id=t.id, hub=SALES, user_ids=[t.owner_id] * n)


def too_many_activities(t: Tenant, n: int) -> Message:
    now = Timestamp(seconds=int(time.time()))
    return s.RecordSeatActivityRequest(
        account_id=t.id, activities=[r.SeatActivity(user_id=t.owner_id, hub=SALES, activity_time=now)] * n
    )


def too_many_subscriptions(t: Tenant, n: int) -> Message:
    return s.CreateAccountRequest(
        display_name="Acme", owner_email=unique_email(), term_months=1,
        subscriptions=[r.Subscription(hub=SALES, tier=STARTER)] * n,
    )


def too_many_seats(t: Tenant, n: int) -> Message:
    return u.CreateUserRequest(account_id=t.id, email=unique_email(), seats=[r.SeatRef(hub=SALES, tier=STARTER)] * n)


def too_many_assign_user_ids(t: Tenant, n: int) -> Message:
    return s.UpgradeSubscriptionRequest(
        account_id=t.id, hub=SALES, tier=PROFESSIONAL, assign_user_ids=[f"usr_{i}" for i in range(n)]
    )


def too_many_purchases(t: Tenant, n: int) -> Message:
    return s.PreviewInvoiceRequest(
        account_id=t.id, purchases=[r.SeatQuantity(hub=SALES, tier=PROFESSIONAL, quantity=1)] * n
    )


def too_many_removals(t: Tenant, n: int) -> Message:
    return s.PreviewInvoiceRequest(
        account_id=t.id, removals=[r.SeatQuantity(hub=SALES, tier=PROFESSIONAL, quantity=1)] * n
    )


OVER: dict[tuple[str, str], Callable[[Tenant, int], Message]] = {
    ("BatchUpdateSeatAssignmentsRequest", "changes"): too_many_changes,
    ("CheckSeatsRequest", "user_ids"): too_many_user_ids,
    ("CreateAccountRequest", "subscriptions"): too_many_subscriptions,
    ("CreateUserRequest", "seats"): too_many_seats,
    ("PreviewInvoiceRequest", "purchases"): too_many_purchases,
    ("PreviewInvoiceRequest", "removals"): too_many_removals,
    ("RecordSeatActivityRequest", "activities"): too_many_activities,
    ("UpgradeSubscriptionRequest", "assign_user_ids"): too_many_assign_user_ids,
}


def send(running: Running, request: Message, metadata: tuple[tuple[str, str], ...]) -> Message:
    name = type(request).__name__.removesuffix("Request")
    stub = running.users if name.endswith("User") else running.seats
    return getattr(stub, name)(request, metadata=metadata, timeout=60)  # type: ignore[no-any-return]


def test_the_oversized_requests_below_cover_every_repeated_request_field() -> None:
    assert set(OVER) == repeated_request_fields()


@pytest.mark.parametrize("field", sorted(OVER), ids=lambda f: f"{f[0]}.{f[1]}")
@pytest.mark.parametrize("request_id", ["", "bounds-request-id"])
def test_a_repeated_field_over_1000_entries_is_invalid_argument(
    running: Running, field: tuple[str, str], request_id: str
) -> None:
    """1,001 entries: INVALID_ARGUMENT INVALID_FIELD naming the field and the maximum, and nothing
    changes (with a request id too: refused before it is looked up)."""
    tenant = new_account(running.seats, (SALES, STARTER, 0))
    before = events(running.seats, tenant)
    request = OVER[field](tenant, MAX_ENTRIES + 1)
    if request_id and "request_id" in request.DESCRIPTOR.fields_by_name:  # CheckSeats is a read: none
        request.request_id = f"{request_id}-{uuid.uuid4().hex}"  # type: ignore[attr-defined]
    metadata = () if field[0] == "CreateAccountRequest" else tenant.as_owner
    with refused(INVALID, "INVALID_FIELD") as refusal:
        send(running, request, metadata)
    assert refusal.fields == [field[1]], refusal.text
    assert str(MAX_ENTRIES) in refusal.bad_request.field_violations[0].description
    assert events(running.seats, tenant) == before


def test_250000_assign_user_ids_are_refused_at_once_and_not_as_unavailable(running: Running) -> None:
    """The attack: a quarter of a million ids (once "too many SQL variables" on SQLite, answered
    UNAVAILABLE and retried by clients). Refused before any database work, validate-only or not."""
    tenant = new_account(running.seats, (SALES, STARTER, 0))
    ids = [f"u{i}" for i in range(250_000)]
    for validate_only in (True, False):
        request = s.UpgradeSubscriptionRequest(
            account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, assign_user_ids=ids, validate_only=validate_only
        )
        started = time.monotonic()
        with refused(INVALID, "INVALID_FIELD") as refusal:
            running.seats.UpgradeSubscription(request, metadata=tenant.as_owner, timeout=60)
        assert time.monotonic() - started < 5
        assert refusal.fields == ["assign_user_ids"]


def test_upgrade_takes_1000_assign_user_ids_and_refuses_1001(running: Running) -> None:
    """1,000 ids are accepted (validate-only, then for real); 1,001 are refused and change nothing."""
    tenant = new_account(running.seats, (SERVICE, STARTER, 0))
    with ThreadPoolExecutor(max_workers=8) as pool_:
        made = list(pool_.map(lambda _: new_user(running.users, tenant).user_id, range(MAX_ENTRIES)))
    included = 2  # Professional

    def upgrade(ids: list[str], validate_only: bool) -> s.UpgradeSubscriptionResponse:
        return running.seats.UpgradeSubscription(
            s.UpgradeSubscriptionRequest(
                account_id=tenant.id, hub=SALES, tier=PROFESSIONAL, purchased_seats=MAX_ENTRIES - included,
                assign_user_ids=ids, validate_only=validate_only,
            ),
            metadata=tenant.as_owner,
            timeout=120,
        )

    with refused(INVALID, "INVALID_FIELD") as refusal:
        upgrade([*made, tenant.owner_id], validate_only=False)
    assert refusal.fields == ["assign_user_ids"]
    checked = upgrade(made, validate_only=True)
    assert checked.pool.assigned == MAX_ENTRIES
    assert (SALES, PROFESSIONAL) not in {(p.hub, p.tier) for p in running.seats.GetSeatSummary(
        s.GetSeatSummaryRequest(account_id=tenant.id)).pools}
    done = upgrade(made, validate_only=False)
    assert done.pool.assigned == MAX_ENTRIES
    assert pool(running.seats, tenant, SALES, PROFESSIONAL).assigned == MAX_ENTRIES


# ---- database errors: whose fault --------------------------------------------------------------


@pytest.fixture
def store(running: Running) -> Iterator[Store]:
    """A store of its own on the served database (its settings can be changed without harm)."""
    own = open_store(running.database_url)
    try:
        yield own
    finally:
        own.close()


def raised(fn: Callable[[], object]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("no error")



def db(store: Store) -> Any:
    """The store's Peewee database (Peewee has no type hints)."""
    return store.db


def sqlite_limited(store: Store, limit: int, value: int, fn: Callable[[], object]) -> BaseException:
    """The error fn raises while a SQLite limit of this thread's connection is lowered."""
    connection = db(store).connection()
    before = connection.setlimit(limit, value)
    try:
        return raised(fn)
    finally:
        connection.setlimit(limit, before)


def sqlite_locked(store: Store, path: str) -> BaseException:
    """The error of a write while another connection holds the database."""
    db(store).execute_sql("PRAGMA busy_timeout = 0")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        return raised(lambda: db(store).execute_sql("BEGIN IMMEDIATE"))
    finally:
        other.execute("ROLLBACK")
        other.close()


def pg_timed_out(store: Store) -> BaseException:
    db(store).execute_sql("SET statement_timeout = 1")
    try:
        return raised(lambda: db(store).execute_sql("SELECT pg_sleep(1)"))
    finally:
        db(store).execute_sql("SET statement_timeout = 0")


def too_many_variables(store: Store) -> object:
    ids = [f"usr_{i}" for i in range(10)]
    connection = db(store).connection()
    before = connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 5)
    try:
        return store.assignments_for("acc_none", ids)
    finally:
        connection.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


def unbindable(store: Store) -> object:
    """A read with a value the driver cannot bind: an integer beyond 64 bits on SQLite; a NUL in a
    text on PostgreSQL (psycopg2 takes any integer)."""
    if store.dialect == "sqlite":
        return store.list_events("acc_none", 0, BIG)
    return store.email_owner("acc_none", "a\x00b")


def database_errors(store: Store, database_url: str) -> dict[str, tuple[BaseException, Fault]]:
    """Real errors of the store's database, each with whose fault it is."""
    found: dict[str, tuple[BaseException, Fault]] = {
        "a LIMIT beyond 64 bits": (raised(lambda: store.list_events("acc_none", 0, BIG)), Fault.INPUT),
        "a value the driver cannot bind": (raised(lambda: unbindable(store)), Fault.INPUT),
        "connection already closed": (pw.InterfaceError("connection already closed"), Fault.OUTAGE),
    }
    if store.dialect == "sqlite":
        found["too many SQL variables"] = (raised(lambda: too_many_variables(store)), Fault.INPUT)
        found["string or blob too big"] = (
            sqlite_limited(store, sqlite3.SQLITE_LIMIT_LENGTH, 1000, lambda: store.email_owner("acc", "x" * 2000)),
            Fault.INPUT,
        )
        found["database is locked"] = (sqlite_locked(store, database_url.removeprefix("sqlite:///")), Fault.OUTAGE)
        found["no such table"] = (raised(lambda: db(store).execute_sql("SELECT * FROM no_such_table")), Fault.BUG)
    else:
        found["bigint out of range"] = (raised(lambda: db(store).execute_sql("SELECT %s::bigint", (BIG,))), Fault.INPUT)
        found["more than 100 function arguments"] = (
            raised(lambda: db(store).execute_sql("SELECT concat(" + ", ".join(["'x'"] * 101) + ")")),
            Fault.INPUT,
        )
        found["statement timeout"] = (pg_timed_out(store), Fault.OUTAGE)
        closed = open_store("postgresql://postgres@127.0.0.1:1/test?connect_timeout=2")
        found["no server"] = (raised(lambda: closed.account_sequence("acc_none")), Fault.OUTAGE)
        found["syntax error"] = (raised(lambda: db(store).execute_sql("SELEC 1")), Fault.BUG)
    return found


def test_database_errors_are_classified_by_whose_fault_they_are(running: Running, store: Store) -> None:
    """Values the database cannot take are the caller's fault; a lost connection, a lock or a
    timeout is an outage; anything else is a bug."""
    for name, (exc, fault) in database_errors(store, running.database_url).items():
        assert fault_of(exc) is fault, f"{name}: {exc!r}"


class Aborted(Exception):
    pass


class Context:
    """What _fail needs of a grpc.ServicerContext."""

    status: grpc.Status | None = None

    def abort_with_status(self, status: grpc.Status) -> None:
        self.status = status
        raise Aborted


def answer_to(exc: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status code and ErrorInfo reason a servicer answers for an exception."""
    context = Context()
    with pytest.raises(Aborted):
        _fail(context, exc, "Bounds")  # type: ignore[arg-type]
    assert context.status is not None
    details = dict(context.status.trailing_metadata)["grpc-status-details-bin"]
    assert isinstance(details, bytes)
    info = error_details_pb2.ErrorInfo()
    status_pb2.Status.FromString(details).details[0].Unpack(info)
    return context.status.code, info.reason


ANSWERS = {
    Fault.INPUT: (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD"),
    Fault.OUTAGE: (grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE"),
    Fault.BUG: (grpc.StatusCode.INTERNAL, "INTERNAL"),
}


def test_a_database_error_is_answered_by_whose_fault_it_is(
    running: Running, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """INVALID_ARGUMENT with a logged warning for the caller's fault, UNAVAILABLE only for an
    outage (clients retry it), INTERNAL for a bug."""
    for name, (exc, fault) in database_errors(store, running.database_url).items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="seats.rpc"):
            assert answer_to(exc) == ANSWERS[fault], f"{name}: {exc!r}"
        if fault is Fault.INPUT:
            assert [rec.levelno for rec in caplog.records] == [logging.WARNING], name


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


@pytest.mark.parametrize("bad", ["unbindable", "too_many_variables"])
def test_a_value_the_database_refuses_fails_its_own_call_alone_and_once(store: Store, bad: str) -> None:
    """Write calls are committed in groups: a call whose values the database refuses fails alone,
    is not retried, and the call committed with it in the same group succeeds."""
    if bad == "too_many_variables" and store.dialect != "sqlite":
        bad = "limit"  # psycopg2 has no limit on variables: a LIMIT beyond 64 bits instead
    work: dict[str, Callable[[], object]] = {
        "unbindable": lambda: unbindable(store),
        "too_many_variables": lambda: too_many_variables(store),
        "limit": lambda: store.list_events("acc_none", 0, BIG),
    }
    started, release = threading.Event(), threading.Event()
    bad_runs: list[int] = []
    results: dict[str, Any] = {}

    def leading() -> str:
        started.set()
        release.wait(30)
        return "led"

    def failing() -> object:
        bad_runs.append(1)
        return work[bad]()

    def run(name: str, fn: Callable[[], object]) -> None:
        try:
            results[name] = store.write(fn)
        except Exception as exc:
            results[name] = exc

    threads = [
        threading.Thread(target=run, args=("leader", leading)),
        threading.Thread(target=run, args=("bad", failing)),
        threading.Thread(target=run, args=("good", lambda: store.account_sequence("acc_none"))),
    ]
    threads[0].start()
    assert started.wait(30)
    for queued, thread in enumerate(threads[1:], start=1):  # both wait for the leader: one group
        thread.start()
        wait_for(lambda queued=queued: len(store._group.queue) == queued, "the call to queue")  # type: ignore[misc]
    release.set()
    for thread in threads:
        thread.join(60)
    assert results["leader"] == "led"
    assert results["good"] == 0, results["good"]
    assert isinstance(results["bad"], pw.DatabaseError) and fault_of(results["bad"]) is Fault.INPUT, results["bad"]
    assert bad_runs == [1], "a value the database refuses is not retried"


def test_a_value_the_driver_cannot_bind_loses_no_deferred_write(running: Running, store: Store) -> None:
    """The driver refuses a value before it sends anything: the writes deferred before the
    statement (on PostgreSQL they travel with the next one) are still sent, in their order."""
    now = running.clock.now()
    later = datetime(2100, 1, 1, tzinfo=UTC)
    account = Account(f"acc_bounds_{uuid.uuid4().hex[:8]}", "Bounds", "usr_none", "USD", 1, now, now, later, 0, now)

    def work() -> Account | None:
        store.insert_account(account)
        with pytest.raises(pw.DataError):
            unbindable(store)
        return store.get_account(account.account_id)

    assert store.write(work, dry_run=True) == account
