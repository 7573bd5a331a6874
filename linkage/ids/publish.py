"""Persistent person IDs in the register: load the published state, reconcile, publish.

The algorithm lives in the pure module :mod:`linkage.ids.reconcile`; the reads and writes of its
state (``persons``, ``person_records``, ``person_successors``, ``person_last_records``,
``person_events``, ``constraints``) live in :mod:`linkage.register.store`, shared with real-time
enrolment. This module ties the two together for a batch run.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Mapping

import duckdb

from linkage.ids.reconcile import IdAllocator, reconcile, resolve
from linkage.register import store
from linkage.register.store import load_constraints, load_state

#: The register's ID allocator (:func:`linkage.register.store.id_allocator`).
allocator = store.id_allocator

__all__ = ["allocator", "load_constraints", "load_state", "publish_clusters", "successors"]


def publish_clusters(cur: duckdb.DuckDBPyConnection, clusters: Mapping[str, str], *,
                     run_id: str, now: dt.datetime, cause: str = "batch run",
                     part: bool = False, stats: dict[str, int] | None = None
                     ) -> dict[str, int]:
    """Reconcile a run's clusters with the published persons and write the result.

    ``part``: reconcile only the clusters that can change an ID and the persons they
    touch (:func:`linkage.register.store.load_state_part`), the same events and state
    as reconciling every record (``tests/test_incremental.py``) at a cost that follows
    what changed; the incremental run's way. ``stats`` receives how many clusters and
    persons were reconciled, and how many persons were left as they were.

    Returns:
        Event counts by kind.
    """
    alloc = allocator(cur)
    if part:
        old, clusters, untouched = store.load_state_part(cur, clusters)
        # At most one new ID per cluster; a few more for hash collisions.
        alloc = IdAllocator(alloc.secret, store.IssuedIds(
            cur, alloc, old.next_seq, len(set(clusters.values())) + 64))
        if stats is not None:
            stats.update(reconciled_records=len(clusters), untouched_persons=untouched)
    else:
        old = load_state(cur)
    constraints = load_constraints(cur, set(clusters))
    result = reconcile(old, clusters, constraints=constraints, allocator=alloc,
                       run_id=run_id, now=now)
    changes = store.PersonChanges.between(old, result.state, run_id=run_id,
                                          events=result.events)
    store.publish_persons(cur, changes, cause=cause)
    counts = Counter(e.kind for e in result.events)
    # Golden records of persons whose record sets moved, whose records ingest rewrote in
    # this run (at or after ``now``, its start), and any live person still without one.
    moved = {*changes.touched, *(p for p, _ in changes.issued), *changes.assigned.values()}
    golden = store.refresh_golden(cur, moved, run_id=run_id, now=now, since=now, full=True)
    if golden:
        counts[store.GOLDEN_CHANGED] = sum(g is not None for g in golden.values())
    return dict(counts)


def successors(cur: duckdb.DuckDBPyConnection, person_id: str) -> list[str]:
    """Live person(s) an ID, live or retired, now answers to.

    Raises:
        KeyError: the ID was never issued.
    """
    state = store.reachable_state(cur, person_id)
    if state is None:
        raise KeyError(person_id)
    return resolve(state, person_id)
