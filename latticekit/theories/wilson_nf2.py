"""Wilson gauge theory with two flavours of dynamical Wilson fermions (``kind = "wilson_nf2"``).

The gauge part is :mod:`latticekit.theories.wilson`; the fermions enter through pseudofermions,
``S_pf = phi^dag (D D^dag)^{-1} phi`` (docs/fermions.md), sampled by :class:`latticekit.mc.Nf2HMC`
(the only sampler: the determinant has no heatbath).

* ``[action]``: ``group``, ``beta`` as for ``wilson``; ``kappa`` (the Wilson hopping parameter,
  ``0 < kappa <= 1``, i.e. bare mass ``m0 = 1/(2 kappa) - Nd >= 0.5 - Nd``), ``even_odd``
  (even/odd preconditioned pseudofermions, even extents), ``hasenbusch_mus`` (strictly increasing
  positive shifts), ``cg_tol`` (heatbath, Metropolis and measurements), ``cg_tol_md`` (MD forces),
  ``cg_maxiter``. The lattice is 2D or 4D with ``L_0 >= 2`` (antiperiodic time direction).
* ``[sampler]``: ``algorithm = "hmc"`` with ``step_size``, ``n_steps``, ``integrator``, ``n_inner``.
* Observables: those of the gauge theory, and the pion correlator ``C_pi_t0 .. C_pi_t{L0/2}``
  (:func:`latticekit.observables.pion_correlator`, point source at the origin; by LU of the dense even/odd matrix
  on small lattices, else by CG to ``cg_tol``; one solve per batch for all ``C_pi_t``).
* Exact values: none, apart from ``<Q> = 0`` (2D U(1)) by parity.
* Flow-model families: ``pseudofermion`` (joint gauge x pseudofermion models, arXiv:2207.08945;
  :mod:`latticekit.app.flows.pseudofermion_models`) and ``qcd4d`` (the 4D QCD model of arXiv:2208.03832;
  :mod:`latticekit.app.flows.qcd4d_models`).

Examples
--------
>>> th = WilsonNf2Theory((4, 4), WilsonNf2Params(kappa=0.2))
>>> th.observable_names()
['plaquette', 'topological_charge', 'C_pi_t0', 'C_pi_t1', 'C_pi_t2']
>>> th.exact()
{'topological_charge': 0.0}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from latticekit.utils.schema import ConfigError, setting

from .base import Measurement
from .samplers import Nf2HMCSettings
from .wilson import WilsonParams, WilsonTheory

__all__ = ["WilsonNf2Params", "WilsonNf2Theory"]


def _increasing(mus: list[float]) -> str | None:
    if any(b <= a for a, b in zip(mus[:-1], mus[1:])):
        return f"expected strictly increasing positive shifts, got {mus!r}"
    return None


@dataclass
class WilsonNf2Params(WilsonParams):
    """``[action]`` keys of ``kind = "wilson_nf2"``."""

    kappa: float = setting(0.25, gt=0.0, le=1.0, doc="Wilson hopping parameter")
    even_odd: bool = setting(False, doc="even/odd preconditioned pseudofermions (eq. 35)")
    hasenbusch_mus: list[float] = setting([], gt=0.0, le=1e3, check=_increasing,
                                          doc="strictly increasing Hasenbusch shifts (eq. 38)")
    cg_tol: float = setting(1e-10, gt=0.0, lt=1.0, doc="CG residual of heatbath, Metropolis and measurements")
    cg_tol_md: float = setting(1e-8, gt=0.0, lt=1.0, doc="CG residual of the MD forces")
    cg_maxiter: int = setting(2000, ge=1, doc="CG iteration limit")


class WilsonNf2Theory(WilsonTheory):
    """Wilson gauge + Nf = 2 Wilson fermions (see the module docstring)."""

    kind = "wilson_nf2"
    Params = WilsonNf2Params
    samplers = {"hmc": Nf2HMCSettings}
    reference_sampler = "hmc"
    flow_families = ("pseudofermion", "qcd4d")
    has_fermions = True
    # even/odd preconditioning and Hasenbusch shifts change the pseudofermion action, not the theory (det D D^dag)
    algorithm_keys = ("even_odd", "hasenbusch_mus", "cg_tol", "cg_tol_md", "cg_maxiter")
    # CG stops at its tolerance; the limit only decides whether a solve fails (ConvergenceError), so a run stopped
    # by it resumes with a larger one and gives the numbers of an uninterrupted run
    resume_neutral_keys = ("cg_maxiter",)

    @classmethod
    def check(cls, params: Any, shape: Sequence[int]) -> None:
        if len(shape) not in (2, 4):
            raise ConfigError(f"lattice.shape: Wilson fermions need 2 or 4 dimensions, got {list(shape)}")
        if shape[0] < 2:
            raise ConfigError(f"lattice.shape: the antiperiodic time direction needs L_0 >= 2, got {list(shape)}")
        if params.even_odd and any(L % 2 for L in shape):
            raise ConfigError(f"lattice.shape: even/odd preconditioning (action.even_odd) needs even extents, "
                              f"got {list(shape)}")

    def sampler(self, algorithm: str, settings: Any = None, *, rng: Any) -> Any:
        if algorithm != "hmc":
            raise ValueError(f"algorithm={algorithm!r}: expected 'hmc'")
        from latticekit.mc import Nf2HMC

        s = settings if settings is not None else Nf2HMCSettings()
        a = self.params
        return Nf2HMC.from_couplings(self.group, self.lattice, a.beta, kappa=a.kappa, rng=rng,
                                     even_odd=a.even_odd, mus=list(a.hasenbusch_mus) or None, tol=a.cg_tol,
                                     md_tol=a.cg_tol_md, maxiter=a.cg_maxiter, step_size=s.step_size,
                                     n_steps=s.n_steps, integrator=s.integrator, n_inner=s.n_inner or None)

    def ensemble_params(self) -> dict[str, Any]:
        a = self.params
        return {"beta": a.beta, "kappa": a.kappa, "nf": 2, "even_odd": a.even_odd,
                "hasenbusch_mus": list(a.hasenbusch_mus)}

    def describe(self) -> str:
        return f"{self.group.name} Wilson + Nf=2 Wilson fermions (beta={self.params.beta}, kappa={self.params.kappa})"

    def measurements(self) -> list[Measurement]:
        from latticekit import observables as obs
        from latticekit.actions import WilsonDirac

        G, lat, a = self.group, self.lattice, self.params
        L0 = lat.shape[0]
        names = tuple(f"C_pi_t{t}" for t in range(L0 // 2 + 1))

        def pion(U: Any) -> dict[str, Any]:
            C = obs.pion_correlator(WilsonDirac(U, G, lat, kappa=a.kappa), tol=a.cg_tol,
                                    maxiter=max(a.cg_maxiter, 4000))  # (B, L0)
            return {n: C[:, t] for t, n in enumerate(names)}

        return super().measurements() + [Measurement(names, pion)]

    def summary_observables(self) -> list[str]:
        # the gauge observables and the pion correlator: what flow MCMC is compared with pseudofermion HMC on
        return super().summary_observables() + [n for n in self.observable_names() if n.startswith("C_pi_t")]

    def exact(self) -> dict[str, float]:
        # no exact results with dynamical fermions; <Q> = 0 by parity
        return {"topological_charge": 0.0} if self.is_u1_2d else {}

    def exact_distribution(self, name: str, bound: int) -> tuple[Any, Any] | None:
        return None  # the exact P(Q) is that of the pure gauge theory

    def exact_log_z(self) -> float | None:
        return None  # Z = int dU exp(-S_g) det(D D^dag): not known in closed form (the pure-gauge one is not it)
