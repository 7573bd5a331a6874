"""Standardisation: pure functions from raw canonical strings to comparable values.

No database and no Splink here: every function takes strings and returns strings, ints or
small frozen values, and the hot ones are cached because names, dates and places are
concentrated.

Examples:
    >>> from linkage.standardise import translit_key, parse_birth_date, normalise_phone
    >>> translit_key("Koulibaly") == translit_key("Coulibaly")
    True
    >>> parse_birth_date("01/01/1980", "%d/%m/%Y").precision
    'placeholder'
    >>> normalise_phone("0712 345 678", "254")
    '254712345678'
"""

from linkage.standardise.dates import (
    MAX_AGE,
    MIN_YEAR,
    PLACEHOLDER_DAY_MONTHS,
    PRECISIONS,
    RELATIONS,
    BirthDate,
    date_relation,
    from_age,
    parse_birth_date,
)
from linkage.standardise.errors import FieldWarning, RejectError
from linkage.standardise.ids import clean_national_id, national_id_problem
from linkage.standardise.names import (
    NAME_ORDERS,
    VariantTable,
    fold,
    load_variants,
    phonetic,
    rule_key,
    split_full_name,
    split_patronymic,
    tokens,
    translit_key,
    use_variants,
)
from linkage.standardise.phones import normalise_phone, phone_problem
from linkage.standardise.record import (
    StandardiseOptions,
    Standardiser,
    make_standardiser,
    standardise,
)
from linkage.standardise.sex import DEFAULT_SEX_CODES, parse_sex

__all__ = [
    "DEFAULT_SEX_CODES",
    "MAX_AGE",
    "MIN_YEAR",
    "NAME_ORDERS",
    "PLACEHOLDER_DAY_MONTHS",
    "PRECISIONS",
    "RELATIONS",
    "BirthDate",
    "FieldWarning",
    "RejectError",
    "StandardiseOptions",
    "Standardiser",
    "VariantTable",
    "clean_national_id",
    "date_relation",
    "fold",
    "from_age",
    "load_variants",
    "make_standardiser",
    "national_id_problem",
    "normalise_phone",
    "parse_birth_date",
    "parse_sex",
    "phone_problem",
    "phonetic",
    "rule_key",
    "split_full_name",
    "split_patronymic",
    "standardise",
    "tokens",
    "translit_key",
    "use_variants",
]
