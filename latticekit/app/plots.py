"""The figures of the jobs: PNG files written atomically with matplotlib's Agg backend.

* ``latticekit run``: history and autocorrelation of the first observable, histogram of the
  topological charge against the exact ``P(Q)`` where the theory has one (:func:`run_plots`);
* ``latticekit train``: the training curve ``train.png`` (loss, ESS and var log w against the step and
  against the CPU time, with the evaluations marked), drawn from every line of ``metrics.jsonl``, so a
  resumed run's plot covers all steps (:func:`training_plot`);
* ``latticekit sample``: ``sample.png``, a histogram of every observable on the flow-MCMC chain with
  the flow-MCMC estimate and the reference (exact value, or a run's value and error) (:func:`sample_plot`).

Where matplotlib cannot be imported, no figure is written and the functions return nothing.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Mapping, Sequence

from latticekit import backends
from latticekit.utils import atomic_write

__all__ = ["run_plots", "sample_plot", "training_plot"]


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
    ncol = min(n, 2)
    nrow = (n + ncol - 1) // ncol
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
            ax.hist(v, bins=40, density=True, alpha=0.6, label="flow MCMC chain")
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
