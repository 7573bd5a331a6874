"""The true population: persons living in households, villages, communes and regions.

This is the ground truth every source is drawn from. Households are built the way
census enumerators see them: a head, usually a spouse, their children (with twins),
sometimes a grandparent and nephews or nieces. Members share the family name (sahel)
or the father's and grandfather's names (horn), a village and often one phone.
"""

from __future__ import annotations

import bisect
import itertools
import random
from dataclasses import dataclass, field
from datetime import date

from linkage.synthetic.noise import strip_accents
from linkage.synthetic.profiles import Profile

#: The day the synthetic world is observed.
NOW = date(2024, 6, 1)
_NOW_ORD = NOW.toordinal()

#: Household size 1..10; mean ~5.2 (Sahel / Horn rural averages are 5-7).
_SIZE_WEIGHTS = (0.07, 0.10, 0.12, 0.13, 0.14, 0.12, 0.10, 0.08, 0.07, 0.07)
_TWIN_RATE = 0.02  # share of births that are twin births


class Sampler:
    """Zipf-weighted sampling from a frequency-ordered list (fast, via cumulative weights)."""

    def __init__(self, items: tuple[str, ...] | list[str], exponent: float) -> None:
        self.items = list(items)
        weights = [1.0 / (rank + 1) ** exponent for rank in range(len(self.items))]
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def draw(self, rng: random.Random) -> str:
        """One item, Zipf-weighted."""
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


@dataclass(slots=True)
class Person:
    """One true human being."""

    pid: str
    hid: str
    role: str  # head | spouse | child | twin | grandparent | relative
    sex: str  # 'M' | 'F'
    given: str  # may be compound ("Mamadou Lamine")
    family: str  # sahel family name; '' for patronymic profiles
    father: str  # horn: father's given name; '' for sahel
    grandfather: str  # horn: father's father's given name
    birth: date
    day_known: bool  # False: the person only knows (roughly) the birth year
    nid: str | None = None
    phone: str | None = None  # own phone (local digits), if any
    mother: Person | None = None
    honorific: bool = False  # old enough and pious enough to be called El Hadj / Hadja


@dataclass(slots=True)
class Household:
    """A household: members sharing a dwelling, a village and often a phone."""

    hid: str
    region: str
    commune: str
    village: str
    phone: str | None
    members: list[Person] = field(default_factory=list)


@dataclass
class Geography:
    """Regions -> communes -> villages, with population weights."""

    regions: list[str]
    region_weights: list[float]
    communes: dict[str, list[str]]  # region -> communes
    villages: dict[str, list[str]]  # commune -> villages
    region_of: dict[str, str]  # commune -> region

    def draw(self, rng: random.Random) -> tuple[str, str, str]:
        """A (region, commune, village) weighted by population."""
        region = rng.choices(self.regions, weights=self.region_weights)[0]
        commune = rng.choice(self.communes[region])
        villages = self.villages[commune]
        # big villages first: a mild Zipf inside each commune
        village = villages[min(int(rng.paretovariate(1.2)) - 1, len(villages) - 1)]
        return region, commune, village

    def move(
        self,
        region: str,
        commune: str,
        village: str,
        rng: random.Random,
        p_same_commune: float = 0.85,
    ) -> tuple[str, str, str]:
        """Where a person who moved is found: usually the same commune, else the same region."""
        if rng.random() < p_same_commune or len(self.communes[region]) == 1:
            options = [v for v in self.villages[commune] if v != village]
            return region, commune, rng.choice(options) if options else village
        new_commune = rng.choice([c for c in self.communes[region] if c != commune])
        return region, new_commune, rng.choice(self.villages[new_commune])


def build_geography(profile: Profile, rng: random.Random) -> Geography:
    """Invent village names (seeded) under the profile's real regions and communes."""
    communes: dict[str, list[str]] = {}
    villages: dict[str, list[str]] = {}
    region_of: dict[str, str] = {}
    for region, names in profile.regions.items():
        communes[region] = list(names)
        for commune in names:
            region_of[commune] = region
            fixed = profile.fixed_villages.get(commune)
            if fixed:
                villages[commune] = list(fixed)
                continue
            seen: list[str] = [commune]  # the chef-lieu is a village of its commune
            while len(seen) < rng.randint(10, 24):
                n = rng.choice((2, 2, 2, 3))
                stem = "".join(rng.choice(profile.village_syllables) for _ in range(n))
                name = (stem + rng.choice(profile.village_suffixes)).capitalize()
                if rng.random() < 0.08:
                    name = rng.choice(("N'", "Sou", "Dar ", "Kalan")) + name.lower()
                if name not in seen and len(strip_accents(name)) > 3:
                    seen.append(name)
            villages[commune] = seen
    return Geography(
        list(profile.regions), list(profile.region_weights), communes, villages, region_of
    )


class PopulationBuilder:
    """Builds households and persons for one profile."""

    def __init__(self, profile: Profile, rng: random.Random) -> None:
        self.p = profile
        self.rng = rng
        self.geo = build_geography(profile, rng)
        self.male = Sampler(profile.male_given, profile.zipf_given)
        self.female = Sampler(profile.female_given, profile.zipf_given)
        self.family = (
            Sampler(profile.family_names, profile.zipf_family) if profile.family_names else None
        )
        self.persons: list[Person] = []
        self.households: list[Household] = []
        self._used_phones: set[str] = set()
        self._used_nids: set[str] = set()

    # -- small draws -------------------------------------------------------------------
    def phone(self) -> str:
        """A fresh mobile number (local digits)."""
        while True:
            prefix = self.rng.choice(self.p.phone_prefixes)
            rest = self.p.phone_digits - len(prefix)
            number = prefix + str(self.rng.randrange(10**rest)).zfill(rest)
            if number not in self._used_phones:
                self._used_phones.add(number)
                return number

    def nid(self) -> str:
        """A fresh national ID number (NINA-like for sahel, NNI-like for horn)."""
        while True:
            digits = str(self.rng.randrange(10 ** (self.p.nid_digits - 1), 10**self.p.nid_digits))
            value = digits + (
                self.rng.choice("ABCDEFGHJKLMNPRSTUVWXYZ") if self.p.nid_letter else ""
            )
            if value not in self._used_nids:
                self._used_nids.add(value)
                return value

    def given(self, sex: str) -> str:
        """A given name, compound for some Sahel persons."""
        rng = self.rng
        name = (self.male if sex == "M" else self.female).draw(rng)
        compounds = self.p.compound_male if sex == "M" else self.p.compound_female
        if compounds and rng.random() < 0.14:
            second = rng.choice(compounds)
            if second != name:
                name = f"{name} {second}"
        return name

    def family_name(self) -> str:
        """A family name (sahel); a few Tuareg / Moor families carry a particle."""
        assert self.family is not None
        if self.p.particle_families and self.rng.random() < 0.025:
            return self.rng.choice(self.p.particle_families)
        return self.family.draw(self.rng)

    def birth(self, age_years: float) -> date:
        """A birth date ``age_years`` before NOW (never in the future)."""
        return date.fromordinal(
            max(_NOW_ORD - int(age_years * 365.25) - self.rng.randrange(0, 60), 1)
        )

    def _person(
        self,
        hh: Household,
        role: str,
        sex: str,
        given: str,
        family: str,
        father: str,
        grandfather: str,
        birth: date,
        mother: Person | None = None,
    ) -> Person:
        rng = self.rng
        year = birth.year
        p_day = 0.9 if year >= 2005 else 0.72 if year >= 1990 else 0.5 if year >= 1970 else 0.3
        age = NOW.year - year
        person = Person(
            pid=f"P{len(self.persons) + 1:07d}",
            hid=hh.hid,
            role=role,
            sex=sex,
            given=given,
            family=family,
            father=father,
            grandfather=grandfather,
            birth=birth,
            day_known=rng.random() < p_day,
            mother=mother,
            honorific=age >= 45 and rng.random() < 0.25,
        )
        if age >= 16 and rng.random() < (0.55 if role == "head" else 0.35):
            person.phone = self.phone()
        self.persons.append(person)
        hh.members.append(person)
        return person

    # -- households --------------------------------------------------------------------
    def household(self) -> Household:
        """One household, its members appended to ``self.persons``."""
        rng = self.rng
        region, commune, village = self.geo.draw(rng)
        hh = Household(
            f"H{len(self.households) + 1:07d}",
            region,
            commune,
            village,
            self.phone() if rng.random() < 0.75 else None,
        )
        self.households.append(hh)
        size = rng.choices(range(1, 11), weights=_SIZE_WEIGHTS)[0]
        patr = self.p.patronymic
        male = self.male

        head_sex = "F" if (rng.random() < 0.14 or (size == 1 and rng.random() < 0.3)) else "M"
        head_age = rng.triangular(20, 80, 34)
        fam = "" if patr else self.family_name()
        h_father = male.draw(rng) if patr else ""
        h_grand = male.draw(rng) if patr else ""
        head = self._person(
            hh, "head", head_sex, self.given(head_sex), fam, h_father, h_grand, self.birth(head_age)
        )
        slots = size - 1
        mother: Person | None = head if head_sex == "F" else None
        mother_age = head_age if head_sex == "F" else 0.0
        father = head if head_sex == "M" else None

        if head_sex == "M" and slots > 0:
            w_age = max(16.0, head_age - rng.uniform(0, 14))
            if patr:
                w_family = ""
            else:  # Malian women mostly keep their own name; some rosters use the husband's
                w_family = self.family_name() if rng.random() < 0.6 else fam
            mother = self._person(
                hh,
                "spouse",
                "F",
                self.given("F"),
                w_family,
                male.draw(rng) if patr else "",
                male.draw(rng) if patr else "",
                self.birth(w_age),
            )
            mother_age = w_age
            slots -= 1

        if slots >= 3 and head_age < 55 and rng.random() < 0.2:  # a grandparent lives with them
            g_age = min(head_age + rng.uniform(18, 35), 98)
            if rng.random() < 0.45:
                self._person(
                    hh,
                    "grandparent",
                    "M",
                    h_father if patr else self.given("M"),
                    fam,
                    h_grand,
                    male.draw(rng) if patr else "",
                    self.birth(g_age),
                )
            else:
                self._person(
                    hh,
                    "grandparent",
                    "F",
                    self.given("F"),
                    "" if patr else self.family_name(),
                    male.draw(rng) if patr else "",
                    male.draw(rng) if patr else "",
                    self.birth(g_age),
                )
            slots -= 1

        # children, oldest first, spaced 1.5-4 years, twins ~2% of births
        child_age = (mother_age - rng.uniform(17, 25)) if mother is not None else rng.uniform(0, 20)
        c_father = c_grand = ""
        if patr:  # a child's second name is its father's first, its third the father's father's
            c_father = father.given.split(" ")[0] if father else male.draw(rng)
            c_grand = father.father if father else male.draw(rng)
        while slots > 0 and child_age > 0:
            twins = slots >= 2 and rng.random() < _TWIN_RATE
            birth = self.birth(child_age)
            for k in range(2 if twins else 1):
                sex = "M" if rng.random() < 0.51 else "F"
                name = self._child_name(sex, twins, k, father, mother)
                self._person(
                    hh,
                    "twin" if twins else "child",
                    sex,
                    name,
                    fam,
                    c_father,
                    c_grand,
                    birth,
                    mother,
                )
                slots -= 1
            child_age -= rng.uniform(1.5, 4.0)

        while slots > 0:  # nephews, nieces, other relatives
            sex = "M" if rng.random() < 0.5 else "F"
            same_family = patr or rng.random() < 0.7
            self._person(
                hh,
                "relative",
                sex,
                self.given(sex),
                fam if same_family else self.family_name(),
                male.draw(rng) if patr else "",
                h_father if patr else "",
                self.birth(rng.uniform(0.2, 28)),
            )
            slots -= 1
        return hh

    def _child_name(
        self, sex: str, twins: bool, k: int, father: Person | None, mother: Person | None
    ) -> str:
        """A child's given name: traditional twin names, sometimes the parent's own name."""
        rng = self.rng
        if twins and rng.random() < 0.4:  # Hassan / Houssein (Lassana / Fousseyni) for twins
            if self.p.patronymic:
                pair = ("Hassan", "Houssein") if sex == "M" else ("Hawa", "Amina")
            else:
                pair = ("Lassana", "Fousseyni") if sex == "M" else ("Awa", "Adama")
            return pair[k]
        parent = father if sex == "M" else mother
        if parent is not None and rng.random() < 0.03:  # named after the parent: homonyms
            return parent.given
        return self.given(sex)

    def build(self, n_persons: int) -> None:
        """Create households until ``n_persons`` persons exist (the last one is trimmed)."""
        while len(self.persons) < n_persons:
            self.household()
        extra = len(self.persons) - n_persons
        if extra:
            last = self.households[-1]
            del last.members[len(last.members) - extra :]
            del self.persons[n_persons:]
            if not last.members:
                self.households.pop()
