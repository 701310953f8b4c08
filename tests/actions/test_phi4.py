"""phi^4: action against an explicit formula, forces (finite differences, autograd), (m^2, lambda) conversion."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import latticekit as lk
from latticekit.actions import (
    Phi4Action,
    hopping_from_mass,
    mass_from_hopping,
    phi4_action,
    phi4_action_mass,
    phi4_force,
    phi4_force_mass,
)
from latticekit.lattice import LatticeMismatchError
from latticekit.testing import assert_close

SHAPES = [(5, 4), (3, 4, 5)]


def _ref_hop(phi, kappa, lam, nd):
    """Explicit loop-free but independent numpy formula (np.roll on the raw axes)."""
    s = (1 - 2 * lam) * phi ** 2 + lam * phi ** 4
    for mu in range(nd):
        s = s - 2 * kappa * phi * np.roll(phi, -1, axis=phi.ndim - nd + mu)
    return s.reshape(s.shape[: s.ndim - nd] + (-1,)).sum(-1)


@pytest.mark.parametrize("shape", SHAPES)
def test_action_matches_formula(bk, shape):
    lat = lk.Lattice(shape)
    phi = bk.rng(0).normal((3,) + shape)
    S = bk.to_numpy(phi4_action(phi, lat, 0.21, 0.7))
    assert_close(S, _ref_hop(bk.to_numpy(phi), 0.21, 0.7, lat.nd), rtol=1e-13, atol=0)
    # the (m^2, lambda) form equals its gradient form sum [1/2 (d phi)^2 + m^2/2 phi^2 + lam phi^4]
    p = bk.to_numpy(phi)
    grad = sum(0.5 * (np.roll(p, -1, axis=p.ndim - lat.nd + mu) - p) ** 2 for mu in range(lat.nd))
    dens = grad + 0.5 * (-1.3) * p ** 2 + 0.4 * p ** 4
    ref = dens.reshape(3, -1).sum(-1)
    assert_close(bk.to_numpy(phi4_action_mass(phi, lat, -1.3, 0.4)), ref, rtol=1e-12, atol=0)


# Central differences with step eps: truncation ~ eps^2 |S^(3)| and round-off ~ finfo.eps |S| / eps ~ 1e-8 in
# double precision. The step and tolerance are those of the field's dtype (float64 on every backend).
FD_EPS_AND_TOL = {"float64": (1e-6, 1e-6)}


@pytest.mark.parametrize("shape", SHAPES)
def test_forces_match_finite_differences(bk, shape):
    lat = lk.Lattice(shape)
    phi = bk.rng(1).normal(shape)
    F = bk.to_numpy(phi4_force(phi, lat, 0.18, 1.1))
    Fm = bk.to_numpy(phi4_force_mass(phi, lat, -2.0, 0.6))
    eps, tol = FD_EPS_AND_TOL[F.dtype.name]
    gen = np.random.default_rng(0)

    def diff(action, dp, *couplings):
        return float(bk.to_numpy(action(phi + dp, lat, *couplings) - action(phi - dp, lat, *couplings))) / (2 * eps)

    for _ in range(6):
        x = tuple(int(gen.integers(L)) for L in shape)
        dp = np.zeros(shape)
        dp[x] = eps
        dp = bk.asarray(dp)
        fd = diff(phi4_action, dp, 0.18, 1.1)
        assert_close(F[x], fd, rtol=0, atol=tol * max(1, abs(fd)), msg=f"hopping form at {x}")
        fd = diff(phi4_action_mass, dp, -2.0, 0.6)
        assert_close(Fm[x], fd, rtol=0, atol=tol * max(1, abs(fd)), msg=f"mass form at {x}")


@pytest.mark.parametrize("shape", SHAPES)
def test_forces_match_torch_autograd(torch_backends, shape):
    lat = lk.Lattice(shape)
    for tb in torch_backends:
        phi = tb.rng(2).normal((2,) + shape).requires_grad_(True)
        phi4_action(phi, lat, 0.3, 0.05).sum().backward()
        assert_close(phi.grad, phi4_force(phi.detach(), lat, 0.3, 0.05), rtol=0, atol=1e-12, msg=str(tb))
        phi.grad = None
        act = Phi4Action.from_mass(lat, m2=-4.0, lam_cont=8.0, normalization="half")
        act(phi).sum().backward()
        assert_close(phi.grad, act.force(phi.detach()), rtol=0, atol=1e-11, msg=str(tb))


@settings(max_examples=15, deadline=None)
@given(m2=st.floats(-6.0, 3.0), lam_c=st.one_of(st.just(0.0), st.floats(1e-6, 20.0)), nd=st.integers(1, 4))
def test_mass_hopping_conversion_round_trip(m2, lam_c, nd):
    # lambda in (0, 1e-6) with m^2 < -2 Nd sends kappa ~ |c|/(8 lambda) towards overflow; that edge has its own test
    if lam_c == 0.0 and 2 * nd + m2 <= 0:
        with pytest.raises(ValueError, match="m2"):
            hopping_from_mass(m2, lam_c, nd)
        return
    kappa, lam = hopping_from_mass(m2, lam_c, nd)
    assert kappa > 0
    # the defining equations (tolerance max(rel * max(|a|, |b|), abs), as math.isclose)
    a, b = kappa * (2 * nd + m2), 1 - 2 * lam
    assert_close(a, b, rtol=0, atol=max(1e-10 * max(abs(a), abs(b)), 1e-12))
    a, b = lam, 4 * kappa ** 2 * lam_c
    assert_close(a, b, rtol=0, atol=max(1e-12 * max(abs(a), abs(b)), 1e-15))
    m2b, lcb = mass_from_hopping(kappa, lam, nd)
    assert_close(m2b, m2, rtol=0, atol=1e-9 * max(abs(m2b), abs(m2), 1.0))
    assert_close(lcb, lam_c, rtol=0, atol=1e-9 * max(abs(lcb), abs(lam_c), 1.0))


def test_mass_hopping_conversion_refuses_overflow():
    # m^2 < -2 Nd with a denormal lambda: kappa would overflow; a clear error instead of inf
    with pytest.raises(ValueError, match="kappa"):
        hopping_from_mass(-3.0, 2.2e-311, 1)
    # small but normal lambda: the cancellation-free root stays accurate
    kappa, lam = hopping_from_mass(-3.0, 1e-9, 1)
    a, b = kappa * (2 - 3.0), 1 - 2 * lam
    assert_close(a, b, rtol=0, atol=1e-9 * max(abs(a), abs(b)))  # math.isclose(a, b, rel_tol=1e-9)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("m2,lam_c", [(-4.0, 8.0), (0.5, 0.0), (-1.0, 0.3), (2.0, 5.0)])
def test_mass_form_equals_hopping_form_after_rescaling(bk, shape, m2, lam_c):
    lat = lk.Lattice(shape)
    phi = bk.rng(3).normal((4,) + shape, std=1.5)
    S = Phi4Action.from_mass(lat, m2, lam_c, normalization="half")
    H = S.hopping()
    assert S.form == "mass" and H.form == "hopping"
    a, b = S.field_scale, math.sqrt(2 * H.kappa)
    assert_close(a, b, rtol=0, atol=1e-9 * max(abs(a), abs(b)))  # math.isclose(a, b): rel_tol 1e-9
    a = bk.to_numpy(S(S.field_scale * phi))
    b = bk.to_numpy(H(phi))
    assert_close(a, b, rtol=1e-11, atol=1e-11)
    assert_close(bk.to_numpy(phi4_action_mass(S.field_scale * phi, lat, m2, lam_c)), b, rtol=1e-11, atol=1e-11)
    # forces: dS_mass/dphi_c = (1/s) dS_hop/dphi_hop
    fa = bk.to_numpy(S.force(S.field_scale * phi)) * S.field_scale
    assert_close(fa, bk.to_numpy(H.force(phi)), rtol=1e-10, atol=1e-10)


def test_conversion_agrees_with_exact_module():
    from latticekit.exact import phi4_conventions as conv

    for m2, lc, nd in [(-4.0, 8.0, 2), (0.3, 1.0, 3), (1.0, 0.0, 4)]:
        assert_close(hopping_from_mass(m2, lc, nd), conv.phi4_m2_to_hopping(m2, lc, nd, "half"), rtol=1e-7, atol=0)


def test_free_field_values(bk):
    lat = lk.Lattice((4, 4))
    ones = bk.asarray(np.ones((4, 4)))
    # constant field 1: V [(1 - 2 lam) + lam - 2 kappa Nd]
    assert_close(float(phi4_action(ones, lat, 0.1, 0.5)), 16 * (0.0 + 0.5 - 0.4), rtol=1e-7, atol=0)
    assert_close(float(phi4_action_mass(ones, lat, 1.0, 0.5)), 16 * (0.5 + 0.5), rtol=1e-7, atol=0)


def test_errors(bk):
    lat = lk.Lattice((4, 4))
    phi = bk.rng(0).normal((4, 5))
    with pytest.raises(LatticeMismatchError, match="phi has shape"):
        phi4_action(phi, lat, 0.1, 0.1)
    with pytest.raises(TypeError, match="phi has dtype"):
        phi4_action(bk.rng(0).complex_normal((4, 4)), lat, 0.1, 0.1)
    with pytest.raises(ValueError, match="kappa"):
        phi4_force(bk.rng(0).normal((4, 4)), lat, math.nan, 0.1)
    with pytest.raises(ValueError, match="lam_cont"):
        Phi4Action.from_mass(lat, 1.0, -1.0, normalization="half")
    with pytest.raises(ValueError, match="kappa"):
        mass_from_hopping(0.0, 0.1, 2)
    with pytest.raises(TypeError, match="lattice"):
        Phi4Action((4, 4), 0.1, 0.1)
    # an array coupling must broadcast against the field (a per-chain (B,) array failed with a bare numpy error)
    phis = bk.rng(0).normal((3, 4, 4))
    for f in (phi4_action, phi4_force):
        with pytest.raises(ValueError, match=r"^kappa has shape \(3,\); an array coupling must broadcast against the "
                                             r"field \(3, 4, 4\) \(one per chain: shape \(3, 1, 1\)\)"):
            f(phis, lat, bk.asarray(np.array([0.1, 0.2, 0.3])), 0.1)
    per_chain = bk.asarray(np.array([0.1, 0.2, 0.3]).reshape(3, 1, 1))
    S = bk.to_numpy(phi4_action(phis, lat, per_chain, 0.1))
    assert_close(S[1], float(bk.to_numpy(phi4_action(phis[1, ...], lat, 0.2, 0.1))), rtol=1e-13, atol=0)


def test_phi4_action_object_is_differentiable_in_its_couplings() -> None:
    # the coupling tensors are kept (not cast to float), so d<S>/d kappa flows through Phi4Action:
    # dS/dkappa = -2 sum_x sum_mu phi_x phi_{x+mu}
    torch = pytest.importorskip("torch", reason="autograd through the couplings needs torch")
    import latticekit as lk
    from latticekit.actions import Phi4Action

    lat = lk.Lattice((4, 4))
    phi = torch.randn(4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kappa = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    S = Phi4Action(lat, kappa, 0.5).action(phi)
    (g,) = torch.autograd.grad(S, kappa)
    expected = -2.0 * sum((phi * torch.roll(phi, -1, dims=d)).sum() for d in (0, 1))
    assert_close(g, expected, rtol=1e-5, atol=1e-8)


def test_theory_couplings_and_arguments_are_checked_alike(bk) -> None:
    """User probe: Phi4Action and mass_from_hopping accepted lam < 0 (refused by hopping_from_mass and
    latticekit.exact), Phi4Action a free field (lam = 0) with kappa > 1/(2 Nd) (its action is unbounded below:
    -8, -800, -80000 on c * ones); the lam = 0 conversion's message said the free action needs m^2 > -2 Nd;
    nd=True was read as 1 and a NumPy integer refused; a list as field and a coupling of another array library
    failed inside the arithmetic. The functions still evaluate the polynomial at any finite couplings (learned
    couplings pass through such values)."""
    from latticekit.actions import hopping_from_mass, mass_from_hopping
    from latticekit.backends import BackendError

    lat = lk.Lattice((4, 4))
    with pytest.raises(ValueError, match=r"^lam=-1.0: expected lambda >= 0"):
        Phi4Action(lat, 0.2, -1.0)
    with pytest.raises(ValueError, match=r"^lam=-1.0: expected lambda >= 0"):
        mass_from_hopping(0.2, -1.0, 2)
    with pytest.raises(ValueError, match=r"^kappa=0.3: with lam = 0 \(the free field\) kappa must be below 1/\(2 Nd\)"):
        Phi4Action(lat, 0.3, 0.0)
    with pytest.raises(ValueError, match=r"^m2=-1.0: with lam_cont = 0 \(the free field\) m\^2 must be > 0"):
        Phi4Action.from_mass(lat, -1.0, 0.0, normalization="half")
    Phi4Action(lat, 0.3, 0.1)                            # the broken phase: bounded by the quartic term
    with pytest.raises(ValueError, match=r"^m2=-5.0: with lambda = 0 the hopping parameter kappa = 1/\(2 Nd \+ m\^2\) "
                                         r"needs m\^2 > -2 Nd = -4 \(and the free theory m\^2 > 0\)"):
        hopping_from_mass(-5.0, 0.0, 2)
    assert hopping_from_mass(0.5, 0.1, nd=np.int64(2)) == hopping_from_mass(0.5, 0.1, nd=2)
    with pytest.raises(TypeError, match=r"^nd=True"):
        hopping_from_mass(0.5, 0.1, nd=True)
    with pytest.raises(TypeError, match=r"^nd=True"):
        mass_from_hopping(0.2, 0.1, nd=True)
    phi = bk.asarray(np.ones((2, 4, 4)))
    assert_close(bk.to_numpy(phi4_action(phi, lat, 0.5, 0.0)), np.full(2, 16.0 * (1 - 2 * 0.5 * 2)), rtol=1e-14,
                 atol=0)                             # evaluated at unbounded couplings: -16 per configuration
    with pytest.raises(TypeError, match=r"^phi is a list; expected an array"):
        phi4_action([[0.0] * 4] * 4, lat, 0.2, 0.5)
    other = "numpy" if bk.name != "numpy" else "array_api_strict"
    kappa = lk.backends.namespace(other).asarray(0.2, dtype=lk.backends.namespace(other).float64)
    for f in (phi4_action, phi4_force):
        with pytest.raises(BackendError, match="different or unsupported array libraries"):
            f(phi, lat, kappa, 0.5)


def test_scalar_observable_and_exact_argument_checks() -> None:
    """correlation_length_second_moment with a tuple as lattice raised an AttributeError and a complex G gave
    nan+0j; the exact free-field functions converted a string coupling with float() (user probe)."""
    from latticekit.exact import free_scalar_susceptibility
    from latticekit.observables import correlation_length_second_moment

    with pytest.raises(TypeError, match=r"^lattice=\(4,\): expected a latticekit.Lattice"):
        correlation_length_second_moment(np.ones(4), (4,))
    with pytest.raises(TypeError, match=r"^G has dtype complex128; expected a real floating field"):
        correlation_length_second_moment(np.ones((4, 4)) + 0j, lk.Lattice((4, 4)))
    for kw in (dict(kappa="0.2"), dict(m2="0.5", normalization="half")):
        with pytest.raises(TypeError, match=r"must be a real number, got '0\.[25]'"):
            free_scalar_susceptibility((4, 4), **kw)
