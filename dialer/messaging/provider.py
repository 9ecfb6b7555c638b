"""The provider seam: what every SMS / e-mail provider offers, and retries with backoff."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from dialer.messaging.errors import ProviderError
from dialer.messaging.models import Channel, Outgoing, SendResult

T = TypeVar("T")


class Provider(Protocol):
    """Sends messages of one channel. `send` never raises for a message's own failure: each
    message gets a SendResult (accepted, or failed and whether for good)."""

    name: str
    channel: Channel
    batch_size: int

    def send(self, messages: Sequence[Outgoing]) -> list[SendResult]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Backoff:
    """Retries of transient failures: `tries` in all, waits doubling from `base_s` up to
    `cap_s`, each drawn at random in [wait/2, wait] so that many senders do not retry in step."""

    tries: int = 4
    base_s: float = 0.5
    cap_s: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def wait(self, attempt: int) -> float:
        """The pause after failed try number `attempt` (1-based)."""
        full = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        return float(full / 2 + self.rng.random() * full / 2)

    def run(self, action: Callable[[], T]) -> tuple[T, int]:
        """`action`'s result and how many tries it took; a permanent ProviderError, or the
        last transient one once the tries are spent, is raised (with `.tries` set)."""
        attempt = 1
        while True:
            try:
                return action(), attempt
            except ProviderError as exc:
                if exc.permanent or attempt >= self.tries:
                    exc.tries = attempt
                    raise
                self.sleep(self.wait(attempt))
                attempt += 1
