"""The exception tree of `recording`.

    RecordingError
    └── BadRecording   a file cannot be read as a call recording (corrupt, truncated, empty,
                       not 16-bit PCM, wrong channel layout); names the file and the reason

Callers that process many recordings catch `BadRecording`, mark that one failed with its
`reason`, and go on with the rest.
"""

from __future__ import annotations

from pathlib import Path


class RecordingError(Exception):
    """Base of every error raised on purpose by the recording package."""


class BadRecording(RecordingError):
    """A recording file is unusable; `path` names it and `reason` says why, in words."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class RecordingUnfinished(BadRecording):
    """A WAV whose header still says no audio while audio follows: its writer has not closed it
    yet (Asterisk finalises the sizes when MixMonitor closes the file), or died before it did.
    Looked at again later; only when the retries are spent does it fail as corrupt."""
