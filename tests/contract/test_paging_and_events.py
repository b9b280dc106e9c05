"""Keyset paging of the list calls (AIP-158) and the event stream of WatchSeatEvents."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar

import grpc
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.contract.helpers import (
    NO_HUB,
    NO_TIER,
    PROFESSIONAL,
    SALES,
    SERVICE,
    STARTER,
    Metadata,
    Seats,
    Users,
    assign,
    event_types,
    events,
    new_account,
    new_user,
    purchase,
    user,
)
from tests.toolkit import Hub, Tier, cancel, refused

WATCH_SECONDS = 10  # the deadline of a watch; the test finishes long before unless the server hangs


class PagedRequest(Protocol):
    page_token: str


class PagedResponse(Protocol):
    next_page_token: str


Response = TypeVar("Response", bound=PagedResponse)
Item = TypeVar("Item")


def pages(
    list_call: Callable[..., Response],
    request: PagedRequest,
    items_of: Callable[[Response], Iterable[Item]],
    metadata: Metadata = (),
) -> list[list[Item]]:
    """Every page of a list call, following next_page_token; returns the pages' items."""
    found: list[list[Item]] = []
    while True:
        response = list_call(request, metadata=metadata)
        found.append(list(items_of(response)))
        if not response.next_page_token:
            return found
        assert len(found) < 100, "the paging does not end"
        request.page_token = response.next_page_token


def test_list_users_pages_through_every_user_once_in_order(seats: Seats, users: Users) -> None:
    """ListUsers with page_size 2 returns every user exactly once, ordered by user id, over several pages."""
    tenant = new_account(seats)
    created = [new_user(users, tenant) for _ in range(6)]
    request = user_service_pb2.ListUsersRequest(account_id=tenant.id, page_size=2)

    paged = pages(users.ListUsers, request, lambda r: [u.user_id for u in r.users], tenant.as_owner)

    assert [len(page) for page in paged] == [2, 2, 2, 1]
    flat = [user_id for page in paged for user_id in page]
    assert sorted(flat) == sorted([tenant.owner_id, *(u.user_id for u in created)])
    assert flat == sorted(flat), "ordered by user id"
    whole = users.ListUsers(user_service_pb2.ListUsersRequest(account_id=tenant.id), metadata=tenant.as_owner)
    assert [u.user_id for u in whole.users] == flat
    assert not whole.next_page_token


def test_list_users_paging_is_keyset_stable_under_deletes(seats: Seats, users: Users) -> None:
    """ListUsers pages by key: deleting a user already seen neither skips nor repeats the others."""
    tenant = new_account(seats)
    created = [new_user(users, tenant) for _ in range(5)]
    request = user_service_pb2.ListUsersRequest(account_id=tenant.id, page_size=2)
    first = users.ListUsers(request, metadata=tenant.as_owner)
    seen = [u.user_id for u in first.users]
    gone = next(user_id for user_id in seen if user_id != tenant.owner_id)
    users.DeleteUser(user_service_pb2.DeleteUserRequest(account_id=tenant.id, user_id=gone), metadata=tenant.as_owner)

    request.page_token = first.next_page_token
    rest = pages(users.ListUsers, request, lambda r: [u.user_id for u in r.users], tenant.as_owner)

    flat = seen + [user_id for page in rest for user_id in page]
    assert sorted(flat) == sorted([tenant.owner_id, *(u.user_id for u in created)])
    assert len(flat) == len(set(flat))


def test_list_users_filters_by_hub(seats: Seats, users: Users) -> None:
    """ListUsers with a hub lists only the users holding a seat of that hub, of any tier."""
    tenant = new_account(seats, (SALES, STARTER, 5), (SERVICE, PROFESSIONAL, 0))
    sales = [new_user(users, tenant, seats=[(SALES, STARTER)]) for _ in range(3)]
    both = new_user(users, tenant, seats=[(SALES, STARTER), (SERVICE, PROFESSIONAL)])
    service = new_user(users, tenant, seats=[(SERVICE, PROFESSIONAL)])
    new_user(users, tenant)

    def listed(hub: Hub) -> list[str]:
        request = user_service_pb2.ListUsersRequest(account_id=tenant.id, hub=hub, page_size=2)
        paged = pages(users.ListUsers, request, lambda r: [u.user_id for u in r.users], tenant.as_owner)
        return [user_id for page in paged for user_id in page]

    assert listed(SALES) == sorted(u.user_id for u in [*sales, both])
    assert listed(SERVICE) == sorted(u.user_id for u in [both, service])


def test_list_seat_assignments_pages_in_order_and_filters(seats: Seats, users: Users) -> None:
    """ListSeatAssignments pages over every seat once, ordered by user id then hub, and filters by hub and tier."""
    tenant = new_account(seats, (SALES, STARTER, 3), (SERVICE, STARTER, 3), (SERVICE, PROFESSIONAL, 0))
    people = [new_user(users, tenant) for _ in range(4)]
    for person in people:
        assign(seats, tenant, person.user_id, SALES, STARTER)
    for person in people[:2]:
        assign(seats, tenant, person.user_id, SERVICE, STARTER)
    for person in people[2:]:
        assign(seats, tenant, person.user_id, SERVICE, PROFESSIONAL)

    def listed(hub: Hub = NO_HUB, tier: Tier = NO_TIER) -> list[tuple[str, Hub, Tier]]:
        request = seat_service_pb2.ListSeatAssignmentsRequest(account_id=tenant.id, hub=hub, tier=tier, page_size=2)
        paged = pages(seats.ListSeatAssignments, request, lambda r: [(a.user_id, a.hub, a.tier) for a in r.assignments])
        assert all(len(page) <= 2 for page in paged)
        return [item for page in paged for item in page]

    every = listed()
    assert len(every) == 8 and len(set(every)) == 8
    assert every == sorted(every, key=lambda a: (a[0], a[1])), "ordered by user id then hub"
    assert listed(hub=SALES) == [a for a in every if a[1] == SALES]
    assert listed(hub=SERVICE) == [a for a in every if a[1] == SERVICE]
    assert listed(tier=STARTER) == [a for a in every if a[2] == STARTER]
    assert listed(hub=SERVICE, tier=PROFESSIONAL) == sorted((p.user_id, SERVICE, PROFESSIONAL) for p in people[2:])
    assert listed(hub=SALES, tier=PROFESSIONAL) == []


def test_list_seat_events_pages_by_sequence(seats: Seats, users: Users) -> None:
    """ListSeatEvents with page_size 2 returns every event once, by sequence, also after a cursor."""
    tenant = new_account(seats, (SALES, STARTER, 2))
    for _ in range(3):
        new_user(users, tenant, seats=[(SALES, STARTER)])
    total = len(events(seats, tenant))

    request = seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id, page_size=2)
    paged = pages(seats.ListSeatEvents, request, lambda r: [e.sequence for e in r.events])
    assert [e for page in paged for e in page] == list(range(1, total + 1))
    assert all(len(page) == 2 for page in paged[:-1])

    request = seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id, page_size=2, after_sequence=3)
    paged = pages(seats.ListSeatEvents, request, lambda r: [e.sequence for e in r.events])
    assert [e for page in paged for e in page] == list(range(4, total + 1))


def test_page_size_defaults_to_50_and_is_capped(seats: Seats, users: Users) -> None:
    """page_size 0 gives 50 items, a page_size above 1000 is capped rather than refused (AIP-158)."""
    tenant = new_account(seats)
    for _ in range(50):
        new_user(users, tenant)  # 51 users with the owner, 52 events or more

    default = users.ListUsers(user_service_pb2.ListUsersRequest(account_id=tenant.id), metadata=tenant.as_owner)
    assert len(default.users) == 50 and default.next_page_token
    default_events = seats.ListSeatEvents(seat_service_pb2.ListSeatEventsRequest(account_id=tenant.id))
    assert len(default_events.events) == 50 and default_events.next_page_token

    huge = users.ListUsers(
        user_service_pb2.ListUsersRequest(account_id=tenant.id, page_size=5000), metadata=tenant.as_owner
    )
    assert len(huge.users) == 51 and not huge.next_page_token


def test_a_page_token_of_another_account_is_refused(seats: Seats, users: Users) -> None:
    """A page token belongs to its list: another account's token is INVALID_ARGUMENT (AIP-158)."""
    home, other = new_account(seats), new_account(seats)
    for tenant in (home, other):
        for _ in range(3):
            new_user(users, tenant)
    token = users.ListUsers(
        user_service_pb2.ListUsersRequest(account_id=other.id, page_size=1), metadata=other.as_owner
    ).next_page_token

    with refused(grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD") as refusal:
        users.ListUsers(
            user_service_pb2.ListUsersRequest(account_id=home.id, page_size=1, page_token=token),
            metadata=home.as_owner,
        )

    assert refusal.names_field("page_token")


class Watcher:
    """Reads WatchSeatEvents on a thread into a queue, so that the test can wait with a deadline."""

    def __init__(self, seats: Seats, account_id: str, after_sequence: int) -> None:
        self.call = seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=account_id, after_sequence=after_sequence),
            timeout=WATCH_SECONDS,
        )
        self.received: queue.Queue[resources_pb2.SeatEvent | grpc.RpcError] = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.received.put(message.event)
        except grpc.RpcError as err:
            self.received.put(err)

    def next_events(self, count: int, timeout: float = 5) -> list[resources_pb2.SeatEvent]:
        found: list[resources_pb2.SeatEvent] = []
        for _ in range(count):
            item = self.received.get(timeout=timeout)
            assert not isinstance(item, grpc.RpcError), f"the watch ended: {item.code()} {item.details()}"
            found.append(item)
        return found

    def close(self) -> None:
        cancel(self.call)
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


def test_watch_streams_past_events_after_the_cursor_then_new_ones(seats: Seats, users: Users) -> None:
    """WatchSeatEvents sends the events after the cursor, then each new event as it commits."""
    tenant = new_account(seats, (SALES, STARTER, 1))
    for _ in range(2):
        new_user(users, tenant, seats=[(SALES, STARTER)])
    past = events(seats, tenant)
    other = new_account(seats)

    watcher = Watcher(seats, tenant.id, after_sequence=2)
    try:
        streamed = watcher.next_events(len(past) - 2)
        assert streamed == past[2:]

        purchase(seats, tenant, SALES, STARTER, 2)
        new_user(users, other)  # another account's change is not streamed here
        [fresh] = watcher.next_events(1)
        assert (fresh.sequence, event_types([fresh])) == (past[-1].sequence + 1, ["SEATS_PURCHASED"])
        assert fresh.quantity == 2

        new_user(users, tenant)
        [latest] = watcher.next_events(1)
        assert (latest.sequence, event_types([latest])) == (fresh.sequence + 1, ["USER_CREATED"])
        assert watcher.received.empty()
    finally:
        watcher.close()


def test_watch_from_zero_starts_with_the_account_creation(seats: Seats) -> None:
    """WatchSeatEvents with after_sequence 0 sends the whole log, from ACCOUNT_CREATED on."""
    tenant = new_account(seats, (SALES, STARTER, 0), (SERVICE, STARTER, 0))

    watcher = Watcher(seats, tenant.id, after_sequence=0)
    try:
        streamed = watcher.next_events(4)
    finally:
        watcher.close()

    assert [e.sequence for e in streamed] == [1, 2, 3, 4]
    assert event_types(streamed) == ["ACCOUNT_CREATED", "USER_CREATED", "POOL_OPENED", "POOL_OPENED"]
    assert streamed == events(seats, tenant)


def test_watch_of_an_unknown_account_is_refused(seats: Seats, users: Users) -> None:
    """WatchSeatEvents checks the account (and actor) like every call: NOT_FOUND for an unknown account."""
    tenant = new_account(seats)
    stranger = new_account(seats)

    with refused(grpc.StatusCode.NOT_FOUND, "ACCOUNT_NOT_FOUND"):
        next(iter(seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id="acc-does-not-exist"), timeout=WATCH_SECONDS
        )))
    with refused(grpc.StatusCode.PERMISSION_DENIED, "ACTOR_NOT_IN_ACCOUNT"):
        next(iter(seats.WatchSeatEvents(
            seat_service_pb2.WatchSeatEventsRequest(account_id=tenant.id),
            metadata=stranger.as_owner, timeout=WATCH_SECONDS,
        )))
    assert user(users, tenant, tenant.owner_id).user_id == tenant.owner_id
