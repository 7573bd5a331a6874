"""A clerical sample labelled by the truth: what a registry unit's reviewer would do.

The careful Splink set-up chooses its threshold from a 300-pair clerical sample labelled
from the truth (``careful_splink._choose_threshold``). For a fair comparison our batch gets
the same kind of help through the product's own tools: ``linkage review sample`` queues a
stratified sample, a reviewer (here: the generator's truth) decides each pair, and
``linkage review estimate`` estimates precision, recall and F1 at each threshold and
suggests one (``linkage.review.accuracy``). Nothing else in our run reads the truth.

    python -m benchmarks.clerical --project DIR/project.yaml --truth DIR/truth.csv

Decisions stick in the register (they are a reviewer's); run on a copy, or from a fresh
register afterwards, when the next run must not see them.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from linkage.config import load_project
from linkage.register.database import Register
from linkage.review import accuracy
from linkage.review.core import Review
from linkage.review.evidence import Filters


def read_truth(truth_csv: Path) -> dict[str, str]:
    """uid -> true person of every record the generator did not mark bad."""
    with truth_csv.open(encoding="utf-8") as fh:
        return {f"{r['source']}:{r['record_key']}": r["person_id"] for r in csv.DictReader(fh)
                if r.get("bad", "false") != "true"}


def oracle_estimate(project_yaml: Path, truth_csv: Path, *, per_stratum: int = 15,
                    seed: int = 0) -> accuracy.Estimate:
    """Queue a clerical sample, decide every item from the truth, and estimate."""
    project = load_project(project_yaml)
    truth = read_truth(truth_csv)
    rv = Review(project, Register.open(project.register))
    try:
        rv.sample(per_stratum=per_stratum, seed=seed)
        items, _, _ = rv.list(Filters(kind="sample"), page_size=500)
        for it in items:
            a, b = truth.get(it.uid_a), truth.get(it.uid_b)
            same = a is not None and a == b
            rv.decide(it.item_id, "same" if same else "not_same", reviewer="clerical oracle")
        return rv.estimate()
    finally:
        rv.register.close()


def at_suggested_threshold(project_yaml: Path, est: accuracy.Estimate) -> Path | None:
    """The project file again, beside it (its paths are relative to it) as
    ``project_clerical.yaml``, with the match threshold the estimate suggests; None when
    it suggests the project's own. The project file itself stays as it was."""
    import yaml

    best = est.suggested
    if best is None or best.current:
        return None
    current = load_project(project_yaml).thresholds
    doc = yaml.safe_load(project_yaml.read_text(encoding="utf-8"))
    doc["thresholds"] = {"match": best.threshold, "review": current.review}
    chosen = project_yaml.with_name("project_clerical.yaml")
    chosen.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--per-stratum", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    est = oracle_estimate(args.project, args.truth, per_stratum=args.per_stratum,
                          seed=args.seed)
    print(accuracy.format_estimate(est))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
