"""Clients identified by their TLS certificate (serve.clients), and mis clients limited to
their own programmes and sources, through real servers on loopback (mutual TLS with
certificates made here, generated stubs)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from certs import Pem, Pki, _write, make_pki
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from service_fixtures import SmallRegister, build_small_register

from linkage.config import ClientCertificate, TlsConfig, load_project
from linkage.errors import ConfigError
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.audit import AuditTrail, query_audit
from linkage.service.auth import TokenBook, bearer
from linkage.service.server import create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc
from tests.test_security import person


def _client_cert(out: Path, stem: str, ca: Pem, *, cn: str, uri: str | None = None) -> Pem:
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    ca_key = load_pem_private_key(ca.key.read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
         .issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=1))
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                        critical=False))
    if uri:
        b = b.add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                            critical=False)
    return _write(out, stem, b.sign(ca_key, hashes.SHA256()), key)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> SmallRegister:
    return build_small_register(tmp_path_factory.mktemp("ident"), persons=60)


def _pids(core: Realtime) -> tuple[str, str]:
    """A person with civil-registry records only, and one with a cash-transfer record."""
    rows = core._read(lambda cur: cur.execute(
        "SELECT person_id, list(split_part(uid, ':', 1)) FROM person_records "
        "GROUP BY person_id ORDER BY person_id").fetchall())
    cr_only = next(p for p, s in rows if set(s) == {"civil_registry"})
    both = next(p for p, s in rows if set(s) == {"civil_registry", "cash_transfer"})
    return cr_only, both


# --- certificates ---------------------------------------------------------------------


@dataclass
class MutualServer:
    core: Realtime
    port: int
    pki: Pki
    certs: dict[str, Pem]
    audit: AuditTrail
    book: TokenBook

    def channel(self, who: str) -> grpc.Channel:
        pem = self.certs[who]
        return grpc.secure_channel(f"localhost:{self.port}", grpc.ssl_channel_credentials(
            root_certificates=self.pki.ca.cert.read_bytes(),
            private_key=pem.key.read_bytes(), certificate_chain=pem.cert.read_bytes()))


@pytest.fixture(scope="module")
def mutual(small: SmallRegister, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[MutualServer]:
    out = tmp_path_factory.mktemp("pki")
    pki = make_pki(out)
    certs = {"ct-mis": _client_cert(out, "ct", pki.ca, cn="cash-transfer-mis"),
             "admin": _client_cert(out, "adm", pki.ca, cn="ignored-cn",
                                   uri="urn:rsu:register-admin"),
             "unlisted": _client_cert(out, "unl", pki.ca, cn="someone-else")}
    project = dataclasses.replace(small.project, serve=dataclasses.replace(
        small.project.serve, clients=(
            ClientCertificate("cash-transfer-mis", "mis", programmes=("Cash Transfer",)),
            ClientCertificate("urn:rsu:register-admin", "admin"))))
    core = Realtime.open(project, options=RealtimeOptions(enrol_wait=1.0))
    audit = AuditTrail(core.register)
    core.closers.append(audit.close)
    tls = TlsConfig(cert=pki.server.cert, key=pki.server.key, client_ca=pki.ca.cert)
    book = TokenBook(core.register, allow_open=False)
    server, port = create_server(core, port=0, tls=tls, audit=audit, tokens=book)
    server.start()
    try:
        yield MutualServer(core, port, pki, certs, audit, book)
    finally:
        server.stop(None).wait()
        core.close()


def test_a_certificate_identity_gets_its_role(mutual: MutualServer, small: SmallRegister
                                              ) -> None:
    cr_only, both = _pids(mutual.core)
    with mutual.channel("ct-mis") as ch:
        ls = pb_grpc.LinkageServiceStub(ch)
        row = next(iter(small.rows.values()))
        assert ls.Resolve(pb.ResolveRequest(person=person(row)), timeout=10).candidates
        got = ls.GetPerson(pb.GetPersonRequest(person_id=both), timeout=10)
        assert {r.record.source for r in got.records} == {"cash_transfer"}
        with pytest.raises(grpc.RpcError) as caught:  # limited to its programme
            ls.GetPerson(pb.GetPersonRequest(person_id=cr_only), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.RpcError) as caught:  # a mis is no admin
            pb_grpc.AdminServiceStub(ch).ListTokens(pb.ListTokensRequest(), timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with mutual.channel("admin") as ch:  # identified by its subject alternative name
        pb_grpc.AdminServiceStub(ch).ListTokens(pb.ListTokensRequest(), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.LinkageServiceStub(ch).GetPerson(pb.GetPersonRequest(person_id=both),
                                                     timeout=10)
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with mutual.channel("unlisted") as ch:  # the CA signed it, but serve.clients lacks it
        for call in (lambda: pb_grpc.LinkageServiceStub(ch).GetPerson(
                        pb.GetPersonRequest(person_id=both), timeout=10),
                     lambda: pb_grpc.AdminServiceStub(ch).ListTokens(
                         pb.ListTokensRequest(), timeout=10)):
            with pytest.raises(grpc.RpcError) as caught:
                call()
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert caught.value.details() == "missing or invalid credentials"
    mutual.audit.flush()
    rows = query_audit(mutual.core.register, client="cash-transfer-mis")
    assert rows and all(r[2] == "cash-transfer-mis (certificate)" for r in rows)
    assert {"OK", "NOT_FOUND"} <= {r[5] for r in rows}  # ListTokens is not audited


def test_a_token_still_decides_under_certificates(mutual: MutualServer) -> None:
    book = mutual.book
    try:
        _, token = book.issue("reviewer by token", "reviewer")
        _, both = _pids(mutual.core)
        with mutual.channel("unlisted") as ch:
            got = pb_grpc.LinkageServiceStub(ch).GetPerson(
                pb.GetPersonRequest(person_id=both), metadata=bearer(token), timeout=10)
            assert got.person_id == both
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.LinkageServiceStub(ch).GetPerson(
                    pb.GetPersonRequest(person_id=both), metadata=bearer(token + "x"),
                    timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        for r in book.tokens():
            book.revoke(r.token_id)


def test_serve_clients_are_validated(small: SmallRegister, tmp_path: Path) -> None:
    p = small.project.path
    text = p.read_text(encoding="utf-8")

    def load(extra: str) -> None:
        (tmp_path / "sources").mkdir(exist_ok=True)
        f = p.parent / "clients-test.yaml"
        f.write_text(text + extra, encoding="utf-8")
        try:
            load_project(f)
        finally:
            f.unlink()

    with pytest.raises(ConfigError, match="serve.clients: client certificates need mutual TLS"):
        load("serve: {clients: [{identity: a, role: mis}]}\n")


# --- programmes -----------------------------------------------------------------------


@dataclass
class Plain:
    core: Realtime
    channel: grpc.Channel
    scoped: str  # a mis token limited to the cash-transfer programme
    whole: str  # a mis token with no limits


@pytest.fixture(scope="module")
def plain(small: SmallRegister) -> Iterator[Plain]:
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=1.0))
    book = TokenBook(core.register, allow_open=True)
    _, scoped = book.issue("cash transfer MIS", "mis", programmes=["Cash Transfer"])
    _, whole = book.issue("whole MIS", "mis")
    server, port = create_server(core, port=0, tokens=book)
    server.start()
    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Plain(core, ch, scoped, whole)
    finally:
        ch.close()
        server.stop(None).wait()
        core.close()


def _code(call) -> grpc.StatusCode:  # noqa: ANN001
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value.code()


def test_a_mis_limited_to_a_programme_reads_only_its_own(plain: Plain, small: SmallRegister
                                                         ) -> None:
    ls = pb_grpc.LinkageServiceStub(plain.channel)
    md, everything = bearer(plain.scoped), bearer(plain.whole)
    cr_only, both = _pids(plain.core)
    # The unlimited client sees both persons whole (the control).
    full = ls.GetPerson(pb.GetPersonRequest(person_id=both), metadata=everything, timeout=10)
    assert {r.record.source for r in full.records} == {"civil_registry", "cash_transfer"}
    assert ls.GetPerson(pb.GetPersonRequest(person_id=cr_only), metadata=everything,
                        timeout=10).person_id == cr_only
    # The limited one: its own records only, golden fields from them only.
    got = ls.GetPerson(pb.GetPersonRequest(person_id=both), metadata=md, timeout=10)
    assert {r.record.source for r in got.records} == {"cash_transfer"}
    assert {e.source for e in got.programmes} == {"cash_transfer"}
    assert {ref.source for ref in got.golden.chosen_from.values()} <= {"cash_transfer"}
    assert set(got.golden.programmes) == {"Cash Transfer"}
    assert "national_ids" not in got.golden.chosen_from or got.golden.identifiers
    assert _code(lambda: ls.GetPerson(pb.GetPersonRequest(person_id=cr_only), metadata=md,
                                      timeout=10)) == grpc.StatusCode.NOT_FOUND
    assert _code(lambda: ls.ListProgrammes(pb.ListProgrammesRequest(person_id=cr_only),
                                           metadata=md, timeout=10)) == grpc.StatusCode.NOT_FOUND
    many = ls.GetPersons(pb.GetPersonsRequest(person_ids=[cr_only, both]), metadata=md,
                         timeout=10)
    assert [r.found for r in many.results] == [False, True]
    assert not many.results[0].HasField("person")
    lineage = ls.GetPersons(pb.GetPersonsRequest(person_ids=[both], include_lineage=True),
                            metadata=md, timeout=10).results[0].person.lineage
    whole = ls.GetPersons(pb.GetPersonsRequest(person_ids=[both], include_lineage=True),
                          metadata=everything, timeout=10).results[0].person.lineage
    assert any(e.record.source == "civil_registry" for e in whole)  # the control
    assert lineage and all(e.record.source in ("", "cash_transfer") for e in lineage)
    # Look-ups in another programme's source, or its listing: refused.
    cr_key = next(u for u in small.rows if u.startswith("civil_registry:")).split(":", 1)[1]
    assert _code(lambda: ls.FindByIdentifier(pb.FindByIdentifierRequest(
        identifier=pb.Identifier(type="RECORD_KEY", value=cr_key), source="civil_registry"),
        metadata=md, timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: ls.GetPersonByRecord(pb.GetPersonByRecordRequest(
        record=pb.RecordRef(source="civil_registry", record_key=cr_key)), metadata=md,
        timeout=10)) == grpc.StatusCode.PERMISSION_DENIED
    assert _code(lambda: ls.ListProgrammePersons(pb.ListProgrammePersonsRequest(
        programme="Civil Registry", page_size=5), metadata=md, timeout=10)
    ) == grpc.StatusCode.PERMISSION_DENIED
    members = ls.ListProgrammePersons(pb.ListProgrammePersonsRequest(
        programme="Cash Transfer", page_size=5), metadata=md, timeout=10).members
    assert members and all(ref.source == "cash_transfer" for m in members
                           for ref in m.golden.chosen_from.values())
    # Enrolment only into its programme's sources.
    row = next(iter(small.rows.values()))
    assert _code(lambda: ls.Enrol(pb.EnrolRequest(source="civil_registry", record_key="X-1",
                                                  person=person(row)), metadata=md, timeout=10)
                 ) == grpc.StatusCode.PERMISSION_DENIED
    # The change feed: only events of persons it can see (the unlimited one sees more).
    mine = list(ls.WatchChanges(pb.WatchChangesRequest(after_seq=0), metadata=md, timeout=20))
    every = list(ls.WatchChanges(pb.WatchChangesRequest(after_seq=0), metadata=everything,
                                 timeout=20))
    assert 0 < len(mine) < len(every)
    assert cr_only in {e.person_id for e in every}
    assert cr_only not in {e.person_id for e in mine}
    assert all(e.record.source in ("", "cash_transfer") for e in mine)
    page = ls.ListChanges(pb.ListChangesRequest(after_seq=0, page_size=1000), metadata=md,
                          timeout=20)
    assert {e.seq for e in page.events} <= {e.seq for e in mine}
    assert cr_only not in {e.person_id for e in page.events}
