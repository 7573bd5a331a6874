"""Benchmark: Resolve over gRPC (loopback) against a large register, vs Splink real time.

Usage:
    python -m benchmarks.bench_resolve --records 200000 [--dir bench_rt_200k] [--queries 2000]

Steps (each timed and printed, figures also written to ``DIR/bench_resolve.json``):

1. generate a Sahel-like population with :func:`benchmarks.generate.generate` sized for
   about ``--records`` records (skipped when ``DIR/project.yaml`` exists);
2. build the register: the real ingest (:func:`linkage.ingest.read.ingest_source`), persons
   from the generator's truth (a stand-in for the batch's clustering, which is not what
   is measured here), and a model with hand-set m/u on
   :func:`linkage.matching.model.build_settings` (latency does not depend on the m/u values);
3. start ``serve()`` in a subprocess on a free loopback port, send ``--queries``
   Resolve calls one at a time (latency p50 / p99), then from ``--clients`` threads for
   ``--seconds`` (throughput);
4. in the same run, time Splink's ``linker.inference.predict_between`` for one record
   against the same records (tf tables registered, the model's blocking rules).

Generating and ingesting 1,000,000 records takes several minutes; the register is reused
on the next run with the same ``--dir``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


#: A year from an age weighs as the stated year of the same gap (its twin level).
_AGE_TWINS = {
    "same year, one year from an age": "same year, one date imprecise",
    "year off by one, one year from an age": "year off by one, one date imprecise",
    "year off by two, one year from an age": "year off by two, one date imprecise",
    "years 3 to 5 apart, one year from an age": "years 1 to 5 apart",
}


def _level_mu(n: int) -> tuple[list[float], list[float]]:
    # n non-null levels, best first: m falls, u rises; the last (ELSE) takes the rest; a
    # comparison of more levels continues the sequences (m halving, u a little more).
    m = [0.80, 0.10, 0.05, 0.03, 0.01, 0.005, 0.003]
    u = [0.002, 0.004, 0.01, 0.03, 0.05, 0.08, 0.1]
    while len(m) < n - 1:
        m.append(m[-1] / 2)
        u.append(u[-1] + 0.02)
    m, u = m[: n - 1], u[: n - 1]
    return m + [max(1e-4, 1 - sum(m))], u + [max(1e-4, 1 - sum(u))]


def hand_model(version: str = "bench-model", prior: float = 1e-5) -> Any:
    """The built-in settings with plausible hand-set m and u on every level (the
    benchmarks' and the service tests' model: no training needed)."""
    from linkage.matching.model import Model, build_settings

    settings = build_settings().get_settings("duckdb").as_dict()
    settings["probability_two_random_records_match"] = prior
    for comp in settings["comparisons"]:
        levels = [lvl for lvl in comp["comparison_levels"] if not lvl.get("is_null_level")]
        twins = {lvl["label_for_charts"]: lvl for lvl in levels}
        aged = [lvl for lvl in levels if lvl["label_for_charts"] in _AGE_TWINS]
        levels = [lvl for lvl in levels if lvl not in aged]
        m, u = _level_mu(len(levels))
        for lvl, mi, ui in zip(levels, m, u, strict=True):
            lvl.setdefault("m_probability", mi)
            lvl["u_probability"] = ui
        for lvl in aged:
            twin = twins[_AGE_TWINS[lvl["label_for_charts"]]]
            lvl["m_probability"] = twin["m_probability"]
            lvl["u_probability"] = twin["u_probability"]
    return Model(version=version, settings=settings, metadata={"method": "hand-set (bench)"})


def build(directory: Path, records: int, seed: int = 1) -> Any:
    """Generate (if needed) and build the register; returns the project config."""
    import pyarrow as pa

    from linkage.config import load_project
    from linkage.ids.reconcile import IdAllocator
    from linkage.ingest.read import ingest_source
    from linkage.register.database import Register
    from linkage.synthetic.generate import generate

    if not (directory / "project.yaml").exists():
        t0 = time.monotonic()
        generate(persons=max(50, int(records / 1.146)), profile="sahel", seed=seed, out=directory)
        print(f"generated in {time.monotonic() - t0:.1f} s", flush=True)
    project = load_project(directory / "project.yaml")
    model_path = directory / "models" / "model.json"
    if not project.register.exists():
        hand_model().save(model_path)
        t0 = time.monotonic()
        reg = Register.open(project.register)
        now = dt.datetime(2026, 11, 23)
        with reg.transaction() as cur:
            for src in project.sources:
                rep = ingest_source(cur, src, now=now)
                print("  " + rep.line(), flush=True)
            import csv

            with (directory / "truth.csv").open(encoding="utf-8") as fh:
                truth_map = {f"{r['source']}:{r['record_key']}": r["person_id"]
                             for r in csv.DictReader(fh)}
            live = [u for (u,) in cur.execute(
                "SELECT uid FROM records WHERE status = 'active'").fetchall()]
            alloc = IdAllocator(b"bench-secret-" + str(seed).encode())
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('id_secret', ?)",
                        [(b"bench-secret-" + str(seed).encode()).hex()])
            ids: dict[str, str] = {}
            issued: dict[str, int] = {}
            seq = 0
            for u in sorted(live):
                label = truth_map.get(u, u)
                if label not in ids:
                    pid, seq = alloc.allocate(seq, issued)
                    issued[pid] = seq - 1
                    ids[label] = pid
            cur.register("stage_p", pa.table({"person_id": list(issued),
                                              "seq": list(issued.values())}))
            cur.execute("INSERT INTO persons SELECT person_id, 'live', seq, 'bench', 'bench' "
                        "FROM stage_p")
            cur.register("stage_pr", pa.table({"uid": live, "person_id": [
                ids[truth_map.get(u, u)] for u in live]}))
            cur.execute("INSERT INTO person_records SELECT uid, person_id FROM stage_pr")
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('id_next_seq', ?)", [str(seq)])
        reg.close()
        print(f"register built in {time.monotonic() - t0:.1f} s: {len(live):,} records, "
              f"{len(issued):,} persons", flush=True)
    text = (directory / "project.yaml").read_text(encoding="utf-8")
    if "model:" not in text:
        (directory / "project.yaml").write_text(text + "model: models/model.json\n",
                                                encoding="utf-8")
    return load_project(directory / "project.yaml")


def query_details(project: Any, n: int, seed: int = 7) -> list[Any]:
    """PersonDetails for ``n`` rows sampled from the project's source files."""
    return [p for _, p in sample_records(project, n, seed)]


def sample_records(project: Any, n: int, seed: int = 7, rate: float | None = None
                   ) -> list[tuple[str, Any]]:
    """(record uid, PersonDetails) of ``n`` rows sampled from the project's source files.

    ``rate`` is the share of rows read (default: enough for ``n`` out of a 1M register).
    """
    from linkage.ingest.read import READERS

    rng = random.Random(seed)
    out = []
    for src in project.sources:
        for path in src.paths:
            for _, values, _, _ in READERS[src.format](src, path):
                if values is None or rng.random() > (rate or 3 * n / 1_000_000 + 0.02):
                    continue
                p = details_of(src, values)
                if p is not None:
                    out.append((f"{src.name}:{(values.get(src.record_key) or '').strip()}", p))
    rng.shuffle(out)
    return out[:n]


def details_of(src: Any, values: dict[str, Any], *, full: bool = False) -> Any:
    """The PersonDetails an MIS would send for one source row (None: no name, or a date
    the API refuses).

    ``full`` also sends the household ID and an age with its reference date, as an MIS
    enrolling that roster's row would (Resolve queries leave them out).
    """
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.standardise import parse_birth_date, parse_sex

    orders = {"family_given": pb.NAME_ORDER_FAMILY_GIVEN,
              "given_family": pb.NAME_ORDER_GIVEN_FAMILY,
              "given_father_grandfather": pb.NAME_ORDER_GIVEN_FATHER_GRANDFATHER}
    raw = {f: (str(values.get(c) or "")).strip() for f, c in src.columns.items()}
    p = pb.PersonDetails()
    p.name.given_name = raw.get("given_name", "")
    p.name.surname = raw.get("family_name", "")
    p.name.father_name = raw.get("father_name", "")
    p.name.grandfather_name = raw.get("grandfather_name", "")
    if raw.get("full_name"):
        p.name.full_name = raw["full_name"]
        p.name.full_name_order = orders[src.name_order]
    try:
        sex = parse_sex(raw.get("sex"), src.sex_codes) if raw.get("sex") else None
        if raw.get("birth_date"):
            b = parse_birth_date(raw["birth_date"], src.birth_date_format)
            p.birth_date.year = b.year
            if b.precision in ("day", "month"):
                p.birth_date.month = b.month or 0
            if b.precision == "day":
                p.birth_date.day = b.day or 0
            p.birth_date.precision = {
                "day": pb.DATE_PRECISION_DAY, "month": pb.DATE_PRECISION_MONTH}.get(
                b.precision, pb.DATE_PRECISION_YEAR)
    except ValueError:
        return None
    p.sex = {"M": pb.SEX_MALE, "F": pb.SEX_FEMALE}.get(sex or "", pb.SEX_UNSPECIFIED)
    if raw.get("national_id"):
        p.identifiers.append(pb.Identifier(type="UIN", value=raw["national_id"]))
    p.phone_number = raw.get("phone", "")
    p.location.region = raw.get("region", "")
    p.location.commune = raw.get("commune", "")
    p.location.village = raw.get("village", "")
    p.mother_name = raw.get("mother_name", "")
    if full:
        p.household_id = raw.get("household_id", "")
        ref = src.age_reference_date
        if src.age_reference_column:
            ref = (str(values.get(src.age_reference_column) or "")).strip() or None
        if raw.get("age") and not raw.get("birth_date") and ref:
            try:
                p.age.age = int(float(raw["age"]))
            except ValueError:
                return None
            p.age.reference_date = str(ref)[:10]
    if not any((p.name.given_name, p.name.surname, p.name.full_name, p.name.father_name)):
        return None
    return p


def start_server(project_path: Path) -> tuple[subprocess.Popen, int]:
    launcher = ("import sys; from linkage.config import load_project; "
                "from linkage.service.server import serve; "
                "serve(load_project(sys.argv[1]), port=0, insecure=True)")
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", launcher, str(project_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    while True:
        line = proc.stdout.readline()
        if not line and proc.poll() is not None:
            raise RuntimeError("server did not start")
        if "real-time index" in line:
            print("  server: " + line.strip().split(": ", 1)[-1], flush=True)
        if line.startswith("serving on"):
            port = int(line.rsplit(":", 1)[1])
            print(f"server ready in {time.monotonic() - t0:.1f} s (port {port})", flush=True)
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
            return proc, port


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def bench_grpc(port: int, queries: list[Any], clients: int, seconds: float) -> dict[str, Any]:
    import grpc

    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    ch = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.LinkageServiceStub(ch)
    for q in queries[:50]:  # warm up
        stub.Resolve(pb.ResolveRequest(person=q), timeout=10)
    lat, found, compared = [], 0, []
    for q in queries:
        t0 = time.perf_counter()
        resp = stub.Resolve(pb.ResolveRequest(person=q), timeout=10)
        lat.append((time.perf_counter() - t0) * 1000)
        found += bool(resp.candidates)
        compared.append(resp.records_compared)
    seq = {"calls": len(lat), "p50_ms": round(pct(lat, 0.5), 2), "p90_ms": round(pct(lat, 0.9), 2),
           "p99_ms": round(pct(lat, 0.99), 2), "max_ms": round(max(lat), 2),
           "mean_ms": round(statistics.fmean(lat), 2),
           "with_candidates": found, "records_compared_p50": pct(compared, 0.5),
           "records_compared_p99": pct(compared, 0.99)}
    print(f"Resolve sequential: {seq}", flush=True)
    counts = [0] * clients
    lat_c: list[float] = []
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        j = i
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            stub.Resolve(pb.ResolveRequest(person=queries[j % len(queries)]), timeout=10)
            lat_c.append((time.perf_counter() - t0) * 1000)
            counts[i] += 1
            j += clients

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.monotonic() - t0
    conc = {"clients": clients, "seconds": round(took, 1), "calls": sum(counts),
            "req_per_s": round(sum(counts) / took, 1), "p50_ms": round(pct(lat_c, 0.5), 2),
            "p99_ms": round(pct(lat_c, 0.99), 2)}
    print(f"Resolve concurrent: {conc}", flush=True)
    ch.close()
    return {"sequential": seq, "concurrent": conc}


def bench_splink(project: Any, queries: int = 20) -> dict[str, Any]:
    """Splink's predict_between for one record against all records (same register)."""
    import logging

    import duckdb
    from splink import DuckDBAPI, Linker

    from linkage.canonical import STANDARD_COLUMNS
    from linkage.matching.definition import key_sql
    from linkage.matching.model import BLOCKING_KEYS, Model

    model = Model.load(project.model)
    src = duckdb.connect(str(project.register), read_only=True)
    cols = ", ".join(STANDARD_COLUMNS)
    table = src.sql(f"SELECT uid, source, {cols} FROM records WHERE status = 'active'"
                    ).to_arrow_table()
    src.close()
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("recs", table)
    keys = ", ".join(f"{key_sql(c)} AS bk_{n}" for n, c in BLOCKING_KEYS.items())
    con.execute(f"CREATE TABLE existing AS SELECT *, {keys} FROM recs")
    db = DuckDBAPI(con)
    existing = db.register("existing", table_name="existing_splink")
    from linkage.matching.splink_settings import blocking_rules

    # The model file's blocking rules may name older keys: today's, as make_linker does.
    settings = dict(model.settings, blocking_rules_to_generate_predictions=[
        r.get_blocking_rule("duckdb").as_dict() for r in blocking_rules()])
    linker = Linker(existing, settings, log_level=logging.WARNING)
    tf_cols = sorted({lvl["tf_adjustment_column"] for c in model.settings["comparisons"]
                      for lvl in c["comparison_levels"] if lvl.get("tf_adjustment_column")})
    for c in tf_cols:
        linker.table_management.compute_tf_table(c)
    n = table.num_rows
    rng = random.Random(3)
    times = []
    for i in range(queries + 2):
        k = rng.randrange(n)
        con.execute(f"CREATE OR REPLACE TABLE new_rec AS SELECT * REPLACE ('new:{i}' AS uid) "
                    f"FROM existing LIMIT 1 OFFSET {k}")
        new = db.register("new_rec", table_name=f"new_splink_{i}")
        t0 = time.perf_counter()
        df = linker.inference.predict_between(new, existing)
        con.execute(f"SELECT count(*) FROM {df.physical_name}").fetchall()
        took = (time.perf_counter() - t0) * 1000
        if i >= 2:  # warm-up
            times.append(took)
        df.drop_table_from_database_and_remove_from_cache()
    out = {"calls": len(times), "p50_ms": round(pct(times, 0.5), 1),
           "p99_ms": round(pct(times, 0.99), 1), "records": n}
    print(f"Splink predict_between, one record: {out}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--splink-queries", type=int, default=20)
    args = ap.parse_args(argv)
    directory = args.dir or ROOT / f"bench_rt_{args.records // 1000}k"
    t0 = time.monotonic()
    project = build(directory, args.records)
    print(f"register ready in {time.monotonic() - t0:.1f} s", flush=True)
    queries = query_details(project, args.queries)
    print(f"{len(queries):,} query records sampled from the rosters", flush=True)
    proc, port = start_server(project.path)
    try:
        grpc_figures = bench_grpc(port, queries, args.clients, args.seconds)
    finally:
        proc.terminate()
        proc.wait(60)
    splink = bench_splink(project, args.splink_queries)
    figures = {
        "date": dt.date.today().isoformat(), "machine": f"{os.cpu_count()} cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
        "command": "python -m benchmarks.bench_resolve " + " ".join(argv or sys.argv[1:]),
        "records": splink["records"], "resolve_grpc": grpc_figures, "splink_predict_between":
        splink, "ratio_splink_p50_over_resolve_p50": round(
            splink["p50_ms"] / grpc_figures["sequential"]["p50_ms"], 1)}
    (directory / "bench_resolve.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
