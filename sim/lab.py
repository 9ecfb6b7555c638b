"""A throwaway real Asterisk on loopback, configured from `asterisk-conf/` as shipped.

For the integration tests, `dialer bench asterisk` and an engineer's lab. Every instance lives
in a folder of its own (config, sounds, spool, logs, control socket), so it never touches
`/opt/asterisk/etc` and two can run side by side. The shipped files are copied unchanged but
for the listening ports (AMI, SIP) and the port of the SIPp carrier behind the trunk, which the
lab chooses so that it never meets another Asterisk or carrier on this host; test-only contexts
go in a file of their own, included at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ASTERISK_BIN = Path(os.environ.get("DIALER_ASTERISK", "/opt/asterisk/sbin/asterisk"))
ASTERISK_ROOT = ASTERISK_BIN.parent.parent
SHIPPED_CONF = Path(__file__).resolve().parent.parent / "asterisk-conf"


class LabError(RuntimeError):
    """The lab Asterisk could not be set up, started or stopped."""


class LabUnsupported(LabError):
    """This Asterisk build cannot run on this machine (e.g. built for CPU features it lacks)."""


def asterisk_available(binary: Path = ASTERISK_BIN) -> str | None:
    """None when a usable Asterisk is installed, else why not (for a test's skip reason)."""
    if not binary.is_file():
        return f"no Asterisk at {binary} (see README: Testing against a real Asterisk)"
    if not os.access(binary, os.X_OK):
        return f"{binary} is not executable"
    return None


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class LabPorts:
    ami: int
    sip: int
    # Where the trunk sends its calls: the SIPp carrier (`sim.sip.carrier`) listens there.
    carrier: int = 5090

    @classmethod
    def pick(cls) -> LabPorts:
        return cls(
            ami=free_port(), sip=free_port(socket.SOCK_DGRAM), carrier=free_port(socket.SOCK_DGRAM)
        )


def manager_secret(conf_dir: Path, user: str = "dialer") -> str:
    """The AMI secret of `user` in manager.conf (the lab uses the shipped one)."""
    section = ""
    for line in (conf_dir / "manager.conf").read_text(encoding="utf-8").splitlines():
        line = line.split(";", 1)[0].strip()
        if line.startswith("["):
            section = line[1 : line.index("]")]
        elif section == user and line.partition("=")[0].strip() == "secret":
            return line.partition("=")[2].strip()
    raise LabError(f"{conf_dir / 'manager.conf'}: no secret for [{user}]")


# The only lines the lab changes in the shipped files: where Asterisk listens, and where its
# trunk reaches the carrier. Each rule must match exactly one line of its file.
_PORT_LINES: dict[str, tuple[tuple[re.Pattern[str], str], ...]] = {
    "manager.conf": ((re.compile(r"^port\s*=\s*\d+\s*$", re.M), "port = {ami}"),),
    "pjsip.conf": ((re.compile(r"^bind\s*=\s*[0-9.]+:5060\s*$", re.M), "bind = 127.0.0.1:{sip}"),),
    "pjsip_wizard.conf": (
        (
            re.compile(r"^remote_hosts\s*=\s*127\.0\.0\.1:5090\s*$", re.M),
            "remote_hosts = 127.0.0.1:{carrier}",
        ),
    ),
}


class AsteriskLab:
    """One Asterisk process with its own folder under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        conf_dir: Path = SHIPPED_CONF,
        ports: LabPorts | None = None,
        extra_dialplan: str = "",
        extra_pjsip: str = "",
        binary: Path = ASTERISK_BIN,
    ) -> None:
        self.root = root
        self.conf_dir = conf_dir
        self.ports = ports or LabPorts.pick()
        self.extra_dialplan = extra_dialplan
        self.extra_pjsip = extra_pjsip
        self.binary = binary
        self.etc = root / "etc"
        self.spool = root / "spool"
        self.recordings = self.spool / "monitor"
        self.log_dir = root / "log"

    @property
    def ami_secret(self) -> str:
        return manager_secret(self.conf_dir)

    @property
    def messages_log(self) -> Path:
        return self.log_dir / "messages"

    def write_config(self) -> None:
        """Copy the shipped configs, sounds and data links into the lab folder."""
        for sub in ("etc", "lib", "run", "log", "agi-bin", "spool/monitor", "data"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        for src in sorted(self.conf_dir.glob("*.conf")):
            text = src.read_text(encoding="utf-8")
            for pattern, line in _PORT_LINES.get(src.name, ()):
                text, n = pattern.subn(line.format(**dataclasses.asdict(self.ports)), text)
                if n != 1:
                    raise LabError(
                        f"{src}: expected one line matching {pattern.pattern!r} to adapt, found {n}"
                    )
            if src.name == "extensions.conf" and self.extra_dialplan:
                text += "\n#include extensions-lab.conf\n"
            if src.name == "pjsip.conf" and self.extra_pjsip:
                text += "\n#include pjsip-lab.conf\n"
            (self.etc / src.name).write_text(text, encoding="utf-8")
        if self.extra_dialplan:
            (self.etc / "extensions-lab.conf").write_text(self.extra_dialplan, encoding="utf-8")
        if self.extra_pjsip:
            (self.etc / "pjsip-lab.conf").write_text(self.extra_pjsip, encoding="utf-8")
        # The data folder: the shipped sounds (lab prompts, the safe-harbour message), and the
        # installation's own data (documentation, keys, music on hold) linked in.
        data = self.root / "data"
        sounds = self.conf_dir / "sounds"
        if sounds.is_dir():
            shutil.copytree(sounds, data / "sounds", dirs_exist_ok=True)
        installed = ASTERISK_ROOT / "var" / "lib" / "asterisk"
        if installed.is_dir():
            for item in installed.iterdir():
                target = data / item.name
                if item.name != "sounds" and not target.exists():
                    target.symlink_to(item)
        r = self.root
        (self.etc / "asterisk.conf").write_text(
            "[directories]\n"
            f"astetcdir => {self.etc}\n"
            f"astmoddir => {ASTERISK_ROOT / 'lib' / 'asterisk' / 'modules'}\n"
            f"astdatadir => {data}\n"
            f"astvarlibdir => {r / 'lib'}\n"
            f"astdbdir => {r / 'lib'}\n"
            f"astkeydir => {r / 'lib'}\n"
            f"astagidir => {r / 'agi-bin'}\n"
            f"astspooldir => {self.spool}\n"
            f"astrundir => {r / 'run'}\n"
            f"astlogdir => {self.log_dir}\n"
            f"astsbindir => {self.binary.parent}\n"
            "[options]\n"
            "verbose = 3\n"
            "hideconnect = yes\n",
            encoding="utf-8",
        )

    def _asterisk(self, *args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), "-C", str(self.etc / "asterisk.conf"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli(self, command: str, timeout: float = 20.0) -> str:
        """Run one CLI command on the running instance (`asterisk -rx`)."""
        done = self._asterisk("-rx", command, timeout=timeout)
        return done.stdout + done.stderr

    @property
    def pid(self) -> int | None:
        try:
            return int((self.root / "run" / "asterisk.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self, timeout: float = 30.0) -> None:
        """Start the daemon and wait until it is fully booted and AMI listens."""
        if not (self.etc / "asterisk.conf").exists():
            self.write_config()
        done = self._asterisk()
        if done.returncode == -signal.SIGILL:
            # Seen with a build made with -march=native on a CPU with AVX-512.
            raise LabUnsupported(
                f"{self.binary} dies with SIGILL on this CPU: it was built for instructions "
                "this machine lacks (e.g. AVX-512); rebuild it for a generic x86-64"
            )
        if done.returncode != 0:
            raise LabError(
                f"asterisk failed to start (exit {done.returncode}): "
                f"{done.stderr.strip() or done.stdout.strip()}"
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.running() and "fully booted" in self.cli("core waitfullybooted", 10).lower():
                break
            time.sleep(0.1)
        else:
            raise LabError(f"asterisk did not boot in {timeout:.0f} s; see {self.messages_log}")
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.ports.ami), 0.5),
            ):
                return
            time.sleep(0.05)
        raise LabError(f"AMI is not listening on 127.0.0.1:{self.ports.ami}")

    def stop(self, timeout: float = 15.0) -> None:
        """`core stop now`; SIGKILL if it lingers."""
        pid = self.pid
        if pid is None or not self.running():
            return
        self.cli("core stop now", timeout)
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running():
            self.kill()

    def kill(self) -> None:
        pid = self.pid
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.02)

    def __enter__(self) -> AsteriskLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
