"""The one place that reads Splink's private attributes.

Real-time scoring does Splink's arithmetic in numpy: level weights, the prior and the
term-frequency adjustment, taken from Splink's own objects built from the model's
settings, so the numbers are Splink's. Splink exposes them only as private attributes;
they are read here and nowhere else, and ``tests/test_parity.py`` fails loudly when a
Splink upgrade moves them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LevelWeights:
    """What scoring needs of one trained level."""

    label: str
    cvv: int  # Splink's comparison vector value
    weight: float  # log2(m/u), 0 for the null level
    tf_column: str | None  # term-frequency column when the level is adjusted
    tf_weight: float
    log2_u_exact: float  # log2 u of the exact-match level the adjustment is relative to
    tf_min: float  # the smallest term frequency used


@dataclass(frozen=True)
class Scorecard:
    prior_weight: float  # log2 of the prior odds
    comparisons: tuple[tuple[str, tuple[LevelWeights, ...]], ...]


def scorecard(settings: dict[str, Any]) -> Scorecard:
    """The weights of a trained model's settings, as Splink computes them."""
    from splink.internals.settings_creator import SettingsCreator

    obj = SettingsCreator.from_path_or_dict(settings).get_settings("duckdb")
    prior = obj._probability_two_random_records_match
    comps = []
    for comp in obj.comparisons:
        levels = []
        for lvl in comp.comparison_levels:
            w = lvl._match_weight
            tf_col = None
            log2u = 0.0
            if (lvl._has_tf_adjustments and lvl._tf_adjustment_weight != 0
                    and not lvl.is_null_level and not lvl._is_else_level):
                tf_col = lvl._tf_adjustment_input_column_name
                log2u = math.log2(lvl._u_probability_corresponding_to_exact_match(
                    comp.comparison_levels))
            levels.append(LevelWeights(lvl.label_for_charts, lvl.comparison_vector_value,
                                       0.0 if w is None else float(w), tf_col,
                                       float(lvl._tf_adjustment_weight), log2u,
                                       float(lvl._tf_minimum_u_value)))
        comps.append((comp.output_column_name, tuple(levels)))
    return Scorecard(math.log2(prior / (1 - prior)), tuple(comps))


#: The chart libraries Splink ships inside its package (UMD bundles), in load order.
CHART_SCRIPTS = ("vega", "vega-lite", "vega-embed")


def chart_scripts() -> list[tuple[str, str]]:
    """``(name, JavaScript)`` of Vega, Vega-Lite and vega-embed as installed with Splink:
    a page that inlines them needs no internet access."""
    from splink.internals.html_utils import load_chart_libraries

    libs = load_chart_libraries()
    return [(name, libs[name]) for name in CHART_SCRIPTS]


def chart_definition(filename: str) -> dict[str, Any]:
    """One of Splink's own Vega-Lite chart specifications (``chart_defs/<filename>``)."""
    from splink.internals.charts import load_chart_definition

    return load_chart_definition(filename)


#: Splink's cache key of the blocked pairs ``predict`` scores (no chunking).
BLOCKED_PAIRS = "__splink__blocked_id_pairs"


def drop_blocked_pairs(linker: Any) -> None:
    """Drop the blocked pairs a linker keeps in its cache after ``predict`` used them.

    ``compute_blocked_pairs_for_predict`` caches them so ``predict`` reuses them; Splink
    then keeps them, as large as every comparison, until the linker goes.
    """
    cached = linker._intermediate_table_cache.pop(BLOCKED_PAIRS, None)
    # Pairs the caller registered are the caller's table to drop.
    if cached is not None and not cached.metadata.get("registered_for_predict"):
        cached.drop_table_from_database_and_remove_from_cache()
