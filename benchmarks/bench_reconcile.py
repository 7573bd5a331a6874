"""Benchmark :func:`linkage.ids.reconcile` on a register-sized run.

Builds ``--records`` records in clusters of 1-4 records, publishes a first assignment
(run 1, from an empty state), then changes ``--changed-fraction`` of the clusters (a mix
of merges, splits, added records and removed records) and times run 2.

Usage:
    .venv/bin/python benchmarks/bench_reconcile.py --records 1000000 \
        --changed-fraction 0.01 --seed 42
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime

from linkage.ids.reconcile import IdAllocator, IdState, reconcile


def build_clusters(n_records: int, rng: random.Random) -> dict[str, int]:
    """record key -> cluster label, clusters of 1-4 records (mean ~1.67)."""
    clusters: dict[str, int] = {}
    label = 0
    sizes = rng.choices([1, 2, 3, 4], weights=[55, 28, 12, 5], k=n_records)
    i = 0
    for size in sizes:
        for _ in range(size):
            if i == n_records:
                return clusters
            clusters[f"src{i % 7}:{i:08d}"] = label
            i += 1
        label += 1
    return clusters


def change(
    clusters: dict[str, int], fraction: float, rng: random.Random
) -> tuple[dict[str, int], int, Counter[str]]:
    """Change ``fraction`` of the clusters; return new clusters, clusters touched, ops."""
    groups: dict[int, list[str]] = {}
    for rec, lab in clusters.items():
        groups.setdefault(lab, []).append(rec)
    labels = list(groups)
    n_ops = int(len(labels) * fraction)
    chosen = rng.sample(labels, min(len(labels), n_ops * 2))  # merges take two
    out = dict(clusters)
    # Relabel everything so that labels are unstable, as from a real clustering run.
    out = {rec: lab + 10_000_000 for rec, lab in out.items()}
    ops: Counter[str] = Counter()
    touched = 0
    next_label = 20_000_000
    next_rec = len(clusters)
    it = iter(chosen)
    for _ in range(n_ops):
        op = rng.choice(["merge", "split", "add", "remove"])
        lab = next(it)
        recs = groups[lab]
        if op == "merge":
            other = next(it)
            for r in groups[other]:
                out[r] = lab + 10_000_000
            touched += 2
        elif op == "split" and len(recs) >= 2:
            for r in recs[: len(recs) // 2]:
                out[r] = next_label
            next_label += 1
            touched += 1
        elif op == "remove" and len(recs) >= 1:
            del out[recs[-1]]
            touched += 1
        else:
            op = "add"
            out[f"new:{next_rec:08d}"] = lab + 10_000_000
            next_rec += 1
            touched += 1
        ops[op] += 1
    return out, touched, ops


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports KiB)."""
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--changed-fraction", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    alloc = IdAllocator(b"benchmark-secret")
    now = datetime(2024, 1, 1, tzinfo=UTC)

    clusters = build_clusters(args.records, rng)
    n_clusters = len(set(clusters.values()))
    t = time.perf_counter()
    first = reconcile(IdState(), clusters, allocator=alloc, run_id="run-1", now=now)
    t_first = time.perf_counter() - t
    state, n_first_events = first.state, len(first.events)
    del first
    gc.collect()

    second_clusters, touched, ops = change(clusters, args.changed_fraction, rng)
    del clusters
    gc.collect()
    rss_before = peak_rss_mb()
    t = time.perf_counter()
    res = reconcile(state, second_clusters, allocator=alloc, run_id="run-2", now=now)
    t_second = time.perf_counter() - t

    by_kind = Counter(e.kind for e in res.events)
    live = len(set(res.state.assignment.values()))
    print(f"records (run 1):       {args.records:,}")
    print(f"clusters (run 1):      {n_clusters:,}")
    print(f"run 1 (from empty):    {t_first:.2f} s, {n_first_events:,} events")
    print(f"records (run 2):       {len(second_clusters):,}")
    print(f"clusters changed:      {touched:,} ({dict(sorted(ops.items()))})")
    print(f"run 2 reconcile:       {t_second:.2f} s")
    print(f"events (run 2):        {dict(sorted(by_kind.items()))}")
    print(f"live persons (run 2):  {live:,}, retired IDs: {len(res.state.retired):,}")
    print(f"peak RSS before run 2: {rss_before:.0f} MiB")
    print(f"peak RSS overall:      {peak_rss_mb():.0f} MiB")


if __name__ == "__main__":
    main()
