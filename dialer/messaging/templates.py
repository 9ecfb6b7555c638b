"""Message templates per language, validated on load, rendered for one debtor (and previewed)."""

from __future__ import annotations

import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from dialer.messaging.errors import TemplateError
from dialer.messaging.models import Channel

LANGUAGES = ("zh-CN", "en")
# What a template may say about the debtor; anything else is a typo that would reach a debtor.
PLACEHOLDERS = {
    "name": "the debtor's full name",
    "amount": "what the debtor owes now, with its currency",
    "due_date": "the date the oldest open debt fell due",
    "payment_link": "the debtor's payment link (messaging config `payment_link`)",
}
_FORMATTER = string.Formatter()


@dataclass(frozen=True, slots=True)
class Personalisation:
    """The facts a template can use about one debtor."""

    name: str
    amount: Decimal
    currency: str
    due_date: date
    payment_link: str


@dataclass(frozen=True, slots=True)
class Rendered:
    template: str
    language: str
    channel: Channel
    subject: str | None
    body: str


@dataclass(frozen=True, slots=True)
class Variant:
    """One language of a template."""

    subject: str | None
    body: str


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    channel: Channel
    variants: Mapping[str, Variant]

    def language_for(self, wanted: str | None) -> str:
        """`wanted` when the template has it, else English, else its first language."""
        if wanted is not None and wanted in self.variants:
            return wanted
        return "en" if "en" in self.variants else next(iter(self.variants))

    def render(self, facts: Personalisation, language: str | None = None) -> Rendered:
        lang = self.language_for(language)
        variant = self.variants[lang]
        values = _values(facts, lang)
        subject = variant.subject.format_map(values) if variant.subject is not None else None
        return Rendered(self.name, lang, self.channel, subject, variant.body.format_map(values))


def format_amount(amount: Decimal, currency: str, language: str) -> str:
    figure = f"{amount:,.2f}"
    if language == "zh-CN":
        return f"{figure}元" if currency == "CNY" else f"{figure} {currency}"
    return f"{currency} {figure}"


def format_date(day: date, language: str) -> str:
    if language == "zh-CN":
        return f"{day.year}年{day.month}月{day.day}日"
    return day.isoformat()


def _values(facts: Personalisation, language: str) -> dict[str, str]:
    return {
        "name": facts.name,
        "amount": format_amount(facts.amount, facts.currency, language),
        "due_date": format_date(facts.due_date, language),
        "payment_link": facts.payment_link,
    }


def _check_text(text: Any, source: str, key: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(source, key, "expected non-empty text")
    try:
        parts = list(_FORMATTER.parse(text))
    except ValueError as exc:
        raise TemplateError(source, key, f"{exc} (write a literal brace as {{{{ or }}}})") from None
    for _literal, field_name, spec, conversion in parts:
        if field_name is None:
            continue
        if field_name not in PLACEHOLDERS:
            raise TemplateError(
                source,
                key,
                f"unknown placeholder {{{field_name}}} (known: "
                f"{', '.join('{' + p + '}' for p in PLACEHOLDERS)})",
            )
        if spec or conversion:
            raise TemplateError(
                source,
                key,
                f"placeholder {{{field_name}}} takes no format (it is formatted per language)",
            )
    return text


def parse_templates(raw: Mapping[str, Any], source: str) -> dict[str, Template]:
    """Templates from a parsed TOML document; every error names `source` and the key."""
    table = raw.get("templates")
    if not isinstance(table, Mapping) or not table:
        raise TemplateError(source, "templates", "expected a table of templates")
    out: dict[str, Template] = {}
    for name, spec in table.items():
        where = f"templates.{name}"
        if not isinstance(spec, Mapping):
            raise TemplateError(source, where, "expected a table")
        try:
            channel = Channel(spec.get("channel", ""))
        except ValueError:
            raise TemplateError(
                source, f"{where}.channel", f"expected sms or email, got {spec.get('channel')!r}"
            ) from None
        if channel is Channel.CALL:
            raise TemplateError(source, f"{where}.channel", "expected sms or email, got 'call'")
        variants: dict[str, Variant] = {}
        for lang, body in spec.items():
            if lang == "channel":
                continue
            key = f"{where}.{lang}"
            if lang not in LANGUAGES:
                raise TemplateError(
                    source, key, f"unknown language (known: {', '.join(LANGUAGES)})"
                )
            if not isinstance(body, Mapping):
                raise TemplateError(source, key, "expected a table with body (and subject)")
            for field_name in body:
                if field_name not in ("subject", "body"):
                    raise TemplateError(
                        source, f"{key}.{field_name}", "unknown key (subject, body)"
                    )
            subject = body.get("subject")
            if channel is Channel.EMAIL:
                subject = _check_text(subject, source, f"{key}.subject")
            elif subject is not None:
                raise TemplateError(source, f"{key}.subject", "an SMS has no subject")
            variants[lang] = Variant(subject, _check_text(body.get("body"), source, f"{key}.body"))
        if not variants:
            raise TemplateError(source, where, f"no language given ({', '.join(LANGUAGES)})")
        out[name] = Template(name, channel, variants)
    return out


def load_templates(path: str | Path) -> dict[str, Template]:
    """Templates from a TOML file, validated: an unknown placeholder is an error naming it."""
    source = str(path)
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TemplateError(source, "(file)", "template file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(source, "(file)", f"invalid TOML: {exc}") from None
    return parse_templates(raw, source)
