"""Extra fields: project-declared comparisons appended to the built-in definition.

A source may map columns beyond the canonical person into named *extra fields*
(``extra.<name>: column`` in its ``columns``), and the project file declares how each one
compares (``extra_fields:``, see :mod:`linkage.config`). Each declaration is compiled here
into an ordinary :class:`~linkage.matching.definition.Comparison` made of the same level
expressions as the built-in ones (:mod:`linkage.matching.levels`), so it follows the one
path everything else does: Splink SQL for the batch (DuckDB and Spark,
:mod:`linkage.matching.splink_settings`), numpy for real time (:mod:`linkage.realtime.index`),
the trained model's m/u, explanations. Nothing here is a second scorer.

:class:`Definition` is a project's whole matching definition: the built-in comparisons
and blocking keys of :mod:`linkage.matching.definition`, then the extra comparisons (and
the blocking keys the project asks for). With no extra fields it *is* the built-in
definition: the same comparisons, keys and hash, so shipped models keep loading.

Standardised extra values are columns named ``x_<name>`` (and helper columns
``x_<name>__<what>``; those ending ``__num`` are numbers). They are stored on each record
as one JSON object (``records.extra``) and expanded into columns where the batch or the
index reads records (:func:`columns_sql`).

Example:
    >>> d = Definition((ExtraField("email", "tokens", block=("alone",)),))
    >>> [lvl.label for lvl in d.comparison("email").levels]
    ['email missing on either side', 'same tokens', 'a token in common', 'different']
    >>> d.blocking_keys["x_email"]
    (Part(column='x_email', op='first_token', n=0, shift=0),)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from linkage.matching import definition as builtin
from linkage.matching.definition import Comparison, KeyPart, Level, first, first_token, last_token
from linkage.matching.levels import (
    DamerauLevenshtein,
    Exact,
    JaroWinkler,
    Null,
    NumberGap,
    SharesToken,
)

#: ``kind:`` values of an extra field.
KINDS = ("exact", "name", "fuzzy", "date", "numeric", "code", "tokens")
#: ``block:`` values: a key on the field alone, or with the key of a name part, either
#: end of the sorted name keys (a name in either column), the given name's initial (a
#: nickname or typo after it: Bob / Bobby), the birth year or a canonical place. Besides
#: these, ``extra.<other>``: with another extra field (a street number with its street).
BLOCK_WITH: dict[str, KeyPart | None] = {
    "alone": None, "given_name": "given_key", "family_name": "family_key",
    "father_name": "father_key", "name_first": first_token("name_keys"),
    "name_last": last_token("name_keys"), "given_initial": first("given_key", 1),
    "birth_year": "birth_year", "commune": "commune", "village": "village"}
#: Prefix of the raw field a source maps an extra field to (``extra.email: courriel``).
RAW_PREFIX = "extra."
#: Default Jaro-Winkler thresholds of ``name`` and ``fuzzy`` fields (Splink's NameComparison).
DEFAULT_THRESHOLDS = (0.92, 0.8)
#: Default ``date`` tolerances, in days: about a month, a year, ten years (Splink's
#: DateOfBirthComparison).
DEFAULT_DAYS = (31.0, 366.0, 3653.0)
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
_TOKEN_SPLIT = re.compile(r"[\s,;|]+")
_EPOCH = dt.date(1970, 1, 1)


@dataclass(frozen=True)
class ExtraField:
    """One declared extra field (the project file's ``extra_fields:`` entry).

    Attributes:
        name: lower-case identifier; the comparison's name, the column ``x_<name>``.
        kind: one of :data:`KINDS`.
        term_frequencies: rare values weigh more on the exact level (exact, name,
            fuzzy, code).
        thresholds: Jaro-Winkler levels, highest first (name, fuzzy).
        tolerances: numeric: absolute differences; date: days; smallest first.
        separator: code: the separator of its parts (``"-"`` in ``ML-C12-V03``); tokens:
            what separates tokens (default: spaces, commas, semicolons, bars).
        prefixes: code: one level per prefix, longest first: parts with a separator,
            else characters.
        date_format: date: the strptime format of the source's values.
        block: the blocking keys asked for, each ``"alone"`` (the field's value), a part
            of :data:`BLOCK_WITH` (the value with a name part's key, a name token, the
            birth year or a place) or ``"extra.<other>"`` (with another extra field's
            value); ``()``: none.
        max_weight: the agreement weight cap, in bits (``None``: none), applied when the
            model is trained as the household comparison's is: a place-like field that
            relatives and neighbours share says little about *which* person a record is.
    """

    name: str
    kind: str
    term_frequencies: bool = False
    thresholds: tuple[float, ...] = ()
    tolerances: tuple[float, ...] = ()
    separator: str | None = None
    prefixes: tuple[int, ...] = ()
    date_format: str = "%Y-%m-%d"
    block: tuple[str, ...] = ()
    max_weight: float | None = None

    @property
    def column(self) -> str:
        return f"x_{self.name}"

    @property
    def raw_field(self) -> str:
        return RAW_PREFIX + self.name

    def columns(self) -> dict[str, str]:
        """The standardised columns of this field with their DuckDB types."""
        c = self.column
        out = {c: "VARCHAR"}
        if self.kind == "name":
            out[f"{c}__key"] = "VARCHAR"
        elif self.kind in ("date", "numeric"):
            out[f"{c}__num"] = "DOUBLE"
        elif self.kind == "code":
            out.update({f"{c}__p{p}": "VARCHAR" for p in self.prefixes})
        return out

    # ------------------------------------------------------------------ comparison

    def comparison(self) -> Comparison:
        """The field's comparison, in the built-in definition's terms."""
        c, what = self.column, self.name.replace("_", " ")
        tf = c if self.term_frequencies else None
        levels = [Level(f"{what} missing on either side", Null(c), null=True)]
        if self.kind == "tokens":
            levels += [Level("same tokens", Exact(c)),
                       Level("a token in common", SharesToken(c))]
        else:
            levels.append(Level("exact", Exact(c), tf_column=tf))
        if self.kind == "name":
            key = f"{c}__key"
            levels.append(Level("same transliteration key", Exact(key),
                                tf_column=key if self.term_frequencies else None))
        if self.kind in ("name", "fuzzy"):
            levels += [Level(f"jaro-winkler >= {t:g}", JaroWinkler(c, t))
                       for t in self.thresholds or DEFAULT_THRESHOLDS]
        elif self.kind == "date":
            levels.append(Level("one typo", DamerauLevenshtein(c, 1)))
            levels += [Level(f"within {t:g} days", NumberGap(f"{c}__num", t))
                       for t in self.tolerances or DEFAULT_DAYS]
        elif self.kind == "numeric":
            levels += [Level(f"within {t:g}", NumberGap(f"{c}__num", t))
                       for t in self.tolerances]
        elif self.kind == "code":
            unit = "part" if self.separator else "character"
            levels += [Level(f"same first {unit}" if p == 1 else f"same first {p} {unit}s",
                             Exact(f"{c}__p{p}")) for p in self.prefixes]
        levels.append(Level("different", None))
        return Comparison(self.name, f"extra field {self.name} ({self.kind})", tuple(levels))

    def blocking_keys(self) -> dict[str, tuple[KeyPart, ...]]:
        """The blocking keys the project asked for (``block:``), by name (``bk_<name>``)."""
        c = self.column
        # A name by its transliteration key; a token list by its first token (sorted).
        main: KeyPart = (f"{c}__key" if self.kind == "name"
                         else first_token(c) if self.kind == "tokens" else c)
        out: dict[str, tuple[KeyPart, ...]] = {}
        for b in self.block:
            if b.startswith(RAW_PREFIX):  # another extra field, by its own column
                out[f"{c}_{b[len(RAW_PREFIX):]}"] = (main, f"x_{b[len(RAW_PREFIX):]}")
                continue
            with_part = BLOCK_WITH[b]
            out[c if with_part is None else f"{c}_{b}"] = (
                (main,) if with_part is None else (main, with_part))
        return out

    # ------------------------------------------------------------------ values

    def standardise(self, raw: str) -> dict[str, Any]:
        """The field's columns for one non-blank raw value.

        Raises:
            ValueError: the value is unusable (its reason, never the value itself).
        """
        c = self.column
        if self.kind == "date":
            try:
                d = dt.datetime.strptime(raw, self.date_format).date()
            except ValueError:
                raise ValueError(f"not a date in {self.date_format}") from None
            return {c: d.isoformat(), f"{c}__num": float((d - _EPOCH).days)}
        if self.kind == "numeric":
            try:
                v = float(raw.replace(",", ".").replace(" ", ""))
            except ValueError:
                raise ValueError("not a number") from None
            if not math.isfinite(v):
                raise ValueError("not a finite number")
            return {c: repr(v), f"{c}__num": v}
        if self.kind == "name":
            from linkage.standardise.names import _tokens_tuple, translit_key

            toks = _tokens_tuple(raw)
            if not toks:
                raise ValueError("no letters")
            return {c: " ".join(toks), f"{c}__key": " ".join(translit_key(t) for t in toks)}
        text = _text(raw)
        if self.kind == "tokens":
            split = text.split(self.separator) if self.separator else _TOKEN_SPLIT.split(text)
            # Sorted and space-joined: the same set of tokens is one value (exact level).
            toks = sorted({t.replace(" ", "") for t in split if t.strip()})
            if not toks:
                raise ValueError("no tokens")
            return {c: " ".join(toks)}
        out: dict[str, Any] = {c: text}
        if self.kind == "code":
            parts = text.split(self.separator) if self.separator else None
            for p in self.prefixes:
                if parts is not None:
                    out[f"{c}__p{p}"] = self.separator.join(parts[:p]) if len(parts) > p else None
                else:
                    out[f"{c}__p{p}"] = text[:p] if len(text) > p else None
        return out

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ExtraField:
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()}
        return cls(**args)


def _text(raw: str) -> str:
    """Accents stripped, lower case, single spaces (punctuation kept: e-mails, codes)."""
    decomposed = unicodedata.normalize("NFKD", raw)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.lower().split())


def standardise_extra(fields: Sequence[ExtraField], raw: Mapping[str, Any],
                      warnings: list[Any] | None) -> dict[str, Any]:
    """The extra columns of one raw record (raw fields ``extra.<name>``).

    Lenient (a ``warnings`` list, batch ingest): an unusable value blanks the field with a
    :class:`FieldWarning`, as for built-in fields. Strict (``None``, the API): it raises.

    Raises:
        RejectError: strictly, naming the field ``extra.<name>``.
    """
    # Imported here: linkage.standardise imports this module's caller (record.py).
    from linkage.standardise.errors import FieldWarning, RejectError

    out: dict[str, Any] = {}
    for f in fields:
        cols = dict.fromkeys(f.columns())
        value = raw.get(f.raw_field)
        if value is not None and str(value).strip():
            try:
                cols.update(f.standardise(str(value).strip()))
            except ValueError as exc:
                if warnings is None:
                    raise RejectError(f.raw_field, str(exc)) from None
                warnings.append(FieldWarning(f.raw_field, str(value), str(exc)))
        out.update(cols)
    return out


def extra_json(fields: Sequence[ExtraField], row: Mapping[str, Any]) -> str | None:
    """``records.extra``: a record's non-NULL extra columns as JSON (NULL with none)."""
    values = {c: row[c] for f in fields for c in f.columns() if row.get(c) is not None}
    return json.dumps(values, sort_keys=True, ensure_ascii=False) if values else None


def columns_sql(fields: Sequence[ExtraField], alias: str = "", dialect: str = "duckdb") -> str:
    """``SELECT`` items expanding ``records.extra`` into the fields' columns ('' for none)."""
    src = f"{alias}.extra" if alias else "extra"
    items = []
    for f in fields:
        for c, typ in f.columns().items():
            items.append(f"CAST(json_extract_string({src}, '$.{c}') AS {typ}) AS {c}")
    return ", ".join(items)


# ----------------------------------------------------------------------------- definition


@dataclass(frozen=True)
class Definition:
    """A project's matching definition: the built-in one, then its extra fields."""

    extra: tuple[ExtraField, ...] = field(default_factory=tuple)

    @cached_property
    def comparisons(self) -> tuple[Comparison, ...]:
        return builtin.COMPARISONS + tuple(f.comparison() for f in self.extra)

    @cached_property
    def blocking_keys(self) -> dict[str, tuple[KeyPart, ...]]:
        keys = dict(builtin.BLOCKING_KEYS)
        for f in self.extra:
            keys.update(f.blocking_keys())
        return keys

    @cached_property
    def sha256(self) -> str:
        """The hash a model records; the built-in one's when there are no extra fields."""
        if not self.extra:
            return builtin.definition_sha256()
        return hashlib.sha256(repr(self.comparisons).encode()).hexdigest()

    @cached_property
    def columns(self) -> dict[str, str]:
        """Every extra column, with its DuckDB type."""
        return {c: t for f in self.extra for c, t in f.columns().items()}

    @cached_property
    def weight_caps(self) -> dict[str, float]:
        """Agreement weight caps in bits, by comparison: the household's and the extra
        fields' ``max_weight`` (training applies them)."""
        return dict(builtin.HOUSEHOLD_EVIDENCE_CAP_BITS) | {
            f.name: f.max_weight for f in self.extra if f.max_weight is not None}

    def comparison(self, name: str) -> Comparison:
        for comp in self.comparisons:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def describe(self) -> str:
        """The extra fields in words, for errors: ``email (tokens), occupation (exact)``."""
        return ", ".join(f"{f.name} ({f.kind})" for f in self.extra) or "none"


#: The built-in definition (no extra fields).
BUILTIN = Definition()
