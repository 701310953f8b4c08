"""Array backends: the only place in latticekit that names an array library.

Physics code receives arrays, asks ``xp = array_namespace(x)`` and computes with the Array API
standard.  This module maps names to namespaces, selects the default backend, moves data between
host and device, provides explicit random number generators (the standard has none), and sets
the thread counts of numba, torch and BLAS on request (:func:`configure_threads`, called by jobs at
start, never at import).

Supported backends: ``"numpy"`` (default), ``"torch"`` (CPU and CUDA), ``"cupy"`` and
``"array_api_strict"`` (used in tests to catch anything outside the standard).

Examples
--------
>>> from latticekit import backends
>>> xp = backends.namespace("numpy")
>>> g = backends.rng(1, backend="numpy")
>>> x = g.normal((2, 3))
>>> backends.array_namespace(x) is xp
True
>>> with backends.use("numpy"):
...     backends.default_backend()
'numpy'
"""

from __future__ import annotations

from ._namespace import (
    BACKENDS,
    BackendError,
    array_namespace,
    available_backends,
    backend_name,
    default_backend,
    default_device,
    device,
    namespace,
    normalize_device,
    use,
)
from ._convert import asarray, from_dlpack, from_numpy, to_backend, to_numpy
from ._dtypes import complex_dtype, complex_dtype_for, is_complex, precision_bits, real_dtype, real_dtype_for
from ._random import Generator, check_rng, rng
from ._fast import fast_path, register_fast_path
from ._lu import LU_OPS, lu_linalg
from ._malloc import configure_malloc
from ._threads import configure_threads, default_thread_count

__all__ = [
    "BACKENDS",
    "BackendError",
    "LU_OPS",
    "Generator",
    "array_namespace",
    "asarray",
    "available_backends",
    "backend_name",
    "check_rng",
    "complex_dtype",
    "complex_dtype_for",
    "configure_malloc",
    "configure_threads",
    "default_backend",
    "default_device",
    "default_thread_count",
    "device",
    "from_dlpack",
    "from_numpy",
    "is_complex",
    "lu_linalg",
    "fast_path",
    "register_fast_path",
    "namespace",
    "normalize_device",
    "precision_bits",
    "real_dtype",
    "real_dtype_for",
    "rng",
    "to_backend",
    "to_numpy",
    "use",
]
