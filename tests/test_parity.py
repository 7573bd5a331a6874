"""Parity by construction, proven: Splink's SQL on DuckDB and the real-time evaluator agree.

Both are compiled from :mod:`linkage.matching.definition`. Hypothesis generates records
over every standardised column from small pools of values (so that equal, similar, swapped
and NULL values meet often), Splink scores every left x right pair on DuckDB
(``score_pairs``), and the resolver's numpy evaluator assigns levels to the same pairs,
both for a query record the register has never seen and for records inside the index (as
a group is enrolled). Every level of every comparison must be reached, so a new level in
the definition is covered without further work, or this test says which level no
generated pair reached.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splink import DuckDBAPI, Linker

from linkage.canonical import STANDARD_COLUMNS
from linkage.matching import splink_internals
from linkage.matching.definition import BLOCKING_KEYS, COMPARISONS, key_of, key_sql
from linkage.matching.levels import INT_COLUMNS
from linkage.matching.model import SHIPPED_MODELS_DIR, Model
from linkage.matching.splink_settings import blocking_rules
from linkage.realtime.index import Index, _Pairs

_NAMES = ["mamadou", "mahamadou", "mamadu", "fatoumata", "fatoumta", "aminata", "amina",
          "ousmane", "usman", "traore", "traoer", "coulibaly", "koulibaly", "ali moussa"]
_KEYS = ["mamad", "fatm", "amin", "usman", "trar", "kulbl", "ali", "musa", "aua", "haua"]
_POOLS: dict[str, list] = {
    "given_std": _NAMES, "given_first": _NAMES, "given_key": _KEYS, "given_phonetic": _KEYS,
    "family_std": _NAMES, "family_key": _KEYS, "father_std": _NAMES, "father_key": _KEYS,
    "grandfather_std": _NAMES, "grandfather_key": _KEYS, "mother_key": ["amin trar", "fatm"],
    "sex": ["M", "F"], "birth_year": [1980, 1981, 1982, 1985, 1986, 1990],
    "birth_month": [1, 2, 3], "birth_day": [1, 2, 3],
    "birth_precision": ["day", "day", "month", "year", "placeholder", "age"],
    "birth_date": ["1980-01-02", "1980-02-01", "1981-03-03"],
    "national_id": ["AB123", "AB132", "AB124", "ZZ999"], "phone": ["22376000001", "22376000002"],
    "region": ["kayes", "sikasso"], "commune": ["kou", "bla"], "village": ["v1", "v2"],
    "household_id": ["ct:1", "ct:2"],
}
assert set(_POOLS) | {"name_keys"} == set(STANDARD_COLUMNS), "a column has no generator"


def _value(col: str) -> st.SearchStrategy:
    if col == "name_keys":  # sorted, space-joined keys, as standardisation writes them
        return st.lists(st.sampled_from(_KEYS), max_size=3, unique=True).map(
            lambda ks: " ".join(sorted(ks)) or None)
    return st.sampled_from([*_POOLS[col], None])


_RECORD = st.fixed_dictionaries({c: _value(c) for c in STANDARD_COLUMNS})


@st.composite
def _related(draw: st.DrawFn, lefts: list[dict]) -> dict:
    """A record drawn afresh, or a copy of a left record with a few columns changed."""
    if draw(st.booleans()):
        return draw(_RECORD)
    rec = dict(draw(st.sampled_from(lefts)))
    for col in draw(st.lists(st.sampled_from(sorted(STANDARD_COLUMNS)), max_size=4)):
        rec[col] = draw(_value(col))
    if draw(st.booleans()):  # day and month swapped: another date string, same year
        rec["birth_month"], rec["birth_day"] = rec["birth_day"], rec["birth_month"]
        rec["birth_date"] = draw(_value("birth_date"))
        rec["birth_precision"] = draw(st.sampled_from(["day", rec["birth_precision"]]))
    return rec


def _table(rows: list[dict], prefix: str) -> pa.Table:
    data = {"uid": [f"{prefix}{i}" for i in range(len(rows))],
            "source": ["s"] * len(rows), "person_id": [f"P{prefix}{i}" for i in range(len(rows))]}
    for c in STANDARD_COLUMNS:
        data[c] = pa.array([r[c] for r in rows],
                           pa.int32() if c in INT_COLUMNS else pa.string())
    return pa.table(data)


@pytest.fixture(scope="module")
def model() -> Model:
    return Model.load(SHIPPED_MODELS_DIR / "sahel.json")


def _splink_levels(model: Model, left: pa.Table, right: pa.Table) -> dict[tuple, dict]:
    """Splink's comparison vector values of every left x right pair, on DuckDB."""
    con = duckdb.connect()
    both = pa.concat_tables([left, right]).drop(["person_id"])
    keys = {f"bk_{k}": pa.nulls(both.num_rows, pa.string()) for k in BLOCKING_KEYS}
    for name, arr in keys.items():
        both = both.append_column(name, arr)
    con.register("recs", both)
    con.execute("CREATE TABLE parity_input AS SELECT * FROM recs")
    # Blocking belongs to the engine, not the model file: today's keys (as make_linker).
    settings_dict = dict(model.settings, retain_intermediate_calculation_columns=True,
                         blocking_rules_to_generate_predictions=[
                             r.get_blocking_rule("duckdb").as_dict() for r in blocking_rules()])
    linker = Linker(DuckDBAPI(con).register("parity_input"), settings_dict)
    cols = ", ".join(f"gamma_{c.name}" for c in COMPARISONS)
    lrows = [dict(r, **{k: None for k in keys}) for r in left.drop(["person_id"]).to_pylist()]
    rrows = [dict(r, **{k: None for k in keys}) for r in right.drop(["person_id"]).to_pylist()]
    df = linker.inference.score_pairs(lrows, rrows)
    out = con.execute(f"SELECT uid_l, uid_r, {cols} FROM {df.physical_name}").fetchall()
    con.close()
    return {(r[0], r[1]): dict(zip([c.name for c in COMPARISONS], r[2:], strict=True))
            for r in out}


def _numpy_levels(index: Index, li: np.ndarray | None, row: dict | None,
                  ri: np.ndarray) -> list[dict]:
    pairs = _Pairs(index, ri, li=li) if li is not None else _Pairs(
        index, ri, row=row, lcodes=index._encode(row))
    _, pos, _, _ = index._score(pairs)
    return [{c.name: c.levels[pos[k, j]].cvv for j, c in enumerate(index.comparisons)}
            for k in range(len(ri))]


def test_every_level_agrees_with_splink_on_duckdb(model: Model) -> None:
    seen: set[tuple[str, int]] = set()

    # 14 fixed examples (derandomised) reach every level of the model, which the end of
    # the test asserts; each costs Splink's set-up (1.5 s) and two index builds, so more
    # examples cost the suite's budget and found nothing more (25 were run until
    # 2026-12-01).
    @settings(max_examples=14, deadline=None, derandomize=True)
    @given(lefts=st.lists(_RECORD, min_size=8, max_size=14), data=st.data())
    def check(lefts: list[dict], data: st.DataObject) -> None:
        rights = data.draw(st.lists(_related(lefts), min_size=8, max_size=14))
        left, right = _table(lefts, "l"), _table(rights, "r")
        expected = _splink_levels(model, left, right)
        ruids = right.column("uid").to_pylist()
        ri = np.arange(len(rights))
        # a query the register has never seen: left values absent from the index
        alone = Index.from_arrow(right, model, max_block_size=1000)
        for lrow in left.to_pylist():
            got = _numpy_levels(alone, None, lrow, ri)
            for ruid, g in zip(ruids, got, strict=True):
                assert g == expected[(lrow["uid"], ruid)], (lrow, rights[ruids.index(ruid)])
        # records inside the index, scored row against row (group enrolment)
        together = Index.from_arrow(pa.concat_tables([left, right]), model,
                                    max_block_size=1000)
        li = np.repeat(np.arange(len(lefts)), len(rights))
        rr = np.tile(np.arange(len(lefts), len(lefts) + len(rights)), len(lefts))
        got = _numpy_levels(together, li, None, rr)
        luids = left.column("uid").to_pylist()
        for k, g in enumerate(got):
            assert g == expected[(luids[li[k]], ruids[rr[k] - len(lefts)])]
        for g in expected.values():
            seen.update(g.items())

    check()
    every = {(c.name, lvl.cvv) for c, levels in
             zip(COMPARISONS, splink_internals.scorecard(model.settings).comparisons,
                 strict=True) for lvl in levels[1]}
    assert every - seen == set(), f"levels no generated pair reached: {sorted(every - seen)}"


@settings(max_examples=60, deadline=None, derandomize=True)
@given(rows=st.lists(_RECORD, min_size=1, max_size=20))
def test_blocking_keys_agree_between_sql_and_python(rows: list[dict]) -> None:
    con = duckdb.connect()
    con.register("recs", _table(rows, "x"))
    sql = ", ".join(f"{key_sql(cols)} AS {name}" for name, cols in BLOCKING_KEYS.items())
    got = con.execute(f"SELECT {sql} FROM recs").fetchall()
    con.close()
    for row, keys in zip(rows, got, strict=True):
        assert list(keys) == [key_of(row, cols) for cols in BLOCKING_KEYS.values()]


def test_splink_internals_still_where_we_read_them(model: Model) -> None:
    """Fails loudly when a Splink upgrade moves the private attributes scoring reads."""
    card = splink_internals.scorecard(model.settings)
    assert -40 < card.prior_weight < 0
    assert [name for name, _ in card.comparisons] == [c.name for c in COMPARISONS]
    for comp, (_, levels) in zip(COMPARISONS, card.comparisons, strict=True):
        assert len(levels) == len(comp.levels)
        assert levels[0].weight == 0.0  # the null level
        assert [lvl.label for lvl in levels] == [lvl.label for lvl in comp.levels]
        tf = [lvl.tf_column for lvl in levels]
        assert tf == [lvl.tf_column for lvl in comp.levels]
        for lvl in levels:
            assert lvl.tf_column is None or lvl.log2_u_exact < 0
