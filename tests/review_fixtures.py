"""Fixtures for the review-queue tests: a generated register with one published run.

The project is generated once per session (:func:`linkage.synthetic.generate`, with its
truth) and run through the real batch; each test gets its own copy of the directory,
so decisions in one test never leak into another. Import with
``from tests.review_fixtures import *``.
"""

from __future__ import annotations

import csv
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from linkage.batch.pipeline import run
from linkage.config import ProjectConfig, load_project
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.synthetic.generate import generate

PERSONS = 1000


@dataclass
class Generated:
    root: Path
    project: ProjectConfig
    truth: dict[str, str]  # record uid -> the generator's person

    def rerun(self) -> dict:
        return run(self.project, progress=lambda _: None).summary


def read_truth(root: Path) -> dict[str, str]:
    with (root / "truth.csv").open(encoding="utf-8") as fh:
        return {f"{r['source']}:{r['record_key']}": r["person_id"] for r in csv.DictReader(fh)}


@pytest.fixture(scope="session")
def rv_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generated and run once per test session; tests only ever copy it."""
    out = tmp_path_factory.mktemp("review-template")
    generate(persons=PERSONS, profile="sahel", seed=3, out=out,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    run(load_project(out / "project.yaml"), progress=lambda _: None)
    return out


@pytest.fixture
def rv_project(rv_template: Path, tmp_path: Path) -> Generated:
    """A private copy of the generated, published project."""
    root = tmp_path / "project"
    shutil.copytree(rv_template, root)
    return Generated(root, load_project(root / "project.yaml"), read_truth(root))
