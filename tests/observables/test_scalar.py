"""Scalar observables: FFT two-point functions against shift sums, susceptibilities, correlation length."""

from __future__ import annotations

import math

import numpy as np
import pytest

import latticekit as lk
from latticekit.observables import (
    abs_magnetization,
    connected_two_point,
    correlation_length_second_moment,
    magnetization,
    susceptibility,
    two_point,
    two_point_momentum,
    zero_momentum_correlator,
)
from latticekit.testing import assert_close

SHAPES = [(6,), (4, 6), (3, 4, 5)]


def _direct_two_point(phi, shape):
    """O(V^2) reference: G(x) = (1/V) sum_y phi(y) phi(y + x) by explicit shifts."""
    nd = len(shape)
    G = np.zeros(phi.shape)
    V = int(np.prod(shape))
    for x in np.ndindex(*shape):
        sh = phi
        for mu, s in enumerate(x):
            sh = np.roll(sh, -s, axis=phi.ndim - nd + mu)
        G[(...,) + x] = (phi * sh).reshape(phi.shape[: phi.ndim - nd] + (-1,)).sum(-1) / V
    return G


@pytest.mark.parametrize("shape", SHAPES)
def test_two_point_fft_equals_shift_sum(bk, shape):
    lat = lk.Lattice(shape)
    phi = bk.rng(0).normal((2,) + shape)
    G = bk.to_numpy(two_point(phi, lat))
    ref = _direct_two_point(bk.to_numpy(phi), shape)
    assert_close(G, ref, rtol=1e-7, atol=1e-12)
    # momentum space: G~(p) = sum_x G(x) e^{-ipx}, G~(0) = V M^2
    Gp = bk.to_numpy(two_point_momentum(phi, lat))
    axes = tuple(range(-lat.nd, 0))
    assert_close(Gp, np.real(np.fft.fftn(ref, axes=axes)), rtol=1e-7, atol=1e-10)
    M = bk.to_numpy(magnetization(phi, lat))
    assert_close(Gp[(...,) + (0,) * lat.nd], lat.volume * M ** 2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("shape", SHAPES)
def test_zero_momentum_correlator(bk, shape):
    lat = lk.Lattice(shape)
    phi = bk.rng(1).normal((3,) + shape)
    ref = _direct_two_point(bk.to_numpy(phi), shape)
    for mu in range(lat.nd):
        C = bk.to_numpy(zero_momentum_correlator(phi, lat, mu=mu))
        assert C.shape == (3, shape[mu])
        other = tuple(1 + d for d in range(lat.nd) if d != mu)
        assert_close(C, ref.sum(axis=other) if other else ref, rtol=1e-7, atol=1e-12)


def test_magnetization_and_susceptibility(bk):
    lat = lk.Lattice((4, 4))
    base = np.array([0.5, -1.0, 2.0, -0.25])
    phi_np = base[:, None, None] * np.ones((4, 4, 4)) + np.random.default_rng(0).normal(size=(4, 4, 4)) * 0.1
    phi = bk.asarray(phi_np)
    M = phi_np.mean(axis=(1, 2))
    assert_close(bk.to_numpy(magnetization(phi, lat)), M, rtol=1e-13, atol=0)
    assert_close(bk.to_numpy(abs_magnetization(phi, lat)), np.abs(M), rtol=1e-13, atol=0)
    V = 16
    assert_close(float(susceptibility(phi, lat, "full")), V * np.mean(M ** 2), rtol=1e-12, atol=0)
    assert_close(float(susceptibility(phi, lat)), V * np.var(M), rtol=1e-12, atol=0)
    assert_close(float(susceptibility(phi, lat, "abs")), V * (np.mean(M ** 2) - np.mean(np.abs(M)) ** 2),
                 rtol=1e-12, atol=0)
    # sum_x of the connected two-point function is the connected susceptibility
    Gc = bk.to_numpy(connected_two_point(phi, lat))
    assert_close(Gc.sum(), V * np.var(M), rtol=1e-12, atol=0)
    # batched ensembles: (n, B, *L) -> (B,)
    phi2 = bk.asarray(np.stack([phi_np, 2 * phi_np], axis=1))
    chi = bk.to_numpy(susceptibility(phi2, lat))
    assert_close(chi, [V * np.var(M), 4 * V * np.var(M)], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="kind"):
        susceptibility(phi, lat, "bogus")
    with pytest.raises(ValueError, match="ensemble"):
        susceptibility(phi[0, ...], lat)


@pytest.mark.parametrize("shape,m2", [((12, 12), 0.09), ((10, 6, 6), 0.5), ((16,), 0.2)])
def test_second_moment_correlation_length_of_free_propagator(bk, shape, m2):
    from latticekit.exact import free_scalar_propagator

    lat = lk.Lattice(shape)
    G = free_scalar_propagator(shape, m2=m2, backend=bk.name, device=bk.device)
    # exactly 1/m for the free field, in every direction
    for mu in range(lat.nd):
        assert_close(float(correlation_length_second_moment(G, lat, mu=mu)), 1 / math.sqrt(m2), rtol=1e-10, atol=0)
    if len(set(shape)) == 1:
        assert_close(float(correlation_length_second_moment(G, lat)), 1 / math.sqrt(m2), rtol=1e-10, atol=0)
    else:
        with pytest.raises(ValueError, match="pass mu"):
            correlation_length_second_moment(G, lat)


def test_translation_and_reflection_invariance(bk):
    lat = lk.Lattice((5, 4))
    phi = bk.rng(3).normal((2, 5, 4))
    G = bk.to_numpy(two_point(phi, lat))
    Gs = bk.to_numpy(two_point(bk.xp.roll(phi, 2, axis=-2), lat))
    assert_close(Gs, G, rtol=1e-7, atol=1e-12)
    # G(x) = G(-x)
    assert_close(np.roll(np.flip(G, axis=(-2, -1)), 1, axis=(-2, -1)), G, rtol=1e-7, atol=1e-12)


def test_errors(bk):
    lat = lk.Lattice((4, 4))
    with pytest.raises(lk.LatticeMismatchError, match="phi has shape"):
        two_point(bk.rng(0).normal((4, 5)), lat)
    with pytest.raises(TypeError, match="dtype"):
        magnetization(bk.rng(0).complex_normal((4, 4)), lat)
    with pytest.raises(ValueError, match="mu"):
        zero_momentum_correlator(bk.rng(0).normal((4, 4)), lat, mu=2)
