"""The embedded default store: one SQLite file in the data dir (WAL), nothing to install.

Calls are synchronous on the event loop thread: with WAL and synchronous=NORMAL each statement takes
microseconds and never waits on fsync, which is cheaper than handing every call to a thread. The one step
that does fsync, copying the WAL back into the database (a checkpoint), runs on a thread of its own: left
to SQLite it stalls whichever commit crosses 1000 pages, about every 70 messages for 5 ms. Only the last
few frames before the WAL starts over are copied on the loop (see _start_wal_over).

Writes are committed in groups: the first write opens a transaction that a callback commits, so concurrent
conversations share one commit (a commit costs three times a statement). A write returns once its group is
committed, as a lone write would; inside `batch()` (one message's turn) the writes return at once and the
end of the batch waits for them, so one message costs one wait. A group is committed at the end of the
loop turn that opened it, unless the last group was shared by several turns: under load, a group stays
open COMMIT_WAIT_SECONDS for the turns a loop turn or two behind (5 messages a commit became 11, for ~10%
more webhook throughput); when quiet, a reply waits for it once at most (the first after a busy group).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import jsoncodec
from bot.clock import Clock
from bot.models import Event
from bot.storage.base import ConflictError, StoreError
from bot.storage.bus import LocalBus, Subscription

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    conversation_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    at TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS conversations_by_time ON conversations(last_at);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tickets_by_conversation ON tickets(conversation_id);
CREATE TABLE IF NOT EXISTS queue (
    conversation_id TEXT PRIMARY KEY,
    rank REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL,
    status TEXT NOT NULL,
    due_at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs(status, due_at);
CREATE INDEX IF NOT EXISTS jobs_by_conversation ON jobs(conversation_id);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
"""


_JOB_PUT = "INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?)"

CHECKPOINT_SECONDS = 1.0
COMMIT_WAIT_SECONDS = 0.002  # how long a group stays open under load for turns still on their way
WAL_RESTART_BYTES = 32 * 1024 * 1024


def _job_row(job: dict[str, Any]) -> tuple[Any, ...]:
    return job["id"], job["conversation_id"], job["status"], float(job["due_at"]), jsoncodec.dumps(job)


def _fail(group: asyncio.Future[None], why: str) -> None:
    group.set_exception(StoreError(why))
    group.exception()  # marks it seen: a group whose waiters were all cancelled must not warn at exit


@dataclass
class _Batch:
    task: asyncio.Task[Any] | None
    groups: set[asyncio.Future[None]]


class SqliteStore:
    """ConversationStore on SQLite; `path` may be ":memory:" for fast tests."""

    shared = False

    def __init__(self, path: str | Path, clock: Clock) -> None:
        self._clock = clock
        self._bus = LocalBus()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {path}: {exc}") from exc
        self._group: asyncio.Future[None] | None = None
        self._group_turns = 0  # turns (batches) whose writes are in the open group
        self._busy = False  # the last group was shared by several turns
        self._batch: ContextVar[_Batch | None] = ContextVar(f"sqlite-batch-{id(self)}", default=None)
        self._stop = threading.Event()
        self._restart = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if str(path) != ":memory:":
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_RESTART_BYTES}")
            self._checkpointer = threading.Thread(target=self._checkpoint_loop, args=(str(path),),
                                                  name="sqlite-checkpoint", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self, path: str) -> None:
        """Fold the WAL into the database every second (a no-op when nothing was written), off the loop."""
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        wal = Path(f"{path}-wal")
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(CHECKPOINT_SECONDS):
                if self._restart.is_set():
                    continue  # the loop starts the WAL over before its next write: a checkpoint here would block it
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error:
                    pass  # busy or closing: the next round (or the one at close) folds it in
                if wal.exists() and wal.stat().st_size > WAL_RESTART_BYTES:
                    self._restart.set()
        finally:
            db.close()

    def _start_wal_over(self) -> None:
        """Under steady writes a passive checkpoint never finds the WAL wholly copied when a write begins,
        which is the only time SQLite starts it over: it grew by ~50 KB a message without bound, and every
        read searched a longer WAL index. A RESTART checkpoint between two write groups copies the few frames
        the thread has not (and syncs: a millisecond or two, once per WAL_RESTART_BYTES written), so the next
        write starts the WAL over, cut back to that size."""
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
        except sqlite3.Error:
            busy = 1
        if not busy:  # else tried again before the next write group
            self._restart.clear()

    def _now(self) -> float:
        return self._clock.now().timestamp()

    def _write(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run a write in this loop turn's group, opening it (and scheduling its commit) when needed."""
        if self._group is not None and not self._db.in_transaction:
            # SQLite rolled the group back after an error (disk full, I/O): its writes are lost, and said so.
            _fail(self._group, "the write group was rolled back")
            self._group = None
        if self._group is None:
            loop = asyncio.get_running_loop()
            if self._restart.is_set():
                self._start_wal_over()
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot start a write: {exc}") from exc
            self._group = loop.create_future()
            self._group_turns = 0
            if self._busy:
                loop.call_later(COMMIT_WAIT_SECONDS, self._commit)
            else:
                loop.call_soon(self._commit)
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise StoreError(f"write failed: {exc}") from exc

    def _commit(self) -> None:
        group, self._group = self._group, None
        if group is None:  # close() committed it already, or it was rolled back
            return
        self._busy = self._group_turns > 1
        try:
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:  # the disk is full or gone: every write of the group is lost, and said so
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            _fail(group, f"commit failed: {exc}")
        else:
            group.set_result(None)

    async def _execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """One write, returned once committed (inside batch(), at once)."""
        cursor = self._write(sql, args)
        await self._committed()
        return cursor

    async def _committed(self) -> None:
        """Return once this loop turn's writes are on disk, or leave that to the enclosing batch()."""
        group = self._group
        if group is None:
            return
        batch = self._batch.get()
        # Only the batch's own task defers: tasks and timers started inside inherit the context, not the batch.
        if batch is not None and batch.task is asyncio.current_task():
            if group not in batch.groups:
                batch.groups.add(group)
                self._group_turns += 1
        else:
            await asyncio.shield(group)

    @asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Writes inside return without waiting; leaving waits until all of them are committed."""
        batch = _Batch(asyncio.current_task(), set())
        token = self._batch.set(batch)
        try:
            yield
        finally:
            self._batch.reset(token)
        for group in batch.groups:
            await asyncio.shield(group)

    async def append(self, conversation_id: str, events: Sequence[Event], *,
                     remember: tuple[str, str, float] | None = None,
                     release: tuple[str, str] | None = None,
                     jobs: Sequence[dict[str, Any]] = ()) -> list[Event]:
        if not events:
            return []
        self._write("SAVEPOINT append")
        try:
            row = self._db.execute(
                "SELECT last_seq FROM conversations WHERE id = ?", (conversation_id,)
            ).fetchone()
            seq = row[0] if row else 0
            stored = []
            for event in events:
                seq += 1
                stored.append(
                    Event(conversation_id, event.type, event.at, dict(event.data), seq)
                )
                self._db.execute(
                    "INSERT INTO events VALUES (?, ?, ?, ?, ?)",
                    (conversation_id, seq, event.type, event.at.isoformat(),
                     jsoncodec.dumps(event.data)),
                )
            self._db.execute(
                "INSERT INTO conversations VALUES (?, ?, ?) ON CONFLICT(id) DO UPDATE "
                "SET last_seq = excluded.last_seq, last_at = excluded.last_at",
                (conversation_id, seq, events[-1].at.timestamp()),
            )
            if remember is not None:
                key, value, ttl = remember
                self._db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (key, value, self._now() + ttl))
            if release is not None:
                self._db.execute("DELETE FROM cache WHERE key = ? AND value = ?", release)
            for job in jobs:
                self._db.execute(_JOB_PUT, _job_row(job))
            self._db.execute("RELEASE append")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK TO append")
                self._db.execute("RELEASE append")
            raise StoreError(f"append failed: {exc}") from exc
        await self._committed()
        return stored

    async def events(self, conversation_id: str, *, after_seq: int = 0) -> list[Event]:
        rows = self._db.execute(
            "SELECT seq, type, at, data FROM events WHERE conversation_id = ? AND seq > ? ORDER BY seq",
            (conversation_id, after_seq),
        ).fetchall()
        return [
            Event(conversation_id, type_, datetime.fromisoformat(at), jsoncodec.loads(data), seq)
            for seq, type_, at, data in rows
        ]

    async def conversations(self, *, since: datetime | None = None) -> list[str]:
        low = since.timestamp() if since else float("-inf")
        rows = self._db.execute(
            "SELECT id FROM conversations WHERE last_at >= ? ORDER BY last_at DESC, id", (low,)
        ).fetchall()
        return [r[0] for r in rows]

    async def cache_get(self, key: str) -> str | None:
        row = self._db.execute(
            "SELECT value FROM cache WHERE key = ? AND expires_at > ?", (key, self._now())
        ).fetchone()
        return row[0] if row else None

    async def cache_set(self, key: str, value: str, ttl_seconds: float) -> None:
        await self._execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?)", (key, value, self._now() + ttl_seconds))

    async def cache_add(self, key: str, value: str, ttl_seconds: float) -> bool:
        now = self._now()
        cur = await self._execute(
            "INSERT INTO cache VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
            "SET value = excluded.value, expires_at = excluded.expires_at WHERE cache.expires_at <= ?",
            (key, value, now + ttl_seconds, now),
        )
        return cur.rowcount == 1

    async def cache_delete(self, key: str) -> None:
        await self._execute("DELETE FROM cache WHERE key = ?", (key,))

    async def cache_release(self, key: str, value: str) -> bool:
        return (await self._execute("DELETE FROM cache WHERE key = ? AND value = ?", (key, value))).rowcount > 0

    async def put_ticket(self, ticket: dict[str, Any]) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO tickets VALUES (?, ?, ?)",
            (ticket["id"], ticket.get("conversation_id", ""), jsoncodec.dumps(ticket)),
        )

    async def get_ticket(self, ticket_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
        return jsoncodec.loads(row[0]) if row else None

    async def tickets(self, *, conversation_id: str | None = None) -> list[dict[str, Any]]:
        if conversation_id is None:
            rows = self._db.execute("SELECT data FROM tickets ORDER BY rowid").fetchall()
        else:
            rows = self._db.execute(
                "SELECT data FROM tickets WHERE conversation_id = ? ORDER BY rowid", (conversation_id,)
            ).fetchall()
        return [jsoncodec.loads(r[0]) for r in rows]

    async def queue_put(self, conversation_id: str, rank: float) -> None:
        await self._execute("INSERT OR REPLACE INTO queue VALUES (?, ?)", (conversation_id, rank))

    async def queue_take(self, conversation_id: str) -> bool:
        return (await self._execute("DELETE FROM queue WHERE conversation_id = ?", (conversation_id,))).rowcount == 1

    async def queue_items(self) -> list[tuple[str, float]]:
        rows = self._db.execute("SELECT conversation_id, rank FROM queue ORDER BY rank, conversation_id")
        return [(r[0], r[1]) for r in rows]

    async def job_put(self, job: dict[str, Any]) -> None:
        await self._execute(_JOB_PUT, _job_row(job))

    async def job_get(self, job_id: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return jsoncodec.loads(row[0]) if row else None

    async def jobs_due(self, until: float, *, limit: int = 100) -> list[dict[str, Any]]:
        rows = self._db.execute(
            "SELECT data FROM jobs WHERE status = 'pending' AND due_at <= ? ORDER BY due_at, id LIMIT ?",
            (until, limit),
        )
        return [jsoncodec.loads(r[0]) for r in rows]

    async def job_transition(self, job_id: str, from_status: str, to_status: str, **fields: Any) -> bool:
        job = await self.job_get(job_id)
        if job is None or job["status"] != from_status:
            return False
        job.update(fields, status=to_status)
        cur = await self._execute(
            "UPDATE jobs SET status = ?, due_at = ?, data = ? WHERE id = ? AND status = ?",
            (to_status, float(job["due_at"]), jsoncodec.dumps(job), job_id, from_status),
        )
        return cur.rowcount == 1

    async def jobs(self, *, conversation_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        sql, args = "SELECT data FROM jobs WHERE 1 = 1", list[str]()
        if conversation_id is not None:
            sql, args = sql + " AND conversation_id = ?", [*args, conversation_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        return [jsoncodec.loads(r[0]) for r in self._db.execute(sql + " ORDER BY due_at, id", args)]

    async def record_get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT data FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        return jsoncodec.loads(row[0]) if row else None

    async def records(self, kind: str) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT data FROM records WHERE kind = ? ORDER BY key", (kind,))
        return [jsoncodec.loads(r[0]) for r in rows]

    async def record_put(self, kind: str, key: str, value: dict[str, Any], *,
                         expected_version: int | None = None) -> int:
        row = self._db.execute("SELECT version FROM records WHERE kind = ? AND key = ?", (kind, key)).fetchone()
        current = row[0] if row else 0
        if expected_version is not None and expected_version != current:
            raise ConflictError(f"{kind} {key}: version {current} is newer than {expected_version}")
        version = current + 1
        data = jsoncodec.dumps({**value, "version": version})
        await self._execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", (kind, key, version, data))
        return version

    async def record_delete(self, kind: str, key: str) -> None:
        await self._execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        await self._bus.publish(topic, payload)

    def subscribe(self) -> Subscription:
        return self._bus.subscribe()

    async def delete_conversation(self, conversation_id: str) -> None:
        for table, column in (("events", "conversation_id"), ("conversations", "id"), ("tickets", "conversation_id"),
                              ("jobs", "conversation_id"), ("queue", "conversation_id")):
            self._write(f"DELETE FROM {table} WHERE {column} = ?", (conversation_id,))  # noqa: S608
        await self._committed()

    async def close(self) -> None:
        if self._group is not None:
            self._commit()
        self._db.execute("DELETE FROM cache WHERE expires_at <= ?", (self._now(),))
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._db.close()
