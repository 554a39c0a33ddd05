"""What the contract suite cannot show about RedisStore: several workers racing on one Redis, the bus between
them, key hygiene, real TTLs, and Redis failures surfacing as StoreError."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis.asyncio

from bot.models import Event
from bot.storage.base import BUS_RESUMED, ConflictError, StoreError
from bot.storage.redis import RedisStore
from tests.fakes import FakeClock
from tests.requirements import missing
from tests.storage.conftest import REDIS_URL, OpenRedis, delete_prefix

ROUNDS = 25
RACERS = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def with_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


async def two_workers(open_redis: OpenRedis) -> tuple[RedisStore, RedisStore]:
    """Two stores with their own connection pools, as two worker processes would have."""
    return await open_redis(), await open_redis()


async def test_one_worker_takes_a_queue_entry(open_redis: OpenRedis) -> None:
    a, b = await two_workers(open_redis)
    for i in range(ROUNDS):
        await a.queue_put(f"web:{i}", float(i))
        results = await asyncio.gather(*((a, b)[n % 2].queue_take(f"web:{i}") for n in range(RACERS)))
        assert results.count(True) == 1, f"round {i}: {results}"
    assert await b.queue_items() == []


async def test_one_worker_claims_a_job(open_redis: OpenRedis) -> None:
    a, b = await two_workers(open_redis)
    for i in range(ROUNDS):
        await a.job_put({"id": f"j{i}", "conversation_id": "web:a", "status": "pending", "due_at": float(i)})
        results = await asyncio.gather(*((a, b)[n % 2].job_transition(f"j{i}", "pending", "running", worker=n)
                                         for n in range(RACERS)))
        assert results.count(True) == 1, f"round {i}: {results}"
        job = await b.job_get(f"j{i}")
        assert job is not None and job["status"] == "running" and results[job["worker"]] is True
    # The indexes moved with the winners: nothing pending is left, everything is listed as running.
    assert await a.jobs_due(1e12) == [] and await a.jobs(status="pending") == []
    assert [j["id"] for j in await b.jobs(status="running")] == sorted((f"j{i}" for i in range(ROUNDS)),
                                                                       key=lambda s: int(s[1:]))


async def test_one_worker_adds_a_cache_key(open_redis: OpenRedis) -> None:
    a, b = await two_workers(open_redis)
    for i in range(ROUNDS):
        results = await asyncio.gather(*((a, b)[n % 2].cache_add(f"claim:{i}", f"w{n}", 30) for n in range(RACERS)))
        assert results.count(True) == 1, f"round {i}: {results}"
        assert await a.cache_get(f"claim:{i}") == f"w{results.index(True)}"


async def test_one_worker_wins_a_versioned_write(open_redis: OpenRedis) -> None:
    a, b = await two_workers(open_redis)
    for i in range(ROUNDS):
        results = await asyncio.gather(*((a, b)[n % 2].record_put("faq", f"e{i}", {"by": n}, expected_version=0)
                                         for n in range(RACERS)), return_exceptions=True)
        winners = [n for n, r in enumerate(results) if r == 1]
        assert len(winners) == 1 and all(isinstance(r, ConflictError) for r in results if r != 1)
        assert await b.record_get("faq", f"e{i}") == {"by": winners[0], "version": 1}
    # Unchecked writes racing never lose an increment: every writer gets its own version.
    versions = await asyncio.gather(*((a, b)[n % 2].record_put("faq", "e0", {"by": n}) for n in range(RACERS)))
    assert sorted(versions) == list(range(2, RACERS + 2))


async def test_concurrent_appends_get_distinct_consecutive_seqs(open_redis: OpenRedis, clock: FakeClock) -> None:
    a, b = await two_workers(open_redis)

    def batch(n: int) -> list[Event]:
        return [Event("", "customer_message", clock.now(), {"batch": n, "part": p}) for p in range(1 + n % 3)]

    stored = await asyncio.gather(*((a, b)[n % 2].append("web:a", batch(n)) for n in range(40)))
    seqs = sorted(e.seq for events in stored for e in events)
    assert seqs == list(range(1, len(seqs) + 1))
    for events in stored:  # each batch landed in one piece, in its own order
        assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    log = await b.events("web:a")
    assert [(e.seq, e.data) for e in log] == sorted((e.seq, e.data) for events in stored for e in events)


async def test_bus_carries_messages_between_workers_in_order(open_redis: OpenRedis) -> None:
    a, b = await two_workers(open_redis)
    on_b, on_a = b.subscribe(), a.subscribe()
    for n in range(30):
        await a.publish("deliver", {"n": n, "text": "您好"})
    for sub in (on_b, on_a):
        it = aiter(sub)
        got = [await asyncio.wait_for(anext(it), 5) for _ in range(30)]
        assert got == [("deliver", {"n": n, "text": "您好"}) for n in range(30)]
        sub.close()


async def test_subscriptions_end_when_the_store_closes(open_redis: OpenRedis, clock: FakeClock) -> None:
    store = await open_redis()
    sub = store.subscribe()
    await store.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(aiter(sub)), 5)
    # A store built from a bare client has not joined the bus: subscribing says so rather than missing messages.
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    bare = RedisStore(client, clock, prefix="kefu-test:unused:")
    with pytest.raises(StoreError, match="connect"):
        bare.subscribe()
    await bare.close()


async def test_connect_to_a_closed_port_fails_clearly(clock: FakeClock) -> None:
    port = free_port()
    with pytest.raises(StoreError) as caught:
        await RedisStore.connect(f"redis://:hunter2@127.0.0.1:{port}/0?password=hunter2", clock, prefix="kefu:")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and "does not answer" in message
    assert "hunter2" not in message


async def test_a_bad_url_is_a_store_error(clock: FakeClock) -> None:
    with pytest.raises(StoreError, match="bad Redis URL redis://127.0.0.1:port/0"):
        await RedisStore.connect("redis://user:hunter2@127.0.0.1:port/0", clock, prefix="kefu:")


async def test_every_key_carries_the_prefix(open_redis: OpenRedis, redis_prefix: str, clock: FakeClock) -> None:
    url = with_db(REDIS_URL, 15)  # a database of its own, so any stray key would stand out
    store = await open_redis(url)
    watcher = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        before = {k async for k in watcher.scan_iter(count=1000)}
        for conv in ("web:a", "web:b"):
            await store.append(conv, [Event("", "customer_message", clock.now(), {"text": "hi"})])
            await store.put_ticket({"id": f"T-{conv}", "conversation_id": conv})
            await store.job_put({"id": f"J-{conv}", "conversation_id": conv, "status": "pending", "due_at": 1.0})
            await store.queue_put(conv, 1.0)
        await store.job_transition("J-web:b", "pending", "done")
        await store.cache_set("token", "t", 60)
        await store.cache_add("claim:1", "1", 60)
        await store.record_put("faq", "zh-1", {"answer": "a"})
        await store.publish("kb", {"id": "zh-1"})
        await store.delete_conversation("web:a")
        after = {k async for k in watcher.scan_iter(count=1000)}
        written = after - before
        assert written and all(k.startswith(redis_prefix) for k in written), sorted(written)
        assert redis_prefix + "bus" in await watcher.pubsub_channels(redis_prefix + "*")
    finally:
        await watcher.aclose()


async def test_cache_keys_carry_a_real_ttl(open_redis: OpenRedis, redis_prefix: str) -> None:
    store = await open_redis()
    await store.cache_set("token", "t", 60)
    assert await store.cache_add("claim", "1", 30) is True
    watcher = redis.asyncio.Redis.from_url(REDIS_URL)
    try:
        token_ms = await watcher.pttl(redis_prefix + "cache:token")
        claim_ms = await watcher.pttl(redis_prefix + "cache:claim")
    finally:
        await watcher.aclose()
    # A little longer than the clock's expiry (which decides), so Redis cleans up after it.
    assert 60_000 < token_ms <= 75_000
    assert 30_000 < claim_ms <= 45_000


# -- a private redis-server, so the tests can break it without touching the shared one --

PASSWORD = "s3cret-pw"


@pytest.fixture
async def private_redis() -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A throwaway redis-server on a free loopback port, with a password; yields its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing("redis-server binary (apt-get install redis-server)")
    assert binary is not None
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        "--requirepass", PASSWORD, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(10):
            while b"Ready to accept connections" not in (line := await proc.stdout.readline()):
                assert line, "redis-server exited before it was ready"
        yield f"redis://:{PASSWORD}@127.0.0.1:{port}/0", proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def test_a_wrong_password_is_a_store_error_without_the_password(
        private_redis: tuple[str, asyncio.subprocess.Process], clock: FakeClock) -> None:
    url = private_redis[0].replace(PASSWORD, "wrong-pw")
    with pytest.raises(StoreError, match="does not answer") as caught:
        await RedisStore.connect(url, clock, prefix="kefu:")
    assert "wrong-pw" not in str(caught.value)


async def test_operations_after_redis_goes_away_raise_store_error(
        private_redis: tuple[str, asyncio.subprocess.Process], clock: FakeClock) -> None:
    url, proc = private_redis
    store = await RedisStore.connect(url, clock, prefix="kefu:")
    try:
        await store.cache_set("k", "v", 60)
        proc.terminate()
        await proc.wait()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.cache_get("k"), lambda: store.queue_take("web:a"), lambda: store.publish("kb", {}),
            lambda: store.job_transition("j", "pending", "running")]
        for call in calls:
            with pytest.raises(StoreError, match=r"redis://127\.0\.0\.1:\d+/0: \w+ failed") as caught:
                await call()
            assert PASSWORD not in str(caught.value)
    finally:
        await store.close()


async def test_the_bus_listener_reconnects_after_losing_its_connection(
        private_redis: tuple[str, asyncio.subprocess.Process], clock: FakeClock) -> None:
    url, _ = private_redis
    store = await RedisStore.connect(url, clock, prefix="kefu:")
    admin = redis.asyncio.Redis.from_url(url)
    try:
        sub = store.subscribe()
        await admin.client_kill_filter(_type="pubsub")
        # What is published while the listener reconnects is lost (pub/sub keeps nothing): the subscription
        # comes back on its own and says so, so live channels can make their clients fetch state again.
        it = aiter(sub)
        assert await asyncio.wait_for(anext(it), 5) == (BUS_RESUMED, {})
        await store.publish("kb", {"n": 1})
        assert await asyncio.wait_for(anext(it), 5) == ("kb", {"n": 1})
    finally:
        await admin.aclose()
        await store.close()
