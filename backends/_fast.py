"""One dispatch point for backend-specific fast paths.

Physics code is written once in Array API form. Where a backend has a faster primitive (a fused
kernel, a library routine), it is registered here under a name and looked up at the call site;
the generic code is the fallback, so there are never two full copies of an algorithm.

Built-in fast paths are registered lazily, on the first lookup (nothing happens at import):

* the numba kernels for backend ``"numpy"``, when numba is importable: one module per physics area,
  listed in :data:`NUMBA_MODULES` (``_numba_gauge``: U(1)/SU(N) plaquette, Wilson action and force;
  ``_numba_phi4``: phi^4 action and force; ``_numba_dirac``: the Wilson-Dirac hopping term;
  ``_numba_linalg``: the fused vector updates of CG; ``_numba_cg``: the whole CG loop on the Wilson
  normal operator; ``_numba_sun_exp``: the SU(3) exponential), each
  handing its kernels over through its ``kernels()``; shared machinery in ``_numba_common``. A module
  may also hand over kernels for torch CPU tensors through ``torch_kernels()`` (the compiled CG: the
  tensors are viewed as NumPy arrays without a copy; CUDA tensors and autograd are declined);
* the ``torch.compile`` kernels of ``backends/_kernels_torch.py`` (U(1), phi^4, CG updates) and of
  ``_kernels_torch_sun.py`` / ``_kernels_torch_dirac.py`` (SU(N) gauge, Wilson-Dirac) for backend ``"torch"``,
  only when ``LATTICEKIT_FAST_KERNELS=1`` (compilation costs seconds per kernel).

``LATTICEKIT_FAST_KERNELS=0`` (or ``false``/``no``/``off``) disables every fast path: lookups return
None and the generic code runs. The variable is read at every lookup. A fast path may also decline a
call by returning None (inputs it does not handle); the call site then runs the generic code.
"""

from __future__ import annotations

import importlib
import os
from typing import Any, Callable

from ._namespace import backend_name

_REGISTRY: dict[tuple[str, str], Callable[..., Any]] = {}
_BUILTINS_LOADED = False

#: The numba kernel modules (in ``latticekit.backends``), one per physics area; a new area adds its module here.
NUMBA_MODULES = ("_numba_gauge", "_numba_phi4", "_numba_dirac", "_numba_linalg", "_numba_cg", "_numba_sun_exp")


def _env_flag() -> str:
    return os.environ.get("LATTICEKIT_FAST_KERNELS", "").strip().lower()


def _load_builtins() -> None:
    """Register the built-in fast paths once (numba kernels; torch kernels when opted in)."""
    global _BUILTINS_LOADED
    _BUILTINS_LOADED = True
    for module in NUMBA_MODULES:  # numba itself is imported guarded: without it kernels() is empty
        mod = importlib.import_module(f".{module}", __package__)
        for name, fn in mod.kernels().items():
            _REGISTRY.setdefault((name, "numpy"), fn)  # an explicit registration wins
        # numba kernels that also take torch CPU tensors (zero-copy NumPy views; they decline CUDA and autograd)
        for name, fn in getattr(mod, "torch_kernels", dict)().items():
            _REGISTRY.setdefault((name, "torch"), fn)
    if _env_flag() in ("1", "true", "yes", "on"):
        try:
            from . import _kernels_torch

            _kernels_torch.register()
        except ImportError:
            pass


def register_fast_path(name: str, backend: str, fn: Callable[..., Any]) -> None:
    """Register ``fn`` as the fast implementation of operation ``name`` for ``backend``."""
    _REGISTRY[(name, backend)] = fn


def fast_path(name: str, x: Any) -> Callable[..., Any] | None:
    """The registered fast implementation of ``name`` for the backend of array ``x``, or None."""
    if _env_flag() in ("0", "false", "no", "off"):
        return None
    if not _BUILTINS_LOADED:
        _load_builtins()
    if not _REGISTRY:
        return None
    return _REGISTRY.get((name, backend_name(x)))
