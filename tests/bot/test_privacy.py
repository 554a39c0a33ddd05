from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
        ("座机010-12345678", "座机010-****5678"),
        ("打0755 1234567转8", "打0755 ***4567转8"),
        ("tel +86 10 12345678", "tel +86 10 ****5678"),
        ("退到卡6222021234567890128", "退到卡6222***********0128"),
        ("卡号 6222 0212 3456 7890 128", "卡号 6222 **** **** ***0 128"),
        ("MsgId 6222021234567890123", "MsgId 6222021234567890123"),  # fails the Luhn check: not a card
        ("热线400-820-8820，2026-11-24 10:00", "热线400-820-8820，2026-11-24 10:00"),
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


def test_structured_log_fields_are_masked_too() -> None:
    import json

    record = logging.getLogger("aiohttp.access").makeRecord(
        "aiohttp.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None,
        extra={"fields": {"path": "/orders/13812345678", "status": 200, "level": "spoofed"}})
    line = json.loads(JsonFormatter().format(record))
    assert line["path"] == "/orders/138****5678" and line["status"] == 200
    assert line["level"] == "info"  # a field never overwrites the line's own keys


def _luhn_completed(body: str) -> str:
    """`body` plus the check digit that makes it pass the Luhn check."""
    for check in "0123456789":
        digits = [int(c) for c in body + check]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
        if total % 10 == 0:
            return body + check
    raise AssertionError("unreachable")


_SEPARATOR = st.text(alphabet="，。 请问我的是:：", max_size=5)
_MOBILE = st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True)
_LANDLINE = st.from_regex(r"0[1-9][0-9]{1,2}-?[1-9][0-9]{6,7}", fullmatch=True)
_CARD = st.from_regex(r"62[0-9]{13,16}", fullmatch=True).map(_luhn_completed)


@given(before=_SEPARATOR, number=st.one_of(_MOBILE, _LANDLINE, _CARD), after=_SEPARATOR)
def test_no_phone_or_card_survives_whole(before: str, number: str, after: str) -> None:
    masked = mask(before + number + after)
    digits = number.replace("-", "")
    assert digits not in masked.replace("-", "").replace(" ", "")
    assert masked.endswith(number[-4:] + after)  # the last four digits stay, to tell numbers apart


@given(st.text(max_size=80))
def test_masking_twice_changes_nothing_more(text: str) -> None:
    assert mask(mask(text)) == mask(text)


@given(st.text(alphabet=st.characters(blacklist_categories=("Nd",), blacklist_characters="@"), max_size=80))
def test_text_without_digits_is_left_alone(text: str) -> None:
    assert mask(text) == text
