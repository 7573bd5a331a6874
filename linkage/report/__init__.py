"""The run report: one self-contained HTML file about the last published run.

* :mod:`~linkage.report.data`: every figure, read from the register (one function each)
  and the model of the last published run;
* :mod:`~linkage.report.html`: the page: a table and a chart for each figure, the
  charts as Vega-Lite specifications (Splink's own where one fits: the match-weight
  histogram) rendered by Vega, Vega-Lite and vega-embed inlined from the copies installed
  with Splink (:func:`linkage.matching.splink_internals.chart_scripts`), so the file opens
  with no internet access. Every figure says in words what it counts.

``linkage report`` writes it; the reviewers' web page serves the same HTML.
"""
