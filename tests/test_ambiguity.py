"""Ambiguity as evidence: a pair between two rosters listing each person once is re-weighed
by its records' other candidates (linkage.batch.ambiguity)."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from linkage.batch.ambiguity import MAX_OVERLAP, AmbiguityReport, adjust
from linkage.batch.clustering import cluster_records


def _table(pairs: list[tuple[str, str, float]]) -> pa.Table:
    w = [p[2] for p in pairs]
    return pa.table({"uid_l": [p[0] for p in pairs], "uid_r": [p[1] for p in pairs],
                     "match_probability": [1 / (1 + 2 ** -x) for x in w], "match_weight": w})


def _records(uids: list[str]) -> pa.Table:
    return pa.table({"uid": uids, "source": [u.split(":")[0] for u in uids]})


def _by_pair(out: pa.Table, column: str) -> dict[tuple[str, str], float]:
    return {(a, b): x for a, b, x in zip(out.column("uid_l").to_pylist(),
                                         out.column("uid_r").to_pylist(),
                                         out.column(column).to_pylist(), strict=True)}


def _bits(out: pa.Table) -> dict[tuple[str, str], float]:
    return _by_pair(out, "ambiguity_bits")


# Ten cash-transfer beneficiaries and ten civil-registry births: eight clear matches (so
# the two lists overlap a lot), one record with a single modest candidate, one with two.
UIDS = [f"cash:{i}" for i in range(10)] + [f"civil:{i}" for i in range(10)] + ["civil:x"]
CLEAR = [(f"cash:{i}", f"civil:{i}", 20.0) for i in range(8)]
PRIOR = 1e-3


def test_a_lone_candidate_rises_and_a_crowded_one_falls() -> None:
    links = _table([*CLEAR, ("cash:8", "civil:8", 1.0),
                    ("cash:9", "civil:9", 1.0), ("cash:9", "civil:x", 1.0)])
    out, report = adjust(links, _records(UIDS), PRIOR, 0.8)
    bits = _bits(out)
    lone, crowded = bits[("cash:8", "civil:8")], bits[("cash:9", "civil:9")]
    assert lone > 1.0  # alone, among lists that overlap by 80 %
    assert crowded < lone - 0.9  # the same fields, two candidates sharing one match
    assert crowded == pytest.approx(bits[("cash:9", "civil:x")])
    # One record, one match: two equal candidates are each at most even odds.
    probs = _by_pair(out, "match_probability")
    assert probs[("cash:9", "civil:9")] <= 0.5
    # The adjusted weight is the stored weight; the probability follows it.
    w = _by_pair(out, "match_weight")
    assert w[("cash:8", "civil:8")] == pytest.approx(1.0 + lone)
    p = out.column("match_probability").to_pylist()[8]
    assert p == pytest.approx(1 / (1 + 2 ** -(1.0 + lone)))
    assert report.overlap["cash -> civil"] == pytest.approx(0.9, abs=0.05)
    assert report.raised == 1 and report.pairs_adjusted == 11


def test_overlap_is_capped() -> None:
    links = _table([(f"cash:{i}", f"civil:{i}", 30.0) for i in range(10)])
    out, report = adjust(links, _records(UIDS), PRIOR, 0.8)
    assert max(report.overlap.values()) == MAX_OVERLAP or max(report.overlap.values()) < 1
    assert all(math.isfinite(x) for x in out.column("ambiguity_bits").to_pylist())


def test_same_source_pairs_and_files_of_duplicates_keep_their_weight() -> None:
    links = _table([*CLEAR, ("cash:8", "cash:9", 1.0), ("cash:8", "civil:8", 1.0)])
    out, _ = adjust(links, _records(UIDS), PRIOR, 0.8)
    assert _bits(out)[("cash:8", "cash:9")] == 0.0
    out, report = adjust(links, _records(UIDS), PRIOR, 0.8, duplicate_files=["cash"])
    assert set(_bits(out).values()) == {0.0} and report.pairs_adjusted == 0


def test_no_prior_no_change() -> None:
    links = _table([*CLEAR, ("cash:8", "civil:8", 1.0)])
    out, report = adjust(links, _records(UIDS), 0.0, 0.8)
    assert out.column("match_weight").to_pylist() == links.column("match_weight").to_pylist()
    assert report.pairs_adjusted == 0


def test_copies_in_one_roster_are_one_candidate_not_two() -> None:
    """A roster listing one person twice (an exact copy, a re-registration) gives the
    other roster's record one candidate, not two that share its one match."""
    links = _table([*CLEAR, ("cash:9", "civil:9", 1.0), ("cash:9", "civil:x", 1.0)])
    recs = _records(UIDS).append_column(
        "node", pa.array([i if u != "civil:x" else UIDS.index("civil:9")
                          for i, u in enumerate(UIDS)]))
    apart, _ = adjust(links, _records(UIDS), PRIOR, 0.8)
    together, _ = adjust(links, recs, PRIOR, 0.8)
    b_apart, b_together = _bits(apart), _bits(together)
    assert b_together[("cash:9", "civil:9")] > b_apart[("cash:9", "civil:9")] + 0.9
    assert b_together[("cash:9", "civil:9")] == pytest.approx(b_together[("cash:9", "civil:x")])
    assert _by_pair(together, "match_probability")[("cash:9", "civil:9")] > 0.5


def test_a_runs_prior_bits_reproduce_its_adjustment_on_a_piece_of_the_graph() -> None:
    """Real-time enrolment weighs a new record's candidates with the last run's prior per
    source pair (``bits_given_prior``): on the run's whole graph that gives the run's own
    bits, and on the piece around one record (its candidates and their other links) the
    same bits, the graph being a tree there."""
    import numpy as np

    from linkage.batch.ambiguity import bits_given_prior

    pairs = [*CLEAR, ("cash:8", "civil:8", 1.0), ("cash:9", "civil:9", 1.0),
             ("cash:9", "civil:x", 1.0), ("cash:9", "cash:8", 3.0)]
    links = _table(pairs)
    out, report = adjust(links, _records(UIDS), PRIOR, 0.8)
    assert set(report.prior_bits) == {"cash|civil"}
    want = _bits(out)
    node = {u: i for i, u in enumerate(UIDS)}

    def given(sub: list[tuple[str, str, float]]) -> dict[tuple[str, str], float]:
        bits = bits_given_prior(np.array([node[a] for a, _, _ in sub]),
                                np.array([node[b] for _, b, _ in sub]),
                                [a.split(":")[0] for a, _, _ in sub],
                                [b.split(":")[0] for _, b, _ in sub],
                                np.array([w for _, _, w in sub]), report.prior_bits)
        return {(a, b): x for (a, b, _), x in zip(sub, bits, strict=True)}

    whole = given(pairs)
    for pair, bits in want.items():
        assert whole[pair] == pytest.approx(bits, abs=1e-9), pair
    assert whole[("cash:9", "cash:8")] == 0.0  # one source: not weighed
    piece = given([("cash:9", "civil:9", 1.0), ("cash:9", "civil:x", 1.0)])
    assert piece[("cash:9", "civil:9")] == pytest.approx(want[("cash:9", "civil:9")])
    assert given([("cash:8", "civil:8", 1.0)])[("cash:8", "civil:8")] == pytest.approx(
        want[("cash:8", "civil:8")])
    # Without the run's prior for the source pair, nothing is weighed.
    assert set(bits_given_prior(np.array([0]), np.array([1]), ["cash"], ["civil"],
                                np.array([1.0]), {})) == {0.0}


def test_the_pairs_weighed_one_to_one_are_linked_from_their_own_threshold() -> None:
    """A weighed pair is marked ``one_to_one``; clustering links it from
    ``one_to_one_threshold``, every other pair from the match threshold."""
    def weighed(w: float) -> tuple[pa.Table, AmbiguityReport]:
        links = _table([*CLEAR, ("cash:8", "civil:8", w), ("cash:8", "cash:9", 1.0)])
        return adjust(links, _records(UIDS), PRIOR, 0.8, one_to_one_match=0.5)

    # A lone pair gains its source pair's prior bits: a pairwise weight that lands it
    # at odds of 2 (p = 2/3) once weighed.
    _, first = weighed(-10.0)
    out, report = weighed(1.0 - first.prior_bits["cash|civil"])
    one = _by_pair(out, "one_to_one")
    assert one[("cash:8", "civil:8")] and not one[("cash:8", "cash:9")]
    p = _by_pair(out, "match_probability")[("cash:8", "civil:8")]
    assert 0.5 <= p < 0.8  # raised by its lack of competitors, not to the match threshold
    assert report.raised == 1  # linked at its own threshold, not pairwise

    # The same probability on a pair the step did not weigh (a file of duplicates, a
    # pair within one source): the match threshold.
    records = pa.table({"uid": ["a:1", "b:1", "c:2", "d:2"], "source": ["a", "b", "c", "d"],
                        "national_id": [None] * 4, "household_id": [None] * 4},
                       schema=pa.schema([("uid", pa.string()), ("source", pa.string()),
                                         ("national_id", pa.string()),
                                         ("household_id", pa.string())]))
    both = pa.table({"uid_l": ["a:1", "c:2"], "uid_r": ["b:1", "d:2"],
                     "match_probability": [p, p], "match_weight": [math.log2(p / (1 - p))] * 2,
                     "one_to_one": [True, False]})

    def together(one_to_one_threshold: float | None) -> list[bool]:
        c = cluster_records(records, both, 0.8,
                            one_to_one_threshold=one_to_one_threshold).clusters
        return [c["a:1"] == c["b:1"], c["c:2"] == c["d:2"]]

    assert together(0.5) == [True, False]
    assert together(None) == [False, False]  # without one: the match threshold for all
    assert together(0.9) == [False, False]  # never above the match threshold
