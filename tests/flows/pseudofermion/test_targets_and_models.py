"""Monomial targets (eqs. 12, 35-38), conditional and joint models (eqs. 20-22, 39-40), pseudo-marginal weights
(eqs. 42-46): values and gradients against dense matrices, the exact-flow normalisation check, the stochastic
log-det gradient (arXiv:2106.05934 App. C), log q recomputation, training under both objectives."""

from __future__ import annotations

import math

import pytest
import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.actions.dirac import WilsonDirac
from latticekit.flows import Flow, HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow
from latticekit.flows.pseudofermion import (
    JointAction,
    JointModel,
    JointSample,
    MarginalAction,
    PFTarget,
    fit_ess_npf,
    monomial_targets,
    pf_weights,
)
from latticekit.linalg import dense_matrix, logdet_normal

LAT = lk.Lattice((2, 4))


def _dense_kernel(t: PFTarget, U: torch.Tensor) -> torch.Tensor:
    """``K`` of the monomial as a dense matrix on the support, built from ``op.normal`` (B, n, n)."""
    op = t.operator(U)
    M = dense_matrix(lambda v: op.normal(v), op.field_shape, like=U, support=op.support, batch_shape=op.batch_shape)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    K = torch.linalg.inv(M + t.mu_lo * eye)
    return K if t.mu_hi is None else (M + t.mu_hi * eye) @ K


def _support_vec(t: PFTarget, phi: torch.Tensor) -> torch.Tensor:
    sup = t.support(phi).expand(phi.shape[1:])
    return phi[:, sup]


MONOMIALS = [(False, 0.0, None), (False, 0.05, 0.3), (True, 0.0, None), (True, 0.01, 0.2)]


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=lambda g: g.name)
@pytest.mark.parametrize("even_odd, mu_lo, mu_hi", MONOMIALS)
def test_action_value_and_gradients_against_dense(G, even_odd, mu_lo, mu_hi, device) -> None:
    rng = lk.backends.rng(0, backend="torch", device=device)
    t = PFTarget(G, LAT, 0.2, even_odd=even_odd, mu_lo=mu_lo, mu_hi=mu_hi, tol=1e-13)
    U = G.random(rng, (2, 2), LAT.shape)
    if G is lk.U1:
        U = U.clone().requires_grad_(True)  # real angles: differentiable leaves
    phi = (rng.complex_normal((2,) + t.field_shape) * t.support(rng.complex_normal((1,)))).requires_grad_(True)
    S = t.action(U, phi)
    K = _dense_kernel(t, U)  # differentiable through the dense matrix (torch autograd)
    v = _support_vec(t, phi)
    S_ref = torch.einsum("bi,bij,bj->b", v.conj(), K, v).real
    assert torch.allclose(S, S_ref, rtol=1e-9, atol=1e-9)  # CG to 1e-13: value exact to ~1e-12 relative
    g_phi, = torch.autograd.grad(S.sum(), phi, retain_graph=True)
    r_phi, = torch.autograd.grad(S_ref.sum(), phi, retain_graph=True)
    assert torch.allclose(g_phi, r_phi, atol=1e-8)
    if G is lk.U1:
        g_U, = torch.autograd.grad(S.sum(), U)
        r_U, = torch.autograd.grad(S_ref.sum(), U)
        assert torch.allclose(g_U, r_U, atol=1e-8)  # the surrogate's exact gauge force


@pytest.mark.parametrize("G", [lk.U1, lk.SU(3)], ids=lambda g: g.name)
@pytest.mark.parametrize("even_odd", [False, True])
def test_exact_flow_gives_constant_weight_and_monomials_multiply_to_det(G, even_odd, device) -> None:
    """The heatbath map phi = B chi is a linear flow with q(phi|U) = exp(-|chi|^2)/pi^n / |det B|^2 and
    |det B|^2 = 1/det K: log w = -S - n log pi - log q must be log(1/det K) for every draw."""
    rng = lk.backends.rng(1, backend="torch", device=device)
    U = G.random(rng, (3, 2), LAT.shape)
    targets = monomial_targets(G, LAT, 0.22, even_odd=even_odd, hasenbusch_mus=[0.05, 0.4], tol=1e-13)
    total = 0
    for t in targets:
        op = t.operator(U)
        phi, chi = t.monomial.sample(op, rng, (3,), tol=1e-13, return_noise=True)
        chi = op.mask(chi)
        log_q = -(chi.abs() ** 2).flatten(1).sum(1) - t.log_normalizer() - t.log_det(U)
        log_w = -t.action(U, phi) - t.log_normalizer() - log_q
        assert torch.allclose(log_w, t.log_det(U), atol=1e-8)  # i.e. -S + |chi|^2 = 0 to the CG residual
        total = total + t.log_det(U)
    ref = logdet_normal(WilsonDirac(U, G, LAT, kappa=0.22))  # det D_sc = det D (D_ee = 1)
    assert torch.allclose(total, ref, atol=1e-9)


def test_regulator_shifts_every_monomial() -> None:
    ts = monomial_targets(lk.U1, LAT, 0.2, hasenbusch_mus=[0.001, 0.01], mu0=1e-5)
    assert [(t.mu_lo, t.mu_hi) for t in ts] == pytest.approx([(1e-5, 0.00101), (0.00101, 0.01001), (0.01001, None)])
    with pytest.raises(ValueError, match="hasenbusch_mus"):
        monomial_targets(lk.U1, LAT, 0.2, hasenbusch_mus=[0.1, 0.01])
    with pytest.raises(ValueError, match="hasenbusch_mus"):
        monomial_targets(lk.U1, LAT, 0.2, hasenbusch_mus=[-0.1])
    t = ts[0]
    with pytest.raises(ValueError, match=r"phi has shape \(1, 2, 2, 2, 4\)"):  # SU(2) colour on a U(1) target
        t.check_field(torch.zeros(1, 2, 2, 2, 4, dtype=torch.complex128))


def test_stochastic_logdet_gradient_is_unbiased(device) -> None:
    t = PFTarget(lk.U1, LAT, 0.2, even_odd=True, mu_lo=0.05, mu_hi=0.5, tol=1e-12)
    rng = lk.backends.rng(2, backend="torch", device=device)
    U = lk.U1.random(rng, (1, 2), LAT.shape).requires_grad_(True)
    n = 400
    grads = []
    for _ in range(n):
        s = t.logdet_gradient_surrogate(U, rng)
        assert float(s.detach().abs().max()) == 0.0  # zero value, gradient only
        grads.append(torch.autograd.grad(s.sum(), U)[0])
    g = torch.stack(grads)
    op = t.operator(U)
    M = dense_matrix(lambda v: op.normal(v), op.field_shape, like=U, support=op.support, batch_shape=op.batch_shape)
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device)
    exact = torch.logdet(M + 0.05 * eye).real - torch.logdet(M + 0.5 * eye).real
    ref, = torch.autograd.grad(exact.sum(), U)
    err = g.std(0) / math.sqrt(n)
    # every component within 5 standard errors of the mean (16 components: no false alarm at 5 sigma)
    assert bool(((g.mean(0) - ref).abs() <= 5 * err + 1e-12).all())
    assert float(ref.abs().max()) > 5 * float(err.max())  # the largest component is resolved at > 5 sigma: teeth


def _joint(device, targets):
    torch.manual_seed(0)
    jm = JointModel.build(Model(HaarPrior(lk.U1, LAT), u1_gauge_flow(LAT, 2, masks="checkerboard", hidden=(4,))),
                          targets, n_layers=2, n_hidden=4, n_pt=2)
    return jm.to(dtype=torch.float64, device=device)


def test_joint_log_q_recomputation_and_action(device) -> None:
    targets = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1])
    jm = _joint(device, targets)
    assert len({id(c.trunk) for c in jm.conditionals}) == 1
    n_trunk = sum(p.numel() for p in jm.trunk.parameters())
    assert sum(p.numel() for p in jm.parameters()) == sum(p.numel() for p in jm.flow.parameters()) + n_trunk + sum(
        p.numel() for c in jm.conditionals for p in c.flow.parameters())  # the shared trunk is counted once
    rng = lk.backends.rng(3, backend="torch", device=device)
    x, log_q = jm.sample(4, rng)
    assert isinstance(x, JointSample)
    assert torch.allclose(log_q, jm.log_prob(x), atol=1e-10)  # an independent inverse pass
    gauge = WilsonGaugeAction(lk.U1, LAT, 1.5)
    S = JointAction(gauge, targets)(x)
    ref = gauge.action(x.U) + sum(t.action(x.U, p) + t.ndof * math.log(math.pi) for t, p in zip(targets, x.phis))
    assert torch.allclose(S, ref, atol=1e-12)
    jm.set_objective("marginal")
    xm, lqm = jm.sample(4, rng)
    assert xm.phis == [] and torch.allclose(lqm, jm.log_prob(xm), atol=1e-10)
    with pytest.raises(ValueError, match="objective"):
        jm.set_objective("forward")


@pytest.mark.parametrize("objective", ["joint", "marginal", "conditional"])
def test_training_objectives(objective) -> None:
    targets = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1], mu0=1e-5)
    jm = _joint("cpu", targets)
    gauge = WilsonGaugeAction(lk.U1, LAT, 1.0)
    if objective == "marginal":
        jm.set_objective("marginal")
        action = MarginalAction(gauge, targets, lk.backends.rng(9, backend="torch"))
    else:
        action = JointAction(gauge, targets)
    if objective == "conditional":
        jm.freeze_marginal()
    before = {k: v.clone() for k, v in jm.state_dict().items()}
    Trainer(jm, action, TrainConfig(steps=3, batch_size=4, lr=1e-2)).train()
    after = jm.state_dict()
    marg = [k for k in before if k.startswith("flow.")]
    cond = [k for k in before if k.startswith("conditionals.") and "head" in k]
    changed = lambda keys: any(not torch.equal(before[k], after[k]) for k in keys)  # noqa: E731
    assert changed(marg) == (objective != "conditional")
    assert changed(cond) == (objective != "marginal")


def test_pseudo_marginal_weights_converge_to_the_marginal(device) -> None:
    """log w_Npf(U) -> log w_marginal(U) as N_pf grows (eq. 43 -> eq. 19); joint weights recomputed by hand."""
    targets = monomial_targets(lk.U1, LAT, 0.1, even_odd=True, hasenbusch_mus=[0.1])
    jm = _joint(device, targets)
    gauge = WilsonGaugeAction(lk.U1, LAT, 1.0)
    w = pf_weights(jm, gauge, targets, 16, lk.backends.rng(4, backend="torch", device=device), n_pf=256, dense=True)
    dev = {k: float((v - w.log_w_marginal).abs().mean()) for k, v in w.log_w.items()}
    assert dev[256] < dev[16] < dev[1]
    # at kappa = 0.1 the conditional weights have a relative std of O(1) at most: 256 draws leave ~0.1
    assert dev[256] < 0.1
    with pytest.raises(ValueError, match="n_pf=0"):
        pf_weights(jm, gauge, targets, 4, lk.backends.rng(0, backend="torch", device=device), n_pf=0)
    # the N_pf = 1 weights are the joint weights of eq. (40)
    rng = lk.backends.rng(6, backend="torch", device=device)
    w1 = pf_weights(jm, gauge, targets, 4, rng, n_pf=1)
    rng = lk.backends.rng(6, backend="torch", device=device)
    x, log_q = jm.sample(4, rng)
    ref = -JointAction(gauge, targets)(x) - log_q
    assert torch.allclose(w1.log_w_joint, ref, atol=1e-9)


def test_fit_ess_npf() -> None:
    ns = [1, 2, 4, 8, 16]
    e_inf, C = fit_ess_npf(ns, [0.35 / (1 + 3.0 / n) for n in ns])
    assert e_inf == pytest.approx(0.35) and C == pytest.approx(3.0)
    with pytest.raises(ValueError, match="two different"):
        fit_ess_npf([4, 4], [0.1, 0.1])
