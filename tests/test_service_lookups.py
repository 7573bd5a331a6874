"""What a programme MIS asks (issue 15): golden records, look-ups by identifier and in
bulk, paginated listings, documented contract. A real server on a free loopback port,
called through the generated stubs."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import pytest
import service_fixtures as fx
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from service_fixtures import RunningServer
from test_service import UNKNOWN_ID, details, person_of, stub, violations

from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

svc_register = fx.svc_register
svc_server = fx.svc_server


def _pair(s: RunningServer, *, year_only: bool) -> tuple[dict[str, str], dict[str, str]]:
    """A (civil registry row, cash transfer row) of one person; the roster's date
    year-only or full."""
    rows = s.small.rows
    for uid, ct in rows.items():
        if uid.startswith("cash_transfer:") and ct["date_naissance"].startswith("00/") \
                == year_only:
            return rows["civil_registry:CR" + ct["id"][2:]], ct
    raise AssertionError("no such pair in the fixture")


def _title(s: str) -> str:
    return " ".join(t.capitalize() for t in s.split())


def test_get_person_carries_the_golden_record_by_survivorship(svc_server: RunningServer
                                                              ) -> None:
    cr, ct = _pair(svc_server, year_only=True)
    pid = person_of(svc_server, f"cash_transfer:{ct['id']}")
    g = stub(svc_server).GetPerson(pb.GetPersonRequest(person_id=pid), timeout=5).golden
    d, m, y = cr["date_naissance"].split("/")
    # The roster spells the family name otherwise and knows only the year: the civil
    # registry's name and full date survive.
    assert (g.name.given_name, g.name.surname) == (_title(cr["prenom"]), _title(cr["nom"]))
    assert (g.birth_date.year, g.birth_date.month, g.birth_date.day,
            g.birth_date.precision) == (int(y), int(m), int(d), pb.DATE_PRECISION_DAY)
    assert g.sex == (pb.SEX_MALE if cr["sexe"] == "M" else pb.SEX_FEMALE)
    assert list(g.programmes) == ["Cash Transfer"]
    assert g.chosen_from["given_name"].source == "civil_registry"
    if cr["nin"]:
        assert [i.value for i in g.identifiers] == [cr["nin"]]


def test_resolve_candidates_carry_their_golden_record(svc_server: RunningServer) -> None:
    cr, _ = _pair(svc_server, year_only=False)
    resp = stub(svc_server).Resolve(pb.ResolveRequest(person=details(cr)), timeout=5)
    assert resp.candidates
    for c in resp.candidates:
        assert c.golden.name.given_name, c.person_id  # every candidate says whom it names
    assert resp.candidates[0].golden.name.surname == _title(cr["nom"])


def test_enrolment_updates_the_golden_record_and_the_feed_says_so(svc_server: RunningServer
                                                                  ) -> None:
    s = stub(svc_server)
    cr = next(r for u, r in svc_server.small.rows.items()
              if u.startswith("civil_registry:") and r["nin"] and r["telephone"])
    pid = person_of(svc_server, f"civil_registry:{cr['id']}")
    cursor = s.ListChanges(pb.ListChangesRequest(page_size=1), timeout=5)
    after = cursor.last_seq
    while True:  # to the end of the feed
        page = s.ListChanges(pb.ListChangesRequest(after_seq=after, page_size=1000),
                             timeout=5)
        after = page.last_seq
        if not page.next_page_token:
            break
    new_phone = "79999999"
    person = details(cr)
    person.phone_number = new_phone
    got = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="MIS-GOLD-1", person=person),
                  timeout=10)
    assert (got.outcome, got.person_id) == (pb.ENROL_OUTCOME_LINKED, pid)
    g = s.GetPerson(pb.GetPersonRequest(person_id=pid), timeout=5).golden
    assert g.phone_number == "223" + new_phone  # the most recent contact data
    assert g.chosen_from["phone"].record_key == "MIS-GOLD-1"
    assert "Nutrition MIS" in g.programmes
    # Resolve answers with the new golden record too (kept in memory, updated at commit).
    cands = s.Resolve(pb.ResolveRequest(person=person), timeout=5).candidates
    assert next(c for c in cands if c.person_id == pid).golden == g
    events = s.ListChanges(pb.ListChangesRequest(after_seq=after), timeout=5).events
    golden_events = [e for e in events if e.kind == pb.EVENT_KIND_GOLDEN_CHANGED]
    assert [e.person_id for e in golden_events] == [pid]
    assert golden_events[0].golden == g
    assert "phone" in golden_events[0].cause and "programmes" in golden_events[0].cause
    # The streaming feed tells the same.
    streamed = list(s.WatchChanges(pb.WatchChangesRequest(after_seq=after), timeout=5))
    assert [e.seq for e in streamed] == [e.seq for e in events]


def test_find_by_identifier_national_id_beneficiary_number_record_key(
        svc_server: RunningServer) -> None:
    s = stub(svc_server)
    cr, ct = next((_pair(svc_server, year_only=y)) for y in (True, False))
    cr = next(r for u, r in svc_server.small.rows.items()
              if u.startswith("civil_registry:") and r["nin"])
    pid = person_of(svc_server, f"civil_registry:{cr['id']}")
    # As printed: lower case, dashes and spaces are ignored like ingest ignores them.
    printed = f"{cr['nin'][:4].lower()}-{cr['nin'][4:]} "
    by_nid = s.FindByIdentifier(pb.FindByIdentifierRequest(
        identifier=pb.Identifier(type="UIN", value=printed)), timeout=5)
    assert [p.person_id for p in by_nid.persons] == [pid]
    assert by_nid.persons[0].golden.name.given_name and not by_nid.persons[0].lineage
    ct_pid = person_of(svc_server, f"cash_transfer:{ct['id']}")
    for programme in ("Cash Transfer", "cash_transfer"):
        got = s.FindByIdentifier(pb.FindByIdentifierRequest(
            identifier=pb.Identifier(type="BENEFICIARY_ID", value=ct["id"]),
            programme=programme), timeout=5)
        assert [p.person_id for p in got.persons] == [ct_pid]
    got = s.FindByIdentifier(pb.FindByIdentifierRequest(
        identifier=pb.Identifier(type="RECORD_KEY", value=cr["id"]), source="civil_registry"),
        timeout=5)
    assert [p.person_id for p in got.persons] == [pid]


def test_find_by_identifier_errors(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    cases = [
        (pb.FindByIdentifierRequest(), "identifier"),
        (pb.FindByIdentifierRequest(identifier=pb.Identifier(type="PASSPORT", value="X")),
         "identifier.type"),
        (pb.FindByIdentifierRequest(identifier=pb.Identifier(type="UIN")), "identifier.value"),
        (pb.FindByIdentifierRequest(identifier=pb.Identifier(type="BENEFICIARY_ID",
                                                             value="CT00001")), "programme"),
        (pb.FindByIdentifierRequest(identifier=pb.Identifier(type="RECORD_KEY",
                                                             value="CR00001")), "source"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            s.FindByIdentifier(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations(err.value), (field, violations(err.value))
    for request in (
            pb.FindByIdentifierRequest(identifier=pb.Identifier(type="NID", value="ZZ0000")),
            pb.FindByIdentifierRequest(identifier=pb.Identifier(type="BENEFICIARY_ID",
                                                                value="X"), programme="Nope"),
            pb.FindByIdentifierRequest(identifier=pb.Identifier(type="RECORD_KEY", value="X"),
                                       source="civil_registry")):
        with pytest.raises(grpc.RpcError) as err:
            s.FindByIdentifier(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_get_persons_in_bulk_in_order_with_unknown_ids_and_a_cap(svc_server: RunningServer
                                                                 ) -> None:
    s = stub(svc_server)
    uids = sorted(svc_server.small.rows)[:5]
    pids = [person_of(svc_server, u) for u in uids]
    asked = [pids[0], UNKNOWN_ID, pids[1].lower(), *pids[2:], pids[0]]
    got = s.GetPersons(pb.GetPersonsRequest(person_ids=asked), timeout=5).results
    assert [r.requested_id for r in got] == [asked[0], UNKNOWN_ID, pids[1], *pids[2:], pids[0]]
    assert [r.found for r in got] == [True, False, True, True, True, True, True]
    assert got[0].person.person_id == pids[0] and got[0].person.golden.name.given_name
    assert not got[0].person.lineage
    with_lineage = s.GetPersons(pb.GetPersonsRequest(person_ids=pids[:1], include_lineage=True),
                                timeout=5).results
    assert with_lineage[0].person.lineage
    with pytest.raises(grpc.RpcError) as err:
        s.GetPersons(pb.GetPersonsRequest(person_ids=[pids[0], "P-NOTANID", "x"]), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {"person_ids[1]", "person_ids[2]"} <= set(violations(err.value))
    cap = svc_server.core.options.max_persons_per_call
    with pytest.raises(grpc.RpcError) as err:
        s.GetPersons(pb.GetPersonsRequest(person_ids=[pids[0]] * (cap + 1)), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most" in violations(err.value)["person_ids"]


def test_programme_persons_page_by_page(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    expected = {person_of(svc_server, u) for u in svc_server.small.rows
                if u.startswith("cash_transfer:")}
    seen: list[str] = []
    token, pages = "", 0
    while True:
        page = s.ListProgrammePersons(pb.ListProgrammePersonsRequest(
            programme="Cash Transfer", page_size=7, page_token=token), timeout=5)
        assert len(page.members) <= 7
        for m in page.members:
            assert all(r.source == "cash_transfer" for r in m.records)
            assert m.golden.name.given_name
        seen += [m.person_id for m in page.members]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(expected) and pages == -(-len(expected) // 7)
    first = s.ListProgrammePersons(pb.ListProgrammePersonsRequest(
        programme="cash_transfer", page_size=3), timeout=5)
    for request in (
            pb.ListProgrammePersonsRequest(programme="mis_api", page_token=first.next_page_token),
            pb.ListProgrammePersonsRequest(programme="cash_transfer", page_token="garbage!"),
            pb.ListProgrammePersonsRequest(programme="cash_transfer",
                                           page_token=first.next_page_token[:-3]),
            pb.ListChangesRequest(page_token=first.next_page_token)):
        call = s.ListChanges if isinstance(request, pb.ListChangesRequest) \
            else s.ListProgrammePersons
        with pytest.raises(grpc.RpcError) as err:
            call(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in violations(err.value)
    for request, field in ((pb.ListProgrammePersonsRequest(), "programme"),
                           (pb.ListProgrammePersonsRequest(programme="x", page_size=-1),
                            "page_size")):
        with pytest.raises(grpc.RpcError) as err:
            s.ListProgrammePersons(request, timeout=5)
        assert field in violations(err.value)
    with pytest.raises(grpc.RpcError) as err:
        s.ListProgrammePersons(pb.ListProgrammePersonsRequest(programme="Nope"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_list_changes_pages_are_the_watch_feed(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    streamed = [e.seq for e in s.WatchChanges(pb.WatchChangesRequest(), timeout=10)]
    paged: list[int] = []
    token = ""
    while True:
        page = s.ListChanges(pb.ListChangesRequest(page_size=97, page_token=token), timeout=5)
        paged += [e.seq for e in page.events]
        token = page.next_page_token
        if not token:
            break
    assert paged == streamed and len(paged) > 97
    assert page.last_seq == streamed[-1]
    tail = s.ListChanges(pb.ListChangesRequest(after_seq=streamed[-3]), timeout=5)
    assert [e.seq for e in tail.events] == streamed[-2:] and not tail.next_page_token
    big = s.ListChanges(pb.ListChangesRequest(page_size=10**6), timeout=5)
    assert len(big.events) == min(len(streamed), svc_server.core.options.max_page_size)


def test_reflection_carries_the_field_documentation(svc_server: RunningServer) -> None:
    refl = reflection_pb2_grpc.ServerReflectionStub(svc_server.channel)
    (resp,) = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        file_containing_symbol="linkage.v1.LinkageService")]), timeout=5))
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in resp.file_descriptor_response.file_descriptor_proto]
    ours = next(f for f in files if f.name == "linkage/v1/linkage.proto")
    comments = [loc.leading_comments + loc.trailing_comments
                for loc in ours.source_code_info.location]
    assert any("survivorship" in c for c in comments)
    assert any("DCI style" in c for c in comments)
    # Every message, field, enum, enum value, service and method of the MIS-facing
    # services (LinkageService, BatchService and every type they use) carries a comment
    # (descriptor paths: 4 message, 5 enum, 6 service; 2 their fields / values / methods).
    # ReviewService (issue 12, the reviewers' tool) is left to its own tests.
    by_name = {f".linkage.v1.{m.name}": m for m in ours.message_type}
    used: set[str] = set()
    todo = [t for svc in ours.service if svc.name in ("LinkageService", "BatchService")
            for m in svc.method for t in (m.input_type, m.output_type)]
    while todo:
        t = todo.pop()
        if t in used:
            continue
        used.add(t)
        if t in by_name:
            todo += [f.type_name for f in by_name[t].field if f.type_name]
            todo += [f".linkage.v1.{by_name[t].name}.{n.name}" for n in by_name[t].nested_type]
            for n in by_name[t].nested_type:  # map entries
                todo += [f.type_name for f in n.field if f.type_name]
    documented = {tuple(loc.path) for loc in ours.source_code_info.location
                  if (loc.leading_comments + loc.trailing_comments).strip()}
    undocumented = []
    for tag, kinds, inner in ((4, ours.message_type, "field"), (5, ours.enum_type, "value"),
                              (6, ours.service, "method")):
        for i, item in enumerate(kinds):
            if tag == 6 and item.name == "ReviewService":
                continue
            if tag != 6 and f".linkage.v1.{item.name}" not in used:
                continue
            if (tag, i) not in documented:
                undocumented.append(item.name)
            undocumented += [f"{item.name}.{x.name}" for j, x in enumerate(getattr(item, inner))
                             if (tag, i, 2, j) not in documented]
    assert len(used) > 40 and ".linkage.v1.GoldenRecord" in used
    assert undocumented == []


def test_evidence_labels_are_the_definitions_words_whatever_the_model_file(
        tmp_path: Path) -> None:
    """A model file without label_for_charts (older files, hand-made ones) makes Splink
    label levels with their SQL; the API still answers with the definition's words."""
    from linkage.matching.definition import COMPARISONS
    from linkage.realtime.core import Realtime
    from linkage.service.server import create_server

    small = fx.build_small_register(tmp_path, persons=40)
    raw = json.loads(small.project.model.read_text(encoding="utf-8"))
    for comp in raw["splink_settings"]["comparisons"]:
        for lvl in comp["comparison_levels"]:
            lvl.pop("label_for_charts", None)
    small.project.model.write_text(json.dumps(raw), encoding="utf-8")
    words = {c.name: {lvl.label for lvl in c.levels} for c in COMPARISONS}
    core = Realtime.open(small.project)
    server, port = create_server(core, port=0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            cr = next(r for u, r in small.rows.items() if u.startswith("civil_registry:"))
            resp = pb_grpc.LinkageServiceStub(channel).Resolve(
                pb.ResolveRequest(person=details(cr), min_match_probability=0.0), timeout=10)
    finally:
        server.stop(None).wait()
        core.close()
    labels = [(e.comparison, e.level_label) for c in resp.candidates for e in c.evidence]
    assert labels
    assert all(label in words[comp] for comp, label in labels), labels
    assert not any("_l" in label or "IS NULL" in label for _, label in labels)
    assert ("given_name", "exact") in labels
