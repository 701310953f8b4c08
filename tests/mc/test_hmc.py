"""HMC: reversibility, dH scaling of the integrators, <exp(-dH)> = 1, exact distributions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import i0, i1, iv

import latticekit as lk
from latticekit.actions import Phi4Action, WilsonGaugeAction
from latticekit.gauge import random_gauge_field
from latticekit.mc import (
    HMC,
    Heatbath,
    GaussianAction,
    Langevin,
    Leapfrog,
    Omelyan,
    QuarticAction,
    RealField,
    SingleLinkAction,
    SUNField,
    U1Field,
    field_kind,
    integrator_from_name,
)
from latticekit.testing import assert_close


def _replica_mean(series: np.ndarray, discard: int = 0) -> tuple[float, float]:
    """Mean and error of a (n_time, n_chains...) series: chains are independent replicas."""
    a = np.asarray(series)[discard:]
    per_chain = a.reshape(a.shape[0], -1).mean(axis=0)
    return float(per_chain.mean()), float(per_chain.std(ddof=1) / math.sqrt(per_chain.size))


def _systems(bk, name):
    """(target, kind, x0) of small systems of every field kind."""
    rng = bk.rng(11)
    if name == "real":
        lat = lk.Lattice((4, 4))
        x = rng.normal((3, 4, 4))
        return QuarticAction(0.5, 0.8, event_ndim=2), RealField.for_lattice(lat), x
    if name == "phi4":
        lat = lk.Lattice((4, 4))
        x = rng.normal((3, 4, 4))
        return Phi4Action(lat, kappa=0.2, lam=0.5), field_kind(lat), x
    if name == "u1":
        lat = lk.Lattice((4, 4))
        return WilsonGaugeAction(lk.U1, lat, 1.5), U1Field(lat), random_gauge_field(lk.U1, lat, rng, (3,))
    G = lk.SU(2) if name == "su2" else lk.SU(3)
    lat = lk.Lattice((4, 4)) if name == "su2" else lk.Lattice((2, 4))
    return WilsonGaugeAction(G, lat, 2.0), SUNField(G, lat), random_gauge_field(G, lat, rng, (2,))


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("system", ["real", "u1", "su2", "su3"])
def test_reversibility(bk, system, integrator):
    target, kind, x = _systems(bk, system)
    hmc = HMC(target, kind, rng=bk.rng(1), step_size=0.08, n_steps=5, integrator=integrator)
    p = kind.momenta(bk.rng(2), x)
    x1, p1 = hmc.trajectory(x, p)
    x2, p2 = hmc.trajectory(x1, -p1)
    assert_close(x2, x, rtol=0, atol=1e-11, msg="x after forward and backward trajectory")
    assert_close(p2, -p, rtol=0, atol=1e-11, msg="p after forward and backward trajectory")
    # and the trajectory really moved
    assert np.abs(bk.to_numpy(x1) - bk.to_numpy(x)).max() > 1e-2


def _mean_abs_dH(bk, target, kind, x, integrator, eps, tau):
    n = int(round(tau / eps))
    hmc = HMC(target, kind, rng=bk.rng(0), step_size=eps, n_steps=n, integrator=integrator)
    p = kind.momenta(bk.rng(5), x)  # the same momenta for every step size
    h0 = hmc.hamiltonian(x, p)
    x1, p1 = hmc.trajectory(x, p)
    return float(np.mean(np.abs(bk.to_numpy(hmc.hamiltonian(x1, p1) - h0))))


@pytest.mark.parametrize("integrator", ["leapfrog", "omelyan"])
@pytest.mark.parametrize("system", ["phi4", "u1", "su2"])
def test_dH_scales_as_eps_squared(bk, system, integrator):
    target, kind, x = _systems(bk, system)
    eps = np.array([0.1, 0.05, 0.025])
    dh = np.array([_mean_abs_dH(bk, target, kind, x, integrator, e, 0.4) for e in eps])
    slope = np.polyfit(np.log(eps), np.log(dh), 1)[0]
    assert_close(slope, 2.0, rtol=0, atol=0.3, msg=f"slope {slope}, |dH| {dh}")


def test_omelyan_beats_leapfrog_at_equal_cost(bk):
    target, kind, x = _systems(bk, "su2")
    lf = _mean_abs_dH(bk, target, kind, x, "leapfrog", 0.1, 0.6)
    om = _mean_abs_dH(bk, target, kind, x, "omelyan", 0.2, 0.6)  # same number of forces
    assert om < lf


def test_exp_minus_dH_is_one(bk):
    lat = lk.Lattice((4, 4))
    target = WilsonGaugeAction(lk.U1, lat, 1.0)
    rng = bk.rng(3)
    U = random_gauge_field(lk.U1, lat, rng, (64,))
    hmc = HMC(target, rng=rng, step_size=0.25, n_steps=4)  # large steps: <dH> clearly non-zero
    U, _ = hmc.run(U, 10)
    U, hist = hmc.run(U, 30)
    e = np.exp(-bk.to_numpy(hist.dH))  # (30, 64)
    m, err = _replica_mean(e)
    assert abs(m - 1.0) < 4 * err, (m, err)
    assert float(np.mean(bk.to_numpy(hist.dH))) > 4 * err  # <dH> > 0: the test has power
    mm, _ = hist.exp_minus_dH()
    assert_close(mm, m, rtol=0, atol=1e-12)
    assert 0.3 < hist.acceptance_rate < 1.0


def test_gaussian_second_moment_exact(bk):
    m2 = 2.0
    rng = bk.rng(4)
    hmc = HMC(GaussianAction(m2, event_ndim=1), RealField(1), rng=rng, step_size=0.35, n_steps=3)
    x = rng.normal((64, 16))
    x, _ = hmc.run(x, 20)
    x, hist = hmc.run(x, 150, measure=lambda x: bk.xp.mean(x * x, axis=-1))
    m, err = _replica_mean(bk.to_numpy(hist.measurements))
    assert abs(m - 1.0 / m2) < 4 * err, (m, err)
    assert err < 0.01


def _chi2_replica_hist(samples: np.ndarray, edges: np.ndarray, probs: np.ndarray) -> float:
    """chi^2 of binned frequencies with errors from independent replicas (last axis = replicas)."""
    n_rep = samples.shape[-1]
    idx = np.digitize(samples, edges) - 1  # (n_time, n_rep)
    freq = np.stack([(idx == b).mean(axis=0) for b in range(len(probs))], axis=0)  # (bins, n_rep)
    mean = freq.mean(axis=1)
    var = freq.var(axis=1, ddof=1) / n_rep
    return float(np.sum((mean - probs) ** 2 / var))


@pytest.mark.parametrize("integrator", [Leapfrog(), Omelyan()])
def test_one_link_u1_distribution(bk, integrator):
    beta = 1.5
    lat = lk.Lattice((8,))
    rng = bk.rng(7)
    hmc = HMC(SingleLinkAction(lk.U1, lat, beta), U1Field(lat), rng=rng, step_size=0.3, n_steps=4,
              integrator=integrator, reunitarize_every=1)
    U = random_gauge_field(lk.U1, lat, rng, (32,))
    U, _ = hmc.run(U, 10)
    U, hist = hmc.run(U, 120, measure=lambda U: U)
    th = bk.to_numpy(hist.measurements).reshape(120, -1)  # 256 independent one-link chains
    assert np.all(np.abs(th) <= math.pi + 1e-12)
    edges = np.linspace(-math.pi, math.pi, 17)
    fine = np.linspace(-math.pi, math.pi, 16 * 200 + 1)

    def probs(b):
        w = np.exp(b * np.cos(fine)) / (2 * math.pi * i0(b))
        cell = np.array([np.trapezoid(w[200 * k: 200 * (k + 1) + 1], fine[200 * k: 200 * (k + 1) + 1])
                         for k in range(16)])
        return cell

    p = probs(beta)
    assert_close(p.sum(), 1, rtol=0, atol=1e-8)
    chi2 = _chi2_replica_hist(th, edges, p)
    assert chi2 < 45, chi2  # 15 dof: P(chi2 > 45) ~ 1e-4
    assert _chi2_replica_hist(th, edges, probs(1.25 * beta)) > 60  # a wrong beta is detected
    m, err = _replica_mean(np.cos(th))
    assert abs(m - i1(beta) / i0(beta)) < 4 * err


def test_one_link_su2_distribution(bk):
    beta = 2.0
    G = lk.SU(2)
    lat = lk.Lattice((4,))
    rng = bk.rng(8)
    hmc = HMC(SingleLinkAction(G, lat, beta), rng=rng, step_size=0.4, n_steps=3, integrator="omelyan")
    U = random_gauge_field(G, lat, rng, (32,))
    U, _ = hmc.run(U, 5)
    U, hist = hmc.run(U, 40, measure=lambda U: 0.5 * G.re_trace(U, nd=1))
    m, err = _replica_mean(bk.to_numpy(hist.measurements))
    assert abs(m - iv(2, beta) / iv(1, beta)) < 4 * err, (m, err)
    assert_close(G.defect(U, nd=1), 0.0, rtol=0, atol=1e-12)


def test_2d_u1_wilson_plaquette_matches_exact_torus(bk):
    from latticekit.exact import u1_2d_plaquette
    from latticekit.observables import average_plaquette

    beta, lat = 1.0, lk.Lattice((4, 4))
    rng = bk.rng(9)
    hmc = HMC(WilsonGaugeAction(lk.U1, lat, beta), rng=rng, step_size=0.2, n_steps=5)
    U = random_gauge_field(lk.U1, lat, rng, (32,))
    U, _ = hmc.run(U, 10)
    U, hist = hmc.run(U, 60, measure=lambda U: average_plaquette(U, lk.U1, lat))
    m, err = _replica_mean(bk.to_numpy(hist.measurements))
    assert abs(m - u1_2d_plaquette(beta, (4, 4))) < 4 * err, (m, err)


def test_reunitarization_policy(bk):
    G = lk.SU(3)
    lat = lk.Lattice((2, 2))
    rng = bk.rng(1)
    U = random_gauge_field(G, lat, rng, (2,))
    hmc = HMC(WilsonGaugeAction(G, lat, 5.0), rng=rng, step_size=0.1, n_steps=2, reunitarize_every=3,
              reunitarize_tol=None)
    flags = []
    for _ in range(6):
        U, info = hmc.step(U)
        flags.append(info.extras["reunitarized"])
    assert flags == [False, False, True, False, False, True]
    xp = bk.xp
    bad = U * xp.asarray(1.0 + 1e-6, dtype=xp.complex128)  # off the group
    hmc2 = HMC(WilsonGaugeAction(G, lat, 5.0), rng=rng, step_size=0.1, n_steps=2, reunitarize_every=None,
               reunitarize_tol=1e-9)
    out, info = hmc2.step(bad)
    assert info.extras["reunitarized"]
    assert_close(G.defect(out, nd=2), 0.0, rtol=0, atol=1e-12)


def test_per_chain_metropolis(bk):
    """Chains decide independently: with a huge step some accept and some reject; rejected chains are
    unchanged bit for bit."""
    rng = bk.rng(2)
    hmc = HMC(QuarticAction(1.0, 1.0, event_ndim=1), RealField(1), rng=rng, step_size=0.6, n_steps=3)
    x = rng.normal((200, 4))
    y, info = hmc.step(x)
    acc = bk.to_numpy(info.accepted)
    assert acc.shape == (200,) and 0 < acc.sum() < 200
    assert np.array_equal(bk.to_numpy(y)[~acc], bk.to_numpy(x)[~acc])
    assert np.all(bk.to_numpy(y)[acc] != bk.to_numpy(x)[acc])
    assert 0 < info.acceptance < 1 and np.isfinite(info.exp_minus_dH)


def test_bad_input():
    rng = lk.backends.rng(0)
    t = GaussianAction(1.0, 1)
    with pytest.raises(TypeError, match="target"):
        HMC(object(), RealField(1), rng=rng)
    with pytest.raises(TypeError, match="rng"):
        HMC(t, RealField(1), rng=0)
    with pytest.raises(ValueError, match="step_size"):
        HMC(t, RealField(1), rng=rng, step_size=-1.0)
    with pytest.raises(ValueError, match="n_steps"):
        HMC(t, RealField(1), rng=rng, n_steps=0)
    with pytest.raises(ValueError, match="kind=None"):
        HMC(t, rng=rng)
    with pytest.raises(ValueError, match="integrator"):
        integrator_from_name("rk4")
    with pytest.raises(ValueError, match="lam"):
        Omelyan(0.7)
    lat = lk.Lattice((4, 4))
    hmc = HMC(WilsonGaugeAction(lk.SU(2), lat, 1.0), rng=rng)
    with pytest.raises(ValueError, match="x has shape"):
        hmc.step(np.zeros((2, 2, 2, 3, 3), dtype=complex))
    with pytest.raises(ValueError, match="n="):
        hmc.run(lk.gauge.cold_gauge_field(lk.SU(2), lat), -1)


def test_run_warns_when_nothing_was_accepted(bk) -> None:
    """A cold SU(3) start with a step far too large (dH ~ 10-100): every trajectory is rejected, and run() says
    that the chains never moved; a sensible step size gives no warning."""
    import warnings

    lat, G = lk.Lattice((2, 2)), lk.SU(3)
    U = lk.gauge.cold_gauge_field(G, lat, (2,), backend=bk.name, device=bk.device)
    bad = HMC(WilsonGaugeAction(G, lat, 5.7), rng=bk.rng(0), step_size=0.9, n_steps=3, integrator="leapfrog")
    with pytest.warns(RuntimeWarning, match="no proposal was accepted in 5 steps of any chain"):
        _, hist = bad.run(U, 5)
    assert not bool(bk.to_numpy(hist.accepted).any())
    good = HMC(WilsonGaugeAction(G, lat, 5.7), rng=bk.rng(0), step_size=0.05, n_steps=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        good.run(U, 5)


def test_field_of_another_group_refused(bk):
    """SU(2) links passed to U(1) HMC passed the shape check (the extra axes read as batch) and failed deep
    inside ("use complex_normal() for complex dtypes"); U(1) angles to SU(2) HMC likewise by dtype."""
    lat = lk.Lattice((4, 4))
    su2 = random_gauge_field(lk.SU(2), lat, bk.rng(0), batch_shape=(1,))
    u1 = random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(1,))
    with pytest.raises(TypeError, match="x: expected U\\(1\\) link angles of a real floating dtype, got dtype"):
        HMC(WilsonGaugeAction(lk.U1, lat, 1.0), rng=bk.rng(1)).step(su2)
    with pytest.raises(TypeError, match="x: expected SU\\(2\\) link matrices of a complex dtype, got dtype"):
        HMC(WilsonGaugeAction(lk.SU(2), lat, 1.0), rng=bk.rng(1)).step(u1)


@pytest.mark.parametrize("bad, exc", [(math.inf, ValueError), (-0.1, ValueError), (0.0, ValueError),
                                      (math.nan, ValueError), ("0.1", TypeError), (True, TypeError)])
def test_step_size_must_be_finite_positive_real(bad, exc):
    lat = lk.Lattice((4, 4))
    act = WilsonGaugeAction(lk.U1, lat, 1.0)
    for sampler in (HMC, Langevin):
        with pytest.raises(exc, match="step_size.*: expected a finite positive real number"):
            sampler(act, rng=lk.backends.rng(0), step_size=bad)


def test_integer_options_accept_numpy_integers():
    lat = lk.Lattice((4, 4))
    act = WilsonGaugeAction(lk.U1, lat, 1.0)
    h = HMC(act, rng=lk.backends.rng(0), step_size=np.float32(0.1), n_steps=np.int64(3),
            reunitarize_every=np.int32(2))
    assert (h.n_steps, h.reunitarize_every) == (3, 2) and type(h.n_steps) is int
    U0 = random_gauge_field(lk.U1, lat, lk.backends.rng(1), batch_shape=(1,))
    U, hist = h.run(U0, np.int64(2), every=np.int64(1))
    assert U.shape == (1, 2, 4, 4)
    with pytest.raises(ValueError, match="n_steps=True: expected an integer >= 1"):
        HMC(act, rng=lk.backends.rng(0), n_steps=True)


def test_fields_off_the_manifold_are_refused(bk):
    """A NaN field made every trajectory a rejection (a stuck chain) and a field off the group (2 U, defect 7) was
    evolved, accepted and silently reprojected; the heatbath returned either unchanged in kind (user probe). Both
    samplers now refuse them before any work; a field within rounding of SU(2) is accepted."""
    lat = lk.Lattice((4, 4))
    su2 = random_gauge_field(lk.SU(2), lat, bk.rng(0), batch_shape=(2,))
    u1 = random_gauge_field(lk.U1, lat, bk.rng(0), batch_shape=(2,))
    nan_u1 = bk.xp.where(bk.asarray(np.arange(2 * 2 * 16).reshape(u1.shape) == 5), bk.asarray(np.nan), u1)
    for sampler in (lambda G: HMC(WilsonGaugeAction(G, lat, 1.0), rng=bk.rng(1), n_steps=2),
                    lambda G: Heatbath(G, lat, 1.0, rng=bk.rng(1)),
                    lambda G: Langevin(WilsonGaugeAction(G, lat, 1.0), rng=bk.rng(1), step_size=0.01)):
        with pytest.raises(ValueError, match=r"has 1 non-finite entries \(NaN or inf\)"):
            sampler(lk.U1).step(nan_u1)
        with pytest.raises(ValueError, match=r"is not on the manifold of SUNField\(SU\(2\).*: largest link defect 7"):
            sampler(lk.SU(2)).step(2 * su2)
        sampler(lk.SU(2)).step(su2 * (1 + 1e-6))     # rounding-size defects pass (a single-precision file: 5e-5)


def test_a_chains_own_output_is_not_checked_again(monkeypatch):
    """HMC and Langevin check a start field once (one pass over it, the defect of every link); the field a step
    returned is the chain's next input and is not checked again, and HMC measures its defect only once (it was
    measured twice per trajectory). A field the sampler did not produce is checked."""
    lat = lk.Lattice((4, 4))
    U0 = random_gauge_field(lk.SU(2), lat, lk.backends.rng(0), batch_shape=(2,))
    calls = []
    original = SUNField.check_values
    monkeypatch.setattr(SUNField, "check_values", lambda self, x, name="x": calls.append(1) or original(self, x, name))
    for sampler in (HMC(WilsonGaugeAction(lk.SU(2), lat, 1.0), rng=lk.backends.rng(1), n_steps=2),
                    Langevin(WilsonGaugeAction(lk.SU(2), lat, 1.0), rng=lk.backends.rng(1), step_size=0.01)):
        calls.clear()
        U, _ = sampler.run(U0, 4)
        assert len(calls) == 1
        sampler.step(U0)
        assert len(calls) == 2


@pytest.mark.parametrize("bad", ["1e-3", True, 0.0, -1.0])
def test_reunitarize_tol_is_a_positive_number(bad):
    with pytest.raises(ValueError, match=r"reunitarize_tol=.*: expected a positive number or None"):
        HMC(WilsonGaugeAction(lk.SU(2), lk.Lattice((4, 4)), 1.0), rng=lk.backends.rng(0), reunitarize_tol=bad)
