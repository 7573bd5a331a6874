"""Name folding, tokenising, transliteration keys and full-name splitting.

Every function here is pure and cached: names are concentrated (a few hundred given and
family names cover most of a Malian or Somali roster), so a million records touch only a few
thousand distinct strings and the caches turn standardisation into dictionary look-ups.

The transliteration key (:func:`translit_key`) is built in two layers:

1. a *variant table* (``data/name_variants.csv``) mapping known spellings of one name onto
   a canonical spelling (Maxamed / Mohamed / Muhammad, Cismaan / Ousmane ...); a country can
   extend it with its own CSV through :func:`use_variants`;
2. ordered *regex rewrite rules* that fold orthographic differences (French, English,
   Somali and Bambara spellings) so that unseen variants still meet.
"""

from __future__ import annotations

import csv
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from pathlib import Path

import jellyfish

__all__ = [
    "NAME_ORDERS",
    "NameRoles",
    "VariantTable",
    "fold",
    "full_name_order",
    "load_variants",
    "phonetic",
    "rule_key",
    "split_full_name",
    "split_patronymic",
    "tokens",
    "translit_key",
    "use_variants",
]

# String-level caches are bounded (full names are less concentrated than tokens); a million
# entries is a few hundred MB at worst and far more than the distinct names of a country.
_CACHE_SIZE = 1 << 20

#: Accepted values of ``name_order`` for a one-column full name.
NAME_ORDERS: tuple[str, ...] = ("family_given", "given_family", "given_father_grandfather")

# --------------------------------------------------------------------------------------
# fold
# --------------------------------------------------------------------------------------

# Letters NFKD does not decompose. Apostrophes (and the Arabic ʿayn/hamza marks) are
# *removed*, not turned into spaces: "N'Diaye" must equal "Ndiaye", and Kenyan names such as
# "Ng'ang'a" or "Ochieng'" would otherwise break into meaningless one-letter tokens.
_TRANSLATE = str.maketrans(
    {
        "œ": "oe",
        "Œ": "oe",
        "æ": "ae",
        "Æ": "ae",
        "ß": "ss",
        "ø": "o",
        "Ø": "o",
        "đ": "d",
        "Đ": "d",
        "ł": "l",
        "Ł": "l",
        "ı": "i",
        "ɛ": "e",  # Bambara/Manding orthography
        "Ɛ": "e",
        "ɔ": "o",
        "Ɔ": "o",
        "ɲ": "ny",
        "Ɲ": "ny",
        "ŋ": "ng",
        "Ŋ": "ng",
        "'": None,
        "’": None,
        "‘": None,
        "`": None,
        "´": None,
        "ʼ": None,
        "ʻ": None,
        "ʿ": None,
        "ʾ": None,
    }
)
# Anything that is neither a letter nor a digit (in any script) separates tokens.
_NON_WORD = re.compile(r"[\W_]+")


@lru_cache(maxsize=_CACHE_SIZE)
def fold(text: str | None) -> str:
    """Fold a string for comparison: no accents, lower case, single spaces.

    Args:
        text: Any string, or None.

    Returns:
        The folded string; "" for None or blank input.

    Examples:
        >>> fold("  TRAORÉ-Keïta ")
        'traore keita'
        >>> fold("N'Diaye")
        'ndiaye'
        >>> fold(None)
        ''
    """
    if not text:
        return ""
    if text.isascii():
        # Most cells are plain ASCII: skip the Unicode decomposition (cache misses matter
        # when a million rows bring a few hundred thousand distinct full names).
        return _NON_WORD.sub(" ", text.translate(_TRANSLATE).lower()).strip()
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLATE))
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    # A second translate: NFKD can expose characters (e.g. from compatibility forms) that
    # the first pass did not see.
    stripped = stripped.translate(_TRANSLATE).lower()
    return _NON_WORD.sub(" ", stripped).strip()


# --------------------------------------------------------------------------------------
# tokens
# --------------------------------------------------------------------------------------

# Honorifics, kinship particles and articles that come and go between rosters. "Cheick" and
# "Cheikh" are *not* here: in Mali they are given names (Cheick Oumar); only the Arabic and
# Somali spellings of the title are dropped.
_PARTICLES: frozenset[str] = frozenset(
    {
        # pilgrimage titles
        "hadj", "hadji", "hadja", "hadjia", "hadjiya", "haj", "hajj", "haji", "hajji",
        "hajia", "hajiya", "elhadj", "elhadji", "elhaj", "elhadja", "alhadj", "alhadji",
        "alhaji", "alhaj", "alhajji", "elh",
        # ... in Somali spelling (x for the h)
        "xaaji", "xaaja", "xaji", "xajji", "xaj",
        # kinship particles (Tuareg, Moorish, Arabic, Swahili)
        "ag", "ould", "ult", "wuld", "ben", "bin", "bint", "binti", "ibn", "walad",
        # articles left alone by a hyphen or a space ("Mohamed El Moctar")
        "el", "al", "ul",
        # civil and religious titles
        "mme", "mr", "mrs", "ms", "mlle", "mll", "miss", "dr", "prof", "pr", "rev", "hon",
        "sheikh", "sheekh", "shaykh", "shaikh", "sh", "imam", "ustaz", "oustaz",
    }
)  # fmt: skip
# Tokens after which the rest of the name belongs to a husband ("Aminata Diarra épouse
# Traoré"): the person's own name is what precedes them.
_SPOUSE_MARKERS: frozenset[str] = frozenset({"epouse", "epse", "ep", "veuve", "vve"})
# "Abd" + article + noun is one Arabic name written in one to three words.
_ABD_PREFIXES: frozenset[str] = frozenset(
    {"abd", "abdel", "abdal", "abdul", "abdoul", "abdil", "abdur", "abder", "abdes", "abdou"}
)
_ARTICLES: frozenset[str] = frozenset({"al", "el", "ul", "ar", "er", "ur", "as", "es", "ad"})


def _has_letter(token: str) -> bool:
    # Folded tokens hold only letters and digits: "has a letter" is "is not all digits".
    return not token.isdigit()


def _clean_tokens(raw: Sequence[str]) -> list[int]:
    """Indices of ``raw`` (folded tokens) that survive particle removal, abd-merging aside."""
    keep: list[int] = []
    n = len(raw)
    for i, tok in enumerate(raw):
        if tok in _SPOUSE_MARKERS:
            if keep:
                break  # the rest is the spouse's name
            continue
        if tok in _PARTICLES:
            continue
        # "M. Traoré": a lone leading "m" is Monsieur; elsewhere it is an initial.
        if tok == "m" and i == 0 and n > 1:
            continue
        keep.append(i)
    return keep


def _merge_abd(toks: list[str]) -> list[str]:
    """Join "abd"/"abdel"/"abdoul" (+ article) with the following token."""
    out: list[str] = []
    i = 0
    n = len(toks)
    while i < n:
        tok = toks[i]
        # "abdou" alone is a full given name in Mali; only merge it before an article.
        if tok in _ABD_PREFIXES and i + 1 < n:
            j = i + 1
            article = ""
            if toks[j] in _ARTICLES and j + 1 < n:
                article = toks[j]
                j += 1
            if tok != "abdou" or article:
                out.append(tok + article + toks[j])
                i = j + 1
                continue
        out.append(tok)
        i += 1
    return out


@lru_cache(maxsize=_CACHE_SIZE)
def _tokens_tuple(text: str | None) -> tuple[str, ...]:
    folded = fold(text)
    if not folded:
        return ()
    raw = [t for t in folded.split(" ") if _has_letter(t)]
    if not raw:
        return ()
    keep = _clean_tokens(raw)
    # A name made only of particles ("Hadja") is still a name: keep it rather than lose it.
    kept = [raw[i] for i in keep] if keep else raw
    # Articles and particles are removed before merging, so re-read the article-bearing
    # form for "abd al rahman" from the unfiltered sequence.
    if any(t in _ABD_PREFIXES for t in kept):
        kept = _merge_abd(_abd_view(raw, keep))
    return tuple(kept)


def _abd_view(raw: list[str], keep: list[int]) -> list[str]:
    """Kept tokens, plus any article that directly follows an abd-prefix."""
    keep_set = set(keep)
    out: list[str] = []
    for i, tok in enumerate(raw):
        if i in keep_set:
            out.append(tok)
        elif tok in _ARTICLES and i > 0 and raw[i - 1] in _ABD_PREFIXES and (i - 1) in keep_set:
            out.append(tok)
    return out


def tokens(text: str | None) -> list[str]:
    """Folded name tokens without honorifics and particles, "abd" compounds joined.

    Args:
        text: A raw name (one or several words).

    Returns:
        The tokens; never empty when the input had letters (a name made only of particles
        keeps them).

    Examples:
        >>> tokens("El Hadj Mamadou  TRAORÉ")
        ['mamadou', 'traore']
        >>> tokens("Abd al-Rahman ould Cheikh")
        ['abdalrahman', 'cheikh']
        >>> tokens("Hadja")
        ['hadja']
    """
    return list(_tokens_tuple(text))


# --------------------------------------------------------------------------------------
# transliteration key: rules
# --------------------------------------------------------------------------------------

# Somali orthography writes ʿayn as "c" (Cali, Cabdi, Jaamac) and long vowels doubled;
# French writes "c" for /k/ or /s/ (Coulibaly, Cissé). Only tokens that *look* Somali lose
# their "c"; the common short Somali names without a signal (Cali, Cumar) are in the table.
_SOMALI_SIGNAL = re.compile(r"x|aa|ii|uu|oo|ee|^cabd")
_SOMALI_C = re.compile(r"c(?!h)")

#: Ordered rewrite rules applied to a folded, space-free token. Order matters: consonant
#: digraphs before single letters, vowel classes before doubled-letter collapse, and the
#: final-vowel drop last.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        # "abd" + vowel(s) + article "l": Abdel/Abdoul/Abdul/Abdi/Abderrahmane -> "abd".
        # (?=...{3}) keeps short names such as Abdou and Abdi whole.
        (r"^abd[aeiouy]*l*(?=[a-z]{3})", "abd"),
        (r"x", "h"),  # Somali x = Arabic ḥ (Xasan = Hassan)
        (r"tch", "ch"),
        (r"ch", "sh"),  # French ch (Aïcha, Rachid) = English/Somali sh
        (r"ck", "k"),
        (r"c(?=[eiy])", "s"),  # Cissé = Sissé
        (r"c", "k"),  # Coulibaly = Koulibaly, Camara = Kamara
        (r"q", "k"),  # Qadir = Kadir
        (r"kh", "k"),
        (r"gh", "g"),
        (r"dh", "d"),  # Somali/Swahili retroflex d, Ramadhan = Ramadan
        (r"th", "t"),  # Muthoni = Mutoni, Berthé = Berte
        (r"ph", "f"),
        (r"dj", "j"),  # Djara = Jara
        (r"(?:^|(?<=[^aeiou]))d[iy](?=[aeou])", "j"),  # Diarra = Jara, Diakité = Jakite
        (r"w", "u"),  # Trawore = Traore, Awa = Aoua
        (r"o", "u"),  # Ousmane = Usman = Osman, Omar = Oumar
        (r"y", "i"),  # Coulibaly = Kulibali
        (r"(?<=[aeiu])h(?=[aeiu])", ""),  # Mahamadou = Mamadou
        (r"(?<=.)h$", ""),  # Jalloh = Diallo, Abdallah = Abdalla
        (r"(.)\1+", r"\1"),  # doubled letters and Somali long vowels
        # Final vowel: Ibrahima = Ibrahim, Mamadou = Mamadu. Short names keep it, where it
        # is most of what tells them apart (Ali / Alou, Abdi / Abdou, Kone / Kane).
        (r"^(.{4,})[aeiu]$", r"\1"),
    )
)


@cache
def rule_key(token: str) -> str:
    """The rule-based part of the key, without the variant table.

    Args:
        token: A name token (folded or not; spaces are removed).

    Returns:
        The rewritten token.

    Examples:
        >>> rule_key("Koulibaly"), rule_key("Trawore"), rule_key("Cabdiraxmaan")
        ('kulibal', 'traur', 'abdrahman')
    """
    t = fold(token).replace(" ", "")
    if "c" in t and _SOMALI_SIGNAL.search(t):
        t = _SOMALI_C.sub("", t)
    for pattern, repl in _RULES:
        t = pattern.sub(repl, t)
    return t


# --------------------------------------------------------------------------------------
# transliteration key: variant table
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VariantTable:
    """Look-ups built from one or more variant CSVs.

    Attributes:
        canonical: folded variant -> folded canonical spelling (as written in the CSVs).
        by_folded: folded variant (or canonical) -> key of its canonical.
        by_rule_key: rule key of a variant -> key of its canonical, for unseen spellings
            whose rule key meets a listed variant's. Ambiguous rule keys are left out.
    """

    canonical: dict[str, str]
    by_folded: dict[str, str]
    by_rule_key: dict[str, str]


def _read_variant_rows(source: Iterable[str]) -> list[tuple[str, str]]:
    rows = []
    for row in csv.DictReader(line for line in source if not line.startswith("#")):
        variant = fold(row.get("variant")).replace(" ", "")
        canonical = fold(row.get("canonical")).replace(" ", "")
        if variant and canonical:
            rows.append((variant, canonical))
    return rows


def _build_table(rows: list[tuple[str, str]]) -> VariantTable:
    canonical: dict[str, str] = {}
    for variant, canon in rows:
        # Later files override earlier ones: a country CSV can re-home a variant.
        canonical[variant] = canon
    # A canonical that is itself listed as a variant of another name follows that name.
    for variant, canon in list(canonical.items()):
        seen = {variant}
        while canon in canonical and canonical[canon] != canon and canon not in seen:
            seen.add(canon)
            canon = canonical[canon]
        canonical[variant] = canon
    canon_keys = {c: rule_key(c) for c in set(canonical.values())}
    by_folded = dict(canon_keys)
    by_folded.update({v: canon_keys[c] for v, c in canonical.items()})
    owners: dict[str, set[str]] = {}
    for v, c in canonical.items():
        owners.setdefault(rule_key(v), set()).add(canon_keys[c])
    key_values = set(canon_keys.values())
    by_rule_key = {
        rk: next(iter(keys))
        for rk, keys in owners.items()
        # Ambiguous (two names) or owned by another name's canonical key: let rules decide.
        if len(keys) == 1 and (rk not in key_values or rk in keys)
    }
    return VariantTable(canonical=canonical, by_folded=by_folded, by_rule_key=by_rule_key)


def load_variants(extra_paths: Sequence[str | Path] = ()) -> VariantTable:
    """Load the packaged variant table, extended by country CSVs.

    Args:
        extra_paths: CSV files with columns ``variant,canonical,note``; rows override the
            packaged table (and earlier files) for the same variant.

    Returns:
        The combined :class:`VariantTable` (cached per tuple of paths).

    Examples:
        >>> load_variants().canonical["maxamed"]
        'muhammad'
    """
    return _load_variants(tuple(str(p) for p in extra_paths))


@cache
def _load_variants(extra_paths: tuple[str, ...]) -> VariantTable:
    text = resources.files(__package__).joinpath("data/name_variants.csv").read_text("utf-8")
    rows = _read_variant_rows(text.splitlines())
    for path in extra_paths:
        with open(path, encoding="utf-8", newline="") as fh:
            rows.extend(_read_variant_rows(fh))
    return _build_table(rows)


_active: list[VariantTable] = []


def _table() -> VariantTable:
    if not _active:
        _active.append(_load_variants(()))
    return _active[0]


def use_variants(extra_paths: Sequence[str | Path] = ()) -> VariantTable:
    """Make the packaged table plus ``extra_paths`` the one :func:`translit_key` uses.

    Clears the key caches. Call it once per process (each worker of a pool) before
    standardising.

    Args:
        extra_paths: Country CSVs, as for :func:`load_variants`.

    Returns:
        The table now in use.
    """
    table = _load_variants(tuple(str(p) for p in extra_paths))
    _active[:] = [table]
    for fn in KEY_CACHES:
        fn.cache_clear()
    return table


@cache
def translit_key(token: str | None) -> str:
    """Transliteration-aware key of one name token.

    The variant table is consulted first (by folded spelling, then by rule key); otherwise
    the rule key is returned.

    Args:
        token: One name token (any case, accents allowed).

    Returns:
        The key; "" for empty input.

    Examples:
        >>> translit_key("Mahamadou") == translit_key("Mamadu") == translit_key("Mohamadou")
        True
        >>> translit_key("Maxamed") == translit_key("Muhammad")
        True
        >>> translit_key("Coulibaly"), translit_key("Diarra"), translit_key("Moussa")
        ('kulibal', 'jara', 'musa')
    """
    t = fold(token).replace(" ", "")
    if not t:
        return ""
    table = _table()
    hit = table.by_folded.get(t)
    if hit is not None:
        return hit
    rk = rule_key(t)
    return table.by_rule_key.get(rk, rk)


@cache
def phonetic(token: str | None) -> str:
    """Metaphone code of a token's transliteration key (a coarser blocking level).

    Examples:
        >>> phonetic("Koulibaly") == phonetic("Kulibali")
        True
        >>> phonetic("")
        ''
    """
    key = translit_key(token)
    if not key:
        return ""
    # Metaphone ignores non-ASCII letters; fall back to the key for other scripts.
    return jellyfish.metaphone(key) or key


#: Caches that depend on the active variant table; :func:`use_variants` clears them. Other
#: modules caching keys append their functions here.
KEY_CACHES: list = [translit_key, phonetic]


# --------------------------------------------------------------------------------------
# full names
# --------------------------------------------------------------------------------------


def _is_upper_word(word: str) -> bool:
    letters = [ch for ch in word if ch.isalpha()]
    return len(letters) >= 2 and all(ch.isupper() for ch in letters)


@lru_cache(maxsize=_CACHE_SIZE)
def _case_split(text: str) -> tuple[str, str] | None:
    """(given, family) when a name mixes an UPPER-CASE family name with Title-case given
    names ("TRAORE Moussa", "Moussa TRAORE"); None when case carries no signal."""
    words = text.split()
    flags = [_is_upper_word(w) for w in words]
    if not any(flags) or all(flags):
        return None
    # Lower-case or single-letter words (initials) go with the given names.
    given = " ".join(w for w, f in zip(words, flags, strict=True) if not f)
    family = " ".join(w for w, f in zip(words, flags, strict=True) if f)
    given_t, family_t = _tokens_tuple(given), _tokens_tuple(family)
    if not given_t or not family_t:
        return None
    return " ".join(given_t), " ".join(family_t)


class NameRoles:
    """How often each name token is a given name and how often a family name, in records
    whose order is known (separate given and family columns).

    Given and family names come from different stocks nearly everywhere (Mamadou, Aminata
    / Traore, Coulibaly), so a full-name column with no case marker can be read both ways
    and the register's own names say which reading is likely. A roster whose enumeration
    teams wrote "Mamadou Traore" and "TRAORE Mamadou" in one column is common; the order a
    user declares for such a column is then right for most rows, not all.

    Tokens are compared by transliteration key (Moussa / Musa count together). Identity
    is the object (hash by ``id``): one table serves a whole ingest, and the caches keyed
    on it stay small.
    """

    #: The other reading must be this many bits more likely (about 16 times) to win.
    SWAP_BITS = 4.0
    #: A token seen fewer times (as either role) carries no evidence either way.
    MIN_SEEN = 3

    def __init__(self, given: dict[str, int], family: dict[str, int]):
        self.given = given
        self.family = family
        self.n_given = max(sum(given.values()), 1)
        self.n_family = max(sum(family.values()), 1)
        self.vocab = max(len(set(given) | set(family)), 1)

    def __len__(self) -> int:
        return self.n_given + self.n_family

    def bits(self, key: str) -> float:
        """log2 P(key | given name) / P(key | family name), smoothed; 0 when rarely seen."""
        g, f = self.given.get(key, 0), self.family.get(key, 0)
        if g + f < self.MIN_SEEN:
            return 0.0
        return math.log2(((g + 0.5) / (self.n_given + 0.5 * self.vocab))
                         / ((f + 0.5) / (self.n_family + 0.5 * self.vocab)))

    def order(self, toks: Sequence[str], declared: str) -> str:
        """The order to read ``toks`` in: ``declared``, or the other one when the names
        say it is at least :data:`SWAP_BITS` more likely.

        Only the two end tokens change roles between the readings (``family_given``
        reads the first as the family name; ``given_family`` the last), so the
        likelihood ratio of the other reading is the difference of their log odds.
        """
        if len(toks) < 2 or declared not in ("family_given", "given_family"):
            return declared
        first, last = self.bits(translit_key(toks[0])), self.bits(translit_key(toks[-1]))
        if declared == "family_given" and first - last >= self.SWAP_BITS:
            return "given_family"
        if declared == "given_family" and last - first >= self.SWAP_BITS:
            return "family_given"
        return declared


@lru_cache(maxsize=_CACHE_SIZE)
def full_name_order(text: str | None, order: str, roles: NameRoles | None) -> str:
    """The order :func:`split_full_name` reads ``text`` in, given the register's
    :class:`NameRoles`: a case marker decides first, then the names' roles, then
    ``order`` as declared."""
    if roles is None or not text or order not in ("family_given", "given_family"):
        return order
    if _case_split(text) is not None:
        return order
    return roles.order(_tokens_tuple(text), order)


KEY_CACHES.append(full_name_order)


@lru_cache(maxsize=_CACHE_SIZE)
def split_full_name(text: str | None, order: str) -> tuple[str, str]:
    """Split a one-column full name into (given, family) or (given, rest).

    Args:
        text: The raw full name.
        order: ``'family_given'``, ``'given_family'`` or ``'given_father_grandfather'``.
            For the first two, a mix of UPPER-CASE and Title-case words overrides the
            order (the upper-case words are the family name).

    Returns:
        ``(given, family)`` folded and particle-free; for ``'given_father_grandfather'``,
        ``(given, father and grandfather)``. Compound given names stay together.

    Raises:
        ValueError: ``order`` is not one of :data:`NAME_ORDERS`.

    Examples:
        >>> split_full_name("Diarra Mamadou Lamine", "family_given")
        ('mamadou lamine', 'diarra')
        >>> split_full_name("Moussa TRAORE", "family_given")
        ('moussa', 'traore')
        >>> split_full_name("Cali Xasan Faarax", "given_father_grandfather")
        ('cali', 'xasan faarax')
    """
    if order not in NAME_ORDERS:
        raise ValueError(f"unknown name order {order!r}; expected one of {NAME_ORDERS}")
    if not text:
        return "", ""
    if order == "given_father_grandfather":
        given, father, grandfather = split_patronymic(text)
        return given, " ".join(t for t in (father, grandfather) if t)
    by_case = _case_split(text)
    if by_case is not None:
        return by_case
    toks = _tokens_tuple(text)
    if not toks:
        return "", ""
    if len(toks) == 1:
        # One word: position tells which part it is.
        return ("", toks[0]) if order == "family_given" else (toks[0], "")
    if order == "family_given":
        return " ".join(toks[1:]), toks[0]
    return " ".join(toks[:-1]), toks[-1]


@lru_cache(maxsize=_CACHE_SIZE)
def _column_tokens(text: str | None) -> tuple[str, ...]:
    """The tokens of one patronymic name column, in reading order: when the column mixes
    Title-case and UPPER-CASE words, the French-style form, the Title-case word(s) are the
    given name and come first ("AHMED Zahra", "CABDI Xaawo": zahra ahmed, xaawo cabdi).

    Only a mix inside one column is a marker: two columns typed in different cases say
    nothing (a civil registry that writes the father's name in capitals)."""
    if not text:
        return ()
    words = text.split()
    flags = [_is_upper_word(w) for w in words]
    if any(flags) and not all(flags):
        given = _tokens_tuple(" ".join(w for w, f in zip(words, flags, strict=True) if not f))
        rest = _tokens_tuple(" ".join(w for w, f in zip(words, flags, strict=True) if f))
        if given and rest:
            return given + rest
    return _tokens_tuple(text)


@lru_cache(maxsize=_CACHE_SIZE)
def patronymic_chain(given: str | None, father: str | None = None,
                     grandfather: str | None = None, roles: NameRoles | None = None
                     ) -> tuple[tuple[str, ...], bool]:
    """A patronymic name as one chain of tokens (given, father's, grandfather's, ...) read
    from the columns in order, and whether ``roles`` moved the given name to the front.

    Rosters keep the three names in varying columns: "Mohamed Moussa" as the first name
    and the grandfather's name as the "father's name", two names in one column and none
    in the next. Positions in the chain, not the column a token came in, say which name
    it is. In each column a case marker decides first (:func:`_column_tokens`). Then the
    register's :class:`NameRoles` (given names against fathers' names): when another
    token is at least :data:`NameRoles.SWAP_BITS` likelier a given name than the first
    one, it is the given name ("ELMI XAAJO HIBO", a woman: hibo elmi xaajo). Men's
    names are both given and fathers' names, so only clear cases move.

    Examples:
        >>> patronymic_chain("Mohamed Moussa", "Mohamed")
        (('mohamed', 'moussa', 'mohamed'), False)
        >>> patronymic_chain("CABDI Xaawo")
        (('xaawo', 'cabdi'), False)
    """
    chain = _column_tokens(given) + _column_tokens(father) + _column_tokens(grandfather)
    if roles is None or len(chain) < 2:
        return chain, False
    bits = [roles.bits(translit_key(t)) for t in chain]
    best = max(range(len(chain)), key=lambda i: (bits[i], -i))
    if best != 0 and bits[best] > 0 and bits[best] - bits[0] >= roles.SWAP_BITS:
        return (chain[best], *chain[:best], *chain[best + 1:]), True
    return chain, False


KEY_CACHES.extend([_column_tokens, patronymic_chain])


def chain_parts(chain: Sequence[str]) -> tuple[str, str, str]:
    """(given, father, grandfather) of a :func:`patronymic_chain`: names beyond the
    third (great-grandfather, clan) stay with the grandfather, so that no token is lost
    from ``name_keys``."""
    return (chain[0] if chain else "", chain[1] if len(chain) > 1 else "",
            " ".join(chain[2:]))


@lru_cache(maxsize=_CACHE_SIZE)
def split_patronymic(text: str | None) -> tuple[str, str, str]:
    """Split a Somali/Djiboutian-style name into (given, father, grandfather).

    Names beyond the third (great-grandfather, clan) stay with the grandfather so that no
    token is lost from ``name_keys``. A French-style form writes the given name in Title
    case and the rest in UPPER CASE, in either order ("AHMED Zahra", "Zahra AHMED
    HASSAN"): the words not in upper case are the given name and the upper-case words,
    in order, the father's and grandfather's names (:func:`patronymic_chain`).

    Examples:
        >>> split_patronymic("Maxamed Cali Xasan")
        ('maxamed', 'cali', 'xasan')
        >>> split_patronymic("AHMED HASSAN Zahra")
        ('zahra', 'ahmed', 'hassan')
        >>> split_patronymic("Ahmed bin Salim bin Omar Said")
        ('ahmed', 'salim', 'omar said')
        >>> split_patronymic("Ali")
        ('ali', '', '')
    """
    return chain_parts(patronymic_chain(text)[0])
