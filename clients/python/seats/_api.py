"""The RPCs of seats.v1 declared once, for the sync and the asyncio client alike: each is a
descriptor that builds the request with the function of the same name in ``requests``
(which documents its keyword arguments) and hands it to the client's ``_invoke`` with the
call's options (``requests.CallOptions``: timeout, retry, metadata)."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, Self, TypeVar, cast, overload

from google.protobuf.message import Message

from . import requests
from ._retry import ONE_TRY, Deadline, RetryPolicy, check_timeout
from .errors import SeatsError
from .v1 import seat_service_pb2, seat_service_pb2_grpc, user_service_pb2, user_service_pb2_grpc

if TYPE_CHECKING:
    from .aio import AsyncSeatsClient
    from .client import SeatsClient

ACTOR_HEADER = "x-seats-actor"
AUTHORIZATION = "authorization"
Metadata = Sequence[tuple[str, str]]
P = ParamSpec("P")
Resp = TypeVar("Resp", bound=Message)


class Call:
    """One call's settings: its timeout over all attempts, its retry policy and its headers."""

    def __init__(self, timeout: float | None, retry: RetryPolicy, metadata: Metadata) -> None:
        self.timeout, self.retry, self.metadata = check_timeout(timeout), retry, metadata

    def start(self) -> Deadline:
        """The call's deadline, from now: when the first attempt starts (an asyncio call's
        deadline runs from when it is awaited)."""
        return Deadline(self.timeout)

    def pause_before_retry(self, deadline: Deadline, error: SeatsError, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None: raise ``error``."""
        return deadline.pause_before_retry(self.retry, error, attempt)


def merge_metadata(base: Metadata, extra: Metadata) -> Metadata:
    """``base`` without the keys ``extra`` gives, then ``extra``: a call's header replaces the
    client's header of the same key. Keys are lowercase on the wire."""
    extra = tuple((key.lower(), value) for key, value in extra)
    replaced = {key for key, _ in extra}
    return (*((key, value) for key, value in base if key.lower() not in replaced), *extra)


def new_request_id() -> str:
    """A fresh idempotency key (AIP-155)."""
    return uuid.uuid4().hex


class Rpc(Generic[P, Resp]):
    """One unary RPC as a client method: ``client.assign_seat(...)`` returns the response,
    ``await aclient.assign_seat(...)`` too. Mutating calls get a request id unless given."""

    def __init__(
        self, service: str, method: str, build: Callable[P, Message], response: type[Resp], *, mutating: bool = False
    ) -> None:
        self.service, self.method, self.build, self.response, self.mutating = service, method, build, response, mutating
        signature = inspect.signature(build)
        self.__doc__ = build.__doc__
        self.__signature__ = signature.replace(return_annotation=response.__name__)

    def request(self, *args: P.args, **kwargs: P.kwargs) -> Message:
        """The request message, without the call options ``kwargs`` may hold."""
        request = self.build(*args, **{k: v for k, v in kwargs.items() if k not in requests.CALL_OPTIONS})  # type: ignore[arg-type]
        if self.mutating and not getattr(request, "request_id", ""):
            request.MergeFrom(type(request)(request_id=new_request_id()))
        return request

    @overload
    def __get__(self, obj: None, owner: type) -> Rpc[P, Resp]: ...
    @overload
    def __get__(self, obj: SeatsClient, owner: type) -> Callable[P, Resp]: ...
    @overload
    def __get__(self, obj: AsyncSeatsClient, owner: type) -> Callable[P, Awaitable[Resp]]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self

        def call(*args: P.args, **kwargs: P.kwargs) -> Any:
            settings = obj._call(cast(requests.CallOptions, kwargs))  # before the request: a bad timeout fails first
            return obj._invoke(self.service, self.method, self.request(*args, **kwargs), settings)

        call.__name__ = call.__qualname__ = self.build.__name__
        call.__doc__ = self.__doc__
        call.__signature__ = self.__signature__  # type: ignore[attr-defined]
        return call


class Api:
    """Every unary RPC of SeatService and UserService, and the state both clients share."""

    actor: str | None
    timeout: float | None
    retry: RetryPolicy
    extra_metadata: tuple[tuple[str, str], ...]
    _owns_channel: bool
    _stubs: dict[str, Any]

    def _setup(
        self,
        channel: Any,
        owns_channel: bool,
        actor: str | None,
        timeout: float | None,
        retry: RetryPolicy | None,
        metadata: Metadata,
        token: str | None,
    ) -> None:
        self._owns_channel = owns_channel
        self.actor = actor
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.extra_metadata = tuple(metadata)
        if token:
            self.extra_metadata += ((AUTHORIZATION, f"Bearer {token}"),)
        self._stubs = {
            "SeatService": seat_service_pb2_grpc.SeatServiceStub(channel),
            "UserService": user_service_pb2_grpc.UserServiceStub(channel),
        }

    def with_actor(self, actor: str | None) -> Self:
        """The same client acting as another user (None: a system call), on the same channel."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.actor = actor
        clone._owns_channel = False
        return clone

    def _metadata(self) -> Metadata:
        if self.actor is None:
            return self.extra_metadata
        return (*self.extra_metadata, (ACTOR_HEADER, self.actor))

    def _call(self, options: requests.CallOptions) -> Call:
        """The settings of one call: its options, and the client's for those it leaves out."""
        timeout = options.get("timeout", self.timeout)
        retry = options.get("retry", self.retry)
        metadata = self._metadata()
        if "metadata" in options:
            metadata = merge_metadata(metadata, options["metadata"])
        return Call(timeout, retry or ONE_TRY, metadata)

    # ---- SeatService ----------------------------------------------------------------------

    create_account = Rpc(
        "SeatService", "CreateAccount", requests.create_account, seat_service_pb2.CreateAccountResponse, mutating=True
    )
    get_account = Rpc("SeatService", "GetAccount", requests.get_account, seat_service_pb2.GetAccountResponse)
    get_seat_summary = Rpc(
        "SeatService", "GetSeatSummary", requests.get_seat_summary, seat_service_pb2.GetSeatSummaryResponse
    )
    purchase_seats = Rpc(
        "SeatService", "PurchaseSeats", requests.purchase_seats, seat_service_pb2.PurchaseSeatsResponse, mutating=True
    )
    schedule_seat_removal = Rpc(
        "SeatService",
        "ScheduleSeatRemoval",
        requests.schedule_seat_removal,
        seat_service_pb2.ScheduleSeatRemovalResponse,
        mutating=True,
    )
    cancel_seat_removal = Rpc(
        "SeatService",
        "CancelSeatRemoval",
        requests.cancel_seat_removal,
        seat_service_pb2.CancelSeatRemovalResponse,
        mutating=True,
    )
    assign_seat = Rpc(
        "SeatService", "AssignSeat", requests.assign_seat, seat_service_pb2.AssignSeatResponse, mutating=True
    )
    unassign_seat = Rpc(
        "SeatService", "UnassignSeat", requests.unassign_seat, seat_service_pb2.UnassignSeatResponse, mutating=True
    )
    batch_update_seat_assignments = Rpc(
        "SeatService",
        "BatchUpdateSeatAssignments",
        requests.batch_update_seat_assignments,
        seat_service_pb2.BatchUpdateSeatAssignmentsResponse,
        mutating=True,
    )
    list_seat_assignments = Rpc(
        "SeatService",
        "ListSeatAssignments",
        requests.list_seat_assignments,
        seat_service_pb2.ListSeatAssignmentsResponse,
    )
    check_seats = Rpc("SeatService", "CheckSeats", requests.check_seats, seat_service_pb2.CheckSeatsResponse)
    upgrade_subscription = Rpc(
        "SeatService",
        "UpgradeSubscription",
        requests.upgrade_subscription,
        seat_service_pb2.UpgradeSubscriptionResponse,
        mutating=True,
    )
    preview_invoice = Rpc(
        "SeatService", "PreviewInvoice", requests.preview_invoice, seat_service_pb2.PreviewInvoiceResponse
    )
    list_invoices = Rpc("SeatService", "ListInvoices", requests.list_invoices, seat_service_pb2.ListInvoicesResponse)
    get_invoice = Rpc("SeatService", "GetInvoice", requests.get_invoice, seat_service_pb2.GetInvoiceResponse)
    list_seat_events = Rpc(
        "SeatService", "ListSeatEvents", requests.list_seat_events, seat_service_pb2.ListSeatEventsResponse
    )
    # Not ``mutating``: RecordSeatActivity has no request id, and needs none (_retry.IDEMPOTENT_WRITES).
    record_seat_activity = Rpc(
        "SeatService",
        "RecordSeatActivity",
        requests.record_seat_activity,
        seat_service_pb2.RecordSeatActivityResponse,
    )
    update_seat_policy = Rpc(
        "SeatService",
        "UpdateSeatPolicy",
        requests.update_seat_policy,
        seat_service_pb2.UpdateSeatPolicyResponse,
        mutating=True,
    )
    request_seat = Rpc(
        "SeatService", "RequestSeat", requests.request_seat, seat_service_pb2.RequestSeatResponse, mutating=True
    )
    list_seat_requests = Rpc(
        "SeatService", "ListSeatRequests", requests.list_seat_requests, seat_service_pb2.ListSeatRequestsResponse
    )
    approve_seat_request = Rpc(
        "SeatService",
        "ApproveSeatRequest",
        requests.approve_seat_request,
        seat_service_pb2.ApproveSeatRequestResponse,
        mutating=True,
    )
    deny_seat_request = Rpc(
        "SeatService",
        "DenySeatRequest",
        requests.deny_seat_request,
        seat_service_pb2.DenySeatRequestResponse,
        mutating=True,
    )

    # ---- UserService ----------------------------------------------------------------------

    create_user = Rpc(
        "UserService", "CreateUser", requests.create_user, user_service_pb2.CreateUserResponse, mutating=True
    )
    get_user = Rpc("UserService", "GetUser", requests.get_user, user_service_pb2.GetUserResponse)
    list_users = Rpc("UserService", "ListUsers", requests.list_users, user_service_pb2.ListUsersResponse)
    update_user = Rpc(
        "UserService", "UpdateUser", requests.update_user, user_service_pb2.UpdateUserResponse, mutating=True
    )
    delete_user = Rpc(
        "UserService", "DeleteUser", requests.delete_user, user_service_pb2.DeleteUserResponse, mutating=True
    )
