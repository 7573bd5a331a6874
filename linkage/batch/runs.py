"""Batch control for a long-lived process: one :func:`linkage.batch.pipeline.run` at a time.

The run goes in a background thread on the process's own
:class:`~linkage.register.database.Register` (DuckDB allows one writing process per
file). It holds the register's write lock for
its whole transaction, so real-time enrolments queue behind it instead of conflicting;
readers keep reading the last published register (DuckDB MVCC). After the run commits,
``on_published`` (still under the lock) refreshes the in-memory index.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from linkage.config import ProjectConfig
from linkage.errors import ChangeGuardTripped, NotFound, RunInProgress
from linkage.register.database import Register

log = logging.getLogger(__name__)

RUNNING, PUBLISHED, FAILED = "running", "published", "failed"


@dataclass
class RunInfo:
    """What the controller knows of one run."""

    run_id: str
    state: str = RUNNING
    register_run_id: str | None = None
    started_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))
    finished_at: dt.datetime | None = None
    model_version: str | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)


class BatchController:
    """Starts runs in the background, one at a time, and keeps their progress.

    Args:
        project: the project configuration.
        register: the process's register.
        write_lock: the register's write lock (shared with the enrolment writer).
        on_published: called after a run published, with the write lock held.
        runner: the batch function (default :func:`linkage.batch.pipeline.run`).
    """

    def __init__(self, project: ProjectConfig, register: Register, write_lock: threading.Lock,
                 on_published: Callable[[], None], runner: Callable[..., Any] | None = None):
        self.project = project
        self.register = register
        self.write_lock = write_lock
        self.on_published = on_published
        self.runner = runner
        self.runs: dict[str, RunInfo] = {}
        self.last: str | None = None
        self._cond = threading.Condition()

    @property
    def running(self) -> bool:
        with self._cond:
            return self.last is not None and self.runs[self.last].state == RUNNING

    def start(self, *, force_ingest: bool = False, retrain: bool = False,
              accept_changes: bool = False) -> RunInfo:
        """Start a run; :class:`RunInProgress` when one is going. ``accept_changes``
        publishes even when the change guards would stop it."""
        with self._cond:
            if self.last is not None and self.runs[self.last].state == RUNNING:
                raise RunInProgress(f"batch run {self.last} is still running")
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            info = RunInfo(run_id=f"job-{stamp}-{secrets.token_hex(3)}")
            self.runs[info.run_id] = info
            self.last = info.run_id
        threading.Thread(target=self._run, args=(info, force_ingest, retrain, accept_changes),
                         name=f"linkage-{info.run_id}", daemon=True).start()
        return info

    def get(self, run_id: str = "") -> RunInfo:
        with self._cond:
            rid = run_id or self.last
            if rid is None or rid not in self.runs:
                raise NotFound(f"run {run_id} not found" if run_id else "no run yet")
            return self.runs[rid]

    def follow(self, run_id: str = "", *, is_active: Callable[[], bool] = lambda: True,
               poll: float = 0.5) -> Iterator[tuple[int, float, str, str]]:
        """(line number, elapsed, message, state) for each progress line, old then new."""
        info = self.get(run_id)
        sent = 0
        while True:
            with self._cond:
                while sent >= len(info.lines) and info.state == RUNNING:
                    self._cond.wait(poll)
                    if not is_active():
                        return
                lines, state = info.lines[sent:], info.state
            for elapsed, msg in lines:
                yield sent, elapsed, msg, state
                sent += 1
            if state != RUNNING and sent >= len(info.lines):
                return

    def _progress(self, info: RunInfo) -> Callable[[str], None]:
        start = time.monotonic()

        def emit(message: str) -> None:
            with self._cond:
                if info.register_run_id is None and message.startswith("run-"):
                    info.register_run_id = message.split(":", 1)[0]
                info.lines.append((round(time.monotonic() - start, 3), message))
                self._cond.notify_all()

        return emit

    def _run(self, info: RunInfo, force_ingest: bool, retrain: bool,
             accept_changes: bool) -> None:
        progress = self._progress(info)
        try:
            runner = self.runner
            if runner is None:
                from linkage.batch.pipeline import run as runner
            with self.write_lock:
                progress("waiting for the register's write lock: done")
                result = runner(self.project, register=self.register, progress=progress,
                                force_ingest=force_ingest, retrain=retrain,
                                accept_changes=accept_changes)
                progress("refreshing the real-time index")
                self.on_published()
            with self._cond:
                info.state = PUBLISHED
                info.register_run_id = result.run_id
                info.model_version = result.model_version
                info.summary = result.summary
        except ChangeGuardTripped as exc:  # an answer, not a fault: no traceback
            log.warning("batch run %s stopped by the change guards: %s", info.run_id,
                        "; ".join(exc.findings))
            with self._cond:
                info.state = FAILED
                info.error = f"{exc.__class__.__name__}: {exc}"[:2000]
        except Exception as exc:
            log.exception("batch run %s failed", info.run_id)
            with self._cond:
                info.state = FAILED
                info.error = f"{exc.__class__.__name__}: {exc}"[:2000]
        finally:
            with self._cond:
                info.finished_at = dt.datetime.now(dt.UTC)
                self._cond.notify_all()
