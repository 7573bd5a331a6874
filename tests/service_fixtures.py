"""Fixtures for the gRPC service tests: a small register, a real server, stubs.

The register is built without the batch's Splink stage so it takes about a second:
two CSV sources are ingested with the real :func:`linkage.ingest.read.ingest_source`, the
true person grouping is published with :func:`linkage.ids.publish.publish_clusters`, and
the model is :func:`linkage.matching.model.build_settings` with hand-set m/u values. The same
project can then be run through :func:`linkage.batch.pipeline.run` (the batch-control tests
do), because its model file exists and its sources are real files.

Import the fixtures into a test module with ``from tests.service_fixtures import *``
(names are prefixed ``svc_`` to stay clear of other conftest fixtures).
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from benchmarks.bench_resolve import hand_model as bench_hand_model
from linkage.config import ProjectConfig, load_project
from linkage.ids.publish import publish_clusters
from linkage.ingest.read import ingest_source
from linkage.matching.model import Model
from linkage.register.database import Register
from linkage.register.store import add_source


def publish_truth(cur, clusters: dict[str, str], *, run_id: str, now: dt.datetime) -> None:
    """Give each true cluster a person ID, with created / record_added events.

    The batch's own publishing (:func:`linkage.ids.publish.publish_clusters`, through
    :mod:`linkage.register.store`), fed the truth instead of Splink's clusters.
    """
    publish_clusters(cur, clusters, run_id=run_id, now=now)


GIVEN_M = ["Mamadou", "Moussa", "Ousmane", "Amadou", "Ibrahim", "Seydou", "Bakary", "Lassana",
           "Boubacar", "Adama", "Souleymane", "Modibo"]
GIVEN_F = ["Fatoumata", "Aminata", "Mariam", "Awa", "Kadiatou", "Oumou", "Hawa", "Salimata",
           "Assitan", "Djeneba", "Rokia", "Nana"]
FAMILY = ["Traore", "Coulibaly", "Diarra", "Keita", "Kone", "Diallo", "Sangare", "Togola",
          "Dembele", "Sidibe", "Camara", "Doumbia"]
VARIANT = {"Coulibaly": "Koulibaly", "Diarra": "Jara", "Traore": "TRAORÉ", "Keita": "Keïta"}
PLACES = [("Sikasso", "Kadiolo", "Misseni"), ("Sikasso", "Kadiolo", "Fourou"),
          ("Sikasso", "Koutiala", "Zanfigue"), ("Segou", "Bla", "Touna"),
          ("Segou", "Bla", "Diaramana"), ("Kayes", "Kita", "Sirakoro")]
HEADER = ["id", "prenom", "nom", "sexe", "date_naissance", "nin", "telephone", "region",
          "commune", "village"]


@dataclass
class SmallRegister:
    """A built project: its config, the truth, and a few handy records."""

    project: ProjectConfig
    root: Path
    truth: dict[str, int]  # record uid -> true person number
    rows: dict[str, dict[str, str]]  # record uid -> raw CSV row


def hand_model(version: str = "test-model") -> Model:
    """Plausible hand-set m and u on every level (the benchmarks' one), prior 1e-3."""
    return bench_hand_model(version, prior=1e-3)


def _person_rows(rng: random.Random, n: int) -> list[dict[str, str]]:
    people = []
    for i in range(n):
        sex = rng.choice("MF")
        given = rng.choice(GIVEN_M if sex == "M" else GIVEN_F)
        if rng.random() < 0.15:
            given += " " + rng.choice(GIVEN_M if sex == "M" else GIVEN_F)
        region, commune, village = rng.choice(PLACES)
        born = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(60 * 365))
        people.append({
            "n": str(i), "prenom": given, "nom": rng.choice(FAMILY), "sexe": sex,
            "born": born.isoformat(),
            "nin": f"ML{rng.randrange(10**9):09d}" if rng.random() < 0.6 else "",
            "telephone": f"7{rng.randrange(10**7):07d}" if rng.random() < 0.7 else "",
            "region": region, "commune": commune, "village": village})
    return people


def build_small_register(root: Path, *, persons: int = 160, seed: int = 7) -> SmallRegister:
    """Write a two-source project under ``root`` and build its register (about 1 s)."""
    rng = random.Random(seed)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "sources").mkdir(exist_ok=True)
    people = _person_rows(rng, persons)
    truth: dict[str, int] = {}
    rows: dict[str, dict[str, str]] = {}
    files = {"civil_registry": [], "cash_transfer": []}
    for i, p in enumerate(people):
        y, m, d = p["born"].split("-")
        cr = {"id": f"CR{i:05d}", "prenom": p["prenom"], "nom": p["nom"], "sexe": p["sexe"],
              "date_naissance": f"{d}/{m}/{y}", "nin": p["nin"], "telephone": p["telephone"],
              "region": p["region"], "commune": p["commune"], "village": p["village"]}
        files["civil_registry"].append(cr)
        truth[f"civil_registry:{cr['id']}"] = i
        rows[f"civil_registry:{cr['id']}"] = cr
        if i % 5 < 2:  # 40 % are also in the cash transfer roster, spelt differently
            ct = dict(cr, id=f"CT{i:05d}", nom=VARIANT.get(p["nom"], p["nom"]).upper(),
                      date_naissance=f"00/00/{y}" if i % 2 else cr["date_naissance"],
                      nin=p["nin"] if i % 3 == 0 else "")
            files["cash_transfer"].append(ct)
            truth[f"cash_transfer:{ct['id']}"] = i
            rows[f"cash_transfer:{ct['id']}"] = ct
    for name, recs in files.items():
        with (root / "data" / f"{name}.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, HEADER)
            w.writeheader()
            w.writerows(recs)
        kind = "civil_registry" if name == "civil_registry" else "programme"
        (root / "sources" / f"{name}.yaml").write_text(f"""\
name: {name}
kind: {kind}
programme: {name.replace('_', ' ').title()}
path: ../data/{name}.csv
format: csv
record_key: id
columns:
  given_name: prenom
  family_name: nom
  sex: sexe
  birth_date: date_naissance
  national_id: nin
  phone: telephone
  region: region
  commune: commune
  village: village
""", encoding="utf-8")
    (root / "project.yaml").write_text("""\
name: svc-test
register: data/register.duckdb
model: models/model.json
country_code: "223"
thresholds: {match: 0.95, review: 0.3}
max_block_size: 200
sources:
  - sources/civil_registry.yaml
  - sources/cash_transfer.yaml
""", encoding="utf-8")
    project = load_project(root / "project.yaml")
    hand_model().save(project.model)
    now = dt.datetime(2026, 11, 23, 12, 0, 0)
    reg = Register.open(project.register)
    try:
        with reg.transaction() as cur:
            for src in project.sources:
                ingest_source(cur, src, now=now)
            add_source(cur, "mis_api", "programme", "Nutrition MIS")
            live = [u for (u,) in cur.execute(
                "SELECT uid FROM records WHERE status = 'active'").fetchall()]
            clusters = {u: str(truth[u]) for u in live}
            publish_truth(cur, clusters, run_id="run-fixture", now=now)
    finally:
        reg.close()
    return SmallRegister(project, root, truth, rows)


@pytest.fixture(scope="module")
def svc_register(tmp_path_factory: pytest.TempPathFactory) -> SmallRegister:
    """A fresh small register per test module."""
    return build_small_register(tmp_path_factory.mktemp("svc"))


@dataclass
class RunningServer:
    core: object
    server: grpc.Server
    port: int
    channel: grpc.Channel
    small: SmallRegister


@pytest.fixture(scope="module")
def svc_server(svc_register: SmallRegister) -> Iterator[RunningServer]:
    """The real server on a free loopback port, with a channel to it."""
    from linkage.realtime.core import Realtime, RealtimeOptions
    from linkage.service.server import create_server

    core = Realtime.open(svc_register.project, options=RealtimeOptions(enrol_wait=1.0))
    server, port = create_server(core, port=0, max_receive_message_bytes=256 * 1024)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    try:
        yield RunningServer(core, server, port, channel, svc_register)
    finally:
        channel.close()
        server.stop(None).wait()
        core.close()


def slow_batch(hold: float):  # noqa: ANN201
    """A stand-in batch runner: one long write transaction over tables a run rewrites.

    It holds the register's write lock and a real DuckDB write transaction for
    ``hold`` seconds, so calls made meanwhile meet a batch at its longest stage.
    """

    def run(project, *, register, progress, **_kw):  # noqa: ANN001, ANN202
        progress("run-standin: register")
        with register.transaction() as cur:
            cur.execute("CREATE OR REPLACE TEMP TABLE keep AS SELECT * FROM person_records")
            cur.execute("DELETE FROM person_records")
            cur.execute("INSERT INTO person_records SELECT * FROM keep")
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('standin', 'yes')")
            progress("holding the transaction")
            time.sleep(hold)
        progress("run-standin: published")
        return SimpleNamespace(run_id="run-standin", model_version="test-model", summary={})

    return run
