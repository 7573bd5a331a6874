"""Tests for persistent person IDs and their reconciliation (linkage.ids.reconcile)."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linkage.ids.reconcile import (
    ALPHABET,
    ConstraintConflict,
    Constraints,
    IdAllocator,
    IdState,
    ReconcileResult,
    apply_constraints,
    check_char,
    is_valid,
    new_id,
    normalise,
    reconcile,
    resolve,
)

T0 = datetime(2024, 1, 1, tzinfo=UTC)
ALLOC = IdAllocator(b"test-register-secret")


def run(state: IdState, clusters: dict, run_id: str = "r", **kw) -> ReconcileResult:
    return reconcile(state, clusters, allocator=ALLOC, run_id=run_id, now=T0, **kw)


def persons(state: IdState) -> dict[str, frozenset[str]]:
    """Live ID -> its records."""
    out: dict[str, set[str]] = defaultdict(set)
    for rec, pid in state.assignment.items():
        out[pid].add(rec)
    return {p: frozenset(r) for p, r in out.items()}


def pid_of(state: IdState, *recs: str) -> str:
    """The single ID holding exactly ``recs``."""
    pids = {state.assignment[r] for r in recs}
    assert len(pids) == 1, pids
    (pid,) = pids
    assert persons(state)[pid] == frozenset(recs)
    return pid


def kinds(res: ReconcileResult) -> list[tuple[str, str | None]]:
    """Person-level events (no per-record ones) as (kind, other)."""
    return [(e.kind, e.other_person_id) for e in res.events if e.record_key is None]


# ---------------------------------------------------------------------------------------
# Identifier format
# ---------------------------------------------------------------------------------------

SAMPLE = [new_id(b"sample", i) for i in range(300)]


def test_ids_are_well_formed_and_distinct() -> None:
    assert len(set(SAMPLE)) == len(SAMPLE)
    for pid in SAMPLE:
        assert len(pid) == 11 and pid.startswith("P-")
        assert set(pid[2:]) <= set(ALPHABET)
        assert is_valid(pid)
        assert check_char(pid[2:10]) == pid[10]


def test_check_char_catches_every_substitution_and_adjacent_transposition() -> None:
    for pid in SAMPLE:
        body = pid[2:]
        for i, c in enumerate(body):
            for s in ALPHABET:
                if s != c:
                    assert not is_valid("P-" + body[:i] + s + body[i + 1 :]), (pid, i, s)
        for i in range(len(body) - 1):
            a, b = body[i], body[i + 1]
            if a != b:
                assert not is_valid("P-" + body[:i] + b + a + body[i + 2 :]), (pid, i)


def test_generation_is_deterministic_and_keyed() -> None:
    assert new_id(b"k", 5) == new_id(b"k", 5)
    assert new_id(b"k", 5) != new_id(b"k", 6)
    assert new_id(b"k", 5) != new_id(b"other", 5)


def test_allocator_skips_issued_ids() -> None:
    first = new_id(ALLOC.secret, 0)
    pid, nxt = ALLOC.allocate(0, {first: 0})
    assert pid == new_id(ALLOC.secret, 1) and nxt == 2


def test_normalise_accepts_common_typing() -> None:
    for pid in SAMPLE[:50]:
        assert normalise(pid) == pid
        assert normalise(pid.lower()) == pid
        assert normalise(pid.replace("-", "")) == pid
        assert normalise(pid[2:]) == pid
        assert normalise(" " + pid[:6].lower() + " " + pid[6:] + " ") == pid
    with_confusable = next(p for p in SAMPLE if "0" in p[2:] and "1" in p[2:])
    typed = with_confusable.replace("0", "o").replace("1", "l")
    assert normalise(typed) == with_confusable
    assert normalise(with_confusable.replace("1", "I")) == with_confusable


@pytest.mark.parametrize("bad", ["", "P-", "P-123", "X-00000000", "hello world", "P-UUUUUUUUU"])
def test_normalise_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise(bad)
    assert not is_valid(bad)


def test_normalise_rejects_a_typo() -> None:
    pid = SAMPLE[0]
    wrong = pid[:4] + ("2" if pid[4] != "2" else "3") + pid[5:]
    with pytest.raises(ValueError):
        normalise(wrong)


# ---------------------------------------------------------------------------------------
# Scenarios, one per event kind
# ---------------------------------------------------------------------------------------


def test_created_for_new_clusters_in_key_order() -> None:
    res = run(IdState(), {"b:1": "x", "a:1": "y", "a:2": "y"})
    assert kinds(res) == [("created", None), ("created", None)]
    # IDs are allocated in order of the clusters' smallest record key.
    assert pid_of(res.state, "a:1", "a:2") == new_id(ALLOC.secret, 0)
    assert pid_of(res.state, "b:1") == new_id(ALLOC.secret, 1)
    added = [e.record_key for e in res.events if e.kind == "record_added"]
    assert sorted(added) == ["a:1", "a:2", "b:1"]
    assert all(e.run_id == "r" and e.at == T0 for e in res.events)


def test_unchanged_run_has_no_events() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 2}).state
    res = run(s1, {"a": "q", "b": "q", "c": "z"})
    assert res.events == []
    assert res.state.assignment == s1.assignment


def test_record_added_and_removed_keep_id() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1}).state
    p = pid_of(s1, "a", "b")
    res = run(s1, {"a": 1, "c": 1})
    assert pid_of(res.state, "a", "c") == p
    assert [(e.kind, e.person_id, e.record_key) for e in res.events] == [
        ("record_added", p, "c"),
        ("record_removed", p, "b"),
    ]
    assert res.events[1].cause == "vanished"


def test_merge_keeps_oldest_id() -> None:
    s1 = run(IdState(), {"a": 1, "z1": 2, "z2": 2}).state  # "a" is issued first
    old, young = pid_of(s1, "a"), pid_of(s1, "z1", "z2")
    res = run(s1, {"a": 0, "z1": 0, "z2": 0})
    assert pid_of(res.state, "a", "z1", "z2") == old  # oldest, although smaller
    assert kinds(res) == [("merged_into", old)]
    assert res.state.retired == {young: (old,)}
    assert resolve(res.state, young) == [old]


def test_split_largest_part_keeps_id() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 1}).state
    p = pid_of(s1, "a", "b", "c")
    res = run(s1, {"a": 1, "b": 2, "c": 2})
    assert pid_of(res.state, "b", "c") == p
    q = pid_of(res.state, "a")
    assert q not in s1.issued
    assert kinds(res) == [("split_from", p)]


def test_split_tie_broken_by_smallest_record_key() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 1, "d": 1}).state
    p = pid_of(s1, "a", "b", "c", "d")
    res = run(s1, {"c": 1, "d": 1, "a": 2, "b": 2})
    assert pid_of(res.state, "a", "b") == p


def test_retired_when_all_records_vanish() -> None:
    s1 = run(IdState(), {"a": 1, "b": 2}).state
    p = pid_of(s1, "b")
    res = run(s1, {"a": 1})
    assert kinds(res) == [("retired", None)]
    assert res.state.retired[p] == ()
    assert resolve(res.state, p) == []
    # The record comes back: the person comes back.
    res2 = run(res.state, {"a": 1, "b": 5})
    assert pid_of(res2.state, "b") == p
    assert kinds(res2) == [("restored", None)]


@pytest.mark.parametrize("absorbed_is_older", [False, True])
def test_merge_then_split_restores_original_persons(absorbed_is_older: bool) -> None:
    first = {"a1": "A", "a2": "A", "b1": "B"}
    if absorbed_is_older:  # make B the oldest so that B survives the merge
        first = {"a1": "A", "a2": "A", "0b": "B"}
    s1 = run(IdState(), first).state
    ka, kb = ("a1", "a2"), tuple(k for k in first if first[k] == "B")
    pa, pb = pid_of(s1, *ka), pid_of(s1, *kb)
    merged = run(s1, dict.fromkeys(first, "M"))
    survivor = pb if absorbed_is_older else pa
    loser = pa if absorbed_is_older else pb
    assert pid_of(merged.state, *first) == survivor
    assert merged.state.retired == {loser: (survivor,)}
    split = run(merged.state, first)
    assert pid_of(split.state, *ka) == pa
    assert pid_of(split.state, *kb) == pb
    assert kinds(split) == [("restored", survivor)]
    assert split.state.retired == {}
    assert split.state.next_seq == s1.next_seq  # no new ID was needed


def test_merge_with_extra_record_then_split_mostly_restores() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 2, "d": 2}).state
    p1, p2 = pid_of(s1, "a", "b"), pid_of(s1, "c", "d")
    s2 = run(s1, dict.fromkeys("abcd", 0)).state
    # Later the merge is undone and a new record joins the second person.
    res = run(s2, {"a": 1, "b": 1, "c": 2, "d": 2, "e": 2})
    assert pid_of(res.state, "a", "b") == p1
    assert pid_of(res.state, "c", "d", "e") == p2
    assert ("restored", p1) in kinds(res)


def test_combined_merge_and_split() -> None:
    # P = {a, b, c}, Q = {x}; new: {a, b, x} and {c}.
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 1, "x": 2}).state
    p, q = pid_of(s1, "a", "b", "c"), pid_of(s1, "x")
    res = run(s1, {"a": 1, "b": 1, "x": 1, "c": 2})
    assert pid_of(res.state, "a", "b", "x") == p  # largest overlap
    new = pid_of(res.state, "c")
    assert new not in s1.issued
    assert sorted(kinds(res)) == sorted([("split_from", p), ("merged_into", p)])
    assert res.state.retired == {q: (p,)}


def test_retired_into_several_successors() -> None:
    s1 = run(IdState(), {"a": 1, "b": 2, "c": 2, "d": 3, "e": 3}).state
    pa, pbc, pde = pid_of(s1, "a"), pid_of(s1, "b", "c"), pid_of(s1, "d", "e")
    # b joins a, c joins d-e: P(bc) has no cluster left where it can survive.
    res = run(s1, {"a": 1, "b": 1, "d": 3, "e": 3, "c": 3})
    assert pid_of(res.state, "a", "b") == pa
    assert pid_of(res.state, "c", "d", "e") == pde
    assert set(res.state.retired[pbc]) == {pa, pde}
    assert set(resolve(res.state, pbc)) == {pa, pde}


def test_resolve_follows_chains_and_rejects_unknown() -> None:
    s1 = run(IdState(), {"a": 1, "b": 2, "c": 3}).state
    pa, pb, pc = (pid_of(s1, k) for k in "abc")
    s2 = run(s1, {"a": 1, "b": 1, "c": 3}).state  # b -> a
    s3 = run(s2, {"a": 1, "b": 1, "c": 1, "d": 1}).state  # a+b -> a, c -> a
    assert resolve(s3, pb) == [pa] and resolve(s3, pc) == [pa] and resolve(s3, pa) == [pa]
    with pytest.raises(KeyError):
        resolve(s3, new_id(b"never", 0))


def test_bare_mapping_as_previous() -> None:
    res = run({"a": "P-OLD1", "b": "P-OLD1", "c": "P-OLD2"}, {"a": 1, "b": 1, "c": 1})
    assert pid_of(res.state, "a", "b", "c") == "P-OLD1"  # sorted IDs give issue order
    assert res.state.retired == {"P-OLD2": ("P-OLD1",)}


def test_events_replay_to_new_assignment() -> None:
    s1 = run(IdState(), {"a": 1, "b": 1, "c": 2, "d": 3}).state
    res = run(s1, {"a": 1, "c": 1, "d": 4, "e": 4, "f": 5})
    assert replay(s1.assignment, res) == res.state.assignment


# ---------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------


def test_apply_constraints_merge_and_split() -> None:
    got = apply_constraints({"a": 1, "b": 1, "c": 2}, [("b", "c")], [("a", "b")])
    assert got == {"a": "a", "b": "b", "c": "b"}
    assert apply_constraints({"a": 1, "b": 2}) == {"a": "a", "b": "b"}


def test_apply_constraints_uses_scores_for_free_records() -> None:
    clusters = dict.fromkeys("abcx", 0)
    scores = {("x", "b"): 0.9, ("a", "x"): 0.2}
    got = apply_constraints(clusters, [], [("a", "b")], scores=scores)
    assert got["x"] == got["b"] != got["a"]
    # Without scores free records go with the part holding the smallest seed.
    got = apply_constraints(clusters, [], [("a", "b")])
    assert got["x"] == got["c"] == got["a"] != got["b"]


def test_apply_constraints_splits_into_three_when_needed() -> None:
    cl = [("a", "b"), ("b", "c"), ("a", "c")]
    got = apply_constraints(dict.fromkeys("abc", 0), [], cl)
    assert len(set(got.values())) == 3


def test_contradictory_constraints_raise() -> None:
    with pytest.raises(ConstraintConflict):
        apply_constraints(dict.fromkeys("abc", 0), [("a", "b"), ("b", "c")], [("c", "a")])
    with pytest.raises(ConstraintConflict):
        run(IdState(), {"a": 0, "b": 1}, constraints=Constraints([("a", "b")], [("b", "a")]))


def test_constraints_hold_across_runs() -> None:
    c = Constraints(must_link=[("a", "z")], cannot_link=[("b", "c")])
    s = IdState()
    rng = random.Random(3)
    for i in range(6):
        clusters = {k: rng.randrange(3) for k in "abcdz"}
        clusters["b"] = clusters["c"] = 7  # the model keeps insisting b and c match
        s = run(s, clusters, run_id=f"r{i}", constraints=c).state
        assert s.assignment["a"] == s.assignment["z"]
        assert s.assignment["b"] != s.assignment["c"]


def test_constraints_ignore_vanished_records() -> None:
    c = Constraints(must_link=[("a", "gone")], cannot_link=[("a", "also-gone")])
    res = run(IdState(), {"a": 0, "b": 1}, constraints=c)
    assert len(persons(res.state)) == 2


# ---------------------------------------------------------------------------------------
# Properties over random sequences of runs
# ---------------------------------------------------------------------------------------


def replay(assignment: dict[str, str], res: ReconcileResult) -> dict[str, str]:
    out = dict(assignment)
    for e in res.events:
        if e.kind == "record_removed":
            assert out.pop(e.record_key) == e.person_id
        elif e.kind == "record_added":
            assert e.record_key not in out
            out[e.record_key] = e.person_id
    return out


def mutate(rng: random.Random, clusters: dict[str, int], fresh: list[int]) -> dict[str, int]:
    """Apply a few random merges, splits, additions and removals."""
    out = dict(clusters)
    for _ in range(rng.randint(0, 4)):
        labels = sorted(set(out.values()))
        op = rng.choice(["merge", "split", "add", "remove", "move"])
        if op == "merge" and len(labels) >= 2:
            a, b = rng.sample(labels, 2)
            out = {k: (a if v == b else v) for k, v in out.items()}
        elif op == "split" and labels:
            lab = rng.choice(labels)
            new = fresh.pop()
            for k, v in out.items():
                if v == lab and rng.random() < 0.5:
                    out[k] = new
        elif op == "add":
            fresh_key = f"s{rng.randint(0, 3)}:{rng.randint(0, 40)}"
            out[fresh_key] = rng.choice(labels + [fresh.pop()])
        elif op == "remove" and out:
            del out[rng.choice(sorted(out))]
        elif op == "move" and out and labels:
            out[rng.choice(sorted(out))] = rng.choice(labels)
    return out


def shuffled(d: dict, rng: random.Random) -> dict:
    items = list(d.items())
    rng.shuffle(items)
    return dict(items)


def shuffled_state(s: IdState, rng: random.Random) -> IdState:
    return IdState(
        shuffled(s.assignment, rng),
        shuffled(s.issued, rng),
        shuffled(s.retired, rng),
        shuffled(s.last_records, rng),
        s.next_seq,
    )


def check_invariants(prev: IdState, clusters: dict[str, int], res: ReconcileResult) -> None:
    new = res.state
    # IDs are never reused: the issued set only grows, keeping each ID's sequence number.
    assert all(new.issued.get(p) == n for p, n in prev.issued.items())
    for e in res.events:
        if e.kind in ("created", "split_from"):
            assert e.person_id not in prev.issued
        if e.kind == "restored":
            assert e.person_id in prev.retired
    # Every live record belongs to exactly one live person; live IDs all have records.
    assert new.assignment.keys() == clusters.keys()
    live = {p for p in new.issued if p not in new.retired}
    assert set(new.assignment.values()) == live
    assert new.retired.keys() == new.last_records.keys()
    # Persons are exactly the clusters (no constraints here).
    by_label: dict[int, set[str]] = defaultdict(set)
    for k, v in clusters.items():
        by_label[v].add(k)
    assert sorted(map(sorted, persons(new).values())) == sorted(map(sorted, by_label.values()))
    # Unchanged membership keeps its ID.
    old_persons = persons(prev)
    new_persons = persons(new)
    for pid, recs in old_persons.items():
        if recs in set(new_persons.values()):
            assert new_persons.get(pid) == recs
    # Retired IDs resolve to live persons; [] only for IDs retired with no successor.
    for r, succ in new.retired.items():
        got = resolve(new, r)
        assert all(p in live for p in got)
        assert len(got) == len(set(got))
        if succ == () and r not in prev.retired:
            assert not (new.last_records[r] & clusters.keys())  # its records all vanished
        if not got:
            chain, todo = set(), [r]
            while todo:
                x = todo.pop()
                chain.add(x)
                todo.extend(q for q in new.retired.get(x, ()) if q not in chain)
            assert any(new.retired[x] == () for x in chain)
    # The events explain the change.
    assert replay(prev.assignment, res) == new.assignment


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), runs=st.integers(3, 6), size=st.integers(1, 14))
def test_random_run_sequences_hold_invariants(seed: int, runs: int, size: int) -> None:
    rng = random.Random(seed)
    fresh = list(range(1000, 2000))
    clusters = {f"s{rng.randint(0, 3)}:{i}": rng.randrange(max(1, size // 2)) for i in range(size)}
    state = IdState()
    ever_issued: set[str] = set()
    for i in range(runs):
        res = run(state, clusters, run_id=f"r{i}")
        check_invariants(state, clusters, res)
        # Same inputs in another order give the same IDs and the same events.
        other = run(shuffled_state(state, rng), shuffled(clusters, rng), run_id=f"r{i}")
        assert other.state == res.state
        assert other.events == res.events
        assert ever_issued <= res.state.issued.keys()
        ever_issued |= res.state.issued.keys()
        state = res.state
        clusters = mutate(rng, clusters, fresh)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_merge_then_split_round_trip(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(rng.randint(2, 12))]
    first = {k: rng.randrange(4) for k in keys}
    s1 = run(IdState(), first).state
    labels = sorted(set(first.values()))
    merged = dict(first)
    group = rng.sample(labels, min(len(labels), rng.randint(2, 3)))
    for k, v in first.items():
        if v in group:
            merged[k] = -1
    s2 = run(s1, merged).state
    s3 = run(s2, first).state
    assert s3.assignment == s1.assignment
    assert s3.retired == {}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_constraints_respected_in_random_runs(seed: int) -> None:
    rng = random.Random(seed)
    keys = [f"k{i}" for i in range(8)]
    ml = [tuple(rng.sample(keys, 2)) for _ in range(rng.randint(0, 3))]
    cl = [tuple(rng.sample(keys, 2)) for _ in range(rng.randint(0, 3))]
    c = Constraints(ml, cl)
    state = IdState()
    for i in range(3):
        clusters = {k: rng.randrange(3) for k in keys if rng.random() < 0.9}
        try:
            res = run(state, clusters, run_id=f"r{i}", constraints=c)
        except ConstraintConflict:
            return
        # Order-free also with constraints (given in another order too).
        c_rev = Constraints(ml[::-1], [(y, x) for x, y in cl[::-1]])
        other = run(shuffled_state(state, rng), shuffled(clusters, rng), f"r{i}", constraints=c_rev)
        assert (other.state, other.events) == (res.state, res.events)
        a = res.state.assignment
        for x, y in ml:
            if x in a and y in a:
                assert a[x] == a[y]
        for x, y in cl:
            if x in a and y in a:
                assert a[x] != a[y]
        state = res.state
