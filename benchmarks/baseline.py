"""The *plain Splink* baseline: what an ordinary Splink user would run on the same records.

Usage::

    python -m benchmarks.baseline --register DIR/register.duckdb --scheme sahel \\
        --out baseline_mapping.csv [--stats baseline_stats.json]

Both systems read identical records: the baseline takes the register's ``records`` table
(status ``active``) after the project's own ingest, so parsing and rejects are the same.
From there it uses only what a Splink tutorial would:

* columns: the folded names (``given_std``, ``family_std``; ``father_std`` and
  ``grandfather_std`` for patronymic data), a birth-date string ``YYYY-MM-DD`` built
  from ``birth_year`` / ``birth_month`` / ``birth_day`` (``00`` for an unknown month or
  day, as the rosters write ``00/00/1980``), sex, village, commune and national ID;
* comparisons: ``JaroWinklerAtThresholds`` (0.9 / 0.7) on each name, ``ExactMatch`` on
  the rest; no transliteration keys, no term-frequency adjustment, no household logic;
* blocking: ``block_on`` of plain columns (see :func:`prediction_rules`);
* training, as in the Splink 4/5 tutorials: the prior from a deterministic rule on the
  national ID (``recall`` 0.7 unless told otherwise), u by random sampling, then EM on
  two blocking rules (``--em-max-pairs`` lets Splink sample each EM block: on 100k
  Sahel persons the ``given_std`` block alone holds 163M pairs, and EM over the 55M
  pairs of ``birth_year, sex`` took ten minutes on two cores);
* prediction at 0.9 and connected components at 0.9.

The comparison count is computed first (exactly, with Splink's blocking analysis); above
``--max-comparisons`` the baseline stops and reports the count instead of running.

Schemes: ``sahel`` (family names), ``horn`` (patronymic names), ``febrl`` (FEBRL data:
no sex, postcode in ``commune``, suburb in ``village``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import splink.comparison_library as cl
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

__all__ = [
    "SCHEMES",
    "detect_scheme",
    "load_records",
    "settings_for",
    "prediction_rules",
    "em_rules",
    "run_baseline",
    "write_mapping",
    "main",
]

SCHEMES = ("sahel", "horn", "febrl")
DEFAULT_MAX_COMPARISONS = 200_000_000
TABLE = "baseline_input"

_DOB_SQL = (
    "CASE WHEN birth_year IS NOT NULL THEN "
    "lpad(CAST(birth_year AS VARCHAR), 4, '0') || '-' || "
    "coalesce(lpad(CAST(birth_month AS VARCHAR), 2, '0'), '00') || '-' || "
    "coalesce(lpad(CAST(birth_day AS VARCHAR), 2, '0'), '00') END"
)

_COLUMNS = (
    "uid",
    "source",
    "record_key",
    "given_std",
    "family_std",
    "father_std",
    "grandfather_std",
    "sex",
    "birth_year",
    "national_id",
    "village",
    "commune",
)


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def load_records(con: duckdb.DuckDBPyConnection, register: Path | str) -> int:
    """Copy the register's active records into ``baseline_input``; returns the row count."""
    from linkage.register.database import Register

    reg = Register.open(Path(register), read_only=True)
    cur = reg.cursor()
    try:
        cols = ", ".join(_COLUMNS)
        table = cur.sql(
            f"SELECT {cols}, {_DOB_SQL} AS dob FROM records WHERE status = 'active' ORDER BY uid"
        ).to_arrow_table()
    finally:
        cur.close()
        reg.close()
    con.register("baseline_arrow", table)
    con.execute(f"CREATE OR REPLACE TABLE {TABLE} AS SELECT * FROM baseline_arrow")
    con.unregister("baseline_arrow")
    return table.num_rows


def detect_scheme(con: duckdb.DuckDBPyConnection) -> str:
    """``horn`` when father's names outnumber family names, else ``sahel``."""
    ((family, father),) = con.execute(
        f"SELECT count(family_std), count(father_std) FROM {TABLE}"
    ).fetchall()
    return "horn" if father > family else "sahel"


def settings_for(scheme: str) -> SettingsCreator:
    """Plain Splink settings for a scheme: JW on names, exact match on everything else."""
    if scheme == "horn":
        names = ["given_std", "father_std", "grandfather_std"]
    else:
        names = ["given_std", "family_std"]
    comparisons: list[Any] = [cl.JaroWinklerAtThresholds(c) for c in names]
    comparisons.append(cl.ExactMatch("dob"))
    if scheme != "febrl":  # FEBRL has no sex column
        comparisons.append(cl.ExactMatch("sex"))
    comparisons += [cl.ExactMatch(c) for c in ("village", "commune", "national_id")]
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="uid",
        comparisons=comparisons,
        blocking_rules_to_generate_predictions=prediction_rules(scheme),
        retain_intermediate_calculation_columns=False,
    )


def prediction_rules(scheme: str) -> list[Any]:
    """Ordinary blocking rules on plain columns."""
    if scheme == "horn":
        return [
            block_on("father_std", "birth_year"),
            block_on("given_std", "father_std"),
            block_on("national_id"),
        ]
    if scheme == "febrl":
        return [
            block_on("family_std", "dob"),
            block_on("given_std", "commune"),
            block_on("national_id"),
        ]
    return [
        block_on("family_std", "birth_year"),
        block_on("given_std", "family_std"),
        block_on("national_id"),
    ]


def em_rules(scheme: str) -> list[Any]:
    """EM training blocks: each leaves the other comparisons free to be estimated."""
    if scheme == "febrl":
        return [block_on("family_std"), block_on("dob")]
    return [block_on("birth_year", "sex"), block_on("given_std")]


def _marginal_counts(linker: Linker, rules: list[Any]) -> list[int]:
    recs = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        rules, record_sample_proportion=1.0
    )
    return [int(r["marginal_comparison_count"]) for r in recs]


def run_baseline(
    register: Path | str,
    scheme: str | None = None,
    *,
    threshold: float = 0.9,
    recall: float = 0.7,
    u_max_pairs: float = 5e6,
    em_max_pairs: float | None = None,
    seed: int = 42,
    max_comparisons: int = DEFAULT_MAX_COMPARISONS,
    memory_limit: str = "4GB",
) -> tuple[dict[str, Any], dict[str, tuple[str, str, str]]]:
    """Run the plain-Splink baseline on a register's active records.

    Args:
        register: the register file written by ``linkage run`` (opened read-only).
        scheme: ``sahel``, ``horn`` or ``febrl``; detected from the names when None.
        threshold: match probability for prediction and for connected components.
        recall: the recall assumed for the national-ID rule when estimating the prior.
        u_max_pairs: random pairs sampled to estimate u.
        em_max_pairs: when set, Splink samples each EM block down to about this many
            pairs (its ``max_pairs`` option); None runs EM on every blocked pair.
        seed: random-sampling seed.
        max_comparisons: stop (status ``too_many_comparisons``) above this many
            comparisons, for prediction or for either EM block.
        memory_limit: DuckDB memory limit (the pipeline's scratch database uses 4GB too).

    Returns:
        (stats, mapping): stats holds status, counts and per-stage seconds; mapping is
        uid -> (source, record_key, cluster id), empty unless status is ``ok``.
    """
    logging.getLogger("splink").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/baseline_spill'")
    n = load_records(con, register)
    scheme = scheme or detect_scheme(con)
    if scheme not in SCHEMES:
        raise ValueError(f"scheme: expected one of {', '.join(SCHEMES)}")
    stages["load"] = time.perf_counter() - t0
    stats: dict[str, Any] = {"scheme": scheme, "records": n, "threshold": threshold,
                             "prior_recall": recall, "em_max_pairs": em_max_pairs,
                             "stages_seconds": stages}

    db_api = DuckDBAPI(con)
    sdf = db_api.register(TABLE, table_name=f"{TABLE}_splink")
    linker = Linker(sdf, settings_for(scheme))

    t = time.perf_counter()
    rules = prediction_rules(scheme)
    by_rule = _marginal_counts(linker, rules)
    em_counts = [_marginal_counts(linker, [r])[0] for r in em_rules(scheme)]
    stages["count_comparisons"] = time.perf_counter() - t
    stats["comparisons_by_rule"] = {
        r.get_blocking_rule("duckdb").blocking_rule_sql: c
        for r, c in zip(rules, by_rule, strict=True)
    }
    stats["comparisons"] = sum(by_rule)
    stats["em_comparisons_by_rule"] = {
        r.get_blocking_rule("duckdb").blocking_rule_sql: c
        for r, c in zip(em_rules(scheme), em_counts, strict=True)
    }
    if stats["comparisons"] > max_comparisons or max(em_counts) > max_comparisons:
        stats["status"] = "too_many_comparisons"
        stats["max_comparisons"] = max_comparisons
        stats["seconds"] = round(time.perf_counter() - t0, 1)
        con.close()
        return stats, {}

    t = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match(
        [block_on("national_id")], recall=recall
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
    for rule in em_rules(scheme):
        linker.training.estimate_parameters_using_expectation_maximisation(
            rule, max_pairs=em_max_pairs)
    stages["train"] = time.perf_counter() - t

    t = time.perf_counter()
    df_predict = linker.inference.predict(threshold_match_probability=threshold)
    (n_pairs,) = con.execute(f"SELECT count(*) FROM {df_predict.physical_name}").fetchall()[0]
    stages["predict"] = time.perf_counter() - t
    stats["pairs_above_threshold"] = int(n_pairs)

    t = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        df_predict, threshold_match_probability=threshold
    )
    rows = con.execute(
        f"SELECT c.uid, i.source, i.record_key, CAST(c.cluster_id AS VARCHAR) "
        f"FROM {clusters.physical_name} c JOIN {TABLE} i USING (uid)"
    ).fetchall()
    stages["cluster"] = time.perf_counter() - t
    mapping = {uid: (src, key, cid) for uid, src, key, cid in rows}
    stats["clusters"] = len({cid for _, _, cid in mapping.values()})
    stats["model"] = linker.misc.save_model_to_json()
    stats["status"] = "ok"
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    con.close()
    return stats, mapping


def write_mapping(mapping: dict[str, tuple[str, str, str]], out: Path | str) -> int:
    """Write ``source,record_key,person_id`` (the format benchmarks.score reads)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "record_key", "person_id"])
        for src, key, cid in mapping.values():
            w.writerow([src, key, f"B{cid}"])
    return len(mapping)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; exit code 0 also when the baseline stopped on its comparison cap."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.baseline",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--register", required=True, help="register.duckdb after `linkage run`")
    ap.add_argument("--scheme", choices=SCHEMES, default=None, help="default: detected")
    ap.add_argument("--out", required=True, help="mapping CSV to write")
    ap.add_argument("--stats", help="write the stats (JSON) here")
    ap.add_argument("--threshold", type=float, default=0.9)
    ap.add_argument("--recall", type=float, default=0.7,
                    help="assumed recall of the national-ID rule for the prior")
    ap.add_argument("--max-comparisons", type=int, default=DEFAULT_MAX_COMPARISONS)
    ap.add_argument("--em-max-pairs", type=float, default=None,
                    help="sample each EM block down to about this many pairs (default: all)")
    ap.add_argument("--memory-limit", default="4GB")
    args = ap.parse_args(argv)
    stats, mapping = run_baseline(args.register, args.scheme, threshold=args.threshold,
                                  recall=args.recall, max_comparisons=args.max_comparisons,
                                  em_max_pairs=args.em_max_pairs,
                                  memory_limit=args.memory_limit)
    if mapping:
        write_mapping(mapping, args.out)
    stats["peak_rss_mb_self"] = _mb(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    text = json.dumps(stats, indent=2, default=str)
    if args.stats:
        Path(args.stats).write_text(text + "\n", encoding="utf-8")
    summary = {k: v for k, v in stats.items() if k != "model"}
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
