"""Learnable phi^4 couplings and the log Z gradient (Sec. V, eqs. 34-36 of the super-resolving flows paper).

References: autograd of the library's phi^4 action for the closed-form coupling derivatives of eq. (35); the
exactly solvable free theory (``latticekit.exact``) for ``grad log Z``: d log Z/d kappa by central differences
of ``free_scalar_log_z`` (and by Wick's theorem, ``2 V sum_mu G(e_mu)``), d log Z/d lam at lam = 0 by Wick's
theorem, ``-V (3 G(0)^2 - 2 G(0))``. Exact free samples come from the Cholesky factor of the covariance built
from ``free_scalar_propagator``, a construction that shares nothing with the estimator.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.actions.phi4 import Phi4Action, phi4_action
from latticekit.exact import free_scalar_propagator
from latticekit.flows.superres import LogZGradient, Phi4Couplings, hmc_sampler
from latticekit.testing import assert_close

SHAPE = (4, 4)
LAT = lk.Lattice(SHAPE)
V = 16


def _rng(seed: int, device: str) -> Any:
    return lk.backends.rng(seed, backend="torch", device=device)


def test_the_two_exact_references_agree(free_theory: Any) -> None:
    G = free_scalar_propagator(SHAPE, kappa=0.2, backend="numpy")
    # Wick: d log Z/d kappa = -<dS/d kappa> = 2 sum_{x,mu} <phi_x phi_{x+mu}>; agreement to the FD error
    assert_close(free_theory.exact_grad(0.2)[0], 2 * V * (G[1, 0] + G[0, 1]), rtol=1e-7, atol=0)


def test_action_and_closed_form_coupling_derivatives(device: str) -> None:
    c = Phi4Couplings(kappa=0.18, lam=0.3).to(device)
    rng = lk.backends.rng(1, backend="torch", device=device)
    for lat in (LAT, lk.Lattice((2, 2, 4))):
        phi = rng.normal((3,) + tuple(lat.shape)).to(torch.float64)
        S = c.action(phi, lat)
        assert_close(S, phi4_action(phi, lat, 0.18, 0.3), rtol=1e-14, atol=0)  # the same function, float couplings
        g = c.action_gradients(phi, lat)
        auto = torch.stack([torch.stack(torch.autograd.grad(S[i], [c.kappa, c.lam], retain_graph=True))
                            for i in range(3)])
        assert_close(g, auto, rtol=1e-13, atol=1e-13)  # eq. (35) against autograd: the same sums, float64


def test_log_z_gradient_of_the_free_theory(device: str, free_theory: Any) -> None:
    c = Phi4Couplings(kappa=0.2, lam=0.0).to(device)
    lz = LogZGradient(c, LAT, free_theory.sampler(0, device), 4000)
    g, err = lz.estimate(_rng(0, device))
    exact = torch.tensor(free_theory.exact_grad(0.2), dtype=torch.float64, device=device)
    # independent exact samples: each component within 4 standard errors (false alarm 6e-5 per component)
    assert bool(((g - exact).abs() < 4 * err).all()), (g, exact, err)
    # teeth: kappa resolved to 5%; d log Z/d lam = -V (3 G0^2 - 2 G0) is a small difference of two terms of size
    # ~2 V G0 = 21, each resolved to 5% (dropping or flipping either term moves the answer by > 50 sigma)
    G0 = float(free_scalar_propagator(SHAPE, kappa=0.2, backend="numpy")[0, 0])
    assert float(err[0]) < 0.05 * abs(float(exact[0])) and float(err[1]) < 0.05 * 2 * V * G0
    assert lz.n_draws == 1 and lz.ess() == 1.0


def test_reweighting_follows_the_couplings_without_new_samples(device: str, free_theory: Any) -> None:
    c = Phi4Couplings(kappa=0.2, lam=0.0, learn=("kappa",)).to(device)
    lz = LogZGradient(c, LAT, free_theory.sampler(1, device), 4000, threshold=0.85)
    lz.estimate(_rng(1, device))
    with torch.no_grad():
        c.kappa.fill_(0.21)
    g, err = lz.estimate(_rng(2, device))  # a generator: a new set would be drawn if ESS/N fell below R_W
    assert lz.n_draws == 1 and lz.ess() > 0.85  # eq. (36): the set drawn at kappa = 0.2 serves kappa = 0.21
    exact, before = free_theory.exact_grad(0.21), free_theory.exact_grad(0.2)
    assert abs(float(g[0]) - exact[0]) < 4 * float(err[0])  # 4 standard errors, as above
    assert abs(exact[0] - before[0]) > 6 * float(err[0])  # the unreweighted answer would be wrong: teeth


def test_new_set_below_the_threshold_and_the_surrogate_gradient(device: str, free_theory: Any) -> None:
    c = Phi4Couplings(kappa=0.2, lam=0.0).to(device)
    calls: list[Any] = []
    inner = free_theory.sampler(2, device)

    def sampler(action: Phi4Action, n: int, previous: torch.Tensor | None, rng: Any) -> torch.Tensor:
        calls.append((float(action.kappa), previous is None))
        return inner(action, n, previous, rng)

    lz = LogZGradient(c, LAT, sampler, 500, threshold=0.999)
    lz.estimate(_rng(3, device))
    with torch.no_grad():
        c.kappa.fill_(0.21)  # ESS/N ~0.97 < 0.999: a new set at 0.21, restarted from the previous one
    assert lz.surrogate() is not None and lz.n_draws == 1  # without a generator the set is only reweighted
    s = lz.surrogate(_rng(4, device))
    assert calls == [(0.2, True), (0.21, False)] and lz.c0 == (0.21, 0.0) and lz.n_draws == 2
    assert float(s.detach()) == 0.0
    grads = torch.stack(torch.autograd.grad(s, [c.kappa, c.lam]))
    g, _ = lz.estimate()  # the same set and weights
    assert_close(grads, g, rtol=1e-12, atol=1e-12)  # d/dc of -sum wbar S[c] is -sum wbar dS/dc: float64 sums


def test_hmc_sampler_gives_the_free_theory(device: str, free_theory: Any) -> None:
    """The ready-made sampler (independent HMC chains) reproduces the exact gradient (0.6 s)."""
    c = Phi4Couplings(kappa=0.2, lam=0.0).to(device)
    lz = LogZGradient(c, LAT, hmc_sampler(n_traj=40), 1000)
    g, err = lz.estimate(_rng(3, device))
    # 1000 chains x 40 trajectories from unit Gaussians; the free field at m^2 = 1 thermalises in a few
    # trajectories, so the final configurations are independent draws: 4 standard errors as above
    exact = torch.tensor(free_theory.exact_grad(0.2), dtype=torch.float64, device=device)
    assert bool(((g - exact).abs() < 4 * err).all()), (g, exact, err)


def test_refusals(free_theory: Any) -> None:
    with pytest.raises(ValueError, match="learn"):
        Phi4Couplings(0.2, 0.0, learn=("mass",))
    with pytest.raises(ValueError, match="kappa"):
        Phi4Couplings(float("nan"), 0.0)
    with pytest.raises(ValueError, match="lam=-0.01"):
        Phi4Couplings(0.2, -0.01)
    learned = Phi4Couplings(0.2, 0.01, learn=("lam",))
    with torch.no_grad():
        learned.lam.fill_(-1e-3)  # an optimizer step past zero
    with pytest.raises(ValueError, match="unbounded below"):
        learned.action(torch.zeros(2, 4, 4, dtype=torch.float64), LAT)
    c = Phi4Couplings(0.2, 0.0)
    with pytest.raises(ValueError, match=r"phi has shape \(2, 4\)"):
        c.action(torch.zeros(2, 4, dtype=torch.float64), LAT)
    sampler = free_theory.sampler(0, "cpu")
    with pytest.raises(ValueError, match="n_samples"):
        LogZGradient(c, LAT, sampler, 1)
    with pytest.raises(ValueError, match="threshold"):
        LogZGradient(c, LAT, sampler, 10, threshold=1.5)
    with pytest.raises(TypeError, match="couplings"):
        LogZGradient(Phi4Action(LAT, 0.2, 0.0), LAT, sampler, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sampler returned shape"):
        LogZGradient(c, LAT, lambda a, n, p, r: torch.zeros(n, 2, 2, dtype=torch.float64), 10).estimate(_rng(0, "cpu"))
    with pytest.raises(ValueError, match="rng"):
        LogZGradient(c, LAT, sampler, 10).estimate()  # the first set needs a generator
    # wrong types and non-integer sizes are refused by name (2.9 was truncated to 2, "x" gave a bare error)
    for kw, match in (({"n_samples": "x"}, r"^n_samples='x': expected an integer >= 2"),
                      ({"n_samples": 2.9}, r"^n_samples=2\.9: expected an integer >= 2"),
                      ({"threshold": "x"}, r"^threshold='x': expected a number in \(0, 1\]"),
                      ({"threshold": 0.0}, r"^threshold=0\.0: expected a number in \(0, 1\]")):
        with pytest.raises(ValueError, match=match):
            LogZGradient(c, LAT, sampler, **{"n_samples": 10, **kw})
    assert LogZGradient(c, LAT, sampler, np.int64(4)).n_samples == 4
    with pytest.raises(ValueError, match="n_traj"):
        hmc_sampler(n_traj=0)
