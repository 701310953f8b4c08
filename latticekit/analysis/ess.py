"""Importance weights: log-weights, effective sample size, reweighting."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._host import to_host

__all__ = ["log_weights", "ess", "ess_absolute", "log_z_estimate", "ReweightResult", "reweight"]


def _check_log_w(log_w: Any, name: str = "log_w", axis: Any = -1) -> np.ndarray:
    """The log-weights as float64 with the sample axis ``axis`` moved last, checked along it."""
    lw = to_host(log_w, name)
    if lw.ndim == 0:
        raise ValueError(f"{name}: expected an array with samples on the last axis, got a scalar")
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)) or not -lw.ndim <= axis < lw.ndim:
        raise ValueError(f"axis={axis!r}: expected an integer in [{-lw.ndim}, {lw.ndim}) for {name} of shape "
                         f"{lw.shape}")
    lw = np.moveaxis(lw, int(axis), -1)
    if np.iscomplexobj(lw) or not np.issubdtype(lw.dtype, np.number):
        raise TypeError(f"{name}: expected real log-weights, got dtype {lw.dtype}")
    lw = lw.astype(np.float64, copy=False)
    if lw.shape[-1] == 0:
        raise ValueError(f"{name}: no samples (the sample axis has length 0)")
    if np.any(np.isnan(lw)) or np.any(lw == np.inf):
        raise ValueError(f"{name}: contains NaN or +inf (-inf, i.e. zero weight, is allowed)")
    if np.any(np.all(lw == -np.inf, axis=-1)):
        raise ValueError(f"{name}: all weights are zero (all log-weights -inf) along the sample axis")
    return lw


def log_weights(log_p: Any, log_q: Any) -> np.ndarray:
    """Importance log-weights ``log w = log p - log q``.

    Parameters
    ----------
    log_p : array_like
        Unnormalised target log-density of each sample, e.g. ``-S(x)`` for a
        lattice action ``S``; constants drop out of every weighted quantity.
    log_q : array_like
        Log-density of each sample under the proposal/model that generated it
        (e.g. a normalising flow's ``log q(x)``).

    Returns
    -------
    ndarray
        ``log_p - log_q`` (broadcast), float64.

    Examples
    --------
    >>> log_weights(-np.array([1.0, 2.0]), np.array([-1.5, -1.5]))
    array([ 0.5, -0.5])
    """
    lp = to_host(log_p, "log_p")
    lq = to_host(log_q, "log_q")
    try:
        shape = np.broadcast_shapes(lp.shape, lq.shape)
    except ValueError:
        raise ValueError(f"log_p, log_q: shapes {lp.shape} and {lq.shape} do not broadcast") from None
    del shape
    for name, a in (("log_p", lp), ("log_q", lq)):
        if np.iscomplexobj(a):
            raise TypeError(f"{name}: expected real values, got dtype {a.dtype}")
        if np.any(np.isnan(a)):
            raise ValueError(f"{name}: contains NaN")
    with np.errstate(invalid="ignore"):
        lw = lp.astype(np.float64, copy=False) - lq.astype(np.float64, copy=False)
    if np.any(np.isnan(lw)):
        raise ValueError("log_p, log_q: undefined log-weight (inf - inf)")
    return lw


def _log_ess_fraction(lw: np.ndarray) -> np.ndarray:
    """``log(ESS/N)`` along the last axis (``_check_log_w`` moved the sample axis there)."""
    lw = lw - np.max(lw, axis=-1, keepdims=True)  # largest weight = 1: no overflow
    n = lw.shape[-1]
    from scipy.special import logsumexp   # here, not at import: scipy.special costs 0.3 s of every command's start

    return 2 * logsumexp(lw, axis=-1) - logsumexp(2 * lw, axis=-1) - np.log(n)


def ess(log_w: Any, axis: int = -1) -> Any:
    """Relative effective sample size ``ESS/N = (sum w)^2 / (N sum w^2)``.

    Computed from log-weights with log-sum-exp, so weights like ``exp(1e4)`` are
    fine. The result lies in ``[1/N, 1]``: 1 for uniform weights, ``1/N`` when
    one weight dominates.

    Parameters
    ----------
    log_w : array_like, shape ``(..., N)``
        Log-weights (any backend); ``-inf`` means weight zero. Batched over the
        other axes.
    axis : int, default -1
        Sample axis.

    Returns
    -------
    float or ndarray
        ``ESS/N`` per batch entry.

    Examples
    --------
    >>> ess(np.zeros(100))
    1.0
    >>> ess(np.array([1e4, 0.0, 0.0, 0.0]))
    0.25
    >>> lw = np.random.default_rng(0).normal(0.0, 0.5, 1_000_000)  # ESS/N -> exp(-0.25)
    >>> round(ess(lw), 2)
    0.78
    """
    lw = _check_log_w(log_w, axis=axis)
    out = np.minimum(np.exp(_log_ess_fraction(lw)), 1.0)
    return out.item() if out.ndim == 0 else out


def ess_absolute(log_w: Any, axis: int = -1) -> Any:
    """Absolute effective sample size ``(sum w)^2 / sum w^2`` in ``[1, N]``.

    Parameters
    ----------
    log_w : array_like, shape ``(..., N)``
    axis : int, default -1

    Returns
    -------
    float or ndarray

    Examples
    --------
    >>> ess_absolute(np.zeros(100))
    100.0
    >>> ess_absolute(np.array([0.0, -1e4, -1e4]))
    1.0
    """
    lw = _check_log_w(log_w, axis=axis)
    n = lw.shape[-1]
    out = n * np.minimum(np.exp(_log_ess_fraction(lw)), 1.0)
    return out.item() if out.ndim == 0 else out


def log_z_estimate(log_w: Any) -> tuple[float, float]:
    """Importance-sampling estimate of ``log Z`` from the log-weights of ``N`` independent draws.

    With ``w = exp(-S) / q`` and draws from ``q``, ``Z = E_q[w]`` (the ``log Z`` estimate of
    arXiv:2404.10819 sec. 4.1), so ``log Z ~ log mean w``, computed with log-sum-exp. Its error is the
    delta-method ``sqrt(var(w / mean w) / N)`` (the relative error of ``mean w``); the estimate is biased
    low by about half its variance (Jensen), negligible once the error is small.

    Parameters
    ----------
    log_w : array_like, shape ``(N,)``
        Log-weights ``-S - log q`` of independent draws (any backend).

    Returns
    -------
    (float, float)
        ``log mean w`` and its error; for a single draw the error is undefined: NaN, with a
        ``RuntimeWarning`` (as :func:`~latticekit.analysis.gamma_method` returns NaN and warns where it has
        no error estimate).

    Examples
    --------
    Draws from N(0, 1) weighted to ``exp(-x^2)``: ``Z = int exp(-x^2) dx = sqrt(pi)``.

    >>> x = np.random.default_rng(0).standard_normal(400_000)
    >>> lw = -x ** 2 - (-x ** 2 / 2 - 0.5 * np.log(2 * np.pi))
    >>> est, err = log_z_estimate(lw)
    >>> bool(abs(est - 0.5 * np.log(np.pi)) < 4 * err), err < 1e-3
    (True, True)
    """
    lw = _check_log_w(log_w)
    if lw.ndim != 1:
        raise ValueError(f"log_w: expected one axis of samples, got shape {lw.shape}")
    n = lw.shape[0]
    top = float(lw.max())
    w = np.exp(lw - top)
    mean = float(w.mean())
    if n < 2:
        warnings.warn("log_z_estimate: a single draw has no spread to estimate an error from; returning NaN",
                      RuntimeWarning, stacklevel=2)
        return top + float(np.log(mean)), math.nan
    return top + float(np.log(mean)), float(np.sqrt(np.var(w / mean) / n))


@dataclass(frozen=True)
class ReweightResult:
    """Result of :func:`reweight`.

    Attributes
    ----------
    value : float or ndarray, shape B
        ``sum_i w_i O_i / sum_i w_i``.
    error : float or ndarray, shape B
        Jackknife (or Gamma-method) error of ``value``.
    ess : float or ndarray, shape B
        Relative effective sample size of the weights.
    method : str
    """

    value: Any
    error: Any
    ess: Any
    method: str


def reweight(
    obs: Any,
    log_w: Any,
    *,
    bin_size: int = 1,
    method: Literal["jackknife", "gamma"] = "jackknife",
) -> ReweightResult:
    """Reweighted expectation ``<O>_p = <w O>_q / <w>_q`` with its error.

    The weights are normalised to ``max w = 1`` before exponentiation (no
    overflow for any size of log-weights) and the ratio of means is treated as a
    derived quantity.

    Parameters
    ----------
    obs : array_like, shape ``(*B, N)``
        Observable on each sample (Monte Carlo time / sample index last).
    log_w : array_like, shape broadcastable to ``obs``
        Log-weights ``log p - log q`` (see :func:`log_weights`).
    bin_size : int, default 1
        Bin size for the jackknife (use > 1 for autocorrelated samples, e.g.
        from independence Metropolis).
    method : {"jackknife", "gamma"}
        Error estimator: delete-one-bin jackknife, or Wolff's Gamma method
        (``bin_size`` is then ignored; autocorrelations handled by windowing).

    Returns
    -------
    ReweightResult

    Examples
    --------
    Samples from N(0, 1) reweighted to N(1, 1): ``log w = x - 1/2``, ``<x>_p = 1``.

    >>> x = np.random.default_rng(3).standard_normal(200_000)
    >>> r = reweight(x, x - 0.5)
    >>> bool(abs(r.value - 1.0) < 4 * r.error)
    True
    """
    from .autocorrelation import gamma_method
    from .resampling import jackknife

    o = to_host(obs, "obs")
    if o.ndim == 0:
        raise ValueError(f"obs: expected an array (*B, N) with the samples on the last axis, got a scalar {obs!r}")
    if np.iscomplexobj(o) or not np.issubdtype(o.dtype, np.number):
        raise TypeError(f"obs: expected real numeric data, got dtype {o.dtype}")
    o = o.astype(np.float64, copy=False)
    lw = _check_log_w(log_w)
    try:
        shape = np.broadcast_shapes(o.shape, lw.shape)
    except ValueError:
        raise ValueError(f"obs, log_w: shapes {o.shape} and {lw.shape} do not broadcast") from None
    if shape[-1] != o.shape[-1] or (o.ndim and o.shape[-1] != lw.shape[-1]):
        raise ValueError(f"obs, log_w: sample axes differ ({o.shape[-1]} vs {lw.shape[-1]})")
    w = np.exp(lw - np.max(lw, axis=-1, keepdims=True))
    o, w = np.broadcast_to(o, shape), np.broadcast_to(w, shape)
    stacked = np.stack([w * o, w])

    def ratio(a: np.ndarray) -> np.ndarray:
        return a[0] / a[1]

    def ratio_grad(a: np.ndarray) -> np.ndarray:
        return np.stack([1 / a[1], -a[0] / a[1] ** 2])

    if method == "jackknife":
        with np.errstate(invalid="ignore", divide="ignore"):
            res = jackknife(stacked, ratio, bin_size=bin_size)
        value, error = res.value, res.error
    elif method == "gamma":
        res = gamma_method(stacked, ratio, grad=ratio_grad)
        value, error = res.value, res.error
    else:
        raise ValueError(f"method: expected 'jackknife' or 'gamma', got {method!r}")
    e = np.minimum(np.exp(_log_ess_fraction(np.broadcast_to(lw, shape))), 1.0)
    return ReweightResult(value=value, error=error, ess=e.item() if e.ndim == 0 else e, method=method)
