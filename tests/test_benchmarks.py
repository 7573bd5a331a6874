"""The accuracy benchmark end to end on a tiny generated register (both systems)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.baseline import run_baseline
from benchmarks.bench_accuracy import bench, report
from benchmarks.febrl import entity, write_project
from linkage.config import load_project

ROOT = Path(__file__).resolve().parents[1]

PERSONS = 400


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    work = tmp_path_factory.mktemp("acc") / "sahel"
    return bench(PERSONS, "sahel", 5, work, log=lambda _: None)


def test_bench_accuracy_end_to_end(result: dict[str, Any]) -> None:
    ours, base = result["ours"], result["baseline"]
    assert ours["comparisons"] > 0
    assert ours["seconds"] > 0 and ours["peak_rss_mb"] > 50
    assert base["stats"]["status"] == "ok"
    assert base["peak_rss_mb"] > 50
    for s in (ours["score"], base["score"]):
        assert s["missing"] == 0  # every good record was clustered by both systems
        assert s["unexpected"] == 0
        for k in ("pairwise_f1", "bcubed_f1", "pairwise_precision", "bcubed_recall"):
            assert 0.0 <= s[k] <= 1.0
    assert ours["score"]["pairwise_precision"] > 0.9
    ratios = result["ratios_ours_over_baseline"]
    assert ratios["pairwise_f1"] is not None and ratios["seconds"] is not None
    careful = result["careful"]  # benchmarks.careful_splink, from the raw source files
    assert careful["stats"]["status"] == "ok"
    assert careful["score"]["missing"] == 0 and careful["score"]["unexpected"] == 0
    assert 0.1 <= careful["stats"]["threshold"] <= 0.99
    vs = careful["versus_ours"]
    assert vs["both_found"] + vs["careful_only"] + vs["ours_only"] <= vs["true_pairs"]
    assert sum(vs["careful_only_by_our_status"].values()) == vs["careful_only"]
    text = report(result)
    assert "plain Splink" in text and "ours / baseline" in text
    assert "careful Splink" in text
    saved = json.loads((Path(result["work"]) / "bench_accuracy.json").read_text())
    assert saved["ours"]["score"] == ours["score"]


def test_baseline_stops_above_comparison_cap(result: dict[str, Any]) -> None:
    register = load_project(Path(result["work"]) / "project.yaml").register
    stats, mapping = run_baseline(register, "sahel", max_comparisons=10)
    assert stats["status"] == "too_many_comparisons"
    assert stats["comparisons"] > 10
    assert mapping == {}


def test_febrl_project_loads(tmp_path: Path) -> None:
    assert entity("rec-123-org") == entity("rec-123-dup-0") == "123"
    path, truth = write_project("4", tmp_path / "febrl4")
    project = load_project(path)
    assert [s.name for s in project.sources] == ["febrl4a", "febrl4b"]
    assert project.model is None  # no shipped model: `linkage run` trains one
    assert len(truth) == 10_000
    assert len(set(truth.values())) == 5_000


def test_realtime_benchmarks_end_to_end(tmp_path: Path) -> None:
    """bench_resolve and bench_enrol run at a tiny scale and write their figures."""
    from benchmarks import bench_enrol, bench_resolve

    base = tmp_path / "rt"
    assert bench_resolve.main(["--records", "3000", "--dir", str(base), "--queries", "50",
                               "--seconds", "1", "--splink-queries", "2"]) == 0
    resolve = json.loads((base / "bench_resolve.json").read_text())
    assert resolve["resolve_grpc"]["sequential"]["calls"] == 50
    assert resolve["splink_predict_between"]["calls"] == 2
    assert bench_enrol.main(["--base", str(base), "--records", "1000", "--batch", "400",
                             "--model", str(ROOT / "models" / "sahel.json")]) == 0
    enrol = json.loads((tmp_path / "rt_enrol" / "bench_enrol.json").read_text())
    out = enrol["outcomes"]
    assert enrol["records"] == 1000 and out["created"] + out["linked"] == 1000
    assert out["linked"] > 50  # the population repeats people: some records must link
    assert enrol["accuracy_among_enrolled"]["pairwise_precision"] > 0.8
