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

**Client certificates** (``serve.clients``, mutual TLS only): a call with no bearer token
is identified by its TLS client certificate, whose subject CN or one of whose subject
alternative names is an ``identity`` listed there, with that entry's role and limits. A
certificate identity not listed (and no token) is UNAUTHENTICATED; a listed one whose role
may not call the method is PERMISSION_DENIED. A token, when sent, decides (the certificate
has already proved the caller is one of the register's clients).

**Scoped mis clients.** A ``mis`` token or certificate limited to sources and/or
programmes (:attr:`Principal.limited`) may enrol only into its sources (those named, and
those of the programmes named) and reads only what they hold (:class:`Scope`): a person
with no live record there is NOT_FOUND (GetPerson, ListProgrammes; GetPersons answers
``found: false``; FindByIdentifier leaves it out), a visible person's records and
programme enrolments outside are left out, and so are the golden-record fields chosen
from records outside; ListProgrammePersons of another programme is PERMISSION_DENIED;
WatchChanges and ListChanges carry only the events of visible persons. Resolve still
scores against the whole register (deduplication is its purpose): a candidate's ID and
score are answered, its golden record only as far as the client's records say.

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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from linkage.errors import InvalidRequest, NotFound, PermissionDenied, Unauthenticated
from linkage.register import store
from linkage.register.database import Register

if TYPE_CHECKING:
    from linkage.config import ClientCertificate

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
    programmes: frozenset[str] = frozenset()  # ... and to these programmes' sources
    certificate: bool = False  # identified by its TLS client certificate, not a token

    @property
    def limited(self) -> bool:
        """Limited to some sources or programmes (see :class:`Scope`)."""
        return bool(self.sources or self.programmes)

    @property
    def client(self) -> str:
        """How the audit log names it."""
        if self.open_mode:
            return "open mode (no tokens issued)"
        if self.certificate:
            return f"{self.name} (certificate)"
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
    programmes: tuple[str, ...] = ()

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
                             r[5], r[6], tuple(json.loads(r[7]) if r[7] else ()))
                    for r in store.load_tokens(cur)]
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

    def issue(self, name: str, role: str, *, sources: Iterable[str] = (),
              programmes: Iterable[str] = ()) -> tuple[str, str]:
        """A new token: ``(token id, token)``. The token is not kept; show it once.

        ``sources`` and ``programmes`` (mis only) limit the client (see :class:`Scope`)."""
        problems = []
        if role not in ROLES:
            problems.append(("role", f"'{role}' is not one of {', '.join(ROLES)}"))
        if not name.strip() or len(name) > 100 or not name.isprintable():
            problems.append(("name", "expected a printable name of at most 100 characters"))
        sources = sorted(set(sources))
        if sources and role != MIS:
            problems.append(("sources", "only mis tokens are limited to sources"))
        programmes = sorted(set(programmes))
        if programmes and role != MIS:
            problems.append(("programmes", "only mis tokens are limited to programmes"))
        if problems:
            raise InvalidRequest(problems)
        token_id = secrets.token_hex(4)
        token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
        with self.register.transaction() as cur:
            store.add_token(cur, token_id, name.strip(), role, hash_token(token),
                            sources=sources, programmes=programmes)
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
                         sources=frozenset(row.sources), programmes=frozenset(row.programmes))


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


#: golden-record field (``chosen_from`` key) -> the message fields that hold it
_GOLDEN_FIELDS: dict[str, tuple[str, ...]] = {
    "given_name": ("name.given_name",), "family_name": ("name.surname",),
    "father_name": ("name.father_name",), "grandfather_name": ("name.grandfather_name",),
    "sex": ("sex",), "birth_date": ("birth_date",), "national_ids": ("identifiers",),
    "phone": ("phone_number",), "location": ("location",),
}


class Scope:
    """What a limited mis client may see (see the module's docstring): its sources (named,
    and those of its programmes), and the persons with a live record there.

    Args:
        programme_sources: programme label -> the sources of that programme.
        person_sources: person ID -> the sources of its live records (for events, which
            name a person only).
    """

    def __init__(self, programme_sources: Mapping[str, Iterable[str]],
                 person_sources: Callable[[str], set[str]]):
        self.programme_sources = {p: frozenset(v) for p, v in programme_sources.items()}
        self.person_sources = person_sources

    @classmethod
    def of_core(cls, core: Any) -> Scope:
        """The scope of a :class:`linkage.realtime.core.Realtime` core's project and index."""
        progs: dict[str, set[str]] = {}
        for src in core.project.sources:
            progs.setdefault(src.programme, set()).add(src.name)

        def person_sources(pid: str) -> set[str]:
            uids = core.index.records_of([pid]).get(pid, [])
            return {u.split(":", 1)[0] for u in uids}

        return cls(progs, person_sources)

    def sources(self, who: Principal) -> frozenset[str]:
        out = set(who.sources)
        for p in who.programmes:
            out |= self.programme_sources.get(p, frozenset())
        return frozenset(out)

    def programmes(self, who: Principal) -> frozenset[str]:
        allowed = self.sources(who)
        return frozenset(p for p, srcs in self.programme_sources.items() if srcs & allowed)

    # --- requests

    def check_request(self, who: Principal, request: Any, method: str) -> None:
        """Writes and look-ups into sources or programmes outside: PERMISSION_DENIED."""
        allowed = self.sources(who)
        outside = [s for s in _sources_of(request) if s not in allowed]
        name = type(request).__name__
        if name == "ListProgrammePersonsRequest" and request.programme not in (
                self.programmes(who) | allowed):
            outside.append(request.programme)
        if name == "FindByIdentifierRequest":
            if request.source and request.source not in allowed:
                outside.append(request.source)
            if request.programme and request.programme not in (self.programmes(who) | allowed):
                outside.append(request.programme)
        if outside:
            raise PermissionDenied(f"{_short(method)}: this client may not use that source "
                                   f"or programme")

    # --- responses

    def _golden(self, golden: Any, allowed: frozenset[str], programmes: frozenset[str]
                ) -> None:
        for key, ref in list(golden.chosen_from.items()):
            if ref.source not in allowed:
                for path in _GOLDEN_FIELDS.get(key, ()):
                    head, _, leaf = path.partition(".")
                    (getattr(golden, head).ClearField(leaf) if leaf
                     else golden.ClearField(head))
                del golden.chosen_from[key]
        kept = [p for p in golden.programmes if p in programmes]
        del golden.programmes[:]
        golden.programmes.extend(kept)

    def _person(self, person: Any, allowed: frozenset[str], programmes: frozenset[str]
                ) -> bool:
        """Trim a Person to the client's sources; False when nothing of it is visible."""
        records = [r for r in person.records if r.record.source in allowed]
        if not records:
            return False
        del person.records[:]
        person.records.extend(records)
        enrolments = [e for e in person.programmes if e.source in allowed]
        del person.programmes[:]
        person.programmes.extend(enrolments)
        lineage = [e for e in person.lineage
                   if not e.record.source or e.record.source in allowed]
        for e in lineage:
            if e.HasField("golden"):
                self._golden(e.golden, allowed, programmes)
        del person.lineage[:]
        person.lineage.extend(lineage)
        if person.HasField("golden"):
            self._golden(person.golden, allowed, programmes)
        return True

    def _event(self, event: Any, allowed: frozenset[str], programmes: frozenset[str]
               ) -> bool:
        if event.HasField("record") and event.record.source:
            if event.record.source not in allowed:
                return False
        elif not self.person_sources(event.person_id) & allowed:
            return False
        if event.HasField("golden"):
            self._golden(event.golden, allowed, programmes)
        return True

    def response(self, who: Principal, response: Any) -> Any:
        """The response trimmed to what ``who`` may see; NotFound for a person it may not."""
        allowed, programmes = self.sources(who), self.programmes(who)
        name = type(response).__name__
        if name == "Person":
            if not self._person(response, allowed, programmes):
                raise NotFound(f"person {response.requested_id or response.person_id} not "
                               f"found")
        elif name == "ListProgrammesResponse":
            if not self.person_sources(response.person_id) & allowed:
                raise NotFound(f"person {response.person_id} not found")
            kept = [e for e in response.programmes if e.source in allowed]
            del response.programmes[:]
            response.programmes.extend(kept)
        elif name == "GetPersonsResponse":
            for r in response.results:
                if r.found and not self._person(r.person, allowed, programmes):
                    r.found = False
                    r.ClearField("person")
        elif name == "FindByIdentifierResponse":
            kept = [p for p in response.persons if self._person(p, allowed, programmes)]
            if not kept:
                raise NotFound("no person holds that identifier")
            del response.persons[:]
            response.persons.extend(kept)
        elif name == "ListProgrammePersonsResponse":
            for m in response.members:
                if m.HasField("golden"):
                    self._golden(m.golden, allowed, programmes)
        elif name in ("ResolveResponse",):
            for c in response.candidates:
                if c.best_record.source and c.best_record.source not in allowed:
                    c.ClearField("best_record")
                if c.HasField("golden"):
                    self._golden(c.golden, allowed, programmes)
        elif name == "ListChangesResponse":
            kept = [e for e in response.events if self._event(e, allowed, programmes)]
            del response.events[:]
            response.events.extend(kept)
        return response

    def stream(self, who: Principal, responses: Iterator[Any]) -> Iterator[Any]:
        allowed, programmes = self.sources(who), self.programmes(who)
        for r in responses:
            if type(r).__name__ == "PersonEvent":
                if self._event(r, allowed, programmes):
                    yield r
            else:
                yield self.response(who, r)


def certificate_identities(auth_context: Mapping[str, Sequence[bytes]] | None) -> list[str]:
    """The subject CN and subject alternative names of the call's client certificate."""
    if not auth_context:
        return []
    out = []
    for key in ("x509_common_name", "x509_subject_alternative_name"):
        for v in auth_context.get(key, ()):
            text = v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
            if text and text not in out:
                out.append(text)
    return out


class Authorise(grpc.ServerInterceptor):
    """Authenticates and authorises every call from :data:`METHOD_ROLES` (default deny).

    Runs inside :class:`linkage.service.server.ExceptionToStatus`, which turns its errors
    into UNAUTHENTICATED / PERMISSION_DENIED. Sets :data:`CURRENT` for the call.

    Args:
        book: the API tokens.
        table: the authorisation table (default :data:`METHOD_ROLES`).
        certificates: ``serve.clients``: certificate identities and their roles (mutual
            TLS); a call without a token is identified by its certificate.
        scope: what limited mis clients may see (:class:`Scope`; the server always has
            one; without it only the sources of requests are checked).
    """

    def __init__(self, book: TokenBook, table: dict[str, frozenset[str]] | None = None,
                 certificates: Sequence[ClientCertificate] = (), scope: Scope | None = None):
        self.book = book
        self.table = METHOD_ROLES if table is None else table
        self.certificates = {c.identity: c for c in certificates}
        self.scope = scope

    def _from_certificate(self, auth_context: Mapping[str, Sequence[bytes]] | None
                          ) -> Principal:
        for ident in certificate_identities(auth_context):
            c = self.certificates.get(ident)
            if c is not None:
                return Principal(name=c.identity, role=c.role, sources=frozenset(c.sources),
                                 programmes=frozenset(c.programmes), certificate=True)
        raise Unauthenticated("unknown certificate identity")

    def principal(self, method: str, metadata: Iterable[tuple[str, Any]] | None,
                  call: Any = None, auth_context: Mapping[str, Sequence[bytes]] | None = None
                  ) -> Principal | None:
        """The authorised caller (None for a public method); raises when refused.

        ``call`` (an audit record) is told who the client is before a role refusal."""
        roles = self.table.get(method)
        if roles is None:
            raise PermissionDenied(f"{_short(method)} is not open to any client")
        if roles is PUBLIC:
            return None
        metadata = list(metadata or ())
        if self.certificates and not any(k == "authorization" for k, _ in metadata):
            who = self._from_certificate(auth_context)
        else:
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

    def _check(self, who: Principal, request: Any, method: str) -> None:
        if self.scope is not None:
            self.scope.check_request(who, request, method)
        else:
            outside = [s for s in _sources_of(request) if s not in who.sources]
            if outside:
                raise PermissionDenied(f"{_short(method)}: this client may not use that "
                                       f"source")

    def _enter(self, request: Any, context: grpc.ServicerContext, method: str,
               streaming: bool) -> tuple[Any, contextvars.Token, Principal | None]:
        who = self.principal(method, context.invocation_metadata(), CALL.get(),
                             context.auth_context())
        if who is not None and who.limited:
            if streaming:
                request = self._checked_stream(who, request, method)
            else:
                self._check(who, request, method)
        return request, CURRENT.set(who), who

    def _checked_stream(self, who: Principal, messages: Iterator[Any], method: str
                        ) -> Iterator[Any]:
        for m in messages:
            self._check(who, m, method)
            yield m

    def _trim(self, who: Principal | None, response: Any, method: str) -> Any:
        if who is None or not who.limited or who.role != MIS or self.scope is None:
            return response
        return self.scope.response(who, response)

    def _wrap_unary(self, fn: Callable, method: str, streaming: bool) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Any:
            request, reset, who = self._enter(request, context, method, streaming)
            try:
                return self._trim(who, fn(request, context), method)
            finally:
                CURRENT.reset(reset)

        return wrapper

    def _wrap_stream(self, fn: Callable, method: str, streaming: bool) -> Callable:
        def wrapper(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            request, reset, who = self._enter(request, context, method, streaming)
            try:
                out = fn(request, context)
                if (who is not None and who.limited and who.role == MIS
                        and self.scope is not None):
                    out = self.scope.stream(who, out)
                yield from out
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
