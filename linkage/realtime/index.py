"""Real-time resolution: an in-memory blocking index and the model's scores in Python.

Splink's real-time functions cost ~100 ms per record against a few hundred thousand
records, too slow for a check before enrolment. This module keeps, in memory:

* the standardised columns of every live record (those with a published person), each
  column dictionary-encoded as an ``int32`` code array (``-1`` is NULL);
* for each blocking key of :data:`linkage.matching.definition.BLOCKING_KEYS`, a dict key -> record
  indices (blocks larger than the project's ``max_block_size`` are skipped, as the batch
  caps them);
* value counts of every term-frequency column;
* each record's exact-copy key (:func:`linkage.register.store.copy_key`, the batch's
  definition of two records holding one row), with its source and household: an
  uncapped look-up, so an exact copy is always a candidate, however common its name
  and however full its blocks (issue 11).

A query record is standardised like a roster row, its candidates are the union of its
blocks, and each comparison level is evaluated with numpy over the candidates by the
same level expressions the batch compiles to SQL (:mod:`linkage.matching.definition`).
Level weights, the prior and the term-frequency adjustment come from Splink's own
objects built from the model JSON (:mod:`linkage.matching.splink_internals`), so the
arithmetic is Splink's; ``tests/test_parity.py`` checks both against Splink. A model
trained on another definition is refused (:meth:`linkage.matching.model.Model.check_definition`).

Record scores are aggregated to persons by taking each person's best record.

Example:
    >>> index = Index.build(cur, model, max_block_size=2000)  # doctest: +SKIP
    >>> result = index.resolve(query_row, max_candidates=5, min_probability=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.canonical import STANDARD_COLUMNS
from linkage.errors import NotReady
from linkage.matching.definition import key_cap, key_of, key_sql
from linkage.matching.extra import columns_sql
from linkage.matching.levels import ABSENT_CODE, INT_COLUMNS, NULL_CODE, is_number_column
from linkage.matching.model import Model
from linkage.matching.splink_internals import LevelWeights, scorecard
from linkage.register.store import COPY_COLUMNS, copy_key, copy_key_sql

STR_COLUMNS = tuple(c for c in STANDARD_COLUMNS if c not in INT_COLUMNS and c != "household_id")
_NULL = NULL_CODE
_ABSENT = ABSENT_CODE


@dataclass
class _Comparison:
    """A comparison as scored here: its trained levels and their conditions (ELSE omitted)."""

    name: str
    levels: tuple[LevelWeights, ...]
    conditions: list[Callable[[_Pairs], np.ndarray]]


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
    golden: Any = None  # the person's GoldenRecord, filled by Realtime.resolve
    #: the person holds a record with exactly the query's details (returned whatever
    #: its score)
    exact_copy: bool = False


@dataclass
class Resolution:
    candidates: list[Candidate]
    records_compared: int


@dataclass
class PairExplanation:
    """Why two records score what they score: the waterfall, and whether blocking pairs them.

    Attributes:
        prior_weight: log2 prior odds of a match (the model's prior for this register).
        evidence: one entry per comparison, in model order.
        shared_keys: blocking keys the two records have in common, within the block cap:
            the batch compares them. Empty: "never compared".
        capped_keys: keys they share whose block is over the cap (not used for pairs).
    """

    uid_l: str
    uid_r: str
    prior_weight: float
    match_weight: float
    match_probability: float
    evidence: list[Evidence]
    shared_keys: list[str]
    capped_keys: list[str]

    @property
    def compared(self) -> bool:
        return bool(self.shared_keys)


def probability(weight: float) -> float:
    """Match probability from a match weight, as Splink computes it."""
    if weight >= 0:
        return 1.0 / (1.0 + 2.0 ** (-weight))
    p = 2.0 ** weight
    return p / (1.0 + p)


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


class _Pairs:
    """The pairs scored in one pass: right sides are index rows, left sides a query or rows.

    A left side is either one query record, whose codes are Python ints that numpy
    broadcasts (a value the register has never seen has the code ``_ABSENT`` and its
    text comes from ``row``), or index rows ``li``: that is how a group of enrolled
    records is scored against its candidates at once. Each column is gathered once.
    """

    __slots__ = ("_l", "_r", "freq", "index", "lcodes", "li", "lk", "ri", "row")

    def __init__(self, index: Index, ri: np.ndarray, *, li: np.ndarray | None = None,
                 row: Mapping[str, Any] | None = None, lcodes: Mapping[str, int] | None = None,
                 freq: _GroupFrequencies | None = None, lk: np.ndarray | None = None):
        self.index, self.ri, self.li, self.row, self.lcodes = index, ri, li, row, lcodes
        self.freq, self.lk = freq, lk  # lk: each pair's left record's place in its group
        self._l: dict[str, np.ndarray] = {}
        self._r: dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.ri)

    @property
    def single(self) -> bool:
        """True when the left side is one query record."""
        return self.li is None

    def sub(self, sel: np.ndarray) -> _Pairs:
        return _Pairs(self.index, self.ri[sel], li=None if self.li is None else self.li[sel],
                      row=self.row, lcodes=self.lcodes, freq=self.freq,
                      lk=None if self.lk is None else self.lk[sel])

    def tf(self, col: str, codes: Any, at: np.ndarray) -> Any:
        """Term frequencies of ``codes``, the values of ``col`` in the pairs ``at``."""
        if self.freq is None:
            return self.index.tf_of(col, codes)
        assert self.lk is not None
        return self.freq.tf(col, codes, self.lk[at])

    def left(self, col: str) -> Any:
        """The left side's codes of ``col``: an int (one query) or an array."""
        if self.li is None:
            assert self.lcodes is not None
            return self.lcodes[col]
        v = self._l.get(col)
        if v is None:
            v = self._l[col] = self.index.column(col)[self.li]
        return v

    def right(self, col: str) -> np.ndarray:
        v = self._r.get(col)
        if v is None:
            v = self._r[col] = self.index.column(col)[self.ri]
        return v

    def left_value(self, col: str, code: int) -> str:
        if code == _ABSENT:
            assert self.row is not None
            return self.row[col]
        return self.index.vocab[col].values[code]

    def constant(self, col: str, side: str, value: str) -> tuple[Any, Any]:
        """(equals ``value``, is NULL) for one side's ``col``: bools or boolean arrays."""
        code = self.index.vocab[col].codes.get(value)
        v = self.left(col) if side == "l" else self.right(col)
        if side == "l" and self.single and v == _ABSENT:
            assert self.row is not None  # a value the register never saw: compare its text
            return self.row[col] == value, False
        if code is None:
            return np.zeros(np.shape(v), bool), v == _NULL
        return v == code, v == _NULL

    def by_value(self, lcol: str, rcol: str, fn: Callable[[str, str], bool]) -> np.ndarray:
        """fn(left value, right value) per pair, computed once per distinct pair of values.

        A NULL on either side is not true (SQL three-valued logic).
        """
        lc, r = self.left(lcol), self.right(rcol)
        rvals = self.index.vocab[rcol].values
        if self.single:
            if lc == _NULL:
                return np.zeros(len(r), bool)
            a = self.left_value(lcol, lc)
            if len(r) > 64:  # many candidates: once per distinct value
                uniq, inv = np.unique(r, return_inverse=True)
                ok = np.fromiter((u >= 0 and fn(a, rvals[u]) for u in uniq.tolist()), bool,
                                 len(uniq))
                return ok[inv]
            memo: dict[int, bool] = {}
            out = []
            for code in r.tolist():
                hit = memo.get(code)
                if hit is None:
                    hit = memo[code] = code >= 0 and fn(a, rvals[code])
                out.append(hit)
            return np.array(out, bool)
        lvals = self.index.vocab[lcol].values
        res = np.zeros(len(r), bool)
        at = np.flatnonzero((lc >= 0) & (r >= 0))
        if len(at) == 0:
            return res
        stride = len(rvals) + 1
        uniq, inv = np.unique(lc[at].astype(np.int64) * stride + r[at], return_inverse=True)
        ok = np.fromiter((fn(lvals[k // stride], rvals[k % stride]) for k in uniq.tolist()),
                         bool, len(uniq))
        res[at] = ok[inv]
        return res


class _GroupFrequencies:
    """Term frequencies as each record of a pending group saw them when it was added.

    The index counts every record of the group; the k-th record saw the counts less
    the group's records from the k-th on (itself included: a query is not counted).
    """

    def __init__(self, index: Index, rows: np.ndarray):
        self.index = index
        self.size = g = len(rows)
        self.keys: dict[str, np.ndarray] = {}  # sorted value * size + place
        self.nonnull_from: dict[str, np.ndarray] = {}  # [k]: non-NULL values from k on
        for col in index.tf_columns:
            v = index.cols[col][rows].astype(np.int64)
            nn = v >= 0
            self.keys[col] = np.sort(v[nn] * g + np.flatnonzero(nn))
            self.nonnull_from[col] = np.append(np.cumsum(nn[::-1])[::-1], 0)

    def tf(self, col: str, codes: np.ndarray, ks: np.ndarray) -> np.ndarray:
        g, keys = self.size, self.keys[col]
        v = np.maximum(codes, 0).astype(np.int64)
        later = np.searchsorted(keys, v * g + g) - np.searchsorted(keys, v * g + ks)
        count = self.index.tf_counts[col][v] - later
        total = self.index.tf_totals[col] - self.nonnull_from[col][ks]
        tf = np.where(codes >= 0, count / np.maximum(total, 1), np.nan)
        tf[tf <= 0] = np.nan
        return tf


class _ReadWriteLock:
    """Many readers (Resolve, look-ups) at once, or one writer (the enrolment thread).

    One plain lock for readers too serialised every Resolve of a serving process: 50
    request threads queued on it, and each hand-over cost a wake-up and a GIL switch
    (a tenth of the GIL's time in a 50-client profile, issue 15). Readers here only
    hold a short mutex to count themselves in and out. A waiting writer stops new
    readers, so enrolment is never starved by a steady stream of Resolves.
    """

    __slots__ = ("_cond", "_readers", "_writer", "_writers_waiting")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class _Postings:
    """key -> index rows, for keys most records hold alone (copy keys, persons, IDs).

    The build's rows sit in one sorted array looked up by bisection (16 bytes a record,
    where a dict of lists costs about ten times that at a million records); rows added
    since, by enrolment, in a small dict. Rows are never removed: callers keep the live
    ones.
    """

    __slots__ = ("_added", "_keys", "_rows")

    def __init__(self, keys: np.ndarray | None = None, rows: np.ndarray | None = None):
        if keys is None or rows is None:
            self._keys, self._rows = np.empty(0, np.int64), np.empty(0, np.int64)
        else:
            order = np.argsort(keys, kind="stable")
            self._keys, self._rows = keys[order], np.asarray(rows, np.int64)[order]
        self._added: dict[int, list[int]] = {}

    def add(self, key: int, row: int) -> None:
        self._added.setdefault(key, []).append(row)  # rows come ascending

    def rows(self, key: int) -> np.ndarray:
        """The rows of ``key``, ascending."""
        k = self._keys.dtype.type(key)
        lo = int(np.searchsorted(self._keys, k, side="left"))
        hi = int(np.searchsorted(self._keys, k, side="right"))
        built = self._rows[lo:hi]
        added = self._added.get(key)
        return np.concatenate([built, np.asarray(added, np.int64)]) if added else built


class Index:
    """Live records, blocking dicts and term frequencies; scores candidates in numpy.

    Thread safety: readers (:meth:`resolve`, :meth:`explain`, look-ups) share the
    index's readers-writer lock; one writer (the enrolment thread) takes it alone to
    add, publish or remove records while many readers resolve.
    """

    def __init__(self, model: Model, max_block_size: int, *, capacity: int = 1024):
        model.check_definition()
        #: the model as trained: its prior is rescaled to the register (:meth:`resize`)
        self.model = model
        self.max_block_size = max_block_size
        #: The model's matching definition: the built-in one and its extra fields.
        self.definition = definition = model.matching
        #: Blocking keys: the built-in ones and those the extra fields ask for.
        self.keys = definition.blocking_keys
        #: Per key: the largest block it keeps (:func:`key_cap`).
        self.caps = {k: key_cap(k, max_block_size) for k in self.keys}
        #: Dictionary-encoded columns; extra fields' number columns are floats (NaN: NULL).
        extra = list(definition.columns)
        self.str_columns = (*STR_COLUMNS, *(c for c in extra if not is_number_column(c)))
        self.num_columns = tuple(c for c in extra if is_number_column(c))
        card = scorecard(model.settings)
        self.prior_weight = card.prior_weight
        self.sized_for: int | None = None  # the register size of prior_weight
        conditions = {c.name: [lvl.condition.evaluate for lvl in c.levels[:-1]]
                      for c in definition.comparisons}
        # Labels are the definition's words, never the model file's: Splink labels a
        # level without label_for_charts (older or hand-made model files) with its SQL.
        labels = {c.name: [lvl.label for lvl in c.levels] for c in definition.comparisons}
        self.comparisons = [_Comparison(name, tuple(
                                dataclasses.replace(lvl, label=label)
                                for lvl, label in zip(levels, labels[name], strict=True)),
                                conditions[name])
                            for name, levels in card.comparisons]
        self.n = 0
        cap = max(capacity, 16)
        self.vocab: dict[str, _Vocab] = {c: _Vocab([]) for c in self.str_columns}
        self.cols: dict[str, np.ndarray] = {c: np.full(cap, _NULL, np.int32)
                                            for c in (*self.str_columns, *INT_COLUMNS)}
        self.cols.update({c: np.full(cap, np.nan) for c in self.num_columns})
        self.person = np.full(cap, _NULL, np.int32)
        self.alive = np.zeros(cap, bool)
        # Exact copies: each row's copy key (0: none), source and household codes.
        self.copy_key = np.zeros(cap, np.uint64)
        self.source = np.full(cap, _NULL, np.int32)
        self.household = np.full(cap, _NULL, np.int32)
        self.sources = _Vocab([])
        self.households = _Vocab([])
        self._copies = _Postings(np.empty(0, np.uint64), np.empty(0, np.int64))
        self._members = _Postings()  # person code -> rows
        self._nid = _Postings()  # national-ID code -> rows (FindByIdentifier)
        self.uids: list[str] = []
        self.uid_index: dict[str, int] = {}
        self.persons = _Vocab([])
        #: person -> its golden record (JSON, as stored in ``person_golden``)
        self.golden: dict[str, str] = {}
        self.blocks: dict[str, dict[str, list[int]]] = {k: {} for k in self.keys}
        self.tf_columns = sorted({lvl.tf_column for c in self.comparisons for lvl in c.levels
                                  if lvl.tf_column})
        self.tf_counts: dict[str, np.ndarray] = {c: np.zeros(cap, np.float64)
                                                 for c in self.tf_columns}
        self.tf_totals: dict[str, int] = dict.fromkeys(self.tf_columns, 0)
        self._lock = _ReadWriteLock()
        self._level_weights = [np.array([lvl.weight for lvl in comp.levels])
                               for comp in self.comparisons]
        self._tf_levels = [[i for i, lvl in enumerate(comp.levels) if lvl.tf_column]
                           for comp in self.comparisons]
        self._pending: set[int] = set()  # enrolled rows not yet given a person
        #: Called with (method name, arguments, keyword arguments) after each change (add,
        #: assign, publish, remove), in the order made: how the copies in scoring
        #: processes follow this index (:mod:`linkage.realtime.workers`).
        self.mirrors: list[Callable[[str, tuple[Any, ...], dict[str, Any]], None]] = []

    def _mirror(self, name: str, args: tuple[Any, ...],
                kwargs: dict[str, Any] | None = None) -> None:
        for send in self.mirrors:
            send(name, args, kwargs or {})

    # ------------------------------------------------------------------ building

    @classmethod
    def build(cls, cur: duckdb.DuckDBPyConnection, model: Model, *, max_block_size: int
              ) -> Index:
        """Index every active record that has a published person."""
        cols = ", ".join(f"r.{c}" for c in STANDARD_COLUMNS)
        extra = columns_sql(model.matching.extra, "r")
        if extra:
            cols += ", " + extra
        table = _arrow(cur, f"SELECT r.uid, p.person_id, {cols} FROM records r JOIN "
                            "person_records p USING (uid) WHERE r.status = 'active' ORDER BY r.uid")
        index = cls.from_arrow(table, model, max_block_size=max_block_size)
        # Golden records in memory: Resolve returns each candidate's without a register
        # read (a point query costs more than the whole Resolve).
        index.golden = dict(cur.execute("SELECT person_id, golden FROM person_golden"
                                        ).fetchall())
        return index

    def records_of(self, person_ids: Collection[str]) -> dict[str, list[str]]:
        """person -> the uids of its live indexed records (one pass over the index)."""
        codes = [c for p in person_ids if (c := self.persons.codes.get(p)) is not None]
        if not codes:
            return {}
        n = self.n
        rows = np.flatnonzero(np.isin(self.person[:n], codes) & self.alive[:n])
        out: dict[str, list[str]] = {}
        for i in rows:
            out.setdefault(self.persons.values[self.person[i]], []).append(self.uids[i])
        return out

    @classmethod
    def from_arrow(cls, table: pa.Table, model: Model, *, max_block_size: int) -> Index:
        """Index an Arrow table of ``uid``, ``person_id`` and the standardised columns."""
        n = table.num_rows
        index = cls(model, max_block_size, capacity=max(1024, int(n * 1.25)))
        index.resize(n)
        index.n = n
        index.uids = table.column("uid").to_pylist()
        index.uid_index = {u: i for i, u in enumerate(index.uids)}
        for name in (*index.str_columns, "person_id"):
            enc = pc.dictionary_encode(table.column(name)).combine_chunks()
            values = enc.dictionary.to_pylist()
            codes = enc.indices.fill_null(_NULL).to_numpy(zero_copy_only=False).astype(np.int32)
            if name == "person_id":
                index.persons = _Vocab(values)
                index.person[:n] = codes
                index._members = _Postings(codes.astype(np.int64), np.arange(n))
            else:
                index.vocab[name] = _Vocab(values)
                index.cols[name][:n] = codes
        for name in INT_COLUMNS:
            arr = table.column(name).cast(pa.int32()).fill_null(_NULL)
            index.cols[name][:n] = arr.to_numpy(zero_copy_only=False)
        for name in index.num_columns:
            arr = table.column(name).cast(pa.float64()).fill_null(np.nan)
            index.cols[name][:n] = arr.to_numpy(zero_copy_only=False)
        index.alive[:n] = True
        sources = pc.list_element(pc.split_pattern(table.column("uid"), ":", max_splits=1), 0)
        households = (table.column("household_id") if "household_id" in table.column_names
                      else pa.nulls(n, pa.string()))
        for arr, vocab_name, codes_name in ((sources, "sources", "source"),
                                            (households, "households", "household")):
            enc = pc.dictionary_encode(arr).combine_chunks()
            setattr(index, vocab_name, _Vocab(enc.dictionary.to_pylist()))
            getattr(index, codes_name)[:n] = enc.indices.fill_null(_NULL).to_numpy(
                zero_copy_only=False).astype(np.int32)
        nid = index.cols["national_id"][:n]
        has = np.flatnonzero(nid >= 0)
        index._nid = _Postings(nid[has].astype(np.int64), has)
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
            for name, cols in self.keys.items():
                # Ascending lists: link_group finds a row's place in a block by bisection.
                rows = _arrow(con, f"SELECT bk, list(idx ORDER BY idx) FROM (SELECT "
                                   f"{key_sql(cols)} AS bk, idx FROM idx_input) "
                                   "WHERE bk IS NOT NULL GROUP BY bk")
                self.blocks[name] = dict(zip(rows.column(0).to_pylist(),
                                             rows.column(1).to_pylist(), strict=True))
            # The batch's own SQL of the copy key (one definition), sorted for bisection.
            rows = _arrow(con, f"SELECT ck, idx FROM (SELECT {copy_key_sql()} AS ck, idx "
                               "FROM idx_input) WHERE ck IS NOT NULL ORDER BY ck, idx")
            keys = rows.column(0).to_numpy().astype(np.uint64)
            at = rows.column(1).to_numpy().astype(np.int64)
            self.copy_key[at] = keys
            self._copies = _Postings(keys, at)
        finally:
            con.close()

    # ------------------------------------------------------------------ writing

    def _ensure(self, size: int) -> None:
        cap = len(self.alive)
        if size <= cap:
            return
        new = max(size, cap * 2)
        for c in self.cols:
            self.cols[c] = _grow(self.cols[c], new, np.nan if c in self.num_columns else _NULL)
        self.person = _grow(self.person, new, _NULL)
        self.alive = _grow(self.alive, new, False)
        self.copy_key = _grow(self.copy_key, new, 0)
        self.source = _grow(self.source, new, _NULL)
        self.household = _grow(self.household, new, _NULL)

    def block_keys(self, row: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(blocking key name, key) of a standardised row, NULL keys left out."""
        out = []
        for name, cols in self.keys.items():
            k = key_of(row, cols)
            if k is not None:
                out.append((name, k))
        return out

    def add(self, uid: str, person_id: str | None, row: Mapping[str, Any],
            keys: list[tuple[str, str]] | None = None, *, pending: bool = False) -> int:
        """Add (or replace) a record: it is searchable at once. Returns its index row.

        Args:
            uid: the record's uid; a live row of the same uid is retired.
            person_id: its person (``None`` with ``pending``).
            row: its standardised columns.
            keys: its :meth:`block_keys`, when the caller has them already.
            pending: add it unsearchable and without a person, to be linked by
                :meth:`link_group`, given a person by :meth:`assign` and made searchable
                by :meth:`publish`.
        """
        with self._lock.write():
            old = self.uid_index.get(uid)
            if old is not None:
                self._kill(old)
            i = self.n
            self._ensure(i + 1)
            for c in self.str_columns:
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
            self.source[i] = self.sources.code(uid.partition(":")[0], add=True)
            self.household[i] = self.households.code(row.get("household_id"), add=True)
            ck = copy_key(row)
            if ck is not None:
                self.copy_key[i] = ck
                self._copies.add(ck, i)
            if self.cols["national_id"][i] >= 0:
                self._nid.add(int(self.cols["national_id"][i]), i)
            for c in self.num_columns:
                v = row.get(c)
                self.cols[c][i] = np.nan if v is None else float(v)
            if pending:
                self.person[i] = _NULL
                self._pending.add(i)
            else:
                assert person_id is not None
                self.person[i] = code = self.persons.code(person_id, add=True)
                self._members.add(code, i)
                self.alive[i] = True
            self.uids.append(uid)
            self.uid_index[uid] = i
            self.n = i + 1
            blocks = self.blocks
            keys = self.block_keys(row) if keys is None else keys
            for name, k in keys:
                blocks[name].setdefault(k, []).append(i)  # i is the largest: stays ascending
            if self.mirrors:
                self._mirror("add", (uid, person_id, dict(row), keys), {"pending": pending})
            return i

    def assign(self, i: int, person_id: str) -> None:
        """Give pending row ``i`` its person (it stays unsearchable until :meth:`publish`)."""
        self.person[i] = code = self.persons.code(person_id, add=True)
        self._members.add(code, i)
        if self.mirrors:
            self._mirror("assign", (i, person_id))

    def members(self, person: int) -> np.ndarray:
        """Rows given person code ``person`` (live, dead or pending: the caller filters)."""
        return self._members.rows(person)

    def persons_with_national_id(self, national_id: str) -> list[str]:
        """The persons holding a live record with this (standardised) national ID, in
        person-ID order: FindByIdentifier without a scan of the register (issue 15)."""
        with self._lock.read():
            code = self.vocab["national_id"].codes.get(national_id)
            if code is None:
                return []
            rows = self._nid.rows(code)
            rows = rows[self.alive[rows] & (self.cols["national_id"][rows] == code)]
            return sorted({self.persons.values[p] for p in self.person[rows].tolist()})

    def publish(self, rows: Sequence[int]) -> None:
        """Make pending rows searchable; the prior follows the register's new size."""
        with self._lock.write():
            for i in rows:
                if i in self._pending:
                    self._pending.discard(i)
                    self.alive[i] = True
            self.resize(int(self.alive[:self.n].sum()))
            if self.mirrors:
                self._mirror("publish", (list(rows),))

    def resize(self, records: int) -> None:
        """Rescale the prior to a register of ``records`` live records, as the batch
        rescales it to the register it runs on (:meth:`Model.for_register`).

        Enrolment grows the register between runs: with the prior of the last build a
        record enrolled after a tenth more records links on evidence the next batch
        finds 0.15 bits short of the threshold, and the batch undoes the link (issue 11,
        benchmarks/RESULTS.md). Called at the build and after each enrolment group
        (never inside one: a group scores as its records would one by one).
        """
        if records == self.sized_for:
            return
        prior = self.model.for_register(records).settings.get(
            "probability_two_random_records_match")
        if prior and 0 < prior < 1:
            self.prior_weight = math.log2(prior / (1 - prior))
        self.sized_for = records

    def _kill(self, i: int) -> None:
        if not (self.alive[i] or i in self._pending):
            return
        self.alive[i] = False
        self._pending.discard(i)
        for c in self.tf_counts:
            code = self.cols[c][i]
            if code >= 0:
                self.tf_counts[c][code] -= 1
                self.tf_totals[c] -= 1

    def remove(self, uid: str) -> None:
        """Make a record unsearchable (it stays in the arrays, marked dead)."""
        with self._lock.write():
            i = self.uid_index.pop(uid, None)
            if i is not None:
                self._kill(i)
            if self.mirrors:
                self._mirror("remove", (uid,))

    def person_of(self, uid: str) -> str | None:
        i = self.uid_index.get(uid)
        if i is None or not self.alive[i]:
            return None
        return self.persons.values[self.person[i]]

    # ------------------------------------------------------------------ scoring

    def _encode(self, row: Mapping[str, Any]) -> dict[str, int]:
        codes = {c: self.vocab[c].code(row.get(c)) for c in self.str_columns}
        for c in INT_COLUMNS:
            v = row.get(c)
            codes[c] = _NULL if v is None else int(v)
        for c in self.num_columns:
            v = row.get(c)
            codes[c] = np.nan if v is None else float(v)
        return codes

    def column(self, col: str) -> np.ndarray:
        """The code array of a column."""
        return self.cols[col]

    def _same_details(self, rows: np.ndarray, codes: Mapping[str, int]) -> np.ndarray:
        """Which ``rows`` hold exactly these codes on every copy column (the key is a
        hash: this makes the look-up exact)."""
        same = np.ones(len(rows), bool)
        for c in COPY_COLUMNS:
            same &= self.cols[c][rows] == codes[c]
        return same

    def copies(self, row: Mapping[str, Any], codes: Mapping[str, int] | None = None
               ) -> np.ndarray:
        """Live records holding exactly ``row``'s standardised details (household aside):
        exact copies, found whatever the blocks' caps. ``codes``: ``row`` encoded
        (:meth:`_encode`), when the caller has it already."""
        key = copy_key(row)
        if key is None:
            return np.empty(0, np.int64)
        rows = self._copies.rows(key)
        if len(rows) == 0:
            return rows
        rows = rows[self.alive[rows]]
        if len(rows) == 0:
            return rows
        return rows[self._same_details(rows, self._encode(row) if codes is None else codes)]

    def copies_before(self, i: int, visible: np.ndarray) -> np.ndarray:
        """Rows before row ``i`` that hold exactly its details, among ``visible`` ones
        (live, or earlier records of ``i``'s pending group)."""
        key = int(self.copy_key[i])
        if key == 0:
            return np.empty(0, np.int64)
        rows = self._copies.rows(key)
        rows = rows[(rows < i) & visible[rows]]
        codes = {c: int(self.cols[c][i]) for c in COPY_COLUMNS}
        return rows[self._same_details(rows, codes)]

    def copies_of_one_row(self, i: int, rows: np.ndarray) -> np.ndarray:
        """Which of ``rows`` are copies of row ``i`` *of one row*, as the batch joins them
        first: the same details, the same source and the same household (both NULL
        included)."""
        key = self.copy_key[i]
        if key == 0 or len(rows) == 0:
            return np.zeros(len(rows), bool)
        same = ((self.copy_key[rows] == key) & (self.source[rows] == self.source[i])
                & (self.household[rows] == self.household[i]))
        if same.any():
            at = np.flatnonzero(same)
            codes = {c: int(self.cols[c][i]) for c in COPY_COLUMNS}
            same[at] = self._same_details(rows[at], codes)
        return same

    def candidates(self, row: Mapping[str, Any], copies: np.ndarray | None = None
                   ) -> np.ndarray:
        """Indices of live records sharing at least one (uncapped) block with ``row``,
        and its exact copies whatever the caps (``copies``: :meth:`copies` of ``row``,
        when the caller has them already), ascending."""
        parts = []
        blocks, caps = self.blocks, self.caps
        for name, k in self.block_keys(row):
            block = blocks[name].get(k)
            if block and len(block) <= caps[name]:
                parts.append(block)
        if copies is None:
            copies = self.copies(row)
        if not parts:
            return copies
        seen: set[int] = set(copies.tolist())
        for b in parts:
            seen.update(b)
        idx = np.array(sorted(seen), np.int64)
        return idx[self.alive[idx]]

    def tf_of(self, col: str, codes: Any) -> Any:
        """Term frequency of codes (an int or an array); NaN for NULL or unseen values."""
        total, counts = self.tf_totals[col], self.tf_counts[col]
        if isinstance(codes, int):
            if codes < 0 or total == 0 or counts[codes] <= 0:
                return math.nan
            return float(counts[codes]) / total
        tf = np.where(codes >= 0, counts[np.maximum(codes, 0)] / max(total, 1), np.nan)
        tf[tf <= 0] = np.nan
        return tf

    def _score(self, pairs: _Pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        k = len(pairs)
        ncomp = len(self.comparisons)
        pos = np.zeros((k, ncomp), np.int8)
        weights = np.zeros((k, ncomp), np.float64)
        tf_adj = np.zeros((k, ncomp), np.float64)
        for j, comp in enumerate(self.comparisons):
            conds = comp.conditions
            p = np.full(k, len(comp.levels) - 1, np.int8)
            if k <= 32:  # few pairs: every condition on all, the first match wins
                hit = conds[0](pairs)
                if hit.all():
                    continue  # the null level holds for every pair: level 0, weight 0
                for i in range(len(conds) - 1, 0, -1):
                    p[conds[i](pairs)] = i
                p[hit] = 0
            else:  # many: each condition only on pairs no earlier level claimed
                rem = np.arange(k)
                sub = pairs
                for i, cond in enumerate(conds):
                    hit = cond(sub)
                    p[rem[hit]] = i
                    if not hit.any():
                        continue
                    keep = ~hit
                    rem = rem[keep]
                    if len(rem) == 0:
                        break
                    sub = sub.sub(keep)
            pos[:, j] = p
            weights[:, j] = self._level_weights[j][p]
            tf_levels = self._tf_levels[j]
            present = np.bincount(p).tolist() if tf_levels else ()
            for i in tf_levels:
                if i >= len(present) or not present[i]:
                    continue
                lvl = comp.levels[i]
                at = p == i
                col = lvl.tf_column
                assert col is not None
                lv = pairs.left(col)
                tf_l = pairs.tf(col, lv if pairs.single else lv[at], at)
                tf_r = pairs.tf(col, pairs.right(col)[at], at)
                tfv = np.maximum(np.fmax(tf_r, tf_l), lvl.tf_min)  # fmax: the side not NaN
                adj = np.where(np.isnan(tfv), 0.0,
                               lvl.tf_weight * (lvl.log2_u_exact - np.log2(np.where(
                                   np.isnan(tfv), 1.0, tfv))))
                tf_adj[at, j] = adj
        total_w = self.prior_weight + weights.sum(axis=1) + tf_adj.sum(axis=1)
        return total_w, pos, weights + tf_adj, tf_adj

    def score(self, row: Mapping[str, Any], c: np.ndarray,
              codes: Mapping[str, int] | None = None
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Score candidates ``c`` against a query ``row`` (``codes``: ``row`` encoded, when
        the caller has it already).

        Returns:
            (match weights, level positions [k x comparisons], evidence weights
            [k x comparisons] with the tf part in a fourth array [k x comparisons]).
        """
        return self._score(_Pairs(self, c, row=row, lcodes=self._encode(row)
                                  if codes is None else codes))

    def score_pairs(self, li: np.ndarray, ri: np.ndarray) -> np.ndarray:
        """Match weights of the pairs (index row ``li[k]``, index row ``ri[k]``)."""
        return self._score(_Pairs(self, ri, li=li))[0]

    def link_group(self, positions: Sequence[int], keys: Sequence[list[tuple[str, str]]]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score pending records (see :meth:`add`) against what precedes each of them.

        The k-th record's candidates are the live records and the group's records added
        before it that share an uncapped block with it, the cap counting the block as it
        stood when the record was added: the same candidates as enrolling the records
        one by one, and the term frequencies as they stood then. All pairs are scored in
        one pass.

        Args:
            positions: index rows of the pending records, in enrolment order.
            keys: each record's :meth:`block_keys`.

        Returns:
            ``(bounds, candidates, weights)``: the k-th record's candidate rows are
            ``candidates[bounds[k]:bounds[k + 1]]`` (ascending), with their match weights
            (NaN scored as ``-inf``).
        """
        blocks, caps = self.blocks, self.caps
        qid: list[int] = []
        flat: list[int] = []
        for k, (at, ks) in enumerate(zip(positions, keys, strict=True)):
            for name, key in ks:
                block = blocks[name].get(key)
                if not block:
                    continue
                n = bisect_left(block, at)  # blocks are ascending
                if 0 < n <= caps[name]:
                    flat.extend(block[:n])
                    qid.extend([k] * n)
        group = np.asarray(positions, np.int64)
        visible = self.alive[:self.n].copy()
        visible[group] = True
        # Exact copies whatever the caps: the live ones and the group's earlier records.
        for k, at in enumerate(positions):
            copies = self.copies_before(at, visible).tolist()
            flat.extend(copies)
            qid.extend([k] * len(copies))
        if not flat:
            return np.zeros(len(group) + 1, np.int64), np.empty(0, np.int64), np.empty(0)
        stride = np.int64(self.n)
        pairs = np.unique(np.array(qid, np.int64) * stride + np.array(flat, np.int64))
        q, c = pairs // stride, pairs % stride
        keep = visible[c]
        q, c = q[keep], c[keep]
        freq = _GroupFrequencies(self, group)
        w = self._score(_Pairs(self, c, li=group[q], freq=freq, lk=q))[0]
        w[np.isnan(w)] = -np.inf
        return np.searchsorted(q, np.arange(len(group) + 1)), c, w

    def row(self, i: int) -> dict[str, Any]:
        """The standardised columns of index row ``i``, decoded."""
        out: dict[str, Any] = {}
        for c in self.str_columns:
            code = int(self.cols[c][i])
            out[c] = None if code < 0 else self.vocab[c].values[code]
        for c in INT_COLUMNS:
            v = int(self.cols[c][i])
            out[c] = None if v == _NULL else v
        for c in self.num_columns:
            v = float(self.cols[c][i])
            out[c] = None if math.isnan(v) else v
        return out

    def explain(self, uid_l: str, uid_r: str) -> PairExplanation:
        """The waterfall of two indexed records, linked or not, and their shared blocks.

        Raises:
            KeyError: naming a uid that is not in the index (no published person).
        """
        with self._lock.read():
            at = []
            for uid in (uid_l, uid_r):
                i = self.uid_index.get(uid)
                if i is None:
                    raise KeyError(uid)
                at.append(i)
            w, pos, ev_w, tf_adj = self._score(_Pairs(self, np.array([at[1]]),
                                                      li=np.array([at[0]])))
            keys_l = dict(self.block_keys(self.row(at[0])))
            keys_r = dict(self.block_keys(self.row(at[1])))
            shared = [k for k, v in keys_l.items() if keys_r.get(k) == v]
            within = [k for k in shared if len(self.blocks[k].get(keys_l[k], ()))
                      <= self.caps[k]]
            evidence = [Evidence(comp.name, comp.levels[pos[0, j]].cvv,
                                 comp.levels[pos[0, j]].label, float(ev_w[0, j]),
                                 float(tf_adj[0, j])) for j, comp in enumerate(self.comparisons)]
            return PairExplanation(uid_l, uid_r, self.prior_weight, float(w[0]),
                                   probability(float(w[0])), evidence, within,
                                   [k for k in shared if k not in within])

    def resolve(self, row: Mapping[str, Any], *, max_candidates: int = 10,
                min_probability: float = 0.0) -> Resolution:
        """Candidate persons for a standardised row, best first.

        Args:
            row: standardised columns (:data:`linkage.canonical.STANDARD_COLUMNS`).
            max_candidates: at most this many persons.
            min_probability: leave out persons whose best record scores below this.
        """
        with self._lock.read():
            # The query is encoded and its copies found once, for candidates and scores.
            codes = self._encode(row)
            copies = self.copies(row, codes)
            c = self.candidates(row, copies)
            if len(c) == 0:
                return Resolution([], 0)
            w, pos, ev_w, tf_adj = self.score(row, c, codes)
            persons = self.person[c]
            # An exact copy's person is always a candidate, whatever its score: with a
            # common name and a year-only date the copy may score below the floor, and
            # "no candidate" would be wrong (the batch joins copies of one row first).
            copy_persons = set(self.person[copies].tolist()) if len(copies) else set()
            order = np.argsort(-w, kind="stable")
            first_p, first_at, counts = np.unique(persons[order], return_index=True,
                                                  return_counts=True)
            best = order[first_at]  # best record of each person (positions into c)
            ranked = np.argsort(-w[best], kind="stable")
            out = []
            for r in ranked:
                if len(out) >= max_candidates:
                    break
                b = best[r]
                prob = probability(float(w[b]))
                exact = int(first_p[r]) in copy_persons
                if prob < min_probability and not exact:
                    if not copy_persons:
                        break
                    continue
                ev = [Evidence(comp.name, comp.levels[pos[b, j]].cvv,
                               comp.levels[pos[b, j]].label, float(ev_w[b, j]),
                               float(tf_adj[b, j]))
                      for j, comp in enumerate(self.comparisons)]
                out.append(Candidate(self.persons.values[first_p[r]], self.uids[c[b]],
                                     float(w[b]), prob, ev, int(counts[r]), exact_copy=exact))
            return Resolution(out, int(len(c)))

    @staticmethod
    def top1(w: np.ndarray, persons: np.ndarray) -> int | None:
        """Position of the first-ranked candidate's best record, as :meth:`resolve` ranks.

        :meth:`resolve` puts first the person with the highest record weight, ties going
        to the lowest person code, and that person's first such record. ``None`` when a
        weight is NaN.
        """
        m = w.max()
        if m != m:
            return None
        ties = np.flatnonzero(w == m)
        if len(ties) == 1:
            return int(ties[0])
        return int(ties[np.argmin(persons[ties])])


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


def load_model(project: Any, cur: duckdb.DuckDBPyConnection) -> Model:
    """The model real time must serve: the one of the last published run.

    Read from the register (``model_versions.model_json``), not from the project's model
    file: a run that retrained saves its new model beside the project while the project
    may still name a shipped one, and Resolve and Enrol must score with the model that
    produced the published persons. Before any run is published, the project's model file
    (as the batch would find it). Raises :class:`NotReady` when there is none usable.
    """
    from linkage.matching.model import ModelError

    rows = cur.execute(
        "SELECT r.model_version, m.model_json, m.path, m.sha256 FROM runs r "
        "LEFT JOIN model_versions m ON m.version = r.model_version "
        "WHERE r.status = 'published' ORDER BY r.finished_at DESC LIMIT 1").fetchall()
    try:
        if not rows:
            path = project.model or project.path.parent / "models" / "model.json"
            model = Model.load(path)
            model.check_project(project.definition, str(path))
            return model
        version, text, path, sha = rows[0]
        if text:
            model = Model.from_json(text, f"model {version} of the last published run")
            # Queries are standardised with the project's extra fields: the model must
            # score those, not others.
            model.check_project(project.definition, f"model {version} of the last published run")
            return model
        # A register written before model_json: the file the run used, if unchanged.
        model = Model.load(path)
        if model.version != version or model.sha256 != sha:
            raise NotReady(f"the last published run used model {version}, but {path} now holds "
                           f"{model.version} (changed since): run a batch to publish again")
        return model
    except ModelError as exc:
        raise NotReady(f"no usable model: {exc}") from exc
