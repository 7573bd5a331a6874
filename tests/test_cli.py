"""The command line: thin, light to import, one line and a defined exit code per error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _project(root: Path, extra: str = "") -> None:
    (root / "s.csv").write_text("id,prenom\n1,Awa\n")
    (root / "s.yaml").write_text("name: s\nkind: programme\nprogramme: S\npath: s.csv\n"
                                 "format: csv\nrecord_key: id\ncolumns: {given_name: prenom}\n")
    (root / "project.yaml").write_text(f"name: x\nregister: r.duckdb\nsources: [s.yaml]\n{extra}")


def _linkage(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkage", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_import_linkage_and_the_stubs_load_neither_splink_nor_duckdb() -> None:
    code = ("import sys, linkage, linkage.service.v1.linkage_pb2_grpc, linkage.errors; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('splink', 'duckdb', 'benchmarks')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_cli_does_not_import_the_benchmarks() -> None:
    code = ("import sys, linkage.cli; linkage.cli.cli(['demo', '--help'], standalone_mode=False); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'benchmarks'))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_bad_project_file_is_one_line_naming_file_and_key(tmp_path: Path) -> None:
    _project(tmp_path, "thresholds: {match: 2}\n")
    proc = _linkage("summary", "-p", "project.yaml", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "project.yaml" in lines[0] and "thresholds" in lines[0], lines
    assert "Traceback" not in proc.stderr


def test_no_published_run_is_not_ready(tmp_path: Path) -> None:
    _project(tmp_path)
    from linkage.register.database import Register

    Register.open(tmp_path / "r.duckdb").close()
    proc = _linkage("summary", "-p", "project.yaml", cwd=tmp_path)
    assert proc.returncode == 7, proc.stderr
    assert "no published run" in proc.stderr


def test_every_package_the_code_imports_is_a_declared_dependency() -> None:
    """The README's demo line installs the default dependencies only (`-e .`): a module
    imported by linkage/ and brought in only by the test extras would break it."""
    import ast
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}

    default = names(meta["dependencies"])
    optional = names(meta["optional-dependencies"]["spark"])
    distribution = {"yaml": "pyyaml", "google": "protobuf", "grpc": "grpcio",
                    "grpc_health": "grpcio-health-checking",
                    "grpc_reflection": "grpcio-reflection", "grpc_status": "grpcio-status"}
    imported: set[str] = set()
    for path in (root / "linkage").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {m for m in imported if m not in sys.stdlib_module_names and m != "linkage"}
    missing = {m for m in third_party
               if distribution.get(m, m) not in default | optional}
    assert not missing, f"imported but not declared in pyproject.toml: {sorted(missing)}"
    assert "pyspark" in third_party and "pyspark" in optional  # the Spark extra, lazily
