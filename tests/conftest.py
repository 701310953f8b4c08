"""The one backend fixture: every core test runs on every available backend.

numpy, array_api_strict and torch (CPU) always; torch CUDA and CuPy when a GPU is present
(otherwise those parameters are skipped with the reason). Use it as::

    def test_something(bk):
        U = SU(3).random(bk.rng(0), (4,), (4, 4))   # arrays of bk.name on bk.device
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
