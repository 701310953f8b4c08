"""Jackknife and bootstrap for primary and derived quantities, with binning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

from ._host import as_generator
from ._series import SeriesLike, as_replicas
from .blocking import _check_bin_size, bin_series

__all__ = ["ResamplingResult", "jackknife", "bootstrap"]

Func = Callable[[np.ndarray], Any]

#: Largest number of entries of a bootstrap count matrix held at once.
_CHUNK_ENTRIES = 4_000_000


@dataclass(frozen=True)
class ResamplingResult:
    """Result of :func:`jackknife` and :func:`bootstrap`.

    Attributes
    ----------
    value : float or ndarray, shape B
        Estimate on the full sample: the mean, or ``func`` at the means.
    error : float or ndarray, shape B
        Resampling estimate of the statistical error.
    samples : ndarray, shape B + (K,)
        Jackknife (K = number of bins) or bootstrap (K = ``n_boot``) replicas of the
        estimate; keep them to propagate errors into further derived quantities.
    bias : float or ndarray, shape B
        Estimated bias of ``value``: ``(K - 1)(mean(samples) - F)`` for the
        jackknife, ``mean(samples) - F`` for the bootstrap, with ``F`` the estimate from the
        binned measurements (``value`` when ``bin_size`` divides every replica's length; a
        remainder that fills no bin is left out of the resampling). ``value - bias`` is the
        bias-corrected estimate; the bias of a mean or of a linear function is zero.
    n_bins : int
        Number of bins (sum over replica).
    bin_size : int
    method : str
        ``"jackknife"`` or ``"bootstrap"``.
    """

    value: Any
    error: Any
    samples: np.ndarray
    bias: Any
    n_bins: int
    bin_size: int
    method: str


def _scalar(x: np.ndarray) -> Any:
    x = np.asarray(x)
    return x.item() if x.ndim == 0 else x


def _prepare(data: SeriesLike, func: Optional[Func], bin_size: int):
    if func is not None and not callable(func):
        raise TypeError(f"func: expected a callable func(a) of the means, got {type(func).__name__}")
    b = _check_bin_size(bin_size)
    reps = as_replicas(data, "data", min_length=1)
    if func is not None and reps[0].ndim < 2:
        raise ValueError(
            "data: with func, expected shape (n_obs, *B, N) with the primary observables "
            f"on the first axis, got shape {reps[0].shape}"
        )
    for i, r in enumerate(reps):
        if r.shape[-1] < b:
            raise ValueError(f"bin_size: {b} exceeds the length {r.shape[-1]} of replica {i}")
    n_tot = sum(r.shape[-1] for r in reps)
    mean = sum(r.sum(axis=-1) for r in reps) / n_tot
    bins = [bin_series(r, b) for r in reps]
    return b, mean, bins


def _apply(func: Optional[Func], a: np.ndarray, expected: tuple) -> np.ndarray:
    if func is None:
        return a
    out = np.asarray(func(a))
    if out.shape != expected:
        raise ValueError(
            f"func: expected output of shape {expected}, got {out.shape}; func must act "
            "elementwise over the trailing axes of its argument, e.g. lambda a: a[0] / a[1]"
        )
    return out


def jackknife(data: SeriesLike, func: Optional[Func] = None, *, bin_size: int = 1) -> ResamplingResult:
    """Delete-one-bin jackknife error of a mean or a derived quantity.

    Parameters
    ----------
    data : array_like or list of array_like
        Monte Carlo time on the last axis. ``(*B, N)`` for primary observables
        (each batch entry analysed independently); ``(n_obs, *B, N)`` when ``func``
        combines several primary observables; a ``list``/``tuple`` of such arrays for
        several replica (bins never straddle two replica). Any backend.
    func : callable, optional
        ``func(a)`` with ``a`` of shape ``(n_obs, *B, ...)`` (means), acting
        elementwise over the trailing axes, e.g. ``lambda a: a[0] / a[1]``.
    bin_size : int, default 1
        Consecutive measurements averaged into one bin before resampling. Choose it
        well above the integrated autocorrelation time (see
        :func:`latticekit.analysis.blocking_analysis`).

    Returns
    -------
    ResamplingResult

    Notes
    -----
    ``error^2 = (K-1)/K sum_k (F_k - mean_k F_k)^2`` with ``F_k`` the estimate with bin
    ``k`` removed. For ``func=None`` and ``bin_size=1`` this equals the naive standard
    error ``std(x, ddof=1)/sqrt(N)`` exactly.

    Examples
    --------
    >>> x = np.array([1.0, 2.0, 3.0, 4.0])
    >>> r = jackknife(x)
    >>> r.value, bool(np.isclose(r.error, x.std(ddof=1) / 2))
    (2.5, True)
    >>> y = np.stack([x, 2 * x + 1])
    >>> round(jackknife(y, lambda a: a[1] / a[0]).value, 6)
    2.4
    """
    b, mean, bins = _prepare(data, func, bin_size)
    allb = np.concatenate(bins, axis=-1)
    k = allb.shape[-1]
    if k < 2:
        raise ValueError(f"bin_size: {b} leaves {k} bin(s); the jackknife needs at least 2")
    total = allb.mean(axis=-1)
    loo = (total[..., None] * k - allb) / (k - 1)
    batch = mean.shape if func is None else mean.shape[1:]
    value = _apply(func, mean, batch)
    samples = _apply(func, loo, batch + (k,))
    smean = samples.mean(axis=-1)
    err = np.sqrt((k - 1) / k * np.sum(np.abs(samples - smean[..., None]) ** 2, axis=-1))
    # the bias compares the resampled estimates with the estimate from the same data: the binned measurements
    # (a remainder that does not fill a bin is left out of the bins, while `value` uses every measurement; against
    # `value` a mean would show a spurious "bias" (K-1)(mean of kept - mean of all))
    bias = (k - 1) * (smean - _apply(func, total, batch))
    return ResamplingResult(_scalar(value), _scalar(err), samples, _scalar(bias), k, b, "jackknife")


def bootstrap(
    data: SeriesLike,
    func: Optional[Func] = None,
    *,
    rng: Any,
    n_boot: int = 1000,
    bin_size: int = 1,
) -> ResamplingResult:
    """Bootstrap error of a mean or a derived quantity, resampling bins.

    Parameters
    ----------
    data : array_like or list of array_like
        As for :func:`jackknife`. With several replica, bins are resampled within
        each replica (stratified bootstrap).
    func : callable, optional
        As for :func:`jackknife`.
    rng : numpy.random.Generator or int
        Explicit randomness (required): a generator, or an integer seed. The same
        seed gives the same result.
    n_boot : int, default 1000
        Number of bootstrap samples.
    bin_size : int, default 1
        Bin size, as for :func:`jackknife`.

    Returns
    -------
    ResamplingResult
        ``error`` is the standard deviation (``ddof=1``) of the bootstrap samples.

    Examples
    --------
    >>> x = np.random.default_rng(0).standard_normal(10_000)
    >>> r = bootstrap(x, rng=42, n_boot=500)
    >>> bool(abs(r.error / (x.std(ddof=1) / 100) - 1) < 0.1)
    True
    >>> bool(bootstrap(x, rng=42, n_boot=500).error == r.error)  # reproducible
    True
    """
    gen = as_generator(rng)
    if isinstance(n_boot, (bool, np.bool_)) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot: expected an integer >= 2, got {n_boot!r}")
    n_boot = int(n_boot)
    b, mean, bins = _prepare(data, func, bin_size)
    for i, x in enumerate(bins):
        # the stratified bootstrap draws within each replica: one bin is always drawn as itself, so its
        # fluctuation would not enter the error (the jackknife refuses one bin in all for the same reason)
        if x.shape[-1] < 2:
            where = f"replica {i}" if len(bins) > 1 else "the series"
            raise ValueError(f"bin_size: {b} leaves {where} with {x.shape[-1]} bin; the bootstrap resamples bins "
                             "within each replica and needs "
                             "at least 2 in each (use a smaller bin_size, or the jackknife over all replica)")
    k = sum(x.shape[-1] for x in bins)
    sums = np.zeros(mean.shape + (n_boot,), dtype=np.result_type(mean.dtype, np.float64))
    for x in bins:
        nb = x.shape[-1]
        chunk = max(1, _CHUNK_ENTRIES // nb)
        for start in range(0, n_boot, chunk):
            c = min(n_boot, start + chunk) - start
            # draw nb bins with replacement per sample; count multiplicities (c, nb)
            idx = gen.integers(0, nb, size=(c, nb)) + (np.arange(c) * nb)[:, None]
            counts = np.bincount(idx.ravel(), minlength=c * nb).reshape(c, nb).astype(np.float64)
            sums[..., start : start + c] += x @ counts.T
    means = sums / k
    batch = mean.shape if func is None else mean.shape[1:]
    value = _apply(func, mean, batch)
    samples = _apply(func, means, batch + (n_boot,))
    err = np.std(samples, axis=-1, ddof=1)
    # against the estimate from the binned measurements, which the samples resample (see jackknife)
    bias = samples.mean(axis=-1) - _apply(func, sum(x.sum(axis=-1) for x in bins) / k, batch)
    return ResamplingResult(_scalar(value), _scalar(err), samples, _scalar(bias), k, b, "bootstrap")
