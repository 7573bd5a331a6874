"""Matching behaviour pinned with hand-written pairs, scored by the shipped models.

Term frequencies come from a generated population, so common names ("Traoré") weigh
what they weigh in a real register.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import prepared_scratch

from linkage.engines import duckdb_sql as engine
from linkage.matching.model import BLOCKING_KEYS, SHIPPED_MODELS_DIR, Model
from linkage.standardise import standardise

MATCH = 0.8  # the default match threshold


def _linker(tmp: Path, profile: str) -> Any:
    con = prepared_scratch(tmp, persons=600, profile=profile, seed=3)
    return engine.make_linker(con, Model.load(SHIPPED_MODELS_DIR / f"{profile}.json").settings)


@pytest.fixture(scope="module")
def sahel(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _linker(tmp_path_factory.mktemp("sahel"), "sahel")


@pytest.fixture(scope="module")
def horn(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return _linker(tmp_path_factory.mktemp("horn"), "horn")


def record(uid: str, *, fmt: str = "%d/%m/%Y", order: str | None = None, **raw: str) -> dict:
    std = standardise(raw, source=uid.split(":")[0], birth_date_format=fmt,
                      age_reference_date=None, country_code="223", name_order=order)
    keys = {f"bk_{k}": None for k in BLOCKING_KEYS}  # blocking keys play no part in a score
    return {"uid": uid, "source": uid.split(":")[0], **std, **keys}


def probability(linker: Any, left: dict, right: dict) -> float:
    df = linker.inference.score_pairs([left], [right])
    ((p,),) = linker._db_api._con.execute(  # the scratch connection Splink works in
        f"SELECT match_probability FROM {df.physical_name}").fetchall()
    return float(p)


def test_transliterated_pair_matches(sahel: Any) -> None:
    a = record("cr:1", given_name="Mahamadou", family_name="Koulibaly", sex="M",
               birth_date="14/03/1987", village="Banamba", phone="76 12 34 56")
    b = record("ct:9", full_name="COULIBALY Mamadou", order="family_given", sex="H",
               birth_date="14/03/1987", village="Banamba", phone="+223 76123456")
    assert probability(sahel, a, b) >= MATCH


def test_twins_do_not_match(sahel: Any) -> None:
    # Twins: same family, date, village, phone and mother; only the given name differs.
    common = dict(family_name="Traoré", birth_date="02/05/2015", village="Kati",
                  phone="+223 76 00 11 22", mother_name="Aminata Diarra")
    a = record("nu:1", given_name="Awa", sex="F", **common)
    b = record("nu:2", given_name="Adama", sex="M", **common)
    assert probability(sahel, a, b) < 0.05


def test_year_only_date_against_full_date(sahel: Any) -> None:
    a = record("cr:2", given_name="Kadiatou", family_name="Sangaré", sex="F",
               birth_date="21/09/1979", village="Bla")
    b = record("pw:3", given_name="Kadiatou", family_name="Sangare", sex="F",
               birth_date="1979", village="Bla")
    full = record("pw:4", given_name="Kadiatou", family_name="Sangare", sex="F",
                  birth_date="03/02/1979", village="Bla")
    # A year-only date agrees with a full date of that year; two different full dates
    # in the same year are evidence against.
    assert probability(sahel, a, b) >= MATCH
    assert probability(sahel, a, full) < probability(sahel, a, b)


def test_father_and_son_with_the_same_name_stay_apart(sahel: Any) -> None:
    common = dict(given_name="Siaka", family_name="Traoré", sex="M", village="Kita",
                  phone="66 55 44 33")
    a = record("ct:1", birth_date="01/01/1952", **common)
    b = record("ct:2", birth_date="01/01/1985", **common)
    assert probability(sahel, a, b) < 0.05


def test_patronymic_siblings_stay_apart(horn: Any) -> None:
    # Siblings share father's and grandfather's names, village and phone.
    common = dict(father_name="Ahmed", grandfather_name="Youssouf", village="Balbala",
                  phone="77 81 22 33")
    a = record("cr:1", given_name="Mohamed", sex="M", birth_date="1990", **common)
    b = record("cr:2", given_name="Hassan", sex="M", birth_date="1992", **common)
    assert probability(horn, a, b) < 0.05


def test_patronymic_somali_spelling_matches(horn: Any) -> None:
    a = record("cr:3", given_name="Maxamed", father_name="Cali", grandfather_name="Xasan",
               sex="M", birth_date="12/06/1984", village="Arta")
    b = record("ct:4", full_name="Mohamed Ali Hassan", order="given_father_grandfather",
               sex="M", birth_date="12/06/1984", village="Arta")
    assert probability(horn, a, b) >= MATCH



def test_given_and_fathers_names_swapped_weigh_once(horn: Any) -> None:
    """A roster with the two first names the other way round: the given name's swap level
    weighs it, the father's name's twin level is neutral (not counted twice)."""
    a = record("cr:5", given_name="Moussa", father_name="Hersi", grandfather_name="Djama",
               sex="M", birth_date="12/06/1984", village="Arta")
    swapped = record("pw:6", given_name="Hersi", father_name="Moussa", sex="M",
                     birth_date="12/06/1984", village="Arta")
    one_shared = record("pw:7", given_name="Hersi", father_name="Ibrahim", sex="M",
                        birth_date="12/06/1984", village="Arta")
    p_swapped, p_one = probability(horn, a, swapped), probability(horn, a, one_shared)
    assert p_swapped >= MATCH > p_one
    df = horn.inference.score_pairs([a], [swapped])
    ((given, father),) = horn._db_api._con.execute(
        f"SELECT mw_given_name, mw_father_name FROM {df.physical_name}").fetchall()
    assert given > 3 and father == pytest.approx(0.0)  # match weights, in bits


def test_links_are_settled_alike_whatever_the_last_bits_of_their_weights() -> None:
    """Two engines' weights of one pair differ in their last bits; the batch decides on
    the settled weights, so both keep the same pairs with the same values."""
    import math

    import pyarrow as pa

    from linkage.engines import common

    threshold = common.below(0.2, 0)  # 0.2 itself
    w0 = math.log2(0.2 / 0.8)  # the weight of a pair exactly on the threshold
    duck = pa.table({"uid_l": ["a", "b", "c"], "uid_r": ["x", "y", "z"],
                     "match_probability": [0.0, 0.0, 0.0],
                     "match_weight": [w0 - 1e-13, 3.5 + 2e-14, -4.0]})
    spark = duck.set_column(3, "match_weight",
                            pa.array([w0 + 1e-13, 3.5 - 2e-14, -4.0]))
    a, b = common.settled(duck, threshold), common.settled(spark, threshold)
    assert a.equals(b)
    assert a.column("uid_l").to_pylist() == ["a", "b"]  # on the threshold: kept by both
    assert a.column("match_weight").to_pylist()[1] == 3.5
    assert a.column("match_probability").to_pylist()[1] == 1 / (1 + 2 ** -3.5)
    # Engines score a little below the threshold, so the pair on it reaches both.
    assert common.below(0.2) < 0.2
    assert math.log2(0.2 / 0.8) - math.log2(common.below(0.2) / (1 - common.below(0.2))
                                            ) == pytest.approx(common.SLACK_BITS)
