"""Fixtures of the multiscale-flow tests."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest
import torch


def _su2_quadrature(n_chi: int = 64, n_theta: int = 16, n_phi: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """SU(2) = S^3 in hyperspherical coordinates: points ``U (n, 2, 2)`` and weights (sum 1) of the
    normalised Haar measure ``sin^2 chi sin theta d chi d theta d phi / (2 pi^2)`` (Gauss-Legendre in chi and
    cos theta, the trapezoid rule in phi)."""
    xc, wc = np.polynomial.legendre.leggauss(n_chi)
    chi, wchi = 0.5 * math.pi * (xc + 1), 0.5 * math.pi * wc
    ct, wt = np.polynomial.legendre.leggauss(n_theta)
    phi = 2 * math.pi * np.arange(n_phi) / n_phi
    C, T, P = np.meshgrid(chi, ct, phi, indexing="ij")
    W = (wchi[:, None, None] * np.sin(chi)[:, None, None] ** 2) * wt[None, :, None] * (2 * math.pi / n_phi)
    W = np.broadcast_to(W / (2 * math.pi ** 2), C.shape)
    st = np.sqrt(1 - T ** 2)
    a0, a1, a2, a3 = np.cos(C), np.sin(C) * st * np.cos(P), np.sin(C) * st * np.sin(P), np.sin(C) * T
    p, q = a0 + 1j * a3, a2 + 1j * a1
    U = np.stack([np.stack([p, q], -1), np.stack([-q.conj(), p.conj()], -1)], -2).reshape(-1, 2, 2)
    return torch.as_tensor(U), torch.as_tensor(W.reshape(-1).copy())




@pytest.fixture
def su2_quadrature() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``f(n_chi, n_theta, n_phi) -> (U, w)``: quadrature points and weights of the normalised Haar measure of SU(2)."""
    return _su2_quadrature


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    """Initial parameters of the modules built in a test come from torch's global generator: fix it."""
    torch.manual_seed(1234)
