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
from linkage.matching.model import Model


class DuckDBEngine:
    """One batch run's scratch DuckDB and Splink linker."""

    dialect = "duckdb"

    def __init__(self, memory_limit: str = "4GB", threads: int | None = None):
        self.con = engine.new_scratch(memory_limit, threads)
        self._linker: Any = None
        self._predictions: Any = None

    def load(self, records: pa.Table, max_block_size: int) -> engine.BlockingReport:
        return engine.prepare_input(self.con, records, max_block_size)

    def train(self, *, progress: Progress, prefix: str, **options: Any) -> Model:
        return engine.train(self.con, progress=progress, prefix=prefix, **options)

    def use_model(self, model: Model) -> None:
        self._linker = engine.make_linker(self.con, model.settings_for(self.dialect))

    def count_comparisons(self, report: engine.BlockingReport) -> engine.BlockingReport:
        return engine.count_comparisons(self._linker, report)

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
