"""Converters between linkage.v1 messages and the plain values of the real-time core.

Only conversion and validation of message shape happen here; every decision is the
core's (:mod:`linkage.realtime.core`).
"""

from __future__ import annotations

import datetime as dt
import json

from google.protobuf.timestamp_pb2 import Timestamp

from linkage.batch.runs import RunInfo
from linkage.errors import InvalidRequest
from linkage.ids.golden import GoldenRecord
from linkage.realtime.core import ChangesPage, PersonInput, PersonsPage
from linkage.realtime.enrol import EnrolResult
from linkage.realtime.index import Resolution
from linkage.realtime.lookup import EventRow, PersonView, Programme
from linkage.service.auth import TokenRow
from linkage.service.limits import ServiceLimits, clip
from linkage.service.v1 import linkage_pb2 as pb

NATIONAL_ID_TYPES = {"UIN", "NID", "NATIONAL_ID"}
_NAME_ORDERS = {
    pb.NAME_ORDER_FAMILY_GIVEN: "family_given",
    pb.NAME_ORDER_GIVEN_FAMILY: "given_family",
    pb.NAME_ORDER_GIVEN_FATHER_GRANDFATHER: "given_father_grandfather",
}
_SEX = {pb.SEX_MALE: "M", pb.SEX_FEMALE: "F"}
_SEX_OUT = {v: k for k, v in _SEX.items()}
_PRECISIONS = {"day": pb.DATE_PRECISION_DAY, "month": pb.DATE_PRECISION_MONTH,
               "year": pb.DATE_PRECISION_YEAR}
_OUTCOMES = {"created": pb.ENROL_OUTCOME_CREATED, "linked": pb.ENROL_OUTCOME_LINKED,
             "unchanged": pb.ENROL_OUTCOME_UNCHANGED, "updated": pb.ENROL_OUTCOME_UPDATED,
             "queued": pb.ENROL_OUTCOME_QUEUED}
_EVENT_KINDS = {"created": pb.EVENT_KIND_CREATED, "record_added": pb.EVENT_KIND_RECORD_ADDED,
                "record_removed": pb.EVENT_KIND_RECORD_REMOVED,
                "merged_into": pb.EVENT_KIND_MERGED_INTO, "split_from": pb.EVENT_KIND_SPLIT_FROM,
                "retired": pb.EVENT_KIND_RETIRED, "restored": pb.EVENT_KIND_RESTORED,
                "golden_changed": pb.EVENT_KIND_GOLDEN_CHANGED}
_RUN_STATES = {"running": pb.RUN_STATE_RUNNING, "published": pb.RUN_STATE_PUBLISHED,
               "failed": pb.RUN_STATE_FAILED}
_KINDS = {"programme": pb.SOURCE_KIND_PROGRAMME, "civil_registry": pb.SOURCE_KIND_CIVIL_REGISTRY}


def _s(value: str) -> str | None:
    value = value.strip()
    return value or None


def _birth_date(b: pb.BirthDate, path: str, problems: list[tuple[str, str]]) -> str | None:
    if not 1000 <= b.year <= 9999:
        problems.append((f"{path}.year", "required: four digits"))
        return None
    if not 0 <= b.month <= 12:
        problems.append((f"{path}.month", "must be 1-12, or 0 when unknown"))
        return None
    if not 0 <= b.day <= 31:
        problems.append((f"{path}.day", "must be 1-31, or 0 when unknown"))
        return None
    precision = b.precision
    if precision == pb.DATE_PRECISION_UNSPECIFIED:
        precision = (pb.DATE_PRECISION_DAY if b.month and b.day else
                     pb.DATE_PRECISION_MONTH if b.month else pb.DATE_PRECISION_YEAR)
    if precision == pb.DATE_PRECISION_DAY:
        if not (b.month and b.day):
            problems.append((f"{path}.precision", "DAY precision needs month and day"))
            return None
        try:
            dt.date(b.year, b.month, b.day)
        except ValueError:
            problems.append((f"{path}.day", "not a day of that month"))
            return None
        return f"{b.year:04d}-{b.month:02d}-{b.day:02d}"
    if precision == pb.DATE_PRECISION_MONTH:
        if not b.month:
            problems.append((f"{path}.precision", "MONTH precision needs a month"))
            return None
        return f"{b.year:04d}-{b.month:02d}-00"
    if precision == pb.DATE_PRECISION_YEAR:
        return f"{b.year:04d}"
    problems.append((f"{path}.precision", "unknown precision"))
    return None


def person_input(p: pb.PersonDetails, path: str = "person") -> PersonInput:
    """PersonDetails -> the core's raw canonical fields; :class:`InvalidRequest` if malformed."""
    problems: list[tuple[str, str]] = []
    raw: dict[str, str | None] = {}
    n = p.name
    given = " ".join(x for x in (n.given_name.strip(), n.second_name.strip()) if x)
    raw["given_name"] = given or None
    raw["family_name"] = _s(n.surname)
    raw["father_name"] = _s(n.father_name)
    raw["grandfather_name"] = _s(n.grandfather_name)
    raw["full_name"] = _s(n.full_name)
    order = _NAME_ORDERS.get(n.full_name_order)
    if raw["full_name"] and not given and order is None:
        problems.append((f"{path}.name.full_name_order", "required with full_name"))
    if not any(raw[k] for k in ("given_name", "family_name", "father_name", "grandfather_name",
                                "full_name")):
        problems.append((f"{path}.name", "required: give at least one of given_name, surname, "
                                         "father_name or full_name"))
    if p.sex not in (pb.SEX_UNSPECIFIED, *_SEX):
        problems.append((f"{path}.sex", "unknown value"))
    raw["sex"] = _SEX.get(p.sex)
    has_birth, has_age = p.HasField("birth_date"), p.HasField("age")
    if has_birth and has_age:
        problems.append((f"{path}.age", "give birth_date or age, not both"))
    raw["birth_date"] = _birth_date(p.birth_date, f"{path}.birth_date", problems) \
        if has_birth else None
    ref = None
    if has_age:
        if not 0 <= p.age.age <= 120:
            problems.append((f"{path}.age.age", "must be between 0 and 120"))
        try:
            ref = dt.date.fromisoformat(p.age.reference_date)
        except ValueError:
            problems.append((f"{path}.age.reference_date", "required, as YYYY-MM-DD"))
        raw["age"] = str(p.age.age)
    nid = None
    for i, ident in enumerate(p.identifiers):
        kind = ident.type.strip().upper()
        if kind not in NATIONAL_ID_TYPES:
            problems.append((f"{path}.identifiers[{i}].type",
                             f"unsupported identifier type (supported: "
                             f"{', '.join(sorted(NATIONAL_ID_TYPES))})"))
        elif not ident.value.strip():
            problems.append((f"{path}.identifiers[{i}].value", "required"))
        elif nid is not None and nid != ident.value.strip():
            problems.append((f"{path}.identifiers[{i}]", "two different national IDs"))
        else:
            nid = ident.value.strip()
    raw["national_id"] = nid
    raw["phone"] = _s(p.phone_number)
    raw["region"] = _s(p.location.region)
    raw["commune"] = _s(p.location.commune)
    raw["village"] = _s(p.location.village)
    raw["household_id"] = _s(p.household_id)
    raw["mother_name"] = _s(p.mother_name)
    # The project's extra fields, by name; Realtime.standardise refuses undeclared ones.
    for name, value in sorted(p.extra.items()):
        raw[f"extra.{name}"] = _s(value)
    if problems:
        raise InvalidRequest(problems)
    return PersonInput({k: v for k, v in raw.items() if v is not None}, order, ref)


def record_ref(uid: str | None) -> pb.RecordRef:
    if not uid:
        return pb.RecordRef()
    source, _, key = uid.partition(":")
    return pb.RecordRef(source=source, record_key=key)


def timestamp(value: dt.datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    ts.FromDatetime(value)
    return ts


def resolve_response(res: Resolution, *, model_version: str, match_threshold: float
                     ) -> pb.ResolveResponse:
    out = pb.ResolveResponse(model_version=model_version, match_threshold=match_threshold,
                             records_compared=res.records_compared)
    for c in res.candidates:
        out.candidates.append(pb.Candidate(
            person_id=c.person_id, match_probability=c.match_probability,
            match_weight=c.match_weight, is_match=c.match_probability >= match_threshold,
            best_record=record_ref(c.uid), records_compared=c.records_compared,
            golden=golden(c.golden),
            evidence=[pb.FieldEvidence(comparison=e.comparison, level=e.level,
                                       level_label=e.label, match_weight=e.weight,
                                       tf_adjustment=e.tf_adjustment) for e in c.evidence]))
    return out


def enrol_response(res: EnrolResult) -> pb.EnrolResponse:
    return pb.EnrolResponse(record=record_ref(res.uid), person_id=res.person_id or "",
                            outcome=_OUTCOMES[res.outcome],
                            match_probability=res.match_probability)


def rejection(exc: InvalidRequest, limits: ServiceLimits | None = None) -> tuple[str, str]:
    """(error_field, error_reason) of a rejected EnrolBatch record: its first violation,
    clipped (see :class:`~linkage.service.limits.ServiceLimits`)."""
    lim = limits or ServiceLimits()
    f, reason = exc.violations[0] if exc.violations else ("", "invalid")
    return clip(f, lim.max_description_chars), clip(reason, lim.max_description_chars)


def enrol_batch_response(results: list[EnrolResult | InvalidRequest], keys: list[str],
                         limits: ServiceLimits | None = None) -> pb.EnrolBatchResponse:
    out = pb.EnrolBatchResponse()
    counts = dict.fromkeys(("created", "linked", "unchanged", "updated", "queued", "rejected"), 0)
    for i, (res, key) in enumerate(zip(results, keys, strict=True)):
        if isinstance(res, InvalidRequest):
            f, reason = rejection(res, limits)
            out.results.append(pb.EnrolResult(index=i, record_key=key,
                                              outcome=pb.ENROL_OUTCOME_REJECTED,
                                              error_field=f, error_reason=reason))
            counts["rejected"] += 1
            continue
        out.results.append(pb.EnrolResult(index=i, record_key=key, person_id=res.person_id or "",
                                          outcome=_OUTCOMES[res.outcome],
                                          match_probability=res.match_probability))
        counts[res.outcome] += 1
    for k, v in counts.items():
        setattr(out, k, v)
    return out


def golden(g: GoldenRecord | None) -> pb.GoldenRecord | None:
    """The golden record message (None: the field stays unset)."""
    if g is None:
        return None
    bd = None
    if g.birth_date is not None:
        bd = pb.BirthDate(year=g.birth_date.year, month=g.birth_date.month or 0,
                          day=g.birth_date.day or 0,
                          precision=_PRECISIONS.get(g.birth_date.precision,
                                                    pb.DATE_PRECISION_UNSPECIFIED))
    return pb.GoldenRecord(
        name=pb.Name(given_name=g.given_name or "", surname=g.family_name or "",
                     father_name=g.father_name or "",
                     grandfather_name=g.grandfather_name or ""),
        sex=_SEX_OUT.get(g.sex or "", pb.SEX_UNSPECIFIED), birth_date=bd,
        identifiers=[pb.Identifier(type="UIN", value=n) for n in g.national_ids],
        phone_number=g.phone or "",
        location=pb.Location(region=g.region or "", commune=g.commune or "",
                             village=g.village or ""),
        programmes=list(g.programmes),
        chosen_from={f: record_ref(uid) for f, uid in g.chosen_from.items()})


def event(ev: EventRow) -> pb.PersonEvent:
    return pb.PersonEvent(seq=ev.seq, kind=_EVENT_KINDS.get(ev.kind, pb.EVENT_KIND_UNSPECIFIED),
                          person_id=ev.person_id, record=record_ref(ev.record_uid),
                          other_person_id=ev.other_person_id or "", run_id=ev.run_id or "",
                          at=timestamp(ev.at), cause=ev.cause or "", golden=golden(ev.golden))


def _programme(p: Programme) -> pb.ProgrammeEnrolment:
    return pb.ProgrammeEnrolment(programme=p.programme, source=p.source,
                                 record_keys=p.record_keys)


def person(view: PersonView) -> pb.Person:
    return pb.Person(
        person_id=view.person_id,
        status=pb.PERSON_STATUS_LIVE if view.status == "live" else pb.PERSON_STATUS_RETIRED,
        requested_id=view.requested_id, redirected=view.redirected,
        successor_ids=view.successor_ids,
        records=[pb.PersonRecord(record=pb.RecordRef(source=r.source, record_key=r.record_key),
                                 programme=r.programme or "",
                                 source_kind=_KINDS.get(r.kind or "", pb.SOURCE_KIND_UNSPECIFIED),
                                 first_seen=timestamp(r.first_seen)) for r in view.records],
        programmes=[_programme(p) for p in view.programmes],
        lineage=[event(e) for e in view.lineage], golden=golden(view.golden))


def persons(results: list[tuple[str, PersonView | None]]) -> pb.GetPersonsResponse:
    return pb.GetPersonsResponse(results=[
        pb.PersonResult(requested_id=pid, found=view is not None,
                        person=person(view) if view is not None else None)
        for pid, view in results])


def programme_persons(page: PersonsPage) -> pb.ListProgrammePersonsResponse:
    return pb.ListProgrammePersonsResponse(
        members=[pb.ProgrammeMember(person_id=m.person_id,
                                    records=[record_ref(u) for u in m.uids],
                                    golden=golden(m.golden)) for m in page.members],
        next_page_token=page.next_page_token)


def changes(page: ChangesPage) -> pb.ListChangesResponse:
    return pb.ListChangesResponse(events=[event(e) for e in page.events],
                                  next_page_token=page.next_page_token, last_seq=page.last_seq)


def programmes(view: PersonView) -> pb.ListProgrammesResponse:
    return pb.ListProgrammesResponse(person_id=view.person_id, redirected=view.redirected,
                                     programmes=[_programme(p) for p in view.programmes])


def run(info: RunInfo) -> pb.Run:
    return pb.Run(run_id=info.run_id, state=_RUN_STATES[info.state],
                  register_run_id=info.register_run_id or "",
                  started_at=timestamp(info.started_at), finished_at=timestamp(info.finished_at),
                  model_version=info.model_version or "",
                  summary_json=json.dumps(info.summary) if info.summary else "",
                  error=info.error or "", progress_lines=len(info.lines))


def api_token(row: TokenRow) -> pb.ApiToken:
    """A :class:`linkage.service.auth.TokenRow` (never holds the token itself)."""
    msg = pb.ApiToken(token_id=row.token_id, name=row.name, role=row.role,
                      sources=list(row.sources), issued_at=timestamp(row.issued_at))
    if row.revoked_at is not None:
        msg.revoked_at.CopyFrom(timestamp(row.revoked_at))
    return msg
