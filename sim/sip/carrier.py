"""The PSTN behind the dialer's SIP trunk: SIPp running `carrier.xml` on loopback.

`SippCarrier(port).start()` runs one SIPp process as the carrier's UAS: every INVITE Asterisk
sends down its trunk is a call to a debtor, and the number decides what happens (BEHAVIOURS;
the convention is documented in carrier.xml). What each call did (ringing, the codec of the
answer, the final response, who hung up) is read back from SIPp's <log> file (`calls()`), and
SIPp's own counters from its statistics file (`stats()`). `stop()` ends the process (SIGTERM,
then SIGKILL), and `max_seconds` makes SIPp quit by itself (`-timeout`) should its owner die.

Used by `dialer sim --sip`, the tests against a real Asterisk and benchmarks.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
CARRIER_SCENARIO = HERE / "carrier.xml"
CALLER_SCENARIO = HERE / "caller.xml"
AUDIO_DIR = HERE / "audio"
SIPP = os.environ.get("DIALER_SIPP", "sipp")

# What a number does (the Request-URI's user part, E.164 without '+'), as carrier.xml plays it.
BEHAVIOURS: tuple[tuple[str, str], ...] = (
    ("...1 ...9", 'answers after 1 s: "Hello?", then silence (AMD: HUMAN); BYE 6 s later'),
    ("...2", "486 Busy Here"),
    ("...3", "rings until the dialer gives up (CANCEL); 480 after 120 s"),
    ("...4", "answering machine after 2 s: 8 s greeting, beep (AMD: MACHINE)"),
    ("...5", "503 Service Unavailable"),
    ("...6", "rings 3 s, then 480 Temporarily Unavailable"),
    ("...7", 'short call: "Hello?", BYE 1.2 s after the answer'),
    ("...8", "long call: as ...1, BYE after 120 s"),
    ("...0", "404 Not Found"),
    ("...7d", "next-to-last 7: 183 Session Progress with ringback (early media), not 180"),
    ("...8d", "next-to-last 8: answers in A-law (PCMA) when offered"),
    ("...90", "484 Address Incomplete"),
    ("...96", "rings 3 s, then 408 Request Timeout"),
)

_LOG_LINE = re.compile(r"^sipcarrier call=(\d+) number=(\S*) event=(\w+)(.*)$")
_FIELD = re.compile(r"(\w+)=(\S+)")


class CarrierError(RuntimeError):
    """SIPp is missing, refused to start, or did not answer."""


@dataclass(frozen=True)
class CarrierCall:
    """What the carrier did on one call (SIPp's call number)."""

    call: int
    number: str
    ringing: int | None = None  # 180 or 183
    final: int | None = None  # 200, 487 (cancelled) or the refusal sent
    codec: str | None = None  # PCMU / PCMA of the answer (or of early media)
    hung_up_by: str | None = None  # "debtor" (our BYE) or "dialer" (Asterisk's BYE)

    @property
    def ended(self) -> bool:
        return self.final is not None and (self.final != 200 or self.hung_up_by is not None)


def parse_calls(text: str) -> dict[int, CarrierCall]:
    """The calls described by carrier.xml's log lines, by SIPp call number."""
    facts: dict[int, dict[str, str]] = {}
    for line in text.splitlines():
        match = _LOG_LINE.match(line.strip())
        if match is None:
            continue
        call, number, event, rest = int(match[1]), match[2], match[3], match[4]
        fields = dict(_FIELD.findall(rest))
        seen = facts.setdefault(call, {"number": number})
        if event == "ringing":
            seen["ringing"] = fields.get("code", "")
        elif event in ("answered", "refused", "cancelled"):
            seen["final"] = fields.get("code", "")
        elif event == "hangup":
            seen["hung_up_by"] = fields.get("by", "")
        if "codec" in fields:
            seen["codec"] = fields["codec"]
    return {
        call: CarrierCall(
            call=call,
            number=seen["number"],
            ringing=int(seen["ringing"]) if seen.get("ringing") else None,
            final=int(seen["final"]) if seen.get("final") else None,
            codec=seen.get("codec"),
            hung_up_by=seen.get("hung_up_by"),
        )
        for call, seen in facts.items()
    }


@functools.cache
def sipp_available(sipp: str = SIPP) -> str | None:
    """None when a SIPp able to stream RTP is installed, else why not (a test's skip reason)."""
    path = shutil.which(sipp)
    if path is None:
        return f"no {sipp} on PATH (Debian: apt-get install sip-tester)"
    try:
        version = subprocess.run(
            [path, "-v"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{path} -v failed: {exc}"
    if "RTPSTREAM" not in version:
        return f"{path} was built without RTPSTREAM (rtp_stream): {version.strip()[:80]}"
    return None


def _free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def options_probe(host: str, port: int, timeout: float = 1.0) -> bool:
    """Send one SIP OPTIONS to host:port; True when a 200 OK comes back in time."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(timeout)
        mine = s.getsockname()[1]
        tag = uuid.uuid4().hex[:16]
        request = (
            f"OPTIONS sip:probe@{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{mine};branch=z9hG4bK{tag}\r\n"
            f"From: <sip:probe@{host}:{mine}>;tag={tag}\r\n"
            f"To: <sip:probe@{host}:{port}>\r\n"
            f"Call-ID: {tag}@probe\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Max-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        try:
            s.sendto(request.encode(), (host, port))
            while True:
                data = s.recv(65536)
                if tag.encode() in data:
                    return data.startswith(b"SIP/2.0 200")
        except OSError:  # timeout, or ICMP port unreachable
            return False


class SippCarrier:
    """One SIPp process running the carrier scenario, listening on `host:port` (UDP).

    Its files (the per-call log, statistics, errors, the final screen) go to `workdir`, a fresh
    temporary folder unless given; the audio of sim/sip/audio is linked in there, since SIPp
    finds a scenario's rtp_stream files relative to where it runs.
    """

    def __init__(
        self,
        port: int = 5090,
        *,
        host: str = "127.0.0.1",
        workdir: Path | None = None,
        scenario: Path = CARRIER_SCENARIO,
        sipp: str = SIPP,
        max_seconds: float | None = None,
        stats_every_s: int = 10,
    ) -> None:
        self.port = port
        self.host = host
        self.scenario = scenario
        self.sipp = sipp
        self.max_seconds = max_seconds
        self.stats_every_s = stats_every_s
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="sip-carrier-"))
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: io.BufferedWriter | None = None

    # ------------------------------------------------------------------ files

    @property
    def log_path(self) -> Path:
        return self.workdir / "calls.log"

    @property
    def stats_path(self) -> Path:
        return self.workdir / "stats.csv"

    @property
    def errors_path(self) -> Path:
        return self.workdir / "errors.log"

    @property
    def screen_path(self) -> Path:
        return self.workdir / "screen.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "sipp.stderr"

    def command(self) -> list[str]:
        """The SIPp command line (run in `workdir`)."""
        cmd = [
            self.sipp,
            "-sf", str(self.scenario),
            "-i", self.host, "-mi", self.host, "-bind_local",
            "-p", str(self.port),
            # the remote-control port: one of our own, so that carriers can run side by side
            "-cp", str(_free_udp_port(self.host)),
            # 200 OK to an in-dialog INFO / UPDATE / NOTIFY the scenario does not expect
            "-aa",
            "-nostdin",
            "-trace_logs", "-log_file", str(self.log_path),
            "-trace_err", "-error_file", str(self.errors_path),
            "-trace_stat", "-stf", str(self.stats_path), "-fd", str(self.stats_every_s),
            "-trace_screen", "-screen_file", str(self.screen_path),
        ]  # fmt: skip
        if self.max_seconds is not None:
            cmd += ["-timeout", f"{max(1, round(self.max_seconds))}s"]
        return cmd

    # ------------------------------------------------------------------ life

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """SIPp's process id while it runs (e.g. to measure its CPU)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def start(self, timeout: float = 10.0) -> None:
        """Start SIPp and wait until it answers an OPTIONS on its port."""
        if self._proc is not None:
            raise CarrierError("this carrier was already started")
        reason = sipp_available(self.sipp)
        if reason is not None:
            raise CarrierError(reason)
        # Another carrier on the port would answer the probe meant for ours.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                raise CarrierError(f"udp {self.host}:{self.port}: {exc.strerror}") from None
        self.workdir.mkdir(parents=True, exist_ok=True)
        audio = self.workdir / "audio"
        if not audio.exists():
            audio.symlink_to(AUDIO_DIR, target_is_directory=True)
        self._stderr = self.stderr_path.open("wb")
        self._proc = subprocess.Popen(
            self.command(),
            cwd=self.workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # a Ctrl-C meant for our owner is not SIPp's
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                self._close_stderr()
                raise CarrierError(f"sipp exited ({rc}) at start: {self._why()}")
            if options_probe(self.host, self.port, timeout=0.2):
                return
        self.stop()
        raise CarrierError(f"sipp did not answer on {self.host}:{self.port} in {timeout:.0f} s")

    def wait(self, timeout: float | None = None) -> int:
        """Block until SIPp exits (e.g. its `max_seconds` ran out); its exit code."""
        if self._proc is None:
            raise CarrierError("this carrier was never started")
        return self._proc.wait(timeout)

    def stop(self, timeout: float = 5.0) -> int | None:
        """End SIPp (SIGTERM, SIGKILL if it lingers); its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._close_stderr()
        return proc.returncode

    def cleanup(self) -> None:
        """Stop, and remove the work folder if this carrier made it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def _why(self) -> str:
        for path in (self.stderr_path, self.errors_path):
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8", errors="replace").strip()
                if text:
                    return text[-600:]
        return "no message"

    def __enter__(self) -> SippCarrier:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ what happened

    def calls(self) -> dict[int, CarrierCall]:
        """Every call the carrier has seen so far, by SIPp call number."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        return parse_calls(text)

    def by_number(self) -> dict[str, CarrierCall]:
        """The latest call to each number."""
        return {c.number: c for c in sorted(self.calls().values(), key=lambda c: c.call)}

    def stats(self) -> dict[str, str]:
        """SIPp's cumulative counters (the last row of its -trace_stat file, written every
        `stats_every_s` and when SIPp ends), by column name; e.g. `SuccessfulCall(C)`,
        `FailedCall(C)`, `CurrentCall`."""
        try:
            text = self.stats_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return {}
        rows = list(csv.reader(io.StringIO(text), delimiter=";"))
        if len(rows) < 2:
            return {}
        return {name: value for name, value in zip(rows[0], rows[-1], strict=False) if name}

    def errors(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.errors_path.read_text(encoding="utf-8", errors="replace")
        return ""
