"""JSON-lines control port of the standalone simulator: fault injection and stats over TCP.

One JSON object per line in, one per line out. Commands:
`{"cmd": "stats"}`, `{"cmd": "drop", "reset": true}`, `{"cmd": "garbage", "truncated": false}`,
`{"cmd": "delay", "seconds": 2.0}`, `{"cmd": "restart", "down_seconds": 0, "shutdown_notice_s": 1.1}`,
`{"cmd": "wait_idle", "timeout": 30}`. Replies are `{"ok": true, ...}` or
`{"ok": false, "error": "..."}`; a bad line costs only its own reply.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sim.asterisk.ami import AsteriskSim

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024


class ControlError(ValueError):
    """A control command that cannot be carried out (unknown, or bad arguments)."""


def _number(request: dict[str, Any], key: str, default: float) -> float:
    value = request.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ControlError(f"{key!r} must be a number >= 0, got {value!r}")
    return float(value)


async def execute(sim: AsteriskSim, request: dict[str, Any]) -> dict[str, Any]:
    """Carry out one control command against `sim`; the reply object."""
    cmd = request.get("cmd")
    if cmd == "stats":
        return {"ok": True, "stats": sim.stats()}
    if cmd == "drop":
        return {"ok": True, "dropped": sim.drop_connections(bool(request.get("reset", True)))}
    if cmd == "garbage":
        return {"ok": True, "sent": sim.send_garbage(bool(request.get("truncated", False)))}
    if cmd == "delay":
        sim.response_delay = _number(request, "seconds", 0.0)
        return {"ok": True, "delay": sim.response_delay}
    if cmd == "restart":
        await sim.restart(
            _number(request, "down_seconds", 0.0), _number(request, "shutdown_notice_s", 0.0)
        )
        return {"ok": True}
    if cmd == "wait_idle":
        timeout = _number(request, "timeout", 30.0)
        try:
            async with asyncio.timeout(timeout):
                await sim.wait_calls_ended()
        except TimeoutError:
            return {"ok": False, "error": f"calls still in flight after {timeout} s"}
        return {"ok": True}
    raise ControlError(f"unknown command {cmd!r}")


class ControlServer:
    """Serves `execute` over TCP, one JSON object per line."""

    def __init__(self, sim: AsteriskSim, host: str = "127.0.0.1", port: int = 0) -> None:
        self.sim = sim
        self.host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, self.host, self._port, limit=MAX_LINE
        )
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("= simulator control port on %s:%s", self.host, self._port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                reply = await self._handle(line)
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as exc:
            # ValueError: a line longer than the limit; the client gets nothing more.
            log.info("x control client went away: %r", exc)
        finally:
            writer.close()

    async def _handle(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return {"ok": False, "error": f"not JSON: {exc}"}
        if not isinstance(request, dict):
            return {"ok": False, "error": 'expected a JSON object like {"cmd": "stats"}'}
        try:
            return await execute(self.sim, request)
        except ControlError as exc:
            return {"ok": False, "error": str(exc)}
