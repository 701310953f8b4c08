"""The Wilson + Nf = 2 theory: its pion correlator is the library's, every [action]/[sampler] key reaches
the sampler, bad values are refused naming the key (moved from tests/mc/test_nf2.py)."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import latticekit as lk
from latticekit.actions import WilsonDirac
from latticekit.app.config import RunConfig
from latticekit.gauge import random_gauge_field
from latticekit.mc import Nf2HMC
from latticekit.testing import assert_close
from latticekit.utils import ConfigError

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _nf2_config(n_inner=0, **action):
    a = {"kind": "wilson_nf2", "group": "U1", "beta": 2.0, "kappa": 0.25, "even_odd": True}
    a.update(action)
    return RunConfig.from_dict({
        "lattice": {"shape": [4, 4]}, "action": a,
        "sampler": {"chains": 2, "thermalization": 1, "measurements": 4, "step_size": 0.25, "n_steps": 2,
                    "n_inner": n_inner},
        "output": {"checkpoint_every": 2, "store_every": 2, "plots": False}})


def test_job_wilson_nf2_pion_correlator_is_the_observable(bk):
    """The theory's C_pi_t equal latticekit.observables.pion_correlator on the same configurations."""
    from latticekit.observables import pion_correlator

    cfg = _nf2_config(even_odd=False, hasenbusch_mus=[])
    th = cfg.theory
    lat = lk.Lattice((4, 4))
    U = random_gauge_field(lk.U1, lat, bk.rng(1), (2,))
    m = th.measure(U)
    C = bk.to_numpy(pion_correlator(WilsonDirac(U, lk.U1, lat, kappa=0.25)))
    for t in range(3):
        assert_close(m[f"C_pi_t{t}"], C[:, t], rtol=1e-12, atol=0)
    # the per-name functions give the same values
    assert_close(th.observables(["C_pi_t1"])["C_pi_t1"](U), C[:, 1], rtol=1e-12, atol=0)
    hmc = th.sampler("hmc", cfg.sampler.variant, rng=lk.backends.rng(0))
    assert isinstance(hmc, Nf2HMC) and hmc.multiscale is None and len(hmc.target.monomials) == 1
    # every option reaches the sampler
    cfg = _nf2_config(n_inner=3, hasenbusch_mus=[0.1, 0.4], cg_tol=1e-11, cg_tol_md=1e-7, cg_maxiter=500)
    hmc = cfg.theory.sampler(cfg.sampler.algorithm, cfg.sampler.variant, rng=lk.backends.rng(0))
    t = hmc.target
    assert hmc.multiscale.n_inner == 3 and t.even_odd and [m.mu_hi for m in t.monomials] == [0.1, 0.4, None]
    assert (t.tol, t.md_tol, t.maxiter, hmc.step_size, hmc.n_steps) == (1e-11, 1e-7, 500, 0.25, 2)


def test_per_name_functions_share_one_solve_per_batch(bk, monkeypatch):
    """The C_pi_t functions of Theory.observables solve once per batch (the flow-MCMC chain asks for them one
    after another): a new batch, or the same one modified in place, is measured again; values as measure()."""
    import latticekit.observables as obs

    th = _nf2_config(even_odd=False, hasenbusch_mus=[]).theory
    lat = lk.Lattice((4, 4))
    U = random_gauge_field(lk.U1, lat, bk.rng(1), (2,))
    V = random_gauge_field(lk.U1, lat, bk.rng(2), (2,))
    calls = []
    real = obs.pion_correlator
    monkeypatch.setattr(obs, "pion_correlator", lambda *a, **k: calls.append(1) or real(*a, **k))
    fs = th.observables()
    names = [f"C_pi_t{t}" for t in range(3)]
    got = {n: bk.to_numpy(fs[n](U)) for n in names}
    assert len(calls) == 1
    ref = th.measure(U)
    assert len(calls) == 2
    for n in names:
        assert_close(got[n], bk.to_numpy(ref[n]), rtol=1e-12, atol=0)
    for n in names:
        fs[n](V)
    assert len(calls) == 3
    assert np.abs(bk.to_numpy(fs["C_pi_t1"](V)) - got["C_pi_t1"]).max() > 1e-3   # another batch, other values
    assert len(calls) == 3
    if bk.name == "torch":    # an in-place change is seen through torch's version counter
        V.mul_(-1.0)
        fs["C_pi_t0"](V)
        assert len(calls) == 4


@pytest.mark.parametrize("action, key", [
    ({"kappa": 0.0}, "action.kappa"),
    ({"kappa": 1e300}, "action.kappa"),
    ({"even_odd": "yes"}, "action.even_odd"),
    ({"hasenbusch_mus": [0.5, 0.1]}, "action.hasenbusch_mus"),
    ({"hasenbusch_mus": [-0.1]}, "action.hasenbusch_mus"),
    ({"hasenbusch_mus": [0.1, "x"]}, "action.hasenbusch_mus"),
    ({"cg_tol": 0.0}, "action.cg_tol"),
    ({"cg_tol": float("nan")}, "action.cg_tol"),
    ({"cg_maxiter": 0}, "action.cg_maxiter"),
    ({"lam": 0.5}, "action.lam"),                      # a phi^4 key
])
def test_config_wilson_nf2_bad_values_name_the_key(action, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _nf2_config(**action)


def test_config_wilson_nf2_consistency():
    with pytest.raises(ConfigError, match=r"lattice\.shape"):  # even/odd on odd extents
        RunConfig.from_dict({"lattice": {"shape": [4, 5]}, "action": {"kind": "wilson_nf2", "even_odd": True}})
    with pytest.raises(ConfigError, match=r"lattice\.shape"):  # Wilson fermions: 2D or 4D
        RunConfig.from_dict({"lattice": {"shape": [4, 4, 4]}, "action": {"kind": "wilson_nf2"}})
    with pytest.raises(ConfigError, match=r"lattice\.shape"):  # antiperiodic time needs L_0 >= 2
        RunConfig.from_dict({"lattice": {"shape": [1, 4]}, "action": {"kind": "wilson_nf2"}})
    with pytest.raises(ConfigError, match=r"sampler\.algorithm"):
        RunConfig.from_dict({"action": {"kind": "wilson_nf2"}, "sampler": {"algorithm": "heatbath"}})
    with pytest.raises(ConfigError, match=r"sampler\.n_inner"):
        RunConfig.from_dict({"action": {"kind": "wilson"}, "sampler": {"n_inner": 2}})
    with pytest.raises(ConfigError, match=r"sampler\.overrelaxation"):  # a heatbath key, no heatbath here
        RunConfig.from_dict({"action": {"kind": "wilson_nf2"}, "sampler": {"overrelaxation": 1}})
    cfg = RunConfig.from_file(EXAMPLES / "schwinger_nf2.toml")
    assert cfg.action.kind == "wilson_nf2" and cfg.action.hasenbusch_mus == [0.2]
    assert cfg.sampler.n_inner == 2


def test_no_exact_values_but_parity():
    th = _nf2_config().theory
    assert th.exact() == {"topological_charge": 0.0}
    assert th.exact_distribution("topological_charge", 3) is None
    assert th.flow_families == ("pseudofermion", "qcd4d") and th.reference_sampler == "hmc"
    assert th.exact_log_z() is None  # the pure-gauge log Z is not that of the theory with fermions
    from latticekit.app.config import FlowConfig

    with pytest.raises(ConfigError, match="model.coupling"):
        FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "wilson_nf2"},
                              "model": {"coupling": "plaquette"}})
