"""Wilson gauge action: exact values, invariances, staples and the force (finite differences, autograd)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import WilsonGaugeAction, staples, wilson_gauge_action, wilson_gauge_force
from latticekit.gauge import cold_gauge_field, gauge_transform, link, random_gauge_field
from latticekit.lattice import LatticeMismatchError
from latticekit.testing import assert_close

CASES = [
    pytest.param(lk.U1, (4, 5), id="U1-2d"),
    pytest.param(lk.U1, (3, 4, 3), id="U1-3d"),
    pytest.param(lk.SU(2), (3, 4), id="SU2-2d"),
    pytest.param(lk.SU(2), (3, 3, 3, 3), id="SU2-4d"),
    pytest.param(lk.SU(3), (3, 4), id="SU3-2d"),
    pytest.param(lk.SU(3), (3, 3, 3, 3), id="SU3-4d"),
]


def _scale(b):
    """max(1, max|b|): tolerances below are norm-wise, relative to the largest entry of the reference."""
    return max(1.0, float(np.max(np.abs(np.asarray(b)))))


@pytest.mark.parametrize("group,shape", CASES)
def test_cold_field_action_is_exact(bk, group, shape):
    lat = lk.Lattice(shape)
    U = cold_gauge_field(group, lat, (2,), backend=bk.name, device=bk.device)
    beta = 2.5
    S = bk.to_numpy(wilson_gauge_action(U, beta, group, lat))
    n_planes = lat.nd * (lat.nd - 1) // 2
    assert S.shape == (2,)
    assert_close(S, -beta * lat.volume * n_planes, rtol=1e-14, atol=0)


@pytest.mark.parametrize("group,shape", CASES)
def test_action_gauge_and_translation_invariant(bk, group, shape):
    lat = lk.Lattice(shape)
    rng = bk.rng(1)
    U = random_gauge_field(group, lat, rng, batch_shape=(2,))
    Om = group.random(rng, (2,), lat.shape)
    S = bk.to_numpy(wilson_gauge_action(U, 1.3, group, lat))
    S_g = bk.to_numpy(wilson_gauge_action(gauge_transform(U, Om, group, lat), 1.3, group, lat))
    assert_close(S_g, S, rtol=0, atol=1e-12 * _scale(S))
    xp = bk.xp
    U_t = xp.roll(xp.roll(U, 1, axis=-1), 2, axis=-lat.nd)
    assert_close(bk.to_numpy(wilson_gauge_action(U_t, 1.3, group, lat)), S, rtol=0, atol=1e-12 * _scale(S))
    # not trivially constant: another field gives another action
    U2 = random_gauge_field(group, lat, bk.rng(2), batch_shape=(2,))
    assert np.max(np.abs(bk.to_numpy(wilson_gauge_action(U2, 1.3, group, lat)) - S)) > 1e-3 * _scale(S)


@pytest.mark.parametrize("group,shape", CASES)
def test_staples_reproduce_action(bk, group, shape):
    # every plaquette has 4 links: sum_{x,mu} Re tr(U_mu A_mu) = 4 sum_{x, mu<nu} Re tr P
    lat = lk.Lattice(shape)
    U = random_gauge_field(group, lat, bk.rng(3), batch_shape=(2,))
    A = staples(U, group, lat)
    assert tuple(A.shape) == tuple(U.shape)
    xp = bk.xp
    nd = lat.nd
    tot = 0.0
    for mu in range(nd):
        Um, Am = link(U, mu, group, lat), link(A, mu, group, lat)
        if group is lk.U1:
            prod = group.to_matrix(Um, nd=nd) * Am
        else:
            prod = group.trace(group.mul(Um, Am, nd=nd), nd=nd)
        tot = tot + bk.to_numpy(xp.sum(xp.real(prod), axis=tuple(range(-nd, 0))))
    S = bk.to_numpy(wilson_gauge_action(U, 2.0, group, lat))
    assert_close(-(2.0 / group.N) * tot / 4.0, S, rtol=1e-12, atol=0)


@pytest.mark.parametrize("group,shape", CASES)
def test_force_gauge_covariant_and_algebra_valued(bk, group, shape):
    lat = lk.Lattice(shape)
    rng = bk.rng(4)
    U = random_gauge_field(group, lat, rng)
    F = wilson_gauge_force(U, 1.7, group, lat)
    assert tuple(F.shape) == tuple(U.shape)
    nd = lat.nd
    if group is lk.U1:
        # gauge invariant for an abelian group; equal to beta Im(exp(i theta) A)
        Om = group.random(rng, (), lat.shape)
        Fg = wilson_gauge_force(gauge_transform(U, Om, group, lat), 1.7, group, lat)
        assert_close(Fg, F, rtol=0, atol=1e-12 * _scale(bk.to_numpy(F)))
        A = staples(U, group, lat)
        ref = 1.7 * bk.xp.imag(group.to_matrix(U, nd=nd) * A)
        assert_close(F, ref, rtol=0, atol=1e-12 * _scale(bk.to_numpy(ref)))
        return
    Fn = bk.to_numpy(F)
    # traceless anti-Hermitian
    assert_close(Fn, -np.conj(np.swapaxes(Fn, -nd - 2, -nd - 1)), rtol=0, atol=1e-12)
    assert_close(np.trace(Fn, axis1=-nd - 2, axis2=-nd - 1), 0.0, rtol=0, atol=1e-12)
    # F_mu(x) -> Omega(x) F_mu(x) Omega(x)^dag under U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag
    Om = group.random(rng, (), lat.shape)
    Fg = wilson_gauge_force(gauge_transform(U, Om, group, lat), 1.7, group, lat)
    Om_b = bk.xp.stack([Om] * nd, axis=0)
    ref = group.mul_adj(group.mul(Om_b, F, nd=nd), Om_b, nd=nd)
    assert_close(Fg, ref, rtol=0, atol=1e-12 * _scale(bk.to_numpy(ref)))


def _perturbed(U, group, lat, mu, site, a, eps):
    """numpy: U with U_mu(site) -> exp(eps T_a) U_mu(site)."""
    U = np.array(U, copy=True)
    if group is lk.U1:
        U[(mu,) + site] += eps
        return U
    w = np.zeros(group.algebra_dim)
    w[a] = eps
    g = group.exp(group.from_coords(w, nd=0), nd=0)
    idx = (mu, slice(None), slice(None)) + site
    U[idx] = g @ U[idx]
    return U


# Central differences with step eps: truncation ~ eps^2 |S^(3)| ~ 1e-10 and round-off ~ finfo.eps |S| / eps ~ 1e-9
# in double precision. The tolerance is that of the field's dtype (float64 / complex128 on every backend).
FD_EPS_AND_TOL = {"float64": (1e-5, 1e-7), "complex128": (1e-5, 1e-7)}


@pytest.mark.parametrize("group,shape", CASES)
def test_force_matches_finite_differences(bk, group, shape):
    lat = lk.Lattice(shape)
    U = random_gauge_field(group, lat, bk.rng(5))
    beta = 1.9
    F = wilson_gauge_force(U, beta, group, lat)
    nd = lat.nd
    coords = bk.to_numpy(group.to_coords(F, nd=nd))  # (Nd, dim, *L)
    Un = bk.to_numpy(U)
    eps, tol = FD_EPS_AND_TOL[Un.dtype.name]
    gen = np.random.default_rng(0)
    for _ in range(3):
        mu = int(gen.integers(nd))
        site = tuple(int(gen.integers(L)) for L in lat.shape)
        for a in range(group.algebra_dim):
            # the perturbed fields are built on the host and handed to the backend under test
            sp = wilson_gauge_action(bk.asarray(_perturbed(Un, group, lat, mu, site, a, eps)), beta, group, lat)
            sm = wilson_gauge_action(bk.asarray(_perturbed(Un, group, lat, mu, site, a, -eps)), beta, group, lat)
            fd = (float(bk.to_numpy(sp)) - float(bk.to_numpy(sm))) / (2 * eps)
            # |fd - F| <= tol * max(1, |fd|)
            assert_close(coords[(mu, a) + site], fd,
                         rtol=0, atol=tol * max(1.0, abs(fd)), msg=f"mu {mu} site {site} a {a}")


@pytest.mark.parametrize("group,shape", CASES)
def test_force_matches_torch_autograd(torch_backends, group, shape):
    import torch

    lat = lk.Lattice(shape)
    nd = lat.nd
    for tb in torch_backends:
        U = random_gauge_field(group, lat, tb.rng(6), batch_shape=(2,))
        beta = 0.8
        F = wilson_gauge_force(U, beta, group, lat)
        if group is lk.U1:
            th = U.clone().requires_grad_(True)
            wilson_gauge_action(th, beta, group, lat).sum().backward()
            grad = th.grad
            ref = F
        else:
            omega = torch.zeros((2, nd, group.algebra_dim) + lat.shape, dtype=torch.float64, device=tb.device,
                                requires_grad=True)
            Up = group.mul(group.exp(group.from_coords(omega, nd=nd), nd=nd), U, nd=nd)
            wilson_gauge_action(Up, beta, group, lat).sum().backward()
            grad = omega.grad
            ref = group.to_coords(F, nd=nd)
        assert_close(grad, ref, rtol=0, atol=1e-11, msg=str(tb))


def test_class_interface_and_errors(bk):
    lat = lk.Lattice((4, 4))
    G = lk.SU(2)
    act = WilsonGaugeAction(G, lat, beta=2.0)
    U = random_gauge_field(G, lat, bk.rng(7), batch_shape=(3,))
    assert_close(bk.to_numpy(act(U)), bk.to_numpy(wilson_gauge_action(U, 2.0, G, lat)), rtol=1e-7, atol=0)
    assert_close(bk.to_numpy(act.action(U)), bk.to_numpy(act(U)), rtol=1e-7, atol=0)
    assert tuple(act.force(U).shape) == tuple(U.shape)
    assert act.field_shape == (2, 2, 2, 4, 4)
    with pytest.raises(LatticeMismatchError, match=r"U has shape .*expected"):
        act(U[..., :3])
    with pytest.raises(LatticeMismatchError, match="U has shape"):
        wilson_gauge_force(lk.U1.random(bk.rng(0), (2,), (4, 4)), 1.0, G, lat)
    with pytest.raises(TypeError, match="group"):
        WilsonGaugeAction("SU2", lat, 1.0)
    with pytest.raises(ValueError, match="beta"):
        WilsonGaugeAction(G, lat, math.inf)
    with pytest.raises(ValueError, match="2 dimensions"):
        WilsonGaugeAction(G, lk.Lattice((4,)), 1.0)
    # one coupling per batch element: the action and the force name a wrong shape alike (the action failed with a
    # bare broadcasting error); the right shape gives each element its own coupling
    for f in (wilson_gauge_action, wilson_gauge_force):
        with pytest.raises(ValueError, match=r"^beta has shape \(2,\); expected a number or one coupling per batch "
                                             r"element, shape \(3,\)"):
            f(U, bk.asarray(np.array([1.0, 2.0])), G, lat)
    betas = bk.asarray(np.array([1.0, 2.0, 3.0]))
    S1 = bk.to_numpy(wilson_gauge_action(U, 1.0, G, lat))
    assert_close(bk.to_numpy(wilson_gauge_action(U, betas, G, lat)), S1 * [1.0, 2.0, 3.0], rtol=1e-13, atol=0)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=["U1", "SU2"])
def test_force_with_one_coupling_per_trailing_batch_axis_is_the_derivative_of_the_action(bk, G):
    """beta of shape (3,) on a field of batch shape (2, 3) couples to the trailing batch axis, in the action and in the
    force alike: each element's force is the force of that element at its own coupling. The force lined beta up with
    the leading batch axis (off by 3.7 for U(1) with batch (3, 3); a bare broadcasting error for (2, 3); user probe)."""
    lat = lk.Lattice((4, 4))
    U = random_gauge_field(G, lat, bk.rng(3), batch_shape=(2, 3))
    b = [0.5, 1.5, 2.5]
    betas = bk.asarray(np.array(b))
    S, F = bk.to_numpy(wilson_gauge_action(U, betas, G, lat)), bk.to_numpy(wilson_gauge_force(U, betas, G, lat))
    for i in range(2):
        for j in range(3):
            Uij = U[i, j, ...]
            assert_close(S[i, j], bk.to_numpy(wilson_gauge_action(Uij, b[j], G, lat)), rtol=1e-13, atol=0)
            assert_close(F[i, j], bk.to_numpy(wilson_gauge_force(Uij, b[j], G, lat)), rtol=1e-13, atol=1e-14)


def test_beta_as_a_numpy_scalar_or_an_array_of_another_library(bk):
    """A NumPy float32 ``beta`` made ``-beta / N`` a float32 number (the float64 action off by 3e-8 relative at
    beta = 1), and a torch ``beta`` made the action of a NumPy field a torch tensor (user probe): a number is taken
    as a Python float, an array of another library than ``U``'s is refused."""
    from latticekit.backends import BackendError

    lat, G = lk.Lattice((4, 4)), lk.SU(3)
    U = random_gauge_field(G, lat, bk.rng(0), batch_shape=(2,))
    exact = bk.to_numpy(wilson_gauge_action(U, 1.0, G, lat))
    assert np.array_equal(bk.to_numpy(wilson_gauge_action(U, np.float32(1.0), G, lat)), exact)
    assert type(WilsonGaugeAction(G, lat, np.float32(2.0)).beta) is float
    other = "numpy" if bk.name != "numpy" else "array_api_strict"
    beta = lk.backends.namespace(other).asarray(1.0, dtype=lk.backends.namespace(other).float64)
    for f in (wilson_gauge_action, wilson_gauge_force):
        with pytest.raises(BackendError, match="different or unsupported array libraries"):
            f(U, beta, G, lat)
