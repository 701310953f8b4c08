"""UV-matching (App. A of the super-resolving flows paper): the learnable fine-lattice target (eqs. 31-36), the
ESS-optimal coupling (Fig. 8) and the iterated, retrained transformation with early stopping (Figs. 7, 9).

References: the exact free theory (``latticekit.exact``, conftest ``free_theory``) for the KL gradient in the
fine couplings; a direct recomputation of the ESS with the library's phi^4 action at every scanned coupling; an
uninterrupted ladder for the resumed one (bit-identical on CPU).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.actions.phi4 import phi4_action
from latticekit.analysis import ess as kish
from latticekit.flows import TrainConfig, Trainer
from latticekit.flows.superres import (
    CoarseTheoryPrior,
    LearnableTargetAction,
    LocalCNF,
    LogZGradient,
    Phi4Couplings,
    RectangularFlow,
    UVLadderConfig,
    UVMatchingModel,
    ZeroSumNoise,
    best_coupling,
    hmc_sampler,
    uv_ladder,
)
from latticekit.testing import assert_close, randomize_parameters

F64 = torch.float64


def _trng(seed: int, device: str = "cpu") -> Any:
    return lk.backends.rng(seed, backend="torch", device=device)


def _model(kappa_fine: float, *, levels: int = 1, cnf: bool = False, seed: int = 0) -> UVMatchingModel:
    """A 2x2 coarse theory at kappa = 0.2, lam = 0.01 (fixed, HMC) and ``levels`` doublings with a learnable
    fine kappa; the CNFs (optional) are tiny and drawn from a forked torch generator."""
    coarse = lk.Lattice((2, 2))
    prior = CoarseTheoryPrior(coarse, Phi4Couplings(0.2, 0.01, learn=()), sampler=hmc_sampler(n_traj=3))
    flows, shape = [], (2, 2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(levels):
            fine = tuple(2 * n for n in shape)
            F = LocalCNF(fine, n_basis=2, n_time=2, bond_basis=2, bond_time=2, kernel_size=2) if cnf else None
            flows.append(RectangularFlow(shape, ZeroSumNoise(2, nd=2, sigma=0.6, dtype=F64), F))
            shape = fine
    lat = lk.Lattice(shape)
    c = Phi4Couplings(kappa_fine, 0.01, learn=("kappa",))
    target = LearnableTargetAction(lat, c, LogZGradient(c, lat, hmc_sampler(n_traj=5), 64), seed=seed + 1)
    return UVMatchingModel(prior, flows, target).to(F64)


def test_target_loss_gradient_is_the_kl_gradient(device: str, free_theory: Any) -> None:
    """d/dkappa mean S[c](x) through the target = mean dS/dkappa(x) + d log Z/dkappa: the kappa derivative of the
    reverse KL (eqs. 31-34) on any batch x; compared with the exact free theory's log Z derivative."""
    lat = lk.Lattice(free_theory.shape)
    c = Phi4Couplings(0.2, 0.0, learn=("kappa",)).to(device)
    target = LearnableTargetAction(lat, c, LogZGradient(c, lat, free_theory.sampler(3, device), 4000), seed=5)
    x = 0.8 * _trng(4, device).normal((500,) + free_theory.shape).to(F64)  # stands in for flow draws
    S = target.action(x)
    assert_close(S.detach(), phi4_action(x, lat, 0.2, 0.0), rtol=1e-14, atol=0)  # the surrogate adds zero
    (g,) = torch.autograd.grad(S.mean(), c.kappa)
    dS = c.action_gradients(x, lat)[:, 0].mean()
    est, err = target.log_z.estimate()  # the set the surrogate used (no generator: no new draw)
    assert_close(g, dS + est[0], rtol=1e-12, atol=1e-12)  # the same weighted sums
    exact = float(free_theory.exact_grad(0.2)[0])
    # independent exact samples: within 4 standard errors of the exact d log Z/dkappa (false alarm 6e-5);
    # teeth: the log Z term is resolved to 5% and dropping it moves g by ~20 sigma
    assert abs(float(g - dS) - exact) < 4 * float(err[0]) and float(err[0]) < 0.05 * abs(exact)
    # no autograd: the plain action, no draw, the generator untouched
    state, draws = target.rng.get_state().clone(), target.log_z.n_draws
    with torch.no_grad():
        c.kappa.fill_(0.5)  # far away: a recorded call would draw a new set (ESS/N < R_W)
        assert_close(target.action(x), phi4_action(x, lat, 0.5, 0.0), rtol=1e-14, atol=0)
    assert target.log_z.n_draws == draws and bool((target.rng.get_state() == state).all())


def test_best_coupling_is_the_exact_ess_maximum() -> None:
    """The linear-in-kappa shortcut against the ESS recomputed with the phi^4 action at every scanned kappa;
    the refined optimum is at least the grid maximum; the model's prior batch is restored."""
    model = _model(0.2)
    model.prior.sample(4, _trng(0))  # a persistent HMC batch exists
    before = {k: v.clone() for k, v in model.prior.get_extra_state().items() if isinstance(v, torch.Tensor)}
    res = best_coupling(model, 256, _trng(1), scan_width=0.08, scan_points=9)
    after = model.prior.get_extra_state()
    assert all(bool((after[k] == v).all()) for k, v in before.items())
    model.prior.set_extra_state(model.prior.get_extra_state())
    with torch.no_grad():
        x, log_q = model.sample(256, _trng(1))  # the same draws: same generator, same restored batch
    lat = model.target.lattice
    direct = [float(kish(-phi4_action(x, lat, k, 0.01) - log_q)) for k in res["kappa_grid"]]
    assert_close(torch.tensor(res["ess_grid"], dtype=F64), torch.tensor(direct, dtype=F64), rtol=1e-9, atol=1e-12)
    assert_close(torch.tensor(res["ess_center"], dtype=F64), kish(-phi4_action(x, lat, 0.2, 0.01) - log_q), rtol=1e-9, atol=0)
    assert res["ess"] >= max(direct) - 1e-12 and abs(res["kappa"] - 0.2) <= 0.08
    assert float(model.target.couplings.kappa.detach()) == 0.2  # not changed


def test_best_coupling_draws_in_evaluation_mode() -> None:
    """The scan integrates the CNFs at the evaluation tolerances also when called on a training model (as
    uv_ladder does between its training steps): with loose training tolerances (1e-2) set, a scan of the training
    model gives exactly the scan of the same model in eval mode, and the model's mode is restored."""
    model = _model(0.2, cnf=True, seed=5)
    for T in model.flows:
        T.flow = randomize_parameters(T.flow, seed=0, scale=0.3)   # away from the identity: tolerances matter
        T.flow.train_rtol = T.flow.train_atol = 1e-2
    model.eval()
    ref = best_coupling(model, 64, _trng(1), scan_points=5)
    assert not model.training and not model.flows[0].flow.training
    model.train()
    res = best_coupling(model, 64, _trng(1), scan_points=5)
    assert model.training and model.flows[0].flow.training   # the caller's mode is restored
    assert_close(torch.tensor(res["ess_grid"], dtype=F64), torch.tensor(ref["ess_grid"], dtype=F64), rtol=0, atol=0)
    assert res["kappa"] == ref["kappa"] and res["ess"] == ref["ess"]


def test_training_moves_the_fine_coupling_to_the_ess_optimum() -> None:
    """UV-matching's point (App. A): started far from the ESS-optimal fine kappa, training the couplings with the
    flow moves kappa towards that optimum and the target towards the flow's draws. The flow is only the noise width,
    so the ESS optimum barely moves during training; 40 Adam steps at lr 0.01 move kappa by up to ~0.4."""
    model = _model(0.05)
    ref = best_coupling(model, 2048, _trng(2), scan_width=0.3, scan_points=31, center=0.3)
    tr = Trainer(model, model.target, TrainConfig(steps=40, batch_size=128, lr=0.01, seed=3))
    tr.train()
    kappa = float(model.target.couplings.kappa.detach())
    assert abs(kappa - ref["kappa"]) < 0.5 * abs(0.05 - ref["kappa"]), (kappa, ref["kappa"])
    assert model.target.log_z.n_draws >= 2  # kappa moved beyond R_W: new log Z sets were drawn
    # the trained kappa fits the flow's draws better than the start: var log w (which the reverse KL bounds near
    # the optimum) on 4096 draws of the trained model, at the trained and at the initial kappa; a factor 2 is
    # far outside the draws' fluctuation (the relative error of a variance of 4096 draws is ~2-10%)
    with torch.no_grad():
        x, log_q = model.sample(4096, _trng(5))
        var = [float((-phi4_action(x, model.target.lattice, k, 0.01) - log_q).var()) for k in (kappa, 0.05)]
    assert var[0] < 0.5 * var[1], var


def _ladder(folder: Any, fail_at: tuple[int, int] | None = None) -> tuple[UVMatchingModel, dict[str, Any]]:
    model = _model(0.2, levels=2, cnf=True, seed=4)
    cfg = TrainConfig(steps=3, batch_size=8, lr=0.01, seed=6, checkpoint_every=1)
    ladder = UVLadderConfig(retrain_steps=8, check_every=2, patience=1, min_delta=1.0, eval_batch_size=16,
                            scan_width=0.05, scan_points=5)

    def on_step(level: int, m: dict[str, float]) -> None:
        if fail_at == (level, m["step"]):
            raise KeyboardInterrupt("killed")

    return model, uv_ladder(model, cfg, folder, ladder, on_step=on_step, seed=2)


def test_ladder_copies_retrains_with_early_stopping_and_resumes(tmp_path: Any) -> None:
    """2x2 -> 4x4 -> 8x8: level 2 starts from a copy of T_1, retrains T_2 only, stops early (min_delta = 1 cannot
    be met, patience 1: after the second check at step 4), takes the ESS-optimal kappa; a run killed inside
    level 2 and rerun with fresh objects ends bit-identical to the uninterrupted one."""
    model, res = _ladder(tmp_path / "a")
    levels = res["levels"]
    assert [e["level"] for e in levels] == [1, 2] and [e["lattice"] for e in levels] == [[4, 4], [8, 8]]
    assert levels[0]["steps"] == 3 and levels[1]["steps"] == 4 and levels[1]["early_stopped"]
    assert [h["step"] for h in levels[1]["history"]] == [2, 4]
    for e in levels:
        assert e["ess"] >= max(e["ess_grid"]) - 1e-12 and e["ess"] >= e["ess_at_learned"] - 1e-12
    assert "ess_start" not in levels[0] and 0 < levels[1]["ess_start"] <= 1  # the copy before retraining
    assert float(model.target.couplings.kappa.detach()) == levels[1]["kappa"]
    on_disk = json.loads((tmp_path / "a" / "uv_levels.json").read_text())["levels"]
    assert [e["kappa"] for e in on_disk] == [e["kappa"] for e in levels]
    # T_1 was frozen during level 2: it is the level-1 checkpoint's; T_2 moved away from that copy
    lvl1 = torch.load(tmp_path / "a" / "level_1.pt", weights_only=False)["model"]
    for k, v in model.flows[0].state_dict().items():
        assert bool((v == lvl1[f"flows.0.{k}"]).all()), k
    assert any(not bool((v == lvl1[f"flows.0.{k}"]).all()) for k, v in model.flows[1].state_dict().items())
    with pytest.raises(KeyboardInterrupt):
        _ladder(tmp_path / "b", fail_at=(2, 3))
    model_b, res_b = _ladder(tmp_path / "b")
    assert json.dumps(res_b["levels"]) == json.dumps(levels)
    for (k, v), w in zip(model.state_dict().items(), model_b.state_dict().values()):
        if isinstance(v, torch.Tensor):
            assert bool((v == w).all()), k


def test_refusals() -> None:
    lat, c = lk.Lattice((4, 4)), Phi4Couplings(0.2, 0.01, learn=("kappa",))
    with pytest.raises(ValueError, match="log_z"):
        LearnableTargetAction(lat, c)
    with pytest.raises(ValueError, match="log_z"):
        LearnableTargetAction(lk.Lattice((8, 8)), c, LogZGradient(c, lat, hmc_sampler(), 4))
    with pytest.raises(ValueError, match="seed"):
        LearnableTargetAction(lat, Phi4Couplings(0.2, 0.01, learn=()), seed=-1)
    model = _model(0.2)
    with pytest.raises(ValueError, match="target"):
        UVMatchingModel(model.prior, [], model.target)
    with pytest.raises(ValueError, match="n="):
        best_coupling(model, 1, _trng(0))
    for bad in ({"lr_factor": 0.0}, {"patience": 0}, {"scan_points": 2}, {"scan_width": -1.0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            UVLadderConfig(**bad).validate()
