"""Pseudofermions: heatbath, action, Hasenbusch monomials, and the force against autograd and
finite differences."""

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac
from latticekit.actions.even_odd import EvenOddDirac
from latticekit.actions.hasenbusch import HasenbuschAction, HasenbuschMonomial, hasenbusch_monomials
from latticekit.actions.pseudofermion import (
    PseudofermionAction,
    apply_twisted,
    apply_twisted_dagger,
    pseudofermion_action,
    pseudofermion_force,
    pseudofermion_force_coords,
    pseudofermion_heatbath,
    regulated_normal,
    solve_normal,
)
from latticekit.gauge import random_gauge_field
from latticekit.linalg import dense_matrix, logdet_normal, support_indices
from latticekit.testing import assert_close


def _op(U, G, lat, kappa, eo):
    D = WilsonDirac(U, G, lat, kappa=kappa)
    return EvenOddDirac(D) if eo else D


@pytest.mark.parametrize("eo", [False, True])
@pytest.mark.parametrize("mu", [0.0, 0.3])
def test_heatbath_exact_action(bk, eo, mu):
    """phi = W_mu chi  =>  phi^dag (M + mu)^{-1} phi = chi^dag chi for every sample."""
    lat = lk.Lattice((4, 4))
    rng = bk.rng(0)
    op = _op(random_gauge_field(lk.SU(2), lat, rng, (2,)), lk.SU(2), lat, 0.2, eo)
    phi, chi = pseudofermion_heatbath(op, rng, mu, return_noise=True)
    S = bk.to_numpy(pseudofermion_action(phi, op, mu, tol=1e-12))
    c = bk.to_numpy(chi)
    assert S.shape == (2,)
    assert_close(S, np.sum(np.abs(c) ** 2, axis=(1, 2, 3, 4)), rtol=1e-9, atol=1e-8)
    if eo:  # supported on even sites only
        assert_close(bk.to_numpy(op.odd(phi)), 0.0, rtol=0, atol=1e-8)
    # W_mu W_mu^dag = M + mu
    psi = op.random_field(rng)
    ww = apply_twisted(op, apply_twisted_dagger(op, psi, mu), mu)
    assert_close(bk.to_numpy(ww), bk.to_numpy(regulated_normal(op, mu)(psi)), rtol=1e-5, atol=1e-12)


@pytest.mark.parametrize("eo", [False, True])
def test_heatbath_expectation_is_ndof(bk, eo):
    """<phi^dag (D D^dag)^{-1} phi> = N_dof within the statistical error (many samples)."""
    lat = lk.Lattice((4, 4))
    rng = bk.rng(5)
    op = _op(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, 0.24, eo)
    n = 400
    phi = pseudofermion_heatbath(op, rng, batch_shape=(n,))
    S = bk.to_numpy(pseudofermion_action(phi, op, tol=1e-11))
    ndof = op.ndof
    assert ndof == (16 if eo else 32)
    err = np.sqrt(ndof / n)  # Var |chi|^2 = N for exp(-|z|^2)
    assert abs(S.mean() - ndof) < 5 * err
    # a wrong normalisation (e.g. variance 1/2 per complex component) would be far off
    assert abs(S.mean() - ndof / 2) > 20 * err


def test_hasenbusch_determinant_product(bk):
    """Product of the monomial determinants equals det(M): sum of log dets = log det D D^dag."""
    lat = lk.Lattice((4, 2))
    rng = bk.rng(1)
    for eo in (False, True):
        op = _op(random_gauge_field(lk.SU(2), lat, rng, (2,)), lk.SU(2), lat, 0.23, eo)
        monos = hasenbusch_monomials([0.01, 0.1, 0.5])
        total = sum(bk.to_numpy(m.log_det_dense(op)) for m in monos)
        assert_close(total, bk.to_numpy(logdet_normal(op)), rtol=1e-10, atol=1e-8)
        # dropping a monomial breaks the identity
        part = sum(bk.to_numpy(m.log_det_dense(op)) for m in monos[1:])
        with pytest.raises(AssertionError, match="elements differ"):
            assert_close(part, bk.to_numpy(logdet_normal(op)), rtol=1e-3, atol=1e-8)


@pytest.mark.parametrize("mus", [(0.05,), (0.02, 0.2, 1.0)])
def test_hasenbusch_samplers_match_actions(bk, mus):
    lat = lk.Lattice((4, 4))
    rng = bk.rng(2)
    op = _op(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, 0.24, True)
    for m in hasenbusch_monomials(mus):
        phi, chi = m.sample(op, rng, return_noise=True, tol=1e-13)
        S = bk.to_numpy(m.action(phi, op, tol=1e-12))
        assert_close(S, np.sum(np.abs(bk.to_numpy(chi)) ** 2), rtol=1e-8, atol=1e-8, msg=repr(m))


def test_hasenbusch_kernel_is_ratio(bk):
    """Ratio kernel (M + mu_hi)(M + mu_lo)^{-1} on a dense matrix."""
    lat = lk.Lattice((4, 2))
    rng = bk.rng(3)
    D = WilsonDirac(lk.U1.random(rng, (2,), lat.shape), lk.U1, lat, kappa=0.2)
    M = bk.to_numpy(dense_matrix(D.normal, D.field_shape, like=D.U))
    m = HasenbuschMonomial(0.1, 0.4)
    K = dense_matrix(lambda v: m.kernel(D, v), D.field_shape, like=D.U)
    eye = np.eye(M.shape[0])
    assert_close(K, (M + 0.4 * eye) @ np.linalg.inv(M + 0.1 * eye), rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="mu_hi"):
        HasenbuschMonomial(0.5, 0.1)
    with pytest.raises(ValueError, match="increasing"):
        hasenbusch_monomials([0.3, 0.2])


# -- force ------------------------------------------------------------------------------------------
# Central differences in the field's precision: step eps, and the tolerance max(rtol |F|, atol) on the force
# (truncation ~ eps^2, round-off ~ finfo.eps |S| / eps ~ 1e-10 in double precision). Set by the dtype of the
# gauge field (float64 / complex128 on every backend), not by the backend.
FD_EPS_RTOL_ATOL = {"float64": (1e-5, 1e-6, 1e-8), "complex128": (1e-5, 1e-6, 1e-8)}


def _n_picks(bk):
    """Links checked: 4 on numpy; 1 (the same first link) elsewhere. Each link costs two CG solves to 1e-13,
    ~3 s on 2^4 SU(3) with array_api_strict (generic code, no fast path), so the other backends run the same
    check on one link: every code path, a quarter of the cost."""
    return 4 if bk.name == "numpy" else 1


def _fd_force(bk, S, U, G, lat, idx, eps):
    om = np.zeros((lat.nd, G.algebra_dim) + lat.shape)
    om[idx] = eps
    X = G.from_coords(bk.asarray(om), nd=lat.nd)
    Sp = S(G.mul(G.exp(X, nd=lat.nd), U, nd=lat.nd))
    Sm = S(G.mul(G.exp(-X, nd=lat.nd), U, nd=lat.nd))
    return (Sp - Sm) / (2 * eps)


def _assert_fd_close(F_idx, fd, rtol, atol, idx):
    """|F - fd| <= max(rtol |F|, atol)."""
    assert_close(fd, F_idx, rtol=0, atol=max(rtol * abs(F_idx), atol), msg=f"force at {idx}")


@pytest.mark.parametrize("name,shape,eo,mu", [("U1", (4, 4), False, 0.0), ("U1", (4, 4), True, 0.2),
                                              ("SU2", (4, 2), True, 0.0), ("SU3", (2, 2, 2, 2), False, 0.1)])
def test_force_finite_differences(bk, name, shape, eo, mu):
    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    rng = bk.rng(11)
    U = random_gauge_field(G, lat, rng)
    kappa = 0.18
    op = _op(U, G, lat, kappa, eo)
    phi = pseudofermion_heatbath(op, rng, mu)
    F = bk.to_numpy(pseudofermion_force_coords(phi, op, mu, tol=1e-13))
    assert F.shape == (lat.nd, G.algebra_dim) + lat.shape
    eps, rtol, atol = FD_EPS_RTOL_ATOL[bk.to_numpy(U).dtype.name]

    def S(Up):
        return float(bk.to_numpy(pseudofermion_action(phi, _op(Up, G, lat, kappa, eo), mu, tol=1e-13)))

    picks = np.random.default_rng(0)
    for _ in range(_n_picks(bk)):
        idx = tuple(int(picks.integers(0, n)) for n in F.shape)
        _assert_fd_close(float(F[idx]), _fd_force(bk, S, U, G, lat, idx, eps), rtol, atol, idx)
    # algebra-valued force: coordinates round-trip
    Fa = pseudofermion_force(phi, op, mu, tol=1e-13)
    assert_close(G.to_coords(Fa, nd=lat.nd), F, rtol=1e-5, atol=1e-8)


def test_hasenbusch_force_finite_differences(bk):
    G = lk.SU(2)
    lat = lk.Lattice((4, 2))
    rng = bk.rng(12)
    U = random_gauge_field(G, lat, rng)
    H = HasenbuschAction(G, lat, kappa=0.2, mus=[0.05, 0.4], even_odd=True, tol=1e-13)
    phis = H.sample(U, rng)
    F = bk.to_numpy(G.to_coords(H.force(U, phis), nd=lat.nd))
    eps, rtol, atol = FD_EPS_RTOL_ATOL[bk.to_numpy(U).dtype.name]
    picks = np.random.default_rng(1)
    for _ in range(_n_picks(bk)):
        idx = tuple(int(picks.integers(0, n)) for n in F.shape)
        fd = _fd_force(bk, lambda Up: float(bk.to_numpy(H.action(Up, phis))), U, G, lat, idx, eps)
        _assert_fd_close(float(F[idx]), fd, rtol, atol, idx)
    with pytest.raises(ValueError, match="phis"):
        H.action(U, phis[:2])


@pytest.mark.parametrize("name,shape,eo,mu", [("U1", (4, 4), False, 0.0), ("U1", (4, 2), True, 0.3),
                                              ("SU2", (4, 2), False, 0.1), ("SU2", (2, 4), True, 0.0)])
def test_force_against_autograd(torch_backends, name, shape, eo, mu):
    """d_a S from the analytic force equals torch autograd through the same operator code:
    derivative w.r.t. omega at 0 of U' = exp(omega . T) U, with S from a dense solve."""
    import torch

    G = lk.group_from_name(name)
    lat = lk.Lattice(shape)
    for tb in torch_backends:
        rng = tb.rng(21)
        U = random_gauge_field(G, lat, rng)
        kappa = 0.2
        op = _op(U, G, lat, kappa, eo)
        phi = pseudofermion_heatbath(op, rng, mu)
        F = pseudofermion_force_coords(phi, op, mu, tol=1e-13)

        omega = torch.zeros((lat.nd, G.algebra_dim) + lat.shape, dtype=torch.float64, device=tb.device,
                            requires_grad=True)
        Up = G.mul(G.exp(G.from_coords(omega, nd=lat.nd), nd=lat.nd), U, nd=lat.nd)
        opp = _op(Up, G, lat, kappa, eo)
        M = dense_matrix(lambda v: opp.normal(v, mu), opp.field_shape, like=Up, support=opp.support, batch_shape=())
        p = phi.reshape(-1)
        if eo:
            p = p[support_indices(opp.support, opp.field_shape)]
        S = torch.real(torch.vdot(p, torch.linalg.solve(M, p)))
        assert_close(float(S.detach()), float(pseudofermion_action(phi, op, mu, tol=1e-13)), rtol=1e-9, atol=0)
        (grad,) = torch.autograd.grad(S, omega)
        assert_close(grad, F, rtol=1e-7, atol=1e-8, msg=str(tb))


def test_pseudofermion_action_class(bk):
    lat = lk.Lattice((4, 4))
    rng = bk.rng(4)
    U = lk.U1.random(rng, (3, 2), lat.shape)
    pf = PseudofermionAction(lk.U1, lat, m0=0.1, even_odd=True, mu=0.05)
    assert pf.ndof() == 16
    phi = pf.sample(U, rng)
    assert bk.to_numpy(pf.action(U, phi)).shape == (3,)
    F = pf.force(U, phi)
    assert tuple(F.shape) == tuple(U.shape)
    with pytest.raises(ValueError, match="kappa"):
        PseudofermionAction(lk.U1, lat, kappa=-1.0)
    with pytest.raises(ValueError, match="mu"):
        PseudofermionAction(lk.U1, lat, kappa=0.1, mu=-0.1)


def test_phi_batch_checked_before_work(bk):
    lat = lk.Lattice((4, 4))
    U = lk.gauge.random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(2,))
    phi = WilsonDirac(lk.gauge.random_gauge_field(lk.U1, lat, bk.rng(1), batch_shape=(3,)), lk.U1, lat,
                      kappa=0.2).random_field(bk.rng(2))
    for act in (PseudofermionAction(lk.U1, lat, kappa=0.2), PseudofermionAction(lk.U1, lat, kappa=0.2, even_odd=True)):
        for f in (act.action, act.force):
            with pytest.raises(lk.lattice.LatticeMismatchError, match=r"phi has batch shape \(3,\); expected one that "
                                                                       r"broadcasts with the gauge field's batch"):
                f(U, phi)
    hb = HasenbuschAction(lk.U1, lat, kappa=0.2, mus=[0.5])
    for f in (hb.action, hb.force):
        with pytest.raises(lk.lattice.LatticeMismatchError, match=r"phi has batch shape \(3,\)"):
            f(U, [phi, phi])


def test_even_odd_on_odd_extents_refused_at_construction():
    lat = lk.Lattice((4, 3))
    match = r"even_odd=True: even/odd preconditioning needs every lattice extent even, got Lattice\(shape=\(4, 3\)\)"
    with pytest.raises(ValueError, match=match):
        PseudofermionAction(lk.U1, lat, kappa=0.2, even_odd=True)
    with pytest.raises(ValueError, match=match):
        HasenbuschAction(lk.U1, lat, kappa=0.2, mus=[0.5], even_odd=True)
    PseudofermionAction(lk.U1, lat, kappa=0.2)                       # without even/odd an odd extent is fine
    assert PseudofermionAction(lk.U1, lk.Lattice((4, 4)), kappa=0.2, maxiter=np.int64(50)).maxiter == 50


def test_hasenbusch_shifts_must_be_a_sequence():
    """A scalar or None as ``mus`` gave a bare "'float' object is not iterable", and a string was read character by
    character ("mus='0': expected a real number" for "0.1") (user probe): all are refused naming mus and what was
    passed; lists, tuples and 1D arrays are taken."""
    lat = lk.Lattice((4, 4))
    for bad, shown in ((0.1, "0.1"), (None, "None"), ("0.1", "'0.1'"), (np.array(0.1), r"array\(0.1\)"),
                       (np.array([[0.1, 0.5]]), r"array\(\[\[0.1, 0.5\]\]\)"), ({0.1}, r"\{0.1\}")):
        match = rf"^mus={shown}: expected a list of increasing non-negative shifts such as \[0.1, 0.5\] \(\[\] for"
        with pytest.raises(TypeError, match=match):
            hasenbusch_monomials(bad)
        with pytest.raises(TypeError, match=match):
            HasenbuschAction(lk.U1, lat, kappa=0.2, mus=bad)
        if bad is not None:   # None is the sampler's single plain monomial
            with pytest.raises(TypeError, match=match):
                lk.mc.Nf2HMC.from_couplings(lk.U1, lat, 2.0, kappa=0.2, mus=bad, rng=lk.backends.rng(0))
    ref = [repr(m) for m in hasenbusch_monomials([0.1, 0.5])]
    for ok in ((0.1, 0.5), np.array([0.1, 0.5])):
        assert [repr(m) for m in hasenbusch_monomials(ok)] == ref
    assert len(HasenbuschAction(lk.U1, lat, kappa=0.2, mus=()).monomials) == 1
    with pytest.raises(ValueError, match=r"^mus=\[0.5, 0.1\]: expected strictly increasing"):
        hasenbusch_monomials((0.5, 0.1))


def test_antiperiodic_time_extent_one_refused_at_construction():
    """L_0 = 1 with the antiperiodic time direction was accepted by the actions and the sampler and refused only at
    the first sample (user probe): the couplings were checked on a 2^Nd lattice, never the real one."""
    lat = lk.Lattice((1, 4))
    match = r"^lattice Lattice\(shape=\(1, 4\)\): the antiperiodic time direction needs L_0 >= 2$"
    with pytest.raises(ValueError, match=match):
        PseudofermionAction(lk.U1, lat, kappa=0.2)
    with pytest.raises(ValueError, match=match):
        HasenbuschAction(lk.U1, lat, kappa=0.2, mus=[0.1])
    with pytest.raises(ValueError, match=match):
        lk.mc.Nf2HMC.from_couplings(lk.U1, lat, 2.0, kappa=0.2, rng=lk.backends.rng(0))
    with pytest.raises(ValueError, match=r"^lattice Lattice\(shape=\(1, 2, 2, 2\)\): the antiperiodic time"):
        PseudofermionAction(lk.SU(3), lk.Lattice((1, 2, 2, 2)), m0=0.1)
    PseudofermionAction(lk.U1, lat, kappa=0.2, antiperiodic=False)   # periodic time: one site is a valid lattice
    HasenbuschAction(lk.U1, lat, kappa=0.2, mus=[0.1], antiperiodic=False)


def test_a_source_broadcasts_against_the_gauge_batch(bk):
    """One source for every configuration (no batch axis, or fewer axes than the gauge batch) is solved as if
    broadcast, as ``D.apply`` does: it failed inside the CG with a bare shape error (user probe)."""
    lat = lk.Lattice((4, 4))
    U = lk.gauge.random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(2, 3))
    D = WilsonDirac(U, lk.U1, lat, kappa=0.2)
    for batch in ((), (3,), (1, 3)):
        b = D.random_field(bk.rng(1), batch)
        full = bk.xp.broadcast_to(b, (2, 3) + tuple(D.field_shape))
        x, info = solve_normal(D, b, tol=1e-12)
        x_ref, _ = solve_normal(D, full, tol=1e-12)
        assert tuple(x.shape) == (2, 3) + tuple(D.field_shape)
        assert_close(bk.to_numpy(x), bk.to_numpy(x_ref), rtol=0, atol=0)
        act = PseudofermionAction(lk.U1, lat, kappa=0.2)
        assert_close(bk.to_numpy(act.action(U, b)), bk.to_numpy(act.action(U, full)), rtol=0, atol=0)
        assert_close(bk.to_numpy(act.force(U, b)), bk.to_numpy(act.force(U, full)), rtol=0, atol=0)
