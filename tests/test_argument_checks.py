"""API misuse of the public constructors is refused before any work, with an error naming the argument.

Each case here was accepted before (silently converted, or failing later with an operator error):
``beta="5.7"``, ``kappa=True``, ``antiperiodic="no"``, complex U(1) links, real "SU(3)" links,
``SU(3.0)``, ``Phi4Action.from_mass(lat, -4, 8)`` without saying which (m^2, lambda) normalisation.
(The Lattice cases are in tests/test_lattice.py.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import (
    HasenbuschAction,
    Phi4Action,
    PseudofermionAction,
    WilsonDirac,
    WilsonGaugeAction,
    kappa_from_mass,
    mass_from_kappa,
    phi4_action,
    phi4_force,
    wilson_gauge_action,
    wilson_gauge_force,
)
from latticekit.exact import phi4_action_m2, phi4_field_scale, phi4_m2_to_hopping
from latticekit.gauge import cold_gauge_field
from latticekit.testing import assert_close

LAT = lk.Lattice((4, 4))


# -- Wilson gauge action --------------------------------------------------------------------------
@pytest.mark.parametrize("beta", ["5.7", True, 2 + 1j, None, [5.7]])
def test_wilson_beta_must_be_a_real_number(beta):
    with pytest.raises(TypeError, match=r"^beta="):
        WilsonGaugeAction(lk.SU(3), LAT, beta)
    U = cold_gauge_field(lk.SU(3), LAT)
    with pytest.raises(TypeError, match=r"^beta="):
        wilson_gauge_action(U, beta, lk.SU(3), LAT)


def test_wilson_beta_non_finite_and_scalar_kinds():
    for beta in (math.inf, math.nan):
        with pytest.raises(ValueError, match="beta"):
            WilsonGaugeAction(lk.U1, LAT, beta)
    U = cold_gauge_field(lk.U1, LAT)
    for beta in (2, 2.0, np.float64(2.0), np.int64(2), np.asarray(2.0)):   # ints, NumPy scalars, 0-d arrays
        assert float(WilsonGaugeAction(lk.U1, LAT, beta)(U)) == -2.0 * LAT.volume


def test_wilson_links_of_the_wrong_dtype_are_refused(bk):
    """U(1) links are real angles, SU(N) links complex matrices: a complex U(1) field or a real SU(3)
    field has the right shape but is not a gauge field of that group."""
    th = lk.U1.random(bk.rng(0), (2,), LAT.shape)
    z = bk.xp.exp(1j * th) if bk.name != "array_api_strict" else bk.xp.exp(bk.xp.astype(th, bk.xp.complex128) * 1j)
    with pytest.raises(TypeError, match=r"U has dtype \S*complex128; U\(1\) elements are stored as real angles"):
        wilson_gauge_action(z, 1.0, lk.U1, LAT)
    with pytest.raises(TypeError, match=r"U has dtype \S*complex128"):
        WilsonGaugeAction(lk.U1, LAT, 1.0).force(z)
    U = lk.SU(3).random(bk.rng(1), (2, LAT.nd), LAT.shape)
    real = bk.xp.real(U)
    with pytest.raises(TypeError, match=r"U has dtype \S*float64; SU\(3\) elements are stored as complex"):
        wilson_gauge_force(real, 5.7, lk.SU(3), LAT)
    with pytest.raises(TypeError, match=r"U has dtype \S*float64"):
        WilsonGaugeAction(lk.SU(3), LAT, 5.7)(real)
    assert tuple(wilson_gauge_action(U, 5.7, lk.SU(3), LAT).shape) == (2,)   # the right dtype still works


# -- groups ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("N,exc", [(3.0, TypeError), ("3", TypeError), (True, TypeError), ([3], TypeError),
                                   (1, ValueError), (0, ValueError)])
def test_su_n_must_be_an_integer_at_least_2(N, exc):
    with pytest.raises(exc, match=r"^N="):
        lk.SU(N)


def test_su_accepts_numpy_integers_and_keeps_one_object_per_n():
    assert lk.SU(np.int64(3)) is lk.SU(3) and lk.SU(3).N == 3 and type(lk.SU(np.int64(2)).N) is int


def test_group_check_rejects_the_wrong_dtype():
    with pytest.raises(TypeError, match="U has dtype float64; SU.2. elements"):
        lk.SU(2).check(np.zeros((2, 2, 4)), nd=1)
    with pytest.raises(TypeError, match="U1.project gives the angles"):
        lk.U1.check(np.ones(4, dtype=complex), nd=1)


# -- phi^4 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,kw", [("kappa", {"kappa": "0.2"}), ("kappa", {"kappa": True}),
                                     ("lam", {"lam": "0.1"}), ("lam", {"lam": 0.1 + 0j})])
def test_phi4_couplings_must_be_real_numbers(name, kw):
    args = {"kappa": 0.2, "lam": 0.1, **kw}
    with pytest.raises(TypeError, match=f"^{name}="):
        Phi4Action(LAT, **args)
    phi = lk.backends.rng(0).normal(LAT.shape)
    with pytest.raises(TypeError, match=f"^{name}="):
        phi4_force(phi, LAT, args["kappa"], args["lam"])


def test_phi4_coupling_arrays_must_be_real_floating():
    phi = lk.backends.rng(0).normal(LAT.shape)
    ref = phi4_action(phi, LAT, 0.2, 0.1)
    assert_close(float(phi4_action(phi, LAT, np.asarray(0.2), 0.1)), float(ref), rtol=0, atol=1e-12)
    with pytest.raises(TypeError, match="kappa: expected a real number or a real floating array"):
        Phi4Action(LAT, np.asarray(0.2 + 0j), 0.1)
    with pytest.raises(TypeError, match="kappa: expected a real number or a real floating array"):
        Phi4Action(LAT, np.asarray(1), 0.1)


def test_from_mass_needs_the_normalisation():
    with pytest.raises(TypeError, match=r"normalization=None: required.*'half'.*'unit'"):
        Phi4Action.from_mass(LAT, -4.0, 8.0)
    with pytest.raises(TypeError, match="normalization='tutorial'"):
        Phi4Action.from_mass(LAT, -4.0, 8.0, normalization="tutorial")


@pytest.mark.parametrize("m2,lam_c", [(-4.0, 8.0), (0.5, 0.0), (-1.0, 0.3)])
def test_unit_normalisation_is_the_tutorial_action(bk, m2, lam_c):
    """``normalization="unit"``: the action of the tutorial code (arXiv:2101.08176), checked against the
    NumPy reference of latticekit.exact; its hopping equivalent and field scale are those of
    exact.phi4_m2_to_hopping(..., "unit"), so S_unit(sqrt(kappa) phi) = S_hop(phi)."""
    lat = lk.Lattice((4, 6))
    S = Phi4Action.from_mass(lat, m2, lam_c, normalization="unit")
    kappa, lam = phi4_m2_to_hopping(m2, lam_c, lat.nd, "unit")
    assert_close(S.kappa, kappa, rtol=0, atol=max(1e-13 * abs(kappa), 1e-12))
    assert_close(S.lam, lam, rtol=0, atol=max(1e-13 * abs(lam), 1e-300))
    assert_close(S.field_scale, phi4_field_scale(kappa, "unit"), rtol=0, atol=1e-12)
    phi = bk.rng(3).normal((3,) + lat.shape, std=1.3)
    got = bk.to_numpy(S(phi))
    assert_close(got, phi4_action_m2(bk.to_numpy(phi), m2, lam_c, nd=2, normalization="unit"), rtol=1e-12, atol=1e-12)
    H = S.hopping()
    assert_close(bk.to_numpy(S(S.field_scale * phi)), bk.to_numpy(H(phi)), rtol=1e-11, atol=1e-11)
    # force: dS_unit/dphi_u = (1/s) dS_hop/dphi_hop at phi_u = s phi_hop
    fa = bk.to_numpy(S.force(S.field_scale * phi)) * S.field_scale
    assert_close(fa, bk.to_numpy(H.force(phi)), rtol=1e-10, atol=1e-10)
    # the tutorial point differs from the "half" reading of the same numbers
    if (m2, lam_c) == (-4.0, 8.0):
        assert_close((S.kappa, S.lam), (0.25, 0.5), rtol=0, atol=1e-12)
        assert_close(Phi4Action.from_mass(lat, m2, lam_c, normalization="half").kappa, 0.125, rtol=0, atol=1e-12)


# -- Wilson-Dirac and the pseudofermion actions --------------------------------------------------------
def test_wilson_dirac_parameters_are_checked():
    U = cold_gauge_field(lk.U1, LAT)
    for kw, name in [({"kappa": "0.2"}, "kappa"), ({"kappa": True}, "kappa"), ({"m0": "0.1"}, "m0"),
                     ({"kappa": 0.2, "antiperiodic": "no"}, "antiperiodic"), ({"kappa": 0.2, "antiperiodic": 1},
                                                                              "antiperiodic")]:
        with pytest.raises(TypeError, match=f"^{name}="):
            WilsonDirac(U, lk.U1, LAT, **kw)
    with pytest.raises(TypeError, match="^m0="):
        kappa_from_mass("0.1", 2)
    with pytest.raises(TypeError, match="^kappa="):
        mass_from_kappa("0.25", 2)
    with pytest.raises(TypeError, match="^nd="):
        kappa_from_mass(0.1, 2.0)
    assert_close(WilsonDirac(U, lk.U1, LAT, m0=np.float64(0.5)).kappa, 0.2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("cls", [PseudofermionAction, HasenbuschAction])
def test_pseudofermion_actions_check_their_arguments_up_front(cls):
    with pytest.raises(TypeError, match="^lattice"):
        cls(lk.U1, (4, 4), kappa=0.2)
    with pytest.raises(TypeError, match="^group"):
        cls("U1", LAT, kappa=0.2)
    with pytest.raises(TypeError, match="^even_odd="):
        cls(lk.U1, LAT, kappa=0.2, even_odd="yes")
    with pytest.raises(TypeError, match="^maxiter="):
        cls(lk.U1, LAT, kappa=0.2, maxiter=2.5)
    with pytest.raises(ValueError, match="^tol="):
        cls(lk.U1, LAT, kappa=0.2, tol=0.0)
    with pytest.raises(ValueError, match="^kappa="):         # at construction, not at the first use
        cls(lk.U1, LAT, kappa=-0.1)
    with pytest.raises(TypeError, match="^antiperiodic="):
        cls(lk.U1, LAT, kappa=0.2, antiperiodic="no")


def test_pseudofermion_shift_must_be_a_real_number():
    with pytest.raises(TypeError, match="^mu="):
        PseudofermionAction(lk.U1, LAT, kappa=0.2, mu="0.1")
    with pytest.raises(TypeError, match="^mus="):
        HasenbuschAction(lk.U1, LAT, kappa=0.2, mus=["0.1"])


# -- observables and gauge fields (a probe of 2026-12-07 found each accepted) ---------------------------------------
def test_observables_refuse_a_field_of_the_wrong_dtype(bk) -> None:
    """Complex U(1) phases, real or integer "SU(2)" links have valid shapes; the observables gave a complex
    plaquette, |P| > 1 or 8.0 for them. Now the dtype is checked with the shape (gauge.check_gauge_field)."""
    from latticekit.gauge import gauge_transform
    from latticekit.observables import average_plaquette, polyakov_loop, topological_charge_u1_2d

    lat, xp = lk.Lattice((4, 4)), bk.xp
    th = lk.gauge.random_gauge_field(lk.U1, lat, bk.rng(0))
    z = xp.exp(1j * xp.astype(th, xp.complex128))
    for f in (lambda: average_plaquette(z, lk.U1, lat), lambda: polyakov_loop(z, lk.U1, lat),
              lambda: topological_charge_u1_2d(z, lat)):
        with pytest.raises(TypeError, match="U has dtype .*complex.*U1.project gives the angles"):
            f()
    U = lk.gauge.random_gauge_field(lk.SU(2), lat, bk.rng(1), (2,))
    with pytest.raises(TypeError, match="U has dtype .*float64; SU\\(2\\) elements are stored as complex"):
        average_plaquette(xp.real(U), lk.SU(2), lat)
    with pytest.raises(TypeError, match="U has dtype .*int64"):
        average_plaquette(xp.ones((2, 2, 2, 2, 4, 4), dtype=xp.int64), lk.SU(2), lat)
    Om = lk.SU(2).random(bk.rng(2), (2,), lat.shape)
    with pytest.raises(TypeError, match="Omega has dtype"):
        gauge_transform(U, xp.real(Om), lk.SU(2), lat)
    with pytest.raises(ValueError, match=r"Omega has batch shape \(3,\); expected one that broadcasts against"):
        gauge_transform(U, lk.SU(2).random(bk.rng(3), (3,), lat.shape), lk.SU(2), lat)


@pytest.mark.parametrize("batch_shape, err, match", [
    ((-1,), ValueError, "expected non-negative integer sizes"),
    (3, TypeError, "expected a tuple of sizes"),
])
def test_gauge_field_batch_shape_is_checked(batch_shape, err, match) -> None:
    for make in (lambda: lk.gauge.random_gauge_field(lk.SU(2), lk.Lattice((2, 2)), lk.backends.rng(0), batch_shape),
                 lambda: cold_gauge_field(lk.SU(2), lk.Lattice((2, 2)), batch_shape)):
        with pytest.raises(err, match=match):
            make()


def test_unknown_precision_is_refused_for_u1_too() -> None:
    # SU(N) refused precision="half"; U(1) returned float64
    with pytest.raises(ValueError, match="precision='half': expected 'double'/64 or 'single'/32"):
        lk.gauge.random_gauge_field(lk.U1, lk.Lattice((2, 2)), lk.backends.rng(0), precision="half")
    with pytest.raises(ValueError, match="precision='bogus'"):
        lk.U1.random_algebra(lk.backends.rng(0), (2,), precision="bogus")


def test_flow_smearing_and_loops_take_numpy_scalars_and_refuse_an_infinite_step() -> None:
    from latticekit.loops import Path
    from latticekit.observables import stout_smear, wilson_flow, wilson_flow_step, wilson_loop

    lat, G = lk.Lattice((4, 4)), lk.SU(2)
    U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0), (1,))
    with pytest.raises(ValueError, match="eps=inf: expected a finite positive step size"):
        wilson_flow(U, G, lat, 0.5, eps=math.inf)            # it made no step and returned U
    V, h = wilson_flow(U, G, lat, np.float32(0.1), eps=np.float32(0.05))
    assert_close(V, wilson_flow(U, G, lat, 0.1, eps=0.05)[0], rtol=0, atol=1e-6)
    assert_close(wilson_flow_step(U, G, lat, np.float32(0.25)), wilson_flow_step(U, G, lat, 0.25), rtol=0, atol=1e-7)
    assert_close(stout_smear(U, G, lat, np.float64(0.1), np.int64(2), directions=np.array([0, 1])),
                 stout_smear(U, G, lat, 0.1, 2), rtol=0, atol=0)
    assert_close(wilson_loop(U, G, lat, np.int64(2), np.int64(1), mu=np.int64(0), nu=np.int64(1)),
                 wilson_loop(U, G, lat, 2, 1), rtol=0, atol=0)
    assert Path([(np.int64(1), 1)]) == Path([(1, 1)])


def test_a_coupling_per_batch_element_in_the_force(bk) -> None:
    """The action took beta of shape (B,); the force failed with a broadcast error. Element b of the force is the
    force of configuration b at beta[b]; a beta of another shape is refused."""
    lat, G = lk.Lattice((4, 4)), lk.SU(2)
    U = lk.gauge.random_gauge_field(G, lat, bk.rng(4), (2,))
    beta = bk.asarray([1.0, 2.5])
    F = bk.to_numpy(wilson_gauge_force(U, beta, G, lat))
    for b, bb in enumerate((1.0, 2.5)):
        assert_close(F[b], bk.to_numpy(wilson_gauge_force(U[b:b + 1, ...], bb, G, lat))[0], rtol=1e-14, atol=1e-14)
    with pytest.raises(ValueError, match=r"beta has shape \(3,\); expected a number or one coupling per batch"):
        wilson_gauge_force(U, bk.asarray([1.0, 2.0, 3.0]), G, lat)


def test_half_precision_fields_are_refused():
    """float16/bfloat16 fields gave float16 actions and plaquettes (S = -29696 against -29740 on 128^2) where the
    Wilson-Dirac operator refused them; the physics is float32 or float64 (DESIGN.md), so all refuse them."""
    from latticekit.actions import WilsonGaugeAction
    from latticekit.actions.phi4 import phi4_action, phi4_force
    from latticekit.gauge import random_gauge_field
    from latticekit.observables import average_plaquette

    lat = lk.Lattice((4, 4))
    U = random_gauge_field(lk.U1, lat, lk.backends.rng(0))
    halves = [U.astype(np.float16)]
    try:
        import torch

        halves += [torch.as_tensor(U).to(t) for t in (torch.float16, torch.bfloat16)]
    except ImportError:
        pass
    for V in halves:
        with pytest.raises(TypeError, match="half precisions are not supported"):
            WilsonGaugeAction(lk.U1, lat, 2.0).action(V)
        with pytest.raises(TypeError, match="half precisions are not supported"):
            average_plaquette(V, lk.U1, lat)
        with pytest.raises(TypeError, match="expected a float32 or float64 field"):
            phi4_action(V[0], lat, 0.1, 0.1)
        with pytest.raises(TypeError, match="expected a float32 or float64 field"):
            phi4_force(V[0], lat, 0.1, 0.1)
    Z = lk.SU(2).random(lk.backends.rng(1), (2,), lat.shape).astype(np.complex64)
    assert WilsonGaugeAction(lk.SU(2), lat, 2.0).action(Z).dtype == np.float32       # single precision stays allowed
