"""Survivorship rules of the golden record (linkage.ids.golden), one rule per test."""

from __future__ import annotations

import datetime as dt
import itertools
import random

from linkage.ids.golden import GoldenBirthDate, GoldenRecord, SourceRecord, _survive, golden

T0 = dt.datetime(2026, 1, 1)


def rec(uid: str, kind: str = "programme", *, days: int = 0, programme: str | None = None,
        **values: object) -> SourceRecord:
    return SourceRecord(uid, kind, programme or uid.split(":")[0].title(),
                        T0 + dt.timedelta(days=days), dict(values))


def test_civil_registry_names_and_sex_beat_rosters_even_outvoted() -> None:
    records = [rec("cr:1", "civil_registry", given_std="mamadou lamine", family_std="traore",
                   sex="M"),
               rec("ct:1", given_std="mamadou", family_std="traore", sex="F", days=9),
               rec("nut:1", given_std="mamadou", family_std="traore", sex="F", days=9)]
    g = golden(records)
    assert (g.given_name, g.family_name, g.sex) == ("Mamadou Lamine", "Traore", "M")
    assert g.chosen_from["given_name"] == "cr:1" and g.chosen_from["sex"] == "cr:1"


def test_among_rosters_agreement_then_recency_decides() -> None:
    agree = [rec("a:1", given_std="awa"), rec("b:1", given_std="awa"),
             rec("c:1", given_std="hawa", days=30)]
    assert golden(agree).given_name == "Awa"
    recent = [rec("a:1", given_std="awa"), rec("c:1", given_std="hawa", days=30)]
    assert golden(recent).given_name == "Hawa"


def test_precise_roster_date_fills_in_a_year_only_civil_registry_date() -> None:
    records = [rec("cr:1", "civil_registry", birth_year=1975, birth_precision="year"),
               rec("ct:1", birth_year=1975, birth_month=3, birth_day=2, birth_precision="day")]
    g = golden(records)
    assert g.birth_date == GoldenBirthDate(1975, 3, 2, "day")
    assert g.chosen_from["birth_date"] == "ct:1"


def test_a_roster_date_of_another_year_never_overrides_the_civil_registry() -> None:
    records = [rec("cr:1", "civil_registry", birth_year=1975, birth_precision="year"),
               rec("ct:1", birth_year=1980, birth_month=3, birth_day=2, birth_precision="day")]
    assert golden(records).birth_date == GoldenBirthDate(1975, None, None, "year")


def test_without_civil_registry_the_most_precise_date_wins_and_defaults_are_years() -> None:
    records = [rec("a:1", birth_year=1975, birth_month=1, birth_day=1,
                   birth_precision="placeholder", days=50),
               rec("b:1", birth_year=1974, birth_month=6, birth_precision="month"),
               rec("c:1", birth_year=1970, birth_precision="age", days=99)]
    assert golden(records).birth_date == GoldenBirthDate(1974, 6, None, "month")
    only_default = golden(records[:1])
    assert only_default.birth_date == GoldenBirthDate(1975, None, None, "year")


def test_national_ids_civil_registry_first_contact_data_most_recent() -> None:
    records = [rec("ct:1", national_id="ML2", phone="22370000001", village="touna",
                   commune="bla", region="segou", days=20),
               rec("cr:1", "civil_registry", national_id="ML1", phone="22370000002",
                   village="misseni", commune="kadiolo", region="sikasso", days=1),
               rec("nut:1", national_id="ML2", phone="22370000003", days=10)]
    g = golden(records)
    assert g.national_ids == ("ML1", "ML2")
    assert g.phone == "22370000001" and g.chosen_from["phone"] == "ct:1"
    # The place comes whole from one record: the most recent that has one.
    assert (g.region, g.commune, g.village) == ("Segou", "Bla", "Touna")
    assert g.programmes == ("Ct", "Nut")


def test_the_answer_does_not_depend_on_record_order_and_round_trips() -> None:
    records = [rec("cr:1", "civil_registry", given_std="awa", birth_year=1980,
                   birth_precision="year"),
               rec("ct:1", given_std="awa", birth_year=1980, birth_month=5, birth_day=4,
                   birth_precision="day", phone="22371111111"),
               rec("ct:2", given_std="hawa", national_id="ML9", days=3)]
    answers = {golden(list(p)).to_json() for p in itertools.permutations(records)}
    assert len(answers) == 1
    g = golden(records)
    assert GoldenRecord.from_json(g.to_json()) == g
    assert golden([]) == GoldenRecord()


def test_the_one_record_shortcut_is_the_rules_applied_to_one_record() -> None:
    rng = random.Random(5)
    kinds = ["civil_registry", "programme", None]
    for i in range(300):
        values = {c: rng.choice([None, "", v]) for c, v in (
            ("given_std", "mamadou lamine"), ("family_std", "traore"), ("father_std", "ali"),
            ("grandfather_std", "hassan"), ("sex", "F"), ("national_id", "ML1"),
            ("phone", "22370000001"), ("region", "sikasso"), ("commune", "kadiolo"),
            ("village", "misseni"))}
        precision = rng.choice([None, "day", "month", "year", "placeholder", "age"])
        values.update(birth_year=rng.choice([None, 1975]), birth_month=3, birth_day=2,
                      birth_precision=precision)
        r = SourceRecord(f"s:{i}", rng.choice(kinds), rng.choice([None, "P"]),
                         rng.choice([None, T0]), values)
        assert golden([r]) == _survive([r]), values
