"""Several pseudofermions per gauge field: pseudo-marginal weights and sampling (Sec. III.E of arXiv:2207.08945).

For a gauge field ``U`` from ``q(U)`` and ``N_pf`` independent draws ``phi_i^(k) ~ q(phi_i | U)`` per
monomial ``i``, the conditional weight ``w_i^(k) = exp(-S_i) / (pi^{n_i} q(phi_i^(k) | U))`` has
``E[w_i] = 1/det K_i`` (eq. 41), and::

    log w_Npf(U) = -S_g(U) - log q(U) + sum_i log( (1/N_pf) sum_k w_i^(k) )                  (eqs. 42, 43, 46)

is an unbiased estimate (in ``w``) of ``p(U)/q(U)`` up to ``Z``. With exact determinants,
``log w_marg(U) = -S_g - log q(U) + log det M`` (eq. 19; dense, small lattices). ``ESS(N_pf)`` is the
Kish ESS/N of the ``w_Npf`` (eq. 44); ``ESS(inf)`` = the marginal ESS; Appendix A gives
``1/ESS(N_pf) = 1/ESS(inf) + C'/N_pf``, i.e. ``ESS(N_pf) = ESS(inf) / (1 + C/N_pf)`` (eq. 45),
fitted by :func:`fit_ess_npf` (least squares of ``1/ESS`` against ``1/N_pf``). On a few thousand
heavy-tailed weights the Kish ESS scatters by factors of several between draw sets, mostly through the gauge
fields; the ratio ``ESS(N_pf) / ESS_marg`` on the *same* fields cancels that part and is fitted with
``ESS(inf)`` fixed to ``ESS_marg`` by :func:`fit_npf_ratio`.

Pseudo-marginal MCMC (Andrieu & Roberts 2009): an independence Metropolis chain over ``U`` with the
*estimated* weights ``w_Npf``, the current state keeping its estimate, samples ``p(U)`` exactly for any
``N_pf >= 1`` (:func:`pseudo_marginal_metropolis`; ``N_pf = 1`` is the joint chain of eq. 16 on
``(U, phi)`` marginalised to ``U``).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.actions import WilsonGaugeAction
>>> from latticekit.flows import HaarPrior, Model, u1_gauge_flow
>>> from latticekit.flows.pseudofermion import JointModel, monomial_targets
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> targets = monomial_targets(lk.U1, lat, 0.2)
>>> jm = JointModel.build(Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 2)), targets, n_layers=2, n_hidden=4).double()
>>> w = pf_weights(jm, WilsonGaugeAction(lk.U1, lat, beta=2.0), targets, 8, rng, n_pf=4, dense=True)
>>> sorted(w.log_w), w.log_w[4].shape
([1, 2, 4], torch.Size([8]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from latticekit.analysis import ess as _ess
from latticekit.backends import Generator

from ..batch_progress import BatchProgress, draw_batches
from ..sampling import MetropolisResult, metropolis_chain
from ._checks import check_int
from .joint import JointModel
from .targets import PFTarget, normal_eigenvalues

__all__ = ["PFWeights", "ess_vs_npf", "fit_ess_npf", "fit_npf_ratio", "pf_weights", "pseudo_marginal_metropolis"]


@dataclass
class PFWeights:
    """Weights of ``n`` gauge fields (:func:`pf_weights`).

    Attributes
    ----------
    U : torch.Tensor
        The gauge fields ``(n, Nd, *G, *L)``.
    log_w : dict int -> torch.Tensor
        ``log w_Npf(U)`` (n,) for each ``N_pf`` (1, 2, 4, ... up to the requested ``n_pf``, and ``n_pf``).
    log_w_joint : torch.Tensor
        The joint weights of eq. (40) with the first pseudofermion draw (= ``log_w[1]``).
    log_w_marginal : torch.Tensor or None
        ``-S_g - log q(U) + log det M`` with the dense determinant (``dense=True``).
    log_det : torch.Tensor or None
        ``log det M`` per gauge field (``dense=True``).
    condition_numbers : list of torch.Tensor
        Per monomial, the condition number of its kernel per gauge field (``dense=True``).
    """

    U: torch.Tensor
    log_w: dict[int, torch.Tensor]
    log_w_joint: torch.Tensor
    log_w_marginal: torch.Tensor | None = None
    log_det: torch.Tensor | None = None
    condition_numbers: list[torch.Tensor] = field(default_factory=list)


def _npf_list(n_pf: int) -> list[int]:
    out, k = [], 1
    while k < n_pf:
        out.append(k)
        k *= 2
    return out + [n_pf]


@torch.no_grad()
def pf_weights(model: JointModel, gauge_action: Any, targets: Sequence[PFTarget], n: int, rng: Generator, *,
               n_pf: int = 1, batch_size: int = 256, dense: bool = False,
               progress: BatchProgress | None = None) -> PFWeights:
    """Draw ``n`` gauge fields with ``n_pf`` pseudofermions per monomial and their weights (module docstring).

    Parameters
    ----------
    model : JointModel
    gauge_action : action object
        ``S_g``.
    targets : sequence of PFTarget
        The *unregulated* monomials of the theory (sampling uses no regulator, Sec. IV.A).
    n : int
        Gauge fields.
    n_pf : int
        Pseudofermion draws per monomial and gauge field (``>= 1``).
    dense : bool
        Also the exact marginal weights and condition numbers (dense eigenvalues; small lattices).
    progress : BatchProgress, optional
        Store every batch as it is drawn, and load those a killed earlier call stored instead of drawing them again
        (the same numbers; :mod:`latticekit.flows.batch_progress`).
    """
    if not isinstance(model, JointModel):
        raise TypeError(f"model={type(model).__name__}: expected a JointModel")
    n_pf = check_int(n_pf, "n_pf", 1)     # at least one pseudofermion per gauge field
    n, batch_size = check_int(n, "n", 1), check_int(batch_size, "batch_size", 1)
    if len(targets) != len(model.conditionals):
        raise ValueError(f"targets: {len(targets)} monomials for a model with {len(model.conditionals)}")
    for i, (t, c) in enumerate(zip(targets, model.conditionals)):
        # an even/odd model weighed against full-lattice targets gave log w off by ~23 on 4x4 (user probe)
        c.target.check_same_variables(t, f"targets[{i}]")
    Sg = getattr(gauge_action, "action", gauge_action)
    Ns = _npf_list(n_pf)

    def draw(b: int) -> dict[str, Any]:
        U, lqU = model.sample_marginal(b, rng)
        base = -Sg(U) - lqU
        phis, lqs = model.sample_conditionals(U, rng, n_pf)
        # per monomial i and draw k: log w_i^(k) = -S_i - n_i log pi - log q(phi | U)
        lw_ik = [torch.stack([-t.action(U, p) - t.log_normalizer() - lq for p, lq in zip(ph, lq_list)])
                 for t, ph, lq_list in zip(targets, phis, lqs)]  # each (n_pf, b)
        out: dict[str, Any] = {"U": U, "log_w": {k: base + sum(torch.logsumexp(l[:k], 0) - math.log(k) for l in lw_ik)
                                                 for k in Ns}}
        if dense:
            lam = normal_eigenvalues(targets[0].operator(U))
            ld = sum(t.log_det_from_eigenvalues(lam) for t in targets)
            out.update(log_det=ld, marg=base + ld, conds=[t.condition_number_from_eigenvalues(lam) for t in targets])
        return out

    outs = draw_batches(n, batch_size, rng, draw, progress)
    log_w = {k: torch.cat([o["log_w"][k] for o in outs]) for k in Ns}
    return PFWeights(U=torch.cat([o["U"] for o in outs]), log_w=log_w, log_w_joint=log_w[1],
                     log_w_marginal=torch.cat([o["marg"] for o in outs]) if dense else None,
                     log_det=torch.cat([o["log_det"] for o in outs]) if dense else None,
                     condition_numbers=[torch.cat([o["conds"][i] for o in outs]) for i in range(len(targets))]
                     if dense else [])


def ess_vs_npf(weights: PFWeights) -> dict[int, float]:
    """Kish ESS/N of ``w_Npf`` (eq. 44) for every ``N_pf`` in ``weights.log_w``."""
    return {k: float(_ess(v.cpu())) for k, v in sorted(weights.log_w.items())}


def fit_ess_npf(n_pf: Sequence[float], ess: Sequence[float]) -> tuple[float, float]:
    """Fit ``ESS(N_pf) = ESS(inf) / (1 + C / N_pf)`` (eq. 45): returns ``(ESS(inf), C)``.

    ``1/ESS = 1/ESS(inf) + (C/ESS(inf)) / N_pf`` is linear in ``1/N_pf`` (App. A, eq. A4); fitted by
    least squares.

    Examples
    --------
    >>> e_inf, C = fit_ess_npf([1, 2, 4, 8], [0.3 / (1 + 5.0 / n) for n in (1, 2, 4, 8)])
    >>> round(e_inf, 6), round(C, 6)
    (0.3, 5.0)
    """
    x = 1.0 / np.asarray(n_pf, dtype=float)
    y = 1.0 / np.asarray(ess, dtype=float)
    if x.size < 2 or np.ptp(x) == 0:
        raise ValueError("fit_ess_npf: expected at least two different N_pf values")
    slope, icpt = np.polyfit(x, y, 1)
    return float(1.0 / icpt), float(slope / icpt)


def fit_npf_ratio(n_pf: Sequence[float], ratio: Sequence[float]) -> float:
    """``C`` of ``ESS(N_pf) / ESS_marg = 1 / (1 + C/N_pf)``: eq. (45) with ``ESS(inf)`` the marginal ESS.

    With ``w_Npf(U) = w_marg(U) r_Npf(U)``, ``r`` the pseudofermion average of ``p(phi|U) / q(phi|U)`` (mean 1 at
    fixed ``U``, variance ``v(U) / N_pf``), ``E[w_Npf] = E[w_marg]`` and ``E[w_Npf^2] = E[w_marg^2 (1 + v/N_pf)]``,
    so ``ESS(N_pf) = ESS_marg / (1 + C/N_pf)`` with ``C = E[w_marg^2 v] / E[w_marg^2]`` (App. A). ``ratio`` are
    measured ``ESS(N_pf) / ESS_marg`` on the same gauge fields; ``1/ratio - 1 = C / N_pf`` is fitted by least
    squares through the origin in ``1/N_pf``.

    Examples
    --------
    >>> round(fit_npf_ratio([1, 2, 4, 8], [1 / (1 + 6.0 / n) for n in (1, 2, 4, 8)]), 6)
    6.0
    """
    x = 1.0 / np.asarray(n_pf, dtype=float)
    r = np.asarray(ratio, dtype=float)
    if x.size < 1 or x.shape != r.shape or not np.all(r > 0):
        raise ValueError(f"fit_npf_ratio: expected positive ratios, one per N_pf (got {r.size} for {x.size})")
    return float(np.sum((1.0 / r - 1.0) * x) / np.sum(x * x))


def pseudo_marginal_metropolis(model: JointModel, gauge_action: Any, targets: Sequence[PFTarget], n_steps: int,
                               rng: Generator, *, n_pf: int = 1, batch_size: int = 256,
                               observables: dict[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                               keep_configs: bool = False) -> MetropolisResult:
    """Pseudo-marginal independence Metropolis over gauge fields with weights ``w_Npf`` (module docstring).

    Observables are functions of the gauge field batch ``(B, Nd, *G, *L)``.
    """
    n_steps, n_pf = check_int(n_steps, "n_steps", 2), check_int(n_pf, "n_pf", 1)
    w = pf_weights(model, gauge_action, targets, n_steps, rng, n_pf=n_pf, batch_size=batch_size)
    return metropolis_chain(w.U, w.log_w[n_pf], rng, observables=observables, keep_configs=keep_configs)
