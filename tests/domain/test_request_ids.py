"""Request ids (I5, AIP-155) in the use cases, over the in-memory store: the id is looked up under
the account lock after the actor check, a call that ran keeps its answer (refusals included) with
the id, and a call refused for bad input, a lost race or an outage keeps nothing.

`answer` is what the servicers' Replay does, with the use case's result encoded by the test."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest

from service.clock import ManualClock
from service.domain.errors import Kind, SeatError
from service.domain.model import Call, EventType, SeatRef
from service.domain.ports import RequestRecord
from service.domain.prices import PriceBook
from service.domain.requests import SYSTEM_SCOPE, run_once
from service.domain.seats import NewAccount, SeatDomain, UserChanges
from tests.domain.memory_store import MemoryStore
from tests.domain.test_rules_in_memory import (
    ACCESS,
    SALES,
    START,
    STARTER,
    SYSTEM,
    Tenant,
    assert_invariants,
    events,
    new_user,
    open_account,
    pool_counts,
    refused,
    renewal_time,
    seats_of,
    sequence,
)

WINDOW = timedelta(hours=24)


class CountingStore(MemoryStore):
    """Counts the request-id lookups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def find_request(self, scope: str, request_id: str, not_before: datetime) -> RequestRecord | None:
        self.lookups += 1
        return super().find_request(scope, request_id, not_before)


@pytest.fixture
def store() -> CountingStore:
    return CountingStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def domain(store: CountingStore, clock: ManualClock) -> SeatDomain:
    return SeatDomain(store, PriceBook.default(), clock)


@pytest.fixture(autouse=True)
def invariants_hold_afterwards(store: CountingStore) -> Iterator[None]:
    yield
    for account_id in store.account_ids():
        assert_invariants(store, account_id)


def answer(
    store: MemoryStore, clock: ManualClock, scope: str, request_id: str, fingerprint: str, call: Callable[[], object]
) -> str:
    """Runs a use case under a request id as the servicers do; the answer is the result's text."""
    return run_once(
        store,
        clock,
        WINDOW,
        scope,
        request_id,
        fingerprint,
        lambda: repr(call()),
        encode=str.encode,
        decode=bytes.decode,
    )


def assign(
    domain: SeatDomain, store: MemoryStore, clock: ManualClock, tenant: Tenant, by: Call, user_id: str, **kw: bool
) -> str:
    """AssignSeat of a Sales Starter seat under by's request id; the payload is the user and kw."""
    return answer(
        store,
        clock,
        tenant.account_id,
        by.request_id,
        f"assign {by.actor} {user_id} {sorted(kw.items())}",
        lambda: domain.assign_seat(by, tenant.account_id, user_id, SALES, STARTER, **kw),
    )


def full_pool(domain: SeatDomain) -> tuple[Tenant, str, str]:
    """An account whose one Sales Starter seat is taken; a user without a seat."""
    tenant = open_account(domain, (SALES, STARTER, 0))
    holder = new_user(domain, tenant, "holder", seats=((SALES, STARTER),))
    waiting = new_user(domain, tenant, "waiting")
    return tenant, holder.user_id, waiting.user_id


def same_refusal(first: SeatError, again: SeatError) -> None:
    assert again is not first
    assert again == first  # kind, reason, message, metadata, fields, preconditions


def test_i5_a_refused_call_keeps_its_refusal_after_the_state_changed(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    tenant, _, waiting = full_pool(domain)
    call = Call(tenant.owner_id, "assign-1")
    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as first:
        assign(domain, store, clock, tenant, call, waiting)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    log = sequence(store, tenant)

    clock.advance(hours=23)
    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as again:
        assign(domain, store, clock, tenant, call, waiting)

    same_refusal(first.value, again.value)
    assert seats_of(domain, tenant, waiting) == set()
    assert sequence(store, tenant) == log
    assert [e for e in events(store, tenant) if e.request_id == "assign-1"] == []
    # Another payload under the same id is not a retry.
    with refused(Kind.INVALID_ARGUMENT, "REQUEST_ID_REUSED"):
        assign(domain, store, clock, tenant, call, waiting, purchase_if_needed=True)
    # A new id is a new call: it takes the seat bought since.
    assign(domain, store, clock, tenant, Call(tenant.owner_id, "assign-2"), waiting)
    assert seats_of(domain, tenant, waiting) == {(SALES, STARTER)}


def test_i5_a_refused_call_keeps_its_record_and_none_of_its_writes(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    """CreateUser writes the user before its seat is refused: the savepoint undoes the user, the
    record stays, and no after-commit work of the refused part runs (no snapshot of it is kept,
    no commit is announced)."""
    tenant, _, _ = full_pool(domain)
    announced: list[str] = []
    store.add_commit_listener(announced.append)
    before = copy.deepcopy(store.tables)
    call = Call(tenant.owner_id, "create-1")

    def create() -> object:
        return domain.create_user(call, tenant.account_id, "new@acme.test", "New", ACCESS, [SeatRef(SALES, STARTER)])

    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        answer(store, clock, tenant.account_id, call.request_id, "create new", create)

    assert announced == []
    assert list(store.tables.requests) == [*before.requests, (tenant.account_id, "create-1")]
    store.tables.requests = before.requests
    assert store.tables == before, "only the request record was written"
    assert "new@acme.test" not in {u.email for u in domain.list_users(SYSTEM, tenant.account_id, None, 100, "").items}
    assert pool_counts(domain, tenant, SALES, STARTER)["assigned"] == 1


def test_i5_a_refused_call_undoes_the_renewal_it_applied(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    """The renewal a write applies first belongs to its unit of work: a kept refusal undoes it
    with the rest, and the next call applies it, logged once."""
    tenant, _, waiting = full_pool(domain)
    clock.advance(renewal_time(domain, tenant) - clock.now() + timedelta(hours=1))
    log = sequence(store, tenant)

    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(domain, store, clock, tenant, Call(tenant.owner_id, "assign-1"), waiting)

    assert sequence(store, tenant) == log
    assert renewal_time(domain, tenant) > clock.now()  # this read applied the renewal
    assert [e.type for e in events(store, tenant, log)] == [EventType.INVOICE_ISSUED, EventType.TERM_RENEWED]


def test_i5_an_outsider_is_refused_whatever_request_id_it_names(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    tenant, _, waiting = full_pool(domain)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    assign(domain, store, clock, tenant, Call(tenant.owner_id, "used"), waiting)
    other = open_account(domain, (SALES, STARTER, 0))
    lookups = store.lookups

    for request_id in ("used", "never-used"):
        outsider = Call(other.owner_id, request_id)
        with refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
            assign(domain, store, clock, tenant, outsider, waiting)

    assert store.lookups == lookups, "an outsider's request id is never looked up"


def test_i5_a_deleted_user_cannot_replay_its_old_request_id(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    tenant, _, waiting = full_pool(domain)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    clerk = new_user(domain, tenant, "clerk", ACCESS)
    call = Call(clerk.user_id, "by-clerk")
    first = assign(domain, store, clock, tenant, call, waiting)
    assert assign(domain, store, clock, tenant, call, waiting) == first  # a retry while a user
    domain.delete_user(tenant.owner, tenant.account_id, clerk.user_id, "")

    with refused(Kind.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        assign(domain, store, clock, tenant, call, waiting)


def test_i5_the_permission_a_call_needs_is_checked_before_its_request_id(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    """Refused for the permission the call needs at all, a call did not run: the same id runs
    once the actor has it."""
    tenant, _, waiting = full_pool(domain)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    clerk = new_user(domain, tenant, "clerk")
    call = Call(clerk.user_id, "by-clerk")
    lookups = store.lookups
    with refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="account_access"):
        assign(domain, store, clock, tenant, call, waiting)
    assert store.lookups == lookups
    domain.update_user(tenant.owner, tenant.account_id, clerk.user_id, UserChanges(account_access=True), "")

    assign(domain, store, clock, tenant, call, waiting)

    assert seats_of(domain, tenant, waiting) == {(SALES, STARTER)}


def test_i5_a_permission_the_work_finds_missing_is_kept(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    """Buying a seat with a grant needs edit billing only when no seat is free (S14): the call
    ran, met the state and was refused; the refusal is its answer for that id."""
    tenant, _, waiting = full_pool(domain)
    clerk = new_user(domain, tenant, "clerk", ACCESS)
    call = Call(clerk.user_id, "buying")
    with refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING", permission="edit_billing") as first:
        assign(domain, store, clock, tenant, call, waiting, purchase_if_needed=True)
    domain.update_user(
        tenant.owner, tenant.account_id, clerk.user_id, UserChanges(edit_billing=True, account_access=True), ""
    )

    with refused(Kind.PERMISSION_DENIED, "PERMISSION_MISSING") as again:
        assign(domain, store, clock, tenant, call, waiting, purchase_if_needed=True)

    same_refusal(first.value, again.value)
    assert seats_of(domain, tenant, waiting) == set()


def test_i5_bad_input_met_by_the_work_keeps_nothing(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    tenant, _, waiting = full_pool(domain)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    call = Call(tenant.owner_id, "fix-and-retry")
    with refused(Kind.INVALID_ARGUMENT, "INVALID_FIELD"):
        assign(domain, store, clock, tenant, call, "")

    assign(domain, store, clock, tenant, call, waiting)  # not REQUEST_ID_REUSED: nothing was kept

    assert seats_of(domain, tenant, waiting) == {(SALES, STARTER)}


def test_i5_a_lost_race_keeps_nothing(domain: SeatDomain, store: CountingStore, clock: ManualClock) -> None:
    tenant = open_account(domain, (SALES, STARTER, 0))
    stale = pools_etag(domain, tenant)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    call = Call(tenant.owner_id, "buy")

    def buy(etag: str) -> str:
        return answer(
            store,
            clock,
            tenant.account_id,
            call.request_id,
            f"buy {etag}",
            lambda: domain.purchase_seats(call, tenant.account_id, SALES, STARTER, 1, etag=etag),
        )

    with refused(Kind.ABORTED, "ETAG_MISMATCH"):
        buy(stale)
    fresh = pools_etag(domain, tenant)
    first = buy(fresh)  # the same id, after a fresh read: it runs

    assert buy(fresh) == first
    assert pool_counts(domain, tenant, SALES, STARTER)["purchased"] == 2
    with refused(Kind.INVALID_ARGUMENT, "REQUEST_ID_REUSED"):  # now the id is taken
        buy(stale)


def pools_etag(domain: SeatDomain, tenant: Tenant) -> str:
    [view] = domain.get_account(SYSTEM, tenant.account_id).pools
    return view.etag


def test_i5_a_replay_runs_no_work_and_the_lookup_is_one_statement(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    tenant, _, waiting = full_pool(domain)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    lookups = store.lookups
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    assert store.lookups == lookups, "no lookup without a request id"

    call = Call(tenant.owner_id, "once")
    first = assign(domain, store, clock, tenant, call, waiting)
    assert store.lookups == lookups + 1
    log = sequence(store, tenant)
    domain.unassign_seat(tenant.owner, tenant.account_id, waiting, SALES)

    assert assign(domain, store, clock, tenant, call, waiting) == first
    assert store.lookups == lookups + 2
    assert sequence(store, tenant) == log + 1  # the unassign only
    assert seats_of(domain, tenant, waiting) == set()


def test_i5_a_refusal_expires_with_its_record(domain: SeatDomain, store: CountingStore, clock: ManualClock) -> None:
    tenant, _, waiting = full_pool(domain)
    call = Call(tenant.owner_id, "later")
    with refused(Kind.FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(domain, store, clock, tenant, call, waiting)
    domain.purchase_seats(tenant.owner, tenant.account_id, SALES, STARTER, 1)
    clock.advance(WINDOW + timedelta(seconds=1))
    assert store.write(lambda: store.purge_requests(clock.now() - WINDOW)) == 1

    assign(domain, store, clock, tenant, call, waiting)

    assert seats_of(domain, tenant, waiting) == {(SALES, STARTER)}


def test_i5_account_creation_checks_its_request_id_in_the_system_scope(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    spec = NewAccount("Acme", "owner@acme.test", "", [(SALES, STARTER, 1)], 1, None)

    def create() -> str:
        return answer(
            store, clock, SYSTEM_SCOPE, "open", "open acme", lambda: domain.create_account(Call(None, "open"), spec)
        )

    first = create()
    assert create() == first
    assert len(store.account_ids()) == 1
    assert list(store.tables.requests) == [(SYSTEM_SCOPE, "open")]


def test_i5_a_request_id_sent_for_one_account_is_not_checked_in_another(
    domain: SeatDomain, store: CountingStore, clock: ManualClock
) -> None:
    """The scope the servicer names must be the account the unit of work locks."""
    tenant, _, waiting = full_pool(domain)
    other = open_account(domain, (SALES, STARTER, 0))
    call = Call(None, "mixed")
    with pytest.raises(RuntimeError):
        answer(
            store, clock, other.account_id, "mixed", "x",
            lambda: domain.assign_seat(call, tenant.account_id, waiting, SALES, STARTER),
        )
    assert store.tables.requests == {}


def test_unit_of_work_savepoint_undoes_only_its_own_part(store: CountingStore) -> None:
    ran: list[str] = []
    now = START

    def inner() -> None:
        store.save_request("s", "inner", "fp", b"inner", now, now - WINDOW)
        store.after_commit(lambda: ran.append("inner"))
        raise SeatError(Kind.FAILED_PRECONDITION, "X", "refused")

    def outer() -> str:
        store.save_request("s", "outer", "fp", b"outer", now, now - WINDOW)
        store.after_commit(lambda: ran.append("outer"))
        with pytest.raises(SeatError):
            store.savepoint(inner)
        return store.savepoint(lambda: "kept")

    assert store.write(outer) == "kept"
    assert ran == ["outer"]
    assert set(store.tables.requests) == {("s", "outer")}
    with pytest.raises(RuntimeError):
        store.savepoint(lambda: None)  # only inside a write


def test_a_kept_refusal_stores_a_response_no_message_parses() -> None:
    """A server without kept refusals reads the response column only: it must fail on a refusal's
    record, never answer OK with an empty response."""
    from google.protobuf.message import DecodeError
    from seats.v1 import seat_service_pb2, user_service_pb2

    from service.domain.requests import REFUSED_RESPONSE

    for response_type in (
        seat_service_pb2.AssignSeatResponse,
        seat_service_pb2.PurchaseSeatsResponse,
        user_service_pb2.CreateUserResponse,
        user_service_pb2.DeleteUserResponse,
    ):
        with pytest.raises(DecodeError):
            response_type.FromString(REFUSED_RESPONSE)
