"""Several real worker processes on loopback sharing one real Redis: nothing lost, nothing done twice.

Each test starts its own `python -m bot serve` processes (a config.toml of its own: the repository's file with
the store on Redis under a fresh key prefix), talks to them over the wire as the widget and the console do,
and kills every process and deletes every key of its prefix afterwards, pass or fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import aiohttp
import pytest
import redis.asyncio
from aiohttp.test_utils import TestServer

from bot.knowledge import load_dir
from tests.fake_wechat_api import FAKE_WECHAT_STATE, FakeWechatState, make_fake_wechat_api
from tests.requirements import missing
from tests.storage.conftest import REDIS_URL, delete_prefix
from tests.workers import (ROOT, Closed, Console, PrivateRedis, Widget, Worker, add_agent, eventually, free_port,
                           redis_server_version, write_config)


# Agents on duty all day, no rate limit in the way of a scripted customer, follow-ups never held back.
BASE_OVERRIDES: dict[str, dict[str, Any]] = {
    "shop": {"business_hours": "00:00-24:00"},
    "channels.webchat": {"rate_limit_per_minute": 10000},
    "followups": {"quiet_hours": "00:00-00:00"},  # an empty range: never quiet
}


class Cluster:
    """The workers of one test, their config and their Redis key prefix."""

    def __init__(self, folder: Path, session: aiohttp.ClientSession) -> None:
        self.folder = folder
        self.session = session
        self.prefix = f"kefu-workers-test:{uuid.uuid4().hex}:"
        self.store_url = REDIS_URL
        self.workers: list[Worker] = []
        self.config: Path | None = None
        self.urls: set[str] = set()
        self.env: dict[str, str] = {}

    def configure(self, overrides: Mapping[str, Mapping[str, Any]] = {}, *, store_url: str | None = None) -> Path:
        self.store_url = store_url or self.store_url
        self.urls.add(self.store_url)
        merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in BASE_OVERRIDES.items()}
        for section, values in overrides.items():
            merged.setdefault(section, {}).update(values)
        self.config = write_config(self.folder, self.store_url, self.prefix, merged)
        return self.config

    async def start(self, count: int = 1, *, reuse_port: int = 0) -> list[Worker]:
        """`count` workers on ports of their own, or one `--workers reuse_port` group on one port."""
        if self.config is None:
            self.configure()
        assert self.config is not None
        started = []
        for _ in range(1 if reuse_port else count):
            n = len(self.workers)
            worker = Worker(self.config, free_port(), self.folder / f"worker{n}.log", workers=reuse_port or 1,
                            env=self.env)
            self.workers.append(worker)
            started.append(worker)
        await asyncio.gather(*(w.wait_ready(self.session) for w in started))
        return started

    def stop_all(self) -> None:
        for worker in self.workers:
            worker.kill()

    def logs(self) -> str:
        return "\n".join(f"--- {w.log.name} ---\n{w.tail(40)}" for w in self.workers)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        yield s


async def _redis_answers(url: str) -> None:
    client = redis.asyncio.Redis.from_url(url, socket_connect_timeout=2)
    try:
        await client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        missing(f"Redis at {url} ({type(exc).__name__}: {exc})")
    finally:
        await client.aclose()


@pytest.fixture
async def cluster(tmp_path: Path, session: aiohttp.ClientSession,
                  request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    await _redis_answers(REDIS_URL)
    c = Cluster(tmp_path, session)
    failed_before = request.session.testsfailed
    try:
        yield c
    finally:
        c.stop_all()
        if request.session.testsfailed > failed_before:  # the call phase failed: show what the workers said
            print(c.logs())
        for url in c.urls:
            try:
                await delete_prefix(url, c.prefix)
            except (redis.exceptions.RedisError, OSError):
                pass  # a private redis-server already gone takes its keys with it


def replies(frames: list[dict[str, Any]], sender: str | None = None) -> list[str]:
    return [f["text"] for f in frames if f["type"] == "reply" and (sender is None or f["from"] == sender)]


async def log_events(cluster: Cluster, conversation_id: str) -> list[dict[str, Any]]:
    """A conversation's raw event log as the Redis store keeps it (a list of JSON events)."""
    client = redis.asyncio.Redis.from_url(cluster.store_url, decode_responses=True)
    try:
        return [json.loads(raw) for raw in await client.lrange(f"{cluster.prefix}log:{conversation_id}", 0, -1)]
    finally:
        await client.aclose()


async def agents(cluster: Cluster, *accounts: tuple[str, str, str]) -> None:
    """Create accounts with the CLI, in parallel (argon2 hashing dominates)."""
    assert cluster.config is not None
    await asyncio.gather(*(add_agent(cluster.config, name, password, "--role", role)
                           for name, password, role in accounts))


# -- 0. start-up ------------------------------------------------------------------------------------------


async def test_workers_starting_together_on_an_empty_store_all_load_the_whole_kb(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    """Found by these tests: a worker that started while another was seeding the FAQ into Redis loaded only
    the entries seeded so far (45 of 178), and answered with that half KB until restarted."""
    cluster.configure()
    workers = await cluster.start(3)
    expected = len(load_dir(ROOT / "knowledge_base").entries)
    counts = []
    for worker in workers:
        async with session.get(worker.url + "/healthz") as resp:
            counts.append((await resp.json())["faq_entries"])
    assert counts == [expected] * 3


# -- 1. customer on A, agent on B ------------------------------------------------------------------------


async def test_customer_on_one_worker_and_agent_on_another_talk_both_ways(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    cluster.configure()
    (a, b), _ = await asyncio.gather(cluster.start(2), agents(cluster, ("wang", "password-1", "agent")))
    customer = Widget(session)
    await customer.connect(a.url)
    frames = await customer.ask("转人工")
    assert any("第 **1** 位" in t for t in replies(frames) + [f.get("text", "") for f in frames]), frames

    agent = Console(b.url)
    try:
        await agent.log_in("wang", "password-1")
        await agent.open_socket()
        queue = await agent.expect(lambda f: f["type"] == "queue" and f["items"])
        conv = queue["items"][0]["conversation_id"]
        await agent.ws.send_json({"type": "watch", "conversation_id": conv})  # type: ignore[union-attr]

        # Customer (A) → console (B), through the bus, while queued.
        mark = agent.mark()
        await customer.ask("我的订单还没到")
        seen = await agent.expect(lambda f: f["type"] == "message" and f["item"].get("text") == "我的订单还没到",
                                  since=mark)
        assert seen["conversation_id"] == conv

        # Claim on B: the customer on A is told who joined.
        mark = customer.mark()
        await agent.call("POST", f"/api/console/conversations/{conv}/claim")
        joined = await customer.expect(lambda f: f["type"] == "reply" and "小王" in f["text"] or
                                       f["type"] == "reply" and "wang" in f["text"], since=mark)
        assert joined["from"] == "system"

        # Agent (B) → customer (A).
        mark = customer.mark()
        await agent.call("POST", f"/api/console/conversations/{conv}/reply", {"text": "您好，我来帮您查一下。"})
        got = await customer.expect(lambda f: f["type"] == "reply" and f["from"] == "agent", since=mark)
        assert got["text"] == "您好，我来帮您查一下。"

        # Customer (A) → agent (B) while the agent holds the conversation; the bot stays quiet.
        mark = agent.mark()
        frames = await customer.ask("订单号是E20261118000001")
        assert replies(frames, "bot") == []
        seen = await agent.expect(lambda f: f["type"] == "message" and "E20261118000001" in f["item"].get("text", ""),
                                  since=mark)
        assert seen["item"]["from"] == "customer"

        detail = await agent.call("GET", f"/api/console/conversations/{conv}")
        said = [(e["from"], e.get("text")) for e in detail["events"]
                if e["type"] in ("customer_message", "agent_message")]
        assert said == [("customer", "转人工"), ("customer", "我的订单还没到"), ("agent", "您好，我来帮您查一下。"),
                        ("customer", "订单号是E20261118000001")]
    finally:
        await agent.close()
        await customer.close()


# -- 2. a KB edit on A answers on B ----------------------------------------------------------------------

NEW_ENTRY = {"id": "zh-workers-mars", "category": "logistics", "lang": "zh", "question": "可以送货到火星基地吗",
             "similar": ["火星基地能送货吗", "火星基地包邮吗"],
             "answer": "您好，火星基地暂不在配送范围内，**敬请谅解**。如有其他问题，欢迎您随时咨询。"}


async def test_a_visitors_second_tab_on_another_worker_sees_the_bot_answer_live(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    cluster.configure()
    a, b = await cluster.start(2)
    bus = redis.asyncio.Redis.from_url(cluster.store_url, decode_responses=True)
    listener = bus.pubsub()
    await listener.subscribe(f"{cluster.prefix}bus")
    try:
        first = Widget(session)
        await first.connect(a.url)
        await first.ask("你好")  # one tab: its replies stay off the bus
        second = Widget(session)
        second.token = first.token  # the same visitor in another tab, whose socket landed on the other worker
        await second.connect(b.url)
        await asyncio.sleep(0.3)  # the two workers learn of each other's tab
        mark = second.mark()
        answer = next(f for f in await first.ask("七天无理由退货怎么申请？") if f["type"] == "reply")
        seen = await second.expect(lambda f: f["type"] == "reply", since=mark)
        assert seen["text"] == answer["text"] and "7" in seen["text"]
        await asyncio.sleep(0.3)
        assert len([f for f in first.frames if f["type"] == "reply"]) == 2  # never twice in the asking tab
        sent = []
        for _ in range(50):  # everything published so far (a subscribe confirmation reads as None)
            raw = await listener.get_message(ignore_subscribe_messages=True, timeout=0.02)
            if raw is not None:
                sent.append(json.loads(raw["data"])["payload"])
        replies = [p for p in sent if "replies" in p]
        assert [p["replies"][0]["text"] for p in replies] == [answer["text"]], sent
        await first.close()
        await second.close()
    finally:
        await listener.aclose()
        await bus.aclose()


async def test_kb_edit_on_one_worker_answers_on_another_within_a_second(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    cluster.configure()
    (a, b), _ = await asyncio.gather(cluster.start(2), agents(cluster, ("boss", "password-3", "admin")))
    customer = Widget(session)
    await customer.connect(b.url)
    before = replies(await customer.ask("可以送货到火星基地吗"))
    assert not any("火星基地暂不在配送范围内" in t for t in before)

    admin = Console(a.url)
    try:
        await admin.log_in("boss", "password-3")
        saved = time.monotonic()
        created = await admin.call("POST", "/api/admin/faq", NEW_ENTRY, status=201)
        assert created["version"] == 1

        async def answered_on_b() -> bool:
            return any("火星基地暂不在配送范围内" in t for t in replies(await customer.ask("火星基地能送货吗")))

        await eventually(answered_on_b, timeout=1.0, interval=0.02, what="worker B answers with the new entry")
        assert time.monotonic() - saved < 1.0

        # An edit (a new version) reaches B the same way.
        changed = {**created, "answer": "您好，火星基地的配送**明年开通**，届时欢迎您下单。"}
        await admin.call("PUT", f"/api/admin/faq/{NEW_ENTRY['id']}", changed)

        async def edited_on_b() -> bool:
            return any("明年开通" in t for t in replies(await customer.ask("可以送货到火星基地吗")))

        await eventually(edited_on_b, timeout=1.0, interval=0.02, what="worker B answers with the edited entry")
    finally:
        await admin.close()
        await customer.close()


# -- 3. a follow-up fires once with three workers --------------------------------------------------------


async def test_survey_fires_exactly_once_with_three_workers(cluster: Cluster, session: aiohttp.ClientSession) -> None:
    # Three workers on one port (SO_REUSEPORT), every one sweeping for due jobs every 0.3 s and the survey
    # due the moment the conversation closes: all three race for it.
    cluster.configure({"followups": {"survey_delay_minutes": 0, "sweep_seconds": 0.3, "scheduler": True}})
    (group,), _ = await asyncio.gather(cluster.start(reuse_port=3),
                                       agents(cluster, ("boss", "password-3", "admin")))
    customers = [Widget(session) for _ in range(3)]
    admin = Console(group.url)
    try:
        for customer in customers:
            await customer.connect(group.url)
            await customer.ask("可以开发票吗")
            await customer.ask("再见")  # closes the conversation: the survey is scheduled, due now
        await admin.log_in("boss", "password-3")

        async def all_done() -> list[dict[str, Any]] | None:
            jobs = (await admin.call("GET", "/api/followups"))["items"]
            surveys = [j for j in jobs if j["kind"] == "survey"]
            return surveys if len(surveys) == 3 and all(j["status"] == "done" for j in surveys) else None

        surveys = await eventually(all_done, timeout=5.0, interval=0.1, what="three surveys done")
        # Give a doubled send every chance to show up: two more sweeps on every worker.
        await asyncio.sleep(0.7)
        for customer in customers:
            await customer.expect(lambda f: f["type"] == "reply" and "打个分" in f["text"], since=0)
            sent = [f for f in customer.frames if f["type"] == "reply" and "打个分" in f["text"]]
            assert len(sent) == 1, sent
            assert [s["value"] for s in sent[0]["suggestions"]] == ["5", "4", "3", "2", "1"]
            history = await customer.connect(group.url)
            assert sum("打个分" in h["text"] for h in history if h["from"] == "bot") == 1
        for job in surveys:
            types = [e["type"] for e in await log_events(cluster, job["conversation_id"])]
            assert types.count("followup_sent") == 1, types
        # Every job record is done exactly once: one record per conversation, none left pending or running.
        jobs = (await admin.call("GET", "/api/followups"))["items"]
        assert sorted(j["conversation_id"] for j in jobs if j["kind"] == "survey") == sorted(
            j["conversation_id"] for j in surveys)
        assert {j["status"] for j in jobs if j["kind"] == "survey"} == {"done"}
    finally:
        await admin.close()
        for customer in customers:
            await customer.close()


# -- 4. kill -9 of the worker holding the customer ------------------------------------------------------


def customer_ids(history: list[dict[str, Any]]) -> list[str]:
    return [h["client_id"] for h in history if h["from"] == "customer"]


def describe(history: list[dict[str, Any]]) -> str:
    return "\n".join(f"{h['seq']:3} {h['from']:8} {h.get('client_id') or '':32} {h['text'][:30]}" for h in history)


def answered(history: list[dict[str, Any]]) -> bool:
    """Every customer message is followed by at least one reply (none stored without its answer)."""
    return all(i + 1 < len(history) and history[i + 1]["from"] != "customer"
               for i, h in enumerate(history) if h["from"] == "customer")


async def test_kill_9_of_a_worker_mid_conversation_loses_and_doubles_nothing(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    cluster.configure()
    workers = await cluster.start(3)
    customer = Widget(session)
    await customer.connect(workers[0].url)
    await customer.ask("退货运费谁出")
    await customer.ask("七天无理由退货怎么申请")
    sent = list(customer.acks)  # the client ids acked so far, in order
    questions = ["保修多久", "安装收费吗", "退款多久到账", "优惠券怎么用"]
    for round_, (victim, rescuer) in enumerate(((workers[0], workers[1]), (workers[1], workers[2]))):
        # A message on the wire (not yet acked) when the worker dies, at a slightly different moment each round.
        in_flight = await customer.send(questions[2 * round_])
        await asyncio.sleep(0.005 * round_)
        victim.kill()
        # Typed while the widget is reconnecting: waits in the outbox.
        customer.outbox.append((uuid.uuid4().hex, questions[2 * round_ + 1]))
        sent += [in_flight, customer.outbox[-1][0]]
        history = await customer.connect(rescuer.url)
        assert customer_ids(history) == [c for c in sent if c in customer_ids(history)]
        await customer.flush()
        # The ack for something already stored may have been lost with the worker: a resend is recognised.
        since = customer.mark()
        await customer.ws.send_json({"type": "message", "id": sent[0], "text": "退货运费谁出"})  # type: ignore[union-attr]
        assert (await customer.wait_ack(sent[0], since=since))["duplicate"] is True
    history = await customer.connect(workers[2].url)
    assert customer_ids(history) == sent, "every message once, in the order typed"
    assert answered(history), describe(history)
    assert customer.outbox == []


async def test_a_worker_killed_between_claiming_and_storing_a_message_does_not_lose_it(
        cluster: Cluster, session: aiohttp.ClientSession) -> None:
    """The narrow window a real kill -9 rarely hits: a worker took the message's dedup claim in Redis and died
    before the message was stored. The widget's resend, on another worker, must still get it stored."""
    cluster.configure()
    (survivor,) = await cluster.start(1)
    customer = Widget(session)
    await customer.connect(survivor.url)
    await customer.ask("退货运费谁出")
    assert customer.token is not None
    visitor = customer.token.rpartition(".")[0]
    cid = uuid.uuid4().hex
    # Exactly what the dead worker left behind: the claim (as the store's cache_add writes it), nothing else.
    client = redis.asyncio.Redis.from_url(cluster.store_url, decode_responses=True)
    try:
        key = f"{cluster.prefix}cache:claim:dedup:web:{visitor}:{cid}"
        await client.hset(key, mapping={"value": "1", "exp": str(time.time() + 86400)})
        await client.pexpire(key, 86_400_000)
    finally:
        await client.aclose()
    since = customer.mark()
    await customer.send("多久发货", cid)
    await customer.wait_ack(cid, since=since, timeout=10)
    history = await customer.connect(survivor.url)
    assert customer_ids(history)[-1:] == [cid], "the message is stored"
    assert answered(history)


# -- 5. Redis restarted in the middle --------------------------------------------------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Any:
    if redis_server_version() is None:
        missing("redis-server binary not on PATH (apt-get install redis-server)")
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


async def reconnect(widget: Widget, url: str, *, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The widget's reconnect loop: retry (short backoff) until a welcome, then resend the outbox."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            history = await widget.connect(url)
            await widget.flush()
            return history
        except (aiohttp.ClientError, Closed, asyncio.TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_redis_restart_mid_conversation_loses_no_message_and_service_resumes(
        cluster: Cluster, session: aiohttp.ClientSession, private_redis: PrivateRedis) -> None:
    await private_redis.wait_ready()
    cluster.configure(store_url=private_redis.url)
    (a, b), _ = await asyncio.gather(cluster.start(2), agents(cluster, ("wang", "password-1", "agent")))
    customer = Widget(session)
    await customer.connect(a.url)
    await customer.ask("退货运费谁出")
    await customer.ask("七天无理由退货怎么申请")
    private_redis.stop()

    # Sent while Redis is down: not acked (an error, and the socket is closed), so it stays in the outbox.
    cid = await customer.send("保修多久")
    try:
        frame = await customer.expect(lambda f: f["type"] in ("ack", "error") and f.get("id") == cid,
                                      since=0, timeout=10)
        assert frame["type"] == "error" and frame["code"] == "unavailable", frame
    except Closed:
        pass
    assert [c for c, _ in customer.outbox] == [cid]
    customer.outbox.append((uuid.uuid4().hex, "安装收费吗"))  # typed while reconnecting

    private_redis.start()
    history = await reconnect(customer, a.url)
    assert customer.outbox == []
    history = await customer.connect(b.url)
    assert customer_ids(history) == list(customer.acks), describe(history)
    assert [h["text"] for h in history if h["from"] == "customer"] == [
        "退货运费谁出", "七天无理由退货怎么申请", "保修多久", "安装收费吗"]
    assert answered(history), describe(history)

    # Service resumed by itself on both workers, bus included: a handoff on B, answered by an agent on A.
    await customer.ask("转人工")
    agent = Console(a.url)
    try:
        await agent.log_in("wang", "password-1")
        queue = await eventually(lambda: agent.call("GET", "/api/console/queue"), what="queue")
        conv = queue["items"][0]["conversation_id"]
        await agent.call("POST", f"/api/console/conversations/{conv}/claim")
        mark = customer.mark()
        await agent.call("POST", f"/api/console/conversations/{conv}/reply", {"text": "您好，Redis 回来了。"})
        # Live; or, when B's bus was still resubscribing as the reply was published, through the reconnect
        # B asks of every widget once its bus is back (the history then carries what the push missed).
        try:
            got = await customer.expect(lambda f: f["type"] == "reply" and f["from"] == "agent", since=mark)
            assert got["text"] == "您好，Redis 回来了。"
        except Closed:
            history = await reconnect(customer, b.url)
            assert [h["text"] for h in history if h["from"] == "agent"][-1:] == ["您好，Redis 回来了。"]
    finally:
        await agent.close()
        await customer.close()


# -- 6. one WeChat MsgId posted to two workers ----------------------------------------------------------

WX_TOKEN = "kefuWorkersToken42"
WX_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WX_APP_ID = "wx0123456789abcdef"
WX_SECRET = "app-secret-for-worker-tests"
WX_ACCOUNT = "gh_0123456789ab"


def wx_query() -> dict[str, str]:
    ts, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([WX_TOKEN, ts, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": ts, "nonce": nonce}


def wx_text(openid: str, text: str, msg_id: int) -> str:
    return (f"<xml><ToUserName><![CDATA[{WX_ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
            f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>")


@pytest.fixture
async def fake_wechat() -> AsyncIterator[tuple[str, FakeWechatState]]:
    """Tencent's API, faked on loopback: the workers push late answers to it."""
    app = make_fake_wechat_api(WX_APP_ID, WX_SECRET)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("/")), app[FAKE_WECHAT_STATE]
    await server.close()


async def test_one_wechat_msgid_posted_to_two_workers_is_processed_once(
        cluster: Cluster, session: aiohttp.ClientSession, fake_wechat: tuple[str, FakeWechatState]) -> None:
    api_base, fake = fake_wechat
    cluster.configure({"channels.wechat": {"enabled": True, "app_id": WX_APP_ID, "account_id": WX_ACCOUNT,
                                           "mode": "plain", "api_base": api_base}})
    cluster.env.update({"KEFU_WECHAT_TOKEN": WX_TOKEN, "KEFU_WECHAT_APP_SECRET": WX_SECRET,
                        "KEFU_WECHAT_ENCODING_AES_KEY": WX_AES_KEY})
    a, b = await cluster.start(2)

    async def post(worker: Worker, body: str) -> tuple[int, str]:
        async with session.post(worker.url + "/wechat", params=wx_query(), data=body.encode()) as resp:
            return resp.status, await resp.text()

    for round_ in range(5):
        openid = f"o-workers-{round_}"
        fake.customer_wrote(openid)
        body = wx_text(openid, "退货运费谁出", 7_000_000 + round_)
        # The same callback at both workers at once (Tencent's retry landing elsewhere), then once more late.
        answers = list(await asyncio.gather(post(a, body), post(b, body)))
        answers.append(await post((a, b)[round_ % 2], body))
        assert all(status == 200 for status, _ in answers), answers
        events = await log_events(cluster, f"wechat:{openid}")
        types = [e["type"] for e in events]
        assert types.count("customer_message") == 1, types
        assert types.count("bot_reply") == 1, types
        # The customer sees one answer: each passive reply is the same one, and nothing was pushed as well.
        passive = {text for _, text in answers if text.startswith("<xml>")}
        assert len({ET.fromstring(x).findtext("Content") for x in passive}) <= 1, passive
        assert passive or [m for m in fake.messages if m.touser == openid]
        assert not (passive and [m for m in fake.messages if m.touser == openid])


# -- load on one worker ------------------------------------------------------------------------------------


async def test_a_burst_beyond_the_redis_pool_waits_for_connections_instead_of_failing(tmp_path: Path) -> None:
    """Found by the web-chat benchmark (200 customers): redis-py 8's default pool refused the 101st concurrent
    command ("Too many connections"), so a worker under load closed customers' sockets with 1013."""
    await _redis_answers(REDIS_URL)
    from bot.storage.redis import MAX_CONNECTIONS, RedisStore
    from tests.fakes import FakeClock
    from datetime import datetime, timezone

    prefix = f"kefu-workers-test:{uuid.uuid4().hex}:"
    store = await RedisStore.connect(REDIS_URL, FakeClock(datetime(2026, 11, 24, 2, tzinfo=timezone.utc)),
                                     prefix=prefix)
    try:
        results = await asyncio.gather(*(store.events(f"web:burst-{i}") for i in range(3 * MAX_CONNECTIONS)))
        assert results == [[]] * (3 * MAX_CONNECTIONS)
    finally:
        await store.close()
        await delete_prefix(REDIS_URL, prefix)
