"""What the jobs report about their statistics: only what was measured, failed Gamma-method windows flagged
in results.json and in the table, a too short thermalisation warned about (issue 14, items 13 and 14)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from latticekit.analysis import gamma_method
from latticekit.app.analysis import THERMALIZATION_TAUS, analyse, format_table, gamma_entry
from latticekit.app.config import RunConfig
from latticekit.testing import assert_close


def _strict_json(text: str):
    """json.loads that refuses NaN/Infinity (not JSON; other readers choke on them)."""
    def bad(name):
        raise ValueError(f"{name} in JSON")
    return json.loads(text, parse_constant=bad)


def _ar1_chains(rho: float, n: int, chains: int, seed: int) -> np.ndarray:
    """(n, chains) AR(1) series with autocorrelation rho, started in equilibrium."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, chains))
    x[0] = rng.standard_normal(chains)
    eta = rng.standard_normal((n, chains)) * math.sqrt(1 - rho * rho)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + eta[t]
    return x


def _telegraph(p: float, n: int, chains: int, seed: int) -> np.ndarray:
    """(n, chains) integer series in {-1, 0, 1} that jumps with probability p per step: a topological
    charge that tunnels rarely (tau_int ~ 1/p)."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, chains))
    for t in range(1, n):
        x[t] = np.where(rng.random(chains) < p, rng.integers(-1, 2, chains), x[t - 1])
    return x


def test_failed_window_is_flagged_and_a_good_one_is_not() -> None:
    # a charge that tunnels once per ~100 steps, 4 chains of 200: W_max = 100 does not reach the window (as
    # for Q in a 2D U(1) run at beta = 6, L = 16, 2000 trajectories, tau_int(Q) ~ 1000); the Gamma method
    # knows (windowing_failed), and the entry must say it too
    slow = _telegraph(0.01, 200, 4, seed=0)
    with pytest.warns(RuntimeWarning, match="windowing condition failed"):   # before: the only sign of it
        res = gamma_method([slow[:, c] for c in range(4)])
    assert res.windowing_failed                      # the premise of the test
    e = gamma_entry(res, 0.0)
    assert e["reliable"] is False and "window failed" in e["problem"]
    assert e["error"] == float(res.error) and e["tau_int"] == float(res.tau_int)   # the numbers are kept, flagged
    fast = _ar1_chains(0.5, 2000, 4, seed=2)
    ok = gamma_entry(gamma_method([fast[:, c] for c in range(4)]), 0.0)
    assert ok["reliable"] is True and "problem" not in ok


def test_nothing_is_made_up_for_constant_or_too_short_series() -> None:
    # constant: the Gamma method returns error 0 and tau_int 0.5 by convention; neither was measured
    c = gamma_entry(gamma_method(np.ones(40)), 1.0)
    assert (c["error"], c["tau_int"], c["tau_int_error"], c["reliable"]) == (None, None, None, False)
    assert "deviation_sigma" not in c and "constant" in c["problem"]
    # two measurements: a pathological Gamma, NaN error: reported as no estimate, never as NaN
    with pytest.warns(RuntimeWarning):
        r = gamma_method([np.array([0.1, 0.9])])
    assert math.isnan(r.error)
    e = gamma_entry(r, 0.5)
    assert e["error"] is None and e["tau_int"] is None and "no error estimate" in e["problem"]
    _strict_json(json.dumps(e))


def _results(series: dict, **sampler) -> dict:
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]},
                               "sampler": {"chains": 4, "thermalization": 10, "measurements": 200, **sampler}})
    n = len(next(iter(series.values())))
    acc = [[1.0] * 4 for _ in range(n)]
    dH = [[0.01 * ((i * 7 + c) % 5 - 2) for c in range(4)] for i in range(n)]
    return analyse(cfg.theory, series, acc, dH, cfg, 1, "numpy", None)


def test_results_and_table_flag_a_failed_window_and_a_short_thermalisation() -> None:
    slow = _telegraph(0.01, 200, 4, seed=0) * 0.01 + 0.45
    with pytest.warns(RuntimeWarning, match="windowing condition failed"):
        assert gamma_method([slow[:, c] for c in range(4)]).windowing_failed   # the premise of the test
    fast = _ar1_chains(0.2, 200, 4, seed=3).round()        # integer-valued, fluctuating
    res = _results({"plaquette": slow.tolist(), "topological_charge": fast.tolist()})
    p = res["observables"]["plaquette"]
    assert p["reliable"] is False and "window failed" in p["problem"]
    assert res["observables"]["topological_charge"]["reliable"] is True
    assert any(w.startswith("plaquette: the automatic window failed") for w in res["warnings"])
    therm = [w for w in res["warnings"] if w.startswith("thermalization:")]
    assert len(therm) == 1 and "(plaquette: tau_int" in therm[0] and "itself unreliable" in therm[0]
    table = format_table(res)
    row = next(line for line in table.splitlines() if line.startswith("plaquette"))
    assert row.count("!") == 3                          # error, tau_int and dev/sigma are marked
    assert "warning: plaquette: the automatic window failed" in table and "warning: thermalization:" in table
    # long enough thermalisation: no warning (the slowest tau_int here is that of the fast series)
    res = _results({"topological_charge": fast.tolist()}, thermalization=1000)
    assert not any(w.startswith("thermalization") for w in res["warnings"])
    tau = res["observables"]["topological_charge"]["tau_int"]
    assert 1000 >= THERMALIZATION_TAUS * tau


def test_frozen_integer_observable_is_constant_not_rounding_noise() -> None:
    # 2D U(1) at large beta from a cold start: Q stays 0, the values are rounding noise ~1e-17. Analysed as
    # data, the noise gave chi_t an "error" of 1e-34 and a deviation of -2e31 sigma from the exact chi_t.
    noise = (np.random.default_rng(0).standard_normal((100, 4)) * 1e-17).tolist()
    plaq = (0.9 + 0.01 * np.random.default_rng(1).standard_normal((100, 4))).tolist()
    res = _results({"plaquette": plaq, "topological_charge": noise})
    for name in ("topological_charge", "chi_t"):
        e = res["observables"][name]
        assert e["error"] is None and e["tau_int"] is None and "deviation_sigma" not in e, name
        assert e["problem"].startswith("constant in all 400 measurements")
    assert res["observables"]["plaquette"]["reliable"]
    _strict_json(json.dumps(res))


def test_sampler_entries_are_measured() -> None:
    # acceptance 1 in every trajectory: no error estimate (not "+- 0", not tau_int 0.5)
    res = _results({"plaquette": (0.5 + 0.01 * np.random.default_rng(4).standard_normal((50, 4))).tolist()})
    acc = res["sampler"]["acceptance"]
    assert acc["value"] == 1.0 and acc["error"] is None and acc["tau_int"] is None
    dh = res["sampler"]["exp_minus_dH"]
    assert dh["error"] > 0 and dh["reliable"]
    table = format_table(res)
    assert "acceptance: 1.0000 (constant in all 200 measurements" in table and "nan" not in table


def _results_with(series: dict, dH: list) -> dict:
    cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]},
                               "sampler": {"chains": 4, "thermalization": 10, "measurements": 50}})
    acc = [[1.0, 0.0, 1.0, 1.0] if i % 3 else [1.0] * 4 for i in range(len(dH))]
    return analyse(cfg.theory, series, acc, dH, cfg, 1, "numpy", None)


@pytest.mark.parametrize("bad", [math.nan, -800.0, -math.inf])   # exp(-dH): nan, inf, inf
def test_a_non_finite_exp_minus_dH_is_reported_not_a_crash(bad: float) -> None:
    # HMC rejects a trajectory with a NaN dH and records it; exp(-dH) overflows for dH < -709: the results step
    # crashed (ValueError: data contains NaN / OverflowError: math range error) and the run lost its results
    rng = np.random.default_rng(5)
    plaq = (0.5 + 0.01 * rng.standard_normal((50, 4))).tolist()
    dH = (0.3 * rng.standard_normal((50, 4))).tolist()
    dH[10][2] = bad
    res = _results_with({"plaquette": plaq}, dH)
    e = res["sampler"]["exp_minus_dH"]
    assert e["value"] is None and e["error"] is None and e["tau_int"] is None and e["reliable"] is False
    assert e["problem"] == "non-finite values in 1 of 200 measurements"
    p = res["observables"]["plaquette"]                  # the rest is analysed as before
    g = gamma_method([np.asarray(plaq)[:, c] for c in range(4)])
    assert_close(p["value"], g.value, rtol=1e-15, atol=0)
    assert_close(p["error"], g.error, rtol=1e-15, atol=0)
    assert res["sampler"]["acceptance"]["error"] > 0
    _strict_json(json.dumps(res))
    table = format_table(res)
    assert "exp_minus_dH: - (non-finite values in 1 of 200 measurements)" in table


def test_a_non_finite_observable_gets_a_problem_and_so_do_its_derived() -> None:
    rng = np.random.default_rng(6)
    q = rng.integers(-2, 3, (50, 4)).astype(float)
    q[7, 0], q[9, 3] = math.nan, math.inf
    plaq = (0.5 + 0.01 * rng.standard_normal((50, 4))).tolist()
    dH = (0.1 * rng.standard_normal((50, 4))).tolist()
    res = _results_with({"plaquette": plaq, "topological_charge": q.tolist()}, dH)
    obs = res["observables"]
    assert "chi_t" in obs                                     # derived from the charge (the premise)
    for name in ("topological_charge", "chi_t"):
        assert obs[name]["value"] is None and obs[name]["error"] is None, name
        assert obs[name]["problem"] == "non-finite values in 2 of 200 measurements", name
        assert f"{name}: non-finite values in 2 of 200 measurements" in res["warnings"]
    assert obs["plaquette"]["reliable"] and obs["plaquette"]["error"] > 0
    _strict_json(json.dumps(res))
    row = next(line for line in format_table(res).splitlines() if line.startswith("topological_charge"))
    assert row.split()[1:] == ["-", "-", "!", "-", "!", "0", "-"]   # value, error !, tau_int !, exact, dev


def test_S0_window_is_not_a_constant_series() -> None:
    # gamma_method(S=0) has W = 0 for any data; gamma_entry took W = 0 for "constant" and dropped the error
    x = np.array([1.0, 2.0, 3.0, 2.0, 5.0, 1.0])
    e = gamma_entry(gamma_method(x, S=0), 2.0)
    assert e["reliable"] is True and "problem" not in e
    assert_close(e["error"], float(x.std(ddof=1) / np.sqrt(x.size)), rtol=1e-12, atol=0)
    assert_close(e["tau_int"], 0.5, rtol=0, atol=0)
    assert_close(e["deviation_sigma"], (x.mean() - 2.0) / e["error"], rtol=1e-12, atol=0)
    c = gamma_entry(gamma_method(np.full(6, 0.1), S=0), None)           # a constant series still is one
    assert c["error"] is None and c["problem"].startswith("constant in all 6 measurements")


def test_compare_help_describes_the_reported_p_value() -> None:
    # the help said p = chi2.sf(chi^2, dof); the job reports P(g chi2_h >= chi^2) with h = dof_effective
    import argparse

    from scipy import stats

    from latticekit.analysis import compare_histograms
    from latticekit.app.cli import _args_compare

    p = argparse.ArgumentParser()
    _args_compare(p)
    text = " ".join(p.description.split())
    assert "p = chi2.sf(chi^2, dof)." not in text
    assert "p = P(g chi2_h >= chi^2)" in text and "h = dof_effective = dof^2/tr(M^2), g = dof/h" in text
    rng = np.random.default_rng(0)
    c = compare_histograms(rng.normal(size=2000), rng.normal(size=2000), bins=10, n_boot=200, rng=1)
    h = c.dof_effective
    g = c.dof / h
    assert h < c.dof                                      # correlated residuals: the two formulas differ here
    assert_close(c.p_value, float(stats.chi2.sf(c.chi2 / g, h)), rtol=1e-12, atol=0)
