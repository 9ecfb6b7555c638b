"""The pages' live feeds: one WebSocket per agent desktop, any number per supervisor tenant.

Sends never wait on a slow browser: each socket has a small queue drained by its own task, and
a socket whose queue is full is closed (the page reconnects and reads the state afresh) rather
than holding the event loop or growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field

from starlette.websockets import WebSocket, WebSocketDisconnect

log = logging.getLogger(__name__)

QUEUE_MAX = 64
# Close code telling an agent's older page that another page took the session over.
TAKEN_OVER = 4409


@dataclass(eq=False)
class Feed:
    """One open WebSocket and the messages waiting for it."""

    socket: WebSocket
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))

    def send(self, text: str) -> bool:
        try:
            self.queue.put_nowait(text)
            return True
        except asyncio.QueueFull:
            return False

    def close(self) -> None:
        # Make room if need be: the end must get through.
        while True:
            try:
                self.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                self.queue.get_nowait()

    async def pump(self) -> None:
        """Send queued messages until closed; reads (pings) are drained alongside."""
        reader = asyncio.create_task(self._read())
        try:
            while True:
                text = await self.queue.get()
                if text is None:
                    return
                await self.socket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return
        finally:
            reader.cancel()
            with contextlib.suppress(Exception):
                await self.socket.close()

    async def _read(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await self.socket.receive_text()
        self.close()


class Hub:
    """Who is listening: agents by (tenant, agent id), supervisors by tenant."""

    def __init__(self) -> None:
        self._agents: dict[tuple[int, str], Feed] = {}
        self._supervisors: dict[int, set[Feed]] = {}
        self.sent = 0
        self.dropped = 0

    def open_agent(self, tenant_id: int, agent_id: str, socket: WebSocket) -> Feed:
        """The agent's page connects; an older page of the same agent is told and closed."""
        feed = Feed(socket)
        old = self._agents.get((tenant_id, agent_id))
        if old is not None:
            old.send(json.dumps({"type": "taken_over"}))
            old.close()
        self._agents[(tenant_id, agent_id)] = feed
        return feed

    def close_agent(self, tenant_id: int, agent_id: str, feed: Feed) -> None:
        if self._agents.get((tenant_id, agent_id)) is feed:
            del self._agents[(tenant_id, agent_id)]

    def open_supervisor(self, tenant_id: int, socket: WebSocket) -> Feed:
        feed = Feed(socket)
        self._supervisors.setdefault(tenant_id, set()).add(feed)
        return feed

    def close_supervisor(self, tenant_id: int, feed: Feed) -> None:
        feeds = self._supervisors.get(tenant_id)
        if feeds is not None:
            feeds.discard(feed)
            if not feeds:
                del self._supervisors[tenant_id]

    def supervisor_tenants(self) -> list[int]:
        return list(self._supervisors)

    def to_agent(self, tenant_id: int, agent_id: str, message: dict[str, object]) -> bool:
        feed = self._agents.get((tenant_id, agent_id))
        if feed is None:
            return False
        return self._send(feed, json.dumps(message, default=str))

    def to_supervisors(self, tenant_id: int, message: dict[str, object]) -> int:
        text = json.dumps(message, default=str)
        return sum(self._send(f, text) for f in list(self._supervisors.get(tenant_id, ())))

    def _send(self, feed: Feed, text: str) -> bool:
        if feed.send(text):
            self.sent += 1
            return True
        self.dropped += 1
        log.warning("x a page reads too slowly; closing its feed (it reconnects)")
        feed.close()
        return False
