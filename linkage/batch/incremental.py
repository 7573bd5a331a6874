"""Incremental nightly runs: score only the pairs that can have changed, with the full run's result.

A full run scores every blocked pair. When one roster sent one percent new rows, almost
all of those pairs are what they were last night, except for two things that make every
weight depend on the whole register: the prior is rescaled to the register's size
(:meth:`linkage.matching.model.Model.for_register`) and term frequencies are counted
over all records. An incremental run is exact anyway:

1. **Affected records**: records new or changed since the last run, or whose capped
   blocking keys changed (a block crossing ``max_block_size`` either way adds or removes
   pairs of unchanged records), found by comparing each loaded record's hash of its
   standardised columns and capped keys (:meth:`Engine.row_hashes`) with last run's.
2. **Near pairs**: every run keeps the pairs scoring at least ``review - MARGIN_BITS``
   (in match weight), not only those at the review threshold; the extra ones stay in
   this module's state, never in ``links``.
3. **Drift bound**: from the prior's change and the change of every term frequency
   (:meth:`Engine.term_frequencies`, the same formula as Splink's), the most the weight
   of a pair of unaffected records can have *risen* since it was last scored. While
   the drift accumulated since the last full run stays under ``MARGIN_BITS``, a pair of
   unaffected records that was not a near pair of the last run is still below the
   review threshold: the last time it was scored (the last full run at the latest) it
   was under ``review - MARGIN_BITS`` (had it been above, it would have been a near
   pair then, and re-scored every night since), and it has risen by less than the
   margin since.
4. The run then scores, with Splink (with this run's prior and term frequencies,
   exactly as a full run), only the blocked pairs that touch an affected record, and
   the last run's near pairs between unaffected records. Every pair a full run would
   keep is among them, with the same weight; the rest of the run (clustering,
   persistent IDs, publishing) gets exactly a full run's input. On DuckDB those pairs
   are generated from the affected records and the near pairs outward, each under the
   rule Splink would give it, and handed to Splink as its blocked pairs
   (:func:`linkage.engines.duckdb_sql.register_restricted_pairs`), so neither blocking
   nor scoring goes through every block. Splink's own blocking cannot name pairs; the
   Spark engine scores every blocked pair inside one near component (the connected
   components of the near pairs, :data:`linkage.engines.common.RESTRICTION`): more
   pairs, as exact.

What a full run recounts is carried over instead, exactly:

* **Comparisons per rule** (the summary's blocking report): pairs between two
  unaffected records are last night's, under the same rule (their capped keys are in
  their hash). So this run's counts are last run's, minus last run's pairs touching a
  record that is no longer unaffected (counted on last run's keys, kept in the state),
  plus this run's pairs touching an affected record, counted off the pairs the run
  generates to score them (:func:`comparisons`).
* **Persistent IDs**: only the clusters that are not exactly one published person,
  with every record of the persons they touch, are reconciled
  (:func:`linkage.register.store.load_state_part`); reconciliation leaves every other
  cluster as it is, so the events and the state are a full reconciliation's.

Otherwise, and whenever the state does not belong to the last published run, the model
or a setting that changes scores differs, or many records changed, the run is full and
says why. ``linkage run --full`` forces a full run.

The state lives beside the register (``<register>.incremental/``), written after the run
is committed; it names the run it belongs to, so a stale one is never used. It holds
each record's hash with its capped keys (``rows.parquet``), the near pairs, the term
frequencies, and the prior, drift and comparisons per rule (``state.json``).

``tests/test_incremental.py`` runs night 2 (new rows, a corrected row, a merge and a
split) both ways and finds the same persons, links (bit-identical weights), IDs,
events and comparisons per rule.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.batch import ambiguity
from linkage.engines import Engine, common
from linkage.engines.common import AFFECTED, NEAR
from linkage.matching.definition import BLOCKING_KEYS, KEY_CAPS
from linkage.matching.model import Model

#: How far below the review threshold (in match weight, bits) every run keeps pairs.
MARGIN_BITS = 2.0
#: Above this share of affected records an incremental run would save little: full.
MAX_AFFECTED_SHARE = 0.3
#: 2: rows.parquet holds the capped keys, state.json the comparisons per rule.
STATE_VERSION = 2
#: Engines whose restricted scoring a test has shown equal to a full run
#: (tests/test_incremental.py on DuckDB, tests/test_spark.py on Spark).
INCREMENTAL_ENGINES = ("duckdb", "spark")


@dataclass
class Plan:
    """Which mode this run is in and why; for an incremental run, the marks to score by."""

    mode: str  # "full" | "incremental"
    reason: str
    marks: pa.Table | None = None
    affected: int = 0
    drift_bits: float = 0.0  # accumulated since the last full run, this run included
    details: dict[str, Any] = field(default_factory=dict)
    #: An incremental run's carried-over comparisons per rule, before tonight's pairs
    #: touching the changes are added (:func:`comparisons`; a full run counts its pairs).
    carried: dict[str, int] | None = None
    #: What this run did not redo, in words (the summary's ``skipped``).
    skipped: list[str] = field(default_factory=list)
    #: Work the plan did that :func:`collect` reuses: record hashes with keys, tf tables.
    rows: pa.Table | None = None
    tfs: dict[str, pa.Table] | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode, "reason": self.reason}
        if self.mode == "incremental":
            out.update(affected_records=self.affected, drift_bits=round(self.drift_bits, 4),
                       **self.details, skipped=list(self.skipped))
        return out


def state_dir(register: Path) -> Path:
    return register.with_name(register.name + ".incremental")


def weight(probability: float) -> float:
    """Match weight (log2 odds) of a match probability."""
    p = min(max(probability, 1e-300), 1 - 1e-16)
    return math.log2(p / (1 - p))


def floor(project: Any) -> float:
    """The lowest pairwise probability a run reads: the review threshold, or below it
    the ambiguity step's candidate floor (:data:`linkage.batch.ambiguity.CANDIDATE_P`)
    when that step runs. "Review" in this module's notes stands for this floor."""
    if project.ambiguity and project.clustering != "components":
        return ambiguity.candidate_floor(project.thresholds.review)
    return project.thresholds.review


def near_threshold(floor_p: float) -> float:
    """The match probability ``MARGIN_BITS`` below ``floor_p`` (:func:`floor`)."""
    w = weight(floor_p) - MARGIN_BITS
    return 1 / (1 + 2 ** -w)


def fingerprint(project: Any, model: Model, engine: str) -> dict[str, Any]:
    """What must not change between two runs for the second to be incremental."""
    definition = project.definition  # the built-in one and the project's extra fields
    keys = hashlib.sha256(repr((sorted(definition.blocking_keys.items()),
                                sorted(KEY_CAPS.items()))).encode()).hexdigest()
    return {"version": STATE_VERSION, "model": model.sha256, "definition": definition.sha256,
            "blocking_keys": keys, "max_block_size": project.max_block_size,
            "review": project.thresholds.review, "floor": floor(project),
            "margin_bits": MARGIN_BITS, "engine": engine}


def tf_columns(model: Model) -> dict[str, list[tuple[str, float]]]:
    """Per comparison, its term-frequency columns with their adjustment weights."""
    return common.tf_columns(model.settings)


def _read_state(register: Path) -> tuple[dict[str, Any], Path] | None:
    d = state_dir(register)
    try:
        return json.loads((d / "state.json").read_text(encoding="utf-8")), d
    except (OSError, ValueError):
        return None


def _read(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A state file. ``pq.ParquetFile``, not ``pq.read_table``: the latter imports
    ``pyarrow.dataset``, 2 s of every incremental run on this machine, for one file."""
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def _tf_rise(old: pa.Table, new: pa.Table) -> float:
    """The most ``log2(tf_old / tf_new)`` over values in both: a weight's largest rise."""
    both = new.join(old.rename_columns(["value", "tf_old"]), "value", join_type="inner")
    both = both.filter(pc.greater(both.column("tf_old"), 0))
    if both.num_rows == 0:
        return 0.0
    rise = pc.max(pc.log2(pc.divide(both.column("tf_old"), both.column("tf")))).as_py()
    return max(0.0, float(rise))


def _affected(rows: pa.Table, old: pa.Table) -> pa.ChunkedArray | pa.Array:
    """Per loaded record (in ``rows``' order): new, or its hash differs from last run's."""
    at = pc.index_in(rows.column("uid"), value_set=old.column("uid").combine_chunks())
    before = old.column("row_hash").combine_chunks().take(at)
    return pc.fill_null(pc.not_equal(rows.column("row_hash"), before), True)


def _near_components(pairs: pa.Table, keep: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Near components of the last run's near pairs between records in ``keep``.

    Returns (uids, labels), uids sorted; a label is its component's smallest uid.
    """
    from linkage.batch.clustering import _components

    inside = pc.and_(pc.is_in(pairs.column("uid_l"), value_set=keep),
                     pc.is_in(pairs.column("uid_r"), value_set=keep))
    pairs = pairs.filter(inside)
    left, right = (pairs.column(c).combine_chunks().cast(pa.string()) for c in ("uid_l", "uid_r"))
    uids = pc.unique(pa.concat_arrays([left, right]))
    uids = uids.take(pc.sort_indices(uids))
    # Indices follow the sorted uids, so a component's smallest index is its smallest uid.
    comp = _components(len(uids), pc.index_in(left, value_set=uids).to_numpy().astype(np.int64),
                       pc.index_in(right, value_set=uids).to_numpy().astype(np.int64))
    return uids, uids.take(pa.array(comp))


def comparisons_touching(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Per rule, the blocked pairs of ``table``'s records that touch a flagged one.

    ``table`` has ``uid``, the capped key columns and a boolean ``flag``. A pair counts
    under the first rule that blocks it, as Splink's blocked pairs do
    (:func:`linkage.engines.common.pairs_touching_sql`, the pairs an incremental run
    scores). Work is proportional to the flagged records' blocks, not to the register.
    """
    out: dict[str, int] = {}
    for rule, name in enumerate(BLOCKING_KEYS):
        ((n,),) = con.execute(f"SELECT count(*) FROM "
                              f"({common.pairs_touching_sql(table, 'flag', rule)})").fetchall()
        out[name] = int(n)
    return out


def _carried(before: dict[str, int], old_rows: Path, unaffected: pa.Array) -> dict[str, int]:
    """Last run's comparisons per rule, less its pairs touching a record that is no
    longer unaffected: the pairs between two unaffected records, still blocked tonight.

    Records unaffected by the run have the same capped keys as last night (their hash
    covers them), so the pairs between two of them, and the rule generating each, are
    last night's. Last night's pairs touching any other record (changed, now capped or
    uncapped, vanished) are counted on last night's keys and taken off; tonight's pairs
    touching an affected record are added by :func:`comparisons`.
    """
    con = duckdb.connect()
    try:
        con.register("linkage_unaffected", pa.table({"uid": unaffected}))
        con.execute(f"""
            CREATE TEMP TABLE linkage_last AS
            SELECT uid, {', '.join(common.key_columns())},
                   uid NOT IN (SELECT uid FROM linkage_unaffected) AS flag
            FROM read_parquet('{old_rows.as_posix()}')""")
        gone = comparisons_touching(con, "linkage_last")
    finally:
        con.close()
    return {k: before[k] - gone[k] for k in BLOCKING_KEYS}


def comparisons(plan_: Plan, eng: Engine) -> dict[str, int]:
    """An incremental run's comparisons per rule (after :meth:`Engine.use_model`).

    The carried-over pairs (:func:`_carried`) plus tonight's pairs touching an affected
    record: counted off the pairs the engine generated to score when it can name them
    (DuckDB: ``touching_counts``, the same SQL), otherwise counted here on tonight's
    keys (:func:`comparisons_touching`).
    """
    if plan_.carried is None or plan_.rows is None or plan_.marks is None:
        raise ValueError("only an incremental plan carries comparisons over")
    touching = getattr(eng, "touching_counts", None)
    came = touching() if touching is not None else None
    if came is None:
        con = duckdb.connect()
        try:
            con.register("linkage_tonight", plan_.rows.select(["uid", *common.key_columns()])
                         .append_column("flag", plan_.marks.column(AFFECTED)))
            came = comparisons_touching(con, "linkage_tonight")
        finally:
            con.close()
    return {k: plan_.carried[k] + came[k] for k in BLOCKING_KEYS}


def plan(project: Any, eng: Engine, model: Model, run_model: Model, *, engine: str,
         last_run_id: str | None, full: bool, retrain: bool) -> Plan:
    """Decide the run's mode; for an incremental run, mark the engine's loaded records.

    ``model`` is the project's model, ``run_model`` the same with this register's prior.
    Everything here is vectorised (Arrow, SQL): its cost follows the register's size
    with a small constant, and the changes' size for the blocking counts.
    """
    if full:
        return Plan("full", "--full given")
    if retrain:
        return Plan("full", "the model was retrained")
    if set(project.definition.blocking_keys) != set(BLOCKING_KEYS):
        # The restricted pairs and carried-over counts are generated per built-in key.
        return Plan("full", "the project blocks on extra fields: incremental runs do not "
                            "cover extra-field blocking keys yet")
    if engine not in INCREMENTAL_ENGINES:
        return Plan("full", f"incremental runs are verified on {', '.join(INCREMENTAL_ENGINES)} "
                            f"only, not yet on {engine}")
    read = _read_state(project.register)
    if read is None:
        return Plan("full", "no incremental state from an earlier run")
    state, d = read
    if last_run_id is None or state.get("run_id") != last_run_id:
        return Plan("full", f"the incremental state belongs to run {state.get('run_id')}, "
                            f"not to the last published run {last_run_id}")
    wanted = fingerprint(project, model, engine)
    changed = sorted(k for k in wanted if state.get("fingerprint", {}).get(k) != wanted[k])
    if changed:
        return Plan("full", f"changed since run {last_run_id}: {', '.join(changed)}")
    rows = eng.row_hashes()
    n = rows.num_rows
    old = _read(d / "rows.parquet", ["uid", "row_hash"])
    affected = _affected(rows, old)
    n_affected = int(pc.sum(affected).as_py() or 0)
    if n and n_affected / n > MAX_AFFECTED_SHARE:
        return Plan("full", f"{n_affected:,} of {n:,} records new or changed "
                            f"(over {MAX_AFFECTED_SHARE:.0%})", rows=rows)
    # The most a pair of unaffected records can have gained: prior, then term frequencies.
    rise = weight(run_model.settings["probability_two_random_records_match"]) - weight(
        state["prior"])
    columns = tf_columns(model)
    tfs = eng.term_frequencies(sorted({c for cols in columns.values() for c, _ in cols}))
    per_column = {c: _tf_rise(_read(d / f"tf_{c}.parquet"), t) for c, t in tfs.items()}
    rise += sum(max(0.0, *(w * per_column[c] for c, w in cols)) for cols in columns.values())
    drift = float(state.get("drift_bits", 0.0)) + max(0.0, rise)
    if drift >= MARGIN_BITS:
        return Plan("full", f"weights of unchanged pairs may have risen by {drift:.2f} bits "
                            f"since the last full run (incremental up to {MARGIN_BITS} bits)",
                    rows=rows, tfs=tfs)
    uids = rows.column("uid").combine_chunks()
    unaffected = pc.filter(uids, pc.invert(affected))
    if isinstance(unaffected, pa.ChunkedArray):
        unaffected = unaffected.combine_chunks()
    near_pairs = _read(d / "near.parquet")
    near_uids, near_labels = _near_components(near_pairs, unaffected)
    label = near_labels.take(pc.index_in(uids, value_set=near_uids))
    marks = pa.table({"uid": uids, AFFECTED: affected, NEAR: label})
    carried = _carried(state["comparisons_by_rule"], d / "rows.parquet", unaffected)
    kept = pc.and_(pc.is_in(near_pairs.column("uid_l"), value_set=unaffected),
                   pc.is_in(near_pairs.column("uid_r"), value_set=unaffected))
    eng.restrict(marks, near_pairs.filter(kept))
    n_near = len(pc.unique(near_labels)) if len(near_labels) else 0
    reason = (f"{n_affected:,} of {n:,} records new or changed since run {last_run_id}; "
              f"weights of unchanged pairs rose at most {drift:.3f} bits since the last "
              f"full run (< {MARGIN_BITS})")
    skipped = [
        "the blocking analysis over every block (counts carried over from the last run, "
        "corrected by the pairs touching the changed records)",
        f"scoring the pairs between the {n - n_affected:,} unchanged records, except the "
        f"{len(near_uids):,} records near the review threshold",
    ]
    return Plan("incremental", reason, marks, n_affected, drift,
                {"near_components": n_near, "near_records": len(near_uids)},
                carried=carried, skipped=skipped, rows=rows, tfs=tfs)


@dataclass
class State:
    """This run's state, gathered while the engine is open, written once it is committed."""

    state: dict[str, Any]
    rows: pa.Table
    near: pa.Table
    tfs: dict[str, pa.Table]


def collect(project: Any, eng: Engine, model: Model, run_model: Model, near: pa.Table, *,
            engine: str, run_id: str, plan_: Plan, comparisons_by_rule: dict[str, int]
            ) -> State:
    """This run's state: record hashes with their capped keys, near pairs, term
    frequencies, comparisons per rule, prior and drift (what the plan computed is reused)."""
    rows = plan_.rows if plan_.rows is not None else eng.row_hashes()
    columns = sorted({c for cols in tf_columns(model).values() for c, _ in cols})
    tfs = plan_.tfs if plan_.tfs is not None else eng.term_frequencies(columns)
    state = {"run_id": run_id, "fingerprint": fingerprint(project, model, engine),
             "prior": run_model.settings["probability_two_random_records_match"],
             "records": rows.num_rows, "comparisons_by_rule": dict(comparisons_by_rule),
             "drift_bits": plan_.drift_bits if plan_.mode == "incremental" else 0.0}
    return State(state, rows, near.select(["uid_l", "uid_r"]), tfs)


def save(register: Path, st: State) -> Path:
    """Write the state beside the register (after the run is committed).

    Written to a new directory, then swapped in: a crash leaves no half-written state,
    and one left behind names an older run, so the next run is full.
    """
    d = state_dir(register)
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pq.write_table(st.rows, tmp / "rows.parquet")
    pq.write_table(st.near, tmp / "near.parquet")
    for c, t in st.tfs.items():
        pq.write_table(t, tmp / f"tf_{c}.parquet")
    (tmp / "state.json").write_text(json.dumps(st.state, indent=2), encoding="utf-8")
    old = d.with_name(d.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if d.exists():
        d.rename(old)
    tmp.rename(d)
    shutil.rmtree(old, ignore_errors=True)
    return d


def candidate_links(near: pa.Table, floor_p: float) -> pa.Table:
    """The near pairs at or above ``floor_p`` (:func:`floor`): what clustering reads."""
    return near.filter(pc.greater_equal(near.column("match_probability"), floor_p))
