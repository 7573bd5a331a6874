"""The linkage model: Splink settings built from our canonical columns, training, I/O.

The comparisons are written with Splink's comparison-level library and portable SQL
(``||``, ``LIKE``, ``abs``, ``CASE``) so the same settings run on Splink's DuckDB and Spark
backends.

Training (see :func:`train`) never lets expectation maximisation learn "same household":

* u from random sampling;
* m from pairs of records that share a national ID (weak labels: near-certain matches);
* the national-ID comparison itself gets fixed m values (it cannot be trained on itself);
* :func:`check_parameters` fails loudly when a trained model is implausible, for example
  m below u for exact given-name agreement.

The model file is our own JSON envelope around Splink's settings, with a version and
training metadata, so the register can record which model produced each run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import splink.comparison_level_library as cll
import splink.comparison_library as cl
from splink import SettingsCreator, block_on

MODEL_FORMAT = "linkage-model/1"

#: Trained models shipped with the source tree (``models/`` at the repository root), one
#: per naming profile, for registers too small or too poor in national IDs to train on.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent.parent / "models"

# Blocking keys: each is a list of standardised columns, concatenated into one key
# column ``bk_<name>`` whose over-large blocks are nulled (see linkage.blocking).
BLOCKING_KEYS: dict[str, tuple[str, ...]] = {
    "nid": ("national_id",),
    # Tiers: when a coarse key's block is capped ("mamad|traur|1980"), the finer key
    # below it still brings that record's true pairs within reach.
    "given_family_year": ("given_key", "family_key", "birth_year"),
    "given_family_year_commune": ("given_key", "family_key", "birth_year", "commune"),
    "given_family_commune": ("given_key", "family_key", "commune"),
    "given_family_village": ("given_key", "family_key", "village"),
    # Given-name spellings the key does not unite (Fatim / Fatoumata, typos).
    "phonetic_family_commune": ("given_phonetic", "family_key", "commune"),
    "family_year_village": ("family_key", "birth_year", "village"),
    "given_father": ("given_key", "father_key"),
    "given_father_year": ("given_key", "father_key", "birth_year"),
    "given_father_grandfather": ("given_key", "father_key", "grandfather_key"),
    "given_father_village": ("given_key", "father_key", "village"),
    "phonetic_father_commune": ("given_phonetic", "father_key", "commune"),
    "father_year_village": ("father_key", "birth_year", "village"),
    "names_sorted_year": ("name_keys", "birth_year"),
    "names_sorted_commune": ("name_keys", "commune"),
    "given_year_village": ("given_key", "birth_year", "village"),
    "phone_given": ("phone", "given_phonetic"),
}

# Evidence that a household shares (phone, village, mother's name) says little about
# *which* member a record is: u from random pairs makes a shared phone worth ~13 bits,
# enough to merge a father with the son named after him. That evidence is one
# comparison (see _household_comparison) whose agreement weight is capped, in bits.
HOUSEHOLD_EVIDENCE_CAP_BITS: dict[str, float] = {"household": 6.0}

# Comparisons whose levels must show m > u on agreement, or the model is rejected.
_MUST_AGREE_LEVELS = {"given_name": 1, "birth_date": 1}


class ModelError(RuntimeError):
    """A model file is unreadable, or training produced implausible parameters."""


def _among_other_tokens(key: str) -> str:
    """Portable SQL: this record's key is one of the other record's name tokens.

    Catches swapped name order ("TRAORE Moussa" read as given "traore") and a name moved
    between columns, in either direction.
    """
    return (f"(' ' || name_keys_r || ' ' LIKE '% ' || {key}_l || ' %' "
            f"OR ' ' || name_keys_l || ' ' LIKE '% ' || {key}_r || ' %')")


def _name_comparison(name: str, std: str, key: str, tf: bool) -> cl.CustomComparison:
    exact = cll.ExactMatchLevel(std)
    trans = cll.ExactMatchLevel(key)
    if tf:
        exact = exact.configure(tf_adjustment_column=std)
        trans = trans.configure(tf_adjustment_column=key)
    return cl.CustomComparison(
        output_column_name=name,
        comparison_levels=[
            cll.NullLevel(key),
            exact.configure(label_for_charts="exact"),
            trans.configure(label_for_charts="same transliteration key"),
            cll.JaroWinklerLevel(std, 0.9).configure(label_for_charts="jaro-winkler >= 0.9"),
            cll.CustomLevel(_among_other_tokens(key),
                            label_for_charts="found among other name tokens"),
            cll.ElseLevel(),
        ],
    )


def _given_comparison() -> cl.CustomComparison:
    # The first given name is the strongest evidence that separates siblings. A given
    # name found among the other record's name tokens covers swapped name order.
    swapped = _among_other_tokens("given_key")
    return cl.CustomComparison(
        output_column_name="given_name",
        comparison_levels=[
            cll.NullLevel("given_key"),
            cll.ExactMatchLevel("given_std").configure(
                tf_adjustment_column="given_std", label_for_charts="exact"),
            cll.ExactMatchLevel("given_key").configure(
                tf_adjustment_column="given_key", label_for_charts="same transliteration key"),
            cll.JaroWinklerLevel("given_first", 0.9).configure(
                label_for_charts="jaro-winkler >= 0.9"),
            cll.CustomLevel(swapped, label_for_charts="found among other name tokens"),
            cll.ElseLevel(),
        ],
    )


def _birth_date_comparison() -> cl.CustomComparison:
    both_day = "birth_precision_l = 'day' AND birth_precision_r = 'day'"
    imprecise = "(birth_precision_l <> 'day' OR birth_precision_r <> 'day')"
    diff = "abs(birth_year_l - birth_year_r)"
    return cl.CustomComparison(
        output_column_name="birth_date",
        comparison_levels=[
            cll.CustomLevel("birth_year_l IS NULL OR birth_year_r IS NULL").configure(
                is_null_level=True),
            cll.CustomLevel(f"{both_day} AND birth_date_l = birth_date_r",
                            label_for_charts="exact date"),
            cll.CustomLevel(
                f"{both_day} AND birth_year_l = birth_year_r AND birth_month_l = birth_day_r "
                "AND birth_day_l = birth_month_r", label_for_charts="day and month swapped"),
            cll.CustomLevel(f"{imprecise} AND birth_year_l = birth_year_r",
                            label_for_charts="same year, one date imprecise"),
            cll.CustomLevel(f"{imprecise} AND {diff} = 1",
                            label_for_charts="year off by one, one date imprecise"),
            cll.CustomLevel(f"{imprecise} AND {diff} = 2",
                            label_for_charts="year off by two, one date imprecise"),
            cll.CustomLevel(f"{both_day} AND birth_year_l = birth_year_r",
                            label_for_charts="same year, different full dates"),
            cll.CustomLevel(f"{diff} <= 5", label_for_charts="years 1 to 5 apart"),
            cll.ElseLevel().configure(label_for_charts="more than 5 years apart"),
        ],
    )


def _exact_comparison(name: str, col: str) -> cl.CustomComparison:
    return cl.CustomComparison(
        output_column_name=name,
        comparison_levels=[cll.NullLevel(col), cll.ExactMatchLevel(col), cll.ElseLevel()],
    )


def _national_id_comparison() -> cl.CustomComparison:
    # Fixed m: trained from national-ID pairs, this comparison would learn m=1 from itself.
    return cl.CustomComparison(
        output_column_name="national_id",
        comparison_levels=[
            cll.NullLevel("national_id"),
            cll.ExactMatchLevel("national_id").configure(m_probability=0.95,
                                                         fix_m_probability=True),
            # Random pairs almost never differ by one typo: u fixed, as sampling rarely sees it.
            cll.DamerauLevenshteinLevel("national_id", 1).configure(
                m_probability=0.04, fix_m_probability=True, u_probability=1e-5,
                fix_u_probability=True,
                label_for_charts="one typo or transposition"),
            cll.ElseLevel().configure(m_probability=0.01, fix_m_probability=True),
        ],
    )


def _household_comparison() -> cl.CustomComparison:
    """Phone, mother's name and place as ONE comparison.

    Household members share all of them, so counted separately they would add up (phone
    +13 bits, village +7, mother +8 ...) and overwhelm a given-name disagreement: twins
    would merge. As one comparison, the evidence a shared household gives is counted once.
    """
    same_phone = "phone_l = phone_r"
    same_mother = "mother_key_l = mother_key_r"
    return cl.CustomComparison(
        output_column_name="household",
        comparison_levels=[
            cll.CustomLevel("(phone_l IS NULL OR phone_r IS NULL) AND "
                            "(village_l IS NULL OR village_r IS NULL) AND "
                            "(commune_l IS NULL OR commune_r IS NULL)").configure(
                is_null_level=True),
            cll.CustomLevel(f"({same_phone} OR {same_mother}) AND village_l = village_r",
                            label_for_charts="same phone or mother, same village"),
            cll.CustomLevel(f"{same_phone} OR {same_mother}",
                            label_for_charts="same phone or mother"),
            cll.CustomLevel("village_l = village_r", label_for_charts="same village"),
            cll.CustomLevel("commune_l = commune_r", label_for_charts="same commune"),
            cll.CustomLevel("region_l = region_r", label_for_charts="same region"),
            cll.ElseLevel(),
        ],
    )


def build_settings() -> SettingsCreator:
    """Splink settings over the standardised columns (engine-independent).

    Example:
        >>> s = build_settings()
        >>> s.link_type
        'dedupe_only'
    """
    return SettingsCreator(
        link_type="dedupe_only",
        unique_id_column_name="uid",
        probability_two_random_records_match=1e-6,
        comparisons=[
            _given_comparison(),
            _name_comparison("family_name", "family_std", "family_key", tf=True),
            _name_comparison("father_name", "father_std", "father_key", tf=True),
            _name_comparison("grandfather_name", "grandfather_std", "grandfather_key", tf=True),
            _birth_date_comparison(),
            _exact_comparison("sex", "sex"),
            _national_id_comparison(),
            _household_comparison(),
        ],
        blocking_rules_to_generate_predictions=[block_on(f"bk_{k}") for k in BLOCKING_KEYS],
        retain_intermediate_calculation_columns=False,
        additional_columns_to_retain=["source"],
    )


@dataclass(frozen=True)
class Model:
    """A trained model: Splink settings plus our version and training metadata."""

    version: str
    settings: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> str:
        return json.dumps({"format": MODEL_FORMAT, "version": self.version,
                           "metadata": self.metadata, "splink_settings": self.settings},
                          indent=2, sort_keys=True)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)  # atomic: a half-written model is never read
        return path

    @classmethod
    def load(cls, path: Path | str) -> Model:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: model file not found; run `linkage train`") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path}: not a model file (invalid JSON)") from exc
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"{path}: format: expected '{MODEL_FORMAT}'")
        return cls(version=data["version"], settings=data["splink_settings"],
                   metadata=data.get("metadata", {}))

    def for_register(self, n_records: int) -> Model:
        """This model with its prior rescaled to a register of ``n_records`` records.

        The prior (probability that two random records match) is duplicates per record
        divided by the number of pairs, so it falls as 1/n: a model trained on 100,000
        records used unchanged on 1,000,000 would overrate every pair tenfold and chain
        common names into giant clusters. The trained register size is in the metadata.

        Example:
            >>> m = Model("v", {"probability_two_random_records_match": 1e-5},
            ...           {"records": 100_000})
            >>> round(m.for_register(1_000_001).settings["probability_two_random_records_match"], 9)
            1e-06
        """
        trained = self.metadata.get("records")
        prior = self.settings.get("probability_two_random_records_match")
        if not trained or not prior or n_records <= 1:
            return self
        scaled = min(0.5, prior * (trained - 1) / (n_records - 1))
        return Model(self.version, dict(self.settings,
                                        probability_two_random_records_match=scaled),
                     self.metadata)

    def level_parameters(self) -> dict[str, list[dict[str, Any]]]:
        """m and u of each comparison level, by comparison name (null levels omitted)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for comp in self.settings["comparisons"]:
            levels = []
            for lvl in comp["comparison_levels"]:
                if lvl.get("is_null_level"):
                    continue
                levels.append({"label": lvl.get("label_for_charts", lvl["sql_condition"]),
                               "m": lvl.get("m_probability"), "u": lvl.get("u_probability")})
            out[comp["output_column_name"]] = levels
        return out


def check_parameters(model: Model) -> list[str]:
    """Sanity checks on trained m/u values.

    Returns:
        A list of warnings for comparisons whose parameters are merely weak.

    Raises:
        ModelError: when agreement on a given name or birth date is not evidence for a
            match (m <= u at its first agreement level): the signature of EM having
            learned households instead of persons.
    """
    warnings = []
    params = model.level_parameters()
    for comp, idx in _MUST_AGREE_LEVELS.items():
        levels = params.get(comp)
        if not levels:
            raise ModelError(f"model {model.version}: comparison '{comp}' is missing")
        lvl = levels[idx - 1]
        m, u = lvl["m"], lvl["u"]
        if m is None or u is None:
            raise ModelError(f"model {model.version}: {comp} '{lvl['label']}' is untrained")
        if m <= u:
            raise ModelError(
                f"model {model.version}: implausible parameters: {comp} '{lvl['label']}' has "
                f"m={m:.4g} <= u={u:.4g}; agreement would count against a match")
    for comp, levels in params.items():
        for lvl in levels[:1]:
            m, u = lvl["m"], lvl["u"]
            if m is not None and u is not None and m > 0 and u > 0 and math.log2(m / u) < 0:
                warnings.append(f"{comp} '{lvl['label']}': agreement weight is negative")
    return warnings


def new_version(prefix: str = "model") -> str:
    """A sortable model version such as ``model-20261123T154000Z``."""
    return f"{prefix}-{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%SZ')}"
