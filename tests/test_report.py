"""`linkage report`: one self-contained HTML file whose figures are the register's."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import duckdb

from linkage.batch.pipeline import format_summary
from tests.review_fixtures import *  # noqa: F403
from tests.review_fixtures import Generated


def _linkage(g: Generated, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkage", *args, "-p",
                           str(g.root / "project.yaml")], capture_output=True, text=True,
                          timeout=300)


def _specs(page: str) -> dict:
    m = re.search(r"var specs=(\{.*?\});Object\.keys", page, re.S)
    assert m, "the page embeds its chart specifications"
    return json.loads(m.group(1))


def test_report_is_one_self_contained_file_with_the_registers_figures(
        rv_project: Generated) -> None:
    out = rv_project.root / "report.html"
    res = _linkage(rv_project, "report", "-o", str(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text(encoding="utf-8")
    # No resource from anywhere else: the three libraries are inlined (their code holds
    # markup in strings, so the page is checked without them).
    own = re.sub(r'<script data-lib="[^"]+">.*?</script>', "", page, flags=re.S)
    assert not re.search(r"<(script|img|iframe)[^>]*\ssrc=", own)
    assert not re.search(r"<link[^>]*\shref=", own)
    assert "cdn" not in own.lower()
    for lib in ("vega", "vega-lite", "vega-embed"):
        assert f'<script data-lib="{lib}">' in page
    for section in ("sources", "overlap", "duplicates", "histogram", "model", "blocking",
                    "events", "review", "accuracy"):
        assert f'<section id="{section}">' in page
    specs = _specs(page)
    con = duckdb.connect(str(rv_project.project.register), read_only=True)
    try:
        # The heat map counts the civil registry as a source.
        heat = next(s for s in specs.values() if "layer" in s and s["layer"][0]["mark"] == "rect")
        cells = {(c["a"], c["b"]): c["n"] for c in heat["data"]["values"]}
        civil = con.execute("SELECT name FROM sources WHERE kind = 'civil_registry'"
                            ).fetchall()[0][0]
        prog = con.execute("SELECT name FROM sources WHERE kind = 'programme' ORDER BY name"
                           ).fetchall()[0][0]
        (both,) = con.execute("""
            SELECT count(*) FROM (SELECT p.person_id FROM person_records p JOIN records r
            USING (uid) GROUP BY p.person_id
            HAVING bool_or(r.source = ?) AND bool_or(r.source = ?))""", [civil, prog]
                              ).fetchall()[0]
        assert both > 0 and cells[(civil, prog)] == cells[(prog, civil)] == both
        # Every reject reason of the register is listed.
        for (reason,) in con.execute("SELECT DISTINCT reason FROM rejects").fetchall():
            assert reason.replace("'", "&#x27;") in page or reason in page
        (band,) = con.execute("SELECT count(*) FROM links WHERE NOT linked").fetchall()[0]
        (summary,) = con.execute("SELECT summary FROM runs WHERE status = 'published' "
                                 "ORDER BY finished_at DESC LIMIT 1").fetchall()[0]
    finally:
        con.close()
    review = next(s for s in specs.values() if s.get("encoding", {}).get("x", {}).get("bin"))
    assert len(review["data"]["values"]) == band
    # Splink's own histogram definition, with the pairs' weights.
    hist = next(s for s in specs.values() if "layer" in s and s["layer"][0].get("mark") == "bar")
    assert hist["layer"][0]["title"]["text"]
    assert sum(v["count_rows"] for v in hist["layer"][0]["data"]["values"]) > 0
    # The text summary explains its figures and counts the civil registry too.
    text = format_summary(json.loads(summary))
    assert "dup. persons: persons with two or more" in text
    assert "people in more than one source, civil registry included" in text
    assert "review queue:" in text

    fr = rv_project.root / "rapport.html"
    assert _linkage(rv_project, "report", "-o", str(fr), "--lang", "fr").returncode == 0
    page_fr = fr.read_text(encoding="utf-8")
    assert '<html lang="fr">' in page_fr and "Personnes dans deux sources" in page_fr
