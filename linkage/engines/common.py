"""What every Splink engine shares: the blocking report, blocking rules and its analysis.

Blocking belongs to the engine, not to the trained model: a model file trained with
other keys still predicts with today's capped ``bk_*`` columns
(:func:`with_engine_blocking`), in whichever Splink dialect the engine speaks.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
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


def key_columns() -> list[str]:
    """The capped blocking-key columns, in rule order (Splink's ``match_key`` is the index)."""
    return [f"bk_{k}" for k in BLOCKING_KEYS]


def _first_rule(rule: int, left: str = "s", right: str = "o") -> str:
    """SQL: no rule before ``rule`` blocks the pair (Splink's exclusion of earlier rules)."""
    earlier = " OR ".join(f"coalesce({left}.{c} = {right}.{c}, false)"
                          for c in key_columns()[:rule])
    return f"NOT ({earlier or 'false'})"


def pairs_touching_sql(table: str, flag: str, rule: int) -> str:
    """SQL: ``table``'s blocked pairs that touch a record where ``flag`` holds, generated
    by rule ``rule`` (the first rule blocking them), as Splink's blocked pairs are:
    ``match_key``, ``join_key_l`` < ``join_key_r``.

    The join starts from the flagged records, so its work follows their blocks, not
    every block; a pair of two flagged records comes once (from its smaller uid).
    """
    col = key_columns()[rule]
    return (f"SELECT '{rule}' AS match_key, least(s.uid, o.uid) AS join_key_l, "
            f"greatest(s.uid, o.uid) AS join_key_r "
            f"FROM {table} s JOIN {table} o ON s.{col} = o.{col} "
            f"WHERE s.{flag} AND s.uid <> o.uid AND (NOT o.{flag} OR s.uid < o.uid) "
            f"AND {_first_rule(rule)}")


def first_rule_sql(left: str, right: str) -> str:
    """SQL: the index (as Splink's ``match_key``) of the first rule blocking a pair."""
    whens = " ".join(f"WHEN {left}.{c} = {right}.{c} THEN '{i}'"
                     for i, c in enumerate(key_columns()))
    return f"CASE {whens} END"


def touching_pairs_sql(table: str) -> str:
    """SQL: the blocked pairs touching an affected record, as Splink's blocked pairs (the
    first part of :func:`restricted_pairs_sql`; counted by ``match_key``, the blocking
    report's comparisons touching the changes)."""
    return "\nUNION ALL\n".join(pairs_touching_sql(table, AFFECTED, rule)
                                 for rule in range(len(BLOCKING_KEYS)))


def near_pairs_sql(table: str, near_pairs: str) -> str:
    """SQL: last run's near pairs between two unaffected records (``near_pairs``:
    ``uid_l`` < ``uid_r``) as Splink's blocked pairs; still blocked, by the same rule
    (their records' capped keys are last run's). The second part of
    :func:`restricted_pairs_sql`."""
    return (f"SELECT * FROM (SELECT {first_rule_sql('l', 'r')} AS match_key, "
            f"p.uid_l AS join_key_l, p.uid_r AS join_key_r FROM {near_pairs} p "
            f"JOIN {table} l ON l.uid = p.uid_l JOIN {table} r ON r.uid = p.uid_r "
            f"WHERE NOT l.{AFFECTED} AND NOT r.{AFFECTED}) t WHERE match_key IS NOT NULL")


def restricted_pairs_sql(table: str, near_pairs: str) -> str:
    """SQL: the blocked pairs an incremental run scores, as Splink's blocked pairs: those
    touching an affected record (:func:`touching_pairs_sql`), and last run's near pairs
    between two unaffected records (:func:`near_pairs_sql`).

    Scoring those near pairs alone is as exact as every pair inside their components
    (:data:`RESTRICTION`, what Splink's own blocking can express): see
    :mod:`linkage.batch.incremental`.
    """
    return f"{touching_pairs_sql(table)}\nUNION ALL\n{near_pairs_sql(table, near_pairs)}"


def comparisons_from_blocked_pairs(counts: Any, keys: Iterable[str] | None = None
                                   ) -> dict[str, int]:
    """Per rule, from ``(match_key, count)`` rows of Splink's blocked pairs.

    Splink generates each pair once, under the first rule that blocks it (later rules
    exclude the earlier ones' pairs), and labels it with that rule's index: the same
    marginal counts as its blocking analysis, read off the pairs predict scores anyway.
    """
    by_key = {int(k): int(n) for k, n in counts}
    return {name: by_key.get(i, 0)
            for i, name in enumerate(BLOCKING_KEYS if keys is None else keys)}


def tf_columns(settings: dict[str, Any]) -> dict[str, list[tuple[str, float]]]:
    """Per comparison, its term-frequency columns with their adjustment weights."""
    out: dict[str, list[tuple[str, float]]] = {}
    for comp in settings["comparisons"]:
        for lvl in comp["comparison_levels"]:
            col = lvl.get("tf_adjustment_column")
            if col:
                out.setdefault(comp["output_column_name"], []).append(
                    (col, float(lvl.get("tf_adjustment_weight", 1.0))))
    return out


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


#: Decimals of a match weight (bits) the batch decides on. Engines compute a weight with
#: different summation orders and log / exp, and differ in its last bits (up to 1e-13
#: here); rounded, a pair's weight is the same on DuckDB and Spark, and so is every
#: decision made on it (thresholds, the ambiguity step's overlap and prior, clustering
#: order). A difference of one ulp at the near threshold changed one person in 68,946.
WEIGHT_DECIMALS = 9
#: Engines score down to this much (bits) below the threshold asked for, so that a pair
#: on the threshold reaches :func:`settled` from every engine.
SLACK_BITS = 1e-6


def probability(weight: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Match probability of a match weight (bits), as Splink computes it."""
    return pc.divide(1.0, pc.add(1.0, pc.power(2.0, pc.negate(weight))))


def settled(links: pa.Table, threshold: float) -> pa.Table:
    """``links`` with weights rounded to :data:`WEIGHT_DECIMALS` and probabilities computed
    from them, at or above ``threshold`` (a probability)."""
    w = pc.round(links.column("match_weight"), WEIGHT_DECIMALS)
    i = links.schema.get_field_index("match_weight")
    out = links.set_column(i, "match_weight", w)
    j = out.schema.get_field_index("match_probability")
    out = out.set_column(j, "match_probability", probability(w))
    return out.filter(pc.greater_equal(out.column("match_probability"), threshold))


def below(threshold: float, bits: float = SLACK_BITS) -> float:
    """The probability ``bits`` below ``threshold`` in match weight."""
    w = math.log2(threshold / (1 - threshold)) - bits
    return 1 / (1 + 2 ** -w)
