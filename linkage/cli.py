"""The ``linkage`` command line.

Each command builds the core objects from the project file and calls one function of
the package; errors of :mod:`linkage.errors` become one clear line and the exit code of
:data:`EXIT_CODES`, never a traceback, and never personal data.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from linkage.config import ENGINE_NAMES, ProjectConfig, load_project
from linkage.errors import (
    ChangeGuardTripped,
    ConfigError,
    IngestError,
    LinkageError,
    ModelError,
    NotFound,
    NotReady,
    RegisterLockedError,
    RunError,
)
from linkage.register.database import Register

#: Exit code of each kind of error (the first matching class wins; 1 for the others).
EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (ConfigError, 2), (RegisterLockedError, 3), (ModelError, 4), (IngestError, 5),
    (ChangeGuardTripped, 10), (RunError, 6), (NotReady, 7), (NotFound, 8),
    (FileNotFoundError, 9), (LinkageError, 1))

project_option = click.option(
    "-p", "--project", "project_path", type=click.Path(dir_okay=False, path_type=Path),
    default="project.yaml", show_default=True, envvar="LINKAGE_PROJECT",
    help="Project file listing the sources and settings (env: LINKAGE_PROJECT).")


class _Failed(click.ClickException):
    """One line on stderr and the error's exit code (see :data:`EXIT_CODES`)."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.exit_code = next(code for cls, code in EXIT_CODES if isinstance(exc, cls))


def _load(project_path: Path) -> ProjectConfig:
    try:
        return load_project(project_path)
    except ConfigError as exc:
        raise _Failed(exc) from exc


def _open_for_reading(project: ProjectConfig) -> Register:
    """The register read-only; while `linkage serve` holds it, its snapshot (said on stderr)."""
    from linkage.register.snapshot import open_for_reading

    reg, note = open_for_reading(project.register, project.encryption)
    if note:
        click.echo(f"note: {note}", err=True)
    return reg


def _guard(fn):
    """Turn domain errors into one-line CLI errors with their exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (LinkageError, FileNotFoundError) as exc:
            raise _Failed(exc) from exc

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="linkage")
def cli() -> None:
    """Deduplication and record linkage for a unified social register.

    Link programme rosters and civil-registry extracts into one register of persons with
    persistent identifiers. Start with `linkage demo`.
    """


@cli.command()
@project_option
@click.option("--force", is_flag=True, help="Re-read files even when unchanged.")
@_guard
def ingest(project_path: Path, force: bool) -> None:
    """Read every source into the register (lossless, idempotent).

    Rows without a key or a name land in the `rejects` table with their row number and
    reason; a bad value in another field is blanked and listed in `field_warnings`.
    """
    from linkage.batch.pipeline import ingest_all, stderr_progress

    project = _load(project_path)
    reg = Register.of(project)
    try:
        with reg.transaction() as cur:
            reports = ingest_all(cur, project, force=force, progress=stderr_progress())
    finally:
        reg.close()
    for r in reports:
        click.echo(r.line())
        for reason, n in sorted(r.reject_reasons.items(), key=lambda x: -x[1])[:10]:
            click.echo(f"    rejected {n:,}: {reason}")
        for reason, n in sorted(r.warning_reasons.items(), key=lambda x: -x[1])[:10]:
            click.echo(f"    field blanked {n:,}: {reason}")


@cli.command()
@project_option
@click.option("--use-labels", is_flag=True,
              help="Also estimate m from the pairs reviewers decided are the same person "
                   "(Splink's m from pairwise labels, blended with the trained m).")
@_guard
def train(project_path: Path, use_labels: bool) -> None:
    """Train a model and save it; print how it was trained and its m/u per level.

    u by random sampling; m by EM sessions that households cannot fill (given name + full
    birth date, then full birth date); the birth date and the prior by EM over the
    blocked pairs. Needs no national IDs. With --use-labels, m is then re-estimated from
    the reviewers' same-person decisions and the report says on how many pairs.
    """
    from linkage.batch.pipeline import (
        active_records,
        ingest_all,
        load_or_train_model,
        stderr_progress,
    )
    from linkage.engines import open_engine
    from linkage.matching import training

    project = _load(project_path)
    progress = stderr_progress()
    reg = Register.of(project)
    try:
        with reg.transaction() as cur:
            ingest_all(cur, project, progress=progress)
            eng = open_engine("duckdb")
            try:
                eng.load(active_records(cur, project.definition), project.max_block_size,
                         project.definition)
                model = load_or_train_model(cur, eng, project, progress, retrain=True,
                                            use_labels=use_labels)
            finally:
                eng.close()
    finally:
        reg.close()
    click.echo(f"model {model.version}")
    click.echo(training.describe(model))
    click.echo("")
    click.echo(training.level_table(model))


@cli.command()
@project_option
@click.option("--force-ingest", is_flag=True, help="Re-read files even when unchanged.")
@click.option("--retrain", is_flag=True, help="Train a new model before predicting.")
@click.option("--memory-limit", default=None,
              help="Memory limit of the DuckDB scratch database Splink works in (e.g. 8GB); "
                   "default: the project's memory.limit, else half the machine's memory.")
@click.option("--engine", type=click.Choice(ENGINE_NAMES), default=None,
              help="Run on this engine (default: the project's `engine`, else duckdb).")
@click.option("--full", is_flag=True,
              help="Score every blocked pair, even when only some sources changed (by default "
                   "the run scores only pairs the changes can affect; the summary says which).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--accept-changes", is_flag=True,
              help="Publish even when the change guards (project file `guards:`) would stop "
                   "the run: many records retired, rows rejected or person IDs changed.")
@_guard
def run(project_path: Path, force_ingest: bool, retrain: bool, memory_limit: str | None,
        engine: str | None, full: bool, as_json: bool, accept_changes: bool) -> None:
    """The batch: ingest, predict, cluster, assign person IDs, publish atomically.

    Stops before publishing (exit 10) when the run would retire, reject or change more
    than the project's `guards:` allow; --accept-changes publishes it anyway.
    """
    from linkage.batch.pipeline import format_summary
    from linkage.batch.pipeline import run as run_batch

    project = _load(project_path)
    result = run_batch(project, force_ingest=force_ingest, retrain=retrain,
                       memory_limit=memory_limit, engine=engine, full=full,
                       accept_changes=accept_changes)
    click.echo(json.dumps(result.summary, indent=2) if as_json else format_summary(result.summary))


@cli.command()
@project_option
@_guard
def summary(project_path: Path) -> None:
    """Print the summary of the last published run."""
    from linkage.batch.pipeline import format_summary, last_summary

    project = _load(project_path)
    reg = _open_for_reading(project)
    try:
        s = last_summary(reg)
    finally:
        reg.close()
    if s is None:
        raise NotReady("no published run yet: run `linkage run`")
    click.echo(format_summary(s))


@cli.command()
@project_option
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path),
              default="report.html", show_default=True, help="The HTML file to write.")
@click.option("--lang", type=click.Choice(["en", "fr"]), default="en", show_default=True)
@_guard
def report(project_path: Path, out: Path, lang: str) -> None:
    """Write the last run's report: one HTML file that opens with no internet access.

    Records and rejects per source with reasons, persons in two sources (civil registry
    included), duplicates, the match-weight histogram, m/u per level, blocking, ID events,
    the review band and the reviewers' accuracy estimate, each with a table.
    """
    from linkage.report.data import collect
    from linkage.report.html import render

    project = _load(project_path)
    reg = Register.of(project, read_only=True)
    try:
        cur = reg.cursor()
        data = collect(cur, project)
        cur.close()
    finally:
        reg.close()
    out.write_text(render(data, lang=lang), encoding="utf-8")
    click.echo(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


@cli.command()
@project_option
@click.argument("record_a")
@click.argument("record_b")
@_guard
def explain(project_path: Path, record_a: str, record_b: str) -> None:
    """Why two records are or are not linked: RECORD_A and RECORD_B as <source>:<key>.

    Prints each comparison's level and match weight (a waterfall), the match probability,
    and the blocking keys that bring the pair together ("never compared" when none does).
    """
    from linkage.realtime.explain import explain_records, format_explanation

    project = _load(project_path)
    reg = _open_for_reading(project)
    try:
        click.echo(format_explanation(explain_records(project, reg, record_a, record_b)))
    finally:
        reg.close()


@cli.group()
def review() -> None:
    """The review queue: pairs and persons in doubt, and reviewers' decisions.

    A batch run queues the pairs between the review and match thresholds and doubtful
    persons; enrolment queues links on weak evidence. A decision is a constraint every
    later run and enrolment honours, applied to the persons at once.
    """


def _review(project: ProjectConfig, *, read_only: bool = False):  # noqa: ANN202 - Review
    from linkage.review.core import Review

    return Review(project, Register.of(project, read_only=read_only))


@review.command("list")
@project_option
@click.option("--status", default="open", show_default=True,
              type=click.Choice(["open", "deferred", "decided", "stale", "all"]))
@click.option("--kind", default="", help="pair | person | enrolment | sample")
@click.option("--programme", default="", help="Only items with a record of this programme.")
@click.option("--area", default="", help="Only items of this region (as standardised).")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@_guard
def review_list(project_path: Path, status: str, kind: str, programme: str, area: str,
                limit: int) -> None:
    """List review items, highest priority first."""
    from linkage.review.evidence import Filters
    from linkage.review.text import format_items

    project = _load(project_path)
    rv = _review(project, read_only=True)
    try:
        items, _token, total = rv.list(Filters(status="" if status == "all" else status,
                                               kind=kind, programme=programme, area=area),
                                       page_size=limit)
    finally:
        rv.register.close()
    click.echo(format_items(items, total))


@review.command("show")
@project_option
@click.argument("item_id")
@click.option("--reviewer", envvar="LINKAGE_REVIEWER", required=True,
              help="Who is looking (recorded for the audit trail; env: LINKAGE_REVIEWER).")
@_guard
def review_show(project_path: Path, item_id: str, reviewer: str) -> None:
    """An item with its evidence: records side by side, waterfalls, persons, candidates."""
    from linkage.review.text import format_item

    project = _load(project_path)
    rv = _review(project)
    try:
        click.echo(format_item(rv.get(item_id, viewer=reviewer, surface="cli")))
    finally:
        rv.register.close()


@review.command("decide")
@project_option
@click.argument("item_id")
@click.argument("decision", type=click.Choice(["same", "not_same", "take_out", "defer"]))
@click.option("--reviewer", envvar="LINKAGE_REVIEWER", required=True,
              help="Who decides (env: LINKAGE_REVIEWER).")
@click.option("--comment", default="", help="Why (optional).")
@click.option("--record", "record_uid", default="",
              help="take_out: the record (<source>:<key>) to take out of its person.")
@_guard
def review_decide(project_path: Path, item_id: str, decision: str, reviewer: str,
                  comment: str, record_uid: str) -> None:
    """Decide an item: same person, not the same person, take a record out, or defer."""
    from linkage.review.text import format_decision

    project = _load(project_path)
    rv = _review(project)
    try:
        click.echo(format_decision(rv.decide(item_id, decision, reviewer=reviewer,
                                             comment=comment, record_uid=record_uid)))
    finally:
        rv.register.close()


@review.command("open")
@project_option
@click.argument("record_a")
@click.argument("record_b")
@click.option("--reviewer", envvar="LINKAGE_REVIEWER", required=True,
              help="Who asks (env: LINKAGE_REVIEWER).")
@_guard
def review_open(project_path: Path, record_a: str, record_b: str, reviewer: str) -> None:
    """Queue any two records (<source>:<key>) as an item, to decide on them."""
    project = _load(project_path)
    rv = _review(project)
    try:
        click.echo(rv.open_pair(record_a, record_b, reviewer=reviewer))
    finally:
        rv.register.close()


@review.command("sample")
@project_option
@click.option("--per-stratum", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Pairs drawn from each probability stratum.")
@click.option("--seed", type=int, default=None, help="Random seed (for a repeatable draw).")
@_guard
def review_sample(project_path: Path, per_stratum: int, seed: int | None) -> None:
    """Queue a clerical sample: random pairs across the probability range, to estimate
    the register's precision and recall from the decisions (`linkage review estimate`)."""
    project = _load(project_path)
    rv = _review(project)
    click.echo(f"drawing a clerical sample; the register's links are clustered again at "
               f"each threshold from {project.thresholds.review:g} up, for the estimate's "
               "threshold table", err=True)
    try:
        info = rv.sample(per_stratum=per_stratum, seed=seed)
    finally:
        rv.register.close()
    click.echo(f"clerical sample {info.sample_id}: {info.items:,} pairs queued from "
               f"{len(info.strata)} strata (pairs of {info.records_sampled:,} of "
               f"{info.records:,} records enumerated)")
    for name, st in info.strata.items():
        click.echo(f"  {name:<28} {st['population']:>12,.0f} pairs, {st['sampled']:>4} drawn")


@review.command("estimate")
@project_option
@click.option("--sample", "sample_id", default="", help="The sample (default: the last).")
@_guard
def review_estimate(project_path: Path, sample_id: str) -> None:
    """Precision and recall of the register from a clerical sample's decisions."""
    from linkage.review.accuracy import format_estimate

    project = _load(project_path)
    rv = _review(project, read_only=True)
    try:
        click.echo(format_estimate(rv.estimate(sample_id)))
    finally:
        rv.register.close()


@cli.command()
@project_option
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Output file (.csv or .parquet).")
@click.option("--what", type=click.Choice(["records", "persons"]), default="records",
              show_default=True,
              help="records: one row per record with its person ID; persons: one row per "
                   "person with its records.")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default=None,
              help="Output format (default: from the file extension).")
@_guard
def export(project_path: Path, out: Path, what: str, fmt: str | None) -> None:
    """Export the record → person ID mapping, or persons with their records."""
    from linkage.register.export import export as do_export

    project = _load(project_path)
    fmt = fmt or ("parquet" if out.suffix.lower() == ".parquet" else "csv")
    reg = _open_for_reading(project)
    try:
        n = do_export(reg, out, what=what, fmt=fmt)
    finally:
        reg.close()
    click.echo(f"wrote {n:,} rows to {out}")


@cli.command()
@project_option
@click.option("--person", "person_id", help="Calls that read or wrote this person ID.")
@click.option("--client", help="Calls by this client (token ID, or a part of its name).")
@click.option("--since", type=click.DateTime(), help="From this time (UTC).")
@click.option("--until", type=click.DateTime(), help="Before this time (UTC).")
@click.option("--limit", type=click.IntRange(1, 1_000_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_guard
def audit(project_path: Path, person_id: str | None, client: str | None, since, until,
          limit: int, as_json: bool) -> None:
    """Who read or wrote whose data through the API, newest first.

    Rows come from the register's append-only `audit_log`: time, client, role, call,
    outcome, person IDs and record keys.
    """
    from linkage.ids.reconcile import normalise
    from linkage.service.audit import query_audit

    project = _load(project_path)
    try:
        pid = normalise(person_id) if person_id else None
    except ValueError as exc:
        raise click.BadParameter("not a valid person ID", param_hint="--person") from exc
    reg = _open_for_reading(project)
    try:
        rows = query_audit(reg, person_id=pid, client=client, since=since,
                           until=until, limit=limit)
    finally:
        reg.close()
    for seq, at, who, role, method, outcome, persons, keys, detail in rows:
        if as_json:
            click.echo(json.dumps({"seq": seq, "at": at.isoformat(), "client": who,
                                   "role": role, "method": method, "outcome": outcome,
                                   "person_ids": persons, "record_keys": keys,
                                   "detail": detail}))
            continue
        shown = ", ".join((persons or [])[:5]) + (f" (+{len(persons) - 5})"
                                                  if persons and len(persons) > 5 else "")
        click.echo(f"{at.isoformat(sep=' ', timespec='seconds')}  {method:<32}{outcome:<18}"
                   f"{who} [{role or '-'}]  persons: {shown or '-'}  records: "
                   f"{len(keys or [])}{'  ' + detail if detail else ''}")


@cli.command()
@project_option
@click.argument("statement")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header instead of a table.")
@_guard
def sql(project_path: Path, statement: str, as_csv: bool) -> None:
    """Run one read-only SQL STATEMENT on the register (its snapshot while served).

    The connection is read-only: nothing can be changed. Tables: see `linkage.register.database`.
    """
    import csv

    import duckdb

    project = _load(project_path)
    reg = _open_for_reading(project)
    try:
        cur = reg.cursor()
        try:
            result = cur.sql(statement)
            if result is None:
                return
            if as_csv:
                writer = csv.writer(sys.stdout)
                writer.writerow(result.columns)
                writer.writerows(result.fetchall())
            else:
                click.echo(result)
        except duckdb.Error as exc:
            raise _Failed(LinkageError(f"SQL error: {exc}")) from exc
        finally:
            cur.close()
    finally:
        reg.close()


@cli.command()
@project_option
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The backup file to write (a DuckDB file; must not exist).")
@_guard
def backup(project_path: Path, out: Path) -> None:
    """Back up the whole register: persons, history, ID secret, enrolment journal.

    Works while `linkage serve` runs (from the server's latest snapshot, plus the ID
    secret). Keep backups as safe as the register: they hold the same personal data.
    """
    from linkage.register.snapshot import backup as do_backup

    project = _load(project_path)
    click.echo(do_backup(project.register, out, project.encryption))


@cli.command()
@project_option
@click.argument("backup_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace an existing register.")
@click.option("--skip-ids", type=click.IntRange(0, 10**12), default=0, show_default=True,
              help="Move the ID counter on by this many: after restoring a backup older than "
                   "the last IDs issued, more than were issued since (no ID is reissued).")
@_guard
def restore(project_path: Path, backup_file: Path, force: bool, skip_ids: int) -> None:
    """Restore the register from BACKUP_FILE (made by `linkage backup`).

    The same ID secret comes back, so the restored register keeps the same IDs and (with
    --skip-ids 0) issues the same next ones. After a disaster, IDs issued after the backup
    are already known to MIS systems: pass --skip-ids so they are never issued again.
    """
    from linkage.register.snapshot import restore as do_restore

    project = _load(project_path)
    click.echo(do_restore(backup_file, project.register, force=force, skip_ids=skip_ids,
                         encryption=project.encryption))


@cli.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default="demo", show_default=True, help="Where to write rosters and register.")
@click.option("--persons", type=click.IntRange(50, 5_000_000), default=5000, show_default=True)
@click.option("--profile", type=click.Choice(["sahel", "horn"]), default="sahel",
              show_default=True, help="Naming profile: Mali-like or Djibouti-like.")
@click.option("--seed", type=int, default=1, show_default=True)
@_guard
def demo(directory: Path, persons: int, profile: str, seed: int) -> None:
    """Generate sample rosters, run the batch on them and print the summary."""
    from linkage.batch.pipeline import format_summary
    from linkage.batch.pipeline import run as run_batch
    from linkage.matching.model import SHIPPED_MODELS_DIR
    from linkage.synthetic.generate import generate

    click.echo(f"generating {persons:,} {profile} persons in {directory}/", err=True)
    generate(persons=persons, profile=profile, seed=seed, out=directory,
             model=SHIPPED_MODELS_DIR / f"{profile}.json")
    project = _load(directory / "project.yaml")
    result = run_batch(project)
    click.echo(format_summary(result.summary))
    click.echo(f"\nregister: {project.register}\n"
               f"next: linkage export -p {directory / 'project.yaml'} -o persons.csv")


@cli.command()
@project_option
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=50051, show_default=True)
@click.option("--web-port", type=int, default=8080, show_default=True,
              help="Port of the reviewers' web page (0: a free one); -1: no web page.")
@click.option("--insecure", is_flag=True,
              help="Serve plaintext (no TLS); allowed on loopback only. Without it, "
                   "serve.tls in the project file is required.")
@_guard
def serve(project_path: Path, host: str, port: int, web_port: int, insecure: bool) -> None:
    """Serve the gRPC API on the register (health and reflection included) and the
    reviewers' web page (queue, items, decisions, run report) on its own port.

    TLS (mutual with serve.tls.client_ca) from the files named in the project file;
    plaintext only on loopback with --insecure. Calls need an API token once one is
    issued (`linkage token`); with none, the loopback server runs open and says so.
    """
    from linkage.service.server import serve as run_server

    run_server(_load(project_path), host=host, port=port,
               web_port=None if web_port < 0 else web_port, insecure=insecure)


@cli.group()
def token() -> None:
    """Issue, list and revoke API tokens (stored hashed in the register).

    Roles: mis (resolve, enrol, look up, watch changes), reviewer (read persons for
    review), operator (batch control), admin. Run these while the server is stopped
    (the register is the server's while it serves).
    """


@token.command("issue")
@project_option
@click.option("--name", required=True, help="Who holds the token, e.g. 'cash transfer MIS'.")
@click.option("--role", type=click.Choice(["mis", "reviewer", "operator", "admin"]),
              required=True)
@click.option("--source", "sources", multiple=True,
              help="mis only: limit enrolment and record look-ups to this source (repeat).")
@click.option("--programme", "programmes", multiple=True,
              help="mis only: limit the client to this programme's sources and persons "
                   "(repeat; see docs/OPERATIONS.md).")
@_guard
def token_issue(project_path: Path, name: str, role: str, sources: tuple[str, ...],
                programmes: tuple[str, ...]) -> None:
    """Issue a token; it is printed once, on stdout, and only its hash is kept."""
    from linkage.service.auth import TokenBook

    project = _load(project_path)
    unknown = [s for s in sources if not s.replace("_", "").replace("-", "").isalnum()]
    if unknown:
        raise click.BadParameter(f"not a source name: {unknown[0]}", param_hint="--source")
    known = {s.programme for s in project.sources}
    stray = [p for p in programmes if p not in known]
    if stray:
        raise click.BadParameter(f"no source has programme {stray[0]!r}",
                                 param_hint="--programme")
    reg = Register.of(project)
    try:
        token_id, secret = TokenBook(reg).issue(name, role, sources=sources,
                                                programmes=programmes)
    finally:
        reg.close()
    click.echo(f"issued token {token_id} ({role}) for {name}; keep it now, it is not "
               "shown again:", err=True)
    click.echo(secret)


@token.command("list")
@project_option
@_guard
def token_list(project_path: Path) -> None:
    """List tokens: ID, role, holder, sources, issued, revoked (never the tokens)."""
    from linkage.service.auth import TokenBook

    project = _load(project_path)
    reg = _open_for_reading(project)
    try:
        rows = TokenBook(reg).tokens()
    finally:
        reg.close()
    click.echo(f"{'token':<10}{'role':<10}{'issued':<21}{'revoked':<21}name [sources]")
    for r in rows:
        revoked = r.revoked_at.isoformat(sep=" ", timespec="seconds") if r.revoked_at else "-"
        limits = (f" [{', '.join((*r.sources, *r.programmes))}]"
                  if r.sources or r.programmes else "")
        click.echo(f"{r.token_id:<10}{r.role:<10}"
                   f"{r.issued_at.isoformat(sep=' ', timespec='seconds'):<21}{revoked:<21}"
                   f"{r.name}{limits}")


@token.command("revoke")
@project_option
@click.argument("token_id")
@_guard
def token_revoke(project_path: Path, token_id: str) -> None:
    """Revoke the token TOKEN_ID (as shown by `linkage token list`)."""
    from linkage.service.auth import TokenBook

    project = _load(project_path)
    reg = Register.of(project)
    try:
        done = TokenBook(reg).revoke(token_id)
    finally:
        reg.close()
    if not done:
        raise _Failed(NotFound(f"no live token {token_id}"))
    click.echo(f"revoked token {token_id}")


def main() -> None:
    cli(prog_name="linkage")


if __name__ == "__main__":
    sys.exit(main())
