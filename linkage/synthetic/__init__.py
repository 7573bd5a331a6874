"""Synthetic registers: Mali-like (sahel) and Djibouti-like (horn) populations in households.

Used by the demo (``linkage demo``), the tests and the benchmarks alike, so they share one
generator. ``python -m linkage.synthetic.generate --help`` (or ``python -m
benchmarks.generate``) writes rosters, a project and the truth.
"""
