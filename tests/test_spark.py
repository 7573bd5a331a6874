"""The Spark engine on real local Spark: the same persons as DuckDB, the same SQL results.

One small local session (``local[2]``) serves the whole module: starting a JVM costs
seconds, and every test here needs one. Needs pyspark (the ``test`` extra) and Java 17
(``.ci/run`` installs it when missing).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from splink import DuckDBAPI, Linker, SparkAPI
from test_parity import _RECORD, _related, _table

from linkage.batch.pipeline import run
from linkage.canonical import STANDARD_COLUMNS
from linkage.config import load_project
from linkage.engines.spark import register_similarity_functions, session
from linkage.matching import splink_internals
from linkage.matching.definition import BLOCKING_KEYS, COMPARISONS, key_sql
from linkage.matching.model import SHIPPED_MODELS_DIR, Model
from linkage.synthetic.generate import generate

PERSONS = 120


@pytest.fixture(scope="module")
def spark() -> Any:
    s = session("local[2]", driver_memory="1g", shuffle_partitions=1)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load(SHIPPED_MODELS_DIR / "sahel.json")


def persons(register: Path) -> list[tuple[str, ...]]:
    """The published persons as sets of record uids (person IDs themselves are minted)."""
    con = duckdb.connect(str(register), read_only=True)
    try:
        rows = con.execute("SELECT list(uid ORDER BY uid) FROM person_records "
                           "GROUP BY person_id").fetchall()
        links = con.execute("SELECT uid_l, uid_r, match_weight FROM links "
                            "ORDER BY uid_l, uid_r").fetchall()
    finally:
        con.close()
    return sorted(tuple(r[0]) for r in rows), links


@pytest.fixture(scope="module")
def night1(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One generated register (3 % of the cash-transfer rows held back for night 2) run
    once on each engine: the batch test compares them, the incremental test goes on from
    the Spark one. (A Spark run costs a minute of planning on any data, so the module
    runs as few as its points need.)"""
    base = tmp_path_factory.mktemp("spark_nights")
    generate(persons=PERSONS, profile="sahel", seed=5, out=base / "spark",
             model=SHIPPED_MODELS_DIR / "sahel.json")
    data = next((base / "spark" / "data").glob("cash_transfer*"))
    lines = data.read_text(encoding="latin-1").splitlines(keepends=True)
    held = max(3, len(lines) * 3 // 100)
    data.write_text("".join(lines[:-held]), encoding="latin-1")
    shutil.copytree(base / "spark", base / "duckdb")
    results = {}
    for engine in ("duckdb", "spark"):
        project = load_project(base / engine / "project.yaml")
        res = run(project, progress=lambda _: None, engine=engine, spark=spark)
        assert res.summary["engine"] == engine
        results[engine] = (res.summary, *persons(project.register))
    return {"base": base, "data": data, "lines": lines, "results": results}


def test_batch_on_spark_publishes_the_same_persons_as_duckdb(night1: dict[str, Any]) -> None:
    results = night1["results"]
    (s_duck, p_duck, l_duck), (s_spark, p_spark, l_spark) = results["duckdb"], results["spark"]
    assert len(p_duck) < sum(s["records"] for s in s_duck["sources"].values())  # duplicates
    assert p_spark == p_duck
    assert s_spark["comparisons_by_rule"] == s_duck["comparisons_by_rule"]
    assert s_spark["capped_records_by_rule"] == s_duck["capped_records_by_rule"]
    assert [(a, b) for a, b, _ in l_spark] == [(a, b) for a, b, _ in l_duck]
    for (_, _, w_spark), (_, _, w_duck) in zip(l_spark, l_duck, strict=True):
        assert w_spark == pytest.approx(w_duck, abs=1e-9)


@pytest.mark.parametrize("in_list", [True, False], ids=["in-list", "broadcast-join"])
def test_spark_engine_caps_blocks_like_duckdb(spark: Any, tmp_path: Path, in_list: bool,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """A block over max_block_size is nulled on Spark for exactly the records DuckDB nulls,
    both ways Spark nulls them (a literal set, or a join for keys with many blocks)."""
    from linkage.engines import spark as spark_engine
    from linkage.engines.duckdb import DuckDBEngine
    from linkage.engines.spark import SparkEngine

    if not in_list:
        monkeypatch.setattr(spark_engine, "MAX_IN_LIST", 0)

    # Five records share a phone, two another: a cap of 3 nulls the first block only.
    phones = ["22376000001"] * 5 + ["22376000002"] * 2
    table = _table([dict.fromkeys(STANDARD_COLUMNS) | {"phone": p} for p in phones], "c"
                   ).drop(["person_id"])
    out = {}
    for name, eng in (("duckdb", DuckDBEngine("256MB")),
                      ("spark", SparkEngine(spark, scratch_dir=tmp_path))):
        try:
            report = eng.load(table, 3)
            got = (eng.con.sql("SELECT uid, bk_phone FROM linkage_input").to_arrow_table()
                   if name == "duckdb" else eng.input_arrow().select(["uid", "bk_phone"]))
            out[name] = (report.capped_records_by_rule,
                         sorted(zip(got.column("uid").to_pylist(),
                                    got.column("bk_phone").to_pylist(), strict=True)))
        finally:
            eng.close()
    assert out["spark"] == out["duckdb"]
    assert out["duckdb"][0]["phone"] == 5
    assert [k for _, k in out["duckdb"][1]].count(None) == 5


def _gammas(api: Any, dialect: str, model: Model, both: pa.Table,
            fetch: Any) -> dict[tuple[str, str], tuple]:
    """Splink's comparison levels and match weight of every pair of ``both``."""
    settings_dict = dict(model.settings_for(dialect), retain_intermediate_calculation_columns=True,
                         blocking_rules_to_generate_predictions=[{"blocking_rule": "1=1"}])
    linker = Linker(api.register(both), settings_dict)
    df = linker.inference.predict()
    cols = ", ".join(f"gamma_{c.name}" for c in COMPARISONS)
    rows = fetch(f"SELECT uid_l, uid_r, {cols}, match_weight FROM {df.physical_name}")
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


#: Two full dates with day and month swapped: with only two examples, hypothesis can miss
#: that level, so every example carries this pair.
_SWAPPED = [dict.fromkeys(STANDARD_COLUMNS) | {
    "birth_year": 1980, "birth_month": m, "birth_day": d, "birth_precision": "day",
    "birth_date": f"1980-{m:02d}-{d:02d}"} for m, d in ((1, 2), (2, 1))]


#: A pair on which the Jaro-Winkler of Splink's jar (0.883) and the standard one of DuckDB
#: and jellyfish (0.903) fall on either side of the 0.9 level: the engine replaces the jar's.
_JAR_DIFFERS = [dict.fromkeys(STANDARD_COLUMNS) | {"family_std": f, "family_key": k}
                for f, k in (("sameakeh", "sameak"), ("samake", "samak"))]


def test_every_level_and_key_agrees_between_spark_and_duckdb(spark: Any, model: Model) -> None:
    """Splink's Spark SQL of every level (Jaro-Winkler and Damerau-Levenshtein as the
    engine registers them, over the jar's) and every blocking key's Spark SQL give
    DuckDB's results on generated cases."""
    seen: set[tuple[str, int]] = set()
    names = [c.name for c in COMPARISONS]

    # Spark costs seconds per Splink run whatever the size: few examples, many pairs each
    # (40 x 40 records, 3,160 pairs), and no shrinking (the failure message shows the pair).
    @settings(max_examples=2, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate])
    @given(lefts=st.lists(_RECORD, min_size=40, max_size=40), data=st.data())
    def check(lefts: list[dict], data: st.DataObject) -> None:
        rights = data.draw(st.lists(_related(lefts), min_size=40, max_size=40))
        both = pa.concat_tables([_table(lefts, "l"), _table(rights, "r"),
                                 _table(_SWAPPED, "s"), _table(_JAR_DIFFERS, "j")]
                                ).drop(["person_id"])
        con = duckdb.connect()
        try:
            expected = _gammas(DuckDBAPI(con), "duckdb", model, both,
                               lambda q: con.execute(q).fetchall())
            con.register("recs", both)
            keys = ", ".join(f"{key_sql(cols)} AS bk_{n}" for n, cols in BLOCKING_KEYS.items())
            duck_keys = con.execute(f"SELECT uid, {keys} FROM recs ORDER BY uid").fetchall()
        finally:
            con.close()
        # A fresh SparkAPI per example: Splink caches term-frequency tables per API object.
        spark_api = SparkAPI(spark_session=spark, break_lineage_method="persist")
        register_similarity_functions(spark)  # as the engine does, over the jar's
        got = _gammas(spark_api, "spark", model, both,
                      lambda q: [tuple(r) for r in spark.sql(q).collect()])
        assert got.keys() == expected.keys()
        for pair, vector in expected.items():
            assert got[pair][:-1] == vector[:-1], (pair, dict(zip(names, got[pair], strict=False)),
                                                   dict(zip(names, vector, strict=False)))
            assert got[pair][-1] == pytest.approx(vector[-1], abs=1e-9)
            seen.update(zip(names, vector[:-1], strict=True))
        spark.createDataFrame(both).createOrReplaceTempView("parity_recs")
        keys = ", ".join(f"{key_sql(cols, 'spark')} AS bk_{n}"
                         for n, cols in BLOCKING_KEYS.items())
        spark_keys = [tuple(r) for r in
                      spark.sql(f"SELECT uid, {keys} FROM parity_recs ORDER BY uid").collect()]
        assert spark_keys == duck_keys

    check()
    every = {(c.name, lvl.cvv) for c, levels in
             zip(COMPARISONS, splink_internals.scorecard(model.settings).comparisons,
                 strict=True) for lvl in levels[1]}
    assert every - seen == set(), f"levels no generated pair reached: {sorted(every - seen)}"


def test_incremental_night_on_spark_publishes_what_a_full_run_does(
        spark: Any, night1: dict[str, Any]) -> None:
    """Night 2 on Spark, incremental (Splink's blocking restricted to pairs touching a
    new or changed record and pairs inside near components), against a --full night 2
    on a copy of the same register: the same persons, IDs, events, links and comparisons
    per rule. The full night runs on DuckDB, which the test above holds to Spark's
    results (a second full Spark run would add a minute and no point)."""
    from test_incremental import _night2_edits, ids_and_events

    base, data, lines = night1["base"], night1["data"], night1["lines"]
    tomorrow = _night2_edits(load_project(base / "spark" / "project.yaml").register, lines)
    shutil.copytree(base / "spark", base / "full")
    for copy in ("spark", "full"):
        (base / copy / "data" / data.name).write_text("".join(tomorrow), encoding="latin-1")
    inc = run(load_project(base / "spark" / "project.yaml"), progress=lambda _: None,
              engine="spark", spark=spark)
    full = run(load_project(base / "full" / "project.yaml"), progress=lambda _: None,
               engine="duckdb", full=True)
    assert inc.summary["mode"]["mode"] == "incremental", inc.summary["mode"]
    assert inc.summary["engine"] == "spark" and full.summary["engine"] == "duckdb"
    assert inc.summary["comparisons_by_rule"] == full.summary["comparisons_by_rule"]
    reg_inc = load_project(base / "spark" / "project.yaml").register
    reg_full = load_project(base / "full" / "project.yaml").register
    (p_inc, l_inc), (p_full, l_full) = persons(reg_inc), persons(reg_full)
    assert p_inc == p_full
    assert [(a, b) for a, b, _ in l_inc] == [(a, b) for a, b, _ in l_full]
    for (_, _, w_inc), (_, _, w_full) in zip(l_inc, l_full, strict=True):
        assert w_inc == pytest.approx(w_full, abs=1e-9)
    assert ids_and_events(reg_inc) == ids_and_events(reg_full)


def test_extra_fields_compile_for_spark_and_agree_with_duckdb(spark: Any) -> None:
    """A project's extra comparisons (one of every kind) compiled for Splink's Spark
    backend give DuckDB's levels and weights (tests/test_extra_parity.py's cases)."""
    from test_extra_parity import _gammas, extra_cases

    model, both, expected = extra_cases()
    spark_sql = str(model.settings_for("spark"))
    assert "array_intersect" in spark_sql and "list_intersect" not in spark_sql
    api = SparkAPI(spark_session=spark, break_lineage_method="persist")
    got = _gammas(api, model, "spark", both.drop(["person_id"]),
                  lambda q: [tuple(r) for r in spark.sql(q).collect()])
    assert got.keys() == expected.keys()
    for pair, vector in expected.items():
        assert got[pair][:-1] == vector[:-1], pair
        assert got[pair][-1] == pytest.approx(vector[-1], abs=1e-9)
