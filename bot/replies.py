"""The one renderer: every text the bot sends comes from reply_templates/<lang>/<name>.j2, and every page's
string table from reply_templates/<lang>/<page>.json.

Templates produce reply markup (plain text with `**…**`, numbered lines and `[label](url)`), never HTML;
channels shape the markup, and the web widget builds DOM from it with textContent, so no autoescape is
needed here. The sole jinja2 user.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

_RENDERED = 2048  # rendered replies kept
_UNCACHEABLE = object()
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
        )
        self._tables: dict[tuple[str, str], dict[str, str]] = {}
        self._templates: dict[tuple[str, str], tuple[jinja2.Template, frozenset[str]]] = {}
        self._rendered: OrderedDict[tuple[str | None, Any], str] = OrderedDict()

    def answer_close(self, lang: str) -> str:
        """What faq_answer.j2 puts after every FAQ answer, read from the template so the checks follow it."""
        marker = "\u2063ANSWER\u2063"
        return self.render("faq_answer", lang, answer=marker).partition(marker)[2].strip()

    def render(self, name: str, lang: str, **context: Any) -> str:
        """Render template `name` in `lang` (falling back to the default language).

        Templates are pure and the same few replies go out all day, so a reply is looked up first in a
        bounded cache keyed on the values the template reads (rendering was a tenth of a message's cost)."""
        template, used = self._template(name, lang)
        key = (template.name, _frozen({k: context[k] for k in used if k in context}))
        if key[1] is not _UNCACHEABLE and (text := self._rendered.get(key)) is not None:
            self._rendered.move_to_end(key)
            return text
        text = _tidy(template.render(**context))
        if key[1] is not _UNCACHEABLE:
            self._rendered[key] = text
            if len(self._rendered) > _RENDERED:
                self._rendered.popitem(last=False)
        return text

    def _template(self, name: str, lang: str) -> tuple[jinja2.Template, frozenset[str]]:
        """The compiled template and the names it reads, from one read and one parse of its file."""
        found = self._templates.get((name, lang))
        if found is None:
            env, loader = self._env, self._env.loader
            assert loader is not None
            path = f"{lang}/{name}.j2"
            try:
                source, filename, _ = loader.get_source(env, path)
            except jinja2.TemplateNotFound:
                path = f"{self._default_lang}/{name}.j2"
                source, filename, _ = loader.get_source(env, path)
            tree = env.parse(source, path, filename)
            template = env.template_class.from_code(env, env.compile(tree, path, filename), env.make_globals(None))
            found = self._templates[(name, lang)] = (template, frozenset(jinja2.meta.find_undeclared_variables(tree)))
        return found

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


def _frozen(value: Any) -> Any:
    """A hashable copy of plain data (str, numbers, bools, None, lists, dicts), typed so that 1, 1.0 and
    True stay apart; _UNCACHEABLE when anything else is inside."""
    if value is None or isinstance(value, (str, int, float)):
        return value.__class__, value
    if isinstance(value, (list, tuple)):
        items = tuple(_frozen(v) for v in value)
        return _UNCACHEABLE if _UNCACHEABLE in items else (list, items)
    if isinstance(value, dict):
        pairs = tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
        return _UNCACHEABLE if any(v is _UNCACHEABLE for _, v in pairs) else (dict, pairs)
    return _UNCACHEABLE


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out)
