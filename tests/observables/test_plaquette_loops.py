"""Plaquettes, Wilson loops and Polyakov loops: exact values, invariances, brute-force references."""

from __future__ import annotations

import numpy as np
import pytest

import latticekit as lk
from latticekit.gauge import cold_gauge_field, gauge_transform, random_gauge_field
from latticekit.observables import (
    average_plaquette,
    average_polyakov_loop,
    energy_density_plaquette,
    plane_plaquettes,
    plaquette_field,
    plaquettes,
    polyakov_loop,
    wilson_line,
    wilson_loop,
    wilson_loops,
)
from latticekit.testing import assert_close

CASES = [
    pytest.param(lk.U1, (4, 5), id="U1-2d"),
    pytest.param(lk.U1, (3, 4, 3), id="U1-3d"),
    pytest.param(lk.SU(2), (3, 4), id="SU2-2d"),
    pytest.param(lk.SU(2), (3, 3, 2, 3), id="SU2-4d"),
    pytest.param(lk.SU(3), (3, 4), id="SU3-2d"),
    pytest.param(lk.SU(3), (3, 2, 3, 2), id="SU3-4d"),
]


def _np_mat(U, group):
    """numpy link matrices with group axes last: (Nd, *L, n, n)."""
    U = np.asarray(U)
    if group is lk.U1:
        return np.exp(1j * U)[..., None, None]
    return np.moveaxis(np.moveaxis(U, 1, -1), 1, -1)


def _ref_loop(U, group, shape, R, T, mu, nu):
    """Brute-force site loop: (1/N) Re tr of the R x T loop (T along mu, R along nu), averaged."""
    M = _np_mat(U, group)
    nd = len(shape)
    tot = 0.0
    for x in np.ndindex(*shape):
        pos = np.array(x)
        W = np.eye(M.shape[-1], dtype=complex)

        def step(d, sign):
            nonlocal W, pos
            if sign > 0:
                W = W @ M[(d,) + tuple(pos % shape)]
                pos = pos + np.eye(nd, dtype=int)[d]
            else:
                pos = pos - np.eye(nd, dtype=int)[d]
                W = W @ M[(d,) + tuple(pos % shape)].conj().T

        for _ in range(T):
            step(mu, +1)
        for _ in range(R):
            step(nu, +1)
        for _ in range(T):
            step(mu, -1)
        for _ in range(R):
            step(nu, -1)
        tot += np.trace(W).real / M.shape[-1]
    return tot / np.prod(shape)


@pytest.mark.parametrize("group,shape", CASES)
def test_cold_field(bk, group, shape):
    lat = lk.Lattice(shape)
    U = cold_gauge_field(group, lat, (2,), backend=bk.name, device=bk.device)
    assert_close(bk.to_numpy(average_plaquette(U, group, lat)), 1.0, rtol=1e-7, atol=0)
    assert bk.to_numpy(plaquette_field(U, group, lat)).shape == (2, len(lat.planes())) + shape
    assert_close(bk.to_numpy(wilson_loops(U, group, lat, 2, 1)), 1.0, rtol=1e-7, atol=0)
    assert_close(bk.to_numpy(average_polyakov_loop(U, group, lat)), 1.0, rtol=1e-7, atol=0)
    assert_close(bk.to_numpy(energy_density_plaquette(U, group, lat)), 0.0, rtol=0, atol=1e-14)


@pytest.mark.parametrize("group,shape", CASES)
def test_gauge_invariance(bk, group, shape):
    lat = lk.Lattice(shape)
    rng = bk.rng(11)
    U = random_gauge_field(group, lat, rng, batch_shape=(2,))
    Om = group.random(rng, (2,), lat.shape)
    Ug = gauge_transform(U, Om, group, lat)
    for f in (lambda V: plaquette_field(V, group, lat),
              lambda V: wilson_loop(V, group, lat, 2, 1, mu=0, nu=1),
              lambda V: wilson_loops(V, group, lat, 1, 2),
              lambda V: polyakov_loop(V, group, lat, mu=0),
              lambda V: polyakov_loop(V, group, lat, mu=lat.nd - 1)):
        a, b = bk.to_numpy(f(U)), bk.to_numpy(f(Ug))
        assert_close(b, a, rtol=1e-7, atol=1e-12)
    assert np.ptp(bk.to_numpy(plaquette_field(U, group, lat))) > 0.1  # not a trivial observable


@pytest.mark.parametrize("group,shape", CASES)
def test_wilson_loops_against_brute_force(bk, group, shape):
    lat = lk.Lattice(shape)
    U = random_gauge_field(group, lat, bk.rng(12))
    Un = bk.to_numpy(U)  # the brute-force references walk the links on the host

    def num(x):
        return float(bk.to_numpy(x))

    for R, T, mu, nu in [(1, 1, 0, 1), (2, 1, 0, 1), (1, 3, 1, 0), (2, 2, 0, lat.nd - 1)]:
        got = num(wilson_loop(U, group, lat, R, T, mu=mu, nu=nu))
        assert_close(got, _ref_loop(Un, group, shape, R, T, mu, nu), rtol=0, atol=1e-12, msg=f"W({R},{T}) {mu}{nu}")
    # W(1,1) in (mu, nu) is the plaquette; wilson_loops(1,1) is the average plaquette
    pf = bk.to_numpy(plane_plaquettes(U, group, lat))
    for k, (mu, nu) in enumerate(lat.planes()):
        assert_close(num(wilson_loop(U, group, lat, 1, 1, mu, nu)), pf[k], rtol=0, atol=1e-13)
    assert_close(num(wilson_loops(U, group, lat, 1, 1)), num(average_plaquette(U, group, lat)), rtol=0, atol=1e-13)
    # R x T averaged over both orientations
    pairs = lat.planes() + [(n, m) for m, n in lat.planes()]
    ref = np.mean([_ref_loop(Un, group, shape, 2, 1, m, n) for m, n in pairs])
    assert_close(num(wilson_loops(U, group, lat, 2, 1)), ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("group,shape", CASES)
def test_polyakov_loop_against_brute_force(bk, group, shape):
    lat = lk.Lattice(shape)
    U = random_gauge_field(group, lat, bk.rng(13), batch_shape=(2,))
    Un = bk.to_numpy(U)  # the brute-force reference walks the links on the host
    for mu in range(lat.nd):
        P = bk.to_numpy(polyakov_loop(U, group, lat, mu=mu))
        rest = tuple(L for d, L in enumerate(shape) if d != mu)
        assert P.shape == (2,) + rest
        ref = np.empty(P.shape, dtype=complex)
        for b in range(2):
            M = _np_mat(Un[b], group)
            for y in np.ndindex(*rest):
                W = np.eye(M.shape[-1], dtype=complex)
                for t in range(shape[mu]):
                    x = list(y)
                    x.insert(mu, t)
                    W = W @ M[(mu,) + tuple(x)]
                ref[(b,) + y] = np.trace(W) / M.shape[-1]
        assert_close(P, ref, rtol=0, atol=1e-12, msg=f"mu = {mu}")


def test_polyakov_loop_odd_extents_and_center(bk):
    G = lk.SU(3)
    for shape in [(5, 3), (7, 2), (1, 4)]:
        lat = lk.Lattice(shape)
        U = random_gauge_field(G, lat, bk.rng(14))
        P = bk.to_numpy(polyakov_loop(U, G, lat))
        # centre transformation of the time links on one slice: P -> z P, plaquettes unchanged
        z = np.exp(2j * np.pi / 3)
        Un = bk.to_numpy(U).copy()
        Un[0, :, :, shape[0] - 1, :] *= z
        Uz = bk.asarray(Un)
        assert_close(bk.to_numpy(polyakov_loop(Uz, G, lat)), z * P, rtol=1e-7, atol=1e-12)
        if shape[0] > 1:
            assert_close(bk.to_numpy(average_plaquette(Uz, G, lat)), bk.to_numpy(average_plaquette(U, G, lat)),
                         rtol=1e-7, atol=1e-13)


@pytest.mark.parametrize("group,shape", CASES)
def test_translation_invariance(bk, group, shape):
    lat = lk.Lattice(shape)
    U = random_gauge_field(group, lat, bk.rng(15))
    xp = bk.xp
    Ut = xp.roll(xp.roll(U, 1, axis=-lat.nd), -2, axis=-1)
    for f in (lambda V: plane_plaquettes(V, group, lat), lambda V: wilson_loops(V, group, lat, 2, 1),
              lambda V: average_polyakov_loop(V, group, lat), lambda V: energy_density_plaquette(V, group, lat)):
        assert_close(bk.to_numpy(f(Ut)), bk.to_numpy(f(U)), rtol=1e-7, atol=1e-12)


def test_plaquettes_group_valued_and_u1_lines(bk):
    lat = lk.Lattice((3, 4))
    G = lk.SU(2)
    U = random_gauge_field(G, lat, bk.rng(16))
    P = plaquettes(U, G, lat, 0, 1)
    assert_close(G.defect(P, nd=2), 0.0, rtol=0, atol=1e-12)  # the defect is a norm: max < 1e-12
    Pt = plaquettes(U, G, lat, 1, 0)  # P_{nu mu} = P_{mu nu}^dag up to conjugation: same Re tr
    assert_close(bk.to_numpy(G.re_trace(Pt, nd=2)), bk.to_numpy(G.re_trace(P, nd=2)), rtol=1e-7, atol=1e-12)
    U1f = lk.U1.random(bk.rng(17), (2,), lat.shape)
    L = bk.to_numpy(wilson_line(U1f, lk.U1, lat, 1, 3))
    u = bk.to_numpy(U1f)[1]
    assert_close(L, u + np.roll(u, -1, 1) + np.roll(u, -2, 1), rtol=1e-7, atol=1e-14)


def test_errors(bk):
    lat = lk.Lattice((4, 4))
    U = random_gauge_field(lk.SU(2), lat, bk.rng(0))
    with pytest.raises(lk.LatticeMismatchError, match="U has shape"):
        average_plaquette(U, lk.SU(3), lat)
    with pytest.raises(ValueError, match="nu"):
        wilson_loop(U, lk.SU(2), lat, 1, 1, mu=0, nu=2)
    with pytest.raises(ValueError, match="R"):
        wilson_loops(U, lk.SU(2), lat, 0, 1)
    with pytest.raises(ValueError, match="mu"):
        polyakov_loop(U, lk.SU(2), lat, mu=2)
    with pytest.raises(ValueError, match="different"):
        plaquettes(U, lk.SU(2), lat, 1, 1)
