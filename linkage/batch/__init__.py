"""The batch: the nightly run from ingest to an atomically published register.

* :mod:`~linkage.batch.pipeline`: the run (ingest, model, engine, clustering, persistent
  IDs, publish) and its summary;
* :mod:`~linkage.batch.clustering`: scored pairs into clusters that do not chain
  (greedy merges by weight under forbidden pairs), the refusals counted;
* :mod:`~linkage.batch.runs`: one run at a time inside a serving process, its progress
  for ``WatchRun``.

Scoring itself happens in an engine (:mod:`linkage.engines`).
"""
