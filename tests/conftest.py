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

from dataclasses import dataclass
from typing import Any

import pytest

from latticekit import backends


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
