"""A bad config fails with one clear message naming the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from linkage.config import ConfigError, load_project, load_source

SOURCE = """\
name: cash
kind: programme
path: cash.csv
format: csv
delimiter: ";"
record_key: id
columns:
  given_name: prenom
  family_name: nom
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def project(tmp_path: Path, extra: str = "") -> Path:
    write(tmp_path, "cash.yaml", SOURCE)
    (tmp_path / "cash.csv").write_text("id;prenom;nom\n1;Moussa;Traore\n", encoding="utf-8")
    return write(tmp_path, "project.yaml", "name: t\nsources: [cash.yaml]\n" + extra)


def test_valid_project_loads_with_defaults(tmp_path: Path) -> None:
    p = load_project(project(tmp_path))
    assert p.register == tmp_path / "data/register.duckdb"
    src = p.source("cash")
    assert src.paths == (tmp_path / "cash.csv",)
    assert src.delimiter == ";" and src.encoding == "utf-8"
    assert p.thresholds.match > p.thresholds.review


@pytest.mark.parametrize(
    ("source_text", "key", "words"),
    [
        (SOURCE.replace("format: csv", "format: xlsx"), "format", "not one of"),
        (SOURCE.replace("record_key: id\n", ""), "record_key", "required"),
        (SOURCE.replace("given_name: prenom", "given: prenom"), "columns.given", "unknown"),
        (SOURCE + "encoding: ebcdic\n", "encoding", "not one of"),
        (SOURCE + "colour: blue\n", "colour", "unknown key"),
        (SOURCE + "  full_name: nom_complet\n", "name_order", "required"),
        (SOURCE + "  age: age\n", "age_reference_date", "required"),
        (SOURCE + "birth_date_format: '%d/%m'\n", "birth_date_format", "%Y"),
        (SOURCE + "sex_codes: {X: [1]}\n", "sex_codes", "M and F"),
    ],
)
def test_bad_source_names_file_and_key(tmp_path: Path, source_text: str, key: str,
                                       words: str) -> None:
    path = write(tmp_path, "bad.yaml", source_text)
    with pytest.raises(ConfigError) as err:
        load_source(path)
    assert err.value.key == key
    assert str(path) in str(err.value) and key in str(err.value) and words in str(err.value)


def test_bad_project_key(tmp_path: Path) -> None:
    path = project(tmp_path, "thresholds: {match: 1.5}\n")
    with pytest.raises(ConfigError, match=r"project.yaml: thresholds.match: expected a number"):
        load_project(path)


def test_missing_source_file_named(tmp_path: Path) -> None:
    path = write(tmp_path, "project.yaml", "sources: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml: file not found"):
        load_project(path)


def test_invalid_yaml_named(tmp_path: Path) -> None:
    path = write(tmp_path, "project.yaml", "sources: [a.yaml\n")
    with pytest.raises(ConfigError, match=r"project.yaml: not valid YAML"):
        load_project(path)
