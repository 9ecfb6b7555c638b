"""Where the simulated calls' speech comes from, as 8 kHz mono float samples in [-1, 1].

- `CoreSounds`: Debian's `asterisk-core-sounds-en-wav`, human-recorded telephone prompts (8 kHz,
  16-bit) and their texts from the package's listing (`core-sounds-en.txt`).
- `Espeak`: espeak-ng (`-v en-us`, `-v cmn` Mandarin, with `+f3`-style variants), rendered to a
  WAV at its own rate (22.05 kHz) and resampled to 8 kHz with soxr.
- `RenderCache`: espeak-ng's renders on disk, keyed by engine version, voice, speed and text,
  so a test run or the demo renders each phrase once per machine.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soxr  # type: ignore[import-untyped, unused-ignore]  # no stubs (see README)

from sim.audio.errors import AudioError, AudioUnavailable

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000  # telephone audio, what MixMonitor writes for G.711 calls
Samples = npt.NDArray[np.float32]

SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en")
# Debian ships the prompts' texts as documentation; Asterisk's own tarballs put the listing
# beside the sounds.
LISTINGS = (
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
    Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt"),
)
SOUNDS_PACKAGE = "asterisk-core-sounds-en-wav"
CACHE_ENV = "DIALER_SIM_AUDIO_CACHE"
# Bump when what is stored under a key changes (the render's processing, not its text).
CACHE_VERSION = 1


def read_wav(path: Path | io.BytesIO) -> tuple[npt.NDArray[np.int16], int]:
    """A 16-bit PCM WAV as (samples, rate); samples are (n,) for mono, (n, channels) else."""
    try:
        with wave.open(path if isinstance(path, io.BytesIO) else str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise AudioError(f"{path}: {8 * wav.getsampwidth()}-bit samples, want 16-bit")
            channels, rate = wav.getnchannels(), wav.getframerate()
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.int16)
    except (wave.Error, EOFError) as exc:
        raise AudioError(f"{path}: not a PCM WAV file ({exc})") from exc
    if channels > 1:
        data = data[: len(data) - len(data) % channels].reshape(-1, channels)
    return data, rate


def write_wav(path: Path, samples: npt.NDArray[np.int16], rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM: `samples` (n,) is mono, (n, channels) interleaved. Atomic: the file
    appears whole under its name or not at all (a temporary name in the same folder first)."""
    channels = 1 if samples.ndim == 1 else int(samples.shape[1])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    done = False
    try:
        with os.fdopen(fd, "wb") as raw, wave.open(raw, "wb") as wav:
            wav.setnchannels(channels)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes(np.ascontiguousarray(samples, dtype="<i2").tobytes())
        os.replace(tmp, path)
        done = True
    finally:
        if not done:
            Path(tmp).unlink(missing_ok=True)


def to_float(samples: npt.NDArray[np.int16]) -> Samples:
    return (samples.astype(np.float32) / 32768.0).astype(np.float32)


def to_int16(samples: Samples) -> npt.NDArray[np.int16]:
    return np.clip(np.round(samples * 32768.0), -32768, 32767).astype(np.int16)


def resample(samples: Samples, rate: int, to: int = SAMPLE_RATE) -> Samples:
    if rate == to:
        return samples
    out = soxr.resample(samples, rate, to, quality="HQ")
    return np.asarray(out, dtype=np.float32)


def trim(samples: Samples, floor_db: float = -45.0, margin_s: float = 0.02) -> Samples:
    """Drop leading and trailing near-silence (10 ms frames under `floor_db` dBFS RMS), so
    that an utterance's times in the sidecar are where its sound is."""
    frame = SAMPLE_RATE // 100
    n = len(samples) // frame
    if n == 0:
        return samples
    frames = samples[: n * frame].reshape(n, frame)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > 10 ** (floor_db / 20))
    if len(loud) == 0:
        return samples[:0]
    margin = int(margin_s * SAMPLE_RATE)
    start = max(0, int(loud[0]) * frame - margin)
    end = min(len(samples), (int(loud[-1]) + 1) * frame + margin)
    return samples[start:end]


def normalise(samples: Samples, rms_db: float = -20.0, peak: float = 0.89) -> Samples:
    """Speech at a telephone level: `rms_db` dBFS RMS, never above `peak`."""
    if len(samples) == 0:
        return samples
    rms = float(np.sqrt(np.mean(samples.astype(np.float64) ** 2)))
    top = float(np.max(np.abs(samples)))
    if rms <= 0 or top <= 0:
        return samples
    gain = min(10 ** (rms_db / 20) / rms, peak / top)
    return (samples * gain).astype(np.float32)


def clean_prompt_text(text: str) -> str:
    """A listing line's words as spoken: stage directions in [] or () dropped."""
    text = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@dataclass(slots=True)
class CoreSounds:
    """The English core prompts: `load(name)` for the audio, `text(name)` for what is said."""

    directory: Path
    texts: dict[str, str]
    _cache: dict[str, Samples] = field(default_factory=dict)

    @classmethod
    def open(cls, directory: Path | None = None, listing: Path | None = None) -> CoreSounds:
        directory = directory or SOUNDS_DIR
        if not (directory / "hello.wav").is_file():
            raise AudioUnavailable(
                f"the Asterisk core prompts are not in {directory} "
                f"(Debian: apt-get install {SOUNDS_PACKAGE})"
            )
        candidates = [listing] if listing else [directory / "core-sounds-en.txt", *LISTINGS]
        for path in candidates:
            if path is not None and path.is_file():
                return cls(directory, parse_listing(path))
        raise AudioUnavailable(
            f"the prompts' listing core-sounds-en.txt was not found beside {directory} nor in "
            f"/usr/share/doc/asterisk-core-sounds-en (Debian: apt-get install {SOUNDS_PACKAGE})"
        )

    def __contains__(self, name: str) -> bool:
        return name in self.texts and (self.directory / f"{name}.wav").is_file()

    def text(self, name: str) -> str:
        return clean_prompt_text(self.texts[name])

    def load(self, name: str) -> Samples:
        cached = self._cache.get(name)
        if cached is None:
            path = self.directory / f"{name}.wav"
            if name not in self:
                raise AudioError(f"no core prompt {name!r} in {self.directory}")
            data, rate = read_wav(path)
            if data.ndim > 1:
                data = data[:, 0]
            cached = resample(to_float(data), rate)
            self._cache[name] = cached
        return cached


def parse_listing(path: Path) -> dict[str, str]:
    """`name: text` per line (`;` starts a comment), as in core-sounds-en.txt."""
    raw = path.read_bytes()
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    texts: dict[str, str] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line or line.startswith(";") or ":" not in line:
            continue
        name, _, text = line.partition(":")
        texts[name.strip()] = text.strip()
    return texts


def default_cache_dir() -> Path:
    """DIALER_SIM_AUDIO_CACHE, else ~/.cache/collection-dialer/sim-audio (XDG_CACHE_HOME)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "collection-dialer" / "sim-audio"


@dataclass(frozen=True, slots=True)
class RenderCache:
    """Renders on disk as 8 kHz 16-bit WAV files named by the SHA-256 of what made them."""

    directory: Path

    @staticmethod
    def key(*parts: object) -> str:
        blob = json.dumps([CACHE_VERSION, *parts], ensure_ascii=False, sort_keys=True)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.wav"

    def get(self, key: str) -> Samples | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data, rate = read_wav(path)
        except AudioError:
            log.warning("x sim audio cache: %s is unreadable, rendering it again", path)
            return None
        if rate != SAMPLE_RATE or data.ndim != 1:
            return None
        return to_float(data)

    def put(self, key: str, samples: Samples) -> None:
        try:
            write_wav(self._path(key), to_int16(samples))
        except OSError as exc:  # a read-only or full disk only costs the next run a render
            log.warning("x sim audio cache: cannot write %s: %s", self._path(key), exc)


@dataclass(slots=True)
class Espeak:
    """espeak-ng as a subprocess; every render goes through the cache when one is given."""

    binary: str
    version: str
    cache: RenderCache | None = None
    renders: int = 0  # how many times espeak-ng actually ran (the cache's misses)

    @classmethod
    def find(cls, cache: RenderCache | None = None) -> Espeak:
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise AudioUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        try:
            out = subprocess.run(
                [binary, "--version"], capture_output=True, text=True, timeout=30, check=True
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise AudioUnavailable(f"espeak-ng does not run: {exc}") from exc
        return cls(binary, out.strip().splitlines()[0] if out.strip() else "espeak-ng", cache)

    def render(self, text: str, voice: str, speed: int = 165) -> Samples:
        """`text` spoken by `voice` (`en-us+f3`, `cmn`), at 8 kHz, untrimmed."""
        key = RenderCache.key("espeak-ng", self.version, voice, speed, text)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                return hit
        with tempfile.TemporaryDirectory(prefix="sim-audio-") as tmp:
            out = Path(tmp) / "say.wav"
            # --stdin with -b 1: the text is UTF-8 and never parsed as an option.
            cmd = [self.binary, "-v", voice, "-s", str(speed), "-b", "1", "--stdin", "-w", str(out)]
            try:
                done = subprocess.run(
                    cmd, input=text.encode("utf-8"), capture_output=True, timeout=60
                )
            except (OSError, subprocess.SubprocessError) as exc:
                raise AudioError(f"espeak-ng failed on {text!r}: {exc}") from exc
            if done.returncode != 0 or not out.is_file():
                reason = done.stderr.decode("utf-8", errors="replace").strip()
                if "voice does not exist" in reason:
                    raise AudioUnavailable(f"espeak-ng has no voice {voice!r}: {reason}")
                raise AudioError(f"espeak-ng -v {voice} failed on {text!r}: {reason}")
            data, rate = read_wav(out)
        self.renders += 1
        # Quantised as the cache stores it: a first render and a cache hit are the same bytes.
        samples = to_float(
            to_int16(resample(to_float(data if data.ndim == 1 else data[:, 0]), rate))
        )
        if self.cache is not None:
            self.cache.put(key, samples)
        return samples
