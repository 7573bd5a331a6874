"""The batch end to end on generated rosters, in a real register file and real processes."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from linkage.batch.pipeline import format_summary, run
from linkage.config import load_project
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.register.database import Register, query
from linkage.register.export import export
from linkage.synthetic.generate import generate

PERSONS = 400


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project with one published run."""
    out = tmp_path_factory.mktemp("sahel")
    generate(persons=PERSONS, profile="sahel", seed=7, out=out,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    run(load_project(out / "project.yaml"), progress=lambda _: None)
    return out


def snapshot(register: Path) -> dict[str, list]:
    con = duckdb.connect(str(register), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in ("person_records", "persons", "person_events", "records", "runs",
                          "links")}
    finally:
        con.close()


def test_run_publishes_persons_and_summary(published: Path) -> None:
    project = load_project(published / "project.yaml")
    reg = Register.open(project.register, read_only=True)
    cur = reg.cursor()
    (n_records,) = query(cur, "SELECT count(*) FROM records WHERE status = 'active'")[0]
    (n_assigned,) = query(cur, "SELECT count(*) FROM person_records")[0]
    (n_persons,) = query(cur, "SELECT count(DISTINCT person_id) FROM person_records")[0]
    ((status, summary_json),) = query(cur, "SELECT status, summary FROM runs")
    (n_rejects,) = query(cur, "SELECT count(*) FROM rejects")[0]
    reg.close()
    assert n_assigned == n_records  # every active record belongs to one person
    assert n_persons < n_records  # duplicates were found
    assert status == "published"
    assert n_rejects > 0  # the generator plants bad rows
    import json

    summary = json.loads(summary_json)
    assert summary["persons"] == n_persons
    # bad dates and sex codes planted by the generator are blanked, their records kept
    assert sum(s.get("warnings", 0) for s in summary["sources"].values()) > 0
    text = format_summary(summary)
    assert "programme overlap" in text and "people in more than one programme" in text


def test_second_run_keeps_every_person_id(published: Path) -> None:
    project = load_project(published / "project.yaml")
    before = snapshot(project.register)["person_records"]
    result = run(project, progress=lambda _: None)
    after = snapshot(project.register)["person_records"]
    assert after == before
    assert result.summary["id_changes"] == {}


def test_export_csv_and_parquet(published: Path, tmp_path: Path) -> None:
    project = load_project(published / "project.yaml")
    reg = Register.open(project.register, read_only=True)
    n = export(reg, tmp_path / "map.csv")
    m = export(reg, tmp_path / "persons.parquet", what="persons", fmt="parquet")
    reg.close()
    rows = list(csv.DictReader((tmp_path / "map.csv").open(encoding="utf-8")))
    assert len(rows) == n and set(rows[0]) == {"source", "record_key", "person_id"}
    assert all(r["person_id"].startswith("P-") for r in rows)
    import pyarrow.parquet as pq

    persons = pq.read_table(tmp_path / "persons.parquet")
    assert persons.num_rows == m == len({r["person_id"] for r in rows})


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "linkage", *args]


@pytest.mark.parametrize("kill_after", ["ingest public_works", "predicting"])
def test_killed_run_leaves_published_register_intact(tmp_path: Path, kill_after: str) -> None:
    generate(persons=PERSONS, profile="sahel", seed=11, out=tmp_path,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    project_file = tmp_path / "project.yaml"
    subprocess.run(_cli("run", "-p", str(project_file)), check=True, capture_output=True,
                   timeout=300)
    register = load_project(project_file).register
    before = snapshot(register)
    # A newer extract, so that the killed run has real changes to (not) publish.
    roster = tmp_path / "data" / "cash_transfer.csv"
    lines = roster.read_bytes().splitlines(keepends=True)
    roster.write_bytes(b"".join(lines[:-20]))

    proc = subprocess.Popen(_cli("run", "-p", str(project_file)), stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    seen = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 300
    for line in proc.stderr:
        seen.append(line)
        if kill_after in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)

    assert snapshot(register) == before  # readable and unchanged
    done = subprocess.run(_cli("run", "-p", str(project_file)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    after = snapshot(register)
    assert len(after["runs"]) == len(before["runs"]) + 1
    assert len(after["records"]) == len(before["records"])  # retired, never deleted


def test_pairs_between_rosters_are_reweighed_by_ambiguity_and_explained(published: Path
                                                                        ) -> None:
    """The batch re-weighs pairs between sources listing each person once by their
    records' other candidates (linkage.batch.ambiguity); the run summary says so, and the
    explanation adds that line, its total the weight the batch clustered with."""
    import json

    from linkage.realtime.explain import AMBIGUITY_LABEL, explain_records

    project = load_project(published / "project.yaml")
    reg = Register.open(project.register, read_only=True)
    try:
        cur = reg.cursor()
        ((summary_json,),) = query(cur, "SELECT summary FROM runs WHERE status = 'published' "
                                        "ORDER BY finished_at DESC LIMIT 1")
        rows = query(cur, "SELECT uid_l, uid_r, match_weight, ambiguity_bits FROM links "
                          "WHERE abs(ambiguity_bits) > 0.1 ORDER BY uid_l, uid_r LIMIT 1")
        cur.close()
        assert rows, "the batch re-weighed no pair"
        uid_l, uid_r, stored, bits = rows[0]
        ex = explain_records(project, reg, uid_l, uid_r)
    finally:
        reg.close()
    amb = json.loads(summary_json)["ambiguity"]
    assert amb["pairs_adjusted"] > 0
    assert 0 < amb["overlap"]["cash_transfer -> civil_registry"] <= 0.95
    assert ex.evidence[-1].comparison == "ambiguity"
    assert ex.evidence[-1].label == AMBIGUITY_LABEL
    assert ex.evidence[-1].weight == pytest.approx(bits)
    assert ex.prior_weight + sum(e.weight for e in ex.evidence) == pytest.approx(ex.match_weight)
    # Real time scores as the batch did, up to block caps and term frequencies.
    assert ex.match_weight == pytest.approx(stored, abs=0.5)
