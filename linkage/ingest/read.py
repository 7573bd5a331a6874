"""Lossless, idempotent ingest of source files into the register.

Every input row either becomes a record or lands in ``rejects`` with its source, file,
row number, raw values and a reason. A row is rejected only when it has no usable record
key or no name at all; a bad value in any other field (a birth year before the project's
``min_birth_year``, a future date, an unknown sex code, a phone of the wrong length...)
blanks that field only and is stored in ``field_warnings``.

Each ingest of a source is taken as a *full extract*: keys seen for the first time are
added, keys whose row changed are updated, keys that vanished are marked ``retired``
(never deleted). A file set identical (by content hash) to the one last ingested is
skipped, so re-ingesting changes nothing.

Row numbers count data rows from 1 (the header of a CSV file is not a row).
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from linkage.canonical import STANDARD_COLUMNS
from linkage.config import SourceConfig
from linkage.errors import IngestError
from linkage.matching.extra import extra_json
from linkage.register import store
from linkage.register.database import API_FILE, query
from linkage.standardise import FieldWarning, RejectError, StandardiseOptions, make_standardiser
from linkage.standardise.names import NameRoles, full_name_order, patronymic_chain
from linkage.standardise.record import reads_patronymic


@dataclass
class IngestReport:
    """What one source's ingest did."""

    source: str
    files: int = 0
    rows: int = 0
    added: int = 0
    updated: int = 0
    retired: int = 0
    unchanged: int = 0
    rejected: int = 0
    warned: int = 0  # fields blanked on kept records (rows in field_warnings)
    reordered: int = 0  # full names read against the declared order (NameRoles)
    skipped: bool = False  # the same files were ingested before
    reject_reasons: dict[str, int] = field(default_factory=dict)
    warning_reasons: dict[str, int] = field(default_factory=dict)  # 'field: reason' -> count
    #: file name -> (rows read, rows rejected), for the batch's change guards
    file_rows: dict[str, tuple[int, int]] = field(default_factory=dict)

    def line(self) -> str:
        if self.skipped:
            return f"{self.source}: unchanged files, nothing to do"
        return (f"{self.source}: {self.rows:,} rows from {self.files} file(s): "
                f"{self.added:,} added, {self.updated:,} updated, {self.unchanged:,} unchanged, "
                f"{self.retired:,} retired, {self.rejected:,} rejected, "
                f"{self.warned:,} field warnings"
                + (f"; {self.reordered:,} names read in another order (their names are "
                   "far more common that way round in the register)"
                   if self.reordered else ""))


# A row as read: (row number, values by source column) or (row number, None, reason).
RawRow = tuple[int, dict[str, Any] | None, str | None, str | None]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_columns(src: SourceConfig, path: Path, present: list[str]) -> None:
    missing = [c for c in src.source_columns if c not in present]
    if missing:
        raise IngestError(
            f"{path}: column '{missing[0]}' named in {src.config_path} is not in the file "
            f"(columns found: {', '.join(present[:20])})")


def _read_csv(src: SourceConfig, path: Path) -> Iterator[RawRow]:
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # surrogateescape keeps undecodable bytes so the row, not the file, is rejected.
    text = data.decode(src.encoding, errors="surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=src.delimiter)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    _check_columns(src, path, header)
    n = len(header)
    for i, values in enumerate(reader, start=1):
        if not values or values == [""]:
            yield i, None, "empty row", None
            continue
        raw_text = src.delimiter.join(values)
        if any("\udc80" <= ch <= "\udcff" for ch in raw_text):
            clean = raw_text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            yield i, None, f"invalid {src.encoding} bytes in row", clean
            continue
        if len(values) != n:
            yield i, None, f"expected {n} fields, found {len(values)}", raw_text
            continue
        yield i, dict(zip(header, values, strict=True)), None, None


def _read_jsonl(src: SourceConfig, path: Path) -> Iterator[RawRow]:
    checked = False
    with path.open("rb") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                text = line.decode(src.encoding)
            except UnicodeDecodeError:
                shown = line.decode("utf-8", "replace")
                yield i, None, f"invalid {src.encoding} bytes in row", shown
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                yield i, None, "invalid JSON", text.strip()
                continue
            if not isinstance(obj, dict):
                yield i, None, "expected a JSON object", text.strip()
                continue
            if not checked:
                # JSON lines may omit empty fields; only the key column must be present.
                if src.record_key not in obj:
                    raise IngestError(f"{path}: column '{src.record_key}' named in "
                                      f"{src.config_path} is not in the first row")
                checked = True
            yield i, {k: (None if v is None else str(v)) for k, v in obj.items()}, None, None


def _read_parquet(src: SourceConfig, path: Path) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise IngestError(
            f"{path}: not a readable Parquet file ({exc.__class__.__name__})") from exc
    _check_columns(src, path, pf.schema_arrow.names)
    i = 0
    for batch in pf.iter_batches(batch_size=65536, columns=src.source_columns):
        table = pa.Table.from_batches([batch])
        cols = {name: table.column(name).cast(pa.string()).to_pylist()
                for name in table.column_names}
        names = list(cols)
        for values in zip(*cols.values(), strict=True):
            i += 1
            yield i, dict(zip(names, values, strict=True)), None, None


READERS: dict[str, Callable[[SourceConfig, Path], Iterator[RawRow]]] = {
    "csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet,
}


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return s or None


def read_source(src: SourceConfig, path: Path, file_sha: str,
                records: dict[str, list], rejects: list[dict], seen: dict[str, tuple[str, int]],
                progress: Callable[[str], None] | None = None,
                warnings: list[dict] | None = None, roles: NameRoles | None = None,
                report: IngestReport | None = None,
                known: dict[str, str] | None = None) -> int:
    """Read one file of a source into column lists (``records``), ``rejects`` and
    ``warnings`` (rows for ``field_warnings``: fields blanked on kept records).

    ``roles`` (:func:`name_roles`) lets a full name with no case marker be read against
    the declared order when its names say so; ``report.reordered`` counts those rows.
    ``known``: record key -> record hash of stored records whose standardised columns
    can be reused (:func:`_reusable`); a row with the same key and hash is not
    standardised again, its ``reuse`` entry is True and its standardised columns are
    left None for :func:`_fill_reused`.
    Returns the number of rows read. ``progress`` hears a line every 200,000 rows.
    """
    rows = 0
    patronymic = patronymic_names(src)
    reorders = roles is not None and uses_name_roles(src)
    mapping = src.columns
    if warnings is None:
        warnings = []
    base = StandardiseOptions(
        source=src.name, birth_date_format=src.birth_date_format,
        age_reference_date=src.age_reference_date, country_code=src.country_code,
        sex_codes=src.sex_codes, name_order=src.name_order, min_birth_year=src.min_birth_year,
        name_roles=roles if reorders else None, patronymic=patronymic,
        extra_fields=src.extra_fields)
    standardisers: dict = {}  # one per age reference date: set up once, not per row
    found: list[FieldWarning] = []  # this row's field warnings
    for row_number, values, reason, raw_text in READERS[src.format](src, path):
        rows += 1
        if progress is not None and rows % 200_000 == 0:
            progress(f"  {src.name}: {rows:,} rows read from {path.name}")
        if values is None:
            rejects.append(dict(source=src.name, file=str(path), file_sha256=file_sha,
                                row_number=row_number, record_key=None, raw=raw_text,
                                field=None, reason=reason))
            continue
        raw_json = store.record_json(values)
        key = _clean(values.get(src.record_key))

        def reject(field_name: str | None, why: str, key: str | None = key,
                   row_number: int = row_number, raw_json: str = raw_json) -> None:
            rejects.append(dict(source=src.name, file=str(path), file_sha256=file_sha,
                                row_number=row_number, record_key=key, raw=raw_json,
                                field=field_name, reason=why))

        if key is None:
            reject("record_key", f"missing record key ({src.record_key})")
            continue
        if key in seen:
            first_file, first_row = seen[key]
            reject("record_key", f"duplicate record key (first at row {first_row} of "
                                 f"{Path(first_file).name})")
            continue
        raw = {f: _clean(values.get(col)) for f, col in mapping.items()}
        found.clear()
        for f, derive in src.derive.items():
            whole = _clean(values.get(derive.column))
            raw[f], matched = derive.of(whole)
            if not matched:
                found.append(FieldWarning(f, whole, "does not match the derive regex"))
        h = store.record_hash(raw_json)
        if known is not None and known.get(key) == h:
            # The row as stored, read the same way: its standardised columns are the
            # stored ones (filled in by SQL), and standardising it again is skipped.
            seen[key] = (str(path), row_number)
            if reorders and report is not None and _reordered(src, raw, roles, patronymic):
                report.reordered += 1
            _append(records, src.name, key, path, row_number, raw_json, h, None, None)
            continue
        ref = src.age_reference_date
        if src.age_reference_column:
            ref_raw = _clean(values.get(src.age_reference_column))
            try:
                ref = dt.date.fromisoformat(ref_raw) if ref_raw else ref
            except ValueError:
                found.append(FieldWarning("age_reference_date", ref_raw,
                                          "age reference date is not YYYY-MM-DD"))
            if ref is None and raw.get("age") is not None:
                found.append(FieldWarning("age", raw["age"], "no age reference date"))
                raw["age"] = None  # an age alone, with no date to count from, is no birth year
        std_fn = standardisers.get(ref)
        if std_fn is None:
            std_fn = standardisers[ref] = make_standardiser(base, age_reference_date=ref)
        try:
            std = std_fn(raw, found)
        except RejectError as exc:
            reject(exc.field, exc.reason)
            continue
        seen[key] = (str(path), row_number)
        if reorders and report is not None and _reordered(src, raw, roles, patronymic):
            report.reordered += 1
        _append(records, src.name, key, path, row_number, raw_json, h, std,
                extra_json(src.extra_fields, std))
        for w in found:
            column = (src.age_reference_column if w.field == "age_reference_date"
                      else src.derive[w.field].column if w.field in src.derive
                      else mapping.get(w.field))
            warnings.append(dict(source=src.name, file=str(path), file_sha256=file_sha,
                                 row_number=row_number, record_key=key, field=w.field,
                                 source_column=column, raw_value=w.value, reason=w.reason))
    return rows


def _append(records: dict[str, list], source: str, key: str, path: Path, row_number: int,
            raw_json: str, record_hash: str, std: dict[str, Any] | None,
            extra: str | None) -> None:
    """One record's row in the column lists; ``std`` None: reused (see ``known``)."""
    records["uid"].append(f"{source}:{key}")
    records["record_key"].append(key)
    records["file"].append(str(path))
    records["row_number"].append(row_number)
    records["raw"].append(raw_json)
    records["record_hash"].append(record_hash)
    for col in STANDARD_COLUMNS:
        records[col].append(None if std is None else std.get(col))
    records["extra"].append(extra)
    records["reuse"].append(std is None)


#: What decides a row's standardised columns besides its raw values, beyond the
#: source's options: the code and tables that standardise (a changed file read by newer
#: code is standardised again whole, as before).
_STANDARDISING_CODE = (Path(__file__).parent.parent / "standardise", Path(__file__))


def standardise_reading(src: SourceConfig, roles: NameRoles | None,
                        today: dt.date | None = None) -> str:
    """A hash of everything but the raw values that decides how a source's rows
    standardise: its options, mapping and derived columns, the register's name roles
    (when the source reads them), the current year (two-digit years pivot on it) and the
    standardising code. Rows of a changed file whose raw values are stored unchanged
    under the same reading are not standardised again."""
    h = hashlib.sha256()
    derive = {f: (d.column, d.regex.pattern, d.group) for f, d in src.derive.items()}
    h.update(repr((src.name, src.kind, src.birth_date_format, src.age_reference_date,
                   src.age_reference_column, src.country_code,
                   sorted((k, list(v)) for k, v in (src.sex_codes or {}).items()),
                   src.name_order, src.min_birth_year, src.extra_fields,
                   sorted(src.columns.items()), sorted(derive.items()), src.record_key,
                   (today or dt.date.today()).year)).encode())
    if roles is not None and uses_name_roles(src):
        h.update(repr((sorted(roles.given.items()), sorted(roles.family.items()))).encode())
    for root in _STANDARDISING_CODE:
        for f in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if f.is_file() and "__pycache__" not in f.parts:
                h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def _reusable(cur: duckdb.DuckDBPyConnection, source: str, shas: set[str]
              ) -> dict[str, str]:
    """Record key -> record hash of the source's stored records whose standardised
    columns a re-read may reuse: active ones (a retired record was not re-read with the
    source since), read from its files, without a field warning from the files last
    read (warnings are recorded per file: such a row is standardised again)."""
    return dict(query(cur, """
        SELECT r.record_key, r.record_hash FROM records r
        WHERE r.source = ? AND r.status = 'active' AND r.file IS DISTINCT FROM ?
          AND NOT EXISTS (
          SELECT 1 FROM field_warnings w WHERE w.source = r.source
            AND w.record_key = r.record_key AND list_contains(?, w.file_sha256))""",
                      [source, API_FILE, sorted(shas)]))


def _fill_reused(cur: duckdb.DuckDBPyConnection, rows: pa.Table, reuse: list[bool]
                 ) -> pa.Table:
    """``rows`` with the stored standardised columns of the reused ones (by uid)."""
    if not any(reuse):
        return rows
    std = [*STANDARD_COLUMNS, "extra"]
    fill = ", ".join(f"CASE WHEN s.linkage_reuse THEN r.{c} ELSE s.{c} END AS {c}"
                     for c in std)
    staged = rows.append_column("linkage_reuse", pa.array(reuse, pa.bool_()))
    cur.register("stage_reread", staged)
    try:
        out = cur.sql(f"SELECT s.* EXCLUDE (linkage_reuse, {', '.join(std)}), {fill} "
                      "FROM stage_reread s LEFT JOIN records r USING (uid)").to_arrow_table()
    finally:
        cur.unregister("stage_reread")
    return out.select(rows.column_names).cast(rows.schema)


_WARNING_SCHEMA = pa.schema(
    [pa.field(n, pa.int64() if n == "row_number" else pa.string())
     for n in ("source", "file", "file_sha256", "row_number", "record_key", "field",
               "source_column", "raw_value", "reason")])


def _reordered(src: SourceConfig, raw: dict[str, str | None], roles: NameRoles,
               patronymic: bool) -> bool:
    """The register's name roles changed how this row's names are read."""
    if patronymic:
        if not reads_patronymic(raw.get("family_name"), raw.get("father_name"),
                                raw.get("grandfather_name"), src.name_order, patronymic):
            return False
        if raw.get("given_name") is None:
            return patronymic_chain(raw.get("full_name"), roles=roles)[1]
        return patronymic_chain(raw.get("given_name"), raw.get("father_name"),
                                raw.get("grandfather_name"), roles)[1]
    return (raw.get("given_name") is None
            and full_name_order(raw.get("full_name"), src.name_order, roles) != src.name_order)


def patronymic_names(src: SourceConfig) -> bool:
    """The source stores patronymic names (given, father's and grandfather's given names,
    no family name): it maps no ``family_name``, and a father's or grandfather's name or
    a full name in ``given_father_grandfather`` order. Its names are read as one chain,
    whatever column each came in (:func:`linkage.standardise.names.patronymic_chain`)."""
    cols = src.columns
    return "family_name" not in cols and (
        "father_name" in cols or "grandfather_name" in cols
        or ("full_name" in cols and src.name_order == "given_father_grandfather"))


def uses_name_roles(src: SourceConfig) -> bool:
    """The source's names are read with the register's name roles (:func:`name_roles`),
    learned from the sources that do not: a full name in family/given order, or a
    patronymic roster (a civil registry's names are read as they stand and teach the
    roles)."""
    return reads_name_order(src) or (patronymic_names(src) and src.kind != "civil_registry")


def reads_name_order(src: SourceConfig) -> bool:
    """The source reads given and family names from one full-name column in a declared
    order (which :class:`NameRoles` may override row by row)."""
    return "full_name" in src.columns and src.name_order in ("family_given", "given_family")


def separate_names(src: SourceConfig) -> bool:
    """The source's given and family names come from columns of their own."""
    return "given_name" in src.columns and "family_name" in src.columns


#: Fewer records with separate given and family names than this: no roles, the declared
#: order is read as it is.
MIN_ROLE_RECORDS = 200


def name_roles(cur: duckdb.DuckDBPyConnection, sources: Sequence[SourceConfig]
               ) -> NameRoles | None:
    """How often each name is a given name and how often a family name (a father's name,
    for patronymic sources) among the active records of the given ``sources``; ``None``
    with fewer than :data:`MIN_ROLE_RECORDS` such records (nothing to learn from:
    declared orders and column positions stand).

    Family names are learned from the sources with separate given and family columns;
    fathers' names from patronymic civil registries when no source has family names.
    Counted by
    transliteration key of the first given-name token and of one-token family (father's)
    names (a compound name says nothing about one token's role).
    """
    names = sorted(s.name for s in sources if separate_names(s))
    second = "family_key"
    if not names:
        names = sorted(s.name for s in sources
                       if patronymic_names(s) and not uses_name_roles(s))
        second = "father_key"
    if not names:
        return None
    where = (f"status = 'active' AND list_contains(?, source) AND given_key IS NOT NULL "
             f"AND {second} IS NOT NULL")
    ((n,),) = cur.execute(f"SELECT count(*) FROM records WHERE {where}", [names]).fetchall()
    if n < MIN_ROLE_RECORDS:
        return None
    given = dict(cur.execute(f"SELECT given_key, count(*) FROM records WHERE {where} "
                             "GROUP BY 1", [names]).fetchall())
    family = dict(cur.execute(f"SELECT {second}, count(*) FROM records WHERE {where} AND "
                              f"NOT contains({second}, ' ') GROUP BY 1", [names]).fetchall())
    return NameRoles(given, family)


def _extra_reading(src: SourceConfig) -> str | None:
    """A hash of what decides a source's extra columns: the project's extra fields, the
    source's ``extra.*`` mapping and its ``derive:``; ``None`` when it has neither."""
    mapped = {f: c for f, c in src.columns.items() if f.startswith("extra.")}
    if not mapped and not src.derive:
        return None
    derive = {f: (d.column, d.regex.pattern, d.group) for f, d in src.derive.items()}
    text = repr((src.extra_fields, sorted(mapped.items()), sorted(derive.items())))
    return hashlib.sha256(text.encode()).hexdigest()


def ingest_source(cur: duckdb.DuckDBPyConnection, src: SourceConfig, *, force: bool = False,
                  now: dt.datetime | None = None,
                  progress: Callable[[str], None] | None = None,
                  roles: NameRoles | None = None) -> IngestReport:
    """Ingest one source as a full extract, inside the caller's transaction.

    Args:
        cur: a register cursor, normally inside :meth:`Register.transaction`.
        src: the source configuration.
        force: re-read even when the files are unchanged.
        now: timestamp to record (defaults to the current UTC time).
        progress: hears a line every 200,000 rows read (long extracts).
        roles: the register's name roles (:func:`name_roles`), for a full-name column.
    """
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    report = IngestReport(src.name)
    if not src.paths:
        raise IngestError(f"{src.config_path}: path: no file matches {src.pattern}")
    store.add_source(cur, src.name, src.kind, src.programme, str(src.config_path))
    hashes = {p: _sha256(p) for p in src.paths}
    previous = {h for (h,) in query(cur, "SELECT sha256 FROM source_files WHERE source = ?",
                                    [src.name])}
    report.files = len(hashes)
    # Declaring, changing or deriving an extra field changes what the same files give:
    # they are read again (a source without any reads as before, with no meta row).
    reading = _extra_reading(src)
    if (not force and previous == set(hashes.values())
            and store.extra_reading(cur, src.name) == reading):
        report.skipped = True
        return report

    records: dict[str, list] = {c: [] for c in ("uid", "record_key", "file", "row_number", "raw",
                                                 "record_hash", *STANDARD_COLUMNS, "extra",
                                                 "reuse")}
    rejects: list[dict] = []
    warnings: list[dict] = []
    seen: dict[str, tuple[str, int]] = {}
    rows_by_file = {}
    # A changed roster is mostly the rows it held last night: those read the same way
    # keep their standardised columns (forced re-reads standardise every row).
    standardising = standardise_reading(src, roles)
    known = (_reusable(cur, src.name, previous)
             if not force and store.standardise_reading(cur, src.name) == standardising
             else None)
    for path, sha in hashes.items():
        rows_by_file[path] = read_source(src, path, sha, records, rejects, seen, progress,
                                         warnings, roles, report, known)
    report.rows = sum(rows_by_file.values())
    reuse = records.pop("reuse")
    rows = _fill_reused(cur, store.records_table(records, source=src.name), reuse)
    counts = store.upsert_records(cur, rows, now=now, full_extract_of=src.name)
    report.added, report.updated, report.retired = counts.added, counts.updated, counts.retired
    report.unchanged = len(records["uid"]) - report.added - report.updated

    # The files just read replace what an earlier reading of the same files said (a newer
    # version of the code or of min_birth_year may keep a row an older one rejected).
    shas = sorted(set(hashes.values()))
    cur.execute("DELETE FROM rejects WHERE source = ? AND list_contains(?, file_sha256)",
                [src.name, shas])
    cur.execute("DELETE FROM field_warnings WHERE source = ? AND list_contains(?, file_sha256)",
                [src.name, shas])
    if rejects:
        rej = pa.Table.from_pylist(rejects)
        cur.register("stage_rejects", rej)
        try:
            cur.execute("""
                INSERT OR IGNORE INTO rejects
                SELECT source, file, file_sha256, row_number, record_key, raw, field, reason, ?
                FROM stage_rejects""", [now])
        finally:
            cur.unregister("stage_rejects")
    report.rejected = len(rejects)
    rejected_by_file = Counter(r["file"] for r in rejects)
    report.file_rows = {p.name: (n, rejected_by_file.get(str(p), 0))
                        for p, n in rows_by_file.items()}
    for r in rejects:
        report.reject_reasons[r["reason"]] = report.reject_reasons.get(r["reason"], 0) + 1
    if warnings:
        cur.register("stage_warnings", pa.Table.from_pylist(warnings, schema=_WARNING_SCHEMA))
        try:
            cur.execute("""
                INSERT OR IGNORE INTO field_warnings
                SELECT source, file, file_sha256, row_number, record_key, field, source_column,
                       raw_value, reason, ?
                FROM stage_warnings""", [now])
        finally:
            cur.unregister("stage_warnings")
    report.warned = len(warnings)
    for w in warnings:
        what = f"{w['field']}: {w['reason']}"
        report.warning_reasons[what] = report.warning_reasons.get(what, 0) + 1

    store.set_extra_reading(cur, src.name, reading)
    store.set_standardise_reading(cur, src.name, standardising)
    cur.execute("DELETE FROM source_files WHERE source = ?", [src.name])
    cur.executemany("INSERT INTO source_files VALUES (?, ?, ?, ?, ?)",
                    [[src.name, str(p), h, rows_by_file[p], now] for p, h in hashes.items()])
    return report
