"""What becomes a review item, with which priority, and when it is already queued.

After each batch run (:func:`queue_after_run`, inside the run's transaction):

* **review band**: each scored pair whose match probability lies between the review and
  the match thresholds (``links.linked`` false) and that no constraint already decides;
* **doubtful persons**: a person whose records are held together by a *weak link* (a
  record whose best link into the person is less than :data:`WEAK_MARGIN_BITS` above
  the weight of that link's own match threshold: ``thresholds.one_to_one`` for a
  one-to-one pair, else ``thresholds.match``), that holds *two national IDs* or *two civil-registry
  records* (a person is born once), *unusually many records* (more than
  :func:`many_records_bound`), or two records of one roster whose *birth years differ* by
  more than a year.

After each enrolment (:func:`enrolment_items`, inside the enrolment's transaction): a
record linked on weak evidence (an MIS reads the answer as "already enrolled") and a new
person whose best candidate lies in the review band.

Every item carries an **evidence hash**: its kind (pairs and enrolments share one) and
each record's ``record_hash``. An item whose hash is already in ``review_items``, in
any status, is not queued again, so a decided item is not reopened unless one of its
records changes. Open items whose records changed or were retired become ``stale``.

**Priority** (0-100, higher first): pairs ``100 * (1 - |2p - 1|)`` (the least certain
first); persons by their strongest reason (:data:`PERSON_PRIORITY`); weak enrolments
:data:`ENROLMENT_PRIORITY`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np

from linkage.batch.ambiguity import pair_thresholds
from linkage.errors import NotFound
from linkage.register import store
from linkage.register.database import query

Cursor = duckdb.DuckDBPyConnection

PAIR, PERSON, ENROLMENT, SAMPLE = "pair", "person", "enrolment", "sample"
KINDS = (PAIR, PERSON, ENROLMENT, SAMPLE)
OPEN, DEFERRED, DECIDED, STALE = "open", "deferred", "decided", "stale"
STATUSES = (OPEN, DEFERRED, DECIDED, STALE)

#: A record is held by a weak link when its best link into its person is less than this
#: many bits (a factor of 4 in the odds) above the match threshold's weight.
WEAK_MARGIN_BITS = 2.0
#: Priority of a doubtful person by reason; an item takes its strongest reason's.
PERSON_PRIORITY = {"two_national_ids": 95.0, "two_civil_registry_records": 95.0,
                   "irreconcilable_birth_dates": 85.0, "weak_link": 75.0,
                   "many_records": 60.0}
#: Priority of a real-time link on weak evidence (an MIS may read it as "enrolled").
ENROLMENT_PRIORITY = 80.0


def weight_of(probability: float) -> float:
    """Match weight (log2 odds) of a probability, as Splink defines it."""
    p = min(max(probability, 1e-15), 1 - 1e-15)
    return math.log2(p / (1 - p))


def weak_bound(match_threshold: float) -> float:
    """Probability under which a link is weak: :data:`WEAK_MARGIN_BITS` above the threshold."""
    w = weight_of(match_threshold) + WEAK_MARGIN_BITS
    return 2**w / (1 + 2**w)


def many_records_bound(n_sources: int) -> int:
    """More records than this in one person is unusual: two per source, and at least 4."""
    return max(4, 2 * n_sources)


def pair_priority(probability: float) -> float:
    """The least certain pairs first: 100 at p = 0.5, 0 at p = 0 or 1."""
    return round(100.0 * (1.0 - abs(2.0 * probability - 1.0)), 2)


def evidence_hash(kind: str, record_hashes: Mapping[str, str], extra: str = "") -> str:
    """The hash of an item's evidence: kind (pairs and enrolments share one) and records.

    ``extra`` separates items that must not dedupe (a clerical sample's ID).
    """
    family = PAIR if kind == ENROLMENT else kind
    parts = [family, extra, *(f"{u}={record_hashes.get(u, '')}" for u in sorted(record_hashes))]
    return hashlib.sha1("\n".join(parts).encode("utf-8")).hexdigest()


@dataclass
class Candidate:
    """A would-be item before its hash and record details are filled in."""

    kind: str
    reasons: list[str]
    records: list[str]
    priority: float
    uid_a: str | None = None
    uid_b: str | None = None
    person_id: str | None = None
    match_probability: float | None = None
    sample_id: str | None = None
    stratum: str | None = None
    linked_then: bool | None = None


def _record_facts(cur: Cursor, uids: Collection[str]) -> dict[str, tuple[str, str, str | None]]:
    """uid -> (record_hash, programme label, region) of active records."""
    if not uids:
        return {}
    rows = query(cur, """
        SELECT r.uid, r.record_hash, coalesce(s.programme, r.source), r.region
        FROM records r LEFT JOIN sources s ON s.name = r.source
        WHERE r.status = 'active' AND r.uid IN (SELECT unnest(?::VARCHAR[]))""", [list(uids)])
    return {u: (h, p, reg) for u, h, p, reg in rows}


def queued_hashes(cur: Cursor) -> set[str]:
    return {h for (h,) in query(cur, "SELECT evidence_hash FROM review_items")}


def new_items(cur: Cursor, candidates: Iterable[Candidate], *, created_by: str,
              now: dt.datetime) -> list[str]:
    """Queue the candidates whose evidence is not queued yet; returns the new item IDs.

    A candidate naming a record that is not active is left out.
    """
    cands = list(candidates)
    facts = _record_facts(cur, {u for c in cands for u in c.records})
    seen = queued_hashes(cur)
    rows = []
    for c in cands:
        if not c.records or any(u not in facts for u in c.records):
            continue
        h = evidence_hash(c.kind, {u: facts[u][0] for u in c.records}, c.sample_id or "")
        if h in seen:
            continue
        seen.add(h)
        programmes = sorted({facts[u][1] for u in c.records if facts[u][1]})
        regions = sorted({facts[u][2] for u in c.records if facts[u][2]})
        rows.append({
            "kind": c.kind, "reasons": ",".join(c.reasons), "uid_a": c.uid_a, "uid_b": c.uid_b,
            "person_id": c.person_id, "record_uids": sorted(c.records),
            "match_probability": c.match_probability, "priority": c.priority,
            "evidence_hash": h, "programmes": programmes,
            "area": regions[0] if regions else None, "status": OPEN, "created_at": now,
            "created_by": created_by, "sample_id": c.sample_id, "stratum": c.stratum,
            "linked_then": c.linked_then})
    return store.add_review_items(cur, rows)


def mark_stale(cur: Cursor) -> int:
    """Open and deferred items whose records changed or were retired become ``stale``."""
    items = query(cur, "SELECT item_id, kind, record_uids, evidence_hash, sample_id "
                       "FROM review_items WHERE status IN ('open', 'deferred')")
    if not items:
        return 0
    facts = _record_facts(cur, {u for _, _, uids, _, _ in items for u in uids})
    stale = []
    for item_id, kind, uids, h, sample_id in items:
        if any(u not in facts for u in uids) or evidence_hash(
                kind, {u: facts[u][0] for u in uids}, sample_id or "") != h:
            stale.append(item_id)
    store.set_review_status(cur, stale, STALE)
    return len(stale)


# ---------------------------------------------------------------------------------------
# After a batch run
# ---------------------------------------------------------------------------------------


def band_pairs(cur: Cursor) -> list[Candidate]:
    """Scored pairs of the last run between the review and match thresholds, undecided:
    without a constraint, or with one decided before one of the records changed."""
    rows = query(cur, """
        SELECT l.uid_l, l.uid_r, l.match_probability,
               pl.person_id IS NOT NULL AND pl.person_id = pr.person_id
        FROM links l
        LEFT JOIN person_records pl ON pl.uid = l.uid_l
        LEFT JOIN person_records pr ON pr.uid = l.uid_r
        LEFT JOIN constraints c ON c.uid_a = least(l.uid_l, l.uid_r)
                               AND c.uid_b = greatest(l.uid_l, l.uid_r)
        LEFT JOIN records ra ON ra.uid = l.uid_l
        LEFT JOIN records rb ON rb.uid = l.uid_r
        WHERE NOT l.linked
          AND (c.kind IS NULL OR greatest(ra.updated_at, rb.updated_at) > c.decided_at)
        ORDER BY l.uid_l, l.uid_r""")
    return [Candidate(PAIR, ["review_band"], [a, b], pair_priority(p), uid_a=a, uid_b=b,
                      match_probability=p, linked_then=bool(same)) for a, b, p, same in rows]


def doubtful_persons(cur: Cursor, match_threshold: float,
                     one_to_one_threshold: float | None = None) -> list[Candidate]:
    """Persons with at least one reason for doubt (see the module docstring)."""
    (n_sources,) = query(cur, "SELECT count(*) FROM sources")[0]
    # A link's margin: its weight less its own threshold's (one-to-one, other).
    w_one, w_match = (weight_of(t) for t in pair_thresholds(
        np.array([True, False]), match_threshold, one_to_one_threshold).tolist())
    reasons: dict[str, set[str]] = {}

    def add(rows: Iterable[tuple[Any, ...]], reason: str) -> None:
        for (pid,) in rows:
            reasons.setdefault(pid, set()).add(reason)

    base = """
        WITH pr AS (SELECT p.person_id, r.* FROM person_records p JOIN records r USING (uid)
                    WHERE r.status = 'active'),
             multi AS (SELECT person_id FROM pr GROUP BY person_id HAVING count(*) > 1)"""
    add(query(cur, base + """
        SELECT person_id FROM pr WHERE national_id IS NOT NULL GROUP BY person_id
        HAVING count(DISTINCT national_id) > 1"""), "two_national_ids")
    add(query(cur, base + """
        SELECT person_id FROM pr JOIN sources s ON s.name = pr.source
        WHERE s.kind = 'civil_registry' GROUP BY person_id HAVING count(*) > 1"""),
        "two_civil_registry_records")
    add(query(cur, base + """
        SELECT person_id FROM pr GROUP BY person_id HAVING count(*) > ?""",
        [many_records_bound(n_sources)]), "many_records")
    add(query(cur, base + """
        SELECT DISTINCT x.person_id FROM pr x JOIN pr y
          ON x.person_id = y.person_id AND x.source = y.source AND x.uid < y.uid
        WHERE abs(x.birth_year - y.birth_year) > 1"""), "irreconcilable_birth_dates")
    # Each record's best link into its own person; must-linked records are held by a
    # reviewer's decision, not by a link.
    add(query(cur, base + """,
        margins AS (
          SELECT uid_l, uid_r, match_weight - CASE WHEN coalesce(one_to_one, false)
                 THEN ? ELSE ? END AS w FROM links),
        inner_links AS (
          SELECT l.uid_l AS uid, l.w FROM margins l
            JOIN person_records a ON a.uid = l.uid_l JOIN person_records b ON b.uid = l.uid_r
            WHERE a.person_id = b.person_id
          UNION ALL
          SELECT l.uid_r, l.w FROM margins l
            JOIN person_records a ON a.uid = l.uid_l JOIN person_records b ON b.uid = l.uid_r
            WHERE a.person_id = b.person_id),
        best AS (SELECT m.person_id, pr.uid, max(i.w) AS w
                 FROM multi m JOIN pr USING (person_id) LEFT JOIN inner_links i USING (uid)
                 GROUP BY ALL)
        SELECT DISTINCT b.person_id FROM best b
        WHERE b.w IS NOT NULL AND b.w < ?
          AND NOT EXISTS (SELECT 1 FROM constraints c WHERE c.kind = 'must_link'
                          AND (c.uid_a = b.uid OR c.uid_b = b.uid))""",
        [w_one, w_match, WEAK_MARGIN_BITS]), "weak_link")
    if not reasons:
        return []
    members: dict[str, list[str]] = {}
    for pid, uid in query(cur, "SELECT person_id, uid FROM person_records WHERE person_id IN "
                               "(SELECT unnest(?::VARCHAR[])) ORDER BY uid", [list(reasons)]):
        members.setdefault(pid, []).append(uid)
    out = []
    for pid in sorted(reasons):
        why = sorted(reasons[pid], key=lambda r: -PERSON_PRIORITY[r])
        out.append(Candidate(PERSON, why, members.get(pid, []), PERSON_PRIORITY[why[0]],
                             person_id=pid))
    return out


def queue_after_run(cur: Cursor, *, run_id: str, match_threshold: float,
                    now: dt.datetime, one_to_one_threshold: float | None = None
                    ) -> dict[str, int]:
    """Queue the run's review band and doubtful persons; returns counts for the summary.
    ``one_to_one_threshold``: the match threshold of one-to-one links (None: the match
    threshold), for their margins."""
    stale = mark_stale(cur)
    pairs = band_pairs(cur)
    persons = doubtful_persons(cur, match_threshold, one_to_one_threshold)
    new = new_items(cur, [*pairs, *persons], created_by=run_id, now=now)
    (n_open,) = query(cur, "SELECT count(*) FROM review_items WHERE status = 'open'")[0]
    return {"queued": len(new), "review_band_pairs": len(pairs),
            "doubtful_persons": len(persons), "stale": stale, "open": int(n_open)}


def open_pair(cur: Cursor, uid_a: str, uid_b: str, *, opened_by: str, now: dt.datetime,
              probability: float | None = None) -> str:
    """Queue any two records as a pair item at a reviewer's request (after ``explain``);
    returns its ID, or the ID of the item already queued for the same evidence."""
    cand = Candidate(PAIR, ["requested"], [uid_a, uid_b], 100.0, uid_a=uid_a, uid_b=uid_b,
                     match_probability=probability)
    facts = _record_facts(cur, [uid_a, uid_b])
    if len(facts) < 2 or uid_a == uid_b:
        raise NotFound("both records must be active and different")
    h = evidence_hash(PAIR, {u: facts[u][0] for u in (uid_a, uid_b)})
    rows = query(cur, "SELECT item_id FROM review_items WHERE evidence_hash = ? "
                      "ORDER BY seq DESC LIMIT 1", [h])
    if rows:
        return rows[0][0]
    return new_items(cur, [cand], created_by=opened_by, now=now)[0]


# ---------------------------------------------------------------------------------------
# After an enrolment
# ---------------------------------------------------------------------------------------


def enrolment_items(cur: Cursor,
                    decisions: Sequence[tuple[str, str | None, float, bool, float]], *,
                    review_threshold: float, now: dt.datetime) -> list[str]:
    """Queue the enrolments that rest on weak evidence.

    Args:
        decisions: ``(enrolled uid, best candidate's record uid or None, its match
            probability, linked, the match threshold that pair is linked at)`` for each
            new record of the enrolment group; a link is weak under
            :func:`weak_bound` of its threshold, as a batch link is.
    """
    cands = []
    for uid, other, prob, linked, threshold in decisions:
        if other is None:
            continue
        if linked and prob < weak_bound(threshold):
            cands.append(Candidate(ENROLMENT, ["weak_enrolment_link"], [uid, other],
                                   ENROLMENT_PRIORITY, uid_a=uid, uid_b=other,
                                   match_probability=prob, linked_then=True))
        elif not linked and prob >= review_threshold:
            cands.append(Candidate(ENROLMENT, ["review_band"], [uid, other],
                                   pair_priority(prob), uid_a=uid, uid_b=other,
                                   match_probability=prob, linked_then=False))
    return new_items(cur, cands, created_by="enrol", now=now) if cands else []
