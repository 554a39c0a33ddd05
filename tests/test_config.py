from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings

from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_repo_config_loads_with_defaults_and_env_secrets() -> None:
    settings = load_settings(ROOT / "config.toml", {"KEFU_SECRET_KEY": "s3cret"})
    assert settings.shop.timezone == "Asia/Shanghai"
    assert settings.server.port == 8080
    assert settings.secrets.secret_key == "s3cret"
    assert settings.path("knowledge_base") == ROOT / "knowledge_base"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[shop]\nnmae = 'x'\n", "shop.nmae: unknown key"),
        ("[shoop]\n", "shoop: unknown key"),
        ("[server]\nport = 'eighty'\n", "server.port: expected a whole number"),
        ("[server]\nport = 70000\n", "server.port: must be between"),
        ("[shop]\ntimezone = 'Mars/Olympus'\n", "shop.timezone: unknown time zone"),
        ("[shop]\nbusiness_hours = '9-21'\n", "shop.business_hours: expected HH:MM-HH:MM"),
        ("[matcher]\nanswer_threshold = 0.2\nclarify_threshold = 0.5\n", "matcher.clarify_threshold"),
        ("[channels.wechat]\nmode = 'loud'\n", "channels.wechat.mode: must be one of plain, compatible, safe"),
        ("[channels.webchat]\nenabled = 'yes'\n", "channels.webchat.enabled: expected true or false"),
        ("[store]\nurl = 'mysql://x'\n", "store.url: must start with"),
        ("[secrets]\nsecret_key = 'x'\n", "environment variables"),
        ("not toml = = =\n", "not valid TOML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.").replace("(", r"\(")):
        load_settings(write(tmp_path, text), {})


def test_wechat_enabled_needs_its_secrets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "[channels.wechat]\nenabled = true\napp_id = 'wx0123456789abcdef'\naccount_id = 'gh_123'\n",
    )
    with pytest.raises(ConfigError, match="KEFU_WECHAT_TOKEN"):
        load_settings(path, {})
    env = {"KEFU_WECHAT_TOKEN": "token123", "KEFU_WECHAT_APP_SECRET": "secret"}
    with pytest.raises(ConfigError, match="KEFU_WECHAT_ENCODING_AES_KEY"):
        load_settings(path, env)
    env["KEFU_WECHAT_ENCODING_AES_KEY"] = "a" * 43
    assert load_settings(path, env).channels.wechat.enabled


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", {})
