"""Normalizing flows for lattice field theory (torch).

This subpackage is torch by design (DESIGN.md); ``import latticekit`` does not import it (it loads
on first use of ``latticekit.flows``). Layer contract: ``forward(x, context=None) -> (y, logdet)``,
``inverse(y, context=None) -> (x, logdet)`` with ``logdet = log|det dy/dx|`` per batch element
(w.r.t. Haar measure for gauge fields); priors ``sample(n, rng) -> (z, log_prob)``, ``log_prob(z)``;
``Model(prior, flow)`` with ``log q(x) = log r(z) - sum logdet``. See docs/flows.md.

Modules: :mod:`~latticekit.flows.base` (contract, :class:`Flow`), :mod:`~latticekit.flows.priors`,
:mod:`~latticekit.flows.splines`, :mod:`~latticekit.flows.nets`,
:mod:`~latticekit.flows.scalar_couplings`, :mod:`~latticekit.flows.masks` (gauge masks as objects),
:mod:`~latticekit.flows.plaquette_coupling`, :mod:`~latticekit.flows.u1_couplings`,
:mod:`~latticekit.flows.spectral`, :mod:`~latticekit.flows.sun_couplings`,
:mod:`~latticekit.flows.u1_plaquette_prior` (the 2D U(1) plaquette-variable prior),
:mod:`~latticekit.flows.model`, :mod:`~latticekit.flows.train`, :mod:`~latticekit.flows.checkpoint`,
:mod:`~latticekit.flows.sampling`, :mod:`~latticekit.flows.distributed` (data-parallel training);
the subpackages :mod:`latticekit.flows.multiscale` (multiscale flows for gauge theories, arXiv:2404.10819)
and :mod:`latticekit.flows.pseudofermion` (joint gauge x pseudofermion models, arXiv:2207.08945).
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
from .batch_progress import BatchProgress, draw_batches
from .checkpoint import CheckpointMismatchError, load_checkpoint, save_checkpoint
from .compiled_layers import LayerCompiler, compile_layers
from .context_precision import CONTEXT_DTYPES, set_context_dtype
from .distributed import DistributedTrainer
from .masks import (
    MASK_PATTERNS,
    CheckerboardMask,
    GaugeMask,
    LinkMask,
    Stripe,
    StripeMask,
    checkerboard_masks,
    gauge_masks,
    stripe_masks,
)
from .model import Model
from .nets import ACTIVATIONS, ConvNet, activation
from .plaquette_coupling import PlaquetteCoupling
from .priors import ConditionalGaussianPrior, GaussianPrior, HaarPrior, Prior
from .recompute import recompute_layers
from .sampling import MetropolisResult, draw_weighted, independence_metropolis, reweight_observable
from .scalar_couplings import AffineCoupling, SplineCoupling, checkerboard_mask, scalar_coupling_flow
from .shifted_masks import ShiftedStripeMask, default_shift_parameters, shifted_stripe_masks
from .spectral import SUSpectralKernel, canonical_cell_flow, reunitarize, su_canonical_angles, weyl_log_density
from .splines import circular_rq_spline, compile_splines, rq_spline, rq_spline_knots, rq_spline_on_knots
from .sun_couplings import SUPlaquetteCoupling, sun_gauge_flow
from .train import NonFiniteLossError, TrainConfig, Trainer, reverse_kl_loss, stop_gradient_log_prob
from .u1_couplings import U1PlaquetteCoupling, u1_gauge_flow
from .u1_plaquette_prior import U1PlaquettePrior, u1_plaquette_prior_ess

__all__ = [
    "activation",
    "ACTIVATIONS",
    "AffineCoupling",
    "append_context",
    "BatchProgress",
    "canonical_cell_flow",
    "checkerboard_mask",
    "checkerboard_masks",
    "CheckerboardMask",
    "CheckpointMismatchError",
    "default_shift_parameters",
    "circular_rq_spline",
    "compile_layers",
    "compile_splines",
    "CONTEXT_DTYPES",
    "ConditionalGaussianPrior",
    "ConvNet",
    "DistributedTrainer",
    "draw_batches",
    "draw_weighted",
    "Flow",
    "FlowLayer",
    "gauge_masks",
    "GaugeMask",
    "GaussianPrior",
    "HaarPrior",
    "independence_metropolis",
    "InverseFlow",
    "LayerCompiler",
    "LinkMask",
    "load_checkpoint",
    "MASK_PATTERNS",
    "MetropolisResult",
    "Model",
    "NonFiniteLossError",
    "PlaquetteCoupling",
    "Prior",
    "recompute_layers",
    "reunitarize",
    "reverse_kl_loss",
    "reweight_observable",
    "rq_spline",
    "rq_spline_knots",
    "rq_spline_on_knots",
    "save_checkpoint",
    "scalar_coupling_flow",
    "set_context_dtype",
    "shifted_stripe_masks",
    "ShiftedStripeMask",
    "SplineCoupling",
    "stop_gradient_log_prob",
    "Stripe",
    "stripe_masks",
    "StripeMask",
    "su_canonical_angles",
    "sum_sites",
    "sun_gauge_flow",
    "SUPlaquetteCoupling",
    "SUSpectralKernel",
    "TrainConfig",
    "Trainer",
    "u1_gauge_flow",
    "U1PlaquetteCoupling",
    "U1PlaquettePrior",
    "u1_plaquette_prior_ess",
    "weyl_log_density",
]
