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
   this module's state, never in ``links``. Their connected components are the *near
   components*.
3. **Drift bound**: from the prior's change and the change of every term frequency
   (:meth:`Engine.term_frequencies`, the same formula as Splink's), the most the weight
   of a pair of unaffected records can have *risen* since it was last scored. While
   the drift accumulated since the last full run stays under ``MARGIN_BITS``, a pair of
   unaffected records that was not a near pair is still below the review threshold.
4. The run then scores, with Splink on the whole input (so with this run's prior and
   term frequencies, exactly as a full run), only the blocked pairs that touch an
   affected record or lie inside one near component (:data:`linkage.engines.common.RESTRICTION`).
   Every pair a full run would keep is among them, with the same weight; the rest of
   the run (clustering, persistent IDs, publishing) gets exactly a full run's input.

Otherwise, and whenever the state does not belong to the last published run, the model
or a setting that changes scores differs, or many records changed, the run is full and
says why. ``linkage run --full`` forces a full run.

The state lives beside the register (``<register>.incremental/``), written after the run
is committed; it names the run it belongs to, so a stale one is never used.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from linkage.engines import Engine
from linkage.engines.common import AFFECTED, NEAR
from linkage.matching.definition import KEY_CAPS
from linkage.matching.model import Model

#: How far below the review threshold (in match weight, bits) every run keeps pairs.
MARGIN_BITS = 2.0
#: Above this share of affected records an incremental run would save little: full.
MAX_AFFECTED_SHARE = 0.3
STATE_VERSION = 1
#: Engines whose restricted scoring a test has shown equal to a full run
#: (tests/test_incremental.py). The Spark engine implements ``restrict`` too, untested yet.
INCREMENTAL_ENGINES = ("duckdb",)


@dataclass
class Plan:
    """Which mode this run is in and why; for an incremental run, the marks to score by."""

    mode: str  # "full" | "incremental"
    reason: str
    marks: pa.Table | None = None
    affected: int = 0
    drift_bits: float = 0.0  # accumulated since the last full run, this run included
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        out = {"mode": self.mode, "reason": self.reason}
        if self.mode == "incremental":
            out.update(affected_records=self.affected, drift_bits=round(self.drift_bits, 4),
                       **self.details)
        return out


def state_dir(register: Path) -> Path:
    return register.with_name(register.name + ".incremental")


def weight(probability: float) -> float:
    """Match weight (log2 odds) of a match probability."""
    p = min(max(probability, 1e-300), 1 - 1e-16)
    return math.log2(p / (1 - p))


def near_threshold(review: float) -> float:
    """The match probability ``MARGIN_BITS`` below the review threshold."""
    w = weight(review) - MARGIN_BITS
    return 1 / (1 + 2 ** -w)


def fingerprint(project: Any, model: Model, engine: str) -> dict[str, Any]:
    """What must not change between two runs for the second to be incremental."""
    definition = project.definition  # the built-in one and the project's extra fields
    keys = hashlib.sha256(repr((sorted(definition.blocking_keys.items()),
                                sorted(KEY_CAPS.items()))).encode()).hexdigest()
    return {"version": STATE_VERSION, "model": model.sha256, "definition": definition.sha256,
            "blocking_keys": keys, "max_block_size": project.max_block_size,
            "review": project.thresholds.review, "margin_bits": MARGIN_BITS, "engine": engine}


def tf_columns(model: Model) -> dict[str, list[tuple[str, float]]]:
    """Per comparison, its term-frequency columns with their adjustment weights."""
    out: dict[str, list[tuple[str, float]]] = {}
    for comp in model.settings["comparisons"]:
        for lvl in comp["comparison_levels"]:
            col = lvl.get("tf_adjustment_column")
            if col:
                out.setdefault(comp["output_column_name"], []).append(
                    (col, float(lvl.get("tf_adjustment_weight", 1.0))))
    return out


def _read_state(register: Path) -> tuple[dict[str, Any], Path] | None:
    d = state_dir(register)
    try:
        return json.loads((d / "state.json").read_text(encoding="utf-8")), d
    except (OSError, ValueError):
        return None


def _tf_rise(old: pa.Table, new: pa.Table) -> float:
    """The most ``log2(tf_old / tf_new)`` over values in both: a weight's largest rise."""
    o = dict(zip(old.column("value").to_pylist(), old.column("tf").to_pylist(), strict=True))
    worst = 0.0
    for v, tf in zip(new.column("value").to_pylist(), new.column("tf").to_pylist(),
                     strict=True):
        before = o.get(v)
        if before:
            worst = max(worst, math.log2(before / tf))
    return worst


def _near_components(pairs: pa.Table, keep: set[str]) -> tuple[list[str], list[str]]:
    """Near components of the last run's near pairs between records in ``keep``.

    Returns (uid, label) lists; the label is the component's smallest uid.
    """
    from linkage.batch.clustering import _components

    left, right = pairs.column("uid_l").to_pylist(), pairs.column("uid_r").to_pylist()
    edges = [(a, b) for a, b in zip(left, right, strict=True) if a in keep and b in keep]
    uids = sorted({u for e in edges for u in e})
    index = {u: i for i, u in enumerate(uids)}
    comp = _components(len(uids), np.array([index[a] for a, _ in edges], dtype=np.int64),
                       np.array([index[b] for _, b in edges], dtype=np.int64))
    return uids, [uids[c] for c in comp]


def plan(project: Any, eng: Engine, model: Model, run_model: Model, *, engine: str,
         last_run_id: str | None, full: bool, retrain: bool) -> Plan:
    """Decide the run's mode; for an incremental run, mark the engine's loaded records.

    ``model`` is the project's model, ``run_model`` the same with this register's prior.
    """
    if full:
        return Plan("full", "--full given")
    if retrain:
        return Plan("full", "the model was retrained")
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
    hashes = eng.row_hashes()
    n = hashes.num_rows
    old = pq.read_table(d / "rows.parquet")
    before = dict(zip(old.column("uid").to_pylist(), old.column("row_hash").to_pylist(),
                      strict=True))
    uids = hashes.column("uid").to_pylist()
    affected = [before.get(u) != h for u, h in
                zip(uids, hashes.column("row_hash").to_pylist(), strict=True)]
    n_affected = sum(affected)
    if n and n_affected / n > MAX_AFFECTED_SHARE:
        return Plan("full", f"{n_affected:,} of {n:,} records new or changed "
                            f"(over {MAX_AFFECTED_SHARE:.0%})")
    # The most a pair of unaffected records can have gained: prior, then term frequencies.
    rise = weight(run_model.settings["probability_two_random_records_match"]) - weight(
        state["prior"])
    columns = tf_columns(model)
    tfs = eng.term_frequencies(sorted({c for cols in columns.values() for c, _ in cols}))
    per_column = {c: _tf_rise(pq.read_table(d / f"tf_{c}.parquet"), t) for c, t in tfs.items()}
    rise += sum(max(0.0, *(w * per_column[c] for c, w in cols)) for cols in columns.values())
    drift = float(state.get("drift_bits", 0.0)) + max(0.0, rise)
    if drift >= MARGIN_BITS:
        return Plan("full", f"weights of unchanged pairs may have risen by {drift:.2f} bits "
                            f"since the last full run (incremental up to {MARGIN_BITS} bits)")
    unaffected = {u for u, a in zip(uids, affected, strict=True) if not a}
    near_uids, near_labels = _near_components(pq.read_table(d / "near.parquet"), unaffected)
    label = dict(zip(near_uids, near_labels, strict=True))
    marks = pa.table({"uid": uids, AFFECTED: affected,
                      NEAR: pa.array([label.get(u) for u in uids], pa.string())})
    eng.restrict(marks)
    reason = (f"{n_affected:,} of {n:,} records new or changed since run {last_run_id}; "
              f"weights of unchanged pairs rose at most {drift:.3f} bits since the last "
              f"full run (< {MARGIN_BITS})")
    return Plan("incremental", reason, marks, n_affected, drift,
                {"near_components": len(set(near_labels)), "near_records": len(near_uids)})


@dataclass
class State:
    """This run's state, gathered while the engine is open, written once it is committed."""

    state: dict[str, Any]
    rows: pa.Table
    near: pa.Table
    tfs: dict[str, pa.Table]


def collect(project: Any, eng: Engine, model: Model, run_model: Model, near: pa.Table, *,
            engine: str, run_id: str, plan_: Plan) -> State:
    """This run's state: record hashes, near pairs, term frequencies, prior and drift."""
    rows = eng.row_hashes()
    columns = sorted({c for cols in tf_columns(model).values() for c, _ in cols})
    state = {"run_id": run_id, "fingerprint": fingerprint(project, model, engine),
             "prior": run_model.settings["probability_two_random_records_match"],
             "records": rows.num_rows,
             "drift_bits": plan_.drift_bits if plan_.mode == "incremental" else 0.0}
    return State(state, rows, near.select(["uid_l", "uid_r"]),
                 eng.term_frequencies(columns))


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


def review_links(near: pa.Table, review: float) -> pa.Table:
    """The near pairs at or above the review threshold: what the register keeps."""
    return near.filter(pc.greater_equal(near.column("match_probability"), review))
