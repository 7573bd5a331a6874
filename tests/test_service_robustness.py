"""The gRPC API against hostile input and at shutdown (issues 13.5 and 15.2).

* every RPC answers an undecodable message INVALID_ARGUMENT (grpcio alone: INTERNAL);
* string fields have a length limit and refuse control characters, with a field
  violation; error details stay small whatever the request (200 bad identifiers, an
  unknown run ID of 9,000 characters);
* EnrolBatch streams are capped in records and in response size, and a refused stream
  enrols nothing;
* SIGTERM after a corrupt stream message ends ``linkage serve`` within grace + 5 s, every
  time, also when grpcio leaves a call unfinished or a handler never returns;
* a hypothesis fuzz run throws malformed requests at every RPC of a running server while
  valid traffic goes on: every bad request gets a proper status, every valid call
  succeeds, and nothing is written for a refused request.
"""

from __future__ import annotations

import itertools
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import grpc
import pytest
import service_fixtures as fx
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from linkage.config import ConfigError, load_project
from linkage.service.limits import ServiceLimits, enrol_result_bytes
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
IDENTITY = {"request_serializer": None, "response_deserializer": None}
BAD_STATUSES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.DATA_LOSS}
CORRUPT = b"\xff\xff\xff\xff"  # a field with wire type 7: never a valid message
#: Client-side limit on trailing metadata a default channel accepts without risk.
TRAILERS_LIMIT = 8 * 1024

#: Every request-taking method of the server: (path, request streaming, response streaming).
METHODS = {
    "/linkage.v1.LinkageService/Resolve": (False, False),
    "/linkage.v1.LinkageService/Enrol": (False, False),
    "/linkage.v1.LinkageService/EnrolBatch": (True, False),
    "/linkage.v1.LinkageService/GetPerson": (False, False),
    "/linkage.v1.LinkageService/GetPersonByRecord": (False, False),
    "/linkage.v1.LinkageService/ListProgrammes": (False, False),
    "/linkage.v1.LinkageService/WatchChanges": (False, True),
    "/linkage.v1.BatchService/StartRun": (False, False),
    "/linkage.v1.BatchService/GetRun": (False, False),
    "/linkage.v1.BatchService/WatchRun": (False, True),
    "/grpc.health.v1.Health/Check": (False, False),
    "/grpc.health.v1.Health/Watch": (False, True),
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": (True, True),
}


# ----------------------------------------------------------------------------- a server


def _noop_batch(project: Any, *, register: Any, progress: Callable[[str], None],
                **_kw: Any) -> SimpleNamespace:
    """A batch run that writes nothing (StartRun from fuzzed bytes stays harmless)."""
    progress("run-noop: nothing to do")
    return SimpleNamespace(run_id="run-noop", model_version="test-model", summary={})


@dataclass
class Server:
    core: Any
    server: grpc.Server
    channel: grpc.Channel
    small: fx.SmallRegister
    limits: ServiceLimits

    @property
    def api(self) -> pb_grpc.LinkageServiceStub:
        return pb_grpc.LinkageServiceStub(self.channel)

    @property
    def batch(self) -> pb_grpc.BatchServiceStub:
        return pb_grpc.BatchServiceStub(self.channel)

    def uids(self) -> set[str]:
        return {u for (u,) in self.core._read(
            lambda cur: cur.execute("SELECT uid FROM records").fetchall())}


@pytest.fixture(scope="module")
def robust(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on a free loopback port, with a small stream cap (20 records)."""
    from linkage.realtime.core import Realtime, RealtimeOptions
    from linkage.service.server import create_server

    small = fx.build_small_register(tmp_path_factory.mktemp("robust"), persons=80)
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=1.0))
    core.batch.runner = _noop_batch
    limits = ServiceLimits(max_records_per_stream=20)
    server, port = create_server(core, port=0, max_receive_message_bytes=256 * 1024,
                                 limits=limits)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield Server(core, server, channel, small, limits)
    finally:
        channel.close()
        server.stop(None).wait(10)
        core.close()


def person(given: str = "Awa", surname: str = "Diarra") -> pb.PersonDetails:
    return pb.PersonDetails(name=pb.Name(given_name=given, surname=surname), sex=pb.SEX_FEMALE,
                            birth_date=pb.BirthDate(year=1984, month=2, day=11))


def violations(err: grpc.RpcError) -> list[tuple[str, str]]:
    status = rpc_status.from_call(err)
    assert status is not None, "no google.rpc.Status in the trailers"
    out = []
    for detail in status.details:
        bad = error_details_pb2.BadRequest()
        assert detail.Unpack(bad)
        out += [(v.field, v.description) for v in bad.field_violations]
    return out


def trailer_bytes(err: grpc.RpcError) -> int:
    md = err.trailing_metadata() or ()
    return sum(len(k) + len(v) for k, v in md) + len((err.details() or "").encode()) * 3


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value


# ----------------------------------------------------------------------------- decoding


@pytest.mark.parametrize("method", sorted(METHODS))
def test_undecodable_message_is_invalid_argument_on_every_method(robust: Server,
                                                                 method: str) -> None:
    streaming_in, streaming_out = METHODS[method]
    ch = robust.channel
    if streaming_in and streaming_out:
        call = ch.stream_stream(method, **IDENTITY)
        err = refused(lambda: list(call(iter([CORRUPT]), timeout=5)))
    elif streaming_in:
        call = ch.stream_unary(method, **IDENTITY)
        err = refused(lambda: call(iter([b"", CORRUPT]), timeout=5))
    elif streaming_out:
        call = ch.unary_stream(method, **IDENTITY)
        err = refused(lambda: list(call(CORRUPT, timeout=5)))
    else:
        call = ch.unary_unary(method, **IDENTITY)
        err = refused(lambda: call(CORRUPT, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (err.code(), err.details())
    assert "not a valid" in err.details() and "nothing was done" in err.details()


def test_corrupt_message_after_valid_ones_enrols_nothing(robust: Server) -> None:
    before = robust.uids()
    good = pb.EnrolBatchRequest(records=[pb.EnrolRequest(
        source="mis_api", record_key=f"DEC-{i}", person=person()) for i in range(3)])
    call = robust.channel.stream_unary("/linkage.v1.LinkageService/EnrolBatch", **IDENTITY)
    err = refused(lambda: call(iter([good.SerializeToString(), CORRUPT]), timeout=10))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "stream message 1" in err.details()
    assert robust.uids() == before


def test_invalid_utf8_in_a_string_field_is_invalid_argument(robust: Server) -> None:
    # GetPersonRequest.person_id (field 1, length-delimited) holding bytes that are not UTF-8
    call = robust.channel.unary_unary("/linkage.v1.LinkageService/GetPerson", **IDENTITY)
    err = refused(lambda: call(b"\x0a\x02\xc3\x28", timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------- error details


def test_two_hundred_bad_identifiers_give_bounded_details(robust: Server) -> None:
    p = person()
    p.identifiers.extend(pb.Identifier(type=f"PASSPORT-{i}", value="X") for i in range(200))
    err = refused(lambda: robust.api.Resolve(pb.ResolveRequest(person=p), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    got = violations(err)
    assert 1 <= len(got) <= 20 and got[0][0] == "person.identifiers[0].type"
    assert all(len(d) <= 200 for _, d in got)
    assert "more)" in err.details() and len(err.details()) <= 200
    assert trailer_bytes(err) < TRAILERS_LIMIT


def test_a_nine_thousand_character_run_id_is_invalid_argument(robust: Server) -> None:
    err = refused(lambda: robust.batch.GetRun(pb.GetRunRequest(run_id="R" * 9000), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.code()
    assert violations(err) == [("run_id", "too long: at most 200 characters")]
    assert trailer_bytes(err) < TRAILERS_LIMIT
    # an unknown run ID within the limit is NOT_FOUND, the echo clipped
    err = refused(lambda: robust.batch.GetRun(pb.GetRunRequest(run_id="é" * 200), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert len(err.details()) <= 200 and trailer_bytes(err) < TRAILERS_LIMIT


def test_worst_case_violations_fit_in_the_trailers() -> None:
    """Twenty violations of 200 four-byte characters each stay under 8 KiB of trailers."""
    from linkage.errors import InvalidRequest
    from linkage.service.server import ExceptionToStatus

    exc = InvalidRequest([("f" * 300 + str(i), "\U0001f600" * 300) for i in range(50)])
    status = ExceptionToStatus.status_for(exc)
    size = sum(len(k) + len(v) for k, v in status.trailing_metadata)
    assert size + len(status.details.encode()) * 3 < TRAILERS_LIMIT
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT


# ----------------------------------------------------------------------------- field limits


@pytest.mark.parametrize(("mutate", "field_path"), [
    (lambda r: setattr(r, "record_key", "K\x001"), "record_key"),
    (lambda r: setattr(r, "record_key", "K" * 201), "record_key"),
    (lambda r: setattr(r, "source", "mis_api\n"), "source"),
    (lambda r: setattr(r.person.name, "given_name", "Awa\x00"), "person.name.given_name"),
    (lambda r: setattr(r.person.name, "surname", "Dia\trra"), "person.name.surname"),
    (lambda r: setattr(r.person.name, "full_name", "A" * 500), "person.name.full_name"),
    (lambda r: setattr(r.person, "mother_name", "Oumou\u2028"), "person.mother_name"),
    (lambda r: r.person.identifiers.add(type="UIN", value="ML\x1b[2J"),
     "person.identifiers[0].value"),
    (lambda r: setattr(r.person.location, "village", "x" * 201), "person.location.village"),
])
def test_field_limits_and_control_characters(robust: Server, mutate: Callable[[Any], None],
                                             field_path: str) -> None:
    before = robust.uids()
    req = pb.EnrolRequest(source="mis_api", record_key="LIM-1", person=person())
    mutate(req)
    err = refused(lambda: robust.api.Enrol(req, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_path in dict(violations(err)), violations(err)
    # the same record in a stream is REJECTED with the field at fault; the others go on
    ok = pb.EnrolRequest(source="mis_api", record_key=f"LIM-OK-{next(_keys)}",
                         person=person())
    resp = robust.api.EnrolBatch(iter([pb.EnrolBatchRequest(records=[req, ok])]), timeout=10)
    assert [r.outcome for r in resp.results][0] == pb.ENROL_OUTCOME_REJECTED
    assert resp.results[0].error_field == field_path
    assert len(resp.results[0].record_key) <= 200
    assert resp.results[1].outcome in (pb.ENROL_OUTCOME_CREATED, pb.ENROL_OUTCOME_LINKED)
    assert robust.uids() == before | {f"mis_api:{ok.record_key}"}


def test_control_characters_refused_in_look_ups(robust: Server) -> None:
    for call in (
        lambda: robust.api.GetPerson(pb.GetPersonRequest(person_id="P-\x00"), timeout=5),
        lambda: robust.api.ListProgrammes(pb.ListProgrammesRequest(person_id="x" * 201),
                                          timeout=5),
        lambda: robust.api.GetPersonByRecord(pb.GetPersonByRecordRequest(
            record=pb.RecordRef(source="mis_api", record_key="\x07")), timeout=5),
        lambda: robust.api.Resolve(pb.ResolveRequest(person=person(given="A\rB")), timeout=5),
        lambda: list(robust.batch.WatchRun(pb.WatchRunRequest(run_id="\x00"), timeout=5)),
    ):
        err = refused(call)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
        assert violations(err)


# ----------------------------------------------------------------------------- stream caps


def test_stream_over_the_record_cap_enrols_nothing(robust: Server) -> None:
    before = robust.uids()
    msgs = [pb.EnrolBatchRequest(records=[pb.EnrolRequest(
        source="mis_api", record_key=f"CAP-{m}-{i}", person=person()) for i in range(8)])
        for m in range(3)]
    err = refused(lambda: robust.api.EnrolBatch(iter(msgs), timeout=10))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "limit of 20 records" in err.details() and "nothing was enrolled" in err.details()
    assert robust.uids() == before
    # at the cap, it goes through
    resp = robust.api.EnrolBatch(iter(msgs[:2] + [pb.EnrolBatchRequest(
        records=msgs[2].records[:4])]), timeout=30)
    assert len(resp.results) == 20 and resp.rejected == 0


def test_default_cap_refuses_a_120000_record_stream(robust: Server) -> None:
    """The issue's case: 120,000 records made a 5.3 MB response after storing everything."""
    from linkage.service.server import create_server

    server, port = create_server(robust.core, port=0)  # default limits: 50,000 records
    server.start()
    before = robust.uids()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            api = pb_grpc.LinkageServiceStub(ch)
            # no person: each record would be REJECTED, so this stays fast
            msgs = (pb.EnrolBatchRequest(records=[pb.EnrolRequest(
                source="mis_api", record_key=f"BIG-{m}-{i}") for i in range(2000)])
                for m in range(60))
            err = refused(lambda: api.EnrolBatch(msgs, timeout=60))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "50,000 records" in err.details()
            # long keys: the response size guard refuses before the 4 MB a client accepts
            keys = "K" * 190
            msgs = (pb.EnrolBatchRequest(records=[pb.EnrolRequest(
                source="mis_api", record_key=f"{keys}{m:03d}{i:04d}") for i in range(2000)])
                for m in range(12))
            err = refused(lambda: api.EnrolBatch(msgs, timeout=60))
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "would exceed 4,000,000 bytes" in err.details()
            # just under it, a default client takes the answer
            msgs = (pb.EnrolBatchRequest(records=[pb.EnrolRequest(
                source="mis_api", record_key=f"{keys}{m:03d}{i:04d}") for i in range(2000)])
                for m in range(8))
            resp = api.EnrolBatch(msgs, timeout=60)
            assert resp.rejected == 16_000 and resp.ByteSize() < 4_000_000
    finally:
        server.stop(None).wait(10)
    assert robust.uids() == before


def test_response_size_bound_is_an_upper_bound() -> None:
    from linkage.errors import InvalidRequest
    from linkage.service import convert
    from linkage.service.limits import ENROL_BATCH_COUNTERS_BYTES

    results: list[Any] = []
    keys = []
    bound = ENROL_BATCH_COUNTERS_BYTES
    for i in range(3000):
        key = ("é" * (i % 200)) or "k"
        if i % 3:
            res = SimpleNamespace(person_id="P-7K3QZ1MXC", outcome="linked",
                                  match_probability=0.987654321)
            bound += enrol_result_bytes(i, key)
        else:
            res = InvalidRequest([("person.name", "required: " + "x" * (i % 300))])
            bound += enrol_result_bytes(i, key, convert.rejection(res))
        results.append(res)
        keys.append(key)
    actual = convert.enrol_batch_response(results, keys).ByteSize()
    assert actual <= bound <= actual * 1.05


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(("text", "key"), [
    ("serve: {shutdown_grace: 3}\n", "serve.shutdown_grace"),
    ("serve: {shutdown_grace_seconds: -1}\n", "serve.shutdown_grace_seconds"),
    ("serve: {shutdown_grace_seconds: soon}\n", "serve.shutdown_grace_seconds"),
    ("serve: {max_records_per_stream: 0}\n", "serve.max_records_per_stream"),
    ("serve: {max_records_per_stream: 1000000}\n", "serve.max_records_per_stream"),
    ("serve: 5\n", "serve"),
])
def test_serve_settings_are_validated(tmp_path: Path, text: str, key: str) -> None:
    small = fx.build_small_register(tmp_path, persons=5)
    with (small.root / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write(text)
    with pytest.raises(ConfigError) as err:
        load_project(small.root / "project.yaml")
    assert err.value.key == key and str(small.root / "project.yaml") in str(err.value)


def test_serve_settings_load(tmp_path: Path) -> None:
    small = fx.build_small_register(tmp_path, persons=5)
    assert small.project.serve.shutdown_grace_seconds == 30.0
    assert small.project.serve.max_records_per_stream == 50_000
    with (small.root / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write("serve: {shutdown_grace_seconds: 2.5, max_records_per_stream: 1000}\n")
    p = load_project(small.root / "project.yaml")
    assert (p.serve.shutdown_grace_seconds, p.serve.max_records_per_stream) == (2.5, 1000)


# ----------------------------------------------------------------------------- shutdown

_ENV = dict(os.environ, PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))

#: A server whose grpcio decode path is the bare one (the one that can hang stop()).
_RAW_GRPCIO_SERVER = """
import sys
import linkage.service.server as srv
from linkage.config import load_project
srv.tolerant = lambda deserializer: deserializer
srv.serve(load_project(sys.argv[1]), port=0, insecure=True)
"""

#: A server whose Resolve never returns (a handler that ignores cancellation).
_STUCK_HANDLER_SERVER = """
import sys, time
import linkage.service.server as srv
from linkage.config import load_project
from linkage.realtime.core import Realtime
Realtime.resolve = lambda self, *a, **k: time.sleep(600)
srv.serve(load_project(sys.argv[1]), port=0, insecure=True)
"""


def start_server(args: list[str]) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_ENV)
    line = ""
    deadline = time.monotonic() + 60
    while "serving on" not in line:
        line = proc.stdout.readline()
        assert line or proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline
    return proc, int(line.rsplit(":", 1)[1])


def corrupt_stream_then_sigterm(proc: subprocess.Popen, port: int, *,
                                enrol_key: str | None = None) -> tuple[float, dict]:
    """Open an EnrolBatch stream, send a corrupt message, keep the stream open, SIGTERM.

    Returns the seconds from SIGTERM to exit, and what the stream's call got.
    """
    got: dict[str, Any] = {}
    release = threading.Event()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        if enrol_key:
            got["enrol"] = pb_grpc.LinkageServiceStub(ch).Enrol(pb.EnrolRequest(
                source="mis_api", record_key=enrol_key, person=person()), timeout=10)
        call = ch.stream_unary("/linkage.v1.LinkageService/EnrolBatch", **IDENTITY)

        def messages() -> Iterator[bytes]:
            yield CORRUPT
            release.wait(60)  # the client keeps its side of the stream open

        def run() -> None:
            try:
                got["response"] = call(messages(), timeout=60)
            except grpc.RpcError as exc:
                got["code"] = exc.code()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            release.set()
        took = time.monotonic() - t0
    return took, got


def _grace_project(tmp_path: Path, grace: float) -> fx.SmallRegister:
    small = fx.build_small_register(tmp_path, persons=40)
    with (small.root / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write(f"serve: {{shutdown_grace_seconds: {grace}}}\n")
    return small


def _register_is_free(small: fx.SmallRegister) -> bool:
    con = duckdb.connect(str(small.project.register))  # raises if still locked
    con.close()
    return True


GRACE = 2.0


def test_sigterm_after_a_corrupt_stream_message_exits_within_grace(tmp_path: Path) -> None:
    """The issue's benchmark, 3 times (benchmarks/bench_shutdown.py runs it 20 times)."""
    small = _grace_project(tmp_path, GRACE)
    for rep in range(3):
        proc, port = start_server(["-m", "linkage", "serve", "--insecure", "-p",
                         str(small.project.path),
                                   "--port", "0"])
        try:
            took, got = corrupt_stream_then_sigterm(proc, port, enrol_key=f"SIG-{rep}")
        finally:
            if proc.poll() is None:
                proc.kill()
            _, err = proc.communicate(timeout=10)
        assert got["code"] == grpc.StatusCode.INVALID_ARGUMENT
        assert got["enrol"].outcome in (pb.ENROL_OUTCOME_CREATED, pb.ENROL_OUTCOME_LINKED)
        assert proc.returncode == 0, err
        assert took < GRACE + 5, (rep, took)
        assert _register_is_free(small)
    con = duckdb.connect(str(small.project.register), read_only=True)
    assert con.execute("SELECT count(*) FROM records WHERE uid LIKE 'mis_api:SIG-%'"
                       ).fetchall() == [(3,)]
    con.close()


@pytest.mark.parametrize("script", [_RAW_GRPCIO_SERVER, _STUCK_HANDLER_SERVER],
                         ids=["grpcio-unfinished-call", "handler-never-returns"])
def test_shutdown_is_bounded_whatever_the_calls_do(tmp_path: Path, script: str) -> None:
    small = _grace_project(tmp_path, GRACE)
    proc, port = start_server(["-c", script, str(small.project.path)])
    try:
        if script is _STUCK_HANDLER_SERVER:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
                fut = pb_grpc.LinkageServiceStub(ch).Resolve.future(
                    pb.ResolveRequest(person=person()), timeout=60)
                time.sleep(0.5)
                t0 = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                proc.wait(60)
                took = time.monotonic() - t0
                with pytest.raises(grpc.RpcError):
                    fut.result(timeout=10)
        else:
            took, got = corrupt_stream_then_sigterm(proc, port)
            assert got["code"] == grpc.StatusCode.INTERNAL  # grpcio's own answer
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert took < GRACE + 5, took
    assert "shut down in" in err
    assert _register_is_free(small)


# ----------------------------------------------------------------------------- fuzz

_HOSTILE_CHARS = ["\x00", "\x01", "\x08", "\t", "\n", "\r", "\x1b", "\x7f", "\x85", "\x9f",
                  "\u2028", "\u2029"]
_text = st.text(st.characters(codec="utf-8"), max_size=12)
#: Strings always refused: a control character somewhere, or too long.
bad_string = st.one_of(
    st.builds(lambda a, c, b: a + c + b, _text, st.sampled_from(_HOSTILE_CHARS), _text),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\U0001f600", " "]),
              st.integers(201, 3000)),
)
#: Strings that may or may not be accepted (odd Unicode, RTL marks, combining accents ...).
odd_string = st.one_of(
    _text, st.sampled_from(["", " ", "\u200f\u200e", "e\u0301" * 40, "ﷺ", "𝕸𝖔𝖚𝖘𝖘𝖆",
                            "\ufeffAwa", "P-", "NaN", "-1", "'; DROP TABLE records; --",
                            "%s%s%n", "../../etc/passwd", "\U0010ffff", "İı", "ß" * 100]))

_PERSON_STRINGS = ["name.given_name", "name.second_name", "name.surname", "name.father_name",
                   "name.grandfather_name", "name.full_name", "phone_number",
                   "location.region", "location.commune", "location.village", "household_id",
                   "mother_name", "identifiers[0].type", "identifiers[0].value",
                   "age.reference_date"]
#: (field path in PersonDetails, values always refused).
_PERSON_BAD_NUMBERS = [
    ("birth_date.year", [0, -1, 999, 10000, 2**31 - 1, -2**31]),
    ("birth_date.month", [13, -1, 2**31 - 1]),
    ("birth_date.day", [32, -1, 2**31 - 1]),
    ("birth_date.precision", [4, 99, -7]),
    ("sex", [3, 99, -1]),
    ("age.age", [121, -1, 2**31 - 1]),
]


def _set(msg: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for part in parents:
        msg = getattr(msg, part)
    setattr(msg, last, value)


def _set_person(p: pb.PersonDetails, path: str, value: Any) -> None:
    if path.startswith("identifiers[0]."):
        ident = p.identifiers[0] if p.identifiers else p.identifiers.add(type="UIN", value="X1")
        setattr(ident, path.split(".", 1)[1], value)
    elif path.startswith("age."):
        p.ClearField("birth_date")
        p.age.reference_date = p.age.reference_date or "2020-01-01"
        setattr(p.age, path.split(".", 1)[1], value)
    else:
        _set(p, path, value)


@st.composite
def hostile_person(draw: st.DrawFn) -> tuple[pb.PersonDetails, bool]:
    """(PersonDetails, surely refused)."""
    p = person(draw(st.sampled_from(["Awa", "Moussa", "Ousmane"])),
               draw(st.sampled_from(["Diarra", "Traore", "Keita"])))
    kind = draw(st.sampled_from(["string", "number", "odd", "empty"]))
    if kind == "string":
        _set_person(p, draw(st.sampled_from(_PERSON_STRINGS)), draw(bad_string))
        return p, True
    if kind == "number":
        path, values = draw(st.sampled_from(_PERSON_BAD_NUMBERS))
        _set_person(p, path, draw(st.sampled_from(values)))
        return p, True
    if kind == "empty":
        return pb.PersonDetails(sex=pb.SEX_MALE), True
    for _ in range(draw(st.integers(1, 3))):
        _set_person(p, draw(st.sampled_from(_PERSON_STRINGS)), draw(odd_string))
    return p, False


_keys = itertools.count()


@st.composite
def _bytes_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    method = draw(st.sampled_from(sorted(METHODS)))
    data = draw(st.one_of(st.binary(max_size=64), st.just(CORRUPT),
                          st.binary(max_size=16).map(lambda b: b + CORRUPT)))
    return method, data, False  # valid by chance: any proper answer


@st.composite
def _resolve_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    p, sure = draw(hostile_person())
    req = pb.ResolveRequest(person=p)
    extra = draw(st.sampled_from(["", "max", "prob"]))
    if extra == "max":
        req.max_candidates = draw(st.sampled_from([-1, 101, 2**31 - 1, -2**31]))
        sure = True
    elif extra == "prob":
        req.min_match_probability = draw(st.sampled_from([math.nan, -0.1, 1.5, math.inf]))
        sure = True
    return "Resolve", req, sure


@st.composite
def _enrol_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    p, sure = draw(hostile_person())
    req = pb.EnrolRequest(source="mis_api", record_key=f"H-{next(_keys)}", person=p)
    which = draw(st.sampled_from(["person", "source", "key", "unknown_source", "no_person"]))
    if which == "source":
        req.source, sure = draw(bad_string), True
    elif which == "key":
        req.record_key, sure = draw(bad_string), True
    elif which == "unknown_source":
        req.source, sure = draw(st.sampled_from(["nope", "mis_api:x", ""])), True
    elif which == "no_person":
        req.ClearField("person")
        sure = True
    return "Enrol", req, sure


@st.composite
def _batch_call(draw: st.DrawFn, corrupt: bool) -> tuple[str, Any, bool]:
    msgs = []
    for _ in range(draw(st.integers(1, 3))):
        recs = []
        for _ in range(draw(st.integers(0, 9))):
            p, _bad = draw(hostile_person())
            recs.append(pb.EnrolRequest(source="mis_api", record_key=f"H-{next(_keys)}",
                                        person=p))
        msgs.append(pb.EnrolBatchRequest(records=recs))
    if corrupt:  # a corrupt message somewhere: the whole stream is refused
        raw = [m.SerializeToString() for m in msgs]
        raw.insert(draw(st.integers(0, len(raw))), draw(st.sampled_from(
            [CORRUPT, b"\x0a\x05\x12\x03\xc3\x28\x41", b"\x0a"])))
        return "EnrolBatch/raw", raw, True
    return "EnrolBatch", msgs, False  # judged record by record


@st.composite
def _lookup_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    method = draw(st.sampled_from(["GetPerson", "ListProgrammes", "GetPersonByRecord"]))
    value = draw(st.one_of(bad_string, odd_string))
    if method == "GetPersonByRecord":
        rec = pb.RecordRef(source="mis_api", record_key="x")
        setattr(rec, draw(st.sampled_from(["source", "record_key"])), value)
        return method, pb.GetPersonByRecordRequest(record=rec), True  # never a record
    req = (pb.GetPersonRequest if method == "GetPerson" else pb.ListProgrammesRequest)(
        person_id=value)
    return method, req, True  # never an issued person ID


@st.composite
def _watch_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    req = pb.WatchChangesRequest(after_seq=draw(st.sampled_from([-1, -2**63, 0, 10**15])),
                                 max_events=draw(st.sampled_from([-1, -2**31, 0, 2])))
    return "WatchChanges", req, req.after_seq < 0 or req.max_events < 0


@st.composite
def _run_call(draw: st.DrawFn) -> tuple[str, Any, bool]:
    method = draw(st.sampled_from(["GetRun", "WatchRun"]))
    req = (pb.GetRunRequest if method == "GetRun" else pb.WatchRunRequest)(
        run_id=draw(st.one_of(bad_string, odd_string.filter(bool))))
    return method, req, True  # never a run ID


#: (method, request or raw bytes, surely refused), every kind about as often.
hostile_call = st.one_of(_bytes_call(), _bytes_call(), _resolve_call(), _enrol_call(),
                         _batch_call(False), _batch_call(True), _lookup_call(), _watch_call(),
                         _run_call())


@dataclass
class Ledger:
    """What the fuzz run expects the register to hold."""

    accepted: set[str] = field(default_factory=set)  # uids a call said it enrolled
    lock: threading.Lock = field(default_factory=threading.Lock)
    valid_calls: int = 0
    valid_failures: list[str] = field(default_factory=list)
    hostile: dict[str, int] = field(default_factory=dict)

    def accept(self, uids: list[str]) -> None:
        with self.lock:
            self.accepted.update(uids)


def _check_refusal(err: grpc.RpcError, what: str) -> None:
    code = err.code()
    assert code not in BAD_STATUSES, f"{what}: {code} {err.details()}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        vs = violations(err)
        assert 1 <= len(vs) <= 20 and all(len(d) <= 200 for _, d in vs), (what, vs)
    assert trailer_bytes(err) < TRAILERS_LIMIT, what


_ENROLLED = (pb.ENROL_OUTCOME_CREATED, pb.ENROL_OUTCOME_LINKED, pb.ENROL_OUTCOME_UNCHANGED,
             pb.ENROL_OUTCOME_UPDATED, pb.ENROL_OUTCOME_QUEUED)


def _hostile(s: Server, ledger: Ledger, method: str, request: Any, sure: bool) -> None:
    ch = s.channel
    ledger.hostile[method.split("/")[-1]] = ledger.hostile.get(method.split("/")[-1], 0) + 1
    try:
        if isinstance(request, bytes):
            streaming_in, streaming_out = METHODS[method]
            if streaming_in and streaming_out:
                call = ch.stream_stream(method, **IDENTITY)
                resp = call(iter([request]), timeout=1)
                list(itertools.islice(resp, 3))
                resp.cancel()
            elif streaming_in:
                ch.stream_unary(method, **IDENTITY)(iter([request]), timeout=5)
            elif streaming_out:
                resp = ch.unary_stream(method, **IDENTITY)(request, timeout=0.5)
                list(itertools.islice(resp, 3))
                resp.cancel()
            else:
                ch.unary_unary(method, **IDENTITY)(request, timeout=5)
            return  # valid bytes by chance: any answer but a bad status is fine
        if method == "EnrolBatch/raw":
            ch.stream_unary("/linkage.v1.LinkageService/EnrolBatch", **IDENTITY)(
                iter(request), timeout=10)
            raise AssertionError("a stream with a corrupt message was accepted")
        if method == "EnrolBatch":
            records = [r for m in request for r in m.records]
            resp = s.api.EnrolBatch(iter(request), timeout=30)
            assert len(records) <= s.limits.max_records_per_stream
            assert len(resp.results) == len(records)
            ledger.accept([f"{r.source}:{r.record_key.strip()}" for r, res in
                           zip(records, resp.results, strict=True) if res.outcome in _ENROLLED])
            for res in resp.results:
                assert res.outcome in (*_ENROLLED, pb.ENROL_OUTCOME_REJECTED), res
                if res.outcome == pb.ENROL_OUTCOME_REJECTED:
                    assert res.error_field and res.error_reason and len(res.record_key) <= 200
            return
        stub = s.batch if method in ("GetRun", "WatchRun") else s.api
        fn = getattr(stub, method)
        if method in ("WatchChanges", "WatchRun"):
            resp = fn(request, timeout=0.5)
            list(itertools.islice(resp, 5))
            resp.cancel()
            assert not sure, f"{method} accepted {request}"
            return
        resp = fn(request, timeout=10)
        if method == "Enrol":
            ledger.accept([f"{resp.record.source}:{resp.record.record_key}"])
        assert not sure, f"{method} accepted {request!r:.300}"
    except grpc.RpcError as err:
        streams = ("WatchChanges", "WatchRun")
        if err.code() == grpc.StatusCode.CANCELLED and (
                method in streams or isinstance(request, bytes)):
            return  # cancelled by us after a few messages
        if method == "EnrolBatch" and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
            assert sum(len(m.records) for m in request) > s.limits.max_records_per_stream
        _check_refusal(err, f"{method} {request!r:.200}")


def _valid_traffic(s: Server, ledger: Ledger, stop: threading.Event, worker: int) -> None:
    """Calls that must all succeed while the fuzz run goes on."""
    known = next(u for u in s.small.rows if u.startswith("cash_transfer:"))
    src, key = known.split(":")
    pid = s.api.GetPersonByRecord(pb.GetPersonByRecordRequest(
        record=pb.RecordRef(source=src, record_key=key)), timeout=10).person_id
    health = health_pb2_grpc.HealthStub(s.channel)
    for n in itertools.count():
        if stop.is_set():
            return
        what = ("resolve", "enrol", "batch", "person", "watch", "health")[n % 6]
        try:
            if what == "resolve":
                r = s.api.Resolve(pb.ResolveRequest(person=person("Moussa", "Traore"),
                                                    max_candidates=3), timeout=10)
                assert r.model_version
            elif what == "enrol":
                uid_key = f"VALID-{worker}-{n}"
                r = s.api.Enrol(pb.EnrolRequest(source="mis_api", record_key=uid_key,
                                                person=person("Hawa", "Sangare")), timeout=10)
                assert r.outcome in _ENROLLED, r
                ledger.accept([f"mis_api:{uid_key}"])
            elif what == "batch":
                recs = [pb.EnrolRequest(source="mis_api", record_key=f"VALID-{worker}-{n}-{i}",
                                        person=person("Kadiatou", "Kone")) for i in range(3)]
                r = s.api.EnrolBatch(iter([pb.EnrolBatchRequest(records=recs)]), timeout=20)
                assert [x.outcome in _ENROLLED for x in r.results] == [True] * 3, r
                ledger.accept([f"mis_api:{x.record_key}" for x in recs])
            elif what == "person":
                got = s.api.GetPerson(pb.GetPersonRequest(person_id=pid), timeout=10)
                assert got.person_id
            elif what == "watch":
                evs = list(s.api.WatchChanges(pb.WatchChangesRequest(max_events=3), timeout=10))
                assert len(evs) == 3
            else:
                assert health.Check(health_pb2.HealthCheckRequest(), timeout=10).status == \
                    health_pb2.HealthCheckResponse.SERVING
            with ledger.lock:
                ledger.valid_calls += 1
        except (grpc.RpcError, AssertionError) as exc:
            detail = f"{exc.code()} {exc.details()}" if isinstance(exc, grpc.RpcError) else exc
            with ledger.lock:
                ledger.valid_failures.append(f"{what}: {detail}")


def test_fuzz_every_rpc_with_valid_traffic_alongside(robust: Server) -> None:
    before = robust.uids()
    ledger = Ledger()
    stop = threading.Event()
    workers = [threading.Thread(target=_valid_traffic, args=(robust, ledger, stop, w),
                                daemon=True) for w in range(3)]
    for w in workers:
        w.start()
    t0 = time.monotonic()

    @settings(max_examples=500, deadline=None, database=None, derandomize=False,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(hostile_call)
    def throw(call: tuple[str, Any, bool]) -> None:
        _hostile(robust, ledger, *call)

    try:
        throw()
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    took = time.monotonic() - t0
    assert not ledger.valid_failures, ledger.valid_failures[:5]
    assert ledger.valid_calls >= 30, ledger.valid_calls
    assert len(ledger.hostile) >= 12, ledger.hostile  # every kind of call was thrown
    assert took < 60, took
    # nothing was written for a refused request or a rejected record
    time.sleep(0.2)
    after = robust.uids()
    assert after - before == ledger.accepted - before, sorted(
        (after - before) ^ (ledger.accepted - before))[:10]
