"""The flow-model family ``model.coupling = "plaquette_prior"`` (2D U(1) plaquette-variable prior): refusals
before any work, the models it builds, and a train + sample job whose flow MCMC agrees with the exact values."""

from __future__ import annotations

import json

import pytest

from latticekit import exact
from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.train import train_job
from latticekit.flows.u1_plaquette_prior import U1PlaquettePrior
from latticekit.utils import ConfigError


def cfg(shape=(8, 8), group="U1", **model) -> dict:
    m = {"coupling": "plaquette_prior"}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": {"kind": "wilson", "group": group, "beta": 3.0},
            "model": m, "train": {"steps": 4, "batch_size": 16, "lr": 1e-2, "checkpoint_every": 10,
                                  "eval_batch_size": 256}, "sample": {"n": 4096, "batch": 1024}}


@pytest.mark.parametrize("shape, patch, match", [
    ((4, 4, 4), {}, r"lattice.shape: model.coupling = 'plaquette_prior' is the 2D U\(1\) .* 3D lattice"),
    ((8, 6), {"n_layers": 2}, r"lattice.shape: the stripe couplings .* divisible by 4, got \[8, 6\]"),
    ((8, 8), {"n_layers": 0, "learn_beta": False}, "model.learn_beta: with n_layers = 0 and learn_beta = false"),
    ((8, 8), {"prior_beta": -1.0}, "model.prior_beta"),
    ((8, 8), {"prior_beta": 0.0}, "model.prior_beta = 0 with learn_beta = true: .* no gradient at 0"),  # NaN at step 1
    ((8, 8), {"coarse_shape": [2, 2]}, "unknown key model.coarse_shape"),
])
def test_config_refusals(shape, patch: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(shape, **patch))


def test_group_refusal_names_the_option() -> None:
    with pytest.raises(ConfigError, match=r"action.group: model.coupling = 'plaquette_prior' is for U\(1\)"):
        build_flow(FlowConfig.from_dict(cfg(group="SU2")))


def test_built_models() -> None:
    model, _, _ = build_flow(FlowConfig.from_dict(cfg((8, 6))))
    assert isinstance(model.prior, U1PlaquettePrior) and len(model.flow) == 0
    assert float(model.prior.kappa.detach()) == 3.0 and model.prior.kappa.requires_grad
    model, _, _ = build_flow(FlowConfig.from_dict(cfg(n_layers=2, hidden=[4], prior_beta=2.5, learn_beta=False)))
    assert len(model.flow) == 2 and float(model.prior.kappa) == 2.5 and not model.prior.kappa.requires_grad


def test_train_and_sample_job(tmp_path) -> None:
    """Training fits kappa (4 steps), then ``latticekit sample``: flow MCMC of 4096 steps with the exact
    plaquette and chi_t within 4 Gamma-method errors of latticekit.exact (fixed seeds)."""
    out = tmp_path / "pp"
    res = train_job(cfg(), out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 4 and res["n_parameters"] == 1
    assert 0.2 < res["ess"] <= 1.0
    s = sample_job(out, n=4096, seed=2)
    assert 0.1 < s["acceptance"] < 1
    ref = {"plaquette": exact.u1_2d_plaquette(3.0, (8, 8)), "chi_t": exact.u1_2d_topological_susceptibility(3.0, (8, 8))}
    for name, val in ref.items():
        o = s["observables"][name]
        assert abs(o["value"] - val) < 4 * o["error"], (name, o, val)
    assert json.loads((out / "config.json").read_text())["model"]["coupling"] == "plaquette_prior"
