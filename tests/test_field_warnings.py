"""A bad field blanks that field only: the record is kept and the problem stored.

Batch ingest is lenient (``field_warnings``); the API validates strictly (INVALID_ARGUMENT
naming the field). Only a row with no usable key or no name at all goes to ``rejects``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from linkage.batch.pipeline import build_summary, format_summary
from linkage.config import ConfigError, load_project
from linkage.engines.duckdb_sql import BlockingReport
from linkage.errors import InvalidRequest
from linkage.ingest.read import ingest_source
from linkage.realtime.core import PersonInput, Realtime
from linkage.register.database import Register, query
from linkage.standardise import (
    FieldWarning,
    RejectError,
    StandardiseOptions,
    make_standardiser,
    national_id_problem,
    phone_problem,
    standardise,
)

HEADER = "id;prenom;nom;pere;sexe;date_naissance;age;tel;nin\n"
GOOD = "Awa;Diarra;Moussa;F;14/03/1980;;76 12 34 56;ML123456"


def write_project(tmp_path: Path, rows: list[str], project_extra: str = "") -> Path:
    (tmp_path / "roster.csv").write_text(HEADER + "".join(r + "\n" for r in rows),
                                         encoding="utf-8")
    (tmp_path / "roster.yaml").write_text(
        "name: roster\nkind: programme\npath: roster.csv\nformat: csv\ndelimiter: \";\"\n"
        "record_key: id\nage_reference_date: \"2020-03-01\"\n"
        "columns:\n  given_name: prenom\n  family_name: nom\n  father_name: pere\n"
        "  sex: sexe\n  birth_date: date_naissance\n  age: age\n  phone: tel\n"
        "  national_id: nin\n", encoding="utf-8")
    p = tmp_path / "project.yaml"
    p.write_text("name: t\ncountry_code: \"223\"\nsources: [roster.yaml]\n" + project_extra,
                 encoding="utf-8")
    return p


def ingest(tmp_path: Path, rows: list[str], project_extra: str = "", *, force: bool = False):
    project = load_project(write_project(tmp_path, rows, project_extra))
    reg = Register.open(tmp_path / "register.duckdb")  # a real DuckDB file
    try:
        with reg.transaction() as cur:
            report = ingest_source(cur, project.source("roster"), force=force)
        cur = reg.cursor()
        rows_ = cur.execute("SELECT * FROM records ORDER BY record_key").fetchall()
        names = [d[0] for d in cur.description]
        recs = {r["record_key"]: r for r in (dict(zip(names, v, strict=True)) for v in rows_)}
        warns = query(cur, "SELECT source, file, row_number, record_key, field, source_column, "
                           "raw_value, reason FROM field_warnings ORDER BY row_number, field")
        rejs = query(cur, "SELECT row_number, record_key, field, reason FROM rejects "
                          "ORDER BY row_number")
        cur.close()
    finally:
        reg.close()
    return report, recs, warns, rejs


@pytest.mark.parametrize(
    ("cells", "field", "column", "raw", "reason", "nulls"),
    [
        # year before the default min_birth_year (1800)
        ({"date_naissance": "12/06/1799"}, "birth_date", "date_naissance", "12/06/1799",
         "year before 1800", ["birth_year", "birth_date", "birth_precision"]),
        # a date after today
        ({"date_naissance": f"01/02/{dt.date.today().year + 1}"}, "birth_date",
         "date_naissance", None, "date in the future", ["birth_year", "birth_date"]),
        # month 13 (with a day above 12, so no day/month swap can explain it)
        ({"date_naissance": "25/13/1980"}, "birth_date", "date_naissance", "25/13/1980",
         "month out of range", ["birth_year", "birth_month", "birth_day"]),
        # 31 April
        ({"date_naissance": "31/04/1980"}, "birth_date", "date_naissance", "31/04/1980",
         "day out of range for month", ["birth_year", "birth_month", "birth_day"]),
        ({"date_naissance": "hier"}, "birth_date", "date_naissance", "hier",
         "unparseable date", ["birth_year"]),
        # an age instead of a date, absurd or not a number
        ({"date_naissance": "", "age": "130"}, "age", "age", "130", "age over 120",
         ["birth_year", "birth_precision"]),
        ({"date_naissance": "", "age": "vieux"}, "age", "age", "vieux", "non-numeric age",
         ["birth_year"]),
        ({"sexe": "X"}, "sex", "sexe", "X", "unknown sex code", ["sex"]),
        ({"tel": "76 12 34"}, "phone", "tel", "76 12 34", "wrong length for +223", ["phone"]),
        ({"tel": "7612345a"}, "phone", "tel", "7612345a", "not a phone number", ["phone"]),
        ({"nin": "12"}, "national_id", "nin", "12", "too short for an ID", ["national_id"]),
    ],
)
def test_bad_field_is_blanked_and_the_record_kept(tmp_path: Path, cells: dict, field: str,
                                                  column: str, raw: str | None, reason: str,
                                                  nulls: list[str]) -> None:
    values = dict(zip(HEADER.strip().split(";")[1:], GOOD.split(";"), strict=True))
    values.update(cells)
    bad_row = ";".join(["2", *values.values()])
    report, recs, warns, rejs = ingest(tmp_path, ["1;" + GOOD, bad_row])
    assert (report.added, report.rejected, report.warned) == (2, 0, 1)
    assert rejs == []
    rec = recs["2"]
    assert rec["status"] == "active"
    for col in nulls:
        assert rec[col] is None, col
    # every other field is kept as on the good row
    good = recs["1"]
    kept = [c for c in ("given_std", "family_std", "father_std", "sex", "birth_year", "phone",
                        "national_id") if c not in nulls]
    assert {c: rec[c] for c in kept} == {c: good[c] for c in kept}
    ((source, file, row_number, key, w_field, w_column, w_raw, w_reason),) = warns
    assert (source, Path(file).name, row_number, key) == ("roster", "roster.csv", 2, "2")
    assert (w_field, w_column) == (field, column)
    assert w_raw == (raw if raw is not None else cells[column])
    assert reason in w_reason
    assert w_raw not in w_reason  # the value is stored beside the reason, never in it
    assert report.warning_reasons == {f"{w_field}: {w_reason}": 1}


def test_min_birth_year_is_the_project_setting(tmp_path: Path) -> None:
    rows = ["1;Awa;Diarra;;F;1850;;;", "2;Oumar;Kone;;M;1901;;;"]
    _, recs, warns, _ = ingest(tmp_path, rows, "min_birth_year: 1900\n")
    assert recs["1"]["birth_year"] is None and recs["2"]["birth_year"] == 1901
    assert [(w[2], w[4], w[7]) for w in warns] == [(1, "birth_date", "year before 1900")]
    # The default reaches back to 1800: a historical register keeps its 1850 births.
    # Re-reading the same file replaces what the earlier reading said.
    report, recs, warns, _ = ingest(tmp_path, rows, force=True)
    assert recs["1"]["birth_year"] == 1850 and recs["1"]["birth_precision"] == "year"
    assert warns == [] and (report.updated, report.unchanged) == (1, 1)


def test_bad_birth_date_falls_back_on_the_age(tmp_path: Path) -> None:
    _, recs, warns, _ = ingest(tmp_path, ["1;Awa;Diarra;;F;31/04/1980;40;;"])
    assert (recs["1"]["birth_year"], recs["1"]["birth_precision"]) == (1979, "age")
    assert [w[4] for w in warns] == ["birth_date"]


def test_several_bad_fields_each_warned(tmp_path: Path) -> None:
    report, recs, warns, _ = ingest(tmp_path, ["1;Awa;Diarra;;X;31/04/1980;;123;12"])
    assert [w[4] for w in warns] == ["birth_date", "national_id", "phone", "sex"]
    assert report.warned == 4
    assert recs["1"]["given_std"] == "awa"


def test_placeholders_are_missing_values_not_warnings(tmp_path: Path) -> None:
    _, recs, warns, _ = ingest(tmp_path, ["1;Awa;Diarra;;NA;00/00/1975;;00000000;NEANT",
                                          "2;Oumar;Kone;;;;;n/a;-"])
    assert warns == []
    assert recs["1"]["birth_year"] == 1975 and recs["1"]["phone"] is None


def test_no_name_or_no_key_still_rejected(tmp_path: Path) -> None:
    rows = ["1;" + GOOD,
            "2;;;;F;1799;;76 12 34;12",      # no name at all: rejected, whatever else
            ";Seydou;Toure;;M;1981;;;"]       # no record key
    report, recs, warns, rejs = ingest(tmp_path, rows)
    assert sorted(recs) == ["1"]
    assert rejs == [(2, "2", "name", "no name"), (3, None, "record_key", "missing record key (id)")]
    assert warns == [] and report.warned == 0  # a rejected row leaves no field warning


def test_father_name_alone_is_a_name(tmp_path: Path) -> None:
    _, recs, _, rejs = ingest(tmp_path, ["1;;;Moussa;M;1980;;;"])
    assert rejs == [] and recs["1"]["father_std"] == "moussa"


def test_age_reference_column_problems_blank_the_age(tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("id;prenom;age;enquete\n1;Awa;30;2020-03-01\n"
                                    "2;Oumar;40;mars 2020\n3;Seydou;50;\n", encoding="utf-8")
    (tmp_path / "r.yaml").write_text(
        "name: r\nkind: programme\npath: r.csv\nformat: csv\ndelimiter: \";\"\n"
        "record_key: id\nage_reference_column: enquete\n"
        "columns:\n  given_name: prenom\n  age: age\n", encoding="utf-8")
    (tmp_path / "p.yaml").write_text("sources: [r.yaml]\n", encoding="utf-8")
    reg = Register.open(tmp_path / "reg.duckdb")
    with reg.transaction() as cur:
        report = ingest_source(cur, load_project(tmp_path / "p.yaml").source("r"))
        years = dict(query(cur, "SELECT record_key, birth_year FROM records"))
        warns = query(cur, "SELECT row_number, field, source_column, raw_value, reason "
                           "FROM field_warnings ORDER BY ALL")
    reg.close()
    assert report.rejected == 0
    assert years == {"1": 1989, "2": None, "3": None}  # aged 30 in early 2020
    assert warns == [(2, "age", "age", "40", "no age reference date"),
                     (2, "age_reference_date", "enquete", "mars 2020",
                      "age reference date is not YYYY-MM-DD"),
                     (3, "age", "age", "50", "no age reference date")]


def test_raw_values_stay_out_of_progress_and_report_lines(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, ["1;Awa;Diarra;;Zorglub;31/04/1980;;;"]))
    reg = Register.open(tmp_path / "register.duckdb")
    heard: list[str] = []
    with reg.transaction() as cur:
        report = ingest_source(cur, project.source("roster"), progress=heard.append)
    reg.close()
    said = " ".join([*heard, report.line(), *report.warning_reasons])
    assert report.warned == 2 and "2 field warnings" in report.line()
    assert "Zorglub" not in said and "31/04/1980" not in said and "Awa" not in said


def test_summary_counts_warnings_per_source(tmp_path: Path) -> None:
    rows = ["1;" + GOOD, "2;Oumar;Kone;;X;31/04/1980;;;", "3;;;;M;1980;;;"]
    project = load_project(write_project(tmp_path, rows))
    reg = Register.open(tmp_path / "register.duckdb")
    with reg.transaction() as cur:
        report = ingest_source(cur, project.source("roster"))
        summary = build_summary(cur, [report], BlockingReport(100, 2, {}, {}), {})
    reg.close()
    assert summary["sources"]["roster"]["warnings"] == 2
    assert summary["sources"]["roster"]["rejected"] == 1
    summary.update(run_id="r", model_version="m")
    header, line = format_summary(summary).splitlines()[2:4]
    assert "warnings" in header.split()
    assert line.split()[:4] == ["roster", "2", "1", "2"]  # records, rejected, warnings


# ----------------------------------------------------------------------------- config


def test_min_birth_year_default_and_setting(tmp_path: Path) -> None:
    p = load_project(write_project(tmp_path, ["1;" + GOOD]))
    assert p.min_birth_year == 1800 and p.source("roster").min_birth_year == 1800
    p = load_project(write_project(tmp_path, ["1;" + GOOD], "min_birth_year: 1900\n"))
    assert p.min_birth_year == 1900 and p.source("roster").min_birth_year == 1900


@pytest.mark.parametrize("value", ["old", "1799.5", "true", "999", "3000", "[1800]"])
def test_bad_min_birth_year_names_file_and_key(tmp_path: Path, value: str) -> None:
    path = write_project(tmp_path, ["1;" + GOOD], f"min_birth_year: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_project(path)
    assert err.value.key == "min_birth_year"
    assert str(err.value).startswith(f"{path}: min_birth_year: expected a whole number")


# ----------------------------------------------------------------------------- strict mode


OPTIONS = StandardiseOptions(source="cash", birth_date_format="%d/%m/%Y",
                             age_reference_date=dt.date(2020, 3, 1), country_code="223",
                             today=dt.date(2024, 6, 1))


@pytest.mark.parametrize(
    ("raw", "field"),
    [({"birth_date": "1799"}, "birth_date"), ({"birth_date": "2025"}, "birth_date"),
     ({"birth_date": "25/13/1980"}, "birth_date"), ({"birth_date": "31/04/1980"}, "birth_date"),
     ({"age": "130"}, "age"), ({"sex": "X"}, "sex")],
)
def test_strict_mode_still_raises_and_lenient_mode_blanks(raw: dict, field: str) -> None:
    raw = {"given_name": "Awa", **raw}
    with pytest.raises(RejectError) as info:
        standardise(raw, OPTIONS)
    assert info.value.field == field
    found: list[FieldWarning] = []
    row = standardise(raw, OPTIONS, warnings=found)
    assert [(w.field, w.value, w.reason) for w in found] == [
        (field, raw[field], info.value.reason)]
    assert row["given_std"] == "awa" and row["birth_year"] is None and row["sex"] is None


def test_phones_and_ids_never_raise() -> None:
    row = standardise({"given_name": "Awa", "phone": "76 12 34", "national_id": "12"}, OPTIONS)
    assert row["phone"] is None and row["national_id"] is None


def test_options_and_loose_keywords_agree() -> None:
    raw = {"given_name": "Awa", "family_name": "Keita", "sex": "F", "birth_date": "1850",
           "phone": "76 12 34 56"}
    loose = {"source": "cash", "birth_date_format": "%d/%m/%Y",
             "age_reference_date": dt.date(2020, 3, 1), "country_code": "223",
             "today": dt.date(2024, 6, 1)}
    assert standardise(raw, OPTIONS) == standardise(raw, **loose)
    assert make_standardiser(OPTIONS)(raw, []) == standardise(raw, OPTIONS)
    with pytest.raises(RejectError, match="year before 1900"):
        standardise(raw, OPTIONS, min_birth_year=1900)  # keywords override the options


def test_field_warning_repr_leaves_the_value_out() -> None:
    assert "Zorglub" not in repr(FieldWarning("sex", "Zorglub", "unknown sex code"))


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("76 12 34 56", None), ("", None), ("n/a", None), ("néant", None), ("00000000", None),
     ("76 12 34", "wrong length for +223"), ("7612345a", "not a phone number"),
     ("+223 7612", "wrong length for +223")],
)
def test_phone_problem(raw: str, problem: str | None) -> None:
    assert phone_problem(raw, "223") == problem


@pytest.mark.parametrize(
    ("raw", "problem"),
    [("ML-123456", None), ("", None), ("N/A", None), ("Néant", None), ("000000", None),
     ("-", None), ("12", "too short for an ID (under 4 characters)")],
)
def test_national_id_problem(raw: str, problem: str | None) -> None:
    assert national_id_problem(raw) == problem


def test_api_validates_strictly_with_the_project_min_birth_year(tmp_path: Path) -> None:
    project = load_project(write_project(tmp_path, ["1;" + GOOD], "min_birth_year: 1900\n"))
    rt = Realtime.open(project)  # no model yet: standardisation works without one
    try:
        for raw, path in [({"birth_date": "1850"}, "person.birth_date"),
                          ({"birth_date": f"{dt.date.today().year + 1}"}, "person.birth_date"),
                          ({"birth_date": "1980-04-31"}, "person.birth_date"),
                          ({"sex": "X"}, "person.sex")]:
            with pytest.raises(InvalidRequest) as err:
                rt.standardise(PersonInput({"given_name": "Awa", **raw}))
            assert [p for p, _ in err.value.violations] == [path], raw
        row = rt.standardise(PersonInput({"given_name": "Awa", "birth_date": "1901",
                                          "phone": "76 12 34"}))
        assert row["birth_year"] == 1901 and row["phone"] is None  # as before: no error
    finally:
        rt.close()
    cur_reg = Register.open(project.register, read_only=True)
    try:
        (n,) = query(cur_reg.cursor(), "SELECT count(*) FROM field_warnings")[0]
    finally:
        cur_reg.close()
    assert n == 0  # the API stores no warnings: it refuses the request instead


def test_register_schema_adds_field_warnings_to_an_existing_file(tmp_path: Path) -> None:
    import duckdb

    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.close()
    reg = Register.open(path)
    cur = reg.cursor()
    cols = [r[0] for r in query(cur, "SELECT column_name FROM information_schema.columns "
                                     "WHERE table_name = 'field_warnings' "
                                     "ORDER BY ordinal_position")]
    cur.close()
    reg.close()
    # the table exists on a register created before it
    assert cols[:9] == ["source", "file", "file_sha256", "row_number", "record_key", "field",
                        "source_column", "raw_value", "reason"]
