"""Change guards: a run that would change too much of the register stops before publishing.

A newer extract saved in the wrong encoding, cut short or exported with the wrong filter
looks, to ingest, like a roster whose people vanished: their records are retired, their
person IDs retired with them, and the change feed tells every MIS. Nothing in one such
file is wrong enough to refuse, so the run as a whole is judged, inside its transaction
and before its commit, against the project's ``guards:`` (:class:`linkage.config.GuardConfig`):

* **retired**: records of a source this run retires, over the source's records from files
  before the run;
* **rejected**: rows of a file that became rejects, over the file's rows;
* **changed IDs**: live person IDs this run retires, merges into another or splits, over
  the live person IDs before the run.

Any share over its limit raises :class:`linkage.errors.ChangeGuardTripped` naming the
source or file and the figures; the transaction rolls back, so nothing is published or
retired. ``linkage run --accept-changes`` publishes such a run on purpose. Figures are
counts only (no personal data).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from linkage.config import GuardConfig
from linkage.errors import ChangeGuardTripped
from linkage.ingest.read import IngestReport
from linkage.register.database import API_FILE, query


@dataclass(frozen=True)
class Baseline:
    """The register before the run: what the shares are measured against."""

    records_by_source: dict[str, int]  # active records that came from files
    live_persons: int


def baseline(cur: duckdb.DuckDBPyConnection) -> Baseline:
    """Read the figures the guards compare a run against (call before ingest)."""
    by_source = dict(query(cur, "SELECT source, count(*) FROM records WHERE status = 'active' "
                                "AND file IS DISTINCT FROM ? GROUP BY source", [API_FILE]))
    (live,) = query(cur, "SELECT count(*) FROM persons WHERE status = 'live'")[0]
    return Baseline(by_source, live)


def changed_person_ids(cur: duckdb.DuckDBPyConnection, run_id: str) -> int:
    """Live person IDs this run retired, merged into another, or split."""
    (n,) = query(cur, """
        SELECT count(DISTINCT CASE WHEN kind = 'split_from' THEN other_person_id
                                   ELSE person_id END)
        FROM person_events
        WHERE run_id = ? AND kind IN ('retired', 'merged_into', 'split_from')""", [run_id])[0]
    return n


def _pct(share: float) -> str:
    return f"{100 * share:.1f} %"


def findings(guards: GuardConfig, base: Baseline, reports: Sequence[IngestReport],
             changed_ids: int | None = None) -> list[str]:
    """One line per share over its limit (empty when the run may publish).

    ``changed_ids`` is None right after ingest: the record and row guards can be judged
    then, before hours of prediction, the person-ID guard only after reconciling."""
    out: list[str] = []
    for r in reports:
        before = base.records_by_source.get(r.source, 0)
        if before >= guards.min_count and r.retired / before > guards.max_retired_share:
            out.append(f"source {r.source}: would retire {r.retired:,} of its {before:,} "
                       f"records ({_pct(r.retired / before)}; limit "
                       f"guards.max_retired_share {_pct(guards.max_retired_share)})")
        for name, (rows, rejected) in sorted(r.file_rows.items()):
            if rows >= guards.min_count and rejected / rows > guards.max_rejected_share:
                out.append(f"source {r.source}, file {name}: {rejected:,} of {rows:,} rows "
                           f"rejected ({_pct(rejected / rows)}; limit "
                           f"guards.max_rejected_share {_pct(guards.max_rejected_share)}); "
                           f"reasons: " + ", ".join(
                               f"{reason} {n:,}" for reason, n in sorted(
                                   r.reject_reasons.items(), key=lambda x: -x[1])[:3]))
    live = base.live_persons
    if (changed_ids is not None and live >= guards.min_count
            and changed_ids / live > guards.max_changed_ids_share):
        out.append(f"person IDs: would retire, merge or split {changed_ids:,} of {live:,} live "
                   f"IDs ({_pct(changed_ids / live)}; limit guards.max_changed_ids_share "
                   f"{_pct(guards.max_changed_ids_share)})")
    return out


def check(guards: GuardConfig, base: Baseline, reports: Sequence[IngestReport],
          changed_ids: int | None = None, *, run_id: str) -> None:
    """Raise :class:`ChangeGuardTripped` when the run changes more than the guards allow."""
    found = findings(guards, base, reports, changed_ids)
    if found:
        raise ChangeGuardTripped(
            f"{run_id} stopped before publishing, nothing was changed: " + "; ".join(found)
            + ". Check the extracts (encoding, truncation, filter); to publish this run "
              "anyway, run again with --accept-changes", found)
