"""Job-level bookkeeping of ``latticekit run``: the resumable state and the HDF5 ensemble.

``state.npz`` (:func:`latticekit.io.save_state`, atomic) holds the current fields, the time series
measured so far and the progress (phase, segment, sampler steps), with the *identity* of the run: the
configuration as the job read it, the seed, the backend and a format version. A rerun resumes only a
state of the same identity; the stored configuration is read with
:meth:`~latticekit.app.config.JobConfig.from_stored`, so a folder written by an earlier version (which
stored keys that are no longer read) still resumes when the configuration is the same.

``ensemble.h5`` (:class:`latticekit.io.Ensemble`, gauge theories) receives every
``output.store_every``-th configuration of each chain; configurations are stored before the state, so a
resumed job re-appends nothing it already stored. The ensemble carries the run identity too (in its
free-form metadata, ``run_identity``, written when the file is created): a job killed before its first
checkpoint leaves an ``ensemble.h5`` and no state, and a rerun with another configuration, seed or
backend is refused before any work (:func:`open_ensemble`) instead of appending its configurations to
the first run's file. An ensemble of an earlier version (no ``run_identity``) is resumed only together
with a state of the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from latticekit import backends
from latticekit.utils.schema import ConfigError

__all__ = ["STATE_VERSION", "RunState", "check_ensemble", "open_ensemble", "run_identity", "store_configurations"]

STATE_VERSION = 1


def run_identity(cfg: Any, seed: int, backend: str) -> dict[str, Any]:
    """What a state must match to be resumed."""
    return {"config": cfg.to_dict(), "seed": seed, "backend": backend, "version": STATE_VERSION}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _differences(stored: Any, ident: dict[str, Any]) -> list[str]:
    """What differs between a stored run identity and this run's, as ``key stored -> now``; empty: the same run.

    Keys that the theory declares neutral (``Theory.resume_neutral_keys``: e.g. ``action.cg_maxiter``, which
    decides whether a solve may fail, never the numbers of one that converged) are not compared, so a run stopped
    by a solver limit resumes after the limit is raised; nor is ``output.plots`` (switching the plots on for a
    finished run needed ``--fresh``, which threw its data away; user probe).
    """
    from .config import RunConfig

    if not isinstance(stored, dict):
        return ["the stored run identity is unreadable"]
    diffs = [f"{k} {stored.get(k)!r} -> {ident[k]!r}" for k in ("seed", "backend", "version")
             if stored.get(k) != ident[k]]
    try:
        cfg = RunConfig.from_stored(stored.get("config") or {})
    except ConfigError as exc:
        return diffs + [f"the stored configuration is not valid now ({exc})"]
    neutral = {f"action.{k}" for k in getattr(cfg.theory, "resume_neutral_keys", ())}
    neutral.add("output.plots")   # changes no number: a finished run is rerun to draw (or skip) its plots
    a, b = _flat(cfg.to_dict()), _flat(json.loads(json.dumps(ident["config"])))
    for k in sorted(set(a) | set(b)):
        if k not in neutral and a.get(k) != b.get(k):
            diffs.append(f"{k} {a.get(k, '(unset)')!r} -> {b.get(k, '(unset)')!r}")
    return diffs


def _describe(diffs: list[str]) -> str:
    more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
    return "; ".join(diffs[:3]) + more


def _as_float_array(rows: list[list[float]]) -> Any:
    """(n_measurements, chains) host array of a list of rows."""
    return backends.from_numpy(rows, backend="numpy")


@dataclass
class RunState:
    """Where a run stands: fields ``x`` (one per chain), phase (``therm``, ``measure``, ``done``), steps
    done in the phase, sampler steps so far, and the measured series (per measurement, one value per chain)."""

    x: Any
    names: list[str]
    phase: str = "therm"
    done: int = 0
    steps: int = 0
    series: dict[str, list[list[float]]] = field(default_factory=dict)
    accept: list[list[float]] = field(default_factory=list)
    dH: list[list[float]] = field(default_factory=list)
    cg: list[list[float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for n in self.names:
            self.series.setdefault(n, [])

    @classmethod
    def load(cls, path: Path, ident: dict[str, Any], names: list[str], backend: str, device: Any) -> "RunState":
        """Read ``path``; :class:`ConfigError` if it belongs to another run."""
        from latticekit.io import load_state

        arrays, meta = load_state(path)
        diffs = _differences(meta.get("ident"), ident)
        if diffs:
            raise ConfigError(f"{path} belongs to another run ({_describe(diffs)}); use --fresh or another --out")
        x = backends.from_numpy(arrays["field"], backend=backend, device=device, copy=True)
        st = cls(x, names, meta["phase"], meta["done"], meta["steps"])
        for n in names:
            st.series[n] = arrays[f"obs_{n}"].tolist() if f"obs_{n}" in arrays else []
        st.accept = arrays["accept"].tolist() if "accept" in arrays else []
        st.dH = arrays["dH"].tolist() if "dH" in arrays else []
        st.cg = arrays["cg"].tolist() if "cg" in arrays else []
        return st

    def save(self, path: Path, ident: dict[str, Any]) -> None:
        """Write the state atomically."""
        from latticekit.io import save_state

        arrays = {"field": self.x, "accept": _as_float_array(self.accept), "dH": _as_float_array(self.dH)}
        if self.cg:
            arrays["cg"] = _as_float_array(self.cg)
        for n in self.names:
            arrays[f"obs_{n}"] = _as_float_array(self.series[n])
        save_state(path, arrays, {"ident": ident, "phase": self.phase, "done": self.done, "steps": self.steps})


def check_ensemble(path: Path, ident: dict[str, Any], *, state_matches: bool) -> None:
    """Refuse an existing ``ensemble.h5`` of another run (:class:`ConfigError`), before any work.

    ``state_matches``: a state of this run was found beside it (then an ensemble of an earlier version,
    without a recorded identity, is this run's).
    """
    from latticekit.io import Ensemble

    with Ensemble.open(path) as ens:
        meta = ens.metadata.get("metadata") or {}
    stored = meta.get("run_identity") if isinstance(meta, dict) else None
    if stored is None:
        if state_matches:
            return
        raise ConfigError(f"{path} exists without a recorded run identity and without a state of this run (a run "
                          "of an earlier version, or another program's file); resuming would append to it. Use "
                          "--fresh or another --out")
    diffs = _differences(stored, ident)
    if diffs:
        raise ConfigError(f"{path} belongs to another run ({_describe(diffs)}; a run killed before its first "
                          "checkpoint leaves it behind); use --fresh or another --out")


def open_ensemble(theory: Any, cfg: Any, path: Path, seed: int, ident: dict[str, Any]) -> Any:
    """The run's HDF5 ensemble (appended to if it exists; :func:`check_ensemble` has checked it), created
    with the run identity ``ident`` in its metadata."""
    from latticekit.io import Ensemble

    if path.exists():
        return Ensemble.open(path, mode="a")
    return Ensemble.create(path, lattice=theory.lattice, group=theory.group, action=theory.kind,
                           action_params=theory.ensemble_params(), sampler=cfg.sampler.algorithm,
                           sampler_params=cfg.sampler.to_dict(), seeds=[seed],
                           metadata={"run_identity": json.loads(json.dumps(ident))})


def store_configurations(ensemble: Any, stored: list[tuple[int, Any, dict[str, list[float]]]], chains: int) -> None:
    """Append ``(measurement, fields, observables)`` of every chain not stored yet, one commit per measurement.

    A job killed after storing part of a segment, before its checkpoint, recomputes the segment bit for bit on
    resumption; what it stored then lies at the end of the file (measurements are stored in increasing order), so
    only the entries from the segment's first measurement on are read back, not the whole file."""
    if not stored:
        return
    first = min(k for k, _, _ in stored)
    already = set()
    for i in range(len(ensemble) - 1, -1, -1):
        info = ensemble.info(i)
        m = info.get("measurement")
        if m is None or m < first:
            break
        already.add((m, info.get("chain")))
    for k, x, obsvals in stored:
        todo = [c for c in range(chains) if (k, c) not in already]
        if not todo:
            continue
        host = backends.to_numpy(x)
        ensemble.extend(host[todo], observables={n: [v[c] for c in todo] for n, v in obsvals.items()},
                        infos=[{"measurement": k, "chain": c} for c in todo])
