"""THE matching model's definition: every comparison, level and blocking key, once.

Everything that scores or blocks pairs is compiled from this module:

* :func:`linkage.matching.splink_settings.build_settings` turns :data:`COMPARISONS` into
  Splink comparisons (SQL for Splink's DuckDB and Spark backends);
* :mod:`linkage.resolver` evaluates the same level expressions with numpy for real time;
* :data:`BLOCKING_KEYS` are materialised in SQL by the batch (:func:`key_sql`) and
  computed per record by the real-time index (:func:`key_of`).

To add or change a comparison level, edit :data:`COMPARISONS` and nothing else: the
parity tests (``tests/test_parity.py``) generate pairs for every level of every comparison
and check that Splink's SQL on DuckDB and the numpy evaluator agree. The model file
records :func:`definition_sha256`; a model trained on another definition is refused, so a
changed definition means retraining (``linkage train``) or shipping new models.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from linkage.matching.levels import (
    AllOf,
    AmongTokens,
    AnyOf,
    DamerauLevenshtein,
    Exact,
    Expr,
    Is,
    JaroWinkler,
    Null,
    YearGap,
)


@dataclass(frozen=True)
class Level:
    """One comparison level: a condition (``None`` for the ELSE level) and its options.

    Attributes:
        label: what the level means, in words (charts, explanations, the API's evidence).
        condition: the expression; ``None`` for the final ELSE level.
        null: the level is the comparison's null level (weight 0: no evidence).
        tf_column: term-frequency adjustment on this column (rare values weigh more).
        m, u: fixed probabilities, not trained (``None``: trained).
    """

    label: str
    condition: Expr | None
    null: bool = False
    tf_column: str | None = None
    m: float | None = None
    u: float | None = None


@dataclass(frozen=True)
class Comparison:
    """A named comparison: its levels, first match wins, the last one ELSE."""

    name: str
    description: str
    levels: tuple[Level, ...]

    def __post_init__(self) -> None:
        if not self.levels or self.levels[-1].condition is not None:
            raise ValueError(f"comparison {self.name}: the last level must be ELSE")
        if any(lvl.condition is None for lvl in self.levels[:-1]):
            raise ValueError(f"comparison {self.name}: only the last level may be ELSE")


# ----------------------------------------------------------------------------- levels


def _missing(col: str, what: str) -> Level:
    return Level(f"{what} missing on either side", Null(col), null=True)


def _name(name: str, what: str, std: str, key: str, similar: str | None = None) -> Comparison:
    """A name part: exact, same transliteration key, similar spelling, found elsewhere."""
    return Comparison(name, f"{what} ({std}, {key})", (
        _missing(key, what),
        Level("exact", Exact(std), tf_column=std),
        Level("same transliteration key", Exact(key), tf_column=key),
        Level("jaro-winkler >= 0.9", JaroWinkler(similar or std, 0.9)),
        # Swapped name order ("TRAORE Moussa" read as given "traore") and names moved
        # between columns, in either direction.
        Level("found among other name tokens", AmongTokens(key, "name_keys")),
        Level("different", None),
    ))


_BOTH_DAY = Is("birth_precision", "day")
# A date known to the day on one side only, or on neither: year-only, placeholder
# (01/01/YYYY), month precision or derived from an age.
_IMPRECISE = Is("birth_precision", "day", side="either", negate=True)

_BIRTH_DATE = Comparison("birth_date", "birth date with its precision", (
    _missing("birth_year", "birth year"),
    Level("exact date", AllOf(_BOTH_DAY, Exact("birth_date"))),
    Level("day and month swapped", AllOf(_BOTH_DAY, Exact("birth_year"),
                                         Exact("birth_month", "birth_day"),
                                         Exact("birth_day", "birth_month"))),
    Level("same year, one date imprecise", AllOf(_IMPRECISE, Exact("birth_year"))),
    Level("year off by one, one date imprecise", AllOf(_IMPRECISE, YearGap("birth_year", "=", 1))),
    Level("year off by two, one date imprecise", AllOf(_IMPRECISE, YearGap("birth_year", "=", 2))),
    Level("same year, different full dates", AllOf(_BOTH_DAY, Exact("birth_year"))),
    Level("years 1 to 5 apart", YearGap("birth_year", "<=", 5)),
    Level("more than 5 years apart", None),
))

_SEX = Comparison("sex", "sex", (
    _missing("sex", "sex"),
    Level("same sex", Exact("sex")),
    Level("different sex", None),
))

# Fixed m: trained from national-ID pairs, this comparison would learn m=1 from itself.
# Random pairs almost never differ by one typo: its u is fixed, as sampling rarely sees it.
_NATIONAL_ID = Comparison("national_id", "national ID", (
    _missing("national_id", "national ID"),
    Level("same national ID", Exact("national_id"), m=0.95),
    Level("one typo or transposition", DamerauLevenshtein("national_id", 1), m=0.04, u=1e-5),
    Level("different national IDs", None, m=0.01),
))

# Phone, mother's name and place as ONE comparison. Household members share all of them,
# so counted separately they would add up (phone +13 bits, village +7, mother +8 ...) and
# overwhelm a given-name disagreement: twins would merge. As one comparison, the evidence
# a shared household gives is counted once (and capped: HOUSEHOLD_EVIDENCE_CAP_BITS).
_KIN = AnyOf(Exact("phone"), Exact("mother_key"))
_HOUSEHOLD = Comparison("household", "phone, mother's name and place, counted once", (
    Level("phone and place missing on either side",
          AllOf(Null("phone"), Null("village"), Null("commune")), null=True),
    Level("same phone or mother, same village", AllOf(_KIN, Exact("village"))),
    Level("same phone or mother", _KIN),
    Level("same village", Exact("village")),
    Level("same commune", Exact("commune")),
    Level("same region", Exact("region")),
    Level("different places", None),
))

#: Every comparison of the model, in order.
COMPARISONS: tuple[Comparison, ...] = (
    # The first given name is the strongest evidence that separates siblings.
    _name("given_name", "given name", "given_std", "given_key", similar="given_first"),
    _name("family_name", "family name", "family_std", "family_key"),
    _name("father_name", "father's name", "father_std", "father_key"),
    _name("grandfather_name", "grandfather's name", "grandfather_std", "grandfather_key"),
    _BIRTH_DATE,
    _SEX,
    _NATIONAL_ID,
    _HOUSEHOLD,
)

# Evidence that a household shares (phone, village, mother's name) says little about
# *which* member a record is: u from random pairs makes a shared phone worth ~13 bits,
# enough to merge a father with the son named after him. Agreement weight capped, in bits.
HOUSEHOLD_EVIDENCE_CAP_BITS: dict[str, float] = {"household": 6.0}

#: Comparisons whose first agreement level must show m > u, or the model is rejected.
MUST_AGREE_LEVELS: dict[str, int] = {"given_name": 1, "birth_date": 1}

#: The unique-ID column and the prior a fresh (untrained) settings object starts from.
UNIQUE_ID_COLUMN = "uid"
DEFAULT_PRIOR = 1e-6


# ----------------------------------------------------------------------------- blocking

#: Blocking keys: each is a list of standardised columns, concatenated into one key
#: column ``bk_<name>`` whose over-large blocks are nulled (see linkage.engine).
BLOCKING_KEYS: dict[str, tuple[str, ...]] = {
    "nid": ("national_id",),
    # Tiers: when a coarse key's block is capped ("mamad|traur|1980"), the finer key
    # below it still brings that record's true pairs within reach.
    "given_family_year": ("given_key", "family_key", "birth_year"),
    "given_family_year_commune": ("given_key", "family_key", "birth_year", "commune"),
    "given_family_commune": ("given_key", "family_key", "commune"),
    "given_family_village": ("given_key", "family_key", "village"),
    # Given-name spellings the key does not unite (Fatim / Fatoumata, typos).
    "phonetic_family_commune": ("given_phonetic", "family_key", "commune"),
    "family_year_village": ("family_key", "birth_year", "village"),
    "given_father": ("given_key", "father_key"),
    "given_father_year": ("given_key", "father_key", "birth_year"),
    "given_father_grandfather": ("given_key", "father_key", "grandfather_key"),
    "given_father_village": ("given_key", "father_key", "village"),
    "phonetic_father_commune": ("given_phonetic", "father_key", "commune"),
    "father_year_village": ("father_key", "birth_year", "village"),
    "names_sorted_year": ("name_keys", "birth_year"),
    "names_sorted_commune": ("name_keys", "commune"),
    "given_year_village": ("given_key", "birth_year", "village"),
    "phone_given": ("phone", "given_phonetic"),
}


def key_sql(cols: Sequence[str]) -> str:
    """SQL of a blocking key: its parts joined by ``|``; NULL when any part is NULL.

    A key missing a component is no key at all.
    """
    parts = " || '|' || ".join(f"CAST({c} AS VARCHAR)" for c in cols)
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    return f"CASE WHEN {not_null} THEN {parts} END"


def key_of(row: Mapping[str, Any], cols: Sequence[str]) -> str | None:
    """The blocking key of one standardised row, as :func:`key_sql` computes it."""
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None:
            return None
        parts.append(str(v))
    return "|".join(parts)


# ----------------------------------------------------------------------------- identity


@cache
def definition_sha256() -> str:
    """A hash of :data:`COMPARISONS`: the model file records the one it was trained on.

    Blocking keys are not part of it: they decide which pairs are scored, not how, so a
    model stays valid when they change.
    """
    return hashlib.sha256(repr(COMPARISONS).encode()).hexdigest()


def comparison(name: str) -> Comparison:
    for comp in COMPARISONS:
        if comp.name == name:
            return comp
    raise KeyError(name)
