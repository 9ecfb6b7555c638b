"""The cases' exception tree: every error they raise on purpose derives from CaseError."""

from __future__ import annotations

from dialer.errors import DialerError


class CaseError(DialerError):
    """Base of every error raised on purpose by dialer.cases."""


class CaseNotFound(CaseError, LookupError):
    """No such case in the tenant (the same answer for another tenant's case)."""

    def __init__(self, case_id: int) -> None:
        super().__init__(f"no case {case_id}")
        self.case_id = case_id


class CaseRefused(CaseError, ValueError):
    """A request that cannot be done as asked; `field` names the request field at fault.
    Nothing was written."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class TransitionRefused(CaseRefused):
    """The case's status cannot go from where it is to where it was asked to go."""

    def __init__(self, case_id: int, old: str, new: str, allowed: tuple[str, ...]) -> None:
        listed = ", ".join(allowed) or "nothing"
        super().__init__(
            "status", f"case {case_id} cannot go from {old} to {new} (from {old}: {listed})"
        )
        self.old = old
        self.new = new


class PaymentConflict(CaseRefused):
    """The payment id is known with other facts (amount, debt): posting it again would change
    what was received, so it is refused."""


def check_text(field: str, value: str) -> str:
    """`value` as stored text: CaseRefused when it holds a NUL or a lone surrogate, which
    PostgreSQL refuses (and which no person typed)."""
    if "\x00" in value:
        raise CaseRefused(field, "the text holds a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CaseRefused(field, "the text is not valid Unicode") from None
    return value
