"""Comparison-level expressions: one definition, compiled to SQL and evaluated in numpy.

A comparison level's condition is a small tree of the expressions below (``Null``,
``Exact``, ``JaroWinkler``, ``AmongTokens``, ``YearGap``, ``Is`` ..., combined with
``AllOf`` and ``AnyOf``). Each expression knows two things:

* :meth:`Expr.sql`: the SQL condition over a pair's ``<column>_l`` / ``<column>_r``
  columns, in a Splink dialect (DuckDB and Spark differ only in function names, which
  the dialect object supplies: ``jaro_winkler_function_name`` ...);
* :meth:`Expr.evaluate`: the same condition over many pairs at once, with numpy, for
  the real-time index (:mod:`linkage.realtime.index`).

Three-valued logic: in SQL a condition on a NULL is unknown, and a ``CASE WHEN`` takes
unknown as false. There is no negation here, only AND and OR, and both are monotone, so
evaluating every unknown as false gives the same final answer: each ``evaluate`` returns
plain booleans, false wherever SQL would say NULL.

The pairs object ``evaluate`` receives (see ``linkage.realtime.index._Pairs``) holds each
column dictionary-encoded: string columns as codes into a vocabulary, integer columns as
their values, ``NULL_CODE`` for NULL. It offers ``left(col)``, ``right(col)`` (the left
side is one int for a single query, an array for a group), ``by_value(lcol, rcol, fn)``
(a function of the two decoded strings, computed once per distinct pair of values) and
``constant(col, side, value)`` (whether one side equals a constant, and whether it is NULL).

Example:
    >>> from splink.internals.dialects import DuckDBDialect
    >>> AllOf(Is("birth_precision", "day"), Exact("birth_date")).sql(DuckDBDialect())
    "(birth_precision_l = 'day' AND birth_precision_r = 'day') AND birth_date_l = birth_date_r"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import jellyfish
import numpy as np

#: Code of a NULL value in every encoded column.
NULL_CODE = -1
#: Code of a query value the register has never seen: not NULL, equal to nothing.
ABSENT_CODE = -2

#: Columns compared as integers (every other standardised column is a string).
INT_COLUMNS = ("birth_year", "birth_month", "birth_day")

_IDENT = re.compile(r"^[a-z][a-z0-9_]*$")
_LITERAL = re.compile(r"^[A-Za-z0-9_ .-]*$")


class Dialect(Protocol):
    """What an expression needs of a Splink ``SplinkDialect``."""

    @property
    def jaro_winkler_function_name(self) -> str: ...

    @property
    def damerau_levenshtein_function_name(self) -> str: ...


class Pairs(Protocol):
    """What an expression needs of the pairs it evaluates (see the module docstring)."""

    def __len__(self) -> int: ...

    def left(self, col: str) -> Any: ...

    def right(self, col: str) -> np.ndarray: ...

    def by_value(self, lcol: str, rcol: str, fn: Any) -> np.ndarray: ...

    def constant(self, col: str, side: str, value: str) -> tuple[Any, Any]: ...


@lru_cache(maxsize=1 << 20)
def jaro_winkler(a: str, b: str) -> float:
    """Jaro-Winkler similarity as DuckDB's ``jaro_winkler_similarity`` computes it."""
    return jellyfish.jaro_winkler_similarity(a, b)


@lru_cache(maxsize=1 << 18)
def damerau_levenshtein(a: str, b: str) -> int:
    return jellyfish.damerau_levenshtein_distance(a, b)


@lru_cache(maxsize=1 << 18)
def has_token(tokens: str, token: str) -> bool:
    """``' ' || tokens || ' ' LIKE '% ' || token || ' %'``."""
    return f" {token} " in f" {tokens} "


def _col(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a column name: {name!r}")
    return name


def _full(pairs: Pairs, value: Any) -> np.ndarray:
    """A boolean array over the pairs (a single query's scalars broadcast)."""
    arr = np.asarray(value, bool)
    return arr if arr.shape == (len(pairs),) else np.full(len(pairs), bool(arr))


class Expr:
    """A condition on a pair of records."""

    def sql(self, dialect: Dialect) -> str:
        raise NotImplementedError

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        raise NotImplementedError

    def columns(self) -> set[str]:
        """The standardised columns the condition reads."""
        raise NotImplementedError

    def _group_sql(self, dialect: Dialect) -> str:
        return f"({self.sql(dialect)})"


@dataclass(frozen=True)
class Null(Expr):
    """The column is NULL on either side."""

    col: str

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        return f"{c}_l IS NULL OR {c}_r IS NULL"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        return _full(pairs, pairs.left(self.col) == NULL_CODE) | (
            pairs.right(self.col) == NULL_CODE)

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class Exact(Expr):
    """Equal values (``col`` on the left, ``other`` or ``col`` on the right)."""

    col: str
    other: str | None = None

    def sql(self, dialect: Dialect) -> str:
        return f"{_col(self.col)}_l = {_col(self.other or self.col)}_r"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        rcol = self.other or self.col
        if rcol != self.col and self.col not in INT_COLUMNS:
            # Two string columns have two vocabularies: compare the values themselves.
            return pairs.by_value(self.col, rcol, str.__eq__)
        lv = pairs.left(self.col)
        return _full(pairs, lv != NULL_CODE) & (pairs.right(rcol) == lv)

    def columns(self) -> set[str]:
        return {self.col, self.other or self.col}

    def _group_sql(self, dialect: Dialect) -> str:
        return self.sql(dialect)


@dataclass(frozen=True)
class JaroWinkler(Expr):
    """Jaro-Winkler similarity of the two values at least ``threshold``."""

    col: str
    threshold: float

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        return f"{dialect.jaro_winkler_function_name}({c}_l, {c}_r) >= {float(self.threshold)}"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        t = float(self.threshold)
        return pairs.by_value(self.col, self.col, lambda a, b: jaro_winkler(a, b) >= t)

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class DamerauLevenshtein(Expr):
    """At most ``distance`` insertions, deletions, substitutions or transpositions apart."""

    col: str
    distance: int

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        return f"{dialect.damerau_levenshtein_function_name}({c}_l, {c}_r) <= {int(self.distance)}"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        d = int(self.distance)
        return pairs.by_value(self.col, self.col, lambda a, b: damerau_levenshtein(a, b) <= d)

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class AmongTokens(Expr):
    """One side's ``key`` is a token of the other side's space-separated ``tokens``.

    Catches swapped name order ("TRAORE Moussa" read as given "traore") and a name moved
    between columns, in either direction.
    """

    key: str
    tokens: str

    def sql(self, dialect: Dialect) -> str:
        k, t = _col(self.key), _col(self.tokens)
        return (f"' ' || {t}_r || ' ' LIKE '% ' || {k}_l || ' %' "
                f"OR ' ' || {t}_l || ' ' LIKE '% ' || {k}_r || ' %'")

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        return (pairs.by_value(self.key, self.tokens, lambda a, b: has_token(b, a))
                | pairs.by_value(self.tokens, self.key, has_token))

    def columns(self) -> set[str]:
        return {self.key, self.tokens}


@dataclass(frozen=True)
class YearGap(Expr):
    """``abs(col_l - col_r)`` equal to (``op="="``) or at most (``op="<="``) ``years``."""

    col: str
    op: str
    years: int

    def __post_init__(self) -> None:
        if self.op not in ("=", "<="):
            raise ValueError(f"YearGap op must be '=' or '<=', not {self.op!r}")
        if self.col not in INT_COLUMNS:
            raise ValueError(f"YearGap needs an integer column, not {self.col!r}")

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        return f"abs({c}_l - {c}_r) {self.op} {int(self.years)}"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        lv, rv = pairs.left(self.col), pairs.right(self.col)
        known = _full(pairs, lv != NULL_CODE) & (rv != NULL_CODE)
        gap = np.abs(rv - lv)
        return known & (gap == self.years if self.op == "=" else gap <= self.years)

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True)
class Is(Expr):
    """The column holds (or, with ``negate``, holds something other than) a constant.

    ``side`` is ``"both"`` (AND of the two sides), ``"either"`` (OR), ``"l"`` or ``"r"``.
    A NULL neither is nor is not the constant.
    """

    col: str
    value: str
    side: str = "both"
    negate: bool = False

    def __post_init__(self) -> None:
        if self.side not in ("both", "either", "l", "r"):
            raise ValueError(f"Is side must be both, either, l or r, not {self.side!r}")
        if not _LITERAL.match(self.value) or self.col in INT_COLUMNS:
            raise ValueError(f"Is needs a string column and a plain constant: {self!r}")

    def _sides(self) -> tuple[str, ...]:
        return ("l", "r") if self.side in ("both", "either") else (self.side,)

    def sql(self, dialect: Dialect) -> str:
        op = "<>" if self.negate else "="
        parts = [f"{_col(self.col)}_{s} {op} '{self.value}'" for s in self._sides()]
        return (" OR " if self.side == "either" else " AND ").join(parts)

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        out = []
        for s in self._sides():
            equal, null = pairs.constant(self.col, s, self.value)
            out.append(_full(pairs, (~np.asarray(null) & ~np.asarray(equal)) if self.negate
                             else equal))
        if len(out) == 1:
            return out[0]
        return out[0] | out[1] if self.side == "either" else out[0] & out[1]

    def columns(self) -> set[str]:
        return {self.col}


@dataclass(frozen=True, init=False)
class AllOf(Expr):
    """Every part holds."""

    parts: tuple[Expr, ...]

    def __init__(self, *parts: Expr):
        if not parts:
            raise ValueError("AllOf() needs at least one part")
        object.__setattr__(self, "parts", tuple(parts))

    def sql(self, dialect: Dialect) -> str:
        return " AND ".join(p._group_sql(dialect) for p in self.parts)

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        out = self.parts[0].evaluate(pairs)
        for p in self.parts[1:]:
            out = out & p.evaluate(pairs)
        return out

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))


@dataclass(frozen=True, init=False)
class AnyOf(Expr):
    """At least one part holds."""

    parts: tuple[Expr, ...]

    def __init__(self, *parts: Expr):
        if not parts:
            raise ValueError("AnyOf() needs at least one part")
        object.__setattr__(self, "parts", tuple(parts))

    def sql(self, dialect: Dialect) -> str:
        return " OR ".join(p._group_sql(dialect) for p in self.parts)

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        out = self.parts[0].evaluate(pairs)
        for p in self.parts[1:]:
            out = out | p.evaluate(pairs)
        return out

    def columns(self) -> set[str]:
        return set().union(*(p.columns() for p in self.parts))



#: Columns ending so are numbers (extra fields' dates as days, numeric values): real
#: time holds them as float arrays, NaN for NULL (see :func:`is_number_column`).
NUMBER_SUFFIX = "__num"


def is_number_column(col: str) -> bool:
    """A floating-point column (compared by :class:`NumberGap`), not a coded string."""
    return col.endswith(NUMBER_SUFFIX)


@dataclass(frozen=True)
class NumberGap(Expr):
    """``abs(col_l - col_r) <= tolerance`` on a number column (:data:`NUMBER_SUFFIX`).

    Real time holds such a column as floats with NaN for NULL: any comparison with NaN
    is false, as SQL's NULL is unknown.
    """

    col: str
    tolerance: float

    def __post_init__(self) -> None:
        if not is_number_column(self.col):
            raise ValueError(f"NumberGap needs a number column (…{NUMBER_SUFFIX}), "
                             f"not {self.col!r}")

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        return f"abs({c}_l - {c}_r) <= {float(self.tolerance)!r}"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        lv = np.asarray(pairs.left(self.col), np.float64)
        with np.errstate(invalid="ignore"):
            return _full(pairs, np.abs(pairs.right(self.col) - lv) <= float(self.tolerance))

    def columns(self) -> set[str]:
        return {self.col}


@lru_cache(maxsize=1 << 18)
def shares_token(a: str, b: str) -> bool:
    """Two space-separated token lists have a token in common."""
    return not set(a.split(" ")).isdisjoint(b.split(" "))


@dataclass(frozen=True)
class SharesToken(Expr):
    """The two sides' space-separated token lists (e-mail addresses ...) share a token."""

    col: str

    def sql(self, dialect: Dialect) -> str:
        c = _col(self.col)
        if getattr(dialect, "sql_dialect_str", "duckdb") == "spark":
            return f"size(array_intersect(split({c}_l, ' '), split({c}_r, ' '))) > 0"
        return f"len(list_intersect(string_split({c}_l, ' '), string_split({c}_r, ' '))) > 0"

    def evaluate(self, pairs: Pairs) -> np.ndarray:
        return pairs.by_value(self.col, self.col, shares_token)

    def columns(self) -> set[str]:
        return {self.col}
