"""seats.v1.UserService: parse -> domain -> reply."""

from __future__ import annotations

import grpc
from seats.v1 import user_service_pb2 as pb
from seats.v1 import user_service_pb2_grpc as pb_grpc

from ..domain.errors import invalid
from ..domain.model import Permissions, SeatRef
from ..domain.seats import SeatDomain, UserChanges, check_count
from .common import Replay, Replies, call_of, charge_pb, hub_of, req_hub, req_tier, rpc, user_pb

UPDATABLE = {
    "email",
    "display_name",
    "permissions",
    "permissions.super_admin",
    "permissions.edit_billing",
    "permissions.account_access",
}
REPLACE_ALL = "*"  # AIP-134: full replacement of every updatable field
FLAGS = ("super_admin", "edit_billing", "account_access")


def user_changes(request: pb.UpdateUserRequest) -> UserChanges:
    """What an UpdateUser request changes (AIP-134): the fields of its update mask, every updatable
    field for `*`. Without a mask (or with an empty one) only the populated fields of its user: a
    non-empty email or display name, and each permission set to true. A proto3 bool has no
    presence, so a false permission is not populated: only a mask naming it takes it away."""
    user, p = request.user, request.user.permissions
    paths = set(request.update_mask.paths)
    for path in paths:
        if path not in UPDATABLE and path != REPLACE_ALL:
            allowed = ", ".join(sorted(UPDATABLE | {REPLACE_ALL}))
            raise invalid("update_mask", f"{path!r} cannot be updated; allowed: {allowed}")
    if REPLACE_ALL in paths:
        paths = {"email", "display_name", "permissions"}
    elif not paths:
        paths = {name for name, value in (("email", user.email), ("display_name", user.display_name)) if value}
        paths |= {f"permissions.{flag}" for flag in FLAGS if getattr(p, flag)}
    whole = "permissions" in paths
    return UserChanges(
        email=user.email if "email" in paths else None,
        display_name=user.display_name if "display_name" in paths else None,
        super_admin=p.super_admin if whole or "permissions.super_admin" in paths else None,
        edit_billing=p.edit_billing if whole or "permissions.edit_billing" in paths else None,
        account_access=p.account_access if whole or "permissions.account_access" in paths else None,
    )


class UserServicer(pb_grpc.UserServiceServicer):
    def __init__(self, domain: SeatDomain, replay: Replay) -> None:
        self.domain = domain
        self.replay = replay
        self.mpu = domain.prices.minor_per_unit
        self._replies = Replies()

    @rpc
    def CreateUser(self, request: pb.CreateUserRequest, context: grpc.ServicerContext) -> pb.CreateUserResponse:
        call = call_of(context, request.request_id)
        p = request.permissions
        perms = Permissions(p.super_admin, p.edit_billing, p.account_access)
        check_count("seats", len(request.seats), "seats")
        seats = [
            SeatRef(req_hub(s.hub, f"seats[{i}].hub"), req_tier(s.tier, f"seats[{i}].tier"))
            for i, s in enumerate(request.seats)
        ]

        def compute() -> pb.CreateUserResponse:
            user, charges = self.domain.create_user(
                call, request.account_id, request.email, request.display_name, perms, seats, request.purchase_if_needed
            )
            return pb.CreateUserResponse(user=user_pb(user), charges=[charge_pb(c, self.mpu) for c in charges])

        return self.replay.run(call, request.account_id, "CreateUser", request, pb.CreateUserResponse, compute)

    @rpc
    def GetUser(self, request: pb.GetUserRequest, context: grpc.ServicerContext) -> pb.GetUserResponse:
        user = self.domain.get_user(call_of(context), request.account_id, request.user_id)
        return self._replies.get("GetUser", user, lambda: pb.GetUserResponse(user=user_pb(user)))

    @rpc
    def ListUsers(self, request: pb.ListUsersRequest, context: grpc.ServicerContext) -> pb.ListUsersResponse:
        page = self.domain.list_users(
            call_of(context),
            request.account_id,
            hub_of(request.hub, "hub", optional=True),
            request.page_size,
            request.page_token,
        )
        return self._replies.get(
            "ListUsers",
            page,
            lambda: pb.ListUsersResponse(users=[user_pb(u) for u in page.items], next_page_token=page.next_key or ""),
        )

    @rpc
    def UpdateUser(self, request: pb.UpdateUserRequest, context: grpc.ServicerContext) -> pb.UpdateUserResponse:
        call = call_of(context, request.request_id)
        user = request.user
        if not user.account_id:
            raise invalid("user.account_id", "is required")
        changes = user_changes(request)
        etag = request.etag or user.etag

        def compute() -> pb.UpdateUserResponse:
            updated = self.domain.update_user(call, user.account_id, user.user_id, changes, etag)
            return pb.UpdateUserResponse(user=user_pb(updated))

        return self.replay.run(
            call, user.account_id, "UpdateUser", request, pb.UpdateUserResponse, compute, scope_field="user.account_id"
        )

    @rpc
    def DeleteUser(self, request: pb.DeleteUserRequest, context: grpc.ServicerContext) -> pb.DeleteUserResponse:
        call = call_of(context, request.request_id)

        def compute() -> pb.DeleteUserResponse:
            self.domain.delete_user(call, request.account_id, request.user_id, request.etag)
            return pb.DeleteUserResponse()

        return self.replay.run(call, request.account_id, "DeleteUser", request, pb.DeleteUserResponse, compute)
