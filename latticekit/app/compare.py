"""The compare job: ``latticekit compare FLOW HMC`` tests a flow ensemble against an HMC ensemble bin by bin.

The pipeline of Sec. 3.2 and Figs. 2-3 of arXiv:2208.03832 ("QCD in four dimensions"): for every
observable measured on both ensembles (the plaquette, the real part of the Polyakov loop, the pion
correlator ``C_pi_t``, the topological charge after Wilson flow, ...)

1. common bin edges over the pooled range (``--bins``, default 20), the density histogram of each
   ensemble and its error from a blocked bootstrap (``--n-boot`` resamples, default 1000 as in the paper;
   blocks of ``ceil(10 tau_int)`` configurations of that observable in that ensemble, because Markov chains
   are autocorrelated and flow MCMC repeats a configuration at every rejection);
2. the ratio flow/HMC per bin with its error (Fig. 2, lower panels);
3. the residuals ``r = (h_flow - h_HMC) / sqrt(s_flow^2 + s_HMC^2)`` of every bin with a non-zero
   denominator, and per observable ``chi^2 = sum r^2``, ``dof`` (bins used) and the p-value
   ``P(g chi^2_h >= chi^2)`` with ``h = dof_effective`` from the residuals' bootstrap correlation
   (:mod:`latticekit.analysis.histogram_compare`); the same over all observables, whose p-value accounts
   for their correlation (:func:`latticekit.analysis.joint_chi2`; Fig. 3 shows the distribution of ``r^2`` against
   ``chi^2`` with one degree of freedom).

The numerics are :mod:`latticekit.analysis.histogram_compare` (NumPy/SciPy); the measurements are the
per-configuration values stored in the ensembles (:mod:`latticekit.app.ensemble_series`). ``FLOW`` is the
folder of ``latticekit sample`` (its ``flow_ensemble.h5``) or an ensemble file; ``HMC`` the folder of
``latticekit run`` (its ``ensemble.h5``) or an ensemble file (a folder without its usual file is searched
for the other, so two runs can be compared as well). Both must be ensembles of the same theory
(lattice, group, action and its parameters). An observable that one of them does not store is an error
that says so, unless ``measure=True`` (``--measure``): then it is measured on the stored configurations with
the theory of the HMC run (``results.json`` beside its ensemble, whose ``[measure]`` options, e.g.
``flowed_topology_t``, define the observables), and without ``--observables`` every observable that run
measures is compared.

Output in ``--out`` (default ``./latticekit-compare``), written atomically: ``compare.json`` (the command
line that reproduces it, both inputs, the table, per observable the edges, densities, errors, ratios,
residuals, tau_int and block lengths), ``compare.png`` (Fig. 2: histograms and ratios) and
``compare_residuals.png`` (Fig. 3); the table is printed.

Examples
--------
>>> import tempfile
>>> from latticekit.app.run import run_job
>>> cfg = {"lattice": {"shape": [2, 2, 2]}, "action": {"group": "SU2"},
...        "sampler": {"chains": 2, "thermalization": 2, "measurements": 20},
...        "output": {"plots": False, "store_every": 1}}
>>> a, b = tempfile.mkdtemp(), tempfile.mkdtemp()
>>> _ = run_job(cfg, out=a, seed=1, progress=False, echo=False)
>>> _ = run_job(cfg, out=b, seed=2, progress=False, echo=False)
>>> res = compare_job(a + "/ensemble.h5", b, bins=5, n_boot=100, out=tempfile.mkdtemp(), echo=False)
>>> sorted(res["observables"]), res["table"]["total"]["dof"] <= 15, res["plots"]
(['plaquette', 'polyakov_loop_abs', 'polyakov_loop_re'], True, ['compare.png', 'compare_residuals.png'])
"""

from __future__ import annotations

import math
import os
import shlex
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latticekit.analysis import compare_histograms, joint_chi2
from latticekit.analysis.histogram_compare import BLOCK_FACTOR, HistogramComparison
from latticekit.utils import remove_stale_temporaries
from latticekit.utils.schema import ConfigError

from .ensemble_series import EnsembleSeries, measure_series, open_series, physics_record
from .folders import ENSEMBLE, RESULTS, out_folder, read_json, write_json

__all__ = ["COMPARE_PLOT", "COMPARE_SUMMARY", "FLOW_ENSEMBLE", "RESIDUALS_PLOT", "compare_job", "format_compare_table"]

COMPARE_SUMMARY = "compare.json"
COMPARE_PLOT = "compare.png"
RESIDUALS_PLOT = "compare_residuals.png"
#: the chain file ``latticekit sample`` writes for gauge theories
FLOW_ENSEMBLE = "flow_ensemble.h5"


def _ensemble_file(source: str | os.PathLike[str], label: str, first: str) -> Path:
    """The ensemble file of ``source``: a file itself, or in a folder ``first`` (the usual file of this
    argument), else the other job's file (so two runs, or two flow chains, can be compared too)."""
    p = Path(source)
    if p.is_dir():
        names = [first] + [n for n in (FLOW_ENSEMBLE, ENSEMBLE) if n != first]
        for n in names:
            if (p / n).is_file():
                return p / n
        raise FileNotFoundError(f"{label}: {p} holds neither {names[0]} nor {names[1]}: expected the folder of "
                                "`latticekit sample` or `latticekit run`, or an ensemble file")
    if not p.exists():
        raise FileNotFoundError(f"{label}: {str(p)!r}: no such folder or ensemble file")
    return p


def _check_int(flag: str, value: Any, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise ConfigError(f"{flag} {value!r}: expected an integer >= {lo}")
    return value


def _names(observables: Sequence[str] | str | None) -> list[str] | None:
    if observables is None:
        return None
    items = observables.split(",") if isinstance(observables, str) else list(observables)
    names = [str(n).strip() for n in items]
    if not names or any(not n for n in names):
        raise ConfigError(f"--observables {','.join(names)!r}: expected comma-separated observable names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--observables: {', '.join(dup)} given twice")
    return names


def _run_config(hmc_file: Path) -> Any:
    """The configuration of the ``latticekit run`` that wrote ``hmc_file`` (its results.json), for --measure."""
    from .config import RunConfig

    res = hmc_file.parent / RESULTS
    if not res.is_file():
        raise ConfigError(f"--measure: {res} does not exist; measuring needs the configuration of the HMC run "
                          "(results.json beside its ensemble.h5)")
    return RunConfig.from_stored(read_json(res, "the results of a `latticekit run`")["config"])


def _select(flow: EnsembleSeries, hmc: EnsembleSeries, names: list[str] | None, measure: bool,
            measurable: list[str] | None, derived: list[str] | None = None) -> list[str]:
    """The observables to compare; ConfigError naming --observables for one that cannot be."""
    if names is None:
        if measure:
            return list(measurable or [])
        common = [n for n in sorted(flow.stored) if n in hmc.stored]
        if not common:
            have = "; ".join(f"{s.label}: {', '.join(sorted(s.stored)) or 'none'}" for s in (flow, hmc))
            raise ConfigError(f"flow and hmc have no stored observable in common ({have}); pass --measure to measure "
                              "the HMC run's observables on both")
        return common
    for n in names:
        if n in (derived or []) and not (n in flow.stored and n in hmc.stored):
            raise ConfigError(f"--observables: {n!r} is a function of ensemble means (a derived observable), with no "
                              "value per configuration whose distribution could be compared; compare its inputs "
                              "(e.g. topological_charge for chi_t), or read its value and error in results.json and "
                              "sample.json")
        if measure:
            if n not in (measurable or []) and not (n in flow.stored and n in hmc.stored):
                raise ConfigError(f"--observables: {n!r} is neither stored in both ensembles nor measured by the HMC "
                                  f"run's theory (it measures {', '.join(measurable or [])}); set its [measure] "
                                  "options (e.g. measure.flowed_topology_t) and rerun `latticekit run`")
            continue
        if n not in flow.stored and n not in hmc.stored:
            known = sorted(set(flow.stored) | set(hmc.stored))
            raise ConfigError(f"--observables: {n!r} is stored in neither ensemble (stored: "
                              f"{', '.join(known) or 'none'})")
        for s in (flow, hmc):
            if n not in s.stored:
                why = f" ({s.partial[n]} of {s.n} configurations have no value)" if n in s.partial else ""
                raise ConfigError(f"--observables: {n!r} is not stored in {s.label} ({s.path}){why}; {s.label} "
                                  f"stores {', '.join(sorted(s.stored)) or 'none'}; pass --measure to measure it on "
                                  "the stored configurations with the HMC run's theory and [measure] options")
    return names


def _rng_seed(seed: int, name: str) -> list[int]:
    # one stream per observable: its result does not depend on which other observables are compared
    return [seed, zlib.crc32(name.encode())]


def _plain(a: np.ndarray) -> list[Any]:
    return [None if not math.isfinite(float(v)) else float(v) for v in np.asarray(a, dtype=np.float64)]


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _side(h: Any) -> dict[str, Any]:
    return {"density": _plain(h.density), "error": _plain(h.error), "counts": [int(c) for c in h.counts], "n": h.n,
            "chains": h.n_chains, "tau_int": _num(h.tau_int), "block": h.block, "n_blocks": h.n_blocks,
            "reliable": h.reliable}


def _entry(c: HistogramComparison) -> dict[str, Any]:
    return {"edges": _plain(c.edges), "flow": _side(c.a), "hmc": _side(c.b), "ratio": _plain(c.ratio),
            "ratio_error": _plain(c.ratio_error), "residuals": _plain(c.residuals), "chi2": c.chi2, "dof": c.dof,
            "dof_effective": c.dof_effective, "p_value": _num(c.p_value)}


def format_compare_table(result: dict[str, Any]) -> str:
    """The table ``latticekit compare`` prints: per observable chi^2, dof, the effective dof of the p-value
    (``h``: the residuals' correlation, :mod:`latticekit.analysis.histogram_compare`), the p-value and the
    bootstrap block lengths (configurations per block) of both ensembles.

    >>> print(format_compare_table({"table": {"rows": [{"observable": "plaquette", "chi2": 18.2, "dof": 20,
    ...     "dof_effective": 14.3, "p_value": 0.47, "block_flow": 12, "block_hmc": 3, "reliable": True}],
    ...     "total": {"chi2": 18.2, "dof": 20, "dof_effective": 14.3, "p_value": 0.47}}}))
    observable                   chi^2   dof      h   p-value  block length flow/hmc
    plaquette                    18.20    20   14.3     0.470  12/3
    all observables              18.20    20   14.3     0.470
    """
    def p(v: float | None) -> str:
        return "-" if v is None else (f"{v:.3f}" if v >= 1e-3 else f"{v:.1e}")

    w = max([24] + [len(r["observable"]) for r in result["table"]["rows"]])
    def h(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [f"{'observable':{w}s} {'chi^2':>9s} {'dof':>5s} {'h':>6s} {'p-value':>9s}  block length flow/hmc"]
    for r in result["table"]["rows"]:
        note = "" if r["reliable"] else "  (few blocks or no tau_int window: errors uncertain)"
        lines.append(f"{r['observable']:{w}s} {r['chi2']:9.2f} {r['dof']:5d} {h(r.get('dof_effective')):>6s} "
                     f"{p(r['p_value']):>9s}  {r['block_flow']}/{r['block_hmc']}{note}")
    t = result["table"]["total"]
    lines.append(f"{'all observables':{w}s} {t['chi2']:9.2f} {t['dof']:5d} {h(t.get('dof_effective')):>6s} "
                 f"{p(t['p_value']):>9s}")
    return "\n".join(lines)


def compare_job(flow: str | os.PathLike[str], hmc: str | os.PathLike[str], *,
                observables: Sequence[str] | str | None = None, bins: int = 20, n_boot: int = 1000, seed: int = 1234,
                out: str | os.PathLike[str] = "latticekit-compare", measure: bool = False, backend: str | None = None,
                device: Any = None, progress: bool = False, echo: bool = True) -> dict[str, Any]:
    """Compare the histograms of the observables of a flow ensemble and an HMC ensemble (module docstring).

    Parameters
    ----------
    flow : path
        Folder of ``latticekit sample`` (``flow_ensemble.h5`` in it) or an ensemble file.
    hmc : path
        Folder of ``latticekit run`` (``ensemble.h5`` in it) or an ensemble file.
    observables : sequence of str or comma-separated str, optional
        What to compare (default: the observables stored in both; with ``measure``, every observable the HMC
        run measures).
    bins : int
        Bins per histogram (``>= 2``), equal widths over the pooled range.
    n_boot : int
        Bootstrap resamples per ensemble and observable (``>= 10``).
    seed : int
        Seed of the bootstraps (``>= 0``); observable ``name`` uses the stream ``(seed, crc32(name))``.
    out : path
        Output folder (created).
    measure : bool
        Measure observables an ensemble does not store on its configurations, with the HMC run's theory.
    backend, device : optional
        Where ``measure`` computes (default numpy on the host).
    progress, echo : bool
        Show a progress bar while measuring / print the table.

    Returns
    -------
    dict
        The content of ``compare.json``.

    Raises
    ------
    latticekit.utils.ConfigError
        Before any work: ``bins < 2``, ``n_boot < 10``, a negative seed, an unknown or missing observable,
        an ensemble without configurations or without stored observables, ensembles of different theories,
        ``out`` a file.
    FileNotFoundError
        ``flow`` or ``hmc`` is not a folder of the job or an ensemble file.
    """
    bins = _check_int("--bins", bins, 2)
    n_boot = _check_int("--n-boot", n_boot, 10)
    seed = _check_int("--seed", seed, 0)
    names = _names(observables)
    from .devices import resolve_backend

    f_file = _ensemble_file(flow, "flow", FLOW_ENSEMBLE)
    h_file = _ensemble_file(hmc, "hmc", ENSEMBLE)
    backend, device = resolve_backend(backend, device)
    cfg = _run_config(h_file) if measure else None
    fs, hs = open_series(f_file, "flow"), open_series(h_file, "hmc")
    for s in (fs, hs):
        if not s.stored and not s.partial and not measure:
            raise ConfigError(f"{s.label}: {s.path} stores no per-configuration measurements; pass --measure to "
                              "measure the HMC run's observables on its configurations")
    pf, ph = physics_record(fs.record), physics_record(hs.record)
    if pf != ph:
        diff = "; ".join(f"{k}: {pf[k]!r} vs {ph[k]!r}" for k in pf if pf[k] != ph[k])
        raise ConfigError(f"flow and hmc are ensembles of different theories ({diff}); compare ensembles of the same "
                          "lattice, group, action and couplings")
    theory, measurable = None, None
    if cfg is not None:
        theory = cfg.theory
        run_lat = {"lattice": list(theory.lattice.shape), "group": theory.group.name, "action": theory.kind}
        file_lat = {k: ph[k] for k in run_lat}
        if file_lat != run_lat:
            raise ConfigError(f"--measure: {h_file.parent / RESULTS} describes {run_lat}, but {h_file} holds "
                              f"{file_lat}; the run's configuration must be that of the HMC ensemble")
        measurable = theory.select(cfg.measure.observables)[0]
    # derived observables (chi_t) of the HMC run's theory, to say why one cannot be compared, also without --measure
    derived: list[str] = []
    try:
        run_cfg = cfg if cfg is not None else (_run_config(h_file) if (h_file.parent / RESULTS).is_file() else None)
        derived = list(run_cfg.theory.derived()) if run_cfg is not None else []
    except ConfigError:   # a results.json this version cannot read: only the generic messages
        pass
    names = _select(fs, hs, names, measure, measurable, derived)
    outdir = out_folder(out)
    remove_stale_temporaries(outdir, [COMPARE_SUMMARY, COMPARE_PLOT, RESIDUALS_PLOT])

    if theory is not None:
        for s in (fs, hs):
            measure_series(s, theory, [n for n in names if not s.has(n)], backend=backend, device=device,
                           progress=progress)
    comparisons: dict[str, HistogramComparison] = {}
    for n in names:
        comparisons[n] = compare_histograms(fs.series(n), hs.series(n), bins=bins, n_boot=n_boot,
                                            rng=np.random.default_rng(_rng_seed(seed, n)))
    # the observables are measured on the same configurations: the total's p-value from a joint bootstrap
    # of all of them (their correlation widens the distribution of the sum)
    total = joint_chi2(comparisons, {n: fs.series(n) for n in names}, {n: hs.series(n) for n in names},
                       rng=np.random.default_rng(_rng_seed(seed, "total")), n_boot=n_boot)
    rows = [{"observable": n, "chi2": c.chi2, "dof": c.dof, "dof_effective": c.dof_effective,
             "p_value": _num(c.p_value), "block_flow": c.a.block,
             "block_hmc": c.b.block, "reliable": c.a.reliable and c.b.reliable} for n, c in comparisons.items()]
    where = ["--backend", backend] + ([] if device is None else ["--device", str(device)])
    argv = ["latticekit"] + (where if measure else []) + [
        "compare", str(flow), str(hmc), "--observables", ",".join(names), "--bins", str(bins), "--n-boot", str(n_boot),
        "--seed", str(seed), "--out", str(out)] + (["--measure"] if measure else [])
    result: dict[str, Any] = {
        "command": shlex.join(argv),
        "flow": fs.describe(), "hmc": hs.describe(), "theory": ph,
        "settings": {"bins": bins, "n_boot": n_boot, "seed": seed, "block_factor": BLOCK_FACTOR,
                     "binning": "equal widths over the pooled range of both ensembles",
                     "density": "n_k / (N w_k)", "errors": "blocked bootstrap, blocks of ceil(block_factor * tau_int) "
                     "configurations of each chain", "residual": "(h_flow - h_hmc) / sqrt(s_flow^2 + s_hmc^2)",
                     "p_value": "P(g chi2_h >= sum r^2), dof = bins with a non-zero denominator, h = dof_effective = "
                     "dof^2 / tr(M^2) from the bootstrap correlation matrix M of the residuals, g = dof / h; the "
                     "total's M from one joint bootstrap of all observables per ensemble (same blocks)"},
        "table": {"rows": rows, "total": {"chi2": total.chi2, "dof": total.dof, "dof_effective": total.dof_effective,
                                                  "p_value": _num(total.p_value)}},
        "observables": {n: _entry(c) for n, c in comparisons.items()},
    }
    write_json(outdir / COMPARE_SUMMARY, result)
    from .plots import compare_plot, residuals_plot

    title = (f"{fs.record['action']} {fs.record['group']} {'x'.join(map(str, fs.record['lattice']))} "
             f"{ph['action_params']}: flow ({fs.n}) vs HMC ({hs.n})")
    made = [compare_plot(outdir / COMPARE_PLOT, comparisons, title),
            residuals_plot(outdir / RESIDUALS_PLOT, np.concatenate([c.residuals[c.used] ** 2 for c in
                                                                     comparisons.values()]), total, title)]
    result["plots"] = [m for m in made if m]
    write_json(outdir / COMPARE_SUMMARY, result)
    if echo:
        print(format_compare_table(result))
        print(f"written to {outdir / COMPARE_SUMMARY}" + "".join(f", {outdir / m}" for m in result["plots"]))
    return result
