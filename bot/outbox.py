"""Pushes outside a request (agent replies, follow-ups): each channel adapter implements Outbox."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.models import Reply


class Outbox(Protocol):
    async def deliver(self, customer_id: str, replies: Sequence[Reply]) -> bool:
        """Send replies to a customer of this channel; False when they cannot be reached now."""
        ...
