"""The command line as a shop admin uses it: kb match/export/import/lint, agents, config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A config in its own folder (data under it), pointing at the repo's KB and templates."""
    (tmp_path / "knowledge_base").symlink_to(ROOT / "knowledge_base")
    (tmp_path / "reply_templates").symlink_to(ROOT / "reply_templates")
    (tmp_path / "config.toml").write_text((ROOT / "config.toml").read_text(encoding="utf-8"), encoding="utf-8")
    return tmp_path


def run(workdir: Path, *args: str, stdin: str = "", env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "--config", str(workdir / "config.toml"), *args],
                          input=stdin, capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**os.environ, "KEFU_SECRET_KEY": "cli-test", **(env or {})})


def test_kb_match_reads_jsonl_and_writes_decisions(workdir: Path, tmp_path: Path) -> None:
    kb = tmp_path / "kb.jsonl"
    kb.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in [
        {"id": "pay", "question": "how can I pay", "similar": ["payment methods", "do you take credit cards"],
         "answer": "x", "category": "pay"},
        {"id": "ship", "question": "how long does shipping take", "similar": ["delivery time", "when will it arrive"],
         "answer": "y", "category": "ship"},
    ]) + "\n", encoding="utf-8")
    queries = "\n".join(json.dumps({"query": q}) for q in
                        ["what payment methods do you accept", "when will my parcel arrive", "tell me a joke"])
    result = run(workdir, "kb", "match", "--kb", str(kb), stdin=queries + "\nnot json\n")
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 4
    assert lines[0]["candidates"][0] == "pay" and lines[1]["candidates"][0] == "ship"
    for line in lines[:3]:
        assert set(line) == {"id", "score", "decision", "candidates"}
        assert line["decision"] in ("answer", "clarify", "fallback")
        assert line["id"] == (line["candidates"][0] if line["candidates"] else None)
    assert lines[2]["decision"] == "fallback"
    assert "error" in lines[3]


def test_kb_export_import_round_trip_through_the_store(workdir: Path) -> None:
    out = workdir / "faq.csv"
    exported = run(workdir, "kb", "export", str(out))
    assert exported.returncode == 0, exported.stderr
    assert out.read_text(encoding="utf-8").startswith("id,category,lang,question")
    again = run(workdir, "kb", "import", str(out))
    assert again.returncode == 0, again.stderr
    assert "created 0" in again.stdout
    new = workdir / "new.yaml"
    new.write_text("- id: zh-gift-wrap\n  lang: zh\n  category: promotions\n  question: 可以礼品包装吗\n"
                   "  similar: [能帮忙包成礼物吗, 有礼盒吗]\n  answer: 可以的，请您在备注中写明**礼品包装**。\n",
                   encoding="utf-8")
    imported = run(workdir, "kb", "import", str(new))
    assert imported.returncode == 0 and "created 1" in imported.stdout, imported.stderr
    bad = workdir / "bad.yaml"
    bad.write_text("- id: zh-rude\n  question: 在哪看物流\n  answer: 你自己看\n", encoding="utf-8")
    refused = run(workdir, "kb", "import", str(bad))
    assert refused.returncode == 1 and "zh-rude" in refused.stderr


def test_kb_lint_reports_with_entry_ids(workdir: Path) -> None:
    result = run(workdir, "kb", "lint")
    assert result.returncode == 0 and result.stdout.splitlines()[-1].endswith("0 errors, 0 warnings")
    wrapped = workdir / "wrapped.yaml"
    wrapped.write_text("- id: zh-gift-card\n  lang: zh\n  category: promotions\n  question: 可以买礼品卡吗\n"
                       "  answer: 您好，本店暂不提供**礼品卡**。请问还有什么可以帮您的吗？\n", encoding="utf-8")
    assert run(workdir, "kb", "import", str(wrapped)).returncode == 0
    # The bot adds the greeting and the closing question itself: an answer carrying them is sent with both twice.
    warned = run(workdir, "kb", "lint")
    assert warned.returncode == 0
    assert "warning: zh-gift-card: norms.greeting_start" in warned.stdout
    assert "warning: zh-gift-card: norms.repeats_close" in warned.stdout


def test_agents_cli(workdir: Path) -> None:
    added = run(workdir, "agents", "add", "wang", "--name", "小王", env={"KEFU_AGENT_PASSWORD": "password-1"})
    assert added.returncode == 0, added.stderr
    assert run(workdir, "agents", "add", "wang", env={"KEFU_AGENT_PASSWORD": "password-1"}).returncode == 2
    assert run(workdir, "agents", "add", "li", env={"KEFU_AGENT_PASSWORD": "short"}).returncode == 2
    listed = run(workdir, "agents", "list")
    assert "wang\t小王\tagent\tactive" in listed.stdout
    assert run(workdir, "agents", "disable", "wang").returncode == 0
    assert "disabled" in run(workdir, "agents", "list").stdout


def test_bad_config_stops_with_the_key_named(workdir: Path) -> None:
    config = workdir / "config.toml"
    config.write_text(config.read_text(encoding="utf-8") + "\n[shop.extra]\n", encoding="utf-8")
    result = run(workdir, "kb", "lint")
    assert result.returncode == 2
    assert "shop.extra" in result.stderr


def test_terminal_chat_answers_in_both_languages(workdir: Path) -> None:
    result = run(workdir, "chat", stdin="你好\n退貨運費誰出\nhow do I return an item\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "您好，家居电器旗舰店，请问有什么可以帮您？" in out
    replies = [block for block in out.split("> ") if block.strip()][1:]
    assert len(replies) == 3
    assert "請" in replies[1] and "请" not in replies[1]  # asked in traditional, answered in traditional
    assert "please" in replies[2].lower() and "您" not in replies[2]  # asked in English, answered in English
    assert "**" not in out  # highlighting shaped for a terminal
