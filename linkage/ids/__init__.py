"""Persistent IDs: a run's clusters reconciled with the published persons.

* :mod:`~linkage.ids.reconcile`: pure functions (no database): which cluster keeps which
  ID, merges and splits, retired IDs answering with their successor (``resolve``, the
  one successor walk), reviewer constraints, the ID format and its check character;
* :mod:`~linkage.ids.publish`: a batch's clusters turned into the published persons and
  their ID events, written through :mod:`linkage.register.store`.
"""
