"""Plaquette-variable prior of 2D U(1) gauge fields: independent plaquettes, a fixed gauge, one constraint.

In two dimensions the Wilson action ``S = -beta sum_x cos P(x)`` depends on the links only through the
plaquette angles ``P(x) = theta_0(x) + theta_1(x + 0) - theta_0(x + 1) - theta_1(x)`` (DESIGN.md). On an
``L0 x L1`` torus the links ``theta`` (``2V`` angles, ``V = L0 L1``) are, up to a change of variables of unit
Jacobian, ``V - 1`` free plaquettes, the two holonomies and ``V - 1`` gauge angles; the last plaquette is fixed
by ``prod_x e^{i P(x)} = 1`` (every link enters two plaquettes with opposite signs). This prior draws

* the plaquettes ``p(x)``, ``x != x_last = (L0 - 1, L1 - 1)``, independently from the one-plaquette law
  ``exp(kappa cos p) / I_0(kappa)`` (the exact law of a plaquette when the boundary is open; ``kappa = beta``
  by default, learnable; the draw and its density are the eq. 6 prior of :mod:`.multiscale.heatbath_prior`
  with one staple ``S = 1``, exact Best-Fisher sampling and implicit-reparametrisation gradients);
* the holonomies ``h_0, h_1`` uniformly;
* a Haar-random gauge transformation ``g(x)``;

and assembles the links in the complete axial gauge:

* ``theta_0(x0, x1) = 0`` for ``x0 < L0 - 1``;
* ``theta_1(0, x1) = 0`` for ``x1 < L1 - 1``, ``theta_1(0, L1 - 1) = h_1``, and
  ``theta_1(x0, x1) = theta_1(0, x1) + sum_{t < x0} p(t, x1)`` (the plaquette at ``(t, x1)``, ``t < L0 - 1``,
  is ``theta_1(t + 1, x1) - theta_1(t, x1)``);
* ``theta_0(L0 - 1, x1) = h_0 - sum_{s < x1} C(s)``, ``C(s) = sum_t p(t, s)`` (the plaquette at
  ``(L0 - 1, x1)`` then equals ``p(L0 - 1, x1)`` for ``x1 < L1 - 1``; at ``x_last`` it comes out as
  ``-sum_{x != x_last} p(x)``: the constraint);
* then ``theta_mu(x) -> theta_mu(x) + g(x) - g(x + mu)``.

Density
-------
The map ``(p_{x != x_last}, h_0, h_1, g) -> theta`` is a continuous surjective homomorphism of tori
``U(1)^{2V+1} -> U(1)^{2V}`` (its kernel is the constant gauge transformations: ``p = 0`` and ``h = 0`` give the
trivial gauge-fixed field, whose gauge orbit is trivial only for constant ``g``), so it carries the normalised
Haar measure to the normalised Haar measure. The density of the draw depends on ``p`` only, and ``p(x)``,
``x != x_last``, are the plaquettes of the assembled field. Hence, with respect to the normalised Haar measure
of the links (DESIGN.md),

    log q(theta) = sum_{x != x_last} [kappa cos P(x) - log I_0(kappa)],

a gauge-invariant function of the field that :meth:`U1PlaquettePrior.log_prob` evaluates from the plaquettes
of any field (an independent recomputation of the density the sampler reports; the tests check both, and the
normalisation ``E_Haar[q] = 1``).

Importance weights and ESS
--------------------------
For the Wilson target ``p~ = exp(beta sum_x cos P(x))`` and ``kappa = beta`` the weight is
``w = p~ / q = I_0(beta)^{V-1} exp(beta cos P(x_last))``: the whole mismatch is the one constrained plaquette,
``P(x_last) = -sum_{x != x_last} p(x)``, which is nearly uniform once ``V / beta`` is large. Its Fourier
coefficients are ``E_q[e^{i n P_last}] = (I_n(kappa) / I_0(kappa))^{V-1}``, so ``E_q[w] = Z = sum_n I_n(beta)^V``
(:func:`latticekit.exact.u1_2d_log_z`) and ``E_q[w^2] = I_0(beta)^{V-1} sum_n I_n(2 beta) I_n(beta)^{V-1}``; the
Kish ESS per sample of ``N -> infinity`` fresh draws (the ESS of docs/flows.md) is ``E[w]^2 / E[w^2]``
(:meth:`U1PlaquettePrior.exact_ess`), ``-> I_0(beta)^2 / I_0(2 beta) ~ 1 / sqrt(pi beta)`` at large volume:
0.24 at ``beta = 6`` on any large lattice, and no topological freezing, since the charge
``Q = (1/2 pi) sum_x arg P(x)`` is whatever the independent plaquettes add up to.

This is the exactly solvable structure of 2D U(1) (the same one behind :mod:`latticekit.exact.u1_2d`) written
as a flow prior; it does not carry over to 2D SU(N) (non-Abelian constraint) or to ``d > 2`` (Bianchi
identities). A learned flow on top of it (``[model] coupling = "plaquette_prior"`` with ``n_layers > 0``) is
the usual ``Model(prior, flow)``.

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4))
>>> prior = U1PlaquettePrior(lat, beta=2.0).to(torch.float64)
>>> U, lq = prior.sample(3, lk.backends.rng(0, backend="torch"))
>>> U.shape, bool(torch.allclose(lq, prior.log_prob(U)))
(torch.Size([3, 2, 4, 4]), True)
>>> round(prior.exact_ess(), 4)
0.462
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from latticekit.backends import Generator
from latticekit.groups import U1, wrap_angle
from latticekit.lattice import Lattice

from .priors import Prior, _check_n, check_rng

__all__ = ["U1PlaquettePrior", "u1_plaquette_prior_ess"]


def u1_plaquette_prior_ess(beta: float, shape: tuple[int, ...], kappa: float | None = None) -> float:
    """Exact Kish ESS per sample (``N -> infinity`` fresh draws) of :class:`U1PlaquettePrior` for the Wilson target.

    ``ESS = E_q[w]^2 / E_q[w^2]`` with ``w = exp(-S) / q`` (module docstring). For ``kappa != beta``:
    ``E_q[w] = sum_n I_n(beta)^V``, ``E_q[w^2] = I_0(kappa)^{V-1} sum_n I_n(2 beta) I_n(2 beta - kappa)^{V-1}``
    (each free plaquette contributes ``int e^{(2 beta - kappa) cos p + i n p} dp / 2 pi``).

    Examples
    --------
    >>> round(u1_plaquette_prior_ess(0.0, (8, 8)), 12)        # beta = 0: q is the (Haar) target
    1.0
    >>> round(u1_plaquette_prior_ess(6.0, (16, 16)), 4)        # ~ I_0(6)^2 / I_0(12)
    0.2386
    """
    from scipy.special import ive, logsumexp

    if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
        raise ValueError(f"beta={beta!r}: expected a finite beta >= 0")
    k = float(beta if kappa is None else kappa)
    if not (math.isfinite(k) and k >= 0):
        raise ValueError(f"kappa={kappa!r}: expected a finite concentration >= 0")
    V = int(np.prod(shape))
    b2k = 2.0 * beta - k
    if b2k < 0:
        raise ValueError(f"kappa={k}: E_q[w^2] needs 2 beta - kappa >= 0 here (beta={beta})")
    n_max = int(40 + 10 * math.sqrt(2.0 * beta + 1.0))
    n = np.arange(-n_max, n_max + 1)

    def log_i(order: np.ndarray, x: float) -> np.ndarray:
        # log I_n(x) = log ive(n, x) + x; ive underflows to 0 far in the tail (log -> -inf, dropped by logsumexp)
        with np.errstate(divide="ignore"):
            return np.log(ive(order, x)) + x

    log_ew = logsumexp(V * log_i(n, float(beta)))
    log_ew2 = (V - 1) * log_i(np.array(0), k) + logsumexp(log_i(n, 2.0 * beta) + (V - 1) * log_i(n, b2k))
    return float(np.exp(2.0 * log_ew - log_ew2))


class U1PlaquettePrior(Prior):
    """Independent plaquettes in the complete axial gauge on a 2D torus (module docstring); U(1) angles
    ``(n, 2, L0, L1)``, log-density w.r.t. the normalised Haar measure.

    Parameters
    ----------
    lattice : Lattice
        A 2D lattice (any extents >= 1, periodic).
    beta : float
        Concentration ``kappa`` of the one-plaquette law (the target's ``beta`` makes every plaquette but
        one exact).
    learn_beta : bool
        Train ``kappa`` by reverse KL (implicit-reparametrisation gradients of the von Mises draw).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> p = U1PlaquettePrior(lk.Lattice((2, 2)), beta=1.0).to(torch.float64)
    >>> U, lq = p.sample(1, lk.backends.rng(0, backend="torch"))
    >>> P = lk.observables.plaquettes(U, lk.U1, lk.Lattice((2, 2)), 0, 1)
    >>> abs(float(torch.cos(P.sum())) - 1.0) < 1e-12            # prod_x e^{i P(x)} = 1
    True
    """

    def __init__(self, lattice: Lattice, beta: float, learn_beta: bool = False) -> None:
        super().__init__()
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd != 2:
            raise ValueError(f"lattice={lattice.shape}: the plaquette-variable prior is for 2D U(1) (the plaquettes "
                             f"are independent only in two dimensions); got a {lattice.nd}D lattice")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
            raise ValueError(f"beta={beta!r}: expected a finite concentration of the one-plaquette law")
        from .multiscale.heatbath_prior import U1HeatbathPrior

        self.lattice = lattice
        self.group = U1
        self.event_shape = (2,) + tuple(lattice.shape)
        # the one-plaquette law is eq. 6 of arXiv:2404.10819 with one staple S = 1: exp(kappa cos p) / I_0(kappa)
        self.plaquette_law = U1HeatbathPrior(1, beta=float(beta), learn_beta=learn_beta)

    @property
    def kappa(self) -> torch.Tensor:
        """The concentration of the one-plaquette law (a parameter with ``learn_beta``)."""
        return self.plaquette_law.beta[0]

    def extra_repr(self) -> str:
        # no parameter values here: the repr enters the checkpoints' architecture hash
        return f"lattice={self.lattice.shape}"

    def exact_ess(self, beta: float | None = None) -> float:
        """Exact Kish ESS per sample against the Wilson target at ``beta`` (default: the prior's ``kappa``)
        (:func:`u1_plaquette_prior_ess`)."""
        k = float(self.kappa.detach())
        return u1_plaquette_prior_ess(k if beta is None else float(beta), self.lattice.shape, kappa=k)

    def _free(self, t: torch.Tensor) -> torch.Tensor:
        """``(n, V - 1)``: the entries of a ``(n, L0, L1)`` field at every site but ``x_last``."""
        return t.reshape(t.shape[0], -1)[:, :-1]

    def _plaquette_log_prob(self, p: torch.Tensor) -> torch.Tensor:
        n, m = p.shape
        if m == 0:
            return torch.zeros(n, dtype=self.dtype, device=p.device)
        zero = torch.zeros((n * m, 1), dtype=p.dtype, device=p.device)
        return self.plaquette_law.log_prob(p.reshape(-1), context=zero).reshape(n, m).sum(dim=1)

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_context(context)
        if not isinstance(z, torch.Tensor) or z.ndim < 3 or tuple(z.shape[-3:]) != self.event_shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z has shape {got}; expected (*batch, {', '.join(map(str, self.event_shape))}) "
                             f"U(1) link angles")
        if z.is_complex():
            raise TypeError("z: U(1) links are real angles; got a complex tensor")
        batch = tuple(z.shape[:-3])
        zz = z.reshape((-1,) + self.event_shape)
        # P(x) = theta_0(x) + theta_1(x + 0) - theta_0(x + 1) - theta_1(x) (DESIGN.md), directly from the links
        t0, t1 = zz[:, 0], zz[:, 1]
        P = t0 + torch.roll(t1, -1, dims=1) - torch.roll(t0, -1, dims=2) - t1
        return self._plaquette_log_prob(self._free(P)).reshape(batch)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        check_rng(rng)
        n = _check_n(n)
        L0, L1 = self.lattice.shape
        V = L0 * L1
        f64 = torch.float64
        zero = torch.zeros((n * max(V - 1, 1), 1), dtype=self.dtype, device=self.device)
        if V > 1:
            pf, _ = self.plaquette_law.sample(n * (V - 1), rng, context=zero)
            pf = pf.reshape(n, V - 1)
        else:
            pf = torch.zeros((n, 0), dtype=self.dtype, device=self.device)
        lq = self._plaquette_log_prob(pf)
        h = rng.uniform((n, 2), low=-math.pi, high=math.pi, dtype=f64).to(self.device)
        g = rng.uniform((n, L0, L1), low=-math.pi, high=math.pi, dtype=f64).to(self.device)
        # assemble in float64 (the partial sums reach ~V pi; float32 would lose ~1e-4 rad), keeping the graph to pf
        p = torch.cat([pf.to(f64), torch.zeros((n, 1), dtype=f64, device=self.device)], dim=1).reshape(n, L0, L1)
        t1_0 = torch.zeros((n, 1, L1), dtype=f64, device=self.device)
        t1_0 = torch.cat([t1_0[:, :, :-1], h[:, 1].reshape(n, 1, 1)], dim=2)            # theta_1(0, x1)
        t1 = torch.cat([t1_0, t1_0 + torch.cumsum(p[:, :-1, :], dim=1)], dim=1)       # theta_1(x0, x1)
        C = p.sum(dim=1)                                                              # C(x1) = sum_t p(t, x1)
        # p(x_last) = 0 is a placeholder: it enters C(L1 - 1) only, which no link uses
        last = h[:, 0:1] - torch.cat([torch.zeros((n, 1), dtype=f64, device=self.device),
                                      torch.cumsum(C[:, :-1], dim=1)], dim=1)         # theta_0(L0 - 1, x1)
        t0 = torch.cat([torch.zeros((n, L0 - 1, L1), dtype=f64, device=self.device), last[:, None, :]], dim=1)
        # gauge transformation theta_mu(x) + g(x) - g(x + mu), Haar-random g
        t0 = t0 + g - torch.roll(g, -1, dims=1)
        t1 = t1 + g - torch.roll(g, -1, dims=2)
        z = wrap_angle(torch.stack([t0, t1], dim=1)).to(self.dtype)
        return z, lq
