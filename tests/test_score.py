"""Tests for benchmarks.score: hand-computed pairwise and B-cubed examples."""

from __future__ import annotations

import csv
import json

import pytest

from benchmarks.score import main, score

# truth: person A has records a1 a2 a3, B has b1 b2, C has c1
TRUTH = {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B", "c1": "C"}


def test_perfect_prediction():
    m = score(dict(TRUTH), TRUTH)
    assert m["pairwise_precision"] == m["pairwise_recall"] == m["pairwise_f1"] == 1.0
    assert m["bcubed_precision"] == m["bcubed_recall"] == m["bcubed_f1"] == 1.0
    assert m["true_clusters"] == m["predicted_clusters"] == 3
    assert m["missing"] == m["unexpected"] == 0


def test_all_singletons_recall_zero():
    m = score({uid: uid for uid in TRUTH}, TRUTH)
    assert m["pairwise_recall"] == 0.0
    assert m["pairwise_precision"] == 1.0  # no predicted pairs, nothing wrong
    assert m["predicted_clusters"] == 6
    # B-cubed recall: a's 1/3 each, b's 1/2 each, c 1 -> (1 + 1 + 1) / 6
    assert m["bcubed_recall"] == pytest.approx(3 / 6)
    assert m["bcubed_precision"] == 1.0


def test_hand_computed_example():
    # predicted: {a1, a2}, {a3, b1, b2}, {c1}
    pred = {"a1": 1, "a2": 1, "a3": 2, "b1": 2, "b2": 2, "c1": 3}
    m = score(pred, TRUTH)
    # true pairs: A 3 + B 1 = 4; predicted pairs: 1 + 3 = 4; correct: a1a2, b1b2 = 2
    assert (m["true_pairs"], m["predicted_pairs"], m["true_positive_pairs"]) == (4, 4, 2)
    assert m["pairwise_precision"] == pytest.approx(0.5)
    assert m["pairwise_recall"] == pytest.approx(0.5)
    assert m["pairwise_f1"] == pytest.approx(0.5)
    # B-cubed precision per record: a1 1, a2 1, a3 1/3, b1 2/3, b2 2/3, c1 1 -> 14/3 / 6
    assert m["bcubed_precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3 + 1) / 6)
    # recall per record: a1 2/3, a2 2/3, a3 1/3, b1 1, b2 1, c1 1 -> 14/3 / 6
    assert m["bcubed_recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6)
    assert m["predicted_clusters"] == 3


def test_missing_records_are_singletons_and_unexpected_ignored():
    pred = {"a1": 1, "a2": 1, "b1": 2, "b2": 2, "c1": 3, "zz": 9}  # a3 missing
    m = score(pred, TRUTH)
    assert m["missing"] == 1 and m["unexpected"] == 1
    assert m["true_positive_pairs"] == 2  # a1a2, b1b2
    assert m["pairwise_precision"] == 1.0
    assert m["pairwise_recall"] == pytest.approx(2 / 4)
    assert m["predicted_clusters"] == 4  # {a1,a2} {b1,b2} {c1} {a3}


def test_household_merge_counter():
    truth = {"s1": "S1", "s2": "S2", "t1": "T1", "t1b": "T1", "u1": "U1", "v1": "V1"}
    households = {"S1": "H1", "S2": "H1", "T1": "H2", "U1": "H3", "V1": "H4"}
    # S1+S2 siblings merged; T1's two records correctly together; U1 + V1 merged (not same hh)
    pred = {"s1": "x", "s2": "x", "t1": "y", "t1b": "y", "u1": "z", "v1": "z"}
    m = score(pred, truth, households)
    assert m["household_merged_clusters"] == 1
    assert m["household_merged_persons"] == 2
    assert m["household_merged_persons_pct"] == pytest.approx(100 * 2 / 5)
    assert m["household_merged_clusters_pct"] == pytest.approx(100 / 3)
    assert score(pred, truth)["household_merged_clusters"] == 0  # no households given


def test_cli_excludes_bad_and_prints_json(tmp_path, capsys):
    truth = tmp_path / "truth.csv"
    with truth.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "record_key", "person_id", "household_id", "bad"])
        w.writerow(["cr", "1", "P1", "H1", "false"])
        w.writerow(["ct", "9", "P1", "H1", "false"])
        w.writerow(["ct", "10", "P2", "H1", "false"])
        w.writerow(["ct", "11", "P2", "H1", "true"])
    pred = tmp_path / "mapping.csv"
    with pred.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "record_key", "person_id"])
        w.writerows([["cr", "1", "X"], ["ct", "9", "X"], ["ct", "10", "X"], ["ct", "11", "Y"]])
    assert main(["--truth", str(truth), "--predicted", str(pred), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["records"] == 3 and m["bad"] == 1 and m["bad_accepted"] == 1
    assert m["pairwise_recall"] == 1.0
    assert m["pairwise_precision"] == pytest.approx(1 / 3)
    assert m["household_merged_persons"] == 2
    assert main(["--truth", str(truth), "--predicted", str(pred)]) == 0
    assert "B-cubed" in capsys.readouterr().out


def test_linear_scale():
    n = 199_998  # divisible by 6
    truth = {str(i): i // 3 for i in range(n)}
    pred = {str(i): i // 6 for i in range(n)}
    m = score(pred, truth)
    assert m["pairwise_recall"] == 1.0
    assert m["pairwise_precision"] == pytest.approx(2 * 3 / 15)  # per cluster 6 pairs of 15


def test_bad_records_accepted_are_counted_not_unexpected():
    pred = {**TRUTH, "bad1": "A", "zz": "Q"}
    m = score(pred, TRUTH, bad={"bad1", "bad2"})
    assert (m["bad"], m["bad_accepted"], m["unexpected"]) == (2, 1, 1)
    assert m["pairwise_f1"] == 1.0
