"""Seeding the FAQ into a store that several workers start on together."""

from __future__ import annotations

from typing import Any

from bot import kbadmin
from bot.kbadmin import load_or_seed
from bot.knowledge import to_record
from bot.storage.sqlite import SqliteStore
from tests.fakes import FakeClock
from tests.small_kb import ENTRIES


class SeedFinishesDuringTheFirstRead(SqliteStore):
    """Another worker, half way through seeding, finishes it just after this worker read the entries."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(":memory:", clock)
        self.other_worker: Any = None

    async def records(self, kind: str) -> list[dict[str, Any]]:
        found = await super().records(kind)
        if kind == kbadmin.KIND and self.other_worker is not None:
            finish, self.other_worker = self.other_worker, None
            await finish()
        return found


async def test_a_seed_finishing_between_two_reads_never_leaves_a_worker_half_the_faq(clock: FakeClock) -> None:
    store = SeedFinishesDuringTheFirstRead(clock)
    half = len(ENTRIES) // 2
    await store.record_put(kbadmin.SEED_KIND, "seed", {"done": False}, expected_version=0)
    for entry in ENTRIES[:half]:
        await store.record_put(kbadmin.KIND, entry.id, to_record(entry), expected_version=0)

    async def finish_seed() -> None:
        for entry in ENTRIES[half:]:
            await store.record_put(kbadmin.KIND, entry.id, to_record(entry), expected_version=0)
        await store.record_put(kbadmin.SEED_KIND, "seed", {"done": True})

    store.other_worker = finish_seed
    loaded = await load_or_seed(store, ENTRIES, clock)
    assert sorted(e.id for e in loaded) == sorted(e.id for e in ENTRIES)
    await store.close()
