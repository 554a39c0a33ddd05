"""Retention (PIPL: keep personal data no longer than needed): closed conversations older than the
configured number of days are erased."""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.conversation import fold
from bot.storage.base import ConversationStore


async def purge_closed(store: ConversationStore, now: datetime, days: int) -> int:
    """Erase closed conversations whose last event is older than `days`; returns how many."""
    cutoff = now - timedelta(days=days)
    recent = set(await store.conversations(since=cutoff))
    purged = 0
    for conv in await store.conversations():
        if conv in recent:
            continue
        if fold(await store.events(conv)).status == "closed":
            await store.delete_conversation(conv)
            purged += 1
    return purged
