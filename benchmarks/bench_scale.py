"""Scale: the batch on DuckDB and on local Spark, and an incremental night against a full one.

On one generated Sahel register of about ``--records`` records (one roster holds back
1 % of the register's records for the second night):

1. night 1, full, on DuckDB and on local Spark (``local[2]``), each from the same files;
2. night 2 on DuckDB, the held-back rows added: incremental (the default) on one copy,
   ``--full`` on another copy of the same night-1 register; the persons must be equal.

Each run is ``linkage run --json`` in its own process. Wall time, and the peak resident
memory of the whole process tree (sampled from /proc every 0.2 s: Spark's JVM is a
child of the Python process, which ``ru_maxrss`` alone would miss), comparisons and
the run's mode are printed as a Markdown table and saved as ``bench_scale.json``, with
the seconds of each step of the full and incremental nights (from the runs' progress
lines, :func:`steps`: on a shared machine compare steps of the same run, not wall times)
and the load average before and after each run.

Example:
    python -m benchmarks.bench_scale --records 100000 --dir /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb

from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.synthetic.generate import generate

ROOT = Path(__file__).resolve().parents[1]
#: Records per generated person on the sahel profile (measured: about 1.17).
RECORDS_PER_PERSON = 1.17
NEW_SHARE = 0.01


def _tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KiB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        p = int(entry)
        children.setdefault(int(fields[1]), []).append(p)
        rss[p] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") // 1024
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


_PROGRESS = re.compile(r"^\[\s*([0-9.]+)s\] (.*)$")
#: Stages by the progress line that ends them.
_STAGES = (("ingest", "active records"), ("engine", "assigning persistent person IDs"),
           ("ids_publish", "published"))


#: Finer steps by the progress line that ends each (the summary's order); "ids" ends at
#: the line after "assigning persistent person IDs" (its event counts).
_STEPS = (("ingest", "active records"), ("load, keys, model", "] model "),
          ("plan", "] mode:"), ("blocking counts", "blocking analysis:"),
          ("predict", "] clustering"), ("clustering, links", "scored pairs at or above"),
          ("incremental state", "assigning persistent person IDs"), ("persistent IDs", None),
          ("review queue", "review queue:"), ("summary", "] publishing"),
          ("publish", ": published"))


def steps(stderr: str) -> dict[str, float]:
    """Seconds per step of a run, from its progress lines (see :data:`_STEPS`)."""
    lines = [(float(m.group(1)), m.group(2)) for m in map(_PROGRESS.match, stderr.splitlines())
             if m]
    out: dict[str, float] = {}
    last, i = 0.0, 0
    for name, marker in _STEPS:
        for j in range(i, len(lines)):
            if (marker in f"] {lines[j][1]}" if marker else
                    j > 0 and "assigning persistent person IDs" in lines[j - 1][1]):
                out[name] = round(lines[j][0] - last, 1)
                last, i = lines[j][0], j + 1
                break
    return out


def stages(stderr: str) -> dict[str, float]:
    """Seconds per stage from a run's progress lines: ingest; the engine's work (load,
    blocking, predict, clustering); persistent IDs and publishing."""
    out, last, todo = {}, 0.0, list(_STAGES)
    for line in stderr.splitlines():
        m = _PROGRESS.match(line)
        if m and todo and todo[0][1] in m.group(2):
            t = float(m.group(1))
            out[todo[0][0]] = round(t - last, 1)
            last = t
            todo.pop(0)
    return out


def measured_run(project: Path, *args: str, log: Path) -> dict[str, Any]:
    """``linkage run --json`` on ``project``: seconds, peak tree RSS, its summary."""
    cmd = [sys.executable, "-m", "linkage", "run", "-p", str(project), "--json", *args]
    peak = 0
    load_before = os.getloadavg()[0]
    with log.with_suffix(".err").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=err)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss_kb(proc.pid))
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        out, _ = proc.communicate()
        seconds = time.perf_counter() - t0
        done.set()
        sampler.join()
    if proc.returncode:
        tail = log.with_suffix(".err").read_text(errors="replace").splitlines()[-20:]
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n" + "\n".join(tail))
    summary = json.loads(out)
    # The machine is shared: the 1-minute load average before and after says how loaded.
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1024),
            "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
            "stages": stages(log.with_suffix(".err").read_text(errors="replace")),
            "steps": steps(log.with_suffix(".err").read_text(errors="replace")),
            "records": sum(s["records"] for s in summary["sources"].values()),
            "comparisons": summary["comparisons"], "persons": summary["persons"],
            "engine": summary.get("engine"), "mode": summary.get("mode")}


def persons(project: Path) -> list[tuple[str, ...]]:
    reg = next(project.parent.glob("*.duckdb"), None) or project.parent / "register.duckdb"
    con = duckdb.connect(str(reg), read_only=True)
    try:
        return sorted(tuple(r[0]) for r in con.execute(
            "SELECT list(uid ORDER BY uid) FROM person_records GROUP BY person_id").fetchall())
    finally:
        con.close()


def bench(records: int, work: Path, *, spark: bool = True, log: Any = print) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    base = work / "duckdb"
    log(f"generating ~{records:,} records in {base}")
    generate(persons=round(records / RECORDS_PER_PERSON), profile="sahel", seed=14, out=base,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    data = next((base / "data").glob("cash_transfer*"))
    lines = data.read_text(encoding="latin-1").splitlines(keepends=True)
    held = max(1, round(records * NEW_SHARE))
    data.write_text("".join(lines[:-held]), encoding="latin-1")
    if spark:
        shutil.copytree(base, work / "spark")
    logs = work / "logs"
    logs.mkdir(parents=True)
    out: dict[str, Any] = {"records_target": records, "new_records": held}
    log("night 1 on DuckDB (full)")
    out["duckdb_full"] = measured_run(base / "project.yaml", log=logs / "duckdb_full")
    if spark:
        log("night 1 on local Spark (full)")
        out["spark_full"] = measured_run(work / "spark" / "project.yaml", "--engine", "spark",
                                         log=logs / "spark_full")
    night1 = persons(base / "project.yaml")
    if spark:
        out["spark_same_persons_as_duckdb"] = persons(work / "spark" / "project.yaml") == night1
    shutil.copytree(base, work / "duckdb_full_night2")
    for d in (base, work / "duckdb_full_night2"):
        (d / "data" / data.name).write_text("".join(lines), encoding="latin-1")
    log(f"night 2 on DuckDB: {held:,} new rows, incremental")
    out["duckdb_incremental_night2"] = measured_run(base / "project.yaml",
                                                    log=logs / "duckdb_incremental")
    log("night 2 on DuckDB, --full")
    out["duckdb_full_night2"] = measured_run(work / "duckdb_full_night2" / "project.yaml",
                                             "--full", log=logs / "duckdb_full_night2")
    out["night2_same_persons"] = (persons(base / "project.yaml")
                                  == persons(work / "duckdb_full_night2" / "project.yaml"))
    (work / "bench_scale.json").write_text(json.dumps(out, indent=2))
    return out


def report(out: dict[str, Any]) -> str:
    rows = ["| run | records | wall s | ingest s | engine s | IDs + publish s | peak RSS MB "
            "| comparisons | persons | mode | load before / after |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|---|---|"]
    for name in ("duckdb_full", "spark_full", "duckdb_full_night2", "duckdb_incremental_night2"):
        r = out.get(name)
        if r:
            mode = (r["mode"] or {}).get("mode", "")
            st = r.get("stages", {})
            rows.append(f"| {name} | {r['records']:,} | {r['seconds']} | {st.get('ingest', '')} | "
                        f"{st.get('engine', '')} | {st.get('ids_publish', '')} | "
                        f"{r['peak_rss_mb']:,} | {r['comparisons']:,} | {r['persons']:,} "
                        f"| {mode} | {' / '.join(map(str, r.get('load_average', [])))} |")
    inc, full = out["duckdb_incremental_night2"], out["duckdb_full_night2"]
    rows.append("")
    if "spark_same_persons_as_duckdb" in out:
        rows.append("night 1, Spark and DuckDB: same persons: "
                    f"{out['spark_same_persons_as_duckdb']}")
    rows.append(f"night 2 ({out['new_records']:,} new records): incremental "
                f"{inc['seconds']} s = {inc['seconds'] / full['seconds']:.0%} of full "
                f"{full['seconds']} s; same persons: {out['night2_same_persons']}")
    if inc.get("mode"):
        rows.append(f"incremental reason: {inc['mode'].get('reason')}")
    names = [n for n in ("duckdb_full", "duckdb_full_night2", "duckdb_incremental_night2")
             if out.get(n, {}).get("steps")]
    if names:
        rows += ["", "| step (s) | " + " | ".join(names) + " |",
                 "|---|" + "--:|" * len(names)]
        for step, _ in _STEPS:
            rows.append(f"| {step} | " + " | ".join(
                str(out[n]["steps"].get(step, "")) for n in names) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=Path("bench_out/scale"))
    ap.add_argument("--no-spark", action="store_true", help="DuckDB only")
    args = ap.parse_args(argv)
    out = bench(args.records, args.dir, spark=not args.no_spark,
                log=lambda m: print(m, file=sys.stderr, flush=True))
    print(report(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
