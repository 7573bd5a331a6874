"""linkage: deduplication and record linkage for a unified social register.

The public surface; the pieces live in small modules named for what they do.

Example:
    >>> import linkage
    >>> project = linkage.load_project("demo/project.yaml")  # doctest: +SKIP
    >>> result = linkage.run(project)  # doctest: +SKIP
"""

from linkage.config import ConfigError, load_project
from linkage.export import export
from linkage.model import Model, ModelError
from linkage.pipeline import RunError, run
from linkage.register import Register

__all__ = ["ConfigError", "Model", "ModelError", "Register", "RunError", "export",
           "load_project", "run"]
