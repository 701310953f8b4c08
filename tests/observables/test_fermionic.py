"""Fermionic measurements: pion correlator, chiral condensate, condition number."""

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac, gamma5_matrix
from latticekit.gauge import random_gauge_field
from latticekit.linalg import dense_matrix
from latticekit.observables.fermionic import (
    chiral_condensate,
    chiral_condensate_exact,
    dirac_condition_number,
    pion_correlator,
    point_sources,
    propagator,
)
from latticekit.testing import assert_close


def _dense_inverse(D):
    return np.linalg.inv(np.asarray(lk.backends.to_numpy(dense_matrix(D))))


@pytest.mark.parametrize("method", ["cg", "dense"])
@pytest.mark.parametrize("shape,site", [((6, 4), None), ((6, 3), (2, 1))])
def test_pion_correlator_against_dense_inverse(bk, shape, site, method):
    """C(t) = sum_x tr S S^dag = -sum_x tr[g5 S(x,y) g5 S(y,x)] (eq. 4), from the dense inverse; the propagator by
    CG and by LU (of the even/odd Schur complement on (6, 4), of D on (6, 3))."""
    lat = lk.Lattice(shape)
    G = lk.SU(2)
    U = random_gauge_field(G, lat, bk.rng(0))
    D = WilsonDirac(U, G, lat, kappa=0.2)
    C = bk.to_numpy(pion_correlator(D, site, tol=1e-12, method=method))
    Sinv = _dense_inverse(D)
    ns, nc = D.Ns, D.Nc
    T = Sinv.reshape((ns, nc) + shape + (ns, nc) + shape)
    y = (0, 0) if site is None else site
    g5 = np.array(gamma5_matrix(2))
    ref = np.zeros(shape[0])
    ref_g5 = np.zeros(shape[0], dtype=complex)
    for t in range(shape[0]):
        x0 = (y[0] + t) % shape[0]
        for x1 in range(shape[1]):
            Sxy = T[:, :, x0, x1, :, :, y[0], y[1]].reshape(ns * nc, ns * nc)
            Syx = T[:, :, y[0], y[1], :, :, x0, x1].reshape(ns * nc, ns * nc)
            ref[t] += np.sum(np.abs(Sxy) ** 2)
            G5 = np.kron(g5, np.eye(nc))
            # Wick: <u g5 d(x) d g5 u(y)> = -tr[g5 S(x,y) g5 S(y,x)] (fermion loop), so eq. 4 gives +tr[...]
            ref_g5[t] += np.trace(G5 @ Sxy @ G5 @ Syx)
    assert_close(C, ref, rtol=1e-8, atol=1e-8)
    # gamma_5-hermiticity: tr[g5 S(x,y) g5 S(y,x)] = tr[S(x,y) S(x,y)^dag]
    assert_close(ref_g5, ref, rtol=1e-8, atol=1e-8)
    assert np.all(C > 0)
    assert_close(bk.to_numpy(pion_correlator(D, site, normalization="mass")), (2 * 0.2) ** 2 * C, rtol=1e-5, atol=1e-8)


def test_free_pion_correlator_symmetry_and_decay(bk):
    lat = lk.Lattice((12, 4))
    D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device), lk.U1, lat, m0=0.3)
    C = bk.to_numpy(pion_correlator(D, tol=1e-12))
    assert_close(C[1:], C[1:][::-1], rtol=1e-8, atol=1e-8)  # C(t) = C(L0 - t) for the free field
    assert np.all(np.diff(C[: 7]) < 0)  # decays towards the middle


def test_propagator_and_sources(bk):
    lat = lk.Lattice((4, 4))
    U = lk.U1.random(bk.rng(1), (2, 2), lat.shape)
    D = WilsonDirac(U, lk.U1, lat, kappa=0.22)
    src = point_sources(D, (1, 3))
    assert tuple(src.shape) == (2, 2, 2, 1, 4, 4)
    assert_close(bk.to_numpy(src).sum(axis=(2, 3, 4, 5)), 1.0, rtol=1e-5, atol=1e-8)
    for method in ("cg", "dense"):
        S = propagator(D, (1, 3), tol=1e-12, method=method)
        assert_close(bk.to_numpy(D.apply(S)), bk.to_numpy(src), rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="site"):
        point_sources(D, (4, 0))
    with pytest.raises(ValueError, match="method='lu'"):
        propagator(D, (1, 3), method="lu")


def test_propagator_auto_method_switches_at_the_dense_limit(bk, monkeypatch):
    """method="auto": LU up to DENSE_MAX_UNKNOWNS complex unknowns (Ns Nc V / 2 with even/odd), CG beyond; both
    solve D S = source on a batch of SU(3) fields (a 4x4 lattice: 48 even/odd unknowns)."""
    import latticekit.observables.fermionic as F

    lat = lk.Lattice((4, 4))
    U = random_gauge_field(lk.SU(3), lat, bk.rng(3), (3,))
    D = WilsonDirac(U, lk.SU(3), lat, kappa=0.25)
    used = []
    for name in ("_solve_dense", "_solve_cg"):
        real = getattr(F, name)
        monkeypatch.setattr(F, name, lambda *a, real=real, name=name: used.append(name) or real(*a))
    src = bk.to_numpy(point_sources(D))
    for limit, want in ((48, "_solve_dense"), (47, "_solve_cg")):
        monkeypatch.setattr(F, "DENSE_MAX_UNKNOWNS", limit)
        S = propagator(D, tol=1e-12)
        assert used[-1] == want
        assert_close(bk.to_numpy(D.apply(S)), src, rtol=1e-5, atol=1e-9)
    # the dense solve in pieces of two configurations (the matrix-memory bound) gives the one-piece result
    whole = bk.to_numpy(propagator(D, method="dense"))
    monkeypatch.setattr(F, "_DENSE_MATRIX_ENTRIES", 2 * 48 ** 2)
    assert_close(bk.to_numpy(propagator(D, method="dense")), whole, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("noise", ["z2", "gaussian"])
def test_chiral_condensate_stochastic_vs_exact(bk, noise):
    lat = lk.Lattice((4, 4))
    rng = bk.rng(2)
    U = random_gauge_field(lk.SU(2), lat, rng, (2,))
    D = WilsonDirac(U, lk.SU(2), lat, kappa=0.2)
    exact = bk.to_numpy(chiral_condensate_exact(D))
    mean, err = (bk.to_numpy(a) for a in chiral_condensate(D, rng, 64, noise=noise, tol=1e-11))
    assert mean.shape == (2,)
    # 64 independent noise vectors: the estimate is within 5 standard errors (seeded)
    assert np.all(np.abs(mean - exact) < 5 * err + 1e-12)
    assert np.all(err > 0)
    assert_close(chiral_condensate_exact(D, normalization="mass"), 0.4 * exact, rtol=1e-5, atol=1e-8)


def test_chiral_condensate_free_field_analytic(bk):
    """(1/V) tr D^{-1} = (1/V) sum_p Ns Nc (1 - 2k sum cos p) / |lambda(p)|^2 for U = 1."""
    shape = (4, 6)
    lat = lk.Lattice(shape)
    k = 0.2
    D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device), lk.U1, lat, kappa=k)
    ps = np.meshgrid(*[(2 * np.arange(L) + (1 if mu == 0 else 0)) * np.pi / L for mu, L in enumerate(shape)],
                     indexing="ij")
    a = 1 - 2 * k * sum(np.cos(p) for p in ps)
    lam = a ** 2 + 4 * k * k * sum(np.sin(p) ** 2 for p in ps)
    ana = 2 * np.sum(a / lam) / lat.volume
    assert_close(float(bk.to_numpy(chiral_condensate_exact(D))), ana, rtol=1e-12, atol=0)


def test_condition_number(bk):
    lat = lk.Lattice((4, 4))
    k = 0.2
    U0 = lk.gauge.cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device)
    D = WilsonDirac(U0, lk.U1, lat, kappa=k)
    ps = np.meshgrid(*[(2 * np.arange(L) + (1 if mu == 0 else 0)) * np.pi / L for mu, L in enumerate(lat.shape)],
                     indexing="ij")
    lam = (1 - 2 * k * sum(np.cos(p) for p in ps)) ** 2 + 4 * k * k * sum(np.sin(p) ** 2 for p in ps)
    assert_close(float(bk.to_numpy(dirac_condition_number(D))), lam.max() / lam.min(), rtol=1e-10, atol=0)
    assert_close(float(bk.to_numpy(dirac_condition_number(D, method="lanczos", k=32))), lam.max() / lam.min(),
                 rtol=1e-6, atol=0)
    from latticekit.actions.even_odd import EvenOddDirac

    E = EvenOddDirac(D)
    assert float(bk.to_numpy(dirac_condition_number(E))) < float(bk.to_numpy(dirac_condition_number(D)))
    with pytest.raises(TypeError, match="WilsonDirac"):
        dirac_condition_number("x")


def test_site_must_be_integers():
    lat = lk.Lattice((4, 4))
    D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    for site in [(2.5, 1), (2.0, 1), (True, 1), "01"]:
        with pytest.raises(TypeError, match=r"site=.*: expected 2 integer coordinates"):
            pion_correlator(D, site=site)
        with pytest.raises(TypeError, match=r"site=.*: expected 2 integer coordinates"):
            point_sources(D, site)
    with pytest.raises(TypeError, match="site=3: expected a sequence of 2 integer coordinates"):
        propagator(D, 3)


def test_integer_options_accept_numpy_integers(bk):
    lat = lk.Lattice((4, 4))
    D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device), lk.U1, lat, kappa=0.2)
    ref = pion_correlator(D, site=(2, 1), method="cg")
    assert_close(pion_correlator(D, site=(np.int64(2), np.int32(1)), maxiter=np.int64(400), method="cg"), ref)
    m, e = chiral_condensate(D, bk.rng(0), n_noise=np.int64(4), maxiter=np.int32(400))
    m2, e2 = chiral_condensate(D, bk.rng(0), n_noise=4)
    assert_close(m, m2)
    with pytest.raises(ValueError, match="n_noise=True: expected an integer >= 2"):
        chiral_condensate(D, bk.rng(0), n_noise=True)
