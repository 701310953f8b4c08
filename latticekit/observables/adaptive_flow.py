"""Wilson flow with an adaptive step size (Fritzsch & Ramos, JHEP 10 (2013) 008, arXiv:1301.4388, App. A).

Every step computes Luscher's third-order RK3 update ``V`` (:func:`wilson_flow_step`, eqs. C.1-C.3 of
arXiv:1006.4518) and, from the same two generators, a second-order estimate

    W_1 = exp(Z_0 / 4) V_t,          V' = exp(2 Z_1 - Z_0) V_t,          Z_i = eps Z(W_i),

(the two-stage Runge-Kutta method with nodes 0 and 1/4: weights b_0 + b_1 = 1 and b_1 / 4 = 1/2 give
b_0 = -1, b_1 = 2; commutator-free to second order, so its local error is O(eps^3)). The distance

    d = max_{configurations, x, mu} ||V_mu(x) - V'_mu(x)||_F / N        (U(1): |e^{i theta} - e^{i theta'}|)

estimates the local error of the *second-order* step, O(eps^3); a step is accepted when ``d <= delta`` and
the next step is ``eps * 0.95 * (delta / d)^(1/3)`` (at most 5 times larger; a rejected step is retried with
that size). The RK3 field is kept, so the local error actually made is O(eps^4), below ``delta``. One step
size serves the whole batch (the largest ``d``), so every configuration is measured at the same flow times.
Early in the flow the field is rough and the steps are small; as it smooths the generator ``Z`` falls and
the steps grow, so a flow to large ``t`` costs fewer force evaluations than a fixed step small enough for
``t = 0`` (SU(2) 6x6 from a Haar-random start to ``t = 4``: steps from 0.01 to 0.1, 96 instead of 400).

Steps are shortened to land exactly on the requested measurement ``times``; the step size proposed before
such a landing is carried on after it.

Examples
--------
>>> import latticekit as lk
>>> lat = lk.Lattice((6, 6)); G = lk.SU(2)
>>> U = lk.gauge.random_gauge_field(G, lat, lk.backends.rng(0), batch_shape=(2,))
>>> V, h = wilson_flow_adaptive(U, G, lat, 2.0, delta=1e-5, times=[0.5, 1.0])
>>> [float(x) for x in h["t"]], h["E_plaquette"].shape
([0.0, 0.5, 1.0, 2.0], (4, 2))
>>> h["n_steps"] < 200      # fixed steps of the first step size would need more than 200
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Sequence

from latticekit.backends import array_namespace, to_numpy
from latticekit.groups import Group, U1Group
from latticekit.lattice import Lattice

from .gradient_flow import _check, _exp_mul, _history, _is_real, _measurement, flow_generator

__all__ = ["wilson_flow_adaptive"]

#: the step factor's safety margin and its bounds per step (standard embedded-RK practice)
SAFETY, MAX_GROWTH, MIN_SHRINK = 0.95, 5.0, 0.1
#: ``delta`` must lie in ``[FLOOR_EPS * machine epsilon, MAX_DELTA)``: float32 fields stalled at 1e-7 (d's rounding
#: floor; 5e-7 still worked on a 4x4 SU(2) field), and a delta near 2 (the largest d) controls nothing
FLOOR_EPS, MAX_DELTA = 10.0, 0.1


def _rk3_and_second_order(U: Any, group: Group, lattice: Lattice, eps: float) -> tuple[Any, Any]:
    """The RK3 step (exactly the operations of :func:`wilson_flow_step`) and the embedded second-order one."""
    nd = lattice.nd
    Z0 = eps * flow_generator(U, group, lattice)
    W1 = _exp_mul(0.25 * Z0, U, group, nd)
    Z1 = eps * flow_generator(W1, group, lattice)
    V2 = _exp_mul(2.0 * Z1 - Z0, U, group, nd)          # b_0 = -1, b_1 = 2 at the nodes 0 and 1/4
    W2 = _exp_mul((8.0 / 9.0) * Z1 - (17.0 / 36.0) * Z0, W1, group, nd)
    Z2 = eps * flow_generator(W2, group, lattice)
    V3 = _exp_mul(0.75 * Z2 - (8.0 / 9.0) * Z1 + (17.0 / 36.0) * Z0, W2, group, nd)
    return V3, V2


def _distance(V: Any, W: Any, group: Group, lattice: Lattice) -> float:
    """``max ||V - W||_F / N`` over every link of every configuration (U(1): ``|e^{i a} - e^{i b}|``)."""
    xp = array_namespace(V)
    if isinstance(group, U1Group):
        d = 2.0 * xp.abs(xp.sin(0.5 * (V - W)))
    else:
        diff = V - W
        k = diff.ndim - lattice.nd - 2
        d = xp.sqrt(xp.sum(xp.real(diff * xp.conj(diff)), axis=(k, k + 1))) / group.N
    return float(to_numpy(xp.max(d)))


def _check_times(times: Sequence[float] | None, t: float) -> list[float]:
    if times is None:
        return [t] if t > 0 else []
    try:
        ts = [float(x) for x in times]
    except (TypeError, ValueError):
        raise ValueError(f"times={times!r}: expected a sequence of flow times") from None
    # a last time within rounding of t is t (times=[0.3] with t = 0.1 * 3 measured twice, after a step of 6e-17; the
    # landing of the steps allows the same 1e-12; user probe)
    if ts and math.isfinite(ts[-1]) and t > 0 and abs(ts[-1] - t) <= 1e-12 * t:
        ts[-1] = t
    if any(not math.isfinite(x) or x <= 0 or x > t for x in ts) or any(b <= a for a, b in zip(ts, ts[1:])):
        raise ValueError(f"times={list(times)!r}: expected strictly increasing flow times in (0, t={t!r}]")
    return ts if ts and ts[-1] == t else ts + ([t] if t > 0 else [])


def wilson_flow_adaptive(U: Any, group: Group, lattice: Lattice, t: float, *, delta: float = 1e-5,
                         eps0: float = 0.01, eps_max: float = 1.0,
                         measure: Callable[[Any, float], Any] | str | None = "default",
                         times: Sequence[float] | None = None, max_steps: int = 100_000) -> tuple[Any, dict[str, Any]]:
    """Flow ``U`` to flow time ``t`` with RK3 steps whose size is set by the local error (module docstring).

    Parameters
    ----------
    U : array
        Gauge field ``(*B, Nd, *G, *L)`` (batched; one step size for the batch).
    group, lattice
        The gauge group and the lattice.
    t : float
        Final flow time (``>= 0``).
    delta : float
        Bound on the distance ``d`` between the RK3 and the second-order update of one step, in
        ``[10 eps, 0.1)`` with ``eps`` the field's machine epsilon (float32: ``delta >= 1.2e-6``); the paper's
        examples use 1e-5 to 1e-8 in double precision.
    eps0 : float
        First trial step (``> 0``; rejected and reduced when too large).
    eps_max : float
        Largest step (``> 0``).
    measure : "default", callable or None
        As for :func:`wilson_flow`: :func:`flow_observables`, ``measure(V, t)``, or nothing.
    times : sequence of float, optional
        Flow times in ``(0, t]`` (strictly increasing) at which to measure besides ``0`` and ``t``; the steps
        land on them exactly.
    max_steps : int
        Bound on the steps tried (accepted and rejected): a flow that needs more stops with an error.

    Returns
    -------
    V : array
        The flowed field ``V_t``.
    history : dict
        ``"t"``: the measurement times (same backend as ``U``); the stacked measurements as in
        :func:`wilson_flow`; ``"n_steps"``, ``"n_rejected"`` (int): steps accepted and rejected (three force
        evaluations each); ``"step_sizes"`` (list of float): every accepted step, in order.

    Raises
    ------
    ValueError
        Before any work: ``t``, ``delta``, ``eps0``, ``eps_max``, ``max_steps`` or ``times`` out of range,
        ``measure`` of another kind.
    RuntimeError
        ``max_steps`` steps did not reach ``t``.
    """
    _check(U, group, lattice)
    if not _is_real(t) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t={t!r}: expected a finite flow time >= 0")
    for name, v in (("delta", delta), ("eps0", eps0), ("eps_max", eps_max)):
        if not _is_real(v) or not math.isfinite(v) or not v > 0:
            raise ValueError(f"{name}={v!r}: expected a finite positive number")
    if delta >= MAX_DELTA:   # d of two unitary links is at most 2: a delta near that accepts every step
        raise ValueError(f"delta={delta!r}: expected a bound below {MAX_DELTA} on the per-step link distance (the "
                         "paper uses 1e-5 to 1e-8)")
    xp = array_namespace(U)
    floor = FLOOR_EPS * float(xp.finfo(xp.float32 if U.dtype in (xp.float32, xp.complex64) else xp.float64).eps)
    if delta < floor:   # below it, rounding keeps d above delta and the steps shrink without end
        raise ValueError(f"delta={delta!r}: below what a {U.dtype} field resolves ({FLOOR_EPS:g} x its machine "
                         f"epsilon = {floor:.2g}); use a larger delta or a double-precision field")
    if isinstance(max_steps, bool) or not isinstance(max_steps, numbers.Integral) or max_steps < 1:
        raise ValueError(f"max_steps={max_steps!r}: expected an integer >= 1")
    t, delta, eps_max, max_steps = float(t), float(delta), float(eps_max), int(max_steps)
    targets = _check_times(times, t)
    meas = _measurement(measure, group, lattice)
    rec_t: list[float] = []
    rec: list[Any] = []
    if meas is not None:
        rec_t.append(0.0)
        rec.append(meas(U, 0.0))
    V, now, eps = U, 0.0, min(float(eps0), eps_max)
    steps: list[float] = []
    tried = 0
    for target in targets:
        while now < target:
            if tried >= max_steps:
                raise RuntimeError(f"wilson_flow_adaptive: {max_steps} steps (max_steps) reached flow time {now:.6g} "
                                   f"of {t!r}, step {eps:.3g}, {tried - len(steps)} rejected; raise max_steps or "
                                   f"delta={delta!r}")
            # land on the target; a step within rounding of it is taken to it exactly
            landing = now + eps >= target * (1 - 1e-12)
            h = target - now if landing else eps
            tried += 1
            V3, V2 = _rk3_and_second_order(V, group, lattice, h)
            d = _distance(V3, V2, group, lattice)
            factor = MAX_GROWTH if d == 0 else min(MAX_GROWTH, max(MIN_SHRINK, SAFETY * (delta / d) ** (1 / 3)))
            if not math.isfinite(d) or d > delta:
                eps = h * (MIN_SHRINK if not math.isfinite(d) else factor)
                continue
            V = V3
            steps.append(h)
            now = target if landing else now + h
            # after a shortened landing step, keep the proposal of the step it replaced if that is larger
            eps = min(eps_max, max(h * factor, eps if landing else 0.0))
        if meas is not None:
            rec_t.append(target)
            rec.append(meas(V, target))
    history = _history(U, rec_t, rec)
    history.update(n_steps=len(steps), n_rejected=tried - len(steps), step_sizes=steps)
    return V, history
