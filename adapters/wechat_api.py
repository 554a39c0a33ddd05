"""WeChat customer-service message API: pushes outside a callback (agent replies, follow-ups, long answers).

The access token lives in the shared store, not in this process: every fetch invalidates the tokens held
elsewhere, so all workers share one and only refresh it when WeChat rejects it (notes §7). Failures come
back as a SendResult, never as an exception, so a push loop decides for itself what to retry.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from bot.privacy import mask_id

logger = logging.getLogger(__name__)

TOKEN_REJECTED = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
OUTSIDE_WINDOW = 45015  # more than 48 hours since the customer last wrote: WeChat refuses pushes
EMPTY_CONTENT = 44004  # WeChat's own code for an empty text; we refuse it before sending
TRANSPORT_ERROR = -1  # WeChat's "system busy" code; a timeout or a broken answer means the same: try later
TOKEN_MARGIN_SECONDS = 300.0  # refresh this long before expires_in, so no send races the expiry
REQUEST_TIMEOUT_SECONDS = 5.0

# Credentials may appear in an exception's text (a URL with its query string): scrub them before logging.
_CREDENTIAL_PARAM = re.compile(r"(access_token|secret)=[^&\s'\"]+")


class TokenCache(Protocol):
    """Where the access token is shared between workers; the project's store implements it."""

    async def cache_get(self, key: str) -> str | None: ...

    async def cache_set(self, key: str, value: str, ttl_seconds: float) -> None: ...


@dataclass(frozen=True)
class SendResult:
    """The outcome of one push: WeChat's errcode and errmsg (TRANSPORT_ERROR when it never answered)."""

    ok: bool
    errcode: int = 0
    errmsg: str = "ok"

    @property
    def outside_window(self) -> bool:
        """The customer has not written for 48 hours: retrying cannot help until they write again."""
        return self.errcode == OUTSIDE_WINDOW


class _Failed(Exception):
    """Carries a non-ok SendResult out of the request helpers to send_text."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.errmsg)
        self.result = result


def _errcode(data: dict[str, Any]) -> int:
    code = data.get("errcode", 0)
    return code if isinstance(code, int) and not isinstance(code, bool) else TRANSPORT_ERROR


class WechatApi:
    """Sends customer-service text messages for one Official Account."""

    def __init__(self, session: aiohttp.ClientSession, *, api_base: str, app_id: str, app_secret: str,
                 cache: TokenCache, clock: Callable[[], float],
                 timeout_seconds: float = REQUEST_TIMEOUT_SECONDS) -> None:
        if not app_id or not app_secret:
            raise ValueError("WeChat app id and app secret are both required")
        self._session = session
        self._base = api_base.rstrip("/")
        self._app_id = app_id
        self._secret = app_secret
        self._cache = cache
        self._clock = clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._cache_key = f"wechat:access_token:{app_id}"
        self._token_lock = asyncio.Lock()  # one fetch per worker at a time; the rest reuse its result

    async def send_text(self, openid: str, text: str) -> SendResult:
        """Push one text message (split it first: WeChat caps a text near 2,048 bytes)."""
        if not text.strip():
            return SendResult(False, EMPTY_CONTENT, "empty content: nothing sent")
        # ensure_ascii=False: this API shows \\uXXXX escapes to the customer literally.
        payload = json.dumps({"touser": openid, "msgtype": "text", "text": {"content": text}},
                             ensure_ascii=False).encode("utf-8")
        try:
            token = await self._token(rejected=None)
            result = await self._send(token, payload)
            if result.errcode in TOKEN_REJECTED:  # refreshed once only: a second rejection is not a token problem
                logger.info("wechat access token rejected (errcode %s); refreshing it once", result.errcode)
                token = await self._token(rejected=token)
                result = await self._send(token, payload)
        except _Failed as failed:
            result = failed.result
        if result.outside_window:
            logger.info("wechat push to %s not sent: outside the 48-hour customer-service window", mask_id(openid))
        elif not result.ok:
            logger.warning("wechat push to %s failed: errcode %s: %s", mask_id(openid), result.errcode, result.errmsg)
        return result

    async def _send(self, token: str, payload: bytes) -> SendResult:
        data = await self._request("POST", "/cgi-bin/message/custom/send", params={"access_token": token},
                                   data=payload)
        code = _errcode(data)
        return SendResult(code == 0, code, self._scrub(str(data.get("errmsg", ""))))

    async def _token(self, *, rejected: str | None) -> str:
        """The shared token, unless it is the one WeChat just `rejected`; then a fresh one, stored for all."""
        async with self._token_lock:
            cached = await self._cached_token()
            # Another request (or worker) may already have replaced the rejected token: use theirs.
            if cached is not None and cached != rejected:
                return cached
            return await self._fetch_token()

    async def _cached_token(self) -> str | None:
        value = await self._cache.cache_get(self._cache_key)
        if not value:
            return None
        try:
            entry = json.loads(value)
            token, expires_at = entry["access_token"], float(entry["expires_at"])
        except (ValueError, KeyError, TypeError):
            return None
        # Our own clock decides too: the store's TTL may be coarser than the token's real lifetime.
        if not isinstance(token, str) or not token or self._clock() >= expires_at:
            return None
        return token

    async def _fetch_token(self) -> str:
        data = await self._request("GET", "/cgi-bin/token", params={
            "grant_type": "client_credential", "appid": self._app_id, "secret": self._secret})
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if (not isinstance(token, str) or not token or isinstance(expires_in, bool)
                or not isinstance(expires_in, int | float) or expires_in <= 0):
            code = _errcode(data) or TRANSPORT_ERROR
            errmsg = self._scrub(str(data.get("errmsg", "unexpected answer")))
            raise _Failed(SendResult(False, code, f"access token: {errmsg}"))
        lifetime = max(expires_in - TOKEN_MARGIN_SECONDS, expires_in / 2)
        entry = json.dumps({"access_token": token, "expires_at": self._clock() + lifetime})
        await self._cache.cache_set(self._cache_key, entry, lifetime)
        logger.info("wechat access token fetched for %s (valid %.0f s)", self._app_id, lifetime)
        return token

    async def _request(self, method: str, path: str, *, params: dict[str, str],
                       data: bytes | None = None) -> dict[str, Any]:
        headers = {"Content-Type": "application/json; charset=utf-8"} if data is not None else None
        try:
            async with self._session.request(method, self._base + path, params=params, data=data,
                                             headers=headers, timeout=self._timeout) as resp:
                body = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Failed(SendResult(False, TRANSPORT_ERROR,
                                     f"{path}: {type(exc).__name__} {self._scrub(str(exc))}".strip())) from None
        if status != 200:
            raise _Failed(SendResult(False, TRANSPORT_ERROR, f"{path}: HTTP {status}"))
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise _Failed(SendResult(False, TRANSPORT_ERROR, f"{path}: answer is not a JSON object"))
        return parsed

    def _scrub(self, text: str) -> str:
        return _CREDENTIAL_PARAM.sub(r"\1=***", text).replace(self._secret, "***")
