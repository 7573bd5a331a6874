"""Training on any register: without national IDs, with IDs in one source, and refusing
data whose names carry no signal. Real generated registers, real DuckDB and Splink."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from benchmarks.score import load_truth
from linkage.batch.pipeline import active_records, ingest_all
from linkage.config import load_project
from linkage.engines import duckdb_sql as engine
from linkage.matching import training
from linkage.matching.model import Model, ModelError, check_parameters
from linkage.register.database import Register
from linkage.synthetic.generate import generate

PERSONS = 2500


@pytest.fixture(scope="module")
def register(tmp_path_factory: pytest.TempPathFactory) -> tuple[pa.Table, dict[str, str]]:
    """Ingested records of a small generated Sahel register, and its truth."""
    out = tmp_path_factory.mktemp("training")
    generate(persons=PERSONS, profile="sahel", seed=7, out=out)
    project = load_project(out / "project.yaml")
    reg = Register.open(project.register)
    with reg.transaction() as cur:
        ingest_all(cur, project, progress=lambda _: None)
        records = active_records(cur)
    reg.close()
    truth, _, _ = load_truth(out / "truth.csv")
    return records, truth


def _with_ids_only_in(records: pa.Table, source: str | None) -> pa.Table:
    nid = records.column("national_id")
    keep = (pc.equal(records.column("source"), source) if source
            else pa.array([False] * len(nid)))
    i = records.column_names.index("national_id")
    return records.set_column(i, "national_id",
                              pc.if_else(keep, nid, pa.nulls(len(nid), nid.type)))


def _scratch(records: pa.Table):
    con = engine.new_scratch("1GB")
    engine.prepare_input(con, records, 100)
    return con


def _level(model: Model, comparison: str, label: str) -> dict:
    return next(lvl for lvl in model.level_parameters()[comparison] if lvl["label"] == label)


def _true_prior(records: pa.Table, truth: dict[str, str]) -> float:
    persons = [truth[u] for u in records.column("uid").to_pylist() if u in truth]
    _, counts = np.unique(persons, return_counts=True)
    n = records.num_rows
    return float((counts * (counts - 1) / 2).sum() / (n * (n - 1) / 2))


def test_trains_without_any_national_id(register: tuple[pa.Table, dict[str, str]]) -> None:
    records, truth = register
    records = _with_ids_only_in(records, None)
    con = _scratch(records)
    lines: list[str] = []
    model = training.train(con, progress=lines.append, max_pairs=5e5)
    check_parameters(model)
    exact = _level(model, "given_name", "exact")
    assert exact["m"] > 0.5 and exact["m"] > 10 * exact["u"]
    assert _level(model, "given_name", "different")["m"] < 0.1
    date = _level(model, "birth_date", "exact date")
    assert date["m"] > 100 * date["u"]
    # The report says how: both household-safe EM sessions, their pairs, the prior.
    md = model.metadata
    assert [s["blocking"] for s in md["sessions"]] == ["given_key + birth_date", "birth_date"]
    assert "given_name" in md["sessions"][1]["trained"]
    assert "given_name" not in md["sessions"][0]["trained"]
    assert all(s["pairs"] >= training.MIN_SESSION_PAIRS for s in md["sessions"])
    assert md["national_id_groups"] == 0
    assert "prior" in md["final_em"] and md["prior_method"]
    assert any("EM session 2/2 blocked on birth_date" in ln for ln in lines)
    assert "EM blocked on given_key + birth_date" in training.describe(model)
    assert "weight (bits)" in training.level_table(model)

    # It links a known duplicate: two records of one person agreeing on name and date.
    by_person: dict[str, list[dict]] = {}
    for row in records.select(["uid", "given_std", "family_std", "birth_date"]).to_pylist():
        if row["uid"] in truth:
            by_person.setdefault(truth[row["uid"]], []).append(row)
    dup = next(rows[:2] for rows in by_person.values() if len(rows) >= 2
               and rows[0]["birth_date"] and rows[0]["given_std"] == rows[1]["given_std"]
               and rows[0]["family_std"] == rows[1]["family_std"]
               and rows[0]["birth_date"] == rows[1]["birth_date"])
    linker = engine.make_linker(con, model.settings)
    clusters = engine.cluster(con, linker, engine.predict(linker, 0.4), 0.8)
    con.close()
    assert clusters[dup[0]["uid"]] == clusters[dup[1]["uid"]]


def test_prior_with_ids_in_one_source_is_near_the_truth(
        register: tuple[pa.Table, dict[str, str]]) -> None:
    records, truth = register
    records = _with_ids_only_in(records, "civil_registry")
    con = _scratch(records)
    model = training.train(con, max_pairs=5e5)
    con.close()
    true_prior = _true_prior(records, truth)
    prior = model.settings["probability_two_random_records_match"]
    assert 0.5 < prior / true_prior < 2.0, (prior, true_prior)
    # The former method assumed the ID rule's recall; on the same data it fails or is far off.
    with pytest.raises(ModelError, match="national IDs are shared"):
        training.train_from_national_ids(_scratch(records))
    # Random sampling rarely sees two records share an ID: that says u is tiny, not
    # unknown. "Same national ID" used to come out at m = u, worth 0 bits.
    same = _level(model, "national_id", "same national ID")
    assert math.log2(same["m"] / same["u"]) > 15


def test_names_without_signal_fail_loudly(register: tuple[pa.Table, dict[str, str]]) -> None:
    records, _ = register
    records = _with_ids_only_in(records, None)
    # One random permutation for every name column: a record's names are another's.
    perm = pa.array(np.random.default_rng(3).permutation(records.num_rows))
    names = [c for c in records.column_names
             if c.startswith(("given_", "family_", "father_", "grandfather_", "mother_"))
             or c == "name_keys"]
    for c in names:
        records = records.set_column(records.column_names.index(c), c,
                                     records.column(c).take(perm))
    con = _scratch(records)
    with pytest.raises(ModelError, match="given"):
        training.train(con, max_pairs=5e5)
    con.close()
