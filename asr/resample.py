"""Audio in: WAV files read into 16-bit channels, and telephone rates resampled to a model's rate.

`read_wav` parses the RIFF structure itself (rather than the `wave` module) so that every way a
recording can be broken gets a precise reason: a truncated header, a data chunk shorter than it
declares (a recording cut off mid-write), a header Asterisk never finalised, a format we do not
decode. Supported: PCM 8-bit (unsigned) and 16-bit, G.711 A-law and µ-law; any number of
channels; plain and WAVE_FORMAT_EXTENSIBLE headers.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import soxr

from asr.errors import BadAudio

Samples = npt.NDArray[np.int16]
Quality = Literal["QQ", "LQ", "MQ", "HQ", "VHQ"]

PCM = 0x0001
ALAW = 0x0006
MULAW = 0x0007
EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {
    0x0002: "MS ADPCM",
    0x0003: "IEEE float",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0055: "MPEG layer 3",
}
MAX_RATE = 384_000
MAX_CHANNELS = 64


def _alaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 A-law: code -> linear 16-bit sample (written from the recommendation)."""
    a = np.arange(256, dtype=np.int32) ^ 0x55
    exponent = (a >> 4) & 0x07
    mantissa = a & 0x0F
    magnitude = np.where(
        exponent == 0,
        (mantissa << 4) + 8,
        ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0),
    )
    return np.where(a & 0x80, magnitude, -magnitude).astype(np.int16)


def _mulaw_table() -> npt.NDArray[np.int16]:
    """ITU-T G.711 µ-law: code -> linear 16-bit sample (written from the recommendation)."""
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


_ALAW = _alaw_table()
_MULAW = _mulaw_table()


def read_wav(path: str | Path) -> tuple[list[Samples], int]:
    """Read a WAV file: one int16 array per channel, and the sample rate.

    Raises BadAudio naming the file and what is wrong with it.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BadAudio(path, f"cannot read: {exc.strerror or exc}") from exc
    return parse_wav(data, source=str(path))


def parse_wav(data: bytes, *, source: str = "<bytes>") -> tuple[list[Samples], int]:
    """`read_wav` on bytes already in memory; `source` names them in errors."""
    if len(data) < 12:
        raise BadAudio(source, f"truncated header: {len(data)} bytes, not a WAV file")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        kind = data[:4].decode("latin-1") if data[:4] in (b"RIFX", b"RF64") else ""
        why = f"{kind} WAV files are not supported" if kind else "not a RIFF/WAVE file"
        raise BadAudio(source, f"{why} (starts with {data[:12]!r})")
    fmt: tuple[int, int, int, int, int] | None = None  # tag, channels, rate, block, bits
    pos = 12
    while True:
        if pos + 8 > len(data):
            what = "data" if fmt else "fmt"
            raise BadAudio(source, f"truncated: no {what} chunk in {len(data)} bytes")
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        body = pos + 8
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data, body, size, source)
        elif chunk_id == b"data":
            if fmt is None:
                raise BadAudio(source, "data chunk before the fmt chunk")
            return _decode(data, body, size, fmt, source)
        if body + size > len(data):
            raise BadAudio(
                source,
                f"truncated: {chunk_id!r} chunk declares {size} bytes, {len(data) - body} present",
            )
        pos = body + size + (size & 1)  # chunks are padded to an even length


def _parse_fmt(data: bytes, body: int, size: int, source: str) -> tuple[int, int, int, int, int]:
    if size < 16 or body + 16 > len(data):
        raise BadAudio(
            source, f"truncated fmt chunk ({min(size, len(data) - body)} bytes, need 16)"
        )
    tag, channels, rate, _byte_rate, block, bits = struct.unpack_from("<HHIIHH", data, body)
    if tag == EXTENSIBLE:
        if size < 40 or body + 40 > len(data):
            raise BadAudio(source, "truncated WAVE_FORMAT_EXTENSIBLE fmt chunk")
        (tag,) = struct.unpack_from("<H", data, body + 24)  # first bytes of the sub-format GUID
    if tag not in (PCM, ALAW, MULAW):
        name = _FORMAT_NAMES.get(tag, "unknown")
        raise BadAudio(
            source, f"format tag {tag:#06x} ({name}) not supported: PCM 8/16-bit, A-law, µ-law"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise BadAudio(source, f"bad header: {channels} channels")
    if not 1 <= rate <= MAX_RATE:
        raise BadAudio(source, f"bad header: sample rate {rate} Hz")
    allowed = (8, 16) if tag == PCM else (8,)
    if bits not in allowed:
        raise BadAudio(source, f"{bits}-bit samples not supported for this format (only {allowed})")
    if block != channels * bits // 8:
        raise BadAudio(source, f"bad header: block align {block}, expected {channels * bits // 8}")
    return tag, channels, rate, block, bits


def _decode(
    data: bytes, body: int, size: int, fmt: tuple[int, int, int, int, int], source: str
) -> tuple[list[Samples], int]:
    tag, channels, rate, block, bits = fmt
    present = len(data) - body
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if size == 0 and present > 0 and (riff_size in (0, 0xFFFFFFFF) or riff_size + 8 <= body):
        # Asterisk (and most writers) put zero sizes in the header until the file is closed
        raise BadAudio(
            source, f"header not finalised: data chunk declares 0 bytes, {present} follow"
        )
    if size > present:
        if size in (0xFFFFFFFF, 0x7FFFFFFF):
            raise BadAudio(
                source, f"header not finalised: data chunk size {size:#x}, {present} bytes follow"
            )
        raise BadAudio(
            source, f"truncated: data chunk declares {size} bytes, only {present} present"
        )
    if size % block:
        raise BadAudio(
            source, f"truncated: data chunk of {size} bytes is not whole {block}-byte frames"
        )
    raw = data[body : body + size]
    if bits == 16:
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16)
    else:
        codes = np.frombuffer(raw, dtype=np.uint8)
        if tag == ALAW:
            pcm = _ALAW[codes]
        elif tag == MULAW:
            pcm = _MULAW[codes]
        else:  # 8-bit PCM is unsigned, centred on 128
            pcm = ((codes.astype(np.int16) - 128) << 8).astype(np.int16)
    frames = pcm.reshape(-1, channels)
    return [np.ascontiguousarray(frames[:, c]) for c in range(channels)], rate


def resample(samples: Samples, from_rate: int, to_rate: int, *, quality: Quality = "HQ") -> Samples:
    """Resample mono int16 audio with soxr (high quality by default); int16 in, int16 out.

    8 kHz telephone audio upsampled to 16 kHz keeps its 4 kHz band: nothing is invented above
    it, and the band edge is a steep linear-phase low-pass, not aliases of the telephone band.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise ValueError(f"sample rates must be positive: {from_rate} -> {to_rate}")
    if samples.ndim != 1:
        raise ValueError(f"mono samples expected, got shape {samples.shape}")
    x = samples.astype(np.int16, copy=False)
    if from_rate == to_rate or x.size == 0:
        return x
    out = soxr.resample(x, from_rate, to_rate, quality=quality)
    return np.asarray(out, dtype=np.int16)
