"""linkage: deduplication and record linkage for a unified social register.

The public surface; the pieces live in folders and modules named for what they do (see
docs/ARCHITECTURE.md). Names are imported on first use, so ``import linkage`` (and the
generated gRPC stubs under it) loads neither Splink nor DuckDB.

Example:
    >>> import linkage
    >>> project = linkage.load_project("demo/project.yaml")  # doctest: +SKIP
    >>> result = linkage.run(project)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

from linkage.errors import ConfigError, LinkageError, ModelError, RunError

_LAZY = {"load_project": "linkage.config", "export": "linkage.register.export",
         "Model": "linkage.matching.model", "run": "linkage.batch.pipeline",
         "Register": "linkage.register.database"}

__all__ = ["ConfigError", "LinkageError", "Model", "ModelError", "Register", "RunError",
           "export", "load_project", "run"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'linkage' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
