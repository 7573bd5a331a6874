"""Identity, roles and transport: every RPC against every role, bad and revoked tokens,
source limits, TLS and mutual TLS, and the rules of `linkage serve` (real servers on
loopback, real certificates made at test time, generated stubs)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import grpc
import pytest
import service_fixtures as fx
from certs import Pki, make_pki
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_fixtures import SmallRegister, build_small_register

from linkage.config import load_project
from linkage.errors import ConfigError, PermissionDenied
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.audit import AuditTrail, query_audit
from linkage.service.auth import METHOD_ROLES, ROLES, Authorise, TokenBook, bearer
from linkage.service.server import SERVICE_NAMES, create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

AUTH_CODES = (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


def person(row: dict[str, str]) -> pb.PersonDetails:
    d, m, y = row["date_naissance"].split("/")
    birth = (pb.BirthDate(year=int(y), precision=pb.DATE_PRECISION_YEAR) if d == "00"
             else pb.BirthDate(year=int(y), month=int(m), day=int(d)))
    return pb.PersonDetails(name=pb.Name(given_name=row["prenom"], surname=row["nom"]),
                            sex=pb.SEX_MALE if row["sexe"] == "M" else pb.SEX_FEMALE,
                            birth_date=birth)


@dataclass
class Secured:
    core: Realtime
    book: TokenBook
    port: int
    channel: grpc.Channel
    small: SmallRegister
    tokens: dict[str, str]  # role -> token
    audit: AuditTrail


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    small = build_small_register(tmp_path_factory.mktemp("sec"), persons=80)
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=1.0))
    core.batch.runner = fx.slow_batch(0.0)  # StartRun must not run Splink here
    book = TokenBook(core.register, allow_open=True)
    tokens = {role: book.issue(f"test {role}", role)[1] for role in ROLES}
    audit = AuditTrail(core.register)
    core.closers.append(audit.close)
    server, port = create_server(core, port=0, tokens=book, audit=audit)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Secured(core, book, port, channel, small, tokens, audit)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def _calls(s: Secured) -> dict[str, Callable[[Any], Any]]:
    """One well-formed call per RPC, taking the call metadata."""
    ls, bs = pb_grpc.LinkageServiceStub(s.channel), pb_grpc.BatchServiceStub(s.channel)
    admin = pb_grpc.AdminServiceStub(s.channel)
    review = pb_grpc.ReviewServiceStub(s.channel)
    uid, row = next(iter(s.small.rows.items()))
    uid_b = list(s.small.rows)[1]
    source, key = uid.split(":", 1)
    pid = s.core.person_by_record(source, key).person_id
    n = iter(range(10**6))
    return {
        "Resolve": lambda md: ls.Resolve(pb.ResolveRequest(person=person(row)), metadata=md,
                                         timeout=10),
        "Enrol": lambda md: ls.Enrol(pb.EnrolRequest(
            source="mis_api", record_key=f"SEC-{next(n)}", person=person(row)), metadata=md,
            timeout=10),
        "EnrolBatch": lambda md: ls.EnrolBatch(iter([pb.EnrolBatchRequest(records=[
            pb.EnrolRequest(source="mis_api", record_key=f"SEC-{next(n)}",
                            person=person(row))])]), metadata=md, timeout=10),
        "GetPerson": lambda md: ls.GetPerson(pb.GetPersonRequest(person_id=pid), metadata=md,
                                             timeout=10),
        "GetPersonByRecord": lambda md: ls.GetPersonByRecord(pb.GetPersonByRecordRequest(
            record=pb.RecordRef(source=source, record_key=key)), metadata=md, timeout=10),
        "ListProgrammes": lambda md: ls.ListProgrammes(pb.ListProgrammesRequest(
            person_id=pid), metadata=md, timeout=10),
        "WatchChanges": lambda md: list(ls.WatchChanges(pb.WatchChangesRequest(
            after_seq=0, follow=False, max_events=2), metadata=md, timeout=10)),
        "StartRun": lambda md: bs.StartRun(pb.StartRunRequest(), metadata=md, timeout=10),
        "GetRun": lambda md: bs.GetRun(pb.GetRunRequest(), metadata=md, timeout=10),
        "WatchRun": lambda md: list(bs.WatchRun(pb.WatchRunRequest(), metadata=md,
                                                timeout=10)),
        "IssueToken": lambda md: admin.IssueToken(pb.IssueTokenRequest(
            name=f"matrix {next(n)}", role="reviewer"), metadata=md, timeout=10),
        "ListTokens": lambda md: admin.ListTokens(pb.ListTokensRequest(), metadata=md,
                                                  timeout=10),
        "RevokeToken": lambda md: admin.RevokeToken(pb.RevokeTokenRequest(
            token_id="00000000"), metadata=md, timeout=10),
        "FindByIdentifier": lambda md: ls.FindByIdentifier(pb.FindByIdentifierRequest(
            identifier=pb.Identifier(type="RECORD_KEY", value=key), source=source),
            metadata=md, timeout=10),
        "GetPersons": lambda md: ls.GetPersons(pb.GetPersonsRequest(person_ids=[pid]),
                                               metadata=md, timeout=10),
        "ListProgrammePersons": lambda md: ls.ListProgrammePersons(
            pb.ListProgrammePersonsRequest(programme=source, page_size=5), metadata=md,
            timeout=10),
        "ListChanges": lambda md: ls.ListChanges(pb.ListChangesRequest(page_size=5),
                                                 metadata=md, timeout=10),
        "ListReviewItems": lambda md: review.ListReviewItems(pb.ListReviewItemsRequest(),
                                                             metadata=md, timeout=10),
        "GetReviewItem": lambda md: review.GetReviewItem(pb.GetReviewItemRequest(
            item_id="R999999", viewer="matrix"), metadata=md, timeout=10),
        "DecideReviewItem": lambda md: review.DecideReviewItem(pb.DecideReviewItemRequest(
            item_id="R999999", decision=pb.REVIEW_DECISION_KIND_DEFER, reviewer="matrix"),
            metadata=md, timeout=10),
        "ExplainPair": lambda md: review.ExplainPair(pb.ExplainPairRequest(
            record_a=pb.RecordRef(source=source, record_key=key),
            record_b=pb.RecordRef(source=uid_b.split(":", 1)[0],
                                  record_key=uid_b.split(":", 1)[1])), metadata=md,
            timeout=10),
    }


def _code(call: Callable[[Any], Any], md: Any) -> grpc.StatusCode:
    try:
        call(md)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_every_rpc_of_the_services_is_in_the_authorisation_table() -> None:
    for service in SERVICE_NAMES:
        desc = pb.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[-1]]
        for m in desc.methods:
            assert f"/{service}/{m.name}" in METHOD_ROLES, f"{m.name}: add it to METHOD_ROLES"


def test_a_method_missing_from_the_table_is_denied_to_every_role(secured: Secured) -> None:
    guard = Authorise(secured.book, table={})
    for role in ROLES:
        with pytest.raises(PermissionDenied):
            guard.principal("/linkage.v1.LinkageService/Resolve", bearer(secured.tokens[role]))


def test_role_matrix_for_every_rpc(secured: Secured) -> None:
    calls = _calls(secured)
    assert {m.rsplit("/", 1)[1] for m in METHOD_ROLES if "linkage.v1" in m} == set(calls)
    seen = {}
    for name, call in calls.items():
        method = next(m for m in METHOD_ROLES if m.endswith("/" + name))
        for role in ROLES:
            code = _code(call, bearer(secured.tokens[role]))
            seen[(name, role)] = code
            if role in METHOD_ROLES[method]:
                assert code not in AUTH_CODES, (name, role, code)
            else:
                assert code == grpc.StatusCode.PERMISSION_DENIED, (name, role, code)
        # No credentials at all, now that tokens exist: refused before anything runs.
        assert _code(call, None) == grpc.StatusCode.UNAUTHENTICATED, name
    # The allowed calls really succeeded (not merely "not refused").
    assert seen[("Resolve", "mis")] == grpc.StatusCode.OK
    assert seen[("Enrol", "mis")] == grpc.StatusCode.OK
    assert seen[("GetPerson", "reviewer")] == grpc.StatusCode.OK
    assert seen[("StartRun", "operator")] in (grpc.StatusCode.OK,
                                              grpc.StatusCode.FAILED_PRECONDITION)
    assert seen[("IssueToken", "admin")] == grpc.StatusCode.OK
    assert seen[("ListReviewItems", "reviewer")] == grpc.StatusCode.OK
    assert seen[("FindByIdentifier", "mis")] == grpc.StatusCode.OK
    assert seen[("GetPersons", "reviewer")] == grpc.StatusCode.OK
    assert seen[("ExplainPair", "reviewer")] == grpc.StatusCode.OK
    assert seen[("GetReviewItem", "reviewer")] == grpc.StatusCode.NOT_FOUND  # no such item
    assert seen[("RevokeToken", "admin")] == grpc.StatusCode.NOT_FOUND  # no such token


def test_wrong_malformed_and_revoked_tokens_are_unauthenticated(secured: Secured) -> None:
    call = _calls(secured)["Resolve"]
    good = secured.tokens["mis"]
    token_id = good.split("_")[1]
    forged = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    for md in (bearer(forged), bearer("lk_deadbeef_" + "x" * 43), bearer("x" * 5000),
               (("authorization", "Basic dXNlcjpwYXNz"),), (("authorization", "Bearer"),)):
        with pytest.raises(grpc.RpcError) as caught:
            call(md)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert caught.value.details() == "missing or invalid credentials"  # the same, always
    # Revoke a second mis token: it stops working at once, the others keep working.
    tid, other = secured.book.issue("to revoke", "mis")
    assert _code(call, bearer(other)) == grpc.StatusCode.OK
    assert secured.book.revoke(tid)
    with pytest.raises(grpc.RpcError) as caught:
        call(bearer(other))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.details() == "missing or invalid credentials"
    assert _code(call, bearer(good)) == grpc.StatusCode.OK
    assert token_id in {r.token_id for r in secured.book.tokens() if r.live}


def test_admin_service_issues_and_revokes_tokens_at_once(secured: Secured) -> None:
    admin = pb_grpc.AdminServiceStub(secured.channel)
    md = bearer(secured.tokens["admin"])
    made = admin.IssueToken(pb.IssueTokenRequest(name="nutrition MIS", role="mis",
                                                 sources=["mis_api"]), metadata=md, timeout=10)
    assert made.token.startswith("lk_") and made.token_info.role == "mis"
    assert list(made.token_info.sources) == ["mis_api"]
    resolve = _calls(secured)["Resolve"]
    assert _code(resolve, bearer(made.token)) == grpc.StatusCode.OK  # usable at once
    listed = admin.ListTokens(pb.ListTokensRequest(), metadata=md, timeout=10)
    assert made.token_info.token_id in {t.token_id for t in listed.tokens}
    assert made.token not in str(listed)
    gone = admin.RevokeToken(pb.RevokeTokenRequest(token_id=made.token_info.token_id),
                             metadata=md, timeout=10)
    assert gone.HasField("revoked_at")
    assert _code(resolve, bearer(made.token)) == grpc.StatusCode.UNAUTHENTICATED  # at once
    with pytest.raises(grpc.RpcError) as caught:
        admin.IssueToken(pb.IssueTokenRequest(name="x", role="root"), metadata=md, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        admin.IssueToken(pb.IssueTokenRequest(name="x", role="operator", sources=["a"]),
                         metadata=md, timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_health_is_open_and_denials_leak_nothing(secured: Secured) -> None:
    health = health_pb2_grpc.HealthStub(secured.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == \
        health_pb2.HealthCheckResponse.SERVING
    ls = pb_grpc.LinkageServiceStub(secured.channel)
    with pytest.raises(grpc.RpcError) as caught:
        ls.GetPerson(pb.GetPersonRequest(person_id="P-0000000000"),
                     metadata=bearer(secured.tokens["operator"]), timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.details() == "LinkageService/GetPerson is not permitted for this client"


def test_tokens_are_stored_hashed(secured: Secured) -> None:
    cur = secured.core.register.cursor()
    try:
        stored = repr(cur.execute("SELECT * FROM api_tokens").fetchall())
    finally:
        cur.close()
    for token in secured.tokens.values():
        assert token not in stored and token.split("_", 2)[2] not in stored


def test_mis_token_limited_to_its_sources(secured: Secured) -> None:
    _, limited = secured.book.issue("nutrition MIS", "mis", sources=["mis_api"])
    ls = pb_grpc.LinkageServiceStub(secured.channel)
    row = next(iter(secured.small.rows.values()))
    ok = ls.Enrol(pb.EnrolRequest(source="mis_api", record_key="LIM-1", person=person(row)),
                  metadata=bearer(limited), timeout=10)
    assert ok.person_id.startswith("P-")
    with pytest.raises(grpc.RpcError) as caught:
        ls.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="LIM-2",
                                 person=person(row)), metadata=bearer(limited), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:  # one record outside: the whole stream
        ls.EnrolBatch(iter([pb.EnrolBatchRequest(records=[
            pb.EnrolRequest(source="mis_api", record_key="LIM-3", person=person(row)),
            pb.EnrolRequest(source="cash_transfer", record_key="LIM-4", person=person(row))])]),
            metadata=bearer(limited), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as caught:
        ls.GetPersonByRecord(pb.GetPersonByRecordRequest(record=pb.RecordRef(
            source="civil_registry", record_key="CR00000")), metadata=bearer(limited),
            timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    cur = secured.core.register.cursor()
    try:
        got = cur.execute("SELECT uid FROM records WHERE uid LIKE '%:LIM-%' ORDER BY uid"
                          ).fetchall()
    finally:
        cur.close()
    assert got == [("mis_api:LIM-1",)]  # nothing of the refused calls was written


# --- transport ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def open_small(tmp_path_factory: pytest.TempPathFactory) -> SmallRegister:
    return build_small_register(tmp_path_factory.mktemp("tls"), persons=40)


def _tls_server(small: SmallRegister, pki: Pki, *, mutual: bool):  # noqa: ANN202
    from linkage.config import TlsConfig

    core = Realtime.open(small.project)
    tls = TlsConfig(cert=pki.server.cert, key=pki.server.key,
                    client_ca=pki.ca.cert if mutual else None)
    server, port = create_server(core, port=0, tls=tls)
    server.start()
    return core, server, port


def _resolve(channel: grpc.Channel, small: SmallRegister) -> pb.ResolveResponse:
    row = next(iter(small.rows.values()))
    return pb_grpc.LinkageServiceStub(channel).Resolve(
        pb.ResolveRequest(person=person(row)), timeout=5)


def test_tls_server_refuses_a_plaintext_client(open_small: SmallRegister, pki: Pki) -> None:
    core, server, port = _tls_server(open_small, pki, mutual=False)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            assert _resolve(ch, open_small).candidates
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as caught:
                _resolve(ch, open_small)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None).wait()
        core.close()


def test_mutual_tls_refuses_unknown_ca_and_missing_client_certificate(
        open_small: SmallRegister, pki: Pki) -> None:
    core, server, port = _tls_server(open_small, pki, mutual=True)
    root = pki.ca.cert.read_bytes()
    try:
        def channel(client: Any) -> grpc.Channel:
            key, cert = (None, None) if client is None else (client.key.read_bytes(),
                                                             client.cert.read_bytes())
            return grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(
                root_certificates=root, private_key=key, certificate_chain=cert))

        with channel(pki.client) as ch:
            assert _resolve(ch, open_small).candidates
        for client in (pki.stranger_client, None):
            with channel(client) as ch:
                with pytest.raises(grpc.RpcError) as caught:
                    _resolve(ch, open_small)
                assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(None).wait()
        core.close()


def test_create_server_refuses_plaintext_off_loopback(open_small: SmallRegister) -> None:
    core = Realtime.open(open_small.project)
    try:
        with pytest.raises(ValueError, match="plaintext gRPC on 0.0.0.0 refused"):
            create_server(core, host="0.0.0.0", port=0)
    finally:
        core.close()


def _linkage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkage", *args], capture_output=True,
                          text=True, timeout=120)


def test_serve_needs_tls_or_explicit_insecure_on_loopback(open_small: SmallRegister) -> None:
    p = str(open_small.project.path)
    no_tls = _linkage("serve", "-p", p, "--port", "0")
    assert no_tls.returncode == 2
    assert "serve.tls: no TLS certificate configured" in no_tls.stderr
    assert "--insecure" in no_tls.stderr
    exposed = _linkage("serve", "-p", p, "--port", "0", "--host", "0.0.0.0", "--insecure")
    assert exposed.returncode == 2
    assert "plaintext is only served on loopback, not on 0.0.0.0" in exposed.stderr


def test_tls_settings_are_validated(tmp_path: Path, pki: Pki) -> None:
    (tmp_path / "s.csv").write_text("id,prenom\n1,Awa\n")
    (tmp_path / "s.yaml").write_text("name: s\nkind: programme\nprogramme: S\npath: s.csv\n"
                                     "format: csv\nrecord_key: id\n"
                                     "columns: {given_name: prenom}\n")
    base = "name: x\nsources: [s.yaml]\n"
    cases = {
        f"serve: {{tls: {{cert: {pki.server.cert}}}}}": "serve.tls.key: required key",
        f"serve: {{tls: {{cert: nope.crt, key: {pki.server.key}}}}}":
            "serve.tls.cert: file not found",
        "serve: {insecure: maybe}": "serve.insecure: expected true or false",
        "serve: {tls: {cert: a, key: b, ca: c}}": "serve.tls.ca: unknown key",
    }
    for setting, expected in cases.items():
        (tmp_path / "project.yaml").write_text(base + setting + "\n")
        with pytest.raises(ConfigError) as caught:
            load_project(tmp_path / "project.yaml")
        assert expected in str(caught.value), (setting, str(caught.value))
    (tmp_path / "project.yaml").write_text(
        base + f"serve: {{tls: {{cert: {pki.server.cert}, key: {pki.server.key}, "
               f"client_ca: {pki.ca.cert}}}}}\n")
    tls = load_project(tmp_path / "project.yaml").serve.tls
    assert tls is not None and tls.client_ca == pki.ca.cert


def test_token_cli_issue_list_revoke(tmp_path: Path) -> None:
    small = build_small_register(tmp_path, persons=20)
    p = str(small.project.path)
    issued = _linkage("token", "issue", "-p", p, "--name", "cash MIS", "--role", "mis",
                      "--source", "cash_transfer")
    assert issued.returncode == 0, issued.stderr
    token = issued.stdout.strip()
    assert token.startswith("lk_") and "not shown again" in issued.stderr
    token_id = token.split("_")[1]
    listed = _linkage("token", "list", "-p", p)
    assert listed.returncode == 0
    assert token_id in listed.stdout and "cash MIS [cash_transfer]" in listed.stdout
    assert token not in listed.stdout and token.split("_", 2)[2] not in listed.stdout
    assert _linkage("token", "revoke", "-p", p, token_id).returncode == 0
    again = _linkage("token", "revoke", "-p", p, token_id)
    assert again.returncode == 8 and "no live token" in again.stderr
    bad_role = _linkage("token", "issue", "-p", p, "--name", "x", "--role", "root")
    assert bad_role.returncode == 2
    con = duckdb.connect(str(small.project.register), read_only=True)
    try:
        rows = con.execute("SELECT role, revoked_at IS NOT NULL FROM api_tokens").fetchall()
    finally:
        con.close()
    assert rows == [("mis", True)]


# --- audit ----------------------------------------------------------------------------


def _audit_rows(s: Secured, after: int) -> list[tuple]:
    assert s.audit.flush()
    return sorted(r for r in query_audit(s.core.register, limit=10_000) if r[0] > after)


def _last_seq(s: Secured) -> int:
    assert s.audit.flush()
    rows = query_audit(s.core.register, limit=1)
    return rows[0][0] if rows else 0


def test_audit_rows_of_each_call(secured: Secured) -> None:
    calls = _calls(secured)
    mis = bearer(secured.tokens["mis"])
    uid, _ = next(iter(secured.small.rows.items()))
    source, key = uid.split(":", 1)
    pid = secured.core.person_by_record(source, key).person_id
    start = _last_seq(secured)
    for name in ("Resolve", "Enrol", "EnrolBatch", "GetPerson", "GetPersonByRecord",
                 "ListProgrammes", "WatchChanges", "GetRun"):
        calls[name](mis if name != "GetRun" else bearer(secured.tokens["operator"]))
    refused = _code(calls["GetPerson"], bearer(secured.tokens["operator"]))
    anonymous = _code(calls["GetPerson"], bearer("lk_00000000_" + "x" * 43))
    assert (refused, anonymous) == (grpc.StatusCode.PERMISSION_DENIED,
                                    grpc.StatusCode.UNAUTHENTICATED)
    rows = _audit_rows(secured, start)
    by_method = {}
    for _seq, _at, client, role, method, outcome, persons, keys, detail in rows:
        by_method.setdefault(method, []).append((client, role, outcome, persons or [],
                                                 keys or [], detail))
    assert "BatchService/GetRun" not in by_method  # no personal data: not audited
    mis_client = f"test mis ({secured.tokens['mis'].split('_')[1]})"
    (resolve,) = by_method["LinkageService/Resolve"]
    assert resolve[:3] == (mis_client, "mis", "OK") and resolve[3]  # candidates' IDs
    (enrol,) = by_method["LinkageService/Enrol"]
    assert enrol[2] == "OK" and enrol[4][0].startswith("mis_api:SEC-") and enrol[3]
    (batch,) = by_method["LinkageService/EnrolBatch"]
    assert batch[2] == "OK" and len(batch[4]) == 1 and batch[5] == "1 record(s)"
    ok, denied, unknown = by_method["LinkageService/GetPerson"]
    assert ok[:3] == (mis_client, "mis", "OK") and pid in ok[3] and uid in ok[4]
    assert denied[1:3] == ("operator", "PERMISSION_DENIED") and denied[0].startswith("test op")
    assert unknown[:3] == ("unauthenticated", None, "UNAUTHENTICATED")
    (by_record,) = by_method["LinkageService/GetPersonByRecord"]
    assert by_record[2] == "OK" and uid in by_record[4] and pid in by_record[3]
    (programmes,) = by_method["LinkageService/ListProgrammes"]
    assert programmes[3] == [pid]
    (watch,) = by_method["LinkageService/WatchChanges"]
    assert watch[2] == "OK" and watch[3] and watch[5] == "events seq 1..2"
    # No personal data in the trail: neither the names nor the birth dates sent.
    row = secured.small.rows[uid]
    text = repr(rows)
    assert row["prenom"] not in text and row["nom"] not in text
    assert row["date_naissance"].split("/")[-1] not in text.replace(pid, "")


def test_audit_log_is_queried_by_person_client_and_time(secured: Secured) -> None:
    uid, _ = next(iter(secured.small.rows.items()))
    source, key = uid.split(":", 1)
    pid = secured.core.person_by_record(source, key).person_id
    _calls(secured)["GetPerson"](bearer(secured.tokens["reviewer"]))
    assert secured.audit.flush()
    reviewer_id = secured.tokens["reviewer"].split("_")[1]
    mine = query_audit(secured.core.register, client=reviewer_id)
    assert mine and all(r[2].endswith(f"({reviewer_id})") for r in mine)
    about = query_audit(secured.core.register, person_id=pid)
    assert about and all(pid in r[6] for r in about)
    import datetime as dt
    future = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(hours=1)
    assert query_audit(secured.core.register, since=future) == []
    assert query_audit(secured.core.register, until=future)
    # Bound parameters: a hostile filter is a value, not SQL.
    assert query_audit(secured.core.register, client="x' OR 1=1 --") == []


def test_linkage_serve_with_tls_from_the_project_file(tmp_path: Path, pki: Pki) -> None:
    small = build_small_register(tmp_path, persons=20)
    with (small.root / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"serve: {{tls: {{cert: {pki.server.cert}, key: {pki.server.key}}}}}\n")
    p = str(small.project.path)
    # Off loopback with TLS but no token: every call would be refused, so it will not start.
    exposed = _linkage("serve", "-p", p, "--port", "0", "--host", "0.0.0.0")
    assert exposed.returncode == 2 and "no API token issued" in exposed.stderr
    proc = subprocess.Popen([sys.executable, "-m", "linkage", "serve", "-p", p, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "serving on" in line, proc.stderr.read() if proc.poll() is not None else line
        port = int(line.rsplit(":", 1)[1])
        creds = grpc.ssl_channel_credentials(root_certificates=pki.ca.cert.read_bytes())
        with grpc.secure_channel(f"localhost:{port}", creds) as ch:
            assert _resolve(ch, small).candidates
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            with pytest.raises(grpc.RpcError) as caught:
                _resolve(ch, small)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert "OPEN MODE" in err  # loopback, no token issued: said loudly
    assert "(TLS, register" in err


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=st.one_of(
    st.text(max_size=300),
    st.builds(lambda t: f"Bearer {t}", st.text(max_size=300)),
    st.builds(lambda a, b: f"Bearer lk_{a}_{b}", st.text(max_size=20), st.text(max_size=60))))
def test_fuzzed_credentials_are_unauthenticated_never_internal(secured: Secured,
                                                               header: str) -> None:
    header = header.replace("\x00", "")  # metadata values cannot carry NUL or newlines
    header = "".join(ch for ch in header if 0x20 <= ord(ch) < 0x7f)
    ls = pb_grpc.LinkageServiceStub(secured.channel)
    try:
        ls.GetPerson(pb.GetPersonRequest(person_id="P-0000000000"),
                     metadata=(("authorization", header),), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED, (header, exc.details())
        assert exc.details() == "missing or invalid credentials"
    else:
        raise AssertionError(f"accepted {header!r}")


def test_revoking_every_token_does_not_reopen_the_server(tmp_path: Path) -> None:
    small = build_small_register(tmp_path, persons=10)
    core = Realtime.open(small.project)
    try:
        book = TokenBook(core.register, allow_open=True)
        server, port = create_server(core, port=0, tokens=book)
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                assert _resolve(ch, small).candidates  # open mode: no token ever issued
                token_id, _ = book.issue("only one", "mis")
                assert book.revoke(token_id)
                with pytest.raises(grpc.RpcError) as caught:
                    _resolve(ch, small)
                assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        finally:
            server.stop(None).wait()
    finally:
        core.close()
