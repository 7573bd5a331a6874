"""The review queue: what registry administrators are asked, what they decide, what it costs.

This package owns the knowledge of *review*; it writes only through
:mod:`linkage.register.store` and reads the register directly.

* :mod:`~linkage.review.queue`: which pairs and persons become review items after a
  batch run and after an enrolment (the review band, doubtful persons, weak real-time
  links), their **priority**, and their **evidence hash** (an item is never queued twice
  for unchanged evidence; a changed or retired record makes it stale);
* :mod:`~linkage.review.decide`: decisions (same person, not the same person, take this
  record out, defer) with reviewer, time and comment, written as must-link /
  cannot-link constraints (``constraints``) and applied to the published persons at once
  (ID events with cause ``review``); a later decision on the item revokes the earlier one;
* :mod:`~linkage.review.evidence`: an item's evidence: records side by side, the
  waterfall of every pair (:meth:`linkage.realtime.index.Index.explain`), the persons
  and their history, the other candidates;
* :mod:`~linkage.review.accuracy`: the clerical sample (a stratified random sample of
  scored pairs across the probability range) and the precision / recall estimate from
  its labels, with its uncertainty;
* :mod:`~linkage.review.core`: :class:`~linkage.review.core.Review`, the core object the
  gRPC servicer and the command line call.

Batch clustering (:mod:`linkage.batch.clustering`), persistent IDs
(:mod:`linkage.ids.reconcile`) and enrolment (:mod:`linkage.realtime.enrol`) honour the
constraints; they know nothing of items.
"""
