"""Flow jobs: ``latticekit train CONFIG.toml --out DIR`` and ``latticekit sample DIR --n N``.

:func:`train_job` validates a TOML configuration (:class:`FlowConfig`) before any work, builds the
flow model and its target action from :mod:`latticekit.actions`, and trains it by reverse KL
(:class:`~latticekit.flows.Trainer`). Into ``DIR`` it writes

* ``config.json`` — the validated configuration;
* ``checkpoint.pt`` — written atomically every ``train.checkpoint_every`` steps and at the end
  (model, optimizer, scheduler, generator states, history, the configuration);
* ``metrics.jsonl`` — one complete JSON line per step (``step``, ``loss``, ``ess``, ``var_log_w``,
  ``lr``, ``grad_norm``, ``time_s`` and ``eval_*`` at evaluation steps), appended and flushed line by line;
* ``train.json`` — the summary of the finished run (final evaluation, wall time).

Rerunning the same command after a kill resumes from the last checkpoint: metric lines written after
that checkpoint (and a torn last line) are dropped and recomputed, and on CPU the continuation is
bit-identical to an uninterrupted run. A NaN/inf loss or gradient stops the job with
:class:`~latticekit.flows.NonFiniteLossError`; the last good checkpoint stays in place. A checkpoint
written for a different architecture or lattice is refused
(:class:`~latticekit.flows.CheckpointMismatchError`, listing what differs).

:func:`sample_job` loads a checkpoint and runs flow MCMC (independence Metropolis,
:func:`~latticekit.flows.independence_metropolis`); gauge fields go to an HDF5 ensemble
(:class:`latticekit.io.Ensemble`), scalar fields to an ``.npz`` (:func:`latticekit.io.save_state`),
and a JSON summary holds acceptance, ESS, ``tau_int`` and Gamma-method observables. :func:`flow_summary`
puts flow ESS and flow-MCMC observables next to exact (2D gauge theories) or HMC values; gauge theories in
Nd >= 3 have no exact value, and the summary says so.

Gauge theories run in any number of dimensions ``Nd >= 2``. In 2D, ``model.coupling = "plaquette"`` (the
default) builds the stripe-masked layers of Kanwar et al. (:func:`~latticekit.flows.u1_gauge_flow`,
:func:`~latticekit.flows.sun_gauge_flow`; extents divisible by 4); in ``Nd >= 3`` it builds the checkerboard
layers (:func:`~latticekit.flows.u1_nd_gauge_flow`, :func:`~latticekit.flows.sun_nd_gauge_flow`; even
extents), which ``model.coupling = "checkerboard"`` selects in 2D too.

Configuration (every key optional except ``lattice.shape``; unknown keys are errors)::

    [lattice]
    shape = [8, 8]

    [action]            # kind = "phi4": kappa, lam (hopping form) | kind = "wilson": group = "U1" or "SU<N>", beta
    kind = "wilson"
    group = "U1"
    beta = 2.0

    [model]             # coupling: "affine" | "spline" (phi4), "plaquette" | "checkerboard" (gauge)
    coupling = "plaquette"
    n_layers = 16       # default: phi4 8; 2D stripes 16; checkerboard max(2 Nd (Nd - 1), 4 Nd) (8, 12, 24)
    hidden = [8, 8]
    kernel_size = 3
    bins = 8
    rectangle_context = true   # gauge flows: also feed the layer-invariant two-plaquette loops to the nets

    [train]
    steps = 2000
    batch_size = 64
    lr = 1e-3
    checkpoint_every = 100

    [sample]
    n = 4096
    batch = 1024

Examples
--------
>>> import tempfile
>>> cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.2, "lam": 0.1},
...        "model": {"n_layers": 2, "hidden": [4]}, "train": {"steps": 3, "batch_size": 8}}
>>> out = tempfile.mkdtemp()
>>> res = train_job(cfg, out=out, progress=False)
>>> res["steps"], res["status"]
(3, 'finished')
>>> s = sample_job(out, n=64, seed=1)
>>> sorted(s["observables"])[:2], 0 <= s["acceptance"] <= 1
(['abs_magnetization', 'action_density'], True)
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from latticekit import backends
from latticekit.config import ConfigError, read_toml
from latticekit.groups import U1, group_from_name
from latticekit.lattice import Lattice
from latticekit.utils import Progress, atomic_path, atomic_write

from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .model import Model
from .train import NonFiniteLossError, TrainConfig, Trainer

__all__ = [
    "FlowConfig",
    "build_flow",
    "flow_observables",
    "flow_summary",
    "format_flow_summary",
    "hmc_reference",
    "load_trained",
    "sample_command",
    "sample_job",
    "train_command",
    "train_job",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG = "config.json"
TRAIN_SUMMARY = "train.json"
SAMPLE_SUMMARY = "sample.json"

# -- schema ------------------------------------------------------------------------------------
# type tags: int, float, str, bool, ints (list of int), floats (list of float), opt_int, opt_float
_SCHEMA: dict[str, dict[str, tuple[str, Any]]] = {
    "lattice": {"shape": ("ints", None)},
    "action": {"kind": ("str", "wilson"), "group": ("str", "U1"), "beta": ("float", 2.0),
               "kappa": ("float", 0.25), "lam": ("float", 0.5)},
    "model": {"coupling": ("str", "auto"), "n_layers": ("opt_int", None), "hidden": ("ints", [8, 8]),
              "kernel_size": ("int", 3), "act": ("str", "leaky_relu"), "bins": ("int", 8), "bound": ("float", 4.0),
              "tanh_scale": ("bool", True), "zero_init": ("bool", False), "prior_std": ("float", 1.0),
              "rectangle_context": ("bool", True)},
    "train": {"steps": ("int", 1000), "batch_size": ("int", 64), "lr": ("float", 1e-3), "optimizer": ("str", "adam"),
              "eps": ("float", 1e-8), "betas": ("floats", [0.9, 0.999]), "weight_decay": ("float", 0.0),
              "schedule": ("str", "constant"), "min_lr": ("float", 0.0), "step_size": ("int", 1000),
              "gamma": ("float", 0.5), "clip_norm": ("opt_float", None), "clip_value": ("opt_float", None),
              "dtype": ("str", "float64"), "seed": ("int", 0), "eval_every": ("int", 0), "gradient": ("str", "reparam"),
              "eval_batch_size": ("int", 1024), "checkpoint_every": ("int", 100), "log_every": ("int", 50),
              "compile": ("bool", False)},
    "sample": {"n": ("int", 4096), "batch": ("int", 1024), "seed": ("int", 1)},
}
_KIND_KEYS = {"phi4": ("kind", "kappa", "lam"), "wilson": ("kind", "group", "beta")}
# wilson: "plaquette" = the dimension's standard plaquette couplings (2D: Kanwar et al. stripes of period 4;
# Nd >= 3: checkerboard masks); "checkerboard" = the checkerboard (u1_nd / sun_nd) layers in any Nd >= 2
_COUPLINGS = {"phi4": ("affine", "spline"), "wilson": ("plaquette", "checkerboard")}


def _default_layers(kind: str, nd: int, stripes: bool) -> int:
    """Default ``model.n_layers``: phi4 8; 2D stripes 16 (every (direction, offset) pair twice);
    checkerboard stacks one full ``(mu, nu, parity)`` cycle, ``2 Nd (Nd - 1)`` layers, but at least
    ``4 Nd`` so that every link is updated at least twice (2D 8, 3D 12, 4D 24)."""
    if kind == "phi4":
        return 8
    if stripes:
        return 16
    return max(2 * nd * (nd - 1), 4 * nd)


# [train] keys that may change between a run and its resumption (they do not alter the trajectory)
_RESUMABLE_CHANGES = ("steps", "eval_every", "eval_batch_size", "checkpoint_every", "log_every")


def _coerce(key: str, tag: str, value: Any) -> Any:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    if tag in ("int", "opt_int"):
        if not is_int(value):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tag in ("float", "opt_float"):
        if not is_num(value):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if tag == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if tag == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tag == "ints":
        if not isinstance(value, list) or not all(is_int(v) for v in value):
            raise ConfigError(f"{key}: expected a list of integers, got {value!r}")
        return list(value)
    if tag == "floats":
        if not isinstance(value, list) or not all(is_num(v) for v in value):
            raise ConfigError(f"{key}: expected a list of numbers, got {value!r}")
        return [float(v) for v in value]
    raise ConfigError(f"{key}: internal schema error (tag {tag!r})")  # pragma: no cover


class _Section:
    """Attribute access to one validated section."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class FlowConfig:
    """The validated configuration of a flow job (sections ``lattice``, ``action``, ``model``,
    ``train``, ``sample``; see the module docstring).

    Every key is known and typed; an unknown key, a wrong type or a bad value raises
    :class:`latticekit.config.ConfigError` naming the key (``train.lr``).

    Examples
    --------
    >>> cfg = FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "action": {"beta": 2.0}})
    >>> cfg.action.kind, cfg.model.coupling, cfg.model.n_layers
    ('wilson', 'plaquette', 16)
    >>> FlowConfig.from_dict({"lattice": {"shape": [8, 8]}, "train": {"lr": -1}})
    Traceback (most recent call last):
    ...
    latticekit.config.ConfigError: train.lr=-1.0: expected a positive learning rate
    """

    lattice: _Section
    action: _Section
    model: _Section
    train: _Section
    sample: _Section

    def __init__(self, data: Mapping[str, Mapping[str, Any]]) -> None:
        for sec, schema in _SCHEMA.items():
            setattr(self, sec, _Section({k: copy.deepcopy(v) for k, (_t, v) in schema.items()}))
        given: dict[str, set[str]] = {s: set() for s in _SCHEMA}
        for sec, val in data.items():
            if sec not in _SCHEMA:
                raise ConfigError(f"unknown section [{sec}]; expected one of {', '.join(_SCHEMA)}")
            if not isinstance(val, Mapping):
                raise ConfigError(f"[{sec}]: expected a table, got {val!r}")
            for k, v in val.items():
                if k not in _SCHEMA[sec]:
                    raise ConfigError(f"unknown key {sec}.{k}; expected one of {', '.join(sorted(_SCHEMA[sec]))}")
                setattr(getattr(self, sec), k, _coerce(f"{sec}.{k}", _SCHEMA[sec][k][0], v))
                given[sec].add(k)
        self._validate(given)

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FlowConfig":
        """Build and validate from a (TOML-shaped) mapping."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"configuration: expected a table, got {type(data).__name__}")
        return cls(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> "FlowConfig":
        """Read and validate a TOML file."""
        return cls.from_dict(read_toml(path))

    @classmethod
    def load(cls, source: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig") -> "FlowConfig":
        """A FlowConfig from a TOML path, a mapping, or a FlowConfig (returned as is)."""
        if isinstance(source, FlowConfig):
            return source
        if isinstance(source, Mapping):
            return cls.from_dict(source)
        if isinstance(source, (str, os.PathLike)):
            return cls.from_file(source)
        raise ConfigError(f"config: expected a TOML path or a table, got {type(source).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (the form stored in ``config.json`` and in checkpoints); unset optional
        keys (``clip_norm``, ``clip_value``) are left out, as in TOML."""
        out = {sec: {k: v for k, v in getattr(self, sec).as_dict().items() if v is not None} for sec in _SCHEMA}
        out["action"] = {k: v for k, v in out["action"].items() if k in _KIND_KEYS[self.action.kind]}
        return out

    @property
    def is_gauge(self) -> bool:
        """True for gauge theories (``action.kind = "wilson"``)."""
        return self.action.kind == "wilson"

    @property
    def nd(self) -> int:
        """Number of lattice dimensions."""
        return len(self.lattice.shape)

    @property
    def uses_stripes(self) -> bool:
        """True if the gauge flow is built from the 2D stripe layers (``u1_gauge_flow``/``sun_gauge_flow``:
        ``model.coupling = "plaquette"`` on a 2D lattice); False for the checkerboard layers
        (``u1_nd_gauge_flow``/``sun_nd_gauge_flow``) and for phi^4."""
        return self.is_gauge and self.model.coupling == "plaquette" and self.nd == 2

    # -- validation ----------------------------------------------------------------------------
    def _validate(self, given: dict[str, set[str]]) -> None:
        shp = self.lattice.shape
        if shp is None:
            raise ConfigError("lattice.shape: required (a list of positive integers such as [8, 8])")
        if not shp or any(s < 1 for s in shp):
            raise ConfigError(f"lattice.shape: expected a list of positive integers, got {shp!r}")
        a = self.action
        if a.kind not in _KIND_KEYS:
            raise ConfigError(f"action.kind: expected one of {tuple(_KIND_KEYS)}, got {a.kind!r}")
        for k in sorted(given["action"]):
            if k not in _KIND_KEYS[a.kind]:
                raise ConfigError(f"action.{k}: not a parameter of action.kind = {a.kind!r} "
                                  f"(which takes {', '.join(_KIND_KEYS[a.kind][1:])})")
        if a.kind == "phi4":
            if not a.kappa >= 0:
                raise ConfigError(f"action.kappa: expected >= 0, got {a.kappa}")
            if not a.lam >= 0:
                raise ConfigError(f"action.lam: expected >= 0, got {a.lam}")
            # any number of dimensions: the CNN uses separable 1D convolutions for Nd >= 4 (nets.ConvNet)
            if any(s % 2 for s in shp):
                raise ConfigError(f"lattice.shape: checkerboard couplings need even extents, got {shp}")
        else:
            try:
                group_from_name(a.group)
            except ValueError:
                raise ConfigError(f"action.group: expected 'U1' or 'SU<N>' with N >= 2 (e.g. 'SU3'), "
                                  f"got {a.group!r}") from None
            if not a.beta > 0:
                raise ConfigError(f"action.beta: expected > 0, got {a.beta}")
        m = self.model
        if m.coupling == "auto":
            m.coupling = _COUPLINGS[a.kind][0]
        if m.coupling not in _COUPLINGS[a.kind]:
            raise ConfigError(f"model.coupling: expected one of {_COUPLINGS[a.kind]} for action.kind = {a.kind!r}, "
                              f"got {m.coupling!r}")
        if a.kind == "wilson":
            nd = len(shp)
            if nd < 2:
                raise ConfigError(f"lattice.shape: gauge flows need at least 2 dimensions (their couplings act on "
                                  f"plaquettes), got {shp}")
            if self.uses_stripes:
                if any(s % 4 for s in shp):
                    raise ConfigError(f"lattice.shape: the 2D stripe plaquette couplings (model.coupling = "
                                      f"'plaquette' in 2D) need extents divisible by 4, got {shp}; "
                                      f"model.coupling = 'checkerboard' needs even extents only")
            elif any(s % 2 for s in shp):
                raise ConfigError(f"lattice.shape: the checkerboard plaquette couplings of a {nd}D gauge flow "
                                  f"need even extents, got {shp}")
        if m.n_layers is None:
            m.n_layers = _default_layers(a.kind, len(shp), self.uses_stripes)
        if m.n_layers < 1:
            raise ConfigError(f"model.n_layers: expected >= 1, got {m.n_layers}")
        if any(h < 1 for h in m.hidden):
            raise ConfigError(f"model.hidden: expected positive channel counts, got {m.hidden}")
        if m.kernel_size < 1 or m.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size: expected an odd positive integer, got {m.kernel_size}")
        from .nets import ACTIVATIONS

        if m.act not in ACTIVATIONS:
            raise ConfigError(f"model.act: expected one of {', '.join(ACTIVATIONS)}, got {m.act!r}")
        if m.bins < 2:
            raise ConfigError(f"model.bins: expected >= 2, got {m.bins}")
        if not m.bound > 0:
            raise ConfigError(f"model.bound: expected > 0, got {m.bound}")
        if not m.prior_std > 0:
            raise ConfigError(f"model.prior_std: expected > 0, got {m.prior_std}")
        t = self.train
        # the training options are checked by TrainConfig itself (one set of rules); the job adds two
        if t.batch_size < 2:
            raise ConfigError(f"train.batch_size: expected >= 2 (the ESS needs two samples), got {t.batch_size}")
        if t.seed < 0:
            raise ConfigError(f"train.seed: expected >= 0, got {t.seed}")
        try:
            # a job always has a checkpoint file (DIR/checkpoint.pt); its folder is not known yet
            _train_config(self, None, Path("checkpoint.pt")).validate()
        except ValueError as exc:
            raise ConfigError(f"train.{exc}") from None
        s = self.sample
        if s.n < 2:
            raise ConfigError(f"sample.n: expected >= 2 Metropolis steps, got {s.n}")
        if s.batch < 1:
            raise ConfigError(f"sample.batch: expected >= 1, got {s.batch}")
        if s.seed < 0:
            raise ConfigError(f"sample.seed: expected >= 0, got {s.seed}")


# -- model, action, observables ----------------------------------------------------------------
def build_flow(cfg: FlowConfig) -> tuple[Model, Any, Lattice]:
    """The flow model, target action and lattice described by ``cfg``.

    Parameters are initialised from torch's global generator seeded with ``train.seed`` inside
    :func:`torch.random.fork_rng`, so the same configuration gives the same initial model without
    touching the caller's random state.

    Examples
    --------
    >>> cfg = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}, "model": {"n_layers": 2}})
    >>> model, action, lat = build_flow(cfg)
    >>> type(action).__name__, len(model.flow), type(model.flow.layers[0]).__name__
    ('WilsonGaugeAction', 2, 'U1PlaquetteCoupling')
    >>> cfg = FlowConfig.from_dict({"lattice": {"shape": [2, 2, 2, 2]}, "action": {"group": "SU2"},
    ...                             "model": {"hidden": [2]}})
    >>> model, action, lat = build_flow(cfg)
    >>> len(model.flow), type(model.flow.layers[0]).__name__
    (24, 'SUPlaquetteCoupling')
    """
    from latticekit.actions import Phi4Action, WilsonGaugeAction

    from .priors import GaussianPrior, HaarPrior
    from .scalar_couplings import scalar_coupling_flow
    from .sun_couplings import sun_gauge_flow
    from .u1_couplings import u1_gauge_flow

    lat = Lattice(tuple(cfg.lattice.shape))
    m, a = cfg.model, cfg.action
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.train.seed)
        if a.kind == "phi4":
            kw: dict[str, Any] = {"hidden": tuple(m.hidden), "kernel_size": m.kernel_size, "act": m.act,
                                  "zero_init": m.zero_init}
            if m.coupling == "affine":
                kw["tanh_scale"] = m.tanh_scale
            else:
                kw.update(bins=m.bins, bound=m.bound)
            model = Model(GaussianPrior(lat.shape, std=m.prior_std),
                          scalar_coupling_flow(lat, m.n_layers, m.coupling, **kw))
            action: Any = Phi4Action(lat, a.kappa, a.lam)
        else:
            G = _group(cfg)
            gkw: dict[str, Any] = {"bins": m.bins, "hidden": tuple(m.hidden), "kernel_size": m.kernel_size,
                                   "act": m.act, "zero_init": m.zero_init, "loop_context": m.rectangle_context,
                                   # 2D: Kanwar et al. stripe masks (period 4); otherwise checkerboard masks
                                   "masks": "stripes" if cfg.uses_stripes else "checkerboard"}
            flow = u1_gauge_flow(lat, m.n_layers, **gkw) if G is U1 else sun_gauge_flow(G, lat, m.n_layers, **gkw)
            model = Model(HaarPrior(G, lat), flow)
            action = WilsonGaugeAction(G, lat, a.beta)
    return model, action, lat


def flow_observables(cfg: FlowConfig, lattice: Lattice | None = None) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """Observables measured on the flow-MCMC chain: name -> ``f(batch) -> (B,)``.

    phi^4: ``magnetization`` M (site average), ``abs_magnetization`` |M|, ``chi`` = V M^2 (its mean is
    the full susceptibility V <M^2>, as in the main job) and ``action_density`` S/V. Gauge theories:
    ``plaquette`` (:func:`latticekit.observables.average_plaquette`, any Nd); 2D U(1) also
    ``topological_charge`` Q and ``chi_t`` = Q^2/V (not offered in other dimensions).

    Examples
    --------
    >>> cfg = FlowConfig.from_dict({"lattice": {"shape": [4, 4]}})
    >>> sorted(flow_observables(cfg))
    ['chi_t', 'plaquette', 'topological_charge']
    """
    from latticekit import observables as obs
    from latticekit.actions import Phi4Action

    lat = lattice if lattice is not None else Lattice(tuple(cfg.lattice.shape))
    V = lat.volume
    if cfg.action.kind == "phi4":
        S = Phi4Action(lat, cfg.action.kappa, cfg.action.lam)
        return {
            "magnetization": lambda x: obs.magnetization(x, lat),
            "abs_magnetization": lambda x: torch.abs(obs.magnetization(x, lat)),
            "chi": lambda x: V * obs.magnetization(x, lat) ** 2,
            "action_density": lambda x: S.action(x) / V,
        }
    G = _group(cfg)
    if G is not U1 or lat.nd != 2:     # the U(1) charge Q = (1/2pi) sum arg P_01 is a 2D observable
        return {"plaquette": lambda U: obs.average_plaquette(U, G, lat)}
    return {
        "plaquette": lambda U: obs.average_plaquette(U, U1, lat),
        "topological_charge": lambda U: obs.topological_charge_u1_2d(U, lat),
        "chi_t": lambda U: obs.topological_charge_u1_2d(U, lat) ** 2 / V,
    }


def _exact_values(cfg: FlowConfig) -> dict[str, float]:
    """Exact values of the flow-MCMC observables: phi^4 <M> = 0 (symmetry), 2D gauge theories from
    :mod:`latticekit.exact`; none for gauge theories in Nd >= 3."""
    if cfg.action.kind != "wilson":
        return {"magnetization": 0.0}
    if cfg.nd != 2:
        return {}
    from latticekit import exact

    shape = tuple(cfg.lattice.shape)
    G = _group(cfg)
    if G.N > 1:
        return {"plaquette": float(exact.sun_2d_plaquette(cfg.action.beta, G.N, shape))}
    return {"plaquette": float(exact.u1_2d_plaquette(cfg.action.beta, shape)),
            "chi_t": float(exact.u1_2d_topological_susceptibility(cfg.action.beta, shape)),
            "topological_charge": 0.0}


# -- files -------------------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode())


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    """Complete lines of ``metrics.jsonl`` (a torn last line is ignored)."""
    if not path.exists():
        return []
    out = []
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                out.append(json.loads(raw))
            except json.JSONDecodeError:
                break
    return out


def _truncate_metrics(path: Path, step: int) -> None:
    """Keep the lines of steps <= ``step`` (atomic rewrite): they match the checkpoint."""
    if not path.exists():
        return
    keep = [m for m in _read_metrics(path) if int(m.get("step", 0)) <= step]
    data = b"".join((json.dumps(m) + "\n").encode() for m in keep)
    atomic_write(path, data)


class _MetricsWriter:
    """Appends one complete, flushed JSON line per step."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("ab")

    def write(self, record: dict[str, Any]) -> None:
        self.fh.write((json.dumps(record) + "\n").encode())
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def _train_config(cfg: FlowConfig, device: Any, ckpt: Path) -> TrainConfig:
    t = cfg.train
    return TrainConfig(steps=t.steps, batch_size=t.batch_size, lr=t.lr, optimizer=t.optimizer, eps=t.eps,
                       betas=tuple(t.betas), weight_decay=t.weight_decay, schedule=t.schedule,
                       min_lr=t.min_lr, step_size=t.step_size, gamma=t.gamma, clip_norm=t.clip_norm,
                       clip_value=t.clip_value, gradient=t.gradient, dtype=t.dtype, device=None if device is None else str(device),
                       seed=t.seed, eval_every=t.eval_every, eval_batch_size=t.eval_batch_size,
                       checkpoint_every=t.checkpoint_every, checkpoint_path=str(ckpt), progress=False,
                       log_every=t.log_every, compile=t.compile)


class _JobTrainer(Trainer):
    """A :class:`Trainer` whose checkpoints also hold the job configuration."""

    job_config: dict[str, Any] = {}

    def save(self, path: str | os.PathLike[str] | None = None) -> None:
        import dataclasses

        path = path if path is not None else self.config.checkpoint_path
        if not path:
            raise ValueError("path: no checkpoint path given and config.checkpoint_path is not set")
        save_checkpoint(path, model=self.model, step=self.step, optimizer=self.optimizer, scheduler=self.scheduler,
                        rng=self.rng, config={"train_config": dataclasses.asdict(self.config),
                                              "history": self.history, "action": repr(self.action),
                                              "flow_config": self.job_config})
        if os.fspath(path) == self.config.checkpoint_path:
            self.last_checkpoint_step = self.step


def _check_same_run(old: dict[str, Any], new: dict[str, Any], outdir: Path) -> None:
    diffs = []
    for sec in ("lattice", "action", "model"):
        if old.get(sec) != new.get(sec):
            diffs.append(f"[{sec}] {old.get(sec)} -> {new.get(sec)}")
    for k, v in new["train"].items():
        # a key the stored run does not have (it predates the option) had the option's default value
        was = old.get("train", {}).get(k, _SCHEMA["train"].get(k, (None, None))[1])
        if k not in _RESUMABLE_CHANGES and was != v:
            diffs.append(f"train.{k} {was!r} -> {v!r}")
    if any(d.startswith(("[lattice]", "[model]")) for d in diffs):
        raise CheckpointMismatchError(
            f"{outdir} holds a run of a different architecture or lattice ({'; '.join(diffs)}); its checkpoint "
            "cannot be resumed with this configuration. Use fresh=True (--fresh) or another output folder.")
    if diffs:
        raise ConfigError(f"{outdir} holds a run with a different configuration ({'; '.join(diffs)}); resuming would "
                          f"not continue the same run. Only train.{', train.'.join(_RESUMABLE_CHANGES)} may change on "
                          "resumption. Use fresh=True (--fresh) or another output folder.")


def _resolve_device(backend: str, device: Any) -> Any:
    if backend != "torch":
        raise ConfigError(f"backend: flows are torch by design; expected 'torch', got {backend!r}")
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"device: {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {device!r} requested but torch sees no CUDA device")
    return dev


def _run_training(cfg: FlowConfig, outdir: Path, *, device: Any, fresh: bool, progress: bool,
                  distributed: bool = False) -> dict[str, Any]:
    """The training loop shared by :func:`train_job` and the distributed workers."""
    rank, world = 0, 1
    if distributed:
        import torch.distributed as dist

        rank, world = dist.get_rank(), dist.get_world_size()
    lead = rank == 0
    ckpt, metrics_path = outdir / CHECKPOINT, outdir / METRICS
    conf = cfg.to_dict()
    conf_path = outdir / CONFIG
    if lead:
        outdir.mkdir(parents=True, exist_ok=True)
        if fresh:
            for f in (CHECKPOINT, METRICS, CONFIG, TRAIN_SUMMARY):
                (outdir / f).unlink(missing_ok=True)
        elif ckpt.exists() and conf_path.exists():
            _check_same_run(json.loads(conf_path.read_text()), conf, outdir)
        elif ckpt.exists() and not conf_path.exists():
            raise ConfigError(f"{ckpt} exists without {conf_path}: not a folder written by train_job; "
                              "use fresh=True (--fresh) or another output folder")
        _write_json(conf_path, conf)
    if distributed:
        import torch.distributed as dist

        dist.barrier()
    model, action, _lat = build_flow(cfg)
    tcfg = _train_config(cfg, device, ckpt)
    if distributed:
        from .distributed import DistributedTrainer

        trainer: Trainer = DistributedTrainer(model, action, tcfg)
    else:
        trainer = _JobTrainer(model, action, tcfg)
    trainer.job_config = conf  # type: ignore[attr-defined]
    resumed_from = None
    if ckpt.exists():
        resumed_from = trainer.load(str(ckpt))
        if lead:
            _truncate_metrics(metrics_path, resumed_from)
            if progress:
                print(f"resuming {outdir} from step {resumed_from}", file=sys.stderr, flush=True)
    t = cfg.train
    writer = _MetricsWriter(metrics_path) if lead else None
    bar = Progress(t.steps, trainer.step, "flow training", progress and lead, log_every=t.log_every)
    t0 = time.time()
    status = "finished"
    try:
        while trainer.step < t.steps:
            m = dict(trainer.train_step())
            if t.eval_every and trainer.step % t.eval_every == 0:
                m.update(trainer.evaluate())
                trainer.history[-1].update(m)
            m["time_s"] = round(time.time() - t0, 4)
            if writer is not None:
                writer.write(m)
            bar.update(1, loss=m["loss"], ess=m["ess"], lr=m["lr"])
            if t.checkpoint_every and trainer.step % t.checkpoint_every == 0:
                trainer.save()
        if trainer.last_checkpoint_step != trainer.step:
            trainer.save()
    except NonFiniteLossError as exc:
        status = "stopped: non-finite loss or gradient"
        if lead:
            _write_json(outdir / TRAIN_SUMMARY, {"status": status, "message": str(exc), "steps": trainer.step,
                                                 "last_checkpoint_step": trainer.last_checkpoint_step,
                                                 "checkpoint": str(ckpt)})
        raise
    finally:
        bar.close()
        if writer is not None:
            writer.close()
    wall = time.time() - t0
    ev = trainer.evaluate(t.eval_batch_size)
    summary = {
        "status": status, "steps": trainer.step, "resumed_from_step": resumed_from,
        "final_loss": trainer.history[-1]["loss"] if trainer.history else None,
        "eval": ev, "ess": ev["eval_ess"], "var_log_w": ev["eval_var_log_w"],
        "n_parameters": int(sum(p.numel() for p in model.parameters())),
        "wall_s": round(wall, 3), "world_size": world, "device": str(trainer.device),
        "checkpoint": str(ckpt), "metrics": str(metrics_path), "config": conf,
    }
    if lead:
        _write_json(outdir / TRAIN_SUMMARY, summary)
    return summary


def train_job(config_path_or_dict: "str | os.PathLike[str] | Mapping[str, Any] | FlowConfig", *,
              out: str | os.PathLike[str], backend: str = "torch", device: Any = None, fresh: bool = False,
              progress: bool = True) -> dict[str, Any]:
    """Train (or resume training) a flow as described by a TOML configuration; returns ``train.json``.

    Parameters
    ----------
    config_path_or_dict : path, mapping or FlowConfig
        Validated completely (:class:`FlowConfig`) before any work.
    out : path
        Output folder: ``config.json``, ``checkpoint.pt``, ``metrics.jsonl``, ``train.json``.
    backend : str
        Must be ``"torch"`` (flows are torch by design).
    device : str or torch.device, optional
        ``"cpu"`` (default) or ``"cuda"``/``"cuda:k"``.
    fresh : bool
        Delete a previous run in ``out`` and start over (otherwise it is resumed).
    progress : bool
        Progress bar (tqdm, else a line every ``train.log_every`` steps) on stderr.

    Returns
    -------
    dict
        ``status``, ``steps``, ``resumed_from_step``, ``final_loss``, ``ess`` and ``var_log_w`` of a
        final evaluation on ``train.eval_batch_size`` samples, ``eval``, ``n_parameters``, ``wall_s``, paths.

    Raises
    ------
    latticekit.config.ConfigError
        Invalid configuration, or ``out`` holds a run with a different configuration.
    CheckpointMismatchError
        The checkpoint in ``out`` belongs to a different architecture or lattice.
    NonFiniteLossError
        NaN/inf loss or gradient; the last good checkpoint is kept.

    Examples
    --------
    >>> import tempfile
    >>> cfg = {"lattice": {"shape": [4, 4]}, "model": {"n_layers": 2, "hidden": [4], "bins": 4},
    ...        "train": {"steps": 2, "batch_size": 4}}
    >>> train_job(cfg, out=tempfile.mkdtemp(), progress=False)["steps"]
    2
    """
    cfg = FlowConfig.load(config_path_or_dict)
    dev = _resolve_device(backend, device)
    return _run_training(cfg, Path(out), device=dev, fresh=fresh, progress=progress)


# -- sampling ----------------------------------------------------------------------------------
def _resolve_checkpoint(source: str | os.PathLike[str]) -> tuple[Path, Path]:
    p = Path(source)
    if p.is_dir():
        ck = p / CHECKPOINT
        if not ck.exists():
            raise FileNotFoundError(f"{ck} does not exist: `latticekit sample` needs the folder of a "
                                    "`latticekit train` run (or a checkpoint file)")
        return ck, p
    if p.is_file():
        return p, p.parent
    raise FileNotFoundError(f"out_or_checkpoint={str(p)!r}: no such folder or checkpoint file")


def load_trained(out_or_checkpoint: str | os.PathLike[str], *, device: Any = None,
                 dtype: torch.dtype = torch.float64) -> tuple[Model, Any, FlowConfig, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint (its configuration travels with it) and load it.

    Returns ``(model, action, config, payload)``; the model is in eval mode with ``dtype``.
    """
    ck, _folder = _resolve_checkpoint(out_or_checkpoint)
    try:
        head = torch.load(ck, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ValueError(f"{ck}: not a readable latticekit checkpoint ({type(exc).__name__}: {exc})") from None
    conf = head.get("config", {}).get("flow_config") if isinstance(head, dict) else None
    if not conf:
        raise ValueError(f"{ck}: the checkpoint holds no flow-job configuration (it was not written by train_job)")
    cfg = FlowConfig.from_dict(conf)
    model, action, _lat = build_flow(cfg)
    model = model.to(dtype=getattr(torch, cfg.train.dtype))
    payload = load_checkpoint(ck, model=model)
    model = model.to(dtype=dtype, device=device)
    model.eval()
    return model, action, cfg, payload


def _gamma_entry(res: Any, exact: float | None) -> dict[str, Any]:
    e: dict[str, Any] = {"value": float(res.value), "error": float(res.error), "tau_int": float(res.tau_int),
                         "tau_int_error": float(res.tau_int_error)}
    if exact is not None:
        e["exact"] = exact
        if res.error > 0:
            e["deviation_sigma"] = (float(res.value) - exact) / float(res.error)
    return e


def sample_job(out_or_checkpoint: str | os.PathLike[str], *, n: int | None = None,
               out_file: str | os.PathLike[str] | None = None, seed: int | None = None, batch: int | None = None,
               backend: str = "torch", device: Any = None, store_every: int = 1,
               progress: bool = False) -> dict[str, Any]:
    """Flow MCMC (independence Metropolis) from a trained flow; writes the chain and a JSON summary.

    Parameters
    ----------
    out_or_checkpoint : path
        A ``train_job`` output folder or a checkpoint file written by it.
    n : int, optional
        Chain length (default ``sample.n`` of the configuration).
    out_file : path, optional
        Where to write the chain: gauge fields go to an HDF5 ensemble (default ``DIR/flow_ensemble.h5``),
        phi^4 fields to an ``.npz`` (default ``DIR/flow_samples.npz``, :func:`latticekit.io.save_state`).
        The JSON summary goes next to it (``DIR/sample.json`` for the defaults, else ``<out_file>.json``).
        Both are written atomically (temporary file, then rename); an existing file is replaced.
    seed : int, optional
        Seed of the proposals and accept/reject uniforms (default ``sample.seed``).
    batch : int, optional
        Proposals drawn per batch (default ``sample.batch``).
    backend, device
        ``backend`` must be ``"torch"``; ``device`` default CPU.
    store_every : int
        Store every this many chain elements.
    progress : bool
        Print a line when done.

    Returns
    -------
    dict
        ``acceptance`` (rate), ``acceptance_summary`` (rate and longest rejection run), ``proposal_ess``,
        ``observables`` (Gamma-method value, error, tau_int; exact values for 2D gauge theories, none in
        ``Nd >= 3``), ``n``, ``seed``,
        ``checkpoint_step``, paths and wall time.
    """
    dev = _resolve_device(backend, device)
    model, action, cfg, payload = load_trained(out_or_checkpoint, device=dev)
    ck, folder = _resolve_checkpoint(out_or_checkpoint)
    n = cfg.sample.n if n is None else n
    seed = cfg.sample.seed if seed is None else seed
    batch = cfg.sample.batch if batch is None else batch
    for name, v, lo in (("n", n, 2), ("seed", seed, 0), ("batch", batch, 1), ("store_every", store_every, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name}={v!r}: expected an integer >= {lo}")
    default_name = "flow_ensemble.h5" if cfg.is_gauge else "flow_samples.npz"
    data_path = Path(out_file) if out_file is not None else folder / default_name
    summary_path = folder / SAMPLE_SUMMARY if out_file is None else Path(str(data_path) + ".json")
    from .sampling import independence_metropolis

    t0 = time.time()
    rng = backends.rng(seed, backend="torch", device=dev)
    res = independence_metropolis(model, action, n, rng, observables=flow_observables(cfg), batch_size=batch,
                                  keep_configs=True)
    exact = _exact_values(cfg)
    observables = {k: _gamma_entry(r, exact.get(k)) for k, r in res.analysis.items()}
    # the same proposals, reweighted (<w O>_q / <w>_q; independent draws, so a plain jackknife)
    from latticekit.analysis import reweight

    for k, entry in observables.items():
        rw = reweight(res.proposal_observables[k], res.proposal_log_w)
        entry["reweighted"] = {"value": float(rw.value), "error": float(rw.error)}
    idx = list(range(0, n, store_every))
    configs = res.configs
    assert configs is not None
    data_path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(ck), "checkpoint_step": int(payload["step"]), "seed": seed, "n": n,
            "store_every": store_every, "sampler": "flow independence Metropolis", "config": cfg.to_dict()}
    if cfg.is_gauge:
        _write_ensemble(data_path, cfg, configs, idx, res, meta)
    else:
        from latticekit.io import save_state

        sel = torch.as_tensor(idx)
        save_state(data_path, {"phi": configs[sel].detach().cpu().numpy(),
                               "accepted": res.accepted[idx], "log_w": res.log_w[idx],
                               **{f"obs_{k}": v[idx] for k, v in res.observables.items()}}, meta)
    acc = res.acceptance
    summary = {
        "acceptance": float(acc.rate),
        "acceptance_summary": {k: _plain(v) for k, v in vars(acc).items() if not k.startswith("_")},
        "proposal_ess": float(res.proposal_ess), "observables": observables, "n": n, "seed": seed,
        "stored": len(idx), "checkpoint": str(ck), "checkpoint_step": int(payload["step"]),
        "theory": _theory_name(cfg), "lattice": list(cfg.lattice.shape), "output": str(data_path),
        "wall_s": round(time.time() - t0, 3),
    }
    _write_json(summary_path, summary)
    if progress:
        print(f"flow MCMC: {n} steps, acceptance {acc.rate:.3f}, proposal ESS {res.proposal_ess:.3f}; "
              f"wrote {data_path}", file=sys.stderr)
    return summary


def _plain(v: Any) -> Any:
    import numbers

    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)


def _write_ensemble(path: Path, cfg: FlowConfig, configs: torch.Tensor, idx: list[int], res: Any,
                    meta: dict[str, Any]) -> None:
    from latticekit.io import Ensemble

    with atomic_path(path) as tmp:
        ens = Ensemble.create(tmp, lattice=tuple(cfg.lattice.shape), group=_group(cfg), action="wilson",
                              action_params={"beta": cfg.action.beta}, sampler="flow_independence_metropolis",
                              sampler_params={k: meta[k] for k in ("checkpoint", "checkpoint_step", "n", "store_every")},
                              seeds=[meta["seed"]], metadata={"flow_config": meta["config"]}, overwrite=True)
        try:
            host = configs.detach().cpu().numpy()
            for i in idx:
                ens.append(host[i], observables={k: float(v[i]) for k, v in res.observables.items()},
                           info={"step": i, "accepted": bool(res.accepted[i]), "log_w": float(res.log_w[i])})
        finally:
            ens.close()


def _group(cfg: FlowConfig) -> Any:
    """The gauge group of a ``kind = "wilson"`` configuration."""
    return group_from_name(cfg.action.group)


def _theory_name(cfg: FlowConfig) -> str:
    a = cfg.action
    if a.kind == "phi4":
        return f"phi^4 (kappa={a.kappa}, lambda={a.lam})"
    return f"{_group(cfg).name} Wilson (beta={a.beta})"


# -- summaries ---------------------------------------------------------------------------------
def hmc_reference(cfg: "FlowConfig | Mapping[str, Any] | str | os.PathLike[str]", *, trajectories: int = 500,
                  chains: int = 8, thermalization: int = 100, step_size: float = 0.1, n_steps: int = 10,
                  seed: int = 0) -> dict[str, dict[str, float]]:
    """A short latticekit HMC run (numpy) of the theory of ``cfg`` with the flow-MCMC observables.

    Works in any number of dimensions (gauge theories: the plaquette; 2D U(1) also the topological
    charge), so it gives a reference where :mod:`latticekit.exact` has none (``Nd >= 3``). On a 4^4
    SU(2) lattice 120 trajectories of 4 chains take about 25 s; ``latticekit run`` with the heatbath is
    several times faster for pure gauge theories.

    Returns ``name -> {"value", "error", "tau_int"}`` (Gamma method, chains as replicas).

    Examples
    --------
    >>> cfg = {"lattice": {"shape": [4, 4]}, "action": {"kind": "phi4", "kappa": 0.1, "lam": 0.5}}
    >>> r = hmc_reference(cfg, trajectories=50, chains=2, thermalization=10)
    >>> sorted(r)[:2]
    ['abs_magnetization', 'acceptance']
    """
    import numpy as np

    from latticekit import observables as obs
    from latticekit.actions import Phi4Action, WilsonGaugeAction
    from latticekit.analysis import gamma_method
    from latticekit.gauge import cold_gauge_field
    from latticekit.mc import HMC

    cfg = FlowConfig.load(cfg)
    lat = Lattice(tuple(cfg.lattice.shape))
    V = lat.volume
    if cfg.action.kind == "phi4":
        S: Any = Phi4Action(lat, cfg.action.kappa, cfg.action.lam)
        x = backends.rng(seed + 1, backend="numpy").normal((chains,) + lat.shape, std=0.1)

        def measure(f: Any) -> dict[str, Any]:
            M = np.asarray(obs.magnetization(f, lat))
            return {"magnetization": M, "abs_magnetization": np.abs(M), "chi": V * M * M,
                    "action_density": np.asarray(S.action(f)) / V}
    else:
        G = _group(cfg)
        S = WilsonGaugeAction(G, lat, cfg.action.beta)
        x = cold_gauge_field(G, lat, (chains,), backend="numpy")

        def measure(f: Any) -> dict[str, Any]:
            plaq = {"plaquette": np.asarray(obs.average_plaquette(f, G, lat))}
            if G is not U1 or lat.nd != 2:
                return plaq
            Q = np.asarray(obs.topological_charge_u1_2d(f, lat))
            return {**plaq, "topological_charge": Q, "chi_t": Q * Q / V}
    hmc = HMC(S, rng=backends.rng(seed, backend="numpy"), step_size=step_size, n_steps=n_steps, integrator="omelyan")
    for _ in range(thermalization):
        x, _info = hmc.step(x)
    series: dict[str, list[Any]] = {}
    acc = []
    for _ in range(trajectories):
        x, info = hmc.step(x)
        acc.append(float(np.mean(np.asarray(info.accepted, dtype=float))))
        for k, v in measure(x).items():
            series.setdefault(k, []).append(v)
    out: dict[str, dict[str, float]] = {}
    for k, rows in series.items():
        arr = np.asarray(rows)                      # (trajectories, chains)
        r = gamma_method([arr[:, c] for c in range(arr.shape[1])])
        out[k] = {"value": float(r.value), "error": float(r.error), "tau_int": float(r.tau_int)}
    out["acceptance"] = {"value": float(np.mean(acc)), "error": 0.0, "tau_int": 0.5}
    return out


def _reference_from(hmc: Any) -> dict[str, dict[str, float]]:
    """HMC values from a dict or a `latticekit run` results.json (phi4 'susceptibility' -> chi)."""
    if hmc is None:
        return {}
    if isinstance(hmc, (str, os.PathLike)):
        hmc = json.loads(Path(hmc).read_text())
    if isinstance(hmc, Mapping) and "observables" in hmc:
        hmc = hmc["observables"]
    if not isinstance(hmc, Mapping):
        raise TypeError(f"hmc={hmc!r}: expected a results.json path or a mapping name -> {{value, error}}")
    out = {}
    for k, v in hmc.items():
        name = "chi" if k == "susceptibility" else k
        if isinstance(v, Mapping) and "value" in v:
            out[name] = {"value": float(v["value"]), "error": float(v.get("error", 0.0))}
        elif isinstance(v, (int, float)):
            out[name] = {"value": float(v), "error": 0.0}
    return out


def flow_summary(out: str | os.PathLike[str], *, sample: Mapping[str, Any] | None = None,
                 hmc: "Mapping[str, Any] | str | os.PathLike[str] | None" = None) -> dict[str, Any]:
    """What the main job shows for flows: flow ESS and flow-MCMC observables next to exact/HMC values.

    Parameters
    ----------
    out : path
        A ``train_job`` output folder (``train.json``; ``sample.json`` unless ``sample`` is given).
    sample : mapping, optional
        The result of :func:`sample_job` (default: read ``out/sample.json``).
    hmc : mapping or path, optional
        HMC reference values: the result of :func:`hmc_reference`, a mapping ``name -> {value, error}``
        or the ``results.json`` of a ``latticekit run`` of the same theory. Exact values (2D U(1):
        :func:`latticekit.exact.u1_2d_plaquette`, :func:`latticekit.exact.u1_2d_topological_susceptibility`;
        2D SU(N): :func:`latticekit.exact.sun_2d_plaquette`) are added where no HMC value is given; gauge
        theories in ``Nd >= 3`` have none, and ``note`` says so.

    Returns
    -------
    dict
        ``theory``, ``lattice``, ``flow`` (training ESS and var log w, steps, flow-MCMC acceptance,
        proposal ESS), ``rows`` (one per observable: flow value/error/tau_int, the reweighting estimate from
        the same proposals and its jackknife error when the sample summary has it, reference value/error and
        kind ``"exact"``, ``"hmc"`` (or the sampler recorded in a results.json, e.g. ``"heatbath"``) or None,
        deviation in sigma), ``note`` (for gauge theories in Nd >= 3 without
        an HMC reference: that there is no exact value and how to get a reference; else None) and ``text``
        (a printable table, :func:`format_flow_summary`).
    """
    folder = Path(out)
    if sample is None:
        sp = folder / SAMPLE_SUMMARY
        if not sp.exists():
            raise FileNotFoundError(f"{sp} does not exist: run sample_job (`latticekit sample {folder}`) first")
        sample = json.loads(sp.read_text())
    train = json.loads((folder / TRAIN_SUMMARY).read_text()) if (folder / TRAIN_SUMMARY).exists() else {}
    conf = train.get("config") or (json.loads((folder / CONFIG).read_text()) if (folder / CONFIG).exists() else None)
    if conf is None:
        raise FileNotFoundError(f"{folder}: neither {TRAIN_SUMMARY} nor {CONFIG} found (not a train_job folder)")
    cfg = FlowConfig.from_dict(conf)
    exact = _exact_values(cfg)
    ref_kind = "hmc"
    if isinstance(hmc, (str, os.PathLike)):
        _check_reference_theory(cfg, Path(hmc))
        ref_kind = _reference_algorithm(Path(hmc))
    ref = _reference_from(hmc)
    order = ["plaquette", "chi_t", "topological_charge"] if cfg.is_gauge else \
        ["abs_magnetization", "chi", "magnetization", "action_density"]
    rows = []
    for name in order:
        f = sample["observables"].get(name)
        if f is None:
            continue
        row: dict[str, Any] = {"observable": name, "flow": f["value"], "flow_error": f["error"],
                               "tau_int": f["tau_int"], "reference": None, "reference_error": None,
                               "reference_kind": None, "deviation_sigma": None}
        if "reweighted" in f:
            row.update(reweighted=f["reweighted"]["value"], reweighted_error=f["reweighted"]["error"])
        if name in ref:
            row.update(reference=ref[name]["value"], reference_error=ref[name]["error"], reference_kind=ref_kind)
        elif name in exact:
            row.update(reference=exact[name], reference_error=0.0, reference_kind="exact")
        if row["reference"] is not None:
            err = math.hypot(f["error"], row["reference_error"] or 0.0)
            row["deviation_sigma"] = (f["value"] - row["reference"]) / err if err > 0 else None
        rows.append(row)
    note = None
    if cfg.is_gauge and not exact and any(r["reference"] is None for r in rows):
        note = (f"no exact value: latticekit.exact has the {_group(cfg).name} Wilson theory in 2D only, this is "
                f"{cfg.nd}D.\nFor a reference, run `latticekit run` on the same [lattice] and [action] (heatbath or "
                "HMC) and pass `--compare RUN/results.json` to `latticekit sample`.")
    summary = {
        "theory": _theory_name(cfg), "lattice": list(cfg.lattice.shape), "note": note,
        "flow": {"train_steps": train.get("steps"), "train_wall_s": train.get("wall_s"), "ess": train.get("ess"),
                 "var_log_w": train.get("var_log_w"), "mcmc_steps": sample.get("n"),
                 "acceptance": sample.get("acceptance"), "proposal_ess": sample.get("proposal_ess")},
        "rows": rows,
    }
    summary["text"] = format_flow_summary(summary)
    return summary


def _reference_algorithm(path: Path) -> str:
    """The sampler of a ``latticekit run`` results.json (``"hmc"``, ``"heatbath"``); ``"hmc"`` if not recorded."""
    data = json.loads(path.read_text())
    run = data.get("config") if isinstance(data, dict) else None
    algo = run.get("sampler", {}).get("algorithm") if isinstance(run, dict) else None
    return algo if isinstance(algo, str) and algo else "hmc"


def _check_reference_theory(cfg: FlowConfig, path: Path) -> None:
    """Refuse a ``latticekit run`` results.json of another lattice or other couplings as a reference."""
    data = json.loads(path.read_text())
    run = data.get("config") if isinstance(data, dict) else None
    if not isinstance(run, dict):
        return  # a plain name -> {value, error} mapping: nothing to compare
    mine = cfg.to_dict()
    problems = []
    if list(run.get("lattice", {}).get("shape", [])) != list(mine["lattice"]["shape"]):
        problems.append(f"lattice {run.get('lattice', {}).get('shape')} vs {mine['lattice']['shape']}")
    ra, ma = run.get("action", {}), mine["action"]
    keys = ("kind", "group", "beta") if ma.get("kind") == "wilson" else ("kind", "kappa", "lam")
    for k in keys:
        if k in ma and ra.get(k) != ma.get(k):
            problems.append(f"action.{k} {ra.get(k)!r} vs {ma.get(k)!r}")
    if problems:
        raise ConfigError(f"{path} is a run of another theory than the flow ({'; '.join(problems)}); "
                          "compare with a run of the same lattice and couplings")


def format_flow_summary(summary: Mapping[str, Any]) -> str:
    """A printable table of :func:`flow_summary`'s result.

    Examples
    --------
    >>> s = {"theory": "t", "lattice": [4, 4], "flow": {"ess": 0.5, "acceptance": 0.6, "proposal_ess": 0.5,
    ...      "mcmc_steps": 10, "train_steps": 5, "var_log_w": 0.1}, "rows": []}
    >>> format_flow_summary(s).splitlines()[0]
    'flow: t on 4x4, 5 training steps, ESS 0.5, var log w 0.1'
    """
    f = summary["flow"]

    def fmt(v: Any, spec: str = ".4g") -> str:
        return "-" if v is None else format(v, spec)

    head = (f"flow: {summary['theory']} on {'x'.join(map(str, summary['lattice']))}, {fmt(f.get('train_steps'), 'd')} "
            f"training steps, ESS {fmt(f.get('ess'))}, var log w {fmt(f.get('var_log_w'))}")
    head2 = (f"flow MCMC: {fmt(f.get('mcmc_steps'), 'd')} steps, acceptance {fmt(f.get('acceptance'))}, "
             f"proposal ESS {fmt(f.get('proposal_ess'))}")
    rows = [("observable", "flow MCMC", "tau_int", "reweighted", "reference", "kind", "dev/sigma")]
    note = summary.get("note")
    for r in summary["rows"]:
        ref = ("none (no exact value)" if note else "-") if r["reference"] is None else (
            f"{r['reference']:.6g}" + (f" +- {r['reference_error']:.2g}" if r.get("reference_error") else ""))
        rw = "-" if r.get("reweighted") is None else f"{r['reweighted']:.6g} +- {r['reweighted_error']:.2g}"
        rows.append((r["observable"], f"{r['flow']:.6g} +- {r['flow_error']:.2g}", f"{r['tau_int']:.2f}", rw, ref,
                     r["reference_kind"] or "-",
                     "-" if r["deviation_sigma"] is None else f"{r['deviation_sigma']:+.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([head, head2, *lines, *([note] if note else [])])


# -- command-line helpers ----------------------------------------------------------------------
def train_command(config: str | os.PathLike[str], *, out: str | os.PathLike[str], device: Any = None,
                  fresh: bool = False, quiet: bool = False, nprocs: int = 1) -> str:
    """``latticekit train CONFIG.toml --out DIR [--fresh] [--quiet] [--nprocs N]``: train, return the text to print.

    ``nprocs > 1`` trains with :func:`latticekit.flows.distributed.train_distributed`.
    """
    if nprocs > 1:
        from .distributed import train_distributed

        res = train_distributed(config, out=out, nprocs=nprocs, device=device, fresh=fresh, progress=not quiet)
    else:
        res = train_job(config, out=out, device=device, fresh=fresh, progress=not quiet)
    resumed = "" if res["resumed_from_step"] is None else f" (resumed from step {res['resumed_from_step']})"
    return (f"trained {res['steps']} steps{resumed} in {res['wall_s']:.1f} s: loss {res['final_loss']:.6g}, "
            f"ESS {res['ess']:.4f}, var log w {res['var_log_w']:.4g} ({res['eval']['step']} steps, "
            f"{res['n_parameters']} parameters); checkpoint {res['checkpoint']}, metrics {res['metrics']}")


def sample_command(out: str | os.PathLike[str], *, n: int | None = None, seed: int | None = None,
                   out_file: str | os.PathLike[str] | None = None, device: Any = None,
                   hmc: "Mapping[str, Any] | str | os.PathLike[str] | None" = None) -> str:
    """``latticekit sample DIR [--n N] [--seed S] [--out-file F] [--compare RESULTS.json]``: flow MCMC,
    return the summary table (with HMC values from ``hmc`` beside the flow's when given)."""
    s = sample_job(out, n=n, seed=seed, out_file=out_file, device=device)
    folder = _resolve_checkpoint(out)[1]
    text = flow_summary(folder, sample=s, hmc=hmc)["text"]
    return f"{text}\nchain written to {s['output']}"
