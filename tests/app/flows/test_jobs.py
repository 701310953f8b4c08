"""Flow jobs: configuration schema, training files and plots, kill/resume determinism, NaN stop, mismatch
refusal, flow MCMC output files, histograms and the summary against exact values."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import load_trained, sample_job
from latticekit.app.flows.summary import flow_summary, format_flow_summary
from latticekit.app.flows.train import train_job
from latticekit.flows import CheckpointMismatchError, NonFiniteLossError
from latticekit.flows.train import Trainer
from latticekit.testing import assert_close
from latticekit.utils import ConfigError


def phi4_cfg(**train) -> dict:
    t = {"steps": 6, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 2, "seed": 3, "eval_batch_size": 16}
    t.update(train)
    return {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.1},
            "model": {"n_layers": 2, "hidden": [4]}, "train": t, "sample": {"n": 64, "batch": 32}}


def u1_cfg(beta: float = 1.0, steps: int = 4) -> dict:
    return {"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "U1", "beta": beta},
            "model": {"n_layers": 4, "hidden": [4], "bins": 4},
            "train": {"steps": steps, "batch_size": 32, "lr": 1e-2, "checkpoint_every": 10, "eval_batch_size": 64}}


# -- schema --------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch, key", [
    ({"train": {"lrate": 1e-3}}, "train.lrate"),
    ({"trainer": {}}, "[trainer]"),
    ({"train": {"steps": "10"}}, "train.steps"),
    ({"train": {"steps": 1.5}}, "train.steps"),
    ({"train": {"lr": 0}}, "train.lr"),
    ({"train": {"optimizer": "sgd"}}, "train.optimizer"),
    ({"train": {"schedule": "linear"}}, "train.schedule"),
    ({"train": {"clip_norm": -1.0}}, "train.clip_norm"),
    ({"train": {"dtype": "float16"}}, "train.dtype"),
    ({"train": {"context_dtype": "float16", "dtype": "float32"}}, "train.context_dtype"),
    ({"train": {"context_dtype": "bfloat16"}}, "train.context_dtype"),      # needs dtype = "float32"
    ({"train": {"eval_every": -1}}, "train.eval_every"),
    ({"train": {"checkpoint_every": True}}, "train.checkpoint_every"),
    ({"model": {"hidden": [8, 0]}}, "model.hidden"),
    ({"model": {"coupling": "plaquette"}}, "model.coupling"),
    ({"model": {"kernel_size": 2}}, "model.kernel_size"),
    ({"action": {"beta": 2.0}}, "action.beta"),               # not a phi4 parameter
    ({"action": {"kind": "ising"}}, "action.kind"),
    ({"action": {"lam": -0.1}}, "action.lam"),
    ({"lattice": {"shape": [5, 4]}}, "lattice.shape"),           # checkerboard needs even extents
    ({"sample": {"n": 1}}, "sample.n"),
    ({"train": {"steps": 0}}, "train.steps"),                  # a job of no step wrote a summary without a loss
    ({"train": {"eval_batch_size": 1}}, "train.eval_batch_size"),   # an ESS of one sample was reported as 1
    ({"train": {"schedule": "cosine", "lr": 1e-3, "min_lr": 0.1}}, "min_lr=0.1: expected at most lr"),
])
def test_config_errors_name_the_key(patch: dict, key: str) -> None:
    cfg = phi4_cfg()
    for sec, vals in patch.items():
        cfg.setdefault(sec, {}).update(vals)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        FlowConfig.from_dict(cfg)


def test_config_gauge_checks_and_defaults(tmp_path) -> None:
    with pytest.raises(ConfigError, match="lattice.shape"):
        FlowConfig.from_dict({"lattice": {"shape": [6, 6]}, "action": {"kind": "wilson"}})
    with pytest.raises(ConfigError, match="action.group"):
        FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "SO3"}})
    with pytest.raises(ConfigError, match="action.kappa"):
        FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "kappa": 0.1}})
    with pytest.raises(ConfigError, match="lattice.shape: required"):
        FlowConfig.from_dict({"action": {"kind": "wilson"}})
    cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}})
    assert (cfg.model.coupling, cfg.model.n_layers, cfg.train.clip_norm) == ("plaquette", 16, None)
    assert FlowConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()
    p = tmp_path / "bad.toml"
    p.write_text("[lattice]\nshape = [4, 4\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        FlowConfig.from_file(p)
    with pytest.raises(ConfigError, match="backend"):
        train_job(u1_cfg(), out=tmp_path / "x", backend="numpy", progress=False)


def test_example_configs_validate() -> None:
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[3] / "examples"
    for name in ("u1_2d_flow.toml", "phi4_2d_flow.toml"):
        cfg = FlowConfig.from_file(root / name)
        assert cfg.lattice.shape == [8, 8]


# -- training files and resumption ----------------------------------------------------------------
def _metrics(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _strip_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("time_s", "cpu_s")} for r in rows]


def test_train_writes_files_and_metrics(tmp_path) -> None:
    out = tmp_path / "run"
    res = train_job(phi4_cfg(eval_every=3, eval_batch_size=16), out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 6
    for f in ("config.json", "checkpoint.pt", "metrics.jsonl", "train.json"):
        assert (out / f).exists()
    rows = _metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "ess", "var_log_w", "lr", "grad_norm", "time_s", "cpu_s"} <= set(r) for r in rows)
    assert all(a["cpu_s"] <= b["cpu_s"] for a, b in zip(rows, rows[1:]))
    assert "eval_ess" in rows[2] and "eval_ess" not in rows[1]
    assert all(0 < r["ess"] <= 1 and math.isfinite(r["loss"]) for r in rows)
    # every ESS carries its N: the batch (8) per step, the evaluation's 16 samples, the final evaluation's
    assert all(r["ess_n"] == 8 for r in rows) and rows[2]["eval_ess_n"] == 16 and "eval_ess_n" not in rows[1]
    assert res["ess_n"] == 16 and res["eval"]["eval_ess_n"] == 16 and res["ess_definition"].startswith("Kish")
    # phi^4 has no exact log Z: KL with the estimate log mean w of the final evaluation's draws
    assert res["log_z_exact"] is None and res["kl_log_z"] == "estimate"
    assert_close(res["kl"], res["log_z_estimate"] + res["eval"]["eval_loss"], rtol=1e-12, atol=1e-12)
    assert res["kl"] >= 0 and {"eval_log_z_estimate", "eval_log_z_error", "eval_kl_estimate"} <= set(rows[2])
    # ESS and var log w are those of the batch's log-weights: rerun step 1 by hand
    cfg = FlowConfig.from_dict(phi4_cfg())
    model, action, _ = build_flow(cfg)
    model = model.to(torch.float64)
    x, log_q = model.sample(8, lk.backends.rng(3, backend="torch"))
    lw = (-action.action(x) - log_q).detach().numpy()
    assert_close(rows[0]["loss"], -lw.mean(), rtol=1e-12, atol=0)
    assert_close(rows[0]["ess"], float(lk.analysis.ess(lw)), rtol=1e-10, atol=0)
    assert_close(rows[0]["var_log_w"], float(np.var(lw, ddof=1)), rtol=1e-10, atol=0)
    # a finished run rerun does nothing more
    again = train_job(phi4_cfg(eval_every=3, eval_batch_size=16), out=out, progress=False)
    assert again["resumed_from_step"] == 6 and len(_metrics(out / "metrics.jsonl")) == 6


class _Killed(Exception):
    pass


def test_killed_run_resumes_bit_identically(tmp_path, monkeypatch) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"
    train_job(phi4_cfg(), out=full, progress=False)

    original = Trainer.train_step

    def dying(self):  # the process "dies" during step 5 (after the step-4 checkpoint)
        if self.step == 4:
            raise _Killed("SIGKILL")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(_Killed):
        train_job(phi4_cfg(), out=killed, progress=False)
    monkeypatch.setattr(Trainer, "train_step", original)
    assert [r["step"] for r in _metrics(killed / "metrics.jsonl")] == [1, 2, 3, 4]
    # simulate lines written after the last checkpoint, and a torn line, before the kill
    with (killed / "metrics.jsonl").open("a") as fh:
        fh.write(json.dumps({"step": 5, "loss": 0.0}) + "\n" + '{"step": 6, "lo')
    torch.save({"junk": 1}, tmp_path / "unused.pt")
    res = train_job(phi4_cfg(), out=killed, progress=False)
    assert res["resumed_from_step"] == 4 and res["steps"] == 6
    a = torch.load(full / "checkpoint.pt", weights_only=False)
    b = torch.load(killed / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 6
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert _strip_time(_metrics(full / "metrics.jsonl")) == _strip_time(_metrics(killed / "metrics.jsonl"))


def test_more_steps_continue_and_changed_config_is_refused(tmp_path) -> None:
    out = tmp_path / "run"
    train_job(phi4_cfg(steps=2), out=out, progress=False)
    res = train_job(phi4_cfg(steps=4), out=out, progress=False)          # steps may grow
    assert res["resumed_from_step"] == 2 and res["steps"] == 4
    with pytest.raises(ConfigError, match="train.lr"):
        train_job(phi4_cfg(steps=4, lr=0.5), out=out, progress=False)
    bigger = phi4_cfg(steps=4)
    bigger["lattice"]["shape"] = [6, 6]
    with pytest.raises(CheckpointMismatchError, match="lattice"):
        train_job(bigger, out=out, progress=False)
    res = train_job(bigger, out=out, progress=False, fresh=True)
    assert res["resumed_from_step"] is None and res["steps"] == 4


def test_fewer_steps_or_a_new_cosine_length_are_refused_on_resumption(tmp_path) -> None:
    out = tmp_path / "run"
    train_job(phi4_cfg(steps=4), out=out, progress=False)
    with pytest.raises(ConfigError, match="train.steps = 2: the run in .* has trained 4 steps already"):
        train_job(phi4_cfg(steps=2), out=out, progress=False)
    assert json.loads((out / "config.json").read_text())["train"]["steps"] == 4    # the run's own, not rewritten
    cos = tmp_path / "cos"
    train_job(phi4_cfg(steps=2, schedule="cosine"), out=cos, progress=False)
    with pytest.raises(ConfigError, match=r"train.steps 2 -> 4 with schedule = 'cosine'"):
        train_job(phi4_cfg(steps=4, schedule="cosine"), out=cos, progress=False)


def test_run_from_before_a_new_train_option_resumes(tmp_path) -> None:
    """A stored config.json without a [train] key added later (here ``compile``) resumes when the new
    configuration keeps that key's default, and is refused when it does not."""
    out = tmp_path / "old"
    train_job(phi4_cfg(steps=2), out=out, progress=False)
    conf = json.loads((out / "config.json").read_text())
    del conf["train"]["compile"]
    (out / "config.json").write_text(json.dumps(conf))
    res = train_job(phi4_cfg(steps=3), out=out, progress=False)
    assert res["resumed_from_step"] == 2 and res["steps"] == 3
    with pytest.raises(ConfigError, match="train.compile"):
        train_job(phi4_cfg(steps=4, compile=True), out=out, progress=False)


def test_context_dtype_reaches_the_trainer(tmp_path) -> None:
    """``[train] context_dtype = "bfloat16"``: the job trains with it, the checkpoint records it, and resuming
    without it is refused (it changes the trajectory)."""
    out = tmp_path / "bf16"
    cfg = u1_cfg(steps=2)
    cfg["train"].update(dtype="float32", context_dtype="bfloat16")
    assert train_job(cfg, out=out, progress=False)["steps"] == 2
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["config"]["train_config"]["context_dtype"] == "bfloat16"
    del cfg["train"]["context_dtype"]
    cfg["train"]["steps"] = 3
    with pytest.raises(ConfigError, match="train.context_dtype 'bfloat16' -> None"):
        train_job(cfg, out=out, progress=False)


def test_checkpoint_of_other_architecture_is_refused(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    train_job(phi4_cfg(steps=2), out=a, progress=False)
    other = phi4_cfg(steps=2)
    other["model"]["hidden"] = [6]
    train_job(other, out=b, progress=False)
    (b / "checkpoint.pt").write_bytes((a / "checkpoint.pt").read_bytes())   # foreign checkpoint, own config
    with pytest.raises(CheckpointMismatchError, match="different architecture"):
        train_job(other, out=b, progress=False)


def test_run_and_train_folders_are_not_mixed(tmp_path) -> None:
    """`latticekit train` into the folder of a `latticekit run` job, and the reverse, are refused before anything is
    written, also with fresh=True (which would otherwise delete only the job's own files beside the other's)."""
    from latticekit.app.run import run_job

    run_dir, train_dir = tmp_path / "run", tmp_path / "train"
    run_cfg = {"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0},
               "sampler": {"chains": 2, "thermalization": 2, "measurements": 2, "step_size": 0.2, "n_steps": 3},
               "output": {"checkpoint_every": 2, "plots": False}}
    run_job(run_cfg, out=run_dir, seed=1, progress=False, echo=False)
    train_job(phi4_cfg(steps=2), out=train_dir, progress=False)

    def snapshot(d):
        return {p.name: p.read_bytes() for p in sorted(d.iterdir())}

    before = snapshot(run_dir), snapshot(train_dir)
    for fresh in (False, True):
        with pytest.raises(ConfigError, match=r"holds the output of `latticekit run` \(state.npz, results.json, "
                                              r"ensemble.h5\); the train job"):
            train_job(phi4_cfg(steps=2), out=run_dir, fresh=fresh, progress=False)
        with pytest.raises(ConfigError, match=r"holds the output of `latticekit train` \(checkpoint.pt, "
                                              r"metrics.jsonl\); the run job"):
            run_job(run_cfg, out=train_dir, seed=1, fresh=fresh, progress=False, echo=False)
    assert (snapshot(run_dir), snapshot(train_dir)) == before


def test_nan_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    from latticekit.actions import Phi4Action

    original = Phi4Action.action
    calls = {"n": 0}

    def poisoned(self, phi):
        calls["n"] += 1
        s = original(self, phi)
        return s * float("nan") if calls["n"] > 5 else s

    monkeypatch.setattr(Phi4Action, "action", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(NonFiniteLossError, match=r"step 6.*last good checkpoint.*step 4"):
        train_job(phi4_cfg(), out=out, progress=False)
    summary = json.loads((out / "train.json").read_text())
    assert summary["status"].startswith("stopped") and summary["last_checkpoint_step"] == 4
    ck = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 4 and all(torch.isfinite(v).all() for v in ck["model"].values())
    assert [r["step"] for r in _metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5]


# -- sampling ------------------------------------------------------------------------------------
def test_sample_phi4_writes_npz_and_summary(tmp_path) -> None:
    out = tmp_path / "p"
    train_job(phi4_cfg(), out=out, progress=False)
    s = sample_job(out, n=100, seed=2)
    arrays, meta = lk.io.load_state(out / "flow_samples.npz")
    assert arrays["phi"].shape == (100, 4, 4) and meta["checkpoint_step"] == 6
    # stored observables agree with the stored configurations
    M = arrays["phi"].mean(axis=(1, 2))
    assert_close(arrays["obs_magnetization"], M, rtol=1e-12, atol=1e-15)
    # a rejected step repeats the previous configuration
    rej = np.flatnonzero(~arrays["accepted"])
    if rej.size:
        np.testing.assert_array_equal(arrays["phi"][rej], arrays["phi"][rej - 1])
    assert_close(s["acceptance"], arrays["accepted"].mean(), rtol=1e-6, atol=0)
    assert json.loads((out / "sample.json").read_text())["n"] == 100
    assert {"abs_magnetization", "susceptibility", "magnetization"} <= set(s["observables"])
    # same seed, same chain
    s2 = sample_job(out / "checkpoint.pt", n=100, seed=2, out_file=tmp_path / "again.npz")
    assert s2["observables"]["susceptibility"]["value"] == s["observables"]["susceptibility"]["value"]
    assert (tmp_path / "again.npz.json").exists()
    with pytest.raises(ConfigError, match=r"out_file: .*chain.h5'.* written as a NumPy .npz archive"):
        sample_job(out, n=100, seed=2, out_file=tmp_path / "chain.h5")
    # a chain whose longest rejection run exceeds 1/MIN_RUN_MULTIPLE of it has too few independent stretches for the
    # Gamma-method error: every entry is marked unreliable with the reason (a stuck superres chain was "reliable"
    # at 7 acceptances in 1536 steps; user probe). This 6-step flow's chain stays 23 steps on one configuration.
    import latticekit.app.flows.sample as sample_module

    run = s["acceptance_summary"]["longest_rejection_run"]
    assert run * sample_module.MIN_RUN_MULTIPLE > 100
    assert all(not e["reliable"] and f"for {run} of its 100 steps" in e["problem"] for e in s["observables"].values())
    with pytest.MonkeyPatch.context() as mp:     # the same chain under a rule it passes: the Gamma method's verdict
        mp.setattr(sample_module, "MIN_RUN_MULTIPLE", 1)
        s3 = sample_job(out, n=100, seed=2, out_file=tmp_path / "judged.npz")
    assert not any("independent stretches" in (e.get("problem") or "") for e in s3["observables"].values())


def test_sampling_an_unfinished_training_says_so(tmp_path) -> None:
    out = tmp_path / "p"
    train_job(phi4_cfg(steps=4), out=out, progress=False)
    (out / "train.json").unlink()          # as a killed training leaves it: checkpoints, no summary
    sample_job(out, n=64, seed=2)
    s = flow_summary(out)
    assert s["unfinished_at_step"] == 4 and s["flow"]["train_steps"] == 4
    assert "note: the training did not finish (no train.json): the flow sampled is its checkpoint of step 4" \
        in format_flow_summary(s)


def test_u1_flow_mcmc_matches_exact_and_summary(tmp_path) -> None:
    out = tmp_path / "u1"
    res = train_job(u1_cfg(beta=1.0, steps=30), out=out, progress=False)
    # KL against the exact log Z; the estimate log mean w of the same draws agrees within 5 of its errors
    assert res["kl_log_z"] == "exact" and res["log_z_exact"] == lk.exact.u1_2d_log_z(1.0, (4, 4))
    assert_close(res["kl"], res["log_z_exact"] + res["eval"]["eval_loss"], rtol=1e-12, atol=1e-12)
    assert res["kl"] > 0 and abs(res["log_z_estimate"] - res["log_z_exact"]) < 5 * res["eval"]["eval_log_z_error"]
    s = sample_job(out, n=2000, seed=5, batch=1000, store_every=10)
    with lk.io.Ensemble.open(out / "flow_ensemble.h5") as ens:
        assert len(ens) == 200 and ens.info(3)["step"] == 30 and ens.group.name == "U(1)" and ens.action_params == {"beta": 1.0}
        U = ens.read(7, backend="numpy")
        plaq = float(lk.observables.average_plaquette(U[None], lk.U1, lk.Lattice((4, 4)))[0])
        assert_close(plaq, ens.observable("plaquette")[7], rtol=0, atol=1e-12)
    exact = lk.exact.u1_2d_plaquette(1.0, (4, 4))
    p = s["observables"]["plaquette"]
    assert_close(p["exact"], exact, rtol=1e-6, atol=0)
    assert abs(p["value"] - exact) < 5 * p["error"] + 1e-3          # flow MCMC is exact in distribution
    # the reweighting estimate from the same 2000 independent proposals: also exact in expectation
    rw = p["reweighted"]
    assert 0 < rw["error"] < 0.05 and abs(rw["value"] - exact) < 5 * rw["error"]
    summ = flow_summary(out)
    rows = {r["observable"]: r for r in summ["rows"]}
    assert rows["plaquette"]["reference_kind"] == "exact"
    assert rows["plaquette"]["reweighted"] == rw["value"] and "reweighted" in summ["text"]
    assert_close(rows["chi_t"]["reference"], lk.exact.u1_2d_topological_susceptibility(1.0, (4, 4)), rtol=1e-6, atol=0)
    assert summ["flow"]["acceptance"] == s["acceptance"] and summ["flow"]["ess"] is not None
    assert summ["flow"]["kl"] == res["kl"] and f"KL {res['kl']:.4g} (exact log Z)" in summ["text"]
    assert "plaquette" in summ["text"] and summ["text"] == format_flow_summary(summ)
    model, action, cfg, payload = load_trained(out)
    assert payload["step"] == 30 and next(model.parameters()).dtype == torch.float64


def test_su2_flow_trains_and_samples_against_exact(tmp_path) -> None:
    # SU(N) configs build the spectral couplings; flow MCMC (exact in distribution) against the exact 2D
    # SU(2) torus plaquette (latticekit.exact). beta = 0.5 keeps the target close to Haar so a short training
    # suffices. 6000 steps give a Gamma-method error of ~0.006 (tau_int ~ 7 at acceptance ~ 0.4; measured
    # once: 0.1277(62), reweighted 0.1243(37)); the bound is 4 of those tau_int-corrected sigma (a Gaussian
    # estimate fails it with probability 6e-5). The guard error < 0.008 keeps the bound below 0.032, while
    # beta -> beta/2 moves the exact plaquette from 0.1237 to 0.0623 and 2 beta to 0.2402: either fails by
    # > 7 sigma (run once with the flow at beta = 0.25 against the exact value at 0.5: 0.0639(37), 16 sigma).
    # The previous bound, 5 sigma + 0.02 at 1500 steps, was 0.08 wide at sigma = 0.012, wider than the beta/2
    # shift.
    cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "SU2", "beta": 0.5},
           "model": {"n_layers": 2}, "train": {"steps": 10, "batch_size": 16, "dtype": "float64",
                                              "checkpoint_every": 5, "eval_every": 5}}
    out = tmp_path / "su2"
    train_job(cfg, out=out, progress=False)
    s = sample_job(out, n=6000, seed=3, batch=1000, store_every=400)
    exact = lk.exact.sun_2d_plaquette(0.5, 2, (4, 4))
    p = s["observables"]["plaquette"]
    assert_close(p["exact"], exact, rtol=1e-6, atol=0)
    assert p["reliable"] and p["error"] < 0.008
    assert abs(p["value"] - exact) < 4 * p["error"]
    # the reweighting estimate of the same (independent) proposals, with its jackknife error: the same bound
    rw = p["reweighted"]
    assert rw["error"] < 0.008 and abs(rw["value"] - exact) < 4 * rw["error"]
    with lk.io.Ensemble.open(out / "flow_ensemble.h5") as ens:
        assert ens.group.name == "SU(2)" and len(ens) == 15


def test_summary_with_hmc_reference(tmp_path) -> None:
    out = tmp_path / "p"
    train_job(phi4_cfg(steps=2), out=out, progress=False)
    sample_job(out, n=50, seed=1)
    hmc = {"observables": {"abs_magnetization": {"value": 0.3, "error": 0.01},
                           "susceptibility": {"value": 2.0, "error": 0.1}}}
    summ = flow_summary(out, hmc=hmc)
    rows = {r["observable"]: r for r in summ["rows"]}
    # one name in both jobs: the run job's `susceptibility` is the flow job's (no renaming)
    assert rows["susceptibility"]["reference"] == 2.0 and rows["susceptibility"]["reference_kind"] == "hmc"
    f = rows["abs_magnetization"]
    assert_close(f["deviation_sigma"], (f["flow"] - 0.3) / math.hypot(f["flow_error"], 0.01), rtol=1e-6, atol=0)
    with pytest.raises(FileNotFoundError, match="sample.json"):
        flow_summary(tmp_path / "nothing")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_generator_state_round_trip(backend: str) -> None:
    g = lk.backends.rng(9, backend=backend)
    g.uniform((3,))
    st = g.get_state()
    a = lk.backends.to_numpy(g.normal((4,)))
    g.normal((5,))
    g.set_state(st)
    np.testing.assert_array_equal(lk.backends.to_numpy(g.normal((4,))), a)
    with pytest.raises(TypeError, match="state"):
        g.set_state({"bit_generator": "MT19937"} if backend == "numpy" else torch.zeros(3))


# -- gauge theories in any number of dimensions ----------------------------------------------------
def nd_gauge_cfg(group: str, shape: list[int], beta: float = 1.0, **train) -> dict:
    t = {"steps": 4, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 2, "seed": 2, "eval_batch_size": 16}
    t.update(train)
    return {"lattice": {"shape": shape}, "action": {"kind": "wilson", "group": group, "beta": beta},
            "model": {"n_layers": 4, "hidden": [4], "bins": 4}, "train": t, "sample": {"n": 64, "batch": 32}}


@pytest.mark.parametrize("shape, group, coupling, key", [
    ([3, 4, 4], "U1", "plaquette", "lattice.shape"),           # odd extent: no checkerboard
    ([4, 4, 2, 5], "SU2", "plaquette", "lattice.shape"),
    ([6, 6], "U1", "plaquette", "lattice.shape"),              # 2D stripes: extents divisible by 4
    ([5, 4], "U1", "checkerboard", "lattice.shape"),
    ([4], "U1", "plaquette", "lattice.shape"),                 # 1D: no plaquettes
    ([2, 2, 2], "SO3", "plaquette", "action.group"),
    ([2, 2, 2], "SU1", "plaquette", "action.group"),
    ([2, 2, 2], "U2", "plaquette", "action.group"),
    ([2, 2, 2], "U1", "affine", "model.coupling"),
])
def test_nd_gauge_config_errors(shape, group, coupling, key) -> None:
    cfg = {"lattice": {"shape": shape}, "action": {"kind": "wilson", "group": group}, "model": {"coupling": coupling}}
    with pytest.raises(ConfigError, match=key) as info:
        FlowConfig.from_dict(cfg)
    if key == "lattice.shape":
        assert str(shape) in str(info.value)
    if key == "action.group":
        assert "SU<N>" in str(info.value)


def test_gauge_flow_layers_per_dimension() -> None:
    from latticekit.flows import CheckerboardMask, StripeMask, SUPlaquetteCoupling, U1PlaquetteCoupling

    def layers(shape, group="U1", **model):
        cfg = FlowConfig.from_dict({"lattice": {"shape": shape}, "action": {"group": group},
                                    "model": {"hidden": [2], "bins": 2, **model}})
        model_, action, lat = build_flow(cfg)
        assert lat.shape == tuple(shape) and action.lattice.shape == tuple(shape)
        return cfg, list(model_.flow.layers)

    # 2D keeps the stripe stacks (unchanged defaults); "checkerboard" opts into the Nd layers, even extents
    cfg, ls = layers([4, 8])
    assert cfg.model.coupling == "plaquette" and len(ls) == 16 and all(type(x) is U1PlaquetteCoupling for x in ls)
    assert all(type(x.mask) is StripeMask for x in ls)
    cfg, ls = layers([4, 4], "SU2", n_layers=2)
    assert all(type(x) is SUPlaquetteCoupling and type(x.mask) is StripeMask for x in ls)
    cfg, ls = layers([6, 2], coupling="checkerboard")
    assert len(ls) == 8 and all(type(x) is U1PlaquetteCoupling and type(x.mask) is CheckerboardMask for x in ls)
    # Nd >= 3: checkerboard stacks, default one (mu, nu, parity) cycle = 2 Nd (Nd - 1) layers
    cfg, ls = layers([2, 4, 2])
    assert cfg.model.n_layers == 12 and all(type(x.mask) is CheckerboardMask for x in ls)
    assert {(x.mask.mu, x.mask.nu, x.mask.parity) for x in ls} == {(m, n, p) for m in range(3) for n in range(3)
                                                                   if m != n for p in (0, 1)}
    cfg, ls = layers([2, 2, 2, 2], "SU2")
    assert cfg.model.n_layers == 24 and all(type(x) is SUPlaquetteCoupling for x in ls)
    assert all(type(x.mask) is CheckerboardMask and x.loop_context for x in ls)
    # the same [model] options: loop_context (alias rectangle_context) is the layers' loop_context
    _, ls = layers([2, 2, 2], "SU3", rectangle_context=False, n_layers=2, kernel_size=1, act="tanh")
    assert [x.loop_context for x in ls] == [False, False] and ls[0].group.N == 3
    _, ls = layers([2, 2, 2], rectangle_context=False, n_layers=1)
    assert ls[0].loop_context is False
    # and "checkerboard" in Nd >= 3 is the same model as "plaquette"
    a = build_flow(FlowConfig.from_dict(nd_gauge_cfg("U1", [2, 2, 2])))[0]
    b = build_flow(FlowConfig.from_dict({**nd_gauge_cfg("U1", [2, 2, 2]),
                                         "model": {"n_layers": 4, "hidden": [4], "bins": 4, "coupling": "checkerboard"}}))[0]
    assert repr(a) == repr(b)
    # observables of the flow-MCMC chain: the U(1) topological charge only in 2D
    def flow_observables(cfg):
        return cfg.theory.summary_observables()

    assert sorted(flow_observables(FlowConfig.from_dict(nd_gauge_cfg("U1", [2, 2, 2])))) == ["plaquette"]
    assert sorted(flow_observables(FlowConfig.from_dict(nd_gauge_cfg("SU2", [2, 2, 2, 2])))) == ["plaquette"]
    assert "chi_t" in flow_observables(FlowConfig.from_dict({**nd_gauge_cfg("U1", [4, 4]), "model": {"coupling": "checkerboard"}}))


def test_stripe_checkpoint_is_refused_by_checkerboard_model(tmp_path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    stripes = u1_cfg(steps=1)
    board = u1_cfg(steps=1)
    board["model"]["coupling"] = "checkerboard"
    train_job(stripes, out=a, progress=False)
    train_job(board, out=b, progress=False)
    with pytest.raises(CheckpointMismatchError, match="model"):   # the folder's config says so first
        train_job(stripes, out=b, progress=False)
    (b / "checkpoint.pt").write_bytes((a / "checkpoint.pt").read_bytes())   # foreign checkpoint, own config
    with pytest.raises(CheckpointMismatchError, match="different architecture"):
        train_job(board, out=b, progress=False)


@pytest.mark.parametrize("group, shape", [("U1", [2, 2, 2]), ("SU2", [2, 2, 2, 2])])
def test_nd_gauge_job_resumes_and_samples(tmp_path, killed_and_resumed, group, shape) -> None:
    full, killed = tmp_path / "full", tmp_path / "killed"  # the folders of the fixture's two runs
    a, b, res = killed_and_resumed(nd_gauge_cfg(group, shape), kill_at=2)  # dies in step 3
    assert res["resumed_from_step"] == 2 and res["steps"] == 4
    assert a["step"] == b["step"] == 4 and a["model"].keys() == b["model"].keys()
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert _strip_time(_metrics(full / "metrics.jsonl")) == _strip_time(_metrics(killed / "metrics.jsonl"))

    s = sample_job(killed, n=40, seed=4, store_every=4)
    assert set(s["observables"]) == {"plaquette"} and "exact" not in s["observables"]["plaquette"]
    G, lat = lk.groups.group_from_name(group), lk.Lattice(tuple(shape))
    model, action, _cfg, _payload = load_trained(killed)
    with lk.io.Ensemble.open(killed / "flow_ensemble.h5") as ens:
        assert len(ens) == 10 and ens.group.name == G.name and tuple(ens.lattice) == tuple(shape)
        U = ens.read(2, backend="numpy")
        assert_close(float(lk.observables.average_plaquette(U[None], G, lat)[0]), ens.observable("plaquette")[2],
                     rtol=0, atol=1e-12)
        # the stored log-weight is -S - log q of the stored configuration (inverse flow, Wilson action)
        Ut = torch.as_tensor(U)[None]
        with torch.no_grad():
            lw = float(-action.action(Ut)[0] - model.log_prob(Ut)[0])
        assert_close(lw, ens.info(2)["log_w"], rtol=1e-8, atol=0)
    summ = flow_summary(killed)
    (row,) = summ["rows"]
    assert row["observable"] == "plaquette" and row["reference"] is None and row["reference_kind"] is None
    assert "no exact value" in summ["note"] and "no exact value" in summ["text"]
    assert f"{len(shape)}D" in summ["note"] and "x".join(map(str, shape)) in summ["text"]
    ref = {"plaquette": {"value": 0.2, "error": 0.01}}
    summ = flow_summary(killed, hmc=ref)
    assert summ["rows"][0]["reference_kind"] == "hmc" and summ["note"] is None and "no exact" not in summ["text"]
    # a `latticekit run` results.json of the same theory: its sampler names the reference
    run = {"config": {"lattice": {"shape": shape}, "action": {"kind": "wilson", "group": group, "beta": 1.0},
                      "sampler": {"algorithm": "heatbath"}}, "observables": ref}
    (tmp_path / "results.json").write_text(json.dumps(run))
    row = flow_summary(killed, hmc=tmp_path / "results.json")["rows"][0]
    assert (row["reference"], row["reference_kind"]) == (0.2, "heatbath")
    run["config"]["lattice"]["shape"] = [4] * len(shape)
    (tmp_path / "results.json").write_text(json.dumps(run))
    with pytest.raises(ConfigError, match="another theory"):
        flow_summary(killed, hmc=tmp_path / "results.json")
    # the sample.json of another flow names its theory in flow_config: checked alike (it passed as a plain mapping
    # labelled "hmc"), and a flow of the same theory is labelled "flow"
    other = {"flow_config": {"lattice": {"shape": [4] * len(shape)}, "action": {"kind": "wilson", "group": group,
                                                                                 "beta": 1.0}}, "observables": ref}
    with pytest.raises(ConfigError, match=r"sample\.json is a run of another theory than the flow \(lattice"):
        (tmp_path / "sample.json").write_text(json.dumps(other))
        flow_summary(killed, hmc=tmp_path / "sample.json")
    other["flow_config"]["lattice"]["shape"] = list(shape)
    (tmp_path / "sample.json").write_text(json.dumps(other))
    assert flow_summary(killed, hmc=tmp_path / "sample.json")["rows"][0]["reference_kind"] == "flow"


def u1_plaquette_character_expansion(beta: float, shape: tuple[int, ...], span: int = 2, winding: int = 2) -> float:
    """Exact <P> = <cos theta_p> of U(1) Wilson theory on a small periodic lattice (any Nd), from the character
    expansion: exp(beta cos t) = sum_n I_n(beta) e^{int}, so after the link integrals
    Z = sum_n prod_p I_{n_p}(beta) over integer plaquette fields n with no boundary (at every link the n of its
    plaquettes cancel). Those are the closed surfaces: sums of elementary-cube boundaries (m_c per cube, defined
    up to a constant: their sum is zero on the torus) and windings w around the coordinate planes; the sum runs
    over classes with max(m) - min(m) <= span and |w| <= winding, and <P> = (1/N_p) d ln Z / d beta with
    I_n' = (I_{n-1} + I_{n+1}) / 2. In 2D there are no cubes and it is the torus formula of latticekit.exact.
    """
    import itertools

    from scipy.special import ive

    nd, L = len(shape), np.asarray(shape)
    sites = list(itertools.product(*[range(n) for n in shape]))
    index = {x: i for i, x in enumerate(sites)}
    planes = list(itertools.combinations(range(nd), 2))
    n_p = len(sites) * len(planes)
    e = np.eye(nd, dtype=int)

    def plaq(x, pl):
        return index[tuple(np.mod(x, L))] * len(planes) + planes.index(pl)

    def link(x, mu):
        return index[tuple(np.mod(x, L))] * nd + mu

    B = np.zeros((len(sites) * nd, n_p), dtype=int)          # boundary: plaquette -> its oriented links
    for x in map(np.array, sites):
        for mu, nu in planes:
            p = plaq(x, (mu, nu))
            B[link(x, mu), p] += 1
            B[link(x + e[mu], nu), p] += 1
            B[link(x + e[nu], mu), p] -= 1
            B[link(x, nu), p] -= 1
    cubes = []
    for dirs in itertools.combinations(range(nd), 3):
        for x in map(np.array, sites):
            v = np.zeros(n_p, dtype=int)
            for k, rho in enumerate(dirs):
                pl = tuple(d for d in dirs if d != rho)
                v[plaq(x + e[rho], pl)] += (-1) ** k
                v[plaq(x, pl)] -= (-1) ** k
            cubes.append(v)
    windings = []
    for pl in planes:
        v = np.zeros(n_p, dtype=int)
        for x in sites:
            if all(x[d] == 0 for d in range(nd) if d not in pl):
                v[plaq(np.array(x), pl)] = 1
        windings.append(v)
    G = np.array(cubes + windings).reshape(-1, n_p)
    assert not np.any(B @ G.T)                                          # closed surfaces
    assert np.linalg.matrix_rank(G) == n_p - np.linalg.matrix_rank(B)  # all of them (the kernel of B)
    nmax = span * 2 * nd + winding * int(np.max(L)) ** 2 + 2
    I = ive(np.arange(nmax + 2), beta)                                  # e^-beta I_n(beta): ratios only
    ratio = np.concatenate([[I[1]], 0.5 * (I[:nmax] + I[2:nmax + 2])]) / I[:nmax + 1]
    if cubes:
        m = np.array(list(itertools.product(range(span + 1), repeat=len(cubes))))
        base = m[m.min(axis=1) == 0] @ np.array(cubes)                 # one representative per class
    else:
        base = np.zeros((1, n_p), dtype=int)
    logs, ders = [], []
    for w in itertools.product(range(-winding, winding + 1), repeat=len(windings)):
        n = np.abs(base + np.asarray(w) @ np.array(windings).reshape(len(windings), n_p))
        logs.append(np.log(I[n]).sum(axis=1))
        ders.append(ratio[n].sum(axis=1))
    lw, d = np.concatenate(logs), np.concatenate(ders)
    wt = np.exp(lw - lw.max())
    return float((wt * d).sum() / wt.sum() / n_p)


def test_character_expansion_is_the_exact_plaquette() -> None:
    # 2D: the same sum as the torus formula of latticekit.exact
    for beta in (0.5, 1.0):
        assert_close(u1_plaquette_character_expansion(beta, (4, 4), winding=4), lk.exact.u1_2d_plaquette(beta, (4, 4)),
                     rtol=0, atol=1e-12)
    # 3D 2x2x2, beta = 0.5: 0.258401 (span 3 and winding 3 change it by 7e-7). A recorded heatbath run agrees:
    # latticekit run with [lattice] shape = [2, 2, 2], [action] beta = 0.5, [sampler] algorithm = "heatbath",
    # chains = 16, thermalization = 50, measurements = 5000, seed 7: 0.25814(56), -0.5 sigma.
    p = u1_plaquette_character_expansion(0.5, (2, 2, 2))
    assert_close(p, 0.258401, rtol=0, atol=2e-6)
    assert abs(p - 0.25814) < 2 * 0.00056
    assert abs(p - 0.242500) > 0.015                                  # not strong coupling I1/I0(0.5) = 0.2425


def test_u1_3d_flow_mcmc_matches_exact(tmp_path) -> None:
    # 3D U(1), 2x2x2, beta = 0.5: exact <P> = 0.258401 from the character expansion above (latticekit.exact has
    # 2D only). Flow MCMC is exact in distribution even after a short training. 30000 steps give a Gamma-method
    # error of ~0.0021 (tau_int ~ 3 at acceptance ~ 0.47; measured once: 0.2549(21), reweighted 0.2554(17));
    # the bound is 4 of those sigma, and the guard error < 0.003 keeps it below 0.012, so that it excludes what
    # a wrong action or log-det would give: strong coupling I1/I0 = 0.2425 (independent plaquettes, 0.016 away),
    # beta/2 0.1260, 2 beta about 0.45, the Haar prior 0. (The previous test compared with 0.2581 from an
    # unrecorded run, with a window of 5 sigma + 0.01, about +-0.05 at its sigma 0.0075, which held strong
    # coupling.) Run once with the flow at beta = 0.25 against the exact value at 0.5: 0.1264(16), 83 sigma.
    out = tmp_path / "u1_3d"
    cfg = nd_gauge_cfg("U1", [2, 2, 2], beta=0.5, steps=40, batch_size=64, lr=3e-3, checkpoint_every=40)
    cfg["model"].update(hidden=[8], bins=8, zero_init=True)
    train_job(cfg, out=out, progress=False)
    s = sample_job(out, n=30000, seed=5, batch=2000, store_every=3000)
    exact = u1_plaquette_character_expansion(0.5, (2, 2, 2))
    p = s["observables"]["plaquette"]
    assert s["acceptance"] > 0.2 and p["reliable"] and p["error"] < 0.003
    assert abs(p["value"] - exact) < 4 * p["error"]
    rw = p["reweighted"]
    assert rw["error"] < 0.003 and abs(rw["value"] - exact) < 4 * rw["error"]


def test_su2_4d_example_config_validates() -> None:
    import pathlib

    cfg = FlowConfig.from_file(pathlib.Path(__file__).resolve().parents[3] / "examples" / "su2_4d_flow.toml")
    assert cfg.lattice.shape == [4, 4, 4, 4] and cfg.action.group == "SU2" and not cfg.uses_stripes
    assert cfg.model.n_layers == 24 and cfg.train.steps >= 100


# -- what the flow jobs show: training curve and histograms -----------------------------------------
def _png_shape(path) -> tuple:
    import matplotlib.image

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return matplotlib.image.imread(path).shape


def test_training_plot_covers_a_resumed_run(tmp_path, monkeypatch) -> None:
    from latticekit.app import plots

    drawn: list[list[int]] = []
    real = plots.training_plot

    def spy(path, metrics, title=""):
        drawn.append([m["step"] for m in metrics])
        return real(path, metrics, title)

    monkeypatch.setattr(plots, "training_plot", spy)
    out = tmp_path / "run"
    original = Trainer.train_step

    def dying(self):  # killed during step 5, after the step-4 checkpoint
        if self.step == 4:
            raise _Killed("SIGKILL")
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dying)
    with pytest.raises(_Killed):
        train_job(phi4_cfg(), out=out, progress=False)
    assert not (out / "train.png").exists()
    monkeypatch.setattr(Trainer, "train_step", original)
    res = train_job(phi4_cfg(), out=out, progress=False)
    assert res["resumed_from_step"] == 4 and res["plot"] == "train.png"
    assert drawn == [[1, 2, 3, 4, 5, 6]]                   # the whole run, not only the resumed part
    h, w, _ = _png_shape(out / "train.png")
    assert h > 100 and w > 100
    rows = _metrics(out / "metrics.jsonl")
    assert all(a["cpu_s"] <= b["cpu_s"] for a, b in zip(rows, rows[1:]))   # CPU time summed over the two runs
    assert json.loads((out / "train.json").read_text())["plot"] == "train.png"


def test_nan_stop_still_draws_the_curve(tmp_path, monkeypatch) -> None:
    from latticekit.actions import Phi4Action

    original = Phi4Action.action
    calls = {"n": 0}

    def poisoned(self, phi):
        calls["n"] += 1
        s = original(self, phi)
        return s * float("nan") if calls["n"] > 5 else s

    monkeypatch.setattr(Phi4Action, "action", poisoned)
    with pytest.raises(NonFiniteLossError):
        train_job(phi4_cfg(), out=tmp_path, progress=False)
    assert json.loads((tmp_path / "train.json").read_text())["plot"] == "train.png"
    _png_shape(tmp_path / "train.png")


def test_sample_histograms_of_values_equal_to_round_off(tmp_path) -> None:
    # a chain whose values differ only in the last bit (one proposal, re-measured) made numpy refuse 40 bins, after
    # the sample job had done all its work; a constant chain and one of ordinary spread draw as before
    from latticekit.app import plots
    from latticekit.theories import make_theory

    theory = make_theory("wilson", (4, 4), {"group": "U1", "beta": 1.0})
    for v in ([0.5, 0.5 + 1e-16, 0.5], [0.5] * 4, [0.1, 0.7, 0.3]):
        path = tmp_path / f"s{len(v)}_{v[1]}.png"
        assert plots.sample_plot(path, {"plaquette": v}, {}, {}, theory) == path.name
        _png_shape(path)


def test_sample_histograms_against_exact_and_reference(tmp_path, monkeypatch) -> None:
    from latticekit.app import plots

    seen: list[tuple] = []
    real = plots.sample_plot

    def spy(path, values, estimates, reference, theory, title=""):
        seen.append((dict(values), dict(reference)))
        return real(path, values, estimates, reference, theory, title)

    monkeypatch.setattr(plots, "sample_plot", spy)
    out = tmp_path / "u1"
    train_job(u1_cfg(steps=2), out=out, progress=False)
    s = sample_job(out, n=200, seed=1, batch=100)
    assert s["plot"] == "sample.png" and json.loads((out / "sample.json").read_text())["plot"] == "sample.png"
    _png_shape(out / "sample.png")
    values, ref = seen[-1]
    assert list(values) == ["plaquette", "chi_t", "topological_charge"]
    V = 16
    Q = np.asarray(values["topological_charge"])
    assert_close(values["chi_t"], Q ** 2 / V, rtol=1e-7, atol=0)   # chi_t per configuration: its mean is chi_t
    # an exact value has no error: None, not a made-up 0.0 (issue 14)
    assert ref["plaquette"] == {"value": lk.exact.u1_2d_plaquette(1.0, (4, 4)), "error": None, "kind": "exact"}
    # a reference run of the same theory replaces the exact values where it has the observable
    run = {"config": {"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "U1", "beta": 1.0},
                      "sampler": {"algorithm": "heatbath"}},
           "observables": {"plaquette": {"value": 0.44, "error": 0.01}}}
    sample_job(out, n=200, seed=1, batch=100, out_file=tmp_path / "chain.h5", reference=run)
    _png_shape(tmp_path / "chain.h5.png")
    _values, ref = seen[-1]
    assert ref["plaquette"] == {"value": 0.44, "error": 0.01, "kind": "heatbath"}
    assert ref["chi_t"]["kind"] == "exact"
    run["config"]["action"]["beta"] = 2.0
    with pytest.raises(ConfigError, match="action.beta 2.0 vs 1.0"):
        sample_job(out, n=200, seed=1, reference=run)


def test_run_folder_of_the_previous_version_resumes(tmp_path) -> None:
    """config.json of the previous version: every [model] key (read or not) and `rectangle_context`
    instead of `loop_context`. The run resumes and continues exactly as an uninterrupted one."""
    cfg = u1_cfg(steps=2)
    cfg["model"]["loop_context"] = False
    out, ref = tmp_path / "old", tmp_path / "ref"
    train_job(cfg, out=out, progress=False)
    conf = json.loads((out / "config.json").read_text())
    model = conf["model"]
    model["rectangle_context"] = model.pop("loop_context")
    model.update(bound=4.0, tanh_scale=True, prior_std=1.0)
    (out / "config.json").write_text(json.dumps(conf))
    longer = u1_cfg(steps=4)
    longer["model"]["rectangle_context"] = False         # the alias, as an old TOML file spells it
    res = train_job(longer, out=out, progress=False)
    assert res["resumed_from_step"] == 2
    longer["model"] = {**u1_cfg()["model"], "loop_context": False}
    train_job(longer, out=ref, progress=False)
    a = torch.load(out / "checkpoint.pt", weights_only=False)
    b = torch.load(ref / "checkpoint.pt", weights_only=False)
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    assert json.loads((out / "config.json").read_text())["model"] == json.loads((ref / "config.json").read_text())["model"]
    # a changed value of the old name is still a different run
    other = u1_cfg(steps=5)
    other["model"]["rectangle_context"] = True
    with pytest.raises(CheckpointMismatchError, match="model"):
        train_job(other, out=out, progress=False)


def test_reference_run_is_the_run_job(tmp_path) -> None:
    from latticekit.app.flows.reference import reference_run

    cfg = nd_gauge_cfg("U1", [2, 2, 2], beta=0.5)
    r = reference_run(cfg, measurements=300, chains=4, thermalization=20, seed=2, out=tmp_path / "ref")
    assert r["config"]["sampler"]["algorithm"] == "heatbath"        # the theory's reference sampler
    assert (tmp_path / "ref" / "results.json").exists()
    p = r["observables"]["plaquette"]
    # the exact <P> = 0.258401 (character expansion, test_character_expansion_is_the_exact_plaquette); 4 sigma
    # of the run's error (~0.004 for 4 x 300 heatbath sweeps)
    assert p["reliable"] and abs(p["value"] - u1_plaquette_character_expansion(0.5, (2, 2, 2))) < 4 * p["error"]
    # its result is a reference for the summary and names its sampler
    out = tmp_path / "flow"
    train_job(cfg, out=out, progress=False)
    sample_job(out, n=32, seed=1)
    row = flow_summary(out, hmc=r)["rows"][0]
    assert (row["observable"], row["reference"], row["reference_kind"]) == ("plaquette", p["value"], "heatbath")
    with pytest.raises(ConfigError, match=r"sampler\.step_size"):   # an HMC key, refused for the heatbath
        reference_run(cfg, measurements=10, step_size=0.1)
    r = reference_run(cfg, measurements=20, chains=2, thermalization=5, algorithm="hmc", step_size=0.2)
    assert r["config"]["sampler"]["step_size"] == 0.2


# -- issue 14: killed jobs, honest references, the ESS with its N ------------------------------------
def _cli(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "latticekit.app.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_train_killed_before_its_first_checkpoint_does_not_duplicate_steps(tmp_path, write_toml) -> None:
    # a real kill -9 after step 3, before the first checkpoint (step 4): metrics.jsonl holds steps 1-3 and
    # there is no checkpoint; the rerun starts over and used to append steps 1-6 to them
    # (the rerun is a fresh run of the same command and seed: its steps 1-3 equal the killed run's, which stands
    # in for a separate uninterrupted run, one CLI process fewer)
    conf = write_toml(phi4_cfg(checkpoint_every=4), "c.toml")
    killed = tmp_path / "killed"
    r = _cli("train", conf, "--out", killed, "--quiet", env_extra={"LATTICEKIT_KILL_AT": "train:step:3"})
    assert r.returncode == -9, r.stderr
    first = _metrics(killed / "metrics.jsonl")
    assert [m["step"] for m in first] == [1, 2, 3]
    assert not (killed / "checkpoint.pt").exists()
    r = _cli("train", conf, "--out", killed, "--quiet")
    assert r.returncode == 0, r.stderr
    again = _metrics(killed / "metrics.jsonl")
    assert [m["step"] for m in again] == [1, 2, 3, 4, 5, 6]
    assert _strip_time(again[:3]) == _strip_time(first)
    # the command's line labels the ESS with its definition and N (train.eval_batch_size = 16)
    assert "(Kish, N=16)" in r.stdout


def test_killed_sample_leaves_a_temporary_that_the_next_one_removes(tmp_path) -> None:
    # a real kill -9 while the chain's HDF5 file is written (under a temporary name, renamed at the end)
    out = tmp_path / "u1"
    train_job(u1_cfg(steps=2), out=out, progress=False)
    r = _cli("sample", out, "--n", "16", env_extra={"LATTICEKIT_KILL_AT": "sample:store"})
    assert r.returncode == -9, r.stderr
    stale = [p.name for p in out.iterdir() if p.name.startswith(".flow_ensemble.h5.") and p.name.endswith(".tmp")]
    assert len(stale) == 1 and not (out / "flow_ensemble.h5").exists()
    # plus what killed atomic writes of the train job's own files would leave
    for name in (".checkpoint.pt.a1b2c3.tmp", ".metrics.jsonl.d4e5f6.tmp"):
        (out / name).write_bytes(b"partial")
    (out / ".unrelated.txt.a1b2c3.tmp").write_bytes(b"keep")
    s = sample_job(out, n=16, seed=1)
    assert s["n"] == 16 and (out / "flow_ensemble.h5").exists() and not (out / stale[0]).exists()
    train_job(u1_cfg(steps=3), out=out, progress=False)
    left = {p.name for p in out.iterdir()}
    assert not {".checkpoint.pt.a1b2c3.tmp", ".metrics.jsonl.d4e5f6.tmp"} & left
    assert ".unrelated.txt.a1b2c3.tmp" in left


def test_sample_killed_between_batches_resumes_bit_identically(tmp_path) -> None:
    # a real kill -9 after the 3rd of 5 stored batches of proposals; the same command then loads the three,
    # draws the other two from the stored random state, and gives the uninterrupted run's chain to the last bit
    cfg = u1_cfg(steps=2)
    cfg["sample"] = {"n": 40, "batch": 8}
    a, b = tmp_path / "a", tmp_path / "b"
    train_job(cfg, out=a, progress=False)
    b.mkdir()
    for f in ("checkpoint.pt", "config.json"):
        (b / f).write_bytes((a / f).read_bytes())
    whole = sample_job(a, seed=4)
    r = _cli("sample", b, "--seed", "4", env_extra={"LATTICEKIT_KILL_AT": "sample:batch:3"})
    assert r.returncode == -9, r.stderr
    prog = b / ".flow_ensemble.h5.progress" / "proposals"
    batches = lambda: sorted(p.name for p in prog.iterdir() if p.name.startswith("batch_"))  # noqa: E731
    assert batches() == [f"batch_00000{k}.pt" for k in range(3)] and (prog / "identity.json").exists()
    # killed again after its first new batch: it continued (batch 3 beside 0-2), it did not start over
    r = _cli("sample", b, "--seed", "4", env_extra={"LATTICEKIT_KILL_AT": "sample:batch:1"})
    assert r.returncode == -9, r.stderr
    assert batches() == [f"batch_00000{k}.pt" for k in range(4)]
    resumed = sample_job(b, seed=4)
    drop = {"wall_s", "output", "plot", "checkpoint"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    with lk.io.Ensemble.open(a / "flow_ensemble.h5") as ea, lk.io.Ensemble.open(b / "flow_ensemble.h5") as eb:
        assert len(ea) == len(eb) == 40
        assert all(np.array_equal(ea[i], eb[i]) for i in range(40))
    assert not (b / ".flow_ensemble.h5.progress").exists()       # removed once everything is written
    # stored batches of another draw (another seed) are not used: the seed-4 job starts over and gives its own chain
    r = _cli("sample", b, "--seed", "5", env_extra={"LATTICEKIT_KILL_AT": "sample:batch:2"})
    assert r.returncode == -9, r.stderr
    assert batches() == ["batch_000000.pt", "batch_000001.pt"]
    assert sample_job(b, seed=4)["observables"] == whole["observables"]


def test_references_without_errors_are_not_exact(tmp_path) -> None:
    out = tmp_path / "p"
    train_job(phi4_cfg(steps=2), out=out, progress=False)
    sample_job(out, n=64, seed=1)
    summ = flow_summary(out, hmc={"abs_magnetization": 0.3, "susceptibility": {"value": 2.0},
                                  "magnetization": {"value": 0.01, "error": 0.02}})
    rows = {r["observable"]: r for r in summ["rows"]}
    for name, value in (("abs_magnetization", 0.3), ("susceptibility", 2.0)):
        r = rows[name]
        # a bare number has no error: not 0.0; the deviation is in units of the flow error alone, and says so
        assert r["reference_error"] is None and r["deviation_uses"] == "flow error"
        assert_close(r["deviation_sigma"], (r["flow"] - value) / r["flow_error"], rtol=1e-6, atol=0)
    m = rows["magnetization"]
    assert m["deviation_uses"] == "flow and reference errors"
    assert_close(m["deviation_sigma"], (m["flow"] - 0.01) / math.hypot(m["flow_error"], 0.02), rtol=1e-6, atol=0)
    assert rows["action_density"]["reference"] is None and rows["action_density"]["deviation_sigma"] is None
    text = summ["text"]
    assert "0.3 (no error given)" in text and "* the reference was given without an error" in text
    line = next(x for x in text.splitlines() if x.startswith("abs_magnetization"))
    # the deviation carries the mark (a 2-step flow's chain is also marked "!" as not reliable: long rejection runs)
    assert line.rstrip().removesuffix("!").rstrip().endswith("*")
    # an exact value: its error is not 0.0 either, and the flow error alone is the unit
    summ = flow_summary(out)
    exact_row = {r["observable"]: r for r in summ["rows"]}["magnetization"]
    assert exact_row["reference_kind"] == "exact" and exact_row["reference_error"] is None
    assert exact_row["deviation_uses"] == "flow error" and "*" not in summ["text"]


def test_every_ess_is_quoted_with_its_n(tmp_path) -> None:
    out = tmp_path / "p"
    train_job(phi4_cfg(eval_batch_size=16), out=out, progress=False)
    s = sample_job(out, n=96, seed=1, batch=32)
    assert s["proposal_ess_n"] == 96 and json.loads((out / "sample.json").read_text())["proposal_ess_n"] == 96
    summ = flow_summary(out)
    assert summ["flow"]["ess_n"] == 16 and summ["flow"]["proposal_ess_n"] == 96
    head, head2 = summ["text"].splitlines()[:2]
    assert f"ESS {summ['flow']['ess']:.4g} (Kish, N=16)" in head
    assert f"proposal ESS {s['proposal_ess']:.4g} (Kish, N=96)" in head2


def test_reference_acceptance_is_measured(tmp_path) -> None:
    # the reference used to report its acceptance as {error: 0.0, tau_int: 0.5}, made up; now it is the
    # Gamma-method entry of the recorded acceptance series
    from latticekit.app.analysis import chains_of, quiet_gamma
    from latticekit.app.flows.reference import reference_run

    cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.5}}
    r = reference_run(cfg, measurements=40, chains=2, thermalization=5, step_size=0.5, n_steps=3,
                      out=tmp_path / "ref")
    acc = r["sampler"]["acceptance"]
    arrays, _ = lk.io.load_state(tmp_path / "ref" / "state.npz")
    g = quiet_gamma(chains_of(arrays["accept"].tolist()))     # gamma_method, its warnings reported in the entry
    assert 0 < acc["value"] < 1 and acc["error"] > 0
    # approx(rel=1e-12) accepted max(1e-12 |e|, 1e-12): the absolute term for these values (0.85, 0.039, 0.46)
    assert_close(acc["value"], float(g.value), rtol=0, atol=1e-12)
    assert_close(acc["error"], float(g.error), rtol=0, atol=1e-12)
    assert_close(acc["tau_int"], float(g.tau_int), rtol=0, atol=1e-12)
