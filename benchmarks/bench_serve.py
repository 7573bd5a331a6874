"""Benchmark: Resolve under 50 concurrent clients, with and without open change feeds,
on one or several serving processes.

Usage:
    python -m benchmarks.bench_serve --records 100000 [--dir DIR] [--clients 50]
        [--seconds 20] [--servers 1 2] [--subscribers 0 200] [--resolve-processes 0 2]

Steps (figures printed and written to ``DIR/bench_serve.json``):

1. build the register as :mod:`benchmarks.bench_resolve` does (generated Sahel-like
   population, real ingest, persons from the truth, hand-set model), then compute every
   person's golden record with :func:`linkage.register.store.refresh_golden` (timed: the
   cost a first publish pays);
2. for each number of serving processes: start them (``serve()`` subprocesses; with more
   than one, each on its own copy of the register file, since DuckDB lets one process
   hold a register: the copies stand in for "several processes sharing one index
   read-only", which the code does not do), open ``--subscribers`` change-feed
   followers (WatchChanges, follow = true) spread over them, then run ``--clients``
   client threads in 5 client processes for ``--seconds``, each sending Resolve calls
   round-robin over the servers, and health checks from one more thread;
3. report Resolve calls/s, p50 / p99 / max latency, errors, health p99, and the CPU
   time per call of the serving processes and of their scoring processes (from /proc:
   on a shared machine, throughput is the share of the cores the run got, CPU per call
   is what a call costs).

``--resolve-processes`` runs each configuration again with ``serve.resolve_processes``
set (one register, Resolve scored in that many processes forked from the server:
:mod:`linkage.realtime.workers`), from a copy of the project file beside it.

Client processes share the machine's cores with the servers: on 2 cores the figures
are what a client on the same machine sees, not the server's capacity alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pickle
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.bench_resolve import ROOT, build, pct, sample_records, start_server

CLIENT_PROCESSES = 5


def ensure_golden(project: Any) -> float | None:
    """Compute every person's golden record unless done; seconds taken (None: done)."""
    from linkage.register import store
    from linkage.register.database import Register

    reg = Register.open(project.register)
    try:
        cur = reg.cursor()
        (n,) = cur.execute("SELECT count(*) FROM person_golden").fetchall()[0]
        cur.close()
        if n:
            return None
        t0 = time.monotonic()
        with reg.transaction() as cur:
            changed = store.refresh_golden(cur, (), run_id="bench", full=True)
        took = time.monotonic() - t0
        print(f"golden records of {len(changed):,} persons in {took:.1f} s", flush=True)
        return took
    finally:
        reg.close()


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by process ``pid`` and by its live children
    (the scoring processes), from /proc: what a call costs the server whatever else
    runs on the machine."""
    tick = os.sysconf("SC_CLK_TCK")

    def own(p: int) -> float:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return own(pid), sum(own(k) for k in kids)


def with_resolve_processes(project_file: Path, processes: int) -> Path:
    """The project file, or a copy beside it (same relative paths) that sets
    ``serve.resolve_processes``."""
    import yaml

    if processes == 0:
        return project_file
    data = yaml.safe_load(project_file.read_text(encoding="utf-8"))
    data.setdefault("serve", {})["resolve_processes"] = processes
    out = project_file.with_name(f"project.rp{processes}.yaml")
    out.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return out


def client_main(ports: list[int], queries_file: Path, threads: int, seconds: float,
                offset: int) -> None:
    """One client process: ``threads`` threads of Resolve calls; prints JSON latencies."""
    import grpc

    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    queries = [pb.PersonDetails.FromString(b) for b in pickle.loads(queries_file.read_bytes())]
    stubs = [pb_grpc.LinkageServiceStub(grpc.insecure_channel(f"127.0.0.1:{p}"))
             for p in ports]
    for s in stubs:
        s.Resolve(pb.ResolveRequest(person=queries[0]), timeout=30)
    lat: list[float] = []
    errors: dict[str, int] = {}
    start = time.monotonic()
    stop = start + seconds

    def worker(i: int) -> None:
        j = offset + i
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                stubs[j % len(stubs)].Resolve(
                    pb.ResolveRequest(person=queries[j % len(queries)]), timeout=10)
                lat.append((time.perf_counter() - t0) * 1000)
            except grpc.RpcError as err:
                errors[err.code().name] = errors.get(err.code().name, 0) + 1
            j += threads * CLIENT_PROCESSES

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"lat": lat, "errors": errors, "seconds": time.monotonic() - start}),
          flush=True)


def _drain(call: Any) -> None:
    import grpc

    try:
        for _ in call:
            pass
    except grpc.RpcError:
        pass  # cancelled at the end of the run


def run_load(ports: list[int], queries_file: Path, clients: int, seconds: float,
             subscribers: int) -> dict[str, Any]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    channels = [grpc.insecure_channel(f"127.0.0.1:{p}") for p in ports]
    followers = []
    for i in range(subscribers):
        stub = pb_grpc.LinkageServiceStub(channels[i % len(channels)])
        call = stub.WatchChanges(pb.WatchChangesRequest(after_seq=10**12, follow=True))
        followers.append(call)
        threading.Thread(target=_drain, args=(call,), daemon=True).start()
    time.sleep(2.0 + subscribers / 100)  # let them open
    health = [health_pb2_grpc.HealthStub(c) for c in channels]
    hlat: list[float] = []
    herr = [0]
    stop = time.monotonic() + seconds + 3

    def checks() -> None:
        k = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            try:
                health[k % len(health)].Check(health_pb2.HealthCheckRequest(), timeout=5)
                hlat.append((time.perf_counter() - t0) * 1000)
            except grpc.RpcError:
                herr[0] += 1
            k += 1
            time.sleep(0.05)

    ht = threading.Thread(target=checks)
    ht.start()
    per = clients // CLIENT_PROCESSES
    procs = [subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_serve", "--client",
         ",".join(map(str, ports)), str(queries_file), str(per), str(seconds), str(k * per)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=str(ROOT))) for k in range(CLIENT_PROCESSES)]
    lat: list[float] = []
    errors: dict[str, int] = {}
    took = 0.0
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        got = json.loads(out.strip().splitlines()[-1])
        lat += got["lat"]
        took = max(took, got["seconds"])
        for k, v in got["errors"].items():
            errors[k] = errors.get(k, 0) + v
    ht.join()
    open_followers = sum(1 for c in followers if c.running())
    for c in followers:
        c.cancel()
    for c in channels:
        c.close()
    return {"servers": len(ports), "clients": per * CLIENT_PROCESSES, "subscribers": subscribers,
            "subscribers_open_at_end": open_followers, "seconds": round(took, 1),
            "calls": len(lat), "req_per_s": round(len(lat) / took, 1),
            "p50_ms": round(pct(lat, 0.5), 1), "p99_ms": round(pct(lat, 0.99), 1),
            "max_ms": round(max(lat), 1), "errors": errors,
            "health_checks": len(hlat), "health_p99_ms": round(pct(hlat, 0.99), 1),
            "health_errors": herr[0]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--client":
        client_main([int(p) for p in argv[1].split(",")], Path(argv[2]), int(argv[3]),
                    float(argv[4]), int(argv[5]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--servers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--subscribers", type=int, nargs="+", default=[0, 200])
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--resolve-processes", type=int, nargs="+", default=[0],
                    help="serve.resolve_processes of each run (0: scoring in the serving "
                         "process)")
    args = ap.parse_args(argv)
    load_at_start = os.getloadavg()[0]  # the machine is shared: say how busy it was
    directory = args.dir or ROOT / f"bench_serve_{args.records // 1000}k"
    project = build(directory, args.records)
    golden_seconds = ensure_golden(project)
    queries = [p.SerializeToString() for _, p in sample_records(project, args.queries)]
    queries_file = directory / "bench_serve_queries.pkl"
    queries_file.write_bytes(pickle.dumps(queries))
    results = []
    for rp, n in [(rp, n) for rp in args.resolve_processes for n in args.servers]:
        paths = [with_resolve_processes(project.path, rp)]
        for k in range(1, n):  # copies of the register: one process per file (DuckDB lock)
            copy = directory.parent / f"{directory.name}_replica{k}"
            if not copy.exists():
                shutil.copytree(directory, copy, ignore=shutil.ignore_patterns(
                    "*.pkl", "bench_serve.json", "*.wal"))
            paths.append(with_resolve_processes(copy / "project.yaml", rp))
        servers = [start_server(p) for p in paths]
        try:
            for subs in args.subscribers:
                load_before = os.getloadavg()[0]
                cpu0 = [cpu_seconds(proc.pid) for proc, _ in servers]
                r = run_load([port for _, port in servers], queries_file, args.clients,
                             args.seconds, subs)
                cpu1 = [cpu_seconds(proc.pid) for proc, _ in servers]
                # CPU per call, whatever the machine's load: the serving processes (the
                # GIL-bound part) and the scoring processes they fork
                calls = max(r["calls"], 1)
                r["serving_cpu_ms_per_call"] = round(
                    sum(b[0] - a[0] for a, b in zip(cpu0, cpu1, strict=True)) * 1000 / calls, 2)
                r["scoring_cpu_ms_per_call"] = round(
                    sum(b[1] - a[1] for a, b in zip(cpu0, cpu1, strict=True)) * 1000 / calls, 2)
                r["resolve_processes"] = rp
                r["load_average_before"] = round(load_before, 1)
                r["load_average_after"] = round(os.getloadavg()[0], 1)
                print(json.dumps(r), flush=True)
                results.append(r)
        finally:
            for proc, _ in servers:
                proc.terminate()
                proc.wait(60)
    figures = {"date": dt.date.today().isoformat(),
               "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
                          f"{platform.python_version()}, load average at start "
                          f"{load_at_start:.1f}",
               "command": "python -m benchmarks.bench_serve " + " ".join(argv),
               "golden_seconds": golden_seconds, "runs": results}
    (directory / "bench_serve.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
