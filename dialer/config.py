"""Typed configuration: one TOML file, then environment overrides; secrets never printed."""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dialer.errors import ConfigError


class Secret:
    """A password or token: compares and reveals on purpose, never shows in repr/str/logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True)
class AmiServerConfig:
    """One Asterisk server reached over AMI."""

    name: str = "asterisk1"
    host: str = "127.0.0.1"
    port: int = 5038
    username: str = "dialer"
    secret: Secret = field(default_factory=lambda: Secret("dialer"))
    # Weight for spreading calls over servers; 0 keeps the server connected but undialled.
    weight: int = 1


@dataclass(frozen=True)
class AmiConfig:
    servers: tuple[AmiServerConfig, ...] = (AmiServerConfig(),)
    # TCP connect, banner and Login reply, each: a loopback or LAN Asterisk answers in ms.
    connect_timeout_s: float = 2.0
    action_timeout_s: float = 10.0
    ping_interval_s: float = 20.0
    # After a drop, reconnect tries are spaced by a random delay (full jitter, so that many nodes
    # do not reconnect together): the first within reconnect_min_s, none longer than
    # reconnect_max_s, so a restarted Asterisk is in use again within ~2 s of listening.
    # A refused login (wrong secret) is never retried.
    reconnect_min_s: float = 0.25
    reconnect_max_s: float = 2.0


@dataclass(frozen=True)
class AgiConfig:
    """Our FastAGI server, which Asterisk's dialer-connect context calls on answer."""

    bind_host: str = "127.0.0.1"
    port: int = 4573
    # The address Asterisk must use to reach us (passed to it as channel variable DIALER_AGI).
    advertise_host: str = "127.0.0.1"


@dataclass(frozen=True)
class DialingConfig:
    """How an Originate is built. `{number}` is the E.164 number without '+'."""

    channel_template: str = "Local/{number}@debtor-sim"
    context: str = "dialer-connect"
    exten: str = "s"
    priority: int = 1
    caller_id: str = '"Collections" <8005550100>'
    # Unanswered calls must ring at least 15 s (FCC); 26 s leaves ~5 rings.
    ring_timeout_s: float = 26.0
    use_amd: bool = True
    record: bool = True
    # Carriers cap call setups per second on a trunk: never send Originates faster than this
    # (per dialer node; 0 = no cap).
    max_originates_per_s: float = 0.0
    # The dialer hangs up a conversation that lasts longer than this (a stuck line, a far end
    # that never sends BYE); 0 = no limit.
    max_call_s: float = 3600.0
    # Where MixMonitor writes, as Asterisk sees it. Empty: Asterisk's own monitor folder
    # (<astspooldir>/monitor, whatever the instance's spool); the path MixMonitor reports back
    # (MIXMONITOR_FILENAME) is the one stored with the attempt.
    recording_dir: str = ""
    # Extra channel variables set on every call.
    variables: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentConfig:
    """An agent reached as an Asterisk endpoint (e.g. PJSIP/agent1 or Local/agent1@agents)."""

    id: str
    channel: str
    # nailed: the phone is called once and waits in the agent's conference (desk phones);
    # dial: dialled for every call (phones or softphones that answer by themselves, the lab's
    # Local/<id>@agents). Agents from this file default to dial; agents who log in from the
    # desktop get [web].agent_connect.
    connect: str = "dial"

    def __post_init__(self) -> None:
        if self.connect not in ("nailed", "dial"):
            raise ConfigError(f"agents.{self.id}.connect: {self.connect!r} (nailed or dial)")


@dataclass(frozen=True)
class CampaignConfig:
    name: str = "default"
    tenant: str = "default"
    dial_mode: str = "progressive"
    # A live answer not connected to an agent within this time is abandoned (FCC: 2 s).
    abandon_after_s: float = 2.0
    # Pacing aims below this share of live answers abandoned (US FCC / UK Ofcom: 3%).
    target_abandon_rate: float = 0.03
    # Never more calls in flight than this many per working agent.
    max_dial_ratio: float = 3.0
    wrap_up_s: float = 10.0
    max_attempts_per_phone: int = 1
    # A phone the compliance guard allows again within this many seconds (its window opens soon)
    # is retried in this run; later ones wait for the next run.
    reschedule_horizon_s: float = 3600.0
    # Upper bound on calls in flight, whatever pacing asks.
    max_channels: int = 200
    # What the agent reads to the debtor; {debtor}, {agent}, {balance}, {creditor} are filled in.
    script: str = (
        "This is {agent} calling on behalf of {creditor} about your account. "
        "This is an attempt to collect a debt; any information obtained will be used for that "
        "purpose. Am I speaking with {debtor}?"
    )
    # The call center's time zone: where the supervisor's "today" starts (IANA name).
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"campaign.timezone: {self.timezone!r} is not a time zone (e.g. Asia/Shanghai)"
            ) from None


@dataclass(frozen=True)
class ComplianceConfig:
    """The guard every attempt passes before the Originate."""

    # A preset (us-regf, us-ma, cn) or the path of a custom TOML rule set.
    ruleset: str = "us-regf"
    # sql: the product database (the default: the ledgers survive restarts; several nodes on
    # PostgreSQL), redis (several nodes, fastest), memory (tests and what-ifs: lost on exit).
    backend: str = "sql"
    redis_prefix: str = "compliance:"
    # Append-only, hash-chained decision log; empty: <data_dir>/compliance-audit.jsonl.
    audit_path: str = ""


@dataclass(frozen=True)
class WebConfig:
    """The pages and their API, served by the dialer process itself."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    # A browser session lasts this long without use (seconds); logging in again starts anew.
    session_ttl_s: float = 8 * 3600.0
    # Set behind HTTPS (a reverse proxy): the session cookie is then sent over HTTPS only.
    cookie_secure: bool = False
    # How agents who log in from the desktop are connected (see AgentConfig.connect).
    agent_connect: str = "nailed"
    # Template of an agent's phone when they type only an extension (1001 -> PJSIP/1001).
    phone_template: str = "PJSIP/{extension}"
    # Where an agent's "transfer to a supervisor" puts the debtor through: one Dial() string,
    # a supervisor's phone (PJSIP/1000) or a ring group's extension (Local/sup@groups; not
    # "A&B"); empty: the desktop offers no transfer.
    transfer_to: str = ""

    def __post_init__(self) -> None:
        if self.transfer_to:
            from dialer.agents.transfer import TransferError, check_dial_string

            try:
                check_dial_string(self.transfer_to)
            except TransferError as exc:
                raise ConfigError(f"web.transfer_to: {exc.reason}") from None


@dataclass(frozen=True)
class MessagingConfig:
    """The messaging settings file (providers, payment link; dialer/messaging/config.py) that
    the running dialer's pages send message batches with, as `dialer messages --messaging`
    does from the shell."""

    # Relative to the working directory, like the CLI's default. Empty, or no such file:
    # sending from the pages is off (the pages say why); a file with a mistake stops the start.
    file: str = "messaging.toml"

    def path(self) -> Path | None:
        return Path(self.file) if self.file.strip() else None


# Legal minimum keeping of call recordings, in days, by name: usable for a tenant in
# [recordings] retention_days (China: at least 2 years; US: 3 years).
RETENTION_PRESETS: Mapping[str, int] = {"cn": 730, "us": 1095}
RECOGNITION_ENGINES = ("pocketsphinx", "vosk", "script")


@dataclass(frozen=True)
class RecordingsConfig:
    """The evidence archive of call recordings and the workers that process them."""

    # Where archived recordings and their manifest live; empty: <data_dir>/recordings.
    archive_dir: str = ""
    # Days a recording is kept after the call, for a tenant without its own setting.
    default_retention_days: int = RETENTION_PRESETS["us"]
    # Per tenant, by tenant name: days, or a preset name ("cn" 730, "us" 1095).
    retention_days: Mapping[str, int] = field(default_factory=dict)
    # Worker threads of `dialer recordings archive` (and of the pipeline's intake).
    workers: int = 2
    # `dialer run` processes each finished call's recording as it goes: collect, archive,
    # measure, transcribe, index, QA-check (recording/worker.py). False: only the CLI does.
    enabled: bool = True
    # Recogniser: pocketsphinx (bundled en-us), vosk (needs `model`), or script (the
    # simulator's own text: demos and benchmarks only).
    engine: str = "pocketsphinx"
    # Model directory (vosk: required; pocketsphinx: empty for its bundled en-us).
    model: str = ""
    # Recogniser processes, one model each; 0: one per CPU core.
    processes: int = 1
    # QA rule set: a preset name (us-collections, cn-collections) or a TOML file.
    rules: str = "us-collections"
    # Per transcript language, a rule set other than `rules` (e.g. zh = "cn-collections").
    rules_by_language: Mapping[str, str] = field(default_factory=lambda: {"zh": "cn-collections"})
    # How often the pipeline looks for finished calls, in seconds.
    poll_s: float = 1.0

    def __post_init__(self) -> None:
        if self.default_retention_days <= 0:
            raise ConfigError(
                f"recordings.default_retention_days: {self.default_retention_days} (> 0)"
            )
        if self.workers < 1:
            raise ConfigError(f"recordings.workers: {self.workers} (at least 1)")
        if self.engine not in RECOGNITION_ENGINES:
            raise ConfigError(
                f"recordings.engine: {self.engine!r} (one of {', '.join(RECOGNITION_ENGINES)})"
            )
        if self.engine == "vosk" and not self.model:
            raise ConfigError("recordings.model: vosk needs a model directory")
        if self.processes < 0:
            raise ConfigError(f"recordings.processes: {self.processes} (0: one per core, or more)")
        if not self.rules:
            raise ConfigError("recordings.rules: empty (a preset name or a TOML file)")
        if not 0.05 <= self.poll_s <= 3600:
            raise ConfigError(f"recordings.poll_s: {self.poll_s} (0.05 to 3600 seconds)")

    @property
    def recogniser_processes(self) -> int:
        return self.processes or os.cpu_count() or 1

    def archive_root(self, data_dir: Path) -> Path:
        return Path(self.archive_dir) if self.archive_dir else data_dir / "recordings"


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path("dialer-data")
    database_url: str = ""
    redis_url: str = ""
    node_id: str = "node1"
    # >1 makes every dialer-side timer (wrap-up, abandon wait, ring timeout) shorter, to match a
    # simulator that runs faster than real time.
    time_scale: float = 1.0
    ami: AmiConfig = field(default_factory=AmiConfig)
    agi: AgiConfig = field(default_factory=AgiConfig)
    dialing: DialingConfig = field(default_factory=DialingConfig)
    campaign: CampaignConfig = field(default_factory=CampaignConfig)
    compliance: ComplianceConfig = field(default_factory=ComplianceConfig)
    agents: tuple[AgentConfig, ...] = ()
    web: WebConfig = field(default_factory=WebConfig)
    recordings: RecordingsConfig = field(default_factory=RecordingsConfig)
    messaging: MessagingConfig = field(default_factory=MessagingConfig)

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'dialer.db'}"


_SCALARS = (str, int, float, bool)


def _build(cls: type[Any], raw: Mapping[str, Any], where: str) -> Any:
    """Build dataclass `cls` from a TOML table, naming the exact key on any error."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"{where}.{key}: unknown setting (known: {', '.join(sorted(fields))})"
            )
        kwargs[key] = _convert(fields[key].type, value, f"{where}.{key}")
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _convert(annotation: Any, value: Any, where: str) -> Any:
    ann = str(annotation)
    if ann == "Secret":
        return value if isinstance(value, Secret) else Secret(str(value))
    if ann == "Path":
        return Path(str(value))
    if ann.startswith("tuple[AmiServerConfig"):
        return tuple(_build(AmiServerConfig, v, f"{where}[{i}]") for i, v in enumerate(value))
    if ann.startswith("tuple[AgentConfig"):
        return tuple(_build(AgentConfig, v, f"{where}[{i}]") for i, v in enumerate(value))
    if ann == "Mapping[str, int]" and where.endswith(".retention_days"):
        return _retention_days(value, where)
    if ann.startswith("Mapping"):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table")
        return {str(k): str(v) for k, v in value.items()}
    nested = {
        "AmiConfig": AmiConfig,
        "AgiConfig": AgiConfig,
        "DialingConfig": DialingConfig,
        "CampaignConfig": CampaignConfig,
        "ComplianceConfig": ComplianceConfig,
        "WebConfig": WebConfig,
        "RecordingsConfig": RecordingsConfig,
        "MessagingConfig": MessagingConfig,
    }
    if ann in nested:
        return _build(nested[ann], value, where)
    expected = {"str": str, "int": int, "float": float, "bool": bool}.get(ann)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is not None and not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {ann}, got {value!r}")
    return value


def _retention_days(value: Any, where: str) -> dict[str, int]:
    """Tenant name -> days; a value may name a preset of RETENTION_PRESETS."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table of tenant = days")
    days: dict[str, int] = {}
    for tenant, v in value.items():
        if isinstance(v, str) and v in RETENTION_PRESETS:
            v = RETENTION_PRESETS[v]
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ConfigError(
                f"{where}.{tenant}: expected days > 0 or a preset "
                f"({', '.join(f'{k} = {d}' for k, d in RETENTION_PRESETS.items())}), got {v!r}"
            )
        days[str(tenant)] = v
    return days


def _env_overrides(config: Config, env: Mapping[str, str]) -> Config:
    """Apply environment overrides: DATABASE_URL, REDIS_URL, DIALER_* (documented in README)."""
    changes: dict[str, Any] = {}
    if env.get("DATABASE_URL"):
        changes["database_url"] = env["DATABASE_URL"]
    if env.get("REDIS_URL"):
        changes["redis_url"] = env["REDIS_URL"]
    if env.get("DIALER_DATA_DIR"):
        changes["data_dir"] = Path(env["DIALER_DATA_DIR"])
    if env.get("DIALER_NODE_ID"):
        changes["node_id"] = env["DIALER_NODE_ID"]
    if env.get("DIALER_TIME_SCALE"):
        try:
            changes["time_scale"] = float(env["DIALER_TIME_SCALE"])
        except ValueError as exc:
            raise ConfigError(
                f"DIALER_TIME_SCALE: not a number: {env['DIALER_TIME_SCALE']!r}"
            ) from exc
    if "DIALER_MESSAGING_FILE" in env:
        # Set but empty turns sending from the pages off.
        changes["messaging"] = MessagingConfig(file=env["DIALER_MESSAGING_FILE"])
    secret = env.get("DIALER_AMI_SECRET")
    if secret:
        servers = tuple(dataclasses.replace(s, secret=Secret(secret)) for s in config.ami.servers)
        changes["ami"] = dataclasses.replace(config.ami, servers=servers)
    return dataclasses.replace(config, **changes) if changes else config


def load_config(path: Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Defaults < TOML file < environment."""
    env = os.environ if env is None else env
    config = Config()
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"{path}: config file not found") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
        config = _build(Config, raw, str(path))
    return _env_overrides(config, env)
