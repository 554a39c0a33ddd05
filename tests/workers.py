"""Real kefu worker processes on loopback for tests/test_workers.py: config, start, wait, kill, clean up;
plus scripted clients (a web-chat widget with its outbox, an agent console) that talk to them over the wire."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
SECRET_KEY = "workers-test-secret-0123456789abcdef"
H = {"X-Requested-With": "kefu"}
Frame = dict[str, Any]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- config --------------------------------------------------------------------------------------------


def write_config(folder: Path, store_url: str, prefix: str,
                 overrides: Mapping[str, Mapping[str, Any]] = {}) -> Path:
    """config.toml in `folder`: the repository's file (whatever keys it has today) with the store on Redis
    under `prefix`, the sample KB, data in `folder`, and `overrides` ({"section" or "a.b": {key: value}})."""
    raw = tomllib.loads((ROOT / "config.toml").read_text(encoding="utf-8"))
    raw["store"]["url"] = store_url
    raw["store"]["key_prefix"] = prefix
    raw["knowledge_base"]["dir"] = str(ROOT / "knowledge_base")
    raw["shop"]["orders_file"] = str(ROOT / raw["shop"]["orders_file"])
    raw["server"]["data_dir"] = str(folder / "data")
    for section, values in overrides.items():
        table = raw
        for part in section.split("."):
            table = table.setdefault(part, {})
        table.update(values)
    # Templates are found next to config.toml.
    if not (folder / "reply_templates").exists():
        (folder / "reply_templates").symlink_to(ROOT / "reply_templates")
    path = folder / "config.toml"
    path.write_text(_toml(raw), encoding="utf-8")
    return path


def _toml(raw: Mapping[str, Any]) -> str:
    """Enough TOML for config.toml: tables of strings, numbers, booleans, string lists and sub-tables."""
    lines: list[str] = []

    def table(name: str, values: Mapping[str, Any]) -> None:
        subs = {k: v for k, v in values.items() if isinstance(v, dict)}
        lines.append(f"[{name}]")
        for key, value in values.items():
            if key not in subs:
                lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars and string lists are TOML too
        lines.append("")
        for key, value in subs.items():
            table(f"{name}.{key}", value)

    for name, values in raw.items():
        table(name, values)
    return "\n".join(lines)


# -- processes -----------------------------------------------------------------------------------------


class Worker:
    """One `python -m bot serve` process (or a `--workers N` parent and its children) in its own session,
    so that teardown can kill the whole group."""

    def __init__(self, config: Path, port: int, log: Path, *, workers: int = 1,
                 env: Mapping[str, str] = {}) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        argv = [str(PYTHON), "-m", "bot", "--config", str(config), "serve", "--port", str(port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        full_env = {**os.environ, "KEFU_SECRET_KEY": SECRET_KEY, **env}
        full_env.pop("KEFU_WORKER", None)
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """kill -9 of the whole group: no shutdown handler runs, sockets just drop."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"worker on {self.port} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                async with session.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200:
                        return
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"worker on {self.port} not healthy after {timeout} s:\n{self.tail()}")


async def add_agent(config: Path, username: str, password: str, *extra: str) -> None:
    """`python -m bot agents add`, the password from KEFU_AGENT_PASSWORD as the README shows."""
    env = {**os.environ, "KEFU_SECRET_KEY": SECRET_KEY, "KEFU_AGENT_PASSWORD": password}
    proc = await asyncio.create_subprocess_exec(
        str(PYTHON), "-m", "bot", "--config", str(config), "agents", "add", username, *extra,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, out.decode(errors="replace")


async def eventually(check: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.05,
                     what: str = "condition") -> Any:
    """Poll `check` (sync or async) until it returns something truthy, up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not true within {timeout} s (last: {result!r})")
        await asyncio.sleep(interval)


def redis_server_version() -> str | None:
    """None when no redis-server binary is on PATH."""
    import shutil

    path = shutil.which("redis-server")
    if path is None:
        return None
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
    return out.stdout.strip() or "redis-server"


class PrivateRedis:
    """A redis-server of our own on a free port (AOF on, no RDB), for restarts in the middle of a test."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "redis.log", "ab") as out:
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "yes", "--dir", str(self.folder)],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        """SIGTERM: redis-server flushes its AOF and exits, as in a service restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    async def wait_ready(self, timeout: float = 10.0) -> None:
        import redis.asyncio

        async def pong() -> bool:
            client = redis.asyncio.Redis(port=self.port)
            try:
                return bool(await client.ping())
            except redis.exceptions.RedisError:
                return False
            finally:
                await client.aclose()

        await eventually(pong, timeout=timeout, interval=0.05, what=f"private redis-server on {self.port}")


# -- clients -------------------------------------------------------------------------------------------


class Closed(Exception):
    """The socket went away (worker killed, store unavailable, shutdown)."""


class FrameReader:
    """Every frame a socket received, read only inside `expect` (one reader, bounded waits)."""

    def __init__(self) -> None:
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.frames: list[Frame] = []

    def mark(self) -> int:
        return len(self.frames)

    async def expect(self, pred: Callable[[Frame], bool], *, since: int = 0, timeout: float = 5.0) -> Frame:
        for frame in self.frames[since:]:
            if pred(frame):
                return frame
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching frame within {timeout} s; got {self.frames[since:]}")
            try:
                msg = await self.ws.receive(timeout=left)
            except asyncio.TimeoutError:
                continue
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise Closed(f"{msg.type.name} {msg.data!r} {msg.extra!r}")
            frame = json.loads(msg.data)
            self.frames.append(frame)
            if pred(frame):
                return frame


class Widget(FrameReader):
    """What widget.js does, scripted: keeps its token, an outbox of unacknowledged messages, and after
    every (re)connect drops what the history already holds and resends the rest with the same ids."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__()
        self.session = session
        self.token: str | None = None
        self.history: list[Frame] = []
        self.outbox: list[tuple[str, str]] = []
        self.acks: dict[str, list[bool]] = {}

    async def connect(self, base_url: str) -> list[Frame]:
        await self.close()
        self.ws = await self.session.ws_connect(base_url + "/ws/chat", timeout=aiohttp.ClientWSTimeout(ws_close=2))
        await self.ws.send_json({"type": "hello", "token": self.token, "lang": "zh"})
        welcome = await self.expect(lambda f: f["type"] == "welcome", since=self.mark())
        self.token = welcome["token"]
        self.history = welcome["history"]
        held = {item.get("client_id") for item in self.history}
        self.outbox = [(cid, text) for cid, text in self.outbox if cid not in held]
        return self.history

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        self.ws = None

    async def send(self, text: str, cid: str | None = None) -> str:
        """Queue a message and put it on the wire; `flush` waits for the ack."""
        cid = cid or uuid.uuid4().hex
        self.outbox.append((cid, text))
        assert self.ws is not None
        await self.ws.send_json({"type": "message", "id": cid, "text": text})
        return cid

    async def flush(self, timeout: float = 10.0) -> None:
        """Send the outbox one at a time, each once acked (as the widget does after a welcome)."""
        while self.outbox:
            cid, text = self.outbox[0]
            since = self.mark()
            assert self.ws is not None
            await self.ws.send_json({"type": "message", "id": cid, "text": text})
            await self.wait_ack(cid, since=since, timeout=timeout)

    async def wait_ack(self, cid: str, *, since: int = 0, timeout: float = 10.0) -> Frame:
        frame = await self.expect(lambda f: f["type"] in ("ack", "error") and f.get("id") == cid, since=since,
                                  timeout=timeout)
        if frame["type"] == "error":
            raise AssertionError(f"message {cid} refused: {frame}")
        self.acks.setdefault(cid, []).append(frame["duplicate"])
        self.outbox = [(c, t) for c, t in self.outbox if c != cid]
        return frame

    async def ask(self, text: str, timeout: float = 5.0) -> list[Frame]:
        """One message and everything up to its ack and the end of the bot's typing."""
        since = self.mark()
        cid = await self.send(text)
        await self.wait_ack(cid, since=since, timeout=timeout)
        await self.expect(lambda f: f["type"] == "typing" and f["on"] is False, since=since, timeout=timeout)
        return self.frames[since:]


class Console(FrameReader):
    """An agent logged in on one worker: HTTP for actions, the console socket for live updates."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        # unsafe=True: keep cookies for an IP-address host (loopback).
        self.http = aiohttp.ClientSession(base_url=base_url, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def log_in(self, username: str, password: str) -> None:
        async with self.http.post("/api/auth/login", json={"username": username, "password": password},
                                  headers=H) as resp:
            assert resp.status == 200, await resp.text()

    async def open_socket(self) -> None:
        self.ws = await self.http.ws_connect("/ws/console")

    async def call(self, method: str, path: str, body: Any = None, *, status: int = 200) -> Any:
        async with self.http.request(method, path, json=body, headers=H) as resp:
            text = await resp.text()
            assert resp.status == status, f"{method} {path}: {resp.status} {text}"
            return json.loads(text) if text else None

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        await self.http.close()

