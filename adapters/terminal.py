"""`make chat`: talk to the shop's bot in the terminal, as a customer would in a chat window."""

from __future__ import annotations

import asyncio
import re
import sys
import uuid

from bot.clock import Clock
from bot.engine import ConversationEngine
from bot.models import IncomingMessage, Reply

_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\((https?://[^)\s]+)\)")


def shape(reply: Reply, *, color: bool) -> str:
    """Reply markup for a terminal: bold as ANSI bold (or 【】), links as "label (url)"."""
    text = _LINK.sub(r"\1 (\2)", reply.text)
    text = _BOLD.sub("\033[1m\\1\033[0m" if color else "【\\1】", text)
    for i, s in enumerate(reply.suggestions, 1):
        text += f"\n  [{i}] {s.label}"
    return text


async def chat(engine: ConversationEngine, clock: Clock, *, customer_id: str | None = None) -> None:
    customer = customer_id or f"term-{uuid.uuid4().hex[:8]}"
    color = sys.stdout.isatty()
    loop = asyncio.get_running_loop()
    last: tuple[Reply, ...] = ()
    print("(Ctrl-D to leave)")
    while True:
        try:
            line = await loop.run_in_executor(None, input, "> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        picked = [s.value for s in (last[-1].suggestions if last else ()) if line.strip() == s.label]
        msg = IncomingMessage("terminal", customer, picked[0] if picked else line, clock.now(),
                              channel_msg_id=uuid.uuid4().hex)
        replies = await engine.handle(msg)
        for reply in replies:
            print(shape(reply, color=color) + "\n")
        last = tuple(replies)
