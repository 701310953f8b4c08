"""Statistics of the jobs: Gamma-method entries, derived observables, the run job's summary table.

Every job reports an observable as ``{value, error, tau_int, tau_int_error}`` (Wolff's Gamma method,
:func:`latticekit.analysis.gamma_method`, independent chains as replicas) next to its exact value where
the theory has one, with the deviation in sigma. Derived observables (:class:`latticekit.theories.Derived`)
are functions of means, analysed the same way; the flow job also reweights them from the proposals
(:func:`reweighted_derived`).

Examples
--------
>>> import numpy as np
>>> from latticekit.analysis import gamma_method
>>> e = gamma_entry(gamma_method(np.array([1.0, 2.0, 3.0, 2.0])), 2.0)
>>> sorted(e)
['deviation_sigma', 'error', 'exact', 'tau_int', 'tau_int_error', 'value']
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from latticekit import backends
from latticekit.analysis import gamma_method, jackknife

__all__ = ["analyse", "chains_of", "derived_chains", "format_table", "gamma_entry", "reweighted_derived"]


def gamma_entry(res: Any, exact: float | None, *, always_exact: bool = True) -> dict[str, Any]:
    """The JSON entry of a Gamma-method result; ``exact`` (None where unknown, or left out with
    ``always_exact=False``) and ``deviation_sigma`` where both an exact value and an error exist."""
    e: dict[str, Any] = {"value": float(res.value), "error": float(res.error), "tau_int": float(res.tau_int),
                         "tau_int_error": float(res.tau_int_error)}
    if exact is not None or always_exact:
        e["exact"] = exact
    if exact is not None and res.error > 0:
        e["deviation_sigma"] = (float(res.value) - exact) / float(res.error)
    return e


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


def analyse(theory: Any, series: dict[str, list[list[float]]], accept: list[list[float]], dH: list[list[float]],
            cfg: Any, seed: int, backend: str, device: Any, cg: list[list[float]] | None = None,
            derived: Sequence[str] | None = None) -> dict[str, Any]:
    """Gamma-method analysis of the run job's time series (chains are replicas) and comparison with the
    theory's exact values; the content of ``results.json``.

    ``derived``: the derived observables to report (default: all the theory has). ``cg`` (Nf = 2): CG
    iterations per trajectory and chain, reported as ``sampler.cg_iterations``.
    """
    exact = theory.exact()
    obs: dict[str, Any] = {}
    for name, rows in series.items():
        if rows:
            obs[name] = gamma_entry(gamma_method(chains_of(rows)), exact.get(name))
    der = theory.derived()
    for name in (list(der) if derived is None else derived):
        stacked = derived_chains(der[name], series)
        if stacked is not None:
            obs[name] = gamma_entry(gamma_method(stacked, der[name].func), exact.get(name))
    info: dict[str, Any] = {}
    if accept:
        rate = gamma_method(chains_of(accept))
        info["acceptance"] = {"value": float(rate.value), "error": float(rate.error)}
    if dH:
        import math

        e = [[math.exp(-v) for v in row] for row in dH]
        r = gamma_method(chains_of(e))
        info["exp_minus_dH"] = {"value": float(r.value), "error": float(r.error)}
    if cg:
        r = gamma_method(chains_of(cg))
        info["cg_iterations"] = {"value": float(r.value), "error": float(r.error)}
    return {"observables": obs, "sampler": info, "config": cfg.to_dict(), "backend": backend,
            "device": None if device is None else str(device), "seed": seed,
            "n_measurements": len(next(iter(series.values()))) if series else 0,
            "chains": cfg.sampler.chains, "lattice": list(theory.lattice.shape)}


def format_table(results: dict[str, Any]) -> str:
    """The summary table printed by the run job."""
    rows = [("observable", "value", "error", "tau_int", "exact", "dev/sigma")]
    for name, e in results["observables"].items():
        ex = e.get("exact")
        dev = e.get("deviation_sigma")
        rows.append((name, f"{e['value']:.6g}", f"{e['error']:.2g}", f"{e['tau_int']:.2f}",
                     "-" if ex is None else f"{ex:.6g}", "-" if dev is None else f"{dev:+.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    cfg = results["config"]
    head = (f"{cfg['action']['kind']} {cfg['action'].get('group', '')} on {'x'.join(map(str, results['lattice']))}, "
            f"{results['chains']} chains x {results['n_measurements']} measurements, "
            f"{cfg['sampler']['algorithm']}, backend {results['backend']}, seed {results['seed']}")
    tail = []
    for k, v in results.get("sampler", {}).items():
        tail.append(f"{k}: {v['value']:.4f} +- {v['error']:.1g}")
    return "\n".join([head, *lines, *tail])
