"""Matcher accuracy on the shared evaluation sets and on the sample shop's own questions.

Reads the eval data in place (it must never be copied into this repository), builds a Matcher per set and
prints, per set: top-1 and top-3 on in-domain queries and, at the configured thresholds, the share of
in-domain queries answered, the precision of all answers given (an answered out-of-domain query counts as
wrong), the share clarified (and how often the right entry was among the offered ones), the share of
out-of-domain queries wrongly answered, and the time per query.

    .venv/bin/python benchmarks/eval_matcher.py [--eval-dir DIR] [--sets a,b] [--half even|odd]
                                                [--answer X --clarify Y --margin Z]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bot.matcher import DEFAULT_THRESHOLDS, Matcher, MatchResult, Thresholds  # noqa: E402
from bot.models import FaqEntry  # noqa: E402
from bot.normalize import Normalizer, detect_lang  # noqa: E402

EVAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval"
SHOP_KB = REPO / "knowledge_base"
SHOP_QUESTIONS = REPO / "benchmarks" / "shop_questions.jsonl"


@dataclass(frozen=True)
class EvalSet:
    name: str
    entries: list[FaqEntry]
    cases: list[dict[str, Any]]
    synonyms: dict[str, list[list[str]]]


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _entry(record: dict[str, Any], lang: str | None) -> FaqEntry:
    question = str(record["question"])
    return FaqEntry(id=str(record["id"]), question=question, answer=str(record.get("answer", "")),
                    similar=tuple(str(s) for s in record.get("similar") or ()),
                    category=str(record.get("category", "general")),
                    lang=str(record.get("lang") or lang or detect_lang(question)),
                    enabled=bool(record.get("enabled", True)))


def load_eval_set(folder: Path) -> EvalSet:
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8")) if (folder / "meta.json").exists() else {}
    lang = str(meta.get("lang", "en"))
    entries = [_entry(r, lang) for r in _jsonl(folder / "kb.jsonl")]
    return EvalSet(folder.name, entries, _jsonl(folder / "cases.jsonl"), {})


def _yaml_records(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [])
    return [r for r in data or [] if isinstance(r, dict) and "id" in r]


def load_shop_set(kb_dir: Path, questions: Path) -> EvalSet | None:
    """The sample shop's KB and questions, once both exist."""
    files = sorted((kb_dir / "faq").glob("*.y*ml")) if (kb_dir / "faq").is_dir() else []
    if not files or not questions.exists():
        return None
    entries = [_entry(r, None) for path in files for r in _yaml_records(path)]
    synonyms_path = kb_dir / "synonyms.yaml"
    synonyms = (yaml.safe_load(synonyms_path.read_text(encoding="utf-8")) or {}) if synonyms_path.exists() else {}
    return EvalSet("shop", entries, _jsonl(questions), synonyms)


def evaluate(data: EvalSet, thresholds: Thresholds, half: str | None) -> dict[str, float]:
    matcher = Matcher(data.entries, Normalizer(data.synonyms), thresholds)
    cases = data.cases if half is None else data.cases[half == "odd" :: 2]
    counts = dict.fromkeys(("ind", "ood", "top1", "top3", "ans", "ans_ok", "clar", "clar_hit", "ood_ans",
                            "ood_clar"), 0)
    times: list[float] = []
    for case in cases:
        lang = case.get("lang") or detect_lang(case["query"])
        start = time.perf_counter()
        result = matcher.match(case["query"], lang=lang)
        times.append((time.perf_counter() - start) * 1000)
        _count(counts, result, case.get("gold"))
    ind, ood = max(counts["ind"], 1), max(counts["ood"], 1)
    answers = counts["ans"] + counts["ood_ans"]
    return {
        "top1": 100 * counts["top1"] / ind, "top3": 100 * counts["top3"] / ind,
        "answered": 100 * counts["ans"] / ind,
        "precision": 100 * counts["ans_ok"] / answers if answers else 100.0,
        "clarified": 100 * counts["clar"] / ind, "clarify_hit": 100 * counts["clar_hit"] / max(counts["clar"], 1),
        "ood_answered": 100 * counts["ood_ans"] / ood, "ood_clarified": 100 * counts["ood_clar"] / ood,
        "ms_mean": statistics.fmean(times), "ms_p99": sorted(times)[int(len(times) * 0.99)],
        "in_domain": counts["ind"], "out_of_domain": counts["ood"],
    }


def _count(counts: dict[str, int], result: MatchResult, gold: str | None) -> None:
    ids = [c.entry_id for c in result.candidates]
    if gold is None:
        counts["ood"] += 1
        counts["ood_ans"] += result.decision == "answer"
        counts["ood_clar"] += result.decision == "clarify"
        return
    counts["ind"] += 1
    counts["top1"] += bool(ids) and ids[0] == gold
    counts["top3"] += gold in ids[:3]
    if result.decision == "answer":
        counts["ans"] += 1
        counts["ans_ok"] += ids[0] == gold
    elif result.decision == "clarify":
        counts["clar"] += 1
        counts["clar_hit"] += gold in ids


COLUMNS = (("top1", "top-1"), ("top3", "top-3"), ("answered", "answered"), ("precision", "precision"),
           ("clarified", "clarified"), ("clarify_hit", "clar.hit"), ("ood_answered", "OOD ans"),
           ("ood_clarified", "OOD clar"), ("ms_mean", "ms/q"), ("ms_p99", "p99 ms"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-dir", type=Path, default=EVAL_DIR)
    parser.add_argument("--kb-dir", type=Path, default=SHOP_KB, help="the sample shop's knowledge base")
    parser.add_argument("--shop-questions", type=Path, default=SHOP_QUESTIONS)
    parser.add_argument("--sets", help="comma-separated set names (default: all, plus shop)")
    parser.add_argument("--half", choices=("even", "odd"), help="only every other case (tune on one half)")
    parser.add_argument("--answer", type=float)
    parser.add_argument("--clarify", type=float)
    parser.add_argument("--margin", type=float)
    args = parser.parse_args()
    overrides = {k: v for k, v in (("answer", args.answer), ("clarify", args.clarify), ("margin", args.margin))
                 if v is not None}
    thresholds = replace(DEFAULT_THRESHOLDS, **overrides)
    sets = [load_eval_set(d) for d in sorted(args.eval_dir.iterdir()) if (d / "kb.jsonl").exists()]
    shop = load_shop_set(args.kb_dir, args.shop_questions)
    if shop is not None:
        sets.append(shop)
    if args.sets:
        sets = [s for s in sets if s.name in args.sets.split(",")]
    print(f"thresholds: answer={thresholds.answer} clarify={thresholds.clarify} margin={thresholds.margin}"
          + (f", {args.half} half of the cases" if args.half else ""))
    print(f"{'set':<12}" + "".join(f"{title:>10}" for _, title in COLUMNS) + "   queries (in / out)")
    for data in sets:
        row = evaluate(data, thresholds, args.half)
        cells = "".join(f"{row[key]:>10.{2 if key.startswith('ms') else 1}f}" for key, _ in COLUMNS)
        print(f"{data.name:<12}{cells}   {row['in_domain']} / {row['out_of_domain']}", flush=True)


if __name__ == "__main__":
    main()
