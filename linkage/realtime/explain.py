"""Explain any pair of records: the match-weight waterfall and whether blocking pairs them.

Scored with the model of the last published run and the register's term frequencies,
by the same evaluator real time uses (:meth:`linkage.realtime.index.Index.explain`), so the
figures are the ones Resolve and Enrol would see; the batch's differ only in the block
caps, counted over the records of its run.

Example:
    >>> ex = explain_records(project, reg, "cr:CR1", "ct:CT9")  # doctest: +SKIP
    >>> print(format_explanation(ex))  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from typing import Any

from linkage.errors import NotFound
from linkage.realtime.index import Evidence, Index, PairExplanation, load_model, probability
from linkage.register.database import Register

#: The waterfall line of a pair's ambiguity (:mod:`linkage.batch.ambiguity`).
AMBIGUITY_LABEL = "other candidates of each record in the other source (last run)"


def explain_records(project: Any, reg: Register, uid_a: str, uid_b: str) -> PairExplanation:
    """Explain two records, each named ``<source>:<record key>``.

    Raises:
        NotFound: a record unknown, retired or not yet given a person by a run.
        NotReady: no model to score with.
    """
    cur = reg.cursor()
    try:
        for uid in (uid_a, uid_b):
            rows = cur.execute("SELECT r.status, p.person_id FROM records r LEFT JOIN "
                               "person_records p USING (uid) WHERE r.uid = ?", [uid]).fetchall()
            if not rows:
                raise NotFound(f"no record {uid!r} (records are named <source>:<record key>)")
            if rows[0][0] != "active" or rows[0][1] is None:
                raise NotFound(f"record {uid!r} is retired or has no person yet: run a batch")
        index = Index.build(cur, load_model(project, cur), max_block_size=project.max_block_size)
        return with_ambiguity(index.explain(uid_a, uid_b), cur)
    finally:
        cur.close()


def with_ambiguity(ex: PairExplanation, cur: Any) -> PairExplanation:
    """The explanation with the last run's ambiguity of the pair added as one more line
    of the waterfall (and in its total), when the batch re-weighed it: the weight the
    batch clustered with. Unchanged for pairs the last run did not keep or adjust."""
    lo, hi = sorted((ex.uid_l, ex.uid_r))
    rows = cur.execute("SELECT ambiguity_bits FROM links WHERE uid_l = ? AND uid_r = ?",
                       [lo, hi]).fetchall()
    bits = float(rows[0][0] or 0.0) if rows else 0.0
    if not bits:
        return ex
    weight = ex.match_weight + bits
    return dataclasses.replace(
        ex, match_weight=weight, match_probability=probability(weight),
        evidence=[*ex.evidence, Evidence("ambiguity", -1, AMBIGUITY_LABEL, bits, 0.0)])


def format_explanation(ex: PairExplanation) -> str:
    """The waterfall as text: one line per comparison, then the total and the blocking."""
    lines = [f"{ex.uid_l}  vs  {ex.uid_r}", "",
             f"{'prior (two records picked at random)':<58}{ex.prior_weight:>+9.2f}"]
    for e in ex.evidence:
        tf = f"  (term frequency {e.tf_adjustment:+.2f})" if e.tf_adjustment else ""
        lines.append(f"{e.comparison:<18}{e.label:<40}{e.weight:>+9.2f}{tf}")
    lines += [f"{'match weight':<58}{ex.match_weight:>+9.2f}",
              f"{'match probability':<58}{ex.match_probability:>9.4f}", ""]
    lines.append(blocking_line(ex))
    return "\n".join(lines)


def blocking_line(ex: PairExplanation) -> str:
    """Whether blocking compares the pair, in one line (the CLI, the API, the web page)."""
    if ex.compared:
        return "compared by blocking keys: " + ", ".join(ex.shared_keys)
    return ("never compared: no blocking key in common"
            + (f" within the block cap (shared but capped: {', '.join(ex.capped_keys)})"
               if ex.capped_keys else ""))
