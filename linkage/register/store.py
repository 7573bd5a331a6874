"""The register's one writer: each kind of write that more than one caller makes, once.

The batch (:mod:`linkage.ingest.read`, :mod:`linkage.ids.publish`), real-time enrolment
(:mod:`linkage.realtime.enrol`) and the tests' register builders all write through these
functions, so a record is upserted and hashed, a person ID issued, published and told
in the change feed one way only. Each function takes the caller's cursor and writes
inside the caller's transaction; none commits. (Tables with a single writer stay beside
it: ingest's ``rejects``, ``field_warnings`` and ``source_files``; the batch's ``runs``,
``model_versions`` and ``links`` in :mod:`linkage.batch.pipeline`.)

==================== ==================================================================
kind of write        functions
==================== ==================================================================
sources              :func:`add_source`
records              :func:`record_json`, :func:`record_hash`, :func:`records_table`,
                     :func:`upsert_records`; what makes two records exact copies of one
                     row (:data:`COPY_COLUMNS`, :func:`copy_key`, :func:`copy_key_sql`)
person IDs           :func:`id_allocator`, :func:`next_seq`, :class:`IdIssuer`
persons              :class:`PersonChanges`, :func:`publish_persons` (with
                     :func:`append_events`), read back by :func:`load_state`
golden records       :func:`refresh_golden` (the rules are :mod:`linkage.ids.golden`)
successor pointers   :func:`load_successors`, :func:`reachable_state` (the walk itself is
                     :func:`linkage.ids.reconcile.resolve`)
constraints          :func:`add_constraint`, :func:`remove_decision_constraints`, read
                     back by :func:`load_constraints`, :func:`constraint_partners`
review queue         :func:`add_review_items`, :func:`set_review_status`,
                     :func:`add_review_decision`, :func:`add_review_view`,
                     :func:`add_review_sample` (what to queue and decide:
                     :mod:`linkage.review`)
enrolment journal    :func:`journal_enrolment`, :func:`journaled_enrolments`,
                     :func:`drop_journaled`
==================== ==================================================================

The algorithms stay pure in :mod:`linkage.ids.reconcile`; this module only moves their inputs and
outputs to and from the tables.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from linkage.canonical import STANDARD_COLUMNS
from linkage.ids.golden import INPUT_COLUMNS as GOLDEN_COLUMNS
from linkage.ids.golden import GoldenRecord, SourceRecord, golden
from linkage.ids.reconcile import (
    ConstraintConflict,
    Constraints,
    Event,
    IdAllocator,
    IdState,
    apply_constraints,
    new_id,
)
from linkage.register.database import API_FILE, query

Cursor = duckdb.DuckDBPyConnection

LIVE, RETIRED = "live", "retired"
MUST_LINK, CANNOT_LINK = "must_link", "cannot_link"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _Staged:
    """An Arrow table registered under ``name`` for the ``with`` block."""

    def __init__(self, cur: Cursor, name: str, table: pa.Table):
        self.cur, self.name, self.table = cur, name, table

    def __enter__(self) -> str:
        self.cur.register(self.name, self.table)
        return self.name

    def __exit__(self, *exc: object) -> None:
        self.cur.unregister(self.name)


def _meta(cur: Cursor, key: str) -> str | None:
    rows = query(cur, "SELECT value FROM meta WHERE key = ?", [key])
    return rows[0][0] if rows else None


def _set_meta(cur: Cursor, key: str, value: str) -> None:
    cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


# ---------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------


def extra_reading(cur: Cursor, source: str) -> str | None:
    """How a source's extra fields and derived columns were last read (``None``: none)."""
    return _meta(cur, f"extra_reading:{source}")


def set_extra_reading(cur: Cursor, source: str, value: str | None) -> None:
    """Record :func:`extra_reading` (``None`` removes it)."""
    if value is None:
        cur.execute("DELETE FROM meta WHERE key = ?", [f"extra_reading:{source}"])
    else:
        _set_meta(cur, f"extra_reading:{source}", value)


def standardise_reading(cur: Cursor, source: str) -> str | None:
    """How a source's rows were last standardised
    (:func:`linkage.ingest.read.standardise_reading`; ``None``: never recorded)."""
    return _meta(cur, f"standardise_reading:{source}")


def set_standardise_reading(cur: Cursor, source: str, value: str) -> None:
    """Record :func:`standardise_reading`."""
    _set_meta(cur, f"standardise_reading:{source}", value)


def add_source(cur: Cursor, name: str, kind: str, programme: str,
               config_path: str | None = None, *, replace: bool = True) -> None:
    """Record a source. ``replace=False`` keeps a row already there (enrolment does)."""
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    cur.execute(f"{verb} INTO sources VALUES (?, ?, ?, ?)", [name, kind, programme, config_path])


def source_names(cur: Cursor) -> set[str]:
    """Names in the ``sources`` table."""
    return {n for (n,) in query(cur, "SELECT name FROM sources")}


# ---------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------

#: Columns of the rows :func:`upsert_records` takes, besides the standardised ones.
RECORD_COLUMNS = ("uid", "source", "record_key", "file", "row_number", "raw", "record_hash")
_ARROW_TYPES = {"VARCHAR": pa.string(), "INTEGER": pa.int32()}
RECORDS_SCHEMA = pa.schema(
    [pa.field(c, pa.int64() if c == "row_number" else pa.string()) for c in RECORD_COLUMNS]
    + [pa.field(c, _ARROW_TYPES[t]) for c, t in STANDARD_COLUMNS.items()]
    # The project's extra fields, standardised, as JSON (linkage.matching.extra.extra_json).
    + [pa.field("extra", pa.string())])


def record_json(values: Mapping[str, Any]) -> str:
    """A record's raw values as stored in ``records.raw``: JSON with sorted keys.

    The one definition for records read from a file and records sent over the API.
    """
    return json.dumps(values, ensure_ascii=False, sort_keys=True, default=str)


def record_hash(raw_json: str) -> str:
    """``records.record_hash`` of a record's :func:`record_json`: tells an update apart."""
    return hashlib.sha1(raw_json.encode("utf-8")).hexdigest()


#: The standardised columns two records must share, NULLs included, to be exact copies
#: of one row. The household is not among them: an exact copy inside a roster also
#: shares its household (the batch checks it beside the key, :mod:`linkage.batch.clustering`),
#: while Resolve finds a copy whatever household the caller sends (an API caller's
#: household IDs are scoped to its own source and never equal a roster's).
COPY_COLUMNS: tuple[str, ...] = tuple(c for c in STANDARD_COLUMNS if c != "household_id")


def _copy_text(values: Sequence[Any]) -> str:
    # Length-prefixed, so no two rows share a text; '-' is NULL (never a prefixed value).
    return "|".join("-" if v is None else f"{len(str(v))}:{v}" for v in values)


def copy_key(row: Mapping[str, Any]) -> int | None:
    """A standardised row's exact-copy key: two records with the same key hold the same
    :data:`COPY_COLUMNS` (a 64-bit hash: a chance collision among a million records has
    odds of about 1 in 30 million, and real time checks the columns themselves).

    None when the row has no name or no birth year: too little to call two records
    copies of one row. :func:`copy_key_sql` computes the same key in DuckDB.
    """
    if row.get("name_keys") is None or row.get("birth_year") is None:
        return None
    digest = hashlib.md5(_copy_text([row.get(c) for c in COPY_COLUMNS]).encode("utf-8"))
    return int(digest.hexdigest()[:16], 16)


def copy_key_sql() -> str:
    """SQL of :func:`copy_key` over the standardised columns in scope (a ``UBIGINT``)."""
    parts = " || '|' || ".join(
        f"CASE WHEN {c} IS NULL THEN '-' ELSE CAST(length(CAST({c} AS VARCHAR)) AS VARCHAR)"
        f" || ':' || CAST({c} AS VARCHAR) END" for c in COPY_COLUMNS)
    return (f"CASE WHEN name_keys IS NOT NULL AND birth_year IS NOT NULL THEN "
            f"CAST('0x' || substr(md5({parts}), 1, 16) AS UBIGINT) END")


def records_table(columns: Mapping[str, Sequence[Any]], *, source: str | None = None
                  ) -> pa.Table:
    """Rows for :func:`upsert_records` from column lists (:data:`RECORDS_SCHEMA` names).

    Args:
        columns: column name -> values; missing standardised columns are NULL. ``file``
            NULL (or missing) marks records sent over the API.
        source: fills the ``source`` column when ``columns`` has none.
    """
    n = len(columns["uid"])
    data = {}
    for f in RECORDS_SCHEMA:
        if f.name in columns:
            values = columns[f.name]
        elif f.name == "source" and source is not None:
            values = [source] * n
        else:
            values = [None] * n
        data[f.name] = pa.array(values, type=f.type)
    return pa.table(data, schema=RECORDS_SCHEMA)


@dataclass
class RecordCounts:
    """What :func:`upsert_records` did."""

    added: int = 0
    updated: int = 0
    retired: int = 0


def upsert_records(cur: Cursor, rows: pa.Table, *, now: dt.datetime | None = None,
                   full_extract_of: str | None = None) -> RecordCounts:
    """Insert new records and update changed ones, by ``uid``; idempotent.

    A record is updated when its raw content (hash), its standardised columns or its
    status (``retired`` comes back to ``active``) differ; the same row again changes
    nothing. A row with no ``file`` is a record sent over the API: inserted with
    ``file`` :data:`~linkage.register.database.API_FILE`, and an update keeps the stored record's
    file and row number.

    Args:
        cur: a register cursor inside the caller's transaction.
        rows: :func:`records_table` rows, one per uid.
        now: timestamp for ``first_seen`` / ``updated_at`` / ``retired_at``.
        full_extract_of: ``rows`` are a whole extract of this source: its active
            records missing from them are retired, except those enrolled over the API.
    """
    now = now or _now()
    std = [*STANDARD_COLUMNS, "extra"]
    cols = ", ".join(std)
    # A row also counts as updated when the same raw values now standardise differently
    # (a forced re-read after min_birth_year changed): records match the latest reading.
    changed = " OR ".join(["r.record_hash <> s.record_hash", "r.status <> 'active'"]
                          + [f"r.{c} IS DISTINCT FROM s.{c}" for c in std])
    rows = rows.select(RECORDS_SCHEMA.names)
    n = rows.num_rows
    out = RecordCounts()
    # One join says what to do with each row (0 nothing, 1 insert, 2 update); the writes
    # then touch only those rows. (A LEFT JOIN from the staged rows stays cheap for an
    # enrolment group on a large register, where NOT EXISTS scans every record.)
    numbered = rows.append_column("ord", pa.array(np.arange(n, dtype=np.int64)))
    with _Staged(cur, "stage_records", numbered):
        got = cur.execute(f"""
            SELECT s.ord,
                   CASE WHEN r.uid IS NULL THEN 1 WHEN {changed} THEN 2 ELSE 0 END AS action
            FROM stage_records s LEFT JOIN records r USING (uid)""").fetchnumpy()
    action = np.zeros(n, np.int8)
    action[got["ord"]] = got["action"]
    inserts, updates = rows.filter(action == 1), rows.filter(action == 2)
    out.added, out.updated = inserts.num_rows, updates.num_rows
    if updates.num_rows:
        set_std = ", ".join(f"{c} = s.{c}" for c in std)
        with _Staged(cur, "stage_updates", updates):
            cur.execute(f"""
                UPDATE records SET file = coalesce(s.file, records.file),
                       row_number = coalesce(s.row_number, records.row_number), raw = s.raw,
                       record_hash = s.record_hash, status = 'active', updated_at = ?,
                       retired_at = NULL, {set_std}
                FROM stage_updates s WHERE records.uid = s.uid""", [now])
    if inserts.num_rows:
        with _Staged(cur, "stage_inserts", inserts):
            cur.execute(f"""
                INSERT INTO records (uid, source, record_key, file, row_number, raw,
                                     record_hash, status, first_seen, updated_at, retired_at,
                                     {cols})
                SELECT uid, source, record_key, coalesce(file, ?), row_number, raw,
                       record_hash, 'active', ?, ?, NULL, {cols}
                FROM stage_inserts""", [API_FILE, now, now])
    if full_extract_of is not None:
        with _Staged(cur, "stage_extract", rows.select(["uid"])):
            absent = """source = ? AND status = 'active' AND file IS DISTINCT FROM ?
                  AND NOT EXISTS (SELECT 1 FROM stage_extract s WHERE s.uid = records.uid)"""
            (out.retired,) = query(cur, f"SELECT count(*) FROM records WHERE {absent}",
                                   [full_extract_of, API_FILE])[0]
            if out.retired:
                cur.execute(f"UPDATE records SET status = 'retired', retired_at = ? "
                            f"WHERE {absent}", [now, full_extract_of, API_FILE])
    return out


# ---------------------------------------------------------------------------------------
# Person IDs
# ---------------------------------------------------------------------------------------


def id_allocator(cur: Cursor) -> IdAllocator:
    """The register's ID allocator; its secret is made once and kept in ``meta``.

    The secret makes IDs unguessable from their issue order; it never leaves the register.
    """
    secret = _meta(cur, "id_secret")
    if secret is None:
        secret = secrets.token_hex(32)
        _set_meta(cur, "id_secret", secret)
    return IdAllocator(bytes.fromhex(secret))


def next_seq(cur: Cursor) -> int:
    """The issue sequence number the next new ID starts from (``meta.id_next_seq``)."""
    value = _meta(cur, "id_next_seq")
    if value is not None:
        return int(value)
    (mx,) = query(cur, "SELECT max(issue_seq) FROM persons")[0]
    return mx + 1 if mx is not None else 0


def skip_ids(cur: Cursor, count: int) -> int:
    """Move the ID counter ``count`` issue numbers on (after restoring an older backup, so
    that IDs issued after it, already known to MIS systems, are never issued again);
    returns the new next issue number."""
    nxt = next_seq(cur) + count
    _set_meta(cur, "id_next_seq", str(nxt))
    return nxt


class IdIssuer:
    """Issues new person IDs to a writer that publishes a few at a time (enrolment).

    The same allocator, secret and counter as a batch run's :func:`linkage.ids.reconcile`,
    so IDs from both never collide. Between transactions it keeps the issued IDs in
    memory; they stay valid while ``meta.id_next_seq`` is the value it last saw, because
    every writer that issues IDs moves that counter on (:func:`publish_persons`). When
    another writer (a batch run) did, :meth:`begin` reads the persons again.

    One writer thread only. In each transaction: :meth:`begin`, :meth:`issue` as needed,
    publish :attr:`pending` and :attr:`next_seq` with :func:`publish_persons`, then
    :meth:`committed` or :meth:`rolled_back`.
    """

    def __init__(self) -> None:
        self._allocator: IdAllocator | None = None
        self._issued: set[str] = set()
        self._seen: int | None = None  # id_next_seq the cache matches
        self._begun: int = 0
        self._made_secret = False
        self.next_seq = 0
        self.pending: list[tuple[str, int]] = []  # (ID, issue seq) issued in this transaction

    def begin(self, cur: Cursor) -> None:
        """Start a transaction's issuing; re-reads the issued IDs when others issued some."""
        seq = next_seq(cur)
        if seq != self._seen:
            self._issued = {p for (p,) in query(cur, "SELECT person_id FROM persons")}
            self._seen = seq
        self.next_seq = self._begun = seq
        self.pending = []
        self._made_secret = False

    def issue(self, cur: Cursor) -> tuple[str, int]:
        """A new ID and its issue sequence number."""
        if self._allocator is None:
            self._made_secret = _meta(cur, "id_secret") is None
            self._allocator = id_allocator(cur)  # creates the secret once
        pid, nxt = self._allocator.allocate(self.next_seq, self._issued)  # type: ignore[arg-type]
        self._issued.add(pid)
        self.pending.append((pid, nxt - 1))
        self.next_seq = nxt
        return pid, nxt - 1

    def committed(self) -> None:
        self._seen = self.next_seq
        self.pending = []

    def rolled_back(self) -> None:
        self._issued.difference_update(p for p, _ in self.pending)
        self.next_seq = self._begun
        if self._made_secret:
            self._allocator = None
        self.pending = []


# ---------------------------------------------------------------------------------------
# Persons: the published ID state and its changes
# ---------------------------------------------------------------------------------------

# person_successors has no order column; the merged_into events keep the pointer order
# (largest share first): the latest event per pointer, pointers without one last.
_SUCCESSORS_SQL = """
    SELECT s.person_id, s.successor_id
    FROM person_successors s
    LEFT JOIN (SELECT person_id, other_person_id AS successor_id, max(seq) AS seq
               FROM person_events WHERE kind = 'merged_into' {where_e} GROUP BY ALL) e
      USING (person_id, successor_id)
    {where_s}
    ORDER BY s.person_id, e.seq NULLS LAST, s.successor_id"""


def load_successors(cur: Cursor, person_ids: Sequence[str] | None = None
                    ) -> dict[str, tuple[str, ...]]:
    """Retired ID -> its successor pointers in pointer order (all, or of ``person_ids``)."""
    if person_ids is None:
        rows = query(cur, _SUCCESSORS_SQL.format(where_e="", where_s=""))
    else:
        rows = query(cur, _SUCCESSORS_SQL.format(
            where_e="AND list_contains(?, person_id)",
            where_s="WHERE list_contains(?, s.person_id)"), [list(person_ids)] * 2)
    out: dict[str, list[str]] = {}
    for pid, succ in rows:
        out.setdefault(pid, []).append(succ)
    return {k: tuple(v) for k, v in out.items()}


def load_state(cur: Cursor) -> IdState:
    """The published ID state."""
    assignment = dict(query(cur, "SELECT uid, person_id FROM person_records"))
    issued = dict(query(cur, "SELECT person_id, issue_seq FROM persons"))
    retired: dict[str, tuple[str, ...]] = {
        pid: () for (pid,) in query(cur, "SELECT person_id FROM persons WHERE status = 'retired'")}
    retired.update(load_successors(cur))
    last: dict[str, set[str]] = {}
    for pid, uid in query(cur, "SELECT person_id, uid FROM person_last_records"):
        last.setdefault(pid, set()).add(uid)
    return IdState(assignment=assignment, issued=issued, retired=retired,
                   last_records={k: frozenset(v) for k, v in last.items()},
                   next_seq=next_seq(cur))


def load_state_part(cur: Cursor, clusters: Mapping[str, Any]
                    ) -> tuple[IdState, dict[str, str], int]:
    """The part of the published ID state a run's clusters can change, in SQL.

    A cluster that is exactly one published person's records (all of them) and holds
    no record a reviewer constraint names is left as it is by
    :func:`linkage.ids.reconcile.reconcile` (its fast path). Every other cluster is in
    the part, with every record of the persons its records belong to, and the persons
    of records that vanished. That set is closed: a person with a record in the part
    has all its records there (a cluster outside is one whole person, so it shares no
    person with the part). The retired IDs whose last records touch the part come too
    (restoration looks only at those), with their last records and successors.

    Returns:
        The part's state (``issued`` holds only its IDs: give the allocator
        :class:`IssuedIds` for the rest), the part's clusters, and how many live
        persons lie outside it (left as they are).
    """
    staged = pa.table({"uid": pa.array(list(clusters), pa.string()),
                       "label": pa.array([str(v) for v in clusters.values()], pa.string())})
    with _Staged(cur, "stage_clusters", staged):
        cur.execute("""
            CREATE OR REPLACE TEMP TABLE part_labels AS
            WITH j AS (SELECT c.uid, c.label, p.person_id FROM stage_clusters c
                       LEFT JOIN person_records p USING (uid)),
            per_label AS (SELECT label, count(*) AS n, count(person_id) AS n_old,
                                 count(DISTINCT person_id) AS n_persons,
                                 min(person_id) AS person_id FROM j GROUP BY label),
            sizes AS (SELECT person_id, count(*) AS n FROM person_records GROUP BY person_id),
            whole AS (SELECT l.label FROM per_label l JOIN sizes s USING (person_id)
                      WHERE l.n_persons = 1 AND l.n_old = l.n AND s.n = l.n),
            constrained AS (SELECT DISTINCT c.label FROM stage_clusters c
                            JOIN (SELECT uid_a AS uid FROM constraints
                                  UNION SELECT uid_b FROM constraints) k USING (uid))
            SELECT label FROM per_label WHERE label NOT IN (SELECT label FROM whole)
            UNION SELECT label FROM constrained""")
        part = cur.sql("SELECT uid, label FROM stage_clusters "
                       "WHERE label IN (SELECT label FROM part_labels)").to_arrow_table()
        cur.execute("""
            CREATE OR REPLACE TEMP TABLE part_persons AS
            SELECT DISTINCT p.person_id FROM person_records p
            LEFT JOIN stage_clusters c USING (uid)
            WHERE c.uid IS NULL OR c.label IN (SELECT label FROM part_labels)""")
        # Restoration indexes the retired IDs' last records by the part's records only.
        cur.execute("""
            CREATE OR REPLACE TEMP TABLE part_restorable AS
            SELECT DISTINCT l.person_id FROM person_last_records l
            JOIN stage_clusters c USING (uid) JOIN persons p USING (person_id)
            WHERE c.label IN (SELECT label FROM part_labels) AND p.status = 'retired'""")
    assignment = dict(query(cur, "SELECT uid, person_id FROM person_records "
                                 "WHERE person_id IN (SELECT person_id FROM part_persons)"))
    issued = dict(query(cur, """
        SELECT person_id, issue_seq FROM persons WHERE person_id IN
          (SELECT person_id FROM part_persons UNION SELECT person_id FROM part_restorable)"""))
    restorable = [p for (p,) in query(cur, "SELECT person_id FROM part_restorable")]
    retired: dict[str, tuple[str, ...]] = {p: () for (p,) in query(cur, """
        SELECT person_id FROM persons WHERE status = 'retired'
          AND person_id IN (SELECT person_id FROM part_restorable)""")}
    if restorable:
        retired.update(load_successors(cur, restorable))
    last: dict[str, set[str]] = {}
    for pid, uid in query(cur, "SELECT person_id, uid FROM person_last_records WHERE "
                               "person_id IN (SELECT person_id FROM part_restorable)"):
        last.setdefault(pid, set()).add(uid)
    (outside,) = query(cur, "SELECT count(DISTINCT person_id) FROM person_records WHERE "
                            "person_id NOT IN (SELECT person_id FROM part_persons)")[0]
    for table in ("part_labels", "part_persons", "part_restorable"):
        cur.execute(f"DROP TABLE {table}")
    state = IdState(assignment=assignment, issued=issued, retired=retired,
                    last_records={k: frozenset(v) for k, v in last.items()},
                    next_seq=next_seq(cur))
    part_clusters = dict(zip(part.column("uid").to_pylist(), part.column("label").to_pylist(),
                             strict=True))
    return state, part_clusters, int(outside)


class IssuedIds:
    """Whether an ID was ever issued, for an allocator given only part of the state.

    The next IDs the allocator will try are derived from the sequence counter; those
    ``window`` are checked in one query, any further one on its own.
    """

    def __init__(self, cur: Cursor, allocator: IdAllocator, start: int, window: int):
        self.cur = cur
        self.checked = {new_id(allocator.secret, s) for s in range(start, start + window)}
        with _Staged(cur, "stage_candidates",
                     pa.table({"person_id": pa.array(sorted(self.checked), pa.string())})):
            self.known = {p for (p,) in query(cur, "SELECT person_id FROM persons WHERE "
                                                   "person_id IN (SELECT person_id FROM "
                                                   "stage_candidates)")}

    def __contains__(self, pid: object) -> bool:
        if pid in self.known:
            return True
        if pid in self.checked:
            return False
        return bool(query(self.cur, "SELECT 1 FROM persons WHERE person_id = ?", [pid]))


def reachable_state(cur: Cursor, pid: str) -> IdState | None:
    """The part of the published ID state that :func:`linkage.ids.reconcile.resolve` walks from
    ``pid``: the IDs reachable through successor pointers. None if ``pid`` was never
    issued."""
    rows = query(cur, "SELECT status, issue_seq FROM persons WHERE person_id = ?", [pid])
    if not rows:
        return None
    if rows[0][0] != RETIRED:
        return IdState(issued={pid: rows[0][1]})
    rows = query(cur, """
        WITH RECURSIVE reach(person_id) AS (
            SELECT ?::VARCHAR
            UNION
            SELECT s.successor_id FROM person_successors s JOIN reach r USING (person_id)
        )
        SELECT p.person_id, p.status, p.issue_seq FROM persons p JOIN reach USING (person_id)
        """, [pid])
    issued = {p: seq for p, _, seq in rows}
    retired: dict[str, tuple[str, ...]] = {p: () for p, st, _ in rows if st == RETIRED}
    for p, succ in load_successors(cur, list(retired)).items():
        retired[p] = tuple(q for q in succ if q in issued)  # pointers to persons only
    return IdState(issued=issued, retired=retired)


@dataclass
class PersonChanges:
    """One publication's changes to the persons tables, from a run or an enrolment group.

    Attributes:
        run_id: the run (``enrol`` for enrolment) named in ``persons.created_run`` /
            ``updated_run``.
        issued: new IDs and their issue sequence numbers; published as live persons.
        next_seq: ``meta.id_next_seq`` after them (None: unchanged).
        assigned: record uid -> its person, for new and moved assignments.
        unassigned: uids whose assignment ends: vanished, or moved (then in ``assigned``
            too).
        status: existing person -> its new status (``live`` / ``retired``).
        touched: existing persons this publication changed (``updated_run`` := run_id).
        successors: person -> its successor pointers now, replacing the old ones.
        last_records: person -> its last record set now (empty: none), replacing.
        events: the change feed's new events, in order.
    """

    run_id: str
    issued: Sequence[tuple[str, int]] = ()
    next_seq: int | None = None
    assigned: Mapping[str, str] = field(default_factory=dict)
    unassigned: Collection[str] = ()
    status: Mapping[str, str] = field(default_factory=dict)
    touched: Collection[str] = ()
    successors: Mapping[str, Sequence[str]] = field(default_factory=dict)
    last_records: Mapping[str, Collection[str]] = field(default_factory=dict)
    events: Sequence[Event] = ()

    @classmethod
    def between(cls, old: IdState, new: IdState, *, run_id: str,
                events: Sequence[Event] = ()) -> PersonChanges:
        """What turns the published ``old`` state into ``new`` (a reconcile result)."""
        old_a, new_a = old.assignment, new.assignment
        assigned = {u: p for u, p in new_a.items() if old_a.get(u) != p}
        unassigned = [u for u, p in old_a.items() if new_a.get(u) != p]
        live = set(new_a.values())
        touched = {p for p in old.issued if (p in old.retired) != (p in new.retired)}
        touched.update(assigned.values())
        touched.update(old_a[u] for u in unassigned)
        touched.intersection_update(old.issued)
        issued, status = [], {}
        for p, seq in new.issued.items():
            now = LIVE if p in live else RETIRED
            if p not in old.issued:
                issued.append((p, seq))
                was = LIVE
            else:
                was = RETIRED if p in old.retired else LIVE
            if now != was:
                status[p] = now
        issued.sort(key=lambda e: e[1])

        def differs(a: Mapping[str, Collection[str]], b: Mapping[str, Collection[str]]
                    ) -> list[str]:
            out = []
            for p in a.keys() | b.keys():
                x, y = a.get(p, ()), b.get(p, ())
                if x is not y and set(x) != set(y):
                    out.append(p)
            return out

        successors = {p: new.retired.get(p, ()) for p in differs(old.retired, new.retired)}
        last_records = {p: new.last_records.get(p, frozenset())
                        for p in differs(old.last_records, new.last_records)}
        return cls(run_id=run_id, issued=issued, next_seq=new.next_seq, assigned=assigned,
                   unassigned=unassigned, status=status, touched=touched,
                   successors=successors, last_records=last_records, events=events)


def publish_persons(cur: Cursor, changes: PersonChanges, *, cause: str | None = None) -> None:
    """Write one publication's changes to the persons tables and the change feed.

    ``cause`` fills events that have none.
    """
    run_id = changes.run_id
    if changes.unassigned:
        with _Staged(cur, "stage_unassigned",
                     pa.table({"uid": pa.array(list(changes.unassigned), pa.string())})):
            cur.execute("DELETE FROM person_records WHERE uid IN "
                        "(SELECT uid FROM stage_unassigned)")
    if changes.assigned:
        with _Staged(cur, "stage_assigned", pa.table({
                "uid": pa.array(list(changes.assigned), pa.string()),
                "person_id": pa.array(list(changes.assigned.values()), pa.string())})):
            cur.execute("INSERT INTO person_records SELECT uid, person_id FROM stage_assigned")
    if changes.issued:
        with _Staged(cur, "stage_issued", pa.table({
                "person_id": pa.array([p for p, _ in changes.issued], pa.string()),
                "issue_seq": pa.array([s for _, s in changes.issued], pa.int64())})):
            cur.execute("INSERT INTO persons SELECT person_id, 'live', issue_seq, ?, ? "
                        "FROM stage_issued", [run_id, run_id])
    touched = set(changes.touched)
    update = touched | changes.status.keys()
    if update:
        ids = sorted(update)
        with _Staged(cur, "stage_person_updates", pa.table({
                "person_id": pa.array(ids, pa.string()),
                "status": pa.array([changes.status.get(p) for p in ids], pa.string()),
                "touched": pa.array([p in touched for p in ids], pa.bool_())})):
            cur.execute("""
                UPDATE persons SET status = coalesce(s.status, persons.status),
                       updated_run = CASE WHEN s.touched THEN ? ELSE persons.updated_run END
                FROM stage_person_updates s WHERE persons.person_id = s.person_id""", [run_id])
    for table, column, replace in (("person_successors", "successor_id", changes.successors),
                                   ("person_last_records", "uid", changes.last_records)):
        if not replace:
            continue
        pairs = [(p, v) for p, vs in replace.items() for v in vs]
        with _Staged(cur, "stage_replace", pa.table({
                "person_id": pa.array([p for p, _ in pairs], pa.string()),
                column: pa.array([v for _, v in pairs], pa.string())})), \
             _Staged(cur, "stage_replaced",
                     pa.table({"person_id": pa.array(list(replace), pa.string())})):
            cur.execute(f"DELETE FROM {table} WHERE person_id IN "
                        "(SELECT person_id FROM stage_replaced)")
            if pairs:
                cur.execute(f"INSERT INTO {table} SELECT person_id, {column} FROM stage_replace")
    if changes.next_seq is not None:
        _set_meta(cur, "id_next_seq", str(changes.next_seq))
    append_events(cur, changes.events, cause=cause)


_EVENT_INSERT_COLUMNS = ("seq, run_id, occurred_at, kind, person_id, record_uid, "
                         "other_person_id, cause")


def append_events(cur: Cursor, events: Sequence[Event], *, cause: str | None = None) -> None:
    """Append events to the change feed (``person_events``), in order.

    ``cause`` fills events that have none.
    """
    if not events:
        return
    ev = events
    with _Staged(cur, "stage_events", pa.table({
            "ord": list(range(len(ev))),
            "run_id": pa.array([e.run_id for e in ev], pa.string()),
            "occurred_at": [e.at for e in ev],
            "kind": pa.array([e.kind for e in ev], pa.string()),
            "person_id": pa.array([e.person_id for e in ev], pa.string()),
            "record_uid": pa.array([e.record_key for e in ev], pa.string()),
            "other_person_id": pa.array([e.other_person_id for e in ev], pa.string()),
            "cause": pa.array([e.cause or cause for e in ev], pa.string())})):
        cur.execute(f"""
            INSERT INTO person_events ({_EVENT_INSERT_COLUMNS})
            SELECT nextval('person_event_seq'), run_id, occurred_at, kind, person_id,
                   record_uid, other_person_id, cause
            FROM (SELECT * FROM stage_events ORDER BY ord)""")


# ---------------------------------------------------------------------------------------
# Golden records
# ---------------------------------------------------------------------------------------

GOLDEN_CHANGED = "golden_changed"


#: Up to this many keys a look-up is a literal IN list (the primary-key index answers);
#: above it a staged join (a scan, cheaper than thousands of index probes).
_POINT_LOOKUPS = 1000


def person_records_for_golden(cur: Cursor, person_ids: Sequence[str],
                              members: Mapping[str, Sequence[str]] | None = None
                              ) -> dict[str, list[SourceRecord]]:
    """person -> its records as :func:`linkage.ids.golden.golden` takes them.

    ``members`` (person -> its record uids, when the caller knows them: enrolment has
    them in its index) saves the scan of ``person_records``.
    """
    if not person_ids:
        return {}
    cols = ", ".join(f"r.{c}" for c in GOLDEN_COLUMNS)
    select = (f"SELECT p.person_id, r.uid, s.kind, s.programme, "
              f"coalesce(r.updated_at, r.first_seen), {cols}")
    if members is not None:
        pairs = [(p, u) for p in person_ids for u in members.get(p, ())]
        if len(pairs) <= _POINT_LOOKUPS:
            rows = query(cur, f"""
                {select} FROM records r JOIN person_records p USING (uid)
                LEFT JOIN sources s ON s.name = r.source
                WHERE r.uid IN ({", ".join("?" * len(pairs)) or "NULL"})
                ORDER BY p.person_id, r.uid""", [u for _, u in pairs])
            wanted = set(person_ids)
            rows = [row for row in rows if row[0] in wanted]
        else:
            members = None
    if members is None:
        with _Staged(cur, "stage_golden_ids",
                     pa.table({"person_id": pa.array(list(person_ids), pa.string())})):
            rows = query(cur, f"""
                {select} FROM stage_golden_ids g JOIN person_records p USING (person_id)
                JOIN records r USING (uid) LEFT JOIN sources s ON s.name = r.source
                ORDER BY p.person_id, r.uid""")
    out: dict[str, list[SourceRecord]] = {}
    for pid, uid, kind, programme, written, *values in rows:
        out.setdefault(pid, []).append(SourceRecord(uid, kind, programme, written,
                                                    dict(zip(GOLDEN_COLUMNS, values,
                                                             strict=True))))
    return out


def refresh_golden(cur: Cursor, persons: Collection[str] = (), *, run_id: str,
                   now: dt.datetime | None = None, since: dt.datetime | None = None,
                   full: bool = False, members: Mapping[str, Sequence[str]] | None = None,
                   old: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Recompute the golden records of persons whose records changed; store the changed
    ones in ``person_golden`` and tell the change feed (``golden_changed`` events, with
    the new golden record and, as cause, the fields that changed).

    Args:
        cur: a register cursor inside the publishing transaction, after the persons
            were published.
        persons: persons whose record sets changed.
        run_id: the run (``enrol`` for enrolment) named in the events.
        since: also the persons of records written at or after this time (a batch's
            ingest updates records in place without moving them).
        full: also every live person without a golden record (a register made before
            golden records existed), and drop those of persons no longer live.
        members: person -> its record uids, when the caller knows them (saves a scan).
        old: the stored golden records (JSON) of ``persons``, when the caller holds them.

    Returns:
        The golden records that changed: person -> new JSON, or None when dropped.
    """
    now = now or _now()
    targets = set(persons)
    if since is not None:
        targets.update(p for (p,) in query(cur, """
            SELECT DISTINCT p.person_id FROM records r JOIN person_records p USING (uid)
            WHERE r.updated_at >= ?""", [since]))
    if full:
        dropped = [p for (p,) in query(cur, """
            DELETE FROM person_golden WHERE person_id NOT IN
              (SELECT person_id FROM persons WHERE status = 'live') RETURNING person_id""")]
    else:
        dropped = []
    # Live persons without a golden record (a register made before golden records
    # existed, or a person whose refresh an earlier version skipped), in either mode.
    targets.update(p for (p,) in query(cur, """
        SELECT person_id FROM persons WHERE status = 'live'
          AND person_id NOT IN (SELECT person_id FROM person_golden)"""))
    if not targets:
        return dict.fromkeys(dropped)
    ids = sorted(targets)
    records = person_records_for_golden(cur, ids, members)
    if old is None:
        with _Staged(cur, "stage_golden_ids",
                     pa.table({"person_id": pa.array(ids, pa.string())})):
            old = dict(query(cur, "SELECT g.person_id, g.golden FROM person_golden g "
                                  "JOIN stage_golden_ids USING (person_id)"))
    changed: list[tuple[str, str, str]] = []  # (person, golden JSON, changed fields)
    gone: list[str] = []
    for pid in ids:
        recs = records.get(pid)
        if not recs:  # no records left: retired (or never had any)
            if pid in old:
                gone.append(pid)
            continue
        new = golden(recs)
        text = new.to_json()
        if old.get(pid) == text:
            continue
        before = GoldenRecord.from_json(old[pid]) if pid in old else GoldenRecord()
        fields = [f for f in ("given_name", "family_name", "father_name", "grandfather_name",
                              "sex", "birth_date", "national_ids", "phone", "region",
                              "commune", "village", "programmes")
                  if getattr(before, f) != getattr(new, f)]
        changed.append((pid, text, "golden record: " + (", ".join(fields) or "sources")))
    drop = [p for p, _, _ in changed if p in old] + gone
    if drop:
        with _Staged(cur, "stage_golden_drop", pa.table({"person_id": pa.array(drop,
                                                                               pa.string())})):
            cur.execute("DELETE FROM person_golden WHERE person_id IN "
                        "(SELECT person_id FROM stage_golden_drop)")
    if changed:
        with _Staged(cur, "stage_golden", pa.table({
                "ord": pa.array(range(len(changed)), pa.int64()),
                "person_id": pa.array([p for p, _, _ in changed], pa.string()),
                "golden": pa.array([g for _, g, _ in changed], pa.string()),
                "cause": pa.array([c for _, _, c in changed], pa.string())})):
            cur.execute("INSERT INTO person_golden SELECT person_id, golden, ? "
                        "FROM stage_golden", [now])
            cur.execute(f"""
                INSERT INTO person_events ({_EVENT_INSERT_COLUMNS}, golden)
                SELECT nextval('person_event_seq'), ?, ?, '{GOLDEN_CHANGED}', person_id,
                       NULL, NULL, cause, golden
                FROM (SELECT * FROM stage_golden ORDER BY ord)""", [run_id, now])
    out: dict[str, str | None] = dict.fromkeys([*dropped, *gone])
    out.update((p, g) for p, g, _ in changed)
    return out


def load_golden(cur: Cursor, person_ids: Sequence[str]) -> dict[str, GoldenRecord]:
    """The stored golden records of ``person_ids`` (persons without one are left out)."""
    if not person_ids:
        return {}
    try:
        rows = query(cur, "SELECT person_id, golden FROM person_golden "
                          "WHERE person_id IN (SELECT unnest(?::VARCHAR[]))",
                     [list(person_ids)])
    except duckdb.CatalogException:  # a register opened read-only from before golden records
        return {}
    return {p: GoldenRecord.from_json(g) for p, g in rows}


# ---------------------------------------------------------------------------------------
# Reviewer constraints
# ---------------------------------------------------------------------------------------


def add_constraint(cur: Cursor, uid_a: str, uid_b: str, kind: str, *, decided_by: str,
                   decided_at: dt.datetime | None = None,
                   decision_id: str | None = None) -> None:
    """Record a reviewer's must-link / cannot-link decision between two records.

    A pair is stored once, in either order; a new decision on it replaces the old one.
    Every later run applies it (:func:`load_constraints`).

    Raises:
        ValueError: an unknown kind, the same record twice, or no reviewer named.
        ConstraintConflict: the decision contradicts the recorded ones (a cannot-link
            between records joined by must-links); nothing is written.
    """
    if kind not in (MUST_LINK, CANNOT_LINK):
        raise ValueError(f"constraint kind must be {MUST_LINK!r} or {CANNOT_LINK!r}, "
                         f"not {kind!r}")
    if uid_a == uid_b:
        raise ValueError("a constraint needs two different records")
    if not decided_by or not decided_by.strip():
        raise ValueError("a constraint names who decided it")
    a, b = sorted((uid_a, uid_b))
    # A conflict is a cannot-link inside one must-link component, so only the constraints
    # among the records must-linked to a or b (transitively) can conflict with this one:
    # checking those keeps a decision's cost independent of how many were ever recorded.
    comp, frontier, near = {a, b}, [a, b], {}
    while frontier:  # usually one query: most records have no must-link yet
        for x, y, k in query(cur, "SELECT uid_a, uid_b, kind FROM constraints WHERE "
                                  "uid_a IN (SELECT unnest(?::VARCHAR[])) OR "
                                  "uid_b IN (SELECT unnest(?::VARCHAR[]))",
                             [frontier, frontier]):
            if (x, y) != (a, b):
                near[(x, y)] = k
        frontier = [u for (x, y), k in near.items() if k == MUST_LINK
                    for u in (x, y) if u not in comp]
        comp.update(frontier)
    rows = [(x, y, k) for (x, y), k in near.items() if x in comp and y in comp]
    rows.append((a, b, kind))
    must = [(x, y) for x, y, k in rows if k == MUST_LINK]
    cannot = [(x, y) for x, y, k in rows if k == CANNOT_LINK]
    recs = {r for x, y, _ in rows for r in (x, y)}
    try:
        apply_constraints(dict.fromkeys(recs, 0), must, cannot)
    except ConstraintConflict:
        raise ConstraintConflict(
            f"{kind} ({a!r}, {b!r}) contradicts the recorded constraints") from None
    cur.execute("INSERT OR REPLACE INTO constraints (uid_a, uid_b, kind, decided_by, "
                "decided_at, decision_id) VALUES (?, ?, ?, ?, ?, ?)",
                [a, b, kind, decided_by, decided_at or _now(), decision_id])


def remove_decision_constraints(cur: Cursor, decision_id: str) -> int:
    """Delete the constraints a review decision wrote (it is being revoked).

    Returns how many were deleted. A constraint a later decision has since replaced
    names that later decision and stays.
    """
    rows = query(cur, "SELECT count(*) FROM constraints WHERE decision_id = ?", [decision_id])
    cur.execute("DELETE FROM constraints WHERE decision_id = ?", [decision_id])
    return int(rows[0][0])


def constraint_partners(cur: Cursor, uids: Collection[str]
                        ) -> dict[str, tuple[set[str], set[str]]]:
    """uid -> (its must-link partners, its cannot-link partners), for ``uids`` only."""
    out: dict[str, tuple[set[str], set[str]]] = {}
    if not uids:
        return out
    rows = query(cur, """
        SELECT uid_a, uid_b, kind FROM constraints
        WHERE uid_a IN (SELECT unnest(?::VARCHAR[])) OR uid_b IN (SELECT unnest(?::VARCHAR[]))
        """, [list(uids)] * 2)
    wanted = set(uids)
    for a, b, kind in rows:
        for x, y in ((a, b), (b, a)):
            if x in wanted:
                must, cannot = out.setdefault(x, (set(), set()))
                (must if kind == MUST_LINK else cannot).add(y)
    return out


def load_constraints(cur: Cursor, live: Collection[str] | None = None) -> Constraints:
    """Reviewer decisions, limited to records that are still live (when ``live`` given)."""
    must, cannot = [], []
    rows = query(cur, "SELECT uid_a, uid_b, kind FROM constraints ORDER BY uid_a, uid_b")
    for a, b, kind in rows:
        if live is not None and (a not in live or b not in live):
            continue
        (must if kind == MUST_LINK else cannot).append((a, b))
    return Constraints(must_link=must, cannot_link=cannot)


# ---------------------------------------------------------------------------------------
# The review queue
# ---------------------------------------------------------------------------------------

#: Columns of a row given to :func:`add_review_items` (``item_id`` and ``seq`` are
#: issued here).
REVIEW_ITEM_COLUMNS = ("kind", "reasons", "uid_a", "uid_b", "person_id", "record_uids",
                       "match_probability", "priority", "evidence_hash", "programmes",
                       "area", "status", "created_at", "created_by", "sample_id", "stratum",
                       "linked_then")


def add_review_items(cur: Cursor, items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Queue review items (rows of :data:`REVIEW_ITEM_COLUMNS`); returns their IDs.

    The caller has already left out items whose evidence hash is queued
    (:func:`linkage.review.queue.new_items`). One statement for them all: a first run
    queues tens of thousands, and a statement per item took most of the run's review
    step. Each item still gets its own ``nextval``, in the given order.
    """
    if not items:
        return []
    ((seqs,),) = cur.execute(
        "SELECT list(s ORDER BY s) FROM (SELECT nextval('review_item_seq') AS s "
        "FROM range(?))", [len(items)]).fetchall()
    ids = [f"R{seq}" for seq in seqs]
    columns: dict[str, Any] = {"item_id": ids, "seq": seqs}
    columns.update({c: [it.get(c) for it in items] for c in REVIEW_ITEM_COLUMNS})
    cols = ", ".join(REVIEW_ITEM_COLUMNS)
    with _Staged(cur, "stage_review_items", pa.table(columns)):
        cur.execute(f"INSERT INTO review_items (item_id, seq, {cols}) "
                    f"SELECT item_id, seq, {cols} FROM stage_review_items")
    return ids


def set_review_status(cur: Cursor, item_ids: Collection[str], status: str) -> None:
    """Set the status of review items (``open``, ``deferred``, ``decided``, ``stale``)."""
    if item_ids:
        cur.execute("UPDATE review_items SET status = ? WHERE item_id IN "
                    "(SELECT unnest(?::VARCHAR[]))", [status, list(item_ids)])


def add_review_decision(cur: Cursor, *, decision_id: str, item_id: str, decision: str,
                        record_uid: str | None, reviewer: str, decided_at: dt.datetime,
                        comment: str | None, revokes: str | None,
                        constraints: Sequence[tuple[str, str, str]]) -> None:
    """Record a decision on a review item (never deleted: a later one revokes it)."""
    cur.execute("INSERT INTO review_decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [decision_id, item_id, decision, record_uid, reviewer, decided_at, comment,
                 revokes, json.dumps([list(c) for c in constraints])])


def add_review_view(cur: Cursor, item_id: str, viewer: str, surface: str,
                    now: dt.datetime | None = None) -> None:
    """Record that someone looked at an item (the audit trail)."""
    cur.execute("INSERT INTO review_views VALUES (?, ?, ?, ?)",
                [item_id, viewer, now or _now(), surface])


def add_review_sample(cur: Cursor, sample_id: str, created_by: str,
                      strata: Mapping[str, Any], now: dt.datetime | None = None) -> None:
    """Record a clerical sample's strata (population sizes, bounds) for the estimate."""
    cur.execute("INSERT INTO review_samples VALUES (?, ?, ?, ?)",
                [sample_id, now or _now(), created_by, json.dumps(strata)])


# ---------------------------------------------------------------------------------------
# The enrolment journal
# ---------------------------------------------------------------------------------------


def journal_enrolment(cur: Cursor, seq: int, uid: str, item_json: str, *,
                      now: dt.datetime | None = None) -> None:
    """Keep an enrolment answered QUEUED in ``enrol_queue`` until it is applied."""
    cur.execute("INSERT INTO enrol_queue VALUES (?, ?, ?, ?)",
                [seq, now or _now(), uid, item_json])


def journaled_enrolments(cur: Cursor) -> list[tuple[int, str]]:
    """``(seq, item JSON)`` of journaled enrolments, in submission order."""
    return query(cur, "SELECT seq, item FROM enrol_queue ORDER BY seq")


def drop_journaled(cur: Cursor, seqs: Iterable[int]) -> None:
    """Forget journaled enrolments (in the transaction that applies them)."""
    seqs = list(seqs)
    if seqs:
        cur.execute("DELETE FROM enrol_queue WHERE seq IN (SELECT unnest(?::BIGINT[]))", [seqs])


# ---------------------------------------------------------------------------------------
# API tokens and the audit log
# ---------------------------------------------------------------------------------------


def add_token(cur: Cursor, token_id: str, name: str, role: str, token_sha256: str, *,
              sources: Sequence[str] = (), programmes: Sequence[str] = (),
              now: dt.datetime | None = None) -> None:
    """Record an issued API token (its hash only)."""
    cur.execute("INSERT INTO api_tokens (token_id, name, role, token_sha256, sources, "
                "issued_at, revoked_at, programmes) VALUES (?, ?, ?, ?, ?, ?, NULL, ?)",
                [token_id, name, role, token_sha256,
                 json.dumps(sorted(sources)) if sources else None, now or _now(),
                 json.dumps(sorted(programmes)) if programmes else None])


def revoke_token(cur: Cursor, token_id: str, *, now: dt.datetime | None = None) -> bool:
    """Revoke a token; False when no live token has that ID."""
    (n,) = query(cur, "SELECT count(*) FROM api_tokens WHERE token_id = ? AND revoked_at IS NULL",
                 [token_id])[0]
    if n:
        cur.execute("UPDATE api_tokens SET revoked_at = ? WHERE token_id = ?",
                    [now or _now(), token_id])
    return bool(n)


def load_tokens(cur: Cursor) -> list[tuple]:
    """Every token row: (token_id, name, role, token_sha256, sources JSON, issued_at,
    revoked_at, programmes JSON), in issue order."""
    return query(cur, "SELECT token_id, name, role, token_sha256, sources, issued_at, "
                      "revoked_at, programmes FROM api_tokens ORDER BY issued_at, token_id")


AUDIT_COLUMNS = ("called_at", "client", "role", "method", "outcome", "person_ids", "record_keys",
                 "detail")


def append_audit(cur: Cursor, rows: Sequence[Sequence[Any]]) -> None:
    """Append audit rows (values in :data:`AUDIT_COLUMNS` order); never updates."""
    if rows:
        cur.executemany("INSERT INTO audit_log VALUES (nextval('audit_seq'), ?, ?, ?, ?, ?, ?, "
                        "?, ?)", [list(r) for r in rows])
