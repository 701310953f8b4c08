"""The one backend fixture: every core test that computes on lattice fields runs on every available backend.

numpy, array_api_strict and torch (CPU) always; torch CUDA and CuPy when a GPU is present
(otherwise those parameters are skipped with the reason). Use it as::

    def test_something(bk):
        U = SU(3).random(bk.rng(0), (4,), (4, 4))   # arrays of bk.name on bk.device

Companions: ``torch_backends`` (every torch device present, for autograd checks), ``numpy_bk`` (NumPy
alone, for the heavy part of a check whose cheaper version runs on every backend through ``bk``; the
test says so with its runtime) and, for the torch-only flow library, ``device`` in tests/flows/conftest.py.
Numerical comparisons go through ``latticekit.testing.assert_close`` (tests/test_assertion_style.py).

Host-only by design (no ``bk``), because the code under test never holds a field on a device:

* ``analysis/``: time series of measurements (autocorrelation, resampling, ESS); NumPy/SciPy on the host;
* ``exact/``: closed-form results, Python and NumPy scalars from scipy.special;
* ``io/``: bytes of configuration files, decoded on the host (the tests of the hand-over of decoded fields
  to a backend take ``bk``);
* ``utils/``: atomic writes, progress bars, files;
* ``app/``: jobs, configuration files, the command line, tables and plots (flow jobs take ``device``);
* ``test_packaging.py``, ``test_imports.py``, ``test_fresh_install.py``, ``test_threads.py``,
  ``test_hygiene.py``, ``test_assertion_style.py``: the package, fresh interpreters, thread settings and
  the test files themselves;
* ``test_backends.py``: the backend layer, which names its backends explicitly (its array tests take ``bk``);
* ``test_fast_paths.py``: the numba kernels, registered for NumPy arrays only, against the generic code.

In the array folders (actions/, groups/, linalg/, mc/, observables/, testing/, theories/, test_lattice.py,
test_loops.py, test_gauge.py, test_argument_checks.py) a test without ``bk`` checks one of:

* argument validation, raised before any array work;
* host-side tables and scalars: gamma matrices, kappa <-> m0 and phi^4 coupling conversions, lattice
  geometry and paths, the theory registry and configuration keys, derived observables of measurement
  series;
* the hypothesis strategies on their default NumPy backend (their ``backend=`` argument is checked on
  every backend) and the C-contiguity of NumPy fields that the numba kernels need;
* a torch-only feature: autograd through couplings and through Langevin, torch flow batches, the Jacobian
  checkers of latticekit.testing;
* the NumPy part of a check whose pieces or a cheaper form run on every backend (the long Nf=2
  Schwinger-model validation, the heavy <exp(-dH)> = 1 run, three of the four dH ~ eps^2 integrator
  set-ups); each says why, with its runtime.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from dataclasses import dataclass
from typing import Any

import pytest

from latticekit import backends



# -- one compilation of each numba kernel across the xdist workers ---------------------------------------------
# On a clean checkout (as in CI) numba's on-disk cache is empty, and two workers that reach the same kernel at
# about the same time both compile it: a kernel costs 5-60 s of LLVM time (about 170 s for all of them on the
# development VM), and duplicated that was most of the 250 s a cold suite took beyond a warm one. numba's
# Dispatcher.compile is wrapped in a lock file per function: the first worker compiles and writes the cache, the
# others wait and then load it from disk (compile looks in the cache first). Test infrastructure only.
# Deadlock-free: a compilation takes the locks of the functions it compiles in call order (a kernel, then the
# helpers it calls), and calls between numba functions form no cycles.
_held: dict[str, int] = {}          # lock name -> depth held by this process (re-entrant within it)
_guard = threading.Lock()


def _lock_dir() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tag = hashlib.sha256(root.encode()).hexdigest()[:12]
    path = os.path.join(tempfile.gettempdir(), f"latticekit-numba-compile-{tag}")
    os.makedirs(path, exist_ok=True)
    return path


def _install_numba_compile_lock() -> bool:
    """Wrap numba's compile in the per-function file lock; False where numba or ``fcntl`` is missing."""
    try:
        import fcntl

        from numba.core import dispatcher
    except ImportError:
        return False
    original = dispatcher.Dispatcher.compile
    if getattr(original, "_latticekit_locked", False):
        return True
    where = _lock_dir()

    def compile(self: Any, sig: Any) -> Any:
        func = getattr(self, "py_func", None)
        if func is None:
            return original(self, sig)
        name = f"{func.__module__}.{func.__qualname__}".replace("<", "_").replace(">", "_")
        with _guard:
            depth = _held.get(name, 0)
            _held[name] = depth + 1
        try:
            if depth:
                return original(self, sig)
            with open(os.path.join(where, name + ".lock"), "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    return original(self, sig)
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        finally:
            with _guard:
                _held[name] -= 1

    compile._latticekit_locked = True  # type: ignore[attr-defined]
    dispatcher.Dispatcher.compile = compile
    return True


_install_numba_compile_lock()


@dataclass(frozen=True)
class Backend:
    """What a test needs to make arrays of one backend on one device."""

    name: str
    device: Any = None

    @property
    def xp(self) -> Any:
        return backends.namespace(self.name)

    def rng(self, seed: int) -> backends.Generator:
        return backends.rng(seed, backend=self.name, device=self.device)

    def asarray(self, x: Any, dtype: Any = None) -> Any:
        return backends.asarray(x, backend=self.name, device=self.device, dtype=dtype)

    def to_numpy(self, x: Any) -> Any:
        return backends.to_numpy(x)

    def __str__(self) -> str:
        return self.name if self.device is None else f"{self.name}-{self.device}"


def _cuda_torch() -> str | None:
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    return None if torch.cuda.is_available() else "no CUDA device visible to torch"


def _cupy() -> str | None:
    try:
        import cupy

        cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # ImportError or CUDA runtime errors
        return f"cupy unavailable: {type(exc).__name__}"
    return None


def _torch_cpu() -> str | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    return None


_PARAMS = [
    pytest.param(Backend("numpy"), id="numpy"),
    pytest.param(Backend("array_api_strict"), id="array_api_strict"),
    pytest.param(Backend("torch", "cpu"), id="torch-cpu",
                 marks=pytest.mark.skipif(_torch_cpu() is not None, reason=str(_torch_cpu()))),
    pytest.param(Backend("torch", "cuda"), id="torch-cuda",
                 marks=pytest.mark.skipif(_cuda_torch() is not None, reason=str(_cuda_torch()))),
    pytest.param(Backend("cupy", "cuda:0"), id="cupy",
                 marks=pytest.mark.skipif(_cupy() is not None, reason=str(_cupy()))),
]


@pytest.fixture(params=_PARAMS)
def bk(request: pytest.FixtureRequest) -> Backend:
    """The backend under test (see module docstring)."""
    return request.param


@pytest.fixture
def numpy_bk() -> Backend:
    """The NumPy backend alone: for the heavy part of a check whose cheaper version runs on every backend
    through ``bk`` (say so, with the runtime, where it is used)."""
    return Backend("numpy")


@pytest.fixture
def torch_backends() -> list[Backend]:
    """torch devices present on this machine (for autograd checks); skips the test without torch."""
    if _torch_cpu() is not None:
        pytest.skip(str(_torch_cpu()))
    out = [Backend("torch", "cpu")]
    if _cuda_torch() is None:
        out.append(Backend("torch", "cuda"))
    return out
