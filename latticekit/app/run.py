"""The run job: generate an ensemble, measure with honest errors, compare with exact results.

``latticekit run [CONFIG.toml] --out DIR`` calls :func:`run_job`. The job

1. validates the configuration (:class:`~latticekit.app.config.RunConfig`) before any work and looks
   the theory up (:mod:`latticekit.theories`): action, initial field, sampler, observables, exact values;
2. thermalises and then samples ``sampler.chains`` independent chains with the theory's sampler
   (``sampler.algorithm``: HMC, heatbath, or Nf = 2 HMC with pseudofermions for ``wilson_nf2``) on the
   chosen backend, in segments of ``output.checkpoint_every`` measurements, measuring the observables
   ``measure.observables`` selects (default: all the theory offers);
3. after every segment writes its state atomically to ``DIR/state.npz`` and appends every
   ``output.store_every``-th configuration of each chain to the HDF5 ensemble ``DIR/ensemble.h5``
   (gauge theories) (:mod:`latticekit.app.run_state`); a killed job resumes from the last segment with
   identical results, since segment ``k`` draws from its own seed derived from ``(seed, k)``;
4. analyses every observable with the Gamma method (chains as replicas; tau_int-corrected errors),
   compares with the theory's exact values, prints a table and writes ``DIR/results.json`` and plots
   (history, histogram of Q, autocorrelation).

Examples
--------
>>> import tempfile
>>> from latticekit.app.config import RunConfig
>>> cfg = RunConfig.from_dict({"lattice": {"shape": [4, 4]},
...                            "sampler": {"chains": 2, "thermalization": 2, "measurements": 4}})
>>> res = run_job(cfg, out=tempfile.mkdtemp(), seed=1, progress=False, echo=False)
>>> sorted(res["observables"])
['chi_t', 'plaquette', 'topological_charge']
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Mapping

from latticekit import backends
from latticekit.linalg.cg import ConvergenceError
from latticekit.utils import Progress, remove_stale_temporaries
from latticekit.utils.schema import ConfigError

from .analysis import analyse, format_table
from .config import RunConfig, load_config
from .sections import MAX_SEED
from .devices import resolve_backend
from .folders import ENSEMBLE, REMEASURED, RESULTS, RUN_PLOTS, STATE, out_folder, refuse_other_job, write_json
from .killpoints import kill_point
from .memory import check_memory
from .run_state import RunState, check_ensemble, open_ensemble, run_identity, store_configurations

__all__ = ["run_job"]


def _segment_seed(seed: int, phase: int, k: int) -> int:
    # distinct integers per (seed, phase, segment); the generators hash them (numpy: SeedSequence)
    return (seed * 1_000_003 + phase * 65_537 + k * 2 + 1) % (2**62)


def _to_host_list(a: Any) -> list[float]:
    return [float(v) for v in backends.to_numpy(a).reshape(-1)]


def _restore_counters(sampler: Any, steps: int) -> None:
    # reunitarisation schedules count trajectories/steps: continue the count across segments
    for attr in ("trajectories", "steps"):
        if hasattr(sampler, attr):
            setattr(sampler, attr, steps)


def _job_files(names: list[str]) -> list[str]:
    """The files the run and measure jobs write in their folder (for the stale-temporary cleanup)."""
    plots = [f"{kind}_{n}.png" for n in names for kind in ("history", "autocorrelation")] + ["histogram_Q.png"]
    return [STATE, ENSEMBLE, RESULTS, REMEASURED, *plots]


def run_job(config: "str | os.PathLike[str] | Mapping[str, Any] | RunConfig | None" = None, *,
            out: str | os.PathLike[str] = "latticekit-run", seed: int = 1234, backend: str | None = None,
            device: Any = None, fresh: bool = False, progress: bool = True, echo: bool = True) -> dict[str, Any]:
    """Run (or resume) the run job; returns the content of ``results.json``.

    Parameters
    ----------
    config : path, mapping, RunConfig or None
        TOML file, a TOML-shaped mapping, a validated configuration, or None for the built-in default
        (2D U(1), L=16, beta=2).
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

    Raises
    ------
    latticekit.utils.ConfigError
        Before any work: an invalid configuration; ``out`` is a file; the fields would not fit in memory
        (:func:`latticekit.app.memory.check_memory`); ``out`` holds a state or an ``ensemble.h5`` of
        another run (``fresh=True`` starts over); ``out`` holds a ``latticekit train`` run.
    latticekit.linalg.cg.ConvergenceError
        A solve of the Nf = 2 sampler did not converge within ``action.cg_maxiter`` (the message says so;
        the last checkpoint stays in place).
    """
    cfg = load_config(None) if config is None else RunConfig.load(config)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed: expected an integer in [0, 2^63 - 1], got {seed!r}")
    backend, device = resolve_backend(backend, device)
    theory = cfg.theory
    names, derived = theory.select(cfg.measure.observables)
    s = cfg.sampler
    check_memory(theory.field_bytes(), s.chains, f"lattice.shape {list(cfg.lattice.shape)} with sampler.chains = "
                 f"{s.chains}")
    outdir = out_folder(out)
    refuse_other_job(outdir, "run")
    state_path = outdir / STATE
    ident = run_identity(cfg, seed, backend)
    remove_stale_temporaries(outdir, _job_files(theory.observable_names()))

    seg = cfg.output.checkpoint_every
    st: RunState | None = None
    if state_path.exists() and not fresh:
        st = RunState.load(state_path, ident, names, backend, device)
        if echo:
            print(f"resuming {outdir}: phase {st.phase}, {st.done} done", file=sys.stderr)
    elif fresh:
        for f in (STATE, ENSEMBLE, RESULTS, REMEASURED):
            (outdir / f).unlink(missing_ok=True)
        for f in RUN_PLOTS:   # the plots of the previous run (their names depend on its observables)
            for p in outdir.glob(f):
                p.unlink(missing_ok=True)
    if theory.is_gauge and (outdir / ENSEMBLE).exists():
        check_ensemble(outdir / ENSEMBLE, ident, state_matches=st is not None)
    if st is None:
        x0 = theory.initial_field(s.chains, backends.rng(_segment_seed(seed, 0, 0), backend=backend, device=device),
                                  backend=backend, device=device)
        st = RunState(x0, names)

    def sampler_for(phase: int, k: int) -> Any:
        smp = theory.sampler(s.algorithm, s.variant, rng=backends.rng(_segment_seed(seed, phase, k), backend=backend,
                                                                      device=device))
        _restore_counters(smp, st.steps)
        return smp

    ensemble = open_ensemble(theory, cfg, outdir / ENSEMBLE, seed, ident) if theory.is_gauge else None
    kill_point("run:ensemble-created")
    t0 = time.time()
    try:
        # thermalisation, in segments of `seg` steps
        if st.phase == "therm":
            bar = Progress(s.thermalization, st.done, "thermalising", progress)
            while st.done < s.thermalization:
                n = min(seg, s.thermalization - st.done)
                sampler = sampler_for(1, st.done // seg)
                for _ in range(n):
                    st.x, _info = sampler.step(st.x)
                    bar.update()
                st.done += n
                st.steps += n
                st.save(state_path, ident)
            bar.close()
            st.phase, st.done = "measure", 0
            st.save(state_path, ident)
        # measurements: `every` steps between measurements, checkpoint every `seg` measurements
        every = cfg.measure.every
        bar = Progress(s.measurements, st.done, "measuring", progress)
        store_every = cfg.output.store_every
        while st.done < s.measurements:
            n = min(seg, s.measurements - st.done)
            sampler = sampler_for(2, st.done // seg)
            stored = []
            for k in range(n):
                acc_k, dh_k, cg_k = [], [], []
                for _ in range(every):
                    st.x, info = sampler.step(st.x)
                    st.steps += 1
                    if info.accepted is not None:
                        acc_k.append(_to_host_list(info.accepted))
                    if info.dH is not None:
                        dh_k.append(_to_host_list(info.dH))
                    if "cg_iterations" in info.extras:
                        cg_k.append(_to_host_list(info.extras["cg_iterations"]))
                m = theory.measure(st.x, names)
                for name in names:
                    st.series[name].append(_to_host_list(m[name]))
                if acc_k:
                    st.accept.append([sum(col) / len(col) for col in zip(*acc_k)])
                if dh_k:
                    st.dH.append(dh_k[-1])
                if cg_k:
                    st.cg.append([sum(col) / len(col) for col in zip(*cg_k)])
                if ensemble is not None and (st.done + k) % store_every == 0:
                    stored.append((st.done + k, st.x, {nm: st.series[nm][-1] for nm in names}))
                bar.update()
                kill_point("run:measurement")
            # store configurations before the state: a resumed job re-appends nothing it already stored
            if ensemble is not None:
                store_configurations(ensemble, stored, s.chains)
            st.done += n
            st.save(state_path, ident)
        bar.close()
        st.phase = "done"
        st.save(state_path, ident)
    except ConvergenceError as exc:
        maxiter = getattr(cfg.action, "cg_maxiter", None)
        stalled = exc.info.stalled is not None and bool(backends.to_numpy(exc.info.stalled).any())
        if stalled:   # the true residual stalled at the precision floor: more iterations do not help
            hint = "loosen action.cg_tol / cg_tol_md (raising action.cg_maxiter does not help a stalled solve)"
        else:
            hint = f"action.cg_maxiter = {maxiter}; raise it (or action.cg_tol / cg_tol_md)" if maxiter else "the solver"
        kept = (f"The last checkpoint in {outdir} is kept: rerun to resume" if state_path.exists() else
                f"No checkpoint was written yet: a rerun into {outdir} starts from the beginning")
        raise ConvergenceError(f"a solve of the sampler did not converge ({exc}); {hint}. {kept}", exc.info) from None
    finally:
        if ensemble is not None:
            ensemble.close()

    results = analyse(theory, st.series, st.accept, st.dH, cfg, seed, backend, device, cg=st.cg, derived=derived)
    results["runtime_s"] = round(time.time() - t0, 3)
    write_json(outdir / RESULTS, results)
    if cfg.output.plots:
        from .plots import run_plots

        results["plots"] = run_plots(outdir, theory, st.series, results)
        write_json(outdir / RESULTS, results)
    if echo:
        print(format_table(results))
        print(f"results written to {outdir / RESULTS}")
    return results
