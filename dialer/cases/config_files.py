"""Managers' files (scores, strategies) read from TOML or JSON and checked, every error naming
the file and the key it is about."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from dialer.cases.errors import CaseError

__all__ = ["ConfigFileError", "load_document", "validate"]

M = TypeVar("M", bound=BaseModel)


class ConfigFileError(CaseError, ValueError):
    """A manager's file that cannot be used; `problems` lists "key: what is wrong" lines."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.source = source
        self.problems = problems


def key_path(loc: tuple[int | str, ...], data: object) -> str:
    """`('strategies', 'gentle', 'steps', 2, 'channel')` -> `strategies.gentle.steps[2].channel`.
    Pydantic puts a tagged union's tag (a step's `kind`) in the location; it is not a key of the
    file, which the walk over the data itself tells apart from a real key."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and 0 <= part < len(node) else None
            continue
        if isinstance(node, Mapping) and part not in node and node.get("kind") == part:
            continue
        out += f".{part}" if out else part
        node = node.get(part) if isinstance(node, Mapping) else None
    return out or "(top level)"


def validate(model: type[M], data: object, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            message = err["msg"].removeprefix("Value error, ")
            problems.append(f"{key_path(tuple(err['loc']), data)}: {message}")
        raise ConfigFileError(source, problems) from None


def load_document(path: str | Path) -> Mapping[str, object]:
    """A TOML or JSON file (by its suffix) as a mapping; a syntax error says where."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(str(p), [f"cannot read: {exc.strerror or exc}"]) from None
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigFileError(str(p), [f"line {exc.lineno}: {exc.msg}"]) from None
        if not isinstance(data, dict):
            raise ConfigFileError(str(p), ["(top level): expected an object"])
        return data
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(str(p), [str(exc)]) from None


def check_ranges(model: object) -> None:
    """A filter's days-past-due and balance bounds: ValueError naming the pair when min > max."""
    for low, high in (("days_past_due_min", "days_past_due_max"), ("balance_min", "balance_max")):
        lo, hi = getattr(model, low), getattr(model, high)
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"'{low}' is above '{high}'")
