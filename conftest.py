"""Root pytest configuration: docstring examples of the package are collected as tests
(``--doctest-modules`` in pyproject.toml); modules that need torch are left out when torch is absent."""

from __future__ import annotations

import importlib.util

collect_ignore_glob: list[str] = []
if importlib.util.find_spec("torch") is None:
    collect_ignore_glob += ["latticekit/flows/*", "backends/_kernels_torch.py"]
