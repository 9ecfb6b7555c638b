"""A development provider: every message is appended as one JSON line to a file (or stdout)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from dialer.messaging.models import Channel, Outgoing, SendResult


class FileProvider:
    """Accepts everything; `path` None writes to standard output (the console provider)."""

    batch_size = 1000

    def __init__(self, channel: Channel, path: Path | None, name: str = "file") -> None:
        self.name = name
        self.channel = channel
        self.path = path

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]:
        lines = "".join(
            json.dumps(
                {
                    "ref": m.ref,
                    "channel": self.channel.value,
                    "to": m.to,
                    "subject": m.subject,
                    "body": m.body,
                },
                ensure_ascii=False,
            )
            + "\n"
            for m in messages
        )
        if self.path is None:
            sys.stdout.write(lines)
            sys.stdout.flush()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as out:
                out.write(lines)
        return [SendResult(m.ref, True, provider_message_id=f"file-{m.ref}") for m in messages]

    def close(self) -> None:
        return None
