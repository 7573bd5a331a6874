"""The real-time core behind the API: resolve, enrol, look up, watch, run batches.

:class:`Realtime` ties together the register, the model, the resolver index, the
enrolment writer and the batch controller. It knows nothing of gRPC: the servicers in
:mod:`linkage.service` only convert messages to the plain values taken here and back.

Example:
    >>> rt = Realtime.open(load_project("demo/project.yaml"))  # doctest: +SKIP
    >>> rt.resolve(PersonInput({"given_name": "Moussa", "family_name": "Traore"}))  # doctest: +SKIP
    >>> rt.close()  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from linkage.batch.runs import BatchController, RunInfo
from linkage.config import ProjectConfig
from linkage.errors import InvalidRequest, NotFound, NotReady
from linkage.ids.golden import GoldenRecord
from linkage.realtime import lookup, pages
from linkage.realtime.enrol import QUEUED, EnrolItem, Enroller, EnrolResult
from linkage.realtime.index import Index, Resolution, load_model
from linkage.realtime.workers import ResolvePool
from linkage.register.database import Register, query
from linkage.register.snapshot import Snapshotter
from linkage.review.core import Review

log = logging.getLogger(__name__)

#: Raw canonical field -> request field path, for errors raised by standardisation.
FIELD_PATHS = {
    "name": "person.name", "given_name": "person.name.given_name",
    "family_name": "person.name.surname", "full_name": "person.name.full_name",
    "birth_date": "person.birth_date", "age": "person.age", "sex": "person.sex",
    "national_id": "person.identifiers", "phone": "person.phone_number",
}


@dataclass
class PersonInput:
    """A person's details as raw canonical fields (strings, as a roster would have them).

    Attributes:
        raw: raw canonical fields (:data:`linkage.canonical.RAW_FIELDS`).
        name_order: how ``full_name`` is ordered (see :data:`linkage.config.NAME_ORDERS`).
        age_reference_date: when ``age`` was recorded.
    """

    raw: dict[str, str | None]
    name_order: str | None = None
    age_reference_date: dt.date | None = None


@dataclass
class RealtimeOptions:
    enrol_wait: float = 5.0  # seconds an Enrol waits behind a batch before answering QUEUED
    max_candidates: int = 100
    default_candidates: int = 10
    # Seconds a follower sleeps between checks that its client is there (a cancelled
    # call wakes it at once through wake_followers; this is the fallback).
    event_poll: float = 5.0
    event_resync: float = 30.0  # seconds between reads of an idle follower (writers elsewhere)
    max_persons_per_call: int = 100  # GetPersons (serve.max_persons_per_call)
    max_page_size: int = 1000  # listings (serve.max_page_size)
    #: keep a read-only snapshot beside the register, refreshed after each publish and
    #: this often when it changed (None: no snapshot; see linkage.register.snapshot)
    snapshot_seconds: float | None = None
    #: score Resolve in this many processes forked from the serving one (0: in process;
    #: serve.resolve_processes; see linkage.realtime.workers)
    resolve_processes: int = 0


#: Identifier types of FindByIdentifier (national-ID synonyms as in person details).
NATIONAL_ID_TYPES = frozenset({"UIN", "NID", "NATIONAL_ID"})
BENEFICIARY_ID, RECORD_KEY = "BENEFICIARY_ID", "RECORD_KEY"


@dataclass
class PersonsPage:
    """A page of a programme's persons."""

    members: list[lookup.Member]
    next_page_token: str


@dataclass
class ChangesPage:
    """A page of the change feed."""

    events: list[lookup.EventRow]
    next_page_token: str
    last_seq: int


@dataclass
class _State:
    index: Index | None = None
    model_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Realtime:
    """The process-wide real-time core on one register."""

    def __init__(self, project: ProjectConfig, register: Register, *,
                 options: RealtimeOptions | None = None, own_register: bool = False):
        self.project = project
        self.register = register
        self.options = options or RealtimeOptions(
            max_persons_per_call=project.serve.max_persons_per_call,
            max_page_size=project.serve.max_page_size)
        self._own = own_register
        self.write_lock = threading.Lock()
        self._changes = threading.Condition()
        # The change feed's last cursor: followers sleep until it moves, so an idle
        # subscriber costs no register read (200 of them polling would be 400 reads/s).
        self._last_seq = self._read(lookup.last_seq)
        self._state = _State()
        #: the scoring processes (None: Resolve scores in this process)
        self.pool: ResolvePool | None = None
        self._load_index()
        self.enroller: Enroller | None = None
        if self._state.index is not None:
            self.enroller = self._new_enroller(self._state.index)
        self.batch = BatchController(project, register, self.write_lock, self._after_publish)
        # The review queue shares the write lock and the index; a decision that changed
        # persons refreshes the index as a published run does.
        self.review = Review(project, register, write_lock=self.write_lock,
                             index=lambda: self.index, on_change=self._after_publish)
        #: called by :meth:`close` before the register is closed (the audit trail's flush)
        self.closers: list[Callable[[], None]] = []
        self.snapshots: Snapshotter | None = None
        if self.options.snapshot_seconds is not None:
            self.snapshots = Snapshotter(register, self.options.snapshot_seconds)
            self.snapshots.request()

    @classmethod
    def open(cls, project: ProjectConfig, register: Register | None = None,
             options: RealtimeOptions | None = None) -> Realtime:
        """Open the project's register (unless given) and build the index."""
        own = register is None
        reg = register or Register.of(project)
        return cls(project, reg, options=options, own_register=own)

    def _new_enroller(self, index: Index) -> Enroller:
        sources = {s.name: (s.kind, s.programme) for s in self.project.sources}
        return Enroller(self.register, index, match_threshold=self.project.thresholds.match,
                        write_lock=self.write_lock, sources=sources, on_commit=self._notify,
                        review_threshold=self.project.thresholds.review,
                        one_to_one_threshold=self.project.thresholds.one_to_one_match)

    def _load_index(self) -> None:
        t0 = time.monotonic()
        cur = self.register.cursor()
        try:
            model = load_model(self.project, cur)
            index = Index.build(cur, model, max_block_size=self.project.max_block_size)
        except NotReady as exc:
            log.warning("real-time index not built: %s", exc)
            return
        finally:
            cur.close()
        # Scoring processes are forked from the new index before anyone changes it; the
        # old ones answer what they were sent, then stop.
        old, self.pool = self.pool, (ResolvePool(index, self.options.resolve_processes)
                                     if self.options.resolve_processes > 0 else None)
        self._state = _State(index, model.version)
        if old is not None:
            old.close()
        log.info("real-time index: %d records in %.1f s", index.n, time.monotonic() - t0)

    def _after_publish(self) -> None:
        if self.snapshots is not None:
            self.snapshots.request()
        self._load_index()
        if self._state.index is not None:
            if self.enroller is None:
                self.enroller = self._new_enroller(self._state.index)
            else:
                self.enroller.reload(self._state.index)
        self._notify()

    def wake_followers(self) -> None:
        """Wake every change-feed follower to re-check its client (a call ended)."""
        with self._changes:
            self._changes.notify_all()

    def _notify(self) -> None:
        if self.snapshots is not None:
            self.snapshots.changed()
        last = self._read(lookup.last_seq)  # once per commit, for every follower
        with self._changes:
            self._last_seq = last
            self._changes.notify_all()

    @property
    def index(self) -> Index:
        if self._state.index is None:
            raise NotReady("no model yet: run a batch first (`linkage run` or StartRun)")
        return self._state.index

    @property
    def model_version(self) -> str:
        return self._state.model_version or ""

    # ------------------------------------------------------------------ standardise

    def standardise(self, person: PersonInput, source: str = "api") -> dict[str, Any]:
        """Standardise a person's details like a roster row, or :class:`InvalidRequest`."""
        from linkage.standardise import RejectError, StandardiseOptions, standardise

        country = self.project.country_code
        try:
            country = self.project.source(source).country_code or country
        except KeyError:
            pass
        raw = {k: v for k, v in person.raw.items() if v is not None and str(v).strip()}
        declared = {f.raw_field for f in self.project.extra_fields}
        unknown = sorted(k for k in raw if k.startswith("extra.") and k not in declared)
        if unknown:
            raise InvalidRequest([(f"person.{unknown[0]}", "not an extra field of this project "
                                   f"(declared: {', '.join(sorted(declared)) or 'none'})")])
        if "age" in raw and person.age_reference_date is None:
            raise InvalidRequest([("person.age.reference_date", "required with an age")])
        options = StandardiseOptions(
            source=source, birth_date_format="%Y-%m-%d",
            age_reference_date=person.age_reference_date, country_code=country,
            sex_codes=None, name_order=person.name_order,
            min_birth_year=self.project.min_birth_year,
            extra_fields=self.project.extra_fields)
        try:
            # No warnings list: strict, a bad field is an error naming it (batch ingest is
            # lenient and blanks the field instead).
            return standardise(raw, options)
        except RejectError as exc:
            raise InvalidRequest([(FIELD_PATHS.get(exc.field, f"person.{exc.field}"),
                                   exc.reason)]) from None
        except ValueError as exc:  # a configuration-like problem with the input
            raise InvalidRequest([("person", str(exc))]) from None

    # ------------------------------------------------------------------ calls

    def resolve(self, person: PersonInput, *, max_candidates: int = 0,
                min_probability: float | None = None, timeout: float | None = None
                ) -> Resolution:
        """Candidate persons for the details, best first. Nothing is stored.

        With scoring processes (``resolve_processes``), scored in one of them; ``timeout``
        bounds the wait for its answer (:class:`TimeoutError`)."""
        if max_candidates < 0 or max_candidates > self.options.max_candidates:
            raise InvalidRequest([("max_candidates",
                                   f"must be between 0 and {self.options.max_candidates}")])
        if min_probability is not None and not 0.0 <= min_probability <= 1.0:
            raise InvalidRequest([("min_match_probability", "must be between 0 and 1")])
        row = self.standardise(person)
        index, pool = self.index, self.pool
        wanted = max_candidates or self.options.default_candidates
        floor = self.project.thresholds.review if min_probability is None else min_probability
        if pool is not None and pool.index is index:
            res = pool.resolve(row, max_candidates=wanted, min_probability=floor,
                               timeout=timeout)
        else:
            res = index.resolve(row, max_candidates=wanted, min_probability=floor)
        for c in res.candidates:  # whom each candidate ID names, from memory
            text = index.golden.get(c.person_id)
            c.golden = GoldenRecord.from_json(text) if text else None
        return res

    def prepare_enrol(self, source: str, record_key: str, person: PersonInput) -> EnrolItem:
        """Validate and standardise one record for enrolment."""
        problems = []
        if not source:
            problems.append(("source", "required"))
        if not record_key or not record_key.strip():
            problems.append(("record_key", "required"))
        elif ":" in source:
            problems.append(("source", "must not contain ':'"))
        if problems:
            raise InvalidRequest(problems)
        # On this request thread: source_known reads the sources table with its own cursor
        # and leaves the writer's state alone (reloading it here once reset the ID
        # allocator under an open enrolment group: issue 13).
        if not self._enroller().source_known(source):
            raise InvalidRequest([("source", "unknown source: not configured in the "
                                             "project nor in the register")])
        row = self.standardise(person, source)
        raw = {k: v for k, v in person.raw.items() if v is not None and str(v).strip()}
        if person.age_reference_date is not None and "age" in raw:
            raw["age_reference_date"] = person.age_reference_date.isoformat()
        return EnrolItem(source, record_key.strip(), raw, row)

    def _enroller(self) -> Enroller:
        if self.enroller is None:
            raise NotReady("no model yet: run a batch first (`linkage run` or StartRun)")
        return self.enroller

    def enrol(self, item: EnrolItem, *, timeout: float | None = None) -> EnrolResult:
        """Enrol one prepared record; QUEUED when a batch holds the register past the wait."""
        enroller = self._enroller()
        return self._outcome(enroller, item, enroller.submit(item), self._wait(timeout))

    @staticmethod
    def _outcome(enroller: Enroller, item: EnrolItem, fut: Future[EnrolResult],
                 wait: float) -> EnrolResult:
        """The record's result within ``wait``, else QUEUED once it is journaled."""
        try:
            return fut.result(timeout=wait)
        except FutureTimeout:
            if enroller.journal(item):
                return EnrolResult(item.uid, None, QUEUED)
            return fut.result()  # the writer has it: its group is committing

    def _wait(self, remaining: float | None) -> float:
        """How long a caller waits for its enrolment before hearing QUEUED.

        Behind a batch run: ``enrol_wait`` at most. Otherwise the writer is only busy
        with other enrolments, so wait for it up to the call's deadline (or a minute).
        """
        if self.batch.running:
            wait = self.options.enrol_wait
        else:
            wait = 60.0
        if remaining is not None:
            wait = min(wait, remaining)
        return max(wait, 0.0)

    def enrol_many(self, items: Iterator[EnrolItem | InvalidRequest], *,
                   deadline: Callable[[], float | None] = lambda: None
                   ) -> list[EnrolResult | InvalidRequest]:
        """Enrol a stream of records; invalid ones come back as their error, in place."""
        enroller = self._enroller()
        pending: list[Any] = []
        for it in items:
            pending.append(it if isinstance(it, InvalidRequest) else (it, enroller.submit(it)))
        out: list[EnrolResult | InvalidRequest] = []
        for p in pending:
            if isinstance(p, InvalidRequest):
                out.append(p)
                continue
            item, fut = p
            out.append(self._outcome(enroller, item, fut, self._wait(deadline())))
        return out

    def person(self, pid: str) -> lookup.PersonView:
        pid = lookup.normalise_person_id(pid)
        return self._read(lambda cur: lookup.person(cur, pid))

    def person_by_record(self, source: str, record_key: str) -> lookup.PersonView:
        problems = [(f"record.{n}", "required") for n, v in
                    (("source", source), ("record_key", record_key)) if not v]
        if problems:
            raise InvalidRequest(problems)
        return self._read(lambda cur: lookup.person_by_record(cur, source, record_key))

    def find_by_identifier(self, kind: str, value: str, *, programme: str = "",
                           source: str = "") -> list[lookup.PersonView]:
        """The live persons an identifier names (DCI ``{type, value}``).

        ``kind``: a national-ID type (``UIN``, ``NID``, ``NATIONAL_ID``: matched as ingest
        standardises national IDs), ``BENEFICIARY_ID`` (the record key in a programme's
        roster; ``programme`` by label or source name) or ``RECORD_KEY`` (any source's
        record key; ``source``). Raises :class:`NotFound` when no live person has it.
        """
        from linkage.standardise.ids import clean_national_id

        kind = kind.strip().upper()
        value = value.strip()
        problems = []
        if not kind:
            problems.append(("identifier.type", "required"))
        elif kind not in (*NATIONAL_ID_TYPES, BENEFICIARY_ID, RECORD_KEY):
            problems.append(("identifier.type", "unsupported identifier type (supported: "
                                                "UIN, NID, NATIONAL_ID, BENEFICIARY_ID, "
                                                "RECORD_KEY)"))
        if not value:
            problems.append(("identifier.value", "required"))
        if kind == BENEFICIARY_ID and not programme.strip():
            problems.append(("programme", "required with BENEFICIARY_ID"))
        if kind == RECORD_KEY and not source.strip():
            problems.append(("source", "required with RECORD_KEY"))
        if problems:
            raise InvalidRequest(problems)

        index = self._state.index

        def find(cur: Any) -> list[lookup.PersonView]:
            if kind in NATIONAL_ID_TYPES:
                nid = clean_national_id(value)
                if nid is None:
                    raise InvalidRequest([("identifier.value", "not a national ID")])
                # The index holds every live record and is kept current by enrolment
                # and publishing: a look-up there, where the register has no index on
                # the column and would scan every record (issue 15).
                pids = (index.persons_with_national_id(nid) if index is not None else
                        lookup.persons_of_records(cur, "r.national_id = ?", [nid]))
            else:
                if kind == BENEFICIARY_ID:
                    sources = lookup.programme_sources(cur, programme.strip())
                    if not sources:
                        raise NotFound("no programme of that name or source")
                else:
                    if not lookup.source_exists(cur, source.strip()):
                        raise NotFound("no source of that name")
                    sources = [source.strip()]
                uids = [f"{s}:{value}" for s in sources]
                pids = lookup.persons_of_records(cur, "list_contains(?, r.uid)", [uids])
            views = []
            for p in pids:
                try:
                    views.append(lookup.person(cur, p, lineage_limit=0))
                except NotFound:  # enrolled in the index, its group not committed yet
                    continue
            if not views:
                raise NotFound("no person holds that identifier")
            return views

        return self._read(find)

    def persons(self, person_ids: list[str], *, lineage: bool = False
                ) -> list[tuple[str, lookup.PersonView | None]]:
        """Several persons by ID, in the order asked: ``(normalised ID, view or None when
        never issued)``; malformed IDs are :class:`InvalidRequest` naming each."""
        cap = self.options.max_persons_per_call
        if not person_ids:
            raise InvalidRequest([("person_ids", "required: at least one person ID")])
        if len(person_ids) > cap:
            raise InvalidRequest([("person_ids", f"at most {cap} person IDs per call "
                                                 f"(got {len(person_ids)})")])
        ids, problems = [], []
        for i, pid in enumerate(person_ids):
            try:
                ids.append(lookup.normalise_person_id(pid, f"person_ids[{i}]"))
            except InvalidRequest as exc:
                problems += exc.violations
        if problems:
            raise InvalidRequest(problems)

        def get(cur: Any) -> list[tuple[str, lookup.PersonView | None]]:
            out: list[tuple[str, lookup.PersonView | None]] = []
            for pid in ids:
                try:
                    out.append((pid, lookup.person(cur, pid,
                                                   lineage_limit=1000 if lineage else 0)))
                except NotFound:
                    out.append((pid, None))
            return out

        return self._read(get)

    def programme_persons(self, programme: str, *, page_size: int = 0,
                          page_token: str = "") -> PersonsPage:
        """One page of the persons of a programme (label or source name), by person ID."""
        programme = programme.strip()
        if not programme:
            raise InvalidRequest([("programme", "required")])
        size = pages.page_size(page_size, self.options.max_page_size)
        query_fields = {"programme": programme.lower()}
        after = (pages.decode(page_token, "programme_persons", query_fields)
                 if page_token else "")
        if not isinstance(after, str):
            raise InvalidRequest([("page_token", "not a page token of this listing")])

        def page(cur: Any) -> PersonsPage:
            sources = lookup.programme_sources(cur, programme)
            if not sources:
                raise NotFound("no programme of that name or source")
            members = lookup.programme_members(cur, sources, after=after, limit=size + 1)
            more = len(members) > size
            members = members[:size]
            token = (pages.encode("programme_persons", query_fields, members[-1].person_id)
                     if more else "")
            return PersonsPage(members, token)

        return self._read(page)

    def changes(self, after_seq: int = 0, *, page_size: int = 0,
                page_token: str = "") -> ChangesPage:
        """One page of the change feed after the cursor (or the token's position)."""
        if after_seq < 0:
            raise InvalidRequest([("after_seq", "must not be negative")])
        size = pages.page_size(page_size, self.options.max_page_size)
        query_fields = {"after_seq": after_seq}
        start = after_seq
        if page_token:
            start = pages.decode(page_token, "changes", query_fields)
            if not isinstance(start, int) or start < after_seq:
                raise InvalidRequest([("page_token", "not a page token of this listing")])
        events = self.events_after(start, size + 1)
        more = len(events) > size
        events = events[:size]
        last = events[-1].seq if events else start
        return ChangesPage(events, pages.encode("changes", query_fields, last) if more else "",
                           last)

    def events_after(self, after_seq: int, limit: int = 1000) -> list[lookup.EventRow]:
        if after_seq < 0:
            raise InvalidRequest([("after_seq", "must not be negative")])
        return self._read(lambda cur: lookup.events_after(cur, after_seq, limit))

    def watch(self, after_seq: int, *, follow: bool, max_events: int = 0,
              is_active: Callable[[], bool] = lambda: True) -> Iterator[lookup.EventRow]:
        """Events after the cursor; with ``follow``, waits for new ones until inactive."""
        if max_events < 0:
            raise InvalidRequest([("max_events", "must not be negative")])
        sent = 0
        seq = after_seq
        read_at = 0.0
        while is_active():
            read_at = time.monotonic()
            batch = self.events_after(seq, 1000)
            for ev in batch:
                yield ev
                seq = ev.seq
                sent += 1
                if max_events and sent >= max_events:
                    return
            if len(batch) == 1000:
                continue
            if not follow:
                return
            # Sleep until a commit moves the feed's cursor past ours: an idle follower
            # reads nothing. The timeout re-checks is_active; every resync seconds the
            # feed is read anyway, in case a writer outside this core added events.
            while is_active():
                with self._changes:
                    moved = self._changes.wait_for(
                        lambda s=seq: self._last_seq > s,  # type: ignore[misc]
                        self.options.event_poll)
                if moved or time.monotonic() - read_at >= self.options.event_resync:
                    break

    def start_run(self, *, force_ingest: bool = False, retrain: bool = False,
                  accept_changes: bool = False) -> RunInfo:
        return self.batch.start(force_ingest=force_ingest, retrain=retrain,
                                accept_changes=accept_changes)

    def get_run(self, run_id: str = "") -> RunInfo:
        return self.batch.get(run_id)

    def _read(self, fn: Callable[[Any], Any]) -> Any:
        cur = self.register.cursor()
        try:
            return fn(cur)
        finally:
            cur.close()

    def stats(self) -> dict[str, Any]:
        (n,) = self._read(lambda cur: query(cur, "SELECT count(*) FROM person_records"))[0]
        return {"records_assigned": n, "indexed": self._state.index.n if self._state.index
                else 0, "pending_enrolments": self.enroller.pending if self.enroller else 0}

    def close(self, timeout: float = 30.0) -> None:
        """Apply queued enrolments and close the register (if opened here)."""
        if self.enroller is not None:
            self.enroller.close(timeout)
        for close in self.closers:
            close()
        if self.pool is not None:
            self.pool.close(timeout=min(timeout, 2.0))
        if self.snapshots is not None:
            self.snapshots.close()
        if self._own:
            if self.batch.running:
                log.warning("closing while a batch run is going: it is abandoned, "
                            "the published register is unchanged")
            self.register.close()


__all__ = ["FIELD_PATHS", "NotFound", "PersonInput", "Realtime", "RealtimeOptions"]
