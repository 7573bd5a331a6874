"""Builders shared by tests: a generated register, ingested and ready for Splink."""

from __future__ import annotations

from pathlib import Path

import duckdb

from linkage.batch.pipeline import active_records, ingest_all
from linkage.config import load_project
from linkage.engines import duckdb_sql as engine
from linkage.register.database import Register
from linkage.synthetic.generate import generate


def prepared_scratch(out: Path, *, persons: int, profile: str, seed: int
                     ) -> duckdb.DuckDBPyConnection:
    """Generate a register in ``out``, ingest it, and load it with blocking keys into a
    scratch DuckDB (table ``linkage_input``), as the batch does before predicting."""
    generate(persons=persons, profile=profile, seed=seed, out=out)
    project = load_project(out / "project.yaml")
    reg = Register.open(project.register)
    with reg.transaction() as cur:
        ingest_all(cur, project, progress=lambda _: None)
        records = active_records(cur)
    reg.close()
    con = engine.new_scratch("1GB")
    engine.prepare_input(con, records, project.max_block_size)
    return con
