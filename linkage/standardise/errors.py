"""What standardisation says about a bad row or a bad field.

A :class:`RejectError` means the row cannot be a record at all (no name) or, when the
caller validates strictly (the API), that one field is unusable. A :class:`FieldWarning`
is what a lenient caller (batch ingest) collects instead: the field is blanked and the
record kept.
"""

from __future__ import annotations

import dataclasses

from linkage.errors import LinkageError

__all__ = ["FieldWarning", "RejectError"]


class RejectError(LinkageError, ValueError):
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


@dataclasses.dataclass(frozen=True, slots=True)
class FieldWarning:
    """One field that was blanked because its value is unusable; the record is kept.

    Attributes:
        field: The raw canonical field blanked ('birth_date', 'age', 'sex', 'phone',
            'national_id').
        value: The raw value. Personal data: it goes to the register's
            ``field_warnings`` table only, never to a log (it is left out of ``repr``).
        reason: A short reason that never contains the raw value.

    Examples:
        >>> FieldWarning("sex", "X", "unknown sex code")
        FieldWarning(field='sex', reason='unknown sex code')
    """

    field: str
    value: str | None = dataclasses.field(repr=False)
    reason: str
