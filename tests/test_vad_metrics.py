"""VAD segments and per-call measures on real speech with a known layout.

The agent is Debian's asterisk-core-sounds-en prompts (a human voice, 8 kHz telephone audio);
the debtor is espeak-ng (English or Mandarin), resampled to 8 kHz with soxr. Speech is laid out
at known seconds so talk time, silence, overtalk and raised voice can be checked against the
truth. Skips when the prompts or espeak-ng are missing (fails under DIALER_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soxr

from recording.audio_io import parse_wav, read_wav, write_wav
from recording.errors import BadRecording, RecordingError
from recording.metrics import (
    CallMetrics,
    MetricsConfig,
    Party,
    measure_call,
    measure_pair,
    measure_stereo,
)
from recording.vad import Segment, cut, smooth, speech_frames, speech_segments, vad_rate
from tests.conftest import REQUIRE_SERVICES

RATE = 8000
SOUNDS = Path("/usr/share/asterisk/sounds/en")
# Prompts whose pauses between words are all under 100 ms: laid end to end they are speech
# from the first sample to the last, so the layout below is the truth.
AGENT_PROMPTS = (
    "hello-world",
    "please-try-again",
    "one-moment-please",
    "pls-hold-while-try",
    "sorry-youre-having-problems",
    "info-about-last-call",
    "vm-isunavail",
    "auth-thankyou",
)
DEBTOR_TEXT = {
    "en": (
        "I lost my job last month and I cannot pay the whole amount right now.",
        "I can pay something next week, maybe two hundred.",
        "Please stop calling my mother about this.",
    ),
    "cmn": ("我上个月失业了，现在还不起全部欠款，下周可以先还一部分。",),
}

Int16 = npt.NDArray[np.int16]
Float = npt.NDArray[np.float64]


def _missing(reason: str) -> None:
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def prompt() -> Callable[[str], Int16]:
    if not (SOUNDS / "hello-world.wav").is_file():
        _missing(f"asterisk-core-sounds-en-wav is not installed ({SOUNDS})")

    def load(name: str) -> Int16:
        wav = read_wav(SOUNDS / f"{name}.wav")
        assert wav.rate == RATE and wav.channels == 1
        return wav.channel(0)

    return load


@pytest.fixture(scope="module")
def espeak(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Int16]:
    exe = shutil.which("espeak-ng")
    if exe is None:
        _missing("espeak-ng is not installed")
    assert exe is not None
    folder = tmp_path_factory.mktemp("espeak")
    cache: dict[tuple[str, str], Int16] = {}

    def say(text: str, voice: str = "en") -> Int16:
        if (text, voice) not in cache:
            out = folder / f"{len(cache)}.wav"
            subprocess.run([exe, "-v", voice, "-w", str(out), text], check=True, timeout=30)
            wav = read_wav(out)
            cache[text, voice] = soxr.resample(wav.channel(0), wav.rate, RATE, "HQ")
        return cache[text, voice]

    return say


# --- building calls -------------------------------------------------------------------------


def _trim(x: Int16) -> Float:
    """Cuts leading and trailing silence (10 ms frames 35 dB under the loudest)."""
    usable = len(x) // 80 * 80
    frames = x[:usable].astype(np.float64).reshape(-1, 80)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    loud = np.flatnonzero(level > level.max() - 35)
    return x[loud[0] * 80 : (loud[-1] + 1) * 80].astype(np.float64)


def _level(x: Float, dbfs: float) -> Float:
    rms = float(np.sqrt(np.mean(x**2))) / 32768
    return x * (10 ** (dbfs / 20) / rms)


def _speech(clips: list[Int16], seconds: float, dbfs: float = -20.0) -> Float:
    """Exactly `seconds` of continuous speech: the clips trimmed, end to end, repeated."""
    pieces = [_level(_trim(c), dbfs) for c in clips]
    need = round(seconds * RATE)
    out = np.concatenate(pieces)
    while len(out) < need:
        out = np.concatenate((out, *pieces))
    return out[:need]


def _raise(x: Float, gain_db: float, pitch: float) -> Float:
    """Louder by `gain_db` and higher by the factor `pitch` (resampled: also 1/pitch shorter)."""
    return np.asarray(soxr.resample(x, RATE * pitch, RATE, "HQ")) * 10 ** (gain_db / 20)


def _channel(seconds: float, parts: list[tuple[float, Float]]) -> Int16:
    out = np.zeros(round(seconds * RATE))
    for start, samples in parts:
        at = round(start * RATE)
        out[at : at + len(samples)] += samples
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def _agent_clips(prompt: Callable[[str], Int16]) -> list[Int16]:
    return [prompt(name) for name in AGENT_PROMPTS]


def _debtor_clips(espeak: Callable[[str, str], Int16], voice: str) -> list[Int16]:
    return [espeak(text, voice) for text in DEBTOR_TEXT[voice]]


def _layout_call(
    prompt: Callable[[str], Int16], espeak: Callable[[str, str], Int16], voice: str
) -> tuple[Int16, Int16]:
    """Agent speaks 0-2 s, nobody 2-5 s, debtor 5-7 s, both 7-8 s, nobody 8-8.5 s."""
    agent_speech = _speech(_agent_clips(prompt), 3.0)
    debtor_speech = _speech(_debtor_clips(espeak, voice), 3.0, dbfs=-22.0)
    agent = _channel(8.5, [(0.0, agent_speech[: 2 * RATE]), (7.0, agent_speech[2 * RATE :])])
    debtor = _channel(8.5, [(5.0, debtor_speech)])
    return agent, debtor


def _covered(segments: tuple[Segment, ...] | list[Segment], start: float, end: float) -> float:
    return sum(max(0.0, min(s.end_s, end) - max(s.start_s, start)) for s in segments)


# --- VAD ------------------------------------------------------------------------------------


def test_silence_gives_no_segments() -> None:
    silence = np.zeros(10 * RATE, dtype=np.int16)
    for aggressiveness in range(4):
        assert speech_segments(silence, RATE, aggressiveness=aggressiveness) == []


@pytest.mark.parametrize("aggressiveness", [2, 3])
@pytest.mark.parametrize("amplitude", [30, 100, 300])  # about -60, -50 and -40 dBFS
def test_low_white_noise_gives_no_segments(aggressiveness: int, amplitude: int) -> None:
    rng = np.random.default_rng(amplitude)
    noise = np.round(rng.standard_normal(20 * RATE) * amplitude).astype(np.int16)
    assert speech_segments(noise, RATE, aggressiveness=aggressiveness) == []
    # WebRTC's own decisions are not all "no": smoothing is what keeps them out.
    assert speech_frames(noise, RATE, aggressiveness=aggressiveness).any() or amplitude >= 300


def test_speech_in_noise_is_found(prompt: Callable[[str], Int16]) -> None:
    rng = np.random.default_rng(7)
    speech = _speech(_agent_clips(prompt), 2.0)
    signal = _channel(6.0, [(2.0, speech)]) + np.round(rng.standard_normal(6 * RATE) * 100)
    segments = speech_segments(signal.astype(np.int16), RATE)
    assert len(segments) == 1
    assert segments[0].start_s == pytest.approx(2.0, abs=0.15)
    assert segments[0].end_s == pytest.approx(4.0, abs=0.3)


def test_segments_are_deterministic_and_never_silence(
    prompt: Callable[[str], Int16], espeak: Callable[[str, str], Int16]
) -> None:
    agent, debtor = _layout_call(prompt, espeak, "en")
    first = speech_segments(agent, RATE)
    assert speech_segments(agent, RATE) == first
    assert _covered(first, 2.3, 6.7) == 0.0  # the agent's silence is never sent to the ASR
    assert _covered(speech_segments(debtor, RATE), 0.0, 4.9) == 0.0


@pytest.mark.parametrize("rate", [16000, 22050, 44100, 48000])
def test_other_rates(rate: int, prompt: Callable[[str], Int16]) -> None:
    eight = _channel(5.0, [(1.0, _speech(_agent_clips(prompt), 2.5))])
    audio = soxr.resample(eight, RATE, rate, "HQ")
    segments = speech_segments(audio, rate)
    assert len(segments) == 1
    assert segments[0].start_s == pytest.approx(1.0, abs=0.1)
    assert segments[0].end_s == pytest.approx(3.5, abs=0.3)


def test_refuses_what_it_cannot_segment() -> None:
    with pytest.raises(ValueError, match="at least 8000 Hz"):
        speech_segments(np.zeros(6000, dtype=np.int16), 6000)
    with pytest.raises(TypeError, match="int16"):
        speech_segments(np.zeros(8000, dtype=np.float32), RATE)
    with pytest.raises(ValueError, match="one channel"):
        speech_segments(np.zeros((8000, 2), dtype=np.int16), RATE)
    with pytest.raises(ValueError, match="frame_ms"):
        speech_segments(np.zeros(8000, dtype=np.int16), RATE, frame_ms=25)
    assert [vad_rate(r) for r in (8000, 11025, 22050, 44100, 96000)] == [
        8000,
        8000,
        16000,
        32000,
        48000,
    ]


def _flags(pattern: str) -> npt.NDArray[np.bool_]:
    return np.array([c == "#" for c in pattern], dtype=np.bool_)


def test_smoothing() -> None:
    flags = _flags("#.#..##.####.......#.#.#.#.#.#..###")
    # gaps of up to 2 frames are bridged; a joined segment needs a run of min_run frames
    assert smooth(flags, min_run=3, max_gap=2) == [(0, 12), (19, 35)]
    assert smooth(flags, min_run=4, max_gap=2) == [(0, 12)]
    assert smooth(flags, min_run=1, max_gap=0)[:3] == [(0, 1), (2, 3), (5, 7)]
    # clicks never start a segment, however many there are
    assert smooth(_flags("#.#.#.#.#.#.#.#.#.#.#"), min_run=2, max_gap=5) == []
    assert smooth(_flags(""), 1, 1) == []
    assert smooth(_flags("####"), 4, 0) == [(0, 4)]


def test_cut_gives_pieces_with_offsets() -> None:
    samples = np.arange(4 * RATE, dtype=np.int16)
    segments = [Segment(0.5, 1.0), Segment(3.9, 4.0)]
    pieces = list(cut(samples, RATE, segments))
    assert [(p.start_s, p.end_s) for p in pieces] == [(0.5, 1.0), (3.9, 4.0)]
    assert np.array_equal(pieces[0].samples, samples[4000:8000])
    padded = list(cut(samples, RATE, segments, pad_s=0.2))
    assert [(p.start_s, p.end_s) for p in padded] == [(0.3, 1.2), (3.7, 4.0)]
    assert len(padded[1].samples) == round(0.3 * RATE)


# --- per-call measures ----------------------------------------------------------------------


@pytest.mark.parametrize("voice", ["en", "cmn"])
def test_layout_measures(
    voice: str, prompt: Callable[[str], Int16], espeak: Callable[[str, str], Int16]
) -> None:
    agent, debtor = _layout_call(prompt, espeak, voice)
    m = measure_call(agent, debtor, RATE)
    assert m.duration_s == pytest.approx(8.5)
    assert m.agent.talk_s == pytest.approx(3.0, abs=0.3)
    assert m.debtor.talk_s == pytest.approx(3.0, abs=0.3)
    assert m.longest_silence is not None
    assert m.longest_silence.start_s == pytest.approx(2.0, abs=0.3)
    assert m.longest_silence_s == pytest.approx(3.0, abs=0.3)
    assert m.overtalk_s == pytest.approx(1.0, abs=0.3)
    assert len(m.overtalk) == 1 and m.overtalk[0].start_s == pytest.approx(7.0, abs=0.15)
    assert m.silence_ratio == pytest.approx(3.5 / 8.5, abs=0.3 / 8.5)
    assert m.silence_s + m.agent.talk_s + m.debtor.talk_s - m.overtalk_s == pytest.approx(8.5)
    assert m.raised_voice == ()


def test_stereo_and_mono_pair_files_agree(
    tmp_path: Path, prompt: Callable[[str], Int16], espeak: Callable[[str, str], Int16]
) -> None:
    agent, debtor = _layout_call(prompt, espeak, "en")
    write_wav(tmp_path / "call.wav", np.stack((agent, debtor), axis=1), RATE)
    write_wav(tmp_path / "call-t.wav", agent, RATE)
    write_wav(tmp_path / "call-r.wav", debtor, RATE)
    write_wav(tmp_path / "short-r.wav", debtor[: -RATE // 4], RATE)  # r() ends earlier
    stereo = measure_stereo(tmp_path / "call.wav")
    pair = measure_pair(tmp_path / "call-t.wav", tmp_path / "call-r.wav")
    assert stereo == measure_call(agent, debtor, RATE)
    assert stereo.to_json() == pair.to_json()
    short = measure_pair(tmp_path / "call-t.wav", tmp_path / "short-r.wav")
    assert short.duration_s == stereo.duration_s
    assert short.debtor.talk_s == pytest.approx(stereo.debtor.talk_s, abs=0.15)
    data = json.loads(stereo.to_json())
    assert data["talk_s"]["agent"] == round(stereo.agent.talk_s, 3)
    assert data["longest_silence"]["start_s"] == pytest.approx(2.0, abs=0.3)
    assert data["agent"]["segments"][0]["start_s"] == pytest.approx(0.0, abs=0.1)


def _raised_call(
    normal: list[Int16], gain_db: float, pitch: float, prompt: Callable[[str], Int16]
) -> tuple[Int16, Int16]:
    """Debtor: normal speech 0.5-8.5 s, raised 10-12 s (their own speech, louder and higher),
    normal 13-17 s. Agent: speech 18-21 s."""
    speech = _speech(normal, 15.0, dbfs=-24.0)
    raised = _raise(speech[12 * RATE :], gain_db, pitch)[: 2 * RATE]
    debtor = _channel(
        22.0, [(0.5, speech[: 8 * RATE]), (10.0, raised), (13.0, speech[8 * RATE : 12 * RATE])]
    )
    agent = _channel(22.0, [(18.0, _speech(_agent_clips(prompt), 3.0))])
    return agent, debtor


@pytest.mark.parametrize("who", ["espeak-en", "espeak-cmn", "human"])
def test_raised_voice_is_found_where_it_is(
    who: str, prompt: Callable[[str], Int16], espeak: Callable[[str, str], Int16]
) -> None:
    if who == "human":
        normal = [prompt(n) for n in ("vm-intro", "privacy-prompt", "demo-thanks", "tt-weasels")]
    else:
        normal = _debtor_clips(espeak, who.split("-")[1])
    agent, debtor = _raised_call(normal, gain_db=10.0, pitch=1.33, prompt=prompt)
    m = measure_call(agent, debtor, RATE)
    assert m.agent.raised_voice == ()
    moments = m.debtor.raised_voice
    assert moments, "the raised stretch was not found"
    # at the right second, and nowhere in the normal speech (0.5-8.5 s, 13-17 s)
    assert all(r.start_s >= 9.8 and r.end_s <= 12.2 for r in moments), moments
    assert moments[0].start_s <= 10.5 and moments[-1].end_s >= 11.3, moments
    assert sum(r.end_s - r.start_s for r in moments) >= 1.0
    for moment in moments:
        assert moment.party is Party.DEBTOR
        assert moment.energy_ratio > 2.0  # at least +6 dB of the +10 dB applied
        assert 1.15 < moment.pitch_ratio < 1.8
    assert m.debtor.baseline is not None and m.debtor.baseline.voiced_s > 3.0


@pytest.mark.parametrize(("gain_db", "pitch"), [(10.0, 1.0), (0.0, 1.33)])
def test_louder_alone_or_higher_alone_is_not_raised(
    gain_db: float,
    pitch: float,
    prompt: Callable[[str], Int16],
    espeak: Callable[[str, str], Int16],
) -> None:
    agent, debtor = _raised_call(_debtor_clips(espeak, "en"), gain_db, pitch, prompt)
    assert measure_call(agent, debtor, RATE).raised_voice == ()


def test_little_speech_has_no_baseline(prompt: Callable[[str], Int16]) -> None:
    agent = _channel(4.0, [(1.0, _speech(_agent_clips(prompt), 1.0))])
    m = measure_call(agent, np.zeros(4 * RATE, dtype=np.int16), RATE, MetricsConfig())
    assert m.agent.baseline is None and m.agent.raised_voice == ()
    assert m.debtor.segments == () and m.debtor.talk_s == 0.0
    assert m.longest_silence is not None and m.longest_silence.start_s == pytest.approx(
        2.0, abs=0.3
    )


def test_call_without_speech() -> None:
    m = measure_call(np.zeros(RATE * 3, np.int16), np.zeros(RATE * 3, np.int16), RATE)
    assert isinstance(m, CallMetrics)
    assert (m.silence_ratio, m.overtalk_s, m.agent.talk_s) == (1.0, 0.0, 0.0)
    assert m.longest_silence is not None and m.longest_silence_s == pytest.approx(3.0)


# --- bad input ------------------------------------------------------------------------------


def _pcm_wav(path: Path, seconds: float = 1.0, channels: int = 1, width: int = 2) -> bytes:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(RATE)
        w.writeframes(b"\x01\x02" * int(seconds * RATE * channels * width / 2))
    return path.read_bytes()


def _bad(path: Path, match: str) -> BadRecording:
    with pytest.raises(BadRecording, match=match) as info:
        read_wav(path)
    assert info.value.path == path and str(path) in str(info.value)
    assert isinstance(info.value, RecordingError)
    return info.value


def test_empty_and_not_a_wav(tmp_path: Path) -> None:
    (tmp_path / "empty.wav").write_bytes(b"")
    _bad(tmp_path / "empty.wav", "empty file")
    (tmp_path / "text.wav").write_text("this is not audio at all")
    _bad(tmp_path / "text.wav", "not a WAV file")
    (tmp_path / "short.wav").write_bytes(b"RIFF\0\0")
    _bad(tmp_path / "short.wav", "truncated")
    _bad(tmp_path / "missing.wav", "cannot be read")
    data = _pcm_wav(tmp_path / "zero.wav", seconds=0)
    assert len(data) == 44
    _bad(tmp_path / "zero.wav", "empty: no audio frames")


def test_truncated(tmp_path: Path) -> None:
    data = _pcm_wav(tmp_path / "full.wav", seconds=2)
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    reason = _bad(tmp_path / "cut.wav", "truncated: header promises 16000 frames").reason
    assert "holds 7989" in reason
    (tmp_path / "head.wav").write_bytes(data[:30])
    _bad(tmp_path / "head.wav", "format chunk is cut short")
    # Asterisk stopped before closing: the sizes in the header are still 0
    unfinished = data[:4] + b"\0\0\0\0" + data[8:40] + b"\0\0\0\0" + data[44:]
    (tmp_path / "unfinished.wav").write_bytes(unfinished)
    _bad(tmp_path / "unfinished.wav", "header never finalised")
    # a streaming writer's "unknown length" is taken as "to the end of the file"
    streamed = data[:40] + struct.pack("<I", 0xFFFFFFFF) + data[44:]
    assert parse_wav(streamed).frames == 16000


def test_wrong_sample_format(tmp_path: Path) -> None:
    _pcm_wav(tmp_path / "u8.wav", width=1)
    _bad(tmp_path / "u8.wav", "sample width is 8 bits")
    data = bytearray(_pcm_wav(tmp_path / "f.wav", width=4))
    data[20:22] = struct.pack("<H", 3)
    (tmp_path / "float.wav").write_bytes(bytes(data))
    _bad(tmp_path / "float.wav", r"not PCM audio \(IEEE float\)")
    data[20:22] = struct.pack("<H", 0x31)
    (tmp_path / "gsm.wav").write_bytes(bytes(data))
    _bad(tmp_path / "gsm.wav", r"GSM 6\.10")


def test_wrong_layout_for_a_call(tmp_path: Path) -> None:
    _pcm_wav(tmp_path / "mono.wav")
    with pytest.raises(BadRecording, match="stereo file") as info:
        measure_stereo(tmp_path / "mono.wav")
    assert info.value.path == tmp_path / "mono.wav"
    _pcm_wav(tmp_path / "stereo.wav", channels=2)
    with pytest.raises(BadRecording, match="one mono file per party"):
        measure_pair(tmp_path / "stereo.wav", tmp_path / "mono.wav")
    write_wav(tmp_path / "wide.wav", np.zeros(16000, np.int16), 16000)
    with pytest.raises(
        BadRecording, match=re.escape("16000 Hz, but the agent's file mono.wav is 8000 Hz")
    ):
        measure_pair(tmp_path / "mono.wav", tmp_path / "wide.wav")
    (tmp_path / "broken.wav").write_bytes(b"")
    with pytest.raises(BadRecording, match=re.escape("broken.wav: empty file")):
        measure_pair(tmp_path / "mono.wav", tmp_path / "broken.wav")


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    samples = rng.integers(-32768, 32767, size=(1001, 2), dtype=np.int16)
    write_wav(tmp_path / "x.wav", samples, RATE)
    wav = read_wav(tmp_path / "x.wav")
    assert (wav.rate, wav.channels, wav.frames) == (RATE, 2, 1001)
    assert np.array_equal(wav.samples, samples)
    with wave.open(str(tmp_path / "x.wav")) as w:  # the standard library agrees
        assert (w.getnchannels(), w.getsampwidth(), w.getnframes()) == (2, 2, 1001)
