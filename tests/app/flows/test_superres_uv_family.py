"""The flow-model family ``model.coupling = "superres_uv"`` (super-resolving flows, UV-matching ladder of App. A):
configuration keys and refusals, the model it builds, a tiny ladder as the train job (files, global step count,
levels) with the sample job at the learned fine couplings, and a job killed inside the second level resuming
bit-identically (level checkpoints; every random number comes from generators stored in them)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from latticekit.app.cli import train_command
from latticekit.app.config import FlowConfig, read_toml
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.summary import flow_summary
from latticekit.app.flows.train import run_training, train_job
from latticekit.app.run import run_job
from latticekit.exact import free_scalar_susceptibility
from latticekit.flows.superres import UVMatchingModel
from latticekit.testing import assert_close
from latticekit.utils import ConfigError


def cfg(shape=(8, 8), **model) -> dict:
    m = {"coupling": "superres_uv", "n_layers": 2, "log_z_samples": 8, "hmc_traj": 2, "n_basis": 2, "n_time": 2,
         "bond_basis": 2, "bond_time": 2, "kernel_size": 2, "retrain_steps": 6, "check_every": 2, "patience": 1,
         "min_delta": 1.0, "scan_points": 5}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.02}, "model": m,
            "train": {"steps": 2, "batch_size": 4, "lr": 1e-2, "checkpoint_every": 1, "eval_batch_size": 8},
            "sample": {"n": 32, "batch": 16}}


@pytest.mark.parametrize("patch, match", [
    ({"learn": ["mass"]}, "model.learn"),
    ({"lr_factor": 0.0}, "model.lr_factor"),
    ({"scan_points": 2}, "model.scan_points"),
    ({"patience": 0}, "model.patience"),
    ({"n_layers": 3}, "model.n_layers: 3 doublings"),
    # the first doubling acts on 4x4: a 8-wide kernel's radius 4 wraps onto the site (kernel_size <= 7)
    ({"kernel_size": 8}, r"model.kernel_size: 8 is too large for the smallest lattice the CNFs act on, \[4, 4\]"),
])
def test_config_refusals(patch: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(**patch))


def test_distributed_training_is_refused(tmp_path) -> None:
    from latticekit.app.flows.distributed import train_distributed

    with pytest.raises(ConfigError, match="one process"):  # before any process starts
        train_distributed(cfg(), out=tmp_path, nprocs=2)
    with pytest.raises(ConfigError, match="one process"):
        run_training(FlowConfig.from_dict(cfg()), tmp_path, device=None, fresh=True, progress=False,
                     distributed=True)


def test_built_model() -> None:
    model, _action, _lat = build_flow(FlowConfig.from_dict(cfg(coarse_kappa=0.18)))
    assert isinstance(model, UVMatchingModel) and model.coarse_shape == (2, 2) and model.fine_shape == (8, 8)
    assert model.prior.couplings.learn == () and float(model.prior.couplings.kappa) == 0.18  # fixed coarse theory
    assert model.target.couplings.learn == ("kappa",) and float(model.target.couplings.kappa.detach()) == 0.2
    assert model.flows[0].flow.kernel_size == 2
    # the defaults: the 5x5 window and Gerdes et al.'s initialisation (the best measured UV recipe, benchmarks/README.md)
    default = FlowConfig.from_dict({**cfg(), "model": {"coupling": "superres_uv"}}).model.variant
    assert (default.kernel_size, default.init) == (5, "gerdes")


def test_ladder_job_and_sample_at_the_learned_coupling(tmp_path) -> None:
    res = train_job(cfg(), out=tmp_path, progress=False)
    levels = json.loads((tmp_path / "uv_levels" / "uv_levels.json").read_text())["levels"]
    assert [e["lattice"] for e in levels] == [[4, 4], [8, 8]]
    # level 2 stops early: min_delta = 1 cannot be met, patience 1 -> after its second check (step 4)
    assert [e["steps"] for e in levels] == [2, 4] and res["steps"] == 6
    lines = [json.loads(s) for s in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 2, 3, 4, 5, 6] and [m["level"] for m in lines] == [1, 1, 2, 2, 2, 2]
    assert [m["level_step"] for m in lines if "eval_ess" in m] == [2, 4]
    # the final evaluation: other draws than the last scan's, at the same (ESS-optimal) kappa
    assert res["fine_kappa"] == levels[-1]["kappa"] and res["ess_n"] == 8 and res["eval"]["eval_ess"] == res["ess"]
    # log mean w is log Z_fine - log Z_coarse (the coarse prior lacks 1/Z_coarse): named so; lam != 0, no exact
    # value, and the KL is the trainer's estimate (no log Z_fine + loss)
    assert not {"log_z_estimate", "log_z_exact", "eval_log_z_estimate"} & (set(res) | set(res["eval"]))
    assert res["log_z_ratio_estimate"] == res["eval"]["eval_log_z_ratio_estimate"]
    assert res["log_z_ratio_exact"] is None and res["kl_log_z"] == "estimate"
    assert res["kl"] == res["eval"]["eval_kl_estimate"]
    for name in ("checkpoint.pt", "train.json", "config.json", "train.png"):
        assert (tmp_path / name).exists(), name
    # the reference the job wrote: HMC of the fine theory at the learned couplings, accepted by --compare
    ref = read_toml(tmp_path / "reference.toml")
    assert ref["action"] == {"kind": "phi4", "kappa": res["fine_kappa"], "lam": 0.02}
    ref["sampler"].update(chains=2, thermalization=10, measurements=20)
    hmc = run_job(ref, out=tmp_path / "hmc", progress=False, echo=False)
    s = sample_job(tmp_path, n=32, batch=16, reference=hmc)
    assert s["fine_kappa"] == res["fine_kappa"] and s["fine_lam"] == 0.02 and s["proposal_ess_n"] == 32
    wrong = {**hmc, "config": {**hmc["config"], "action": {**hmc["config"]["action"], "kappa": 0.2}}}
    with pytest.raises(ConfigError, match="action.kappa"):  # a run at the configured (not learned) kappa
        sample_job(tmp_path, n=32, batch=16, reference=wrong)
    # the commands' texts: the finished ladder reruns as a resumption; the summary compares at the learned kappa
    text = train_command(cfg(), out=tmp_path, quiet=True)
    assert "trained 6 steps (resumed from step 6)" in text and "ESS" in text
    # eval_batch_size draws the ladder's coupling scans and early stopping, train.steps is its first level's
    # length: a resumption with either changed was accepted (another learned kappa; steps ignored; user probe)
    for key, value in (("eval_batch_size", 16), ("steps", 3)):
        changed = cfg()
        changed["train"][key] = value
        with pytest.raises(ConfigError, match=rf"train\.{key} .* -> {value} \(model.coupling = 'superres_uv' depends"):
            train_job(changed, out=tmp_path, progress=False)
    table = flow_summary(tmp_path, sample=s, hmc=hmc)
    assert f"{res['fine_kappa']:.4g}"[:5] in table["theory"], table["theory"]
    assert any(r["reference_kind"] == "hmc" for r in table["rows"])
    assert s["observables"] and all(e["value"] == e["value"] and e["error"] >= 0 for e in s["observables"].values())


def test_free_theory_is_sampled_and_checked_at_the_learned_kappa(tmp_path, dense_free_log_z) -> None:
    """lam = 0: the sample job's exact free-theory values are those of the learned kappa (not action.kappa), and
    the flow-MCMC chain agrees with them. 2x2 -> 4x4 with a tiny CNF trained for 4 steps (acceptance ~0.3) and
    3000 Metropolis steps: the exact susceptibility within 4 Gamma-method errors (autocorrelation-corrected),
    resolved to 10%; the exact values at the configured and the learned kappa differ by more than that."""
    # init and noise width as before 2026-12-06: with them this tiny flow's scan moves kappa far enough from 0.2
    # (with the new defaults it stays within 17% of the configured susceptibility, too close to resolve here)
    d = cfg((4, 4), n_layers=1, retrain_steps=0, scan_points=11, init="normal", noise_width="pooled")
    d["action"]["lam"] = 0.0
    d["train"].update(steps=4, batch_size=32)
    res = train_job(d, out=tmp_path, progress=False)
    assert res["fine_kappa"] != 0.2
    # train.json: the exact log Z_fine(learned kappa) - log Z_coarse(0.2) of the free theories, from dense matrices,
    # and the exact KL with it
    exact = dense_free_log_z((4, 4), res["fine_kappa"]) - dense_free_log_z((2, 2), 0.2)
    assert_close(torch.tensor(res["log_z_ratio_exact"], dtype=torch.float64), torch.tensor(exact, dtype=torch.float64),
                 rtol=1e-12, atol=0.0)
    assert res["kl_log_z"] == "exact" and res["kl"] == res["log_z_ratio_exact"] + res["eval"]["eval_loss"]
    s = sample_job(tmp_path, n=3000, batch=1000)
    chi = s["observables"]["susceptibility"]
    exact = free_scalar_susceptibility((4, 4), kappa=res["fine_kappa"])
    assert chi["exact"] == exact and abs(exact - free_scalar_susceptibility((4, 4), kappa=0.2)) > 0.2 * exact
    assert abs(chi["value"] - exact) < 4 * chi["error"] and chi["error"] < 0.1 * exact


def test_killed_inside_level_two_resumes_bit_identically(killed_and_resumed) -> None:
    full, resumed, res = killed_and_resumed(cfg(), 3)  # level 1 has 2 steps: the kill is in level 2's step 4
    assert res["steps"] == 6
    for k, v in full["model"].items():
        w = resumed["model"][k]
        if isinstance(v, torch.Tensor):
            assert bool((v == w).all()), k
    assert json.dumps(full["config"]["uv_levels"]) == json.dumps(resumed["config"]["uv_levels"])


def test_non_finite_loss_keeps_the_level_checkpoints(tmp_path, monkeypatch) -> None:
    """A NaN in level 2 stops the job with the stopped status in train.json; level 1 stays finished and the rerun
    (without the NaN) continues from the level-2 checkpoint."""
    from latticekit.flows import Trainer
    from latticekit.flows.train import NonFiniteLossError

    original = Trainer.train_step

    def nan_at_level_two(self: Trainer) -> Any:
        if self.model.fine_shape == (8, 8) and self.step == 1:
            raise NonFiniteLossError("loss is nan")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", nan_at_level_two)
    with pytest.raises(NonFiniteLossError):
        train_job(cfg(), out=tmp_path, progress=False)
    assert json.loads((tmp_path / "train.json").read_text())["status"].startswith("stopped")
    assert [e["level"] for e in json.loads((tmp_path / "uv_levels" / "uv_levels.json").read_text())["levels"]] == [1]
    assert (tmp_path / "uv_levels" / "level_2.pt").exists() and not (tmp_path / "checkpoint.pt").exists()
    monkeypatch.setattr(Trainer, "train_step", original)
    assert train_job(cfg(), out=tmp_path, progress=False)["resumed_from_step"] == 3
