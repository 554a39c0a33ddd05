"""Masking of personal data (PIPL): phone numbers and ID numbers never appear whole in logs or exports."""

from __future__ import annotations

import re

# Mainland ID numbers (18 characters, last may be X) before phones, so a phone-like run inside an ID
# is not masked twice.
_ID_RE = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})(\d{3}[0-9Xx])(?![0-9A-Za-z])")
_PHONE_RE = re.compile(r"(?<!\d)(\+?86[- ]?)?(1[3-9]\d)(\d{4})(\d{4})(?!\d)")
_EMAIL_RE = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(@[A-Za-z0-9.-]+\.[A-Za-z]{2,})")


def mask(text: str) -> str:
    """Text with ID numbers, mobile numbers and e-mail local parts masked."""
    text = _ID_RE.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(3)[-4:], text)
    text = _PHONE_RE.sub(lambda m: (m.group(1) or "") + m.group(2) + "****" + m.group(4), text)
    return _EMAIL_RE.sub(lambda m: m.group(1) + "***" + m.group(2), text)


def mask_id(customer_id: str) -> str:
    """A customer id shown to agents: enough to tell two apart, not enough to reuse."""
    if len(customer_id) <= 8:
        return customer_id[:2] + "***"
    return customer_id[:4] + "…" + customer_id[-4:]
