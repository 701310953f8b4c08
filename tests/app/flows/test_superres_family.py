"""The flow-model family ``model.coupling = "superres"`` (super-resolving flows, IR-matching): configuration keys
and refusals, the model it builds, a tiny train + sample job, and a killed run resuming bit-identically (the
Langevin batch and the log Z sample set travel in the checkpoint; every random number comes from the trainer's
generator)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.train import train_job
from latticekit.flows.superres import CoarseTheoryPrior, SuperResolvingModel
from latticekit.flows.superres.local_cnf import DEFAULT_MAX_STEPS
from latticekit.testing import assert_close
from latticekit.utils import ConfigError


def cfg(shape=(4, 4), **model) -> dict:
    m = {"coupling": "superres", "n_layers": 1, "n_therm": 20, "n_langevin": 3, "log_z_samples": 16, "hmc_traj": 3,
         "n_basis": 2, "n_time": 2, "bond_basis": 2, "bond_time": 2}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.02}, "model": m,
            "train": {"steps": 3, "batch_size": 4, "lr": 1e-2, "checkpoint_every": 1, "eval_batch_size": 8},
            "sample": {"n": 32, "batch": 16}}


@pytest.mark.parametrize("patch, match", [
    ({"learn": ["mass"]}, "model.learn"),
    ({"n_layers": 2, "shape": (4, 6)}, "model.n_layers: 2 doublings"),
    ({"r_w": 1.5}, "model.r_w"),
    ({"langevin_step": 0.0}, "model.langevin_step"),
    ({"sigma": -1.0}, "model.sigma"),
    ({"ode_train_rtol": 0.0}, "model.ode_train_rtol"),
    ({"ode_max_steps": -1}, "model.ode_max_steps"),
    ({"init": "xavier"}, "model.init"),
    ({"noise_width": "mean"}, "model.noise_width"),
    ({"kernel_size": 9}, r"model\.kernel_size: 9 .* \[4, 4\] .* expected kernel_size <= 7"),
])
def test_config_refusals(patch: dict, match: str) -> None:
    shape = patch.pop("shape", (4, 4))
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(shape, **patch))


def test_family_is_refused_for_gauge_theories() -> None:
    d = cfg()
    d["action"] = {"kind": "wilson", "group": "U1", "beta": 1.0}
    with pytest.raises(ConfigError, match="model.coupling"):
        FlowConfig.from_dict(d)


def test_built_model() -> None:
    model, action, lat = build_flow(FlowConfig.from_dict(cfg((8, 8), n_layers=2)))
    assert isinstance(model, SuperResolvingModel) and isinstance(model.prior, CoarseTheoryPrior)
    assert model.coarse_shape == (2, 2) and model.fine_shape == (8, 8) and len(model.flows) == 2
    c = model.prior.couplings
    assert c.learn == ("kappa",) and float(c.kappa.detach()) == 0.2 and float(c.lam) == 0.02  # IR-matching starts equal
    fixed, _, _ = build_flow(FlowConfig.from_dict(cfg(learn=[], coarse_kappa=0.18)))
    assert fixed.prior.log_z is None and float(fixed.prior.couplings.kappa) == 0.18
    assert not [p for p in fixed.parameters() if p is fixed.prior.couplings.kappa]  # a buffer, not trained
    # the training tolerances reach every CNF; None (default) leaves training at the eval tolerances
    tol, _, _ = build_flow(FlowConfig.from_dict(cfg(ode_train_rtol=1e-6, ode_train_atol=1e-7)))
    assert [(T.flow.train_rtol, T.flow.train_atol) for T in tol.flows] == [(1e-6, 1e-7)]
    assert [(T.flow.train_rtol, T.flow.train_atol) for T in fixed.flows] == [(None, None)]
    # the bound on the solver steps reaches every CNF: None (default) keeps LocalCNF's, 0 removes it
    assert [T.flow.max_steps for T in fixed.flows] == [DEFAULT_MAX_STEPS]
    assert [T.flow.init for T in fixed.flows] == ["gerdes"]   # the default (benchmarks/README.md); "normal" on request
    normal, _, _ = build_flow(FlowConfig.from_dict(cfg(init="normal")))
    assert [T.flow.init for T in normal.flows] == ["normal"]
    for given, held in ((7, 7), (0, None)):
        bounded, _, _ = build_flow(FlowConfig.from_dict(cfg(ode_max_steps=given)))
        assert [T.flow.max_steps for T in bounded.flows] == [held]
    # default doublings: down to 4 sites per direction (the paper's coarsest lattice)
    deflt, _, _ = build_flow(FlowConfig.from_dict(cfg((16, 16), n_layers=None)))
    assert deflt.coarse_shape == (4, 4) and len(deflt.flows) == 2


def test_default_noise_width_is_the_spread_within_configurations(monkeypatch) -> None:
    """App. C's initial sigma, "the variance of the configurations phi on the coarse lattice": in the broken phase
    the configuration means (|M| ~ 3 on 4x4 at kappa = 0.30, lambda = 0.01) must not enter it."""
    import latticekit.flows.superres as sr

    drawn: list[torch.Tensor] = []
    real = sr.hmc_sampler

    def recording(**kw):   # the coarse draws coarse_std makes, kept to recompute sigma independently
        sampler = real(**kw)

        def draw(*a, **k):
            out = sampler(*a, **k)
            drawn.append(out.detach().clone())
            return out
        return draw

    monkeypatch.setattr(sr, "hmc_sampler", recording)
    d = cfg((8, 8), hmc_traj=30, learn=[])
    d["action"] = {"kind": "phi4", "kappa": 0.30, "lam": 0.01}
    model, _, _ = build_flow(FlowConfig.from_dict(d))
    sigma = float(model.flows[0].noise.sigma.detach())
    phi = [x for x in drawn if x.shape == (256, 4, 4)]
    assert len(phi) == 1, "coarse_std draws 256 coarse configurations once"
    x = phi[0].reshape(256, -1).numpy()
    within = float(np.sqrt(np.mean(x.var(axis=1))))
    assert_close(torch.tensor(sigma), torch.tensor(within), rtol=1e-12, atol=0.0, msg="sigma = spread within configs")
    # the pooled spread (3.1 at this point) is over five times larger: it would make the noise dominate
    assert float(x.std()) > 5 * sigma
    # noise_width = "pooled" (the default before 2026-12-06) takes the standard deviation of all values
    d["model"]["noise_width"] = "pooled"
    pooled, _, _ = build_flow(FlowConfig.from_dict(d))
    x = drawn[-1].reshape(256, -1).numpy()
    assert_close(pooled.flows[0].noise.sigma.detach().cpu(), torch.tensor(float(x.std(ddof=1)), dtype=torch.float64),
                 rtol=1e-12, atol=0.0, msg="sigma = pooled std")


def test_a_solve_past_ode_max_steps_stops_the_job_with_a_clear_error(tmp_path, capsys, write_toml) -> None:
    """A flow too stiff for the step bound ends the command with one line naming the option (exit status 1, the
    last checkpoint kept), not a traceback or, unbounded, the OOM killer."""
    from latticekit.app.cli import main

    path = write_toml(cfg(ode_max_steps=1), "job.toml")   # even the identity CNF takes several dopri5 steps
    assert main(["train", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latticekit: ODE solve failed: LocalCNF: the dopri5 solve")
    assert "max_num_steps exceeded (1>=1)" in err[0] and "[model] ode_max_steps" in err[0]


def test_too_large_kernel_is_refused_before_any_work(tmp_path, capsys, write_toml, monkeypatch) -> None:
    """A kernel wider than the first doubling's fine lattice allows (4x4: kernel_size <= 7) ends ``latticekit
    train`` with one line naming model.kernel_size (exit status 2) before the coarse HMC draws of the default
    sigma or any folder is made; the largest allowed kernel builds."""
    import latticekit.flows.superres as sr
    from latticekit.app.cli import main

    def no_hmc(**kw):
        raise AssertionError("coarse HMC ran before the configuration was refused")

    monkeypatch.setattr(sr, "hmc_sampler", no_hmc)
    out = tmp_path / "run"
    capsys.readouterr()
    assert main(["train", str(write_toml(cfg(kernel_size=9), "job.toml")), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("latticekit: invalid configuration: model.kernel_size: 9 is too "
                                               "large for the smallest lattice the CNFs act on, [4, 4]"), err
    assert not out.exists()
    monkeypatch.undo()
    model, _, _ = build_flow(FlowConfig.from_dict(cfg(kernel_size=7)))
    assert model.flows[0].flow.kernel_size == 7


def test_train_json_reports_the_log_z_ratio(tmp_path, dense_free_log_z) -> None:
    """The coarse prior's density is exp(-S_coarse) without 1/Z_coarse (eq. 33), so log mean w estimates
    log Z_fine - log Z_coarse at the trained coarse couplings: train.json names it so (no log_z_estimate, no
    log_z_exact to combine with the loss), with the exact ratio and KL of the free theory (lam = 0)."""
    d = cfg(n_therm=200, n_langevin=20)   # the evaluation's Langevin draws close to the coarse theory
    d["action"]["lam"] = 0.0
    d["train"].update(steps=4, batch_size=16, eval_batch_size=256)
    out = tmp_path / "run"
    res = train_job(d, out=out, progress=False)
    assert json.loads((out / "train.json").read_text()) == json.loads(json.dumps(res))
    assert not {"log_z_estimate", "log_z_exact", "eval_log_z_estimate"} & (set(res) | set(res["eval"]))
    ev = res["eval"]
    assert res["log_z_ratio_estimate"] == ev["eval_log_z_ratio_estimate"]
    assert res["log_z_ratio_error"] == ev["eval_log_z_ratio_error"] > 0
    assert "log Z_fine - log Z_coarse" in res["log_z_ratio_definition"]
    kappa_c = float(torch.load(out / "checkpoint.pt", weights_only=False)["model"]["prior.couplings.kappa"])
    assert kappa_c != 0.2   # trained: the ratio is at the learned coarse coupling
    exact = dense_free_log_z((4, 4), 0.2) - dense_free_log_z((2, 2), kappa_c)
    assert_close(torch.tensor(res["log_z_ratio_exact"], dtype=torch.float64), torch.tensor(exact, dtype=torch.float64),
                 rtol=1e-12, atol=0.0)
    assert res["kl_log_z"] == "exact" and res["kl"] == res["log_z_ratio_exact"] + ev["eval_loss"] > 0
    # the estimate is of that ratio (within 4 of its errors), not of log Z_fine, which is log Z_coarse ~ 3 away
    est, err = res["log_z_ratio_estimate"], res["log_z_ratio_error"]
    assert abs(est - exact) < 4 * err < abs(est - dense_free_log_z((4, 4), 0.2)), (est, err, exact)


def test_train_and_sample_job(tmp_path) -> None:
    out = tmp_path / "run"
    res = train_job(cfg(), out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 3
    # lam != 0: no exact ratio; the KL is the trainer's estimate (log mean w + eval_loss), the offset cancelling
    assert res["log_z_ratio_exact"] is None and "log_z_estimate" not in res and res["kl_log_z"] == "estimate"
    assert res["kl"] == res["eval"]["eval_kl_estimate"]
    s = sample_job(out, n=32, batch=16)
    data = json.loads((out / "sample.json").read_text())
    assert 0 < data["proposal_ess"] <= 1 and data["coarse_lam"] == 0.02  # lambda is not learned
    ck = torch.load(out / "checkpoint.pt", weights_only=False)["model"]["prior.couplings.kappa"]
    assert data["coarse_kappa"] == float(ck) != 0.2  # the trained coarse kappa, used by the sample chain
    assert {"abs_magnetization", "susceptibility", "action_density"} <= set(s["observables"])
    assert s["n"] == 32 and 0 < s["acceptance"] <= 1


def test_sample_job_killed_between_batches_resumes_bit_identically(tmp_path) -> None:
    """A real kill -9 after the first of two stored batches: the rerun restores the random state and the prior's
    HMC chains (which the second batch continues from the first) and writes the uninterrupted job's sample.json."""
    import os
    import subprocess
    import sys

    a, b = tmp_path / "a", tmp_path / "b"
    train_job(cfg(), out=a, progress=False)
    b.mkdir()
    for f in ("checkpoint.pt", "config.json"):
        (b / f).write_bytes((a / f).read_bytes())
    whole = sample_job(a, seed=2)
    r = subprocess.run([sys.executable, "-m", "latticekit.app.cli", "sample", str(b), "--seed", "2"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LATTICEKIT_KILL_AT": "sample:batch:1"})
    assert r.returncode == -9, r.stderr
    prog = b / ".flow_samples.npz.progress" / "proposals"
    assert sorted(p.name for p in prog.glob("batch_*")) == ["batch_000000.pt"]
    resumed = sample_job(b, seed=2)
    drop = {"wall_s", "output", "plot", "checkpoint"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}


def test_killed_run_resumes_bit_identically(killed_and_resumed) -> None:
    full, resumed, res = killed_and_resumed(cfg(), kill_at=2)
    assert res["resumed_from_step"] == 2 and res["steps"] == 3
    a, b = full["model"], resumed["model"]
    for k, v in a.items():
        if isinstance(v, torch.Tensor):
            assert torch.equal(v, b[k]), k
    ea, eb = a["prior._extra_state"], b["prior._extra_state"]
    assert torch.equal(ea["state"], eb["state"]) and torch.equal(ea["log_z"]["samples"], eb["log_z"]["samples"])
