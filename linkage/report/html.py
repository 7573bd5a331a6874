"""The run report as one self-contained HTML page (English or French).

Every chart is a Vega-Lite specification embedded in the page with its data; the three
chart libraries are inlined from the copies installed with Splink, so the page opens
with no internet access. Each figure also has a table (readable without JavaScript) and a
sentence saying what it counts.
"""

from __future__ import annotations

import html
import json
import math
from typing import Any

from linkage.matching.splink_internals import chart_definition, chart_scripts
from linkage.report.data import ReportData

LANGS = ("en", "fr")

TEXT: dict[str, dict[str, str]] = {
    "title": {"en": "Run report", "fr": "Rapport d'exécution"},
    "run": {"en": "Run {run_id}, model {model}, started {started} ({seconds} s), "
                  "clustering {clustering}.",
            "fr": "Exécution {run_id}, modèle {model}, lancée le {started} ({seconds} s), "
                  "regroupement {clustering}."},
    "totals": {"en": "{persons} persons in the register; {multi} of them have records in "
                     "more than one source (a civil registry counts as a source).",
               "fr": "{persons} personnes dans le registre ; {multi} ont des fiches dans "
                     "plusieurs sources (l'état civil compte comme une source)."},
    "sources": {"en": "Records and rejects per source", "fr": "Fiches et rejets par source"},
    "sources_help": {
        "en": "Records: rows kept from the source's current files. Rejected: rows that "
              "could not become a record (no key, no name, unreadable), with their reason "
              "below. Warnings: fields blanked on kept records (a future birth date, an "
              "unknown sex code).",
        "fr": "Fiches : lignes retenues des fichiers actuels de la source. Rejetées : lignes "
              "qui n'ont pas pu devenir une fiche (sans clé, sans nom, illisibles), avec leur "
              "motif ci-dessous. Avertissements : champs vidés sur des fiches retenues (date "
              "de naissance future, code de sexe inconnu)."},
    "reasons": {"en": "Reasons", "fr": "Motifs"},
    "overlap": {"en": "Persons in two sources", "fr": "Personnes dans deux sources"},
    "overlap_help": {
        "en": "Each cell counts the persons with records in both sources; the diagonal "
              "counts the persons of each source. The civil registry is a source like any "
              "other.",
        "fr": "Chaque case compte les personnes ayant des fiches dans les deux sources ; la "
              "diagonale compte les personnes de chaque source. L'état civil est une source "
              "comme les autres."},
    "dups": {"en": "Duplicates inside each source", "fr": "Doublons dans chaque source"},
    "dups_help": {
        "en": "Persons with duplicates: persons holding two records or more of the same "
              "source. Duplicate records: records of the source beyond the first of each "
              "person (records minus persons).",
        "fr": "Personnes en doublon : personnes ayant au moins deux fiches de la même "
              "source. Fiches en double : fiches de la source au-delà de la première de "
              "chaque personne (fiches moins personnes)."},
    "hist": {"en": "Match weights of the compared pairs",
             "fr": "Poids de correspondance des paires comparées"},
    "hist_help": {
        "en": "The match weight is the log2 odds that two records are one person: the prior "
              "plus each comparison's evidence. Pairs at or above the match threshold "
              "(weight {wm:.1f}) are linked; between the review threshold (weight {wr:.1f}) "
              "and it they go to the review queue. Counted over {note}.",
        "fr": "Le poids de correspondance est le log2 de la cote que deux fiches soient une "
              "même personne : l'a priori plus l'apport de chaque comparaison. Les paires au "
              "seuil de correspondance (poids {wm:.1f}) ou au-dessus sont liées ; entre le "
              "seuil de revue (poids {wr:.1f}) et lui, elles vont à la file de revue. "
              "Compté sur : {note}."},
    "mu": {"en": "The model: m and u per level", "fr": "Le modèle : m et u par niveau"},
    "mu_help": {
        "en": "m: how often the level occurs between two records of one person; u: between "
              "two records of different persons. The bar is the level's weight, log2(m/u): "
              "evidence for (right) or against (left).",
        "fr": "m : fréquence du niveau entre deux fiches d'une même personne ; u : entre deux "
              "fiches de personnes différentes. La barre est le poids du niveau, log2(m/u) : "
              "indice pour (à droite) ou contre (à gauche)."},
    "blocking": {"en": "Pairs compared per blocking key",
                 "fr": "Paires comparées par clé de blocage"},
    "blocking_help": {
        "en": "Blocking compares only records that share a key; each pair is counted under "
              "the first key that brings it together. {total} comparisons scored in all. "
              "Capped: records left out of a key whose block exceeded the cap.",
        "fr": "Le blocage ne compare que des fiches partageant une clé ; chaque paire est "
              "comptée sous la première clé qui la réunit. {total} comparaisons en tout. "
              "Plafonnées : fiches écartées d'une clé dont le bloc dépassait le plafond."},
    "events": {"en": "Person ID events of this run", "fr": "Événements d'identifiants"},
    "events_help": {
        "en": "What the run did to the persistent person IDs: created, merged into a "
              "survivor, split, restored, records added and removed. Merges refused by the "
              "no-chaining rules: {refused}.",
        "fr": "Ce que l'exécution a fait des identifiants persistants : créés, fusionnés "
              "dans un survivant, scindés, restaurés, fiches ajoutées et retirées. Fusions "
              "refusées par les règles anti-chaînage : {refused}."},
    "review": {"en": "The review band and the queue", "fr": "La zone de revue et la file"},
    "review_help": {
        "en": "{band} pairs scored between the review threshold ({review}) and the match "
              "threshold ({match}; {one_to_one} for pairs between two sources that list "
              "each person once, weighed one-to-one): neither linked nor dismissed, they "
              "wait for a reviewer. {decisions} decisions recorded so far.",
        "fr": "{band} paires notées entre le seuil de revue ({review}) et le seuil de "
              "correspondance ({match} ; {one_to_one} pour les paires entre deux sources "
              "qui listent chaque personne une fois, pesées une à une) : ni liées ni "
              "écartées, elles attendent un réviseur. {decisions} décisions enregistrées "
              "à ce jour."},
    "accuracy": {"en": "Accuracy measured by the reviewers",
                 "fr": "Exactitude mesurée par les réviseurs"},
    "accuracy_help": {
        "en": "From clerical sample {sample}: {labels} labelled pairs. Precision: of the "
              "compared pairs the register links, the share that are one person. Recall: of "
              "the compared pairs that are one person, the share it links. 95 % intervals.",
        "fr": "Échantillon de contrôle {sample} : {labels} paires étiquetées. Précision : "
              "part des paires liées qui sont une même personne. Rappel : part des paires "
              "d'une même personne que le registre lie. Intervalles à 95 %."},
    "by_threshold": {
        "en": "If the register were clustered at another match threshold (from the same "
              "labels). Suggested: {best}, estimated F1 {f1}.",
        "fr": "Si le registre était regroupé à un autre seuil de correspondance (mêmes "
              "étiquettes). Suggéré : {best}, F1 estimé {f1}."},
    "threshold": {"en": "match threshold", "fr": "seuil de correspondance"},
    "f1_interval": {"en": "F1 95 % interval", "fr": "intervalle à 95 % du F1"},
    "current": {"en": "(the project's)", "fr": "(celui du projet)"},
    "no_accuracy": {"en": "No clerical sample yet: `linkage review sample` draws one.",
                    "fr": "Pas encore d'échantillon de contrôle : `linkage review sample`."},
    "source": {"en": "source", "fr": "source"}, "kind": {"en": "kind", "fr": "type"},
    "records": {"en": "records", "fr": "fiches"}, "rejected": {"en": "rejected",
                                                               "fr": "rejetées"},
    "warnings": {"en": "warnings", "fr": "avertissements"},
    "persons": {"en": "persons", "fr": "personnes"},
    "dup_persons": {"en": "persons with duplicates", "fr": "personnes en doublon"},
    "dup_records": {"en": "duplicate records", "fr": "fiches en double"},
    "pairs": {"en": "pairs", "fr": "paires"}, "key": {"en": "blocking key", "fr": "clé"},
    "capped": {"en": "capped records", "fr": "fiches plafonnées"},
    "event": {"en": "event", "fr": "événement"}, "count": {"en": "count", "fr": "nombre"},
    "comparison": {"en": "comparison", "fr": "comparaison"},
    "level": {"en": "level", "fr": "niveau"}, "weight": {"en": "weight", "fr": "poids"},
    "status": {"en": "status", "fr": "statut"}, "items": {"en": "items", "fr": "éléments"},
    "precision": {"en": "precision", "fr": "précision"}, "recall": {"en": "recall",
                                                                  "fr": "rappel"},
    "table": {"en": "Table", "fr": "Tableau"},
    "probability": {"en": "match probability", "fr": "probabilité"},
}


def t(key: str, lang: str, **kw: Any) -> str:
    text = TEXT[key].get(lang) or TEXT[key]["en"]
    return text.format(**kw) if kw else text


def _json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return (json.dumps(value, default=float).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _table(head: list[str], rows: list[list[Any]], lang: str) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.4g}" if abs(v) < 1 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return html.escape("" if v is None else str(v))

    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return (f"<details><summary>{t('table', lang)}</summary><table><thead><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{body}</tbody></table></details>")


class _Charts:
    def __init__(self) -> None:
        self.specs: list[tuple[str, dict[str, Any]]] = []

    def add(self, spec: dict[str, Any]) -> str:
        cid = f"chart-{len(self.specs)}"
        spec.setdefault("$schema", "https://vega.github.io/schema/vega-lite/v5.json")
        self.specs.append((cid, spec))
        return f'<div class="chart" id="{cid}" data-chart="{cid}"></div>'


def _bar(values: list[dict[str, Any]], x: str, y: str, *, color: str | None = None,
         title: str = "", x_title: str = "", stack: bool = True) -> dict[str, Any]:
    enc: dict[str, Any] = {
        "y": {"field": y, "type": "nominal", "sort": None, "title": None},
        "x": {"field": x, "type": "quantitative", "title": x_title,
              "stack": "zero" if stack else None},
        "tooltip": [{"field": y}, {"field": x, "format": ","}]}
    if color:
        enc["color"] = {"field": color, "type": "nominal", "title": None}
        enc["tooltip"].append({"field": color})
    return {"data": {"values": values}, "mark": "bar", "encoding": enc, "title": title,
            "width": 520}


def render(d: ReportData, *, lang: str = "en", embed_scripts: bool = True,
           base_title: str = "") -> str:
    """The report page. ``embed_scripts=False`` leaves the libraries out (a page that
    already has them, as the web server's does)."""
    lang = lang if lang in LANGS else "en"
    ch = _Charts()
    tr = lambda key, **kw: t(key, lang, **kw)  # noqa: E731
    parts: list[str] = []
    run = d.run
    parts.append(f"<h1>{html.escape(base_title or tr('title'))}</h1><p>" + html.escape(tr(
        "run", run_id=run["run_id"], model=run["model_version"], started=run["started_at"],
        seconds=run["seconds"], clustering=run["clustering"])) + "</p><p>" + html.escape(tr(
            "totals", persons=f"{d.persons:,}", multi=f"{d.persons_in_several_sources:,}"))
        + "</p>")

    # Records and rejects.
    vals = []
    for s in d.sources:
        vals += [{"source": s.name, "what": tr("records"), "n": s.records},
                 {"source": s.name, "what": tr("rejected"), "n": s.rejected}]
    rows = [[s.name, s.kind, s.records, s.rejected, s.warnings, s.persons] for s in d.sources]
    reasons = "".join(
        f"<li><b>{html.escape(src)}</b>: " + "; ".join(
            f"{html.escape(r)} ({n:,})" for r, n in rs[:8]) + "</li>"
        for src, rs in sorted(d.reject_reasons.items()))
    warn = "".join(
        f"<li><b>{html.escape(src)}</b> ({tr('warnings')}): " + "; ".join(
            f"{html.escape(r)} ({n:,})" for r, n in rs[:8]) + "</li>"
        for src, rs in sorted(d.warning_reasons.items()))
    parts.append(f'<section id="sources"><h2>{tr("sources")}</h2><p>{tr("sources_help")}</p>'
                 + ch.add(_bar(vals, "n", "source", color="what"))
                 + _table([tr("source"), tr("kind"), tr("records"), tr("rejected"),
                           tr("warnings"), tr("persons")], rows, lang)
                 + f"<h3>{tr('reasons')}</h3><ul>{reasons}{warn}</ul></section>")

    # Overlap heat map.
    names = list(d.overlap)
    cells = [{"a": a, "b": b, "n": d.overlap[a][b]} for a in names for b in names]
    heat = {"data": {"values": cells}, "width": 60 * max(len(names), 3),
            "height": 60 * max(len(names), 3),
            "encoding": {"x": {"field": "b", "type": "nominal", "sort": names, "title": None},
                         "y": {"field": "a", "type": "nominal", "sort": names, "title": None}},
            "layer": [{"mark": "rect", "encoding": {"color": {
                "field": "n", "type": "quantitative", "title": tr("persons"),
                "scale": {"scheme": "blues", "type": "symlog"}},
                "tooltip": [{"field": "a"}, {"field": "b"}, {"field": "n", "format": ","}]}},
                {"mark": {"type": "text", "fontSize": 12}, "encoding": {
                    "text": {"field": "n", "format": ","},
                    "color": {"condition": {"test": f"datum.n > {_heat_mid(cells)}",
                                            "value": "white"}, "value": "black"}}}]}
    parts.append(f'<section id="overlap"><h2>{tr("overlap")}</h2><p>{tr("overlap_help")}</p>'
                 + ch.add(heat) + _table(["", *names], [[a, *(d.overlap[a][b] for b in names)]
                                                        for a in names], lang) + "</section>")

    # Duplicates.
    dv = []
    for s in d.sources:
        dv += [{"source": s.name, "what": tr("dup_persons"), "n": s.persons_with_duplicates},
               {"source": s.name, "what": tr("dup_records"), "n": s.duplicate_records}]
    dup_spec = _bar(dv, "n", "source", color="what", stack=False)
    dup_spec["encoding"]["yOffset"] = {"field": "what"}
    parts.append(f'<section id="duplicates"><h2>{tr("dups")}</h2><p>{tr("dups_help")}</p>'
                 + ch.add(dup_spec)
                 + _table([tr("source"), tr("records"), tr("persons"), tr("dup_persons"),
                           tr("dup_records")],
                          [[s.name, s.records, s.persons, s.persons_with_duplicates,
                            s.duplicate_records] for s in d.sources], lang) + "</section>")

    # Match-weight histogram: Splink's own chart definition.
    wm = math.log2(d.thresholds["match"] / (1 - d.thresholds["match"]))
    wr = math.log2(d.thresholds["review"] / (1 - d.thresholds["review"]))
    hist = chart_definition("match_weight_histogram.json")
    hist["data"] = {"values": [{"splink_score_bin_low": lo, "splink_score_bin_high": hi,
                                "count_rows": n} for lo, hi, n in d.histogram]}
    hist["width"] = 620
    hist["title"] = {"text": tr("hist")}
    hist_layers = {"$schema": hist.get("$schema"), "width": 620, "height": 300,
                   "layer": [{k: v for k, v in hist.items() if k not in ("$schema", "width",
                                                                         "config")},
                             {"data": {"values": [{"w": wm, "t": "match"},
                                                  {"w": wr, "t": "review"}]},
                              "mark": {"type": "rule", "strokeDash": [4, 3]},
                              "encoding": {"x": {"field": "w", "type": "quantitative"},
                                           "color": {"field": "t", "type": "nominal",
                                                     "title": None}}}]}
    parts.append(f'<section id="histogram"><h2>{tr("hist")}</h2><p>'
                 + html.escape(tr("hist_help", wm=wm, wr=wr, note=d.histogram_note)) + "</p>"
                 + ch.add(hist_layers)
                 + _table([tr("weight"), "", tr("pairs")], [list(h) for h in d.histogram],
                          lang) + "</section>")

    # m / u per level.
    lv = [dict(x, label=f"{x['comparison']}: {x['level']}") for x in d.levels
          if x["weight"] is not None]
    mu_spec = {"data": {"values": lv}, "mark": "bar", "width": 420,
               "encoding": {"y": {"field": "label", "type": "nominal", "sort": None,
                                  "title": None},
                            "x": {"field": "weight", "type": "quantitative",
                                  "title": "log2(m/u)"},
                            "color": {"field": "comparison", "type": "nominal",
                                      "legend": None},
                            "tooltip": [{"field": "label"}, {"field": "m", "format": ".4f"},
                                        {"field": "u", "format": ".5f"},
                                        {"field": "weight", "format": "+.2f"}]}}
    parts.append(f'<section id="model"><h2>{tr("mu")}</h2><p>{tr("mu_help")}</p>'
                 + ch.add(mu_spec)
                 + _table([tr("comparison"), tr("level"), "m", "u", tr("weight")],
                          [[x["comparison"], x["level"], x["m"], x["u"], x["weight"]]
                           for x in d.levels], lang) + "</section>")

    # Blocking.
    bv = [{"key": k, "n": n} for k, n in d.blocking.items()]
    parts.append(f'<section id="blocking"><h2>{tr("blocking")}</h2><p>'
                 + html.escape(tr("blocking_help", total=f"{d.run['comparisons']:,}")) + "</p>"
                 + ch.add(_bar(bv, "n", "key", x_title=tr("pairs")))
                 + _table([tr("key"), tr("pairs"), tr("capped")],
                          [[k, n, d.capped.get(k, 0)] for k, n in d.blocking.items()], lang)
                 + "</section>")

    # ID events.
    ev = [{"kind": k, "n": n} for k, n in d.id_events.items()]
    refused = ", ".join(f"{k} {v:,}" for k, v in d.refused.items()) or "-"
    parts.append(f'<section id="events"><h2>{tr("events")}</h2><p>'
                 + html.escape(tr("events_help", refused=refused)) + "</p>"
                 + ch.add(_bar(ev, "n", "kind", x_title=tr("count")))
                 + _table([tr("event"), tr("count")], [[k, n] for k, n in d.id_events.items()],
                          lang) + "</section>")

    # Review band.
    r = d.review
    band_spec = {"data": {"values": [{"p": p} for p in r["band"]]}, "mark": "bar",
                 "width": 520,
                 "encoding": {"x": {"field": "p", "bin": {"step": 0.05}, "type": "quantitative",
                                    "title": tr("probability")},
                              "y": {"aggregate": "count", "type": "quantitative",
                                    "title": tr("pairs")}}}
    parts.append(f'<section id="review"><h2>{tr("review")}</h2><p>' + html.escape(tr(
        "review_help", band=f"{len(r['band']):,}", review=d.thresholds["review"],
        match=d.thresholds["match"], one_to_one=d.thresholds["one_to_one"],
        decisions=f"{r['decisions']:,}")) + "</p>"
        + ch.add(band_spec)
        + _table([tr("kind"), tr("status"), tr("items")], [list(x) for x in r["by_kind_status"]],
                 lang)
        + _table([tr("reasons"), tr("items")], [list(x) for x in r["open_reasons"]], lang)
        + "</section>")

    # Accuracy.
    e = d.estimate
    if e is None:
        acc = f"<p>{html.escape(tr('no_accuracy'))}</p>"
    else:
        acc = ("<p>" + html.escape(tr("accuracy_help", sample=e.sample_id, labels=e.labels))
               + "</p><table><tbody>"
               + "".join(f"<tr><th>{tr(k)}</th><td class='figure'>{i.estimate:.3f}</td>"
                         f"<td>[{i.low:.3f} – {i.high:.3f}]</td></tr>"
                         for k, i in (("precision", e.precision), ("recall", e.recall)))
               + "</tbody></table>")
        best = e.suggested
        if best is not None:
            acc += ("<p>" + html.escape(tr("by_threshold", best=f"{best.threshold:g}",
                                           f1=f"{best.f1.estimate:.3f}")) + "</p>"
                    + _table([tr("threshold"), tr("precision"), tr("recall"), "F1",
                              tr("f1_interval")],
                             [[f"{c.threshold:g}" + (f" {tr('current')}" if c.current else ""),
                               f"{c.precision.estimate:.3f}", f"{c.recall.estimate:.3f}",
                               f"{c.f1.estimate:.3f}", f"{c.f1.low:.3f} – {c.f1.high:.3f}"]
                              for c in e.by_threshold], lang))
    parts.append(f'<section id="accuracy"><h2>{tr("accuracy")}</h2>{acc}</section>')

    scripts = ""
    if embed_scripts:
        scripts = "".join(f'<script data-lib="{n}">{js}</script>' for n, js in chart_scripts())
    embed = ("<script>(function(){var specs=" + _json(dict(ch.specs)) + ";"
             "Object.keys(specs).forEach(function(id){vegaEmbed('#'+id,specs[id],"
             "{actions:false,renderer:'svg'}).catch(function(err){var el="
             "document.getElementById(id);el.textContent='chart error: '+err;});});})();"
             "</script>")
    body = "".join(parts)
    return (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
            f"<title>{html.escape(tr('title'))} {html.escape(run['run_id'])}</title>"
            f"<style>{CSS}</style>{scripts}</head><body><main>{body}</main>{embed}"
            "</body></html>")


def _heat_mid(cells: list[dict[str, Any]]) -> float:
    top = max((c["n"] for c in cells), default=0)
    return top / 2


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1b1b1b;
background:#fafafa}
main{max-width:1000px;margin:0 auto;padding:1.5rem}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1rem 1.25rem;
margin:1rem 0}
h1{font-size:1.6rem}h2{font-size:1.2rem;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}
td,th{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}
td.figure{font-size:1.3rem;font-weight:600}
details summary{cursor:pointer;color:#3a5a8c}
.chart{margin:.5rem 0;min-height:40px}
"""
