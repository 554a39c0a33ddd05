"""The FAQ as admins edit it: versioned store records, field-level validation, restore, live effect.

The files in knowledge_base/ seed an empty store once; from then on the store is the truth. Every save
publishes "kb" on the bus so every worker's matcher takes the change (incrementally) at once.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from typing import Any

from bot.clock import Clock
from bot.engine import ConversationEngine
from bot.knowledge import KnowledgeError, entry_from_record, to_record
from bot.models import FaqEntry
from bot.norms import ANSWER_WARNINGS, check_answer
from bot.storage.base import ConflictError, ConversationStore

KB_TOPIC = "kb"
KIND = "faq"
SEED_KIND = "faq-seed"
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")
_META = ("version", "updated_by", "updated_at")


class FaqInvalid(ValueError):
    def __init__(self, fields: dict[str, str], warnings: list[dict[str, Any]]) -> None:
        super().__init__("invalid entry")
        self.fields = fields
        self.warnings = warnings


class FaqNotFound(KeyError):
    pass


class FaqConflict(Exception):
    def __init__(self, current: dict[str, Any] | None) -> None:
        super().__init__("conflict")
        self.current = current


def _history_kind(entry_id: str) -> str:
    return f"faq_history:{entry_id}"


async def load_or_seed(store: ConversationStore, seed: Sequence[FaqEntry], clock: Clock) -> list[FaqEntry]:
    """The store's entries; an empty store is first seeded from the KB files (once, even with several
    workers starting together: each entry is created with expected_version=0).

    A "seed" marker is written before the first entry and marked done after the last, so a worker that
    starts while another is seeding finishes the seed with it instead of loading half the FAQ. Read in that
    order too: a marker found done means the entries read after it are whole (read the other way round, a
    seed finishing in between left a worker with 175 of 178 entries)."""
    marker = await store.record_get(SEED_KIND, "seed")
    records = await store.records(KIND)
    # Entries without any marker: a store seeded before markers existed, unless a seed began in between.
    legacy = bool(records) and marker is None and await store.record_get(SEED_KIND, "seed") is None
    if not legacy and not (marker is not None and marker.get("done")):
        if marker is None:
            try:
                await store.record_put(SEED_KIND, "seed", {"done": False}, expected_version=0)
            except ConflictError:
                pass
        for entry in seed:
            try:
                await _save(store, clock, to_record(entry), user="seed", change="created", expected=0)
            except ConflictError:
                continue
        await store.record_put(SEED_KIND, "seed", {"done": True})
        records = await store.records(KIND)
    return [_entry(r) for r in records]


async def _save(store: ConversationStore, clock: Clock, record: dict[str, Any], *, user: str, change: str,
                expected: int | None, override_reason: str | None = None) -> dict[str, Any]:
    stamped = {**_strip(record), "updated_by": user, "updated_at": clock.now().isoformat()}
    version = await store.record_put(KIND, record["id"], stamped, expected_version=expected)
    await store.record_put(_history_kind(record["id"]), f"{version:08d}", {
        "entry_version": version, "updated_by": user, "updated_at": stamped["updated_at"], "change": change,
        "override_reason": override_reason, "entry": _strip(record)})
    return {**stamped, "version": version}


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in _META}


def _entry(record: dict[str, Any]) -> FaqEntry:
    """A stored FAQ record as the entry the matcher takes."""
    return entry_from_record(_strip(record), f"faq {record.get('id')}")


class FaqAdmin:
    def __init__(self, store: ConversationStore, clock: Clock, engine: ConversationEngine, *,
                 near_duplicate_score: float) -> None:
        self._store = store
        self._clock = clock
        self._engine = engine
        self._near = near_duplicate_score

    async def search(self, *, q: str = "", lang: str | None = None, category: str | None = None,
                   enabled: bool | None = None) -> list[dict[str, Any]]:
        q = q.strip().lower()
        out = []
        for r in await self._store.records(KIND):
            if lang and r["lang"] != lang or category and r["category"] != category:
                continue
            if enabled is not None and r["enabled"] != enabled:
                continue
            text = " ".join([r["id"], r["question"], r["answer"], *r["similar"]]).lower()
            if q and q not in text:
                continue
            out.append(r)
        return out

    async def get(self, entry_id: str) -> dict[str, Any] | None:
        return await self._store.record_get(KIND, entry_id)

    async def create(self, body: dict[str, Any], user: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        entry, warnings = self.validate(body, creating=True)
        try:
            saved = await _save(self._store, self._clock, to_record(entry), user=user, change="created",
                                expected=0, override_reason=body.get("override_reason"))
        except ConflictError as exc:
            raise FaqInvalid({"id": f"{entry.id} exists already"}, warnings) from exc
        await self._changed(entry.id)
        return saved, warnings

    async def update(self, entry_id: str, body: dict[str, Any], user: str, *, change: str = "updated"
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        version = body.get("version")
        if not _is_int(version):
            raise FaqInvalid({"version": "the version the entry was loaded at is required"}, [])
        entry, warnings = self.validate({**body, "id": entry_id}, creating=False)
        try:
            saved = await _save(self._store, self._clock, to_record(entry), user=user, change=change,
                                expected=version, override_reason=body.get("override_reason"))
        except ConflictError as exc:
            raise FaqConflict(await self.get(entry_id)) from exc
        await self._changed(entry_id)
        return saved, warnings

    async def set_enabled(self, entry_id: str, enabled: bool, version: Any, user: str) -> dict[str, Any]:
        current = await self._existing(entry_id)
        body = {**current, "enabled": enabled, "version": version, "override_reason": "status change"}
        saved, _ = await self.update(entry_id, body, user, change="enabled" if enabled else "disabled")
        return saved

    async def add_phrasing(self, entry_id: str, text: Any, version: Any, user: str
                           ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        current = await self._existing(entry_id)
        if not isinstance(text, str) or not text.strip():
            raise FaqInvalid({"text": "a phrasing is required"}, [])
        body = {**current, "similar": [*current["similar"], text.strip()], "version": version,
                "override_reason": "phrasing added"}
        return await self.update(entry_id, body, user)

    async def delete(self, entry_id: str, version: int, user: str) -> None:
        current = await self._existing(entry_id)
        if current["version"] != version:
            raise FaqConflict(current)
        await self._store.record_delete(KIND, entry_id)
        last = await self._store.records(_history_kind(entry_id))
        await self._store.record_put(_history_kind(entry_id), f"{version + 1:08d}", {
            "entry_version": version + 1, "updated_by": user, "updated_at": self._clock.now().isoformat(),
            "change": "deleted", "override_reason": None, "entry": last[-1]["entry"] if last else _strip(current)})
        await self._changed(entry_id)

    async def versions(self, entry_id: str) -> list[dict[str, Any]]:
        return [_strip_version_meta(r) for r in await self._store.records(_history_kind(entry_id))]

    async def restore(self, entry_id: str, version: Any, current_version: Any, user: str) -> dict[str, Any]:
        history = {h["version"]: h for h in await self.versions(entry_id)}
        if not _is_int(version) or version not in history:
            raise FaqInvalid({"version": "no such version"}, [])
        body = {**history[version]["entry"], "version": current_version, "override_reason": f"restored v{version}"}
        saved, _ = await self.update(entry_id, body, user, change="restored")
        return saved

    async def import_entries(self, entries: Sequence[FaqEntry], user: str) -> dict[str, Any]:
        """Create new entries and update changed ones; an identical entry is left alone (no new version), and
        what could not be saved is reported, not raised."""
        created = updated = unchanged = 0
        errors: list[dict[str, Any]] = []
        for entry in entries:
            record = to_record(entry)
            current = await self.get(entry.id)
            if current is not None and all(current.get(k) == v for k, v in record.items()):
                unchanged += 1
                continue
            try:
                if current is None:
                    await self.create(record, user)
                    created += 1
                else:
                    await self.update(entry.id, {**record, "version": current["version"]}, user)
                    updated += 1
            except FaqInvalid as exc:
                errors.append({"id": entry.id, "fields": exc.fields})
            except FaqConflict:
                errors.append({"id": entry.id, "fields": {"version": "changed during the import"}})
        return {"created": created, "updated": updated, "unchanged": unchanged, "errors": errors}

    def validate(self, body: dict[str, Any], *, creating: bool) -> tuple[FaqEntry, list[dict[str, Any]]]:
        """The entry, or FaqInvalid with field errors; near-duplicates of other entries come back as warnings."""
        fields: dict[str, str] = {}
        entry_id = body.get("id")
        if not isinstance(entry_id, str) or not _ID.match(entry_id):
            fields["id"] = "1-64 lower-case letters, digits, '.', '_' or '-'"
        record = {k: v for k, v in body.items() if k in ("id", "category", "lang", "question", "similar", "answer",
                                                          "enabled", "tags", "needs_agent")}
        try:
            entry = entry_from_record(record, "entry")
        except KnowledgeError as exc:
            for name, problem in (exc.fields or {"entry": str(exc)}).items():
                fields.setdefault(name, problem)
            raise FaqInvalid(fields, []) from exc
        if fields:
            raise FaqInvalid(fields, [])
        normalizer = self._engine.normalizer
        warnings: list[dict[str, Any]] = []
        seen: set[str] = set()
        owners = {normalizer(p): e.id for e in self._engine.entries() for p in e.phrasings if e.id != entry.id}
        for phrasing in entry.phrasings:
            key = normalizer(phrasing)
            if key in seen:
                fields["similar"] = f"{phrasing!r} is listed twice"
            seen.add(key)
            if key in owners:
                where = "question" if phrasing == entry.question else "similar"
                fields[where] = f"{phrasing!r} is already a phrasing of {owners[key]}"
                continue
            top = [c for c in self._engine.matcher.rank(phrasing, lang=entry.lang, k=3) if c.entry_id != entry.id]
            if top and top[0].score >= self._near:
                warnings.append({"code": "near_duplicate", "phrasing": phrasing, "other_id": top[0].entry_id,
                                 "score": round(top[0].score, 3)})
        found = check_answer(entry.answer, entry.lang, close=self._engine.renderer.answer_close(entry.lang))
        warnings += [{"code": v.code, "detail": v.detail} for v in found if v.code in ANSWER_WARNINGS]
        violations = [v for v in found if v.code not in ANSWER_WARNINGS]
        if violations and not body.get("override_reason"):
            fields["answer"] = "; ".join(f"{v.code}: {v.detail}" for v in violations)
        if fields:
            raise FaqInvalid(fields, warnings)
        return entry, warnings

    def try_text(self, text: str, lang: str | None, draft: FaqEntry | None) -> dict[str, Any]:
        matcher = self._engine.matcher
        if draft is not None:
            matcher = copy.deepcopy(matcher)
            matcher.upsert(draft)
        result = matcher.match(text, lang=lang)
        entries = {e.id: e for e in self._engine.entries()}
        if draft is not None:
            entries[draft.id] = draft
        candidates = [{"id": c.entry_id, "question": entries[c.entry_id].question if c.entry_id in entries else "",
                       "score": round(c.score, 4)} for c in result.candidates]
        top = entries.get(result.candidates[0].entry_id) if result.candidates else None
        return {"decision": result.decision, "candidates": candidates,
                "answer_preview": top.answer if top and result.decision == "answer" else None}

    async def apply(self, entry_id: str) -> None:
        """Take the stored state of one entry into this worker's matcher (bus "kb" handler)."""
        record = await self._store.record_get(KIND, entry_id)
        if record is None:
            self._engine.remove_entry(entry_id)
        else:
            self._engine.upsert_entry(_entry(record))

    async def resync(self) -> None:
        """Every stored entry into this worker's matcher again: after the bus lost messages (a Redis
        restart), an edit made meanwhile on another worker would otherwise never reach this one."""
        stored = {entry.id: entry for entry in map(_entry, await self._store.records(KIND))}
        live = {e.id: e for e in self._engine.entries()}
        for entry_id in live.keys() - stored.keys():
            self._engine.remove_entry(entry_id)
        for entry_id, entry in stored.items():
            if live.get(entry_id) != entry:
                self._engine.upsert_entry(entry)

    async def _changed(self, entry_id: str) -> None:
        await self.apply(entry_id)
        await self._store.publish(KB_TOPIC, {"id": entry_id})

    async def _existing(self, entry_id: str) -> dict[str, Any]:
        current = await self.get(entry_id)
        if current is None:
            raise FaqNotFound(entry_id)
        return current


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _strip_version_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A history row as the API shows it: `version` is the entry's version, not the row's own."""
    return {**{k: v for k, v in row.items() if k not in ("version", "entry_version")}, "version": row["entry_version"]}
