"""The main job: generate an ensemble, measure with honest errors, compare with exact results.

``latticekit run [CONFIG.toml] --out DIR`` calls :func:`run_job`. The job

1. validates the configuration (:mod:`latticekit.config`) before any work;
2. thermalises and then samples ``sampler.chains`` independent chains (HMC or heatbath; Nf = 2
   HMC with pseudofermions for ``action.kind = "wilson_nf2"``, which also measures the pion
   correlator ``C_pi_t0 .. C_pi_t{L0/2}``) on the chosen backend, in segments of
   ``output.checkpoint_every`` measurements;
3. after every segment writes its state (fields, time series, progress) atomically to
   ``DIR/state.npz`` and appends every ``output.store_every``-th configuration of each chain to the
   HDF5 ensemble ``DIR/ensemble.h5`` (gauge theories); a killed job resumes from the last segment
   with identical results, since segment ``k`` draws from its own seed derived from ``(seed, k)``;
4. analyses every observable with the Gamma method (chains as replicas; tau_int-corrected errors),
   compares with :mod:`latticekit.exact` where an exact result exists, prints a table and writes
   ``DIR/results.json`` and plots (history, histogram of Q, autocorrelation).

``latticekit measure DIR`` (:func:`measure_job`) re-measures the stored ensemble.

Examples
--------
>>> import tempfile
>>> from latticekit.config import RunConfig
>>> cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]},
...                            "sampler": {"chains": 2, "thermalization": 2, "measurements": 4}})
>>> res = run_job(cfg, out=tempfile.mkdtemp(), seed=1, progress=False, echo=False)
>>> sorted(res["observables"])
['chi_t', 'plaquette', 'topological_charge']
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import backends
from .analysis import gamma_method
from .config import ConfigError, RunConfig, load_config
from .groups import SUGroup, U1Group, group_from_name
from .lattice import Lattice
from .utils import Progress, atomic_write

__all__ = ["measure_job", "run_job", "Theory"]

_STATE = "state.npz"
_RESULTS = "results.json"
_ENSEMBLE = "ensemble.h5"
_STATE_VERSION = 1


def _segment_seed(seed: int, phase: int, k: int) -> int:
    # distinct integers per (seed, phase, segment); the generators hash them (numpy: SeedSequence)
    return (seed * 1_000_003 + phase * 65_537 + k * 2 + 1) % (2**62)


class Theory:
    """Everything the job needs about one theory: field constructor, action, sampler, measurements."""

    def __init__(self, cfg: RunConfig, backend: str, device: Any) -> None:
        from .actions import Phi4Action, WilsonGaugeAction

        self.cfg = cfg
        self.backend, self.device = backend, device
        self.lattice = Lattice(cfg.lattice.shape)
        a = cfg.action
        self.kind = a.kind
        #: gauge theory (pure Wilson or with Nf = 2 Wilson fermions)
        self.is_gauge = a.kind in ("wilson", "wilson_nf2")
        #: Nf = 2 dynamical Wilson fermions
        self.has_fermions = a.kind == "wilson_nf2"
        if self.is_gauge:
            self.group = group_from_name(a.group)
            self.action = WilsonGaugeAction(self.group, self.lattice, a.beta)
        else:
            self.group = None
            self.action = Phi4Action(self.lattice, a.kappa, a.lam)

    # -- fields and samplers -------------------------------------------------------------------
    def initial_field(self, rng: backends.Generator) -> Any:
        """Cold start for gauge theories, small Gaussian noise for scalars (batch = chains)."""
        C = self.cfg.sampler.chains
        if self.is_gauge:
            from .gauge import cold_gauge_field

            return cold_gauge_field(self.group, self.lattice, (C,), backend=self.backend, device=self.device)
        return rng.normal((C,) + self.lattice.shape, std=0.1)

    def sampler(self, rng: backends.Generator) -> Any:
        from .mc import HMC, Heatbath, Nf2HMC

        s = self.cfg.sampler
        if self.has_fermions:
            a = self.cfg.action
            return Nf2HMC.from_couplings(self.group, self.lattice, a.beta, kappa=a.kappa, rng=rng,
                                         even_odd=a.even_odd, mus=list(a.hasenbusch_mus) or None, tol=a.cg_tol,
                                         md_tol=a.cg_tol_md, maxiter=a.cg_maxiter, step_size=s.step_size,
                                         n_steps=s.n_steps, integrator=s.integrator, n_inner=s.n_inner or None)
        if s.algorithm == "heatbath":
            return Heatbath(self.group, self.lattice, self.cfg.action.beta, rng=rng, n_overrelax=s.overrelaxation)
        return HMC(self.action, rng=rng, step_size=s.step_size, n_steps=s.n_steps, integrator=s.integrator)

    # -- observables ---------------------------------------------------------------------------
    def observable_names(self) -> list[str]:
        """Primary observables measured on every configuration."""
        if self.kind == "phi4":
            L0 = self.lattice.shape[0]
            return ["magnetization", "abs_magnetization", "m2", "action_density",
                    *[f"C_t{t}" for t in range(L0 // 2 + 1)]]
        names = ["plaquette"]
        if isinstance(self.group, U1Group) and self.lattice.nd == 2:
            names.append("topological_charge")
        if self.lattice.nd >= 2 and self.lattice.nd != 2:
            names.append("polyakov_loop_abs")
        names += [f"wilson_loop_{t}x{r}" for t, r in self.cfg.measure.wilson_loops]
        if self.has_fermions:
            names += [f"C_pi_t{t}" for t in range(self.lattice.shape[0] // 2 + 1)]
        return names

    def measure(self, x: Any) -> dict[str, Any]:
        """Primary observables of a batch of configurations: name -> array (chains,)."""
        from . import observables as obs

        lat = self.lattice
        xp = backends.array_namespace(x)
        out: dict[str, Any] = {}
        if self.kind == "phi4":
            M = obs.magnetization(x, lat)
            out["magnetization"] = M
            out["abs_magnetization"] = xp.abs(M)
            out["m2"] = M * M
            out["action_density"] = self.action.action(x) / lat.volume
            C = obs.zero_momentum_correlator(x, lat, mu=0)  # (chains, L0)
            for t in range(lat.shape[0] // 2 + 1):
                out[f"C_t{t}"] = C[:, t]
            return out
        G = self.group
        out["plaquette"] = obs.average_plaquette(x, G, lat)
        if "topological_charge" in self.observable_names():
            out["topological_charge"] = obs.topological_charge_u1_2d(x, lat)
        if "polyakov_loop_abs" in self.observable_names():
            out["polyakov_loop_abs"] = xp.abs(obs.average_polyakov_loop(x, G, lat))
        for t, r in self.cfg.measure.wilson_loops:
            out[f"wilson_loop_{t}x{r}"] = obs.wilson_loop(x, G, lat, r, t, mu=0, nu=1)
        if self.has_fermions:
            from .actions import WilsonDirac

            a = self.cfg.action
            C = obs.pion_correlator(WilsonDirac(x, G, lat, kappa=a.kappa), tol=a.cg_tol,
                                    maxiter=max(a.cg_maxiter, 4000))  # (chains, L0)
            for t in range(lat.shape[0] // 2 + 1):
                out[f"C_pi_t{t}"] = C[:, t]
        return out

    def exact(self) -> dict[str, float | None]:
        """Exact values where the theory has them (None elsewhere)."""
        from . import exact

        a, lat = self.cfg.action, self.lattice
        shape = lat.shape
        out: dict[str, float | None] = {}
        if self.kind == "phi4":
            free = a.lam == 0.0
            out["susceptibility"] = float(exact.free_scalar_susceptibility(shape, kappa=a.kappa)) if free else None
            out["magnetization"] = 0.0
            if free:
                C = backends.to_numpy(exact.free_scalar_timeslice_correlator(shape, kappa=a.kappa, backend="numpy"))
                for t in range(shape[0] // 2 + 1):
                    out[f"C_t{t}"] = float(C[t])
            return out
        G = self.group
        if self.has_fermions:
            # no exact results with dynamical fermions; <Q> = 0 by parity
            if "topological_charge" in self.observable_names():
                out["topological_charge"] = 0.0
            return out
        if lat.nd == 2 and isinstance(G, U1Group):
            out["plaquette"] = float(exact.u1_2d_plaquette(a.beta, shape))
            out["chi_t"] = float(exact.u1_2d_topological_susceptibility(a.beta, shape))
            out["topological_charge"] = 0.0
            for t, r in self.cfg.measure.wilson_loops:
                out[f"wilson_loop_{t}x{r}"] = float(exact.u1_2d_wilson_loop(a.beta, t, r, shape))
        elif lat.nd == 2 and isinstance(G, SUGroup):
            out["plaquette"] = float(exact.sun_2d_plaquette(a.beta, G.N, shape))
            for t, r in self.cfg.measure.wilson_loops:
                if t < shape[0] and r < shape[1]:
                    out[f"wilson_loop_{t}x{r}"] = float(exact.sun_2d_wilson_loop(a.beta, G.N, t, r, shape))
        return out

    def derived(self) -> dict[str, tuple[list[str], Callable[[Any], Any]]]:
        """Derived observables: name -> (primary names, function of their stacked means)."""
        V = self.lattice.volume
        if self.kind == "phi4":
            # chi = V <M^2> (full); for the free theory <M> = 0 so this is also the connected one
            return {"susceptibility": (["m2"], lambda a: V * a[0])}
        if "topological_charge" in self.observable_names():
            # chi_t = <Q^2> / V, a primary in Q^2 handled through the Gamma method
            return {"chi_t": (["q2"], lambda a: a[0] / V)}
        return {}


# -- helpers ------------------------------------------------------------------------------------
def _to_host_list(a: Any) -> list[float]:
    return [float(v) for v in backends.to_numpy(a).reshape(-1)]


def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def _resolve_backend(backend: str | None, device: Any) -> tuple[str, Any]:
    name = backend or backends.default_backend()
    backends.namespace(name)  # raises a clear BackendError when unknown/unavailable
    dev = device if device is not None else backends.default_device()
    return name, dev


# -- the job -----------------------------------------------------------------------------------
def run_job(config: str | os.PathLike | RunConfig | None = None, *, out: str | os.PathLike = "latticekit-run",
            seed: int = 1234, backend: str | None = None, device: Any = None, fresh: bool = False,
            progress: bool = True, echo: bool = True) -> dict[str, Any]:
    """Run (or resume) the main job; returns the content of ``results.json``.

    Parameters
    ----------
    config : path, RunConfig or None
        TOML file, a validated configuration, or None for the built-in default (2D U(1), L=16, beta=2).
    out : path
        Output folder (created). Holds ``state.npz``, ``ensemble.h5``, ``results.json`` and plots.
    seed : int
        Random seed; segment ``k`` of the run uses a seed derived from ``(seed, k)``.
    backend, device : optional
        Array backend and device (default: ``LATTICEKIT_BACKEND`` / numpy).
    fresh : bool
        Start over even if ``out`` holds a saved state.
    progress, echo : bool
        Show progress bars / print the summary table.
    """
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    if not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed: expected a non-negative integer, got {seed!r}")
    backend, device = _resolve_backend(backend, device)
    theory = Theory(cfg, backend, device)
    outdir = Path(out)
    outdir.mkdir(parents=True, exist_ok=True)
    state_path = outdir / _STATE
    ident = {"config": cfg.to_dict(), "seed": seed, "backend": backend, "version": _STATE_VERSION}

    s = cfg.sampler
    seg = cfg.output.checkpoint_every
    names = theory.observable_names()
    series: dict[str, list[list[float]]] = {n: [] for n in names}  # per measurement: values per chain
    accept: list[list[float]] = []
    dH: list[list[float]] = []
    cg: list[list[float]] = []  # wilson_nf2: CG iterations per trajectory, per chain
    phase, done, steps = "therm", 0, 0
    x = None
    if state_path.exists() and not fresh:
        from .io import load_state

        arrays, meta = load_state(state_path)
        if meta.get("ident") != json.loads(json.dumps(ident)):
            raise ConfigError(f"{state_path} belongs to a run with a different configuration, seed or backend; "
                              "use --fresh or another --out")
        x = backends.from_numpy(arrays["field"], backend=backend, device=device, copy=True)
        phase, done, steps = meta["phase"], meta["done"], meta["steps"]
        for n in names:
            series[n] = arrays[f"obs_{n}"].tolist() if f"obs_{n}" in arrays else []
        accept = arrays["accept"].tolist() if "accept" in arrays else []
        dH = arrays["dH"].tolist() if "dH" in arrays else []
        cg = arrays["cg"].tolist() if "cg" in arrays else []
        if echo:
            print(f"resuming {outdir}: phase {phase}, {done} done", file=sys.stderr)
    elif fresh:
        for f in (_STATE, _ENSEMBLE, _RESULTS):
            (outdir / f).unlink(missing_ok=True)
    if x is None:
        x = theory.initial_field(backends.rng(_segment_seed(seed, 0, 0), backend=backend, device=device))

    ensemble = _open_ensemble(theory, outdir, seed) if theory.is_gauge else None

    def save() -> None:
        from .io import save_state

        arrays = {"field": x, "accept": _as_float_array(accept), "dH": _as_float_array(dH)}
        if cg:
            arrays["cg"] = _as_float_array(cg)
        for n in names:
            arrays[f"obs_{n}"] = _as_float_array(series[n])
        save_state(state_path, arrays, {"ident": ident, "phase": phase, "done": done, "steps": steps})

    t0 = time.time()
    try:
        # thermalisation, in segments of `seg` steps
        if phase == "therm":
            bar = Progress(s.thermalization, done, "thermalising", progress)
            while done < s.thermalization:
                n = min(seg, s.thermalization - done)
                sampler = theory.sampler(backends.rng(_segment_seed(seed, 1, done // seg), backend=backend,
                                                      device=device))
                _restore_counters(sampler, steps)
                for _ in range(n):
                    x, _info = sampler.step(x)
                    bar.update()
                done += n
                steps += n
                save()
            bar.close()
            phase, done = "measure", 0
            save()
        # measurements: `every` steps between measurements, checkpoint every `seg` measurements
        every = cfg.measure.every
        bar = Progress(s.measurements, done, "measuring", progress)
        store_every = max(1, cfg.output.store_every)
        while done < s.measurements:
            n = min(seg, s.measurements - done)
            sampler = theory.sampler(backends.rng(_segment_seed(seed, 2, done // seg), backend=backend,
                                                  device=device))
            _restore_counters(sampler, steps)
            stored = []
            for k in range(n):
                acc_k, dh_k, cg_k = [], [], []
                for _ in range(every):
                    x, info = sampler.step(x)
                    steps += 1
                    if info.accepted is not None:
                        acc_k.append(_to_host_list(info.accepted))
                    if info.dH is not None:
                        dh_k.append(_to_host_list(info.dH))
                    if "cg_iterations" in info.extras:
                        cg_k.append(_to_host_list(info.extras["cg_iterations"]))
                m = theory.measure(x)
                for name in names:
                    series[name].append(_to_host_list(m[name]))
                if acc_k:
                    accept.append([sum(col) / len(col) for col in zip(*acc_k)])
                if dh_k:
                    dH.append(dh_k[-1])
                if cg_k:
                    cg.append([sum(col) / len(col) for col in zip(*cg_k)])
                if ensemble is not None and (done + k) % store_every == 0:
                    stored.append((done + k, x, {nm: series[nm][-1] for nm in names}))
                bar.update()
            # store configurations before the state: a resumed job re-appends nothing it already stored
            if ensemble is not None:
                _store(ensemble, stored, theory)
            done += n
            save()
        bar.close()
        phase = "done"
        save()
    finally:
        if ensemble is not None:
            ensemble.close()

    results = analyse(theory, series, accept, dH, cfg, seed, backend, device, cg=cg)
    results["runtime_s"] = round(time.time() - t0, 3)
    _write_json(outdir / _RESULTS, results)
    if cfg.output.plots:
        results["plots"] = _plots(outdir, theory, series, results)
        _write_json(outdir / _RESULTS, results)
    if echo:
        print(format_table(results))
        print(f"results written to {outdir / _RESULTS}")
    return results


def _restore_counters(sampler: Any, steps: int) -> None:
    # reunitarisation schedules count trajectories/steps: continue the count across segments
    for attr in ("trajectories", "steps"):
        if hasattr(sampler, attr):
            setattr(sampler, attr, steps)


def _as_float_array(rows: list[list[float]]) -> Any:
    """(n_measurements, chains) host array of a list of rows."""
    return backends.from_numpy(rows, backend="numpy")


def _open_ensemble(theory: Theory, outdir: Path, seed: int) -> Any:
    from .io import Ensemble

    path = outdir / _ENSEMBLE
    cfg = theory.cfg
    if path.exists():
        return Ensemble.open(path, mode="a")
    a = cfg.action
    params: dict[str, Any] = {"beta": a.beta}
    if theory.has_fermions:
        params.update(kappa=a.kappa, nf=2, even_odd=a.even_odd, hasenbusch_mus=list(a.hasenbusch_mus))
    return Ensemble.create(path, lattice=theory.lattice, group=theory.group, action=a.kind,
                           action_params=params, sampler=cfg.sampler.algorithm,
                           sampler_params=dict(vars(cfg.sampler)), seeds=[seed])


def _store(ensemble: Any, stored: list[tuple[int, Any, dict[str, list[float]]]], theory: Theory) -> None:
    already = {(ensemble.info(i).get("measurement"), ensemble.info(i).get("chain")) for i in range(len(ensemble))} \
        if stored else set()
    for k, x, obsvals in stored:
        for c in range(theory.cfg.sampler.chains):
            if (k, c) in already:
                continue
            ensemble.append(x[c, ...], observables={n: v[c] for n, v in obsvals.items()},
                            info={"measurement": k, "chain": c})


def analyse(theory: Theory, series: dict[str, list[list[float]]], accept: list[list[float]], dH: list[list[float]],
            cfg: RunConfig, seed: int, backend: str, device: Any,
            cg: list[list[float]] | None = None) -> dict[str, Any]:
    """Gamma-method analysis of the time series (chains are replicas) and comparison with exact values.

    ``cg`` (wilson_nf2): CG iterations per trajectory and chain, reported as ``sampler.cg_iterations``.
    """
    exact = theory.exact()
    obs: dict[str, Any] = {}

    def chains_of(rows: list[list[float]]) -> list[Any]:
        arr = backends.from_numpy(rows, backend="numpy")  # (n_meas, chains)
        return [arr[:, c] for c in range(arr.shape[1])]

    def entry(res: Any, name: str) -> dict[str, Any]:
        ex = exact.get(name)
        e = {"value": float(res.value), "error": float(res.error), "tau_int": float(res.tau_int),
             "tau_int_error": float(res.tau_int_error), "exact": ex}
        if ex is not None and res.error > 0:
            e["deviation_sigma"] = (float(res.value) - ex) / float(res.error)
        return e

    for name, rows in series.items():
        if rows:
            obs[name] = entry(gamma_method(chains_of(rows)), name)
    if "topological_charge" in series and series["topological_charge"]:
        q2 = [[q * q for q in row] for row in series["topological_charge"]]
        series = dict(series, q2=q2)
    for name, (prim, func) in theory.derived().items():
        if all(series.get(p) for p in prim):
            arrs = [chains_of(series[p]) for p in prim]
            stacked = [backends.from_numpy([list(a) for a in col], backend="numpy") for col in zip(*arrs)]
            obs[name] = entry(gamma_method(stacked, func), name)
    info: dict[str, Any] = {}
    if accept:
        rate = gamma_method(chains_of(accept))
        info["acceptance"] = {"value": float(rate.value), "error": float(rate.error)}
    if dH:
        import math as _m

        e = [[_m.exp(-v) for v in row] for row in dH]
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
    """The summary table printed by the job."""
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


def _plots(outdir: Path, theory: Theory, series: dict[str, list[list[float]]], results: dict[str, Any]) -> list[str]:
    """History, histogram of Q and autocorrelation plots (matplotlib, Agg); returns the file names."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    import io as _io

    made = []

    def save(fig: Any, name: str) -> None:
        buf = _io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
        plt.close(fig)
        atomic_write(outdir / name, buf.getvalue())
        made.append(name)

    first = theory.observable_names()[0]
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
        save(fig, f"history_{first}.png")
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
        save(fig, f"autocorrelation_{first}.png")
    if series.get("topological_charge"):
        qs = [round(q) for r in series["topological_charge"] for q in r]
        fig, ax = plt.subplots(figsize=(5, 3.2))
        lo, hi = min(qs), max(qs)
        ax.hist(qs, bins=range(lo, hi + 2), align="left", rwidth=0.8, density=True, label="measured")
        try:
            from .exact import u1_2d_charge_distribution

            if theory.has_fermions:  # the exact P(Q) is that of the pure gauge theory
                raise ValueError("no exact charge distribution with dynamical fermions")
            a = theory.cfg.action
            q, p = u1_2d_charge_distribution(a.beta, theory.lattice.shape, q_max=max(abs(lo), abs(hi)))
            ax.plot(q, p, "k.", label="exact P(Q)")
        except (ImportError, ValueError):
            pass
        ax.set_xlabel("Q")
        ax.legend(fontsize=7)
        save(fig, "histogram_Q.png")
    return made


def measure_job(out: str | os.PathLike, *, backend: str | None = None, device: Any = None,
                echo: bool = True) -> dict[str, Any]:
    """Re-measure the configurations stored in ``out/ensemble.h5`` by :func:`run_job`.

    Writes ``out/remeasured.json`` with per-observable means and naive errors over the stored
    configurations (which are every ``output.store_every``-th measurement of each chain, so
    nearly decorrelated), next to the exact values; returns it.
    """
    from .io import Ensemble

    outdir = Path(out)
    res_path = outdir / _RESULTS
    ens_path = outdir / _ENSEMBLE
    if not ens_path.exists():
        raise FileNotFoundError(f"{ens_path} does not exist: `latticekit measure` needs the folder of a finished "
                                "`latticekit run` of a gauge theory")
    cfg = RunConfig.from_dict(json.loads(res_path.read_text())["config"]) if res_path.exists() else None
    with Ensemble.open(ens_path) as ens:
        if cfg is None:
            raise FileNotFoundError(f"{res_path} is missing; it holds the configuration of the run")
        backend, device = _resolve_backend(backend, device)
        theory = Theory(cfg, backend, device)
        names = theory.observable_names()
        vals: dict[str, list[float]] = {n: [] for n in names}
        for i in range(len(ens)):
            U = ens.read(i, backend=backend, device=device)
            xp = backends.array_namespace(U)
            m = theory.measure(xp.expand_dims(U, axis=0))
            for n in names:
                vals[n].append(_to_host_list(m[n])[0])
    exact = theory.exact()
    out_obs = {}
    for n, v in vals.items():
        k = len(v)
        mean = sum(v) / k
        var = sum((a - mean) ** 2 for a in v) / max(k - 1, 1)
        out_obs[n] = {"value": mean, "error": math.sqrt(var / k), "n": k, "exact": exact.get(n)}
    if "topological_charge" in vals:
        q2 = [q * q / theory.lattice.volume for q in vals["topological_charge"]]
        k = len(q2)
        mean = sum(q2) / k
        var = sum((a - mean) ** 2 for a in q2) / max(k - 1, 1)
        out_obs["chi_t"] = {"value": mean, "error": math.sqrt(var / k), "n": k, "exact": exact.get("chi_t")}
    result = {"observables": out_obs, "ensemble": str(ens_path), "backend": backend}
    _write_json(outdir / "remeasured.json", result)
    if echo:
        for n, e in out_obs.items():
            ex = "-" if e["exact"] is None else f"{e['exact']:.6g}"
            print(f"{n:22s} {e['value']:.6g} +- {e['error']:.2g}  (n={e['n']})  exact {ex}")
    return result
