"""`dialer doctor`: checks the environment a campaign needs and says what to fix."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import dialer
from dialer.ami.client import ActionIds, AmiClientCore, BannerReceived, ReplyReady
from dialer.config import AmiServerConfig, Config, load_config
from dialer.errors import DialerError


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    required: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--json", action="store_true", help="one JSON object with every check")


def check_database(config: Config) -> Check:
    from dialer.store.db import current_revision, head_revision, open_store, safe_url

    url = config.effective_database_url
    try:
        store = open_store(url, migrate=False)
        try:
            current = current_revision(store.engine)
        finally:
            store.close()
    except DialerError as exc:
        return Check("database", False, f"{safe_url(url)}: {exc}")
    head = head_revision()
    if current != head:
        return Check(
            "database",
            False,
            f"{safe_url(url)}: schema at {current}, code expects {head}; run `dialer db upgrade`",
        )
    return Check("database", True, f"{safe_url(url)} (schema {current})")


async def _ami_login(server: AmiServerConfig, timeout: float) -> str:
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(server.host, server.port)
        core = AmiClientCore(ActionIds("doctor"))
        try:
            _, data = core.build_action(
                "Login",
                [
                    ("Username", server.username),
                    ("Secret", server.secret.reveal()),
                    ("Events", "off"),
                ],
            )
            writer.write(data)
            version = "?"
            while True:
                chunk = await reader.read(4096)
                if not chunk:
                    raise ConnectionError("closed by the server")
                for item in core.receive_data(chunk):
                    if isinstance(item, BannerReceived):
                        version = item.version
                    elif isinstance(item, ReplyReady):
                        if not item.reply.ok:
                            raise PermissionError(item.reply.message or "login refused")
                        _, bye = core.build_action("Logoff")
                        writer.write(bye)
                        return version
        finally:
            writer.close()


def check_ami(config: Config) -> list[Check]:
    checks = []
    for server in config.ami.servers:
        name = f"ami {server.name} {server.host}:{server.port}"
        try:
            version = asyncio.run(_ami_login(server, config.ami.connect_timeout_s))
            checks.append(
                Check(
                    name, True, f"logged in as {server.username} (Asterisk Call Manager/{version})"
                )
            )
        except PermissionError as exc:
            checks.append(
                Check(
                    name, False, f"login as {server.username!r} refused: {exc}; check manager.conf"
                )
            )
        except (OSError, TimeoutError) as exc:
            checks.append(Check(name, False, f"unreachable: {exc or type(exc).__name__}"))
    return checks


def check_agi_port(config: Config) -> Check:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((config.agi.bind_host, config.agi.port))
        except OSError as exc:
            return Check(
                "fastagi port",
                False,
                f"{config.agi.bind_host}:{config.agi.port} cannot be bound: {exc.strerror}",
            )
    return Check(
        "fastagi port",
        True,
        f"{config.agi.bind_host}:{config.agi.port} free; Asterisk must reach {config.agi.advertise_host}",
    )


def check_redis(config: Config) -> Check:
    url = config.redis_url
    if not url:
        return Check(
            "redis", True, "not configured (single node: in-process state)", required=False
        )
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.close()
    except redis.RedisError as exc:
        return Check("redis", False, f"unreachable: {exc}")
    return Check("redis", True, "ping ok")


def check_asr() -> Check:
    if importlib.util.find_spec("vosk") is None:
        return Check(
            "asr models",
            False,
            "vosk not installed (needed only for the recording pipeline)",
            required=False,
        )
    model = os.environ.get("DIALER_VOSK_MODEL")
    if not model or not Path(model).is_dir():
        return Check(
            "asr models",
            False,
            "no vosk model found; set DIALER_VOSK_MODEL to a model directory",
            required=False,
        )
    return Check("asr models", True, model, required=False)


def run(args: argparse.Namespace) -> int:
    checks = [
        Check("python", sys.version_info >= (3, 11), sys.version.split()[0]),
        Check("dialer", True, dialer.__version__),
    ]
    try:
        config = load_config(args.config)
    except DialerError as exc:
        checks.append(Check("config", False, str(exc)))
        config = None
    if config is not None:
        checks.append(Check("config", True, str(args.config or "defaults + environment")))
        checks.append(check_database(config))
        checks.extend(check_ami(config))
        checks.append(check_agi_port(config))
        checks.append(check_redis(config))
    checks.append(check_asr())
    healthy = all(c.ok for c in checks if c.required)
    if args.json:
        print(json.dumps({"ok": healthy, "checks": [asdict(c) for c in checks]}))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name}: {c.detail}")
    return 0 if healthy else 1
