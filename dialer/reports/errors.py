"""The reports' exception tree: every error they raise on purpose derives from ReportError."""

from __future__ import annotations

from dialer.errors import DialerError


class ReportError(DialerError):
    """A report or snapshot cannot be made as asked; the message names what and why."""


class SnapshotRefused(ReportError, ValueError):
    """A snapshot date the store cannot vouch for (future, or older than yesterday)."""
