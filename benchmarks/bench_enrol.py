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

``--agreement`` measures instead whether real time agrees with the batch, the reference
(issue 11)::

    python -m benchmarks.bench_enrol --agreement --persons 20000 --dir /tmp/bench/agree

1. generate a population (``--profile``, ``--persons``) with the shipped model of its
   profile, and hold out ``--held-out`` of each programme roster's rows: they are
   removed from the files;
2. ``linkage run`` publishes the register without them;
3. the held-out rows are enrolled through ``EnrolBatch`` into their own source under
   their own record key, with the details an MIS would send (household, age);
4. ``linkage run`` again (the next night's batch, on the same project).

It reports the share of enrolled records whose person after the batch is the person
Enrol gave them, the records the batch moved (split from their enrolment person, or
merged with records Enrol kept apart), the same in pairs, and pairwise precision /
recall against the truth of the pairs that involve an enrolled record, after Enrol
and after the batch.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.bench_resolve import ROOT, build, details_of, sample_records, start_server
from benchmarks.score import score


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=Path, default=None,
                    help="a directory built by bench_resolve (register copied)")
    ap.add_argument("--agreement", action="store_true",
                    help="measure real time against the next batch (see the module doc)")
    ap.add_argument("--persons", type=int, default=20_000, help="with --agreement")
    ap.add_argument("--profile", default="sahel", help="with --agreement")
    ap.add_argument("--held-out", type=float, default=0.1,
                    help="with --agreement: share of each roster's rows enrolled")
    ap.add_argument("--seed", type=int, default=11, help="with --agreement")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=10_000, help="records per EnrolBatch stream")
    ap.add_argument("--per-message", type=int, default=500,
                    help="records per stream message (EnrolBatchRequest)")
    ap.add_argument("--model", type=Path, default=None,
                    help="a model JSON to run instead of the base register's")
    ap.add_argument("--dir", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.agreement:
        if args.dir is None:
            ap.error("--agreement needs --dir")
        return agreement(args, argv)
    if args.base is None:
        ap.error("--base is required (or --agreement)")

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


def _without(src: Any, path: Path, keys: set[str]) -> int:
    """Rewrite a source file without the rows whose record key is in ``keys``, in its own
    format and encoding; returns how many rows were dropped."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    if src.format == "parquet":
        table = pq.read_table(path)
        col = pc.cast(table.column(src.record_key), "string")
        drop = pc.is_in(pc.utf8_trim_whitespace(col), value_set=pa_array(sorted(keys)))
        pq.write_table(table.filter(pc.invert(pc.fill_null(drop, False))), path,
                       compression="zstd")
        return int(pc.sum(drop).as_py() or 0)
    if src.format == "jsonl":
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        kept = [ln for ln in lines if not ln.strip()
                or str(json.loads(ln).get(src.record_key, "")).strip() not in keys]
        path.write_text("".join(kept), encoding="utf-8")
        return len(lines) - len(kept)
    with path.open(encoding=src.encoding, newline="") as fh:
        rows = list(csv.reader(fh, delimiter=src.delimiter))
    at = rows[0].index(src.record_key)
    kept = [rows[0], *(r for r in rows[1:] if len(r) <= at or r[at].strip() not in keys)]
    with path.open("w", encoding=src.encoding, newline="") as fh:
        csv.writer(fh, delimiter=src.delimiter).writerows(kept)
    return len(rows) - len(kept)


def pa_array(values: list[str]) -> Any:
    import pyarrow as pa

    return pa.array(values, type=pa.string())


def _touching(labels: dict[str, Any], enrolled: set[str]) -> int:
    """Pairs of records with the same label of which at least one is enrolled."""
    sizes: Counter[Any] = Counter()
    others: Counter[Any] = Counter()
    for u, lab in labels.items():
        sizes[lab] += 1
        others[lab] += u not in enrolled
    return sum(n * (n - 1) // 2 - k * (k - 1) // 2
               for lab, n in sizes.items() for k in (others[lab],))


def _pairwise(predicted: dict[str, str], truth: dict[str, str], enrolled: set[str]
              ) -> dict[str, Any]:
    """Pairwise precision / recall against the truth, over pairs touching ``enrolled``."""
    both = {u: (predicted[u], truth[u]) for u in predicted if u in truth}
    tp = _touching(both, enrolled)
    pp = _touching({u: predicted[u] for u in both}, enrolled)
    tt = _touching({u: truth[u] for u in both}, enrolled)
    return {"pairs_predicted": pp, "pairs_true": tt, "pairs_correct": tp,
            "precision": round(tp / pp, 4) if pp else None,
            "recall": round(tp / tt, 4) if tt else None}


def _linkage(project_path: Path, *extra: str) -> float:
    """``linkage run`` on the project (a subprocess, as an operator runs it); seconds."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "linkage", "run", "-p", str(project_path),
                           "--accept-changes", *extra], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if done.returncode != 0:
        raise SystemExit(f"linkage run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


def _partition(project: Any) -> tuple[dict[str, str], dict[str, str]]:
    """(active record -> person, retired person -> its live successor) of the register."""
    import duckdb

    con = duckdb.connect(str(project.register), read_only=True)
    try:
        persons = dict(con.execute(
            "SELECT p.uid, p.person_id FROM person_records p JOIN records r USING (uid) "
            "WHERE r.status = 'active'").fetchall())
        retired = {p for (p,) in con.execute(
            "SELECT person_id FROM persons WHERE status = 'retired'").fetchall()}
    finally:
        con.close()
    return persons, {p: "" for p in retired}


def agreement(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The ``--agreement`` mode (see the module docstring)."""
    import random

    import grpc

    from linkage.config import load_project
    from linkage.ingest.read import READERS
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc
    from linkage.synthetic.generate import generate

    work: Path = args.dir
    if work.exists():
        shutil.rmtree(work)
    model = ROOT / "models" / ("horn.json" if args.profile == "horn" else "sahel.json")
    t0 = time.perf_counter()
    generate(persons=args.persons, profile=args.profile, seed=args.seed, out=work,
             model=model)
    project = load_project(work / "project.yaml")
    with (work / "truth.csv").open(encoding="utf-8") as fh:
        truth = {f"{r['source']}:{r['record_key']}": r["person_id"]
                 for r in csv.DictReader(fh) if r.get("bad", "").lower() not in ("true", "1")}
    # Hold out a share of every programme roster's rows, with the details an MIS sends.
    rng = random.Random(args.seed)
    held: list[tuple[str, str, Any]] = []  # (source, record key, details)
    for src in project.sources:
        if src.kind != "programme":
            continue
        for path in src.paths:
            keys: set[str] = set()
            for _, values, _, _ in READERS[src.format](src, path):
                if values is None or rng.random() >= args.held_out:
                    continue
                key = str(values.get(src.record_key) or "").strip()
                p = details_of(src, values, full=True)
                if key and p is not None and f"{src.name}:{key}" in truth:
                    held.append((src.name, key, p))
                    keys.add(key)
            _without(src, path, keys)
    rng.shuffle(held)  # MIS calls arrive in no particular order
    enrolled = {f"{s}:{k}" for s, k, _ in held}
    print(f"generated {len(truth):,} records in {time.perf_counter() - t0:.0f} s; "
          f"{len(held):,} held out for enrolment", flush=True)
    first = _linkage(project.path)
    print(f"batch 1 published in {first:.0f} s", flush=True)
    outcomes: Counter[str] = Counter()
    given: dict[str, str] = {}
    how: dict[str, tuple[str, float]] = {}  # uid -> (outcome, match probability)
    proc, port = start_server(project.path)
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.max_receive_message_length", 64 << 20)])
        stub = pb_grpc.LinkageServiceStub(ch)
        t1 = time.perf_counter()
        for start in range(0, len(held), args.batch):
            chunk = held[start:start + args.batch]
            recs = [pb.EnrolRequest(source=s, record_key=k, person=p) for s, k, p in chunk]
            msgs = (pb.EnrolBatchRequest(records=recs[i:i + args.per_message])
                    for i in range(0, len(recs), args.per_message))
            for (s, k, _), r in zip(chunk, stub.EnrolBatch(msgs, timeout=600).results,
                                    strict=True):
                outcomes[pb.EnrolOutcome.Name(r.outcome)] += 1
                if r.person_id:
                    given[f"{s}:{k}"] = r.person_id
                    how[f"{s}:{k}"] = (pb.EnrolOutcome.Name(r.outcome).rsplit("_", 1)[-1],
                                       round(r.match_probability, 4))
        took = time.perf_counter() - t1
        ch.close()
    finally:
        proc.terminate()
        proc.wait(120)
    after_enrol, _ = _partition(project)
    second = _linkage(project.path)
    after_batch, retired = _partition(project)
    ok = [u for u in given if after_batch.get(u) == given[u]]
    moved = [u for u in given if after_batch.get(u) != given[u]]
    members_e: dict[str, set[str]] = {}
    members_b: dict[str, set[str]] = {}
    for u, p in after_enrol.items():
        members_e.setdefault(p, set()).add(u)
    for u, p in after_batch.items():
        members_b.setdefault(p, set()).add(u)
    split = merged = 0
    for u in moved:
        e = members_e.get(given[u], set()) - {u}
        b = members_b.get(after_batch.get(u, ""), set()) - {u}
        split += bool(e - b)  # records Enrol put with it that the batch did not
        merged += bool(b - e)  # records the batch put with it that Enrol did not
    common = {u for u in after_enrol if u in after_batch}
    pairs_e = {u: after_enrol[u] for u in common}
    pairs_b = {u: after_batch[u] for u in common}
    together = _touching({u: (pairs_e[u], pairs_b[u]) for u in common}, enrolled)
    figures = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
                   f"Python {platform.python_version()}",
        "command": "python -m benchmarks.bench_enrol " + " ".join(argv or sys.argv[1:]),
        "profile": args.profile, "persons": args.persons, "model": model.name,
        "records": len(truth), "enrolled": len(held), "outcomes": dict(outcomes),
        "enrol_seconds": round(took, 1), "batch_seconds": [round(first), round(second)],
        "agreement": round(len(ok) / len(given), 4) if given else None,
        "moved_by_batch": len(moved), "moved_split": split, "moved_merged": merged,
        "moved_enrol_person_retired": sum(given[u] in retired for u in moved),
        "pairs_touching_enrolled": {
            "enrol_together_batch_apart": _touching(pairs_e, enrolled) - together,
            "enrol_apart_batch_together": _touching(pairs_b, enrolled) - together,
            "both_together": together},
        "accuracy_after_enrol": _pairwise(after_enrol, truth, enrolled),
        "accuracy_after_batch": _pairwise(after_batch, truth, enrolled),
        "stream_size": args.batch, "records_per_message": args.per_message}
    (work / "bench_enrol_agreement.json").write_text(json.dumps(figures, indent=2))
    # Each enrolled record, for the error analysis (uids and person IDs only).
    with (work / "bench_enrol_agreement.csv").open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["uid", "outcome", "match_probability", "enrol_person", "batch_person",
                      "truth"])
        for u in sorted(given):
            out.writerow([u, *how[u], given[u], after_batch.get(u, ""), truth.get(u, "")])
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["ROOT", "main"]
