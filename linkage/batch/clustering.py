"""Clustering that does not chain: greedy merges by weight under "cannot be together" rules.

Connected components of the pairs at or above the match threshold put two records in
one person as soon as *any* path joins them. On a register where thousands of people
are called "Mamadou Traoré", three weak links A–B, B–C are enough to merge A and C, two
different people, and whole households chain the same way. This module accepts a
cluster only when its records hold together.

Algorithm (:func:`cluster_arrays`)
----------------------------------
1. Reviewer must-links join their records first, whatever the rules below say (a
   reviewer's "same person" is a fact).
2. The pairs at or above the match threshold are taken by match weight, strongest first
   (ties by record order, so the result never depends on the input order). Each pair
   merges the two clusters of its records (union-find) unless the merged cluster would
   hold a *forbidden pair* of records; the merge is then refused and counted by reason:

   ``cannot_link``     a reviewer's cannot-link pair;
   ``national_id``     two different non-null national IDs (two IDs one typo or
                       transposition apart are taken for one mistyped ID);
   ``civil_registry``  two records of one civil-registry source (a person is born once);
   ``household``       two records of one roster household (same ``household_id``,
                       which is source-scoped): siblings and twins, not duplicates;
   ``same_source``     two records of one source without a strong direct link between
                       *those two records* (``Rules.same_source_weight``, 4 bits by
                       default): a re-registration inside a roster is real and merges
                       through its own evidence, never through a third record;
   ``cohesion``        (only with ``Rules.min_cohesion``) the average match probability
                       between the two clusters' records, unscored pairs counting 0, is
                       below the floor.

   The household and civil-registry rules can also be lifted by a direct link of a
   given weight (:class:`Rules`); by default they are absolute. The same-source and
   national-ID rules are lifted by evidence: a source that is a file of duplicates
   (``Rules.dedupe_source_share`` of its records strongly linked inside it) keeps no
   same-source rule; optionally, two records joined through one record they are both
   strongly linked to (``Rules.same_source_witness_weight``) are witnessed; two
   different national IDs whose records' own link is strong enough
   (``Rules.national_id_weight``; the link already counts the IDs' disagreement) are
   one mistyped ID.
   Forbidden pairs are checked on per-cluster summaries (records by source, national
   IDs, household IDs, cannot-link partners), merged smaller-into-larger.
3. Speed: a connected component with no forbidden pair anywhere inside it ends as one
   cluster under the greedy rule too, so components are computed first (vectorised
   numpy) and found "clean" or "dirty" with group-by counts; the Python loop of step 2
   runs only on the pairs of dirty components.

Each cluster is labelled with its smallest record uid: the same shape as
:func:`linkage.engines.duckdb_sql.cluster` (uid -> label), so persistent-ID reconciliation
(:mod:`linkage.ids.reconcile`) is untouched and applies the constraints again (a no-op here).

Example:
    >>> r = cluster_pairs(["a:1", "b:1", "a:2"], ["a", "b", "a"],
    ...                   [("a:1", "b:1", 6.0), ("b:1", "a:2", 5.0)])
    >>> r.clusters, r.refused
    ({'a:1': 'a:1', 'b:1': 'a:1', 'a:2': 'a:2'}, {'same_source': 1})
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from jellyfish import damerau_levenshtein_distance

from linkage.batch import ambiguity
from linkage.batch.ambiguity import AmbiguityReport
from linkage.ids.reconcile import Constraints

if TYPE_CHECKING:
    import duckdb

__all__ = ["DEFAULT_RULES", "METHODS", "REASONS", "STRONG_DIRECT_WEIGHT", "ClusterResult",
           "Rules", "cluster_arrays", "cluster_pairs", "cluster_records", "cluster_run",
           "for_run", "one_id_mistyped"]

#: Values of the project setting ``clustering``.
METHODS = ("greedy", "components")
#: Why a merge was refused, in the order the rules are checked.
REASONS = ("cannot_link", "national_id", "civil_registry", "household", "same_source",
           "cohesion")


@dataclass
class ClusterResult:
    """uid -> cluster label, and the merges refused (pairs at or above the threshold)."""

    clusters: dict[str, str]
    refused: dict[str, int] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    #: :func:`cluster_run` with a prior: the links as clustered (ambiguity-adjusted,
    #: with ``ambiguity_bits``) and what the adjustment did
    links: pa.Table | None = None
    ambiguity: AmbiguityReport | None = None


def _components(n: int, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Connected components: each record's label is the smallest index of its component."""
    parent = np.arange(n, dtype=np.int64)
    if len(left) == 0:
        return parent
    while True:
        pl, pr = parent[left], parent[right]
        if np.array_equal(pl, pr):
            return parent
        low = np.minimum(pl, pr)
        # Hook every root onto the smallest root it touches, then jump to the roots.
        np.minimum.at(parent, pl, low)
        np.minimum.at(parent, pr, low)
        while True:
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt


def _count(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct int64 keys (sorted) and how often each occurs."""
    return np.unique(keys, return_counts=True)


def _lookup(keys: np.ndarray, counts: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """counts[keys == w] for each w of ``wanted`` (0 when absent); ``keys`` sorted."""
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=np.int64)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[pos] == wanted, counts[pos], 0)


def _dedupe_sources(src: np.ndarray, civil: np.ndarray, left: np.ndarray, right: np.ndarray,
                    share: float | None) -> np.ndarray:
    """Per source code: True when it is a file of duplicates (``Rules.dedupe_source_share``).

    ``left`` / ``right`` are the strong links; civil registries are never lifted.
    """
    lifted = np.zeros(len(civil), dtype=bool)
    if share is None or len(src) == 0:
        return lifted
    same = src[left] == src[right]
    linked = np.zeros(len(src), dtype=bool)
    linked[left[same]] = linked[right[same]] = True
    records = np.bincount(src, minlength=len(civil))
    dup = np.bincount(src[linked], minlength=len(civil))
    lifted = (records > 0) & (dup >= share * np.maximum(records, 1))
    return lifted & ~civil


def _dirty_components(comp: np.ndarray, src: np.ndarray, nid: np.ndarray, hh: np.ndarray,
                      civil: np.ndarray, left: np.ndarray, right: np.ndarray,
                      touched: np.ndarray, min_cohesion: float | None,
                      all_left: np.ndarray, lifted: np.ndarray) -> np.ndarray:
    """Labels of the components holding a forbidden pair (or a reviewer constraint).

    Component labels are record indices, so (label, code) pairs fit one int64 key.
    """
    n = np.int64(len(comp))
    dirty: list[np.ndarray] = [comp[touched]]
    has = nid >= 0  # two different national IDs
    keys, _ = _count(comp[has] * n + nid[has])
    labels, counts = _count(keys // n)
    dirty.append(labels[counts > 1])
    has = hh >= 0  # two records of one household
    keys, counts = _count(comp[has] * n + hh[has])
    dirty.append(keys[counts > 1] // n)
    # Two records of one source: civil registry always; other sources unless every two
    # of them are directly linked (k records, k(k-1)/2 links).
    keys, counts = _count(comp * n + src)
    multi = counts > 1
    keys, counts = keys[multi], counts[multi]
    dirty.append(keys[civil[keys % n]] // n)
    keep = ~lifted[keys % n]
    keys, counts = keys[keep], counts[keep]
    same = src[left] == src[right]
    e_keys, e_counts = _count(comp[left[same]] * n + src[left[same]])
    linked = _lookup(e_keys, e_counts, keys)
    dirty.append(keys[linked < counts * (counts - 1) // 2] // n)
    if min_cohesion is not None:
        # Only cliques of links at or above the threshold pass the floor for sure.
        labels, sizes = _count(comp)
        linked = _lookup(*_count(comp[all_left]), labels)
        dirty.append(labels[(sizes > 2) & (linked < sizes * (sizes - 1) // 2)])
    return np.unique(np.concatenate(dirty))


def one_id_mistyped(a: str, b: str) -> bool:
    """Two national IDs one typo or transposition apart: taken for one mistyped ID
    (``Rules.national_id_typos``; real-time enrolment applies the same test)."""
    return damerau_levenshtein_distance(a, b) <= 1


@dataclass(frozen=True)
class Rules:
    """What may not end up in one cluster, and the direct evidence that lifts a rule.

    A match weight is Splink's (log2 Bayes factor with the prior). Two records of one
    source need a direct link of at least ``same_source_weight`` between them (None: any
    link at or above the match threshold); two records of one household, or of one
    civil-registry source, at least ``household_weight`` / ``civil_registry_weight``
    (infinite: never together, whatever the evidence).
    """

    same_source_weight: float | None = None
    household_weight: float = math.inf
    civil_registry_weight: float = math.inf
    #: two national IDs one typo or transposition apart do not conflict
    national_id_typos: bool = True
    #: optional floor on the average match probability between two clusters
    min_cohesion: float | None = None
    #: two records of one source with no direct link strong enough may still join when
    #: the merging link and each record's own link to its end of it are all at least
    #: this strong (None: never): a re-registration's two copies of one original
    #: (A-B, A-C strong, B-C weak) join through A; namesakes chained by ordinary links do
    #: not
    same_source_witness_weight: float | None = None
    #: two records with different national IDs may join when their own link, which
    #: already counts the IDs' disagreement, is at least this strong, or when they are
    #: witnessed as above (infinite: never). IDs are typed by hand, and a mistyped ID
    #: more than one edit away is still one person when everything else agrees.
    national_id_weight: float = math.inf
    #: a source in which at least this share of records has a strong link (at least
    #: ``same_source_weight``) to another record of the *same* source is a file of
    #: duplicates (FEBRL, a roster re-enrolled every season): the same-source rule is
    #: lifted for it, its records chain like records of different sources. A roster that
    #: lists each person once has few such links and keeps the rule (None: never lifted).
    dedupe_source_share: float | None = None


#: The batch's rules (measured in benchmarks/RESULTS.md, "Clustering that does not chain"
#: and "Clustering for files of duplicates"): on household registers they keep the
#: precision the same-source rule bought; on FEBRL-like files of duplicates the rule is
#: lifted (a fifth of the source's records have a strong duplicate inside it).
#: Households and civil registries are lifted only by a strong direct link of their own
#: (STRONG_DIRECT_WEIGHT). Witnessed same-source chains stay off: on household registers
#: they gained nothing measurable, and a roster's two namesakes linked to one
#: civil-registry birth are the classic false merge. Two national IDs stay absolute: an
#: ID is the one field a registry office checks against a card.
#:
#: Two members of one roster household, or two civil-registry records, are usually two
#: people (siblings, twins, two births), but a person listed twice in one household or
#: registered twice at birth is real: such a pair joins only on its own direct link of at
#: least this match weight (prior included: 4096 to 1 for the same person). Twins (same
#: date and household, different given names) and a father and son of one name (years
#: apart) stay far below it. Measured on the hard generated registers: 98 of 98 (sahel)
#: and 97 of 98 (horn) same-household links above it are true duplicates.
STRONG_DIRECT_WEIGHT = 12.0
DEFAULT_RULES = Rules(same_source_weight=4.0, dedupe_source_share=0.2,
                      household_weight=STRONG_DIRECT_WEIGHT,
                      civil_registry_weight=STRONG_DIRECT_WEIGHT)


def cluster_arrays(n: int, src: np.ndarray, nid: np.ndarray, hh: np.ndarray,
                   civil: np.ndarray, left: np.ndarray, right: np.ndarray,
                   weight: np.ndarray, *, rules: Rules = DEFAULT_RULES,
                   national_ids: Sequence[str] = (),
                   must_link: Iterable[tuple[int, int]] = (),
                   cannot_link: Iterable[tuple[int, int]] = (),
                   scored: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
                   explain: list[tuple[int, int, str]] | None = None,
                   ) -> tuple[np.ndarray, dict[str, int], dict[str, Any]]:
    """The greedy clustering on integer-coded records (see the module docstring).

    Args:
        n: number of records, indexed 0..n-1 (the index order breaks weight ties).
        src: source code per record (0..S-1).
        nid: national-ID code per record, -1 when missing.
        hh: household-ID code per record (source-scoped), -1 when missing.
        civil: per source code, True for a civil-registry source.
        left, right, weight: the pairs at or above the match threshold (record indices,
            match weight).
        rules: the forbidden pairs (see :class:`Rules`).
        national_ids: the ID of each national-ID code, for ``rules.national_id_typos``.
        must_link, cannot_link: reviewer decisions as index pairs.
        scored: (left, right, probability) of every scored pair (at or above the review
            threshold), for ``rules.min_cohesion``.
        explain: when a list, every refused pair is appended to it as (left, right,
            reason).

    Returns:
        (root index per record, refused merges by reason, statistics).
    """
    t0 = time.perf_counter()
    lo = np.asarray(left, dtype=np.int64)
    hi = np.asarray(right, dtype=np.int64)
    weight = np.asarray(weight, dtype=np.float64)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    keep = lo != hi
    lo, hi, weight = lo[keep], hi[keep], weight[keep]
    ml = [(min(a, b), max(a, b)) for a, b in must_link if a != b]
    cl = [(a, b) for a, b in cannot_link if a != b]
    ml_l = np.array([a for a, _ in ml], dtype=np.int64)
    ml_r = np.array([b for _, b in ml], dtype=np.int64)
    comp = _components(n, np.concatenate([lo, ml_l]), np.concatenate([hi, ml_r]))
    stats: dict[str, Any] = {"records": n, "pairs": int(len(lo))}
    if n == 0:
        return comp, {}, stats
    touched = np.zeros(n, dtype=bool)
    for a, b in [*ml, *cl]:
        touched[a] = touched[b] = True
    # Same-source links too weak to lift the rule do not make a group "fully linked".
    strong = (weight >= rules.same_source_weight if rules.same_source_weight is not None
              else np.ones(len(lo), dtype=bool))
    lifted = _dedupe_sources(src, civil, lo[strong], hi[strong], rules.dedupe_source_share)
    stats["dedupe_sources"] = np.flatnonzero(lifted).tolist()
    dirty = _dirty_components(comp, src, nid, hh, civil, lo[strong], hi[strong], touched,
                              rules.min_cohesion, lo, lifted)
    in_dirty = np.zeros(n, dtype=bool)
    in_dirty[dirty] = True  # component labels are record indices
    in_dirty = in_dirty[comp]
    stats.update(components=int(len(np.unique(comp))), dirty_components=int(len(dirty)),
                 dirty_records=int(in_dirty.sum()))
    root = comp.copy()
    refused: dict[str, int] = {}
    sel = in_dirty[lo]
    d_lo, d_hi, d_w = lo[sel], hi[sel], weight[sel]
    order = np.lexsort((d_hi, d_lo, -d_w))
    d_lo, d_hi, d_w = d_lo[order], d_hi[order], d_w[order]
    stats["dirty_pairs"] = int(len(d_lo))
    if len(d_lo) or ml:
        refused = _Greedy(np.flatnonzero(in_dirty), src, nid, hh, civil, rules, national_ids,
                          cl, scored, lifted).run(root, d_lo, d_hi, d_w, ml, explain)
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return root, refused, stats


class _Greedy:
    """Step 2 on the records of the dirty components: union-find with cluster summaries.

    Records are renumbered 0..m-1 (``members`` holds their global indices) so that the
    union-find and the summaries are plain lists.
    """

    def __init__(self, members: np.ndarray, src: np.ndarray, nid: np.ndarray, hh: np.ndarray,
                 civil: np.ndarray, rules: Rules, national_ids: Sequence[str],
                 cannot_link: Sequence[tuple[int, int]],
                 scored: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
                 lifted: np.ndarray | None = None) -> None:
        self.lifted = (lifted if lifted is not None
                       else np.zeros(len(civil), dtype=bool)).tolist()
        self.members = members
        self.m = m = len(members)
        self.parent = list(range(m))
        self.size = [1] * m
        self.src = src[members].tolist()
        self.hh = hh[members].tolist()
        self.civil = civil.tolist()
        self.rules = rules
        # Per-root summaries: records by source, national-ID codes, cannot-link partners.
        self.by_src: list[dict[int, list[int]] | None] = [
            {s: [i]} for i, s in enumerate(self.src)]
        self.nid = nid[members].tolist()
        self.ids: list[set[int] | None] = [
            {v} if v >= 0 else None for v in nid[members].tolist()]
        self.apart: dict[int, set[int]] = {}
        for a, b in cannot_link:
            la, lb = self.local(a), self.local(b)
            if la is not None and lb is not None:
                self.apart.setdefault(la, set()).add(lb)
                self.apart.setdefault(lb, set()).add(la)
        self.national_ids = national_ids
        self.typo: dict[tuple[int, int], bool] = {}
        self.direct: dict[int, float] = {}  # lo * m + hi -> weight, same-source pairs
        self.links: dict[int, float] = {}  # lo * m + hi -> weight, every linked pair
        self.prob: dict[int, float] = {}  # lo * m + hi -> probability, for cohesion
        if rules.min_cohesion is not None and scored is not None:
            s_l, s_r, s_p = scored
            mask = np.isin(s_l, members) & np.isin(s_r, members)
            x = np.searchsorted(members, s_l[mask])
            y = np.searchsorted(members, s_r[mask])
            keys = np.minimum(x, y) * m + np.maximum(x, y)
            self.prob = dict(zip(keys.tolist(), s_p[mask].tolist(), strict=True))

    def local(self, i: int) -> int | None:
        pos = int(np.searchsorted(self.members, i))
        return pos if pos < self.m and self.members[pos] == i else None

    def find(self, x: int) -> int:
        parent = self.parent
        r = x
        while parent[r] != r:
            r = parent[r]
        while parent[x] != r:
            parent[x], x = r, parent[x]
        return r

    def union(self, ra: int, rb: int) -> None:
        size = self.size
        if size[ra] < size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        size[ra] += size[rb]
        into, other = self.by_src[ra], self.by_src[rb]
        assert into is not None and other is not None
        for s, xs in other.items():
            if s in into:
                into[s].extend(xs)
            else:
                into[s] = xs
        self.by_src[rb] = None
        extra = self.ids[rb]
        if extra:
            mine = self.ids[ra]
            if mine:
                mine.update(extra)
            else:
                self.ids[ra] = extra
            self.ids[rb] = None
        gone = self.apart.pop(rb, None)
        if gone:
            self.apart.setdefault(ra, set()).update(gone)

    def _ids_lifted(self, ra: int, rb: int, a: int, b: int) -> bool:
        """Every pair of records with conflicting IDs across the two clusters has its
        own strong link, or is witnessed through the merging link a-b."""
        bar = self.rules.national_id_weight
        if bar == math.inf and self.rules.same_source_witness_weight is None:
            return False
        nid = self.nid
        xs = [x for v in (self.by_src[ra] or {}).values() for x in v if nid[x] >= 0]
        ys = [y for v in (self.by_src[rb] or {}).values() for y in v if nid[y] >= 0]
        for x in xs:
            for y in ys:
                if nid[x] == nid[y] or not self._ids_conflict({nid[x]}, {nid[y]}):
                    continue
                w = self._weight(x, y)
                if (w is None or w < bar) and not self._witnessed(x, y, a, b, ra):
                    return False
        return True

    def _ids_conflict(self, ia: set[int], ib: set[int]) -> bool:
        for x in ia:
            for y in ib:
                if x == y:
                    continue
                if not self.rules.national_id_typos or not self.national_ids:
                    return True
                key = (x, y) if x < y else (y, x)
                near = self.typo.get(key)
                if near is None:
                    near = self.typo[key] = one_id_mistyped(self.national_ids[x],
                                                            self.national_ids[y])
                if not near:
                    return True
        return False

    def _weight(self, x: int, y: int) -> float | None:
        return self.links.get(x * self.m + y if x < y else y * self.m + x)

    def _witnessed(self, x: int, y: int, a: int, b: int, ra: int) -> bool:
        """x and y (one source, one in each cluster) hold together through the merging
        link a-b: it and each record's link to its own end are all strong."""
        bar = self.rules.same_source_witness_weight
        if bar is None or a < 0:
            return False
        w_ab = self._weight(a, b)
        if w_ab is None or w_ab < bar:
            return False
        if self.find(x) != ra:
            x, y = y, x
        for r, end in ((x, a), (y, b)):
            if r != end:
                w = self._weight(r, end)
                if w is None or w < bar:
                    return False
        return True

    def conflict(self, ra: int, rb: int, a: int = -1, b: int = -1) -> str | None:
        """Why clusters ``ra`` and ``rb`` may not merge (None: they may)."""
        pa_, pb_ = self.apart.get(ra), self.apart.get(rb)
        if pa_ and pb_:  # partners are symmetric: both sides have some
            other = rb
            if len(pb_) < len(pa_):
                pa_, other = pb_, ra
            if any(self.find(x) == other for x in pa_):
                return "cannot_link"
        ia, ib = self.ids[ra], self.ids[rb]
        if ia and ib and (ia != ib or len(ia) > 1) and self._ids_conflict(ia, ib) \
                and not self._ids_lifted(ra, rb, a, b):
            return "national_id"
        sa, sb = self.by_src[ra], self.by_src[rb]
        assert sa is not None and sb is not None
        if len(sb) < len(sa):
            sa, sb = sb, sa
        rules, direct, hh, m = self.rules, self.direct, self.hh, self.m
        same_bar = -math.inf if rules.same_source_weight is None else rules.same_source_weight
        for s, xs in sa.items():
            ys = sb.get(s)
            if ys is None:
                continue
            if self.civil[s]:
                bar, reason = rules.civil_registry_weight, "civil_registry"
            elif self.lifted[s]:
                bar, reason = None, "same_source"  # only households stay apart
            else:
                bar, reason = same_bar, "same_source"
            for x in xs:
                hx = hh[x]
                for y in ys:
                    w = direct.get(x * m + y if x < y else y * m + x)
                    if hx >= 0 and hx == hh[y] and reason == "same_source":
                        if w is None or w < rules.household_weight:
                            return "household"
                    elif bar is not None and (w is None or w < bar):
                        if reason == "same_source" and self._witnessed(x, y, a, b, ra):
                            continue
                        return reason
        if rules.min_cohesion is not None:
            xs = [x for v in sa.values() for x in v]
            ys = [y for v in sb.values() for y in v]
            prob = self.prob
            total = sum(prob.get(x * m + y if x < y else y * m + x, 0.0)
                        for x in xs for y in ys)
            if total < rules.min_cohesion * len(xs) * len(ys):
                return "cohesion"
        return None

    def run(self, root: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray,
            must_link: Sequence[tuple[int, int]],
            explain: list[tuple[int, int, str]] | None) -> dict[str, int]:
        """Merge along ``must_link`` then along the sorted pairs; write roots into ``root``."""
        members, m = self.members, self.m
        x = np.searchsorted(members, lo)
        y = np.searchsorted(members, hi)
        # Direct evidence between two records of one source: their own link.
        src = np.asarray(self.src, dtype=np.int64)
        same = src[x] == src[y]
        self.direct = dict(zip((x[same] * m + y[same]).tolist(), w[same].tolist(),
                               strict=True))
        if (self.rules.same_source_witness_weight is not None
                or self.rules.national_id_weight < math.inf):
            self.links = dict(zip((np.minimum(x, y) * m + np.maximum(x, y)).tolist(),
                                  w.tolist(), strict=True))
        find, conflict, union = self.find, self.conflict, self.union
        for a, b in must_link:  # reviewer decisions first, unconditionally
            la, lb = self.local(a), self.local(b)
            assert la is not None and lb is not None
            ra, rb = find(la), find(lb)
            if ra != rb:
                union(ra, rb)
        refused: dict[str, int] = {}
        # A refusal stands while both clusters only grow: forbidden pairs never go away
        # (the cohesion floor is not monotone, so its refusals are not remembered).
        known: dict[int, str] = {}
        for a, b in zip(x.tolist(), y.tolist(), strict=True):
            ra, rb = find(a), find(b)
            if ra == rb:
                continue
            key = ra * m + rb if ra < rb else rb * m + ra
            reason = known.get(key)
            if reason is None:
                reason = conflict(ra, rb, a, b)
                if reason is None:
                    union(ra, rb)
                    continue
                # Not remembered: cohesion (not monotone), and a same-source refusal
                # when a later, stronger-witnessed link may lift it.
                if reason != "cohesion" and not (
                        reason in ("same_source", "national_id")
                        and self.rules.same_source_witness_weight is not None):
                    known[key] = reason
            refused[reason] = refused.get(reason, 0) + 1
            if explain is not None:
                explain.append((int(members[a]), int(members[b]), reason))
        roots = np.fromiter((find(i) for i in range(m)), dtype=np.int64, count=m)
        root[members] = members[roots]
        return {r: refused[r] for r in REASONS if r in refused}


def _codes(values: Sequence[Any] | pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[Any]]:
    """Dense integer codes of a column (-1 for nulls) and the value of each code."""
    arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(
        list(values), type=pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    enc = pc.dictionary_encode(arr)
    codes = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, enc.dictionary.to_pylist()


def _labels(uids: Sequence[str], root: np.ndarray) -> dict[str, str]:
    """uid -> smallest uid of its cluster (``uids`` sorted, so the smallest index)."""
    first = np.full(len(uids), len(uids), dtype=np.int64)
    np.minimum.at(first, root, np.arange(len(uids), dtype=np.int64))
    label_idx = first[root].tolist()
    return {u: uids[i] for u, i in zip(uids, label_idx, strict=True)}


def _run(uids: Sequence[str], sources: Any, national_ids: Any, household_ids: Any,
         left: np.ndarray, right: np.ndarray, weight: np.ndarray, *,
         civil_sources: Iterable[str], constraints: Constraints | None, rules: Rules,
         scored: tuple[np.ndarray, np.ndarray, np.ndarray] | None) -> ClusterResult:
    """Code the columns, cluster, label. ``uids`` sorted; pairs as indices into it."""
    src, names = _codes(sources)
    civil_set = set(civil_sources)
    civil = np.array([s in civil_set for s in names], dtype=bool)
    nid, nid_values = _codes(national_ids)
    hh, _ = _codes(household_ids)
    c = constraints or Constraints()
    index = {u: i for i, u in enumerate(uids)} if c.must_link or c.cannot_link else {}

    def pairs(ps: Iterable[tuple[str, str]]) -> list[tuple[int, int]]:
        return [(index[a], index[b]) for a, b in ps if a in index and b in index]

    root, refused, stats = cluster_arrays(
        len(uids), src, nid, hh, civil, left, right, weight, rules=rules,
        national_ids=nid_values, must_link=pairs(c.must_link),
        cannot_link=pairs(c.cannot_link), scored=scored)
    # Source codes to names, for the run summary.
    stats["dedupe_sources"] = [names[s] for s in stats.get("dedupe_sources", [])]
    return ClusterResult(_labels(uids, root), refused, stats)


def cluster_pairs(uids: Sequence[str], sources: Sequence[str],
                  pairs: Iterable[tuple[str, str, float]], *,
                  national_ids: Sequence[str | None] | None = None,
                  household_ids: Sequence[str | None] | None = None,
                  civil_sources: Iterable[str] = (),
                  constraints: Constraints | None = None,
                  rules: Rules = DEFAULT_RULES,
                  scored: Iterable[tuple[str, str, float]] = ()) -> ClusterResult:
    """The greedy clustering on plain Python values (tests, small registers).

    Args:
        uids: record uids; ``sources``, ``national_ids``, ``household_ids`` align with it.
        pairs: (uid, uid, match weight) at or above the match threshold.
        civil_sources: names of the civil-registry sources.
        constraints: reviewer must-link / cannot-link pairs (unknown uids ignored).
        rules: see :class:`Rules`.
        scored: (uid, uid, match probability) of the scored pairs, for
            ``rules.min_cohesion``.
    """
    order = sorted(range(len(uids)), key=lambda i: uids[i])
    s_uids = [uids[i] for i in order]
    index = {u: i for i, u in enumerate(s_uids)}

    def col(values: Sequence[Any] | None) -> list[Any]:
        return [None] * len(order) if values is None else [values[i] for i in order]

    def arrays(ps: Iterable[tuple[str, str, float]]) -> tuple[np.ndarray, ...]:
        kept = [(index[a], index[b], float(x)) for a, b, x in ps if a in index and b in index]
        return (np.array([p[0] for p in kept], dtype=np.int64),
                np.array([p[1] for p in kept], dtype=np.int64),
                np.array([p[2] for p in kept], dtype=np.float64))

    left, right, weight = arrays(pairs)
    res = _run(s_uids, col(sources), col(national_ids), col(household_ids), left, right,
               weight, civil_sources=civil_sources, constraints=constraints, rules=rules,
               scored=arrays(scored))  # type: ignore[arg-type]
    res.clusters = {u: res.clusters[u] for u in uids}
    return res


def cluster_records(records: pa.Table, links: pa.Table, match_threshold: float, *,
                    civil_sources: Iterable[str] = (), constraints: Constraints | None = None,
                    rules: Rules = DEFAULT_RULES, one_to_one_threshold: float | None = None
                    ) -> ClusterResult:
    """The greedy clustering of a run, on Arrow tables (whatever engine scored the pairs).

    Args:
        records: every record to cluster: ``uid``, ``source``, ``national_id``,
            ``household_id`` (standardised; household IDs are source-scoped).
        links: the scored pairs: ``uid_l``, ``uid_r``, ``match_probability``,
            ``match_weight`` (pairs naming an unknown record are ignored).
        match_threshold: pairs at or above it are candidate merges.
        civil_sources: names of the civil-registry sources.
        constraints: reviewer decisions (:func:`linkage.ids.publish.load_constraints`).
        rules: see :class:`Rules`.
        one_to_one_threshold: the match threshold of the links marked ``one_to_one``
            (:func:`linkage.batch.ambiguity.pair_thresholds`); None: ``match_threshold``.

    Returns:
        Every record -> the smallest uid of its cluster, and the refused merges by reason.
    """
    t0 = time.perf_counter()
    records = records.sort_by("uid")
    uid_col = records.column("uid").combine_chunks()
    copies = _exact_copies(records)
    if copies:
        c = constraints or Constraints()
        apart = {frozenset(p) for p in c.cannot_link}  # a reviewer's word stands
        constraints = Constraints(
            must_link=(*c.must_link, *(p for p in copies if frozenset(p) not in apart)),
            cannot_link=c.cannot_link)
    links = links.append_column("_threshold", pa.array(ambiguity.pair_thresholds(
        _one_to_one_of(links), match_threshold, one_to_one_threshold)))
    keep = links if rules.min_cohesion is not None else links.filter(
        pc.greater_equal(links.column("match_probability"), links.column("_threshold")))
    left, right, weight, prob, threshold = _indexed(keep, uid_col, "_threshold")
    over = prob >= threshold
    res = _run(uid_col.to_pylist(), records.column("source"), records.column("national_id"),
               records.column("household_id"), left[over], right[over], weight[over],
               civil_sources=civil_sources, constraints=constraints, rules=rules,
               scored=(left, right, prob))
    res.stats["total_seconds"] = round(time.perf_counter() - t0, 3)
    return res


def _exact_copies(records: pa.Table) -> list[tuple[str, str]]:
    """Pairs of records of one source identical on every standardised column and on the
    household (:func:`linkage.register.store.copy_key`, the definition real-time
    enrolment applies too): a row re-registered under a new key. They are joined first, like a
    reviewer's must-link: no rule applies to a record and its copy (one household, one
    roster, one name however common), and with a common name and a year-only date their
    own link may fall below the threshold.

    ``records`` carries a ``fingerprint`` column (see :func:`cluster_run`); without it
    there are no copies.
    """
    if "fingerprint" not in records.column_names:
        return []
    # Group in Arrow: only the few groups of two or more reach Python.
    keyed = records.select(["uid", "source", "household_id", "fingerprint"]).filter(
        pc.is_valid(records.column("fingerprint")))
    # A NULL household is a key of its own: two copies without a household group.
    groups = keyed.group_by(["source", "household_id", "fingerprint"]).aggregate(
        [("uid", "list"), ("uid", "count")])
    groups = groups.filter(pc.greater(groups.column("uid_count"), 1))
    return [(g[0], u) for g in groups.column("uid_list").to_pylist() for u in g[1:]]


def _indexed(links: pa.Table, uid_col: pa.Array, *columns: str) -> tuple[np.ndarray, ...]:
    """(left, right, weight, probability, then each of ``columns``) of the links whose
    two records are in ``uid_col`` (sorted uids), as record indices into it."""
    left = pc.index_in(links.column("uid_l"), value_set=uid_col)
    right = pc.index_in(links.column("uid_r"), value_set=uid_col)
    known = pc.and_(pc.is_valid(left), pc.is_valid(right))
    return (pc.filter(left, known).to_numpy().astype(np.int64),
            pc.filter(right, known).to_numpy().astype(np.int64),
            *(pc.filter(links.column(c), known).to_numpy().astype(np.float64)
              for c in ("match_weight", "match_probability", *columns)))


def _one_to_one_of(links: pa.Table) -> np.ndarray:
    """Which links the ambiguity step weighed (its ``one_to_one`` column; none without)."""
    if "one_to_one" not in links.column_names:
        return np.zeros(links.num_rows, bool)
    return pc.fill_null(links.column("one_to_one"), False).to_numpy(
        zero_copy_only=False).astype(bool)


def duplicate_files(records: pa.Table, links: pa.Table, match_threshold: float, *,
                    civil_sources: Iterable[str] = (), rules: Rules = DEFAULT_RULES
                    ) -> list[str]:
    """The sources that are files of duplicates (``Rules.dedupe_source_share``), judged on
    the links at or above the match threshold as :func:`cluster_records` judges them."""
    records = records.sort_by("uid")
    uid_col = records.column("uid").combine_chunks()
    keep = links.filter(pc.greater_equal(links.column("match_probability"), match_threshold))
    lo, hi, weight, _ = _indexed(keep, uid_col)
    src, names = _codes(records.column("source"))
    civil_set = set(civil_sources)
    civil = np.array([s in civil_set for s in names], dtype=bool)
    strong = (weight >= rules.same_source_weight if rules.same_source_weight is not None
              else np.ones(len(lo), dtype=bool))
    lifted = _dedupe_sources(src, civil, lo[strong], hi[strong], rules.dedupe_source_share)
    return [names[i] for i in np.flatnonzero(lifted)]


def _with_nodes(records: pa.Table, links: pa.Table, rules: Rules) -> pa.Table:
    """``records`` (uid, source) sorted by uid, with ``node``: records of one source that
    are one person for certain (exact copies; a same-source link strong enough to lift
    the same-source rule) share a label, for :func:`linkage.batch.ambiguity.adjust`."""
    records = records.sort_by("uid")
    uid_col = records.column("uid").combine_chunks()
    lo, hi, weight, _ = _indexed(links, uid_col)
    src, _ = _codes(records.column("source"))
    strong = (src[lo] == src[hi]) & (
        weight >= (rules.same_source_weight if rules.same_source_weight is not None else 0.0))
    copies = _exact_copies(records)
    cl, cr = (pc.index_in(pa.array([p[k] for p in copies], pa.string()), value_set=uid_col)
              .to_numpy(zero_copy_only=False).astype(np.int64) for k in (0, 1))
    node = _components(records.num_rows, np.concatenate([lo[strong], cl]),
                       np.concatenate([hi[strong], cr]))
    return records.select(["uid", "source"]).append_column("node", pa.array(node))


def _register_inputs(cur: duckdb.DuckDBPyConnection) -> tuple[pa.Table, list[str]]:
    """The active records clustering reads, and the civil registries' names."""
    from linkage.register.store import copy_key_sql

    records = cur.sql(f"SELECT uid, source, national_id, household_id, "
                      f"{copy_key_sql()} AS fingerprint FROM records "
                      "WHERE status = 'active'").to_arrow_table()
    civil = [name for (name,) in cur.execute(
        "SELECT name FROM sources WHERE kind = 'civil_registry'").fetchall()]
    return records, civil


def cluster_at(cur: duckdb.DuckDBPyConnection, links: pa.Table, thresholds: list[float],
               rules: Rules = DEFAULT_RULES,
               one_to_one: Callable[[float], float] | None = None
               ) -> dict[float, dict[str, str]]:
    """uid -> cluster label at each match threshold: :func:`cluster_run` (without a
    prior) for several thresholds, the register's records and constraints read once.
    ``one_to_one``: the one-to-one pairs' threshold given the match threshold (links
    carrying ``one_to_one``); None: the match threshold."""
    from linkage.ids.publish import load_constraints

    records, civil = _register_inputs(cur)
    constraints = load_constraints(cur)
    return {t: cluster_records(records, links, t, civil_sources=civil,
                               constraints=constraints, rules=rules,
                               one_to_one_threshold=None if one_to_one is None
                               else one_to_one(t)).clusters
            for t in thresholds}


def cluster_run(cur: duckdb.DuckDBPyConnection, links: pa.Table, match_threshold: float,
                rules: Rules = DEFAULT_RULES, *, prior: float | None = None,
                one_to_one_threshold: float | None = None) -> ClusterResult:
    """The batch's clustering: the register's active records, sources and constraints.

    Args:
        cur: a cursor on the register (inside the run's transaction).
        links: the run's scored pairs (``Engine.links()``).
        match_threshold: the project's match threshold.
        prior: the run's prior: pairs between sources that list each person once are
            re-weighed by their ambiguity (:mod:`linkage.batch.ambiguity`) first;
            ``None``: pairwise weights as they are.
        one_to_one_threshold: the match threshold of the pairs so re-weighed
            (``thresholds.one_to_one_match``); None: ``match_threshold``.

    Returns:
        The clusters; with a prior, also the links as clustered (``links``, with
        ``ambiguity_bits``) and the ambiguity report (``ambiguity``).
    """
    from linkage.ids.publish import load_constraints

    records, civil = _register_inputs(cur)
    report = None
    if prior is not None:
        dups = duplicate_files(records, links, match_threshold, civil_sources=civil,
                               rules=rules)
        links, report = ambiguity.adjust(
            links, _with_nodes(records, links, rules), prior, match_threshold, dups,
            one_to_one_threshold)
    res = cluster_records(records, links, match_threshold, civil_sources=civil,
                          constraints=load_constraints(cur), rules=rules,
                          one_to_one_threshold=one_to_one_threshold)
    res.links, res.ambiguity = links, report
    return res


def for_run(cur: duckdb.DuckDBPyConnection, project: Any, links: pa.Table,
            components: Callable[[], dict[str, str]], progress: Callable[[str], None],
            prior: float | None = None,
            ) -> tuple[dict[str, str], dict[str, int] | None, pa.Table, dict[str, Any] | None]:
    """The batch's clustering step, by the project's ``clustering`` setting.

    Args:
        cur: a cursor on the register, inside the run's transaction.
        project: the project (``clustering``, ``thresholds.match``).
        links: the run's scored pairs (uid_l, uid_r, match_probability, match_weight).
        components: the engine's own clustering (Splink's connected components), called
            for ``clustering: components``.
        progress: receives one line.

        prior: the run's prior, for the ambiguity adjustment (``project.ambiguity``).

    Returns:
        The clusters, the refused merges by reason (None for components, which refuse
        nothing), the links as clustered (to store), and the ambiguity summary (None
        when off).
    """
    def kept(t: pa.Table) -> pa.Table:
        # What the register keeps: a pair the ambiguity lowered below the review
        # threshold is in doubt no more; the candidates under it were for that step.
        return t.filter(pc.greater_equal(t.column("match_probability"),
                                         project.thresholds.review))

    if project.clustering == "components":
        return components(), None, kept(links), None
    res = cluster_run(cur, links, project.thresholds.match,
                      prior=prior if project.ambiguity else None,
                      one_to_one_threshold=project.thresholds.one_to_one_match)
    amb = res.ambiguity
    links = kept(links if res.links is None else res.links)
    if amb is not None:
        progress("  " + amb.line())
    refused = ", ".join(f"{k} {v:,}" for k, v in res.refused.items()) or "none"
    if res.stats.get("dedupe_sources"):
        progress(f"  sources that are files of duplicates (same-source rule lifted): "
                 f"{', '.join(res.stats['dedupe_sources'])}")
    progress(f"  greedy clustering: {res.stats.get('dirty_records', 0):,} records in "
             f"{res.stats.get('dirty_components', 0):,} components with a forbidden pair; "
             f"merges refused: {refused} ({res.stats.get('total_seconds', 0)} s)")
    return res.clusters, res.refused, links, None if amb is None else amb.summary()
