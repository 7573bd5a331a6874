"""The register's own accuracy, measured from its reviewers' decisions.

**The population** is every pair of live records that blocking compares (they share a
blocking key within the block cap), or that share a person, or would share one if the
register were clustered at another threshold (:func:`threshold_choices`), each
classified by the register as *linked* (the two records share a person) or not, and
scored by the model of the last published run (:class:`linkage.realtime.index.Index`,
the numbers Resolve and the item view show). The pairs a person holds without being
compared count: in a file of many records per person most are, and a false merge
brings all of them. Other pairs that no blocking key brings together are outside it:
recall here is recall among these pairs (blocking's own recall is measured by
``benchmarks/blocking_recall``).

**The clerical sample** (:func:`queue_sample`) enumerates that population from a uniform
random sample of records (each pair counted from its first record, so a pair is in with
probability ``records sampled / records``; with every record, exactly), splits it into
strata by match probability (:data:`EDGES`, plus the match threshold) crossed with
linked / not linked, and queues up to ``per_stratum`` pairs drawn at random from each
stratum as ``sample`` items. The strata's sizes are kept in ``review_samples``.

**The estimate** (:func:`estimate`): each decided sample item is a label (``same`` = a
match; ``not_same`` and ``take_out`` = not a match; ``defer`` = no label). In stratum
``h`` with ``N_h`` pairs, ``n_h`` labels and ``k_h`` matches, the match rate has the
posterior ``Beta(k_h + s*m_h, n_h - k_h + s*(1 - m_h))``, where ``m_h`` is the model's mean
probability in the stratum and ``s`` = :data:`PRIOR_STRENGTH` pseudo-labels: labels
dominate as soon as there are a few, and a large stratum of near-certain non-matches with
20 "not the same" labels is not credited with thousands of hidden matches. In a linked
stratum the "not a match" side keeps at least :data:`MIN_PSEUDO` pseudo-labels: a
model's 0.9999 is not calibrated that far out. Then

    matches_h = k_h + (N_h - n_h) p_h    (the labelled pairs are known; a stratum
                                          labelled in full is exact)
    precision = sum_linked matches_h / sum_linked N_h,
    recall    = sum_linked matches_h / sum_all matches_h

with a 95 % interval from :data:`DRAWS` joint posterior draws. This is Splink's
accuracy-from-labels idea (``accuracy_analysis_from_labels_column``) made to estimate the
register's figures rather than the labelled sample's.

**Another match threshold** (:func:`thresholds`): when the sample is drawn, the register's
stored links are clustered again at each stratum edge ``t`` at or above the review
threshold (pairs below it are not kept), with the batch's clustering and the reviewers'
constraints (:func:`linkage.batch.clustering.cluster_run`), and each stratum records the
share of its enumerated pairs that clustering would put in one person. At ``t`` a
stratum then holds ``share_t * N_h`` linked pairs, ``share_t * matches_h`` of them
matches (within a stratum, the pairs a new threshold joins are taken to be as often
matches as the others). Clustering, not the pair's own probability, decides: on a file
of many records per person one more link merges two clusters and all their pairs, which
a pair-by-pair reading misses (it suggested 0.5 on Splink's historical_50k, where F1 is
0.61 at 0.5 and 0.87 at 0.95). This is how a careful user chooses Splink's
``threshold_match_probability`` from a clerical sample; the next run's estimate is the
measurement.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np

from linkage.errors import InvalidRequest, NotFound
from linkage.realtime.index import Index
from linkage.register import store
from linkage.register.database import query
from linkage.review.queue import SAMPLE, Candidate, new_items

Cursor = duckdb.DuckDBPyConnection

#: Probability edges of the strata (the project's match threshold is added).
EDGES = (0.0, 1e-3, 1e-2, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 0.999)
#: Records whose pairs are enumerated for the population (all, when fewer).
RECORD_SAMPLE = 5000
#: Pseudo-labels of the model-based prior in each stratum.
PRIOR_STRENGTH = 2.0
#: The least pseudo-labels of "not a match" in a linked stratum's prior. Chosen by the
#: interval's coverage of the truth over ten clerical samples of one generated register:
#: 5 / 10 without a floor (too sure of a 0.9999 stratum), 3 / 10 with Jeffreys' 0.5 (too
#: pessimistic), 8 / 10 with 0.1.
MIN_PSEUDO = 0.1
DRAWS = 4000
LABEL = {"same": 1, "not_same": 0, "take_out": 0}


@dataclass
class Population:
    """Enumerated compared pairs (index rows), their probabilities and classification."""

    left: np.ndarray
    right: np.ndarray
    prob: np.ndarray
    linked: np.ndarray
    scale: float  # pairs in the population per enumerated pair
    records: int
    records_sampled: int


def enumerate_pairs(index: Index, *, record_sample: int = RECORD_SAMPLE,
                    rng: np.random.Generator | None = None,
                    groups: Sequence[np.ndarray] = ()) -> Population:
    """The population's pairs counted from a uniform sample of records (see module
    docstring): each sampled record's compared pairs, and its pairs with the other
    records of its person, or of its cluster in any of ``groups`` (a label per index
    row), compared or not: a benchmark's pairwise precision counts every pair a person
    holds, and in a file of many records per person most of them are never compared."""
    rng = rng or np.random.default_rng()
    live = np.flatnonzero(index.alive[: index.n])
    chosen = live if len(live) <= record_sample else np.sort(
        rng.choice(live, record_sample, replace=False))
    alive = index.alive[: index.n]
    person = index.person[: index.n]
    # label -> rows, for each labelling: the current persons and the given groups.
    labelled = [np.where(alive & (person >= 0), person, -1).astype(np.int64),
                *(np.where(alive, g[: index.n], -1).astype(np.int64) for g in groups)]
    members = []
    for lab in labelled:
        order = np.argsort(lab, kind="stable")
        sl = lab[order]
        members.append((lab, order, sl))
    lefts, rights = [], []
    for i in chosen.tolist():
        c = index.candidates(index.row(i))
        parts = [c]
        for lab, order, sl in members:
            if lab[i] < 0:
                continue
            lo, hi = np.searchsorted(sl, lab[i]), np.searchsorted(sl, lab[i], side="right")
            if hi - lo > 1:
                parts.append(order[lo:hi])
        c = np.unique(np.concatenate(parts)) if len(parts) > 1 else c
        c = c[(c > i) & alive[c]]
        if len(c):
            lefts.append(np.full(len(c), i, np.int64))
            rights.append(c)
    left = np.concatenate(lefts) if lefts else np.empty(0, np.int64)
    right = np.concatenate(rights) if rights else np.empty(0, np.int64)
    weights = np.concatenate([index.score_pairs(left[k:k + 200_000], right[k:k + 200_000])
                              for k in range(0, len(left), 200_000)]) if len(left) else \
        np.empty(0)
    w = np.clip(np.nan_to_num(weights, nan=-60.0), -60.0, 60.0)
    prob = 1.0 / (1.0 + np.exp2(-w))  # Splink's probability from a match weight
    linked = index.person[left] == index.person[right]
    return Population(left, right, prob, linked, len(live) / max(len(chosen), 1), len(live),
                      len(chosen))


def _edges(match_threshold: float) -> list[float]:
    return sorted({*EDGES, match_threshold}) + [1.0 + 1e-9]


def stratum_name(lo: float, hi: float, linked: bool) -> str:
    return f"{'linked' if linked else 'apart'} p[{lo:g},{min(hi, 1.0):g})"


@dataclass
class SampleInfo:
    sample_id: str
    items: int
    strata: dict[str, dict[str, float]]
    records: int
    records_sampled: int


def threshold_choices(match_threshold: float, review_threshold: float) -> list[float]:
    """The thresholds a sample is clustered at: the strata's edges from the review
    threshold up (pairs below it are not kept), the match threshold among them."""
    return [e for e in _edges(match_threshold)[:-1] if e >= review_threshold - 1e-12]


def cluster_labels(cur: Cursor, index: Index, thresholds: Sequence[float],
                   one_to_one: tuple[float, float] | None = None) -> dict[float, np.ndarray]:
    """threshold -> a cluster label per index row, if the stored links were clustered
    at it as the match threshold (the batch's clustering, the reviewers' constraints).
    A record the clustering does not know (enrolled since the run) is alone: -1.
    ``one_to_one``: (``thresholds.review``, ``thresholds.one_to_one``): one-to-one links
    keep their own threshold, within each trial's bounds as a run would
    (:func:`linkage.config.one_to_one_threshold`); None: the match threshold."""
    from linkage.batch.clustering import cluster_at
    from linkage.config import one_to_one_threshold

    links = cur.sql("SELECT uid_l, uid_r, match_probability, match_weight, one_to_one "
                    "FROM links").to_arrow_table()
    own = None if one_to_one is None else (
        lambda t: one_to_one_threshold(t, one_to_one[0], one_to_one[1]))
    out = {}
    for t, clusters in cluster_at(cur, links, list(thresholds), one_to_one=own).items():
        codes = {c: i for i, c in enumerate(dict.fromkeys(clusters.values()))}
        out[t] = np.array([codes.get(clusters.get(u, ""), -1) for u in index.uids], np.int64)
    return out


def linked_at(labels: dict[float, np.ndarray], pop: Population) -> dict[float, np.ndarray]:
    """threshold -> whether each enumerated pair is in one cluster at it."""
    return {t: (lab[pop.left] == lab[pop.right]) & (lab[pop.left] >= 0)
            for t, lab in labels.items()}


def queue_sample(cur: Cursor, index: Index, *, match_threshold: float, per_stratum: int = 20,
                 seed: int | None = None, created_by: str = "clerical sample",
                 record_sample: int = RECORD_SAMPLE, review_threshold: float | None = None,
                 now: dt.datetime | None = None, one_to_one_threshold: float | None = None
                 ) -> SampleInfo:
    """Draw and queue a clerical sample; its strata are recorded for :func:`estimate`.
    With ``review_threshold``, each stratum also records the share of its pairs that
    clustering at each edge from there up would link (:func:`linked_at`), one-to-one
    links at ``one_to_one_threshold`` (``thresholds.one_to_one``) within each trial's
    bounds."""
    if per_stratum < 1:
        raise InvalidRequest([("per_stratum", "must be at least 1")])
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rng = np.random.default_rng(seed)
    choices = ([] if review_threshold is None
               else threshold_choices(match_threshold, review_threshold))
    own = (None if one_to_one_threshold is None or review_threshold is None
           else (review_threshold, one_to_one_threshold))
    labels = cluster_labels(cur, index, choices, own) if choices else {}
    pop = enumerate_pairs(index, record_sample=record_sample, rng=rng,
                          groups=list(labels.values()))
    sample_id = f"S{now.strftime('%Y%m%d%H%M%S')}-{secrets.token_hex(2)}"
    edges = _edges(match_threshold)
    bin_of = np.searchsorted(edges, pop.prob, side="right") - 1
    again = linked_at(labels, pop)
    strata: dict[str, dict[str, Any]] = {}
    cands: list[Candidate] = []
    for b in range(len(edges) - 1):
        for linked in (True, False):
            at = np.flatnonzero((bin_of == b) & (pop.linked == linked))
            if len(at) == 0:
                continue
            name = stratum_name(edges[b], edges[b + 1], linked)
            pick = rng.choice(at, min(per_stratum, len(at)), replace=False)
            strata[name] = {"population": float(len(at) * pop.scale), "enumerated": len(at),
                            "sampled": len(pick), "lo": edges[b], "hi": edges[b + 1],
                            "linked": linked,
                            "mean_probability": float(pop.prob[at].mean())}
            drawn = sorted(pick.tolist())
            pairs = [(index.uids[int(pop.left[k])], index.uids[int(pop.right[k])])
                     for k in drawn]
            if again:
                # The share of the stratum each threshold would link, and whether it
                # would link each drawn pair (their labels then say how often the pairs
                # a threshold links are matches).
                strata[name]["linked_at"] = {f"{t!r}": float(v[at].mean())
                                             for t, v in again.items()}
                strata[name]["drawn"] = [list(pair) for pair in pairs]
                strata[name]["drawn_linked_at"] = {
                    f"{t!r}": [bool(v[k]) for k in drawn] for t, v in again.items()}
            for k, (a, c) in zip(drawn, pairs, strict=True):
                p = float(pop.prob[k])
                cands.append(Candidate(SAMPLE, ["clerical_sample"], [a, c], 50.0, uid_a=a,
                                       uid_b=c, match_probability=p, sample_id=sample_id,
                                       stratum=name, linked_then=linked))
    store.add_review_sample(cur, sample_id, created_by, {
        "strata": strata, "records": pop.records, "records_sampled": pop.records_sampled,
        "match_threshold": match_threshold}, now=now)
    ids = new_items(cur, cands, created_by=sample_id, now=now)
    return SampleInfo(sample_id, len(ids), strata, pop.records, pop.records_sampled)


def last_sample(cur: Cursor) -> str | None:
    rows = query(cur, "SELECT sample_id FROM review_samples ORDER BY created_at DESC LIMIT 1")
    return rows[0][0] if rows else None


@dataclass
class Interval:
    estimate: float
    low: float
    high: float


@dataclass
class ThresholdChoice:
    """What linking at ``threshold`` would give, estimated from the sample."""

    threshold: float
    precision: Interval
    recall: Interval
    f1: Interval
    current: bool
    #: The posterior probability that F1 here beats F1 at the project's threshold.
    beats_current: float = 0.0


@dataclass
class Estimate:
    """Precision and recall of the register with 95 % intervals, and what they rest on."""

    sample_id: str
    precision: Interval
    recall: Interval
    labels: int
    matches: int
    unlabelled_strata: list[str]
    strata: dict[str, dict[str, float]] = field(default_factory=dict)
    #: F1 (with its interval) if pairs were linked at each threshold: :func:`thresholds`.
    by_threshold: list[ThresholdChoice] = field(default_factory=list)

    @property
    def suggested(self) -> ThresholdChoice | None:
        """The threshold with the highest estimated F1 (the Bayes choice under the
        sample's posterior; the project's own on a tie)."""
        if not self.by_threshold:
            return None
        return max(self.by_threshold, key=lambda c: (c.f1.estimate, c.current))

    @property
    def complete(self) -> bool:
        return not self.unlabelled_strata


def labelled_pairs(cur: Cursor, sample_id: str) -> dict[tuple[str, str, str], int]:
    """(stratum, lower uid, higher uid) -> the label of each decided item (its latest
    decision)."""
    rows = query(cur, """
        SELECT i.stratum, i.uid_a, i.uid_b, d.decision FROM review_items i
        JOIN (SELECT item_id, arg_max(decision, decided_at) AS decision
              FROM review_decisions GROUP BY item_id) d USING (item_id)
        WHERE i.sample_id = ?""", [sample_id])
    return {(st, min(a, b), max(a, b)): LABEL[dec] for st, a, b, dec in rows if dec in LABEL}


def _by_stratum(labelled: dict[tuple[str, str, str], int]) -> dict[str, list[int]]:
    """stratum -> the labels of its decided items."""
    out: dict[str, list[int]] = {}
    for (stratum, _, _), label in labelled.items():
        out.setdefault(stratum, []).append(label)
    return out


def _interval(x: np.ndarray) -> Interval:
    return Interval(float(np.median(x)), float(np.quantile(x, 0.025)),
                    float(np.quantile(x, 0.975)))


def thresholds(strata: dict[str, dict[str, Any]], draws: dict[str, np.ndarray],
               labelled: dict[tuple[str, str, str], int], match_threshold: float,
               rng: np.random.Generator) -> list[ThresholdChoice]:
    """Precision, recall and F1 if the register were clustered at each threshold the
    sample recorded (module docstring); none for a sample drawn without them.

    ``labelled``: (stratum, lower uid, higher uid) -> label. Within a stratum, the pairs a
    threshold would link are a cell of their own: ``share * N_h`` pairs, whose match
    rate comes from the labelled pairs that fall in it (with the stratum's model prior,
    as in :func:`estimate`).
    """
    total = sum(draws.values())
    shares = [s.get("linked_at") for s in strata.values()]
    if not shares or any(x is None for x in shares):
        return []
    edges = sorted({float(t) for x in shares for t in x})
    if not any(abs(t - match_threshold) < 1e-12 for t in edges):
        return []
    out = []
    f1s = []
    for t in edges:
        tp = np.zeros(DRAWS)
        n = 0.0
        key = f"{t!r}"
        for name, s in strata.items():
            cell = s["linked_at"][key] * s["population"]
            if cell <= 0:
                continue
            on = [labelled[(name, min(a, b), max(a, b))] for (a, b), hit in
                  zip(s["drawn"], s["drawn_linked_at"][key], strict=True)
                  if hit and (name, min(a, b), max(a, b)) in labelled]
            k_on, n_on = sum(on), len(on)
            m = min(max(s["mean_probability"], 1e-6), 1 - 1e-6)
            rate = rng.beta(k_on + PRIOR_STRENGTH * m, n_on - k_on + PRIOR_STRENGTH * (1 - m),
                            DRAWS)
            tp = tp + k_on + rate * max(cell - n_on, 0.0)
            n += cell
        precision = tp / n if n else np.ones(DRAWS)
        recall = np.divide(tp, total, out=np.ones(DRAWS), where=total > 0)
        f1 = np.divide(2 * tp, n + total, out=np.zeros(DRAWS), where=(n + total) > 0)
        f1s.append(f1)
        out.append(ThresholdChoice(float(t), _interval(precision), _interval(recall),
                                   _interval(f1), abs(t - match_threshold) < 1e-12))
    now = f1s[next(i for i, t in enumerate(edges) if abs(t - match_threshold) < 1e-12)]
    for c, f1 in zip(out, f1s, strict=True):
        # Joint draws: every threshold's F1 is computed from the same posterior draw.
        c.beats_current = 0.0 if c.current else float((f1 > now).mean())
    return out


def estimate(cur: Cursor, sample_id: str, *, seed: int = 0) -> Estimate:
    """Precision and recall from a sample's labels (see the module docstring), and F1 at
    each threshold the sample recorded (:func:`thresholds`)."""
    rows = query(cur, "SELECT strata_json FROM review_samples WHERE sample_id = ?", [sample_id])
    if not rows:
        raise NotFound(f"no clerical sample {sample_id!r}")
    info = json.loads(rows[0][0])
    strata = info["strata"]
    labelled = labelled_pairs(cur, sample_id)
    got = _by_stratum(labelled)
    rng = np.random.default_rng(seed)
    tp = np.zeros(DRAWS)
    linked_n = 0.0
    matches = np.zeros(DRAWS)
    unlabelled = []
    report = {}
    per_stratum: dict[str, np.ndarray] = {}
    for name, s in strata.items():
        lab = got.get(name, [])
        n, k = len(lab), sum(lab)
        if n == 0:
            unlabelled.append(name)
        m = min(max(s["mean_probability"], 1e-6), 1 - 1e-6)
        a, b = k + PRIOR_STRENGTH * m, n - k + PRIOR_STRENGTH * (1 - m)
        if s["linked"]:
            # A linked stratum's false links keep a floor of pseudo-labels: a model's
            # 0.9999 is not calibrated that far out (its fields are not independent), and
            # 20 labels with no error must leave room for a 1 % error rate. (Not for the
            # strata left apart: their millions of pairs would then be credited with
            # thousands of hidden matches.)
            b = max(b, n - k + MIN_PSEUDO)
        # The labelled pairs are known; the posterior speaks for the rest of the stratum
        # (a stratum labelled in full is exact).
        rest = max(s["population"] - n, 0.0)
        draws = k + rng.beta(a, b, DRAWS) * rest
        per_stratum[name] = draws
        matches += draws
        if s["linked"]:
            tp += draws
            linked_n += s["population"]
        report[name] = {**s, "labels": n, "matches": k}
    precision = tp / linked_n if linked_n else np.ones(DRAWS)
    recall = np.divide(tp, matches, out=np.ones(DRAWS), where=matches > 0)
    match_threshold = info.get("match_threshold")
    choices = [] if match_threshold is None else thresholds(
        strata, per_stratum, labelled, float(match_threshold), rng)
    n_labels = sum(len(v) for v in got.values())
    return Estimate(sample_id, _interval(precision), _interval(recall), n_labels,
                    sum(sum(v) for v in got.values()), unlabelled, report, choices)


def format_estimate(e: Estimate) -> str:
    lines = [f"clerical sample {e.sample_id}: {e.labels:,} labelled pairs, "
             f"{e.matches:,} of them the same person",
             f"precision {e.precision.estimate:.3f}  (95 % interval {e.precision.low:.3f} - "
             f"{e.precision.high:.3f}): of the compared pairs the register links, the share "
             "that are one person",
             f"recall    {e.recall.estimate:.3f}  (95 % interval {e.recall.low:.3f} - "
             f"{e.recall.high:.3f}): of the compared pairs that are one person, the share "
             "the register links"]
    if e.unlabelled_strata:
        lines.append(f"incomplete: {len(e.unlabelled_strata)} strata have no label yet "
                     f"({', '.join(e.unlabelled_strata[:4])}...): their model prior stands in")
    if e.by_threshold:
        lines += ["", "if the register were clustered at another match threshold (pairs "
                      "weighed one-to-one keep thresholds.one_to_one, up to that threshold):",
                  f"  {'threshold':>9}  {'precision':>9}  {'recall':>6}  {'F1':>5}  "
                  "F1 95 % interval"]
        for c in e.by_threshold:
            lines.append(f"  {c.threshold:>9g}  {c.precision.estimate:>9.3f}  "
                         f"{c.recall.estimate:>6.3f}  {c.f1.estimate:>5.3f}  "
                         f"{c.f1.low:.3f} - {c.f1.high:.3f}"
                         + ("   (the project's threshold)" if c.current else ""))
        best = e.suggested
        if best is not None and not best.current:
            lines.append(f"suggested: thresholds.match: {best.threshold:g} in the project "
                         f"file (estimated F1 {best.f1.estimate:.3f} against "
                         f"{next(c.f1.estimate for c in e.by_threshold if c.current):.3f}, "
                         f"better with probability {best.beats_current:.2f}); then "
                         "`linkage run` and a new sample to measure it")
    return "\n".join(lines)
