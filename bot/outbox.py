"""Pushes outside a request (agent replies, follow-ups): each channel adapter implements Outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.models import Reply


class Undeliverable(Exception):
    """The channel refuses this customer for now (e.g. WeChat's closed 48-hour window): retrying cannot help.

    `reason` is a short stable code, logged with the follow-up that was skipped because of it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Outbox(Protocol):
    async def deliver(self, customer_id: str, replies: Sequence[Reply]) -> bool:
        """Send replies to a customer of this channel; False when they cannot be reached now (worth a retry),
        Undeliverable when the channel will not take them until the customer writes again."""
        ...
