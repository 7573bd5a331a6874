"""The linkage.v1 ReviewService: convert the request, call the review core, convert back.

The core is :class:`linkage.review.core.Review` (``Realtime.review``, sharing the serving
process's write lock and real-time index). As in :mod:`linkage.service.servicer`, errors
are :mod:`linkage.errors` kinds mapped to status codes by the interceptor; every request's
strings are first held to the service limits.
"""

from __future__ import annotations

import grpc

from linkage.errors import InvalidRequest
from linkage.realtime.explain import blocking_line
from linkage.realtime.index import PairExplanation
from linkage.review.core import Review
from linkage.review.decide import Decision
from linkage.review.evidence import DecisionRow, Filters, Item, ItemView
from linkage.service import convert
from linkage.service.limits import ServiceLimits, check_strings
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

_DECISIONS = {pb.REVIEW_DECISION_KIND_SAME: "same", pb.REVIEW_DECISION_KIND_NOT_SAME: "not_same",
              pb.REVIEW_DECISION_KIND_TAKE_OUT: "take_out", pb.REVIEW_DECISION_KIND_DEFER: "defer"}
_DECISION_KINDS = {v: k for k, v in _DECISIONS.items()}


def _uid(ref: pb.RecordRef, field: str, *, required: bool = True) -> str:
    if not ref.source and not ref.record_key:
        if required:
            raise InvalidRequest([(field, "required")])
        return ""
    problems = [(f"{field}.{n}", "required") for n, v in
                (("source", ref.source), ("record_key", ref.record_key)) if not v]
    if problems:
        raise InvalidRequest(problems)
    return f"{ref.source}:{ref.record_key}"


def item(it: Item) -> pb.ReviewItem:
    msg = pb.ReviewItem(
        item_id=it.item_id, kind=it.kind, reasons=it.reasons, record_a=convert.record_ref(it.uid_a),
        record_b=convert.record_ref(it.uid_b), person_id=it.person_id or "",
        records=[convert.record_ref(u) for u in it.record_uids], priority=it.priority,
        programmes=it.programmes, area=it.area or "", status=it.status,
        created_at=convert.timestamp(it.created_at), created_by=it.created_by)
    if it.match_probability is not None:
        msg.match_probability = it.match_probability
    return msg


def explanation(ex: PairExplanation, batch: float | None = None) -> pb.PairExplanation:
    msg = pb.PairExplanation(
        record_a=convert.record_ref(ex.uid_l), record_b=convert.record_ref(ex.uid_r),
        prior_weight=ex.prior_weight, match_weight=ex.match_weight,
        match_probability=ex.match_probability, compared=ex.compared,
        shared_blocking_keys=ex.shared_keys, capped_blocking_keys=ex.capped_keys,
        blocking_summary=blocking_line(ex),
        steps=[pb.WaterfallStep(comparison=e.comparison, level=e.level, level_label=e.label,
                                match_weight=e.weight, tf_adjustment=e.tf_adjustment)
               for e in ex.evidence])
    if batch is not None:
        msg.batch_match_probability = batch
    return msg


def _constraints(pairs: list) -> list[pb.ReviewConstraint]:
    return [pb.ReviewConstraint(record_a=convert.record_ref(a), record_b=convert.record_ref(b),
                                kind=k) for a, b, k in pairs]


def decision(d: Decision) -> pb.ReviewDecision:
    return pb.ReviewDecision(
        decision_id=d.decision_id, item_id=d.item_id, decision=_DECISION_KINDS[d.decision],
        record=convert.record_ref(d.record_uid), reviewer=d.reviewer,
        decided_at=convert.timestamp(d.decided_at), comment=d.comment or "",
        revokes=d.revokes or "", constraints=_constraints(d.constraints),
        id_events=d.events, persons=d.persons)


def _decision_row(item_id: str, d: DecisionRow) -> pb.ReviewDecision:
    return pb.ReviewDecision(
        decision_id=d.decision_id, item_id=item_id, decision=_DECISION_KINDS[d.decision],
        record=convert.record_ref(d.record_uid), reviewer=d.reviewer,
        decided_at=convert.timestamp(d.decided_at), comment=d.comment or "",
        revokes=d.revokes or "", constraints=_constraints(d.constraints))


def evidence(view: ItemView) -> pb.ReviewItemEvidence:
    def batch(ex: PairExplanation) -> float | None:
        bp = view.batch_probability
        return bp.get((ex.uid_l, ex.uid_r), bp.get((ex.uid_r, ex.uid_l)))

    return pb.ReviewItemEvidence(
        item=item(view.item),
        records=[pb.ReviewRecord(
            record=convert.record_ref(r.uid), programme=r.programme or "",
            source_kind=r.source_kind or "", person_id=r.person_id or "", status=r.status,
            raw={k: "" if v is None else str(v) for k, v in r.raw.items()},
            standardised={k: str(v) for k, v in r.standardised.items() if v is not None},
            extra={k[2:]: str(v) for k, v in r.standardised.items()
                   if v is not None and k.startswith("x_") and "__" not in k})
            for r in view.records],
        pairs=[explanation(ex, batch(ex)) for ex in view.pairs],
        persons=[pb.PersonHistory(person_id=p, events=[convert.event(e) for e in evs])
                 for p, evs in view.histories.items()],
        other_candidates=[pb.OtherCandidate(
            record=convert.record_ref(c.uid), other=convert.record_ref(c.other_uid),
            other_person_id=c.other_person_id or "", match_probability=c.match_probability,
            linked=c.linked) for c in view.candidates],
        decisions=[_decision_row(view.item.item_id, d) for d in view.decisions])


class ReviewServicer(pb_grpc.ReviewServiceServicer):
    """The review queue: list, get with evidence, decide, explain any pair."""

    def __init__(self, core: Review, limits: ServiceLimits | None = None):
        self.core = core
        self.limits = limits or ServiceLimits()

    def ListReviewItems(self, request: pb.ListReviewItemsRequest,
                        context: grpc.ServicerContext) -> pb.ListReviewItemsResponse:
        check_strings(request, self.limits)
        status = request.status or "open"
        filters = Filters(status="" if status == "all" else status, kind=request.kind,
                          programme=request.programme, area=request.area,
                          min_priority=(request.min_priority
                                        if request.HasField("min_priority") else None))
        items, token, total = self.core.list(filters, page_size=request.page_size,
                                             page_token=request.page_token)
        return pb.ListReviewItemsResponse(items=[item(i) for i in items],
                                          next_page_token=token, total_size=total)

    def GetReviewItem(self, request: pb.GetReviewItemRequest, context: grpc.ServicerContext
                      ) -> pb.ReviewItemEvidence:
        check_strings(request, self.limits)
        return evidence(self.core.get(request.item_id, viewer=request.viewer, surface="grpc"))

    def DecideReviewItem(self, request: pb.DecideReviewItemRequest,
                         context: grpc.ServicerContext) -> pb.ReviewDecision:
        check_strings(request, self.limits)
        kind = _DECISIONS.get(request.decision)
        if kind is None:
            raise InvalidRequest([("decision", "required: SAME, NOT_SAME, TAKE_OUT or DEFER")])
        return decision(self.core.decide(
            request.item_id, kind, reviewer=request.reviewer, comment=request.comment,
            record_uid=_uid(request.record, "record", required=False)))

    def ExplainPair(self, request: pb.ExplainPairRequest, context: grpc.ServicerContext
                    ) -> pb.PairExplanation:
        check_strings(request, self.limits)
        problems: list[tuple[str, str]] = []
        uids = []
        for name in ("record_a", "record_b"):
            try:
                uids.append(_uid(getattr(request, name), name))
            except InvalidRequest as exc:
                problems += exc.violations
        if problems:
            raise InvalidRequest(problems)
        return explanation(self.core.explain(*uids))
