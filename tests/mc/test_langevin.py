"""Langevin: exact O(dt) bias on a Gaussian, gauge normalisation, differentiability through torch."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import iv

import latticekit as lk
from latticekit.actions import phi4_force
from latticekit.gauge import random_gauge_field
from latticekit.mc import GaussianAction, Langevin, RealField, SingleLinkAction, langevin_step
from latticekit.testing import assert_close


def test_gaussian_stationary_variance_has_the_euler_bias(bk):
    # S = m^2 x^2 / 2: x' = (1 - eps m^2) x + sqrt(2 eps) eta. A stationary variance v satisfies
    # v = (1 - eps m^2)^2 v + 2 eps  =>  v (2 eps m^2 - eps^2 m^4) = 2 eps  =>  v = 1 / (m^2 (1 - m^2 eps / 2)).
    m2, eps = 1.0, 0.2
    rng = bk.rng(0)
    lan = Langevin(GaussianAction(m2, event_ndim=1), RealField(1), rng=rng, step_size=eps)
    x = rng.normal((256, 64))
    x, _ = lan.run(x, 60)  # (1 - eps m^2)^120 ~ 3e-12
    x, hist = lan.run(x, 200, measure=lambda x: bk.xp.mean(x * x, axis=-1), every=20)
    v = bk.to_numpy(hist.measurements)  # 10 nearly independent snapshots of 16384 independent sites
    m = float(v.mean())
    err = math.sqrt(2.0 / v.size / 64) * m
    biased = 1.0 / (m2 * (1.0 - m2 * eps / 2.0))
    assert abs(m - biased) < 4 * err, (m, biased, err)
    assert abs(m - 1.0 / m2) > 10 * err  # the bias is resolved: the test would catch a wrong scheme


def test_one_link_su2_langevin_normalisation(bk):
    """exp(-eps F + sqrt(2 eps) eta) U samples exp(-S) dHaar up to O(eps): <Re tr U / 2> = I_2/I_1.
    A noise normalised with sqrt(eps) would sample beta -> 2 beta (0.66 instead of 0.43)."""
    beta, G, lat = 2.0, lk.SU(2), lk.Lattice((8,))
    rng = bk.rng(1)
    lan = Langevin(SingleLinkAction(G, lat, beta), rng=rng, step_size=0.02, normalize_every=50)
    U = random_gauge_field(G, lat, rng, (16,))
    U, _ = lan.run(U, 150)
    U, hist = lan.run(U, 300, measure=lambda U: 0.5 * G.re_trace(U, nd=1), every=10)
    a = bk.to_numpy(hist.measurements).reshape(30, -1)
    per = a.mean(axis=0)
    m, err = per.mean(), per.std(ddof=1) / math.sqrt(per.size)
    exact = iv(2, beta) / iv(1, beta)
    assert abs(m - exact) < 4 * err + 0.01, (m, exact, err)  # 0.01: allowance for the O(eps) bias
    assert_close(G.defect(U, nd=1), 0.0, rtol=0, atol=1e-10)


def test_one_link_u1_langevin(bk):
    beta, lat = 1.0, lk.Lattice((16,))
    rng = bk.rng(2)
    lan = Langevin(SingleLinkAction(lk.U1, lat, beta), rng=rng, step_size=0.02, normalize_every=10)
    U = random_gauge_field(lk.U1, lat, rng, (32,))
    U, _ = lan.run(U, 100)
    U, hist = lan.run(U, 200, measure=lambda U: bk.xp.cos(U), every=10)
    per = bk.to_numpy(hist.measurements).reshape(20, -1).mean(axis=0)
    m, err = per.mean(), per.std(ddof=1) / math.sqrt(per.size)
    assert abs(m - iv(1, beta) / iv(0, beta)) < 4 * err + 0.01
    assert np.all(np.abs(bk.to_numpy(U)) <= math.pi)


class _Phi4Tensor:
    """phi^4 target with (possibly tensor) couplings, through the functional force of latticekit.actions."""

    def __init__(self, lattice, kappa, lam):
        self.lattice, self.kappa, self.lam = lattice, kappa, lam

    def force(self, phi):
        return phi4_force(phi, self.lattice, self.kappa, self.lam)


def _langevin_loss(kappa, lam, n_steps=15, eps=0.05):
    lat = lk.Lattice((4, 4))
    rng = lk.backends.rng(3, backend="torch")
    x = rng.normal((8, 4, 4))
    lan = Langevin(_Phi4Tensor(lat, kappa, lam), RealField.for_lattice(lat), rng=rng, step_size=eps)
    x, _ = lan.run(x, n_steps)
    return (x * x).mean() + 0.3 * x.mean()


@pytest.mark.parametrize("which", ["kappa", "lam"])
def test_gradient_wrt_coupling_matches_finite_differences(which):
    torch = pytest.importorskip("torch")
    k0, l0 = 0.15, 0.3
    kappa = torch.tensor(k0, dtype=torch.float64, requires_grad=True)
    lam = torch.tensor(l0, dtype=torch.float64, requires_grad=True)
    loss = _langevin_loss(kappa, lam)
    loss.backward()
    g = (kappa if which == "kappa" else lam).grad.item()
    h = 1e-5
    with torch.no_grad():
        if which == "kappa":
            fd = (_langevin_loss(k0 + h, l0) - _langevin_loss(k0 - h, l0)).item() / (2 * h)
        else:
            fd = (_langevin_loss(k0, l0 + h) - _langevin_loss(k0, l0 - h)).item() / (2 * h)
    assert abs(g) > 1e-3
    assert_close(g, fd, rtol=0, atol=1e-6 * max(1.0, abs(fd)), msg="autograd vs finite differences")


def test_gradient_through_gauge_langevin():
    torch = pytest.importorskip("torch")
    G, lat = lk.SU(2), lk.Lattice((4,))

    def loss(beta):
        rng = lk.backends.rng(4, backend="torch")
        U = random_gauge_field(G, lat, rng, (4,))
        lan = Langevin(SingleLinkAction(G, lat, beta), rng=rng, step_size=0.05)
        U, _ = lan.run(U, 10)
        return G.re_trace(U, nd=1).mean()

    b = torch.tensor(1.5, dtype=torch.float64, requires_grad=True)
    loss(b).backward()
    h = 1e-5
    with torch.no_grad():
        fd = (loss(1.5 + h) - loss(1.5 - h)).item() / (2 * h)
    assert_close(b.grad.item(), fd, rtol=0, atol=1e-6 * max(1.0, abs(fd)), msg="autograd vs finite differences")


def test_langevin_step_and_bad_input(bk):
    x = bk.asarray(np.array([2.0]))
    out = langevin_step(x, bk.asarray(np.array([1.0])), bk.asarray(np.array([1.0])), RealField(1), 0.125)
    assert_close(out, 2.0 - 0.125 + 0.5, rtol=1e-5, atol=1e-8)
    with pytest.raises(ValueError, match="step_size"):
        Langevin(GaussianAction(1.0, 1), RealField(1), rng=lk.backends.rng(0), step_size=0.0)
    with pytest.raises(TypeError, match="target"):
        Langevin(object(), RealField(1), rng=lk.backends.rng(0))
    with pytest.raises(TypeError, match="rng"):
        Langevin(GaussianAction(1.0, 1), RealField(1), rng=None)
