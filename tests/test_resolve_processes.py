"""Resolve scored in several processes (``serve.resolve_processes``, issue 15).

Through the real server and generated stubs: the scoring processes give the answers
the serving process gives, a Resolve sent after an Enrol's answer finds the enrolled
record (read your writes), a batch publish forks new scoring processes from the new
index, a dead one is left out, and SIGTERM ends the server and all of them within the
grace period.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import service_fixtures as fx
from test_service import details

from linkage.config import ConfigError, load_project
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
_ENV = dict(os.environ, PYTHONUNBUFFERED="1",
            PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
GRACE = 2.0


@pytest.fixture(scope="module")
def pooled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.RunningServer]:
    """The real server with Resolve scored in two forked processes."""
    from linkage.realtime.core import Realtime, RealtimeOptions
    from linkage.service.server import create_server

    small = fx.build_small_register(tmp_path_factory.mktemp("pool"), persons=120)
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=1.0,
                                                                resolve_processes=2))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield fx.RunningServer(core, server, port, channel, small)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def _answer(resp: pb.ResolveResponse) -> list[tuple]:
    return [(c.person_id, c.best_record.record_key, round(c.match_weight, 9),
             c.records_compared, [(e.comparison, e.level, round(e.match_weight, 9))
                                  for e in c.evidence], c.golden.SerializeToString())
            for c in resp.candidates]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_scoring_processes_answer_what_the_serving_process_answers(
        pooled: fx.RunningServer) -> None:
    core = pooled.core
    stub = pb_grpc.LinkageServiceStub(pooled.channel)
    rows = list(pooled.small.rows.values())[:60]
    before = core.pool.answered
    pooled_answers = [_answer(stub.Resolve(pb.ResolveRequest(person=details(r)), timeout=10))
                      for r in rows]
    assert core.pool.answered - before == len(rows)  # all scored by the scoring processes
    pool, core.pool = core.pool, None  # the same calls scored in the serving process
    try:
        local = [_answer(stub.Resolve(pb.ResolveRequest(person=details(r)), timeout=10))
                 for r in rows]
    finally:
        core.pool = pool
    assert pooled_answers == local
    assert sum(1 for a in local if a) >= len(rows) * 0.9  # the register's own records


def test_a_resolve_after_an_enrol_finds_the_enrolled_record(pooled: fx.RunningServer) -> None:
    stub = pb_grpc.LinkageServiceStub(pooled.channel)
    names = [("Zeynab", "Qorvathi"), ("Ilyas", "Brummedal"), ("Nafissa", "Torwenik"),
             ("Gaspard", "Ulmiqvist"), ("Ramata", "Hoxleby"), ("Yaya", "Strevadin")]
    for k, (given, surname) in enumerate(names):  # round robin over the scoring processes
        person = pb.PersonDetails(name=pb.Name(given_name=given, surname=surname),
                                  sex=pb.SEX_FEMALE if k % 2 == 0 else pb.SEX_MALE,
                                  birth_date=pb.BirthDate(year=1950 + 7 * k, month=3,
                                                          day=k + 1))
        assert not stub.Resolve(pb.ResolveRequest(person=person), timeout=10).candidates
        enrolled = stub.Enrol(pb.EnrolRequest(source="mis_api", record_key=f"POOL-{k}",
                                              person=person), timeout=10)
        assert enrolled.outcome == pb.ENROL_OUTCOME_CREATED
        for _ in range(2):  # both scoring processes, the very next calls
            got = stub.Resolve(pb.ResolveRequest(person=person), timeout=10)
            assert got.candidates, k
            assert got.candidates[0].person_id == enrolled.person_id
            assert got.candidates[0].best_record.record_key == f"POOL-{k}"
            assert got.candidates[0].is_match
    assert pooled.core.pool.live == 2


def test_a_batch_publish_forks_new_scoring_processes(pooled: fx.RunningServer) -> None:
    core = pooled.core
    old = list(core.pool.pids)
    b = pb_grpc.BatchServiceStub(pooled.channel)
    core.batch.runner = fx.slow_batch(0.2)
    try:
        run = b.StartRun(pb.StartRunRequest(), timeout=5)
        deadline = time.monotonic() + 30
        while b.GetRun(pb.GetRunRequest(run_id=run.run_id), timeout=5).state in (
                pb.RUN_STATE_RUNNING,) or core.pool.pids == old:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        core.batch.runner = None
    assert set(core.pool.pids).isdisjoint(old)
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in old):  # the old ones answered what they had, and ended
        assert time.monotonic() < deadline
        time.sleep(0.05)
    stub = pb_grpc.LinkageServiceStub(pooled.channel)
    row = next(iter(pooled.small.rows.values()))
    before = core.pool.answered
    assert stub.Resolve(pb.ResolveRequest(person=details(row)), timeout=10).candidates
    assert core.pool.answered == before + 1


def test_a_dead_scoring_process_is_left_out(pooled: fx.RunningServer) -> None:
    core = pooled.core
    stub = pb_grpc.LinkageServiceStub(pooled.channel)
    row = next(iter(pooled.small.rows.values()))
    expected = _answer(stub.Resolve(pb.ResolveRequest(person=details(row)), timeout=10))
    victim = core.pool.pids[0]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while core.pool.live != 1:  # its pipe closes: it is left out
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for _ in range(4):
        got = stub.Resolve(pb.ResolveRequest(person=details(row)), timeout=10)
        assert _answer(got) == expected


def test_resolve_processes_is_validated(tmp_path: Path) -> None:
    small = fx.build_small_register(tmp_path, persons=20)
    text = small.project.path.read_text(encoding="utf-8")
    small.project.path.write_text(text + "serve: {resolve_processes: -1}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="resolve_processes"):
        load_project(small.project.path)
    small.project.path.write_text(text + "serve: {resolve_processes: 3}\n", encoding="utf-8")
    assert load_project(small.project.path).serve.resolve_processes == 3


def test_sigterm_stops_the_server_and_its_scoring_processes(tmp_path: Path) -> None:
    small = fx.build_small_register(tmp_path, persons=40)
    with small.project.path.open("a", encoding="utf-8") as fh:
        fh.write(f"serve: {{shutdown_grace_seconds: {GRACE}, resolve_processes: 2}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "linkage", "serve", "--insecure", "-p",
                             str(small.project.path), "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_ENV)
    try:
        line = ""
        deadline = time.monotonic() + 60
        while "serving on" not in line:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
        port = int(line.rsplit(":", 1)[1])
        children = [int(p) for p in subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True,
            check=False).stdout.split()]
        assert len(children) == 2, children
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = pb_grpc.LinkageServiceStub(ch)
            person = pb.PersonDetails(name=pb.Name(given_name="Oumou", surname="Xantrelle"),
                                      sex=pb.SEX_FEMALE, birth_date=pb.BirthDate(year=1990))
            enrolled = stub.Enrol(pb.EnrolRequest(source="mis_api", record_key="SIG-1",
                                                  person=person), timeout=10)
            for _ in range(2):
                got = stub.Resolve(pb.ResolveRequest(person=person), timeout=10)
                assert got.candidates[0].person_id == enrolled.person_id
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(GRACE + 10)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert took < GRACE + 5, took
    assert "Resolve scored in 2 process(es)" in err
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in children):
        assert time.monotonic() < deadline, [p for p in children if _alive(p)]
        time.sleep(0.05)
