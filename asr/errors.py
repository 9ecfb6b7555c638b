"""The speech-recognition exception tree: every error `asr` raises on purpose derives from AsrError."""

from __future__ import annotations

from pathlib import Path


class AsrError(Exception):
    """Base of every error raised on purpose by the speech-recognition package."""


class BadAudio(AsrError):
    """An audio file or buffer cannot be used; the message names the file and what is wrong."""

    def __init__(self, source: str | Path, problem: str) -> None:
        super().__init__(f"{source}: {problem}")
        self.source = str(source)
        self.problem = problem


class ModelNotFound(AsrError):
    """A recognition model directory is missing, incomplete, or refused by its engine."""

    def __init__(self, model: str | Path, problem: str) -> None:
        super().__init__(f"model {model}: {problem}")
        self.model = str(model)
        self.problem = problem


class EngineUnavailable(AsrError):
    """An engine name is unknown, or its library cannot be imported on this machine."""


class WorkerFailed(AsrError):
    """A recognition worker process could not start (its model failed to load) or died."""
