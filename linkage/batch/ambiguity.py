"""Ambiguity as evidence: how many plausible candidates a record has in the other roster.

The pairwise model scores a pair on its own fields and a prior shared by every pair of
the register. Between two sources that list each person once (a civil registry, a roster
with one row per beneficiary) a record has *at most one* match in the other source, and
that changes what a score means:

* "Fatoumata Coulibaly, 1986" in the cash-transfer roster, with one candidate of that name
  and age in the civil registry, is far more likely that person than the same fields
  facing three candidates: the three share the record's one match between them.
* Source pairs overlap very differently (most of a cash-transfer roster is in the civil
  registry; few nutrition children are in a public-works roster), and the register-wide
  prior is one average over all of them.

**The model.** For each pair of such sources A and B, the matches between them form a
partial one-to-one matching. Its prior: each record of A has a match in B with
probability ρ_AB (the share of A's records that B holds; ρ_BA likewise), each of the
M_AB = ρ_AB·N_A matches equally likely any pair. Relative to "both unmatched", a matched
pair (a, b) then weighs::

    K_ab = c_AB · e_ab / ((1 - ρ_AB) · (1 - ρ_BA)),   c_AB = M_AB / (N_A · N_B · λ)

with ``e_ab = 2 ** match_weight`` the pairwise model's posterior odds (its register-wide
prior λ included; ``c`` turns it into this source pair's). The probability of a pair is
its marginal under the distribution of matchings with weight ``∏ K``. It is computed by
belief propagation (exact where the candidate graph is a tree, as it nearly always is
here; :func:`_marginals`): an isolated pair gets odds K (raised: every other record of
the other source was found implausible), a record with two equal candidates gives each
at most one half, as a record has one match.

ρ_AB is estimated from the run's own pairs: the sum of their pairwise probabilities over
N_A (the expected matches of A's records among the kept pairs, so the matches blocking or
scoring missed count as "unmatched": the raise stays honest), capped at
:data:`MAX_OVERLAP`. Candidates are the pairs whose pairwise probability is at least
:data:`CANDIDATE_P` (or the review threshold, if lower): a competitor under the review
threshold still takes its share of a record's one match, and a true pair under it, with
no competitor, can be raised (common names with a year-only date score there). An
incremental run keeps that set exactly as a full run does
(:func:`linkage.batch.incremental.floor`), so both adjust identically.

A pair so weighed is marked ``one_to_one`` and is linked from its own threshold,
``thresholds.one_to_one`` (:func:`pair_thresholds`; the reasons are in
:class:`linkage.config.Thresholds`).

Pairs inside one source, and pairs touching a *file of duplicates*
(:func:`linkage.batch.clustering.duplicate_files`), where a record may have many matches
in the other source, keep their pairwise weight. Measured in ``benchmarks/RESULTS.md``
("Ambiguity as evidence").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["CANDIDATE_P", "MAX_OVERLAP", "AmbiguityReport", "adjust", "bits_given_prior",
           "candidate_floor", "pair_key", "pair_thresholds"]

#: The lowest pairwise probability of a candidate pair. Measured on hard generated
#: registers of 50,000 persons (benchmarks/RESULTS.md, "Ambiguity reads pairs under the
#: review threshold"): pairwise F1 horn 0.7489 / 0.7579 / 0.7594 and sahel 0.8309 /
#: 0.8352 / 0.8352 with candidates from 0.4 (the review threshold) / 0.05 / 0.01, at
#: 17k / 36k / 70k adjusted pairs (horn); 0.05 keeps most of the gain at half the pairs.
CANDIDATE_P = 0.05


def candidate_floor(review: float) -> float:
    """The lowest pairwise probability of a candidate, given the review threshold."""
    return min(review, CANDIDATE_P)


def pair_thresholds(one_to_one: np.ndarray, match: float, one_to_one_match: float | None
                    ) -> np.ndarray:
    """Each pair's match threshold: ``one_to_one_match`` for the pairs this step weighed
    (``one_to_one`` true), ``match`` for the others; ``None``: ``match`` for all. The one
    rule the batch's clustering, the stored ``links.linked``, the review queue and
    real-time enrolment all apply."""
    if one_to_one_match is None:
        return np.full(len(one_to_one), match)
    return np.where(np.asarray(one_to_one, bool), min(one_to_one_match, match), match)


#: ρ (share of a source's records with a match in another source) is capped here: at
#: 0.95 both ways, a pair with no competitor on either side gains at most 2 x log2(1 / 0.05),
#: about 8.6 bits (two files that hold the same people, as FEBRL 4's do).
MAX_OVERLAP = 0.95


@dataclass
class AmbiguityReport:
    """What the adjustment did, for the run summary."""

    pairs_adjusted: int = 0
    raised: int = 0  # crossed the match threshold upwards
    lowered: int = 0  # crossed it downwards
    #: "A -> B": share of A's records expected to have a match in B (ρ_AB)
    overlap: dict[str, float] = field(default_factory=dict)
    #: "A|B" (names in order): log2 of c_AB / ((1 - ρ_AB)(1 - ρ_BA)), the bits that turn
    #: a pair's pairwise odds into its K. Real-time enrolment weighs a new record's
    #: candidates with the last run's (:func:`bits_given_prior`).
    prior_bits: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"pairs_adjusted": self.pairs_adjusted, "raised_above_match": self.raised,
                "lowered_below_match": self.lowered,
                "overlap": {k: round(v, 4) for k, v in sorted(self.overlap.items())},
                "prior_bits": dict(sorted(self.prior_bits.items()))}

    def line(self) -> str:
        return (f"ambiguity: {self.pairs_adjusted:,} pairs between rosters that list each "
                f"person once re-weighed by their records' other candidates; "
                f"{self.raised:,} linked that pairwise would not be, {self.lowered:,} "
                "not linked that pairwise would be")


def adjust(links: pa.Table, records: pa.Table, prior: float, match_threshold: float,
           duplicate_files: Iterable[str] = (), one_to_one_match: float | None = None
           ) -> tuple[pa.Table, AmbiguityReport]:
    """The links with one-to-one (ambiguity) weights between sources listing each person once.

    Args:
        links: ``uid_l``, ``uid_r``, ``match_probability``, ``match_weight`` (pairwise).
        records: ``uid``, ``source`` of every active record, and optionally ``node``: an
            integer label shared by records of one source already known to be one person
            (an exact copy, a re-registration strongly linked to its first record), who
            then count as one candidate, not as two competing ones.
        prior: the run's prior λ (probability that two random records match).
        match_threshold: for the report's counts of links made and undone.
        duplicate_files: sources that are files of duplicates: not adjusted.
        one_to_one_match: the match threshold of the weighed pairs, for those counts
            (:func:`pair_thresholds`).

    Returns:
        The links, sorted by (uid_l, uid_r), with ``match_weight`` / ``match_probability``
        adjusted, ``ambiguity_bits`` (adjusted minus pairwise weight; 0 where
        unchanged) and ``one_to_one`` (the pair was weighed) added; and the report.
    """
    report = AmbiguityReport()
    # One order whatever the engine's: the sums below are then bit-identical between a
    # full and an incremental run that keep the same pairs.
    links = links.take(pc.sort_indices(
        links, sort_keys=[("uid_l", "ascending"), ("uid_r", "ascending")]))
    n = links.num_rows
    w = links.column("match_weight").to_numpy(zero_copy_only=False).astype(np.float64)
    bits = np.zeros(n)
    weighed = np.zeros(n, bool)
    if n and prior > 0:
        order = pc.sort_indices(records, sort_keys=[("uid", "ascending")])
        records = records.take(order)
        names, src = np.unique(
            np.asarray(records.column("source").to_pylist(), dtype=object).astype(str),
            return_inverse=True)
        node = (records.column("node").to_numpy(zero_copy_only=False).astype(np.int64)
                if "node" in records.column_names else np.arange(records.num_rows))
        uid_col = records.column("uid")
        il = pc.index_in(links.column("uid_l"), value_set=uid_col)
        ir = pc.index_in(links.column("uid_r"), value_set=uid_col)
        known = pc.and_(pc.is_valid(il), pc.is_valid(ir)).to_numpy(zero_copy_only=False)
        a = pc.fill_null(il, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        b = pc.fill_null(ir, 0).to_numpy(zero_copy_only=False).astype(np.int64)
        dup = np.isin(names, list(duplicate_files))
        sel = known & (src[a] != src[b]) & ~dup[src[a]] & ~dup[src[b]]
        if sel.any():
            # Persons per source: distinct nodes.
            k = len(names)
            first = np.unique(src * (node.max() + 1) + node)
            persons = np.bincount(first // (node.max() + 1), minlength=k)
            weighed = sel
            bits[sel] = _one_to_one(node[a[sel]], node[b[sel]], src[a[sel]], src[b[sel]],
                                    w[sel], persons, prior, names, report)
    w2 = w + bits
    p2 = 1.0 / (1.0 + np.exp2(-w2))
    p = links.column("match_probability").to_numpy(zero_copy_only=False)
    report.pairs_adjusted = int(np.count_nonzero(bits))
    # Links the step made or undid: pairwise at the match threshold, against each
    # pair's own threshold once weighed.
    t2 = pair_thresholds(weighed, match_threshold, one_to_one_match)
    report.raised = int(((p < match_threshold) & (p2 >= t2)).sum())
    report.lowered = int(((p >= match_threshold) & (p2 < t2)).sum())
    out = links.set_column(links.schema.get_field_index("match_weight"), "match_weight",
                           pa.array(w2))
    out = out.set_column(out.schema.get_field_index("match_probability"),
                         "match_probability", pa.array(p2))
    out = out.append_column("ambiguity_bits", pa.array(bits))
    return out.append_column("one_to_one", pa.array(weighed)), report


#: Belief-propagation sweeps (messages converge in a few on tree-like candidate graphs).
BP_ITERATIONS = 50
#: Pair weights are clipped here inside the messages (2**40: float64 keeps a competitor's
#: 1 next to a certain pair's term); the certain pair's own result is not clipped.
_MAX_LOG2_K = 40.0


def _one_to_one(na: np.ndarray, nb: np.ndarray, sa: np.ndarray, sb: np.ndarray,
                w: np.ndarray, persons: np.ndarray, prior: float, names: np.ndarray,
                report: AmbiguityReport) -> np.ndarray:
    """Adjusted minus pairwise weight of cross-source record pairs (module docstring).

    ``na`` / ``nb`` are the records' nodes (one per person known within its source),
    ``persons`` the nodes per source. The matching is between nodes: a node pair weighs
    as its strongest record pair, and each record pair gets its node pair's ambiguity.
    """
    k = len(persons)
    edge, wn, nx, ny, nsx, nsy = _node_pairs(na, nb, sa, sb, w)
    p = 1.0 / (1.0 + np.exp2(-np.clip(wn, -60, 60)))
    # M per source pair (matches expected among the kept pairs), ρ per direction.
    m = np.bincount(nsx * k + nsy, weights=p, minlength=k * k)
    m = m + m.reshape(k, k).T.reshape(-1)
    n = persons.astype(np.float64)
    rho = np.minimum(m / np.maximum(np.repeat(n, k), 1.0), MAX_OVERLAP)
    for i, j in zip(*np.nonzero(rho.reshape(k, k)), strict=True):
        report.overlap[f"{names[i]} -> {names[j]}"] = float(rho[i * k + j])
    with np.errstate(divide="ignore"):
        pair_bits = (np.log2(m / (np.repeat(n, k) * np.tile(n, k) * prior))
                     - np.log2(1.0 - rho) - np.log2(1.0 - rho.reshape(k, k).T.reshape(-1)))
    for i, j in zip(*np.nonzero(np.triu(m.reshape(k, k) > 0, 1)), strict=True):
        report.prior_bits[pair_key(names[i], names[j])] = float(pair_bits[i * k + j])
    node_bits = _node_bits(nx * k + nsy, ny * k + nsx, pair_bits[nsx * k + nsy], wn)
    bits = node_bits[edge]
    return np.where(np.isfinite(bits), bits, 0.0)


def _node_pairs(na: np.ndarray, nb: np.ndarray, sa: np.ndarray, sb: np.ndarray,
                w: np.ndarray) -> tuple[np.ndarray, ...]:
    """Record pairs as node pairs oriented from the lower source code to the higher: each
    row's node pair (``edge``), and per node pair its weight (the strongest row's), its
    two nodes and their sources."""
    swap = sa > sb
    x, y = np.where(swap, nb, na), np.where(swap, na, nb)
    sx, sy = np.where(swap, sb, sa), np.where(swap, sa, sb)
    span = int(max(x.max(), y.max())) + 1
    # A node belongs to one source, so the node pair names its sources.
    keys, at, edge = np.unique(x * span + y, return_index=True, return_inverse=True)
    wn = np.full(len(keys), -np.inf)
    np.maximum.at(wn, edge, w)
    return edge, wn, keys // span, keys % span, sx[at], sy[at]


def _node_bits(key_x: np.ndarray, key_y: np.ndarray, prior_bits: np.ndarray,
               wn: np.ndarray) -> np.ndarray:
    """Adjusted minus pairwise weight of node pairs, given each pair's prior bits."""
    log2_k = prior_bits + wn
    mu_xy, mu_yx = _marginals(key_x, key_y, np.exp2(np.minimum(log2_k, _MAX_LOG2_K)))
    return prior_bits + np.log2(mu_xy) + np.log2(mu_yx)


def pair_key(a: str, b: str) -> str:
    """The key of a source pair in :attr:`AmbiguityReport.prior_bits`: names in order."""
    return f"{a}|{b}" if a < b else f"{b}|{a}"


def bits_given_prior(node_l: np.ndarray, node_r: np.ndarray, source_l: list[str],
                     source_r: list[str], w: np.ndarray, prior_bits: dict[str, float]
                     ) -> np.ndarray:
    """Ambiguity bits of each pair of a candidate graph, with each source pair's prior
    bits known from a run (:attr:`AmbiguityReport.prior_bits`) instead of estimated.

    Real-time enrolment's use: a new record's candidates and their stored links are a
    small piece of the register's candidate graph, too small to estimate ρ on, and the
    last run's figures hold for it. ``node_*`` label the records (one label per person
    known within a source); pairs within one source, or between sources without prior
    bits, get 0 and take no part.
    """
    n = len(w)
    bits = np.zeros(n)
    on = np.array([a != b and pair_key(a, b) in prior_bits
                   for a, b in zip(source_l, source_r, strict=True)], bool)
    if not on.any():
        return bits
    names = sorted({*source_l, *source_r})
    code = {s: i for i, s in enumerate(names)}
    k = len(names)
    sl = np.array([code[s] for s in source_l], np.int64)[on]
    sr = np.array([code[s] for s in source_r], np.int64)[on]
    edge, wn, nx, ny, nsx, nsy = _node_pairs(node_l[on].astype(np.int64),
                                             node_r[on].astype(np.int64), sl, sr, w[on])
    pb = np.array([prior_bits[pair_key(names[i], names[j])] for i, j in
                   zip(nsx.tolist(), nsy.tolist(), strict=True)])
    node_bits = _node_bits(nx * k + nsy, ny * k + nsx, pb, wn)
    got = node_bits[edge]
    bits[on] = np.where(np.isfinite(got), got, 0.0)
    return bits


def _marginals(key_a: np.ndarray, key_b: np.ndarray, kw: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Belief propagation for a weighted partial matching (the monomer-dimer model).

    ``key_a`` / ``key_b`` name each edge's two ends (a record within one source pair);
    ``kw`` are the edge weights K. The messages are::

        μ(a→b) = 1 / (1 + Σ_{b' ≠ b} K_ab' · μ(b'→a))

    and an edge's marginal odds are ``K · μ(a→b) · μ(b→a)``: exact on trees (an
    isolated pair: K; a record with two candidates of weight K: K / (1 + K) each, a
    probability of K / (1 + 2K)). Damped by half, for the rare loopy component.
    """
    mu_ab = np.ones(len(kw))
    mu_ba = np.ones(len(kw))
    _, inv_a = np.unique(key_a, return_inverse=True)
    _, inv_b = np.unique(key_b, return_inverse=True)
    for _ in range(BP_ITERATIONS):
        t_a = np.bincount(inv_a, weights=kw * mu_ba)[inv_a] - kw * mu_ba
        t_b = np.bincount(inv_b, weights=kw * mu_ab)[inv_b] - kw * mu_ab
        new_ab = 1.0 / (1.0 + np.maximum(t_a, 0.0))
        new_ba = 1.0 / (1.0 + np.maximum(t_b, 0.0))
        delta = max(float(np.abs(new_ab - mu_ab).max()), float(np.abs(new_ba - mu_ba).max()))
        mu_ab = 0.5 * (mu_ab + new_ab)
        mu_ba = 0.5 * (mu_ba + new_ba)
        if delta < 1e-9:
            break
    return mu_ab, mu_ba
