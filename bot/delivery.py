"""Routes pushes (agent replies, notices, follow-ups) to the customer's channel."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from bot.models import Reply
from bot.outbox import Outbox, Undeliverable
from bot.storage.base import ConversationStore

logger = logging.getLogger(__name__)

DELIVER_TOPIC = "deliver"
TEXT_ONLY_CHANNELS = ("wechat",)  # suggestions arrive as plain lines: nothing to tap


def has_buttons(conversation_id: str) -> bool:
    """Whether the customer's channel shows suggestions as buttons (replies then say "tap", else "reply")."""
    return conversation_id.partition(":")[0] not in TEXT_ONLY_CHANNELS


class Delivery:
    def __init__(self, outboxes: Mapping[str, Outbox]) -> None:
        self._outboxes = dict(outboxes)

    async def send(self, conversation_id: str, replies: Sequence[Reply], *, strict: bool = False) -> bool:
        """Push replies to the conversation's customer; False when the channel cannot reach them now.

        With `strict`, a channel's Undeliverable is raised instead of returning False, so a follow-up can
        tell "try later" from "cannot reach them until they write again" (WeChat's 48-hour window)."""
        channel, _, customer = conversation_id.partition(":")
        outbox = self._outboxes.get(channel)
        if outbox is None:
            logger.warning("no outbox for channel %s: %d replies not pushed", channel, len(replies))
            return False
        try:
            return await outbox.deliver(customer, replies)
        except Undeliverable as exc:
            if strict:
                raise
            logger.info("%s: %d replies not pushed (%s)", channel, len(replies), exc.reason)
            return False


class BusOutbox:
    """For channels whose customer sockets may live on any worker: publish, and the holder delivers."""

    def __init__(self, store: ConversationStore, channel: str) -> None:
        self._store = store
        self._channel = channel

    async def deliver(self, customer_id: str, replies: Sequence[Reply]) -> bool:
        await self._store.publish(DELIVER_TOPIC, {
            "channel": self._channel,
            "customer_id": customer_id,
            "replies": [r.to_dict() for r in replies],
        })
        return True
