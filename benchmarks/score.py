"""Score a predicted clustering of records against the generator's ground truth.

Usage::

    python -m benchmarks.score --truth DIR/truth.csv --predicted mapping.csv [--json]

``mapping.csv`` has columns ``source,record_key,person_id`` (as the service exports);
a record is identified by ``f"{source}:{record_key}"``.

Metrics (all O(n), from cluster-size contingency counts; no pair is enumerated):

* pairwise precision / recall / F1 over record pairs placed together;
* B-cubed precision / recall / F1 (per-record averages);
* predicted and true cluster counts;
* household merges: predicted clusters holding records of two or more *distinct* true
  persons of the same household (siblings, twins, parent and child, spouses), and the
  true persons caught in them.

Records flagged ``bad`` in the truth are excluded (the CLI reports how many of them
the prediction still contains as ``bad_accepted``: ingest should have rejected them).
Truth records absent from the prediction are counted as ``missing`` and scored as
singletons; predicted records absent from the (good) truth are counted as
``unexpected`` and ignored.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Collection, Hashable, Mapping
from pathlib import Path

__all__ = ["score", "load_truth", "load_predicted", "format_report", "main"]


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def score(
    predicted: Mapping[str, Hashable],
    truth: Mapping[str, Hashable],
    households: Mapping[Hashable, Hashable] | None = None,
    bad: Collection[str] = (),
) -> dict[str, float | int]:
    """Compare a predicted clustering with the true one.

    Args:
        predicted: record uid -> predicted cluster (person id).
        truth: record uid -> true person id, for good (non-rejected) records only.
        households: optional true person id -> household id, for the household-merge
            counters (omitted: those counters are 0).
        bad: uids of records ingest should have rejected; those still present in
            ``predicted`` are counted as ``bad_accepted`` (not as ``unexpected``).

    Returns:
        A dict of metrics; see the module docstring.
    """
    n = len(truth)
    missing = 0
    cells: Counter[tuple[object, Hashable]] = Counter()
    pred_size: Counter[object] = Counter()
    true_size: Counter[Hashable] = Counter()
    for uid, person in truth.items():
        cluster: object
        if uid in predicted:
            cluster = ("p", predicted[uid])
        else:
            missing += 1
            cluster = ("missing", uid)  # a singleton of its own
        cells[(cluster, person)] += 1
        pred_size[cluster] += 1
        true_size[person] += 1
    bad_set = bad if isinstance(bad, (set, frozenset, dict)) else set(bad)
    bad_accepted = sum(1 for uid in bad_set if uid in predicted)
    unexpected = sum(1 for uid in predicted if uid not in truth) - bad_accepted

    tp = sum(_pairs(c) for c in cells.values())
    pred_pairs = sum(_pairs(c) for c in pred_size.values())
    true_pairs = sum(_pairs(c) for c in true_size.values())
    precision = tp / pred_pairs if pred_pairs else 1.0
    recall = tp / true_pairs if true_pairs else 1.0

    b3p = b3r = 0.0
    for (cluster, person), c in cells.items():
        b3p += c * c / pred_size[cluster]
        b3r += c * c / true_size[person]
    b3p = b3p / n if n else 1.0
    b3r = b3r / n if n else 1.0

    merged_clusters = 0
    merged_persons: set[Hashable] = set()
    if households is not None:
        # predicted cluster -> household -> distinct true persons in that cluster
        by_cluster: dict[object, dict[Hashable, list[Hashable]]] = defaultdict(dict)
        for cluster, person in cells:  # each (cluster, person) cell is distinct
            hh = households.get(person)
            if hh is not None:
                by_cluster[cluster].setdefault(hh, []).append(person)
        for groups in by_cluster.values():
            hit = False
            for persons in groups.values():
                if len(persons) >= 2:
                    hit = True
                    merged_persons.update(persons)
            merged_clusters += hit
    n_persons = len(true_size)
    return {
        "records": n,
        "missing": missing,
        "unexpected": unexpected,
        "bad": len(bad_set),
        "bad_accepted": bad_accepted,
        "true_clusters": n_persons,
        "predicted_clusters": len(pred_size),
        "true_pairs": true_pairs,
        "predicted_pairs": pred_pairs,
        "true_positive_pairs": tp,
        "pairwise_precision": precision,
        "pairwise_recall": recall,
        "pairwise_f1": _f1(precision, recall),
        "bcubed_precision": b3p,
        "bcubed_recall": b3r,
        "bcubed_f1": _f1(b3p, b3r),
        "household_merged_clusters": merged_clusters,
        "household_merged_clusters_pct": 100 * merged_clusters / len(pred_size)
        if pred_size
        else 0.0,
        "household_merged_persons": len(merged_persons),
        "household_merged_persons_pct": 100 * len(merged_persons) / n_persons if n_persons else 0.0,
    }


def load_truth(path: str | Path) -> tuple[dict[str, str], dict[str, str], set[str]]:
    """Read ``truth.csv``: (uid -> person for good records, person -> household, bad uids)."""
    truth: dict[str, str] = {}
    households: dict[str, str] = {}
    bad: set[str] = set()
    with Path(path).open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            if row["bad"].strip().lower() in ("true", "1", "yes"):
                bad.add(f"{row['source']}:{row['record_key']}")
                continue
            truth[f"{row['source']}:{row['record_key']}"] = row["person_id"]
            households[row["person_id"]] = row["household_id"]
    return truth, households, bad


def load_predicted(path: str | Path) -> dict[str, str]:
    """Read a ``source,record_key,person_id`` mapping exported by the service."""
    with Path(path).open(encoding="utf-8", newline="") as fh:
        return {f"{r['source']}:{r['record_key']}": r["person_id"] for r in csv.DictReader(fh)}


def format_report(m: Mapping[str, float | int]) -> str:
    """A readable table of the metrics."""
    lines = [
        f"{'records scored':<34}{m['records']:>12,}",
        f"{'  bad (excluded)':<34}{m['bad']:>12,}",
        f"{'  missing from prediction':<34}{m['missing']:>12,}",
        f"{'  bad but in prediction':<34}{m['bad_accepted']:>12,}",
        f"{'  unexpected in prediction':<34}{m['unexpected']:>12,}",
        f"{'true clusters (persons)':<34}{m['true_clusters']:>12,}",
        f"{'predicted clusters':<34}{m['predicted_clusters']:>12,}",
        "",
        f"{'':<20}{'precision':>10}{'recall':>10}{'F1':>10}",
        f"{'pairwise':<20}{m['pairwise_precision']:>10.4f}{m['pairwise_recall']:>10.4f}"
        f"{m['pairwise_f1']:>10.4f}",
        f"{'B-cubed':<20}{m['bcubed_precision']:>10.4f}{m['bcubed_recall']:>10.4f}"
        f"{m['bcubed_f1']:>10.4f}",
        "",
        f"{'pairs true / predicted / correct':<34}{m['true_pairs']:,} / {m['predicted_pairs']:,} / "
        f"{m['true_positive_pairs']:,}",
        f"{'household-merged clusters':<34}{m['household_merged_clusters']:>12,}"
        f"  ({m['household_merged_clusters_pct']:.2f}% of predicted clusters)",
        f"{'persons merged with a relative':<34}{m['household_merged_persons']:>12,}"
        f"  ({m['household_merged_persons_pct']:.2f}% of true persons)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.score",
        description="Score a predicted clustering against truth.csv.",
    )
    ap.add_argument("--truth", required=True, help="truth.csv written by benchmarks.generate")
    ap.add_argument("--predicted", required=True, help="mapping.csv: source,record_key,person_id")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    truth, households, bad = load_truth(args.truth)
    predicted = load_predicted(args.predicted)
    metrics = score(predicted, truth, households, bad)
    print(json.dumps(metrics, indent=2) if args.json else format_report(metrics))
    return 0


if __name__ == "__main__":
    sys.exit(main())
