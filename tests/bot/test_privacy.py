from __future__ import annotations

import logging

import pytest

from bot.logs import JsonFormatter
from bot.privacy import mask


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("电话13812345678", "电话138****5678"),
        ("call +86 13912345678 now", "call +86 139****5678 now"),
        ("身份证110101199003071234", "身份证1101**********1234"),
        ("ID 11010119900307123X ok", "ID 1101**********123X ok"),
        ("mail zhang.san@example.com", "mail z***@example.com"),
        ("订单E20261118001234", "订单E20261118001234"),
    ],
)
def test_mask(raw: str, masked: str) -> None:
    assert mask(raw) == masked


def test_log_lines_are_json_and_masked() -> None:
    import json

    record = logging.getLogger("kefu.test").makeRecord(
        "kefu.test", logging.WARNING, __file__, 1, "customer %s, ID %s", ("13812345678", "110101199003071234"), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning" and line["logger"] == "kefu.test"
    assert line["msg"] == "customer 138****5678, ID 1101**********1234"
