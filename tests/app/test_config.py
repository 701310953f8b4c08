"""The one configuration schema: every bad input fails before any work, with the key named; every key
is read or refused; stored configurations of earlier versions are still read."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest

from latticekit.app.config import FlowConfig, RunConfig, load_config
from latticekit.utils import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_default_is_2d_u1_l16_beta2() -> None:
    cfg = load_config(None)
    assert cfg.lattice.shape == [16, 16]
    assert (cfg.action.kind, cfg.action.group, cfg.action.beta) == ("wilson", "U1", 2.0)
    assert cfg.sampler.algorithm == "hmc" and cfg.theory.describe() == "U(1) Wilson (beta=2.0)"


@pytest.mark.parametrize(
    "data, key",
    [
        ({"sampler": {"stepsize": 0.1}}, "sampler.stepsize"),
        ({"samplr": {}}, "samplr"),
        ({"sampler": {"step_size": -0.1}}, "sampler.step_size"),
        ({"sampler": {"step_size": "big"}}, "sampler.step_size"),
        ({"sampler": {"chains": 2.5}}, "sampler.chains"),
        ({"sampler": {"integrator": "rk4"}}, "sampler.integrator"),
        ({"action": {"group": "SO3"}}, "action.group"),
        ({"action": {"beta": 0}}, "action.beta"),
        ({"lattice": {"shape": [16]}}, "lattice.shape"),
        ({"lattice": {"shape": [4, -4]}}, "lattice.shape"),
        ({"lattice": {"shape": [5, 5]}, "sampler": {"algorithm": "heatbath"}}, "lattice.shape"),
        ({"action": {"kind": "phi4"}, "sampler": {"algorithm": "heatbath"}}, "sampler.algorithm"),
        ({"measure": {"wilson_loops": [[1]]}}, "measure.wilson_loops"),
        ({"output": {"checkpoint_every": 0}}, "output.checkpoint_every"),
        # numbers are finite and in range
        ({"sampler": {"step_size": math.inf}}, "sampler.step_size"),
        ({"sampler": {"step_size": math.nan}}, "sampler.step_size"),
        ({"sampler": {"step_size": 1e3}}, "sampler.step_size"),
        ({"action": {"beta": 1e300}}, "action.beta"),
        ({"action": {"kind": "phi4", "kappa": 1e6}}, "action.kappa"),
        ({"action": {"kind": "wilson_nf2", "kappa": 10.0}}, "action.kappa"),        # printed NaN errors before
        ({"action": {"kind": "wilson_nf2", "kappa": 1e6}}, "action.kappa"),
        ({"sampler": {"measurements": 1}}, "sampler.measurements"),               # the Gamma method needs two
        ({"action": {"kind": "phi4"}, "output": {"store_every": 5}}, "output.store_every"),  # phi4 stores no ensemble
        ({"action": {"kind": "phi4", "kappa": math.inf}}, "action.kappa"),
        ({"action": {"kind": "phi4", "lam": 1e300}}, "action.lam"),
        ({"action": {"kind": "phi4", "kappa": 0.3, "lam": 0.0}}, "action.kappa"),   # free field: kappa < 1/(2 Nd)
        ({"sampler": {"measurements": 0}}, "sampler.measurements"),
        ({"sampler": {"thermalization": -1}}, "sampler.thermalization"),
        ({"measure": {"every": 0}}, "measure.every"),
        # keys of another theory, another algorithm, another section
        ({"action": {"kind": "phi4", "group": "U1"}}, "action.group"),
        ({"action": {"kind": "wilson", "lam": 0.5}}, "action.lam"),
        ({"action": {"kind": "wilson", "kappa": 0.1}}, "action.kappa"),
        ({"action": {"kind": "ising"}}, "action.kind"),
        ({"sampler": {"algorithm": "hmc", "overrelaxation": 2}}, "sampler.overrelaxation"),
        ({"sampler": {"algorithm": "heatbath", "step_size": 0.1}}, "sampler.step_size"),
        ({"sampler": {"n_inner": 1}}, "sampler.n_inner"),
        ({"action": {"kind": "phi4"}, "measure": {"wilson_loops": [[1, 1]]}}, "measure.wilson_loops"),
        ({"lattice": {"shape": [4, 4]}, "measure": {"wilson_loops": [[5, 1]]}}, "measure.wilson_loops"),
        ({"lattice": {"shape": [4, 4]}, "measure": {"wilson_loops": [[1, 5]]}}, "measure.wilson_loops"),
        ({"measure": {"wilson_loops": [[2, 2], [1, 1], [2, 2]]}}, "measure.wilson_loops"),   # doubled its tau_int
        ({"measure": {"observables": ["plaquette", "susceptibility"]}}, "measure.observables"),
        ({"measure": {"observables": "plaquette"}}, "measure.observables"),
        ({"model": {"coupling": "affine"}}, "model"),                  # a flow section: not read by run
        ({"train": {}}, "train"),
        ({"output": {"plots": "yes"}}, "output.plots"),
        ({"sampler": []}, "sampler"),
    ],
)
def test_bad_config_names_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RunConfig.from_dict(data)


def test_unknown_keys_say_who_reads_them() -> None:
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"sampler": {"overrelaxation": 2}})
    msg = str(info.value)
    assert msg.startswith("unknown key sampler.overrelaxation") and "algorithm = 'heatbath'" in msg
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict({"action": {"kind": "phi4", "beta": 2.0}})
    assert "takes kappa, lam" in str(info.value) and "action.kind = 'wilson'" in str(info.value)
    with pytest.raises(ConfigError, match=r"unknown section \[model\]; latticekit run reads \[lattice\]"):
        RunConfig.from_dict({"model": {}})
    with pytest.raises(ConfigError, match=r"unknown section \[sampler\]; latticekit train reads"):
        FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "sampler": {}})


def test_measure_observables_select_and_loops_fit() -> None:
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "measure": {"observables": ["chi_t"],
                                                                         "wilson_loops": [[4, 2]]}})
    assert cfg.theory.select(cfg.measure.observables) == (["topological_charge"], ["chi_t"])
    assert cfg.theory.select([]) == (["plaquette", "topological_charge", "wilson_loop_4x2"], ["chi_t"])
    # a loop or the flowed charge not configured: the error says which [measure] setting measures it (the list of
    # available names alone did not; user probe)
    with pytest.raises(ConfigError, match=r"^measure\.observables: 'wilson_loop_2x1', 'topological_charge_flowed' "
                                          r"not available .*; wilson_loop_TxR is measured for each \[T, R\] listed "
                                          r"in measure\.wilson_loops; topological_charge_flowed needs "
                                          r"measure\.flowed_topology_t > 0 \(4D SU\(N\)\)$"):
        RunConfig.from_dict({"lattice": {"shape": [4, 2, 2, 2]}, "action": {"group": "SU2"},
                             "measure": {"observables": ["wilson_loop_2x1", "topological_charge_flowed"]}})
    with pytest.raises(ConfigError, match=r"^measure\.observables: 'plaq' not available .*available: [a-z_, ]*$"):
        RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "measure": {"observables": ["plaq"]}})


def test_one_spelling_per_group_and_no_observable_twice() -> None:
    """'su2' and 'SU(2)' ran the same theory as 'SU2' but counted as another run when a job resumed (the identity
    is the configuration as read; user probe): the name is normalised when read. An observable listed twice was
    accepted silently (measured once), where `latticekit compare` refuses it."""
    for spelt, canonical in [("su2", "SU2"), ("SU(3)", "SU3"), ("u(1)", "U1"), ("SU2", "SU2")]:
        cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"group": spelt}})
        assert cfg.to_dict()["action"]["group"] == canonical
        assert cfg == RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"group": canonical}})
    with pytest.raises(ConfigError, match=r"^action\.group: expected 'U1' or 'SU<N>'"):
        RunConfig.from_dict({"action": {"group": "SU1"}})
    with pytest.raises(ConfigError, match=r"^measure\.observables: 'plaquette' listed more than once"):
        RunConfig.from_dict({"measure": {"observables": ["plaquette", "chi_t", "plaquette"]}})


def test_every_key_is_read_store_every_only_by_gauge_theories() -> None:
    phi4 = RunConfig.from_dict({"action": {"kind": "phi4"}})
    assert "store_every" not in phi4.to_dict()["output"] and RunConfig.from_dict(phi4.to_dict()) == phi4
    assert RunConfig.from_dict({}).to_dict()["output"]["store_every"] == 10
    # results.json of the previous version stored it for phi4 too: read back, it is dropped
    old = {**phi4.to_dict(), "output": {"checkpoint_every": 50, "store_every": 10, "plots": True}}
    assert RunConfig.from_stored(old) == phi4


def test_toml_file_errors(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lattice\nshape = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="is a folder; expected a TOML file"):   # IsADirectoryError before
        load_config(tmp_path)


def test_examples_are_valid() -> None:
    files = sorted(EXAMPLES.glob("*.toml")) + sorted((EXAMPLES / "validation").glob("*.toml"))
    assert files, "examples/ holds the configuration files of the main jobs"
    for f in files:
        # flow-job files are those with a [model] section (u1_2d_flow.toml, multiscale_*.toml, schwinger_pf_*.toml)
        flow = "model" in tomllib.loads(f.read_text())
        cfg = FlowConfig.from_file(f) if flow else RunConfig.from_file(f)
        assert FlowConfig.from_dict(cfg.to_dict()) == cfg if flow else RunConfig.from_dict(cfg.to_dict()) == cfg
    for name in ("u1_2d_flow.toml", "su2_4d_flow.toml"):  # the examples use the one name of the option
        assert "loop_context = " in (EXAMPLES / name).read_text() and "\nrectangle_context" not in (EXAMPLES / name).read_text()


def test_to_dict_holds_what_is_read() -> None:
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"group": "SU2"},
                               "sampler": {"algorithm": "heatbath"}})
    d = cfg.to_dict()
    assert d["action"] == {"kind": "wilson", "group": "SU2", "beta": 2.0}
    assert d["sampler"] == {"algorithm": "heatbath", "chains": 8, "thermalization": 100, "measurements": 400,
                            "overrelaxation": 1}
    assert RunConfig.from_dict(d) == cfg


def test_stored_configurations_of_earlier_versions_are_read() -> None:
    # results.json of the previous version: every key of every section, read or not
    old = {"lattice": {"shape": [4, 4]},
           "action": {"kind": "phi4", "group": "U1", "beta": 2.0, "kappa": 0.2, "lam": 0.5, "even_odd": False,
                      "hasenbusch_mus": [], "cg_tol": 1e-10, "cg_tol_md": 1e-8, "cg_maxiter": 2000},
           "sampler": {"algorithm": "hmc", "chains": 2, "thermalization": 3, "measurements": 6, "step_size": 0.2,
                       "n_steps": 5, "integrator": "omelyan", "overrelaxation": 1, "n_inner": 0},
           "measure": {"every": 1, "observables": [], "wilson_loops": []},
           "output": {"checkpoint_every": 50, "store_every": 10, "plots": True}}
    with pytest.raises(ConfigError, match="action.group"):
        RunConfig.from_dict(old)
    cfg = RunConfig.from_stored(old)
    assert cfg.to_dict()["action"] == {"kind": "phi4", "kappa": 0.2, "lam": 0.5}
    assert "overrelaxation" not in cfg.to_dict()["sampler"]
    with pytest.raises(ConfigError, match="action.kappa"):   # stored values are still validated
        RunConfig.from_stored({**old, "action": {**old["action"], "kappa": -1.0}})


@pytest.mark.parametrize("patch, key", [
    ({"model": {"coupling": "plaquette", "bound": 4.0}}, "model.bound"),        # a spline key
    ({"model": {"coupling": "plaquette", "prior_std": 1.0}}, "model.prior_std"),
    ({"model": {"coupling": "plaquette", "loop_context": True, "rectangle_context": True}}, "model.rectangle_context"),
    ({"model": {"coupling": "plaquette", "hidden": [4, -1]}}, "model.hidden"),
    ({"model": {"coupling": "checkerboard", "act": "swish"}}, "model.act"),
    ({"train": {"lr": math.inf}}, "train.lr"),
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"train": {"batch_size": 1}}, "train.batch_size"),
    ({"sample": {"seed": -1}}, "sample.seed"),
    ({"measure": {}}, "measure"),                                               # a run section
])
def test_flow_config_refuses(patch: dict, key: str) -> None:
    cfg = {"lattice": {"shape": [4, 4]}, **patch}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        FlowConfig.from_dict(cfg)


def test_loop_context_and_its_alias() -> None:
    a = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "model": {"loop_context": False}})
    b = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "model": {"rectangle_context": False}})
    assert a == b and a.model.loop_context is False and "rectangle_context" not in a.to_dict()["model"]
    # a config.json of the previous version: every [model] key, under the old name
    old = {"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "U1", "beta": 2.0},
           "model": {"coupling": "plaquette", "n_layers": 16, "hidden": [8, 8], "kernel_size": 3, "act": "leaky_relu",
                     "bins": 8, "bound": 4.0, "tanh_scale": True, "zero_init": False, "prior_std": 1.0,
                     "rectangle_context": False}}
    assert FlowConfig.from_stored(old).to_dict()["model"] == a.to_dict()["model"]


def test_a_key_and_its_alias_together_name_the_alias() -> None:
    # the message said "'loop_context' is another name of 'loop_context'" when the alias came first
    cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson", "group": "U1"},
           "model": {"rectangle_context": True, "loop_context": True}}
    with pytest.raises(ConfigError, match="'rectangle_context' is another name of 'loop_context'"):
        FlowConfig.from_dict(cfg)
