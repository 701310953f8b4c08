"""Conditional and joint models (eqs. 20-22, 39-40) and pseudo-marginal weights (eqs. 42-46): log q against an
independent inverse pass, the joint action by hand, training under each objective, the N_pf weights converging to
the marginal weights computed with the dense determinant, the ESS(N_pf) fit of eq. (45).

The monomial targets themselves are tested against dense matrices in ``test_targets.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.analysis import ess as kish
from latticekit.flows import HaarPrior, Model, TrainConfig, Trainer, u1_gauge_flow
from latticekit.flows.pseudofermion import (
    JointAction,
    JointModel,
    JointSample,
    MarginalAction,
    fit_ess_npf,
    fit_npf_ratio,
    monomial_targets,
    pf_weights,
)
from latticekit.testing import assert_close

LAT = lk.Lattice((2, 4))


def _joint(device: str, targets: list) -> JointModel:
    with torch.random.fork_rng(devices=[]):  # initial parameters from a fixed seed, global state restored
        torch.manual_seed(0)
        jm = JointModel.build(Model(HaarPrior(lk.U1, LAT), u1_gauge_flow(LAT, 2, masks="checkerboard", hidden=(4,))),
                              targets, n_layers=2, n_hidden=4, n_pt=2)
    return jm.to(dtype=torch.float64, device=device)


def test_joint_log_q_recomputation_and_action(device: str) -> None:
    targets = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1])
    jm = _joint(device, targets)
    assert len({id(c.trunk) for c in jm.conditionals}) == 1
    n_trunk = sum(p.numel() for p in jm.trunk.parameters())
    assert sum(p.numel() for p in jm.parameters()) == sum(p.numel() for p in jm.flow.parameters()) + n_trunk + sum(
        p.numel() for c in jm.conditionals for p in c.flow.parameters())  # the shared trunk is counted once
    rng = lk.backends.rng(3, backend="torch", device=device)
    x, log_q = jm.sample(4, rng)
    assert isinstance(x, JointSample)
    assert_close(jm.log_prob(x), log_q, atol=1e-10, rtol=0)  # an independent inverse pass, float64 round trip
    gauge = WilsonGaugeAction(lk.U1, LAT, 1.5)
    S = JointAction(gauge, targets)(x)
    ref = gauge.action(x.U) + sum(t.action(x.U, p) + t.ndof * math.log(math.pi) for t, p in zip(targets, x.phis))
    assert_close(S, ref, atol=1e-12, rtol=0)  # the same CG solves, summed in another order
    jm.set_objective("marginal")
    xm, lqm = jm.sample(4, rng)
    assert xm.phis == []
    assert_close(jm.log_prob(xm), lqm, atol=1e-10, rtol=0)
    with pytest.raises(ValueError, match="objective"):
        jm.set_objective("forward")


@pytest.mark.parametrize("objective", ["joint", "marginal", "conditional"])
def test_training_objectives(objective: str) -> None:
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


def test_trainer_refuses_a_joint_action_of_other_variables() -> None:
    """An even/odd model trained against full-lattice targets: the pseudofermions have the same shape, so the
    training ran silently against the wrong density. The Trainer now asks the action (``check_model``) before
    any work; the training regulator (another shift) is allowed."""
    eo = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1])
    jm = _joint("cpu", eo)
    gauge = WilsonGaugeAction(lk.U1, LAT, 1.0)
    full = monomial_targets(lk.U1, LAT, 0.2, even_odd=False, hasenbusch_mus=[0.1])
    with pytest.raises(ValueError, match=r"^targets\[0\]: PFTarget\(U\(1\).*even_odd=False.* has other pseudofermion"):
        Trainer(jm, JointAction(gauge, full), TrainConfig(steps=1, batch_size=2))
    with pytest.raises(ValueError, match=r"^targets: 1 monomials for a model with 2 conditional models"):
        Trainer(jm, JointAction(gauge, eo[:1]), TrainConfig(steps=1, batch_size=2))
    with pytest.raises(TypeError, match=r"^model=Model: a JointAction needs a JointModel"):
        Trainer(Model(jm.prior, jm.flow), JointAction(gauge, eo), TrainConfig(steps=1, batch_size=2))
    regulated = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1], mu0=1e-5)
    Trainer(jm, JointAction(gauge, regulated), TrainConfig(steps=1, batch_size=2))


def test_pseudo_marginal_weights_converge_to_the_marginal(device: str) -> None:
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
    # bools and fractions were truncated (n_pf=2.9 ran with 2); targets of other variables gave wrong weights
    for kw, match in (({"n_pf": 2.9}, r"^n_pf=2.9: expected an integer >= 1"), ({"n_pf": True}, r"^n_pf=True"),
                      ({"batch_size": 2.5}, r"^batch_size=2.5"), ({"n": True}, r"^n=True")):
        with pytest.raises(ValueError, match=match):
            pf_weights(jm, gauge, targets, **{"n": 4, **kw, "rng": lk.backends.rng(0, backend="torch")})
    full = monomial_targets(lk.U1, LAT, 0.1, even_odd=False, hasenbusch_mus=[0.1])
    with pytest.raises(ValueError, match=r"^targets\[0\]: PFTarget\(U\(1\), .*even_odd=False.* other pseudofermion "
                                         r"variables than the model's"):
        pf_weights(jm, gauge, full, 4, lk.backends.rng(0, backend="torch", device=device))
    # another kappa (reweighting) keeps the variables and is accepted
    other_kappa = monomial_targets(lk.U1, LAT, 0.12, even_odd=True, hasenbusch_mus=[0.1])
    assert len(pf_weights(jm, gauge, other_kappa, 2, lk.backends.rng(0, backend="torch", device=device)).U) == 2
    # the N_pf = 1 weights are the joint weights of eq. (40)
    rng = lk.backends.rng(6, backend="torch", device=device)
    w1 = pf_weights(jm, gauge, targets, 4, rng, n_pf=1)
    rng = lk.backends.rng(6, backend="torch", device=device)
    x, log_q = jm.sample(4, rng)
    ref = -JointAction(gauge, targets)(x) - log_q
    assert_close(w1.log_w_joint, ref, atol=1e-9, rtol=0)  # CG tolerance 1e-10 on O(10) actions


def test_pseudofermion_draws_reuse_the_layer_parameters(device: str) -> None:
    """``sample_conditionals`` computes each layer's U-only parameters once for its N_pf draws (a cached
    PFContext) and returns the same numbers as N_pf separate draws with the uncached context."""
    targets = monomial_targets(lk.U1, LAT, 0.2, even_odd=True, hasenbusch_mus=[0.1])
    jm = _joint(device, targets)
    U, _ = jm.sample_marginal(3, lk.backends.rng(1, backend="torch", device=device))
    heads = [layer.head for c in jm.conditionals for layer in c.flow.layers]
    calls = []
    hooks = [h.register_forward_hook(lambda m, i, o: calls.append(id(m))) for h in heads]
    try:
        with torch.no_grad():
            phis, lqs = jm.sample_conditionals(U, lk.backends.rng(2, backend="torch", device=device), 4)
            assert sorted(calls) == sorted(id(h) for h in heads)  # once per layer, not once per draw
            calls.clear()
            ctx = jm.trunk.context(U)
            assert ctx.cache is None
            rng = lk.backends.rng(2, backend="torch", device=device)
            for c, ph, lq in zip(jm.conditionals, phis, lqs):
                for k in range(4):
                    p, l = c.sample(U, rng, ctx)
                    assert torch.equal(p, ph[k]) and torch.equal(l, lq[k])
            assert len(calls) == 4 * len(heads)
        calls.clear()
        jm.sample_conditionals(U, lk.backends.rng(2, backend="torch", device=device), 2)
        assert len(calls) == 2 * len(heads)  # with autograd on (training, activation checkpointing) no cache
    finally:
        for h in hooks:
            h.remove()


def test_fit_ess_npf() -> None:
    ns = [1, 2, 4, 8, 16]
    e_inf, C = fit_ess_npf(ns, [0.35 / (1 + 3.0 / n) for n in ns])
    assert_close(torch.tensor([e_inf, C], dtype=torch.float64), [0.35, 3.0], rtol=1e-8, atol=0)  # noiseless data: exact fit
    with pytest.raises(ValueError, match="two different"):
        fit_ess_npf([4, 4], [0.1, 0.1])


def test_npf_ratio_follows_appendix_a() -> None:
    # App. A / eq. (45) with ESS(inf) = the marginal ESS of the same fields: w_Npf = w_marg * mean_k r_k with
    # E[r|U] = 1 and Var(r|U) = v gives ESS(N_pf) / ESS_marg = 1 / (1 + v/N_pf) and C = v. Log-normal weights
    # (sigma 0.5 for the gauge fields, 0.5 for each pseudofermion draw: v = e^0.25 - 1), 200k fields, fixed seed:
    # the Kish ESS ratios scatter by ~0.2% there (measured 0.4% at most), hence rtol 1%; C from four ratios at 5%.
    rng = np.random.default_rng(7)
    lm = rng.normal(0.0, 0.5, 200_000)
    log_r = rng.normal(-0.125, 0.5, (8, lm.size))
    v = math.exp(0.25) - 1
    ns = [1, 2, 4, 8]
    ratio = [float(kish(lm + np.log(np.mean(np.exp(log_r[:n]), axis=0)))) / float(kish(lm)) for n in ns]
    assert_close(torch.tensor(ratio, dtype=torch.float64), [1 / (1 + v / n) for n in ns], rtol=0.01, atol=0)
    assert_close(torch.tensor(fit_npf_ratio(ns, ratio), dtype=torch.float64), v, rtol=0.05, atol=0)
    assert_close(torch.tensor(fit_npf_ratio(ns, [1 / (1 + 2.5 / n) for n in ns]), dtype=torch.float64), 2.5,
                 rtol=1e-12, atol=0)  # noiseless data: exact
    with pytest.raises(ValueError, match="positive ratios"):
        fit_npf_ratio([1, 2], [0.5, 0.0])


def test_a_trunk_of_another_lattice_or_group_is_refused_at_build() -> None:
    """A context trunk built for another lattice or group failed only at the first sample, with a shape error about
    U (user probe); the conditional model now refuses it when built."""
    from latticekit.flows.pseudofermion import ConditionalPFModel, PFContextTrunk, PFTarget
    target = PFTarget(lk.U1, LAT, 0.1)
    for trunk in (PFContextTrunk(lk.U1, lk.Lattice((4, 4)), 2), PFContextTrunk(lk.SU(2), LAT, 2)):
        with pytest.raises(ValueError, match=r"^trunk: built for .* but the target is U\(1\) on"):
            ConditionalPFModel.build(target, trunk, n_layers=2)
    with pytest.raises(ValueError, match=r"^n_pt=0: expected an integer >= 1"):
        ConditionalPFModel.build(target, PFContextTrunk(lk.U1, LAT, 2), n_layers=2, n_pt=0)
    assert len(ConditionalPFModel.build(target, PFContextTrunk(lk.U1, LAT, 2), n_layers=2).flow.layers) == 2
