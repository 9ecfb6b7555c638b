"""The messaging settings file (TOML): templates, payment link, SMS and e-mail providers.

Secrets may stay out of the file: DIALER_SMS_API_KEY and DIALER_SMTP_PASSWORD override it."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dialer.config import Secret
from dialer.errors import ConfigError
from dialer.messaging.file_provider import FileProvider
from dialer.messaging.http_sms import HttpSmsConfig, HttpSmsProvider
from dialer.messaging.models import Channel
from dialer.messaging.provider import Backoff, Provider
from dialer.messaging.smtp import SmtpConfig, SmtpProvider

_PROVIDERS = {"sms": ("http", "file", "console"), "email": ("smtp", "file", "console")}


@dataclass(frozen=True)
class ProviderSettings:
    kind: str
    options: Mapping[str, Any] = field(default_factory=dict)
    secret: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class MessagingFile:
    source: str
    tenant: str = ""  # empty: the dialer config's campaign.tenant
    templates: Path | None = None
    payment_link: str = ""
    campaign_id: str = "messages"
    sms: ProviderSettings | None = None
    email: ProviderSettings | None = None


def _provider(raw: Any, channel: str, source: str, env: Mapping[str, str]) -> ProviderSettings:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: {channel}: expected a table")
    kind = raw.get("provider")
    if kind not in _PROVIDERS[channel]:
        raise ConfigError(
            f"{source}: {channel}.provider: expected one of {', '.join(_PROVIDERS[channel])}, "
            f"got {kind!r}"
        )
    secret_key, env_key = (
        ("api_key", "DIALER_SMS_API_KEY")
        if channel == "sms"
        else (
            "password",
            "DIALER_SMTP_PASSWORD",
        )
    )
    secret = Secret(env.get(env_key) or str(raw.get(secret_key, "")))
    options = {k: v for k, v in raw.items() if k not in ("provider", secret_key)}
    if kind == "http" and not options.get("url"):
        raise ConfigError(f"{source}: sms.url: the gateway's base URL is required")
    if kind == "http" and not secret:
        raise ConfigError(f"{source}: sms.api_key: required (or set DIALER_SMS_API_KEY)")
    return ProviderSettings(str(kind), options, secret)


def load_messaging_file(path: Path, env: Mapping[str, str] | None = None) -> MessagingFile:
    env = os.environ if env is None else env
    source = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{source}: messaging settings file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    known = {"tenant", "templates", "payment_link", "campaign_id", "sms", "email"}
    for key in raw:
        if key not in known:
            raise ConfigError(
                f"{source}: {key}: unknown setting (known: {', '.join(sorted(known))})"
            )
    templates = raw.get("templates")
    return MessagingFile(
        source=source,
        tenant=str(raw.get("tenant", "")),
        # Relative to the settings file, so the two travel together.
        templates=(path.parent / str(templates)) if templates else None,
        payment_link=str(raw.get("payment_link", "")),
        campaign_id=str(raw.get("campaign_id", "messages")),
        sms=_provider(raw["sms"], "sms", source, env) if "sms" in raw else None,
        email=_provider(raw["email"], "email", source, env) if "email" in raw else None,
    )


def _backoff(options: Mapping[str, Any]) -> Backoff:
    return Backoff(
        tries=int(options.get("tries", 4)),
        base_s=float(options.get("backoff_s", 0.5)),
        cap_s=float(options.get("backoff_cap_s", 30.0)),
    )


def build_provider(channel: Channel, settings: ProviderSettings, where: str) -> Provider:
    o = settings.options
    try:
        if settings.kind == "http":
            return HttpSmsProvider(
                HttpSmsConfig(
                    url=str(o["url"]),
                    api_key=settings.secret,
                    sender=str(o.get("sender", "")),
                    batch_size=int(o.get("batch_size", 100)),
                    timeout_s=float(o.get("timeout_s", 10.0)),
                    backoff=_backoff(o),
                )
            )
        if settings.kind == "smtp":
            return SmtpProvider(
                SmtpConfig(
                    host=str(o.get("host", "127.0.0.1")),
                    port=int(o.get("port", 25)),
                    sender=str(o.get("sender", "collections@localhost")),
                    username=str(o.get("username", "")),
                    password=settings.secret,
                    starttls=bool(o.get("starttls", False)),
                    timeout_s=float(o.get("timeout_s", 10.0)),
                    batch_size=int(o.get("batch_size", 50)),
                    backoff=_backoff(o),
                )
            )
        path = Path(str(o["path"])) if settings.kind == "file" and o.get("path") else None
        if settings.kind == "file" and path is None:
            raise ConfigError(f"{where}.path: the file provider needs a path")
        return FileProvider(channel, path, name=settings.kind)
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def build_providers(settings: MessagingFile) -> dict[Channel, Provider]:
    out: dict[Channel, Provider] = {}
    if settings.sms is not None:
        out[Channel.SMS] = build_provider(Channel.SMS, settings.sms, f"{settings.source}: sms")
    if settings.email is not None:
        out[Channel.EMAIL] = build_provider(
            Channel.EMAIL, settings.email, f"{settings.source}: email"
        )
    return out
