"""Opaque page tokens for keyset paging (AIP-158). A token carries the last key seen and a
digest of the filters, so a token cannot be replayed with other filters.

The digest is no secret: anyone can make a token with any key. So a token is bounded in length
before it is decoded, must be exactly a JSON object {"k": key, "f": digest}, and each list
checks that the key has the shape and range of the keys it issues (see `SeatDomain`'s
`_assignment_key`, `_sequence_key`, `_user_key`). Tokens hold no state of a replica: they keep
working across replicas and restarts."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

from .errors import SeatError, invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_TOKEN = 1024
"""Characters of a page token. The longest token a list issues (a key of an id of up to 128
characters, at most 4 bytes each in UTF-8, and a hub) is about 750 characters."""
TOKEN_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")
"""URL-safe base64 without padding: the characters of every token a list issues."""


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _digest(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def encode_token(key: Any, filters: Any) -> str:
    raw = json.dumps({"k": key, "f": _digest(filters)}, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def not_issued() -> SeatError:
    return invalid("page_token", "is not a token this service issued")


def decode_token(token: str, filters: Any) -> Any:
    """The key a token carries, not yet checked for its shape; None for the first page."""
    if not token:
        return None
    if len(token) > MAX_TOKEN or not TOKEN_ALPHABET.fullmatch(token):
        raise not_issued()
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError, OverflowError) as exc:  # binascii and Unicode errors are ValueErrors
        raise not_issued() from exc
    if not (isinstance(data, dict) and data.keys() == {"k", "f"} and isinstance(data["f"], str)):
        raise not_issued()
    if data["k"] is None:
        raise not_issued()
    if data["f"] != _digest(filters):
        raise invalid("page_token", "was issued for other filters")
    return data["k"]
