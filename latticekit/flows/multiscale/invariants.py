"""Gauge-invariant features of a set of staples, and the per-link networks that read them.

A staple ``S_i`` of a link ``U_mu(x)`` runs from ``x + mu`` back to ``x`` (arXiv:2404.10819, Sec. 3.1:
"abstract staples"), so under ``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` it transforms as
``S_i -> Omega(x+mu) S_i Omega(x)^dag``. For two such staples ``R^dag S_i`` is a closed loop at ``x``
(``R^dag`` walks from ``x`` to ``x + mu``, ``S_i`` back), transforming as ``Omega(x) (.) Omega(x)^dag``: its
trace is gauge invariant. :func:`staple_invariants` returns, for a reference
staple ``R`` (one per link, built from the same staples, e.g. the projected weighted sum of eq. 12),

* U(1): ``(cos(sigma_i - rho), sin(sigma_i - rho))`` (``sigma_i`` the staple angles, ``rho`` the reference angle);
* SU(N): ``(Re, Im) tr(R^dag S_i) / N``;

``2 n`` real numbers per link, in the order ``(re_1, im_1, re_2, im_2, ...)``. They depend on the staples
only, never on the link: a coupling conditioned on them stays a bijection of the link (eq. 11).

Examples
--------
>>> import torch, latticekit as lk
>>> S = torch.tensor([[0.5, 2.0]], dtype=torch.float64)             # one U(1) link, two staples
>>> [round(v, 6) for v in staple_invariants(lk.U1, S, torch.tensor([0.5], dtype=torch.float64))[0].tolist()]
[1.0, 0.0, 0.070737, 0.997495]
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latticekit.groups import Group, U1Group


__all__ = ["register_staple_weights", "staple_invariants"]


def staple_invariants(group: Group, staples: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Gauge-invariant features ``(M, 2 n)`` of staples ``(M, n, *G)`` relative to ``ref`` ``(M, *G)`` (module docstring).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> G = lk.SU(2)
    >>> S = G.random(lk.backends.rng(0, backend="torch"), (3, 2))
    >>> f = staple_invariants(G, S, S[:, 0])
    >>> f.shape, [round(v, 12) for v in f[0, :2].tolist()]
    (torch.Size([3, 4]), [1.0, 0.0])
    """
    if isinstance(group, U1Group):
        d = staples - ref[:, None]
        feats = torch.stack([torch.cos(d), torch.sin(d)], dim=-1)
    else:
        t = torch.sum(ref.conj()[:, None] * staples, dim=(-2, -1)) / group.N        # tr(R^dag S_i)
        feats = torch.stack([t.real, t.imag], dim=-1)
    return feats.reshape(staples.shape[0], -1)


def register_staple_weights(module: nn.Module, n_staples: int, alpha: Any = None, learn_alpha: bool = True) -> None:
    """Give ``module`` the staple weights ``alpha_i`` of the active loop ``U sum_i alpha_i S_i`` (eqs. 12, 15):
    a parameter (``learn_alpha``) or a buffer named ``alpha``, all ones by default.

    Examples
    --------
    >>> m = nn.Module(); register_staple_weights(m, 3, learn_alpha=False); m.alpha.tolist()
    [1.0, 1.0, 1.0]
    """
    a = torch.ones(n_staples) if alpha is None else torch.tensor([float(v) for v in alpha])
    if a.shape != (n_staples,):
        raise ValueError(f"alpha={tuple(alpha or ())!r}: expected {n_staples} staple weights")
    a = a.to(torch.get_default_dtype())
    if learn_alpha:
        module.alpha = nn.Parameter(a)
    else:
        module.register_buffer("alpha", a)
