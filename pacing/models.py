"""The pacing interface: campaign state in, events for the statistics, settings and overrides.

How the live dialer (and the simulator) uses pacing, in four calls::

    pacer = make_pacer("predictive", PacingSettings(target_abandon_rate=0.03))
    pacer.restore(saved_json)              # optional: yesterday's statistics, no cold start
    n = pacer.calls_to_place(state)        # each tick (about once a second): Originate n calls
    pacer.observe(CallOutcome(...))        # each call's outcome, each agent's finished call
    pacer.apply(Overrides(target_abandon_rate=0.02))   # supervisor; effective on the next tick
    saved_json = pacer.to_json()           # persist now and then

Time is never read from a clock: `PacingState.now` and the event fields carry it, in seconds on
one time line (Unix time in the live dialer, virtual time in the simulator). `utc_offset_s` in the
settings places local midnight on that line, for "today" and hour-of-day profiles.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


class AnswerKind(enum.Enum):
    """Who picked up: a person, an answering machine (detected by AMD), or nobody."""

    LIVE = "live"
    MACHINE = "machine"
    NONE = "none"


class DialMode(enum.Enum):
    """The pacing algorithms, by the names the supervisor and the CLI use."""

    PREVIEW = "preview"
    PROGRESSIVE = "progressive"
    RATIO = "ratio"
    VICIDIAL_ADAPT = "vicidial-adapt"
    PREDICTIVE = "predictive"


class VicidialVariant(enum.Enum):
    """What VICIdial's adaptive mode does once today's drop rate exceeds the target."""

    HARD_LIMIT = "hard-limit"
    TAPERED = "tapered"


@dataclass(frozen=True, slots=True)
class PacingState:
    """The campaign right now, as the dialer sees it. Tuples hold elapsed seconds per item."""

    now: float
    agents_ready: int
    on_call_s: tuple[float, ...] = ()  # one entry per agent talking: seconds since connect
    wrap_up_s: tuple[float, ...] = ()  # one entry per agent in wrap-up: seconds since hangup
    agents_paused: int = 0
    ringing_s: tuple[float, ...] = ()  # one entry per call placed, not yet answered
    waiting_s: tuple[float, ...] = ()  # one entry per live answer waiting for an agent

    def __post_init__(self) -> None:
        if self.agents_ready < 0 or self.agents_paused < 0:
            raise ValueError(
                f"PacingState: agent counts cannot be negative "
                f"(ready={self.agents_ready}, paused={self.agents_paused})"
            )

    @property
    def agents_on_call(self) -> int:
        return len(self.on_call_s)

    @property
    def agents_in_wrap_up(self) -> int:
        return len(self.wrap_up_s)

    @property
    def calls_in_flight(self) -> int:
        """Calls placed that no agent has yet: ringing plus answered and waiting."""
        return len(self.ringing_s) + len(self.waiting_s)

    @property
    def agents_working(self) -> int:
        """Agents logged in and not paused: ready, talking or wrapping up."""
        return self.agents_ready + len(self.on_call_s) + len(self.wrap_up_s)


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """How one placed call ended, reported once the outcome is known.

    `ring_s` is from Originate to answer (or to giving up when nobody answered); `wait_s` is how
    long a live answer waited for an agent. A live answer is `connected` or else abandoned (it
    heard the identification message instead of an agent).
    """

    dialed_at: float
    answer: AnswerKind
    ring_s: float
    connected: bool = False
    wait_s: float = 0.0

    @property
    def answered_at(self) -> float:
        return self.dialed_at + self.ring_s


@dataclass(frozen=True, slots=True)
class AgentCallEnded:
    """An agent finished a call and its wrap-up; `ended_at` is the end of wrap-up."""

    ended_at: float
    talk_s: float
    wrap_up_s: float


PacingEvent = CallOutcome | AgentCallEnded


@dataclass(frozen=True, slots=True)
class PacingSettings:
    """A campaign's pacing parameters. Defaults follow the US rule (3%, 2 s, 30 days)."""

    dial_mode: DialMode = DialMode.PREDICTIVE
    target_abandon_rate: float = 0.03
    abandon_after_s: float = 2.0
    max_dial_ratio: float = 4.0  # calls in flight per working agent, at most
    paused: bool = False
    # ratio mode: lines = ratio × ready agents − calls in flight
    dial_ratio: float = 2.0
    # predictive: aim at most this fraction below the target, so a day's chance stays under the
    # legal limit; campaigns with many live answers a day need (and take) less
    safety_margin: float = 0.25
    # vicidial-adapt, as VICIdial names them (intensity as a fraction: VICIdial's value / 100)
    vicidial_max_level: float = 3.0
    vicidial_intensity: float = 0.0
    vicidial_diff_target: float = 0.0
    vicidial_variant: VicidialVariant = VicidialVariant.HARD_LIMIT
    # local day: seconds added to `now` to reach local time; the shift end tapers VICIdial's level
    utc_offset_s: float = 0.0
    shift_start_hour: float = 9.0
    shift_end_hour: float = 17.0
    # UK: count this fraction of AMD "machine" verdicts as live answers abandoned
    amd_false_positive_rate: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 < self.target_abandon_rate < 1.0:
            raise ValueError(
                f"target_abandon_rate must be in (0, 1), got {self.target_abandon_rate}"
            )
        if self.abandon_after_s <= 0:
            raise ValueError(f"abandon_after_s must be positive, got {self.abandon_after_s}")
        if self.max_dial_ratio < 1.0:
            raise ValueError(f"max_dial_ratio must be at least 1, got {self.max_dial_ratio}")
        if self.dial_ratio <= 0:
            raise ValueError(f"dial_ratio must be positive, got {self.dial_ratio}")
        if not 0.0 <= self.safety_margin < 1.0:
            raise ValueError(f"safety_margin must be in [0, 1), got {self.safety_margin}")
        if self.vicidial_max_level < 1.0:
            raise ValueError(
                f"vicidial_max_level must be at least 1, got {self.vicidial_max_level}"
            )
        if not 0.0 <= self.shift_start_hour < self.shift_end_hour <= 24.0:
            raise ValueError(
                f"shift hours must satisfy 0 <= start < end <= 24, got "
                f"{self.shift_start_hour}..{self.shift_end_hour}"
            )
        if not 0.0 <= self.amd_false_positive_rate <= 1.0:
            raise ValueError(
                f"amd_false_positive_rate must be in [0, 1], got {self.amd_false_positive_rate}"
            )


@dataclass(frozen=True, slots=True)
class Overrides:
    """What a supervisor may change while a campaign runs; None leaves a setting as it is."""

    target_abandon_rate: float | None = None
    max_dial_ratio: float | None = None
    dial_mode: DialMode | None = None
    paused: bool | None = None
    dial_ratio: float | None = None


@dataclass(frozen=True, slots=True)
class WindowCount:
    """Live answers and abandoned calls in one accounting window, and their ratio."""

    live: float
    abandoned: float

    @property
    def rate(self) -> float:
        return self.abandoned / self.live if self.live > 0 else 0.0


@dataclass(frozen=True, slots=True)
class AbandonmentReport:
    """The three windows the regulators and supervisors look at."""

    rolling_30d: WindowCount
    rolling_24h: WindowCount
    today: WindowCount

    @property
    def worst_rate(self) -> float:
        return max(self.rolling_30d.rate, self.rolling_24h.rate, self.today.rate)


class Pacer(Protocol):
    """What the dialer and the simulator drive; see the module docstring for the call order."""

    @property
    def settings(self) -> PacingSettings: ...

    def calls_to_place(self, state: PacingState) -> int: ...

    def observe(self, event: PacingEvent) -> None: ...

    def apply(self, overrides: Overrides) -> None: ...

    def abandonment(self, now: float) -> AbandonmentReport: ...

    def to_json(self) -> str: ...

    def restore(self, text: str) -> None: ...
