"""What an HDF5 ensemble may store, checked before anything is written: the JSON of its metadata and of each
configuration's ``info``, and U(1) angles within the range the reader accepts (:mod:`latticekit.io.hdf5`)."""

from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np

from ._hdf5_format import U1_ANGLE_LIMIT, file_dtype

__all__ = ["check_u1_angles", "dumps_metadata", "info_json"]


def _strict_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"{type(o).__name__} {o!r:.60} is not JSON serialisable")


def _json_default(o: Any) -> Any:
    """As :func:`_strict_default`, with anything else stored as its ``str`` (free-form metadata)."""
    try:
        return _strict_default(o)
    except TypeError:
        return str(o)


def dumps_metadata(x: Any) -> str:
    """JSON text of free-form ensemble metadata (sorted keys; what JSON cannot hold is stored as its str)."""
    return json.dumps(x, default=_json_default, sort_keys=True)


def _check_nested_keys(v: Any, where: str) -> None:
    """Keys of mappings inside an info value must be strings too: JSON turns ``{1: "a"}`` into ``{"1": "a"}``."""
    if isinstance(v, Mapping):
        for k, x in v.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: key {k!r} must be a string (JSON object keys are strings)")
            _check_nested_keys(x, f"{where}[{k!r}]")
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            _check_nested_keys(x, f"{where}[{i}]")


def info_json(info: Mapping[str, Any] | None) -> str:
    """The JSON text of a per-configuration ``info``; a value JSON cannot hold (an object, NaN, infinity) is a
    ValueError naming its key, so that what is stored reads back as what was given."""
    if info is None:
        return "{}"
    if not isinstance(info, Mapping):
        raise TypeError(f"info: expected a mapping (e.g. {{'traj': 3}}), got {type(info).__name__}")
    for k, v in info.items():
        if not isinstance(k, str):
            raise ValueError(f"info: key {k!r} must be a string (JSON object keys are strings)")
        try:
            _check_nested_keys(v, f"info[{k!r}]")
            json.dumps(v, default=_strict_default, allow_nan=False)
        except (TypeError, ValueError) as exc:
            why = "NaN or infinity, which JSON cannot hold" if "Out of range float" in str(exc) else str(exc)
            raise ValueError(f"info[{k!r}]: {why}; expected numbers, strings, booleans, None, lists or "
                             f"mappings of these") from None
        except RecursionError:
            raise ValueError(f"info[{k!r}]: a circular reference; expected JSON-serialisable data") from None
    return json.dumps(dict(info), default=_strict_default, allow_nan=False, sort_keys=True)


def check_u1_angles(a: np.ndarray, precision: str, nd: int, argname: str = "U") -> None:
    """Refuse U(1) angles the reader would refuse: NaN/infinity, or ``|theta|`` beyond
    :data:`~latticekit.io._hdf5_format.U1_ANGLE_LIMIT` of ``precision`` (checked as stored, in that precision)."""
    stored = np.asarray(a, dtype=file_dtype(True, precision))
    if not np.all(np.isfinite(stored)):
        raise ValueError(f"{argname} contains NaN or infinite angles")
    lim = U1_ANGLE_LIMIT[precision]
    big = float(np.max(np.abs(stored))) if stored.size else 0.0
    if big > lim:
        raise ValueError(f"{argname} holds U(1) angles up to |theta| = {big:.3g}; an ensemble of {precision} "
                         f"precision stores |theta| <= {lim:.3g} (beyond it one rounding step exceeds the read "
                         f"tolerance, and the reader refuses the file): wrap the angles to (-pi, pi] with "
                         f"latticekit.U1.normalize(U, nd={nd}) first")
