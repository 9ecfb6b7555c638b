"""Simulated call audio from real material: the human-recorded telephone prompts of Debian's
`asterisk-core-sounds-en-wav` and espeak-ng (English, Mandarin), composed into two-sided call
recordings with a ground-truth sidecar (who said what, when; which violation, where).

    corpus = Corpus.open()                      # AudioUnavailable if a source is missing
    call = compose_call(corpus, CallSpec("zh", duration_s=90, violation=Rule.THREAT, seed=7))
    write_call(call, Path("call.wav"))          # call.wav (agent left, debtor right) + call.truth.json

The simulated PBX records through `CallRecorder` when `PbxConfig.recordings_dir` is set.
`python -m sim.audio OUT_DIR` writes a sample set.
"""

from sim.audio.compose import (
    CallAudio,
    CallKind,
    CallSpec,
    Finding,
    Rule,
    Utterance,
    compose_call,
)
from sim.audio.corpus import Corpus, Spoken
from sim.audio.errors import AudioError, AudioUnavailable, ScriptError
from sim.audio.files import Layout, rt_paths, sidecar_path, write_call
from sim.audio.recorder import CallMix, CallRecorder, plan_call
from sim.audio.sources import SAMPLE_RATE, default_cache_dir, read_wav


def unavailable() -> str | None:
    """Why simulated call audio cannot be made here (None: it can). For tests to skip on."""
    try:
        Corpus.open()
    except AudioUnavailable as exc:
        return str(exc)
    return None


__all__ = [
    "SAMPLE_RATE",
    "AudioError",
    "AudioUnavailable",
    "CallAudio",
    "CallKind",
    "CallMix",
    "CallRecorder",
    "CallSpec",
    "Corpus",
    "Finding",
    "Layout",
    "Rule",
    "ScriptError",
    "Spoken",
    "Utterance",
    "compose_call",
    "default_cache_dir",
    "plan_call",
    "read_wav",
    "rt_paths",
    "sidecar_path",
    "unavailable",
    "write_call",
]
