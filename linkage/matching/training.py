"""Training a model on any register: national IDs in several sources, in one, or in none.

Expectation maximisation (EM) left to itself on household data learns "same household":
blocked on birth year and sex, the pairs that agree on many fields at once are siblings
(same family name, village, phone, mother), and EM's "match" class becomes them (m for an
exact given name fell to 0.03 when we tried). The method here keeps every estimate out of
that trap by construction:

1. **u** by random sampling (Splink's ``estimate_u_using_random_sampling``).
2. **m by EM sessions whose blocking households cannot fill** (:data:`SESSIONS`): each
   session's blocking rule requires agreement on a field that tells household members
   apart: the given name, or the full birth date (only twins share one). A comparison is
   trained only in a session whose blocking leaves it free, so

   * ``given_key + birth_date`` trains the family, father's and grandfather's names, sex
     and the household comparison (pairs sharing a given name *and* a full birth date are
     nearly all the same person, whatever they share besides);
   * ``birth_date`` trains the given name (and again the others): a full date is shared
     by twins, but twins are a small fraction of the pairs sharing one, while siblings in
     general are not in the block at all. The given name is never left free in a block
     that households dominate.

   u stays fixed (from sampling); each session's λ (the share of matches in its block) is
   estimated and recorded.
3. **The birth date, and the prior, by EM over the blocked pairs with every other
   comparison fixed.** No session can train the birth date: every block that leaves it
   free and still requires a household-separating field needs the given name, and pairs
   agreeing on given + family name are namesakes, many of them relatives (a son named
   after his father). So the date's m and the prior λ (probability that two random
   records match) are estimated last, with the names, sex and household *fixed* at their
   household-safe values, by EM over the pairs the batch itself blocks. The prior is the
   expected number of matches among them divided by (all pairs x the blocking's recall),
   and that recall is estimated, not assumed: the share of the matches among pairs
   sharing a full birth date (a capture made without the names the blocking keys rely
   on) that the blocking also reaches.
4. The national-ID comparison keeps its fixed m (it cannot be trained on itself).
   Where national IDs are shared by enough records, an extra EM session blocked on the
   national ID can be added (``use_national_ids=True``); :func:`train_from_national_ids`
   keeps the former method (m from ID pairs as labels) for comparison.
5. :func:`linkage.matching.model.check_parameters` and :func:`check_training` fail loudly
   (:class:`~linkage.matching.model.ModelError`) on implausible results, e.g. names that carry no
   evidence.

The method and its figures (pairs per session, λ, the prior and how it was estimated) are
in the model's metadata. Measurements behind these choices: ``benchmarks/RESULTS.md``,
"Training without national IDs (issue 10)".
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import splink.internals.expectation_maximisation as splink_em
from splink import DuckDBAPI, Linker, block_on

from linkage.engines.duckdb_sql import cap_household_evidence, neutralise_untrained
from linkage.matching import labels as labelled
from linkage.matching.extra import BUILTIN, Definition
from linkage.matching.model import (
    Model,
    ModelError,
    build_settings,
    check_parameters,
    new_version,
)

__all__ = ["SESSIONS", "Session", "check_training", "describe", "em_over_blocked_pairs",
           "floor_unseen_levels", "level_table", "train", "train_from_national_ids"]

Progress = Callable[[str], None]

#: Given-name agreement must be worth at least this many bits (m/u >= 2**bits) in a
#: trained model: below it the names barely identify persons, or training went wrong.
MIN_GIVEN_NAME_BITS = 2.0

#: Floor of an m probability during EM. A level no match of a session reaches (family
#: names "different" among pairs sharing a given name and birth date) has its m fall
#: super-exponentially, to exactly 0 within a few iterations, which Splink 5.0 rejects.
M_FLOOR = 1e-4

#: A session whose block holds fewer pairs is skipped (EM needs a few hundred at least).
MIN_SESSION_PAIRS = 200

#: Fewer expected matches than this in every session: nothing was learned.
MIN_SESSION_MATCHES = 50

#: Comparisons that need at least one household-safe session, or training fails.
REQUIRED_TRAINED = ("given_name",)

#: The comparison trained last, over the blocked pairs, with every other comparison fixed.
FREE_LAST = "birth_date"

#: Pairs agreeing on these columns are a capture of matches made without the names the
#: blocking keys rely on: the share of its matches the blocking reaches estimates recall.
RECALL_CAPTURE = ("birth_date",)


@dataclass(frozen=True)
class Session:
    """One EM session: its blocking columns (all must agree) and why households can't fill it."""

    columns: tuple[str, ...]
    why: str

    @property
    def name(self) -> str:
        return " + ".join(self.columns)


#: The EM sessions, in order (see the module docstring).
SESSIONS: tuple[Session, ...] = (
    Session(("given_key", "birth_date"),
            "siblings have different given names; namesakes rarely share a full date"),
    Session(("birth_date",),
            "only twins share a full birth date, a small share of the pairs that do"),
)

_NID_SESSION = Session(("national_id",), "records sharing a national ID are one person")


def _noop(_: str) -> None:
    pass


@contextlib.contextmanager
def _quiet_splink() -> Iterator[None]:
    """Splink warns for every level a session cannot observe (all father's-name levels on
    a Sahel register); the training report says what was trained instead."""
    lg = logging.getLogger("splink")
    old = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(old)


@contextlib.contextmanager
def _m_floor(floor: float = M_FLOOR) -> Iterator[None]:
    """Keep EM's m probabilities at or above ``floor`` (see :data:`M_FLOOR`).

    Wraps the one function of Splink's EM that writes new m values into the levels.
    """
    original = splink_em.populate_m_u_from_lookup

    def floored(fixed: set[str], level: Any, name: str, lookup: dict[str, Any]) -> None:
        rec = lookup.get(name, {}).get(level.comparison_vector_value)
        if rec is not None and isinstance(rec.get("m_probability"), float):
            rec["m_probability"] = max(rec["m_probability"], floor)
        original(fixed, level, name, lookup)

    splink_em.populate_m_u_from_lookup = floored
    try:
        yield
    finally:
        splink_em.populate_m_u_from_lookup = original


def _fresh_settings(definition: Definition = BUILTIN) -> dict[str, Any]:
    return build_settings(definition).get_settings("duckdb").as_dict()


def _keys(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The blocking keys ``table`` was prepared with (its ``bk_*`` columns): the built-in
    ones and those the project's extra fields ask for."""
    return [c[3:] for (c,) in con.execute(
        f"SELECT column_name FROM (DESCRIBE {table}) WHERE starts_with(column_name, 'bk_')"
    ).fetchall()]


def _seed_settings(settings: dict[str, Any], seed: Model | None) -> str:
    """Start EM from a trained model's m values (same comparison and level SQL)."""
    if seed is None:
        return "Splink's default starting values"
    by_sql = {(c["output_column_name"], lvl["sql_condition"]): lvl
              for c in seed.settings.get("comparisons", []) for lvl in c["comparison_levels"]}
    n = 0
    for comp in settings["comparisons"]:
        for lvl in comp["comparison_levels"]:
            src = by_sql.get((comp["output_column_name"], lvl["sql_condition"]))
            if (src and src.get("m_probability") and not lvl.get("is_null_level")
                    and not lvl.get("fix_m_probability")):
                lvl["m_probability"] = src["m_probability"]
                n += 1
    return f"model {seed.version} ({n} levels)"


def _linker(con: duckdb.DuckDBPyConnection, settings: dict[str, Any], table: str,
            rules: Sequence[Any] | None = None) -> Linker:
    """A Splink linker on ``table``; prediction blocking: ours (``None``) or ``rules``."""
    rules = ([block_on(f"bk_{k}") for k in _keys(con, table)] if rules is None else rules)
    settings = dict(settings, blocking_rules_to_generate_predictions=[
        r.get_blocking_rule("duckdb").as_dict() for r in rules])
    sdf = DuckDBAPI(con).register(table, table_name=f"{table}_splink")
    return Linker(sdf, settings, log_level=logging.ERROR)


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> int:
    ((n,),) = con.execute(sql, list(params)).fetchall()
    return int(n or 0)


def _block_pairs(con: duckdb.DuckDBPyConnection, table: str, cols: Sequence[str]) -> int:
    """Pairs of records agreeing (non-null) on every column of ``cols``."""
    not_null = " AND ".join(f"{c} IS NOT NULL" for c in cols)
    return _count(con, f"SELECT sum(n * (n - 1) // 2) FROM (SELECT count(*) AS n FROM {table} "
                       f"WHERE {not_null} GROUP BY {', '.join(cols)})")


def _trainable(comp: dict[str, Any]) -> bool:
    return any(not lvl.get("is_null_level") and not lvl.get("fix_m_probability")
               for lvl in comp["comparison_levels"])


def _unobserved(settings: dict[str, Any]) -> list[str]:
    """Comparisons random sampling never saw a non-null value of (a Sahel register has no
    father's names, a Horn one no family names): they stay neutral."""
    return [c["output_column_name"] for c in settings["comparisons"] if _trainable(c) and all(
        lvl.get("u_probability") is None for lvl in c["comparison_levels"]
        if not lvl.get("is_null_level") and not lvl.get("fix_u_probability"))]


def floor_unobserved_u(settings: dict[str, Any], max_pairs: float,
                       unobserved: Sequence[str]) -> dict[str, Any]:
    """An agreement level random sampling never saw gets u = 0.5 / ``max_pairs``.

    Two random records almost never share a national ID: among 2 million random pairs
    none may, and Splink leaves that level's u unset, which :func:`neutralise_untrained`
    would turn into m = u, a *same national ID* worth 0 bits. Having seen 0 of N random
    pairs there says u is about 1/N or less, not unknown (as :func:`floor_unseen_levels`
    says of m). Comparisons whose column has no values at all (``unobserved``) stay
    neutral.
    """
    skip = set(unobserved)
    for comp in settings["comparisons"]:
        if comp["output_column_name"] in skip:
            continue
        for lvl in comp["comparison_levels"]:
            if lvl.get("is_null_level") or lvl.get("fix_u_probability"):
                continue
            if lvl.get("u_probability") is None:
                lvl["u_probability"] = 0.5 / max_pairs
    return settings


def floor_unseen_levels(settings: dict[str, Any], sessions: Sequence[dict[str, Any]]
                        ) -> dict[str, Any]:
    """No level gets an m below half a match of the sessions that trained it.

    EM drives the m of a level that no match in its block reaches towards 0 (0.0001, the
    :data:`M_FLOOR`, after a few iterations), which would make that level a veto of
    10 bits or more, e.g. a swapped name order on a small register. Having seen 0 of N
    matches there says m is about 1/N or less, not 0: the floor is 0.5 / N, N the expected
    matches of the sessions that trained the comparison, and the levels are renormalised.
    """
    matches: dict[str, float] = {}
    for rec in sessions:
        for name in rec["trained"]:
            matches[name] = matches.get(name, 0.0) + rec["expected_matches"]
    for comp in settings["comparisons"]:
        n = matches.get(comp["output_column_name"])
        if not n:
            continue
        levels = [lvl for lvl in comp["comparison_levels"]
                  if not lvl.get("is_null_level") and not lvl.get("fix_m_probability")
                  and isinstance(lvl.get("m_probability"), float)]
        if not levels:
            continue
        for lvl in levels:
            lvl["m_probability"] = max(lvl["m_probability"], 0.5 / n)
        total = sum(lvl["m_probability"] for lvl in levels)
        for lvl in levels:
            lvl["m_probability"] /= total
    return settings


def _session_summary(session: Any, cols: Sequence[str], pairs: int) -> dict[str, Any]:
    lam = float(session.core_model_settings.probability_two_random_records_match)
    trained = [c.output_column_name for c in session.core_model_settings.comparisons
               if any(not lvl._fix_m_probability
                      for lvl in c._comparison_levels_excluding_null)]
    return {"blocking": " + ".join(cols), "pairs": pairs, "lambda": round(lam, 6),
            "expected_matches": round(lam * pairs, 1),
            "iterations": len(session._core_model_settings_history),
            "trained": trained}


# --------------------------------------------------------------- EM over blocked pairs


def _sample_table(con: duckdb.DuckDBPyConnection, table: str, max_pairs: float
                  ) -> tuple[str, int]:
    """A uniform record sample whose blocked pairs are about ``max_pairs`` at most.

    A pair survives when both records do, so keeping records with probability p keeps
    about p² of the blocked pairs (bounded above by the sum over keys of their capped
    blocks' pairs) and the share of matching pairs: the prior estimated on the sample is
    the register's.
    """
    bound = sum(_block_pairs(con, table, [f"bk_{k}"]) for k in _keys(con, table))
    keep = min(1.0, math.sqrt(max_pairs / bound)) if bound else 1.0
    out = "linkage_train_sample"
    where = "TRUE" if keep >= 1 else f"hash(uid) % 1000000 < {int(1e6 * keep)}"
    con.execute(f"CREATE OR REPLACE TABLE {out} AS SELECT * FROM {table} WHERE {where}")
    return out, _count(con, f"SELECT count(*) FROM {out}")


def _scored_pairs(con: duckdb.DuckDBPyConnection, settings: dict[str, Any], table: str,
                  free: str, rules: Sequence[Any] | None) -> dict[str, np.ndarray]:
    """Every pair the rules block, with the match weight of all comparisons but ``free``
    (whose weight is neutralised), its gamma, and whether our blocking reaches it."""
    s = copy.deepcopy(settings)
    for comp in s["comparisons"]:
        if comp["output_column_name"] == free:
            for lvl in comp["comparison_levels"]:
                if not lvl.get("is_null_level"):
                    lvl["m_probability"] = lvl["u_probability"] = 0.5
    s["probability_two_random_records_match"] = 0.5  # prior weight 0
    s["retain_intermediate_calculation_columns"] = True
    s["retain_matching_columns"] = True  # Splink writes gamma_ columns only then
    linker = _linker(con, s, table, rules)
    df = linker.inference.predict()
    in_b = " OR ".join(f"l.bk_{k} = r.bk_{k}" for k in _keys(con, table))
    out = con.execute(f"""
        SELECT p.match_weight AS w, p.gamma_{free} AS g, coalesce({in_b}, FALSE) AS in_b
        FROM {df.physical_name} p JOIN {table} l ON l.uid = p.uid_l
        JOIN {table} r ON r.uid = p.uid_r""").fetchnumpy()
    df.drop_table_from_database_and_remove_from_cache()
    return {"w": np.asarray(out["w"], dtype=float), "g": np.asarray(out["g"], dtype=int),
            "in_b": np.asarray(out["in_b"], dtype=bool)}


def em_over_blocked_pairs(con: duckdb.DuckDBPyConnection, settings: dict[str, Any], *,
                          table: str, free: str = FREE_LAST,
                          capture: Sequence[str] = RECALL_CAPTURE,
                          max_pairs: float = 1e6, iterations: int = 200
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """m of comparison ``free`` and the prior, by EM with every other comparison fixed.

    The E-step scores every pair our blocking generates (on a uniform record sample when
    they are more than about ``max_pairs``). The M-step sets m of ``free`` to the
    posterior-weighted share of each level, and the prior to the expected number of
    matches among the blocked pairs divided by (all pairs x the blocking's recall). That
    recall is not assumed: it is the posterior-weighted share of the matches among pairs
    agreeing on ``capture`` (a selection the blocking keys do not make on names) that the
    blocking also reaches, re-estimated at each iteration.

    Returns:
        (settings with m of ``free`` and the prior set, a report for the metadata).
    """
    t0 = time.perf_counter()
    sample, n_s = _sample_table(con, table, max_pairs)
    total_pairs = n_s * (n_s - 1) / 2
    blocked = _scored_pairs(con, settings, sample, free, None)
    captured = _scored_pairs(con, settings, sample, free, [block_on(*capture)])
    con.execute(f"DROP TABLE {sample}")

    comp = next(c for c in settings["comparisons"] if c["output_column_name"] == free)
    levels = [lvl for lvl in comp["comparison_levels"] if not lvl.get("is_null_level")]
    n_lev = len(levels)
    u = np.array([lvl["u_probability"] for lvl in levels], dtype=float)
    m = np.array([lvl.get("m_probability") or 1.0 / n_lev for lvl in levels], dtype=float)

    def level_index(g: np.ndarray) -> np.ndarray:
        # Splink numbers levels from the top: first non-null n_lev-1 ... ELSE 0; null -1.
        return np.where(g >= 0, n_lev - 1 - g, -1)

    def posterior(pairs: dict[str, np.ndarray], idx: np.ndarray) -> np.ndarray:
        lw = np.zeros_like(pairs["w"])
        obs = idx >= 0
        lw[obs] = np.log2(m[idx[obs]] / u[idx[obs]])
        logit = np.clip(pairs["w"] + lw + math.log2(prior / (1 - prior)), -200, 200)
        return 1.0 / (1.0 + np.exp2(-logit))

    idx_b, idx_c = level_index(blocked["g"]), level_index(captured["g"])
    obs_b = idx_b >= 0
    prior, recall, done = 1e-4, 1.0, 0
    post = np.zeros_like(blocked["w"])
    while done < iterations:
        done += 1
        post = posterior(blocked, idx_b)
        post_c = posterior(captured, idx_c)
        recall = float((post_c * captured["in_b"]).sum() / post_c.sum()) if post_c.sum() else 1.0
        recall = max(recall, 0.01)
        counts = np.bincount(idx_b[obs_b], weights=post[obs_b], minlength=n_lev)
        # A level no expected match reaches: m = half a match, not 0 (see floor_unseen_levels).
        new_m = np.maximum(counts, 0.5) / max(counts.sum(), 1.0)
        new_m /= new_m.sum()
        new_prior = float(min(0.5, max(post.sum() / (total_pairs * recall), 1e-12)))
        delta = max(float(np.abs(new_m - m).max()), abs(math.log(new_prior / prior)))
        m, prior = new_m, new_prior
        if delta < 1e-5:
            break
    out = copy.deepcopy(settings)
    out_comp = next(c for c in out["comparisons"] if c["output_column_name"] == free)
    for lvl, mv in zip([x for x in out_comp["comparison_levels"] if not x.get("is_null_level")],
                       m, strict=True):
        lvl["m_probability"] = float(mv)
    out["probability_two_random_records_match"] = prior
    expected = float(post.sum())
    report = {
        "trained": [free], "prior": prior, "iterations": done,
        "records_sampled": n_s, "blocked_pairs": len(blocked["w"]),
        "expected_matches_in_blocking": round(expected, 1),
        "recall_capture": " + ".join(capture), "capture_pairs": len(captured["w"]),
        "estimated_blocking_recall": round(recall, 4),
        "expected_matches": round(expected / recall, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return out, report


# ------------------------------------------------------------------------- training


def train(con: duckdb.DuckDBPyConnection, *, table: str = "linkage_input", seed: int = 42,
          max_pairs: float = 2e6, progress: Progress = _noop, prefix: str = "model",
          seed_model: Model | None = None, use_national_ids: bool = False,
          em_max_pairs: float = 1e6, final_max_pairs: float = 1e6,
          labels: labelled.Labels | None = None,
          definition: Definition = BUILTIN) -> Model:
    """Train a model on the prepared input table, with or without national IDs.

    Args:
        con: the scratch DuckDB holding ``table`` (as
            :func:`linkage.engines.duckdb_sql.prepare_input` makes it).
        seed: random seed of u sampling.
        max_pairs: pairs sampled for u.
        progress: receives one line per step.
        prefix: the model version's prefix.
        seed_model: a trained model whose m values start EM (else Splink's defaults).
        use_national_ids: add an EM session blocked on the national ID when IDs are shared.
        em_max_pairs: pairs per EM session at most (Splink samples larger blocks).
        final_max_pairs: blocked pairs scored by the final EM, about, at most (a uniform
            record sample when the register blocks more).
        labels: reviewers' labelled pairs: m re-estimated from them at the end
            (:mod:`linkage.matching.labels`).
        definition: the project's matching definition: its extra fields' comparisons are
            trained as the built-in ones are (u by sampling, m in the EM sessions, which
            leave them free).

    Raises:
        ModelError: training found nothing to learn from, or the result is implausible.
    """
    t0 = time.perf_counter()
    n = _count(con, f"SELECT count(*) FROM {table}")
    n_nid = _count(con, f"SELECT count(*) FROM (SELECT national_id FROM {table} "
                        "WHERE national_id IS NOT NULL GROUP BY national_id HAVING count(*) > 1)")
    settings = _fresh_settings(definition)
    seeded = _seed_settings(settings, seed_model)
    progress(f"training on {n:,} records ({n_nid:,} national IDs shared by 2+ records); "
             f"EM starts from {seeded}")
    with _quiet_splink():
        linker = _linker(con, settings, table)
        progress(f"  u by random sampling ({max_pairs:,.0f} pairs)")
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
        unobserved = _unobserved(linker.misc.save_model_to_json())
        sessions = list(SESSIONS)
        if use_national_ids and n_nid >= MIN_SESSION_MATCHES:
            sessions.append(_NID_SESSION)
        done: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for i, sess in enumerate(sessions, 1):
            pairs = _block_pairs(con, table, sess.columns)
            if pairs < MIN_SESSION_PAIRS:
                skipped.append({"blocking": sess.name, "pairs": pairs})
                progress(f"  EM session {i}/{len(sessions)} blocked on {sess.name}: only "
                         f"{pairs:,} pairs, skipped")
                continue
            with _m_floor():
                em = linker.training.estimate_parameters_using_expectation_maximisation(
                    block_on(*sess.columns), fix_u_probabilities=True,
                    max_pairs=em_max_pairs if pairs > em_max_pairs else None)
            rec = _session_summary(em, sess.columns, pairs)
            rec["trained"] = [c for c in rec["trained"] if c not in unobserved]
            rec["why"] = sess.why
            done.append(rec)
            progress(f"  EM session {i}/{len(sessions)} blocked on {sess.name}: "
                     f"{pairs:,} pairs, λ={rec['lambda']:.3f} ({rec['expected_matches']:,.0f} "
                     f"expected matches), {rec['iterations']} iterations; trained "
                     f"{', '.join(rec['trained'])}")
        settings = floor_unobserved_u(
            floor_unseen_levels(linker.misc.save_model_to_json(), done), max_pairs, unobserved)
    trained = {c for rec in done for c in rec["trained"]}
    missing = [c for c in REQUIRED_TRAINED if c not in trained and c not in unobserved]
    if missing or sum(r["expected_matches"] for r in done) < MIN_SESSION_MATCHES:
        blocks = "; ".join(f"{r['blocking']}: {r['pairs']:,} pairs"
                           for r in [*done, *skipped])
        raise ModelError(
            f"cannot train {', '.join(missing) or 'any comparison'} without learning "
            f"households: the EM sessions found too few pairs or matches ({blocks}); the "
            "register needs full birth dates on some records, or use a shipped model "
            "(`model:` in project.yaml)")
    caps = definition.weight_caps
    settings = cap_household_evidence(neutralise_untrained(settings), caps)
    # Fail now, before the last EM, when the names carry no evidence.
    _check_given_name(Model(version=f"{prefix} (after the EM sessions)", settings=settings,
                            metadata={}))
    progress(f"  {FREE_LAST} and the prior by EM over the blocked pairs, other "
             "comparisons fixed")
    with _quiet_splink():
        settings, final = em_over_blocked_pairs(con, settings, table=table,
                                                max_pairs=final_max_pairs)
    settings = cap_household_evidence(settings, caps)
    progress(f"  ... {final['blocked_pairs']:,} blocked pairs on {final['records_sampled']:,} "
             f"records, {final['iterations']} iterations: "
             f"{final['expected_matches_in_blocking']:,.0f} expected matches; blocking recall "
             f"{final['estimated_blocking_recall']:.1%} (share of the matches among "
             f"{final['capture_pairs']:,} pairs agreeing on {final['recall_capture']} that "
             f"the blocking reaches); prior {final['prior']:.3g}")
    model = Model(version=new_version(prefix), settings=settings, definition=definition.sha256,
                  extra=definition.extra, metadata={
        "records": n, "national_id_groups": n_nid, "u_max_pairs": max_pairs, "seed": seed,
        "method": ("household-safe EM: u by random sampling; m by EM sessions blocked on "
                   + ", ".join(f"[{r['blocking']}]" for r in done)
                   + f"; {FREE_LAST} m and prior by EM over the blocked pairs with the other "
                   "comparisons fixed; national-ID m fixed"),
        "seeded_from": seeded,
        "sessions": done, "sessions_skipped": skipped,
        "final_em": final,
        "prior_method": ("expected matches among the blocked pairs (EM, names, sex and "
                         "household fixed) / (all pairs x blocking recall); recall estimated "
                         f"as the share of the matches agreeing on {' + '.join(RECALL_CAPTURE)} "
                         "that the blocking reaches"),
        "untrained_no_data": unobserved,
        "training_seconds": round(time.perf_counter() - t0, 1),
    })
    if labels:
        model = labelled.apply(con, model, labels, table=table, linker=_linker,
                               progress=progress)
    model.metadata["warnings"] = check_training(model) + check_parameters(model)
    return model


def _check_given_name(model: Model) -> None:
    exact = model.level_parameters().get("given_name", [{}])[0]
    m, u = exact.get("m"), exact.get("u")
    if not m or not u or math.log2(m / u) < MIN_GIVEN_NAME_BITS:
        raise ModelError(
            f"model {model.version}: implausible parameters: given_name "
            f"'{exact.get('label')}' m={m or 0:.4g} u={u or 0:.4g}: agreement is worth less than "
            f"{MIN_GIVEN_NAME_BITS:g} bits; the given names do not identify persons in this "
            "data (mapped to the wrong column? shuffled?)")


def check_training(model: Model) -> list[str]:
    """Checks on a trained model beyond :func:`linkage.matching.model.check_parameters`.

    Raises:
        ModelError: exact given-name agreement is worth less than
            :data:`MIN_GIVEN_NAME_BITS` (the names do not identify persons in this data,
            e.g. shuffled columns), or the prior is degenerate.
    """
    _check_given_name(model)
    prior = model.settings.get("probability_two_random_records_match")
    if not prior or not 0 < prior < 0.5:
        raise ModelError(f"model {model.version}: implausible prior {prior}")
    return []


def describe(model: Model) -> str:
    """How the model was trained, from its metadata: method, sessions, pairs, prior."""
    md = model.metadata
    lines = [f"method: {md.get('method', 'not recorded')}"]
    if md.get("records"):
        lines.append(f"trained on {md['records']:,} records; national IDs shared by 2+ "
                     f"records: {md.get('national_id_groups', 0):,}; EM started from "
                     f"{md.get('seeded_from', 'n/a')}")
    for s in md.get("sessions", []):
        lines.append(f"  EM blocked on {s['blocking']}: {s['pairs']:,} pairs, "
                     f"λ={s['lambda']:.3f} ({s['expected_matches']:,.0f} expected matches), "
                     f"trained {', '.join(s['trained'])}")
    for s in md.get("sessions_skipped", []):
        lines.append(f"  EM blocked on {s['blocking']}: skipped ({s['pairs']:,} pairs)")
    fe = md.get("final_em")
    if fe:
        lines.append(f"  {', '.join(fe['trained'])} and prior: EM over {fe['blocked_pairs']:,} "
                     f"blocked pairs of {fe['records_sampled']:,} records, other comparisons "
                     f"fixed; {fe['expected_matches_in_blocking']:,.0f} expected matches")
        lines.append(f"  blocking recall estimated {fe['estimated_blocking_recall']:.1%} "
                     f"(matches among {fe['capture_pairs']:,} pairs agreeing on "
                     f"{fe['recall_capture']})")
    if md.get("untrained_no_data"):
        lines.append(f"  no data, neutral: {', '.join(md['untrained_no_data'])}")
    prior = model.settings.get("probability_two_random_records_match")
    if prior:
        lines.append(f"prior (probability two random records match): {prior:.4g} "
                     f"({math.log2(prior / (1 - prior)):+.1f} bits); "
                     f"{md.get('prior_method', 'method not recorded')}")
    lines.extend(labelled.describe(model))
    for w in md.get("warnings", []):
        lines.append(f"warning: {w}")
    return "\n".join(lines)


def level_table(model: Model) -> str:
    """m, u and match weight (log2 m/u, bits) of every level, as a readable table."""
    rows = [("comparison", "level", "m", "u", "weight (bits)")]
    for comp, levels in model.level_parameters().items():
        for lvl in levels:
            m, u = lvl["m"], lvl["u"]
            if m is None or u is None:
                continue
            wt = math.log2(m / u) if m > 0 and u > 0 else float("-inf")
            rows.append((comp, lvl["label"][:40], f"{m:.4f}", f"{u:.5f}", f"{wt:+.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for j, r in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i])
                               for i, c in enumerate(r)))
        if j == 0:
            lines.append("  ".join("-" * wd for wd in widths))
    return "\n".join(lines)


# ------------------------------------------------------------ the former method


def train_from_national_ids(con: duckdb.DuckDBPyConnection, *, table: str = "linkage_input",
                            seed: int = 42, max_pairs: float = 2e6,
                            progress: Progress = _noop, prefix: str = "model") -> Model:
    """The former method, kept for comparison: m from pairs sharing a national ID.

    u by random sampling; m from record pairs sharing a national ID (labels); the prior
    from the national-ID rule with its recall *assumed* to be the squared share of records
    carrying an ID. Fails with fewer than 50 shared IDs.
    """
    n = _count(con, f"SELECT count(*) FROM {table}")
    n_nid = _count(con, f"SELECT count(*) FROM (SELECT national_id FROM {table} "
                        "WHERE national_id IS NOT NULL GROUP BY national_id HAVING count(*) > 1)")
    if n_nid < 50:
        raise ModelError(f"only {n_nid} national IDs are shared by two or more records; "
                         "at least 50 are needed to estimate m from them")
    share = _count(con, f"SELECT count(national_id) FROM {table}") / max(n, 1)
    recall = max(0.02, min(0.9, share**2))
    with _quiet_splink():
        linker = _linker(con, _fresh_settings(), table)
        linker.training.estimate_probability_two_random_records_match(
            [block_on("national_id")], recall=recall)
        linker.training.estimate_u_using_random_sampling(max_pairs=max_pairs, seed=seed)
        linker.training.estimate_m_from_label_column("national_id")
        settings = cap_household_evidence(neutralise_untrained(linker.misc.save_model_to_json()))
    progress(f"trained from {n_nid:,} national-ID groups (prior recall assumed {recall:.3f})")
    model = Model(version=new_version(prefix), settings=settings, metadata={
        "records": n, "national_id_groups": n_nid, "deterministic_recall": recall,
        "u_max_pairs": max_pairs, "seed": seed,
        "method": "u: random sampling; m: national-ID pairs as labels; prior: ID rule, "
                  "recall assumed = (share of records with an ID)^2"})
    model.metadata["warnings"] = check_parameters(model)
    return model
