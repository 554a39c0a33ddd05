"""JSON on the hot paths (the event log, dedup results, socket frames): orjson, ten times faster than the
standard library, and every message is encoded several times. Output is UTF-8 text like
json.dumps(ensure_ascii=False), without the spaces. Integers past 64 bits are read back as floats: ids from
channels (WeChat MsgIds are 64-bit and longer) are kept as strings."""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # what orjson refuses and json takes: integers past 64 bits, lone surrogates
        return json.dumps(value, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
