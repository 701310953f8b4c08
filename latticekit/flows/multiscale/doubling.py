"""Doubling layers (arXiv:2404.10819, Fig. 1, eqs. 9-10; Algorithm 1 in any dimension).

A doubling layer takes a gauge field on a grid and doubles the number of sites along one axis ``a``
(global direction ``mu``), Algorithm 1:

1. sample ``U_B`` (one per coarse ``mu``-link, at the new sites): Haar (density 1, eq. 10) when the model has
   no sandwich (a top-level model, where nothing connects the end points of ``U_B`` yet), else from a
   staple-conditional model on the sandwich staples (:mod:`.staples`; Sec. 4, "if there already exist paths of
   links connecting the two endpoints of ``U_B``, then ``U_B`` could be sampled from a staple-conditional model
   conditioned on these paths");
2. ``U_A = U_mu U_B^dag`` (eq. 5, :mod:`.link_splitting`);
3. the new perpendicular links at the odd sites get a new sandwich: the hyperplanes below and above, with
   ``U_A`` and ``U_B`` as transverse links, i.e. the staples ``S_A``, ``S_B`` of eqs. 7-8, added to the inherited
   ones ("Add ``S_A``, ``S_B`` from Eqs. (7) and (8) to ``S``"), which are restricted to the slice;
4. the perpendicular slice: for a 2-dimensional grid a one-dimensional slice, every link drawn independently
   from a staple-conditional model (eq. 11) given all its staples; for ``k >= 3`` a ``(k-1)``-dimensional
   multiscale model (:class:`~.model.MultiscaleModel`, Algorithm 2) with the sandwiches routed in;
5. assemble the fine grid by eq. 9 (:func:`~.link_splitting.interleave`).

Density (eq. 10), tracked exactly per batch element:

    log q(U_fine) = log q(U_perp | U_A, U_B, U_coarse) + log q(U_B | U_coarse) + log q(U_coarse)

where the layer adds the first two terms (``U_A`` is fixed by ``U_B`` and ``U_coarse``; the map
``U_mu -> U_A`` at fixed ``U_B`` preserves Haar measure). :meth:`DoublingLayer.inverse` takes a fine grid
apart again: ``U_A``, ``U_B`` from the even/odd ``mu``-links, ``U_mu = U_A U_B``, the coarse ``nu``-links from the
even sites and ``U_perp`` from the odd ones, and evaluates the same two terms (staples never contain
``U_perp``, so they are rebuilt from the fine field exactly as they were when it was sampled).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.multiscale import ConditionalSpec
>>> layer = DoublingLayer(lk.U1, axis=0, shape=(2, 2), block=(2, 1), units=(1, 1), dirs=(0, 1),
...                       n_sandwiches=0, spec=ConditionalSpec(n_layers=1, hidden=(4,))).to(torch.float64)
>>> U = lk.U1.random(lk.backends.rng(0, backend="torch"), (3, 2), (2, 2))
>>> V, lq = layer.sample(U, [], lk.backends.rng(1, backend="torch"))
>>> W, lq2 = layer.inverse(V, [])
>>> V.shape, bool(torch.allclose(torch.cos(W - U), torch.ones_like(U))), bool(torch.allclose(lq, lq2))
(torch.Size([3, 2, 4, 2]), True, True)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from latticekit.backends import Generator
from latticekit.groups import Group

from .conditional import ConditionalSpec
from .link_splitting import deinterleave, interleave, join_links, split_links
from .recursion import Draw, Geometry
from .staples import Sandwich, fold_positions, subsample, unfold_positions

__all__ = ["DoublingLayer", "from_rows", "gather_staples", "to_rows"]


def to_rows(t: torch.Tensor, ne: int, nd: int) -> torch.Tensor:
    """``(B, *G, *L) -> (B, n, *G)`` (``ne`` group axes, ``nd`` lattice axes, sites in C order)."""
    flat = t.reshape(tuple(t.shape[:t.ndim - nd]) + (-1,))
    return torch.movedim(flat, -1, 1)


def from_rows(rows: torch.Tensor, ne: int, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_rows`: ``(B, n, *G) -> (B, *G, *shape)``."""
    t = torch.movedim(rows, 1, rows.ndim - 1)
    return t.reshape(tuple(t.shape[:-1]) + tuple(shape))


def gather_staples(sandwiches: Sequence[Sandwich], axis: int, block: Sequence[int], ne: int,
                   steps: Sequence[int] | None = None, offsets: Sequence[int] | None = None) -> torch.Tensor:
    """Staples ``(B, n, 2 m, *G)`` of the grid links along ``axis`` at the selected grid sites: for each
    sandwich its lower and upper staple (:meth:`~.staples.Sandwich.staples`)."""
    out = []
    for sw in sandwiches:
        for s in sw.staples(axis, block):
            if steps is not None:
                s = subsample(s, sw.k, steps, offsets)
            out.append(to_rows(s, ne, sw.k))
    return torch.stack(out, dim=2)


def _identity_like(group: Group, t: torch.Tensor) -> torch.Tensor:
    if not t.is_complex():
        return torch.zeros_like(t)
    N = group.N
    nd = t.ndim - 1 - 2
    eye = torch.eye(N, dtype=t.dtype, device=t.device).reshape((N, N) + (1,) * nd)
    return eye.expand(t.shape)


class DoublingLayer(nn.Module):
    """Algorithm 1: double a ``k``-dimensional grid along ``axis`` (module docstring).

    Parameters
    ----------
    group : Group
    axis : int
        The axis (of this model's ``k`` axes) to double.
    shape : tuple of int
        Grid shape before doubling.
    block : tuple of int
        Target steps of the model per grid step before doubling (``block[axis]`` even).
    units : tuple of int
        Fine steps per target step of each axis.
    dirs : tuple of int
        Global direction of each axis.
    n_sandwiches : int
        Sandwiches the model receives (0 at the top level).
    spec : ConditionalSpec
        Options of the staple-conditional models.
    coarse : tuple of int, optional
        Top-level coarse shape per *global* direction (for the slice models of ``k >= 3``).
    order : sequence of int, optional
        Top-level doubling order (global directions; for the slice models).
    """

    def __init__(self, group: Group, *, axis: int, shape: Sequence[int], block: Sequence[int], units: Sequence[int],
                 dirs: Sequence[int], n_sandwiches: int, spec: ConditionalSpec, coarse: Sequence[int] | None = None,
                 order: Sequence[int] | None = None) -> None:
        super().__init__()
        k = len(shape)
        if k < 2:
            raise ValueError(f"shape={tuple(shape)}: a doubling layer acts on grids of at least 2 dimensions")
        if not 0 <= axis < k:
            raise ValueError(f"axis={axis}: expected an axis in 0..{k - 1}")
        if block[axis] % 2:
            raise ValueError(f"block={tuple(block)}: the grid is already at the target resolution along axis {axis}")
        self.group, self.axis, self.k = group, int(axis), k
        self.shape, self.block = tuple(int(s) for s in shape), tuple(int(b) for b in block)
        self.units, self.dirs = tuple(int(u) for u in units), tuple(int(d) for d in dirs)
        self.m = int(n_sandwiches)
        self.shape_after = tuple(2 * s if c == axis else s for c, s in enumerate(self.shape))
        self.block_after = tuple(b // 2 if c == axis else b for c, b in enumerate(self.block))
        #: U_B given the sandwich staples (Haar when there is no sandwich: 0 staples)
        self.u_b = spec.build(group, 2 * self.m)
        self.sub_shape = tuple(s for c, s in enumerate(self.shape) if c != axis)
        if k == 2:
            #: the one-dimensional slice: every link given 2 (m + 1) staples (Algorithm 1, line 6)
            self.perp: nn.Module = spec.build(group, 2 * (self.m + 1))
        else:
            from .model import MultiscaleModel
            from .recursion import slice_order

            if coarse is None or order is None:
                raise ValueError("coarse, order: a doubling layer of a grid with k >= 3 axes builds a slice model and "
                                 "needs the top-level coarse shape and doubling order")
            sub_dirs = tuple(d for c, d in enumerate(self.dirs) if c != axis)
            sub_units = tuple(self.units[c] * self.block_after[c] for c in range(k) if c != axis)
            # a slice spans the whole periodic extent of its directions: its coarse grid has the top-level
            # coarse extents, its target is the grid the enclosing model has reached (recursion.py)
            sub_coarse = tuple(int(coarse[d]) for d in sub_dirs)
            #: the (k-1)-dimensional slice model (Algorithm 1, line 8)
            self.perp = MultiscaleModel(group, coarse=sub_coarse, target=self.sub_shape, dirs=sub_dirs,
                                        order=slice_order(order, dirs=sub_dirs, coarse=sub_coarse,
                                                          target=self.sub_shape),
                                        n_sandwiches=self.m + 1, spec=spec, units=sub_units, top_coarse=coarse,
                                        top_order=order)

    def extra_repr(self) -> str:
        return (f"axis={self.axis}, dirs={self.dirs}, shape={self.shape} -> {self.shape_after}, "
                f"n_sandwiches={self.m}")

    # -- pieces ------------------------------------------------------------------------------------
    @property
    def _ne(self) -> int:
        return len(tuple(self.group.element_shape))

    def _u_b_staples(self, sandwiches: Sequence[Sandwich]) -> torch.Tensor | None:
        """Sandwich staples of the ``U_B`` links (odd sites along ``axis`` of the doubled grid), ``(B, n, 2m, *G)``."""
        if not self.m:
            return None
        a, k = self.axis, self.k
        return gather_staples(sandwiches, a, self.block_after, self._ne, [2 if c == a else 1 for c in range(k)],
                              [1 if c == a else 0 for c in range(k)])

    def _sandwiches(self, links_after: list[torch.Tensor], sandwiches: Sequence[Sandwich]) -> list[Sandwich]:
        """The sandwiches of the perpendicular slice: the inherited ones restricted to it, then the new one
        (``S_A``, ``S_B`` of eqs. 7-8: Algorithm 1, line 4)."""
        a = self.axis
        new = Sandwich.from_doubling(self.group, links_after, a, tau=self.dirs[a],
                                     delta=self.block_after[a] * self.units[a])
        return [sw.restrict(a, self.block_after) for sw in sandwiches] + [new]

    def _record(self, records: list[Draw] | None, geo: Geometry | None, role: str, sites_geo: Geometry | None,
                direction: int, length: int, sites: torch.Tensor | None, rows: torch.Tensor, lq: torch.Tensor,
                sandwiches: Sequence[Sandwich], model: Any) -> None:
        if records is None or sites_geo is None or sites is None:
            return
        records.append(Draw(role, direction, length, sites, sites_geo.batch, rows.detach(), lq.detach(),
                            [(sw.tau, sw.delta) for sw in sandwiches], model))

    def _u_b_sites(self, geo: Geometry | None) -> torch.Tensor | None:
        if geo is None:
            return None
        a, k = self.axis, self.k
        return geo.sites(self.shape_after, self.block_after, [2 if c == a else 1 for c in range(k)],
                         [1 if c == a else 0 for c in range(k)])

    def _perp_1d(self, sub_sw: list[Sandwich], rows: torch.Tensor | None, rng: Generator | None,
                 geo: Geometry | None, records: list[Draw] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The one-dimensional slice (Algorithm 1, line 6): sample (``rows`` None) or evaluate ``rows``."""
        G = self.group
        S = gather_staples(sub_sw, 0, (1,), self._ne)                          # (B', n, 2 (m + 1), *G)
        Bp, n = S.shape[:2]
        flat = S.reshape((Bp * n,) + tuple(S.shape[2:]))
        if rows is None:
            assert rng is not None
            links, lq = self.perp.sample(Bp * n, rng, context=flat)
            rows = links.reshape((Bp, n) + tuple(G.element_shape))
        else:
            lq = self.perp.log_prob(rows.reshape((Bp * n,) + tuple(G.element_shape)), context=flat)
        lq = lq.reshape(Bp, n)
        sub_geo = geo.slice(self.axis, self.block_after, self.shape[self.axis]) if geo is not None else None
        if sub_geo is not None:
            self._record(records, geo, "perp", sub_geo, sub_geo.dirs[0], sub_geo.units[0],
                         sub_geo.sites(self.sub_shape, (1,)), rows, lq, sub_sw, self.perp)
        return rows, lq.sum(1)

    # -- the layer ---------------------------------------------------------------------------------
    def sample(self, U: torch.Tensor, sandwiches: Sequence[Sandwich], rng: Generator, geo: Geometry | None = None,
               records: list[Draw] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Algorithm 1: the doubled grid ``(B, k, *G, *shape_after)`` and ``log q(U_B, U_perp | U)`` ``(B,)``."""
        G, a, k, ne = self.group, self.axis, self.k, self._ne
        B = U.shape[0]
        links = list(U.unbind(1))
        eshape = tuple(G.element_shape)
        n_b = math.prod(self.shape)
        S_B = self._u_b_staples(sandwiches)
        ctx = None if S_B is None else S_B.reshape((B * n_b,) + tuple(S_B.shape[2:]))
        ub, lq_b = self.u_b.sample(B * n_b, rng, context=ctx)                # line 2 (Haar without sandwiches)
        ub_rows, lq_b = ub.reshape((B, n_b) + eshape), lq_b.reshape(B, n_b)
        U_B = from_rows(ub_rows, ne, self.shape)
        U_A = split_links(G, links[a], U_B, nd=k)                             # line 3, eq. 5
        self._record(records, geo, "U_B", geo, self.dirs[a], self.block_after[a] * self.units[a],
                     self._u_b_sites(geo), ub_rows, lq_b, sandwiches, self.u_b)
        after = [interleave(U_A, U_B, nd=k, axis=a) if c == a else
                 interleave(links[c], _identity_like(G, links[c]), nd=k, axis=a) for c in range(k)]
        sub_sw = self._sandwiches(after, sandwiches)                          # line 4
        n_pos = self.shape[a]
        if k == 2:                                                            # lines 5-6
            rows, lq_p = self._perp_1d(sub_sw, None, rng, geo, records)
            perp = [from_rows(rows, ne, self.sub_shape)]
        else:                                                                 # line 8
            sub_geo = geo.slice(a, self.block_after, n_pos) if geo is not None else None
            P, lq_p = self.perp.sample(B * n_pos, rng, sub_sw, sub_geo, records)
            perp = list(P.unbind(1))
        lq_p = lq_p.reshape(B, n_pos).sum(1)
        out, j = [], 0                                                        # line 10, eq. 9
        for c in range(k):
            if c == a:
                out.append(after[a])
            else:
                out.append(interleave(links[c], unfold_positions(perp[j], k, a, n_pos), nd=k, axis=a))
                j += 1
        return torch.stack(out, dim=1), lq_b.sum(1) + lq_p                   # eq. 10

    def inverse(self, V: torch.Tensor, sandwiches: Sequence[Sandwich], geo: Geometry | None = None,
                records: list[Draw] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The grid before doubling (``U_mu = U_A U_B``, coarse links from the even sites) and
        ``log q(U_B, U_perp | U)`` of the given doubled grid ``V`` ``(B, k, *G, *shape_after)``."""
        G, a, k, ne = self.group, self.axis, self.k, self._ne
        if tuple(V.shape[V.ndim - k:]) != self.shape_after or V.shape[1] != k:
            raise ValueError(f"V has shape {tuple(V.shape)}; expected (B, {k}, *G, {', '.join(map(str, self.shape_after))})")
        B = V.shape[0]
        links = list(V.unbind(1))
        U_A, U_B = deinterleave(links[a], nd=k, axis=a)
        eshape = tuple(G.element_shape)
        ub_rows = to_rows(U_B, ne, k)
        n_b = ub_rows.shape[1]
        S_B = self._u_b_staples(sandwiches)
        ctx = None if S_B is None else S_B.reshape((B * n_b,) + tuple(S_B.shape[2:]))
        lq_b = self.u_b.log_prob(ub_rows.reshape((B * n_b,) + eshape), context=ctx).reshape(B, n_b)
        self._record(records, geo, "U_B", geo, self.dirs[a], self.block_after[a] * self.units[a],
                     self._u_b_sites(geo), ub_rows, lq_b, sandwiches, self.u_b)
        sub_sw = self._sandwiches(links, sandwiches)     # the perpendicular links are not read
        n_pos = self.shape[a]
        coarse, perp = [], []
        for c in range(k):
            if c == a:
                coarse.append(join_links(G, U_A, U_B, nd=k))                  # eq. 5
            else:
                even, odd = deinterleave(links[c], nd=k, axis=a)              # eq. 9
                coarse.append(even)
                perp.append(fold_positions(odd, k, a))
        if k == 2:
            _, lq_p = self._perp_1d(sub_sw, to_rows(perp[0], ne, 1), None, geo, records)
        else:
            sub_geo = geo.slice(a, self.block_after, n_pos) if geo is not None else None
            lq_p = self.perp.log_prob(torch.stack(perp, dim=1), sub_sw, sub_geo, records)
        return torch.stack(coarse, dim=1), lq_b.sum(1) + lq_p.reshape(B, n_pos).sum(1)
