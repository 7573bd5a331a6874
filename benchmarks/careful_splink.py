"""A careful plain-Splink set-up, from a generated register's raw source files (issue 11).

Usage::

    python -m benchmarks.careful_splink --dir DIR --out mapping.csv [--stats stats.json]
        [--u-max-pairs 1e7] [--sample 300] [--seed 42] [--memory-limit 4GB]

``DIR`` is what :mod:`benchmarks.generate` writes (``project.yaml``, ``sources/*.yaml``,
``data/*``, ``truth.csv``). This is what a careful Splink user writes in an afternoon, not
our product: only :func:`linkage.standardise.names.fold` (accent folding, lower case) is
imported from ``linkage``; reading, standardising, training, blocking and clustering are
pandas, DuckDB SQL, jellyfish and Splink 5 here. The source YAML files are read only for
what a user knows about their own files (path, format, delimiter, encoding, which column
holds which field, date format, sex codes, the age reference date).

Standardisation

* names: accent folding; per name part a spelling-normalised key (``_spell``: ou→u,
  dj→j, kh→h, ph→f, ch→sh, y→i, w→u, c/q→k, h after a vowel dropped, o→u, e→i, a final
  silent e dropped, doubled letters collapsed; horn: x→h and c (the ʿayn) dropped) and a
  metaphone key of it (a metaphone level also needs Jaro-Winkler ≥ 0.8 on the keys:
  metaphone alone puts Hassan with Hussein);
* name order: in a single full-name column the upper-case words are the family name
  (sahel) or the father's and grandfather's names (horn) when the rest is not upper case;
  otherwise, and for every given/family pair in separate columns, the order is chosen from
  how often each token occurs as a given name or as a family (father's) name in the whole
  input (a swap is made only when both tokens point the same way);
* dates: a precision per date: ``day``; ``year`` (year only, ``00/00/YYYY``, a default
  ``01/01``); ``age`` (from an age and the reference date, year = reference year − age − 1);
* place: phone = last 8 digits; region filled from the commune where other records tell it.

Model (Fellegi-Sunter, Splink)

* comparisons: given name (exact with term frequencies, spelling key, metaphone, Jaro-
  Winkler ≥ 0.9, given = the other's family/father name); family name (horn: father's
  name) the same; horn: grandfather's name; one date comparison (exact, one typo or day/
  month swap, same year with a year-only side, age-derived within 1, within 2, within 5);
  sex; one combined place-and-phone comparison (phone and commune, phone, village,
  commune, region) so household evidence is not counted twice; mother's name against a
  caregiver's name; national ID (exact, one transposition/edit);
* m from pairs sharing a national ID (Splink's ``estimate_m_from_label_column``); the ID's
  own m on pairs that agree on given and family name keys, full date and commune; u from
  random pairs (``--u-max-pairs``, 10 million by default); prior from the deterministic
  rules "same ID" and "same names and full date" with recall 0.7;
* nine blocking rules (below), including given name + full date and family name + full
  date;
* threshold: 300 predicted pairs sampled across the match-weight range (ten equal-width
  strata), labelled from the truth (the clerical review: nothing else reads the truth);
  each candidate threshold (0.1 ... 0.99) is clustered with Splink's connected components
  and judged on that sample alone (a sampled pair counts as linked when its two records
  share a cluster, since components chain), and the threshold with the best
  stratum-weighted F1 is kept (the best pair-level threshold is reported too);
* Splink's connected components at that threshold.

Writes ``source,record_key,person_id`` to ``--out`` (what :mod:`benchmarks.score` reads),
the standardised records next to it (``careful_records.parquet``, for the error
analysis), and figures to ``--stats``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import duckdb
import jellyfish
import pandas as pd
import yaml
from splink import DuckDBAPI, Linker, SettingsCreator, block_on

from linkage.standardise.names import fold

__all__ = ["load_sources", "standardise", "settings", "BLOCKING_RULES", "run", "main"]

# --------------------------------------------------------------------------------------
# reading the sources
# --------------------------------------------------------------------------------------

FIELDS = ("given_name", "family_name", "father_name", "grandfather_name", "full_name", "sex",
          "birth_date", "age", "national_id", "phone", "region", "commune", "village",
          "household_id", "mother_name")


def _read(path: Path, src: dict[str, Any]) -> pd.DataFrame:
    fmt = src.get("format", "csv")
    if fmt == "csv":
        return pd.read_csv(path, sep=src.get("delimiter", ","), dtype=str,
                           encoding=src.get("encoding", "utf-8"), keep_default_na=False)
    if fmt == "parquet":
        return pd.read_parquet(path)
    if fmt == "jsonl":
        return pd.read_json(path, lines=True, dtype=False, encoding=src.get("encoding", "utf-8"))
    raise ValueError(f"{path}: unknown format {fmt}")


def load_sources(project_dir: Path) -> pd.DataFrame:
    """Every source's rows with the canonical fields (as raw text) plus source metadata."""
    project = yaml.safe_load((project_dir / "project.yaml").read_text(encoding="utf-8"))
    frames = []
    for rel in project["sources"]:
        ypath = (project_dir / rel).resolve()
        src = yaml.safe_load(ypath.read_text(encoding="utf-8"))
        paths = sorted(ypath.parent.glob(src["path"]))
        raw = pd.concat([_read(p, src) for p in paths], ignore_index=True)
        out = pd.DataFrame({"source": src["name"],
                            "record_key": raw[src["record_key"]].astype(str)})
        for f in FIELDS:
            col = src["columns"].get(f)
            if col is not None and col in raw:
                vals = raw[col]
                if f == "age":
                    out[f] = pd.to_numeric(vals, errors="coerce")
                else:
                    out[f] = vals.map(lambda v: None if v is None or (isinstance(v, float)
                                      and math.isnan(v)) or str(v).strip() == "" else str(v))
            else:
                out[f] = None
        out["name_order"] = src.get("name_order", "")
        out["date_format"] = src.get("birth_date_format", "%d/%m/%Y")
        out["age_ref"] = src.get("age_reference_date")
        codes = src.get("sex_codes") or {}
        out["sex_codes"] = json.dumps({k: [str(x).lower() for x in v or []]
                                       for k, v in codes.items()})
        frames.append(out)
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------------------
# standardisation
# --------------------------------------------------------------------------------------

_SPELL_RULES = [("ph", "f"), ("ch", "sh"), ("dj", "j"), ("kh", "h"), ("gh", "g"), ("ou", "u"),
                ("oo", "u"), ("ee", "i"), ("y", "i"), ("w", "u"), ("q", "k"), ("c", "k"),
                ("z", "s")]
_VOWEL_H = re.compile(r"([aeiou])h")
_DOUBLE = re.compile(r"(.)\1+")
_VOWELS = str.maketrans({"o": "u", "e": "i"})


def _spell(token: str, horn: bool) -> str:
    """Spelling-normalised key of one folded name token."""
    t = re.sub(r"[^a-z]", "", token)
    if not t:
        return ""
    if horn:
        t = t.replace("x", "h")
        # Somali c is the ʿayn (Cali = Ali, Ismaaciil = Ismail, Cumar = Omar)
        t = re.sub(r"c(?!h)", "", t) or t
    for a, b in _SPELL_RULES:
        t = t.replace(a, b)
    t = _VOWEL_H.sub(r"\1", t)
    # vowels that transliterations exchange: o/u (Osman, Usman), e/i (Hersi, Xirsi); a final
    # e after a consonant is silent (Ousmane, Usman)
    t = re.sub(r"(?<=[^aeiou])e$", "", t) if len(t) > 3 else t
    t = t.translate(_VOWELS)
    return _DOUBLE.sub(r"\1", t) or t[:1]


def _metaphone(key: str) -> str:
    return jellyfish.metaphone(key) if key else ""


def _words(text: str | None) -> list[tuple[str, bool]]:
    """(folded token, written in upper case) for each word of a raw name."""
    if not text:
        return []
    out = []
    for w in re.split(r"[\s,;/]+", str(text).strip()):
        letters = [c for c in w if c.isalpha()]
        if not letters:
            continue
        f = fold(w).replace(" ", "")
        if f:
            out.append((f, len(letters) > 1 and all(c.isupper() for c in letters)))
    return out


def _parse_date(raw: str | None, fmt: str) -> tuple[int | None, int | None, int | None, str]:
    """(year, month, day, precision) of a raw birth date."""
    if not raw:
        return None, None, None, ""
    s = str(raw).strip()
    m = re.fullmatch(r"(\d{4})", s)
    if m:
        return int(s), None, None, "year"
    if fmt.startswith("%Y"):
        m = re.fullmatch(r"(\d{4})\D(\d{1,2})\D(\d{1,2})", s)
        if m:
            y, mo, d = (int(x) for x in m.groups())
        else:
            return None, None, None, ""
    else:
        m = re.fullmatch(r"(\d{1,2})\D(\d{1,2})\D(\d{4})", s)
        if not m:
            return None, None, None, ""
        d, mo, y = (int(x) for x in m.groups())
        if fmt.startswith("%m"):
            d, mo = mo, d
    if y < 1900 or y > 2035:
        return None, None, None, ""
    if mo == 0 or d == 0 or (mo == 1 and d == 1):
        return y, None, None, "year"
    if not (1 <= mo <= 12 and 1 <= d <= 31):
        return y, None, None, "year"
    return y, mo, d, "day"


def _sex(raw: str | None, codes_json: str) -> str | None:
    if raw is None:
        return None
    v = str(raw).strip().lower()
    codes = json.loads(codes_json)
    for k, vals in codes.items():
        if v in vals:
            return k
    if v in ("m", "h", "male", "1", "homme", "masculin"):
        return "M"
    if v in ("f", "female", "2", "femme", "feminin"):
        return "F"
    return None


def _phone(raw: str | None) -> str | None:
    if raw is None:
        return None
    d = re.sub(r"\D", "", str(raw))
    return d[-8:] if len(d) >= 8 else None


def _clean(text: str | None) -> str | None:
    f = fold(text) if text else ""
    return f or None


def _roles(raw: pd.DataFrame, horn: bool) -> list[tuple[list[tuple[str, bool]], bool]]:
    """Name words per record, in column order (given, family/father, grandfather / full),
    and whether upper case marks the parts: some column holds upper-case and other words
    together (a case difference between two columns is only how they were typed)."""
    cols = (["given_name", "father_name", "grandfather_name", "family_name"] if horn
            else ["given_name", "family_name", "father_name"])
    out = []
    for rec in raw[cols + ["full_name"]].itertuples(index=False):
        words: list[tuple[str, bool]] = []
        marked = False
        for v in rec[:-1]:
            w = _words(v)
            marked |= len({u for _, u in w}) == 2
            words += w
        if not words:
            words = _words(rec[-1])
            marked = len({u for _, u in words}) == 2
        out.append((words, marked))
    return out


def _name_frequencies(raw: pd.DataFrame, horn: bool) -> tuple[Counter, Counter]:
    """How often each folded token is written as a given name / a family (father) name,
    from sources that store the parts in separate columns."""
    second = "father_name" if horn else "family_name"
    g: Counter = Counter()
    f: Counter = Counter()
    for given, other in raw[["given_name", second]].itertuples(index=False):
        for t, _ in _words(given)[:1]:
            g[t] += 1
        for t, _ in _words(other)[:1]:
            f[t] += 1
    return g, f


def _split_names(words: list[tuple[str, bool]], order: str, from_full: bool, horn: bool,
                 score: Any, marked: bool | None = None
                 ) -> tuple[str | None, str | None, str | None, str]:
    """(given, family-or-father, grandfather, how) from one record's name words."""
    if not words:
        return None, None, None, "none"
    toks = [t for t, _ in words]
    upper = [u for _, u in words]
    how = "columns"
    if marked is None:
        marked = from_full
    if marked and len(toks) >= 2 and any(upper) and not all(upper):
        # The upper-case words are the family name (sahel) / the father's and
        # grandfather's names (horn); the others are the given name.
        given = [t for t, u in words if not u]
        rest = [t for t, u in words if u]
        how = "case"
    elif from_full and len(toks) >= 2 and not horn:
        # family_given or given_family: whichever the token frequencies prefer.
        fam_first = score(toks[-1]) - score(toks[0])  # > 0: last looks given, first family
        if fam_first > 0 or (fam_first == 0 and order == "family_given"):
            given, rest = toks[1:], toks[:1]
        else:
            given, rest = toks[:-1], toks[-1:]
        how = "frequency"
    else:
        given, rest = toks[:1], toks[1:]
        if not horn and len(toks) > 2 and not from_full:
            # separate columns: everything but the last column's word is given
            given, rest = toks[:-1], toks[-1:]
    if not horn and given and rest:
        # a given/family swap: both tokens point the other way
        if score(given[0]) < 0 < score(rest[-1]):
            given, rest = rest, given
            how += "+swap"
    if horn and len(given) + len(rest) >= 2:
        allt = given + rest
        # The given name is the token most often seen as a given name rather than a
        # father's name (for women this is decisive; for men both pools are one).
        best = max(range(len(allt)), key=lambda i: (score(allt[i]), -i))
        if best != 0 and score(allt[best]) > 0 > score(allt[0]):
            allt = [allt[best]] + [t for i, t in enumerate(allt) if i != best]
            how += "+swap"
        given, rest = allt[:1], allt[1:]
    g = given[0] if given else None
    fam = rest[0] if rest else None
    grand = rest[1] if horn and len(rest) > 1 else None
    if not horn and len(rest) > 1:
        fam = rest[-1]
    return g, fam, grand, how


def standardise(raw: pd.DataFrame, horn: bool) -> pd.DataFrame:
    """One row per record with the columns the model compares."""
    gcount, fcount = _name_frequencies(raw, horn)

    def score(t: str) -> float:  # > 0: a given name, < 0: a family / father's name
        return math.log((gcount[t] + 1) / (fcount[t] + 1))

    words = _roles(raw, horn)
    rows = []
    for i, rec in enumerate(raw.itertuples(index=False)):
        from_full = not any(getattr(rec, c) for c in ("given_name", "family_name",
                                                        "father_name", "grandfather_name"))
        g, fam, grand, how = _split_names(words[i][0], rec.name_order, from_full, horn, score,
                                          words[i][1])
        y, mo, d, prec = _parse_date(rec.birth_date, rec.date_format)
        if prec == "" and rec.age is not None and not math.isnan(rec.age) and rec.age_ref:
            y, prec = int(str(rec.age_ref)[:4]) - int(rec.age) - 1, "age"
        mother = _words(rec.mother_name)
        rows.append({
            "uid": f"{rec.source}:{rec.record_key}", "source": rec.source,
            "record_key": rec.record_key, "name_split": how,
            "given": g, "family": fam, "grand": grand,
            "dob": f"{y:04d}-{mo:02d}-{d:02d}" if prec == "day" else None,
            "dob_year": y, "dob_month": mo, "dob_day": d, "dob_prec": prec or None,
            "sex": _sex(rec.sex, rec.sex_codes),
            "phone": _phone(rec.phone),
            "region": _clean(rec.region), "commune": _clean(rec.commune),
            "village": _clean(rec.village),
            "national_id": re.sub(r"[^0-9A-Za-z]", "", rec.national_id).upper() or None
            if rec.national_id else None,
            "mother": " ".join(_spell(t, horn) for t, _ in mother) or None,
            "mother_given": _spell(mother[0][0], horn) if mother else None,
            "mother_mp": _metaphone(_spell(mother[0][0], horn)) if mother else None,
        })
    df = pd.DataFrame(rows)
    for part in ("given", "family", "grand"):
        df[f"{part}_n"] = df[part].map(lambda t: _spell(t, horn) if t else None).replace("", None)
        df[f"{part}_mp"] = df[f"{part}_n"].map(lambda t: _metaphone(t) if t else None)
    # a given/family pair in either order, for swap-proof blocking
    df["name_pair"] = [("|".join(sorted((a, b))) if a and b else None)
                       for a, b in zip(df["given_n"], df["family_n"], strict=True)]
    # region from the commune where other records say which region a commune is in
    known = df.dropna(subset=["commune", "region"]).groupby("commune")["region"].agg(
        lambda s: s.value_counts().index[0])
    df["region"] = df["region"].fillna(df["commune"].map(known))
    df["dob_year"] = df["dob_year"].astype("Int64")
    df["dob_month"] = df["dob_month"].astype("Int64")
    df["dob_day"] = df["dob_day"].astype("Int64")
    return df


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------

def _name_comparison(col: str, label: str, cross: str | None) -> dict[str, Any]:
    n, mp = f"{col}_n", f"{col}_mp"
    levels: list[dict[str, Any]] = [
        {"sql_condition": f'"{n}_l" IS NULL OR "{n}_r" IS NULL', "label_for_charts": "null",
         "is_null_level": True},
        {"sql_condition": f'"{n}_l" = "{n}_r"', "label_for_charts": "same spelling key",
         "tf_adjustment_column": n, "tf_adjustment_weight": 1.0},
        # metaphone alone merges Hassan / Hussein and Mohamed / Mahmoud: it must also be
        # close in spelling
        {"sql_condition": f'"{mp}_l" = "{mp}_r" AND '
                          f'jaro_winkler_similarity("{n}_l", "{n}_r") >= 0.8',
         "label_for_charts": "same metaphone"},
        {"sql_condition": f'jaro_winkler_similarity("{n}_l", "{n}_r") >= 0.9',
         "label_for_charts": "jaro-winkler >= 0.9"},
    ]
    if cross:
        levels.append({"sql_condition": f'"{n}_l" = "{cross}_n_r" OR "{n}_r" = "{cross}_n_l"',
                       "label_for_charts": f"{col} = the other's {cross}"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": "different"})
    return {"output_column_name": label, "comparison_levels": levels,
            "comparison_description": label}


_ONE_SIDE_YEAR = "(dob_prec_l = 'year' OR dob_prec_r = 'year')"
_ANY_AGE = "(dob_prec_l = 'age' OR dob_prec_r = 'age')"
_INEXACT = "(dob_prec_l <> 'day' OR dob_prec_r <> 'day')"


def _date_comparison() -> dict[str, Any]:
    both_day = "dob_prec_l = 'day' AND dob_prec_r = 'day'"
    return {"output_column_name": "birth_date", "comparison_description": "birth date",
            "comparison_levels": [
                {"sql_condition": "dob_year_l IS NULL OR dob_year_r IS NULL",
                 "label_for_charts": "null", "is_null_level": True},
                {"sql_condition": f"{both_day} AND dob_l = dob_r", "label_for_charts": "exact"},
                {"sql_condition": f"{both_day} AND (damerau_levenshtein(dob_l, dob_r) <= 1 OR "
                                  "(dob_year_l = dob_year_r AND dob_month_l = dob_day_r AND "
                                  "dob_day_l = dob_month_r))",
                 "label_for_charts": "one typo or day/month swap"},
                {"sql_condition": f"{_ONE_SIDE_YEAR} AND NOT {_ANY_AGE} AND "
                                  "dob_year_l = dob_year_r",
                 "label_for_charts": "same year, one side year-only"},
                {"sql_condition": f"{_ANY_AGE} AND abs(dob_year_l - dob_year_r) <= 1",
                 "label_for_charts": "age-derived, year within 1"},
                {"sql_condition": f"{_INEXACT} AND abs(dob_year_l - dob_year_r) <= 2",
                 "label_for_charts": "year within 2"},
                {"sql_condition": f"{_INEXACT} AND abs(dob_year_l - dob_year_r) <= 5",
                 "label_for_charts": "year within 5"},
                {"sql_condition": "ELSE", "label_for_charts": "different"},
            ]}


def _place_comparison() -> dict[str, Any]:
    return {"output_column_name": "place_phone", "comparison_description": "place and phone",
            "comparison_levels": [
                {"sql_condition": "(phone_l IS NULL OR phone_r IS NULL) AND "
                                  "(commune_l IS NULL OR commune_r IS NULL) AND "
                                  "(region_l IS NULL OR region_r IS NULL) AND "
                                  "(village_l IS NULL OR village_r IS NULL)",
                 "label_for_charts": "null", "is_null_level": True},
                {"sql_condition": "phone_l = phone_r AND commune_l = commune_r",
                 "label_for_charts": "phone and commune"},
                {"sql_condition": "phone_l = phone_r", "label_for_charts": "phone"},
                {"sql_condition": "village_l = village_r AND coalesce(commune_l = commune_r, "
                                  "region_l = region_r, true)",
                 "label_for_charts": "village"},
                {"sql_condition": "commune_l = commune_r", "label_for_charts": "commune"},
                {"sql_condition": "region_l = region_r", "label_for_charts": "region"},
                {"sql_condition": "ELSE", "label_for_charts": "different"},
            ]}


def _mother_comparison() -> dict[str, Any]:
    return {"output_column_name": "mother", "comparison_description": "mother / caregiver",
            "comparison_levels": [
                {"sql_condition": "mother_l IS NULL OR mother_r IS NULL",
                 "label_for_charts": "null", "is_null_level": True},
                {"sql_condition": "mother_l = mother_r", "label_for_charts": "same name"},
                {"sql_condition": "mother_given_l = mother_given_r OR mother_mp_l = mother_mp_r",
                 "label_for_charts": "same given name"},
                {"sql_condition": "jaro_winkler_similarity(mother_l, mother_r) >= 0.88",
                 "label_for_charts": "jaro-winkler >= 0.88"},
                {"sql_condition": "ELSE", "label_for_charts": "different"},
            ]}


def _exact(col: str, fuzzy: bool = False) -> dict[str, Any]:
    levels: list[dict[str, Any]] = [
        {"sql_condition": f"{col}_l IS NULL OR {col}_r IS NULL", "label_for_charts": "null",
         "is_null_level": True},
        {"sql_condition": f"{col}_l = {col}_r", "label_for_charts": "exact"}]
    if fuzzy:
        levels.append({"sql_condition": f"damerau_levenshtein({col}_l, {col}_r) <= 1",
                       "label_for_charts": "one edit or transposition"})
    levels.append({"sql_condition": "ELSE", "label_for_charts": "different"})
    return {"output_column_name": col, "comparison_description": col,
            "comparison_levels": levels}


CANDIDATE_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)

BLOCKING_RULES = [
    block_on("national_id"),
    block_on("name_pair", "dob_year"),          # given + family in either order + year
    block_on("given_n", "dob"),                  # a family-name typo, exact date
    block_on("family_n", "dob"),                 # a given-name variant, exact date
    block_on("given_mp", "family_mp", "commune"),  # sound-alike names, any date, same commune
    block_on("given_mp", "family_mp", "region"),   # ... moved within the region / no commune
    block_on("given_n", "dob_year", "commune"),  # family typo, year-only date
    block_on("phone", "given_mp"),               # household phone, same given name
    block_on("given_n", "mother_given", "dob_year"),  # caregiver's name carries the family
]


def settings(horn: bool) -> SettingsCreator:
    comparisons = [
        _name_comparison("given", "given_name", "family"),
        _name_comparison("family", "father_name" if horn else "family_name", "given"),
    ]
    if horn:
        comparisons.append(_name_comparison("grand", "grandfather_name", "family"))
    comparisons += [_date_comparison(), _exact("sex"), _place_comparison(),
                    _mother_comparison(), _exact("national_id", fuzzy=True)]
    return SettingsCreator(
        link_type="dedupe_only", unique_id_column_name="uid", comparisons=comparisons,
        blocking_rules_to_generate_predictions=BLOCKING_RULES,
        retain_intermediate_calculation_columns=False, retain_matching_columns=False)


def _id_m(con: duckdb.DuckDBPyConnection) -> dict[str, float]:
    """The national ID's m: among pairs that agree on both name keys, the full date and
    the commune and both carry an ID, the share of each ID level."""
    rows = con.execute("""
        SELECT CASE WHEN l.national_id = r.national_id THEN 'exact'
                    WHEN damerau_levenshtein(l.national_id, r.national_id) <= 1 THEN 'edit'
                    ELSE 'different' END AS lvl, count(*)
        FROM careful l JOIN careful r ON l.given_n = r.given_n AND l.family_n = r.family_n
          AND l.dob = r.dob AND l.commune = r.commune AND l.uid < r.uid
        WHERE l.national_id IS NOT NULL AND r.national_id IS NOT NULL GROUP BY ALL""").fetchall()
    counts = {k: int(n) for k, n in rows}
    total = sum(counts.values())
    # a floor of half a pair per level keeps every level's weight finite
    return {k: (counts.get(k, 0) + 0.5) / (total + 1.5) for k in ("exact", "edit", "different")} \
        | {"pairs": total}


def _near_certain_m(con: duckdb.DuckDBPyConnection, db_api: DuckDBAPI,
                    horn: bool) -> dict[str, dict[str, float]]:
    """m per level from pairs agreeing on both name keys and the full date."""
    con.execute("""CREATE OR REPLACE TABLE near_certain AS
        SELECT l.uid AS uid_l, r.uid AS uid_r
        FROM careful l JOIN careful r ON l.given_n = r.given_n AND l.family_n = r.family_n
          AND l.dob = r.dob AND l.uid < r.uid""")
    linker = Linker(db_api.register("careful", table_name="careful_splink_nc"), settings(horn))
    linker.training.estimate_m_from_pairwise_labels("near_certain")
    out: dict[str, dict[str, float]] = {}
    for comp in linker.misc.save_model_to_json()["comparisons"]:
        out[comp["output_column_name"]] = {
            lvl["label_for_charts"]: lvl["m_probability"]
            for lvl in comp["comparison_levels"]
            if not lvl.get("is_null_level") and lvl.get("m_probability") is not None}
    return out


def _fill_m(model: dict[str, Any], fill: dict[str, dict[str, float]], id_m: dict[str, float],
            n_id_pairs: int, u_floor: float) -> list[str]:
    """Complete the model in place: the ID's own m; untrained m from the near-certain set
    (not for names and date, which that set conditions on) or else half a pair among the
    ID pairs; untrained u at one random pair; each comparison's m renormalised."""
    floor = 0.5 / (n_id_pairs + 1)
    filled = []
    for comp in model["comparisons"]:
        name = comp["output_column_name"]
        levels = [lvl for lvl in comp["comparison_levels"] if not lvl.get("is_null_level")]
        for lvl in levels:
            label = lvl["label_for_charts"]
            if name == "national_id":
                key = {"exact": "exact", "one edit or transposition": "edit"}.get(label,
                                                                                "different")
                lvl["m_probability"] = id_m[key]
            elif lvl.get("m_probability") in (None, 0):
                if name in ("sex", "mother") and fill.get(name, {}).get(label):
                    lvl["m_probability"] = fill[name][label]
                    filled.append(f"{name}: {label} (m from near-certain pairs)")
                else:
                    lvl["m_probability"] = floor
                    filled.append(f"{name}: {label} (m floor {floor:.2g})")
            if lvl.get("u_probability") in (None, 0):
                lvl["u_probability"] = u_floor
                filled.append(f"{name}: {label} (u floor)")
        total = sum(lvl["m_probability"] for lvl in levels)
        for lvl in levels:
            lvl["m_probability"] /= total
    return filled


def _choose_threshold(con: duckdb.DuckDBPyConnection, predictions: str, truth_csv: Path,
                      n_sample: int, seed: int) -> dict[str, Any]:
    """A 300-pair clerical sample across the match-weight range, labelled from the truth
    (nothing else here reads it); the threshold maximising stratum-weighted F1 on it."""
    con.execute("CREATE OR REPLACE TEMP TABLE truth AS SELECT source || ':' || record_key "
                "AS uid, person_id FROM read_csv(?, all_varchar = true)", [str(truth_csv)])
    lo, hi, n = con.execute(f"SELECT min(match_weight), max(match_weight), count(*) "
                            f"FROM {predictions}").fetchall()[0]
    strata = 10
    width = (hi - lo) / strata or 1.0
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE strata AS
        SELECT uid_l, uid_r, match_probability, match_weight,
               least(floor((match_weight - {lo}) / {width}), {strata - 1})::INT AS stratum
        FROM {predictions}""")
    sizes = dict(con.execute("SELECT stratum, count(*) FROM strata GROUP BY ALL").fetchall())
    quota = {st: 0 for st in sizes}
    left = min(n_sample, int(n))
    while left > 0:  # equal shares, the short strata's remainder to the others
        open_ = [st for st in sizes if quota[st] < sizes[st]]
        share = max(1, left // len(open_))
        for st in open_:
            add = min(share, sizes[st] - quota[st], left)
            quota[st] += add
            left -= add
            if left == 0:
                break
    con.execute("CREATE OR REPLACE TEMP TABLE quota (stratum INT, q INT)")
    con.executemany("INSERT INTO quota VALUES (?, ?)", list(quota.items()))
    sample = con.execute(f"""
        WITH s AS (SELECT *, count(*) OVER (PARTITION BY stratum) AS n_stratum,
                          row_number() OVER (PARTITION BY stratum ORDER BY
                            hash(uid_l || uid_r || '{seed}')) AS k FROM strata)
        SELECT s.match_probability, s.stratum, s.n_stratum,
               coalesce(tl.person_id = tr.person_id, false) AS same
        FROM s JOIN quota USING (stratum)
        LEFT JOIN truth tl ON tl.uid = s.uid_l LEFT JOIN truth tr ON tr.uid = s.uid_r
        WHERE k <= q""").fetchall()
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE clerical AS
        WITH s AS (SELECT *, count(*) OVER (PARTITION BY stratum) AS n_stratum,
                          row_number() OVER (PARTITION BY stratum ORDER BY
                            hash(uid_l || uid_r || '{seed}')) AS k FROM strata)
        SELECT s.uid_l, s.uid_r, s.match_probability, s.n_stratum / q AS w,
               coalesce(tl.person_id = tr.person_id, false) AS same
        FROM s JOIN quota USING (stratum)
        LEFT JOIN truth tl ON tl.uid = s.uid_l LEFT JOIN truth tr ON tr.uid = s.uid_r
        WHERE k <= q""")
    got = Counter(st for _, st, _, _ in sample)
    weights = {st: n_st / got[st] for _, st, n_st, _ in sample}
    pts = sorted(((p, s, weights[st]) for p, st, _, s in sample), reverse=True)
    total_true = sum(w for _, s, w in pts if s)
    best = {"threshold": 0.5, "f1": -1.0}
    tp = fp = 0.0
    for i, (p, s, w) in enumerate(pts):
        tp += w if s else 0.0
        fp += 0.0 if s else w
        if i + 1 < len(pts) and pts[i + 1][0] == p:
            continue
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / total_true if total_true else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        if f1 > best["f1"]:
            best = {"threshold": float(p), "f1": f1, "precision": prec, "recall": rec}
    return {"sample_size": len(sample), "strata": strata, "pairs_sampled_from": int(n),
            "sample_true": sum(1 for _, s, _ in pts if s), **best}


def run(project_dir: Path, out: Path, *, u_max_pairs: float = 1e7, n_sample: int = 300,
        seed: int = 42, memory_limit: str = "4GB", threshold: float | None = None,
        log: Any = print) -> dict[str, Any]:
    """The whole set-up: read, standardise, train, predict, choose a threshold, cluster."""
    logging.getLogger("splink").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    raw = load_sources(project_dir)
    horn = raw["father_name"].notna().sum() > raw["family_name"].notna().sum() or any(
        raw["name_order"] == "given_father_grandfather")
    df = standardise(raw, horn)
    stages["standardise"] = round(time.perf_counter() - t0, 1)
    log(f"careful: {len(df):,} records standardised ({'horn' if horn else 'sahel'}) "
        f"in {stages['standardise']} s")
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_parquet(out.with_name("careful_records.parquet"), index=False)

    con = duckdb.connect()
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute(f"SET temp_directory = '{tempfile.gettempdir()}/careful_spill'")
    con.execute("SET enable_progress_bar = false")
    con.register("careful_df", df)
    con.execute("CREATE TABLE careful AS SELECT * FROM careful_df")
    con.unregister("careful_df")
    db_api = DuckDBAPI(con)
    linker = Linker(db_api.register("careful", table_name="careful_splink"), settings(horn))

    t = time.perf_counter()
    counts = linker.blocking_analysis.count_comparisons_from_blocking_rules(
        BLOCKING_RULES, record_sample_proportion=1.0)
    by_rule = {r.get_blocking_rule("duckdb").blocking_rule_sql: int(c["marginal_comparison_count"])
               for r, c in zip(BLOCKING_RULES, counts, strict=True)}
    stages["count"] = round(time.perf_counter() - t, 1)
    log(f"careful: {sum(by_rule.values()):,} comparisons from 9 blocking rules")

    t = time.perf_counter()
    linker.training.estimate_probability_two_random_records_match(
        [block_on("national_id"), block_on("given_n", "family_n", "dob")], recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=u_max_pairs, seed=seed)
    linker.training.estimate_m_from_label_column("national_id")
    n_id_pairs = con.execute("SELECT coalesce(sum(n * (n - 1) / 2), 0) FROM (SELECT count(*) "
                             "AS n FROM careful WHERE national_id IS NOT NULL "
                             "GROUP BY national_id)").fetchall()[0][0]
    id_m = _id_m(con)
    model = linker.misc.save_model_to_json()
    # Levels the ID pairs never show (e.g. same phone in another commune, a different
    # mother's name) get their m from a second near-certain set: pairs agreeing on both
    # name keys and the full date (only for comparisons that set does not condition on).
    fill = _near_certain_m(con, db_api, horn)
    filled = _fill_m(model, fill, id_m, int(n_id_pairs), u_floor=1.0 / u_max_pairs)
    linker = Linker(db_api.register("careful", table_name="careful_splink2"), model)
    stages["train"] = round(time.perf_counter() - t, 1)
    log(f"careful: filled {filled}")
    log(f"careful: trained in {stages['train']} s (ID m from {id_m['pairs']:,} pairs)")

    t = time.perf_counter()
    pred = linker.inference.predict(threshold_match_probability=0.001)
    n_pred = con.execute(f"SELECT count(*) FROM {pred.physical_name}").fetchall()[0][0]
    stages["predict"] = round(time.perf_counter() - t, 1)
    log(f"careful: {n_pred:,} pairs with p >= 0.001 in {stages['predict']} s")

    t = time.perf_counter()
    chosen = _choose_threshold(con, pred.physical_name, project_dir / "truth.csv",
                               n_sample, seed)
    # Connected components chain: a pair is a match when its records share a cluster at
    # the threshold, not only when its own p is above it. Each candidate threshold is
    # clustered and judged on the same labelled sample.
    curve = {}
    for cand in CANDIDATE_THRESHOLDS:
        cl = linker.clustering.cluster_pairwise_predictions_at_threshold(
            pred, threshold_match_probability=cand)
        tp, fp, fn = con.execute(f"""
            SELECT sum(CASE WHEN same AND together THEN w ELSE 0 END),
                   sum(CASE WHEN NOT same AND together THEN w ELSE 0 END),
                   sum(CASE WHEN same AND NOT together THEN w ELSE 0 END)
            FROM (SELECT c.w, c.same, kl.cluster_id = kr.cluster_id AS together
                  FROM clerical c JOIN {cl.physical_name} kl ON kl.uid = c.uid_l
                  JOIN {cl.physical_name} kr ON kr.uid = c.uid_r)""").fetchall()[0]
        cl.drop_table_from_database_and_remove_from_cache()
        f1 = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
        curve[cand] = round(f1, 4)
    best_t = max(curve, key=lambda k: (curve[k], k))
    chosen["pair_threshold"] = chosen.pop("threshold")
    chosen["cluster_f1_by_threshold"] = curve
    chosen["threshold"] = best_t
    chosen["f1"] = curve[best_t]
    thr = threshold if threshold is not None else chosen["threshold"]
    stages["clerical_sample"] = round(time.perf_counter() - t, 1)
    log(f"careful: threshold p = {thr:.4f} (sample F1 {chosen['f1']:.3f}, "
        f"{chosen['sample_true']} of {chosen['sample_size']} sampled pairs true)")

    t = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        pred, threshold_match_probability=thr)
    con.execute(f"""COPY (SELECT c.source, c.record_key, 'C' || CAST(k.cluster_id AS VARCHAR)
                          AS person_id FROM {clusters.physical_name} k
                          JOIN careful c USING (uid) ORDER BY c.uid)
                    TO '{out}' (HEADER, DELIMITER ',')""")
    n_links = con.execute(f"SELECT count(*) FROM {pred.physical_name} "
                          f"WHERE match_probability >= {thr}").fetchall()[0][0]
    con.execute(f"""COPY (SELECT uid_l, uid_r, match_probability FROM {pred.physical_name})
                    TO '{out.with_name('careful_pairs.parquet')}' (FORMAT parquet)""")
    stages["cluster"] = round(time.perf_counter() - t, 1)
    final = linker.misc.save_model_to_json()
    mu = {}
    for comp in final["comparisons"]:
        for lvl in comp["comparison_levels"]:
            if lvl.get("is_null_level"):
                continue
            m, u = lvl.get("m_probability"), lvl.get("u_probability")
            mu[f"{comp['output_column_name']}: {lvl['label_for_charts']}"] = {
                "m": m, "u": u,
                "bits": round(math.log2(m / u), 2) if m and u else None}
    stats = {"status": "ok", "scheme": "horn" if horn else "sahel", "records": len(df),
             "comparisons": sum(by_rule.values()), "comparisons_by_rule": by_rule,
             "u_max_pairs": u_max_pairs, "national_id_m": id_m, "id_pairs": int(n_id_pairs),
             "filled": filled,
             "prior": final["probability_two_random_records_match"],
             "threshold": thr, "clerical_sample": chosen, "links_at_threshold": int(n_links),
             "name_split": df["name_split"].value_counts().to_dict(),
             "date_precision": df["dob_prec"].fillna("none").value_counts().to_dict(),
             "m_u": mu, "stages_seconds": stages,
             "seconds": round(time.perf_counter() - t0, 1)}
    con.close()
    return stats


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.careful_splink",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, required=True, help="a generated register directory")
    ap.add_argument("--out", type=Path, required=True, help="mapping CSV to write")
    ap.add_argument("--stats", type=Path, default=None)
    ap.add_argument("--u-max-pairs", type=float, default=1e7)
    ap.add_argument("--sample", type=int, default=300, help="clerical sample size")
    ap.add_argument("--threshold", type=float, default=None,
                    help="use this threshold instead of the clerical sample's")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--memory-limit", default="4GB")
    args = ap.parse_args(argv)
    stats = run(args.dir.resolve(), args.out.resolve(), u_max_pairs=args.u_max_pairs,
                n_sample=args.sample, seed=args.seed, memory_limit=args.memory_limit,
                threshold=args.threshold,
                log=lambda m: print(m, file=sys.stderr, flush=True))
    text = json.dumps(stats, indent=2, default=str)
    if args.stats:
        args.stats.write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
