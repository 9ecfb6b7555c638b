"""Regenerate the carrier's RTP audio (`sim/sip/audio/`) from the lab sounds, with sox.

SIPp's `rtp_stream` plays a file's bytes as they are, 160 bytes per 20 ms packet (it skips a
RIFF header if there is one and converts nothing), so every file here is headerless G.711 at
8 kHz, once as mu-law (`.ulaw`, payload type 0) and once as A-law (`.alaw`, payload 8), each a
whole number of 20 ms packets so that a looped file never splices a packet:

- `hello`: 0.2 s of line silence, the debtor's "Hello?" (`debtor_hello.wav`), then silence up to
  4 s. Looped, it is a person who says "Hello?" and waits: AMD hears a short greeting followed
  by silence and answers HUMAN. (RTP must go on after the greeting: AMD takes a stream that
  stops for NOTSURE.)
- `machine`: 0.3 s of silence, the 8 s voicemail greeting (`machine.wav`), the beep, silence up
  to 10 s: a greeting longer than amd.conf's `greeting` makes AMD answer MACHINE.
- `ringback`: the North American ringback (440 + 480 Hz, 2 s on, 4 s off), the early media of a
  183 Session Progress.

Run `python -m sim.sip.make_audio` after changing a lab sound; the files are committed.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
from pathlib import Path

HERE = Path(__file__).resolve().parent
AUDIO_DIR = HERE / "audio"
LAB_SOUNDS = HERE.parent.parent / "asterisk-conf" / "sounds" / "sim"

# name -> (sox input arguments, effects), the output being 8 kHz mono G.711.
_RECIPES: dict[str, tuple[list[str], list[str]]] = {
    "hello": (["{sounds}/debtor_hello.wav"], ["pad", "0.2", "5", "trim", "0", "4.0"]),
    "machine": (
        ["{sounds}/machine.wav", "{sounds}/beep.wav"],
        ["pad", "0.3", "5", "trim", "0", "10.0"],
    ),
    "ringback": (
        ["-n", "-r", "8000", "-c", "2"],
        [
            *("synth", "2", "sine", "440", "sine", "480"),  # 2 s of 440 + 480 Hz
            *("remix", "1,2", "gain", "-n", "-12"),  # one channel, peak -12 dBFS
            *("pad", "0", "4"),  # 4 s off
        ],
    ),
}
# file suffix -> sox encoding name
ENCODINGS = {"ulaw": "u-law", "alaw": "a-law"}
PACKET_BYTES = 160  # 20 ms of 8 kHz G.711


def make_audio(out_dir: Path = AUDIO_DIR, sounds: Path = LAB_SOUNDS) -> list[Path]:
    """Write every file of the carrier's audio into `out_dir`; return their paths."""
    sox = shutil.which("sox")
    if sox is None:
        raise RuntimeError("sox is not installed (Debian: apt-get install sox)")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (inputs, effects) in _RECIPES.items():
        args = [arg.format(sounds=sounds) for arg in inputs]
        for suffix, encoding in ENCODINGS.items():
            target = out_dir / f"{name}.{suffix}"
            output = ["-t", "raw", "-r", "8000", "-c", "1", "-e", encoding, "-b", "8", str(target)]
            subprocess.run(
                [sox, "-D", *args, *output, *effects],  # -D: no dither, the same bytes each run
                check=True,
                capture_output=True,
            )
            size = target.stat().st_size
            if size % PACKET_BYTES:
                raise RuntimeError(f"{target}: {size} bytes is not whole 20 ms packets")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=AUDIO_DIR)
    parser.add_argument("--sounds", type=Path, default=LAB_SOUNDS)
    args = parser.parse_args(argv)
    for path in make_audio(args.out, args.sounds):
        print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
