"""Flow-model family ``cnf``: the standard continuous flow with a lattice-spanning kernel, on a Gaussian prior.

The comparison model of the super-resolving paper (Sec. VI B, Fig. 4a: "a standard CNF ... with full translational
symmetry and a kernel that spans the entire system", after Gerdes et al. 2023): ``q = F_* N(0, prior_std^2)`` per
site with ``F`` a :class:`~latticekit.flows.superres.FullKernelCNF` on the whole lattice, trained by reverse KL
against the theory's action like every other family. Sampling is the standard independence Metropolis of
``latticekit sample`` (the prior is exact to draw).

``[model]`` keys: ``n_layers`` (1: the paper's single CNF; more compose independent CNFs), ``n_basis`` (F = 30),
``n_time`` (D = 10), ``bond_basis`` (F' = 20), ``bond_time`` (D' = 20): the paper's sizes; ``prior_std`` (1.0: the unit Gaussian of Gerdes et al.); the ODE keys shared with the
super-resolving families (``ode_rtol``, ``ode_atol``, ``ode_train_rtol``, ``ode_train_atol``, ``ode_max_steps``,
``adjoint``; :class:`~latticekit.app.flows.superres_models.OdeSettings`), ``init`` ("gerdes": the
initialisation of Gerdes et al.'s code, with which the paper's learning rate trains; with "normal", LocalCNF's,
it diverges within a few steps: benchmarks/README.md). The paper trains it at learning rate
5e-3 "for stability" with the App. C optimiser (``examples/phi4_cnf.toml``).

Examples
--------
>>> from latticekit.app.config import FlowConfig
>>> from latticekit.app.flows.models import build_flow
>>> cfg = FlowConfig.from_dict({"lattice": {"shape": [32, 32]}, "action": {"kind": "phi4", "kappa": 0.25, "lam": 0.01},
...                             "model": {"coupling": "cnf"}})
>>> model, action, lat = build_flow(cfg)
>>> type(model.flow).__name__, sum(p.numel() for p in model.parameters())     # Sec. VI B: ~2x the IR flows
('FullKernelCNF', 62029)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from latticekit.utils.schema import setting

from .models import FlowFamily
from .superres_models import OdeSettings

__all__ = ["CNF", "CnfSettings", "cnf_flow"]


@dataclass
class CnfSettings(OdeSettings):
    """``[model]`` keys of ``coupling = "cnf"`` (module docstring)."""

    n_layers: int | None = setting(None, ge=1, doc="continuous flows composed (default 1, the paper's model)")
    n_basis: int = setting(30, ge=1, doc="field basis size F (eq. 24; Sec. VI B: 30)")
    n_time: int = setting(10, ge=1, doc="time kernel size D")
    bond_basis: int = setting(20, ge=1, doc="bond dimension F' (eq. 25)")
    bond_time: int = setting(20, ge=1, doc="bond dimension D' (eq. 25)")
    prior_std: float = setting(1.0, gt=0.0, le=1e3, doc="width of the Gaussian prior")


def cnf_flow(theory: Any, s: CnfSettings) -> Any:
    """``Model(GaussianPrior, FullKernelCNF)`` on the theory's lattice (``n_layers`` of them in a ``Flow``)."""
    from latticekit.flows.base import Flow
    from latticekit.flows.model import Model
    from latticekit.flows.priors import GaussianPrior
    from latticekit.flows.superres import FullKernelCNF

    shape = tuple(theory.lattice.shape)
    cnfs = [FullKernelCNF(shape, n_basis=s.n_basis, n_time=s.n_time, bond_basis=s.bond_basis,
                          bond_time=s.bond_time, **s.solver_kwargs()) for _ in range(s.n_layers or 1)]
    return Model(GaussianPrior(shape, std=s.prior_std), cnfs[0] if len(cnfs) == 1 else Flow(cnfs))


CNF = FlowFamily("cnf", CnfSettings, cnf_flow, lambda shape: 1)
