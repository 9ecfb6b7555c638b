"""How well keyword spotting finds the scripted violations of simulated calls (a QA aid figure).

English conversations from `sim.audio` with a threat, an insult or a posing-as-authority line
on the agent's side (and some with none); the agent's channel is searched for the forbidden
phrases of the `us-collections` QA rules (`asr.keywords`). A violation is found when a phrase
of its category is detected within a second of it; any other detection is a false alarm.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from asr.engines import EngineSpec, build_recognizer
from asr.keywords import spotting_list
from asr.pocketsphinx_engine import model_files
from asr.service import transcribe_samples

SLACK_S = 1.0
RULES = "us-collections"


@dataclass(frozen=True, slots=True)
class SpottingScore:
    calls: int
    audio_s: float
    cpu_s: float
    violations: int
    found: int
    false_alarms: int

    @property
    def recall(self) -> float:
        return self.found / self.violations if self.violations else 0.0

    @property
    def false_alarms_per_hour(self) -> float:
        return self.false_alarms * 3600.0 / self.audio_s if self.audio_s else 0.0

    def to_dict(self) -> dict[str, float | int]:
        return {
            "calls": self.calls,
            "audio_s": round(self.audio_s, 1),
            "rtf_cpu": round(self.cpu_s / self.audio_s, 4) if self.audio_s else 0.0,
            "violations": self.violations,
            "found": self.found,
            "false_alarms": self.false_alarms,
            "false_alarms_per_hour": round(self.false_alarms_per_hour, 1),
        }


def measure_spotting(count: int, *, seed: int = 1, per_word_exp: float = 4.0) -> SpottingScore:
    """Spot the forbidden phrases on the agent side of `count` simulated English calls."""
    import time

    from sim.audio import SAMPLE_RATE, CallKind, CallSpec, Corpus, Rule, compose_call

    # the sim's rules and the QA presets' categories
    category = {Rule.THREAT: "threat", Rule.INSULT: "insult", Rule.IMPERSONATION: "impersonation"}
    cycle = [Rule.THREAT, Rule.INSULT, Rule.IMPERSONATION, None]
    corpus = Corpus.open()
    options = (("kws_rules", RULES), ("kws_exp", per_word_exp))
    recognizer = build_recognizer(EngineSpec("pocketsphinx", options=options))
    phrases = spotting_list(RULES, Path(model_files(None)["dict"]))
    audio_s = cpu_s = 0.0
    violations = found = false_alarms = 0
    for n in range(count):
        rule = cycle[n % len(cycle)]
        spec = CallSpec("en", CallKind.CONVERSATION, 60.0, rule, seed * 1000 + n)
        call = compose_call(corpus, spec)
        started = time.process_time()
        segments = transcribe_samples(recognizer, call.agent, SAMPLE_RATE)
        cpu_s += time.process_time() - started
        audio_s += len(call.agent) / SAMPLE_RATE
        truth = [(f, category[f.rule]) for f in call.violations if f.rule in category]
        violations += len(truth)
        hit: set[int] = set()
        for word in (w for s in segments for w in s.words):
            kind = phrases.category_of(word.text)
            matched = [
                i
                for i, (f, cat) in enumerate(truth)
                if cat == kind
                and word.start_s < f.end_s + SLACK_S
                and word.end_s > f.start_s - SLACK_S
            ]
            if matched:
                hit.update(matched)
            else:
                false_alarms += 1
        found += len(hit)
    return SpottingScore(count, audio_s, cpu_s, violations, found, false_alarms)
