"""Link splitting (arXiv:2404.10819, eq. 5) and the interleaving of eq. 9.

A doubling layer along ``mu`` halves the lattice spacing ``a_mu``; every coarse ``mu``-link becomes two fine
links,

    U_mu(x) = U_A(x) U_B(x + a_mu mu / 2)                                                 (eq. 5)

"This can be achieved by sampling ``U_B`` from the uniform (Haar) distribution on the given gauge group, and
then defining ``U_A`` from Eq. (5)" (or, inside a higher-dimensional model, drawing ``U_B`` from a
staple-conditional model, Sec. 4 and Algorithm 1 line 2): :func:`split_links` gives
``U_A = U_mu U_B^dag`` (Algorithm 1, line 3) and :func:`join_links` the inverse ``U_mu = U_A U_B``. For fixed
``U_B`` the map ``U_mu -> U_A`` is right multiplication by a fixed group element, which preserves the Haar
measure: ``U_A`` needs no factor in the density (eq. 10).

The fine field is assembled by eq. 9 (:func:`interleave`): along the doubled axis, even fine sites carry the
coarse links (``nu != mu``) and ``U_A``, odd fine sites ``U_perp`` and ``U_B``; :func:`deinterleave` takes them
apart again.

Examples
--------
>>> import torch, latticekit as lk
>>> G = lk.SU(3); r = lk.backends.rng(0, backend="torch")
>>> U, UB = G.random(r, (2,), (4,)), G.random(r, (2,), (4,))
>>> UA = split_links(G, U, UB, nd=1)
>>> bool(torch.allclose(join_links(G, UA, UB, nd=1), U))
True
"""

from __future__ import annotations

import torch

from latticekit.groups import Group, U1Group, wrap_angle

__all__ = ["deinterleave", "interleave", "join_links", "split_links"]


def split_links(group: Group, U: torch.Tensor, U_B: torch.Tensor, *, nd: int) -> torch.Tensor:
    """``U_A = U U_B^dag`` (eq. 5 solved for ``U_A``; U(1) angles wrapped to ``(-pi, pi]``).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> [round(v, 6) for v in split_links(lk.U1, torch.tensor([3.0], dtype=torch.float64),
    ...                                  torch.tensor([-1.0], dtype=torch.float64), nd=1).tolist()]   # 4 - 2 pi
    [-2.283185]
    """
    UA = group.mul_adj(U, U_B, nd=nd)
    return wrap_angle(UA) if isinstance(group, U1Group) else UA


def join_links(group: Group, U_A: torch.Tensor, U_B: torch.Tensor, *, nd: int) -> torch.Tensor:
    """``U = U_A U_B`` (eq. 5; U(1) angles wrapped).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> join_links(lk.U1, torch.tensor([1.0]), torch.tensor([0.5]), nd=1).tolist()
    [1.5]
    """
    U = group.mul(U_A, U_B, nd=nd)
    return wrap_angle(U) if isinstance(group, U1Group) else U


def interleave(even: torch.Tensor, odd: torch.Tensor, *, nd: int, axis: int) -> torch.Tensor:
    """Fine field with ``even`` at the even and ``odd`` at the odd sites along lattice ``axis`` (eq. 9).

    Both have the same shape ``(..., *L)`` (``nd`` lattice axes); the result has ``2 L_axis``.

    Examples
    --------
    >>> import torch
    >>> interleave(torch.tensor([[0, 2]]), torch.tensor([[1, 3]]), nd=2, axis=1).tolist()
    [[0, 1, 2, 3]]
    """
    ax = even.ndim - nd + axis
    out = torch.stack([even, odd], dim=ax + 1)
    shape = list(even.shape)
    shape[ax] *= 2
    return out.reshape(shape)


def deinterleave(fine: torch.Tensor, *, nd: int, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(even, odd)`` sites along lattice ``axis``: the inverse of :func:`interleave`.

    Examples
    --------
    >>> import torch
    >>> [t.tolist() for t in deinterleave(torch.arange(4)[None], nd=2, axis=1)]
    [[[0, 2]], [[1, 3]]]
    """
    ax = fine.ndim - nd + axis
    L = fine.shape[ax]
    if L % 2:
        raise ValueError(f"fine has extent {L} along lattice axis {axis}; expected an even (doubled) extent")
    return fine.narrow(ax, 0, L).unflatten(ax, (L // 2, 2)).unbind(ax + 1)
