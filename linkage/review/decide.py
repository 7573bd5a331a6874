"""Decisions on review items: constraints that bind every later run, applied at once.

A decision on an item writes constraints (``store.add_constraint``, each naming the
decision):

============ ===================================================================
decision     constraints
============ ===================================================================
``same``     pair item: must-link between its two records; person item: must-link
             between its first record and each other record still in the person
``not_same`` pair item: cannot-link between its two records (person items: say
             which record to take out instead)
``take_out`` cannot-link between the record named and every other record of its
             person now; the record becomes a person of its own
``defer``    none: the item stays in the queue (status ``deferred``)
============ ===================================================================

A later decision on the same item **revokes** the earlier one: the constraints it wrote
are deleted and the new ones written, and the decision row names the one it revoked
(decision rows are never deleted). Revoking a "same person" does not split the person
at once (nothing says they differ); the next batch run re-clusters them from the
evidence.

The published persons change in the decision's own transaction
(:func:`apply_to_persons`): the persons holding the decision's records, and those tied
to them by constraints, are reconciled with every constraint
(:func:`linkage.ids.reconcile.reconcile`, as a batch run does), and the resulting ID
events go to the change feed with run id and cause ``review``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

import duckdb

from linkage.errors import InvalidRequest, NotFound, ReviewConflict
from linkage.ids.reconcile import Constraints, IdState, reconcile
from linkage.register import store
from linkage.register.database import query
from linkage.review.queue import DECIDED, DEFERRED, PERSON, STALE

Cursor = duckdb.DuckDBPyConnection

SAME, NOT_SAME, TAKE_OUT, DEFER = "same", "not_same", "take_out", "defer"
DECISIONS = (SAME, NOT_SAME, TAKE_OUT, DEFER)
#: Run id and cause of the ID events a decision makes.
REVIEW_RUN_ID = REVIEW_CAUSE = "review"
#: Longest comment kept (characters).
MAX_COMMENT = 2000


@dataclass
class Decision:
    """A recorded decision and what it did."""

    decision_id: str
    item_id: str
    decision: str
    reviewer: str
    decided_at: dt.datetime
    comment: str | None
    record_uid: str | None
    revokes: str | None
    constraints: list[tuple[str, str, str]]
    events: dict[str, int]
    persons: dict[str, str]  # each record of the item -> its person after the decision


def _item(cur: Cursor, item_id: str) -> tuple[str, str | None, str | None, list[str], str]:
    rows = query(cur, "SELECT kind, uid_a, uid_b, record_uids, status FROM review_items "
                      "WHERE item_id = ?", [item_id])
    if not rows:
        raise NotFound(f"no review item {item_id!r}")
    kind, a, b, uids, status = rows[0]
    return kind, a, b, list(uids), status


def last_decision(cur: Cursor, item_id: str) -> str | None:
    rows = query(cur, "SELECT decision_id FROM review_decisions WHERE item_id = ? "
                      "ORDER BY decided_at DESC, decision_id DESC LIMIT 1", [item_id])
    return rows[0][0] if rows else None


def _constraints_for(cur: Cursor, kind: str, a: str | None, b: str | None, uids: list[str],
                     decision: str, record_uid: str | None) -> list[tuple[str, str, str]]:
    if decision == DEFER:
        return []
    if decision == TAKE_OUT:
        if not record_uid:
            raise InvalidRequest([("record", "required to take a record out")])
        if record_uid not in uids:
            raise InvalidRequest([("record", "not one of the item's records")])
        rows = query(cur, "SELECT uid FROM person_records WHERE person_id = (SELECT person_id "
                          "FROM person_records WHERE uid = ?) AND uid <> ? ORDER BY uid",
                     [record_uid, record_uid])
        if not rows:
            raise ReviewConflict(f"record {record_uid!r} is already a person of its own "
                                 "(or has no person)")
        return [(record_uid, o, store.CANNOT_LINK) for (o,) in rows]
    if kind == PERSON:
        if decision == NOT_SAME:
            raise InvalidRequest([("decision", "for a person, say which record to take out "
                                               "(take_out with its record)")])
        in_person = {u for (u,) in query(
            cur, "SELECT uid FROM person_records WHERE uid IN (SELECT unnest(?::VARCHAR[]))",
            [uids])}
        live = [u for u in uids if u in in_person]
        return [(live[0], o, store.MUST_LINK) for o in live[1:]]
    assert a is not None and b is not None
    return [(a, b, store.MUST_LINK if decision == SAME else store.CANNOT_LINK)]


def decide(cur: Cursor, item_id: str, decision: str, *, reviewer: str,
           comment: str | None = None, record_uid: str | None = None,
           now: dt.datetime | None = None) -> Decision:
    """Record a decision on an item, write its constraints and apply them to the persons.

    Runs in the caller's transaction: on any error nothing is written.

    Raises:
        InvalidRequest: an unknown decision, no reviewer, a missing or foreign record.
        NotFound: no such item.
        ReviewConflict: the item is stale (a record changed: decide on its newer item),
            or the record to take out is alone already.
        ConstraintConflict: the decision contradicts recorded constraints.
    """
    problems = []
    if decision not in DECISIONS:
        problems.append(("decision", f"must be one of {', '.join(DECISIONS)}"))
    if not reviewer or not reviewer.strip():
        problems.append(("reviewer", "required"))
    if comment is not None and len(comment) > MAX_COMMENT:
        problems.append(("comment", f"at most {MAX_COMMENT} characters"))
    if problems:
        raise InvalidRequest(problems)
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    kind, a, b, uids, status = _item(cur, item_id)
    if status == STALE:
        raise ReviewConflict(f"review item {item_id} is stale: one of its records changed or "
                             "was retired since it was queued; decide on the newer item")
    pairs = _constraints_for(cur, kind, a, b, uids, decision, record_uid)
    previous = last_decision(cur, item_id)
    if previous is not None:
        store.remove_decision_constraints(cur, previous)
    decision_id = f"D{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(3)}"
    for x, y, k in pairs:
        store.add_constraint(cur, x, y, k, decided_by=reviewer.strip(), decided_at=now,
                             decision_id=decision_id)
    store.add_review_decision(cur, decision_id=decision_id, item_id=item_id,
                              decision=decision, record_uid=record_uid,
                              reviewer=reviewer.strip(), decided_at=now, comment=comment,
                              revokes=previous, constraints=pairs)
    store.set_review_status(cur, [item_id], DEFERRED if decision == DEFER else DECIDED)
    named = sorted({*uids, *(u for x, y, _ in pairs for u in (x, y))})
    now_in = _persons_of(cur, named)
    events: dict[str, int] = {}
    if not all(_holds(now_in, x, y, k) for x, y, k in pairs):
        events = apply_to_persons(cur, named, now=now)
    # (else the persons already agree: the usual case in a clerical sample)
    persons = _persons_of(cur, uids)
    return Decision(decision_id, item_id, decision, reviewer.strip(), now, comment,
                    record_uid, previous, pairs, events, persons)


def _persons_of(cur: Cursor, uids: list[str]) -> dict[str, str]:
    return dict(query(cur, "SELECT uid, person_id FROM person_records WHERE uid IN "
                           "(SELECT unnest(?::VARCHAR[]))", [uids]))


def _holds(persons: dict[str, str], a: str, b: str, kind: str) -> bool:
    """Whether the published persons already satisfy a constraint."""
    pa, pb = persons.get(a), persons.get(b)
    if pa is None or pb is None:
        return True  # a record without a person: the next run places it
    return (pa == pb) == (kind == store.MUST_LINK)


def apply_to_persons(cur: Cursor, uids: Collection[str], *, now: dt.datetime
                     ) -> dict[str, int]:
    """Reconcile the persons of ``uids`` (and those tied to them by constraints) with
    every constraint, publish the result; returns the ID events by kind.

    Only those persons are reconciled (not the whole register), so a decision costs a
    read of the published state and no more: the state handed to
    :func:`~linkage.ids.reconcile.reconcile` holds their records, their IDs and the retired
    IDs (for restoration), and nothing of the other live persons.
    """
    state = store.load_state(cur)
    assignment = state.assignment
    records_of: dict[str, list[str]] = {}
    for u, p in assignment.items():
        records_of.setdefault(p, []).append(u)
    cons = store.load_constraints(cur, set(assignment))
    partners: dict[str, set[str]] = {}
    for x, y in (*cons.must_link, *cons.cannot_link):
        partners.setdefault(x, set()).add(y)
        partners.setdefault(y, set()).add(x)
    persons: set[str] = set()
    todo = {assignment[u] for u in uids if u in assignment}
    while todo:  # persons tied to the decision's persons by constraints, transitively
        persons |= todo
        nxt = set()
        for p in todo:
            for r in records_of[p]:
                nxt.update(assignment[o] for o in partners.get(r, ()) if o in assignment)
        todo = nxt - persons
    sub_assignment = {u: p for p in persons for u in records_of[p]}
    sub = IdState(assignment=sub_assignment,
                  issued={p: s for p, s in state.issued.items()
                          if p in persons or p in state.retired},
                  retired=state.retired, last_records=state.last_records,
                  next_seq=state.next_seq)
    mine = set(sub_assignment)
    sub_cons = Constraints(must_link=[c for c in cons.must_link if c[0] in mine],
                           cannot_link=[c for c in cons.cannot_link if c[0] in mine])
    result = reconcile(sub, dict(sub_assignment), constraints=sub_cons,
                       allocator=store.id_allocator(cur), run_id=REVIEW_RUN_ID, now=now)
    events = [dataclasses.replace(e, cause=REVIEW_CAUSE) for e in result.events]
    changes = store.PersonChanges.between(sub, result.state, run_id=REVIEW_RUN_ID,
                                          events=events)
    store.publish_persons(cur, changes)
    return dict(Counter(e.kind for e in events))
