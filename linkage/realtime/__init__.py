"""Real time: Resolve, Enrol, look-ups and the change feed against the published register.

* :mod:`~linkage.realtime.core`: ``Realtime``, the core object the gRPC service wraps;
* :mod:`~linkage.realtime.index`: the in-memory index (codes per column, blocks, term
  frequencies) scoring a query with the model of the last published run, evaluating the
  level expressions of :mod:`linkage.matching.definition` with numpy;
* :mod:`~linkage.realtime.enrol`: the one enrolment writer thread and its journal;
* :mod:`~linkage.realtime.lookup`: persons, their records and ID history, the change feed;
* :mod:`~linkage.realtime.explain`: the per-comparison explanation of any two records.
"""
