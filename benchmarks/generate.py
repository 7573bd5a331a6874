"""``python -m benchmarks.generate``: the synthetic register generator, kept under its old name.

The generator lives in :mod:`linkage.synthetic.generate` (the demo uses it too).
"""

from linkage.synthetic.generate import generate, main

__all__ = ["generate", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
