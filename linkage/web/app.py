"""The reviewers' web page: an HTTP server on its own port inside ``linkage serve``.

Routes (server-rendered HTML; the only script is the decision keys):

=============================  ======================================================
``GET /``                      the queue, filtered (status, kind, programme, area), paged
``GET /item/<id>``             an item with its evidence and the decision buttons
``POST /item/<id>/decide``     a decision (decision, comment, record): then the next item
``GET /person/<id>``           a person's records and history
``GET /report``                the last run's report (:mod:`linkage.report`)
``POST /reviewer``             who is reviewing (kept in a cookie)
=============================  ======================================================

Every page calls the review core of the serving process (:class:`linkage.review.core.Review`,
the one the gRPC ReviewService calls), so a decision here changes the persons at once as
it does there. The reviewer's name comes from a cookie the reviewer sets; authentication
is the security issue's. A POST whose ``Origin`` is another site is refused (403).
"""

from __future__ import annotations

import http.cookies
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from linkage.errors import InvalidRequest, LinkageError, NotFound, NotReady
from linkage.review.core import Review
from linkage.review.evidence import Filters
from linkage.web import pages
from linkage.web.i18n import choose, s

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 16 * 1024


class WebApp:
    """What the handler needs: the review core, the real-time lookups and the report."""

    def __init__(self, review: Review, person: Any, report: Any):
        self.review = review
        self.person = person  # person ID -> lookup.PersonView
        self.report = report  # lang -> report HTML


class _Handler(BaseHTTPRequestHandler):
    app: WebApp
    server_version = "linkage-review"

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
        self._send(status, pages.layout(title, body, lang=lang, reviewer=reviewer, path=path,
                                        flash=flash, flash_error=flash_error), cookies=cookies)

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
        if path == "/reviewer":
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
                self._send(HTTPStatus.SEE_OTHER, "", location=f"/item/{quote(item_id)}?"
                           f"error={quote(str(exc)[:300])}")
                return
            nxt = self._next(item_id)
            where = (f"/item/{quote(nxt)}?" if nxt else "/?")
            self._send(HTTPStatus.SEE_OTHER, "", location=f"{where}done={quote(d.decision_id)}"
                       f"&item={quote(item_id)}")
            return
        self._send(HTTPStatus.NOT_FOUND, "not found", content_type="text/plain; charset=utf-8")


def make_server(app: WebApp, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """The web server bound to ``host:port`` (0: a free port); not yet serving."""
    handler = type("Handler", (_Handler,), {"app": app})
    httpd = ThreadingHTTPServer((host, port), handler)
    httpd.daemon_threads = True
    return httpd


def start(app: WebApp, host: str = "127.0.0.1", port: int = 0
          ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve in a background thread; returns the server (``server_address`` has the port)."""
    httpd = make_server(app, host, port)
    t = threading.Thread(target=httpd.serve_forever, name="linkage-web", daemon=True)
    t.start()
    return httpd, t


def for_core(core: Any) -> WebApp:
    """The web app of a :class:`linkage.realtime.core.Realtime` core."""
    from linkage.report.data import collect
    from linkage.report.html import render

    def report(lang: str) -> str:
        try:
            index = core.index
        except NotReady:
            index = None
        return core._read(lambda cur: render(collect(cur, core.project, index), lang=lang))

    return WebApp(core.review, core.person, report)
