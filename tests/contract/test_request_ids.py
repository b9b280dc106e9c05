"""Request ids (I5, AIP-155) over gRPC, on SQLite and PostgreSQL: the id is checked after the
actor, under the account lock; a call that ran keeps its answer, refusals included, and a call
refused for bad input or a lost race keeps nothing. Plus the store's part: the savepoint that
undoes a refused call's writes while its record stays, and the migration that made room for
refusals in the request records."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import field_mask_pb2
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from service.domain.model import Account
from service.domain.requests import decode_refusal
from service.store import open_store
from tests.conftest import BACKENDS, Running, database_url
from tests.contract.helpers import (
    ACCESS,
    SALES,
    STARTER,
    Seats,
    Tenant,
    Users,
    assign,
    create_user,
    events,
    last_sequence,
    new_account,
    new_user,
    pool,
    purchase,
    seat_refs,
)
from tests.toolkit import Refusal, refused, unique_email

ABORTED = grpc.StatusCode.ABORTED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION


def rid() -> str:
    return str(uuid.uuid4())


def said(refusal: Refusal) -> tuple[object, ...]:
    """Everything a refusal says."""
    return (
        refusal.code,
        refusal.message,
        refusal.info.SerializeToString(deterministic=True),
        refusal.bad_request.SerializeToString(deterministic=True),
        refusal.precondition.SerializeToString(deterministic=True),
    )


def full(seats: Seats, users: Users) -> tuple[Tenant, str]:
    """An account whose one Sales Starter seat is taken, and a user without a seat."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    new_user(users, tenant, seats=[(SALES, STARTER)])
    return tenant, new_user(users, tenant).user_id


def tagged(seats: Seats, tenant: Tenant, request_id: str) -> list[str]:
    return [e.request_id for e in events(seats, tenant) if e.request_id == request_id]


# (10) A refused call keeps its request id.


def test_i5_a_refused_assignment_answers_the_same_refusal_after_a_purchase(seats: Seats, users: Users) -> None:
    """I5: the retry gets the first call's answer, a refusal too, even though a seat is free now."""
    tenant, waiting = full(seats, users)
    request_id = rid()
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as first:
        assign(seats, tenant, waiting, SALES, STARTER, request_id=request_id)
    purchase(seats, tenant, SALES, STARTER, 1)
    sequence = last_sequence(seats, tenant)

    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as again:
        assign(seats, tenant, waiting, SALES, STARTER, request_id=request_id)

    assert said(again) == said(first)
    assert seat_refs(users, tenant, waiting) == set()
    assert last_sequence(seats, tenant) == sequence
    assert tagged(seats, tenant, request_id) == []
    with refused(INVALID_ARGUMENT, "REQUEST_ID_REUSED"):  # another payload under the id
        assign(seats, tenant, waiting, SALES, STARTER, purchase_if_needed=True, request_id=request_id)
    assign(seats, tenant, waiting, SALES, STARTER, request_id=rid())  # a new id is a new call
    assert seat_refs(users, tenant, waiting) == {(SALES, STARTER)}


def test_i5_a_refused_user_creation_keeps_its_record_and_none_of_its_writes(seats: Seats, users: Users) -> None:
    """CreateUser writes the user, then its seat is refused: the user is undone, the record kept."""
    tenant, _ = full(seats, users)
    email, request_id = unique_email(), rid()
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as first:
        create_user(users, tenant, email=email, seats=[(SALES, STARTER)], request_id=request_id)
    assert pool(seats, tenant, SALES, STARTER).assigned == 1
    purchase(seats, tenant, SALES, STARTER, 1)

    made = create_user(users, tenant, email=email, seats=[(SALES, STARTER)], request_id=rid())  # email is free
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE") as again:  # not EMAIL_TAKEN: the first answer
        create_user(users, tenant, email=email, seats=[(SALES, STARTER)], request_id=request_id)

    assert said(again) == said(first)
    assert made.user.email == email
    assert pool(seats, tenant, SALES, STARTER).assigned == 2
    assert tagged(seats, tenant, request_id) == []


def test_i5_a_permission_the_work_finds_missing_is_kept(seats: Seats, users: Users) -> None:
    """Buying a seat with a grant needs edit billing only when no seat is free (S14): that call
    ran and was refused, and keeps its refusal; the permission a call needs at all is checked
    before the request id, and such a refusal keeps nothing."""
    tenant, waiting = full(seats, users)
    clerk = new_user(users, tenant, permissions=ACCESS)
    buying = rid()
    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as first:
        assign(seats, tenant, waiting, SALES, STARTER, by=clerk.user_id, purchase_if_needed=True, request_id=buying)
    nobody = new_user(users, tenant)
    plain = rid()
    with refused(PERMISSION_DENIED, "PERMISSION_MISSING"):
        assign(seats, tenant, waiting, SALES, STARTER, by=nobody.user_id, request_id=plain)
    owner_grants(users, tenant, clerk.user_id, edit_billing=True, account_access=True)
    owner_grants(users, tenant, nobody.user_id, account_access=True)

    with refused(PERMISSION_DENIED, "PERMISSION_MISSING") as again:
        assign(seats, tenant, waiting, SALES, STARTER, by=clerk.user_id, purchase_if_needed=True, request_id=buying)
    assert said(again) == said(first)
    purchase(seats, tenant, SALES, STARTER, 1)
    assign(seats, tenant, waiting, SALES, STARTER, by=nobody.user_id, request_id=plain)  # runs now
    assert seat_refs(users, tenant, waiting) == {(SALES, STARTER)}


def owner_grants(users: Users, tenant: Tenant, user_id: str, **permissions: bool) -> None:
    users.UpdateUser(
        user_service_pb2.UpdateUserRequest(
            user=resources_pb2.User(
                account_id=tenant.id, user_id=user_id, permissions=resources_pb2.Permissions(**permissions)
            ),
            update_mask=field_mask_pb2.FieldMask(paths=[f"permissions.{name}" for name in permissions]),
        ),
        metadata=tenant.as_owner,
    )


# Bad input and lost races keep nothing.


def test_i5_bad_input_keeps_nothing(seats: Seats, users: Users) -> None:
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)
    request_id = rid()
    with refused(INVALID_ARGUMENT, "INVALID_FIELD"):  # found by the use case, under the lock
        assign(seats, tenant, "", SALES, STARTER, request_id=request_id)
    with refused(INVALID_ARGUMENT, "INVALID_FIELD"):  # found by the servicer
        seats.AssignSeat(
            seat_service_pb2.AssignSeatRequest(account_id=tenant.id, user_id=member.user_id, request_id=request_id),
            metadata=tenant.as_owner,
        )

    assign(seats, tenant, member.user_id, SALES, STARTER, request_id=request_id)  # not REQUEST_ID_REUSED

    assert seat_refs(users, tenant, member.user_id) == {(SALES, STARTER)}


def test_i5_a_lost_race_keeps_nothing(seats: Seats) -> None:
    """ABORTED (a stale etag): the same id runs again once the caller read the pool again."""
    tenant = new_account(seats, (SALES, STARTER, 0))
    stale = pool(seats, tenant, SALES, STARTER).etag
    purchase(seats, tenant, SALES, STARTER, 1)
    request_id = rid()

    def buy(etag: str) -> seat_service_pb2.PurchaseSeatsResponse:
        return seats.PurchaseSeats(
            seat_service_pb2.PurchaseSeatsRequest(
                account_id=tenant.id, hub=SALES, tier=STARTER, quantity=1, etag=etag, request_id=request_id
            ),
            metadata=tenant.as_owner,
        )

    with refused(ABORTED, "ETAG_MISMATCH"):
        buy(stale)
    fresh = pool(seats, tenant, SALES, STARTER).etag
    first = buy(fresh)

    assert buy(fresh) == first
    assert pool(seats, tenant, SALES, STARTER).purchased == 2


# (5) The request id is checked after the actor.


def test_i5_an_outsider_is_refused_whatever_request_id_it_names(seats: Seats, users: Users) -> None:
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)
    used = rid()
    assign(seats, tenant, member.user_id, SALES, STARTER, request_id=used)
    outsider = new_account(seats, (SALES, STARTER, 0))

    answers = []
    for request_id in (used, rid()):
        with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT") as refusal:
            assign(seats, tenant, member.user_id, SALES, STARTER, by=outsider.owner_id, request_id=request_id)
        answers.append(said(refusal)[:3])

    assert answers[0] == answers[1], "a used id and an unused one are refused alike"


def test_i5_a_deleted_user_cannot_replay_an_old_request_id(seats: Seats, users: Users) -> None:
    tenant = new_account(seats, (SALES, STARTER, 1))
    member = new_user(users, tenant)
    clerk = new_user(users, tenant, permissions=ACCESS)
    request_id = rid()
    first = assign(seats, tenant, member.user_id, SALES, STARTER, by=clerk.user_id, request_id=request_id)
    again = assign(seats, tenant, member.user_id, SALES, STARTER, by=clerk.user_id, request_id=request_id)
    assert again == first
    users.DeleteUser(
        user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=clerk.user_id),
        metadata=tenant.as_owner,
    )

    with refused(PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        assign(seats, tenant, member.user_id, SALES, STARTER, by=clerk.user_id, request_id=request_id)


# The window.


def test_i5_a_kept_refusal_expires_with_its_record(running: Running) -> None:
    tenant, waiting = full(running.seats, running.users)
    request_id = rid()
    with refused(FAILED_PRECONDITION, "NO_SEAT_AVAILABLE"):
        assign(running.seats, tenant, waiting, SALES, STARTER, request_id=request_id)
    purchase(running.seats, tenant, SALES, STARTER, 1)
    running.clock.advance(hours=25)
    running.server.sweeper.sweep_once()

    assign(running.seats, tenant, waiting, SALES, STARTER, request_id=request_id)

    assert seat_refs(running.users, tenant, waiting) == {(SALES, STARTER)}


# The store's part.


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_savepoint_undoes_only_its_part_of_a_write(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A savepoint inside a write call: on an exception its writes (sent already, or still
    waiting to travel with the next statement on PostgreSQL), callbacks and staged values are
    undone; the writes before and after it commit."""
    store = open_store(database_url(backend, tmp_path_factory))
    try:
        store.migrate()
        now = datetime(2026, 1, 1, tzinfo=UTC)
        ran: list[str] = []

        def sent() -> None:
            assert store.purge_requests(now + timedelta(days=1)) == 1  # run at once: it counts rows
            store.after_commit(lambda: ran.append("sent"))
            store.stage("key", "sent")
            raise RuntimeError("refused")

        def waiting() -> None:
            store.insert_account(  # on PostgreSQL it waits to travel with the next statement
                Account("acc_w", "W", "usr_w", "USD", 1, now, now, now + timedelta(days=31), 0, now)
            )
            store.after_commit(lambda: ran.append("waiting"))
            raise RuntimeError("refused")

        def call() -> object:
            store.save_request("s", "before", "fp", b"before", now, now)
            store.stage("key", "before")
            for part in (sent, waiting):
                with pytest.raises(RuntimeError):
                    store.savepoint(part)
            store.savepoint(lambda: store.save_request("s", "inside", "fp", b"inside", now, now))
            store.save_request("s", "after", "fp", b"after", now, now)
            return store.staged("key")

        assert store.write(call) == "before"
        assert ran == []
        assert store.get_account("acc_w") is None
        found = {rid: store.find_request("s", rid, now) for rid in ("before", "inside", "after")}
        assert {k: v.response if v else None for k, v in found.items()} == {
            "before": b"before",
            "inside": b"inside",
            "after": b"after",
        }
        with pytest.raises(RuntimeError):
            store.savepoint(lambda: None)  # only inside a write
    finally:
        store.drop_schema()
        store.close()


@pytest.mark.parametrize("backend", BACKENDS)
def test_store_migration_3_keeps_the_request_records_of_a_version_2_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = open_store(database_url(backend, tmp_path_factory))
    try:
        assert store.migrate(target=2) == [1, 2]
        records = store.m.RequestRecord  # a record as version 2 wrote it: no refusal column yet
        records.insert(scope="acc_1", request_id="old", fingerprint="fp", response=b"answer", create_time=5).execute()
        assert store.migrate(target=3) == [3]
        now = datetime(2026, 1, 1, tzinfo=UTC)
        record = store.find_request("acc_1", "old", datetime.fromtimestamp(0, UTC))
        assert record is not None and (record.response, record.refusal) == (b"answer", None)

        refusal = '{"fields":[],"kind":"NOT_FOUND","message":"m","metadata":{},"preconditions":[],"reason":"R"}'
        store.write(lambda: store.save_request("acc_1", "new", "fp", b"", now, now, refusal=refusal))
        kept = store.find_request("acc_1", "new", now)
        assert kept is not None and kept.refusal == refusal
        assert decode_refusal(kept.refusal).reason == "R"
    finally:
        store.drop_schema()
        store.close()


def test_i5_each_account_has_request_ids_of_its_own(seats: Seats) -> None:
    """Two accounts may use one request id; each has its own call."""
    first, second = new_account(seats, (SALES, STARTER, 0)), new_account(seats, (SALES, STARTER, 0))
    request_id = rid()
    for tenant in (first, second):
        purchase(seats, tenant, SALES, STARTER, 1, request_id=request_id)
    assert [pool(seats, t, SALES, STARTER).purchased for t in (first, second)] == [1, 1]

