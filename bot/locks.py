"""One message or action at a time per conversation: inside this process, and across workers when the
store is shared (a lease in the store, so two workers never act on one conversation at once)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bot.privacy import mask_id
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

LEASE_SECONDS = 5.0  # a lease outlives a worker that died holding it this long at most
WAIT_SECONDS = 2.0  # past this, go ahead: a reply racing another beats a customer kept waiting
_POLL = (0.002, 0.05)  # first and largest pause between attempts


@dataclass
class Lease:
    """A held store lease. A holder whose last write releases it too (append's `release`) marks it released,
    and leaving the lock then costs no round trip."""

    name: str
    token: str
    released: bool = False


class KeyedLock:
    """One asyncio.Lock per key, dropped when nobody holds or waits for it; plus a store lease if shared."""

    def __init__(self, store: ConversationStore | None = None) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._store = store if store is not None and store.shared else None

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[Lease | None]:
        """The key held in this process; the store lease too (yielded) when the store is shared."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                if self._store is None:
                    yield None
                else:
                    async with self._lease(self._store, key) as lease:
                        yield lease
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    @asynccontextmanager
    async def _lease(self, store: ConversationStore, key: str) -> AsyncIterator[Lease | None]:
        name, token = f"lease:{key}", secrets.token_hex(8)
        loop = asyncio.get_running_loop()
        deadline, pause = loop.time() + WAIT_SECONDS, _POLL[0]
        while not await store.cache_add(name, token, LEASE_SECONDS):
            if loop.time() >= deadline:
                logger.warning("conversation %s still leased by another worker after %.0f s: going ahead",
                               mask_id(key), WAIT_SECONDS)
                token = ""
                break
            await asyncio.sleep(pause)
            pause = min(pause * 2, _POLL[1])
        lease = Lease(name, token) if token else None
        try:
            yield lease
        finally:
            if lease is not None and not lease.released:
                await store.cache_release(name, token)
