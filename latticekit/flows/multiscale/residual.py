"""Residual staple-conditional coupling (the alternative layer type of arXiv:2404.10819, Sec. 3.1).

"Alternatively, architectures based on residual flows [Abbott et al., arXiv:2305.02402] may also be used as
coupling layers, either in place of or alongside spectral flows." A residual flow moves the link along the
gradient of a gauge-invariant potential built from its staples:

    U' = exp(X(U)) U,    X(U) = sum_i eps_i Pi(U S_i),

``Pi(W) = (W - W^dag)/2 - tr(W - W^dag)/(2N)`` the traceless anti-Hermitian part (``-`` the Lie derivative
of ``Re tr(U S_i)``), with coefficients ``eps_i = (b / n) tanh(net(c))`` from a per-link MLP of the staple
invariants ``c`` (:mod:`.invariants`, relative to the first staple), so ``sum_i |eps_i| <= b < 1``.

U(1) (angles): ``theta' = theta + sum_i eps_i sin(theta + sigma_i)``,
``log|d theta'/d theta| = log(1 + sum_i eps_i cos(theta + sigma_i))``; ``d theta'/d theta >= 1 - b > 0`` so the map
is a bijection of the circle; the inverse is found by Newton's method.

SU(N): perturb ``U -> e^delta U`` (``delta`` in su(N); Haar measure is Lebesgue in ``delta`` at ``delta = 0``).
Then ``X -> X + L(delta)`` with ``L(delta) = sum_i eps_i Pi(delta U S_i)`` and, with the right-trivialised
differential of the exponential, ``d(e^X) e^{-X} = phi(ad_X) dX``, ``phi(z) = (e^z - 1)/z``:

    dU' U'^{-1} = phi(ad_X) L(delta) + Ad_{e^X} delta = Ad_{e^X} [1 + psi(ad_X) L] delta,  psi(z) = (1 - e^{-z})/z,

so ``log|det dU'/dU|_Haar = log|det(1 + psi(ad_X) L)|`` (``det Ad = 1``). ``psi(A)`` is the top right block of
``exp([[-A, 1], [0, 0]])`` (``= int_0^1 e^{-s A} ds``). Both ``ad_X`` and ``L`` are ``(N^2 - 1)``-square matrices
in the basis of :meth:`~latticekit.groups.SUGroup.from_coords`. ``|Pi(delta W)| <= |delta|`` makes ``||L|| <= b``
and ``||psi(ad_X)|| <= 1``, so the Jacobian is invertible and ``U -> e^{-X(U)} U'`` is a contraction: the
inverse is its fixed point (iterated until the change is below rounding, unrolled for autograd).

Gauge equivariance: ``U S_i -> Omega(x) U S_i Omega(x)^dag``, ``Pi`` and ``exp`` commute with conjugation and
``eps`` is invariant, so ``U' -> Omega(x) U' Omega(x+mu)^dag``; the log-det is invariant.

Examples
--------
>>> import torch, latticekit as lk
>>> G = lk.SU(2)
>>> layer = StapleResidual(G, 2, hidden=(4,)).to(torch.float64)
>>> U = G.random(lk.backends.rng(0, backend="torch"), (3,)); S = G.random(lk.backends.rng(1, backend="torch"), (3, 2))
>>> V, ld = layer(U, context=S)
>>> W, ldi = layer.inverse(V, context=S)
>>> bool(torch.allclose(W, U)), bool(torch.allclose(ld, -ldi))
(True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.groups import Group, SUGroup, U1Group, wrap_angle

from ..base import FlowLayer
from ..spectral import reunitarize
from .heatbath_prior import _check_links, check_staples
from ..nets import mlp
from .invariants import staple_invariants

__all__ = ["StapleResidual"]


class StapleResidual(FlowLayer):
    """Residual coupling ``U' = exp(sum_i eps_i Pi(U S_i)) U`` of one link given its staples (module docstring).

    Parameters
    ----------
    group : Group
        ``U1`` or ``SU(N)``.
    n_staples : int
    hidden : sequence of int
        Hidden widths of the MLP giving ``eps``.
    act : str
    bound : float
        ``b`` in ``sum |eps_i| <= b``; ``0 < b < 1`` (default 0.5).
    zero_init : bool
        Start as the identity (``eps = 0``).
    max_iter : int
        Iterations of the inverse (Newton for U(1), fixed point for SU(N)).

    Examples
    --------
    >>> import latticekit as lk
    >>> StapleResidual(lk.U1, 2, bound=0.9).bound
    0.9
    """

    def __init__(self, group: Group, n_staples: int, *, hidden: Sequence[int] = (16,), act: str = "leaky_relu",
                 bound: float = 0.5, zero_init: bool = False, max_iter: int = 200) -> None:
        super().__init__()
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
        if isinstance(n_staples, bool) or not isinstance(n_staples, int) or n_staples < 1:
            raise ValueError(f"n_staples={n_staples!r}: a staple-conditional coupling needs at least one staple")
        if not 0.0 < float(bound) < 1.0:
            raise ValueError(f"bound={bound!r}: expected 0 < bound < 1 (sum |eps_i| <= bound keeps the map invertible)")
        self.group, self.n_staples, self.bound, self.max_iter = group, int(n_staples), float(bound), int(max_iter)
        n_feat = max(2 * (n_staples - 1), 1)
        self.net = mlp(n_feat, n_staples, hidden, act, zero_init)

    def extra_repr(self) -> str:
        return f"group={self.group.name}, n_staples={self.n_staples}, bound={self.bound}"

    def _eps(self, staples: torch.Tensor) -> torch.Tensor:
        G, n = self.group, self.n_staples
        real = staples.real.dtype if staples.is_complex() else staples.dtype
        if n == 1:
            feats = torch.ones(staples.shape[0], 1, dtype=real, device=staples.device)
        else:
            feats = staple_invariants(G, staples[:, 1:], staples[:, 0])
        return (self.bound / n) * torch.tanh(self.net(feats))

    # -- U(1) ------------------------------------------------------------------------------------
    def _u1(self, theta: torch.Tensor, staples: torch.Tensor, eps: torch.Tensor, inverse: bool
            ) -> tuple[torch.Tensor, torch.Tensor]:
        def g(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a = t[:, None] + staples
            return torch.sum(eps * torch.sin(a), dim=-1), 1.0 + torch.sum(eps * torch.cos(a), dim=-1)

        if not inverse:
            shift, deriv = g(theta)
            return wrap_angle(theta + shift), torch.log(deriv)
        t = theta
        for _ in range(self.max_iter):                      # Newton on theta + shift(theta) = theta'
            shift, deriv = g(t)
            step = (t + shift - theta) / deriv
            t = t - step
            if float(step.detach().abs().max()) < 4 * torch.finfo(t.dtype).eps:
                break
        _, deriv = g(t)
        return wrap_angle(t), -torch.log(deriv)

    # -- SU(N) -----------------------------------------------------------------------------------
    def _x(self, U: torch.Tensor, staples: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        G = self.group
        W = torch.matmul(U[:, None], staples)                                         # U S_i, (M, n, N, N)
        X = torch.sum(eps.to(W.dtype)[..., None, None] * G.project_algebra(W, nd=0), dim=1)
        return X, W

    def _logdet(self, X: torch.Tensor, W: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        G = self.group
        na = G.algebra_dim
        basis = G.from_coords(torch.eye(na, dtype=eps.dtype, device=eps.device), nd=0)      # (na, N, N): T_b
        # L[:, a, b] = coords_a(sum_i eps_i Pi(T_b W_i))
        TW = torch.matmul(basis[None, None], W[:, :, None])                            # (M, n, na, N, N)
        Lc = G.to_coords(G.project_algebra(TW, nd=0), nd=0)                            # (M, n, na(b), na(a))
        L = torch.sum(eps[:, :, None, None] * Lc, dim=1).transpose(-1, -2)
        # ad_X[:, a, b] = coords_a([X, T_b])
        XT = torch.matmul(X[:, None], basis[None]) - torch.matmul(basis[None], X[:, None])
        A = G.to_coords(XT, nd=0).transpose(-1, -2)
        eye = torch.eye(na, dtype=A.dtype, device=A.device).expand_as(A)
        block = torch.cat([torch.cat([-A, eye], dim=-1), torch.zeros_like(torch.cat([A, A], dim=-1))], dim=-2)
        psi = torch.linalg.matrix_exp(block)[..., :na, na:]
        return torch.linalg.slogdet(eye + psi @ L).logabsdet

    def _sun(self, U: torch.Tensor, staples: torch.Tensor, eps: torch.Tensor, inverse: bool
             ) -> tuple[torch.Tensor, torch.Tensor]:
        G, N = self.group, self.group.N
        if not inverse:
            X, W = self._x(U, staples, eps)
            return reunitarize(G.mul(G.exp(X, nd=0), U, nd=0), N, nd=0), self._logdet(X, W, eps)
        V = U
        tol = 8 * torch.finfo(eps.dtype).eps
        for _ in range(self.max_iter):                      # fixed point V = exp(-X(V)) U'
            X, _ = self._x(V, staples, eps)
            new = G.mul(G.exp(-X, nd=0), U, nd=0)
            change = float((new - V).detach().abs().max())
            V = new
            if change < tol:
                break
        V = reunitarize(V, N, nd=0)
        X, W = self._x(V, staples, eps)
        return V, -self._logdet(X, W, eps)

    def _transform(self, U: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        M = check_staples(context, self.group, self.n_staples, "context")
        _check_links(U, self.group, M)
        eps = self._eps(context)
        if isinstance(self.group, U1Group):
            return self._u1(U, context, eps, inverse)
        return self._sun(U, context, eps, inverse)
