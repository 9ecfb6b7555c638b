"""The pages put together around a running campaign engine, served while the campaign runs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from zoneinfo import ZoneInfo

from compliance_guard.service import Guard
from dialer.config import Config
from dialer.console.figures import CampaignFigures
from dialer.desk.feed import ScreenPops
from dialer.engine import CampaignEngine
from dialer.messaging.jobs import BatchJobs, open_outbox
from dialer.store import users
from dialer.web.app import WebServices, create_app
from dialer.web.auth import Auth
from dialer.web.hub import Hub
from dialer.web.server import serving


def web_services(
    engine: CampaignEngine, config: Config, guard: Guard, stop: asyncio.Event
) -> WebServices:
    store = engine.store
    hub = Hub()
    names = {
        u.agent_id: u.display_name
        for u in users.list_users(store, config.campaign.tenant)
        if u.agent_id
    }
    pops = ScreenPops(
        store,
        tenant_id=engine.tenant_id,
        script_template=config.campaign.script,
        creditor=config.campaign.tenant,
        push=lambda agent_id, message: hub.to_agent(engine.tenant_id, agent_id, message),
        agent_name=lambda agent_id: names.get(agent_id, agent_id),
        wallclock=engine.wallclock,
    )
    engine.watcher = pops
    # The messaging file is read once, at start: a mistake in it stops the start naming its key.
    outbox = open_outbox(config.messaging.path(), config.campaign.tenant)
    return WebServices(
        config=config,
        auth=Auth(
            store,
            session_ttl_s=config.web.session_ttl_s,
            cookie_secure=config.web.cookie_secure,
        ),
        hub=hub,
        engine=engine,
        guard=guard,
        pops=pops,
        figures=CampaignFigures(
            store,
            engine.tenant_id,
            engine.campaign_id,
            engine.campaign_name,
            tz=ZoneInfo(config.campaign.timezone),
        ),
        agent_names=names,
        stop=stop,
        jobs=BatchJobs(store, guard, outbox, clock=engine.wallclock),
    )


@contextlib.asynccontextmanager
async def pages(
    engine: CampaignEngine,
    config: Config,
    guard: Guard,
    *,
    port: int | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[int]:
    """Serve the pages of `engine`'s campaign while the block runs; yields the port. `stop` is
    the run's: a supervisor's stop sets it."""
    services = web_services(engine, config, guard, stop or asyncio.Event())
    app = create_app(services)
    try:
        async with serving(
            app, config.web.host, config.web.port if port is None else port
        ) as bound:
            yield bound
    finally:
        if services.jobs is not None:
            # A batch being sent stops between two chunks; starting it again resumes it.
            await asyncio.to_thread(services.jobs.close)
