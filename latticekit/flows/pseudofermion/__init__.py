"""Pseudofermion flows (Abbott et al., arXiv:2207.08945): joint gauge x pseudofermion models.

Modules: :mod:`.parallel_transport` (``L[U, phi]``, PTC, PTCN; eqs. 25-26), :mod:`.masks` (spatial,
row and spin partitionings as objects; eqs. 27, 29, 31), :mod:`.context` (the context function of
App. B.2), :mod:`.coupling` (pseudofermion layers, eqs. 28-32), :mod:`.targets` (the conditional targets
of plain, even/odd and Hasenbusch pseudofermion actions, eqs. 19, 35-38), :mod:`.conditional` (the
conditional flow ``q(phi | U)``, eq. 22), :mod:`.joint` (the joint model ``q(U) prod_i q(phi_i | U)``,
eqs. 20, 39-40), :mod:`.pseudo_marginal` (``N_pf`` pseudofermions per gauge field, eqs. 42-46).
See docs/flows.md, "Pseudofermion flows".
"""

from __future__ import annotations

from .context import PFContext, PFContextHead, PFContextTrunk, context_inputs
from .coupling import PseudofermionCoupling
from .conditional import ConditionalPFModel
from .joint import GRADIENTS, OBJECTIVES, JointAction, JointModel, JointSample, MarginalAction
from .masks import PARTITIONINGS, GammaMask, PFMask, RowMask, SiteMask, SpinMask, pf_masks, projector_basis, support_mask
from .pseudo_marginal import (PFWeights, ess_vs_npf, fit_ess_npf, fit_npf_ratio, pf_weights,
                              pseudo_marginal_metropolis)
from .parallel_transport import TransportLinks, n_transport_features, parallel_transport, ptc, ptcn
from .targets import (ESTIMATORS, PFTarget, PseudofermionSolveError, dense_normal_matrix, exact_log_det,
                      monomial_targets, normal_eigenvalues)

__all__ = [
    "ConditionalPFModel",
    "ESTIMATORS",
    "GRADIENTS",
    "GammaMask",
    "JointAction",
    "JointModel",
    "JointSample",
    "MarginalAction",
    "OBJECTIVES",
    "PARTITIONINGS",
    "PFTarget",
    "PFWeights",
    "PseudofermionSolveError",
    "dense_normal_matrix",
    "exact_log_det",
    "monomial_targets",
    "normal_eigenvalues",
    "PFContext",
    "PFContextHead",
    "PFContextTrunk",
    "PFMask",
    "PseudofermionCoupling",
    "RowMask",
    "SiteMask",
    "SpinMask",
    "TransportLinks",
    "context_inputs",
    "ess_vs_npf",
    "fit_ess_npf",
    "fit_npf_ratio",
    "pf_weights",
    "pseudo_marginal_metropolis",
    "n_transport_features",
    "parallel_transport",
    "pf_masks",
    "projector_basis",
    "ptc",
    "ptcn",
    "support_mask",
]
