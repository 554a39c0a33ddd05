"""Sending on a server WebSocket that may close at any moment."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from bot import jsoncodec

logger = logging.getLogger(__name__)


async def send_json(ws: web.WebSocketResponse, frame: dict[str, Any]) -> None:
    """Send a frame; a socket that went away is logged, not raised (its handler cleans up)."""
    if ws.closed:
        return
    try:
        await ws.send_str(jsoncodec.dumps(frame))
    except ConnectionResetError:
        logger.info("socket went away while sending")
