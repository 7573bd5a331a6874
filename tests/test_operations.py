"""Operating the register while it is served: every read command works (from the
server's snapshot), backups are taken and restored with the same IDs, and no personal
data reaches the logs of a demo run or a served session. Real processes throughout."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import grpc
import pytest

from linkage.batch.pipeline import run
from linkage.config import load_project
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.realtime.core import PersonInput, Realtime
from linkage.register.snapshot import secret_path, snapshot_path
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc
from linkage.synthetic.generate import generate

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONUNBUFFERED="1")
PERSON_FIELDS = ("full_name", "given_name", "family_name", "father_name", "grandfather_name",
                 "mother_name", "phone", "national_id", "birth_date")


def linkage(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkage", *args], capture_output=True,
                          text=True, timeout=timeout, env=ENV, cwd=ROOT)


class Served:
    """`linkage serve` in a process, its output collected."""

    def __init__(self, project: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "linkage", "serve", "--insecure", "-p", str(project),
             "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=ENV, cwd=ROOT)
        line, deadline = "", time.monotonic() + 60
        while "serving on" not in line:
            line = self.proc.stdout.readline()
            assert line or self.proc.poll() is None, self.proc.stderr.read()
            assert time.monotonic() < deadline
        self.first_line = line
        self.port = int(line.rsplit(":", 1)[1])
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.api = pb_grpc.LinkageServiceStub(self.channel)

    def stop(self) -> str:
        """SIGTERM, wait, and return everything it printed."""
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0, err
        return self.first_line + out + err


def _wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated project with one published run; snapshots refreshed every second."""
    out = tmp_path_factory.mktemp("ops")
    generate(persons=300, profile="sahel", seed=11, out=out,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    with (out / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write("serve: {snapshot_seconds: 1}\n")
    run(load_project(out / "project.yaml"), progress=lambda _: None)
    return out


def _persons(register: Path) -> dict[str, str]:
    con = duckdb.connect(str(register), read_only=True)
    try:
        return dict(con.execute("SELECT uid, person_id FROM person_records").fetchall())
    finally:
        con.close()


def _details(given: str, family: str, year: int, phone: str = "") -> pb.PersonDetails:
    return pb.PersonDetails(name=pb.Name(given_name=given, surname=family), sex=pb.SEX_FEMALE,
                            birth_date=pb.BirthDate(year=year, month=3, day=14),
                            phone_number=phone)


def test_read_commands_work_while_serving(demo: Path, tmp_path: Path) -> None:
    project = demo / "project.yaml"
    register = demo / "register.duckdb"
    uids = sorted(_persons(register))[:2]
    server = Served(project)
    try:
        _wait_for(snapshot_path(register))
        enrolled = server.api.Enrol(pb.EnrolRequest(
            source="cash_transfer", record_key="OPS-1",
            person=_details("Kadidia", "Sissoko", 1990)), timeout=20)
        assert enrolled.person_id.startswith("P-")
        summary = linkage("summary", "-p", str(project))
        assert summary.returncode == 0, summary.stderr
        assert "persons:" in summary.stdout
        assert "reading its snapshot of" in summary.stderr
        export = linkage("export", "-p", str(project), "-o", str(tmp_path / "map.csv"))
        assert export.returncode == 0, export.stderr
        assert (tmp_path / "map.csv").read_text().count("\n") > 300
        explain = linkage("explain", "-p", str(project), *uids)
        assert explain.returncode == 0, explain.stderr
        assert "match probability" in explain.stdout.lower()
        # The enrolment and its audit row reach the snapshot within snapshot_seconds.
        deadline = time.monotonic() + 20
        while True:
            got = linkage("sql", "-p", str(project), "--csv",
                          "SELECT count(*) AS n FROM records WHERE uid = 'cash_transfer:OPS-1'")
            assert got.returncode == 0, got.stderr
            if got.stdout.split() == ["n", "1"]:
                break
            assert time.monotonic() < deadline, got.stdout
            time.sleep(0.5)
        audit = linkage("audit", "-p", str(project), "--person", enrolled.person_id)
        assert audit.returncode == 0, audit.stderr
        assert "LinkageService/Enrol" in audit.stdout and enrolled.person_id in audit.stdout
        # Analysts' SQL: a plain read-only DuckDB connection on the snapshot, no ID secret.
        con = duckdb.connect(str(snapshot_path(register)), read_only=True)
        try:
            assert con.execute("SELECT count(*) FROM meta WHERE key = 'id_secret'"
                               ).fetchall() == [(0,)]
            assert con.execute("SELECT count(*) FROM persons").fetchall()[0][0] > 0
        finally:
            con.close()
        refused = linkage("sql", "-p", str(project), "DELETE FROM persons")
        assert refused.returncode == 1 and "read-only" in refused.stderr.lower()
    finally:
        server.stop()


def test_backup_while_serving_restores_into_a_fresh_directory_with_the_same_ids(
        demo: Path, tmp_path: Path) -> None:
    project = demo / "project.yaml"
    register = demo / "register.duckdb"
    server = Served(project)
    try:
        _wait_for(secret_path(register))
        _wait_for(snapshot_path(register))
        time.sleep(1.5)  # the snapshot after any enrolment of the other test
        made = linkage("backup", "-p", str(project), "-o", str(tmp_path / "backup.duckdb"))
        assert made.returncode == 0, made.stderr
        assert "ID secret included" in made.stdout and "served" in made.stdout
        again = linkage("backup", "-p", str(project), "-o", str(tmp_path / "backup.duckdb"))
        assert again.returncode == 1 and "exists" in again.stderr
    finally:
        server.stop()
    original = _persons(register)

    # A fresh directory: the same project and sources, no register.
    fresh = tmp_path / "fresh"
    shutil.copytree(demo, fresh, ignore=shutil.ignore_patterns("register*", ".register*"))
    assert not (fresh / "register.duckdb").exists()
    restored = linkage("restore", "-p", str(fresh / "project.yaml"),
                       str(tmp_path / "backup.duckdb"))
    assert restored.returncode == 0, restored.stderr
    refused = linkage("restore", "-p", str(fresh / "project.yaml"),
                      str(tmp_path / "backup.duckdb"))
    assert refused.returncode == 1 and "--force" in refused.stderr
    not_backup = linkage("restore", "-p", str(fresh / "project.yaml"), "--force",
                         str(snapshot_path(register)))
    assert not_backup.returncode == 1 and "no ID secret" in not_backup.stderr
    assert _persons(fresh / "register.duckdb") == original

    # Served from the fresh directory: the same person IDs answer.
    server = Served(fresh / "project.yaml")
    try:
        for uid in sorted(original)[:25]:
            source, key = uid.split(":", 1)
            got = server.api.GetPersonByRecord(pb.GetPersonByRecordRequest(
                record=pb.RecordRef(source=source, record_key=key)), timeout=10)
            assert got.person_id == original[uid]
    finally:
        server.stop()

    # And the next ID issued is the same in both: the secret and the counter came back.
    newcomer = PersonInput({"given_name": "Zeinabou", "family_name": "Ouologuem",
                            "birth_date": "1931-03-14", "sex": "F"})
    issued = []
    for proj in (project, fresh / "project.yaml"):
        core = Realtime.open(load_project(proj))
        try:
            item = core.prepare_enrol("cash_transfer", "OPS-NEW", newcomer)
            issued.append(core.enrol(item, timeout=30).person_id)
        finally:
            core.close()
    assert issued[0] == issued[1] and issued[0].startswith("P-")

    # A disaster recovery from the same (now older) backup moves the counter on: the ID
    # just issued by the original is not issued again to someone else.
    later = tmp_path / "later"
    shutil.copytree(fresh, later, ignore=shutil.ignore_patterns("register*", ".register*"))
    moved = linkage("restore", "-p", str(later / "project.yaml"), "--skip-ids", "1000",
                    str(tmp_path / "backup.duckdb"))
    assert moved.returncode == 0 and "moved on by 1,000" in moved.stdout, moved.stderr
    assert _persons(later / "register.duckdb") == original
    core = Realtime.open(load_project(later / "project.yaml"))
    try:
        item = core.prepare_enrol("cash_transfer", "OPS-NEW", newcomer)
        after_skip = core.enrol(item, timeout=30).person_id
    finally:
        core.close()
    assert after_skip.startswith("P-") and after_skip != issued[0]


def _personal_values(register: Path, project: Path) -> set[str]:
    """Names, phone numbers, national IDs and birth dates of every record, as in the files."""
    proj = load_project(project)
    columns = {s.name: {s.columns[f] for f in PERSON_FIELDS if f in s.columns}
               for s in proj.sources}
    con = duckdb.connect(str(register), read_only=True)
    try:
        rows = con.execute("SELECT source, raw FROM records").fetchall()
    finally:
        con.close()
    values = set()
    for source, raw in rows:
        for col, value in json.loads(raw).items():
            if col in columns.get(source, ()) and isinstance(value, str):
                value = value.strip()
                if len(value) >= 6:  # "Awa" could be any word of a log line
                    values.add(value)
    return values


def _leaks(text: str, values: set[str]) -> list[str]:
    words = set(re.findall(r"[^\s,;:()\[\]{}'\"]+", text))
    lowered = text.lower()
    return sorted(v for v in values if v in words or (" " in v and v.lower() in lowered))


def test_no_personal_data_in_the_logs_of_a_demo_run_and_a_served_session(
        tmp_path: Path) -> None:
    demo_dir = tmp_path / "demo"
    done = linkage("demo", "--dir", str(demo_dir), "--persons", "300")
    assert done.returncode == 0, done.stderr
    values = _personal_values(demo_dir / "register.duckdb", demo_dir / "project.yaml")
    assert len(values) > 500  # the scan has something to find
    demo_log = done.stdout + done.stderr
    assert "persons:" in demo_log and "published" in demo_log  # the whole run was logged
    assert _leaks(demo_log, values) == []

    # A served session: good and bad calls, with details taken from the register.
    con = duckdb.connect(str(demo_dir / "register.duckdb"), read_only=True)
    try:
        names = con.execute(
            "SELECT raw->>'prenom', raw->>'nom' FROM records WHERE source = 'civil_registry' "
            "AND raw->>'prenom' <> '' AND raw->>'nom' <> '' ORDER BY uid LIMIT 20").fetchall()
        phones = con.execute(
            "SELECT regexp_replace(raw->>'tel', '[^0-9]', '', 'g') FROM records "
            "WHERE source = 'cash_transfer' AND length(regexp_replace(raw->>'tel', '[^0-9]', "
            "'', 'g')) = 8 ORDER BY uid LIMIT 20").fetchall()
        sample = [(g, f, p) for (g, f), (p,) in zip(names, phones, strict=False)]
        assert len(sample) == 20
    finally:
        con.close()
    sent: set[str] = set()
    server = Served(demo_dir / "project.yaml")
    try:
        for i, (given, family, phone) in enumerate(sample):
            person = _details(given.title(), family.title(), 1980 + i, phone)
            sent |= {given.title(), family.title(), phone}
            server.api.Resolve(pb.ResolveRequest(person=person), timeout=20)
            server.api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key=f"LOG-{i}",
                                             person=person), timeout=20)
            bad = [pb.EnrolRequest(source="no_such_source", record_key=f"B-{i}", person=person),
                   pb.EnrolRequest(source="cash_transfer", record_key=f"B-{i}",
                                   person=_details(given + "\x00", family, 1980)),
                   pb.EnrolRequest(source="cash_transfer", record_key=f"C-{i}",
                                   person=_details(given, family, 2999))]
            for req in bad:
                with pytest.raises(grpc.RpcError) as caught:
                    server.api.Enrol(req, timeout=20)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert given not in caught.value.details()
            with pytest.raises(grpc.RpcError):
                server.api.GetPerson(pb.GetPersonRequest(person_id=f"{family}-{phone}"),
                                     timeout=20)
    finally:
        served_log = server.stop()
    sent = {v for v in sent if len(v) >= 6}
    assert len(sent) > 20
    probe = sorted(sent)[0]
    assert _leaks(f"resolve {probe}: 3 candidates", sent) == [probe]  # the scan can fail
    assert _leaks(served_log, values | sent) == []
