"""The one error hierarchy: everything linkage raises on purpose is a :class:`LinkageError`.

Errors know nothing of their front end. They are mapped once to CLI exit codes
(:data:`linkage.cli.EXIT_CODES`) and once to gRPC status codes
(:mod:`linkage.service.server`). Each also keeps the built-in base a caller would expect
(``ValueError`` for bad input, ``LookupError`` for an unknown ID ...). They carry no
personal data beyond what the caller sent.
"""

from __future__ import annotations

from pathlib import Path


class LinkageError(Exception):
    """Base of every error linkage raises on purpose."""


class ConfigError(LinkageError, ValueError):
    """A configuration file is missing, unreadable or wrong; says which file and key."""

    def __init__(self, path: Path | str, key: str | None, message: str):
        self.path, self.key = str(path), key
        where = f"{path}: {key}: " if key else f"{path}: "
        super().__init__(where + message)


class IngestError(LinkageError, RuntimeError):
    """A whole file cannot be read (missing, wrong format, missing columns)."""


class ModelError(LinkageError, RuntimeError):
    """A model file is unreadable, was trained on another definition, or is implausible."""


class RunError(LinkageError, RuntimeError):
    """A batch run failed; the published register is unchanged."""


class ChangeGuardTripped(RunError):
    """A run would change more of the register than the project's guards allow; it stopped
    before publishing. ``findings`` are the lines naming each source or file and its
    figures (counts only, no personal data)."""

    def __init__(self, message: str, findings: list[str]):
        self.findings = list(findings)
        super().__init__(message)


class RegisterLockedError(LinkageError, RuntimeError):
    """Another process holds the register file open for writing."""


class ConstraintConflict(LinkageError, ValueError):
    """A cannot-link pair is joined by a chain of must-link pairs."""


class InvalidRequest(LinkageError, ValueError):
    """The request is missing fields or has malformed ones.

    Attributes:
        violations: ``(field path, reason)`` pairs, e.g. ``("person.birth_date", "date in
            the future")``. Field paths name the request's fields, not the register's.
    """

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = list(violations)
        super().__init__("; ".join(f"{f}: {r}" for f, r in self.violations))


class NotFound(LinkageError, LookupError):
    """An unknown person ID, record or run."""


class RunInProgress(LinkageError, RuntimeError):
    """A batch run is already going; only one runs at a time."""


class NotReady(LinkageError, RuntimeError):
    """The register has no model or no published run yet."""


class ReviewConflict(LinkageError, RuntimeError):
    """A review decision that the item's current state does not allow (a stale item, a
    record already alone); says what to do instead."""


class Unauthenticated(LinkageError, PermissionError):
    """No credentials, or credentials the server does not accept (unknown, revoked).

    The message never says which: a guesser learns nothing from it."""


class PermissionDenied(LinkageError, PermissionError):
    """The client is known but its role (or its source limits) does not allow the call."""


class EngineUnavailable(LinkageError, RuntimeError):
    """The configured engine cannot start here (Spark: pyspark or a Java runtime missing)."""
