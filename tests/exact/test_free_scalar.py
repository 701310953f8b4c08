"""Tests of the free-scalar exact results and of the phi^4 parameter conversions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latticekit.exact import (
    free_scalar_log_z,
    free_scalar_momentum_propagator,
    free_scalar_pole_mass,
    free_scalar_propagator,
    free_scalar_second_moment_correlation_length,
    free_scalar_susceptibility,
    free_scalar_timeslice_correlator,
    phi4_action_hopping,
    phi4_action_m2,
    phi4_field_scale,
    phi4_hopping_to_m2,
    phi4_m2_to_hopping,
)
from latticekit.testing import assert_close

SHAPES = [(4, 4), (3, 4, 2), (2, 3), (5,), (1, 4)]


def _hessian(action, shape):
    """Dense M with S = 1/2 phi^T M phi, from the action itself (exact for a quadratic action)."""
    V = int(np.prod(shape))
    eye = np.eye(V).reshape((V, *shape))
    s1 = action(eye)  # S(e_i) = M_ii / 2
    pairs = (eye[:, None] + eye[None, :]).reshape((V * V, *shape))
    s2 = action(pairs).reshape(V, V)  # S(e_i + e_j) = (M_ii + M_jj)/2 + M_ij
    return s2 - s1[:, None] - s1[None, :]  # also right on the diagonal: S(2 e_i) = 2 M_ii


@pytest.mark.parametrize("shape", SHAPES)
def test_propagator_against_dense_inverse_hopping(shape):
    kappa = 0.9 / (2 * len(shape) + 0.5)
    M = _hessian(lambda p: phi4_action_hopping(p, kappa, 0.0, nd=len(shape)), shape)
    Minv = np.linalg.inv(M)
    G = free_scalar_propagator(shape, kappa=kappa, backend="numpy")
    assert_close(G.ravel(), Minv[0], rtol=1e-12, atol=1e-13)
    # translation invariance: <phi_y phi_{y+x}> = G(x) for a random y
    y = tuple(s - 1 for s in shape)
    yi = np.ravel_multi_index(y, shape)
    shifted = np.roll(G, shift=y, axis=tuple(range(len(shape))))
    assert_close(shifted.ravel(), Minv[yi], rtol=1e-12, atol=1e-13)
    sign, logdet = np.linalg.slogdet(M)
    V = M.shape[0]
    assert sign > 0
    assert_close(free_scalar_log_z(shape, kappa=kappa), 0.5 * V * math.log(2 * math.pi) - 0.5 * logdet,
                 rtol=1e-12, atol=0)
    assert_close(free_scalar_susceptibility(shape, kappa=kappa), Minv[0].sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("normalization", ["half", "unit"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 2, 2)])
def test_propagator_against_dense_inverse_m2(shape, normalization):
    m2 = 0.37
    M = _hessian(lambda p: phi4_action_m2(p, m2, 0.0, nd=len(shape), normalization=normalization), shape)
    Minv = np.linalg.inv(M)
    G = free_scalar_propagator(shape, m2=m2, normalization=normalization, backend="numpy")
    assert_close(G.ravel(), Minv[0], rtol=1e-12, atol=1e-13)
    logdet = np.linalg.slogdet(M)[1]
    ref = 0.5 * M.shape[0] * math.log(2 * math.pi) - 0.5 * logdet
    assert_close(free_scalar_log_z(shape, m2=m2, normalization=normalization), ref, rtol=1e-12, atol=0)


def test_momentum_propagator_and_fft_convention():
    shape, m2 = (6, 4), 0.2
    G = free_scalar_propagator(shape, m2=m2, backend="numpy")
    Gt = free_scalar_momentum_propagator(shape, m2=m2, backend="numpy")
    assert_close(np.fft.fftn(G).real, Gt, rtol=1e-12, atol=0)
    p = 2 * np.pi / 6
    assert_close(Gt[1, 0], 1 / (4 * math.sin(p / 2) ** 2 + m2), rtol=1e-6, atol=0)


@pytest.mark.parametrize("L0", [8, 9, 16])
def test_timeslice_correlator_closed_form(L0):
    shape, m2 = (L0, 3, 5), 0.45
    C = free_scalar_timeslice_correlator(shape, m2=m2, backend="numpy")
    mp = free_scalar_pole_mass(m2=m2)
    t = np.arange(L0)
    ref = np.cosh(mp * (L0 / 2 - t)) / (2 * math.sinh(mp) * math.sinh(mp * L0 / 2))
    assert_close(C, ref, rtol=1e-12, atol=0)
    assert_close(C.sum(), free_scalar_susceptibility(shape, m2=m2), rtol=1e-12, atol=0)


def test_second_moment_xi_and_pole_mass():
    for shape in [(8, 8), (5, 12), (6, 4, 4)]:
        for m2 in (0.01, 0.3, 2.0):
            for mu in range(len(shape)):
                xi = free_scalar_second_moment_correlation_length(shape, m2=m2, mu=mu)
                want = 1 / math.sqrt(m2)
                assert_close(xi, want, rtol=0, atol=max(1e-12 * want, 1e-12))
    kappa, nd = 0.2, 2
    assert_close(free_scalar_pole_mass(kappa=kappa, nd=nd), 2 * math.asinh(0.5 * math.sqrt(1 / kappa - 4)),
                 rtol=1e-6, atol=0)
    # hopping and m2 forms: same correlation length, propagators differ by the field rescaling 2 kappa
    m2 = 1 / kappa - 2 * nd
    Gh = free_scalar_propagator((6, 6), kappa=kappa, backend="numpy")
    Gm = free_scalar_propagator((6, 6), m2=m2, backend="numpy")
    assert_close(2 * kappa * Gh, Gm, rtol=1e-12, atol=0)
    V = 36
    assert_close(free_scalar_log_z((6, 6), kappa=kappa),
                 free_scalar_log_z((6, 6), m2=m2) - V * math.log(phi4_field_scale(kappa)), rtol=1e-12, atol=0)


def test_bad_parameters():
    with pytest.raises(ValueError, match="m\\^2 > 0"):
        free_scalar_propagator((4, 4), kappa=0.25)
    with pytest.raises(ValueError, match="exactly one"):
        free_scalar_propagator((4, 4), kappa=0.1, m2=0.1)
    with pytest.raises(ValueError, match="exactly one"):
        free_scalar_susceptibility((4, 4))
    with pytest.raises(ValueError, match="normalization"):
        free_scalar_log_z((4,), m2=1.0, normalization="third")
    with pytest.raises(ValueError, match="mu"):
        free_scalar_second_moment_correlation_length((4, 1), m2=1.0, mu=1)


# --------------------------------------------------------------------------- phi^4 conventions
@pytest.mark.parametrize("normalization", ["half", "unit"])
@pytest.mark.parametrize("shape", [(4, 4), (3, 2, 5), (6,)])
def test_actions_equal_after_rescaling(shape, normalization):
    rng = np.random.default_rng(3)
    nd = len(shape)
    for kappa, lam in [(0.12, 0.0), (0.3, 0.02), (0.18, 1.3)]:
        phi = rng.normal(size=(3, *shape))  # batch of 3
        m2, lam_c = phi4_hopping_to_m2(kappa, lam, nd, normalization=normalization)
        s = phi4_field_scale(kappa, normalization)
        s_hop = phi4_action_hopping(phi, kappa, lam, nd=nd)
        s_m2 = phi4_action_m2(s * phi, m2, lam_c, nd=nd, normalization=normalization)
        assert s_hop.shape == (3,)
        assert_close(s_m2, s_hop, rtol=1e-12, atol=1e-12)
        # and a wrong scale really breaks the equality
        with pytest.raises(AssertionError, match="elements differ"):
            assert_close(phi4_action_m2(1.01 * s * phi, m2, lam_c, nd=nd, normalization=normalization), s_hop,
                         rtol=1e-5, atol=1e-8)


def test_brief_formulas_explicitly():
    # (2 Nd + m^2)/2 phi^2 - sum_mu phi phi_{x+mu} + lambda phi^4 is the "half" form
    rng = np.random.default_rng(5)
    phi = rng.normal(size=(5, 6))
    m2, lam = -1.3, 0.7
    nn = phi * np.roll(phi, -1, 0) + phi * np.roll(phi, -1, 1)
    explicit = np.sum(-nn + (2 * 2 + m2) / 2 * phi**2 + lam * phi**4)
    assert_close(phi4_action_m2(phi, m2, lam), explicit, rtol=1e-13, atol=0)
    # Albergo et al. tutorial point (M2 = -4, lam = 8, "unit") is kappa = 1/4, lam_hop = 1/2
    assert_close(phi4_m2_to_hopping(-4.0, 8.0, 2, normalization="unit"), (0.25, 0.5), rtol=1e-6, atol=0)
    # in the "half" normalisation lambda = lam / (4 kappa^2) (not lam / kappa^2)
    assert_close(phi4_hopping_to_m2(0.25, 0.5, 2, "half"), (-4.0, 2.0), rtol=1e-6, atol=0)


@settings(max_examples=60, deadline=None)
@given(
    kappa=st.floats(0.01, 2.0),
    lam=st.floats(0.0, 5.0),
    nd=st.integers(1, 4),
    normalization=st.sampled_from(["half", "unit"]),
)
def test_conversion_round_trip(kappa, lam, nd, normalization):
    m2, lam_c = phi4_hopping_to_m2(kappa, lam, nd, normalization)
    k2, l2 = phi4_m2_to_hopping(m2, lam_c, nd, normalization)
    assert_close(k2, kappa, rtol=1e-9, atol=0)
    assert_close(l2, lam, rtol=0, atol=max(1e-9 * lam, 1e-12))


def test_conversion_errors():
    with pytest.raises(ValueError, match="kappa"):
        phi4_hopping_to_m2(0.0, 0.1, 2)
    with pytest.raises(ValueError, match="positive kappa"):
        phi4_m2_to_hopping(-5.0, 0.0, 2)
    with pytest.raises(ValueError, match="normalization"):
        phi4_field_scale(0.1, "bogus")
    # non-finite or negative couplings are named (NaN gave (nan, nan), inf (0, 0); a negative lam was accepted one way)
    with pytest.raises(ValueError, match=r"^m2 must be finite, got nan"):
        phi4_m2_to_hopping(float("nan"), 0.1, 2)
    with pytest.raises(ValueError, match=r"^lam must be finite and >= 0, got -0.1"):
        phi4_hopping_to_m2(0.2, -0.1, 2)
    with pytest.raises(ValueError, match=r"^nd=5: phi has only 2 axes"):
        phi4_action_hopping(np.ones((4, 4)), 0.1, 0.0, nd=5)
