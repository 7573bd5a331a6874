"""Matching: the model's definition and its compilers.

* :mod:`~linkage.matching.levels`: level expressions, each with its SQL and its numpy
  evaluation;
* :mod:`~linkage.matching.definition`: the comparisons, levels and blocking keys, once;
* :mod:`~linkage.matching.splink_settings`: the definition compiled to Splink settings;
* :mod:`~linkage.matching.splink_internals`: the only reader of Splink's private
  attributes (the weights real-time scoring needs).

Importing this package loads neither Splink nor DuckDB; the Splink compilers do.
"""
