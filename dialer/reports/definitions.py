"""Each figure's definition, in one place: the report's JSON, its PDF and the README read these."""

from __future__ import annotations

from dataclasses import dataclass

from dialer.store.models import DispositionCode


@dataclass(frozen=True)
class Definition:
    key: str
    name: str  # as a manager reads it in a table heading
    name_zh: str
    numerator: str
    denominator: str | None  # None: a count or an amount, not a rate
    note: str = ""

    def one_line(self) -> str:
        text = (
            self.numerator
            if self.denominator is None
            else (f"{self.numerator} / {self.denominator}")
        )
        return f"{text}. {self.note}".strip() if self.note else text


# Dispositions that say the agent spoke with the debtor in person. WRONG_PARTY, DECEASED (told
# by someone else), NO_CONTACT and OTHER do not; DO_NOT_CALL is left out because a third party
# asks it as often as the debtor does.
RIGHT_PARTY_CODES: tuple[str, ...] = (
    DispositionCode.PROMISE_TO_PAY.value,
    DispositionCode.PARTIAL_PAYMENT.value,
    DispositionCode.CALLBACK.value,
    DispositionCode.REFUSED.value,
    DispositionCode.DISPUTE.value,
)

# Days-past-due buckets, best to worst: (name, lowest dpd, highest dpd or None).
DPD_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("current", 0, 0),
    ("1-30", 1, 30),
    ("31-60", 31, 60),
    ("61-90", 61, 90),
    ("91-120", 91, 120),
    ("121-180", 121, 180),
    ("181+", 181, None),
)
# A debt's snapshot bucket when it no longer owes: settled or paid down to zero; closed by the
# creditor (recalled, written off, sold). Neither counts as rolling forward.
PAID_BUCKET = "paid"
CLOSED_BUCKET = "closed"
BUCKET_ORDER: tuple[str, ...] = (*(b[0] for b in DPD_BUCKETS), PAID_BUCKET, CLOSED_BUCKET)

# How long before the period an attempt may have been dialled and still be answered inside it:
# the abandonment query reads attempts dialled this much before the period's start.
ANSWER_MARGIN_S = 3600

_RPC = ", ".join(RIGHT_PARTY_CODES)

DEFINITIONS: tuple[Definition, ...] = (
    Definition(
        "attempts",
        "Attempts",
        "拨打次数",
        "call attempts dialled in the period (every Originate, whatever became of it)",
        None,
    ),
    Definition(
        "contacts",
        "Contacts",
        "接通",
        "attempts dialled in the period that a live person answered (outcome `answered`; "
        "answering machines excluded)",
        None,
    ),
    Definition(
        "contact_rate",
        "Contact rate",
        "接通率",
        "contacts",
        "attempts",
    ),
    Definition(
        "right_party_contacts",
        "Right-party contacts",
        "本人接通",
        f"attempts dialled in the period whose disposition says the agent spoke with the "
        f"debtor ({_RPC})",
        None,
    ),
    Definition(
        "right_party_contact_rate",
        "RPC rate",
        "本人接通率",
        "right-party contacts",
        "attempts",
    ),
    Definition(
        "promises",
        "Promises to pay",
        "承诺还款",
        "attempts dialled in the period with a `promise_to_pay` disposition",
        None,
    ),
    Definition(
        "promise_rate",
        "Promise-to-pay rate",
        "承诺率",
        "promises",
        "right-party contacts",
    ),
    Definition(
        "promised_amount",
        "Promised amount",
        "承诺金额",
        "sum of those promises' amounts",
        None,
    ),
    Definition(
        "promises_due",
        "Promises due",
        "到期承诺",
        "promises (the promises table: by call, API or page) due in the period and settled "
        "kept or broken by the promise run; cancelled (replaced) and still open ones are not "
        "counted",
        None,
    ),
    Definition(
        "kept_promise_rate",
        "Kept-promise rate",
        "守约率",
        "promises due in the period that were kept",
        "promises due in the period kept or broken",
    ),
    Definition(
        "collected",
        "Collected",
        "回款",
        "payments dated in the period (payments table, the report's currency); by collector: "
        "the case's collector now; by campaign: not attributed (a payment has no campaign)",
        None,
    ),
    Definition(
        "assigned",
        "Assigned",
        "委案金额",
        "balance owed at the period's opening: the snapshot of the day before its first day, "
        "debts still owing (not paid, not closed)",
        None,
    ),
    Definition(
        "recovery_rate",
        "Recovery rate",
        "回收率",
        "payments dated in the period on the debts of the opening snapshot",
        "assigned; by collector and team: as the opening snapshot assigned them",
    ),
    Definition(
        "live_answers",
        "Live answers",
        "真人接听",
        "attempts answered in the period (by answer time) by a live person",
        None,
    ),
    Definition(
        "abandon_rate",
        "Abandonment",
        "放弃率",
        "attempts flagged abandoned, answered in the period",
        "live answers (the supervisor console's and the pacer's definition)",
    ),
    Definition(
        "talk_seconds",
        "Talk time",
        "通话时长",
        "seconds from connection to an agent to hang-up, of attempts dialled in the period",
        None,
    ),
    Definition(
        "roll_forward_rate",
        "Roll-forward rate",
        "迁徙率",
        "debts owing at the opening snapshot that are in a worse days-past-due bucket at the "
        "closing snapshot (the period's last day)",
        "debts owing at the opening snapshot",
        "Buckets: " + ", ".join(b[0] for b in DPD_BUCKETS) + "; paid and closed never roll.",
    ),
    Definition(
        "qa_score",
        "QA score",
        "质检得分",
        "mean QA score (0-100) of the agent's calls dialled in the period that were scored",
        None,
    ),
)

BY_KEY: dict[str, Definition] = {d.key: d for d in DEFINITIONS}


def bucket_of(days_past_due: int) -> str:
    """The days-past-due bucket of an owing debt (negative days count as current)."""
    for name, _low, high in DPD_BUCKETS:
        if high is None or days_past_due <= high:
            return name
    raise AssertionError("the last bucket has no upper bound")


def rolled_forward(from_bucket: str, to_bucket: str) -> bool:
    """Whether a debt went from one bucket to a worse days-past-due one (paid and closed are
    never worse)."""
    dpd = [b[0] for b in DPD_BUCKETS]
    if from_bucket not in dpd or to_bucket not in dpd:
        return False
    return dpd.index(to_bucket) > dpd.index(from_bucket)


def markdown() -> str:
    """The definitions as a README table."""
    lines = ["| figure | definition |", "|---|---|"]
    for d in DEFINITIONS:
        lines.append(f"| {d.name} (`{d.key}`) | {d.one_line()} |")
    return "\n".join(lines)
