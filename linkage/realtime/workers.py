"""Resolve scored in several processes: the serving process's index, copied by fork.

One serving process is bound by Python's GIL: with 50 clients, three quarters of the
GIL's time goes to scoring (:meth:`linkage.realtime.index.Index.resolve`, numpy over
each query's candidates), the rest to gRPC, standardising, converting and the audit
trail (issue 15, benchmarks/RESULTS.md). With ``serve.resolve_processes: N`` the
serving process keeps everything it does today (gRPC, authorisation, audit, the one
register writer, enrolment, look-ups) and hands the scoring of each Resolve to one of
``N`` scoring processes, round robin:

* **Start**: each scoring process is a ``fork`` of the serving process made right
  after its index is built, under the index's write lock: it starts with the very
  same index, at no load cost (pages are shared copy-on-write), and never opens the
  register (DuckDB lets one process hold it).
* **Kept current**: every change to the serving process's index (``add``, ``assign``,
  ``publish``, ``remove``: :attr:`Index.mirrors`) is sent, in the order made, down the
  same ordered pipe as the Resolve requests, and applied by the scoring process before
  whatever comes after it. An Enrol answers after its record is published in the
  index, so a Resolve sent after an Enrol's answer is scored with the record: **read
  your writes, with no delay** beyond the pipe's. A batch run's publish (or a review
  decision) rebuilds the index: new scoring processes are forked from the new one,
  and the old ones answer what they were sent, then stop.
* **Failure**: a scoring process that dies fails the calls it held with
  :class:`WorkerGone` and is left out; the serving process then scores in process
  (the answer is the same; only the throughput falls back to one process's).
* **Shutdown**: :meth:`ResolvePool.close` asks each to stop after what it was sent,
  waits ``timeout`` seconds, then kills it. A scoring process also ends when its pipe
  closes (the serving process died), and ignores SIGINT (a terminal's Ctrl-C is the
  serving process's to handle).

The golden records of the candidates are added by the serving process from its own
index (they are not copied to the scoring processes).
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
import queue
import signal
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from linkage.realtime.index import Index, Resolution, _ReadWriteLock

log = logging.getLogger(__name__)

_STOP = ("stop",)
#: Seconds a Resolve waits for its scoring process when the call set no deadline.
DEFAULT_TIMEOUT = 30.0
#: The serving process's ends of every scoring process's pipe: a new scoring process
#: closes its copies of the others', so each sees its pipe close when the serving
#: process dies.
_PARENT_ENDS: set[Any] = set()


class WorkerGone(RuntimeError):
    """A scoring process ended before answering (the caller scores in process)."""


def _serve_index(index: Index, conn: Any, parent_end: Any) -> None:
    """A scoring process: apply the index changes and answer the Resolves it is sent,
    in order, until told to stop or its pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for end in (parent_end, *_PARENT_ENDS):
        end.close()
    # Forked under the write lock of a process with other threads: a fresh lock, and
    # no mirrors (they are the serving process's pipes).
    index._lock = _ReadWriteLock()
    index.mirrors = []
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            break
        kind = msg[0]
        if kind == "resolve":
            _, rid, row, max_candidates, min_probability = msg
            try:
                res: Any = index.resolve(row, max_candidates=max_candidates,
                                         min_probability=min_probability)
                ok = True
            except Exception as exc:  # noqa: BLE001 - sent back, raised by the caller
                res, ok = exc, False
            try:
                conn.send((rid, ok, res))
            except (OSError, ValueError):
                break
        elif kind == "op":
            getattr(index, msg[1])(*msg[2], **msg[3])
        else:  # stop
            break
    os._exit(0)  # no atexit handlers: they are the serving process's


class _Worker:
    """One scoring process and the two threads that talk to it."""

    def __init__(self, index: Index, number: int):
        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe(duplex=True)
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._futures: dict[int, Future[Resolution]] = {}
        self._lock = threading.Lock()
        self.alive = True
        self.answered = 0  # Resolves this scoring process answered
        # Fork with no change half made, and follow every change from that state on.
        with index._lock.write():
            self.process = ctx.Process(target=_serve_index, args=(index, child, self._conn),
                                       name=f"linkage-resolve-{number}", daemon=True)
            self.process.start()
            index.mirrors.append(self._changed)
        child.close()
        _PARENT_ENDS.add(self._conn)
        self._index = index
        self._threads = [threading.Thread(target=self._send_loop, daemon=True,
                                          name=f"linkage-resolve-{number}-send"),
                         threading.Thread(target=self._receive_loop, daemon=True,
                                          name=f"linkage-resolve-{number}-receive")]
        for t in self._threads:
            t.start()

    def _changed(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._queue.put(("op", name, args, kwargs))

    def submit(self, rid: int, row: dict[str, Any], max_candidates: int,
               min_probability: float) -> Future[Resolution]:
        fut: Future[Resolution] = Future()
        with self._lock:
            if not self.alive:
                raise WorkerGone("scoring process ended")
            self._futures[rid] = fut
        self._queue.put(("resolve", rid, row, max_candidates, min_probability))
        return fut

    def forget(self, rid: int) -> None:
        with self._lock:
            self._futures.pop(rid, None)

    def _send_loop(self) -> None:
        while True:
            msg = self._queue.get()
            try:
                self._conn.send(msg)
            except (OSError, ValueError):
                self._gone()
                return
            if msg is _STOP:
                return

    def _receive_loop(self) -> None:
        while True:
            try:
                rid, ok, res = self._conn.recv()
            except (EOFError, OSError, ValueError):
                self._gone()
                return
            with self._lock:
                fut = self._futures.pop(rid, None)
            if fut is None:  # the caller gave up waiting
                continue
            self.answered += 1
            if ok:
                fut.set_result(res)
            else:
                fut.set_exception(res)

    def _gone(self) -> None:
        with self._lock:
            was, self.alive = self.alive, False
            pending, self._futures = list(self._futures.values()), {}
        if was:
            try:
                self._index.mirrors.remove(self._changed)
            except ValueError:
                pass
        for fut in pending:
            if not fut.done():
                fut.set_exception(WorkerGone("scoring process ended"))

    def stop(self) -> None:
        """Stop after what was sent (its changes stop being followed now)."""
        try:
            self._index.mirrors.remove(self._changed)
        except ValueError:
            pass
        self._queue.put(_STOP)

    def join(self, timeout: float) -> None:
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(1.0)
        self._gone()
        _PARENT_ENDS.discard(self._conn)
        self._conn.close()


class ResolvePool:
    """``processes`` scoring processes forked from ``index`` (see the module's text)."""

    def __init__(self, index: Index, processes: int):
        if processes < 1:
            raise ValueError("a pool needs at least one scoring process")
        self.index = index
        self._ids = itertools.count()
        self._next = itertools.count()
        self.workers = [_Worker(index, k) for k in range(processes)]
        log.info("Resolve scored in %d process(es): %s", processes,
                 ", ".join(str(w.process.pid) for w in self.workers))

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process.pid is not None]

    @property
    def answered(self) -> int:
        """Resolves answered by the scoring processes (not those scored in process)."""
        return sum(w.answered for w in self.workers)

    @property
    def live(self) -> int:
        return sum(w.alive for w in self.workers)

    def resolve(self, row: dict[str, Any], *, max_candidates: int, min_probability: float,
                timeout: float | None = None) -> Resolution:
        """Score in a scoring process; in this process when none is left.

        Raises:
            TimeoutError: no answer within ``timeout`` seconds (default
                :data:`DEFAULT_TIMEOUT`).
        """
        timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        n = len(self.workers)
        start = next(self._next)
        for k in range(n):
            w = self.workers[(start + k) % n]
            if not w.alive:
                continue
            rid = next(self._ids)
            try:
                fut = w.submit(rid, row, max_candidates, min_probability)
            except WorkerGone:
                continue
            try:
                return fut.result(timeout)
            except FutureTimeout:
                w.forget(rid)
                raise TimeoutError("no answer from the scoring process in time") from None
            except WorkerGone:
                continue
        return self.index.resolve(row, max_candidates=max_candidates,
                                  min_probability=min_probability)

    def close(self, timeout: float = 2.0) -> None:
        """Stop every scoring process: each answers what it was sent, for ``timeout``
        seconds at most (all together), then is killed."""
        for w in self.workers:
            w.stop()
        per = max(timeout / max(len(self.workers), 1), 0.1)
        for w in self.workers:
            w.join(per)


__all__ = ["ResolvePool", "WorkerGone"]
