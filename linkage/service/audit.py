"""The audit trail: who read or wrote whose data, when, through which call, and how it ended.

Every call of :data:`AUDITED` gets one row in the register's append-only ``audit_log``
(:func:`linkage.register.store.append_audit`): the client (token name and ID, or open
mode, or ``unauthenticated``), its role, the method, the outcome (gRPC status name:
refused calls are recorded too), the person IDs and record keys (``<source>:<key>``) the
call read or wrote, and a detail of counts. Request contents (names, dates, phones) are
never stored here: IDs and keys only. A long ``WatchChanges`` stream writes a row per
:data:`EVENTS_PER_ROW` events.

Rows are queued and written by one background thread (:class:`AuditTrail`), so a call
never waits on the register; :meth:`AuditTrail.close` writes what is queued.

``linkage audit`` (:func:`query_audit`) reads them by person, client or time.
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from linkage.register import store
from linkage.register.database import Register, query
from linkage.service import auth

log = logging.getLogger(__name__)

EVENTS_PER_ROW = 1000

_LS, _BS = "/linkage.v1.LinkageService/", "/linkage.v1.BatchService/"
_AS = "/linkage.v1.AdminService/"
_RS = "/linkage.v1.ReviewService/"


class _Call:
    """What one call touched, filled in as it goes."""

    __slots__ = ("keys", "method", "persons", "principal", "n")

    def __init__(self, method: str):
        self.method = method
        self.principal: auth.Principal | None = None
        self.persons: list[str] = []
        self.keys: list[str] = []
        self.n = 0


#: The call being served (set by :class:`AuditCalls`; :class:`~linkage.service.auth.Authorise`
#: records its principal on it).
CALL = auth.CALL


def _uid(ref: Any) -> str:
    return f"{ref.source}:{ref.record_key}"


def _person(call: _Call, request: Any, response: Any) -> None:
    if getattr(request, "person_id", ""):
        call.persons.append(request.person_id)
    if response is not None:
        call.persons += [response.person_id, *response.successor_ids]
        call.keys += [_uid(r.record) for r in response.records]


def _by_record(call: _Call, request: Any, response: Any) -> None:
    call.keys.append(_uid(request.record))
    if response is not None:
        _person(call, None, response)


def _resolve(call: _Call, request: Any, response: Any) -> None:
    if response is not None:
        call.persons += [c.person_id for c in response.candidates]


def _enrol(call: _Call, request: Any, response: Any) -> None:
    call.keys.append(f"{request.source}:{request.record_key}")
    if response is not None and response.person_id:
        call.persons.append(response.person_id)


def _enrol_batch(call: _Call, request: Any, response: Any) -> None:
    if response is not None:  # keys were taken from the stream as it was read
        call.persons += [r.person_id for r in response.results if r.person_id]


def _programmes(call: _Call, request: Any, response: Any) -> None:
    call.persons.append(request.person_id)


def _start_run(call: _Call, request: Any, response: Any) -> None:
    pass  # no personal data, but it rewrites the register: who started it is kept


def _find(call: _Call, request: Any, response: Any) -> None:
    # The identifier itself may be personal (a national ID): its type only.
    call.keys.append(f"identifier:{request.identifier.type}")
    if response is not None:
        for p in response.persons:
            _person(call, None, p)


def _persons(call: _Call, request: Any, response: Any) -> None:
    call.persons += list(request.person_ids)
    if response is not None:
        for r in response.results:
            if r.found:
                _person(call, None, r.person)


def _programme_persons(call: _Call, request: Any, response: Any) -> None:
    if response is not None:
        for m in response.members:
            call.persons.append(m.person_id)
            call.keys += [_uid(r) for r in m.records]


def _changes(call: _Call, request: Any, response: Any) -> None:
    if response is not None:
        call.persons += [e.person_id for e in response.events if e.person_id]


def _review_item(call: _Call, request: Any, response: Any) -> None:
    # An item shows (GetReviewItem) or changes (DecideReviewItem) records and persons.
    call.keys.append(f"review:{request.item_id}")
    if response is not None:
        call.keys += [_uid(r.record) for r in getattr(response, "records", ())]
        call.persons += [r.person_id for r in getattr(response, "records", ()) if r.person_id]
        if hasattr(response, "decision_id") or not hasattr(response, "records"):
            # a decision: persons is a map record -> its person after the decision
            call.keys += list(response.persons.keys())
            call.persons += list(response.persons.values())


def _explain_pair(call: _Call, request: Any, response: Any) -> None:
    call.keys += [_uid(request.record_a), _uid(request.record_b)]


def _review_list(call: _Call, request: Any, response: Any) -> None:
    if response is not None:
        call.keys += [f"review:{i.item_id}" for i in response.items]


def _token(call: _Call, request: Any, response: Any) -> None:
    # No personal data either; who issued or revoked which token is kept (by token ID).
    token_id = getattr(request, "token_id", "") or (
        response.token_info.token_id if response is not None else "")
    call.keys.append(f"token:{token_id}" if token_id else "token:")


#: Method -> what it touched, from (request, response or None). Not listed: not audited
#: (GetRun and WatchRun carry no personal data; health and reflection neither).
AUDITED: dict[str, Callable[[_Call, Any, Any], None]] = {
    _LS + "Resolve": _resolve,
    _LS + "Enrol": _enrol,
    _LS + "EnrolBatch": _enrol_batch,
    _LS + "GetPerson": _person,
    _LS + "GetPersonByRecord": _by_record,
    _LS + "ListProgrammes": _programmes,
    _LS + "WatchChanges": lambda call, request, event: None,  # per event, see AuditCalls
    _LS + "FindByIdentifier": _find,
    _LS + "GetPersons": _persons,
    _LS + "ListProgrammePersons": _programme_persons,
    _LS + "ListChanges": _changes,
    _BS + "StartRun": _start_run,
    _RS + "ListReviewItems": _review_list,
    _RS + "GetReviewItem": _review_item,
    _RS + "DecideReviewItem": _review_item,
    _RS + "ExplainPair": _explain_pair,
    _AS + "IssueToken": _token,
    _AS + "RevokeToken": _token,
}


class AuditTrail:
    """Queues audit rows and writes them to the register from one thread."""

    def __init__(self, register: Register, *, interval: float = 0.2,
                 on_write: Callable[[], None] | None = None):
        self.register = register
        self.interval = interval
        self.on_write = on_write  # the served register's snapshot is due a refresh
        self._queue: queue.Queue[tuple | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._loop, name="linkage-audit", daemon=True)
        self._thread.start()

    def record(self, call: _Call, outcome: str, detail: str = "") -> None:
        who = call.principal
        client = "unauthenticated" if who is None else who.client
        role = None if who is None else who.role
        row = (dt.datetime.now(dt.UTC).replace(tzinfo=None), client, role,
               call.method.lstrip("/").split(".")[-1], outcome,
               list(dict.fromkeys(p for p in call.persons if p)),
               list(dict.fromkeys(call.keys)), detail or None)
        with self._idle:
            self._pending += 1
        self._queue.put(row)

    def note(self, principal: auth.Principal | None, method: str, outcome: str, *,
             persons: list[str] = (), keys: list[str] = (), detail: str = "") -> None:  # type: ignore[assignment]
        """A row for something done outside gRPC (the reviewers' web page: ``method``
        such as ``web/Login``), in the same table and form."""
        call = _Call(method)
        call.principal = principal
        call.persons.extend(persons)
        call.keys.extend(keys)
        self.record(call, outcome, detail)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued row is written."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stop = False
        while not stop:
            rows = []
            item = self._queue.get()
            while True:
                if item is None:
                    stop = True
                else:
                    rows.append(item)
                try:
                    item = self._queue.get(timeout=self.interval if not stop else 0)
                except queue.Empty:
                    break
                if len(rows) >= 500:
                    self._queue.put(item)  # keep it for the next group
                    break
            if rows:
                try:
                    with self.register.transaction() as cur:
                        store.append_audit(cur, rows)
                    if self.on_write is not None:
                        self.on_write()
                except Exception:  # noqa: BLE001 - never take the server down
                    log.exception("could not write %d audit row(s)", len(rows))
            with self._idle:
                self._pending -= len(rows)
                self._idle.notify_all()


class AuditCalls(grpc.ServerInterceptor):
    """Writes an audit row for every call of :data:`AUDITED`, refused ones included.

    Sits between :class:`linkage.service.server.ExceptionToStatus` (outside) and
    :class:`~linkage.service.auth.Authorise` (inside), so it sees the domain exception a
    call ended with; ``outcome`` names its status code.
    """

    def __init__(self, trail: AuditTrail, outcome: Callable[[Exception], str]):
        self.trail = trail
        self.outcome = outcome

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method not in AUDITED:
            return handler
        touched = AUDITED[method]
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, method,
                                                            touched, False))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._unary(handler.stream_unary, method,
                                                             touched, True))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._events(handler.unary_stream, method))
        return handler

    def _unary(self, fn: Callable, method: str, touched: Callable, streaming: bool
               ) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            call = _Call(method)
            reset = CALL.set(call)
            try:
                if streaming:
                    request = self._keys_of_stream(call, request)
                response = fn(request, context)
            except Exception as exc:
                touched(call, request if not streaming else None, None)
                self.trail.record(call, self.outcome(exc))
                raise
            finally:
                CALL.reset(reset)
            touched(call, request if not streaming else None, response)
            self.trail.record(call, "OK", f"{call.n} record(s)" if streaming else "")
            return response

        return wrapper

    @staticmethod
    def _keys_of_stream(call: _Call, messages: Iterator[Any]) -> Iterator[Any]:
        for m in messages:
            for r in m.records:
                call.keys.append(f"{r.source}:{r.record_key}")
                call.n += 1
            yield m

    def _events(self, fn: Callable, method: str) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            call = _Call(method)
            reset = CALL.set(call)
            first = last = None
            outcome, written = "OK", False
            try:
                for event in fn(request, context):
                    call.persons.append(event.person_id)
                    if event.other_person_id:
                        call.persons.append(event.other_person_id)
                    call.n += 1
                    first = event.seq if first is None else first
                    last = event.seq
                    written = call.n % EVENTS_PER_ROW == 0
                    if written:
                        self._events_row(call, "OK", first, last)
                        first = None
                    yield event
            except GeneratorExit:
                outcome, written = "CANCELLED", False
                raise
            except Exception as exc:
                outcome, written = self.outcome(exc), False
                raise
            finally:
                if not written or outcome != "OK":
                    self._events_row(call, outcome, first, last)
                try:
                    CALL.reset(reset)
                except ValueError:
                    pass

        return wrapper

    def _events_row(self, call: _Call, outcome: str, first: int | None, last: int | None
                    ) -> None:
        detail = f"events seq {first}..{last}" if first is not None else "no events"
        self.trail.record(call, outcome, detail)
        call.persons = []


def query_audit(register: Register, *, person_id: str | None = None,
                client: str | None = None, since: dt.datetime | None = None,
                until: dt.datetime | None = None, limit: int = 1000) -> list[tuple]:
    """Audit rows, newest first, filtered by person ID, client (token ID or a part of
    its name) and time; every filter is a bound parameter."""
    where, params = [], []
    if person_id:
        where.append("list_contains(person_ids, ?)")
        params.append(person_id)
    if client:
        where.append("(contains(client, ?))")
        params.append(client)
    if since:
        where.append("called_at >= ?")
        params.append(since)
    if until:
        where.append("called_at < ?")
        params.append(until)
    sql = ("SELECT seq, called_at, client, role, method, outcome, person_ids, record_keys, "
           "detail FROM audit_log" + (" WHERE " + " AND ".join(where) if where else "")
           + " ORDER BY seq DESC LIMIT ?")
    cur = register.cursor()
    try:
        return query(cur, sql, [*params, limit])
    finally:
        cur.close()
