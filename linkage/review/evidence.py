"""Reading the queue: items (filtered, paginated) and one item's evidence.

An item's evidence (:func:`item_view`) is everything a reviewer needs to decide without
opening another tool: each record side by side (source, programme, raw values as the
source sent them, standardised columns, its person now), the waterfall of each pair of
its records (:meth:`linkage.realtime.index.Index.explain`: the model of the last
published run, every comparison's level and weight, and whether blocking compares
them), the history of every person involved, the other candidates of its records (their
other scored pairs of the last run) and the decisions taken on it so far.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from linkage.canonical import STANDARD_COLUMNS
from linkage.errors import InvalidRequest, NotFound, NotReady
from linkage.realtime import lookup
from linkage.realtime.explain import with_ambiguity
from linkage.realtime.index import Index, PairExplanation
from linkage.register.database import query
from linkage.review.queue import KINDS, STATUSES

Cursor = duckdb.DuckDBPyConnection

#: Pairs explained at most for a person item (its first records, pair by pair).
MAX_PAIRS_EXPLAINED = 45
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50


@dataclass
class Item:
    """A row of the queue."""

    item_id: str
    seq: int
    kind: str
    reasons: list[str]
    uid_a: str | None
    uid_b: str | None
    person_id: str | None
    record_uids: list[str]
    match_probability: float | None
    priority: float
    evidence_hash: str
    programmes: list[str]
    area: str | None
    status: str
    created_at: dt.datetime
    created_by: str
    sample_id: str | None
    stratum: str | None
    linked_then: bool | None


_ITEM_COLS = ("item_id, seq, kind, reasons, uid_a, uid_b, person_id, record_uids, "
              "match_probability, priority, evidence_hash, programmes, area, status, "
              "created_at, created_by, sample_id, stratum, linked_then")


def _item(row: tuple[Any, ...]) -> Item:
    vals = list(row)
    vals[3] = [r for r in vals[3].split(",") if r]
    vals[7] = list(vals[7])
    vals[11] = list(vals[11] or [])
    return Item(*vals)


@dataclass
class Filters:
    """What :func:`list_items` keeps (empty / None: no filter)."""

    status: str = "open"
    kind: str = ""
    programme: str = ""
    area: str = ""
    min_priority: float | None = None
    sample_id: str = ""


def _token(priority: float, seq: int) -> str:
    return base64.urlsafe_b64encode(f"{priority!r}|{seq}".encode()).decode().rstrip("=")


def _untoken(token: str) -> tuple[float, int]:
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        p, s = text.split("|")
        return float(p), int(s)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest([("page_token", "not a page token of this queue")]) from None


def list_items(cur: Cursor, filters: Filters, *, page_size: int = 0, page_token: str = ""
               ) -> tuple[list[Item], str, int]:
    """Items by priority (highest first), then queue order.

    Returns:
        ``(items, next page token or "", number of items matching the filters)``.
        Tokens are keyset positions, so items queued meanwhile neither repeat nor
        shift a page.
    """
    problems = []
    if filters.status and filters.status not in STATUSES:
        problems.append(("status", f"must be one of {', '.join(STATUSES)}"))
    if filters.kind and filters.kind not in KINDS:
        problems.append(("kind", f"must be one of {', '.join(KINDS)}"))
    if page_size < 0 or page_size > MAX_PAGE_SIZE:
        problems.append(("page_size", f"must be between 0 and {MAX_PAGE_SIZE}"))
    if filters.min_priority is not None and not 0 <= filters.min_priority <= 100:
        problems.append(("min_priority", "must be between 0 and 100"))
    if problems:
        raise InvalidRequest(problems)
    where, params = ["TRUE"], []
    for col, val in (("status", filters.status), ("kind", filters.kind),
                     ("area", filters.area), ("sample_id", filters.sample_id)):
        if val:
            where.append(f"{col} = ?")
            params.append(val)
    if filters.programme:
        where.append("list_contains(programmes, ?)")
        params.append(filters.programme)
    if filters.min_priority is not None:
        where.append("priority >= ?")
        params.append(filters.min_priority)
    try:
        (total,) = query(cur, f"SELECT count(*) FROM review_items WHERE {' AND '.join(where)}",
                         params)[0]
    except duckdb.CatalogException:  # a register of schema 1, opened read-only
        raise NotReady("this register has no review queue yet: run a batch "
                       "(`linkage run`)") from None
    if page_token:
        p, s = _untoken(page_token)
        where.append("(priority < ? OR (priority = ? AND seq > ?))")
        params += [p, p, s]
    size = page_size or DEFAULT_PAGE_SIZE
    rows = query(cur, f"SELECT {_ITEM_COLS} FROM review_items WHERE {' AND '.join(where)} "
                      "ORDER BY priority DESC, seq LIMIT ?", [*params, size + 1])
    items = [_item(r) for r in rows[:size]]
    nxt = _token(items[-1].priority, items[-1].seq) if len(rows) > size else ""
    return items, nxt, int(total)


def get_item(cur: Cursor, item_id: str) -> Item:
    rows = query(cur, f"SELECT {_ITEM_COLS} FROM review_items WHERE item_id = ?", [item_id])
    if not rows:
        raise NotFound(f"no review item {item_id!r}")
    return _item(rows[0])


@dataclass
class RecordView:
    """One record as a reviewer sees it."""

    uid: str
    source: str
    record_key: str
    programme: str | None
    source_kind: str | None
    status: str
    person_id: str | None
    raw: dict[str, Any]
    standardised: dict[str, Any]
    file: str | None
    row_number: int | None


def record_views(cur: Cursor, uids: list[str]) -> list[RecordView]:
    cols = ", ".join(f"r.{c}" for c in (*STANDARD_COLUMNS, "extra"))
    rows = query(cur, f"""
        SELECT r.uid, r.source, r.record_key, s.programme, s.kind, r.status, p.person_id,
               r.raw, r.file, r.row_number, {cols}
        FROM records r LEFT JOIN sources s ON s.name = r.source
        LEFT JOIN person_records p USING (uid)
        WHERE r.uid IN (SELECT unnest(?::VARCHAR[]))""", [uids])
    by_uid = {}
    for r in rows:
        std = dict(zip(STANDARD_COLUMNS, r[10:-1], strict=True))
        # The project's extra fields (x_<name> columns) are shown beside the built-in ones.
        std.update(json.loads(r[-1]) if r[-1] else {})
        by_uid[r[0]] = RecordView(r[0], r[1], r[2], r[3], r[4], r[5], r[6],
                                  json.loads(r[7]) if r[7] else {}, std, r[8], r[9])
    return [by_uid[u] for u in uids if u in by_uid]


@dataclass
class OtherCandidate:
    """Another scored pair of one of the item's records (last run)."""

    uid: str  # the item's record
    other_uid: str
    other_person_id: str | None
    match_probability: float
    linked: bool


def other_candidates(cur: Cursor, uids: list[str], limit: int = 10) -> list[OtherCandidate]:
    rows = query(cur, """
        WITH mine AS (SELECT unnest(?::VARCHAR[]) AS uid),
        pairs AS (SELECT l.uid_l AS uid, l.uid_r AS other, match_probability, linked FROM links l
                  UNION ALL
                  SELECT l.uid_r, l.uid_l, match_probability, linked FROM links l)
        SELECT p.uid, p.other, pr.person_id, p.match_probability, p.linked
        FROM pairs p JOIN mine USING (uid) LEFT JOIN person_records pr ON pr.uid = p.other
        WHERE p.other NOT IN (SELECT uid FROM mine)
        ORDER BY p.match_probability DESC, p.uid, p.other LIMIT ?""", [uids, limit])
    return [OtherCandidate(u, o, p, float(prob), bool(ln)) for u, o, p, prob, ln in rows]


@dataclass
class DecisionRow:
    decision_id: str
    decision: str
    record_uid: str | None
    reviewer: str
    decided_at: dt.datetime
    comment: str | None
    revokes: str | None
    constraints: list[list[str]]


def decisions(cur: Cursor, item_id: str) -> list[DecisionRow]:
    rows = query(cur, "SELECT decision_id, decision, record_uid, reviewer, decided_at, "
                      "comment, revokes, constraints_json FROM review_decisions "
                      "WHERE item_id = ? ORDER BY decided_at, decision_id", [item_id])
    return [DecisionRow(*r[:7], json.loads(r[7] or "[]")) for r in rows]


@dataclass
class ItemView:
    """An item with all its evidence."""

    item: Item
    records: list[RecordView]
    pairs: list[PairExplanation]
    batch_probability: dict[tuple[str, str], float]  # (uid_l, uid_r) -> last run's
    histories: dict[str, list[lookup.EventRow]]  # person ID -> its events
    candidates: list[OtherCandidate]
    decisions: list[DecisionRow] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)  # records not in the index


def item_view(cur: Cursor, item_id: str, index: Callable[[], Index] | None) -> ItemView:
    """The item and its evidence; the waterfalls need the real-time ``index``."""
    item = get_item(cur, item_id)
    uids = item.record_uids
    records = record_views(cur, uids)
    pairs: list[PairExplanation] = []
    unexplained: list[str] = []
    if index is not None:
        idx = index()
        present = [u for u in uids if u in idx.uid_index]
        unexplained = [u for u in uids if u not in idx.uid_index]
        if item.uid_a and item.uid_b:
            combos = [(item.uid_a, item.uid_b)] if not unexplained else []
        else:
            combos = list(itertools.islice(itertools.combinations(present, 2),
                                           MAX_PAIRS_EXPLAINED))
        pairs = [with_ambiguity(idx.explain(a, b), cur) for a, b in combos]
    batch = {(a, b): float(p) for a, b, p in query(
        cur, "SELECT uid_l, uid_r, match_probability FROM links WHERE list_contains(?, uid_l) "
             "AND list_contains(?, uid_r)", [uids, uids])}
    persons = sorted({r.person_id for r in records if r.person_id}
                     | ({item.person_id} if item.person_id else set()))
    histories = {pid: lookup.person(cur, pid).lineage for pid in persons}
    return ItemView(item, records, pairs, batch, histories, other_candidates(cur, uids),
                    decisions(cur, item_id), unexplained)
