"""Project and source configuration, read from YAML.

A *project file* names the register, the model and the sources; each *source file*
describes one roster or civil-registry extract: where its rows are, in which format, and
how its columns map onto the canonical person (:mod:`linkage.canonical`).

Every problem is reported as a :class:`ConfigError` naming the file and the key, because a
registry administrator editing YAML needs to know exactly where to look.

Example:
    >>> project = load_project("examples/demo/project.yaml")  # doctest: +SKIP
    >>> [s.name for s in project.sources]  # doctest: +SKIP
    ['civil_registry', 'cash_transfer', 'public_works', 'nutrition']
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from linkage.canonical import RAW_FIELDS
from linkage.errors import ConfigError
from linkage.matching import extra as extra_fields_
from linkage.matching.extra import Definition, ExtraField
from linkage.standardise.dates import MIN_YEAR

FORMATS = ("csv", "parquet", "jsonl")
KINDS = ("programme", "civil_registry")
ENCODINGS = {"utf-8": "utf-8", "utf8": "utf-8", "latin-1": "latin-1", "latin1": "latin-1",
             "iso-8859-1": "latin-1", "cp1252": "cp1252"}
NAME_ORDERS = ("family_given", "given_family", "given_father_grandfather")
#: ``clustering:`` values (see :mod:`linkage.batch.clustering`); the first is the default.
CLUSTERING_METHODS = ("greedy", "components")
#: ``engine:`` values (see :mod:`linkage.engines`); the first is the default.
ENGINE_NAMES = ("duckdb", "spark")
#: A DuckDB memory size ("4GB", "512MiB", "1.5 GB").
_DUCKDB_SIZE = re.compile(r"^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$", re.IGNORECASE)
#: A JVM memory size ("2g", "512m").
_JVM_SIZE = re.compile(r"^\d+[kmgt]$", re.IGNORECASE)


@dataclass(frozen=True)
class Thresholds:
    """Match-probability thresholds.

    Pairs at or above ``match`` are linked into one person; pairs between ``review``
    and ``match`` are kept in the register's ``links`` table for a reviewer.

    ``match`` defaults to 0.8, a threshold that holds where the model is overconfident.
    Where it is well calibrated, lower is better for F1: on the hard generated registers
    (sahel and horn, 20k and 50k persons) 0.5 gave pairwise F1 +0.01 to +0.045, but on
    files of many duplicates per person (Splink's fake_1000 and historical_50k) F1 fell
    from 0.907 to 0.775 and from 0.836 to 0.611 (benchmarks/RESULTS.md). Which holds on
    a register is measured, not assumed: ``linkage review estimate`` shows precision,
    recall and F1 at each threshold from a clerical sample and suggests one.

    ``one_to_one`` is the match threshold of the pairs the ambiguity step weighed
    (:mod:`linkage.batch.ambiguity`: two sources that each list a person once): their
    probability already counts every competitor of both records, and each record takes
    at most one of them, so "more likely than not" is the natural decision and a false
    link cannot chain a family together the way a pairwise link can. 0.5 by default:
    on hard generated registers of 50,000 persons pairwise F1 rose from 0.758 to 0.793
    (horn) and from 0.835 to 0.846 (sahel), FEBRL 4 did not move, and files of
    duplicates are not one-to-one, so they keep ``match`` (benchmarks/RESULTS.md, "A
    match threshold for one-to-one pairs"). It is used within ``[review, match]``
    (:attr:`one_to_one_match`).
    """

    match: float = 0.8
    review: float = 0.4
    one_to_one: float = 0.5

    @property
    def one_to_one_match(self) -> float:
        """The threshold one-to-one pairs are linked at: ``one_to_one``, but never above
        ``match`` nor under ``review`` (a linked pair is always kept in ``links``)."""
        return one_to_one_threshold(self.match, self.review, self.one_to_one)


def one_to_one_threshold(match: float, review: float, one_to_one: float) -> float:
    """See :attr:`Thresholds.one_to_one_match`; also for a match threshold under trial
    (``linkage review estimate`` tries several)."""
    return min(max(one_to_one, review), match)


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``linkage serve`` (the ``serve:`` mapping of the project file).

    ``shutdown_grace_seconds``: on SIGTERM, calls in flight get this long to finish
    before they are cancelled. ``max_records_per_stream``: records one ``EnrolBatch``
    stream may carry (a longer stream is refused before anything is enrolled).
    ``max_persons_per_call``: person IDs one ``GetPersons`` call may ask for.
    ``max_page_size``: entries per page of a listing at most (a larger page_size is
    served as this). ``unary_workers``: threads kept for short calls (Resolve, Enrol,
    look-ups, health), which long-lived calls can never take. ``max_streams``: long-lived
    calls open at once (WatchChanges with follow, WatchRun, EnrolBatch); one more is
    refused with RESOURCE_EXHAUSTED instead of waiting for a thread.
    """

    shutdown_grace_seconds: float = 30.0
    max_records_per_stream: int = 50_000
    tls: TlsConfig | None = None  # serve.tls: TLS (and mutual TLS) from these files
    insecure: bool = False  # serve.insecure: plaintext, on loopback only, on purpose
    #: serve.snapshot_seconds: the read-only snapshot for readers is refreshed after each
    #: publish and, when enrolments or audit rows came in, this often
    snapshot_seconds: float = 60.0
    max_persons_per_call: int = 100
    max_page_size: int = 1000
    unary_workers: int = 32
    max_streams: int = 256
    #: serve.resolve_processes: Resolve is scored in this many processes forked from the
    #: serving one and kept current by it (0: in the serving process; linkage.realtime.workers)
    resolve_processes: int = 0
    #: serve.clients: under mutual TLS, client certificate identities and their roles
    clients: tuple[ClientCertificate, ...] = ()


@dataclass(frozen=True)
class ClientCertificate:
    """One entry of ``serve.clients``: a client identified by its certificate (its subject
    CN or one of its subject alternative names equals ``identity``) gets ``role``, limited
    to ``sources`` and ``programmes`` (mis only; empty: not limited), as a token would."""

    identity: str
    role: str
    sources: tuple[str, ...] = ()
    programmes: tuple[str, ...] = ()


@dataclass(frozen=True)
class TlsConfig:
    """``serve.tls``: PEM files of the server's certificate chain and private key, and
    optionally of the CA whose client certificates are required (mutual TLS)."""

    cert: Path
    key: Path
    client_ca: Path | None = None


@dataclass(frozen=True)
class EncryptionConfig:
    """``encryption``: the register is encrypted at rest (DuckDB database encryption,
    AES-GCM) with a key read from ``key_file`` or the environment variable ``key_env``
    (exactly one). The key itself is never held here, logged or put in a message: it is
    read by :meth:`key` when the register is opened (:mod:`linkage.register.database`).

    ``builtin_crypto``: DuckDB writes encrypted files only with OpenSSL, which its
    ``httpfs`` extension brings; where that extension is not installed, ``true`` lets it
    write with its built-in (mbedtls) module, which DuckDB marks unsafe for writing
    (its random nonces are not from a cryptographic generator). Reading needs neither.
    """

    project: Path  # the project file, named in errors
    key_file: Path | None = None
    key_env: str | None = None
    builtin_crypto: bool = False

    def key(self) -> str:
        """The key, read now from its file or variable.

        Raises:
            ConfigError: the file or variable is missing or empty (naming the key of the
                project file, never the key).
        """
        if self.key_file is not None:
            try:
                value = self.key_file.read_text(encoding="utf-8").strip()
            except FileNotFoundError:
                raise ConfigError(self.project, "encryption.key_file",
                                  f"file not found: {self.key_file}") from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(self.project, "encryption.key_file",
                                  f"cannot read {self.key_file} ({exc.__class__.__name__})"
                                  ) from None
            if not value:
                raise ConfigError(self.project, "encryption.key_file",
                                  f"{self.key_file} is empty")
            return value
        value = os.environ.get(self.key_env or "", "").strip()
        if not value:
            raise ConfigError(self.project, "encryption.key_env",
                              f"the environment variable {self.key_env} is not set (or empty)")
        return value


@dataclass(frozen=True)
class GuardConfig:
    """Change guards of a batch run (the ``guards:`` mapping of the project file).

    A run stops before publishing (:class:`linkage.errors.ChangeGuardTripped`) when it would
    retire more than ``max_retired_share`` of a source's records, reject more than
    ``max_rejected_share`` of a file's rows, or retire or split more than
    ``max_changed_ids_share`` of the live person IDs. A share is only judged when its
    denominator is at least ``min_count`` (three of five records retired is no alarm).
    ``linkage run --accept-changes`` publishes anyway.
    """

    max_retired_share: float = 0.25
    max_rejected_share: float = 0.25
    max_changed_ids_share: float = 0.25
    min_count: int = 50


@dataclass(frozen=True)
class MemoryConfig:
    """The DuckDB engine's memory (the ``memory:`` mapping of the project file).

    ``limit``: the scratch database's memory limit ("8GB"); ``None`` sets it from the
    machine (:func:`linkage.engines.duckdb_sql.machine_memory_limit`). ``spill_dir``:
    where it spills beyond the limit (default: the system temp directory); it needs
    free disk of several times the register's size at national scale (docs/SCALE.md).
    """

    limit: str | None = None
    spill_dir: Path | None = None


@dataclass(frozen=True)
class SparkConfig:
    """The Spark engine (the ``spark:`` mapping; used with ``engine: spark``).

    ``master`` and ``driver_memory`` apply to a local session the batch starts itself;
    under ``spark-submit`` the job's own session is used as it is. ``scratch_dir``:
    where Splink's intermediate Parquet goes (on a cluster: storage every executor
    reaches).
    """

    master: str = "local[2]"
    driver_memory: str = "2g"
    scratch_dir: Path | None = None


@dataclass(frozen=True)
class Derive:
    """A field taken from part of a source column: ``regex``'s group ``group`` of ``column``.

    A value the expression does not match blanks the field with a field warning.
    """

    column: str
    regex: re.Pattern[str]
    group: int = 1

    def of(self, value: str | None) -> tuple[str | None, bool]:
        """(the derived value, whether ``value`` matched); a blank value matches nothing."""
        if value is None:
            return None, True
        m = self.regex.search(value)
        if m is None:
            return None, False
        return (m.group(self.group) or None), True


@dataclass(frozen=True)
class SourceConfig:
    """One source: a programme roster or a civil-registry extract."""

    name: str
    kind: str
    programme: str
    paths: tuple[Path, ...]
    pattern: str
    format: str
    record_key: str
    columns: dict[str, str]
    config_path: Path
    delimiter: str = ","
    encoding: str = "utf-8"
    name_order: str | None = None
    birth_date_format: str = "%d/%m/%Y"
    age_reference_date: dt.date | None = None
    age_reference_column: str | None = None
    sex_codes: dict[str, list[str]] | None = None
    country_code: str = ""
    min_birth_year: int = MIN_YEAR  # the project's setting
    #: The project's extra fields (columns may map ``extra.<name>`` to a column).
    extra_fields: tuple[ExtraField, ...] = ()
    #: field -> how it is derived from part of another column (``derive:``).
    derive: dict[str, Derive] = field(default_factory=dict)

    @property
    def source_columns(self) -> list[str]:
        """The columns this source must have: the key and every mapped column."""
        cols = [self.record_key, *self.columns.values(),
                *(d.column for d in self.derive.values())]
        if self.age_reference_column:
            cols.append(self.age_reference_column)
        return list(dict.fromkeys(cols))


@dataclass(frozen=True)
class ProjectConfig:
    """The project: register location, model, thresholds and sources."""

    name: str
    path: Path
    register: Path
    model: Path | None
    country_code: str
    thresholds: Thresholds
    max_block_size: int
    sources: tuple[SourceConfig, ...] = field(default_factory=tuple)
    min_birth_year: int = MIN_YEAR  # earlier birth years are blanked with a field warning
    serve: ServeConfig = field(default_factory=ServeConfig)
    clustering: str = CLUSTERING_METHODS[0]  # greedy (no chaining) | components
    #: pairs between sources that list each person once re-weighed by their records'
    #: other candidates before clustering (linkage.batch.ambiguity)
    ambiguity: bool = True
    guards: GuardConfig = field(default_factory=GuardConfig)
    engine: str = ENGINE_NAMES[0]  # duckdb (embedded) | spark
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    spark: SparkConfig = field(default_factory=SparkConfig)
    encryption: EncryptionConfig | None = None  # the register encrypted at rest
    #: ``extra_fields:``: columns beyond the canonical person, and how each compares.
    extra_fields: tuple[ExtraField, ...] = ()

    @property
    def definition(self) -> Definition:
        """The project's matching definition: the built-in one plus its extra fields."""
        return Definition(self.extra_fields)

    def source(self, name: str) -> SourceConfig:
        for s in self.sources:
            if s.name == name:
                return s
        raise KeyError(name)


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(path, None, "file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(path, None, f"not valid YAML ({exc.__class__.__name__}: "
                                      f"{getattr(exc, 'problem', exc)})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, "not UTF-8 text") from exc
    if not isinstance(data, dict):
        raise ConfigError(path, None, "expected a mapping of keys to values")
    return data


class _Keys:
    """Typed access to a YAML mapping that names file and key in every error."""

    def __init__(self, path: Path, data: dict[str, Any], allowed: set[str], prefix: str = ""):
        self.path, self.data, self.prefix = path, data, prefix
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ConfigError(path, prefix + unknown[0],
                              f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def _err(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.path, self.prefix + key, message)

    def str(self, key: str, default: str | None = None, *, required: bool = False,
            choices: tuple[str, ...] | None = None) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._err(key, "required key is missing")
            return default
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            raise self._err(key, "expected a non-empty string")
        if choices and value not in choices:
            raise self._err(key, f"'{value}' is not one of {', '.join(choices)}")
        return value

    def float(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise self._err(key, f"expected a number between {lo} and {hi}")
        return float(value)

    def int(self, key: str, default: int, lo: int, hi: int | None = None) -> int:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < lo or (
                hi is not None and value > hi):
            if hi is not None:
                raise self._err(key, f"expected a whole number between {lo} and {hi}")
            raise self._err(key, f"expected a whole number of at least {lo}")
        return value

    def bool(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._err(key, "expected true or false")
        return value

    def mapping(self, key: str, *, required: bool = False) -> dict[str, Any]:
        value = self.data.get(key)
        if value is None:
            if required:
                raise self._err(key, "required key is missing")
            return {}
        if not isinstance(value, dict):
            raise self._err(key, "expected a mapping")
        return value


_SOURCE_KEYS = {"name", "kind", "programme", "path", "format", "delimiter", "encoding",
                "record_key", "columns", "name_order", "birth_date_format",
                "age_reference_date", "age_reference_column", "sex_codes", "country_code",
                "derive"}


def _field_name(path: Path, key: str, field_name: Any, extra: tuple[ExtraField, ...]) -> str:
    """A canonical field or ``extra.<declared name>``, or a ConfigError at ``key``."""
    declared = [f.raw_field for f in extra]
    if isinstance(field_name, str) and field_name.startswith(extra_fields_.RAW_PREFIX):
        if field_name not in declared:
            raise ConfigError(path, key, "extra field not declared in the project's "
                              f"extra_fields (declared: {', '.join(declared) or 'none'})")
    elif field_name not in RAW_FIELDS:
        raise ConfigError(path, key, f"unknown canonical field (allowed: {', '.join(RAW_FIELDS)}"
                          ", or extra.<name> of the project's extra_fields)")
    return field_name


def _derive(path: Path, raw: dict[str, Any], columns: dict[str, str],
            extra: tuple[ExtraField, ...]) -> dict[str, Derive]:
    out = {}
    for field_name, spec in raw.items():
        key = f"derive.{field_name}"
        _field_name(path, key, field_name, extra)
        if field_name in columns:
            raise ConfigError(path, key, f"also mapped in columns.{field_name}: map it once")
        if not isinstance(spec, dict):
            raise ConfigError(path, key, "expected a mapping with from, regex and group")
        dk = _Keys(path, spec, {"from", "regex", "group"}, prefix=key + ".")
        column = dk.str("from", required=True) or ""
        pattern = dk.str("regex", required=True) or ""
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise ConfigError(path, key + ".regex", f"not a regular expression ({exc})") from exc
        group = dk.int("group", 1, 0)
        if group > regex.groups:
            raise ConfigError(path, key + ".group", f"the regex has {regex.groups} group(s)")
        out[field_name] = Derive(column, regex, group)
    return out


def load_source(path: Path | str, *, default_country_code: str = "",
                min_birth_year: int = MIN_YEAR,
                extra_fields: tuple[ExtraField, ...] = ()) -> SourceConfig:
    """Read and validate one source file.

    ``default_country_code``, ``min_birth_year`` and ``extra_fields`` come from the
    project file.

    Raises:
        ConfigError: naming the file and the offending key.
    """
    path = Path(path)
    k = _Keys(path, _read_yaml(path), _SOURCE_KEYS)
    name = k.str("name", required=True)
    assert name is not None
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(path, "name", "use letters, digits, '-' and '_' only")
    fmt = k.str("format", required=True, choices=FORMATS)
    enc_raw = (k.str("encoding", "utf-8") or "utf-8").lower()
    if enc_raw not in ENCODINGS:
        raise ConfigError(path, "encoding", f"'{enc_raw}' is not one of utf-8, latin-1, cp1252")
    delimiter = k.str("delimiter", ",") or ","
    if fmt == "csv" and len(delimiter.encode()) != 1 and delimiter != "\\t":
        raise ConfigError(path, "delimiter", "expected a single character")
    delimiter = "\t" if delimiter == "\\t" else delimiter

    pattern = k.str("path", required=True)
    assert pattern is not None
    full_pattern = str(path.parent / pattern) if not Path(pattern).is_absolute() else pattern
    paths = tuple(sorted(Path(p) for p in glob.glob(full_pattern)))

    columns_raw = k.mapping("columns", required=True)
    columns: dict[str, str] = {}
    for field_name, column in columns_raw.items():
        _field_name(path, f"columns.{field_name}", field_name, extra_fields)
        if not isinstance(column, str) or not column:
            raise ConfigError(path, f"columns.{field_name}", "expected a column name")
        columns[field_name] = column
    derive = _derive(path, k.mapping("derive"), columns, extra_fields)
    has_name = any(f in columns or f in derive
                   for f in ("given_name", "family_name", "full_name", "father_name"))
    if not has_name:
        raise ConfigError(path, "columns", "map at least one name field "
                          "(given_name, family_name, father_name or full_name)")
    name_order = k.str("name_order", None, choices=NAME_ORDERS)
    if "full_name" in columns and name_order is None:
        raise ConfigError(path, "name_order", "required with columns.full_name "
                          f"(one of {', '.join(NAME_ORDERS)})")

    ref_date = None
    ref_raw = k.data.get("age_reference_date")
    if ref_raw is not None:
        try:
            ref_date = (ref_raw if isinstance(ref_raw, dt.date)
                        else dt.date.fromisoformat(str(ref_raw)))
        except ValueError as exc:
            raise ConfigError(path, "age_reference_date", "expected a date as YYYY-MM-DD") from exc
    ref_col = k.str("age_reference_column", None)
    if "age" in columns and ref_date is None and ref_col is None:
        raise ConfigError(path, "age_reference_date",
                          "required with columns.age (or give age_reference_column)")

    fmt_date = k.str("birth_date_format", "%d/%m/%Y") or "%d/%m/%Y"
    try:
        dt.date(1975, 3, 14).strftime(fmt_date)
        if "%Y" not in fmt_date:
            raise ValueError
    except ValueError as exc:
        raise ConfigError(path, "birth_date_format", "expected a strptime format with %Y") from exc

    sex_codes_raw = k.mapping("sex_codes")
    sex_codes = None
    if sex_codes_raw:
        if set(sex_codes_raw) - {"M", "F"}:
            raise ConfigError(path, "sex_codes", "keys must be M and F")
        sex_codes = {s: [str(c) for c in (v if isinstance(v, list) else [v])]
                     for s, v in sex_codes_raw.items()}

    return SourceConfig(
        name=name,
        kind=k.str("kind", required=True, choices=KINDS) or "programme",
        programme=k.str("programme", name) or name,
        paths=paths,
        pattern=full_pattern,
        format=fmt or "csv",
        record_key=k.str("record_key", required=True) or "",
        columns=columns,
        config_path=path,
        delimiter=delimiter,
        encoding=ENCODINGS[enc_raw],
        name_order=name_order,
        birth_date_format=fmt_date,
        age_reference_date=ref_date,
        age_reference_column=ref_col,
        sex_codes=sex_codes,
        country_code=k.str("country_code", default_country_code) or default_country_code,
        min_birth_year=min_birth_year,
        extra_fields=extra_fields,
        derive=derive,
    )


_PROJECT_KEYS = {"name", "register", "model", "country_code", "sources", "thresholds",
                 "max_block_size", "min_birth_year", "serve", "clustering", "ambiguity", "guards",
                 "engine", "memory", "spark", "encryption",
                 "extra_fields"}


def _names_list(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(path, key, "expected a list of names")
    return tuple(value)


def _clients(path: Path, raw: Any, tls: TlsConfig | None, sources: list[SourceConfig]
             ) -> tuple[ClientCertificate, ...]:
    if raw is None:
        return ()
    from linkage.service.auth import MIS, ROLES  # the one list of roles

    if tls is None or tls.client_ca is None:
        raise ConfigError(path, "serve.clients", "client certificates need mutual TLS: set "
                                                 "serve.tls.client_ca")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(path, "serve.clients", "expected a list of {identity, role, ...}")
    names = {s.name for s in sources}
    programmes = {s.programme for s in sources}
    out, seen = [], set()
    for i, entry in enumerate(raw):
        at = f"serve.clients[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(path, at, "expected a mapping {identity, role, sources, "
                                        "programmes}")
        ck = _Keys(path, entry, {"identity", "role", "sources", "programmes"}, prefix=at + ".")
        identity = ck.str("identity", required=True) or ""
        role = ck.str("role", required=True, choices=ROLES) or ""
        if identity in seen:
            raise ConfigError(path, f"{at}.identity", f"'{identity}' is listed twice")
        seen.add(identity)
        srcs = _names_list(path, f"{at}.sources", entry.get("sources"))
        progs = _names_list(path, f"{at}.programmes", entry.get("programmes"))
        if (srcs or progs) and role != MIS:
            raise ConfigError(path, at, "only mis clients are limited to sources or programmes")
        for s_ in srcs:
            if s_ not in names:
                raise ConfigError(path, f"{at}.sources", f"no source named '{s_}'")
        for p_ in progs:
            if p_ not in programmes:
                raise ConfigError(path, f"{at}.programmes", f"no source has programme '{p_}'")
        out.append(ClientCertificate(identity=identity, role=role, sources=srcs,
                                     programmes=progs))
    return tuple(out)


def _encryption(path: Path, data: dict[str, Any]) -> EncryptionConfig | None:
    if not data:
        return None
    ek = _Keys(path, data, {"key_file", "key_env", "builtin_crypto"}, prefix="encryption.")
    key_file, key_env = ek.str("key_file", None), ek.str("key_env", None)
    if (key_file is None) == (key_env is None):
        raise ConfigError(path, "encryption", "name the key in exactly one of key_file "
                                              "(a file) or key_env (an environment variable)")
    if key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_env):
        raise ConfigError(path, "encryption.key_env", "expected an environment variable name")
    builtin = data.get("builtin_crypto", False)
    if not isinstance(builtin, bool):
        raise ConfigError(path, "encryption.builtin_crypto", "expected true or false")
    return EncryptionConfig(project=path, key_file=path.parent / key_file if key_file else None,
                            key_env=key_env, builtin_crypto=builtin)

_EXTRA_KEYS = {"name", "kind", "term_frequencies", "thresholds", "tolerances", "separator",
               "prefixes", "format", "block", "max_weight"}
#: Options each kind of extra field takes (besides name, kind and block).
_EXTRA_OPTIONS = {"exact": {"term_frequencies"}, "name": {"term_frequencies", "thresholds"},
                  "fuzzy": {"term_frequencies", "thresholds"}, "date": {"tolerances", "format"},
                  "numeric": {"tolerances"}, "code": {"term_frequencies", "separator", "prefixes"},
                  "tokens": {"separator"}}


def _numbers(path: Path, key: str, value: Any, lo: float, hi: float | None, *,
             whole: bool = False, order: str = "") -> tuple[Any, ...]:
    """A non-empty list of numbers in [lo, hi], strictly decreasing or increasing."""
    kind = "whole numbers" if whole else "numbers"
    bad = ConfigError(path, key, f"expected a list of {kind} of at least {lo}"
                      + (f" and at most {hi}" if hi is not None else "")
                      + (f", {order}" if order else ""))
    if not isinstance(value, list) or not value:
        raise bad
    for v in value:
        if (isinstance(v, bool) or not isinstance(v, int if whole else (int, float))
                or v < lo or (hi is not None and v > hi)):
            raise bad
    pairs = list(zip(value, value[1:], strict=False))
    if (order == "highest first" and any(a <= b for a, b in pairs)) or (
            order == "smallest first" and any(a >= b for a, b in pairs)):
        raise bad
    return tuple(int(v) if whole else float(v) for v in value)


def _extra_fields(path: Path, raw: Any) -> tuple[ExtraField, ...]:
    """``extra_fields:`` of the project file, validated (errors name file and key)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(path, "extra_fields", "expected a list of fields (name, kind, ...)")
    out: list[ExtraField] = []
    reserved = set(RAW_FIELDS) | {c.name for c in Definition().comparisons}
    for i, entry in enumerate(raw):
        at = f"extra_fields[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(path, at, "expected a mapping with name and kind")
        ek = _Keys(path, entry, _EXTRA_KEYS, prefix=at + ".")
        name = ek.str("name", required=True) or ""
        if not extra_fields_._NAME.match(name):
            raise ConfigError(path, at + ".name", "use lower-case letters, digits and single "
                              "'_', starting with a letter")
        if name in reserved:
            raise ConfigError(path, at + ".name", f"'{name}' is a built-in field or comparison")
        if name in {f.name for f in out}:
            raise ConfigError(path, at + ".name", f"'{name}' is declared twice")
        kind = ek.str("kind", required=True, choices=extra_fields_.KINDS) or ""
        wrong = sorted(set(entry) - {"name", "kind", "block", "max_weight"}
                       - _EXTRA_OPTIONS[kind])
        for opt in wrong[:1]:
            raise ConfigError(path, f"{at}.{opt}", f"not an option of kind {kind} (options: "
                              f"{', '.join(sorted(_EXTRA_OPTIONS[kind])) or 'none'})")
        tf = entry.get("term_frequencies", False)
        if not isinstance(tf, bool):
            raise ConfigError(path, at + ".term_frequencies", "expected true or false")
        raw_block = entry.get("block", False)
        blocks = (["alone"] if raw_block is True else [] if raw_block is False
                  else [raw_block] if isinstance(raw_block, str) else raw_block)
        if (not isinstance(blocks, list) or len(set(map(str, blocks))) != len(blocks)
                or any(b not in extra_fields_.BLOCK_WITH
                       and not str(b).startswith(extra_fields_.RAW_PREFIX) for b in blocks)):
            raise ConfigError(path, at + ".block", "expected true, false, or one or a list of "
                              f"{', '.join(extra_fields_.BLOCK_WITH)} or extra.<another "
                              "extra field>")
        block = tuple(blocks)
        thresholds = (_numbers(path, at + ".thresholds", entry["thresholds"], 0.0, 1.0,
                               order="highest first") if "thresholds" in entry else ())
        tolerances = (_numbers(path, at + ".tolerances", entry["tolerances"], 0.0, None,
                               order="smallest first") if "tolerances" in entry else ())
        if kind == "numeric" and not tolerances:
            raise ConfigError(path, at + ".tolerances", "required with kind numeric (e.g. "
                              "[1, 5]: within 1, within 5)")
        separator = entry.get("separator")  # may be a space: not ek.str, which strips
        if separator is not None and (not isinstance(separator, str) or not separator):
            raise ConfigError(path, at + ".separator", "expected a non-empty string")
        if kind == "code":
            prefixes = (_numbers(path, at + ".prefixes", entry["prefixes"], 1, None,
                                 whole=True, order="highest first")
                        if "prefixes" in entry else (1,) if separator else (3,))
        else:
            prefixes = ()
        fmt = ek.str("format", "%Y-%m-%d") or "%Y-%m-%d"
        if kind == "date":
            try:
                dt.datetime.strptime(dt.date(1975, 3, 14).strftime(fmt), fmt)
            except ValueError as exc:
                raise ConfigError(path, at + ".format", "expected a strptime format such as "
                                  "%Y-%m-%d") from exc
        max_weight = (ek.float("max_weight", 0.0, 0.0, 40.0) if "max_weight" in entry
                      else None)
        out.append(ExtraField(name=name, kind=kind, term_frequencies=tf, max_weight=max_weight,
                              thresholds=thresholds, tolerances=tolerances,
                              separator=separator, prefixes=prefixes, date_format=fmt,
                              block=block))
    # block: extra.<other> names another field of this list (declared before or after).
    names = {f.name for f in out}
    for i, f in enumerate(out):
        for b in f.block:
            other = b[len(extra_fields_.RAW_PREFIX):] if b.startswith(
                extra_fields_.RAW_PREFIX) else None
            if other is not None and (other not in names or other == f.name):
                raise ConfigError(path, f"extra_fields[{i}].block", f"'{b}' names no other "
                                  "extra field of this project")
    return tuple(out)


def load_project(path: Path | str) -> ProjectConfig:
    """Read and validate a project file and every source file it lists.

    Raises:
        ConfigError: naming the file and the offending key.
    """
    path = Path(path)
    k = _Keys(path, _read_yaml(path), _PROJECT_KEYS)
    base = path.parent
    country = k.str("country_code", "") or ""
    if country and not country.lstrip("+").isdigit():
        raise ConfigError(path, "country_code", "expected digits such as \"223\"")
    country = country.lstrip("+")
    # A 4-digit year no later than this one (dates are read as 4-digit years).
    min_birth_year = k.int("min_birth_year", MIN_YEAR, 1000, dt.date.today().year)
    sources_raw = k.data.get("sources")
    if not isinstance(sources_raw, list) or not sources_raw:
        raise ConfigError(path, "sources", "expected a non-empty list of source files")
    extra = _extra_fields(path, k.data.get("extra_fields"))
    sources = []
    for i, entry in enumerate(sources_raw):
        if not isinstance(entry, str):
            raise ConfigError(path, f"sources[{i}]", "expected a path to a source file")
        sources.append(load_source(base / entry, default_country_code=country,
                                   min_birth_year=min_birth_year, extra_fields=extra))
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(path, "sources", f"source name '{dupes[0]}' is used twice")

    th = k.mapping("thresholds")
    tk = _Keys(path, th, {"match", "review", "one_to_one"}, prefix="thresholds.")
    thresholds = Thresholds(match=tk.float("match", Thresholds.match, 0.0, 1.0),
                            review=tk.float("review", Thresholds.review, 0.0, 1.0),
                            one_to_one=tk.float("one_to_one", Thresholds.one_to_one, 0.0, 1.0))
    if thresholds.review > thresholds.match:
        raise ConfigError(path, "thresholds.review", "must not exceed thresholds.match")
    if "one_to_one" in th and not (thresholds.review <= thresholds.one_to_one
                                   <= thresholds.match):
        # The default adapts to the other two (one_to_one_match); a value written
        # down that cannot hold is the user's mistake, said so.
        raise ConfigError(path, "thresholds.one_to_one",
                          "must be between thresholds.review and thresholds.match")
    model = k.str("model", None)
    sk = _Keys(path, k.mapping("serve"), {"shutdown_grace_seconds", "max_records_per_stream",
                                          "tls", "insecure", "snapshot_seconds",
                                          "max_persons_per_call", "max_page_size",
                                          "unary_workers", "max_streams", "clients",
                                          "resolve_processes"},
               prefix="serve.")
    insecure = sk.data.get("insecure", False)
    if not isinstance(insecure, bool):
        raise ConfigError(path, "serve.insecure", "expected true or false")
    tls = None
    if sk.data.get("tls") is not None:
        tk = _Keys(path, sk.mapping("tls"), {"cert", "key", "client_ca"}, prefix="serve.tls.")
        files: dict[str, Path | None] = {}
        for key in ("cert", "key", "client_ca"):
            value = tk.str(key, None, required=key != "client_ca")
            files[key] = None if value is None else base / value
            if files[key] is not None and not files[key].is_file():
                raise ConfigError(path, f"serve.tls.{key}", f"file not found: {files[key]}")
        tls = TlsConfig(cert=files["cert"], key=files["key"],  # type: ignore[arg-type]
                        client_ca=files["client_ca"])
    serve = ServeConfig(
        tls=tls, insecure=insecure,
        clients=_clients(path, sk.data.get("clients"), tls, sources),
        snapshot_seconds=sk.float("snapshot_seconds", ServeConfig.snapshot_seconds, 1.0,
                                  86_400.0),
        shutdown_grace_seconds=sk.float("shutdown_grace_seconds",
                                        ServeConfig.shutdown_grace_seconds, 0.0, 3600.0),
        max_records_per_stream=sk.int("max_records_per_stream",
                                      ServeConfig.max_records_per_stream, 1, 100_000),
        max_persons_per_call=sk.int("max_persons_per_call", ServeConfig.max_persons_per_call,
                                    1, 10_000),
        max_page_size=sk.int("max_page_size", ServeConfig.max_page_size, 1, 10_000),
        unary_workers=sk.int("unary_workers", ServeConfig.unary_workers, 1, 1024),
        max_streams=sk.int("max_streams", ServeConfig.max_streams, 1, 10_000),
        resolve_processes=sk.int("resolve_processes", ServeConfig.resolve_processes, 0, 64))
    gk = _Keys(path, k.mapping("guards"), {"max_retired_share", "max_rejected_share",
                                           "max_changed_ids_share", "min_count"},
               prefix="guards.")
    guards = GuardConfig(
        max_retired_share=gk.float("max_retired_share", GuardConfig.max_retired_share, 0.0, 1.0),
        max_rejected_share=gk.float("max_rejected_share", GuardConfig.max_rejected_share,
                                    0.0, 1.0),
        max_changed_ids_share=gk.float("max_changed_ids_share",
                                       GuardConfig.max_changed_ids_share, 0.0, 1.0),
        min_count=gk.int("min_count", GuardConfig.min_count, 1))
    mk = _Keys(path, k.mapping("memory"), {"limit", "spill_dir"}, prefix="memory.")
    limit = mk.str("limit", None)
    if limit is not None and limit != "auto" and not _DUCKDB_SIZE.match(limit):
        raise ConfigError(path, "memory.limit", f"'{limit}' is not a size such as 8GB (or auto)")
    spill = mk.str("spill_dir", None)
    memory = MemoryConfig(limit=None if limit == "auto" else limit,
                          spill_dir=(base / spill) if spill else None)
    pk = _Keys(path, k.mapping("spark"), {"master", "driver_memory", "scratch_dir"},
               prefix="spark.")
    driver_memory = pk.str("driver_memory", SparkConfig.driver_memory) or "2g"
    if not _JVM_SIZE.match(driver_memory):
        raise ConfigError(path, "spark.driver_memory",
                          f"'{driver_memory}' is not a JVM size such as 2g or 512m")
    scratch = pk.str("scratch_dir", None)
    spark = SparkConfig(master=pk.str("master", SparkConfig.master) or SparkConfig.master,
                        driver_memory=driver_memory,
                        scratch_dir=(base / scratch) if scratch else None)
    return ProjectConfig(
        encryption=_encryption(path, k.mapping("encryption")),
        name=k.str("name", path.parent.name) or path.parent.name,
        path=path,
        register=base / (k.str("register", "data/register.duckdb") or ""),
        model=(base / model) if model else None,
        country_code=country,
        thresholds=thresholds,
        max_block_size=k.int("max_block_size", 100, 2),
        sources=tuple(sources),
        min_birth_year=min_birth_year,
        serve=serve,
        clustering=k.str("clustering", CLUSTERING_METHODS[0], choices=CLUSTERING_METHODS)
        or CLUSTERING_METHODS[0],
        ambiguity=k.bool("ambiguity", True),
        guards=guards,
        engine=k.str("engine", ENGINE_NAMES[0], choices=ENGINE_NAMES) or ENGINE_NAMES[0],
        memory=memory,
        spark=spark,
        extra_fields=extra,
    )
