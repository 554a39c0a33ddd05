"""Agent and admin accounts: argon2 password hashes, login sessions, failed-login throttling.

The only argon2 user. Accounts are versioned store records; sessions are cache keys that expire.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bot.storage.base import ConflictError, ConversationStore
from bot.tokens import new_id, sign, verify

ROLES = ("agent", "admin")
SESSION_SECONDS = 12 * 3600
MAX_FAILURES = 5  # failed logins per account in FAILURE_WINDOW before refusing for the rest of it
FAILURE_WINDOW = 15 * 60
_USERNAME = re.compile(r"^[a-z0-9_.-]{2,32}$")
_HASHER = PasswordHasher()
# Verifying against this when the account does not exist costs the same time as a real check,
# so response times do not tell which usernames exist.
_DUMMY_HASH = _HASHER.hash("not a real password")


class AuthError(ValueError):
    """An account operation was refused; the message says why."""


@dataclass(frozen=True)
class Agent:
    username: str
    display_name: str
    role: str
    disabled: bool = False
    max_concurrent: int = 5
    status: str = "online"

    def public(self) -> dict[str, Any]:
        return {"username": self.username, "display_name": self.display_name, "role": self.role,
                "status": self.status, "max_concurrent": self.max_concurrent}


def _agent(record: dict[str, Any]) -> Agent:
    return Agent(record["username"], record["display_name"], record["role"], record.get("disabled", False),
                 record.get("max_concurrent", 5), record.get("status", "online"))


async def create_agent(store: ConversationStore, username: str, password: str, *, display_name: str = "",
                       role: str = "agent", max_concurrent: int = 5) -> Agent:
    if not _USERNAME.match(username):
        raise AuthError("username: 2-32 lower-case letters, digits, '_', '.' or '-'")
    if role not in ROLES:
        raise AuthError(f"role: one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise AuthError("password: at least 8 characters")
    if not 1 <= max_concurrent <= 100:
        raise AuthError("max_concurrent: between 1 and 100")
    record = {"username": username, "display_name": display_name or username, "role": role,
              "password_hash": _HASHER.hash(password), "disabled": False, "max_concurrent": max_concurrent,
              "status": "online"}
    try:
        await store.record_put("agent", username, record, expected_version=0)
    except ConflictError as exc:
        raise AuthError(f"agent {username!r} exists already") from exc
    return _agent(record)


async def get_agent(store: ConversationStore, username: str) -> Agent | None:
    record = await store.record_get("agent", username)
    return _agent(record) if record else None


async def list_agents(store: ConversationStore) -> list[Agent]:
    return [_agent(r) for r in await store.records("agent")]


async def update_agent(store: ConversationStore, username: str, **fields: Any) -> Agent:
    record = await store.record_get("agent", username)
    if record is None:
        raise AuthError(f"no agent {username!r}")
    version = record.pop("version")
    record.update(fields)
    await store.record_put("agent", username, record, expected_version=version)
    return _agent(record)


async def login(store: ConversationStore, secret: str, username: str, password: str) -> tuple[Agent, str]:
    """Check the password; return the agent and a signed session token. Raises AuthError."""
    fail_key = f"login-failures:{username}"
    failures = int(await store.cache_get(fail_key) or 0)
    if failures >= MAX_FAILURES:
        raise AuthError("too_many_attempts")
    record = await store.record_get("agent", username) if _USERNAME.match(username) else None
    try:
        _HASHER.verify(record["password_hash"] if record else _DUMMY_HASH, password)
        ok = record is not None and not record.get("disabled", False)
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or record is None:
        await store.cache_set(fail_key, str(failures + 1), FAILURE_WINDOW)
        raise AuthError("invalid_credentials")
    await store.cache_delete(fail_key)
    session = new_id("s_")
    await store.cache_set(f"session:{session}", username, SESSION_SECONDS)
    return _agent(record), sign(secret, session)


async def session_agent(store: ConversationStore, secret: str, token: str | None) -> Agent | None:
    """The logged-in, enabled agent behind a session cookie, or None."""
    session = verify(secret, token)
    if session is None:
        return None
    username = await store.cache_get(f"session:{session}")
    if username is None:
        return None
    agent = await get_agent(store, username)
    return agent if agent and not agent.disabled else None


async def logout(store: ConversationStore, secret: str, token: str | None) -> None:
    session = verify(secret, token)
    if session is not None:
        await store.cache_delete(f"session:{session}")
