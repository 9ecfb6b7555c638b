"""The messaging exception tree: every error raised on purpose derives from MessagingError."""

from __future__ import annotations

from dialer.errors import DialerError


class MessagingError(DialerError):
    """Base of the messaging package's errors."""


class TemplateError(MessagingError):
    """A template file is invalid; the message names the file, the key and what is wrong."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class AudienceError(MessagingError):
    """The list of debtors to message cannot be read; names the file or value at fault."""


class ProviderError(MessagingError):
    """A provider could not take a message.

    `permanent`: sending it again will fail the same way (the gateway said 4xx, the address
    was refused); otherwise the failure is transient (5xx, timeout, connection refused)."""

    def __init__(self, message: str, *, permanent: bool) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.tries = 1  # set by the retry loop: how many tries it took to give up
