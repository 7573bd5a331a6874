"""The register's one writer (linkage.register.store), on real DuckDB files.

Records, person IDs, publishing, successor pointers, constraints and the enrolment
journal are written one way for the batch, enrolment and the test builders; these tests
check that way directly, and that enrolment and the batch meet in it (issue 9, item 4).
The last tests reproduce issue 13: an unknown-source check on a request thread reset the
writer's ID allocator under an open enrolment group.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import threading
from pathlib import Path

import grpc
import pytest
import service_fixtures as fx
from service_fixtures import RunningServer

from linkage.config import load_source
from linkage.errors import InvalidRequest
from linkage.ids import publish as persons
from linkage.ids.reconcile import ConstraintConflict, IdState, new_id, reconcile, resolve
from linkage.ingest.read import ingest_source
from linkage.realtime import lookup
from linkage.realtime.core import PersonInput
from linkage.realtime.enrol import EnrolItem
from linkage.register import store
from linkage.register.database import API_FILE, Register, query
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

svc_register = fx.svc_register  # fixtures (shared with other service test modules)
svc_server = fx.svc_server

NOW = dt.datetime(2026, 12, 1, 9, 0, 0)
HEADER = "id;prenom;nom;sexe;date_naissance\n"


@pytest.fixture
def reg(tmp_path: Path):
    r = Register.open(tmp_path / "register.duckdb")
    yield r
    r.close()


def roster(tmp_path: Path, rows: str) -> Path:
    (tmp_path / "r.csv").write_text(HEADER + rows, encoding="utf-8")
    p = tmp_path / "roster.yaml"
    p.write_text('name: roster\nkind: programme\npath: r.csv\nformat: csv\ndelimiter: ";"\n'
                 'record_key: id\ncountry_code: "223"\ncolumns:\n  given_name: prenom\n'
                 "  family_name: nom\n  sex: sexe\n  birth_date: date_naissance\n",
                 encoding="utf-8")
    return p


def read(reg: Register, sql: str, params: list | None = None) -> list[tuple]:
    cur = reg.cursor()
    try:
        return query(cur, sql, params)
    finally:
        cur.close()


def api_rows(items: list[EnrolItem]):
    """Rows as enrolment stages them (no file: sent over the API)."""
    return store.records_table({
        "uid": [i.uid for i in items], "source": [i.source for i in items],
        "record_key": [i.record_key for i in items], "raw": [i.raw_json for i in items],
        "record_hash": [i.record_hash for i in items],
        "given_std": [i.row.get("given_std") for i in items]})


# ----------------------------------------------------------------------------- records


def test_upsert_is_idempotent_and_counts(reg: Register) -> None:
    rows = store.records_table({
        "uid": ["s:1", "s:2"], "record_key": ["1", "2"], "file": ["f.csv", "f.csv"],
        "row_number": [1, 2], "raw": ['{"a": "x"}', '{"a": "y"}'],
        "record_hash": [store.record_hash('{"a": "x"}'), store.record_hash('{"a": "y"}')],
        "given_std": ["AWA", "MOUSSA"], "birth_year": [1980, None]}, source="s")
    with reg.transaction() as cur:
        first = store.upsert_records(cur, rows, now=NOW, full_extract_of="s")
    before = read(reg, "SELECT * FROM records ORDER BY uid")
    with reg.transaction() as cur:
        again = store.upsert_records(cur, rows, now=NOW + dt.timedelta(days=1),
                                     full_extract_of="s")
    assert (first.added, first.updated, first.retired) == (2, 0, 0)
    assert (again.added, again.updated, again.retired) == (0, 0, 0)
    assert read(reg, "SELECT * FROM records ORDER BY uid") == before  # not even updated_at
    # A full extract without s:2 retires it; it comes back active when it reappears.
    with reg.transaction() as cur:
        gone = store.upsert_records(cur, rows.slice(0, 1), now=NOW, full_extract_of="s")
        back = store.upsert_records(cur, rows, now=NOW, full_extract_of="s")
    assert (gone.retired, back.updated) == (1, 1)
    assert read(reg, "SELECT status FROM records ORDER BY uid") == [("active",), ("active",)]


def test_record_hash_is_the_same_from_ingest_and_from_enrolment(reg: Register,
                                                                tmp_path: Path) -> None:
    with reg.transaction() as cur:
        ingest_source(cur, load_source(roster(tmp_path, "1;Moussa;Traoré;M;14/03/1980\n")))
    ((raw, stored_hash),) = read(reg, "SELECT raw, record_hash FROM records")
    values = {"id": "1", "prenom": "Moussa", "nom": "Traoré", "sexe": "M",
              "date_naissance": "14/03/1980"}
    assert json.loads(raw) == values
    enrolled = EnrolItem("roster", "1", dict(values), row={})
    assert enrolled.raw_json == raw == store.record_json(values)
    assert enrolled.record_hash == stored_hash == store.record_hash(raw)


def test_an_enrolment_updates_a_file_record_in_place(reg: Register, tmp_path: Path) -> None:
    """Enrolment upserts with ingest's function; an update keeps the record's file."""
    with reg.transaction() as cur:
        ingest_source(cur, load_source(roster(tmp_path, "1;Moussa;Traoré;M;14/03/1980\n")))
    ((file, row_number),) = read(reg, "SELECT file, row_number FROM records")
    items = [EnrolItem("roster", "1", {"given_name": "Moussa"}, {"given_std": "MOUSSA"}),
             EnrolItem("roster", "api-2", {"given_name": "Awa"}, {"given_std": "AWA"})]
    with reg.transaction() as cur:
        counts = store.upsert_records(cur, api_rows(items), now=NOW)
        again = store.upsert_records(cur, api_rows(items), now=NOW)
    assert (counts.added, counts.updated, again.added, again.updated) == (1, 1, 0, 0)
    got = {k: v for k, *v in read(reg, "SELECT record_key, file, row_number, record_hash, "
                                       "given_std FROM records")}
    assert got["1"] == [file, row_number, items[0].record_hash, "MOUSSA"]
    assert got["api-2"] == [API_FILE, None, items[1].record_hash, "AWA"]


# ----------------------------------------------------------------------------- IDs


def published_ids(reg: Register) -> dict[str, int]:
    return dict(read(reg, "SELECT person_id, issue_seq FROM persons"))


def issue_as_enrolment(reg: Register, issuer: store.IdIssuer, uids: list[str]) -> list[str]:
    """What the enrolment writer does for records that each get a new person."""
    with reg.transaction() as cur:
        issuer.begin(cur)
        pids = [issuer.issue(cur)[0] for _ in uids]
        store.publish_persons(cur, store.PersonChanges(
            run_id="enrol", issued=issuer.pending, next_seq=issuer.next_seq,
            assigned=dict(zip(uids, pids, strict=True))))
    issuer.committed()
    return pids


def test_enrolment_and_batch_issue_ids_from_one_allocator(reg: Register) -> None:
    with reg.transaction() as cur:
        persons.publish_clusters(cur, {"a:1": "x", "a:2": "x", "a:3": "y"}, run_id="r1",
                                 now=NOW)
    issuer = store.IdIssuer()
    enrolled = issue_as_enrolment(reg, issuer, ["api:1", "api:2"])
    with reg.transaction() as cur:  # the batch sees the enrolled persons and goes on after
        state = store.load_state(cur)
        assert set(enrolled) <= state.issued.keys() and state.next_seq == 4
        clusters = dict(state.assignment) | {"a:4": "new", "a:5": "new2"}
        persons.publish_clusters(cur, clusters, run_id="r2", now=NOW)
    later = issue_as_enrolment(reg, issuer, ["api:3"])  # the cached issuer sees the run
    ids = published_ids(reg)
    assert sorted(ids.values()) == list(range(7))  # one counter, no gap, no reuse
    (secret,) = read(reg, "SELECT value FROM meta WHERE key = 'id_secret'")[0]
    assert all(new_id(bytes.fromhex(secret), seq) == pid for pid, seq in ids.items())
    assert ids[later[0]] == 6
    assert read(reg, "SELECT value FROM meta WHERE key = 'id_next_seq'") == [("7",)]
    assert read(reg, "SELECT created_run FROM persons WHERE person_id = ?", [enrolled[0]]
                ) == [("enrol",)]


def test_issuer_never_hands_out_an_id_already_in_the_register(reg: Register) -> None:
    with reg.transaction() as cur:
        persons.publish_clusters(cur, {"a:1": "x"}, run_id="r1", now=NOW)
        secret = bytes.fromhex(query(cur, "SELECT value FROM meta WHERE key = 'id_secret'")[0][0])
        # As if an older ID had the same 40-bit hash as the next sequence number's.
        cur.execute("INSERT INTO persons VALUES (?, 'live', 99, 'r0', 'r0')",
                    [new_id(secret, 1)])
    (pid,) = issue_as_enrolment(reg, store.IdIssuer(), ["api:1"])
    assert pid == new_id(secret, 2)
    assert read(reg, "SELECT value FROM meta WHERE key = 'id_next_seq'") == [("3",)]


def test_issuer_forgets_ids_of_a_rolled_back_transaction(reg: Register) -> None:
    with reg.transaction() as cur:
        persons.publish_clusters(cur, {"a:1": "x"}, run_id="r1", now=NOW)
    issuer = store.IdIssuer()
    cur = reg.cursor()
    cur.execute("BEGIN TRANSACTION")
    issuer.begin(cur)
    lost = issuer.issue(cur)
    cur.execute("ROLLBACK")
    cur.close()
    issuer.rolled_back()
    (pid,) = issue_as_enrolment(reg, issuer, ["api:1"])
    assert (pid, published_ids(reg)[pid]) == lost  # the same ID, issued once


# ----------------------------------------------------------------------------- publishing


def random_runs(seed: int, runs: int = 6) -> list[dict[str, str]]:
    rng = random.Random(seed)
    recs = [f"s:{i}" for i in range(40)]
    out = []
    for _ in range(runs):
        present = [r for r in recs if rng.random() < 0.85]
        out.append({r: str(rng.randrange(12)) for r in present})
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_published_state_reads_back_as_reconciled(reg: Register, seed: int) -> None:
    """publish_persons writes exactly reconcile's state: merges, splits, restorations."""
    expected = IdState()
    for i, clusters in enumerate(random_runs(seed)):
        with reg.transaction() as cur:
            old = store.load_state(cur)
            assert old == expected
            result = reconcile(old, clusters, allocator=store.id_allocator(cur),
                               run_id=f"r{i}", now=NOW)
            persons.publish_clusters(cur, clusters, run_id=f"r{i}", now=NOW)
            expected = result.state
            # Successor pointers keep their order (largest share first) through the tables.
            assert store.load_state(cur) == expected
            for pid in expected.issued:
                assert persons.successors(cur, pid) == resolve(expected, pid)
                status, live = lookup.live_ids(cur, pid)
                assert live == resolve(expected, pid)
                assert status == ("retired" if pid in expected.retired else "live")
            touched = {e.person_id for e in result.events} | {
                e.other_person_id for e in result.events if e.kind != "record_removed"
                and e.other_person_id}
            rows = query(cur, "SELECT person_id, created_run, updated_run FROM persons")
        for pid, created, updated in rows:
            if pid not in old.issued:
                assert (created, updated) == (f"r{i}", f"r{i}")
            elif pid not in touched:
                assert updated != f"r{i}"
        n_events = read(reg, "SELECT count(*) FROM person_events WHERE run_id = ?", [f"r{i}"])
        assert n_events == [(len(result.events),)]


def test_publish_persons_is_the_test_builders_way_to_merge(reg: Register) -> None:
    with reg.transaction() as cur:
        persons.publish_clusters(cur, {"a:1": "x", "a:2": "y", "a:3": "y"}, run_id="r1",
                                 now=NOW)
    state = read(reg, "SELECT uid, person_id FROM person_records ORDER BY uid")
    a, b = state[0][1], state[1][1]
    with reg.transaction() as cur:
        store.publish_persons(cur, store.PersonChanges(
            run_id="r2", assigned={"a:2": a, "a:3": a}, unassigned=["a:2", "a:3"],
            status={b: "retired"}, touched=[a, b], successors={b: (a,)},
            last_records={b: {"a:2", "a:3"}}))
        st = store.load_state(cur)
        assert st.assignment == dict.fromkeys(["a:1", "a:2", "a:3"], a)
        assert st.retired == {b: (a,)} and st.last_records == {b: frozenset({"a:2", "a:3"})}
        assert lookup.live_ids(cur, b) == ("retired", [a])


def test_a_full_golden_refresh_fills_in_persons_without_one(reg: Register,
                                                            tmp_path: Path) -> None:
    """A register whose persons have no golden record yet (made before golden records,
    or whose refresh was skipped) gets them at the next publish's full refresh."""
    with reg.transaction() as cur:
        ingest_source(cur, load_source(roster(tmp_path, "1;Awa;Diarra;F;1990\n")), now=NOW)
        persons.publish_clusters(cur, {"roster:1": "roster:1"}, run_id="r1", now=NOW)
        cur.execute("DELETE FROM person_golden")
    ((pid,),) = read(reg, "SELECT person_id FROM persons")
    with reg.transaction() as cur:
        changed = store.refresh_golden(cur, run_id="r2", now=NOW, full=True)
    assert list(changed) == [pid]
    ((golden,),) = read(reg, "SELECT golden FROM person_golden WHERE person_id = ?", [pid])
    assert "awa" in golden.lower()


# ----------------------------------------------------------------------------- constraints


def test_a_constraint_written_once_is_read_back_and_applied(reg: Register) -> None:
    with reg.transaction() as cur:
        store.add_constraint(cur, "b:9", "a:1", "must_link", decided_by="reviewer-7",
                             decided_at=NOW)
        store.add_constraint(cur, "a:1", "a:2", "cannot_link", decided_by="reviewer-7")
        store.add_constraint(cur, "a:1", "b:9", "must_link", decided_by="reviewer-8")
    rows = read(reg, "SELECT uid_a, uid_b, kind, decided_by FROM constraints ORDER BY uid_a, uid_b")
    assert rows == [("a:1", "a:2", "cannot_link", "reviewer-7"),
                    ("a:1", "b:9", "must_link", "reviewer-8")]  # once per pair, either order
    cur = reg.cursor()
    c = persons.load_constraints(cur)
    assert (c.must_link, c.cannot_link) == ((("a:1", "b:9"),), (("a:1", "a:2"),))
    assert persons.load_constraints(cur, {"a:1", "a:2"}).must_link == ()
    cur.close()
    with reg.transaction() as cur:  # the batch applies them
        persons.publish_clusters(cur, {"a:1": 0, "a:2": 0, "b:9": 1}, run_id="r1", now=NOW)
        got = store.load_state(cur).assignment
    assert got["a:1"] == got["b:9"] != got["a:2"]


def test_a_contradicting_constraint_is_refused(reg: Register) -> None:
    with reg.transaction() as cur:
        store.add_constraint(cur, "a:1", "a:2", "must_link", decided_by="r")
        store.add_constraint(cur, "a:2", "a:3", "must_link", decided_by="r")
        with pytest.raises(ConstraintConflict):
            store.add_constraint(cur, "a:3", "a:1", "cannot_link", decided_by="r")
        # A must-link that would put a recorded cannot-link inside one component, through
        # a chain on both sides; constraints elsewhere do not matter.
        store.add_constraint(cur, "b:1", "b:2", "cannot_link", decided_by="r")
        store.add_constraint(cur, "a:3", "b:1", "must_link", decided_by="r")
        store.add_constraint(cur, "c:1", "c:2", "cannot_link", decided_by="r")
        with pytest.raises(ConstraintConflict):
            store.add_constraint(cur, "a:1", "b:2", "must_link", decided_by="r")
        # A decision replacing the pair's own must-link is not checked against it.
        store.add_constraint(cur, "a:3", "b:1", "cannot_link", decided_by="r")
        store.add_constraint(cur, "a:1", "b:2", "must_link", decided_by="r")
        assert query(cur, "SELECT kind FROM constraints WHERE uid_a = 'a:3' "
                          "AND uid_b = 'b:1'") == [("cannot_link",)]
        for bad in (("a:1", "a:1", "must_link", "r"), ("a:1", "a:4", "maybe", "r"),
                    ("a:1", "a:4", "must_link", " ")):
            with pytest.raises(ValueError):
                store.add_constraint(cur, *bad[:3], decided_by=bad[3])
    assert read(reg, "SELECT count(*) FROM constraints") == [(6,)]


# ----------------------------------------------------------------------------- journal


def test_journal_round_trip(reg: Register) -> None:
    with reg.transaction() as cur:
        for seq in (5, 3, 9):
            store.journal_enrolment(cur, seq, f"s:{seq}", json.dumps({"seq": seq}), now=NOW)
    cur = reg.cursor()
    assert [s for s, _ in store.journaled_enrolments(cur)] == [3, 5, 9]
    store.drop_journaled(cur, [3, 9])
    store.drop_journaled(cur, [])
    assert store.journaled_enrolments(cur) == [(5, json.dumps({"seq": 5}))]
    cur.close()


# ----------------------------------------------------------------------------- issue 13

GIVEN = ["Zeinabou", "Tinhinane", "Assalama", "Fadimata", "Raichatou", "Mintou", "Takamba",
         "Lalla", "Aicha", "Nafissatou", "Hadijatou", "Safietou"]
SURNAMES = ["Ag Alhassane", "Walet Mohamed", "Ag Intalla", "Maiga", "Toure", "Cisse",
            "Haidara", "Ould Sidi", "Dicko", "Tamboura", "Guindo", "Kassogue"]


def stranger(rng: random.Random) -> pb.PersonDetails:
    return pb.PersonDetails(
        name=pb.Name(given_name=rng.choice(GIVEN), surname=rng.choice(SURNAMES)),
        sex=pb.SEX_FEMALE, birth_date=pb.BirthDate(year=rng.randrange(1930, 2020),
                                                   month=rng.randrange(1, 13),
                                                   day=rng.randrange(1, 29)))


def test_unknown_source_check_leaves_an_open_group_alone(svc_server: RunningServer,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 13, made deterministic: the check runs while the writer holds a group open,
    after it issued the group's first new ID; the group's next IDs must still be new."""
    core = svc_server.core
    index = core.enroller.index
    inside, go = threading.Event(), threading.Event()
    real_assign = index.assign

    def assign(*args, **kwargs):  # the writer pauses once, just after a new person
        if not inside.is_set():
            inside.set()
            assert go.wait(10)
        return real_assign(*args, **kwargs)

    monkeypatch.setattr(index, "assign", assign)
    rng = random.Random(13)
    requests = [pb.EnrolRequest(source="mis_api", record_key=f"R13-{i}", person=stranger(rng))
                for i in range(3)]
    result: dict[str, object] = {}

    def send() -> None:
        try:
            result["resp"] = pb_grpc.LinkageServiceStub(svc_server.channel).EnrolBatch(
                iter([pb.EnrolBatchRequest(records=requests)]), timeout=30)
        except grpc.RpcError as exc:
            result["error"] = exc

    t = threading.Thread(target=send)
    t.start()
    try:
        assert inside.wait(10), "the writer never linked the group"
        with pytest.raises(InvalidRequest):
            core.prepare_enrol("no_such_source", "X-1", PersonInput({"given_name": "Awa"}))
    finally:
        go.set()
        t.join(30)
    assert "error" not in result, result.get("error")
    resp = result["resp"]
    assert [r.outcome for r in resp.results] == [pb.ENROL_OUTCOME_CREATED] * 3
    assert len({r.person_id for r in resp.results}) == 3


def test_valid_groups_succeed_while_unknown_sources_are_refused(svc_server: RunningServer
                                                                 ) -> None:
    """Issue 13 as the fuzzer found it: EnrolBatch groups from one thread, enrolments of
    an unknown source from another; every valid record is enrolled, no ID twice."""
    s = pb_grpc.LinkageServiceStub(svc_server.channel)
    stop = threading.Event()
    refused: list[grpc.StatusCode] = []

    def unknown() -> None:
        ok = pb.PersonDetails(name=pb.Name(given_name="Awa", surname="Diarra"))
        i = 0
        while not stop.is_set():
            try:
                s.Enrol(pb.EnrolRequest(source="no_such_source", record_key=f"U-{i}",
                                        person=ok), timeout=10)
            except grpc.RpcError as exc:
                refused.append(exc.code())
            i += 1

    rng = random.Random(1313)
    t = threading.Thread(target=unknown)
    t.start()
    results = []
    try:
        for g in range(15):
            recs = [pb.EnrolRequest(source="mis_api", record_key=f"F-{g}-{i}",
                                    person=stranger(rng)) for i in range(20)]
            resp = s.EnrolBatch(iter([pb.EnrolBatchRequest(records=recs[:10]),
                                      pb.EnrolBatchRequest(records=recs[10:])]), timeout=60)
            results.extend(resp.results)
            one = s.Enrol(pb.EnrolRequest(source="mis_api", record_key=f"F-{g}",
                                          person=stranger(rng)), timeout=30)
            assert one.outcome in (pb.ENROL_OUTCOME_CREATED, pb.ENROL_OUTCOME_LINKED)
    finally:
        stop.set()
        t.join(30)
    assert refused and set(refused) == {grpc.StatusCode.INVALID_ARGUMENT}
    outcomes = {r.outcome for r in results}
    assert outcomes <= {pb.ENROL_OUTCOME_CREATED, pb.ENROL_OUTCOME_LINKED}
    assert len(results) == 300
    cur = svc_server.core.register.cursor()
    try:
        dup = query(cur, "SELECT person_id, count(*) FROM persons GROUP BY ALL HAVING count(*) > 1")
        (n,) = query(cur, "SELECT count(*) FROM records WHERE record_key LIKE 'F-%'")[0]
    finally:
        cur.close()
    assert dup == [] and n == 315
