"""Order-status lookup: a provider interface the shop plugs its own order system into, and a demo one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Order:
    order_no: str
    status: str
    items: tuple[str, ...]
    placed_at: str
    carrier: str = ""
    tracking_no: str = ""
    eta: str = ""
    phone: str = ""


ORDER_STATUSES = ("pending_payment", "paid", "shipped", "delivered", "cancelled", "refunding", "refunded")


class OrderProvider(Protocol):
    async def find(self, order_no: str) -> Order | None:
        """The order with this number, or None when the shop has no such order."""
        ...


class JsonOrderProvider:
    """Demo provider reading sample orders from a JSON file ({"orders": [...]})."""

    def __init__(self, path: Path) -> None:
        data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"orders": []}
        self._orders = {o["order_no"].upper(): _order(o) for o in data.get("orders", [])}

    async def find(self, order_no: str) -> Order | None:
        return self._orders.get(order_no.upper())


def _order(record: dict[str, object]) -> Order:
    items = record.get("items") or []
    status = str(record["status"])
    if status not in ORDER_STATUSES:
        raise ValueError(f"order {record['order_no']}: unknown status {status!r}")
    return Order(
        order_no=str(record["order_no"]).upper(),
        status=status,
        items=tuple(str(i) for i in items) if isinstance(items, list) else (),
        placed_at=str(record.get("placed_at", "")),
        carrier=str(record.get("carrier", "")),
        tracking_no=str(record.get("tracking_no", "")),
        eta=str(record.get("eta", "")),
        phone=str(record.get("phone", "")),
    )
