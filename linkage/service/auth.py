"""Who may call what: API tokens, roles, and the one interceptor that authorises every call.

**Tokens.** A client presents ``authorization: Bearer lk_<token id>_<secret>`` in its call
metadata. The register keeps only the SHA-256 of each token (``api_tokens``), with a name
(who holds it), a role and, for ``mis`` clients, optionally the sources it may enrol into
and look up records of. Tokens are issued, listed and revoked with ``linkage token``
(:class:`TokenBook`); the token itself is shown once, when issued. A token is a
256-bit random secret, so one SHA-256 (no slow hash) is enough to make a stolen table
useless, and comparisons are constant-time.

**Roles** (:data:`ROLES`): ``mis`` (resolve, enrol, look up, watch changes), ``reviewer``
(read persons for review), ``operator`` (batch control), ``admin`` (tokens: the
``AdminService`` while serving, ``linkage token`` while stopped; no personal data).
:data:`METHOD_ROLES` is the one table of which roles may call each method; a method
missing from it is refused to everyone (default deny), so a new RPC is unreachable
until it is added there (a test checks every method is listed).

**Open mode.** With no token ever issued in the register and the server on loopback,
every listed method is open (the demo and in-process tests need no credentials); the
server says so loudly when it starts. As soon as one token has been issued, every call
needs a live one (revoking them all does not reopen the server). Health
checks are always open (load balancers); reflection needs any valid token.

Failures are :class:`~linkage.errors.Unauthenticated` (one fixed message, whatever was
wrong) and :class:`~linkage.errors.PermissionDenied`, mapped to status codes by
:class:`linkage.service.server.ExceptionToStatus`.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import json
import logging
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc

from linkage.errors import InvalidRequest, PermissionDenied, Unauthenticated
from linkage.register import store
from linkage.register.database import Register

log = logging.getLogger(__name__)

MIS, REVIEWER, OPERATOR, ADMIN = "mis", "reviewer", "operator", "admin"
ROLES = (MIS, REVIEWER, OPERATOR, ADMIN)

#: Methods anyone may call, without credentials.
PUBLIC = frozenset({"*"})
#: Methods any holder of a valid token may call, whatever its role.
ANY_ROLE = frozenset(ROLES)

_LS, _BS = "/linkage.v1.LinkageService/", "/linkage.v1.BatchService/"
_AS = "/linkage.v1.AdminService/"
_RS = "/linkage.v1.ReviewService/"

#: The one authorisation table: full gRPC method name -> roles allowed. Not listed: denied.
METHOD_ROLES: dict[str, frozenset[str]] = {
    _LS + "Resolve": frozenset({MIS}),
    _LS + "Enrol": frozenset({MIS}),
    _LS + "EnrolBatch": frozenset({MIS}),
    _LS + "GetPerson": frozenset({MIS, REVIEWER}),
    _LS + "GetPersonByRecord": frozenset({MIS, REVIEWER}),
    _LS + "ListProgrammes": frozenset({MIS}),
    _LS + "WatchChanges": frozenset({MIS}),
    _LS + "FindByIdentifier": frozenset({MIS}),
    _LS + "GetPersons": frozenset({MIS, REVIEWER}),
    _LS + "ListProgrammePersons": frozenset({MIS}),
    _LS + "ListChanges": frozenset({MIS}),
    _BS + "StartRun": frozenset({OPERATOR}),
    _BS + "GetRun": frozenset({OPERATOR}),
    _BS + "WatchRun": frozenset({OPERATOR}),
    _RS + "ListReviewItems": frozenset({REVIEWER}),
    _RS + "GetReviewItem": frozenset({REVIEWER}),
    _RS + "DecideReviewItem": frozenset({REVIEWER}),
    _RS + "ExplainPair": frozenset({REVIEWER}),
    _AS + "IssueToken": frozenset({ADMIN}),
    _AS + "ListTokens": frozenset({ADMIN}),
    _AS + "RevokeToken": frozenset({ADMIN}),
    "/grpc.health.v1.Health/Check": PUBLIC,
    "/grpc.health.v1.Health/Watch": PUBLIC,
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo": ANY_ROLE,
}

TOKEN_PREFIX = "lk"
MAX_TOKEN_CHARS = 200


@dataclass(frozen=True)
class Principal:
    """The client of one call."""

    name: str
    role: str | None  # None in open mode
    token_id: str | None = None
    sources: frozenset[str] = frozenset()  # mis clients limited to these (empty: all)
    open_mode: bool = False

    @property
    def client(self) -> str:
        """How the audit log names it."""
        if self.open_mode:
            return "open mode (no tokens issued)"
        return f"{self.name} ({self.token_id})"


OPEN = Principal(name="open mode", role=None, open_mode=True)

#: The client of the call being served (set by :class:`Authorise` for the servicer's
#: thread; the audit trail reads it).
CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "linkage_principal", default=None)


#: The audit record of the call being served, when it is audited
#: (:class:`linkage.service.audit.AuditCalls`): :class:`Authorise` names its client there.
CALL: contextvars.ContextVar[Any] = contextvars.ContextVar("linkage_audit_call", default=None)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _token_id(token: str) -> str | None:
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX or not parts[1].isalnum():
        return None
    return parts[1]


@dataclass(frozen=True)
class TokenRow:
    token_id: str
    name: str
    role: str
    token_sha256: str
    sources: tuple[str, ...]
    issued_at: Any
    revoked_at: Any

    @property
    def live(self) -> bool:
        return self.revoked_at is None


class TokenBook:
    """The register's API tokens, held in memory for the server and kept in step with
    the writes made through it (issue, revoke), so a revocation takes effect at once.

    Args:
        register: the register (the server's own while serving).
        allow_open: whether open mode is allowed at all (the server is on loopback).
    """

    def __init__(self, register: Register, *, allow_open: bool = False):
        self.register = register
        self.allow_open = allow_open
        self._lock = threading.Lock()
        self._by_id: dict[str, TokenRow] = {}
        self.reload()

    def reload(self) -> None:
        cur = self.register.cursor()
        try:
            rows = [TokenRow(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]) if r[4] else ()),
                             r[5], r[6]) for r in store.load_tokens(cur)]
        finally:
            cur.close()
        with self._lock:
            self._by_id = {r.token_id: r for r in rows}

    def tokens(self) -> list[TokenRow]:
        with self._lock:
            return list(self._by_id.values())

    @property
    def live_count(self) -> int:
        return sum(1 for r in self.tokens() if r.live)

    @property
    def open_mode(self) -> bool:
        """Loopback and no token ever issued: every listed method is open. Revoking every
        token does not reopen the server (an incident response must not open it)."""
        return self.allow_open and not self.tokens()

    def issue(self, name: str, role: str, *, sources: Iterable[str] = ()) -> tuple[str, str]:
        """A new token: ``(token id, token)``. The token is not kept; show it once."""
        problems = []
        if role not in ROLES:
            problems.append(("role", f"'{role}' is not one of {', '.join(ROLES)}"))
        if not name.strip() or len(name) > 100 or not name.isprintable():
            problems.append(("name", "expected a printable name of at most 100 characters"))
        sources = sorted(set(sources))
        if sources and role != MIS:
            problems.append(("sources", "only mis tokens are limited to sources"))
        if problems:
            raise InvalidRequest(problems)
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        with self.register.transaction() as cur:
            store.add_token(cur, token_id, name.strip(), role, hash_token(token),
                            sources=sources)
        self.reload()
        return token_id, token

    def revoke(self, token_id: str) -> bool:
        with self.register.transaction() as cur:
            done = store.revoke_token(cur, token_id)
        self.reload()
        return done

    def authenticate(self, metadata: Iterable[tuple[str, Any]] | None) -> Principal:
        """The caller named by the call's ``authorization`` metadata.

        Raises:
            Unauthenticated: no usable bearer token, unknown or revoked (the same error
                whatever the reason), and not in open mode.
        """
        header = None
        for key, value in metadata or ():
            if key == "authorization":
                header = value if isinstance(value, str) else None
                break
        if header is None:
            if self.open_mode:
                return OPEN
            raise Unauthenticated("no credentials")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("malformed credentials")
        token_id = _token_id(token)
        with self._lock:
            row = self._by_id.get(token_id) if token_id else None
        # Compare a hash even for an unknown ID, so timing tells nothing either.
        expected = row.token_sha256 if row else "0" * 64
        if not hmac.compare_digest(expected, hash_token(token)) or row is None or not row.live:
            raise Unauthenticated("unknown or revoked token")
        return Principal(name=row.name, role=row.role, token_id=row.token_id,
                         sources=frozenset(row.sources))


def _short(method: str) -> str:
    return method.rsplit(".", 1)[-1] if "." in method else method.lstrip("/")


def _sources_of(request: Any) -> list[str]:
    """Sources a request names (enrolments, records looked up), for source limits."""
    name = type(request).__name__
    if name == "EnrolRequest":
        return [request.source]
    if name == "GetPersonByRecordRequest":
        return [request.record.source]
    if name == "EnrolBatchRequest":
        return [r.source for r in request.records]
    return []


def _check_sources(principal: Principal, request: Any, method: str) -> None:
    if principal.sources:
        outside = [s for s in _sources_of(request) if s not in principal.sources]
        if outside:
            raise PermissionDenied(f"{_short(method)}: this client may not use that source")


class Authorise(grpc.ServerInterceptor):
    """Authenticates and authorises every call from :data:`METHOD_ROLES` (default deny).

    Runs inside :class:`linkage.service.server.ExceptionToStatus`, which turns its errors
    into UNAUTHENTICATED / PERMISSION_DENIED. Sets :data:`CURRENT` for the call.
    """

    def __init__(self, book: TokenBook, table: dict[str, frozenset[str]] | None = None):
        self.book = book
        self.table = METHOD_ROLES if table is None else table

    def principal(self, method: str, metadata: Iterable[tuple[str, Any]] | None,
                  call: Any = None) -> Principal | None:
        """The authorised caller (None for a public method); raises when refused.

        ``call`` (an audit record) is told who the client is before a role refusal."""
        roles = self.table.get(method)
        if roles is None:
            raise PermissionDenied(f"{_short(method)} is not open to any client")
        if roles is PUBLIC:
            return None
        who = self.book.authenticate(metadata)
        if call is not None:
            call.principal = who
        if not who.open_mode and who.role not in roles:
            raise PermissionDenied(f"{_short(method)} is not permitted for this client")
        return who

    def intercept_service(self, continuation: Callable[[Any], Any],
                          handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        for kind in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            fn = getattr(handler, kind)
            if fn is not None:
                wrap = self._wrap_stream if kind.endswith("_stream") else self._wrap_unary
                return handler._replace(**{kind: wrap(fn, method, kind.startswith("stream"))})
        return handler

    def _enter(self, request: Any, context: grpc.ServicerContext, method: str,
               streaming: bool) -> tuple[Any, contextvars.Token]:
        who = self.principal(method, context.invocation_metadata(), CALL.get())
        if who is not None and who.sources:
            if streaming:
                request = self._checked_stream(who, request, method)
            else:
                _check_sources(who, request, method)
        return request, CURRENT.set(who)

    @staticmethod
    def _checked_stream(who: Principal, messages: Iterator[Any], method: str
                        ) -> Iterator[Any]:
        for m in messages:
            _check_sources(who, m, method)
            yield m

    def _wrap_unary(self, fn: Callable, method: str, streaming: bool) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            request, reset = self._enter(request, context, method, streaming)
            try:
                return fn(request, context)
            finally:
                CURRENT.reset(reset)

        return wrapper

    def _wrap_stream(self, fn: Callable, method: str, streaming: bool) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            request, reset = self._enter(request, context, method, streaming)
            try:
                yield from fn(request, context)
            finally:
                try:
                    CURRENT.reset(reset)
                except ValueError:  # resumed in another context: nothing to restore
                    pass

        return wrapper


def bearer(token: str) -> tuple[tuple[str, str]]:
    """Call metadata carrying ``token`` (``stub.Resolve(req, metadata=bearer(t))``)."""
    return (("authorization", f"Bearer {token}"),)


class BearerAuth(grpc.AuthMetadataPlugin):
    """Client side: attach a token to every call on a TLS channel
    (``grpc.composite_channel_credentials(ssl, grpc.metadata_call_credentials(BearerAuth(t)))``)."""

    def __init__(self, token: str):
        self._token = token

    def __call__(self, context: grpc.AuthMetadataContext,
                 callback: grpc.AuthMetadataPluginCallback) -> None:
        callback(bearer(self._token), None)
