"""Topological charge (2D U(1) and 4D clover), clover field strength and energy densities."""

from __future__ import annotations

import math

import numpy as np
import pytest

import latticekit as lk
from latticekit.gauge import cold_gauge_field, gauge_transform, random_gauge_field
from latticekit.observables import (
    clover_field_strength,
    energy_density_clover,
    energy_density_clover_field,
    energy_density_plaquette,
    topological_charge_clover,
    topological_charge_density_clover,
    topological_charge_u1_2d,
    u1_flux_field,
)
from latticekit.testing import assert_close

GROUPS_4D = [pytest.param(lk.U1, id="U1"), pytest.param(lk.SU(2), id="SU2"), pytest.param(lk.SU(3), id="SU3")]


# -- 2D U(1) -----------------------------------------------------------------------------------
def test_u1_2d_charge_is_integer_and_odd(bk):
    lat = lk.Lattice((6, 8))
    U = random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(16,))
    Q = bk.to_numpy(topological_charge_u1_2d(U, lat))
    assert Q.shape == (16,)
    assert_close(Q, np.round(Q), rtol=1e-7, atol=1e-10)
    assert np.any(np.round(Q) != 0)                     # hot fields carry charge
    assert_close(bk.to_numpy(topological_charge_u1_2d(-U, lat)), -Q, rtol=1e-7, atol=1e-10)
    # gauge and translation invariance; angles shifted by 2 pi do not matter
    Om = lk.U1.random(bk.rng(1), (16,), lat.shape)
    assert_close(bk.to_numpy(topological_charge_u1_2d(gauge_transform(U, Om, lk.U1, lat), lat)), Q,
                 rtol=1e-7, atol=1e-10)
    assert_close(bk.to_numpy(topological_charge_u1_2d(bk.xp.roll(U, 3, axis=-1), lat)), Q, rtol=1e-7, atol=1e-10)
    assert_close(bk.to_numpy(topological_charge_u1_2d(U + 2 * math.pi, lat)), Q, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("shape", [(8, 8), (6, 10), (5, 7)])
@pytest.mark.parametrize("n", [-3, -1, 0, 1, 2, 4])
def test_u1_2d_flux_configuration_has_exact_charge(bk, shape, n):
    lat = lk.Lattice(shape)
    U = u1_flux_field(lat, n, backend=bk.name, device=bk.device)
    f = 2 * math.pi * n / lat.volume
    P = bk.to_numpy(lk.observables.plaquettes(U, lk.U1, lat, 0, 1))
    assert_close(np.cos(P), math.cos(f), rtol=1e-7, atol=1e-12)  # every plaquette is exp(i f)
    assert_close(np.sin(P), math.sin(f), rtol=1e-7, atol=1e-12)
    assert_close(float(topological_charge_u1_2d(U, lat)), n, rtol=0, atol=1e-10)
    # smooth field: clover F = sin f everywhere, E_clover = sin^2 f, E_plaq = 2 (1 - cos f)
    assert_close(bk.to_numpy(clover_field_strength(U, lk.U1, lat)), math.sin(f), rtol=1e-7, atol=1e-12)
    assert_close(float(energy_density_clover(U, lk.U1, lat)), math.sin(f) ** 2, rtol=0, atol=1e-12)
    assert_close(float(energy_density_plaquette(U, lk.U1, lat)), 2 * (1 - math.cos(f)), rtol=0, atol=1e-12)
    # gauge transformation keeps the charge
    Om = lk.U1.random(bk.rng(2), (), lat.shape)
    assert_close(float(topological_charge_u1_2d(gauge_transform(U, Om, lk.U1, lat), lat)), n, rtol=0, atol=1e-10)


def test_u1_2d_errors(bk):
    with pytest.raises(ValueError, match="2D"):
        lat = lk.Lattice((4, 4, 4))
        topological_charge_u1_2d(cold_gauge_field(lk.U1, lat, backend=bk.name, device=bk.device), lat)
    with pytest.raises(lk.LatticeMismatchError, match="U has shape"):
        lat = lk.Lattice((4, 4))
        topological_charge_u1_2d(lk.U1.random(bk.rng(0), (3,), lat.shape), lat)


# -- 4D clover ---------------------------------------------------------------------------------
def _embed(theta, group):
    """numpy: U(1) angles -> group elements (U1: as is; SU(N): diag(e^{i th}, e^{-i th}, 1, ...))."""
    if group is lk.U1:
        return theta
    N = group.N
    out = np.zeros(theta.shape[:1] + (N, N) + theta.shape[1:], dtype=complex)
    out[:, 0, 0] = np.exp(1j * theta)
    out[:, 1, 1] = np.exp(-1j * theta)
    for k in range(2, N):
        out[:, k, k] = 1.0
    return out


def _reflect_time(U, group, nd):
    """numpy: x0 -> -x0. U'_0(x) = U_0(-x0 - 1)^dag, U'_i(x) = U_i(-x0)."""
    ax = -nd
    out = []
    for mu in range(nd):
        Um = U[mu]
        if mu == 0:
            g = np.flip(Um, axis=ax)
            g = -g if group is lk.U1 else np.conj(np.swapaxes(g, 0, 1))
        else:
            g = np.roll(np.flip(Um, axis=ax), 1, axis=ax)
        out.append(g)
    return np.stack(out)


@pytest.mark.parametrize("group", GROUPS_4D)
def test_clover_charge_of_constant_flux_field(bk, group):
    lat = lk.Lattice((3, 2, 2, 4))
    n1, n2 = 1, -2
    theta = u1_flux_field(lat, n1, 0, 1, backend="numpy") + u1_flux_field(lat, n2, 2, 3, backend="numpy")
    U = bk.asarray(_embed(np.asarray(theta), group))
    f = 2 * math.pi * n1 / 6
    g = 2 * math.pi * n2 / 8
    tr_h2 = 1.0 if group is lk.U1 else 2.0   # tr H^2 of the embedding
    expected = tr_h2 * lat.volume * math.sin(f) * math.sin(g) / (4 * math.pi ** 2)
    Q = float(topological_charge_clover(U, group, lat))
    assert_close(Q, expected, rtol=0, atol=1e-12)
    assert expected < 0  # sign convention: Q has the sign of n1 n2
    q = bk.to_numpy(topological_charge_density_clover(U, group, lat))
    assert_close(q, expected / lat.volume, rtol=1e-7, atol=1e-13)  # uniform density
    E = float(energy_density_clover(U, group, lat))
    assert_close(E, tr_h2 * (math.sin(f) ** 2 + math.sin(g) ** 2), rtol=0, atol=1e-12)
    Ep = float(energy_density_plaquette(U, group, lat))
    assert_close(Ep, 2 * tr_h2 * (2 - math.cos(f) - math.cos(g)), rtol=0, atol=1e-12)
    # gauge-rotated copy
    Om = group.random(bk.rng(3), (), lat.shape)
    assert_close(float(topological_charge_clover(gauge_transform(U, Om, group, lat), group, lat)), expected,
                 rtol=0, atol=1e-12)


@pytest.mark.parametrize("group", GROUPS_4D)
def test_clover_charge_gauge_invariant_and_parity_odd(bk, group):
    lat = lk.Lattice((3, 2, 3, 2))
    rng = bk.rng(4)
    U = group.near_identity(rng, (2, lat.nd), lat.shape, eps=0.6) if group is not lk.U1 else \
        0.6 * lk.U1.random(rng, (2, lat.nd), lat.shape)
    Q = bk.to_numpy(topological_charge_clover(U, group, lat))
    E = bk.to_numpy(energy_density_clover_field(U, group, lat))
    assert Q.shape == (2,) and np.all(np.abs(Q) > 1e-6)
    Om = group.random(rng, (2,), lat.shape)
    Ug = gauge_transform(U, Om, group, lat)
    assert_close(bk.to_numpy(topological_charge_clover(Ug, group, lat)), Q, rtol=1e-7, atol=1e-12)
    assert_close(bk.to_numpy(energy_density_clover_field(Ug, group, lat)), E, rtol=1e-7, atol=1e-12)
    # reflection of the time axis flips the sign exactly
    Un = bk.to_numpy(U)
    Ur = bk.asarray(np.stack([_reflect_time(Un[b], group, lat.nd) for b in range(2)]))
    assert_close(bk.to_numpy(topological_charge_clover(Ur, group, lat)), -Q, rtol=1e-7, atol=1e-12)
    # translation invariance
    Ut = bk.xp.roll(U, 2, axis=-2)
    assert_close(bk.to_numpy(topological_charge_clover(Ut, group, lat)), Q, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("group", [lk.SU(2), lk.SU(3)])
def test_clover_field_strength_properties(bk, group):
    lat = lk.Lattice((3, 4, 3))
    U = random_gauge_field(group, lat, bk.rng(5), batch_shape=(2,))
    F = bk.to_numpy(clover_field_strength(U, group, lat))
    assert F.shape == (2, 3, group.N, group.N) + lat.shape
    nd = lat.nd
    assert_close(F + np.conj(np.swapaxes(F, -nd - 2, -nd - 1)), 0.0, rtol=0, atol=1e-13)
    assert_close(np.trace(F, axis1=-nd - 2, axis2=-nd - 1), 0.0, rtol=0, atol=1e-13)
    # brute force leaf 1 + its three neighbours at one site for one plane (mu, nu) = (0, 2)
    Un = bk.to_numpy(U)[0]
    M = np.moveaxis(np.moveaxis(Un, 1, -1), 1, -1)   # (Nd, *L, N, N)
    x = np.array([1, 2, 0])
    mu, nu = 0, 2
    e = np.eye(3, dtype=int)

    def Ul(d, y):
        return M[(d,) + tuple(np.mod(y, lat.shape))]

    def path(start, steps):
        W, y = np.eye(group.N, dtype=complex), np.array(start)
        for d, s in steps:
            if s > 0:
                W, y = W @ Ul(d, y), y + e[d]
            else:
                y = y - e[d]
                W = W @ Ul(d, y).conj().T
        return W

    Q = (path(x, [(mu, 1), (nu, 1), (mu, -1), (nu, -1)]) + path(x, [(nu, 1), (mu, -1), (nu, -1), (mu, 1)])
         + path(x, [(mu, -1), (nu, -1), (mu, 1), (nu, 1)]) + path(x, [(nu, -1), (mu, 1), (nu, 1), (mu, -1)]))
    ref = (Q - Q.conj().T) / 8
    ref -= np.trace(ref) / group.N * np.eye(group.N)
    k = lat.planes().index((mu, nu))
    assert_close(F[(0, k, slice(None), slice(None)) + tuple(x)], ref, rtol=1e-7, atol=1e-13)


@pytest.mark.parametrize("group", GROUPS_4D)
def test_pure_gauge_field_has_no_field_strength(bk, group):
    lat = lk.Lattice((3, 2, 3, 2))
    Om = group.random(bk.rng(6), (), lat.shape)
    U = gauge_transform(cold_gauge_field(group, lat, backend=bk.name, device=bk.device), Om, group, lat)
    assert_close(clover_field_strength(U, group, lat), 0.0, rtol=0, atol=1e-13)
    assert_close(topological_charge_clover(U, group, lat), 0.0, rtol=0, atol=1e-13)
    assert_close(energy_density_clover(U, group, lat), 0.0, rtol=0, atol=1e-13)
    assert_close(energy_density_plaquette(U, group, lat), 0.0, rtol=0, atol=1e-12)


def test_clover_errors(bk):
    lat = lk.Lattice((3, 3, 3))
    U = cold_gauge_field(lk.SU(2), lat, backend=bk.name, device=bk.device)
    with pytest.raises(ValueError, match="4"):
        topological_charge_clover(U, lk.SU(2), lat)
    with pytest.raises(TypeError, match="n="):
        u1_flux_field(lat, 1.5)
