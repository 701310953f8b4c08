"""Multiscale normalizing flows for gauge theories (Abbott et al., arXiv:2404.10819).

A multiscale model samples a gauge field from the outside in: a coarse field (:mod:`.coarse_priors`), then
doubling layers (:mod:`.doubling`, Fig. 1, eqs. 9-10, Algorithm 1) that split links (:mod:`.link_splitting`,
eq. 5) and draw the new perpendicular links from staple-conditional models (:mod:`.conditional`, eq. 11:
heatbath-like priors of eq. 6 in :mod:`.heatbath_prior`, circular splines on the U(1) active loop of eq. 15 in
:mod:`.conditional_u1`, spectral flows on the SU(N) active loop of eqs. 12-14 in :mod:`.conditional_sun`,
residual layers in :mod:`.residual`) conditioned on staples (:mod:`.staples`, eqs. 7-8, and the out-of-plane
staples of higher-dimensional models), recursively in any dimension (:mod:`.recursion`, :mod:`.model`,
Algorithm 2). :class:`MultiscalePrior` is the prior of a fine-lattice flow (``Model(MultiscalePrior(...),
u1_gauge_flow(...))``) trained by reverse KL with :class:`latticekit.flows.Trainer`;
:func:`flow_diagnostics` reports ESS, KL and the ``log Z`` estimate of Sec. 4.1. docs/flows.md, "Multiscale
flows", has the bookkeeping.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import Model, u1_gauge_flow
>>> lat = lk.Lattice((8, 8))
>>> model = Model(MultiscalePrior(lk.U1, lat, (2, 2)), u1_gauge_flow(lat, 2, zero_init=True)).to(torch.float64)
>>> U, lq = model.sample(2, lk.backends.rng(0, backend="torch"))
>>> U.shape
torch.Size([2, 2, 8, 8])
"""

from __future__ import annotations

from .coarse_priors import CoarseTheoryPrior, coarse_prior
from .conditional import ConditionalSpec, StapleConditional
from .conditional_sun import SUStapleSpectral, project_staple_sum
from .conditional_u1 import U1StapleSpline
from .diagnostics import flow_diagnostics
from .doubling import DoublingLayer
from .heatbath_prior import (
    HaarLinkPrior,
    SU2HeatbathPrior,
    U1HeatbathPrior,
    bessel_ratios,
    heatbath_prior,
    su2_a0_cdf,
    von_mises_cdf,
)
from .invariants import register_staple_weights, staple_invariants
from .link_splitting import deinterleave, interleave, join_links, split_links
from .model import MultiscaleModel, MultiscalePrior
from .recursion import Draw, Geometry, doubling_order, doublings, slice_order
from .residual import StapleResidual
from .staples import Sandwich

__all__ = [
    "bessel_ratios",
    "coarse_prior",
    "CoarseTheoryPrior",
    "ConditionalSpec",
    "deinterleave",
    "doubling_order",
    "DoublingLayer",
    "doublings",
    "Draw",
    "flow_diagnostics",
    "Geometry",
    "HaarLinkPrior",
    "heatbath_prior",
    "interleave",
    "join_links",
    "register_staple_weights",
    "MultiscaleModel",
    "MultiscalePrior",
    "project_staple_sum",
    "Sandwich",
    "slice_order",
    "split_links",
    "staple_invariants",
    "StapleConditional",
    "StapleResidual",
    "SU2HeatbathPrior",
    "SUStapleSpectral",
    "su2_a0_cdf",
    "U1HeatbathPrior",
    "U1StapleSpline",
    "von_mises_cdf",
]
