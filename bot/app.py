"""The composition root: create_app assembles store, engine and channels; the only place that knows them all."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from adapters.admin import AdminApi
from adapters.console import ConsoleChannel
from adapters.metrics import Metrics
from adapters.session import Sessions
from adapters.webchat import WebchatChannel
from adapters.wechat import WechatChannel, unix_clock
from adapters.wechat_api import WechatApi
from bot import appkeys
from bot.assemble import build_engine
from bot.auth import Agent
from bot.delivery import DELIVER_TOPIC, BusOutbox, Delivery
from bot.outbox import Outbox
from bot.handoff import CONSOLE_TOPIC
from bot.kbadmin import KB_TOPIC, FaqAdmin, load_or_seed
from bot.knowledge import KnowledgeBase, load_dir
from bot.retention import purge_closed
from bot.scheduler import JobScheduler
from bot.semantic import shared_encoder
from bot.clock import Clock, SystemClock
from bot.config import Settings
from bot.storage.base import BUS_RESUMED, ConversationStore, StoreError, Subscription
from bot.storage.sqlite import SqliteStore

logger = logging.getLogger(__name__)

VECTORS_FILE = "sentence-vectors.npz"  # in [server] data_dir


async def open_store(settings: Settings, clock: Clock) -> ConversationStore:
    """The store named by [store] url; a Redis that does not answer is a clear StoreError at start."""
    url = settings.store.url
    if url.startswith("sqlite://"):
        raw = url.removeprefix("sqlite://").removeprefix("/")
        path = raw if raw == ":memory:" else str(settings.path(raw))
        return SqliteStore(path, clock)
    from bot.storage.redis import RedisStore

    return await RedisStore.connect(url, clock, prefix=settings.store.key_prefix)


async def load_kb(settings: Settings, store: ConversationStore, clock: Clock) -> KnowledgeBase:
    """The FAQ from the store (seeded from knowledge_base/ when empty), synonyms from the files."""
    files = load_dir(settings.path(settings.knowledge_base.dir))
    return KnowledgeBase(tuple(await load_or_seed(store, files.entries, clock)), files.synonyms)


def create_app(
    settings: Settings,
    *,
    store: ConversationStore | None = None,
    clock: Clock | None = None,
) -> web.Application:
    """The whole bot as one aiohttp application; tests pass their own store and clock."""
    clock = clock or SystemClock(settings.shop.tz)
    metrics = Metrics(lambda: app[appkeys.STORE])
    # errors_middleware inside metrics: a store outage is counted as the 503 it becomes.
    app = web.Application(client_max_size=settings.server.max_body_bytes,
                          middlewares=[metrics.middleware, errors_middleware])
    app[appkeys.SETTINGS] = settings
    app[appkeys.CLOCK] = clock

    async def store_ctx(app: web.Application) -> AsyncIterator[None]:
        app[appkeys.STORE] = store or await open_store(settings, clock)
        yield
        if store is None:
            await app[appkeys.STORE].close()

    wechat: WechatChannel | None = None
    if settings.channels.wechat.enabled:
        wechat = WechatChannel(settings, store=lambda: app[appkeys.STORE], engine=lambda: app[appkeys.ENGINE],
                               api=lambda: app[appkeys.WECHAT_API], clock=clock)
        app[appkeys.WECHAT] = wechat

    async def wechat_ctx(app: web.Application) -> AsyncIterator[None]:
        """The customer-service API client; its token is shared through the store, so this follows store_ctx."""
        conf = settings.channels.wechat
        async with aiohttp.ClientSession() as session:
            app[appkeys.WECHAT_API] = WechatApi(session, api_base=conf.api_base, app_id=conf.app_id,
                                                app_secret=settings.secrets.wechat_app_secret,
                                                cache=app[appkeys.STORE], clock=unix_clock(clock))
            yield
            # Late answers still being pushed need the session and the store: finish them first.
            await app[appkeys.WECHAT].close()

    async def engine_ctx(app: web.Application) -> AsyncIterator[None]:
        store_ = app[appkeys.STORE]
        kb = await load_kb(settings, store_, clock)
        outboxes: dict[str, Outbox] = {"web": BusOutbox(store_, "web")}
        if wechat is not None:
            outboxes["wechat"] = wechat
        delivery = Delivery(outboxes)
        # The KB's sentence vectors from the last run: encoding every phrasing again takes ~2 ms each.
        vectors = settings.path(settings.server.data_dir) / VECTORS_FILE
        saved = shared_encoder().load(vectors)
        engine = build_engine(settings, store_, clock, kb=kb, delivery=delivery)
        app[appkeys.ENGINE] = engine
        app[appkeys.FAQ] = FaqAdmin(store_, clock, engine, near_duplicate_score=settings.matcher.answer_threshold)
        logger.info("knowledge base loaded: %d entries", len(engine.matcher))

        def save_vectors() -> None:
            nonlocal saved
            if (texts := set(engine.matcher.phrasing_texts())) != saved:
                shared_encoder().save(vectors, sorted(texts))
                saved = texts

        save_vectors()
        # Vectors reused from disk leave the model unloaded: load it beside the loop now, not during the first
        # customer's new question.
        loading = asyncio.create_task(asyncio.to_thread(shared_encoder().load_model))
        loading.add_done_callback(lambda _: settle_heap())
        yield
        await loading
        save_vectors()  # with the phrasings admins changed meanwhile

    async def kb_changed(payload: dict[str, Any]) -> None:
        await app[appkeys.FAQ].apply(str(payload["id"]))

    async def kb_resync(payload: dict[str, Any]) -> None:
        await app[appkeys.FAQ].resync()

    handlers: dict[str, list[Callable[[dict[str, Any]], Awaitable[None]]]] = {
        DELIVER_TOPIC: [], CONSOLE_TOPIC: [], KB_TOPIC: [kb_changed], BUS_RESUMED: [kb_resync]}

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        subscription = app[appkeys.STORE].subscribe()
        task = asyncio.create_task(_dispatch(subscription, handlers))
        yield
        task.cancel()
        subscription.close()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def scheduler_ctx(app: web.Application) -> AsyncIterator[None]:
        if not settings.followups.scheduler:
            yield
            return
        followups = app[appkeys.ENGINE].followups
        store_ = app[appkeys.STORE]

        async def purge() -> int:
            return await purge_closed(store_, clock.now(), settings.privacy.retention_days)

        scheduler = JobScheduler(followups, settings.shop.tz, sweep_seconds=settings.followups.sweep_seconds,
                                 daily=purge)
        followups.timer = scheduler
        await followups.run_due(startup=True)
        await scheduler.rearm()
        scheduler.start()
        app[appkeys.SCHEDULER] = scheduler
        yield
        followups.timer = None
        scheduler.shutdown()

    # Order matters: teardown runs in reverse, so timers, bus and engine stop before the store closes.
    app.cleanup_ctx.append(store_ctx)
    if wechat is not None:
        app.cleanup_ctx.append(wechat_ctx)
    app.cleanup_ctx.append(engine_ctx)
    app.cleanup_ctx.append(bus_ctx)
    app.cleanup_ctx.append(scheduler_ctx)
    app.router.add_get("/healthz", healthz)

    console = ConsoleChannel(settings, lambda: app[appkeys.STORE], lambda: app[appkeys.ENGINE])
    app.router.add_routes(console.routes())
    sessions = Sessions(settings.secrets.secret_key, lambda: app[appkeys.STORE])

    async def metrics_page(request: web.Request, agent: Agent) -> web.Response:
        return await metrics.exposition()

    if settings.server.metrics_port:
        app.cleanup_ctx.append(_metrics_site(metrics, settings.server.metrics_port))
    else:
        app.router.add_get("/metrics", sessions.guard(metrics_page, role="admin"))
    app.router.add_routes(AdminApi(settings, sessions, lambda: app[appkeys.STORE], lambda: app[appkeys.ENGINE],
                                   lambda: app[appkeys.FAQ]).routes())
    handlers[CONSOLE_TOPIC].append(console.on_bus)
    handlers[BUS_RESUMED].append(console.close_all)
    closers = [console.close_all]
    if settings.channels.webchat.enabled:
        webchat = WebchatChannel(settings, lambda: app[appkeys.ENGINE], clock, lambda: app[appkeys.STORE],
                                 metrics=metrics)
        app.router.add_routes(webchat.routes())
        handlers[DELIVER_TOPIC].append(webchat.on_deliver)
        handlers[BUS_RESUMED].append(webchat.close_all)
        closers.append(webchat.close_all)
    if wechat is not None:
        app.router.add_routes(wechat.routes())

    async def close_sockets(app: web.Application) -> None:
        for close in closers:
            await close()

    # on_shutdown runs before cleanup: open sockets are told to reconnect while the store is still open.
    app.on_shutdown.append(close_sockets)
    return app


def settle_heap() -> None:
    """What start-up built (the KB index, the model's vocabulary, templates: ~40k objects) lives as long as
    the process. Collected once, then kept out of the collector: each of its full passes walked it for ~50 ms
    under load, with every request in flight waiting (webhook p99 68 -> 32 ms)."""
    gc.collect()
    gc.freeze()


async def _dispatch(subscription: Subscription,
                    handlers: dict[str, list[Callable[[dict[str, Any]], Awaitable[None]]]]) -> None:
    """Hand every bus message to the channel handlers of its topic; one failure never stops the loop."""
    async for topic, payload in subscription:
        for handler in handlers.get(topic, ()):
            try:
                await handler(payload)
            except Exception:
                logger.exception("bus handler for %s failed", topic)


def _metrics_site(metrics: Metrics, port: int) -> Callable[[web.Application], AsyncIterator[None]]:
    """/metrics on its own loopback port, for a Prometheus that must not hold an admin login."""
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async def page(request: web.Request) -> web.Response:
            return await metrics.exposition()

        side = web.Application()
        side.router.add_get("/metrics", page)
        runner = web.AppRunner(side)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield
        await runner.cleanup()
    return ctx


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                            ) -> web.StreamResponse:
    """A store that went away is a 503 (clients and Tencent retry); nothing leaks a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except StoreError:
        logger.exception("store unavailable while handling %s", request.path)
        return web.json_response({"error": "store_unavailable"}, status=503, headers={"Retry-After": "5"})


async def healthz(request: web.Request) -> web.Response:
    engine = request.app[appkeys.ENGINE]
    return web.json_response({"status": "ok", "faq_entries": len(engine.matcher)})
