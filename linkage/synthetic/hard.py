"""``realism="hard"``: what independent registers contain and the normal generator does not.

The hard mode is a layer over the normal one. Every source is first rendered exactly as in
the normal mode (same persons, same coverage, same errors, drawn from the same random
stream), then :class:`Hardener` changes it with a random stream of its own. A seed therefore
gives the same population, the same people in each source and the same normal errors in both
modes, and the normal mode's files stay byte for byte what they were.

What the hard layer adds, per source (rates in :data:`RATES`):

* civil registry: the birth commune is the only place (no region, no village; adults were
  often born elsewhere); sahel: a father's-name column (his full name), mostly empty;
* cash transfer: a full-name column that mixes "TRAORE Mahamadou" (family name first,
  upper case) and "Mamadou Traore" (given name first, one style per enumeration team);
  horn: two or three of the names, sometimes "AHMED Zahra" (father's name first, upper case);
* public works: ages at enrolment with no enrolment date in the file (ages were taken at
  three cycles over a year; the source YAML can only give one ``age_reference_date``), and
  more estimated ages off by one to three years; horn: two of the three names, in varying
  columns;
* nutrition: year-only birth dates written ``YYYY-01-01`` in an ISO file (a placeholder
  that looks like a real 1 January); village codes that embed the commune code
  (``SÉG-C05-V009``) and no commune column; the caregiver's name (mostly the mother) as the
  only parent field; horn: names shifted between the three columns;
* every roster: one-letter family-name typos ("Traoer", "Tiaore"; the father's name in the
  horn), birth years typed into the future, and exact copies of existing rows under new
  record keys (the same form keyed twice).

The features a row received are written to ``features.csv`` (source, record_key, feature)
so a benchmark can say which of them the matcher misses.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from datetime import date

from linkage.synthetic.noise import age_at, strip_accents, typo
from linkage.synthetic.population import NOW, Geography, Household, Person, Sampler
from linkage.synthetic.profiles import Profile
from linkage.synthetic.sources import Noise, Renderer, Row, SourceSpec

__all__ = ["GROUPS", "REALISMS", "RATES", "HardRates", "Hardener", "harden_spec"]

#: Accepted values of ``generate(..., realism=...)``.
REALISMS = ("normal", "hard")

#: Feature groups, each of which ``generate(..., hard_without=...)`` can leave out (to
#: measure what one group costs): names (mixed orders, horn layouts, family-name typos),
#: places (birth commune only, village codes without commune), dates (YYYY-01-01, future
#: years, ages without enrolment date and further off), parents (sahel father column,
#: caregiver), copies (exact copies).
GROUPS = ("names", "places", "dates", "parents", "copies")

#: The day the public-works extract was taken: a user writes it as age_reference_date.
PUBLIC_WORKS_EXTRACT = date(2024, 3, 1)


@dataclass(frozen=True)
class HardRates:
    """Rates of the hard-mode features of one source (probabilities per record)."""

    family_typo: float = 0.0  # one letter wrong in the family name (horn: father's name)
    future_date: float = 0.0  # birth year typed into the future (2019 -> 2029, 1985 -> 2085)
    exact_copies: float = 0.0  # the same row again under a new record key, share of rows
    iso_placeholder: float = 0.0  # ISO file: share of year-only dates written YYYY-01-01
    age_off_estimated: float = 0.0  # ages of persons who estimate theirs, off by 1-3 more
    age_off_known: float = 0.0  # the same for persons who know their birth date
    given_first: float = 0.0  # sahel full name: share of enumeration teams writing given first
    father_filled: float = 1.0  # civil registry: share of records whose father column is filled
    caregiver_other: float = 0.0  # nutrition: the child's caregiver is not the mother
    village_move: float = 0.0  # nutrition: the child is seen at another village's post
    # horn name layouts: (style, weight); see Hardener._horn_*
    horn_styles: tuple[tuple[str, float], ...] = ()


RATES: dict[str, HardRates] = {
    "civil_registry": HardRates(
        family_typo=0.005, future_date=0.0005, exact_copies=0.003, father_filled=0.2
    ),
    "cash_transfer": HardRates(
        family_typo=0.03,
        future_date=0.003,
        exact_copies=0.01,
        given_first=0.35,
        horn_styles=(("three", 0.5), ("two", 0.25), ("FATHER given", 0.15),
                     ("FATHER GRAND given", 0.10)),
    ),
    "public_works": HardRates(
        family_typo=0.04,
        exact_copies=0.015,
        age_off_estimated=0.25,
        age_off_known=0.05,
        horn_styles=(("given|father", 0.66), ("given|grand", 0.10), ("given father|grand", 0.10),
                     ("FATHER given|", 0.08), ("father|given", 0.06)),
    ),
    "nutrition": HardRates(
        family_typo=0.02,
        future_date=0.005,
        exact_copies=0.015,
        iso_placeholder=0.9,
        caregiver_other=0.12,
        village_move=0.04,
        horn_styles=(("given|father|grand", 0.75), ("given|grand|", 0.10),
                     ("given father|grand|", 0.08), ("father|given|grand", 0.04),
                     ("FATHER given||", 0.03)),
    ),
}

# Horn civil registry: the father's column is the person's own second name (Zahra *Ahmed*
# Hassan), on every act; only the Sahel's father column (the father's full name, a parent
# field) is mostly empty. Blanking 65 % of the horn's (0.35 here) was measured once: horn
# pairwise recall fell from 0.72 to 0.25 (benchmarks/RESULTS.md, issue 11).
_HORN_FATHER_FILLED = 1.0


def harden_spec(
    spec: SourceSpec, profile: Profile, without: frozenset[str] = frozenset()
) -> SourceSpec:
    """The source's layout in the hard mode (columns and YAML settings)."""
    cols = dict(spec.columns)
    extra = spec.extra_columns
    changes: dict[str, object] = {}
    if spec.name == "civil_registry":
        names = {f: c for f, c in cols.items() if f in _NAME_FIELDS}
        if not profile.patronymic and "parents" not in without:
            names["father_name"] = "nom_pere"
        rest = {f: c for f, c in cols.items() if f not in _NAME_FIELDS}
        if "places" not in without:
            # The extract gives the birth commune only: no region, no village of residence.
            rest.pop("region")
            rest.pop("village")
            rest["commune"] = "commune_naissance"
        cols = {**names, **rest}
    elif spec.name == "public_works" and "dates" not in without:
        # Ages at enrolment, and the enrolment date is not in the file.
        extra = tuple(c for c in extra if c != spec.age_reference_column)
        changes["age_reference_column"] = None
        changes["age_reference_date"] = PUBLIC_WORKS_EXTRACT.isoformat()
    elif spec.name == "nutrition":
        if "places" not in without:
            cols.pop("commune")
            cols["village"] = "village_code"
        if "parents" not in without:
            cols["mother_name"] = "caregiver_name"
    return replace(spec, columns=cols, extra_columns=extra, **changes)  # type: ignore[arg-type]


_OFF = {  # the rates each group switches off
    "names": {"family_typo": 0.0, "given_first": 0.0, "horn_styles": ()},
    "dates": {"iso_placeholder": 0.0, "future_date": 0.0, "age_off_estimated": 0.0,
              "age_off_known": 0.0},
    "places": {"village_move": 0.0},
    "parents": {"father_filled": 0.0, "caregiver_other": 0.0},
    "copies": {"exact_copies": 0.0},
}


_NAME_FIELDS = ("full_name", "given_name", "family_name", "father_name", "grandfather_name")
_YEAR = re.compile(r"\d{4}")
# A slipped year lands here or later: in the future of the data (NOW) and of any day the
# product may be run at (it checks against today, having no extract date).
_FUTURE_FROM = NOW.year + 6


def _region_codes(regions: list[str]) -> dict[str, str]:
    """Three-letter region codes as health information systems use (Ségou -> SÉG)."""
    out: dict[str, str] = {}
    for region in regions:
        letters = [c for c in region.upper() if c.isalpha()]
        code = "".join(letters[:3])
        i = 3
        while code in out.values() and i < len(letters):  # keep codes unique
            code = code[:2] + letters[i]
            i += 1
        out[region] = code
    return out


class Hardener:
    """Applies the hard-mode features to rendered rows, with its own random stream."""

    def __init__(
        self,
        profile: Profile,
        geo: Geography,
        households: dict[str, Household],
        rng: random.Random,
        without: frozenset[str] = frozenset(),
    ) -> None:
        unknown = set(without) - set(GROUPS)
        if unknown:
            raise ValueError(f"unknown feature groups {sorted(unknown)}; choose from {GROUPS}")
        self.without = frozenset(without)
        self.rates = {
            name: replace(r, **{k: v for g in self.without for k, v in _OFF[g].items()})
            for name, r in RATES.items()
        }
        self.p = profile
        self.geo = geo
        self.hh = households
        self.rng = rng
        self.r = Renderer(profile, geo, households, rng)  # renders extra names with our rng
        self.male = Sampler(profile.male_given, profile.zipf_given)
        self._birth_commune: dict[str, str] = {}
        self._father: dict[str, tuple[str, str]] = {}
        self._team_style: dict[tuple[str, str], str] = {}
        self._region_code = _region_codes(geo.regions)
        self._commune_no = {
            c: i for cs in geo.communes.values() for i, c in enumerate(cs, 1)
        }
        self._village_no = {
            (c, v): i for c, vs in geo.villages.items() for i, v in enumerate(vs, 1)
        }

    # -- small draws -----------------------------------------------------------------------
    def _style(self, styles: tuple[tuple[str, float], ...]) -> str:
        r = self.rng.random()
        for name, w in styles:
            r -= w
            if r < 0:
                return name
        return styles[-1][0]

    def _typo(self, text: str | None) -> str | None:
        if not text:
            return text
        return typo(text, self.rng)

    def birth_commune(self, person: Person) -> str:
        """Where the person was born: children mostly here, adults often elsewhere."""
        if person.pid in self._birth_commune:
            return self._birth_commune[person.pid]
        rng, geo = self.rng, self.geo
        hh = self.hh[person.hid]
        young = person.role in ("child", "twin") or age_at(person.birth, NOW) < 15
        here, region = {"spouse": (0.40, 0.40), "head": (0.55, 0.30)}.get(
            person.role, (0.90, 0.08) if young else (0.50, 0.35)
        )
        r = rng.random()
        commune = hh.commune
        if r >= here:
            if r < here + region and len(geo.communes[hh.region]) > 1:
                commune = rng.choice([c for c in geo.communes[hh.region] if c != hh.commune])
            else:
                other = rng.choice([g for g in geo.regions if g != hh.region] or geo.regions)
                commune = rng.choice(geo.communes[other])
        self._birth_commune[person.pid] = commune
        return commune

    def father(self, person: Person) -> tuple[str, str]:
        """(given, family) of a Sahel person's father: the head for his children."""
        if person.pid in self._father:
            return self._father[person.pid]
        head = self.hh[person.hid].members[0]
        if person.role in ("child", "twin") and head.sex == "M" and head is not person:
            value = (head.given, head.family)
        else:
            value = (self.male.draw(self.rng), person.family)
        self._father[person.pid] = value
        return value

    def _future(self, value: str) -> str | None:
        """The date string with its year typed into the future, or None if no slip fits."""
        m = _YEAR.search(value)
        if m is None:
            return None
        y = m.group()
        if y < "2000":
            candidates = ["20" + y[2:]]
        else:
            candidates = [str(int(y) + 10), y[:2] + y[3] + y[2], str(int(y) + 20)]
        for c in candidates:  # years past any date the register is run at, not just NOW
            if _FUTURE_FROM <= int(c) <= 2099:
                return value[: m.start()] + c + value[m.end() :]
        return None

    def _place_case(self, text: str, q: Noise) -> str:
        """Accents and case of a place name, the way the source writes places."""
        rng = self.rng
        if rng.random() < q.accent_drop:
            text = strip_accents(text)
        if rng.random() < 0.3 * q.accent_drop:
            text = text.upper()
        return text

    # -- the features ----------------------------------------------------------------------
    def apply(
        self, spec: SourceSpec, person: Person, ctx: dict[str, object], v: dict[str, object]
    ) -> list[str]:
        """Change the canonical values ``v`` of one rendered row in place; the features."""
        rates = self.rates[spec.name]
        q = spec.noise
        rng = self.rng
        tags: list[str] = []
        name = spec.name
        horn = self.p.patronymic

        # one-letter family-name typo (the horn has no family name: the father's name)
        if rng.random() < rates.family_typo:
            key = "_father" if horn else "_family"
            if key in v:
                v[key] = self._typo(v[key])  # type: ignore[arg-type]
                tags.append("family_typo")
        self._names(spec, person, v, rates, tags)

        if name == "civil_registry":
            if "places" not in self.without:
                bc = self.birth_commune(person)
                if bc != self.hh[person.hid].commune:
                    tags.append("born_elsewhere")
                v["commune"] = self._place_case(bc, q)
            if horn:
                if v.get("father_name") and rng.random() >= _HORN_FATHER_FILLED:
                    v["father_name"] = None
                    tags.append("father_empty")
            elif rng.random() < rates.father_filled:  # (sahel: a column the normal CR lacks)
                given, family = self.father(person)
                g, f = self.r.finish([self.r.given(_Named(given), q), family], q)
                v["father_name"] = f"{g} {f}"
                tags.append("father_given")
        elif name == "public_works":
            age = v.get("age")
            p_off = rates.age_off_known if person.day_known else rates.age_off_estimated
            if isinstance(age, int) and rng.random() < p_off:
                delta = rng.choices((1, 2, 3), weights=(0.45, 0.35, 0.20))[0]
                v["age"] = max(0, age + (delta if rng.random() < 0.5 else -delta))
                tags.append(f"age_off_{delta}")
            ref = ctx.get("ref")
            if isinstance(ref, date) and age_at(person.birth, ref) != age_at(
                person.birth, PUBLIC_WORKS_EXTRACT
            ):
                tags.append("age_reference_gap")
        elif name == "nutrition":
            self._nutrition(person, ctx, v, rates, q, tags)

        bd = v.get("birth_date")
        if isinstance(bd, str):
            if rates.iso_placeholder and spec.date_style == "iso" and len(bd) == 4 and bd.isdigit():
                if rng.random() < rates.iso_placeholder:
                    v["birth_date"] = f"{bd}-01-01"
                    tags.append("iso_placeholder")
            if rng.random() < rates.future_date:
                fut = self._future(str(v["birth_date"]))
                if fut is not None:
                    v["birth_date"] = fut
                    tags.append("future_date")
        return tags

    def _names(
        self,
        spec: SourceSpec,
        person: Person,
        v: dict[str, object],
        rates: HardRates,
        tags: list[str],
    ) -> None:
        """Name layouts: mixed orders (sahel), two of three names in varying columns (horn)."""
        cols = spec.columns
        if not self.p.patronymic:
            given, family = str(v["_given"]), str(v["_family"] or "")
            if "full_name" in cols:
                hh = self.hh[person.hid]
                team = (hh.commune, hh.village)
                if team not in self._team_style:
                    self._team_style[team] = (
                        "given_first" if self.rng.random() < rates.given_first else "family_first"
                    )
                if self._team_style[team] == "given_first":
                    v["full_name"] = f"{given} {family}"  # "Mamadou Traore"
                    tags.append("given_first")
                elif v["_form"] == "given_first":
                    v["full_name"] = f"{given} {family.upper()}"
                else:
                    v["full_name"] = f"{family.upper()} {given}"
            else:
                v["family_name"] = family
            return
        given, father, grand = (str(v[k] or "") for k in ("_given", "_father", "_grand"))
        if not rates.horn_styles:  # civil registry: the columns as rendered
            v["father_name"] = father
            return
        style = self._style(rates.horn_styles)
        if style not in ("three", "given|father", "given|father|grand"):
            tags.append("horn_" + style.replace(" ", "_").replace("|", "/"))
        if "full_name" in cols:
            v["full_name"] = " ".join(
                x
                for x in {
                    "three": (given, father, grand),
                    "two": (given, father),
                    "FATHER given": (father.upper(), given),
                    "FATHER GRAND given": (father.upper(), grand.upper(), given),
                }[style]
                if x
            )
            return
        parts = {
            "given": given,
            "father": father,
            "grand": grand,
            "given father": f"{given} {father}".strip(),
            "FATHER given": f"{father.upper()} {given}".strip(),
            "": "",
        }
        fields = ["given_name", "father_name", "grandfather_name"]
        for f, part in zip(fields, style.split("|"), strict=False):
            v[f] = parts[part] or None
        for f in fields[len(style.split("|")) :]:
            if f in cols:
                v[f] = None

    def _nutrition(
        self,
        person: Person,
        ctx: dict[str, object],
        v: dict[str, object],
        rates: HardRates,
        q: Noise,
        tags: list[str],
    ) -> None:
        rng = self.rng
        hh = self.hh[person.hid]
        if "places" not in self.without:
            # The village is a health-information code embedding the commune: SÉG-C05-V009.
            region, commune, village = hh.region, hh.commune, hh.village
            if rng.random() < rates.village_move:
                region, commune, village = self.geo.move(region, commune, village, rng)
                tags.append("village_moved")
            code = (
                f"{self._region_code[region]}-C{self._commune_no[commune]:02d}"
                f"-V{self._village_no[(commune, village)]:03d}"
            )
            v["village"] = strip_accents(code) if rng.random() < q.accent_drop else code
            v.pop("commune", None)
        if "parents" in self.without:
            return
        # The caregiver is the only parent field: the mother, sometimes another woman.
        if ctx.get("type") != "child_6_59":
            v["mother_name"] = None  # the woman is the beneficiary herself
        elif v.get("mother_name") is not None and rng.random() < rates.caregiver_other:
            others = [
                m
                for m in hh.members
                if m.sex == "F" and m is not person.mother and m is not person
                and age_at(m.birth, NOW) >= 12
            ]
            if others:
                v["mother_name"] = self.r.mother_name(_WithMother(rng.choice(others)), q)
                tags.append("caregiver_not_mother")

    def copies(self, rows: list[Row], rate: float, shuffled: bool) -> list[Row]:
        """``rows`` with exact copies of some of them (new record keys are given later)."""
        n = round(len(rows) * rate)
        if n == 0 or not rows:
            return rows
        rng = self.rng
        picked = rng.sample(range(len(rows)), min(n, len(rows)))
        extra = [
            Row(
                dict(rows[i].values),
                rows[i].person,
                bad=rows[i].bad,
                duplicate=True,
                tags=[*rows[i].tags, "exact_copy"],
            )
            for i in picked
        ]
        if not shuffled:  # a roster in enrolment order: keyed again later
            return rows + extra
        slots = sorted(rng.randrange(len(rows) + 1) for _ in extra)
        out: list[Row] = []
        j = 0
        for i, row in enumerate(rows):
            while j < len(extra) and slots[j] == i:
                out.append(extra[j])
                j += 1
            out.append(row)
        out.extend(extra[j:])
        return out


class _Named:
    """A stand-in person for :meth:`Renderer.given`: only ``given`` and ``honorific``."""

    __slots__ = ("given", "honorific", "sex")

    def __init__(self, given: str) -> None:
        self.given = given
        self.honorific = False
        self.sex = "M"


class _WithMother:
    """A stand-in person whose 'mother' is the caregiver (for :meth:`Renderer.mother_name`)."""

    __slots__ = ("mother",)

    def __init__(self, caregiver: Person) -> None:
        self.mother = caregiver

