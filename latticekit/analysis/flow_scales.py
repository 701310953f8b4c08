"""Gradient-flow scales ``t0`` and ``w0`` from measured flow curves, with Gamma-method errors.

* ``t0`` (Luscher, JHEP 08 (2010) 071, arXiv:1006.4518, eq. 3.1): ``t^2 <E(t)> |_{t = t0} = 0.3``;
* ``w0`` (BMW, JHEP 09 (2012) 010, arXiv:1203.4469, eqs. 2-3): ``W(t) = t d/dt [t^2 <E(t)>]``,
  ``W(t) |_{t = w0^2} = 0.3``.

Both are defined on the **ensemble average** ``F(t) = <t^2 E(t)>``, not configuration by configuration: the
input is ``t^2 E`` of every configuration on a grid of flow times (``latticekit.observables.wilson_flow`` with a
``measure`` of ``t^2 E``, see docs/analysis.md), the scale is a function of the means, and its error comes from
the Gamma method for derived quantities (:func:`~latticekit.analysis.gamma_method` with ``func``), which
propagates the autocorrelations of every grid point.

On the grid ``t_0 < t_1 < ...``: ``t0`` is the first crossing of ``F = ref``, linearly interpolated between the
two grid points around it. For ``w0`` the derivative is the difference quotient at the midpoints,
``W(t_{k+1/2}) = t_{k+1/2} (F_{k+1} - F_k) / (t_{k+1} - t_k)`` (exact for a quadratic ``F``), and ``w0^2`` its
first crossing of ``ref``, interpolated in the same way. The interpolation error is ``O(h^2)`` in the grid
spacing ``h``: measure every RK3 step of ``eps = 0.01-0.02`` (``wilson_flow(..., every=1)``) and it is far
below the statistical error of any ensemble (``tests/analysis/test_flow_scales.py`` checks it against flows to
the found scale). The reference value is 0.3 for SU(3); for other groups pass ``reference`` (a common choice
scales it with ``(N^2 - 1)/N``).

Examples
--------
>>> import numpy as np
>>> t = np.linspace(0.0, 2.0, 201)
>>> c = 0.2 * (1 + 0.05 * np.random.default_rng(1).normal(size=400))   # 400 curves t^2 E = c t^2
>>> r = flow_scale(t, c * t[:, None] ** 2, "t0")
>>> round(float(r.value), 4), float(np.sqrt(0.3 / c.mean()).round(4))
(1.2273, 1.2273)
>>> bool(0 < r.error < 0.01), r.kind, r.reference
(True, 't0', 0.3)
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ._host import to_host
from .autocorrelation import GammaResult, gamma_method

__all__ = ["FlowScaleResult", "REFERENCE", "flow_scale", "flow_scale_of_curve"]

#: The reference value of ``t0`` and ``w0`` for SU(3) (Luscher 2010; BMW 2012).
REFERENCE = 0.3
_KINDS = ("t0", "w0")


@dataclass(frozen=True)
class FlowScaleResult:
    """Result of :func:`flow_scale`.

    Attributes
    ----------
    value : float
        ``t0 / a^2`` or ``w0 / a`` (lattice units).
    error : float
        Its statistical error (Gamma method, autocorrelations included).
    tau_int : float
        Integrated autocorrelation time of the projected fluctuations.
    kind : str
        ``"t0"`` or ``"w0"``.
    reference : float
        The value of ``t^2 E`` (t0) or ``W`` (w0) that defines the scale.
    gamma : GammaResult
        The full Gamma-method result of the derived quantity.
    """

    value: float
    error: float
    tau_int: float
    kind: str
    reference: float
    gamma: GammaResult


def _crossing_index(x: np.ndarray, y: np.ndarray, ref: float, what: str) -> int:
    """``k``: the first grid point with ``y >= ref`` (the crossing lies in ``[x[k-1], x[k]]``)."""
    above = y >= ref
    if not above.any():
        k = int(np.argmax(y))
        raise ValueError(f"{what} never reaches reference={ref:g} (largest {y[k]:.4g} at t = {x[k]:.4g}): "
                         "flow to a larger t")
    k = int(np.argmax(above))
    if k == 0:
        raise ValueError(f"{what} is {y[0]:.4g} >= reference={ref:g} already at the first flow time t = {x[0]:.4g}: "
                         "start the grid at a smaller t")
    return k


def _crossing(x: np.ndarray, y: np.ndarray, ref: float, what: str) -> tuple[float, int, float, float]:
    """``(x*, k, dx*/dy[k-1], dx*/dy[k])``: the first ``x`` where the piecewise-linear ``y(x)`` reaches ``ref``
    from below, and its derivatives with respect to the two values it is interpolated from."""
    k = _crossing_index(x, y, ref, what)
    dx, dy = x[k] - x[k - 1], y[k] - y[k - 1]
    u = (ref - y[k - 1]) / dy
    return float(x[k - 1] + u * dx), k, dx * (u - 1.0) / dy, -dx * u / dy


def flow_scale_of_curve(t: Any, F: Any, kind: str = "t0", *, reference: float = REFERENCE) -> float:
    """``t0 / a^2`` or ``w0 / a`` of one curve ``F(t) = t^2 E(t)`` on the grid ``t`` (see the module docstring).

    Parameters
    ----------
    t : array_like, shape (n_t,)
        Strictly increasing flow times.
    F : array_like, shape (n_t,)
        ``t^2 E`` at those times (an ensemble mean, or one configuration's curve).
    kind : {"t0", "w0"}
    reference : float
        The defining value (0.3); any real number type (``float``, ``int``, ``numpy.float32`` ...).

    Returns
    -------
    float

    Raises
    ------
    ValueError
        A bad grid or shape, NaN or infinite values in ``F`` (the message lists their flow times), or a curve
        that does not cross ``reference`` inside the grid.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(0, 2, 41)
    >>> round(flow_scale_of_curve(t, 0.3 * t), 12), round(flow_scale_of_curve(t, 0.15 * t**2, "w0"), 3)
    (1.0, 1.0)
    """
    tt, FF = _check_grid(t, F, kind, reference, "F")
    if FF.ndim != 1:
        raise ValueError(f"F: expected one curve of shape ({tt.size},), got shape {FF.shape}; for an ensemble of "
                         f"curves use flow_scale")
    return _scale(tt, FF, kind, reference)


def _scale_and_gradient(t: np.ndarray, F: np.ndarray, kind: str, ref: float) -> tuple[float, np.ndarray]:
    """The scale of the curve ``F`` and its gradient with respect to ``F`` (exact for the interpolation used, so
    the Gamma method needs no numerical differences: those steps could move the crossing to the next interval)."""
    grad = np.zeros_like(F)
    if kind == "t0":
        x, k, d0, d1 = _crossing(t, F, ref, "t^2 E")
        grad[k - 1], grad[k] = d0, d1
        return x, grad
    h = np.diff(t)
    tm = 0.5 * (t[1:] + t[:-1])
    W = tm * np.diff(F) / h                       # W_j = W(t_{j+1/2}) from F_j and F_{j+1}
    s, j, d0, d1 = _crossing(tm, W, ref, "W(t) = t d(t^2 E)/dt")
    w0 = math.sqrt(s)
    for jj, d in ((j - 1, d0), (j, d1)):          # chain rule through W_jj = tm_jj (F_{jj+1} - F_jj) / h_jj
        grad[jj + 1] += d * tm[jj] / h[jj]
        grad[jj] -= d * tm[jj] / h[jj]
    return w0, grad / (2.0 * w0)


def _scale(t: np.ndarray, F: np.ndarray, kind: str, ref: float) -> float:
    return _scale_and_gradient(t, F, kind, ref)[0]


def _check_grid(t: Any, F: Any, kind: str, reference: float, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The flow times and curves as float64 host arrays, checked; ``name``: the user's name of ``F``."""
    if kind not in _KINDS:
        raise ValueError(f"kind={kind!r}: expected one of {_KINDS}")
    if isinstance(reference, (bool, np.bool_)) or not isinstance(reference, numbers.Real) or not (
            math.isfinite(reference) and reference > 0):
        raise ValueError(f"reference={reference!r}: expected a positive number")
    tt = np.asarray(to_host(t, "t"), dtype=np.float64)
    if tt.ndim != 1 or tt.size < 3 or not np.all(np.isfinite(tt)) or not np.all(np.diff(tt) > 0):
        raise ValueError(f"t: expected at least 3 finite, strictly increasing flow times, got shape {tt.shape}")
    FF = np.asarray(to_host(F, name), dtype=np.float64)
    if FF.shape[:1] != tt.shape:
        raise ValueError(f"{name}: expected the flow-time axis first, of length {tt.size} (the length of t); "
                         f"got shape {FF.shape}")
    bad = ~np.isfinite(FF)
    if bad.any():
        rows = np.flatnonzero(bad.reshape(tt.size, -1).any(axis=1))
        times = ", ".join(f"{tt[k]:.6g}" for k in rows[:5]) + (f", ... ({rows.size} in all)" if rows.size > 5 else "")
        where = ""
        if FF.ndim == 2:
            cols = np.flatnonzero(bad.any(axis=0))
            where = (" in configuration(s) " + ", ".join(map(str, cols[:5]))
                     + (f", ... ({cols.size} in all)" if cols.size > 5 else ""))
        raise ValueError(f"{name}: {int(bad.sum())} NaN or infinite value(s) at flow time(s) t = {times}{where}")
    return tt, FF


def flow_scale(t: Any, t2E: Any | Sequence[Any], kind: str = "t0", *, reference: float = REFERENCE,
               S: float = 1.5) -> FlowScaleResult:
    """``t0 / a^2`` or ``w0 / a`` of an ensemble, with its Gamma-method error.

    Parameters
    ----------
    t : array_like, shape (n_t,)
        Strictly increasing flow times, the same for every configuration.
    t2E : array_like, shape (n_t, N), or a list of such arrays
        ``t^2 E`` of each configuration (Monte Carlo time last), e.g. the clover definition
        ``wilson_flow(...)[1]["t2E_clover"]`` of each configuration stacked along the last axis. A list is
        read as replica (independent chains of one ensemble), as by :func:`~latticekit.analysis.gamma_method`.
    kind : {"t0", "w0"}
    reference : float
        The defining value: 0.3 (SU(3)); any real number type (``float``, ``int``, ``numpy.float32`` ...).
    S : float
        Windowing parameter of the Gamma method.

    Returns
    -------
    FlowScaleResult

    Raises
    ------
    ValueError
        A bad grid or shape, NaN or infinite values in ``t2E`` (the message lists their flow times and
        configurations), or a mean curve that does not cross ``reference`` inside the grid.
    """
    chains = list(t2E) if isinstance(t2E, (list, tuple)) else [t2E]
    if not chains:
        raise ValueError("t2E: an empty list; expected an array of shape (n_t, N) or a list of such arrays (replica)")
    tt = None
    host = []
    for i, c in enumerate(chains):
        tt, FF = _check_grid(t, c, kind, reference, "t2E" if len(chains) == 1 else f"t2E[{i}]")
        if FF.ndim != 2:
            raise ValueError(f"t2E: expected shape (n_t, N) per chain (flow time first, Monte Carlo time last); "
                             f"got {FF.shape}")
        host.append(FF)
    assert tt is not None
    # the scale of the mean curve first: a clear error when the ensemble does not reach the reference
    n = sum(h.shape[1] for h in host)
    _scale(tt, sum(h.sum(axis=1) for h in host) / n, kind, reference)

    def func(a: np.ndarray) -> Any:
        return np.asarray(_scale(tt, a, kind, reference))

    def grad(a: np.ndarray) -> Any:
        return _scale_and_gradient(tt, a, kind, reference)[1]

    g = gamma_method(host if len(host) > 1 else host[0], func, grad=grad, S=S)
    return FlowScaleResult(value=float(g.value), error=float(g.error), tau_int=float(g.tau_int), kind=kind,
                           reference=float(reference), gamma=g)
