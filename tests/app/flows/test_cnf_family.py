"""The flow-model family ``model.coupling = "cnf"`` (the standard CNF with a lattice-spanning kernel, the comparison
of the super-resolving paper, Sec. VI B): configuration keys and refusals, the model it builds (the paper's
parameter count), a tiny train + sample job through the command, and a killed run resuming bit-identically."""

from __future__ import annotations

import json

import pytest
import torch

from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.flows import Flow, GaussianPrior
from latticekit.flows.superres import FullKernelCNF
from latticekit.flows.superres.local_cnf import DEFAULT_MAX_STEPS
from latticekit.utils import ConfigError


def cfg(shape=(4, 4), **model) -> dict:
    m = {"coupling": "cnf", "n_basis": 3, "n_time": 2, "bond_basis": 2, "bond_time": 2, "ode_train_rtol": 1e-6,
         "ode_train_atol": 1e-6}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.02}, "model": m,
            "train": {"steps": 3, "batch_size": 8, "lr": 5e-3, "checkpoint_every": 1, "eval_batch_size": 8},
            "sample": {"n": 32, "batch": 16}}


@pytest.mark.parametrize("patch,match", [
    ({"n_basis": 0}, "model.n_basis"),
    ({"prior_std": -1.0}, "model.prior_std"),
    ({"ode_max_steps": -2}, "model.ode_max_steps"),
    ({"kernel_size": 5}, "unknown key model.kernel_size"),
    ({"n_layers": 0}, "model.n_layers"),
    ({"init": "xavier"}, "model.init"),
])
def test_config_refusals(patch: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(**patch))


def test_family_belongs_to_phi4() -> None:
    from latticekit.theories.phi4 import Phi4Theory

    assert "cnf" in Phi4Theory.flow_families
    with pytest.raises(ConfigError, match=r"model.coupling: expected one of .* for action.kind = 'wilson'"):
        FlowConfig.from_dict({**cfg(), "action": {"kind": "wilson", "group": "U1", "beta": 1.0}})


def test_built_model() -> None:
    model, action, lat = build_flow(FlowConfig.from_dict(cfg((8, 6))))
    assert isinstance(model.prior, GaussianPrior) and isinstance(model.flow, FullKernelCNF)
    assert model.flow.lattice_shape == (8, 6) and model.flow.n_orbits == 5 * 4   # (L0/2 + 1)(L1/2 + 1), no swap
    assert (model.flow.train_rtol, model.flow.max_steps, model.flow.adjoint) == (1e-6, DEFAULT_MAX_STEPS, False)
    assert model.flow.init == "gerdes"
    normal, _, _ = build_flow(FlowConfig.from_dict(cfg(init="normal")))
    assert normal.flow.init == "normal"
    # the paper's comparison model on 32x32 (defaults F = 30, D = 10, F' = D' = 20): 62029 parameters, about
    # twice the three IR-matching CNFs (3 x 10430), as Sec. VI B states
    paper = {"lattice": {"shape": [32, 32]}, "action": {"kind": "phi4", "kappa": 0.25, "lam": 0.01},
             "model": {"coupling": "cnf"}}
    big, _, _ = build_flow(FlowConfig.from_dict(paper))
    assert sum(p.numel() for p in big.parameters()) == 153 * 400 + 600 + 200 + 29 == 62029
    two, _, _ = build_flow(FlowConfig.from_dict(cfg(n_layers=2, ode_max_steps=0)))
    assert isinstance(two.flow, Flow) and len(two.flow) == 2
    assert [layer.max_steps for layer in two.flow.layers] == [None, None]


def test_train_and_sample_job_through_the_command(tmp_path, capsys, write_toml) -> None:
    from latticekit.app.cli import main

    path = write_toml(cfg(), "cnf.toml")
    out = tmp_path / "run"
    assert main(["train", str(path), "--out", str(out), "--quiet"]) == 0
    ck = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    assert float(ck["flow.w_spatial"].abs().max()) > 0   # trained away from the identity
    s = sample_job(out, n=32, batch=16)
    data = json.loads((out / "sample.json").read_text())
    assert 0 < data["proposal_ess"] <= 1 and s["n"] == 32 and 0 < s["acceptance"] <= 1
    assert {"abs_magnetization", "susceptibility", "action_density"} <= set(s["observables"])


def test_killed_run_resumes_bit_identically(killed_and_resumed) -> None:
    full, resumed, res = killed_and_resumed(cfg(), kill_at=2)
    assert res["resumed_from_step"] == 2 and res["steps"] == 3
    for k, v in full["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
