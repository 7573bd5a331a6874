"""Dates, phones, sex codes, IDs and whole-record standardisation."""

from __future__ import annotations

from datetime import date

import pytest

from linkage.canonical import STANDARD_COLUMNS
from linkage.standardise import (
    BirthDate,
    RejectError,
    clean_national_id,
    date_relation,
    from_age,
    make_standardiser,
    normalise_phone,
    parse_birth_date,
    parse_sex,
    standardise,
)

TODAY = date(2024, 6, 1)


# ----------------------------------------------------------------------------- dates


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        ("12/06/1975", "%d/%m/%Y", BirthDate(1975, 6, 12, "day")),
        ("06/12/1975", "%m/%d/%Y", BirthDate(1975, 6, 12, "day")),
        ("1975-06-12", "%Y-%m-%d", BirthDate(1975, 6, 12, "day")),
        ("1975-06-12", "%d/%m/%Y", BirthDate(1975, 6, 12, "day")),  # ISO always accepted
        ("12-06-1975", "%d/%m/%Y", BirthDate(1975, 6, 12, "day")),  # any separator
        ("12/06/1975 00:00:00", "%d/%m/%Y", BirthDate(1975, 6, 12, "day")),
        ("12/06/75", "%d/%m/%y", BirthDate(1975, 6, 12, "day")),
        ("12/06/05", "%d/%m/%y", BirthDate(2005, 6, 12, "day")),
        ("1975", "%d/%m/%Y", BirthDate(1975, None, None, "year")),
        ("1975", "%Y", BirthDate(1975, None, None, "year")),
        ("1975.0", "%Y", BirthDate(1975, None, None, "year")),
        ("00/00/1975", "%d/%m/%Y", BirthDate(1975, None, None, "year")),
        ("0/0/1975", "%d/%m/%Y", BirthDate(1975, None, None, "year")),
        ("--/--/1975", "%d/%m/%Y", BirthDate(1975, None, None, "year")),
        ("XX/XX/1975", "%d/%m/%Y", BirthDate(1975, None, None, "year")),
        ("1975-00-00", "%Y-%m-%d", BirthDate(1975, None, None, "year")),
        ("00/06/1975", "%d/%m/%Y", BirthDate(1975, 6, None, "month")),
        ("06/1975", "%d/%m/%Y", BirthDate(1975, 6, None, "month")),
        ("01/01/1975", "%d/%m/%Y", BirthDate(1975, None, None, "placeholder")),
        ("01/07/1975", "%d/%m/%Y", BirthDate(1975, None, None, "placeholder")),
        ("07/01/1975", "%m/%d/%Y", BirthDate(1975, None, None, "placeholder")),
        # month 13 under %d/%m: only the swapped reading is a date
        ("12/13/1980", "%d/%m/%Y", BirthDate(1980, 12, 13, "day")),
    ],
)
def test_parse_birth_date(raw, fmt, expected):
    assert parse_birth_date(raw, fmt, today=TODAY) == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("1799", "year before 1800"),
        ("12/06/1799", "year before 1800"),
        ("12/06/2030", "date in the future"),
        ("2025", "date in the future"),
        ("31/02/1990", "day out of range"),
        ("25/13/1980", "month out of range"),
        ("abc", "unparseable date"),
        ("12/06", "unparseable date"),
        ("", "empty date"),
    ],
)
def test_parse_birth_date_rejects(raw, reason):
    with pytest.raises(ValueError, match=reason):
        parse_birth_date(raw, "%d/%m/%Y", today=TODAY)


def test_date_error_never_contains_the_value():
    with pytest.raises(ValueError) as info:
        parse_birth_date("31/02/1990", "%d/%m/%Y", today=TODAY)
    assert "1990" not in str(info.value)
    assert "99/99/9999" in str(info.value)


def test_birth_date_iso():
    assert BirthDate(1975, 6, 12, "day").iso() == "1975-06-12"
    assert BirthDate(1975, 6, None, "month").iso() is None


@pytest.mark.parametrize(
    ("age", "year"), [(35, 1984), ("35", 1984), ("35.0", 1984), ("35 ans", 1984), (0, 2019)]
)
def test_from_age(age, year):
    # Aged 35 on 1 March 2020: born between March 1984 and February 1985, in 1984 for
    # ten birthdays in twelve.
    assert from_age(age, date(2020, 3, 1)) == BirthDate(year, None, None, "age")


@pytest.mark.parametrize(("reference", "year"), [
    (date(2020, 1, 1), 1984), (date(2020, 6, 30), 1984), (date(2020, 7, 2), 1985),
    (date(2020, 12, 31), 1985)])
def test_from_age_takes_the_likelier_year(reference: date, year: int) -> None:
    assert from_age(35, reference).year == year


@pytest.mark.parametrize(
    ("age", "reason"),
    [(-1, "negative age"), ("-3", "negative age"), (121, "age over 120"),
     ("150", "age over 120"), ("abc", "non-numeric age"), ("", "non-numeric age"),
     (None, "non-numeric age")],
)  # fmt: skip
def test_from_age_rejects(age, reason):
    with pytest.raises(ValueError, match=reason):
        from_age(age, date(2020, 3, 1))


DAY = BirthDate(1975, 6, 12, "day")


@pytest.mark.parametrize(
    ("a", "b", "relation"),
    [
        (DAY, BirthDate(1975, 6, 12, "day"), "exact"),
        (DAY, BirthDate(1975, 12, 6, "day"), "day_month_swapped"),
        (DAY, BirthDate(1975, 6, 13, "day"), "mismatch"),
        (DAY, BirthDate(1975, None, None, "year"), "same_year"),
        (DAY, BirthDate(1975, None, None, "placeholder"), "same_year"),
        (DAY, BirthDate(1975, 6, None, "month"), "same_year"),
        (DAY, BirthDate(1976, None, None, "age"), "year_off_1"),
        (BirthDate(1973, None, None, "year"), DAY, "year_off_2"),
        (DAY, BirthDate(1978, None, None, "age"), "mismatch"),
        (DAY, BirthDate(1976, 6, 12, "day"), "mismatch"),  # both exact: a year apart is a no
        (DAY, None, "missing"),
        (None, None, "missing"),
        (BirthDate(None, None, None, "year"), DAY, "missing"),
    ],
)
def test_date_relation(a, b, relation):
    assert date_relation(a, b) == relation
    assert date_relation(b, a) == relation


# ----------------------------------------------------------------------------- phones


@pytest.mark.parametrize(
    ("raw", "cc", "expected"),
    [
        # Mali: +223, 8-digit local numbers
        ("76 12 34 56", "223", "22376123456"),
        ("+223 76-12-34-56", "223", "22376123456"),
        ("(+223) 76.12.34.56", "223", "22376123456"),
        ("0022376123456", "223", "22376123456"),
        ("22376123456", "223", "22376123456"),
        ("76123456.0", "223", "22376123456"),
        ("2.2376123456E+10", "223", "22376123456"),
        ("76123456 / 66123456", "223", "22376123456"),
        ("7612345", "223", None),
        # Djibouti: +253, 8 digits starting 77
        ("77 12 34 56", "253", "25377123456"),
        ("+25377123456", "253", "25377123456"),
        # Kenya: +254, 07xx local with trunk zero
        ("0712 345 678", "254", "254712345678"),
        ("712345678", "254", "254712345678"),
        ("+254 712 345 678", "254", "254712345678"),
        ("+254 0712345678", "254", "254712345678"),
        ("+254712345678", "+254", "254712345678"),
        # a foreign number in a roster is kept as written
        ("+33612345678", "223", "33612345678"),
        # junk
        ("00000000", "223", None),
        ("abc", "223", None),
        ("", "223", None),
        (None, "254", None),
    ],
)
def test_normalise_phone(raw, cc, expected):
    assert normalise_phone(raw, cc) == expected


# ----------------------------------------------------------------------------- sex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("M", "M"), ("m", "M"), ("F", "F"), ("f", "F"), ("H", "M"), ("Homme", "M"),
     ("FEMME", "F"), ("Masculin", "M"), ("Féminin", "F"), ("male", "M"), ("Female", "F"),
     ("1", "M"), ("2", "F"), ("1.0", "M"), ("garçon", "M"), ("Fille", "F"),
     ("", None), ("  ", None), (None, None), ("nan", None), ("-", None)],
)  # fmt: skip
def test_parse_sex_defaults(raw, expected):
    assert parse_sex(raw) == expected


def test_parse_sex_custom_codes_replace_defaults():
    codes = {"F": ["1"], "M": ["2"]}
    assert parse_sex("1", codes) == "F"
    assert parse_sex("2", codes) == "M"
    with pytest.raises(ValueError, match="unknown sex code"):
        parse_sex("M", codes)


def test_parse_sex_unknown_code():
    with pytest.raises(ValueError, match="unknown sex code"):
        parse_sex("X")


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" ml-123 456.78 ", "ML12345678"), ("ab12cd34", "AB12CD34"), ("98765432.0", "98765432"),
     ("N/A", None), ("NEANT", None), ("Néant", None), ("-", None), ("000000", None),
     ("XXXXXX", None), ("", None), (None, None), ("12", None)],
)  # fmt: skip
def test_clean_national_id(raw, expected):
    assert clean_national_id(raw) == expected


# ----------------------------------------------------------------------------- records

CONFIG = {
    "source": "cash",
    "birth_date_format": "%d/%m/%Y",
    "age_reference_date": date(2020, 3, 1),
    "country_code": "223",
    "today": TODAY,
}


def test_standardise_sahel_record():
    row = standardise(
        {
            "given_name": "Mamadou Lamine",
            "family_name": "TRAORÉ",
            "sex": "H",
            "birth_date": "12/06/1975",
            "national_id": "ml 1234-5678",
            "phone": "76 12 34 56",
            "region": "Ségou",
            "commune": "San",
            "village": "  Kassorola ",
            "household_id": " H-0012 ",
            "mother_name": "Diarra Aminata",
        },
        **CONFIG,
    )
    assert list(row) == list(STANDARD_COLUMNS)
    assert row == {
        "given_std": "mamadou lamine",
        "given_first": "mamadou",
        "given_key": "mamad",
        "given_phonetic": "MMT",
        "family_std": "traore",
        "family_key": "traur",
        "father_std": None,
        "father_key": None,
        "grandfather_std": None,
        "grandfather_key": None,
        "name_keys": "lamin mamad traur",
        "mother_key": "aminat jara",
        "sex": "M",
        "birth_year": 1975,
        "birth_month": 6,
        "birth_day": 12,
        "birth_precision": "day",
        "birth_date": "1975-06-12",
        "national_id": "ML12345678",
        "phone": "22376123456",
        "region": "segou",
        "commune": "san",
        "village": "kassorola",
        "household_id": "cash:H-0012",
    }


def test_standardise_full_name_family_first_and_placeholder_date():
    row = standardise(
        {"full_name": "TRAORE Moussa", "birth_date": "01/01/1980", "sex": "1"},
        **CONFIG,
        name_order="family_given",
    )
    assert (row["given_std"], row["family_std"]) == ("moussa", "traore")
    assert row["birth_precision"] == "placeholder"
    assert (row["birth_year"], row["birth_month"], row["birth_day"]) == (1980, None, None)
    assert row["birth_date"] is None


def test_standardise_patronymic_full_name():
    row = standardise(
        {"full_name": "Maxamed Cali Xasan", "sex": "lab", "age": "40"},
        **{**CONFIG, "country_code": "253"},
        name_order="given_father_grandfather",
    )
    assert row["given_std"] == "maxamed"
    assert row["father_std"] == "cali"
    assert row["grandfather_std"] == "xasan"
    assert row["family_std"] is None
    assert (row["given_key"], row["father_key"], row["grandfather_key"]) == (
        "muamad",
        "ali",
        "hasan",
    )
    assert row["name_keys"] == "ali hasan muamad"
    assert (row["birth_year"], row["birth_precision"]) == (1979, "age")


def test_name_keys_ignore_column_order():
    a = standardise({"given_name": "Moussa", "family_name": "Traore"}, **CONFIG)
    b = standardise({"given_name": "Traore", "family_name": "Musa"}, **CONFIG)
    assert a["name_keys"] == b["name_keys"]


def test_explicit_columns_win_over_full_name():
    row = standardise(
        {"given_name": "Awa", "family_name": "Keita", "full_name": "Something Else"},
        **CONFIG,
        name_order="given_family",
    )
    assert (row["given_std"], row["family_std"]) == ("awa", "keita")


def test_household_and_missing_values():
    row = standardise({"family_name": "Diallo"}, **CONFIG)
    assert row["household_id"] is None
    assert row["given_std"] is None and row["given_key"] is None
    assert row["birth_year"] is None and row["birth_precision"] is None
    assert row["sex"] is None and row["phone"] is None
    assert row["name_keys"] == "jalu"


@pytest.mark.parametrize(
    ("raw", "field", "reason"),
    [
        ({"sex": "M"}, "name", "no name"),
        ({"given_name": "El Hadj", "sex": "M"}, None, None),  # particles only: still a name
        ({"given_name": "  ", "full_name": ""}, "name", "no name"),
        ({"given_name": "Awa", "birth_date": "31/02/1990"}, "birth_date", "day out of range"),
        ({"given_name": "Awa", "birth_date": "hier"}, "birth_date", "unparseable date"),
        ({"given_name": "Awa", "birth_date": "1799"}, "birth_date", "year before 1800"),
        ({"given_name": "Awa", "sex": "X"}, "sex", "unknown sex code"),
        ({"given_name": "Awa", "age": "130"}, "age", "age over 120"),
        ({"given_name": "Awa", "age": "vieux"}, "age", "non-numeric age"),
    ],
)
def test_reject_errors(raw, field, reason):
    if field is None:
        standardise(raw, **CONFIG)
        return
    with pytest.raises(RejectError) as info:
        standardise(raw, **CONFIG)
    assert info.value.field == field
    assert reason in info.value.reason


def test_configuration_errors_are_not_rejects():
    with pytest.raises(ValueError, match="name_order") as info:
        standardise({"full_name": "Moussa Traore"}, **CONFIG)
    assert not isinstance(info.value, RejectError)
    with pytest.raises(ValueError, match="age_reference_date"):
        standardise({"given_name": "Awa", "age": "30"}, **{**CONFIG, "age_reference_date": None})
    with pytest.raises(ValueError, match="unknown name order"):
        make_standardiser(**CONFIG, name_order="nope")


def test_make_standardiser_matches_standardise():
    raw = {"given_name": "Fatoumata", "family_name": "Coulibaly", "sex": "F", "age": "30"}
    fn = make_standardiser(**CONFIG)
    assert fn(raw) == standardise(raw, **CONFIG)


def test_reject_error_pickles():
    import pickle

    err = pickle.loads(pickle.dumps(RejectError("sex", "unknown sex code")))
    assert (err.field, err.reason) == ("sex", "unknown sex code")
