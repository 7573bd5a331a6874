"""The nightly batch: ingest → standardise → predict → cluster → persistent IDs → publish.

Everything a run writes to the register happens inside one transaction, committed once
at the end (publish). A run killed at any point leaves the previously published register
readable and unchanged, and the next run starts from it as if nothing happened.

Example:
    >>> from linkage.config import load_project
    >>> result = run(load_project("demo/project.yaml"))  # doctest: +SKIP
    >>> print(format_summary(result.summary))  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from linkage.batch import clustering, guards, incremental
from linkage.canonical import STANDARD_COLUMNS
from linkage.config import ProjectConfig, Thresholds
from linkage.engines import Engine, common, open_engine
from linkage.engines.common import BlockingReport
from linkage.errors import ChangeGuardTripped, RunError
from linkage.ids import publish as persons
from linkage.ingest.read import IngestReport, ingest_source, name_roles, uses_name_roles
from linkage.matching.extra import BUILTIN, Definition, columns_sql
from linkage.matching.model import SHIPPED_MODELS_DIR, Model, ModelError, unused_fields
from linkage.register.database import Register, query
from linkage.review.queue import queue_after_run
from linkage.standardise.names import NameRoles

Progress = Callable[[str], None]


@dataclass
class RunResult:
    run_id: str
    model_version: str
    summary: dict[str, Any]


def stderr_progress() -> Progress:
    """Progress lines on stderr with elapsed seconds (no personal data is ever printed)."""
    start = time.monotonic()

    def emit(message: str) -> None:
        print(f"[{time.monotonic() - start:7.1f}s] {message}", file=sys.stderr, flush=True)

    return emit


def new_run_id(now: dt.datetime) -> str:
    return f"run-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(2)}"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def ingest_all(cur: duckdb.DuckDBPyConnection, project: ProjectConfig, *, force: bool = False,
               progress: Progress) -> list[IngestReport]:
    """Ingest every source, those that teach the register's name roles first (separate
    given and family columns; a patronymic civil registry): a full-name column, or a
    patronymic roster, is then read with the roles learned from them
    (:func:`linkage.ingest.read.name_roles`). Reports come back in the project's order."""
    by_name: dict[str, IngestReport] = {}
    roles: NameRoles | None = None
    learned = False
    for src in sorted(project.sources, key=uses_name_roles):
        if uses_name_roles(src) and not learned:
            roles, learned = name_roles(cur, project.sources), True
            if roles is not None:
                progress(f"name roles from {len(roles):,} names: full names with no case "
                         "marker may be read in the other order, and a patronymic "
                         "roster's given name found where it stands")
        progress(f"ingest {src.name} ({src.format}, {len(src.paths)} file(s))")
        report = ingest_source(cur, src, force=force, progress=progress, roles=roles)
        progress("  " + report.line())
        by_name[src.name] = report
    return [by_name[src.name] for src in project.sources]


def active_records(cur: duckdb.DuckDBPyConnection, definition: Definition = BUILTIN) -> Any:
    """Active records with their standardised columns, as an Arrow table.

    With the project's ``definition``, also its extra fields' columns (from
    ``records.extra``).
    """
    cols = ", ".join(["uid", "source", *STANDARD_COLUMNS])
    extra = columns_sql(definition.extra)
    if extra:
        cols += ", " + extra
    return cur.sql(f"SELECT {cols} FROM records WHERE status = 'active' ORDER BY uid"
                   ).to_arrow_table()


def load_or_train_model(cur: duckdb.DuckDBPyConnection, eng: Engine, project: ProjectConfig,
                        progress: Progress, *, retrain: bool = False,
                        use_labels: bool = False) -> Model:
    """The project's model; trained on the engine's loaded records and saved when absent
    (``use_labels``: m also from reviewers' labelled pairs, :mod:`linkage.matching.labels`)."""
    path = project.model or project.path.parent / "models" / "model.json"
    if path.exists() and not retrain:
        model = Model.load(path)
        model.check_project(project.definition, str(path))
        progress(f"model {model.version} from {path}")
    else:
        seed_model = None
        if path.exists():  # retraining: EM starts from the model in use
            try:
                seed_model = Model.load(path)
                seed_model.check_project(project.definition, str(path))
            except ModelError as exc:  # another matching definition: start afresh
                progress(f"  not starting from {path}: {exc}")
        from linkage.matching.labels import from_register

        model = eng.train(progress=progress, prefix=project.name, seed_model=seed_model,
                          labels=from_register(cur) if use_labels else None)
        if path.resolve().is_relative_to(SHIPPED_MODELS_DIR.resolve()):
            # Never overwrite a model shipped with the code: save beside the project.
            path = project.path.parent / "models" / f"{model.version}.json"
            progress(f"  the configured model is a shipped one; set `model: {path}` in "
                     f"{project.path} to use the new one")
        model.save(path)
        for w in model.metadata.get("warnings", []):
            progress(f"  model warning: {w}")
        progress(f"trained model {model.version}, saved to {path}")
    cur.execute("INSERT OR REPLACE INTO model_versions VALUES (?, ?, ?, ?, ?, ?)",
                [model.version, str(path), model.sha256, _utcnow(), json.dumps(model.metadata),
                 model.to_json()])
    return model


def engine_options(project: ProjectConfig, engine: str, memory_limit: str | None = None,
                   spark: Any = None) -> dict[str, Any]:
    """The options :func:`linkage.engines.open_engine` gets for the project's engine.

    ``memory_limit`` (the command line's) overrides the project's ``memory.limit``; with
    neither, the DuckDB scratch's limit is set from the machine.
    """
    options: dict[str, Any] = {"memory_limit": memory_limit or project.memory.limit}
    if engine == "duckdb":
        options["spill_dir"] = project.memory.spill_dir
    elif engine == "spark":
        options.update(spark=spark, master=project.spark.master,
                       driver_memory=project.spark.driver_memory,
                       scratch_dir=project.spark.scratch_dir)
    return options


def run(project: ProjectConfig, *, progress: Progress | None = None, force_ingest: bool = False,
        retrain: bool = False, register: Register | None = None,
        memory_limit: str | None = None, engine: str | None = None,
        spark: Any = None, full: bool = False, accept_changes: bool = False) -> RunResult:
    """Run the whole batch and publish atomically.

    Args:
        project: the loaded project configuration.
        progress: where progress lines go (default: stderr).
        force_ingest: re-read source files even when unchanged.
        retrain: train a new model even when the model file exists.
        register: an open register (the gRPC server passes its own); opened from
            ``project.register`` when None.
        memory_limit: memory limit of the DuckDB scratch space; overrides the project's
            ``memory.limit``; with neither, set from the machine.
        engine: ``duckdb`` or ``spark``; overrides the project's ``engine``.
        full: score every blocked pair even when an incremental run would do
            (:mod:`linkage.batch.incremental` says when it does, and why not).
        spark: a Spark session for the Spark engine (default: the active one, or a local
            one from the project's ``spark:`` settings).
        accept_changes: publish even when the change guards (:mod:`linkage.batch.guards`)
            would stop the run.

    Raises:
        ChangeGuardTripped: the run would change more than the project's guards allow;
            nothing was published (a :class:`RunError`).
        RunError: the run failed; nothing was published.
    """
    progress = progress or stderr_progress()
    own = register is None
    reg = register or Register.of(project)
    started = _utcnow()
    run_id = new_run_id(started)
    progress(f"{run_id}: register {reg.path}")
    try:
        with reg.transaction() as cur:
            base = guards.baseline(cur)
            reports = ingest_all(cur, project, force=force_ingest, progress=progress)
            if not accept_changes:  # records and rows: judged now, before predicting
                guards.check(project.guards, base, reports, run_id=run_id)
            records = active_records(cur, project.definition)
            progress(f"{records.num_rows:,} active records; preparing blocking keys "
                     f"(block cap {project.max_block_size:,})")
            engine_name = engine or project.engine
            progress(f"engine {engine_name}")
            eng = open_engine(engine_name,
                              **engine_options(project, engine_name, memory_limit, spark))
            try:
                blocking = eng.load(records, project.max_block_size, project.definition)
                del records
                model = load_or_train_model(cur, eng, project, progress, retrain=retrain)
                run_model = model.for_register(blocking.records)
                unused = unused_fields(model, _filled(cur))
                for line in unused:
                    progress(f"  warning: {line}")
                plan = incremental.plan(project, eng, model, run_model, engine=engine_name,
                                        last_run_id=_last_run_id(cur), full=full,
                                        retrain=retrain)
                progress(f"mode: {plan.mode} ({plan.reason})")
                eng.use_model(run_model)
                if plan.mode == "incremental":  # carried over, plus the pairs to score
                    blocking.comparisons_by_rule = incremental.comparisons(plan, eng)
                else:
                    blocking = eng.count_comparisons(blocking)
                by_rule = ", ".join(f"{k} {v:,}" for k, v in blocking.comparisons_by_rule.items())
                progress(f"blocking analysis: {blocking.total:,} comparisons ({by_rule})")
                progress("predicting" + (" (pairs touching new or changed records, and near "
                                         "pairs of the last run)" if plan.mode == "incremental"
                                         else ""))
                # Pairs a little below the floor are kept too, for the next run's
                # incremental scoring; clustering reads those at the floor (the
                # ambiguity step's competitors), the register keeps those at the review
                # threshold.
                floor_p = incremental.floor(project)
                near_p = incremental.near_threshold(floor_p)
                eng.predict(common.below(near_p))
                near = common.settled(eng.links(), near_p)
                links = incremental.candidate_links(near, floor_p)
                progress("clustering")
                clusters, refused, links, amb = clustering.for_run(
                    cur, project, links, lambda: eng.cluster(project.thresholds.match),
                    progress, prior=run_model.prior)
                n_links = _store_links(cur, links, run_id, project.thresholds)
                progress(f"{n_links:,} scored pairs at or above the review threshold kept")
                state = incremental.collect(project, eng, model, run_model, near,
                                            engine=engine_name, run_id=run_id, plan_=plan,
                                            comparisons_by_rule=blocking.comparisons_by_rule)
                del near
            finally:
                eng.close()
            progress("assigning persistent person IDs")
            id_stats: dict[str, int] = {}
            counts = persons.publish_clusters(cur, clusters, run_id=run_id, now=started,
                                              part=plan.mode == "incremental", stats=id_stats)
            progress("  " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())))
            if id_stats:
                plan.skipped.append(
                    f"persistent IDs of the {id_stats['untouched_persons']:,} persons the "
                    f"changes do not touch ({id_stats['reconciled_records']:,} records "
                    "reconciled)")
            changed_ids = guards.changed_person_ids(cur, run_id)
            if accept_changes:
                for line in guards.findings(project.guards, base, reports, changed_ids):
                    progress(f"  change guard overridden (--accept-changes): {line}")
            else:
                guards.check(project.guards, base, reports, changed_ids, run_id=run_id)
            review = queue_after_run(
                cur, run_id=run_id, match_threshold=project.thresholds.match, now=started,
                one_to_one_threshold=project.thresholds.one_to_one_match)
            progress(f"review queue: {review['queued']:,} new item(s) "
                     f"({review['review_band_pairs']:,} pairs in the review band, "
                     f"{review['doubtful_persons']:,} doubtful persons), {review['open']:,} open")
            summary = build_summary(cur, reports, blocking, counts)
            summary["review"] = review
            summary.update(run_id=run_id, model_version=model.version,
                           started_at=started.isoformat(timespec="seconds"),
                           clustering=project.clustering, refused_merges=refused,
                           ambiguity=amb, model_warnings=unused,
                           engine=engine_name, mode=plan.summary())
            finished = _utcnow()
            summary["seconds"] = round((finished - started).total_seconds(), 1)
            cur.execute("INSERT INTO runs VALUES (?, ?, ?, 'published', ?, ?, NULL)",
                        [run_id, started, finished, model.version, json.dumps(summary)])
            progress("publishing")
        progress(f"{run_id}: published")
        try:
            incremental.save(Path(reg.path), state)
        except OSError as exc:  # published all the same; the next run is a full one
            progress(f"incremental state not saved ({exc.__class__.__name__}: {exc}); "
                     "the next run will be full")
        return RunResult(run_id, model.version, summary)
    except ChangeGuardTripped as exc:
        _record_failure(reg, run_id, started, exc)
        progress(f"{run_id}: stopped by the change guards, nothing published")
        raise
    except Exception as exc:
        _record_failure(reg, run_id, started, exc)
        raise RunError(f"{run_id} failed, the published register is unchanged: {exc}") from exc
    finally:
        if own:
            reg.close()


def _last_run_id(cur: duckdb.DuckDBPyConnection) -> str | None:
    rows = query(cur, "SELECT run_id FROM runs WHERE status = 'published' "
                      "ORDER BY finished_at DESC LIMIT 1")
    return rows[0][0] if rows else None


def _record_failure(reg: Register, run_id: str, started: dt.datetime, exc: Exception) -> None:
    try:
        with reg.transaction() as cur:
            cur.execute("INSERT INTO runs VALUES (?, ?, ?, 'failed', NULL, NULL, ?)",
                        [run_id, started, _utcnow(), f"{exc.__class__.__name__}: {exc}"[:2000]])
    except duckdb.Error:
        pass  # the register itself is unusable; the caller sees the original error


def _filled(cur: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """Share of the active records with a value, by standardised column."""
    cols = list(STANDARD_COLUMNS)
    row = query(cur, "SELECT count(*), " + ", ".join(f"count({c})" for c in cols)
                + " FROM records WHERE status = 'active'")[0]
    n = max(int(row[0]), 1)
    return {c: int(v) / n for c, v in zip(cols, row[1:], strict=True)}


def _store_links(cur: duckdb.DuckDBPyConnection, pairs: Any, run_id: str,
                 thresholds: Thresholds) -> int:
    cur.execute("DELETE FROM links")
    cur.register("stage_links", pairs)
    bits = "ambiguity_bits" if "ambiguity_bits" in pairs.column_names else "0.0"
    one = "one_to_one" in pairs.column_names
    try:
        cur.execute("INSERT INTO links (run_id, uid_l, uid_r, match_probability, match_weight, "
                    "linked, ambiguity_bits, one_to_one) SELECT ?, uid_l, uid_r, "
                    "match_probability, match_weight, match_probability >= CASE WHEN "
                    f"{'one_to_one' if one else 'false'} THEN ? ELSE ? END, {bits}, "
                    f"{'one_to_one' if one else 'false'} FROM stage_links",
                    # linkage.batch.ambiguity.pair_thresholds, in SQL
                    [run_id, thresholds.one_to_one_match, thresholds.match])
    finally:
        cur.unregister("stage_links")
    return pairs.num_rows


def build_summary(cur: duckdb.DuckDBPyConnection, reports: list[IngestReport],
                  blocking: BlockingReport, id_counts: dict[str, int]) -> dict[str, Any]:
    """The end-of-run summary, stored with the run and printed by the CLI."""
    per_source = {s: {"records": n} for s, n in query(
        cur, "SELECT source, count(*) FROM records WHERE status = 'active' "
             "GROUP BY source ORDER BY source")}
    # Rejects of the files currently making up each source (an unchanged file was not
    # re-read this run, but its rejects still stand).
    for source, n in query(cur, """
            SELECT j.source, count(*) FROM rejects j JOIN source_files f
              ON f.source = j.source AND f.sha256 = j.file_sha256 GROUP BY j.source"""):
        per_source.setdefault(source, {"records": 0})["rejected"] = n
    # Fields blanked on kept records, counted the same way.
    for source, n in query(cur, """
            SELECT w.source, count(*) FROM field_warnings w JOIN source_files f
              ON f.source = w.source AND f.sha256 = w.file_sha256 GROUP BY w.source"""):
        per_source.setdefault(source, {"records": 0})["warnings"] = n
    for r in reports:
        per_source.setdefault(r.source, {"records": 0})
        per_source[r.source].update(added=r.added, updated=r.updated, retired=r.retired)
    for source, n_persons, n_dup_persons in query(cur, """
            SELECT source, count(DISTINCT person_id),
                   count(DISTINCT CASE WHEN n > 1 THEN person_id END)
            FROM (SELECT r.source, p.person_id, count(*) OVER
                    (PARTITION BY r.source, p.person_id) AS n
                  FROM person_records p JOIN records r USING (uid)) t
            GROUP BY source"""):
        per_source[source].update(persons=n_persons, persons_with_duplicates=n_dup_persons,
                                  duplicate_records=per_source[source]["records"] - n_persons)
    programmes = [s for (s,) in query(cur, "SELECT name FROM sources WHERE kind = 'programme' "
                                           "ORDER BY name")]
    (n_persons,) = query(cur, "SELECT count(*) FROM persons WHERE status = 'live'")[0]
    (multi,) = query(cur, """
        SELECT count(*) FROM (
          SELECT p.person_id FROM person_records p JOIN records r USING (uid)
          JOIN sources s ON s.name = r.source WHERE s.kind = 'programme'
          GROUP BY p.person_id HAVING count(DISTINCT r.source) > 1) t""")[0]
    # The same, counting a civil registry as a source: "in the register and in a programme".
    (multi_sources,) = query(cur, """
        SELECT count(*) FROM (
          SELECT p.person_id FROM person_records p JOIN records r USING (uid)
          GROUP BY p.person_id HAVING count(DISTINCT r.source) > 1) t""")[0]
    overlap: dict[str, dict[str, int]] = {a: dict.fromkeys(programmes, 0) for a in programmes}
    for a, b, n in query(cur, """
            WITH pp AS (SELECT DISTINCT p.person_id, r.source FROM person_records p
                        JOIN records r USING (uid))
            SELECT x.source, y.source, count(*) FROM pp x JOIN pp y USING (person_id)
            GROUP BY x.source, y.source"""):
        if a in overlap and b in overlap:
            overlap[a][b] = n
    return {
        "sources": per_source,
        "persons": n_persons,
        "persons_in_several_programmes": multi,
        "persons_in_several_sources": multi_sources,
        "overlap": overlap,
        "comparisons": blocking.total,
        "comparisons_by_rule": blocking.comparisons_by_rule,
        "capped_records_by_rule": blocking.capped_records_by_rule,
        "id_changes": id_counts,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A readable summary for the terminal."""
    lines = [f"Run {summary.get('run_id')}  model {summary.get('model_version')}  "
             f"{summary.get('seconds', '?')} s"]
    mode = summary.get("mode")
    if mode:
        lines.append(f"{mode['mode']} run on {summary.get('engine', 'duckdb')}: {mode['reason']}")
        if mode.get("skipped"):
            lines.append("  skipped: " + "; ".join(mode["skipped"]))
    lines.append("")
    lines.append(f"{'source':<22}{'records':>10}{'rejected':>10}{'warnings':>10}{'persons':>10}"
                 f"{'dup. persons':>14}{'dup. records':>14}")
    for name, s in summary["sources"].items():
        lines.append(f"{name:<22}{s.get('records', 0):>10,}{s.get('rejected', 0):>10,}"
                     f"{s.get('warnings', 0):>10,}{s.get('persons', 0):>10,}"
                     f"{s.get('persons_with_duplicates', 0):>14,}"
                     f"{s.get('duplicate_records', 0):>14,}")
    lines += ["  records: kept rows of the source's current files; rejected: rows that could not",
              "  become a record (no key, no name, unreadable: `linkage report` lists the",
              "  reasons); warnings: fields blanked on kept records; persons: distinct persons",
              "  holding its records; dup. persons: persons with two or more of its records;",
              "  dup. records: its records beyond the first of each person (records - persons)",
              "", f"persons: {summary['persons']:,}",
              f"people in more than one programme: {summary['persons_in_several_programmes']:,}"
              " (programme rosters only)"]
    if "persons_in_several_sources" in summary:
        lines.append("people in more than one source, civil registry included: "
                     f"{summary['persons_in_several_sources']:,}")
    lines.append(f"comparisons scored: {summary['comparisons']:,} (pairs of records that share a "
                 "blocking key, each scored by the model)")
    overlap = summary["overlap"]
    if overlap:
        names = list(overlap)
        width = max(12, *(len(n) + 2 for n in names))
        lines += ["", "programme overlap (persons in both):",
                  " " * width + "".join(f"{n[:width - 1]:>{width}}" for n in names)]
        for a in names:
            lines.append(f"{a:<{width}}" + "".join(f"{overlap[a][b]:>{width},}" for b in names))
    changes = summary.get("id_changes") or {}
    if changes:
        lines += ["", "person ID events: " + ", ".join(f"{k} {v:,}" for k, v in
                                                        sorted(changes.items()))]
    review = summary.get("review")
    if review:
        lines += ["", f"review queue: {review['queued']:,} new item(s): "
                      f"{review['review_band_pairs']:,} pairs scored between the review and "
                      f"match thresholds, {review['doubtful_persons']:,} doubtful persons; "
                      f"{review['open']:,} open (`linkage review list`)"]
    refused = summary.get("refused_merges")
    if refused:
        lines += ["", "merges refused (no chaining): " + ", ".join(
            f"{k} {v:,}" for k, v in refused.items())]
    for w in summary.get("model_warnings") or []:
        lines += ["", f"warning: {w}"]
    amb = summary.get("ambiguity")
    if amb and amb.get("pairs_adjusted"):
        lines += ["", f"ambiguity: {amb['pairs_adjusted']:,} pairs between sources that list "
                      "each person once re-weighed by how many candidates each record has in "
                      f"the other source; {amb['raised_above_match']:,} linked that would "
                      f"not be on their own fields, {amb['lowered_below_match']:,} not "
                      "linked that would be (`linkage explain` shows the line)"]
    return "\n".join(lines)


def last_summary(reg: Register) -> dict[str, Any] | None:
    cur = reg.cursor()
    rows = query(cur, "SELECT summary FROM runs WHERE status = 'published' "
                      "ORDER BY finished_at DESC LIMIT 1")
    cur.close()
    return json.loads(rows[0][0]) if rows else None
