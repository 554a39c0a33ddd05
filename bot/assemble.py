"""Builds the engine and its parts from settings; shared by the web app and the terminal chat."""

from __future__ import annotations

from bot.clock import Clock
from bot.config import Settings
from bot.delivery import Delivery
from bot.conversation import ConversationState, StateCache, fold
from bot.engine import ConversationEngine
from bot.followups import Followups
from bot.handoff import HandoffDesk
from bot.intents import IntentRules
from bot.knowledge import KnowledgeBase, load_dir
from bot.locks import KeyedLock
from bot.matcher import Matcher, Thresholds
from bot.models import Event
from bot.normalize import Normalizer
from bot.orders import JsonOrderProvider, OrderProvider
from bot.replies import ReplyRenderer
from bot.storage.base import ConversationStore


def thresholds(settings: Settings) -> Thresholds:
    m = settings.matcher
    return Thresholds(answer=m.answer_threshold, clarify=m.clarify_threshold, margin=m.margin)


def build_matcher(kb: KnowledgeBase, settings: Settings, normalizer: Normalizer | None = None) -> Matcher:
    return Matcher(kb.entries, normalizer or Normalizer(kb.synonyms), thresholds(settings))


def build_engine(
    settings: Settings,
    store: ConversationStore,
    clock: Clock,
    *,
    kb: KnowledgeBase | None = None,
    orders: OrderProvider | None = None,
    delivery: Delivery | None = None,
) -> ConversationEngine:
    kb_dir = settings.path(settings.knowledge_base.dir)
    kb = kb or load_dir(kb_dir)
    renderer = ReplyRenderer(settings.path("reply_templates"), default_lang=settings.shop.default_lang)
    locks = KeyedLock(store)
    states = StateCache(store)
    normalizer = Normalizer(kb.synonyms)
    delivery = delivery or Delivery({})
    desk = HandoffDesk(store=store, clock=clock, locks=locks, states=states, settings=settings.handoff,
                       renderer=renderer, delivery=delivery, default_lang=settings.shop.default_lang)
    followups = Followups(store=store, clock=clock, settings=settings.followups, handoff=settings.handoff,
                          renderer=renderer, delivery=delivery, default_lang=settings.shop.default_lang)

    async def closed_by_agent(conversation_id: str, before: ConversationState, events: list[Event]) -> None:
        await followups.react(conversation_id, before, fold(events, before), events)

    desk.on_closed = closed_by_agent
    return ConversationEngine(
        shop=settings.shop,
        handoff=settings.handoff,
        store=store,
        matcher=build_matcher(kb, settings, normalizer),
        normalizer=normalizer,
        entries={e.id: e for e in kb.entries},
        renderer=renderer,
        rules=IntentRules.from_file(kb_dir / "intents.yaml"),
        orders=orders or JsonOrderProvider(settings.path(settings.shop.orders_file)),
        clock=clock,
        desk=desk,
        followups=followups,
        locks=locks,
        states=states,
        dedup_ttl_seconds=settings.store.dedup_ttl_seconds,
    )
