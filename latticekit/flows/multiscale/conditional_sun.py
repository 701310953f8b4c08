"""SU(N) staple-conditional coupling: a spectral flow on the active loop ``P = Proj_SU(N)(U sum alpha_i S_i)``.

Abbott et al., arXiv:2404.10819, Sec. 3.1, eqs. 12-14: "a spectral flow is used, acting on an effective
active loop ``P = Proj_SU(N){U sum_i alpha_i S_i}`` where ``alpha_i`` are learned coefficients, and
``Proj_SU(N)`` is a projection onto SU(N), accomplished via polar decomposition" (eq. 13,
``Proj(M) = M (M^dag M)^{-1/2} / det[M (M^dag M)^{-1/2}]^{1/N}``); "the spectral flow acting on ``P``
produces a new, transformed value ``P'``. This transformation can then be pushed back to the gauge matrix
``U`` to produce a new matrix ``U' = P' P^dag U``" (eq. 14). The spectral flow is the library's one,
:class:`~latticekit.flows.spectral.SUSpectralKernel` (Boyda et al. 2021).

One layer acts on ``M`` links ``U`` (``(M, N, N)``) given their staples (``context``, ``(M, n, N, N)``):

* ``R = Proj(sum_i alpha_i S_i)`` (eq. 13; for SU(2) a real combination of SU(2) matrices is ``|q|`` times an
  SU(2) matrix, and ``Proj(M) = M / |q|``, which is the polar projection without its eigen-decomposition);
  the polar projection is left-covariant and ``det U = 1``, so ``Proj(U M) = U Proj(M)`` and eq. 12 is
  ``P = U R``;
* ``P' = h(P | c)``, ``h`` conjugation-equivariant, conditioned on the invariants
  ``c = ((Re, Im) tr(R^dag S_i) / N)_i`` (:mod:`.invariants`);
* ``U' = P' P^dag U = h(P) R^dag`` (eq. 14), re-unitarised (:func:`~latticekit.flows.spectral.reunitarize`, the
  identity on SU(N));
* log-det w.r.t. Haar: ``U -> P = U R`` is right multiplication by a fixed element (Haar preserving) and
  ``U' = P' R^dag`` again, so ``log|det| = log|det dh|_Haar(P)``, the kernel's log-det.

Gauge equivariance: ``S_i -> Omega(x+mu) S_i Omega(x)^dag`` gives ``R`` the same law, ``P -> Omega(x) P
Omega(x)^dag``, ``c`` is invariant, ``h`` is conjugation equivariant, so ``U' -> Omega(x) U' Omega(x+mu)^dag``.

Examples
--------
>>> import torch, latticekit as lk
>>> G = lk.SU(3)
>>> layer = SUStapleSpectral(G, 2, bins=4, hidden=(4,)).to(torch.float64)
>>> U = G.random(lk.backends.rng(0, backend="torch"), (3,)); S = G.random(lk.backends.rng(1, backend="torch"), (3, 2))
>>> V, ld = layer(U, context=S)
>>> W, ldi = layer.inverse(V, context=S)
>>> bool(torch.allclose(W, U)), bool(torch.allclose(ld, -ldi))
(True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.groups import SUGroup

from ..base import FlowLayer
from ..spectral import SUSpectralKernel, reunitarize
from .heatbath_prior import _check_links, check_staples
from .invariants import register_staple_weights, staple_invariants

__all__ = ["SUStapleSpectral", "project_staple_sum"]


def project_staple_sum(group: SUGroup, staples: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """``Proj_SU(N)(sum_i alpha_i S_i)`` (eq. 13) per link: staples ``(M, n, N, N)`` -> ``(M, N, N)``.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> G = lk.SU(3)
    >>> S = G.random(lk.backends.rng(0, backend="torch"), (2, 1))
    >>> bool(torch.allclose(project_staple_sum(G, S, torch.ones(1, dtype=torch.float64)), S[:, 0]))
    True
    """
    a = alpha.to(staples.real.dtype).to(staples.dtype)
    Msum = torch.sum(a[:, None, None] * staples, dim=-3)
    if group.N == 2:
        q = torch.sqrt(0.5 * torch.sum(Msum.real ** 2 + Msum.imag ** 2, dim=(-2, -1)))
        return Msum / q.to(Msum.dtype)[..., None, None]
    return group.project(Msum, nd=0)


class SUStapleSpectral(FlowLayer):
    """Spectral coupling of one SU(N) link conditioned on its staples (module docstring).

    Parameters
    ----------
    group : SUGroup
    n_staples : int
        Staples per link (``context`` has shape ``(M, n_staples, N, N)``).
    bins : int
        RQ spline bins per canonical-cell coordinate of the spectral kernel.
    hidden : sequence of int
        Hidden widths of the kernel's per-link MLPs (input: the ``2 n_staples`` invariants).
    act : str
    zero_init : bool
        Start as the identity map.
    alpha : sequence of float, optional
        Initial staple weights (eq. 12; default all 1).
    learn_alpha : bool

    Examples
    --------
    >>> import latticekit as lk
    >>> SUStapleSpectral(lk.SU(2), 4).kernel.features
    8
    """

    def __init__(self, group: SUGroup, n_staples: int, *, bins: int = 8, hidden: Sequence[int] = (16,),
                 act: str = "leaky_relu", zero_init: bool = False, alpha: Sequence[float] | None = None,
                 learn_alpha: bool = True) -> None:
        super().__init__()
        if not isinstance(group, SUGroup):
            raise TypeError(f"group={group!r}: expected SU(N) (U(1) links use U1StapleSpline)")
        if isinstance(n_staples, bool) or not isinstance(n_staples, int) or n_staples < 1:
            raise ValueError(f"n_staples={n_staples!r}: a staple-conditional coupling needs at least one staple")
        self.group, self.n_staples = group, int(n_staples)
        register_staple_weights(self, n_staples, alpha, learn_alpha)
        self.kernel = SUSpectralKernel(group, bins, features=2 * n_staples, hidden=hidden, act=act,
                                       zero_init=zero_init, nd=0)

    def extra_repr(self) -> str:
        return f"group={self.group.name}, n_staples={self.n_staples}"

    def _transform(self, U: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        G = self.group
        M = check_staples(context, G, self.n_staples, "context")
        _check_links(U, G, M)
        R = project_staple_sum(G, context, self.alpha)                         # eq. 13
        P = G.mul(U, R, nd=0)                                                  # eq. 12: Proj(U sum a S) = U R
        _, delta, ld = self.kernel.transform(P, staple_invariants(G, context, R), nd=0, inverse=inverse)
        return reunitarize(G.mul(delta, U, nd=0), G.N, nd=0), ld              # eq. 14: U' = P' P^dag U
