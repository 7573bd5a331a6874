"""Persistent person IDs in the register: load the published state, reconcile, save.

The algorithm lives in the pure module :mod:`linkage.ids`; this module only moves its
state between that module and the register tables (``persons``, ``person_records``,
``person_successors``, ``person_last_records``, ``person_events``, ``constraints``).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from collections.abc import Mapping

import duckdb
import pyarrow as pa

from linkage.ids import Constraints, IdAllocator, IdState, reconcile, resolve
from linkage.register import query


def _meta(cur: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = query(cur, "SELECT value FROM meta WHERE key = ?", [key])
    return rows[0][0] if rows else None


def _set_meta(cur: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def allocator(cur: duckdb.DuckDBPyConnection) -> IdAllocator:
    """The register's ID allocator; its secret is made once and kept in ``meta``.

    The secret makes IDs unguessable from their issue order; it never leaves the register.
    """
    secret = _meta(cur, "id_secret")
    if secret is None:
        secret = secrets.token_hex(32)
        _set_meta(cur, "id_secret", secret)
    return IdAllocator(bytes.fromhex(secret))


def load_state(cur: duckdb.DuckDBPyConnection) -> IdState:
    """The published ID state."""
    assignment = dict(query(cur, "SELECT uid, person_id FROM person_records"))
    issued = dict(query(cur, "SELECT person_id, issue_seq FROM persons"))
    retired: dict[str, list[str]] = {
        pid: [] for (pid,) in query(cur, "SELECT person_id FROM persons WHERE status = 'retired'")}
    for pid, succ in query(cur, "SELECT person_id, successor_id FROM person_successors "
                                "ORDER BY person_id, successor_id"):
        retired.setdefault(pid, []).append(succ)
    last: dict[str, set[str]] = {}
    for pid, uid in query(cur, "SELECT person_id, uid FROM person_last_records"):
        last.setdefault(pid, set()).add(uid)
    next_seq = int(_meta(cur, "id_next_seq") or (max(issued.values(), default=-1) + 1))
    return IdState(assignment=assignment, issued=issued,
                   retired={k: tuple(v) for k, v in retired.items()},
                   last_records={k: frozenset(v) for k, v in last.items()}, next_seq=next_seq)


def load_constraints(cur: duckdb.DuckDBPyConnection, live: set[str] | None = None) -> Constraints:
    """Reviewer decisions, limited to records that are still live (when ``live`` given)."""
    must, cannot = [], []
    rows = query(cur, "SELECT uid_a, uid_b, kind FROM constraints ORDER BY uid_a, uid_b")
    for a, b, kind in rows:
        if live is not None and (a not in live or b not in live):
            continue
        (must if kind == "must_link" else cannot).append((a, b))
    return Constraints(must_link=must, cannot_link=cannot)


def save_state(cur: duckdb.DuckDBPyConnection, old: IdState, new: IdState, run_id: str) -> None:
    """Write the new state over the old one (inside the caller's transaction)."""
    cur.execute("DELETE FROM person_records")
    if new.assignment:
        cur.register("stage_pr", pa.table({"uid": list(new.assignment),
                                           "person_id": list(new.assignment.values())}))
        cur.execute("INSERT INTO person_records SELECT uid, person_id FROM stage_pr")
        cur.unregister("stage_pr")
    live = set(new.assignment.values())
    changed_persons = {p for p in new.issued if p not in old.issued
                       or (p in old.retired) != (p in new.retired)}
    changed_persons |= {p for u, p in new.assignment.items() if old.assignment.get(u) != p}
    changed_persons |= {p for u, p in old.assignment.items() if new.assignment.get(u) != p}
    pids = list(new.issued)
    cur.execute("DELETE FROM persons")
    cur.register("stage_p", pa.table({
        "person_id": pids,
        "status": ["live" if p in live else "retired" for p in pids],
        "issue_seq": [new.issued[p] for p in pids],
        "changed": [p in changed_persons for p in pids],
    }))
    # created_run / updated_run survive from the previous rows (kept in a temp copy).
    cur.execute("""
        INSERT INTO persons
        SELECT s.person_id, s.status, s.issue_seq,
               coalesce(o.created_run, ?), CASE WHEN s.changed THEN ? ELSE o.updated_run END
        FROM stage_p s LEFT JOIN prev_persons o USING (person_id)""", [run_id, run_id])
    cur.unregister("stage_p")
    cur.execute("DELETE FROM person_successors")
    succ = [(p, s) for p, ss in new.retired.items() for s in ss]
    if succ:
        cur.executemany("INSERT INTO person_successors VALUES (?, ?)", succ)
    cur.execute("DELETE FROM person_last_records")
    last = [(p, u) for p, us in new.last_records.items() for u in us]
    if last:
        cur.register("stage_lr", pa.table({"person_id": [p for p, _ in last],
                                           "uid": [u for _, u in last]}))
        cur.execute("INSERT INTO person_last_records SELECT person_id, uid FROM stage_lr")
        cur.unregister("stage_lr")
    _set_meta(cur, "id_next_seq", str(new.next_seq))


def publish_clusters(cur: duckdb.DuckDBPyConnection, clusters: Mapping[str, str], *,
                     run_id: str, now: dt.datetime, cause: str = "batch run") -> dict[str, int]:
    """Reconcile a run's clusters with the published persons and write the result.

    Returns:
        Event counts by kind.
    """
    old = load_state(cur)
    constraints = load_constraints(cur, set(clusters))
    result = reconcile(old, clusters, constraints=constraints, allocator=allocator(cur),
                       run_id=run_id, now=now)
    cur.execute("CREATE OR REPLACE TEMP TABLE prev_persons AS SELECT * FROM persons")
    save_state(cur, old, result.state, run_id)
    cur.execute("DROP TABLE prev_persons")
    if result.events:
        ev = result.events
        cur.register("stage_ev", pa.table({
            "ord": list(range(len(ev))),
            "run_id": [e.run_id for e in ev], "occurred_at": [e.at for e in ev],
            "kind": [e.kind for e in ev], "person_id": [e.person_id for e in ev],
            "record_uid": [e.record_key for e in ev],
            "other_person_id": [e.other_person_id for e in ev],
            "cause": [e.cause or cause for e in ev]}))
        cur.execute("""
            INSERT INTO person_events
            SELECT nextval('person_event_seq'), run_id, occurred_at, kind, person_id, record_uid,
                   other_person_id, cause
            FROM (SELECT * FROM stage_ev ORDER BY ord)""")
        cur.unregister("stage_ev")
    return dict(Counter(e.kind for e in result.events))


def successors(cur: duckdb.DuckDBPyConnection, person_id: str) -> list[str]:
    """Live person(s) an ID, live or retired, now answers to."""
    return resolve(load_state(cur), person_id)
