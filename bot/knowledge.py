"""Loading, validating and exporting the FAQ knowledge base (YAML, JSON, JSONL, CSV).

Formats round-trip exactly: export(load(file)) gives back the same entries. A bad file raises
KnowledgeError naming the file and the entry.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.models import FaqEntry

FORMATS = ("yaml", "json", "jsonl", "csv")
_FIELDS = ("id", "category", "lang", "question", "similar", "answer", "enabled", "tags", "needs_agent")


class KnowledgeError(ValueError):
    """A knowledge-base file or entry is invalid; the message names where, `fields` what (by field name)."""

    def __init__(self, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.fields = fields or {}


@dataclass(frozen=True)
class KnowledgeBase:
    entries: tuple[FaqEntry, ...]
    synonyms: Mapping[str, Sequence[Sequence[str]]]


def format_of(path: Path) -> str:
    suffix = path.suffix.lower().lstrip(".")
    fmt = {"yml": "yaml"}.get(suffix, suffix)
    if fmt not in FORMATS:
        raise KnowledgeError(f"{path}: unknown format {suffix!r} (use one of {', '.join(FORMATS)})")
    return fmt


def load_dir(directory: Path) -> KnowledgeBase:
    """The shop's KB: every file in `faq/` plus `synonyms.yaml`."""
    entries: list[FaqEntry] = []
    faq_dir = directory / "faq"
    files = sorted(p for p in faq_dir.iterdir() if p.is_file()) if faq_dir.is_dir() else []
    for path in files:
        entries.extend(load_file(path))
    check_unique(entries)
    synonyms_path = directory / "synonyms.yaml"
    synonyms = load_synonyms(synonyms_path) if synonyms_path.exists() else {}
    return KnowledgeBase(tuple(entries), synonyms)


def load_file(path: Path) -> list[FaqEntry]:
    """Entries from one file in any supported format."""
    fmt = format_of(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KnowledgeError(f"{path}: cannot read ({exc})") from exc
    return parse(text, fmt, source=str(path))


def parse(text: str, fmt: str, *, source: str = "<input>") -> list[FaqEntry]:
    try:
        if fmt == "yaml":
            records = yaml.safe_load(text) or []
        elif fmt == "json":
            records = json.loads(text)
        elif fmt == "jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            records = [_from_csv_row(row) for row in csv.DictReader(io.StringIO(text))]
    except (yaml.YAMLError, json.JSONDecodeError, csv.Error) as exc:
        raise KnowledgeError(f"{source}: not valid {fmt} ({exc})") from exc
    if isinstance(records, dict) and "entries" in records:
        records = records["entries"]
    if not isinstance(records, list):
        raise KnowledgeError(f"{source}: expected a list of entries")
    entries = [entry_from_record(r, f"{source} entry {i + 1}") for i, r in enumerate(records)]
    check_unique(entries)
    return entries


def entry_from_record(record: Any, where: str, *, default_lang: str | None = None) -> FaqEntry:
    """Validate one record (a dict) into a FaqEntry; every bad field is named at once, not the first only."""
    if not isinstance(record, dict):
        raise KnowledgeError(f"{where}: expected a mapping")
    problems: dict[str, str] = {}
    for name in sorted(set(record) - set(_FIELDS)):
        problems[name] = f"unknown field {name!r}"
    for name in ("id", "question", "answer"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            problems[name] = f"field {name!r} is required and must be text"
    lists = {}
    for name in ("similar", "tags"):
        value = record.get(name, [])
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            lists[name] = [str(v) for v in value]
        else:
            problems[name] = "expected a list of text"
    question = str(record["question"]) if "question" not in problems else ""
    if "\n" in question:
        problems["question"] = "a phrasing spans several lines"
    if any("\n" in p or not p.strip() for p in lists.get("similar", [])):
        problems["similar"] = "a phrasing is empty or spans several lines"
    lang = record.get("lang") or default_lang or _guess_lang(question)
    if lang not in ("zh", "en"):
        problems["lang"] = "lang must be zh or en"
    for name in ("enabled", "needs_agent"):
        if not isinstance(record.get(name, name == "enabled"), bool):
            problems[name] = f"{name} must be true or false"
    category = record.get("category") or "general"
    if not isinstance(category, str):
        problems["category"] = "category must be text"
    if problems:
        if "id" not in problems:
            where = f"{where} ({record['id']})"
        raise KnowledgeError(f"{where}: " + "; ".join(problems.values()), problems)
    return FaqEntry(
        id=record["id"].strip(),
        question=record["question"].strip(),
        answer=record["answer"].strip(),
        similar=tuple(s.strip() for s in lists["similar"]),
        category=category,
        lang=lang,
        enabled=record.get("enabled", True),
        tags=tuple(lists["tags"]),
        needs_agent=record.get("needs_agent", False),
    )


def check_unique(entries: Iterable[FaqEntry]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if entry.id in seen:
            raise KnowledgeError(f"entry id {entry.id!r} is used twice")
        seen.add(entry.id)


def load_synonyms(path: Path) -> dict[str, list[list[str]]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KnowledgeError(f"{path}: cannot read synonyms ({exc})") from exc
    if not isinstance(data, dict):
        raise KnowledgeError(f"{path}: expected zh: and en: lists of synonym groups")
    result: dict[str, list[list[str]]] = {}
    for lang, groups in data.items():
        if lang not in ("zh", "en") or not isinstance(groups, list):
            raise KnowledgeError(f"{path}: {lang!r} must be zh or en with a list of groups")
        result[lang] = [_strings(g, f"{path}: {lang} group") for g in groups]
    return result


def to_record(entry: FaqEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "category": entry.category,
        "lang": entry.lang,
        "question": entry.question,
        "similar": list(entry.similar),
        "answer": entry.answer,
        "enabled": entry.enabled,
        "tags": list(entry.tags),
        "needs_agent": entry.needs_agent,
    }


def dump(entries: Sequence[FaqEntry], fmt: str) -> str:
    """Serialise entries so that parse(dump(entries, fmt), fmt) == entries."""
    records = [to_record(e) for e in entries]
    if fmt == "yaml":
        return str(yaml.safe_dump(records, allow_unicode=True, sort_keys=False, width=1000))
    if fmt == "json":
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=_FIELDS, lineterminator="\n")
        writer.writeheader()
        for r in records:
            writer.writerow(_to_csv_row(r))
        return out.getvalue()
    raise KnowledgeError(f"unknown format {fmt!r}")


def _to_csv_row(record: dict[str, Any]) -> dict[str, str]:
    row = dict(record)
    row["similar"] = "\n".join(record["similar"])
    row["tags"] = "\n".join(record["tags"])
    row["enabled"] = "true" if record["enabled"] else "false"
    row["needs_agent"] = "true" if record["needs_agent"] else "false"
    return row


def _from_csv_row(row: dict[str, str | None]) -> dict[str, Any]:
    record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v is not None}
    record["similar"] = [s for s in (row.get("similar") or "").split("\n") if s]
    record["tags"] = [s for s in (row.get("tags") or "").split("\n") if s]
    for name in ("enabled", "needs_agent"):
        if name in record:
            value = str(record[name]).strip().lower()
            record[name] = value in ("true", "1", "yes")
    return record


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise KnowledgeError(f"{where}: expected a list of text")
    return [str(v) for v in value]


def _guess_lang(text: str) -> str:
    return "zh" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
