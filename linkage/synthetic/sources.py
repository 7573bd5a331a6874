"""Sources: how each roster or registry sees the true population.

Each source has its own coverage rule (who is in it), its own layout (column names,
language, file format, encodings of sex, dates and phones) and its own error rates.
A source turns persons into rows of strings exactly as that source would write them,
plus the ground-truth person for each row.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date

from linkage.synthetic.noise import (
    age_at,
    apply_case,
    fuzz_year,
    strip_accents,
    transpose_digits,
    typo,
)
from linkage.synthetic.population import Geography, Household, Person
from linkage.synthetic.profiles import Profile


@dataclass
class Noise:
    """Error rates of one source (probabilities per record unless stated)."""

    variant: float = 0.05  # per name token: transliteration / spelling variant
    typo: float = 0.01  # one keyboard error somewhere in the name
    accent_drop: float = 0.2
    case: dict[str, float] = field(default_factory=lambda: {"title": 1.0})
    swap: float = 0.0  # name parts in the wrong columns / order
    honorific: float = 0.0  # El Hadj / Hadja prefixed (only persons who carry one)
    particle_drop: float = 0.3  # Ag / Ould / Ben dropped from a family name
    compound_partial: float = 0.15  # only one half of a compound given name
    somali: float = 0.0  # horn: whole record in Somali orthography (x, c)
    drop_grandfather: float = 0.0  # horn: grandfather's name left out
    move: float = 0.05  # person found in another village (mostly same commune)
    year_only_extra: float = 0.05  # a day-known person recorded with year only
    year_forms: tuple[tuple[str, float], ...] = (("00/00/{y}", 0.5), ("01/01/{y}", 0.5))
    dm_swap: float = 0.01  # day and month swapped (only when both <= 12)
    date_error: float = 0.005  # wrong day or year digit
    sex_error: float = 0.002
    phone: float = 0.0  # probability a phone is recorded at all
    own_phone: float = 0.5  # own phone preferred over the household phone
    phone_styles: tuple[tuple[str, float], ...] = (("local", 1.0),)
    phone_stale: float = 0.04  # phone changed owner / wrong number
    nid: float = 0.0  # probability an ID holder's ID is recorded
    nid_transpose: float = 0.02
    duplicates: float = 0.0  # re-registration duplicates, share of records
    missing: dict[str, float] = field(default_factory=dict)


@dataclass
class SourceSpec:
    """Layout and rules of one source (what gets written to its YAML config)."""

    name: str
    kind: str  # programme | civil_registry
    label: str
    file: str
    fmt: str  # csv | parquet | jsonl
    record_key: str
    columns: dict[str, str]  # canonical field -> source column
    extra_columns: tuple[str, ...]  # columns the source has but the register ignores
    sex_codes: dict[str, list[str]]
    noise: Noise
    key_format: str
    delimiter: str = ","
    encoding: str = "utf-8"
    name_order: str | None = None
    birth_date_format: str | None = None
    date_style: str = "dmy"  # dmy | iso
    age_reference_column: str | None = None
    age_reference_date: str | None = None  # YYYY-MM-DD, when the file has no reference column
    household_prefix: str = "M"
    bad_dates: tuple[str, ...] = ()
    shuffle: bool = True


@dataclass
class Row:
    """One written record and who it really is."""

    values: dict[str, object]
    person: Person
    bad: bool = False
    duplicate: bool = False
    tags: list[str] = field(default_factory=list)  # hard-mode features (linkage.synthetic.hard)


class Renderer:
    """Renders true persons into one source's strings, with that source's errors."""

    def __init__(
        self, profile: Profile, geo: Geography, households: dict[str, Household], rng: random.Random
    ) -> None:
        self.p = profile
        self.geo = geo
        self.hh = households
        self.rng = rng
        self._case_cache: dict[int, tuple[list[str], list[float]]] = {}

    # -- names -------------------------------------------------------------------------
    def _case(self, q: Noise) -> str:
        key = id(q.case)
        if key not in self._case_cache:
            self._case_cache[key] = (list(q.case), list(q.case.values()))
        styles, weights = self._case_cache[key]
        return self.rng.choices(styles, weights=weights)[0]

    def _token(self, name: str, q: Noise, somali: bool) -> str:
        """One name (possibly multi-word) through orthography and variant errors."""
        rng = self.rng
        variants = self.p.variants
        out = []
        for tok in name.split(" "):
            alts = variants.get(tok)
            if alts:
                if somali:  # horn: the first variant is the Somali-orthography form
                    tok = alts[0]
                elif rng.random() < q.variant:
                    tok = rng.choice(alts)
            out.append(tok)
        return " ".join(out)

    def given(self, person: Person, q: Noise, somali: bool = False) -> str:
        """The given name as written: compound halves, variants, honorifics."""
        rng = self.rng
        name = person.given
        if " " in name and not self.p.patronymic and rng.random() < q.compound_partial:
            parts = name.split(" ")
            name = parts[0] if rng.random() < 0.75 else parts[1]
        name = self._token(name, q, somali)
        if person.honorific and q.honorific and rng.random() < q.honorific:
            titles = self.p.honorific_male if person.sex == "M" else self.p.honorific_female
            name = f"{rng.choice(titles)} {name}"
        return name

    def family(self, person: Person, q: Noise) -> str:
        """The family name as written (sahel)."""
        name = person.family
        if name.split(" ")[0] in ("Ag", "Ould", "Ben") and self.rng.random() < q.particle_drop:
            name = name.split(" ", 1)[1]
        return self._token(name, q, False)

    def finish(self, parts: list[str], q: Noise) -> list[str]:
        """Accents, case and one typo applied to the rendered name parts."""
        rng = self.rng
        if rng.random() < q.accent_drop:
            parts = [strip_accents(x) for x in parts]
        style = self._case(q)
        parts = [apply_case(x, style) for x in parts]
        if rng.random() < q.typo:
            i = rng.randrange(len(parts))
            parts[i] = typo(parts[i], rng)
        return parts

    def sahel_name(self, person: Person, q: Noise) -> tuple[str, str]:
        """(given, family) as written; swapped with probability ``q.swap``."""
        given, family = self.finish([self.given(person, q), self.family(person, q)], q)
        if self.rng.random() < q.swap:
            return family, given
        return given, family

    def horn_name(self, person: Person, q: Noise) -> tuple[str, str, str]:
        """(given, father, grandfather) as written; grandfather may be empty."""
        somali = self.rng.random() < q.somali
        parts = [
            self.given(person, q, somali),
            self._token(person.father, q, somali),
            self._token(person.grandfather, q, somali),
        ]
        parts = self.finish(parts, q)
        if self.rng.random() < q.drop_grandfather:
            parts[2] = ""
        return parts[0], parts[1], parts[2]

    def mother_name(self, person: Person, q: Noise) -> str | None:
        """Mother's name as one string ("Aminata Diarra" / "Hawa Ali")."""
        m = person.mother
        if m is None:
            return None
        if self.p.patronymic:
            given, father, _ = self.horn_name(m, q)
            return f"{given} {father}".strip()
        given, family = self.finish([self.given(m, q), self.family(m, q)], q)
        return f"{given} {family}"

    # -- dates, sex, places, phones, ids -------------------------------------------------
    def birth_date(self, person: Person, q: Noise, style: str) -> str:
        """The birth date as written: exact, year-only forms, swaps and slips."""
        rng = self.rng
        b = person.birth
        if not person.day_known or rng.random() < q.year_only_extra:
            year = b.year if person.day_known else fuzz_year(b.year, rng)
            r = rng.random()
            for form, w in q.year_forms:
                r -= w
                if r < 0:
                    return form.format(y=year)
            return str(year)
        day, month, year = b.day, b.month, b.year
        if day <= 12 and day != month and rng.random() < q.dm_swap:
            day, month = month, day
        if rng.random() < q.date_error:
            if rng.random() < 0.5:
                year += rng.choice((-1, 1, -10, 10))
            else:
                day = min(28, max(1, day + rng.choice((-1, 1, 10, -10))))
        if style == "iso":
            return f"{year:04d}-{month:02d}-{day:02d}"
        return f"{day:02d}/{month:02d}/{year:04d}"

    def age(self, person: Person, ref: date) -> int:
        """Age at ``ref`` as declared: heaped on 5s and off by 1-2 years when estimated."""
        rng = self.rng
        age = age_at(person.birth, ref)
        if person.day_known:
            return max(0, age + (rng.choice((-1, 1)) if rng.random() < 0.08 else 0))
        age = max(0, fuzz_year(age, rng, p_off=0.45))
        if age >= 25 and rng.random() < 0.25:
            age = 5 * round(age / 5)
        return age

    def sex(self, person: Person, q: Noise, codes: dict[str, list[str]]) -> str:
        """The sex code; rare clerk errors flip it."""
        sex = person.sex
        if self.rng.random() < q.sex_error:
            sex = "F" if sex == "M" else "M"
        return codes[sex][0]

    def place(self, person: Person, q: Noise) -> tuple[str, str, str]:
        """(region, commune, village) as written; movers appear elsewhere."""
        rng = self.rng
        hh = self.hh[person.hid]
        region, commune, village = hh.region, hh.commune, hh.village
        if rng.random() < q.move:
            region, commune, village = self.geo.move(region, commune, village, rng)
        if rng.random() < q.accent_drop:
            region, commune, village = (
                strip_accents(region),
                strip_accents(commune),
                strip_accents(village),
            )
        if rng.random() < 0.3 * q.accent_drop:
            region, commune, village = region.upper(), commune.upper(), village.upper()
        if rng.random() < q.typo / 2:
            village = typo(village, rng)
        return region, commune, village

    def phone(self, person: Person, q: Noise) -> str | None:
        """A phone as written: own or household's, with or without the country code."""
        rng = self.rng
        if rng.random() >= q.phone:
            return None
        hh_phone = self.hh[person.hid].phone
        number = person.phone if person.phone and rng.random() < q.own_phone else hh_phone
        number = number or person.phone
        if number is None:
            return None
        if rng.random() < q.phone_stale:
            number = number[:2] + str(rng.randrange(10 ** (len(number) - 2))).zfill(len(number) - 2)
        r = rng.random()
        style = q.phone_styles[-1][0]
        for name, w in q.phone_styles:
            r -= w
            if r < 0:
                style = name
                break
        cc = self.p.country_code
        spaced = " ".join(number[i : i + 2] for i in range(0, len(number), 2))
        return {
            "local": number,
            "spaced": spaced,
            "plus": f"+{cc}{number}",
            "plus_spaced": f"+{cc} {spaced}",
            "intl": f"00{cc}{number}",
            "cc": f"{cc}{number}",
        }[style]

    def nid(self, person: Person, q: Noise) -> str | None:
        """The national ID if recorded; sometimes two digits transposed."""
        if person.nid is None or self.rng.random() >= q.nid:
            return None
        if self.rng.random() < q.nid_transpose:
            return transpose_digits(person.nid, self.rng)
        return person.nid
