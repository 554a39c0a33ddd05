"""The OpenAPI 3 description of the JSON APIs (console, admin), served at /api/openapi.json.

Built from small helpers so every operation states its body, parameters and responses in a line or two.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
BOOL: Schema = {"type": "boolean"}
LANG: Schema = {"type": "string", "enum": ["zh", "en"]}
CATEGORY: Schema = {"type": ["string", "null"],
                    "enum": ["product_quality", "service_attitude", "logistics", "after_sales", "other", None]}
ERROR: Schema = {"type": "object", "properties": {"error": STR}, "required": ["error"]}
ANY_OBJECT: Schema = {"type": "object"}
ENTRY: Schema = {
    "type": "object",
    "properties": {"id": STR, "category": STR, "lang": LANG, "question": STR, "similar": {"type": "array", "items": STR},
                   "answer": STR, "enabled": BOOL, "tags": {"type": "array", "items": STR}, "needs_agent": BOOL,
                   "version": INT, "override_reason": STR},
    "required": ["id", "question", "answer"],
}
CSRF = {"name": "X-Requested-With", "in": "header", "required": True, "schema": {"type": "string", "enum": ["kefu"]}}


def obj(**props: Schema) -> Schema:
    return {"type": "object", "properties": props, "required": list(props)}


def op(summary: str, *, body: Schema | None = None, query: dict[str, Schema] | None = None,
       path: tuple[str, ...] = (), ok: int = 200, errors: tuple[int, ...] = (), state_change: bool = False,
       raw_body: str | None = None) -> dict[str, Any]:
    params: list[dict[str, Any]] = [{"name": n, "in": "path", "required": True, "schema": STR} for n in path]
    params += [{"name": n, "in": "query", "required": False, "schema": s} for n, s in (query or {}).items()]
    if state_change:
        params.append(CSRF)
    responses: dict[str, Any] = {str(ok): {"description": "success"}}
    for status in (401, 403, *errors):
        responses[str(status)] = {"description": "error",
                                  "content": {"application/json": {"schema": ERROR}}}
    result: dict[str, Any] = {"summary": summary, "parameters": params, "responses": responses}
    if body is not None:
        result["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    elif raw_body is not None:
        result["requestBody"] = {"required": True, "content": {raw_body: {"schema": STR}}}
    return result


def document() -> dict[str, Any]:
    conv = "/api/console/conversations/{id}"
    faq = "/api/admin/faq/{id}"
    paths: dict[str, dict[str, Any]] = {
        "/api/auth/login": {"post": op("log in", body=obj(username=STR, password=STR), errors=(400, 429),
                                       state_change=True)},
        "/api/auth/me": {"get": op("who is logged in")},
        "/api/console/queue": {"get": op("the queue in serving order")},
        "/api/console/conversations": {"get": op("my conversations")},
        conv: {"get": op("a conversation's history", path=("id",), errors=(404,))},
        conv + "/claim": {"post": op("claim from the queue", path=("id",), errors=(409,), state_change=True)},
        conv + "/reply": {"post": op("reply to the customer", path=("id",), body=obj(text=STR), errors=(400,),
                                     state_change=True)},
        conv + "/note": {"post": op("internal note", path=("id",), body=obj(text=STR), errors=(400,),
                                    state_change=True)},
        conv + "/transfer": {"post": op("transfer to an agent", path=("id",), body=obj(to=STR),
                                        errors=(400, 404, 409), state_change=True)},
        conv + "/release": {"post": op("back to the bot", path=("id",), state_change=True)},
        conv + "/close": {"post": op("close with an outcome", path=("id",), body=obj(resolved=BOOL, category=CATEGORY),
                                     errors=(400,), state_change=True)},
        conv + "/typing": {"post": op("typing indicator", path=("id",), body=obj(on=BOOL), ok=204, errors=(400,),
                                      state_change=True)},
        "/api/console/status": {"post": op("online or away", body=obj(status={"type": "string",
                                                                                "enum": ["online", "away"]}),
                                           errors=(400,), state_change=True)},
        "/api/console/agents": {"get": op("agents for transfer")},
        "/api/console/canned": {"get": op("canned replies and KB answers", query={"q": STR, "lang": LANG})},
        "/api/console/check": {"post": op("reply-norms check", body=obj(text=STR, lang=LANG), errors=(400,),
                                          state_change=True)},
        "/api/admin/faq": {
            "get": op("list and search entries", query={"q": STR, "lang": LANG, "category": STR,
                                                        "enabled": {"type": "string", "enum": ["true", "false"]}}),
            "post": op("create an entry", body=ENTRY, ok=201, errors=(400, 422), state_change=True),
        },
        faq: {
            "get": op("one entry", path=("id",), errors=(404,)),
            "put": op("update (with the version it was loaded at)", path=("id",), body=ENTRY,
                      errors=(400, 404, 409, 422), state_change=True),
            "delete": op("delete", path=("id",), query={"version": INT}, ok=204, errors=(400, 404, 409),
                         state_change=True),
        },
        faq + "/disable": {"post": op("disable", path=("id",), body=obj(version=INT), errors=(400, 404, 409, 422),
                                      state_change=True)},
        faq + "/enable": {"post": op("enable", path=("id",), body=obj(version=INT), errors=(400, 404, 409, 422),
                                     state_change=True)},
        faq + "/versions": {"get": op("version history", path=("id",))},
        faq + "/restore": {"post": op("restore a version", path=("id",), body=obj(version=INT, current_version=INT),
                                      errors=(400, 404, 409, 422), state_change=True)},
        faq + "/phrasings": {"post": op("add a phrasing", path=("id",), body=obj(text=STR, version=INT),
                                        errors=(400, 404, 409, 422), state_change=True)},
        "/api/admin/try": {"post": op("try a question", body={"type": "object", "properties": {
            "text": STR, "lang": LANG, "draft": ENTRY}, "required": ["text"]}, errors=(400, 422), state_change=True)},
        "/api/admin/faq/export": {"get": op("export", query={"format": {"type": "string", "enum":
                                                                          ["yaml", "json", "jsonl", "csv"]}},
                                            errors=(400,))},
        "/api/admin/faq/import": {"post": op("import", query={"format": {"type": "string", "enum":
                                                                           ["yaml", "json", "jsonl", "csv"]}},
                                             raw_body="text/plain", errors=(400, 422), state_change=True)},
        "/api/admin/unanswered": {"get": op("fallbacks and clarifications grouped", query={"days": INT})},
        "/api/admin/negative-ratings": {"get": op("ratings of 1-2 with the answer before them",
                                                  query={"days": INT})},
        "/api/admin/figures": {"get": op("service figures", query={"from": STR, "to": STR, "channel": STR},
                                         errors=(400,))},
        "/api/admin/figures.csv": {"get": op("figures as CSV", query={"from": STR, "to": STR, "channel": STR},
                                             errors=(400,))},
        "/api/admin/customers/{channel}/{customer}": {"delete": op("erase a customer's data",
                                                                   path=("channel", "customer"), ok=204,
                                                                   state_change=True)},
        "/api/followups": {"get": op("scheduled follow-ups", query={"status": STR, "conversation_id": STR})},
        "/api/followups/{id}": {"delete": op("cancel a follow-up", path=("id",), errors=(404, 409),
                                             state_change=True)},
        "/api/tickets": {"get": op("service tickets")},
        "/api/tickets/{id}/status": {"post": op("change a ticket's status", path=("id",),
                                                body=obj(status=STR), errors=(400, 404), state_change=True)},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "kefu console and admin API", "version": "1",
                 "description": "Session cookie kefu_session from /api/auth/login; see docs/console-api.md and "
                                "docs/admin-api.md."},
        "components": {"securitySchemes": {"session": {"type": "apiKey", "in": "cookie", "name": "kefu_session"}}},
        "security": [{"session": []}],
        "paths": paths,
    }
