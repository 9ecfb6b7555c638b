"""The FastAGI exception tree: every error the core, the server and the scripts raise."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agi.protocol import AgiReply


class AgiError(Exception):
    """Base of every FastAGI error."""


class AgiProtocolError(AgiError):
    """The byte stream, or the use of the core, broke the AGI rules (framing, one at a time)."""


class AgiConnectionLost(AgiError):
    """Asterisk closed the socket (or it broke) while the script still needed it."""


class AgiReplyTimeout(AgiError):
    """No reply to a command in time; the session can no longer tell replies apart and is closed."""


class AgiCommandError(AgiError):
    """Asterisk refused a command; `reply` is what it said and `command` what we sent."""

    def __init__(self, command: str, reply: AgiReply) -> None:
        super().__init__(f"AGI command {command!r} failed: {reply.code} {reply.message}")
        self.command = command
        self.reply = reply


class AgiInvalidCommand(AgiCommandError):
    """510: Asterisk does not know the command."""


class AgiDeadChannel(AgiCommandError):
    """511: the channel has hung up and the command needs a live channel."""


class AgiUsageError(AgiCommandError):
    """520: the command's arguments were wrong; `reply.usage` holds Asterisk's usage text."""
