"""Benchmark: accuracy, time and memory of our pipeline against a plain-Splink baseline.

Usage::

    python -m benchmarks.bench_accuracy --persons 100000 --profile sahel [--seed 11]
        [--realism normal|hard [--hard-without GROUP,...]] [--work DIR] [--skip-baseline]
        [--skip-careful] [--careful-u-max-pairs 1e7] [--train-on-register]
        [--no-breakdown] [--json]

Steps:

1. generate a fresh register with :func:`benchmarks.generate.generate` (seed 11 for
   sahel, 12 for horn by default: not the seeds the shipped models were trained on),
   pointing ``model:`` at the shipped model of the profile (``--train-on-register``: no
   ``model:``, so our run trains on the register itself), with ``--realism`` (``hard``:
   the features of :mod:`linkage.synthetic.hard`, less the ``--hard-without`` groups); an
   existing ``--work`` directory generated with the same persons, profile, seed and
   realism is reused (delete it after changing the generator), but its register is always
   deleted first;
2. run our batch, ``python -m linkage run``, in its own subprocess; its wall time and
   peak RSS (``wait4``) are measured, and the ingest part of the time is read from its
   progress lines;
3. export the record -> person mapping and score it against ``truth.csv``;
4. run :mod:`benchmarks.baseline` (plain Splink) in its own subprocess on the records the
   same ingest produced, measure it the same way, and score it;
5. run :mod:`benchmarks.careful_splink` (a careful plain-Splink set-up, issue 11) in its
   own subprocess on the generated register's raw source files (its own reading and
   standardisation; its time includes them), measure it the same way, and score it;
   then :func:`versus`: the true pairs it places together that ours does not, by why ours
   missed them, by the pair's date precision, by generator feature and by how the
   careful set-up split the names, and the false pairs of each system;
6. break down what our run missed (:func:`breakdown`): each true pair not placed together
   was never compared (no capped blocking key reaches it), compared and scored below the
   review threshold, or kept for review below the match threshold; per pair of sources
   and, for a hard register, per generator feature on either record (``features.csv``);
   and the false pairs placed together, same household or not.

Prints one row per system (seconds, peak MB, pairwise and B-cubed P/R/F1, % of true
persons merged with a relative) and the ratios ours / baseline. ``--json`` prints the
figures as JSON instead; they are also written to ``DIR/bench_accuracy.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = {"sahel": 11, "horn": 12}

__all__ = ["Measured", "run_measured", "run_ours", "run_plain", "run_careful", "versus",
           "format_table", "bench", "main"]


@dataclass
class Measured:
    """One subprocess: exit code, wall seconds, peak resident memory, output files."""

    cmd: list[str]
    returncode: int
    seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> Measured:
        """Raise with the tail of stderr when the process failed."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.splitlines()[-25:])
            raise RuntimeError(f"{' '.join(self.cmd)} exited {self.returncode}:\n{tail}")
        return self


def run_measured(cmd: list[str], log_prefix: Path) -> Measured:
    """Run ``cmd`` from the repository root; wall time and peak RSS of that process alone.

    The child is reaped with ``os.wait4`` so its own ``ru_maxrss`` is read (not the
    maximum over every child this process ever had). stdout / stderr go to
    ``<log_prefix>.out`` / ``.err``.
    """
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    return Measured(cmd=cmd, returncode=proc.returncode, seconds=round(seconds, 1),
                    peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
                    stdout=out_path.read_text(encoding="utf-8", errors="replace"),
                    stderr=err_path.read_text(encoding="utf-8", errors="replace"))


_PROGRESS = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")


def _stage_seconds(stderr: str) -> dict[str, float]:
    """Elapsed seconds at the pipeline's milestones, from its progress lines."""
    marks = {"ingested": "active records; preparing", "predicting": "predicting",
             "clustering": "clustering", "ids": "assigning persistent person IDs",
             "published": ": published"}
    out: dict[str, float] = {}
    for line in stderr.splitlines():
        m = _PROGRESS.match(line)
        if not m:
            continue
        for name, needle in marks.items():
            if needle in m.group(2) and name not in out:
                out[name] = float(m.group(1))
    return out


def fresh_register(project_yaml: Path) -> Path:
    """Delete the project's register (and trained model) so the run starts from nothing."""
    from linkage.config import load_project

    project = load_project(project_yaml)
    for p in (project.register, project.register.with_name(project.register.name + ".wal")):
        p.unlink(missing_ok=True)
    if project.model is None:
        shutil.rmtree(project_yaml.parent / "models", ignore_errors=True)
    return project.register


def run_ours(project_yaml: Path, work: Path, memory_limit: str = "4GB") -> Measured:
    """``linkage run`` in a subprocess, then export its mapping to ``work/ours_mapping.csv``."""
    from linkage.register.database import Register
    from linkage.register.export import export

    register = fresh_register(project_yaml)
    m = run_measured([sys.executable, "-m", "linkage", "run", "-p", str(project_yaml), "--json",
                      "--memory-limit", memory_limit], work / "logs" / "ours").check()
    summary = json.loads(m.stdout)
    m.extra["summary"] = summary
    m.extra["stages"] = _stage_seconds(m.stderr)
    m.extra["comparisons"] = summary.get("comparisons")
    m.extra["comparisons_by_rule"] = summary.get("comparisons_by_rule")
    reg = Register.open(register, read_only=True)
    try:
        export(reg, work / "ours_mapping.csv")
    finally:
        reg.close()
    m.extra["mapping"] = str(work / "ours_mapping.csv")
    return m


def clerical_threshold(project_yaml: Path, truth: Path, work: Path, per_stratum: int,
                       memory_limit: str, log: Any) -> dict[str, Any]:
    """The careful set-up's help, given to ours through the product's own tools: a
    clerical sample labelled from the truth (``benchmarks.clerical``), the threshold that
    ``linkage review estimate`` suggests, and a fresh run with it when it differs (fresh:
    the sample's decisions must not reach the scored run). ``rerun`` is (Measured, score)
    of that run, or None."""
    from benchmarks.clerical import at_suggested_threshold, oracle_estimate
    from linkage.config import load_project

    log(f"clerical sample ({per_stratum} pairs per stratum, labelled from the truth) ...")
    first = score_mapping(work / "ours_mapping.csv", truth)
    est = oracle_estimate(project_yaml, truth, per_stratum=per_stratum)
    best = est.suggested
    current = load_project(project_yaml).thresholds
    out: dict[str, Any] = {
        "labels": est.labels, "matches": est.matches,
        "by_threshold": [{"threshold": c.threshold, "f1": c.f1.estimate,
                          "precision": c.precision.estimate, "recall": c.recall.estimate}
                         for c in est.by_threshold],
        "threshold_before": current.match, "score_before": first,
        "threshold": current.match if best is None else best.threshold, "rerun": None}
    log(f"  {est.labels} labels; suggested match threshold {out['threshold']:g} "
        f"(project's {current.match:g})")
    chosen = at_suggested_threshold(project_yaml, est)
    if chosen is not None:
        log(f"running ours again with thresholds.match {out['threshold']:g} ...")
        rerun = run_ours(chosen, work, memory_limit)
        out["rerun"] = (rerun, score_mapping(Path(rerun.extra["mapping"]), truth))
        out["project"] = str(chosen)
    return out


def run_plain(register: Path, scheme: str, work: Path, *, recall: float = 0.7,
              max_comparisons: int | None = None,
              em_max_pairs: float | None = None) -> Measured:
    """:mod:`benchmarks.baseline` in a subprocess on ``register``'s active records."""
    stats_path = work / "baseline_stats.json"
    mapping = work / "baseline_mapping.csv"
    mapping.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.baseline", "--register", str(register),
           "--scheme", scheme, "--out", str(mapping), "--stats", str(stats_path),
           "--recall", str(recall)]
    if max_comparisons is not None:
        cmd += ["--max-comparisons", str(max_comparisons)]
    if em_max_pairs:
        cmd += ["--em-max-pairs", str(em_max_pairs)]
    m = run_measured(cmd, work / "logs" / "baseline").check()
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats.pop("model", None)
    m.extra["stats"] = stats
    m.extra["comparisons"] = stats.get("comparisons")
    if stats.get("status") == "ok":
        m.extra["mapping"] = str(mapping)
    return m


def run_careful(work: Path, *, u_max_pairs: float = 1e7,
                memory_limit: str = "4GB") -> Measured:
    """:mod:`benchmarks.careful_splink` in a subprocess on ``work``'s raw source files."""
    stats_path = work / "careful_stats.json"
    mapping = work / "careful_mapping.csv"
    mapping.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.careful_splink", "--dir", str(work),
           "--out", str(mapping), "--stats", str(stats_path),
           "--u-max-pairs", str(u_max_pairs), "--memory-limit", memory_limit]
    m = run_measured(cmd, work / "logs" / "careful").check()
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    m.extra["stats"] = stats
    m.extra["comparisons"] = stats.get("comparisons")
    m.extra["mapping"] = str(mapping)
    return m


def versus(work: Path, ours_pairs: Path, careful_mapping: Path) -> dict[str, Any]:
    """The true pairs the careful set-up places together and ours does not (and back).

    ``ours_pairs`` is :func:`breakdown`'s table of true pairs with our status. Counts are
    by our status (never compared, scored below review, ...), by the date precision of
    the pair in the careful set-up's standardisation (day / year / age / none on each
    side), by generator feature on either record, and by how the careful set-up split
    each side's name (``case``, ``frequency``, ``+swap``: a swap it detected); false pairs
    of each system, same household or not.
    """
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("SET enable_progress_bar = false")
        con.execute("CREATE TABLE tp AS SELECT * FROM read_parquet(?)", [str(ours_pairs)])
        con.execute("CREATE TABLE cm AS SELECT source || ':' || record_key AS uid, person_id "
                    "AS cluster FROM read_csv(?, all_varchar = true)", [str(careful_mapping)])
        con.execute("CREATE TABLE cr AS SELECT uid, coalesce(dob_prec, 'none') AS prec, "
                    "name_split FROM read_parquet(?)",
                    [str(careful_mapping.with_name("careful_records.parquet"))])
        features = work / "features.csv"
        if features.exists():
            con.execute("CREATE TABLE f AS SELECT DISTINCT source || ':' || record_key AS uid, "
                        "feature FROM read_csv(?, all_varchar = true)", [str(features)])
        else:
            con.execute("CREATE TABLE f (uid VARCHAR, feature VARCHAR)")
        con.execute("""
            CREATE TABLE pairs AS
            SELECT tp.a, tp.b, tp.status AS ours,
                   coalesce(ca.cluster = cb.cluster, false) AS careful,
                   least(pa.prec, pb.prec) || '/' || greatest(pa.prec, pb.prec) AS prec,
                   (pa.name_split LIKE '%swap%' OR pb.name_split LIKE '%swap%') AS swap_detected
            FROM tp LEFT JOIN cm ca ON ca.uid = tp.a LEFT JOIN cm cb ON cb.uid = tp.b
            LEFT JOIN cr pa ON pa.uid = tp.a LEFT JOIN cr pb ON pb.uid = tp.b""")

        def grouped(sql: str) -> dict[str, int]:
            return {str(k): int(n) for k, n in con.execute(sql).fetchall()}

        only_careful = "careful AND ours <> 'together'"
        only_ours = "NOT careful AND ours = 'together'"
        out: dict[str, Any] = {
            "true_pairs": int(con.execute("SELECT count(*) FROM pairs").fetchone()[0]),
            "both_found": int(con.execute("SELECT count(*) FROM pairs WHERE careful AND "
                                          "ours = 'together'").fetchone()[0]),
            "careful_only": int(con.execute(f"SELECT count(*) FROM pairs WHERE {only_careful}"
                                            ).fetchone()[0]),
            "ours_only": int(con.execute(f"SELECT count(*) FROM pairs WHERE {only_ours}"
                                         ).fetchone()[0]),
            "careful_only_by_our_status": grouped(
                f"SELECT ours, count(*) FROM pairs WHERE {only_careful} "
                "GROUP BY 1 ORDER BY 2 DESC"),
        }
        for label, cond in (("careful_only", only_careful), ("ours_only", only_ours)):
            out[f"{label}_by_date_precision"] = grouped(
                f"SELECT prec, count(*) FROM pairs WHERE {cond} GROUP BY 1 ORDER BY 2 DESC")
            out[f"{label}_by_feature"] = grouped(f"""
                SELECT coalesce(feature, '(no feature)'), count(*) FROM (
                    SELECT DISTINCT p.a, p.b, f.feature FROM pairs p
                    LEFT JOIN f ON f.uid IN (p.a, p.b) WHERE {cond}) GROUP BY 1 ORDER BY 2 DESC""")
            out[f"{label}_swap_detected_by_careful"] = int(con.execute(
                f"SELECT count(*) FROM pairs WHERE {cond} AND swap_detected").fetchone()[0])
        out["all_true_pairs_by_date_precision"] = grouped(
            "SELECT prec, count(*) FROM pairs GROUP BY 1 ORDER BY 2 DESC")
        out["careful_recall_by_date_precision"] = {
            str(k): round(float(v), 4) for k, v in con.execute(
                "SELECT prec, avg(careful::INT) FROM pairs GROUP BY 1 ORDER BY 1").fetchall()}
        out["ours_recall_by_date_precision"] = {
            str(k): round(float(v), 4) for k, v in con.execute(
                "SELECT prec, avg((ours = 'together')::INT) FROM pairs GROUP BY 1 ORDER BY 1"
            ).fetchall()}
        return out
    finally:
        con.close()


def format_versus(v: dict[str, Any]) -> str:
    """:func:`versus` as text."""
    def kv(d: dict[str, int], top: int = 12) -> str:
        return ", ".join(f"{k} {n:,}" for k, n in list(d.items())[:top])

    return "\n".join([
        f"true pairs {v['true_pairs']:,}: both systems {v['both_found']:,}, careful only "
        f"{v['careful_only']:,}, ours only {v['ours_only']:,}",
        "  careful only, why ours missed: " + kv(v["careful_only_by_our_status"]),
        "  careful only, date precision: " + kv(v["careful_only_by_date_precision"]),
        "  careful only, feature: " + kv(v["careful_only_by_feature"]),
        f"  careful only, a swap the careful set-up detected on a side: "
        f"{v['careful_only_swap_detected_by_careful']:,}",
        "  ours only, date precision: " + kv(v["ours_only_by_date_precision"]),
        "  ours only, feature: " + kv(v["ours_only_by_feature"]),
        "  recall by date precision, careful: " + kv(v["careful_recall_by_date_precision"]),
        "  recall by date precision, ours:    " + kv(v["ours_recall_by_date_precision"]),
    ])


def score_mapping(mapping: Path, truth_csv: Path) -> dict[str, Any]:
    """benchmarks.score on an exported mapping."""
    from benchmarks.score import load_predicted, load_truth, score

    truth, households, bad = load_truth(truth_csv)
    return score(load_predicted(mapping), truth, households, bad)


def breakdown(project_yaml: Path, truth_csv: Path, mapping_csv: Path,
              features_csv: Path | None = None,
              pairs_out: Path | None = None) -> dict[str, Any]:
    """Why true pairs were missed and what the false pairs are.

    A true pair (two good records of one person) the mapping does not place together is
    ``never_compared`` (no capped blocking key is shared: the batch never scored it),
    ``scored_below_review`` (compared, probability under the review threshold: not kept in
    ``links``), ``review_not_linked`` (kept for review, under the match threshold) or
    ``linked_but_split`` (the pair itself is linked; clustering put them apart). False
    pairs (placed together, two persons) are ``same_household`` or ``other``. Counts are
    given overall, per pair of sources and, with ``features_csv``, per generator feature
    present on either record (with that feature's true-pair total, so a miss rate reads
    off directly). ``pairs_out``: the true pairs with their status are written there
    (Parquet), for :func:`versus`.
    """
    from linkage.batch.pipeline import active_records
    from linkage.config import load_project
    from linkage.engines import duckdb_sql as engine
    from linkage.matching.model import BLOCKING_KEYS
    from linkage.register.database import Register

    project = load_project(project_yaml)
    reg = Register.open(project.register, read_only=True)
    try:
        cur = reg.cursor()
        records = active_records(cur)
        links = cur.sql("SELECT uid_l, uid_r, match_probability, linked FROM links"
                        ).to_arrow_table()
    finally:
        reg.close()
    con = engine.new_scratch()
    try:
        con.execute("SET enable_progress_bar = false")
        engine.prepare_input(con, records, project.max_block_size)
        con.register("links_arrow", links)
        con.execute("CREATE TEMP TABLE links AS SELECT least(uid_l, uid_r) AS a, "
                    "greatest(uid_l, uid_r) AS b, linked FROM links_arrow")
        con.execute(
            "CREATE TEMP TABLE truth AS SELECT source || ':' || record_key AS uid, source, "
            "person_id, household_id FROM read_csv(?, all_varchar = true) WHERE bad = 'false'",
            [str(truth_csv)])
        con.execute("CREATE TEMP TABLE mapping AS SELECT source || ':' || record_key AS uid, "
                    "person_id AS cluster FROM read_csv(?, all_varchar = true)",
                    [str(mapping_csv)])
        if features_csv is not None:
            con.execute("CREATE TEMP TABLE features AS SELECT DISTINCT source || ':' || "
                        "record_key AS uid, feature FROM read_csv(?, all_varchar = true)",
                        [str(features_csv)])
        else:
            con.execute("CREATE TEMP TABLE features (uid VARCHAR, feature VARCHAR)")
        reached = " OR ".join(f"coalesce(l.bk_{k} = r.bk_{k}, false)" for k in BLOCKING_KEYS)
        con.execute(f"""
            CREATE TEMP TABLE true_pairs AS
            SELECT ta.uid AS a, tb.uid AS b,
                   least(ta.source, tb.source) || ' - ' || greatest(ta.source, tb.source) AS pair,
                   coalesce(ma.cluster = mb.cluster, false) AS together,
                   CASE WHEN coalesce(ma.cluster = mb.cluster, false) THEN 'together'
                        WHEN NOT coalesce({reached}, false) THEN 'never_compared'
                        WHEN lk.a IS NULL THEN 'scored_below_review'
                        WHEN NOT lk.linked THEN 'review_not_linked'
                        ELSE 'linked_but_split' END AS status
            FROM truth ta JOIN truth tb ON ta.person_id = tb.person_id AND ta.uid < tb.uid
            LEFT JOIN mapping ma ON ma.uid = ta.uid LEFT JOIN mapping mb ON mb.uid = tb.uid
            LEFT JOIN linkage_input l ON l.uid = ta.uid
            LEFT JOIN linkage_input r ON r.uid = tb.uid
            LEFT JOIN links lk ON lk.a = ta.uid AND lk.b = tb.uid""")
        if pairs_out is not None:
            con.execute(f"COPY (SELECT a, b, status FROM true_pairs) TO '{pairs_out}' "
                        "(FORMAT parquet)")
        con.execute("""
            CREATE TEMP TABLE false_pairs AS
            SELECT ma.uid AS a, mb.uid AS b,
                   least(ta.source, tb.source) || ' - ' || greatest(ta.source, tb.source) AS pair,
                   CASE WHEN ta.household_id = tb.household_id THEN 'same_household'
                        ELSE 'other' END AS status
            FROM mapping ma JOIN mapping mb ON ma.cluster = mb.cluster AND ma.uid < mb.uid
            JOIN truth ta ON ta.uid = ma.uid JOIN truth tb ON tb.uid = mb.uid
            WHERE ta.person_id <> tb.person_id""")

        def counts(table: str, by: str | None = None) -> dict[str, dict[str, int]]:
            group = by or "'all'"
            rows = con.execute(f"SELECT {group} AS g, status, count(*) FROM {table} "
                               "GROUP BY ALL").fetchall()
            out: dict[str, dict[str, int]] = {}
            for g, status, n in rows:
                out.setdefault(g, {})[status] = int(n)
            return dict(sorted(out.items()))

        def by_feature(table: str) -> dict[str, dict[str, int]]:
            rows = con.execute(f"""
                WITH tagged AS (
                    SELECT p.a, p.b, p.status, f.feature FROM {table} p
                    JOIN features f ON f.uid = p.a
                    UNION
                    SELECT p.a, p.b, p.status, f.feature FROM {table} p
                    JOIN features f ON f.uid = p.b)
                SELECT feature, status, count(*) FROM tagged GROUP BY ALL""").fetchall()
            out: dict[str, dict[str, int]] = {}
            for g, status, n in rows:
                out.setdefault(g, {})[status] = int(n)
            rows = con.execute(f"""
                SELECT status, count(*) FROM {table} p
                WHERE NOT EXISTS (SELECT 1 FROM features f WHERE f.uid IN (p.a, p.b))
                GROUP BY ALL""").fetchall()
            if features_csv is not None:
                out["(no feature)"] = {status: int(n) for status, n in rows}
            return dict(sorted(out.items()))

        result: dict[str, Any] = {
            "true_pairs": counts("true_pairs").get("all", {}),
            "true_pairs_by_sources": counts("true_pairs", "pair"),
            "false_pairs": (counts("false_pairs").get("all", {})),
            "false_pairs_by_sources": counts("false_pairs", "pair"),
        }
        if features_csv is not None:
            result["true_pairs_by_feature"] = by_feature("true_pairs")
            result["false_pairs_by_feature"] = by_feature("false_pairs")
        return result
    finally:
        con.close()


_MISSED = ("never_compared", "scored_below_review", "review_not_linked", "linked_but_split")


def format_breakdown(b: dict[str, Any]) -> str:
    """The breakdown as text: missed true pairs by cause, false pairs by kind."""
    def line(name: str, c: dict[str, int], width: int = 40) -> str:
        total = sum(c.values())
        missed = sum(c.get(k, 0) for k in _MISSED)
        cells = "".join(f"{c.get(k, 0):>12,}" for k in _MISSED)
        pct = 100 * missed / total if total else 0.0
        return f"{name:<{width}}{total:>10,}{missed:>10,}{pct:>7.1f}%" + cells

    head = (f"{'true pairs':<40}{'total':>10}{'missed':>10}{'':>8}"
            + "".join(f"{k[:11]:>12}" for k in ("never cmp", "below rev", "review", "split")))
    lines = [head, line("all", b["true_pairs"])]
    lines += [line("  " + k, v) for k, v in b["true_pairs_by_sources"].items()]
    for k, v in b.get("true_pairs_by_feature", {}).items():
        lines.append(line("  feature " + k, v))
    fp = b["false_pairs"]
    lines.append(f"false pairs placed together: {sum(fp.values()):,} "
                 f"({fp.get('same_household', 0):,} same household, {fp.get('other', 0):,} other)")
    for k, v in b["false_pairs_by_sources"].items():
        lines.append(f"  {k:<38}{sum(v.values()):>10,} ({v.get('same_household', 0):,} household)")
    for k, v in b.get("false_pairs_by_feature", {}).items():
        lines.append(f"  feature {k:<30}{sum(v.values()):>10,} "
                     f"({v.get('same_household', 0):,} household)")
    return "\n".join(lines)


def _row(name: str, m: Measured | None, s: dict[str, Any] | None, note: str = "") -> str:
    if m is None:
        return f"{name:<16}{'(skipped)':>10}"
    head = f"{name:<16}{m.seconds:>9.1f}{m.peak_rss_mb:>10.0f}"
    if s is None:
        return head + f"   {note}"
    return head + (
        f"{s['pairwise_precision']:>9.4f}{s['pairwise_recall']:>9.4f}{s['pairwise_f1']:>9.4f}"
        f"{s['bcubed_precision']:>9.4f}{s['bcubed_recall']:>9.4f}{s['bcubed_f1']:>9.4f}"
        f"{s.get('household_merged_persons_pct', 0.0):>10.2f}"
    )


def format_table(rows: list[tuple[str, Measured | None, dict[str, Any] | None, str]]) -> str:
    """The comparison table: one row per system."""
    header = (f"{'system':<16}{'seconds':>9}{'peak MB':>10}{'pw P':>9}{'pw R':>9}{'pw F1':>9}"
              f"{'B3 P':>9}{'B3 R':>9}{'B3 F1':>9}{'% merged':>10}")
    return "\n".join([header, "-" * len(header), *(_row(*r) for r in rows)])


def ratios(ours: Measured, o: dict[str, Any], base: Measured | None,
           b: dict[str, Any] | None) -> dict[str, float | None]:
    """ours / baseline for F1 and time (None when the baseline did not run)."""
    if base is None or b is None:
        return {"pairwise_f1": None, "bcubed_f1": None, "seconds": None, "peak_rss": None}

    def div(x: float, y: float) -> float | None:
        return round(x / y, 3) if y else None

    return {"pairwise_f1": div(o["pairwise_f1"], b["pairwise_f1"]),
            "bcubed_f1": div(o["bcubed_f1"], b["bcubed_f1"]),
            "seconds": div(ours.seconds, base.seconds),
            "peak_rss": div(ours.peak_rss_mb, base.peak_rss_mb)}


def _prepare(persons: int, profile: str, seed: int, work: Path,
             realism: str = "normal", hard_without: tuple[str, ...] = (),
             train_on_register: bool = False) -> dict[str, Any]:
    from linkage.matching.model import SHIPPED_MODELS_DIR
    from linkage.synthetic.generate import generate

    model = None if train_on_register else (SHIPPED_MODELS_DIR / f"{profile}.json").resolve()
    manifest_path = work / "manifest.json"
    if manifest_path.exists() and (work / "project.yaml").exists():
        man = json.loads(manifest_path.read_text(encoding="utf-8"))
        same = ((man.get("persons"), man.get("profile"), man.get("seed"),
                 man.get("realism", "normal"), man.get("hard_without", []))
                == (persons, profile, seed, realism, sorted(hard_without)))
        text = (work / "project.yaml").read_text(encoding="utf-8")
        if same and (("model:" not in text) if model is None else (str(model) in text)):
            man["reused"] = True
            return man
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    man = generate(persons, profile, seed, work, model=model, realism=realism,
                   hard_without=hard_without)
    man["generate_seconds"] = round(time.perf_counter() - t0, 1)
    return man


def bench(persons: int, profile: str, seed: int, work: Path, *, skip_baseline: bool = False,
          recall: float = 0.7, max_comparisons: int | None = None,
          em_max_pairs: float | None = None, memory_limit: str = "4GB",
          realism: str = "normal", hard_without: tuple[str, ...] = (),
          with_breakdown: bool = True, skip_careful: bool = False,
          careful_u_max_pairs: float = 1e7, train_on_register: bool = False,
          clerical_per_stratum: int = 0, log: Any = print) -> dict[str, Any]:
    """Generate, run the three systems, score; returns every figure."""
    man = _prepare(persons, profile, seed, work, realism, hard_without, train_on_register)
    log(f"register: {man['records']:,} records of {persons:,} persons ({profile}, {realism}, "
        f"seed {seed})" + (" [reused data]" if man.get("reused") else ""))
    project_yaml = work / "project.yaml"
    truth = work / "truth.csv"
    log("running our pipeline (linkage run) ...")
    ours = run_ours(project_yaml, work, memory_limit)
    o = score_mapping(Path(ours.extra["mapping"]), truth)
    log(f"  {ours.seconds:.1f} s, {ours.peak_rss_mb:.0f} MB, {ours.extra['comparisons']:,} "
        "comparisons")
    clerical = None
    if clerical_per_stratum:
        clerical = clerical_threshold(project_yaml, truth, work, clerical_per_stratum,
                                      memory_limit, log)
        if clerical["rerun"] is not None:
            ours, o = clerical.pop("rerun")
            project_yaml = Path(clerical["project"])  # the breakdown reads its thresholds
        else:
            clerical.pop("rerun")
    missed = None
    if with_breakdown:
        log("breaking down what was missed ...")
        features = work / "features.csv"
        missed = breakdown(project_yaml, truth, Path(ours.extra["mapping"]),
                           features if features.exists() else None,
                           pairs_out=work / "true_pairs_ours.parquet")
    careful: Measured | None = None
    c: dict[str, Any] | None = None
    vs: dict[str, Any] | None = None
    if not skip_careful:
        log("running the careful Splink set-up (benchmarks.careful_splink) ...")
        careful = run_careful(work, u_max_pairs=careful_u_max_pairs, memory_limit=memory_limit)
        c = score_mapping(Path(careful.extra["mapping"]), truth)
        log(f"  {careful.seconds:.1f} s, {careful.peak_rss_mb:.0f} MB, "
            f"{careful.extra['comparisons']:,} comparisons, threshold "
            f"{careful.extra['stats']['threshold']:.3f}")
        if with_breakdown:
            vs = versus(work, work / "true_pairs_ours.parquet", Path(careful.extra["mapping"]))
    base: Measured | None = None
    b: dict[str, Any] | None = None
    if not skip_baseline:
        from linkage.config import load_project

        log("running the plain-Splink baseline ...")
        base = run_plain(load_project(project_yaml).register, profile, work, recall=recall,
                         max_comparisons=max_comparisons, em_max_pairs=em_max_pairs)
        if "mapping" in base.extra:
            b = score_mapping(Path(base.extra["mapping"]), truth)
        log(f"  {base.seconds:.1f} s, {base.peak_rss_mb:.0f} MB, "
            f"{base.extra['comparisons']:,} comparisons ({base.extra['stats']['status']})")
    result: dict[str, Any] = {
        "profile": profile, "realism": realism, "hard_without": sorted(hard_without),
        "persons": persons, "seed": seed,
        "records": man["records"], "work": str(work),
        "ours": {"seconds": ours.seconds, "peak_rss_mb": ours.peak_rss_mb,
                 "stages_elapsed": ours.extra["stages"],
                 "comparisons": ours.extra["comparisons"],
                 "comparisons_by_rule": ours.extra["comparisons_by_rule"],
                 "persons": ours.extra["summary"].get("persons"), "score": o,
                 "breakdown": missed},
        "trained_on_register": train_on_register,
        "clerical": clerical,
        "careful": None if careful is None else {
            "seconds": careful.seconds, "peak_rss_mb": careful.peak_rss_mb,
            "stats": careful.extra["stats"], "score": c, "versus_ours": vs},
        "baseline": None if base is None else {
            "seconds": base.seconds, "peak_rss_mb": base.peak_rss_mb,
            "stats": base.extra["stats"], "score": b},
        "ratios_ours_over_baseline": ratios(ours, o, base, b),
    }
    (work / "bench_accuracy.json").write_text(json.dumps(result, indent=2, default=str) + "\n",
                                              encoding="utf-8")
    return result


def report(result: dict[str, Any]) -> str:
    """The printed report of :func:`bench`'s result."""
    o = result["ours"]
    om = Measured([], 0, o["seconds"], o["peak_rss_mb"], "", "")
    rows: list[tuple[str, Measured | None, dict[str, Any] | None, str]] = []
    cl = result.get("clerical")
    if cl is not None:
        if cl["threshold"] != cl["threshold_before"]:
            rows.append((f"ours at {cl['threshold_before']:g}",
                         Measured([], 0, float("nan"), float("nan"), "", ""),
                         cl["score_before"], ""))
        rows.append((f"ours at {cl['threshold']:g}*", om, o["score"], ""))
    else:
        rows.append(("ours", om, o["score"], ""))
    b = result["baseline"]
    if b is None:
        rows.append(("plain Splink", None, None, ""))
    else:
        bm = Measured([], 0, b["seconds"], b["peak_rss_mb"], "", "")
        note = (f"not run: {b['stats']['comparisons']:,} comparisons > cap "
                f"{b['stats'].get('max_comparisons', 0):,}") if b["score"] is None else ""
        rows.append(("plain Splink", bm, b["score"], note))
    c = result.get("careful")
    if c is not None:
        cm = Measured([], 0, c["seconds"], c["peak_rss_mb"], "", "")
        rows.append(("careful Splink", cm, c["score"], ""))
    stages = o["stages_elapsed"]
    lines = [
        f"{result['profile']} ({result.get('realism', 'normal')}"
        + "".join(f" -{g}" for g in result.get("hard_without", [])) + f"): {result['persons']:,} "
        f"persons, {result['records']:,} records, seed {result['seed']}  ({result['work']})",
        "",
        format_table(rows),
        "",
        f"ours: {o['comparisons']:,} comparisons scored; {o['persons']:,} persons published; "
        f"ingest done at {stages.get('ingested', float('nan')):.1f} s of {o['seconds']:.1f} s",
        "  by rule: "
        + ", ".join(f"{k} {v:,}" for k, v in (o["comparisons_by_rule"] or {}).items()),
    ]
    if b is not None:
        st = b["stats"]
        lines.append(f"plain Splink: {st['comparisons']:,} comparisons "
                     f"({st['status']}, EM max_pairs {st.get('em_max_pairs')}); stages "
                     + ", ".join(
                         f"{k} {v:.1f}s" for k, v in st.get("stages_seconds", {}).items()))
        lines.append("  EM blocks: " + ", ".join(
            f"{k} {v:,}" for k, v in st.get("em_comparisons_by_rule", {}).items()))
    if c is not None:
        st = c["stats"]
        lines.append(f"careful Splink: {st['comparisons']:,} comparisons, threshold p = "
                     f"{st['threshold']:.3f} from a {st['clerical_sample']['sample_size']}-pair "
                     f"clerical sample, {st['links_at_threshold']:,} links; u from "
                     f"{st['u_max_pairs']:.0e} random pairs; stages "
                     + ", ".join(f"{k} {v:.1f}s" for k, v in st["stages_seconds"].items()))
    if cl is not None:
        lines.append(f"* ours: match threshold {cl['threshold']:g} suggested by "
                     f"`linkage review estimate` from a {cl['labels']}-pair clerical sample "
                     "labelled from the truth (the careful set-up's help, through our tools); "
                     "estimated F1 by threshold: " + ", ".join(
                         f"{c['threshold']:g} {c['f1']:.3f}" for c in cl["by_threshold"]))
    if o.get("breakdown"):
        lines += ["", format_breakdown(o["breakdown"])]
    if c is not None and c.get("versus_ours"):
        lines += ["", format_versus(c["versus_ours"])]
    r = result["ratios_ours_over_baseline"]
    if r["pairwise_f1"] is not None:
        lines.append(f"ours / baseline: pairwise F1 x{r['pairwise_f1']}, B-cubed F1 "
                     f"x{r['bcubed_f1']}, time x{r['seconds']}, peak memory x{r['peak_rss']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_accuracy",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--persons", type=int, default=100_000)
    ap.add_argument("--profile", choices=sorted(DEFAULT_SEEDS), default="sahel")
    ap.add_argument("--seed", type=int, default=None,
                    help="generator seed (default 11 for sahel, 12 for horn)")
    ap.add_argument("--realism", choices=("normal", "hard"), default="normal",
                    help="generator realism (hard: linkage.synthetic.hard)")
    ap.add_argument("--hard-without", default="",
                    help="with --realism hard: feature groups to leave out, comma-separated "
                         "(names, places, dates, parents, copies)")
    ap.add_argument("--no-breakdown", action="store_true",
                    help="skip the breakdown of missed and false pairs")
    ap.add_argument("--work", type=Path, default=None,
                    help="working directory (default data/bench/accuracy-PROFILE-PERSONS-sSEED)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--skip-careful", action="store_true",
                    help="skip the careful Splink set-up (benchmarks.careful_splink)")
    ap.add_argument("--careful-u-max-pairs", type=float, default=1e7,
                    help="careful set-up: random pairs for u (default 1e7)")
    ap.add_argument("--train-on-register", action="store_true",
                    help="no model: in the project: our run trains on the register itself")
    ap.add_argument("--clerical-per-stratum", type=int, default=0,
                    help="ours: label a clerical sample of this many pairs per stratum from "
                         "the truth and rerun at the threshold `linkage review estimate` "
                         "suggests (15 gives about 300 pairs, as the careful set-up's)")
    ap.add_argument("--recall", type=float, default=0.7,
                    help="baseline: assumed recall of the national-ID rule for the prior")
    ap.add_argument("--max-comparisons", type=int, default=None,
                    help="baseline: stop above this many comparisons (default 200M)")
    ap.add_argument("--em-max-pairs", type=float, default=2e7,
                    help="baseline: sample each EM block down to about this many pairs "
                         "(0: EM on every blocked pair; default 2e7)")
    ap.add_argument("--memory-limit", default="4GB", help="our run's scratch DuckDB limit")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    seed = DEFAULT_SEEDS[args.profile] if args.seed is None else args.seed
    without = tuple(sorted(g for g in args.hard_without.split(",") if g))
    suffix = "" if args.realism == "normal" else f"-{args.realism}"
    suffix += "".join(f"-no{g}" for g in without)
    suffix += "-trained" if args.train_on_register else ""
    work = (args.work or ROOT / "data" / "bench" /
            f"accuracy-{args.profile}-{args.persons}-s{seed}{suffix}").resolve()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = bench(args.persons, args.profile, seed, work, skip_baseline=args.skip_baseline,
                   recall=args.recall, max_comparisons=args.max_comparisons,
                   em_max_pairs=args.em_max_pairs or None, memory_limit=args.memory_limit,
                   realism=args.realism, hard_without=without,
                   with_breakdown=not args.no_breakdown, skip_careful=args.skip_careful,
                   careful_u_max_pairs=args.careful_u_max_pairs,
                   train_on_register=args.train_on_register,
                   clerical_per_stratum=args.clerical_per_stratum, log=log)
    print(json.dumps(result, indent=2, default=str) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
