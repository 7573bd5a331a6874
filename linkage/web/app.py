"""The reviewers' web page: an HTTP server on its own port inside ``linkage serve``.

Routes (server-rendered HTML; the only script is the decision keys):

=============================  ======================================================
``GET /``                      the queue, filtered (status, kind, programme, area), paged
``GET /item/<id>``             an item with its evidence and the decision buttons
``POST /item/<id>/decide``     a decision (decision, comment, record): then the next item
``GET /person/<id>``           a person's records and history
``GET /report``                the last run's report (:mod:`linkage.report`)
``GET /login``, ``POST /login`` sign in with a reviewer (or admin) API token
``POST /logout``               sign out
``POST /reviewer``             open mode only: who is reviewing (kept in a cookie)
=============================  ======================================================

Every page calls the review core of the serving process (:class:`linkage.review.core.Review`,
the one the gRPC ReviewService calls), so a decision here changes the persons at once as
it does there.

**Identity.** Once any API token is issued (as for gRPC: :mod:`linkage.service.auth`),
every page needs a sign-in with a live ``reviewer`` or ``admin`` token (any other role is
refused, 403). The token is checked by the same :class:`~linkage.service.auth.TokenBook`
as gRPC calls (a revocation ends the page's sessions at their next request) and is not
kept: the page keeps a random session ID in a cookie (HttpOnly, SameSite=Strict, Secure
under TLS), valid :data:`SESSION_SECONDS`. Every decision and view names the reviewer
from the token (the token's name), never from a form field. Every POST needs the
session's CSRF token (a hidden field of each form) and a same-site ``Origin``; sign-ins,
refusals, views and decisions are written to the audit trail (``web/...`` methods). In
open mode (loopback, no token issued) the reviewer names themself, as before.

**Transport.** With ``serve.tls`` the page is served over HTTPS with the same certificate
and key as gRPC (:func:`make_server`), and may then be bound beyond loopback.
"""

from __future__ import annotations

import hmac
import http.cookies
import logging
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from linkage.errors import InvalidRequest, LinkageError, NotFound, NotReady, Unauthenticated
from linkage.review.core import Review
from linkage.review.evidence import Filters
from linkage.service.auth import ADMIN, REVIEWER, Principal, TokenBook
from linkage.web import pages
from linkage.web.i18n import choose, s

if TYPE_CHECKING:
    from linkage.config import TlsConfig
    from linkage.service.audit import AuditTrail

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024
#: A sign-in lasts this long (then the reviewer signs in again).
SESSION_SECONDS = 8 * 3600
SESSION_COOKIE = "linkage_session"
#: Roles that may use the page.
PAGE_ROLES = frozenset({REVIEWER, ADMIN})


_POST_FORM = re.compile(r'<form\b[^>]*\bmethod="post"[^>]*>', re.IGNORECASE)


@dataclass
class Session:
    id: str  # the cookie's value
    principal: Principal
    csrf: str  # the hidden field every POST must carry
    expires: float  # time.monotonic()


class WebApp:
    """What the handler needs: the review core, the real-time lookups and the report, and
    for sign-in the API tokens, the audit trail and whether the page is served over TLS."""

    def __init__(self, review: Review, person: Any, report: Any, *,
                 tokens: TokenBook | None = None, audit: AuditTrail | None = None,
                 secure: bool = False):
        self.review = review
        self.person = person  # person ID -> lookup.PersonView
        self.report = report  # lang -> report HTML
        self.tokens = tokens
        self.audit = audit
        self.secure = secure
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    @property
    def login_required(self) -> bool:
        """Whether pages need a sign-in: yes once any token is issued (no tokens: open
        mode, only on loopback; no token book at all: an in-process test)."""
        return self.tokens is not None and not self.tokens.open_mode

    def sign_in(self, token: str) -> Session:
        """A session for a live reviewer or admin token.

        Raises:
            Unauthenticated: not a live token.
            PermissionError: a live token of another role.
        """
        if self.tokens is None:
            raise Unauthenticated("the page has no sign-in")
        who = self.tokens.authenticate([("authorization", f"Bearer {token.strip()}")])
        if who.role not in PAGE_ROLES:
            self.note(who, "Login", "PERMISSION_DENIED")
            raise PermissionError("role")
        sid = secrets.token_urlsafe(32)
        sess = Session(sid, who, secrets.token_urlsafe(24), time.monotonic() + SESSION_SECONDS)
        with self._lock:
            now = time.monotonic()
            self._sessions = {k: v for k, v in self._sessions.items() if v.expires > now}
            self._sessions[sid] = sess
        self.note(who, "Login", "OK")
        return sess

    def session(self, sid: str | None) -> Session | None:
        """The live session of this ID; None when unknown, expired or its token revoked."""
        if not sid:
            return None
        with self._lock:
            sess = self._sessions.get(sid)
        if sess is None or sess.expires < time.monotonic():
            return None
        live = {r.token_id for r in self.tokens.tokens() if r.live} if self.tokens else set()
        if sess.principal.token_id not in live:
            self.sign_out(sid)
            return None
        return sess

    def sign_out(self, sid: str) -> Session | None:
        with self._lock:
            return self._sessions.pop(sid, None)

    def note(self, who: Principal | None, method: str, outcome: str, *,
             keys: list[str] = (), detail: str = "") -> None:  # type: ignore[assignment]
        if self.audit is not None:
            self.audit.note(who, f"web/{method}", outcome, keys=list(keys), detail=detail)


class _Handler(BaseHTTPRequestHandler):
    app: WebApp
    server_version = "linkage-review"
    timeout = 60  # a client that sends nothing frees its thread
    sess: Session | None = None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("web: " + format, *args)  # paths only: no personal data in them

    # ------------------------------------------------------------------ plumbing

    def _cookies(self) -> http.cookies.SimpleCookie:
        c = http.cookies.SimpleCookie()
        try:
            c.load(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            pass
        return c

    def _cookie(self, name: str) -> str | None:
        m = self._cookies().get(name)
        return m.value if m is not None else None

    def _context(self) -> tuple[str, dict[str, list[str]], str, str | None, list[str]]:
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        lang = choose((q.get("lang") or [None])[0], self._cookie("lang"),
                      self.headers.get("Accept-Language"))
        set_cookies = []
        if (q.get("lang") or [None])[0] == lang:
            set_cookies.append(f"lang={lang}; Path=/; SameSite=Lax; Max-Age=31536000")
        if self.app.login_required:
            sess = self.app.session(self._cookie(SESSION_COOKIE))
            self.sess = sess
            return url.path, q, lang, (sess.principal.name if sess else None), set_cookies
        self.sess = None
        reviewer = unquote(self._cookie("reviewer") or "").strip()
        return url.path, q, lang, (reviewer or None), set_cookies

    def _send(self, status: int, body: str, *, cookies: list[str] = (),  # type: ignore[assignment]
              content_type: str = "text/html; charset=utf-8",
              location: str | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if location:
            self.send_header("Location", location)
        for c in cookies:
            self.send_header("Set-Cookie", c)
        self.end_headers()
        self.wfile.write(data)

    def _page(self, title: str, body: str, *, lang: str, reviewer: str | None, path: str,
              cookies: list[str], status: int = 200, flash: str = "",
              flash_error: bool = False) -> None:
        signed_in = (self.sess is not None) if self.app.login_required else None
        page = pages.layout(title, body, lang=lang, reviewer=reviewer, path=path, flash=flash,
                            flash_error=flash_error, signed_in=signed_in)
        if self.sess is not None:  # every form posts the session's CSRF token
            field = f'<input type="hidden" name="csrf" value="{pages.esc(self.sess.csrf)}">'
            page = _POST_FORM.sub(lambda m: m.group(0) + field, page)
        self._send(status, page, cookies=cookies)

    def _session_cookie(self, sid: str, *, clear: bool = False) -> str:
        attrs = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.app.secure else "")
        return f"{SESSION_COOKIE}={'' if clear else sid}{attrs}" + ("; Max-Age=0" if clear
                                                                    else "")

    def _to_login(self, back: str) -> None:
        if not back.startswith("/") or back.startswith("//") or back.startswith("/login"):
            back = "/"
        self._send(HTTPStatus.SEE_OTHER, "", location=f"/login?back={quote(back)}")

    def _form(self) -> dict[str, str]:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_FORM_BYTES:
            raise InvalidRequest([("form", "too large")])
        raw = self.rfile.read(n).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _same_origin(self) -> bool:
        origin = self.headers.get("Origin")
        if not origin or origin == "null":
            return origin != "null"
        return urlsplit(origin).netloc == self.headers.get("Host")

    # ------------------------------------------------------------------ GET

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        path, q, lang, reviewer, cookies = self._context()
        here = self.path
        if self.app.login_required and path == "/login":
            self._page(s("login", lang), pages.login_page(lang=lang,
                                                          back=(q.get("back") or ["/"])[0]),
                       lang=lang, reviewer=None, path=here, cookies=cookies,
                       flash=s("signed_out", lang) if q.get("out") else "")
            return
        if self.app.login_required and self.sess is None:
            self._to_login(here)
            return
        try:
            if path == "/":
                f = Filters(status=(q.get("status") or ["open"])[0],
                            kind=(q.get("kind") or [""])[0],
                            programme=(q.get("programme") or [""])[0],
                            area=(q.get("area") or [""])[0])
                items, token, total = self.app.review.list(
                    f, page_size=50, page_token=(q.get("page") or [""])[0])
                flash = (q.get("done") or [""])[0]
                self._page(s("queue", lang), pages.queue_page(items, total, token, f, lang=lang),
                           lang=lang, reviewer=reviewer, path=here, cookies=cookies,
                           flash=s("decided", lang, d=flash, item=(q.get("item") or [""])[0])
                           if flash else "")
            elif path.startswith("/item/"):
                item_id = path.removeprefix("/item/")
                if not reviewer:
                    self._page(s("queue", lang), f"<p id='who-first'>{s('who_first', lang)}</p>",
                               lang=lang, reviewer=None, path=here, cookies=cookies)
                    return
                view = self.app.review.get(item_id, viewer=reviewer, surface="web")
                self.app.note(self.sess.principal if self.sess else None, "GetReviewItem",
                              "OK", keys=list(view.item.record_uids), detail=f"item {item_id}")
                self._page(f"{s('item', lang)} {item_id}",
                           pages.item_page(view, lang=lang, next_item=self._next(item_id)),
                           lang=lang, reviewer=reviewer, path=here, cookies=cookies,
                           flash=self._flash(q, lang), flash_error=bool(q.get("error")))
            elif path.startswith("/person/"):
                view = self.app.person(path.removeprefix("/person/"))
                self._page(s("person_page", lang, pid=view.person_id),
                           pages.person_page(view, lang=lang), lang=lang, reviewer=reviewer,
                           path=here, cookies=cookies)
            elif path == "/report":
                self._send(200, self.app.report(lang), cookies=cookies)
            else:
                self._page(s("not_found", lang), f"<h1>{s('not_found', lang)}</h1>", lang=lang,
                           reviewer=reviewer, path="/", cookies=cookies, status=404)
        except NotFound as exc:
            self._page(s("not_found", lang), f"<h1>{s('not_found', lang)}</h1><p>"
                       f"{pages.esc(exc)}</p>", lang=lang, reviewer=reviewer, path="/",
                       cookies=cookies, status=404)
        except LinkageError as exc:
            self._page(s("queue", lang), "", lang=lang, reviewer=reviewer, path="/",
                       cookies=cookies, status=400, flash=s("error", lang, msg=str(exc)),
                       flash_error=True)

    @staticmethod
    def _flash(q: dict[str, list[str]], lang: str) -> str:
        if q.get("error"):
            return s("error", lang, msg=q["error"][0])
        if q.get("done"):
            return s("decided", lang, d=q["done"][0], item=(q.get("item") or [""])[0])
        return ""

    def _next(self, item_id: str) -> str | None:
        items, _, _ = self.app.review.list(Filters(status="open"), page_size=2)
        return next((it.item_id for it in items if it.item_id != item_id), None)

    # ------------------------------------------------------------------ POST

    def do_POST(self) -> None:  # noqa: N802
        path, _q, lang, reviewer, cookies = self._context()
        if not self._same_origin():
            self._send(HTTPStatus.FORBIDDEN, "cross-site request refused",
                       content_type="text/plain; charset=utf-8")
            return
        try:
            form = self._form()
        except InvalidRequest:
            self._send(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "form too large",
                       content_type="text/plain; charset=utf-8")
            return
        if self.app.login_required:
            if path == "/login":
                self._login(form, lang, cookies)
                return
            if self.sess is None:
                self._to_login("/")
                return
            if not hmac.compare_digest(form.get("csrf", ""), self.sess.csrf):
                self.app.note(self.sess.principal, "Post", "PERMISSION_DENIED",
                              detail="CSRF token missing or wrong")
                self._send(HTTPStatus.FORBIDDEN, "request refused: reload the page",
                           content_type="text/plain; charset=utf-8")
                return
            if path == "/logout":
                self.app.sign_out(self._cookie(SESSION_COOKIE) or "")
                self.app.note(self.sess.principal, "Logout", "OK")
                self._send(HTTPStatus.SEE_OTHER, "", cookies=[self._session_cookie(
                    "", clear=True)], location="/login?out=1")
                return
        if path == "/reviewer" and not self.app.login_required:
            name = form.get("reviewer", "").strip()[:100]
            back = form.get("back", "/")
            if not back.startswith("/") or back.startswith("//"):
                back = "/"
            cookie = (f"reviewer={quote(name)}; Path=/; SameSite=Strict; HttpOnly"
                      if name else "reviewer=; Path=/; Max-Age=0")
            self._send(HTTPStatus.SEE_OTHER, "", cookies=[cookie], location=back)
            return
        if path.startswith("/item/") and path.endswith("/decide"):
            item_id = path.removeprefix("/item/").removesuffix("/decide")
            decision = form.get("decision", "")
            try:
                if not reviewer:
                    raise InvalidRequest([("reviewer", s("who_first", lang))])
                d = self.app.review.decide(
                    item_id, decision, reviewer=reviewer, comment=form.get("comment") or None,
                    record_uid=form.get("record") if decision == "take_out" else None)
            except LinkageError as exc:
                self.app.note(self.sess.principal if self.sess else None,
                              "DecideReviewItem", "FAILED", detail=f"item {item_id}")
                self._send(HTTPStatus.SEE_OTHER, "", location=f"/item/{quote(item_id)}?"
                           f"error={quote(str(exc)[:300])}")
                return
            self.app.note(self.sess.principal if self.sess else None, "DecideReviewItem",
                          "OK", detail=f"item {item_id}: {decision} ({d.decision_id})")
            nxt = self._next(item_id)
            where = (f"/item/{quote(nxt)}?" if nxt else "/?")
            self._send(HTTPStatus.SEE_OTHER, "", location=f"{where}done={quote(d.decision_id)}"
                       f"&item={quote(item_id)}")
            return
        self._send(HTTPStatus.NOT_FOUND, "not found", content_type="text/plain; charset=utf-8")

    def _login(self, form: dict[str, str], lang: str, cookies: list[str]) -> None:
        back = form.get("back", "/")
        if not back.startswith("/") or back.startswith("//") or back.startswith("/login"):
            back = "/"
        token = form.get("token", "")
        try:
            sess = self.app.sign_in(token)
        except Unauthenticated:
            self.app.note(None, "Login", "UNAUTHENTICATED")
            self._page(s("login", lang), pages.login_page(lang=lang, back=back), lang=lang,
                       reviewer=None, path="/login", cookies=cookies,
                       status=HTTPStatus.UNAUTHORIZED, flash=s("login_failed", lang),
                       flash_error=True)
            return
        except PermissionError:
            self._page(s("login", lang), pages.login_page(lang=lang, back=back), lang=lang,
                       reviewer=None, path="/login", cookies=cookies,
                       status=HTTPStatus.FORBIDDEN, flash=s("login_refused", lang),
                       flash_error=True)
            return
        self._send(HTTPStatus.SEE_OTHER, "", location=back,
                   cookies=[*cookies, self._session_cookie(sess.id)])


def make_server(app: WebApp, host: str = "127.0.0.1", port: int = 0,
                tls: TlsConfig | None = None) -> ThreadingHTTPServer:
    """The web server bound to ``host:port`` (0: a free port); not yet serving. With
    ``tls`` it serves HTTPS with that certificate and key (TLS 1.2 at least; the handshake
    happens in the connection's thread, so a slow client holds no other)."""
    handler = type("Handler", (_Handler,), {"app": app})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    if tls is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(str(tls.cert), str(tls.key))
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True,
                                       do_handshake_on_connect=False)
        app.secure = True
    return httpd


def start(app: WebApp, host: str = "127.0.0.1", port: int = 0, tls: TlsConfig | None = None
          ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve in a background thread; returns the server (``server_address`` has the port)."""
    httpd = make_server(app, host, port, tls)
    t = threading.Thread(target=httpd.serve_forever, name="linkage-web", daemon=True)
    t.start()
    return httpd, t


def for_core(core: Any, *, tokens: TokenBook | None = None,
             audit: AuditTrail | None = None) -> WebApp:
    """The web app of a :class:`linkage.realtime.core.Realtime` core (with ``tokens``:
    sign-in by reviewer token once any token is issued)."""
    from linkage.report.data import collect
    from linkage.report.html import render

    def report(lang: str) -> str:
        try:
            index = core.index
        except NotReady:
            index = None
        return core._read(lambda cur: render(collect(cur, core.project, index), lang=lang))

    return WebApp(core.review, core.person, report, tokens=tokens, audit=audit)
