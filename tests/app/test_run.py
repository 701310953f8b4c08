"""The run job: runs on every backend, agrees with exact results, resumes after a kill; the measure job."""

from __future__ import annotations

import json
import re

import pytest

from latticekit.app.analysis import format_table
from latticekit.app.config import RunConfig
from latticekit.app.measure import measure_job
from latticekit.app.run import run_job
from latticekit.testing import assert_close
from latticekit.theories.wilson import WilsonTheory
from latticekit.utils import ConfigError


def _tiny(**sampler) -> RunConfig:
    s = {"chains": 2, "thermalization": 3, "measurements": 6, "step_size": 0.2, "n_steps": 5}
    s.update(sampler)
    return RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0}, "sampler": s,
                                "output": {"checkpoint_every": 2, "store_every": 2, "plots": False}})


def test_job_runs_on_every_backend(bk, tmp_path) -> None:
    res = run_job(_tiny(), out=tmp_path, seed=3, backend=bk.name, device=bk.device, progress=False, echo=False)
    assert res["backend"] == bk.name
    assert set(res["observables"]) == {"plaquette", "topological_charge", "chi_t"}
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["observables"]["plaquette"]["value"] == res["observables"]["plaquette"]["value"]
    for name in ("value", "error", "tau_int", "exact"):
        assert name in on_disk["observables"]["plaquette"]
    assert res["observables"]["plaquette"]["exact"] is not None


class _Killed(Exception):
    pass


def test_resume_after_kill_is_identical(tmp_path, monkeypatch) -> None:
    cfg = _tiny(measurements=8)
    ref = run_job(cfg, out=tmp_path / "ref", seed=5, progress=False, echo=False)

    calls = {"n": 0}
    orig = WilsonTheory.measure

    def dying(self, x, names=None):
        calls["n"] += 1
        if calls["n"] == 5:  # dies in the third checkpoint segment
            raise _Killed()
        return orig(self, x, names)

    monkeypatch.setattr(WilsonTheory, "measure", dying)
    with pytest.raises(_Killed):
        run_job(cfg, out=tmp_path / "cut", seed=5, progress=False, echo=False)
    monkeypatch.setattr(WilsonTheory, "measure", orig)
    res = run_job(cfg, out=tmp_path / "cut", seed=5, progress=False, echo=False)
    for name, e in ref["observables"].items():
        assert res["observables"][name]["value"] == e["value"], name
        assert res["observables"][name]["error"] == e["error"], name
    # the ensemble holds every stored configuration exactly once
    from latticekit.io import Ensemble

    with Ensemble.open(tmp_path / "cut" / "ensemble.h5") as a, Ensemble.open(tmp_path / "ref" / "ensemble.h5") as b:
        assert len(a) == len(b) == 2 * 4
        keys = sorted((a.info(i)["measurement"], a.info(i)["chain"]) for i in range(len(a)))
        assert keys == sorted((b.info(i)["measurement"], b.info(i)["chain"]) for i in range(len(b)))


def test_state_of_another_run_is_refused(tmp_path) -> None:
    from latticekit.utils import ConfigError

    run_job(_tiny(), out=tmp_path, seed=1, progress=False, echo=False)
    with pytest.raises(ConfigError, match=r"belongs to another run \(seed 1 -> 2\)"):
        run_job(_tiny(), out=tmp_path, seed=2, progress=False, echo=False)
    with pytest.raises(ConfigError, match=r"\(sampler.measurements 6 -> 8\)"):   # the key that differs is named
        run_job(_tiny(measurements=8), out=tmp_path, seed=1, progress=False, echo=False)
    run_job(_tiny(), out=tmp_path, seed=2, fresh=True, progress=False, echo=False)


def test_plots_can_be_switched_on_for_a_finished_run(tmp_path) -> None:
    """``output.plots`` changes no number: a finished run is rerun with plots on (it needed --fresh, which threw
    the data away; user probe); the results are the same and the plots are drawn."""
    first = run_job(_tiny(), out=tmp_path, seed=1, progress=False, echo=False)
    assert not list(tmp_path.glob("*.png"))
    cfg = RunConfig.from_dict({**_tiny().to_dict(), "output": {"checkpoint_every": 2, "store_every": 2,
                                                               "plots": True}})
    again = run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)
    assert again["observables"] == first["observables"]
    assert (tmp_path / "history_plaquette.png").exists()


def test_2d_u1_hmc_and_heatbath_agree_with_exact(tmp_path) -> None:
    # Validation at fast settings: 8x8, beta = 2, 8 chains. The Gamma-method errors include tau_int;
    # |deviation| < 3 sigma fails for a sign or factor error in action, force or observable (a factor 2 in
    # beta moves the plaquette by ~0.15, i.e. > 50 sigma).
    # (each algorithm reads its own [sampler] keys: step_size and n_steps are HMC keys)
    for algo, keys in (("hmc", {"step_size": 0.15, "n_steps": 8}), ("heatbath", {})):
        cfg = RunConfig.from_dict({
            "lattice": {"shape": [8, 8]}, "action": {"beta": 2.0},
            "sampler": {"algorithm": algo, "chains": 8, "thermalization": 30, "measurements": 150, **keys},
            "output": {"plots": False, "checkpoint_every": 200, "store_every": 50}})
        res = run_job(cfg, out=tmp_path / algo, seed=11, progress=False, echo=False)
        for name in ("plaquette", "chi_t"):
            e = res["observables"][name]
            assert abs(e["value"] - e["exact"]) < 3 * e["error"], (algo, name, e)


def test_phi4_free_susceptibility_matches_exact(tmp_path) -> None:
    # free field (lam = 0): chi = V <M^2> = sum_x G(x) exactly; 3 sigma with tau_int-corrected errors
    cfg = RunConfig.from_dict({
        "lattice": {"shape": [6, 6]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.0},
        "sampler": {"chains": 8, "thermalization": 30, "measurements": 200, "step_size": 0.2, "n_steps": 6},
        "output": {"plots": False, "checkpoint_every": 500}})
    res = run_job(cfg, out=tmp_path, seed=2, progress=False, echo=False)
    e = res["observables"]["susceptibility"]
    assert abs(e["value"] - e["exact"]) < 3 * e["error"], e


def test_measure_reproduces_stored_observables(tmp_path) -> None:
    run_job(_tiny(measurements=8), out=tmp_path, seed=4, progress=False, echo=False)
    rem = measure_job(tmp_path, echo=False)
    from latticekit.io import Ensemble

    with Ensemble.open(tmp_path / "ensemble.h5") as ens:
        stored = ens.observable("plaquette")
    assert rem["observables"]["plaquette"]["n"] == len(stored)
    assert_close(rem["observables"]["plaquette"]["value"], float(stored.mean()), rtol=0, atol=1e-12)


# -- action.kind = "wilson_nf2" (moved from tests/mc/test_nf2.py) ---------------------------------------
def _nf2_config(n_inner=0, **action):
    a = {"kind": "wilson_nf2", "group": "U1", "beta": 2.0, "kappa": 0.25, "even_odd": True}
    a.update(action)
    return RunConfig.from_dict({
        "lattice": {"shape": [4, 4]}, "action": a,
        "sampler": {"chains": 2, "thermalization": 1, "measurements": 4, "step_size": 0.25, "n_steps": 2,
                    "n_inner": n_inner},
        "output": {"checkpoint_every": 2, "store_every": 2, "plots": False}})


def test_job_wilson_nf2_runs_and_resumes(bk, tmp_path):
    from latticekit.io import Ensemble

    cfg = _nf2_config()
    res = run_job(cfg, out=tmp_path, seed=3, backend=bk.name, device=bk.device, progress=False, echo=False)
    names = {"plaquette", "topological_charge", "chi_t", "C_pi_t0", "C_pi_t1", "C_pi_t2"}
    assert set(res["observables"]) == names
    assert res["observables"]["plaquette"]["exact"] is None  # no exact values with dynamical fermions
    assert all(res["observables"][f"C_pi_t{t}"]["value"] > 0 for t in range(3))
    assert res["sampler"]["cg_iterations"]["value"] > 0
    with Ensemble.open(tmp_path / "ensemble.h5") as ens:
        assert ens.action == "wilson_nf2" and ens.action_params["kappa"] == 0.25 and len(ens) == 2 * 2
    # a finished run read back from its state gives the same numbers
    again = run_job(cfg, out=tmp_path, seed=3, backend=bk.name, device=bk.device, progress=False, echo=False)
    assert again["observables"]["plaquette"]["value"] == res["observables"]["plaquette"]["value"]


def test_state_of_the_previous_version_resumes(tmp_path) -> None:
    """state.npz of the previous version records every key of every section (here the HMC keys of a
    heatbath run, which it never read); the same run resumes from it."""
    from latticekit.io import load_state, save_state

    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"group": "SU2", "beta": 1.5},
                               "sampler": {"algorithm": "heatbath", "chains": 2, "thermalization": 2,
                                           "measurements": 4},
                               "output": {"checkpoint_every": 2, "plots": False}})
    ref = run_job(cfg, out=tmp_path, seed=3, progress=False, echo=False)
    arrays, meta = load_state(tmp_path / "state.npz")
    old = meta["ident"]["config"]
    old["sampler"].update(step_size=0.1, n_steps=10, integrator="omelyan", n_inner=0)
    old["action"].update(kappa=0.25, lam=0.5, even_odd=False, hasenbusch_mus=[], cg_tol=1e-10, cg_tol_md=1e-8,
                         cg_maxiter=2000)
    save_state(tmp_path / "state.npz", arrays, meta)
    again = run_job(cfg, out=tmp_path, seed=3, progress=False, echo=False)
    assert again["observables"]["plaquette"]["value"] == ref["observables"]["plaquette"]["value"]
    old["action"]["beta"] = 2.5                       # another configuration is refused
    save_state(tmp_path / "state.npz", arrays, meta)
    from latticekit.utils import ConfigError

    with pytest.raises(ConfigError, match=r"another run \(action.beta 2.5 -> "):
        run_job(cfg, out=tmp_path, seed=3, progress=False, echo=False)


def test_a_run_stopped_by_the_solver_limit_resumes_with_a_larger_limit(tmp_path) -> None:
    """action.cg_maxiter decides whether a solve may fail, not the numbers of one that converges: the message
    says what to raise, and the rerun with a larger limit (no --fresh) gives the numbers of an uninterrupted run."""
    from latticekit.linalg.cg import ConvergenceError

    def cfg(maxiter: int) -> RunConfig:
        return RunConfig.from_dict({"lattice": {"shape": [4, 4]},
                                    "action": {"kind": "wilson_nf2", "beta": 2.0, "kappa": 0.25,
                                               "cg_maxiter": maxiter},
                                    "sampler": {"chains": 2, "thermalization": 2, "measurements": 4},
                                    "output": {"checkpoint_every": 2, "plots": False}})

    with pytest.raises(ConvergenceError, match="action.cg_maxiter = 5; raise it .* No checkpoint was written yet"):
        run_job(cfg(5), out=tmp_path / "cut", seed=4, progress=False, echo=False)
    res = run_job(cfg(2000), out=tmp_path / "cut", seed=4, progress=False, echo=False)
    ref = run_job(cfg(2000), out=tmp_path / "ref", seed=4, progress=False, echo=False)
    assert res["observables"] == ref["observables"]
    # other solver keys change the numbers and are still refused
    from latticekit.utils import ConfigError

    c = cfg(2000).to_dict()
    c["action"]["cg_tol"] = 1e-12
    with pytest.raises(ConfigError, match=r"another run \(action.cg_tol 1e-10 -> 1e-12\)"):
        run_job(RunConfig.from_dict(c), out=tmp_path / "ref", seed=4, progress=False, echo=False)


def test_measure_observables_select_what_is_measured(tmp_path) -> None:
    from latticekit.io import load_state

    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0},
                               "sampler": {"chains": 2, "thermalization": 1, "measurements": 3},
                               "measure": {"observables": ["chi_t"], "wilson_loops": [[1, 1]]},
                               "output": {"plots": False, "store_every": 1}})
    res = run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)
    # chi_t brings its input Q along; the plaquette and the configured loop are not measured
    assert list(res["observables"]) == ["topological_charge", "chi_t"]
    arrays, _meta = load_state(tmp_path / "state.npz")
    assert sorted(k for k in arrays if k.startswith("obs_")) == ["obs_topological_charge"]
    rem = measure_job(tmp_path, echo=False)
    assert sorted(rem["observables"]) == ["chi_t", "topological_charge"]
    # approx(rel=1e-12) accepted max(1e-12 |e|, 1e-12): the absolute term (chi_t = <Q^2> / 16 is below 1 here)
    assert_close(rem["observables"]["chi_t"]["value"],
                 sum(q * q for q in _stored_q(tmp_path)) / len(_stored_q(tmp_path)) / 16, rtol=0, atol=1e-12)


def _stored_q(folder) -> list[float]:
    from latticekit.io import Ensemble

    with Ensemble.open(folder / "ensemble.h5") as ens:
        return [float(q) for q in ens.observable("topological_charge")]


# -- issue 14: what a run reports, and what a killed run leaves behind ----------------------------------
def _strict_json(path):
    def bad(name):
        raise ValueError(f"{name} in {path}")
    return json.loads(path.read_text(), parse_constant=bad)


def test_failed_window_and_short_thermalisation_are_flagged(tmp_path) -> None:
    # 2D U(1), 8x8, beta = 4, short HMC trajectories: Q tunnels rarely, and 4 chains x 200 measurements are too
    # short for the Gamma method's window (as for the L = 16, beta = 6, 2000 trajectories, where
    # tau_int(Q) ~ 1000). results.json and the table say so, and no RuntimeWarning is left to say it instead.
    import warnings

    cfg = RunConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 4.0},
                               "sampler": {"chains": 4, "thermalization": 20, "measurements": 200, "step_size": 0.1,
                                           "n_steps": 5},
                               "output": {"plots": False}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)
    assert not [w for w in caught if "gamma_method" in str(w.message)]
    q = _strict_json(tmp_path / "results.json")["observables"]["topological_charge"]
    assert q["reliable"] is False and "window failed" in q["problem"] and q["tau_int"] > 20
    assert res["observables"]["plaquette"]["reliable"] is True
    therm = [w for w in res["warnings"] if w.startswith("thermalization")]
    assert therm and "topological_charge" in therm[0]
    table = format_table(res)
    assert next(line for line in table.splitlines() if line.startswith("topological_charge")).count("!") == 3
    assert "warning: topological_charge: the automatic window failed" in table


def test_short_run_reports_no_nan(tmp_path, capsys) -> None:
    # two measurements per chain: the Gamma method has no error estimate (NaN); the run said "+- nan"
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0},
                               "sampler": {"chains": 2, "thermalization": 0, "measurements": 2},
                               "output": {"plots": False}})
    run_job(cfg, out=tmp_path, seed=1, progress=False, echo=True)
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out, re.IGNORECASE)
    res = _strict_json(tmp_path / "results.json")
    e = res["sampler"]["exp_minus_dH"]
    assert e["error"] is None and "no error estimate" in e["problem"]
    assert "exp_minus_dH: " in out and "(no error estimate" in out
    with pytest.raises(ConfigError, match="sampler.measurements"):   # one measurement: nothing to analyse
        RunConfig.from_dict({"sampler": {"measurements": 1}})


def test_phi4_table_names_the_theory_not_a_group(tmp_path) -> None:
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.5},
                               "sampler": {"chains": 2, "thermalization": 2, "measurements": 4},
                               "output": {"plots": False}})
    head = format_table(run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)).splitlines()[0]
    assert head.startswith("phi^4 (kappa=0.2, lambda=0.5) on 4x4") and "U1" not in head


def _cli(*args, env_extra=None):
    import os
    import subprocess
    import sys

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "latticekit.app.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=600)


def test_killed_before_first_checkpoint_then_another_config_is_refused(tmp_path) -> None:
    # a real kill -9 right after ensemble.h5 was created, before the first checkpoint (no state.npz)
    from latticekit.io import Ensemble

    conf = ("[lattice]\nshape = [4, 4]\n[action]\nbeta = {beta}\n[sampler]\nchains = 2\nthermalization = 2\n"
            "measurements = 4\n[output]\nplots = false\nstore_every = 1\ncheckpoint_every = 2\n")
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(conf.format(beta=1.0))
    b.write_text(conf.format(beta=3.0))
    out = tmp_path / "run"
    r = _cli("run", a, "--out", out, "--quiet", env_extra={"LATTICEKIT_KILL_AT": "run:ensemble-created"})
    assert r.returncode == -9, r.stderr
    assert (out / "ensemble.h5").exists() and not (out / "state.npz").exists()
    # another configuration: refused before any work, the ensemble untouched (it appended before)
    r = _cli("run", b, "--out", out, "--quiet")
    assert r.returncode == 2 and "ensemble.h5 belongs to another run (action.beta 1.0 -> 3.0;" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    with Ensemble.open(out / "ensemble.h5") as ens:
        assert len(ens) == 0 and ens.action_params["beta"] == 1.0
    # the same configuration resumes and fills it; --fresh starts the other one over
    assert _cli("run", a, "--out", out, "--quiet").returncode == 0
    with Ensemble.open(out / "ensemble.h5") as ens:
        assert len(ens) == 2 * 4 and ens.action_params["beta"] == 1.0
    assert _cli("run", b, "--out", out, "--quiet", "--fresh").returncode == 0
    with Ensemble.open(out / "ensemble.h5") as ens:
        assert len(ens) == 2 * 4 and ens.action_params["beta"] == 3.0


def _uninterrupted_and_killed(tmp_path, conf_text: str, kill_at: str) -> tuple[dict, dict]:
    """results.json of a run to the end (ref/) and of the same run killed (-9) at ``kill_at`` then rerun (cut/)."""
    conf = tmp_path / "c.toml"
    conf.write_text(conf_text)
    assert _cli("run", conf, "--out", tmp_path / "ref", "--quiet").returncode == 0
    r = _cli("run", conf, "--out", tmp_path / "cut", "--quiet", env_extra={"LATTICEKIT_KILL_AT": kill_at})
    assert r.returncode == -9
    assert _cli("run", conf, "--out", tmp_path / "cut", "--quiet").returncode == 0
    return tuple(json.loads((tmp_path / d / "results.json").read_text()) for d in ("ref", "cut"))  # type: ignore


def test_killed_mid_run_resumes_identically(tmp_path) -> None:
    # a real kill -9 in the second checkpoint segment (6th measurement); the rerun gives the uninterrupted results
    ref, cut = _uninterrupted_and_killed(
        tmp_path, "[lattice]\nshape = [4, 4]\n[action]\nbeta = 1.0\n[sampler]\nchains = 2\nthermalization = 2\n"
        "measurements = 8\n[output]\nplots = false\nstore_every = 2\ncheckpoint_every = 4\n", "run:measurement:6")
    assert cut["observables"] == ref["observables"]


def test_killed_su3_hmc_after_a_reprojection_resumes_identically(tmp_path) -> None:
    # HMC reprojects SU(N) links every 10 trajectories; the reprojected field was a permuted (non-contiguous) view,
    # which the compiled kernels decline, while the resumed run read a C-ordered field from state.npz: the two
    # rounded differently (8e-15 in the links, the errors in their last digits). A real kill -9 at measurement 15
    # of segments of 10, right after a reprojection.
    from latticekit.io import Ensemble

    ref, cut = _uninterrupted_and_killed(
        tmp_path, '[lattice]\nshape = [4, 4]\n[action]\ngroup = "SU3"\nbeta = 4.0\n[sampler]\nalgorithm = "hmc"\n'
        "chains = 2\nthermalization = 10\nmeasurements = 30\n[output]\nplots = false\ncheckpoint_every = 10\n"
        "store_every = 1\n", "run:measurement:15")
    assert cut["observables"] == ref["observables"]
    with Ensemble.open(tmp_path / "cut" / "ensemble.h5") as a, Ensemble.open(tmp_path / "ref" / "ensemble.h5") as b:
        order = {(b.info(i)["measurement"], b.info(i)["chain"]): i for i in range(len(b))}
        for i in range(len(a)):
            j = order[(a.info(i)["measurement"], a.info(i)["chain"])]
            assert bool((a.read(i) == b.read(j)).all()), (i, j)


def test_stale_temporaries_of_the_job_are_removed(tmp_path) -> None:
    # what atomic writes killed mid-way leave (latticekit.utils.atomic_path names them .<name>.<random>.tmp)
    mine = [".state.npz.k3j2h1.tmp", ".ensemble.h5.x9y8z7.tmp", ".results.json.abc123.tmp",
            ".history_plaquette.png.q1w2e3.tmp"]
    others = [".notes.txt.abc123.tmp", "state.npz.tmp", "my.tmp"]
    for name in mine + others:
        (tmp_path / name).write_bytes(b"partial")
    run_job(_tiny(), out=tmp_path, seed=1, progress=False, echo=False)
    left = {p.name for p in tmp_path.iterdir()}
    assert not left & set(mine) and set(others) <= left


def test_lattice_too_large_for_memory_is_refused_before_any_work(tmp_path) -> None:
    cfg = RunConfig.from_dict({"lattice": {"shape": [100000, 100000]}})      # 160 GB per chain
    with pytest.raises(ConfigError, match=r"lattice.shape \[100000, 100000\] with sampler.chains = 8 needs at least "
                                          r"2.56 TB of memory"):
        run_job(cfg, out=tmp_path / "o", progress=False, echo=False)
    assert not (tmp_path / "o").exists()


def test_nf2_solver_failure_names_the_key_and_keeps_the_checkpoint(tmp_path) -> None:
    from latticekit.linalg.cg import ConvergenceError

    cfg = _nf2_config(cg_maxiter=3)
    with pytest.raises(ConvergenceError, match=r"action.cg_maxiter = 3; raise it"):
        run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)
    # a tolerance below what float64 resolves stalls long before maxiter: the advice was to raise cg_maxiter
    cfg = _nf2_config(cg_tol=1e-17, cg_tol_md=1e-17)
    with pytest.raises(ConvergenceError, match=r"stalled above tol at the precision floor.*; loosen action.cg_tol "
                                               r"/ cg_tol_md \(raising action.cg_maxiter does not help"):
        run_job(cfg, out=tmp_path / "stalled", seed=1, progress=False, echo=False)


def test_measure_of_one_configuration_has_no_error(tmp_path) -> None:
    # one stored configuration: no spread to estimate an error from (it reported 0.0)
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]}, "sampler": {"chains": 1, "thermalization": 1,
                                                                         "measurements": 2},
                               "output": {"plots": False, "store_every": 2}})
    run_job(cfg, out=tmp_path, seed=1, progress=False, echo=False)
    rem = measure_job(tmp_path, echo=False)
    assert rem["observables"]["plaquette"]["n"] == 1 and rem["observables"]["plaquette"]["error"] is None
    assert rem["observables"]["chi_t"]["error"] is None


def test_fresh_removes_the_plots_of_the_previous_run(tmp_path) -> None:
    base = {"lattice": {"shape": [4, 4]}, "action": {"beta": 1.0},
            "sampler": {"algorithm": "heatbath", "chains": 1, "thermalization": 2, "measurements": 6}}
    run_job(RunConfig.from_dict(base), out=tmp_path, seed=1, progress=False, echo=False)
    assert (tmp_path / "history_plaquette.png").exists()
    only_q = RunConfig.from_dict({**base, "measure": {"observables": ["topological_charge"]}})
    run_job(only_q, out=tmp_path, seed=1, fresh=True, progress=False, echo=False)
    assert not (tmp_path / "history_plaquette.png").exists()      # the previous run's plot
    assert (tmp_path / "history_topological_charge.png").exists()


def test_a_run_that_accepts_nothing_says_so() -> None:
    """HMC from a cold 4D SU(3) start with a step far too large: every trajectory rejected; the warning says that
    the chains never moved and what to change (it said only "constant in all measurements")."""
    cfg = RunConfig.from_dict({"lattice": {"shape": [2, 2, 2, 2]}, "action": {"group": "SU3", "beta": 5.7},
                               "sampler": {"algorithm": "hmc", "chains": 1, "thermalization": 1, "measurements": 4,
                                           "step_size": 0.9, "n_steps": 3, "integrator": "leapfrog"},
                               "output": {"plots": False}})
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        res = run_job(cfg, out=d, seed=1, progress=False, echo=False)
    assert res["sampler"]["acceptance"]["value"] == 0.0
    assert res["warnings"][0].startswith("acceptance: no update was accepted in 4 measurements")
    assert "reduce sampler.step_size (now 0.9)" in res["warnings"][0]
