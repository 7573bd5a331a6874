"""The register: one DuckDB file holding sources, records, persons and their history.

Schema (see also README "The register"):

============== =================================================================
table          what it holds
============== =================================================================
sources        one row per configured source (name, kind, programme label)
source_files   files ingested, by content hash, so re-ingesting is a no-op
records        one row per (source, record key): raw row as JSON, standardised
               columns, content hash, status ``active`` / ``retired``
rejects        rows that could not become records (no key, no name, unreadable row):
               source, file, row, reason
field_warnings fields blanked on records that were kept (a future birth date, an
               unknown sex code, ...): source, file, row, field, raw value, reason
model_versions trained models (version, file, hash, training metadata)
runs           batch runs: times, status, model version, summary JSON
links          scored pairs kept for review from the last published run
persons        persistent person IDs: live or retired, issue order
person_records the published record → person assignment (live records only)
person_successors  retired ID → the live ID(s) that carry it on
person_last_records  last record set of each retired ID (lets a split restore it)
person_events  the change feed: created, merged_into, split_from, ..., golden_changed
               (with the new golden record)
person_golden  each live person's golden record (linkage.ids.golden), as JSON
constraints    reviewer decisions: must_link / cannot_link between two records, with
               the review decision that wrote them (NULL: written by hand)
review_items   the review queue: pairs and persons in doubt, with their priority,
               evidence hash (never queued twice unchanged) and status
review_decisions  every decision on an item: who, when, what, comment, what it
               revoked and which constraints it wrote; never deleted
review_views   who looked at which item when (the audit trail)
review_samples clerical samples: their strata and population sizes, for the
               precision / recall estimate
enrol_queue    enrolments answered QUEUED, kept until applied (the enrol journal)
api_tokens     API clients: token ID, name, role, SHA-256 of the token (never the
               token), optional source limits, issue and revocation times
audit_log      append-only: who called what, when, on which person IDs / record
               keys, with which outcome (:mod:`linkage.service.audit`)
============== =================================================================

Atomicity: a batch run does all its writes inside one DuckDB transaction on one
cursor and commits once, at publish. A process killed before that commit leaves the
previous register exactly as it was; DuckDB's write-ahead log discards the
uncommitted work when the file is next opened.

DuckDB connections must not be shared across threads (and ``fetchone`` leaves results
open), so callers take a cursor per unit of work from :meth:`Register.cursor`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from linkage.canonical import STANDARD_COLUMNS
from linkage.errors import ConfigError, RegisterLockedError

if TYPE_CHECKING:
    from linkage.config import EncryptionConfig, ProjectConfig

#: 2: the review queue (review_items, review_decisions, review_views, review_samples) and
#: the decision behind each constraint. Registers of version 1 gain them when opened.
SCHEMA_VERSION = 2

#: ``records.file`` of records enrolled through the API. A file extract of the same
#: source never retires them: they did not come from its files.
API_FILE = "grpc"

_STD_COLS_SQL = ",\n    ".join(f"{c} {t}" for c, t in STANDARD_COLUMNS.items())

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS sources (
    name VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    programme VARCHAR NOT NULL,
    config_path VARCHAR
);
CREATE TABLE IF NOT EXISTS source_files (
    source VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    rows_read BIGINT,
    ingested_at TIMESTAMP,
    PRIMARY KEY (source, sha256)
);
CREATE TABLE IF NOT EXISTS records (
    uid VARCHAR PRIMARY KEY,          -- '<source>:<record key>'
    source VARCHAR NOT NULL,
    record_key VARCHAR NOT NULL,
    file VARCHAR,
    row_number BIGINT,
    raw VARCHAR,                      -- the source row as JSON, as read
    record_hash VARCHAR NOT NULL,     -- hash of raw, to detect updates
    status VARCHAR NOT NULL,          -- 'active' | 'retired'
    first_seen TIMESTAMP,
    updated_at TIMESTAMP,
    retired_at TIMESTAMP,
    {_STD_COLS_SQL},
    extra VARCHAR                     -- standardised extra fields, JSON (x_<name>: value)
);
-- Registers written before extra fields gain the column (NULL: no extra values).
ALTER TABLE records ADD COLUMN IF NOT EXISTS extra VARCHAR;
CREATE TABLE IF NOT EXISTS rejects (
    source VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    record_key VARCHAR,
    raw VARCHAR,
    field VARCHAR,
    reason VARCHAR NOT NULL,
    rejected_at TIMESTAMP,
    PRIMARY KEY (source, file_sha256, row_number)
);
-- One row per field blanked on an ingested record; the record itself is kept. Like
-- rejects, the only place (with records.raw) where the raw value is stored.
CREATE TABLE IF NOT EXISTS field_warnings (
    source VARCHAR NOT NULL,
    file VARCHAR NOT NULL,
    file_sha256 VARCHAR NOT NULL,
    row_number BIGINT NOT NULL,
    record_key VARCHAR,
    field VARCHAR NOT NULL,           -- canonical field blanked: 'birth_date', 'sex', ...
    source_column VARCHAR,            -- the source's column for it
    raw_value VARCHAR,
    reason VARCHAR NOT NULL,
    warned_at TIMESTAMP,
    PRIMARY KEY (source, file_sha256, row_number, field)
);
CREATE TABLE IF NOT EXISTS model_versions (
    version VARCHAR PRIMARY KEY,
    path VARCHAR,
    sha256 VARCHAR,
    trained_at TIMESTAMP,
    metadata VARCHAR,                 -- JSON
    model_json VARCHAR                -- the whole model file: real time serves exactly it
);
-- Registers made before model_json existed gain it (NULL: their runs' models are read
-- from the file named in path).
ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS model_json VARCHAR;
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR NOT NULL,          -- 'published' | 'failed'
    model_version VARCHAR,
    summary VARCHAR,                  -- JSON, as printed at the end of the run
    error VARCHAR
);
CREATE TABLE IF NOT EXISTS links (
    run_id VARCHAR NOT NULL,
    uid_l VARCHAR NOT NULL,
    uid_r VARCHAR NOT NULL,
    match_probability DOUBLE,
    match_weight DOUBLE,
    linked BOOLEAN,                   -- at or above the pair's match threshold
    PRIMARY KEY (uid_l, uid_r)
);
-- The part of match_weight that is the pair's ambiguity (linkage.batch.ambiguity):
-- adjusted minus pairwise weight; 0 when not adjusted.
ALTER TABLE links ADD COLUMN IF NOT EXISTS ambiguity_bits DOUBLE DEFAULT 0;
-- Weighed by that step (two sources listing each person once): linked from
-- thresholds.one_to_one, not thresholds.match.
ALTER TABLE links ADD COLUMN IF NOT EXISTS one_to_one BOOLEAN DEFAULT false;
CREATE TABLE IF NOT EXISTS persons (
    person_id VARCHAR PRIMARY KEY,
    status VARCHAR NOT NULL,          -- 'live' | 'retired'
    issue_seq BIGINT NOT NULL,        -- order of issue: the oldest survives a merge
    created_run VARCHAR,
    updated_run VARCHAR
);
CREATE TABLE IF NOT EXISTS person_records (
    uid VARCHAR PRIMARY KEY,
    person_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS person_successors (
    person_id VARCHAR NOT NULL,
    successor_id VARCHAR NOT NULL,
    PRIMARY KEY (person_id, successor_id)
);
CREATE TABLE IF NOT EXISTS person_last_records (
    person_id VARCHAR NOT NULL,
    uid VARCHAR NOT NULL,
    PRIMARY KEY (person_id, uid)
);
CREATE SEQUENCE IF NOT EXISTS person_event_seq START 1;
CREATE TABLE IF NOT EXISTS person_events (
    seq BIGINT PRIMARY KEY,           -- the change-feed cursor
    run_id VARCHAR,
    occurred_at TIMESTAMP,
    kind VARCHAR NOT NULL,
    person_id VARCHAR NOT NULL,
    record_uid VARCHAR,
    other_person_id VARCHAR,
    cause VARCHAR
);
-- golden_changed events carry the person's new golden record (JSON, linkage.ids.golden).
ALTER TABLE person_events ADD COLUMN IF NOT EXISTS golden VARCHAR;
-- Each live person's best values, recomputed whenever its records change.
CREATE TABLE IF NOT EXISTS person_golden (
    person_id VARCHAR PRIMARY KEY,
    golden VARCHAR NOT NULL,          -- JSON: linkage.ids.golden.GoldenRecord
    updated_at TIMESTAMP
);
-- Enrolments answered QUEUED (a batch held the register): kept here until applied, so
-- a crash before then loses none; the server replays them when it starts.
CREATE TABLE IF NOT EXISTS enrol_queue (
    seq BIGINT NOT NULL,           -- submission order
    queued_at TIMESTAMP NOT NULL,
    uid VARCHAR NOT NULL,
    item VARCHAR NOT NULL          -- JSON: source, record_key, raw, row (standardised)
);
-- API clients (linkage.service.auth). Only a hash of each token is kept: the token is
-- shown once, when issued. Rows are never deleted: a revoked token keeps its row.
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id VARCHAR PRIMARY KEY,     -- public part of the token, shown by `token list`
    name VARCHAR NOT NULL,            -- who holds it ('cash-transfer MIS', 'a.diallo')
    role VARCHAR NOT NULL,            -- mis | reviewer | operator | admin
    token_sha256 VARCHAR NOT NULL,
    sources VARCHAR,                  -- JSON list: mis clients limited to these sources
    issued_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
-- mis clients limited to these programmes (JSON list of programme labels): their reads
-- return only persons with a record there, and only those records.
ALTER TABLE api_tokens ADD COLUMN IF NOT EXISTS programmes VARCHAR;
-- Who read or wrote whose data (linkage.service.audit). Append-only: nothing updates
-- or deletes a row.
CREATE SEQUENCE IF NOT EXISTS audit_seq START 1;
CREATE TABLE IF NOT EXISTS audit_log (
    seq BIGINT PRIMARY KEY,
    called_at TIMESTAMP NOT NULL,
    client VARCHAR NOT NULL,          -- token name (token ID), or 'open mode' / 'cli'
    role VARCHAR,
    method VARCHAR NOT NULL,          -- e.g. 'LinkageService/GetPerson'
    outcome VARCHAR NOT NULL,         -- gRPC status name: OK, NOT_FOUND, ...
    person_ids VARCHAR[],             -- persons the call read or wrote
    record_keys VARCHAR[],            -- '<source>:<record key>' the call read or wrote
    detail VARCHAR                    -- counts, cursor ranges (never personal data)
);
CREATE TABLE IF NOT EXISTS constraints (
    uid_a VARCHAR NOT NULL,
    uid_b VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,            -- 'must_link' | 'cannot_link'
    decided_by VARCHAR,
    decided_at TIMESTAMP,
    PRIMARY KEY (uid_a, uid_b)
);
-- Version 2: the review queue. A constraint names the decision that wrote it, so a later
-- decision on the same item revokes exactly what the earlier one wrote.
ALTER TABLE constraints ADD COLUMN IF NOT EXISTS decision_id VARCHAR;
CREATE SEQUENCE IF NOT EXISTS review_item_seq START 1;
-- No primary key on purpose: rows are updated (status) in the transaction that may have
-- inserted them, which DuckDB's indexes refuse; item_id comes from the sequence and
-- linkage.review keeps evidence_hash unique.
CREATE TABLE IF NOT EXISTS review_items (
    item_id VARCHAR NOT NULL,         -- 'R<seq>'
    seq BIGINT NOT NULL,              -- queue order
    kind VARCHAR NOT NULL,            -- 'pair' | 'person' | 'enrolment' | 'sample'
    reasons VARCHAR NOT NULL,         -- why it was queued, comma-separated
    uid_a VARCHAR,                    -- the pair (person items: NULL)
    uid_b VARCHAR,
    person_id VARCHAR,                -- the person in doubt (person items)
    record_uids VARCHAR[] NOT NULL,   -- every record the evidence covers
    match_probability DOUBLE,
    priority DOUBLE NOT NULL,         -- higher first, 0-100
    evidence_hash VARCHAR NOT NULL,   -- kind + records + their record_hash
    programmes VARCHAR[],             -- programme labels of the records (filter)
    area VARCHAR,                     -- region of the records (filter)
    status VARCHAR NOT NULL,          -- 'open' | 'deferred' | 'decided' | 'stale'
    created_at TIMESTAMP NOT NULL,
    created_by VARCHAR NOT NULL,      -- the run id, 'enrol' or the sample id
    sample_id VARCHAR,                -- clerical-sample items: the sample and stratum
    stratum VARCHAR,
    linked_then BOOLEAN               -- the pair shared a person when queued
);
CREATE TABLE IF NOT EXISTS review_decisions (
    decision_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    decision VARCHAR NOT NULL,        -- 'same' | 'not_same' | 'take_out' | 'defer'
    record_uid VARCHAR,               -- take_out: the record taken out
    reviewer VARCHAR NOT NULL,
    decided_at TIMESTAMP NOT NULL,
    comment VARCHAR,
    revokes VARCHAR,                  -- the item's previous decision, revoked by this one
    constraints_json VARCHAR          -- [[uid_a, uid_b, kind], ...] written by it
);
CREATE TABLE IF NOT EXISTS review_views (
    item_id VARCHAR NOT NULL,
    viewer VARCHAR NOT NULL,
    viewed_at TIMESTAMP NOT NULL,
    surface VARCHAR                   -- 'grpc' | 'cli' | 'web'
);
CREATE TABLE IF NOT EXISTS review_samples (
    sample_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,
    created_by VARCHAR NOT NULL,
    strata_json VARCHAR NOT NULL      -- strata: population, sampled, bounds, linked
);
"""


#: The catalog name of an encrypted register, attached to a private in-memory database
#: (DuckDB opens encrypted files only through ATTACH).
ENCRYPTED_ALIAS = "linkage_register"


def _quote_path(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def enable_encrypted_writes(con: duckdb.DuckDBPyConnection, enc: EncryptionConfig) -> None:
    """Let ``con`` write encrypted files: OpenSSL from DuckDB's ``httpfs`` extension when
    it is installed, else DuckDB's built-in module if the project allows it.

    Raises:
        ConfigError: neither (naming ``encryption.builtin_crypto``).
    """
    try:
        con.execute("LOAD httpfs")  # never INSTALL: that would download
        return
    except duckdb.Error:
        pass
    if not enc.builtin_crypto:
        raise ConfigError(enc.project, "encryption.builtin_crypto",
                          "writing an encrypted register needs DuckDB's httpfs extension "
                          "(OpenSSL), which is not installed here; install it (INSTALL "
                          "httpfs), or set builtin_crypto: true to write with DuckDB's "
                          "built-in crypto, which DuckDB marks unsafe for writing "
                          "(see docs/OPERATIONS.md)")
    con.execute("SET force_mbedtls_unsafe = true")


def attach_encrypted(con: duckdb.DuckDBPyConnection, path: Path, alias: str,
                     enc: EncryptionConfig, *, read_only: bool) -> None:
    """``ATTACH path AS alias`` with the project's key (bound, never in the SQL text).

    Raises:
        ConfigError: the key is missing, wrong, or the file is not encrypted (naming the
            project file's ``encryption`` key, never the key).
        RegisterLockedError: another process holds the file.
    """
    key = enc.key()
    opts = "ENCRYPTION_KEY ?" + (", READ_ONLY" if read_only else "")
    try:
        con.execute(f"ATTACH {_quote_path(path)} AS {alias} ({opts})", [key])
    except duckdb.InvalidInputException as exc:
        if "key" in str(exc).lower():
            raise ConfigError(enc.project, "encryption", f"the key does not open {path} "
                              "(a wrong key, or the file was encrypted with another)") from None
        raise
    except duckdb.CatalogException as exc:
        if "not encrypted" in str(exc):
            raise ConfigError(enc.project, "encryption", f"{path} is not encrypted, but the "
                              "project names a key: encrypt it (docs/OPERATIONS.md) or "
                              "remove encryption") from None
        raise
    except duckdb.IOException as exc:
        if "lock" in str(exc).lower():
            raise _locked(path) from None
        raise


def _locked(path: Path) -> RegisterLockedError:
    return RegisterLockedError(
        f"{path} is in use by another process (a running `linkage serve` or "
        "`linkage run`); stop it or use that server's batch control")


def connect(path: Path, *, read_only: bool, encryption: EncryptionConfig | None
            ) -> duckdb.DuckDBPyConnection:
    """A connection whose default catalog is the database file at ``path``, encrypted with
    the project's key when it has one: the one way linkage opens a register file (the
    register, its snapshot, backups)."""
    if encryption is None:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise _locked(path) from exc
            raise
        except duckdb.CatalogException as exc:
            if "encrypted" in str(exc):
                raise ConfigError(path, None, "the file is encrypted: name its key in the "
                                  "project file (encryption.key_file or encryption.key_env)"
                                  ) from None
            raise
    con = duckdb.connect()
    try:
        if not read_only:
            enable_encrypted_writes(con, encryption)
        attach_encrypted(con, path, ENCRYPTED_ALIAS, encryption, read_only=read_only)
        con.execute(f"USE {ENCRYPTED_ALIAS}")
    except BaseException:
        con.close()
        raise
    return con


class Register:
    """A handle on the register file.

    Example:
        >>> reg = Register.open("data/register.duckdb")  # doctest: +SKIP
        >>> with reg.transaction() as cur:  # doctest: +SKIP
        ...     cur.execute("SELECT count(*) FROM records").fetchall()
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path,
                 encryption: EncryptionConfig | None = None):
        self._con = con
        self.path = path
        #: the key's whereabouts when the file is encrypted: its copies (snapshot,
        #: backups) are encrypted with the same key
        self.encryption = encryption

    @classmethod
    def of(cls, project: ProjectConfig, *, read_only: bool = False) -> Register:
        """The project's register, with its encryption key when it names one."""
        return cls.open(project.register, read_only=read_only, encryption=project.encryption)

    @classmethod
    def open(cls, path: Path | str, *, read_only: bool = False,
             encryption: EncryptionConfig | None = None) -> Register:
        """Open (creating if needed) the register and make sure its schema exists.

        With ``encryption`` the file is encrypted at rest with that key (created so, or
        opened with it); see :func:`connect`."""
        path = Path(path)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise FileNotFoundError(f"no register at {path}: run `linkage run` first")
        con = connect(path, read_only=read_only, encryption=encryption)
        reg = cls(con, path, encryption)
        if not read_only:
            con.execute(SCHEMA)
            # The schema above migrates older files in place (IF NOT EXISTS), so the
            # file is now at this version.
            con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                        [str(SCHEMA_VERSION)])
        return reg

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor: its own transaction context, safe to use from one thread."""
        cur = self._con.cursor()
        if self.encryption is not None:  # a new connection: its default catalog again
            cur.execute(f"USE {ENCRYPTED_ALIAS}")
        return cur

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor inside one transaction, committed on success, rolled back on error."""
        cur = self.cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            cur.close()
            raise
        cur.execute("COMMIT")
        cur.close()

    def close(self) -> None:
        self._con.close()


def query(cur: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[tuple]:
    """Run a query and fetch all rows (never leave a result open: see DuckDB trap)."""
    return cur.execute(sql, params or []).fetchall()
