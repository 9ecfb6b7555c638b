"""Reading and writing the call recordings' WAV files: 16-bit PCM only, errors that say why.

Asterisk's MixMonitor writes `.wav` as 16-bit little-endian PCM (8 kHz for telephone calls),
either one stereo file or one mono file per direction (`r()` heard, `t()` spoken). This reader
walks the RIFF chunks itself instead of using `wave`, so that it can tell a truncated file, a
header never finalised (Asterisk stopped before closing the file), an empty file and a wrong
sample format apart, and say which in `BadRecording.reason`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recording.errors import BadRecording, RecordingUnfinished

_PCM = 0x0001
_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {0x0003: "IEEE float", 0x0006: "A-law", 0x0007: "mu-law", 0x0031: "GSM 6.10"}
# WAVE_FORMAT_EXTENSIBLE names its real format by a GUID whose first two bytes are the tag.
_PCM_GUID_TAIL = bytes.fromhex("000000001000800000aa00389b71")


@dataclass(frozen=True)
class WavAudio:
    """Decoded PCM: `samples` is int16 of shape (frames, channels)."""

    path: Path
    rate: int
    samples: npt.NDArray[np.int16]

    @property
    def channels(self) -> int:
        return int(self.samples.shape[1])

    @property
    def frames(self) -> int:
        return int(self.samples.shape[0])

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate

    def channel(self, index: int) -> npt.NDArray[np.int16]:
        """One channel as a contiguous 1-D int16 array (0 = left, 1 = right)."""
        return np.ascontiguousarray(self.samples[:, index])


def read_wav(path: str | Path) -> WavAudio:
    """Reads a 16-bit PCM WAV file; raises `BadRecording` naming the file and the reason."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadRecording(path, f"cannot be read ({exc.strerror or exc})") from exc
    return parse_wav(data, path)


def parse_wav(data: bytes, path: str | Path = "<bytes>") -> WavAudio:
    """Decodes WAV bytes (see `read_wav`); `path` only names the source in errors."""
    path = Path(path)
    if not data:
        raise BadRecording(path, "empty file (0 bytes)")
    if len(data) < 12:
        raise BadRecording(path, f"truncated: {len(data)} bytes, shorter than a RIFF header")
    if data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise BadRecording(path, "not a WAV file (no RIFF/WAVE header)")

    fmt: bytes | None = None
    pcm: bytes | None = None
    declared = 0
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = data[pos + 8 : pos + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise BadRecording(path, "truncated: the format chunk is cut short")
            fmt = body
        elif chunk_id == b"data":
            pcm, declared = body, size
            break
        pos += 8 + size + (size & 1)  # chunks are padded to an even length
    if fmt is None:
        raise BadRecording(path, "truncated or corrupt: no format chunk before the audio")
    if pcm is None:
        raise BadRecording(path, "truncated or corrupt: no data chunk")

    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt)
    if tag == _EXTENSIBLE and len(fmt) >= 40 and fmt[26:40] == _PCM_GUID_TAIL:
        tag = struct.unpack_from("<H", fmt, 24)[0]
    if tag != _PCM:
        name = _FORMAT_NAMES.get(tag, f"format tag {tag:#06x}")
        raise BadRecording(path, f"not PCM audio ({name}); 16-bit PCM expected")
    if bits != 16:
        raise BadRecording(path, f"sample width is {bits} bits; 16-bit PCM expected")
    if channels < 1 or rate < 1 or block_align != 2 * channels:
        raise BadRecording(
            path, f"corrupt format chunk ({channels} channels, {rate} Hz, block {block_align})"
        )

    if declared == 0 and len(data) > pos + 8:
        raise RecordingUnfinished(
            path,
            f"header never finalised: data size 0 but {len(data) - pos - 8} bytes follow "
            "(the recorder stopped before closing the file)",
        )
    if declared == 0xFFFFFFFF:  # a streaming writer that never knew the length
        declared = len(pcm)
    if len(pcm) < declared:
        raise BadRecording(
            path,
            f"truncated: header promises {declared // block_align} frames "
            f"({declared / block_align / rate:.3f} s), the file holds {len(pcm) // block_align}",
        )
    frames = len(pcm) // block_align
    if frames == 0:
        raise BadRecording(path, "empty: no audio frames")
    samples = np.frombuffer(pcm, dtype="<i2", count=frames * channels).astype(np.int16)
    return WavAudio(path, rate, samples.reshape(frames, channels))


def write_wav(path: str | Path, samples: npt.NDArray[np.int16], rate: int) -> None:
    """Writes int16 samples, shape (frames,) or (frames, channels), as 16-bit PCM WAV."""
    arr = np.asarray(samples)
    if arr.dtype != np.int16:
        raise TypeError(f"write_wav needs int16 samples, got {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    if arr.ndim != 2:
        raise ValueError(f"write_wav needs 1-D or 2-D samples, got shape {arr.shape}")
    channels = arr.shape[1]
    pcm = arr.astype("<i2").tobytes()
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(pcm),
        b"WAVE",
        b"fmt ",
        16,
        _PCM,
        channels,
        rate,
        rate * 2 * channels,
        2 * channels,
        16,
        b"data",
        len(pcm),
    )
    Path(path).write_bytes(header + pcm + (b"\0" if len(pcm) & 1 else b""))
