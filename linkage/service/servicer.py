"""The linkage.v1 servicers: convert the request, call the core, convert back.

No error handling here: the core raises domain exceptions (:mod:`linkage.errors`) and
:class:`linkage.service.server.ExceptionToStatus` maps them to status codes. Every
request's string fields are first held to :class:`linkage.service.limits.ServiceLimits`
(length, no control characters), so nothing malformed reaches the core or the register.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from linkage.errors import InvalidRequest, NotFound
from linkage.realtime.core import Realtime
from linkage.service import convert
from linkage.service.auth import TokenBook
from linkage.service.limits import (
    ENROL_BATCH_COUNTERS_BYTES,
    RequestTooLarge,
    ServiceLimits,
    check_strings,
    clip,
    enrol_result_bytes,
)
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc


def _timeout(context: grpc.ServicerContext, margin: float = 0.1) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else max(remaining - margin, 0.0)


def _require(request: object, field: str) -> None:
    if not request.HasField(field):  # type: ignore[attr-defined]
        raise InvalidRequest([(field, "required")])


class LinkageServicer(pb_grpc.LinkageServiceServicer):
    """Resolve, enrol, persons and the change feed."""

    def __init__(self, core: Realtime, limits: ServiceLimits | None = None):
        self.core = core
        self.limits = limits or ServiceLimits()

    def Resolve(self, request: pb.ResolveRequest, context: grpc.ServicerContext
                ) -> pb.ResolveResponse:
        check_strings(request, self.limits)
        _require(request, "person")
        person = convert.person_input(request.person)
        res = self.core.resolve(
            person, max_candidates=request.max_candidates,
            min_probability=(request.min_match_probability
                             if request.HasField("min_match_probability") else None),
            timeout=_timeout(context))
        return convert.resolve_response(res, model_version=self.core.model_version,
                                        match_threshold=self.core.project.thresholds.match)

    def _prepare(self, request: pb.EnrolRequest):  # noqa: ANN202 - EnrolItem
        check_strings(request, self.limits)
        _require(request, "person")
        return self.core.prepare_enrol(request.source, request.record_key,
                                       convert.person_input(request.person))

    def Enrol(self, request: pb.EnrolRequest, context: grpc.ServicerContext
              ) -> pb.EnrolResponse:
        item = self._prepare(request)
        return convert.enrol_response(self.core.enrol(item, timeout=_timeout(context)))

    def EnrolBatch(self, request_iterator: Iterator[pb.EnrolBatchRequest],
                   context: grpc.ServicerContext) -> pb.EnrolBatchResponse:
        """Reads and validates the whole stream, then enrols it: a stream refused as a
        whole (an undecodable message, over the record cap or the response size, the
        client gone) enrols nothing. Bad records are REJECTED one by one."""
        lim = self.limits
        keys: list[str] = []
        items: list = []
        size = ENROL_BATCH_COUNTERS_BYTES
        for message in request_iterator:
            if len(keys) + len(message.records) > lim.max_records_per_stream:
                raise RequestTooLarge(
                    f"EnrolBatch stream over the limit of {lim.max_records_per_stream:,} "
                    f"records: nothing was enrolled; send at most "
                    f"{lim.max_records_per_stream:,} records per stream")
            for req in message.records:
                key = clip(req.record_key, lim.max_field_chars)  # echoed in the result
                try:
                    item = self._prepare(req)
                    size += enrol_result_bytes(len(keys), key)
                except InvalidRequest as exc:
                    item = exc
                    size += enrol_result_bytes(len(keys), key, convert.rejection(exc, lim))
                keys.append(key)
                items.append(item)
            if size > lim.max_response_bytes:
                raise RequestTooLarge(
                    f"EnrolBatch response would exceed {lim.max_response_bytes:,} bytes "
                    f"after {len(keys):,} records (long record keys?): nothing was "
                    f"enrolled; send fewer records per stream")
        results = self.core.enrol_many(iter(items), deadline=lambda: _timeout(context))
        return convert.enrol_batch_response(results, keys, lim)

    def GetPerson(self, request: pb.GetPersonRequest, context: grpc.ServicerContext
                  ) -> pb.Person:
        check_strings(request, self.limits)
        return convert.person(self.core.person(request.person_id))

    def GetPersonByRecord(self, request: pb.GetPersonByRecordRequest,
                          context: grpc.ServicerContext) -> pb.Person:
        check_strings(request, self.limits)
        _require(request, "record")
        return convert.person(self.core.person_by_record(request.record.source,
                                                         request.record.record_key))

    def ListProgrammes(self, request: pb.ListProgrammesRequest, context: grpc.ServicerContext
                       ) -> pb.ListProgrammesResponse:
        check_strings(request, self.limits)
        return convert.programmes(self.core.person(request.person_id))

    def WatchChanges(self, request: pb.WatchChangesRequest, context: grpc.ServicerContext
                     ) -> Iterator[pb.PersonEvent]:
        # A follower sleeps until the feed moves: when the call ends (client gone,
        # shutdown), wake it so its thread is free at once.
        context.add_callback(self.core.wake_followers)
        for ev in self.core.watch(request.after_seq, follow=request.follow,
                                  max_events=request.max_events, is_active=context.is_active):
            yield convert.event(ev)

    def FindByIdentifier(self, request: pb.FindByIdentifierRequest,
                         context: grpc.ServicerContext) -> pb.FindByIdentifierResponse:
        check_strings(request, self.limits)
        _require(request, "identifier")
        found = self.core.find_by_identifier(request.identifier.type, request.identifier.value,
                                             programme=request.programme,
                                             source=request.source)
        return pb.FindByIdentifierResponse(persons=[convert.person(v) for v in found])

    def GetPersons(self, request: pb.GetPersonsRequest, context: grpc.ServicerContext
                   ) -> pb.GetPersonsResponse:
        check_strings(request, self.limits)
        return convert.persons(self.core.persons(list(request.person_ids),
                                                 lineage=request.include_lineage))

    def ListProgrammePersons(self, request: pb.ListProgrammePersonsRequest,
                             context: grpc.ServicerContext) -> pb.ListProgrammePersonsResponse:
        check_strings(request, self.limits)
        return convert.programme_persons(self.core.programme_persons(
            request.programme, page_size=request.page_size, page_token=request.page_token))

    def ListChanges(self, request: pb.ListChangesRequest, context: grpc.ServicerContext
                    ) -> pb.ListChangesResponse:
        check_strings(request, self.limits)
        return convert.changes(self.core.changes(request.after_seq, page_size=request.page_size,
                                                 page_token=request.page_token))


class BatchServicer(pb_grpc.BatchServiceServicer):
    """Start, inspect and follow batch runs."""

    def __init__(self, core: Realtime, limits: ServiceLimits | None = None):
        self.core = core
        self.limits = limits or ServiceLimits()

    def StartRun(self, request: pb.StartRunRequest, context: grpc.ServicerContext) -> pb.Run:
        return convert.run(self.core.start_run(force_ingest=request.force_ingest,
                                               retrain=request.retrain,
                                               accept_changes=request.accept_changes))

    def GetRun(self, request: pb.GetRunRequest, context: grpc.ServicerContext) -> pb.Run:
        check_strings(request, self.limits)
        return convert.run(self.core.get_run(request.run_id))

    def WatchRun(self, request: pb.WatchRunRequest, context: grpc.ServicerContext
                 ) -> Iterator[pb.RunProgress]:
        check_strings(request, self.limits)
        info = self.core.get_run(request.run_id)
        for line, elapsed, message, state in self.core.batch.follow(
                info.run_id, is_active=context.is_active):
            yield pb.RunProgress(run_id=info.run_id, line=line, message=message,
                                 elapsed_seconds=elapsed, state=convert._RUN_STATES[state])


class AdminServicer(pb_grpc.AdminServiceServicer):
    """API tokens while serving (the same :class:`TokenBook` the interceptor checks, so an
    issue or a revocation takes effect at once)."""

    def __init__(self, tokens: TokenBook, limits: ServiceLimits | None = None):
        self.tokens = tokens
        self.limits = limits or ServiceLimits()

    def _row(self, token_id: str):  # noqa: ANN202 - TokenRow
        return next(r for r in self.tokens.tokens() if r.token_id == token_id)

    def IssueToken(self, request: pb.IssueTokenRequest, context: grpc.ServicerContext
                   ) -> pb.IssueTokenResponse:
        check_strings(request, self.limits)
        token_id, token = self.tokens.issue(request.name, request.role,
                                            sources=list(request.sources))
        return pb.IssueTokenResponse(token_info=convert.api_token(self._row(token_id)),
                                     token=token)

    def ListTokens(self, request: pb.ListTokensRequest, context: grpc.ServicerContext
                   ) -> pb.ListTokensResponse:
        return pb.ListTokensResponse(tokens=[convert.api_token(r) for r in self.tokens.tokens()])

    def RevokeToken(self, request: pb.RevokeTokenRequest, context: grpc.ServicerContext
                    ) -> pb.ApiToken:
        check_strings(request, self.limits)
        if not self.tokens.revoke(request.token_id):
            raise NotFound("no live token with that ID")
        return convert.api_token(self._row(request.token_id))
