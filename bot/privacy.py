"""Masking of personal data (PIPL): phone numbers and ID numbers never appear whole in logs or exports."""

from __future__ import annotations

import re

# Mainland ID numbers (18 characters, last may be X) before phones, so a phone-like run inside an ID
# is not masked twice.
_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
# Landlines: area code 0xx or 0xxx (after +86 without its 0), an optional "-" or space, then 7 or 8 digits:
# 010-12345678, 0755 1234567, +86 10 12345678.
_LANDLINE_RE = re.compile(r"(?<![0-9A-Za-z+])((?:\+?86[- ]?0?|0)[1-9]\d{1,2}[- ]?)(\d{3,4})(\d{4})(?![0-9A-Za-z])")
# Bank cards: 16 to 19 digits, often in groups of four; only runs that pass the Luhn check, so that other
# long numbers (WeChat message ids) stay readable.
_CARD_RE = re.compile(r"(?<![0-9A-Za-z])\d{4}(?:[ -]?\d){11,14}\d(?![0-9A-Za-z])")
_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")


# Every pattern above needs seven digits in a row (a space or "-" between them allowed) or an "@": most log
# lines have neither, and skip the five substitutions.
_MAYBE_RE = re.compile(r"\d(?:[ -]?\d){6}|@")


def mask(text: str) -> str:
    """Text with ID numbers, bank cards, mobile and landline numbers and e-mail local parts masked."""
    if not _MAYBE_RE.search(text):
        return text
    text = _ID_RE.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(3)[-4:], text)
    text = _CARD_RE.sub(_card, text)
    text = _PHONE_RE.sub(lambda m: (m.group(1) or "") + m.group(2) + "****" + m.group(4), text)
    text = _LANDLINE_RE.sub(lambda m: m.group(1) + "*" * len(m.group(2)) + m.group(3), text)
    return _EMAIL_RE.sub(lambda m: m.group(1) + "***" + m.group(2), text)


def _card(m: re.Match[str]) -> str:
    """The first four and last four digits of a number that passes the Luhn check; others unchanged."""
    run = m.group(0)
    digits = [int(c) for c in run if c.isdigit()]
    total = sum(d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2) for i, d in enumerate(reversed(digits)))
    if total % 10:
        return run
    out, seen = [], 0
    for c in run:
        if c.isdigit():
            seen += 1
            out.append(c if seen <= 4 or seen > len(digits) - 4 else "*")
        else:
            out.append(c)
    return "".join(out)


def mask_id(customer_id: str) -> str:
    """A customer id shown to agents: enough to tell two apart, not enough to reuse."""
    if len(customer_id) <= 8:
        return customer_id[:2] + "***"
    return customer_id[:4] + "…" + customer_id[-4:]
