"""The canonical person: the columns every source is mapped onto.

Ingest maps each source's own columns onto the *raw canonical* fields below (still
strings, as the source wrote them). Standardisation turns those into the *standardised*
columns that blocking, comparison and the service use.

Keeping both lists here, as data, means ingest, standardise, the register schema and the
gRPC converters agree on one vocabulary.
"""

from __future__ import annotations

#: Raw canonical fields a source may map (all optional except the record key).
RAW_FIELDS: tuple[str, ...] = (
    "given_name",  # given name(s), possibly compound ("Mamadou Lamine")
    "family_name",  # Sahel / Kenya style family name
    "father_name",  # patronymic naming: father's given name
    "grandfather_name",  # patronymic naming: grandfather's given name
    "full_name",  # one column holding the whole name; see ``name_order``
    "sex",  # any coding; see ``sex_codes``
    "birth_date",  # in the source's stated format; year-only and 00/00/YYYY allowed
    "age",  # age at ``age_reference_date`` when the source records ages, not dates
    "national_id",
    "phone",
    "region",
    "commune",
    "village",
    "household_id",
    "mother_name",
)

#: Standardised columns, with their DuckDB types. Order is the table's column order.
STANDARD_COLUMNS: dict[str, str] = {
    "given_std": "VARCHAR",  # folded given-name tokens joined by a space
    "given_first": "VARCHAR",  # first given-name token, folded
    "given_key": "VARCHAR",  # transliteration key of the first given-name token
    "given_phonetic": "VARCHAR",  # phonetic code of the first given-name token
    "family_std": "VARCHAR",  # folded family name (Sahel) ; NULL for patronymic data
    "family_key": "VARCHAR",
    "father_std": "VARCHAR",  # folded father's name (patronymic)
    "father_key": "VARCHAR",
    "grandfather_std": "VARCHAR",
    "grandfather_key": "VARCHAR",
    "name_keys": "VARCHAR",  # all name-token keys, sorted, space-joined (order-free)
    "mother_key": "VARCHAR",
    "sex": "VARCHAR",  # 'M' | 'F' | NULL
    "birth_year": "INTEGER",
    "birth_month": "INTEGER",  # NULL unless precision is 'day' or 'month'
    "birth_day": "INTEGER",  # NULL unless precision is 'day'
    "birth_precision": "VARCHAR",  # 'day' | 'month' | 'year' | 'placeholder' | 'age'
    "birth_date": "VARCHAR",  # ISO yyyy-mm-dd when precision is 'day', else NULL
    "national_id": "VARCHAR",  # upper-case alphanumerics only
    "phone": "VARCHAR",  # E.164 digits without '+', e.g. '22376123456'
    "region": "VARCHAR",  # folded
    "commune": "VARCHAR",
    "village": "VARCHAR",
    "household_id": "VARCHAR",  # source-scoped: '<source>:<raw id>'
}
