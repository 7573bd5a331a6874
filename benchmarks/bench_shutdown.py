"""Benchmark: SIGTERM after an undecodable EnrolBatch message (issue 15.2).

Usage:
    python -m benchmarks.bench_shutdown --repetitions 20 --grace 5

Each repetition starts a real ``linkage serve`` on a small generated register (built
once, 2,000 records, by :func:`benchmarks.bench_resolve.build`) with
``serve: {shutdown_grace_seconds: GRACE}`` in its project file, enrols one record,
opens an ``EnrolBatch`` stream whose first message is bytes that do not decode as an
``EnrolBatchRequest`` (sent through a generic ``stream_unary`` with identity
serializers) and keeps the client's side of the stream open, then sends SIGTERM and
times the exit. A repetition passes when the process exits 0 within ``GRACE + 5`` s,
the corrupt message was answered INVALID_ARGUMENT, the enrolled record is in the
register and the register file can be opened for writing again (released).

``--launcher raw-grpcio`` serves with grpcio's own decode path (the one that answers
INTERNAL and can leave the call unfinished, so that a bare ``server.stop(grace).wait()``
never returns) to show that the bounded shutdown holds even then.

Prints one line per repetition and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CORRUPT = b"\xff\xff\xff\xff"  # a field with wire type 7: never a valid message

LAUNCHERS = {
    "serve": None,  # python -m linkage serve
    "raw-grpcio": ("import sys; import linkage.service.server as srv; "
                   "from linkage.config import load_project; "
                   "srv.tolerant = lambda d: d; "
                   "srv.serve(load_project(sys.argv[1]), port=0, insecure=True)"),
}


def set_grace(project_path: Path, grace: float) -> None:
    lines = [ln for ln in project_path.read_text(encoding="utf-8").splitlines()
             if not ln.startswith("serve:")]
    lines.append(f"serve: {{shutdown_grace_seconds: {grace}}}")
    project_path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def start(project_path: Path, launcher: str) -> tuple[subprocess.Popen, int]:
    code = LAUNCHERS[launcher]
    args = (["-m", "linkage", "serve", "-p", str(project_path), "--port", "0"] if code is None
            else ["-c", code, str(project_path)])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while True:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("server did not start: " + proc.stderr.read()[-2000:])
        if line.startswith("serving on"):
            return proc, int(line.rsplit(":", 1)[1])
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start in 120 s")


def one(project_path: Path, register: Path, grace: float, launcher: str, rep: int,
        timeout: float) -> dict[str, Any]:
    import duckdb
    import grpc

    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    proc, port = start(project_path, launcher)
    got: dict[str, Any] = {}
    release = threading.Event()
    key = f"SHUTDOWN-{launcher}-{rep}-{time.time_ns()}"
    exited = True
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        enrolled = pb_grpc.LinkageServiceStub(ch).Enrol(pb.EnrolRequest(
            source="bench_api", record_key=key, person=pb.PersonDetails(
                name=pb.Name(given_name="Awa", surname="Diarra"), sex=pb.SEX_FEMALE)),
            timeout=30)
        call = ch.stream_unary("/linkage.v1.LinkageService/EnrolBatch",
                               request_serializer=None, response_deserializer=None)

        def messages() -> Any:
            yield CORRUPT
            release.wait(120)  # the client keeps its side of the stream open

        def run() -> None:
            try:
                call(messages(), timeout=120)
                got["code"] = "OK"
            except grpc.RpcError as exc:
                got["code"] = exc.code().name

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            exited = False
            proc.kill()
            proc.wait(10)
        took = time.monotonic() - t0
        release.set()
    _, err = proc.communicate(timeout=10)
    try:
        con = duckdb.connect(str(register))  # fails if the register is still locked
        stored = con.execute("SELECT count(*) FROM records WHERE record_key = ?",
                             [key]).fetchall()[0][0]
        con.close()
        released = True
    except duckdb.Error:
        released, stored = False, 0
    ok = (exited and proc.returncode == 0 and took < grace + 5 and released
          and stored == 1)
    return {"rep": rep, "seconds": round(took, 2), "exit": proc.returncode if exited else
            "killed", "stream_status": got.get("code"), "enrol": pb.EnrolOutcome.Name(
                enrolled.outcome), "record_stored": stored == 1, "register_released": released,
            "forced": "calls still open" in err or "still busy" in err, "ok": ok}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repetitions", type=int, default=20)
    ap.add_argument("--grace", type=float, default=5.0,
                    help="serve.shutdown_grace_seconds written to the project file")
    ap.add_argument("--launcher", choices=sorted(LAUNCHERS), default="serve")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench/shutdown"))
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=None,
                    help="kill the server this long after SIGTERM (default grace + 30)")
    args = ap.parse_args(argv)

    from benchmarks.bench_resolve import build
    from linkage.config import load_project
    from linkage.register.database import Register
    from linkage.register.store import add_source

    project = build(args.dir, args.records)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            add_source(cur, "bench_api", "programme", "Bench MIS", replace=False)
    finally:
        reg.close()
    set_grace(project.path, args.grace)
    load_project(project.path)  # the setting is valid
    rows = []
    for rep in range(args.repetitions):
        row = one(project.path, project.register, args.grace, args.launcher, rep,
                  args.timeout or args.grace + 30)
        rows.append(row)
        print(json.dumps(row), flush=True)
    secs = [r["seconds"] for r in rows]
    summary = {
        "benchmark": "bench_shutdown", "launcher": args.launcher, "grace": args.grace,
        "limit_seconds": args.grace + 5, "repetitions": len(rows),
        "passed": sum(r["ok"] for r in rows),
        "forced_after_grace": sum(r["forced"] for r in rows),
        "seconds_min": min(secs), "seconds_median": round(statistics.median(secs), 2),
        "seconds_max": max(secs), "stream_statuses": sorted({r["stream_status"] for r in rows}),
        "python": platform.python_version(), "cpus": os.cpu_count(),
    }
    print(json.dumps(summary, indent=2))
    return 0 if summary["passed"] == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
