"""Error models: the ways clerks, forms and spreadsheets distort a true value.

Every function takes the caller's ``random.Random`` so a whole run is reproducible
from one seed. Rates live in the source definitions of ``generate.py``; this module
only knows *how* to distort.
"""

from __future__ import annotations

import random
import unicodedata
from datetime import date
from functools import lru_cache

_LETTERS = "abcdefghijklmnopqrstuvwxyz"
_NEAR = {  # keyboard / phonetic neighbours used for substitutions
    "a": "eo",
    "e": "ai",
    "i": "ey",
    "o": "ua",
    "u": "oi",
    "y": "i",
    "b": "pv",
    "p": "b",
    "d": "t",
    "t": "d",
    "g": "k",
    "k": "cg",
    "c": "k",
    "m": "n",
    "n": "m",
    "s": "zc",
    "z": "s",
    "l": "r",
    "r": "l",
    "h": "x",
    "x": "h",
    "f": "v",
    "v": "f",
    "j": "d",
}


@lru_cache(maxsize=65536)
def strip_accents(text: str) -> str:
    """Remove diacritics (Keïta -> Keita), as feature phones and old spreadsheets do."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def typo(text: str, rng: random.Random) -> str:
    """Apply one keyboard error: insert, delete, substitute or transpose one letter."""
    positions = [i for i, c in enumerate(text) if c.isalpha()]
    if len(positions) < 3:
        return text
    i = rng.choice(positions[1:])  # first letter is rarely wrong
    op = rng.random()
    ch = text[i]
    upper = ch.isupper()

    def letter() -> str:
        near = _NEAR.get(ch.lower())
        new = rng.choice(near) if near and rng.random() < 0.7 else rng.choice(_LETTERS)
        return new.upper() if upper else new

    if op < 0.25:  # insert (often a doubled letter)
        new = ch if rng.random() < 0.5 else letter()
        return text[:i] + new + text[i:]
    if op < 0.5:  # delete
        return text[:i] + text[i + 1 :]
    if op < 0.8:  # substitute
        return text[:i] + letter() + text[i + 1 :]
    j = i - 1  # transpose with the previous character
    if not text[j].isalpha():
        return text[:i] + letter() + text[i + 1 :]
    return text[:j] + text[i] + text[j] + text[i + 1 :]


def apply_case(text: str, style: str) -> str:
    """Render text as 'upper', 'lower', 'title' or 'asis'."""
    if style == "upper":
        return text.upper()
    if style == "lower":
        return text.lower()
    if style == "title":
        return " ".join(w[:1].upper() + w[1:].lower() for w in text.split(" "))
    return text


def transpose_digits(value: str, rng: random.Random) -> str:
    """Swap two adjacent distinct digits of an identifier (the classic keying error)."""
    idx = [
        i
        for i in range(len(value) - 1)
        if value[i].isdigit() and value[i + 1].isdigit() and value[i] != value[i + 1]
    ]
    if not idx:
        return value
    i = rng.choice(idx)
    return value[:i] + value[i + 1] + value[i] + value[i + 2 :]


def age_at(birth: date, ref: date) -> int:
    """Completed years between ``birth`` and ``ref``."""
    return ref.year - birth.year - ((ref.month, ref.day) < (birth.month, birth.day))


def fuzz_year(year: int, rng: random.Random, p_off: float = 0.3) -> int:
    """An estimated birth year: right most of the time, else off by one or two."""
    r = rng.random()
    if r >= p_off:
        return year
    delta = 1 if r < p_off * 0.8 else 2
    return year + (delta if rng.random() < 0.5 else -delta)
