"""Export the published register: record → person ID mapping, or persons with records."""

from __future__ import annotations

from pathlib import Path

from linkage.register.database import Register

_QUERIES = {
    "records": """
        SELECT r.source, r.record_key, p.person_id
        FROM person_records p JOIN records r USING (uid)
        ORDER BY r.source, r.record_key""",
    "persons": """
        SELECT p.person_id, count(*) AS records,
               string_agg(DISTINCT r.source, ';' ORDER BY r.source) AS sources,
               string_agg(r.uid, ';' ORDER BY r.uid) AS record_uids
        FROM person_records p JOIN records r USING (uid)
        GROUP BY p.person_id ORDER BY p.person_id""",
}


def export(reg: Register, out: Path, *, what: str = "records", fmt: str = "csv") -> int:
    """Write the published mapping to ``out``; returns the number of rows written.

    Example:
        >>> export(Register.open("data/register.duckdb"), Path("map.csv"))  # doctest: +SKIP
        120345
    """
    if what not in _QUERIES:
        raise ValueError(f"what: expected one of {', '.join(_QUERIES)}")
    if fmt not in ("csv", "parquet"):
        raise ValueError("fmt: expected csv or parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    cur = reg.cursor()
    try:
        table = cur.sql(_QUERIES[what]).to_arrow_table()
    finally:
        cur.close()
    tmp = out.with_name(out.name + ".tmp")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, tmp)
    else:
        import pyarrow.csv as pacsv

        pacsv.write_csv(table, tmp)
    tmp.replace(out)  # never leave a half-written export under the real name
    return table.num_rows
