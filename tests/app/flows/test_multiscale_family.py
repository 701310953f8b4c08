"""The flow-model family ``model.coupling = "multiscale"``: configuration keys and refusals (each error names the
option and the expected form, before any training), the model it builds, and a tiny train + sample job."""

from __future__ import annotations

import json

import pytest

from latticekit.app.config import FlowConfig
from latticekit.app.flows.models import build_flow
from latticekit.app.flows.sample import sample_job
from latticekit.app.flows.train import train_job
from latticekit.flows.multiscale import CoarseTheoryPrior, MultiscalePrior
from latticekit.utils import ConfigError


def cfg(shape=(4, 4), group="U1", **model) -> dict:
    m = {"coupling": "multiscale", "n_layers": 2, "hidden": [4], "conditional_hidden": [4],
         "conditional_layers": 1}
    m.update(model)
    return {"lattice": {"shape": list(shape)}, "action": {"kind": "wilson", "group": group, "beta": 2.0},
            "model": m, "train": {"steps": 3, "batch_size": 8, "lr": 1e-2, "checkpoint_every": 10,
                                  "eval_batch_size": 16}, "sample": {"n": 64, "batch": 32}}


@pytest.mark.parametrize("patch, match", [
    ({"shape": (8, 6)}, r"model.coarse_shape: coarse=\(2, 2\): the target lattice \(8, 6\) must be coarse x 2\^k"),
    ({"coarse_shape": [8, 2]}, r"model.coarse_shape: coarse=\(8, 2\): the coarse lattice is larger than the target"),
    ({"coarse_shape": [2]}, r"model.coarse_shape: coarse=\(2,\): expected 2 extents"),
    ({"order": [0, 0]}, r"model.order: order=\[0, 0\]: from \(2, 2\) to \(4, 4\) direction 0 needs 1"),
    ({"coarse_prior": "theory"}, "model.coarse_beta: coarse_prior = 'theory' needs the coupling"),
    ({"coarse_prior": "theory", "coarse_beta": 1.0, "coarse_shape": [1, 1]}, "model.coarse_shape: .*even coarse"),
    ({"coarse_beta": 1.0}, "model.coarse_beta: only read with coarse_prior = 'theory'"),
    ({"fine_masks": "stripes", "shape": (2, 4)}, "model.fine_masks: the stripe couplings need"),
    ({"prior": "gauss"}, "model.prior"),
    ({"prior_beta": 0.0}, r"model.prior_beta: 0 with learn_beta = true"),   # a NaN gradient at step 1 before
    ({"conditional_layers": -1}, "model.conditional_layers"),
    ({"bound": 3.0}, "unknown key model.bound"),
])
def test_config_refusals(patch: dict, match: str) -> None:
    shape = patch.pop("shape", (4, 4))
    with pytest.raises(ConfigError, match=match):
        FlowConfig.from_dict(cfg(shape, **patch))


def test_group_refusals_name_the_option() -> None:
    with pytest.raises(ConfigError, match=r"model.prior: prior='heatbath'.*action.group = 'SU\(3\)'"):
        build_flow(FlowConfig.from_dict(cfg(group="SU3", prior="heatbath")))
    with pytest.raises(ConfigError, match=r"model.conditional_layer: layer='spline'"):
        build_flow(FlowConfig.from_dict(cfg(group="SU2", conditional_layer="spline")))
    with pytest.raises(ConfigError, match="action.group"):
        FlowConfig.from_dict(cfg(group="SO3"))


def test_built_models() -> None:
    model, action, lat = build_flow(FlowConfig.from_dict(cfg((8, 8), n_layers=0, order=[1, 0, 1, 0])))
    assert isinstance(model.prior, MultiscalePrior) and len(model.flow) == 0
    assert model.prior.order == [1, 0, 1, 0] and model.prior.coarse == (2, 2)
    c = FlowConfig.from_dict(cfg((4, 4, 4, 4), coarse_prior="theory", coarse_beta=0.5, n_layers=None))
    assert c.model.n_layers == 8 and c.model.coarse_shape == []
    model, _, _ = build_flow(c)
    assert isinstance(model.prior.model.coarse_prior, CoarseTheoryPrior) and len(model.flow) == 8
    assert FlowConfig.from_dict(cfg((8, 8), n_layers=None)).model.n_layers == 8


def test_train_and_sample_job(tmp_path) -> None:
    out = tmp_path / "ms"
    res = train_job(cfg(), out=out, progress=False)
    assert res["status"] == "finished" and res["steps"] == 3
    s = sample_job(out, n=64, seed=2)
    assert 0 <= s["acceptance"] <= 1 and "plaquette" in s["observables"]
    stored = json.loads((out / "config.json").read_text())
    assert stored["model"]["coupling"] == "multiscale"
