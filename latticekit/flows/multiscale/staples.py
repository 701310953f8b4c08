"""Staples of doubling layers: ``S_A``, ``S_B`` (eqs. 7-8) and the out-of-plane staples of slices.

Abbott et al., arXiv:2404.10819. A doubling layer along ``mu`` (Fig. 1) splits every ``mu``-link of the coarse
field into ``U_A`` (at the old site ``x``) and ``U_B`` (at the new site ``x + mu/2``), eq. 5, and then needs the
staples of the new perpendicular links ``U_perp(x + mu/2)`` (direction ``nu``):

    S_A(x + mu/2) = U_A^dag(x + nu) U_nu^dag(x) U_A(x)                                       (eq. 7)
    S_B(x + mu/2) = U_B(x + mu/2 + nu) U_nu^dag(x + mu) U_B^dag(x + mu/2)                      (eq. 8)

both paths from the end ``x + mu/2 + nu`` of ``U_perp`` back to its start: ``S_A`` through the old
hyperplane below (``x_mu`` even) and the link ``U_A``, ``S_B`` through the hyperplane above and ``U_B``. On the
fine lattice of the layer they are the library staples ``S_mu^-`` and ``S_mu^+`` of the ``nu``-link at the odd
``mu`` site (:meth:`latticekit.loops.LoopBuilder.staple`), and they contain no ``U_perp``.

The sandwich
------------
In ``d > 2`` dimensions the perpendicular links form a ``(d-1)``-dimensional slice (all directions but
``mu``, at the odd ``mu`` sites; Fig. 3) sampled by a ``(d-1)``-dimensional multiscale model (Algorithm 1,
line 8), which must see the links outside the slice (Sec. 4: "additional conditioning in the form of staples
constructed out of gauge links present in the higher-dimensional models"). Everything it needs is the
:class:`Sandwich` of the slice: the hyperplane below (``x_mu = 2j``) and above (``x_mu = 2j + 2``), with the
transverse links ``U_A`` (below -> slice) and ``U_B`` (slice -> above). For a slice link ``U_a(z)`` of length
``b`` (``b`` slice steps, once the slice model works on a coarser grid of its own) the two staples are

    S^-(z) = T^-(z + b a)^dag  [H^-_a(z) ... H^-_a(z + (b-1) a)]^dag  T^-(z)        (paths -mu, -a x b, +mu)
    S^+(z) = T^+(z + b a)      [H^+_a(z) ... H^+_a(z + (b-1) a)]^dag  T^+(z)^dag    (paths +mu, -a x b, -mu)

which for ``b = 1`` and the sandwich of a 2D doubling layer are eqs. 7 and 8. They are evaluated by the
library's one loop builder (:class:`latticekit.loops.LoopBuilder`, :meth:`~latticekit.loops.LoopBuilder.path`)
on a ``(k+1)``-dimensional auxiliary lattice ``(*L_slice, 3)``: layer ``t = 0`` holds ``H^-`` with the
transverse links ``T^-`` pointing to ``t = 1`` (the slice, its own links unused), ``t = 2`` holds ``H^+``, and
``T^+`` points from ``t = 1`` to ``t = 2``.

When a slice model inside a slice doubles a direction ``a`` of its own, its sub-slice at the odd positions
along ``a`` inherits every sandwich of the slice, *restricted* to the sub-slice (:meth:`Sandwich.restrict`:
the hyperplanes' links blocked to the sub-slice's grid, i.e. products of links, the transverse links taken
at the sub-slice sites) and gets one new sandwich from the doubling itself (:meth:`Sandwich.from_doubling`).
The positions of the sub-slices along ``a`` are folded into the batch axis (``batch * n_positions + j``).

Examples
--------
>>> import torch, latticekit as lk
>>> G = lk.SU(2); lat = lk.Lattice((4, 2))
>>> U = G.random(lk.backends.rng(0, backend="torch"), (1, 2), lat.shape)        # a fine field after doubling mu = 0
>>> sw = Sandwich.from_doubling(G, list(U.unbind(1)), axis=0)
>>> lo, hi = sw.staples(0, (1,))                                                  # the slice's only direction
>>> from latticekit.loops import LoopBuilder
>>> S_A = LoopBuilder(U, G, lat).staple(1, 0, -1)                               # S_mu^- of the nu-links
>>> bool(torch.allclose(lo, fold_positions(S_A[..., 1::2, :], 2, 0)))             # at the odd mu sites: eq. 7
True
"""

from __future__ import annotations

from typing import Sequence

import torch

from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder, Path

__all__ = ["Sandwich", "fold_positions", "subsample", "unfold_positions"]


def subsample(t: torch.Tensor, nd: int, steps: Sequence[int], offsets: Sequence[int] | None = None) -> torch.Tensor:
    """``t[..., off_0::step_0, ..., off_{nd-1}::step_{nd-1}]`` on the last ``nd`` axes.

    Examples
    --------
    >>> import torch
    >>> subsample(torch.arange(16).reshape(4, 4), 2, (2, 4), (1, 0)).tolist()
    [[4], [12]]
    """
    offsets = (0,) * nd if offsets is None else tuple(offsets)
    idx = (Ellipsis,) + tuple(slice(o, None, s) for o, s in zip(offsets, steps))
    return t[idx]


def fold_positions(t: torch.Tensor, nd: int, axis: int) -> torch.Tensor:
    """Move lattice axis ``axis`` (of the last ``nd``) into the batch: ``(B, ..., *L) -> (B * L_axis, ..., *L')``.

    The new batch index is ``b * L_axis + j``.

    Examples
    --------
    >>> import torch
    >>> fold_positions(torch.zeros(2, 5, 3, 4), 2, 0).shape
    torch.Size([6, 5, 4])
    """
    ax = t.ndim - nd + axis
    moved = torch.movedim(t, ax, 1)
    return moved.reshape((t.shape[0] * t.shape[ax],) + tuple(moved.shape[2:]))


def unfold_positions(t: torch.Tensor, nd: int, axis: int, n: int) -> torch.Tensor:
    """Inverse of :func:`fold_positions`: ``(B * n, ..., *L') -> (B, ..., *L)`` with ``L_axis = n``
    (``nd`` counts the lattice axes of the result).

    Examples
    --------
    >>> import torch
    >>> x = torch.arange(24.).reshape(2, 3, 4)
    >>> bool((unfold_positions(fold_positions(x, 2, 1), 2, 1, 4) == x).all())
    True
    """
    B = t.shape[0] // n
    u = t.reshape((B, n) + tuple(t.shape[1:]))
    return torch.movedim(u, 1, u.ndim - nd + axis)


class Sandwich:
    """The hyperplanes on either side of a slice and the transverse links into and out of it (module docstring).

    Parameters
    ----------
    group : Group
    lower, upper : list of tensors
        ``H^-_a``, ``H^+_a`` for each slice direction ``a``, each ``(B, *G, *L)``.
    t_lower, t_upper : tensor
        ``T^-`` (hyperplane below -> slice) and ``T^+`` (slice -> hyperplane above), ``(B, *G, *L)``.
    tau : int
        The global direction of the transverse links (for records and docs).
    delta : int
        Length of a transverse link in fine-lattice steps.
    """

    def __init__(self, group: Group, lower: list[torch.Tensor], upper: list[torch.Tensor], t_lower: torch.Tensor,
                 t_upper: torch.Tensor, *, tau: int = -1, delta: int = 1) -> None:
        if len(lower) != len(upper) or not lower:
            raise ValueError(f"lower/upper: expected the same positive number of link fields, got {len(lower)}, "
                             f"{len(upper)}")
        self.group = group
        self.lower, self.upper = list(lower), list(upper)
        self.t_lower, self.t_upper = t_lower, t_upper
        self.tau, self.delta = int(tau), int(delta)
        self.k = len(lower)
        self.shape = tuple(t_lower.shape[t_lower.ndim - self.k:])
        self.batch = int(t_lower.shape[0])

    def __repr__(self) -> str:
        return f"Sandwich(k={self.k}, shape={self.shape}, batch={self.batch}, tau={self.tau}, delta={self.delta})"

    # -- construction -----------------------------------------------------------------------------
    @classmethod
    def from_doubling(cls, group: Group, links: list[torch.Tensor], axis: int, *, tau: int = -1,
                      delta: int = 1) -> "Sandwich":
        """The sandwich of the slice at the odd positions along ``axis`` of a doubled field.

        ``links[c]`` are the link fields ``(B, *G, *L)`` of the field after splitting the ``axis`` links
        (``U_A`` at even, ``U_B`` at odd positions, eq. 9); the perpendicular links at odd positions are not
        read. Below slice ``j`` (position ``2j + 1``) lies the hyperplane ``2j``, above it ``2j + 2``.
        """
        k = len(links)
        nd = k
        L = links[axis].shape[-nd + axis]
        if L % 2:
            raise ValueError(f"links: the doubled extent along axis {axis} must be even, got {L}")

        def pick(t: torch.Tensor, off: int) -> torch.Tensor:
            sel = torch.roll(t, -off, dims=t.ndim - nd + axis) if off >= 2 else t
            sel = subsample(sel, nd, [2 if c == axis else 1 for c in range(nd)],
                            [off % 2 if c == axis else 0 for c in range(nd)])
            return fold_positions(sel, nd, axis)

        others = [c for c in range(k) if c != axis]
        lower = [pick(links[c], 0) for c in others]
        upper = [pick(links[c], 2) for c in others]
        return cls(group, lower, upper, pick(links[axis], 0), pick(links[axis], 1), tau=tau, delta=delta)

    # -- staples ----------------------------------------------------------------------------------
    def _builder(self) -> tuple[LoopBuilder, Lattice]:
        """Loop builder on the auxiliary lattice ``(*L, 3)`` (module docstring)."""
        G, k = self.group, self.k
        ref = self.t_lower
        one = G.identity((), (), precision="single" if ref.dtype in (torch.float32, torch.complex64) else "double",
                         backend="torch", device=ref.device)
        one = torch.as_tensor(one).to(ref.dtype).reshape(tuple(G.element_shape) + (1,) * k).expand(ref.shape)
        links = [torch.stack([self.lower[c], one, self.upper[c]], dim=-1) for c in range(k)]
        links.append(torch.stack([self.t_lower, self.t_upper, one], dim=-1))
        lat = Lattice(self.shape + (3,))
        return LoopBuilder.from_links(links, G, lat, cache=True), lat

    def staples(self, axis: int, block: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(S^-, S^+)`` of the slice links along ``axis`` on the grid of ``block`` (module docstring).

        ``block[c]`` slice steps per grid step in direction ``c``; the result lives on the grid sites
        (multiples of ``block``), ``(B, *G, *L / block)`` each.
        """
        if not 0 <= axis < self.k:
            raise ValueError(f"axis={axis}: expected a slice direction in 0..{self.k - 1}")
        block = tuple(int(b) for b in block)
        if len(block) != self.k or any(b < 1 or L % b for b, L in zip(block, self.shape)):
            raise ValueError(f"block={block}: expected {self.k} positive divisors of the slice extents {self.shape}")
        lb, lat = self._builder()
        k, b = self.k, block[axis]
        origin = tuple(b if c == axis else 0 for c in range(k)) + (0,)
        lo = lb.path(Path().b(k).b(axis, b).f(k), origin)        # -mu, -a x b, +mu  (eq. 7 for b = 1)
        hi = lb.path(Path().f(k).b(axis, b).b(k), origin)        # +mu, -a x b, -mu  (eq. 8 for b = 1)
        out = []
        for s in (lo, hi):
            s = s[..., 1]                                        # the slice layer t = 1
            out.append(subsample(s, k, block))
        return out[0], out[1]

    def restrict(self, axis: int, block: Sequence[int]) -> "Sandwich":
        """The sandwich of the sub-slice at positions ``block[axis] (2j + 1)`` along ``axis``, on the grid of
        ``block`` in the other directions (links blocked to products, transverse links subsampled), the
        positions ``j`` folded into the batch axis.
        """
        G, k = self.group, self.k
        if k < 2:
            raise ValueError("restrict: a one-dimensional slice has no sub-slice")
        block = tuple(int(b) for b in block)
        if len(block) != k or any(b < 1 or L % (2 * b if c == axis else b) for c, (b, L) in
                                  enumerate(zip(block, self.shape))):
            raise ValueError(f"block={block}: expected divisors of the slice extents {self.shape} (twice the block "
                             f"along axis {axis})")
        lat = Lattice(self.shape)
        steps = [2 * b if c == axis else b for c, b in enumerate(block)]
        offs = [block[axis] if c == axis else 0 for c in range(k)]
        others = [c for c in range(k) if c != axis]

        def blocked(field: list[torch.Tensor]) -> list[torch.Tensor]:
            lb = LoopBuilder.from_links(field, G, lat, cache=True)
            out = []
            for c in others:
                w = lb.path(Path().f(c, block[c])) if block[c] > 1 else field[c]
                out.append(fold_positions(subsample(w, k, steps, offs), k, axis))
            return out

        def sites(t: torch.Tensor) -> torch.Tensor:
            return fold_positions(subsample(t, k, steps, offs), k, axis)

        return Sandwich(G, blocked(self.lower), blocked(self.upper), sites(self.t_lower), sites(self.t_upper),
                        tau=self.tau, delta=self.delta)
