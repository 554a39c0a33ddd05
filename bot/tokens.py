"""Signed, unguessable tokens (web-chat visitors, console sessions): value + HMAC-SHA256 tag."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_id(prefix: str) -> str:
    """A random id with 128 bits of entropy."""
    return f"{prefix}{secrets.token_urlsafe(16)}"


def sign(secret: str, value: str) -> str:
    return f"{value}.{_tag(secret, value)}"


def verify(secret: str, token: object) -> str | None:
    """The signed value, or None for anything forged, truncated or not a string."""
    if not isinstance(token, str) or len(token) > 256 or "." not in token:
        return None
    value, _, tag = token.rpartition(".")
    if not value or not hmac.compare_digest(tag, _tag(secret, value)):
        return None
    return value


def _tag(secret: str, value: str) -> str:
    digest = hmac.new(secret.encode(), value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
