"""Typed settings read once from config.toml (non-secret) and the environment (secrets).

Every key is declared by a frozen dataclass below; an unknown key, a wrong type or a bad value stops
start-up with a ConfigError that names the key and says what is allowed.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

LANGS = ("zh", "en")
_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")


class ConfigError(ValueError):
    """A setting is missing, unknown or invalid; the message names the key."""


@dataclass(frozen=True)
class ShopSettings:
    name: str = "家居电器旗舰店"
    name_en: str = "Home & Living Store"
    default_lang: str = "zh"
    timezone: str = "Asia/Shanghai"
    business_hours: str = "09:00-21:00"
    order_number_pattern: str = r"E\d{14}"
    orders_file: str = "knowledge_base/demo_orders.json"
    welcome_questions: tuple[str, ...] = ()

    def validate(self, key: str) -> None:
        _one_of(f"{key}.default_lang", self.default_lang, LANGS)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(f"{key}.timezone: unknown time zone {self.timezone!r}") from exc
        parse_hours(f"{key}.business_hours", self.business_hours)
        try:
            re.compile(self.order_number_pattern)
        except re.error as exc:
            raise ConfigError(f"{key}.order_number_pattern: not a regular expression ({exc})") from exc

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def display_name(self, lang: str) -> str:
        return self.name if lang == "zh" else self.name_en


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: str = "data"
    max_body_bytes: int = 65536
    max_upload_bytes: int = 8 * 1024 * 1024
    metrics_port: int = 0
    access_log: bool = True

    def validate(self, key: str) -> None:
        _in_range(f"{key}.port", self.port, 0, 65535)
        _in_range(f"{key}.metrics_port", self.metrics_port, 0, 65535)
        _in_range(f"{key}.max_body_bytes", self.max_body_bytes, 1024, 10 * 1024 * 1024)
        _in_range(f"{key}.max_upload_bytes", self.max_upload_bytes, 1024, 256 * 1024 * 1024)


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///data/kefu.sqlite3"
    key_prefix: str = "kefu:"
    dedup_ttl_seconds: int = 86400

    def validate(self, key: str) -> None:
        if not (self.url.startswith("sqlite://") or self.url.startswith(("redis://", "rediss://"))):
            raise ConfigError(f"{key}.url: must start with sqlite:// or redis:// (got {self.url!r})")
        _in_range(f"{key}.dedup_ttl_seconds", self.dedup_ttl_seconds, 60, 30 * 86400)


@dataclass(frozen=True)
class KnowledgeSettings:
    dir: str = "knowledge_base"


@dataclass(frozen=True)
class MatcherSettings:
    answer_threshold: float = 0.55
    clarify_threshold: float = 0.44
    margin: float = 0.1

    def validate(self, key: str) -> None:
        for name in ("answer_threshold", "clarify_threshold", "margin"):
            _in_range(f"{key}.{name}", getattr(self, name), 0.0, 1.0)
        if self.clarify_threshold > self.answer_threshold:
            raise ConfigError(f"{key}.clarify_threshold: must not exceed answer_threshold")


HANDOFF_TRIGGERS = ("customer_asked", "major_complaint", "complaint", "fallbacks", "clarify_declined", "agitated",
                    "vip", "faq_needs_agent")


@dataclass(frozen=True)
class HandoffSettings:
    fallbacks_before_offer: int = 2
    clarify_declines_before_offer: int = 2
    max_wait_minutes: int = 5
    triggers: tuple[str, ...] = HANDOFF_TRIGGERS
    vip_customers: tuple[str, ...] = ()
    notes_private: bool = False

    def validate(self, key: str) -> None:
        for trigger in self.triggers:
            _one_of(f"{key}.triggers", trigger, HANDOFF_TRIGGERS)
        _in_range(f"{key}.fallbacks_before_offer", self.fallbacks_before_offer, 1, 20)
        _in_range(f"{key}.clarify_declines_before_offer", self.clarify_declines_before_offer, 1, 20)
        _in_range(f"{key}.max_wait_minutes", self.max_wait_minutes, 1, 24 * 60)


@dataclass(frozen=True)
class FollowupSettings:
    survey_delay_minutes: int = 10
    complaint_visit_days: int = 3
    nudge_after_minutes: int = 5
    close_after_nudge_minutes: int = 10
    quiet_hours: str = "21:00-09:00"
    scheduler: bool = True
    sweep_seconds: float = 30.0

    def validate(self, key: str) -> None:
        _in_range(f"{key}.survey_delay_minutes", self.survey_delay_minutes, 0, 7 * 24 * 60)
        _in_range(f"{key}.complaint_visit_days", self.complaint_visit_days, 0, 30)
        _in_range(f"{key}.nudge_after_minutes", self.nudge_after_minutes, 1, 24 * 60)
        _in_range(f"{key}.close_after_nudge_minutes", self.close_after_nudge_minutes, 1, 24 * 60)
        parse_hours(f"{key}.quiet_hours", self.quiet_hours)
        _in_range(f"{key}.sweep_seconds", self.sweep_seconds, 0.1, 3600)


@dataclass(frozen=True)
class AlertSettings:
    """Thresholds that raise an alert on the dashboard (rates are 0..1)."""

    satisfaction_min: float = 0.85
    handoff_rate_max: float = 0.30
    first_contact_resolution_min: float = 0.85
    reply_timeliness_min: float = 0.90

    def validate(self, key: str) -> None:
        for f in dataclasses.fields(self):
            _in_range(f"{key}.{f.name}", getattr(self, f.name), 0.0, 1.0)


@dataclass(frozen=True)
class PrivacySettings:
    retention_days: int = 365

    def validate(self, key: str) -> None:
        _in_range(f"{key}.retention_days", self.retention_days, 1, 36500)


@dataclass(frozen=True)
class WebchatSettings:
    enabled: bool = True
    allowed_origins: tuple[str, ...] = ()
    max_message_chars: int = 2000
    rate_limit_per_minute: int = 20

    def validate(self, key: str) -> None:
        _in_range(f"{key}.max_message_chars", self.max_message_chars, 10, 100_000)
        _in_range(f"{key}.rate_limit_per_minute", self.rate_limit_per_minute, 1, 10_000)


@dataclass(frozen=True)
class WechatSettings:
    enabled: bool = False
    path: str = "/wechat"
    app_id: str = ""
    account_id: str = ""
    mode: str = "safe"
    api_base: str = "https://api.weixin.qq.com"
    reply_deadline_seconds: float = 4.0
    menu: Mapping[str, str] = field(default_factory=dict)

    def validate(self, key: str) -> None:
        _one_of(f"{key}.mode", self.mode, ("plain", "compatible", "safe"))
        if not self.path.startswith("/"):
            raise ConfigError(f"{key}.path: must start with '/' (got {self.path!r})")
        if self.enabled:
            if not re.fullmatch(r"wx[0-9a-f]{16}", self.app_id):
                raise ConfigError(f"{key}.app_id: must look like wx followed by 16 hex digits")
            if not self.account_id.startswith("gh_"):
                raise ConfigError(f"{key}.account_id: must be the account's original id (gh_…)")
        _in_range(f"{key}.reply_deadline_seconds", self.reply_deadline_seconds, 0.5, 4.5)


@dataclass(frozen=True)
class ChannelSettings:
    webchat: WebchatSettings = field(default_factory=WebchatSettings)
    wechat: WechatSettings = field(default_factory=WechatSettings)


@dataclass(frozen=True)
class Secrets:
    """Read from KEFU_* environment variables, never from the file."""

    secret_key: str = ""
    wechat_token: str = ""
    wechat_app_secret: str = ""
    wechat_encoding_aes_key: str = ""


@dataclass(frozen=True)
class Settings:
    shop: ShopSettings = field(default_factory=ShopSettings)
    server: ServerSettings = field(default_factory=ServerSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    knowledge_base: KnowledgeSettings = field(default_factory=KnowledgeSettings)
    matcher: MatcherSettings = field(default_factory=MatcherSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    followups: FollowupSettings = field(default_factory=FollowupSettings)
    channels: ChannelSettings = field(default_factory=ChannelSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    secrets: Secrets = field(default_factory=Secrets)
    root: Path = Path(".")

    def path(self, relative: str) -> Path:
        """Resolve a configured path against the directory that holds config.toml."""
        p = Path(relative)
        return p if p.is_absolute() else self.root / p


def parse_hours(key: str, value: str) -> tuple[time, time]:
    """Parse "HH:MM-HH:MM" (24:00 allowed as an end) into two times."""
    m = _HOURS_RE.match(value)
    if not m:
        raise ConfigError(f"{key}: expected HH:MM-HH:MM, got {value!r}")
    h1, m1, h2, m2 = (int(g) for g in m.groups())
    end = time(23, 59, 59) if h2 == 24 else time(h2, m2)
    return time(h1, m1), end


def load_settings(path: Path, environ: Mapping[str, str]) -> Settings:
    """Read config.toml and KEFU_* secrets; raise ConfigError naming the first bad key."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"config file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    if "secrets" in raw or "root" in raw:
        raise ConfigError("secrets come from KEFU_* environment variables, not from config.toml")
    secrets = Secrets(
        secret_key=environ.get("KEFU_SECRET_KEY", ""),
        wechat_token=environ.get("KEFU_WECHAT_TOKEN", ""),
        wechat_app_secret=environ.get("KEFU_WECHAT_APP_SECRET", ""),
        wechat_encoding_aes_key=environ.get("KEFU_WECHAT_ENCODING_AES_KEY", ""),
    )
    settings = build(Settings, raw, "")
    settings = dataclasses.replace(settings, secrets=secrets, root=path.resolve().parent)
    validate(settings)
    return settings


def validate(settings: Settings) -> None:
    """Run every section's checks, then the checks that span sections."""
    for section in dataclasses.fields(settings):
        _validate_tree(getattr(settings, section.name), section.name)
    wechat = settings.channels.wechat
    if wechat.enabled:
        s = settings.secrets
        if not s.wechat_token:
            raise ConfigError("KEFU_WECHAT_TOKEN: required when channels.wechat.enabled is true")
        if not re.fullmatch(r"[A-Za-z0-9]{3,32}", s.wechat_token):
            raise ConfigError("KEFU_WECHAT_TOKEN: 3 to 32 letters or digits")
        if wechat.mode != "plain" and not re.fullmatch(r"[A-Za-z0-9]{43}", s.wechat_encoding_aes_key):
            raise ConfigError(
                "KEFU_WECHAT_ENCODING_AES_KEY: required in compatible and safe mode, 43 letters or digits"
            )
        if not s.wechat_app_secret:
            raise ConfigError("KEFU_WECHAT_APP_SECRET: required when channels.wechat.enabled is true")


def _validate_tree(obj: object, key: str) -> None:
    check = getattr(obj, "validate", None)
    if check is not None:
        check(key)
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            child = getattr(obj, f.name)
            if dataclasses.is_dataclass(child):
                _validate_tree(child, f"{key}.{f.name}")


_T = typing.TypeVar("_T")


def build(cls: type[_T], table: Any, key: str) -> _T:
    """Build dataclass `cls` from a TOML table, refusing unknown keys and wrong types."""
    where = key or "config"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(table) - names)
    if unknown:
        allowed = ", ".join(sorted(n for n in names if n not in ("secrets", "root")))
        raise ConfigError(f"{_join(key, unknown[0])}: unknown key (allowed in {where}: {allowed})")
    values = {name: _coerce(hints[name], value, _join(key, name)) for name, value in table.items()}
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, key)  # type: ignore[arg-type]
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected a whole number, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if origin in (Mapping, dict) or (isinstance(origin, type) and issubclass(origin, Mapping)):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{key}: expected a table of strings, got {value!r}")
        return types.MappingProxyType(dict(value))
    raise ConfigError(f"{key}: unsupported setting type")  # pragma: no cover - schema bug


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: must be one of {', '.join(allowed)} (got {value!r})")


def _in_range(key: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{key}: must be between {low} and {high} (got {value!r})")
