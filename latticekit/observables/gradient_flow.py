"""Wilson (gradient) flow with Luscher's third-order Runge-Kutta integrator, for U(1) and SU(N), any Nd.

Flow equation (Luscher, JHEP 08 (2010) 071, arXiv:1006.4518, eq. 2.4)::

    dV_t/dt = Z(V_t) V_t,   Z(V) = -g0^2 {d S_w(V)},   V_0 = U,

with ``S_w = (1/g0^2) sum_{oriented p} Re tr(1 - V(p)) = (2/g0^2) sum_{x, mu<nu} Re tr(1 - P)``, i.e. the
Wilson action of :mod:`latticekit.actions` at ``beta = 2N/g0^2``, and the Lie derivative
``d_a f(U) = d/dt f(exp(t T_a) U)`` with ``tr T_a T_b = -delta_ab/2`` (the same convention as the
library's forces ``F = sum_a (d_a S) T_a``). Since the force is linear in beta,
``g0^2 {d S_w} = F_{beta = 2N}``: the flow generator is ``Z = -F`` at the *flow coupling*

* ``beta_flow = 2N`` for SU(N) (``beta = 6`` for SU(3));
* ``beta_flow = 1`` for U(1): with ``T = i`` (``tr T T = -1``) the rule is ``beta_flow = N / c`` with
  ``tr T_a T_b = -c delta_ab``; it makes the weak-field flow the heat equation
  ``d theta_mu / dt = sum_nu Delta_nu theta_mu - ...``, ``dA_nu/dt = d_mu F_{mu nu}``, so that ``sqrt(8t)``
  is the smoothing radius in lattice units for both groups.

The flow is the steepest descent of the Wilson action: ``dS/dt = -sum_a (d_a S)^2 <= 0``.

RK3 step (Luscher eqs. C.1-C.3), ``Z_i = eps Z(W_i)``::

    W_0 = V_t
    W_1 = exp(Z_0 / 4) W_0
    W_2 = exp(8/9 Z_1 - 17/36 Z_0) W_1
    V_{t+eps} = exp(3/4 Z_2 - 8/9 Z_1 + 17/36 Z_0) W_2

The global error at fixed flow time is ``O(eps^3)``.

Energy density (Luscher's ``E = -(1/2) sum_{mu,nu} tr G_{mu nu} G_{mu nu}``, lattice units), from
:mod:`latticekit.observables`: plaquette ``E = 2 sum_{mu<nu} Re tr(1 - P_{mu nu})`` and clover
``E = -sum_{mu<nu} tr F_{mu nu}^2``, site averages. U(1) is treated as a 1x1 matrix group with
``G = i f`` (so ``E = sum_{mu<nu} f^2``, twice the Maxwell ``(1/4) f f``); the dimensionless
``t^2 E`` is reported for both. Topological charge after flow: 2D U(1) geometric definition, 4D
clover definition (:func:`latticekit.observables.topological_charge_clover`).

Examples
--------
>>> import latticekit as lk
>>> from latticekit.observables.gradient_flow import wilson_flow
>>> lat = lk.Lattice((6, 6)); G = lk.SU(2)
>>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0), batch_shape=(2,))
>>> V, hist = wilson_flow(U, G, lat, t=0.5, eps=0.05)
>>> hist["t"].shape, hist["E_plaquette"].shape
((11,), (11, 2))
>>> bool((hist["E_plaquette"][-1] < hist["E_plaquette"][0]).all())
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

from latticekit.actions import wilson_gauge_force
from latticekit.backends import array_namespace, device
from latticekit.gauge import check_gauge_field
from latticekit.groups import Group, SUGroup, U1Group
from latticekit.lattice import Lattice

from .plaquette import energy_density_plaquette
from .topology import energy_density_clover, topological_charge_clover, topological_charge_u1_2d

__all__ = [
    "flow_beta",
    "flow_generator",
    "flow_observables",
    "wilson_flow",
    "wilson_flow_step",
]


def _is_real(v: Any) -> bool:
    """A real number, NumPy scalars included (not a bool)."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check(U: Any, group: Group, lattice: Lattice) -> None:
    if not isinstance(group, (U1Group, SUGroup)):
        raise TypeError(f"group={group!r}: expected latticekit.U1 or an SU(N) group")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd < 2:
        raise ValueError(f"lattice={lattice}: the Wilson flow needs at least 2 dimensions")
    check_gauge_field(U, group, lattice)


def flow_beta(group: Group) -> float:
    """The Wilson coupling whose force generates the flow: ``2N`` for SU(N), ``1`` for U(1).

    Examples
    --------
    >>> import latticekit as lk
    >>> flow_beta(lk.SU(3)), flow_beta(lk.U1)
    (6.0, 1.0)
    """
    if isinstance(group, SUGroup):
        return 2.0 * group.N
    if isinstance(group, U1Group):
        return 1.0
    raise TypeError(f"group={group!r}: expected latticekit.U1 or an SU(N) group")


def flow_generator(U: Any, group: Group, lattice: Lattice) -> Any:
    """``Z(U) = -F(U)`` with ``F`` the Wilson force at ``beta = flow_beta(group)`` (algebra field like ``U``).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> Z = flow_generator(lk.gauge.cold_gauge_field(lk.U1, lat), lk.U1, lat)
    >>> float(abs(Z).max())
    0.0
    """
    return -wilson_gauge_force(U, flow_beta(group), group, lattice)


def _exp_mul(X: Any, W: Any, group: Group, nd: int) -> Any:
    return group.exp_mul(X, W, nd=nd)


def wilson_flow_step(U: Any, group: Group, lattice: Lattice, eps: float) -> Any:
    """One RK3 step of the Wilson flow (Luscher eqs. C.1-C.3) of size ``eps``.

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)``.
    group, lattice
        The gauge group and the lattice.
    eps : float
        Flow-time step (``> 0``; ``eps < 0`` integrates backwards, used in tests only).

    Returns
    -------
    array
        ``V_{t + eps}``.

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4)); G = lk.SU(3)
    >>> U = lk.gauge.cold_gauge_field(G, lat)
    >>> float(abs(wilson_flow_step(U, G, lat, 0.1) - U).max())
    0.0
    """
    _check(U, group, lattice)
    if not _is_real(eps) or not math.isfinite(eps) or eps == 0:
        raise ValueError(f"eps={eps!r}: expected a finite non-zero flow-time step")
    eps = float(eps)
    nd = lattice.nd
    Z0 = eps * flow_generator(U, group, lattice)
    W1 = _exp_mul(0.25 * Z0, U, group, nd)
    Z1 = eps * flow_generator(W1, group, lattice)
    W2 = _exp_mul((8.0 / 9.0) * Z1 - (17.0 / 36.0) * Z0, W1, group, nd)
    Z2 = eps * flow_generator(W2, group, lattice)
    return _exp_mul(0.75 * Z2 - (8.0 / 9.0) * Z1 + (17.0 / 36.0) * Z0, W2, group, nd)


def flow_observables(U: Any, group: Group, lattice: Lattice, t: float = 0.0) -> dict[str, Any]:
    """Standard measurements on a (flowed) field, each of shape ``(*B,)``.

    Keys: ``E_plaquette``, ``E_clover``, ``t2E_plaquette``, ``t2E_clover`` (with the given flow time
    ``t``), and ``Q`` for 2D U(1) (geometric) and 4D fields (clover).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> obs = flow_observables(lk.gauge.cold_gauge_field(lk.U1, lat, (3,)), lk.U1, lat, t=1.0)
    >>> sorted(obs)
    ['E_clover', 'E_plaquette', 'Q', 't2E_clover', 't2E_plaquette']
    """
    _check(U, group, lattice)
    e_p = energy_density_plaquette(U, group, lattice)
    e_c = energy_density_clover(U, group, lattice)
    out = {"E_plaquette": e_p, "E_clover": e_c, "t2E_plaquette": (t * t) * e_p, "t2E_clover": (t * t) * e_c}
    if isinstance(group, U1Group) and lattice.nd == 2:
        out["Q"] = topological_charge_u1_2d(U, lattice)
    elif lattice.nd == 4:
        out["Q"] = topological_charge_clover(U, group, lattice)
    return out


def _measurement(measure: Callable[[Any, float], Any] | str | None, group: Group,
                 lattice: Lattice) -> Callable[[Any, float], Any] | None:
    """The ``measure`` argument of the flows as a callable ``(V, t)`` (or None)."""
    if measure == "default":
        def meas(V: Any, tt: float) -> Any:
            return flow_observables(V, group, lattice, tt)
        return meas
    if measure is None:
        return None
    if callable(measure):
        user = measure

        def checked(V: Any, tt: float) -> Any:
            # a measurement returning Python floats failed only when the history was stacked, after the whole flow
            # ("arrays from different or unsupported array libraries: []"; user probe): numbers become 0-d arrays of
            # V's library, anything else but an array (or a dict of them) is refused at the first measurement
            return _as_measured(user(V, tt), V)
        return checked
    raise ValueError(f"measure={measure!r}: expected 'default', a callable measure(V, t) or None")


def _as_measured(value: Any, V: Any) -> Any:
    """A user measurement as arrays of ``V``'s library: numbers become 0-d arrays of its real precision."""
    if isinstance(value, dict):
        return {k: _as_measured(v, V) for k, v in value.items()}
    if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, numbers.Number):
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        xp = array_namespace(V)
        rt = xp.float32 if V.dtype in (xp.float32, xp.complex64) else xp.float64
        return xp.asarray(float(value), dtype=rt, device=device(V))
    raise TypeError(f"measure returned {type(value).__name__} {value!r}; expected an array, a real number or a dict "
                    f"of them")


def _history(U: Any, times: list[float], rec: list[Any]) -> dict[str, Any]:
    """``{"t": times}`` in ``U``'s namespace and real precision, plus the stacked measurements ``rec``."""
    xp = array_namespace(U)
    rt = xp.float32 if U.dtype in (xp.float32, xp.complex64) else xp.float64
    history: dict[str, Any] = {"t": xp.asarray(times, dtype=rt, device=device(U))}
    if rec:
        st = _stack(rec)
        if isinstance(st, dict):
            history.update(st)
        else:
            history["values"] = st
    return history


def _stack(items: list[Any]) -> Any:
    if isinstance(items[0], dict):
        return {k: _stack([it[k] for it in items]) for k in items[0]}
    xp = array_namespace(*items)
    return xp.stack(items, axis=0)


def wilson_flow(U: Any, group: Group, lattice: Lattice, t: float, *, eps: float = 0.01,
                measure: Callable[[Any, float], Any] | str | None = "default",
                every: int = 1) -> tuple[Any, dict[str, Any]]:
    """Flow ``U`` to flow time ``t`` with RK3 steps of (at most) ``eps``.

    The number of steps is ``n = ceil(t / eps)`` and the step used is ``t / n``.

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)`` (batched).
    group, lattice
        The gauge group and the lattice.
    t : float
        Final flow time (``>= 0``).
    eps : float
        Largest step size.
    measure : "default", callable or None
        ``"default"``: :func:`flow_observables`; a callable ``measure(V, t)`` returning an array or a
        dict of arrays; None: no measurements.
    every : int
        Measure at ``t = 0`` and after every ``every``-th step (and always at the final time).

    Returns
    -------
    V : array
        The flowed field ``V_t``.
    history : dict
        ``"t"``: array of the measurement times (same backend as ``U``); plus the stacked measurements
        (each ``(n_meas, *B)`` for the default observables).

    Examples
    --------
    >>> import latticekit as lk
    >>> lat = lk.Lattice((4, 4))
    >>> U = lk.gauge.random_gauge_field(lk.U1, lat, lk.backends.rng(3))
    >>> V, h = wilson_flow(U, lk.U1, lat, t=1.0, eps=0.1, every=5)
    >>> [round(float(x), 6) for x in h["t"]]
    [0.0, 0.5, 1.0]
    """
    _check(U, group, lattice)
    if not _is_real(t) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t={t!r}: expected a finite flow time >= 0")
    if not _is_real(eps) or not math.isfinite(eps) or not eps > 0:   # eps = inf made no step at all
        raise ValueError(f"eps={eps!r}: expected a finite positive step size")
    t, eps = float(t), float(eps)
    if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:   # NumPy ints too, not True
        raise ValueError(f"every={every!r}: expected an integer >= 1")
    every = int(every)
    meas = _measurement(measure, group, lattice)
    n = max(int(math.ceil(t / eps - 1e-12)), 0)
    h = t / n if n else 0.0
    times: list[float] = []
    rec: list[Any] = []
    if meas is not None:
        times.append(0.0)
        rec.append(meas(U, 0.0))
    V = U
    for i in range(1, n + 1):
        V = wilson_flow_step(V, group, lattice, h)
        if meas is not None and (i % every == 0 or i == n):
            times.append(i * h)
            rec.append(meas(V, i * h))
    return V, _history(U, times, rec)
