"""Atomic, self-describing checkpoints of flow models and their training state.

A checkpoint is one ``torch.save`` file written to a temporary name in the target folder, flushed
to disk and renamed over the target (``os.replace``): a job killed while writing leaves the previous
checkpoint intact. It holds model, optimizer and scheduler state, the step, the random states (the
latticekit torch generator and torch's global CPU generator) and a description of the architecture
and lattice with its hash. Loading into a model whose description differs is refused with a message
listing what differs.

Format 2 (current) came with the gauge masks as objects. A format-1 checkpoint of the earlier gauge
layer classes (``U1NdPlaquetteCoupling``, ...) loads into the equivalent model of today's classes when
its architecture, printed as the old classes would have printed it
(:func:`~latticekit.flows.legacy.legacy_modules_repr`), its lattice, extra facts and parameter names and
shapes all agree, and its stored masks equal the model's; the weights are then converted exactly
(:func:`~latticekit.flows.legacy.convert_legacy_state_dict`). Format-1 checkpoints of other models
(phi^4) load unchanged.

Examples
--------
>>> import os, tempfile, torch, latticekit as lk
>>> from latticekit.flows import GaussianPrior, Model, scalar_coupling_flow
>>> lat = lk.Lattice((4, 4))
>>> m = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2))
>>> path = os.path.join(tempfile.mkdtemp(), "ckpt.pt")
>>> save_checkpoint(path, model=m, step=7)
>>> load_checkpoint(path, model=m)["step"]
7
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import torch
from torch import nn

from latticekit.backends import Generator
from latticekit.utils.files import atomic_path

__all__ = [
    "CheckpointMismatchError",
    "architecture_description",
    "config_hash",
    "get_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT_VERSION = 2
#: formats that load_checkpoint reads (1: before the gauge masks were objects)
READABLE_FORMATS = (1, 2)


class CheckpointMismatchError(ValueError):
    """A checkpoint that belongs to a different architecture or lattice."""


def architecture_description(model: nn.Module, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """JSON-able description of a model: module tree (with lattice shapes and masks in the layer
    reprs), parameter and buffer names/shapes, plus ``extra`` (e.g. the action).

    Examples
    --------
    >>> import torch
    >>> d = architecture_description(torch.nn.Linear(2, 3))
    >>> d["parameters"]["weight"]
    [3, 2]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__}: expected a torch.nn.Module")
    lattices = sorted({str(tuple(m.lattice.shape)) for m in model.modules() if hasattr(m, "lattice")})
    return {
        "modules": repr(model),
        "parameters": {k: list(v.shape) for k, v in model.named_parameters()},
        "buffers": {k: list(v.shape) for k, v in model.named_buffers()},
        "lattices": lattices,
        "extra": {k: str(v) for k, v in sorted((extra or {}).items())},
    }


def config_hash(description: dict[str, Any]) -> str:
    """SHA-256 (hex) of a description (canonical JSON).

    Examples
    --------
    >>> config_hash({"a": 1}) == config_hash({"a": 1})
    True
    """
    blob = json.dumps(description, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def get_rng_state(rng: Generator | None) -> dict[str, Any]:
    """Random states to store: the latticekit torch generator's and torch's global CPU state.

    Examples
    --------
    >>> import latticekit as lk
    >>> sorted(get_rng_state(lk.backends.rng(0, backend="torch")))
    ['latticekit', 'seed', 'torch_cpu']
    """
    st: dict[str, Any] = {"torch_cpu": torch.get_rng_state()}
    if rng is not None:
        st["latticekit"] = _check_torch_rng(rng).get_state()
        st["seed"] = rng.seed
    return st


def set_rng_state(rng: Generator | None, state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`get_rng_state`.

    Examples
    --------
    >>> import latticekit as lk
    >>> g = lk.backends.rng(3, backend="torch"); st = get_rng_state(g); a = g.normal((2,))
    >>> set_rng_state(g, st); bool((g.normal((2,)) == a).all())
    True
    """
    torch.set_rng_state(state["torch_cpu"])
    if rng is not None:
        if "latticekit" not in state:
            raise ValueError("checkpoint holds no latticekit generator state to restore into rng")
        _check_torch_rng(rng).set_state(state["latticekit"])


def _check_torch_rng(rng: Generator) -> Generator:
    # the public Generator.get_state()/set_state() continue the very same random stream on resume
    if not isinstance(rng, Generator) or rng.backend != "torch":
        raise TypeError(f"rng={rng!r}: expected a latticekit generator with backend='torch'")
    return rng


def save_checkpoint(path: str | os.PathLike[str], *, model: nn.Module, step: int,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    rng: Generator | None = None, extra: dict[str, Any] | None = None,
                    config: dict[str, Any] | None = None) -> None:
    """Write a checkpoint atomically (temporary file in the same folder, fsync, ``os.replace``).

    Parameters
    ----------
    path : path-like
    model : nn.Module
    step : int
        Number of completed optimisation steps.
    optimizer, scheduler : optional
        Their ``state_dict()`` is stored.
    rng : Generator, optional
        Its state is stored (see :func:`get_rng_state`).
    extra : dict, optional
        Extra architecture facts included in the description/hash (e.g. ``{"action": repr(S)}``).
    config : dict, optional
        Free-form run configuration stored alongside (not hashed).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    desc = architecture_description(model, extra)
    payload = {
        "format_version": FORMAT_VERSION,
        "step": int(step),
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": get_rng_state(rng),
        "description": desc,
        "config_hash": config_hash(desc),
        "config": config or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
                sub = [k for k in sorted(set(a[key]) | set(b[key])) if a[key].get(k) != b[key].get(k)]
                out.append(f"{key}: {', '.join(f'{k} (checkpoint {a[key].get(k)}, model {b[key].get(k)})' for k in sub[:5])}"
                           + (" ..." if len(sub) > 5 else ""))
            elif key == "modules":
                out.append("modules: the layer structure differs (checkpoint vs model repr)")
            else:
                out.append(f"{key}: checkpoint {a.get(key)}, model {b.get(key)}")
    return out


def _legacy_state(path: str, payload: dict[str, Any], model: nn.Module, desc: dict[str, Any],
                  with_optimizer: bool) -> dict[str, Any] | None:
    """The converted state of a format-1 checkpoint of the pre-mask gauge classes, or None if it is not one."""
    from .legacy import convert_legacy_state_dict, legacy_modules_repr

    if payload.get("format_version") != 1:
        return None
    old = payload["description"]
    if old.get("modules") != legacy_modules_repr(model) or any(old.get(k) != desc[k] for k in
                                                                ("parameters", "lattices", "extra")):
        return None
    try:
        state, changed = convert_legacy_state_dict(model, payload["model"])
    except ValueError as exc:
        raise CheckpointMismatchError(f"checkpoint {path!r} (format 1): {exc}") from None
    if changed and with_optimizer:
        raise CheckpointMismatchError(
            f"checkpoint {path!r} was written by latticekit before the gauge masks were objects (format 1); its "
            "weights were converted to the current layers (reordered / negated input channels), so its optimizer "
            "state no longer matches them: load it with optimizer=None and scheduler=None and start a new "
            "optimizer")
    return state


def load_checkpoint(path: str | os.PathLike[str], *, model: nn.Module,
                    optimizer: torch.optim.Optimizer | None = None, scheduler: Any = None,
                    rng: Generator | None = None, extra: dict[str, Any] | None = None,
                    map_location: Any = "cpu") -> dict[str, Any]:
    """Load a checkpoint into ``model`` (and optimizer, scheduler, rng when given).

    Checkpoints of format 1 written for the pre-mask gauge layer classes load into the equivalent
    model of the current classes (module docstring); when their weights had to be converted the
    optimizer state cannot be restored (CheckpointMismatchError: load with ``optimizer=None``).

    Raises
    ------
    CheckpointMismatchError
        The stored architecture/lattice description (with ``extra``) differs from the model's.
    FileNotFoundError, ValueError
        Missing or unreadable file.

    Returns
    -------
    dict
        The checkpoint payload (``step``, ``config``, ``description``, ...).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"path={path!r}: no checkpoint there")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # truncated or foreign file
        raise ValueError(f"path={path!r}: not a readable latticekit checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format_version") not in READABLE_FORMATS:
        raise ValueError(f"path={path!r}: not a latticekit flow checkpoint (formats {READABLE_FORMATS})")
    desc = architecture_description(model, extra)
    state = payload["model"]
    if payload["config_hash"] != config_hash(desc):
        legacy = _legacy_state(path, payload, model, desc, optimizer is not None or scheduler is not None)
        if legacy is None:
            diffs = "; ".join(_diff(payload["description"], desc)) or "description hash differs"
            raise CheckpointMismatchError(f"checkpoint {path!r} was written for a different architecture or lattice "
                                          f"and cannot be loaded into this model: {diffs}")
        state = legacy
    model.load_state_dict(state)
    if optimizer is not None:
        if payload["optimizer"] is None:
            raise ValueError(f"path={path!r}: the checkpoint holds no optimizer state")
        optimizer.load_state_dict(payload["optimizer"])
    if scheduler is not None:
        if payload["scheduler"] is None:
            raise ValueError(f"path={path!r}: the checkpoint holds no scheduler state")
        scheduler.load_state_dict(payload["scheduler"])
    set_rng_state(rng, payload["rng"])
    return payload
