"""The register encrypted at rest (DuckDB database encryption, key from a file or an
environment variable named in the project file): written by a run, served, read while
served, backed up and restored, and unreadable without the key. Real processes and a real
DuckDB file throughout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from linkage.batch.pipeline import run
from linkage.config import load_project
from linkage.errors import ConfigError
from linkage.matching.model import SHIPPED_MODELS_DIR
from linkage.register.database import Register
from linkage.register.snapshot import secret_path, snapshot_path
from linkage.service.v1 import linkage_pb2 as pb
from linkage.synthetic.generate import generate
from tests.test_operations import Served, _wait_for

ROOT = Path(__file__).resolve().parents[1]
KEY = "correct-horse-battery-staple-4d1b"  # what the key file holds
ENV_KEY = "LINKAGE_TEST_REGISTER_KEY"


def linkage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "linkage", *args], capture_output=True,
                          text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, PYTHONUNBUFFERED="1", **(env or {})))


def _names(out: Path) -> list[str]:
    """Family names of the register (what must not be readable in its files), read with
    the key."""
    reg = Register.of(load_project(out / "project.yaml"), read_only=True)
    try:
        cur = reg.cursor()
        rows = cur.execute("SELECT DISTINCT family_std FROM records WHERE length("
                           "family_std) >= 6").fetchall()
        cur.close()
    finally:
        reg.close()
    return sorted(r[0] for r in rows)


def _assert_unreadable(path: Path, names: list[str]) -> None:
    with pytest.raises(duckdb.Error, match="encrypted"):
        duckdb.connect(str(path), read_only=True)
    data = path.read_bytes()
    found = [n for n in names if n.encode("utf-8") in data]
    assert not found, f"{len(found)} names in plain bytes of {path.name}"


@pytest.fixture(scope="module")
def encrypted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("enc")
    generate(persons=200, profile="sahel", seed=5, out=out,
             model=SHIPPED_MODELS_DIR / "sahel.json")
    (out / "register.key").write_text(KEY + "\n", encoding="utf-8")
    os.chmod(out / "register.key", 0o600)
    with (out / "project.yaml").open("a", encoding="utf-8") as fh:
        fh.write("serve: {snapshot_seconds: 1}\n"
                 "encryption: {key_file: register.key, builtin_crypto: true}\n")
    run(load_project(out / "project.yaml"), progress=lambda _: None)
    return out


def test_a_plaintext_copy_shows_the_names(encrypted: Path, tmp_path: Path) -> None:
    """The byte scans below would prove nothing if names were not stored as plain bytes in
    an unencrypted file: the same register copied without the key shows them."""
    names = _names(encrypted)
    assert len(names) > 20
    con = duckdb.connect()
    con.execute("ATTACH ? AS enc (ENCRYPTION_KEY ?, READ_ONLY)",
                [str(encrypted / "register.duckdb"), KEY])
    con.execute(f"ATTACH '{tmp_path / 'plain.duckdb'}' AS plain")
    con.execute("COPY FROM DATABASE enc TO plain")
    con.close()
    data = (tmp_path / "plain.duckdb").read_bytes()
    assert sum(n.encode("utf-8") in data for n in names) > len(names) // 2


def test_a_run_writes_an_encrypted_register(encrypted: Path) -> None:
    register = encrypted / "register.duckdb"
    _assert_unreadable(register, _names(encrypted))
    reg = Register.of(load_project(encrypted / "project.yaml"), read_only=True)
    try:
        cur = reg.cursor()
        (n,) = cur.execute("SELECT count(*) FROM persons WHERE status = 'live'").fetchone()
        cur.close()
    finally:
        reg.close()
    assert n > 100


def test_served_backed_up_and_restored_encrypted(encrypted: Path, tmp_path: Path) -> None:
    project = encrypted / "project.yaml"
    register = encrypted / "register.duckdb"
    names = _names(encrypted)
    server = Served(project)
    try:
        got = server.api.Enrol(pb.EnrolRequest(
            source="cash_transfer", record_key="ENC-1",
            person=pb.PersonDetails(name=pb.Name(given_name="Kadidia", surname="Zerbokouma"),
                                    sex=pb.SEX_FEMALE,
                                    birth_date=pb.BirthDate(year=1990, month=3, day=14))),
            timeout=20)
        assert got.person_id.startswith("P-")
        _wait_for(secret_path(register))
        _wait_for(snapshot_path(register))
        time.sleep(2.0)  # the snapshot after the enrolment
        # The snapshot readers get is encrypted too, and the CLI reads it with the key.
        _assert_unreadable(snapshot_path(register), [*names, "Zerbokouma"])
        summary = linkage("summary", "-p", str(project))
        assert summary.returncode == 0 and "reading its snapshot" in summary.stderr, \
            summary.stderr
        sql = linkage("sql", "-p", str(project), "SELECT count(*) FROM records "
                      "WHERE record_key = 'ENC-1'")
        assert sql.returncode == 0 and "1" in sql.stdout, sql.stderr
        made = linkage("backup", "-p", str(project), "-o", str(tmp_path / "backup.duckdb"))
        assert made.returncode == 0 and "served" in made.stdout, made.stderr
    finally:
        log = server.stop()
    assert KEY not in log
    backup = tmp_path / "backup.duckdb"
    _assert_unreadable(backup, [*names, "Zerbokouma"])
    # Restored into a fresh directory whose project names the key by environment variable.
    fresh = tmp_path / "fresh"
    shutil.copytree(encrypted, fresh, ignore=shutil.ignore_patterns("register*", ".register*"))
    text = (fresh / "project.yaml").read_text(encoding="utf-8").replace(
        "key_file: register.key", f"key_env: {ENV_KEY}")
    (fresh / "project.yaml").write_text(text, encoding="utf-8")
    missing = linkage("restore", "-p", str(fresh / "project.yaml"), str(backup))
    assert missing.returncode == 2 and f"encryption.key_env: the environment variable " \
        f"{ENV_KEY} is not set" in missing.stderr, missing.stderr
    wrong = linkage("restore", "-p", str(fresh / "project.yaml"), str(backup),
                    env={ENV_KEY: "not-the-key"})
    assert wrong.returncode == 2 and "the key does not open" in wrong.stderr, wrong.stderr
    assert "not-the-key" not in wrong.stderr + wrong.stdout
    restored = linkage("restore", "-p", str(fresh / "project.yaml"), str(backup),
                       env={ENV_KEY: KEY})
    assert restored.returncode == 0, restored.stderr
    _assert_unreadable(fresh / "register.duckdb", [*names, "Zerbokouma"])
    export = linkage("export", "-p", str(fresh / "project.yaml"), "-o",
                     str(tmp_path / "map.csv"), env={ENV_KEY: KEY})
    assert export.returncode == 0, export.stderr
    assert "ENC-1" in (tmp_path / "map.csv").read_text(encoding="utf-8")


def test_errors_name_the_key_and_never_show_it(encrypted: Path, tmp_path: Path) -> None:
    register = encrypted / "register.duckdb"
    # A project without the key: the file says it is encrypted.
    plain = tmp_path / "plain"
    shutil.copytree(encrypted, plain, ignore=shutil.ignore_patterns("register*", ".register*"))
    text = (plain / "project.yaml").read_text(encoding="utf-8")
    (plain / "project.yaml").write_text(
        text.replace("encryption: {key_file: register.key, builtin_crypto: true}\n", "")
        .replace("register: register.duckdb", f"register: {register}"), encoding="utf-8")
    res = linkage("summary", "-p", str(plain / "project.yaml"))
    assert res.returncode == 2 and "encrypted" in res.stderr, res.stderr
    # A wrong key in the file.
    (plain / "register.key").write_text("another-key-entirely", encoding="utf-8")
    wrong = load_project(encrypted / "project.yaml")
    wrong = type(wrong)(**{**wrong.__dict__, "encryption": type(wrong.encryption)(
        project=wrong.path, key_file=plain / "register.key")})
    with pytest.raises(ConfigError, match="the key does not open") as exc:
        Register.of(wrong, read_only=True)
    assert "another-key-entirely" not in str(exc.value) and KEY not in str(exc.value)
    # Writing without OpenSSL and without builtin_crypto: refused, naming the setting.
    strict = type(wrong)(**{**wrong.__dict__, "encryption": type(wrong.encryption)(
        project=wrong.path, key_file=encrypted / "register.key")})
    with pytest.raises(ConfigError, match="encryption.builtin_crypto"):
        Register.open(tmp_path / "new.duckdb", encryption=strict.encryption)
