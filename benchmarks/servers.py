"""Starting the bot (and the minimal comparison servers) as separate processes for the load benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WECHAT_TOKEN = "benchtoken"
WECHAT_AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
WECHAT_APP_ID = "wx0123456789abcdef"


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {port}")


def start_bot(port: int, folder: Path, *, store_url: str | None = None, workers: int = 1,
              wechat: bool = False) -> subprocess.Popen[bytes]:
    """The real bot with the sample KB, data in `folder` (SQLite unless store_url), rate limits lifted."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("knowledge_base", "reply_templates"):
        if not (folder / name).exists():
            (folder / name).symlink_to(ROOT / name)
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace("rate_limit_per_minute = 20", "rate_limit_per_minute = 10000")
    text = text.replace('business_hours = "09:00-21:00"', 'business_hours = "00:00-24:00"')
    if store_url:
        text = text.replace('url = "sqlite:///data/kefu.sqlite3"', f'url = "{store_url}"')
        text = text.replace('key_prefix = "kefu:"', f'key_prefix = "kefu-bench-{port}:"')
    if wechat:
        text = text.replace('[channels.wechat]\nenabled = false', '[channels.wechat]\nenabled = true')
        text = text.replace('app_id = ""', f'app_id = "{WECHAT_APP_ID}"').replace('account_id = ""',
                                                                                 'account_id = "gh_bench"')
        text = text.replace('mode = "safe"', 'mode = "plain"')
        text = text.replace('api_base = "https://api.weixin.qq.com"', 'api_base = "http://127.0.0.1:9"')
    config = folder / "config.toml"
    config.write_text(text, encoding="utf-8")
    env = {**os.environ, "KEFU_SECRET_KEY": "bench-secret", "KEFU_WECHAT_TOKEN": WECHAT_TOKEN,
           "KEFU_WECHAT_APP_SECRET": "bench-secret", "KEFU_WECHAT_ENCODING_AES_KEY": WECHAT_AES_KEY}
    argv = [sys.executable, "-m", "bot", "--config", str(config), "serve", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_script(source: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", source, str(port)], env={**os.environ, "TOKEN": WECHAT_TOKEN})


def stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def flush_prefix(url: str, prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
