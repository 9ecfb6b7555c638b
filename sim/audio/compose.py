"""One simulated call: the agent's and the debtor's tracks and the ground truth of both.

`compose_call(corpus, spec)` lays the script's turns out on two tracks of `spec.duration_s`
seconds (the recording's length, which the simulator takes from the call's talk time): line
noise everywhere at a low level (never digital silence), speech where the turns are. A call
too short for its script is cut where it ends (the last words marked `truncated`); a long one
gets more payment talk, holds and pauses, then its closing near the end.

Every choice comes from `spec.seed`: the same spec gives the same bytes.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sim.audio.corpus import Corpus, Spoken
from sim.audio.script import Script
from sim.audio.sources import SAMPLE_RATE, Samples, to_int16

AGENT = "agent"
DEBTOR = "debtor"
MACHINE = "machine"
NOISE_DB = -62.0  # the line's hiss, dBFS RMS: far under speech (-20), yet never zero
TRUTH_SCHEMA = "collection-dialer/sim-call-truth/1"


class CallKind(enum.StrEnum):
    CONVERSATION = "conversation"  # a person answers and talks with the agent
    MACHINE = "machine"  # an answering machine: greeting, tone, the agent's message
    SHORT = "short"  # a person answers and is gone within seconds


class Rule(enum.StrEnum):
    """What QA must find: the scripted violations."""

    THREAT = "threat"  # "we will have you arrested", 我们会起诉你 / 派人上门
    INSULT = "insult"
    IMPERSONATION = "impersonation"  # posing as the police or a court
    THIRD_PARTY_DISCLOSURE = "third_party_disclosure"  # the debt told to someone else
    MISSING_DISCLOSURE = "missing_disclosure"  # debt talk with no mini-Miranda before it


RULES = frozenset(r.value for r in Rule)


@dataclass(frozen=True, slots=True)
class CallSpec:
    language: str = "en"  # a script's language: "en", "zh"
    kind: CallKind = CallKind.CONVERSATION
    duration_s: float = 60.0
    violation: Rule | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.duration_s <= 4 * 3600:
            raise ValueError(f"duration_s must be 0..14400, got {self.duration_s}")

    def as_json(self) -> dict[str, Any]:
        return {
            "language": self.language,
            "kind": self.kind.value,
            "duration_s": self.duration_s,
            "violation": self.violation.value if self.violation else None,
            "seed": self.seed,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallSpec:
        violation = data.get("violation")
        return cls(
            str(data["language"]),
            CallKind(data["kind"]),
            float(data["duration_s"]),
            Rule(violation) if violation else None,
            int(data["seed"]),
        )


@dataclass(frozen=True, slots=True)
class Utterance:
    """One turn as heard in the recording; times in seconds from the file's start."""

    speaker: str  # agent | debtor | machine
    channel: str  # agent | debtor: the track it is on (a machine answers on the debtor's)
    start_s: float
    end_s: float
    text: str
    tags: tuple[str, ...]
    sources: tuple[str, ...]
    truncated: bool = False  # the call ended before the phrase did

    def as_json(self) -> dict[str, Any]:
        return {
            "speaker": self.speaker,
            "channel": self.channel,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "text": self.text,
            "tags": list(self.tags),
            "sources": list(self.sources),
            "truncated": self.truncated,
        }


@dataclass(frozen=True, slots=True)
class Finding:
    """A violation that is in the audio: QA's expected answer."""

    rule: Rule
    speaker: str
    start_s: float
    end_s: float
    text: str

    def as_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "speaker": self.speaker,
            "start_s": round(self.start_s, 3),
            "end_s": round(self.end_s, 3),
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class CallAudio:
    spec: CallSpec
    agent: npt.NDArray[np.int16]
    debtor: npt.NDArray[np.int16]
    utterances: tuple[Utterance, ...]
    violations: tuple[Finding, ...]
    voices: Mapping[str, str]

    @property
    def duration_s(self) -> float:
        return len(self.agent) / SAMPLE_RATE

    def tagged(self, tag: str, *, whole: bool = True) -> list[Utterance]:
        return [u for u in self.utterances if tag in u.tags and not (whole and u.truncated)]

    def truth(self, files: Mapping[str, str] | None = None, layout: str = "") -> dict[str, Any]:
        """The sidecar: what was said, by whom, from which second to which."""

        def first(tag: str) -> dict[str, Any] | None:
            found = self.tagged(tag)
            return found[0].as_json() if found else None

        return {
            "schema": TRUTH_SCHEMA,
            "sample_rate": SAMPLE_RATE,
            "duration_s": round(self.duration_s, 3),
            "layout": layout,
            "files": dict(files or {}),
            "language": self.spec.language,
            "kind": self.spec.kind.value,
            "seed": self.spec.seed,
            "scripted_violation": self.spec.violation.value if self.spec.violation else None,
            "voices": dict(self.voices),
            "identity": first("identity"),
            "disclosure": first("disclosure"),
            "violations": [v.as_json() for v in self.violations],
            "utterances": [u.as_json() for u in self.utterances],
        }


@dataclass(slots=True)
class _Layout:
    """The two tracks being written and the turns placed on them."""

    corpus: Corpus
    script: Script
    rng: random.Random
    voices: dict[str, str]
    samples: int
    tracks: dict[str, Samples] = field(default_factory=dict)
    placed: list[Utterance] = field(default_factory=list)
    cursor: float = 0.0  # where the last turn ended
    ended: bool = False  # a turn ran into the end of the call
    bags: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        return self.samples / SAMPLE_RATE

    def pick(self, speaker: str, section: str, name: str) -> Spoken:
        """A phrase of the pool, each once before any comes again (a shuffled bag)."""
        pool = self.script.pool(section, name)
        bag = self.bags.setdefault((section, name), [])
        if not bag:
            bag.extend(range(len(pool)))
            self.rng.shuffle(bag)
        return self.corpus.speak(pool[bag.pop()], self.voices[speaker], self.script)

    def gap(self, low: float = 0.25, high: float = 0.9) -> float:
        return self.rng.uniform(low, high)

    def put(
        self, speaker: str, spoken: Spoken, tags: tuple[str, ...], start: float
    ) -> Utterance | None:
        """Place a turn at `start`; None if the call was over by then."""
        if self.ended or start >= self.duration:
            self.ended = True
            return None
        channel = AGENT if speaker == AGENT else DEBTOR
        first = round(start * SAMPLE_RATE)
        audio = spoken.samples[: max(0, self.samples - first)]
        track = self.tracks[channel]
        track[first : first + len(audio)] += audio
        end = (first + len(audio)) / SAMPLE_RATE
        truncated = len(audio) < len(spoken.samples)
        if spoken.tone:
            tags = (*tags, "tone")
        turn = Utterance(
            speaker, channel, first / SAMPLE_RATE, end, spoken.text, tags, spoken.sources, truncated
        )
        self.placed.append(turn)
        self.cursor = max(self.cursor, end)
        self.ended = self.ended or truncated
        return turn

    def say(
        self,
        speaker: str,
        section: str,
        name: str,
        tags: tuple[str, ...],
        *,
        barge: bool = False,
        gap: tuple[float, float] = (0.25, 0.9),
    ) -> Utterance | None:
        """The next turn after a short gap; a debtor sometimes cuts in (overtalk)."""
        spoken = self.pick(speaker, section, name)
        start = self.cursor + self.gap(*gap)
        if barge and self.placed and self.rng.random() < 0.12:
            last = self.placed[-1]
            start = max(last.start_s + 0.5, self.cursor - self.rng.uniform(0.2, 0.7))
        return self.put(speaker, spoken, tags, start)


def compose_call(corpus: Corpus, spec: CallSpec) -> CallAudio:
    """Both tracks of one call and what is in them (see the module's docstring)."""
    script = corpus.script(spec.language)
    rng = random.Random(spec.seed)
    voices = {role: rng.choice(script.voices[role]) for role in (AGENT, DEBTOR, MACHINE)}
    samples = round(spec.duration_s * SAMPLE_RATE)
    noise = np.random.default_rng(spec.seed)
    lay = _Layout(corpus, script, rng, voices, samples)
    lay.tracks = {AGENT: _line_noise(noise, samples), DEBTOR: _line_noise(noise, samples)}
    lay.cursor = rng.uniform(0.4, 1.2)  # the agent's leg comes up, the agent draws breath
    if spec.kind is CallKind.MACHINE:
        _machine(lay)
    elif spec.kind is CallKind.SHORT:
        lay.say(AGENT, "agent", "greeting", ("greeting", "identity"))
        lay.say(DEBTOR, "debtor", "short", ("answer", "hangup"))
    else:
        _conversation(lay, spec.violation)
    utterances = tuple(sorted(lay.placed, key=lambda u: (u.start_s, u.channel)))
    return CallAudio(
        spec,
        to_int16(lay.tracks[AGENT]),
        to_int16(lay.tracks[DEBTOR]),
        utterances,
        _findings(utterances, spec.violation),
        voices,
    )


def _line_noise(rng: np.random.Generator, samples: int) -> Samples:
    """Soft hiss at NOISE_DB: white noise averaged over two samples (less hiss up top)."""
    white = rng.standard_normal(samples + 1, dtype=np.float32)
    hiss = white[1:] + white[:-1]  # variance 2
    hiss *= np.float32(10 ** (NOISE_DB / 20) / np.sqrt(2.0))
    return hiss


def _machine(lay: _Layout) -> None:
    """The machine's greeting ends in its tone; then the agent leaves a message."""
    greeting = lay.pick(MACHINE, "machine", "greeting")
    lay.put(MACHINE, greeting, ("machine", "greeting"), lay.cursor)
    lay.say(AGENT, "agent", "voicemail", ("voicemail", "identity"), gap=(0.5, 1.2))


def _conversation(lay: _Layout, violation: Rule | None) -> None:
    rng = lay.rng
    third_party = violation is Rule.THIRD_PARTY_DISCLOSURE or (
        violation is None and rng.random() < 0.05
    )
    lay.say(AGENT, "agent", "greeting", ("greeting", "identity"))
    if violation is Rule.IMPERSONATION:
        lay.say(AGENT, "violation", "impersonation", ("violation", Rule.IMPERSONATION.value))
    lay.say(AGENT, "agent", "verify", ("verify",), gap=(0.1, 0.3))  # right after the greeting
    if third_party:
        lay.say(DEBTOR, "debtor", "third_party_answer", ("answer", "third_party"))
        if violation is Rule.THIRD_PARTY_DISCLOSURE:
            rule = Rule.THIRD_PARTY_DISCLOSURE.value
            lay.say(AGENT, "violation", rule, ("violation", rule, "debt"))
        lay.say(AGENT, "agent", "third_party_ask", ("third_party_ask",))
        lay.say(DEBTOR, "debtor", "third_party_reply", ("reply", "third_party"), barge=True)
        lay.say(AGENT, "agent", "goodbye", ("closing",))
        lay.say(DEBTOR, "debtor", "closing", ("closing", "third_party"))
        return  # the line stays open a while: only hiss until the recording ends
    lay.say(DEBTOR, "debtor", "answer", ("answer",), barge=True)
    if violation is not Rule.MISSING_DISCLOSURE:
        lay.say(AGENT, "agent", "disclosure", ("disclosure",))
    lay.say(AGENT, "agent", "balance", ("balance", "debt"))
    first = (
        "objection" if violation in (Rule.THREAT, Rule.INSULT) or rng.random() < 0.6 else "promise"
    )
    lay.say(DEBTOR, "debtor", first, (first,), barge=True)
    if violation in (Rule.THREAT, Rule.INSULT):
        assert violation is not None
        lay.say(AGENT, "violation", violation.value, ("violation", violation.value))
        lay.say(DEBTOR, "debtor", "reply", ("reply",), barge=True)
    _middle(lay)
    _closing(lay)


def _middle(lay: _Layout) -> None:
    """Payment talk and holds for as long as they fit before a closing."""
    rng = lay.rng
    reserve = 9.0  # about what a closing takes, both sides
    while not lay.ended:
        if rng.random() < 0.15:
            hold = lay.pick(AGENT, "agent", "hold")
            back = lay.pick(AGENT, "agent", "hold_back")
            pause = rng.uniform(4.0, 20.0)
            start = lay.cursor + lay.gap()
            if start + hold.seconds + pause + back.seconds + reserve <= lay.duration:
                lay.put(AGENT, hold, ("hold",), start)
                lay.put(AGENT, back, ("hold",), lay.cursor + pause)
                continue  # no room for the hold: perhaps for a few words
        ask = lay.pick(AGENT, "agent", "payment")
        kind = rng.choice(("reply", "reply", "promise", "objection"))
        answer = lay.pick(DEBTOR, "debtor", kind)
        start = lay.cursor + lay.gap()
        if start + ask.seconds + 0.9 + answer.seconds + reserve > lay.duration:
            return
        lay.put(AGENT, ask, ("payment",), start)
        lay.put(DEBTOR, answer, (kind,), lay.cursor + lay.gap())


def _closing(lay: _Layout) -> None:
    """Good-byes ending shortly before the call does (a pause first, if there is time)."""
    if lay.ended:
        return
    bye = lay.pick(AGENT, "agent", "closing")
    reply = lay.pick(DEBTOR, "debtor", "closing")
    between = lay.gap(0.2, 0.6)
    tail = lay.gap(0.4, 1.5)
    start = max(lay.cursor + lay.gap(), lay.duration - tail - reply.seconds - between - bye.seconds)
    lay.put(AGENT, bye, ("closing",), start)
    lay.put(DEBTOR, reply, ("closing",), lay.cursor + between)


def _findings(utterances: tuple[Utterance, ...], violation: Rule | None) -> tuple[Finding, ...]:
    """The scripted violation, if the recording holds all of it."""
    found: list[Finding] = []
    for u in utterances:
        if "violation" in u.tags and not u.truncated:
            rule = Rule(next(t for t in u.tags if t in RULES))
            found.append(Finding(rule, u.speaker, u.start_s, u.end_s, u.text))
    if violation is Rule.MISSING_DISCLOSURE:
        debt = [u for u in utterances if "balance" in u.tags and not u.truncated]
        if debt:  # the agent got to the debt, and no disclosure came before
            u = debt[0]
            found.append(Finding(Rule.MISSING_DISCLOSURE, u.speaker, u.start_s, u.end_s, u.text))
    return tuple(found)
