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

import duckdb
import grpc
import pytest
from service_fixtures import build_small_register

from linkage.batch.ambiguity import CANDIDATE_P
from linkage.batch.pipeline import run
from linkage.realtime.core import Realtime, RealtimeOptions
from linkage.service.server import create_server
from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

SEX = {"M": pb.SEX_MALE, "F": pb.SEX_FEMALE}


def test_a_lone_candidate_is_linked_at_enrolment_as_the_next_batch_links_it(
        tmp_path: pytest.TempPathFactory) -> None:
    small = build_small_register(tmp_path)
    first = run(small.project, progress=lambda _: None)
    bits = first.summary["ambiguity"]["prior_bits"]
    assert set(bits) == {"cash_transfer|civil_registry"} and bits[
        "cash_transfer|civil_registry"] > 2.0
    threshold, review = small.project.thresholds.match, small.project.thresholds.review
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    chosen = None
    try:
        api = pb_grpc.LinkageServiceStub(channel)
        # Births with no cash-transfer record, as a roster might hold them: the names
        # and sex, a birth year (one off, in the harder variants) and the region.
        for uid, row in sorted(small.rows.items()):
            if not uid.startswith("civil_registry:") or small.truth[uid] % 5 < 2:
                continue
            year = int(row["date_naissance"][-4:])
            for off, family in ((0, row["nom"]), (1, row["nom"]), (1, row["nom"][:-1])):
                details = pb.PersonDetails(
                    name=pb.Name(given_name=row["prenom"], surname=family),
                    sex=SEX[row["sexe"]],
                    birth_date=pb.BirthDate(year=year + off,
                                            precision=pb.DATE_PRECISION_YEAR),
                    location=pb.Location(region=row["region"]))
                found = api.Resolve(pb.ResolveRequest(person=details),
                                    timeout=10).candidates
                plausible = [c for c in found if c.match_probability >= review]
                if (len(plausible) == 1
                        and plausible[0].best_record.source == "civil_registry"
                        and plausible[0].best_record.record_key == uid.split(":")[1]
                        and plausible[0].match_probability < threshold):
                    chosen = (uid, details, plausible[0])
                    break
            if chosen:
                break
        assert chosen is not None, "no birth scored between the thresholds on its own"
        uid, details, pairwise = chosen
        got = api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="NEW-1",
                                        person=details), timeout=10)
        # Alone in the civil registry, among lists that overlap: the batch's odds.
        assert got.outcome == pb.ENROL_OUTCOME_LINKED, (pairwise.match_probability, got)
        assert got.person_id == pairwise.person_id
        assert got.match_probability >= threshold > pairwise.match_probability
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()
    # The next batch links them too, on its own ambiguity bits.
    run(small.project, progress=lambda _: None)
    con = duckdb.connect(str(small.project.register), read_only=True)
    try:
        persons = dict(con.execute("SELECT uid, person_id FROM person_records").fetchall())
        link = con.execute("SELECT ambiguity_bits, linked FROM links WHERE "
                           "(uid_l = ? AND uid_r = ?) OR (uid_l = ? AND uid_r = ?)",
                           [uid, "cash_transfer:NEW-1", "cash_transfer:NEW-1", uid]).fetchall()
    finally:
        con.close()
    assert persons["cash_transfer:NEW-1"] == persons[uid]
    assert link and link[0][0] > 0 and link[0][1]


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
    core = Realtime.open(small.project, options=RealtimeOptions(enrol_wait=5.0))
    server, port = create_server(core, port=0)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    chosen = None
    try:
        api = pb_grpc.LinkageServiceStub(channel)
        for uid, row in sorted(small.rows.items()):
            if not uid.startswith("civil_registry:") or small.truth[uid] % 5 < 2:
                continue
            year = int(row["date_naissance"][-4:])
            # Fewer details than a roster usually gives: the given name, a family name
            # with a typo, a year two off, no place.
            for off, family in ((1, row["nom"][:-1]), (2, row["nom"]), (2, row["nom"][:-1]),
                                (3, row["nom"]), (3, row["nom"][:-1])):
                details = pb.PersonDetails(
                    name=pb.Name(given_name=row["prenom"], surname=family),
                    sex=SEX[row["sexe"]],
                    birth_date=pb.BirthDate(year=year + off,
                                            precision=pb.DATE_PRECISION_YEAR))
                found = api.Resolve(pb.ResolveRequest(
                    person=details, min_match_probability=CANDIDATE_P), timeout=10).candidates
                p = found[0].match_probability if len(found) == 1 else 0.0
                # Raised by the source pair's prior bits, it reaches the match threshold.
                if (len(found) == 1 and found[0].best_record.source == "civil_registry"
                        and found[0].best_record.record_key == uid.split(":")[1]
                        and CANDIDATE_P <= p < review
                        and math.log2(p / (1 - p)) + bits
                        > math.log2(threshold / (1 - threshold)) + 0.5):
                    chosen = (uid, details, found[0])
                    break
            if chosen:
                break
        assert chosen is not None, "no birth scored between CANDIDATE_P and review alone"
        uid, details, pairwise = chosen
        got = api.Enrol(pb.EnrolRequest(source="cash_transfer", record_key="NEW-1",
                                        person=details), timeout=10)
        assert got.outcome == pb.ENROL_OUTCOME_LINKED, (pairwise.match_probability, got)
        assert got.person_id == pairwise.person_id
        assert got.match_probability >= threshold > review > pairwise.match_probability
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()
    second = run(small.project, progress=lambda _: None)
    con = duckdb.connect(str(small.project.register), read_only=True)
    try:
        persons = dict(con.execute("SELECT uid, person_id FROM person_records").fetchall())
        link = con.execute("SELECT match_weight - ambiguity_bits, linked FROM links WHERE "
                           "(uid_l = ? AND uid_r = ?) OR (uid_l = ? AND uid_r = ?)",
                           [uid, "cash_transfer:NEW-1", "cash_transfer:NEW-1", uid]).fetchall()
    finally:
        con.close()
    assert persons["cash_transfer:NEW-1"] == persons[uid]
    # Stored (raised over the review threshold) with its pairwise weight under it.
    assert link and link[0][1] and link[0][0] < math.log2(review / (1 - review))
    assert second.summary["ambiguity"]["pairs_adjusted"] > 0
