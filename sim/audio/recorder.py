"""The simulator's MixMonitor: a real WAV file for every call the simulated PBX records.

`sim.asterisk.pbx` calls `start()` where its dialplan runs MixMonitor, `bridged()` when the
channel joins the agent, and `stop()` when it hangs up. As with the dialplan's option `b`, the
recording holds the simulated time from the bridge to the hangup; a call never bridged gives a
WAV with no audio (Asterisk opens the file when MixMonitor starts). The call's
content is drawn from a seed of (PBX seed, number, attempt), as `SeededDebtors` draws its fate:
its language, and for a person who talks, a scripted violation at `CallMix.violation_rate`.
A machine gets a voicemail greeting and the agent's message; a short call a few words.

Files are written under `root`, never where Asterisk would write them: a path in Asterisk's
monitor folder (`PbxConfig.monitor_dir`, where relative names go) is re-rooted to
`root/<the rest>`; a path already under `root` is kept (the dialer's `recording_dir` set to the
same folder makes MIXMONITOR_FILENAME the real file); any other absolute path lands at
`root/<path without its leading />`.

Composing and writing run in a worker process (`python -m sim.audio.worker`, started at the
first recording and fed one JSON line per call), off the event loop and off its GIL: at the
demo's x100 a 5 ms stall is half a simulated second of the PBX's timing. `drain()` waits for
the files of the calls that have ended (`Pbx.wait_idle` does); `close()` lets the worker finish
and stops it. A worker whose pipe closes still writes what it was given, so stopping the
simulator loses no recording of a call that had ended.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import random
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import sim
from sim.audio.compose import CallKind, CallSpec, Rule, compose_call
from sim.audio.corpus import Corpus
from sim.audio.errors import AudioError
from sim.audio.files import Layout, write_call
from sim.behaviour import DebtorFate, Outcome

log = logging.getLogger(__name__)

# Violations drawn for a person who talks (missing disclosure included).
DRAWN_RULES: tuple[Rule, ...] = tuple(Rule)


@dataclass(frozen=True, slots=True)
class CallMix:
    """What the simulated recordings hold (`PbxConfig.call_audio`)."""

    # Share of conversations with a scripted violation, drawn evenly among the rules.
    violation_rate: float = 0.10
    # (script language, weight): which language each call is in.
    languages: tuple[tuple[str, float], ...] = (("en", 0.75), ("zh", 0.25))
    # rt: MixMonitor's r()/t() files + the mixed one, as asterisk-conf records | stereo: agent
    # left, debtor right | mixed: mono
    layout: str = Layout.RT.value
    # Where espeak-ng renders are kept; empty: DIALER_SIM_AUDIO_CACHE, else
    # ~/.cache/collection-dialer/sim-audio.
    cache_dir: str = ""
    # Write `<stem>.truth.json` (what was said, by whom, when) beside each recording.
    sidecar: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.violation_rate <= 1.0:
            raise ValueError(f"violation_rate must be 0..1, got {self.violation_rate}")
        if not self.languages or any(w < 0 for _, w in self.languages):
            raise ValueError(f"languages need weights >= 0: {self.languages}")
        if sum(w for _, w in self.languages) <= 0:
            raise ValueError(f"languages need a positive total weight: {self.languages}")
        Layout(self.layout)  # ValueError for an unknown layout


@dataclass(slots=True)
class _Active:
    path: Path
    spec: CallSpec  # duration_s filled in when the recording stops
    bridged: float | None  # when audio began (MixMonitor's option b: once bridged), or never


def plan_call(
    seed: int, number: str, attempt: int, fate: DebtorFate | None, mix: CallMix
) -> CallSpec:
    """The content of one recorded attempt; depends only on its arguments (never call order).
    `duration_s` is left at 0: the recording's length is known when it ends."""
    digest = hashlib.blake2b(f"audio|{seed}|{number}|{attempt}".encode(), digest_size=8)
    rng = random.Random(int.from_bytes(digest.digest(), "big"))
    languages = [lang for lang, _ in mix.languages]
    language = rng.choices(languages, weights=[w for _, w in mix.languages])[0]
    violated = rng.random() < mix.violation_rate
    rule = rng.choice(DRAWN_RULES)
    outcome = fate.outcome if fate is not None else Outcome.HUMAN
    kind = {Outcome.MACHINE: CallKind.MACHINE, Outcome.SHORT_CALL: CallKind.SHORT}.get(
        outcome, CallKind.CONVERSATION
    )
    violation = rule if violated and kind is CallKind.CONVERSATION else None
    return CallSpec(language, kind, 0.0, violation, rng.getrandbits(63))


class CallRecorder:
    """Recordings in progress, keyed by the recorded channel's uniqueid."""

    def __init__(
        self,
        root: str | Path,
        *,
        monitor_dir: str = "/var/spool/asterisk/monitor",
        seed: int = 0,
        mix: CallMix | None = None,
        corpus: Corpus | None = None,
    ) -> None:
        self.root = Path(root).expanduser().resolve()
        self.monitor_dir = PurePosixPath(monitor_dir)
        self.seed = seed
        self.mix = mix or CallMix()
        self.layout = Layout(self.mix.layout)
        # Opened now, so that a missing espeak-ng or prompt package fails the start, loudly.
        self.corpus = corpus or Corpus.open(
            cache_dir=Path(self.mix.cache_dir) if self.mix.cache_dir else None
        )
        missing = [lang for lang, _ in self.mix.languages if lang not in self.corpus.scripts]
        if missing:
            raise AudioError(f"no script for language(s) {', '.join(missing)}")
        self.stats: Counter[str] = Counter()
        self._active: dict[str, _Active] = {}
        self._worker: _Worker | None = None

    # -- where ----------------------------------------------------------------------------

    def target(self, recording: str) -> Path | None:
        """Where the file Asterisk would write at `recording` goes (module docstring)."""
        if not recording:
            return None
        path = PurePosixPath(recording)
        if not path.is_absolute():
            rel = path
        elif path.is_relative_to(PurePosixPath(self.root.as_posix())):
            rel = path.relative_to(PurePosixPath(self.root.as_posix()))
        elif path.is_relative_to(self.monitor_dir):
            rel = path.relative_to(self.monitor_dir)
        else:
            rel = path.relative_to("/")
        if ".." in rel.parts or not rel.parts:
            log.warning("x sim recording: refusing the path %r", recording)
            return None
        return self.root.joinpath(*rel.parts)

    # -- from the PBX -----------------------------------------------------------------------

    def start(
        self,
        key: str,
        recording: str,
        *,
        number: str,
        attempt: int,
        fate: DebtorFate | None,
        at: float,
        bridged: bool = True,
    ) -> None:
        """MixMonitor started on channel `key`, writing `recording` (Asterisk's path); with
        `bridged` False its audio begins at `bridged()` (option b: only while bridged)."""
        path = self.target(recording)
        if path is None:
            self.stats["skipped"] += 1
            return
        spec = plan_call(self.seed, number, attempt, fate, self.mix)
        self._active[key] = _Active(path, spec, at if bridged else None)
        self.stats["started"] += 1

    def bridged(self, key: str, at: float) -> None:
        """Channel `key` entered a bridge: its recording's audio starts now (if not yet)."""
        active = self._active.get(key)
        if active is not None and active.bridged is None:
            active.bridged = at

    def stop(self, key: str, at: float) -> None:
        """The recorded channel hung up at simulated time `at`: write its file."""
        active = self._active.pop(key, None)
        if active is None:
            return
        # Never bridged: the file MixMonitor opened holds no audio (a header alone).
        duration = 0.0 if active.bridged is None else max(0.0, at - active.bridged)
        spec = dataclasses.replace(active.spec, duration_s=duration)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script, a test): write it here and now
            self._done(
                active.path, spec, _compose_and_write(self.corpus, active.path, spec, self.mix)
            )
            return
        job = {
            "path": str(active.path),
            "spec": spec.as_json(),
            "layout": self.mix.layout,
            "sidecar": self.mix.sidecar,
            "cache_dir": self.mix.cache_dir,
        }
        worker = self._worker
        if worker is None or not worker.usable(loop):
            if worker is not None:
                worker.close()
            try:
                worker = self._worker = _Worker.start(loop)
            except OSError as exc:
                self._done(active.path, spec, f"cannot start the worker: {exc}")
                return
        try:
            future = worker.submit(job)
        except OSError as exc:  # the worker is gone: this file is lost, the next gets a new one
            worker.close()
            self._worker = None
            self._done(active.path, spec, f"worker gone: {exc}")
            return
        future.add_done_callback(lambda f: self._finished(active.path, spec, f))

    def reset(self, at: float) -> None:
        """An Asterisk restart: the recordings in progress end where they are."""
        for key in list(self._active):
            self.stop(key, at)

    async def drain(self) -> None:
        """Return once every recording that has stopped is on disk (or has failed)."""
        if self._worker is not None:
            await self._worker.drain()

    def close(self) -> None:
        """Let the worker write what it was given, then stop it."""
        if self._worker is not None:
            self._worker.close(wait=True)
            self._worker = None

    def _finished(self, path: Path, spec: CallSpec, future: asyncio.Future[str | None]) -> None:
        if future.cancelled():
            self._done(path, spec, "cancelled")
        elif future.exception() is not None:
            self._done(path, spec, str(future.exception()))
        else:
            self._done(path, spec, future.result())

    def _done(self, path: Path, spec: CallSpec, failure: str | None) -> None:
        if failure is not None:
            self.stats["failed"] += 1
            log.error("x sim recording %s not written: %s", path, failure)
            return
        self.stats["written"] += 1
        log.info(
            "= sim recording %s: %.1f s, %s %s%s",
            path,
            spec.duration_s,
            spec.language,
            spec.kind.value,
            f", violation {spec.violation.value}" if spec.violation else "",
        )


def _compose_and_write(corpus: Corpus, path: Path, spec: CallSpec, mix: CallMix) -> str | None:
    """Write one call here, in this process; None when done, else why not."""
    try:
        write_call(compose_call(corpus, spec), path, Layout(mix.layout), sidecar=mix.sidecar)
    except (AudioError, OSError, ValueError) as exc:
        return str(exc)
    return None


class _Worker:
    """`python -m sim.audio.worker`, and the futures of the jobs it has not answered yet (it
    answers one JSON line per job, in order). Its stdout is watched with `loop.add_reader`:
    nothing owns a task, and the worker is a plain child process (not an asyncio subprocess,
    which the loop kills when it closes), so it still writes what it was given."""

    def __init__(self, loop: asyncio.AbstractEventLoop, process: subprocess.Popen[bytes]) -> None:
        self.loop = loop
        self.process = process
        self.pending: collections.deque[asyncio.Future[str | None]] = collections.deque()
        self.lost = False
        self._buffer = b""
        assert process.stdout is not None
        self._fd = process.stdout.fileno()
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._readable)

    @classmethod
    def start(cls, loop: asyncio.AbstractEventLoop) -> _Worker:
        # The worker imports this very copy of `sim`, installed or not.
        here = str(Path(sim.__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "sim.audio.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        return cls(loop, process)

    def usable(self, loop: asyncio.AbstractEventLoop) -> bool:
        return self.loop is loop and not self.lost and self.process.poll() is None

    def submit(self, job: dict[str, object]) -> asyncio.Future[str | None]:
        assert self.process.stdin is not None
        future: asyncio.Future[str | None] = self.loop.create_future()
        self.process.stdin.write((json.dumps(job, ensure_ascii=False) + "\n").encode("utf-8"))
        self.process.stdin.flush()
        self.pending.append(future)
        return future

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(str(exc))
            return
        if not data:
            self._lost("it exited")
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, _, self._buffer = self._buffer.partition(b"\n")
            if not self.pending:
                log.warning("x sim audio worker: a reply to no job: %r", line[:200])
                continue
            future = self.pending.popleft()
            try:
                error = json.loads(line)["error"]
            except (ValueError, KeyError, TypeError):
                error = f"unreadable reply {line[:200]!r}"
            if not future.done():
                future.set_result(None if error is None else str(error))

    def _lost(self, why: str) -> None:
        self.lost = True
        self.loop.remove_reader(self._fd)
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(AudioError(f"the audio worker is gone: {why}"))

    async def drain(self) -> None:
        while self.pending:
            await asyncio.gather(*list(self.pending), return_exceptions=True)

    def close(self, wait: bool = False) -> None:
        """EOF to the worker (it ends after its last job); with `wait`, until it has."""
        if not self.loop.is_closed():
            self.loop.remove_reader(self._fd)
        stdin = self.process.stdin
        if stdin is not None and not stdin.closed:
            with contextlib.suppress(OSError):  # it was gone already
                stdin.close()
        if wait:
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()  # unanswered replies: the worker writes on regardless
