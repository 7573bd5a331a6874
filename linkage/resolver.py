"""Real-time resolution: an in-memory blocking index and the model's scores in Python.

Splink's real-time functions cost ~100 ms per record against a few hundred thousand
records, too slow for a check before enrolment. This module keeps, in memory:

* the standardised columns of every live record (those with a published person), each
  column dictionary-encoded as an ``int32`` code array (``-1`` is NULL);
* for each blocking key of :data:`linkage.model.BLOCKING_KEYS`, a dict key -> record
  indices (blocks larger than the project's ``max_block_size`` are skipped, as the batch
  caps them);
* value counts of every term-frequency column.

A query record is standardised like a roster row, its candidates are the union of its
blocks, and each comparison level is computed with numpy over the candidates, mirroring
the SQL conditions of :func:`linkage.model.build_settings` one by one (three-valued
logic included: a condition on a NULL is not true). Level weights, the prior and the
term-frequency adjustment come from Splink's own objects built from the model JSON, so
the arithmetic is Splink's; ``tests/test_service.py`` checks the scores against
``linker.inference.score_pairs`` so the two cannot drift. :func:`check_model` refuses a
model whose comparisons differ from the ones mirrored here.

Record scores are aggregated to persons by taking each person's best record.

Example:
    >>> index = Index.build(cur, model, max_block_size=2000)  # doctest: +SKIP
    >>> result = index.resolve(query_row, max_candidates=5, min_probability=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import duckdb
import jellyfish
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.canonical import STANDARD_COLUMNS
from linkage.engine import _key_expr
from linkage.errors import NotReady
from linkage.model import BLOCKING_KEYS, Model, build_settings

INT_COLUMNS = ("birth_year", "birth_month", "birth_day")
STR_COLUMNS = tuple(c for c in STANDARD_COLUMNS if c not in INT_COLUMNS and c != "household_id")
_PRECISION = {"day": 1, "month": 2, "year": 3, "placeholder": 4, "age": 5}
_DAY = _PRECISION["day"]
_NULL = -1
_ABSENT = -2  # a query value the register has never seen: not NULL, equal to nothing


class ModelMismatch(RuntimeError):
    """The model's comparisons are not the ones this module mirrors."""


def check_model(model: Model) -> None:
    """Fail when the model's comparison SQL differs from :func:`build_settings`'s.

    Raises:
        ModelMismatch: naming the first comparison or level that differs.
    """
    expected = build_settings().get_settings("duckdb").as_dict()["comparisons"]
    actual = model.settings.get("comparisons", [])
    if [c["output_column_name"] for c in actual] != [c["output_column_name"] for c in expected]:
        raise ModelMismatch("model comparisons differ from linkage.model.build_settings(): "
                            "the resolver cannot mirror them")
    for exp, act in zip(expected, actual, strict=True):
        e = [lvl["sql_condition"] for lvl in exp["comparison_levels"]]
        a = [lvl["sql_condition"] for lvl in act["comparison_levels"]]
        if e != a:
            raise ModelMismatch(f"model comparison {exp['output_column_name']!r} has different "
                                "levels from linkage.model.build_settings()")


@lru_cache(maxsize=1 << 20)
def _jw(a: str, b: str) -> float:
    return jellyfish.jaro_winkler_similarity(a, b)


@lru_cache(maxsize=1 << 18)
def _dl1(a: str, b: str) -> bool:
    return jellyfish.damerau_levenshtein_distance(a, b) <= 1


@lru_cache(maxsize=1 << 18)
def _has_token(tokens: str, token: str) -> bool:
    # ' ' || tokens || ' ' LIKE '% ' || token || ' %'
    return f" {token} " in f" {tokens} "


@dataclass
class _Level:
    label: str
    cvv: int  # Splink's comparison vector value
    weight: float  # log2(m/u), 0 for the null level
    tf_column: str | None
    tf_weight: float
    log2_u_exact: float
    tf_min: float


@dataclass
class _Comparison:
    name: str
    levels: list[_Level]


@dataclass
class Evidence:
    """One comparison's contribution to a score."""

    comparison: str
    level: int
    label: str
    weight: float
    tf_adjustment: float


@dataclass
class Candidate:
    """A candidate person: its best record's score and evidence."""

    person_id: str
    uid: str
    match_weight: float
    match_probability: float
    evidence: list[Evidence]
    records_compared: int


@dataclass
class Resolution:
    candidates: list[Candidate]
    records_compared: int


def probability(weight: float) -> float:
    """Match probability from a match weight, as Splink computes it."""
    if weight >= 0:
        return 1.0 / (1.0 + 2.0 ** (-weight))
    p = 2.0 ** weight
    return p / (1.0 + p)


def _scorecard(model: Model) -> tuple[float, list[_Comparison]]:
    from splink.internals.settings_creator import SettingsCreator

    settings = SettingsCreator.from_path_or_dict(model.settings).get_settings("duckdb")
    prior = settings._probability_two_random_records_match
    comps = []
    for comp in settings.comparisons:
        levels = []
        for lvl in comp.comparison_levels:
            w = lvl._match_weight
            tf_col = None
            log2u = 0.0
            if (lvl._has_tf_adjustments and lvl._tf_adjustment_weight != 0
                    and not lvl.is_null_level and not lvl._is_else_level):
                tf_col = lvl._tf_adjustment_input_column_name
                log2u = math.log2(lvl._u_probability_corresponding_to_exact_match(
                    comp.comparison_levels))
            levels.append(_Level(lvl.label_for_charts, lvl.comparison_vector_value,
                                 0.0 if w is None else float(w), tf_col,
                                 float(lvl._tf_adjustment_weight), log2u,
                                 float(lvl._tf_minimum_u_value)))
        comps.append(_Comparison(comp.output_column_name, levels))
    return math.log2(prior / (1 - prior)), comps


class _Vocab:
    """Dictionary encoding of one column: value -> code, code -> value."""

    __slots__ = ("codes", "values")

    def __init__(self, values: list[str]):
        self.values = values
        self.codes = {v: i for i, v in enumerate(values)}

    def code(self, value: Any, *, add: bool = False) -> int:
        if value is None:
            return _NULL
        c = self.codes.get(value)
        if c is None:
            if not add:
                return _ABSENT
            c = len(self.values)
            self.values.append(value)
            self.codes[value] = c
        return c


def _key(row: Mapping[str, Any], cols: Sequence[str]) -> str | None:
    # Mirrors linkage.engine._key_expr: NULL when any part is NULL, parts joined by '|'.
    parts = []
    for c in cols:
        v = row.get(c)
        if v is None:
            return None
        parts.append(str(v))
    return "|".join(parts)


@dataclass
class _Query:
    row: dict[str, Any]
    codes: dict[str, int] = field(default_factory=dict)


class Index:
    """Live records, blocking dicts and term frequencies; scores candidates in numpy.

    Thread safety: :meth:`resolve` and :meth:`add` take the index's lock; one writer
    (the enrolment thread) adds records while many readers resolve.
    """

    def __init__(self, model: Model, max_block_size: int, *, capacity: int = 1024):
        check_model(model)
        self.model = model
        self.max_block_size = max_block_size
        self.prior_weight, self.comparisons = _scorecard(model)
        self.n = 0
        cap = max(capacity, 16)
        self.vocab: dict[str, _Vocab] = {c: _Vocab([]) for c in STR_COLUMNS}
        self.cols: dict[str, np.ndarray] = {c: np.full(cap, _NULL, np.int32)
                                            for c in (*STR_COLUMNS, *INT_COLUMNS)}
        self.prec = np.full(cap, _NULL, np.int8)
        self.person = np.full(cap, _NULL, np.int32)
        self.alive = np.zeros(cap, bool)
        self.uids: list[str] = []
        self.uid_index: dict[str, int] = {}
        self.persons = _Vocab([])
        self.blocks: dict[str, dict[str, list[int]]] = {k: {} for k in BLOCKING_KEYS}
        self.tf_columns = sorted({lvl.tf_column for c in self.comparisons for lvl in c.levels
                                  if lvl.tf_column})
        self.tf_counts: dict[str, np.ndarray] = {c: np.zeros(cap, np.float64)
                                                 for c in self.tf_columns}
        self.tf_totals: dict[str, int] = dict.fromkeys(self.tf_columns, 0)
        self._lock = threading.Lock()
        self._conds = self._conditions()
        self._level_weights = [np.array([lvl.weight for lvl in comp.levels])
                               for comp in self.comparisons]
        self._tf_levels = [[i for i, lvl in enumerate(comp.levels) if lvl.tf_column]
                           for comp in self.comparisons]
        nul = _NULL

        def key_null(col: str) -> Callable[[_Query], bool]:
            return lambda q: q.codes[col] == nul

        # When the query's side of a null level is NULL, that level holds for all.
        self._query_null: dict[str, Callable[[_Query], bool]] = {
            "given_name": key_null("given_key"), "family_name": key_null("family_key"),
            "father_name": key_null("father_key"),
            "grandfather_name": key_null("grandfather_key"),
            "birth_date": key_null("birth_year"), "sex": key_null("sex"),
            "national_id": key_null("national_id"), "phone": key_null("phone"),
            "location": lambda q: q.codes["village"] == nul and q.codes["commune"] == nul,
            "household": lambda q: (q.codes["phone"] == nul and q.codes["village"] == nul
                                    and q.codes["commune"] == nul),
            "mother_name": key_null("mother_key"),
        }

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, cur: duckdb.DuckDBPyConnection, model: Model, *, max_block_size: int
              ) -> Index:
        """Index every active record that has a published person."""
        cols = ", ".join(f"r.{c}" for c in STANDARD_COLUMNS)
        table = _arrow(cur, f"SELECT r.uid, p.person_id, {cols} FROM records r JOIN "
                            "person_records p USING (uid) WHERE r.status = 'active' ORDER BY r.uid")
        return cls.from_arrow(table, model, max_block_size=max_block_size)

    @classmethod
    def from_arrow(cls, table: pa.Table, model: Model, *, max_block_size: int) -> Index:
        """Index an Arrow table of ``uid``, ``person_id`` and the standardised columns."""
        n = table.num_rows
        # The prior depends on the register's size (see Model.for_register).
        index = cls(model.for_register(n), max_block_size, capacity=max(1024, int(n * 1.25)))
        index.n = n
        index.uids = table.column("uid").to_pylist()
        index.uid_index = {u: i for i, u in enumerate(index.uids)}
        for name in (*STR_COLUMNS, "person_id"):
            enc = pc.dictionary_encode(table.column(name)).combine_chunks()
            values = enc.dictionary.to_pylist()
            codes = enc.indices.fill_null(_NULL).to_numpy(zero_copy_only=False).astype(np.int32)
            if name == "person_id":
                index.persons = _Vocab(values)
                index.person[:n] = codes
            else:
                index.vocab[name] = _Vocab(values)
                index.cols[name][:n] = codes
        for name in INT_COLUMNS:
            arr = table.column(name).cast(pa.int32()).fill_null(_NULL)
            index.cols[name][:n] = arr.to_numpy(zero_copy_only=False)
        prec_vals = index.vocab["birth_precision"].values
        prec_map = np.array([_PRECISION.get(v, 9) for v in prec_vals] + [_NULL], np.int8)
        index.prec[:n] = prec_map[index.cols["birth_precision"][:n]]  # -1 indexes the NULL
        index.alive[:n] = True
        for col in index.tf_columns:
            codes = index.cols[col][:n]
            counts = np.bincount(codes[codes >= 0], minlength=len(index.vocab[col].values))
            index.tf_counts[col] = _grow(counts.astype(np.float64), len(index.cols[col]))
            index.tf_totals[col] = int((codes >= 0).sum())
        index._build_blocks(table)
        return index

    def _build_blocks(self, table: pa.Table) -> None:
        con = duckdb.connect()
        try:
            con.execute("SET threads = 2")
            keyed = table.select([c for c in table.column_names if c != "person_id"])
            keyed = keyed.append_column("idx", pa.array(np.arange(table.num_rows, dtype=np.int64)))
            con.register("idx_input", keyed)
            for name, cols in BLOCKING_KEYS.items():
                rows = _arrow(con, f"SELECT bk, list(idx) FROM (SELECT {_key_expr(cols)} AS bk, "
                                   "idx FROM idx_input) WHERE bk IS NOT NULL GROUP BY bk")
                self.blocks[name] = dict(zip(rows.column(0).to_pylist(),
                                             rows.column(1).to_pylist(), strict=True))
        finally:
            con.close()

    # ------------------------------------------------------------------ writing

    def _ensure(self, size: int) -> None:
        cap = len(self.alive)
        if size <= cap:
            return
        new = max(size, cap * 2)
        for c in self.cols:
            self.cols[c] = _grow(self.cols[c], new, _NULL)
        self.prec = _grow(self.prec, new, _NULL)
        self.person = _grow(self.person, new, _NULL)
        self.alive = _grow(self.alive, new, False)

    def add(self, uid: str, person_id: str, row: Mapping[str, Any]) -> int:
        """Add (or replace) a record: it is searchable at once. Returns its index."""
        with self._lock:
            old = self.uid_index.get(uid)
            if old is not None:
                self._kill(old)
            i = self.n
            self._ensure(i + 1)
            for c in STR_COLUMNS:
                code = self.vocab[c].code(row.get(c), add=True)
                self.cols[c][i] = code
                if c in self.tf_counts and code >= 0:
                    counts = self.tf_counts[c]
                    if code >= len(counts):
                        counts = self.tf_counts[c] = _grow(counts, max(code + 1, 2 * len(counts)))
                    counts[code] += 1
                    self.tf_totals[c] += 1
            for c in INT_COLUMNS:
                v = row.get(c)
                self.cols[c][i] = _NULL if v is None else int(v)
            p = row.get("birth_precision")
            self.prec[i] = _NULL if p is None else _PRECISION.get(p, 9)
            self.person[i] = self.persons.code(person_id, add=True)
            self.alive[i] = True
            self.uids.append(uid)
            self.uid_index[uid] = i
            self.n = i + 1
            for name, cols in BLOCKING_KEYS.items():
                k = _key(row, cols)
                if k is not None:
                    self.blocks[name].setdefault(k, []).append(i)
            return i

    def _kill(self, i: int) -> None:
        self.alive[i] = False
        for c in self.tf_counts:
            code = self.cols[c][i]
            if code >= 0:
                self.tf_counts[c][code] -= 1
                self.tf_totals[c] -= 1

    def remove(self, uid: str) -> None:
        """Make a record unsearchable (it stays in the arrays, marked dead)."""
        with self._lock:
            i = self.uid_index.pop(uid, None)
            if i is not None and self.alive[i]:
                self._kill(i)

    def person_of(self, uid: str) -> str | None:
        i = self.uid_index.get(uid)
        if i is None or not self.alive[i]:
            return None
        return self.persons.values[self.person[i]]

    # ------------------------------------------------------------------ scoring

    def _encode(self, row: Mapping[str, Any]) -> _Query:
        q = _Query(dict(row))
        for c in STR_COLUMNS:
            q.codes[c] = self.vocab[c].code(row.get(c))
        for c in INT_COLUMNS:
            v = row.get(c)
            q.codes[c] = _NULL if v is None else int(v)
        p = row.get("birth_precision")
        q.codes["prec"] = _NULL if p is None else _PRECISION.get(p, 9)
        return q

    def candidates(self, row: Mapping[str, Any], exclude: str | None = None) -> np.ndarray:
        """Indices of live records sharing at least one (uncapped) block with ``row``."""
        parts = []
        for name, cols in BLOCKING_KEYS.items():
            k = _key(row, cols)
            if k is None:
                continue
            block = self.blocks[name].get(k)
            if block and len(block) <= self.max_block_size:
                parts.append(block)
        if not parts:
            return np.empty(0, np.int64)
        seen: set[int] = set()
        for b in parts:
            seen.update(b)
        idx = np.array(sorted(seen), np.int64)
        idx = idx[self.alive[idx]]
        if exclude is not None and exclude in self.uid_index:
            idx = idx[idx != self.uid_index[exclude]]
        return idx

    def _eq(self, col: str, q: _Query, c: np.ndarray) -> np.ndarray:
        code = q.codes[col]
        if code == _NULL:
            return np.zeros(len(c), bool)
        return self.cols[col][c] == code

    def _null(self, col: str, q: _Query, c: np.ndarray) -> np.ndarray:
        if q.codes[col] == _NULL:
            return np.ones(len(c), bool)
        return self.cols[col][c] == _NULL

    def _by_value(self, col: str, c: np.ndarray, fn: Callable[[str], bool]) -> np.ndarray:
        """fn(candidate value) for each candidate, computed once per distinct value."""
        values = self.vocab[col].values
        if len(c) > 64:  # many candidates: once per distinct value
            uniq, inv = np.unique(self.cols[col][c], return_inverse=True)
            ok = np.fromiter((u >= 0 and fn(values[u]) for u in uniq.tolist()), bool, len(uniq))
            return ok[inv]
        memo: dict[int, bool] = {}
        out = []
        for code in self.cols[col][c].tolist():
            hit = memo.get(code)
            if hit is None:
                hit = memo[code] = code >= 0 and fn(values[code])
            out.append(hit)
        return np.array(out, bool)

    def _jw(self, col: str, q: _Query, c: np.ndarray) -> np.ndarray:
        a = q.row.get(col)
        if a is None:
            return np.zeros(len(c), bool)
        return self._by_value(col, c, lambda b: _jw(a, b) >= 0.9)

    def _conditions(self) -> dict[str, list[Callable[[_Query, np.ndarray], np.ndarray]]]:
        """Per comparison, one condition per level (in model order, ELSE omitted)."""
        eq, null, jw = self._eq, self._null, self._jw

        def name(std: str, key: str) -> list[Callable[[_Query, np.ndarray], np.ndarray]]:
            return [lambda q, c: null(key, q, c),
                    lambda q, c: eq(std, q, c),
                    lambda q, c: eq(key, q, c),
                    lambda q, c: jw(std, q, c),
                    among(key)]

        def among(key: str) -> Callable[[_Query, np.ndarray], np.ndarray]:
            # linkage.model._among_other_tokens: this key is one of the other's name tokens
            def cond(q: _Query, c: np.ndarray) -> np.ndarray:
                k, nk = q.row.get(key), q.row.get("name_keys")
                out = np.zeros(len(c), bool)
                if k is not None:
                    out |= self._by_value("name_keys", c, lambda v: _has_token(v, k))
                if nk is not None:
                    out |= self._by_value(key, c, lambda v: _has_token(nk, v))
                return out

            return cond

        def year(q: _Query, c: np.ndarray) -> tuple[np.ndarray, int]:
            return self.cols["birth_year"][c], q.codes["birth_year"]

        def both_day(q: _Query, c: np.ndarray) -> np.ndarray:
            if q.codes["prec"] != _DAY:
                return np.zeros(len(c), bool)
            return self.prec[c] == _DAY

        def imprecise(q: _Query, c: np.ndarray) -> np.ndarray:
            # (precision_l <> 'day' OR precision_r <> 'day'): a NULL side is not true.
            p = self.prec[c]
            mine = q.codes["prec"] not in (_NULL, _DAY)
            return np.full(len(c), True) if mine else (p != _NULL) & (p != _DAY)

        def int_eq(col: str, qv: int, c: np.ndarray) -> np.ndarray:
            if qv == _NULL:
                return np.zeros(len(c), bool)
            return self.cols[col][c] == qv

        def year_diff(q: _Query, c: np.ndarray, d: int) -> np.ndarray:
            y, qy = year(q, c)
            if qy == _NULL:
                return np.zeros(len(c), bool)
            return (y != _NULL) & (np.abs(y - qy) == d)

        def year_within(q: _Query, c: np.ndarray, d: int) -> np.ndarray:
            y, qy = year(q, c)
            if qy == _NULL:
                return np.zeros(len(c), bool)
            return (y != _NULL) & (np.abs(y - qy) <= d)

        birth = [
            lambda q, c: (self.cols["birth_year"][c] == _NULL) | (q.codes["birth_year"] == _NULL),
            lambda q, c: both_day(q, c) & eq("birth_date", q, c),
            lambda q, c: (both_day(q, c) & int_eq("birth_year", q.codes["birth_year"], c)
                          & int_eq("birth_day", q.codes["birth_month"], c)
                          & int_eq("birth_month", q.codes["birth_day"], c)),
            lambda q, c: imprecise(q, c) & year_diff(q, c, 0),
            lambda q, c: imprecise(q, c) & year_diff(q, c, 1),
            lambda q, c: imprecise(q, c) & year_diff(q, c, 2),
            lambda q, c: both_day(q, c) & int_eq("birth_year", q.codes["birth_year"], c),
            lambda q, c: year_within(q, c, 5),
        ]

        def exact(col: str) -> list[Callable[[_Query, np.ndarray], np.ndarray]]:
            return [lambda q, c: null(col, q, c), lambda q, c: eq(col, q, c)]

        def nid_typo(q: _Query, c: np.ndarray) -> np.ndarray:
            a = q.row.get("national_id")
            if a is None:
                return np.zeros(len(c), bool)
            return self._by_value("national_id", c, lambda b: _dl1(a, b))

        location = [
            lambda q, c: null("village", q, c) & null("commune", q, c),
            lambda q, c: eq("village", q, c),
            lambda q, c: eq("commune", q, c),
            lambda q, c: eq("region", q, c),
        ]
        household = [
            lambda q, c: (null("phone", q, c) & null("village", q, c) & null("commune", q, c)),
            lambda q, c: ((eq("phone", q, c) | eq("mother_key", q, c)) & eq("village", q, c)),
            lambda q, c: eq("phone", q, c) | eq("mother_key", q, c),
            lambda q, c: eq("village", q, c),
            lambda q, c: eq("commune", q, c),
            lambda q, c: eq("region", q, c),
        ]
        # Comparisons of earlier model versions stay here: check_model() decides which
        # the model has, and only those are scored.
        return {
            "household": household,
            "given_name": [lambda q, c: null("given_key", q, c),
                           lambda q, c: eq("given_std", q, c),
                           lambda q, c: eq("given_key", q, c),
                           lambda q, c: jw("given_first", q, c),
                           among("given_key")],
            "family_name": name("family_std", "family_key"),
            "father_name": name("father_std", "father_key"),
            "grandfather_name": name("grandfather_std", "grandfather_key"),
            "birth_date": birth,
            "sex": exact("sex"),
            "national_id": [*exact("national_id"), nid_typo],
            "phone": exact("phone"),
            "location": location,
            "mother_name": exact("mother_key"),
        }

    def _tf_value(self, col: str, value: Any) -> float | None:
        total = self.tf_totals[col]
        code = self.vocab[col].codes.get(value) if value is not None else None
        if code is None or total == 0 or self.tf_counts[col][code] <= 0:
            return None
        return float(self.tf_counts[col][code]) / total

    def score(self, row: Mapping[str, Any], c: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score candidates ``c`` against ``row``.

        Returns:
            (match weights, level positions [k x comparisons], evidence weights
            [k x comparisons] with the tf part in a third array [k x comparisons]).
        """
        q = self._encode(row)
        k = len(c)
        ncomp = len(self.comparisons)
        pos = np.zeros((k, ncomp), np.int8)
        weights = np.zeros((k, ncomp), np.float64)
        tf_adj = np.zeros((k, ncomp), np.float64)
        for j, comp in enumerate(self.comparisons):
            if self._query_null[comp.name](q):
                continue  # the null level holds for every candidate: level 0, weight 0
            conds = self._conds[comp.name]
            p = np.full(k, len(comp.levels) - 1, np.int8)
            if k <= 32:  # few candidates: every condition on all, the first match wins
                for i in range(len(conds) - 1, -1, -1):
                    p[conds[i](q, c)] = i
            else:  # many: each condition only on candidates no earlier level claimed
                rem = np.arange(k)
                for i, cond in enumerate(conds):
                    hit = cond(q, c[rem])
                    p[rem[hit]] = i
                    rem = rem[~hit]
                    if len(rem) == 0:
                        break
            pos[:, j] = p
            weights[:, j] = self._level_weights[j][p]
            for i in self._tf_levels[j]:
                lvl = comp.levels[i]
                at = p == i
                if not at.any():
                    continue
                col = lvl.tf_column
                assert col is not None
                tf_l = self._tf_value(col, row.get(col))
                codes = self.cols[col][c[at]]
                total = self.tf_totals[col]
                tf_r = np.where(codes >= 0,
                                self.tf_counts[col][np.maximum(codes, 0)] / max(total, 1), np.nan)
                tf_r[tf_r <= 0] = np.nan
                if tf_l is None:
                    tfv = tf_r
                else:
                    tfv = np.where(np.isnan(tf_r), tf_l, np.maximum(tf_r, tf_l))
                tfv = np.maximum(tfv, lvl.tf_min)
                adj = np.where(np.isnan(tfv), 0.0,
                               lvl.tf_weight * (lvl.log2_u_exact - np.log2(np.where(
                                   np.isnan(tfv), 1.0, tfv))))
                tf_adj[at, j] = adj
        total_w = self.prior_weight + weights.sum(axis=1) + tf_adj.sum(axis=1)
        return total_w, pos, weights + tf_adj, tf_adj

    def resolve(self, row: Mapping[str, Any], *, max_candidates: int = 10,
                min_probability: float = 0.0, exclude: str | None = None,
                evidence: bool = True) -> Resolution:
        """Candidate persons for a standardised row, best first.

        Args:
            row: standardised columns (:data:`linkage.canonical.STANDARD_COLUMNS`).
            max_candidates: at most this many persons.
            min_probability: leave out persons whose best record scores below this.
            exclude: a record uid not to compare with (the record itself, on update).
        """
        with self._lock:
            c = self.candidates(row, exclude)
            if len(c) == 0:
                return Resolution([], 0)
            w, pos, ev_w, tf_adj = self.score(row, c)
            persons = self.person[c]
            order = np.argsort(-w, kind="stable")
            first_p, first_at, counts = np.unique(persons[order], return_index=True,
                                                  return_counts=True)
            best = order[first_at]  # best record of each person (positions into c)
            ranked = np.argsort(-w[best], kind="stable")
            out = []
            for r in ranked[:max_candidates]:
                b = best[r]
                prob = probability(float(w[b]))
                if prob < min_probability:
                    break
                ev = [Evidence(comp.name, comp.levels[pos[b, j]].cvv,
                               comp.levels[pos[b, j]].label, float(ev_w[b, j]),
                               float(tf_adj[b, j]))
                      for j, comp in enumerate(self.comparisons)] if evidence else []
                out.append(Candidate(self.persons.values[first_p[r]], self.uids[c[b]],
                                     float(w[b]), prob, ev, int(counts[r])))
            return Resolution(out, int(len(c)))


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    """A query's result as an Arrow table (DuckDB 2.0: relation.to_arrow_table)."""
    rel = con.sql(sql)
    fetch = getattr(rel, "to_arrow_table", None) or rel.arrow
    return fetch()


def _grow(arr: np.ndarray, size: int, fill: Any = 0) -> np.ndarray:
    if len(arr) >= size:
        return arr
    out = np.full(size, fill, arr.dtype)
    out[: len(arr)] = arr
    return out


def load_model(project: Any) -> Model:
    """The project's model (as the batch finds it), or :class:`NotReady`."""
    from linkage.model import ModelError

    path = project.model or project.path.parent / "models" / "model.json"
    try:
        return Model.load(path)
    except ModelError as exc:
        raise NotReady(f"no usable model: {exc}") from exc
