"""Redis stores for the storage tests: the real server at REDIS_URL, one fresh key prefix per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

import pytest
import redis.asyncio

from bot.storage.base import StoreError
from bot.storage.redis import RedisStore
from tests.fakes import FakeClock
from tests.requirements import missing

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


class OpenRedis(Protocol):
    def __call__(self, url: str = REDIS_URL) -> Awaitable[RedisStore]: ...


async def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key under `prefix` (SCAN is fine here: teardown, not a hot path)."""
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_prefix() -> str:
    return f"kefu-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def open_redis(clock: FakeClock, redis_prefix: str) -> AsyncIterator[OpenRedis]:
    """Opens RedisStores on one prefix (at REDIS_URL unless given `url`), each with its own connections like
    separate workers; afterwards closes them and deletes the prefix's keys."""
    stores: list[RedisStore] = []
    urls: set[str] = set()

    async def open_(url: str = REDIS_URL) -> RedisStore:
        try:
            store = await RedisStore.connect(url, clock, prefix=redis_prefix)
        except StoreError as exc:
            missing(f"Redis ({exc})")
        stores.append(store)
        urls.add(url)
        return store

    yield open_
    for store in stores:
        await store.close()
    for url in urls:
        await delete_prefix(url, redis_prefix)
