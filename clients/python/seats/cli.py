# The parser is argparse: it is the standard library, and shtab generates the bash and zsh
# completion scripts (`seatctl completion bash|zsh`) from the argparse parser itself, so the
# completion cannot drift from the commands. click or typer would mean rewriting every command
# for no gain that argparse and shtab do not already give.
"""seatctl: the seat service from a shell, one subcommand per everyday task.

    # An account (a trusted system call: no actor), then act as its owner, a super admin.
    seatctl accounts create --name Acme --owner-email owner@acme.test \\
        --subscription sales:professional:1 --subscription service:starter:0
    export SEATS_ACCOUNT=acc_... SEATS_ACTOR=usr_...      # the ids it printed

    seatctl seats summary                                 # every pool and the renewal date
    seatctl users create --email ann@acme.test --seat sales:professional
    seatctl seats assign --user usr_... --hub sales --tier professional --buy
    seatctl seats buy --hub sales --tier professional --quantity 2 --validate-only
    seatctl seats remove --hub sales --tier professional --quantity 1
    seatctl seats unassign --user usr_... --hub sales
    seatctl users update --user usr_... --name "Ann Lee" --no-edit-billing
    seatctl users delete --user usr_...
    seatctl seats batch --change usr_a:sales:professional --change usr_b:sales:none
    seatctl seats check --hub sales --user usr_a --user usr_b
    seatctl seats activity --hub sales --user usr_a --user usr_b    # they used their seats now
    seatctl seats policy --hub sales --tier professional --idle-reclaim-days 30 --validate-only
    seatctl seats list --idle-since 30d                   # seats nobody used for 30 days
    seatctl seats request --hub sales --tier professional # ask for a seat; no permission needed
    seatctl seats requests --state pending                # what waits for a decision
    seatctl seats approve --request sreq_...              # a free seat now, else the waiting list
    seatctl accounts upgrade --hub service --tier professional --assign usr_... --validate-only
    seatctl users list -q | xargs -n1 seatctl users show --user    # -q: ids only, one a line
    seatctl events tail --after 10 --follow               # Ctrl-C stops it (exit 0)
    seatctl --json invoice preview | jq .next_renewal_total
    seatctl invoice preview --buy sales:professional:2   # what 2 more seats would cost; buys nothing
    seatctl invoice list                                  # one invoice per ended term
    seatctl plan -f seats.yaml                            # seats as code: what apply would change
    seatctl apply -f seats.yaml                           # validate, then make those changes

Global options go before or after the subcommand: --target (env SEATS_TARGET, default
127.0.0.1:50051; several replicas as ``127.0.0.1:5001,127.0.0.1:5002`` or a gRPC target URI
such as ``dns:///seats.internal:50051``, balanced round robin), --actor (env SEATS_ACTOR;
left out, the call is a trusted system call; ``--actor ''`` forces one), --json, --timeout.
Commands on an account take --account (env SEATS_ACCOUNT). ``accounts create`` is a system
call: it does not read SEATS_ACTOR. ``seatctl --version`` prints the version; ``seatctl
completion bash`` (or ``zsh``) prints a shell completion script. Tables fit 100 columns:
long names and emails are cut with "~" (ids never are; ``users show`` and --json give
everything).

--json prints the RPC's response as proto3 JSON with the proto field names (int64 values
such as event sequences are strings, as proto3 JSON has them); list commands print one
object holding every page; ``events tail`` prints one event object per line.

Exit codes: 0 done; 1 the service refused the call (one line on stderr: ``seatctl: REASON:
message (hint)``, and with --json an {"error": ...} object on stdout); 2 a usage error;
3 the service could not be reached (UNAVAILABLE or DEADLINE_EXCEEDED after one retry);
130 interrupted (Ctrl-C), except ``events tail --follow``, for which Ctrl-C is the way to
stop and exits 0.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from google.type import money_pb2

from . import errors
from ._retry import RetryPolicy
from .client import DEFAULT_TARGET, SeatsClient, channel_target
from .requests import to_hub, to_tier
from .v1 import resources_pb2 as r
from .v1 import seat_service_pb2
from .v1.error_reason_pb2 import ErrorReason

PROG = "seatctl"

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

UNREACHABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Codes that mean the service could not answer (exit 3) rather than that it refused (exit 1)."""

CLI_RETRY = RetryPolicy(max_attempts=2, initial_backoff=0.1, max_backoff=0.5)
"""One retry, soon: a person at a shell wants a quick answer when the server is down."""

FOLLOW_RETRY = RetryPolicy()
"""Backoff of a follow's reconnects: up to 2 s apart, so that it waits out a server restart."""

FOLLOW_MAX_RECONNECTS = 20
"""A follow gives up (exit 3) after this many failed reconnects in a row: about half a minute."""

PAGE_SIZE = 500
"""Page size of the list commands; they print every page."""

ID_WIDTH = 27
"""Width of a server-made id such as usr_1a200af315591545c3821a3: event lines pad ids to it."""

ZERO_DECIMAL_CURRENCIES = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF"}
    | {"XOF", "XPF"}
)
"""ISO 4217 currencies without minor units; amounts print with 2 decimals unless listed here."""
THREE_DECIMAL_CURRENCIES = frozenset({"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"})

NANOS = 1_000_000_000

TABLE_WIDTH = 100
"""Tables fit this many columns: free-text cells are cut to fit, ids never are."""
CUT_MARK = "~"
"""Ends a cell cut to fit its column."""


# ---- argument types -------------------------------------------------------------------------


def hub_arg(text: str) -> int:
    """A hub from ``sales``, ``SALES`` or ``HUB_SALES``."""
    try:
        hub = to_hub(text)
    except ValueError:
        hub = r.HUB_UNSPECIFIED
    if hub == r.HUB_UNSPECIFIED:
        raise argparse.ArgumentTypeError(f"unknown hub {text!r}: use sales or service")
    return int(hub)


def tier_arg(text: str) -> int:
    """A tier from ``professional``, ``PROFESSIONAL`` or ``TIER_PROFESSIONAL``."""
    try:
        tier = to_tier(text)
    except ValueError:
        tier = r.TIER_UNSPECIFIED
    if tier == r.TIER_UNSPECIFIED:
        raise argparse.ArgumentTypeError(f"unknown tier {text!r}: use free, starter, professional or enterprise")
    return int(tier)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def seconds_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds and less than a day: {text!r}")
    return value


def subscription_arg(text: str) -> tuple[int, int, int]:
    """``HUB:TIER[:PURCHASED]``, e.g. ``sales:professional:1``; purchased seats default to 0."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected HUB:TIER[:PURCHASED], e.g. sales:professional:1, not {text!r}")
    purchased = non_negative_int(parts[2]) if len(parts) == 3 else 0
    return hub_arg(parts[0]), tier_arg(parts[1]), purchased


def quantity_arg(text: str) -> tuple[int, int, int]:
    """``HUB:TIER:N``, e.g. ``sales:professional:2``: N seats of a pool, at least 1."""
    parts = text.split(":")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected HUB:TIER:N, e.g. sales:professional:2, not {text!r}")
    return hub_arg(parts[0]), tier_arg(parts[1]), positive_int(parts[2])


def seat_arg(text: str) -> tuple[int, int]:
    """``HUB:TIER``, e.g. ``sales:professional``."""
    parts = text.split(":")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected HUB:TIER, e.g. sales:professional, not {text!r}")
    return hub_arg(parts[0]), tier_arg(parts[1])


def change_arg(text: str) -> tuple[str, int, int | None]:
    """``USER:HUB:TIER`` of a batch, e.g. ``usr_1:sales:professional``; a tier of ``none`` (or
    ``USER:HUB`` alone) takes the user's seat of the hub."""
    parts = [part.strip() for part in text.split(":")]
    if len(parts) not in (2, 3) or not parts[0]:
        raise argparse.ArgumentTypeError(
            f"expected USER:HUB:TIER, e.g. usr_1:sales:professional (TIER none unassigns), not {text!r}"
        )
    tier = parts[2] if len(parts) == 3 else "none"
    return parts[0], hub_arg(parts[1]), None if tier.lower() in ("none", "-", "") else tier_arg(tier)


def datetime_arg(text: str) -> datetime:
    """An ISO 8601 date or time; without a zone it is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 date or time: {text!r}") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


AGE = re.compile(r"(\d+)([hdw])")
AGE_UNITS = {"h": "hours", "d": "days", "w": "weeks"}


def since_arg(text: str) -> datetime:
    """A time as ``datetime_arg`` reads it, or an age before now: ``30d`` (days), ``12h``
    (hours), ``2w`` (weeks). ``--idle-since 30d`` reads as "idle for 30 days", which is how a
    person asks; the age counts from this machine's clock."""
    match = AGE.fullmatch(text.strip().lower())
    if match is not None:
        return datetime.now(UTC) - timedelta(**{AGE_UNITS[match[2]]: int(match[1])})
    try:
        return datetime_arg(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time nor an age such as 30d, 12h or 2w: {text!r}") from None


def activity_arg(text: str) -> tuple[str, int, datetime | None]:
    """``USER:HUB[:TIME]`` of a --file of seat activity, e.g. ``usr_1:sales:2026-11-30T09:00:00Z``;
    the time (ISO 8601, UTC without a zone) keeps its own colons, and without it the report
    takes --at (default now)."""
    parts = [part.strip() for part in text.split(":", 2)]
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise argparse.ArgumentTypeError(
            f"expected USER:HUB[:TIME], e.g. usr_1:sales:2026-11-30T09:00:00Z, not {text!r}"
        )
    when = datetime_arg(parts[2]) if len(parts) == 3 and parts[2] else None
    return parts[0], hub_arg(parts[1]), when


# ---- formatting -----------------------------------------------------------------------------


def hub_name(hub: int) -> str:
    """``HUB_SALES`` -> ``Sales``; ``-`` for none."""
    return _enum_title(r.Hub.Name, hub, "HUB_")


def tier_name(tier: int) -> str:
    """``TIER_PROFESSIONAL`` -> ``Professional``; ``-`` for none."""
    return _enum_title(r.Tier.Name, tier, "TIER_")


def _enum_title(name_of: Callable[[Any], str], value: int, prefix: str) -> str:
    if value == 0:
        return "-"
    try:
        return name_of(value).removeprefix(prefix).replace("_", " ").title()
    except ValueError:  # a value newer than this client
        return str(value)


def event_type_name(value: int) -> str:
    """``SEAT_EVENT_TYPE_SEAT_ASSIGNED`` -> ``SEAT_ASSIGNED``."""
    return _enum_short(r.SeatEventType.Name, value, "SEAT_EVENT_TYPE_")


def charge_kind_name(value: int) -> str:
    """``CHARGE_KIND_PRORATED_SEATS`` -> ``PRORATED_SEATS``."""
    return _enum_short(r.ChargeKind.Name, value, "CHARGE_KIND_")


def _enum_short(name_of: Callable[[Any], str], value: int, prefix: str) -> str:
    try:
        return name_of(value).removeprefix(prefix)
    except ValueError:
        return str(value)


def pool_name(hub: int, tier: int) -> str:
    return f"{hub_name(hub)} {tier_name(tier)}"


def format_time(message: Message, field: str) -> str:
    """A timestamp field as ISO 8601 UTC to the second, ``-`` when unset."""
    if not message.HasField(field):
        return "-"
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def minor_digits(currency_code: str) -> int:
    if currency_code in ZERO_DECIMAL_CURRENCIES:
        return 0
    return 3 if currency_code in THREE_DECIMAL_CURRENCIES else 2


def format_money(money: money_pb2.Money) -> str:
    """``USD 1,080.00`` from units and nanos, in integers (I6): the currency's minor digits, and
    more only when the amount has finer parts."""
    total = money.units * NANOS + money.nanos
    sign = "-" if total < 0 else ""
    whole, fraction = divmod(abs(total), NANOS)
    digits = f"{fraction:09d}".rstrip("0").ljust(minor_digits(money.currency_code), "0")
    amount = f"{whole:,}.{digits}" if digits else f"{whole:,}"
    return f"{money.currency_code} {sign}{amount}".strip()


def format_money_field(message: Message, field: str) -> str:
    if not message.HasField(field):
        return "-"
    money: money_pb2.Money = getattr(message, field)
    return format_money(money)


def permissions_text(permissions: r.Permissions) -> str:
    names = [
        name
        for name, held in (
            ("super_admin", permissions.super_admin),
            ("edit_billing", permissions.edit_billing),
            ("account_access", permissions.account_access),
        )
        if held
    ]
    return ",".join(names) or "-"


def seats_text(seats: Iterable[r.SeatRef]) -> str:
    return ", ".join(pool_name(seat.hub, seat.tier) for seat in seats) or "-"


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    right: Iterable[int] = (),
    shrink: Iterable[int] = (),
    width: int = TABLE_WIDTH,
) -> list[str]:
    """Plain-text columns two spaces apart; the columns in ``right`` (numbers, money) align right.
    When the lines would be wider than ``width``, the columns in ``shrink`` (free text such as
    names and emails, never ids) narrow, the widest first, down to their header's width, and the
    cells that no longer fit end in ``~``."""
    right_aligned = frozenset(right)
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    narrowable = sorted(frozenset(shrink))
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    while excess > 0:
        room = [i for i in narrowable if widths[i] > len(headers[i])]
        if not room:
            break
        widest = max(room, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1

    def cut(cell: str, width: int) -> str:
        return cell if len(cell) <= width else cell[: width - 1] + CUT_MARK

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            cut(cell, width).rjust(width) if i in right_aligned else cut(cell, width).ljust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def key_values(pairs: Sequence[tuple[str, str]]) -> list[str]:
    width = max(len(key) for key, _ in pairs)
    return [f"{key.ljust(width)}  {value}".rstrip() for key, value in pairs]


POOL_HEADERS = ("HUB", "TIER", "INCLUDED", "PURCHASED", "ASSIGNED", "AVAILABLE", "PENDING", "REMOVAL DATE")
"""PENDING: seats pending removal, leaving at the REMOVAL DATE."""


def pool_rows(pools: Iterable[r.SeatPool]) -> list[list[str]]:
    return [
        [
            hub_name(pool.hub),
            tier_name(pool.tier),
            str(pool.included),
            str(pool.purchased),
            str(pool.assigned),
            str(pool.available),
            str(pool.pending_removal),
            format_time(pool, "removal_effective_time"),
        ]
        for pool in pools
    ]


def pool_table(pools: Iterable[r.SeatPool]) -> list[str]:
    return table(POOL_HEADERS, pool_rows(pools), right=range(2, 7))


def charge_line(charge: r.Charge) -> str:
    text = f"charge  {format_money_field(charge, 'amount')}"
    return f"{text}  ({charge.description})" if charge.description else text


EVENT_HEADER = (
    f"{'SEQ':>6}  {'TIME':<20}  {'TYPE':<22}  {'ACTOR':<{ID_WIDTH}}  {'POOL':<18}  {'USER':<{ID_WIDTH}}  "
    f"{'QTY':>4}  COUNTS incl/purch/asgn/pend before -> after"
)


def counts_text(counts: r.PoolCounts) -> str:
    return f"{counts.included}/{counts.purchased}/{counts.assigned}/{counts.pending_removal}"


def event_line(event: r.SeatEvent) -> str:
    """One event on one line, in fixed columns, so that a follow stays aligned as events arrive."""
    pool = f"{hub_name(event.hub)}/{tier_name(event.tier)}" if event.hub else "-"
    if event.previous_tier:
        pool = f"{hub_name(event.hub)}/{tier_name(event.previous_tier)}>{tier_name(event.tier)}"
    counts = "-"
    if event.hub:  # only pool events carry counts; the others hold zeros
        before = counts_text(event.before) if event.HasField("before") else "-"
        after = counts_text(event.after) if event.HasField("after") else "-"
        counts = f"{before} -> {after}"
    return (
        f"{event.sequence:>6}  {format_time(event, 'event_time'):<20}  {event_type_name(event.type):<22}  "
        f"{event.actor or '-':<{ID_WIDTH}}  {pool:<18}  {event.user_id or '-':<{ID_WIDTH}}  "
        f"{event.quantity or '-':>4}  {counts}"
    ).rstrip()


# ---- output ---------------------------------------------------------------------------------


def message_dict(message: Message) -> dict[str, Any]:
    """proto3 JSON of a message, with the proto field names and the fields at their defaults."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def quiet(ctx: Context) -> bool:
    """-q / --quiet of a list command: ids only, one a line (``run`` refuses it with --json)."""
    return bool(getattr(ctx.args, "quiet", False))


def print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2))


def print_lines(lines: Iterable[str]) -> None:
    for line in lines:
        print(line)


# ---- commands -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Context:
    """What a command needs: the client, its arguments and the global settings."""

    client: SeatsClient
    args: argparse.Namespace
    as_json: bool
    target: str
    timeout: float
    account: str


Command = Callable[[Context], int]


def accounts_create(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.create_account(
        args.name,
        args.owner_email,
        args.subscription,
        term_months=args.term_months,
        term_start=args.term_start,
        owner_display_name=args.owner_name or "",
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    account = response.account
    pairs = [
        ("account", account.account_id),
        ("name", account.display_name),
        ("owner user", f"{account.owner_user_id}  (a super admin: pass it as --actor)"),
        ("term", f"{format_time(account, 'term_start')} -> {format_time(account, 'renewal_time')}"),
        ("renewal date", format_time(account, "renewal_time")),
    ]
    total = sum_money(charge.amount for charge in response.charges)
    if total is not None:
        pairs.append(("first term", format_money(total)))
    print_lines(key_values(pairs))
    print(f"\nnext: export SEATS_ACCOUNT={account.account_id} SEATS_ACTOR={account.owner_user_id}")
    return EXIT_OK


def sum_money(amounts: Iterable[money_pb2.Money]) -> money_pb2.Money | None:
    """The exact sum of amounts of one currency; None when they mix currencies or there are none."""
    listed = list(amounts)
    if not listed or len({m.currency_code for m in listed}) != 1:
        return None
    total = sum(m.units * NANOS + m.nanos for m in listed)
    units = abs(total) // NANOS * (1 if total >= 0 else -1)
    return money_pb2.Money(currency_code=listed[0].currency_code, units=units, nanos=total - units * NANOS)


def accounts_show(ctx: Context) -> int:
    account = ctx.client.get_account(ctx.account).account
    if ctx.as_json:
        print_json(message_dict(account))
        return EXIT_OK
    print_lines(
        key_values(
            [
                ("account", account.account_id),
                ("name", account.display_name),
                ("owner user", account.owner_user_id),
                ("term", f"{account.term_months} months"),
                ("term start", format_time(account, "term_start")),
                ("renewal date", format_time(account, "renewal_time")),
                ("currency", account.currency_code),
                ("created", format_time(account, "create_time")),
            ]
        )
    )
    print()
    rows = [
        [hub_name(sub.hub), tier_name(sub.tier), str(sub.included_seats), str(sub.purchased_seats)]
        for sub in account.subscriptions
    ]
    print_lines(table(("HUB", "TIER", "INCLUDED", "PURCHASED"), rows, right=(2, 3)))
    return EXIT_OK


def seats_summary(ctx: Context) -> int:
    summary = ctx.client.get_seat_summary(ctx.account)
    if ctx.as_json:
        print_json(message_dict(summary))
        return EXIT_OK
    print_lines(pool_table(summary.pools))
    print()
    print_lines(
        key_values(
            [("term start", format_time(summary, "term_start")), ("renewal date", format_time(summary, "renewal_time"))]
        )
    )
    return EXIT_OK


def seats_buy(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.purchase_seats(
        ctx.account, args.hub, args.tier, args.quantity, validate_only=args.validate_only
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    what = f"{args.quantity} {pool_name(args.hub, args.tier)} seat{'s' if args.quantity != 1 else ''}"
    if args.validate_only:
        print(f"validate only: buying {what} is allowed; nothing was bought. The pool would be:")
    else:
        print(f"bought {what}; the pool now:")
    print_lines(pool_table([response.pool]))
    if response.HasField("charge"):
        print(charge_line(response.charge))
    return EXIT_OK


def seats_remove(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.schedule_seat_removal(ctx.account, args.hub, args.tier, args.quantity)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    when = format_time(response.pool, "removal_effective_time")
    print(
        f"scheduled {args.quantity} {pool_name(args.hub, args.tier)} seat(s) for removal at {when}; "
        "they are billed until then (S9)"
    )
    print_lines(pool_table([response.pool]))
    return EXIT_OK


def seats_cancel_removal(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.cancel_seat_removal(ctx.account, args.hub, args.tier, args.quantity)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print(f"kept {args.quantity} {pool_name(args.hub, args.tier)} seat(s) that were pending removal")
    print_lines(pool_table([response.pool]))
    return EXIT_OK


def seats_assign(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.assign_seat(ctx.account, args.user, args.hub, args.tier, purchase_if_needed=args.buy)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    seat = pool_name(args.hub, args.tier)
    if not response.changed:
        print(f"{args.user} already holds a {seat} seat; nothing changed")
    elif response.previous_tier:
        print(
            f"moved {args.user}'s {hub_name(args.hub)} seat from {tier_name(response.previous_tier)} "
            f"to {tier_name(args.tier)}"
        )
    else:
        print(f"assigned a {seat} seat to {args.user}")
    if response.HasField("charge"):
        print(f"bought a seat with the grant: {charge_line(response.charge)}")
    print_lines(pool_table([response.pool]))
    return EXIT_OK


def seats_unassign(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.unassign_seat(ctx.account, args.user, args.hub)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print(
        f"took {args.user}'s {hub_name(args.hub)} seat back into its pool; it stays billed until the renewal date (S18)"
    )
    print_lines(pool_table([response.pool]))
    return EXIT_OK


def seats_list(ctx: Context) -> int:
    args = ctx.args
    assignments = list(
        ctx.client.iter_seat_assignments(
            ctx.account, hub=args.hub, tier=args.tier, idle_since=args.idle_since, page_size=PAGE_SIZE
        )
    )
    if quiet(ctx):  # the users holding the listed seats, each once
        print_lines(dict.fromkeys(a.user_id for a in assignments))
        return EXIT_OK
    if ctx.as_json:
        print_json({"assignments": [message_dict(a) for a in assignments]})
        return EXIT_OK
    rows = [
        [
            a.user_id,
            hub_name(a.hub),
            tier_name(a.tier),
            format_time(a, "assign_time"),
            format_time(a, "last_activity_time"),
        ]
        for a in assignments
    ]
    print_lines(table(("USER", "HUB", "TIER", "ASSIGNED", "LAST ACTIVITY"), rows))
    if args.idle_since is None:
        print(f"{len(rows)} seat(s) assigned")
    else:
        print(f"{len(rows)} seat(s) idle since {args.idle_since.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}")
    return EXIT_OK


MAX_ACTIVITIES = 1000
"""Reports per RecordSeatActivity call: more go in several calls, which is safe since a report
recorded twice is recorded once."""


def activity_reports(ctx: Context) -> list[tuple[str, int, datetime]]:
    """The reports of --user (with --hub) and of --file, in that order; a report without a time
    takes --at, else now."""
    args = ctx.args
    at: datetime = args.at or datetime.now(UTC)
    if args.user and args.hub is None:
        args.command_parser.error("--user needs --hub: the hub whose seat the users used")
    if args.hub is not None and not args.user:
        args.command_parser.error("--hub goes with --user (a --file line names its own hub)")
    reports = [(user, int(args.hub), at) for user in args.user]
    for where, line in file_lines(ctx):
        try:
            user, hub, when = activity_arg(line)
        except argparse.ArgumentTypeError as err:
            args.command_parser.error(f"{where}: {err}")
        reports.append((user, hub, when or at))
    if not reports:
        args.command_parser.error("no reports: give --user USER_ID --hub HUB, or --file")
    return reports


def seats_activity(ctx: Context) -> int:
    reports = activity_reports(ctx)
    recorded = skipped = 0
    for start in range(0, len(reports), MAX_ACTIVITIES):
        response = ctx.client.record_seat_activity(ctx.account, reports[start : start + MAX_ACTIVITIES])
        recorded += response.recorded
        skipped += response.skipped
    if ctx.as_json:  # one object, summed over the calls
        print_json(message_dict(seat_service_pb2.RecordSeatActivityResponse(recorded=recorded, skipped=skipped)))
        return EXIT_OK
    print(f"recorded {recorded} seat(s), skipped {skipped} of {len(reports)} report(s)")
    if skipped:
        print("(skipped: no seat of that hub, a later use already recorded, or before the seat was given)")
    return EXIT_OK


def seats_policy(ctx: Context) -> int:
    args = ctx.args
    if args.idle_reclaim_days is None and args.auto_approve_requests is None:
        args.command_parser.error("give --idle-reclaim-days, --auto-approve-requests, or both")
    auto = None if args.auto_approve_requests is None else args.auto_approve_requests == "on"
    response = ctx.client.update_seat_policy(
        ctx.account,
        args.hub,
        args.tier,
        args.idle_reclaim_days,
        auto_approve_requests=auto,
        validate_only=args.validate_only,
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    pool = response.pool
    days = pool.idle_reclaim_days
    if args.validate_only:
        print(f"validate only: nothing was changed. {pool_name(args.hub, args.tier)} would have:")
    else:
        print(f"set the policy of {pool_name(args.hub, args.tier)}:")
    policy = f"after {days} days without activity" if days else "off: seats are never reclaimed"
    approval = "at once while a seat is free" if pool.auto_approve_requests else "off: an administrator decides"
    print_lines(key_values([("idle reclaim", policy), ("auto-approve requests", approval)]))
    print()
    print_lines(pool_table([pool]))
    if not days:
        return EXIT_OK
    print()
    idle = response.idle_seats
    if not idle:
        print(f"no seat has been idle {days} days or more")
        return EXIT_OK
    rows = [
        [a.user_id, tier_name(a.tier), format_time(a, "last_activity_time"), format_time(a, "assign_time")]
        for a in idle
    ]
    print_lines(table(("IDLE USER", "TIER", "LAST ACTIVITY", "ASSIGNED"), rows))
    verb = "would reclaim" if args.validate_only else "reclaims"
    print(f"{len(rows)} seat(s) idle {days} days or more: the next sweep {verb} them unless they are used first")
    return EXIT_OK


def request_state_name(value: int) -> str:
    """A request's state as seatctl prints it: "pending", "waiting", ..."""
    return _enum_short(r.SeatRequestState.Name, value, "SEAT_REQUEST_STATE_").lower()


def request_rows(found: Iterable[r.SeatRequest]) -> list[list[str]]:
    return [
        [
            q.seat_request_id,
            q.user_id,
            pool_name(q.hub, q.tier),
            request_state_name(q.state),
            format_time(q, "create_time"),
            q.decided_by,
            q.reason,
        ]
        for q in found
    ]


def request_table(found: Iterable[r.SeatRequest]) -> list[str]:
    return table(("REQUEST", "USER", "POOL", "STATE", "ASKED", "DECIDED BY", "REASON"), request_rows(found))


def request_outcome(seat_request: r.SeatRequest) -> str:
    """One line on where a request stands after a call."""
    state = request_state_name(seat_request.state)
    if seat_request.state == r.SEAT_REQUEST_STATE_WAITING:
        return f"{seat_request.seat_request_id}: waiting; it gets the next free seat of its pool, oldest first"
    if seat_request.state == r.SEAT_REQUEST_STATE_GRANTED:
        return f"{seat_request.seat_request_id}: granted; {seat_request.user_id} holds the seat"
    return f"{seat_request.seat_request_id}: {state}"


def seats_request(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.request_seat(ctx.account, args.hub, args.tier, user_id=args.user or "", reason=args.reason)
    if ctx.as_json:
        print_json(message_dict(response))
    elif quiet(ctx):
        print(response.seat_request.seat_request_id)
    else:
        print(request_outcome(response.seat_request))
    return EXIT_OK


def seats_requests(ctx: Context) -> int:
    args = ctx.args
    found = list(ctx.client.iter_seat_requests(ctx.account, state=args.state, hub=args.hub, user_id=args.user or ""))
    if ctx.as_json:
        print_json({"seat_requests": [message_dict(q) for q in found]})
    elif quiet(ctx):
        print_lines(q.seat_request_id for q in found)
    elif not found:
        print("no seat requests")
    else:
        print_lines(request_table(found))
    return EXIT_OK


def seats_approve(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.approve_seat_request(ctx.account, args.request, purchase_if_needed=args.buy)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print(request_outcome(response.seat_request))
    if response.HasField("charge"):
        print(charge_line(response.charge))
    print_lines(pool_table([response.pool]))
    return EXIT_OK


def seats_deny(ctx: Context) -> int:
    response = ctx.client.deny_seat_request(ctx.account, ctx.args.request)
    if ctx.as_json:
        print_json(message_dict(response))
    else:
        print(request_outcome(response.seat_request))
    return EXIT_OK


def user_lines(user: r.User) -> list[str]:
    return key_values(
        [
            ("user", user.user_id),
            ("email", user.email),
            ("name", user.display_name),
            ("permissions", permissions_text(user.permissions)),
            ("seats", seats_text(user.seats)),
            ("etag", user.etag),
            ("created", format_time(user, "create_time")),
            ("updated", format_time(user, "update_time")),
        ]
    )


def users_create(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.create_user(
        ctx.account,
        args.email,
        display_name=args.name or "",
        super_admin=args.super_admin,
        edit_billing=args.edit_billing,
        account_access=args.account_access,
        seats=args.seat,
        purchase_if_needed=args.buy,
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print_lines(user_lines(response.user))
    for charge in response.charges:
        print(f"bought a seat with the grant: {charge_line(charge)}")
    return EXIT_OK


def users_list(ctx: Context) -> int:
    users = list(ctx.client.iter_users(ctx.account, hub=ctx.args.hub, page_size=PAGE_SIZE))
    if quiet(ctx):
        print_lines(user.user_id for user in users)
        return EXIT_OK
    if ctx.as_json:
        print_json({"users": [message_dict(user) for user in users]})
        return EXIT_OK
    rows = [
        [user.user_id, user.email, user.display_name, permissions_text(user.permissions), seats_text(user.seats)]
        for user in users
    ]
    print_lines(table(("USER", "EMAIL", "NAME", "PERMISSIONS", "SEATS"), rows, shrink=(1, 2, 3, 4)))
    print(f"{len(rows)} user(s)")
    return EXIT_OK


def users_show(ctx: Context) -> int:
    user = ctx.client.get_user(ctx.account, ctx.args.user).user
    if ctx.as_json:
        print_json(message_dict(user))
        return EXIT_OK
    print_lines(user_lines(user))
    return EXIT_OK


def users_delete(ctx: Context) -> int:
    response = ctx.client.delete_user(ctx.account, ctx.args.user, etag=ctx.args.etag or "")
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print(f"deleted user {ctx.args.user}")
    return EXIT_OK


def users_update(ctx: Context) -> int:
    args = ctx.args
    changes = {
        "email": args.email,
        "display_name": args.name,
        "super_admin": args.super_admin,
        "edit_billing": args.edit_billing,
        "account_access": args.account_access,
    }
    if all(value is None for value in changes.values()):
        ctx.args.command_parser.error(
            "nothing to change: give --email, --name or a permission (--[no-]super-admin, --[no-]edit-billing, "
            "--[no-]account-access)"
        )
    # The update mask holds exactly the fields given, so a permission named with --no-... is taken away.
    response = ctx.client.update_user(ctx.account, args.user, etag=args.etag or "", **changes)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    print_lines(user_lines(response.user))
    return EXIT_OK


def accounts_upgrade(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.upgrade_subscription(
        ctx.account,
        args.hub,
        args.tier,
        purchased_seats=args.purchased,
        assign_user_ids=args.assign,
        validate_only=args.validate_only,
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    what = f"{hub_name(args.hub)} to {tier_name(args.tier)}"
    if args.validate_only:
        print(f"validate only: upgrading {what} is allowed; nothing was changed. The pool would be:")
    else:
        print(f"upgraded {what}; the pool now:")
    print_lines(pool_table([response.pool]))
    for charge in response.charges:
        print(charge_line(charge))
    if args.assign:
        verb = "would get" if args.validate_only else "got"
        print(f"{verb} a {pool_name(args.hub, args.tier)} seat: {', '.join(args.assign)}")
    return EXIT_OK


def file_lines(ctx: Context) -> Iterator[tuple[str, str]]:
    """The lines of --file (``-``: standard input) with where each is (``PATH, line N``), without
    comments (``#`` to the end of the line) and blank lines; none without --file."""
    args = ctx.args
    if args.file is None:
        return
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
    except OSError as err:
        args.command_parser.error(f"cannot read --file {args.file}: {err.strerror or err}")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line:
            yield f"{args.file}, line {number}", line


def batch_changes(ctx: Context) -> list[tuple[str, int, int | None]]:
    """The changes of --change and of --file (``-``: standard input), in that order."""
    args = ctx.args
    changes: list[tuple[str, int, int | None]] = list(args.change)
    for where, line in file_lines(ctx):
        try:
            changes.append(change_arg(line))
        except argparse.ArgumentTypeError as err:
            args.command_parser.error(f"{where}: {err}")
    if not changes:
        args.command_parser.error("no changes: give --change USER:HUB:TIER or --file")
    return changes


def seats_batch(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.batch_update_seat_assignments(
        ctx.account, batch_changes(ctx), validate_only=args.validate_only
    )
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    if args.validate_only:
        print("validate only: the batch is allowed; nothing was changed. It would do:")
    rows = [
        [
            result.user_id,
            hub_name(result.hub),
            tier_name(result.previous_tier),
            tier_name(result.tier),
            outcome_name(result.outcome),
        ]
        for result in response.results
    ]
    print_lines(table(("USER", "HUB", "BEFORE", "AFTER", "OUTCOME"), rows))
    print()
    print_lines(pool_table(response.pools))
    return EXIT_OK


def outcome_name(value: int) -> str:
    """``SEAT_CHANGE_OUTCOME_MOVED`` -> ``MOVED``."""
    return _enum_short(seat_service_pb2.SeatChangeOutcome.Name, value, "SEAT_CHANGE_OUTCOME_")


def seats_check(ctx: Context) -> int:
    args = ctx.args
    response = ctx.client.check_seats(ctx.account, args.hub, args.user)
    if ctx.as_json:
        print_json(message_dict(response))
        return EXIT_OK
    rows = [[user, tier_name(tier)] for user, tier in zip(args.user, response.tiers, strict=False)]
    print_lines(table(("USER", f"{hub_name(args.hub).upper()} TIER"), rows))
    print(f"as of event {response.sequence}")
    return EXIT_OK


def events_tail(ctx: Context) -> int:
    after = ctx.args.after
    ids_only = quiet(ctx)
    if ctx.args.follow:
        # A quick unary call first, with the CLI's short retries: a wrong account, actor or target
        # is told at once rather than after a follow's patient reconnects.
        ctx.client.get_account(ctx.account)
        ctx.client.retry = FOLLOW_RETRY
        events = ctx.client.watch_seat_events(ctx.account, after_sequence=after, max_reconnects=FOLLOW_MAX_RECONNECTS)
    else:
        events = ctx.client.iter_seat_events(ctx.account, after_sequence=after, page_size=PAGE_SIZE)
    if not ctx.as_json and not ids_only:
        print(EVENT_HEADER, flush=True)
    try:
        for event in events:
            if ids_only:
                print(event.sequence, flush=True)
            elif ctx.as_json:
                print(json.dumps(message_dict(event)), flush=True)
            else:
                print(event_line(event), flush=True)
    except KeyboardInterrupt:
        if ctx.args.follow:  # the way to stop a follow: not an error
            return EXIT_OK
        raise
    return EXIT_OK


def charge_table(charges: Iterable[r.Charge], heading: str = "CHARGED") -> list[str]:
    rows = [
        [
            format_time(charge, "charge_time")[:10],  # the date: the time is in --json
            charge_kind_name(charge.kind),
            pool_name(charge.hub, charge.tier),
            str(charge.quantity or "-"),
            format_money_field(charge, "unit_price"),
            format_money_field(charge, "amount"),
            charge.description,
        ]
        for charge in charges
    ]
    return table(
        (heading, "KIND", "POOL", "QTY", "UNIT PRICE", "AMOUNT", "DESCRIPTION"), rows, right=(3, 4, 5), shrink=(6,)
    )


def invoice_list(ctx: Context) -> int:
    found = list(ctx.client.iter_invoices(ctx.account))
    if ctx.as_json:
        print_json({"invoices": [message_dict(i) for i in found]})
    elif quiet(ctx):
        print_lines(i.invoice_id for i in found)
    elif not found:
        print("no invoices yet: the first is issued when the first term ends")
    else:
        rows = [
            [
                str(i.number),
                i.invoice_id,
                format_time(i, "period_start")[:10],
                format_time(i, "period_end")[:10],
                str(i.line_count),
                format_money_field(i, "total"),
            ]
            for i in found
        ]
        print_lines(table(("#", "INVOICE", "FROM", "TO", "LINES", "TOTAL"), rows, right=(0, 4, 5)))
    return EXIT_OK


def invoice_show(ctx: Context) -> int:
    found = ctx.client.get_invoice(ctx.account, ctx.args.invoice).invoice
    if ctx.as_json:
        print_json(message_dict(found))
        return EXIT_OK
    print(f"invoice {found.number}  {found.invoice_id}")
    print(f"term  {format_time(found, 'period_start')} -> {format_time(found, 'period_end')}")
    print(f"issued  {format_time(found, 'issue_time')}")
    print_lines(charge_table(found.lines))
    print(f"total  {format_money_field(found, 'total')}")
    return EXIT_OK


def invoice_preview(ctx: Context) -> int:
    args = ctx.args
    preview = ctx.client.preview_invoice(ctx.account, purchases=args.buy, removals=args.remove)
    if ctx.as_json:
        print_json(message_dict(preview))
        return EXIT_OK
    if args.buy or args.remove:
        print("what if: nothing is bought or scheduled")
    print(f"current term  {format_time(preview, 'term_start')} -> {format_time(preview, 'renewal_time')}")
    print_lines(charge_table(preview.current_term_charges))
    print(f"current term total  {format_money_field(preview, 'current_term_total')}")
    if args.buy:
        print()
        print_lines(charge_table(preview.proposed_charges, "WOULD CHARGE"))
        print(f"would charge now  {format_money_field(preview, 'proposed_total')}")
    print()
    print(f"next renewal  {format_time(preview, 'renewal_time')}")
    lines = [
        [
            charge_kind_name(line.kind),
            pool_name(line.hub, line.tier),
            str(line.quantity or "-"),
            format_money_field(line, "unit_price"),
            format_money_field(line, "amount"),
            line.description,
        ]
        for line in preview.next_renewal_lines
    ]
    print_lines(
        table(("KIND", "POOL", "QTY", "UNIT PRICE", "AMOUNT", "DESCRIPTION"), lines, right=(2, 3, 4), shrink=(5,))
    )
    print(f"next renewal total  {format_money_field(preview, 'next_renewal_total')}")
    return EXIT_OK


# ---- refusals -------------------------------------------------------------------------------


# What to do about a refusal, by reason, when the reason alone says it; hint() words the others.
HINTS: dict[ErrorReason.ValueType, str] = {
    ErrorReason.NO_SEAT_AVAILABLE: "buy a seat with `seatctl seats buy` or pass --buy",
    ErrorReason.SEATS_ASSIGNED: "free seats with `seatctl seats unassign`, or remove fewer",
    ErrorReason.USER_HOLDS_SEATS: "free them with `seatctl seats unassign`",
    ErrorReason.SYSTEM_CALL_ONLY: "creating an account is a trusted system call: leave out --actor",
    ErrorReason.NOT_SUBSCRIBED: "upgrade the subscription, or see the pools with `seatctl seats summary`",
    ErrorReason.TIER_NOT_PURCHASABLE: "upgrade the hub to a paid tier with `seatctl accounts upgrade`",
    ErrorReason.NOT_PENDING_REMOVAL: "see the pending counts with `seatctl seats summary`",
    ErrorReason.SEAT_NOT_ASSIGNED: "see the user's seats with `seatctl users show`",
    ErrorReason.EMAIL_TAKEN: "see the users with `seatctl users list`",
    ErrorReason.ACCOUNT_NOT_FOUND: "check --account or SEATS_ACCOUNT",
    ErrorReason.USER_NOT_FOUND: "check the user id; see `seatctl users list`",
    ErrorReason.ETAG_MISMATCH: "show the user again for its current etag",
    ErrorReason.SEAT_LIMIT: "buy fewer seats per call",
    ErrorReason.CONCURRENT_CHANGE: "another change won a race; run the command again",
    ErrorReason.TOO_MANY_WATCHES: "the server runs as many event watches as it allows; try again later",
    ErrorReason.TOO_MANY_CALLS: "the server is busy; try again shortly",
    ErrorReason.TOKEN_MISSING: "the server wants a service token: pass --token or set SEATS_TOKEN",
    ErrorReason.TOKEN_INVALID: "the server does not know this token: check --token or SEATS_TOKEN",
    ErrorReason.TOKEN_NOT_FOR_ACCOUNT: "this token acts for other accounts: check --account, or use another --token",
    ErrorReason.ACTOR_REQUIRED: "this token acts for users: pass --actor or set SEATS_ACTOR",
    ErrorReason.STORE_UNAVAILABLE: "the server cannot reach its database; try again later",
    ErrorReason.SHUTTING_DOWN: "the server is stopping; try again when it is back",
}


def reason_of(err: errors.SeatsError) -> ErrorReason.ValueType:
    """The ErrorReason of a refusal; ERROR_REASON_UNSPECIFIED for none, or one this seatctl does not know."""
    try:
        return ErrorReason.Value(err.reason)
    except ValueError:
        return ErrorReason.ERROR_REASON_UNSPECIFIED


def hint(err: errors.SeatsError, ctx: Context) -> str:
    """What to do about a refusal, for the reasons a person meets at a shell; empty when there is
    nothing better to say than the message."""
    reason = reason_of(err)
    if reason == ErrorReason.PERMISSION_MISSING:
        permission = err.metadata.get("permission", "needed")
        return f"ask a user with the {permission} permission, or pass --actor with the id of one"
    if reason == ErrorReason.INVALID_FIELD:
        fields = ", ".join(dict.fromkeys(v.field for v in err.field_violations if v.field))
        return f"check {fields}" if fields else "check the arguments"
    if reason == ErrorReason.ACTOR_NOT_IN_ACCOUNT:
        return f"pass as --actor the id of a user of account {ctx.account or '(none)'}"
    if reason in HINTS:
        return HINTS[reason]
    if err.code == grpc.StatusCode.UNAVAILABLE:
        return f"is the server running at {ctx.target}?"
    if err.code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return (
            f"no answer from {ctx.target} within {ctx.timeout:g}s: is the server running there? --timeout waits longer"
        )
    return ""


def one_line(text: str) -> str:
    return " ".join(text.split())


def report_refusal(err: errors.SeatsError, ctx: Context) -> int:
    """One line on stderr (and an error object on stdout with --json); the exit code."""
    label = err.reason or err.code.name
    advice = hint(err, ctx)
    line = f"{PROG}: {label}: {one_line(err.message) or err.code.name}"
    print(f"{line} ({advice})" if advice else line, file=sys.stderr)
    if ctx.as_json:
        error: dict[str, Any] = {
            "code": err.code.name,
            "reason": err.reason,
            "message": err.message,
            "metadata": dict(err.metadata),
        }
        if err.field_violations:
            error["field_violations"] = [{"field": v.field, "description": v.description} for v in err.field_violations]
        if err.precondition_violations:
            error["precondition_violations"] = [
                {"type": v.type, "subject": v.subject, "description": v.description}
                for v in err.precondition_violations
            ]
        print_json({"error": error})
    return EXIT_UNREACHABLE if err.code in UNREACHABLE_CODES else EXIT_REFUSED


# ---- the parser -----------------------------------------------------------------------------


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples of descriptions as written."""


def add_global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The global options, on the top parser and again on every subcommand, so that they may come
    before or after it. On subcommands they default to SUPPRESS, so a value given before the
    subcommand is not overwritten."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    group = parser.add_argument_group("global options")
    group.add_argument(
        "--target",
        default=default(None),
        metavar="HOST:PORT[,...]",
        help=f"the seat server (env SEATS_TARGET; default {DEFAULT_TARGET}); several replicas, called round "
        "robin: IP:PORT,IP:PORT,... or a gRPC target URI such as dns:///NAME:PORT",
    )
    group.add_argument(
        "--actor",
        default=default(None),
        metavar="USER_ID",
        help="act as this user; their permissions decide (env SEATS_ACTOR; left out: a trusted system call; "
        "'' forces one)",
    )
    group.add_argument(
        "--token",
        default=default(None),
        metavar="TOKEN",
        help="service token, sent as 'authorization: Bearer' (env SEATS_TOKEN)",
    )
    group.add_argument(
        "--tls-ca",
        default=default(None),
        metavar="PEM",
        help="connect with TLS, trusting this CA certificate file (env SEATS_TLS_CA)",
    )
    group.add_argument(
        "--tls-cert",
        default=default(None),
        metavar="PEM",
        help="client certificate for mutual TLS (env SEATS_TLS_CERT; with --tls-key)",
    )
    group.add_argument(
        "--tls-key",
        default=default(None),
        metavar="PEM",
        help="client private key for mutual TLS (env SEATS_TLS_KEY)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print the response as proto3 JSON (one object per line for `events tail`)",
    )
    group.add_argument(
        "--timeout",
        type=seconds_arg,
        default=default(10.0),
        metavar="SECONDS",
        help="deadline of each call (default 10); a --follow stream has none",
    )


def add_account_option(parser: argparse.ArgumentParser, *, top: bool = False) -> None:
    parser.add_argument(
        "--account",
        default=argparse.SUPPRESS,
        metavar="ACCOUNT_ID",
        help="the account (env SEATS_ACCOUNT)" + ("; for the commands on an account" if top else ""),
    )


def add_pool_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hub", type=hub_arg, required=True, help="sales or service")
    parser.add_argument("--tier", type=tier_arg, required=True, help="free, starter, professional or enterprise")


def add_command(
    group: Any,
    name: str,
    command: Command,
    summary: str,
    description: str,
    *,
    on_account: bool = True,
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(
        name, help=summary, description=description, formatter_class=HelpFormatter
    )
    if on_account:
        add_account_option(parser)
    add_global_options(parser, top=False)
    parser.set_defaults(command=command, command_parser=parser, on_account=on_account)
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n", 1)[0] if __doc__ else None,
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {version()}")
    add_global_options(parser, top=True)
    add_account_option(parser, top=True)
    nouns = parser.add_subparsers(
        dest="noun", required=True, metavar="{accounts,seats,users,events,invoice,plan,apply,completion}"
    )

    accounts = nouns.add_parser("accounts", help="create, show and upgrade accounts").add_subparsers(
        dest="verb", required=True
    )
    create = add_command(
        accounts,
        "create",
        accounts_create,
        "create an account with its subscriptions and a super admin owner",
        "Creates an account, its seat pools and a super admin owner user (S19); prints the account id,\n"
        "the owner's user id (pass it as --actor) and the renewal date. A trusted system call: SEATS_ACTOR\n"
        "is not read.\n\n"
        "  seatctl accounts create --name Acme --owner-email owner@acme.test \\\n"
        "      --subscription sales:professional:1 --subscription service:starter",
        on_account=False,
    )
    create.add_argument("--name", required=True, help="the account's name")
    create.add_argument("--owner-email", required=True, metavar="EMAIL", help="email of the owner user")
    create.add_argument("--owner-name", metavar="NAME", help="display name of the owner user (default: the email)")
    create.add_argument(
        "--subscription",
        type=subscription_arg,
        action="append",
        required=True,
        metavar="HUB:TIER[:PURCHASED]",
        help="a seat pool, e.g. sales:professional:1 (1 seat bought on top of the included ones); repeatable",
    )
    create.add_argument("--term-months", type=int, choices=(1, 12), default=12, help="term length (default 12)")
    create.add_argument(
        "--term-start",
        type=datetime_arg,
        metavar="ISO8601",
        help="start of the first term, e.g. 2025-01-01T00:00:00Z (default now; UTC when no zone is given)",
    )
    add_command(accounts, "show", accounts_show, "show the account", "Shows the account, its term and its pools.")
    upgrade = add_command(
        accounts,
        "upgrade",
        accounts_upgrade,
        "move a hub to a higher tier (needs edit billing)",
        "Moves a hub to a higher tier, charged pro rata for the rest of the term; buys --purchased seats\n"
        "of the new tier and gives one to each --assign user (their seat of the hub moves). From the free\n"
        "tier, the free seats go at once (S6). Needs the edit billing permission (S7).\n\n"
        "  seatctl accounts upgrade --hub service --tier professional --purchased 1 --assign usr_... \\\n"
        "      --validate-only",
    )
    add_pool_options(upgrade)
    upgrade.add_argument(
        "--purchased", type=non_negative_int, default=0, metavar="N", help="seats to buy at the new tier (default 0)"
    )
    upgrade.add_argument(
        "--assign",
        action="append",
        default=[],
        metavar="USER_ID",
        help="a user to give a seat of the new tier; repeatable",
    )
    upgrade.add_argument("--validate-only", action="store_true", help="check and price the upgrade without making it")

    seats = nouns.add_parser("seats", help="pools, purchases, removals, assignments and checks").add_subparsers(
        dest="verb", required=True
    )
    add_command(
        seats,
        "summary",
        seats_summary,
        "every pool's counts and the renewal date",
        "Shows every pool: included, purchased, assigned, available and pending-removal seats (S17),\n"
        "and the renewal date, when pending removals take effect (S5).",
    )
    buy = add_command(
        seats,
        "buy",
        seats_buy,
        "buy seats (needs edit billing)",
        "Buys seats; they count at once and are charged pro rata for the rest of the term (S3).\n"
        "Needs the edit billing permission (S7).\n\n"
        "  seatctl seats buy --hub sales --tier professional --quantity 2 --validate-only",
    )
    add_pool_options(buy)
    buy.add_argument("--quantity", type=positive_int, required=True, help="seats to buy")
    buy.add_argument("--validate-only", action="store_true", help="check and price the purchase without making it")
    remove = add_command(
        seats,
        "remove",
        seats_remove,
        "schedule seats for removal at the renewal date (needs edit billing)",
        "Schedules unassigned purchased seats to leave at the renewal date (S4, S5); they are billed\n"
        "until then (S9). Assigned seats cannot be removed (S8).",
    )
    add_pool_options(remove)
    remove.add_argument("--quantity", type=positive_int, required=True, help="seats to remove")
    cancel = add_command(
        seats,
        "cancel-removal",
        seats_cancel_removal,
        "keep seats that are pending removal (needs edit billing)",
        "Cancels part or all of a pending removal (S5).",
    )
    add_pool_options(cancel)
    cancel.add_argument("--quantity", type=positive_int, required=True, help="pending seats to keep")
    assign = add_command(
        seats,
        "assign",
        seats_assign,
        "give a user a seat (needs account access)",
        "Gives a user a seat (S13). The same seat again changes nothing; another tier of the same hub\n"
        "moves the seat. With --buy, a full pool buys a seat with the grant (S14, needs edit billing).",
    )
    assign.add_argument("--user", required=True, metavar="USER_ID", help="the user to give the seat to")
    add_pool_options(assign)
    assign.add_argument("--buy", action="store_true", help="buy a seat when the pool is full")
    unassign = add_command(
        seats,
        "unassign",
        seats_unassign,
        "take a user's seat back into its pool (needs account access)",
        "Takes a user's seat of a hub; it stays in the pool and is billed until the renewal date (S18).",
    )
    unassign.add_argument("--user", required=True, metavar="USER_ID", help="the user")
    unassign.add_argument("--hub", type=hub_arg, required=True, help="sales or service")
    listing = add_command(
        seats, "list", seats_list, "list seat assignments", "Lists every seat assignment, by user id then hub."
    )
    listing.add_argument("--hub", type=hub_arg, help="only seats of this hub")
    listing.add_argument("--tier", type=tier_arg, help="only seats of this tier")
    listing.add_argument(
        "--idle-since",
        type=since_arg,
        metavar="TIME|AGE",
        help="only seats not used since then (last activity, or the assignment when none): an ISO 8601 "
        "time, e.g. 2026-11-01T00:00:00Z, or an age, e.g. 30d (idle for 30 days), 12h, 2w",
    )
    add_quiet_option(listing, "the user ids holding the seats, each once")
    batch = add_command(
        seats,
        "batch",
        seats_batch,
        "change many seat assignments, all or nothing (needs account access)",
        "Gives, moves and takes seats in one call, all or nothing (S17): seats freed by the batch count\n"
        "before seats taken by it. Each change is USER:HUB:TIER; TIER none takes the user's seat of the\n"
        "hub. --file reads one change a line (# starts a comment; - reads standard input).\n\n"
        "  seatctl seats batch --change usr_a:sales:professional --change usr_b:sales:none\n"
        "  seatctl seats batch --file changes.txt --validate-only",
    )
    batch.add_argument(
        "--change",
        type=change_arg,
        action="append",
        default=[],
        metavar="USER:HUB:TIER",
        help="a change, e.g. usr_1:sales:professional, or usr_1:sales:none to unassign; repeatable",
    )
    batch.add_argument("--file", metavar="PATH", help="more changes, one USER:HUB:TIER a line ('-': standard input)")
    batch.add_argument("--validate-only", action="store_true", help="check the batch without saving it")
    check = add_command(
        seats,
        "check",
        seats_check,
        "the tier each user holds in a hub",
        "Shows the tier of the seat each user holds in the hub, in the order given ('-' for none, or\n"
        "for a user that does not exist), and the event sequence the answer reflects (I4).\n\n"
        "  seatctl seats check --hub sales --user usr_a --user usr_b",
    )
    check.add_argument("--hub", type=hub_arg, required=True, help="sales or service")
    check.add_argument("--user", action="append", required=True, metavar="USER_ID", help="a user to check; repeatable")
    activity = add_command(
        seats,
        "activity",
        seats_activity,
        "record that users used their seats",
        "Records that users used their seats of a hub, at --at (default now): each seat's last activity\n"
        "moves to the latest time reported, never back, so the idle-seat policy (`seatctl seats policy`)\n"
        "counts the seat as used. A user without a seat of that hub is skipped. --file reads one report\n"
        "a line, USER:HUB[:TIME] (# starts a comment; - reads standard input); more than 1000 reports go\n"
        "in several calls. Running it again is safe: a use recorded twice is recorded once.\n\n"
        "  seatctl seats activity --hub sales --user usr_a --user usr_b\n"
        "  seatctl seats activity --hub sales --user usr_a --at 2026-11-30T09:00:00Z\n"
        "  seatctl seats activity --file usage.txt",
    )
    activity.add_argument(
        "--user", action="append", default=[], metavar="USER_ID", help="a user who used their seat; repeatable"
    )
    activity.add_argument("--hub", type=hub_arg, help="the hub of the --user seats: sales or service")
    activity.add_argument(
        "--at",
        type=datetime_arg,
        metavar="ISO8601",
        help="when they used it, e.g. 2026-11-30T09:00:00Z (default now; UTC when no zone is given); at most "
        "5 minutes ahead of the server's clock",
    )
    activity.add_argument(
        "--file", metavar="PATH", help="more reports, one USER:HUB[:TIME] a line ('-': standard input)"
    )
    policy = add_command(
        seats,
        "policy",
        seats_policy,
        "set a pool's idle-seat policy (needs account access)",
        "Sets how many days without activity (`seatctl seats activity`) make the renewal sweep take a\n"
        "seat back into its pool (it stays billed, S18): 7 or more, or 0 to turn reclaiming off. Shows\n"
        "the pool's policy and the seats idle that long now, which the next sweep reclaims unless they\n"
        "are used first; --validate-only shows that without changing anything.\n\n"
        "  seatctl seats policy --hub sales --tier professional --idle-reclaim-days 30 --validate-only",
    )
    add_pool_options(policy)
    policy.add_argument(
        "--idle-reclaim-days",
        type=non_negative_int,
        metavar="DAYS",
        help="days without activity before a seat is reclaimed: 7 or more; 0 turns reclaiming off",
    )
    policy.add_argument(
        "--auto-approve-requests",
        choices=("on", "off"),
        help="grant seat requests at once while a seat is free and nobody waits",
    )
    policy.add_argument(
        "--validate-only", action="store_true", help="show what the policy would reclaim; change nothing"
    )

    request = add_command(
        seats,
        "request",
        seats_request,
        "ask for a seat (no permission needed for yourself)",
        "Asks for a seat of a pool for the acting user; an administrator approves or denies it\n"
        "(`seatctl seats approve`). With --user, for another user (needs account access). Granted at\n"
        "once when the pool approves requests automatically and a seat is free.\n\n"
        '  seatctl seats request --hub sales --tier professional --reason "I run the Q3 pipeline"',
    )
    add_pool_options(request)
    request.add_argument("--user", metavar="USER_ID", help="ask for this user rather than the acting one")
    request.add_argument("--reason", default="", help="why the seat is needed, for the approver")
    add_quiet_option(request, "the request id")
    requests_list = add_command(
        seats,
        "requests",
        seats_requests,
        "list seat requests, oldest first (needs account access, except for your own)",
        "Lists seat requests, oldest first: pending ones wait for a decision, waiting ones for a free\n"
        "seat (they get one in the order shown).\n\n"
        "  seatctl seats requests --state waiting",
    )
    requests_list.add_argument(
        "--state", choices=("pending", "waiting", "granted", "denied", "cancelled"), help="only this state"
    )
    requests_list.add_argument("--hub", type=hub_arg, help="only this hub")
    requests_list.add_argument("--user", metavar="USER_ID", help="only this user's requests")
    add_quiet_option(requests_list, "the request ids")
    approve = add_command(
        seats,
        "approve",
        seats_approve,
        "approve a seat request (needs account access)",
        "Grants the seat at once if one is free; with --buy buys one when none is (S14, needs edit\n"
        "billing); otherwise the request waits and gets the next seat of its pool that frees, oldest\n"
        "request first, in the call that frees it.\n\n"
        "  seatctl seats approve --request sreq_...",
    )
    approve.add_argument("--request", required=True, metavar="SEAT_REQUEST_ID", help="the request")
    approve.add_argument("--buy", action="store_true", help="buy a seat when none is free (needs edit billing)")
    deny = add_command(
        seats, "deny", seats_deny, "deny a seat request (needs account access)",
        "Denies a pending or waiting request.\n\n  seatctl seats deny --request sreq_...",
    )  # fmt: skip
    deny.add_argument("--request", required=True, metavar="SEAT_REQUEST_ID", help="the request")

    users = nouns.add_parser("users", help="create, list, show, update and delete users").add_subparsers(
        dest="verb", required=True
    )
    user_create = add_command(
        users,
        "create",
        users_create,
        "create a user, optionally with seats (needs account access)",
        "Creates a user; no seat is given unless asked with --seat (S15, S16).\n\n"
        "  seatctl users create --email ann@acme.test --account-access --seat sales:professional --buy",
    )
    user_create.add_argument("--email", required=True, help="unique in the account, case-insensitively")
    user_create.add_argument("--name", help="display name (default: the email)")
    user_create.add_argument("--super-admin", action="store_true", help="every permission (S19)")
    user_create.add_argument("--edit-billing", action="store_true", help="may buy and remove seats (S7)")
    user_create.add_argument("--account-access", action="store_true", help="may manage users and seats (S12)")
    user_create.add_argument(
        "--seat",
        type=seat_arg,
        action="append",
        default=[],
        metavar="HUB:TIER",
        help="a seat to give, e.g. sales:professional; at most one per hub; repeatable",
    )
    user_create.add_argument("--buy", action="store_true", help="buy a seat for each full pool (S14)")
    user_list = add_command(users, "list", users_list, "list users", "Lists every user, by user id.")
    user_list.add_argument("--hub", type=hub_arg, help="only users holding a seat of this hub")
    add_quiet_option(user_list, "the user ids")
    user_show = add_command(users, "show", users_show, "show a user", "Shows a user, its seats and its etag.")
    user_show.add_argument("--user", required=True, metavar="USER_ID", help="the user")
    user_delete = add_command(
        users,
        "delete",
        users_delete,
        "delete a user (needs account access)",
        "Deletes a user. A user holding a seat cannot be deleted: unassign its seats first (S10).",
    )
    user_delete.add_argument("--user", required=True, metavar="USER_ID", help="the user")
    user_delete.add_argument("--etag", help="the etag last read (`seatctl users show`); refused when stale")
    user_update = add_command(
        users,
        "update",
        users_update,
        "change a user's email, name or permissions (needs account access)",
        "Changes only what is given: the update mask names exactly those fields, so --no-edit-billing\n"
        "takes the permission away and the others stay as they are.\n\n"
        "  seatctl users update --user usr_... --name 'Ann Lee' --edit-billing --no-account-access",
    )
    user_update.add_argument("--user", required=True, metavar="USER_ID", help="the user")
    user_update.add_argument("--email", help="the new email, unique in the account")
    user_update.add_argument("--name", help="the new display name")
    for flag, what in (
        ("super-admin", "every permission (S19)"),
        ("edit-billing", "may buy and remove seats (S7)"),
        ("account-access", "may manage users and seats (S12)"),
    ):
        user_update.add_argument(
            f"--{flag}", action=argparse.BooleanOptionalAction, default=None, help=f"give or take: {what}"
        )
    user_update.add_argument("--etag", help="the etag last read (`seatctl users show`); refused when stale")

    events = nouns.add_parser("events", help="the account's event log").add_subparsers(dest="verb", required=True)
    tail = add_command(
        events,
        "tail",
        events_tail,
        "print the event log, and follow it",
        "Prints the account's ordered event log after --after (I4), one line per event: sequence, time,\n"
        "type, actor, pool, user, quantity and the pool's counts before -> after. With --follow it then\n"
        "waits for new events, reconnecting if the server restarts, until Ctrl-C (exit 0).",
    )
    tail.add_argument("--after", type=non_negative_int, default=0, metavar="SEQUENCE", help="start after it")
    tail.add_argument("--follow", action="store_true", help="keep printing new events until interrupted")
    add_quiet_option(tail, "the event sequences")

    invoice = nouns.add_parser("invoice", help="invoices and billing previews").add_subparsers(
        dest="verb", required=True
    )
    invoice_preview_command = add_command(
        invoice,
        "preview",
        invoice_preview,
        "this term's charges and the next renewal's; what a change would charge",
        "Shows what the current term has charged so far and what the next renewal will charge,\n"
        "after pending removals (S9). With --buy and --remove, what buying seats now would charge\n"
        "(pro rata, S3) and the next renewal after the change; nothing is bought or scheduled.\n"
        "Money is exact (I6).\n\n"
        "  seatctl invoice preview --buy sales:professional:2 --remove service:starter:1",
    )
    invoice_preview_command.add_argument(
        "--buy", type=quantity_arg, action="append", default=[], metavar="HUB:TIER:N", help="seats to buy, what if"
    )
    invoice_preview_command.add_argument(
        "--remove", type=quantity_arg, action="append", default=[], metavar="HUB:TIER:N", help="seats to remove"
    )
    invoice_listing = add_command(
        invoice,
        "list",
        invoice_list,
        "the account's invoices, one per ended term",
        "Lists the invoices, oldest first: one per ended term, issued when its renewal is applied,\n"
        "billing every charge of the term.",
    )
    add_quiet_option(invoice_listing, "the invoice ids")
    show = add_command(
        invoice, "show", invoice_show, "an invoice with its lines", "Shows an invoice and every charge it bills."
    )
    show.add_argument("--invoice", required=True, metavar="INVOICE_ID", help="the invoice")

    add_plan_commands(nouns)

    completion = nouns.add_parser(
        "completion",
        help="print a shell completion script",
        description="Prints a completion script for bash or zsh, e.g.\n\n"
        "  seatctl completion bash > ~/.local/share/bash-completion/completions/seatctl\n"
        '  seatctl completion zsh > "${fpath[1]}/_seatctl"',
        formatter_class=HelpFormatter,
    )
    completion.add_argument("shell", choices=COMPLETION_SHELLS, help="the shell")
    return parser


COMPLETION_SHELLS = ("bash", "zsh")


def plan_command(ctx: Context) -> int:
    from . import plan  # seats.plan reads this module's helpers: imported when used

    return plan.run_plan(ctx)


def apply_command(ctx: Context) -> int:
    from . import plan

    return plan.run_apply(ctx)


def add_plan_commands(nouns: Any) -> None:
    """``seatctl plan`` and ``seatctl apply``: seats as code (seats/plan.py, docs/seats-as-code.md).
    Registered without on_account: the account may come from the file, so the commands resolve the
    account and the actor (--actor, else SEATS_ACTOR) themselves."""
    described = (
        "The file declares, per pool (hub and tier), the purchased seats of the next term and who\n"
        "holds the pool's seats (emails or user ids); pools it leaves out are left alone. The account\n"
        "is the file's `account:`, else --account / SEATS_ACCOUNT (when both are given they must agree).\n"
        "Reductions never take effect mid-term: they are scheduled for the renewal date (S4, S5).\n"
        "See docs/seats-as-code.md."
    )
    plan = add_command(
        nouns,
        "plan",
        plan_command,
        "show what `seatctl apply -f FILE` would change (seats as code)",
        "Compares the account with a seats file and prints the steps that would make them match:\n"
        "purchases, cancelled removals, seat changes and removals at the renewal date. Changes nothing.\n\n"
        f"{described}\n\n"
        "  seatctl plan -f seats.yaml\n"
        "  seatctl plan -f seats.yaml --json --detailed-exitcode   # exit 2 when there are changes",
        on_account=False,
    )
    apply = add_command(
        nouns,
        "apply",
        apply_command,
        "make the account match a seats file (seats as code)",
        "Plans as `seatctl plan` does, prints the plan, validates every step with the service, then\n"
        "makes them: cancelled removals and purchases, one all-or-nothing batch of seat changes (S17),\n"
        "removals at the renewal date. Request ids come from the plan, so a retried or repeated apply\n"
        "from the same state has its effect once. An account that already matches gets no call.\n\n"
        f"{described}\n\n"
        "  seatctl apply -f seats.yaml",
        on_account=False,
    )
    for parser in (plan, apply):
        add_account_option(parser)
        parser.add_argument(
            "-f", "--file", required=True, metavar="PATH", help="the seats file, YAML ('-': standard input)"
        )
    plan.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when nothing would change and 2 when something would (1 and 3 stay errors)",
    )


def add_quiet_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "-q", "--quiet", action="store_true", help=f"print only {what}, one a line, for scripts (not with --json)"
    )


# ---- main -----------------------------------------------------------------------------------


def version() -> str:
    """The version of seatctl: that of the installed client package."""
    try:
        return importlib.metadata.version("seats-client")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        from . import __version__

        return __version__


def completion_script(shell: str) -> str:
    """A completion script for the shell, made by shtab from the parser."""
    import shtab  # only this command needs it

    return str(shtab.complete(build_parser(), shell=shell))


def tls_credentials(args: argparse.Namespace) -> grpc.ChannelCredentials | None:
    """TLS when a CA (or a client certificate) is given, by flag or environment."""

    def read(flag: str | None, env: str) -> bytes | None:
        path = flag or os.environ.get(env)
        return Path(path).read_bytes() if path else None

    ca = read(args.tls_ca, "SEATS_TLS_CA")
    cert = read(args.tls_cert, "SEATS_TLS_CERT")
    key = read(args.tls_key, "SEATS_TLS_KEY")
    if ca is None and cert is None:
        return None
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key, certificate_chain=cert)


def resolve_actor(args: argparse.Namespace) -> str | None:
    """--actor, else SEATS_ACTOR (not for a system call like accounts create); '' means none."""
    actor: str | None = args.actor
    if actor is None and args.on_account:
        actor = os.environ.get("SEATS_ACTOR")
    return actor or None


def run(args: argparse.Namespace) -> int:
    if args.noun == "completion":  # local: no server, no account
        print(completion_script(args.shell), end="")
        return EXIT_OK
    command: Command = args.command
    command_parser: argparse.ArgumentParser = args.command_parser
    account = ""
    if args.on_account:
        account = getattr(args, "account", None) or os.environ.get("SEATS_ACCOUNT", "")
        if not account:
            command_parser.error("--account is required (or set SEATS_ACCOUNT)")
    if getattr(args, "quiet", False) and args.json:
        command_parser.error("-q/--quiet and --json do not go together: choose one")
    target: str = args.target or os.environ.get("SEATS_TARGET") or DEFAULT_TARGET
    try:
        channel_target(target)  # a malformed target is a usage error (exit 2), before any call
    except ValueError as exc:
        command_parser.error(f"{'--target' if args.target else 'SEATS_TARGET'}: {exc}")
    timeout: float = args.timeout
    token = args.token or os.environ.get("SEATS_TOKEN") or None
    with SeatsClient(
        target,
        actor=resolve_actor(args),
        token=token,
        credentials=tls_credentials(args),
        timeout=timeout,
        retry=CLI_RETRY,
    ) as client:
        ctx = Context(client, args, bool(args.json), target, timeout, account)
        try:
            return command(ctx)
        except errors.SeatsError as err:
            return report_refusal(err, ctx)


def main(argv: list[str] | None = None) -> int:
    """Runs one seatctl command; returns its exit code (see the module docstring)."""
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except SystemExit as done:  # argparse: --help (0) or a usage error (2)
        if done.code is None:
            return EXIT_OK
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # e.g. `seatctl events tail | head`: the reader went away
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
