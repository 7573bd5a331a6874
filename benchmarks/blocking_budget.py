"""What each blocking key costs and brings: the comparisons and true pairs lost without it.

Usage::

    python -m benchmarks.blocking_budget --case NAME=DIR/project.yaml,DIR/truth.csv ...
        [--drop KEY ...] [--eliminate N] [--json]

For each case (a project whose register holds ingested records, and its truth), builds
the same capped ``bk_*`` keys as the batch (:func:`linkage.engines.duckdb_sql.prepare_input`)
and generates every key's blocked pairs. Each pair gets the set of keys that generate
it (a bit mask), and the pairs are counted per mask, true pairs apart. From these counts
any subset of the keys is evaluated exactly without touching the data again: its
comparisons (pairs some kept key generates, as Splink's rules count them) and its
blocking recall (true pairs some kept key reaches).

``--drop`` prints the figures of the keys with those keys left out; ``--eliminate N``
removes, N times, the key whose removal costs the least recall per comparison saved,
summed over every case (each case's lost share of its true pairs, so a small data set
weighs as much as a large one), and prints the trajectory. The point of several cases is
that a key is dropped only if no register needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from linkage.batch.pipeline import active_records
from linkage.config import load_project
from linkage.engines import duckdb_sql as engine
from linkage.register.database import Register


@dataclass
class Case:
    """One register's pairs, counted per set of generating keys."""

    name: str
    keys: list[str]
    records: int
    true_pairs: int
    #: mask -> (pairs, true pairs); bit i is ``keys[i]``.
    masks: dict[int, tuple[int, int]] = field(default_factory=dict)

    def figures(self, kept: set[str]) -> tuple[int, int]:
        """(comparisons, true pairs reached) with only ``kept`` keys."""
        bits = sum(1 << i for i, k in enumerate(self.keys) if k in kept)
        n = t = 0
        for m, (pairs, true) in self.masks.items():
            if m & bits:
                n += pairs
                t += true
        return n, t


def count_masks(name: str, project_path: Path, truth_path: Path,
                caps: dict[str, int] | None = None) -> Case:
    """Every blocked pair of the project's keys, counted per mask of generating keys.

    ``caps``: block caps to try instead of the definition's (``KEY_CAPS``) for those keys.
    """
    from linkage.matching import definition

    saved = dict(definition.KEY_CAPS)
    definition.KEY_CAPS.update(caps or {})
    try:
        return _count_masks(name, project_path, truth_path)
    finally:
        definition.KEY_CAPS.clear()
        definition.KEY_CAPS.update(saved)


def _count_masks(name: str, project_path: Path, truth_path: Path) -> Case:
    project = load_project(project_path)
    reg = Register.open(project.register, read_only=True)
    records = active_records(reg.cursor(), project.definition)
    reg.close()
    keys = list(project.definition.blocking_keys)
    if len(keys) > 62:
        raise ValueError(f"{len(keys)} keys: a mask holds 62")
    con = engine.new_scratch()
    con.execute("SET enable_progress_bar = false")
    report = engine.prepare_input(con, records, project.max_block_size,
                                  keys=project.definition.blocking_keys)
    con.execute("CREATE TEMP TABLE ids AS SELECT uid, row_number() OVER () AS rid, "
                + ", ".join(f"bk_{k}" for k in keys) + " FROM linkage_input")
    con.execute(
        "CREATE TEMP TABLE truth AS SELECT i.rid, t.person_id FROM "
        "read_csv(?, all_varchar = true) t JOIN ids i "
        "ON i.uid = t.source || ':' || t.record_key WHERE t.bad = 'false'",
        [str(truth_path)])
    con.execute("CREATE TEMP TABLE pair_bits (l BIGINT, r BIGINT, b BIGINT)")
    for i, k in enumerate(keys):
        con.execute(f"""
            INSERT INTO pair_bits SELECT a.rid, b.rid, {1 << i}::BIGINT FROM ids a
            JOIN ids b ON a.bk_{k} = b.bk_{k} AND a.rid < b.rid""")
    con.execute("""
        CREATE TEMP TABLE pair_masks AS
        SELECT l, r, bit_or(b) AS mask FROM pair_bits GROUP BY l, r""")
    con.execute("DROP TABLE pair_bits")
    con.execute("""
        CREATE TEMP TABLE true_pairs AS SELECT a.rid AS l, b.rid AS r FROM truth a
        JOIN truth b ON a.person_id = b.person_id AND a.rid < b.rid""")
    ((total,),) = con.execute("SELECT count(*) FROM true_pairs").fetchall()
    rows = con.execute("""
        SELECT m.mask, count(*), count(t.l) FROM pair_masks m
        LEFT JOIN true_pairs t ON t.l = m.l AND t.r = m.r GROUP BY m.mask""").fetchall()
    con.close()
    return Case(name, keys, report.records, int(total),
                {int(m): (int(n), int(t)) for m, n, t in rows})


def eliminate(cases: list[Case], steps: int, start: set[str]) -> list[dict]:
    """Backward elimination: drop, ``steps`` times, the key with the least recall lost
    (summed over cases, as shares of each case's true pairs) per comparison saved
    (summed over cases, as comparisons per record)."""
    kept = set(start)
    trail = []
    for _ in range(steps):
        base = [c.figures(kept) for c in cases]
        best = None
        # A project's own keys (its extra fields', ``x_*``) are its choice, not ours.
        for k in sorted(k for k in kept if not k.startswith("x_")):
            trial = kept - {k}
            lost = saved = 0.0
            for c, (n0, t0) in zip(cases, base, strict=True):
                n1, t1 = c.figures(trial)
                lost += (t0 - t1) / max(c.true_pairs, 1)
                saved += (n0 - n1) / max(c.records, 1)
            score = lost / saved if saved > 0 else float("inf")
            if best is None or (score, -saved) < (best[0], -best[3]):
                best = (score, k, lost, saved)
        if best is None or best[3] <= 0:
            break
        kept.discard(best[1])
        trail.append({"dropped": best[1], "recall_lost": best[2],
                      "comparisons_per_record_saved": best[3],
                      "cases": {c.name: _summary(c, kept) for c in cases}})
    return trail


def _summary(c: Case, kept: set[str]) -> dict:
    n, t = c.figures(kept)
    return {"comparisons": n, "per_record": round(n / max(c.records, 1), 2),
            "recall": round(t / max(c.true_pairs, 1), 5)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blocking_budget",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", required=True,
                        help="NAME=PROJECT.yaml,TRUTH.csv (repeatable)")
    parser.add_argument("--drop", nargs="*", default=[])
    parser.add_argument("--cap", nargs="*", default=[], metavar="KEY=N",
                        help="try this block cap for KEY instead of the definition's")
    parser.add_argument("--eliminate", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    cases = []
    for spec in args.case:
        name, _, paths = spec.partition("=")
        project, _, truth = paths.partition(",")
        print(f"counting {name} ...", file=sys.stderr, flush=True)
        caps = {k: int(n) for k, _, n in (c.partition("=") for c in args.cap)}
        cases.append(count_masks(name, Path(project), Path(truth), caps))
    every = set().union(*(c.keys for c in cases))
    out: dict = {"all": {c.name: _summary(c, every) for c in cases}}
    if args.drop:
        out["dropped"] = {c.name: _summary(c, every - set(args.drop)) for c in cases}
    if args.eliminate:
        out["trail"] = eliminate(cases, args.eliminate, every - set(args.drop))
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for label in ("all", "dropped"):
        if label in out:
            print(label + ": " + "; ".join(
                f"{n} {s['per_record']}/rec recall {s['recall']:.4f}"
                for n, s in out[label].items()))
    for step in out.get("trail", []):
        print(f"- {step['dropped']:<38} lost {step['recall_lost']:.5f} saved "
              f"{step['comparisons_per_record_saved']:.2f}/rec -> " + "; ".join(
                  f"{n} {s['per_record']}/rec {s['recall']:.4f}"
                  for n, s in step["cases"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
