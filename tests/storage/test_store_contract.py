"""The store contract: every backend must pass the same tests."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.models import Event
from bot.storage.base import ConflictError, ConversationStore, StoreError
from bot.storage import sqlite as sqlite_store
from bot.storage.sqlite import SqliteStore
from tests.fakes import FakeClock
from tests.storage.conftest import OpenRedis


@pytest.fixture(params=["sqlite-memory", "sqlite-file", "redis"])
async def backend(request: pytest.FixtureRequest, clock: FakeClock, tmp_path: Path,
                  open_redis: OpenRedis) -> AsyncIterator[ConversationStore]:
    if request.param == "redis":
        # open_redis (tests/storage/conftest.py) closes the store and deletes its keys afterwards.
        yield await open_redis()
        return
    path = ":memory:" if request.param == "sqlite-memory" else tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    yield store
    await store.close()


def ev(clock: FakeClock, type_: str, **data: object) -> Event:
    return Event("", type_, clock.now(), dict(data))


async def test_append_numbers_events_per_conversation(backend: ConversationStore, clock: FakeClock) -> None:
    first = await backend.append("web:a", [ev(clock, "customer_message", text="你好"), ev(clock, "bot_reply")])
    assert [e.seq for e in first] == [1, 2]
    other = await backend.append("web:b", [ev(clock, "customer_message", text="hi")])
    assert other[0].seq == 1
    more = await backend.append("web:a", [ev(clock, "closed")])
    assert more[0].seq == 3
    events = await backend.events("web:a")
    assert [(e.seq, e.type) for e in events] == [(1, "customer_message"), (2, "bot_reply"), (3, "closed")]
    assert events[0].data == {"text": "你好"}
    assert events[0].at == clock.now()
    assert [e.seq for e in await backend.events("web:a", after_seq=2)] == [3]
    assert await backend.events("web:nobody") == []


async def test_conversations_most_recent_first(backend: ConversationStore, clock: FakeClock) -> None:
    await backend.append("web:old", [ev(clock, "customer_message")])
    start = clock.now()
    clock.advance(minutes=5)
    await backend.append("web:new", [ev(clock, "customer_message")])
    assert await backend.conversations() == ["web:new", "web:old"]
    clock.advance(seconds=1)
    assert await backend.conversations(since=start.replace(minute=1)) == ["web:new"]


async def test_append_keeps_a_cache_entry_in_the_same_write(backend: ConversationStore, clock: FakeClock) -> None:
    stored = await backend.append("web:a", [ev(clock, "customer_message", text="退货")],
                                  remember=("dedup:web:a:m1", '[{"text": "好的"}]', 60))
    assert [e.seq for e in stored] == [1]
    assert await backend.cache_get("dedup:web:a:m1") == '[{"text": "好的"}]'
    clock.advance(seconds=61)
    assert await backend.cache_get("dedup:web:a:m1") is None
    assert [e.data["text"] for e in await backend.events("web:a")] == ["退货"]


async def test_append_lets_go_of_a_lease_only_if_it_still_holds_it(backend: ConversationStore,
                                                                    clock: FakeClock) -> None:
    assert await backend.cache_add("lease:web:a", "mine", 5)
    await backend.append("web:a", [ev(clock, "customer_message")], release=("lease:web:a", "theirs"))
    assert await backend.cache_get("lease:web:a") == "mine"  # another holder's token: left alone
    await backend.append("web:a", [ev(clock, "bot_reply")], release=("lease:web:a", "mine"))
    assert await backend.cache_get("lease:web:a") is None
    assert [e.seq for e in await backend.events("web:a")] == [1, 2]


async def test_cache_expires_by_the_clock(backend: ConversationStore, clock: FakeClock) -> None:
    await backend.cache_set("k", "v", 60)
    assert await backend.cache_get("k") == "v"
    clock.advance(seconds=59)
    assert await backend.cache_get("k") == "v"
    clock.advance(seconds=2)
    assert await backend.cache_get("k") is None


async def test_cache_add_claims_once_until_expiry(backend: ConversationStore, clock: FakeClock) -> None:
    assert await backend.cache_add("claim", "worker-1", 30) is True
    assert await backend.cache_add("claim", "worker-2", 30) is False
    assert await backend.cache_get("claim") == "worker-1"
    clock.advance(seconds=31)
    assert await backend.cache_add("claim", "worker-2", 30) is True
    assert await backend.cache_get("claim") == "worker-2"
    await backend.cache_delete("claim")
    assert await backend.cache_get("claim") is None


async def test_cache_release_only_by_the_holder(backend: ConversationStore, clock: FakeClock) -> None:
    assert await backend.cache_add("lease", "worker-1", 10)
    clock.advance(seconds=11)  # worker-1's lease ran out and worker-2 took it
    assert await backend.cache_add("lease", "worker-2", 10)
    assert await backend.cache_release("lease", "worker-1") is False
    assert await backend.cache_get("lease") == "worker-2"
    assert await backend.cache_release("lease", "worker-2") is True
    assert await backend.cache_get("lease") is None and await backend.cache_add("lease", "worker-3", 10)


async def test_tickets_round_trip(backend: ConversationStore) -> None:
    ticket = {"id": "RT1", "conversation_id": "web:a", "status": "open", "order_no": "E20261118001234"}
    await backend.put_ticket(ticket)
    await backend.put_ticket({"id": "RT2", "conversation_id": "web:b", "status": "open"})
    assert await backend.get_ticket("RT1") == ticket
    assert await backend.get_ticket("nope") is None
    assert [t["id"] for t in await backend.tickets()] == ["RT1", "RT2"]
    assert [t["id"] for t in await backend.tickets(conversation_id="web:b")] == ["RT2"]
    await backend.put_ticket({**ticket, "status": "closed"})
    assert (await backend.get_ticket("RT1"))["status"] == "closed"  # type: ignore[index]


async def test_sqlite_log_survives_reopen(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    await store.append("web:a", [ev(clock, "customer_message", text="退货")])
    await store.close()
    reopened = SqliteStore(path, clock)
    assert [e.data["text"] for e in await reopened.events("web:a")] == ["退货"]
    await reopened.close()


async def test_sqlite_wal_is_folded_in_off_the_event_loop(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    empty = path.stat().st_size
    for n in range(300):
        await store.append(f"web:{n}", [ev(clock, "customer_message", text="请问多久发货" * 20)])
    wal = tmp_path / "kefu.sqlite3-wal"
    assert wal.stat().st_size > 0 and path.stat().st_size == empty  # commits never checkpoint themselves
    deadline = asyncio.get_running_loop().time() + 5
    while path.stat().st_size == empty:  # the checkpoint thread copies the WAL into the database
        assert asyncio.get_running_loop().time() < deadline, "the checkpoint thread never ran"
        await asyncio.sleep(0.1)
    await store.close()
    assert not wal.exists() or wal.stat().st_size == 0  # truncated at close
    reopened = SqliteStore(path, clock)
    assert len(await reopened.conversations()) == 300
    await reopened.close()


async def test_sqlite_wal_starts_over_under_steady_writes(clock: FakeClock, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that never pause left no moment for SQLite to start the WAL over: it grew without bound."""
    monkeypatch.setattr(sqlite_store, "WAL_RESTART_BYTES", 512 * 1024)
    monkeypatch.setattr(sqlite_store, "CHECKPOINT_SECONDS", 0.02)
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    wal = tmp_path / "kefu.sqlite3-wal"
    sizes = []
    for n in range(3000):
        await store.append(f"web:{n % 200}", [ev(clock, "customer_message", text="请问多久发货" * 20)])
        if n % 100 == 99:
            sizes.append(wal.stat().st_size)
    await store.close()
    # Unbounded, 3000 such writes leave a WAL of ~54 MB. How far past 512 KB it gets before starting over
    # depends on how fast the disk syncs (a checkpoint in progress delays the restart): measured 2-9 MB.
    assert sum(later < earlier for earlier, later in zip(sizes, sizes[1:])) >= 2, sizes  # it started over
    assert max(sizes) < 24 * 1024 * 1024, sizes


async def test_sqlite_writes_are_on_disk_when_they_return(clock: FakeClock, tmp_path: Path) -> None:
    """Concurrent writers share commits, yet each call returns only once its write is committed."""
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    other = sqlite3.connect(path)  # another process's view: sees committed data only

    async def customer(n: int) -> int:
        await store.append(f"web:{n}", [ev(clock, "customer_message", text=f"第{n}个问题")])
        await store.cache_set(f"dedup:{n}", "reply", 60)
        return other.execute("SELECT COUNT(*) FROM events WHERE conversation_id = ?", (f"web:{n}",)).fetchone()[0] + \
            other.execute("SELECT COUNT(*) FROM cache WHERE key = ?", (f"dedup:{n}",)).fetchone()[0]

    assert await asyncio.gather(*(customer(n) for n in range(20))) == [2] * 20
    other.close()
    await store.close()


async def test_sqlite_batch_commits_its_writes_when_it_ends(clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "kefu.sqlite3"
    store = SqliteStore(path, clock)
    other = sqlite3.connect(path)
    async with store.batch():
        await store.cache_add("claim:m1", "1", 60)
        await store.append("web:a", [ev(clock, "customer_message", text="退货")])
        assert [e.data["text"] for e in await store.events("web:a")] == ["退货"]  # this process sees it at once
    assert other.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 1
    assert other.execute("SELECT value FROM cache WHERE key = 'claim:m1'").fetchone() == ("1",)
    other.close()
    await store.close()


async def test_sqlite_under_load_a_commit_waits_for_the_turns_behind_and_a_lone_turn_never_waits(
        clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a commit shared by several turns, the next group stays open for turns that reach their write loop
    turns later, so they share one commit; a turn on its own is committed at once."""
    monkeypatch.setattr(sqlite_store, "COMMIT_WAIT_SECONDS", 0.3)
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    commits: list[str] = []
    store._db.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    loop = asyncio.get_running_loop()

    async def turn(n: int, pauses: int = 0) -> None:
        async with store.batch():
            for _ in range(pauses):
                await asyncio.sleep(0)
            await store.append(f"web:{n}", [ev(clock, "customer_message", text=f"第{n}个问题")])

    start = loop.time()
    await turn(0)
    await turn(1)
    assert len(commits) == 2 and loop.time() - start < 0.2  # quiet: each committed at once
    await asyncio.gather(*(turn(n) for n in range(2, 5)))  # three at once: one commit, now busy
    assert len(commits) == 3
    await asyncio.gather(*(turn(n, pauses=n) for n in range(5, 10)))  # writing loop turns apart
    assert len(commits) == 4
    start = loop.time()
    await turn(10)  # the last group had several turns: this one waits for company, briefly
    assert len(commits) == 5 and 0.2 < loop.time() - start < 2
    await turn(11)  # quiet again
    assert len(commits) == 6
    assert len(await store.conversations()) == 12
    await store.close()


async def test_sqlite_a_full_disk_fails_every_write_it_undid_and_no_other(clock: FakeClock, tmp_path: Path) -> None:
    """SQLite undoes the whole open transaction when the disk fills, so the writes that shared it with the
    failing one are lost too: their callers must hear so, and the next write must start afresh."""
    store = SqliteStore(tmp_path / "kefu.sqlite3", clock)
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages + 2}")  # a disk with room for two more pages

    async def write(key: str, size: int) -> str:
        await store.cache_set(key, "x" * size, 60)
        return "ok"

    results = await asyncio.gather(write("small", 10), write("big", 100_000), write("later", 10),
                                   return_exceptions=True)
    assert [type(r) for r in results] == [StoreError, StoreError, str], results
    assert await store.cache_get("small") is None
    assert await store.cache_get("later") == "x" * 10  # in a new group, and committed as its caller heard
    await store.close()


async def test_queue_orders_by_rank_and_take_is_exclusive(backend: ConversationStore) -> None:
    await backend.queue_put("web:late", 2_000.0)
    await backend.queue_put("web:vip", 1_000.0)
    await backend.queue_put("web:early", 1_500.0)
    assert [c for c, _ in await backend.queue_items()] == ["web:vip", "web:early", "web:late"]
    await backend.queue_put("web:late", 500.0)  # re-put moves it
    assert (await backend.queue_items())[0] == ("web:late", 500.0)
    results = await asyncio.gather(*(backend.queue_take("web:vip") for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert [c for c, _ in await backend.queue_items()] == ["web:late", "web:early"]


async def test_jobs_ride_along_with_the_events_that_log_them(backend: ConversationStore, clock: FakeClock) -> None:
    """A turn's new follow-ups are stored in its append, indexed as job_put indexes them."""
    job = {"id": "nudge-1", "conversation_id": "web:a", "kind": "nudge", "status": "pending", "due_at": 300.0,
           "data": {"note": "还在吗"}}
    stored = await backend.append("web:a", [ev(clock, "bot_reply", text="请问是哪一个？"),
                                            ev(clock, "followup_scheduled", job_id="nudge-1", kind="nudge")],
                                  jobs=[job, {**job, "id": "survey-1", "kind": "survey", "due_at": 200.0}])
    assert [e.seq for e in stored] == [1, 2]
    assert await backend.job_get("nudge-1") == job
    assert [j["id"] for j in await backend.jobs_due(250.0)] == ["survey-1"]
    assert [j["id"] for j in await backend.jobs(conversation_id="web:a")] == ["survey-1", "nudge-1"]
    assert await backend.job_transition("nudge-1", "pending", "cancelled") is True
    assert [j["id"] for j in await backend.jobs(status="pending")] == ["survey-1"]
    assert await backend.append("web:b", [ev(clock, "customer_message", text="在吗")], jobs=[]) != []


async def test_jobs_due_and_claimed_once(backend: ConversationStore) -> None:
    for i, due in enumerate((300.0, 100.0, 200.0)):
        await backend.job_put({"id": f"j{i}", "conversation_id": "web:a", "kind": "survey", "status": "pending",
                               "due_at": due})
    await backend.job_put({"id": "other", "conversation_id": "web:b", "kind": "nudge", "status": "done",
                           "due_at": 50.0})
    assert [j["id"] for j in await backend.jobs_due(250.0)] == ["j1", "j2"]
    claims = await asyncio.gather(*(backend.job_transition("j1", "pending", "claimed", worker=w) for w in "abc"))
    assert claims.count(True) == 1
    job = await backend.job_get("j1")
    assert job is not None and job["status"] == "claimed" and job["worker"] in "abc"
    assert [j["id"] for j in await backend.jobs_due(250.0)] == ["j2"]
    assert await backend.job_transition("j1", "pending", "done") is False
    assert await backend.job_transition("j2", "pending", "pending", due_at=900.0) is True
    assert await backend.jobs_due(250.0) == []
    assert [j["id"] for j in await backend.jobs(conversation_id="web:a")] == ["j1", "j0", "j2"]
    assert [j["id"] for j in await backend.jobs(status="done")] == ["other"]
    assert await backend.job_get("missing") is None


async def test_versioned_records_refuse_a_lost_update(backend: ConversationStore) -> None:
    assert await backend.record_put("faq", "zh-1", {"answer": "a"}, expected_version=0) == 1
    with pytest.raises(ConflictError):
        await backend.record_put("faq", "zh-1", {"answer": "b"}, expected_version=0)
    assert await backend.record_put("faq", "zh-1", {"answer": "b"}, expected_version=1) == 2
    with pytest.raises(ConflictError):
        await backend.record_put("faq", "zh-1", {"answer": "stale"}, expected_version=1)
    assert await backend.record_get("faq", "zh-1") == {"answer": "b", "version": 2}
    assert await backend.record_put("faq", "zh-1", {"answer": "c"}) == 3
    await backend.record_put("faq", "en-1", {"answer": "x"})
    await backend.record_put("agent", "li", {"name": "li"})
    assert [r["answer"] for r in await backend.records("faq")] == ["x", "c"]
    await backend.record_delete("faq", "en-1")
    assert await backend.record_get("faq", "en-1") is None


async def test_bus_delivers_what_is_published_after_subscribing(backend: ConversationStore) -> None:
    await backend.publish("kb", {"lost": True})
    sub = backend.subscribe()
    await backend.publish("kb", {"entry": "zh-1"})
    await backend.publish("deliver", {"to": "web:a", "text": "您好"})
    it = aiter(sub)
    assert await asyncio.wait_for(anext(it), 5) == ("kb", {"entry": "zh-1"})
    assert await asyncio.wait_for(anext(it), 5) == ("deliver", {"to": "web:a", "text": "您好"})
    sub.close()


async def test_delete_conversation_erases_everything_about_it(backend: ConversationStore, clock: FakeClock) -> None:
    await backend.append("web:a", [ev(clock, "customer_message", text="13812345678")])
    await backend.append("web:b", [ev(clock, "customer_message", text="keep")])
    await backend.put_ticket({"id": "T1", "conversation_id": "web:a"})
    await backend.job_put({"id": "J1", "conversation_id": "web:a", "status": "pending", "due_at": 1.0})
    await backend.queue_put("web:a", 1.0)
    await backend.delete_conversation("web:a")
    assert await backend.events("web:a") == []
    assert await backend.conversations() == ["web:b"]
    assert await backend.tickets() == [] and await backend.jobs() == [] and await backend.queue_items() == []
