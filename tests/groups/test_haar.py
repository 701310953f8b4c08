"""Statistical tests of Haar sampling against the Weyl integration formula.

All samples are seeded, so every test is deterministic. The statistics run on every backend (each
backend draws with its own generator and its own QR); for a fresh seed a correct sampler would fail a
moment check (5 sample standard errors, two-sided normal tail 5.7e-7, ~30 checks per backend) with
probability ~2e-5 per backend, and a KS / chi^2 test (rejecting below p = 1e-4, 6 per backend) with
probability ~6e-4 per backend. Each test also shows that a *wrong* distribution (non-Haar, or Haar of
U(N) instead of SU(N)) is rejected by the same statistic, so the tests have power.
"""

import math

import numpy as np
import pytest
import scipy.stats

from latticekit import SU
from latticekit.backends import rng
from latticekit.testing import assert_close

N_SAMPLES = 20_000
K_SIGMA = 5.0


def su2_angle_cdf(phi):
    """CDF of the SU(2) eigen-angle phi in [0, pi] with Weyl density (2/pi) sin^2 phi."""
    return (phi - np.sin(phi) * np.cos(phi)) / math.pi


def assert_mean(samples, expected, what):
    m = samples.mean()
    se = samples.std(ddof=1) / math.sqrt(samples.size)
    assert abs(m - expected) < K_SIGMA * se, f"{what}: sample mean {m:.5f} +- {se:.5f}, expected {expected}"


def traces(G, U):
    return np.trace(U, axis1=-2, axis2=-1)


def test_su2_eigen_angle_weyl_density(bk):
    G = SU(2)
    U = G.random(bk.rng(2024), (N_SAMPLES,))
    phi = bk.to_numpy(G.eigen_angles(U, nd=0))[:, 0]
    assert phi.min() >= 0 and phi.max() <= math.pi
    assert scipy.stats.kstest(phi, su2_angle_cdf).pvalue > 1e-4
    # histogram against the density as well (chi^2 with 20 bins)
    edges = np.linspace(0, math.pi, 21)
    counts, _ = np.histogram(phi, edges)
    expect = N_SAMPLES * np.diff(su2_angle_cdf(edges))
    chi2 = ((counts - expect) ** 2 / expect).sum()
    assert scipy.stats.chi2.sf(chi2, df=19) > 1e-4
    # moments of tr U = 2 cos phi: E tr U = 0, E (tr U)^2 = 1, E (tr U)^4 = 2 (Catalan numbers)
    t = 2 * np.cos(phi)
    assert_mean(t, 0.0, "E tr U")
    assert_mean(t**2, 1.0, "E (tr U)^2")
    assert_mean(t**4, 2.0, "E (tr U)^4")
    # power: elements exp(X) with Gaussian X are not Haar and are rejected
    bad = G.near_identity(bk.rng(1), (N_SAMPLES,), eps=1.0)
    assert scipy.stats.kstest(bk.to_numpy(G.eigen_angles(bad, nd=0))[:, 0], su2_angle_cdf).pvalue < 1e-10


def test_su3_trace_moments(bk):
    """SU(3): E tr U = 0, E|tr U|^2 = 1, E|tr U|^4 = 2, E (tr U)^3 = 1 (the epsilon-tensor invariant)."""
    G = SU(3)
    U = bk.to_numpy(G.random(bk.rng(7), (N_SAMPLES,)))
    t = traces(G, U)
    assert_mean(t.real, 0.0, "E Re tr U")
    assert_mean(t.imag, 0.0, "E Im tr U")
    a2 = np.abs(t) ** 2
    assert_mean(a2, 1.0, "E |tr U|^2")
    assert_mean(a2**2, 2.0, "E |tr U|^4")
    c3 = t**3
    assert_mean(c3.real, 1.0, "E Re (tr U)^3")
    assert_mean(c3.imag, 0.0, "E Im (tr U)^3")
    assert_mean((t**2).real, 0.0, "E Re (tr U)^2")
    # power: Haar on U(3) (no determinant fix) has E (tr U)^3 = 0 and is rejected (host NumPy sample)
    z = np.random.default_rng(8).normal(size=(N_SAMPLES, 3, 3, 2)) @ [1, 1j]
    q, r = np.linalg.qr(z)
    d = np.diagonal(r, axis1=-2, axis2=-1)
    u3 = q * (d / abs(d))[..., None, :]
    c3u = traces(None, u3) ** 3
    se = c3u.real.std() / math.sqrt(N_SAMPLES)
    assert abs(c3u.real.mean() - 1.0) > K_SIGMA * se


def test_su3_eigen_angle_marginal(bk):
    """Weyl density for SU(3) ~ prod_{j<k} |e^{i phi_j} - e^{i phi_k}|^2: the eigenvalue pair correlation
    gives E sum_{j != k} cos(phi_j - phi_k) = E|tr U|^2 - 3 = -2."""
    G = SU(3)
    U = G.random(bk.rng(9), (N_SAMPLES,))
    phi = bk.to_numpy(G.eigen_angles(U, nd=0))
    s = np.cos(phi[:, :, None] - phi[:, None, :]).sum((1, 2)) - 3
    assert_mean(s, -2.0, "E sum_{j!=k} cos(phi_j - phi_k)")


@pytest.mark.parametrize("N", [2, 3])
def test_left_and_right_invariance(bk, N):
    G = SU(N)
    xp = bk.xp
    V = G.exp(G.from_coords(bk.asarray(np.linspace(0.3, 1.1, G.algebra_dim)), nd=0), nd=0)  # fixed, far from 1
    U = G.random(bk.rng(11), (N_SAMPLES,))
    W = G.random(bk.rng(12), (N_SAMPLES,))
    VU = G.mul(xp.broadcast_to(V, U.shape), U, nd=0)
    WV = G.mul(W, xp.broadcast_to(V, W.shape), nd=0)
    VU, WV, W = bk.to_numpy(VU), bk.to_numpy(WV), bk.to_numpy(W)
    for X in (VU, WV):
        t = traces(G, X)
        assert_mean(t.real, 0.0, "E Re tr")
        assert_mean(np.abs(t) ** 2, 1.0, "E |tr|^2")
        if N == 3:
            assert_mean((t**3).real, 1.0, "E Re (tr)^3")
    # the distribution of Re tr(VU) equals that of Re tr(U') for an independent Haar sample U'
    assert scipy.stats.ks_2samp(traces(G, VU).real, traces(G, W).real).pvalue > 1e-4
    if N == 2:
        assert scipy.stats.kstest(G.eigen_angles(VU, nd=0)[:, 0], su2_angle_cdf).pvalue > 1e-4


@pytest.mark.parametrize("N", [2, 3])
def test_haar_moments_on_every_backend(bk, N):
    """A smaller check of the QR phase fix on each backend's own QR (n = 4000, 5 sigma)."""
    G = SU(N)
    U = bk.to_numpy(G.random(bk.rng(31), (4000,)))
    t = traces(G, U)
    assert_mean(np.abs(t) ** 2, 1.0, "E |tr U|^2")
    assert_mean(t.real, 0.0, "E Re tr U")
    if N == 3:
        assert_mean((t**3).real, 1.0, "E Re (tr U)^3")
    assert_close(np.linalg.det(U), 1.0, rtol=1e-7, atol=1e-12)


def test_u1_uniform(bk):
    from latticekit import U1

    th = bk.to_numpy(U1.random(bk.rng(5), (N_SAMPLES,)))
    assert th.min() > -math.pi and th.max() <= math.pi
    assert scipy.stats.kstest(th, scipy.stats.uniform(loc=-math.pi, scale=2 * math.pi).cdf).pvalue > 1e-4
    assert_mean(np.cos(th), 0.0, "E cos")
    assert_mean(np.cos(th) ** 2, 0.5, "E cos^2")


def test_random_sun_field_is_c_contiguous():
    """Fresh SU(N) fields are C-contiguous (the numba fast paths take only C-contiguous arrays), and
    making them so does not change the values: the site-first layout equals the group-last draw."""
    G = SU(3)
    U = G.random(rng(7), (2,), (4, 6))
    assert U.shape == (2, 3, 3, 4, 6) and U.flags.c_contiguous
    # the same draw without sites: per-site matrices in the same order
    V = G.random(rng(7), (2, 4, 6))
    np.testing.assert_array_equal(np.moveaxis(U, (1, 2), (-2, -1)), V)
