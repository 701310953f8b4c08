"""U(1) staple-conditional coupling: a circular spline on the active loop ``P = Proj_U(1)(U sum alpha_i S_i)``.

Abbott et al., arXiv:2404.10819, Sec. 3.1: "The coupling layers in the U(1) case have the same structure as
the SU(N) staple-conditional flows, except that the projection in Eq. (12) is replaced with a normalization
step" (eq. 15, ``Proj_U(1)(z) = z / |z|``); the splines are circular rational-quadratic splines (Rezende et
al. 2020; Kanwar et al. 2020, the paper's ref. [29]).

One layer acts on a batch of ``M`` links ``theta`` (angles, shape ``(M,)``) given their staples ``S``
(angles ``sigma_i``, ``context`` of shape ``(M, n)``; every link independently, as in the paper):

* eq. 12/15: ``P = Proj_U(1)(e^{i theta} sum_i alpha_i e^{i sigma_i}) = e^{i (theta + rho)}`` with
  ``rho = arg sum_i alpha_i e^{i sigma_i}`` (learnable real ``alpha_i``, initially all 1: the staple sum of
  eq. 6);
* the angle of ``P`` (in ``[0, 2 pi)``) is mapped by a circular RQ spline ``h`` whose parameters come from a
  per-link MLP of the invariants ``(cos(sigma_i - rho), sin(sigma_i - rho))`` (:mod:`.invariants`);
* eq. 14: ``U' = P' P^dag U``, i.e. ``theta' = theta + h(theta + rho) - (theta + rho)`` (wrapped), so the new
  loop is exactly ``h(P)``;
* log-det (w.r.t. Haar, i.e. ``d theta``): ``theta -> theta + rho`` is a translation at fixed staples, so
  ``log|d theta'/d theta| = log h'(theta + rho)``.

Gauge equivariance: ``theta + sigma_i`` and ``sigma_i - rho`` are gauge invariant (every staple of the link
picks up the same phase), so ``theta' - theta`` is invariant and the layer commutes with gauge
transformations; the log-det is invariant.

Examples
--------
>>> import torch
>>> layer = U1StapleSpline(2, bins=4, hidden=(4,)).to(torch.float64)
>>> th = torch.tensor([0.1, -2.0], dtype=torch.float64); S = torch.tensor([[0.3, 1.0], [2.0, -1.0]], dtype=torch.float64)
>>> y, ld = layer(th, context=S)
>>> x, ldi = layer.inverse(y, context=S)
>>> bool(torch.allclose(x, th)), bool(torch.allclose(ld, -ldi))
(True, True)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from latticekit.groups import U1, wrap_angle

from ..base import FlowLayer
from ..splines import circular_rq_spline
from .heatbath_prior import _check_links, check_staples
from ..nets import mlp
from .invariants import register_staple_weights, staple_invariants

__all__ = ["U1StapleSpline"]


class U1StapleSpline(FlowLayer):
    """Circular-spline coupling of one U(1) link conditioned on its staples (module docstring).

    Parameters
    ----------
    n_staples : int
        Staples per link (``context`` has shape ``(M, n_staples)``).
    bins : int
        Spline bins ``K``.
    hidden : sequence of int
        Hidden widths of the MLP (``2 n_staples -> hidden -> 3 K``).
    act : str
        Activation.
    zero_init : bool
        Start as the identity map.
    alpha : sequence of float, optional
        Initial staple weights of the active loop (eq. 12; default all 1).
    learn_alpha : bool
        Make ``alpha`` trainable.

    Examples
    --------
    >>> U1StapleSpline(3, bins=4).n_staples
    3
    """

    def __init__(self, n_staples: int, *, bins: int = 8, hidden: Sequence[int] = (16,), act: str = "leaky_relu",
                 zero_init: bool = False, alpha: Sequence[float] | None = None, learn_alpha: bool = True) -> None:
        super().__init__()
        if isinstance(n_staples, bool) or not isinstance(n_staples, int) or n_staples < 1:
            raise ValueError(f"n_staples={n_staples!r}: a staple-conditional coupling needs at least one staple")
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
            raise ValueError(f"bins={bins!r}: expected at least one bin")
        self.n_staples, self.bins = int(n_staples), int(bins)
        register_staple_weights(self, n_staples, alpha, learn_alpha)
        self.net = mlp(2 * n_staples, 3 * bins, hidden, act, zero_init)
        self._spline_eager = self._spline = circular_rq_spline

    def extra_repr(self) -> str:
        return f"n_staples={self.n_staples}, bins={self.bins}"

    def reference(self, staples: torch.Tensor) -> torch.Tensor:
        """``rho = arg sum_i alpha_i e^{i sigma_i}`` per link (eqs. 12, 15)."""
        a = self.alpha.to(staples.dtype)
        return torch.atan2(torch.sum(a * torch.sin(staples), dim=-1), torch.sum(a * torch.cos(staples), dim=-1))

    def _transform(self, theta: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        M = check_staples(context, U1, self.n_staples, "context")
        _check_links(theta, U1, M, "theta")
        rho = self.reference(context)
        K = self.bins
        p = self.net(staple_invariants(U1, context, rho))
        loop = torch.remainder(theta + rho, 2.0 * math.pi)                      # angle of P (eq. 15)
        new, ld = self._spline(loop, p[:, :K], p[:, K:2 * K], p[:, 2 * K:], inverse=inverse)
        return wrap_angle(theta + (new - loop)), ld                             # eq. 14: U' = P' P^dag U
