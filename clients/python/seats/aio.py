"""The asyncio client (grpc.aio): the same methods as SeatsClient, awaited.

async with AsyncSeatsClient("127.0.0.1:50051", actor=owner_id) as seats:
    await seats.assign_seat(account_id, user_id, "sales", "professional")
    async for event in seats.watch_seat_events(account_id):
        ...

The target takes the forms of SeatsClient's (``seats.client.channel_target``): one host:port,
several replicas as ``ip:port,ip:port`` or a gRPC target URI such as ``dns:///name:port``,
balanced round robin; a call that meets a replica going away is retried on another when the
retry is safe (a read, or a write under its request id).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any, Unpack

import grpc
import grpc.aio
from google.protobuf.message import Message

from . import errors, requests
from ._api import Api, Call, Metadata
from ._retry import RetryPolicy, safe_to_retry
from .client import DEFAULT_TARGET, RESUMABLE, TargetOptions, channel_target, watch_expired
from .v1 import resources_pb2, seat_service_pb2


class AsyncSeatsClient(Api):
    """An asyncio client of the seat service over one grpc.aio channel."""

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
        channel: grpc.aio.Channel | None = None,
        interceptors: Sequence[Any] = (),
        options: TargetOptions = (),
    ) -> None:
        """The arguments of SeatsClient (``target`` one server or several replicas, ``options``
        more channel options); ``interceptors`` are grpc.aio client interceptors."""
        if channel is not None and interceptors:
            raise ValueError("grpc.aio cannot add interceptors to a channel you made: create it with them")
        owns_channel = channel is None
        if channel is None:
            where = channel_target(target)
            settings = where.options(options)
            channel = (
                grpc.aio.secure_channel(where.uri, credentials, settings, interceptors=list(interceptors) or None)
                if credentials is not None
                else grpc.aio.insecure_channel(where.uri, settings, interceptors=list(interceptors) or None)
            )
        self.channel = channel
        self._setup(channel, owns_channel, actor, timeout, retry, metadata, token)

    async def __aenter__(self) -> AsyncSeatsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Closes the channel, if this client made it."""
        if self._owns_channel:
            await self.channel.close(None)

    async def _invoke(self, service: str, method: str, request: Message, call: Call) -> Message:
        rpc = getattr(self._stubs[service], method)
        deadline = call.start()
        attempt = 0
        while True:
            attempt += 1
            try:
                return await rpc(request, timeout=deadline.left(), metadata=call.metadata)  # type: ignore[no-any-return]
            except grpc.aio.AioRpcError as err:
                error = errors.from_rpc_error(err)
                pause = call.pause_before_retry(deadline, error, attempt) if safe_to_retry(request) else None
                if pause is None:
                    raise error from None
            await asyncio.sleep(pause)

    # ---- paging (AIP-158) -----------------------------------------------------------------

    async def iter_users(
        self,
        account_id: str,
        *,
        hub: requests.HubLike | None = None,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> AsyncIterator[resources_pb2.User]:
        """Every user of the account (optionally holding a seat of ``hub``), page after
        page; ``options`` are those of each page's call."""
        token = ""
        while True:
            page = await self.list_users(account_id, hub=hub, page_size=page_size, page_token=token, **options)
            for user in page.users:
                yield user
            if not (token := page.next_page_token):
                return

    async def iter_invoices(
        self, account_id: str, *, page_size: int = 100, **options: Unpack[requests.CallOptions]
    ) -> AsyncIterator[resources_pb2.Invoice]:
        """Every invoice of the account, oldest first, without lines, page after page."""
        token = ""
        while True:
            page = await self.list_invoices(account_id, page_size=page_size, page_token=token, **options)
            for found in page.invoices:
                yield found
            if not (token := page.next_page_token):
                return

    async def iter_seat_requests(
        self,
        account_id: str,
        *,
        state: int | str | None = None,
        hub: requests.HubLike | None = None,
        user_id: str = "",
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> AsyncIterator[resources_pb2.SeatRequest]:
        """Every seat request of the account, oldest first, optionally in one state, of one hub or
        of one user (``requests.list_seat_requests``), page after page; ``options`` are those of
        each page's call."""
        token = ""
        while True:
            page = await self.list_seat_requests(
                account_id, state=state, hub=hub, user_id=user_id, page_size=page_size, page_token=token, **options
            )
            for seat_request in page.seat_requests:
                yield seat_request
            if not (token := page.next_page_token):
                return

    async def iter_seat_assignments(
        self,
        account_id: str,
        *,
        hub: requests.HubLike | None = None,
        tier: requests.TierLike | None = None,
        idle_since: datetime | None = None,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> AsyncIterator[resources_pb2.SeatAssignment]:
        """Every seat assignment of the account, optionally of one hub and tier and only those
        idle since ``idle_since`` (``requests.list_seat_assignments``), page after page;
        ``options`` are those of each page's call."""
        token = ""
        while True:
            page = await self.list_seat_assignments(
                account_id,
                hub=hub,
                tier=tier,
                idle_since=idle_since,
                page_size=page_size,
                page_token=token,
                **options,
            )
            for assignment in page.assignments:
                yield assignment
            if not (token := page.next_page_token):
                return

    async def iter_seat_events(
        self,
        account_id: str,
        *,
        after_sequence: int = 0,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> AsyncIterator[resources_pb2.SeatEvent]:
        """The account's event log after ``after_sequence``, page after page (I4);
        ``options`` are those of each page's call."""
        token = ""
        while True:
            page = await self.list_seat_events(
                account_id, after_sequence=after_sequence, page_size=page_size, page_token=token, **options
            )
            for event in page.events:
                yield event
            if not (token := page.next_page_token):
                return

    async def watch_seat_events(
        self, account_id: str, *, after_sequence: int = 0, resume: bool = True, max_reconnects: int | None = None
    ) -> AsyncIterator[resources_pb2.SeatEvent]:
        """SeatsClient.watch_seat_events for asyncio: follows the log, resuming after the last
        event it yielded when the stream breaks, and at once when the server ends it at its
        longest life (WATCH_EXPIRED)."""
        cursor = after_sequence
        failures = 0
        stub = self._stubs["SeatService"]
        while True:
            request = seat_service_pb2.WatchSeatEventsRequest(account_id=account_id, after_sequence=cursor)
            stream = stub.WatchSeatEvents(request, metadata=self._metadata())
            try:
                async for message in stream:
                    failures = 0
                    cursor = message.event.sequence
                    yield message.event
                return
            except grpc.aio.AioRpcError as err:
                error = errors.from_rpc_error(err)
                if watch_expired(error):
                    failures = 0
                    continue  # the stream lived its full life: watch again from the cursor, now
                failures += 1
                if (
                    not resume
                    or err.code() not in RESUMABLE
                    or (max_reconnects is not None and failures > max_reconnects)
                ):
                    raise error from None
            finally:
                stream.cancel()
            await asyncio.sleep(self.retry.delay(min(failures, 8)))
