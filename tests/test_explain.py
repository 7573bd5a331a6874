"""`linkage explain`: the waterfall of any two records, linked or not."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from service_fixtures import build_small_register

from linkage.errors import NotFound
from linkage.realtime.explain import explain_records
from linkage.register.database import Register

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return build_small_register(tmp_path_factory.mktemp("explain"), persons=200, seed=3)


def test_a_true_pair_is_explained_comparison_by_comparison(small) -> None:  # noqa: ANN001
    reg = Register.open(small.project.register, read_only=True)
    try:
        ex = explain_records(small.project, reg, "civil_registry:CR00000", "cash_transfer:CT00000")
    finally:
        reg.close()
    assert [e.comparison for e in ex.evidence][:2] == ["given_name", "family_name"]
    assert ex.evidence[0].label == "exact" and ex.evidence[0].weight > 0
    total = ex.prior_weight + sum(e.weight for e in ex.evidence)
    assert total == pytest.approx(ex.match_weight)
    assert ex.match_probability > 0.5 and ex.compared and ex.shared_keys


def test_unrelated_records_are_never_compared_and_the_cli_says_so(small) -> None:  # noqa: ANN001
    rows = small.rows
    a = "civil_registry:CR00000"
    b = next(u for u, r in rows.items() if u.startswith("civil_registry") and
             r["prenom"] != rows[a]["prenom"] and r["nom"] != rows[a]["nom"]
             and r["village"] != rows[a]["village"] and r["commune"] != rows[a]["commune"])
    proc = subprocess.run([sys.executable, "-m", "linkage", "explain", "-p",
                           str(small.project.path), a, b], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "never compared: no blocking key in common" in proc.stdout
    assert "match probability" in proc.stdout and "given_name" in proc.stdout


def test_an_unknown_record_is_not_found(small) -> None:  # noqa: ANN001
    reg = Register.open(small.project.register, read_only=True)
    try:
        with pytest.raises(NotFound, match="no record"):
            explain_records(small.project, reg, "civil_registry:CR00000", "nope:1")
    finally:
        reg.close()

