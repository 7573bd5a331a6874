"""The gRPC API end to end: a real server on a free loopback port, called via the stubs."""

from __future__ import annotations

import importlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import grpc
import numpy as np
import pytest
import service_fixtures as fx
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from service_fixtures import RunningServer, build_small_register

from linkage.ids.reconcile import Event, new_id
from linkage.matching.definition import key_sql
from linkage.matching.levels import jaro_winkler
from linkage.matching.model import Model
from linkage.realtime.index import Index
from linkage.register import store
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
svc_register = fx.svc_register  # fixtures (shared with other service test modules)
svc_server = fx.svc_server
UNKNOWN_ID = new_id(b"not this register", 1)  # well-formed, never issued here


# ----------------------------------------------------------------------------- helpers


def stub(s: RunningServer) -> pb_grpc.LinkageServiceStub:
    return pb_grpc.LinkageServiceStub(s.channel)


def batch_stub(s: RunningServer) -> pb_grpc.BatchServiceStub:
    return pb_grpc.BatchServiceStub(s.channel)


def details(row: dict[str, str], *, with_nid: bool = True) -> pb.PersonDetails:
    """PersonDetails from a fixture CSV row (dd/mm/yyyy or 00/00/yyyy dates)."""
    d, m, y = row["date_naissance"].split("/")
    birth = (pb.BirthDate(year=int(y), precision=pb.DATE_PRECISION_YEAR) if d == "00"
             else pb.BirthDate(year=int(y), month=int(m), day=int(d)))
    p = pb.PersonDetails(
        name=pb.Name(given_name=row["prenom"], surname=row["nom"]),
        sex=pb.SEX_MALE if row["sexe"] == "M" else pb.SEX_FEMALE, birth_date=birth,
        phone_number=row["telephone"],
        location=pb.Location(region=row["region"], commune=row["commune"],
                             village=row["village"]))
    if with_nid and row["nin"]:
        p.identifiers.append(pb.Identifier(type="UIN", value=row["nin"]))
    return p


def violations(err: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    out = {}
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out.update({v.field: v.description for v in bad.field_violations})
    return out


def person_of(s: RunningServer, uid: str) -> str:
    source, key = uid.split(":", 1)
    return stub(s).GetPersonByRecord(pb.GetPersonByRecordRequest(
        record=pb.RecordRef(source=source, record_key=key))).person_id


# ----------------------------------------------------------------------------- contract


def test_generated_stubs_are_up_to_date() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        gen = importlib.import_module("gen_protos")
    finally:
        sys.path.pop(0)
    assert gen.check() == [], "run python scripts/gen_protos.py and commit the stubs"


def test_health_and_reflection(svc_server: RunningServer) -> None:
    health = health_pb2_grpc.HealthStub(svc_server.channel)
    for service in ("", "linkage.v1.LinkageService", "linkage.v1.BatchService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(svc_server.channel)
    responses = list(refl.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="linkage.v1.Person"),
    ]), timeout=5))
    names = {s.name for s in responses[0].list_services_response.service}
    assert {"linkage.v1.LinkageService", "linkage.v1.BatchService",
            "grpc.health.v1.Health"} <= names
    assert responses[1].file_descriptor_response.file_descriptor_proto


# ----------------------------------------------------------------------------- resolve


def test_resolve_ranks_the_true_person_first_with_evidence(svc_server: RunningServer) -> None:
    small = svc_server.small
    comparisons = [c["output_column_name"] for c in
                   Model.load(small.project.model).settings["comparisons"]]
    hits = 0
    uids = [u for u in small.rows if u.startswith("cash_transfer:")][:20]
    for uid in uids:
        resp = stub(svc_server).Resolve(pb.ResolveRequest(person=details(small.rows[uid]),
                                                          max_candidates=5), timeout=5)
        assert resp.model_version == "test-model"
        assert resp.candidates, uid
        probs = [c.match_probability for c in resp.candidates]
        assert probs == sorted(probs, reverse=True)
        top = resp.candidates[0]
        assert [e.comparison for e in top.evidence] == comparisons
        assert {"given_name", "birth_date"} <= set(comparisons)
        assert abs(sum(e.match_weight for e in top.evidence) + np.log2(1e-3 / (1 - 1e-3))
                   - top.match_weight) < 1e-9
        hits += top.person_id == person_of(svc_server, uid)
    assert hits >= 18


def test_resolve_invalid_arguments(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    cases = [
        (pb.ResolveRequest(), "person"),
        (pb.ResolveRequest(person=pb.PersonDetails(sex=pb.SEX_MALE)), "person.name"),
        (pb.ResolveRequest(person=pb.PersonDetails(
            name=pb.Name(given_name="Awa"), birth_date=pb.BirthDate(year=1980, month=13))),
         "person.birth_date.month"),
        (pb.ResolveRequest(person=pb.PersonDetails(
            name=pb.Name(given_name="Awa"), birth_date=pb.BirthDate(year=2999))),
         "person.birth_date"),
        (pb.ResolveRequest(person=pb.PersonDetails(
            name=pb.Name(given_name="Awa"), identifiers=[pb.Identifier(type="PASSPORT",
                                                                       value="X1")])),
         "person.identifiers[0].type"),
        (pb.ResolveRequest(person=pb.PersonDetails(name=pb.Name(full_name="TRAORE Awa"))),
         "person.name.full_name_order"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            s.Resolve(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations(err.value), (field, violations(err.value))


def test_oversized_message_is_refused(svc_server: RunningServer) -> None:
    huge = pb.ResolveRequest(person=pb.PersonDetails(name=pb.Name(given_name="A" * 300_000)))
    with pytest.raises(grpc.RpcError) as err:
        stub(svc_server).Resolve(huge, timeout=5)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_unknown_errors_are_internal_and_generic(svc_server: RunningServer,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def boom(*_a: object, **_k: object) -> None:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(svc_server.core, "person", boom)
    with caplog.at_level(logging.ERROR, logger="linkage.service.server"):
        with pytest.raises(grpc.RpcError) as err:
            stub(svc_server).GetPerson(pb.GetPersonRequest(person_id=UNKNOWN_ID), timeout=5)
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.value.details()
    assert "internal error (reference" in err.value.details()
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)


# ----------------------------------------------------------------------------- persons


def test_get_person_by_id_and_record_and_programmes(svc_server: RunningServer) -> None:
    small = svc_server.small
    uid = next(u for u in small.rows if u.startswith("cash_transfer:"))
    pid = person_of(svc_server, uid)
    person = stub(svc_server).GetPerson(pb.GetPersonRequest(person_id=pid.lower()), timeout=5)
    assert person.person_id == pid and person.status == pb.PERSON_STATUS_LIVE
    assert not person.redirected
    keys = {(r.record.source, r.record.record_key) for r in person.records}
    assert tuple(uid.split(":")) in keys and len(keys) == 2  # the roster and civil registry
    assert [e.kind for e in person.lineage][:1] == [pb.EVENT_KIND_CREATED]
    progs = stub(svc_server).ListProgrammes(pb.ListProgrammesRequest(person_id=pid), timeout=5)
    assert [(p.programme, p.source) for p in progs.programmes] == [("Cash Transfer",
                                                                    "cash_transfer")]


def test_person_errors(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    with pytest.raises(grpc.RpcError) as err:
        s.GetPerson(pb.GetPersonRequest(person_id=UNKNOWN_ID), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        s.GetPerson(pb.GetPersonRequest(person_id="P-NOTANID"), timeout=5)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "person_id" in violations(err.value)
    with pytest.raises(grpc.RpcError) as err:
        s.GetPersonByRecord(pb.GetPersonByRecordRequest(
            record=pb.RecordRef(source="cash_transfer", record_key="nope")), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as err:
        s.ListProgrammes(pb.ListProgrammesRequest(person_id=UNKNOWN_ID), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_retired_id_answers_with_its_survivor(svc_server: RunningServer) -> None:
    small, core = svc_server.small, svc_server.core
    crs = [u for u in small.rows if u.startswith("civil_registry:")]
    a, b = [person_of(svc_server, u) for u in crs[30:32]]
    assert a != b
    with core.write_lock, core.register.transaction() as cur:  # a merge, as a run writes it
        moved = [u for (u,) in cur.execute("SELECT uid FROM person_records WHERE person_id = ?",
                                           [b]).fetchall()]
        store.publish_persons(cur, store.PersonChanges(
            run_id="run-t", assigned=dict.fromkeys(moved, a), unassigned=moved,
            status={b: "retired"}, successors={b: (a,)},
            events=[Event("merged_into", b, None, a, "run-t", None, "merge")]))  # type: ignore[arg-type]
    person = stub(svc_server).GetPerson(pb.GetPersonRequest(person_id=b), timeout=5)
    assert person.redirected and person.person_id == a and person.requested_id == b
    assert list(person.successor_ids) == [a]
    assert pb.EVENT_KIND_MERGED_INTO in [e.kind for e in person.lineage]


# ----------------------------------------------------------------------------- enrol


def test_enrol_links_creates_and_is_idempotent(svc_server: RunningServer) -> None:
    small, s = svc_server.small, stub(svc_server)
    uid = [u for u in small.rows if u.startswith("civil_registry:")][10]
    same = details(small.rows[uid])
    r1 = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="M-1", person=same), timeout=10)
    assert r1.outcome == pb.ENROL_OUTCOME_LINKED
    assert r1.person_id == person_of(svc_server, uid) and r1.match_probability >= 0.95
    r2 = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="M-1", person=same), timeout=10)
    assert (r2.outcome, r2.person_id) == (pb.ENROL_OUTCOME_UNCHANGED, r1.person_id)
    changed = pb.PersonDetails()
    changed.CopyFrom(same)
    changed.phone_number = "76000000"
    r3 = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="M-1", person=changed),
                 timeout=10)
    assert (r3.outcome, r3.person_id) == (pb.ENROL_OUTCOME_UPDATED, r1.person_id)
    new = pb.PersonDetails(name=pb.Name(given_name="Zeinabou", surname="Ag Alhassane"),
                           sex=pb.SEX_FEMALE, birth_date=pb.BirthDate(year=2001, month=3, day=9))
    r4 = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="M-2", person=new), timeout=10)
    assert r4.outcome == pb.ENROL_OUTCOME_CREATED and r4.person_id not in (r1.person_id, "")
    # the new person is searchable and readable at once
    resp = s.Resolve(pb.ResolveRequest(person=new), timeout=5)
    assert resp.candidates[0].person_id == r4.person_id
    person = s.GetPerson(pb.GetPersonRequest(person_id=r4.person_id), timeout=5)
    assert [(r.record.source, r.record.record_key) for r in person.records] == [("mis_api",
                                                                                 "M-2")]
    assert [p.programme for p in person.programmes] == ["Nutrition MIS"]


def test_enrol_invalid_arguments(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    ok = pb.PersonDetails(name=pb.Name(given_name="Awa", surname="Diarra"))
    cases = [
        (pb.EnrolRequest(source="mis_api", person=ok), "record_key"),
        (pb.EnrolRequest(record_key="k", person=ok), "source"),
        (pb.EnrolRequest(source="no_such_source", record_key="k", person=ok), "source"),
        (pb.EnrolRequest(source="mis_api", record_key="k"), "person"),
        (pb.EnrolRequest(source="mis_api", record_key="k", person=pb.PersonDetails(
            name=pb.Name(given_name="Awa"), age=pb.AgeAtDate(age=30))),
         "person.age.reference_date"),
    ]
    for request, field in cases:
        with pytest.raises(grpc.RpcError) as err:
            s.Enrol(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert field in violations(err.value)


def test_enrol_batch_streams_records_and_reports_rejects(svc_server: RunningServer) -> None:
    small = svc_server.small
    rows = [small.rows[u] for u in small.rows if u.startswith("civil_registry:")][40:70]

    def requests():
        recs = [pb.EnrolRequest(source="cash_transfer", record_key=f"B-{i}", person=details(row))
                for i, row in enumerate(rows)]
        yield pb.EnrolBatchRequest(records=recs[:1])  # one record per message, or many
        yield pb.EnrolBatchRequest(records=recs[1:])
        yield pb.EnrolBatchRequest(records=[pb.EnrolRequest(
            source="cash_transfer", record_key="B-bad", person=pb.PersonDetails(
                name=pb.Name(given_name="X"), birth_date=pb.BirthDate(year=12)))])

    resp = stub(svc_server).EnrolBatch(requests(), timeout=30)
    assert len(resp.results) == len(rows) + 1
    assert [r.index for r in resp.results] == list(range(len(rows) + 1))
    assert resp.rejected == 1 and resp.results[-1].outcome == pb.ENROL_OUTCOME_REJECTED
    assert resp.results[-1].error_field == "person.birth_date.year"
    assert resp.linked + resp.created == len(rows) and resp.linked >= len(rows) - 2
    for row, res in zip(rows, resp.results, strict=False):
        uid = f"civil_registry:{row['id']}"
        if res.outcome == pb.ENROL_OUTCOME_LINKED:
            assert res.person_id == person_of(svc_server, uid)


# ----------------------------------------------------------------------------- change feed


def test_watch_changes_is_resumable_and_follows(svc_server: RunningServer) -> None:
    s = stub(svc_server)
    first = list(s.WatchChanges(pb.WatchChangesRequest(after_seq=0, max_events=5), timeout=5))
    assert [e.seq for e in first] == sorted(e.seq for e in first) and len(first) == 5
    rest = list(s.WatchChanges(pb.WatchChangesRequest(after_seq=first[-1].seq, max_events=5),
                               timeout=5))
    assert rest[0].seq > first[-1].seq
    everything = list(s.WatchChanges(pb.WatchChangesRequest(after_seq=0), timeout=10))
    seqs = [e.seq for e in everything]
    assert seqs[:10] == [e.seq for e in first + rest] and seqs == sorted(set(seqs))
    last = seqs[-1]
    got: list[pb.PersonEvent] = []

    def follow() -> None:
        for ev in s.WatchChanges(pb.WatchChangesRequest(after_seq=last, follow=True,
                                                        max_events=2), timeout=15):
            got.append(ev)

    t = threading.Thread(target=follow)
    t.start()
    time.sleep(0.3)
    r = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="W-1", person=pb.PersonDetails(
        name=pb.Name(given_name="Oumarou", surname="Maiga"), sex=pb.SEX_MALE)), timeout=10)
    t.join(15)
    assert [(e.kind, e.person_id) for e in got] == [(pb.EVENT_KIND_CREATED, r.person_id),
                                                    (pb.EVENT_KIND_RECORD_ADDED, r.person_id)]
    assert got[1].record == pb.RecordRef(source="mis_api", record_key="W-1")


def test_deadline_is_honoured(svc_server: RunningServer) -> None:
    with pytest.raises(grpc.RpcError) as err:
        list(stub(svc_server).WatchChanges(pb.WatchChangesRequest(after_seq=10**9, follow=True),
                                           timeout=0.5))
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


# ----------------------------------------------------------------------------- batch control


def test_calls_during_a_running_batch(svc_server: RunningServer) -> None:
    """Reads are served, enrolments are queued (never lost) while a batch writes."""
    core, s, b = svc_server.core, stub(svc_server), batch_stub(svc_server)
    core.batch.runner = fx.slow_batch(3.0)
    try:
        run = b.StartRun(pb.StartRunRequest(), timeout=5)
        assert run.state == pb.RUN_STATE_RUNNING
        with pytest.raises(grpc.RpcError) as err:
            b.StartRun(pb.StartRunRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        time.sleep(0.3)
        assert core.batch.running
        uid = next(u for u in svc_server.small.rows if u.startswith("cash_transfer:"))
        t0 = time.monotonic()
        resp = s.Resolve(pb.ResolveRequest(person=details(svc_server.small.rows[uid])), timeout=5)
        assert resp.candidates and time.monotonic() - t0 < 1.0
        assert s.GetPersonByRecord(pb.GetPersonByRecordRequest(record=pb.RecordRef(
            source=uid.split(":")[0], record_key=uid.split(":")[1])), timeout=5).person_id
        queued = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="DURING-1",
                                         person=pb.PersonDetails(name=pb.Name(
                                             given_name="Hamidou", surname="Cisse"))),
                         timeout=10)
        assert queued.outcome == pb.ENROL_OUTCOME_QUEUED and not queued.person_id
        progress = list(b.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=20))
        assert progress[-1].message.endswith("published") or progress[-1].message.startswith(
            "refreshing")
        final = b.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=5)
        assert final.state == pb.RUN_STATE_PUBLISHED, final.error
        assert final.register_run_id == "run-standin"
        # the queued enrolment was applied after the batch committed
        deadline = time.monotonic() + 10
        while True:
            try:
                pid = s.GetPersonByRecord(pb.GetPersonByRecordRequest(record=pb.RecordRef(
                    source="mis_api", record_key="DURING-1")), timeout=5).person_id
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.NOT_FOUND
                assert time.monotonic() < deadline, "queued enrolment was lost"
                time.sleep(0.1)
        assert pid.startswith("P-")
    finally:
        core.batch.runner = None
    with pytest.raises(grpc.RpcError) as err:
        b.GetRun(pb.GetRunRequest(run_id="job-unknown"), timeout=5)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_real_batch_run_through_the_api(tmp_path: Path) -> None:
    """StartRun runs linkage.batch.pipeline.run on the server's register; calls go on meanwhile."""
    from linkage.realtime.core import Realtime, RealtimeOptions
    from linkage.service.server import create_server

    small = build_small_register(tmp_path)
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=0.5))
    server, port = create_server(core, port=0)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s, b = pb_grpc.LinkageServiceStub(ch), pb_grpc.BatchServiceStub(ch)
            uid = next(u for u in small.rows if u.startswith("cash_transfer:"))
            run = b.StartRun(pb.StartRunRequest(force_ingest=True), timeout=5)
            while not core.write_lock.locked():  # the run holds its write transaction
                assert core.batch.running, "the run ended before it was seen writing"
                time.sleep(0.01)
            during = s.Resolve(pb.ResolveRequest(person=details(small.rows[uid])), timeout=5)
            assert during.candidates
            e = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="RB-1",
                                        person=details(small.rows[uid])), timeout=10)
            # journaled in the register while the run's own transaction is open
            assert e.outcome == pb.ENROL_OUTCOME_QUEUED
            lines = list(b.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=120))
            assert lines
            final = b.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=5)
            assert final.state == pb.RUN_STATE_PUBLISHED, final.error
            time.sleep(0.5)
            got = s.GetPersonByRecord(pb.GetPersonByRecordRequest(
                record=pb.RecordRef(source="mis_api", record_key="RB-1")), timeout=5)
            assert got.person_id
            assert core._read(lambda cur: cur.execute(
                "SELECT count(*) FROM enrol_queue").fetchall()) == [(0,)]
    finally:
        server.stop(None).wait()
        core.close()


# ----------------------------------------------------------------------------- parity


def test_scores_match_splink(tmp_path: Path) -> None:
    """The resolver's Python scores equal Splink's predict() on every blocked pair."""
    from splink import DuckDBAPI, Linker

    from linkage.canonical import STANDARD_COLUMNS
    from linkage.matching.model import BLOCKING_KEYS, Model

    small = build_small_register(tmp_path, persons=250, seed=11)
    model = Model.load(small.project.model)
    model.check_definition()
    src = duckdb.connect(str(small.project.register), read_only=True)
    cols = ", ".join(STANDARD_COLUMNS)
    table = src.sql(f"SELECT r.uid, r.source, p.person_id, {cols} FROM records r JOIN "
                    "person_records p USING (uid) WHERE r.status = 'active' "
                    "AND r.source <> 'mis_api'").to_arrow_table()
    src.close()
    index = Index.from_arrow(table, model, max_block_size=10_000)
    con = duckdb.connect()
    con.register("recs", table)
    keys = ", ".join(f"{key_sql(c)} AS bk_{n}" for n, c in BLOCKING_KEYS.items())
    con.execute(f"CREATE TABLE linkage_input AS SELECT * EXCLUDE (person_id), {keys} FROM recs")
    linker = Linker(DuckDBAPI(con).register("linkage_input", table_name="linkage_input_splink"),
                    model.settings)
    pred = linker.inference.predict().physical_name
    pairs = con.execute(f"SELECT uid_l, uid_r, match_weight FROM {pred}").fetchall()
    assert len(pairs) > 100
    rows = {r["uid"]: r for r in table.to_pylist()}
    worst = 0.0
    for uid_l, uid_r, mw in pairs:
        w, *_ = index.score(rows[uid_l], np.array([index.uid_index[uid_r]]))
        worst = max(worst, abs(float(w[0]) - mw))
    assert worst < 1e-6, worst
    # and scored all at once, index rows against index rows, as a group is enrolled
    li = np.array([index.uid_index[u] for u, _, _ in pairs])
    ri = np.array([index.uid_index[u] for _, u, _ in pairs])
    together = index.score_pairs(li, ri)
    assert np.abs(together - np.array([mw for *_, mw in pairs])).max() < 1e-6
    # and the string similarity behind the jaro-winkler levels agrees with DuckDB's
    names = sorted({v for r in rows.values() for v in (r["given_first"], r["family_std"]) if v})
    sims = con.execute("SELECT a.v, b.v, jaro_winkler_similarity(a.v, b.v) FROM "
                       "(SELECT unnest(?::VARCHAR[]) v) a, (SELECT unnest(?::VARCHAR[]) v) b",
                       [names, names]).fetchall()
    assert all((jaro_winkler(a, b) >= 0.9) == (s >= 0.9) for a, b, s in sims)


# ----------------------------------------------------------------------------- SIGTERM


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    """A server process; returns it with its port once it says it is serving."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = ""
    deadline = time.monotonic() + 60
    while "serving on" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
    return proc, int(line.rsplit(":", 1)[1])


_SERVER_ENV = dict(os.environ, PYTHONUNBUFFERED="1",
                   PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))

_LONG_BATCH_SERVER = """
import sys
import service_fixtures as fx
from linkage.config import load_project
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.server import create_server
core = Realtime.open(load_project(sys.argv[1]), options=RealtimeOptions(enrol_wait=0.3))
core.batch.runner = fx.slow_batch(300)
server, port = create_server(core, port=0)
server.start()
print(f"serving on 127.0.0.1:{port}", flush=True)
server.wait_for_termination()
"""


def test_queued_enrolments_survive_a_crash_during_a_batch(tmp_path: Path) -> None:
    """QUEUED is durable: SIGKILL mid-batch, restart, and the records are applied."""
    small = build_small_register(tmp_path, persons=60)
    env = _SERVER_ENV
    register = str(small.project.register)
    con = duckdb.connect(register, read_only=True)
    published = con.execute("SELECT count(*), max(person_id) FROM person_records").fetchall()
    con.close()
    row = next(iter(small.rows.values()))
    proc, port = _start(["-c", _LONG_BATCH_SERVER, str(small.project.path)], env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s, b = pb_grpc.LinkageServiceStub(ch), pb_grpc.BatchServiceStub(ch)
            run = b.StartRun(pb.StartRunRequest(), timeout=5)
            for progress in b.WatchRun(pb.WatchRunRequest(run_id=run.run_id), timeout=30):
                if progress.message == "holding the transaction":
                    break
            one = s.Enrol(pb.EnrolRequest(source="mis_api", record_key="CRASH-1",
                                          person=details(row)), timeout=10)
            many = s.EnrolBatch(iter([pb.EnrolBatchRequest(records=[
                pb.EnrolRequest(source="mis_api", record_key=f"CRASH-{i}", person=details(row))
                for i in (2, 3)])]), timeout=10)
            assert one.outcome == pb.ENROL_OUTCOME_QUEUED
            assert [r.outcome for r in many.results] == [pb.ENROL_OUTCOME_QUEUED] * 2
    finally:
        proc.kill()  # SIGKILL: no drain, the batch's transaction never commits
        proc.communicate(timeout=10)
    con = duckdb.connect(register, read_only=True)
    assert con.execute("SELECT count(*), max(person_id) FROM person_records"
                       ).fetchall() == published
    assert con.execute("SELECT count(*) FROM meta WHERE key = 'standin'").fetchall() == [(0,)]
    assert con.execute("SELECT uid FROM enrol_queue ORDER BY seq").fetchall() == [
        (f"mis_api:CRASH-{i}",) for i in (1, 2, 3)]
    con.close()

    # The real server, started again, replays the journal.
    proc, port = _start(["-m", "linkage", "serve", "--insecure", "-p",
                         str(small.project.path),
                         "--port", "0"], env)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s = pb_grpc.LinkageServiceStub(ch)
            deadline = time.monotonic() + 15
            for i in (1, 2, 3):
                while True:
                    try:
                        got = s.GetPersonByRecord(pb.GetPersonByRecordRequest(
                            record=pb.RecordRef(source="mis_api", record_key=f"CRASH-{i}")),
                            timeout=5)
                        break
                    except grpc.RpcError as exc:
                        assert exc.code() == grpc.StatusCode.NOT_FOUND
                        assert time.monotonic() < deadline, f"CRASH-{i} was lost"
                        time.sleep(0.1)
                assert got.person_id.startswith("P-")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert "replaying 3 queued enrolment(s)" in err
    con = duckdb.connect(register, read_only=True)
    assert con.execute("SELECT count(*) FROM enrol_queue").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM records WHERE source = 'mis_api' AND uid LIKE "
                       "'mis_api:CRASH-%'").fetchall() == [(3,)]
    con.close()


def test_sigterm_drains_in_flight_calls_and_exits_cleanly(tmp_path: Path) -> None:
    small = build_small_register(tmp_path, persons=60)
    proc, port = _start(["-m", "linkage", "serve", "--insecure", "-p",
                         str(small.project.path),
                         "--port", "0"], _SERVER_ENV)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            s = pb_grpc.LinkageServiceStub(ch)
            row = next(iter(small.rows.values()))
            sent = threading.Event()

            def slow_requests():
                for i in range(6):
                    if i == 2:
                        sent.set()
                    time.sleep(0.3)
                    yield pb.EnrolBatchRequest(records=[pb.EnrolRequest(
                        source="mis_api", record_key=f"T-{i}", person=details(row))])

            result: dict[str, object] = {}

            def call() -> None:
                try:
                    result["resp"] = s.EnrolBatch(slow_requests(), timeout=30)
                except grpc.RpcError as exc:
                    result["err"] = exc

            t = threading.Thread(target=call)
            t.start()
            sent.wait(10)
            proc.send_signal(signal.SIGTERM)
            t.join(30)
            assert "err" not in result, result.get("err")
            assert len(result["resp"].results) == 6
            assert all(r.person_id for r in result["resp"].results)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)
    # the drained enrolments were committed
    con = duckdb.connect(str(small.project.register), read_only=True)
    n = con.execute("SELECT count(*) FROM records WHERE source = 'mis_api'").fetchall()[0][0]
    con.close()
    assert n == 6


def test_journal_of_an_unknown_source_is_kept_not_replayed(tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    """A journaled enrolment whose source left the project waits for an operator."""
    import json

    from linkage.realtime.core import Realtime

    small = build_small_register(tmp_path, persons=40)
    row = {"given_std": "AMADOU", "family_std": "DIALLO"}
    con = duckdb.connect(str(small.project.register))
    for seq, source in ((7, "gone_programme"), (8, "mis_api")):
        item = {"source": source, "record_key": f"J-{seq}",
                "raw": {"given_name": "Amadou", "family_name": "Diallo"}, "row": row}
        store.journal_enrolment(con, seq, f"{source}:J-{seq}", json.dumps(item))
    con.close()
    with caplog.at_level(logging.INFO, logger="linkage.realtime.enrol"):
        core = Realtime.open(small.project)
    try:
        deadline = time.monotonic() + 10
        while core._read(lambda cur: cur.execute(
                "SELECT count(*) FROM enrol_queue").fetchall()) != [(1,)]:
            assert time.monotonic() < deadline, "the known source's record was not replayed"
            time.sleep(0.05)
        assert core.person_by_record("mis_api", "J-8").person_id.startswith("P-")
        left = core._read(lambda cur: cur.execute("SELECT uid FROM enrol_queue").fetchall())
        assert left == [("gone_programme:J-7",)]
        assert "unknown sources ['gone_programme'] left in enrol_queue" in caplog.text
        assert "Amadou" not in caplog.text and "DIALLO" not in caplog.text
    finally:
        core.close()
