"""Splink on DuckDB: prepare the input, count blocks, train, predict and cluster.

The work happens in a scratch DuckDB database (in memory, spilling to a temp directory),
never in the register file, so Splink's many intermediate tables never touch the
published register. Only the results (pairs kept for review and the clustering) go back.

Blocking keys (:data:`linkage.matching.definition.BLOCKING_KEYS`) are materialised as ``bk_*``
columns, and a key shared by more than ``max_block_size`` records is set to NULL for
those records: a capped block can't explode the comparison count the way
"Mamadou Traoré, 1980" does on a Mali-like register. The pairs such a record loses are
still reachable through its other keys.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
from splink import DuckDBAPI, Linker

# BlockingReport and count_comparisons are shared by every engine; re-exported here for
# the callers that knew them from this module.
from linkage.engines.common import (  # noqa: F401
    BlockingReport,
    comparisons_from_blocked_pairs,
    count_comparisons,
    near_pairs_sql,
    restricted_pairs_sql,
    touching_pairs_sql,
    with_engine_blocking,
)
from linkage.matching.definition import KeyPart, key_cap, key_sql
from linkage.matching.extra import BUILTIN, Definition
from linkage.matching.model import (
    BLOCKING_KEYS,
    HOUSEHOLD_EVIDENCE_CAP_BITS,
    Model,
)

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


#: Share of the machine's memory the scratch database may use when no limit is set. The
#: rest is for the process around it: the register's own connection, the records as
#: Arrow, clustering's arrays and the persistent-ID reconciliation.
MACHINE_MEMORY_SHARE = 0.5


def machine_memory_bytes() -> int:
    """Memory this process may use: the machine's RAM, or its cgroup's limit if lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max",  # cgroup v2 (containers)
                       "/sys/fs/cgroup/memory/memory.limit_in_bytes"):  # cgroup v1
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total


def machine_memory_limit() -> str:
    """The scratch database's memory limit from the machine (:data:`MACHINE_MEMORY_SHARE`)."""
    return f"{max(256, int(machine_memory_bytes() * MACHINE_MEMORY_SHARE) >> 20)}MiB"


def default_spill_dir() -> Path:
    return Path(tempfile.gettempdir()) / "linkage_spill"


def new_scratch(memory_limit: str | None = None, threads: int | None = None,
                spill_dir: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB for Splink's intermediate tables, spilling to ``spill_dir``.

    ``memory_limit`` None: from the machine (:func:`machine_memory_limit`). Beyond the
    limit DuckDB spills its joins and sorts to ``spill_dir`` (default: the system temp
    directory), so a register larger than memory completes, slower, instead of being
    killed.
    """
    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit or machine_memory_limit()}'")
    con.execute(f"SET temp_directory = '{Path(spill_dir or default_spill_dir())}'")
    con.execute("SET preserve_insertion_order = false")
    # DuckDB draws a progress bar on stdout for long queries: it would corrupt `--json`.
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    return con


def prepare_input(con: duckdb.DuckDBPyConnection, records: pa.Table, max_block_size: int,
                  table: str = "linkage_input",
                  keys: Mapping[str, Sequence[KeyPart]] | None = None) -> BlockingReport:
    """Load records (arrow) into ``table`` with capped blocking-key columns.

    ``keys``: the project's blocking keys (its definition's); the built-in ones if None.

    Returns the blocking report with the records whose block was capped, per rule (the
    comparison counts are filled in by :func:`count_comparisons`).
    """
    keys = BLOCKING_KEYS if keys is None else keys
    con.register("linkage_records_arrow", records)
    key_cols = ",\n".join(f"{key_sql(cols)} AS bk_{name}" for name, cols in keys.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE linkage_raw_keys AS "
                f"SELECT *, {key_cols} FROM linkage_records_arrow")
    con.unregister("linkage_records_arrow")
    # Oversized keys are few: find them with one GROUP BY per key (much cheaper than a
    # window over a million rows), then null them with an anti-join-like lookup.
    capped_counts: dict[str, int] = {}
    for name in keys:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE linkage_big_{name} AS
            SELECT bk_{name} AS k, count(*) AS n FROM linkage_raw_keys
            WHERE bk_{name} IS NOT NULL GROUP BY bk_{name} HAVING count(*) > ?""",
                    [key_cap(name, max_block_size)])
        ((n,),) = con.execute(f"SELECT coalesce(sum(n), 0) FROM linkage_big_{name}").fetchall()
        capped_counts[name] = int(n)
    capped = ",\n".join(
        f"CASE WHEN bk_{name} IN (SELECT k FROM linkage_big_{name}) THEN NULL "
        f"ELSE bk_{name} END AS bk_{name}" for name in keys)
    con.execute(f"CREATE OR REPLACE TABLE {table} AS "
                f"SELECT {', '.join(records.column_names)}, {capped} FROM linkage_raw_keys")
    for name in keys:
        con.execute(f"DROP TABLE linkage_big_{name}")
    con.execute("DROP TABLE linkage_raw_keys")
    return BlockingReport(max_block_size, records.num_rows, {}, capped_counts)


def make_linker(con: duckdb.DuckDBPyConnection, settings: Any, table: str = "linkage_input",
                restricted: bool = False, keys: Iterable[str] | None = None) -> Linker:
    """A linker over ``table``; blocking on today's capped keys (``restricted``: only the
    pairs an incremental run scores, see :mod:`linkage.batch.incremental`; ``keys``: the
    project's, the built-in ones if None)."""
    if isinstance(settings, dict):
        settings = with_engine_blocking(settings, "duckdb", restricted, keys)
    db_api = DuckDBAPI(con)
    sdf = db_api.register(table, table_name=f"{table}_splink")
    return Linker(sdf, settings, log_level=logging.WARNING)


def register_restricted_pairs(con: duckdb.DuckDBPyConnection, linker: Linker,
                              table: str = "linkage_input",
                              near_pairs: str = "linkage_near_pairs",
                              keys: Iterable[str] | None = None) -> tuple[int, dict[str, int]]:
    """Give ``linker`` (over every record) only an incremental run's pairs to score.

    The pairs (:func:`linkage.engines.common.restricted_pairs_sql`) are generated from
    the affected and near records outward, so their cost follows what changed, and are
    registered as Splink's blocked pairs: Splink then scores just those, against its
    term frequencies of the whole input, so each weight is the one a full run gives (the
    prior is in the settings).

    Returns how many pairs, and per rule (``keys``, the built-in ones if None) how many
    of them touch an affected record: tonight's side of the carried-over blocking counts
    (:mod:`linkage.batch.incremental`), read off the pairs instead of a second join.
    """
    con.execute(f"CREATE OR REPLACE TABLE linkage_restricted_pairs AS "
                f"{touching_pairs_sql(table)}")
    touching = comparisons_from_blocked_pairs(con.execute(
        "SELECT match_key, count(*) FROM linkage_restricted_pairs GROUP BY match_key"
    ).fetchall(), keys)
    con.execute(f"INSERT INTO linkage_restricted_pairs {near_pairs_sql(table, near_pairs)}")
    pairs = DuckDBAPI(con).register("linkage_restricted_pairs",
                                    table_name="linkage_restricted_pairs_splink")
    linker.table_management.register_blocked_pairs_for_predict(pairs)
    ((n,),) = con.execute("SELECT count(*) FROM linkage_restricted_pairs").fetchall()
    return int(n), touching


def train(con: duckdb.DuckDBPyConnection, *, table: str = "linkage_input", seed: int = 42,
          max_pairs: float = 2e6, progress: Progress = _noop, prefix: str = "model",
          seed_model: Model | None = None, use_national_ids: bool = False,
          labels: Any = None, definition: Definition = BUILTIN) -> Model:
    """Train a model on the prepared input table, with or without national IDs.

    u by random sampling; m by EM sessions households cannot fill; the birth date and
    the prior by EM over the blocked pairs with the rest fixed (:mod:`linkage.matching.training`).
    Raises :class:`linkage.matching.model.ModelError` when the result is implausible.
    """
    from linkage.matching import training

    return training.train(con, table=table, seed=seed, max_pairs=max_pairs,
                          progress=progress, prefix=prefix, seed_model=seed_model,
                          use_national_ids=use_national_ids, labels=labels,
                          definition=definition)


def neutralise_untrained(settings: dict[str, Any]) -> dict[str, Any]:
    """Give levels the training data never reached a neutral weight (m = u).

    A Sahel register has no father's names and a Horn one no family names: their levels
    are never observed, and Splink's defaults would give them arbitrary weights.
    """
    for comp in settings["comparisons"]:
        for lvl in comp["comparison_levels"]:
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if m is None and u is None:
                lvl["m_probability"] = lvl["u_probability"] = 0.5
            elif m is None:
                lvl["m_probability"] = u
            elif u is None:
                lvl["u_probability"] = m
    return settings


def cap_household_evidence(settings: dict[str, Any],
                           caps: dict[str, float] = HOUSEHOLD_EVIDENCE_CAP_BITS
                           ) -> dict[str, Any]:
    """Cap agreement weights of household-shared comparisons (see the model module)."""
    for comp in settings["comparisons"]:
        cap = caps.get(comp["output_column_name"])
        if cap is None:
            continue
        for lvl in comp["comparison_levels"]:
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            if lvl.get("is_null_level") or not m or not u:
                continue
            if m / u > 2**cap:
                lvl["u_probability"] = m / 2**cap
    return settings


def predict(linker: Linker, review_threshold: float) -> Any:
    """Score all blocked pairs at or above ``review_threshold`` (a SplinkDataFrame)."""
    return linker.inference.predict(threshold_match_probability=review_threshold)


def cluster(con: duckdb.DuckDBPyConnection, linker: Linker, df_predict: Any,
            match_threshold: float) -> dict[str, str]:
    """Connected components of pairs at or above ``match_threshold``.

    Returns:
        record uid -> cluster label (Splink's label, unstable: reconciled by linkage.ids.reconcile).
    """
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        df_predict, threshold_match_probability=match_threshold)
    rows = con.execute(f"SELECT uid, cluster_id FROM {clusters.physical_name}").fetchall()
    return {uid: str(cid) for uid, cid in rows}
