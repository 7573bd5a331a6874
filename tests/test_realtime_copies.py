"""Exact copies and the batch's rules in real time (issue 11), through the real server.

Identical details enrolled again and again under new record keys used to get a new
person each once their blocks passed the cap, and Resolve then found nothing. The
index now keeps an uncapped look-up of exact copies (the batch's copy key,
:func:`linkage.register.store.copy_key`), and enrolment links as the next batch would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest
from service_fixtures import SmallRegister, build_small_register

from linkage.config import load_project
from linkage.realtime.core import PersonInput, Realtime, RealtimeOptions
from linkage.realtime.enrol import CREATED, LINKED
from linkage.register import store
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

CAP = 10  # the project's block cap: the copies fill every block of their details


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SmallRegister:
    reg = build_small_register(tmp_path_factory.mktemp("copies"))
    path = reg.project.path
    text = re.sub(r"max_block_size: \d+", f"max_block_size: {CAP}",
                  path.read_text(encoding="utf-8"))
    path.write_text(text, encoding="utf-8")
    reg.project = load_project(path)
    assert reg.project.max_block_size == CAP
    return reg


@pytest.fixture(scope="module")
def served(small: SmallRegister) -> Iterator[tuple[Realtime, pb_grpc.LinkageServiceStub]]:
    from linkage.service.server import create_server

    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield core, pb_grpc.LinkageServiceStub(channel)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def _common(small: SmallRegister) -> pb.PersonDetails:
    """The register's commonest given and family name, a year-only date, no ID."""
    counts: dict[tuple[str, str], int] = {}
    for row in small.rows.values():
        key = (row["prenom"].split()[0], row["nom"])
        counts[key] = counts.get(key, 0) + 1
    given, family = max(counts, key=lambda k: (counts[k], k))
    return pb.PersonDetails(
        name=pb.Name(given_name=given, surname=family), sex=pb.SEX_MALE,
        birth_date=pb.BirthDate(year=1980, precision=pb.DATE_PRECISION_YEAR),
        location=pb.Location(region="Sikasso", commune="Kadiolo", village="Misseni"))


def test_copies_enrolled_150_times_are_one_person_and_resolve_finds_it(
        small: SmallRegister, served: tuple[Realtime, pb_grpc.LinkageServiceStub]) -> None:
    core, api = served
    person = _common(small)
    # One at a time past the cap, then the rest in one stream (one enrolment group:
    # copies inside a group link too).
    first = [api.Enrol(pb.EnrolRequest(source="mis_api", record_key=f"C-{i}", person=person),
                       timeout=10) for i in range(2 * CAP)]
    rest = api.EnrolBatch(iter([pb.EnrolBatchRequest(records=[
        pb.EnrolRequest(source="mis_api", record_key=f"C-{i}", person=person)
        for i in range(2 * CAP, 150)])]), timeout=30).results
    outcomes = [r.outcome for r in (*first, *rest)]
    assert outcomes[0] == pb.ENROL_OUTCOME_CREATED
    assert outcomes[1:] == [pb.ENROL_OUTCOME_LINKED] * 149
    pid = first[0].person_id
    assert {r.person_id for r in (*first, *rest)} == {pid}

    # Every block of these details is now over its cap: only the copy look-up finds them.
    index = core.index
    row = core.standardise(core_input(person))
    keys = index.block_keys(row)
    assert keys and all(len(index.blocks[k].get(v, ())) > index.caps[k] for k, v in keys)
    res = api.Resolve(pb.ResolveRequest(person=person, max_candidates=3), timeout=5)
    assert res.candidates and res.candidates[0].person_id == pid
    assert 0.0 < res.candidates[0].match_probability <= 1.0  # its own score, reported
    # A floor above the copy's score still returns the copy's person.
    floor = min(1.0, res.candidates[0].match_probability + 1e-9)
    res = api.Resolve(pb.ResolveRequest(person=person, min_match_probability=floor),
                      timeout=5)
    assert [c.person_id for c in res.candidates] == [pid]

    # Details that differ in one field are no copy: with full blocks, no candidate.
    other = pb.PersonDetails()
    other.CopyFrom(person)
    other.birth_date.year = 1981
    assert core.standardise(core_input(other))["birth_year"] == 1981
    assert pid not in {c.person_id for c in api.Resolve(
        pb.ResolveRequest(person=other), timeout=5).candidates}

    # In the register: one person holds the 150 records.
    got = core._read(lambda cur: cur.execute(
        "SELECT count(*), count(DISTINCT person_id) FROM person_records "
        "WHERE uid LIKE 'mis_api:C-%'").fetchone())
    assert got == (150, 1)


def core_input(p: pb.PersonDetails):  # noqa: ANN201
    from linkage.service.convert import person_input

    return person_input(p)


def test_a_copy_of_another_household_or_source_is_scored_not_joined(
        small: SmallRegister, served: tuple[Realtime, pb_grpc.LinkageServiceStub]) -> None:
    """The batch joins copies of one row: one source, one household. A copy from another
    household of the roster is a namesake the household and same-source rules judge."""
    core, api = served
    person = pb.PersonDetails()
    person.CopyFrom(_common(small))
    person.name.given_name = "Zoumana"  # rare: few candidates, the blocks are not full
    person.household_id = "H-1"
    a = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="H1-a", person=person),
                  timeout=10)
    b = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="H1-b", person=person),
                  timeout=10)
    assert a.outcome == pb.ENROL_OUTCOME_CREATED
    assert (b.outcome, b.person_id) == (pb.ENROL_OUTCOME_LINKED, a.person_id)  # a copy
    # One field different, same household: never one person (siblings, a namesake son).
    sibling = pb.PersonDetails()
    sibling.CopyFrom(person)
    sibling.phone_number = "76000001"
    c = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="H1-c", person=sibling),
                  timeout=10)
    assert c.outcome == pb.ENROL_OUTCOME_CREATED and c.person_id != a.person_id
    threshold = small.project.thresholds.match
    assert core.index.explain("mis_api:H1-c", "mis_api:H1-a").match_probability >= threshold
    # Another national ID: never one person either, however strong the rest.
    with_id = pb.PersonDetails()
    with_id.CopyFrom(person)
    with_id.name.given_name = "Siaka"
    with_id.household_id = ""
    with_id.identifiers.append(pb.Identifier(type="UIN", value="ML555000111"))
    d = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="N-d", person=with_id),
                  timeout=10)
    other_id = pb.PersonDetails()
    other_id.CopyFrom(with_id)
    other_id.identifiers[0].value = "ML999888777"
    e = api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="N-e", person=other_id),
                  timeout=10)
    assert core.index.explain("cash_transfer:N-e", "mis_api:N-d").match_probability >= threshold
    assert e.outcome == pb.ENROL_OUTCOME_CREATED and e.person_id != d.person_id
    # One typo apart is one mistyped ID, as in the batch.
    typo = pb.PersonDetails()
    typo.CopyFrom(with_id)
    typo.identifiers[0].value = "ML555000112"
    f = api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="N-f", person=typo),
                  timeout=10)
    assert (f.outcome, f.person_id) == (pb.ENROL_OUTCOME_LINKED, d.person_id)


def test_a_reviewer_cannot_link_keeps_a_copy_apart(
        served: tuple[Realtime, pb_grpc.LinkageServiceStub]) -> None:
    rt, _ = served
    raw = {"given_name": "Nassoum", "family_name": "Kamissoko", "sex": "F", "birth_date": "1975"}
    first = rt.enrol(rt.prepare_enrol("mis_api", "K1", PersonInput(dict(raw))))
    # A reviewer said the record under K2 is not the person of K1 (a decision kept
    # while the record was elsewhere), before K2 is sent.
    with rt.write_lock, rt.register.transaction() as cur:
        store.add_constraint(cur, "mis_api:K2", "mis_api:K1", store.CANNOT_LINK,
                             decided_by="awa")
    second = rt.enrol(rt.prepare_enrol("mis_api", "K2", PersonInput(dict(raw))))
    third = rt.enrol(rt.prepare_enrol("mis_api", "K3", PersonInput(dict(raw))))
    assert first.outcome == CREATED
    assert second.outcome == CREATED and second.person_id != first.person_id
    assert third.outcome == LINKED  # a copy of both, barred from neither
    assert third.person_id in (first.person_id, second.person_id)


def test_find_by_national_id_reads_the_index_kept_current_by_enrolment(
        small: SmallRegister, served: tuple[Realtime, pb_grpc.LinkageServiceStub]) -> None:
    """FindByIdentifier with a national ID is a look-up in the index (issue 15): a record
    enrolled a moment ago is found, and an ID its record no longer holds is not."""
    core, api = served

    def find(value: str) -> list[str]:
        try:
            got = api.FindByIdentifier(pb.FindByIdentifierRequest(
                identifier=pb.Identifier(type="NID", value=value)), timeout=5)
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
            return []
        return [p.person_id for p in got.persons]

    cr = next(r for u, r in small.rows.items() if u.startswith("civil_registry:") and r["nin"])
    pid = core.index.person_of(f"civil_registry:{cr['id']}")
    assert find(cr["nin"]) == [pid]
    person = pb.PersonDetails(name=pb.Name(given_name="Kadidia", surname="Ouologuem"),
                              sex=pb.SEX_FEMALE, birth_date=pb.BirthDate(year=1991, month=4,
                                                                         day=9),
                              identifiers=[pb.Identifier(type="UIN", value="ML700100200")])
    new = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="ID-1", person=person),
                    timeout=10)
    assert new.outcome == pb.ENROL_OUTCOME_CREATED
    assert find("ml-700100200") == [new.person_id]
    person.identifiers[0].value = "ML700100999"  # the record corrected: its ID changes
    again = api.Enrol(pb.EnrolRequest(source="mis_api", record_key="ID-1", person=person),
                      timeout=10)
    assert (again.outcome, again.person_id) == (pb.ENROL_OUTCOME_UPDATED, new.person_id)
    assert find("ML700100200") == []
    assert find("ML700100999") == [new.person_id]
    # The register agrees: what the scan would have answered.
    from linkage.realtime import lookup

    assert core._read(lambda cur: lookup.persons_of_records(
        cur, "r.national_id = ?", ["ML700100999"])) == [new.person_id]
    assert core.index.persons_with_national_id(cr["nin"]) == [pid]


def test_the_copy_key_is_one_definition_in_python_and_sql(
        served: tuple[Realtime, pb_grpc.LinkageServiceStub]) -> None:
    """Real time computes the batch's copy key per row in Python; the batch and the
    index's build in SQL: both must give every record the same key."""
    from linkage.canonical import STANDARD_COLUMNS

    cols = ", ".join(STANDARD_COLUMNS)
    con = served[0].register.cursor()  # the served register (held open by the server)
    try:
        got = con.execute(f"SELECT {cols}, {store.copy_key_sql()} FROM records").fetchall()
        # Values a roster row may hold that the fixture's do not: accents, a separator,
        # NULL beside an empty-looking value.
        tricky = con.execute(
            f"SELECT {store.copy_key_sql()} FROM (SELECT * REPLACE ("
            "'é|1:x' AS given_std, NULL AS phone) FROM records LIMIT 1)").fetchone()[0]
        tricky_row = con.execute(f"SELECT {cols} FROM records LIMIT 1").fetchone()
    finally:
        con.close()
    names = list(STANDARD_COLUMNS)
    assert len(got) > 100
    for values in got:
        row = dict(zip(names, values[:-1], strict=True))
        assert store.copy_key(row) == values[-1]
    row = dict(zip(names, tricky_row, strict=True), given_std="é|1:x", phone=None)
    assert store.copy_key(row) == tricky
    # One field apart, or a household apart: a different key, or the same key (the
    # household is compared beside it).
    assert store.copy_key(dict(row, birth_year=row["birth_year"] + 1)) != tricky
    assert store.copy_key(dict(row, household_id="x:1")) == tricky
    assert store.copy_key(dict(row, birth_year=None)) is None
