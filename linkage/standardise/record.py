"""One raw canonical record in, one row of :data:`linkage.canonical.STANDARD_COLUMNS` out.

:func:`standardise` is the per-row entry point. For a million rows, build the configuration
once with :func:`make_standardiser`: every name, date and place string is cached, so the
amortised cost is a handful of dictionary look-ups per row.

Two modes. *Strict* (no warnings list, the API): an unusable birth date, age or sex code
raises :class:`~linkage.standardise.RejectError` naming the field. *Lenient* (a warnings
list, batch ingest): the field is blanked, a :class:`~linkage.standardise.FieldWarning` is
appended, and the record is kept; phones and national IDs that are not usable are reported
there too (they are blanked in both modes). A record with no name at all raises in both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import Any, Protocol

from linkage.standardise.dates import MIN_YEAR, from_age, parse_birth_date
from linkage.standardise.errors import FieldWarning, RejectError
from linkage.standardise.ids import clean_national_id, national_id_problem
from linkage.standardise.names import (
    _CACHE_SIZE,
    KEY_CACHES,
    NAME_ORDERS,
    NameRoles,
    _tokens_tuple,
    chain_parts,
    fold,
    full_name_order,
    patronymic_chain,
    phonetic,
    split_full_name,
    split_patronymic,
    translit_key,
)
from linkage.standardise.phones import normalise_phone, phone_problem
from linkage.standardise.sex import parse_sex

__all__ = ["StandardiseOptions", "Standardiser", "make_standardiser", "standardise"]

_EMPTY: tuple[str, ...] = ()


@lru_cache(maxsize=_CACHE_SIZE)
def _part(text: str | None) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """(folded tokens joined or None, tokens, their keys) for one name column."""
    toks = _tokens_tuple(text)
    if not toks:
        return None, _EMPTY, _EMPTY
    return " ".join(toks), toks, tuple(translit_key(t) for t in toks)


@lru_cache(maxsize=_CACHE_SIZE)
def _name_keys(*key_groups: tuple[str, ...]) -> str | None:
    keys = sorted({k for group in key_groups for k in group if k})
    return " ".join(keys) or None


@lru_cache(maxsize=_CACHE_SIZE)
def _mother_key(text: str | None) -> str | None:
    # A mother's name arrives in any order ("Diarra Aminata", "Aminata Diarra"): sort.
    keys = sorted(set(_part(text)[2]))
    return " ".join(keys) or None


@lru_cache(maxsize=_CACHE_SIZE)
def _place(text: str | None) -> str | None:
    return fold(text) or None


@lru_cache(maxsize=1 << 18)
def _sex(raw: str | None, codes: tuple[tuple[str, tuple[str, ...]], ...] | None) -> str | None:
    return parse_sex(raw, None if codes is None else dict(codes))


KEY_CACHES.extend([_part, _name_keys, _mother_key])


def _freeze_codes(
    codes: Mapping[str, Sequence[str]] | None,
) -> tuple[tuple[str, tuple[str, ...]], ...] | None:
    return None if codes is None else tuple(sorted((k, tuple(v)) for k, v in codes.items()))


def _blank(value: str | None) -> bool:
    return not value or value.isspace()


def reads_patronymic(family: str | None, father: str | None, grandfather: str | None,
                     name_order: str | None, patronymic: bool | None = None) -> bool:
    """Whether a row's names are read as one patronymic chain (:func:`patronymic_chain`).

    ``patronymic`` is the source's answer (:func:`linkage.ingest.read.patronymic_names`:
    it maps no family name and a father's or grandfather's name, or a full name in
    ``given_father_grandfather`` order); ``None`` (an API record) decides by the row: no
    family name, and a father's or grandfather's name or that name order.
    """
    if patronymic is not None:
        return patronymic and _blank(family)
    return _blank(family) and (not _blank(father) or not _blank(grandfather)
                               or name_order == "given_father_grandfather")


def _split_names(
    given: str | None,
    family: str | None,
    father: str | None,
    grandfather: str | None,
    full: str | None,
    name_order: str | None,
    roles: NameRoles | None = None,
    patronymic: bool | None = None,
) -> tuple[str | None, str | None, str | None, str | None]:
    if reads_patronymic(family, father, grandfather, name_order, patronymic):
        if _blank(given) and not _blank(full):
            # A full name fills the parts a source did not give columns for.
            g, f, gf = chain_parts(patronymic_chain(full, roles=roles)[0])
            return (g, None, father if not _blank(father) else f,
                    grandfather if not _blank(grandfather) else gf)
        g, f, gf = chain_parts(patronymic_chain(given, father, grandfather, roles)[0])
        return g or None, None, f or None, gf or None
    # Explicit columns win; a full name only fills the parts a source did not split.
    if _blank(given) and not _blank(full):
        if name_order is None:
            raise ValueError("full_name is mapped but name_order is None")
        if name_order == "given_father_grandfather":
            g, f, gf = split_patronymic(full)
            given = g
            father = father if not _blank(father) else f
            grandfather = grandfather if not _blank(grandfather) else gf
        else:
            g, fam = split_full_name(full, full_name_order(full, name_order, roles))
            given = g
            family = family if not _blank(family) else fam
    return given, family, father, grandfather


@lru_cache(maxsize=_CACHE_SIZE)
def _names_block(
    given: str | None,
    family: str | None,
    father: str | None,
    grandfather: str | None,
    full: str | None,
    name_order: str | None,
    roles: NameRoles | None = None,
    patronymic: bool | None = None,
) -> tuple:
    """The eleven name columns (given_std ... name_keys) for one combination of raw names.

    Cached as a whole: a roster repeats the same (given, family) pairs many times, and one
    look-up is cheaper than eleven.
    """
    given, family, father, grandfather = _split_names(
        given, family, father, grandfather, full, name_order, roles, patronymic
    )
    given_std, given_toks, given_keys = _part(given)
    family_std, _, family_keys = _part(family)
    father_std, _, father_keys = _part(father)
    grandfather_std, _, grandfather_keys = _part(grandfather)
    if given_std is None and family_std is None and father_std is None:
        if grandfather_std is None:
            raise RejectError("name", "no name")
    first = given_toks[0] if given_toks else None
    return (
        given_std,
        first,
        given_keys[0] if given_keys else None,
        (phonetic(first) or None) if first else None,
        family_std,
        " ".join(family_keys) or None,
        father_std,
        " ".join(father_keys) or None,
        grandfather_std,
        " ".join(grandfather_keys) or None,
        _name_keys(given_keys, family_keys, father_keys, grandfather_keys),
    )


KEY_CACHES.append(_names_block)

_NO_BIRTH: tuple[None, None, None, None, None] = (None, None, None, None, None)


@lru_cache(maxsize=1 << 18)
def _date_block(birth_raw: str, fmt: str, today: date, min_year: int) -> tuple:
    """(year, month, day, precision, iso) of a birth date."""
    try:
        birth = parse_birth_date(birth_raw, fmt, today=today, min_year=min_year)
    except ValueError as exc:
        raise RejectError("birth_date", str(exc)) from None
    return birth.year, birth.month, birth.day, birth.precision, birth.iso()


@lru_cache(maxsize=1 << 16)
def _age_block(age_raw: str, age_reference_date: date | None, min_year: int) -> tuple:
    """(year, None, None, 'age', None) from an age."""
    if age_reference_date is None:
        raise ValueError("age is mapped but age_reference_date is None")
    try:
        birth = from_age(age_raw, age_reference_date)
    except ValueError as exc:
        raise RejectError("age", str(exc)) from None
    if birth.year is not None and birth.year < min_year:
        raise RejectError("age", f"birth year before {min_year}")
    return birth.year, None, None, birth.precision, None


@dataclasses.dataclass(frozen=True)
class StandardiseOptions:
    """How one source's rows are standardised (see :func:`standardise` for each field).

    Examples:
        >>> opts = StandardiseOptions(source="cash", birth_date_format="%d/%m/%Y",
        ...     age_reference_date=None, country_code="223")
        >>> standardise({"given_name": "Awa", "birth_date": "1850"}, opts)["birth_year"]
        1850
    """

    source: str
    birth_date_format: str
    age_reference_date: date | None
    country_code: str
    sex_codes: Mapping[str, Sequence[str]] | None = None
    name_order: str | None = None
    today: date | None = None
    min_birth_year: int = MIN_YEAR
    #: The register's name roles: a full name with no case marker is read in the other
    #: order when its tokens say so (:class:`~linkage.standardise.names.NameRoles`).
    name_roles: NameRoles | None = None
    #: The source stores patronymic names (given, father's, grandfather's; no family
    #: name), read as one chain whatever columns they came in (:func:`reads_patronymic`);
    #: ``None``: decided per row (API records).
    patronymic: bool | None = None
    #: The project's extra fields (:class:`linkage.matching.extra.ExtraField`): raw fields
    #: ``extra.<name>`` become their ``x_<name>`` columns.
    extra_fields: tuple[Any, ...] = ()

    def _key(self) -> tuple:
        """A hashable form (sex codes frozen) for caching standardisers."""
        return (self.source, self.birth_date_format, self.age_reference_date,
                self.country_code, _freeze_codes(self.sex_codes), self.name_order, self.today,
                self.min_birth_year, self.name_roles, self.patronymic, self.extra_fields)


def _options(options: StandardiseOptions | None, kwargs: dict[str, Any]) -> StandardiseOptions:
    if options is None:
        return StandardiseOptions(**kwargs)
    return dataclasses.replace(options, **kwargs) if kwargs else options


class Standardiser(Protocol):
    """What :func:`make_standardiser` returns: ``fn(raw, warnings=None) -> row``."""

    def __call__(self, raw: Mapping[str, Any],
                 warnings: list[FieldWarning] | None = None) -> dict[str, Any]: ...


def make_standardiser(options: StandardiseOptions | None = None, /,
                      **kwargs: Any) -> Standardiser:
    """Bind a source's configuration once; return a fast per-row function.

    Args:
        options: The configuration; or give its fields as keywords (as for
            :func:`standardise`), which also override fields of ``options``.

    Returns:
        ``fn(raw, warnings=None) -> dict`` equivalent to
        ``standardise(raw, options, warnings=warnings)``.

    Raises:
        ValueError: ``name_order`` is not one of :data:`~linkage.standardise.NAME_ORDERS`.

    Examples:
        >>> fn = make_standardiser(source="cash", birth_date_format="%d/%m/%Y",
        ...     age_reference_date=None, country_code="223")
        >>> fn({"given_name": "Moussa", "family_name": "TRAORE"})["family_key"]
        'traur'
        >>> found = []
        >>> fn({"given_name": "Moussa", "sex": "X"}, found)["sex"], found
        (None, [FieldWarning(field='sex', reason='unknown sex code')])
    """
    opts = _options(options, kwargs)
    name_order = opts.name_order
    if name_order is not None and name_order not in NAME_ORDERS:
        raise ValueError(f"unknown name order {name_order!r}; expected one of {NAME_ORDERS}")
    codes = _freeze_codes(opts.sex_codes)
    ref_today = opts.today or date.today()
    cc = opts.country_code.strip().lstrip("+")
    prefix = f"{opts.source}:"
    fmt = opts.birth_date_format
    age_ref = opts.age_reference_date
    min_year = opts.min_birth_year
    roles = opts.name_roles
    patronymic = opts.patronymic
    extra_fields = opts.extra_fields
    if extra_fields:
        # Imported here: linkage.matching imports this package's errors module.
        from linkage.matching.extra import standardise_extra

    def age_birth(age_raw: str | None, warnings: list[FieldWarning] | None) -> tuple:
        if _blank(age_raw):
            return _NO_BIRTH
        try:
            return _age_block(age_raw.strip(), age_ref, min_year)
        except RejectError as exc:
            if warnings is None:
                raise
            warnings.append(FieldWarning("age", age_raw, exc.reason))
            return _NO_BIRTH

    def run(raw: Mapping[str, Any], warnings: list[FieldWarning] | None = None
            ) -> dict[str, Any]:
        get = raw.get
        (
            given_std,
            given_first,
            given_key,
            given_phonetic,
            family_std,
            family_key,
            father_std,
            father_key,
            grandfather_std,
            grandfather_key,
            name_keys,
        ) = _names_block(
            get("given_name"),
            get("family_name"),
            get("father_name"),
            get("grandfather_name"),
            get("full_name"),
            name_order,
            roles,
            patronymic,
        )
        sex_raw = get("sex")
        try:
            sex = _sex(sex_raw, codes)
        except ValueError as exc:
            if warnings is None:
                raise RejectError("sex", str(exc)) from None
            warnings.append(FieldWarning("sex", sex_raw, str(exc)))
            sex = None
        birth = _NO_BIRTH
        birth_raw = get("birth_date")
        age_raw = get("age")
        if not _blank(birth_raw):
            try:
                birth = _date_block(birth_raw.strip(), fmt, ref_today, min_year)
            except RejectError as exc:
                if warnings is None:
                    raise
                warnings.append(FieldWarning("birth_date", birth_raw, exc.reason))
                if age_ref is not None:  # lenient: estimate from the age instead, if any
                    birth = age_birth(age_raw, warnings)
        elif not _blank(age_raw):
            birth = age_birth(age_raw, warnings)
        year, month, day, precision, iso = birth
        national_id_raw = get("national_id")
        national_id = clean_national_id(national_id_raw)
        if national_id is None and warnings is not None and national_id_raw:
            reason = national_id_problem(national_id_raw)
            if reason:
                warnings.append(FieldWarning("national_id", national_id_raw, reason))
        phone_raw = get("phone")
        phone = normalise_phone(phone_raw, cc)
        if phone is None and warnings is not None and phone_raw:
            reason = phone_problem(phone_raw, cc)
            if reason:
                warnings.append(FieldWarning("phone", phone_raw, reason))
        household = get("household_id")
        out = {
            "given_std": given_std,
            "given_first": given_first,
            "given_key": given_key,
            "given_phonetic": given_phonetic,
            "family_std": family_std,
            "family_key": family_key,
            "father_std": father_std,
            "father_key": father_key,
            "grandfather_std": grandfather_std,
            "grandfather_key": grandfather_key,
            "name_keys": name_keys,
            "mother_key": _mother_key(get("mother_name")),
            "sex": sex,
            "birth_year": year,
            "birth_month": month,
            "birth_day": day,
            "birth_precision": precision,
            "birth_date": iso,
            "national_id": national_id,
            "phone": phone,
            "region": _place(get("region")),
            "commune": _place(get("commune")),
            "village": _place(get("village")),
            "household_id": None if _blank(household) else prefix + household.strip(),
        }
        if extra_fields:
            out.update(standardise_extra(extra_fields, raw, warnings))
        return out

    return run


def standardise(
    raw: Mapping[str, Any],
    options: StandardiseOptions | None = None,
    /,
    *,
    warnings: list[FieldWarning] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Standardise one raw canonical record.

    Args:
        raw: Raw canonical fields (:data:`linkage.canonical.RAW_FIELDS`), strings or None;
            missing keys are treated as None.
        options: A :class:`StandardiseOptions`; or give its fields as keywords (they also
            override fields of ``options``):

            * ``source``: source name; scopes ``household_id`` as ``'<source>:<raw id>'``.
            * ``birth_date_format``: strptime-like format of ``birth_date`` (see
              :func:`~linkage.standardise.parse_birth_date`).
            * ``age_reference_date``: date at which ``age`` was recorded (required if ages
              are used).
            * ``country_code``: calling code for phones without one ('223', '253', '254').
            * ``sex_codes``: the source's sex coding, ``{'M': [...], 'F': [...]}``; default
              codes otherwise.
            * ``name_order``: how to split ``full_name``: ``'family_given'``,
              ``'given_family'`` or ``'given_father_grandfather'``. Used only when
              ``given_name`` is empty.
            * ``today``: reference for "date in the future" (default: the current date).
            * ``min_birth_year``: earliest accepted birth year (default
              :data:`~linkage.standardise.MIN_YEAR`, 1800).
        warnings: None to validate strictly (raise :class:`RejectError` for a bad field);
            a list to be lenient: each unusable field is blanked and a
            :class:`FieldWarning` appended. A bad birth date then falls back on ``age``.

    Returns:
        A dict with exactly the keys of :data:`linkage.canonical.STANDARD_COLUMNS`, in
        order; absent values are None.

    Raises:
        RejectError: no name at all (in both modes); strictly also an unparseable,
            impossible or future birth date or one before ``min_birth_year``, an absurd or
            non-numeric age, or an unknown sex code. Unusable phones and IDs never raise.
        ValueError: a configuration error (``full_name`` without ``name_order``, ``age``
            without ``age_reference_date`` when validating strictly).

    Examples:
        >>> row = standardise(
        ...     {"full_name": "TRAORE Mamadou Lamine", "sex": "H", "birth_date": "00/00/1975",
        ...      "phone": "76 12 34 56", "household_id": "H12"},
        ...     source="cash", birth_date_format="%d/%m/%Y", age_reference_date=None,
        ...     country_code="223", name_order="family_given")
        >>> row["given_std"], row["family_key"], row["birth_precision"], row["phone"]
        ('mamadou lamine', 'traur', 'year', '22376123456')
    """
    opts = _options(options, kwargs)
    return _cached_standardiser(opts._key())(raw, warnings)


@lru_cache(maxsize=256)
def _cached_standardiser(key: tuple) -> Standardiser:
    source, fmt, ref, cc, codes, name_order, today, min_year, roles, patronymic, extra = key
    return make_standardiser(
        source=source,
        birth_date_format=fmt,
        age_reference_date=ref,
        country_code=cc,
        sex_codes=None if codes is None else dict(codes),
        name_order=name_order,
        today=today,
        min_birth_year=min_year,
        name_roles=roles,
        patronymic=patronymic,
        extra_fields=extra,
    )
