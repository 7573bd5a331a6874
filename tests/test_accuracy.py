"""The register's precision / recall estimate from a clerical sample, against the truth."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from linkage.config import load_project
from linkage.errors import NotFound
from linkage.register.database import Register
from linkage.review import accuracy
from linkage.review.core import Review
from linkage.review.evidence import Filters
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated, read_truth


@dataclass
class _Truth:
    """The truth over the whole population of the template register: every compared pair
    of live records, and every pair of one cluster at any of the thresholds the sample is
    clustered at (the same for every sample: each is drawn on a fresh copy)."""

    thresholds: list[float]
    population: int
    same: np.ndarray
    again: dict[float, np.ndarray]
    precision: float
    recall: float


def _truth(root: Path) -> _Truth:
    g = Generated(root, load_project(root / "project.yaml"), read_truth(root))
    rv = Review(g.project, Register.open(g.project.register, read_only=True))
    try:
        index = rv.index()
        match, review = g.project.thresholds.match, g.project.thresholds.review
        thresholds = accuracy.threshold_choices(match, review)
        cur = rv.register.cursor()
        try:
            # One-to-one links keep their own threshold, as the sample clusters them.
            labels = accuracy.cluster_labels(cur, index, thresholds,
                                             (review, g.project.thresholds.one_to_one))
        finally:
            cur.close()
    finally:
        rv.register.close()
    pop = accuracy.enumerate_pairs(index, record_sample=10**9,
                                   groups=list(labels.values()))
    same = np.array([g.truth[index.uids[a]] == g.truth[index.uids[b]]
                     for a, b in zip(pop.left.tolist(), pop.right.tolist(), strict=True)])
    tp = int((same & pop.linked).sum())
    return _Truth(thresholds, len(pop.left), same, accuracy.linked_at(labels, pop),
                  tp / int(pop.linked.sum()), tp / int(same.sum()))


def _estimate(root: Path, seed: int, t: _Truth) -> Any:
    """The estimate of one clerical sample on a fresh copy, checked against the truth."""
    g = Generated(root, load_project(root / "project.yaml"), read_truth(root))
    rv = Review(g.project, Register.open(g.project.register))
    try:
        with pytest.raises(NotFound):
            rv.estimate()
        truth = g.truth
        match, review = g.project.thresholds.match, g.project.thresholds.review
        assert 0.5 < t.precision < 1 and 0.5 < t.recall < 1  # something to estimate

        info = rv.sample(per_stratum=20, seed=seed, record_sample=10**9)
        assert t.thresholds == sorted({float(x) for s in info.strata.values()
                                       for x in s["linked_at"]})
        assert info.records_sampled == info.records
        assert sum(s["population"] for s in info.strata.values()) == t.population
        assert any(not s["linked"] and s["hi"] <= 0.01 for s in info.strata.values())
        items, _, n = rv.list(Filters(kind="sample"), page_size=500)
        assert len(items) == n == info.items
        # The reviewer is the generator's truth.
        for it in items:
            rv.decide(it.item_id, "same" if truth[it.uid_a] == truth[it.uid_b] else "not_same",
                      reviewer="oracle")
        est = rv.estimate()
        assert est.complete and est.labels == len(items)
        text = accuracy.format_estimate(est)
        assert "precision" in text and "95 % interval" in text
        # F1 at other thresholds, against the truth of clustering the register so.
        assert [c.threshold for c in est.by_threshold if c.current] == [match]
        assert min(c.threshold for c in est.by_threshold) >= review
        assert len(est.by_threshold) >= 3
        assert [c.threshold for c in est.by_threshold] == t.thresholds
        for c in est.by_threshold:
            at = t.again[c.threshold]
            true_f1 = 2 * int((t.same & at).sum()) / (int(at.sum()) + int(t.same.sum()))
            assert abs(c.f1.estimate - true_f1) < 0.05, (c.threshold, c.f1, true_f1)
        assert "the project's threshold" in text
        if seed == 11:  # the run report shows the same table, in both its languages
            from linkage.report.data import collect
            from linkage.report.html import render

            cur = rv.register.cursor()
            try:
                data = collect(cur, g.project, rv.index())
            finally:
                cur.close()
            best = est.suggested
            for lang, words in (("en", "Suggested: "), ("fr", "Suggéré : ")):
                page = render(data, lang=lang, embed_scripts=False)
                assert f"{words}{best.threshold:g}, " in page
                assert f"{est.by_threshold[-1].f1.estimate:.3f}" in page
        return est
    finally:
        rv.register.close()


def test_estimate_from_a_labelled_sample_agrees_with_the_truth(rv_template: Path,
                                                               tmp_path: Path) -> None:
    """Five clerical samples of 20 pairs per stratum, each on a fresh copy of the register
    (decisions change it): a 95 % interval may miss the truth in one draw, not in most,
    and every estimate is close to the truth and says something."""
    covered = {"precision": 0, "recall": 0}
    t = _truth(rv_template)
    for seed in range(11, 16):
        root = tmp_path / f"s{seed}"
        shutil.copytree(rv_template, root)
        est = _estimate(root, seed, t)
        for name, p, true in (("precision", est.precision, t.precision),
                              ("recall", est.recall, t.recall)):
            # (1e-9: when every unlabelled linked pair is a match, the truth is the
            # interval's upper end itself, computed the same way)
            covered[name] += p.low - 1e-9 <= true <= p.high + 1e-9
            assert abs(p.estimate - true) < 0.05, (name, p, true)
        assert est.precision.high - est.precision.low < 0.15
        assert est.recall.high - est.recall.low < 0.2
    assert covered["precision"] >= 3 and covered["recall"] >= 3, covered


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
