"""The review queue end to end on a generated register: queueing, decisions, later runs."""

from __future__ import annotations

import json

import pytest

from linkage.errors import ConstraintConflict, InvalidRequest, NotFound, ReviewConflict
from linkage.register import store
from linkage.register.database import Register, query
from linkage.review.core import Review
from linkage.review.evidence import Filters
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated


def _review(g: Generated) -> Review:
    return Review(g.project, Register.open(g.project.register))


def _persons(rv: Review, *uids: str) -> list[str | None]:
    cur = rv.register.cursor()
    got = dict(query(cur, "SELECT uid, person_id FROM person_records"))
    cur.close()
    return [got.get(u) for u in uids]


def _q(rv: Review, sql: str, params: list | None = None) -> list[tuple]:
    cur = rv.register.cursor()
    try:
        return query(cur, sql, params)
    finally:
        cur.close()


def test_a_run_queues_the_review_band_and_doubtful_persons(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        m = rv_project.project.thresholds
        (band,) = _q(rv, "SELECT count(*) FROM links WHERE NOT linked")[0]
        pairs, _, n_pairs = rv.list(Filters(kind="pair"), page_size=500)
        assert n_pairs == band > 0  # every pair of the band, and nothing else
        assert all(m.review <= it.match_probability < m.match for it in pairs)
        assert [it.priority for it in pairs] == sorted((it.priority for it in pairs),
                                                       reverse=True)
        persons, _, n_persons = rv.list(Filters(kind="person"), page_size=500)
        assert n_persons > 0
        reasons = {r for it in persons for r in it.reasons}
        assert reasons <= {"weak_link", "two_national_ids", "two_civil_registry_records",
                           "many_records", "irreconcilable_birth_dates"}
        for it in persons:  # the person in doubt holds the item's records
            assert set(_persons(rv, *it.record_uids)) == {it.person_id}
        # Paging with tokens visits every open item once, in order.
        seen, token = [], ""
        while True:
            page, token, total = rv.list(Filters(), page_size=7, page_token=token)
            seen += [it.item_id for it in page]
            if not token:
                break
        assert len(seen) == len(set(seen)) == total == n_pairs + n_persons
        with pytest.raises(InvalidRequest) as exc:
            rv.list(Filters(), page_token="not-a-token!")
        assert exc.value.violations[0][0] == "page_token"
    finally:
        rv.register.close()
    # The next run over unchanged records queues nothing new.
    summary = rv_project.rerun()
    assert summary["review"]["queued"] == 0
    assert summary["review"]["open"] == n_pairs + n_persons


def test_same_person_applies_at_once_survives_the_next_run_and_is_not_reopened(
        rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        items, _, _ = rv.list(Filters(kind="pair"), page_size=500)
        item = next(it for it in items if not it.linked_then)
        a, b = item.uid_a, item.uid_b
        pa, pb = _persons(rv, a, b)
        assert pa != pb
        (seq0,) = _q(rv, "SELECT max(seq) FROM person_events")[0]
        d = rv.decide(item.item_id, "same", reviewer="awa", comment="same mother, same village")
        assert d.constraints == [(a, b, "must_link")]
        assert d.persons[a] == d.persons[b]
        assert _persons(rv, a, b) == [d.persons[a]] * 2  # published at once
        events = _q(rv, "SELECT kind, run_id, cause FROM person_events WHERE seq > ?", [seq0])
        assert {(r, c) for _, r, c in events} == {("review", "review")}
        assert {k for k, _, _ in events} >= {"record_added", "record_removed"}
        assert rv.get(item.item_id, viewer="awa", surface="test").item.status == "decided"
        (views,) = _q(rv, "SELECT count(*) FROM review_views WHERE item_id = ? AND "
                          "viewer = 'awa'", [item.item_id])[0]
        assert views == 1
    finally:
        rv.register.close()
    rv_project.rerun()
    rv = _review(rv_project)
    try:
        assert _persons(rv, a, b)[0] == _persons(rv, a, b)[1] is not None
        again = _q(rv, "SELECT item_id, status FROM review_items WHERE list_contains("
                       "record_uids, ?) AND list_contains(record_uids, ?)", [a, b])
        assert again == [(item.item_id, "decided")]  # not reopened
    finally:
        rv.register.close()


def _strong_linked_pair(rv: Review) -> tuple[str, str]:
    rows = _q(rv, """
        SELECT l.uid_l, l.uid_r FROM links l JOIN person_records a ON a.uid = l.uid_l
        JOIN person_records b ON b.uid = l.uid_r
        WHERE l.match_probability >= 0.99 AND a.person_id = b.person_id
        ORDER BY l.match_probability DESC, l.uid_l LIMIT 1""")
    assert rows, "the generated register has strong links"
    return rows[0]


def test_cannot_link_keeps_apart_two_records_scored_at_099(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        a, b = _strong_linked_pair(rv)
        assert rv.explain(a, b).match_probability >= 0.99
        item_id = rv.open_pair(a, b, reviewer="awa")
        assert rv.open_pair(a, b, reviewer="awa") == item_id  # the same evidence, once
        d = rv.decide(item_id, "not_same", reviewer="awa")
        assert d.persons[a] != d.persons[b]
        assert _persons(rv, a, b) == [d.persons[a], d.persons[b]]
    finally:
        rv.register.close()
    rv_project.rerun()
    rv = _review(rv_project)
    try:
        pa, pb = _persons(rv, a, b)
        assert pa != pb and None not in (pa, pb)
    finally:
        rv.register.close()


def test_must_link_joins_two_records_that_share_nothing(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        uids = [u for (u,) in _q(rv, "SELECT uid FROM person_records ORDER BY uid")]
        a = uids[0]
        b = next(u for u in reversed(uids) if not rv.explain(a, u).compared
                 and _persons(rv, u) != _persons(rv, a))
        ex = rv.explain(a, b)
        assert not ex.compared and ex.match_probability < 0.5
        d = rv.decide(rv.open_pair(a, b, reviewer="awa"), "same", reviewer="awa")
        assert d.persons[a] == d.persons[b]
    finally:
        rv.register.close()
    rv_project.rerun()
    rv = _review(rv_project)
    try:
        pa, pb = _persons(rv, a, b)
        assert pa == pb is not None
    finally:
        rv.register.close()


def test_a_later_decision_revokes_the_earlier_one(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        item = next(it for it in rv.list(Filters(kind="pair"), page_size=500)[0]
                    if not it.linked_then)
        first = rv.decide(item.item_id, "same", reviewer="awa")
        second = rv.decide(item.item_id, "not_same", reviewer="moussa", comment="twins")
        assert second.revokes == first.decision_id
        assert second.persons[item.uid_a] != second.persons[item.uid_b]  # apart at once
        cons = _q(rv, "SELECT kind, decision_id FROM constraints WHERE uid_a = least(?, ?) "
                      "AND uid_b = greatest(?, ?)", [item.uid_a, item.uid_b] * 2)
        assert cons == [("cannot_link", second.decision_id)]
        view = rv.get(item.item_id, viewer="moussa", surface="test")
        assert [d.decision for d in view.decisions] == ["same", "not_same"]  # never lost
        third = rv.decide(item.item_id, "defer", reviewer="awa")
        assert third.revokes == second.decision_id and not third.constraints
        assert _q(rv, "SELECT status FROM review_items WHERE item_id = ?",
                  [item.item_id]) == [("deferred",)]
        assert not _q(rv, "SELECT * FROM constraints WHERE decision_id = ?",
                      [second.decision_id])
    finally:
        rv.register.close()


def test_take_a_record_out_of_its_person(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        a, b = _strong_linked_pair(rv)
        item_id = rv.open_pair(a, b, reviewer="awa")
        pid = _persons(rv, a)[0]
        others = [u for (u,) in _q(rv, "SELECT uid FROM person_records WHERE person_id = ? "
                                       "AND uid <> ?", [pid, b])]
        d = rv.decide(item_id, "take_out", reviewer="awa", record_uid=b)
        assert sorted(x for _, x, _ in d.constraints) == sorted(others)
        assert _persons(rv, b)[0] not in _persons(rv, *others)
        assert len(set(_persons(rv, *others))) == 1  # the rest stays together
    finally:
        rv.register.close()
    rv_project.rerun()
    rv = _review(rv_project)
    try:
        assert _persons(rv, b)[0] not in _persons(rv, *others)
    finally:
        rv.register.close()


def test_bad_decisions_are_refused_and_change_nothing(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        items, _, _ = rv.list(Filters(kind="pair"), page_size=500)
        it1, it2 = items[0], items[1]
        with pytest.raises(InvalidRequest) as exc:
            rv.decide(it1.item_id, "maybe", reviewer="")
        assert {f for f, _ in exc.value.violations} == {"decision", "reviewer"}
        with pytest.raises(NotFound):
            rv.decide("R999999", "same", reviewer="awa")
        with pytest.raises(InvalidRequest) as exc:
            rv.decide(it1.item_id, "take_out", reviewer="awa")
        assert exc.value.violations[0][0] == "record"
        person = next(it for it in rv.list(Filters(kind="person"), page_size=500)[0])
        with pytest.raises(InvalidRequest):
            rv.decide(person.item_id, "not_same", reviewer="awa")
        # A cannot-link between records that must-links join: refused, nothing written.
        a, b = it1.uid_a, it1.uid_b
        rv.decide(it1.item_id, "same", reviewer="awa")
        before = _q(rv, "SELECT * FROM constraints ORDER BY ALL")
        n_dec = len(_q(rv, "SELECT * FROM review_decisions"))
        contra = rv.open_pair(a, b, reviewer="awa")
        assert contra == it1.item_id
        c = next(u for u in (it2.uid_a, it2.uid_b) if u not in (a, b))
        cur = rv.register.cursor()
        cur.execute("BEGIN TRANSACTION")
        store.add_constraint(cur, b, c, "must_link", decided_by="test")
        cur.execute("COMMIT")
        cur.close()
        x = rv.open_pair(a, c, reviewer="awa")
        with pytest.raises(ConstraintConflict):
            rv.decide(x, "not_same", reviewer="awa")
        assert len(_q(rv, "SELECT * FROM constraints")) == len(before) + 1
        assert len(_q(rv, "SELECT * FROM review_decisions")) == n_dec
    finally:
        rv.register.close()


def test_a_changed_record_reopens_its_decided_pair(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        item = rv.list(Filters(kind="pair"), page_size=1)[0][0]
        rv.decide(item.item_id, "not_same", reviewer="awa")
        cur = rv.register.cursor()
        cols = ", ".join(store.RECORDS_SCHEMA.names)
        tbl = cur.sql(f"SELECT {cols} FROM records WHERE uid = ?",
                      params=[item.uid_a]).to_arrow_table().to_pylist()[0]
        raw = json.loads(tbl["raw"])
        raw["note"] = "corrected by the programme"
        tbl["raw"] = store.record_json(raw)
        tbl["record_hash"] = store.record_hash(tbl["raw"])
        import pyarrow as pa
        cur.execute("BEGIN TRANSACTION")
        store.upsert_records(cur, pa.Table.from_pylist([tbl], schema=store.RECORDS_SCHEMA))
        cur.execute("COMMIT")
        cur.close()
    finally:
        rv.register.close()
    summary = rv_project.rerun()
    assert summary["review"]["queued"] >= 1
    rv = _review(rv_project)
    try:
        rows = _q(rv, "SELECT item_id, status FROM review_items WHERE list_contains("
                      "record_uids, ?) AND list_contains(record_uids, ?) ORDER BY seq",
                  [item.uid_a, item.uid_b])
        assert rows[0] == (item.item_id, "decided") and rows[-1][1] == "open"
        assert len(rows) == 2
    finally:
        rv.register.close()


def test_stale_items_cannot_be_decided(rv_project: Generated) -> None:
    rv = _review(rv_project)
    try:
        item = rv.list(Filters(kind="pair"), page_size=1)[0][0]
        cur = rv.register.cursor()
        store.set_review_status(cur, [item.item_id], "stale")
        cur.close()
        with pytest.raises(ReviewConflict):
            rv.decide(item.item_id, "same", reviewer="awa")
    finally:
        rv.register.close()
