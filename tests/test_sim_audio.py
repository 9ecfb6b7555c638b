"""Simulated call audio (sim/audio): the corpus, its ground truth, and the simulator's files.

Needs Debian's asterisk-core-sounds-en-wav and espeak-ng (.ci/run installs both): skips with
the reason where they are missing, fails instead under DIALER_REQUIRE_SERVICES=1. espeak-ng's
renders are cached (DIALER_SIM_AUDIO_CACHE or ~/.cache/collection-dialer/sim-audio).
"""

from __future__ import annotations

import asyncio
import json
import re
import wave
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from sim.asterisk.channels import Event
from sim.asterisk.pbx import AgiChannelView, OriginateRequest, Pbx, PbxConfig
from sim.audio import (
    SAMPLE_RATE,
    CallKind,
    CallMix,
    CallRecorder,
    CallSpec,
    Corpus,
    Layout,
    Rule,
    compose_call,
    plan_call,
    read_wav,
    rt_paths,
    sidecar_path,
    unavailable,
    write_call,
)
from sim.audio.script import Phrase
from sim.audio.sources import Espeak, RenderCache
from sim.behaviour import AgentModel, DebtorFate, Outcome
from tests.conftest import REQUIRE_SERVICES

SPEECH_DB = -40.0  # a turn's RMS is well above this (speech is at about -20 dBFS)
QUIET_DB = -50.0  # between turns: only the line's hiss (about -62 dBFS)...
FLOOR_DB = -80.0  # ...which is still there: never digital silence


@pytest.fixture(scope="module")
def corpus() -> Iterator[Corpus]:
    reason = unavailable()
    if reason is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{reason} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(reason)
    yield Corpus.open()


def _db(samples: npt.NDArray[np.int16]) -> float:
    if len(samples) == 0:
        return -200.0
    rms = float(np.sqrt(np.mean((samples.astype(np.float64) / 32768.0) ** 2)))
    return 20 * np.log10(max(rms, 1e-10))


def _window(track: npt.NDArray[np.int16], start: float, end: float) -> npt.NDArray[np.int16]:
    return track[int(start * SAMPLE_RATE) : int(end * SAMPLE_RATE)]


def _quiet_spans(
    turns: list[dict[str, Any]], channel: str, duration: float
) -> list[tuple[float, float]]:
    """Stretches of at least 0.3 s where the sidecar has nobody on `channel`."""
    spans: list[tuple[float, float]] = []
    at = 0.0
    for turn in sorted((t for t in turns if t["channel"] == channel), key=lambda t: t["start_s"]):
        if turn["start_s"] - at >= 0.3:
            spans.append((at + 0.05, turn["start_s"] - 0.05))
        at = max(at, turn["end_s"])
    if duration - at >= 0.3:
        spans.append((at + 0.05, duration - 0.05))
    return spans


def _check_energy(truth: dict[str, Any], tracks: dict[str, npt.NDArray[np.int16]]) -> None:
    """Speech where the sidecar says someone speaks, only hiss where it says nobody does."""
    turns = truth["utterances"]
    spoken = [t for t in turns if not t["truncated"] and t["end_s"] - t["start_s"] >= 0.3]
    assert spoken
    for turn in spoken:
        level = _db(_window(tracks[turn["channel"]], turn["start_s"], turn["end_s"]))
        assert level > SPEECH_DB, (turn, level)
    for channel, track in tracks.items():
        spans = _quiet_spans(turns, channel, truth["duration_s"])
        assert spans, channel
        for start, end in spans:
            level = _db(_window(track, start, end))
            assert FLOOR_DB < level < QUIET_DB, (channel, start, end, level)


def _read_call(path: Path) -> tuple[dict[str, Any], dict[str, npt.NDArray[np.int16]]]:
    """A stereo call, or the r()/t() layout the simulated PBX writes (as asterisk-conf does)."""
    receive, transmit = rt_paths(path)
    if receive.exists():
        truth = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
        assert truth["layout"] == "rt"
        assert truth["files"] == {
            "mixed": path.name,
            "debtor": receive.name,
            "agent": transmit.name,
        }
        sides = {}
        for party, name in (("agent", transmit), ("debtor", receive), ("mixed", path)):
            with wave.open(str(name), "rb") as wav:
                assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
            sides[party], rate = read_wav(name)
            assert rate == SAMPLE_RATE
            assert abs(len(sides[party]) - truth["duration_s"] * SAMPLE_RATE) <= 4
        return truth, {"agent": sides["agent"], "debtor": sides["debtor"]}
    with wave.open(str(path), "rb") as wav:  # a valid WAV by the standard library's reader
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (2, 2, 8000)
    data, rate = read_wav(path)
    assert rate == SAMPLE_RATE and data.ndim == 2
    truth = json.loads(sidecar_path(path).read_text(encoding="utf-8"))
    assert truth["channels"] == ["agent", "debtor"]
    assert abs(len(data) - truth["duration_s"] * SAMPLE_RATE) <= 4  # the sidecar says ms
    return truth, {"agent": data[:, 0], "debtor": data[:, 1]}


# -- the corpus ---------------------------------------------------------------------------


def test_a_call_on_disk_matches_its_sidecar(corpus: Corpus, tmp_path: Path) -> None:
    spec = CallSpec("en", CallKind.CONVERSATION, 75.0, None, seed=11)
    written = write_call(compose_call(corpus, spec), tmp_path / "call.wav")
    assert written == [tmp_path / "call.wav", tmp_path / "call.truth.json"]
    truth, tracks = _read_call(tmp_path / "call.wav")
    assert truth["duration_s"] == 75.0 and truth["language"] == "en"
    assert truth["violations"] == [] and truth["scripted_violation"] is None
    _check_energy(truth, tracks)
    # Identity, then the mini-Miranda, both on the agent's side and early.
    assert "Acme Recovery Services" in truth["identity"]["text"]
    disclosure = truth["disclosure"]
    assert disclosure["channel"] == "agent" and disclosure["end_s"] < 30
    assert "attempt to collect a debt" in disclosure["text"]
    assert "any information obtained will be used for that purpose" in disclosure["text"].lower()
    speakers = {t["speaker"] for t in truth["utterances"]}
    assert speakers == {"agent", "debtor"}


def test_core_prompts_are_the_human_recordings_with_their_listed_words(corpus: Corpus) -> None:
    script = corpus.script("en")
    hello = corpus.speak(Phrase.parse("[hello]"), "en-us+f3", script)
    assert hello.text == "Hello." and hello.sources == ("core:hello",)
    assert 0.3 < hello.seconds < 2.0
    # The listing's stage directions are not words.
    assert corpus.sounds.text("vm-intro").endswith("press the pound key.")
    amount = corpus.speak(
        Phrase.parse("[digits/2] [digits/hundred] [digits/dollars]?"), "en-us+f3", script
    )
    assert amount.text == "two hundred dollars?"
    assert amount.sources == ("core:digits/2", "core:digits/hundred", "core:digits/dollars")
    beep = corpus.speak(Phrase.parse("[beep]"), "en-us+f3", script)
    assert beep.tone and beep.text == ""


def test_mandarin_renders(corpus: Corpus, tmp_path: Path) -> None:
    raw = corpus.tts.render("我们会起诉你", "cmn")
    assert len(raw) > 0.5 * SAMPLE_RATE and float(np.max(np.abs(raw))) > 0.05
    spec = CallSpec("zh", CallKind.CONVERSATION, 90.0, Rule.THREAT, seed=3)
    write_call(compose_call(corpus, spec), tmp_path / "zh.wav")
    truth, tracks = _read_call(tmp_path / "zh.wav")
    assert truth["language"] == "zh"
    assert all(re.search(r"[\u4e00-\u9fff]", t["text"]) for t in truth["utterances"])
    assert all(s.startswith("espeak:cmn") for t in truth["utterances"] for s in t["sources"])
    assert "催收" in truth["disclosure"]["text"]
    (threat,) = truth["violations"]
    assert threat["rule"] == "threat" and threat["speaker"] == "agent"
    assert "起诉" in threat["text"] or "派人上门" in threat["text"]
    _check_energy(truth, tracks)


@pytest.mark.parametrize("language", ["en", "zh"])
@pytest.mark.parametrize("rule", list(Rule))
def test_each_violation_is_in_the_sidecar_where_it_is_said(
    corpus: Corpus, rule: Rule, language: str
) -> None:
    call = compose_call(corpus, CallSpec(language, CallKind.CONVERSATION, 60.0, rule, seed=5))
    (found,) = call.violations
    assert found.rule is rule and found.speaker == "agent"
    assert 0 < found.start_s < found.end_s <= 40.0
    turn = next(u for u in call.utterances if u.start_s == found.start_s and u.speaker == "agent")
    assert turn.text == found.text and not turn.truncated
    if rule is Rule.MISSING_DISCLOSURE:
        assert "balance" in turn.tags and not call.tagged("disclosure", whole=False)
    else:
        assert rule.value in turn.tags
    if rule is Rule.THIRD_PARTY_DISCLOSURE:
        assert any("third_party" in u.tags for u in call.utterances if u.speaker == "debtor")


def test_the_violation_phrase_is_the_audio_at_its_seconds(corpus: Corpus) -> None:
    call = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 60.0, Rule.THREAT, seed=8))
    (found,) = call.violations
    assert "arrested" in found.text
    script = corpus.script("en")
    phrase = next(
        p
        for p in script.pool("violation", "threat")
        if corpus.speak(p, call.voices["agent"], script).text == found.text
    )
    clip = corpus.speak(phrase, call.voices["agent"], script).samples
    heard = call.agent[round(found.start_s * SAMPLE_RATE) :][: len(clip)].astype(np.float64)
    assert len(heard) == len(clip)
    assert abs(found.end_s - found.start_s - len(clip) / SAMPLE_RATE) < 0.002
    match = float(np.corrcoef(heard, clip.astype(np.float64))[0, 1])
    assert match > 0.99  # the phrase itself, under a hiss 40 dB down


def test_the_same_spec_gives_the_same_call(corpus: Corpus) -> None:
    spec = CallSpec("en", CallKind.CONVERSATION, 40.0, Rule.INSULT, seed=21)
    one, two = compose_call(corpus, spec), compose_call(corpus, spec)
    assert np.array_equal(one.agent, two.agent) and np.array_equal(one.debtor, two.debtor)
    assert one.truth() == two.truth()
    other = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 40.0, Rule.INSULT, 22))
    assert not np.array_equal(one.agent, other.agent)


def test_the_length_is_the_talk_time(corpus: Corpus) -> None:
    short = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 6.5, None, seed=2))
    assert len(short.agent) == len(short.debtor) == 52000
    assert short.utterances[-1].truncated and short.utterances[-1].end_s == 6.5
    assert short.violations == ()
    long = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 400.0, None, seed=2))
    assert long.duration_s == 400.0
    last = long.utterances[-1]
    assert "closing" in last.tags and 400.0 - 3.0 < last.end_s <= 400.0
    assert len(long.tagged("payment")) >= 10  # the middle is talk, not one long pause
    gaps = np.diff([u.start_s for u in long.utterances])
    assert float(np.max(gaps)) < 40.0
    empty = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 0.0, None, seed=2))
    assert empty.duration_s == 0.0 and empty.utterances == ()


def test_a_machine_greets_beeps_and_the_agent_leaves_a_message(corpus: Corpus) -> None:
    call = compose_call(corpus, CallSpec("en", CallKind.MACHINE, 30.0, None, seed=4))
    greeting, message = call.utterances
    assert greeting.speaker == "machine" and greeting.channel == "debtor"
    assert message.speaker == "agent" and "voicemail" in message.tags
    assert message.start_s > greeting.end_s
    assert "debt" not in message.text.lower()  # the limited-content message


def test_renders_come_from_the_cache_the_second_time(tmp_path: Path, corpus: Corpus) -> None:
    spec = CallSpec("en", CallKind.CONVERSATION, 30.0, None, seed=9)
    first = Corpus(corpus.sounds, Espeak.find(RenderCache(tmp_path)), corpus.scripts)
    made = compose_call(first, spec)
    assert first.tts.renders > 0
    assert list(tmp_path.glob("*/*.wav"))
    second = Corpus(corpus.sounds, Espeak.find(RenderCache(tmp_path)), corpus.scripts)
    again = compose_call(second, spec)
    assert second.tts.renders == 0
    assert np.array_equal(made.agent, again.agent)


def test_layouts_rt_and_mixed(corpus: Corpus, tmp_path: Path) -> None:
    call = compose_call(corpus, CallSpec("en", CallKind.CONVERSATION, 20.0, None, seed=6))
    files = write_call(call, tmp_path / "rt.wav", Layout.RT)
    receive, transmit = rt_paths(tmp_path / "rt.wav")
    # The parties first: whoever sees the mixed file sees them too.
    assert files == [receive, transmit, tmp_path / "rt.wav", tmp_path / "rt.truth.json"]
    debtor, _ = read_wav(receive)
    agent, _ = read_wav(transmit)
    mixed, _ = read_wav(tmp_path / "rt.wav")
    assert np.array_equal(debtor, call.debtor) and np.array_equal(agent, call.agent)
    assert mixed.ndim == 1 and len(mixed) == len(agent)
    truth = json.loads((tmp_path / "rt.truth.json").read_text(encoding="utf-8"))
    assert truth["files"] == {"mixed": "rt.wav", "debtor": receive.name, "agent": transmit.name}
    assert write_call(call, tmp_path / "m.wav", Layout.MIXED, sidecar=False) == [tmp_path / "m.wav"]


# -- what the simulator records -------------------------------------------------------------


def test_the_plan_depends_on_number_and_attempt_only() -> None:
    human = DebtorFate(Outcome.HUMAN, 2.0, 60.0, 8.0, "HUMAN", "HUMAN-808-800", 1.8)
    machine = DebtorFate(Outcome.MACHINE, 2.0, 25.0, 8.0, "NOTSURE", "TOOLONG-5000", 5.0)
    mix = CallMix()
    assert plan_call(1, "15550001", 1, human, mix) == plan_call(1, "15550001", 1, human, mix)
    plans = [plan_call(1, f"1555{i:07d}", 1, human, mix) for i in range(3000)]
    rate = sum(p.violation is not None for p in plans) / len(plans)
    assert 0.08 < rate < 0.12
    assert {p.violation for p in plans if p.violation} == set(Rule)
    share = sum(p.language == "zh" for p in plans) / len(plans)
    assert 0.20 < share < 0.30
    assert {p.kind for p in plans} == {CallKind.CONVERSATION}
    machines = [plan_call(1, f"1555{i:07d}", 1, machine, mix) for i in range(300)]
    assert {(p.kind, p.violation) for p in machines} == {(CallKind.MACHINE, None)}


def test_asterisk_paths_are_rerooted_under_the_recordings_dir(
    corpus: Corpus, tmp_path: Path
) -> None:
    recorder = CallRecorder(tmp_path, corpus=corpus)
    assert recorder.target("/var/spool/asterisk/monitor/c-1/a.wav") == tmp_path / "c-1/a.wav"
    assert recorder.target(f"{tmp_path}/c-1/a.wav") == tmp_path / "c-1/a.wav"
    assert recorder.target("/srv/rec/c-1/a.wav") == tmp_path / "srv/rec/c-1/a.wav"
    assert recorder.target("c-1/a.wav") == tmp_path / "c-1/a.wav"
    assert recorder.target("/var/spool/asterisk/monitor/../../etc/x.wav") is None
    assert recorder.target("") is None


AGENT = "Local/agent1@agents"
RECORDING = "campaign-1/2025/01/02/attempt-7-1700000000.0.wav"


def _connect_script(variables: dict[str, str]) -> Any:
    """A stand-in for the dialer's FastAGI `connect`: route the call to an agent, recorded."""

    def runner(
        url: str, channel: AgiChannelView, on_command: Any, command_ids: Iterator[int]
    ) -> Coroutine[Any, Any, str]:
        async def run() -> str:
            for name, value in variables.items():
                channel.set_variable(name, value)
            return "SUCCESS"

        return run()

    return runner


async def _one_recorded_call(
    config: PbxConfig, agents: AgentModel | None = None
) -> tuple[Pbx, list[Event]]:
    events: list[Event] = []
    variables = {
        "ROUTE": "dial",
        "TARGET_CHANNEL": AGENT,
        "RECORD": "1",
        "RECORDING_FILE": RECORDING,
    }
    pbx = Pbx(events.append, config=config, agents=agents, agi_runner=_connect_script(variables))
    request = OriginateRequest(
        channel="Local/15550001@debtor-sim",  # by suffix: a person answers, talks 18 s
        variables=(("DIALER_AGI", "agi://127.0.0.1:4573"), ("USE_AMD", "0")),
    )
    async with asyncio.timeout(30):
        result = await pbx.originate(request)
        assert result.success
        await asyncio.sleep(0.01)
        await pbx.wait_idle()  # the call is over and its files are written
    if pbx.recorder is not None:
        pbx.recorder.close()  # the worker process ends
    return pbx, events


def _var(events: list[Event], name: str) -> str:
    for ev in events:
        fields = dict(ev)
        if fields.get("Event") == "VarSet" and fields.get("Variable") == name:
            return fields["Value"]
    raise AssertionError(f"no VarSet {name}")


async def test_the_simulator_writes_a_wav_for_a_recorded_call(
    corpus: Corpus, tmp_path: Path
) -> None:
    root = tmp_path / "recordings"
    pbx, events = await _one_recorded_call(
        PbxConfig(time_scale=100.0, recordings_dir=str(root), seed=3)
    )
    assert pbx.outcomes["completed"] == 1
    # Asterisk's own word for the file is unchanged; the simulator's copy is under its root.
    assert _var(events, "MIXMONITOR_FILENAME") == f"/var/spool/asterisk/monitor/{RECORDING}"
    path = root / RECORDING
    truth, tracks = _read_call(path)
    # Audio from the bridge (MixMonitor's option b) to the hangup: the debtor talks 18 s;
    # simulated time runs on the wall clock, so allow some slack.
    assert 17.0 < truth["duration_s"] < 19.5
    assert truth["kind"] == "conversation"
    _check_energy(truth, tracks)
    assert pbx.recorder is not None and pbx.recorder.stats["written"] == 1
    # As asterisk-conf's MixMonitor r()/t(): the debtor, the agent, the mixed call.
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "attempt-7-1700000000.0-in.wav",
        "attempt-7-1700000000.0-out.wav",
        "attempt-7-1700000000.0.truth.json",
        "attempt-7-1700000000.0.wav",
    ]
    mixmonitor = [dict(e) for e in events if dict(e).get("Application") == "MixMonitor"]
    stem = RECORDING.removesuffix(".wav")  # relative, as the dialer set it
    assert [e.get("AppData") for e in mixmonitor] == [
        f"{stem}.wav,br({stem}-in.wav)t({stem}-out.wav)"
    ]


async def test_a_call_never_bridged_leaves_a_wav_without_audio(
    corpus: Corpus, tmp_path: Path
) -> None:
    """The debtor (patience 8 s) is gone before the agent answers (30 s): MixMonitor opened the
    file at its start and, with option b, wrote nothing into it."""
    pbx, _ = await _one_recorded_call(
        PbxConfig(time_scale=100.0, recordings_dir=str(tmp_path)), AgentModel(answer_secs=30.0)
    )
    assert pbx.outcomes["hangup_during_agent_dial"] == 1
    for name in (tmp_path / RECORDING, *rt_paths(tmp_path / RECORDING)):
        data, rate = read_wav(name)
        assert rate == SAMPLE_RATE and data.shape == (0,), name
    truth = json.loads(sidecar_path(tmp_path / RECORDING).read_text(encoding="utf-8"))
    assert truth["duration_s"] == 0.0 and truth["utterances"] == []


async def test_no_recordings_dir_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    pbx, events = await _one_recorded_call(PbxConfig(time_scale=100.0))
    assert pbx.recorder is None and pbx.outcomes["completed"] == 1
    assert _var(events, "MIXMONITOR_FILENAME") == f"/var/spool/asterisk/monitor/{RECORDING}"
    assert list(tmp_path.iterdir()) == []
