"""Incremental nightly runs give a full run's persons and links, and say which mode ran."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from linkage.batch import incremental
from linkage.batch.pipeline import format_summary, run
from linkage.config import load_project
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.synthetic.generate import generate

PERSONS = 250


def _quiet(_: str) -> None:
    pass


def published(register: Path) -> tuple[list[tuple[str, ...]], list[tuple]]:
    """Persons as sets of record uids, and the kept links with their exact weights."""
    con = duckdb.connect(str(register), read_only=True)
    try:
        persons = sorted(tuple(r[0]) for r in con.execute(
            "SELECT list(uid ORDER BY uid) FROM person_records GROUP BY person_id").fetchall())
        links = con.execute("SELECT uid_l, uid_r, match_probability, match_weight FROM links "
                            "ORDER BY uid_l, uid_r").fetchall()
    finally:
        con.close()
    return persons, links


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two copies of one register after night 1; night 2 brings 3% new cash-transfer rows
    and one changed row into both; copy "inc" then runs incrementally, "full" with --full."""
    base = tmp_path_factory.mktemp("nights")
    generate(persons=PERSONS, profile="sahel", seed=5, out=base / "inc",
             model=SHIPPED_MODELS_DIR / "sahel.json")
    data = next((base / "inc" / "data").glob("cash_transfer*"))
    lines = data.read_text(encoding="latin-1").splitlines(keepends=True)
    held = max(3, len(lines) * 3 // 100)
    tomorrow = lines[:]
    # one existing row changes too (a corrected name: a different character in row 2)
    tomorrow[2] = tomorrow[2].replace("a", "e", 1)
    data.write_text("".join(lines[:-held]), encoding="latin-1")
    shutil.copytree(base / "inc", base / "full")
    for copy in ("inc", "full"):
        run(load_project(base / copy / "project.yaml"), progress=_quiet)
        (base / copy / "data" / data.name).write_text("".join(tomorrow), encoding="latin-1")
    return {"inc": base / "inc", "full": base / "full"}


def test_incremental_run_publishes_exactly_what_a_full_run_does(nights: dict[str, Path]) -> None:
    inc = run(load_project(nights["inc"] / "project.yaml"), progress=_quiet)
    full = run(load_project(nights["full"] / "project.yaml"), progress=_quiet, full=True)
    assert full.summary["mode"] == {"mode": "full", "reason": "--full given"}
    mode = inc.summary["mode"]
    assert mode["mode"] == "incremental", mode
    assert 3 <= mode["affected_records"] < 0.1 * sum(
        s["records"] for s in inc.summary["sources"].values())
    assert "records new or changed" in mode["reason"]
    assert "incremental run" in format_summary(inc.summary)
    p_inc, l_inc = published(load_project(nights["inc"] / "project.yaml").register)
    p_full, l_full = published(load_project(nights["full"] / "project.yaml").register)
    assert len(p_inc) < sum(s["records"] for s in inc.summary["sources"].values())
    assert p_inc == p_full
    assert l_inc == l_full  # the same pairs with bit-identical weights
    assert inc.summary["id_changes"] == full.summary["id_changes"]

    # Nothing changed since: incremental again, nothing affected, the same persons.
    again = run(load_project(nights["inc"] / "project.yaml"), progress=_quiet)
    assert again.summary["mode"]["mode"] == "incremental"
    assert again.summary["mode"]["affected_records"] == 0
    assert published(load_project(nights["inc"] / "project.yaml").register) == (p_full, l_full)


def test_full_run_when_the_state_is_not_the_last_runs(tmp_path: Path) -> None:
    generate(persons=60, profile="sahel", seed=9, out=tmp_path,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    project = load_project(tmp_path / "project.yaml")
    first = run(project, progress=_quiet)
    assert first.summary["mode"] == {"mode": "full",
                                     "reason": "no incremental state from an earlier run"}
    state_file = incremental.state_dir(project.register) / "state.json"
    state = json.loads(state_file.read_text())
    assert state["run_id"] == first.run_id
    # A setting that changes which pairs are scored: full, and the reason names it.
    text = (tmp_path / "project.yaml").read_text()
    (tmp_path / "project.yaml").write_text(text + "\nmax_block_size: 50\n")
    second = run(load_project(tmp_path / "project.yaml"), progress=_quiet)
    assert second.summary["mode"]["mode"] == "full"
    assert "max_block_size" in second.summary["mode"]["reason"]
    # A state left by another run (say, restored from an older backup) is never used.
    state = json.loads(state_file.read_text())
    state_file.write_text(json.dumps(dict(state, run_id="run-older")))
    third = run(load_project(tmp_path / "project.yaml"), progress=_quiet)
    assert third.summary["mode"]["mode"] == "full"
    assert "run-older" in third.summary["mode"]["reason"]
