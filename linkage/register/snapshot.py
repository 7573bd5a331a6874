"""Copies of the register: the read-only snapshot a server keeps for readers, and backups.

DuckDB lets one process hold a database file for writing and then locks every other
process out, readers too. So while ``linkage serve`` holds the register, it writes a
**snapshot** beside it (:func:`snapshot_path`, ``<register>.snapshot.duckdb``): at
start, after every publish, and every ``serve.snapshot_seconds`` when enrolments or
audit rows came in (:class:`Snapshotter`). The CLI's read commands open it when the
register is locked (they say so), and analysts query it with SQL. A snapshot is one
consistent state (one transaction's view), written to a temporary file and renamed
into place, so a reader never sees half of one. It holds everything but the ID
secret (``meta.id_secret``), which would let its reader compute future person IDs.

A **backup** (:func:`backup`) is the whole register, the ID secret and the enrolment
journal (``enrol_queue``) included. Taken by the process that holds the register, it
is the current state; while a server holds it, it is the server's last snapshot plus
the ID secret, which the server keeps in a private file beside the register
(:func:`secret_path`, mode 0600: the secret never changes once made).
:func:`restore` puts a backup in place of a register.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from linkage.errors import LinkageError, RegisterLockedError
from linkage.register import store
from linkage.register.database import Register, _quote_path, attach_encrypted, query

if TYPE_CHECKING:
    from linkage.config import EncryptionConfig

log = logging.getLogger(__name__)

SECRET_KEY = "id_secret"


class BackupError(LinkageError, RuntimeError):
    """A backup cannot be made or restored (says why; the register is unchanged)."""


def snapshot_path(register: Path) -> Path:
    return register.with_name(register.stem + ".snapshot.duckdb")


def secret_path(register: Path) -> Path:
    return register.with_name(register.stem + ".id_secret")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def copy_database(register: Register, dest: Path, *, keep_secret: bool,
                  notes: dict[str, str]) -> None:
    """Copy the whole register, in one transaction, to ``dest`` (replaced atomically).

    ``notes`` are added to the copy's ``meta`` (``snapshot_at``, ``backup_of`` ...). An
    encrypted register's copy is encrypted with the same key.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    cur = register.cursor()
    try:
        (name,) = query(cur, "SELECT current_database()")[0]
        if register.encryption is not None:
            attach_encrypted(cur, tmp, "linkage_copy", register.encryption, read_only=False)
        else:
            cur.execute(f"ATTACH {_quote_path(tmp)} AS linkage_copy")
        try:
            cur.execute("BEGIN TRANSACTION")
            try:
                quoted = '"' + name.replace('"', '""') + '"'
                cur.execute(f"COPY FROM DATABASE {quoted} TO linkage_copy")
                if not keep_secret:
                    cur.execute("DELETE FROM linkage_copy.meta WHERE key = ?", [SECRET_KEY])
                for key, value in notes.items():
                    cur.execute("INSERT OR REPLACE INTO linkage_copy.meta VALUES (?, ?)",
                                [key, value])
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        finally:
            cur.execute("DETACH linkage_copy")
    finally:
        cur.close()
    os.chmod(tmp, 0o600)
    os.replace(tmp, dest)


def write_snapshot(register: Register) -> Path:
    """The read-only snapshot of ``register`` for readers (no ID secret)."""
    path = snapshot_path(register.path)
    copy_database(register, path, keep_secret=False,
                  notes={"snapshot_at": _now().isoformat(timespec="seconds"),
                         "snapshot_of": str(register.path)})
    return path


def keep_secret_file(register: Register) -> None:
    """Write the ID secret to :func:`secret_path` (0600) when it exists, so a backup can be
    taken while this process holds the register."""
    cur = register.cursor()
    try:
        rows = query(cur, "SELECT value FROM meta WHERE key = ?", [SECRET_KEY])
    finally:
        cur.close()
    if not rows:
        return
    path = secret_path(register.path)
    if path.exists() and path.read_text(encoding="ascii").strip() == rows[0][0]:
        return
    fd = os.open(path.with_suffix(".tmp"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(rows[0][0] + "\n")
    os.replace(path.with_suffix(".tmp"), path)


class Snapshotter:
    """Keeps the snapshot of a served register fresh, from one background thread.

    ``request()`` asks for a snapshot now (at start, after a publish); ``changed()`` marks
    the register changed (an enrolment, audit rows), written within ``interval`` seconds.
    """

    def __init__(self, register: Register, interval: float):
        self.register = register
        self.interval = interval
        self._cond = threading.Condition()
        self._now = False
        self._dirty = False
        self._stop = False
        self.written = 0
        self._thread = threading.Thread(target=self._loop, name="linkage-snapshot",
                                        daemon=True)
        self._thread.start()

    def request(self) -> None:
        with self._cond:
            self._now = True
            self._cond.notify_all()

    def changed(self) -> None:
        with self._cond:
            self._dirty = True

    def close(self, timeout: float = 1.0) -> None:
        """Stop; a snapshot being written is abandoned after ``timeout`` (shutdown is
        bounded; readers keep the previous one, and the next start writes a new one)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    def wait_written(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until at least ``count`` snapshots were written (tests)."""
        with self._cond:
            return self._cond.wait_for(lambda: self.written >= count, timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._now or self._stop, self.interval)
                if self._stop:
                    return
                due = self._now or self._dirty
                self._now = self._dirty = False
            if not due:
                continue
            try:
                keep_secret_file(self.register)
                write_snapshot(self.register)
            except Exception:  # noqa: BLE001 - readers keep the previous snapshot
                log.exception("could not write the register's snapshot")
                continue
            with self._cond:
                self.written += 1
                self._cond.notify_all()


def open_for_reading(register: Path, encryption: EncryptionConfig | None = None
                     ) -> tuple[Register, str | None]:
    """The register read-only, or its snapshot when a server holds it (both with the
    project's key when it is encrypted).

    Returns:
        The open register and, for a snapshot, a note saying of when.

    Raises:
        RegisterLockedError: locked and no snapshot (a server of an older version).
    """
    try:
        return Register.open(register, read_only=True, encryption=encryption), None
    except RegisterLockedError:
        snap = snapshot_path(register)
        if not snap.exists():
            raise
    reg = Register.open(snap, read_only=True, encryption=encryption)
    cur = reg.cursor()
    try:
        rows = query(cur, "SELECT value FROM meta WHERE key = 'snapshot_at'")
    finally:
        cur.close()
    at = rows[0][0] if rows else "?"
    return reg, (f"the register is in use (linkage serve); reading its snapshot of {at} UTC "
                 f"({snap.name})")


def backup(register: Path, out: Path, encryption: EncryptionConfig | None = None) -> str:
    """Write a backup of the register at ``register`` to the file ``out``; returns a line
    saying what it holds. Works whether or not a server holds the register. The backup of
    an encrypted register is encrypted with the same key."""
    if out.exists():
        raise BackupError(f"{out} exists: choose a new file name")
    stamp = _now().isoformat(timespec="seconds")
    try:
        # writable: ATTACH needs it; nobody else has it
        reg = Register.open(register, encryption=encryption)
    except RegisterLockedError:
        return _backup_from_snapshot(register, out, stamp, encryption)
    try:
        copy_database(reg, out, keep_secret=True,
                      notes={"backup_of": str(register), "backup_at": stamp})
        n_persons, n_queued = _counts(out, encryption)
    finally:
        reg.close()
    return (f"backup of {register} at {stamp} UTC: {n_persons:,} live persons, "
            f"{n_queued:,} journaled enrolment(s), ID secret included")


def _counts(path: Path, encryption: EncryptionConfig | None) -> tuple[int, int]:
    reg = Register.open(path, read_only=True, encryption=encryption)
    cur = reg.cursor()
    try:
        (persons,) = query(cur, "SELECT count(*) FROM persons WHERE status = 'live'")[0]
        (queued,) = query(cur, "SELECT count(*) FROM enrol_queue")[0]
    finally:
        cur.close()
        reg.close()
    return persons, queued


def _backup_from_snapshot(register: Path, out: Path, stamp: str,
                          encryption: EncryptionConfig | None) -> str:
    snap, secret = snapshot_path(register), secret_path(register)
    if not snap.exists() or not secret.exists():
        raise RegisterLockedError(f"{register} is in use and its server keeps no snapshot: "
                                  "stop it, or upgrade it, to take a backup")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.copyfile(snap, tmp)  # renamed into place by the server: never half-written
    os.chmod(tmp, 0o600)
    reg = Register.open(tmp, encryption=encryption)
    con = reg.cursor()
    try:
        con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                    [SECRET_KEY, secret.read_text(encoding="ascii").strip()])
        con.execute("INSERT OR REPLACE INTO meta VALUES ('backup_of', ?), ('backup_at', ?)",
                    [str(register), stamp])
        (at,) = con.execute("SELECT value FROM meta WHERE key = 'snapshot_at'").fetchall()[0]
        con.execute("DELETE FROM meta WHERE key IN ('snapshot_at', 'snapshot_of')")
    finally:
        con.close()
        reg.close()
    os.replace(tmp, out)
    n_persons, n_queued = _counts(out, encryption)
    return (f"backup of {register} (served: its snapshot of {at} UTC): {n_persons:,} live "
            f"persons, {n_queued:,} journaled enrolment(s), ID secret included")


def restore(backup_file: Path, register: Path, *, force: bool = False, skip_ids: int = 0,
            encryption: EncryptionConfig | None = None) -> str:
    """Put ``backup_file`` in place of the register at ``register``.

    With ``encryption`` the backup must open with the project's key (a backup of an
    encrypted register is encrypted with its key).

    ``skip_ids`` moves the ID counter on: when the backup is older than the last IDs
    issued (a disaster recovery), pass more than were issued since, so that none of them
    is issued again to someone else. 0 (the default) keeps the backup's counter: the
    restored register issues exactly the IDs the original would have (a move).

    Raises:
        BackupError: not a linkage backup (no ID secret), or a register exists and
            ``force`` is not set.
        RegisterLockedError: a process holds the register.
    """
    try:
        reg = Register.open(backup_file, read_only=True, encryption=encryption)
    except (duckdb.Error, OSError) as exc:
        raise BackupError(f"{backup_file} is not a DuckDB file: {exc.__class__.__name__}"
                          ) from exc
    con = reg.cursor()
    try:
        try:
            meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        except duckdb.Error as exc:
            raise BackupError(f"{backup_file} is not a linkage register backup") from exc
    finally:
        con.close()
        reg.close()
    if SECRET_KEY not in meta:
        raise BackupError(f"{backup_file} has no ID secret (a snapshot, not a backup): "
                          "restoring it would issue different person IDs")
    if register.exists():
        if not force:
            raise BackupError(f"{register} exists: pass --force to replace it")
        # RegisterLockedError when in use
        Register.open(register, read_only=True, encryption=encryption).close()
    register.parent.mkdir(parents=True, exist_ok=True)
    tmp = register.with_name(f".{register.name}.restore-{os.getpid()}")
    shutil.copyfile(backup_file, tmp)
    os.chmod(tmp, 0o600)
    register.with_name(register.name + ".wal").unlink(missing_ok=True)
    os.replace(tmp, register)
    for stale in (snapshot_path(register), secret_path(register)):
        stale.unlink(missing_ok=True)
    note = ""
    if skip_ids:
        reg = Register.open(register, encryption=encryption)
        try:
            with reg.transaction() as cur:
                nxt = store.skip_ids(cur, skip_ids)
        finally:
            reg.close()
        note = f"; ID counter moved on by {skip_ids:,} (next issue number {nxt:,})"
    return (f"restored {register} from {backup_file} (backup of "
            f"{meta.get('backup_at', '?')} UTC){note}")
