"""One raw canonical record in, one row of :data:`linkage.canonical.STANDARD_COLUMNS` out.

:func:`standardise` is the per-row entry point. For a million rows, build the configuration
once with :func:`make_standardiser`: every name, date and place string is cached, so the
amortised cost is a handful of dictionary look-ups per row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from functools import lru_cache
from typing import Any

from linkage.standardise.dates import BirthDate, from_age, parse_birth_date
from linkage.standardise.errors import RejectError
from linkage.standardise.ids import clean_national_id
from linkage.standardise.names import (
    _CACHE_SIZE,
    KEY_CACHES,
    NAME_ORDERS,
    _tokens_tuple,
    fold,
    phonetic,
    split_full_name,
    split_patronymic,
    translit_key,
)
from linkage.standardise.phones import normalise_phone
from linkage.standardise.sex import parse_sex

__all__ = ["make_standardiser", "standardise"]

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


def _split_names(
    given: str | None,
    family: str | None,
    father: str | None,
    grandfather: str | None,
    full: str | None,
    name_order: str | None,
) -> tuple[str | None, str | None, str | None, str | None]:
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
            g, fam = split_full_name(full, name_order)
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
) -> tuple:
    """The eleven name columns (given_std ... name_keys) for one combination of raw names.

    Cached as a whole: a roster repeats the same (given, family) pairs many times, and one
    look-up is cheaper than eleven.
    """
    given, family, father, grandfather = _split_names(
        given, family, father, grandfather, full, name_order
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
def _birth_block(
    birth_raw: str | None,
    age_raw: str | None,
    fmt: str,
    age_reference_date: date | None,
    today: date,
) -> tuple:
    """(year, month, day, precision, iso) from a birth date, else from an age."""
    birth: BirthDate
    if not _blank(birth_raw):
        try:
            birth = parse_birth_date(birth_raw, fmt, today=today)
        except ValueError as exc:
            raise RejectError("birth_date", str(exc)) from None
    elif not _blank(age_raw):
        if age_reference_date is None:
            raise ValueError("age is mapped but age_reference_date is None")
        try:
            birth = from_age(age_raw, age_reference_date)
        except ValueError as exc:
            raise RejectError("age", str(exc)) from None
    else:
        return _NO_BIRTH
    return birth.year, birth.month, birth.day, birth.precision, birth.iso()


def make_standardiser(
    *,
    source: str,
    birth_date_format: str,
    age_reference_date: date | None,
    country_code: str,
    sex_codes: Mapping[str, Sequence[str]] | None = None,
    name_order: str | None = None,
    today: date | None = None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """Bind a source's configuration once; return a fast per-row function.

    Args: as for :func:`standardise`.

    Returns:
        ``fn(raw) -> dict`` equivalent to ``standardise(raw, **config)``.

    Raises:
        ValueError: ``name_order`` is not one of :data:`~linkage.standardise.NAME_ORDERS`.

    Examples:
        >>> fn = make_standardiser(source="cash", birth_date_format="%d/%m/%Y",
        ...     age_reference_date=None, country_code="223")
        >>> fn({"given_name": "Moussa", "family_name": "TRAORE"})["family_key"]
        'traur'
    """
    if name_order is not None and name_order not in NAME_ORDERS:
        raise ValueError(f"unknown name order {name_order!r}; expected one of {NAME_ORDERS}")
    codes = _freeze_codes(sex_codes)
    ref_today = today or date.today()
    cc = country_code.strip().lstrip("+")
    prefix = f"{source}:"

    def run(raw: Mapping[str, Any]) -> dict[str, Any]:
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
        )
        try:
            sex = _sex(get("sex"), codes)
        except ValueError as exc:
            raise RejectError("sex", str(exc)) from None
        year, month, day, precision, iso = _birth_block(
            get("birth_date"), get("age"), birth_date_format, age_reference_date, ref_today
        )
        household = get("household_id")
        return {
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
            "national_id": clean_national_id(get("national_id")),
            "phone": normalise_phone(get("phone"), cc),
            "region": _place(get("region")),
            "commune": _place(get("commune")),
            "village": _place(get("village")),
            "household_id": None if _blank(household) else prefix + household.strip(),
        }

    return run


def standardise(
    raw: Mapping[str, Any],
    *,
    source: str,
    birth_date_format: str,
    age_reference_date: date | None,
    country_code: str,
    sex_codes: Mapping[str, Sequence[str]] | None = None,
    name_order: str | None = None,
    today: date | None = None,
) -> dict[str, Any]:
    """Standardise one raw canonical record.

    Args:
        raw: Raw canonical fields (:data:`linkage.canonical.RAW_FIELDS`), strings or None;
            missing keys are treated as None.
        source: Source name; scopes ``household_id`` as ``'<source>:<raw id>'``.
        birth_date_format: strptime-like format of ``birth_date`` (see
            :func:`~linkage.standardise.parse_birth_date`).
        age_reference_date: Date at which ``age`` was recorded (required if ages are used).
        country_code: Calling code for phones without one ('223', '253', '254').
        sex_codes: The source's sex coding, ``{'M': [...], 'F': [...]}``; default codes
            otherwise.
        name_order: How to split ``full_name``: ``'family_given'``, ``'given_family'`` or
            ``'given_father_grandfather'``. Used only when ``given_name`` is empty.
        today: Reference for "date in the future" (default: the current date).

    Returns:
        A dict with exactly the keys of :data:`linkage.canonical.STANDARD_COLUMNS`, in
        order; absent values are None.

    Raises:
        RejectError: no name at all, an unparseable or impossible birth date, an absurd
            or non-numeric age, or an unknown sex code.
        ValueError: a configuration error (``full_name`` without ``name_order``, ``age``
            without ``age_reference_date``).

    Examples:
        >>> row = standardise(
        ...     {"full_name": "TRAORE Mamadou Lamine", "sex": "H", "birth_date": "00/00/1975",
        ...      "phone": "76 12 34 56", "household_id": "H12"},
        ...     source="cash", birth_date_format="%d/%m/%Y", age_reference_date=None,
        ...     country_code="223", name_order="family_given")
        >>> row["given_std"], row["family_key"], row["birth_precision"], row["phone"]
        ('mamadou lamine', 'traur', 'year', '22376123456')
    """
    return _cached_standardiser(
        source,
        birth_date_format,
        age_reference_date,
        country_code,
        _freeze_codes(sex_codes),
        name_order,
        today,
    )(raw)


@lru_cache(maxsize=256)
def _cached_standardiser(
    source: str,
    birth_date_format: str,
    age_reference_date: date | None,
    country_code: str,
    sex_codes: tuple[tuple[str, tuple[str, ...]], ...] | None,
    name_order: str | None,
    today: date | None,
) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    return make_standardiser(
        source=source,
        birth_date_format=birth_date_format,
        age_reference_date=age_reference_date,
        country_code=country_code,
        sex_codes=None if sex_codes is None else dict(sex_codes),
        name_order=name_order,
        today=today,
    )
