"""A bad config fails with one clear message naming the file and the key."""

from __future__ import annotations

import os
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


def test_one_to_one_threshold_lies_between_review_and_match(tmp_path: Path) -> None:
    """Written down, it must hold; left out, it adapts to the other two."""
    path = project(tmp_path, "thresholds: {match: 0.9, review: 0.6, one_to_one: 0.5}\n")
    with pytest.raises(ConfigError, match=r"project.yaml: thresholds.one_to_one: must be "
                                          r"between thresholds.review and thresholds.match"):
        load_project(path)
    t = load_project(project(tmp_path, "thresholds: {match: 0.9, one_to_one: 0.7}\n")).thresholds
    assert (t.match, t.review, t.one_to_one_match) == (0.9, 0.4, 0.7)
    t = load_project(project(tmp_path, "thresholds: {match: 0.45, review: 0.3}\n")).thresholds
    assert t.one_to_one_match == 0.45  # the default 0.5, never above the match threshold
    t = load_project(project(tmp_path, "thresholds: {review: 0.6}\n")).thresholds
    assert t.one_to_one_match == 0.6  # nor under the review threshold (linked pairs are kept)


def test_missing_source_file_named(tmp_path: Path) -> None:
    path = write(tmp_path, "project.yaml", "sources: [nowhere.yaml]\n")
    with pytest.raises(ConfigError, match=r"nowhere.yaml: file not found"):
        load_project(path)


def test_invalid_yaml_named(tmp_path: Path) -> None:
    path = write(tmp_path, "project.yaml", "sources: [a.yaml\n")
    with pytest.raises(ConfigError, match=r"project.yaml: not valid YAML"):
        load_project(path)


def test_engine_memory_and_spark_settings(tmp_path: Path) -> None:
    p = load_project(project(tmp_path))
    assert (p.engine, p.memory.limit, p.memory.spill_dir) == ("duckdb", None, None)
    p = load_project(project(tmp_path, "engine: spark\nmemory: {limit: 6GB, spill_dir: spill}\n"
                                       "spark: {master: 'local[4]', driver_memory: 8g}\n"))
    assert (p.engine, p.memory.limit, p.memory.spill_dir) == ("spark", "6GB", tmp_path / "spill")
    assert (p.spark.master, p.spark.driver_memory) == ("local[4]", "8g")
    assert load_project(project(tmp_path, "memory: {limit: auto}\n")).memory.limit is None


@pytest.mark.parametrize(("extra", "key", "words"), [
    ("engine: hadoop\n", "engine", "not one of duckdb, spark"),
    ("memory: {limit: lots}\n", "memory.limit", "not a size"),
    ("memory: {swap: 1GB}\n", "memory.swap", "unknown key"),
    ("spark: {driver_memory: 8GB}\n", "spark.driver_memory", "JVM size"),
])
def test_bad_engine_settings_name_file_and_key(tmp_path: Path, extra: str, key: str,
                                               words: str) -> None:
    path = project(tmp_path, extra)
    with pytest.raises(ConfigError) as err:
        load_project(path)
    assert err.value.key == key and str(path) in str(err.value) and words in str(err.value)


def test_duckdb_scratch_memory_from_the_machine_or_the_setting(tmp_path: Path) -> None:
    """No limit set: half the machine's memory (cgroup-aware); a setting overrides both
    the limit and the spill directory."""
    from linkage.engines import duckdb_sql

    def settings(con) -> tuple[float, str]:
        ((limit, spill),) = con.execute(
            "SELECT (SELECT value FROM duckdb_settings() WHERE name = 'memory_limit'), "
            "current_setting('temp_directory')").fetchall()
        con.close()
        return limit, spill

    machine = duckdb_sql.machine_memory_bytes()
    assert 0 < machine <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit, spill = settings(duckdb_sql.new_scratch())
    expected_gib = machine * duckdb_sql.MACHINE_MEMORY_SHARE / 2**30
    number, unit = limit.split()
    got_gib = float(number) * {"MiB": 1 / 1024, "GiB": 1.0, "TiB": 1024.0}[unit]
    assert got_gib == pytest.approx(expected_gib, rel=0.02)
    assert spill == str(duckdb_sql.default_spill_dir())
    limit, spill = settings(duckdb_sql.new_scratch("300MB", spill_dir=tmp_path / "spill"))
    assert limit == "286.1 MiB" and spill == str(tmp_path / "spill")
