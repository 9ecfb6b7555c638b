"""Virtual-time discrete-event simulator of a campaign day, driving the very same pacing objects.

Events sit in a heap ordered by virtual time; nothing sleeps, so a day of 500 agents runs in
seconds. The pacer is asked once per tick (1 s) how many calls to place; each call's fate
(live answer, machine, nobody) and its durations come from the scenario's distributions and a
seeded `random.Random`, so a (scenario, day) pair is replayed identically for every algorithm.

Modelling choices, each a simplification to keep in mind when reading the figures:
- AMD is instantaneous and perfect: machines hang up at answer and never reach an agent;
- a live answer waits for an agent up to `abandon_after_s`, then hears the identification
  message and is counted abandoned (the debtor never hangs up earlier);
- agents take calls longest-idle first; an agent leaving in a shift change finishes the call
  and the wrap-up first; there is no trunk limit.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from pacing.models import AgentCallEnded, AnswerKind, CallOutcome, Pacer, PacingState
from sim.scenario import MIN_NO_ANSWER_S, Scenario

DAY_S = 86_400.0

# Event kinds; at equal times they are handled in the order they were scheduled.
_TICK = 0
_LIVE = 1
_MACHINE = 2
_NO_ANSWER = 3
_GIVE_UP = 4
_TALK_END = 5
_WRAP_END = 6
_SHIFT = 7


@dataclass(frozen=True, slots=True)
class DayResult:
    """What one simulated day produced; seconds are agent-seconds within the working day."""

    day: int
    logged_in_s: float
    talk_s: float
    wrap_up_s: float
    ready_s: float
    dials: int
    live_answers: int
    machines: int
    connected: int
    abandoned: int
    max_connect_wait_s: float
    hourly: tuple[tuple[int, int], ...]  # (live answers, abandoned) per hour of the day

    @property
    def abandon_rate(self) -> float:
        return self.abandoned / self.live_answers if self.live_answers else 0.0


@dataclass(slots=True)
class _Counters:
    dials: int = 0
    live: int = 0
    machines: int = 0
    connected: int = 0
    abandoned: int = 0
    talk_s: float = 0.0
    wrap_s: float = 0.0
    logged_in_area: float = 0.0
    ready_area: float = 0.0
    max_wait: float = 0.0
    hourly: list[list[int]] = field(default_factory=list)


class DaySimulation:
    """One day of one scenario under one pacer; `run()` returns the day's figures."""

    def __init__(
        self,
        scenario: Scenario,
        pacer: Pacer,
        day: int,
        *,
        rng: random.Random | None = None,
        tick_s: float = 1.0,
    ) -> None:
        self.scenario = scenario
        self.pacer = pacer
        self.day = day
        self.rng = rng or random.Random(scenario.seed * 1000 + day)
        self.tick_s = tick_s
        self.start = day * DAY_S + scenario.start_hour * 3600.0
        self.end = self.start + scenario.duration_s
        self._queue: list[tuple[float, int, int, int]] = []
        self._seq = 0
        self._ready: deque[int] = deque()  # longest idle first
        self._talking: dict[int, tuple[float, int]] = {}  # agent -> (connected at, call)
        self._wrapping: dict[int, tuple[float, float]] = {}  # agent -> (wrap start, talk s)
        self._leaving = 0  # agents to log out as soon as they finish their call
        self._next_agent = 0
        self._ringing: dict[int, float] = {}  # call -> dialed at
        self._waiting: OrderedDict[int, float] = OrderedDict()  # call -> answered at
        self._dialed_at: dict[int, float] = {}
        self._next_call = 0
        self._last_t = self.start
        self.counters = _Counters(
            hourly=[[0, 0] for _ in range(int(scenario.duration_s // 3600) + 1)]
        )

    # -- the event heap ---------------------------------------------------------------------

    def _push(self, at: float, kind: int, item: int) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, item))

    def _advance(self, t: float) -> None:
        """Accumulate agent-seconds up to `t` (only within the working day)."""
        t = min(t, self.end)
        if t > self._last_t:
            span = t - self._last_t
            logged_in = len(self._ready) + len(self._talking) + len(self._wrapping)
            self.counters.logged_in_area += logged_in * span
            self.counters.ready_area += len(self._ready) * span
            self._last_t = t

    # -- the day ----------------------------------------------------------------------------

    def run(self) -> DayResult:
        for shift in self.scenario.agents:
            self._push(self.start + shift.at_s, _SHIFT, shift.agents)
        self._push(self.start, _TICK, 0)
        queue = self._queue
        pop = heapq.heappop
        while queue:
            t, _, kind, item = pop(queue)
            self._advance(t)
            if kind == _TICK:
                self._tick(t)
            elif kind == _LIVE:
                self._live_answer(t, item)
            elif kind in (_MACHINE, _NO_ANSWER):
                self._unanswered_by_person(t, item, kind)
            elif kind == _GIVE_UP:
                self._give_up(t, item)
            elif kind == _TALK_END:
                self._talk_end(t, item)
            elif kind == _WRAP_END:
                self._wrap_end(t, item)
            else:
                self._shift(t, item)
        self._advance(self.end)
        c = self.counters
        return DayResult(
            day=self.day,
            logged_in_s=c.logged_in_area,
            talk_s=c.talk_s,
            wrap_up_s=c.wrap_s,
            ready_s=c.ready_area,
            dials=c.dials,
            live_answers=c.live,
            machines=c.machines,
            connected=c.connected,
            abandoned=c.abandoned,
            max_connect_wait_s=c.max_wait,
            hourly=tuple((h[0], h[1]) for h in c.hourly),
        )

    def state(self, now: float) -> PacingState:
        return PacingState(
            now=now,
            agents_ready=len(self._ready),
            on_call_s=tuple([now - v[0] for v in self._talking.values()]),
            wrap_up_s=tuple([now - v[0] for v in self._wrapping.values()]),
            ringing_s=tuple([now - v for v in self._ringing.values()]),
            waiting_s=tuple([now - v for v in self._waiting.values()]),
        )

    def _tick(self, now: float) -> None:
        if now >= self.end:
            return  # no new calls after the day; what is in flight plays out
        calls = self.pacer.calls_to_place(self.state(now))
        for _ in range(calls):
            self._dial(now)
        self._push(now + self.tick_s, _TICK, 0)

    def _dial(self, now: float) -> None:
        scenario, rng = self.scenario, self.rng
        call = self._next_call
        self._next_call += 1
        self.counters.dials += 1
        self._ringing[call] = now
        self._dialed_at[call] = now
        timeout = max(MIN_NO_ANSWER_S, scenario.no_answer_timeout_s.sample(rng))
        u = rng.random()
        p_live = scenario.live_answer_probability(now - self.start)
        if u < p_live + scenario.machine_probability:
            ring = min(scenario.ring_time_s.sample(rng), timeout - 0.5)
            self._push(now + ring, _LIVE if u < p_live else _MACHINE, call)
        else:
            self._push(now + timeout, _NO_ANSWER, call)

    def _hour(self, t: float) -> list[int]:
        hourly = self.counters.hourly
        return hourly[min(int((t - self.start) // 3600), len(hourly) - 1)]

    def _live_answer(self, now: float, call: int) -> None:
        del self._ringing[call]
        self.counters.live += 1
        self._hour(now)[0] += 1
        if self._ready:
            self._connect(now, call, now)
        else:
            self._waiting[call] = now
            self._push(now + self.scenario.abandon_after_s, _GIVE_UP, call)

    def _unanswered_by_person(self, now: float, call: int, kind: int) -> None:
        del self._ringing[call]
        dialed = self._dialed_at.pop(call)
        answer = AnswerKind.MACHINE if kind == _MACHINE else AnswerKind.NONE
        if answer is AnswerKind.MACHINE:
            self.counters.machines += 1
        self.pacer.observe(CallOutcome(dialed, answer, now - dialed))

    def _give_up(self, now: float, call: int) -> None:
        answered = self._waiting.pop(call, None)
        if answered is None:
            return  # connected in time
        self.counters.abandoned += 1
        self._hour(answered)[1] += 1
        dialed = self._dialed_at.pop(call)
        self.pacer.observe(
            CallOutcome(
                dialed, AnswerKind.LIVE, answered - dialed, connected=False, wait_s=now - answered
            )
        )

    def _connect(self, now: float, call: int, answered: float) -> None:
        agent = self._ready.popleft()
        self.counters.connected += 1
        wait = now - answered
        if wait > self.counters.max_wait:
            self.counters.max_wait = wait
        dialed = self._dialed_at.pop(call)
        self.pacer.observe(
            CallOutcome(dialed, AnswerKind.LIVE, answered - dialed, connected=True, wait_s=wait)
        )
        talk = self.scenario.talk_time_s.sample(self.rng)
        self._talking[agent] = (now, call)
        self._push(now + talk, _TALK_END, agent)

    def _talk_end(self, now: float, agent: int) -> None:
        connected_at, _ = self._talking.pop(agent)
        talk = now - connected_at
        self.counters.talk_s += max(0.0, min(now, self.end) - min(connected_at, self.end))
        self._wrapping[agent] = (now, talk)
        self._push(now + self.scenario.wrap_up_s.sample(self.rng), _WRAP_END, agent)

    def _wrap_end(self, now: float, agent: int) -> None:
        started, talk = self._wrapping.pop(agent)
        self.counters.wrap_s += max(0.0, min(now, self.end) - min(started, self.end))
        self.pacer.observe(AgentCallEnded(now, talk, now - started))
        if self._leaving:
            self._leaving -= 1
            return
        self._make_ready(now, agent)

    def _make_ready(self, now: float, agent: int) -> None:
        if self._waiting:  # a live answer is waiting: this agent takes it at once
            call, answered = self._waiting.popitem(last=False)
            self._ready.append(agent)
            self._connect(now, call, answered)
            return
        self._ready.append(agent)

    def _shift(self, now: float, agents: int) -> None:
        logged_in = len(self._ready) + len(self._talking) + len(self._wrapping) - self._leaving
        if agents > logged_in:
            # Newcomers first cancel pending log-outs, then log in ready.
            joining = agents - logged_in
            cancelled = min(joining, self._leaving)
            self._leaving -= cancelled
            for _ in range(joining - cancelled):
                agent = self._next_agent
                self._next_agent += 1
                self._make_ready(now, agent)
        else:
            leaving = logged_in - agents
            while leaving and self._ready:
                agent = self._ready.pop()  # the most recently freed leave first
                leaving -= 1
            self._leaving += leaving


@dataclass(frozen=True, slots=True)
class RunResult:
    """Several days of one scenario under one pacer."""

    days: tuple[DayResult, ...]


def simulate(scenario: Scenario, pacer: Pacer, days: int, *, tick_s: float = 1.0) -> RunResult:
    """Run `days` consecutive days; the pacer keeps its statistics from one day to the next."""
    results = [DaySimulation(scenario, pacer, day, tick_s=tick_s).run() for day in range(days)]
    return RunResult(tuple(results))
