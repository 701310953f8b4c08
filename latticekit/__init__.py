"""latticekit: lattice field theory written once against the Python Array API standard.

The same geometry, gauge groups, actions and observables run on NumPy, CuPy and torch arrays;
``latticekit.flows`` trains normalizing flows (torch) on the very same actions.

``import latticekit`` loads the geometry, the groups and the backends only. Every other subpackage
and module -- ``lk.gauge``, ``lk.actions``, ``lk.observables``, ``lk.mc``, ``lk.io``, ``lk.flows``,
``lk.utils``, ... (:data:`SUBMODULES`) -- is an attribute that loads on first use, so the import never
pulls in torch or h5py.

Examples
--------
>>> import latticekit as lk
>>> lat = lk.Lattice((8, 8))
>>> U = lk.gauge.random_gauge_field(lk.U1, lat, lk.backends.rng(0))
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

#: Subpackages and modules reachable as attributes of ``latticekit`` (loaded on first access).
#: A new subpackage that the docs use as ``lk.<name>`` is added here.
SUBMODULES = ("actions", "analysis", "app", "exact", "flows", "gauge", "groups", "io", "linalg", "mc",
              "observables", "testing", "theories", "utils")


__all__ = [
    "Group",
    "Lattice",
    "LatticeMismatchError",
    "SU",
    "SUBMODULES",
    "U1",
    "__version__",
    "backends",
    "group_from_name",
    *SUBMODULES,
]


def __getattr__(name: str) -> Any:
    # subpackages load on first use, so `import latticekit` never imports torch or h5py
    if name in SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'latticekit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(SUBMODULES))
