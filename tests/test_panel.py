"""The accuracy panel at quick scale: both systems on fake_1000 in one command.

FEBRL 1 is prepared (data, truth, project variants) but not run here: its trained rows
take most of a minute on two cores. The blocking-recall passes are left out of the quick
run (two more subprocesses); the reference's rule evaluation is tested on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from benchmarks import panel
from benchmarks.splink_examples import SPLINK_DATA

ROOT = Path(__file__).resolve().parents[1]
needs_splink_data = pytest.mark.skipif(
    not (SPLINK_DATA / "fake_1000.csv").exists(),
    reason="Splink's example data sets are not on this machine")


def test_last_line_drops_the_run_prefix() -> None:
    err = ("[ 0.1s] ingest\nError: run-20261201T080925Z-783d failed, the published register "
           "is unchanged: only 0 national IDs are shared\n\n")
    assert panel.last_line(err) == "only 0 national IDs are shared"
    assert panel.last_line("") == "no output"


def test_committed_configs_load() -> None:
    from linkage.config import load_project

    for d in panel.PUBLIC:
        project = load_project(panel.CONFIGS / d / "project.yaml")
        assert project.model is None  # trained by the run; the panel adds model: itself
        assert project.sources


def test_rules_blocking_recall() -> None:
    import duckdb

    from benchmarks.splink_examples import rules_blocking_recall

    con = duckdb.connect()
    con.execute("CREATE TABLE t AS SELECT * FROM (VALUES ('1', 'ann', 'x'), ('2', 'ann', 'y'), "
                "('3', 'bob', 'y'), ('4', 'cy', 'z')) v(id, name, town)")
    truth = {"1": "a", "2": "a", "3": "a", "4": "b"}  # true pairs 1-2, 1-3, 2-3
    got = rules_blocking_recall(con, "t", "id", ["l.name = r.name", "l.town = r.town"], truth)
    assert (got["true_pairs"], got["within_reach"]) == (3, 2)  # 1-3 shares neither
    assert got["by_rule"] == {"l.name = r.name": 1, "l.town = r.town": 1}


def test_febrl1_is_prepared_as_a_user_would(tmp_path: Path) -> None:
    case = panel._prepare_public("febrl1", tmp_path, SPLINK_DATA)
    assert (len(case.truth), case.true_pairs) == (1000, 500)
    assert [label for label, _, _ in case.variants] == [
        "ours: trained, soc_sec_id as national_id", "ours: no ID, trained",
        "ours: no ID, shipped sahel model"]
    (_, with_id, _), (_, no_id, _), (_, shipped, _) = case.variants
    assert with_id.read_bytes() == (panel.CONFIGS / "febrl1" / "project.yaml").read_bytes()
    src = yaml.safe_load((no_id.parent / "sources" / "febrl1.yaml").read_text())
    # The postcode is an extra field, as for FEBRL 3 and 4 (no longer squeezed into village).
    assert "national_id" not in src["columns"] and "village" not in src["columns"]
    assert src["columns"]["extra.postcode"] == "postcode"
    assert Path(yaml.safe_load(shipped.read_text())["model"]) == ROOT / "models" / "sahel.json"
    assert (with_id.parent / "data" / "febrl1.csv").is_file()  # through the data link


@needs_splink_data
def test_quick_panel(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.panel", "--datasets", "fake_1000", "--work",
         str(tmp_path), "--json", "--timeout", "300", "--no-blocking-recall"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)["rows"]
    assert {r["dataset"] for r in rows} == {"fake_1000"}
    assert [r["system"] for r in rows] == ["ours: trained", "ours: shipped sahel model",
                                          "Splink quick start"]
    for kind in ("ours", "reference"):
        scored = [r for r in rows if r["kind"] == kind and r["status"] == "ok"]
        assert scored, f"no {kind} row was scored: {rows}"
        for r in scored:
            for key in ("pairwise_precision", "pairwise_recall", "pairwise_f1", "bcubed_f1"):
                assert 0.0 <= r["score"][key] <= 1.0
            assert r["seconds"] > 0 and r["peak_mb"] > 0
    for r in rows:  # a row is either scored or says why not
        assert r["status"] == "ok" or r["status"].startswith(("failed: ", "not run: "))
    (ref,) = [r for r in rows if r["kind"] == "reference"]
    assert ref["true_pairs"] == 2031 and ref["score"]["pairwise_f1"] > 0.4
    table = (tmp_path / "panel.md").read_text(encoding="utf-8")
    assert "Splink quick start" in table and "ours: shipped sahel model" in table


@needs_splink_data
def test_the_shipped_model_rows_leave_the_extra_fields_out(tmp_path: Path) -> None:
    """fake_1000 declares an e-mail extra field; the shipped model knows none, so its row
    runs on the canonical columns (the trained row keeps the committed files)."""
    from linkage.config import load_project

    case = panel._prepare_public("fake_1000", tmp_path, SPLINK_DATA)
    (_, trained, _), (_, shipped, _) = case.variants
    assert trained.read_bytes() == (panel.CONFIGS / "fake_1000" / "project.yaml").read_bytes()
    assert [f.name for f in load_project(trained).extra_fields] == ["email"]
    project = load_project(shipped)
    assert project.extra_fields == () and project.model == ROOT / "models" / "sahel.json"
    assert "extra.email" not in project.sources[0].columns
