"""The register's precision / recall estimate from a clerical sample, against the truth."""

from __future__ import annotations

import numpy as np
import pytest

from linkage.errors import NotFound
from linkage.register.database import Register
from linkage.review import accuracy
from linkage.review.core import Review
from linkage.review.evidence import Filters
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated


def test_estimate_from_a_labelled_sample_agrees_with_the_truth(rv_project: Generated) -> None:
    rv = Review(rv_project.project, Register.open(rv_project.project.register))
    try:
        with pytest.raises(NotFound):
            rv.estimate()
        truth = rv_project.truth
        index = rv.index()
        # The truth over the whole population: every compared pair of live records.
        pop = accuracy.enumerate_pairs(index, record_sample=10**9)
        same = np.array([truth[index.uids[a]] == truth[index.uids[b]]
                         for a, b in zip(pop.left.tolist(), pop.right.tolist(), strict=True)])
        tp = int((same & pop.linked).sum())
        true_precision, true_recall = tp / int(pop.linked.sum()), tp / int(same.sum())
        assert 0.5 < true_precision < 1 and 0.5 < true_recall < 1  # something to estimate

        info = rv.sample(per_stratum=20, seed=11, record_sample=10**9)
        assert info.records_sampled == info.records
        assert sum(s["population"] for s in info.strata.values()) == len(pop.left)
        assert any(not s["linked"] and s["hi"] <= 0.01 for s in info.strata.values())
        items, _, n = rv.list(Filters(kind="sample"), page_size=500)
        assert len(items) == n == info.items
        # The reviewer is the generator's truth.
        for it in items:
            rv.decide(it.item_id, "same" if truth[it.uid_a] == truth[it.uid_b] else "not_same",
                      reviewer="oracle")
        est = rv.estimate()
        assert est.complete and est.labels == len(items)
        p, r = est.precision, est.recall
        # (1e-9: when every unlabelled linked pair is a match, the truth is the interval's
        # upper end itself, computed the same way)
        assert p.low - 1e-9 <= true_precision <= p.high + 1e-9, (p, true_precision)
        assert r.low - 1e-9 <= true_recall <= r.high + 1e-9, (r, true_recall)
        # ... and the intervals say something.
        assert p.high - p.low < 0.15 and r.high - r.low < 0.2
        text = accuracy.format_estimate(est)
        assert "precision" in text and "95 % interval" in text
    finally:
        rv.register.close()


def test_record_sampling_estimates_the_population(rv_project: Generated) -> None:
    rv = Review(rv_project.project, Register.open(rv_project.project.register))
    try:
        index = rv.index()
        full = accuracy.enumerate_pairs(index, record_sample=10**9)
        half = accuracy.enumerate_pairs(index, record_sample=index.n // 2,
                                        rng=np.random.default_rng(5))
        assert half.scale == pytest.approx(2.0, rel=0.01)
        assert len(half.left) * half.scale == pytest.approx(len(full.left), rel=0.2)
        linked = half.linked.sum() * half.scale
        assert linked == pytest.approx(full.linked.sum(), rel=0.25)
    finally:
        rv.register.close()
