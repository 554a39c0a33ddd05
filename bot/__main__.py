"""Command line: `python -m bot serve | chat | kb …`. The only reader of argv and the environment."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from bot.config import ConfigError, Settings, load_settings
from bot.knowledge import KnowledgeError, dump, format_of, load_dir, load_file
from bot import logs

DEFAULT_CONFIG = Path("config.toml")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="kefu customer-service bot")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="path to config.toml")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start the web server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes sharing the port (needs a redis:// store when more than 1)")
    sub.add_parser("chat", help="chat with the bot in the terminal")
    kb = sub.add_parser("kb", help="knowledge-base tools").add_subparsers(dest="kb_command", required=True)
    kb.add_parser("lint", help="check answers against the reply norms and find confusable phrasings")
    imp = kb.add_parser("import", help="validate FILE and create or update its entries (a new version each)")
    imp.add_argument("file", type=Path)
    exp = kb.add_parser("export", help="write the whole FAQ to FILE (format from its extension)")
    exp.add_argument("file", type=Path)
    match = kb.add_parser("match", help='read {"query": …} JSON lines on stdin, write decisions')
    match.add_argument("--kb", type=Path, help="a KB file (JSONL, JSON, YAML or CSV); default: knowledge_base/")
    agents = sub.add_parser("agents", help="agent and admin accounts").add_subparsers(dest="agents_command",
                                                                                       required=True)
    add = agents.add_parser("add", help="create an account (password from KEFU_AGENT_PASSWORD or a prompt)")
    add.add_argument("username")
    add.add_argument("--name", default="", help="display name shown to customers")
    add.add_argument("--role", choices=("agent", "admin"), default="agent")
    add.add_argument("--max-concurrent", type=int, default=5)
    agents.add_parser("list", help="list accounts")
    disable = agents.add_parser("disable", help="disable an account (it can no longer log in)")
    disable.add_argument("username")
    args = parser.parse_args(argv)

    logs.setup()
    try:
        settings = load_settings(args.config, os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve":
            if args.workers > 1:
                return _serve_workers(args.config, settings, args.workers, args.host, args.port)
            return _serve(settings, args.host, args.port, reuse_port=os.environ.get("KEFU_WORKER") == "1")
        if args.command == "chat":
            return asyncio.run(_chat(settings))
        if args.command == "agents":
            return asyncio.run(_agents(settings, args, os.environ.get("KEFU_AGENT_PASSWORD")))
        if args.kb_command == "match":
            return _kb_match(settings, args.kb)
        return asyncio.run(_kb_store(settings, args))
    except KnowledgeError as exc:
        print(f"knowledge base error: {exc}", file=sys.stderr)
        return 2


def _with_secret_key(settings: Settings) -> Settings:
    """Use KEFU_SECRET_KEY, or a key kept in the data dir so `make run` needs no set-up."""
    if settings.secrets.secret_key:
        return settings
    key_file = settings.path(settings.server.data_dir) / "secret_key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        key_file.chmod(0o600)
    key = key_file.read_text(encoding="utf-8").strip()
    return replace(settings, secrets=replace(settings.secrets, secret_key=key))


def _serve(settings: Settings, host: str | None, port: int | None, *, reuse_port: bool = False) -> int:
    from aiohttp import web

    from adapters.access_log import AccessLogger
    from bot.app import create_app
    from bot.storage.base import StoreError

    settings = _with_secret_key(settings)
    try:
        web.run_app(
            create_app(settings),
            host=host or settings.server.host,
            port=port if port is not None else settings.server.port,
            access_log=logging.getLogger("aiohttp.access") if settings.server.access_log else None,
            access_log_class=AccessLogger,
            reuse_port=reuse_port or None,
        )
    except StoreError as exc:
        print(f"store error: {exc}", file=sys.stderr)
        return 2
    return 0


def _serve_workers(config: Path, settings: Settings, workers: int, host: str | None, port: int | None) -> int:
    """N worker processes on one port (SO_REUSEPORT); the kernel spreads connections between them.
    They share state through Redis, so SQLite is refused here."""
    if not settings.store.url.startswith(("redis://", "rediss://")):
        print("configuration error: --workers above 1 needs [store] url = \"redis://…\"", file=sys.stderr)
        return 2
    settings = _with_secret_key(settings)
    env = {**os.environ, "KEFU_WORKER": "1", "KEFU_SECRET_KEY": settings.secrets.secret_key}
    argv = [sys.executable, "-m", "bot", "--config", str(config), "serve"]
    argv += ["--host", host or settings.server.host, "--port", str(port or settings.server.port)]
    children = [subprocess.Popen(argv, env=env) for _ in range(workers)]

    def stop(signum: int, frame: object) -> None:
        for child in children:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    codes = [child.wait() for child in children]
    return max(codes)


async def _chat(settings: Settings) -> int:
    from adapters.terminal import chat
    from bot.app import load_kb, open_store
    from bot.assemble import build_engine
    from bot.clock import SystemClock

    clock = SystemClock(settings.shop.tz)
    store = await open_store(settings, clock)
    try:
        await chat(build_engine(settings, store, clock, kb=await load_kb(settings, store, clock)), clock)
    finally:
        await store.close()
    return 0


async def _agents(settings: Settings, args: argparse.Namespace, password: str | None) -> int:
    from bot.app import open_store
    from bot.auth import AuthError, create_agent, list_agents, update_agent
    from bot.clock import SystemClock

    store = await open_store(settings, SystemClock(settings.shop.tz))
    try:
        if args.agents_command == "add":
            if password is None:
                password = getpass.getpass(f"password for {args.username}: ")
            agent = await create_agent(store, args.username, password, display_name=args.name, role=args.role,
                                       max_concurrent=args.max_concurrent)
            print(f"created {agent.role} {agent.username}")
        elif args.agents_command == "list":
            for a in await list_agents(store):
                print(f"{a.username}\t{a.display_name}\t{a.role}\t{'disabled' if a.disabled else 'active'}")
        else:
            await update_agent(store, args.username, disabled=True)
            print(f"disabled {args.username}")
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    return 0


async def _kb_store(settings: Settings, args: argparse.Namespace) -> int:
    """lint, import and export act on the store, the FAQ's truth once seeded from knowledge_base/."""
    from bot.app import load_kb, open_store
    from bot.assemble import build_engine
    from bot.clock import SystemClock
    from bot.kbadmin import FaqAdmin
    from bot.kblint import lint

    clock = SystemClock(settings.shop.tz)
    store = await open_store(settings, clock)
    try:
        kb = await load_kb(settings, store, clock)
        if args.kb_command == "export":
            fmt = format_of(args.file)
            args.file.write_text(dump(kb.entries, fmt), encoding="utf-8")
            print(f"exported {len(kb.entries)} entries to {args.file} ({fmt})")
            return 0
        engine = build_engine(settings, store, clock, kb=kb)
        if args.kb_command == "import":
            admin = FaqAdmin(store, clock, engine, near_duplicate_score=settings.matcher.answer_threshold)
            result = await admin.import_entries(load_file(args.file), "cli")
            for problem in result["errors"]:
                print(f"not imported: {problem['id']}: {problem['fields']}", file=sys.stderr)
            print(f"created {result['created']}, updated {result['updated']}, {len(result['errors'])} refused")
            return 1 if result["errors"] else 0
        findings = lint(kb.entries, engine.normalizer, engine.matcher, engine.renderer)
        for f in findings:
            print(f)
        errors = sum(f.level == "error" for f in findings)
        print(f"{len(kb.entries)} entries, {errors} errors, {len(findings) - errors} warnings")
        return 1 if errors else 0
    finally:
        await store.close()


def _kb_match(settings: Settings, path: Path | None) -> int:
    """JSON lines in, one decision per line out: how shops (and we) measure matching on real questions."""
    from bot.assemble import build_matcher
    from bot.knowledge import KnowledgeBase
    from bot.normalize import detect_lang

    kb = load_dir(settings.path(settings.knowledge_base.dir))
    if path is not None:
        kb = KnowledgeBase(tuple(load_file(path)), kb.synonyms)
    matcher = build_matcher(kb, settings)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            query = json.loads(line)["query"]
            if not isinstance(query, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            print(json.dumps({"error": "expected a JSON object with a text field 'query'"}))
            continue
        result = matcher.match(query, lang=detect_lang(query))
        top = result.candidates[0] if result.candidates else None
        print(json.dumps({
            "id": top.entry_id if top else None,
            "score": round(top.score, 4) if top else 0.0,
            "decision": result.decision,
            "candidates": [c.entry_id for c in result.candidates[:3]],
        }, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
