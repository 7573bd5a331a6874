"""Carry a trained model's parameters onto a changed matching definition.

A changed definition refuses every model trained before it (the hash differs). Retraining
is the principled answer; for the shipped models, whose training data are generated and
whose figures the tests pin, a *migration* keeps every existing level's parameters (by
label) and gives each new level its parameters explicitly:

* ``--split "NEW=OLD"``: the new level takes pairs that an old level held before; both get
  half of the old level's m and u, so every pair keeps the weight it had;
* ``--add "COMPARISON:NEW=m,u"``: new evidence; the comparison's other non-null levels are
  scaled by ``(1 - m)`` and ``(1 - u)`` so that the sums stay 1.

Levels with fixed m and u in the definition (``Level(m=..., u=...)``) need neither. The
migration is recorded in the model's ``metadata.migrations``. Usage::

    python scripts/migrate_model.py models/horn.json --note "why" \\
        --split "years 3 to 5 apart, one year from an age=years 1 to 5 apart" \\
        --add "given_name:swapped with the family or father's name=0.02,0.001"
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from linkage.matching.definition import definition_sha256
from linkage.matching.splink_settings import settings_dict

PARAMS = ("m_probability", "u_probability", "tf_adjustment_weight", "tf_minimum_u_value",
          "fix_m_probability", "fix_u_probability")


def migrate(data: dict[str, Any], split: dict[str, str],
            add: dict[tuple[str, str], tuple[float, float]]) -> list[str]:
    """Rewrite ``data`` (a model file's JSON) in place; returns what was done."""
    old = data["splink_settings"]
    fresh = settings_dict("duckdb")
    done = []
    for new_c, old_c in zip(fresh["comparisons"], old["comparisons"], strict=True):
        name = new_c["output_column_name"]
        before = {lvl.get("label_for_charts"): lvl for lvl in old_c["comparison_levels"]}
        after = {lvl.get("label_for_charts"): lvl for lvl in new_c["comparison_levels"]}
        for label, lvl in after.items():
            if label in before:
                lvl.update({p: before[label][p] for p in PARAMS if p in before[label]})
        for label, lvl in after.items():
            if label in before or lvl.get("fix_m_probability") or lvl.get("is_null_level"):
                continue
            if label in split:
                src = after[split[label]]
                for p in ("m_probability", "u_probability"):
                    lvl[p] = src[p] = src[p] / 2
                done.append(f"{name}: '{label}' split from '{split[label]}'")
            elif (name, label) in add:
                m, u = add[(name, label)]
                for other in new_c["comparison_levels"]:
                    if other is not lvl and not other.get("is_null_level"):
                        other["m_probability"] *= 1 - m
                        other["u_probability"] *= 1 - u
                lvl["m_probability"], lvl["u_probability"] = m, u
                done.append(f"{name}: '{label}' added with m={m}, u={u}")
            else:
                raise SystemExit(f"{name}: new level '{label}' needs --split or --add")
    old["comparisons"] = fresh["comparisons"]  # the rest (prior, ...) as it was
    data["definition_sha256"] = definition_sha256()
    return done


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--split", action="append", default=[], metavar="NEW=OLD")
    ap.add_argument("--add", action="append", default=[], metavar="COMPARISON:NEW=m,u")
    ap.add_argument("--note", required=True, help="why, for metadata.migrations")
    args = ap.parse_args(argv)
    split = dict(s.split("=", 1) for s in args.split)
    add = {}
    for a in args.add:
        where, mu = a.rsplit("=", 1)
        comp, label = where.split(":", 1)
        m, u = (float(x) for x in mu.split(","))
        add[(comp, label)] = (m, u)
    data = json.loads(args.model.read_text(encoding="utf-8"))
    done = migrate(data, split, add)
    data["metadata"].setdefault("migrations", []).append(
        f"{dt.date.today().isoformat()}: {args.note} ({'; '.join(done) or 'no new level'})")
    args.model.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print("\n".join(done) or "no new level", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
