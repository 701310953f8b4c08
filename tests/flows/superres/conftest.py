"""The exactly solvable free theory (lam = 0) on 4x4 as shared by the log Z tests: exact samples from the Cholesky
factor of the covariance built from ``latticekit.exact.free_scalar_propagator`` (a construction that shares nothing
with the estimators) and ``grad log Z`` from ``free_scalar_log_z`` and Wick's theorem."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from latticekit.actions.phi4 import Phi4Action
from latticekit.exact import free_scalar_log_z, free_scalar_propagator

SHAPE = (4, 4)
V = 16


def _exact_grad(kappa: float) -> np.ndarray:
    """``(d log Z/d kappa, d log Z/d lam)`` of the free theory (lam = 0) on 4x4 at ``kappa``."""
    h = 1e-5  # central difference: truncation ~h^2 |f'''| ~ 1e-9, rounding ~1e-16 |log Z| / h ~ 1e-10
    dk = (free_scalar_log_z(SHAPE, kappa=kappa + h) - free_scalar_log_z(SHAPE, kappa=kappa - h)) / (2 * h)
    G = free_scalar_propagator(SHAPE, kappa=kappa, backend="numpy")
    return np.array([dk, -V * (3 * G[0, 0] ** 2 - 2 * G[0, 0])])


def _free_sampler(seed: int, device: str) -> Any:
    """A ``Phi4Sampler`` of exact, independent free-field samples on 4x4 at the action's kappa (lam must be 0)."""
    gen = np.random.default_rng(seed)
    idx = np.indices(SHAPE).reshape(2, -1).T
    diff = (idx[None] - idx[:, None]) % np.array(SHAPE)

    def sample(action: Phi4Action, n: int, previous: torch.Tensor | None, rng: Any) -> torch.Tensor:
        assert float(action.lam) == 0.0  # (draws from its own seeded NumPy stream, not rng)
        G = free_scalar_propagator(SHAPE, kappa=float(action.kappa), backend="numpy")
        chol = np.linalg.cholesky(G[diff[..., 0], diff[..., 1]])  # C_xy = G(y - x)
        phi = gen.normal(size=(n, V)) @ chol.T
        return torch.tensor(phi.reshape((n,) + SHAPE), dtype=torch.float64, device=device)

    return sample


@pytest.fixture
def free_theory() -> SimpleNamespace:
    """``shape``, ``volume``, ``sampler(seed, device)`` and ``exact_grad(kappa)`` of the 4x4 free theory."""
    return SimpleNamespace(shape=SHAPE, volume=V, sampler=_free_sampler, exact_grad=_exact_grad)
