"""Statistics of the jobs: Gamma-method entries, derived observables, the run job's summary table.

Every job reports an observable as ``{value, error, tau_int, tau_int_error, reliable}`` (Wolff's Gamma
method, :func:`latticekit.analysis.gamma_method`, independent chains as replicas) next to its exact value
where the theory has one, with the deviation in sigma. Derived observables
(:class:`latticekit.theories.Derived`) are functions of means, analysed the same way; the flow job also
reweights them from the proposals (:func:`reweighted_derived`).

Only what was measured is reported (:func:`gamma_entry`): where the Gamma method cannot estimate an
error, ``error`` and ``tau_int`` are None (JSON null) and ``problem`` says why; where its automatic
window failed (the chains are shorter than a few autocorrelation times), the numbers are kept but
``reliable`` is False and ``problem`` says so. A series with NaN or infinite values (a NaN ``dH`` that HMC
rejected, ``exp(-dH)`` beyond the float range) has ``value``, ``error`` and ``tau_int`` None and ``problem``
``"non-finite values in N of M measurements"`` (:func:`nonfinite_entry`); the other entries are unaffected.
The run job's table marks such entries with ``!`` and lists
the problems below it, with a warning when the thermalisation was shorter than
:data:`THERMALIZATION_TAUS` tau_int of the slowest observable.

Examples
--------
>>> import numpy as np
>>> from latticekit.analysis import gamma_method
>>> e = gamma_entry(gamma_method(np.array([1.0, 2.0, 3.0, 2.0])), 2.0)
>>> sorted(e)
['deviation_sigma', 'error', 'exact', 'reliable', 'tau_int', 'tau_int_error', 'value']
>>> c = gamma_entry(gamma_method(np.ones(50)), None)
>>> c["error"], c["tau_int"], c["reliable"], c["problem"]
(None, None, False, 'constant in all 50 measurements: no fluctuation to estimate an error or tau_int from')
>>> nonfinite_entry(1, 50, None)["problem"]
'non-finite values in 1 of 50 measurements'
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from latticekit import backends
from latticekit.analysis import gamma_method, jackknife

__all__ = ["THERMALIZATION_TAUS", "analyse", "chains_of", "derived_chains", "format_table", "gamma_entry",
           "nonfinite_entry", "quiet_gamma", "reweighted_derived"]

#: a run warns when ``sampler.thermalization`` is shorter than this many tau_int (in sampler steps) of
#: its slowest observable: a cold or hot start relaxes over a few autocorrelation times, and
#: measurements taken before that bias the averages
THERMALIZATION_TAUS = 5


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(float(x))


def gamma_entry(res: Any, exact: float | None, *, always_exact: bool = True, constant: bool = False) -> dict[str, Any]:
    """The JSON entry of a Gamma-method result: what was measured, and nothing made up.

    Parameters
    ----------
    res : GammaResult
        Of :func:`latticekit.analysis.gamma_method` (one observable).
    exact : float or None
        The exact value; ``exact`` is left out when None and ``always_exact`` is False.
    always_exact : bool
        Keep ``exact`` (None) in the entry also when there is no exact value.
    constant : bool
        The caller knows the series is constant (an integer-valued observable equal in every measurement
        up to rounding, or a derived one of such inputs). Without it the Gamma method's own verdict is used:
        a series without fluctuations (up to rounding of its mean) has ``error`` exactly 0.

    Returns
    -------
    dict
        ``value``; ``error``, ``tau_int``, ``tau_int_error`` (None where the Gamma method has no estimate:
        a constant series, or a pathological autocorrelation function of a too-short chain);
        ``reliable`` (False also where the automatic window failed, i.e. the chains are too short for
        the autocorrelation time); ``problem`` (why, where not reliable); ``exact`` and
        ``deviation_sigma`` (where an exact value and a positive error exist).
    """
    e: dict[str, Any] = {"value": float(res.value)}
    problem = None
    # gamma_method returns error exactly 0 only for a series without fluctuations (a fluctuating one has a positive
    # error, or NaN where Gamma is pathological); its window W = 0 is no sign of it: S = 0 gives W = 0 for any data
    if constant or (_finite(res.error) and float(res.error) == 0.0):
        e.update(error=None, tau_int=None, tau_int_error=None)
        problem = f"constant in all {res.n} measurements: no fluctuation to estimate an error or tau_int from"
    elif not _finite(res.error) or not _finite(res.tau_int):
        e.update(error=None, tau_int=None, tau_int_error=None)
        problem = (f"no error estimate: the autocorrelation function of {res.n} measurements is pathological "
                   "(estimated error^2 <= 0); the chains are too short")
    else:
        e.update(error=float(res.error), tau_int=float(res.tau_int),
                 tau_int_error=float(res.tau_int_error) if _finite(res.tau_int_error) else None)
        if bool(res.windowing_failed):
            problem = (f"the automatic window failed up to W_max = {int(res.window)} measurements: the chains are "
                       "too short for the autocorrelation time; tau_int and the error are unreliable (probably "
                       "underestimated)")
    e["reliable"] = problem is None
    if problem is not None:
        e["problem"] = problem
    if exact is not None or always_exact:
        e["exact"] = exact
    if exact is not None and e["error"] is not None and e["error"] > 0:
        e["deviation_sigma"] = (e["value"] - exact) / e["error"]
    return e


def nonfinite_entry(n_bad: int, n: int, exact: float | None, *, always_exact: bool = True) -> dict[str, Any]:
    """The JSON entry of a series with NaN or infinite values: nothing is estimated from it.

    Parameters
    ----------
    n_bad : int
        Measurements with a non-finite value (for a derived observable: with a non-finite input).
    n : int
        All measurements (all chains).
    exact : float or None
        The exact value, as for :func:`gamma_entry`.
    always_exact : bool
        As for :func:`gamma_entry`.

    Returns
    -------
    dict
        ``value``, ``error``, ``tau_int``, ``tau_int_error`` None, ``reliable`` False and ``problem``
        ``"non-finite values in n_bad of n measurements"`` (and ``exact`` as in :func:`gamma_entry`).
    """
    e: dict[str, Any] = {"value": None, "error": None, "tau_int": None, "tau_int_error": None, "reliable": False,
                         "problem": f"non-finite values in {n_bad} of {n} measurements"}
    if exact is not None or always_exact:
        e["exact"] = exact
    return e


def _entry(chains: Sequence[Any], exact: float | None, func: Any = None, *, always_exact: bool = True,
           constant: bool = False) -> dict[str, Any]:
    """:func:`gamma_entry` of the Gamma method on ``chains`` (replicas, time last; ``(k, n)`` inputs of ``func``),
    or :func:`nonfinite_entry` where a measurement holds a NaN or infinite value."""
    bad = sum(int(np.sum(~np.all(np.isfinite(np.reshape(c, (-1, np.shape(c)[-1]))), axis=0))) for c in chains)
    if bad:
        return nonfinite_entry(bad, sum(int(np.shape(c)[-1]) for c in chains), exact, always_exact=always_exact)
    return gamma_entry(quiet_gamma(list(chains), func), exact, always_exact=always_exact, constant=constant)


def quiet_gamma(*args: Any, **kwargs: Any) -> Any:
    """:func:`latticekit.analysis.gamma_method` without its RuntimeWarnings (failed window, pathological
    Gamma): the jobs report those in the entry (:func:`gamma_entry`) instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="gamma_method:", category=RuntimeWarning)
        return gamma_method(*args, **kwargs)


def chains_of(rows: Sequence[Sequence[float]]) -> list[Any]:
    """Per-chain series of a ``(measurements, chains)`` table (the replicas of the Gamma method)."""
    arr = backends.from_numpy(rows, backend="numpy")  # (n_meas, chains)
    return [arr[:, c] for c in range(arr.shape[1])]


def derived_chains(derived: Any, series: Mapping[str, Any]) -> list[Any] | None:
    """Per chain, the stacked series ``(k, n)`` a derived observable's function combines; None if an
    input was not measured. ``series``: primary name -> ``(measurements, chains)`` values."""
    if not all(len(series.get(i, ())) for i in derived.inputs):
        return None
    values = {i: np.asarray(series[i], dtype=np.float64) for i in derived.inputs}
    parts = [np.asarray(a, dtype=np.float64) for a in derived.series(values)]
    chains = parts[0].shape[1] if parts[0].ndim == 2 else 1
    if parts[0].ndim == 1:
        return [np.stack(parts)]
    return [np.stack([a[:, c] for a in parts]) for c in range(chains)]


def reweighted_derived(derived: Any, proposals: Mapping[str, Any], log_w: Any) -> tuple[float, float]:
    """Reweighting estimate ``F(<w a_1>/<w>, ...)`` of a derived observable from independent proposals,
    with its delete-one jackknife error (the proposals are independent draws)."""
    lw = np.asarray(log_w, dtype=np.float64)
    w = np.exp(lw - np.max(lw))
    parts = [np.asarray(a, dtype=np.float64) for a in derived.series(proposals)]
    stacked = np.stack([w * a for a in parts] + [w])
    k = len(parts)
    with np.errstate(invalid="ignore", divide="ignore"):
        res = jackknife(stacked, lambda a: derived.func(a[:k] / a[k]))
    return float(res.value), float(res.error)


def _integer_constant(rows: Sequence[Sequence[float]]) -> bool:
    """All values of an integer-valued observable equal the same integer up to rounding."""
    a = np.asarray(rows, dtype=np.float64)
    r = np.round(a)
    return bool(a.size) and bool(np.all(r == r.flat[0])) and bool(np.all(np.abs(a - r) < 1e-6))


def analyse(theory: Any, series: dict[str, list[list[float]]], accept: list[list[float]], dH: list[list[float]],
            cfg: Any, seed: int, backend: str, device: Any, cg: list[list[float]] | None = None,
            derived: Sequence[str] | None = None) -> dict[str, Any]:
    """Gamma-method analysis of the run job's time series (chains are replicas) and comparison with the
    theory's exact values; the content of ``results.json``.

    ``derived``: the derived observables to report (default: all the theory has). ``cg`` (Nf = 2): CG
    iterations per trajectory and chain, reported as ``sampler.cg_iterations``. Entries are
    :func:`gamma_entry` (errors only where measured), or :func:`nonfinite_entry` for a series with NaN or
    infinite values (a NaN ``dH``, ``exp(-dH)`` beyond the float range); ``warnings`` lists every observable's
    problem (the sampler's entries carry theirs) and a thermalisation shorter than
    :data:`THERMALIZATION_TAUS` tau_int of the slowest observable.
    """
    exact = theory.exact()
    integer = set(theory.integer_observables())
    constant = {n for n, rows in series.items() if n in integer and rows and _integer_constant(rows)}
    obs: dict[str, Any] = {}
    for name, rows in series.items():
        if rows:
            obs[name] = _entry(chains_of(rows), exact.get(name), constant=name in constant)
    der = theory.derived()
    for name in (list(der) if derived is None else derived):
        stacked = derived_chains(der[name], series)
        if stacked is not None:
            obs[name] = _entry(stacked, exact.get(name), der[name].func,
                               constant=all(i in constant for i in der[name].inputs))
    info: dict[str, Any] = {}
    if accept:
        info["acceptance"] = _entry(chains_of(accept), None, always_exact=False)
    if dH:
        # HMC rejects a trajectory with a NaN dH and records it; exp(-dH) overflows to inf for dH < -709: both
        # are non-finite values of the series (nonfinite_entry), not a crash of the whole analysis
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(-np.asarray(dH, dtype=np.float64))
        info["exp_minus_dH"] = _entry(chains_of(e), None, always_exact=False)
    if cg:
        info["cg_iterations"] = _entry(chains_of(cg), None, always_exact=False)
    notes = [f"{name}: {e['problem']}" for name, e in obs.items() if "problem" in e]
    if accept and not any(v for row in accept for v in row):
        # every proposal rejected: the chains never moved, and every "constant" observable above is the start field
        step = getattr(cfg.sampler, "step_size", None)
        fix = f"reduce sampler.step_size (now {step})" if step is not None else "check the sampler settings"
        notes.insert(0, f"acceptance: no update was accepted in {len(accept)} measurements; the chains never left "
                        f"their initial fields and no observable above is a Monte Carlo estimate: {fix}")
    slow = [(e["tau_int"], name) for name, e in obs.items() if e["tau_int"] is not None]
    if slow:
        tau, name = max(slow)
        every, therm = cfg.measure.every, cfg.sampler.thermalization
        if therm < THERMALIZATION_TAUS * tau * every:
            notes.append(f"thermalization: sampler.thermalization = {therm} steps is shorter than "
                         f"{THERMALIZATION_TAUS} tau_int of the slowest observable ({name}: tau_int = {tau:.3g} "
                         f"measurements x measure.every = {every} -> {THERMALIZATION_TAUS * tau * every:.3g} steps"
                         f"{'' if obs[name]['reliable'] else ', itself unreliable'}); the first measurements may "
                         "not be in equilibrium: increase sampler.thermalization")
    return {"observables": obs, "sampler": info, "warnings": notes, "theory": theory.describe(),
            "config": cfg.to_dict(), "backend": backend, "device": None if device is None else str(device),
            "seed": seed, "n_measurements": len(next(iter(series.values()))) if series else 0,
            "chains": cfg.sampler.chains, "lattice": list(theory.lattice.shape)}


def _num(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(results: dict[str, Any]) -> str:
    """The summary table printed by the run job; entries that are not reliable are marked ``!`` and the
    problems (and a too short thermalisation) are listed below the table."""
    rows = [("observable", "value", "error", "tau_int", "exact", "dev/sigma")]
    for name, e in results["observables"].items():
        ex = e.get("exact")
        dev = e.get("deviation_sigma")
        flag = "" if e.get("reliable", True) else " !"
        rows.append((name, _num(e["value"], ".6g"), _num(e.get("error"), ".2g") + flag,
                     _num(e.get("tau_int"), ".2f") + flag, "-" if ex is None else f"{ex:.6g}",
                     "-" if dev is None else f"{dev:+.2f}" + flag))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    cfg = results["config"]
    what = results.get("theory") or f"{cfg['action']['kind']} {cfg['action'].get('group', '')}".strip()
    head = (f"{what} on {'x'.join(map(str, results['lattice']))}, "
            f"{results['chains']} chains x {results['n_measurements']} measurements, "
            f"{cfg['sampler']['algorithm']}, backend {results['backend']}, seed {results['seed']}")
    tail = []
    for k, v in results.get("sampler", {}).items():
        if v.get("error") is None:
            tail.append(f"{k}: {_num(v['value'], '.4f')} ({v.get('problem', 'no error estimate')})")
        else:
            tail.append(f"{k}: {v['value']:.4f} +- {v['error']:.1g}"
                        + ("" if v.get("reliable", True) else f" ! ({v.get('problem')})"))
    notes = [f"warning: {w}" for w in results.get("warnings", [])]
    if any(not e.get("reliable", True) for e in results["observables"].values()):
        notes.insert(0, "! not reliable: see the warnings below")
    return "\n".join([head, *lines, *tail, *notes])
