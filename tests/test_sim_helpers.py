"""A minimal AMI client for the simulator's tests, and readers for the Asterisk captures."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from dialer.ami.protocol import AmiParser, Banner, FrameError, Message, encode_action
from dialer.ami.traces import read_trace
from sim.asterisk import AmiConfig, AsteriskSim, PbxConfig
from sim.behaviour import AgentModel, DebtorModel

WAIT = 5.0  # seconds before a test gives up on an expected message


class Probe:
    """Records every frame the server sends; lets a test send actions and await messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.frames: list[Message | Banner | FrameError] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._parser = AmiParser()
        self._ids = 0
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> Probe:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self.reader.read(65536):
                self.frames.extend(self._parser.feed(data))
                self._changed.set()
        except ConnectionError:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    @property
    def messages(self) -> list[Message]:
        return [f for f in self.frames if isinstance(f, Message)]

    def send(self, action: str, *fields: tuple[str, str], action_id: str | None = None) -> str:
        self._ids += 1
        aid = action_id or f"t-{self._ids}"
        self.writer.write(encode_action(action, aid, fields))
        return aid

    async def wait_for(self, match: Callable[[Message], bool], timeout: float = WAIT) -> Message:
        seen = 0  # frames already checked: each frame is looked at once
        async with asyncio.timeout(timeout):
            while True:
                frames = self.frames
                for frame in frames[seen:]:
                    if isinstance(frame, Message) and match(frame):
                        return frame
                seen = len(frames)
                if self.closed.is_set():
                    raise ConnectionError("connection closed before the expected message")
                self._changed.clear()
                await self._changed.wait()

    async def response(self, action_id: str) -> Message:
        return await self.wait_for(lambda m: m.response is not None and m.action_id == action_id)

    async def event(self, name: str, **fields: str) -> Message:
        return await self.wait_for(
            lambda m: m.event == name and all(m.get(k) == v for k, v in fields.items())
        )

    async def action(self, action: str, *fields: tuple[str, str]) -> Message:
        return await self.response(self.send(action, *fields))

    async def login(self, username: str = "dialer", secret: str = "dialer") -> Message:
        return await self.action("Login", ("Username", username), ("Secret", secret))

    async def close(self) -> None:
        self.writer.close()
        self._task.cancel()


@asynccontextmanager
async def running_sim(
    *,
    time_scale: float = 50.0,
    debtors: DebtorModel | None = None,
    agents: AgentModel | None = None,
    verbose: bool = False,
    **kw: object,
) -> AsyncIterator[AsteriskSim]:
    sim = AsteriskSim(
        AmiConfig(port=0, auth_failure_delay=0.05),
        PbxConfig(time_scale=time_scale, verbose_events=verbose),
        debtors=debtors,
        agents=agents,
        **kw,  # type: ignore[arg-type]
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.close()


# -- the captures -------------------------------------------------------------------------


def capture_messages(path: Path) -> list[tuple[str, dict[str, str]]]:
    """Every message of a `.log` capture, as (direction, first value of each key)."""
    return [(item.direction, dict(item.message.fields)) for item in read_trace(path)]


def normalise(channel: str, names: dict[str, str]) -> str:
    """Replace the 8-hex counter of a channel name by the order in which we first saw it."""
    m = re.fullmatch(r"(.*)-([0-9a-f]{8})(;[12])?", channel)
    if not m:
        return channel
    base = f"{m.group(1)}-{m.group(2)}"
    if base not in names:
        names[base] = f"{m.group(1)}-#{len(names)}"
    return names[base] + (m.group(3) or "")
