"""The embedded engine: Splink on a scratch DuckDB (in memory, spilling to a temp dir).

Splink's many intermediate tables never touch the register file; only the results (the
kept pairs and the clustering) go back.
The SQL work itself lives in :mod:`linkage.engines.duckdb_sql`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from linkage.engines import Progress
from linkage.engines import duckdb_sql as engine
from linkage.engines.common import AFFECTED, NEAR, row_hash_sql, tf_sql
from linkage.matching.extra import BUILTIN, Definition
from linkage.matching.model import Model


class DuckDBEngine:
    """One batch run's scratch DuckDB and Splink linker."""

    dialect = "duckdb"

    def __init__(self, memory_limit: str | None = None, threads: int | None = None,
                 spill_dir: str | None = None):
        """``memory_limit`` None: set from the machine (``duckdb_sql.machine_memory_limit``)."""
        self.con = engine.new_scratch(memory_limit, threads, spill_dir)
        self._linker: Any = None
        self._predictions: Any = None
        self._restricted = False
        self.definition = BUILTIN

    def load(self, records: pa.Table, max_block_size: int,
             definition: Definition = BUILTIN) -> engine.BlockingReport:
        self.definition = definition  # the project's: its blocking keys, then its training
        return engine.prepare_input(self.con, records, max_block_size,
                                    keys=definition.blocking_keys)

    def train(self, *, progress: Progress, prefix: str, **options: Any) -> Model:
        return engine.train(self.con, progress=progress, prefix=prefix,
                            definition=self.definition, **options)

    def row_hashes(self) -> pa.Table:
        cols = [c for c, in self.con.execute(
            "SELECT column_name FROM (DESCRIBE linkage_input)").fetchall()
            if c not in (AFFECTED, NEAR)]
        return self.con.sql(f"SELECT uid, {row_hash_sql(cols, self.dialect)} AS row_hash "
                            "FROM linkage_input").to_arrow_table()

    def term_frequencies(self, columns: list[str]) -> dict[str, pa.Table]:
        return {c: self.con.sql(tf_sql("linkage_input", c).format(text="VARCHAR")
                                ).to_arrow_table() for c in columns}

    def restrict(self, marks: pa.Table) -> None:
        self.con.register("linkage_marks", marks)
        self.con.execute(f"""
            CREATE OR REPLACE TABLE linkage_input AS
            SELECT i.*, coalesce(m.{AFFECTED}, false) AS {AFFECTED}, m.{NEAR} AS {NEAR}
            FROM linkage_input i LEFT JOIN linkage_marks m USING (uid)""")
        self.con.unregister("linkage_marks")
        self._restricted = True

    def use_model(self, model: Model) -> None:
        self._linker = engine.make_linker(self.con, model.settings_for(self.dialect),
                                          restricted=self._restricted,
                                          keys=self.definition.blocking_keys)

    def count_comparisons(self, report: engine.BlockingReport) -> engine.BlockingReport:
        return engine.count_comparisons(self._linker, report, self.definition.blocking_keys)

    def predict(self, review_threshold: float) -> int:
        self._predictions = engine.predict(self._linker, review_threshold)
        ((n,),) = self.con.execute(
            f"SELECT count(*) FROM {self._predictions.physical_name}").fetchall()
        return int(n)

    def cluster(self, match_threshold: float) -> dict[str, str]:
        return engine.cluster(self.con, self._linker, self._predictions, match_threshold)

    def links(self) -> pa.Table:
        return self.con.sql(
            "SELECT uid_l, uid_r, match_probability, match_weight "
            f"FROM {self._predictions.physical_name}").to_arrow_table()

    def close(self) -> None:
        self.con.close()
