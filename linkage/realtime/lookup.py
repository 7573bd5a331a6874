"""Read-only look-ups on the published register: persons, records, programmes, events,
golden records; by person ID, by identifier, in bulk and page by page.

Each function takes a cursor of its own (one per call, see :mod:`linkage.register.database`) and
fetches everything with ``fetchall``. Retired IDs answer with their survivor(s).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import duckdb

from linkage.errors import InvalidRequest, NotFound
from linkage.ids.golden import GoldenRecord
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
    golden: GoldenRecord | None = None  # golden_changed: the new golden record

    @classmethod
    def of(cls, row: tuple) -> EventRow:
        *head, golden = row
        return cls(*head, golden=GoldenRecord.from_json(golden) if golden else None)


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
    golden: GoldenRecord | None = None


_EVENT_COLS = ("seq, kind, person_id, record_uid, other_person_id, run_id, occurred_at, cause, "
               "golden")


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
    """The person ``pid`` names now (its survivor when retired); ``lineage_limit`` 0
    leaves the events out."""
    status, live = live_ids(cur, pid)
    answer = live[0] if live else pid
    view = PersonView(person_id=answer, status="live" if live else status, requested_id=pid,
                      redirected=bool(live) and answer != pid, successor_ids=live)
    if live:
        _fill(cur, view)
        view.golden = store.load_golden(cur, [answer]).get(answer)
    if not lineage_limit:
        return view
    ids = [answer] if answer == pid else [answer, pid]
    view.lineage = [EventRow.of(r) for r in query(
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
    return [EventRow.of(r) for r in query(
        cur, f"SELECT {_EVENT_COLS} FROM person_events WHERE seq > ? ORDER BY seq LIMIT ?",
        [after_seq, limit])]


def last_seq(cur: duckdb.DuckDBPyConnection) -> int:
    """The change feed's last cursor (0 when empty)."""
    return query(cur, "SELECT coalesce(max(seq), 0) FROM person_events")[0][0]


def persons_of_records(cur: duckdb.DuckDBPyConnection, where: str, params: list
                       ) -> list[str]:
    """Live persons holding an active record that matches ``where`` (SQL on ``r``)."""
    return [p for (p,) in query(cur, f"""
        SELECT DISTINCT p.person_id FROM records r JOIN person_records p USING (uid)
        WHERE r.status = 'active' AND {where} ORDER BY p.person_id""", params)]


def programme_sources(cur: duckdb.DuckDBPyConnection, programme: str) -> list[str]:
    """The programme sources a programme label or source name names (case ignored)."""
    return [n for (n,) in query(cur, """
        SELECT name FROM sources WHERE kind = 'programme'
          AND (lower(name) = lower(?) OR lower(programme) = lower(?)) ORDER BY name""",
        [programme, programme])]


def source_exists(cur: duckdb.DuckDBPyConnection, source: str) -> bool:
    return bool(query(cur, "SELECT 1 FROM sources WHERE name = ?", [source]))


@dataclass
class Member:
    """One person of a programme: its records there and its golden record."""

    person_id: str
    uids: list[str]
    golden: GoldenRecord | None


def programme_members(cur: duckdb.DuckDBPyConnection, sources: list[str], *,
                      after: str, limit: int) -> list[Member]:
    """Persons with an active record in ``sources``, person IDs after ``after``, in order."""
    rows = query(cur, """
        SELECT p.person_id, list(r.uid ORDER BY r.uid)
        FROM records r JOIN person_records p USING (uid)
        WHERE r.status = 'active' AND list_contains(?, r.source) AND p.person_id > ?
        GROUP BY p.person_id ORDER BY p.person_id LIMIT ?""", [sources, after, limit])
    golden = store.load_golden(cur, [p for p, _ in rows])
    return [Member(p, list(uids), golden.get(p)) for p, uids in rows]
