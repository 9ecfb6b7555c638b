"""Risk scores as data: a points table or a logistic model over a case's features, each score
explained term by term (pure; the nightly re-score feeds it the features from the store)."""

from __future__ import annotations

import bisect
import enum
import json
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
    "Scorer",
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


def _numeric_points(rule: NumericPoints, value: float | None) -> ScoreTerm:
    """The points `rule` gives a case whose feature is `value`, with the bin as the reason."""
    if value is None:
        return ScoreTerm(rule.feature, "none", rule.missing, f"{rule.feature} unknown")
    lower: float | None = None
    for b in rule.bins:
        if b.below is None or value < b.below:
            upper = "" if b.below is None else f" < {_fmt(b.below)}"
            low = "" if lower is None else f"{_fmt(lower)} <= "
            why = f"{rule.feature} {_fmt(value)} ({low}{rule.feature}{upper})"
            return ScoreTerm(rule.feature, _fmt(value), b.points, why)
        lower = b.below
    raise AssertionError("the last bin takes every value")  # pragma: no cover - validated


def _category_points(cat: CategoryPoints, label: str | None) -> ScoreTerm:
    points = cat.match.get(label, cat.default) if label is not None else cat.default
    matched = label is not None and label in cat.match
    why = f"{cat.feature} {label}" if matched else f"{cat.feature} {label or 'unknown'} (other)"
    return ScoreTerm(cat.feature, label or "", points, why)


def _coefficient_term(c: Coefficient, raw: float | None) -> ScoreTerm:
    """`c`'s part of the logit for a case whose feature is `raw`."""
    x = c.missing if raw is None else raw
    shown = "none" if raw is None else _fmt(raw)
    if c.transform == "log1p":
        x = math.log1p(max(x, 0.0))
        how = f"{_fmt(c.weight)} x log1p({shown})"
    else:
        how = f"{_fmt(c.weight)} x {shown}"
    return ScoreTerm(c.feature, shown, round(c.weight * x, 6), f"{c.feature}: {how}")


def _category_weight(cat: CategoryWeights, label: str | None) -> ScoreTerm:
    part = cat.weights.get(label, 0.0) if label is not None else 0.0
    return ScoreTerm(cat.feature, label or "", part, f"{cat.feature} {label or 'unknown'}")


def _points_total(model: PointsModel, terms: Sequence[ScoreTerm]) -> Score:
    total = round(sum((t.contribution for t in terms), 0.0), 6)
    return Score(total, _band(total, model.bands), tuple(terms), model.name)


def _logistic_total(model: LogisticModel, terms: Sequence[ScoreTerm], logit: float) -> Score:
    # The probability of not paying, in percent: the scale people read the bands on.
    value = round(100.0 / (1.0 + math.exp(-logit)), 2)
    return Score(value, _band(value, model.bands), tuple(terms), model.name)


def _base_term(model: PointsModel) -> list[ScoreTerm]:
    if not model.base:
        return []
    return [ScoreTerm("base", "", model.base, f"base {_fmt(model.base)}")]


def _score_points(model: PointsModel, case: CaseFeatures) -> Score:
    terms = _base_term(model)
    terms += [_numeric_points(rule, case.number(rule.feature)) for rule in model.numeric]
    terms += [_category_points(cat, case.category(cat.feature)) for cat in model.categories]
    return _points_total(model, terms)


def _score_logistic(model: LogisticModel, case: CaseFeatures) -> Score:
    terms = [ScoreTerm("intercept", "", model.intercept, f"intercept {_fmt(model.intercept)}")]
    logit = model.intercept
    for c in model.coefficients:
        term = _coefficient_term(c, case.number(c.feature))
        # The logit takes the unrounded part; the term shows it to six places.
        x = case.number(c.feature)
        x = c.missing if x is None else x
        logit += c.weight * (math.log1p(max(x, 0.0)) if c.transform == "log1p" else x)
        terms.append(term)
    for cat in model.categories:
        term = _category_weight(cat, case.category(cat.feature))
        logit += term.contribution
        terms.append(term)
    return _logistic_total(model, terms, logit)


class _Bins:
    """A points rule's bins for lookup by bisection, each with its reason's wording ready;
    gives what _numeric_points gives."""

    def __init__(self, rule: NumericPoints) -> None:
        self.rule = rule
        self.edges = [b.below for b in rule.bins if b.below is not None]
        self.points = [b.points for b in rule.bins]
        self.ranges: list[str] = []
        lower: float | None = None
        for b in rule.bins:
            upper = "" if b.below is None else f" < {_fmt(b.below)}"
            low = "" if lower is None else f"{_fmt(lower)} <= "
            self.ranges.append(f"({low}{rule.feature}{upper})")
            lower = b.below
        # The stored term of each bin with the value left to fill in: a number written by
        # _fmt needs no JSON escaping, so filling it in gives what _term_json gives.
        self.templates = [
            _JSON.encode([rule.feature, _SHOWN, points, f"{rule.feature} {_SHOWN} {where}"])
            for points, where in zip(self.points, self.ranges, strict=True)
        ]

    def json_of(self, value: float) -> tuple[float, str]:
        """The points and the stored term of a known (not NaN) value, without the ScoreTerm."""
        k = bisect.bisect_right(self.edges, value)
        return self.points[k], self.templates[k].replace(_SHOWN, _fmt(value))

    def term(self, value: float | None) -> ScoreTerm:
        if value is None or value != value:  # unknown, or NaN (which no bound is above)
            return _numeric_points(self.rule, value)
        k = bisect.bisect_right(self.edges, value)
        shown = _fmt(value)
        feature = self.rule.feature
        return ScoreTerm(feature, shown, self.points[k], f"{feature} {shown} {self.ranges[k]}")


class Scorer:
    """`score` for many cases of one model: each term is worked out once per distinct value
    and reused (days past due, promise counts and the like repeat across a portfolio), with
    its JSON ready. Gives exactly what `score` gives."""

    def __init__(self, model: PointsModel | LogisticModel) -> None:
        self.model = model
        self._numeric: list[dict[float | None, tuple[ScoreTerm, str, float]]] = []
        self._category: list[dict[str | None, tuple[ScoreTerm, str]]] = []
        self._fixed: list[tuple[ScoreTerm, str]] = []
        if isinstance(model, PointsModel):
            self._fixed = [(t, _term_json(t)) for t in _base_term(model)]
            self._numeric_of: list[str] = [r.feature for r in model.numeric]
            self._category_of: list[str] = [c.feature for c in model.categories]
            self._bins = [_Bins(r) for r in model.numeric]
        else:
            head = ScoreTerm("intercept", "", model.intercept, f"intercept {_fmt(model.intercept)}")
            self._fixed = [(head, _term_json(head))]
            self._numeric_of = [c.feature for c in model.coefficients]
            self._category_of = [c.feature for c in model.categories]
        self._numeric = [{} for _ in self._numeric_of]
        self._point_cache: list[dict[float | None, tuple[float, str]]] = [
            {} for _ in self._numeric_of
        ]
        self._category = [{} for _ in self._category_of]

    def _numeric_term(self, i: int, value: float | None) -> tuple[ScoreTerm, str, float]:
        cache = self._numeric[i]
        found = cache.get(value)
        if found is None:
            model = self.model
            if isinstance(model, PointsModel):
                term = self._bins[i].term(value)
                part = term.contribution
            else:
                c = model.coefficients[i]
                term = _coefficient_term(c, value)
                x = c.missing if value is None else value
                part = c.weight * (math.log1p(max(x, 0.0)) if c.transform == "log1p" else x)
            found = (term, _term_json(term), part)
            if len(cache) < _CACHE_LIMIT:
                cache[value] = found
        return found

    def _category_term(self, i: int, label: str | None) -> tuple[ScoreTerm, str]:
        cache = self._category[i]
        found = cache.get(label)
        if found is None:
            model = self.model
            if isinstance(model, PointsModel):
                term = _category_points(model.categories[i], label)
            else:
                term = _category_weight(model.categories[i], label)
            found = (term, _term_json(term))
            if len(cache) < _CACHE_LIMIT:
                cache[label] = found
        return found

    def value_json(self, case: CaseFeatures) -> tuple[float, RiskBand, str]:
        """The case's score, band and stored terms, without building the Score: the nightly
        re-score's path (a points model; a logistic one goes through score_json)."""
        model = self.model
        if not isinstance(model, PointsModel):
            result, terms = self.score_json(case)
            return result.value, result.band, terms
        total = 0.0
        parts = []
        for term, text in self._fixed:
            total += term.contribution
            parts.append(text)
        for i, name in enumerate(self._numeric_of):
            value = case.number(name)
            cache = self._point_cache[i]
            found = cache.get(value)
            if found is None:
                if value is None or value != value:
                    term = _numeric_points(model.numeric[i], value)
                    found = (term.contribution, _term_json(term))
                else:
                    found = self._bins[i].json_of(value)
                if len(cache) < _CACHE_LIMIT:
                    cache[value] = found
            total += found[0]
            parts.append(found[1])
        for i, label in enumerate(self._category_of):
            term, text = self._category_term(i, case.category(label))
            total += term.contribution
            parts.append(text)
        total = round(total, 6)
        return total, _band(total, model.bands), "[" + ",".join(parts) + "]"

    def score_json(self, case: CaseFeatures) -> tuple[Score, str]:
        """The case's score and its terms as stored: [[feature, value, points, reason], ...]."""
        terms = [t for t, _ in self._fixed]
        parts = [j for _, j in self._fixed]
        logit = terms[0].contribution if terms else 0.0
        for i, name in enumerate(self._numeric_of):
            term, text, part = self._numeric_term(i, case.number(name))
            terms.append(term)
            parts.append(text)
            if isinstance(self.model, LogisticModel):
                logit += part
        for i, label in enumerate(self._category_of):
            term, text = self._category_term(i, case.category(label))
            terms.append(term)
            parts.append(text)
            if isinstance(self.model, LogisticModel):
                logit += term.contribution
        model = self.model
        if isinstance(model, PointsModel):
            result = _points_total(model, terms)
        else:
            result = _logistic_total(model, terms, logit)
        return result, "[" + ",".join(parts) + "]"


# Distinct values kept per term: a continuous feature (balance) stops filling its cache here.
_CACHE_LIMIT = 4096


# Where a bin's stored term takes the case's value (see _Bins.templates).
_SHOWN = "@@value@@"
# Built once: json.dumps with options builds an encoder per call, a third of a term's cost.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _term_json(term: ScoreTerm) -> str:
    return _JSON.encode([term.feature, term.value, term.contribution, term.reason])


def terms_to_json(terms: Sequence[ScoreTerm]) -> str:
    """A score's explanation as stored: [[feature, value, points, reason], ...]."""
    return "[" + ",".join(_term_json(t) for t in terms) + "]"


def terms_from_json(text: str | None) -> tuple[ScoreTerm, ...]:
    if not text:
        return ()
    return tuple(ScoreTerm(str(f), str(v), float(p), str(r)) for f, v, p, r in json.loads(text))


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


__all__ += ["ConfigFileError", "score", "score_many", "terms_from_json", "terms_to_json"]
