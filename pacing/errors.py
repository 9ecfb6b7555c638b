"""The pacing exception tree: every error pacing raises on purpose derives from PacingError."""

from __future__ import annotations


class PacingError(Exception):
    """Base of every error raised on purpose by the pacing package."""


class UnknownAlgorithm(PacingError):
    """A pacing algorithm name that `make_pacer` does not know."""


class SnapshotError(PacingError):
    """Saved statistics could not be read back; the message says which part is wrong."""
