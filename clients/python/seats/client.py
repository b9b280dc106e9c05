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

Several replicas: the target may name them all, and the client then spreads its calls over
them (gRPC's ``round_robin`` policy) and moves off one that goes away::

    SeatsClient("127.0.0.1:5001,127.0.0.1:5002,127.0.0.1:5003")   # IP addresses, comma-separated
    SeatsClient("[::1]:5001,[::1]:5002")                           # IPv6 ones, in brackets
    SeatsClient("dns:///seats.internal:50051")                     # every address the name has
    SeatsClient("ipv4:10.0.0.1:50051,10.0.0.2:50051")              # any gRPC target URI, as is

A call that meets a replica going away (UNAVAILABLE) is retried, on the next replica, when a
retry cannot do it twice: a read always, a write under its request id (``_retry.safe_to_retry``).
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Unpack

import grpc
from google.protobuf.message import Message

from . import errors, requests
from ._api import Api, Call, Metadata
from ._retry import RetryPolicy, safe_to_retry
from .v1 import resources_pb2, seat_service_pb2

DEFAULT_TARGET = "127.0.0.1:50051"
ROUND_ROBIN = json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})
"""The service config of a channel to several replicas: every call goes to the next ready one.
gRPC's default (pick_first) would send everything to the first address while it lives."""
URI_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:", "xds:", "google-c2p:")
"""The schemes of gRPC's name resolvers: a target starting with one is a URI, passed as is."""
TargetOptions = Sequence[tuple[str, Any]]


@dataclass(frozen=True)
class ChannelTarget:
    """What a target string means to gRPC: the target URI to dial, and whether it names
    several replicas to balance over (round_robin) rather than one server."""

    uri: str
    balanced: bool

    def options(self, extra: TargetOptions = ()) -> list[tuple[str, Any]]:
        """The channel options: ``extra``, and the round_robin service config for a balanced
        target unless ``extra`` sets a service config of its own."""
        options = list(extra)
        if self.balanced and not any(key == "grpc.service_config" for key, _ in options):
            options.append(("grpc.service_config", ROUND_ROBIN))
        return options


def channel_target(target: str) -> ChannelTarget:
    """Reads a target in one of the forms the client and seatctl accept:

    * ``host:port``: one server, as before (a name is resolved by DNS; gRPC's pick_first);
    * ``ip:port,ip:port,...``: several replicas by IP address, all IPv4 (``127.0.0.1:5001``) or
      all IPv6 (``[::1]:5001``); made into gRPC's ``ipv4:``/``ipv6:`` URI and balanced. Host names
      are refused here: gRPC's address lists take IP literals only, and a name with several
      replicas behind it is ``dns:///name:port``;
    * a gRPC target URI (``dns:///seats.internal:50051``, ``ipv4:10.0.0.1:50051,10.0.0.2:50051``,
      ``unix:/run/seats.sock``, ...): passed as is. ``dns:`` targets and ``ipv4:``/``ipv6:``
      lists of more than one address are balanced, since a name may stand for several replicas.

    ValueError names what is wrong with any other string.
    """
    text = target.strip()
    if not text:
        raise ValueError("the target is empty: give host:port, ip:port,ip:port,... or a gRPC target URI")
    lowered = text.lower()
    if lowered.startswith(URI_SCHEMES) or "://" in text:
        scheme, _, rest = lowered.partition(":")
        balanced = scheme == "dns" or (scheme in ("ipv4", "ipv6") and "," in rest)
        return ChannelTarget(text, balanced)
    parts = [part.strip() for part in text.split(",")]
    if len(parts) == 1:
        return ChannelTarget(text, False)
    families = {_ip_family(part, text) for part in parts}
    if len(families) > 1:
        raise ValueError(
            f"target {target!r} mixes IPv4 and IPv6 addresses: a gRPC address list holds one family; "
            "list the replicas by their IPv4 or by their IPv6 addresses, or use a dns:/// name"
        )
    return ChannelTarget(f"{families.pop()}:{','.join(parts)}", True)


def _ip_family(part: str, target: str) -> str:
    """``ipv4`` or ``ipv6`` for one ``ip:port`` of a comma-separated target."""
    host, sep, port = part.rpartition(":")
    if not part or not sep or not host:
        raise ValueError(f"{part!r} in target {target!r} is not ip:port")
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{part!r} in target {target!r}: the port must be 1..65535")
    bracketed = host.startswith("[") and host.endswith("]")
    try:
        address = ipaddress.ip_address(host[1:-1] if bracketed else host)
    except ValueError:
        raise ValueError(
            f"{host!r} in target {target!r} is not an IP address: a list of replicas takes IP addresses; "
            f"for a name, use dns:///{host}:{port} (round robin over every address the name has)"
        ) from None
    if address.version == 6 and not bracketed:
        raise ValueError(f"{part!r} in target {target!r}: write an IPv6 address in brackets, [{host}]:{port}")
    return f"ipv{address.version}"


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
        options: TargetOptions = (),
    ) -> None:
        """``target`` is host:port, or several replicas to balance over: ``ip:port,ip:port``
        or a gRPC target URI such as ``dns:///name:port`` (``channel_target`` has every form);
        ``actor`` the user id sent as x-seats-actor (None: a trusted
        system call); ``token`` the service token sent as ``authorization: Bearer``;
        ``credentials`` makes a TLS channel (``grpc.ssl_channel_credentials``); ``timeout`` is the
        default deadline of a call in seconds, over all its attempts and the waits between them
        (None: none); ``retry`` the default retry policy (None: ``RetryPolicy()``, 5 attempts);
        ``metadata`` is sent with every call; ``channel`` uses a channel
        you made (and close) yourself; ``interceptors`` wrap the channel; ``options`` are more
        gRPC channel options (e.g. ``grpc.ssl_target_name_override`` for TLS to a list of IP
        addresses, whose certificate names no single one of them)."""
        owns_channel = channel is None
        if channel is None:
            where = channel_target(target)
            settings = where.options(options)
            channel = (
                grpc.secure_channel(where.uri, credentials, settings)
                if credentials is not None
                else grpc.insecure_channel(where.uri, settings)
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
        error: errors.SeatsError | None = None
        while True:
            attempt += 1
            try:
                return rpc(request, timeout=deadline.left(), metadata=call.metadata)  # type: ignore[no-any-return]
            except grpc.RpcError as err:
                error = errors.from_rpc_error(err)
                pause = call.pause_before_retry(deadline, error, attempt) if safe_to_retry(request) else None
                if pause is None:
                    raise error from None
            except ValueError:
                # grpc refuses a call on a closed channel: one closed while the last attempt was in
                # flight (that attempt ended CANCELLED "Channel closed!"), whose answer then stands
                if error is None:
                    raise
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

    def iter_invoices(
        self, account_id: str, *, page_size: int = 100, **options: Unpack[requests.CallOptions]
    ) -> Iterator[resources_pb2.Invoice]:
        """Every invoice of the account, oldest first, without lines, page after page."""
        token = ""
        while True:
            page = self.list_invoices(account_id, page_size=page_size, page_token=token, **options)
            yield from page.invoices
            if not (token := page.next_page_token):
                return

    def iter_seat_requests(
        self,
        account_id: str,
        *,
        state: int | str | None = None,
        hub: requests.HubLike | None = None,
        user_id: str = "",
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> Iterator[resources_pb2.SeatRequest]:
        """Every seat request of the account, oldest first, optionally in one state, of one hub or
        of one user (``requests.list_seat_requests``), page after page; ``options`` are those of
        each page's call."""
        token = ""
        while True:
            page = self.list_seat_requests(
                account_id, state=state, hub=hub, user_id=user_id, page_size=page_size, page_token=token, **options
            )
            yield from page.seat_requests
            if not (token := page.next_page_token):
                return

    def iter_seat_assignments(
        self,
        account_id: str,
        *,
        hub: requests.HubLike | None = None,
        tier: requests.TierLike | None = None,
        idle_since: datetime | None = None,
        page_size: int = 100,
        **options: Unpack[requests.CallOptions],
    ) -> Iterator[resources_pb2.SeatAssignment]:
        """Every seat assignment of the account, optionally of one hub and tier and only those
        idle since ``idle_since`` (``requests.list_seat_assignments``), page after page;
        ``options`` are those of each page's call."""
        token = ""
        while True:
            page = self.list_seat_assignments(
                account_id,
                hub=hub,
                tier=tier,
                idle_since=idle_since,
                page_size=page_size,
                page_token=token,
                **options,
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
