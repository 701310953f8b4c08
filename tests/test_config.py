"""Configuration validation: every bad input fails before any work with the key named."""

from __future__ import annotations

import pytest

from latticekit.config import ConfigError, RunConfig, load_config


def test_default_is_2d_u1_l16_beta2() -> None:
    cfg = load_config(None)
    assert cfg.lattice.shape == [16, 16]
    assert (cfg.action.kind, cfg.action.group, cfg.action.beta) == ("wilson", "U1", 2.0)


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
    ],
)
def test_bad_config_names_the_key(data: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        RunConfig.from_dict(data)


def test_toml_file_errors(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[lattice\nshape = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_examples_are_valid() -> None:
    from pathlib import Path

    files = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))
    assert files, "examples/ holds the configuration files of the main jobs"
    for f in files:
        if "flow" in f.name:
            continue  # flow training configs are validated by latticekit.flows
        RunConfig.from_file(f)
