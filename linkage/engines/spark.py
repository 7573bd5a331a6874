"""The Spark engine: Splink's Spark backend, for registers that outgrow one machine.

The same batch as :mod:`linkage.engines.duckdb`, on a Spark session: the standardised
records go to Spark, the blocking keys of :mod:`linkage.matching.definition` are
materialised there in Spark SQL (:func:`~linkage.matching.definition.key_sql` with
``dialect="spark"``) and capped exactly as on DuckDB, and Splink counts, predicts and
clusters with the model's settings compiled for Spark (``Model.settings_for("spark")``:
Splink's Scala UDFs for Jaro-Winkler and Damerau-Levenshtein, shipped in Splink's jar).
Splink's intermediate tables are written as Parquet under a scratch directory (Splink's
``break_lineage_method="parquet"``), never held in the driver; only the results (the
pairs kept for review and, for ``clustering: components``, the clustering) come back,
as Arrow, into the register, where persistent IDs, review and serving are unchanged.

Training is the one step that does not run on Spark: it samples at most ~1M blocked
pairs (:mod:`linkage.matching.training`), which one machine handles, so the records are
brought back and trained on in a scratch DuckDB (see :meth:`SparkEngine.train`).

pyspark is an optional extra (``pip install 'linkage[spark]'``) and needs Java 17; the
default install never imports this module.

Sessions: :func:`session` starts a local one (``local[2]`` by default) with Splink's jar,
or returns the active one under ``spark-submit`` (which must pass the jar with
``--jars``: see ``docs/SCALE.md``).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd  # the similarity functions' Arrow batches (a dependency of Splink)
import pyarrow as pa

from linkage.engines import Progress
from linkage.engines.common import (
    AFFECTED,
    NEAR,
    BlockingReport,
    comparisons_from_blocked_pairs,
    key_columns,
    row_hash_sql,
    tf_sql,
    with_engine_blocking,
)
from linkage.errors import EngineUnavailable
from linkage.matching.definition import key_cap, key_sql
from linkage.matching.extra import BUILTIN, Definition
from linkage.matching.model import Model
from linkage.matching.splink_internals import drop_blocked_pairs

log = logging.getLogger(__name__)

_INPUT = "linkage_input"


def _pyspark() -> Any:
    try:
        import pyspark.sql
    except ImportError as exc:
        raise EngineUnavailable(
            "the Spark engine needs pyspark: pip install 'linkage[spark]' "
            "(and a Java 17 runtime)") from exc
    return pyspark.sql


def session(master: str = "local[2]", driver_memory: str = "2g",
            shuffle_partitions: int | None = None) -> Any:
    """The active Spark session, or a new local one with Splink's similarity jar.

    Under ``spark-submit`` the session the job was started with is returned unchanged
    (its master, executors and memory are the cluster's); ``master`` and the memory apply
    to a session this function starts itself.
    """
    sql = _pyspark()
    active = sql.SparkSession.getActiveSession()
    if active is not None:
        return active
    from splink.backends.spark import similarity_jar_location

    partitions = shuffle_partitions or _default_partitions(master)
    # Local Python workers (the similarity functions) run this interpreter, with this
    # package, unless the user chose another.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    try:
        spark = (sql.SparkSession.builder.master(master).appName("linkage")
                 .config("spark.jars", similarity_jar_location())
                 .config("spark.driver.memory", driver_memory)
                 .config("spark.sql.shuffle.partitions", str(partitions))
                 # Progress bars go to stdout, which `linkage run --json` owns.
                 .config("spark.ui.showConsoleProgress", "false")
                 .config("spark.ui.enabled", "false")
                 .config("spark.sql.execution.arrow.pyspark.enabled", "true")
                 .getOrCreate())
    except Exception as exc:  # py4j: no Java, or a JVM that cannot start
        raise EngineUnavailable(f"could not start Spark ({master}): {exc}; "
                               "the Spark engine needs a Java 17 runtime") from exc
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def register_similarity_functions(spark: Any) -> None:
    """Jaro-Winkler and Damerau-Levenshtein on Spark as DuckDB and real time compute them.

    Splink registers its jar's Scala functions under these names, and the jar's
    Jaro-Winkler is not the standard one: 0.883 for "sameakeh" / "samake", where DuckDB
    and jellyfish give 0.903, so at the 0.9 level the same pair scored -6.1 bits on
    Spark and +4.6 on DuckDB (one person of 68,946 differed at 100k records; Splink
    issue #2875). The functions of :mod:`linkage.matching.levels` (jellyfish, the one
    definition real time uses) replace them, as vectorised (Arrow) Python functions:
    slower than the jar, and the same results on every engine. Executors need this
    package installed (docs/SCALE.md).
    """
    from pyspark.sql.functions import pandas_udf

    from linkage.matching import levels

    def over(fn: Any, kind: str) -> Any:
        @pandas_udf(kind)  # type: ignore[call-overload]
        def apply(a: pd.Series, b: pd.Series) -> pd.Series:
            return pd.Series([None if x is None or y is None else fn(x, y)
                              for x, y in zip(a, b, strict=True)], dtype="float64")
        return apply

    spark.udf.register("jaro_winkler", over(levels.jaro_winkler, "double"))
    spark.udf.register("damerau_levenshtein", over(levels.damerau_levenshtein, "double"))


def _default_partitions(master: str) -> int:
    """A few shuffle partitions per local core (Spark's default of 200 is for clusters)."""
    if master.startswith("local["):
        cores = master[len("local["):-1]
        if cores.isdigit():
            return max(2, 2 * int(cores))
        return 8
    return 200


#: Oversized blocks of one key nulled by a literal IN list at most; more go through a
#: broadcast join (see :meth:`SparkEngine.load`).
MAX_IN_LIST = 2000


class SparkEngine:
    """One batch run on a Spark session: its input, Splink linker and scratch Parquet."""

    dialect = "spark"

    def __init__(self, spark: Any = None, *, master: str = "local[2]",
                 driver_memory: str = "2g", scratch_dir: str | Path | None = None,
                 memory_limit: str = "4GB", threads: int | None = None):
        """``spark``: a session to use (kept open on close); otherwise :func:`session`.

        ``memory_limit`` and ``threads`` are the DuckDB scratch's settings, used by
        :meth:`train` only.
        """
        from splink import SparkAPI

        # A session we start we stop on close; one handed in or already active we keep.
        self._own_session = spark is None and (
            _pyspark().SparkSession.getActiveSession() is None)
        self.spark = spark or session(master, driver_memory)
        self._scratch = Path(tempfile.mkdtemp(prefix="linkage_spark_",
                                              dir=str(scratch_dir) if scratch_dir else None))
        # Splink writes its intermediate tables as Parquet under the checkpoint directory
        # (on a cluster: put it on storage every executor reaches, see docs/SCALE.md).
        self.spark.sparkContext.setCheckpointDir(str(self._scratch / "checkpoints"))
        self.api = SparkAPI(spark_session=self.spark, break_lineage_method="parquet")
        register_similarity_functions(self.spark)
        self._duckdb_options = {"memory_limit": memory_limit, "threads": threads}
        self._input: Any = None
        self._columns: list[str] = []
        self._linker: Any = None
        self._predictions: Any = None
        self._restricted = False
        self.definition = BUILTIN

    # ------------------------------------------------------------------ input

    def load(self, records: pa.Table, max_block_size: int,
             definition: Definition = BUILTIN) -> BlockingReport:
        """Records to Spark, blocking keys in Spark SQL, blocks over the cap nulled."""
        self.definition = definition
        keys = definition.blocking_keys  # the built-in ones and the extra fields'
        self._columns = list(records.column_names)
        self.spark.createDataFrame(records).createOrReplaceTempView("linkage_records")
        key_cols = ",\n".join(f"{key_sql(cols, 'spark')} AS bk_{name}"
                              for name, cols in keys.items())
        raw = self.spark.sql(f"SELECT *, {key_cols} FROM linkage_records")
        raw = self._materialise(raw, "linkage_raw_keys")
        # The oversized blocks, all keys in one pass: they are few, so they come to the
        # driver.
        # Each key's cap (definition.key_cap: a single name is capped lower) is applied
        # as a third stacked column, so one GROUP BY serves them all.
        stacked = ", ".join(f"'{name}', bk_{name}, {int(key_cap(name, max_block_size))}"
                            for name in keys)
        big = self.spark.sql(f"""
            SELECT name, k, count(*) AS n FROM (
              SELECT stack({len(keys)}, {stacked}) AS (name, k, cap)
              FROM linkage_raw_keys)
            WHERE k IS NOT NULL GROUP BY name, k, cap HAVING count(*) > cap
        """).collect()
        capped = dict.fromkeys(keys, 0)
        over: dict[str, list[str]] = {name: [] for name in keys}
        for row in big:
            capped[row["name"]] += int(row["n"])
            over[row["name"]].append(row["k"])
        # The oversized blocks go back as literal sets (Spark turns a long IN list into a
        # hash-set test): a join per key cost Spark's planner seconds per key. A key with
        # very many oversized blocks (a national register's commonest names) is nulled
        # through a broadcast join instead, so the statement's text stays small.
        joined = [n for n in keys if len(over[n]) > MAX_IN_LIST]
        if joined:
            self.spark.createDataFrame([(n, k) for n in joined for k in over[n]],
                                       "name string, k string"
                                       ).createOrReplaceTempView("linkage_big")
        cols = ", ".join(f"r.{c}" for c in self._columns)

        def nulled(name: str) -> str:
            if name in joined:
                return (f"CASE WHEN big_{name}.k IS NULL THEN r.bk_{name} END "
                        f"AS bk_{name}")
            if not over[name]:
                return f"r.bk_{name}"
            values = ", ".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
                               for v in sorted(over[name]))
            return (f"CASE WHEN r.bk_{name} IN ({values}) THEN NULL ELSE r.bk_{name} END "
                    f"AS bk_{name}")

        joins = "".join(
            f" LEFT JOIN (SELECT k FROM linkage_big WHERE name = '{name}') big_{name} "
            f"ON r.bk_{name} = big_{name}.k" for name in joined)
        hint = (f"/*+ BROADCAST({', '.join(f'big_{n}' for n in joined)}) */ "
                if joined else "")
        df = self.spark.sql(f"SELECT {hint}{cols}, {', '.join(nulled(n) for n in keys)} "
                            f"FROM linkage_raw_keys r{joins}")
        self._input = self._materialise(df, _INPUT)
        self.spark.catalog.dropTempView("linkage_records")
        self.spark.catalog.dropTempView("linkage_raw_keys")
        self.spark.catalog.dropTempView("linkage_big")
        return BlockingReport(max_block_size, records.num_rows, {}, capped)

    def _materialise(self, df: Any, name: str) -> Any:
        """Write ``df`` as Parquet in the scratch directory and read it back as view ``name``.

        Cuts the lineage (Spark would otherwise recompute the keys for every use) and
        keeps the data on disk, not in executor memory.
        """
        path = str(self._scratch / name)
        df.write.mode("overwrite").parquet(path)
        out = self.spark.read.parquet(path)
        out.createOrReplaceTempView(name)
        return out

    def input_arrow(self) -> pa.Table:
        """The loaded records with their capped keys, back as Arrow (tests, training)."""
        return self._input.toArrow()

    # ------------------------------------------------------------------ model

    def train(self, *, progress: Progress, prefix: str, **options: Any) -> Model:
        """Train on the loaded records in a scratch DuckDB (training samples ~1M pairs).

        The records (with the keys capped here) are brought back to the driver once; at
        tens of millions of records train on a sample with the DuckDB engine instead
        (``linkage train``) and give the project the model file.
        """
        from linkage.engines import duckdb_sql

        progress("  training in a scratch DuckDB (Spark engine: records brought back)")
        con = duckdb_sql.new_scratch(self._duckdb_options["memory_limit"],
                                     self._duckdb_options["threads"])
        try:
            con.register("linkage_spark_input", self.input_arrow())
            con.execute("CREATE TABLE linkage_input AS SELECT * FROM linkage_spark_input")
            con.unregister("linkage_spark_input")
            return duckdb_sql.train(con, progress=progress, prefix=prefix,
                                    definition=self.definition, **options)
        finally:
            con.close()

    def row_hashes(self) -> pa.Table:
        cols = [c for c in self._input.columns if c not in (AFFECTED, NEAR)]
        return self.spark.sql(f"SELECT uid, {row_hash_sql(cols, self.dialect)} AS row_hash, "
                              f"{', '.join(key_columns())} FROM {_INPUT}").toArrow()

    def term_frequencies(self, columns: list[str]) -> dict[str, pa.Table]:
        return {c: self.spark.sql(tf_sql(_INPUT, c).format(text="STRING")).toArrow()
                for c in columns}

    def restrict(self, marks: pa.Table, near_pairs: pa.Table) -> None:
        # Splink's own blocking with RESTRICTION: every pair inside a near component.
        self.spark.createDataFrame(marks).createOrReplaceTempView("linkage_marks")
        df = self.spark.sql(f"""
            SELECT i.*, coalesce(m.{AFFECTED}, false) AS {AFFECTED}, m.{NEAR} AS {NEAR}
            FROM {_INPUT} i LEFT JOIN linkage_marks m ON i.uid = m.uid""")
        self._input = self._materialise(df, f"{_INPUT}_restricted")
        self._input.createOrReplaceTempView(_INPUT)
        self.spark.catalog.dropTempView("linkage_marks")
        self._restricted = True

    def use_model(self, model: Model) -> None:
        from splink import Linker

        settings = with_engine_blocking(model.settings_for(self.dialect), self.dialect,
                                        restricted=self._restricted,
                                        keys=self.definition.blocking_keys)
        sdf = self.api.register(_INPUT, table_name=f"{_INPUT}_splink")
        self._linker = Linker(sdf, settings, log_level=logging.WARNING)

    # ------------------------------------------------------------------ scoring

    def count_comparisons(self, report: BlockingReport) -> BlockingReport:
        # As on DuckDB: the blocked pairs predict scores next, counted by the rule that
        # generated each, instead of Splink's blocking analysis (a second pass over every
        # block: half of a small run's time on Spark, where each rule is a job).
        if self._restricted:
            raise RuntimeError("an incremental run's counts come from its plan, not from "
                               "its restricted pairs")
        pairs = self._linker.inference.compute_blocked_pairs_for_predict()
        counts = pairs.as_spark_dataframe().groupBy("match_key").count().collect()
        report.comparisons_by_rule = comparisons_from_blocked_pairs(
            [(r[0], r[1]) for r in counts], self.definition.blocking_keys)
        return report

    def predict(self, review_threshold: float) -> int:
        # Splink scores the blocked pairs count_comparisons made (its cache), or an
        # incremental run's registered ones; then they are dropped.
        self._predictions = self._linker.inference.predict(
            threshold_match_probability=review_threshold)
        drop_blocked_pairs(self._linker)
        return int(self._predictions.as_spark_dataframe().count())

    def cluster(self, match_threshold: float) -> dict[str, str]:
        """Splink's connected components on Spark (``clustering: components``)."""
        clusters = self._linker.clustering.cluster_pairwise_predictions_at_threshold(
            self._predictions, threshold_match_probability=match_threshold)
        table = clusters.as_spark_dataframe().select("uid", "cluster_id").toArrow()
        return {u: str(c) for u, c in zip(table.column("uid").to_pylist(),
                                          table.column("cluster_id").to_pylist(), strict=True)}

    def links(self) -> pa.Table:
        table = self._predictions.as_spark_dataframe().select(
            "uid_l", "uid_r", "match_probability", "match_weight").toArrow()
        return table.cast(pa.schema([("uid_l", pa.string()), ("uid_r", pa.string()),
                                     ("match_probability", pa.float64()),
                                     ("match_weight", pa.float64())]))

    def close(self) -> None:
        try:
            self.spark.catalog.dropTempView(_INPUT)
            self.spark.catalog.clearCache()
        except Exception:  # the session is already gone: nothing left to free
            log.debug("Spark session gone before close", exc_info=True)
        if self._own_session:
            self.spark.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)
