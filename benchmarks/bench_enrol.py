"""Benchmark: enrolment of many records through the client-streaming EnrolBatch call.

Usage:
    python -m benchmarks.bench_enrol --base /tmp/bench/rt200k --records 100000 \
        --model models/sahel.json

``--base`` is a directory built by :mod:`benchmarks.bench_resolve` (its register is
copied, never modified). The records to enrol are the rows of a second generated
population (another seed: other people, with the same name distributions and the same
share of records per person), sent into an API source ``mis_api`` in streams of
``--batch`` records. ``--model`` replaces the copy's model (bench_resolve builds the
register with a hand-set one); ``models/sahel.json`` is what a deployment would run.

Prints records/s end to end (client sends, server standardises, resolves, writes,
commits, answers), the outcome counts, and the accuracy of the links made:

* ``false_links_to_register``: records linked to a person of the register, every one
  wrong (the register holds other people);
* pairwise and B-cubed precision / recall of the enrolled records among themselves,
  against the second population's truth.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from benchmarks.bench_resolve import ROOT, build, sample_records, start_server
from benchmarks.score import score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, required=True,
                    help="a directory built by bench_resolve (register copied)")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000, help="records per EnrolBatch stream")
    ap.add_argument("--per-message", type=int, default=500,
                    help="records per stream message (EnrolBatchRequest)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a model JSON to run instead of the base register's")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)

    import duckdb
    import grpc

    from linkage.config import load_project
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    work = args.dir or args.base.parent / f"{args.base.name}_enrol"
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(args.base, work, ignore=shutil.ignore_patterns("*.wal"))
    project = load_project(work / "project.yaml")
    if args.model is not None:
        shutil.copyfile(args.model, work / "models" / "model.json")
    con = duckdb.connect(str(project.register))
    con.execute("INSERT OR IGNORE INTO sources VALUES ('mis_api', 'programme', 'MIS API', NULL)")
    register_persons = {p for (p,) in con.execute("SELECT person_id FROM persons").fetchall()}
    con.close()
    # Records to enrol: a second population, generated beside the copy.
    other = build(work.parent / f"{work.name}_src", int(args.records * 1.1), seed=99)
    sampled = sample_records(other, args.records, seed=5, rate=1.0)
    if len(sampled) < args.records:
        raise SystemExit(f"only {len(sampled):,} records generated; raise the population")
    with (other.path.parent / "truth.csv").open(encoding="utf-8") as fh:
        truth_of = {f"{r['source']}:{r['record_key']}": r["person_id"]
                    for r in csv.DictReader(fh)}
    truth = {f"E{i:07d}": truth_of[uid] for i, (uid, _) in enumerate(sampled)}
    people = [p for _, p in sampled]
    print(f"{len(people):,} records to enrol", flush=True)
    proc, port = start_server(project.path)
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = pb_grpc.LinkageServiceStub(ch)
        totals = dict.fromkeys(("created", "linked", "unchanged", "updated", "queued",
                                "rejected"), 0)
        predicted: dict[str, str] = {}
        t0 = time.perf_counter()
        for start in range(0, len(people), args.batch):
            chunk = people[start:start + args.batch]
            recs = [pb.EnrolRequest(source="mis_api", record_key=f"E{start + i:07d}", person=p)
                    for i, p in enumerate(chunk)]
            msgs = (pb.EnrolBatchRequest(records=recs[k:k + args.per_message])
                    for k in range(0, len(recs), args.per_message))
            resp = stub.EnrolBatch(msgs, timeout=600)
            for k in totals:
                totals[k] += getattr(resp, k)
            predicted.update((f"E{start + i:07d}", r.person_id)
                             for i, r in enumerate(resp.results))
        took = time.perf_counter() - t0
        ch.close()
    finally:
        proc.terminate()
        proc.wait(120)
    figures = {"date": dt.date.today().isoformat(),
               "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                          f"Python {platform.python_version()}",
               "command": "python -m benchmarks.bench_enrol " + " ".join(argv or sys.argv[1:]),
               "records": len(people), "seconds": round(took, 1),
               "records_per_s": round(len(people) / took, 1), "outcomes": totals,
               "model": str(args.model or "hand-set (bench_resolve)"),
               "false_links_to_register": sum(p in register_persons
                                              for p in predicted.values()),
               "accuracy_among_enrolled": {
                   k: round(v, 4) if isinstance(v, float) else v
                   for k, v in score(predicted, truth).items()
                   if k.startswith(("pairwise", "bcubed", "true_", "predicted_"))},
               "stream_size": args.batch, "records_per_message": args.per_message}
    (work / "bench_enrol.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ROOT", "main"]
