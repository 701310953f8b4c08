"""Even/odd decomposition: block structure, det D = det D_sc, Schur solve, gamma_5-hermiticity."""

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac
from latticekit.actions.even_odd import EvenOddDirac, even_odd_masks, schur_complement
from latticekit.gauge import random_gauge_field
from latticekit.linalg import dense_matrix, logdet_normal, slogdet_dense
from latticekit.testing import assert_close

CASES = [("U1", (4, 4)), ("SU2", (2, 4)), ("SU3", (2, 2, 2, 2))]


def _setup(bk, name, shape, seed=1, batch=(), kappa=0.19):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    rng = bk.rng(seed)
    U = random_gauge_field(G, lat, rng, batch)
    D = WilsonDirac(U, G, lat, kappa=kappa)
    return G, lat, rng, U, D, EvenOddDirac(D)


@pytest.mark.parametrize("name,shape", CASES)
def test_block_structure(bk, name, shape):
    G, lat, rng, U, D, E = _setup(bk, name, shape, batch=(2,))
    psi = D.random_field(rng)
    pe, po = E.even(psi), E.odd(psi)
    # D = [[D_ee, D_eo], [D_oe, D_oo]] with D_ee = D_oo = 1
    full = E.D_ee(pe) + E.D_eo(po) + E.D_oe(pe) + E.D_oo(po)
    assert_close(bk.to_numpy(full), bk.to_numpy(D.apply(psi)), rtol=1e-5, atol=1e-13)
    # hopping connects opposite parities only
    assert_close(bk.to_numpy(E.odd(E.D_eo(po))), 0.0, rtol=0, atol=1e-8)
    assert_close(bk.to_numpy(E.even(E.D_oe(pe))), 0.0, rtol=0, atol=1e-8)
    # Schur complement: D_sc = 1 - D_eo D_oe on even sites, zero on odd sites
    sc = E.apply(psi)
    assert_close(bk.to_numpy(sc), bk.to_numpy(pe - E.D_eo(E.D_oe(pe))), rtol=1e-5, atol=1e-13)
    assert_close(bk.to_numpy(E.odd(sc)), 0.0, rtol=0, atol=1e-8)
    # D_sc is gamma_5-hermitian and its dagger is the adjoint
    chi = E.random_field(rng)
    lhs = np.vdot(bk.to_numpy(chi), bk.to_numpy(E.apply(psi)))
    rhs = np.vdot(bk.to_numpy(E.apply_dagger(chi)), bk.to_numpy(pe))
    assert_close(rhs, lhs, rtol=0, atol=1e-11 * max(1, abs(lhs)))
    g5 = E.apply_gamma5(E.apply(E.apply_gamma5(psi)))
    assert_close(bk.to_numpy(g5), bk.to_numpy(E.apply_dagger(psi)), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("name,shape", CASES)
def test_det_D_equals_det_schur(bk, name, shape):
    G, lat, rng, U, D, E = _setup(bk, name, shape, batch=(2,))
    ld_full = bk.to_numpy(logdet_normal(D))
    ld_sc = bk.to_numpy(logdet_normal(E))
    assert ld_full.shape == (2,)
    assert_close(ld_full, ld_sc, rtol=1e-10, atol=1e-10)
    # complex determinants agree as well (phase included)
    s1, l1 = (bk.to_numpy(a) for a in slogdet_dense(D))
    s2, l2 = (bk.to_numpy(a) for a in slogdet_dense(E))
    assert_close(s1 * np.exp(l1), s2 * np.exp(l2), rtol=1e-9, atol=1e-8)
    # the even-site matrix has half the size and is 1 + O(kappa^2): better conditioned than D
    Msc = bk.to_numpy(dense_matrix(E))
    assert Msc.shape == (2, E.ndof, E.ndof)
    Md = bk.to_numpy(dense_matrix(D))
    def cond(m):
        ev = np.linalg.eigvalsh(m @ m.conj().T)
        return np.sqrt(ev[-1] / ev[0])

    assert cond(Msc[0]) < cond(Md[0])


def test_det_D_equals_det_schur_strong_field(bk):
    """A second, harder check at larger kappa: dense 4D SU(3) on 2^4 (192 x 192, determinants on the host)."""
    G, lat, rng, U, D, E = _setup(bk, "SU3", (2, 2, 2, 2), seed=7, kappa=0.3)
    d1 = np.linalg.det(bk.to_numpy(dense_matrix(D)))
    d2 = np.linalg.det(bk.to_numpy(dense_matrix(E)))
    assert_close(d1, d2, rtol=1e-9, atol=0)


@pytest.mark.parametrize("name,shape", CASES[:2])
def test_schur_solve(bk, name, shape):
    G, lat, rng, U, D, E = _setup(bk, name, shape, batch=(3,))
    b = D.random_field(rng)
    x, info = E.solve(b, tol=1e-12)
    assert bool(bk.xp.all(info.converged))
    assert_close(bk.to_numpy(D.apply(x)), bk.to_numpy(b), rtol=1e-5, atol=1e-9)
    # against a dense solve
    M = bk.to_numpy(dense_matrix(D))
    xd = np.linalg.solve(M, bk.to_numpy(b).reshape(3, -1)[..., None])[..., 0]
    assert_close(bk.to_numpy(x).reshape(3, -1), xd, rtol=1e-5, atol=1e-9)
    # reconstruction: x_o = b_o - D_oe x_e
    xe = E.even(x)
    assert_close(bk.to_numpy(E.odd(x)), bk.to_numpy(E.odd(b) - E.D_oe(xe)), rtol=1e-5, atol=1e-12)


def test_masks_and_validation():
    lat = lk.Lattice((4, 2))
    D = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat, kappa=0.2)
    e, o = even_odd_masks(D)
    par = np.add.outer(np.arange(4), np.arange(2)) % 2
    assert np.array_equal(e.real, par == 0) and np.array_equal(o.real, par == 1)
    assert schur_complement(D).ndof == 2 * 1 * 8 // 2
    lat3 = lk.Lattice((4, 3))
    D3 = WilsonDirac(lk.gauge.cold_gauge_field(lk.U1, lat3), lk.U1, lat3, kappa=0.2)
    with pytest.raises(ValueError, match="even"):
        EvenOddDirac(D3)
    with pytest.raises(TypeError, match="WilsonDirac"):
        EvenOddDirac("not an operator")
