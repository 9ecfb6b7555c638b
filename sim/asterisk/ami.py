"""The simulator's AMI server: Asterisk 20.20.1's manager protocol over TCP, plus a control API.

One `AsteriskSim` is one simulated Asterisk: a listening socket, the logged-in sessions and the
`Pbx` whose events every session with events on receives. Actions of one session are handled
one after the other, as Asterisk's per-session thread does; events interleave freely.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dialer.ami.protocol import AmiParser, FrameError, Message, encode
from sim.asterisk.channels import Event, Fields, duration
from sim.asterisk.pbx import AgiRunner, OriginateRequest, Pbx, PbxConfig, mask_number
from sim.behaviour import AgentModel, DebtorModel

log = logging.getLogger(__name__)

BANNER = b"Asterisk Call Manager/9.0.0\r\n"
VERSION = "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-28 16:53:28 UTC"


@dataclass(frozen=True, slots=True)
class AmiConfig:
    """Where the simulated manager listens and who may log in."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "dialer"
    secret: str = field(default="dialer", repr=False)
    # Asterisk waits about a second before refusing a wrong secret (slows guessing).
    auth_failure_delay: float = 1.0


def _now_tv() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class Session:
    """One manager connection."""

    def __init__(self, sim: AsteriskSim, writer: asyncio.StreamWriter) -> None:
        self.sim = sim
        self.writer = writer
        self.authenticated = False
        self.username = ""
        # None: every event class; an empty set: events off; else classes such as {"call"}.
        self.event_classes: frozenset[str] | None = None
        self.held: list[bytes] | None = None  # events queued while a blocking action runs
        self.session_id = f"0x{id(self):x}"
        self.started = _now_tv()
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = writer.get_extra_info("sockname") or ("?", 0)
        self.remote = f"IPV4/TCP/{peer[0]}/{peer[1]}"
        self.local = f"IPV4/TCP/{local[0]}/{local[1]}"

    @property
    def open(self) -> bool:
        return not self.writer.is_closing()

    def send(self, data: bytes) -> None:
        if self.open:
            self.writer.write(data)

    def wants(self, privilege: str) -> bool:
        if self.event_classes is None:
            return True
        return any(c in self.event_classes for c in privilege.split(","))

    def send_event(self, data: bytes, privilege: str = "") -> None:
        if not self.authenticated or not self.wants(privilege):
            return
        if self.held is not None:
            self.held.append(data)
        else:
            self.send(data)

    def reply(self, msg: Message, status: str, *fields: tuple[str, str]) -> None:
        """A response: `Response` first, the echoed `ActionID` second (fact 2)."""
        pairs: Fields = [("Response", status)]
        if msg.action_id is not None:
            pairs.append(("ActionID", msg.action_id))
        pairs.extend(fields)
        self.send(encode(pairs))

    def list_item(self, msg: Message, name: str, fields: Fields) -> None:
        pairs: Fields = [("Event", name)]
        if msg.action_id is not None:
            pairs.append(("ActionID", msg.action_id))
        self.send(encode(pairs + fields))

    def list_complete(self, msg: Message, name: str, count: int, *extra: tuple[str, str]) -> None:
        self.list_item(msg, name, [("EventList", "Complete"), ("ListItems", str(count)), *extra])

    def security_fields(self) -> Fields:
        return [
            ("EventTV", _now_tv()),
            ("Severity", "Informational"),
            ("Service", "AMI"),
            ("EventVersion", "1"),
            ("AccountID", self.username),
            ("SessionID", self.session_id),
            ("LocalAddress", self.local),
            ("RemoteAddress", self.remote),
            ("UsingPassword", "0"),
            ("SessionTV", self.started),
        ]

    def abort(self, reset: bool) -> None:
        """Drop the connection; with `reset` the peer sees a TCP RST instead of a FIN."""
        if reset:
            sock = self.writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.writer.transport.abort()
        else:
            self.writer.close()


Handler = Callable[[Session, Message], Awaitable[None]]


class AsteriskSim:
    """A simulated Asterisk reachable over AMI, with a control API for tests and `dialer sim`."""

    def __init__(
        self,
        ami: AmiConfig | None = None,
        pbx: PbxConfig | None = None,
        *,
        debtors: DebtorModel | None = None,
        agents: AgentModel | None = None,
        agi_runner: AgiRunner | None = None,
    ) -> None:
        self.ami = ami or AmiConfig()
        self.pbx = Pbx(
            self._broadcast, config=pbx, debtors=debtors, agents=agents, agi_runner=agi_runner
        )
        self.sessions: set[Session] = set()
        self._session_tasks: set[asyncio.Task[None]] = set()
        self.response_delay = 0.0
        # Asterisk refuses every action while it shuts down, before it says `Shutdown`.
        self.shutting_down = False
        self._server: asyncio.Server | None = None
        self._port = self.ami.port
        self._handlers: dict[str, Handler] = {
            "login": self._login,
            "logoff": self._logoff,
            "ping": self._ping,
            "events": self._events,
            "corestatus": self._core_status,
            "command": self._command,
            "originate": self._originate,
            "coreshowchannels": self._core_show_channels,
            "status": self._status,
            "getvar": self._getvar,
            "setvar": self._setvar,
            "hangup": self._hangup,
            "redirect": self._redirect,
            "mixmonitor": self._mixmonitor,
            "stopmixmonitor": self._mixmonitor,
        }

    # -- lifecycle --------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.ami.host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("= simulated Asterisk AMI listening on %s:%s", self.ami.host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_connections(reset=False)
        self.pbx.reset()
        tasks = set(self._session_tasks)
        if tasks:
            # Closed transports end their readers; cancel only what is still stuck.
            _, stuck = await asyncio.wait(tasks, timeout=1.0)
            for task in stuck:
                task.cancel()
            await asyncio.gather(*stuck, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> AsteriskSim:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- control API ------------------------------------------------------------------

    def drop_connections(self, reset: bool = True) -> int:
        """Close every AMI connection now (RST by default); returns how many were open."""
        sessions = list(self.sessions)
        for session in sessions:
            session.abort(reset)
        self.sessions.clear()
        return len(sessions)

    def send_garbage(self, truncated: bool = False) -> int:
        """Send every client a malformed frame, or half a frame followed by a dropped link."""
        count = 0
        for session in list(self.sessions):
            if truncated:
                session.send(b"Event: Hangup\r\nPrivilege: call,all\r\nChannel: Local/155")
                session.abort(reset=False)
                self.sessions.discard(session)
            else:
                session.send(b"Event: Newchannel\r\nthis line is not a header\r\n\r\n")
            count += 1
        return count

    async def restart(self, down_seconds: float = 0.0, shutdown_notice_s: float = 0.0) -> None:
        """An Asterisk restart: connections dropped, every channel gone, counters reset.

        With `shutdown_notice_s`, first what a real Asterisk 20 does on `core stop`: for that
        long every action is refused ("Asterisk is shutting down"), then `Event: Shutdown`."""
        if shutdown_notice_s > 0:
            self.shutting_down = True
            await asyncio.sleep(shutdown_notice_s)
            self._broadcast(
                (
                    ("Event", "Shutdown"),
                    ("Privilege", "system,all"),
                    ("Shutdown", "Cleanly"),
                    ("Restart", "False"),
                )
            )
        log.warning("= simulated Asterisk restarting (down %.1f s)", down_seconds)
        if down_seconds > 0 and self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self.drop_connections(reset=True)
        self.pbx.reset()
        if down_seconds > 0:
            await asyncio.sleep(down_seconds)
            self.shutting_down = False
            await self.start()
        self.shutting_down = False

    def stats(self) -> dict[str, object]:
        pbx = self.pbx
        return {
            "calls_in_flight": len(pbx.calls),
            "channels": len(pbx.channels),
            "originates": pbx.stats["originates"],
            "connected_to_agent": pbx.stats["connected"],
            "by_reason": {k[7:]: v for k, v in pbx.stats.items() if k.startswith("reason_")},
            "by_outcome": dict(pbx.outcomes),
            "by_fate": {k[5:]: v for k, v in pbx.stats.items() if k.startswith("fate_")},
            "sessions": len(self.sessions),
        }

    async def wait_calls_ended(self) -> None:
        """Return once no call is in flight (await it under `asyncio.timeout`)."""
        await self.pbx.wait_idle()

    # -- wire -----------------------------------------------------------------------------

    def _broadcast(self, event: Event) -> None:
        if not self.sessions:
            return
        data = encode(event)
        # Every event is built as (Event, name), (Privilege, classes), ...
        privilege = event[1][1] if len(event) > 1 and event[1][0] == "Privilege" else ""
        for session in self.sessions:
            session.send_event(data, privilege)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = Session(self, writer)
        self.sessions.add(session)
        task = asyncio.current_task()
        if task is not None:
            self._session_tasks.add(task)
            task.add_done_callback(self._session_tasks.discard)
        parser = AmiParser()
        try:
            writer.write(BANNER)
            while session.open:
                data = await reader.read(65536)
                if not data:
                    break
                for frame in parser.feed(data):
                    if not session.open:
                        break
                    await self._dispatch(session, frame)
                await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("x AMI client %s went away: %r", session.remote, exc)
        finally:
            self.sessions.discard(session)
            if not writer.is_closing():
                writer.close()

    async def _dispatch(self, session: Session, frame: object) -> None:
        if isinstance(frame, FrameError):
            msg = _lenient(frame.raw)
            if msg.action is None:
                log.info("x AMI %s sent a malformed frame: %s", session.remote, frame.reason)
                session.reply(msg, "Error", ("Message", "Missing action in request"))
                return
        elif isinstance(frame, Message):
            msg = frame
        else:
            return  # a client never sends a banner
        if self.response_delay > 0:
            await asyncio.sleep(self.response_delay)
        action = (msg.action or "").strip()
        if not action:
            session.reply(msg, "Error", ("Message", "Missing action in request"))
            return
        name = action.lower()
        if self.shutting_down:
            session.reply(msg, "Error", ("Message", "Asterisk is shutting down"))
            return
        if not session.authenticated and name not in ("login", "logoff", "challenge"):
            session.reply(msg, "Error", ("Message", "Permission denied"))
            return
        handler = self._handlers.get(name)
        if handler is None:
            session.reply(
                msg,
                "Error",
                (
                    "Message",
                    f"Invalid/unknown command: {action}. "
                    "Use Action: ListCommands to show available commands.",
                ),
            )
            self._security_event(session, "RequestBadFormat", action)
            return
        try:
            await handler(session, msg)
        except Exception as exc:
            # A bug on our side must cost one action, never the connection or other calls.
            log.exception("x AMI action %s failed in the simulator", action)
            session.reply(msg, "Error", ("Message", f"Internal error in simulator: {exc}"))

    def _security_event(self, session: Session, name: str, action: str) -> None:
        fields = dict(session.security_fields())
        pairs: Fields = [
            ("Event", name),
            ("Privilege", "security,all"),
            ("EventTV", fields["EventTV"]),
            ("Severity", "Error"),
            ("Service", "AMI"),
            ("EventVersion", "1"),
            ("SessionID", session.session_id),
            ("LocalAddress", session.local),
            ("RemoteAddress", session.remote),
            ("RequestType", f"Action: {action}"),
            ("SessionTV", session.started),
            ("AccountID", session.username),
        ]
        self._broadcast(tuple(pairs))

    # -- session actions ----------------------------------------------------------------

    async def _login(self, session: Session, msg: Message) -> None:
        if msg.get("Username") != self.ami.username or msg.get("Secret") != self.ami.secret:
            log.warning("x AMI login refused for %r from %s", msg.get("Username"), session.remote)
            await asyncio.sleep(self.ami.auth_failure_delay)
            session.reply(msg, "Error", ("Message", "Authentication failed"))
            session.abort(reset=False)
            self.sessions.discard(session)
            return
        session.authenticated = True
        session.username = msg.get("Username") or ""
        session.event_classes = _event_classes(msg.get("Events") or "on")
        session.reply(msg, "Success", ("Message", "Authentication accepted"))
        uptime = str(int(time.time() - self.pbx.started))
        booted: Fields = [
            ("Event", "FullyBooted"),
            ("Privilege", "system,all"),
            ("Uptime", uptime),
            ("LastReload", uptime),
            ("Status", "Fully Booted"),
        ]
        session.send_event(encode(booted), "system,all")
        pairs: Fields = [("Event", "SuccessfulAuth"), ("Privilege", "security,all")]
        session.send_event(encode(pairs + session.security_fields()), "security,all")

    async def _logoff(self, session: Session, msg: Message) -> None:
        session.reply(msg, "Goodbye", ("Message", "Thanks for all the fish."))
        await session.writer.drain()
        session.abort(reset=False)
        self.sessions.discard(session)

    async def _ping(self, session: Session, msg: Message) -> None:
        session.reply(msg, "Success", ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}"))

    async def _events(self, session: Session, msg: Message) -> None:
        session.event_classes = _event_classes(msg.get("EventMask") or "off")
        session.reply(
            msg, "Success", ("Events", "Off" if session.event_classes == frozenset() else "On")
        )

    async def _core_status(self, session: Session, msg: Message) -> None:
        started = datetime.fromtimestamp(self.pbx.started, UTC)
        session.reply(
            msg,
            "Success",
            ("CoreStartupDate", started.strftime("%Y-%m-%d")),
            ("CoreStartupTime", started.strftime("%H:%M:%S")),
            ("CoreReloadDate", started.strftime("%Y-%m-%d")),
            ("CoreReloadTime", started.strftime("%H:%M:%S")),
            ("CoreCurrentCalls", str(len(self.pbx.calls))),
            ("CoreProcessedCalls", str(self.pbx.stats["originates"])),
        )

    async def _command(self, session: Session, msg: Message) -> None:
        command = " ".join((msg.get("Command") or "").split())
        if command == "core show version":
            session.reply(
                msg, "Success", ("Message", "Command output follows"), ("Output", VERSION)
            )
            return
        if command == "core show channels count":
            lines = [
                f"{len(self.pbx.channels)} active channels",
                f"{len(self.pbx.calls)} active calls",
                f"{self.pbx.stats['originates']} calls processed",
            ]
            session.reply(
                msg,
                "Success",
                ("Message", "Command output follows"),
                *[("Output", x) for x in lines],
            )
            return
        session.reply(
            msg,
            "Error",
            ("Message", "Command output follows"),
            ("Output", f"No such command '{command}' (type 'core show help {command}' for help)"),
        )

    # -- calls ------------------------------------------------------------------------------

    async def _originate(self, session: Session, msg: Message) -> None:
        channel = (msg.get("Channel") or "").strip()
        if not channel:
            session.reply(msg, "Error", ("Message", "Channel not specified"))
            return
        try:
            timeout_ms = int(msg.get("Timeout") or 30000)
            priority = int(msg.get("Priority") or 1)
        except ValueError:
            bad = "Timeout" if not (msg.get("Timeout") or "30000").strip().isdigit() else "Priority"
            session.reply(msg, "Error", ("Message", f"Invalid {bad.lower()}"))
            return
        tech, sep, rest = channel.partition("/")
        if not sep or not rest or tech not in ("Local", "PJSIP"):
            session.reply(msg, "Error", ("Message", f"Channel technology not supported: {tech}"))
            return
        variables: list[tuple[str, str]] = []
        for raw in msg.get_all("Variable"):
            for item in raw.split(","):
                name, eq, value = item.partition("=")
                if eq and name.strip():
                    variables.append((name.strip(), value))
        is_async = (msg.get("Async") or "").strip().lower() in ("true", "yes", "1", "on")
        req = OriginateRequest(
            channel=channel,
            context=msg.get("Context") or "default",
            exten=msg.get("Exten") or "s",
            priority=priority,
            timeout_ms=timeout_ms,
            caller_id=msg.get("CallerID") or "",
            variables=tuple(variables),
            channel_id=msg.get("ChannelId") or None,
            other_channel_id=msg.get("OtherChannelId") or None,
            action_id=msg.action_id,
            is_async=is_async,
        )
        log.debug("< Originate %s (%s)", mask_number(channel), msg.action_id)
        if is_async:
            session.reply(msg, "Success", ("Message", "Originate successfully queued"))
            self.pbx.originate(req)
            # Let the call start before the next action: a fast failure's OriginateResponse
            # can then precede the Response to a later Originate, as in the batch capture.
            await asyncio.sleep(0)
            return
        # Synchronous: the session is busy until the outcome; its events wait (fact 13).
        session.held = []
        try:
            result = await self.pbx.originate(req)
            if result.success:
                session.reply(msg, "Success", ("Message", "Originate successfully queued"))
            else:
                session.reply(msg, "Error", ("Message", "Originate failed"))
        finally:
            held, session.held = session.held, None
            for data in held:
                session.send(data)

    async def _core_show_channels(self, session: Session, msg: Message) -> None:
        session.reply(msg, "Success", ("EventList", "start"), ("Message", "Channels will follow"))
        now = self.pbx.clock.now()
        channels = list(self.pbx.channels.values())
        for ch in channels:
            session.list_item(
                msg,
                "CoreShowChannel",
                [
                    *ch.fields(),
                    ("Application", ch.application),
                    ("ApplicationData", ch.app_data),
                    ("Duration", duration(now - ch.created)),
                    ("BridgeId", ch.bridge_id),
                ],
            )
        session.list_complete(msg, "CoreShowChannelsComplete", len(channels))

    async def _status(self, session: Session, msg: Message) -> None:
        name = (msg.get("Channel") or "").strip()
        if name:
            found = self.pbx.find(name)
            if found is None:
                session.reply(msg, "Error", ("Message", "No such channel"))
                return
            channels = [found]
        else:
            channels = list(self.pbx.channels.values())
        session.reply(
            msg, "Success", ("EventList", "start"), ("Message", "Channel status will follow")
        )
        now = self.pbx.clock.now()
        for ch in channels:
            pairs: Fields = [("Event", "Status"), ("Privilege", "Call"), *ch.fields()]
            pairs += [
                ("Type", ch.tech),
                ("DNID", ""),
                ("EffectiveConnectedLineNum", ch.connected_num),
                ("EffectiveConnectedLineName", ch.connected_name),
                ("TimeToHangup", "0"),
                ("BridgeID", ch.bridge_id),
                ("Application", ch.application),
                ("Data", ch.app_data),
                ("Nativeformats", "(slin)"),
                ("Readformat", "slin"),
                ("Readtrans", ""),
                ("Writeformat", "slin"),
                ("Writetrans", ""),
                ("Callgroup", "0"),
                ("Pickupgroup", "0"),
                ("Seconds", str(int(now - ch.created))),
            ]
            if msg.action_id is not None:
                pairs.append(("ActionID", msg.action_id))
            session.send(encode(pairs))
        session.list_complete(msg, "StatusComplete", len(channels), ("Items", str(len(channels))))

    async def _getvar(self, session: Session, msg: Message) -> None:
        variable = (msg.get("Variable") or "").strip()
        if not variable:
            session.reply(msg, "Error", ("Message", "No variable specified"))
            return
        name = (msg.get("Channel") or "").strip()
        value = ""
        if name:
            ch = self.pbx.find(name)
            if ch is None:
                session.reply(msg, "Error", ("Message", "No such channel"))
                return
            value = ch.variables.get(variable, "")
        session.reply(msg, "Success", ("Variable", variable), ("Value", value))

    async def _setvar(self, session: Session, msg: Message) -> None:
        variable = (msg.get("Variable") or "").strip()
        if not variable:
            session.reply(msg, "Error", ("Message", "No variable specified"))
            return
        name = (msg.get("Channel") or "").strip()
        if name:
            ch = self.pbx.find(name)
            if ch is None:
                session.reply(msg, "Error", ("Message", "No such channel"))
                return
            session.reply(msg, "Success", ("Message", "Variable Set"))
            self.pbx.set_variable(ch, variable, msg.get("Value") or "")
            return
        session.reply(msg, "Success", ("Message", "Variable Set"))

    async def _hangup(self, session: Session, msg: Message) -> None:
        name = (msg.get("Channel") or "").strip()
        if not name:
            session.reply(msg, "Error", ("Message", "No channel specified"))
            return
        try:
            cause = int(msg.get("Cause") or 16)
        except ValueError:
            session.reply(msg, "Error", ("Message", f"Invalid cause: {msg.get('Cause')}"))
            return
        if len(name) > 1 and name.startswith("/") and name.endswith("/"):
            try:
                pattern = re.compile(name[1:-1])
            except re.error as exc:
                session.reply(msg, "Error", ("Message", f"Invalid regex: {exc}"))
                return
            session.reply(
                msg,
                "Success",
                ("EventList", "start"),
                ("Message", "Channels hung up will follow"),
            )
            matched = [n for n in list(self.pbx.channels) if pattern.search(n)]
            for n in matched:
                self.pbx.request_hangup(n, cause)
                session.list_item(msg, "ChannelHungup", [("Channel", n)])
            session.list_complete(msg, "ChannelsHungupListComplete", len(matched))
            return
        if not self.pbx.request_hangup(name, cause):
            session.reply(msg, "Error", ("Message", "No such channel"))
            return
        session.reply(msg, "Success", ("Message", "Channel Hungup"))

    async def _redirect(self, session: Session, msg: Message) -> None:
        name = (msg.get("Channel") or "").strip()
        if not name:
            session.reply(msg, "Error", ("Message", "Channel not specified"))
            return
        try:
            priority = int(msg.get("Priority") or 1)
        except ValueError:
            session.reply(msg, "Error", ("Message", "Invalid priority"))
            return
        context, exten = msg.get("Context") or "", msg.get("Exten") or ""
        if not self.pbx.request_redirect(name, context, exten, priority):
            session.reply(msg, "Error", ("Message", "No such channel"))
            return
        session.reply(msg, "Success", ("Message", "Redirect successful"))

    async def _mixmonitor(self, session: Session, msg: Message) -> None:
        name = (msg.get("Channel") or "").strip()
        ch = self.pbx.find(name) if name else None
        if ch is None:
            session.reply(msg, "Error", ("Message", "No such channel"))
            return
        start = (msg.action or "").lower() == "mixmonitor"
        session.reply(msg, "Success")  # fact 26: no Message line
        self.pbx.mixmonitor(ch, start)


def _event_classes(mask: str) -> frozenset[str] | None:
    """`on`/`all`: every class; `off`: none; `call,agent`: just those (Login Events, EventMask)."""
    words = {w.strip().lower() for w in mask.split(",") if w.strip()}
    if not words or words & {"on", "all", "yes", "true"}:
        return None if words else frozenset()
    if words & {"off", "no", "false"}:
        return frozenset()
    return frozenset(words)


def _lenient(raw: str) -> Message:
    """Read what we can of a malformed frame (Asterisk ignores lines it cannot split)."""
    fields: dict[str, str] = {}
    repeated: list[tuple[str, str]] = []
    for line in raw.split("\r\n"):
        key, sep, value = line.partition(":")
        if not sep or not key.strip() or " " in key.strip():
            continue
        key, value = key.strip(), value.strip()
        if key in fields:
            repeated.append((key, value))
        else:
            fields[key] = value
    return Message(fields, tuple(repeated))
