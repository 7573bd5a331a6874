"""The resolver index: a group of enrolled records linked in one pass, as if one by one."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
from service_fixtures import build_small_register

from linkage.canonical import STANDARD_COLUMNS
from linkage.matching.model import Model
from linkage.realtime.index import Index, probability

THRESHOLD = 0.8


def _split(tmp_path: Path) -> tuple[Model, list[dict], list[dict], dict[str, int]]:
    """Indexed rows, rows to enrol (with in-group duplicates) and the truth."""
    small = build_small_register(tmp_path, persons=250, seed=3)
    model = Model.load(small.project.model)
    con = duckdb.connect(str(small.project.register), read_only=True)
    cols = ", ".join(STANDARD_COLUMNS)
    rows = con.sql(f"SELECT r.uid, p.person_id, {cols} FROM records r JOIN person_records p "
                   "USING (uid) WHERE r.status = 'active' ORDER BY r.uid").to_arrow_table()
    con.close()
    known, new = [], []
    for r in rows.to_pylist():
        # Persons numbered 3 mod 4 are not in the index: all their records are new, and
        # the later ones can only link to earlier records of the same group.
        (new if small.truth[r["uid"]] % 4 == 3 or r["uid"].startswith("cash") else known
         ).append(r)
    new += [dict(r, uid=r["uid"] + "-again") for r in new[::7]]  # exact repeats
    truth = dict(small.truth)
    truth.update({r["uid"]: small.truth[r["uid"][:-6]] for r in new if r["uid"].endswith("-again")})
    return model, known, new, truth


def _index(model: Model, known: list[dict]) -> Index:
    import pyarrow as pa

    return Index.from_arrow(pa.Table.from_pylist(known), model, max_block_size=40)


def test_a_group_links_as_its_records_would_one_by_one(tmp_path: Path) -> None:
    model, known, new, truth = _split(tmp_path)

    # One by one: each record resolved against what is there, then added.
    one = _index(model, known)
    expected_cands, expected = [], []
    for k, r in enumerate(new):
        c = one.candidates(r)
        w = one.score(r, c)[0] if len(c) else np.empty(0)
        expected_cands.append(c.tolist())
        top = Index.top1(w, one.person[c]) if len(c) else None
        pid = one.persons.values[one.person[c[top]]] if top is not None else None
        if pid is None or probability(float(w[top])) < THRESHOLD:
            pid = f"NEW{k}"
        expected.append((pid, w))
        one.add(r["uid"], pid, r)

    # As one group: all added pending, linked in one pass, decided in order.
    group = _index(model, known)
    keys = [group.block_keys(r) for r in new]
    rows = [group.add(r["uid"], None, r, keys[k], pending=True) for k, r in enumerate(new)]
    assert all(i < len(known) for i in group.candidates(new[-1]))  # pending rows are unseen
    bounds, cand, weights = group.link_group(rows, keys)
    got = []
    for k in range(len(new)):
        c, w = cand[bounds[k]:bounds[k + 1]], weights[bounds[k]:bounds[k + 1]]
        assert c.tolist() == expected_cands[k], new[k]["uid"]
        assert np.allclose(w, expected[k][1], rtol=0, atol=1e-9), new[k]["uid"]
        top = Index.top1(w, group.person[c]) if len(c) else None
        pid = group.persons.values[group.person[c[top]]] if top is not None else None
        if pid is None or probability(float(w[top])) < THRESHOLD:
            pid = f"NEW{k}"
        group.assign(rows[k], pid)
        got.append(pid)
    group.publish(rows)

    assert got == [pid for pid, _ in expected]
    within = sum(1 for k, pid in enumerate(got) if pid.startswith("NEW") and pid != f"NEW{k}")
    to_index = sum(1 for pid in got if not pid.startswith("NEW"))
    assert within > 20 and to_index > 20, (within, to_index)  # both kinds of link happen
    # and they are mostly right: records linked together belong to one true person
    by_pid: dict[str, set[int]] = {}
    for r, pid in zip(new, got, strict=True):
        by_pid.setdefault(pid, set()).add(truth[r["uid"]])
    assert sum(len(s) > 1 for s in by_pid.values()) <= 0.05 * len(by_pid)
    # once published, the group is searchable with its persons
    assert group.person_of(new[-1]["uid"]) == got[-1]
    assert group.resolve(new[-1]).candidates[0].person_id == got[-1]


def test_removing_a_pending_record_undoes_its_term_frequencies(tmp_path: Path) -> None:
    model, known, new, _ = _split(tmp_path)
    index = _index(model, known)
    before = dict(index.tf_totals)
    index.add(new[0]["uid"], None, new[0], pending=True)
    assert index.tf_totals != before
    index.remove(new[0]["uid"])
    assert index.tf_totals == before
    assert index.person_of(new[0]["uid"]) is None
