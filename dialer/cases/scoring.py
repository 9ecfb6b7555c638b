"""Risk scores as data: a points table or a logistic model over a case's features, each score
explained term by term (pure; the nightly re-score feeds it the features from the store)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from dialer.cases.config_files import ConfigFileError, load_document, validate

__all__ = [
    "CaseFeatures",
    "LogisticModel",
    "PointsModel",
    "RiskBand",
    "Score",
    "ScoreModel",
    "ScoreTerm",
    "load_score_model",
    "score_model_from_mapping",
]

NumericFeature = Literal[
    "days_past_due",
    "balance",
    "principal",
    "debts",
    "broken_promises",
    "kept_promises",
    "paid_ratio",
    "attempts_30d",
    "right_party_contacts_30d",
    "days_since_last_contact",
]
CategoryFeature = Literal["region", "product", "language"]


class RiskBand(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


@dataclass(frozen=True, slots=True)
class CaseFeatures:
    """What the score looks at, for one case on one day. `paid_ratio` is paid / principal over
    the case's life; `days_since_last_contact` is None when the debtor was never reached."""

    days_past_due: int
    balance: float
    principal: float
    debts: int = 1
    broken_promises: int = 0
    kept_promises: int = 0
    paid_ratio: float = 0.0
    attempts_30d: int = 0
    right_party_contacts_30d: int = 0
    days_since_last_contact: int | None = None
    region: str | None = None
    product: str | None = None
    language: str | None = None

    def number(self, name: str) -> float | None:
        value = getattr(self, name)
        return None if value is None else float(value)

    def category(self, name: str) -> str | None:
        value = getattr(self, name)
        return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class ScoreTerm:
    """One line of a score's explanation: the feature, what the case had, what it added."""

    feature: str
    value: str
    contribution: float
    reason: str


@dataclass(frozen=True, slots=True)
class Score:
    """Higher is riskier. Points models add points; logistic models give the probability, in
    percent, that the case does not pay."""

    value: float
    band: RiskBand
    terms: tuple[ScoreTerm, ...]
    model: str

    def explain(self) -> str:
        lines = [f"risk {self.value:g} ({self.band.value}) by {self.model}"]
        lines += [f"  {t.contribution:+g}  {t.reason}" for t in self.terms]
        return "\n".join(lines)


# --- the file's shapes (validated with pydantic so an error names its key) ------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bin(_Strict):
    """`below` is exclusive; the last bin of a feature leaves it out and takes the rest."""

    below: float | None = None
    points: float


class NumericPoints(_Strict):
    feature: NumericFeature
    bins: list[Bin] = Field(min_length=1)
    missing: float = 0.0  # points when the case has no value (never contacted)

    @model_validator(mode="after")
    def _bins_rise(self) -> NumericPoints:
        edges = [b.below for b in self.bins]
        if edges[-1] is not None:
            raise ValueError("the last bin must have no 'below' (it takes every larger value)")
        if any(e is None for e in edges[:-1]):
            raise ValueError("only the last bin may leave out 'below'")
        bounded = [e for e in edges[:-1] if e is not None]
        if bounded != sorted(set(bounded)):
            raise ValueError("'below' must rise from one bin to the next")
        return self


class CategoryPoints(_Strict):
    feature: CategoryFeature
    match: dict[str, float]
    default: float = 0.0


class Bands(_Strict):
    """Lower bounds of the medium and high bands, on the model's own scale."""

    medium: float
    high: float

    @model_validator(mode="after")
    def _ordered(self) -> Bands:
        if self.high <= self.medium:
            raise ValueError("'high' must be above 'medium'")
        return self


class PointsModel(_Strict):
    kind: Literal["points"]
    name: str = "points"
    base: float = 0.0
    numeric: list[NumericPoints] = []
    categories: list[CategoryPoints] = []
    bands: Bands


class Coefficient(_Strict):
    feature: NumericFeature
    weight: float
    # Money and days span orders of magnitude: log1p keeps one debtor from swamping the rest.
    transform: Literal["none", "log1p"] = "none"
    missing: float = 0.0  # the value used when the case has none


class CategoryWeights(_Strict):
    feature: CategoryFeature
    weights: dict[str, float]


class LogisticModel(_Strict):
    kind: Literal["logistic"]
    name: str = "logistic"
    intercept: float
    coefficients: list[Coefficient] = []
    categories: list[CategoryWeights] = []
    bands: Bands = Bands(medium=40.0, high=70.0)


ScoreModel = Annotated[PointsModel | LogisticModel, Field(discriminator="kind")]


class _ScoreFile(_Strict):
    score: ScoreModel


def _band(value: float, bands: Bands) -> RiskBand:
    if value >= bands.high:
        return RiskBand.HIGH
    if value >= bands.medium:
        return RiskBand.MEDIUM
    return RiskBand.LOW


def _fmt(value: float) -> str:
    return f"{value:g}"


def _score_points(model: PointsModel, case: CaseFeatures) -> Score:
    terms: list[ScoreTerm] = []
    total = model.base
    if model.base:
        terms.append(ScoreTerm("base", "", model.base, f"base {_fmt(model.base)}"))
    for rule in model.numeric:
        value = case.number(rule.feature)
        if value is None:
            points, shown, why = rule.missing, "none", f"{rule.feature} unknown"
        else:
            lower: float | None = None
            for b in rule.bins:
                if b.below is None or value < b.below:
                    points = b.points
                    upper = "" if b.below is None else f" < {_fmt(b.below)}"
                    low = "" if lower is None else f"{_fmt(lower)} <= "
                    why = f"{rule.feature} {_fmt(value)} ({low}{rule.feature}{upper})"
                    break
                lower = b.below
            shown = _fmt(value)
        total += points
        terms.append(ScoreTerm(rule.feature, shown, points, why))
    for cat in model.categories:
        label = case.category(cat.feature)
        points = cat.match.get(label, cat.default) if label is not None else cat.default
        matched = label is not None and label in cat.match
        why = f"{cat.feature} {label}" if matched else f"{cat.feature} {label or 'unknown'} (other)"
        total += points
        terms.append(ScoreTerm(cat.feature, label or "", points, why))
    total = round(total, 6)
    return Score(total, _band(total, model.bands), tuple(terms), model.name)


def _score_logistic(model: LogisticModel, case: CaseFeatures) -> Score:
    terms = [ScoreTerm("intercept", "", model.intercept, f"intercept {_fmt(model.intercept)}")]
    logit = model.intercept
    for c in model.coefficients:
        raw = case.number(c.feature)
        x = c.missing if raw is None else raw
        shown = "none" if raw is None else _fmt(raw)
        if c.transform == "log1p":
            x = math.log1p(max(x, 0.0))
            how = f"{_fmt(c.weight)} x log1p({shown})"
        else:
            how = f"{_fmt(c.weight)} x {shown}"
        part = c.weight * x
        logit += part
        terms.append(ScoreTerm(c.feature, shown, round(part, 6), f"{c.feature}: {how}"))
    for cat in model.categories:
        label = case.category(cat.feature)
        part = cat.weights.get(label, 0.0) if label is not None else 0.0
        logit += part
        terms.append(
            ScoreTerm(cat.feature, label or "", part, f"{cat.feature} {label or 'unknown'}")
        )
    # The probability of not paying, in percent: the scale people read the bands on.
    value = round(100.0 / (1.0 + math.exp(-logit)), 2)
    return Score(value, _band(value, model.bands), tuple(terms), model.name)


def score(model: PointsModel | LogisticModel, case: CaseFeatures) -> Score:
    """The case's risk on `model`, with one term per feature the model looks at."""
    if isinstance(model, PointsModel):
        return _score_points(model, case)
    return _score_logistic(model, case)


def score_model_from_mapping(
    data: Mapping[str, object], source: str = "<score>"
) -> PointsModel | LogisticModel:
    """A model from the `[score]` table of a parsed file; errors name the key."""
    return validate(_ScoreFile, data, source).score


def load_score_model(path: str) -> PointsModel | LogisticModel:
    """A model from a TOML or JSON file with a `[score]` table."""
    return score_model_from_mapping(load_document(path), path)


def score_many(model: PointsModel | LogisticModel, cases: Sequence[CaseFeatures]) -> list[Score]:
    return [score(model, c) for c in cases]


__all__ += ["ConfigFileError", "score", "score_many"]
