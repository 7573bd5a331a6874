"""The figures of the run report, read from the register."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from linkage.errors import NotReady
from linkage.matching.model import Model
from linkage.realtime.index import Index
from linkage.register.database import query
from linkage.review import accuracy

Cursor = duckdb.DuckDBPyConnection

#: Records whose compared pairs make the match-weight histogram (all, when fewer).
HISTOGRAM_RECORDS = 3000
HISTOGRAM_BIN = 1.0  # bits


@dataclass
class SourceFigures:
    name: str
    kind: str
    programme: str
    records: int = 0
    rejected: int = 0
    warnings: int = 0
    persons: int = 0
    persons_with_duplicates: int = 0
    duplicate_records: int = 0


@dataclass
class ReportData:
    run: dict[str, Any]
    sources: list[SourceFigures]
    reject_reasons: dict[str, list[tuple[str, int]]]
    warning_reasons: dict[str, list[tuple[str, int]]]
    overlap: dict[str, dict[str, int]]  # every source, civil registry included
    persons: int
    persons_in_several_sources: int
    histogram: list[tuple[float, float, float]]  # (low, high, pairs) of compared pairs
    histogram_note: str
    levels: list[dict[str, Any]]  # comparison, level, m, u, weight
    blocking: dict[str, int]
    capped: dict[str, int]
    id_events: dict[str, int]  # kind -> events of the last run
    review: dict[str, Any]
    thresholds: dict[str, float]
    estimate: accuracy.Estimate | None = None
    refused: dict[str, int] = field(default_factory=dict)


def _last_run(cur: Cursor) -> tuple[str, dict[str, Any], str | None]:
    rows = query(cur, "SELECT r.run_id, r.summary, m.model_json FROM runs r LEFT JOIN "
                      "model_versions m ON m.version = r.model_version "
                      "WHERE r.status = 'published' ORDER BY r.finished_at DESC LIMIT 1")
    if not rows:
        raise NotReady("no published run yet: run `linkage run`")
    run_id, summary, model_json = rows[0]
    return run_id, json.loads(summary), model_json


def source_figures(cur: Cursor, summary: dict[str, Any]) -> list[SourceFigures]:
    out = []
    for name, kind, programme in query(cur, "SELECT name, kind, programme FROM sources "
                                            "ORDER BY kind, name"):
        s = summary.get("sources", {}).get(name, {})
        out.append(SourceFigures(name, kind, programme, **{k: int(s.get(k, 0)) for k in (
            "records", "rejected", "warnings", "persons", "persons_with_duplicates",
            "duplicate_records")}))
    return out


def reasons(cur: Cursor, table: str) -> dict[str, list[tuple[str, int]]]:
    """Reasons of the rejects (or field warnings) of each source's current files."""
    out: dict[str, list[tuple[str, int]]] = {}
    for source, reason, n in query(cur, f"""
            SELECT j.source, j.reason, count(*) FROM {table} j JOIN source_files f
              ON f.source = j.source AND f.sha256 = j.file_sha256
            GROUP BY ALL ORDER BY j.source, count(*) DESC, j.reason"""):
        out.setdefault(source, []).append((reason, int(n)))
    return out


def overlap(cur: Cursor) -> tuple[dict[str, dict[str, int]], int]:
    """Persons with records in both sources, for every pair of sources (the diagonal:
    persons in the source), and persons in two sources or more. A civil registry counts
    as a source like any other."""
    names = [n for (n,) in query(cur, "SELECT name FROM sources ORDER BY kind DESC, name")]
    m = {a: dict.fromkeys(names, 0) for a in names}
    for a, b, n in query(cur, """
            WITH pp AS (SELECT DISTINCT p.person_id, r.source FROM person_records p
                        JOIN records r USING (uid))
            SELECT x.source, y.source, count(*) FROM pp x JOIN pp y USING (person_id)
            GROUP BY ALL"""):
        if a in m and b in m:
            m[a][b] = int(n)
    (multi,) = query(cur, """
        SELECT count(*) FROM (SELECT p.person_id FROM person_records p JOIN records r
        USING (uid) GROUP BY p.person_id HAVING count(DISTINCT r.source) > 1)""")[0]
    return m, int(multi)


def level_parameters(model: Model) -> list[dict[str, Any]]:
    out = []
    for comp, levels in model.level_parameters().items():
        for i, lvl in enumerate(levels):
            m, u = lvl["m"], lvl["u"]
            w = float(np.log2(m / u)) if m and u else None
            out.append({"comparison": comp, "order": i, "level": lvl["label"], "m": m, "u": u,
                        "weight": w})
    return out


def histogram(index: Index, *, records: int = HISTOGRAM_RECORDS
              ) -> tuple[list[tuple[float, float, float]], str]:
    """Match weights of the compared pairs (those of a record sample, scaled)."""
    pop = accuracy.enumerate_pairs(index, record_sample=records,
                                   rng=np.random.default_rng(0))
    if len(pop.prob) == 0:
        return [], "no compared pairs"
    p = np.clip(pop.prob, 1e-15, 1 - 1e-15)
    w = np.log2(p / (1 - p))
    lo = np.floor(w / HISTOGRAM_BIN) * HISTOGRAM_BIN
    bins, counts = np.unique(lo, return_counts=True)
    hist = [(float(b), float(b + HISTOGRAM_BIN), float(c * pop.scale))
            for b, c in zip(bins, counts, strict=True)]
    note = (f"every pair that blocking compares ({len(pop.prob):,} pairs)"
            if pop.records_sampled == pop.records else
            f"pairs compared from {pop.records_sampled:,} of {pop.records:,} records drawn at "
            f"random, scaled to the register ({sum(c for *_, c in hist):,.0f} pairs)")
    return hist, note


def review_figures(cur: Cursor, thresholds: dict[str, float]) -> dict[str, Any]:
    by = [(k, s, int(n)) for k, s, n in query(
        cur, "SELECT kind, status, count(*) FROM review_items GROUP BY ALL ORDER BY ALL")]
    reasons_ = [(r, int(n)) for r, n in query(cur, """
        SELECT reason, count(*) FROM (SELECT unnest(string_split(reasons, ',')) AS reason
        FROM review_items WHERE status = 'open') GROUP BY ALL ORDER BY 2 DESC, 1""")]
    band = [float(p) for (p,) in query(cur, "SELECT match_probability FROM links "
                                            "WHERE NOT linked")]
    (decisions,) = query(cur, "SELECT count(*) FROM review_decisions")[0]
    return {"by_kind_status": by, "open_reasons": reasons_, "band": band,
            "decisions": int(decisions)}


def collect(cur: Cursor, project: Any, index: Index | None = None) -> ReportData:
    """Every figure of the report on the last published run.

    Raises:
        NotReady: no published run.
    """
    run_id, summary, model_json = _last_run(cur)
    model = Model.from_json(model_json, f"model of {run_id}") if model_json else None
    if index is None and model is not None:
        index = Index.build(cur, model, max_block_size=project.max_block_size)
    hist, note = histogram(index) if index is not None else ([], "no model")
    ov, multi = overlap(cur)
    (n_persons,) = query(cur, "SELECT count(*) FROM persons WHERE status = 'live'")[0]
    thresholds = {"match": project.thresholds.match, "review": project.thresholds.review,
                  "one_to_one": project.thresholds.one_to_one_match}
    est = None
    sid = accuracy.last_sample(cur)
    if sid is not None:
        est = accuracy.estimate(cur, sid)
    events = {k: int(n) for k, n in query(
        cur, "SELECT kind, count(*) FROM person_events WHERE run_id = ? GROUP BY ALL "
             "ORDER BY 1", [run_id])}
    return ReportData(
        run={"run_id": run_id, "model_version": summary.get("model_version"),
             "started_at": summary.get("started_at"), "seconds": summary.get("seconds"),
             "clustering": summary.get("clustering"),
             "comparisons": summary.get("comparisons", 0)},
        sources=source_figures(cur, summary), reject_reasons=reasons(cur, "rejects"),
        warning_reasons=reasons(cur, "field_warnings"), overlap=ov, persons=int(n_persons),
        persons_in_several_sources=multi, histogram=hist, histogram_note=note,
        levels=level_parameters(model) if model else [],
        blocking=dict(summary.get("comparisons_by_rule", {})),
        capped=dict(summary.get("capped_records_by_rule", {})),
        id_events=events or dict(summary.get("id_changes", {})),
        review=review_figures(cur, thresholds), thresholds=thresholds, estimate=est,
        refused=dict(summary.get("refused_merges") or {}))
