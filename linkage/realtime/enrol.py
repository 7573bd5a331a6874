"""Incremental enrolment: one writer thread stores records and links them at once.

Datasette's shape: one writer, many readers. Callers standardise and validate a record
in their own thread, then hand it to :class:`Enroller`, whose single thread takes
records off a queue in groups, and for each group, inside one register transaction:

* upserts the record into ``records`` (idempotent by ``(source, record key)``: the same
  content again is ``unchanged``; new content is ``updated`` and keeps its person), with
  the record hash and upsert of batch ingest (:func:`linkage.register.store.upsert_records`);
* links the group's new records against the in-memory index in one vectorised pass
  (each record against the live records and the group's earlier records, as if they
  came one by one); in order, a record joins a person as the next batch would
  (:meth:`Enroller._decide`): an exact copy of a record of its own source and household
  joins that record's person whatever the score (the batch joins such copies first),
  else the best candidate person whose match probability reaches ``thresholds.match``
  (between sources that list each person once, the probability weighed by the
  candidates' own competitors, as the batch's ambiguity step weighs it:
  :meth:`Enroller._ambiguity`, and ``thresholds.one_to_one`` as the batch links such
  pairs: :func:`linkage.batch.ambiguity.pair_thresholds`)
  and that the batch's clustering rules allow (:data:`linkage.batch.clustering.DEFAULT_RULES`:
  no two national IDs, no two records of one civil registry or one roster household,
  two records of one roster only through their own strong link); else a new person ID
  is issued from the register's allocator, the batch's own
  (:class:`linkage.register.store.IdIssuer`); reviewers' constraints on a record sent
  again are honoured (a must-link partner's person is joined, a cannot-link partner's
  person is never a candidate), and links on weak evidence are queued for review
  (:mod:`linkage.review.queue`);
* publishes ``person_records``, ``persons`` and ``person_events`` (``created`` /
  ``record_added``, run id ``enrol``) with the batch's writer
  (:func:`linkage.register.store.publish_persons`), recomputes the golden records of the
  persons it wrote to (:func:`linkage.register.store.refresh_golden`, ``golden_changed``
  events), and commits once for the group.

The writer takes the register's *write lock* for each group. A batch run holds that
lock for its whole transaction, so an enrolment never writes concurrently with a batch
(which would be a DuckDB write-write conflict that loses one of them): records that
arrive during a run wait in the queue and are applied right after the run commits;
the next run re-links them with everything else.

A caller that stops waiting (and answers QUEUED) first *journals* its record in the
``enrol_queue`` table, a table the batch never touches; the writer deletes the row in
the transaction that applies the record, and :class:`Enroller` replays the table when
it starts, so a crash between QUEUED and the batch's commit loses nothing. Who owns a
record is decided under one small lock: once the writer has claimed it for a group,
the caller waits for the group's commit instead of journaling.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import math
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from linkage.batch.ambiguity import bits_given_prior, candidate_floor, pair_key, pair_thresholds
from linkage.batch.clustering import DEFAULT_RULES, Rules, duplicate_files, one_id_mistyped
from linkage.canonical import STANDARD_COLUMNS
from linkage.ids.reconcile import Event
from linkage.matching.extra import extra_json
from linkage.realtime.index import Index, probability
from linkage.register import store
from linkage.register.database import Register, query
from linkage.review.queue import enrolment_items

log = logging.getLogger(__name__)

ENROL_RUN_ID = "enrol"
CREATED, LINKED, UNCHANGED, UPDATED, QUEUED = "created", "linked", "unchanged", "updated", "queued"


@dataclass
class EnrolItem:
    """A validated record waiting to be written."""

    source: str
    record_key: str
    raw: dict[str, Any]  # raw canonical fields, stored as the record's JSON
    row: dict[str, Any]  # standardised columns
    seq: int = -1  # submission order, set by Enroller.submit
    claimed: bool = False  # taken by the writer for a group
    journaled: bool = False  # in enrol_queue

    @property
    def uid(self) -> str:
        return f"{self.source}:{self.record_key}"

    @cached_property
    def raw_json(self) -> str:
        return store.record_json(self.raw)

    @cached_property
    def record_hash(self) -> str:
        return store.record_hash(self.raw_json)

    def to_json(self) -> str:
        return json.dumps({"source": self.source, "record_key": self.record_key,
                           "raw": self.raw, "row": self.row}, ensure_ascii=False, default=str)

    @classmethod
    def from_json(cls, text: str, seq: int) -> EnrolItem:
        d = json.loads(text)
        return cls(d["source"], d["record_key"], d["raw"], d["row"], seq=seq, journaled=True)


@dataclass
class EnrolResult:
    uid: str
    person_id: str | None
    outcome: str
    match_probability: float = 0.0


@dataclass
class _Txn:
    """What one enrolment transaction has done so far."""

    now: dt.datetime
    existing: dict[str, tuple[str, str]] = field(default_factory=dict)  # uid -> (hash, status)
    assigned: dict[str, str] = field(default_factory=dict)  # uid -> person ID
    writes: dict[str, EnrolItem] = field(default_factory=dict)  # uid -> its last content
    new_assigned: dict[str, str] = field(default_factory=dict)  # uid -> person, to publish
    events: list[Event] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # uids put in the index
    results: list[EnrolResult] = field(default_factory=list)
    # (uid, best candidate's record, probability, linked, that pair's match threshold)
    # of new records, for review
    review: list[tuple[str, str | None, float, bool, float]] = field(default_factory=list)
    golden: dict[str, str | None] = field(default_factory=dict)  # person -> new golden JSON


_STOP = object()


def _as_weight(threshold: float) -> float:
    """A match probability as a match weight (log2 odds)."""
    return (math.inf if threshold >= 1 else -math.inf if threshold <= 0
            else math.log2(threshold / (1 - threshold)))


class Enroller:
    """The single writer thread of real-time enrolment.

    Args:
        register: the server's register.
        index: the resolver index (searched and extended as records are enrolled).
        match_threshold: the project's match threshold.
        write_lock: shared with the batch controller; held while writing.
        sources: source name -> (kind, programme) of sources that may be enrolled into
            and are not yet in the ``sources`` table (configured in the project).
        on_commit: called after each committed group (wakes the change feed).
        max_group: records per transaction at most.
        review_threshold: the project's review threshold; with it, enrolments on weak
            evidence are queued for review (:func:`linkage.review.queue.enrolment_items`).
        rules: the batch's clustering rules, which a link must respect (the batch is the
            reference: a link it would refuse, it undoes at the next run).
        one_to_one_threshold: the match threshold of the pairs weighed one-to-one
            (``thresholds.one_to_one_match``); None: ``match_threshold``.
    """

    def __init__(self, register: Register, index: Index, *, match_threshold: float,
                 write_lock: threading.Lock, sources: dict[str, tuple[str, str]] | None = None,
                 on_commit: Callable[[], None] | None = None, max_group: int = 2000,
                 review_threshold: float | None = None, rules: Rules = DEFAULT_RULES,
                 one_to_one_threshold: float | None = None):
        self.register = register
        self.index = index
        self.match_threshold = match_threshold
        self.one_to_one_threshold = one_to_one_threshold
        self.review_threshold = review_threshold
        self.write_lock = write_lock
        self.config_sources = dict(sources or {})
        self.on_commit = on_commit or (lambda: None)
        self.max_group = max_group
        self.rules = rules
        # The batch's ambiguity step weighs candidates from this weight up (under the
        # review threshold).
        self._floor_weight = (-math.inf if review_threshold is None
                              else _as_weight(candidate_floor(review_threshold)))
        self._queue: queue.Queue[Any] = queue.Queue()
        self._claim = threading.Lock()  # item.claimed / item.journaled change under it
        self._group: list[tuple[EnrolItem, Future[EnrolResult]]] = []  # awaiting the lock
        self._thread = threading.Thread(target=self._loop, name="linkage-writer", daemon=True)
        # The writer thread's own: only it issues IDs (a request thread never touches it).
        self._ids = store.IdIssuer()
        cur = self.register.cursor()
        try:
            self.known_sources = store.source_names(cur)
            self._read_source_rules(cur)
            self._ids.begin(cur)  # read the issued IDs now, not at the first enrolment
            journal = store.journaled_enrolments(cur)
        finally:
            cur.close()
        self._seq = itertools.count(journal[-1][0] + 1 if journal else 0)
        self._thread.start()
        replay, unknown = [], []
        for seq, text in journal:
            it = EnrolItem.from_json(text, seq)
            (replay if self.source_known(it.source) else unknown).append(it)
        if unknown:  # the project lost a source since: keep them for an operator
            log.warning("%d journaled enrolment(s) of unknown sources %s left in enrol_queue",
                        len(unknown), sorted({it.source for it in unknown}))
        if replay:
            log.info("replaying %d queued enrolment(s) from the journal", len(replay))
        for it in replay:
            self._queue.put((it, Future()))

    def reload(self, index: Index | None = None) -> None:
        """Take the index rebuilt after a batch run published, and re-read the sources.

        Called with the write lock held (the writer is between groups). The ID issuer
        needs no reload: it sees for itself that the run issued IDs.
        """
        if index is not None:
            self.index = index
        cur = self.register.cursor()
        try:
            self.known_sources = store.source_names(cur)
            self._read_source_rules(cur)
        finally:
            cur.close()

    def _read_source_rules(self, cur: Any) -> None:
        """Which sources are civil registries, and which the last run found to be files
        of duplicates (the same-source rule lifted, :func:`duplicate_files`): read at start
        and after each publish, as the batch decided them."""
        self.civil = {n for (n,) in query(
            cur, "SELECT name FROM sources WHERE kind = 'civil_registry'")}
        self.civil |= {n for n, (kind, _) in self.config_sources.items()
                       if kind == "civil_registry"}
        self.lifted = set(duplicate_files(
            cur.sql("SELECT uid, source FROM records WHERE status = 'active'").to_arrow_table(),
            cur.sql("SELECT uid_l, uid_r, match_probability, match_weight FROM links"
                    ).to_arrow_table(),
            self.match_threshold, civil_sources=self.civil, rules=self.rules))
        # The last run's ambiguity prior per source pair, files of duplicates left out
        # as the batch leaves them out (none: the step was off, or the run predates it),
        # and the candidate links of records enrolled since.
        rows = query(cur, "SELECT summary FROM runs WHERE status = 'published' "
                          "ORDER BY finished_at DESC LIMIT 1")
        amb = (json.loads(rows[0][0]).get("ambiguity") or {}) if rows and rows[0][0] else {}
        self.pair_bits: dict[str, float] = {
            k: v for k, v in (amb.get("prior_bits") or {}).items()
            if not set(k.split("|")) & self.lifted}
        self._recent: dict[str, list[tuple[str, float]]] = {}

    def source_known(self, name: str) -> bool:
        """Whether records of ``name`` may be enrolled: a configured source, or one in the
        register's ``sources`` table. Safe from any thread: a miss reads the table with a
        cursor of its own and changes nothing the writer uses."""
        if name in self.known_sources or name in self.config_sources:
            return True
        cur = self.register.cursor()
        try:
            found = name in store.source_names(cur)
        finally:
            cur.close()
        if found:
            self.known_sources = self.known_sources | {name}  # a new set: readers never see
        return found                                        # one being changed

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    def submit(self, item: EnrolItem) -> Future[EnrolResult]:
        """Queue a record; the future resolves once its group has committed."""
        fut: Future[EnrolResult] = Future()
        item.seq = next(self._seq)
        self._queue.put((item, fut))
        return fut

    def journal(self, item: EnrolItem) -> bool:
        """Keep a submitted record in ``enrol_queue`` until it is applied.

        Returns False when the writer has already claimed it: its group commits soon,
        so the caller should wait for the result rather than answer QUEUED.
        """
        with self._claim:
            if item.claimed:
                return False
            if not item.journaled:
                cur = self.register.cursor()
                try:
                    store.journal_enrolment(cur, item.seq, item.uid, item.to_json())
                finally:
                    cur.close()
                item.journaled = True
            return True

    def close(self, timeout: float = 30.0) -> None:
        """Apply what is queued (unless a batch holds the lock past ``timeout``), then stop.

        What is still waiting then is journaled, to be applied when the server restarts.
        """
        self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._thread.is_alive():
            waiting = list(self._group)
            while True:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is not _STOP:
                    waiting.append(nxt)
            kept = sum(self.journal(it) for it, _ in waiting)
            log.warning("writer still busy at shutdown: %d waiting enrolment(s) journaled "
                        "for the next start", kept)

    # ------------------------------------------------------------------ the writer

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group = [first]
            stop = False
            while len(group) < self.max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                group.append(nxt)
            self._group = group
            with self.write_lock:
                with self._claim:
                    for it, _ in group:
                        it.claimed = True
                self._group = []
                try:
                    results = self._apply([it for it, _ in group])
                except Exception as exc:  # every caller learns; the writer lives on
                    log.exception("enrolment group of %d failed; rolled back", len(group))
                    for _, fut in group:
                        fut.set_exception(exc)
                else:
                    for (_, fut), res in zip(group, results, strict=True):
                        fut.set_result(res)
                    self.on_commit()
            if stop:
                return

    def _apply(self, items: list[EnrolItem]) -> list[EnrolResult]:
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        cur = self.register.cursor()
        txn = _Txn(now)
        cur.execute("BEGIN TRANSACTION")
        try:
            self._ids.begin(cur)
            uids = list(dict.fromkeys(it.uid for it in items))
            txn.existing = {u: (h, s) for u, h, s in query(
                cur, "SELECT uid, record_hash, status FROM records "
                     "WHERE uid IN (SELECT unnest(?::VARCHAR[]))", [uids])}
            txn.assigned = dict(query(cur, "SELECT uid, person_id FROM person_records "
                                           "WHERE uid IN (SELECT unnest(?::VARCHAR[]))", [uids]))
            known = self.known_sources
            for name in sorted({it.source for it in items} - known):
                kind, programme = self.config_sources[name]
                store.add_source(cur, name, kind, programme, replace=False)
            # A uid seen twice in a group: the second waits for the first to be linked.
            segment: list[EnrolItem] = []
            seen: set[str] = set()
            for it in items:
                if it.uid in seen:
                    self._link(cur, segment, txn)
                    segment, seen = [], set()
                segment.append(it)
                seen.add(it.uid)
            self._link(cur, segment, txn)
            self._write(cur, txn)
            if self.review_threshold is not None and txn.review:
                enrolment_items(cur, txn.review, review_threshold=self.review_threshold,
                                now=now)
            store.drop_journaled(cur, [it.seq for it in items if it.journaled])
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            for uid in txn.added:
                self.index.remove(uid)
            self._ids.rolled_back()
            raise
        finally:
            cur.close()
        self._ids.committed()
        for pid, text in txn.golden.items():  # what Resolve answers from now on
            if text is None:
                self.index.golden.pop(pid, None)
            else:
                self.index.golden[pid] = text
        self.known_sources = known | {it.source for it in items}
        return txn.results

    def _link(self, cur: Any, items: list[EnrolItem], txn: _Txn) -> None:
        """Store and link records of distinct uids: all new ones scored in one pass."""
        index = self.index
        new: list[tuple[int, EnrolItem]] = []  # (index row, item)
        new_keys: list[list[tuple[str, str]]] = []
        slots: list[EnrolResult | int] = []  # a result, or the position in ``new``
        for it in items:
            uid = it.uid
            prev, pid = txn.existing.get(uid), txn.assigned.get(uid)
            h = it.record_hash
            if prev is not None and pid is not None and prev == (h, "active"):
                slots.append(EnrolResult(uid, pid, UNCHANGED, 1.0))
                continue
            txn.writes[uid] = it  # the last content of a uid sent twice wins
            txn.existing[uid] = (h, "active")
            keys = index.block_keys(it.row)
            txn.added.append(uid)
            if prev is not None and pid is not None:  # new content, same person
                index.add(uid, pid, it.row, keys)
                slots.append(EnrolResult(uid, pid, UPDATED, 1.0))
                continue
            slots.append(len(new))
            new.append((index.add(uid, None, it.row, keys, pending=True), it))
            new_keys.append(keys)
        if new:
            decided = self._decide(cur, new, new_keys, txn)
            slots = [decided[s] if isinstance(s, int) else s for s in slots]
        txn.results.extend(slots)  # type: ignore[arg-type]

    def _decide(self, cur: Any, new: list[tuple[int, EnrolItem]],
                keys: list[list[tuple[str, str]]], txn: _Txn) -> list[EnrolResult]:
        """Each new record joins a person as the next batch would, else gets a new
        person ID; in order, so a record can join an earlier one.

        In this order: a reviewer's must-link partner's person (one retired and sent
        again); an exact copy of a record of the same source and household (the batch
        joins those first, like a must-link: with a common name and a year-only date a
        copy's own score may be below the threshold); the best candidate person at the
        match threshold that the batch's rules allow (:meth:`_refusal`), strongest first
        as the batch's greedy clustering takes pairs. Persons holding a cannot-link
        partner are never joined.
        """
        index = self.index
        rows = [at for at, _ in new]
        group = np.asarray(rows, np.int64)
        bounds, cand, weights = index.link_group(rows, keys)
        weighable = [self._weighable(at, cand[bounds[k]:bounds[k + 1]],
                                     weights[bounds[k]:bounds[k + 1]])
                     for k, (at, _) in enumerate(new)]
        around = self._links_around(cur, [cand[bounds[k]:bounds[k + 1]][on]
                                          for k, on in enumerate(weighable)])
        partners = store.constraint_partners(cur, [it.uid for _, it in new])
        review: list[tuple[str, str | None, float, bool]] = []
        out = []
        for k, (at, it) in enumerate(new):
            lo, hi = bounds[k], bounds[k + 1]
            prob, pid, other, copy = 0.0, None, None, False
            threshold = self.match_threshold
            must, cannot = partners.get(it.uid, ((), ()))
            forced = next((txn.assigned.get(u) or index.person_of(u) for u in sorted(must)
                           if txn.assigned.get(u) or index.person_of(u)), None)
            if forced is not None:
                pid, prob = forced, 1.0
            elif hi > lo:
                c, w = cand[lo:hi], weights[lo:hi]
                w = self._ambiguity(at, c, w, weighable[k], around)
                # Each candidate's threshold, as a weight: a one-to-one pair's is its own.
                thresholds = pair_thresholds(weighable[k], self.match_threshold,
                                             self.one_to_one_threshold)
                with np.errstate(divide="ignore"):  # 0 and 1: -inf and inf, as _as_weight
                    tw = np.log2(thresholds) - np.log2(1 - thresholds)
                persons = index.person[c]
                allowed = persons >= 0
                if cannot:
                    barred = {txn.assigned.get(u) or index.person_of(u) for u in cannot}
                    allowed &= np.array([index.persons.values[p] not in barred
                                         if p >= 0 else False for p in persons], bool)
                w = np.where(allowed, w, -np.inf)
                copies = index.copies_of_one_row(at, c) & allowed
                if copies.any():
                    top: int | None = Index.top1(np.where(copies, w, -np.inf), persons)
                    copy = True
                else:
                    top = self._best(at, c, w, tw, persons, group)
                if top is not None:
                    pid = index.persons.values[persons[top]]
                else:  # no person to join: the best candidate, for the review queue
                    top = Index.top1(w, persons)
                if top is not None and np.isfinite(w[top]):
                    prob = probability(float(w[top]))
                    other = index.uids[int(c[top])]
                    threshold = float(thresholds[top])
            if pid is not None:
                outcome = LINKED
            else:
                pid, _seq = self._ids.issue(cur)
                txn.events.append(Event("created", pid, None, None, ENROL_RUN_ID, txn.now,
                                        "enrolled"))
                outcome = CREATED
            if forced is None and not copy:
                review.append((it.uid, other, prob, outcome == LINKED, threshold))
            txn.events.append(Event("record_added", pid, it.uid, None, ENROL_RUN_ID, txn.now,
                                    "enrolled"))
            txn.new_assigned[it.uid] = pid
            txn.assigned[it.uid] = pid
            index.assign(at, pid)
            out.append(EnrolResult(it.uid, pid, outcome, prob))
        index.publish(rows)
        txn.review.extend(review)
        return out

    # ------------------------------------------------------------------ ambiguity

    def _weighable(self, at: int, c: np.ndarray, w: np.ndarray) -> np.ndarray:
        """Which candidates of row ``at`` the batch's ambiguity step would weigh: another
        source, a prior for the pair of sources from the last run (files of duplicates
        have none), and a pairwise weight at the batch's candidate floor
        (:func:`linkage.batch.ambiguity.candidate_floor`). Their stored competitors are
        the register's links, at the review threshold: a competitor between the floor
        and the review threshold is seen by the batch only."""
        if not self.pair_bits:
            return np.zeros(len(c), bool)
        names = self.index.sources.values
        mine = names[int(self.index.source[at])]
        theirs = [names[int(s)] for s in self.index.source[c].tolist()]
        return np.array([t != mine and pair_key(mine, t) in self.pair_bits
                         for t in theirs], bool) & (w >= self._floor_weight)

    def _links_around(self, cur: Any, groups: list[np.ndarray]
                      ) -> dict[str, list[tuple[str, float]]]:
        """Stored links, with their pairwise weights, two steps out from the candidates
        in ``groups`` (index rows): uid -> [(other uid, weight)]."""
        uids = {self.index.uids[int(r)] for g in groups for r in g.tolist()}
        out: dict[str, list[tuple[str, float]]] = {}
        seen: set[str] = set()
        for _ in range(2):
            ask = sorted(uids - seen)
            if not ask:
                break
            seen |= set(ask)
            rows = query(cur, """
                WITH q AS (SELECT unnest(?::VARCHAR[]) AS u)
                SELECT uid_l, uid_r, match_weight - coalesce(ambiguity_bits, 0) FROM links
                WHERE uid_l IN (SELECT u FROM q) OR uid_r IN (SELECT u FROM q)""", [ask])
            uids = set()
            for a, b, w in rows:
                if w is None:
                    continue
                for x, y in ((a, b), (b, a)):
                    if x in seen:
                        out.setdefault(x, []).append((y, float(w)))
                        uids.add(y)
        return out

    def _ambiguity(self, at: int, c: np.ndarray, w: np.ndarray, on: np.ndarray,
                   around: dict[str, list[tuple[str, float]]]) -> np.ndarray:
        """The candidates' weights with the batch's ambiguity bits
        (:mod:`linkage.batch.ambiguity`): the one-to-one matching between two sources
        that list each person once, on the piece of the candidate graph around the new
        record (its candidates, their stored links and those links' other ends), with
        the last run's prior per source pair. Records of one source and person count
        as one candidate, as the batch's nodes do. Beyond two steps the graph is cut,
        so a far competitor is not seen; near ones decide almost everything. ``on``:
        the candidates to weigh (:meth:`_weighable`)."""
        if not on.any():
            return w
        index = self.index
        me = index.uids[at]
        edges: dict[tuple[str, str], float] = {}

        def add(x: str, y: str, wxy: float) -> None:
            key = (x, y) if x < y else (y, x)
            edges[key] = max(edges.get(key, -math.inf), wxy)

        ends = []
        for r, wj in zip(c[on].tolist(), w[on].tolist(), strict=True):
            b = index.uids[r]
            add(me, b, wj)
            ends.append(b)
        near = set(ends)
        for b in ends:
            for x, wx in around.get(b, []) + self._recent.get(b, []):
                add(b, x, wx)
                near.add(x)
        for x in list(near - set(ends)):
            for y, wy in around.get(x, []) + self._recent.get(x, []):
                add(x, y, wy)
        names = index.sources.values
        # uid -> (node, source): one node per person known within a source.
        node_of: dict[str, tuple[int, str]] = {me: (0, names[int(index.source[at])])}
        labels: dict[tuple[int, int], int] = {}

        def node(u: str) -> tuple[int, str] | None:
            if u not in node_of:
                i = index.uid_index.get(u)
                if i is None or not index.alive[i]:
                    return None
                person, source = int(index.person[i]), int(index.source[i])
                label = (source, person) if person >= 0 else (-1 - i, -1)
                node_of[u] = (labels.setdefault(label, len(labels) + 1), names[source])
            return node_of[u]

        kept = [(node(x), node(y), x, y, wxy) for (x, y), wxy in edges.items()
                if node(x) is not None and node(y) is not None]
        bits = bits_given_prior(
            np.array([nx[0] for nx, _, _, _, _ in kept], np.int64),
            np.array([ny[0] for _, ny, _, _, _ in kept], np.int64),
            [nx[1] for nx, _, _, _, _ in kept], [ny[1] for _, ny, _, _, _ in kept],
            np.array([wxy for *_, wxy in kept]), self.pair_bits)
        mine = {(y if x == me else x): b for (_, _, x, y, _), b in zip(kept, bits, strict=True)
                if me in (x, y)}
        out = w.copy()
        for j in np.flatnonzero(on).tolist():
            b = index.uids[int(c[j])]
            out[j] = w[j] + mine.get(b, 0.0)
            # Enrolled since the last run: the next record's competitors include it.
            self._recent.setdefault(me, []).append((b, float(w[j])))
            self._recent.setdefault(b, []).append((me, float(w[j])))
        return out

    def _best(self, at: int, c: np.ndarray, w: np.ndarray, tw: np.ndarray,
              persons: np.ndarray, group: np.ndarray) -> int | None:
        """Position in ``c`` of the best record of the strongest candidate person at its
        match threshold (weights ``tw``) that the batch's rules let row ``at`` join
        (None: none).

        Persons are tried as :meth:`Index.top1` ranks them (weight, then person code),
        as the batch's greedy clustering takes pairs strongest first and merges along
        the first one its rules allow; a pair under its own threshold is no link.
        """
        tried: set[int] = set()
        for j in np.lexsort((persons, -w)).tolist():
            if not np.isfinite(w[j]):
                return None
            if w[j] < tw[j]:
                continue
            p = int(persons[j])
            if p in tried:
                continue
            tried.add(p)
            if self._refusal(at, p, c, w, tw, group) is None:
                return j
        return None

    def _refusal(self, at: int, person: int, c: np.ndarray, w: np.ndarray, tw: np.ndarray,
                 group: np.ndarray) -> str | None:
        """Why the batch would not put row ``at`` in the person of code ``person`` (a
        reason of :data:`linkage.batch.clustering.REASONS`), or None.

        The rules of :class:`linkage.batch.clustering.Rules` between the record and the
        person's records: two national IDs (not one typo apart); two records of one
        civil registry; two records of one roster household; two records of one roster
        (not a file of duplicates) without a direct link of ``same_source_weight``. A
        direct link is the pair's own weight (``w`` for the candidates ``c``); a record
        that is no candidate has none. Witnessed chains and the cohesion floor, off in
        the batch's rules, are not applied.
        """
        index, rules = self.index, self.rules
        rows = index.members(person)
        rows = rows[(index.alive[rows] | np.isin(rows, group)) & (index.person[rows] == person)]
        if len(rows) == 0:
            return None
        # Direct links as the batch has them: pairs at or above their match threshold.
        linked = w >= tw
        direct = dict(zip(c[linked].tolist(), w[linked].tolist(), strict=True))

        def lifted_by(others: np.ndarray, bar: float | None) -> bool:
            # Every such pair has its own link of at least ``bar`` (None: any link).
            floor = -math.inf if bar is None else bar
            return all(direct.get(r, -math.inf) >= floor for r in others.tolist())

        nid = index.cols["national_id"]
        mine = int(nid[at])
        if mine >= 0:
            ids = index.vocab["national_id"].values
            theirs = rows[(nid[rows] >= 0) & (nid[rows] != mine)]
            conflict = theirs[[not (rules.national_id_typos
                                    and one_id_mistyped(ids[mine], ids[int(t)]))
                               for t in nid[theirs].tolist()]] if len(theirs) else theirs
            if len(conflict) and not lifted_by(conflict, rules.national_id_weight):
                return "national_id"
        same = rows[index.source[rows] == index.source[at]]
        if len(same) == 0:
            return None
        source = index.sources.values[int(index.source[at])]
        if source in self.civil:
            return None if lifted_by(same, rules.civil_registry_weight) else "civil_registry"
        hh = int(index.household[at])
        if hh >= 0:
            household = same[index.household[same] == hh]
            if len(household) and not lifted_by(household, rules.household_weight):
                return "household"
        if source in self.lifted:
            return None
        return None if lifted_by(same, rules.same_source_weight) else "same_source"

    def _write(self, cur: Any, txn: _Txn) -> None:
        """Upsert the group's records and publish its persons: the batch's writes."""
        if txn.writes:
            items = list(txn.writes.values())
            # No file: records sent over the API (an update keeps a file record's file).
            columns: dict[str, list[Any]] = {
                "uid": [i.uid for i in items], "source": [i.source for i in items],
                "record_key": [i.record_key for i in items],
                "raw": [i.raw_json for i in items],
                "record_hash": [i.record_hash for i in items]}
            for c in STANDARD_COLUMNS:
                columns[c] = [i.row.get(c) for i in items]
            extra = self.index.definition.extra
            columns["extra"] = [extra_json(extra, i.row) for i in items]
            store.upsert_records(cur, store.records_table(columns), now=txn.now)
        ids = self._ids
        store.publish_persons(cur, store.PersonChanges(
            run_id=ENROL_RUN_ID, issued=ids.pending,
            next_seq=ids.next_seq if ids.pending else None, assigned=txn.new_assigned,
            events=txn.events))
        # The golden records of the persons whose records this group wrote; the index
        # knows their records and their current golden records (no scan of the register).
        persons = {txn.assigned[u] for u in txn.writes if u in txn.assigned}
        txn.golden = store.refresh_golden(cur, persons, run_id=ENROL_RUN_ID, now=txn.now,
                                          members=self.index.records_of(persons),
                                          old=self.index.golden)
