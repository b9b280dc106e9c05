"""Service authentication: bearer tokens in the `authorization` metadata, checked by a
server interceptor on every RPC but health, against configured SHA-256 hashes.

A token's scope says what its holder may do: `system` may call without an acting user (the
provisioning path, e.g. CreateAccount); `actor` must name an acting user on every call of
the seat and user services (x-seats-actor), whose permissions then decide.

The tokens file is JSON:

    {"tokens": [{"name": "provisioning", "scope": "system", "sha256": "<hex of the token>"},
                {"name": "support-desk", "scope": "actor", "sha256": "<hex>"},
                {"name": "acme-portal", "scope": "actor", "sha256": "<hex>", "accounts": ["acc_1"]}]}

A token with `accounts` acts only on those accounts: a call that names another account, or
none (CreateAccount), is PERMISSION_DENIED `TOKEN_NOT_FOR_ACCOUNT`.

`python -m service.server new-token --name NAME --scope system` makes a token and prints
the entry to add. Tokens are random (256 bits), so a plain SHA-256 is the right hash: there
is nothing to guess that a slow hash would protect.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from .admission import refusal_handler
from .domain.errors import ErrorReason, Kind, SeatError, reason
from .errors import DOMAIN

if TYPE_CHECKING:
    from .observe import Metrics

AUTHORIZATION = "authorization"
ACTOR_HEADER = "x-seats-actor"
SCOPES = ("system", "actor")
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
REFLECTION_PREFIX = "/grpc.reflection."
ACTOR_FREE_PREFIXES = (REFLECTION_PREFIX,)  # exploring the contract names no account


@dataclass(frozen=True)
class Token:
    name: str
    scope: str
    sha256: str
    accounts: frozenset[str] | None = None  # None: every account


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "seats_" + secrets.token_urlsafe(32)


def load_tokens(path: str | Path) -> list[Token]:
    data = json.loads(Path(path).read_text())
    tokens = []
    for i, entry in enumerate(data.get("tokens", [])):
        scope = entry.get("scope", "")
        digest = str(entry.get("sha256", "")).lower()
        if scope not in SCOPES:
            raise ValueError(f"{path}: tokens[{i}].scope must be one of {', '.join(SCOPES)}")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"{path}: tokens[{i}].sha256 must be 64 hex digits")
        accounts = entry.get("accounts")
        if accounts is not None and (
            not isinstance(accounts, list) or not accounts or not all(isinstance(a, str) and a for a in accounts)
        ):
            raise ValueError(f"{path}: tokens[{i}].accounts must be a non-empty list of account ids")
        tokens.append(
            Token(
                str(entry.get("name", f"token-{i}")),
                scope,
                digest,
                frozenset(accounts) if accounts is not None else None,
            )
        )
    if not tokens:
        raise ValueError(f"{path}: no tokens")
    return tokens


def is_loopback(address: str) -> bool:
    """Whether host:port listens on loopback only (127.0.0.0/8, ::1, localhost)."""
    host = address.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(code: int, why: ErrorReason.ValueType, message: str) -> grpc.Status:
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason(why), domain=DOMAIN))
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=[info]))


if TYPE_CHECKING:
    _ServerInterceptor = grpc.ServerInterceptor[Any, Any]
else:
    _ServerInterceptor = grpc.ServerInterceptor


class AuthInterceptor(_ServerInterceptor):
    """Refuses calls without a known bearer token (UNAUTHENTICATED), and calls of an
    actor-scoped token that name no acting user (PERMISSION_DENIED, ACTOR_REQUIRED). It runs on
    the server's event loop when a call's headers arrive; a refusal is sent from there, before
    any request byte is read (see admission.py). The accepted token is kept in the call's
    context (`CURRENT_TOKEN`) for the account check after the request is parsed."""

    def __init__(self, tokens: list[Token], metrics: Metrics | None = None, *, public_reflection: bool = False) -> None:
        self._tokens = tokens
        self._metrics = metrics
        # --public-reflection: reflection, like health, needs no token
        self._open = (*OPEN_PREFIXES, REFLECTION_PREFIX) if public_reflection else OPEN_PREFIXES

    def _token(self, presented: str) -> Token | None:
        digest = hash_token(presented)
        found = None
        for token in self._tokens:  # compare with every one, in constant time
            if hmac.compare_digest(token.sha256, digest):
                found = token
        return found

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        method = details.method
        if method.startswith(self._open):
            return continuation(details)
        authorization = actor = None
        for key, value in details.invocation_metadata or ():
            if key == AUTHORIZATION:
                authorization = value if isinstance(value, str) else value.decode()
            elif key == ACTOR_HEADER:
                actor = value
        if authorization is None or not authorization.startswith("Bearer "):
            return self._refuse(
                method,
                continuation(details),
                _refusal(
                    code_pb2.UNAUTHENTICATED,
                    ErrorReason.TOKEN_MISSING,
                    "send a service token as 'authorization: Bearer <token>'",
                ),
            )
        token = self._token(authorization[len("Bearer ") :].strip())
        if token is None:
            return self._refuse(
                method,
                continuation(details),
                _refusal(code_pb2.UNAUTHENTICATED, ErrorReason.TOKEN_INVALID, "the service token is not known here"),
            )
        if token.scope == "actor" and not actor and not method.startswith(ACTOR_FREE_PREFIXES):
            return self._refuse(
                method,
                continuation(details),
                _refusal(
                    code_pb2.PERMISSION_DENIED,
                    ErrorReason.ACTOR_REQUIRED,
                    f"token {token.name!r} acts for users: name one in {ACTOR_HEADER}",
                ),
            )
        if token.accounts is not None:
            CURRENT_TOKEN.set(token)
        return continuation(details)

    def _refuse(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any] | None, status: grpc.Status
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED
            return None
        metrics = self._metrics
        if metrics is None:
            return refusal_handler(handler, status, _nothing)
        kind = "unary" if handler.unary_unary else "server_stream" if handler.unary_stream else "stream"
        return refusal_handler(handler, status, lambda: metrics.refused(method, kind, status.code))


def _nothing() -> None:
    pass


# The token of the current call when it is limited to accounts; set by AuthInterceptor in the
# call's context, which grpcio carries from the event loop to the worker that runs the call.
CURRENT_TOKEN: ContextVar[Token | None] = ContextVar("seats_token", default=None)


def check_token_account(request: Any) -> None:
    """Refuses a call of an account-limited token unless the request names one of its accounts
    (PERMISSION_DENIED TOKEN_NOT_FOR_ACCOUNT); a request that names no account (CreateAccount)
    is refused too. Free for unlimited tokens."""
    token = CURRENT_TOKEN.get()
    if token is None or token.accounts is None:
        return
    account_id = getattr(request, "account_id", None)
    if isinstance(account_id, str) and account_id in token.accounts:
        return
    raise SeatError(
        Kind.PERMISSION_DENIED,
        reason(ErrorReason.TOKEN_NOT_FOR_ACCOUNT),
        f"token {token.name!r} is limited to accounts that do not include this one"
        if isinstance(account_id, str)
        else f"token {token.name!r} is limited to named accounts and this call names none",
        {"token": token.name},
    )
