"""The 2D U(1) plaquette-variable prior (latticekit.flows.u1_plaquette_prior).

* log q reported while sampling equals log_prob recomputed from the plaquettes of the assembled links, and the
  assembled plaquettes are the drawn ones except the constrained one (so the field is a valid torus field);
* log_prob is normalised: E_Haar[q] = 1 (Monte Carlo over Haar fields) -- the unit Jacobian of the
  change of variables;
* the law of the samples is q: flow MCMC with it as the proposal reproduces the exact plaquette, chi_t and
  P(Q) of latticekit.exact (acceptance < 1, so a wrong density would bias the chain), and the importance weights
  give the exact log Z and the closed-form ESS;
* gauge invariance of log_prob (the sampler's gauge randomisation), translation of the weights;
* the implicit-reparametrisation gradient of the reverse KL in kappa against its closed form;
* bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special

import latticekit as lk
from latticekit import exact
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import Flow, Model, independence_metropolis
from latticekit.flows.u1_plaquette_prior import U1PlaquettePrior, u1_plaquette_prior_ess
from latticekit.gauge import gauge_transform
from latticekit.observables import average_plaquette, plaquettes, topological_charge_u1_2d
from latticekit.testing import assert_close

F64 = torch.float64


def _trng(seed: int, device: str = "cpu") -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


@pytest.mark.parametrize("shape", [(1, 1), (1, 3), (2, 2), (3, 5), (4, 4), (8, 6)])
def test_log_q_matches_plaquettes_of_the_assembled_field(shape: tuple[int, int], device: str) -> None:
    lat = lk.Lattice(shape)
    prior = U1PlaquettePrior(lat, beta=2.5).to(device=device, dtype=F64)
    U, lq = prior.sample(64, _trng(1, device))
    assert U.shape == (64, 2) + shape and U.device.type == device
    assert bool(((U > -math.pi) & (U <= math.pi)).all())
    assert_close(lq, prior.log_prob(U), rtol=0, atol=1e-12)
    # independent recomputation with the library's plaquettes (LoopBuilder), not the prior's own formula
    P = plaquettes(U, lk.U1, lat, 0, 1).reshape(64, -1)
    free = P[:, :-1]
    k = 2.5
    ref = torch.sum(k * torch.cos(free) - math.log(special.i0(k)), dim=1)
    assert_close(lq, ref, rtol=0, atol=1e-11)
    # the constraint: prod_x e^{i P(x)} = 1
    assert_close(torch.cos(P.sum(dim=1)), torch.ones(64, dtype=F64, device=device), rtol=0, atol=1e-11)


def test_log_prob_is_normalised_over_haar_fields() -> None:
    """E_Haar[q(U)] = 1 on a 2x2 torus at kappa = 1: 3 free plaquettes, Var_Haar[q] = (I_0(2)/I_0(1)^2)^3 - 1
    = 1.82, so 400000 Haar fields give a standard error 0.0021; tolerance 5 sigma."""
    lat = lk.Lattice((2, 2))
    prior = U1PlaquettePrior(lat, beta=1.0).to(F64)
    n = 400_000
    U = _trng(3).uniform((n, 2, 2, 2), low=-math.pi, high=math.pi, dtype=F64)
    q = torch.exp(prior.log_prob(U))
    sigma = math.sqrt((special.i0(2.0) / special.i0(1.0) ** 2) ** 3 - 1.0) / math.sqrt(n)
    assert abs(float(q.mean()) - 1.0) < 5 * sigma
    # negative control: a log-density missing the normaliser I_0 per plaquette is off by I_0(1)^3 = 4.2
    assert abs(float((q * special.i0(1.0) ** 3).mean()) - 1.0) > 100 * sigma


@pytest.mark.parametrize("shape,beta,kappa", [((4, 4), 2.0, 2.0), ((8, 8), 4.0, 4.0), ((3, 5), 1.0, 1.0),
                                              ((4, 4), 2.0, 1.7)])
def test_weights_give_exact_log_z_and_ess(shape: tuple[int, int], beta: float, kappa: float) -> None:
    """E_q[w] = Z (latticekit.exact) and the Kish ESS of 60000 draws matches the closed form (module docstring).
    The errors: log mean w has the delta-method error sqrt(Var w / N) / mean w; the ESS estimator
    (sum w)^2 / (N sum w^2) has relative fluctuation below 2 sqrt(Var(w^2) / N) / E[w^2] (0.01-0.03 here); 5 sigma.
    The ESS check resolves the closed form: the Haar prior's ESS differs from it by far more than the tolerance."""
    lat = lk.Lattice(shape)
    prior = U1PlaquettePrior(lat, beta=kappa).to(F64)
    U, lq = prior.sample(60_000, _trng(4))
    lw = -WilsonGaugeAction(lk.U1, lat, beta)(U) - lq
    w = torch.exp(lw - lw.max())
    n = w.numel()
    log_z = float(torch.log(w.mean()) + lw.max())
    err = float(w.std() / w.mean()) / math.sqrt(n)
    assert abs(log_z - exact.u1_2d_log_z(beta, shape)) < 5 * err
    ess = float(w.sum() ** 2 / (n * (w * w).sum()))
    ess_exact = u1_plaquette_prior_ess(beta, shape, kappa=kappa)
    assert_close(ess_exact, prior.exact_ess(beta), rtol=1e-6, atol=0)   # kappa stored in float32 first
    assert 0.1 < ess_exact < 0.999
    rel = 2 * float((w ** 2).std() / (w ** 2).mean()) / math.sqrt(n)
    assert abs(ess / ess_exact - 1.0) < 5 * rel < 0.2


def test_exact_ess_limits() -> None:
    # beta = 0: q is the (uniform) target; large volume: I_0(beta)^2 / I_0(2 beta)
    assert_close(u1_plaquette_prior_ess(0.0, (6, 6)), 1.0, rtol=0, atol=1e-13)
    for beta in (2.0, 6.0, 8.0):
        assert_close(u1_plaquette_prior_ess(beta, (64, 64)), special.i0(beta) ** 2 / special.i0(2 * beta),
                     rtol=1e-10, atol=0)
    # 1x1 torus: the one plaquette is identically 0, w constant
    assert_close(u1_plaquette_prior_ess(3.0, (1, 1)), 1.0, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="beta"):
        u1_plaquette_prior_ess(-1.0, (4, 4))


@pytest.mark.parametrize("shape,beta", [((8, 8), 3.0), ((6, 4), 5.0)])
def test_flow_mcmc_reproduces_exact_results(shape: tuple[int, int], beta: float) -> None:
    """Independence Metropolis with the prior as proposal (acceptance 0.25-0.45, so the weights matter):
    plaquette, chi_t and P(Q = 0, 1) within 4 Gamma-method errors of latticekit.exact (fixed seed)."""
    lat = lk.Lattice(shape)
    model = Model(U1PlaquettePrior(lat, beta=beta), Flow([])).to(F64)
    V = lat.volume
    obs = {"Q": lambda U: topological_charge_u1_2d(U, lat),
           "plaquette": lambda U: average_plaquette(U, lk.U1, lat),
           "chi_t": lambda U: topological_charge_u1_2d(U, lat) ** 2 / V,
           "p0": lambda U: (torch.round(topological_charge_u1_2d(U, lat)) == 0).to(F64),
           "p1": lambda U: (torch.round(topological_charge_u1_2d(U, lat)) == 1).to(F64)}
    res = independence_metropolis(model, WilsonGaugeAction(lk.U1, lat, beta), 40_000, _trng(5),
                                  observables=obs, batch_size=8192)
    assert 0.1 < res.acceptance.rate < 0.9
    qv, pq = exact.u1_2d_charge_distribution(beta, shape, q_max=2)
    p = dict(zip(qv.tolist(), pq.tolist()))
    ref = {"plaquette": exact.u1_2d_plaquette(beta, shape),
           "chi_t": exact.u1_2d_topological_susceptibility(beta, shape), "p0": p[0], "p1": p[1]}
    for name, val in ref.items():
        g = res.analysis[name]
        assert abs(g.value - val) < 4 * g.error, (name, g.value, g.error, val)
    # no freezing: the charge of the chain changes at a rate of the order of acceptance x P(Q != 0)
    changes = int(np.count_nonzero(np.diff(np.rint(res.observables["Q"]))))
    assert changes > 0.2 * res.acceptance.rate * (1.0 - p[0]) * len(res.observables["Q"]), changes


def test_log_prob_gauge_invariant_and_batch_shapes(device: str) -> None:
    lat = lk.Lattice((4, 6))
    prior = U1PlaquettePrior(lat, beta=1.7).to(device=device, dtype=F64)
    U = _trng(6, device).uniform((5, 2, 4, 6), low=-math.pi, high=math.pi, dtype=F64)
    Om = _trng(7, device).uniform((5, 4, 6), low=-math.pi, high=math.pi, dtype=F64)
    assert_close(prior.log_prob(gauge_transform(U, Om, lk.U1, lat)), prior.log_prob(U), rtol=0, atol=1e-12)
    lp = prior.log_prob(U.reshape(5, 1, 2, 4, 6))
    assert lp.shape == (5, 1)
    assert_close(lp[:, 0], prior.log_prob(U), rtol=0, atol=0)


def test_reverse_kl_gradient_in_kappa_matches_closed_form() -> None:
    """d/dkappa of KL(q_kappa || p) (up to log Z) with A = I_1/I_0(kappa), A' = 1 - A/kappa - A^2:
    KL = (V - 1)[(kappa - beta) A - log I_0(kappa)] - beta A^{V-1} + const, so
    dKL/dkappa = (V - 1) A' [(kappa - beta) - beta A^{V-2}].
    The autograd gradient of the mean of log q + S over draws (implicit reparametrisation through the von Mises
    draws and the assembled links) agrees within 5 standard errors over 16 independent batches."""
    lat = lk.Lattice((2, 2))
    V, beta, kappa = 4, 2.0, 1.4
    prior = U1PlaquettePrior(lat, beta=kappa, learn_beta=True).to(F64)
    model = Model(prior, Flow([]))
    action = WilsonGaugeAction(lk.U1, lat, beta)
    grads = []
    for i in range(16):
        prior.zero_grad()
        U, lq = model.sample(20_000, _trng(100 + i))
        (lq + action(U)).mean().backward()
        grads.append(float(prior.plaquette_law.beta.grad[0]))
    g = np.array(grads)
    A = special.i1(kappa) / special.i0(kappa)
    dA = 1.0 - A / kappa - A * A
    ref = (V - 1) * dA * ((kappa - beta) - beta * A ** (V - 2))
    assert abs(g.mean() - ref) < 5 * g.std(ddof=1) / math.sqrt(len(g)), (g.mean(), g.std(), ref)
    assert abs(ref) > 10 * g.std(ddof=1) / math.sqrt(len(g))     # the check resolves the gradient


def test_float32_model_samples_a_valid_field() -> None:
    lat = lk.Lattice((16, 16))
    prior = U1PlaquettePrior(lat, beta=6.0).to(torch.float32)
    U, lq = prior.sample(8, _trng(8))
    assert U.dtype == torch.float32 and lq.dtype == torch.float32
    # assembled in float64: the plaquettes of the float32 field match the float32 log q to float32 rounding
    assert_close(prior.log_prob(U), lq, rtol=1e-5, atol=1e-3)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"lattice=\(4, 4, 4\): the plaquette-variable prior is for 2D U\(1\)"):
        U1PlaquettePrior(lk.Lattice((4, 4, 4)), 1.0)
    with pytest.raises(TypeError, match="lattice"):
        U1PlaquettePrior((4, 4), 1.0)
    with pytest.raises(ValueError, match="beta"):
        U1PlaquettePrior(lk.Lattice((4, 4)), float("nan"))
    p = U1PlaquettePrior(lk.Lattice((4, 4)), 1.0).to(F64)
    with pytest.raises(ValueError, match=r"z has shape \(3, 2, 4, 5\); expected \(\*batch, 2, 4, 4\)"):
        p.log_prob(torch.zeros(3, 2, 4, 5, dtype=F64))
    with pytest.raises(TypeError, match="complex"):
        p.log_prob(torch.zeros(3, 2, 4, 4, dtype=torch.complex128))
    with pytest.raises(ValueError, match="n=0"):
        p.sample(0, _trng(0))
    with pytest.raises(TypeError, match="rng"):
        p.sample(2, np.random.default_rng(0))
