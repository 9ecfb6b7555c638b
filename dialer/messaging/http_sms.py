"""A generic HTTP SMS gateway: JSON POSTs with an API key, retries of 5xx and timeouts, receipts.

The wire contract (what a gateway, or an adapter in front of one, implements):

* ``POST {url}/messages`` with ``Authorization: Bearer <api key>`` and
  ``{"from": sender, "messages": [{"ref": "m-17", "to": "+86...", "text": "..."}]}``.
  2xx answers ``{"results": [{"ref": "m-17", "id": "gw-1", "status": "accepted"}]}`` (or
  ``"status": "rejected", "error": "..."`` for one message). ``ref`` is ours and stable: a
  gateway that sees a ref again answers with the first id and does not send twice.
  408, 429 and 5xx, timeouts and refused connections are transient and retried with backoff;
  any other 4xx is permanent (bad key, bad request): retrying would only repeat it.
* ``GET {url}/receipts?after=<cursor>`` answers ``{"receipts": [{"id": "gw-1", "status":
  "delivered" | "failed", "at": ISO-8601, "detail": "..."}], "cursor": "..."}``; the same
  receipt objects may instead be POSTed to the dialer's ``/api/messaging/receipts``.
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

from dialer.config import Secret
from dialer.messaging.errors import ProviderError
from dialer.messaging.models import Channel, DeliveryReceipt, Outgoing, SendResult
from dialer.messaging.provider import Backoff

log = logging.getLogger(__name__)

_TRANSIENT_STATUS = {408, 429}


@dataclass(frozen=True)
class HttpSmsConfig:
    url: str  # the gateway's base URL, e.g. https://sms.example.com/v1
    api_key: Secret = field(default_factory=lambda: Secret(""))
    sender: str = ""
    batch_size: int = 100  # messages per POST (1: one POST per message)
    timeout_s: float = 10.0
    backoff: Backoff = field(default_factory=Backoff)


class HttpSmsProvider:
    """One keep-alive connection to the gateway; not shared between threads."""

    channel = Channel.SMS

    def __init__(self, config: HttpSmsConfig, name: str = "http-sms") -> None:
        parts = urlsplit(config.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"messaging.sms.url: not an http(s) URL: {config.url!r}")
        self.name = name
        self.config = config
        self.batch_size = max(1, config.batch_size)
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._path = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    # -- the connection -------------------------------------------------------------------
    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            self._conn = cls(self._host, self._port, timeout=self.config.timeout_s)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _request(self, method: str, path: str, payload: Any = None) -> Any:
        """One request; ProviderError(permanent=...) on any failure. The key never appears in
        an error or a log line."""
        body = json.dumps(payload, ensure_ascii=False).encode() if payload is not None else None
        headers = {
            "Authorization": f"Bearer {self.config.api_key.reveal()}",
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        conn = self._connection()
        try:
            conn.request(method, self._path + path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except TimeoutError as exc:
            self.close()
            raise ProviderError(
                f"{self.name}: {method} {path}: timed out", permanent=False
            ) from exc
        except (OSError, http.client.HTTPException) as exc:
            self.close()  # the next try starts on a fresh connection
            raise ProviderError(
                f"{self.name}: {method} {path}: {type(exc).__name__}: {exc}", permanent=False
            ) from exc
        status = response.status
        if response.getheader("Connection", "").lower() == "close":
            self.close()
        if status >= 500 or status in _TRANSIENT_STATUS:
            raise ProviderError(f"{self.name}: {method} {path}: HTTP {status}", permanent=False)
        if status >= 300:
            text = data[:200].decode("utf-8", "replace")
            raise ProviderError(
                f"{self.name}: {method} {path}: HTTP {status} {text}".rstrip(), permanent=True
            )
        try:
            return json.loads(data) if data else {}
        except ValueError as exc:
            raise ProviderError(
                f"{self.name}: {method} {path}: answer is not JSON", permanent=False
            ) from exc

    # -- sending --------------------------------------------------------------------------
    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        out: list[SendResult] = []
        for start in range(0, len(messages), self.batch_size):
            out += self._send_chunk(messages[start : start + self.batch_size])
        return out

    def _send_chunk(self, chunk: Sequence[Outgoing]) -> list[SendResult]:
        payload = {
            "from": self.config.sender,
            "messages": [{"ref": m.ref, "to": m.to, "text": m.body} for m in chunk],
        }
        try:
            answer, tries = self.config.backoff.run(
                lambda: self._request("POST", "/messages", payload)
            )
        except ProviderError as exc:
            log.warning(
                "x %s: %d messages not sent after %d tries: %s",
                self.name,
                len(chunk),
                exc.tries,
                exc,
            )
            return [
                SendResult(m.ref, False, error=str(exc), permanent=exc.permanent, tries=exc.tries)
                for m in chunk
            ]
        by_ref = {}
        for item in answer.get("results", []) if isinstance(answer, dict) else []:
            if isinstance(item, dict) and "ref" in item:
                by_ref[str(item["ref"])] = item
        results = []
        for m in chunk:
            item = by_ref.get(m.ref)
            if item is None:
                # Accepted the request but said nothing of this message: sending it again
                # could duplicate it, so it is failed for a person to look at.
                results.append(
                    SendResult(
                        m.ref, False, error="gateway gave no result", permanent=True, tries=tries
                    )
                )
            elif item.get("status") == "accepted" and item.get("id"):
                results.append(SendResult(m.ref, True, str(item["id"]), tries=tries))
            else:
                error = str(item.get("error") or item.get("status") or "rejected")
                results.append(SendResult(m.ref, False, error=error, permanent=True, tries=tries))
        return results

    # -- receipts -------------------------------------------------------------------------
    def poll_receipts(self, cursor: str = "") -> tuple[list[DeliveryReceipt], str]:
        """Receipts after `cursor`, and the cursor to pass next time."""
        answer, _ = self.config.backoff.run(
            lambda: self._request("GET", f"/receipts?after={quote(cursor)}")
        )
        items = answer.get("receipts", []) if isinstance(answer, dict) else []
        receipts = [parse_receipt(item) for item in items]
        return receipts, str(answer.get("cursor", cursor)) if isinstance(answer, dict) else cursor


def parse_receipt(item: Any) -> DeliveryReceipt:
    """A receipt object of the wire contract; ValueError names what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"receipt: expected an object, got {type(item).__name__}")
    pid = item.get("id")
    if not isinstance(pid, str) or not pid:
        raise ValueError("receipt.id: expected the gateway's message id")
    status = item.get("status")
    if status not in ("delivered", "failed"):
        raise ValueError(f"receipt.status: expected delivered or failed, got {status!r}")
    raw_at = item.get("at")
    try:
        at = datetime.fromisoformat(raw_at) if isinstance(raw_at, str) else datetime.now(UTC)
    except ValueError:
        raise ValueError(f"receipt.at: not an ISO-8601 time: {raw_at!r}") from None
    if at.tzinfo is None:
        raise ValueError(f"receipt.at: needs a UTC offset: {raw_at!r}")
    return DeliveryReceipt(pid, status == "delivered", at, str(item.get("detail", "")))
