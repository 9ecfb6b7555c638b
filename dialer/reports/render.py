"""A report as CSV, JSON, PNG (one page) and PDF (two A4 pages a manager can mail).

Charts and tables are drawn with matplotlib's object API (no pyplot, so no global figure
state). Chinese labels need a CJK font: the first of `CJK_FONTS` installed on the machine is put
behind DejaVu Sans in the font family list, and matplotlib falls back to it glyph by glyph
(Debian: `apt-get install fonts-noto-cjk`). Without one, CJK text shows as empty boxes.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from dialer.reports.definitions import BY_KEY
from dialer.reports.models import Figures, Period, Report

# Figures in the CSV, in order (every figure of a row).
CSV_COLUMNS: tuple[str, ...] = (
    "attempts",
    "contacts",
    "contact_rate",
    "right_party_contacts",
    "right_party_contact_rate",
    "promises",
    "promise_rate",
    "promised_amount",
    "promises_due",
    "promises_kept",
    "kept_promise_rate",
    "collected",
    "assigned",
    "recovered",
    "recovery_rate",
    "live_answers",
    "abandoned",
    "abandon_rate",
    "talk_seconds",
    "owing_at_opening",
    "rolled_forward",
    "roll_forward_rate",
)
# Families tried, in order, for CJK glyphs (Linux, macOS, Windows names).
CJK_FONTS: tuple[str, ...] = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Source Han Sans SC",
    "WenQuanYi Zen Hei",
    "PingFang SC",
    "Microsoft YaHei",
)
A4_INCHES = (8.27, 11.69)
PNG_DPI = 150
# The figures on the first page's table: (figure key, short heading).
TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("attempts", "Attempts\n拨打"),
    ("contact_rate", "Contact\n接通率"),
    ("right_party_contact_rate", "RPC\n本人"),
    ("promise_rate", "PTP\n承诺率"),
    ("kept_promise_rate", "Kept\n守约率"),
    ("collected", "Collected\n回款"),
    ("recovery_rate", "Recovery\n回收率"),
    ("abandon_rate", "Abandon\n放弃率"),
    ("roll_forward_rate", "Roll fwd\n迁徙率"),
)


def to_json(report: Report) -> str:
    return json.dumps(report.as_json(), ensure_ascii=False, indent=2)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def to_csv(report: Report) -> str:
    """One line per group and one for all (label "All"); empty cells where a figure is not
    defined (a rate over nothing, money by campaign, no snapshot)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", "start", "end", "by", "currency", "key", "label", *CSV_COLUMNS])
    head = [
        report.span.period.value,
        report.span.start.isoformat(),
        report.span.end.isoformat(),
        report.by.value,
        report.currency or "",
    ]
    for figures in (*report.rows, report.totals):
        data = figures.as_json()
        writer.writerow([*head, figures.key, figures.label, *(_cell(data[k]) for k in CSV_COLUMNS)])
    return out.getvalue()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _show(key: str, data: dict[str, Any]) -> str:
    value = data[key]
    if key.endswith("_rate"):
        return _pct(value)
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else str(value)


@contextmanager
def _fonts() -> Iterator[None]:
    import matplotlib
    from matplotlib import font_manager

    installed = {f.name for f in font_manager.fontManager.ttflist}
    family = ["DejaVu Sans", *(name for name in CJK_FONTS if name in installed)]
    with matplotlib.rc_context({"font.family": family, "font.size": 8}):
        yield


def _title(report: Report) -> str:
    span = report.span
    when = span.start.isoformat() if span.period is Period.DAY else f"{span.start} – {span.end}"
    return f"Collection report 催收报表 — {report.tenant}\n{span.period.value} {when}"


def _table(ax: Any, header: Sequence[str], rows: Sequence[Sequence[str]], *, size: float) -> None:
    ax.axis("off")
    if not rows:
        ax.text(0.5, 0.5, "nothing in this period / 本期无数据", ha="center", va="center")
        return
    table = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="right")
    table.auto_set_font_size(False)
    table.set_fontsize(size)
    table.scale(1, 1.5)
    for (r, _c), cell in table.get_celld().items():
        cell.set_linewidth(0.3)
        if r == 0:
            cell.set_facecolor("#e8eef7")
            cell.set_height(cell.get_height() * 1.6)


def _figures_rows(report: Report) -> list[list[str]]:
    rows: list[Figures] = [*report.rows, report.totals]
    return [[f.label[:22], *(_show(k, f.as_json()) for k, _ in TABLE_COLUMNS)] for f in rows]


def _first_page(report: Report) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_INCHES)
    fig.suptitle(_title(report), fontsize=13, y=0.975)
    fig.text(
        0.5,
        0.925,
        f"by {report.by.value} · time zone {report.timezone} · money in "
        f"{report.currency or '—'} · generated {report.generated_at:%Y-%m-%d %H:%M} UTC",
        ha="center",
        fontsize=8,
        color="#555555",
    )
    grid = fig.add_gridspec(3, 1, height_ratios=[1.3, 1, 1], top=0.9, bottom=0.05, hspace=0.35)
    _table(
        fig.add_subplot(grid[0]),
        ["", *(h for _, h in TABLE_COLUMNS)],
        _figures_rows(report),
        size=7,
    )
    _rates_chart(fig.add_subplot(grid[1]), report)
    _days_chart(fig.add_subplot(grid[2]), report)
    return fig


def _rates_chart(ax: Any, report: Report) -> None:
    """Contact, right-party and promise rates per group, side by side."""
    groups = [*report.rows] or [report.totals]
    labels = [g.label[:14] for g in groups]
    series = (
        ("contact rate 接通率", [g.contact_rate or 0 for g in groups]),
        ("RPC rate 本人接通率", [g.right_party_contact_rate or 0 for g in groups]),
        ("PTP rate 承诺率", [g.promise_rate or 0 for g in groups]),
    )
    width = 0.8 / len(series)
    for i, (name, values) in enumerate(series):
        ax.bar([x + i * width for x in range(len(groups))], values, width, label=name)
    ax.set_xticks([x + width for x in range(len(groups))], labels, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.yaxis.set_major_formatter(lambda v, _pos: f"{v:.0%}")
    ax.set_title(f"Rates by {report.by.value}")
    ax.legend(fontsize=7, loc="upper right")
    ax.grid(axis="y", linewidth=0.3)


def _days_chart(ax: Any, report: Report) -> None:
    """Attempts and contacts per day (a week or month), or per group for a single day."""
    if len(report.days) > 1:
        xs = [d.day.strftime("%m-%d") for d in report.days]
        ax.plot(xs, [d.attempts for d in report.days], marker="o", label="attempts 拨打")
        ax.plot(xs, [d.contacts for d in report.days], marker="o", label="contacts 接通")
        ax.plot(xs, [d.promises for d in report.days], marker="o", label="promises 承诺")
        ax.set_title("Per day")
        if len(xs) > 10:
            ax.set_xticks(xs[::3])
    else:
        groups = [*report.rows] or [report.totals]
        labels = [g.label[:14] for g in groups]
        ax.bar(labels, [g.counts.attempts for g in groups], label="attempts 拨打")
        ax.bar(labels, [g.counts.contacts for g in groups], label="contacts 接通")
        ax.set_title(f"Attempts and contacts by {report.by.value}")
        ax.tick_params(axis="x", rotation=20)
    ax.legend(fontsize=7)
    ax.grid(axis="y", linewidth=0.3)


def _second_page(report: Report) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4_INCHES)
    fig.suptitle("Agents, roll rates, notes 坐席 · 迁徙 · 说明", fontsize=12, y=0.975)
    grid = fig.add_gridspec(3, 1, height_ratios=[1.2, 1, 1], top=0.93, bottom=0.04, hspace=0.3)
    agents = [a.as_json() for a in report.agents]
    _table(
        fig.add_subplot(grid[0]),
        ["Agent 坐席", "Calls", "Talk min", "Promises", "Promised", "Collected", "QA"],
        [
            [
                a["agent_id"],
                f"{a['calls']:,}",
                f"{a['talk_seconds'] / 60:,.1f}",
                f"{a['promises']:,}",
                a["promised_amount"],
                a["collected"],
                "—" if a["qa_score"] is None else f"{a['qa_score']:.1f}",
            ]
            for a in agents[:25]
        ],
        size=7,
    )
    roll_ax = fig.add_subplot(grid[1])
    if report.roll is None:
        roll_ax.axis("off")
        roll_ax.text(0.5, 0.5, "roll rates: no snapshots (see notes)", ha="center")
    else:
        roll = report.roll
        used = [
            b for b in roll.buckets if any(b in (c.from_bucket, c.to_bucket) for c in roll.matrix)
        ]
        counts = {(c.from_bucket, c.to_bucket): c.debts for c in roll.matrix}
        forward = roll.roll_forward()
        rows = [
            [b, *(f"{counts.get((b, t), 0):,}" for t in used), _pct(forward.get(b))]
            for b in used
            if b in forward
        ]
        _table(roll_ax, ["from \\ to", *used, "roll fwd"], rows, size=7)
        roll_ax.set_title(f"Roll rates {roll.opening} → {roll.closing} (debts)", fontsize=9)
    text_ax = fig.add_subplot(grid[2])
    text_ax.axis("off")
    lines = [f"• {n}" for n in report.notes]
    lines += [
        f"{BY_KEY[k].name}: {BY_KEY[k].one_line()}"
        for k in (
            "contact_rate",
            "right_party_contact_rate",
            "promise_rate",
            "kept_promise_rate",
            "recovery_rate",
            "abandon_rate",
            "roll_forward_rate",
        )
    ]
    text_ax.text(0, 1, "\n".join(_wrap(line, 130) for line in lines), va="top", fontsize=6.5)
    return fig


def _wrap(line: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(line, width, subsequent_indent="    "))


def to_png(report: Report) -> bytes:
    """The first page (title, figures table, two charts) as a PNG at 150 dpi."""
    with _fonts():
        out = io.BytesIO()
        _first_page(report).savefig(out, format="png", dpi=PNG_DPI)
    return out.getvalue()


def to_pdf(report: Report) -> bytes:
    """Two A4 pages: figures and charts; agents, roll rates, notes and definitions."""
    from matplotlib.backends.backend_pdf import PdfPages

    out = io.BytesIO()
    with _fonts(), PdfPages(out) as pdf:
        info = pdf.infodict()
        info["Title"] = f"Collection report {report.tenant} {report.span.start}"
        pdf.savefig(_first_page(report))
        pdf.savefig(_second_page(report))
    return out.getvalue()


def pdf_page_count(pdf: bytes) -> int:
    """The number of pages a PDF's page tree declares (its root /Pages /Count)."""
    counts = [int(m) for m in re.findall(rb"/Type\s*/Pages\b[^>]*?/Count\s+(\d+)", pdf)]
    counts += [int(m) for m in re.findall(rb"/Count\s+(\d+)[^>]*?/Type\s*/Pages\b", pdf)]
    if not counts:
        raise ValueError("not a PDF with a page tree")
    return max(counts)


FORMATS = {"csv", "json", "png", "pdf"}


def render(report: Report, fmt: str) -> bytes:
    if fmt == "csv":
        return to_csv(report).encode()
    if fmt == "json":
        return to_json(report).encode()
    if fmt == "png":
        return to_png(report)
    if fmt == "pdf":
        return to_pdf(report)
    raise ValueError(f"format {fmt!r}: one of {', '.join(sorted(FORMATS))}")
