"""What the tests against a real Asterisk share: a lab portfolio whose numbers pick their
behaviour in `asterisk-conf/`'s debtor-sim, a dialer config pointed at the lab, the rows."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from dialer.config import load_config
from dialer.importer import import_csv
from dialer.portfolio import write_numbers_portfolio
from dialer.run import run_campaign
from dialer.store.db import open_store
from dialer.store.models import CallAttempt, Phone
from dialer.summary import CampaignSummary
from sim.lab import AsteriskLab, free_port

LAB_RULESET = Path(__file__).parent / "data" / "lab-any-hour.toml"

# The lab dialplan's debtor-sim: the number's last digit picks what the far end does.
HUMAN, BUSY, NO_ANSWER, MACHINE, CONGESTION, GIVES_UP, SHORT_CALL, UNALLOCATED = (
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "0",
)


def lab_number(index: int, behaviour: str) -> str:
    """A New York number of the fictional 555-01xx block ending in the behaviour's digit
    (`index` 0-9 tells apart numbers of one behaviour)."""
    if not 0 <= index <= 9:
        raise ValueError("index: 0-9")
    return f"+121255501{index}{behaviour}"


@dataclass
class LabDialer:
    """A dialer node's config and database, pointed at one lab Asterisk."""

    config_path: Path
    database_url: str

    def rows(self) -> list[sa.Row[tuple[object, ...]]]:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                query = (
                    sa.select(*CallAttempt.__table__.c, Phone.e164)
                    .join(Phone, Phone.id == CallAttempt.phone_id)
                    .order_by(CallAttempt.id)
                )
                return list(conn.execute(query))
        finally:
            engine.dispose()

    def pending_reservations(self) -> int:
        engine = sa.create_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.text("SELECT count(*) FROM compliance_reservation WHERE state='pending'")
                    ).scalar_one()
                )
        finally:
            engine.dispose()

    async def run(
        self, campaign: str = "lab", stop: asyncio.Event | None = None
    ) -> CampaignSummary:
        config = load_config(self.config_path)
        store = open_store(config.effective_database_url)
        try:
            return await run_campaign(
                config,
                store,
                campaign_name=campaign,
                stop=stop or asyncio.Event(),
                show_progress=False,
            )
        finally:
            store.close()


def lab_dialer(
    tmp_path: Path,
    lab: AsteriskLab,
    numbers: list[str],
    *,
    agents: int = 8,
    dial_mode: str = "progressive",
    talk_secs: int = 1,
    ring_timeout_s: float = 15.0,
    ami_port: int | None = None,
    channel_template: str = "Local/{number}@debtor-sim",
) -> LabDialer:
    """Import `numbers` and write a dialer config for the lab (Local debtors and agents, AMD
    and recording on, the compliance ledger in the product database)."""
    data = tmp_path / "dialer-data"
    data.mkdir(exist_ok=True)
    url = f"sqlite:///{data / 'dialer.db'}"
    store = open_store(url)
    try:
        write_numbers_portfolio(tmp_path / "portfolio.csv", numbers)
        report = import_csv(store, tmp_path / "portfolio.csv", tenant="default")
        assert not report.errors, report.errors
    finally:
        store.close()
    agent_tables = "\n".join(
        f'[[agents]]\nid = "agent{i}"\nchannel = "Local/agent{i}@agents"\n'
        for i in range(1, agents + 1)
    )
    config = tmp_path / "dialer.toml"
    config.write_text(
        f"""
node_id = "lab1"
data_dir = "{data}"

[ami]
reconnect_min_s = 0.2
reconnect_max_s = 1.0

[[ami.servers]]
name = "lab"
port = {ami_port or lab.ports.ami}
username = "dialer"
secret = "{lab.ami_secret}"

[agi]
port = {free_port()}

[web]
port = 0

[dialing]
channel_template = "{channel_template}"
ring_timeout_s = {ring_timeout_s}
caller_id = '"Lab Collections" <2125550100>'

[dialing.variables]
TALK_SECS = "{talk_secs}"

[campaign]
name = "lab"
dial_mode = "{dial_mode}"
wrap_up_s = 1

[compliance]
ruleset = "{LAB_RULESET}"
backend = "sql"

{agent_tables}
""",
        encoding="utf-8",
    )
    return LabDialer(config, url)


class AmiCable:
    """A TCP relay between the dialer and Asterisk's AMI that a test can cut, like a network
    failure: Asterisk goes on, the dialer loses the link. It also notes when each new
    upstream connection succeeded (how soon the dialer came back)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.connected_at: list[float] = []
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut(self) -> int:
        """Drop every connection (the listening side stays); how many were cut."""
        n = len(self._writers)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        return n

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.transport.abort()
            return
        self.connected_at.append(time.monotonic())
        self._writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
        dst.transport.abort()
        self._writers.discard(dst)
