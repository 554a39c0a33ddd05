"""Web-chat load: N concurrent customers each asking questions over the chat WebSocket.

Runs, in one go, the real bot (SQLite store in a temp dir, the sample KB) and a minimal aiohttp WebSocket
server that answers every message with a fixed JSON reply, each in its own process, and prints messages per
second and round-trip p50/p99 for both, plus the ratio. Loopback only; bounded in count and time.

    .venv/bin/python benchmarks/webchat_load.py --customers 200 --messages 10 [--setups sqlite1,redis1,redis2]
                                                [--pace 1.0]   (people who read before they ask again)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from servers import flush_prefix, start_bot, start_script, stop, wait_port

# The sample shop's hand-written customer questions the KB answers (249), so the bot's cache of recent
# answers meets the variety of real traffic rather than a handful of questions asked over and over.
QUESTIONS = [case["query"] for line in
             (Path(__file__).with_name("shop_questions.jsonl")).read_text(encoding="utf-8").splitlines()
             if line.strip() and (case := json.loads(line))["gold"] is not None]

MINIMAL_SERVER = r"""
import json, sys
from aiohttp import web

async def ws(request):
    sock = web.WebSocketResponse()
    await sock.prepare(request)
    async for msg in sock:
        data = json.loads(msg.data)
        if data.get("type") == "hello":
            await sock.send_str(json.dumps({"type": "welcome", "token": "t", "history": []}))
        else:
            await sock.send_str(json.dumps({"type": "ack", "id": data.get("id"), "duplicate": False}))
            await sock.send_str(json.dumps({"type": "reply", "from": "bot", "text": "fixed reply"}))
            await sock.send_str(json.dumps({"type": "typing", "from": "bot", "on": False}))
    return sock

app = web.Application()
app.router.add_get("/ws/chat", ws)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def customer(session: aiohttp.ClientSession, url: str, n: int, index: int, rtts: list[float],
                   pace: float) -> int:
    done = 0
    rng = random.Random(index)
    async with session.ws_connect(url) as ws:
        await ws.send_json({"type": "hello", "token": None, "lang": "zh"})
        await ws.receive_json(timeout=30)
        for i in range(n):
            if pace:  # a person reads the answer and types the next question
                await asyncio.sleep(rng.uniform(0.5, 1.5) * pace)
            text = QUESTIONS[(index * 7 + i * 31) % len(QUESTIONS)]
            start = time.perf_counter()
            await ws.send_json({"type": "message", "id": f"{index}-{i}", "text": text})
            while True:  # a turn ends with typing off (or an error frame)
                frame = await ws.receive_json(timeout=30)
                if frame["type"] == "error" or (frame["type"] == "typing" and not frame["on"]):
                    break
            rtts.append(time.perf_counter() - start)
            done += 1
    return done


async def load(url: str, customers: int, messages: int, pace: float = 0.0) -> dict[str, float]:
    rtts: list[float] = []
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.perf_counter()
        counts = await asyncio.wait_for(
            asyncio.gather(*(customer(session, url, messages, i, rtts, pace) for i in range(customers))), 600)
        elapsed = time.perf_counter() - start
    rtts.sort()
    return {"messages": sum(counts), "seconds": elapsed, "per_second": sum(counts) / elapsed,
            "p50_ms": 1000 * statistics.median(rtts), "p99_ms": 1000 * rtts[int(0.99 * (len(rtts) - 1))]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--setups", default="sqlite1",
                        help="comma list of sqlite1, redis1, redis2 (Redis at $REDIS_URL)")
    parser.add_argument("--pace", type=float, default=0.0,
                        help="seconds a customer waits between messages (±50%%); 0 = as fast as answered")
    args = parser.parse_args()
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        minimal = start_script(MINIMAL_SERVER, 18091)
        try:
            wait_port(18091)
            results["minimal"] = asyncio.run(load("http://127.0.0.1:18091/ws/chat", args.customers, args.messages,
                                                  args.pace))
        finally:
            stop(minimal)
        for i, setup in enumerate(args.setups.split(",")):
            port = 18092 + i
            store = redis_url if setup.startswith("redis") else None
            bot = start_bot(port, Path(tmp) / setup, store_url=store, workers=int(setup[-1]))
            try:
                wait_port(port)
                time.sleep(1.5)
                results[setup] = asyncio.run(load(f"http://127.0.0.1:{port}/ws/chat", args.customers, args.messages,
                                                  args.pace))
            finally:
                stop(bot)
                if store:
                    flush_prefix(store, f"kefu-bench-{port}:")
    print(f"web chat: {args.customers} customers x {args.messages} messages"
          + (f", {args.pace:g} s between a customer's messages" if args.pace else ", each sent when the last is answered"))
    for name, r in results.items():
        ratio = r["per_second"] / results["minimal"]["per_second"]
        print(f"  {name:8s} {r['per_second']:8.0f} msg/s   p50 {r['p50_ms']:6.1f} ms   p99 {r['p99_ms']:6.1f} ms"
              f"   ({r['messages']} in {r['seconds']:.1f} s)   {ratio:6.1%} of minimal")
    print(json.dumps({k: {m: round(v, 2) for m, v in r.items()} for k, r in results.items()}))


if __name__ == "__main__":
    main()
