"""The exception tree of `sim.audio`.

AudioError
├── AudioUnavailable   a source is missing here (Debian's prompts, espeak-ng, a voice)
└── ScriptError        a script file is malformed or names a prompt that does not exist
"""

from __future__ import annotations


class AudioError(Exception):
    """Anything `sim.audio` refuses to do."""


class AudioUnavailable(AudioError):
    """A source of speech is not installed: the message says which and how to get it."""


class ScriptError(AudioError):
    """A script (sim/audio/scripts/*.toml) is malformed or refers to an unknown prompt."""
