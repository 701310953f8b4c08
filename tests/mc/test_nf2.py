"""Nf = 2 HMC: reversibility, dH ~ eps^2, <exp(-dH)> = 1, and the Schwinger-model validation against
reweighting a quenched ensemble by the exact determinant det(D D^dag)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import HasenbuschAction, PseudofermionAction, WilsonDirac, WilsonGaugeAction
from latticekit.analysis import gamma_method, reweight
from latticekit.exact import u1_2d_plaquette
from latticekit.gauge import random_gauge_field
from latticekit.linalg import logdet_normal
from latticekit.mc import Heatbath, Nf2HMC, Nf2Target
from latticekit.observables import average_plaquette
from latticekit.testing import assert_close

# (even_odd, Hasenbusch shifts or None, n_inner or None)
VARIANTS = {
    "plain": (False, None, None),
    "even_odd": (True, None, None),
    "hasenbusch": (False, [0.1, 0.5], None),
    "eo_hasenbusch_multiscale": (True, [0.3], 2),
}


def _hmc(bk, G, lat, variant, *, kappa=0.25, seed=3, **kw):
    eo, mus, n_inner = VARIANTS[variant]
    return Nf2HMC.from_couplings(G, lat, 2.0, kappa=kappa, rng=bk.rng(seed), even_odd=eo, mus=mus, n_inner=n_inner,
                                 **kw)


def _check_reversible(bk, variant):
    lat = lk.Lattice((4, 4))
    hmc = _hmc(bk, lk.U1, lat, variant, step_size=0.15, n_steps=2, tol=1e-12)   # 2 steps: 2/3 of the cost of 3
    rng = bk.rng(4)
    U = random_gauge_field(lk.U1, lat, rng, (2,))
    hmc.refresh(U)
    p = hmc.kind.momenta(rng, U)
    U1, p1 = hmc.trajectory(U, p)
    U2, p2 = hmc.trajectory(U1, -p1)
    assert_close(U2, U, rtol=0, atol=1e-10, msg="U after forward and backward trajectory")
    assert_close(p2, -p, rtol=0, atol=1e-10, msg="p after forward and backward trajectory")
    assert np.abs(bk.to_numpy(U1) - bk.to_numpy(U)).max() > 1e-2  # the trajectory really moved


def test_reversibility_u1(bk):
    """On every backend: the variant that exercises most code (even/odd, a Hasenbusch shift, a nested gauge time
    scale)."""
    _check_reversible(bk, "eo_hasenbusch_multiscale")


@pytest.mark.parametrize("variant", ["plain", "even_odd", "hasenbusch"])
def test_reversibility_u1_more_variants(numpy_bk, variant):
    # NumPy only: the variants compose the same operators that the test above runs on every backend; with
    # array_api_strict (the generic code: CG to 1e-12 in Python) the three took 14 s of the suite's time.
    _check_reversible(numpy_bk, variant)


def test_reversibility_su2(bk):
    G, lat = lk.SU(2), lk.Lattice((2, 4))
    hmc = _hmc(bk, G, lat, "eo_hasenbusch_multiscale", step_size=0.1, n_steps=2, tol=1e-12)
    rng = bk.rng(5)
    U = random_gauge_field(G, lat, rng, (2,))
    hmc.refresh(U)
    p = hmc.kind.momenta(rng, U)
    U1, p1 = hmc.trajectory(U, p)
    U2, p2 = hmc.trajectory(U1, -p1)
    assert_close(U2, U, rtol=0, atol=1e-10, msg="U after forward and backward trajectory")
    assert_close(p2, -p, rtol=0, atol=1e-10, msg="p after forward and backward trajectory")
    assert np.abs(bk.to_numpy(U1) - bk.to_numpy(U)).max() > 1e-2


def test_target_matches_the_fermion_actions(bk):
    """Nf2Target evaluates the same actions and forces as PseudofermionAction / HasenbuschAction."""
    rng = bk.rng(6)
    lat, lat2, G = lk.Lattice((4, 4)), lk.Lattice((2, 4)), lk.SU(2)
    cases = [(lk.U1, lat, PseudofermionAction(lk.U1, lat, kappa=0.24, even_odd=True, tol=1e-12)),
             (lk.U1, lat, HasenbuschAction(lk.U1, lat, kappa=0.24, mus=[0.2, 1.0], tol=1e-12)),
             (G, lat2, HasenbuschAction(G, lat2, kappa=0.2, mus=[0.5], even_odd=True, tol=1e-12))]
    for grp, la, ferm in cases:
        U = random_gauge_field(grp, la, rng, (2,))
        gauge = WilsonGaugeAction(grp, la, 2.0)
        t = Nf2Target(gauge, ferm, tol=1e-12)
        phis = t.sample(U, rng)
        ref_phis = phis[0] if isinstance(ferm, PseudofermionAction) else phis
        S_ref = bk.to_numpy(ferm.action(U, ref_phis))
        F_ref = bk.to_numpy(ferm.force(U, ref_phis))
        assert_close(bk.to_numpy(t.fermion_action(U)), S_ref, rtol=1e-10, atol=0)
        assert_close(bk.to_numpy(t.fermion_force(U)), F_ref, rtol=1e-8, atol=1e-10)
        assert_close(bk.to_numpy(t.force(U)), F_ref + bk.to_numpy(gauge.force(U)), rtol=1e-8, atol=1e-10)
        assert_close(bk.to_numpy(t.action(U)), S_ref + bk.to_numpy(gauge.action(U)), rtol=1e-10, atol=0)


def test_heatbath_action_is_chi_squared(bk):
    """Right after the heatbath every monomial's action is chi^dag chi, whose mean is ndof: summed over
    monomials and 64 chains, <S_pf> = n_monomials * ndof within errors (fails for a wrong sampler)."""
    lat = lk.Lattice((4, 4))
    rng = bk.rng(8)
    U = random_gauge_field(lk.U1, lat, rng, (64,))
    t = Nf2Target(WilsonGaugeAction(lk.U1, lat, 2.0),
                  HasenbuschAction(lk.U1, lat, kappa=0.26, mus=[0.1], even_odd=True))
    t.sample(U, rng)
    S = np.stack([bk.to_numpy(s) for s in t.fermion_actions(U)])  # (2, 64)
    ndof = 2 * 16 // 2
    for s in S:  # each monomial: chi^dag chi ~ Gamma(ndof), mean ndof, std sqrt(ndof)
        assert abs(s.mean() - ndof) < 4 * math.sqrt(ndof / 64), s.mean()


def _check_dH_scaling(bk, integrator, n_inner, group):
    G, lat = (lk.U1, lk.Lattice((4, 4))) if group == "u1" else (lk.SU(2), lk.Lattice((2, 4)))
    # a typical starting configuration: 3 trajectories from a random start, run with NumPy (the starting
    # point is not under test; on array_api_strict these would cost as much as the check itself)
    rng = lk.backends.rng(5)
    U = random_gauge_field(G, lat, rng, (4,))
    U, _ = Nf2HMC.from_couplings(G, lat, 2.0, kappa=0.26 if group == "u1" else 0.2, rng=rng, step_size=0.2,
                                 n_steps=5).run(U, 3)
    U = bk.asarray(U)
    # trajectories of length 0.2 in 1, 2 and 4 steps (was 0.3 in 3, 6, 12: the same slope to 0.01, a third of the
    # cost, 43 s on array_api_strict); a first-order error would give a slope of 1
    eps = np.array([0.2, 0.1, 0.05])
    dh = []
    for e in eps:
        hmc = Nf2HMC.from_couplings(G, lat, 2.0, kappa=0.26 if group == "u1" else 0.2, rng=bk.rng(7),
                                    step_size=float(e), n_steps=int(round(0.2 / e)), integrator=integrator,
                                    n_inner=n_inner, even_odd=True, mus=[0.2], tol=1e-12)
        hmc.refresh(U)  # the same pseudofermions and momenta for every step size
        p = hmc.kind.momenta(bk.rng(8), U)
        h0 = hmc.hamiltonian(U, p)
        U1, p1 = hmc.trajectory(U, p)
        dh.append(float(np.mean(np.abs(bk.to_numpy(hmc.hamiltonian(U1, p1) - h0)))))
    slope = np.polyfit(np.log(eps), np.log(dh), 1)[0]
    assert_close(slope, 2.0, rtol=0, atol=0.3, msg=f"slope {slope}, |dH| {dh}")


def test_dH_scales_as_eps_squared(bk):
    """On every backend: the configuration that exercises most code (SU(2), Omelyan with a nested gauge time
    scale, even/odd + Hasenbusch)."""
    _check_dH_scaling(bk, "omelyan", 2, "su2")


@pytest.mark.parametrize("integrator, n_inner, group", [("leapfrog", None, "u1"), ("omelyan", None, "u1"),
                                                      ("omelyan", 3, "u1")])
def test_dH_scales_as_eps_squared_more_integrators(numpy_bk, integrator, n_inner, group):
    # NumPy only: the integrators are backend-independent code over the same forces that the test above runs
    # on every backend; with array_api_strict each configuration takes ~16 s (21 trajectories with CG to 1e-12).
    _check_dH_scaling(numpy_bk, integrator, n_inner, group)


def _check_extras(bk, hmc, info, n_chains):
    """Solver counts in the extras of the last step (leapfrog, 3 outer steps, 2 monomials)."""
    ex = {k: bk.to_numpy(v) for k, v in info.extras.items()}
    for k in ("cg_iterations", "cg_iterations_heatbath", "cg_iterations_md", "cg_iterations_metropolis",
              "cg_max_iterations", "cg_failed"):
        assert ex[k].shape == (n_chains,), k
    np.testing.assert_array_equal(ex["cg_iterations"], ex["cg_iterations_heatbath"] + ex["cg_iterations_md"]
                                  + ex["cg_iterations_metropolis"])
    assert np.all(ex["cg_iterations_heatbath"] > 0) and np.all(ex["cg_iterations_md"] > 0)
    assert not ex["cg_failed"].any()
    mts = hmc.multiscale
    assert ex["force_evaluations"] == mts.slow_forces(3) and ex["gauge_force_evaluations"] == mts.fast_forces(3)
    # leapfrog, 3 outer steps: 4 fermion forces x 2 monomials in the MD; the largest single solve is one of them
    assert np.all(ex["cg_max_iterations"] <= ex["cg_iterations_md"])
    assert np.all(ex["cg_iterations_md"] <= 4 * 2 * ex["cg_max_iterations"])


def _exp_minus_dH_hmc(lat, rng):
    return Nf2HMC.from_couplings(lk.U1, lat, 2.0, kappa=0.26, rng=rng, step_size=0.35, n_steps=3,
                                 integrator="leapfrog", even_odd=True, mus=[0.3], n_inner=2, md_tol=1e-8)


def _per_chain_exp_minus_dH(bk, hist):
    """<exp(-dH)> with its standard error from per-chain means (the chains are independent replicas)."""
    dH = bk.to_numpy(hist.dH)  # (n_meas, n_chains)
    per_chain = np.exp(-dH).mean(axis=0)
    return per_chain.mean(), per_chain.std(ddof=1) / math.sqrt(per_chain.size), dH


def test_exp_minus_dH_is_one_and_extras(numpy_bk):
    # The heavy version, NumPy only: 64 chains x 26 trajectories (~5 s with numpy; array_api_strict needs ~1.5 s
    # per trajectory). test_exp_minus_dH_is_one_every_backend runs a 32 x 6 version on every backend.
    bk = numpy_bk
    lat = lk.Lattice((4, 4))
    rng = bk.rng(9)
    U = random_gauge_field(lk.U1, lat, rng, (64,))
    hmc = _exp_minus_dH_hmc(lat, rng)
    U, _ = hmc.run(U, 6)
    infos = []
    U, hist = hmc.run(U, 20, callback=lambda i, x, info: infos.append(info))
    m, err, dH = _per_chain_exp_minus_dH(bk, hist)  # (20, 64)
    assert abs(m - 1.0) < 4 * err, (m, err)  # seeded; 4 standard errors
    assert float(np.mean(dH)) > 4 * err  # <dH> > 0: the test has power
    assert 0.3 < hist.acceptance_rate < 1.0
    _check_extras(bk, hmc, infos[-1], 64)


def test_exp_minus_dH_is_one_every_backend(bk):
    """<exp(-dH)> = 1 needs configurations from the target distribution, whichever code produced them: the 32
    chains are thermalised with NumPy (6 trajectories from a random start, as above), then 6 trajectories run
    on the backend under test."""
    lat = lk.Lattice((4, 4))
    rng = lk.backends.rng(9)
    U, _ = _exp_minus_dH_hmc(lat, rng).run(random_gauge_field(lk.U1, lat, rng, (32,)), 6)
    hmc = _exp_minus_dH_hmc(lat, bk.rng(10))
    infos = []
    _, hist = hmc.run(bk.asarray(U), 6, callback=lambda i, x, info: infos.append(info))
    m, err, _ = _per_chain_exp_minus_dH(bk, hist)
    assert abs(m - 1.0) < 4 * err, (m, err)  # seeded; 4 standard errors
    assert 0.3 < hist.acceptance_rate < 1.0
    _check_extras(bk, hmc, infos[-1], 32)


# -- the validation: Schwinger model, Nf = 2 HMC against the reweighted quenched ensemble -----------------
BETA, LAT = 2.0, (4, 4)
# LATTICEKIT_LONG_VALIDATION=1 runs the long version quoted in docs/fermions.md ("Nf=2 Schwinger model"):
# quenched 64 chains x 1000 sweeps, Nf=2 HMC 64 chains x 400 trajectories (13 min on the shared 2-core VM).
_LONG = os.environ.get("LATTICEKIT_LONG_VALIDATION", "") not in ("", "0")
_Q_SWEEPS, _HMC_CHAINS, _HMC_THERM, _HMC_MEAS = (1000, 64, 20, 400) if _LONG else (160, 24, 6, 30)


@pytest.fixture(scope="module")
def quenched():
    """Quenched (pure gauge) 2D U(1) ensemble at beta = 2 on 4x4: heatbath + overrelaxation, 64 chains x 160
    sweeps after 20 thermalisation sweeps. Returns the configurations (160, 64, 2, 4, 4) and plaquettes."""
    lat = lk.Lattice(LAT)
    rng = lk.backends.rng(2024)
    hb = Heatbath(lk.U1, lat, BETA, rng=rng, n_overrelax=1)
    U = random_gauge_field(lk.U1, lat, rng, (64,))
    U, _ = hb.run(U, 20)
    Us, P = [], []
    for _ in range(_Q_SWEEPS):
        U, _ = hb.step(U)
        Us.append(U)
        P.append(average_plaquette(U, lk.U1, lat))
    return np.stack(Us), np.stack(P)


# Numbers of this test (seeds as below, numpy; 24 chains x 30 trajectories; ~40 s on the shared 2-core VM
# at load ~5):
#   exact quenched <P> (4x4 torus, beta = 2) 0.69925; quenched ensemble 0.7004(12)
#   kappa = 0.265, plain pseudofermions:        Nf=2 HMC 0.7529(50)  reweighted 0.7532(14)  ESS/N 0.38  (-0.06 sigma)
#   kappa = 0.276, eo + Hasenbusch [0.3] + 2 time scales:
#                                               Nf=2 HMC 0.7651(54)  reweighted 0.7632(15)  ESS/N 0.34  (+0.33 sigma)
# The Nf=2 HMC values lie 11-12 of their sigmas (the reweighted ones 38-44) above the quenched plaquette:
# the determinant matters, and a wrong sign or factor in the fermion force, heatbath or Metropolis step would
# separate HMC from the reweighting. The long run is quoted in docs/fermions.md.
# NumPy only: ~40 s here, and array_api_strict runs an Nf=2 trajectory ~20x slower than numpy (no fast paths),
# so three backends would add minutes; the HMC pieces it relies on (reversibility, dH ~ eps^2, <exp(-dH)> = 1,
# the fermion actions and forces) run on every backend in the tests above.
@pytest.mark.slow
@pytest.mark.parametrize("kappa, variant", [(0.265, "plain"), (0.276, "eo_hasenbusch_multiscale")])
def test_schwinger_nf2_matches_reweighted_quenched(quenched, kappa, variant):
    lat = lk.Lattice(LAT)
    Us, P = quenched
    n, C = P.shape
    # reweighting: log w = log det(D D^dag) (dense, 32 x 32 per configuration)
    logdet = np.stack([np.asarray(logdet_normal(WilsonDirac(U, lk.U1, lat, kappa=kappa))) for U in Us])
    rw = reweight(P.T.reshape(-1), logdet.T.reshape(-1), bin_size=10)  # chain by chain; bins stay in one chain
    assert rw.ess > 0.1
    q = gamma_method([P[:, c] for c in range(C)])
    exact_q = u1_2d_plaquette(BETA, LAT)
    assert abs(q.value - exact_q) < 3 * q.error, (q.value, q.error, exact_q)  # the quenched ensemble is right

    # Nf = 2 HMC, started from equilibrated quenched configurations
    eo, mus, n_inner = VARIANTS[variant]
    hmc = Nf2HMC.from_couplings(lk.U1, lat, BETA, kappa=kappa, rng=lk.backends.rng(77), even_odd=eo, mus=mus,
                                n_inner=n_inner, step_size=0.25, n_steps=4, integrator="omelyan", md_tol=1e-9)
    U = Us[-1, :_HMC_CHAINS]
    U, _ = hmc.run(U, _HMC_THERM)
    U, hist = hmc.run(U, _HMC_MEAS, measure=lambda U: average_plaquette(U, lk.U1, lat))
    m = np.asarray(hist.measurements)
    h = gamma_method([m[:, c] for c in range(m.shape[1])])
    assert hist.acceptance_rate > 0.8
    if _LONG:
        print(f"\nkappa={kappa} {variant}: quenched {q.value:.5f}({q.error:.5f}) exact {exact_q:.5f} | "
              f"Nf=2 HMC {h.value:.5f}({h.error:.5f}) tau_int {h.tau_int:.2f} acc {hist.acceptance_rate:.3f} | "
              f"reweighted {rw.value:.5f}({rw.error:.5f}) ESS/N {rw.ess:.3f}")

    comb = math.hypot(h.error, rw.error)
    assert abs(h.value - rw.value) < 3 * comb, (h.value, h.error, rw.value, rw.error)
    # both clearly differ from the quenched plaquette: the determinant matters
    assert (h.value - exact_q) / h.error > 6, (h.value, h.error, exact_q)
    assert (rw.value - exact_q) / rw.error > 6, (rw.value, rw.error, exact_q)


def test_from_couplings_refuses_even_odd_on_odd_extents_at_construction():
    with pytest.raises(ValueError, match="even_odd=True: even/odd preconditioning needs every lattice extent even"):
        Nf2HMC.from_couplings(lk.U1, lk.Lattice((4, 3)), 2.0, kappa=0.2, rng=lk.backends.rng(0), even_odd=True)
    h = Nf2HMC.from_couplings(lk.U1, lk.Lattice((4, 4)), 2.0, kappa=0.2, rng=lk.backends.rng(0), even_odd=True,
                              maxiter=np.int64(300), n_steps=np.int64(2))
    assert (h.target.maxiter, h.n_steps) == (300, 2)
