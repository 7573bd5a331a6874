"""Compile the matching definition into Splink settings, for any of Splink's backends.

Each level of :data:`linkage.matching.definition.COMPARISONS` becomes a Splink
``ComparisonLevelCreator`` whose ``create_sql(sql_dialect)`` is the level expression's
:meth:`~linkage.matching.levels.Expr.sql` in that dialect: the settings are
engine-independent, as Splink's own are, and ``get_settings("duckdb")`` or
``get_settings("spark")`` yields each backend's SQL.

Example:
    >>> s = build_settings()
    >>> s.link_type
    'dedupe_only'
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on
from splink.internals.comparison_level_creator import ComparisonLevelCreator
from splink.internals.dialects import SplinkDialect

from linkage.matching.definition import (
    BLOCKING_KEYS,
    COMPARISONS,
    DEFAULT_PRIOR,
    UNIQUE_ID_COLUMN,
    Comparison,
    Level,
)
from linkage.matching.levels import Expr

if TYPE_CHECKING:
    from linkage.matching.extra import Definition


class DefinedLevel(ComparisonLevelCreator):
    """A Splink level whose SQL is compiled from one of our level expressions."""

    def __init__(self, condition: Expr, label: str):
        self.condition = condition
        self.label = label

    def create_sql(self, sql_dialect: SplinkDialect) -> str:
        return self.condition.sql(sql_dialect)

    def create_label_for_charts(self) -> str:
        return self.label


def _level(level: Level) -> ComparisonLevelCreator:
    creator = (cll.ElseLevel() if level.condition is None
               else DefinedLevel(level.condition, level.label))
    options: dict[str, Any] = {"label_for_charts": level.label}
    if level.null:
        options["is_null_level"] = True
    if level.tf_column:
        options["tf_adjustment_column"] = level.tf_column
    if level.m is not None:
        options.update(m_probability=level.m, fix_m_probability=True)
    if level.u is not None:
        options.update(u_probability=level.u, fix_u_probability=True)
    return creator.configure(**options)


def _comparison(comp: Comparison) -> cl.CustomComparison:
    return cl.CustomComparison(output_column_name=comp.name,
                               comparison_levels=[_level(lvl) for lvl in comp.levels],
                               comparison_description=comp.description)


def blocking_rules(definition: Definition | None = None) -> list[Any]:
    """One Splink blocking rule per blocking key column ``bk_<name>``."""
    keys = BLOCKING_KEYS if definition is None else definition.blocking_keys
    return [block_on(f"bk_{k}") for k in keys]


def build_settings(definition: Definition | None = None) -> SettingsCreator:
    """Splink settings over the standardised columns (engine-independent, untrained).

    ``definition``: a project's (built-in comparisons and its extra fields); the built-in
    one when ``None``.
    """
    comparisons = COMPARISONS if definition is None else definition.comparisons
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name=UNIQUE_ID_COLUMN,
        probability_two_random_records_match=DEFAULT_PRIOR,
        comparisons=[_comparison(c) for c in comparisons],
        blocking_rules_to_generate_predictions=blocking_rules(definition),
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source"],
    )


def settings_dict(dialect: str = "duckdb", definition: Definition | None = None
                  ) -> dict[str, Any]:
    """The untrained settings as Splink's JSON-able dict, SQL in ``dialect``."""
    return build_settings(definition).get_settings(dialect).as_dict()


def with_parameters(trained: dict[str, Any], dialect: str,
                    definition: Definition | None = None) -> dict[str, Any]:
    """Trained settings (any dialect's SQL) recompiled for ``dialect``, parameters kept.

    The SQL comes from the definition, the m/u values, the prior and the term-frequency
    weights from ``trained``; both must have the same comparisons and levels (which the
    model's definition hash guarantees, see :meth:`linkage.matching.model.Model.check_definition`).
    """
    fresh = settings_dict(dialect, definition)
    params = ("m_probability", "u_probability", "tf_adjustment_weight", "tf_minimum_u_value")
    for new_c, old_c in zip(fresh["comparisons"], trained["comparisons"], strict=True):
        for new_l, old_l in zip(new_c["comparison_levels"], old_c["comparison_levels"],
                                strict=True):
            for p in params:
                if p in old_l:
                    new_l[p] = old_l[p]
    fresh["probability_two_random_records_match"] = trained[
        "probability_two_random_records_match"]
    return fresh
