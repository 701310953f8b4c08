"""phi^4 theory in the hopping form, any number of dimensions (``kind = "phi4"``).

``S = sum_x [(1 - 2 lam) phi^2 + lam phi^4 - 2 kappa sum_mu phi_x phi_{x+mu}]``
(:class:`latticekit.actions.Phi4Action`).

* ``[action]``: ``kappa`` (``0 <= kappa <= 10``), ``lam`` (``0 <= lam <= 1e4``); the free field
  (``lam = 0``) is normalisable only for ``kappa < 1/(2 Nd)`` (positive mass squared), which is checked.
  The upper bounds are typo guards far beyond any phase of interest.
* Observables: ``magnetization`` M (site average), ``abs_magnetization`` |M|, ``m2`` = M^2,
  ``action_density`` S/V, the zero-momentum time-slice correlator ``C_t0 .. C_t{L0/2}``; derived:
  ``susceptibility`` ``chi = V <M^2>`` (the full susceptibility; for the symmetric phase and the free field
  ``<M> = 0``, so it is also the connected one). The flow job used to call it ``chi``.
* Exact values: ``<M> = 0`` (the action is even in phi); the free field (``lam = 0``, ``kappa > 0``):
  ``susceptibility`` and ``C_t`` (:mod:`latticekit.exact`).
* Sampler: ``hmc``. Flow-model families: ``affine`` (real NVP), ``spline`` (rational-quadratic).

Examples
--------
>>> th = Phi4Theory((4, 4), Phi4Params(kappa=0.2, lam=0.0))
>>> th.observable_names()[:4], list(th.derived())
(['magnetization', 'abs_magnetization', 'm2', 'action_density'], ['susceptibility'])
>>> round(th.exact()["susceptibility"], 6)
2.5
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .base import Derived, Measurement, Theory
from .samplers import HMCSettings, build_hmc

__all__ = ["Phi4Params", "Phi4Theory"]


@dataclass
class Phi4Params:
    """``[action]`` keys of ``kind = "phi4"``."""

    kappa: float = setting(0.25, ge=0.0, le=10.0, doc="hopping parameter")
    lam: float = setting(0.5, ge=0.0, le=1e4, doc="quartic coupling (hopping form)")


class Phi4Theory(Theory):
    """phi^4 in the hopping form (see the module docstring)."""

    kind = "phi4"
    Params = Phi4Params
    samplers = {"hmc": HMCSettings}
    reference_sampler = "hmc"
    flow_families = ("affine", "spline", "superres", "superres_uv", "cnf")

    @classmethod
    def check(cls, params: Any, shape: Sequence[int]) -> None:
        nd = len(shape)
        if params.lam == 0 and params.kappa >= 1 / (2 * nd):
            raise ConfigError(f"action.kappa: the free field (action.lam = 0) needs kappa < 1/(2 Nd) = {1 / (2 * nd):g} "
                              f"on a {nd}D lattice (positive mass squared), got {params.kappa}")

    def make_action(self) -> Any:
        from latticekit.actions import Phi4Action

        return Phi4Action(self.lattice, self.params.kappa, self.params.lam)

    def initial_field(self, n: int, rng: Any, *, backend: str | None = None, device: Any = None) -> Any:
        """Small Gaussian noise (std 0.1) from ``rng``."""
        return rng.normal((n,) + self.lattice.shape, std=0.1)

    def sampler(self, algorithm: str, settings: Any = None, *, rng: Any) -> Any:
        if algorithm != "hmc":
            raise ValueError(f"algorithm={algorithm!r}: expected 'hmc'")
        return build_hmc(self.action, settings if settings is not None else HMCSettings(), rng)

    def field_bytes(self) -> int:
        """One float64 per site."""
        return 8 * int(self.lattice.volume)

    def describe(self) -> str:
        return f"phi^4 (kappa={self.params.kappa}, lambda={self.params.lam})"

    def ensemble_params(self) -> dict[str, Any]:
        return {"kappa": self.params.kappa, "lam": self.params.lam}

    # -- observables ---------------------------------------------------------------------------------
    def measurements(self) -> list[Measurement]:
        from latticekit import observables as obs
        from latticekit.backends import array_namespace

        lat = self.lattice
        V = lat.volume
        L0 = lat.shape[0]
        corr = tuple(f"C_t{t}" for t in range(L0 // 2 + 1))

        def magnetization(x: Any) -> dict[str, Any]:
            M = obs.magnetization(x, lat)
            return {"magnetization": M, "abs_magnetization": array_namespace(M).abs(M), "m2": M * M}

        def correlator(x: Any) -> dict[str, Any]:
            C = obs.zero_momentum_correlator(x, lat, mu=0)  # (B, L0)
            return {n: C[:, t] for t, n in enumerate(corr)}

        return [Measurement(("magnetization", "abs_magnetization", "m2"), magnetization),
                Measurement(("action_density",), lambda x: {"action_density": self.action.action(x) / V}),
                Measurement(corr, correlator)]

    def derived(self) -> dict[str, Derived]:
        V = self.lattice.volume
        # chi = V <M^2> (full); for the free theory <M> = 0 so this is also the connected one
        return {"susceptibility": Derived(("m2",), lambda v: [v["m2"]], lambda a: V * a[0],
                                          "susceptibility V <M^2>", per_config=lambda v: V * v["m2"])}

    def summary_observables(self) -> list[str]:
        return ["abs_magnetization", "susceptibility", "magnetization", "action_density"]

    # -- exact results -------------------------------------------------------------------------------
    def exact(self) -> dict[str, float]:
        from latticekit import backends, exact

        p, shape = self.params, self.lattice.shape
        out: dict[str, float] = {}
        if p.lam == 0.0 and p.kappa > 0:
            out["susceptibility"] = float(exact.free_scalar_susceptibility(shape, kappa=p.kappa))
        out["magnetization"] = 0.0
        if p.lam == 0.0 and p.kappa > 0:
            C = backends.to_numpy(exact.free_scalar_timeslice_correlator(shape, kappa=p.kappa, backend="numpy"))
            for t in range(shape[0] // 2 + 1):
                out[f"C_t{t}"] = float(C[t])
        return out
