"""Read-only look-ups on the published register: persons, records, programmes, events.

Each function takes a cursor of its own (one per call, see :mod:`linkage.register.database`) and
fetches everything with ``fetchall``. Retired IDs answer with their survivor(s).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from linkage.errors import InvalidRequest, NotFound
from linkage.ids.reconcile import normalise, resolve
from linkage.register import store
from linkage.register.database import query


@dataclass
class EventRow:
    seq: int
    kind: str
    person_id: str
    record_uid: str | None
    other_person_id: str | None
    run_id: str | None
    at: dt.datetime | None
    cause: str | None


@dataclass
class RecordRow:
    source: str
    record_key: str
    programme: str | None
    kind: str | None
    first_seen: dt.datetime | None


@dataclass
class Programme:
    programme: str
    source: str
    record_keys: list[str]


@dataclass
class PersonView:
    person_id: str
    status: str  # 'live' | 'retired'
    requested_id: str = ""
    redirected: bool = False
    successor_ids: list[str] = field(default_factory=list)
    records: list[RecordRow] = field(default_factory=list)
    programmes: list[Programme] = field(default_factory=list)
    lineage: list[EventRow] = field(default_factory=list)


_EVENT_COLS = "seq, kind, person_id, record_uid, other_person_id, run_id, occurred_at, cause"


def normalise_person_id(pid: str, field_name: str = "person_id") -> str:
    """Canonical form of a typed person ID, or :class:`InvalidRequest`."""
    if not pid or not pid.strip():
        raise InvalidRequest([(field_name, "required")])
    try:
        return normalise(pid)
    except ValueError:
        raise InvalidRequest([(field_name, "not a valid person ID (P- and 9 characters "
                                           "with a check character)")]) from None


def live_ids(cur: duckdb.DuckDBPyConnection, pid: str) -> tuple[str, list[str]]:
    """(status of ``pid``, the live IDs it stands for now), following successor pointers
    (:func:`linkage.ids.reconcile.resolve` on the part of the state reachable from ``pid``).

    Raises:
        NotFound: the ID was never issued.
    """
    state = store.reachable_state(cur, pid)
    if state is None:
        raise NotFound(f"person {pid} not found")
    return ("retired" if pid in state.retired else "live"), resolve(state, pid)


def person(cur: duckdb.DuckDBPyConnection, pid: str, *, lineage_limit: int = 1000
           ) -> PersonView:
    """The person ``pid`` names now (its survivor when retired)."""
    status, live = live_ids(cur, pid)
    answer = live[0] if live else pid
    view = PersonView(person_id=answer, status="live" if live else status, requested_id=pid,
                      redirected=bool(live) and answer != pid, successor_ids=live)
    if live:
        _fill(cur, view)
    ids = [answer] if answer == pid else [answer, pid]
    view.lineage = [EventRow(*r) for r in query(
        cur, f"SELECT {_EVENT_COLS} FROM person_events WHERE person_id IN "
             f"(SELECT unnest(?::VARCHAR[])) ORDER BY seq LIMIT ?", [ids, lineage_limit])]
    return view


def _fill(cur: duckdb.DuckDBPyConnection, view: PersonView) -> None:
    rows = query(cur, """
        SELECT r.source, r.record_key, s.programme, s.kind, r.first_seen
        FROM person_records p JOIN records r USING (uid) LEFT JOIN sources s ON s.name = r.source
        WHERE p.person_id = ? ORDER BY r.source, r.record_key""", [view.person_id])
    view.records = [RecordRow(*r) for r in rows]
    progs: dict[tuple[str, str], Programme] = {}
    for r in view.records:
        if r.kind == "programme":
            key = (r.programme or r.source, r.source)
            progs.setdefault(key, Programme(key[0], r.source, [])).record_keys.append(r.record_key)
    view.programmes = list(progs.values())


def person_by_record(cur: duckdb.DuckDBPyConnection, source: str, record_key: str
                     ) -> PersonView:
    """The person a record is assigned to."""
    rows = query(cur, "SELECT person_id FROM person_records WHERE uid = ?",
                 [f"{source}:{record_key}"])
    if not rows:
        raise NotFound("record not found or not assigned to a person")
    view = person(cur, rows[0][0])
    view.requested_id = ""
    return view


def events_after(cur: duckdb.DuckDBPyConnection, after_seq: int, limit: int = 1000
                 ) -> list[EventRow]:
    """Person events with ``seq > after_seq``, in cursor order."""
    return [EventRow(*r) for r in query(
        cur, f"SELECT {_EVENT_COLS} FROM person_events WHERE seq > ? ORDER BY seq LIMIT ?",
        [after_seq, limit])]
