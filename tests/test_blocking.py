"""Blocking keys: a true pair survives a typo, a shifted birth year and a missing place;
every key stays capped.

The keys are built the way the batch builds them (:func:`linkage.engines.duckdb_sql.prepare_input`
on standardised rows) and the way real time does (:func:`key_of`, the resolver's index).
"""

from __future__ import annotations

import duckdb
import pyarrow as pa
import pytest

from linkage.canonical import STANDARD_COLUMNS
from linkage.engines import duckdb_sql as engine
from linkage.matching.definition import BLOCKING_KEYS, KEY_CAPS, key_cap, key_of
from linkage.matching.model import SHIPPED_MODELS_DIR, Model
from linkage.realtime.index import Index
from linkage.standardise import standardise

_TYPES = {"INTEGER": pa.int32(), "VARCHAR": pa.string()}


def _row(uid: str, **raw: str) -> dict:
    std = standardise(raw, source="s", birth_date_format="%d/%m/%Y",
                      age_reference_date=None, country_code="223")
    return {"uid": uid, "source": uid.split(":")[0], **std}


def _table(rows: list[dict]) -> pa.Table:
    schema = pa.schema([pa.field("uid", pa.string()), pa.field("source", pa.string())]
                       + [pa.field(c, _TYPES[t]) for c, t in STANDARD_COLUMNS.items()])
    return pa.Table.from_pylist(rows, schema=schema)


def _background(n: int = 300) -> list[dict]:
    """Other people of the same villages: blocks are shared, as in a register."""
    given = ["Mamadou", "Moussa", "Fatoumata", "Aminata", "Oumar", "Awa", "Seydou", "Kadiatou"]
    family = ["Traoré", "Coulibaly", "Diarra", "Keïta", "Koné", "Diallo", "Sangaré"]
    return [_row(f"bg:{i}", given_name=given[i % len(given)],
                 family_name=family[(i // len(given)) % len(family)],
                 birth_date=str(1950 + i % 60), sex="MF"[i % 2],
                 commune=["Kati", "Ségou"][i % 2], village=f"V{i % 9}")
            for i in range(n)]


def _batch_keys(rows: list[dict], max_block_size: int) -> dict[str, dict[str, str | None]]:
    """uid -> {key name: capped key} as the batch materialises them."""
    con = duckdb.connect()
    try:
        engine.prepare_input(con, _table(rows), max_block_size)
        cols = ", ".join(f"bk_{k}" for k in BLOCKING_KEYS)
        out = con.execute(f"SELECT uid, {cols} FROM linkage_input").fetchall()
    finally:
        con.close()
    return {r[0]: dict(zip(BLOCKING_KEYS, r[1:], strict=True)) for r in out}


def _reached(a: dict, b: dict, *, max_block_size: int = 100) -> list[str]:
    """The capped keys a and b share, in the batch, among a background of other people."""
    keys = _batch_keys([*_background(), a, b], max_block_size)
    ka, kb = keys[a["uid"]], keys[b["uid"]]
    return [k for k in BLOCKING_KEYS if ka[k] is not None and ka[k] == kb[k]]


# One letter changed, dropped, added or swapped, at the start, the middle or the end.
TYPOS = ["Sraoré", "Tiaore", "Traoer", "Traore", "Traorr", "Traoe", "Taore", "Trraore",
         "Rtaore"]


@pytest.mark.parametrize("typo", TYPOS)
def test_a_family_name_typo_and_a_year_off_by_one_are_reached(typo: str) -> None:
    a = _row("cr:1", given_name="Bakary", family_name="Traoré", birth_date="1980",
             sex="M", commune="Kati", village="Kalifabougou")
    b = _row("ct:1", given_name="Bakary", family_name=typo, birth_date="1981",
             sex="M", commune="Kati", village="Kalifabougou")
    assert _reached(a, b)


@pytest.mark.parametrize("typo", ["Bakari", "Bakry", "Bakarry", "Abkary", "Bakayr"])
def test_a_given_name_typo_without_a_place_is_reached(typo: str) -> None:
    # Nutrition rosters: a village, no commune; the civil registry: a commune.
    a = _row("cr:1", given_name="Bakary", family_name="Sissoko", birth_date="1980",
             sex="M", commune="Kati")
    b = _row("nu:1", given_name=typo, family_name="Sissoko", birth_date="1982",
             village="Kalifabougou")
    assert _reached(a, b)


def test_same_names_without_place_or_date_are_reached() -> None:
    a = _row("cr:1", given_name="Bakary", family_name="Sissoko")
    b = _row("ct:1", given_name="BAKARY", family_name="SISSOKO")
    assert _reached(a, b)


def test_swapped_name_columns_with_a_second_given_name_are_reached() -> None:
    # "SISSOKO Bakary Lamine" read as given "Sissoko", family "Bakary Lamine".
    a = _row("cr:1", given_name="Bakary", family_name="Sissoko", birth_date="1980",
             commune="Kati")
    b = _row("pw:1", given_name="Sissoko", family_name="Bakary Lamine", birth_date="1983",
             village="Kalifabougou")
    assert _reached(a, b)


def test_a_patronymic_typo_and_a_shifted_year_are_reached() -> None:
    a = _row("cr:1", given_name="Maxamed", father_name="Cabdi", grandfather_name="Xasan",
             birth_date="1975", commune="Balbala")
    b = _row("ct:1", given_name="Mohamed", father_name="Abdy", grandfather_name="Hassan",
             birth_date="1977", commune="Balbala")
    assert _reached(a, b)


def test_every_key_is_capped() -> None:
    """150 'Mamadou Traoré' with nothing else: every name-only key block is nulled."""
    crowd = [_row(f"ct:{i}", given_name="Mamadou", family_name="Traoré") for i in range(150)]
    pair = [_row("cr:1", given_name="Bakary", family_name="Sissoko"),
            _row("cr:2", given_name="Bakary", family_name="Sissoko")]
    keys = _batch_keys([*crowd, *pair], max_block_size=100)
    for uid in (r["uid"] for r in crowd):
        assert all(v is None for v in keys[uid].values()), keys[uid]
    # uncapped, the crowd shares its name-only keys
    uncapped = _batch_keys(crowd, max_block_size=1000)
    assert any(v is not None for v in uncapped["ct:0"].values())
    # the pair's own small block survives
    assert any(v is not None and v == keys["cr:2"][k] for k, v in keys["cr:1"].items())


def test_every_capped_block_holds_at_most_max_block_size_records() -> None:
    rows = [*_background(600)]
    keys = _batch_keys(rows, max_block_size=20)
    for name in BLOCKING_KEYS:
        sizes: dict[str, int] = {}
        for k in keys.values():
            if k[name] is not None:
                sizes[k[name]] = sizes.get(k[name], 0) + 1
        assert max(sizes.values(), default=0) <= 20, name


def test_real_time_reaches_the_same_pair() -> None:
    """The resolver's index blocks on the same keys (one definition)."""
    a = _row("cr:1", given_name="Bakary", family_name="Traoré", birth_date="1980",
             commune="Kati", village="Kalifabougou")
    b = _row("ct:1", given_name="Bakary", family_name="Traoer", birth_date="1981",
             village="Kalifabougou")
    rows = [*_background(), a]
    table = _table(rows).append_column("person_id", pa.array([r["uid"] for r in rows]))
    index = Index.from_arrow(table, Model.load(SHIPPED_MODELS_DIR / "sahel.json"),
                             max_block_size=100)
    found = {index.uids[i] for i in index.candidates(b)}
    assert "cr:1" in found
    assert any(key_of(a, c) is not None and key_of(a, c) == key_of(b, c)
               for c in BLOCKING_KEYS.values())


def test_a_full_date_with_a_year_typo_and_no_place_is_reached() -> None:
    a = _row("cr:1", given_name="Bakary", family_name="Sissoko", birth_date="13/02/1983")
    b = _row("ct:1", given_name="Bakary", family_name="Sisoko", birth_date="13/02/1973")
    assert "given_monthday" in _reached(a, b)


def test_one_name_and_a_postcode_are_reached_when_the_other_name_is_missing() -> None:
    # historical_50k: "fulton" alone in the given-name column, "david fulton" elsewhere.
    a = _row("a:1", given_name="Fulton", village="G4 0HZ")
    b = _row("b:1", given_name="David", family_name="Fulton", village="G4 0HZ")
    assert "name_last_village" in _reached(a, b)


def test_a_rare_name_alone_is_reached_and_a_common_one_is_capped_lower() -> None:
    a = _row("a:1", family_name="Kouyaté-Sidibé")
    b = _row("b:1", given_name="Moussa", family_name="Kouyaté-Sidibé")
    assert "family_alone" in _reached(a, b)
    # 40 records of one family name: over the single-name cap, under the project's cap.
    crowd = [_row(f"ct:{i}", given_name=f"G{i}", family_name="Keïta") for i in range(40)]
    keys = _batch_keys(crowd, max_block_size=100)
    assert 40 > key_cap("family_alone", 100) == KEY_CAPS["family_alone"]
    assert all(k["family_alone"] is None for k in keys.values())
    # real time skips the same block
    table = _table(crowd).append_column("person_id", pa.array([r["uid"] for r in crowd]))
    index = Index.from_arrow(table, Model.load(SHIPPED_MODELS_DIR / "sahel.json"),
                             max_block_size=100)
    query = _row("q:1", given_name="Zz", family_name="Keïta")
    assert len(index.candidates(query)) == 0


# ----------------------------------------------------------------------------- no place


_TYPO_YEAR_KEYS = {f"{k}{s}" for k in ("given3_family3_4y", "given_end3_family_end3_4y",
                                         "skeleton_given_family_4y") for s in ("", "_shifted")}


def _crowd(given: str, family: str, n: int = 120) -> list[dict]:
    """n namesakes over 60 years and no place: every place-free, year-free key of their
    names is over the cap, every 4-year bucket of them under it."""
    return [_row(f"cw:{i}", given_name=given, family_name=family,
                 birth_date=str(1950 + i % 60), sex="M") for i in range(n)]


@pytest.mark.parametrize("typo", ["Traoer", "Tiaore", "Traorre", "Rtaore"])
@pytest.mark.parametrize("year", ["1978", "1979", "1981", "1982"])
def test_a_common_name_with_a_typo_and_a_year_off_is_reached_without_a_place(
        typo: str, year: str) -> None:
    # Issue 11's typical miss: the civil registry has a commune, the nutrition roster
    # only a village; the family name has one typo, the age-derived year is off.
    a = _row("cr:1", given_name="Moussa", family_name="Traoré", birth_date="1980",
             sex="M", commune="Kati")
    b = _row("nu:1", given_name="Moussa", family_name=typo, birth_date=year, sex="M",
             village="Kalifabougou")
    keys = _batch_keys([*_background(), *_crowd("Moussa", "Traoré"), a, b], 100)
    ka, kb = keys["cr:1"], keys["nu:1"]
    reached = {k for k in BLOCKING_KEYS if ka[k] is not None and ka[k] == kb[k]}
    assert reached & _TYPO_YEAR_KEYS, reached
    # the place-free, year-free typo keys are capped on this name: the year bucket is
    # what reaches the pair
    assert ka["given3_family3"] is None and ka["consonants_given_family"] is None


@pytest.mark.parametrize("year", ["1978", "1979", "1980", "1981", "1982"])
def test_swapped_names_with_a_father_on_one_side_and_a_year_off_are_reached(year: str
                                                                             ) -> None:
    # "TRAORE Moussa" read given-first; the other record names the father too (so the
    # sorted name keys differ) and has no place.
    a = _row("cr:1", given_name="Moussa", family_name="Traoré", father_name="Bakary",
             birth_date="1980", commune="Kati")
    b = _row("ct:1", given_name="Traore", family_name="Moussa", birth_date=year)
    reached = _reached(a, b)
    assert {"given_family_4y", "given_family_4y_shifted"} & set(reached), reached


def test_a_patronymic_pair_in_either_order_and_a_year_off_is_reached() -> None:
    a = _row("cr:1", given_name="Hawa", father_name="Ahmed", grandfather_name="Hassan",
             birth_date="1987")
    b = _row("ct:1", given_name="Ahmed", father_name="Hawa", birth_date="1986")
    assert {"given_father_4y", "given_father_4y_shifted"} & set(_reached(a, b))


def test_a_name_in_the_other_column_without_date_or_place_is_reached() -> None:
    # historical_50k: "Fulton" alone in the given-name column, "David Fulton" elsewhere,
    # no birth date, no place: a rare name alone, in any column.
    a = _row("a:1", given_name="Fulton")
    b = _row("b:1", given_name="David", family_name="Fulton")
    assert _reached(a, b) == ["name_last_alone"]


def test_the_pair_part_sorts_two_columns_and_is_null_with_either() -> None:
    from linkage.matching.definition import Part, key_sql, pair

    part = pair("given_key", "family_key")
    rows = [{"given_key": "traur", "family_key": "musa"},
            {"given_key": "musa", "family_key": "traur"},
            {"given_key": "musa", "family_key": "musa"},
            {"given_key": "musa", "family_key": None},
            {"given_key": None, "family_key": "musa"}]
    con = duckdb.connect()
    con.register("t", pa.Table.from_pylist(rows))
    got = [r[0] for r in con.execute(f"SELECT {key_sql((part,))} FROM t").fetchall()]
    con.close()
    assert got == ["musa traur", "musa traur", "musa musa", None, None]
    assert got == [key_of(r, (part,)) for r in rows]
    with pytest.raises(ValueError):
        Part("given_key", "pair")  # a pair needs its second column
    with pytest.raises(ValueError):
        Part("given_key", "first", 3, other="family_key")


def test_new_keys_stay_capped_on_a_crowd() -> None:
    """200 identical namesakes of one year: no key of theirs survives (their blocks are
    crowds), however many keys a record has."""
    crowd = [_row(f"ct:{i}", given_name="Mamadou", family_name="Traoré", birth_date="1980",
                  sex="M") for i in range(200)]
    keys = _batch_keys(crowd, max_block_size=100)
    assert all(v is None for v in keys["ct:0"].values()), keys["ct:0"]
