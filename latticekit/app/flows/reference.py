"""A reference for a flow: the run job on the same lattice and action.

:func:`reference_run` turns a flow configuration into a run configuration of the same ``[lattice]``
and ``[action]``, with the sampler the theory prefers for references
(``Theory.reference_sampler``: the heatbath for pure gauge theories, HMC for phi^4), runs
:func:`latticekit.app.run.run_job` and returns its results (the content of ``results.json``), which
:func:`~latticekit.app.flows.summary.flow_summary` and ``latticekit sample --compare`` read. It works in
any number of dimensions, so it gives a reference where :mod:`latticekit.exact` has none (``Nd >= 3``).

Examples
--------
>>> cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.1, "lam": 0.5}}
>>> r = reference_run(cfg, measurements=50, chains=2, thermalization=10)
>>> r["config"]["sampler"]["algorithm"], sorted(r["observables"])[:2]
('hmc', ['C_t0', 'C_t1'])
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Mapping

from ..config import FlowConfig, RunConfig

__all__ = ["reference_run"]


def reference_run(cfg: "FlowConfig | Mapping[str, Any] | str | os.PathLike[str]", *, measurements: int = 500,
                  chains: int = 8, thermalization: int = 100, seed: int = 0, algorithm: str | None = None,
                  out: str | os.PathLike[str] | None = None, backend: str | None = "numpy", device: Any = None,
                  progress: bool = False, **sampler: Any) -> dict[str, Any]:
    """Run the run job on the theory of the flow configuration ``cfg``; returns its ``results.json`` content.

    Parameters
    ----------
    cfg : FlowConfig, mapping or path
        The flow configuration (only ``[lattice]`` and ``[action]`` are used).
    measurements, chains, thermalization, seed
        The run's length (``[sampler]``) and seed.
    algorithm : str, optional
        The sampler (default: the theory's ``reference_sampler``).
    out : path, optional
        Keep the run in this folder (it resumes there if interrupted); default: a temporary folder.
    backend, device
        Array backend of the run (default numpy).
    **sampler
        Further ``[sampler]`` keys of the algorithm (``step_size``, ``n_steps``, ``overrelaxation``, ...),
        validated by the run configuration.
    """
    from ..run import run_job

    flow = FlowConfig.load(cfg)
    theory = flow.theory
    algo = algorithm or theory.reference_sampler
    conf = flow.to_dict()
    run = RunConfig.from_dict({
        "lattice": conf["lattice"], "action": conf["action"],
        "sampler": {"algorithm": algo, "chains": chains, "thermalization": thermalization,
                    "measurements": measurements, **sampler},
        "output": {"plots": False, "checkpoint_every": max(measurements, thermalization, 1),
                   **({"store_every": max(measurements, 1)} if theory.is_gauge else {})}})
    if out is not None:
        return run_job(run, out=out, seed=seed, backend=backend, device=device, progress=progress, echo=False)
    with tempfile.TemporaryDirectory() as tmp:
        return run_job(run, out=tmp, seed=seed, backend=backend, device=device, progress=progress, echo=False)
