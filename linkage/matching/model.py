"""The trained model: Splink settings with our version, training metadata and definition hash.

The comparisons themselves are defined once, in :mod:`linkage.matching.definition`, and
compiled to Splink settings by :mod:`linkage.matching.splink_settings`; this module holds
what training produces and the checks on it.

Training (see :mod:`linkage.engines.duckdb_sql`) never lets expectation maximisation learn "same
household": :func:`check_parameters` fails loudly when a trained model is implausible,
for example m below u for exact given-name agreement.

The model file is our own JSON envelope around Splink's settings, with a version,
training metadata and the hash of the matching definition it was trained on, so the
register can record which model produced each run, and a model trained on another
definition is refused.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from linkage.errors import ModelError
from linkage.matching.definition import (
    BLOCKING_KEYS,
    HOUSEHOLD_EVIDENCE_CAP_BITS,
    MUST_AGREE_LEVELS,
    definition_sha256,
)
from linkage.matching.extra import Definition, ExtraField
from linkage.matching.splink_settings import build_settings, settings_dict, with_parameters

__all__ = ["BLOCKING_KEYS", "HOUSEHOLD_EVIDENCE_CAP_BITS", "MODEL_FORMAT", "SHIPPED_MODELS_DIR",
           "Model", "ModelError", "build_settings", "check_parameters", "new_version"]

MODEL_FORMAT = "linkage-model/1"

#: Trained models shipped with the source tree (``models/`` at the repository root), one
#: per naming profile, for registers too small or too poor in national IDs to train on.
SHIPPED_MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True)
class Model:
    """A trained model: Splink settings plus our version, training metadata and the hash
    of the matching definition it was trained on (the current one when built here)."""

    version: str
    settings: dict[str, Any]
    metadata: dict[str, Any]
    definition: str = field(default_factory=definition_sha256)
    #: The project's extra fields it was trained with (their comparisons follow the
    #: built-in ones; :attr:`definition` hashes both).
    extra: tuple[ExtraField, ...] = ()

    @property
    def matching(self) -> Definition:
        """The matching definition this model scores with: built-in plus its extra fields."""
        return Definition(self.extra)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()

    def to_json(self) -> str:
        data = {"format": MODEL_FORMAT, "version": self.version,
                "definition_sha256": self.definition, "metadata": self.metadata,
                "splink_settings": self.settings}
        if self.extra:  # absent without extra fields: such files read as they always did
            data["extra_fields"] = [f.to_json() for f in self.extra]
        return json.dumps(data, indent=2, sort_keys=True)

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)  # atomic: a half-written model is never read
        return path

    @classmethod
    def load(cls, path: Path | str) -> Model:
        """Read a model file; refuse one trained on another matching definition."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError as exc:
            raise ModelError(f"{path}: model file not found; run `linkage train`") from exc
        except UnicodeDecodeError as exc:
            raise ModelError(f"{path}: not a model file (invalid JSON)") from exc
        return cls.from_json(text, str(path))

    @classmethod
    def from_json(cls, text: str, where: str = "model") -> Model:
        """A model from its file's text (``where`` names it in errors)."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where}: not a model file (invalid JSON)") from exc
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(f"{where}: format: expected '{MODEL_FORMAT}'")
        try:
            extra = tuple(ExtraField.from_json(f) for f in data.get("extra_fields") or ())
        except (TypeError, AttributeError) as exc:
            raise ModelError(f"{where}: extra_fields: not a list of extra fields") from exc
        model = cls(version=data["version"], settings=data["splink_settings"],
                    metadata=data.get("metadata", {}),
                    definition=data.get("definition_sha256") or "none recorded", extra=extra)
        model.check_definition(where)
        return model

    def check_definition(self, where: str = "") -> None:
        """Fail unless the model was trained on today's matching definition.

        Checks the recorded hash and, so that a hand-edited file cannot pass either, that
        every comparison's SQL is the definition's.

        Raises:
            ModelError: naming the model, both hashes or the first comparison that differs.
        """
        where = f"{where}: " if where else ""
        ours = self.matching
        if self.definition != ours.sha256:
            raise ModelError(
                f"{where}model {self.version} was trained on matching definition "
                f"{self.definition[:12]}, this version of linkage has {ours.sha256[:12]} "
                "(linkage/matching/definition.py changed): retrain it with `linkage train` "
                "or `linkage run --retrain`")
        expected = settings_dict(definition=ours)["comparisons"]
        actual = self.settings.get("comparisons", [])
        if [c["output_column_name"] for c in actual] != [
                c["output_column_name"] for c in expected]:
            raise ModelError(f"{where}model {self.version}: its comparisons are not those of "
                             "linkage/matching/definition.py; retrain it")
        for exp, act in zip(expected, actual, strict=True):
            if ([lvl["sql_condition"] for lvl in exp["comparison_levels"]]
                    != [lvl.get("sql_condition") for lvl in act["comparison_levels"]]):
                raise ModelError(f"{where}model {self.version}: comparison "
                                 f"{exp['output_column_name']!r} has levels that differ from "
                                 "linkage/matching/definition.py; retrain it")

    def check_project(self, definition: Definition, where: str = "") -> None:
        """Fail unless the model was trained with the project's extra fields.

        Raises:
            ModelError: naming both lists of extra fields.
        """
        if self.definition != definition.sha256:
            where = f"{where}: " if where else ""
            raise ModelError(
                f"{where}model {self.version} was trained with extra fields "
                f"{self.matching.describe()}, the project declares {definition.describe()} "
                "(extra_fields: in the project file): retrain it with `linkage train` or "
                "`linkage run --retrain`")

    def settings_for(self, dialect: str) -> dict[str, Any]:
        """The trained settings with their SQL compiled for a Splink backend."""
        return (self.settings if dialect == "duckdb"
                else with_parameters(self.settings, dialect, self.matching))

    @property
    def prior(self) -> float | None:
        """The probability that two random records match (Splink's λ), if set."""
        lam = self.settings.get("probability_two_random_records_match")
        return float(lam) if lam else None

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
                     self.metadata, self.definition, self.extra)

    def level_parameters(self) -> dict[str, list[dict[str, Any]]]:
        """m and u of each comparison level, by comparison name (null levels omitted)."""
        out: dict[str, list[dict[str, Any]]] = {}
        matching = self.matching
        for comp in self.settings["comparisons"]:
            levels = []
            try:  # the definition's words, in level order (the file's may be SQL)
                words = [lvl.label
                         for lvl in matching.comparison(comp["output_column_name"]).levels]
            except KeyError:
                words = []
            for i, lvl in enumerate(comp["comparison_levels"]):
                if lvl.get("is_null_level"):
                    continue
                label = words[i] if i < len(words) else lvl.get("label_for_charts",
                                                                lvl["sql_condition"])
                levels.append({"label": label,
                               "m": lvl.get("m_probability"), "u": lvl.get("u_probability")})
            out[comp["output_column_name"]] = levels
        return out


def neutral_comparisons(model: Model) -> list[str]:
    """Comparisons the model gives no weight at all (every level m = u): trained on data
    without that field (a Horn model has no family names), or never trained."""
    out = []
    for name, levels in model.level_parameters().items():
        if levels and all(lv["m"] is not None and lv["u"] is not None
                          and abs(lv["m"] - lv["u"]) < 1e-12 for lv in levels):
            out.append(name)
    return out


def unused_fields(model: Model, filled: dict[str, float], *, min_share: float = 0.05
                  ) -> list[str]:
    """Warnings for fields the register has but the model gives no weight.

    ``filled`` is the share of active records with a value, by standardised column. A
    user who maps a last-name column to ``family_name`` under a shipped Horn model, whose
    ``family_name`` is neutral, would otherwise never learn that the column is ignored.
    """
    out = []
    for name in neutral_comparisons(model):
        try:
            first = model.matching.comparison(name).levels[0].condition
        except KeyError:
            continue
        cols = sorted(first.columns()) if first is not None else []
        share = max((filled.get(c, 0.0) for c in cols), default=0.0)
        if share >= min_share:
            out.append(f"{share:.0%} of the records have a {name.replace('_', ' ')}, but model "
                       f"{model.version} gives {name} no weight (it was trained on data "
                       "without it): those values count for nothing; train a model on this "
                       "register (`linkage train`, or remove `model:` from the project file)")
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
    for comp, idx in MUST_AGREE_LEVELS.items():
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
