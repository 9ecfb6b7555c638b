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
from dialer.ami.client import ActionIds, AmiClientCore, BannerReceived, Reply, ReplyReady
from dialer.ami.protocol import Message
from dialer.asterisk_check import channel_target, check_dialer_config, check_folder
from dialer.asterisk_conf import ERROR, Problem
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
    parser.add_argument(
        "--asterisk-conf",
        type=Path,
        metavar="DIR",
        help="also check this Asterisk config folder (as `dialer asterisk check-config`)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object with every check")


NEW_DATABASE = "new database: the schema is created on first use, or run `dialer db upgrade`"


def check_database(config: Config) -> Check:
    """Ok at the newest schema or with none yet (created on first use); else say what to run."""
    from dialer.store.db import current_revision, head_revision, open_store, safe_url

    url = config.effective_database_url
    new_file = _new_sqlite_file(url)
    if new_file is not None:  # not created here: doctor only looks
        blocked = _unwritable_parent(new_file)
        if blocked is not None:
            return Check("database", False, f"{safe_url(url)}: cannot be created: {blocked}")
        return Check("database", True, f"{safe_url(url)}: {NEW_DATABASE}")
    try:
        store = open_store(url, migrate=False)
        try:
            current = current_revision(store.engine)
        finally:
            store.close()
    except DialerError as exc:
        return Check("database", False, f"{safe_url(url)}: {exc}")
    head = head_revision()
    if current is None:
        return Check("database", True, f"{safe_url(url)}: {NEW_DATABASE}")
    if current == head:
        return Check("database", True, f"{safe_url(url)} (schema {current})")
    if current in _known_revisions():
        detail = f"schema at {current}, this dialer expects {head}: run `dialer db upgrade`"
    else:
        detail = (
            f"schema at {current}, a revision this dialer does not know (a newer version "
            f"upgraded it?): upgrade the dialer, or with the newer one `dialer db downgrade {head}`"
        )
    return Check("database", False, f"{safe_url(url)}: {detail}")


def _new_sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL when it does not exist yet."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None  # open_store says what is wrong with it
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path


def _unwritable_parent(path: Path) -> str | None:
    """Why `path` cannot be created, or None when its nearest existing folder is writable."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{parent} is not a folder"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{parent} is not writable by this user"
    return None


def _known_revisions() -> set[str]:
    from alembic.config import Config as AlembicConfig
    from alembic.script import ScriptDirectory

    from dialer.store.db import MIGRATIONS_DIR

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}


class AmiSession:
    """A short AMI conversation for the doctor: one action at a time over the sans-I/O core."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._core = AmiClientCore(ActionIds("doctor"))
        self._replies: dict[str, Reply] = {}
        self.version = "?"

    async def ask(
        self,
        action: str,
        fields: list[tuple[str, str]] | None = None,
        *,
        expects_list: bool = False,
        timeout: float,
    ) -> Reply:
        action_id, data = self._core.build_action(action, fields or (), expects_list=expects_list)
        self._writer.write(data)
        try:
            async with asyncio.timeout(timeout):
                while action_id not in self._replies:
                    chunk = await self._reader.read(65536)
                    if not chunk:
                        raise ConnectionError("closed by the server")
                    for item in self._core.receive_data(chunk):
                        if isinstance(item, BannerReceived):
                            self.version = item.version
                        elif isinstance(item, ReplyReady):
                            self._replies[item.reply.action_id] = item.reply
        except TimeoutError:
            self._core.forget(action_id)
            raise
        return self._replies.pop(action_id)

    def say(self, action: str) -> None:
        """Send an action without waiting for its reply (Logoff)."""
        self._writer.write(self._core.build_action(action)[1])


async def check_ami_server(server: AmiServerConfig, config: Config) -> list[Check]:
    """Log in; with a PJSIP channel template, also the trunk's contacts and registration."""
    name = f"ami {server.name} {server.host}:{server.port}"
    try:
        async with asyncio.timeout(config.ami.connect_timeout_s):
            reader, writer = await asyncio.open_connection(server.host, server.port)
    except (OSError, TimeoutError) as exc:
        return [Check(name, False, f"unreachable: {exc or type(exc).__name__}")]
    session = AmiSession(reader, writer)
    checks: list[Check] = []
    try:
        login = await session.ask(
            "Login",
            [("Username", server.username), ("Secret", server.secret.reveal()), ("Events", "off")],
            timeout=config.ami.connect_timeout_s,
        )
        if not login.ok:
            refused = f"login as {server.username!r} refused: {login.message or 'no reason'}"
            return [Check(name, False, f"{refused}; check manager.conf")]
        version = f"Asterisk Call Manager/{session.version}"
        checks.append(Check(name, True, f"logged in as {server.username} ({version})"))
        trunk = channel_target(config.dialing.channel_template)
        if trunk.tech == "pjsip":
            timeout = config.ami.action_timeout_s
            shown = await session.ask(
                "PJSIPShowEndpoint", [("Endpoint", trunk.name)], expects_list=True, timeout=timeout
            )
            checks.append(trunk_contacts_check(server, trunk.name, shown))
            if shown.ok:
                registrations = await session.ask(
                    "PJSIPShowRegistrationsOutbound", expects_list=True, timeout=timeout
                )
                registered = trunk_registration_check(server, trunk.name, registrations)
                checks.extend([registered] if registered is not None else [])
        session.say("Logoff")
    except TimeoutError:
        checks.append(Check(name, False, "no reply in time: is Asterisk overloaded or stopping?"))
    except OSError as exc:
        checks.append(Check(name, False, f"connection failed: {exc}"))
    finally:
        writer.close()
    return checks


def check_ami(config: Config) -> list[Check]:
    checks = []
    for server in config.ami.servers:
        checks.extend(asyncio.run(check_ami_server(server, config)))
    return checks


def _refused(reply: Reply, server: AmiServerConfig) -> str:
    if "permission" in reply.message.lower():
        return (
            f"the AMI user may not send {reply.action}: add system to write = of "
            f"[{server.username}] in manager.conf"
        )
    return f"{reply.action}: {reply.message or 'refused'}"


def trunk_contacts_check(server: AmiServerConfig, endpoint: str, reply: Reply) -> Check:
    """From a PJSIPShowEndpoint reply: the endpoint exists and a contact answers OPTIONS."""
    name = f"trunk {endpoint} on {server.name}"
    if not reply.ok:
        if "permission" in reply.message.lower():
            return Check(name, False, _refused(reply, server))
        return Check(
            name,
            False,
            f"Asterisk has no PJSIP endpoint {endpoint!r} ({reply.message or 'refused'}): check "
            "pjsip_wizard.conf / pjsip.conf, then `module reload res_pjsip.so`",
        )
    contacts = [m for m in reply.items if m.event == "ContactStatusDetail"]
    if not contacts:
        return Check(
            name,
            False,
            "no contact: calls to the trunk have nowhere to go (remote_hosts of its wizard, "
            "contact = of its aor, or a registration of the carrier)",
        )
    reachable = [c for c in contacts if c.get("Status") == "Reachable"]
    usable = [c for c in contacts if c.get("Status") not in ("Unreachable", "Removed")]
    if reachable:
        unreachable = [c for c in contacts if c.get("Status") == "Unreachable"]
        detail = "reachable: " + ", ".join(f"{_uri(c)} ({_rtt(c)})" for c in reachable)
        if unreachable:
            detail += "; unreachable: " + ", ".join(_uri(c) for c in unreachable)
        return Check(name, True, detail)
    statuses = ", ".join(f"{_uri(c)} {c.get('Status') or 'Unknown'}" for c in contacts)
    if not usable:
        return Check(
            name,
            False,
            f"unreachable: {statuses} (no answer to OPTIONS within qualify_timeout): check the "
            "carrier's host and port, the firewall (5060/udp), `pjsip show contacts`",
        )
    return Check(
        name,
        False,
        f"not known to be reachable: {statuses}: a contact stays NonQualified until its first "
        "OPTIONS is answered (for ever with aor/qualify_frequency = 0); run doctor again",
        required=False,
    )


def _uri(contact: Message) -> str:
    return contact.get("URI") or contact.get("Uri") or "?"


def _rtt(contact: Message) -> str:
    usec = contact.get("RoundtripUsec") or ""
    return f"{int(usec) / 1000:.1f} ms" if usec.isdigit() else "rtt ?"


def trunk_registration_check(server: AmiServerConfig, endpoint: str, reply: Reply) -> Check | None:
    """From a PJSIPShowRegistrationsOutbound reply: the trunk's registrations, if it has any."""
    name = f"trunk {endpoint} registration on {server.name}"
    if not reply.ok:
        if "permission" in reply.message.lower():
            return Check(name, False, _refused(reply, server))
        return None  # res_pjsip_outbound_registration not loaded: nothing registers
    mine = [
        m
        for m in reply.items
        if m.event == "OutboundRegistrationDetail"
        and (
            m.get("ObjectName") == endpoint
            or (m.get("ObjectName") or "").startswith(f"{endpoint}-reg-")  # the wizard's
            or m.get("Endpoint") == endpoint
        )
    ]
    if not mine:
        return None  # an IP-authenticated trunk
    states = ", ".join(
        f"{m.get('ObjectName')} to {m.get('ServerUri') or '?'} {m.get('Status') or 'Unknown'}"
        for m in mine
    )
    if all(m.get("Status") == "Registered" for m in mine):
        return Check(name, True, states)
    return Check(
        name,
        False,
        f"{states}: Rejected is a refused account (check outbound_auth username and password, "
        "403: the carrier's side), Unregistered not yet or no answer; `pjsip show registrations`",
    )


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


def check_configs(config: Config, config_path: Path | None, folder: Path | None) -> list[Check]:
    """The caller ID and recording folder; with `folder`, what `asterisk check-config` checks."""
    checks = [
        _problem_check("dialer config", p)
        for p in check_dialer_config(config, str(config_path or "config"))
    ]
    if folder is not None:
        problems = check_folder(folder, config)
        checks += [_problem_check("asterisk config", p) for p in problems]
        if not any(p.severity == ERROR for p in problems):
            checks.append(Check("asterisk config", True, f"{folder} fits the dialer config"))
    return checks


def _problem_check(name: str, problem: Problem) -> Check:
    detail = f"{problem.where}: {problem.message}"
    return Check(name, False, detail, required=problem.severity == ERROR)


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
        checks.extend(check_configs(config, args.config, args.asterisk_conf))
    checks.append(check_asr())
    healthy = all(c.ok for c in checks if c.required)
    if args.json:
        print(json.dumps({"ok": healthy, "checks": [asdict(c) for c in checks]}))
    else:
        for c in checks:
            mark = "ok  " if c.ok else ("FAIL" if c.required else "warn")
            print(f"[{mark}] {c.name}: {c.detail}")
    return 0 if healthy else 1
