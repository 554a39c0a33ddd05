"""What the core needs from a store. SQLite and Redis backends implement it and share one contract suite.

The shape is Redis-like on purpose (append-only logs, keys with expiry, set-if-absent) so that every
operation maps onto one atomic Redis command or script.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from bot.models import Event


# A shared store's bus delivers this topic (payload {}) when its connection came back after a loss: what
# was published meanwhile is gone, so whoever pushes live updates must make clients fetch state again.
BUS_RESUMED = "bus_resumed"


class StoreError(RuntimeError):
    """The store cannot be reached or refused an operation; callers answer politely, never crash."""


class ConflictError(StoreError):
    """A versioned write lost a race: somebody saved the record first."""


class Subscription(Protocol):
    def __aiter__(self) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...

    def close(self) -> None:
        """Stop receiving; the iterator is then abandoned."""
        ...


class ConversationStore(Protocol):
    # True when other processes use the same data (Redis): per-conversation locks must then be leases in it.
    shared: bool

    async def append(self, conversation_id: str, events: Sequence[Event], *,
                     remember: tuple[str, str, float] | None = None,
                     release: tuple[str, str] | None = None,
                     jobs: Sequence[dict[str, Any]] = ()) -> list[Event]:
        """Append events in order; return them with their sequence numbers (1, 2, … per conversation).

        In the same atomic write, one round trip: `remember` (key, value, ttl) is set in the cache (a
        message's replies kept for its retries exactly when the message is stored), `release` (key, value)
        is deleted if it still holds value (the conversation's lease, when this is its last write), and
        `jobs` are put as job_put would (the follow-ups a turn starts, stored with the events that log them,
        so whoever reads those events next can cancel them)."""
        ...

    def batch(self) -> AbstractAsyncContextManager[None]:
        """Writes inside may return before they are durable; leaving the block waits until all of them are.
        Nothing outside the process may learn of them (a reply sent, an event published) before then."""
        ...

    async def events(self, conversation_id: str, *, after_seq: int = 0) -> list[Event]:
        """Events of one conversation in order, those with seq > after_seq."""
        ...

    async def conversations(self, *, since: datetime | None = None) -> list[str]:
        """Ids of conversations with activity at or after `since` (all when None), most recent first."""
        ...

    async def cache_get(self, key: str) -> str | None:
        """A live (unexpired) value, or None."""
        ...

    async def cache_set(self, key: str, value: str, ttl_seconds: float) -> None:
        """Set a value that expires after ttl_seconds."""
        ...

    async def cache_add(self, key: str, value: str, ttl_seconds: float) -> bool:
        """Set only if absent or expired; True when this call set it (atomic claim)."""
        ...

    async def cache_delete(self, key: str) -> None: ...

    async def cache_release(self, key: str, value: str) -> bool:
        """Delete the key only while it still holds `value` (atomic): a claim's owner gives it back without
        ever removing one that expired and was taken by somebody else meanwhile."""
        ...

    async def put_ticket(self, ticket: dict[str, Any]) -> None:
        """Insert or replace a service ticket (keyed by ticket["id"])."""
        ...

    async def get_ticket(self, ticket_id: str) -> dict[str, Any] | None: ...

    async def tickets(self, *, conversation_id: str | None = None) -> list[dict[str, Any]]: ...

    # -- handoff queue: members ordered by rank (priority band + arrival time), taken atomically --

    async def queue_put(self, conversation_id: str, rank: float) -> None:
        """Add to the queue, or move an entry already there to `rank`."""
        ...

    async def queue_take(self, conversation_id: str) -> bool:
        """Remove from the queue; True for exactly one caller when several race (the claim)."""
        ...

    async def queue_items(self) -> list[tuple[str, float]]:
        """(conversation_id, rank) pairs, lowest rank (served first) first."""
        ...

    # -- scheduled jobs: records with a due time and a status moved by compare-and-set --

    async def job_put(self, job: dict[str, Any]) -> None:
        """Insert or replace a job: needs "id", "due_at" (epoch seconds), "status", "conversation_id"."""
        ...

    async def job_get(self, job_id: str) -> dict[str, Any] | None: ...

    async def jobs_due(self, until: float, *, limit: int = 100) -> list[dict[str, Any]]:
        """Pending jobs with due_at <= until, earliest first."""
        ...

    async def job_transition(self, job_id: str, from_status: str, to_status: str, **fields: Any) -> bool:
        """Atomically move a job from one status to another (and set fields); False if it was not in
        from_status. This is how exactly one worker claims a job."""
        ...

    async def jobs(self, *, conversation_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Jobs filtered by conversation and/or status, earliest due first."""
        ...

    # -- versioned records (agent accounts, FAQ entries): optimistic concurrency --

    async def record_get(self, kind: str, key: str) -> dict[str, Any] | None: ...

    async def records(self, kind: str) -> list[dict[str, Any]]:
        """All records of a kind, ordered by key."""
        ...

    async def record_put(self, kind: str, key: str, value: dict[str, Any], *, expected_version: int | None = None) -> int:
        """Store value with version = previous + 1 and return it. With expected_version, refuse (raise
        ConflictError) unless the stored version is exactly that (0 = must not exist yet)."""
        ...

    async def record_delete(self, kind: str, key: str) -> None: ...

    # -- event bus: what one worker tells all (KB changed, a message for a socket, queue changed) --

    async def publish(self, topic: str, payload: dict[str, Any]) -> None: ...

    def subscribe(self) -> Subscription:
        """Every (topic, payload) published after the call, from any worker, in publish order per worker."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None:
        """Erase a conversation's events, tickets and jobs (a customer's deletion request, retention)."""
        ...

    async def close(self) -> None: ...
