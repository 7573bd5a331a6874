"""The golden record: a person's best values, chosen from its records by survivorship rules.

Pure: :func:`golden` takes a person's records (their standardised columns, the kind of
source that holds each and when it was last written) and returns one
:class:`GoldenRecord`. :func:`linkage.register.store.refresh_golden` stores it in
``person_golden`` at every publish (batch run and enrolment group) and tells the change
feed when it changed; GetPerson, Resolve and WatchChanges return it.

Survivorship rules, field by field (ties always fall to the next rule, the last being
the record uid, so the answer never depends on row order):

* **Names** (given, family, father's, grandfather's), each part on its own: a civil
  registry's value over a programme roster's; then the value most of those records
  agree on; then the most recently written record. Values are the standardised forms
  (accents and case folded, the way matching sees them), title-cased for display.
* **Sex**: the same rules as names.
* **Birth date**: the civil registry's date when no other record knows it more
  precisely; a more precise date from a roster fills it in only when it agrees with
  the civil registry's year (and month, when the registry has one), so a roster's typo
  never overrides the registry's year. Without a civil-registry date: the most precise
  date (day over month over year-only, a default date such as 01/01/1975 counting as
  year-only, a year derived from an age last), then agreement, then recency. The
  precision goes with it.
* **National IDs**: every distinct one of the person's records, the civil registry's
  first, then by how many records carry it. (Two different IDs on one person are the
  clustering's business; both are shown, never hidden.)
* **Contact data** (phone; region, commune and village together, from one record): the
  most recently written record that has it (people move and change numbers), civil
  registry first on equal dates.
* **Programmes**: the programme labels of the person's programme sources, sorted.

``chosen_from`` says which record each field came from (field -> record uid).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

CIVIL_REGISTRY = "civil_registry"

#: Rank of a birth-date precision: lower is more precise.
PRECISION_RANK = {"day": 0, "month": 1, "year": 2, "placeholder": 2, "age": 3}
#: The precision a golden birth date reports (a default date is only a year).
REPORTED_PRECISION = {"day": "day", "month": "month", "year": "year", "placeholder": "year",
                      "age": "year"}

#: Name parts of the golden record -> the standardised column they come from.
NAME_COLUMNS = {"given_name": "given_std", "family_name": "family_std",
                "father_name": "father_std", "grandfather_name": "grandfather_std"}

#: Standardised columns :func:`golden` reads from each record.
INPUT_COLUMNS = ("given_std", "family_std", "father_std", "grandfather_std", "sex",
                 "birth_year", "birth_month", "birth_day", "birth_precision", "national_id",
                 "phone", "region", "commune", "village")


@dataclass(frozen=True)
class SourceRecord:
    """One record of a person, as survivorship sees it.

    Attributes:
        uid: ``<source>:<record key>``.
        kind: the source's kind (``civil_registry`` or ``programme``).
        programme: the source's programme label.
        written_at: when the record was last written (updated, else first seen).
        values: standardised columns (:data:`INPUT_COLUMNS`); missing means NULL.
    """

    uid: str
    kind: str | None
    programme: str | None
    written_at: dt.datetime | None
    values: dict[str, Any]

    def get(self, column: str) -> Any:
        v = self.values.get(column)
        return None if v is None or v == "" else v


@dataclass(frozen=True)
class GoldenBirthDate:
    year: int
    month: int | None = None
    day: int | None = None
    precision: str = "year"  # 'day' | 'month' | 'year'


@dataclass(frozen=True)
class GoldenRecord:
    """A person's best values (see the module docstring for how each is chosen)."""

    given_name: str | None = None
    family_name: str | None = None
    father_name: str | None = None
    grandfather_name: str | None = None
    sex: str | None = None  # 'M' | 'F'
    birth_date: GoldenBirthDate | None = None
    national_ids: tuple[str, ...] = ()
    phone: str | None = None
    region: str | None = None
    commune: str | None = None
    village: str | None = None
    programmes: tuple[str, ...] = ()
    chosen_from: dict[str, str] = field(default_factory=dict)  # field -> record uid

    def to_json(self) -> str:
        """The stored form (``person_golden.golden``, ``person_events.golden``)."""
        # By hand: dataclasses.asdict deep-copies every value and was half the cost of a
        # first publish's golden records.
        bd = self.birth_date
        d = {f: getattr(self, f) for f in _SCALARS}
        d["birth_date"] = None if bd is None else {"year": bd.year, "month": bd.month,
                                                    "day": bd.day, "precision": bd.precision}
        d["national_ids"], d["programmes"] = list(self.national_ids), list(self.programmes)
        d["chosen_from"] = self.chosen_from
        return json.dumps(d, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> GoldenRecord:
        d = json.loads(text)
        bd = d.pop("birth_date", None)
        return cls(birth_date=GoldenBirthDate(**bd) if bd else None,
                   national_ids=tuple(d.pop("national_ids", ())),
                   programmes=tuple(d.pop("programmes", ())), **d)


_SCALARS = ("given_name", "family_name", "father_name", "grandfather_name", "sex", "phone",
            "region", "commune", "village")


def _recency(r: SourceRecord) -> float:
    return r.written_at.timestamp() if r.written_at is not None else float("-inf")


def _source_rank(r: SourceRecord) -> int:
    return 0 if r.kind == CIVIL_REGISTRY else 1


def _pick(records: Sequence[SourceRecord], value: Callable[[SourceRecord], Hashable | None],
          *, rank: Callable[[SourceRecord], Any] = _source_rank
          ) -> tuple[Any, SourceRecord] | None:
    """The surviving (value, record): best ``rank``, then most agreed value among the
    records of that rank, then the most recent record, then the uid."""
    having = [(v, r) for r in records if (v := value(r)) is not None]
    if not having:
        return None
    best_rank = min(rank(r) for _, r in having)
    top = [(v, r) for v, r in having if rank(r) == best_rank]
    votes = Counter(v for v, _ in top)
    # max by (votes, recency), then the smallest uid: sort descending on the first two.
    v, r = min(top, key=lambda vr: (-votes[vr[0]], -_recency(vr[1]), vr[1].uid))
    return v, r


def _display(name: str) -> str:
    return " ".join(t[:1].upper() + t[1:] for t in name.split(" ") if t)


def _date(r: SourceRecord) -> tuple[int, int | None, int | None, str] | None:
    year, precision = r.get("birth_year"), r.get("birth_precision")
    if year is None or precision not in PRECISION_RANK:
        return None
    reported = REPORTED_PRECISION[precision]
    month = r.get("birth_month") if reported in ("day", "month") else None
    day = r.get("birth_day") if reported == "day" else None
    return int(year), month, day, reported


def _birth_date(records: Sequence[SourceRecord]) -> tuple[GoldenBirthDate, str] | None:
    def precision(r: SourceRecord) -> int:
        return PRECISION_RANK[r.get("birth_precision")]

    dated = [r for r in records if _date(r) is not None]
    if not dated:
        return None
    civil = [r for r in dated if r.kind == CIVIL_REGISTRY]
    if civil:
        base = _pick(civil, _date, rank=precision)
        assert base is not None
        (year, month, _day, _p), base_rec = base
        finer = [r for r in dated if precision(r) < precision(base_rec)
                 and _date(r)[0] == year  # type: ignore[index]
                 and (month is None or _date(r)[1] == month)]  # type: ignore[index]
        chosen = _pick(finer, _date, rank=lambda r: (precision(r), _source_rank(r))) or base
    else:
        chosen = _pick(dated, _date, rank=precision)
    assert chosen is not None
    (year, month, day, reported), rec = chosen
    return GoldenBirthDate(year, month, day, reported), rec.uid


def golden(records: Sequence[SourceRecord]) -> GoldenRecord:
    """The golden record of one person's records (empty when it has none)."""
    if len(records) == 1:  # most persons enrolment creates: every rule picks that record
        return _single(records[0])
    return _survive(records)


def _single(r: SourceRecord) -> GoldenRecord:
    """:func:`_survive` of one record, without the ranking (a third of enrolment's cost)."""
    values: dict[str, Any] = {}
    chosen: dict[str, str] = {}
    for name, column in NAME_COLUMNS.items():
        v = r.get(column)
        if v is not None:
            values[name], chosen[name] = _display(v), r.uid
    for name, v in (("sex", r.get("sex")), ("phone", r.get("phone"))):
        if v is not None:
            values[name], chosen[name] = v, r.uid
    d = _date(r)
    if d is not None:
        values["birth_date"], chosen["birth_date"] = GoldenBirthDate(*d), r.uid
    nid = r.get("national_id")
    if nid is not None:
        values["national_ids"], chosen["national_ids"] = (nid,), r.uid
    place = [r.get(c) for c in ("region", "commune", "village")]
    if any(v is not None for v in place):
        for c, v in zip(("region", "commune", "village"), place, strict=True):
            values[c] = _display(v) if v is not None else None
        chosen["location"] = r.uid
    values["programmes"] = (r.programme,) if r.kind == "programme" and r.programme else ()
    return GoldenRecord(**values, chosen_from=chosen)


def _survive(records: Sequence[SourceRecord]) -> GoldenRecord:
    """Every rule of the module docstring over several records."""
    values: dict[str, Any] = {}
    chosen: dict[str, str] = {}
    for name, column in NAME_COLUMNS.items():
        got = _pick(records, lambda r, c=column: r.get(c))
        if got is not None:
            values[name], chosen[name] = _display(got[0]), got[1].uid
    got = _pick(records, lambda r: r.get("sex"))
    if got is not None:
        values["sex"], chosen["sex"] = got[0], got[1].uid
    bd = _birth_date(records)
    if bd is not None:
        values["birth_date"], chosen["birth_date"] = bd
    ids: dict[str, tuple[int, int]] = {}
    for r in records:
        nid = r.get("national_id")
        if nid is not None:
            rank, count = ids.get(nid, (1, 0))
            ids[nid] = (min(rank, _source_rank(r)), count + 1)
    if ids:
        order = sorted(ids, key=lambda n: (ids[n][0], -ids[n][1], n))
        values["national_ids"] = tuple(order)
        first = min((r for r in records if r.get("national_id") == order[0]),
                    key=lambda r: (_source_rank(r), -_recency(r), r.uid))
        chosen["national_ids"] = first.uid

    def latest(has: Callable[[SourceRecord], bool]) -> SourceRecord | None:
        cands = [r for r in records if has(r)]
        return min(cands, key=lambda r: (-_recency(r), _source_rank(r), r.uid)) \
            if cands else None

    phone = latest(lambda r: r.get("phone") is not None)
    if phone is not None:
        values["phone"], chosen["phone"] = phone.get("phone"), phone.uid
    place = latest(lambda r: any(r.get(c) is not None for c in ("region", "commune", "village")))
    if place is not None:
        for c in ("region", "commune", "village"):
            v = place.get(c)
            values[c] = _display(v) if v is not None else None
        chosen["location"] = place.uid
    values["programmes"] = tuple(sorted({r.programme for r in records
                                         if r.kind == "programme" and r.programme}))
    return GoldenRecord(**values, chosen_from=chosen)


__all__ = ["GoldenBirthDate", "GoldenRecord", "INPUT_COLUMNS", "SourceRecord", "golden"]
