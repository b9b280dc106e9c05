"""Reads the seat events the service relays to NATS JetStream, and prints one line per event:

    acc_1a23323cb4067bb63dbf85d 7 SEATS_PURCHASED

A durable pull consumer (``--durable``, default ``seats-example``) on the stream SEATS_EVENTS reads
every subject ``seats.events.<account id>``; made on the first run, it starts at the beginning of
the stream, and later runs go on after the last event this consumer acknowledged. Each message is a
``seats.v1.SeatEvent``; its account is the last token of the subject.

Delivery is at least once: a relay that crashed after publishing republishes (JetStream drops
copies within its duplicate window, two minutes), and a message whose acknowledgement was lost is
delivered again. So a consumer dedupes by (account, sequence): sequences are 1, 2, 3, ... per
account, and an event at or below the last one handled is a copy. This example keeps the last
sequence per account in memory; a real consumer keeps it with its own effects, in the same
transaction, and acknowledges the message after that transaction commits.

It needs nats-py and the seats client package (``pip install nats-py ./clients/python``; the
repository's ``make`` virtualenv has both)::

    .venv/bin/python examples/nats_consumer.py --url nats://127.0.0.1:4222
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time

import nats
from nats.errors import TimeoutError as FetchTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from seats.v1 import resources_pb2

STREAM = "SEATS_EVENTS"
SUBJECTS = "seats.events.>"
PREFIX = "seats.events."


def event_type(event: resources_pb2.SeatEvent) -> str:
    return resources_pb2.SeatEventType.Name(event.type).removeprefix("SEAT_EVENT_TYPE_")


async def consume(url: str, durable: str, idle_exit: float | None) -> None:
    nc = await nats.connect(url, name=f"seats-consumer-{durable}", max_reconnect_attempts=-1)
    js = nc.jetstream()
    subscription = await js.pull_subscribe(
        SUBJECTS,
        durable=durable,
        stream=STREAM,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT, ack_wait=30),
    )
    last: dict[str, int] = {}  # account -> the last sequence handled
    quiet_since = time.monotonic()
    try:
        while True:
            try:
                messages = await subscription.fetch(100, timeout=1.0)
            except FetchTimeout:
                if idle_exit is not None and time.monotonic() - quiet_since >= idle_exit:
                    return
                continue
            quiet_since = time.monotonic()
            for message in messages:
                account = message.subject.removeprefix(PREFIX)
                event = resources_pb2.SeatEvent.FromString(message.data)
                seen = last.get(account, 0)
                if event.sequence <= seen:
                    await message.ack()  # a copy of an event already handled
                    continue
                if seen and event.sequence != seen + 1:
                    # The relay publishes every event of an account in order; a hole means the
                    # stream lost messages (its limits) or this consumer started mid-stream.
                    print(f"# {account}: events {seen + 1}..{event.sequence - 1} are missing", file=sys.stderr)
                print(f"{account} {event.sequence} {event_type(event)}", flush=True)
                last[account] = event.sequence
                await message.ack()
    finally:
        await nc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="nats://127.0.0.1:4222", help="the NATS server (default %(default)s)")
    parser.add_argument("--durable", default="seats-example", help="the durable consumer's name (default %(default)s)")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after this many seconds without a message (default: run until interrupted)",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(consume(args.url, args.durable, args.idle_exit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
