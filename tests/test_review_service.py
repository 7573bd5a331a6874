"""ReviewService end to end: a real server on a free loopback port, called via the stubs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.server import create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated


@dataclass
class Served:
    core: Realtime
    review: pb_grpc.ReviewServiceStub
    linkage: pb_grpc.LinkageServiceStub
    batch: pb_grpc.BatchServiceStub
    g: Generated


@pytest.fixture
def served(rv_project: Generated) -> Iterator[Served]:
    core = Realtime.open(rv_project.project, options=RealtimeOptions(enrol_wait=1.0))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield Served(core, pb_grpc.ReviewServiceStub(channel), pb_grpc.LinkageServiceStub(channel),
                     pb_grpc.BatchServiceStub(channel), rv_project)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def _uid(ref: pb.RecordRef) -> str:
    return f"{ref.source}:{ref.record_key}"


def _violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def _person(s: Served, ref: pb.RecordRef) -> str:
    return s.linkage.GetPersonByRecord(pb.GetPersonByRecordRequest(record=ref),
                                       timeout=10).person_id


def test_list_pages_through_the_queue_with_filters(served: Served) -> None:
    r = served.review
    first = r.ListReviewItems(pb.ListReviewItemsRequest(page_size=10), timeout=10)
    assert len(first.items) == 10 and first.next_page_token and first.total_size > 10
    seen = [i.item_id for i in first.items]
    token = first.next_page_token
    while token:
        page = r.ListReviewItems(pb.ListReviewItemsRequest(page_size=10, page_token=token),
                                 timeout=10)
        seen += [i.item_id for i in page.items]
        token = page.next_page_token
    assert len(seen) == len(set(seen)) == first.total_size
    persons = r.ListReviewItems(pb.ListReviewItemsRequest(kind="person", page_size=500),
                                timeout=10)
    assert persons.items and all(i.kind == "person" and i.person_id for i in persons.items)
    prog = next(p for i in first.items for p in i.programmes)
    by_prog = r.ListReviewItems(pb.ListReviewItemsRequest(programme=prog, page_size=500),
                                timeout=10)
    assert by_prog.items and all(prog in i.programmes for i in by_prog.items)
    high = r.ListReviewItems(pb.ListReviewItemsRequest(min_priority=90, page_size=500),
                             timeout=10)
    assert all(i.priority >= 90 for i in high.items) and high.total_size < first.total_size
    area = first.items[0].area
    by_area = r.ListReviewItems(pb.ListReviewItemsRequest(area=area, page_size=500), timeout=10)
    assert by_area.items and all(i.area == area for i in by_area.items)
    for bad, field in ((pb.ListReviewItemsRequest(page_token="garbage!"), "page_token"),
                       (pb.ListReviewItemsRequest(status="maybe"), "status"),
                       (pb.ListReviewItemsRequest(page_size=5000), "page_size")):
        with pytest.raises(grpc.RpcError) as err:
            r.ListReviewItems(bad, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in _violations(err.value)


def test_get_item_shows_the_evidence_and_records_the_view(served: Served) -> None:
    r = served.review
    it = r.ListReviewItems(pb.ListReviewItemsRequest(kind="pair", page_size=1),
                           timeout=10).items[0]
    ev = r.GetReviewItem(pb.GetReviewItemRequest(item_id=it.item_id, viewer="awa"), timeout=10)
    assert ev.item.item_id == it.item_id
    assert [_uid(x.record) for x in ev.records] == sorted([_uid(it.record_a), _uid(it.record_b)])
    assert all(x.raw and x.standardised and x.person_id and x.programme for x in ev.records)
    (pair,) = ev.pairs
    n_comparisons = len(served.core.index.comparisons)
    # One step per comparison, and the batch's ambiguity when it re-weighed the pair.
    extra = sum(st.comparison == "ambiguity" for st in pair.steps)
    assert extra <= 1 and len(pair.steps) == n_comparisons + extra
    total = pair.prior_weight + sum(s.match_weight for s in pair.steps)
    assert total == pytest.approx(pair.match_weight, abs=1e-6)
    assert pair.batch_match_probability == pytest.approx(it.match_probability, abs=1e-6)
    assert pair.compared and pair.blocking_summary.startswith("compared by blocking keys")
    assert {p.person_id for p in ev.persons} == {x.person_id for x in ev.records}
    assert all(p.events for p in ev.persons)
    views = served.core._read(lambda cur: cur.execute(
        "SELECT viewer, surface FROM review_views WHERE item_id = ?", [it.item_id]).fetchall())
    assert views == [("awa", "grpc")]
    with pytest.raises(grpc.RpcError) as err:
        r.GetReviewItem(pb.GetReviewItemRequest(item_id="R99999", viewer="awa"), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        r.GetReviewItem(pb.GetReviewItemRequest(item_id=it.item_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "viewer" in _violations(err.value)


def test_a_decision_through_grpc_changes_persons_at_once_and_survives_a_run(
        served: Served) -> None:
    r = served.review
    items = r.ListReviewItems(pb.ListReviewItemsRequest(kind="pair", page_size=500),
                              timeout=10).items
    it = next(i for i in items if _person(served, i.record_a) != _person(served, i.record_b))
    feed_before = list(served.linkage.WatchChanges(pb.WatchChangesRequest(after_seq=0),
                                                   timeout=30))
    d = r.DecideReviewItem(pb.DecideReviewItemRequest(
        item_id=it.item_id, decision=pb.REVIEW_DECISION_KIND_SAME, reviewer="awa",
        comment="same mother and village"), timeout=30)
    assert d.decision == pb.REVIEW_DECISION_KIND_SAME and d.reviewer == "awa"
    assert [c.kind for c in d.constraints] == ["must_link"]
    pid = _person(served, it.record_a)
    assert pid == _person(served, it.record_b) == d.persons[_uid(it.record_a)]
    new = list(served.linkage.WatchChanges(pb.WatchChangesRequest(
        after_seq=feed_before[-1].seq), timeout=30))
    assert new and {e.cause for e in new} == {"review"} and {e.run_id for e in new} == {"review"}
    # Resolve sees the new persons at once (the index was refreshed).
    assert served.core.index.person_of(_uid(it.record_b)) == pid
    run = served.batch.StartRun(pb.StartRunRequest(), timeout=10)
    list(served.batch.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=300))
    final = served.batch.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=10)
    assert final.state == pb.RUN_STATE_PUBLISHED, final.error
    assert _person(served, it.record_a) == _person(served, it.record_b)
    after = r.ListReviewItems(pb.ListReviewItemsRequest(status="all", kind="pair",
                                                        page_size=500), timeout=10)
    same_pair = [i for i in after.items if {_uid(i.record_a), _uid(i.record_b)}
                 == {_uid(it.record_a), _uid(it.record_b)}]
    assert [(i.item_id, i.status) for i in same_pair] == [(it.item_id, "decided")]
    ev = r.GetReviewItem(pb.GetReviewItemRequest(item_id=it.item_id, viewer="moussa"),
                         timeout=10)
    assert [x.decision_id for x in ev.decisions] == [d.decision_id]


def test_decision_errors_have_the_right_status(served: Served) -> None:
    r = served.review
    items = r.ListReviewItems(pb.ListReviewItemsRequest(kind="pair", page_size=2),
                              timeout=10).items
    with pytest.raises(grpc.RpcError) as err:
        r.DecideReviewItem(pb.DecideReviewItemRequest(item_id=items[0].item_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "decision" in _violations(err.value)
    with pytest.raises(grpc.RpcError) as err:
        r.DecideReviewItem(pb.DecideReviewItemRequest(
            item_id=items[0].item_id, decision=pb.REVIEW_DECISION_KIND_SAME), timeout=10)
    assert "reviewer" in _violations(err.value)
    with pytest.raises(grpc.RpcError) as err:
        r.DecideReviewItem(pb.DecideReviewItemRequest(
            item_id=items[0].item_id, decision=pb.REVIEW_DECISION_KIND_SAME, reviewer="awa",
            comment="line one\nline two"), timeout=10)
    assert "comment" in _violations(err.value)
    with pytest.raises(grpc.RpcError) as err:
        r.DecideReviewItem(pb.DecideReviewItemRequest(
            item_id="R99999", decision=pb.REVIEW_DECISION_KIND_SAME, reviewer="awa"),
            timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    # must-link a-b, then must-link b-c by hand; a cannot-link a-c contradicts them.
    a, b = items[0].record_a, items[0].record_b
    r.DecideReviewItem(pb.DecideReviewItemRequest(
        item_id=items[0].item_id, decision=pb.REVIEW_DECISION_KIND_SAME, reviewer="awa"),
        timeout=10)
    c = next(x for x in (items[1].record_a, items[1].record_b) if _uid(x) not in
             (_uid(a), _uid(b)))
    x = served.core.review.open_pair(_uid(b), _uid(c), reviewer="awa")
    served.core.review.decide(x, "same", reviewer="awa")
    y = served.core.review.open_pair(_uid(a), _uid(c), reviewer="awa")
    with pytest.raises(grpc.RpcError) as err:
        r.DecideReviewItem(pb.DecideReviewItemRequest(
            item_id=y, decision=pb.REVIEW_DECISION_KIND_NOT_SAME, reviewer="awa"), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert _person(served, a) == _person(served, c)  # nothing changed


def test_explain_any_pair(served: Served) -> None:
    r = served.review
    uids = served.core._read(lambda cur: [u for (u,) in cur.execute(
        "SELECT uid FROM person_records ORDER BY uid").fetchall()])
    a = uids[0]
    b = next(u for u in reversed(uids) if not served.core.review.explain(a, u).compared)

    def ref(u: str) -> pb.RecordRef:
        s, k = u.split(":", 1)
        return pb.RecordRef(source=s, record_key=k)

    ex = r.ExplainPair(pb.ExplainPairRequest(record_a=ref(a), record_b=ref(b)), timeout=10)
    assert not ex.compared
    assert ex.blocking_summary.startswith("never compared: no blocking key in common")
    assert len(ex.steps) - sum(st.comparison == "ambiguity" for st in ex.steps) == len(
        served.core.index.comparisons)
    assert not ex.HasField("batch_match_probability")
    with pytest.raises(grpc.RpcError) as err:
        r.ExplainPair(pb.ExplainPairRequest(record_a=ref(a), record_b=pb.RecordRef(
            source="civil_registry", record_key="NO-SUCH")), timeout=10)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        r.ExplainPair(pb.ExplainPairRequest(record_a=ref(a)), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "record_b" in _violations(err.value)
