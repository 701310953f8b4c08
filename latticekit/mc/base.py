"""What every Monte Carlo sampler shares: ``step(x) -> (x, info)`` and ``run(x, n, measure)``.

A *target* is any object with ``action(x) -> (*B,)`` and ``force(x)`` (the Lie-derivative force
``F = sum_a (d_a S) T_a``, or ``dS/dx`` for real fields), for example
``latticekit.actions.WilsonGaugeAction`` or ``latticekit.actions.Phi4Action``.

Examples
--------
>>> import latticekit as lk
>>> from latticekit.mc import HMC, GaussianAction, RealField
>>> target = GaussianAction(mass2=1.0, event_ndim=1)
>>> hmc = HMC(target, RealField(1), rng=lk.backends.rng(0), step_size=0.2, n_steps=5)
>>> x, hist = hmc.run(lk.backends.rng(1).normal((8, 4)), 10, measure=lambda x: (x * x).mean(axis=-1))
>>> hist.measurements.shape, hist.accepted.shape
((10, 8), (10, 8))
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

from latticekit.backends import array_namespace, to_numpy

__all__ = ["MCHistory", "Sampler", "StepInfo"]


def _is_int(v: Any) -> bool:
    """An integer option: a Python or NumPy integer (``numbers.Integral``), not a bool."""
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_bool(v: Any) -> bool:
    """A Python or NumPy bool (checked by name: the core tier names no array library, DESIGN.md)."""
    return isinstance(v, bool) or type(v).__name__ == "bool_"


def _step_size(v: Any, name: str = "step_size", *, arrays: bool = False) -> Any:
    """A finite positive real step size (not a bool or a string); with ``arrays`` a real floating 0-d array
    (a torch tensor, e.g. requiring grad) is returned unchanged after the same value checks."""
    is_array = hasattr(v, "shape") and hasattr(v, "dtype") and not isinstance(v, numbers.Number) and not _is_bool(v)
    if is_array:
        xp = array_namespace(v)
        if not (arrays and tuple(v.shape) == () and xp.isdtype(v.dtype, "real floating")):
            raise TypeError(f"{name}: expected a finite positive real number, got an array of shape {tuple(v.shape)} "
                            f"and dtype {v.dtype}")
        x = float(to_numpy(v))            # to_numpy detaches a torch tensor that requires grad
    elif _is_bool(v) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name}={v!r}: expected a finite positive real number, got {type(v).__name__}")
    else:
        x = float(v)
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name}={v!r}: expected a finite positive real number")
    return v if is_array else x


@dataclass
class StepInfo:
    """What one sampler step reports.

    Attributes
    ----------
    accepted : array of bool, shape ``B``, or None
        Metropolis decision per chain (None for rejection-free updates: heatbath, Langevin).
    dH : array, shape ``B``, or None
        Energy violation ``H(end) - H(start)`` of the proposal per chain (HMC).
    extras : dict
        Sampler-specific diagnostics (e.g. ``"reunitarized"``, ``"force_evaluations"``,
        ``"max_defect"``, ``"heatbath_rounds"``).
    """

    accepted: Any = None
    dH: Any = None
    extras: dict = field(default_factory=dict)

    @property
    def acceptance(self) -> float:
        """Fraction of chains that accepted (1.0 when there is no accept/reject step)."""
        if self.accepted is None:
            return 1.0
        xp = array_namespace(self.accepted)
        return float(xp.mean(xp.astype(self.accepted, xp.float64)))

    @property
    def exp_minus_dH(self) -> float:
        """``mean over chains of exp(-dH)`` (its expectation is exactly 1 for a reversible, area-preserving
        integrator in equilibrium; nan without dH)."""
        if self.dH is None:
            return math.nan
        xp = array_namespace(self.dH)
        return float(xp.mean(xp.exp(-self.dH)))


@dataclass
class MCHistory:
    """Time series recorded by :meth:`Sampler.run`.

    Attributes
    ----------
    accepted : array (n, *B) of bool or None
    dH : array (n, *B) or None
    measurements : array (n_meas, ...), dict of such arrays, list, or None
        The stacked results of ``measure(x)`` (arrays are stacked along a new first axis; dicts of
        arrays are stacked per key; anything else is kept as a list).
    n_steps : int
        Number of sampler steps made.
    """

    accepted: Any = None
    dH: Any = None
    measurements: Any = None
    n_steps: int = 0

    @property
    def acceptance_rate(self) -> float:
        """Mean acceptance over steps and chains (1.0 without accept/reject)."""
        if self.accepted is None:
            return 1.0
        xp = array_namespace(self.accepted)
        return float(xp.mean(xp.astype(self.accepted, xp.float64)))

    def exp_minus_dH(self) -> tuple[float, float]:
        """``<exp(-dH)>`` over all steps and chains with a naive standard error (``(nan, nan)`` without dH).

        Successive trajectories of one chain are correlated; the error is indicative only (use
        ``latticekit.analysis`` on ``exp(-dH)`` averaged over chains for a careful error).
        """
        if self.dH is None:
            return math.nan, math.nan
        xp = array_namespace(self.dH)
        e = xp.exp(-xp.reshape(self.dH, (-1,)))
        n = int(e.shape[0])
        m = float(xp.mean(e))
        s = float(xp.std(e, correction=1)) if n > 1 else math.nan
        return m, s / math.sqrt(n)


def _stack(items: list[Any]) -> Any:
    if not items:
        return None
    first = items[0]
    if isinstance(first, dict):
        return {k: _stack([it[k] for it in items]) for k in first}
    if isinstance(first, (int, float, bool)):
        return list(items)
    try:
        xp = array_namespace(*items)
    except Exception:  # not arrays: keep the list
        return list(items)
    if not hasattr(first, "shape"):
        return list(items)
    return xp.stack(items, axis=0)


#: :meth:`Sampler.run` warns when no proposal of this many steps or more was accepted
NO_ACCEPTANCE_STEPS = 5


def _any(accepted: Any) -> bool:
    if isinstance(accepted, list):
        return any(bool(a) for a in accepted)
    xp = array_namespace(accepted)
    return bool(xp.any(xp.astype(accepted, xp.bool) if accepted.dtype != xp.bool else accepted))


class Sampler:
    """Base class: subclasses implement :meth:`step`; :meth:`run` loops and records."""

    def step(self, x: Any) -> tuple[Any, StepInfo]:
        """One update of every chain in ``x``; returns the new field and a :class:`StepInfo`."""
        raise TypeError(f"{type(self).__name__} does not implement step()")

    def run(self, x: Any, n: int, measure: Callable[[Any], Any] | None = None, every: int = 1,
            callback: Callable[[int, Any, StepInfo], None] | None = None) -> tuple[Any, MCHistory]:
        """Make ``n`` steps from ``x``.

        Parameters
        ----------
        x : array
            Initial batch of configurations.
        n : int
            Number of steps (>= 0).
        measure : callable, optional
            ``measure(x)`` is called after every ``every``-th step; its results are stacked into
            :attr:`MCHistory.measurements`.
        every : int
            Measurement interval.
        callback : callable, optional
            ``callback(i, x, info)`` after every step (progress bars, checkpoints).

        Returns
        -------
        x : array
            The final configurations.
        history : MCHistory
        """
        if not _is_int(n) or n < 0:
            raise ValueError(f"n={n!r}: expected a non-negative number of steps")
        if not _is_int(every) or every < 1:
            raise ValueError(f"every={every!r}: expected an integer >= 1")
        acc: list[Any] = []
        dh: list[Any] = []
        meas: list[Any] = []
        for i in range(n):
            x, info = self.step(x)
            if info.accepted is not None:
                acc.append(info.accepted)
            if info.dH is not None:
                dh.append(info.dH)
            if measure is not None and (i + 1) % every == 0:
                meas.append(measure(x))
            if callback is not None:
                callback(i, x, info)
        accepted = _stack(acc)
        if n >= NO_ACCEPTANCE_STEPS and accepted is not None and not _any(accepted):
            # every chain stayed at its start (a step size far too large for the action: dH of 10 or more)
            warnings.warn(f"{type(self).__name__}.run: no proposal was accepted in {n} steps of any chain; the chains "
                          "never left x, so nothing measured is a Monte Carlo estimate: reduce the step size",
                          RuntimeWarning, stacklevel=2)
        return x, MCHistory(accepted=accepted, dH=_stack(dh), measurements=_stack(meas), n_steps=n)
