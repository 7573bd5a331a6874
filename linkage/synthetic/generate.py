"""Synthetic unified-social-register benchmark: a population, its sources, the truth.

Usage::

    python -m linkage.synthetic.generate --persons 100000 --profile sahel --seed 1 --out DIR

writes ``DIR/project.yaml``, ``DIR/sources/*.yaml``, ``DIR/data/*`` (one file per
source, each in its own format, columns, language and encoding), ``DIR/truth.csv``
(source, record_key, person_id, household_id, bad) and ``DIR/manifest.json``.

The population lives in households (shared family or patronymic names, village,
phone; twins share a birth date). Sources are a civil-registry extract and three
programme rosters (cash transfer, public works / HIMO, nutrition), each with its own
coverage and errors. A handful of deliberately bad rows per source (unparseable dates,
unknown sex codes, empty names) must be rejected by ingest; they stay in the truth
with ``bad=true``.

``--realism hard`` (``generate(..., realism="hard")``) adds what independent registers
contain and the normal mode does not (see :mod:`linkage.synthetic.hard`): same persons,
same coverage, same normal errors, plus those features; it also writes
``DIR/features.csv`` (source, record_key, feature). The default, ``normal``, writes the
same files as before the option existed.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from linkage.synthetic.hard import GROUPS, REALISMS, Hardener, harden_spec
from linkage.synthetic.noise import age_at
from linkage.synthetic.population import NOW, Household, Person, PopulationBuilder
from linkage.synthetic.profiles import PROFILES, Profile
from linkage.synthetic.sources import Noise, Renderer, Row, SourceSpec

__all__ = ["generate", "main"]

_NUTRITION_REF = date(2024, 1, 1)  # children under five on this day are eligible
_HIMO_CYCLES = (date(2023, 2, 1), date(2023, 7, 1), date(2024, 1, 15))
_BAD_RATE = 0.0005
_DMY_YEAR_FORMS = (("00/00/{y}", 0.45), ("01/01/{y}", 0.45), ("{y}", 0.10))


# ---------------------------------------------------------------------------------------
# Source layouts
# ---------------------------------------------------------------------------------------
def _specs(profile: Profile) -> list[SourceSpec]:
    """The four sources of a profile: civil registry, cash transfer, HIMO, nutrition."""
    horn = profile.patronymic
    cr_names = (
        {"given_name": "prenom", "father_name": "nom_pere", "grandfather_name": "nom_grand_pere"}
        if horn
        else {"given_name": "prenom", "family_name": "nom"}
    )
    nid_col = "NNI" if horn else "NINA"
    civil = SourceSpec(
        name="civil_registry",
        kind="civil_registry",
        label="État civil - extrait " + ("NNI" if horn else "RAVEC / NINA"),
        file="civil_registry.csv",
        fmt="csv",
        delimiter=";",
        encoding="utf-8",
        record_key="num_acte",
        columns={
            **cr_names,
            "sex": "sexe",
            "birth_date": "date_naissance",
            "national_id": nid_col,
            "mother_name": "nom_mere",
            "region": "region",
            "commune": "commune",
            "village": "quartier" if horn else "village",
        },
        extra_columns=("date_declaration",),
        sex_codes={"M": ["M"], "F": ["F"]},
        birth_date_format="%d/%m/%Y",
        key_format="EC-{n:07d}",
        bad_dates=("31/02/19x5", "32/13/1980", "1O/O5/1987", "??/??/19"),
        noise=Noise(
            variant=0.04,
            typo=0.01,
            accent_drop=0.12,
            case={"title": 0.55, "upper": 0.45},
            swap=0.01,
            honorific=0.0,
            particle_drop=0.05,
            compound_partial=0.05,
            somali=0.05,
            move=0.08,
            year_only_extra=0.03,
            year_forms=_DMY_YEAR_FORMS,
            dm_swap=0.005,
            nid=0.97,
            nid_transpose=0.005,
            duplicates=0.004,
            missing={"village": 0.12, "mother_name": 0.2},
        ),
    )
    ct_noise = Noise(
        variant=0.14,
        typo=0.03,
        accent_drop=0.7,
        case={"title": 0.7, "upper": 0.3},
        swap=0.05,
        honorific=0.15,
        compound_partial=0.2,
        somali=0.35,
        drop_grandfather=0.08,
        move=0.05,
        year_only_extra=0.15,
        year_forms=(("00/00/{y}", 0.5), ("01/01/{y}", 0.5)),
        dm_swap=0.02,
        date_error=0.01,
        sex_error=0.003,
        phone=0.9,
        own_phone=0.15,
        phone_styles=(("local", 0.55), ("spaced", 0.2), ("plus", 0.25)),
        nid=0.15,
        nid_transpose=0.03,
        duplicates=0.015,
        missing={"birth_date": 0.03, "village": 0.02, "sex": 0.005},
    )
    cash = SourceSpec(
        name="cash_transfer",
        kind="programme",
        label="Programme National de Solidarité Famille (PNSF)"
        if horn
        else "Cash transfer (Jigisemejiri)",
        file="cash_transfer.csv",
        fmt="csv",
        delimiter=",",
        encoding="latin-1",
        record_key="id_beneficiaire",
        columns={
            "full_name": "nom_complet",
            "sex": "sexe",
            "birth_date": "date_naiss",
            "national_id": nid_col,
            "phone": "tel",
            "region": "region",
            "commune": "commune",
            "village": "village",
            "household_id": "menage",
        },
        extra_columns=("lien_parente", "montant", "date_paiement"),
        name_order="given_father_grandfather" if horn else "family_given",
        sex_codes={"M": ["H", "M"], "F": ["F"]},
        birth_date_format="%d/%m/%Y",
        key_format=("PNSF-{n:06d}" if horn else "JSM-{n:06d}"),
        household_prefix="MEN-",
        bad_dates=("31/02/19x5", "00/13/1979", "15/O7/1990"),
        noise=ct_noise,
        shuffle=False,
    )
    pw_names = (
        {"given_name": "first_name", "father_name": "father_name"}
        if horn
        else {"given_name": "first_name", "family_name": "last_name"}
    )
    works = SourceSpec(
        name="public_works",
        kind="programme",
        label="HIMO public works (cash for work)",
        file="public_works.parquet",
        fmt="parquet",
        record_key="worker_id",
        columns={
            **pw_names,
            "sex": "gender",
            "age": "age",
            "national_id": "national_id",
            "phone": "phone",
            "region": "region",
            "commune": "district",
            "village": "village",
        },
        extra_columns=("enrolment_date", "worksite", "days_worked"),
        age_reference_column="enrolment_date",
        sex_codes={"M": ["1"], "F": ["2"]},
        key_format="HIMO-{n:06d}",
        noise=Noise(
            variant=0.15,
            typo=0.04,
            accent_drop=0.6,
            case={"upper": 0.5, "title": 0.45, "lower": 0.05},
            swap=0.05,
            honorific=0.05,
            compound_partial=0.25,
            somali=0.25,
            move=0.06,
            sex_error=0.004,
            phone=0.85,
            own_phone=0.6,
            phone_styles=(("local", 0.45), ("plus", 0.4), ("intl", 0.1), ("cc", 0.05)),
            nid=0.25,
            nid_transpose=0.04,
            duplicates=0.04,
            missing={"age": 0.01, "village": 0.03},
        ),
    )
    nut_names = (
        {
            "given_name": "given_name",
            "father_name": "father_name",
            "grandfather_name": "grandfather_name",
        }
        if horn
        else {"given_name": "given_name", "family_name": "family_name"}
    )
    nutrition = SourceSpec(
        name="nutrition",
        kind="programme",
        label="Nutrition package (children 6-59 months, PLW)",
        file="nutrition.jsonl",
        fmt="jsonl",
        record_key="record_id",
        columns={
            **nut_names,
            "sex": "sex",
            "birth_date": "dob",
            "mother_name": "mother_name",
            "household_id": "household_id",
            "phone": "phone",
            "region": "region",
            "commune": "commune",
            "village": "village",
        },
        extra_columns=("beneficiary_type", "muac_mm", "visit_date", "health_centre"),
        sex_codes={"M": ["male", "m"], "F": ["female", "f"]},
        birth_date_format="%Y-%m-%d",
        date_style="iso",
        key_format="NUT-{n:06d}",
        household_prefix="HH-",
        bad_dates=("2019-13-45", "20l9-05-04", "2020-02-31"),
        noise=Noise(
            variant=0.1,
            typo=0.03,
            accent_drop=0.4,
            case={"title": 0.8, "lower": 0.12, "upper": 0.08},
            swap=0.02,
            compound_partial=0.15,
            somali=0.2,
            drop_grandfather=0.1,
            move=0.04,
            year_only_extra=0.02,
            year_forms=(("{y}", 1.0),),
            dm_swap=0.05,
            date_error=0.01,
            phone=0.6,
            own_phone=0.7,
            phone_styles=(("local", 0.5), ("plus_spaced", 0.3), ("plus", 0.2)),
            duplicates=0.02,
            missing={"mother_name": 0.08, "commune": 0.05},
        ),
    )
    return [civil, cash, works, nutrition]


# ---------------------------------------------------------------------------------------
# Who is in which source
# ---------------------------------------------------------------------------------------
def _select(
    spec: SourceSpec, households: list[Household], rng: random.Random, enrolled: dict[str, set[str]]
) -> list[tuple[Person, dict[str, object]]]:
    """(person, context) pairs for a source's first registration of each person."""
    out: list[tuple[Person, dict[str, object]]] = []
    if spec.name == "civil_registry":
        for hh in households:
            for p in hh.members:
                if rng.random() < (0.70 if p.nid else 0.42):
                    out.append((p, {}))
    elif spec.name == "cash_transfer":
        for hh in households:
            if rng.random() < 0.40:
                enrolled["cash_transfer"].add(hh.hid)
                for p in hh.members:
                    if rng.random() < 0.93:
                        out.append((p, {}))
    elif spec.name == "public_works":
        for hh in households:
            p_in = 0.7 if hh.hid in enrolled["cash_transfer"] else 0.3
            if rng.random() >= p_in:
                continue
            cycle = rng.choice(_HIMO_CYCLES)
            ref = cycle + timedelta(days=rng.randrange(0, 45))
            adults = [p for p in hh.members if 18 <= age_at(p.birth, ref) <= 60]
            if not adults:
                continue
            k = min(len(adults), rng.choices((1, 2, 3), weights=(0.65, 0.3, 0.05))[0])
            for p in adults[:1] + rng.sample(adults[1:], k - 1) if k > 1 else adults[:1]:
                out.append((p, {"ref": ref}))
    elif spec.name == "nutrition":
        for hh in households:
            kids = [
                p
                for p in hh.members
                if age_at(p.birth, _NUTRITION_REF) < 5 and p.birth <= _NUTRITION_REF
            ]
            if not kids or rng.random() >= 0.6:
                continue
            mothers: list[Person] = []
            for k in kids:
                if k.mother is not None and k.mother not in mothers and rng.random() < 0.9:
                    mothers.append(k.mother)
            for p in kids:
                out.append((p, {"type": "child_6_59"}))
            for p in mothers:
                out.append((p, {"type": "plw"}))
    return out


# ---------------------------------------------------------------------------------------
# Rendering rows
# ---------------------------------------------------------------------------------------
class SourceWriter:
    """Renders and writes one source."""

    def __init__(
        self,
        spec: SourceSpec,
        profile: Profile,
        renderer: Renderer,
        rng: random.Random,
        hardener: Hardener | None = None,
    ) -> None:
        self.spec = spec  # the normal layout: what is rendered
        self.p = profile
        self.r = renderer
        self.rng = rng
        self.hard = hardener
        # the layout written: the hard mode changes columns after the normal rendering
        self.out = spec if hardener is None else harden_spec(spec, profile, hardener.without)
        self.hh_ids: dict[str, str] = {}
        self._tags: list[str] = []

    def household_id(self, person: Person, fresh: bool = False) -> str:
        """The source's own household number for the person's true household."""
        if fresh or person.hid not in self.hh_ids:
            value = f"{self.spec.household_prefix}{len(self.hh_ids) + 1:06d}"
            if fresh:
                self.hh_ids[f"{person.hid}#{len(self.hh_ids)}"] = value
                return value
            self.hh_ids[person.hid] = value
        return self.hh_ids[person.hid]

    def render(
        self, person: Person, ctx: dict[str, object], dup: bool = False
    ) -> dict[str, object]:
        """One row in the source's own columns.

        Rendered in the normal layout with the main random stream; the hard mode then
        changes the canonical values with its own stream (keys starting with ``_`` are the
        name parts as rendered, for it) and writes them in its layout.
        """
        spec, q, r, rng = self.spec, self.spec.noise, self.r, self.rng
        cols = spec.columns
        v: dict[str, object] = {}
        if self.p.patronymic:
            given, father, grand = r.horn_name(person, q)
            v["_given"], v["_father"], v["_grand"] = given, father, grand
            if "full_name" in cols:
                v["full_name"] = " ".join(x for x in (given, father, grand) if x)
            else:
                v["given_name"] = given
                v["father_name"] = father
                if "grandfather_name" in cols:
                    v["grandfather_name"] = grand
        else:
            given, family = r.sahel_name(person, q)
            v["_given"], v["_family"] = given, family
            if "full_name" in cols:  # "TRAORE Moussa": family first, upper-case
                if rng.random() < q.swap:  # given name first this time
                    v["full_name"] = f"{given} {family.upper()}"
                    v["_form"] = "given_first"
                else:
                    v["full_name"] = f"{family.upper()} {given}"
                    v["_form"] = "family_first"
            else:
                v["given_name"], v["family_name"] = given, family
        v["sex"] = r.sex(person, q, spec.sex_codes)
        if "birth_date" in cols:
            v["birth_date"] = r.birth_date(person, q, spec.date_style)
        if "age" in cols:
            v["age"] = r.age(person, ctx["ref"])  # type: ignore[arg-type]
        if "national_id" in cols:
            v["national_id"] = r.nid(person, q)
        if "phone" in cols:
            v["phone"] = r.phone(person, q)
        v["region"], v["commune"], v["village"] = r.place(person, q)
        if "household_id" in cols:
            v["household_id"] = self.household_id(person, fresh=dup and rng.random() < 0.5)
        if "mother_name" in cols:
            v["mother_name"] = r.mother_name(person, q)
        for f, prob in q.missing.items():
            if f in v and rng.random() < prob:
                v[f] = None
        self._tags = []
        if self.hard is not None:
            self._tags = self.hard.apply(self.out, person, ctx, v)
            cols = self.out.columns
        row = {cols[f]: val for f, val in v.items() if f in cols}
        row.update(self.extras(person, ctx))
        return row

    def extras(self, person: Person, ctx: dict[str, object]) -> dict[str, object]:
        """Columns the register does not use (amounts, sites, visit dates...)."""
        rng = self.rng
        name = self.spec.name
        if name == "civil_registry":
            d = max(person.birth + timedelta(days=rng.randrange(1, 400)), date(1960, 1, 1))
            return {"date_declaration": min(d, NOW).strftime("%d/%m/%Y")}
        if name == "cash_transfer":
            lien = {
                "head": "CM",
                "spouse": "EP",
                "child": "EN",
                "twin": "EN",
                "grandparent": "PA",
                "relative": "AU",
            }[person.role]
            amount = "10000" if self.p.patronymic else "30000"
            return {
                "lien_parente": lien,
                "montant": amount,
                "date_paiement": f"{rng.randint(1, 28):02d}/{rng.choice((3, 6, 9)):02d}/2024",
            }
        if name == "public_works":
            ref: date = ctx["ref"]  # type: ignore[assignment]
            return {
                "enrolment_date": ref.isoformat(),
                "worksite": f"Site {rng.randint(1, 60):02d} - {self.r.hh[person.hid].commune}",
                "days_worked": rng.randint(0, 60),
            }
        if name == "nutrition":
            visit = date(2024, 1, 1) + timedelta(days=rng.randrange(0, 150))
            centre = "Centre de santé" if self.p.patronymic else "CSCom"
            return {
                "beneficiary_type": ctx["type"],
                "muac_mm": rng.randint(105, 160) if ctx["type"] == "child_6_59" else None,
                "visit_date": visit.isoformat(),
                "health_centre": f"{centre} {self.r.hh[person.hid].commune}",
            }
        return {}

    def rows(self, selected: list[tuple[Person, dict[str, object]]]) -> list[Row]:
        """All rows: first registrations, re-registration duplicates, bad rows."""
        rng = self.rng
        rows = []
        for p, ctx in selected:
            values = self.render(p, ctx)
            rows.append(Row(values, p, tags=self._tags))
        n_dup = round(len(rows) * self.spec.noise.duplicates)
        for p, ctx in rng.sample(selected, min(n_dup, len(selected))):
            ctx = dict(ctx)
            if "ref" in ctx:  # enrolled again in another HIMO cycle
                others = [c for c in _HIMO_CYCLES if c != ctx["ref"]]
                ctx["ref"] = rng.choice(others) + timedelta(days=rng.randrange(0, 45))
            values = self.render(p, ctx, dup=True)
            rows.append(Row(values, p, duplicate=True, tags=self._tags))
        if self.spec.shuffle:
            rng.shuffle(rows)
        self._bad(rows)
        if self.hard is not None:  # the same form keyed twice, after the bad rows are made
            rate = self.hard.rates[self.spec.name].exact_copies
            rows = self.hard.copies(rows, rate, self.spec.shuffle)
        for i, row in enumerate(rows, 1):
            row.values = {self.spec.record_key: self.spec.key_format.format(n=i), **row.values}
        return rows

    def _bad(self, rows: list[Row]) -> None:
        """Turn a handful of rows into rows ingest must reject."""
        if not rows:
            return
        rng, spec = self.rng, self.out
        n_bad = min(len(rows), max(3, round(len(rows) * _BAD_RATE)))
        name_cols = [
            spec.columns[f]
            for f in ("full_name", "given_name", "family_name", "father_name", "grandfather_name")
            if f in spec.columns
        ]
        kinds = ["sex", "name"] + (["date"] if spec.bad_dates else [])
        for i, row in enumerate(rng.sample(rows, n_bad)):
            kind = kinds[i % len(kinds)]
            if kind == "sex":
                row.values[spec.columns["sex"]] = rng.choice(("X", "?", "9"))
            elif kind == "name":
                for c in name_cols:
                    row.values[c] = ""
            else:
                row.values[spec.columns["birth_date"]] = rng.choice(spec.bad_dates)
            row.bad = True


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------
def _header(spec: SourceSpec) -> list[str]:
    return [spec.record_key, *spec.columns.values(), *spec.extra_columns]


def _write_data(spec: SourceSpec, rows: list[Row], path: Path) -> None:
    header = _header(spec)
    if spec.fmt == "csv":
        with path.open("w", encoding=spec.encoding, errors="replace", newline="") as fh:
            w = csv.writer(fh, delimiter=spec.delimiter)
            w.writerow(header)
            for row in rows:
                w.writerow(["" if (x := row.values.get(c)) is None else x for c in header])
    elif spec.fmt == "parquet":
        int_cols = {"age", "days_worked"}
        arrays = {}
        for c in header:
            values = [row.values.get(c) for row in rows]
            arrays[c] = pa.array(values, type=pa.int32() if c in int_cols else pa.string())
        pq.write_table(pa.table(arrays), path, compression="zstd")
    elif spec.fmt == "jsonl":
        with path.open("w", encoding="utf-8") as fh:
            for row in rows:
                obj = {c: row.values[c] for c in header if row.values.get(c) is not None}
                fh.write(json.dumps(obj, ensure_ascii=False) + "\n")
    else:  # pragma: no cover - specs are ours
        raise ValueError(f"unknown format {spec.fmt}")


def _source_yaml(spec: SourceSpec) -> dict[str, object]:
    doc: dict[str, object] = {
        "name": spec.name,
        "kind": spec.kind,
        "programme": spec.label,
        "path": f"../data/{spec.file}",
        "format": spec.fmt,
    }
    if spec.fmt == "csv":
        doc["delimiter"] = spec.delimiter
        doc["encoding"] = spec.encoding
    elif spec.fmt == "jsonl":
        doc["encoding"] = "utf-8"
    doc["record_key"] = spec.record_key
    if spec.name_order:
        doc["name_order"] = spec.name_order
    if spec.birth_date_format:
        doc["birth_date_format"] = spec.birth_date_format
    if spec.age_reference_date:
        doc["age_reference_date"] = spec.age_reference_date
    if spec.age_reference_column:
        doc["age_reference_column"] = spec.age_reference_column
    doc["sex_codes"] = spec.sex_codes
    doc["columns"] = dict(spec.columns)
    return doc


def _dump_yaml(doc: object, path: Path) -> None:
    path.write_text(
        yaml.safe_dump(
            doc, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100
        ),
        encoding="utf-8",
    )


# ---------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------
def generate(
    persons: int,
    profile: str = "sahel",
    seed: int = 1,
    out: str | Path = "bench_out",
    model: str | Path | None = None,
    realism: str = "normal",
    hard_without: tuple[str, ...] | list[str] = (),
) -> dict[str, object]:
    """Generate a benchmark project in ``out``; returns the manifest (also written).

    ``model``, when given, is written into project.yaml (as an absolute path) so the
    project uses that trained model instead of training its own. ``realism="hard"``
    adds the features of :mod:`linkage.synthetic.hard` to the same persons and rows;
    ``hard_without`` leaves some of its feature groups out (``GROUPS``: names, places,
    dates, parents, copies), to measure what each costs.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {sorted(PROFILES)}")
    if realism not in REALISMS:
        raise ValueError(f"unknown realism {realism!r}; choose from {list(REALISMS)}")
    if hard_without and realism != "hard":
        raise ValueError("hard_without needs realism='hard'")
    if persons < 1:
        raise ValueError("persons must be >= 1")
    prof = PROFILES[profile]
    rng = random.Random(seed)
    out = Path(out)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "sources").mkdir(parents=True, exist_ok=True)

    pop = PopulationBuilder(prof, rng)
    pop.build(persons)
    for p in pop.persons:  # national IDs: more adults than children hold one
        adult = NOW.year - p.birth.year >= 18
        if rng.random() < (0.55 if adult else 0.30):
            p.nid = pop.nid()
    households = {hh.hid: hh for hh in pop.households}
    renderer = Renderer(prof, pop.geo, households, rng)
    hardener = None
    if realism == "hard":  # its own stream: the main one draws exactly as in the normal mode
        hardener = Hardener(
            prof, pop.geo, households, random.Random(f"hard-{seed}"), frozenset(hard_without)
        )
    features: list[tuple[str, str, str]] = []

    enrolled: dict[str, set[str]] = {"cash_transfer": set()}
    sources_in: dict[str, set[str]] = {}
    manifest_sources: dict[str, object] = {}
    truth_path = out / "truth.csv"
    with truth_path.open("w", encoding="utf-8", newline="") as tf:
        tw = csv.writer(tf)
        tw.writerow(["source", "record_key", "person_id", "household_id", "bad"])
        for spec in _specs(prof):
            writer = SourceWriter(spec, prof, renderer, rng, hardener)
            rows = writer.rows(_select(spec, pop.households, rng, enrolled))
            spec = writer.out
            _write_data(spec, rows, out / "data" / spec.file)
            _dump_yaml(_source_yaml(spec), out / "sources" / f"{spec.name}.yaml")
            for row in rows:
                key = row.values[spec.record_key]
                features.extend((spec.name, key, t) for t in row.tags)  # type: ignore[misc]
                tw.writerow(
                    [
                        spec.name,
                        row.values[spec.record_key],
                        row.person.pid,
                        row.person.hid,
                        "true" if row.bad else "false",
                    ]
                )
                if not row.bad:
                    sources_in.setdefault(row.person.pid, set()).add(spec.name)
            manifest_sources[spec.name] = {
                "file": f"data/{spec.file}",
                "config": f"sources/{spec.name}.yaml",
                "format": spec.fmt,
                "records": len(rows),
                "duplicates": sum(r.duplicate for r in rows),
                "bad": sum(r.bad for r in rows),
                "persons": len({r.person.pid for r in rows}),
            }
            if hardener is not None:
                manifest_sources[spec.name]["features"] = dict(  # type: ignore[index]
                    sorted(Counter(t for r in rows for t in r.tags).items())
                )
    (out / "features.csv").unlink(missing_ok=True)
    if hardener is not None:
        with (out / "features.csv").open("w", encoding="utf-8", newline="") as ff:
            fw = csv.writer(ff)
            fw.writerow(["source", "record_key", "feature"])
            fw.writerows(features)

    project = {
        "name": f"demo-{profile}",
        "register": "register.duckdb",
        "country_code": prof.country_code,
        "sources": [f"sources/{s.name}.yaml" for s in _specs(prof)],
    }
    if model is not None:
        project["model"] = str(Path(model).resolve())
    _dump_yaml(project, out / "project.yaml")
    total = sum(s["records"] for s in manifest_sources.values())  # type: ignore[index]
    multi = sum(1 for s in sources_in.values() if len(s) >= 2)
    manifest: dict[str, object] = {
        "profile": profile,
        "realism": realism,
        "persons": persons,
        "households": len(pop.households),
        "seed": seed,
        "records": total,
        "records_per_person": round(total / persons, 3),
        "persons_in_any_source": len(sources_in),
        "persons_in_2plus_sources": multi,
        "persons_in_2plus_sources_pct": round(100 * multi / persons, 1),
        "twin_persons": sum(1 for p in pop.persons if p.role == "twin"),
        "national_id_holders": sum(1 for p in pop.persons if p.nid),
        "sources": manifest_sources,
        "truth": "truth.csv",
        "project": "project.yaml",
    }
    if hardener is not None:
        manifest["features"] = "features.csv"
        if hard_without:
            manifest["hard_without"] = sorted(hard_without)
    (out / "manifest.json").write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(
        prog="python -m linkage.synthetic.generate", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--persons", type=int, default=10_000, help="number of true persons")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="sahel")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument(
        "--realism",
        choices=REALISMS,
        default="normal",
        help="hard: add what independent registers contain (linkage.synthetic.hard)",
    )
    ap.add_argument(
        "--hard-without",
        default="",
        help="with --realism hard: comma-separated feature groups to leave out "
        f"({', '.join(GROUPS)})",
    )
    args = ap.parse_args(argv)
    without = tuple(g for g in args.hard_without.split(",") if g)
    t0 = time.perf_counter()
    m = generate(
        args.persons, args.profile, args.seed, args.out, realism=args.realism,
        hard_without=without,
    )
    dt = time.perf_counter() - t0
    print(
        f"{m['persons']} persons in {m['households']} households -> {m['records']} records "
        f"({m['records_per_person']}/person), {m['persons_in_2plus_sources_pct']}% of persons "
        f"in 2+ sources, {dt:.1f}s"
    )
    for name, s in m["sources"].items():  # type: ignore[union-attr]
        print(
            f"  {name:16s} {s['records']:>9,d} records  {s['duplicates']:>6,d} dup  "
            f"{s['bad']:>4d} bad  {s['file']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
