"""Change guards: a newer extract in the wrong encoding stops the run before publishing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from linkage.batch.pipeline import run
from linkage.config import load_project
from linkage.errors import ChangeGuardTripped, ConfigError, RunError
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.synthetic.generate import generate

PUBLISHED_TABLES = ("records", "persons", "person_records", "person_events", "person_successors",
                    "links", "source_files", "rejects")


def _snapshot(register: Path) -> dict[str, list]:
    con = duckdb.connect(str(register), read_only=True)
    try:
        return {t: con.execute(f"SELECT * FROM {t} ORDER BY ALL").fetchall()
                for t in PUBLISHED_TABLES}
    finally:
        con.close()


def _save_in_wrong_encoding(project_dir: Path) -> None:
    """The civil registry's newer extract, declared UTF-8, saved as Windows-1252."""
    path = project_dir / "data" / "civil_registry.csv"
    text = path.read_text(encoding="utf-8")
    assert any(ord(ch) > 127 for ch in text)  # accented names: the re-encoding bites
    path.write_bytes(text.encode("cp1252", errors="replace"))


@pytest.fixture()
def published(tmp_path: Path) -> Path:
    generate(persons=400, profile="sahel", seed=7, out=tmp_path,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    run(load_project(tmp_path / "project.yaml"), progress=lambda _: None)
    return tmp_path


def test_wrong_encoding_extract_stops_before_publish_with_nothing_retired(
        published: Path) -> None:
    project = load_project(published / "project.yaml")
    before = _snapshot(project.register)
    _save_in_wrong_encoding(published)
    lines: list[str] = []
    with pytest.raises(ChangeGuardTripped) as caught:
        run(project, progress=lines.append)
    err = caught.value
    assert isinstance(err, RunError)  # the CLI and the service treat it as a failed run
    message = str(err)
    # It names the source, the file, the figures and the limit, and says how to override.
    assert "source civil_registry: would retire" in message
    assert "file civil_registry.csv" in message and "rows rejected" in message
    assert "invalid utf-8 bytes in row" in message
    assert "guards.max_retired_share 25.0 %" in message and "--accept-changes" in message
    assert len(err.findings) == 2
    # Stopped right after ingest: no prediction was spent on the bad extract.
    assert not any(line == "predicting" for line in lines)
    after = _snapshot(project.register)
    assert after == before  # nothing retired, rejected, re-assigned or announced
    con = duckdb.connect(str(project.register), read_only=True)
    try:
        runs = con.execute("SELECT status, error FROM runs ORDER BY started_at").fetchall()
        (retired,) = con.execute("SELECT count(*) FROM records WHERE status = 'retired'"
                                 ).fetchall()[0]
    finally:
        con.close()
    assert retired == 0
    assert [s for s, _ in runs] == ["published", "failed"]
    assert "ChangeGuardTripped" in runs[-1][1]


def test_cli_exit_code_and_accept_changes_publishes(published: Path) -> None:
    _save_in_wrong_encoding(published)
    cmd = [sys.executable, "-m", "linkage", "run", "-p", str(published / "project.yaml")]
    stopped = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert stopped.returncode == 10, stopped.stderr
    assert "stopped before publishing" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    accepted = subprocess.run([*cmd, "--accept-changes"], capture_output=True, text=True,
                              timeout=300)
    assert accepted.returncode == 0, accepted.stderr
    assert "change guard overridden (--accept-changes): source civil_registry" in accepted.stderr
    con = duckdb.connect(str(published / "register.duckdb"), read_only=True)
    try:
        (retired,) = con.execute("SELECT count(*) FROM records WHERE status = 'retired' "
                                 "AND source = 'civil_registry'").fetchall()[0]
    finally:
        con.close()
    assert retired > 100  # published on purpose: the vanished rows are retired


def test_guards_person_id_share_judged_after_reconciling(published: Path) -> None:
    """Only the person-ID guard: records and rows guards off, IDs at a tight limit."""
    text = (published / "project.yaml").read_text()
    (published / "project.yaml").write_text(
        text + "guards: {max_retired_share: 1.0, max_rejected_share: 1.0, "
               "max_changed_ids_share: 0.05}\n")
    project = load_project(published / "project.yaml")
    _save_in_wrong_encoding(published)
    lines: list[str] = []
    with pytest.raises(ChangeGuardTripped) as caught:
        run(project, progress=lines.append)
    assert len(caught.value.findings) == 1
    assert caught.value.findings[0].startswith("person IDs: would retire, merge or split")
    assert "predicting" in lines  # this one needs the run's clusters


@pytest.mark.parametrize(("setting", "key"), [
    ("guards: {max_retired_share: 1.5}", "guards.max_retired_share"),
    ("guards: {max_rejected_share: yes}", "guards.max_rejected_share"),
    ("guards: {min_count: 0}", "guards.min_count"),
    ("guards: {max_retire_share: 0.1}", "guards.max_retire_share"),
])
def test_guard_settings_are_validated(tmp_path: Path, setting: str, key: str) -> None:
    (tmp_path / "s.csv").write_text("id,prenom\n1,Awa\n")
    (tmp_path / "s.yaml").write_text("name: s\nkind: programme\nprogramme: S\npath: s.csv\n"
                                     "format: csv\nrecord_key: id\n"
                                     "columns: {given_name: prenom}\n")
    (tmp_path / "project.yaml").write_text(f"name: x\nsources: [s.yaml]\n{setting}\n")
    with pytest.raises(ConfigError) as caught:
        load_project(tmp_path / "project.yaml")
    assert f"project.yaml: {key}: " in str(caught.value)
