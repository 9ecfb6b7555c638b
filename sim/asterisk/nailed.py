"""The nailed-up agent flows of asterisk-conf/extensions.conf, as the simulated PBX plays them.

`[dialer-agent]` (an agent's phone waits in conference agent-<id> all shift), the ROUTE=bridge
branch of `[dialer-connect]` (a debtor joins that conference and leaves it), and `[dialer-spy]`
(ChanSpy on the agent's channel). Event names, order and headers follow the real Asterisk
20.20.1 captures in sim/traces/ami_nailed_*.log.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from dialer.asterisk_names import (
    AGENT_USER_PROFILE,
    CONFERENCE_BRIDGE_PROFILE,
    DEBTOR_USER_PROFILE,
)
from sim.asterisk.channels import Bridge, Channel, event
from sim.asterisk.conference import Conference, Member
from sim.behaviour import Outcome

if TYPE_CHECKING:
    from sim.asterisk.pbx import Call, Pbx

# SPY_MODE -> ChanSpy options and the priority of its ChanSpy() in [dialer-spy].
SPY_OPTIONS = {"listen": ("qESu", 7), "whisper": ("qESuw", 9), "barge": ("qESuB", 11)}
# ChanSpy looks for its channel this often (app_chanspy.c waits 100 ms per round).
SPY_POLL_SECS = 0.1


class NailedUp:
    """The three flows, on top of one `Pbx` (which owns the channels and the calls)."""

    def __init__(self, pbx: Pbx) -> None:
        self.pbx = pbx
        self.conferences: dict[str, Conference] = {}
        self._member_of: dict[Channel, Conference] = {}

    def reset(self) -> None:
        self.conferences.clear()
        self._member_of.clear()

    # -- conferences ---------------------------------------------------------------------

    def _join(self, name: str, member: Member) -> None:
        pbx = self.pbx
        conf = self.conferences.get(name)
        if conf is None:
            # The announcer is a Local-like pair: it takes a channel number and two uniqueids.
            announcer = f"CBAnn/{name}-{pbx._next_channel_number():08x};2"
            pbx._uniqueid()
            pbx._uniqueid()
            bridge = Bridge(
                str(uuid.UUID(int=pbx._rng.getrandbits(128), version=4)),
                kind="base",
                technology="softmix",
                creator="ConfBridge",
                name=name,
            )
            conf = Conference(name, bridge, announcer)
            self.conferences[name] = conf
            pbx.bridges[bridge.uniqueid] = bridge
            conf.start(pbx.emit)
        self._member_of[member.channel] = conf
        conf.join(member, pbx.emit)

    def _leave(self, member: Member, result: str | None) -> None:
        """Out of the conference; `result` is CONFBRIDGE_RESULT (None: already set, a kick)."""
        pbx = self.pbx
        conf = self._member_of.pop(member.channel, None)
        if conf is None:
            return
        kicked = conf.leave(member, pbx.emit)
        if result is not None:
            pbx.set_variable(member.channel, "CONFBRIDGE_RESULT", result)
        for other in kicked:
            other.kick()
        if not conf.members:
            conf.end(pbx.emit)
            self.conferences.pop(conf.name, None)
            pbx.bridges.pop(conf.bridge.uniqueid, None)

    async def _stay(self, call: Call, member: Member, outcome: str) -> None:
        """In the conference until a hangup, a kick (end_marked) or a redirect."""
        pbx = self.pbx
        one, two = call.one, call.two
        while True:
            await pbx._pause(call, 3600.0)
            if call.interrupt is not None:
                break
        interrupt = call.interrupt
        if interrupt.kind == "redirect":
            self._leave(member, None)
            call.interrupt = None
            ctx, ext, prio = interrupt.target
            interrupt.channel.goto(ctx, ext, prio)
            await pbx._park(call)
            return
        pbx._record(call, outcome if interrupt.kind != "kicked" else "agent_lost")
        if interrupt.kind != "kicked" and two is not None and interrupt.channel is two:
            # The far end hung up: its half goes first, then ConfBridge() returns on ;1.
            pbx._far_end_first(call, interrupt.cause)
            self._leave(member, "HANGUP")
            pbx._then_one(call, interrupt.cause)
            return
        self._leave(member, None if interrupt.kind == "kicked" else "HANGUP")
        cause = 16 if interrupt.kind == "kicked" else interrupt.cause
        await pbx._hangup_from(call, one, cause, "")

    # -- [dialer-agent] --------------------------------------------------------------------

    async def agent_login(self, call: Call) -> None:
        """The answered login call: into the agent's conference for the whole shift."""
        pbx = self.pbx
        one = call.one
        var = one.variables
        agent, name = var.get("AGENT_ID", ""), var.get("AGENT_CONF", "")
        node = var.get("DIALER_NODE", "")
        pbx._app(
            one, 1, "NoOp", f"DIALER-AGENT {one.name} agent={agent} conference={name} node={node}"
        )
        pbx._finish(call, True, 4)
        pbx._app(one, 2, "GotoIf", f"{int(not agent)}?refuse")
        if agent:
            pbx._app(one, 3, "GotoIf", f"{int(not name)}?refuse")
        if not agent or not name:
            pbx._app(one, 7, "Hangup", "21")
            await pbx._hangup_from(call, one, 21, "refused")
            return
        pbx._app(one, 4, "Answer", "")
        pbx._app(one, 5, "ConfBridge", f"{name},{CONFERENCE_BRIDGE_PROFILE},{AGENT_USER_PROFILE}")
        member = Member(one, marked=True, end_marked=False)
        self._join(name, member)
        await self._stay(call, member, "agent_logged_out")

    # -- [dialer-connect] ROUTE=bridge -------------------------------------------------------

    async def bridge_debtor(self, call: Call) -> None:
        """The debtor joins TARGET_BRIDGE if its agent is there, else is abandoned."""
        pbx = self.pbx
        one = call.one
        var = one.variables
        pbx._app(one, 11, "GotoIf", "1?bridge")
        name = var.get("TARGET_BRIDGE", "")
        pbx._app(one, 18, "GotoIf", f"{int(not name)}?noagent")
        conf = self.conferences.get(name) if name else None
        agents = conf.marked if conf is not None else 0
        if name:
            pbx._app(one, 19, "GotoIf", f"{int(agents == 0)}?noagent")
        if not agents:
            # The dialplan's guard: ConfBridge would seat the debtor alone (no kick without a
            # marked user leaving), so the call is abandoned and ROUTE says so.
            pbx._app(one, 24, "Set", "ROUTE=abandon")
            pbx.set_variable(one, "ROUTE", "abandon")
            pbx._app(one, 25, "Goto", "abandon")
            await pbx._abandon(call)
            return
        record = var.get("RECORD") == "1"
        pbx._app(one, 20, "GotoIf", f"{int(record)}?bridgemix:conference")
        if record:
            pbx._start_recording(call, 21)
        pbx._app(one, 22, "ConfBridge", f"{name},{CONFERENCE_BRIDGE_PROFILE},{DEBTOR_USER_PROFILE}")
        member = Member(one, marked=False, end_marked=True, kick=lambda: pbx._kick(call, one))
        self._join(name, member)
        fate = call.fate
        if fate is not None and fate.outcome is Outcome.HUMAN:
            call.leaves_at = pbx.clock.now() + fate.talk_secs
        pbx.stats["connected"] += 1
        await self._stay(call, member, "completed")

    # -- [dialer-spy] --------------------------------------------------------------------

    async def spy(self, call: Call) -> None:
        """ChanSpy on SPY_TARGET (exact name or uniqueid, option u) until either side ends."""
        pbx = self.pbx
        one = call.one
        var = one.variables
        target, mode = var.get("SPY_TARGET", ""), var.get("SPY_MODE", "")
        pbx._app(one, 1, "NoOp", f"DIALER-SPY {one.name} target={target} mode={mode}")
        pbx._finish(call, True, 4)
        pbx._app(one, 2, "GotoIf", f"{int(not target)}?refuse")
        if target:
            for priority, known in enumerate(SPY_OPTIONS, 3):
                pbx._app(one, priority, "GotoIf", f"{int(mode == known)}?{known}")
                if mode == known:
                    break
        if not target or mode not in SPY_OPTIONS:
            pbx._app(one, 6, "Hangup", "21")
            await pbx._hangup_from(call, one, 21, "refused")
            return
        options, priority = SPY_OPTIONS[mode]
        pbx._app(one, priority, "ChanSpy", f"{target},{options}")
        if await pbx._pause(call, SPY_POLL_SECS):
            await pbx._hangup(call, "spy_ended")
            return
        spyee = pbx.find(target)
        if spyee is None:
            # No such channel: ChanSpy returns -1 and the dialplan ends.
            await pbx._hangup_from(call, one, 16, "spy_no_target")
            return
        pair = (one.fields("Spyer"), spyee.fields("Spyee"))
        pbx.emit(event("ChanSpyStart", "call,all", *pair))
        while spyee.alive and not await pbx._pause(call, SPY_POLL_SECS * 5):
            pass
        pbx.emit(event("ChanSpyStop", "call,all", one.fields("Spyer"), spyee.fields("Spyee")))
        if call.interrupt is not None:
            await pbx._hangup(call, "spy_ended")
            return
        # Option E: the agent's channel hung up; ChanSpy returns and the next step hangs up.
        pbx._app(one, priority + 1, "Hangup", "")
        await pbx._hangup_from(call, one, 16, "spy_ended")
