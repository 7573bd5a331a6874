"""The reviewers' page in English and French: the strings, and which language to use.

The language follows the browser (``Accept-Language``) until the reviewer picks one with
the switch (``?lang=``), which is then kept in a cookie.
"""

from __future__ import annotations

LANGS = ("en", "fr")

STRINGS: dict[str, dict[str, str]] = {
    "queue": {"en": "Review queue", "fr": "File de revue"},
    "report": {"en": "Run report", "fr": "Rapport d'exécution"},
    "reviewer": {"en": "Reviewer", "fr": "Réviseur"},
    "login": {"en": "Sign in", "fr": "Connexion"},
    "token": {"en": "Reviewer token", "fr": "Jeton de réviseur"},
    "logout": {"en": "Sign out", "fr": "Déconnexion"},
    "signed_in": {"en": "Signed in as", "fr": "Connecté en tant que"},
    "login_help": {"en": "Paste the reviewer token you were given (linkage token issue "
                         "--role reviewer).",
                   "fr": "Collez le jeton de réviseur qui vous a été remis (linkage token "
                         "issue --role reviewer)."},
    "login_failed": {"en": "This token is not valid.", "fr": "Ce jeton n'est pas valide."},
    "login_refused": {"en": "This token may not use the review page (reviewer or admin "
                            "tokens only).",
                      "fr": "Ce jeton ne donne pas accès à la page de revue (jetons de "
                            "réviseur ou d'administrateur seulement)."},
    "signed_out": {"en": "Signed out.", "fr": "Déconnecté."},
    "set": {"en": "Set", "fr": "Valider"},
    "who_first": {"en": "Say who you are first: your name is recorded with every view and "
                        "decision.",
                  "fr": "Indiquez d'abord votre nom : il est enregistré avec chaque "
                        "consultation et chaque décision."},
    "status": {"en": "Status", "fr": "Statut"}, "kind": {"en": "Kind", "fr": "Type"},
    "programme": {"en": "Programme", "fr": "Programme"}, "area": {"en": "Area", "fr": "Zone"},
    "filter": {"en": "Filter", "fr": "Filtrer"}, "next_page": {"en": "Next page",
                                                              "fr": "Page suivante"},
    "item": {"en": "Item", "fr": "Élément"}, "priority": {"en": "Priority", "fr": "Priorité"},
    "probability": {"en": "Probability", "fr": "Probabilité"},
    "reasons": {"en": "Why", "fr": "Pourquoi"}, "records": {"en": "Records", "fr": "Fiches"},
    "of_total": {"en": "{n} of {total} items", "fr": "{n} éléments sur {total}"},
    "empty": {"en": "Nothing to review here.", "fr": "Rien à revoir ici."},
    "all": {"en": "all", "fr": "tous"},
    "source": {"en": "source", "fr": "source"}, "person": {"en": "person", "fr": "personne"},
    "raw": {"en": "As the source sent it", "fr": "Tel que la source l'a envoyé"},
    "standardised": {"en": "Standardised", "fr": "Normalisé"},
    "waterfall": {"en": "Why this score", "fr": "Pourquoi ce score"},
    "prior": {"en": "prior (two records picked at random)",
              "fr": "a priori (deux fiches prises au hasard)"},
    "match_weight": {"en": "match weight", "fr": "poids de correspondance"},
    "match_probability": {"en": "match probability", "fr": "probabilité de correspondance"},
    "batch_probability": {"en": "last batch run: {p}", "fr": "dernière exécution : {p}"},
    "history": {"en": "History of {pid}", "fr": "Historique de {pid}"},
    "candidates": {"en": "Other candidates of these records",
                   "fr": "Autres candidats pour ces fiches"},
    "decisions": {"en": "Decisions", "fr": "Décisions"},
    "decide": {"en": "Decide", "fr": "Décider"},
    "same": {"en": "Same person", "fr": "Même personne"},
    "not_same": {"en": "Not the same person", "fr": "Pas la même personne"},
    "take_out": {"en": "Take this record out", "fr": "Retirer cette fiche"},
    "defer": {"en": "Defer", "fr": "Reporter"},
    "comment": {"en": "Comment (optional)", "fr": "Commentaire (facultatif)"},
    "shortcuts": {"en": "Keys: S same person, N not the same, T take the record out, "
                        "D defer, J next item.",
                  "fr": "Touches : S même personne, N pas la même, T retirer la fiche, "
                        "D reporter, J élément suivant."},
    "decided": {"en": "Decision {d} recorded on {item}.",
                "fr": "Décision {d} enregistrée pour {item}."},
    "revokes": {"en": "revokes {d}", "fr": "annule {d}"},
    "error": {"en": "Not done: {msg}", "fr": "Non effectué : {msg}"},
    "not_found": {"en": "Not found", "fr": "Introuvable"},
    "person_page": {"en": "Person {pid}", "fr": "Personne {pid}"},
    "no_waterfall": {"en": "No waterfall: a record has no person yet, or there is no model.",
                     "fr": "Pas de détail : une fiche n'a pas encore de personne, ou pas de "
                           "modèle."},
    "kind_pair": {"en": "pair", "fr": "paire"}, "kind_person": {"en": "person",
                                                              "fr": "personne"},
    "kind_enrolment": {"en": "enrolment", "fr": "inscription"},
    "kind_sample": {"en": "sample", "fr": "échantillon"},
    "status_open": {"en": "open", "fr": "ouvert"},
    "status_deferred": {"en": "deferred", "fr": "reporté"},
    "status_decided": {"en": "decided", "fr": "décidé"},
    "status_stale": {"en": "stale", "fr": "périmé"},
    "reason_review_band": {"en": "between the review and match thresholds",
                           "fr": "entre les seuils de revue et de correspondance"},
    "reason_weak_link": {"en": "held by a weak link", "fr": "tenu par un lien faible"},
    "reason_two_national_ids": {"en": "two national IDs", "fr": "deux numéros nationaux"},
    "reason_two_civil_registry_records": {"en": "two civil-registry births",
                                          "fr": "deux naissances à l'état civil"},
    "reason_many_records": {"en": "unusually many records",
                            "fr": "nombre inhabituel de fiches"},
    "reason_irreconcilable_birth_dates": {"en": "birth dates far apart in one roster",
                                          "fr": "dates de naissance éloignées"},
    "reason_weak_enrolment_link": {"en": "enrolled on weak evidence",
                                   "fr": "inscrit sur un indice faible"},
    "reason_clerical_sample": {"en": "random sample (accuracy)",
                               "fr": "échantillon aléatoire (exactitude)"},
    "reason_requested": {"en": "opened by a reviewer", "fr": "ouvert par un réviseur"},
    "compared": {"en": "Compared by blocking keys: {keys}",
                 "fr": "Comparées par les clés de blocage : {keys}"},
    "never_compared": {"en": "Never compared: no blocking key in common.",
                       "fr": "Jamais comparées : aucune clé de blocage en commun."},
}


def s(key: str, lang: str, **kw: object) -> str:
    """The string ``key`` in ``lang`` (English when it has none), formatted."""
    table = STRINGS.get(key)
    text = key if table is None else (table.get(lang) or table["en"])
    return text.format(**kw) if kw else text


def choose(query_lang: str | None, cookie_lang: str | None, accept: str | None) -> str:
    """The page's language: the switch, else the cookie, else the browser's preference."""
    for lang in (query_lang, cookie_lang):
        if lang in LANGS:
            return lang  # type: ignore[return-value]
    best, best_q = "en", -1.0
    for part in (accept or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower().split("-")[0]
        if lang in LANGS and q > best_q:
            best, best_q = lang, q
    return best
