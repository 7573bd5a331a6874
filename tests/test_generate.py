"""Tests for the synthetic register generator (benchmarks.generate)."""

from __future__ import annotations

import csv
import json
import random
import re
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from linkage.canonical import RAW_FIELDS
from linkage.synthetic.generate import generate
from linkage.synthetic.hard import GROUPS
from linkage.synthetic.noise import strip_accents
from linkage.synthetic.population import NOW, PopulationBuilder
from linkage.synthetic.profiles import PROFILES

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


def _load(out: Path) -> tuple[dict, dict, dict, list[dict]]:
    """(project, configs, rows, truth) of a generated project."""
    project = yaml.safe_load((out / "project.yaml").read_text(encoding="utf-8"))
    configs = {}
    rows = {}
    for rel in project["sources"]:
        cfg = yaml.safe_load((out / rel).read_text(encoding="utf-8"))
        configs[cfg["name"]] = cfg
        rows[cfg["name"]] = _read_rows(out, cfg)
    with (out / "truth.csv").open(encoding="utf-8", newline="") as fh:
        truth = list(csv.DictReader(fh))
    return project, configs, rows, truth


@pytest.fixture(
    scope="module",
    params=[("sahel", "normal"), ("horn", "normal"), ("sahel", "hard"), ("horn", "hard")],
    ids=lambda p: "-".join(p),
)
def run(request, tmp_path_factory):
    """One small project per profile and realism: (profile, out, manifest, project, configs,
    rows, truth); the realism is ``manifest["realism"]``."""
    profile, realism = request.param
    out = tmp_path_factory.mktemp(f"{profile}-{realism}")
    manifest = generate(N, profile, seed=7, out=out, realism=realism)
    project, configs, rows, truth = _load(out)
    return profile, out, manifest, project, configs, rows, truth


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
        assert (
            "birth_date" in cfg["columns"]
            or "age_reference_column" in cfg
            or "age_reference_date" in cfg
        )
        for row in rows[name]:  # every mapped column is present in the header
            assert cfg["record_key"] in row
    assert (out / "manifest.json").exists()


def test_latin1_cash_transfer_has_family_first_names(run):
    profile, _, manifest, _, configs, rows, _ = run
    hard = manifest["realism"] == "hard"
    cfg = configs["cash_transfer"]
    assert cfg["encoding"] == "latin-1" and cfg["delimiter"] == ","
    names = [r[cfg["columns"]["full_name"]] for r in rows["cash_transfer"]]
    if profile == "sahel":
        # mostly "TRAORE Moussa": first token upper-case (hard: some teams write given first)
        upper_first = sum(1 for n in names if n and n.split(" ")[0].isupper())
        assert upper_first > (0.5 if hard else 0.8) * len(names)
    else:
        assert cfg["name_order"] == "given_father_grandfather"
        three = sum(1 for n in names if len(n.split()) >= 3)
        assert three > (0.35 if hard else 0.7) * len(names)


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
    profile, _, manifest, _, configs, rows, truth = run
    # The hard civil registry gives the birth commune, not the residence: households
    # there share names, not places.
    same_place = manifest["realism"] != "hard"
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
    if same_place:
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


# ---------------------------------------------------------------------------------------
# realism="hard": what independent registers contain (linkage.synthetic.hard)
# ---------------------------------------------------------------------------------------
N_HARD = 4000
_FUTURE = NOW.year


def _features(out: Path) -> dict[tuple[str, str], set[str]]:
    with (out / "features.csv").open(encoding="utf-8", newline="") as fh:
        found: dict[tuple[str, str], set[str]] = defaultdict(set)
        for r in csv.DictReader(fh):
            found[(r["source"], r["record_key"])].add(r["feature"])
    return found


@pytest.fixture(scope="module", params=["sahel", "horn"])
def hard(request, tmp_path_factory):
    """A hard project and the normal one of the same seed: (profile, hard, normal), each
    (out, manifest, configs, rows, truth, features by record)."""
    profile = request.param
    got = []
    for realism in ("hard", "normal"):
        out = tmp_path_factory.mktemp(f"{profile}-{realism}-big")
        manifest = generate(N_HARD, profile, seed=5, out=out, realism=realism)
        _, configs, rows, truth = _load(out)
        feats = _features(out) if realism == "hard" else {}
        got.append((out, manifest, configs, rows, truth, feats))
    return profile, got[0], got[1]


def _keyed(cfg: dict, rows: list[dict]) -> dict[str, dict]:
    return {str(r[cfg["record_key"]]): r for r in rows}


def _share(n: int, total: int) -> float:
    return n / total if total else 0.0


def test_hard_default_is_normal(tmp_path):
    m = generate(150, "sahel", seed=3, out=tmp_path / "n")
    assert m["realism"] == "normal" and not (tmp_path / "n" / "features.csv").exists()
    with pytest.raises(ValueError, match="realism"):
        generate(10, "sahel", out=tmp_path / "x", realism="harder")


def test_hard_configs_load_as_the_product_reads_them(hard):
    from linkage.config import load_project

    profile, (out, manifest, configs, _, _, _), _ = hard
    assert manifest["realism"] == "hard" and manifest["features"] == "features.csv"
    project = load_project(out / "project.yaml")
    assert {s.name for s in project.sources} == set(configs)
    cr = configs["civil_registry"]["columns"]
    assert cr["commune"] == "commune_naissance"
    assert "region" not in cr and "village" not in cr and "father_name" in cr
    pw = configs["public_works"]
    assert pw["age_reference_date"] == "2024-03-01" and "age_reference_column" not in pw
    nut = configs["nutrition"]["columns"]
    assert "commune" not in nut and nut["village"] == "village_code"
    assert nut["mother_name"] == "caregiver_name"


def test_hard_truth_is_the_normal_truth_plus_exact_copies(hard):
    """Same seed: the same persons in the same sources; the copies add rows, not people."""
    _, (out, manifest, configs, rows, truth, feats), (_, _, _, _, n_truth, _) = hard
    keys = {(t["source"], t["record_key"]) for t in truth}
    assert len(keys) == len(truth)
    written = {(s, str(r[configs[s]["record_key"]])) for s in rows for r in rows[s]}
    assert written == keys and manifest["records"] == len(truth)
    copies = Counter(
        (t["source"], t["person_id"], t["bad"])
        for t in truth
        if "exact_copy" in feats.get((t["source"], t["record_key"]), ())
    )
    hard_rows = Counter((t["source"], t["person_id"], t["bad"]) for t in truth)
    assert hard_rows - copies == Counter((t["source"], t["person_id"], t["bad"]) for t in n_truth)
    assert set(feats) <= keys


def test_hard_exact_copies_are_exact(hard):
    _, (_, _, configs, rows, truth, feats), _ = hard
    person = {(t["source"], t["record_key"]): t["person_id"] for t in truth}
    for name, cfg in configs.items():
        key = cfg["record_key"]
        by_values: dict[tuple, list[str]] = defaultdict(list)
        for r in rows[name]:
            by_values[tuple(sorted((k, str(v)) for k, v in r.items() if k != key))].append(
                str(r[key])
            )
        copies = [k for k in _keyed(cfg, rows[name]) if "exact_copy" in feats.get((name, k), ())]
        assert 0.002 <= _share(len(copies), len(rows[name])) <= 0.03, name
        twins = {k: ks for ks in by_values.values() for k in ks if len(ks) > 1}
        for k in copies:  # an identical row under another key, of the same person
            assert k in twins, (name, k)
            assert {person[(name, o)] for o in twins[k]} == {person[(name, k)]}


def test_hard_iso_year_only_dates_look_like_first_january(hard):
    _, (_, _, configs, rows, _, feats), (_, _, n_configs, n_rows, _, _) = hard
    cfg = configs["nutrition"]
    col = cfg["columns"]["birth_date"]
    dates = [r.get(col) for r in rows["nutrition"] if r.get(col)]
    jan1 = sum(1 for d in dates if d.endswith("-01-01"))
    bare = sum(1 for d in dates if len(d) == 4)
    n_dates = [r.get(col) for r in n_rows["nutrition"] if r.get(col)]
    assert sum(1 for d in n_dates if d.endswith("-01-01")) < 0.01 * len(n_dates)
    assert 0.05 < _share(jan1, len(dates)) < 0.5
    assert bare < jan1 / 3
    for k, r in _keyed(cfg, rows["nutrition"]).items():
        if "iso_placeholder" in feats.get(("nutrition", k), ()):
            assert r[col].endswith("-01-01") or r[col][:4] > str(_FUTURE)


def test_hard_future_birth_dates(hard):
    _, (_, _, configs, rows, truth, feats), _ = hard
    bad = {(t["source"], t["record_key"]) for t in truth if t["bad"] == "true"}
    for name in ("cash_transfer", "nutrition"):
        cfg = configs[name]
        col = cfg["columns"]["birth_date"]
        future = tagged = 0
        for k, r in _keyed(cfg, rows[name]).items():
            if (name, k) in bad or not r.get(col):
                continue
            is_future = int(re.search(r"\d{4}", r[col]).group()) > _FUTURE
            future += is_future  # the normal mode's slips (+10 years) make a few too
            if "future_date" in feats.get((name, k), ()):
                tagged += 1
                assert is_future, (name, r[col])
        assert tagged >= 1 and _share(future, len(rows[name])) < 0.02, name


def test_hard_public_works_ages_without_enrolment_date(hard):
    _, (_, manifest, configs, rows, _, feats), _ = hard
    cfg = configs["public_works"]
    assert all("enrolment_date" not in r for r in rows["public_works"])
    counts = manifest["sources"]["public_works"]["features"]
    n = len(rows["public_works"])
    off = sum(counts.get(f"age_off_{d}", 0) for d in (1, 2, 3))
    assert 0.05 < _share(off, n) < 0.3 and counts.get("age_off_3", 0) > 0
    # ages were taken at three cycles over a year: many differ from the YAML's date
    assert 0.3 < _share(counts["age_reference_gap"], n) < 0.9
    assert all(isinstance(r[cfg["columns"]["age"]], int | None) for r in rows["public_works"])


def test_hard_nutrition_village_codes_and_caregiver(hard):
    profile, (_, manifest, configs, rows, _, _), _ = hard
    cfg = configs["nutrition"]
    cols = cfg["columns"]
    code = re.compile(r"^[A-ZÀ-Ý]{3}-C\d{2}-V\d{3}$")
    recs = rows["nutrition"]
    assert all(code.match(r[cols["village"]]) for r in recs if r.get(cols["village"]))
    assert all("commune" not in r for r in recs)
    accented = sum(1 for r in recs if not r[cols["village"]].isascii())
    if profile == "sahel":  # SÉG- and SEG- both appear (feature phones drop accents)
        assert accented > 0
    children = [r for r in recs if r["beneficiary_type"] == "child_6_59"]
    women = [r for r in recs if r["beneficiary_type"] == "plw"]
    with_cg = sum(1 for r in children if r.get(cols["mother_name"]))
    assert _share(with_cg, len(children)) > 0.6
    assert not any(r.get(cols["mother_name"]) for r in women)
    other = manifest["sources"]["nutrition"]["features"].get("caregiver_not_mother", 0)
    assert 0.01 < _share(other, len(children)) < 0.2


def test_hard_civil_registry_birth_commune_and_father(hard):
    profile, (_, manifest, configs, rows, truth, _), _ = hard
    cfg = configs["civil_registry"]
    cols = cfg["columns"]
    recs = rows["civil_registry"]
    filled = _share(sum(1 for r in recs if r.get(cols["father_name"])), len(recs))
    if profile == "sahel":  # a parent field, mostly empty
        assert 0.1 < filled < 0.3
    else:  # the horn's second name is the person's own: on every act
        assert filled > 0.9
    elsewhere = manifest["sources"]["civil_registry"]["features"]["born_elsewhere"]
    assert 0.15 < _share(elsewhere, len(recs)) < 0.5
    if profile == "sahel":  # the father's full name: "Moussa Traoré"
        assert all(len(r[cols["father_name"]].split()) >= 2 for r in recs
                   if r.get(cols["father_name"]))


def test_hard_mixed_name_orders(hard):
    profile, (_, _, configs, rows, _, _), _ = hard
    if profile == "sahel":
        col = configs["cash_transfer"]["columns"]["full_name"]
        names = [r[col] for r in rows["cash_transfer"] if r[col]]
        upper_first = sum(1 for n in names if _upper(n.split()[0]) and not _upper(n.split()[-1]))
        no_case = sum(1 for n in names if not any(_upper(w) for w in n.split()))
        assert 0.4 < _share(upper_first, len(names)) < 0.85  # "TRAORE Mahamadou"
        assert 0.1 < _share(no_case, len(names)) < 0.45  # "Mamadou Traore"
        return
    col = configs["cash_transfer"]["columns"]["full_name"]
    names = [r[col] for r in rows["cash_transfer"] if r[col]]
    upper_first = sum(1 for n in names if _upper(n.split()[0]) and not _upper(n.split()[-1]))
    two = sum(1 for n in names if len(n.split()) == 2)
    assert 0.1 < _share(upper_first, len(names)) < 0.4  # "AHMED Zahra"
    assert 0.2 < _share(two, len(names)) < 0.6
    pw = configs["public_works"]["columns"]
    recs = rows["public_works"]
    two_in_one = sum(1 for r in recs if r[pw["given_name"]] and " " in r[pw["given_name"]])
    no_father = sum(1 for r in recs if r[pw["given_name"]] and not r[pw["father_name"]])
    assert 0.1 < _share(two_in_one, len(recs)) < 0.4
    assert 0.03 < _share(no_father, len(recs)) < 0.2


def _upper(word: str) -> bool:
    letters = [c for c in word if c.isalpha()]
    return len(letters) >= 2 and all(c.isupper() for c in letters)


def test_hard_one_letter_family_typos(hard):
    """Tagged family names are one edit away from a name of the profile, and not one."""
    profile, (_, manifest, configs, rows, _, feats), _ = hard
    prof = PROFILES[profile]
    known = {strip_accents(x).lower() for x in prof.family_names}
    known |= {strip_accents(v).lower() for vs in prof.variants.values() for v in vs}
    if profile == "horn":
        known |= {strip_accents(x).lower() for x in prof.male_given}
    for name in ("civil_registry", "public_works", "nutrition"):
        cfg = configs[name]
        field = "father_name" if profile == "horn" else "family_name"
        n = manifest["sources"][name]["features"].get("family_typo", 0)
        rate = _share(n, len(rows[name]))
        assert rate < 0.09, name
        if name == "public_works":
            assert rate > 0.02
        col = cfg["columns"][field]
        tagged = [r.get(col) for k, r in _keyed(cfg, rows[name]).items()
                  if "family_typo" in feats.get((name, k), ()) and r.get(col)]
        unknown = sum(1 for x in tagged if strip_accents(x).lower() not in known)
        assert unknown >= 0.6 * len(tagged), name


def test_hard_deterministic(tmp_path):
    a = generate(200, "horn", seed=4, out=tmp_path / "a", realism="hard")
    b = generate(200, "horn", seed=4, out=tmp_path / "b", realism="hard")
    assert a == b
    for rel in ["truth.csv", "features.csv", "data/civil_registry.csv", "data/nutrition.jsonl",
                "data/cash_transfer.csv", "sources/public_works.yaml"]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    ta = pq.read_table(tmp_path / "a" / "data/public_works.parquet")
    assert ta.equals(pq.read_table(tmp_path / "b" / "data/public_works.parquet"))
    generate(200, "horn", seed=5, out=tmp_path / "c", realism="hard")
    assert (tmp_path / "c" / "features.csv").read_bytes() != (
        tmp_path / "a" / "features.csv"
    ).read_bytes()


@pytest.mark.parametrize("profile", ["sahel", "horn"])
def test_hard_without_every_group_is_the_normal_mode(profile, tmp_path):
    """The hard mode is a layer: with every group left out, the files are the normal ones."""
    generate(400, profile, seed=9, out=tmp_path / "n")
    m = generate(400, profile, seed=9, out=tmp_path / "h", realism="hard", hard_without=GROUPS)
    assert m["hard_without"] == sorted(GROUPS)
    for rel in ["truth.csv", "data/civil_registry.csv", "data/cash_transfer.csv",
                "data/nutrition.jsonl", "sources/civil_registry.yaml",
                "sources/nutrition.yaml", "sources/public_works.yaml"]:
        assert (tmp_path / "n" / rel).read_bytes() == (tmp_path / "h" / rel).read_bytes(), rel
    ta = pq.read_table(tmp_path / "n" / "data/public_works.parquet")
    assert ta.equals(pq.read_table(tmp_path / "h" / "data/public_works.parquet"))


def test_hard_without_one_group(tmp_path):
    generate(400, "sahel", seed=9, out=tmp_path / "p", realism="hard",
             hard_without=["places", "copies"])
    _, configs, _, _ = _load(tmp_path / "p")
    assert {"region", "commune", "village"} <= set(configs["civil_registry"]["columns"])
    assert configs["nutrition"]["columns"]["commune"] == "commune"
    assert configs["nutrition"]["columns"]["mother_name"] == "caregiver_name"
    feats = {f for fs in _features(tmp_path / "p").values() for f in fs}
    assert "exact_copy" not in feats and "born_elsewhere" not in feats
    assert "given_first" in feats
    with pytest.raises(ValueError, match="groups"):
        generate(10, "sahel", out=tmp_path / "x", realism="hard", hard_without=["nmaes"])
    with pytest.raises(ValueError, match="realism"):
        generate(10, "sahel", out=tmp_path / "y", hard_without=["names"])
