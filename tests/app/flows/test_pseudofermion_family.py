"""The flow-model family ``model.coupling = "pseudofermion"`` (arXiv:2207.08945): configuration keys and refusals
(each error names the option), the joint model and training target it builds from the ``wilson_nf2`` action keys,
a tiny train + sample job with ``--n-pf``, and a CG failure inside training keeping the last checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from latticekit.app.cli import main
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.summary import flow_summary
from latticekit.app.flows.train import train_job
from latticekit.flows import CheckpointMismatchError
from latticekit.flows.pseudofermion import JointAction, JointModel, MarginalAction, PseudofermionSolveError
from latticekit.testing import assert_close
from latticekit.utils import ConfigError


def cfg(shape=(4, 4), *, action=None, **model) -> dict:
    a = {"kind": "wilson_nf2", "group": "U1", "beta": 2.0, "kappa": 0.2, "even_odd": True, "hasenbusch_mus": [0.1]}
    a.update(action or {})
    m = {"n_layers": 2, "hidden": [4], "pf_layers": 2, "context_hidden": 4}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": a, "model": m,
            "train": {"steps": 3, "batch_size": 4, "lr": 1e-3, "checkpoint_every": 1, "eval_batch_size": 8},
            "sample": {"n": 32, "batch": 16}}


@pytest.mark.parametrize("patch, match", [
    ({"action": {"hasenbusch_mus": [0.1, 0.05]}}, "action.hasenbusch_mus: expected strictly increasing"),
    ({"action": {"hasenbusch_mus": [-0.1]}}, "action.hasenbusch_mus"),
    ({"n_pf": 0}, "model.n_pf"),
    ({"partitioning": "random"}, "model.partitioning"),
    ({"objective": "forward"}, "model.objective"),
    ({"mu0": -1.0}, "model.mu0"),
    ({"logdet_gradient": "exact"}, "model.logdet_gradient"),
    ({"objective": "staged", "conditional_steps": [2, 3], "conditional_lr": [1e-3]},
     "model.conditional_steps, conditional_batch_size, conditional_lr, conditional_step_size: expected one entry"),
    ({"masks": "stripes", "shape": (2, 4)}, "model.masks: the stripe couplings need"),
    ({"shape": (3, 4), "action": {"even_odd": False}}, "lattice.shape"),
    ({"coupling": "plaquette"}, "model.coupling: expected one of \\('pseudofermion', 'qcd4d'\\)"),
    # keys of another objective were ignored (a joint run with conditional stages trained none)
    ({"objective": "joint", "conditional_steps": [20]}, "model.conditional_steps is read with objective = 'staged' "
     "only; objective = 'joint' would ignore it"),
    ({"objective": "conditional", "logdet_gradient": "normal"}, "model.logdet_gradient is read with objective = "
     "'marginal' or 'staged' only"),
])
def test_config_refusals(patch: dict, match: str) -> None:
    shape = patch.pop("shape", (4, 4))
    action = patch.pop("action", None)
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(shape, action=action, **patch))


def test_even_odd_needs_two_ptcs() -> None:
    with pytest.raises(ConfigError, match="model.n_pt: even/odd targets .* need n_pt >= 2"):
        build_flow(FlowConfig.from_dict(cfg(n_pt=1)))


def test_built_model_follows_the_action_keys() -> None:
    model, action, lat = build_flow(FlowConfig.from_dict(cfg(action={"hasenbusch_mus": [0.01, 0.1]})))
    assert isinstance(model, JointModel) and isinstance(action, JointAction)
    # EO + 2 Hasenbusch steps: three monomials, all sharing one context trunk (App. B.2)
    assert len(model.conditionals) == 3 and all(c.trunk is model.trunk for c in model.conditionals)
    assert all(t.even_odd for t in model.targets)
    # the training target carries the regulator mu0 = 1e-5 in every shift (Sec. IV.A); the model's own targets not
    assert_close(torch.tensor([t.mu_lo for t in action.targets], dtype=torch.float64), [1e-5, 0.01 + 1e-5, 0.1 + 1e-5],
                 rtol=1e-15, atol=0)  # sums of two floats
    assert [t.mu_lo for t in model.targets] == [0.0, 0.01, 0.1]
    # n_pt defaults to 6 with even/odd (App. B.3)
    assert len(model.conditionals[0].flow.layers[0].m_shapes) == 6
    model, action, _ = build_flow(FlowConfig.from_dict(cfg(action={"even_odd": False, "hasenbusch_mus": []})))
    assert len(model.conditionals) == 1 and len(model.conditionals[0].flow.layers[0].m_shapes) == 3


def test_objectives() -> None:
    model, action, _ = build_flow(FlowConfig.from_dict(cfg(objective="marginal")))
    assert model.objective == "marginal" and isinstance(action, MarginalAction)
    model, action, _ = build_flow(FlowConfig.from_dict(cfg(objective="conditional")))
    assert isinstance(action, JointAction)
    assert not any(p.requires_grad for p in model.flow.parameters())
    assert all(p.requires_grad for p in model.conditionals.parameters())


def test_logdet_gradient_key() -> None:
    from latticekit.app.flows.pseudofermion_models import GRADIENTS as APP_GRADIENTS
    from latticekit.flows.pseudofermion import GRADIENTS

    assert APP_GRADIENTS == GRADIENTS  # the configuration's list, spelled out to validate without torch
    for g in GRADIENTS:
        _model, action, _ = build_flow(FlowConfig.from_dict(cfg(objective="marginal", logdet_gradient=g)))
        assert action.gradient == g
    # the exact gradient needs a lattice small enough for the dense matrix: refused before any work
    big = cfg((48, 48), objective="marginal", logdet_gradient="dense")
    with pytest.raises(ConfigError, match="model.logdet_gradient: gradient='dense': the dense log det needs at most"):
        build_flow(FlowConfig.from_dict(big))


def test_staged_job_refuses_the_dense_gradient_before_any_work(tmp_path) -> None:
    big = cfg((48, 48), objective="staged", logdet_gradient="dense")
    with pytest.raises(ConfigError, match="model.logdet_gradient: gradient='dense'"):
        train_job(big, out=tmp_path / "big", progress=False)
    assert not (tmp_path / "big").exists()  # nothing written


def test_staged_job(tmp_path) -> None:
    """objective = "staged": the marginal flow first (exact gradient here), then one conditional stage with the
    marginal frozen; the marginal stage changes only the gauge flow, the conditional stage only the conditionals."""
    from latticekit.app.flows.pf_staged import pf_stages
    from latticekit.flows.checkpoint import load_checkpoint

    c = cfg(objective="staged", logdet_gradient="dense", conditional_steps=[2], conditional_batch_size=[6],
            conditional_lr=[2e-3])
    fc = FlowConfig.from_dict(c)
    st = pf_stages(fc, None)
    assert [s.name for s in st] == ["marginal", "conditional_1"]
    assert isinstance(st[0].action, MarginalAction) and st[0].action.gradient == "dense"
    assert isinstance(st[1].action, JointAction) and [s.config.batch_size for s in st] == [4, 6]
    out = tmp_path / "staged"
    res = train_job(c, out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 5 and [r["steps"] for r in res["stages"]] == [3, 2]
    assert "exact (dense) gradient" in res["stages"][0]["info"]["target"]
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["stage"] for m in lines] == ["marginal"] * 3 + ["conditional_1"] * 2

    def params(path):
        m, _a, _l = build_flow(fc)
        load_checkpoint(path, model=m.double())
        return ([p.detach().clone() for p in m.flow.parameters()],
                [p.detach().clone() for p in m.conditionals.parameters()])

    m0, _a, _l = build_flow(fc)  # the initial model (build_flow seeds torch with train.seed)
    m0 = m0.double()
    g0 = [p.detach().clone() for p in m0.flow.parameters()]
    c0 = [p.detach().clone() for p in m0.conditionals.parameters()]
    g1, c1 = params(out / "stages" / "0_marginal.pt")
    g2, c2 = params(out / "checkpoint.pt")
    changed = lambda a, b: any(not torch.equal(x, y) for x, y in zip(a, b))  # noqa: E731
    assert changed(g0, g1) and not changed(c0, c1)    # marginal stage: the gauge flow only
    assert not changed(g1, g2) and changed(c1, c2)    # conditional stage: the conditionals only
    s = sample_job(out, n=16, seed=2, n_pf=1)         # the sample job reads the staged checkpoint
    assert 0 < s["marginal_ess"] <= 1
    # a finished stage keeps its step count: more marginal steps on a finished run are refused, not ignored
    before = (out / "checkpoint.pt").read_bytes()
    longer = json.loads(json.dumps(c))
    longer["train"]["steps"] = 5
    with pytest.raises(ConfigError, match=r"stage 0 \(marginal\) in .* finished after 3 steps; this configuration "
                                          r"asks for 5"):
        train_job(longer, out=out, progress=False)
    assert (out / "checkpoint.pt").read_bytes() == before
    lines5 = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines5) == 5
    # a changed entry of a conditional list is a different run; an appended entry is a further stage, and the
    # sampling-only keys (n_pf, ess_npf_max) may change with it
    changed_stage = json.loads(json.dumps(c))
    changed_stage["model"]["conditional_steps"] = [3]
    # the refusal names the changed key (it printed the whole [model] section, as "a different architecture")
    with pytest.raises(CheckpointMismatchError, match=r"different model or lattice \(\[model\] "
                                                      r"model\.conditional_steps \[\d+\] -> \[3\]\)"):
        train_job(changed_stage, out=out, progress=False)
    more = json.loads(json.dumps(c))
    more["model"].update(conditional_steps=[2, 2], conditional_batch_size=[6, 4], conditional_lr=[2e-3, 1e-3],
                         conditional_step_size=[0, 0], n_pf=4, ess_npf_max=2)
    res2 = train_job(more, out=out, progress=False)
    assert res2["steps"] == 7 and [r["steps"] for r in res2["stages"]] == [3, 2, 2]
    lines7 = (out / "metrics.jsonl").read_text().splitlines()
    assert lines7[:5] == lines5  # the finished stages are kept as they were
    assert [json.loads(x)["stage"] for x in lines7[5:]] == ["conditional_2"] * 2
    g3, c3 = params(out / "checkpoint.pt")
    assert not changed(g2, g3) and changed(c2, c3)  # the new stage starts from the last model: conditionals only
    stored = json.loads((out / "config.json").read_text())["model"]
    assert stored["conditional_steps"] == [2, 2] and (stored["n_pf"], stored["ess_npf_max"]) == (4, 2)


def test_sample_job_killed_in_the_ess_curve_resumes_bit_identically(tmp_path) -> None:
    """A real kill -9 after the first stored batch of the ESS(N_pf) fields (the second phase of the pseudo-marginal
    sample job, after the two batches of proposals): the rerun loads all three, restores the random state and
    writes the uninterrupted job's sample.json, its chain and both ESS curves, to the last bit."""
    import os
    import subprocess
    import sys

    a, b = tmp_path / "a", tmp_path / "b"
    train_job(cfg(ess_npf_max=2), out=a, progress=False)
    b.mkdir()
    for f in ("checkpoint.pt", "config.json"):
        (b / f).write_bytes((a / f).read_bytes())
    whole = sample_job(a, seed=3, n_pf=2)
    r = subprocess.run([sys.executable, "-m", "latticekit.app.cli", "sample", str(b), "--seed", "3", "--n-pf", "2"],
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "LATTICEKIT_KILL_AT": "sample:batch:3"})
    assert r.returncode == -9, r.stderr
    prog = b / ".flow_ensemble.h5.progress"
    assert sorted(p.name for p in (prog / "proposals").glob("batch_*")) == ["batch_000000.pt", "batch_000001.pt"]
    assert sorted(p.name for p in (prog / "ess_vs_npf").glob("batch_*")) == ["batch_000000.pt"]
    resumed = sample_job(b, seed=3, n_pf=2)
    drop = {"wall_s", "output", "plot", "checkpoint"}
    assert {k: v for k, v in resumed.items() if k not in drop} == {k: v for k, v in whole.items() if k not in drop}
    assert "ess_vs_npf" in resumed and "exact_marginal_chain" in resumed and not prog.exists()


def test_train_and_sample_job(tmp_path) -> None:
    out = tmp_path / "pf"
    res = train_job(cfg(ess_npf_max=4), out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 3
    assert res["log_z_exact"] is None and res["kl_log_z"] == "estimate"  # no closed-form Z with fermions
    s = sample_job(out, n=32, seed=2, n_pf=2)
    assert s["n_pf"] == 2 and 0 < s["joint_ess"] <= 1 and 0 < s["marginal_ess"] <= 1
    curve = s["ess_vs_npf"]
    assert sorted(curve["ess"]) == ["1", "2", "4"] and "fit" in curve and "C" in curve["ratio_fit"]
    assert_close(torch.tensor([curve["ratio_to_marginal"][k] * curve["marginal_ess"] for k in curve["ess"]],
                              dtype=torch.float64),
                 torch.tensor(list(curve["ess"].values()), dtype=torch.float64),
                 rtol=1e-12, atol=0)  # the ratio is to the same fields' marginal ESS
    assert len(s["condition_numbers"]) == 2 and all(c["max"] >= c["mean"] >= 1 for c in s["condition_numbers"])
    em = s["exact_marginal_chain"]   # the same proposals with exact determinants (dense at this size)
    assert 0 < em["acceptance"] <= 1
    assert {"plaquette", "topological_charge", "C_pi_t0"} <= set(em["observables"]) <= set(s["observables"])
    assert all(v["error"] > 0 and abs(v["reweighted"]["value"]) < float("inf") for v in em["observables"].values())
    assert {"plaquette", "topological_charge", "C_pi_t0"} <= set(s["observables"])
    stored = json.loads((out / "sample.json").read_text())
    assert stored["joint_ess"] == s["joint_ess"]
    text = flow_summary(out)["text"]
    assert "N_pf = 2" in text and "marginal ESS (exact det)" in text and "exact-determinant chain" in text
    # the command line takes --n-pf
    assert main(["sample", str(out), "--n", "16", "--n-pf", "1"]) == 0


def test_n_pf_is_refused_for_other_families(tmp_path) -> None:
    out = tmp_path / "u1"
    train_job({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "beta": 1.0},
               "model": {"n_layers": 2, "hidden": [2]}, "train": {"steps": 1, "batch_size": 4, "eval_batch_size": 4}},
              out=out, progress=False)
    with pytest.raises(ConfigError, match="n_pf=2: only pseudofermion flows"):
        sample_job(out, n=8, n_pf=2)


def test_cg_failure_keeps_the_last_checkpoint(tmp_path) -> None:
    """A CG that cannot converge (maxiter far too small at kappa = 0.26) stops training with a message naming
    action.kappa; the checkpoint written before stays loadable."""
    out = tmp_path / "pf"
    c = cfg()
    c["train"]["steps"] = 1
    train_job(c, out=out, progress=False)
    c["train"]["steps"] = 3
    c["action"].update(kappa=0.26, cg_maxiter=2)
    with pytest.raises(ConfigError):  # a changed configuration is refused for the same folder
        train_job(c, out=out, progress=False)
    with pytest.raises(PseudofermionSolveError, match="action.kappa = 0.26"):
        train_job(c, out=tmp_path / "pf2", progress=False)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 1



def test_killed_run_resumes_bit_identically(killed_and_resumed) -> None:
    """A run that dies after its step-2 checkpoint and is resumed ends bit-identical to an uninterrupted one: the
    pseudofermion draws come from the trainer's checkpointed generator and the CG solves are deterministic."""
    full, resumed, res = killed_and_resumed(cfg(), kill_at=2)
    assert res["resumed_from_step"] == 2 and res["steps"] == 3
    a, b = full["model"], resumed["model"]
    for k, v in a.items():
        assert torch.equal(v, b[k]), k
