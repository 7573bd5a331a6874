"""Blocking recall: the share of true pairs that at least one capped blocking key reaches.

Usage::

    python -m benchmarks.blocking_recall --project DIR/project.yaml --truth DIR/truth.csv

Reads the active records of the project's register (run ``linkage run`` first), builds the
same capped ``bk_*`` keys as the batch (:func:`linkage.engine.prepare_input`), and counts
true pairs (same person in ``truth.csv``) sharing at least one key, overall and per key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from linkage import engine
from linkage.config import load_project
from linkage.model import BLOCKING_KEYS
from linkage.pipeline import active_records
from linkage.register import Register


def blocking_recall(project_path: Path, truth_path: Path) -> dict[str, float | int]:
    """True pairs within reach of the capped blocking keys."""
    project = load_project(project_path)
    reg = Register.open(project.register, read_only=True)
    cur = reg.cursor()
    records = active_records(cur)
    reg.close()
    con = engine.new_scratch()
    report = engine.prepare_input(con, records, project.max_block_size)
    con.execute(
        "CREATE TABLE truth AS SELECT source || ':' || record_key AS uid, person_id "
        "FROM read_csv(?, all_varchar = true) WHERE bad = 'false'", [str(truth_path)])
    reached = " OR ".join(f"coalesce(l.bk_{k} = r.bk_{k}, false)" for k in BLOCKING_KEYS)
    per_key = ", ".join(f"sum(CASE WHEN l.bk_{k} = r.bk_{k} THEN 1 ELSE 0 END)"
                        for k in BLOCKING_KEYS)
    row = con.execute(f"""
        WITH pairs AS (SELECT a.uid AS ua, b.uid AS ub FROM truth a JOIN truth b
                       ON a.person_id = b.person_id AND a.uid < b.uid)
        SELECT count(*), sum(CASE WHEN {reached} THEN 1 ELSE 0 END), {per_key}
        FROM pairs p JOIN linkage_input l ON l.uid = p.ua JOIN linkage_input r
          ON r.uid = p.ub""").fetchall()[0]
    con.close()
    total, within = int(row[0]), int(row[1] or 0)
    out: dict[str, float | int] = {"true_pairs": total, "within_reach": within,
                                   "recall": within / total if total else 1.0,
                                   "block_cap": report.max_block_size}
    for name, n in zip(BLOCKING_KEYS, row[2:], strict=True):
        out[f"pairs_{name}"] = int(n or 0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blocking_recall",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, required=True)
    parser.add_argument("--truth", type=Path, required=True)
    args = parser.parse_args()
    res = blocking_recall(args.project, args.truth)
    print(f"true pairs {res['true_pairs']:,}; within reach of a capped key "
          f"{res['within_reach']:,} ({res['recall']:.2%}); block cap {res['block_cap']}")
    for k in BLOCKING_KEYS:
        print(f"  {k:<28} {res[f'pairs_{k}']:>10,}")


if __name__ == "__main__":
    main()
