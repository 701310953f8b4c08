"""The measure job: ``latticekit measure DIR`` re-measures the ensemble a run stored.

:func:`measure_job` reads the run's configuration from ``DIR/results.json``, measures the theory's
observables (the run's ``measure.observables`` selection) on every configuration of
``DIR/ensemble.h5`` and writes ``DIR/remeasured.json``: per observable the mean and a naive error over
the stored configurations (every ``output.store_every``-th measurement of each chain, so nearly
decorrelated), and for derived observables (``chi_t``) their value with a jackknife error, next to the
exact values.

Examples
--------
>>> import tempfile
>>> from latticekit.app.run import run_job
>>> out = tempfile.mkdtemp()
>>> _ = run_job({"lattice": {"shape": [4, 4]}, "sampler": {"chains": 2, "thermalization": 2, "measurements": 4},
...              "output": {"plots": False, "store_every": 2}}, out=out, progress=False, echo=False)
>>> rem = measure_job(out, echo=False)
>>> rem["observables"]["plaquette"]["n"], sorted(rem["observables"])
(4, ['chi_t', 'plaquette', 'topological_charge'])
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from latticekit import backends
from latticekit.analysis import jackknife
from latticekit.utils import remove_stale_temporaries

from .config import RunConfig
from .devices import resolve_backend
from .folders import ENSEMBLE, REMEASURED, RESULTS, read_json, write_json

__all__ = ["measure_job"]


def measure_job(out: str | os.PathLike[str], *, backend: str | None = None, device: Any = None,
                echo: bool = True) -> dict[str, Any]:
    """Re-measure the configurations stored in ``out/ensemble.h5`` by a run; returns ``remeasured.json``."""
    from latticekit.io import Ensemble

    outdir = Path(out)
    res_path, ens_path = outdir / RESULTS, outdir / ENSEMBLE
    if not ens_path.exists():
        raise FileNotFoundError(f"{ens_path} does not exist: `latticekit measure` needs the folder of a finished "
                                "`latticekit run` of a gauge theory")
    if not res_path.exists():
        raise FileNotFoundError(f"{res_path} is missing; it holds the configuration of the run")
    cfg = RunConfig.from_stored(read_json(res_path, "the results of a `latticekit run`")["config"])
    remove_stale_temporaries(outdir, [REMEASURED])
    backend, device = resolve_backend(backend, device)
    theory = cfg.theory
    names, derived = theory.select(cfg.measure.observables)
    vals: dict[str, list[float]] = {n: [] for n in names}
    with Ensemble.open(ens_path) as ens:
        for i in range(len(ens)):
            U = ens.read(i, backend=backend, device=device)
            xp = backends.array_namespace(U)
            m = theory.measure(xp.expand_dims(U, axis=0), names)
            for n in names:
                vals[n].append(float(backends.to_numpy(m[n]).reshape(-1)[0]))
    exact = theory.exact()
    out_obs: dict[str, Any] = {}
    for n, v in vals.items():
        k = len(v)
        mean = sum(v) / k
        # one stored configuration has no spread to estimate an error from: None, not 0
        err = math.sqrt(sum((a - mean) ** 2 for a in v) / (k - 1) / k) if k > 1 else None
        out_obs[n] = {"value": mean, "error": err, "n": k, "exact": exact.get(n)}
    der = theory.derived()
    for n in derived:
        d = der[n]
        if not all(vals.get(i) for i in d.inputs):
            continue
        parts = np.stack([np.asarray(a, dtype=np.float64) for a in d.series({i: np.asarray(vals[i]) for i in d.inputs})])
        if parts.shape[-1] < 2:
            out_obs[n] = {"value": float(d.func(parts.mean(axis=-1))), "error": None, "n": parts.shape[-1],
                          "exact": exact.get(n)}
            continue
        r = jackknife(parts, d.func)  # bin size 1: for a linear function the naive error
        out_obs[n] = {"value": float(r.value), "error": float(r.error), "n": parts.shape[-1], "exact": exact.get(n)}
    result = {"observables": out_obs, "ensemble": str(ens_path), "backend": backend}
    write_json(outdir / REMEASURED, result)
    if echo:
        for n, e in out_obs.items():
            ex = "-" if e["exact"] is None else f"{e['exact']:.6g}"
            err = "(no error: one configuration)" if e["error"] is None else f"+- {e['error']:.2g}"
            print(f"{n:22s} {e['value']:.6g} {err}  (n={e['n']})  exact {ex}")
    return result
