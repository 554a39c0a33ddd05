"""The hot-path JSON codec reads back what it wrote, for anything json.dumps takes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bot import jsoncodec

_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(_VALUES)
def test_round_trip_matches_the_standard_library(value: Any) -> None:
    text = jsoncodec.dumps(value)
    assert jsoncodec.loads(text) == json.loads(json.dumps(value)) == json.loads(text)


def test_what_orjson_refuses_is_still_encoded() -> None:
    assert json.loads(jsoncodec.dumps({"big": 2**70})) == {"big": 2**70}  # read back as a float by loads
    assert json.loads(jsoncodec.dumps({1: "一"})) == {"1": "一"}
    assert json.loads(jsoncodec.dumps(["\ud800"])) == ["\ud800"]
    assert jsoncodec.dumps("中文") == '"中文"'  # UTF-8 text, not \u escapes
