"""The `connect` call-flow script: an answered debtor call asks the dialer for an agent.

Runs from `dialer-connect` as `AGI(${DIALER_AGI}/connect?attempt=...&campaign=...)` and leaves
the decision in channel variables the dialplan acts on: ROUTE (dial | bridge | abandon | hangup);
for dial TARGET_CHANNEL, TARGET_AGENT and RECORDING_FILE; for bridge (the agent's phone is nailed
up in their conference) TARGET_BRIDGE, TARGET_AGENT and RECORDING_FILE.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Literal, Protocol

from agi.errors import AgiError
from agi.logsafe import mask_numbers
from agi.server import AgiSession

logger = logging.getLogger(__name__)

Route = Literal["dial", "bridge", "abandon", "hangup"]


@dataclass(frozen=True)
class AnsweredCall:
    """A debtor call Asterisk reports answered (and, with AMD on, not a machine)."""

    attempt_id: str
    campaign_id: str
    uniqueid: str
    channel: str
    amd_status: str | None


@dataclass(frozen=True)
class RouteDecision:
    """Where the answered call goes: `dial` carries the agent's channel, `bridge` the agent's
    conference; both the recording path."""

    route: Route
    target_channel: str | None = None
    target_agent: str | None = None
    recording_file: str | None = None
    target_bridge: str | None = None


class CallRouter(Protocol):
    """What the dialer supplies to the `connect` script."""

    async def route_answered_call(self, call: AnsweredCall) -> RouteDecision:
        """Pick a ready agent, waiting at most the abandon window; else decide abandon/hangup.

        Cancelled if it overruns `ConnectConfig.route_timeout_s`: it must then hold nothing.
        """
        ...

    async def call_lost(self, call: AnsweredCall, decision: RouteDecision) -> None:
        """The channel hung up before or while the decision was delivered: release the agent."""
        ...


@dataclass(frozen=True)
class ConnectConfig:
    """Safety limits of the `connect` script.

    route_timeout_s: the router promised to answer within the abandon window (2 s by default);
    past this guard the debtor gets the safe-harbour message instead of dead air.
    """

    route_timeout_s: float = 3.0


class ConnectScript:
    """The `connect` script; register an instance under the name `connect`."""

    def __init__(self, router: CallRouter, config: ConnectConfig | None = None) -> None:
        self._router = router
        self._config = config or ConnectConfig()

    async def __call__(self, session: AgiSession) -> None:
        env = session.env
        attempt_id = env.params.get("attempt") or await session.get_variable("ATTEMPT_ID")
        campaign_id = env.params.get("campaign") or await session.get_variable("CAMPAIGN_ID")
        if not attempt_id or not campaign_id:
            logger.error(
                "x connect %s: no attempt/campaign id (attempt=%r campaign=%r); hanging up",
                session.label,
                attempt_id,
                campaign_id,
            )
            await session.set_variable("ROUTE", "hangup")
            return
        call = AnsweredCall(
            attempt_id=attempt_id,
            campaign_id=campaign_id,
            uniqueid=env.uniqueid,
            channel=env.channel,
            amd_status=await session.get_variable("AMDSTATUS"),
        )
        prefix = (
            f"[campaign={campaign_id} attempt={attempt_id}] connect {mask_numbers(env.channel)}"
        )

        if session.hung_up:
            # The debtor was gone before we asked for an agent: nobody to reserve.
            logger.info("%s: debtor hung up before routing", prefix)
            await self._lost(call, RouteDecision("hangup"), prefix)
            await session.set_variable("ROUTE", "hangup")
            return

        decision = await self._route(call, prefix)
        if session.hung_up:
            # HANGUP arrived while the router looked for an agent: release whoever it chose.
            logger.info("%s: debtor hung up during routing (route was %s)", prefix, decision.route)
            await self._lost(call, decision, prefix)
            await session.set_variable("ROUTE", "hangup")
            return
        if (decision.route == "dial" and not decision.target_channel) or (
            decision.route == "bridge" and not decision.target_bridge
        ):
            logger.error(
                "x %s: router chose %s without a target; abandoning", prefix, decision.route
            )
            await self._lost(call, decision, prefix)
            decision = RouteDecision("abandon")
        logger.info(
            "= %s: route=%s agent=%s amd=%s",
            prefix,
            decision.route,
            decision.target_agent,
            call.amd_status,
        )
        try:
            await self._deliver(session, decision)
        except AgiError as exc:
            logger.warning("x %s: decision %s not delivered: %s", prefix, decision.route, exc)
            await self._lost(call, decision, prefix)
            raise
        if session.hung_up:
            # HANGUP arrived while the variables were set: the dialplan will not run the Dial.
            logger.info("%s: debtor hung up as route %s was delivered", prefix, decision.route)
            await self._lost(call, decision, prefix)

    async def _route(self, call: AnsweredCall, prefix: str) -> RouteDecision:
        try:
            async with asyncio.timeout(self._config.route_timeout_s):
                decision = await self._router.route_answered_call(call)
        except TimeoutError:
            logger.error(
                "x %s: router gave no decision in %s s; abandoning with the safe-harbour message",
                prefix,
                self._config.route_timeout_s,
            )
            return RouteDecision("abandon")
        except Exception:
            # A live debtor must still hear the identification message the law requires.
            logger.exception(
                "x %s: router failed; abandoning with the safe-harbour message", prefix
            )
            return RouteDecision("abandon")
        return decision

    async def _deliver(self, session: AgiSession, decision: RouteDecision) -> None:
        if decision.route == "dial":
            await session.set_variable("TARGET_CHANNEL", decision.target_channel or "")
            await session.set_variable("TARGET_AGENT", decision.target_agent or "")
            await session.set_variable("RECORDING_FILE", decision.recording_file or "")
        elif decision.route == "bridge":
            await session.set_variable("TARGET_BRIDGE", decision.target_bridge or "")
            await session.set_variable("TARGET_AGENT", decision.target_agent or "")
            await session.set_variable("RECORDING_FILE", decision.recording_file or "")
        # ROUTE goes last so the dialplan never sees `dial`/`bridge` without its targets.
        await session.set_variable("ROUTE", decision.route)

    async def _lost(self, call: AnsweredCall, decision: RouteDecision, prefix: str) -> None:
        try:
            await self._router.call_lost(call, decision)
        except Exception:
            logger.exception("x %s: router.call_lost failed", prefix)


def make_connect_script(router: CallRouter, config: ConnectConfig | None = None) -> ConnectScript:
    return ConnectScript(router, config)
