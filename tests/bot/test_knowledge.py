from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.knowledge import FORMATS, KnowledgeError, dump, load_dir, load_file, parse
from bot.models import FaqEntry
from tests.conftest import ROOT

line = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=30).map(
    str.strip).filter(bool)
entry = st.builds(
    FaqEntry,
    id=st.from_regex(r"[a-z]{2}-[a-z0-9-]{1,12}", fullmatch=True),
    question=line,
    answer=st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=80).map(str.strip).filter(bool),
    similar=st.lists(line, max_size=4).map(tuple),
    category=st.sampled_from(["returns", "logistics", "general"]),
    lang=st.sampled_from(["zh", "en"]),
    enabled=st.booleans(),
    tags=st.lists(st.from_regex(r"[a-z]{1,8}", fullmatch=True), max_size=3).map(tuple),
    needs_agent=st.booleans(),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(entry, max_size=5, unique_by=lambda e: e.id), st.sampled_from(FORMATS))
def test_every_format_round_trips_exactly(entries: list[FaqEntry], fmt: str) -> None:
    assert parse(dump(entries, fmt), fmt) == entries


def test_sample_kb_is_big_enough_and_well_formed() -> None:
    kb = load_dir(ROOT / "knowledge_base")
    zh = [e for e in kb.entries if e.lang == "zh"]
    en = [e for e in kb.entries if e.lang == "en"]
    assert len(zh) >= 80 and len(en) >= 40
    assert all(len(e.phrasings) >= 3 for e in kb.entries)
    assert kb.synonyms["zh"] and kb.synonyms["en"]


def test_eval_style_jsonl_loads(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text('{"id": "a-1", "question": "how to pay", "similar": ["payment"], "answer": "x", '
                    '"category": "pay"}\n', encoding="utf-8")
    [e] = load_file(path)
    assert (e.id, e.lang, e.similar) == ("a-1", "en", ("payment",))


@pytest.mark.parametrize(
    ("text", "fmt", "message"),
    [
        ("[{'id': 'x'}]", "yaml", "field 'question' is required"),
        ('[{"id": "x", "question": "q", "answer": "a", "colour": 1}]', "json", "unknown field 'colour'"),
        ('[{"id": "x", "question": "q", "answer": "a"}, {"id": "x", "question": "r", "answer": "b"}]', "json",
         "used twice"),
        ("{not json", "jsonl", "not valid jsonl"),
        ('[{"id": "x", "question": "q", "answer": "a", "enabled": "yes"}]', "json", "enabled must be true or false"),
    ],
)
def test_bad_files_name_the_problem(text: str, fmt: str, message: str) -> None:
    with pytest.raises(KnowledgeError, match=message):
        parse(text, fmt)
