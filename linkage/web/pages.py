"""Server-rendered pages of the reviewers' web page (HTML strings, everything escaped)."""

from __future__ import annotations

import html
from collections.abc import Iterable
from urllib.parse import quote, urlencode

from linkage.realtime.lookup import PersonView
from linkage.review.evidence import Filters, Item, ItemView
from linkage.web.i18n import LANGS, s

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#f6f7f9}
header{background:#23395d;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.2rem;
align-items:center;flex-wrap:wrap}
header a{color:#fff}header form{margin-left:auto}
main{max-width:1150px;margin:0 auto;padding:1rem 1.2rem}
table{border-collapse:collapse;background:#fff;margin:.4rem 0;font-size:.92rem}
td,th{border:1px solid #d8dce3;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#eef1f5}
.diff td.v{background:#fff4e0}
.num{text-align:right;font-variant-numeric:tabular-nums}
.pos{color:#1d6b2f}.neg{color:#a3262a}
.bar{display:inline-block;height:.8rem;vertical-align:middle}
.bar.pos{background:#4c9a5e}.bar.neg{background:#c8585c}
.flash{background:#e4f3e6;border:1px solid #9ccba4;padding:.5rem .8rem}
.flash.err{background:#fbe7e7;border-color:#e2a2a4}
.decide button{font-size:1rem;margin:.2rem .3rem .2rem 0;padding:.4rem .8rem}
kbd{border:1px solid #999;border-radius:3px;padding:0 .25rem;font-size:.85em}
section{margin:1rem 0}
"""

#: The page's only script: decision keys (S, N, T, D) and J for the next item.
KEYS_JS = """
document.addEventListener('keydown', function (e) {
  if (e.target.tagName === 'INPUT' || e.target.tagName === 'TEXTAREA' ||
      e.target.tagName === 'SELECT' || e.ctrlKey || e.metaKey || e.altKey) { return; }
  var k = e.key.toLowerCase();
  var map = {s: 'same', n: 'not_same', t: 'take_out', d: 'defer'};
  if (map[k]) {
    var b = document.querySelector('button[value="' + map[k] + '"]');
    if (b) { e.preventDefault(); b.click(); }
  } else if (k === 'j') {
    var next = document.getElementById('next-item');
    if (next) { e.preventDefault(); window.location = next.href; }
  }
});
"""


def esc(v: object) -> str:
    return html.escape("" if v is None else str(v))


def login_page(*, lang: str, back: str) -> str:
    """The sign-in form: a reviewer (or admin) token, never kept by the page."""
    return (f'<h1 id="login-title">{s("login", lang)}</h1><p>{s("login_help", lang)}</p>'
            f'<form method="post" action="/login" id="login"><label>{s("token", lang)} '
            f'<input type="password" name="token" id="token" required autocomplete="off" '
            f'maxlength="200" size="60"></label> <button id="login-button">{s("login", lang)}'
            f'</button><input type="hidden" name="back" value="{esc(back)}"></form>')


def layout(title: str, body: str, *, lang: str, reviewer: str | None, path: str,
           flash: str = "", flash_error: bool = False, signed_in: bool | None = None) -> str:
    """The page around ``body``. ``signed_in``: None when the page has no login (open mode
    on loopback: the reviewer names themself), else whether a reviewer is signed in."""
    switch = " | ".join(
        f'<a href="{esc(path)}{"&" if "?" in path else "?"}lang={code}" '
        f'hreflang="{code}" id="lang-{code}">{"English" if code == "en" else "Français"}</a>'
        for code in LANGS)
    if signed_in is None:
        who = (f'<form method="post" action="/reviewer"><label>{s("reviewer", lang)} '
               f'<input name="reviewer" id="reviewer" value="{esc(reviewer)}" required '
               f'maxlength="100"></label> <button>{s("set", lang)}</button>'
               f'<input type="hidden" name="back" value="{esc(path)}"></form>')
    elif signed_in:
        who = (f'<form method="post" action="/logout"><span id="signed-in">'
               f'{s("signed_in", lang)} <b>{esc(reviewer)}</b></span> '
               f'<button id="logout">{s("logout", lang)}</button></form>')
    else:
        who = ""
    note = (f'<p class="flash{" err" if flash_error else ""}" id="flash">{esc(flash)}</p>'
            if flash else "")
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><header>"
            f'<a href="/"><b>{s("queue", lang)}</b></a><a href="/report">{s("report", lang)}'
            f"</a><span>{switch}</span>{who}</header><main>{note}{body}</main>"
            f"<script>{KEYS_JS}</script></body></html>")


def _options(name: str, values: Iterable[str], current: str, lang: str, prefix: str) -> str:
    opts = "".join(f'<option value="{esc(v)}"{" selected" if v == current else ""}>'
                   f'{esc(s(prefix + v, lang) if v else s("all", lang))}</option>'
                   for v in values)
    return f'<select name="{name}" id="f-{name}">{opts}</select>'


def queue_page(items: list[Item], total: int, next_token: str, f: Filters, *, lang: str
               ) -> str:
    form = (f'<form method="get" action="/" id="filters">'
            f'<label>{s("status", lang)} '
            + _options("status", ["open", "deferred", "decided", "stale", ""], f.status, lang,
                       "status_")
            + f'</label> <label>{s("kind", lang)} '
            + _options("kind", ["", "pair", "person", "enrolment", "sample"], f.kind, lang,
                       "kind_")
            + f'</label> <label>{s("programme", lang)} <input name="programme" '
              f'value="{esc(f.programme)}" size="14"></label> '
              f'<label>{s("area", lang)} <input name="area" value="{esc(f.area)}" size="10">'
              f'</label> <button>{s("filter", lang)}</button></form>')
    if not items:
        return form + f'<p id="empty">{s("empty", lang)}</p>'
    rows = []
    for it in items:
        what = (f"{esc(it.uid_a)}<br>{esc(it.uid_b)}" if it.uid_a else
                f'<a href="/person/{quote(it.person_id or "")}">{esc(it.person_id)}</a> '
                f"({len(it.record_uids)})")
        p = "" if it.match_probability is None else f"{it.match_probability:.3f}"
        rows.append(
            f'<tr class="item-row"><td><a href="/item/{quote(it.item_id)}" class="item-link">'
            f"{esc(it.item_id)}</a></td><td class='num'>{it.priority:.0f}</td>"
            f"<td>{esc(s('kind_' + it.kind, lang))}</td><td class='num'>{p}</td>"
            f"<td>{esc('; '.join(s('reason_' + r, lang) for r in it.reasons))}</td>"
            f"<td>{what}</td><td>{esc(', '.join(it.programmes))}</td><td>{esc(it.area)}</td>"
            "</tr>")
    params = {k: v for k, v in (("status", f.status), ("kind", f.kind),
                                ("programme", f.programme), ("area", f.area)) if v}
    nxt = (f'<p><a id="next-page" href="/?{urlencode({**params, "page": next_token})}">'
           f'{s("next_page", lang)}</a></p>' if next_token else "")
    return (form + f'<p>{s("of_total", lang, n=len(items), total=total)}</p>'
            f'<table id="queue"><thead><tr><th>{s("item", lang)}</th>'
            f'<th>{s("priority", lang)}</th><th>{s("kind", lang)}</th>'
            f'<th>{s("probability", lang)}</th><th>{s("reasons", lang)}</th>'
            f'<th>{s("records", lang)}</th><th>{s("programme", lang)}</th>'
            f'<th>{s("area", lang)}</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
            + nxt)


def _side_by_side(view: ItemView, lang: str) -> str:
    recs = view.records
    head = "".join(f"<th>{esc(r.uid)}</th>" for r in recs)

    def row(label: str, values: list[object], cls: str = "") -> str:
        differ = len({str(v) for v in values if v not in (None, "")}) > 1
        return (f'<tr class="{cls}{" diff" if differ else ""}"><th>{esc(label)}</th>'
                + "".join(f'<td class="v">{esc(v)}</td>' for v in values) + "</tr>")

    out = [row(s("source", lang), [f"{r.source} ({r.programme})" for r in recs]),
           row(s("person", lang), [r.person_id for r in recs])]
    out.append(f'<tr><th colspan="{len(recs) + 1}">{s("raw", lang)}</th></tr>')
    for k in sorted({k for r in recs for k in r.raw}):
        out.append(row(k, [r.raw.get(k) for r in recs], "raw"))
    out.append(f'<tr><th colspan="{len(recs) + 1}">{s("standardised", lang)}</th></tr>')
    keys = [k for k in (recs[0].standardised if recs else {})
            if any(r.standardised.get(k) is not None for r in recs)]
    for k in keys:
        out.append(row(k, [r.standardised.get(k) for r in recs], "std"))
    return (f'<table id="records"><thead><tr><th></th>{head}</tr></thead><tbody>'
            + "".join(out) + "</tbody></table>")


def _waterfall(view: ItemView, lang: str) -> str:
    if not view.pairs:
        return f"<p>{s('no_waterfall', lang)}</p>"
    def bar(w: float) -> str:
        cls = "pos" if w >= 0 else "neg"  # 12 px per bit, at most 240
        return f'<span class="bar {cls}" style="width:{min(abs(w) * 12, 240):.0f}px"></span>'

    out = []
    for ex in view.pairs:
        rows = [f'<tr><td>{s("prior", lang)}</td><td></td>'
                f'<td class="num">{ex.prior_weight:+.2f}</td><td>{bar(ex.prior_weight)}</td>'
                "</tr>"]
        for e in ex.evidence:
            tf = f" (tf {e.tf_adjustment:+.2f})" if e.tf_adjustment else ""
            rows.append(f'<tr class="step"><td>{esc(e.comparison)}</td><td>{esc(e.label)}</td>'
                        f'<td class="num {"pos" if e.weight >= 0 else "neg"}">{e.weight:+.2f}'
                        f"{esc(tf)}</td><td>{bar(e.weight)}</td></tr>")
        rows.append(f'<tr><th colspan="2">{s("match_weight", lang)}</th>'
                    f'<th class="num">{ex.match_weight:+.2f}</th><th></th></tr>'
                    f'<tr><th colspan="2">{s("match_probability", lang)}</th>'
                    f'<th class="num" id="probability">{ex.match_probability:.4f}</th>'
                    "<th></th></tr>")
        batch = view.batch_probability.get((ex.uid_l, ex.uid_r),
                                           view.batch_probability.get((ex.uid_r, ex.uid_l)))
        blocking = (s("compared", lang, keys=", ".join(ex.shared_keys)) if ex.compared
                    else s("never_compared", lang))
        out.append(f'<h3>{esc(ex.uid_l)} / {esc(ex.uid_r)}</h3><table class="waterfall">'
                   + "".join(rows) + "</table><p>" + esc(blocking)
                   + (". " + esc(s("batch_probability", lang, p=f"{batch:.4f}"))
                      if batch is not None else "") + "</p>")
    return "".join(out)


def item_page(view: ItemView, *, lang: str, next_item: str | None) -> str:
    it = view.item
    reasons = "; ".join(s("reason_" + r, lang) for r in it.reasons)
    head = (f'<h1 id="item-title">{s("item", lang)} {esc(it.item_id)}</h1>'
            f"<p>{esc(s('kind_' + it.kind, lang))} · {esc(s('status_' + it.status, lang))} · "
            f"{s('priority', lang)} {it.priority:.0f} · {esc(reasons)}</p>")
    take = "".join(f'<option value="{esc(r.uid)}">{esc(r.uid)}</option>' for r in view.records)
    can_split = it.kind != "person"
    buttons = (f'<button name="decision" value="same" accesskey="s">{s("same", lang)} '
               f"<kbd>S</kbd></button>"
               + (f'<button name="decision" value="not_same">{s("not_same", lang)} '
                  f"<kbd>N</kbd></button>" if can_split else "")
               + f'<button name="decision" value="take_out">{s("take_out", lang)} '
                 f'<kbd>T</kbd></button> <select name="record" id="record">{take}</select> '
                 f'<button name="decision" value="defer">{s("defer", lang)} <kbd>D</kbd>'
                 "</button>")
    form = (f'<section class="decide"><h2>{s("decide", lang)}</h2>'
            f'<form method="post" action="/item/{quote(it.item_id)}/decide" id="decide">'
            f'<p><label>{s("comment", lang)} <input name="comment" id="comment" size="60" '
            f'maxlength="200"></label></p><p>{buttons}</p></form>'
            f"<p><small>{s('shortcuts', lang)}</small></p>"
            + (f'<p><a id="next-item" href="/item/{quote(next_item)}">→ {esc(next_item)}</a></p>'
               if next_item else "") + "</section>")
    hist = "".join(
        f'<section><h2>{s("history", lang, pid="")}<a href="/person/{quote(pid)}">{esc(pid)}'
        f"</a></h2>" + _events(evs) + "</section>" for pid, evs in view.histories.items())
    cands = ""
    if view.candidates:
        cands = (f'<section><h2>{s("candidates", lang)}</h2><table id="candidates">'
                 + "".join(f"<tr><td>{esc(c.uid)}</td><td>{esc(c.other_uid)}</td>"
                           f'<td class="num">{c.match_probability:.4f}</td>'
                           f"<td>{esc(c.other_person_id)}</td></tr>" for c in view.candidates)
                 + "</table></section>")
    decs = ""
    if view.decisions:
        decs = (f'<section><h2>{s("decisions", lang)}</h2><table id="decisions">'
                + "".join(f"<tr><td>{d.decided_at:%Y-%m-%d %H:%M}</td>"
                          f"<td>{esc(s(d.decision, lang))}</td><td>{esc(d.reviewer)}</td>"
                          f"<td>{esc(d.comment)}</td><td>"
                          + (esc(s("revokes", lang, d=d.revokes)) if d.revokes else "")
                          + "</td></tr>" for d in view.decisions) + "</table></section>")
    return (head + form + f"<section><h2>{s('records', lang)}</h2>"
            + _side_by_side(view, lang) + "</section>"
            + f"<section><h2>{s('waterfall', lang)}</h2>{_waterfall(view, lang)}</section>"
            + decs + hist + cands)


def _events(evs: list) -> str:  # noqa: ANN001 - lookup.EventRow
    return ("<table class='events'>" + "".join(
        f"<tr><td>{e.at:%Y-%m-%d %H:%M}</td><td>{esc(e.kind)}</td><td>{esc(e.record_uid)}</td>"
        f"<td>{esc(e.other_person_id)}</td><td>{esc(e.cause)}</td></tr>" for e in evs)
        + "</table>")


def person_page(view: PersonView, *, lang: str) -> str:
    recs = "".join(f"<tr><td>{esc(r.source)}</td><td>{esc(r.record_key)}</td>"
                   f"<td>{esc(r.programme)}</td></tr>" for r in view.records)
    return (f'<h1>{s("person_page", lang, pid=view.person_id)}</h1>'
            f"<p>{esc(view.status)}</p><table id='person-records'>{recs}</table>"
            f"<h2>{s('history', lang, pid=view.person_id)}</h2>" + _events(view.lineage))
