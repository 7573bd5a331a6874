"""Sex codes: whatever a roster writes, 'M', 'F' or None."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

from linkage.standardise.names import fold

__all__ = ["DEFAULT_SEX_CODES", "MISSING_SEX_CODES", "parse_sex"]

#: Folded codes accepted when a source declares none (French, English, Swahili, Somali).
DEFAULT_SEX_CODES: dict[str, list[str]] = {
    "M": [
        "m", "h", "1", "male", "masculin", "masc", "homme", "garcon", "man", "boy",
        "me", "mwanaume", "kiume", "lab", "rag",
    ],
    "F": [
        "f", "2", "female", "feminin", "fem", "femme", "fille", "woman", "girl",
        "ke", "mwanamke", "kike", "dhedig", "dheddig", "naag",
    ],
}  # fmt: skip
#: Folded values meaning "not recorded": None, not a reject.
MISSING_SEX_CODES: frozenset[str] = frozenset(
    {"", "na", "n a", "nan", "none", "null", "nr", "nd", "inconnu", "unknown", "ind", "0", "9"}
)


@lru_cache(maxsize=64)
def _lookup(codes: tuple[tuple[str, tuple[str, ...]], ...]) -> dict[str, str]:
    table: dict[str, str] = {}
    for sex, values in codes:
        if sex not in ("M", "F"):
            raise ValueError(f"sex codes must map 'M' and 'F', got {sex!r}")
        for value in values:
            table[fold(value)] = sex
    return table


def _freeze(codes: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple(sorted((k, tuple(v)) for k, v in codes.items()))


_DEFAULT = _freeze(DEFAULT_SEX_CODES)


def parse_sex(raw: str | None, codes: Mapping[str, Sequence[str]] | None = None) -> str | None:
    """Map a raw sex code onto 'M' or 'F'.

    Args:
        raw: The raw value ('M', 'Homme', 'féminin', '2', '1.0'...).
        codes: A source's own coding, ``{'M': [...], 'F': [...]}``; replaces the defaults
            (a source coding 1 = female must not inherit 1 = male).

    Returns:
        'M', 'F', or None when empty or a "not recorded" marker.

    Raises:
        ValueError: "unknown sex code" for anything else (the record is rejected).

    Examples:
        >>> parse_sex("Féminin"), parse_sex("H"), parse_sex(" ")
        ('F', 'M', None)
        >>> parse_sex("1", {"F": ["1"], "M": ["2"]})
        'F'
    """
    key = fold(raw)
    if key.endswith(" 0") and key[:-2].isdigit():
        key = key[:-2]  # '1.0' from a spreadsheet folds to '1 0'
    table = _lookup(_DEFAULT if codes is None else _freeze(codes))
    sex = table.get(key)
    if sex is not None:
        return sex
    if key in MISSING_SEX_CODES or not key.strip("-? "):
        return None
    raise ValueError("unknown sex code")
