"""Extra fields (issue 10, item 3): columns beyond the canonical person, declared in the
project file, trained, blocked on, scored in the batch and by Resolve through the real
gRPC server, shown in explanations; a column derived from part of another by a regex.

Real parts: a generated register written to CSV files, the batch on DuckDB with Splink
(training included), a real server on a free loopback port through the generated stubs.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import yaml

from linkage.batch.pipeline import run
from linkage.config import load_project
from linkage.errors import ConfigError
from linkage.ingest.read import ingest_source
from linkage.matching import training
from linkage.matching.definition import COMPARISONS, definition_sha256
from linkage.matching.extra import BUILTIN, Definition, ExtraField
from linkage.matching.model import SHIPPED_MODELS_DIR, Model, ModelError
from linkage.matching.splink_settings import settings_dict
from linkage.register.database import Register
from linkage.synthetic.generate import generate

# Two persons the built-in fields cannot tell apart (same rare names, no date or place in
# the query): only their e-mail addresses separate them.
TWIN_A = {"id_beneficiaire": "XF-A", "nom_complet": "KANOUTE Zeinabou", "sexe": "F",
          "date_naiss": "00/00/1990", "village": "Kalaban", "commune": "Kati",
          "email": "zeinabou.k@poste.example"}
TWIN_B = {"id_beneficiaire": "XF-B", "nom_complet": "KANOUTE Zeinabou", "sexe": "F",
          "date_naiss": "00/00/1991", "village": "Diema", "commune": "Diema",
          "email": "kanoute.z@courriel.example"}

EXTRA_FIELDS = [
    {"name": "email", "kind": "tokens", "block": True, "max_weight": 9},
]


def _add_emails(root: Path, rng: random.Random) -> None:
    """Give each true person an e-mail address in the generated files, as a roster might:
    most duplicates carry it, some a second address too, some none."""
    person_of: dict[tuple[str, str], str] = {}
    with (root / "truth.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            person_of[(row["source"], row["record_key"])] = row["person_id"]
    for source, key, delim, enc in (("civil_registry", "num_acte", ";", "utf-8"),
                                    ("cash_transfer", "id_beneficiaire", ",", "latin-1")):
        path = root / "data" / f"{source}.csv"
        with path.open(encoding=enc, newline="") as fh:
            reader = csv.DictReader(fh, delimiter=delim)
            header = [*(reader.fieldnames or []), "email"]
            rows = list(reader)
        for row in rows:
            pid = person_of.get((source, row[key]))
            draw = rng.random()
            if pid is None or draw < 0.2:
                row["email"] = ""
            elif draw < 0.3:
                row["email"] = f"{pid.lower()}@mail.example; other{rng.randrange(10**6)}@x.example"
            else:
                row["email"] = f"{pid.lower()}@mail.example"
        if source == "cash_transfer":
            rows += [dict.fromkeys(header, "") | TWIN_A, dict.fromkeys(header, "") | TWIN_B]
        with path.open("w", encoding=enc, newline="") as fh:
            w = csv.DictWriter(fh, header, delimiter=delim)
            w.writeheader()
            w.writerows(rows)


def _write_project(root: Path, extra: list[dict] | None) -> None:
    project = yaml.safe_load((root / "project.yaml").read_text(encoding="utf-8"))
    project["sources"] = ["sources/civil_registry.yaml", "sources/cash_transfer.yaml"]
    project["thresholds"] = {"match": 0.9, "review": 0.4}
    project["model"] = "models/model.json"
    if extra is not None:
        project["extra_fields"] = extra
    (root / "project.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    for source in ("civil_registry", "cash_transfer"):
        path = root / "sources" / f"{source}.yaml"
        src = yaml.safe_load(path.read_text(encoding="utf-8"))
        src["columns"]["extra.email"] = "email"
        path.write_text(yaml.safe_dump(src, allow_unicode=True), encoding="utf-8")


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated register with e-mail addresses, run through the batch (trained)."""
    root = tmp_path_factory.mktemp("extra")
    generate(persons=2500, profile="sahel", seed=11, out=root)
    _add_emails(root, random.Random(5))
    _write_project(root, EXTRA_FIELDS)
    run(load_project(root / "project.yaml"), progress=lambda _: None)
    return root


def test_declared_field_is_trained_like_the_built_in_ones(batch: Path) -> None:
    project = load_project(batch / "project.yaml")
    model = Model.load(project.model)
    model.check_project(project.definition)
    assert [c["output_column_name"] for c in model.settings["comparisons"]] == [
        *(c.name for c in COMPARISONS), "email"]
    email = {lvl["label"]: lvl for lvl in model.level_parameters()["email"]}
    same, common, different = (email["same tokens"], email["a token in common"],
                               email["different"])
    # u by random sampling: two random persons almost never share an address; m by EM:
    # most true pairs do.
    assert same["m"] > 0.4 and same["u"] < 1e-2
    assert common["m"] > common["u"]
    assert different["m"] < 0.2 < different["u"]
    assert "email" in training.level_table(model)
    # max_weight caps the agreement weight when training, as the household's cap does.
    assert project.definition.weight_caps == {"household": 6.0, "email": 9.0}
    # (uncapped, sampling put u near 1e-4: about 12 bits)
    assert same["m"] / same["u"] == pytest.approx(2 ** 9)
    # The blocking key the project asked for exists and reached pairs.
    reg = Register.open(project.register, read_only=True)
    try:
        ((n,),) = reg.cursor().execute(
            "SELECT count(*) FROM records WHERE extra LIKE '%mail.example%'").fetchall()
    finally:
        reg.close()
    assert n > 1000
    assert model.metadata["sessions"]  # trained by the household-safe EM sessions
    assert "x_email" in project.definition.blocking_keys


@pytest.fixture(scope="module")
def server(batch: Path) -> Iterator[tuple[grpc.Channel, object]]:
    from linkage.realtime.core import Realtime, RealtimeOptions
    from linkage.service.server import create_server

    core = Realtime.open(load_project(batch / "project.yaml"),
                         options=RealtimeOptions(enrol_wait=1.0))
    srv, port = create_server(core, port=0)
    srv.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield channel, core
    finally:
        channel.close()
        srv.stop(None).wait()
        core.close()


def _resolve(channel: grpc.Channel, email: str | None) -> list:
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    api = pb_grpc.LinkageServiceStub(channel)
    person = pb.PersonDetails(name=pb.Name(given_name="Zeinabou", surname="Kanoute"),
                              sex=pb.SEX_FEMALE, extra={"email": email} if email else {})
    return list(api.Resolve(pb.ResolveRequest(person=person, max_candidates=5,
                                              min_match_probability=0.0), timeout=10).candidates)


def test_resolve_is_separated_by_the_extra_field_alone(server: tuple) -> None:
    channel, core = server
    index = core.index
    pa_, pb_ = index.person_of("cash_transfer:XF-A"), index.person_of("cash_transfer:XF-B")
    assert pa_ and pb_ and pa_ != pb_, "the batch kept the two namesakes apart"
    plain = {c.person_id: c.match_probability for c in _resolve(channel, None)}
    assert plain[pa_] == pytest.approx(plain[pb_])  # the built-in fields cannot tell

    for mine, other, email in ((pa_, pb_, TWIN_A["email"]), (pb_, pa_, TWIN_B["email"])):
        cands = _resolve(channel, email.upper())  # standardised as ingest does
        by_person = {c.person_id: c for c in cands}
        assert cands[0].person_id == mine
        assert by_person[mine].match_probability > by_person[other].match_probability
        ev = {e.comparison: e for e in by_person[mine].evidence}
        assert ev["email"].level_label == "same tokens" and ev["email"].match_weight > 5
        ev_other = {e.comparison: e for e in by_person[other].evidence}
        assert ev_other["email"].level_label == "different" and ev_other["email"].match_weight < 0
    # One address of two in common is the "a token in common" level.
    cands = _resolve(channel, f"{TWIN_A['email']}, someone@else.example")
    ev = {e.comparison: e for e in cands[0].evidence}
    assert cands[0].person_id == pa_ and ev["email"].level_label == "a token in common"


def test_undeclared_or_unreadable_extra_is_invalid_argument(server: tuple) -> None:
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    channel, _ = server
    api = pb_grpc.LinkageServiceStub(channel)
    person = pb.PersonDetails(name=pb.Name(given_name="Awa"), extra={"shoe_size": "42"})
    with pytest.raises(grpc.RpcError) as err:
        api.Resolve(pb.ResolveRequest(person=person), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "person.extra.shoe_size" in err.value.details()


def test_explain_and_review_evidence_show_the_extra_field(batch: Path, server: tuple) -> None:
    from linkage.service.v1 import linkage_pb2 as pb
    from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

    channel, core = server
    review = pb_grpc.ReviewServiceStub(channel)
    ex = review.ExplainPair(pb.ExplainPairRequest(
        record_a=pb.RecordRef(source="cash_transfer", record_key="XF-A"),
        record_b=pb.RecordRef(source="cash_transfer", record_key="XF-B")), timeout=10)
    step = {s.comparison: s for s in ex.steps}["email"]
    assert step.level_label == "different" and step.match_weight < 0
    assert "x_email" not in ex.shared_blocking_keys  # different addresses

    from linkage.review.evidence import record_views

    views = record_views(core.register.cursor(), ["cash_transfer:XF-A"])  # the server's
    assert views[0].standardised["x_email"] == TWIN_A["email"]
    assert views[0].raw["email"] == TWIN_A["email"]  # the raw value is kept as read


def test_a_model_trained_with_extra_fields_refuses_other_ones(batch: Path) -> None:
    project = load_project(batch / "project.yaml")
    model = Model.load(project.model)  # loads alone: it carries its extra fields
    other = Definition((ExtraField("email", "exact"),))
    with pytest.raises(ModelError, match=r"trained with extra fields email \(tokens\), the "
                                         r"project declares email \(exact\)"):
        model.check_project(other)
    with pytest.raises(ModelError, match="the project declares none"):
        model.check_project(BUILTIN)
    # The batch refuses it too, naming the file.
    _write_project(batch, [{"name": "email", "kind": "exact"}])
    try:
        with pytest.raises(Exception, match="model.json.*trained with extra fields"):
            run(load_project(batch / "project.yaml"), progress=lambda _: None)
    finally:
        _write_project(batch, EXTRA_FIELDS)


def test_without_extra_fields_the_definition_and_shipped_models_are_unchanged() -> None:
    assert BUILTIN.sha256 == definition_sha256()
    assert BUILTIN.comparisons == COMPARISONS
    assert settings_dict() == settings_dict(definition=BUILTIN)
    for path in sorted(SHIPPED_MODELS_DIR.glob("*.json")):
        model = Model.load(path)
        model.check_project(BUILTIN, str(path))
        assert model.extra == () and "extra_fields" not in model.to_json()
    assert Definition((ExtraField("email", "tokens"),)).sha256 != definition_sha256()


# ----------------------------------------------------------------------------- config


def _source_project(tmp_path: Path, extra: object, columns: dict, derive: dict | None = None,
                    rows: list[dict] | None = None) -> Path:
    (tmp_path / "data").mkdir(exist_ok=True)
    header = ["id", "prenom", "nom", "code_village", "profession"]
    with (tmp_path / "data" / "roster.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, header)
        w.writeheader()
        w.writerows(rows or [])
    src = {"name": "roster", "kind": "programme", "path": "data/roster.csv", "format": "csv",
           "record_key": "id", "columns": {"given_name": "prenom", "family_name": "nom",
                                           **columns}}
    if derive is not None:
        src["derive"] = derive
    (tmp_path / "roster.yaml").write_text(yaml.safe_dump(src), encoding="utf-8")
    project = {"name": "t", "register": "register.duckdb", "sources": ["roster.yaml"]}
    if extra is not None:
        project["extra_fields"] = extra
    (tmp_path / "project.yaml").write_text(yaml.safe_dump(project), encoding="utf-8")
    return tmp_path / "project.yaml"


@pytest.mark.parametrize(("extra", "columns", "derive", "file", "key", "words"), [
    ([{"name": "job", "kind": "fuzzzy"}], {}, None, "project.yaml", "extra_fields[0].kind",
     "is not one of exact"),
    ([{"name": "job"}], {}, None, "project.yaml", "extra_fields[0].kind", "required"),
    ([{"name": "Job", "kind": "exact"}], {}, None, "project.yaml", "extra_fields[0].name",
     "lower-case"),
    ([{"name": "sex", "kind": "exact"}], {}, None, "project.yaml", "extra_fields[0].name",
     "built-in"),
    ([{"name": "job", "kind": "exact"}, {"name": "job", "kind": "name"}], {}, None,
     "project.yaml", "extra_fields[1].name", "declared twice"),
    ([{"name": "size", "kind": "numeric"}], {}, None, "project.yaml",
     "extra_fields[0].tolerances", "required with kind numeric"),
    ([{"name": "size", "kind": "numeric", "tolerances": [5, 1]}], {}, None, "project.yaml",
     "extra_fields[0].tolerances", "smallest first"),
    ([{"name": "job", "kind": "exact", "thresholds": [0.9]}], {}, None, "project.yaml",
     "extra_fields[0].thresholds", "not an option of kind exact"),
    ([{"name": "job", "kind": "exact", "block": "mother"}], {}, None, "project.yaml",
     "extra_fields[0].block", "expected true, false, or one or a list of"),
    ([{"name": "job", "kind": "exact", "block": "extra.street"}], {}, None, "project.yaml",
     "extra_fields[0].block", "'extra.street' names no other extra field"),
    ([{"name": "job", "kind": "exact", "block": "extra.job"}], {}, None, "project.yaml",
     "extra_fields[0].block", "names no other extra field"),
    ([{"name": "pc", "kind": "code", "prefixes": [0]}], {}, None, "project.yaml",
     "extra_fields[0].prefixes", "whole numbers of at least 1"),
    ([{"name": "pc", "kind": "code", "max_weight": "high"}], {}, None, "project.yaml",
     "extra_fields[0].max_weight", "expected a number between 0.0 and 40.0"),
    ({"name": "job"}, {}, None, "project.yaml", "extra_fields", "expected a list"),
    ([], {"extra.job": "profession"}, None, "roster.yaml", "columns.extra.job",
     "not declared in the project's extra_fields"),
    ([], {}, {"commune": {"from": "code_village", "regex": "(unclosed"}}, "roster.yaml",
     "derive.commune.regex", "not a regular expression"),
    ([], {}, {"commune": {"from": "code_village", "regex": "^(a)-b$", "group": 2}},
     "roster.yaml", "derive.commune.group", "1 group"),
    ([], {"commune": "code_village"}, {"commune": {"from": "code_village", "regex": "(x)"}},
     "roster.yaml", "derive.commune", "also mapped in columns.commune"),
    ([], {}, {"communes": {"from": "code_village", "regex": "(x)"}}, "roster.yaml",
     "derive.communes", "unknown canonical field"),
    ([], {}, {"commune": {"regex": "(x)"}}, "roster.yaml", "derive.commune.from", "required"),
])
def test_config_errors_name_file_and_key(tmp_path: Path, extra: object, columns: dict,
                                         derive: dict | None, file: str, key: str,
                                         words: str) -> None:
    path = _source_project(tmp_path, extra, columns, derive)
    with pytest.raises(ConfigError) as err:
        load_project(path)
    assert str(err.value).startswith(f"{tmp_path / file}: {key}: "), str(err.value)
    assert words in str(err.value)


def test_a_derived_column_and_extra_values_are_standardised_with_warnings(tmp_path: Path
                                                                          ) -> None:
    """A village code embedding its commune code gives the commune; an extra field's bad
    value is blanked with a field warning, the record kept, the raw value stored."""
    rows = [{"id": "1", "prenom": "Awa", "nom": "Diarra", "code_village": "ML-C12-V03",
             "profession": "Cultivatrice"},
            {"id": "2", "prenom": "Awa", "nom": "Diarra", "code_village": "V03",
             "profession": "12x"},
            {"id": "3", "prenom": "Awa", "nom": "Diarra", "code_village": "",
             "profession": ""}]
    path = _source_project(
        tmp_path, [{"name": "job", "kind": "exact", "term_frequencies": True},
                   {"name": "years", "kind": "numeric", "tolerances": [1]},
                   {"name": "village_code", "kind": "code", "separator": "-",
                    "prefixes": [2, 1], "block": "family_name"}],
        {"village": "code_village", "extra.job": "profession", "extra.years": "profession",
         "extra.village_code": "code_village"},
        {"commune": {"from": "code_village", "regex": r"^(\w+-C\d+)-V\d+$"}}, rows)
    project = load_project(path)
    assert project.definition.blocking_keys["x_village_code_family_name"] == (
        "x_village_code", "family_key")
    # block with another extra field, declared before or after this one
    path = _source_project(
        tmp_path, [{"name": "job", "kind": "exact", "block": ["extra.street", "birth_year"]},
                   {"name": "street", "kind": "fuzzy", "block": "extra.job"}], {})
    keys = load_project(path).definition.blocking_keys
    assert keys["x_job_street"] == ("x_job", "x_street")
    assert keys["x_street_job"] == ("x_street", "x_job")
    assert keys["x_job_birth_year"] == ("x_job", "birth_year")
    path = _source_project(
        tmp_path, [{"name": "job", "kind": "exact", "term_frequencies": True},
                   {"name": "years", "kind": "numeric", "tolerances": [1]},
                   {"name": "village_code", "kind": "code", "separator": "-",
                    "prefixes": [2, 1], "block": "family_name"}],
        {"village": "code_village", "extra.job": "profession", "extra.years": "profession",
         "extra.village_code": "code_village"},
        {"commune": {"from": "code_village", "regex": r"^(\w+-C\d+)-V\d+$"}}, rows)
    project = load_project(path)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            report = ingest_source(cur, project.sources[0])
            got = {r[0]: r[1:] for r in cur.execute(
                "SELECT record_key, commune, village, extra FROM records").fetchall()}
            warned = cur.execute("SELECT record_key, field, source_column, raw_value, reason "
                                 "FROM field_warnings ORDER BY record_key, field").fetchall()
    finally:
        reg.close()
    assert report.added == 3 and report.rejected == 0
    import json

    assert got["1"][0] == "ml c12" and got["1"][1] == "ml c12 v03"
    assert json.loads(got["1"][2]) == {"x_job": "cultivatrice", "x_village_code": "ml-c12-v03",
                                       "x_village_code__p1": "ml",
                                       "x_village_code__p2": "ml-c12"}
    assert got["2"][0] is None  # "V03" embeds no commune
    assert json.loads(got["2"][2])["x_job"] == "12x"  # an exact field takes any text
    assert got["3"] == (None, None, None)
    assert warned == [
        ("1", "extra.years", "profession", "Cultivatrice", "not a number"),
        ("2", "commune", "code_village", "V03", "does not match the derive regex"),
        ("2", "extra.years", "profession", "12x", "not a number")]


def test_the_readme_examples_load_and_derive(tmp_path: Path) -> None:
    """README's extra-field and derived-column YAML, as a user would copy it."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = text[text.index("**Extra fields: any column"):text.index("**Field warnings.**")]
    blocks = [yaml.safe_load(b.split("```", 1)[0]) for b in section.split("```yaml")[1:]]
    project_doc, source_doc, derive_doc = blocks
    columns = {"given_name": "prenom", **source_doc["columns"], **derive_doc["columns"]}
    (tmp_path / "data").mkdir()
    with (tmp_path / "data" / "roster.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *dict.fromkeys(columns.values())])
        w.writerow(["1", "Awa", "awa@x.org; a.d@y.org", "Tailleur", "TQ13 8DF", "ML-C12-V03"])
    (tmp_path / "roster.yaml").write_text(yaml.safe_dump({
        "name": "roster", "kind": "programme", "path": "data/roster.csv", "format": "csv",
        "record_key": "id", "columns": columns, "derive": derive_doc["derive"]}),
        encoding="utf-8")
    (tmp_path / "project.yaml").write_text(yaml.safe_dump({
        "name": "readme", "sources": ["roster.yaml"], **project_doc}), encoding="utf-8")
    project = load_project(tmp_path / "project.yaml")
    assert [f.name for f in project.extra_fields] == ["email", "occupation", "postcode"]
    labels = [lvl.label for lvl in project.definition.comparison("postcode").levels]
    assert labels == ["postcode missing on either side", "exact", "same first part",
                      "different"]
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            ingest_source(cur, project.sources[0])
            commune, extra = cur.execute("SELECT commune, extra FROM records").fetchall()[0]
    finally:
        reg.close()
    import json

    assert commune == "ml c12"
    assert json.loads(extra) == {"x_email": "a.d@y.org awa@x.org", "x_occupation": "tailleur",
                                 "x_postcode": "tq13 8df", "x_postcode__p1": "tq13"}


def test_declaring_an_extra_field_rereads_unchanged_files(tmp_path: Path) -> None:
    rows = [{"id": "1", "prenom": "Awa", "nom": "Diarra", "code_village": "ML-C12-V03",
             "profession": "Tailleur"}]
    path = _source_project(tmp_path, None, {}, None, rows)
    project = load_project(path)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            assert ingest_source(cur, project.sources[0]).added == 1
            assert ingest_source(cur, project.sources[0]).skipped  # same files, same reading
        _source_project(tmp_path, [{"name": "job", "kind": "exact"}],
                        {"extra.job": "profession"}, None, rows)
        project = load_project(path)
        with reg.transaction() as cur:
            report = ingest_source(cur, project.sources[0])
            assert not report.skipped and report.updated == 1
            assert cur.execute("SELECT extra FROM records").fetchall() == [
                ('{"x_job": "tailleur"}',)]
            assert ingest_source(cur, project.sources[0]).skipped
    finally:
        reg.close()
