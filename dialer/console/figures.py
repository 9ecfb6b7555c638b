"""A campaign's live figures for the supervisor console, as `static/supervisor.js` reads them.

Two sources, on two rhythms. The engine's part (calls ringing, agents by state, occupancy...) is
cheap and read on every call, as an `EngineView` the composition root fills from the engine.
The store's part (abandonment today, over 24 hours, over 30 days) costs a query, and the page
polls once a second with up to fifty supervisors watching: `CampaignFigures` asks the store at
most once every `refresh_s` seconds, whoever asks how often, and serves the copy in between.

The time is always passed in (`now`, an aware datetime); nothing here reads a clock.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from dialer.console.store import AbandonTotals, abandon_totals
from dialer.errors import StoreError
from dialer.store.db import Store

log = logging.getLogger(__name__)

# Defaults: the store is asked at most this often (seconds) ...
REFRESH_S = 5.0
# ... and the charts keep this much history (seconds), one point at most this often (seconds).
SERIES_SPAN_S = 600.0
SERIES_EVERY_S = 5.0


@dataclass(frozen=True)
class EngineView:
    """What the running engine knows of one campaign right now (the console's input).

    Rates and occupancy are fractions (0.03, not 3); durations are seconds; None where there is
    nothing to measure yet (no call answered, no agent logged in).
    """

    # running | paused | stopped | finished (the page enables Start / Pause / Stop by it)
    status: str
    # a pacing.models.DialMode value: preview, progressive, ratio, vicidial-adapt, predictive
    dial_mode: str
    target_abandon_rate: float  # the pacer's target in force (after supervisor overrides)
    max_dial_ratio: float  # calls in flight per working agent, at most
    ringing: int = 0  # calls placed, not yet answered
    waiting: int = 0  # live answers waiting for an agent
    connected: int = 0  # calls with an agent
    dials_in_last_minute: int = 0  # Originates sent in the last 60 s
    live_answer_rate: float | None = None  # share of dials a person answers
    occupancy: float | None = None  # agents' talk time over logged-in time
    mean_talk_s: float | None = None
    mean_wrap_up_s: float | None = None
    agents_by_state: Mapping[str, int] = field(default_factory=dict)  # AgentState value -> n


@dataclass(frozen=True)
class SeriesPoint:
    """One point of the console's two charts."""

    t: datetime
    abandon_rate: float | None  # today's abandonment, as of `t`
    occupancy: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "t": _iso(self.t),
            "abandon_rate": _round(self.abandon_rate, 6),
            "occupancy": _round(self.occupancy, 4),
        }


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="seconds")


def _round(value: float | None, digits: int) -> float | None:
    return round(float(value), digits) if value is not None else None


def campaign_json(
    campaign_id: int,
    name: str,
    view: EngineView,
    totals: AbandonTotals | None,
    series: list[SeriesPoint] | tuple[SeriesPoint, ...] = (),
) -> dict[str, Any]:
    """The campaign's figures in the shape the console page reads (pure).

    `totals` None (the store not read yet, or unreachable since start) gives null rates.
    """
    return {
        "id": campaign_id,
        "name": name,
        "status": view.status,
        "dial_mode": view.dial_mode,
        "target_abandon_rate": float(view.target_abandon_rate),
        "max_dial_ratio": float(view.max_dial_ratio),
        "abandon_rate_today": _round(totals.today.rate if totals else None, 6),
        "abandon_rate_24h": _round(totals.last_24h.rate if totals else None, 6),
        "abandon_rate_30d": _round(totals.last_30d.rate if totals else None, 6),
        "dials_per_min": float(view.dials_in_last_minute),
        "live_answer_rate": _round(view.live_answer_rate, 4),
        "ringing": view.ringing,
        "waiting": view.waiting,
        "connected": view.connected,
        "occupancy": _round(view.occupancy, 4),
        "mean_talk_s": _round(view.mean_talk_s, 1),
        "mean_wrap_up_s": _round(view.mean_wrap_up_s, 1),
        "agents_by_state": {str(k): int(v) for k, v in view.agents_by_state.items()},
        "series": [p.to_json() for p in series],
    }


class CampaignFigures:
    """One campaign's figures for every supervisor watching it; one per campaign per process.

    Safe to call from several worker threads at once: one of them asks the store when a refresh
    is due, the others wait for that answer rather than asking too.
    """

    def __init__(
        self,
        store: Store,
        tenant_id: int,
        campaign_id: int,
        name: str,
        *,
        tz: tzinfo,
        refresh_s: float = REFRESH_S,
        series_span_s: float = SERIES_SPAN_S,
        series_every_s: float = SERIES_EVERY_S,
    ) -> None:
        if refresh_s < 0 or series_span_s <= 0 or series_every_s <= 0:
            raise ValueError(
                f"refresh_s >= 0, series_span_s > 0 and series_every_s > 0, got "
                f"{refresh_s}, {series_span_s}, {series_every_s}"
            )
        self.store = store
        self.tenant_id = tenant_id
        self.campaign_id = campaign_id
        self.name = name
        self.tz = tz
        self._refresh = timedelta(seconds=refresh_s)
        self._span = timedelta(seconds=series_span_s)
        self._every = timedelta(seconds=series_every_s)
        self._lock = threading.Lock()
        self._totals: AbandonTotals | None = None
        self._asked_at: datetime | None = None  # the last store query, answered or failed
        self._series: deque[SeriesPoint] = deque()

    @property
    def totals(self) -> AbandonTotals | None:
        """The abandonment last read from the store (None before the first good read)."""
        return self._totals

    def figures(self, view: EngineView, now: datetime) -> dict[str, Any]:
        """The campaign's figures now: the engine's as given, the store's at most `refresh_s`
        old (older while the store fails: the last good ones are kept, the failure logged)."""
        with self._lock:
            if self._due(now):
                self._read_store(now)
            self._add_point(view, now)
            series = list(self._series)
            totals = self._totals
        return campaign_json(self.campaign_id, self.name, view, totals, series)

    async def live(self, view: EngineView, now: datetime) -> dict[str, Any]:
        """`figures` for the event loop: run on a worker thread, so a due store query (or a
        thread holding the lock through one) never stalls the loop."""
        return await asyncio.to_thread(self.figures, view, now)

    def invalidate(self) -> None:
        """Ask the store on the next call (after a change that moves the figures)."""
        with self._lock:
            self._asked_at = None

    def refresh(self, now: datetime) -> AbandonTotals:
        """Ask the store now, whatever the cache's age; StoreError when it fails."""
        with self._lock:
            self._asked_at = now
            self._totals = abandon_totals(
                self.store, self.tenant_id, self.campaign_id, now=now, tz=self.tz
            )
            return self._totals

    def _due(self, now: datetime) -> bool:
        asked = self._asked_at
        # A clock set back (now before the last query) refreshes too, rather than waiting.
        return asked is None or now - asked >= self._refresh or now < asked

    def _read_store(self, now: datetime) -> None:
        self._asked_at = now  # failed or not: the next try waits `refresh_s` like a success
        try:
            self._totals = abandon_totals(
                self.store, self.tenant_id, self.campaign_id, now=now, tz=self.tz
            )
        except StoreError as exc:
            log.warning(
                "x campaign %s: abandonment not refreshed (%s); showing the figures of %s",
                self.campaign_id,
                exc,
                _iso(self._totals.at) if self._totals else "never",
            )

    def _add_point(self, view: EngineView, now: datetime) -> None:
        series = self._series
        if series and now < series[-1].t:
            series.clear()  # the clock went back: a chart cannot go back in time with it
        if not series or now - series[-1].t >= self._every:
            rate = self._totals.today.rate if self._totals else None
            series.append(SeriesPoint(now, rate, view.occupancy))
        while series and now - series[0].t > self._span:
            series.popleft()
