"""The recording pipeline end to end on simulated calls: VAD keeps silence from the recogniser,
each party's words land in the store at their second, search finds them (English and Chinese)
and QA flags the scripted violation.

The recogniser here is an oracle that says what the call's ground truth (the simulator's
sidecar) says was spoken in the audio it is handed: it tests the pipeline's plumbing (offsets,
parties, storage, search, QA) apart from recognition accuracy, which `dialer bench asr`
measures. Skips without the simulator's audio sources (espeak-ng, the core sounds)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from asr.models import Segment, Word
from dialer.importer import import_csv
from dialer.portfolio import write_sample_portfolio
from dialer.store import attempts as repo
from dialer.store.db import Store, open_store
from dialer.store.models import Party
from recording.pipeline import process_recording
from recording.qa import load_rules
from recording.search import search
from sim.audio import CallKind, CallSpec, Corpus, Layout, Rule, compose_call, write_call
from sim.audio.errors import AudioUnavailable
from tests.conftest import REQUIRE_SERVICES


class Oracle:
    """Hears the sidecar's utterances whose middle lies in the piece of audio it is handed (the
    VAD cuts each channel where its party speaks, so each party's words land on their side)."""

    engine = "oracle"
    model = "sidecar"
    language = "und"
    sample_rate = 8000

    def __init__(self, truth: dict[str, object]) -> None:
        self.truth = truth

    def transcribe(
        self, samples: np.ndarray, sample_rate: int, *, offset_s: float = 0.0
    ) -> list[Segment]:
        start, end = offset_s, offset_s + len(samples) / sample_rate
        out = []
        for u in self.truth["utterances"]:  # type: ignore[attr-defined]
            if not start <= (u["start_s"] + u["end_s"]) / 2 < end:
                continue
            words = u["text"].split()
            step = (u["end_s"] - u["start_s"]) / len(words)
            out.append(
                Segment(
                    start_s=u["start_s"],
                    end_s=u["end_s"],
                    text=u["text"],
                    words=tuple(
                        Word(w, u["start_s"] + i * step, u["start_s"] + (i + 1) * step, 0.9)
                        for i, w in enumerate(words)
                    ),
                    confidence=0.9,
                )
            )
        return out


@pytest.fixture(scope="module")
def corpus() -> Corpus:
    try:
        return Corpus.open()
    except AudioUnavailable as exc:
        if REQUIRE_SERVICES:
            pytest.fail(f"{exc} and DIALER_REQUIRE_SERVICES=1")
        pytest.skip(str(exc))


def _attempt(store: Store, tmp_path: Path) -> tuple[int, int]:
    portfolio = tmp_path / "p.csv"
    write_sample_portfolio(portfolio, debtors=3, seed=1)
    import_csv(store, portfolio, tenant="default")
    tenant_id = repo.ensure_tenant(store, "default")
    campaign_id = repo.ensure_campaign(store, tenant_id, "qa", "progressive")
    candidate = repo.next_candidates(store, campaign_id, limit=1)[0]
    (attempt_id,) = repo.create_attempts(
        store,
        [
            repo.NewAttempt(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                debtor_id=candidate.debtor_id,
                debt_id=candidate.debt_id,
                phone_id=candidate.phone_id,
                node_id="t",
                server="sim",
                uniqueid=f"dlr-t-{tmp_path.name[-8:]}",
                dialed_at=datetime.now(UTC),
                reservation_id=None,
            )
        ],
    )
    return tenant_id, attempt_id


def _process(
    corpus: Corpus, store: Store, tmp_path: Path, spec: CallSpec, rules: str
) -> tuple[int, int, dict[str, object], object]:
    tenant_id, attempt_id = _attempt(store, tmp_path)
    call = compose_call(corpus, spec)
    wav = tmp_path / f"call-{spec.language}.wav"
    write_call(call, wav, Layout.STEREO)
    truth = json.loads(wav.with_suffix(".truth.json").read_text(encoding="utf-8"))
    oracle = Oracle(truth)
    done = process_recording(
        store,
        oracle,  # type: ignore[arg-type]
        load_rules(rules),
        tenant_id=tenant_id,
        attempt_id=attempt_id,
        recording_id=None,
        path=wav,
        now=datetime.now(UTC),
    )
    return tenant_id, attempt_id, truth, done


def test_a_threat_is_found_at_its_second_and_silence_never_reaches_the_recogniser(
    corpus: Corpus, tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        spec = CallSpec(language="en", duration_s=45, violation=Rule.THREAT, seed=4)
        tenant_id, attempt_id, truth, done = _process(
            corpus, store, tmp_path, spec, "us-collections"
        )
        assert [t.party for t in done.transcripts] == [Party.AGENT, Party.DEBTOR]
        # VAD: far less than the two channels' full length went to the recogniser.
        assert done.speech_s < 0.8 * 2 * done.audio_s
        violations = truth["violations"]
        assert violations, truth
        said_at = violations[0]["start_s"]
        forbidden = [f for f in done.qa.flags if f.kind.value == "forbidden"]
        assert forbidden, done.qa.flags
        assert any(abs(f.at_s - said_at) < 5.0 for f in forbidden), (forbidden, said_at)
        # Search finds the threat's words at the second they were said.
        first_word = violations[0]["text"].split()[-1].strip(".,!?")
        hits = search(store, tenant_id, first_word)
        assert any(h.attempt_id == attempt_id for h in hits), hits
    finally:
        store.close()


def test_chinese_calls_are_searchable_by_two_characters(
    corpus: Corpus, tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        spec = CallSpec(language="zh", duration_s=45, seed=2)
        tenant_id, attempt_id, truth, _done = _process(
            corpus, store, tmp_path, spec, "cn-collections"
        )
        spoken = " ".join(u["text"] for u in truth["utterances"])  # type: ignore[attr-defined]
        assert "还款" in spoken, spoken
        assert [h.attempt_id for h in search(store, tenant_id, "还款")][:1] == [attempt_id]
    finally:
        store.close()


def test_a_clean_call_raises_no_forbidden_flag(
    corpus: Corpus, tmp_path: Path, database_url: str
) -> None:
    store = open_store(database_url)
    try:
        spec = CallSpec(language="en", kind=CallKind.CONVERSATION, duration_s=45, seed=9)
        _tenant_id, _attempt_id, truth, done = _process(
            corpus, store, tmp_path, spec, "us-collections"
        )
        assert truth["violations"] == []
        assert [f for f in done.qa.flags if f.kind.value == "forbidden"] == []
    finally:
        store.close()
