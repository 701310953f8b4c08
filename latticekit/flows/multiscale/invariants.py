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

from typing import Sequence

import torch
from torch import nn

from latticekit.groups import Group, U1Group

from ..nets import activation

__all__ = ["link_mlp", "staple_invariants"]


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


def link_mlp(n_in: int, n_out: int, hidden: Sequence[int], act: str, zero_init: bool) -> nn.Sequential:
    """A per-link MLP ``n_in -> hidden -> n_out``; ``zero_init`` zeroes the last layer (output 0).

    Examples
    --------
    >>> import torch
    >>> net = link_mlp(4, 3, (8,), "tanh", zero_init=True)
    >>> net(torch.ones(2, 4)).abs().max().item()
    0.0
    """
    if any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden={tuple(hidden)}: expected positive widths")
    dims = [int(n_in), *(int(h) for h in hidden), int(n_out)]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(activation(act))
    if zero_init:
        nn.init.zeros_(mods[-1].weight)
        nn.init.zeros_(mods[-1].bias)
    return nn.Sequential(*mods)
