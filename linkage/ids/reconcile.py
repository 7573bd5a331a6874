"""Persistent person identifiers and their reconciliation between clustering runs.

Each clustering run labels records with arbitrary, unstable cluster labels. This module
turns those labels into *persistent* person identifiers, so that a person keeps the same
ID from one run to the next, and records every change as an :class:`Event`.

The module is pure: no I/O, no database, no clock. Everything it needs is passed in
(previous state, clusters, constraints, secret, run id, timestamp) and everything it
produces is returned (new state, events).

Identifier format
-----------------
``P-`` followed by nine characters from the Crockford base32 alphabet
``0123456789ABCDEFGHJKMNPQRSTVWXYZ`` (no I, L, O, U), e.g. ``P-7E4N3BWZC``: eight random
characters then one check character. IDs are opaque: the eight characters are a keyed
BLAKE2b hash of ``(register secret, issue sequence number)``, never of personal data.

The check character makes every single mistyped character and every swap of two
adjacent characters detectable. Each character is a value in 0..31, i.e. an element of
the finite field GF(32). With weights ``w_i = a**(i + 1)`` (``a`` a generator of the
field's multiplicative group, which has order 31) the check character is chosen so that
``sum(w_i * c_i) == 0`` over all nine characters. A substitution ``c -> c + e`` (``e != 0``)
changes the sum by ``w_i * e != 0``; swapping different ``x`` and ``y`` at ``i, i+1``
changes it by ``(w_i + w_{i+1}) * (x + y) != 0`` because consecutive weights differ. So
both error classes are always caught (a MOD 37 scheme would need extra check symbols
outside the alphabet; the field version keeps the check in the same 32 characters).

Reconciliation algorithm (:func:`reconcile`)
--------------------------------------------
0. Apply reviewer constraints to the clusters (:func:`apply_constraints`).
1. Group records by cluster; a cluster whose records are exactly the surviving records
   (records still present) of one old person keeps that person's ID (fast path; no
   events). Every other cluster is *changed*; changed clusters are handled in order of
   their smallest record key, which makes the result independent of input order.
2. Exact restoration: a changed cluster whose record set equals a retired ID's last
   record set brings that ID back (``restored``), e.g. when a merge is undone.
3. Pure merges: if every old person in a cluster lies wholly inside it, the oldest one
   (smallest issue sequence) keeps its ID; the others are retired ``merged_into`` it.
4. The rest is a bipartite matching between old persons and clusters, weighted by the
   number of shared records. Edges are taken greedily by (largest overlap, oldest ID,
   smallest cluster key); each old ID survives in at most one cluster and each cluster
   keeps at most one ID. So a split keeps the ID on its largest part.
5. Still-unmatched clusters may restore a retired ID whose last record set mostly matches
   (Jaccard similarity >= ``restore_threshold``), greedily by best similarity.
6. Remaining clusters get new IDs: ``split_from`` the old person they took most records
   from, or ``created`` if all their records are new.
7. Old persons left without a cluster are retired: ``merged_into`` the persons that now
   hold their records (largest share first), or ``retired`` if all their records
   vanished. Their last record sets are kept so that step 2/5 can restore them.

Cost is one pass over the records plus work proportional to the changed clusters (and
one pass over retired record sets to index them for restoration).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Container, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from linkage.errors import ConstraintConflict

__all__ = [
    "ALPHABET",
    "ConstraintConflict",
    "Constraints",
    "Event",
    "EventKind",
    "IdAllocator",
    "IdState",
    "ReconcileResult",
    "apply_constraints",
    "check_char",
    "is_valid",
    "new_id",
    "normalise",
    "reconcile",
    "resolve",
]

# ---------------------------------------------------------------------------------------
# Identifier format
# ---------------------------------------------------------------------------------------

#: Crockford base32: digits and upper-case letters without I, L, O, U.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "P-"
BODY_LEN = 8  # random characters; 32**8 ~ 1.1e12 possible IDs
_VALUE = {c: i for i, c in enumerate(ALPHABET)}

# GF(32) built from the primitive polynomial x^5 + x^2 + 1; _EXP[k] = a**k.
_EXP: list[int] = []
_x = 1
for _ in range(31):
    _EXP.append(_x)
    _x <<= 1
    if _x & 0b100000:
        _x ^= 0b100101
_LOG = {v: k for k, v in enumerate(_EXP)}
del _x, _


def _mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return _EXP[(_LOG[a] + _LOG[b]) % 31]


# Position i (0-based over the 9 body characters) has weight a**(i + 1): all non-zero,
# and any two positions fewer than 31 apart have different weights.
_WEIGHTS = [_EXP[(i + 1) % 31] for i in range(BODY_LEN + 1)]
_CHECK_INV = _EXP[(31 - _LOG[_WEIGHTS[BODY_LEN]]) % 31]

# What people type for characters that are not in the alphabet.
_CONFUSIONS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def check_char(body: str) -> str:
    """Return the check character for an 8-character body.

    Args:
        body: eight characters from :data:`ALPHABET`.

    Returns:
        The character that makes the weighted GF(32) sum of all nine characters zero.

    Example:
        >>> body = "7K3QZ1MX"
        >>> is_valid("P-" + body + check_char(body))
        True
    """
    if len(body) != BODY_LEN:
        raise ValueError(f"body must have {BODY_LEN} characters, got {body!r}")
    total = 0
    for w, c in zip(_WEIGHTS, body, strict=False):
        total ^= _mul(w, _VALUE[c])
    # In characteristic 2, minus is plus: w_check * v = total.
    return ALPHABET[_mul(_CHECK_INV, total)]


def _body_ok(body: str) -> bool:
    if len(body) != BODY_LEN + 1:
        return False
    total = 0
    for w, c in zip(_WEIGHTS, body, strict=True):
        v = _VALUE.get(c)
        if v is None:
            return False
        total ^= _mul(w, v)
    return total == 0


def new_id(secret: bytes, seq: int) -> str:
    """Derive the candidate ID for issue sequence number ``seq``.

    The ID is a keyed hash of the sequence number, so it is deterministic for a given
    register secret, unpredictable without it, and unrelated to any personal data.

    Args:
        secret: the register's secret key (at most 64 bytes).
        seq: the issue sequence number (non-negative).

    Returns:
        A canonical ID such as ``"P-7E4N3BWZC"``.

    Example:
        >>> new_id(b"s3cret", 0) == new_id(b"s3cret", 0)
        True
        >>> is_valid(new_id(b"s3cret", 1))
        True
    """
    digest = hashlib.blake2b(
        seq.to_bytes(8, "big"), key=secret, digest_size=5, person=b"linkage-pid"
    ).digest()
    n = int.from_bytes(digest, "big")  # 40 bits = 8 characters of 5 bits
    body = "".join(ALPHABET[(n >> (5 * (BODY_LEN - 1 - i))) & 31] for i in range(BODY_LEN))
    return PREFIX + body + check_char(body)


def is_valid(pid: str) -> bool:
    """Tell whether ``pid`` is a well-formed ID in canonical form (see :func:`normalise`).

    Example:
        >>> pid = new_id(b"k", 7)
        >>> is_valid(pid), is_valid(pid.lower())
        (True, False)
    """
    return isinstance(pid, str) and pid.startswith(PREFIX) and _body_ok(pid[len(PREFIX) :])


def normalise(pid: str) -> str:
    """Turn a typed or read-out ID into canonical form, or raise ``ValueError``.

    Accepts lower case, spaces, a missing or extra dash, a missing ``P`` prefix, and the
    usual confusions O->0, I->1, L->1.

    Example:
        >>> pid = new_id(b"k", 7)
        >>> normalise(pid.lower().replace("-", " ")) == pid
        True
    """
    s = "".join(pid.split()).replace("-", "").upper()
    if len(s) == BODY_LEN + 2 and s[0] == "P":
        s = s[1:]
    s = s.translate(_CONFUSIONS)
    if not _body_ok(s):
        raise ValueError(f"not a valid person ID: {pid!r}")
    return PREFIX + s


@dataclass(frozen=True)
class IdAllocator:
    """Issues new IDs from a register secret and the state's sequence counter.

    Example:
        >>> alloc = IdAllocator(b"register-secret")
        >>> pid, next_seq = alloc.allocate(0, issued={})
        >>> pid == new_id(b"register-secret", 0), next_seq
        (True, 1)
    """

    secret: bytes
    #: IDs issued that the ``issued`` given to :meth:`allocate` may not hold: a
    #: reconciliation of part of the register passes only the part's IDs.
    also_issued: Container[str] = frozenset()

    def allocate(self, seq: int, issued: Mapping[str, int]) -> tuple[str, int]:
        """Return ``(id, next_seq)``: the first ID from ``seq`` on that was never issued."""
        while True:
            pid = new_id(self.secret, seq)
            seq += 1
            # A 40-bit hash can collide with an older ID; never hand an ID out twice.
            if pid not in issued and pid not in self.also_issued:
                return pid, seq


# ---------------------------------------------------------------------------------------
# State, events, constraints
# ---------------------------------------------------------------------------------------

EventKind = Literal[
    "created", "record_added", "record_removed", "merged_into", "split_from", "retired", "restored"
]


@dataclass(frozen=True, slots=True)
class Event:
    """One change to the published assignment.

    ``other_person_id`` is the counterpart: for ``merged_into`` the survivor, for
    ``split_from`` and ``restored`` the person the records came from, for
    ``record_added``/``record_removed`` the previous/next owner of the record.
    """

    kind: EventKind
    person_id: str
    record_key: str | None
    other_person_id: str | None
    run_id: str
    at: datetime
    cause: str


@dataclass(frozen=True)
class IdState:
    """Everything needed to reconcile the next run. Treat as immutable.

    Attributes:
        assignment: live record key -> live person ID.
        issued: every ID ever issued -> its issue sequence number (smaller = older).
            An ID is live iff it is issued and not retired.
        retired: retired ID -> successor IDs (empty when its records all vanished).
        last_records: retired ID -> the records it had when retired (for restoration).
        next_seq: next sequence number for :class:`IdAllocator`.

    Example:
        >>> IdState.from_assignment({"a:1": "P-X", "a:2": "P-X"}).issued
        {'P-X': 0}
    """

    assignment: dict[str, str] = field(default_factory=dict)
    issued: dict[str, int] = field(default_factory=dict)
    retired: dict[str, tuple[str, ...]] = field(default_factory=dict)
    last_records: dict[str, frozenset[str]] = field(default_factory=dict)
    next_seq: int = 0

    @classmethod
    def from_assignment(
        cls, assignment: Mapping[str, str], issue_order: Sequence[str] | None = None
    ) -> IdState:
        """Bootstrap a state from a published assignment without history.

        Args:
            assignment: record key -> person ID.
            issue_order: IDs oldest first; by default sorted IDs (deterministic).
        """
        order = list(issue_order) if issue_order is not None else sorted(set(assignment.values()))
        issued = {pid: i for i, pid in enumerate(order)}
        missing = set(assignment.values()) - issued.keys()
        if missing:
            raise ValueError(f"issue_order lacks IDs: {sorted(missing)[:5]}")
        return cls(dict(assignment), issued, {}, {}, len(order))

    def is_live(self, pid: str) -> bool:
        """True if ``pid`` was issued and is not retired."""
        return pid in self.issued and pid not in self.retired


@dataclass(frozen=True)
class Constraints:
    """Reviewer decisions, applied on every run.

    Example:
        >>> Constraints(must_link=[("a:1", "b:9")], cannot_link=[("a:1", "a:2")]).must_link
        (('a:1', 'b:9'),)
    """

    must_link: tuple[tuple[str, str], ...] = ()
    cannot_link: tuple[tuple[str, str], ...] = ()
    #: optional pairwise match scores, used to place unconstrained records when splitting
    scores: Mapping[tuple[str, str], float] | None = None

    def __init__(
        self,
        must_link: Iterable[tuple[str, str]] = (),
        cannot_link: Iterable[tuple[str, str]] = (),
        scores: Mapping[tuple[str, str], float] | None = None,
    ) -> None:
        object.__setattr__(self, "must_link", tuple(tuple(p) for p in must_link))
        object.__setattr__(self, "cannot_link", tuple(tuple(p) for p in cannot_link))
        object.__setattr__(self, "scores", scores)


@dataclass(frozen=True)
class ReconcileResult:
    """The new state and the events that lead to it, in a deterministic order."""

    state: IdState
    events: list[Event]


# ---------------------------------------------------------------------------------------
# Constraints
# ---------------------------------------------------------------------------------------


class _Find:
    """Union-find over hashables with path halving."""

    def __init__(self) -> None:
        self.parent: dict[Hashable, Hashable] = {}

    def find(self, x: Hashable) -> Hashable:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: Hashable, b: Hashable) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


@dataclass(frozen=True)
class _Label:
    """Label for a cluster made by a constraint; cannot collide with caller labels."""

    key: str


def _group(clusters: Mapping[str, Hashable]) -> dict[Hashable, list[str]]:
    groups: dict[Hashable, list[str]] = {}
    get = groups.get
    for rec, lab in clusters.items():
        g = get(lab)
        if g is None:
            groups[lab] = [rec]
        else:
            g.append(rec)
    return groups


def _constrain_groups(
    groups: dict[Hashable, list[str]],
    label_of: Mapping[str, Hashable],
    must_link: Iterable[tuple[str, str]],
    cannot_link: Iterable[tuple[str, str]],
    scores: Mapping[tuple[str, str], float] | None,
) -> dict[Hashable, list[str]]:
    """Merge groups along must-links and split groups holding a cannot-link pair."""
    # Pairs about records absent from this run are moot: the record is gone.
    ml = [(a, b) for a, b in must_link if a in label_of and b in label_of]
    cl = [(a, b) for a, b in cannot_link if a in label_of and b in label_of]
    if not ml and not cl:
        return groups
    units = _Find()  # must-link components of records
    for a, b in ml:
        units.union(a, b)
    for a, b in sorted(cl):
        if a == b or units.find(a) == units.find(b):
            raise ConstraintConflict(
                f"cannot-link ({a!r}, {b!r}) contradicts must-link decisions joining them"
            )

    groups = dict(groups)
    current: dict[str, Hashable] = {}  # record -> label, for records whose label changed
    # Must-link wins over the clustering: merge the clusters it joins.
    labels = _Find()
    for a, b in ml:
        labels.union(label_of[a], label_of[b])
    members: dict[Hashable, list[Hashable]] = {}
    for lab in list(labels.parent):
        members.setdefault(labels.find(lab), []).append(lab)
    for labs in members.values():
        if len(labs) < 2:
            continue
        recs = [r for lab in labs for r in groups.pop(lab)]
        new = _Label(min(recs))
        groups[new] = recs
        current.update(dict.fromkeys(recs, new))

    # Split every cluster that still holds a cannot-link pair.
    bad: dict[Hashable, list[tuple[str, str]]] = {}
    for a, b in cl:
        la, lb = current.get(a, label_of[a]), current.get(b, label_of[b])
        if la == lb:
            bad.setdefault(la, []).append((a, b))
    for lab, pairs in bad.items():
        for part in _split(groups.pop(lab), pairs, units, scores):
            groups[_Label(min(part))] = part
    return groups


def _split(
    recs: list[str],
    pairs: list[tuple[str, str]],
    units: _Find,
    scores: Mapping[tuple[str, str], float] | None,
) -> list[list[str]]:
    """Split one cluster so that no cannot-link pair stays together.

    Must-link components ("units") are never broken. Units named in a cannot-link pair
    are seeds: taken in order of smallest record key, each joins the first sub-group it
    has no cannot-link with, else opens a new one (greedy colouring). Every other unit
    joins the sub-group with the highest summed ``scores`` to its seeds, or the first
    sub-group (the one holding the smallest seed) when there are no scores or all tie.
    """
    by_unit: dict[Hashable, list[str]] = {}
    for r in recs:
        by_unit.setdefault(units.find(r), []).append(r)
    conflicts: dict[Hashable, set[Hashable]] = {}
    for a, b in pairs:
        ua, ub = units.find(a), units.find(b)
        conflicts.setdefault(ua, set()).add(ub)
        conflicts.setdefault(ub, set()).add(ua)
    seeds = sorted(conflicts, key=lambda u: min(by_unit[u]))
    sub_units: list[list[Hashable]] = []
    for u in seeds:
        for g in sub_units:
            if not conflicts[u].intersection(g):
                g.append(u)
                break
        else:
            sub_units.append([u])
    parts = [[r for u in g for r in by_unit[u]] for g in sub_units]
    seed_recs = [list(p) for p in parts]
    for u in sorted((u for u in by_unit if u not in conflicts), key=lambda u: min(by_unit[u])):
        best = 0
        if scores:
            totals = [
                sum(scores.get((r, s), scores.get((s, r), 0.0)) for r in by_unit[u] for s in seeds_)
                for seeds_ in seed_recs
            ]
            best = max(range(len(totals)), key=lambda i: (totals[i], -i))
        parts[best].extend(by_unit[u])
    return parts


def apply_constraints(
    clusters: Mapping[str, Hashable],
    must_link: Iterable[tuple[str, str]] = (),
    cannot_link: Iterable[tuple[str, str]] = (),
    scores: Mapping[tuple[str, str], float] | None = None,
) -> dict[str, str]:
    """Make clusters respect reviewer decisions.

    Clusters joined by a must-link pair are merged (union-find). A cluster that then holds
    a cannot-link pair is split as described in ``_split``: must-linked records always
    stay together, constrained records are placed by greedy colouring in order of their
    smallest record key, unconstrained records go by ``scores`` or to the first part.
    Pairs naming a record absent from ``clusters`` are ignored.

    Args:
        clusters: record key -> cluster label.
        must_link: pairs of records that must be in the same person.
        cannot_link: pairs of records that must be in different persons.
        scores: optional pairwise match scores ``{(a, b): p}`` (either order).

    Returns:
        record key -> canonical label: the smallest record key of its cluster.

    Raises:
        ConstraintConflict: a cannot-link pair is connected by must-links.

    Example:
        >>> apply_constraints({"a": 1, "b": 1, "c": 2}, must_link=[("b", "c")],
        ...                   cannot_link=[("a", "b")])
        {'a': 'a', 'b': 'b', 'c': 'b'}
    """
    groups = _constrain_groups(_group(clusters), clusters, must_link, cannot_link, scores)
    out: dict[str, str] = {}
    for recs in groups.values():
        out.update(dict.fromkeys(recs, min(recs)))
    return {r: out[r] for r in clusters}


# ---------------------------------------------------------------------------------------
# Reconciliation
# ---------------------------------------------------------------------------------------


def reconcile(
    previous: IdState | Mapping[str, str],
    clusters: Mapping[str, Hashable],
    *,
    constraints: Constraints | None = None,
    allocator: IdAllocator,
    run_id: str,
    now: datetime,
    restore_threshold: float = 0.5,
) -> ReconcileResult:
    """Carry person IDs over from the published state to this run's clusters.

    See the module docstring for the algorithm.

    Args:
        previous: the published state, or a bare record -> ID mapping (bootstrapped with
            :meth:`IdState.from_assignment`).
        clusters: every live record of this run -> its (arbitrary) cluster label.
            Records of ``previous`` missing here have vanished.
        constraints: reviewer must-link / cannot-link decisions.
        allocator: issues new IDs.
        run_id: copied into every event.
        now: copied into every event.
        restore_threshold: minimum Jaccard similarity between a cluster and a retired
            ID's last records for a non-exact restoration.

    Returns:
        The new state and the events. Events come in a fixed order: for each changed
        cluster by smallest record key, its lifecycle event (``created``, ``split_from``
        or ``restored``) then, record by record, ``record_removed`` from the previous
        owner and ``record_added`` to the new one; then vanished records
        (``record_removed``) by key; then retirements (``merged_into`` once per
        successor, or ``retired``) oldest ID first.

    Raises:
        ConstraintConflict: the constraints contradict each other.

    Example:
        >>> from datetime import datetime, timezone
        >>> t, alloc = datetime(2024, 1, 1, tzinfo=timezone.utc), IdAllocator(b"k")
        >>> r1 = reconcile(IdState(), {"a:1": 0, "a:2": 0, "b:1": 1},
        ...                allocator=alloc, run_id="r1", now=t)
        >>> r2 = reconcile(r1.state, {"a:1": "x", "a:2": "x", "b:1": "x"},
        ...                allocator=alloc, run_id="r2", now=t)
        >>> [e.kind for e in r2.events if e.record_key is None]
        ['merged_into']
    """
    state = previous if isinstance(previous, IdState) else IdState.from_assignment(previous)
    old = state.assignment
    get = old.get
    seq_of = state.issued

    groups = _group(clusters)
    if constraints is not None:
        groups = _constrain_groups(
            groups, clusters, constraints.must_link, constraints.cannot_link, constraints.scores
        )

    # How many of each old person's records are still present (None: new records).
    surviving = Counter(map(get, clusters))
    kept: set[str] = set()
    changed: list[list[str]] = []
    for recs in groups.values():
        o = get(recs[0])
        if o is not None and surviving[o] == len(recs) and all(get(r) == o for r in recs):
            kept.add(o)  # fast path: this person's surviving records, nothing else
        else:
            changed.append(recs)
    vanished = sorted(old.keys() - clusters.keys())

    # Changed clusters in order of smallest record key: the order-free canonical order.
    changed = [sorted(recs) for recs in changed]
    changed.sort(key=lambda recs: recs[0])
    overlaps = [Counter(map(get, recs)) for recs in changed]
    owner: list[str | None] = [None] * len(changed)  # ID each changed cluster ends up with
    how: list[str] = [""] * len(changed)  # event kind / cause for that ID
    taken: set[str] = set(kept)  # old IDs already placed

    # Restoration candidates: index retired record sets by record, only for changed ones.
    restore_edges: list[tuple[float, int, int, str]] = []  # (-jaccard, -n, cluster, id)
    if state.last_records:
        wanted = {r for recs in changed for r in recs}
        index: dict[str, list[str]] = {}
        for pid, recs_ in state.last_records.items():
            for r in recs_:
                if r in wanted:
                    index.setdefault(r, []).append(pid)
        for ci, recs in enumerate(changed):
            hits = Counter(pid for r in recs for pid in index.get(r, ()))
            for pid, n in hits.items():
                jac = n / (len(recs) + len(state.last_records[pid]) - n)
                if jac >= restore_threshold:
                    restore_edges.append((-jac, -n, ci, pid))
        restore_edges.sort(key=lambda e: (e[0], e[1], seq_of[e[3]], e[2]))
    restored: set[str] = set()

    def restore(exact_only: bool) -> None:
        for neg_jac, _n, ci, pid in restore_edges:
            if exact_only and neg_jac != -1.0:
                break  # sorted by similarity: exact matches come first
            if owner[ci] is None and pid not in restored:
                owner[ci], how[ci] = pid, "restored"
                restored.add(pid)

    # Step 2: exact restoration.
    restore(exact_only=True)

    # Step 3: pure merges (every old person in the cluster lies wholly inside it).
    for ci, ov in enumerate(overlaps):
        olds = [p for p in ov if p is not None]
        if olds and all(ov[p] == surviving[p] for p in olds):
            if owner[ci] is None:
                owner[ci] = min(olds, key=seq_of.__getitem__)
                how[ci] = "kept"
                taken.add(owner[ci])

    # Step 4: greedy bipartite matching by overlap, older IDs first on ties.
    edges = [
        (-n, seq_of[p], ci, p)
        for ci, ov in enumerate(overlaps)
        if owner[ci] is None
        for p, n in ov.items()
        if p is not None and p not in taken
    ]
    edges.sort()
    for _neg_n, _seq, ci, p in edges:
        if owner[ci] is None and p not in taken:
            owner[ci], how[ci] = p, "kept"
            taken.add(p)

    # Step 5: mostly-matching restoration.
    restore(exact_only=False)

    # Step 6: new IDs, allocated in canonical cluster order.
    issued = dict(state.issued)
    next_seq = state.next_seq
    for ci, ov in enumerate(overlaps):
        if owner[ci] is None:
            pid, seq = allocator.allocate(next_seq, issued)
            issued[pid] = seq - 1
            next_seq = seq
            owner[ci] = pid
            how[ci] = "split_from" if any(p is not None for p in ov) else "created"

    # Build the new state and the events.
    ev: list[Event] = []

    def emit(kind: EventKind, pid: str, rec: str | None, other: str | None, cause: str) -> None:
        ev.append(Event(kind, pid, rec, other, run_id, now, cause))

    def source(ov: Counter[str | None]) -> str | None:
        olds = [p for p in ov if p is not None]
        return min(olds, key=lambda p: (-ov[p], seq_of[p])) if olds else None

    assignment = dict(old)
    moved: dict[str, Counter[str]] = {}  # old ID -> new owners of its records
    old_records: dict[str, list[str]] = {}  # old ID -> its records, for involved persons
    for ci, recs in enumerate(changed):
        pid = owner[ci]
        assert pid is not None
        kind = how[ci]
        if kind == "created":
            emit("created", pid, None, None, "new records")
        elif kind == "split_from":
            emit("split_from", pid, None, source(overlaps[ci]), "split")
        elif kind == "restored":
            jac = next(-e[0] for e in restore_edges if e[2] == ci and e[3] == pid)
            cause = "exact match of last records" if jac == 1.0 else "majority match"
            emit("restored", pid, None, source(overlaps[ci]), cause)
        for r in recs:
            prev = get(r)
            if prev is not None:
                old_records.setdefault(prev, []).append(r)
            if prev == pid:
                continue
            assignment[r] = pid
            if prev is None:
                emit("record_added", pid, r, None, "new record")
            else:
                emit("record_removed", prev, r, pid, "moved")
                emit("record_added", pid, r, prev, "moved")
                moved.setdefault(prev, Counter())[pid] += 1
    for r in vanished:
        prev = old[r]
        del assignment[r]
        old_records.setdefault(prev, []).append(r)
        emit("record_removed", prev, r, None, "vanished")

    retired = dict(state.retired)
    last_records = dict(state.last_records)
    for pid in restored:
        del retired[pid]
        del last_records[pid]
    gone = [p for p in old_records if p not in taken and p not in restored]
    for p in sorted(gone, key=seq_of.__getitem__):
        went = moved.get(p, Counter())
        succ = tuple(sorted(went, key=lambda q: (-went[q], issued[q])))
        retired[p] = succ
        last_records[p] = frozenset(old_records[p])
        if succ:
            for q in succ:
                emit("merged_into", p, None, q, "merge")
        else:
            emit("retired", p, None, None, "all records vanished")

    new_state = IdState(assignment, issued, retired, last_records, next_seq)
    return ReconcileResult(new_state, ev)


def resolve(state: IdState, pid: str) -> list[str]:
    """Return the live ID(s) that stand for ``pid`` now.

    A live ID resolves to itself (even if parts split off it: those are new persons). A
    retired ID resolves by following ``retired`` pointers to live IDs, in pointer order
    (largest share of records first), without duplicates. An ID retired because all its
    records vanished resolves to ``[]``.

    Raises:
        KeyError: ``pid`` was never issued.

    Example:
        >>> s = IdState({"a": "P-B"}, {"P-A": 0, "P-B": 1}, {"P-A": ("P-B",)}, {}, 2)
        >>> resolve(s, "P-A"), resolve(s, "P-B")
        (['P-B'], ['P-B'])
    """
    if pid not in state.issued:
        raise KeyError(pid)
    out: list[str] = []
    seen = {pid}
    stack = [pid]
    while stack:
        p = stack.pop()
        succ = state.retired.get(p)
        if succ is None:
            out.append(p)
            continue
        # Reverse so that the first successor is explored first (depth-first, in order).
        for q in reversed(succ):
            if q not in seen:
                seen.add(q)
                stack.append(q)
    return out
