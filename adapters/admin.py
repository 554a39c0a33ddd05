"""Admin API (docs/admin-api.md): the FAQ, what failed, the figures, follow-ups, tickets, privacy."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from adapters.openapi import document
from adapters.session import Sessions, error, explained, json_body
from bot import conversation as ev
from bot.auth import Agent, list_agents
from bot.config import Settings
from bot.engine import ConversationEngine
from bot.figures import compute, csv_rows
from bot.kbadmin import FaqAdmin, FaqConflict, FaqInvalid, FaqNotFound
from bot.knowledge import FORMATS, KnowledgeError, dump, entry_from_record, parse
from bot.models import Event
from bot.privacy import mask
from bot.storage.base import ConversationStore
from bot.unanswered import group, misses

STATIC_DIR = Path(__file__).resolve().parent / "admin_static"
CONTENT_TYPES = {"yaml": "application/yaml", "json": "application/json", "jsonl": "application/jsonl",
                 "csv": "text/csv"}

TICKET_STATUSES = ("open", "approved", "rejected", "in_progress", "resolved", "closed")


class AdminApi:
    def __init__(self, settings: Settings, sessions: Sessions, store: Callable[[], ConversationStore],
                 engine: Callable[[], ConversationEngine], faq: Callable[[], FaqAdmin]) -> None:
        self._settings = settings
        self._sessions = sessions
        self._store = store
        self._engine = engine
        self._faq = faq

    def routes(self) -> list[web.AbstractRouteDef]:
        def admin(handler: Any) -> Any:
            return explained(self._sessions.guard(self._faq_errors(handler), role="admin"), self._texts)

        entry = "/api/admin/faq/{id}"
        return [
            web.get("/admin", self.page),
            web.static("/static/admin", STATIC_DIR),
            web.get("/api/admin/strings", self.strings),
            web.get("/api/openapi.json", self.openapi),
            web.get("/api/admin/faq/export", admin(self.export)),
            web.post("/api/admin/faq/import", admin(self.import_)),
            web.get("/api/admin/faq", admin(self.faq_list)),
            web.post("/api/admin/faq", admin(self.faq_create)),
            web.get(entry, admin(self.faq_get)),
            web.put(entry, admin(self.faq_update)),
            web.delete(entry, admin(self.faq_delete)),
            web.post(entry + "/disable", admin(self.faq_disable)),
            web.post(entry + "/enable", admin(self.faq_enable)),
            web.get(entry + "/versions", admin(self.faq_versions)),
            web.post(entry + "/restore", admin(self.faq_restore)),
            web.post(entry + "/phrasings", admin(self.faq_phrasing)),
            web.post("/api/admin/try", admin(self.try_it)),
            web.get("/api/admin/unanswered", admin(self.unanswered)),
            web.get("/api/admin/negative-ratings", admin(self.negative_ratings)),
            web.get("/api/admin/figures", admin(self.figures)),
            web.get("/api/admin/figures.csv", admin(self.figures_csv)),
            web.delete("/api/admin/customers/{channel}/{customer}", admin(self.delete_customer)),
            web.get("/api/followups", admin(self.followups)),
            web.delete("/api/followups/{id}", admin(self.cancel_followup)),
            web.get("/api/tickets", explained(self._sessions.guard(self.tickets), self._texts)),
            web.post("/api/tickets/{id}/status", explained(self._sessions.guard(self.ticket_status), self._texts)),
        ]

    @staticmethod
    def _faq_errors(handler: Any) -> Any:
        async def wrapped(request: web.Request, agent: Agent) -> web.StreamResponse:
            try:
                return await handler(request, agent)  # type: ignore[no-any-return]
            except FaqInvalid as exc:
                return error(422, "invalid", fields=exc.fields, warnings=exc.warnings)
            except FaqConflict as exc:
                return error(409, "conflict", current=exc.current)
            except FaqNotFound:
                return error(404, "not_found")
        return wrapped

    # -- pages --------------------------------------------------------------------------------------

    async def page(self, request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "admin.html")

    async def strings(self, request: web.Request) -> web.Response:
        return web.json_response(self._texts(_lang(request.query.get("lang"))))

    def _texts(self, lang: str) -> dict[str, str]:
        return self._engine().renderer.strings("admin", lang)

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())

    # -- FAQ ----------------------------------------------------------------------------------------

    async def faq_list(self, request: web.Request, agent: Agent) -> web.Response:
        q = request.query
        enabled = {"true": True, "false": False}.get(q.get("enabled", ""))
        items = await self._faq().search(q=q.get("q", "")[:200], lang=q.get("lang") or None,
                                       category=q.get("category") or None, enabled=enabled)
        return web.json_response({"items": items, "total": len(items)})

    async def faq_get(self, request: web.Request, agent: Agent) -> web.Response:
        record = await self._faq().get(request.match_info["id"])
        return web.json_response(record) if record else error(404, "not_found")

    async def faq_create(self, request: web.Request, agent: Agent) -> web.Response:
        saved, warnings = await self._faq().create(await json_body(request), agent.username)
        return web.json_response({**saved, "warnings": warnings}, status=201)

    async def faq_update(self, request: web.Request, agent: Agent) -> web.Response:
        entry_id = request.match_info["id"]
        if await self._faq().get(entry_id) is None:
            return error(404, "not_found")
        saved, warnings = await self._faq().update(entry_id, await json_body(request), agent.username)
        return web.json_response({**saved, "warnings": warnings})

    async def faq_delete(self, request: web.Request, agent: Agent) -> web.Response:
        try:
            version = int(request.query.get("version", ""))
        except ValueError:
            return error(400, "version_required")
        await self._faq().delete(request.match_info["id"], version, agent.username)
        return web.Response(status=204)

    async def faq_disable(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        return web.json_response(await self._faq().set_enabled(request.match_info["id"], False,
                                                               body.get("version"), agent.username))

    async def faq_enable(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        return web.json_response(await self._faq().set_enabled(request.match_info["id"], True,
                                                               body.get("version"), agent.username))

    async def faq_versions(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response({"items": await self._faq().versions(request.match_info["id"])})

    async def faq_restore(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        saved = await self._faq().restore(request.match_info["id"], body.get("version"),
                                          body.get("current_version"), agent.username)
        return web.json_response(saved)

    async def faq_phrasing(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        saved, warnings = await self._faq().add_phrasing(request.match_info["id"], body.get("text"),
                                                         body.get("version"), agent.username)
        return web.json_response({**saved, "warnings": warnings})

    async def try_it(self, request: web.Request, agent: Agent) -> web.Response:
        body = await json_body(request)
        text, lang, draft = body.get("text"), body.get("lang"), body.get("draft")
        if not isinstance(text, str) or not text.strip() or len(text) > 2000:
            return error(422, "invalid", fields={"text": "a question to try is required"})
        if lang not in (None, "zh", "en"):
            return error(422, "invalid", fields={"lang": "zh or en"})
        entry = None
        if draft is not None:
            try:
                entry = entry_from_record({k: v for k, v in draft.items() if k not in ("version", "updated_by",
                                                                                       "updated_at")}, "draft")
            except (KnowledgeError, AttributeError) as exc:
                return error(422, "invalid", fields={"draft": str(exc)})
        return web.json_response(self._faq().try_text(text, lang, entry))

    async def export(self, request: web.Request, agent: Agent) -> web.Response:
        fmt = request.query.get("format", "yaml")
        if fmt not in FORMATS:
            return error(400, "bad_format", allowed=list(FORMATS))
        entries = [entry_from_record(_plain(r), r["id"]) for r in await self._faq().search()]
        return web.Response(text=dump(entries, fmt), content_type=CONTENT_TYPES[fmt], headers={
            "Content-Disposition": f'attachment; filename="faq.{fmt}"'})

    async def import_(self, request: web.Request, agent: Agent) -> web.Response:
        fmt = request.query.get("format", "yaml")
        if fmt not in FORMATS:
            return error(400, "bad_format", allowed=list(FORMATS))
        try:
            # FAQ files outgrow the small body limit every other route keeps.
            upload = request.clone(client_max_size=self._settings.server.max_upload_bytes)
            entries = parse((await upload.read()).decode("utf-8"), fmt, source="upload")
        except (KnowledgeError, UnicodeDecodeError) as exc:
            return error(422, "invalid", fields={"file": str(exc)})
        return web.json_response(await self._faq().import_entries(entries, agent.username))

    # -- what failed --------------------------------------------------------------------------------

    async def unanswered(self, request: web.Request, agent: Agent) -> web.Response:
        days = _int(request.query.get("days"), 7, 1, 365)
        engine = self._engine()
        since = engine.clock.now() - timedelta(days=days)
        logs = await self._logs(since)

        def suggest(text: str) -> str | None:
            top = engine.matcher.rank(text, k=1)
            return top[0].entry_id if top else None

        return web.json_response({"groups": group(misses(logs, since), engine.normalizer, suggest)})

    async def negative_ratings(self, request: web.Request, agent: Agent) -> web.Response:
        days = _int(request.query.get("days"), 30, 1, 365)
        engine = self._engine()
        since = engine.clock.now() - timedelta(days=days)
        items = []
        for conv, events in (await self._logs(since)).items():
            answered: Event | None = None
            for e in events:
                if e.type == ev.BOT_REPLY and e.data.get("faq_id"):
                    answered = e
                elif e.type == ev.RATING and e.data.get("score", 5) <= 2 and e.at >= since:
                    entry = engine.entry(answered.data["faq_id"]) if answered else None
                    items.append({"conversation_id": conv, "score": e.data["score"], "at": e.at.isoformat(),
                                  "faq_id": entry.id if entry else None,
                                  "question": entry.question if entry else None,
                                  "answer_excerpt": entry.answer[:120] if entry else None})
        return web.json_response({"items": items})

    # -- figures ------------------------------------------------------------------------------------

    async def figures(self, request: web.Request, agent: Agent) -> web.Response:
        result = await self._figures(request)
        if not isinstance(result, dict):
            return result
        # The logs name agents by login; the page shows them as the console does, by display name.
        names = {a.username: a.display_name for a in await list_agents(self._store())}
        for row in result["agents"]:
            row["display_name"] = names.get(row["username"], row["username"])
        return web.json_response(result)

    async def figures_csv(self, request: web.Request, agent: Agent) -> web.Response:
        result = await self._figures(request)
        if not isinstance(result, dict):
            return result
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(csv_rows(result))
        return web.Response(text=mask(out.getvalue()), content_type="text/csv",
                            headers={"Content-Disposition": 'attachment; filename="figures.csv"'})

    async def _figures(self, request: web.Request) -> dict[str, Any] | web.Response:
        now = self._engine().clock.now()
        try:
            end = date.fromisoformat(request.query["to"]) if "to" in request.query else now.date()
            start = date.fromisoformat(request.query["from"]) if "from" in request.query else end - timedelta(days=29)
        except ValueError:
            return error(400, "bad_date", expected="YYYY-MM-DD")
        if start > end or (end - start).days > 366:
            return error(400, "bad_range")
        channel = request.query.get("channel") or None
        if channel not in (None, "web", "wechat", "terminal"):
            return error(400, "bad_channel")
        since = datetime.combine(start, datetime.min.time(), tzinfo=self._settings.shop.tz)
        store = self._store()
        return compute(await self._logs(since), tickets=await store.tickets(), jobs=await store.jobs(),
                       start=start, end=end, channel=channel, tz=self._settings.shop.tz, now=now,
                       timeliness_minutes=self._settings.handoff.max_wait_minutes, alerts=self._settings.alerts)

    async def _logs(self, since: datetime) -> dict[str, Sequence[Event]]:
        store = self._store()
        return {conv: await store.events(conv) for conv in await store.conversations(since=since)}

    # -- privacy ------------------------------------------------------------------------------------

    async def delete_customer(self, request: web.Request, agent: Agent) -> web.Response:
        conv = f"{request.match_info['channel']}:{request.match_info['customer']}"
        await self._store().delete_conversation(conv)
        return web.Response(status=204)

    # -- follow-ups and tickets ---------------------------------------------------------------------

    async def followups(self, request: web.Request, agent: Agent) -> web.Response:
        status = request.query.get("status") or None
        conversation = request.query.get("conversation_id") or None
        jobs = await self._store().jobs(conversation_id=conversation, status=status)
        return web.json_response({"items": jobs})

    async def cancel_followup(self, request: web.Request, agent: Agent) -> web.Response:
        job_id = request.match_info["id"]
        job = await self._store().job_get(job_id)
        if job is None:
            return error(404, "not_found")
        if not await self._engine().followups.cancel_job(job_id, reason=f"cancelled by {agent.username}"):
            return error(409, "not_pending", status=job["status"])
        return web.json_response({"ok": True})

    async def tickets(self, request: web.Request, agent: Agent) -> web.Response:
        return web.json_response({"items": await self._store().tickets()})

    async def ticket_status(self, request: web.Request, agent: Agent) -> web.Response:
        """Change a ticket's status; the customer is told (a ticket-update follow-up)."""
        status = (await json_body(request)).get("status")
        if status not in TICKET_STATUSES:
            return error(400, "bad_status", allowed=list(TICKET_STATUSES))
        ticket = await self._store().get_ticket(request.match_info["id"])
        if ticket is None:
            return error(404, "not_found")
        if ticket["status"] != status:
            ticket = {**ticket, "status": status, "updated_by": agent.username}
            await self._store().put_ticket(ticket)
            await self._engine().followups.ticket_changed(ticket)
        return web.json_response(ticket)


def _plain(record: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in ("version", "updated_by", "updated_at")}


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(raw))) if raw else default
    except ValueError:
        return default


def _lang(value: object) -> str:
    return value if isinstance(value, str) and value in ("zh", "en") else "zh"
