"""The review core: the one object the gRPC servicer, the web page and the CLI call.

:class:`Review` works on a register, alone (the CLI) or inside a serving process (with
the process's write lock, its real-time index and a callback that refreshes the index
after a decision changed persons). Reads take a cursor each; a decision takes the
register's write lock, so it never writes while a batch run or an enrolment group does.
Views of an item are recorded (who, when, which surface) without the lock: an insert
into ``review_views`` conflicts with no other writer.

Example:
    >>> review = Review(project, Register.open(project.register))  # doctest: +SKIP
    >>> items, token, total = review.list(Filters(status="open"))  # doctest: +SKIP
    >>> review.decide(items[0].item_id, "same", reviewer="awa")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from collections.abc import Callable, Iterator
from typing import Any

from linkage.errors import InvalidRequest, NotFound, RunInProgress
from linkage.realtime.explain import with_ambiguity
from linkage.realtime.index import Index, PairExplanation, load_model
from linkage.register import store
from linkage.register.database import Register, query
from linkage.review import accuracy, decide, evidence
from linkage.review.evidence import Filters, Item, ItemView
from linkage.review.queue import open_pair

#: Seconds a decision waits for the register's write lock (a batch run holds it while it
#: publishes) before answering that a run is in progress.
LOCK_WAIT = 10.0


class Review:
    """The review queue of one register.

    Args:
        project: the project (thresholds, block cap, model file before any run).
        register: the open register.
        write_lock: the process's register write lock (a private one when alone).
        index: returns the real-time index (built from the register on first use when
            None).
        on_change: called after a decision changed persons, with the write lock held.
    """

    def __init__(self, project: Any, register: Register, *,
                 write_lock: threading.Lock | None = None,
                 index: Callable[[], Index] | None = None,
                 on_change: Callable[[], None] | None = None):
        self.project = project
        self.register = register
        self.write_lock = write_lock or threading.Lock()
        self._index_fn = index
        self._own_index: Index | None = None
        self.on_change = on_change or self._drop_own_index

    def _drop_own_index(self) -> None:
        self._own_index = None

    def index(self) -> Index:
        if self._index_fn is not None:
            return self._index_fn()
        if self._own_index is None:
            with self._cursor() as cur:
                self._own_index = Index.build(cur, load_model(self.project, cur),
                                              max_block_size=self.project.max_block_size)
        return self._own_index

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        cur = self.register.cursor()
        try:
            yield cur
        finally:
            cur.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self.write_lock.acquire(timeout=LOCK_WAIT):
            raise RunInProgress("a batch run is publishing; try again when it has ended")
        try:
            yield
        finally:
            self.write_lock.release()

    # ------------------------------------------------------------------ reading

    def list(self, filters: Filters | None = None, *, page_size: int = 0,
             page_token: str = "") -> tuple[list[Item], str, int]:
        """Items by priority; see :func:`linkage.review.evidence.list_items`."""
        with self._cursor() as cur:
            return evidence.list_items(cur, filters or Filters(), page_size=page_size,
                                       page_token=page_token)

    def get(self, item_id: str, *, viewer: str, surface: str) -> ItemView:
        """An item with its evidence; the view is recorded for the audit trail."""
        if not item_id:
            raise InvalidRequest([("item_id", "required")])
        if not viewer or not viewer.strip():
            raise InvalidRequest([("viewer", "required")])
        with self._cursor() as cur:
            view = evidence.item_view(cur, item_id, self._try_index())
            store.add_review_view(cur, item_id, viewer.strip(), surface)
        return view

    def _try_index(self) -> Callable[[], Index] | None:
        try:
            self.index()
        except Exception:  # noqa: BLE001 - no model yet: the evidence has no waterfall
            return None
        return self.index

    def explain(self, uid_a: str, uid_b: str) -> PairExplanation:
        """The waterfall of any two records with a person, linked or not.

        Raises:
            InvalidRequest: a record not named, or the same record twice.
            NotFound: a record unknown, retired or without a person yet.
        """
        problems = [(f"record_{n}", "required") for n, u in (("a", uid_a), ("b", uid_b))
                    if not u]
        if not problems and uid_a == uid_b:
            problems.append(("record_b", "the same record as record_a"))
        if problems:
            raise InvalidRequest(problems)
        index = self.index()
        for uid in (uid_a, uid_b):
            if uid not in index.uid_index:
                with self._cursor() as cur:
                    rows = query(cur, "SELECT status FROM records WHERE uid = ?", [uid])
                if not rows:
                    raise NotFound(f"no record {uid!r} (records are named <source>:<key>)")
                raise NotFound(f"record {uid!r} is retired or has no person yet")
        with self._cursor() as cur:
            return with_ambiguity(index.explain(uid_a, uid_b), cur)

    # ------------------------------------------------------------------ deciding

    def open_pair(self, uid_a: str, uid_b: str, *, reviewer: str) -> str:
        """Queue any two records as an item (to decide on a pair seen with ``explain``);
        returns the item ID (the existing one when the same evidence is queued)."""
        ex = self.explain(uid_a, uid_b)
        if not reviewer or not reviewer.strip():
            raise InvalidRequest([("reviewer", "required")])
        with self._locked(), self.register.transaction() as cur:
            return open_pair(cur, uid_a, uid_b, opened_by=f"reviewer {reviewer.strip()}",
                             now=dt.datetime.now(dt.UTC).replace(tzinfo=None),
                             probability=ex.match_probability)

    def decide(self, item_id: str, decision: str, *, reviewer: str, comment: str | None = None,
               record_uid: str | None = None,
               now: dt.datetime | None = None) -> decide.Decision:
        """Record a decision and apply it to the persons at once
        (:func:`linkage.review.decide.decide`)."""
        if not item_id:
            raise InvalidRequest([("item_id", "required")])
        with self._locked():
            with self.register.transaction() as cur:
                result = decide.decide(cur, item_id, decision, reviewer=reviewer,
                                       comment=comment or None, record_uid=record_uid or None,
                                       now=now)
            if result.events:  # still under the lock: no enrolment sees the old persons
                self.on_change()
        return result

    # ------------------------------------------------------------------ accuracy

    def sample(self, *, per_stratum: int = 20, seed: int | None = None,
               created_by: str = "clerical sample",
               record_sample: int = accuracy.RECORD_SAMPLE) -> accuracy.SampleInfo:
        """Queue a clerical sample (:func:`linkage.review.accuracy.queue_sample`)."""
        index = self.index()
        with self._locked(), self.register.transaction() as cur:
            return accuracy.queue_sample(cur, index, match_threshold=self.project.thresholds.match,
                                         per_stratum=per_stratum, seed=seed,
                                         created_by=created_by, record_sample=record_sample,
                                         review_threshold=self.project.thresholds.review,
                                         one_to_one_threshold=self.project.thresholds.one_to_one)

    def estimate(self, sample_id: str = "", *, seed: int = 0) -> accuracy.Estimate:
        """Precision and recall from a clerical sample's decisions (the last by default)."""
        with self._cursor() as cur:
            sid = sample_id or accuracy.last_sample(cur)
            if sid is None:
                raise NotFound("no clerical sample yet: `linkage review sample`")
            return accuracy.estimate(cur, sid, seed=seed)
