"""The error that sends a row to the rejects table."""

from __future__ import annotations

__all__ = ["RejectError"]


class RejectError(ValueError):
    """A row cannot be standardised; it goes to the rejects table.

    Attributes:
        field: The raw canonical field at fault ('birth_date', 'sex', 'age', 'name').
        reason: A short reason that never contains the raw value.

    Examples:
        >>> err = RejectError("sex", "unknown sex code")
        >>> err.field, err.reason, str(err)
        ('sex', 'unknown sex code', 'sex: unknown sex code')
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason

    def __reduce__(self):  # keep field/reason through pickling (multiprocessing pools)
        return (type(self), (self.field, self.reason))
