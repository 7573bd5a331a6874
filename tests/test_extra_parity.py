"""Extra fields' comparisons agree everywhere they are compiled: Splink's SQL on DuckDB,
the real-time numpy evaluator, blocking keys in SQL and Python (Splink's Spark SQL: in
``tests/test_spark.py``, which shares one Spark session).

One field of every kind, values standardised as ingest does (so helper columns are what
the register would hold), pairs drawn so that every level of every extra comparison is
reached (the test says which one no pair reached).
"""

from __future__ import annotations

import random
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from splink import DuckDBAPI, Linker

from linkage.canonical import STANDARD_COLUMNS
from linkage.matching.definition import key_of, key_sql
from linkage.matching.extra import Definition, ExtraField
from linkage.matching.levels import INT_COLUMNS, is_number_column
from linkage.matching.model import Model
from linkage.matching.splink_settings import settings_dict
from linkage.realtime.index import Index, _Pairs

DEFN = Definition((
    ExtraField("job", "exact", term_frequencies=True, block=("alone",)),
    ExtraField("birth_place", "name", term_frequencies=True, block=("given_name",)),
    ExtraField("street", "fuzzy", thresholds=(0.9, 0.75)),
    ExtraField("visit", "date", tolerances=(7, 400)),
    ExtraField("income", "numeric", tolerances=(0.5, 10)),
    ExtraField("postcode", "code", separator=" ", prefixes=(1,), block=("alone",)),
    ExtraField("admin", "code", prefixes=(4, 2)),
    ExtraField("email", "tokens", block=("alone",)),
))

RAW = {
    "job": ["Farmer", "farmer", "Teacher", "Nurse"],
    # same key (Segou / Segu), similar spellings with other keys (Bougouni / Bougounie,
    # Bougoula / Bougounie), different
    "birth_place": ["Segou", "Segu", "Bougouni", "Bougounie", "Bougoula", "Kayes"],
    "street": ["rue 12 bamako", "rue 12 bamak", "rue 12 kati", "avenue de la paix",
               "avenue de paix"],
    "visit": ["2024-01-01", "2024-01-05", "2024-10-01", "2021-01-01", "2024-01-10"],
    "income": ["10", "10.4", "15", "100", "10.0"],
    "postcode": ["TF7 3EQ", "TF7 4AB", "SW1A 1AA", "TF7"],
    "admin": ["ML12034", "ML12099", "ML45001", "SN01"],
    "email": ["a@x.org", "a@x.org; b@y.org", "b@y.org", "c@z.org", "b@y.org, a@x.org"],
}


def _record(rng: random.Random) -> dict[str, Any]:
    rec: dict[str, Any] = dict.fromkeys(STANDARD_COLUMNS)
    rec["given_key"] = rng.choice(["mamad", "fatm", None])
    for f in DEFN.extra:
        rec.update(dict.fromkeys(f.columns()))
        if rng.random() < 0.85:
            rec.update(f.standardise(rng.choice(RAW[f.name])))
    return rec


def _table(rows: list[dict], prefix: str) -> pa.Table:
    data: dict[str, Any] = {"uid": [f"{prefix}{i}" for i in range(len(rows))],
                            "source": ["s"] * len(rows),
                            "person_id": [f"P{prefix}{i}" for i in range(len(rows))]}
    for c in (*STANDARD_COLUMNS, *DEFN.columns):
        typ = (pa.int32() if c in INT_COLUMNS else pa.float64() if is_number_column(c)
               else pa.string())
        data[c] = pa.array([r[c] for r in rows], typ)
    return pa.table(data)


def _model() -> Model:
    """The definition's settings with plausible hand-set m and u on every level."""
    settings = settings_dict(definition=DEFN)
    settings["probability_two_random_records_match"] = 1e-3
    for comp in settings["comparisons"]:
        levels = [lvl for lvl in comp["comparison_levels"] if not lvl.get("is_null_level")]
        for k, lvl in enumerate(levels):
            lvl.setdefault("m_probability", 0.9 ** k / 3)
            lvl.setdefault("u_probability", 0.05 * (k + 1))
    return Model("parity", settings, {}, definition=DEFN.sha256, extra=DEFN.extra)


EXTRA = [f.name for f in DEFN.extra]


def _gammas(api: Any, model: Model, dialect: str, both: pa.Table, fetch: Any) -> dict:
    s = dict(model.settings_for(dialect), retain_intermediate_calculation_columns=True,
             blocking_rules_to_generate_predictions=[{"blocking_rule": "1=1"}])
    df = Linker(api.register(both), s).inference.predict()
    cols = ", ".join(f"gamma_{c}" for c in EXTRA)
    return {(r[0], r[1]): tuple(r[2:]) for r in
            fetch(f"SELECT uid_l, uid_r, {cols}, match_weight FROM {df.physical_name}")}


def extra_cases() -> tuple[Model, pa.Table, dict]:
    """The hand-set model, 70 records and DuckDB's levels (and weight) of every pair."""
    rng = random.Random(3)
    both = _table([_record(rng) for _ in range(70)], "r")
    model = _model()
    con = duckdb.connect()
    try:
        expected = _gammas(DuckDBAPI(con), model, "duckdb", both.drop(["person_id"]),
                           lambda q: con.execute(q).fetchall())
    finally:
        con.close()
    return model, both, expected


@pytest.fixture(scope="module")
def cases() -> tuple[Model, pa.Table, dict]:
    return extra_cases()


def test_every_extra_level_agrees_between_duckdb_and_numpy(cases: tuple) -> None:
    model, both, expected = cases
    index = Index.from_arrow(both, model, max_block_size=1000)
    uids = both.column("uid").to_pylist()
    at = {u: i for i, u in enumerate(uids)}
    pairs = sorted(expected)
    li = np.array([at[a] for a, _ in pairs])
    ri = np.array([at[b] for _, b in pairs])
    _, pos, _, _ = index._score(_Pairs(index, ri, li=li))
    names = [c.name for c in index.comparisons]
    seen = set()
    for k, pair in enumerate(pairs):
        got = tuple(index.comparisons[names.index(n)].levels[pos[k, names.index(n)]].cvv
                    for n in EXTRA)
        assert got == expected[pair][:-1], (pair, dict(zip(EXTRA, got, strict=True)))
        seen.update(zip(EXTRA, got, strict=True))
    # A query the index has never seen, scored against every record, agrees too.
    query = {c: both.column(c)[0].as_py() for c in both.column_names}
    _, qpos, _, _ = index._score(_Pairs(index, np.arange(1, len(uids)), row=query,
                                        lcodes=index._encode(query)))
    for k, uid in enumerate(uids[1:]):
        key = (uids[0], uid) if (uids[0], uid) in expected else (uid, uids[0])
        got = tuple(index.comparisons[names.index(n)].levels[qpos[k, names.index(n)]].cvv
                    for n in EXTRA)
        assert got == expected[key][:-1], (key, got)
    every = {(f.name, len(f.comparison().levels) - 2 - i)
             for f in DEFN.extra for i in range(len(f.comparison().levels) - 1)}
    assert every - seen == set(), f"levels no pair reached: {sorted(every - seen)}"


def test_extra_blocking_keys_agree_between_sql_and_python(cases: tuple) -> None:
    _, both, _ = cases
    keys = {k: v for k, v in DEFN.blocking_keys.items() if k.startswith("x_")}
    assert set(keys) == {"x_job", "x_birth_place_given_name", "x_postcode", "x_email"}
    con = duckdb.connect()
    con.register("recs", both)
    sql = ", ".join(f"{key_sql(cols)} AS {name}" for name, cols in keys.items())
    got = con.execute(f"SELECT {sql} FROM recs").fetchall()
    con.close()
    for row, ks in zip(both.to_pylist(), got, strict=True):
        assert list(ks) == [key_of(row, cols) for cols in keys.values()]
    assert any(k[3] and " " not in k[3] for k in got)  # an e-mail key is one address


def test_every_block_option_agrees_between_sql_and_python() -> None:
    """``block:`` with a name token, the given initial, the birth year, a place or another
    extra field: the keys SQL (the batch) and key_of (real time) compute are the same."""
    from linkage.matching.extra import BLOCK_WITH

    defn = Definition((ExtraField("birth_place", "exact", block=(*BLOCK_WITH, "extra.job")),
                       ExtraField("job", "exact")))
    keys = {k: v for k, v in defn.blocking_keys.items() if k.startswith("x_")}
    assert set(keys) == {"x_birth_place", *(f"x_birth_place_{b}" for b in BLOCK_WITH
                                            if b != "alone"), "x_birth_place_job"}
    assert keys["x_birth_place_job"] == ("x_birth_place", "x_job")
    rng = random.Random(7)
    rows = []
    for _ in range(200):
        row: dict[str, Any] = dict.fromkeys(STANDARD_COLUMNS)
        row.update(dict.fromkeys(defn.columns))
        pick = lambda values: rng.choice([*values, None])  # noqa: E731
        row.update(given_key=pick(["mamad", "fatm"]), family_key=pick(["traur"]),
                   father_key=pick(["bakar"]), name_keys=pick(["fatm", "mamad traur"]),
                   birth_year=pick([1980, 1981]), commune=pick(["kati"]),
                   village=pick(["v1", "v2"]), x_birth_place=pick(["segou", "kayes"]),
                   x_job=pick(["farmer"]))
        rows.append(row)
    con = duckdb.connect()
    con.register("recs", pa.Table.from_pylist(rows))
    sql = ", ".join(f"{key_sql(cols)} AS {name}" for name, cols in keys.items())
    got = con.execute(f"SELECT {sql} FROM recs").fetchall()
    con.close()
    for row, ks in zip(rows, got, strict=True):
        assert list(ks) == [key_of(row, cols) for cols in keys.values()]
    for i in range(len(keys)):  # every key is sometimes set
        assert any(ks[i] is not None for ks in got), list(keys)[i]
