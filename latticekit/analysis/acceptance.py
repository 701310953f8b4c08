"""Summary of Metropolis acceptance histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._host import to_host

__all__ = ["AcceptanceSummary", "acceptance_summary"]


@dataclass(frozen=True)
class AcceptanceSummary:
    """Result of :func:`acceptance_summary` (fields carry the batch shape ``B``).

    Attributes
    ----------
    rate : float or ndarray
        Mean acceptance (fraction of accepted proposals, or mean acceptance
        probability when probabilities are given).
    error : float or ndarray
        Error of ``rate`` from the Gamma method (accounts for the correlation of
        consecutive accept/reject decisions, strong in independence Metropolis).
    tau_int : float or ndarray
        Integrated autocorrelation time of the acceptance history.
    n : int
        Number of proposals.
    n_accepted : float or ndarray
        Number of accepted proposals (sum of the probabilities if those were given).
    longest_rejection_run : int or ndarray, or None
        Longest run of consecutive rejections (boolean input only); long runs
        signal a sampler stuck on a configuration of large weight.
    """

    rate: Any
    error: Any
    tau_int: Any
    n: int
    n_accepted: Any
    longest_rejection_run: Any


def _longest_false_run(acc: np.ndarray) -> np.ndarray:
    flat = acc.reshape(-1, acc.shape[-1])
    out = np.empty(flat.shape[0], dtype=int)
    for i, row in enumerate(flat):
        rej = np.concatenate([[False], ~row, [False]]).astype(np.int8)
        d = np.diff(rej)
        starts, stops = np.flatnonzero(d == 1), np.flatnonzero(d == -1)
        out[i] = int((stops - starts).max()) if starts.size else 0
    return out.reshape(acc.shape[:-1])


def acceptance_summary(accepted: Any, *, S: float = 1.5) -> AcceptanceSummary:
    """Summarise an accept/reject history.

    Parameters
    ----------
    accepted : array_like, shape ``(*B, N)``
        Booleans (accepted or not) or acceptance probabilities in ``[0, 1]``,
        Monte Carlo time last; batched over the other axes. Any backend.
    S : float, default 1.5
        Windowing parameter of the Gamma method used for the error.

    Returns
    -------
    AcceptanceSummary

    Examples
    --------
    >>> s = acceptance_summary(np.array([True, True, False, False, False, True, True, True]))
    >>> s.rate, s.n, s.n_accepted, s.longest_rejection_run
    (0.625, 8, 5.0, 3)
    """
    from .autocorrelation import gamma_method

    a = to_host(accepted, "accepted")
    if a.ndim == 0 or a.shape[-1] < 2:
        raise ValueError("accepted: expected an array with at least 2 proposals on the last axis")
    is_bool = a.dtype == bool
    if not is_bool:
        if np.iscomplexobj(a) or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"accepted: expected booleans or probabilities, got dtype {a.dtype}")
        a = a.astype(np.float64, copy=False)
        if np.any(~np.isfinite(a)) or np.any((a < 0) | (a > 1)):
            raise ValueError("accepted: acceptance probabilities must lie in [0, 1]")
    x = a.astype(np.float64)
    g = gamma_method(x, S=S)
    n_acc = x.sum(axis=-1)
    run = _longest_false_run(a) if is_bool else None
    if run is not None and run.ndim == 0:
        run = int(run)
    return AcceptanceSummary(
        rate=g.value,
        error=g.error,
        tau_int=g.tau_int,
        n=int(a.shape[-1]),
        n_accepted=n_acc.item() if n_acc.ndim == 0 else n_acc,
        longest_rejection_run=run,
    )
