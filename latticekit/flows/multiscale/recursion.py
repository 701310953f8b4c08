"""Bookkeeping of the multiscale recursion (arXiv:2404.10819, Algorithms 1 and 2, Sec. 4).

Doubling plan
-------------
A multiscale model doubles the lattice from a coarse shape to the target shape one direction at a time
(Algorithm 2: "Choose doubling direction ``mu``"). :func:`doubling_order` checks that the target is
``coarse x 2^k`` in every direction and returns the order of doubling directions: the given one, or by
default the directions in turn (``0, 1, ..., d-1, 0, 1, ...``, skipping those already at the target).

A ``(d-1)``-dimensional slice model (Algorithm 1, line 8) starts from the top-level coarse shape in its
directions and doubles them in the order of the top-level order restricted to its directions
(:func:`slice_order`), up to the resolution the enclosing model has reached: so every slice is built the
same way as the whole field, scale by scale. A one-dimensional slice (Algorithm 1, line 6, ``d = 2``) is
sampled link by link at its full resolution.

Geometry and records
--------------------
Every draw of a model can be recorded (:class:`Draw`) with the positions of its links on the *final fine
lattice*: a link at any scale is the product of the fine links along a straight line, and every staple at
any scale is a path on the fine lattice (:mod:`.staples`). :class:`Geometry` maps the grid of a (slice)
model at any stage to fine coordinates: the origin of each batch element (slices at different positions
are folded into the batch), the fine length of one target step per axis (``units``) and the global
direction of each axis (``dirs``). The tests rebuild every recorded link and staple from the fine field
with :class:`latticekit.loops.LoopBuilder` alone and recompute ``log q`` from them.

Examples
--------
>>> doubling_order((2, 2), (8, 8))
[0, 1, 0, 1]
>>> doubling_order((1, 2, 2), (4, 2, 8), order=[2, 0, 2, 0])
[2, 0, 2, 0]
>>> slice_order([0, 1, 0, 1, 2, 2], dirs=(1, 2), coarse=(2, 1), target=(4, 2))
[1, 2]
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

__all__ = ["Draw", "Geometry", "doubling_order", "doublings", "slice_order"]


def doublings(coarse: Sequence[int], target: Sequence[int], *, name: str = "coarse") -> list[int]:
    """Number of doublings per direction, ``log2(target / coarse)``; refuses anything else.

    Examples
    --------
    >>> doublings((1, 2), (8, 2))
    [3, 0]
    >>> doublings((2, 2), (6, 8))
    Traceback (most recent call last):
    ...
    ValueError: coarse=(2, 2): the target lattice (6, 8) must be coarse x 2^k in every direction; direction 0 has 6 = 2 x 3
    """
    coarse, target = tuple(int(c) for c in coarse), tuple(int(t) for t in target)
    if len(coarse) != len(target):
        raise ValueError(f"{name}={coarse}: expected {len(target)} extents (one per direction of the target "
                         f"lattice {target})")
    out = []
    for mu, (c, t) in enumerate(zip(coarse, target)):
        if c < 1:
            raise ValueError(f"{name}={coarse}: extents must be positive")
        if c > t:
            raise ValueError(f"{name}={coarse}: the coarse lattice is larger than the target lattice {target} in "
                             f"direction {mu}")
        q, r = divmod(t, c)
        if r or q & (q - 1):
            raise ValueError(f"{name}={coarse}: the target lattice {target} must be coarse x 2^k in every "
                             f"direction; direction {mu} has {t} = {c} x {t / c:g}")
        out.append(q.bit_length() - 1)
    return out


def doubling_order(coarse: Sequence[int], target: Sequence[int], order: Sequence[int] | None = None) -> list[int]:
    """The doubling directions from ``coarse`` to ``target`` (module docstring); ``order`` is checked.

    Examples
    --------
    >>> doubling_order((2, 2), (4, 8), order=[1, 1])
    Traceback (most recent call last):
    ...
    ValueError: order=[1, 1]: from (2, 2) to (4, 8) direction 0 needs 1 doubling(s) and direction 1 needs 2 doubling(s); the order doubles them 0 and 2 times
    """
    need = doublings(coarse, target)
    nd = len(need)
    if order is None:
        left, out = list(need), []
        while any(left):
            for mu in range(nd):
                if left[mu]:
                    out.append(mu)
                    left[mu] -= 1
        return out
    if not isinstance(order, (list, tuple)) or any(isinstance(o, bool) or not isinstance(o, numbers.Integral)
                                                   for o in order):
        raise ValueError(f"order={order!r}: expected a list of integer directions in 0..{nd - 1}")
    order = [int(o) for o in order]
    if any(o < 0 or o >= nd for o in order):
        raise ValueError(f"order={order}: expected directions in 0..{nd - 1}")
    got = [order.count(mu) for mu in range(nd)]
    if got != need:
        want = " and ".join(f"direction {mu} needs {n} doubling(s)" for mu, n in enumerate(need))
        raise ValueError(f"order={order}: from {tuple(coarse)} to {tuple(target)} {want}; the order doubles them "
                         f"{' and '.join(str(g) for g in got)} times")
    return order


def slice_order(order: Sequence[int], *, dirs: Sequence[int], coarse: Sequence[int], target: Sequence[int]) -> list[int]:
    """Global doubling order of a slice model with global directions ``dirs`` (module docstring).

    ``coarse`` and ``target`` are per slice axis; the result lists global directions.
    """
    need = dict(zip(dirs, doublings(coarse, target)))
    out = []
    for mu in order:
        if mu in need and need[mu] > 0:
            out.append(mu)
            need[mu] -= 1
    return out


@dataclass
class Geometry:
    """Where the grid of a (slice) model sits on the fine lattice (module docstring).

    Attributes
    ----------
    origin : LongTensor ``(B, d)``
        Fine coordinates of grid site 0 of every batch element.
    batch : LongTensor ``(B,)``
        The batch element of the top-level field each (folded) batch element belongs to.
    units : tuple of int
        Fine steps per target step of each axis of the model.
    dirs : tuple of int
        Global direction of each axis.
    """

    origin: torch.Tensor
    batch: torch.Tensor
    units: tuple[int, ...]
    dirs: tuple[int, ...]

    @classmethod
    def top(cls, n: int, nd: int, device: Any = None) -> "Geometry":
        """The top-level geometry: origin 0, batch ``0..n-1``, unit steps, directions ``0..nd-1``."""
        return cls(torch.zeros(n, nd, dtype=torch.int64, device=device), torch.arange(n, device=device),
                   (1,) * nd, tuple(range(nd)))

    def sites(self, shape: Sequence[int], block: Sequence[int], steps: Sequence[int] | None = None,
              offsets: Sequence[int] | None = None) -> torch.Tensor:
        """Fine coordinates ``(B, n, d)`` of the grid sites ``offsets + steps * i`` of a stage grid of ``shape``
        (``block`` target steps per grid step), in C order (the order of the flattened fields)."""
        k = len(shape)
        steps = (1,) * k if steps is None else tuple(steps)
        offsets = (0,) * k if offsets is None else tuple(offsets)
        axes = [torch.arange(o, L, s, device=self.origin.device) for o, L, s in zip(offsets, shape, steps)]
        grids = torch.meshgrid(*axes, indexing="ij")
        d = self.origin.shape[1]
        pos = torch.zeros(grids[0].numel(), d, dtype=torch.int64, device=self.origin.device)
        for c in range(k):
            pos[:, self.dirs[c]] += grids[c].reshape(-1) * int(block[c]) * self.units[c]
        return self.origin[:, None, :] + pos[None]

    def slice(self, axis: int, block_after: Sequence[int], n_pos: int) -> "Geometry":
        """The geometry of the sub-slices at odd positions along ``axis`` of a stage grid with ``block_after``,
        positions folded into the batch (``b * n_pos + j``)."""
        step = int(block_after[axis]) * self.units[axis]
        j = torch.arange(n_pos, device=self.origin.device)
        off = torch.zeros(n_pos, self.origin.shape[1], dtype=torch.int64, device=self.origin.device)
        off[:, self.dirs[axis]] = (2 * j + 1) * step
        origin = (self.origin[:, None, :] + off[None]).reshape(-1, self.origin.shape[1])
        batch = self.batch[:, None].expand(-1, n_pos).reshape(-1)
        keep = [c for c in range(len(self.dirs)) if c != axis]
        return Geometry(origin, batch, tuple(self.units[c] * int(block_after[c]) for c in keep),
                        tuple(self.dirs[c] for c in keep))


@dataclass
class Draw:
    """One recorded set of draws (module docstring).

    Attributes
    ----------
    role : str
        ``"coarse"`` (the top-level coarse field), ``"coarse_link"`` (coarse links of a slice model),
        ``"U_B"`` (eq. 5) or ``"perp"`` (one-dimensional slices, Algorithm 1 line 6).
    direction : int
        Global direction of the links (for ``"coarse"``: -1, the whole field).
    length : int
        Fine steps per link (for ``"coarse"``: -1, see ``blocks``).
    sites : LongTensor ``(B, n, d)``
        Fine coordinates of the links' start points (``"coarse"``: of the coarse sites).
    batch : LongTensor ``(B,)``
        Top-level batch element of each row.
    values : tensor ``(B, n, *G)``
        The links (``"coarse"``: the coarse field ``(B, d, *G, *L_coarse)``).
    log_q : tensor ``(B, n)``
        Log-density of each link under ``model`` (``"coarse"``: ``(B,)``, the coarse prior).
    staples : list of (tau, delta)
        The transverse direction and fine distance of each sandwich; the model's staples are, in this
        order, for each sandwich the lower and the upper one.
    model : module
        The conditional model (or coarse prior) that drew them.
    blocks : tuple of int
        ``"coarse"`` only: fine steps per coarse step in each direction.
    """

    role: str
    direction: int
    length: int
    sites: torch.Tensor
    batch: torch.Tensor
    values: torch.Tensor
    log_q: torch.Tensor
    staples: list[tuple[int, int]]
    model: Any
    blocks: tuple[int, ...] = field(default=())
