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


def ids_and_events(register: Path) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """Every record's person ID, every person's status, and the last run's events in order
    (two copies of one register share its ID secret, so their IDs can be compared)."""
    con = duckdb.connect(str(register), read_only=True)
    try:
        assignment = con.execute("SELECT uid, person_id FROM person_records ORDER BY uid"
                                 ).fetchall()
        status = con.execute("SELECT person_id, status, issue_seq FROM persons "
                             "ORDER BY person_id").fetchall()
        events = con.execute("""
            SELECT kind, person_id, record_uid, other_person_id, cause, golden FROM person_events
            WHERE run_id = (SELECT run_id FROM runs WHERE status = 'published'
                            ORDER BY finished_at DESC LIMIT 1) ORDER BY seq""").fetchall()
    finally:
        con.close()
    return assignment, status, events


def _night2_edits(register: Path, lines: list[str]) -> list[str]:
    """Two edits to existing cash-transfer rows that change persons, not only add to them.

    * **merge**: a row alone in its person becomes an exact copy of a row of another
      person (exact copies are joined): its person is retired, merged into the other;
    * **split**: a row of a person with records in other sources gets a name and a birth
      date nobody has: it leaves its person and gets a new ID (``split_from``).
    """
    con = duckdb.connect(str(register), read_only=True)
    try:
        sizes = dict(con.execute("""
            SELECT uid, count(*) OVER (PARTITION BY person_id) FROM person_records""").fetchall())
        multi_source = {u for (u,) in con.execute("""
            SELECT p.uid FROM person_records p JOIN records r USING (uid)
            WHERE r.source = 'cash_transfer' AND p.person_id IN (
              SELECT p2.person_id FROM person_records p2 JOIN records r2 USING (uid)
              GROUP BY p2.person_id HAVING count(DISTINCT r2.source) > 1)""").fetchall()}
    finally:
        con.close()
    # Rows after the header and the corrected row 2.
    rows = {line.split(",", 1)[0]: i for i, line in enumerate(lines[3:], start=3)}
    uid = {key: f"cash_transfer:{key}" for key in rows}
    alone = [k for k in rows if sizes.get(uid[k]) == 1]
    split = next(k for k in rows if uid[k] in multi_source)
    merged, into = alone[0], alone[1]
    out = lines[:]
    out[rows[merged]] = merged + "," + lines[rows[into]].split(",", 1)[1]
    cells = lines[rows[split]].split(",")
    cells[1], cells[3] = "QWXYZBEK Zebulon", "17/11/1931"
    out[rows[split]] = ",".join(cells)
    return out


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One register after night 1, copied (same ID secret); night 2 brings 3% new
    cash-transfer rows, one corrected row, a merge and a split into both copies; copy
    "inc" then runs incrementally, "full" with --full."""
    base = tmp_path_factory.mktemp("nights")
    generate(persons=PERSONS, profile="sahel", seed=5, out=base / "inc",
             model=SHIPPED_MODELS_DIR / "sahel.json")
    data = next((base / "inc" / "data").glob("cash_transfer*"))
    lines = data.read_text(encoding="latin-1").splitlines(keepends=True)
    held = max(3, len(lines) * 3 // 100)
    data.write_text("".join(lines[:-held]), encoding="latin-1")
    run(load_project(base / "inc" / "project.yaml"), progress=_quiet)
    tomorrow = _night2_edits(load_project(base / "inc" / "project.yaml").register, lines)
    # one existing row changes too (a corrected name: a different character in row 2)
    tomorrow[2] = tomorrow[2].replace("a", "e", 1)
    shutil.copytree(base / "inc", base / "full")
    for copy in ("inc", "full"):
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
    assert any("blocking analysis" in s for s in mode["skipped"])
    assert any("persistent IDs" in s for s in mode["skipped"])
    assert "incremental run" in format_summary(inc.summary)
    assert "skipped:" in format_summary(inc.summary)
    inc_register = load_project(nights["inc"] / "project.yaml").register
    full_register = load_project(nights["full"] / "project.yaml").register
    p_inc, l_inc = published(inc_register)
    p_full, l_full = published(full_register)
    assert len(p_inc) < sum(s["records"] for s in inc.summary["sources"].values())
    assert p_inc == p_full
    assert l_inc == l_full  # the same pairs with bit-identical weights
    # Counted from last night's counts and the changed records' pairs: a full recount's.
    assert inc.summary["comparisons_by_rule"] == full.summary["comparisons_by_rule"]
    assert inc.summary["capped_records_by_rule"] == full.summary["capped_records_by_rule"]
    # The edits merged and split persons; the IDs reconciled from the changed part only
    # are the full reconciliation's: same IDs, statuses and events in the same order.
    assert inc.summary["id_changes"] == full.summary["id_changes"]
    assert {"merged_into", "split_from", "created"} <= set(inc.summary["id_changes"])
    assert ids_and_events(inc_register) == ids_and_events(full_register)

    # Nothing changed since: incremental again, nothing affected, the same persons.
    again = run(load_project(nights["inc"] / "project.yaml"), progress=_quiet)
    assert again.summary["mode"]["mode"] == "incremental"
    assert again.summary["mode"]["affected_records"] == 0
    assert again.summary["comparisons_by_rule"] == full.summary["comparisons_by_rule"]
    assert published(inc_register) == (p_full, l_full)
    assert ids_and_events(inc_register)[:2] == ids_and_events(full_register)[:2]


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
