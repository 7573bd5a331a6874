"""Profile: where one Resolve's CPU goes, stage by stage, in process (no network).

Usage:
    python -m benchmarks.profile_resolve DIR [--profile]

``DIR`` is a register built by :mod:`benchmarks.bench_serve` (its ``project.yaml`` and
``bench_serve_queries.pkl``). Each query goes through the stages the servicer runs, each
timed with the thread's CPU clock (on a shared machine, wall time mostly measures the
other jobs): decode the request, string limits, protobuf to ``PersonInput``,
standardise, candidates, scoring and ranking, golden records, ``Resolution`` to
protobuf, encode. Prints the mean µs per stage; ``--profile`` adds cProfile's top
functions for the whole servicer path.
"""

from __future__ import annotations

import argparse
import cProfile
import pickle
import pstats
import statistics
import sys
import time
from pathlib import Path


class _NoDeadline:
    """The one thing the servicer asks of its call context here: no deadline."""

    @staticmethod
    def time_remaining() -> None:
        return None


STAGES = ("decode", "string limits", "to PersonInput", "standardise", "candidates",
          "score and rank", "golden records", "to protobuf", "encode")


def main(argv: list[str] | None = None) -> int:
    from linkage.config import load_project
    from linkage.ids.golden import GoldenRecord
    from linkage.realtime.core import Realtime
    from linkage.service import convert
    from linkage.service.limits import ServiceLimits, check_strings
    from linkage.service.servicer import LinkageServicer
    from linkage.service.v1 import linkage_pb2 as pb

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    core = Realtime.open(load_project(args.dir / "project.yaml"))
    try:
        queries = pickle.loads((args.dir / "bench_serve_queries.pkl").read_bytes())
        requests = [pb.ResolveRequest(person=pb.PersonDetails.FromString(b)).SerializeToString()
                    for b in queries]
        lim = ServiceLimits()
        index = core.index
        floor = core.project.thresholds.review
        clock = time.thread_time

        def one(data: bytes) -> tuple[list[float], int]:
            t = [clock()]
            req = pb.ResolveRequest.FromString(data)
            t.append(clock())
            check_strings(req, lim)
            t.append(clock())
            person = convert.person_input(req.person)
            t.append(clock())
            row = core.standardise(person)
            t.append(clock())
            n = len(index.candidates(row))
            t.append(clock())
            res = index.resolve(row, max_candidates=10, min_probability=floor)
            t.append(clock())
            for c in res.candidates:
                text = index.golden.get(c.person_id)
                c.golden = GoldenRecord.from_json(text) if text else None
            t.append(clock())
            out = convert.resolve_response(res, model_version=core.model_version,
                                           match_threshold=core.project.thresholds.match)
            t.append(clock())
            out.SerializeToString()
            t.append(clock())
            spans = [(b - a) * 1e6 for a, b in zip(t, t[1:], strict=False)]
            spans[5] -= spans[4]  # resolve finds the candidates again: scoring alone
            return spans, n

        for data in requests[:200]:  # warm up
            one(data)
        per: list[list[float]] = [[] for _ in STAGES]
        sizes = []
        for data in requests:
            spans, n = one(data)
            sizes.append(n)
            for k, v in enumerate(spans):
                per[k].append(v)
        for name, values in zip(STAGES, per, strict=True):
            print(f"{name:16s} {statistics.mean(values):8.1f} µs")
        print(f"{'total':16s} {sum(statistics.mean(v) for v in per):8.1f} µs "
              f"({len(requests)} queries, {statistics.mean(sizes):.0f} candidate records "
              f"each on average)")
        if args.profile:
            servicer = LinkageServicer(core, lim)
            prof = cProfile.Profile()
            prof.enable()
            for data in requests:
                servicer.Resolve(pb.ResolveRequest.FromString(data),
                                 _NoDeadline()).SerializeToString()  # type: ignore[arg-type]
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
    finally:
        core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
