"""The one renderer: every text the bot sends comes from reply_templates/<lang>/<name>.j2, and every page's
string table from reply_templates/<lang>/<page>.json.

Templates produce reply markup (plain text with `**…**`, numbered lines and `[label](url)`), never HTML;
channels shape the markup, and the web widget builds DOM from it with textContent, so no autoescape is
needed here. The sole jinja2 user.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jinja2

_SAMPLE_RE = re.compile(r"^\{#\s*sample:\s*(\{.*?\})\s*#\}", re.S)


class ReplyRenderer:
    def __init__(self, directory: Path, *, default_lang: str = "zh") -> None:
        self._dir = directory
        self._default_lang = default_lang
        self._env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=False,  # templates are read once; checking their mtime cost a stat per reply
        )
        self._tables: dict[tuple[str, str], dict[str, str]] = {}

    def render(self, name: str, lang: str, **context: Any) -> str:
        """Render template `name` in `lang` (falling back to the default language)."""
        try:
            template = self._env.get_template(f"{lang}/{name}.j2")
        except jinja2.TemplateNotFound:
            template = self._env.get_template(f"{self._default_lang}/{name}.j2")
        return _tidy(template.render(**context))

    def strings(self, page: str, lang: str) -> dict[str, str]:
        """A page's string table (widget, console, admin) in `lang`, read once."""
        key = (page, lang)
        if key not in self._tables:
            self._tables[key] = json.loads((self._dir / lang / f"{page}.json").read_text(encoding="utf-8"))
        return self._tables[key]

    def names(self, lang: str) -> list[str]:
        return sorted(p.stem for p in (self._dir / lang).glob("*.j2"))

    def sample_context(self, name: str, lang: str) -> dict[str, Any]:
        """The context a template documents in its leading `{# sample: {...} #}` comment."""
        source = (self._dir / lang / f"{name}.j2").read_text(encoding="utf-8")
        m = _SAMPLE_RE.match(source)
        return json.loads(m.group(1)) if m else {}


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)
