"""The access log: one structured line a request, and the query string (openids, signatures) never in it."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest
from aiohttp import web

from adapters.access_log import AccessLogger
from bot.logs import JsonFormatter


async def test_a_request_is_logged_without_its_query(caplog: pytest.LogCaptureFixture) -> None:
    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="success")

    app = web.Application()
    app.router.add_post("/wechat", hello)
    runner = web.AppRunner(app, access_log_class=AccessLogger, access_log=logging.getLogger("aiohttp.access"))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.access"):
            async with aiohttp.ClientSession() as session:
                async with session.post(f"http://127.0.0.1:{port}/wechat",
                                        params={"openid": "oSecretOpenId", "signature": "abc123"}) as resp:
                    assert resp.status == 200
    finally:
        await runner.cleanup()
    records = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["msg"] == "POST /wechat 200"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/wechat", 200)
    assert line["bytes"] > len("success")  # the whole response as sent, headers included
    assert line["remote"] == "127.0.0.1" and 0 <= line["ms"] < 10_000
    assert "oSecretOpenId" not in str(line) and "abc123" not in str(line)
