"""Reviewers' decisions as labels in training: m from the pairs reviewers said are one person.

A decision "same person" in the review queue writes a must-link constraint, "not the same
person" (and "take this record out") a cannot-link one (:mod:`linkage.review.decide`).
The constraints in force that a review decision wrote are labelled pairs. With
``linkage train --use-labels``, after the household-safe training
(:func:`linkage.matching.training.train`), the m probabilities are estimated again from
the positive pairs with Splink's own ``estimate_m_from_pairwise_labels`` (each comparison's
level shares among the labelled matches), and blended with the trained m by
:data:`PSEUDO_PAIRS` pseudo-pairs, so that a level no labelled pair reached keeps its
trained value and a handful of labels cannot swing a weight to infinity:
``m = (n * m_labels + k * m_trained) / (n + k)``. u and the prior are not touched
(labels say nothing about non-matches at random). Negative labels are counted in the
report but not used by this estimate (they stay binding constraints in every run).

Caveat, written in the report too: reviewed pairs are the doubtful ones (the review band,
a clerical sample across the probability range), not a random sample of matches, so their
m is biased towards disagreement; the clerical sample (``linkage review sample``) is the
least biased source of labels.

The result is recorded in the model's metadata (``labels``: pairs, how many were used,
the blend, the largest changes) and printed by :func:`describe`.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from linkage.matching.definition import UNIQUE_ID_COLUMN
from linkage.matching.model import Model

log = logging.getLogger(__name__)

#: Fewer positive labelled pairs than this (among the records being trained on): not used.
MIN_LABELLED_PAIRS = 10
#: The trained m counts as this many pairs in the blend.
PSEUDO_PAIRS = 20.0
LABELS_TABLE = "linkage_labels"


@dataclass(frozen=True)
class Labels:
    """The labelled pairs in force: reviewers' must-links and cannot-links."""

    positive: tuple[tuple[str, str], ...]
    negative: int

    def __bool__(self) -> bool:
        return bool(self.positive or self.negative)


def from_register(cur: duckdb.DuckDBPyConnection) -> Labels:
    """The labels in the register: constraints written by review decisions, still in force
    (a revoked decision's constraints are gone)."""
    rows = cur.execute("SELECT uid_a, uid_b, kind FROM constraints WHERE decision_id IS NOT "
                       "NULL ORDER BY uid_a, uid_b").fetchall()
    return Labels(positive=tuple((a, b) for a, b, k in rows if k == "must_link"),
                  negative=sum(1 for *_, k in rows if k == "cannot_link"))


def _levels(settings: dict[str, Any]) -> dict[tuple[str, int], float | None]:
    return {(c["output_column_name"], i): lvl.get("m_probability")
            for c in settings["comparisons"]
            for i, lvl in enumerate(c["comparison_levels"]) if not lvl.get("is_null_level")}


def apply(con: duckdb.DuckDBPyConnection, model: Model, labels: Labels, *,
          table: str = "linkage_input", linker: Callable[..., Any],
          progress: Callable[[str], None] = lambda _: None) -> Model:
    """``model`` with m re-estimated from the positive labels (see the module docstring).

    Args:
        con: the scratch DuckDB holding ``table``.
        linker: makes a Splink linker on ``(con, settings, table)``
            (:func:`linkage.matching.training._linker`).
    """
    n_given = len(labels.positive)
    # Splink names the label columns after the unique ID column (uid): uid_l, uid_r.
    ids = pa.table({f"{UNIQUE_ID_COLUMN}_l": [a for a, _ in labels.positive],
                    f"{UNIQUE_ID_COLUMN}_r": [b for _, b in labels.positive]})
    con.register("linkage_labels_in", ids)
    try:
        con.execute(f"""CREATE OR REPLACE TABLE {LABELS_TABLE} AS
            SELECT DISTINCT l.{UNIQUE_ID_COLUMN}_l, l.{UNIQUE_ID_COLUMN}_r
            FROM linkage_labels_in l
            JOIN {table} a ON a.{UNIQUE_ID_COLUMN} = l.{UNIQUE_ID_COLUMN}_l
            JOIN {table} b ON b.{UNIQUE_ID_COLUMN} = l.{UNIQUE_ID_COLUMN}_r""")
    finally:
        con.unregister("linkage_labels_in")
    ((n,),) = con.execute(f"SELECT count(*) FROM {LABELS_TABLE}").fetchall()
    info: dict[str, Any] = {"positive_pairs": n_given, "negative_pairs": labels.negative,
                            "positive_pairs_used": n, "pseudo_pairs": PSEUDO_PAIRS,
                            "method": "m from reviewers' same-person pairs (Splink's "
                                      "estimate_m_from_pairwise_labels), blended with the "
                                      "trained m"}
    out = Model(version=model.version, settings=copy.deepcopy(model.settings),
                metadata=copy.deepcopy(model.metadata), definition=model.definition)
    if n < MIN_LABELLED_PAIRS:
        info["used"] = False
        info["why"] = (f"only {n} same-person pairs among the records trained on; at least "
                       f"{MIN_LABELLED_PAIRS} are needed")
        progress(f"  labels: {info['why']}: not used")
        out.metadata["labels"] = info
        return out
    progress(f"  m from {n:,} labelled same-person pairs (reviewers' decisions; "
             f"{labels.negative:,} not-same pairs kept as constraints only)")
    before = _levels(model.settings)
    lk = linker(con, copy.deepcopy(model.settings), table)
    logging.getLogger("splink").setLevel(logging.ERROR)
    lk.training.estimate_m_from_pairwise_labels(LABELS_TABLE)
    estimated = _levels(lk.misc.save_model_to_json())
    changes = []
    for c in out.settings["comparisons"]:
        name = c["output_column_name"]
        for i, lvl in enumerate(c["comparison_levels"]):
            if lvl.get("is_null_level"):
                continue
            old, new = before.get((name, i)), estimated.get((name, i))
            if old is None or new is None or not math.isfinite(new) or new == old:
                continue  # not reached by the labels: the trained m stays
            m = (n * new + PSEUDO_PAIRS * old) / (n + PSEUDO_PAIRS)
            lvl["m_probability"] = m
            changes.append({"comparison": name, "level": lvl.get("label_for_charts", str(i)),
                            "m_trained": old, "m_labels": new, "m": m})
    changes.sort(key=lambda ch: -abs(math.log2(max(ch["m"], 1e-12) / max(ch["m_trained"],
                                                                          1e-12))))
    info.update(used=True, levels_changed=len(changes), largest_changes=changes[:8])
    out.metadata["labels"] = info
    out.metadata["method"] = (out.metadata.get("method", "") + f"; then m blended with "
                              f"{n:,} reviewers' labelled pairs")
    return out


def describe(model: Model) -> list[str]:
    """Report lines on the labels the model used (none when it used none)."""
    info = model.metadata.get("labels")
    if not info:
        return []
    head = (f"labels: {info['positive_pairs']:,} same-person and {info['negative_pairs']:,} "
            f"not-same pairs decided by reviewers; {info['positive_pairs_used']:,} same-person "
            f"pairs among the records trained on")
    if not info.get("used"):
        return [head, f"  not used: {info.get('why', '')}"]
    lines = [head, f"  m re-estimated from them (Splink's estimate_m_from_pairwise_labels) and "
                   f"blended with the trained m as {info['pseudo_pairs']:g} pseudo-pairs; "
                   f"{info['levels_changed']} levels changed; reviewed pairs are the doubtful "
                   f"ones, so their m leans towards disagreement (clerical samples are the "
                   f"least biased labels)"]
    for ch in info.get("largest_changes", [])[:5]:
        lines.append(f"    {ch['comparison']} / {str(ch['level'])[:40]}: m {ch['m_trained']:.4f} "
                     f"-> {ch['m']:.4f} (labels alone {ch['m_labels']:.4f})")
    return lines


__all__: Sequence[str] = ("Labels", "MIN_LABELLED_PAIRS", "PSEUDO_PAIRS", "apply", "describe",
                          "from_register")
