"""The dialer's exception tree: every error the product raises on purpose derives from DialerError."""

from __future__ import annotations


class DialerError(Exception):
    """Base of every error raised on purpose by the dialer package."""


class ConfigError(DialerError):
    """The configuration file or an environment override is invalid; the message names the key."""


class StoreError(DialerError):
    """The database could not be opened, migrated or written."""


class ImportRowError(DialerError):
    """One CSV row was rejected; carries its line number and the reason."""

    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


class AmiError(DialerError):
    """Base of AMI errors."""


class AmiProtocolError(AmiError):
    """A frame from Asterisk could not be parsed; the connection goes on."""


class AmiConnectionLost(AmiError):
    """The AMI connection dropped; every pending action fails with this."""


class AmiAuthenticationError(AmiError):
    """Asterisk refused our credentials; retrying will not help (fatal)."""


class AmiActionError(AmiError):
    """Asterisk answered an action with `Response: Error`."""

    def __init__(self, action: str, message: str) -> None:
        super().__init__(f"{action}: {message}")
        self.action = action
        self.message = message


class AmiTimeout(AmiError):
    """No reply to an action within the configured time."""
