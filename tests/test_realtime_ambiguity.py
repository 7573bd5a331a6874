"""Enrolment weighs ambiguity as the batch does (issue 11, real time agrees with the batch).

Between two sources that list each person once, the batch raises a pair whose records
have no other plausible candidate (:mod:`linkage.batch.ambiguity`). Enrolment used to
score a new record on its pairwise weight alone, so the next batch moved records that
Enrol had kept apart (73 of the 89 moved in ``bench_enrol --agreement``). It now weighs
the candidates with the last run's prior per source pair, on the candidate graph around
the new record. Real register, real server, generated stubs, then a real batch run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import duckdb
import grpc
import pytest
from service_fixtures import build_small_register

from linkage.batch.ambiguity import CANDIDATE_P
from linkage.batch.pipeline import run
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.review.queue import WEAK_MARGIN_BITS, weak_bound
from linkage.service.server import create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

SEX = {"M": pb.SEX_MALE, "F": pb.SEX_FEMALE}


@contextmanager
def _served(project: Any) -> Iterator[pb_grpc.LinkageServiceStub]:
    """A real server on the register, on a free port, and a stub on it."""
    core = Realtime.open(project, options=RealtimeOptions(enrol_wait=5.0))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield pb_grpc.LinkageServiceStub(channel)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def _after_batch(project: Any, uid: str, new_uid: str
                 ) -> tuple[dict[str, str], list[tuple[Any, ...]]]:
    """The next batch's persons, and its stored link between the two records
    (pairwise weight, ambiguity bits, linked, one_to_one, probability)."""
    run(project, progress=lambda _: None)
    con = duckdb.connect(str(project.register), read_only=True)
    try:
        persons = dict(con.execute("SELECT uid, person_id FROM person_records").fetchall())
        link = con.execute("SELECT match_weight - ambiguity_bits, ambiguity_bits, linked, "
                           "one_to_one, match_probability "
                           "FROM links WHERE (uid_l = ? AND uid_r = ?) OR "
                           "(uid_l = ? AND uid_r = ?)",
                           [uid, new_uid, new_uid, uid]).fetchall()
    finally:
        con.close()
    return persons, link


Variant = tuple[int, str, bool]  # (years added, family name, region given)


def _lone_birth(api: pb_grpc.LinkageServiceStub, small: Any,
                variants: Callable[[dict[str, str]], list[Variant]], floor: float,
                wanted: Callable[[float], bool]) -> tuple[str, pb.PersonDetails, Any] | None:
    """A civil-registry birth with no cash-transfer record and details, as a roster
    might hold them (the names, sex, a birth year, maybe the region), for which Resolve
    finds that birth as the only candidate from ``floor`` with a probability ``wanted``."""
    return _birth_found(api, small, variants, floor,
                        lambda ps: len(ps) == 1 and wanted(ps[0]))


def _birth_found(api: pb_grpc.LinkageServiceStub, small: Any,
                 variants: Callable[[dict[str, str]], list[Variant]], floor: float,
                 wanted: Callable[[list[float]], bool]
                 ) -> tuple[str, pb.PersonDetails, Any] | None:
    """As :func:`_lone_birth`, the birth the best of the candidates from ``floor``, whose
    probabilities (best first) are ``wanted``."""
    for uid, row in sorted(small.rows.items()):
        if not uid.startswith("civil_registry:") or small.truth[uid] % 5 < 2:
            continue
        year = int(row["date_naissance"][-4:])
        for off, family, region in variants(row):
            details = pb.PersonDetails(
                name=pb.Name(given_name=row["prenom"], surname=family), sex=SEX[row["sexe"]],
                birth_date=pb.BirthDate(year=year + off, precision=pb.DATE_PRECISION_YEAR),
                location=pb.Location(region=row["region"] if region else ""))
            found = [c for c in api.Resolve(pb.ResolveRequest(
                person=details, min_match_probability=floor), timeout=10).candidates
                if c.match_probability >= floor]
            if (found and found[0].best_record.source == "civil_registry"
                    and found[0].best_record.record_key == uid.split(":")[1]
                    and wanted([c.match_probability for c in found])):
                return uid, details, found[0]
    return None


def _enrol(api: pb_grpc.LinkageServiceStub, details: pb.PersonDetails) -> Any:
    return api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="NEW-1",
                                     person=details), timeout=10)


def _weight(p: float) -> float:
    return math.log2(p / (1 - p))


def test_a_lone_candidate_is_linked_at_enrolment_as_the_next_batch_links_it(
        tmp_path: pytest.TempPathFactory) -> None:
    small = build_small_register(tmp_path)
    first = run(small.project, progress=lambda _: None)
    bits = first.summary["ambiguity"]["prior_bits"]
    assert set(bits) == {"cash_transfer|civil_registry"} and bits[
        "cash_transfer|civil_registry"] > 2.0
    threshold, review = small.project.thresholds.match, small.project.thresholds.review
    with _served(small.project) as api:
        # A year one off, and a family-name typo, in the harder variants.
        chosen = _lone_birth(
            api, small, lambda r: [(0, r["nom"], True), (1, r["nom"], True),
                                   (1, r["nom"][:-1], True)],
            review, lambda p: p < threshold)
        assert chosen is not None, "no birth scored between the thresholds on its own"
        uid, details, pairwise = chosen
        got = _enrol(api, details)
        # Alone in the civil registry, among lists that overlap: the batch's odds.
        assert got.outcome == pb.ENROL_OUTCOME_LINKED, (pairwise.match_probability, got)
        assert got.person_id == pairwise.person_id
        assert got.match_probability >= threshold > pairwise.match_probability
    # The next batch links them too, on its own ambiguity bits.
    persons, link = _after_batch(small.project, uid, "cash_transfer:NEW-1")
    assert persons["cash_transfer:NEW-1"] == persons[uid]
    assert link and link[0][1] > 0 and link[0][2]


def test_a_lone_candidate_under_the_review_threshold_is_raised_by_the_batch_and_enrolment(
        tmp_path: pytest.TempPathFactory) -> None:
    """The ambiguity step reads candidates under the review threshold (from
    ``CANDIDATE_P``): a roster record whose one plausible civil-registry candidate scores
    under the review threshold on its own fields, with no competitor, is linked to it by
    enrolment and again by the next batch. Before, pairs under the review threshold were
    never weighed and stayed apart however alone they were."""
    small = build_small_register(tmp_path)
    first = run(small.project, progress=lambda _: None)
    bits = first.summary["ambiguity"]["prior_bits"]["cash_transfer|civil_registry"]
    threshold, review = small.project.thresholds.match, small.project.thresholds.review
    assert CANDIDATE_P < review
    with _served(small.project) as api:
        # Fewer details than a roster usually gives: a family name with a typo, a year
        # one to three off, no place; raised by the source pair's prior bits, the pair
        # would reach the match threshold.
        chosen = _lone_birth(
            api, small, lambda r: [(1, r["nom"][:-1], False), (2, r["nom"], False),
                                   (2, r["nom"][:-1], False), (3, r["nom"], False),
                                   (3, r["nom"][:-1], False)],
            CANDIDATE_P,
            lambda p: p < review and _weight(p) + bits > _weight(threshold) + 0.5)
        assert chosen is not None, "no birth scored between CANDIDATE_P and review alone"
        uid, details, pairwise = chosen
        got = _enrol(api, details)
        assert got.outcome == pb.ENROL_OUTCOME_LINKED, (pairwise.match_probability, got)
        assert got.person_id == pairwise.person_id
        assert got.match_probability >= threshold > review > pairwise.match_probability
    persons, link = _after_batch(small.project, uid, "cash_transfer:NEW-1")
    assert persons["cash_transfer:NEW-1"] == persons[uid]
    # Stored (raised over the review threshold) with its pairwise weight under it.
    assert link and link[0][2] and link[0][0] < _weight(review)


def test_a_one_to_one_pair_between_the_two_thresholds_is_linked_by_enrolment_and_the_batch(
        tmp_path: pytest.TempPathFactory) -> None:
    """A pair the one-to-one step weighed is linked from ``thresholds.one_to_one`` (0.5
    by default), not from the match threshold (0.95 in this project), in real time as in
    the batch: a roster record whose civil-registry birth, weighed against the record's
    other candidates, lands between the two is LINKED, queued for review as a link on
    weak evidence, and the next batch links the pair too.

    The two lists overlap so much that a lone candidate gains about 8 bits, past the
    match threshold; a birth with a competitor gains less: as the batch weighs a record
    with candidates of odds K1, K2, ... (each with no other candidate), the first's odds
    are K1 / (1 + K2 + ...)."""
    small = build_small_register(tmp_path)
    project = small.project
    first = run(project, progress=lambda _: None)
    bits = first.summary["ambiguity"]["prior_bits"]["cash_transfer|civil_registry"]
    t = project.thresholds
    low, high = t.one_to_one_match, t.match
    assert t.review < low < high
    with _served(project) as api:
        def weighed(ps: list[float]) -> float:  # the star's odds, as bits
            return (_weight(ps[0]) + bits
                    - math.log2(1 + sum(2 ** (_weight(p) + bits) for p in ps[1:])))

        chosen = _birth_found(
            api, small, lambda r: [(off, family, region) for off in (0, 1, 2, 3)
                                   for family in (r["nom"], r["nom"][:-1], "")
                                   for region in (True, False)],
            CANDIDATE_P,
            # Weak (under WEAK_MARGIN_BITS above its threshold), so it is queued.
            lambda ps: _weight(low) + 0.5 < weighed(ps) < _weight(low) + WEAK_MARGIN_BITS - 0.5)
        assert chosen is not None, "no birth weighed between the two thresholds"
        uid, details, pairwise = chosen
        got = _enrol(api, details)
        assert got.outcome == pb.ENROL_OUTCOME_LINKED, (pairwise.match_probability, got)
        assert got.person_id == pairwise.person_id
        assert low <= got.match_probability < weak_bound(low) < high
    con = duckdb.connect(str(small.project.register), read_only=True)
    try:
        queued = con.execute("SELECT reasons FROM review_items WHERE kind = 'enrolment' "
                             "AND uid_a = 'cash_transfer:NEW-1'").fetchall()
    finally:
        con.close()
    assert queued == [("weak_enrolment_link",)]
    persons, link = _after_batch(small.project, uid, "cash_transfer:NEW-1")
    assert persons["cash_transfer:NEW-1"] == persons[uid]
    (_, _, linked, one_to_one, p), = link
    assert linked and one_to_one and low <= p < high
    # Linked, so no review-band pair; weak for its own threshold, so a doubtful person.
    con = duckdb.connect(str(project.register), read_only=True)
    try:
        items = con.execute("SELECT kind, reasons, person_id FROM review_items WHERE "
                            "list_contains(record_uids, 'cash_transfer:NEW-1') AND "
                            "created_by <> 'enrol'").fetchall()
    finally:
        con.close()
    assert [(k, pid) for k, r, pid in items if "weak_link" in r.split(",")] == [
        ("person", persons[uid])]
    assert not [k for k, _, _ in items if k == "pair"]
