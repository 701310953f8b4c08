"""latticekit: lattice field theory written once against the Python Array API standard.

The same geometry, gauge groups, actions and observables run on NumPy, CuPy and torch arrays;
``latticekit.flows`` trains normalizing flows (torch) on the very same actions.

Examples
--------
>>> import latticekit as lk
>>> lat = lk.Lattice((8, 8))
>>> U = lk.U1.random(lk.backends.rng(0), (lat.nd,), lat.shape)
>>> U.shape
(2, 8, 8)
"""

from __future__ import annotations

import importlib
from typing import Any

from . import backends
from .groups import SU, U1, Group, group_from_name
from .lattice import Lattice, LatticeMismatchError

__version__ = "0.1.0"

_SUBPACKAGES = ("actions", "observables", "exact", "testing", "analysis", "linalg", "mc", "io", "flows", "groups")

__all__ = [
    "Group",
    "Lattice",
    "LatticeMismatchError",
    "SU",
    "U1",
    "__version__",
    "backends",
    "group_from_name",
    *_SUBPACKAGES,
]


def __getattr__(name: str) -> Any:
    # subpackages load on first use, so `import latticekit` never imports torch or h5py
    if name in _SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'latticekit' has no attribute {name!r}")
