"""The nightly ageing of debts: an unpaid debt is a day further past due every day, so the
strategies, scores and assignment rules that read days past due see today's figure, not the
import's. Run before the strategy run; running a day twice ages nothing twice."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError

from dialer.errors import StoreError
from dialer.store.db import Store, error_reason
from dialer.store.models import Debt, DebtStatus

log = logging.getLogger(__name__)

# Settled and closed debts are no longer past due with us; a disputed one still is (the
# dispute pauses collection, not the calendar).
AGEING = (DebtStatus.OPEN.value, DebtStatus.DISPUTED.value)


@dataclass(frozen=True)
class AgeingReport:
    today: date
    aged: int  # debts moved on
    days: int  # the most days any of them moved (1 on a normal night; more after a gap)
    dated: int  # debts with no day yet (stored outside an import), now dated today, not aged


def age_debts(store: Store, tenant_id: int, today: date, *, dry_run: bool = False) -> AgeingReport:
    """Move every unpaid debt's days past due on to `today`. A debt dated after `today` (an
    import of a later day) is left as it is: ageing never runs days backwards."""
    base = (Debt.tenant_id == tenant_id, Debt.status.in_(AGEING))
    try:
        with store.begin() as conn:
            # One statement per distinct day: a nightly run finds one (yesterday), a run after
            # a gap or mixed imports a few; never one per debt.
            days = conn.execute(
                select(Debt.dpd_as_of, func.count())
                .where(*base, or_(Debt.dpd_as_of < today, Debt.dpd_as_of.is_(None)))
                .group_by(Debt.dpd_as_of)
            ).all()
            aged = dated = most = 0
            for as_of, count in days:
                if as_of is None:
                    dated += count
                    if not dry_run:
                        conn.execute(
                            update(Debt)
                            .where(*base, Debt.dpd_as_of.is_(None))
                            .values(dpd_as_of=today)
                        )
                    continue
                gap = (today - as_of).days
                aged += count
                most = max(most, gap)
                if not dry_run:
                    conn.execute(
                        update(Debt)
                        .where(*base, Debt.dpd_as_of == as_of)
                        .values(days_past_due=Debt.days_past_due + gap, dpd_as_of=today)
                    )
    except SQLAlchemyError as exc:
        raise StoreError(f"ageing debts: {error_reason(exc)}") from exc
    report = AgeingReport(today, aged, most, dated)
    log.info(
        "= ageing%s for tenant %s to %s: %d debts moved on (up to %d days), %d dated",
        " (dry run)" if dry_run else "",
        tenant_id,
        today,
        aged,
        most,
        dated,
    )
    return report
