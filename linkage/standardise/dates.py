"""Birth dates as values with a precision, never as exact facts.

Rosters write ``00/00/1975``, ``1975``, a default ``01/01/1975`` or an age instead of a date.
:class:`BirthDate` keeps what is known (year, month, day) with a ``precision``, and
:func:`date_relation` compares two of them the way the match model needs.

Error messages never contain the raw value, only its *shape* (digits as ``9``, letters as
``A``): they are stored in a rejects table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

__all__ = [
    "MAX_AGE",
    "MIN_YEAR",
    "PLACEHOLDER_DAY_MONTHS",
    "PRECISIONS",
    "RELATIONS",
    "BirthDate",
    "date_relation",
    "from_age",
    "parse_birth_date",
]

#: Allowed values of :attr:`BirthDate.precision`.
PRECISIONS: tuple[str, ...] = ("day", "month", "year", "placeholder", "age")
#: Values returned by :func:`date_relation`.
RELATIONS: tuple[str, ...] = (
    "exact",
    "day_month_swapped",
    "same_year",
    "year_off_1",
    "year_off_2",
    "mismatch",
    "missing",
)
#: Default earliest accepted birth year (a project's ``min_birth_year`` overrides it): far
#: enough back for historical registers, before it a year is a typing accident.
MIN_YEAR = 1800
#: Oldest plausible age in years.
MAX_AGE = 120
#: (day, month) pairs that forms use as a default when only the year is known.
PLACEHOLDER_DAY_MONTHS: frozenset[tuple[int, int]] = frozenset({(1, 1), (1, 7)})

# Precisions whose year is itself an estimate: a one- or two-year gap is still evidence.
_FUZZY_YEAR = frozenset({"year", "placeholder", "age"})


@dataclass(frozen=True, slots=True)
class BirthDate:
    """A birth date as far as it is known.

    Attributes:
        year: Year, or None when unknown.
        month: Month, set only for precision ``'day'`` and ``'month'``.
        day: Day, set only for precision ``'day'``.
        precision: ``'day'``, ``'month'``, ``'year'``, ``'placeholder'`` (a default date
            such as 01/01/YYYY: only the year is kept) or ``'age'`` (derived from an age).

    Examples:
        >>> BirthDate(1975, 6, 12, "day").iso()
        '1975-06-12'
        >>> BirthDate(1975, None, None, "placeholder").iso() is None
        True
    """

    year: int | None
    month: int | None
    day: int | None
    precision: str

    def iso(self) -> str | None:
        """ISO ``yyyy-mm-dd`` for a day-precision date, else None."""
        if self.precision != "day" or self.year is None or self.month is None or not self.day:
            return None
        return f"{self.year:04d}-{self.month:02d}-{self.day:02d}"


def _shape(raw: str) -> str:
    """The raw value with digits as 9 and letters as A (safe to store in a rejects table)."""
    shape = re.sub(r"[0-9]", "9", raw)
    shape = re.sub(r"[^\W\d_]", "A", shape)
    return shape[:20] + ("..." if len(shape) > 20 else "")


# An unknown day or month: 0, 00, --, XX, ??.
_UNKNOWN = r"0{1,2}|-{1,2}|[xX?]{1,2}"
_SEP = r"[/.\-\s]"
# Excel and database exports add a midnight time to dates.
_TIME_SUFFIX = re.compile(r"[ T]0{1,2}:00(?::00)?(?:\.0+)?Z?$")
_YEAR_ONLY = re.compile(
    rf"^(?:(?:{_UNKNOWN}){_SEP}+(?:{_UNKNOWN}){_SEP}+)?(\d{{4}})(?:\.0)?$"
    rf"|^(\d{{4}}){_SEP}+(?:{_UNKNOWN}){_SEP}+(?:{_UNKNOWN})$"
)
_MONTH_YEAR = re.compile(rf"^(\d{{1,2}}|{_UNKNOWN}){_SEP}+(\d{{4}})$")
_ISO = re.compile(rf"^(\d{{4}})-(\d{{1,2}}|{_UNKNOWN})-(\d{{1,2}}|{_UNKNOWN})$")
_DIRECTIVES = {
    "%d": rf"(?P<d>\d{{1,2}}|{_UNKNOWN})",
    "%m": rf"(?P<m>\d{{1,2}}|{_UNKNOWN})",
    "%Y": r"(?P<Y>\d{4})",
    "%y": r"(?P<y>\d{2})",
}


@lru_cache(maxsize=64)
def _format_regex(fmt: str) -> re.Pattern[str]:
    """Compile a strptime-like format (%d %m %Y %y) into a tolerant regex.

    Any separator in the format matches any of ``/ . - space``: sources that declare
    ``%d/%m/%Y`` also send ``12-06-1975``.
    """
    parts = []
    i = 0
    while i < len(fmt):
        token = fmt[i : i + 2]
        if token in _DIRECTIVES:
            parts.append(_DIRECTIVES[token])
            i += 2
        elif fmt[i] in "/.- ":
            parts.append(_SEP + "+")
            i += 1
        elif fmt[i] == "%":
            raise ValueError(f"unsupported date format directive {token!r}")
        else:
            parts.append(re.escape(fmt[i]))
            i += 1
    return re.compile("^" + "".join(parts) + "$")


def _component(value: str | None) -> int | None:
    """An int for a known day/month, None for an unknown marker (0, --, XX, ??)."""
    if value is None or not value.isdigit():
        return None
    n = int(value)
    return n or None


def _build(year: int, month: int | None, day: int | None, today: date, shape: str,
           min_year: int) -> BirthDate:
    if year < min_year:
        raise ValueError(f"year before {min_year}")
    if year > today.year:
        raise ValueError("date in the future")
    if month is None:
        return BirthDate(year, None, None, "year")
    if month > 12 and day is not None and day <= 12:
        # 25/13/1980 under %d/%m: only one reading is a date, the source swapped fields.
        month, day = day, month
    if not 1 <= month <= 12:
        raise ValueError(f"month out of range (shape {shape!r})")
    if day is None:
        if (year, month) > (today.year, today.month):
            raise ValueError("date in the future")
        return BirthDate(year, month, None, "month")
    try:
        value = date(year, month, day)
    except ValueError:
        raise ValueError(f"day out of range for month (shape {shape!r})") from None
    if value > today:
        raise ValueError("date in the future")
    if (day, month) in PLACEHOLDER_DAY_MONTHS:
        return BirthDate(year, None, None, "placeholder")
    return BirthDate(year, month, day, "day")


def parse_birth_date(raw: str | None, fmt: str, *, today: date | None = None,
                     min_year: int = MIN_YEAR) -> BirthDate:
    """Parse a birth date written in the source's format, year-only forms included.

    Args:
        raw: The raw value. Besides ``fmt``, accepts a bare year (``1975``), unknown
            day/month markers (``00/00/1975``, ``0/0/1975``, ``--/--/1975``,
            ``XX/XX/1975``, ``1975-00-00``), ISO ``yyyy-mm-dd`` whatever ``fmt`` says, and a
            trailing midnight time from spreadsheet exports.
        fmt: A strptime-like format using ``%d %m %Y %y`` (``'%d/%m/%Y'``, ``'%Y-%m-%d'``,
            ``'%m/%d/%Y'``, ``'%Y'``).
        today: Reference for "in the future" (default: the current date).
        min_year: Earliest accepted year (default :data:`MIN_YEAR`).

    Returns:
        A :class:`BirthDate`; 01/01/YYYY and 01/07/YYYY become precision ``'placeholder'``
        with the year only.

    Raises:
        ValueError: with a reason safe to store ("unparseable date (shape '99/99/9999')",
            "year before 1800", "date in the future", ...).

    Examples:
        >>> parse_birth_date("12/06/1975", "%d/%m/%Y")
        BirthDate(year=1975, month=6, day=12, precision='day')
        >>> parse_birth_date("00/00/1975", "%d/%m/%Y").precision
        'year'
        >>> parse_birth_date("01/01/1975", "%d/%m/%Y").precision
        'placeholder'
    """
    return _parse_cached(raw.strip() if raw else "", fmt, today or date.today(), min_year)


@lru_cache(maxsize=1 << 18)
def _parse_cached(raw: str, fmt: str, today: date, min_year: int) -> BirthDate:
    if not raw:
        raise ValueError("empty date")
    value = _TIME_SUFFIX.sub("", raw)
    shape = _shape(value)
    m = _YEAR_ONLY.match(value)
    if m:
        return _build(int(m.group(1) or m.group(2)), None, None, today, shape, min_year)
    m = _format_regex(fmt).match(value)
    if m:
        groups = m.groupdict()
        if groups.get("Y"):
            year = int(groups["Y"])
        elif groups.get("y"):
            # Two-digit years: the most recent past year ending so ('05' -> 2005, '75' -> 1975).
            yy = int(groups["y"])
            year = today.year - (today.year - yy) % 100
        else:
            raise ValueError(f"unparseable date (shape {shape!r}, no year in format)")
        return _build(year, _component(groups.get("m")), _component(groups.get("d")), today, shape,
                      min_year)
    m = _MONTH_YEAR.match(value)
    if m:  # "06/1975": month and year only, whatever the day-first/month-first format
        return _build(int(m.group(2)), _component(m.group(1)), None, today, shape, min_year)
    m = _ISO.match(value)
    if m:
        return _build(int(m.group(1)), _component(m.group(2)), _component(m.group(3)), today, shape,
                      min_year)
    raise ValueError(f"unparseable date (shape {shape!r}, expected {fmt!r})")


_AGE = re.compile(r"^(\d{1,3})(?:[.,]\d+)?\s*(?:ans?|years?|yrs?|y|a|sano)?$", re.IGNORECASE)


def from_age(age: int | str | None, reference_date: date) -> BirthDate:
    """Birth year estimated from an age recorded at ``reference_date``.

    Args:
        age: Age in completed years: an int or a string such as ``'35'``, ``'35.0'``,
            ``'35 ans'``.
        reference_date: The date the age was recorded (enrolment or survey date).

    Returns:
        ``BirthDate(year, None, None, 'age')`` with ``year`` the *more likely* of the two
        years an age allows. A person aged A on date R was born between R minus A + 1
        years and R minus A years: in ``R.year - A - 1`` when the birthday falls after
        R's day of the year, else in ``R.year - A``. Birthdays spread over the year, so
        the first is the likelier when R is in the first half of the year (an age taken
        on 1 March: 10 chances in 12). ``R.year - A`` alone is a year too late for most.

    Raises:
        ValueError: "non-numeric age", "negative age" or "age over 120".

    Examples:
        >>> from_age("35", date(2020, 3, 1))
        BirthDate(year=1984, month=None, day=None, precision='age')
        >>> from_age("35", date(2020, 10, 1))
        BirthDate(year=1985, month=None, day=None, precision='age')
    """
    if isinstance(age, bool):
        raise ValueError("non-numeric age")
    if isinstance(age, int):
        years = age
    else:
        text = str(age).strip() if age is not None else ""
        if text.startswith("-") and text[1:].strip().replace(".", "", 1).isdigit():
            raise ValueError("negative age")
        m = _AGE.match(text)
        if not m:
            raise ValueError("non-numeric age")
        years = int(m.group(1))
    if years < 0:
        raise ValueError("negative age")
    if years > MAX_AGE:
        raise ValueError(f"age over {MAX_AGE}")
    # Born after the reference date's day of the year: one year earlier (see Returns).
    later = (date(reference_date.year, 12, 31) - reference_date).days
    before = reference_date.timetuple().tm_yday
    return BirthDate(reference_date.year - years - (1 if later > before else 0), None, None,
                     "age")


@lru_cache(maxsize=1 << 16)
def date_relation(a: BirthDate | None, b: BirthDate | None) -> str:
    """How two birth dates relate, as one of :data:`RELATIONS`.

    Args:
        a: First date (None when missing).
        b: Second date.

    Returns:
        ``'exact'`` both day precision and equal; ``'day_month_swapped'`` both day
        precision, same year, day and month exchanged; ``'same_year'`` same year and at
        least one side less precise than a day; ``'year_off_1'``/``'year_off_2'`` years one
        or two apart when one side's year is itself an estimate (year-only, placeholder or
        age); ``'missing'`` when either year is unknown; else ``'mismatch'``.

    Examples:
        >>> d = BirthDate(1975, 6, 12, "day")
        >>> date_relation(d, BirthDate(1975, 12, 6, "day"))
        'day_month_swapped'
        >>> date_relation(d, BirthDate(1976, None, None, "age"))
        'year_off_1'
    """
    if a is None or b is None or a.year is None or b.year is None:
        return "missing"
    if a.year == b.year:
        if a.precision == "day" and b.precision == "day":
            if (a.month, a.day) == (b.month, b.day):
                return "exact"
            if (a.month, a.day) == (b.day, b.month):
                return "day_month_swapped"
            return "mismatch"
        return "same_year"
    if a.precision in _FUZZY_YEAR or b.precision in _FUZZY_YEAR:
        gap = abs(a.year - b.year)
        if gap == 1:
            return "year_off_1"
        if gap == 2:
            return "year_off_2"
    return "mismatch"
