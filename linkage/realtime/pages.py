"""Opaque page tokens for the paginated listings (AIP-158 style).

A token names the listing it belongs to, a fingerprint of the request's other fields
and where the next page starts. It is URL-safe base64 of a small JSON object: opaque to
callers (they must not build or edit one), checked on the way back in, so a token of
another listing, of the same listing with other fields, or altered, is refused with
INVALID_ARGUMENT on ``page_token`` instead of silently answering the wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Any

from linkage.errors import InvalidRequest

DEFAULT_PAGE_SIZE = 100


def _fingerprint(query: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:16]


def encode(listing: str, query: dict[str, Any], after: Any) -> str:
    """The token of the page that starts after ``after``."""
    body = json.dumps({"l": listing, "q": _fingerprint(query), "a": after},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode(token: str, listing: str, query: dict[str, Any]) -> Any:
    """Where the page of ``token`` starts, or :class:`InvalidRequest` on ``page_token``."""
    try:
        body = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ok = isinstance(body, dict) and body.get("l") == listing
    except (binascii.Error, ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise InvalidRequest([("page_token", "not a page token of this listing (send back "
                                             "next_page_token unchanged)")])
    if body.get("q") != _fingerprint(query):
        raise InvalidRequest([("page_token", "the request's other fields changed since "
                                             "this token was issued")])
    return body.get("a")


def page_size(requested: int, maximum: int) -> int:
    """The page size served: 0 is the default, above ``maximum`` is ``maximum``."""
    if requested < 0:
        raise InvalidRequest([("page_size", "must not be negative")])
    return min(requested or DEFAULT_PAGE_SIZE, maximum)


__all__ = ["DEFAULT_PAGE_SIZE", "decode", "encode", "page_size"]
