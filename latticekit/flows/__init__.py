"""Normalizing flows for lattice field theory (torch).

This subpackage is torch by design (DESIGN.md); ``import latticekit`` does not import it (it loads
on first use of ``latticekit.flows``). Layer contract: ``forward(x, context=None) -> (y, logdet)``,
``inverse(y, context=None) -> (x, logdet)`` with ``logdet = log|det dy/dx|`` per batch element
(w.r.t. Haar measure for gauge fields); priors ``sample(n, rng) -> (z, log_prob)``, ``log_prob(z)``;
``Model(prior, flow)`` with ``log q(x) = log r(z) - sum logdet``. See docs/flows.md.

Modules: :mod:`~latticekit.flows.base` (contract, :class:`Flow`), :mod:`~latticekit.flows.priors`,
:mod:`~latticekit.flows.splines`, :mod:`~latticekit.flows.nets`,
:mod:`~latticekit.flows.scalar_couplings`, :mod:`~latticekit.flows.u1_couplings`,
:mod:`~latticekit.flows.spectral`, :mod:`~latticekit.flows.sun_couplings`,
:mod:`~latticekit.flows.u1_nd_couplings`, :mod:`~latticekit.flows.sun_nd_couplings`,
:mod:`~latticekit.flows.model`, :mod:`~latticekit.flows.train`, :mod:`~latticekit.flows.checkpoint`,
:mod:`~latticekit.flows.sampling`, :mod:`~latticekit.flows.distributed` (data-parallel training).
The flow jobs (``latticekit train`` / ``sample``: configuration, model families, job folders) are
application code in :mod:`latticekit.app.flows`; this package holds the library only.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import GaussianPrior, Model, scalar_coupling_flow
>>> lat = lk.Lattice((4, 4))
>>> model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 4)).to(torch.float64)
>>> x, log_q = model.sample(2, lk.backends.rng(0, backend="torch"))
>>> x.shape
torch.Size([2, 4, 4])
"""

from __future__ import annotations

from .base import Flow, FlowLayer, InverseFlow, append_context, sum_sites
from .checkpoint import (
    CheckpointMismatchError,
    architecture_description,
    config_hash,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from .distributed import DistributedTrainer
from .model import Model
from .nets import ACTIVATIONS, ConvNet, activation
from .priors import ConditionalGaussianPrior, GaussianPrior, HaarPrior, Prior, check_rng
from .sampling import MetropolisResult, draw_weighted, independence_metropolis, reweight_observable
from .scalar_couplings import AffineCoupling, SplineCoupling, checkerboard_mask, scalar_coupling_flow
from .spectral import SUSpectralKernel, canonical_cell_flow, reunitarize, su_canonical_angles, weyl_log_density
from .splines import circular_rq_spline, compile_splines, rq_spline, rq_spline_knots, rq_spline_on_knots
from .sun_couplings import SUPlaquetteCoupling, sun_gauge_flow
from .sun_nd_couplings import SUNdPlaquetteCoupling, sun_nd_gauge_flow, sun_nd_staples
from .train import NonFiniteLossError, TrainConfig, Trainer, reverse_kl_loss, stop_gradient_log_prob
from .u1_couplings import U1PlaquetteCoupling, u1_gauge_flow, u1_plaquette_masks, u1_plaquettes
from .u1_nd_couplings import U1NdPlaquetteCoupling, u1_nd_gauge_flow, u1_nd_plaquette_masks, u1_nd_plaquettes

__all__ = [
    "ACTIVATIONS",
    "activation",
    "AffineCoupling",
    "append_context",
    "architecture_description",
    "canonical_cell_flow",
    "check_rng",
    "checkerboard_mask",
    "CheckpointMismatchError",
    "circular_rq_spline",
    "ConditionalGaussianPrior",
    "compile_splines",
    "config_hash",
    "ConvNet",
    "DistributedTrainer",
    "draw_weighted",
    "Flow",
    "FlowLayer",
    "GaussianPrior",
    "get_rng_state",
    "HaarPrior",
    "independence_metropolis",
    "InverseFlow",
    "load_checkpoint",
    "MetropolisResult",
    "Model",
    "NonFiniteLossError",
    "Prior",
    "reunitarize",
    "reverse_kl_loss",
    "stop_gradient_log_prob",
    "reweight_observable",
    "rq_spline",
    "rq_spline_knots",
    "rq_spline_on_knots",
    "save_checkpoint",
    "scalar_coupling_flow",
    "set_rng_state",
    "SplineCoupling",
    "su_canonical_angles",
    "sum_sites",
    "sun_gauge_flow",
    "sun_nd_gauge_flow",
    "sun_nd_staples",
    "SUNdPlaquetteCoupling",
    "SUPlaquetteCoupling",
    "SUSpectralKernel",
    "TrainConfig",
    "Trainer",
    "u1_gauge_flow",
    "u1_nd_gauge_flow",
    "u1_nd_plaquette_masks",
    "u1_nd_plaquettes",
    "U1NdPlaquetteCoupling",
    "u1_plaquette_masks",
    "u1_plaquettes",
    "U1PlaquetteCoupling",
    "weyl_log_density",
]
