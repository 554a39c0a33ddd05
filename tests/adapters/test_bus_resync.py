"""When a shared store's bus comes back after a loss (BUS_RESUMED), live channels make their clients fetch
state again and the worker reloads the FAQ, so nothing published during the gap stays missing."""

from __future__ import annotations

from typing import Any

import aiohttp

from bot.storage.base import BUS_RESUMED
from bot.storage.sqlite import SqliteStore
from tests.adapters.test_admin_api import customer_asks
from tests.adapters.test_webchat import app, client, hello, send  # noqa: F401 (fixtures)

Client = Any


async def test_widgets_are_told_to_reconnect_and_missed_faq_edits_are_loaded(client: Client,
                                                                            store: SqliteStore) -> None:
    record = await store.record_get("faq", "zh-invoice-how")
    assert record is not None
    new_answer = "您好，发票会在确认收货后 **24 小时内** 开具并发送到您的邮箱。请问还有其他可以帮您的吗？"
    # Saved by "another worker" whose bus message never arrived here.
    await store.record_put("faq", "zh-invoice-how", {**{k: v for k, v in record.items() if k != "version"},
                                                     "answer": new_answer}, expected_version=record["version"])
    async with client.ws_connect("/ws/chat") as ws:
        await hello(ws)
        await send(ws, "q-1", "可以开发票吗")
        await store.publish(BUS_RESUMED, {})
        closing = await ws.receive(timeout=5)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == 1001
    assert "24 小时内" in await customer_asks(client, "怎么开发票？")
