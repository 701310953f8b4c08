"""Per-configuration measurements of a stored ensemble, as chains: what ``latticekit compare`` histograms.

An HDF5 ensemble (:class:`latticekit.io.Ensemble`) stores, beside every configuration, the observables
the job measured on it. :func:`open_series` reads them with the *chain structure* the autocorrelation
analysis needs:

* ``latticekit run`` stores every ``output.store_every``-th configuration of each of its ``sampler.chains``
  independent chains, interleaved (per-configuration info ``{"measurement": k, "chain": c}``): one chain
  per ``chain``, in the order of ``measurement``;
* ``latticekit sample`` stores its flow-MCMC chain (info ``{"step": i, ...}``): one chain, in step order;
* any other ensemble: one chain in file order.

An observable counts as stored when every committed configuration has a finite value. Where one is
missing, :func:`measure_series` measures it on the stored configurations with a theory (the HMC run's,
whose ``[measure]`` options, e.g. ``flowed_topology_t``, define it); nothing is written back to the file.

Examples
--------
>>> import tempfile, numpy as np
>>> from latticekit.app.run import run_job
>>> out = tempfile.mkdtemp()
>>> _ = run_job({"lattice": {"shape": [2, 2, 2]}, "action": {"group": "SU2"},
...              "sampler": {"chains": 2, "thermalization": 1, "measurements": 4},
...              "output": {"plots": False, "store_every": 1}}, out=out, progress=False, echo=False)
>>> s = open_series(out + "/ensemble.h5", "hmc")
>>> s.n, [len(c) for c in s.chains], sorted(s.stored)
(8, [4, 4], ['plaquette', 'polyakov_loop_abs', 'polyakov_loop_re'])
>>> [x.shape for x in s.series("plaquette")]
[(4,), (4,)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from latticekit import backends
from latticekit.utils import Progress
from latticekit.utils.schema import ConfigError

__all__ = ["EnsembleSeries", "measure_series", "open_series", "physics_record"]


@dataclass
class EnsembleSeries:
    """The per-configuration measurements of one ensemble file.

    Attributes
    ----------
    path : Path
        The ensemble file.
    label : str
        The argument it came from (``flow``, ``hmc``), for messages.
    n : int
        Committed configurations.
    record : dict
        ``lattice``, ``group``, ``action``, ``action_params``, ``sampler`` of the file.
    stored : dict of str to ndarray
        Observables with a finite value on every configuration: name -> ``(n,)`` in file order.
    partial : dict of str to int
        Observables stored on some configurations only: name -> configurations without a value.
    chains : list of ndarray
        File indices of the configurations of each chain, in chain order (filled by :func:`open_series`).
    measured : dict of str to ndarray
        Observables measured here by :func:`measure_series` (not stored in the file).
    """

    path: Path
    label: str
    n: int
    record: dict[str, Any]
    stored: dict[str, np.ndarray]
    partial: dict[str, int]
    chains: list[np.ndarray] = field(default_factory=list)
    measured: dict[str, np.ndarray] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """Whether ``name`` is stored (on every configuration) or was measured."""
        return name in self.stored or name in self.measured

    def series(self, name: str) -> list[np.ndarray]:
        """``name`` on every chain, in chain order (a list of one array per chain)."""
        values = self.stored[name] if name in self.stored else self.measured[name]
        return [values[idx] for idx in self.chains]

    def describe(self) -> dict[str, Any]:
        """What compare.json records about the input."""
        return {"path": str(self.path), "n": self.n, "chains": len(self.chains),
                "chain_lengths": [int(len(c)) for c in self.chains], **self.record,
                "measured_here": sorted(self.measured)}


def physics_record(record: dict[str, Any]) -> dict[str, Any]:
    """The part of an ensemble's record that fixes the distribution: lattice, group, action and its
    parameters without the theory's ``algorithm_keys`` (even/odd preconditioning, Hasenbusch shifts, solver
    tolerances change how a theory is sampled, not which)."""
    from latticekit.theories import theory_class, theory_kinds

    keys = theory_class(record["action"]).algorithm_keys if record["action"] in theory_kinds() else ()
    params = {k: v for k, v in record["action_params"].items() if k not in keys}
    return {"lattice": list(record["lattice"]), "group": record["group"], "action": record["action"],
            "action_params": params}


def open_series(path: str | os.PathLike[str], label: str) -> EnsembleSeries:
    """Read the stored measurements and the chain structure of the ensemble file ``path``.

    Raises
    ------
    latticekit.utils.ConfigError
        The file holds no configuration (message starts with ``label``).
    latticekit.io.IOFormatError
        Not a readable latticekit ensemble.
    """
    from latticekit.io import Ensemble

    p = Path(path)
    with Ensemble.open(p) as ens:
        n = len(ens)
        if n == 0:
            raise ConfigError(f"{label}: {p} holds no configurations")
        record = {"lattice": list(ens.lattice), "group": ens.group.name, "action": ens.action,
                  "action_params": ens.action_params, "sampler": ens.sampler}
        stored: dict[str, np.ndarray] = {}
        partial: dict[str, int] = {}
        for name, v in ens.observables().items():
            bad = int(np.sum(~np.isfinite(v)))
            if bad:
                partial[name] = bad
            else:
                stored[name] = np.asarray(v, dtype=np.float64)
        keys = []
        for i in range(n):
            info = ens.info(i)
            if "chain" in info:      # latticekit run: independent chains, interleaved
                keys.append((int(info["chain"]), int(info.get("measurement", i)), i))
            else:                    # latticekit sample (info "step") or another writer: one chain
                keys.append((0, int(info.get("step", i)), i))
    chains: dict[int, list[tuple[int, int]]] = {}
    for c, order, i in keys:
        chains.setdefault(c, []).append((order, i))
    ordered = [np.asarray([i for _, i in sorted(chains[c])], dtype=np.int64) for c in sorted(chains)]
    return EnsembleSeries(path=p, label=label, n=n, record=record, stored=stored, partial=partial, chains=ordered)


def measure_series(series: EnsembleSeries, theory: Any, names: Sequence[str], *, backend: str = "numpy",
                   device: Any = None, batch: int = 8, progress: bool = False) -> None:
    """Measure ``names`` (primary observables of ``theory``) on every stored configuration of ``series``
    and keep them in ``series.measured`` (the file is not changed).

    The configurations are read ``batch`` at a time onto ``backend``/``device``.
    """
    names = [n for n in names if not series.has(n)]
    if not names:
        return
    from latticekit.io import Ensemble

    vals: dict[str, list[np.ndarray]] = {n: [] for n in names}
    with Ensemble.open(series.path) as ens, \
            Progress(series.n, 0, f"measuring {', '.join(names)} on {series.label}", progress, unit="config") as bar:
        for start in range(0, series.n, batch):
            stop = min(series.n, start + batch)
            U = ens.read(slice(start, stop), backend=backend, device=device)
            m = theory.measure(U, names)
            for n in names:
                vals[n].append(np.asarray(backends.to_numpy(m[n]), dtype=np.float64).reshape(-1))
            bar.update(stop - start)
    for n in names:
        series.measured[n] = np.concatenate(vals[n])
