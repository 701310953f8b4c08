"""Tests of the exact 2D SU(N) results: closed forms, Weyl quadrature, brute force and limits."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy.integrate import dblquad, quad
from scipy.special import ive

from latticekit.exact import (
    gross_witten_plaquette,
    sun_2d_character_ratio,
    sun_2d_log_z,
    sun_2d_one_plaquette_log_z,
    sun_2d_plaquette,
    sun_2d_wilson_loop,
    sun_character_coefficient_quadrature,
    sun_dimension,
    sun_irreps,
)
from latticekit.exact import sun_max_beta, u1_2d_plaquette, u1_2d_theta_ratio
from latticekit.exact.sun_2d import _coefficients
from latticekit.testing import assert_close


# --------------------------------------------------------------------------- representations
def test_irreps_and_dimensions():
    assert sun_irreps(2, 3).tolist() == [[0, 0], [1, 0], [2, 0], [3, 0]]
    lam = sun_irreps(3, 6)
    assert len(lam) == math.comb(6 + 2, 2)
    p, q = lam[:, 0] - lam[:, 1], lam[:, 1]
    np.testing.assert_array_equal(sun_dimension(lam), (p + 1) * (q + 1) * (p + q + 2) / 2)
    assert sun_dimension((1, 1, 1, 0)) == 4  # antisymmetric 3 of SU(4) = conjugate fundamental
    assert sun_dimension((2, 1, 0, 0)) == 20


@pytest.mark.parametrize("N,irrep", [(2, (1,)), (2, (3,)), (3, (1, 0)), (3, (2, 1)), (3, (3, 0)), (4, (1, 1, 0))])
def test_weyl_quadrature_orthonormal_characters(N, irrep):
    # int |chi_lam|^2 dU = 1 and int chi_lam dU = 0: checks the Haar/Weyl quadrature itself
    def chi(theta, lam=np.array(list(irrep) + [0] * (N - len(irrep)))):
        j = np.arange(N)
        num = np.linalg.det(np.exp(1j * theta[:, None, :] * (lam + N - 1 - j)[None, :, None]))
        den = np.linalg.det(np.exp(1j * theta[:, None, :] * (N - 1 - j)[None, :, None]))
        return num / np.where(np.abs(den) < 1e-12, np.inf, den)

    norm = sun_character_coefficient_quadrature(0.0, N, irrep, n_points=24, weight=lambda t: chi(t))
    assert_close(norm, 1.0, rtol=0, atol=1e-12)
    assert_close(sun_character_coefficient_quadrature(0.0, N, irrep, n_points=24), 0.0, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- one plaquette
@pytest.mark.parametrize("beta", [0.05, 1.0, 7.0, 60.0])
def test_su2_closed_forms(beta):
    assert_close(sun_2d_one_plaquette_log_z(beta, 2), beta + math.log(2 * ive(1, beta) / beta), rtol=0, atol=1e-12)
    assert_close(sun_2d_plaquette(beta, 2), ive(2, beta) / ive(1, beta), rtol=0, atol=1e-12)
    for two_j in range(5):
        ratio = sun_2d_character_ratio(beta, 2, (two_j,))
        assert_close(ratio, ive(two_j + 1, beta) / ive(1, beta), rtol=1e-12, atol=0)


@pytest.mark.parametrize("beta", [0.5, 4.0])
def test_su2_one_plaquette_against_scipy_quad(beta):
    # Haar measure on the class angle: (2/pi) sin^2(a) da on [0, pi]; (beta/2) Re tr U = beta cos a
    z = quad(lambda a: 2 / math.pi * math.sin(a) ** 2 * math.exp(beta * math.cos(a)), 0, math.pi, epsabs=1e-14)[0]
    zp = quad(
        lambda a: 2 / math.pi * math.sin(a) ** 2 * math.cos(a) * math.exp(beta * math.cos(a)), 0, math.pi, epsabs=1e-14
    )[0]
    assert_close(sun_2d_one_plaquette_log_z(beta, 2), math.log(z), rtol=0, atol=max(1e-12 * abs(math.log(z)), 1e-12))
    assert_close(sun_2d_plaquette(beta, 2), zp / z, rtol=0, atol=1e-12)


@pytest.mark.parametrize("beta", [0.8, 6.0, 25.0])
def test_su3_bessel_determinants_against_weyl_quadrature(beta):
    lam = sun_irreps(3, 3)
    c = _coefficients(beta, 3, lam) * math.exp(beta)
    q = np.array([sun_character_coefficient_quadrature(beta, 3, row, n_points=72).real for row in lam])
    assert_close(c, q, rtol=1e-10, atol=0)
    # derivative of c_0 (Jacobi formula) against the quadrature of (1/3) Re tr U e^{S}
    c0, dc0 = _coefficients(beta, 3, lam[:1], derivative=True)
    num = sun_character_coefficient_quadrature(
        beta, 3, (0, 0), n_points=72, weight=lambda t: np.cos(t).sum(axis=1) / 3 * np.exp(beta / 3 * np.cos(t).sum(axis=1))
    ).real
    tol = max(1e-11 * abs(num / q[0]), 1e-12)  # max(rel |want|, abs)
    assert_close(dc0[0] / c0[0], num / q[0], rtol=0, atol=tol)
    assert_close(sun_2d_plaquette(beta, 3), num / q[0], rtol=0, atol=tol)


def test_su4_against_weyl_quadrature():
    beta = 3.0
    for irrep in ((0, 0, 0), (1, 0, 0), (1, 1, 0), (2, 1, 0)):
        ref = sun_character_coefficient_quadrature(beta, 4, irrep, n_points=28).real
        c0 = sun_character_coefficient_quadrature(beta, 4, (0, 0, 0), n_points=28).real
        want = ref / (sun_dimension(irrep + (0,)) * c0)
        assert_close(sun_2d_character_ratio(beta, 4, irrep), want, rtol=0, atol=max(1e-10 * abs(want), 1e-12))


def test_strong_coupling_and_gross_witten():
    for N in (3, 4, 5):
        # leading strong coupling: <(1/N) Re tr U> = beta / (2 N^2) for N >= 3
        b = 1e-3
        assert_close(sun_2d_plaquette(b, N), b / (2 * N * N), rtol=1e-3, atol=0)
    # approach to the Gross-Witten large-N limit on both sides of the transition
    for b in (0.3, 3.0):
        # N = 10 at beta = 300 is above sun_max_beta(10) = 172 (digit loss, test_weak_coupling_...): N <= 8
        errs = [abs(sun_2d_plaquette(b * N * N, N) - gross_witten_plaquette(b * N * N, N)) for N in (4, 6, 8)]
        assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
        assert errs[-1] < 0.3 / 8**2
    # weak coupling: 1 - (N^2 - 1)/(2 beta) + O(1/beta^2)
    beta = 2000.0
    assert_close(1 - sun_2d_plaquette(beta, 3), 8 / (2 * beta), rtol=5e-3, atol=0)


# --------------------------------------------------------------------------- torus
def _haar_sun(rng, n, N):
    z = (rng.standard_normal((n, N, N)) + 1j * rng.standard_normal((n, N, N))) / math.sqrt(2)
    q, r = np.linalg.qr(z)
    d = np.diagonal(r, axis1=1, axis2=2)
    q = q * (d / np.abs(d))[:, None, :]
    det = np.linalg.det(q)
    return q * (det ** (-1.0 / N))[:, None, None]


def _dag(u):
    return np.conj(np.swapaxes(u, -1, -2))


@pytest.mark.parametrize("beta", [0.7, 3.0])
def test_su2_one_by_one_torus_deterministic(beta):
    # 1x1 torus: P = U D U^dag D^dag with D of class angle a; (1/2) tr P = cos^2 a + t sin^2 a with
    # t = n_z uniform in [-1, 1] (Haar on the orientation of U D U^dag)
    f = lambda t, a: (2 / math.pi) * math.sin(a) ** 2 * 0.5 * math.exp(beta * (math.cos(a) ** 2 + t * math.sin(a) ** 2))
    g = lambda t, a: f(t, a) * (math.cos(a) ** 2 + t * math.sin(a) ** 2)
    Z = dblquad(f, 0, math.pi, -1, 1, epsabs=1e-13)[0]
    P = dblquad(g, 0, math.pi, -1, 1, epsabs=1e-13)[0] / Z
    assert_close(sun_2d_log_z(beta, 2, (1, 1)), math.log(Z), rtol=0, atol=1e-11)
    assert_close(sun_2d_plaquette(beta, 2, (1, 1)), P, rtol=0, atol=1e-11)
    assert abs(P - sun_2d_plaquette(beta, 2)) > 0.05  # the torus really differs here


@pytest.mark.parametrize("N,beta", [(2, 1.5), (3, 2.5)])
def test_torus_against_monte_carlo(N, beta):
    """1x1 and 2x2 tori, Haar-sampled links reweighted by exp(-S)."""
    rng = np.random.default_rng(11 + N)
    n = 100_000
    # 1x1: plaquette U V U^dag V^dag
    U, V = _haar_sun(rng, n, N), _haar_sun(rng, n, N)
    P = U @ V @ _dag(U) @ _dag(V)
    o = np.real(np.trace(P, axis1=1, axis2=2)) / N
    w = np.exp(beta * (o - 1))
    w /= w.sum()
    est = np.sum(w * o)
    err = math.sqrt(np.sum(w**2 * (o - est) ** 2))
    assert abs(est - sun_2d_plaquette(beta, N, (1, 1))) < 5 * err
    assert abs(sun_2d_plaquette(beta, N) - sun_2d_plaquette(beta, N, (1, 1))) > 10 * err  # test is sensitive
    # 2x2: 8 links, plaquette and a 1x1 loop are the same observable; check plaquette average
    L = 2
    n = 40_000
    links = _haar_sun(rng, n * 2 * L * L, N).reshape(n, 2, L, L, N, N)
    ops = []
    for x0 in range(L):
        for x1 in range(L):
            p = (
                links[:, 0, x0, x1]
                @ links[:, 1, (x0 + 1) % L, x1]
                @ _dag(links[:, 0, x0, (x1 + 1) % L])
                @ _dag(links[:, 1, x0, x1])
            )
            ops.append(np.real(np.trace(p, axis1=1, axis2=2)) / N)
    ops = np.array(ops)
    s = ops.sum(axis=0)
    w = np.exp(beta * (s - ops.shape[0]))
    w /= w.sum()
    o = ops.mean(axis=0)
    est = np.sum(w * o)
    err = math.sqrt(np.sum(w**2 * (o - est) ** 2))
    assert abs(est - sun_2d_plaquette(beta, N, (2, 2))) < 5 * err


@pytest.mark.parametrize("N", [2, 3])
@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 5)])
@pytest.mark.parametrize("beta", [0.6, 5.0])
def test_plaquette_is_derivative_of_log_z(N, shape, beta):
    h = 1e-5
    V = shape[0] * shape[1]
    fd = (sun_2d_log_z(beta + h, N, shape) - sun_2d_log_z(beta - h, N, shape)) / (2 * h * V)
    assert_close(sun_2d_plaquette(beta, N, shape), fd, rtol=0, atol=1e-8)


@pytest.mark.parametrize("N", [2, 3])
def test_wilson_loops_torus(N):
    beta, shape = 2.0, (4, 5)
    # a 1x1 loop is the plaquette (independent formulas: fusion rule vs Jacobi derivative)
    assert_close(sun_2d_wilson_loop(beta, N, 1, 1, shape), sun_2d_plaquette(beta, N, shape), rtol=0, atol=1e-13)
    # only the area matters, and large volume gives the area law
    assert_close(sun_2d_wilson_loop(beta, N, 1, 2, shape), sun_2d_wilson_loop(beta, N, 2, 1, shape), rtol=0, atol=1e-14)
    ratio = sun_2d_character_ratio(beta, N, (1,))
    assert_close(sun_2d_wilson_loop(beta, N, 2, 3), ratio**6, rtol=0, atol=1e-12)
    assert_close(sun_2d_wilson_loop(beta, N, 2, 3, (30, 30)), ratio**6, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="contractible"):
        sun_2d_wilson_loop(beta, N, 4, 1, shape)


def test_su2_torus_closed_form_and_limits():
    beta, V = 3.0, 6
    j2 = np.arange(0, 80)
    terms = (2 * ive(j2 + 1, beta) / beta) ** V
    assert_close(sun_2d_log_z(beta, 2, (2, 3)), V * beta + math.log(terms.sum()), rtol=0, atol=1e-12)
    assert_close(sun_2d_log_z(beta, 3, (20, 20)) / 400, sun_2d_one_plaquette_log_z(beta, 3), rtol=0, atol=1e-12)
    assert_close(sun_2d_plaquette(beta, 3, (20, 20)), sun_2d_plaquette(beta, 3), rtol=0, atol=1e-12)
    assert sun_2d_log_z(0.0, 3, (3, 3)) == 0.0
    # truncation is converged: doubling max_row changes nothing
    assert_close(sun_2d_log_z(20.0, 3, (1, 1)), sun_2d_log_z(20.0, 3, (1, 1), max_row=140), rtol=0, atol=1e-13)


@pytest.mark.parametrize("N", [2, 3, 4])
def test_weak_coupling_up_to_the_largest_accepted_beta(N):
    """1 - P = a (1 - 1/(4 beta) + O(1/beta^2)), a = (N^2 - 1)/(2 beta) (fitted on the expansion below beta = 1e3,
    where no digits are lost); at 0.9 sun_max_beta(N) the character expansion still agrees to 1e-4 relative in
    1 - P (SU(4) at 1e4 was off by 2.6e-4, at 1e5 P came out 1.00017), and above it the coupling is refused
    (before, silently wrong: SU(3) at 1e7 gave 1 - P 44 times too large)."""
    for beta in (300.0, 0.9 * sun_max_beta(N)):
        a = (N * N - 1) / (2 * beta)
        assert_close((1 - sun_2d_plaquette(beta, N)) / a, 1 - 1 / (4 * beta), rtol=1e-4, atol=0, msg=f"beta {beta}")
    want = re.escape(f"above {sun_max_beta(N):.3g}, where the SU({N}) character expansion loses 1 - P")
    with pytest.raises(ValueError, match=rf"^beta=[0-9.]+: {want}"):
        sun_2d_plaquette(1.1 * sun_max_beta(N), N)


def test_bad_input():
    with pytest.raises(ValueError, match=r"^beta=10000000000.0: expected beta <= 1e\+08"):
        u1_2d_plaquette(1e10)      # scipy's ive returned NaN here
    with pytest.raises(ValueError, match=r"^theta=nan: expected finite angles"):
        u1_2d_theta_ratio(1.0, (4, 4), float("nan"))
    with pytest.raises(ValueError, match="N"):
        sun_2d_plaquette(1.0, 1)
    for bad in ((0, 1), (1.5, 0), (1, -1)):      # not partitions: gave 0 or a fraction
        with pytest.raises(ValueError, match=r"^irreps=.*: expected partitions, non-increasing integers >= 0"):
            sun_dimension(bad)
    with pytest.raises(ValueError, match="irrep"):
        sun_2d_character_ratio(1.0, 3, (0, 1))
    with pytest.raises(ValueError, match=r"^irrep must be a non-increasing sequence of at most 3 integers"):
        sun_2d_character_ratio(1.0, 3, (1.5,))
    with pytest.raises(ValueError, match="beta"):
        gross_witten_plaquette(-1.0, 3)
    # the truncation of the torus sum has no meaning for the closed form (it was silently ignored)
    with pytest.raises(ValueError, match=r"^max_row=5: the truncation applies to the torus sum only"):
        sun_2d_plaquette(1.0, 3, max_row=5)
    with pytest.raises(ValueError, match=r"^max_row=5: "):
        sun_2d_wilson_loop(1.0, 3, 1, 1, max_row=5)
    # bools and integral floats were taken as numbers (True as beta = 1, (True, 4) as a 1 x 4 torus, N=2.0, t=2.0)
    from latticekit.exact import free_scalar_susceptibility, u1_2d_wilson_loop
    for call in (lambda: u1_2d_plaquette(True), lambda: u1_2d_plaquette(1.0, (True, 4)),
                 lambda: u1_2d_wilson_loop(1.0, 2.0, 1), lambda: sun_2d_plaquette(1.0, 2.0),
                 lambda: free_scalar_susceptibility((4, 4), m2=True),
                 lambda: free_scalar_susceptibility((4, 4), kappa=True)):
        with pytest.raises(TypeError, match=r"must be (a real number|an integer|a sequence of positive integers)"):
            call()
    assert_close(sun_2d_plaquette(1.0, np.int64(2)), sun_2d_plaquette(1.0, 2), rtol=0, atol=0)   # NumPy ints are fine
