"""The review queue as terminal text (``linkage review ...``)."""

from __future__ import annotations

from linkage.realtime.explain import format_explanation
from linkage.review.decide import Decision
from linkage.review.evidence import Item, ItemView

REASON_TEXT = {
    "review_band": "match probability between the review and match thresholds",
    "weak_link": "a record held in the person by a weak link only",
    "two_national_ids": "two different national IDs in one person",
    "two_civil_registry_records": "two civil-registry records (births) in one person",
    "many_records": "unusually many records",
    "irreconcilable_birth_dates": "two records of one roster with birth years apart",
    "weak_enrolment_link": "enrolled into a person on weak evidence",
    "clerical_sample": "drawn at random for the accuracy estimate",
    "requested": "opened by a reviewer",
}


def _what(it: Item) -> str:
    if it.uid_a and it.uid_b:
        return f"{it.uid_a}  /  {it.uid_b}"
    return f"{it.person_id} ({len(it.record_uids)} records)"


def format_items(items: list[Item], total: int) -> str:
    if not items:
        return "no review items match"
    lines = [f"{'item':<8}{'priority':>9}  {'kind':<10}{'p':>7}  {'reasons':<30}records",]
    for it in items:
        p = f"{it.match_probability:.3f}" if it.match_probability is not None else "-"
        lines.append(f"{it.item_id:<8}{it.priority:>9.1f}  {it.kind:<10}{p:>7}  "
                     f"{','.join(it.reasons)[:29]:<30}{_what(it)}")
    lines.append(f"\n{len(items):,} of {total:,} shown; `linkage review show ITEM` for the "
                 "evidence")
    return "\n".join(lines)


def format_item(view: ItemView) -> str:
    it = view.item
    lines = [f"review item {it.item_id}  ({it.kind}, {it.status}, priority {it.priority:.1f})",
             "why: " + "; ".join(REASON_TEXT.get(r, r) for r in it.reasons),
             f"queued {it.created_at:%Y-%m-%d %H:%M} by {it.created_by}", ""]
    recs = view.records
    fields = ["source", "programme", "person"]
    raw_keys = sorted({k for r in recs for k in r.raw})
    std_keys = [k for k in (recs[0].standardised if recs else {})
                if any(r.standardised.get(k) is not None for r in recs)]
    width = 26
    lines.append(f"{'':<22}" + "".join(f"{r.uid[:width - 1]:<{width}}" for r in recs))

    def row(label: str, values: list[object]) -> None:
        lines.append(f"{label[:21]:<22}" + "".join(
            f"{'' if v is None else str(v)[:width - 1]:<{width}}" for v in values))

    for f in fields:
        row(f, [{"source": r.source, "programme": r.programme, "person": r.person_id}[f]
                for r in recs])
    lines.append("raw values:")
    for k in raw_keys:
        row("  " + k, [r.raw.get(k) for r in recs])
    lines.append("standardised:")
    for k in std_keys:
        row("  " + k, [r.standardised.get(k) for r in recs])
    for ex in view.pairs:
        lines += ["", format_explanation(ex)]
        batch = view.batch_probability.get((ex.uid_l, ex.uid_r),
                                           view.batch_probability.get((ex.uid_r, ex.uid_l)))
        if batch is not None:
            lines.append(f"last batch run scored this pair at {batch:.4f}")
    if view.unexplained:
        lines.append("no waterfall for " + ", ".join(view.unexplained)
                     + " (no person yet, or no model)")
    for pid, events in view.histories.items():
        lines += ["", f"history of {pid}:"]
        lines += [f"  {e.at:%Y-%m-%d %H:%M}  {e.kind:<15}{e.record_uid or '':<28}"
                  f"{e.other_person_id or '':<14}{e.cause or ''}" for e in events[-15:]]
    if view.candidates:
        lines += ["", "other candidates of these records (last run):"]
        lines += [f"  {c.uid:<28}{c.other_uid:<28}{c.match_probability:>8.4f}  "
                  f"{c.other_person_id or ''}{'  linked' if c.linked else ''}"
                  for c in view.candidates]
    if view.decisions:
        lines += ["", "decisions:"]
        lines += [f"  {d.decided_at:%Y-%m-%d %H:%M}  {d.decision:<9} by {d.reviewer}"
                  f"{'  (revokes ' + d.revokes + ')' if d.revokes else ''}"
                  f"{'  - ' + d.comment if d.comment else ''}" for d in view.decisions]
    return "\n".join(lines)


def format_decision(d: Decision) -> str:
    lines = [f"decision {d.decision_id} on {d.item_id}: {d.decision} by {d.reviewer}"]
    if d.revokes:
        lines.append(f"revokes {d.revokes}")
    for a, b, k in d.constraints:
        lines.append(f"  {k}: {a}  {b}")
    if d.events:
        lines.append("person ID events: " + ", ".join(f"{k} {v}" for k, v in
                                                       sorted(d.events.items())))
    lines.append("persons now: " + ", ".join(f"{u} -> {p}" for u, p in sorted(d.persons.items())))
    return "\n".join(lines)
