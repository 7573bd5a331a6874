"""Training without labels that does not go wrong, and the checks that catch it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from helpers import prepared_scratch

from linkage.engines import duckdb_sql as engine
from linkage.matching.model import SHIPPED_MODELS_DIR, Model, ModelError, check_parameters


def _level(model: Model, comparison: str, label: str) -> dict:
    return next(lvl for lvl in model.level_parameters()[comparison] if lvl["label"] == label)


@pytest.mark.parametrize("profile", ["sahel", "horn"])
def test_shipped_models_are_plausible(profile: str) -> None:
    model = Model.load(SHIPPED_MODELS_DIR / f"{profile}.json")
    check_parameters(model)
    exact = _level(model, "given_name", "exact")
    other = _level(model, "given_name", "different")
    assert exact["m"] > 10 * exact["u"]  # agreeing given names are strong evidence
    assert other["m"] < 0.1 * other["u"]  # disagreeing given names weigh heavily against
    far = _level(model, "birth_date", "more than 5 years apart")
    assert far["m"] < 0.01 * far["u"]
    assert model.metadata["records"] > 100_000


def test_training_on_a_generated_register_learns_persons_not_households(
        tmp_path: Path) -> None:
    con = prepared_scratch(tmp_path, persons=3000, profile="sahel", seed=5)
    model = engine.train(con, max_pairs=2e5)
    con.close()
    check_parameters(model)  # raises on m <= u for given-name or date agreement
    assert _level(model, "given_name", "exact")["m"] > 0.5
    # The household comparison's agreement weight is capped (a shared phone is weak).
    hh = _level(model, "household", "same phone or mother, same village")
    assert hh["m"] / hh["u"] <= 2**6 + 1e-9


def test_implausible_parameters_fail_loudly() -> None:
    model = Model.load(SHIPPED_MODELS_DIR / "sahel.json")
    settings = copy.deepcopy(model.settings)
    given = next(c for c in settings["comparisons"] if c["output_column_name"] == "given_name")
    exact = next(lvl for lvl in given["comparison_levels"] if not lvl.get("is_null_level"))
    exact["m_probability"], exact["u_probability"] = 0.03, 0.05  # what household EM learns
    with pytest.raises(ModelError, match=r"implausible parameters: given_name 'exact'"):
        check_parameters(Model("bad", settings, {}))


def test_prior_scales_with_register_size() -> None:
    model = Model.load(SHIPPED_MODELS_DIR / "sahel.json")
    prior = model.settings["probability_two_random_records_match"]
    n = model.metadata["records"]
    scaled = model.for_register(10 * n).settings["probability_two_random_records_match"]
    assert scaled == pytest.approx(prior / 10, rel=1e-3)


def test_a_field_the_model_ignores_but_the_register_has_is_warned_about() -> None:
    """A Djibouti user mapping a last-name column to family_name under the shipped horn
    model, whose family_name is neutral, learns that the column counts for nothing."""
    from linkage.matching.model import neutral_comparisons, unused_fields

    horn = Model.load(SHIPPED_MODELS_DIR / "horn.json")
    assert "family_name" in neutral_comparisons(horn)
    assert "given_name" not in neutral_comparisons(horn)
    (warning,) = unused_fields(horn, {"family_key": 0.4, "given_key": 1.0})
    assert warning.startswith("40% of the records have a family name")
    assert "linkage train" in warning
    assert unused_fields(horn, {"family_key": 0.01}) == []  # a stray value: no warning
