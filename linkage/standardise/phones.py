"""Phone numbers as E.164 digits without '+'.

Phones are shared by households and change owners, so a bad phone is never a reason to
reject a record: :func:`normalise_phone` returns None instead of raising, and
:func:`phone_problem` says why, for the register's field warnings.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

__all__ = ["NATIONAL_NUMBER_LENGTHS", "normalise_phone", "phone_problem"]

#: Length of the national significant number (without trunk '0') per country calling code.
NATIONAL_NUMBER_LENGTHS: dict[str, int] = {
    "223": 8,  # Mali
    "253": 8,  # Djibouti (mobiles 77 xx xx xx)
    "254": 9,  # Kenya (07xx xxx xxx locally, trunk 0)
    "227": 8,  # Niger
    "226": 8,  # Burkina Faso
    "221": 9,  # Senegal
    "222": 8,  # Mauritania
    "225": 10,  # Côte d'Ivoire
    "252": 9,  # Somalia (mobiles; landlines vary)
    "251": 9,  # Ethiopia
    "250": 9,  # Rwanda
    "258": 9,  # Mozambique
}

_SEPARATORS = re.compile(r"[\s\-./()\[\]]+")
# Several numbers in one cell: keep the first.
_MULTI = re.compile(r"[,;|]|\s/\s|\s+ou\s+|\s+or\s+", re.IGNORECASE)
_HAS_MULTI = re.compile(r"[,;|/]|\s(?:ou|or)\s", re.IGNORECASE)
_EXCEL_FLOAT = re.compile(r"^\d+\.0+$")
_EXCEL_SCI = re.compile(r"^\d(?:\.\d+)?[eE]\+?\d+$")


def _excel_digits(text: str) -> str:
    """Undo spreadsheet number formatting: '76123456.0' and '2.2376123456E+10'."""
    if _EXCEL_FLOAT.match(text):
        return text.split(".", 1)[0]
    if _EXCEL_SCI.match(text):
        try:
            value = Decimal(text)
        except InvalidOperation:
            return text
        if value == value.to_integral_value():
            return str(int(value))
    return text


def normalise_phone(raw: str | None, country_code: str) -> str | None:
    """Normalise a phone number to E.164 digits (no '+').

    Args:
        raw: The raw value: spaces, dashes, dots, parentheses, a '+' or '00' prefix, a
            trunk '0', or a missing country code are all accepted.
        country_code: The source country's calling code ('223', '+253', '254').

    Returns:
        Digits such as '22376123456', or None when empty, not a number, the wrong length
        for the country, or a placeholder (all one digit).

    Examples:
        >>> normalise_phone("76 12 34 56", "223")
        '22376123456'
        >>> normalise_phone("0712-345-678", "254")
        '254712345678'
        >>> normalise_phone("+253 77 12 34 56", "253")
        '25377123456'
        >>> normalise_phone("n/a", "223") is None
        True
    """
    return _parse(raw, country_code)[0]


def phone_problem(raw: str | None, country_code: str) -> str | None:
    """Why a phone value is unusable, or None when it is a number or means "no phone".

    Empty cells, markers without a digit ('n/a', 'néant', '-') and placeholders of one
    repeated digit mean "no phone" and are not problems.

    Args:
        raw: The raw value.
        country_code: The source country's calling code.

    Returns:
        A short reason without the value ("not a phone number", "wrong length for +223"),
        or None.

    Examples:
        >>> phone_problem("76 12 34", "223"), phone_problem("n/a", "223")
        ('wrong length for +223', None)
    """
    return _parse(raw, country_code)[1]


def _parse(raw: str | None, country_code: str) -> tuple[str | None, str | None]:
    """(E.164 digits or None, reason the value is unusable or None)."""
    if not raw:
        return None, None
    cc = country_code.strip().lstrip("+")
    if raw.isdigit() and raw.isascii():
        digits, international = raw, False  # fast path: most cells are bare digits
    else:
        text = raw.strip()
        if _HAS_MULTI.search(text):
            text = _MULTI.split(text, maxsplit=1)[0].strip()
        text = _excel_digits(text)
        compact = _SEPARATORS.sub("", text)  # before the '+' test: "(+223) 76..." is common
        international = compact.startswith("+")
        digits = compact.lstrip("+")
        if not digits.isdigit() or not digits.isascii():
            if not any(ch.isdigit() for ch in raw):
                return None, None  # 'n/a', 'néant', '-': no phone
            return None, "not a phone number"
    if digits.startswith("00"):
        digits, international = digits[2:], True
    wrong_length = f"wrong length for +{cc}"
    nsn_len = NATIONAL_NUMBER_LENGTHS.get(cc)
    if not international:
        if nsn_len is None:
            digits = cc + digits.lstrip("0") if not digits.startswith(cc) else digits
        elif len(digits) == len(cc) + nsn_len and digits.startswith(cc):
            pass  # already carries the country code, without '+'
        elif len(digits) == nsn_len + 1 and digits.startswith("0"):
            digits = cc + digits[1:]  # trunk prefix (Kenya 07xx...)
        elif len(digits) == nsn_len:
            digits = cc + digits
        else:
            return None, (None if len(set(digits)) == 1 else wrong_length)
    elif digits.startswith(cc) and nsn_len is not None:
        national = digits[len(cc) :]
        if national.startswith("0") and len(national) == nsn_len + 1:
            national = national[1:]  # "+254 0712..." written with the trunk zero
        if len(national) != nsn_len:
            return None, wrong_length
        digits = cc + national
    national_part = digits[len(cc) :] if digits.startswith(cc) else digits
    if len(set(national_part)) == 1:
        return None, None  # 00000000, 99999999: "no phone"
    if not 8 <= len(digits) <= 15:
        return None, "wrong length"
    return digits, None
