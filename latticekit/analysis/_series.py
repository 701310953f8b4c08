"""Parsing of Monte Carlo time series (single chain or several replicas)."""

from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np

from ._host import to_host

__all__ = ["as_replicas", "SeriesLike"]

#: An array ``(..., N)`` (one chain, Monte Carlo time last) or a list/tuple of such
#: arrays, one per replica, with equal leading shapes and possibly different ``N_r``.
SeriesLike = Union[Any, Sequence[Any]]


def as_replicas(data: SeriesLike, name: str = "data", *, min_length: int = 1) -> list[np.ndarray]:
    """Return the replicas of ``data`` as a list of float/complex host arrays.

    A ``list`` or ``tuple`` is always read as a list of replicas; anything else
    is one chain. Monte Carlo time is the last axis.
    """
    if isinstance(data, (list, tuple)):
        if len(data) == 0:
            raise ValueError(f"{name}: empty list of replicas")
        reps = [to_host(r, f"{name}[{i}]") for i, r in enumerate(data)]
    else:
        reps = [to_host(data, name)]
    out = []
    lead = None
    for i, r in enumerate(reps):
        label = name if len(reps) == 1 else f"{name}[{i}]"
        if r.ndim == 0:
            raise ValueError(f"{label}: expected an array with Monte Carlo time on the last axis, got a scalar")
        if not (np.issubdtype(r.dtype, np.number) or r.dtype == bool):
            raise TypeError(f"{label}: expected numeric data, got dtype {r.dtype}")
        if not np.iscomplexobj(r):
            r = r.astype(np.float64, copy=False)
        if r.shape[-1] < min_length:
            raise ValueError(
                f"{label}: need at least {min_length} measurements along the last axis, got {r.shape[-1]}"
            )
        if lead is None:
            lead = r.shape[:-1]
        elif r.shape[:-1] != lead:
            raise ValueError(
                f"{label}: leading shape {r.shape[:-1]} differs from that of the first replica {lead}"
            )
        if not np.all(np.isfinite(r)):
            raise ValueError(f"{label}: contains NaN or infinite values")
        out.append(r)
    return out
