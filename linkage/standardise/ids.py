"""National identifiers: upper-case alphanumerics, placeholders dropped."""

from __future__ import annotations

import re

from linkage.standardise.names import fold

__all__ = ["ID_PLACEHOLDERS", "clean_national_id", "national_id_problem"]

#: Cleaned values that mean "no ID".
ID_PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "NA", "NAN", "NONE", "NULL", "NEANT", "NEAN", "AUCUN", "AUCUNE", "INCONNU", "ND",
        "NR", "SANS", "PAS", "NIL", "NO", "NON", "UNKNOWN", "X", "XX", "XXX",
        "123456789", "0123456789", "1234567890", "12345678", "123456",
    }
)  # fmt: skip
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")
_EXCEL_FLOAT = re.compile(r"^\d+\.0+$")
_MIN_LENGTH = 4  # shorter values are row numbers or typing accidents, not IDs


def clean_national_id(raw: str | None) -> str | None:
    """Normalise a national ID number.

    Args:
        raw: The raw value.

    Returns:
        Upper-case ASCII letters and digits only, or None when empty, a known
        placeholder ('N/A', 'NEANT', '-', all zeros, one repeated character) or shorter
        than 4 characters.

    Examples:
        >>> clean_national_id(" ml-123 456.78 ")
        'ML12345678'
        >>> clean_national_id("Néant") is None, clean_national_id("000000") is None
        (True, True)
    """
    if not raw:
        return None
    cleaned = _cleaned(raw)
    if len(cleaned) < _MIN_LENGTH or cleaned in ID_PLACEHOLDERS or len(set(cleaned)) == 1:
        return None
    return cleaned


def national_id_problem(raw: str | None) -> str | None:
    """Why an ID value is unusable, or None when it is an ID or means "no ID".

    Empty cells and placeholders ('N/A', 'NEANT', '-', '000000') mean "no ID" and are not
    problems; a value too short to be an ID is.

    Examples:
        >>> national_id_problem("12"), national_id_problem("Néant"), national_id_problem("ML1234")
        ('too short for an ID (under 4 characters)', None, None)
    """
    if not raw:
        return None
    cleaned = _cleaned(raw)
    if cleaned in ID_PLACEHOLDERS or len(set(cleaned)) <= 1:
        return None
    if len(cleaned) < _MIN_LENGTH:
        return f"too short for an ID (under {_MIN_LENGTH} characters)"
    return None


def _cleaned(raw: str) -> str:
    text = raw.strip()
    if _EXCEL_FLOAT.match(text):
        text = text.split(".", 1)[0]  # 12345678.0 from a spreadsheet
    return _NOT_ALNUM.sub("", fold(text).upper())
