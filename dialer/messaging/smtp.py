"""E-mail through an SMTP server: one session per batch, 4xx and lost connections retried."""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

from dialer.config import Secret
from dialer.messaging.errors import ProviderError
from dialer.messaging.models import Channel, Outgoing, SendResult
from dialer.messaging.provider import Backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "collections@localhost"
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    starttls: bool = False
    timeout_s: float = 10.0
    batch_size: int = 50  # messages per SMTP session
    backoff: Backoff = field(default_factory=Backoff)


def _mime(config: SmtpConfig, message: Outgoing) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = config.sender
    mail["To"] = message.to
    mail["Subject"] = message.subject or ""
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    # Derived from our stable reference: a mail resent after a crash carries the same id, so
    # the receiving side can tell it is one message.
    domain = config.sender.rpartition("@")[2] or "localhost"
    mail["Message-ID"] = f"<{message.ref}@{domain}>"
    mail.set_content(message.body)
    return mail


class SmtpProvider:
    channel = Channel.EMAIL

    def __init__(self, config: SmtpConfig, name: str = "smtp") -> None:
        self.name = name
        self.config = config
        self.batch_size = max(1, config.batch_size)

    def close(self) -> None:
        return None  # a session lives for one batch

    def _session(self) -> smtplib.SMTP:
        cfg = self.config
        try:
            server = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
            if cfg.starttls:
                server.starttls(context=ssl.create_default_context())
            if cfg.username:
                server.login(cfg.username, cfg.password.reveal())
        except smtplib.SMTPAuthenticationError as exc:
            raise ProviderError(
                f"{self.name}: login refused ({exc.smtp_code})", permanent=True
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise ProviderError(
                f"{self.name}: cannot reach {cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}",
                permanent=False,
            ) from exc
        return server

    def _send_one(self, server: smtplib.SMTP, message: Outgoing) -> SendResult:
        try:
            refused = server.send_message(_mime(self.config, message))
        except smtplib.SMTPRecipientsRefused as exc:
            code = next(iter(exc.recipients.values()))[0] if exc.recipients else 550
            return SendResult(
                message.ref, False, error=f"recipient refused ({code})", permanent=code >= 500
            )
        except smtplib.SMTPResponseException as exc:
            return SendResult(
                message.ref,
                False,
                error=f"server said {exc.smtp_code}",
                permanent=exc.smtp_code >= 500,
            )
        if refused:
            return SendResult(message.ref, False, error="recipient refused", permanent=True)
        return SendResult(message.ref, True, provider_message_id=f"<{message.ref}>")

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        out: dict[str, SendResult] = {}
        pending = list(messages)
        attempt = 1
        backoff = self.config.backoff
        # A session that breaks mid-batch is retried for the messages it did not finish.
        while pending:
            try:
                server = self._session()
            except ProviderError as exc:
                if exc.permanent or attempt >= backoff.tries:
                    for m in pending:
                        out[m.ref] = SendResult(
                            m.ref, False, error=str(exc), permanent=exc.permanent, tries=attempt
                        )
                    break
                backoff.sleep(backoff.wait(attempt))
                attempt += 1
                continue
            try:
                while pending:
                    result = self._send_one(server, pending[0])
                    if not result.ok and not result.permanent and attempt < backoff.tries:
                        raise ProviderError(result.error or "transient", permanent=False)
                    out[pending[0].ref] = SendResult(
                        result.ref,
                        result.ok,
                        result.provider_message_id,
                        result.error,
                        result.permanent,
                        attempt,
                    )
                    pending.pop(0)
            except (ProviderError, OSError, smtplib.SMTPServerDisconnected) as exc:
                log.info(
                    "x %s: session broke (%s), retrying %d messages", self.name, exc, len(pending)
                )
                backoff.sleep(backoff.wait(attempt))
                attempt += 1
            finally:
                try:
                    server.quit()
                except (OSError, smtplib.SMTPException):
                    server.close()
        return [out[m.ref] for m in messages]
