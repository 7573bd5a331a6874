"""Reviewers' decisions as labels in training (`linkage train --use-labels`), on a small
generated register: m re-estimated from the same-person pairs, reported with the count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from linkage.batch.pipeline import active_records
from linkage.config import load_project
from linkage.engines import duckdb_sql
from linkage.errors import NotFound
from linkage.matching import labels as labelled
from linkage.matching import training
from linkage.matching.model import SHIPPED_MODELS_DIR, Model
from linkage.register.database import Register
from linkage.review.core import Review
from linkage.review.evidence import Filters
from linkage.synthetic.generate import generate
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated, read_truth

ROOT = Path(__file__).resolve().parents[1]


def _decide_by_truth(g: Generated, limit: int, top_up: bool = False) -> tuple[int, int]:
    """Decide up to ``limit`` pair items as the generator's truth says; (same, not same).
    ``top_up``: open and label true pairs until there are enough to train from."""
    reg = Register.of(g.project)
    same = not_same = 0
    try:
        review = Review(g.project, reg)
        items, _, _ = review.list(Filters(kind="pair"), page_size=500)
        for it in items[:limit]:
            ok = g.truth.get(it.uid_a) == g.truth.get(it.uid_b) is not None
            review.decide(it.item_id, "same" if ok else "not_same", reviewer="test")
            same, not_same = same + ok, not_same + (not ok)
        # The band may hold few true pairs (ambiguity settles many): a reviewer also opens
        # pairs seen elsewhere (`linkage review open`) and labels them.
        by_person: dict[str, list[str]] = {}
        for uid, pid in sorted(g.truth.items()):
            by_person.setdefault(pid, []).append(uid)
        pairs = [(u[0], u[1]) for u in by_person.values() if len(u) > 1]
        for a, b in pairs[: max(0, labelled.MIN_LABELLED_PAIRS + 5 - same) if top_up else 0]:
            try:
                item = review.open_pair(a, b, reviewer="test")
            except NotFound:  # a record the batch did not keep (a deliberately bad row)
                continue
            review.decide(item, "same", reviewer="test")
            same += 1
    finally:
        reg.close()
    return same, not_same


def _train(root: Path, *flags: str) -> tuple[subprocess.CompletedProcess, dict]:
    res = subprocess.run([sys.executable, "-m", "linkage", "train", "-p",
                          str(root / "project.yaml"), *flags], capture_output=True,
                         text=True, timeout=600, cwd=ROOT, env=dict(os.environ))
    assert res.returncode == 0, res.stderr
    project = load_project(root / "project.yaml")
    path = project.model or root / "models" / "model.json"
    return res, json.loads(path.read_text(encoding="utf-8"))


def _labels(g: Generated) -> labelled.Labels:
    reg = Register.of(g.project, read_only=True)
    try:
        cur = reg.cursor()
        try:
            return labelled.from_register(cur)
        finally:
            cur.close()
    finally:
        reg.close()


def _apply(g: Generated, labels: labelled.Labels) -> Model:
    """The shipped model with m from ``labels``, on the register's active records."""
    reg = Register.of(g.project, read_only=True)
    try:
        cur = reg.cursor()
        records = active_records(cur)
        cur.close()
    finally:
        reg.close()
    con = duckdb_sql.new_scratch("1GB")
    try:
        duckdb_sql.prepare_input(con, records, g.project.max_block_size)
        return labelled.apply(con, Model.load(SHIPPED_MODELS_DIR / "sahel.json"), labels,
                              linker=training._linker)
    finally:
        con.close()


def test_m_from_reviewers_labels(rv_project: Generated) -> None:
    same, not_same = _decide_by_truth(rv_project, 500, top_up=True)
    assert same >= labelled.MIN_LABELLED_PAIRS and not_same > 0
    found = _labels(rv_project)
    assert len(found.positive) == same and found.negative >= not_same
    model = _apply(rv_project, found)
    info = model.metadata["labels"]
    assert info["used"] and info["positive_pairs"] == same
    assert info["positive_pairs_used"] == same  # every labelled record is active
    assert info["levels_changed"] > 0
    n, k = info["positive_pairs_used"], info["pseudo_pairs"]
    params = {(c, lvl["label"]): lvl["m"] for c, lvls in model.level_parameters().items()
              for lvl in lvls}
    shipped = Model.load(SHIPPED_MODELS_DIR / "sahel.json").level_parameters()
    for ch in info["largest_changes"]:  # the blend, and the settings carry it
        assert abs(ch["m"] - (n * ch["m_labels"] + k * ch["m_trained"]) / (n + k)) < 1e-9
        assert any(abs(m - ch["m"]) < 1e-12 for (c, _), m in params.items()
                   if c == ch["comparison"] and m is not None)
        before = [lvl["m"] for lvl in shipped[ch["comparison"]]]
        assert ch["m_trained"] in before
    # The exact given name is more common among true same-person pairs than the shipped
    # model's m says of the doubtful ones? Whatever the direction, it moved towards them.
    for ch in info["largest_changes"]:
        assert min(ch["m_trained"], ch["m_labels"]) - 1e-12 <= ch["m"] <= max(
            ch["m_trained"], ch["m_labels"]) + 1e-12
    report = "\n".join(labelled.describe(model))
    assert f"labels: {same:,} same-person" in report and "m re-estimated from them" in report
    assert f"labels: {same:,} same-person" in training.describe(model)


def test_too_few_labels_are_reported_not_used(rv_project: Generated) -> None:
    _decide_by_truth(rv_project, 3)
    model = _apply(rv_project, _labels(rv_project))
    assert model.metadata["labels"]["used"] is False
    assert model.settings == Model.load(SHIPPED_MODELS_DIR / "sahel.json").settings
    assert "not used: only" in "\n".join(labelled.describe(model))


def test_linkage_train_use_labels(tmp_path: Path) -> None:
    """The command line end to end, on a register large enough to train on."""
    generate(persons=2500, profile="sahel", seed=7, out=tmp_path)
    g = Generated(tmp_path, load_project(tmp_path / "project.yaml"), read_truth(tmp_path))
    g.rerun()
    same, _ = _decide_by_truth(g, 80)
    res, model = _train(tmp_path, "--use-labels")
    assert model["metadata"]["labels"]["positive_pairs"] == same
    assert f"labels: {same:,} same-person" in res.stdout
