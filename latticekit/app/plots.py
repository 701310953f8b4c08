"""The figures of the jobs: PNG files written atomically with matplotlib's Agg backend.

* ``latticekit run``: history and autocorrelation of the first observable, histogram of the
  topological charge against the exact ``P(Q)`` where the theory has one (:func:`run_plots`);
* ``latticekit train``: the training curve ``train.png`` (loss, ESS and var log w against the step and
  against the CPU time, with the evaluations marked), drawn from every line of ``metrics.jsonl``, so a
  resumed run's plot covers all steps (:func:`training_plot`);
* ``latticekit sample``: ``sample.png``, a histogram of every observable on the flow-MCMC chain with
  the flow-MCMC estimate and the reference (exact value, or a run's value and error) (:func:`sample_plot`);
* ``latticekit compare``: ``compare.png`` (Fig. 2 of arXiv:2208.03832: per observable the density
  histograms of both ensembles with their errors, and below them the ratio flow/HMC per bin,
  :func:`compare_plot`) and ``compare_residuals.png`` (Fig. 3: the squared residuals of all bins in bins
  uniform in their square root, against the chi^2 density with one degree of freedom,
  :func:`residuals_plot`).

Where matplotlib cannot be imported, no figure is written and the functions return nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from latticekit import backends
from latticekit.utils import atomic_write

__all__ = ["compare_plot", "residuals_plot", "run_plots", "sample_plot", "training_plot"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, buf.getvalue())


def run_plots(outdir: Path, theory: Any, series: dict[str, list[list[float]]], results: dict[str, Any]) -> list[str]:
    """History, autocorrelation and histogram-of-Q plots of a run; returns the file names."""
    plt = _pyplot()
    if plt is None or not series:
        return []
    from latticekit.analysis import gamma_method

    made: list[str] = []
    first = next(iter(series))
    rows = series[first]
    if rows:
        fig, ax = plt.subplots(figsize=(7, 3.2))
        for c in range(min(len(rows[0]), 4)):
            ax.plot([r[c] for r in rows], lw=0.8, label=f"chain {c}")
        ex = results["observables"].get(first, {}).get("exact")
        if ex is not None:
            ax.axhline(ex, color="k", ls="--", lw=1, label="exact")
        ax.set_xlabel("measurement")
        ax.set_ylabel(first)
        ax.legend(fontsize=7, ncol=5)
        _save(plt, fig, outdir / f"history_{first}.png")
        made.append(f"history_{first}.png")
        fig, ax = plt.subplots(figsize=(5, 3.2))
        chains = [[r[c] for r in rows] for c in range(len(rows[0]))]
        res = gamma_method([backends.from_numpy(ch, backend="numpy") for ch in chains])
        rho = backends.to_numpy(res.rho)
        W = min(len(rho), max(int(4 * res.window + 1), 10))
        ax.plot(range(W), rho[:W], marker=".")
        ax.axvline(res.window, color="gray", ls=":", label=f"window W={res.window}")
        ax.set_xlabel("lag (measurements)")
        ax.set_ylabel(f"rho({first})")
        ax.legend(fontsize=7)
        _save(plt, fig, outdir / f"autocorrelation_{first}.png")
        made.append(f"autocorrelation_{first}.png")
    if series.get("topological_charge"):
        qs = [round(q) for r in series["topological_charge"] for q in r]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        lo, hi = min(qs), max(qs)
        ax.hist(qs, bins=range(lo, hi + 2), align="left", rwidth=0.8, density=True, label="measured")
        dist = theory.exact_distribution("topological_charge", max(abs(lo), abs(hi)))
        if dist is not None:
            ax.plot(dist[0], dist[1], "k.", label="exact P(Q)")
        ax.set_xlabel("Q")
        ax.legend(fontsize=7)
        _save(plt, fig, outdir / "histogram_Q.png")
        made.append("histogram_Q.png")
    return made


def training_plot(path: Path, metrics: Sequence[Mapping[str, Any]], title: str = "") -> str | None:
    """The training curve of ``metrics`` (the lines of ``metrics.jsonl``): loss, ESS and var log w against
    the step (left) and against the CPU time ``cpu_s`` (right; lines without it are left out). Returns
    the file name, or None when nothing was drawn."""
    plt = _pyplot()
    if plt is None or not metrics:
        return None
    # the ESS is the Kish ESS/N of the N draws of each batch (docs/flows.md, "ESS"); N where recorded
    n_batch = metrics[-1].get("ess_n")
    keys = [("loss", "loss"), ("ess", "ESS (Kish" + (f", N={n_batch})" if n_batch else ")")), ("var_log_w", "var log w")]
    fig, axes = plt.subplots(3, 2, figsize=(9, 7), sharex="col")
    steps = [m["step"] for m in metrics]
    timed = [m for m in metrics if "cpu_s" in m]
    for row, (key, label) in enumerate(keys):
        for col, xs, rows in ((0, steps, metrics), (1, [m["cpu_s"] for m in timed], timed)):
            ax = axes[row][col]
            if not rows:
                ax.set_visible(False)
                continue
            ax.plot(xs, [m.get(key, float("nan")) for m in rows], lw=0.8, label="training batch")
            ev = [(x, m[f"eval_{key}"]) for x, m in zip(xs, rows) if f"eval_{key}" in m]
            if ev:
                n_eval = next((m["eval_ess_n"] for m in reversed(rows) if "eval_ess_n" in m), None)
                ax.plot([e[0] for e in ev], [e[1] for e in ev], "o", ms=3,
                        label="evaluation" + (f" (N={n_eval})" if key == "ess" and n_eval else ""))
            if key == "var_log_w" and all(m.get(key, 0) > 0 for m in rows):
                ax.set_yscale("log")
            if col == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.legend(fontsize=7)
    axes[2][0].set_xlabel("step")
    axes[2][1].set_xlabel("CPU time (s)")
    if title:
        fig.suptitle(title, fontsize=9)
    _save(plt, fig, Path(path))
    return Path(path).name


def _panel_grid(n: int, max_cols: int) -> tuple[int, int]:
    """``(rows, columns)`` of a grid of ``n`` panels at most ``max_cols`` wide."""
    ncol = min(n, max_cols)
    return (n + ncol - 1) // ncol, ncol


def sample_plot(path: Path, values: Mapping[str, Any], estimates: Mapping[str, Mapping[str, Any]],
                reference: Mapping[str, Mapping[str, Any]], theory: Any, title: str = "") -> str | None:
    """Histograms of the flow-MCMC chain, one panel per observable in ``values`` (name -> per-step
    values), with the flow-MCMC estimate (``estimates[name]``: value, error) and the reference
    (``reference[name]``: value, error, kind). Returns the file name, or None when nothing was drawn."""
    import numpy as np

    plt = _pyplot()
    if plt is None or not values:
        return None
    n = len(values)
    nrow, ncol = _panel_grid(n, 2)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 3.2 * nrow), squeeze=False)
    for ax, (name, v) in zip(axes.flat, values.items()):
        v = np.asarray(v, dtype=float).reshape(-1)
        if name == "topological_charge":
            q = np.round(v).astype(int)
            lo, hi = int(q.min()), int(q.max())
            ax.hist(q, bins=range(lo, hi + 2), align="left", rwidth=0.8, density=True, label="flow MCMC chain")
            dist = theory.exact_distribution(name, max(abs(lo), abs(hi)))
            if dist is not None:
                ax.plot(dist[0], dist[1], "k.", label="exact P(Q)")
        else:
            # a chain whose values differ only by round-off (a proposal accepted rarely, re-measured) is drawn
            # in a padded range: numpy cannot make 40 bins narrower than the floats' resolution
            lo, hi = float(v.min()), float(v.max())
            size = max(abs(lo), abs(hi), 1.0)
            pad = 0.0 if hi - lo > 1e-9 * size else 1e-6 * size
            ax.hist(v, bins=40, range=(lo - pad, hi + pad), density=True, alpha=0.6, label="flow MCMC chain")
        est = estimates.get(name)
        if est is not None:
            err = est.get("error")
            ax.axvline(est["value"], color="C1", lw=1.2, label=f"flow MCMC {est['value']:.4g}" + (
                " (no error estimate)" if err is None else f" +- {err:.2g}") + ("" if est.get("reliable", True)
                                                                              else " (not reliable)"))
            if err is not None:
                ax.axvspan(est["value"] - err, est["value"] + err, color="C1", alpha=0.25)
        ref = reference.get(name)
        if ref is not None:
            err = ref.get("error") or 0.0
            text = f"{ref.get('kind', 'reference')} {ref['value']:.4g}" + (f" +- {err:.2g}" if err else "")
            ax.axvline(ref["value"], color="k", ls="--", lw=1.2, label=text)
            if err:
                ax.axvspan(ref["value"] - err, ref["value"] + err, color="k", alpha=0.15)
        ax.set_xlabel(name)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(plt, fig, Path(path))
    return Path(path).name


def compare_plot(path: Path, comparisons: Mapping[str, Any], title: str = "") -> str | None:
    """Fig. 2 style: for each observable (``name -> HistogramComparison`` of flow ``a`` against HMC ``b``) the
    two density histograms with their bootstrap errors (top) and the ratio flow/HMC per bin (bottom). Returns
    the file name, or None when nothing was drawn."""
    import numpy as np

    plt = _pyplot()
    if plt is None or not comparisons:
        return None
    n = len(comparisons)
    nrow, ncol = _panel_grid(n, 3)
    fig = plt.figure(figsize=(4.6 * ncol, 4.4 * nrow))
    grid = fig.add_gridspec(nrow, ncol, hspace=0.32, wspace=0.28)
    for k, (name, c) in enumerate(comparisons.items()):
        pair = grid[divmod(k, ncol)].subgridspec(2, 1, height_ratios=[3, 1.3], hspace=0.06)
        top = fig.add_subplot(pair[0])
        bottom = fig.add_subplot(pair[1], sharex=top)
        e = np.asarray(c.edges)
        mid = 0.5 * (e[1:] + e[:-1])
        for h, label, color in ((c.b, "HMC", "k"), (c.a, "flow", "C0")):
            top.stairs(h.density, e, color=color, lw=1.1, label=f"{label} (N={h.n})")
            top.errorbar(mid, h.density, yerr=h.error, fmt="none", ecolor=color, lw=0.9, capsize=2)
        p = "-" if not np.isfinite(c.p_value) else f"{c.p_value:.2g}"
        top.set_title(f"{name}: chi^2/dof = {c.chi2:.1f}/{c.dof}, p = {p}", fontsize=8)
        top.set_ylabel("density", fontsize=8)
        top.legend(fontsize=7)
        top.tick_params(labelbottom=False, labelsize=7)
        ok = np.isfinite(c.ratio)
        bottom.axhline(1.0, color="k", lw=0.8, ls="--")
        bottom.errorbar(mid[ok], c.ratio[ok], yerr=c.ratio_error[ok], fmt="o", ms=2.5, color="C0", lw=0.9, capsize=2)
        bottom.set_ylabel("flow/HMC", fontsize=8)
        bottom.set_xlabel(name, fontsize=8)
        bottom.tick_params(labelsize=7)
        if ok.any():   # rare bins have ratios with huge errors: keep the well-measured ones readable
            lo = np.nanmin(c.ratio[ok] - c.ratio_error[ok])
            hi = np.nanmax(c.ratio[ok] + c.ratio_error[ok])
            bottom.set_ylim(max(lo, -1.0), min(hi, 3.0))
    if title:
        fig.suptitle(title, fontsize=9)
    _save(plt, fig, Path(path))
    return Path(path).name


def residuals_plot(path: Path, r2: Any, total: Any = None, title: str = "") -> str | None:
    """Fig. 3 style: the density of the squared residuals ``r2`` of all bins and observables, in bins uniform in
    ``sqrt(r2)`` (``|r|``), against the chi^2 density with one degree of freedom (dashed), with the number of
    bins expected in each (dots). ``total`` (``chi2``, ``dof``, ``p_value``) goes into the legend. Returns the
    file name, or None when nothing was drawn."""
    import numpy as np
    from scipy import stats

    plt = _pyplot()
    r2 = np.asarray(r2, dtype=float).reshape(-1)
    if plt is None or r2.size == 0:
        return None
    top = max(3.5, float(np.sqrt(r2.max())) * 1.0001)
    nb = int(min(30, max(6, np.ceil(2 * np.sqrt(r2.size)))))
    edges = np.linspace(0.0, top, nb + 1) ** 2          # uniform in |r| = sqrt(r^2)
    counts, _ = np.histogram(r2, edges)
    width = np.diff(edges)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    label = f"{r2.size} bins"
    if total is not None:
        p = "-" if not np.isfinite(total.p_value) else f"{total.p_value:.2g}"
        label += f": sum r^2 = {total.chi2:.1f}, dof = {total.dof}, p = {p}"
    ax.stairs(counts / (r2.size * width), edges, color="C0", lw=1.2, label=label)
    x = np.linspace(edges[1] * 1e-3, edges[-1], 400)
    ax.plot(x, stats.chi2.pdf(x, 1), "k--", lw=1, label="chi^2, 1 degree of freedom")
    expected = np.diff(stats.chi2.cdf(edges, 1)) * r2.size
    ax.plot(0.5 * (edges[1:] + edges[:-1]), expected / (r2.size * width), "k.", ms=3,
            label="chi^2 (1) averaged over each bin")
    ax.set_yscale("log")
    ax.set_xscale("function", functions=(lambda v: np.sqrt(np.clip(v, 0.0, None)), np.square))
    ax.set_xlim(0.0, edges[-1])
    ax.set_xlabel("r^2 = (flow - HMC)^2 / (s_flow^2 + s_HMC^2)   (axis uniform in |r|)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    _save(plt, fig, Path(path))
    return Path(path).name
