"""WeChat webhook load: concurrent senders posting signed text messages to the callback URL.

Runs, in one go, the real bot (WeChat channel on, plain mode, SQLite or Redis) and a minimal aiohttp server
that checks the signature, parses the XML and returns a fixed reply, each in its own process; prints
requests per second and p50/p99 for both, plus the ratio. Each bot setup first gets every sample question
once ("cold": each new to the process), then `--rounds` measured runs, each right after a run of the minimal
server (this machine's speed drifts by 20% within minutes); medians are compared. Loopback only; bounded
in count and time.

    .venv/bin/python benchmarks/webhook_load.py --senders 50 --requests 2000 [--rounds 3]
                                                [--setups sqlite1,redis1,redis2]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from servers import WECHAT_TOKEN, flush_prefix, start_bot, start_script, stop, wait_port

# The sample shop's hand-written customer questions the KB answers (249): real variety, not a few questions the bot's cache
# of recent answers would always hold.
QUESTIONS = [case["query"] for line in
             (Path(__file__).with_name("shop_questions.jsonl")).read_text(encoding="utf-8").splitlines()
             if line.strip() and (case := json.loads(line))["gold"] is not None]

MINIMAL_SERVER = r"""
import hashlib, hmac, os, sys, time
from xml.etree import ElementTree
from aiohttp import web

TOKEN = os.environ["TOKEN"]

async def callback(request):
    q = request.query
    expected = hashlib.sha1("".join(sorted([TOKEN, q["timestamp"], q["nonce"]])).encode()).hexdigest()
    if not hmac.compare_digest(expected, q.get("signature", "")):
        raise web.HTTPForbidden()
    body = await request.read()
    if b"<!DOCTYPE" in body:
        raise web.HTTPBadRequest()
    root = ElementTree.fromstring(body)
    to_user, from_user = root.findtext("FromUserName"), root.findtext("ToUserName")
    xml = (f"<xml><ToUserName><![CDATA[{to_user}]]></ToUserName><FromUserName><![CDATA[{from_user}]]>"
           f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           f"<Content><![CDATA[fixed reply]]></Content></xml>")
    return web.Response(text=xml, content_type="application/xml")

app = web.Application()
app.router.add_post("/wechat", callback)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def signed_query() -> dict[str, str]:
    timestamp, nonce = str(int(time.time())), os.urandom(4).hex()
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": "bench"}


def message(openid: str, msg_id: int, text: str) -> bytes:
    return (f"<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{text}]]></Content><MsgId>{msg_id}</MsgId></xml>").encode()


async def load(url: str, senders: int, total: int, first: int = 0) -> dict[str, float]:
    """`total` requests numbered from `first`: every number a new customer and a new MsgId."""
    latencies: list[float] = []
    counter = iter(range(first, first + total))
    failures = 0
    answered = 0  # passive XML text replies addressed back to the sender: the adapter really answered

    async def sender(session: aiohttp.ClientSession) -> None:
        nonlocal failures, answered
        for n in counter:
            # Every request is a new customer with one question, as most WeChat traffic is; one customer asking
            # question after question would soon be handed to an agent (two misses in a row) and left quiet.
            openid = f"o{n:07d}"
            body = message(openid, 10_000_000 + n, QUESTIONS[(n * 31) % len(QUESTIONS)])
            start = time.perf_counter()
            async with session.post(url, params=signed_query(), data=body) as resp:
                reply = await resp.read()
                failures += resp.status != 200
            latencies.append(time.perf_counter() - start)
            answered += reply.startswith(b"<xml>") and f"<![CDATA[{openid}]]>".encode() in reply

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(sender(session) for _ in range(senders))), 600)
        elapsed = time.perf_counter() - start
    latencies.sort()
    return {"requests": len(latencies), "failures": failures, "answered": answered, "seconds": elapsed,
            "per_second": len(latencies) / elapsed, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


def median_of(runs: list[dict[str, float]], minimal: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (counts summed), the per-second range, and the median of each
    round's share of the minimal server's run just before it."""
    out = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    for key in ("requests", "failures", "answered"):
        out[key] = sum(r[key] for r in runs)
    out["per_second_low"] = min(r["per_second"] for r in runs)
    out["per_second_high"] = max(r["per_second"] for r in runs)
    out["share"] = statistics.median(r["per_second"] / m["per_second"] for r, m in zip(runs, minimal, strict=True))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--senders", type=int, default=50)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="measured runs per setup, each right after a run of the minimal server")
    parser.add_argument("--setups", default="sqlite1", help="comma list of sqlite1, redis1, redis2")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    results: dict[str, dict[str, float]] = {}
    minimal_url = "http://127.0.0.1:18191/wechat"
    with tempfile.TemporaryDirectory() as tmp:
        minimal = start_script(MINIMAL_SERVER, 18191)
        try:
            wait_port(18191)
            asyncio.run(load(minimal_url, args.senders, args.requests))  # warm-up, not counted
            for i, setup in enumerate(args.setups.split(",")):
                port = 18192 + i
                store = redis_url if setup.startswith("redis") else None
                bot = start_bot(port, Path(tmp) / setup, store_url=store, workers=int(setup[-1]), wechat=True)
                try:
                    wait_port(port)
                    time.sleep(1.5)
                    url = f"http://127.0.0.1:{port}/wechat"
                    # First every sample question once, each new to the process (the sentence encoder runs for
                    # it), then the measured runs, where the bot has seen them all (as a shop's bot has most).
                    results[f"{setup} cold"] = asyncio.run(load(url, args.senders, len(QUESTIONS)))
                    # The machine's speed drifts between runs: each bot run is paired with a minimal run just
                    # before it, and the medians of the pairs are compared.
                    mins, bots = [], []
                    for r in range(args.rounds):
                        mins.append(asyncio.run(load(minimal_url, args.senders, args.requests)))
                        bots.append(asyncio.run(load(url, args.senders, args.requests,
                                                     first=len(QUESTIONS) + r * args.requests)))
                        time.sleep(2.5)  # the bot's WAL checkpoint (every second) must not slow the next minimal run
                    results[f"minimal ({setup})"] = median_of(mins, mins)
                    results[setup] = median_of(bots, mins)
                finally:
                    stop(bot)
                    if store:
                        flush_prefix(store, f"kefu-bench-{port}:")
        finally:
            stop(minimal)
    print(f"webhook: {args.senders} concurrent senders, {args.requests} requests a run, medians of "
          f"{args.rounds} rounds (share: of the paired minimal runs; failures and answered: totals; cold: one pass)")
    for name, r in results.items():
        setup = name.removeprefix("minimal (").rstrip(")").split()[0]
        ratio = r.get("share", r["per_second"] / results[f"minimal ({setup})"]["per_second"])
        spread = (f"({r['per_second_low']:.0f}-{r['per_second_high']:.0f})" if "per_second_low" in r else "")
        print(f"  {name:18s} {r['per_second']:7.0f} req/s {spread:13s} p50 {r['p50_ms']:6.1f} ms   "
              f"p99 {r['p99_ms']:6.1f} ms   failures {r['failures']:.0f}   answered {r['answered']:.0f}   "
              f"{ratio:6.1%} of minimal")
    print(json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
