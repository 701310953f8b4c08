"""Binning (blocking) of time series and blocking analysis of the error."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ._host import to_host
from ._series import SeriesLike, as_replicas

__all__ = ["bin_series", "BlockingResult", "blocking_analysis"]


def bin_series(x: Any, bin_size: int) -> np.ndarray:
    """Average consecutive measurements in non-overlapping bins along the last axis.

    A trailing remainder of fewer than ``bin_size`` measurements is dropped.

    Parameters
    ----------
    x : array_like, shape ``(..., N)``
        Time series, Monte Carlo time last (any backend).
    bin_size : int
        Number of consecutive measurements per bin (``>= 1``).

    Returns
    -------
    ndarray, shape ``(..., N // bin_size)``

    Examples
    --------
    >>> bin_series(np.arange(7.0), 3)
    array([1., 4.])
    """
    arr = to_host(x, "x")
    if arr.ndim == 0:
        raise ValueError("x: expected an array with Monte Carlo time on the last axis, got a scalar")
    b = _check_bin_size(bin_size)
    nb = arr.shape[-1] // b
    if nb == 0:
        raise ValueError(f"bin_size: {b} exceeds the series length {arr.shape[-1]}")
    if b == 1:
        return arr.astype(np.result_type(arr.dtype, np.float64), copy=False)
    return arr[..., : nb * b].reshape(arr.shape[:-1] + (nb, b)).mean(axis=-1)


def _check_bin_size(bin_size: Any, name: str = "bin_size") -> int:
    if isinstance(bin_size, (bool, np.bool_)) or not isinstance(bin_size, (int, np.integer)) or bin_size < 1:
        raise ValueError(f"{name}: expected a positive integer, got {bin_size!r}")
    return int(bin_size)


@dataclass(frozen=True)
class BlockingResult:
    """Result of :func:`blocking_analysis`.

    Attributes
    ----------
    bin_sizes : ndarray of int, shape (K,)
    errors : ndarray, shape B + (K,)
        Jackknife error of the estimate for each bin size.
    errors_error : ndarray, shape B + (K,)
        Approximate error of each error, ``error / sqrt(2 (n_bins - 1))``.
    n_bins : ndarray of int, shape (K,)
    tau_int : ndarray, shape B + (K,)
        ``(1/2) (error / error_at_bin_size_1)^2``: the integrated autocorrelation
        time implied by each bin size (it plateaus at ``tau_int`` for bins much
        longer than the autocorrelation time). A constant series (every measurement
        of every replica equal; with ``func``, every input) has ``errors`` 0 and
        ``tau_int`` 1/2, the convention of :func:`latticekit.analysis.gamma_method`.
    """

    bin_sizes: np.ndarray
    errors: np.ndarray
    errors_error: np.ndarray
    n_bins: np.ndarray
    tau_int: np.ndarray


def blocking_analysis(
    data: SeriesLike,
    func: Optional[Any] = None,
    *,
    bin_sizes: Optional[Sequence[int]] = None,
    min_bins: int = 16,
) -> BlockingResult:
    """Error of the mean (or of a derived quantity) as a function of bin size.

    For autocorrelated data the binned error grows with the bin size and
    saturates at the true error once bins are much longer than the
    autocorrelation time; ``error^2 / error(1)^2 -> 2 tau_int``.

    Parameters
    ----------
    data : array_like or list of array_like
        As for :func:`latticekit.analysis.jackknife`: ``(*B, N)``, or
        ``(n_obs, *B, N)`` with ``func``, or a list of replica.
    func : callable, optional
        Derived quantity, as in :func:`latticekit.analysis.jackknife`.
    bin_sizes : sequence of int, optional
        Default: powers of two ``1, 2, 4, ...`` while at least ``min_bins`` bins remain, counted as the
        jackknife counts them, ``sum_r N_r // b`` over the replica (bins never straddle two replica), and
        while every replica holds at least one bin.
    min_bins : int, default 16
        Smallest number of bins used by the default ``bin_sizes`` (at least 2).

    Returns
    -------
    BlockingResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.repeat(rng.standard_normal(1000), 8)  # tau_int = 4 for bins of 8
    >>> res = blocking_analysis(x)
    >>> res.bin_sizes[:5]
    array([ 1,  2,  4,  8, 16])
    >>> bool(abs(res.tau_int[4] - 4.0) < 0.1)
    True
    """
    from .resampling import jackknife

    if isinstance(min_bins, (bool, np.bool_)) or not isinstance(min_bins, (int, np.integer)) or min_bins < 2:
        raise ValueError(f"min_bins: expected an integer >= 2 (the jackknife needs two bins), got {min_bins!r}")
    if bin_sizes is not None and (isinstance(bin_sizes, (str, bytes)) or not isinstance(bin_sizes, Iterable)):
        raise TypeError(f"bin_sizes: expected a sequence of positive integers, got {bin_sizes!r}")
    if func is not None and not callable(func):
        raise TypeError(f"func: expected a callable func(a) of the means, got {type(func).__name__}")
    reps = as_replicas(data, "data", min_length=2)
    n_r = [r.shape[-1] for r in reps]
    if bin_sizes is None:
        sizes = [1]
        # the jackknife's bins: sum_r N_r // b (a remainder of each replica fills no bin)
        while sum(n // (2 * sizes[-1]) for n in n_r) >= min_bins and 2 * sizes[-1] <= min(n_r):
            sizes.append(2 * sizes[-1])
    else:
        sizes = [_check_bin_size(b, f"bin_sizes[{i}]") for i, b in enumerate(bin_sizes)]
        if not sizes:
            raise ValueError("bin_sizes: empty")
    errs, nbs = [], []
    for b in sizes:
        res = jackknife(reps, func, bin_size=b)
        errs.append(np.asarray(res.error))
        nbs.append(res.n_bins)
    errors = np.stack(errs, axis=-1)
    n_bins = np.array(nbs)
    # a constant series: no fluctuation, error 0 and tau_int 1/2 as gamma_method (not 0/0, nor the ratio of two
    # rounding errors of a mean of equal values)
    const = np.logical_and.reduce([np.all(r == reps[0][..., :1], axis=-1) for r in reps])
    if func is not None:
        const = np.all(const, axis=0)
    errors = np.where(const[..., None], 0.0, errors)
    with np.errstate(divide="ignore", invalid="ignore"):
        base = jackknife(reps, func, bin_size=1).error
        tau = np.where(const[..., None], 0.5, 0.5 * (errors / np.asarray(base)[..., None]) ** 2)
        ee = errors / np.sqrt(2 * np.maximum(n_bins - 1, 1))
    return BlockingResult(
        bin_sizes=np.array(sizes), errors=errors, errors_error=ee, n_bins=n_bins, tau_int=tau
    )
