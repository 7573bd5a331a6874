"""Ingest: source files into records, rejects and field warnings.

* :mod:`~linkage.ingest.read`: reads CSV / Parquet / JSONL losslessly (skipping files
  whose SHA-256 is unchanged); every row becomes a record, a reject (no usable key, no
  name) or a record with field warnings (a bad field blanked and reported). Raw fields
  are standardised by :mod:`linkage.standardise` and written through
  :mod:`linkage.register.store`.
"""
