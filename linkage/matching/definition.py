"""THE matching model's definition: every comparison, level and blocking key, once.

Everything that scores or blocks pairs is compiled from this module:

* :func:`linkage.matching.splink_settings.build_settings` turns :data:`COMPARISONS` into
  Splink comparisons (SQL for Splink's DuckDB and Spark backends);
* :mod:`linkage.realtime.index` evaluates the same level expressions with numpy for real time;
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
import re
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


def _swapped(a: str, b: str) -> Expr:
    """``a`` on each side equal to ``b`` on the other (symmetric in the two records)."""
    return AllOf(Exact(a, b), Exact(b, a))


#: The given name and the family or father's name swapped between the two records, both
#: ways: one clerk's columns the other way round ("HERSI | Moussa" against "Moussa
#: Hersi"). Far rarer between strangers than one name found somewhere in the other.
_GIVEN_SWAPPED = AnyOf(_swapped("given_key", "family_key"), _swapped("given_key", "father_key"))


def _name(name: str, what: str, std: str, key: str, similar: str | None = None,
          swap: Level | None = None, shifted: Level | None = None) -> Comparison:
    """A name part: exact, same transliteration key, similar spelling, swapped with the
    given name, shifted by a name left out, found elsewhere."""
    return Comparison(name, f"{what} ({std}, {key})", (
        _missing(key, what),
        Level("exact", Exact(std), tf_column=std),
        Level("same transliteration key", Exact(key), tf_column=key),
        *((swap,) if swap is not None else ()),
        Level("jaro-winkler >= 0.9", JaroWinkler(similar or std, 0.9)),
        *((shifted,) if shifted is not None else ()),
        # Swapped name order ("TRAORE Moussa" read as given "traore") and names moved
        # between columns, in either direction.
        Level("found among other name tokens", AmongTokens(key, "name_keys")),
        Level("different", None),
    ))


# A swap is one event seen by two comparisons: the given name's level weighs it (trained);
# the family or father's name's level is neutral (m = u), so it is not counted twice.
_SWAP_WEIGHED = Level("swapped with the family or father's name", _GIVEN_SWAPPED)
_SWAP_NEUTRAL = Level("swapped with the given name (weighed by the given name)",
                      _GIVEN_SWAPPED, m=0.01, u=0.01)


_BOTH_DAY = Is("birth_precision", "day")
# A date known to the day on one side only, or on neither: year-only, placeholder
# (01/01/YYYY), month precision or derived from an age.
_IMPRECISE = Is("birth_precision", "day", side="either", negate=True)

# A year derived from an age: the person's birthday may fall either side of the reference
# date, and a roster's age is often an enumerator's estimate, so one or two years off is
# what a true pair of an age and a date looks like. A stated year (year-only, 01/01/YYYY)
# is the year someone wrote down: it should agree. Their levels are apart so that each is
# weighed by what it is (pooled, the age's usual year off counted as a stated year's
# rare one, and the other way round).
_AGE = Is("birth_precision", "age", side="either")

_BIRTH_DATE = Comparison("birth_date", "birth date with its precision", (
    _missing("birth_year", "birth year"),
    Level("exact date", AllOf(_BOTH_DAY, Exact("birth_date"))),
    Level("day and month swapped", AllOf(_BOTH_DAY, Exact("birth_year"),
                                         Exact("birth_month", "birth_day"),
                                         Exact("birth_day", "birth_month"))),
    Level("same year, one year from an age", AllOf(_AGE, Exact("birth_year"))),
    Level("year off by one, one year from an age", AllOf(_AGE, YearGap("birth_year", "=", 1))),
    Level("year off by two, one year from an age", AllOf(_AGE, YearGap("birth_year", "=", 2))),
    Level("years 3 to 5 apart, one year from an age",
          AllOf(_AGE, YearGap("birth_year", "<=", 5))),
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

# A record of two names, given and X, where X is the other record's grandfather's name:
# the father's name was left out ("Maryan Cabdalla" for Mariame Ismail Abdallah). Without
# this level the pair reads as two different fathers.
_FATHER_SHIFTED = Level(
    "the other's grandfather's name (a name left out)",
    AllOf(Null("grandfather_key"), AnyOf(Exact("father_key", "grandfather_key"),
                                         Exact("grandfather_key", "father_key"))))

#: Every comparison of the model, in order.
COMPARISONS: tuple[Comparison, ...] = (
    # The first given name is the strongest evidence that separates siblings.
    _name("given_name", "given name", "given_std", "given_key", similar="given_first",
          swap=_SWAP_WEIGHED),
    _name("family_name", "family name", "family_std", "family_key", swap=_SWAP_NEUTRAL),
    _name("father_name", "father's name", "father_std", "father_key", swap=_SWAP_NEUTRAL,
          shifted=_FATHER_SHIFTED),
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

# Letters a consonant skeleton drops: vowels, and h / w / y, which spellings add and
# drop (Hawa / Awa, Keyta / Keita). Spaces go too (a typo splits or joins words).
_SKELETON_DROP = "[aeiouyhw ]"
_SKELETON_RE = re.compile(_SKELETON_DROP)


@dataclass(frozen=True)
class Part:
    """A blocking-key part derived from one standardised column, in SQL and in Python.

    ``op`` is one of:

    * ``"first"`` / ``"last"``: the first / last ``n`` characters (a typo in the other
      half of a name leaves it intact);
    * ``"skeleton"``: the first letter, then the consonants except h, w, y (vowel
      changes, doubled letters added or dropped: Traore / Traoer, Hersi / Hirsi);
    * ``"consonants"``: the skeleton without the first letter, so a dropped or added
      initial vowel or h still meets (Aminata / Minata, Ousmane / Housmane); NULL when
      no consonant is left;
    * ``"bucket"``: ``(value + shift) // n`` of an integer column. Two buckets with
      shifts half a width apart put any two years at most ``n // 2`` apart in one
      shared bucket;
    * ``"first_token"`` / ``"last_token"``: the first / last space-separated token
      (of ``name_keys``, sorted: order-free, and a second given name or a name moved
      between columns changes only one end);
    * ``"monthday"``: month and day of an ISO date (``birth_date`` is ISO only at day
      precision): a typo in the year of a full date leaves them intact;
    * ``"pair"``: the column and ``other``, in sorted order, joined by a space: two names
      swapped between the columns (given "Traore", family "Mamadou") still meet, and,
      unlike ``name_keys``, a third name present on one side only changes nothing.

    Every op returns NULL exactly when the column is NULL (``"pair"``: when either
    column is), except ``"consonants"``.
    """

    column: str
    op: str
    n: int = 0
    shift: int = 0
    other: str | None = None

    def __post_init__(self) -> None:
        if self.op not in _PART_OPS:
            raise ValueError(f"unknown key part op {self.op!r}; expected one of {_PART_OPS}")
        if (self.op == "pair") != (self.other is not None):
            raise ValueError("a key part takes a second column (other) exactly when its op "
                             "is 'pair'")

    def sql(self, dialect: str = "duckdb") -> str:
        """The part in SQL for a Splink backend (``"duckdb"`` or ``"spark"``).

        The two differ in three spellings only: DuckDB's ``regexp_replace`` replaces
        the first match unless given ``'g'`` (Spark's always replaces all, and its fourth
        argument is a position), integer division (``//`` / ``div``) and the last list
        element (``string_split(...)[-1]`` / ``element_at(split(...), -1)``).
        """
        if dialect not in KEY_DIALECTS:
            raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {KEY_DIALECTS}")
        spark = dialect == "spark"
        c, n = self.column, self.n
        every = "" if spark else ", 'g'"
        if self.op == "first":
            return f"substr({c}, 1, {n})"
        if self.op == "last":
            return f"right({c}, {n})"
        if self.op == "skeleton":
            return (f"(substr({c}, 1, 1) || "
                    f"regexp_replace(substr({c}, 2), '{_SKELETON_DROP}', ''{every}))")
        if self.op == "consonants":
            return f"nullif(regexp_replace({c}, '{_SKELETON_DROP}', ''{every}), '')"
        if self.op == "bucket":
            return f"(({c} + {self.shift}) {'div' if spark else '//'} {n})"
        if self.op == "first_token":
            return f"split_part({c}, ' ', 1)"
        if self.op == "monthday":
            return f"substr({c}, 6, 5)"
        if self.op == "pair":
            # NULL when either is: || propagates NULL, and a NULL comparison takes ELSE.
            o = self.other
            return f"(CASE WHEN {c} <= {o} THEN {c} || ' ' || {o} ELSE {o} || ' ' || {c} END)"
        if spark:  # last_token
            return f"element_at(split({c}, ' '), -1)"
        return f"string_split({c}, ' ')[-1]"

    def of(self, v: Any) -> Any:
        """The part of a (non-NULL) column value; ``None`` when it has none."""
        if self.op == "first":
            return v[: self.n]
        if self.op == "last":
            return v[-self.n:]
        if self.op == "skeleton":
            return v[:1] + _SKELETON_RE.sub("", v[1:])
        if self.op == "consonants":
            return _SKELETON_RE.sub("", v) or None
        if self.op == "bucket":
            return (int(v) + self.shift) // self.n
        if self.op == "first_token":
            return v.split(" ")[0]
        if self.op == "monthday":
            return v[5:10]
        if self.op == "pair":
            raise TypeError("a 'pair' part reads two columns: use Part.value(row)")
        return v.split(" ")[-1]  # last_token

    def value(self, row: Mapping[str, Any]) -> Any:
        """The part of one standardised row; ``None`` when it has none."""
        v = row.get(self.column)
        if v is None:
            return None
        if self.op == "pair":
            w = row.get(self.other)  # type: ignore[arg-type]
            if w is None:
                return None
            # Python compares str by code point, SQL VARCHAR by UTF-8 bytes: the same order.
            return f"{v} {w}" if v <= w else f"{w} {v}"
        return self.of(v)


#: SQL dialects :meth:`Part.sql` and :func:`key_sql` write (Splink's names for them).
KEY_DIALECTS = ("duckdb", "spark")

_PART_OPS = ("first", "last", "skeleton", "consonants", "bucket", "first_token", "last_token",
             "monthday", "pair")


def first(col: str, n: int) -> Part:
    return Part(col, "first", n)


def last(col: str, n: int) -> Part:
    return Part(col, "last", n)


def skeleton(col: str) -> Part:
    return Part(col, "skeleton")


def consonants(col: str) -> Part:
    return Part(col, "consonants")


def years(width: int, shift: int = 0) -> Part:
    """The birth year in buckets of ``width`` years, shifted by ``shift``."""
    return Part("birth_year", "bucket", width, shift)


def monthday(col: str) -> Part:
    return Part(col, "monthday")


def first_token(col: str) -> Part:
    return Part(col, "first_token")


def last_token(col: str) -> Part:
    return Part(col, "last_token")


def pair(col: str, other: str) -> Part:
    """Two columns in sorted order: the same two names in either column."""
    return Part(col, "pair", other=other)


KeyPart = str | Part

#: Blocking keys: each is a list of standardised columns or derived :class:`Part` s,
#: concatenated into one key column ``bk_<name>`` whose over-large blocks are nulled
#: (see linkage.engines.duckdb_sql). Chosen by measured recall per comparison
#: (benchmarks/RESULTS.md, "Blocking that survives typos" and "Blocking keys without a
#: place"): a true pair needs one key it agrees on, so each key leaves out something a
#: true pair may lack or get wrong: the place (nutrition rosters have a village and no
#: commune; people move), the birth year (estimated ages are off by one to three years:
#: years in 2-, 4- and 10-year buckets, each width twice, shifted by half a width, so two
#: years up to half a width apart always share one), one letter of a name (first / last 3
#: letters, consonant skeletons), the order of the name columns (sorted name keys, their
#: first / last token, sorted pairs of two name columns).
#:
#: Caps are adaptive by construction: a key with one more part (a year bucket, the sex, a
#: place) splits the blocks of a coarser one, and its pairs are a subset of the coarser
#: key's wherever that one is under the cap, so it adds comparisons only where the coarse
#: block was too large to keep (common names).
BLOCKING_KEYS: dict[str, tuple[KeyPart, ...]] = {
    # Identifiers.
    "nid": ("national_id",),
    "phone": ("phone",),
    "birth_date": ("birth_date",),  # a full date (day precision only, never 01/01)
    # All name keys, sorted: swapped columns meet, place or year missing on one side.
    "names_commune": ("name_keys", "commune"),
    "names_4y": ("name_keys", years(4, 2)),
    # The two ends of the sorted name keys, in any column order: a name added or dropped
    # that sorts between them (a second given name) leaves them intact.
    "name_ends": (first_token("name_keys"), last_token("name_keys")),
    "name_last_sex_4y_village": (last_token("name_keys"), "sex", years(4, 2), "village"),
    "name_first_sex_2y_village": (first_token("name_keys"), "sex", years(2, 1), "village"),
    # Given and family (or father's) name in either column, no place, a year one or two
    # off (a 4-year bucket twice, shifted by 2): unlike name_keys, a father's or second
    # name on one side only changes nothing. The common names these blocks cap are
    # reached with a place (names_commune, given_2y_commune ...).
    "given_family_4y": (pair("given_key", "family_key"), years(4)),
    "given_family_4y_shifted": (pair("given_key", "family_key"), years(4, 2)),
    # ... the same in 2-year buckets and the exact year: pairs the 4-year blocks hold
    # already wherever they are under the cap (no comparison added: none at 20,000
    # persons), and the ones they drop for common names in large registers (200,000).
    "given_family_2y": (pair("given_key", "family_key"), years(2)),
    "given_family_2y_shifted": (pair("given_key", "family_key"), years(2, 1)),
    "given_family_year": (pair("given_key", "family_key"), "birth_year"),
    "given_father_4y": (pair("given_key", "father_key"), years(4)),
    "given_father_4y_shifted": (pair("given_key", "father_key"), years(4, 2)),
    # One typo in the given or the family name, no place, no year.
    "given3_family3": (first("given_key", 3), first("family_key", 3)),
    "given_end3_family_end3": (last("given_key", 3), last("family_key", 3)),
    "consonants_given_family": (consonants("given_key"), skeleton("family_key")),
    # One typo AND a year one or two off, no place: the same three, with a 4-year bucket
    # twice (their place-free, year-free versions above are capped on common names).
    "given3_family3_4y": (first("given_key", 3), first("family_key", 3), years(4)),
    "given3_family3_4y_shifted": (first("given_key", 3), first("family_key", 3),
                                  years(4, 2)),
    "given_end3_family_end3_4y": (last("given_key", 3), last("family_key", 3), years(4)),
    "given_end3_family_end3_4y_shifted": (last("given_key", 3), last("family_key", 3),
                                          years(4, 2)),
    "skeleton_given_family_4y": (skeleton("given_key"), skeleton("family_key"), years(4)),
    "skeleton_given_family_4y_shifted": (skeleton("given_key"), skeleton("family_key"),
                                         years(4, 2)),
    # The family name wrong or swapped: the given name with a place and a year bucket.
    "given_2y_commune": ("given_key", years(2, 1), "commune"),
    "family3_decade_commune": (first("family_key", 3), years(10), "commune"),
    # Patronymic names (Horn): given + father's name, each tolerant of a typo.
    "skeleton_given_father_decade_commune": (skeleton("given_key"), skeleton("father_key"),
                                             years(10), "commune"),
    "consonants_given_father_village": (consonants("given_key"), skeleton("father_key"),
                                        "village"),
    "given3_father_decade": (first("given_key", 3), "father_key", years(10, 5)),
    # ... and one typo with a year off, no place.
    "given3_father3_4y_shifted": (first("given_key", 3), first("father_key", 3),
                                  years(4, 2)),
    "given_end3_father_end3_4y": (last("given_key", 3), last("father_key", 3), years(4)),
    "skeleton_given_father_4y": (skeleton("given_key"), skeleton("father_key"), years(4)),
    # One name alone: only rare names (typos, uncommon names) stay under the cap, and
    # they are what a record with its other name, date and place missing still has.
    "given_alone": ("given_key",),
    "family_alone": ("family_key",),
    # ... in any column: "Fulton" alone in the given-name column, "David Fulton" beside it.
    "name_first_alone": (first_token("name_keys"),),
    "name_last_alone": (last_token("name_keys"),),
    # Any one name with a fine place (a postcode, a village): the other name missing,
    # moved to another column or misspelt. Capped low (KEY_CAPS). The same with a
    # commune or the birth year was dropped: blocks of common names in a commune or a
    # year cost 10-15 comparisons a record and their pairs, alone, were rarely true ones
    # and often wrongly linked (benchmarks/RESULTS.md, "A comparison budget").
    "name_first_village": (first_token("name_keys"), "village"),
    "name_last_village": (last_token("name_keys"), "village"),
    # A full date whose year has a typo (1983 / 1973).
    "given_monthday": ("given_key", monthday("birth_date")),
    "family_monthday": ("family_key", monthday("birth_date")),
}


#: Keys with a lower block cap than the project's ``max_block_size``: a single name is
#: worth comparing on only when it is rare (a typo, an uncommon name), and at a low cap
#: its comparisons stay few however large the register.
#:
#: The second group are back-up keys whose blocks of 30 to 100 records cost more than
#: they find: a block of n records costs n(n-1)/2 comparisons for about n/2 true pairs,
#: and the true pairs of their large blocks are nearly all reached by another key. Capped
#: at 30 (``benchmarks/blocking_budget.py``): 27 % fewer comparisons at 230,000 hard
#: sahel records (77.6 -> 56.3 per record), 30 % fewer on hard horn, blocking recall
#: 0.2-0.3 points lower there and unchanged on FEBRL and fake_1000; pairwise F1 of
#: hard sahel / horn 50,000 unchanged (0.8302 -> 0.8301, 0.7489 -> 0.7497).
KEY_CAPS: dict[str, int] = {"given_alone": 30, "family_alone": 30,
                            "name_first_alone": 30, "name_last_alone": 30,
                            # back-up keys (above)
                            "family3_decade_commune": 30, "name_ends": 30,
                            "family_monthday": 30, "given_monthday": 30,
                            "name_last_village": 30, "name_first_village": 30}


def key_cap(name: str, max_block_size: int) -> int:
    """The largest block key ``name`` keeps: blocks above it are nulled (batch) or
    skipped (real time)."""
    return min(max_block_size, KEY_CAPS.get(name, max_block_size))


def _part_sql(c: KeyPart, dialect: str) -> str:
    return c.sql(dialect) if isinstance(c, Part) else c


def key_sql(cols: Sequence[KeyPart], dialect: str = "duckdb") -> str:
    """SQL of a blocking key: its parts joined by ``|``; NULL when any part is NULL.

    A key missing a component is no key at all. ``dialect`` is ``"duckdb"`` or ``"spark"``
    (Spark has no unsized ``VARCHAR``: ``STRING``).
    """
    text = "STRING" if dialect == "spark" else "VARCHAR"
    parts = " || '|' || ".join(f"CAST({_part_sql(c, dialect)} AS {text})" for c in cols)
    not_null = " AND ".join(f"{_part_sql(c, dialect)} IS NOT NULL" for c in cols)
    return f"CASE WHEN {not_null} THEN {parts} END"


def key_of(row: Mapping[str, Any], cols: Sequence[KeyPart]) -> str | None:
    """The blocking key of one standardised row, as :func:`key_sql` computes it."""
    parts = []
    for c in cols:
        if isinstance(c, Part):
            v = c.value(row)
        else:
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
