"""Tests for the synthetic register generator (benchmarks.generate)."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from linkage.synthetic.generate import generate
from linkage.synthetic.population import PopulationBuilder
from linkage.synthetic.profiles import PROFILES
from linkage.canonical import RAW_FIELDS

N = 300


def _read_rows(project: Path, cfg: dict) -> list[dict]:
    """Read a source's data file the way its YAML config describes it."""
    path = (project / "sources" / cfg["path"]).resolve()
    if cfg["format"] == "csv":
        with path.open(encoding=cfg["encoding"], newline="") as fh:
            return list(csv.DictReader(fh, delimiter=cfg["delimiter"]))
    if cfg["format"] == "parquet":
        return pq.read_table(path).to_pylist()
    assert cfg["format"] == "jsonl"
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module", params=["sahel", "horn"])
def run(request, tmp_path_factory):
    """One small project per profile: (profile, out dir, manifest, configs, rows, truth)."""
    out = tmp_path_factory.mktemp(request.param)
    manifest = generate(N, request.param, seed=7, out=out)
    project = yaml.safe_load((out / "project.yaml").read_text(encoding="utf-8"))
    configs = {}
    rows = {}
    for rel in project["sources"]:
        cfg = yaml.safe_load((out / rel).read_text(encoding="utf-8"))
        configs[cfg["name"]] = cfg
        rows[cfg["name"]] = _read_rows(out, cfg)
    with (out / "truth.csv").open(encoding="utf-8", newline="") as fh:
        truth = list(csv.DictReader(fh))
    return request.param, out, manifest, project, configs, rows, truth


def test_layout_and_configs(run):
    profile, out, manifest, project, configs, rows, _ = run
    assert project["name"] == f"demo-{profile}"
    assert project["register"] == "register.duckdb"
    assert project["country_code"] == ("223" if profile == "sahel" else "253")
    assert set(configs) == {"civil_registry", "cash_transfer", "public_works", "nutrition"}
    assert {c["format"] for c in configs.values()} == {"csv", "parquet", "jsonl"}
    assert configs["civil_registry"]["kind"] == "civil_registry"
    for name, cfg in configs.items():
        assert set(cfg["columns"]) <= set(RAW_FIELDS), name
        assert (out / "sources" / cfg["path"]).resolve().exists()
        assert manifest["sources"][name]["records"] == len(rows[name])
        if "full_name" in cfg["columns"]:
            assert cfg["name_order"] in ("family_given", "given_family", "given_father_grandfather")
        assert "birth_date" in cfg["columns"] or "age_reference_column" in cfg
        for row in rows[name]:  # every mapped column is present in the header
            assert cfg["record_key"] in row
    assert (out / "manifest.json").exists()


def test_latin1_cash_transfer_has_family_first_names(run):
    profile, _, _, _, configs, rows, _ = run
    cfg = configs["cash_transfer"]
    assert cfg["encoding"] == "latin-1" and cfg["delimiter"] == ","
    names = [r[cfg["columns"]["full_name"]] for r in rows["cash_transfer"]]
    if profile == "sahel":
        # mostly "TRAORE Moussa": first token upper-case
        upper_first = sum(1 for n in names if n and n.split(" ")[0].isupper())
        assert upper_first > 0.8 * len(names)
    else:
        assert cfg["name_order"] == "given_father_grandfather"
        three = sum(1 for n in names if len(n.split()) >= 3)
        assert three > 0.7 * len(names)


def test_truth_covers_every_record(run):
    _, _, manifest, _, configs, rows, truth = run
    keys = {(t["source"], t["record_key"]) for t in truth}
    assert len(keys) == len(truth)  # record keys unique per source
    written = {(name, str(r[configs[name]["record_key"]])) for name in rows for r in rows[name]}
    assert written == keys
    assert manifest["records"] == len(truth)
    assert 1.0 <= len(truth) / N <= 1.4


def test_bad_rows_exist_and_are_bad(run):
    _, _, _, _, configs, rows, truth = run
    bad = {(t["source"], t["record_key"]) for t in truth if t["bad"] == "true"}
    for name, cfg in configs.items():
        cols = cfg["columns"]
        bad_rows = [r for r in rows[name] if (name, str(r[cfg["record_key"]])) in bad]
        assert len(bad_rows) >= 3, name
        codes = {c for v in cfg["sex_codes"].values() for c in v}
        name_cols = [
            c
            for f, c in cols.items()
            if f in ("full_name", "given_name", "family_name", "father_name")
        ]
        for r in bad_rows:
            sex_bad = str(r.get(cols["sex"])) not in codes and r.get(cols["sex"]) not in ("", None)
            name_bad = all(not r.get(c) for c in name_cols)
            date_bad = False
            if "birth_date" in cols and r.get(cols["birth_date"]):
                try:
                    datetime.strptime(r[cols["birth_date"]], cfg["birth_date_format"])
                except ValueError:
                    date_bad = True
            assert sex_bad or name_bad or date_bad, (name, r)


def test_good_dates_parse(run):
    _, _, _, _, configs, rows, truth = run
    bad = {(t["source"], t["record_key"]) for t in truth if t["bad"] == "true"}
    for name, cfg in configs.items():
        col = cfg["columns"].get("birth_date")
        if col is None:
            continue
        for r in rows[name]:
            if (name, str(r[cfg["record_key"]])) in bad or not r.get(col):
                continue
            value = r[col]
            if value.isdigit() and len(value) == 4 or value.startswith("00/00/"):
                continue
            datetime.strptime(value, cfg["birth_date_format"])


def test_duplicates_inside_rosters(run):
    _, _, manifest, _, _, _, truth = run
    per_source = Counter((t["source"], t["person_id"]) for t in truth)
    dup_sources = {s for (s, _), n in per_source.items() if n > 1}
    assert "public_works" in dup_sources
    assert manifest["sources"]["public_works"]["duplicates"] > 0
    multi = defaultdict(set)
    for t in truth:
        multi[t["person_id"]].add(t["source"])
    share = sum(1 for s in multi.values() if len(s) >= 2) / N
    assert 0.2 <= share <= 0.5


def test_households_share_names_and_villages(run):
    profile, _, _, _, configs, rows, truth = run
    cfg = configs["civil_registry"]
    cols = cfg["columns"]
    by_key = {str(r[cfg["record_key"]]): r for r in rows["civil_registry"]}
    by_hh = defaultdict(list)
    for t in truth:
        if t["source"] == "civil_registry" and t["bad"] == "false":
            by_hh[t["household_id"]].append(by_key[t["record_key"]])
    shared_village = shared_name = pairs = 0
    for members in by_hh.values():
        for a, b in zip(members, members[1:], strict=False):
            pairs += 1
            shared_village += (a[cols["commune"]] or "").lower() == (
                b[cols["commune"]] or ""
            ).lower()
            if profile == "sahel":
                key = "family_name"
            else:
                key = "grandfather_name"
            shared_name += (a[cols[key]] or "").lower() == (b[cols[key]] or "").lower()
    assert pairs > 20
    assert shared_village / pairs > 0.7
    assert shared_name / pairs > 0.3


def test_horn_patronymic_structure():
    pop = PopulationBuilder(PROFILES["horn"], random.Random(3))
    pop.build(2000)
    checked = twins = 0
    for hh in pop.households:
        head = hh.members[0]
        for p in hh.members:
            if p.role in ("child", "twin") and head.sex == "M":
                assert p.father == head.given.split(" ")[0]
                assert p.grandfather == head.father
                checked += 1
            if p.role == "grandparent" and p.sex == "M":
                assert p.given == head.father and p.father == head.grandfather
        kids = [p for p in hh.members if p.role == "twin"]
        if kids:
            twins += 1
            assert len({k.birth for k in kids}) <= len(kids) // 2
    assert checked > 500
    assert twins > 0


def test_sahel_population_is_concentrated():
    pop = PopulationBuilder(PROFILES["sahel"], random.Random(5))
    pop.build(5000)
    fam = Counter(p.family for p in pop.persons)
    top12 = sum(n for _, n in fam.most_common(12)) / len(pop.persons)
    assert top12 > 0.5
    sizes = [len(hh.members) for hh in pop.households]
    assert 4.0 <= sum(sizes) / len(sizes) <= 6.0 and max(sizes) <= 10
    for hh in pop.households:
        head = hh.members[0]
        for p in hh.members:
            if p.role in ("child", "twin"):
                assert p.family == head.family


def test_deterministic(tmp_path):
    a = generate(120, "sahel", seed=11, out=tmp_path / "a")
    b = generate(120, "sahel", seed=11, out=tmp_path / "b")
    assert a == b
    for rel in ["truth.csv", "data/civil_registry.csv", "data/nutrition.jsonl"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    ta = pq.read_table(tmp_path / "a" / "data/public_works.parquet")
    tb = pq.read_table(tmp_path / "b" / "data/public_works.parquet")
    assert ta.equals(tb)
    c = generate(120, "sahel", seed=12, out=tmp_path / "c")
    assert (tmp_path / "c" / "truth.csv").read_bytes() != (
        tmp_path / "a" / "truth.csv"
    ).read_bytes()
    assert c["persons"] == 120
