"""Property: whatever a caller sends to any RPC, the answer is OK or a documented refusal (a documented
code with exactly one ErrorInfo of domain seats.v1 and a reason from the README's table), never UNKNOWN
or INTERNAL; and however the calls mix valid ids of a real account with junk, that account's pools keep
I1 and I2 and its event log stays gapless (I4)."""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from seats.v1 import resources_pb2, seat_service_pb2, user_service_pb2

from tests.conftest import Running, actor
from tests.contract.helpers import (
    ACCESS,
    BILLING,
    ENTERPRISE,
    FREE,
    NOTHING,
    SALES,
    SERVICE,
    STARTER,
    Tenant,
    check_event_log,
    new_account,
    new_user,
    pools,
    purchase,
)
from tests.property.refusals import reason_of
from tests.toolkit import check_pool_invariants, unique_email

s = seat_service_pb2
u = user_service_pb2
r = resources_pb2

SCALE = int(os.environ.get("SEATS_PROPERTY_SCALE", "1"))
"""Multiplies the examples for a deeper search (e.g. SEATS_PROPERTY_SCALE=10); 1 keeps the suite fast."""
EXAMPLES = 40 * SCALE
"""Examples per RPC and database."""
WATCH_EXAMPLES = 20 * SCALE
WATCH_DEADLINE = 0.15
"""Seconds a WatchSeatEvents stream may run: it streams until stopped, so the deadline ends it."""
WATCH_MESSAGES = 3
CALL_DEADLINE = 30.0
OVERSIZED = 5_000_000
"""Bytes of one string field: more than the server's 4 MiB message limit."""

EXAMPLE_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# ---- the real accounts the junk is mixed with ----------------------------------------------


@dataclass
class World:
    """A real account with users of every kind, another account, and page tokens the server issued."""

    running: Running
    tenant: Tenant
    other: Tenant
    plain: str
    billing: str
    access: str
    holder: str
    disposable: list[str]
    """Users that UpdateUser and DeleteUser examples may change or delete (one holds a seat)."""
    tokens: dict[str, str]
    seat_requests: list[str] = field(default_factory=list)
    """Seat requests of the account: a plain user's, pending, and another's, waiting."""
    answered: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per RPC, how often each outcome (OK or a reason) came up."""

    @property
    def user_ids(self) -> list[str]:
        return [self.tenant.owner_id, self.plain, self.billing, self.access, self.holder, *self.disposable]

    @property
    def actors(self) -> list[str]:
        """Acting users: the owner, users with one or no permission, and a user of another account."""
        return [self.tenant.owner_id, self.plain, self.billing, self.access, self.holder, self.other.owner_id]


@pytest.fixture(scope="module")
def world(running: Running) -> World:
    seats, users = running.seats, running.users
    # begun 70 days ago: two terms have ended, so the account has invoices to page through
    tenant = new_account(
        seats, (SALES, STARTER, 2), (SERVICE, FREE, 0), term_start=running.clock.now() - timedelta(days=70)
    )
    other = new_account(seats, (SALES, STARTER, 0))
    plain = new_user(users, tenant).user_id
    billing = new_user(users, tenant, permissions=BILLING).user_id
    access = new_user(users, tenant, permissions=ACCESS).user_id
    holder = new_user(users, tenant, seats=[(SALES, STARTER)]).user_id
    disposable = [new_user(users, tenant, permissions=BILLING).user_id for _ in range(3)]
    disposable.append(new_user(users, tenant, permissions=NOTHING, seats=[(SERVICE, FREE)]).user_id)
    purchase(seats, tenant, SALES, STARTER, 1)
    asked = [
        seats.RequestSeat(
            s.RequestSeatRequest(account_id=tenant.id, user_id=who, hub=hub, tier=tier), metadata=tenant.as_owner
        ).seat_request.seat_request_id
        for who, hub, tier in ((plain, SALES, STARTER), (access, SERVICE, FREE))
    ]
    tokens = {
        "assignments": seats.ListSeatAssignments(
            s.ListSeatAssignmentsRequest(account_id=tenant.id, page_size=1)
        ).next_page_token,
        "users": users.ListUsers(u.ListUsersRequest(account_id=tenant.id, page_size=1)).next_page_token,
        "events": seats.ListSeatEvents(s.ListSeatEventsRequest(account_id=tenant.id, page_size=1)).next_page_token,
        "invoices": seats.ListInvoices(
            s.ListInvoicesRequest(account_id=tenant.id, page_size=1), metadata=tenant.as_owner
        ).next_page_token,
        "seat_requests": seats.ListSeatRequests(
            s.ListSeatRequestsRequest(account_id=tenant.id, page_size=1), metadata=tenant.as_owner
        ).next_page_token,
    }
    assert all(tokens.values()), tokens
    return World(running, tenant, other, plain, billing, access, holder, disposable, tokens, asked)


def check_account_is_sound(world: World) -> None:
    """I1 and I2 for every pool, and a gapless event log whose counts add up (I4), for both accounts."""
    for tenant in (world.tenant, world.other):
        for pool in pools(world.running.seats, tenant).values():
            check_pool_invariants(pool)
        check_event_log(world.running.seats, tenant)


# ---- values: boundaries and junk ------------------------------------------------------------

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

NASTY = [
    "", " ", "   ", "\x00", "a\x00b", "\t", "\n", "\r\n", "\x1b[31m", "\x7f", "\u0085", "\u2028", "\ufeff",
    "\u202e", "😀", "👩‍👩‍👧‍👦", "Ω≈ç√", "' OR 1=1 --", "%s%n", "../../etc/passwd", "null", "\\", "{}", "[]",
    "-1", "0", "usr_", "acc_",
]


def long_strings() -> SearchStrategy[str]:
    return st.builds(
        lambda ch, n: ch * n,
        st.sampled_from(["x", "é", "😀", "\x00", " "]),
        st.sampled_from([127, 128, 129, 200, 201, 254, 255, 10_000]),
    )


def junk_text() -> SearchStrategy[str]:
    """Empty, blank, control characters (NUL included), emoji, other scripts, and long or huge strings."""
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(max_size=40),
        st.text(alphabet=st.characters(max_codepoint=0x1F), max_size=4),
        long_strings(),
    )


def int32s() -> SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([0, 1, 2, 3, -1, 9_999, 10_000, 10_001, 1_000_000, INT32_MAX, INT32_MIN]),
        st.integers(INT32_MIN, INT32_MAX),
    )


def int64s() -> SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([0, 1, 2, 5, -1, INT32_MAX, INT32_MAX + 1, INT64_MAX, INT64_MIN]),
        st.integers(INT64_MIN, INT64_MAX),
    )


def enum_values(valid: Sequence[int]) -> SearchStrategy[int]:
    """Mostly valid values; else unspecified and unknown numbers (open enums take any int32)."""
    return st.one_of(
        st.sampled_from(valid),
        st.sampled_from(valid),
        st.sampled_from([0, max(valid) + 1, 99, -1, INT32_MAX, INT32_MIN]),
        st.integers(INT32_MIN, INT32_MAX),
    )


def hubs() -> SearchStrategy[int]:
    return enum_values(list(r.Hub.values())[1:])


def tiers() -> SearchStrategy[int]:
    return enum_values(list(r.Tier.values())[1:])


def ids(real: list[str]) -> SearchStrategy[str]:
    """Real ids, mostly; else junk and real ids bent out of shape."""
    real_ids = st.sampled_from(real)
    return st.one_of(
        real_ids,
        real_ids,
        real_ids,
        junk_text(),
        st.builds(lambda i, tail: i + tail, real_ids, st.sampled_from(["x", " ", "\x00", "😀", "'", "%"])),
        real_ids.map(str.upper),
        real_ids.map(lambda i: i[:-1]),
        real_ids.map(lambda i: " " + i),
    )


def account_ids(world: World) -> SearchStrategy[str]:
    return ids([world.tenant.id, world.tenant.id, world.other.id])


def user_ids(world: World) -> SearchStrategy[str]:
    return ids([*world.user_ids, world.other.owner_id])


def request_ids() -> SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.uuids().map(str),
        st.sampled_from(["same-request-id", "r" * 128, "r" * 129, "r" * 10_000]),
        junk_text(),
    )


def emails() -> SearchStrategy[str]:
    return st.one_of(
        st.builds(lambda: unique_email()),
        st.emails().map(str),
        st.sampled_from(["a@b", "@example.com", "a@.com", "a b@example.com", "A@EXAMPLE.COM", "x" * 250 + "@e.co"]),
        st.builds(lambda junk: f"{junk}@example.com", junk_text()),
        junk_text(),
    )


def actors(world: World) -> SearchStrategy[str | None]:
    """None (a system call), users of the account with and without permissions, a user of another
    account, and garbage that gRPC can carry in a header (printable ASCII)."""
    return st.one_of(
        st.none(),
        st.sampled_from(world.actors),
        st.sampled_from(world.actors),
        st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
        st.sampled_from(["", " ", "x" * 129, "system", "usr_0", world.tenant.id]),
    )


def json_values() -> SearchStrategy[object]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
        max_leaves=6,
    )


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tampered(token: str, value: object, key_index: int) -> str:
    """A token the server issued with one of its values replaced (when it decodes as a JSON object)."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        return token[::-1]
    if not isinstance(data, dict) or not data:
        return token[::-1]
    key = sorted(data)[key_index % len(data)]
    return _b64(json.dumps({**data, key: value}).encode())


def _replaced(token: str, name: str, value: object) -> str:
    """A token the server issued with its value `name` replaced."""
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    return _b64(json.dumps({**data, name: value}).encode())


def page_tokens(world: World, kind: str) -> SearchStrategy[str]:
    real = world.tokens[kind]
    others = [t for k, t in world.tokens.items() if k != kind]
    return st.one_of(
        st.just(""),
        st.just(real),
        st.sampled_from(others),
        junk_text(),
        st.builds(lambda n: real[:n], st.integers(0, len(real))),
        tampered_tokens(world, kind),
        st.binary(max_size=40).map(_b64),
        json_values().map(lambda v: _b64(json.dumps(v).encode())),
        forged_tokens(world, kind),
        oversized_tokens(),
    )


def _forged(token: str, key_json: str) -> str:
    """A token with the filter digest of one the server issued (the digest is no secret) and any
    key, given as JSON text (so that it may hold what json.dumps cannot make, such as deep nesting)."""
    digest = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["f"]
    return _b64(('{"k":' + key_json + ',"f":' + json.dumps(digest) + "}").encode())


def beyond_64_bits() -> SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([INT64_MAX + 1, 2**64, 2**70, INT64_MIN - 1, -(2**70), 10**300]),
        st.integers(min_value=INT64_MAX + 1),
        st.integers(max_value=INT64_MIN - 1),
    )


SURROGATES = ["\\ud800", "x\\udfff", "\\udbff\\udc00", "\\u0000", "\\u2028"]
"""JSON escapes of text that is no id: lone surrogates, a pair, NUL, a line separator."""


def forged_keys(world: World) -> SearchStrategy[str]:
    """Keys of forged page tokens, as JSON text: numbers beyond 64 bits, [id, number] pairs of every
    range, ids and junk, escapes of text no database takes, deep nesting, and any JSON value."""
    real_ids = st.sampled_from(world.user_ids)
    texts = st.one_of(real_ids.map(json.dumps), junk_text().map(json.dumps), st.sampled_from(SURROGATES).map(
        lambda escaped: f'"{escaped}"'))
    numbers = st.one_of(beyond_64_bits(), int64s(), hubs()).map(str)
    return st.one_of(
        numbers,
        texts,
        st.builds(lambda key, number: f"[{key}, {number}]", texts, numbers),
        st.builds(lambda key, number: f"[{key}, {number}]", real_ids.map(json.dumps), st.sampled_from(["1", "2"])),
        st.integers(1, 60_000).map(lambda n: "[" * n + "]" * n),
        json_values().map(json.dumps),
    )


def forged_tokens(world: World, kind: str) -> SearchStrategy[str]:
    return st.builds(lambda key: _forged(world.tokens[kind], key), forged_keys(world))


def oversized_tokens() -> SearchStrategy[str]:
    """Tokens far beyond any the server issues: long, and nested brackets (raw and encoded)."""
    return st.one_of(
        st.integers(1000, 200_000).map(lambda n: "A" * n),
        st.integers(1, 60_000).map(lambda n: "[" * n),
        st.integers(1, 60_000).map(lambda n: _b64(b"[" * n)),
    )


def tampered_tokens(world: World, kind: str) -> SearchStrategy[str]:
    """A token the server issued, decoded and one of its values replaced by some JSON value."""
    return st.builds(lambda v, i: _tampered(world.tokens[kind], v, i), json_values(), st.integers(0, 3))


def page_sizes() -> SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, 50, 999, 1000, 1001, 10_000, -1]), int32s())


def timestamps() -> SearchStrategy[Timestamp]:
    """Valid times (now, the past, the future, 0001-01-01, 9999-12-31) and invalid ones."""
    return st.builds(
        Timestamp,
        seconds=st.one_of(
            st.sampled_from(
                [0, -1, 1_767_225_600, 1_900_000_000, -62_135_596_800, -62_135_596_801, 253_402_300_799,
                 253_402_300_800, INT64_MAX, INT64_MIN]
            ),
            st.integers(-62_135_596_800, 253_402_300_799),
            st.integers(INT64_MIN, INT64_MAX),
        ),
        nanos=st.one_of(st.just(0), st.sampled_from([999_999_999, 1_000_000_000, -1, INT32_MAX, INT32_MIN])),
    )


def permissions() -> SearchStrategy[r.Permissions]:
    return st.builds(r.Permissions, super_admin=st.booleans(), edit_billing=st.booleans(), account_access=st.booleans())


# ---- one request per RPC: a well-formed request with none, one or a few fields spoiled --------------


@dataclass(frozen=True)
class Attempt:
    """One call: which RPC, the request and the acting user (None: a system call)."""

    service: str
    method: str
    request: Message
    actor: str | None

    def __repr__(self) -> str:
        fields = ", ".join(f"{d.name}={_short(v)}" for d, v in self.request.ListFields())
        return f"{self.method}({fields}) actor={_short(self.actor)}"


def _short(value: object) -> str:
    """A readable value: long strings show their start and length, messages show their fields."""
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else f"{value[:12]!r}...({len(value)} chars)"
    if isinstance(value, Message):
        inner = ", ".join(f"{d.name}={_short(v)}" for d, v in value.ListFields())
        return f"{type(value).__name__}({inner})"
    if isinstance(value, list | tuple) or type(value).__name__.startswith("Repeated"):
        items = list(value)  # type: ignore[call-overload]
        shown = ", ".join(_short(v) for v in items[:6])
        return f"[{shown}{', ...' if len(items) > 6 else ''}] ({len(items)} items)"
    return repr(value)


Field = tuple[SearchStrategy[Any], SearchStrategy[Any]]
"""How to fill one field: (a valid value, junk)."""


def message(cls: type[Message], **fields: Field) -> SearchStrategy[Message]:
    """Requests of `cls` whose fields are valid except for a few (often none, so that the rules get to
    refuse) that get junk."""
    names = sorted(fields)
    spoiled = st.one_of(
        st.just(frozenset[str]()),
        st.sets(st.sampled_from(names), min_size=1, max_size=1),
        st.sets(st.sampled_from(names), min_size=1, max_size=2),
        st.sets(st.sampled_from(names)),
    )

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        bad = draw(spoiled)
        return cls(**{name: draw(fields[name][1] if name in bad else fields[name][0]) for name in names})

    return build()


def the_account(w: World) -> Field:
    return st.sampled_from([w.tenant.id, w.tenant.id, w.tenant.id, w.other.id]), account_ids(w)


def a_user(w: World, real: list[str] | None = None) -> Field:
    real = real or w.user_ids
    return st.sampled_from(real), ids([*real, w.other.owner_id])


def a_hub() -> Field:
    return st.sampled_from([SALES, SERVICE]), hubs()


def a_tier() -> Field:
    return st.sampled_from(list(r.Tier.values())[1:]), tiers()


def a_quantity() -> Field:
    return st.integers(1, 3), int32s()


def a_request_id() -> Field:
    return st.one_of(st.just(""), st.uuids().map(str)), request_ids()


def a_flag() -> Field:
    return st.booleans(), st.booleans()


def a_page(w: World, kind: str) -> dict[str, Field]:
    return {
        "page_size": (st.integers(0, 100), page_sizes()),
        "page_token": (st.sampled_from(["", "", w.tokens[kind]]), page_tokens(w, kind)),
    }


def a_sequence() -> Field:
    return st.integers(0, 50), int64s()


def a_seat() -> SearchStrategy[r.SeatRef]:
    return st.builds(r.SeatRef, hub=a_hub()[0], tier=a_tier()[0])


def junk_seat() -> SearchStrategy[r.SeatRef]:
    return st.builds(r.SeatRef, hub=hubs(), tier=tiers())


def an_etag() -> Field:
    return st.sampled_from(["", "", "1", "2"]), etags()


def etags() -> SearchStrategy[str]:
    return st.one_of(st.just(""), st.sampled_from(["1", "2", "3"]), int64s().map(str), junk_text())


Build = Callable[[World], SearchStrategy[Attempt]]
REQUESTS: dict[str, Build] = {}


def request(service: str, system_mostly: bool = False) -> Callable[[Callable[[World], SearchStrategy[Message]]], Build]:
    """Registers a strategy of requests for one RPC, paired with acting users: mostly users of the
    account (the owner, users with one or no permission), else anyone or anything."""

    def register(build: Callable[[World], SearchStrategy[Message]]) -> Build:
        method = build.__name__

        def attempts(world: World) -> SearchStrategy[Attempt]:
            members = st.sampled_from([world.tenant.owner_id, *world.actors])
            who = st.one_of(st.none(), st.none(), actors(world)) if system_mostly else st.one_of(members, actors(world))
            return st.builds(Attempt, st.just(service), st.just(method), build(world), who)

        REQUESTS[method] = attempts
        return attempts

    return register


@request("seats", system_mostly=True)
def CreateAccount(w: World) -> SearchStrategy[Message]:
    valid_subscription = st.builds(r.Subscription, hub=a_hub()[0], tier=a_tier()[0], purchased_seats=st.integers(0, 3))
    junk_subscription = st.builds(r.Subscription, hub=hubs(), tier=tiers(), purchased_seats=int32s())
    return message(
        s.CreateAccountRequest,
        display_name=(st.just("Acme"), junk_text()),
        owner_email=(st.builds(unique_email), emails()),
        subscriptions=(st.lists(valid_subscription, max_size=2), st.one_of(
            st.lists(junk_subscription, max_size=4),
            st.builds(lambda sub, n: [sub] * n, valid_subscription, st.sampled_from([1000, 1001])),  # the cap
        )),
        term_months=(st.sampled_from([1, 12]), st.one_of(st.sampled_from([0, -1, 2, 24]), int32s())),
        term_start=(st.none(), timestamps()),
        request_id=a_request_id(),
        owner_display_name=(st.just(""), junk_text()),
    )


@request("seats")
def GetAccount(w: World) -> SearchStrategy[Message]:
    return message(s.GetAccountRequest, account_id=the_account(w))


@request("seats")
def GetSeatSummary(w: World) -> SearchStrategy[Message]:
    return message(s.GetSeatSummaryRequest, account_id=the_account(w))


@request("seats")
def PurchaseSeats(w: World) -> SearchStrategy[Message]:
    return message(
        s.PurchaseSeatsRequest,
        account_id=the_account(w),
        hub=a_hub(),
        tier=a_tier(),
        quantity=a_quantity(),
        validate_only=a_flag(),
        etag=an_etag(),
        request_id=a_request_id(),
    )


@request("seats")
def ScheduleSeatRemoval(w: World) -> SearchStrategy[Message]:
    return message(
        s.ScheduleSeatRemovalRequest,
        account_id=the_account(w),
        hub=a_hub(),
        tier=a_tier(),
        quantity=a_quantity(),
        etag=an_etag(),
        request_id=a_request_id(),
    )


@request("seats")
def CancelSeatRemoval(w: World) -> SearchStrategy[Message]:
    return message(
        s.CancelSeatRemovalRequest,
        account_id=the_account(w),
        hub=a_hub(),
        tier=a_tier(),
        quantity=a_quantity(),
        etag=an_etag(),
        request_id=a_request_id(),
    )


@request("seats")
def AssignSeat(w: World) -> SearchStrategy[Message]:
    return message(
        s.AssignSeatRequest,
        account_id=the_account(w),
        user_id=a_user(w),
        hub=a_hub(),
        tier=a_tier(),
        purchase_if_needed=a_flag(),
        request_id=a_request_id(),
    )


@request("seats")
def UnassignSeat(w: World) -> SearchStrategy[Message]:
    return message(
        s.UnassignSeatRequest, account_id=the_account(w), user_id=a_user(w), hub=a_hub(), request_id=a_request_id()
    )


@request("seats")
def BatchUpdateSeatAssignments(w: World) -> SearchStrategy[Message]:
    change = st.builds(
        s.SeatChange, user_id=a_user(w)[0], hub=a_hub()[0], tier=st.sampled_from(list(r.Tier.values()))
    )
    junk_change = st.builds(s.SeatChange, user_id=a_user(w)[1], hub=hubs(), tier=st.one_of(st.just(0), tiers()))
    # At and over the 1000-change limit, with real ids so that the message stays under the 4 MiB transport limit.
    many = st.builds(lambda c, n: [c] * n, change, st.sampled_from([1000, 1001]))
    return message(
        s.BatchUpdateSeatAssignmentsRequest,
        account_id=the_account(w),
        changes=(
            st.lists(change, min_size=1, max_size=4, unique_by=lambda c: (c.user_id, c.hub)),
            st.one_of(st.just([]), st.lists(junk_change, max_size=5), st.lists(change, max_size=5), many),
        ),
        validate_only=a_flag(),
        request_id=a_request_id(),
    )


@request("seats")
def ListSeatAssignments(w: World) -> SearchStrategy[Message]:
    anything = message(
        s.ListSeatAssignmentsRequest,
        account_id=the_account(w),
        hub=(st.sampled_from([0, SALES, SERVICE]), hubs()),
        tier=(st.sampled_from(list(r.Tier.values())), tiers()),
        **a_page(w, "assignments"),
    )
    same_filters = st.builds(
        s.ListSeatAssignmentsRequest,
        account_id=st.just(w.tenant.id),
        page_size=page_sizes(),
        page_token=tampered_tokens(w, "assignments"),
    )
    return st.one_of(anything, same_filters)


@request("seats")
def CheckSeats(w: World) -> SearchStrategy[Message]:
    valid, junk = a_user(w)
    many = st.integers(990, 1010).map(lambda n: [w.tenant.owner_id] * n)  # around the 1000-id cap
    return message(
        s.CheckSeatsRequest,
        account_id=the_account(w),
        hub=a_hub(),
        user_ids=(st.lists(valid, min_size=1, max_size=5), st.one_of(st.lists(junk, max_size=5), many)),
    )


@request("seats")
def UpgradeSubscription(w: World) -> SearchStrategy[Message]:
    return message(
        s.UpgradeSubscriptionRequest,
        account_id=the_account(w),
        hub=a_hub(),
        tier=a_tier(),
        purchased_seats=(st.integers(0, 3), int32s()),
        assign_user_ids=(st.lists(a_user(w)[0], max_size=2, unique=True), st.one_of(
            st.lists(a_user(w)[1], max_size=3),
            st.sampled_from([1000, 1001, 250_000]).map(lambda n: [f"u{i}" for i in range(n)]),  # the cap and beyond
        )),
        request_id=a_request_id(),
        validate_only=a_flag(),
    )


@request("seats")
def PreviewInvoice(w: World) -> SearchStrategy[Message]:
    quantity = message(r.SeatQuantity, hub=a_hub(), tier=a_tier(), quantity=a_quantity())
    changes = (st.lists(quantity, max_size=2), st.lists(quantity, max_size=4))
    return message(s.PreviewInvoiceRequest, account_id=the_account(w), purchases=changes, removals=changes)


@request("seats")
def ListSeatEvents(w: World) -> SearchStrategy[Message]:
    anything = message(
        s.ListSeatEventsRequest, account_id=the_account(w), after_sequence=a_sequence(), **a_page(w, "events")
    )
    same_filters = st.builds(
        s.ListSeatEventsRequest,
        account_id=st.just(w.tenant.id),
        page_size=page_sizes(),
        page_token=tampered_tokens(w, "events"),
    )
    return st.one_of(anything, same_filters)


@request("seats")
def WatchSeatEvents(w: World) -> SearchStrategy[Message]:
    return message(s.WatchSeatEventsRequest, account_id=the_account(w), after_sequence=a_sequence())


@request("seats")
def RecordSeatActivity(w: World) -> SearchStrategy[Message]:
    activity = message(
        r.SeatActivity,
        user_id=a_user(w),
        hub=a_hub(),
        activity_time=(st.just(Timestamp(seconds=1_767_225_600)), timestamps()),
    )
    return message(
        s.RecordSeatActivityRequest,
        account_id=the_account(w),
        activities=(st.lists(activity, min_size=1, max_size=3), st.lists(activity, max_size=3)),
    )


@request("seats")
def UpdateSeatPolicy(w: World) -> SearchStrategy[Message]:
    paths = st.lists(st.sampled_from(["idle_reclaim_days", "auto_approve_requests"]), max_size=2, unique=True)
    junk_paths = st.lists(st.one_of(st.sampled_from(["*", "", "included", "hub"]), junk_text()), max_size=3)
    return message(
        s.UpdateSeatPolicyRequest,
        account_id=the_account(w),
        hub=a_hub(),
        tier=a_tier(),
        idle_reclaim_days=(st.sampled_from([0, 7, 30]), int32s()),
        auto_approve_requests=a_flag(),
        update_mask=(
            st.builds(field_mask_pb2.FieldMask, paths=paths),
            st.builds(field_mask_pb2.FieldMask, paths=junk_paths),
        ),
        validate_only=(st.just(True), st.booleans()),
        request_id=a_request_id(),
    )


@request("seats")
def ListInvoices(w: World) -> SearchStrategy[Message]:
    anything = message(s.ListInvoicesRequest, account_id=the_account(w), **a_page(w, "invoices"))
    same_filters = st.builds(
        s.ListInvoicesRequest,
        account_id=st.just(w.tenant.id),
        page_size=page_sizes(),
        page_token=tampered_tokens(w, "invoices"),
    )
    return st.one_of(anything, same_filters)


@request("seats")
def GetInvoice(w: World) -> SearchStrategy[Message]:
    real = [i.invoice_id for i in w.running.seats.ListInvoices(
        s.ListInvoicesRequest(account_id=w.tenant.id), metadata=w.tenant.as_owner
    ).invoices]  # fmt: skip
    return message(s.GetInvoiceRequest, account_id=the_account(w), invoice_id=(st.sampled_from(real), ids(real)))


def a_seat_request(w: World) -> Field:
    return st.sampled_from(w.seat_requests), ids([*w.seat_requests, "sreq_0000000000000000000000"])


@request("seats")
def RequestSeat(w: World) -> SearchStrategy[Message]:
    return message(
        s.RequestSeatRequest,
        account_id=the_account(w),
        user_id=(st.sampled_from(["", *w.user_ids]), ids(w.user_ids)),
        hub=a_hub(),
        tier=a_tier(),
        reason=(st.sampled_from(["", "the Q3 pipeline", "Zoë 😀"]), junk_text()),
        request_id=a_request_id(),
    )


@request("seats")
def ListSeatRequests(w: World) -> SearchStrategy[Message]:
    anything = message(
        s.ListSeatRequestsRequest,
        account_id=the_account(w),
        state=(st.sampled_from(list(r.SeatRequestState.values())), int32s()),
        hub=(st.sampled_from([0, SALES, SERVICE]), hubs()),
        user_id=(st.sampled_from(["", *w.user_ids]), ids(w.user_ids)),
        **a_page(w, "seat_requests"),
    )
    same_filters = st.builds(
        s.ListSeatRequestsRequest,
        account_id=st.just(w.tenant.id),
        page_size=page_sizes(),
        page_token=tampered_tokens(w, "seat_requests"),
    )
    return st.one_of(anything, same_filters)


@request("seats")
def ApproveSeatRequest(w: World) -> SearchStrategy[Message]:
    return message(
        s.ApproveSeatRequestRequest,
        account_id=the_account(w),
        seat_request_id=a_seat_request(w),
        purchase_if_needed=a_flag(),
        request_id=a_request_id(),
    )


@request("seats")
def DenySeatRequest(w: World) -> SearchStrategy[Message]:
    return message(
        s.DenySeatRequestRequest,
        account_id=the_account(w),
        seat_request_id=a_seat_request(w),
        request_id=a_request_id(),
    )


@request("users")
def CreateUser(w: World) -> SearchStrategy[Message]:
    return message(
        u.CreateUserRequest,
        account_id=the_account(w),
        email=(st.builds(unique_email), emails()),
        display_name=(st.sampled_from(["", "Pat", "Zoë 😀"]), junk_text()),
        permissions=(permissions(), permissions()),
        seats=(st.lists(a_seat(), max_size=2, unique_by=lambda seat: seat.hub), st.one_of(
            st.lists(junk_seat(), max_size=3),
            st.builds(lambda seat, n: [seat] * n, a_seat(), st.sampled_from([1000, 1001])),  # the cap
        )),
        purchase_if_needed=a_flag(),
        request_id=a_request_id(),
    )


@request("users")
def GetUser(w: World) -> SearchStrategy[Message]:
    return message(u.GetUserRequest, account_id=the_account(w), user_id=a_user(w))


@request("users")
def ListUsers(w: World) -> SearchStrategy[Message]:
    anything = message(
        u.ListUsersRequest,
        account_id=the_account(w),
        hub=(st.sampled_from([0, SALES, SERVICE]), hubs()),
        **a_page(w, "users"),
    )
    same_filters = st.builds(
        u.ListUsersRequest,
        account_id=st.just(w.tenant.id),
        page_size=page_sizes(),
        page_token=tampered_tokens(w, "users"),
    )
    return st.one_of(anything, same_filters)


UPDATABLE_PATHS = [
    "email", "display_name", "permissions", "permissions.super_admin", "permissions.edit_billing",
    "permissions.account_access",
]


@request("users")
def UpdateUser(w: World) -> SearchStrategy[Message]:
    """Changes the owner and the disposable users only, so that the users acting in the other examples
    keep their permissions."""
    changed = [w.tenant.owner_id, *w.disposable]
    user = message(
        r.User,
        account_id=the_account(w),
        user_id=a_user(w, changed),
        email=(st.builds(unique_email), st.one_of(st.just(""), emails())),
        display_name=(st.sampled_from(["Pat", "Zoë 😀"]), st.one_of(st.just(""), junk_text())),
        permissions=(permissions(), permissions()),
        etag=an_etag(),
        seats=(st.just([]), st.lists(junk_seat(), max_size=2)),
    )
    junk_paths = st.sampled_from(["user_id", "account_id", "seats", "etag", "", "permissions.", "*"])
    return message(
        u.UpdateUserRequest,
        user=(user, user),
        update_mask=(
            st.builds(field_mask_pb2.FieldMask, paths=st.lists(st.sampled_from(UPDATABLE_PATHS), max_size=2)),
            st.builds(field_mask_pb2.FieldMask, paths=st.lists(st.one_of(junk_paths, junk_text()), max_size=3)),
        ),
        etag=an_etag(),
        request_id=a_request_id(),
    )


@request("users")
def DeleteUser(w: World) -> SearchStrategy[Message]:
    """Deletes the owner, the seat holder and the disposable users only (see UpdateUser)."""
    return message(
        u.DeleteUserRequest,
        account_id=the_account(w),
        user_id=a_user(w, [w.tenant.owner_id, w.holder, *w.disposable]),
        etag=an_etag(),
        request_id=a_request_id(),
    )


# ---- calling ------------------------------------------------------------------------------------


def metadata_of(who: str | None) -> tuple[tuple[str, str], ...]:
    return actor(who) if who is not None else ()


def invoke(world: World, attempt: Attempt) -> grpc.RpcError | None:
    """Makes the call; the error it ends with, or None when it answered OK."""
    stub = world.running.seats if attempt.service == "seats" else world.running.users
    method = getattr(stub, attempt.method)
    if attempt.method == "WatchSeatEvents":
        return _watch(method, attempt)
    try:
        method(attempt.request, metadata=metadata_of(attempt.actor), timeout=CALL_DEADLINE)
    except grpc.RpcError as err:
        return err
    return None


def _watch(method: Callable[..., Iterator[Message]], attempt: Attempt) -> grpc.RpcError | None:
    """Reads at most a few events of a stream that ends at a short deadline, then cancels it."""
    stream = method(attempt.request, metadata=metadata_of(attempt.actor), timeout=WATCH_DEADLINE)
    try:
        for seen, _ in enumerate(stream, start=1):
            if seen >= WATCH_MESSAGES:
                break
    except grpc.RpcError as err:
        return err
    finally:
        stream.cancel()  # type: ignore[attr-defined]
    return None


# ---- pinned inputs: each once broke the server; they run on every run, whatever the search draws ------


def _call(service: str, message: Message, who: str | None = None) -> Attempt:
    return Attempt(service, type(message).__name__.removesuffix("Request"), message, who)


def _new_account_at(term_start: Timestamp) -> Attempt:
    return _call("seats", s.CreateAccountRequest(
        display_name="Acme", owner_email=unique_email(), term_months=1, term_start=term_start,
        subscriptions=[r.Subscription(hub=SALES, tier=STARTER)],
    ))


def _token(w: World, kind: str, key: object) -> str:
    return _replaced(w.tokens[kind], "k", key)


NUL = "\x00"
RID = "pinned-nul-account"

PINNED: dict[str, Callable[[World], Attempt]] = {
    # A term_start outside the range a Timestamp may hold.
    "CreateAccount-term_start-nanos-1e9": lambda w: _new_account_at(Timestamp(seconds=0, nanos=1_000_000_000)),
    "CreateAccount-term_start-before-year-1": lambda w: _new_account_at(Timestamp(seconds=-62_135_596_801)),
    "CreateAccount-term_start-after-year-9999": lambda w: _new_account_at(Timestamp(seconds=253_402_300_800)),
    # A NUL in the account id of a call that carries a request id (the request id is looked up per account).
    "PurchaseSeats-nul-account-with-request-id": lambda w: _call("seats", s.PurchaseSeatsRequest(
        account_id=NUL, hub=SALES, tier=STARTER, quantity=1, request_id=RID)),
    "ScheduleSeatRemoval-nul-account-with-request-id": lambda w: _call("seats", s.ScheduleSeatRemovalRequest(
        account_id=NUL, hub=SALES, tier=STARTER, quantity=1, request_id=RID)),
    "CancelSeatRemoval-nul-account-with-request-id": lambda w: _call("seats", s.CancelSeatRemovalRequest(
        account_id=NUL, hub=SALES, tier=STARTER, quantity=1, request_id=RID)),
    "AssignSeat-nul-account-with-request-id": lambda w: _call("seats", s.AssignSeatRequest(
        account_id=NUL, user_id=w.plain, hub=SALES, tier=STARTER, request_id=RID)),
    "UnassignSeat-nul-account-with-request-id": lambda w: _call("seats", s.UnassignSeatRequest(
        account_id=NUL, user_id=w.plain, hub=SALES, request_id=RID)),
    "BatchUpdateSeatAssignments-nul-account-with-request-id": lambda w: _call(
        "seats", s.BatchUpdateSeatAssignmentsRequest(
            account_id=NUL, changes=[s.SeatChange(user_id=w.plain, hub=SALES, tier=STARTER)], request_id=RID)),
    "UpgradeSubscription-nul-account-with-request-id": lambda w: _call("seats", s.UpgradeSubscriptionRequest(
        account_id=NUL, hub=SERVICE, tier=STARTER, request_id=RID)),
    "CreateUser-nul-account-with-request-id": lambda w: _call("users", u.CreateUserRequest(
        account_id=NUL, email=unique_email(), request_id=RID)),
    "UpdateUser-nul-account-with-request-id": lambda w: _call("users", u.UpdateUserRequest(
        user=r.User(account_id=NUL, user_id=w.plain, display_name="Pat"),
        update_mask=field_mask_pb2.FieldMask(paths=["display_name"]), request_id=RID)),
    "DeleteUser-nul-account-with-request-id": lambda w: _call("users", u.DeleteUserRequest(
        account_id=NUL, user_id=w.plain, request_id=RID)),
    # A NUL in a user id that UpgradeSubscription looks up (validate_only: nothing changes if it passes).
    "UpgradeSubscription-nul-in-assign_user_ids": lambda w: _call("seats", s.UpgradeSubscriptionRequest(
        account_id=w.tenant.id, hub=SERVICE, tier=ENTERPRISE, assign_user_ids=[NUL], validate_only=True),
        w.tenant.owner_id),
    # Page tokens the server issued, sent back with the same filters, but with another key inside.
    "ListSeatAssignments-token-key-5": lambda w: _call("seats", s.ListSeatAssignmentsRequest(
        account_id=w.tenant.id, page_token=_token(w, "assignments", 5))),
    "ListSeatAssignments-token-key-not-a-number": lambda w: _call("seats", s.ListSeatAssignmentsRequest(
        account_id=w.tenant.id, page_token=_token(w, "assignments", ["u", "x"]))),
    "ListSeatEvents-token-key-text": lambda w: _call("seats", s.ListSeatEventsRequest(
        account_id=w.tenant.id, page_token=_token(w, "events", "ab"))),
    "ListSeatEvents-token-key-list": lambda w: _call("seats", s.ListSeatEventsRequest(
        account_id=w.tenant.id, page_token=_token(w, "events", []))),
    "ListUsers-token-key-nul": lambda w: _call("users", u.ListUsersRequest(
        account_id=w.tenant.id, page_token=_token(w, "users", NUL))),
    # Forged tokens (the filter digest is no secret): a key beyond 64 bits (OverflowError on SQLite),
    # 50,000 nested brackets (RecursionError), a lone surrogate.
    "ListSeatAssignments-token-key-2**70": lambda w: _call("seats", s.ListSeatAssignmentsRequest(
        account_id=w.tenant.id, page_token=_token(w, "assignments", [w.plain, 2**70]))),
    "ListSeatEvents-token-key-2**70": lambda w: _call("seats", s.ListSeatEventsRequest(
        account_id=w.tenant.id, page_token=_token(w, "events", 2**70))),
    "ListUsers-token-key-2**70": lambda w: _call("users", u.ListUsersRequest(
        account_id=w.tenant.id, page_token=_token(w, "users", 2**70)), w.tenant.owner_id),
    "ListUsers-token-key-surrogate": lambda w: _call("users", u.ListUsersRequest(
        account_id=w.tenant.id, page_token=_token(w, "users", "\ud800")), w.tenant.owner_id),
    "ListSeatAssignments-token-key-nested": lambda w: _call("seats", s.ListSeatAssignmentsRequest(
        account_id=w.tenant.id, page_token=_forged(w.tokens["assignments"], "[" * 50_000 + "]" * 50_000))),
    "ListSeatEvents-token-nested": lambda w: _call("seats", s.ListSeatEventsRequest(
        account_id=w.tenant.id, page_token=_b64(b"[" * 50_000))),
    "ListUsers-token-nested-raw": lambda w: _call("users", u.ListUsersRequest(
        account_id=w.tenant.id, page_token="[" * 50_000), w.tenant.owner_id),
    # 250,000 ids ("too many SQL variables" on SQLite, answered UNAVAILABLE); 1,001 entries of each list.
    "UpgradeSubscription-250000-assign_user_ids": lambda w: _call("seats", s.UpgradeSubscriptionRequest(
        account_id=w.tenant.id, hub=SERVICE, tier=ENTERPRISE, assign_user_ids=[f"u{i}" for i in range(250_000)],
        validate_only=True), w.tenant.owner_id),
    "UpgradeSubscription-1001-assign_user_ids": lambda w: _call("seats", s.UpgradeSubscriptionRequest(
        account_id=w.tenant.id, hub=SERVICE, tier=ENTERPRISE, assign_user_ids=[f"u{i}" for i in range(1001)],
        request_id=RID), w.tenant.owner_id),
    "CreateAccount-1001-subscriptions": lambda w: _call("seats", s.CreateAccountRequest(
        display_name="Acme", owner_email=unique_email(), term_months=1,
        subscriptions=[r.Subscription(hub=SALES, tier=STARTER)] * 1001)),
    "CreateUser-1001-seats": lambda w: _call("users", u.CreateUserRequest(
        account_id=w.tenant.id, email=unique_email(), seats=[r.SeatRef(hub=SALES, tier=STARTER)] * 1001),
        w.tenant.owner_id),
}


# ---- the properties -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_every_answer_is_ok_or_a_documented_refusal(world: World, method: str) -> None:
    """Every RPC, fed boundary values and junk by every kind of actor: OK, or a documented code whose
    google.rpc.Status holds exactly one ErrorInfo (domain seats.v1, a reason of the README's table, with
    the table's code); DEADLINE_EXCEEDED only for the watch. Afterwards the real account still keeps
    I1, I2 and a gapless event log."""
    watch = method == "WatchSeatEvents"
    deadline_ok = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED}) if watch else frozenset()
    answered = world.answered.setdefault(method, {})

    @settings(EXAMPLE_SETTINGS, max_examples=WATCH_EXAMPLES if watch else EXAMPLES)
    @given(attempt=REQUESTS[method](world))
    def answer(attempt: Attempt) -> None:
        err = invoke(world, attempt)
        outcome = "OK" if err is None else reason_of(err, also=deadline_ok)
        answered[outcome] = answered.get(outcome, 0) + 1

    answer()
    check_account_is_sound(world)
    assert set(answered) - {"OK"}, f"{method}: no example was refused, the junk did not reach it: {answered}"


@pytest.mark.parametrize("name", sorted(PINNED))
def test_a_pinned_input_is_ok_or_a_documented_refusal(world: World, name: str) -> None:
    """Inputs that once broke the server (found by the search above), kept as fixed cases."""
    attempt = PINNED[name](world)
    err = invoke(world, attempt)
    if err is not None:
        try:
            reason_of(err)
        except AssertionError as failure:
            raise AssertionError(f"{attempt!r} as {attempt.actor or 'a system call'}: {failure}") from None
    check_account_is_sound(world)


PAGED: dict[str, tuple[str, str, Callable[[World, str, int], Message]]] = {
    "ListUsers": ("users", "users", lambda w, token, size: u.ListUsersRequest(
        account_id=w.tenant.id, page_size=size, page_token=token)),
    "ListSeatAssignments": ("seats", "assignments", lambda w, token, size: s.ListSeatAssignmentsRequest(
        account_id=w.tenant.id, page_size=size, page_token=token)),
    "ListSeatEvents": ("seats", "events", lambda w, token, size: s.ListSeatEventsRequest(
        account_id=w.tenant.id, page_size=size, page_token=token)),
    "ListSeatRequests": ("seats", "seat_requests", lambda w, token, size: s.ListSeatRequestsRequest(
        account_id=w.tenant.id, page_size=size, page_token=token)),
    "ListInvoices": ("seats", "invoices", lambda w, token, size: s.ListInvoicesRequest(
        account_id=w.tenant.id, page_size=size, page_token=token)),
}
"""Every RPC that takes a page token: (service, the list's token kind, a request with the filters the
world's tokens were issued for)."""


def test_every_paged_rpc_is_searched_with_forged_tokens() -> None:
    paged = {
        method.name
        for module in (seat_service_pb2, user_service_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
        if "page_token" in method.input_type.fields_by_name
    }
    assert paged == set(PAGED)


def any_tokens(world: World, kind: str) -> SearchStrategy[str]:
    """Arbitrary strings, arbitrary bytes encoded as a token would be, and forged tokens."""
    return st.one_of(
        st.text(),
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="),
        st.binary(max_size=1200).map(_b64),
        forged_tokens(world, kind),
        forged_tokens(world, kind),
        oversized_tokens(),
        page_tokens(world, kind),
    )


@pytest.mark.parametrize("method", sorted(PAGED))
def test_a_page_token_is_answered_ok_or_invalid_argument(world: World, method: str) -> None:
    """Whatever token a member of the account sends to a paged RPC with the token's own filters: OK,
    or INVALID_ARGUMENT INVALID_FIELD naming page_token (never INTERNAL, UNAVAILABLE or another code)."""
    service, kind, build = PAGED[method]
    outcomes: dict[str, int] = {}

    @settings(EXAMPLE_SETTINGS, max_examples=EXAMPLES * 2)
    @given(token=any_tokens(world, kind), size=st.integers(0, 3))
    def answer(token: str, size: int) -> None:
        err = invoke(world, Attempt(service, method, build(world, token, size), world.tenant.owner_id))
        if err is None:
            outcomes["OK"] = outcomes.get("OK", 0) + 1
            return
        said = f"{err.code()} {err.details()!r} for token {_short(token)}"
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, said
        assert reason_of(err) == "INVALID_FIELD", said
        outcomes["INVALID_ARGUMENT"] = outcomes.get("INVALID_ARGUMENT", 0) + 1

    answer()
    assert set(outcomes) == {"OK", "INVALID_ARGUMENT"}, outcomes


def test_the_examples_reach_rule_refusals_as_well_as_input_refusals(world: World) -> None:
    """The mix of real ids and junk is meant to make the server refuse for its rules, not only for bad
    input: across every RPC's examples, several rule reasons came up besides INVALID_FIELD."""
    if set(world.answered) != set(REQUESTS):
        missing = sorted(set(REQUESTS) - set(world.answered))
        pytest.skip(f"needs the examples of every RPC to run first; missing {missing}")
    reasons: dict[str, int] = {}
    for counts in world.answered.values():
        for outcome, n in counts.items():
            reasons[outcome] = reasons.get(outcome, 0) + n
    rule_reasons = set(reasons) - {"OK", "INVALID_FIELD", "DEADLINE_EXCEEDED"}
    assert "INVALID_FIELD" in reasons and "OK" in reasons, reasons
    assert len(rule_reasons) >= 8, f"too few rule refusals: {reasons}"
    print(f"outcomes over every RPC's examples: {dict(sorted(reasons.items()))}")


OVERSIZED_CALLS: list[tuple[str, Callable[[World, str], tuple[str, Message, str | None]]]] = [
    (
        "CreateAccount.display_name",
        lambda w, big: (
            "seats",
            s.CreateAccountRequest(
                display_name=big, owner_email=unique_email(), term_months=1,
                subscriptions=[r.Subscription(hub=SALES, tier=STARTER)],
            ),
            None,
        ),
    ),
    (
        "CreateUser.display_name",
        lambda w, big: (
            "users",
            u.CreateUserRequest(account_id=w.tenant.id, email=f"big-{uuid.uuid4().hex}@example.com", display_name=big),
            w.tenant.owner_id,
        ),
    ),
    (
        "BatchUpdateSeatAssignments.changes[0].user_id",
        lambda w, big: (
            "seats",
            s.BatchUpdateSeatAssignmentsRequest(
                account_id=w.tenant.id, changes=[s.SeatChange(user_id=big, hub=SALES, tier=STARTER)]
            ),
            w.tenant.owner_id,
        ),
    ),
]


@pytest.mark.parametrize("name", [name for name, _ in OVERSIZED_CALLS])
def test_an_oversized_message_is_refused_by_the_transport(world: World, name: str) -> None:
    """A request over the 4 MiB limit is RESOURCE_EXHAUSTED before it reaches the service (so it has no
    ErrorInfo); the server lives on, and nothing of the request was saved."""
    build = dict(OVERSIZED_CALLS)[name]
    service, message, who = build(world, "x" * OVERSIZED)
    stub = world.running.seats if service == "seats" else world.running.users
    method = getattr(stub, type(message).__name__.removesuffix("Request"))
    before = check_event_log(world.running.seats, world.tenant)
    with pytest.raises(grpc.RpcError) as caught:
        method(message, metadata=metadata_of(who), timeout=CALL_DEADLINE)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, (caught.value.code(), caught.value.details())
    answer = world.running.seats.GetAccount(s.GetAccountRequest(account_id=world.tenant.id), timeout=CALL_DEADLINE)
    assert answer.account.account_id == world.tenant.id
    assert check_event_log(world.running.seats, world.tenant) == before, "the oversized call changed the account"
