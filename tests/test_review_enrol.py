"""Enrolment and the review queue: weak real-time links are queued, constraints honoured."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

from linkage.batch.pipeline import run
from linkage.realtime.core import PersonInput, Realtime, RealtimeOptions
from linkage.realtime.enrol import CREATED, LINKED
from linkage.review.evidence import Filters
from linkage.review.queue import weak_bound
from tests.service_fixtures import build_small_register

FIELDS = ("given_name", "family_name", "sex", "birth_date", "national_id", "phone", "region",
          "commune", "village")


def _raw(row: dict[str, str]) -> dict[str, str | None]:
    d, m, y = row["date_naissance"].split("/")
    return {"given_name": row["prenom"], "family_name": row["nom"], "sex": row["sexe"],
            "birth_date": y if d == "00" else f"{y}-{m}-{d}", "national_id": row["nin"],
            "phone": row["telephone"], "region": row["region"], "commune": row["commune"],
            "village": row["village"]}


def _variant(rt: Realtime, rows: dict[str, dict[str, str]], lo: float, hi: float
             ) -> dict[str, str | None]:
    """Details of a fixture person with fields left out, whose best candidate scores in
    [lo, hi) (found with Resolve, which stores nothing)."""
    for uid, row in rows.items():
        if not uid.startswith("civil_registry:"):
            continue
        base = _raw(row)
        for drop in itertools.combinations(FIELDS, 4):
            if {"given_name", "family_name"} <= set(drop):
                continue  # no name: refused
            raw = {k: (None if k in drop else v) for k, v in base.items()}
            res = rt.resolve(PersonInput(raw), max_candidates=1, min_probability=0.0)
            if res.candidates and lo <= res.candidates[0].match_probability < hi:
                return raw
    raise AssertionError(f"no variant scores in [{lo}, {hi})")


def test_weak_enrolments_are_queued_once(tmp_path: Path) -> None:
    small = build_small_register(tmp_path)
    t = small.project.thresholds
    rt = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    try:
        weak = _variant(rt, small.rows, t.match, weak_bound(t.match))
        band = _variant(rt, small.rows, t.review, t.match)
        strong_uid = next(u for u in small.rows if u.startswith("civil_registry:"))
        strong = _raw(small.rows[strong_uid])
        res = {}
        for key, raw in (("W1", weak), ("B1", band), ("S1", strong)):
            item = rt.prepare_enrol("mis_api", key, PersonInput(raw))
            res[key] = rt.enrol(item)
        assert res["W1"].outcome == LINKED and res["B1"].outcome == CREATED
        assert res["S1"].outcome == LINKED and res["S1"].match_probability >= weak_bound(t.match)
        items, _, _ = rt.review.list(Filters(kind="enrolment"), page_size=100)
        by_uid = {it.uid_a: it for it in items}
        assert set(by_uid) == {"mis_api:W1", "mis_api:B1"}  # not the strong link
        assert by_uid["mis_api:W1"].reasons == ["weak_enrolment_link"]
        assert by_uid["mis_api:B1"].reasons == ["review_band"]
        assert by_uid["mis_api:W1"].linked_then and not by_uid["mis_api:B1"].linked_then
        # The same record again (unchanged) queues nothing more.
        rt.enrol(rt.prepare_enrol("mis_api", "W1", PersonInput(weak)))
        assert rt.review.list(Filters(kind="enrolment"), page_size=100)[2] == 2
    finally:
        rt.close()


def test_enrolment_honours_a_cannot_link(tmp_path: Path) -> None:
    """A record taken out of its person, retired by its roster and enrolled again over the
    API does not rejoin the person the reviewer took it out of."""
    small = build_small_register(tmp_path)
    ct = next(u for u in small.rows if u.startswith("cash_transfer:")
              and small.rows[u]["nin"])  # a strong link to its civil-registry record
    cr = next(u for u in small.rows if u.startswith("civil_registry:")
              and small.truth[u] == small.truth[ct])
    rt = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    try:
        assert rt.index.person_of(ct) == rt.index.person_of(cr)
        d = rt.review.decide(rt.review.open_pair(ct, cr, reviewer="awa"), "take_out",
                             reviewer="awa", record_uid=ct)
        assert d.persons[ct] != d.persons[cr]
    finally:
        rt.close()
    # The roster's next extract no longer has the record: the batch retires it.
    path = small.root / "data" / "cash_transfer.csv"
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(r for r in rows if f"cash_transfer:{r['id']}" != ct)
    run(small.project, progress=lambda _: None)
    rt = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    try:
        assert rt.index.person_of(ct) is None
        raw = _raw(small.rows[ct])
        best = rt.resolve(PersonInput(raw), max_candidates=1).candidates[0]
        assert best.person_id == rt.index.person_of(cr) and best.match_probability >= 0.95
        res = rt.enrol(rt.prepare_enrol("cash_transfer", ct.split(":", 1)[1], PersonInput(raw)))
        assert res.outcome == CREATED  # the reviewer's cannot-link bars the best candidate
        assert res.person_id != rt.index.person_of(cr)
    finally:
        rt.close()
