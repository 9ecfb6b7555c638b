"""The nailed-up agent flows of asterisk-conf/extensions.conf, as the simulated PBX plays them.

`[dialer-agent]` (an agent's phone waits in conference agent-<id> all shift), the ROUTE=bridge
branch of `[dialer-connect]` (a debtor joins that conference and leaves it), `[dialer-spy]`
(ChanSpy on the agent's channel) and `[dialer-transfer]` (a debtor redirected out of the
conference dials a supervisor's phone). Event names, order and headers follow the real Asterisk
20.20.1 captures in sim/traces/ami_nailed_*.log.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from dialer.asterisk_names import (
    AGENT_USER_PROFILE,
    CONFERENCE_BRIDGE_PROFILE,
    DEBTOR_USER_PROFILE,
    TRANSFER_CONTEXT,
    TRANSFER_VARIABLE,
)
from sim.asterisk.channels import (
    SOFTHANGUP_APPUNLOAD,
    Bridge,
    Channel,
    State,
    channel_event,
    event,
)
from sim.asterisk.conference import Conference, Member
from sim.behaviour import DebtorFate, Outcome

if TYPE_CHECKING:
    from sim.asterisk.pbx import Call, Interrupt, Pbx

# SPY_MODE -> ChanSpy options and the priority of its ChanSpy() in [dialer-spy].
SPY_OPTIONS = {"listen": ("qESu", 7), "whisper": ("qESuw", 9), "barge": ("qESuB", 11)}
# ChanSpy looks for its channel this often (app_chanspy.c waits 100 ms per round).
SPY_POLL_SECS = 0.1
# [dialer-transfer]: Dial(${TRANSFER_TO},30).
TRANSFER_DIAL_SECS = 30
# A supervisor's phone that is a lab debtor-sim number answers with these outcomes...
_ANSWERING = (Outcome.HUMAN, Outcome.MACHINE, Outcome.SHORT_CALL)
# ...is busy or congested at once: DIALSTATUS, the ;2 half's state and the causes of the two
# halves (ami_nailed_transfer_busy.log for BUSY)...
_REFUSING = {
    Outcome.BUSY: ("BUSY", State.BUSY, 0, 17),
    Outcome.CONGESTION: ("CONGESTION", State.BUSY, 0, 34),
}
# ...and else rings until Dial() gives up (not captured: NOANSWER, cause 16).
_NO_ANSWER = ("NOANSWER", State.RING, 16, 16)


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
            call.interrupt = None
            ctx, ext, prio = interrupt.target
            interrupt.channel.goto(ctx, ext, prio)
            if interrupt.channel is not member.channel:
                self._leave(member, None)
                await pbx._park(call)
                return
            # ConfBridge() returns as if the channel had hung up: CONFBRIDGE_RESULT=HANGUP
            # (ami_nailed_transfer*.log); its leave events already show the new context.
            self._leave(member, "HANGUP")
            if ctx == TRANSFER_CONTEXT and member.channel is call.one:
                await self.transfer(call)
            else:
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

    # -- [dialer-transfer] -----------------------------------------------------------------

    async def transfer(self, call: Call) -> None:
        """The debtor's channel, redirected out of the agent's conference, dials TRANSFER_TO
        (ami_nailed_transfer*.log). The supervisor's legs belong to the debtor's call and
        carry its Linkedid; MixMonitor goes on on the debtor's channel."""
        pbx = self.pbx
        one = call.one
        to = one.variables.get(TRANSFER_VARIABLE, "")
        pbx._app(one, 1, "NoOp", f"DIALER-TRANSFER {one.name} to={to}")
        pbx._app(one, 2, "GotoIf", f"{int(not to)}?refuse")
        if not to:
            pbx._app(one, 7, "Hangup", "21")
            await pbx._hangup_from(call, one, 21, "transfer_refused")
            return
        pbx._app(one, 3, "Dial", f"{to},{TRANSFER_DIAL_SECS}")
        pbx.set_variable(one, "DIALSTATUS", "")
        sup1, sup2, dial_string = pbx._new_agent_leg(call, to)
        call.agent_one, call.agent_two = sup1, sup2
        pbx.emit(channel_event("Newchannel", sup1))
        if sup2 is not None:
            pbx.emit(channel_event("Newchannel", sup2))
            pbx._local_bridge(sup1, sup2)
        fate = self._supervisor_fate(sup1, sup2)
        pbx.emit(pbx._dial_event("DialBegin", sup1, [("DialString", dial_string)], src=one))
        if sup2 is not None and sup2.context == "agents":
            # The lab's [agents] context: Set(AGENT_ID=${EXTEN}) before Answer().
            pbx.set_variable(sup2, "AGENT_ID", sup2.exten)
        answers = fate is None or fate.outcome in _ANSWERING
        if fate is None:
            ring = pbx.agents.answer_secs
        elif answers or fate.outcome in _REFUSING:
            ring = fate.ring_secs
        else:
            ring = TRANSFER_DIAL_SECS
        if await pbx._pause(call, min(ring, TRANSFER_DIAL_SECS)):
            # The debtor hung up (or was hung up) while the supervisor's phone rang.
            await pbx._hangup(call, "transfer_abandoned")
            return
        if not answers:
            assert fate is not None
            self._not_answered(call, sup1, sup2, fate.outcome)
            status = one.variables.get("DIALSTATUS", "")
            pbx._app(one, 4, "NoOp", f"DIALER-TRANSFER not answered {one.name} DIALSTATUS={status}")
            await pbx._abandon(call, 5, "transfer_not_answered")
            return
        if sup2 is not None:
            pbx._new_state(sup2, State.UP)
        pbx._new_state(sup1, State.UP)
        pbx.set_variable(one, "DIALSTATUS", "ANSWER")
        pbx.emit(pbx._dial_event("DialEnd", sup1, [("DialStatus", "ANSWER")], src=one))
        bridge = Bridge(str(uuid.UUID(int=pbx._rng.getrandbits(128), version=4)))
        pbx.bridges[bridge.uniqueid] = bridge
        call.bridge = bridge
        pbx.emit(event("BridgeCreate", "call,all", bridge.fields()))
        sup1.goto(sup1.context, "")
        for ch in (sup1, one):
            bridge.channels.append(ch)
            ch.bridge_id = bridge.uniqueid
            pbx.emit(event("BridgeEnter", "call,all", bridge.fields(), ch.fields()))
        while True:
            await pbx._pause(call, 3600.0)
            interrupt = call.interrupt
            if interrupt is not None:
                break
        if interrupt.kind != "redirect" and interrupt.channel is call.two:
            self._transfer_ended(call, interrupt, far_end=call.two)
        elif interrupt.kind != "redirect" and sup2 is not None and interrupt.channel is sup2:
            self._transfer_ended(call, interrupt, far_end=sup2)
            await pbx._hangup_from(call, one, 16, "")
        else:
            await pbx._hangup(call, "transferred")

    def _supervisor_fate(self, sup1: Channel, sup2: Channel | None) -> DebtorFate | None:
        """A lab debtor-sim number behaves by its last digit (busy, rings on...); an agent's or
        supervisor's phone (Local/...@agents, PJSIP/...) answers like an agent (None)."""
        pbx = self.pbx
        if sup2 is None or sup1.context not in pbx.config.debtor_contexts:
            return None
        return pbx.debtors.fate(sup1.exten, 1)

    def _not_answered(
        self, call: Call, sup1: Channel, sup2: Channel | None, outcome: Outcome
    ) -> None:
        """Dial() gives up on the supervisor's phone: busy or congested (the ;2 half says so
        at once), or no answer in TRANSFER_DIAL_SECS."""
        pbx = self.pbx
        one = call.one
        status, state, cause_one, cause_two = _REFUSING.get(outcome, _NO_ANSWER)
        if sup2 is not None and outcome in _REFUSING:
            pbx._new_state(sup2, state)
        pbx.emit(pbx._dial_event("DialEnd", sup1, [("DialStatus", status)], src=one))
        if sup2 is not None:
            pbx.emit(channel_event("HangupRequest", sup2, [("Cause", str(cause_one))]))
        pbx._gone(sup1, cause_one)
        pbx.set_variable(one, "DIALSTATUS", status)
        if sup2 is not None:
            soft = [("Cause", str(SOFTHANGUP_APPUNLOAD))]
            pbx.emit(channel_event("SoftHangupRequest", sup2, soft))
            pbx._gone(sup2, cause_two)
        call.agent_one = call.agent_two = None

    def _transfer_ended(self, call: Call, interrupt: Interrupt, far_end: Channel) -> None:
        """The debtor's far end or the supervisor's hung up: the far end goes, the bridge
        breaks up, Dial() returns (DIALSTATUS=ANSWER again) and the supervisor's legs go.
        When the debtor hung up, its ;1 half goes too; else the caller hangs it up next
        (Dial() without `g` ends the dialplan). Orders of ami_nailed_transfer.log and
        ami_nailed_transfer_supervisor_hangs_up.log."""
        pbx = self.pbx
        one, sup1, sup2 = call.one, call.agent_one, call.agent_two
        assert sup1 is not None
        cause = interrupt.cause
        soft = [("Cause", str(SOFTHANGUP_APPUNLOAD))]
        debtor_left = far_end is call.two
        pbx._record(call, "transferred")
        near = one if debtor_left else sup1
        pbx.emit(channel_event("SoftHangupRequest", far_end, soft))
        pbx.emit(channel_event("HangupRequest", near, [("Cause", str(cause))]))
        pbx._gone(far_end, cause)
        bridge = call.bridge
        assert bridge is not None
        for ch in (near, one if near is sup1 else sup1):
            bridge.channels.remove(ch)
            ch.bridge_id = ""
            pbx.emit(event("BridgeLeave", "call,all", bridge.fields(), ch.fields()))
        if debtor_left and sup2 is not None:
            pbx.emit(channel_event("HangupRequest", sup2, [("Cause", str(cause))]))
        pbx.emit(event("BridgeDestroy", "call,all", bridge.fields()))
        pbx.bridges.pop(bridge.uniqueid, None)
        call.bridge = None
        pbx._gone(sup1, cause)
        pbx.set_variable(one, "DIALSTATUS", "ANSWER")
        call.agent_one = call.agent_two = None
        if not debtor_left:
            return
        if sup2 is not None:
            pbx.emit(channel_event("SoftHangupRequest", sup2, soft))
        pbx.emit(channel_event("SoftHangupRequest", one, soft))
        pbx._run_h(one, cause)
        pbx._gone(one, cause)
        if sup2 is not None:
            pbx._gone(sup2, cause)
