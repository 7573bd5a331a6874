"""What every Splink engine shares: the blocking report, blocking rules and its analysis.

Blocking belongs to the engine, not to the trained model: a model file trained with
other keys still predicts with today's capped ``bk_*`` columns
(:func:`with_engine_blocking`), in whichever Splink dialect the engine speaks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from splink import Linker, block_on
from splink.blocking_rule_library import And, CustomRule

from linkage.matching.definition import BLOCKING_KEYS


@dataclass
class BlockingReport:
    """Comparisons each blocking rule adds, and the records whose blocks were capped."""

    max_block_size: int
    records: int
    comparisons_by_rule: dict[str, int]
    capped_records_by_rule: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.comparisons_by_rule.values())


#: Columns :meth:`Engine.restrict` adds to the input: the record is new or changed (or its
#: capped keys are), and its component among the last run's near pairs (or NULL).
AFFECTED, NEAR = "linkage_affected", "linkage_near"
#: An incremental run scores a blocked pair only when this holds (see
#: :mod:`linkage.batch.incremental`).
RESTRICTION = f"(l.{AFFECTED} OR r.{AFFECTED} OR l.{NEAR} = r.{NEAR})"


def with_engine_blocking(settings: dict[str, Any], dialect: str,
                         restricted: bool = False, keys: Iterable[str] | None = None
                         ) -> dict[str, Any]:
    """Trained settings with one blocking rule per capped key column, in ``dialect``.

    ``restricted``: each rule also needs :data:`RESTRICTION` (an incremental run).
    ``keys``: the project's blocking keys (its definition's), the built-in ones if None.
    """
    rules = [block_on(f"bk_{k}") for k in (BLOCKING_KEYS if keys is None else keys)]
    if restricted:
        rules = [And(r, CustomRule(RESTRICTION)) for r in rules]
    return dict(settings, blocking_rules_to_generate_predictions=[
        r.get_blocking_rule(dialect).as_dict() for r in rules])


def row_hash_sql(columns: list[str], dialect: str) -> str:
    """An md5 of a row's values (standardised columns and capped keys), in ``dialect``.

    NULL and the empty string hash apart (a unit separator can't occur in our values).
    """
    text = "STRING" if dialect == "spark" else "VARCHAR"
    parts = ", ".join(f"coalesce(CAST({c} AS {text}), chr(30))" for c in columns)
    return f"md5(concat_ws(chr(31), {parts}))"


def tf_sql(table: str, column: str) -> str:
    """Splink's term frequency of each value of ``column`` (count / non-null count)."""
    return (f"SELECT CAST({column} AS {{text}}) AS value, "
            f"CAST(count(*) AS DOUBLE) / (SELECT count({column}) FROM {table}) AS tf "
            f"FROM {table} WHERE {column} IS NOT NULL GROUP BY {column}")


def count_comparisons(linker: Linker, report: BlockingReport,
                      keys: Iterable[str] | None = None) -> BlockingReport:
    """Fill in the per-rule comparison counts with Splink's blocking analysis."""
    keys = list(BLOCKING_KEYS if keys is None else keys)
    rules = [block_on(f"bk_{k}") for k in keys]
    records = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        rules, record_sample_proportion=1.0)
    # Marginal counts: the pairs each rule adds that no earlier rule generated.
    report.comparisons_by_rule = {
        name: int(rec["marginal_comparison_count"])
        for name, rec in zip(keys, records, strict=True)}
    return report
