"""Configuration of the main job (`latticekit run`): a TOML file checked before any work starts.

Every key is known and typed; an unknown key, a wrong type, a non-positive step size or a
lattice/group mismatch fails with a message naming the key (``sampler.step_size``).

Example (``examples/u1_2d.toml``)::

    [lattice]
    shape = [16, 16]

    [action]
    kind = "wilson"
    group = "U1"
    beta = 2.0

    [sampler]
    algorithm = "hmc"
    chains = 8
    thermalization = 100
    measurements = 400
    step_size = 0.1
    n_steps = 10
    integrator = "omelyan"

Two flavours of Wilson fermions (``examples/schwinger_nf2.toml``): ``kind = "wilson_nf2"`` with
``kappa``, ``even_odd``, ``hasenbusch_mus``, ``cg_tol``, ``cg_tol_md``, ``cg_maxiter`` in ``[action]``
and optionally ``n_inner`` (Sexton-Weingarten inner gauge steps) in ``[sampler]``; see docs/fermions.md.

Examples
--------
>>> cfg = RunConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 1.5}})
>>> cfg.action.group, cfg.sampler.algorithm
('U1', 'hmc')
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from .groups import group_from_name

__all__ = ["ActionConfig", "ConfigError", "LatticeConfig", "MeasureConfig", "RunConfig", "SamplerConfig", "load_config", "read_toml"]


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


@dataclass
class LatticeConfig:
    shape: list[int] = field(default_factory=lambda: [16, 16])


@dataclass
class ActionConfig:
    kind: str = "wilson"  # "wilson" (gauge), "wilson_nf2" (gauge + two Wilson fermions) or "phi4"
    group: str = "U1"
    beta: float = 2.0
    kappa: float = 0.25  # phi4: hopping parameter (hopping form); wilson_nf2: Wilson hopping parameter
    lam: float = 0.5  # phi4, hopping form
    even_odd: bool = False  # wilson_nf2: even/odd preconditioned pseudofermions (eq. 35)
    hasenbusch_mus: list[float] = field(default_factory=list)  # wilson_nf2: increasing Hasenbusch shifts (eq. 38)
    cg_tol: float = 1e-10  # wilson_nf2: CG residual of the heatbath, Metropolis actions and measurements
    cg_tol_md: float = 1e-8  # wilson_nf2: CG residual of the MD forces
    cg_maxiter: int = 2000  # wilson_nf2


@dataclass
class SamplerConfig:
    algorithm: str = "hmc"  # "hmc" or "heatbath" (gauge only)
    chains: int = 8
    thermalization: int = 100
    measurements: int = 400
    step_size: float = 0.1
    n_steps: int = 10
    integrator: str = "omelyan"
    overrelaxation: int = 1  # heatbath: overrelaxation sweeps after each heatbath sweep
    n_inner: int = 0  # wilson_nf2 HMC: 0 = one time scale; k >= 1: gauge force on k inner steps (Sexton-Weingarten)


@dataclass
class MeasureConfig:
    every: int = 1
    observables: list[str] = field(default_factory=list)  # empty: the defaults of the theory
    wilson_loops: list[list[int]] = field(default_factory=list)  # [[T, R], ...] for gauge theories


@dataclass
class OutputConfig:
    checkpoint_every: int = 50  # measurements (or thermalisation steps) between checkpoints
    store_every: int = 10  # store every this many measurements of each chain in ensemble.h5
    plots: bool = True


_SECTIONS = {
    "lattice": LatticeConfig,
    "action": ActionConfig,
    "sampler": SamplerConfig,
    "measure": MeasureConfig,
    "output": OutputConfig,
}

_ACTIONS = ("wilson", "wilson_nf2", "phi4")
_GAUGE_ACTIONS = ("wilson", "wilson_nf2")
_ALGORITHMS = {"wilson": ("hmc", "heatbath"), "wilson_nf2": ("hmc",), "phi4": ("hmc",)}
_INTEGRATORS = ("leapfrog", "omelyan")


def _coerce(section: str, name: str, value: Any, default: Any) -> Any:
    key = f"{section}.{name}"
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return value
    return value


@dataclass
class RunConfig:
    """The validated configuration of `latticekit run` (see the module docstring)."""

    lattice: LatticeConfig = field(default_factory=LatticeConfig)
    action: ActionConfig = field(default_factory=ActionConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunConfig":
        """Build and validate from a (TOML-shaped) dict; unknown keys are errors."""
        if not isinstance(data, dict):
            raise ConfigError(f"configuration: expected a table, got {type(data).__name__}")
        out: dict[str, Any] = {}
        for sec, val in data.items():
            if sec not in _SECTIONS:
                raise ConfigError(f"unknown section [{sec}]; expected one of {', '.join(_SECTIONS)}")
            if not isinstance(val, dict):
                raise ConfigError(f"[{sec}]: expected a table")
            klass = _SECTIONS[sec]
            defaults = klass()
            known = {f.name for f in fields(klass)}
            kw = {}
            for k, v in val.items():
                if k not in known:
                    raise ConfigError(f"unknown key {sec}.{k}; expected one of {', '.join(sorted(known))}")
                kw[k] = _coerce(sec, k, v, getattr(defaults, k))
            out[sec] = klass(**kw)
        cfg = cls(**out)
        cfg.validate()
        return cfg

    @classmethod
    def from_file(cls, path: str | Path) -> "RunConfig":
        """Read and validate a TOML file."""
        return cls.from_dict(read_toml(path))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (written into results.json)."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check values and their consistency; raises :class:`ConfigError` naming the key."""
        shp = self.lattice.shape
        if not shp or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in shp):
            raise ConfigError(f"lattice.shape: expected a list of positive integers, got {shp!r}")
        a = self.action
        if a.kind not in _ACTIONS:
            raise ConfigError(f"action.kind: expected one of {_ACTIONS}, got {a.kind!r}")
        if a.kind in _GAUGE_ACTIONS:
            try:
                group_from_name(a.group)
            except ValueError as exc:
                raise ConfigError(f"action.group: {exc}") from None
            if len(shp) < 2:
                raise ConfigError(f"lattice.shape: a gauge theory needs at least 2 dimensions, got {shp}")
            if not a.beta > 0:
                raise ConfigError(f"action.beta: expected > 0, got {a.beta}")
            if a.kind == "wilson_nf2":
                self._validate_fermions()
        else:
            if not a.kappa >= 0:
                raise ConfigError(f"action.kappa: expected >= 0, got {a.kappa}")
            if not a.lam >= 0:
                raise ConfigError(f"action.lam: expected >= 0, got {a.lam}")
        s = self.sampler
        if s.algorithm not in _ALGORITHMS[a.kind]:
            raise ConfigError(f"sampler.algorithm: expected one of {_ALGORITHMS[a.kind]} for action.kind={a.kind!r}, "
                              f"got {s.algorithm!r}")
        if s.n_inner < 0:
            raise ConfigError(f"sampler.n_inner: expected >= 0, got {s.n_inner}")
        if s.n_inner and a.kind != "wilson_nf2":
            raise ConfigError(f"sampler.n_inner: multiple time scales need action.kind = 'wilson_nf2', got {a.kind!r}")
        if s.algorithm == "heatbath" and any(L % 2 for L in shp):
            raise ConfigError(f"lattice.shape: the checkerboard heatbath needs even extents, got {shp}")
        for name in ("chains", "measurements", "n_steps"):
            if getattr(s, name) < 1:
                raise ConfigError(f"sampler.{name}: expected >= 1, got {getattr(s, name)}")
        for name in ("thermalization", "overrelaxation"):
            if getattr(s, name) < 0:
                raise ConfigError(f"sampler.{name}: expected >= 0, got {getattr(s, name)}")
        if not s.step_size > 0:
            raise ConfigError(f"sampler.step_size: expected > 0, got {s.step_size}")
        if s.integrator not in _INTEGRATORS:
            raise ConfigError(f"sampler.integrator: expected one of {_INTEGRATORS}, got {s.integrator!r}")
        if self.measure.every < 1:
            raise ConfigError(f"measure.every: expected >= 1, got {self.measure.every}")
        for wl in self.measure.wilson_loops:
            if not (isinstance(wl, list) and len(wl) == 2 and all(isinstance(v, int) and v >= 1 for v in wl)):
                raise ConfigError(f"measure.wilson_loops: expected pairs [T, R] of positive integers, got {wl!r}")
        if self.output.store_every < 1:
            raise ConfigError(f"output.store_every: expected >= 1, got {self.output.store_every}")
        if self.output.checkpoint_every < 1:
            raise ConfigError(f"output.checkpoint_every: expected >= 1, got {self.output.checkpoint_every}")

    def _validate_fermions(self) -> None:
        a, shp = self.action, self.lattice.shape
        if len(shp) not in (2, 4):
            raise ConfigError(f"lattice.shape: Wilson fermions need 2 or 4 dimensions, got {shp}")
        if shp[0] < 2:
            raise ConfigError(f"lattice.shape: the antiperiodic time direction needs L_0 >= 2, got {shp}")
        if not a.kappa > 0:
            raise ConfigError(f"action.kappa: expected the Wilson hopping parameter > 0, got {a.kappa}")
        if a.even_odd and any(L % 2 for L in shp):
            raise ConfigError(f"lattice.shape: even/odd preconditioning (action.even_odd) needs even extents, "
                              f"got {shp}")
        mus = a.hasenbusch_mus
        if not all(isinstance(m, (int, float)) and not isinstance(m, bool) for m in mus) or \
                not all(m > 0 for m in mus) or any(b <= c for c, b in zip(mus[:-1], mus[1:])):
            raise ConfigError(f"action.hasenbusch_mus: expected strictly increasing positive shifts, got {mus!r}")
        a.hasenbusch_mus = [float(m) for m in mus]
        for name in ("cg_tol", "cg_tol_md"):
            if not getattr(a, name) > 0:
                raise ConfigError(f"action.{name}: expected > 0, got {getattr(a, name)}")
        if a.cg_maxiter < 1:
            raise ConfigError(f"action.cg_maxiter: expected >= 1, got {a.cg_maxiter}")


def read_toml(path: str | Path) -> dict[str, Any]:
    """The table in a TOML file; a missing or malformed file raises :class:`ConfigError` naming it."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from None


def load_config(path: str | Path | None) -> RunConfig:
    """The configuration in ``path``, or the built-in default (2D U(1), L=16, beta=2) for None."""
    return RunConfig() if path is None else RunConfig.from_file(path)
