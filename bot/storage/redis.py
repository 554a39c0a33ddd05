"""ConversationStore on Redis, for several worker processes on one or many machines.

Every operation is one Redis command, one MULTI/EXEC block or one Lua script, so no worker ever sees
another halfway through a write, and every claim (queue, job, cache, record) has exactly one winner.

Keys, all under `prefix`. A family name never contains ":", so keys of two families never collide,
whatever characters the ids hold:

    log:<conversation>            list of events as JSON; an event's seq is its 1-based position
    convs                         zset conversation -> epoch time of its last event
    cache:<key>                   hash value, exp (expiry by the store's clock); a real TTL a little longer
    ticket:<id>                   hash cid (the conversation), data (the ticket as JSON)
    tickets, conv-tickets:<c>     zsets ticket id -> write order, drawn from the counter ticket-seq
    queue                         zset conversation -> rank
    job:<id>                      hash, one field per job attribute, each value JSON
    jobs, jobs-by-status:<s>, conv-jobs:<c>   zsets job id -> due_at
    rec:<kind>                    hash key -> "<version>:<JSON value>"
    bus                           the pub/sub channel of the event bus

The Lua scripts name some keys they build from the prefix (a job's old status index, say) rather than
declaring them: fine on one Redis or Sentinel; on a Cluster give the prefix a hash tag ("{kefu}:") so every
key lives in one slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from datetime import datetime
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.asyncio.connection import BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from bot import jsoncodec
from bot.clock import Clock
from bot.models import Event
from bot.storage.base import BUS_RESUMED, ConflictError, StoreError

logger = logging.getLogger(__name__)

Message = tuple[str, dict[str, Any]]
_P = ParamSpec("_P")
_T = TypeVar("_T")

# The real TTL outlives the clock's expiry by this much, so clock skew between workers and Redis never
# drops an entry early; the stored expiry stays the authority, the TTL only cleans up.
_TTL_GRACE_SECONDS = 10.0
_BUS_RETRY_SECONDS = (0.05, 0.5)  # first and largest pause before re-reading a lost bus
MAX_CONNECTIONS = 64  # per worker process; the bus holds one of them

# Atomic: a script runs alone on the server, so no other client can write between the expiry check
# and the claim.
_CACHE_ADD = """
local exp = redis.call('HGET', KEYS[1], 'exp')
if exp and tonumber(exp) > tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'value', ARGV[2], 'exp', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# Putting a job (atomic in whichever script calls it): the old indexes are read and left, and the new ones
# joined, with no reader in between.
_PUT_JOB = """
local function put_job(id, prefix, status, cid, due, fields)
  local key = prefix .. 'job:' .. id
  local old = redis.call('HMGET', key, 'status', 'conversation_id')
  if old[1] then redis.call('ZREM', prefix .. 'jobs-by-status:' .. cjson.decode(old[1]), id) end
  if old[2] then redis.call('ZREM', prefix .. 'conv-jobs:' .. cjson.decode(old[2]), id) end
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(fields))
  redis.call('ZADD', prefix .. 'jobs', due, id)
  redis.call('ZADD', prefix .. 'jobs-by-status:' .. status, due, id)
  redis.call('ZADD', prefix .. 'conv-jobs:' .. cid, due, id)
end
"""

# One turn's write: the events (RPUSH answers the new length, the last seq; inside the script no other
# append can come between it and the index), and optionally the replies kept for retries, the lease let go
# and the jobs the turn starts.
# ARGV: conversation id, time score, event count n, the n events, then "1"/"" remember + value, exp, ms,
# then "1"/"" release + value, then the key prefix and the job count, each job as _job_args lays it out.
# KEYS: log, convs index, remember key, release key (the log key when unused).
_APPEND = _PUT_JOB + """
local n = tonumber(ARGV[3])
local length = redis.call('RPUSH', KEYS[1], unpack(ARGV, 4, 3 + n))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
local i = 4 + n
if ARGV[i] == '1' then
  redis.call('HSET', KEYS[3], 'value', ARGV[i + 1], 'exp', ARGV[i + 2])
  redis.call('PEXPIRE', KEYS[3], ARGV[i + 3])
end
if ARGV[i + 4] == '1' and redis.call('HGET', KEYS[4], 'value') == ARGV[i + 5] then redis.call('DEL', KEYS[4]) end
local prefix, k = ARGV[i + 6], i + 8
for _ = 1, tonumber(ARGV[i + 7]) do
  local count = tonumber(ARGV[k + 4])
  put_job(ARGV[k], prefix, ARGV[k + 1], ARGV[k + 2], ARGV[k + 3], {unpack(ARGV, k + 5, k + 4 + count)})
  k = k + 5 + count
end
return length
"""

_CACHE_RELEASE = """
if redis.call('HGET', KEYS[1], 'value') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Atomic, so a ticket that moves to another conversation is never in both or neither index, and two
# writers cannot draw the same order number.
_TICKET_PUT = """
local old = redis.call('HGET', KEYS[1], 'cid')
if old and old ~= ARGV[2] then redis.call('ZREM', ARGV[3] .. 'conv-tickets:' .. old, ARGV[1]) end
local order = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[2], order, ARGV[1])
redis.call('ZADD', ARGV[3] .. 'conv-tickets:' .. ARGV[2], order, ARGV[1])
redis.call('HSET', KEYS[1], 'cid', ARGV[2], 'data', ARGV[4])
"""

# ARGV: the key prefix, then one job as _job_args lays it out.
_JOB_PUT = _PUT_JOB + """
local count = tonumber(ARGV[6])
put_job(ARGV[2], ARGV[1], ARGV[3], ARGV[4], ARGV[5], {unpack(ARGV, 7, 6 + count)})
"""

# The compare-and-set that lets exactly one worker claim a job: the status check and the write run as
# one unit, so of several racing callers only the first finds from_status; the others see it changed.
_JOB_TRANSITION = """
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[3] then return 0 end
local due = ARGV[5]
if due == '' then due = redis.call('ZSCORE', KEYS[2], ARGV[1]) end
redis.call('HSET', KEYS[1], unpack(ARGV, 6))
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[4], due, ARGV[1])
redis.call('ZADD', KEYS[2], due, ARGV[1])
local cid = cjson.decode(redis.call('HGET', KEYS[1], 'conversation_id'))
redis.call('ZADD', ARGV[2] .. 'conv-jobs:' .. cid, due, ARGV[1])
return 1
"""

# One script so the index and the hashes it names are read at one instant (none deleted in between).
_READ_INDEXED = """
local ids = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYSCORE', 'LIMIT', 0, ARGV[3])
local out = {}
for i, id in ipairs(ids) do out[i] = redis.call('HGETALL', ARGV[4] .. id) end
return out
"""

# Optimistic concurrency: the version check and the write are one unit, so of two writers expecting the
# same version exactly one succeeds.
_RECORD_PUT = """
local current = 0
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then current = tonumber(string.match(old, '^(%d+):')) end
if ARGV[2] ~= '' and tonumber(ARGV[2]) ~= current then return {0, current} end
redis.call('HSET', KEYS[1], ARGV[1], (current + 1) .. ':' .. ARGV[3])
return {1, current + 1}
"""

# Atomic, so no reader ever sees half a conversation erased (say, its jobs gone but its tickets left).
_DELETE_CONVERSATION = """
for _, id in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do
  redis.call('DEL', ARGV[2] .. 'ticket:' .. id)
  redis.call('ZREM', KEYS[5], id)
end
for _, id in ipairs(redis.call('ZRANGE', KEYS[6], 0, -1)) do
  local status = redis.call('HGET', ARGV[2] .. 'job:' .. id, 'status')
  if status then redis.call('ZREM', ARGV[2] .. 'jobs-by-status:' .. cjson.decode(status), id) end
  redis.call('DEL', ARGV[2] .. 'job:' .. id)
  redis.call('ZREM', KEYS[7], id)
end
redis.call('DEL', KEYS[1], KEYS[4], KEYS[6])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
"""


def _redacted(url: str) -> str:
    """The URL without credentials or query (where a password may sit), fit for messages and logs."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def _describe(client: Redis) -> str:
    """Where a client points, from its settings (never its password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _score(value: float) -> str:
    """A float exactly as Lua's tonumber and Redis scores read it back."""
    return repr(float(value))


def _pairs(flat: Sequence[Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in zip(flat[::2], flat[1::2])}


async def _close(pubsub: PubSub) -> None:
    await pubsub.aclose()  # type: ignore[no-untyped-call]  # redis-py leaves PubSub.aclose unannotated


def _scored(rows: Any) -> list[tuple[str, float]]:
    """A WITHSCORES answer as (member, score) pairs; redis-py types it as a union of reply shapes."""
    return [(str(member), float(score)) for member, score in rows]


def _job_args(job: dict[str, Any]) -> list[str | int]:
    """A job for _PUT_JOB: id, status, conversation, due score, the field count, then field, value pairs."""
    fields = [part for key, value in job.items() for part in (key, jsoncodec.dumps(value))]
    return [str(job["id"]), str(job["status"]), str(job["conversation_id"]), _score(job["due_at"]), len(fields),
            *fields]


def _surfaced(method: Callable[_P, Awaitable[_T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Redis failures reach callers as StoreError (they answer politely), never as redis' own errors."""

    @functools.wraps(method)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await method(*args, **kwargs)
        except RedisError as exc:
            where = args[0]._where if args and isinstance(args[0], RedisStore) else "Redis"
            raise StoreError(f"{where}: {method.__name__} failed: {type(exc).__name__}: {exc}") from exc

    return wrapper


class BusSubscription:
    """One subscriber's queue, fed by the store's single bus listener; ends when the store closes."""

    def __init__(self, fence: int, on_close: Callable[[BusSubscription], None]) -> None:
        self._queue: asyncio.Queue[Message | None] = asyncio.Queue()
        self._on_close = on_close
        # This store's own messages numbered up to `fence` were published before the subscription.
        self.fence = fence

    def __aiter__(self) -> BusSubscription:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # later calls end too
            raise StopAsyncIteration
        return item

    def offer(self, message: Message) -> None:
        self._queue.put_nowait(message)

    def end(self) -> None:
        self._queue.put_nowait(None)

    def close(self) -> None:
        self._on_close(self)
        self.end()


class RedisStore:
    """ConversationStore on redis.asyncio; build it with `connect`, or from a client and then `start`.

    The client must decode responses (decode_responses=True).
    """

    shared = True

    def __init__(self, client: Redis, clock: Clock, *, prefix: str) -> None:
        if not client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ValueError("RedisStore needs a client built with decode_responses=True")
        self._client = client
        self._clock = clock
        self._p = prefix
        self._where = _describe(client)
        self._channel = prefix + "bus"
        # Tags this store's bus messages, so a subscription can skip those published before it began.
        self._origin = uuid.uuid4().hex
        self._published = 0
        self._subscriptions: set[BusSubscription] = set()
        self._pubsub: PubSub | None = None
        self._listener: asyncio.Task[None] | None = None
        self._cache_add = client.register_script(_CACHE_ADD)
        self._cache_release = client.register_script(_CACHE_RELEASE)
        self._append = client.register_script(_APPEND)
        self._ticket_put = client.register_script(_TICKET_PUT)
        self._job_put = client.register_script(_JOB_PUT)
        self._job_transition = client.register_script(_JOB_TRANSITION)
        self._read_indexed = client.register_script(_READ_INDEXED)
        self._record_put = client.register_script(_RECORD_PUT)
        self._delete_conversation = client.register_script(_DELETE_CONVERSATION)

    @classmethod
    async def connect(cls, url: str, clock: Clock, *, prefix: str) -> RedisStore:
        """Open, ping and join the bus; a Redis that does not answer is a StoreError naming it (no password).

        No automatic retries: a write retried after its reply was lost would run twice, and a claim
        would then be lost to itself. A failure is a StoreError; the next call uses a fresh connection.
        """
        try:
            # A blocking pool: at its limit a command waits (up to 5 s) for a free connection. redis-py 8's
            # default pool refuses at once ("Too many connections" at 100 busy connections), which failed
            # web-chat messages under a 200-customer load.
            pool = BlockingConnectionPool.from_url(
                url, decode_responses=True, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5,
                socket_timeout=5, socket_keepalive=True, max_connections=MAX_CONNECTIONS, timeout=5)
            client = Redis.from_pool(pool)
        except ValueError as exc:
            raise StoreError(f"bad Redis URL {_redacted(url)}: {exc}") from exc
        store = cls(client, clock, prefix=prefix)
        store._where = _redacted(url)  # keeps the scheme (rediss://, unix://) that the client settings lose
        try:
            await store.start()
        except BaseException:
            await client.aclose()
            raise
        return store

    async def start(self) -> None:
        """Ping, then subscribe to the bus channel and wait for Redis to confirm it, so that `subscribe()`,
        which must be synchronous, can promise every message published after it."""
        try:
            await self._client.ping()
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                # On a fresh connection the confirmation is the first reply; no message can come before it.
                confirm = await pubsub.get_message(timeout=5)
                if confirm is None or confirm["type"] != "subscribe":
                    raise StoreError(f"Redis at {self._where} did not confirm the bus subscription")
            except BaseException:
                await _close(pubsub)
                raise
        except RedisError as exc:
            raise StoreError(f"Redis at {self._where} does not answer: {type(exc).__name__}: {exc}") from exc
        self._pubsub = pubsub
        self._listener = asyncio.create_task(self._listen(pubsub))

    def _now(self) -> float:
        return self._clock.now().timestamp()

    # -- conversation log --

    @_surfaced
    async def append(self, conversation_id: str, events: Sequence[Event], *,
                     remember: tuple[str, str, float] | None = None,
                     release: tuple[str, str] | None = None,
                     jobs: Sequence[dict[str, Any]] = ()) -> list[Event]:
        """One script (_APPEND): seq numbers never collide, and what rides along costs no round trip."""
        if not events:
            return []
        encoded = [jsoncodec.dumps({"type": e.type, "at": e.at.isoformat(), "data": e.data}) for e in events]
        log = f"{self._p}log:{conversation_id}"
        keys = [log, f"{self._p}convs", log, log]
        args: list[str | int] = [conversation_id, _score(events[-1].at.timestamp()), len(encoded), *encoded]
        if remember is not None:
            key, value, ttl = remember
            keys[2] = f"{self._p}cache:{key}"
            args += ["1", value, _score(self._now() + ttl), self._ttl_ms(ttl)]
        else:
            args += ["", "", "", ""]
        if release is not None:
            keys[3] = f"{self._p}cache:{release[0]}"
            args += ["1", release[1]]
        else:
            args += ["", ""]
        args += [self._p, len(jobs)]
        for job in jobs:
            args += _job_args(job)
        length = await self._append(keys=keys, args=args)
        first = int(length) - len(events) + 1
        return [Event(conversation_id, e.type, e.at, dict(e.data), first + i) for i, e in enumerate(events)]

    @_surfaced
    async def events(self, conversation_id: str, *, after_seq: int = 0) -> list[Event]:
        start = max(after_seq, 0)
        rows = await self._client.lrange(f"{self._p}log:{conversation_id}", start, -1)
        decoded = (jsoncodec.loads(row) for row in rows)
        return [Event(conversation_id, d["type"], datetime.fromisoformat(d["at"]), d["data"], start + 1 + i)
                for i, d in enumerate(decoded)]

    @_surfaced
    async def conversations(self, *, since: datetime | None = None) -> list[str]:
        low: float | str = since.timestamp() if since else "-inf"
        rows = await self._client.zrangebyscore(f"{self._p}convs", low, "+inf", withscores=True)
        ranked = sorted((-score, conv) for conv, score in _scored(rows))
        return [conv for _, conv in ranked]

    # -- cache with expiry --

    @_surfaced
    async def cache_get(self, key: str) -> str | None:
        value, exp = await self._client.hmget(f"{self._p}cache:{key}", ["value", "exp"])
        if value is None or exp is None or float(exp) <= self._now():
            return None
        return str(value)

    @_surfaced
    async def cache_set(self, key: str, value: str, ttl_seconds: float) -> None:
        name = f"{self._p}cache:{key}"
        async with self._client.pipeline(transaction=True) as tx:
            tx.hset(name, mapping={"value": value, "exp": _score(self._now() + ttl_seconds)})
            tx.pexpire(name, self._ttl_ms(ttl_seconds))
            await tx.execute()

    @_surfaced
    async def cache_add(self, key: str, value: str, ttl_seconds: float) -> bool:
        now = self._now()
        args: list[str | int] = [_score(now), value, _score(now + ttl_seconds), self._ttl_ms(ttl_seconds)]
        return bool(await self._cache_add(keys=[f"{self._p}cache:{key}"], args=args))

    @_surfaced
    async def cache_delete(self, key: str) -> None:
        await self._client.delete(f"{self._p}cache:{key}")

    @_surfaced
    async def cache_release(self, key: str, value: str) -> bool:
        return bool(await self._cache_release(keys=[f"{self._p}cache:{key}"], args=[value]))

    @staticmethod
    def _ttl_ms(ttl_seconds: float) -> int:
        return int((max(ttl_seconds, 0.0) + _TTL_GRACE_SECONDS) * 1000)

    # -- tickets --

    @_surfaced
    async def put_ticket(self, ticket: dict[str, Any]) -> None:
        # Like SQLite's INSERT OR REPLACE, a rewritten ticket moves to the end of the listing.
        ticket_id, conversation_id = str(ticket["id"]), str(ticket.get("conversation_id", ""))
        await self._ticket_put(keys=[f"{self._p}ticket:{ticket_id}", f"{self._p}tickets", f"{self._p}ticket-seq"],
                               args=[ticket_id, conversation_id, self._p, jsoncodec.dumps(ticket)])

    @_surfaced
    async def get_ticket(self, ticket_id: str) -> dict[str, Any] | None:
        data = await self._client.hget(f"{self._p}ticket:{ticket_id}", "data")
        return None if data is None else dict(jsoncodec.loads(data))

    @_surfaced
    async def tickets(self, *, conversation_id: str | None = None) -> list[dict[str, Any]]:
        index = f"{self._p}tickets" if conversation_id is None else f"{self._p}conv-tickets:{conversation_id}"
        return [jsoncodec.loads(h["data"]) for h in await self._indexed(index, f"{self._p}ticket:")]

    async def _indexed(self, index: str, member_prefix: str, *, until: float | None = None,
                       limit: int = -1) -> list[dict[str, str]]:
        """The hashes named by an index zset, lowest score first (ties by member), in one atomic read."""
        high = "+inf" if until is None else _score(until)
        args: list[str | int] = ["-inf", high, limit, member_prefix]
        rows = await self._read_indexed(keys=[index], args=args)
        return [_pairs(row) for row in rows if row]

    # -- handoff queue --

    @_surfaced
    async def queue_put(self, conversation_id: str, rank: float) -> None:
        await self._client.zadd(f"{self._p}queue", {conversation_id: rank})

    @_surfaced
    async def queue_take(self, conversation_id: str) -> bool:
        # ZREM is one command: of several racing callers exactly one removes the member and sees 1.
        return bool(await self._client.zrem(f"{self._p}queue", conversation_id))

    @_surfaced
    async def queue_items(self) -> list[tuple[str, float]]:
        return _scored(await self._client.zrangebyscore(f"{self._p}queue", "-inf", "+inf", withscores=True))

    # -- scheduled jobs --

    @_surfaced
    async def job_put(self, job: dict[str, Any]) -> None:
        await self._job_put(keys=[f"{self._p}job:{job['id']}", f"{self._p}jobs"], args=[self._p, *_job_args(job)])

    @_surfaced
    async def job_get(self, job_id: str) -> dict[str, Any] | None:
        fields = await self._client.hgetall(f"{self._p}job:{job_id}")
        return {str(k): jsoncodec.loads(v) for k, v in fields.items()} if fields else None

    @_surfaced
    async def jobs_due(self, until: float, *, limit: int = 100) -> list[dict[str, Any]]:
        rows = await self._indexed(f"{self._p}jobs-by-status:pending", f"{self._p}job:", until=until, limit=limit)
        return [self._job(row) for row in rows]

    @_surfaced
    async def job_transition(self, job_id: str, from_status: str, to_status: str, **fields: Any) -> bool:
        if "id" in fields or "conversation_id" in fields:
            raise ValueError("a job keeps its id and its conversation")
        changes = {**fields, "status": to_status}
        due = _score(changes["due_at"]) if "due_at" in changes else ""
        flat = [part for key, value in changes.items() for part in (key, jsoncodec.dumps(value))]
        keys = [f"{self._p}job:{job_id}", f"{self._p}jobs", f"{self._p}jobs-by-status:{from_status}",
                f"{self._p}jobs-by-status:{to_status}"]
        return bool(await self._job_transition(keys=keys, args=[job_id, self._p, jsoncodec.dumps(from_status), to_status,
                                                                 due, *flat]))

    @_surfaced
    async def jobs(self, *, conversation_id: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        if conversation_id is not None:
            index = f"{self._p}conv-jobs:{conversation_id}"
        elif status is not None:
            index = f"{self._p}jobs-by-status:{status}"
        else:
            index = f"{self._p}jobs"
        found = [self._job(row) for row in await self._indexed(index, f"{self._p}job:")]
        return [job for job in found if status is None or job["status"] == status]

    @staticmethod
    def _job(fields: dict[str, str]) -> dict[str, Any]:
        return {key: jsoncodec.loads(value) for key, value in fields.items()}

    # -- versioned records --

    @_surfaced
    async def record_get(self, kind: str, key: str) -> dict[str, Any] | None:
        stored = await self._client.hget(f"{self._p}rec:{kind}", key)
        return None if stored is None else self._record(str(stored))

    @_surfaced
    async def records(self, kind: str) -> list[dict[str, Any]]:
        # Python orders str by code point, which is the UTF-8 byte order SQLite's ORDER BY key uses.
        stored = await self._client.hgetall(f"{self._p}rec:{kind}")
        return [self._record(str(stored[key])) for key in sorted(stored, key=str)]

    @_surfaced
    async def record_put(self, kind: str, key: str, value: dict[str, Any], *,
                         expected_version: int | None = None) -> int:
        expected = "" if expected_version is None else str(expected_version)
        ok, version = await self._record_put(keys=[f"{self._p}rec:{kind}"], args=[key, expected, jsoncodec.dumps(value)])
        if not ok:
            raise ConflictError(f"{kind} {key}: version {version} is newer than {expected_version}")
        return int(version)

    @_surfaced
    async def record_delete(self, kind: str, key: str) -> None:
        await self._client.hdel(f"{self._p}rec:{kind}", key)

    @staticmethod
    def _record(stored: str) -> dict[str, Any]:
        version, _, data = stored.partition(":")
        return {**jsoncodec.loads(data), "version": int(version)}

    # -- event bus --

    @_surfaced
    async def publish(self, topic: str, payload: dict[str, Any]) -> None:
        self._published += 1
        message = {"origin": self._origin, "n": self._published, "topic": topic, "payload": payload}
        await self._client.publish(self._channel, jsoncodec.dumps(message))

    def subscribe(self) -> BusSubscription:
        """Registered before returning: the listener has been subscribed since `start`, so everything
        published from now on, by any worker, reaches this subscription."""
        if self._listener is None:
            raise StoreError("the Redis store is not listening to its bus: open it with connect() or start()")
        subscription = BusSubscription(self._published, self._subscriptions.discard)
        self._subscriptions.add(subscription)
        return subscription

    async def _listen(self, pubsub: PubSub) -> None:
        """Hand each bus message to every local subscription. After a lost connection redis-py reconnects
        and resubscribes on the next read; what was published meanwhile is lost, as with any pub/sub, so
        the subscriptions get BUS_RESUMED once the subscription is confirmed again."""
        pause, lost = _BUS_RETRY_SECONDS[0], False
        while True:
            try:
                message = await pubsub.get_message(timeout=None)
            except RedisError as exc:
                if not lost:
                    logger.warning("bus connection to %s lost (%s); reconnecting", self._where, exc)
                lost = True
                # Idle pooled connections died with it (a Redis restart): drop them now, or the first
                # command on each would fail after Redis is back. Busy ones are left to their commands.
                with contextlib.suppress(RedisError, OSError):
                    await self._client.connection_pool.disconnect(inuse_connections=False)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _BUS_RETRY_SECONDS[1])
                continue
            if message is None:
                continue
            if message["type"] == "subscribe" and lost:
                logger.warning("bus connection to %s back", self._where)
                pause, lost = _BUS_RETRY_SECONDS[0], False
                for subscription in list(self._subscriptions):
                    subscription.offer((BUS_RESUMED, {}))
            elif message["type"] == "message":
                self._deliver(str(message["data"]))

    def _deliver(self, raw: str) -> None:
        try:
            wire = jsoncodec.loads(raw)
            origin, number, topic = wire["origin"], int(wire["n"]), str(wire["topic"])
        except (ValueError, KeyError, TypeError):
            logger.warning("ignored a malformed message on %s", self._channel)
            return
        for subscription in list(self._subscriptions):
            if origin == self._origin and number <= subscription.fence:
                continue
            # Each subscriber decodes its own copy, so one cannot change what another sees.
            subscription.offer((topic, jsoncodec.loads(raw)["payload"]))

    # -- erasure and shutdown --

    @_surfaced
    async def delete_conversation(self, conversation_id: str) -> None:
        c = conversation_id
        keys = [f"{self._p}log:{c}", f"{self._p}convs", f"{self._p}queue", f"{self._p}conv-tickets:{c}",
                f"{self._p}tickets", f"{self._p}conv-jobs:{c}", f"{self._p}jobs"]
        await self._delete_conversation(keys=keys, args=[c, self._p])

    @contextlib.asynccontextmanager
    async def batch(self) -> AsyncIterator[None]:
        """Every Redis write is durable (as the server's persistence makes it) when its call returns."""
        yield

    @_surfaced
    async def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.end()
        self._subscriptions.clear()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        if self._pubsub is not None:
            await _close(self._pubsub)
        await self._client.aclose()
