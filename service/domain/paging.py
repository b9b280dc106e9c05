"""Opaque page tokens for keyset paging (AIP-158). A token carries the last key seen and a
digest of the filters, so a token cannot be replayed with other filters."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from .errors import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def _digest(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def encode_token(key: Any, filters: Any) -> str:
    raw = json.dumps({"k": key, "f": _digest(filters)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, filters: Any) -> Any:
    """The key a token carries; None for the first page."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key, digest = data["k"], data["f"]
    except (ValueError, KeyError, TypeError) as exc:
        raise invalid("page_token", "is not a token this service issued") from exc
    if digest != _digest(filters):
        raise invalid("page_token", "was issued for other filters")
    return key
