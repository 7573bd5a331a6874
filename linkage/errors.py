"""Errors of the real-time core (resolver, enrolment, look-ups, batch control).

They carry no personal data beyond what the caller sent. The gRPC layer maps them to
status codes in one place (:mod:`linkage.service.server`); other front ends can do the
same.
"""

from __future__ import annotations


class InvalidRequest(ValueError):
    """The request is missing fields or has malformed ones.

    Attributes:
        violations: ``(field path, reason)`` pairs, e.g. ``("person.birth_date", "date in
            the future")``. Field paths name the request's fields, not the register's.
    """

    def __init__(self, violations: list[tuple[str, str]]):
        self.violations = list(violations)
        super().__init__("; ".join(f"{f}: {r}" for f, r in self.violations))


class NotFound(LookupError):
    """An unknown person ID, record or run."""


class RunInProgress(RuntimeError):
    """A batch run is already going; only one runs at a time."""


class NotReady(RuntimeError):
    """The register has no model or no published run yet."""
