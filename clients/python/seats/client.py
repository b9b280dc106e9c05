"""The synchronous client: one method per RPC of seats.v1, with keyword arguments.

    with SeatsClient("127.0.0.1:50051", actor=owner_id) as seats:
        seats.assign_seat(account_id, user_id, "sales", "professional")
        for user in seats.iter_users(account_id):
            print(user.email)

Every mutating call gets a request id (AIP-155) unless you pass one; UNAVAILABLE and
DEADLINE_EXCEEDED are retried with jittered backoff under that same id, so the effect
happens once (I5). Refusals raise the SeatsError subclass of their reason.

Every RPC method also takes ``timeout=`` (seconds for the whole call, retries included),
``retry=`` (a RetryPolicy; None or ONE_TRY: one attempt) and ``metadata=`` (extra headers);
each left out takes the client's setting (``requests.CallOptions``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any, Unpack

import grpc
from google.protobuf.message import Message

from . import errors, requests
from ._api import Api, Call, Metadata
from ._retry import RetryPolicy
from .v1 import resources_pb2, seat_service_pb2

DEFAULT_TARGET = "127.0.0.1:50051"


class SeatsClient(Api):
    """A client of the seat service over one gRPC channel."""

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        actor: str | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        timeout: float | None = 10.0,
        retry: RetryPolicy | None = None,
        metadata: Metadata = (),
        channel: grpc.Channel | None = None,
        interceptors: Sequence[Any] = (),
    ) -> None:
        """``target`` is host:port; ``actor`` the user id sent as x-seats-actor (None: a trusted
        system call); ``token`` the service token sent as ``authorization: Bearer``;
        ``credentials`` makes a TLS channel (``grpc.ssl_channel_credentials``); ``timeout`` is the
        default deadline of a call in seconds, over all its attempts and the waits between them
        (None: none); ``retry`` the default retry policy (None: ``RetryPolicy()``, 5 attempts);
        ``metadata`` is sent with every call; ``channel`` uses a channel
        you made (and close) yourself; ``interceptors`` wrap the channel."""
        owns_channel = channel is None
        if channel is None:
            channel = (
                grpc.secure_channel(target, credentials) if credentials is not None else grpc.insecure_channel(target)
            )
        self._raw_channel = channel
        self.channel = grpc.intercept_channel(channel, *interceptors) if interceptors else channel
        self._setup(self.channel, owns_channel, actor, timeout, retry, metadata, token)

    # ---- lifecycle ------------------------------------------------------------------------

    def __enter__(self) -> SeatsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the channel, if this client made it."""
        if self._owns_channel:
            self._raw_channel.close()

    # ---- plumbing -------------------------------------------------------------------------

    def _invoke(self, service: str, method: str, request: Message, call: Call) -> Message:
        rpc = getattr(self._stubs[service], method)
        deadline = call.start()
        attempt = 0
        while True:
            attempt += 1
            try:
                return rpc(request, timeout=deadline.left(), metadata=call.metadata)  # type: ignore[no-any-return]
            except grpc.RpcError as err:
                error = errors.from_rpc_error(err)
                pause = call.pause_before_retry(deadline, error, attempt)
                if pause is None:
                    raise error from None
            time.sleep(pause)

    # ---- paging (AIP-158) -----------------------------------------------------------------

    def iter_users(
        self,
        account_id: str,
        *,
        hub: requests.HubLike | None = None,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> Iterator[resources_pb2.User]:
        """Every user of the account (optionally holding a seat of ``hub``), page after
        page; ``options`` are those of each page's call."""
        token = ""
        while True:
            page = self.list_users(account_id, hub=hub, page_size=page_size, page_token=token, **options)
            yield from page.users
            if not (token := page.next_page_token):
                return

    def iter_seat_assignments(
        self,
        account_id: str,
        *,
        hub: requests.HubLike | None = None,
        tier: requests.TierLike | None = None,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> Iterator[resources_pb2.SeatAssignment]:
        """Every seat assignment of the account, optionally of one hub and tier, page
        after page; ``options`` are those of each page's call."""
        token = ""
        while True:
            page = self.list_seat_assignments(
                account_id, hub=hub, tier=tier, page_size=page_size, page_token=token, **options
            )
            yield from page.assignments
            if not (token := page.next_page_token):
                return

    def iter_seat_events(
        self,
        account_id: str,
        *,
        after_sequence: int = 0,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> Iterator[resources_pb2.SeatEvent]:
        """The account's event log after ``after_sequence``, page after page (I4);
        ``options`` are those of each page's call."""
        token = ""
        while True:
            page = self.list_seat_events(
                account_id, after_sequence=after_sequence, page_size=page_size, page_token=token, **options
            )
            yield from page.events
            if not (token := page.next_page_token):
                return

    # ---- streaming ------------------------------------------------------------------------

    def watch_seat_events(
        self, account_id: str, *, after_sequence: int = 0, resume: bool = True, max_reconnects: int | None = None
    ) -> Iterator[resources_pb2.SeatEvent]:
        """Past events after ``after_sequence``, then new ones as they commit, for as long as
        you iterate. When the stream breaks (the server restarts, a replica goes away), it
        reconnects with backoff and resumes after the last event it yielded, so nothing is
        missed or repeated. ``max_reconnects`` bounds consecutive failed reconnects (None:
        no bound); ``resume=False`` raises on the first break instead. A stream the server
        ends at its longest life (WATCH_EXPIRED) is not a break: it is resumed at once, in
        every mode, and counts as no failed reconnect."""
        cursor = after_sequence
        failures = 0
        stub = self._stubs["SeatService"]
        while True:
            request = seat_service_pb2.WatchSeatEventsRequest(account_id=account_id, after_sequence=cursor)
            stream = stub.WatchSeatEvents(request, metadata=self._metadata())
            try:
                for message in stream:
                    failures = 0
                    cursor = message.event.sequence
                    yield message.event
                return
            except grpc.RpcError as err:
                error = errors.from_rpc_error(err)
                if watch_expired(error):
                    failures = 0
                    continue  # the stream lived its full life: watch again from the cursor, now
                code = err.code() if isinstance(err, grpc.Call) else None
                failures += 1
                if not resume or code not in RESUMABLE or (max_reconnects is not None and failures > max_reconnects):
                    raise error from None
            finally:
                stream.cancel()
            time.sleep(self.retry.delay(min(failures, 8)))


RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
WATCH_EXPIRED = "WATCH_EXPIRED"


def watch_expired(error: errors.SeatsError) -> bool:
    """The server ended a healthy watch at its longest life; the same watch from the last
    sequence received carries on."""
    return error.code == grpc.StatusCode.UNAVAILABLE and error.reason == WATCH_EXPIRED
