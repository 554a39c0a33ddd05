"""Every web.AppKey the application shares (aiohttp "no singletons")."""

from __future__ import annotations

from aiohttp import web

from adapters.wechat import WechatChannel
from adapters.wechat_api import WechatApi

from bot.clock import Clock
from bot.config import Settings
from bot.engine import ConversationEngine
from bot.kbadmin import FaqAdmin
from bot.scheduler import JobScheduler
from bot.storage.base import ConversationStore

SETTINGS = web.AppKey("settings", Settings)
CLOCK = web.AppKey("clock", Clock)
STORE = web.AppKey("store", ConversationStore)
ENGINE = web.AppKey("engine", ConversationEngine)
SCHEDULER = web.AppKey("scheduler", JobScheduler)
FAQ = web.AppKey("faq", FaqAdmin)
WECHAT_API = web.AppKey("wechat_api", WechatApi)
WECHAT = web.AppKey("wechat", WechatChannel)
