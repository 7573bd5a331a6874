"""Engines: what the batch needs from a backend, behind one small interface.

The batch (:func:`linkage.batch.pipeline.run`) never talks to Splink or DuckDB directly: it opens
an :class:`Engine` and asks it to load the standardised records with their capped
blocking keys, train a model, count comparisons, predict, cluster and hand back the
scored pairs. Persistent IDs, review and serving then work on what comes back, the same
whatever the engine.

* ``duckdb`` (:mod:`linkage.engines.duckdb`): the embedded default, a scratch DuckDB
  (in memory, spilling to disk) next to the register.

* ``spark`` (:mod:`linkage.engines.spark`): Splink's Spark backend, for registers that
  outgrow one machine (the optional extra ``linkage[spark]``; Java 17). The comparisons
  compile to its SQL through :meth:`linkage.matching.model.Model.settings_for`, the
  blocking keys through :func:`linkage.matching.definition.key_sql` with its dialect.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Protocol

import pyarrow as pa

Progress = Callable[[str], None]

#: Engine name -> "module:class" implementing it (imported on first use).
ENGINES: dict[str, str] = {"duckdb": "linkage.engines.duckdb:DuckDBEngine",
                           "spark": "linkage.engines.spark:SparkEngine"}


class Engine(Protocol):
    """A backend for one batch run; :meth:`close` frees its scratch space."""

    #: The Splink dialect its SQL is compiled for ("duckdb", "spark").
    dialect: str

    def load(self, records: pa.Table, max_block_size: int, definition: Any = None) -> Any:
        """Load the records with capped blocking keys; returns a blocking report.

        ``definition``: the project's :class:`linkage.matching.extra.Definition` (its
        blocking keys now; its comparisons when training).
        """

    def train(self, *, progress: Progress, prefix: str, **options: Any) -> Any:
        """Train a model on the loaded records (see :mod:`linkage.matching.training`)."""

    def row_hashes(self) -> pa.Table:
        """``uid``, ``row_hash``: an md5 of each loaded record's columns and capped keys."""

    def term_frequencies(self, columns: list[str]) -> dict[str, pa.Table]:
        """Splink's term frequencies (``value``, ``tf``) of each column, over the input."""

    def restrict(self, marks: pa.Table, near_pairs: pa.Table) -> None:
        """Score only pairs touching an affected record, and the last run's near pairs.

        ``marks``: ``uid``, ``linkage_affected`` (bool), ``linkage_near`` (string or NULL);
        unlisted records are neither. ``near_pairs``: ``uid_l`` < ``uid_r``, last run's
        near pairs between unaffected records. An engine may score more (every pair
        inside one near component, :data:`linkage.engines.common.RESTRICTION`), never
        less. Call before :meth:`use_model` (see :mod:`linkage.batch.incremental`).
        """

    def use_model(self, model: Any) -> None:
        """Score with this model from now on (its settings compiled for :attr:`dialect`)."""

    def count_comparisons(self, report: Any) -> Any:
        """The blocking report with the comparisons each rule adds filled in."""

    def predict(self, review_threshold: float) -> int:
        """Score every blocked pair, keep those at or above the threshold; their count."""

    def cluster(self, match_threshold: float) -> dict[str, str]:
        """Record uid -> cluster label (unstable; reconciled by :mod:`linkage.ids.reconcile`)."""

    def links(self) -> pa.Table:
        """The kept pairs: ``uid_l``, ``uid_r``, ``match_probability``, ``match_weight``."""

    def close(self) -> None: ...


def open_engine(name: str = "duckdb", **options: Any) -> Engine:
    """A new engine of the given kind (``options`` are the engine's own settings)."""
    try:
        module, cls = ENGINES[name].split(":")
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; known: {', '.join(ENGINES)}") from None
    return getattr(importlib.import_module(module), cls)(**options)
