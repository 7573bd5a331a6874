"""Lossless, idempotent ingest into a real register file."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.config import load_source
from linkage.ingest.read import IngestError, ingest_source
from linkage.register.database import Register, query

HEADER = "id;prenom;nom;sexe;date_naissance\n"


def source_yaml(tmp_path: Path, data_name: str, fmt: str = "csv", extra: str = "") -> Path:
    p = tmp_path / f"{fmt}_source.yaml"
    p.write_text(
        f"name: roster\nkind: programme\npath: {data_name}\nformat: {fmt}\n"
        'delimiter: ";"\nrecord_key: id\ncountry_code: "223"\n'
        "columns:\n  given_name: prenom\n  family_name: nom\n  sex: sexe\n"
        "  birth_date: date_naissance\n" + extra, encoding="utf-8")
    return p


@pytest.fixture
def reg(tmp_path: Path):
    r = Register.open(tmp_path / "register.duckdb")
    yield r
    r.close()


def ingest(reg: Register, yaml_path: Path):
    with reg.transaction() as cur:
        return ingest_source(cur, load_source(yaml_path))


def records(reg: Register) -> dict[str, tuple]:
    cur = reg.cursor()
    rows = query(cur, "SELECT record_key, status, given_std, family_std, sex, birth_year, "
                      "birth_precision FROM records ORDER BY record_key")
    cur.close()
    return {r[0]: r[1:] for r in rows}


def rejects(reg: Register) -> list[tuple]:
    cur = reg.cursor()
    rows = query(cur, "SELECT row_number, record_key, field, reason FROM rejects "
                      "ORDER BY row_number")
    cur.close()
    return rows


def test_csv_utf8_rows_become_records(reg: Register, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(HEADER + "1;Moussa;Traoré;M;14/03/1980\n"
                                    "2;Fatoumata;Keïta;F;00/00/1975\n", encoding="utf-8")
    report = ingest(reg, source_yaml(tmp_path, "r.csv"))
    assert (report.rows, report.added, report.rejected) == (2, 2, 0)
    got = records(reg)
    assert got["1"] == ("active", "moussa", "traore", "M", 1980, "day")
    assert got["2"][1:] == ("fatoumata", "keita", "F", 1975, "year")


def test_csv_latin1(reg: Register, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_bytes((HEADER + "1;Aïssata;Maïga;F;1990\n").encode("latin-1"))
    ingest(reg, source_yaml(tmp_path, "r.csv", extra="encoding: latin-1\n"))
    assert records(reg)["1"][1:3] == ("aissata", "maiga")


def test_parquet(reg: Register, tmp_path: Path) -> None:
    pq.write_table(pa.table({"id": [1, 2], "prenom": ["Oumar", "Awa"], "nom": ["Diallo", "Koné"],
                             "sexe": ["M", "F"], "date_naissance": ["01/01/1970", "02/02/2002"]}),
                   tmp_path / "r.parquet")
    report = ingest(reg, source_yaml(tmp_path, "r.parquet", fmt="parquet"))
    assert report.added == 2
    # 1 January is a placeholder: the year is kept, the day is not trusted.
    assert records(reg)["1"][4:] == (1970, "placeholder")


def test_jsonl_with_bad_json_line(reg: Register, tmp_path: Path) -> None:
    lines = [json.dumps({"id": "a", "prenom": "Mariam", "nom": "Sidibé", "sexe": "F",
                         "date_naissance": "12/12/2012"}), "{not json", ""]
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = ingest(reg, source_yaml(tmp_path, "r.jsonl", fmt="jsonl"))
    assert report.added == 1 and report.rejected == 1
    assert rejects(reg) == [(2, None, None, "invalid JSON")]


def warnings(reg: Register) -> list[tuple]:
    cur = reg.cursor()
    rows = query(cur, "SELECT row_number, record_key, field, source_column, raw_value, reason "
                      "FROM field_warnings ORDER BY row_number, field")
    cur.close()
    return rows


def test_bad_rows_land_in_rejects_with_reasons(reg: Register, tmp_path: Path) -> None:
    body = (HEADER
            + "1;Moussa;Traoré;M;14/03/1980\n"   # good
            + "2;Awa;Diarra;F;31/02/19x5\n"      # bad date: kept, date blanked
            + "3;Adama;Coulibaly;X;1980\n"       # unknown sex code: kept, sex blanked
            + "4;;;M;1980\n"                     # empty names
            + ";Seydou;Touré;M;1981\n"           # missing record key
            + "1;Moussa;Traoré;M;14/03/1980\n"   # duplicate key
            + "7;Bakary;Sangaré;M\n")            # wrong number of fields
    data = body.encode("utf-8") + "8;Kadiatou;Cissé;F;1999\n".encode("latin-1")  # bad bytes
    (tmp_path / "r.csv").write_bytes(data)
    report = ingest(reg, source_yaml(tmp_path, "r.csv"))
    assert report.rows == 8 and report.added == 3 and report.rejected == 5
    assert report.warned == 2
    got = {row: (key, field, reason) for row, key, field, reason in rejects(reg)}
    assert set(got) == {4, 5, 6, 7, 8}
    assert got[4][0] == "4" and "name" in got[4][2]
    assert got[5] == (None, "record_key", "missing record key (id)")
    assert got[6][0] == "1" and got[6][2].startswith("duplicate record key (first at row 1")
    assert got[7][2] == "expected 5 fields, found 4"
    assert got[8][2] == "invalid utf-8 bytes in row"
    cur = reg.cursor()
    (raw,) = query(cur, "SELECT raw FROM rejects WHERE row_number = 4")[0]
    cur.close()
    assert json.loads(raw)["sexe"] == "M"  # raw values kept: nothing is lost
    got_warnings = {row: (key, field, column, value, reason)
                    for row, key, field, column, value, reason in warnings(reg)}
    assert got_warnings[2][:4] == ("2", "birth_date", "date_naissance", "31/02/19x5")
    assert "unparseable date" in got_warnings[2][4]
    assert got_warnings[3] == ("3", "sex", "sexe", "X", "unknown sex code")
    assert records(reg)["3"] == ("active", "adama", "coulibaly", None, 1980, "year")


def test_reingest_is_idempotent(reg: Register, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text(HEADER + "1;Moussa;Traoré;M;1980\n2;Awa;Diarra;F;x\n"
                                    "3;;;F;1990\n", encoding="utf-8")
    y = source_yaml(tmp_path, "r.csv")
    ingest(reg, y)
    before = (records(reg), rejects(reg), warnings(reg))
    assert len(before[1]) == 1 and len(before[2]) == 1
    again = ingest(reg, y)
    assert again.skipped
    with reg.transaction() as cur:
        forced = ingest_source(cur, load_source(y), force=True)
    assert (forced.added, forced.updated, forced.retired, forced.unchanged) == (0, 0, 0, 2)
    assert (records(reg), rejects(reg), warnings(reg)) == before


def test_updated_extract_adds_updates_and_retires(reg: Register, tmp_path: Path) -> None:
    data = tmp_path / "r.csv"
    data.write_text(HEADER + "1;Moussa;Traoré;M;1980\n2;Awa;Diarra;F;1990\n"
                    "3;Oumar;Koné;M;1970\n", encoding="utf-8")
    y = source_yaml(tmp_path, "r.csv")
    ingest(reg, y)
    data.write_text(HEADER + "1;Moussa;Traoré;M;1980\n2;Awa;Diarra;F;1991\n"
                    "4;Seydou;Touré;M;1985\n", encoding="utf-8")
    report = ingest(reg, y)
    assert (report.added, report.updated, report.retired, report.unchanged) == (1, 1, 1, 1)
    got = records(reg)
    assert got["2"][4] == 1991
    assert got["3"][0] == "retired"  # vanished keys are kept, marked retired
    assert got["4"][0] == "active"


def _all_records(reg: Register) -> list[tuple]:
    cur = reg.cursor()
    rows = query(cur, "SELECT * EXCLUDE (first_seen, updated_at, retired_at) FROM records "
                      "ORDER BY uid")
    cur.close()
    return rows


def test_a_changed_extract_standardises_only_its_new_and_changed_rows(
        reg: Register, tmp_path: Path) -> None:
    data = tmp_path / "r.csv"
    data.write_text(HEADER + "1;Moussa;Traoré;M;1980\n2;Awa;Diarra;F;31/02/19x5\n"
                    "3;Oumar;Koné;M;1970\n", encoding="utf-8")
    y = source_yaml(tmp_path, "r.csv")
    ingest(reg, y)
    # Mark what the first reading stored for rows 1 and 2: a row standardised again
    # gets its real value back, a reused one keeps the mark.
    with reg.transaction() as cur:
        cur.execute("UPDATE records SET given_std = 'marked' WHERE record_key IN ('1', '2')")
    data.write_text(HEADER + "1;Moussa;Traoré;M;1980\n2;Awa;Diarra;F;31/02/19x5\n"
                    "3;Oumar;Koné;M;1971\n4;Seydou;Touré;M;1985\n", encoding="utf-8")
    report = ingest(reg, y)
    # Row 3 changed; row 2, standardised again, loses its mark: updated too.
    assert (report.added, report.updated, report.unchanged) == (1, 2, 1)
    got = records(reg)
    assert got["1"][1] == "marked"  # unchanged row: its stored columns, not standardised
    # Row 2 had a field warning: standardised again, and its warning stands for the
    # new file (the summary counts the warnings of the current files).
    assert got["2"][1] == "awa"
    assert [w[:3] for w in warnings(reg) if w[0] == 2] == [(2, "2", "birth_date")] * 2
    assert got["3"][1:] == ("oumar", "kone", "M", 1971, "year")
    assert got["4"][1] == "seydou"
    with reg.transaction() as cur:
        cur.execute("UPDATE records SET given_std = 'moussa' WHERE record_key = '1'")
    # Reused rows are what standardising every row gives: a fresh register agrees.
    fresh = Register.open(tmp_path / "fresh.duckdb")
    try:
        with fresh.transaction() as cur:
            ingest_source(cur, load_source(y))
        assert _all_records(fresh) == _all_records(reg)
    finally:
        fresh.close()

    # A setting that changes how rows standardise: every row is standardised again.
    with reg.transaction() as cur:
        cur.execute("UPDATE records SET given_std = 'marked' WHERE record_key = '1'")
    data.write_text(data.read_text(encoding="utf-8") + "5;Awa;Sow;F;1999\n", encoding="utf-8")
    with reg.transaction() as cur:
        report = ingest_source(cur, load_source(y, min_birth_year=1975))
    got = records(reg)
    assert got["1"][1] == "moussa"
    assert got["3"][4] is None  # 1971 is before min_birth_year now
    assert report.updated == 2  # row 1 (its mark undone) and row 3


def test_missing_key_column_names_file_and_column(reg: Register, tmp_path: Path) -> None:
    (tmp_path / "r.csv").write_text("ident;prenom;nom;sexe;date_naissance\n1;A;B;M;1980\n",
                                    encoding="utf-8")
    with pytest.raises(IngestError, match=r"r.csv: column 'id' named in .*csv_source.yaml"):
        ingest(reg, source_yaml(tmp_path, "r.csv"))


def test_no_matching_file(reg: Register, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match=r"path: no file matches"):
        ingest(reg, source_yaml(tmp_path, "absent_*.csv"))


def test_api_enrolled_records_survive_a_new_extract(reg: Register, tmp_path: Path) -> None:
    from linkage.register.database import API_FILE

    data = tmp_path / "r.csv"
    data.write_text(HEADER + "1;Moussa;Traoré;M;1980\n", encoding="utf-8")
    y = source_yaml(tmp_path, "r.csv")
    ingest(reg, y)
    with reg.transaction() as cur:  # as linkage.realtime.enrol writes a record sent over the API
        cur.execute("INSERT INTO records (uid, source, record_key, file, record_hash, status) "
                    "VALUES ('roster:api-1', 'roster', 'api-1', ?, 'h', 'active')", [API_FILE])
    data.write_text(HEADER + "2;Awa;Diarra;F;1990\n", encoding="utf-8")
    report = ingest(reg, y)
    assert report.retired == 1  # record 1 vanished from the file; the API record did not
    assert records(reg)["api-1"][0] == "active"


def test_full_names_read_in_the_order_their_names_say(tmp_path: Path) -> None:
    """A full-name column declared family-first whose rows are partly given-first: the
    names of a source with separate columns say which reading is likely."""
    from linkage.batch.pipeline import ingest_all
    from linkage.config import load_project

    given = ["Mamadou", "Aminata", "Moussa", "Fatoumata", "Oumar", "Kadiatou"]
    family = ["Traore", "Coulibaly", "Diarra", "Keita", "Konate", "Sangare"]
    civil = ["id;prenom;nom"] + [f"C{i};{given[i % 6]};{family[(i // 6) % 6]}"
                                 for i in range(240)]
    (tmp_path / "civil.csv").write_text("\n".join(civil) + "\n", encoding="utf-8")
    cash = ["id;nom_complet",
            "K1;TRAORE Mamadou",       # case marker: family name upper case
            "K2;Mamadou Traore",       # given first, no marker: the names say so
            "K3;Coulibaly Aminata",    # the declared order, and the names agree
            "K4;Sidibe Awa",           # names the register has never seen: as declared
            "K5;MOUSSA KEITA"]         # all upper case, no marker: the names say
    (tmp_path / "cash.csv").write_text("\n".join(cash) + "\n", encoding="utf-8")
    common = 'format: csv\ndelimiter: ";"\nrecord_key: id\n'
    # The full-name source comes first in the project: ingest still learns from civil.
    (tmp_path / "cash.yaml").write_text(
        "name: cash\nkind: programme\npath: cash.csv\n" + common
        + "name_order: family_given\ncolumns:\n  full_name: nom_complet\n", encoding="utf-8")
    (tmp_path / "civil.yaml").write_text(
        "name: civil\nkind: civil_registry\npath: civil.csv\n" + common
        + "columns:\n  given_name: prenom\n  family_name: nom\n", encoding="utf-8")
    (tmp_path / "project.yaml").write_text(
        "name: t\nregister: register.duckdb\ncountry_code: '223'\n"
        "sources:\n- cash.yaml\n- civil.yaml\n", encoding="utf-8")
    project = load_project(tmp_path / "project.yaml")
    lines: list[str] = []
    r = Register.open(tmp_path / "register.duckdb")
    try:
        with r.transaction() as cur:
            reports = ingest_all(cur, project, progress=lines.append)
        assert [rep.source for rep in reports] == ["cash", "civil"]  # the project's order
        assert reports[0].reordered == 2 and reports[1].reordered == 0
        assert any("2 names read in another order" in ln for ln in lines)
        got = {k: v[1:3] for k, v in records(r).items() if k.startswith("K")}
    finally:
        r.close()
    assert got == {"K1": ("mamadou", "traore"), "K2": ("mamadou", "traore"),
                   "K3": ("aminata", "coulibaly"), "K4": ("awa", "sidibe"),
                   "K5": ("moussa", "keita")}


def test_name_roles_need_evidence_on_both_tokens() -> None:
    from linkage.standardise.names import NameRoles, full_name_order, translit_key

    roles = NameRoles({translit_key("Mamadou"): 50, translit_key("Ali"): 20},
                      {translit_key("Traore"): 50, translit_key("Ali"): 20})
    assert full_name_order("Mamadou Traore", "family_given", roles) == "given_family"
    assert full_name_order("Traore Mamadou", "given_family", roles) == "family_given"
    assert full_name_order("Traore Mamadou", "family_given", roles) == "family_given"
    # "Ali" is as common either way: no evidence, the declared order stands.
    assert full_name_order("Ali Traore", "given_family", roles) == "given_family"
    assert full_name_order("Mamadou TRAORE", "given_family", roles) == "given_family"
    assert full_name_order("Mamadou Traore", "family_given", None) == "family_given"


def test_patronymic_names_read_as_one_chain_whatever_their_columns(tmp_path: Path) -> None:
    """Djibouti-style rosters keep the three names in varying columns: positions in the
    chain say which name is which, a case marker inside a column first, and a woman's
    given name written after her father's is found by the civil registry's name roles."""
    from linkage.batch.pipeline import ingest_all
    from linkage.config import load_project

    women = ["Hibo", "Deka", "Zahra", "Ifrah", "Safia", "Fatouma"]
    men = ["Ahmed", "Omar", "Elmi", "Hassan", "Ismail", "Abdi"]
    civil = ["id;prenom;pere;grand_pere"] + [
        f"C{i};{(women if i % 2 else men)[(i // 2) % 6]};{men[(i // 6) % 6]};"
        f"{men[(i // 36) % 6]}"
        for i in range(240)]
    (tmp_path / "civil.csv").write_text("\n".join(civil) + "\n", encoding="utf-8")
    works = ["id;prenom;pere",
             "W1;Deka Omar;Elmi",      # given and father's names in one column
             "W2;ABDI Zahra;Hassan",   # case marker inside the column: Zahra is given
             "W3;Elmi;Hibo",           # her father's name first: the register's roles say
             "W4;Ahmed;Omar"]          # as written
    (tmp_path / "works.csv").write_text("\n".join(works) + "\n", encoding="utf-8")
    common = 'format: csv\ndelimiter: ";"\nrecord_key: id\n'
    (tmp_path / "works.yaml").write_text(
        "name: works\nkind: programme\npath: works.csv\n" + common
        + "columns:\n  given_name: prenom\n  father_name: pere\n", encoding="utf-8")
    (tmp_path / "civil.yaml").write_text(
        "name: civil\nkind: civil_registry\npath: civil.csv\n" + common
        + "columns:\n  given_name: prenom\n  father_name: pere\n"
          "  grandfather_name: grand_pere\n", encoding="utf-8")
    (tmp_path / "project.yaml").write_text(
        "name: t\nregister: register.duckdb\ncountry_code: '253'\n"
        "sources:\n- works.yaml\n- civil.yaml\n", encoding="utf-8")
    project = load_project(tmp_path / "project.yaml")
    r = Register.open(tmp_path / "register.duckdb")
    try:
        with r.transaction() as cur:
            reports = ingest_all(cur, project, progress=lambda _: None)
        assert [rep.reordered for rep in reports] == [1, 0]  # W3; the registry as written
        cur = r.cursor()
        got = {k: (g, f, gf) for k, g, f, gf in query(
            cur, "SELECT record_key, given_std, father_std, grandfather_std FROM records "
                 "WHERE source = 'works'")}
        cur.close()
    finally:
        r.close()
    assert got == {"W1": ("deka", "omar", "elmi"), "W2": ("zahra", "abdi", "hassan"),
                   "W3": ("hibo", "elmi", None), "W4": ("ahmed", "omar", None)}
