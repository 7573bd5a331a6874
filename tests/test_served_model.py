"""Real time serves the model of the last published run, never another one.

A project may name a shipped model; a run that retrains saves its new model beside the
project (a shipped model is never overwritten) and publishes persons with it. Resolve and
Enrol must then score with that new model, read from the register, not with the shipped
file the project still names.
"""

from __future__ import annotations

from pathlib import Path

from service_fixtures import build_small_register

from linkage.batch import pipeline
from linkage.config import load_project
from linkage.matching.model import SHIPPED_MODELS_DIR, Model
from linkage.realtime.core import PersonInput, Realtime


def test_real_time_serves_the_retrained_model_not_the_shipped_one(tmp_path: Path) -> None:
    small = build_small_register(tmp_path, persons=1000, seed=5)
    path = small.project.path
    path.write_text(path.read_text().replace(
        "model: models/model.json", f"model: {SHIPPED_MODELS_DIR / 'sahel.json'}"))
    project = load_project(path)
    shipped = Model.load(project.model)

    result = pipeline.run(project, retrain=True, progress=lambda _: None)
    assert result.model_version != shipped.version  # the run trained and used a new model

    core = Realtime.open(project)
    try:
        assert core.model_version == result.model_version
        assert core.index.model.settings["comparisons"] != shipped.settings["comparisons"]
        # and it scores with it: a known record's details find its own person
        uid, row = next(iter(small.rows.items()))
        found = core.resolve(PersonInput({"given_name": row["prenom"], "family_name": row["nom"],
                                          "sex": row["sexe"],
                                          "birth_date": "-".join(
                                              reversed(row["date_naissance"].split("/")))}))
        assert found.candidates
        assert core.person_by_record(*uid.split(":")).person_id in {
            c.person_id for c in found.candidates}
    finally:
        core.close()

    # a file changed behind the register's back does not change what is served
    saved = next((path.parent / "models").glob(f"{result.model_version}.json"))
    saved.write_text(shipped.to_json())
    core = Realtime.open(project)
    try:
        assert core.model_version == result.model_version
    finally:
        core.close()
