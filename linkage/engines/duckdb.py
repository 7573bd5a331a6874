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
from linkage.engines.common import (
    AFFECTED,
    NEAR,
    comparisons_from_blocked_pairs,
    key_columns,
    row_hash_sql,
    tf_sql,
)
from linkage.matching.extra import BUILTIN, Definition
from linkage.matching.model import Model
from linkage.matching.splink_internals import drop_blocked_pairs


class DuckDBEngine:
    """One batch run's scratch DuckDB and Splink linker."""

    dialect = "duckdb"

    def __init__(self, memory_limit: str | None = None, threads: int | None = None,
                 spill_dir: str | None = None):
        """``memory_limit`` None: set from the machine (``duckdb_sql.machine_memory_limit``)."""
        self.con = engine.new_scratch(memory_limit, threads, spill_dir)
        self._linker: Any = None
        #: An incremental run's pairs to score (after :meth:`use_model`).
        self.restricted_pairs = 0
        #: Of those, per rule, the pairs touching an affected record (see
        #: :meth:`touching_counts`).
        self._touching: dict[str, int] | None = None
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
        return self.con.sql(f"SELECT uid, {row_hash_sql(cols, self.dialect)} AS row_hash, "
                            f"{', '.join(key_columns())} FROM linkage_input").to_arrow_table()

    def term_frequencies(self, columns: list[str]) -> dict[str, pa.Table]:
        return {c: self.con.sql(tf_sql("linkage_input", c).format(text="VARCHAR")
                                ).to_arrow_table() for c in columns}

    def restrict(self, marks: pa.Table, near_pairs: pa.Table) -> None:
        self.con.register("linkage_marks", marks)
        self.con.execute(f"""
            CREATE OR REPLACE TABLE linkage_input AS
            SELECT i.*, coalesce(m.{AFFECTED}, false) AS {AFFECTED}, m.{NEAR} AS {NEAR}
            FROM linkage_input i LEFT JOIN linkage_marks m USING (uid)""")
        self.con.unregister("linkage_marks")
        self.con.register("linkage_near_arrow", near_pairs)
        self.con.execute("CREATE OR REPLACE TABLE linkage_near_pairs AS "
                         "SELECT uid_l, uid_r FROM linkage_near_arrow")
        self.con.unregister("linkage_near_arrow")
        self._restricted = True

    def use_model(self, model: Model) -> None:
        self._linker = engine.make_linker(self.con, model.settings_for(self.dialect),
                                          keys=self.definition.blocking_keys)
        if self._restricted:
            # match_key follows the built-in keys' order (common.key_columns), as the
            # restricted pairs' SQL does; an incremental run blocks on those only.
            self.restricted_pairs, self._touching = engine.register_restricted_pairs(
                self.con, self._linker)

    def touching_counts(self) -> dict[str, int] | None:
        """An incremental run's blocked pairs touching an affected record, per rule,
        counted off the pairs it scores (after :meth:`use_model`); None otherwise."""
        return self._touching

    def count_comparisons(self, report: engine.BlockingReport) -> engine.BlockingReport:
        # The blocked pairs predict scores next, counted by the rule that generated
        # each (Splink's match_key): the marginal counts of Splink's blocking analysis
        # without a second pass over every block.
        if self._restricted:
            raise RuntimeError("an incremental run's counts come from its plan, not from "
                               "its restricted pairs")
        pairs = self._linker.inference.compute_blocked_pairs_for_predict()
        report.comparisons_by_rule = comparisons_from_blocked_pairs(
            self.con.execute(f"SELECT match_key, count(*) FROM {pairs.physical_name} "
                             "GROUP BY match_key").fetchall(), self.definition.blocking_keys)
        return report

    def predict(self, review_threshold: float) -> int:
        # Splink scores the blocked pairs count_comparisons made, or an incremental
        # run's registered ones (its cache); then they are dropped: the scored pairs
        # are what the run needs from here on.
        self._predictions = engine.predict(self._linker, review_threshold)
        drop_blocked_pairs(self._linker)
        self.con.execute("DROP TABLE IF EXISTS linkage_restricted_pairs")
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
