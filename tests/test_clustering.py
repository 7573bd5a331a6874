"""Clustering that does not chain (linkage.batch.clustering): small hand-written registers."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pyarrow as pa
import pytest

from linkage.batch.clustering import (
    DEFAULT_RULES,
    STRONG_DIRECT_WEIGHT,
    Rules,
    _components,
    cluster_pairs,
    cluster_records,
    cluster_run,
)
from linkage.batch.pipeline import format_summary, run
from linkage.config import ConfigError, load_project
from linkage.ids.reconcile import Constraints
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.register.database import Register
from linkage.synthetic.generate import generate


def w(p: float) -> float:
    """The match weight (log2 Bayes factor, prior included) of a match probability."""
    return math.log2(p / (1 - p))


def together(result, a: str, b: str) -> bool:
    return result.clusters[a] == result.clusters[b]


def groups(clusters: dict[str, str]) -> set[frozenset[str]]:
    out: dict[str, set[str]] = {}
    for uid, label in clusters.items():
        out.setdefault(label, set()).add(uid)
    return {frozenset(g) for g in out.values()}


# -- the rules ----------------------------------------------------------------------------


def test_weak_chain_does_not_merge_two_namesakes_of_one_roster() -> None:
    # Two "Mamadou Traoré" of the cash-transfer roster, each weakly like one civil-registry
    # Mamadou Traoré: components would make one person of all three.
    uids = ["ct:A", "cr:B", "ct:C"]
    r = cluster_pairs(uids, ["ct", "cr", "ct"],
                      [("ct:A", "cr:B", w(0.85)), ("cr:B", "ct:C", w(0.82))],
                      civil_sources=["cr"])
    assert together(r, "ct:A", "cr:B")  # the stronger link wins
    assert not together(r, "ct:A", "ct:C")
    assert r.clusters["ct:C"] == "ct:C"
    assert r.refused == {"same_source": 1}


def test_weak_chain_across_sources_stops_at_conflicting_national_ids() -> None:
    # A and C are in different rosters but carry different national IDs.
    uids = ["ct:A", "pw:B", "nu:C"]
    r = cluster_pairs(uids, ["ct", "pw", "nu"],
                      [("ct:A", "pw:B", w(0.9)), ("pw:B", "nu:C", w(0.85))],
                      national_ids=["11122233344455A", None, "98765432101234Z"])
    assert together(r, "ct:A", "pw:B") and not together(r, "pw:B", "nu:C")
    assert r.refused == {"national_id": 1}


def test_two_records_of_one_roster_with_a_direct_strong_link_merge() -> None:
    r = cluster_pairs(["pw:1", "pw:2"], ["pw", "pw"], [("pw:1", "pw:2", w(0.99))])
    assert together(r, "pw:1", "pw:2")
    assert r.refused == {}


def test_two_records_of_one_roster_linked_only_through_a_third_do_not_merge() -> None:
    uids = ["pw:1", "cr:9", "pw:2"]
    r = cluster_pairs(uids, ["pw", "cr", "pw"],
                      [("pw:1", "cr:9", w(0.999)), ("cr:9", "pw:2", w(0.999))],
                      civil_sources=["cr"])
    assert not together(r, "pw:1", "pw:2")
    assert r.refused == {"same_source": 1}
    # ... and with their own strong link too, the three are one person.
    r = cluster_pairs(uids, ["pw", "cr", "pw"],
                      [("pw:1", "cr:9", w(0.999)), ("cr:9", "pw:2", w(0.999)),
                       ("pw:1", "pw:2", w(0.99))], civil_sources=["cr"])
    assert len(set(r.clusters.values())) == 1


def test_a_weak_direct_link_inside_one_roster_is_not_enough() -> None:
    # Inside one roster the bar is the rule's weight (4 bits, p ~ 0.94), not the threshold.
    uids = ["pw:1", "pw:2"]
    weak = cluster_pairs(uids, ["pw", "pw"], [("pw:1", "pw:2", w(0.85))])
    assert not together(weak, "pw:1", "pw:2") and weak.refused == {"same_source": 1}
    lax = cluster_pairs(uids, ["pw", "pw"], [("pw:1", "pw:2", w(0.85))],
                        rules=Rules(same_source_weight=None))
    assert together(lax, "pw:1", "pw:2")


def test_two_different_national_ids_never_share_a_cluster() -> None:
    uids = ["cr:1", "ct:1", "pw:1", "nu:1"]
    nids = ["11122233344455A", None, "55544433322211B", None]
    pairs = [(a, b, w(0.9999)) for i, a in enumerate(uids) for b in uids[i + 1:]]
    r = cluster_pairs(uids, ["cr", "ct", "pw", "nu"], pairs, national_ids=nids,
                      civil_sources=["cr"])
    assert not together(r, "cr:1", "pw:1")
    assert r.refused.get("national_id", 0) >= 1
    # directly linked at p = 0.9999, the two IDs still keep their records apart
    r = cluster_pairs(["cr:1", "pw:1"], ["cr", "pw"], [("cr:1", "pw:1", w(0.9999))],
                      national_ids=["11122233344455A", "55544433322211B"])
    assert not together(r, "cr:1", "pw:1")


def test_one_transposition_in_a_national_id_is_a_typo_not_a_conflict() -> None:
    nids = ["61721076301143K", "61721076031143K"]  # two digits swapped
    r = cluster_pairs(["cr:1", "ct:1"], ["cr", "ct"], [("cr:1", "ct:1", w(0.99))],
                      national_ids=nids)
    assert together(r, "cr:1", "ct:1")
    strict = cluster_pairs(["cr:1", "ct:1"], ["cr", "ct"], [("cr:1", "ct:1", w(0.99))],
                           national_ids=nids, rules=Rules(national_id_typos=False))
    assert not together(strict, "cr:1", "ct:1")


def test_two_civil_registry_births_split() -> None:
    r = cluster_pairs(["cr:1", "cr:2", "ct:1"], ["cr", "cr", "ct"],
                      [("cr:1", "ct:1", w(0.99)), ("cr:2", "ct:1", w(0.98)),
                       ("cr:1", "cr:2", w(0.97))], civil_sources=["cr"])
    assert not together(r, "cr:1", "cr:2")
    assert together(r, "cr:1", "ct:1")
    assert r.refused == {"civil_registry": 2}


def test_cannot_link_keeps_two_records_apart_even_at_p_099() -> None:
    cl = Constraints(cannot_link=[("ct:1", "pw:1")])
    r = cluster_pairs(["ct:1", "pw:1"], ["ct", "pw"], [("ct:1", "pw:1", w(0.99))],
                      constraints=cl)
    assert not together(r, "ct:1", "pw:1")
    assert r.refused == {"cannot_link": 1}
    # ... nor through a third record
    r = cluster_pairs(["ct:1", "nu:1", "pw:1"], ["ct", "nu", "pw"],
                      [("ct:1", "nu:1", w(0.999)), ("nu:1", "pw:1", w(0.99))],
                      constraints=cl)
    assert not together(r, "ct:1", "pw:1") and together(r, "ct:1", "nu:1")


def test_must_link_joins() -> None:
    ml = Constraints(must_link=[("ct:1", "pw:7")])
    r = cluster_pairs(["ct:1", "pw:7", "nu:3"], ["ct", "pw", "nu"],
                      [("pw:7", "nu:3", w(0.95))], constraints=ml)
    assert len(set(r.clusters.values())) == 1
    # a reviewer's "same person" wins over the rules (two records of one roster here)
    ml = Constraints(must_link=[("ct:1", "ct:2")])
    r = cluster_pairs(["ct:1", "ct:2"], ["ct", "ct"], [], constraints=ml)
    assert together(r, "ct:1", "ct:2")


def test_twins_of_one_household_stay_apart() -> None:
    # Twins: same household, same family name, same birth date, same village and phone;
    # their direct link is strong, and so are their links to a civil-registry record.
    uids = ["ct:1", "ct:2", "cr:5"]
    r = cluster_pairs(uids, ["ct", "ct", "cr"],
                      [("ct:1", "ct:2", w(0.995)), ("ct:1", "cr:5", w(0.99)),
                       ("ct:2", "cr:5", w(0.9))],
                      household_ids=["ct:M000123", "ct:M000123", None], civil_sources=["cr"])
    assert not together(r, "ct:1", "ct:2")
    assert together(r, "ct:1", "cr:5")  # the stronger one keeps the birth record
    assert r.refused == {"household": 2}


def test_household_rule_can_be_lifted_by_overwhelming_direct_evidence() -> None:
    # An option, not the default: a re-listing of one person inside one household.
    rules = Rules(same_source_weight=4.0, household_weight=8.0)
    pair = [("ct:1", "ct:2", w(0.999))]  # ~10 bits
    hh = ["ct:M1", "ct:M1"]
    assert together(cluster_pairs(["ct:1", "ct:2"], ["ct", "ct"], pair, household_ids=hh,
                                  rules=rules), "ct:1", "ct:2")
    assert not together(cluster_pairs(["ct:1", "ct:2"], ["ct", "ct"], pair,
                                      household_ids=hh), "ct:1", "ct:2")


def test_cohesion_floor_refuses_a_loosely_held_merge() -> None:
    # {a, b} strongly linked; c links to b only: its average to {a, b} is 0.45.
    uids = ["x:a", "y:b", "z:c"]
    pairs = [("x:a", "y:b", w(0.99)), ("y:b", "z:c", w(0.9))]
    scored = [("x:a", "y:b", 0.99), ("y:b", "z:c", 0.9)]
    loose = cluster_pairs(uids, ["x", "y", "z"], pairs, scored=scored)
    assert len(set(loose.clusters.values())) == 1
    floor = cluster_pairs(uids, ["x", "y", "z"], pairs, scored=scored,
                          rules=Rules(min_cohesion=0.5))
    assert not together(floor, "y:b", "z:c") and floor.refused == {"cohesion": 1}


# -- properties ---------------------------------------------------------------------------


def _random_register(rng: random.Random, n: int) -> tuple[list[str], list[str], list]:
    uids = [f"s{rng.randrange(4)}:{i}" for i in range(n)]
    sources = [u.split(":")[0] for u in uids]
    pairs = []
    for _ in range(2 * n):
        a, b = rng.sample(uids, 2)
        pairs.append((a, b, rng.uniform(2, 20)))
    return uids, sources, pairs


def test_without_forbidden_pairs_greedy_is_connected_components() -> None:
    rng = random.Random(5)
    uids, _, pairs = _random_register(rng, 300)
    lax = Rules(same_source_weight=None)
    # every record its own source: nothing is ever forbidden
    r = cluster_pairs(uids, uids, pairs, rules=lax)
    index = {u: i for i, u in enumerate(uids)}
    import numpy as np

    comp = _components(len(uids), np.array([index[a] for a, _, _ in pairs]),
                       np.array([index[b] for _, b, _ in pairs]))
    expected: dict[int, set[str]] = {}
    for u, c in zip(uids, comp.tolist(), strict=True):
        expected.setdefault(c, set()).add(u)
    assert groups(r.clusters) == {frozenset(g) for g in expected.values()}
    assert r.refused == {}


def test_result_does_not_depend_on_input_order() -> None:
    rng = random.Random(11)
    uids, sources, pairs = _random_register(rng, 400)
    nids = [rng.choice([None, None, "A1", "B2", "C3"]) for _ in uids]
    hh = [f"{s}:h{rng.randrange(30)}" if rng.random() < 0.5 else None
          for s in sources]
    first = cluster_pairs(uids, sources, pairs, national_ids=nids, household_ids=hh,
                          civil_sources=["s0"])
    order = list(range(len(uids)))
    rng.shuffle(order)
    shuffled = list(pairs)
    rng.shuffle(shuffled)
    second = cluster_pairs([uids[i] for i in order], [sources[i] for i in order],
                           [(b, a, x) for a, b, x in shuffled],
                           national_ids=[nids[i] for i in order],
                           household_ids=[hh[i] for i in order], civil_sources=["s0"])
    assert first.clusters == second.clusters  # labels too: the smallest uid
    assert first.refused == second.refused
    # no cluster holds a forbidden pair: two civil-registry records or two members of one
    # household only through their own strong direct link
    direct = {frozenset((a, b)): x for a, b, x in pairs}
    for g in groups(first.clusters):
        members = [uids.index(u) for u in g]
        assert len({nids[i] for i in members if nids[i]}) <= 1
        for i in members:
            for j in members:
                if i < j and (sources[i] == sources[j] == "s0"
                              or (hh[i] is not None and hh[i] == hh[j])):
                    assert direct.get(frozenset((uids[i], uids[j])), -99) \
                        >= STRONG_DIRECT_WEIGHT
    assert first.refused.get("civil_registry", 0) and first.refused.get("household", 0)


def test_arrow_entry_point_ignores_pairs_below_threshold_and_unknown_records() -> None:
    records = pa.table({"uid": ["b:1", "a:1", "a:2"], "source": ["b", "a", "a"],
                        "national_id": [None, None, None],
                        "household_id": [None, None, None]})
    links = pa.table({"uid_l": ["a:1", "a:2", "a:1"], "uid_r": ["b:1", "b:1", "zz:9"],
                      "match_probability": [0.95, 0.5, 0.99],
                      "match_weight": [w(0.95), w(0.5), w(0.99)]})
    r = cluster_records(records, links, 0.8)
    assert r.clusters == {"a:1": "a:1", "b:1": "a:1", "a:2": "a:2"}
    empty = cluster_records(records, links.slice(0, 0), 0.8)
    assert empty.clusters == {"a:1": "a:1", "a:2": "a:2", "b:1": "b:1"}


def test_default_rules_are_the_documented_ones() -> None:
    assert DEFAULT_RULES.household_weight == STRONG_DIRECT_WEIGHT == 12.0
    assert DEFAULT_RULES.civil_registry_weight == STRONG_DIRECT_WEIGHT
    assert DEFAULT_RULES.national_id_typos and DEFAULT_RULES.min_cohesion is None


# -- in the batch -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clu")
    generate(persons=600, profile="sahel", seed=3, out=out,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    return out


def _set_clustering(project_dir: Path, value: str, ambiguity: bool = True) -> None:
    path = project_dir / "project.yaml"
    lines = [x for x in path.read_text().splitlines()
             if not x.startswith(("clustering:", "ambiguity:"))]
    path.write_text("\n".join([*lines, f"clustering: {value}",
                               f"ambiguity: {str(ambiguity).lower()}"]) + "\n")


def test_project_setting_is_validated(project_dir: Path) -> None:
    _set_clustering(project_dir, "louvain")
    with pytest.raises(ConfigError, match="clustering"):
        load_project(project_dir / "project.yaml")
    _set_clustering(project_dir, "components")
    assert load_project(project_dir / "project.yaml").clustering == "components"


def test_batch_runs_both_methods_and_reports_refused_merges(project_dir: Path) -> None:
    _set_clustering(project_dir, "components")
    project = load_project(project_dir / "project.yaml")
    comp = run(project, progress=lambda _: None)
    assert comp.summary["clustering"] == "components"
    # On the same pairwise links (ambiguity off), greedy only ever splits what
    # components join.
    _set_clustering(project_dir, "greedy", ambiguity=False)
    project = load_project(project_dir / "project.yaml")
    greedy = run(project, progress=lambda _: None)
    assert greedy.summary["clustering"] == "greedy"
    refused = greedy.summary["refused_merges"]
    assert isinstance(refused, dict) and sum(refused.values()) > 0
    assert "merges refused" in format_summary(greedy.summary)
    assert greedy.summary["persons"] >= comp.summary["persons"]
    assert greedy.summary["ambiguity"] is None
    _set_clustering(project_dir, "greedy")
    project = load_project(project_dir / "project.yaml")
    greedy = run(project, progress=lambda _: None)
    assert greedy.summary["ambiguity"]["pairs_adjusted"] > 0
    refused = greedy.summary["refused_merges"]

    # A reviewer's cannot-link between two records of one published person is honoured
    # by the clustering itself (before persistent IDs are reconciled).
    reg = Register.open(project.register)
    try:
        cur = reg.cursor()
        ((a, b),) = cur.execute("""
            SELECT min(uid), max(uid) FROM person_records GROUP BY person_id
            HAVING count(*) = 2 ORDER BY 1 LIMIT 1""").fetchall()
        links = cur.sql("SELECT uid_l, uid_r, match_probability, match_weight "
                        "FROM links").to_arrow_table()
        assert cluster_run(cur, links, project.thresholds.match).clusters[a] == \
            cluster_run(cur, links, project.thresholds.match).clusters[b]
        cur.execute("INSERT INTO constraints (uid_a, uid_b, kind) VALUES (?, ?, "
                    "'cannot_link')", [a, b])
        res = cluster_run(cur, links, project.thresholds.match)
        assert res.clusters[a] != res.clusters[b]
        assert res.refused.get("cannot_link", 0) >= 1
        ((summary,),) = cur.execute("SELECT summary FROM runs WHERE status = 'published' "
                                    "ORDER BY finished_at DESC LIMIT 1").fetchall()
        assert json.loads(summary)["refused_merges"] == refused
    finally:
        reg.close()


def _file_of_duplicates(people: int, extra_roster: bool = False) -> tuple[list, list, list]:
    """One source, each person an original and two copies; the copies are linked to the
    original strongly and to each other not at all (each copy corrupted differently)."""
    uids, sources, pairs = [], [], []
    for i in range(people):
        o, c1, c2 = f"f:{i}o", f"f:{i}c1", f"f:{i}c2"
        uids += [o, c1, c2]
        sources += ["f", "f", "f"]
        pairs += [(o, c1, w(0.9999)), (o, c2, w(0.9999))]
    return uids, sources, pairs


def test_a_file_of_duplicates_chains_its_copies_through_the_original() -> None:
    uids, sources, pairs = _file_of_duplicates(10)
    r = cluster_pairs(uids, sources, pairs)
    assert all(together(r, f"f:{i}c1", f"f:{i}c2") for i in range(10))
    assert not r.refused
    assert r.stats["dedupe_sources"] == ["f"]
    # with the rule kept whatever the source, the copies stay apart (the old behaviour)
    kept = cluster_pairs(uids, sources, pairs,
                         rules=Rules(same_source_weight=4.0, dedupe_source_share=None))
    assert not any(together(kept, f"f:{i}c1", f"f:{i}c2") for i in range(10))


def test_a_roster_with_few_duplicates_of_its_own_keeps_the_same_source_rule() -> None:
    # 50 roster records, one chain through a civil-registry record: 2 of 50 records are
    # linked inside the roster, far below a fifth.
    uids = [f"pw:{i}" for i in range(50)] + ["cr:1"]
    sources = ["pw"] * 50 + ["cr"]
    pairs = [("pw:0", "cr:1", w(0.999)), ("cr:1", "pw:1", w(0.999))]
    r = cluster_pairs(uids, sources, pairs, civil_sources=["cr"])
    assert not together(r, "pw:0", "pw:1")
    assert r.stats["dedupe_sources"] == []


def test_optional_witness_and_mistyped_id_rules() -> None:
    uids, sources, pairs = _file_of_duplicates(1)
    # witnessed: both copies strongly linked to the original
    witnessed = Rules(same_source_weight=4.0, same_source_witness_weight=6.0)
    assert together(cluster_pairs(uids, sources, pairs, rules=witnessed), "f:0c1", "f:0c2")
    weak = [(a, b, 5.0) for a, b, _ in pairs]  # 5 bits: below the witness bar
    assert not together(cluster_pairs(uids, sources, weak, rules=witnessed), "f:0c1", "f:0c2")
    # two IDs far apart: absolute by default, lifted by a strong own link when asked
    ids = ["AB123456789", "ZZ987654321"]
    strong = [("cr:1", "ct:1", 12.0)]
    assert not together(cluster_pairs(["cr:1", "ct:1"], ["cr", "ct"], strong,
                                      national_ids=ids), "cr:1", "ct:1")
    lifted = Rules(same_source_weight=4.0, national_id_weight=10.0)
    assert together(cluster_pairs(["cr:1", "ct:1"], ["cr", "ct"], strong, national_ids=ids,
                                  rules=lifted), "cr:1", "ct:1")
    assert not together(cluster_pairs(["cr:1", "ct:1"], ["cr", "ct"], [("cr:1", "ct:1", 8.0)],
                                      national_ids=ids, rules=lifted), "cr:1", "ct:1")


def test_an_exact_copy_under_a_new_key_joins_its_person_however_common_its_name(
        tmp_path: Path) -> None:
    """Issue 11: a roster row copied under a new key (same household, same everything)
    is a re-registration, never a sibling; the commonest names included."""
    import csv
    from collections import Counter

    generate(persons=600, profile="sahel", seed=5, out=tmp_path,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    path = tmp_path / "data" / "cash_transfer.csv"
    with path.open(encoding="latin-1", newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    name = header.index("nom_complet")
    common = Counter(r[name].upper() for r in body).most_common(1)[0][0]
    originals = [r for r in body if r[name].upper() == common][:3] + body[:7]
    copies = [[f"{r[0]}-COPY", *r[1:]] for r in originals]
    with path.open("w", encoding="latin-1", newline="") as fh:
        csv.writer(fh).writerows([header, *body, *copies])
    project = load_project(tmp_path / "project.yaml")
    run(project, progress=lambda _: None)
    reg = Register.open(project.register)
    try:
        person = dict(reg.cursor().execute(
            "SELECT uid, person_id FROM person_records").fetchall())
    finally:
        reg.close()
    for r in originals:
        assert person[f"cash_transfer:{r[0]}-COPY"] == person[f"cash_transfer:{r[0]}"], r[0]


def test_two_households_matched_as_a_whole_pair_their_members_one_to_one() -> None:
    """Father and son of one name, and a daughter, in two rosters: every cross pair of
    the namesakes is linked, the true pairs most strongly; each member pairs once."""
    ct = ["ct:father", "ct:son", "ct:daughter"]
    pw = ["pw:father", "pw:son", "pw:daughter"]
    pairs = [("ct:father", "pw:father", 30.0), ("ct:son", "pw:son", 28.0),
             ("ct:daughter", "pw:daughter", 25.0),
             ("ct:father", "pw:son", 20.0), ("ct:son", "pw:father", 20.0)]
    r = cluster_pairs([*ct, *pw], ["ct"] * 3 + ["pw"] * 3, pairs,
                      household_ids=["ct:h1"] * 3 + ["pw:h7"] * 3)
    assert groups(r.clusters) == {frozenset({"ct:father", "pw:father"}),
                                  frozenset({"ct:son", "pw:son"}),
                                  frozenset({"ct:daughter", "pw:daughter"})}
    assert r.refused == {"household": 2}
