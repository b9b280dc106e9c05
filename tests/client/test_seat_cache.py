"""SeatCache and AsyncSeatCache against the session's in-process server (SQLite and PostgreSQL):
the cache answers like CheckSeats after every kind of change, from memory; its load is exact
even when writers interleave with its pages; a dropped event makes it reload; and it never
answers from a memory it cannot confirm within max_silence (a cut connection, a broken watch):
then the answer comes from CheckSeats, or the call raises. Time past max_silence is simulated
with a clock the test steps forward, so no test sleeps for it. Against a server whose watches
live half a second: a watch ended at its longest life (WATCH_EXPIRED) is resumed without a
reload, a gap or a repeat, and a resumed watch that breaks any other way still reloads."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import grpc
import grpc.aio
import pytest
from seats import AsyncSeatCache, AsyncSeatsClient, RetryPolicy, SeatCache, SeatsClient, errors
from seats.cache import PROBE_USER_ID, ForcedResync, SequenceGap

from tests.client.conftest import CALL_TIMEOUT, FAST_RETRY, Tenant, new_tenant
from tests.client.helpers import ENTERPRISE, FREE, NO_TIER, PROFESSIONAL, SALES, SERVICE, STARTER, InjectedError
from tests.conftest import BACKENDS, Running, database_url, served
from tests.served import COMMAND_SECONDS, serving
from tests.toolkit import (
    AsyncUnaryStreamInterceptor,
    AsyncUnaryUnaryInterceptor,
    UnaryStreamInterceptor,
    UnaryUnaryInterceptor,
)

T = TypeVar("T")

CONVERGE_SECONDS = 5.0
"""How long the cache may take to show a committed change (it takes milliseconds)."""
LONG_SILENCE = 60.0
"""max_silence of the tests that must be answered from memory: the memory never goes stale by itself."""
QUICK_BACKOFF = RetryPolicy(max_attempts=1, initial_backoff=0.01, max_backoff=0.1)
HUBS = (SALES, SERVICE)
NO_RETRY_CLIENT = RetryPolicy(max_attempts=1)


class SteppedClock:
    """A monotonic clock the test can move forward at once, to pass max_silence without waiting."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def client_of(
    running: Running,
    actor: str | None,
    *interceptors: Any,
    retry: RetryPolicy = FAST_RETRY,
    timeout: float = CALL_TIMEOUT,
) -> SeatsClient:
    return SeatsClient(running.target, actor=actor, retry=retry, timeout=timeout, interceptors=interceptors)


@contextmanager
def following(client: SeatsClient, account_id: str, **options: Any) -> Iterator[SeatCache]:
    """A cache that has loaded and is watching; closed on the way out."""
    options.setdefault("max_silence", LONG_SILENCE)
    options.setdefault("backoff", QUICK_BACKOFF)
    cache = SeatCache(client, account_id, **options)
    try:
        assert cache.wait_until_healthy(CONVERGE_SECONDS), f"the cache did not get healthy: {cache.last_error!r}"
        yield cache
    finally:
        cache.close()


def caught_up(cache: SeatCache, tenant: Tenant, user_ids: Sequence[str]) -> None:
    """Waits for the cache to reach the account's sequence, then checks that it answers every
    user and hub exactly like CheckSeats, from memory."""
    remote = cache.remote_checks
    answers = {hub: tenant.owner.check_seats(tenant.id, hub, list(user_ids)) for hub in HUBS}
    sequence = max(a.sequence for a in answers.values())
    assert cache.wait_for_sequence(sequence, CONVERGE_SECONDS), (
        f"the cache is at {cache.sequence}, the account at {sequence}; last error {cache.last_error!r}"
    )
    assert cache.sequence == sequence
    for hub, answer in answers.items():
        cached = [cache.tier_of(user_id, hub) for user_id in user_ids]
        assert cached == list(answer.tiers), f"hub {hub}: cache {cached} != CheckSeats {list(answer.tiers)}"
    assert cache.remote_checks == remote, "the cache answered from CheckSeats instead of memory"


# ---- faults the tests inject between the cache and the server ----------------------------------


def method_name(details: Any) -> str:
    method = details.method.decode() if isinstance(details.method, bytes) else details.method
    return str(method).rsplit("/", 1)[-1]


class Refused:
    """A stream call refused before it started: iterating raises, cancelling does nothing."""

    def __iter__(self) -> Refused:
        return self

    def __next__(self) -> Any:
        raise InjectedError(grpc.StatusCode.UNAVAILABLE)

    def cancel(self) -> bool:
        return False


class Stream:
    """A watch stream seen through the faults: it can be cut, can lose chosen events, and can be
    held: open, yet delivering nothing until it is cancelled."""

    def __init__(self, call: Any, faults: Faults, *, after: int = 0, held: bool = False) -> None:
        self.call, self.faults = call, faults
        self.after = after
        """The request's after_sequence."""
        self.delivered: list[int] = []
        """The sequences it handed to the cache, in order."""
        self.cancelled = False
        self.flowing = threading.Event()
        if not held:
            self.flowing.set()

    def __iter__(self) -> Stream:
        return self

    def __next__(self) -> Any:
        while True:
            message = next(self.call)
            self.flowing.wait()  # a held stream keeps what it received
            if self.cancelled:
                raise InjectedError(grpc.StatusCode.CANCELLED)
            if message.event.sequence not in self.faults.lose:
                self.delivered.append(message.event.sequence)
                return message

    def hold(self) -> None:
        self.flowing.clear()

    def cancel(self) -> bool:
        self.cancelled = True
        self.flowing.set()
        return bool(self.call.cancel())


class Faults(UnaryUnaryInterceptor, UnaryStreamInterceptor):
    """Between the cache's client and the server: refuses the calls of chosen methods with
    UNAVAILABLE, cuts open watch streams, loses chosen events, and runs a hook before the n-th
    call of a method."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.lose: set[int] = set()
        self.hooks: dict[tuple[str, int], Callable[[], None]] = {}
        self.calls: dict[str, int] = {}
        self.streams: list[Stream] = []
        self.opened = 0
        """Watch streams made so far (the last one is streams[-1] unless they were cut)."""
        self.held = 0
        """How many of the next watch calls are held from the start."""
        self.lock = threading.Lock()

    def refuse(self, *methods: str) -> None:
        self.refused.update(methods)

    def hold_watches(self) -> None:
        with self.lock:
            streams = list(self.streams)
        for stream in streams:
            stream.hold()

    def cut_watches(self) -> None:
        with self.lock:
            streams, self.streams = self.streams, []
        for stream in streams:
            stream.cancel()

    def _enter(self, details: Any) -> str:
        name = method_name(details)
        with self.lock:
            self.calls[name] = count = self.calls.get(name, 0) + 1
            hook = self.hooks.pop((name, count), None)
        if hook is not None:
            hook()
        return name

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        if self._enter(details) in self.refused:
            raise InjectedError(grpc.StatusCode.UNAVAILABLE)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        if self._enter(details) in self.refused:
            return Refused()
        with self.lock:
            held, self.held = self.held > 0, max(self.held - 1, 0)
        stream = Stream(continuation(details, request), self, after=request.after_sequence, held=held)
        with self.lock:
            self.streams.append(stream)
            self.opened += 1
        return stream


# ---- the cache answers like CheckSeats ---------------------------------------------------------


def test_the_cache_loads_the_assignments_at_the_account_sequence(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 3), ("sales", "professional", 3), ("service", "starter", 3))
    users = [
        tenant.user(seats=(("sales", "starter"),)).user_id,
        tenant.user(seats=(("sales", "professional"), ("service", "starter"))).user_id,
        tenant.user().user_id,
        tenant.owner_id,
    ]

    with client_of(running, tenant.owner_id) as client, following(client, tenant.id) as cache:
        caught_up(cache, tenant, [*users, "usr_unknown"])
        assert cache.resyncs == 1
        assert cache.tier_of(users[0], "sales") == STARTER
        assert cache.tier_of(users[1], "HUB_SERVICE") == STARTER
        assert cache.tier_of(users[1], "Sales") == PROFESSIONAL
        assert cache.tier_of(users[2], SALES) == NO_TIER
        assert cache.healthy and cache.watching and cache.fresh


def test_the_cache_answers_like_check_seats_after_every_kind_of_change(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 2), ("sales", "professional", 0), ("service", "free", 0))
    ann, bob, cy, dee = (tenant.user().user_id for _ in range(4))
    everyone = [ann, bob, cy, dee, tenant.owner_id, "usr_unknown"]
    owner = tenant.owner

    with client_of(running, tenant.owner_id) as client, following(client, tenant.id) as cache:
        caught_up(cache, tenant, everyone)
        owner.assign_seat(tenant.id, ann, "sales", "starter")  # assign
        caught_up(cache, tenant, everyone)
        owner.assign_seat(tenant.id, ann, "sales", "professional")  # move
        caught_up(cache, tenant, everyone)
        assert cache.tier_of(ann, "sales") == PROFESSIONAL
        owner.assign_seat(tenant.id, bob, "sales", "starter")
        owner.unassign_seat(tenant.id, bob, "sales")  # unassign
        caught_up(cache, tenant, everyone)
        assert cache.tier_of(bob, "sales") == NO_TIER
        owner.batch_update_seat_assignments(  # batch: move, assign, unassign at once
            tenant.id, [(ann, "sales", "starter"), (cy, "sales", "professional"), (bob, "sales", None)]
        )
        caught_up(cache, tenant, everyone)
        owner.assign_seat(tenant.id, dee, "sales", "professional", purchase_if_needed=True)
        owner.assign_seat(tenant.id, bob, "sales", "professional", purchase_if_needed=True)  # buys a seat (S14)
        caught_up(cache, tenant, everyone)
        owner.assign_seat(tenant.id, cy, "service", "free")
        owner.assign_seat(tenant.id, dee, "service", "free")
        caught_up(cache, tenant, everyone)
        assert cache.tier_of(cy, "service") == FREE
        # S6: the free pool closes; its holders lose the free seat; Dee gets the new tier.
        owner.upgrade_subscription(tenant.id, "service", "enterprise", assign_user_ids=[dee])
        caught_up(cache, tenant, everyone)
        assert (cache.tier_of(cy, "service"), cache.tier_of(dee, "service")) == (NO_TIER, ENTERPRISE)
        owner.unassign_seat(tenant.id, ann, "sales")
        owner.delete_user(tenant.id, ann)  # user deletion
        caught_up(cache, tenant, everyone)
        user = owner.create_user(tenant.id, "new@cache.test", seats=[("sales", "starter")]).user  # seat at creation
        caught_up(cache, tenant, [*everyone, user.user_id])
        assert cache.tier_of(user.user_id, "sales") == STARTER
        assert cache.resyncs == 1, f"no reload was needed: {cache.last_error!r}"


def test_a_load_interleaved_with_writes_converges_to_the_exact_state(running: Running, system: SeatsClient) -> None:
    """Writes land between the pages of the load (after page 1, after page 3): pages mix states,
    the replay from the sequence read before the load fixes every key the writes touched."""
    tenant = new_tenant(system, ("sales", "starter", 12), ("sales", "professional", 12))
    holders = [tenant.user(seats=(("sales", "starter"),)).user_id for _ in range(10)]
    spare = tenant.user().user_id
    owner = tenant.owner
    ordered = sorted(holders)  # pages follow user ids

    def between_pages_1_and_2() -> None:
        owner.assign_seat(tenant.id, ordered[0], "sales", "professional")  # already read: moved
        owner.unassign_seat(tenant.id, ordered[-1], "sales")  # not read yet: gone
        owner.assign_seat(tenant.id, spare, "sales", "professional")  # new

    def between_pages_3_and_4() -> None:
        owner.assign_seat(tenant.id, ordered[-1], "sales", "starter")  # back again
        owner.assign_seat(tenant.id, ordered[1], "sales", "professional")  # already read: moved
        owner.unassign_seat(tenant.id, ordered[7], "sales")

    faults = Faults()
    faults.hooks[("ListSeatAssignments", 2)] = between_pages_1_and_2
    faults.hooks[("ListSeatAssignments", 4)] = between_pages_3_and_4
    before = owner.check_seats(tenant.id, "sales", [spare]).sequence

    with client_of(running, tenant.owner_id, faults) as client, following(client, tenant.id, page_size=2) as cache:
        assert not faults.hooks, "both writes ran between pages"
        caught_up(cache, tenant, [*holders, spare])
        assert cache.sequence == before + 8  # 4 + 4 events written during the load (a move is two)
        assert cache.resyncs == 1, "the replay made the load exact: no reload"
        assert cache.tier_of(ordered[0], "sales") == PROFESSIONAL
        assert cache.tier_of(ordered[7], "sales") == NO_TIER
        assert cache.tier_of(spare, "sales") == PROFESSIONAL


def test_a_lost_event_makes_the_cache_reload(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "professional", 4))
    users = [tenant.user().user_id for _ in range(3)]
    faults = Faults()

    with client_of(running, tenant.owner_id, faults) as client, following(client, tenant.id) as cache:
        faults.lose.add(cache.sequence + 2)
        for user_id in users:
            tenant.owner.assign_seat(tenant.id, user_id, "sales", "professional")
        caught_up(cache, tenant, users)
        assert cache.resyncs == 2
        assert isinstance(cache.last_error, SequenceGap), repr(cache.last_error)
        assert [cache.tier_of(u, "sales") for u in users] == [PROFESSIONAL] * 3


def test_a_watch_open_but_not_delivering_is_dropped_and_the_account_reloaded(
    running: Running, system: SeatsClient
) -> None:
    """The heartbeat learns of a sequence the open watch does not bring; once that is older than
    max_silence, the cache drops the watch and reloads."""
    tenant = new_tenant(system, ("sales", "professional", 2))
    user = tenant.user().user_id
    faults, clock = Faults(), SteppedClock()

    with (
        client_of(running, tenant.owner_id, faults) as client,
        following(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
    ):
        faults.hold_watches()
        tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
        assert cache.wait_until(lambda c: c.server_sequence > c.sequence, CONVERGE_SECONDS), "no heartbeat saw it"
        assert cache.tier_of(user, "sales") == NO_TIER  # the copy lags, within max_silence
        assert cache.resyncs == 1

        clock.advance(cache.max_silence + 0.001)

        assert cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS), repr(cache.last_error)
        assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
        caught_up(cache, tenant, [user])
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.server_sequence == cache.sequence


def test_a_watch_that_never_sends_its_first_message_is_cut_before_any_load(
    running: Running, system: SeatsClient
) -> None:
    tenant = new_tenant(system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    faults = Faults()
    faults.held = 1  # the first watch opens and stays silent

    with client_of(running, tenant.owner_id, faults, timeout=0.5) as client, following(client, tenant.id) as cache:
        assert faults.calls["WatchSeatEvents"] == 2
        assert faults.calls["ListSeatAssignments"] == 1, "no page was loaded for the silent watch"
        assert cache.resyncs == 1
        assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 0


def test_readers_on_many_threads_see_only_states_the_account_went_through(
    running: Running, system: SeatsClient
) -> None:
    tenant = new_tenant(system, ("sales", "starter", 4), ("sales", "professional", 4))
    users = [tenant.user(seats=(("sales", "starter"),)).user_id for _ in range(4)]
    allowed = {STARTER, PROFESSIONAL, NO_TIER}  # NO_TIER: a move is two events (see seats.cache)
    stop = threading.Event()
    seen: list[set[int]] = []
    failures: list[BaseException] = []

    def read(cache: SeatCache) -> None:
        mine: set[int] = set()
        try:
            while not stop.is_set():
                for user_id in users:
                    mine.add(cache.tier_of(user_id, "sales"))
                time.sleep(0)  # yield the GIL to the writer and the cache's worker between sweeps
        except BaseException as error:
            failures.append(error)
        seen.append(mine)

    with client_of(running, tenant.owner_id) as client, following(client, tenant.id) as cache:
        readers = [threading.Thread(target=read, args=(cache,), daemon=True) for _ in range(4)]
        for reader in readers:
            reader.start()
        for round_ in range(6):
            tier = "professional" if round_ % 2 == 0 else "starter"
            tenant.owner.batch_update_seat_assignments(tenant.id, [(u, "sales", tier) for u in users])
        caught_up(cache, tenant, users)
        stop.set()
        for reader in readers:
            reader.join(COMMAND_SECONDS)

    assert not failures, failures
    assert len(seen) == len(readers)
    assert set().union(*seen) <= allowed
    assert STARTER in set().union(*seen)


# ---- never from a memory known to be stale ----------------------------------------------------


def test_a_cut_connection_makes_tier_of_raise_after_max_silence_never_answer_old_memory(
    running: Running, system: SeatsClient
) -> None:
    tenant = new_tenant(system, ("sales", "professional", 2))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    faults, clock = Faults(), SteppedClock()

    with (
        client_of(running, tenant.owner_id, faults, retry=NO_RETRY_CLIENT) as client,
        following(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
    ):
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        faults.refuse("CheckSeats", "ListSeatAssignments", "WatchSeatEvents")
        faults.cut_watches()  # every call of the cache fails from now on: a network partition
        tenant.owner.unassign_seat(tenant.id, user, "sales")  # memory still says PROFESSIONAL

        clock.advance(cache.max_silence + 0.001)

        assert not cache.fresh and not cache.healthy
        assert cache.staleness > cache.max_silence
        with pytest.raises(errors.Unavailable):
            cache.tier_of(user, "sales")
        with pytest.raises(errors.Unavailable):
            cache.tier_of(tenant.owner_id, "service")

        faults.refused.clear()  # the network heals: the cache reloads and answers from memory again
        assert cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
        remote = cache.remote_checks
        assert cache.tier_of(user, "sales") == NO_TIER
        assert cache.remote_checks == remote
        assert cache.resyncs >= 2


def test_a_broken_watch_makes_tier_of_ask_check_seats_after_max_silence(running: Running, system: SeatsClient) -> None:
    """The watch is cut and cannot reconnect, nor can a load page, but CheckSeats gets through:
    once the memory is unconfirmed for max_silence, answers come from CheckSeats (the new tier),
    not from memory (the old one)."""
    tenant = new_tenant(system, ("sales", "starter", 2), ("sales", "professional", 2))
    user = tenant.user(seats=(("sales", "starter"),)).user_id
    faults, clock = Faults(), SteppedClock()

    with (
        client_of(running, tenant.owner_id, faults) as client,
        following(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
    ):
        faults.refuse("WatchSeatEvents", "ListSeatAssignments")
        faults.cut_watches()
        tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
        old = cache.sequence

        clock.advance(cache.max_silence + 0.001)

        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 1
        assert cache.sequence == old, "the memory did not move: the answer came from CheckSeats"
        assert cache.tier_of(tenant.owner_id, "sales") == NO_TIER
        assert cache.remote_checks == 2
        assert not cache.healthy


def test_an_idle_watch_is_confirmed_by_the_heartbeat_not_reloaded(running: Running, system: SeatsClient) -> None:
    """Nothing happens in the account: the watch sends nothing, yet the heartbeat's CheckSeats
    finds the sequence unchanged and confirms the memory, which stays in use."""
    tenant = new_tenant(system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    clock = SteppedClock()

    with (
        client_of(running, tenant.owner_id) as client,
        following(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
    ):
        sequence = cache.sequence
        clock.advance(cache.max_silence + 0.001)  # every confirmation so far is now too old

        assert cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)

        assert cache.staleness <= cache.max_silence, "a heartbeat sent after the step confirmed the memory"
        assert cache.last_event_age <= cache.max_silence
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert (cache.remote_checks, cache.resyncs, cache.sequence) == (0, 1, sequence)


def test_a_cache_whose_actor_is_an_outsider_raises_and_never_answers(running: Running, system: SeatsClient) -> None:
    tenant, other = new_tenant(system), new_tenant(system)
    with client_of(running, other.owner_id) as client, SeatCache(client, tenant.id, backoff=QUICK_BACKOFF) as cache:
        with pytest.raises(errors.ActorNotInAccount):
            cache.tier_of(tenant.owner_id, "sales")
        assert not cache.healthy
        assert cache.sequence == 0


def test_before_its_first_load_and_after_close_the_cache_asks_check_seats(
    running: Running, system: SeatsClient
) -> None:
    tenant = new_tenant(system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    faults = Faults()
    faults.refuse("ListSeatAssignments")  # the first load cannot finish

    with client_of(running, tenant.owner_id, faults) as client:
        cache = SeatCache(client, tenant.id, backoff=QUICK_BACKOFF)
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 1
        faults.refused.clear()
        assert cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 1
        cache.close()
        assert not cache.healthy and not cache.watching
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 2


def test_bad_hubs_and_settings_are_refused(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system)
    with client_of(running, tenant.owner_id) as client:
        with pytest.raises(ValueError):
            SeatCache(client, tenant.id, max_silence=0)
        with pytest.raises(ValueError):
            SeatCache(client, tenant.id, max_silence=1.0, heartbeat_interval=1.0)
        with following(client, tenant.id) as cache:
            for hub in ("marketing", "HUB_UNSPECIFIED", 0, -1):
                with pytest.raises(ValueError):
                    cache.tier_of(tenant.owner_id, hub)


# ---- a watch the server ends at its longest life is resumed, not reloaded ------------------------

WATCH_LIFETIME = 0.5
"""--watch-max-seconds of the server below: short, so that a test sees several ends."""


@pytest.fixture(scope="module", params=BACKENDS)
def expiring(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """A server of its own whose watches live WATCH_LIFETIME seconds, then end with
    UNAVAILABLE / WATCH_EXPIRED (the session's server keeps them 30 minutes)."""
    url = database_url(request.param, tmp_path_factory)
    with served(request.param, url, watch_max_seconds=WATCH_LIFETIME) as running:
        yield running


@pytest.fixture
def expiring_system(expiring: Running) -> Iterator[SeatsClient]:
    with SeatsClient(expiring.target, timeout=CALL_TIMEOUT, retry=FAST_RETRY) as client:
        yield client


def eventually(predicate: Callable[[], bool], what: str, timeout: float = CONVERGE_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def fresh_watch(faults: Faults, calls: int) -> Stream:
    """Waits for the cache's `calls`-th watch to deliver its first message (the event it starts
    with): it has a whole WATCH_LIFETIME ahead of it."""

    def started() -> bool:
        with faults.lock:
            return faults.opened >= calls and bool(faults.streams) and bool(faults.streams[-1].delivered)

    eventually(started, f"watch {calls} to start")
    with faults.lock:
        return faults.streams[-1]


@contextmanager
def health_sampled(healthy: Callable[[], bool]) -> Iterator[list[float]]:
    """Samples `healthy` every millisecond meanwhile; yields the list of times it was not."""
    unhealthy: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.001):
            if not healthy():
                unhealthy.append(time.monotonic())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield unhealthy
    finally:
        stop.set()
        sampler.join(COMMAND_SECONDS)


def assert_one_watch_without_gap_or_repeat(watches: Sequence[tuple[int, list[int]]], last: int) -> None:
    """`watches` are (after_sequence, delivered sequences) of the cache's watch calls in order:
    each resumes one event before the last the previous one delivered and starts with that event
    (the proof it is live, which changes nothing); past that, every sequence comes once, in
    order, up to `last`."""
    if watches and not watches[-1][1]:
        watches = watches[:-1]  # one just opening
    assert len(watches) >= 2, watches
    first_after, applied = watches[0][0], list(watches[0][1])
    for after, delivered in watches[1:]:
        assert after == applied[-1] - 1, f"resumed after {after}, the copy had applied {applied[-1]}"
        assert delivered[0] == applied[-1], delivered
        applied += delivered[1:]
    assert applied == list(range(first_after + 1, last + 1)), applied


def test_the_cache_resumes_a_watch_the_server_ends_at_its_longest_life_without_reloading(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    """Writes before, between and during several ends of the watch all reach the same copy: no
    reload (one load, one page), no gap, no repeat, and the cache never stops being healthy."""
    tenant = new_tenant(expiring_system, ("sales", "starter", 6), ("sales", "professional", 6))
    users = [tenant.user().user_id for _ in range(6)]
    owner = tenant.owner
    faults = Faults()

    with client_of(expiring, tenant.owner_id, faults) as client, following(client, tenant.id) as cache:
        with health_sampled(lambda: cache.healthy) as unhealthy:
            owner.assign_seat(tenant.id, users[0], "sales", "starter")  # before any end
            owner.assign_seat(tenant.id, users[1], "sales", "professional")
            caught_up(cache, tenant, users)
            fresh_watch(faults, 3)  # two ends while idle
            owner.assign_seat(tenant.id, users[0], "sales", "professional")  # a move between ends
            owner.unassign_seat(tenant.id, users[1], "sales")
            caught_up(cache, tenant, users)
            ends = faults.calls["WatchSeatEvents"] + 3
            writes = 0
            while faults.calls["WatchSeatEvents"] < ends:  # writing while three more ends pass
                tier = ("starter", "professional")[writes // len(users) % 2]
                owner.assign_seat(tenant.id, users[writes % len(users)], "sales", tier)
                writes += 1
                assert writes < 10_000, "the watch did not end"
            caught_up(cache, tenant, users)
            fresh_watch(faults, faults.opened + 1)
            owner.unassign_seat(tenant.id, users[2], "sales")  # after the last end
            caught_up(cache, tenant, users)
            assert cache.healthy

        assert not unhealthy, f"the cache was unhealthy {len(unhealthy)} times; last error {cache.last_error!r}"
        assert cache.resyncs == 1, f"an end of the watch made the cache reload: {cache.last_error!r}"
        assert cache.last_error is None, repr(cache.last_error)
        assert faults.calls["ListSeatAssignments"] == 1, "the account was paged once, by the first load"
        assert faults.calls["WatchSeatEvents"] >= 7
        with faults.lock:
            watches = [(stream.after, list(stream.delivered)) for stream in faults.streams]
        assert_one_watch_without_gap_or_repeat(watches, cache.sequence)


def test_a_resumed_watch_that_breaks_another_way_makes_the_cache_reload(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "professional", 2))
    user = tenant.user().user_id
    faults = Faults()

    with client_of(expiring, tenant.owner_id, faults) as client, following(client, tenant.id) as cache:
        fresh_watch(faults, 3)
        assert (cache.resyncs, faults.calls["ListSeatAssignments"]) == (1, 1), "two ends were resumed"

        faults.cut_watches()  # the resumed stream breaks (CANCELLED), not at its longest life

        assert cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS), repr(cache.last_error)
        assert isinstance(cache.last_error, errors.Cancelled), repr(cache.last_error)
        assert faults.calls["ListSeatAssignments"] == 2
        tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
        caught_up(cache, tenant, [user])


def test_a_resumed_watch_open_but_not_delivering_is_dropped_by_the_heartbeat(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    """The heartbeat cuts the stream that resumed the watch, not the one that ended before it."""
    tenant = new_tenant(expiring_system, ("sales", "professional", 2))
    user = tenant.user().user_id
    faults, clock = Faults(), SteppedClock()

    with (
        client_of(expiring, tenant.owner_id, faults) as client,
        following(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
    ):
        resumed = fresh_watch(faults, 3)
        assert cache.resyncs == 1, "two ends were resumed"
        resumed.hold()  # open, and delivering nothing more
        tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
        assert cache.wait_until(lambda c: c.server_sequence > c.sequence, CONVERGE_SECONDS), "no heartbeat saw it"

        clock.advance(cache.max_silence + 0.001)

        assert cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS), repr(cache.last_error)
        assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
        assert resumed.cancelled
        caught_up(cache, tenant, [user])


def test_a_resumed_watch_that_never_sends_its_first_message_is_cut(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    faults = Faults()

    with (
        client_of(expiring, tenant.owner_id, faults, timeout=1.0) as client,
        following(client, tenant.id) as cache,
    ):
        fresh_watch(faults, 3)
        assert (cache.resyncs, faults.calls["ListSeatAssignments"]) == (1, 1), "two ends were resumed"
        faults.held = 1  # the stream that resumes the watch at its next end stays silent

        assert cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS), repr(cache.last_error)
        assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
        assert faults.calls["ListSeatAssignments"] == 2
        assert cache.tier_of(user, "sales") == PROFESSIONAL
        assert cache.remote_checks == 0


# ---- figures: tier_of in memory, commit to apply -------------------------------------------------


def test_tier_of_from_memory_takes_under_5_microseconds(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    calls = 100_000
    with client_of(running, tenant.owner_id) as client, following(client, tenant.id) as cache:
        batches = []
        for hub in ("sales", SALES, "HUB_SERVICE", SERVICE, "sales"):
            started = time.perf_counter()
            for _ in range(calls):
                cache.tier_of(user, hub)
            batches.append((time.perf_counter() - started) / calls * 1e6)
        assert cache.remote_checks == 0
    median = statistics.median(batches)
    print(f"\n[seat cache {running.backend}] tier_of from memory: {median:.3f} us a call (batches {batches})")
    assert median < 5.0, batches


def test_commit_to_apply_latency(running: Running, system: SeatsClient) -> None:
    """Each write's event reaches the cache: measured from the write's send and from its answer."""
    tenant = new_tenant(system, ("sales", "professional", 2))
    user = tenant.user().user_id
    from_send, from_answer = [], []
    with client_of(running, tenant.owner_id) as client, following(client, tenant.id) as cache:
        for i in range(40):
            sequence = cache.sequence
            sent = time.perf_counter()
            if i % 2 == 0:
                tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
            else:
                tenant.owner.unassign_seat(tenant.id, user, "sales")
            answered = time.perf_counter()
            assert cache.wait_for_sequence(sequence + 1, CONVERGE_SECONDS), repr(cache.last_error)
            applied = time.perf_counter()
            from_send.append((applied - sent) * 1e3)
            from_answer.append((applied - answered) * 1e3)
        caught_up(cache, tenant, [user])
    print(
        f"\n[seat cache {running.backend}] commit to apply, ms: from the write's send median "
        f"{statistics.median(from_send):.2f} max {max(from_send):.2f}; after its answer median "
        f"{statistics.median(from_answer):.2f} max {max(from_answer):.2f} (negative: applied before the answer)"
    )
    assert max(from_send) < CONVERGE_SECONDS * 1e3


# ---- asyncio -----------------------------------------------------------------------------------


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), COMMAND_SECONDS)

    return asyncio.run(bounded())


class AsyncRefuse(AsyncUnaryUnaryInterceptor):
    """Refuses with UNAVAILABLE the unary calls of chosen methods, and the cache's heartbeats
    (CheckSeats of its probe id) when asked to."""

    def __init__(self) -> None:
        self.refused: set[str] = set()
        self.heartbeats = True

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        name = method_name(details)
        heartbeat = name == "CheckSeats" and list(request.user_ids) == [PROBE_USER_ID]
        if name in self.refused or (heartbeat and not self.heartbeats):
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "injected by the test", None
            )
        return await continuation(details, request)


def test_async_cache_answers_like_check_seats(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "starter", 2), ("sales", "professional", 2), ("service", "free", 0))
    ann, bob = tenant.user(seats=(("sales", "starter"),)).user_id, tenant.user().user_id
    everyone = [ann, bob, tenant.owner_id, "usr_unknown"]

    async def scenario() -> list[tuple[int, ...]]:
        async with (
            AsyncSeatsClient(running.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=CALL_TIMEOUT) as client,
            AsyncSeatCache(client, tenant.id, max_silence=LONG_SILENCE, backoff=QUICK_BACKOFF) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            seen: list[tuple[int, ...]] = []

            async def check() -> None:
                answers = {hub: await client.check_seats(tenant.id, hub, everyone) for hub in HUBS}
                sequence = max(a.sequence for a in answers.values())
                assert await cache.wait_for_sequence(sequence, CONVERGE_SECONDS), repr(cache.last_error)
                for hub, answer in answers.items():
                    cached = tuple([await cache.tier_of(u, hub) for u in everyone])
                    assert cached == tuple(answer.tiers), (hub, cached, list(answer.tiers))
                    seen.append(cached)

            await check()
            await client.assign_seat(tenant.id, ann, "sales", "professional")
            await client.assign_seat(tenant.id, bob, "service", "free")
            await check()
            await client.upgrade_subscription(tenant.id, "service", "starter", assign_user_ids=[ann])
            await client.unassign_seat(tenant.id, ann, "sales")
            await check()
            await client.unassign_seat(tenant.id, ann, "service")
            await client.delete_user(tenant.id, ann)
            await check()
            assert (cache.remote_checks, cache.resyncs) == (0, 1)
            assert cache.healthy
        return seen

    seen = run(scenario)
    assert seen == [  # (Sales, Service) answers after each step, for Ann, Bob, the owner, an unknown id
        (STARTER, NO_TIER, NO_TIER, NO_TIER),
        (NO_TIER, NO_TIER, NO_TIER, NO_TIER),
        (PROFESSIONAL, NO_TIER, NO_TIER, NO_TIER),
        (NO_TIER, FREE, NO_TIER, NO_TIER),
        (NO_TIER, NO_TIER, NO_TIER, NO_TIER),
        (STARTER, NO_TIER, NO_TIER, NO_TIER),
        (NO_TIER, NO_TIER, NO_TIER, NO_TIER),
        (NO_TIER, NO_TIER, NO_TIER, NO_TIER),
    ]


def test_async_cache_asks_check_seats_past_max_silence_and_raises_when_it_cannot(
    running: Running, system: SeatsClient
) -> None:
    tenant = new_tenant(system, ("sales", "starter", 2), ("sales", "professional", 2))
    user = tenant.user(seats=(("sales", "starter"),)).user_id
    refuse, clock = AsyncRefuse(), SteppedClock()

    async def scenario() -> None:
        async with (
            AsyncSeatsClient(
                running.target,
                actor=tenant.owner_id,
                retry=NO_RETRY_CLIENT,
                timeout=CALL_TIMEOUT,
                interceptors=[refuse],
            ) as client,
            AsyncSeatCache(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            assert await cache.tier_of(user, "sales") == STARTER
            tenant.owner.assign_seat(tenant.id, user, "sales", "professional")
            assert await cache.wait_for_sequence(cache.sequence + 2, CONVERGE_SECONDS), repr(cache.last_error)
            assert await cache.tier_of(user, "sales") == PROFESSIONAL  # the watch brought the move
            assert cache.remote_checks == 0
            refuse.heartbeats = False  # no heartbeat (nor reload: it reads the sequence the same way) gets through

            clock.advance(cache.max_silence + 0.001)
            assert not cache.fresh
            assert await cache.tier_of(tenant.owner_id, "sales") == NO_TIER
            assert cache.remote_checks == 1, "past max_silence the answer came from CheckSeats"
            assert cache.fresh, "that CheckSeats found the memory up to date and confirmed it"

            refuse.refused.add("CheckSeats")
            clock.advance(cache.max_silence + 0.001)
            with pytest.raises(errors.Unavailable):
                await cache.tier_of(user, "sales")
            assert cache.remote_checks == 1

    run(scenario)


def test_async_an_idle_watch_is_confirmed_by_the_heartbeat(running: Running, system: SeatsClient) -> None:
    tenant = new_tenant(system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    clock = SteppedClock()

    async def scenario() -> None:
        async with AsyncSeatsClient(
            running.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=CALL_TIMEOUT
        ) as client:
            async with AsyncSeatCache(
                client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock
            ) as cache:
                assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
                clock.advance(cache.max_silence + 0.001)
                assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
                assert cache.staleness <= cache.max_silence, "a heartbeat sent after the step confirmed the memory"
                assert await cache.tier_of(user, "sales") == PROFESSIONAL
                assert (cache.remote_checks, cache.resyncs) == (0, 1)
            assert not cache.healthy
            assert await cache.tier_of(user, "sales") == PROFESSIONAL  # closed: from CheckSeats
            assert cache.remote_checks == 1

    run(scenario)


class AsyncWatches(AsyncUnaryStreamInterceptor):
    """Between an AsyncSeatsClient and the server: records each watch call (its after_sequence,
    and the sequences it delivered), and when asked does something to the next message any
    watch receives: "hold" keeps it (the stream stays open and silent until cancelled), "break"
    ends the stream with UNAVAILABLE instead (as when a server goes away)."""

    def __init__(self) -> None:
        self.watches: list[tuple[int, list[int]]] = []
        self.next_message: str | None = None

    @property
    def calls(self) -> int:
        return len(self.watches)

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = await continuation(details, request)
        delivered: list[int] = []
        self.watches.append((request.after_sequence, delivered))

        async def relay() -> AsyncIterator[Any]:
            async for message in call:
                fate, self.next_message = self.next_message, None
                if fate == "hold":
                    await asyncio.Event().wait()  # until the reader is cancelled
                if fate == "break":
                    raise grpc.aio.AioRpcError(
                        grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(),
                        "injected by the test", None,
                    )
                delivered.append(message.event.sequence)
                yield message

        return relay()

    async def fresh_watch(self, calls: int) -> None:
        """Waits for the `calls`-th watch to deliver its first message."""
        async with asyncio.timeout(CONVERGE_SECONDS):
            while self.calls < calls or not self.watches[-1][1]:
                await asyncio.sleep(0.005)


def test_async_cache_resumes_a_watch_the_server_ends_at_its_longest_life_without_reloading(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "starter", 6), ("sales", "professional", 6))
    users = [tenant.user().user_id for _ in range(6)]
    watches = AsyncWatches()

    async def scenario() -> None:
        async with (
            AsyncSeatsClient(
                expiring.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=CALL_TIMEOUT, interceptors=[watches]
            ) as client,
            AsyncSeatCache(client, tenant.id, max_silence=LONG_SILENCE, backoff=QUICK_BACKOFF) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            unhealthy: list[float] = []

            async def sample() -> None:
                while True:
                    if not cache.healthy:
                        unhealthy.append(time.monotonic())
                    await asyncio.sleep(0.001)

            async def caught_up() -> None:
                answer = await client.check_seats(tenant.id, "sales", users)
                assert await cache.wait_for_sequence(answer.sequence, CONVERGE_SECONDS), repr(cache.last_error)
                assert cache.sequence == answer.sequence
                assert [await cache.tier_of(u, "sales") for u in users] == list(answer.tiers)
                assert cache.remote_checks == 0

            sampler = asyncio.create_task(sample())
            await client.assign_seat(tenant.id, users[0], "sales", "starter")  # before any end
            await caught_up()
            await watches.fresh_watch(3)  # two ends while idle
            await client.assign_seat(tenant.id, users[0], "sales", "professional")
            await client.assign_seat(tenant.id, users[1], "sales", "starter")
            await caught_up()
            ends, writes = watches.calls + 3, 0
            while watches.calls < ends:  # writing while three more ends pass
                tier = ("starter", "professional")[writes // len(users) % 2]
                await client.assign_seat(tenant.id, users[writes % len(users)], "sales", tier)
                writes += 1
                assert writes < 10_000, "the watch did not end"
            await caught_up()
            await watches.fresh_watch(watches.calls + 1)
            await client.unassign_seat(tenant.id, users[2], "sales")  # after the last end
            await caught_up()
            sampler.cancel()

            assert not unhealthy, f"unhealthy {len(unhealthy)} times; last error {cache.last_error!r}"
            assert cache.resyncs == 1, f"an end of the watch made the cache reload: {cache.last_error!r}"
            assert cache.last_error is None, repr(cache.last_error)
            assert watches.calls >= 7
            assert_one_watch_without_gap_or_repeat([(a, list(d)) for a, d in watches.watches], cache.sequence)

    run(scenario)


def test_async_a_resumed_watch_that_breaks_another_way_makes_the_cache_reload(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "professional", 2))
    user = tenant.user().user_id
    watches = AsyncWatches()

    async def scenario() -> None:
        async with (
            AsyncSeatsClient(
                expiring.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=CALL_TIMEOUT, interceptors=[watches]
            ) as client,
            AsyncSeatCache(client, tenant.id, max_silence=LONG_SILENCE, backoff=QUICK_BACKOFF) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            await watches.fresh_watch(3)
            assert cache.resyncs == 1, "two ends were resumed"

            watches.next_message = "break"
            await client.assign_seat(tenant.id, user, "sales", "professional")  # its event breaks the stream

            assert await cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS)
            assert isinstance(cache.last_error, errors.Unavailable), repr(cache.last_error)
            assert cache.last_error.reason == "", "not an end at the watch's longest life"
            answer = await client.check_seats(tenant.id, "sales", [user])
            assert await cache.wait_for_sequence(answer.sequence, CONVERGE_SECONDS)
            assert await cache.tier_of(user, "sales") == PROFESSIONAL
            assert cache.remote_checks == 0

    run(scenario)


def test_async_a_resumed_watch_open_but_not_delivering_is_dropped_by_the_heartbeat(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "professional", 2))
    user = tenant.user().user_id
    watches, clock = AsyncWatches(), SteppedClock()

    async def scenario() -> None:
        async with (
            AsyncSeatsClient(
                expiring.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=CALL_TIMEOUT, interceptors=[watches]
            ) as client,
            AsyncSeatCache(client, tenant.id, max_silence=2.0, heartbeat_interval=0.05, clock=clock) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            await watches.fresh_watch(3)
            assert cache.resyncs == 1, "two ends were resumed"

            watches.next_message = "hold"
            await client.assign_seat(tenant.id, user, "sales", "professional")  # its event is held
            assert await cache.wait_until(lambda c: c.server_sequence > c.sequence, CONVERGE_SECONDS)
            clock.advance(cache.max_silence + 0.001)

            assert await cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS)
            assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
            assert await cache.wait_for_sequence(cache.server_sequence, CONVERGE_SECONDS)
            assert await cache.tier_of(user, "sales") == PROFESSIONAL

    run(scenario)


def test_async_a_resumed_watch_that_never_sends_its_first_message_is_cut(
    expiring: Running, expiring_system: SeatsClient
) -> None:
    tenant = new_tenant(expiring_system, ("sales", "professional", 0))
    user = tenant.user(seats=(("sales", "professional"),)).user_id
    watches = AsyncWatches()

    async def scenario() -> None:
        async with (
            AsyncSeatsClient(
                expiring.target, actor=tenant.owner_id, retry=FAST_RETRY, timeout=1.0, interceptors=[watches]
            ) as client,
            AsyncSeatCache(client, tenant.id, max_silence=LONG_SILENCE, backoff=QUICK_BACKOFF) as cache,
        ):
            assert await cache.wait_until_healthy(CONVERGE_SECONDS), repr(cache.last_error)
            await watches.fresh_watch(3)
            assert cache.resyncs == 1, "two ends were resumed"
            watches.next_message = "hold"  # the idle account's next message: the next resumed stream's first

            assert await cache.wait_until(lambda c: c.resyncs == 2 and c.healthy, CONVERGE_SECONDS)
            assert isinstance(cache.last_error, ForcedResync), repr(cache.last_error)
            assert await cache.tier_of(user, "sales") == PROFESSIONAL
            assert cache.remote_checks == 0

    run(scenario)


# ---- the README example ---------------------------------------------------------------------------


def test_readme_seat_cache_example_runs(tmp_path: Path) -> None:
    from tests.contract.test_readme import block

    with serving(tmp_path) as server:
        done = subprocess.run(
            [sys.executable, "-c", block("seat-cache-example", "python")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "SEATS_TARGET": server.address},
            timeout=COMMAND_SECONDS,
            check=False,
        )
    assert done.returncode == 0, f"the seat cache example failed:\n{done.stdout}\n{done.stderr}"
    assert done.stdout.splitlines() == [
        "healthy: True",
        "ann: TIER_PROFESSIONAL",
        "bob: TIER_UNSPECIFIED",
        "bob after the grant: TIER_PROFESSIONAL",
    ]
