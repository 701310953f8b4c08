"""Multiscale models (arXiv:2404.10819, Algorithm 2) and the multiscale prior of a fine-lattice flow.

Algorithm 2 (``d``-dimensional multiscale model; input: higher-dimensional staples ``S``):

    sample the gauge field U at the coarsest scale
    while U has not reached the finest scale: choose a doubling direction mu; U <- DoublingLayer(U, mu, S)

:class:`MultiscaleModel` is Algorithm 2 for a grid of ``k >= 2`` axes with ``m`` sandwiches (the
higher-dimensional staples, :mod:`.staples`): the top-level model (``m = 0``) draws its coarsest field from
a coarse prior (:mod:`.coarse_priors`); a slice model inside a doubling layer (``m >= 1``) draws every coarsest
link from a staple-conditional model on its ``2 m`` sandwich staples (the paths that already connect its end
points, Sec. 4). The doubling layers (:class:`~.doubling.DoublingLayer`, Algorithm 1) follow the order of
:func:`~.recursion.doubling_order`. ``log q`` is the sum of the coarse term and the terms of every layer
(eq. 10 applied layer by layer); :meth:`MultiscaleModel.log_prob` evaluates it for a given field by taking
the layers apart in reverse order.

:class:`MultiscalePrior` is the top-level model as a :class:`~latticekit.flows.Prior` of the fine lattice:
``Model(MultiscalePrior(...), fine_flow)`` is the paper's "multiscale model integrated into the overall model
as a prior, with an additional flow applied at the finest scale" (Sec. 3.2), trained end to end by reverse
KL with :class:`~latticekit.flows.Trainer` (the draws are reparametrised: Haar draws do not depend on
parameters, heatbath draws carry implicit gradients, :mod:`.heatbath_prior`).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import Model, Flow
>>> prior = MultiscalePrior(lk.U1, lk.Lattice((8, 8)), (2, 2), spec=ConditionalSpec(n_layers=1, hidden=(4,)))
>>> model = Model(prior, Flow([])).to(torch.float64)
>>> U, lq = model.sample(2, lk.backends.rng(0, backend="torch"))
>>> U.shape, bool(torch.allclose(lq, model.log_prob(U)))
(torch.Size([2, 2, 8, 8]), True)
>>> prior.order
[0, 1, 0, 1]
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import torch
from torch import nn

from latticekit.backends import Generator
from latticekit.groups import Group, SUGroup, U1Group
from latticekit.lattice import Lattice

from ..priors import Prior, _check_n, check_rng
from .coarse_priors import coarse_prior as make_coarse_prior
from .conditional import ConditionalSpec
from .doubling import DoublingLayer, from_rows, gather_staples, to_rows
from .recursion import Draw, Geometry, doubling_order, doublings
from .staples import Sandwich

__all__ = ["MultiscaleModel", "MultiscalePrior"]


class MultiscaleModel(nn.Module):
    """Algorithm 2 on a ``k``-dimensional grid with ``n_sandwiches`` sandwiches (module docstring).

    Parameters
    ----------
    group : Group
    coarse : tuple of int
        Coarsest grid, per axis.
    target : tuple of int
        Final grid, per axis (``coarse x 2^k``).
    dirs : tuple of int
        Global direction of each axis.
    order : sequence of int
        Doubling order (global directions, those of ``dirs``).
    n_sandwiches : int
        0 for a top-level model (then ``coarse_prior`` is required).
    spec : ConditionalSpec
    units : tuple of int
        Fine steps per target step of each axis.
    top_coarse, top_order : top-level coarse shape (per global direction) and order, for the slice models.
    coarse_prior : Prior, optional
        Top level only: the distribution of the coarsest field ``(n, k, *G, *coarse)``.
    """

    def __init__(self, group: Group, *, coarse: Sequence[int], target: Sequence[int], dirs: Sequence[int],
                 order: Sequence[int], n_sandwiches: int, spec: ConditionalSpec, units: Sequence[int],
                 top_coarse: Sequence[int], top_order: Sequence[int], coarse_prior: Prior | None = None) -> None:
        super().__init__()
        k = len(target)
        if k < 2:
            raise ValueError(f"target={tuple(target)}: a multiscale model needs a grid of at least 2 dimensions")
        self.group, self.k = group, k
        self.coarse, self.target = tuple(int(c) for c in coarse), tuple(int(t) for t in target)
        self.dirs, self.units = tuple(int(d) for d in dirs), tuple(int(u) for u in units)
        self.m = int(n_sandwiches)
        axis_order = doubling_order(self.coarse, self.target, [self.dirs.index(int(d)) for d in order])
        #: doubling directions (global)
        self.order = [self.dirs[a] for a in axis_order]
        self.block0 = tuple(t // c for t, c in zip(self.target, self.coarse))
        if self.m == 0:
            if coarse_prior is None:
                raise ValueError("coarse_prior: a top-level multiscale model (no sandwiches) needs a coarse prior")
            self.coarse_prior: nn.Module | None = coarse_prior
            self.coarse_links = None
        else:
            self.coarse_prior = None
            #: the coarsest links of a slice, one staple-conditional model per axis (2 m sandwich staples)
            self.coarse_links = nn.ModuleList(spec.build(group, 2 * self.m) for _ in range(k))
        layers = []
        shape, block = list(self.coarse), list(self.block0)
        for a in axis_order:
            layers.append(DoublingLayer(group, axis=a, shape=tuple(shape), block=tuple(block), units=self.units,
                                        dirs=self.dirs, n_sandwiches=self.m, spec=spec, coarse=top_coarse,
                                        order=top_order))
            shape[a] *= 2
            block[a] //= 2
        self.layers = nn.ModuleList(layers)

    def extra_repr(self) -> str:
        return (f"group={self.group.name}, dirs={self.dirs}, coarse={self.coarse}, target={self.target}, "
                f"order={self.order}, n_sandwiches={self.m}")

    @property
    def _ne(self) -> int:
        return len(tuple(self.group.element_shape))

    # -- the coarsest scale ------------------------------------------------------------------------
    def _coarse(self, U: torch.Tensor | None, n: int, rng: Generator | None, sandwiches: Sequence[Sandwich],
                geo: Geometry | None, records: list[Draw] | None) -> tuple[torch.Tensor, torch.Tensor]:
        G, k, ne = self.group, self.k, self._ne
        eshape = tuple(G.element_shape)
        if self.m == 0:
            assert self.coarse_prior is not None
            if U is None:
                assert rng is not None
                U, lq = self.coarse_prior.sample(n, rng)
            else:
                lq = self.coarse_prior.log_prob(U)
            if records is not None and geo is not None:
                records.append(Draw("coarse", -1, -1, geo.sites(self.coarse, self.block0), geo.batch, U.detach(),
                                    lq.detach(), [], self.coarse_prior,
                                    tuple(b * u for b, u in zip(self.block0, self.units))))
            return U, lq
        assert self.coarse_links is not None
        links, total = [], None
        given = None if U is None else list(U.unbind(1))
        for c in range(k):
            S = gather_staples(sandwiches, c, self.block0, ne)                      # (B, n, 2 m, *G)
            B, nl = S.shape[:2]
            ctx = S.reshape((B * nl,) + tuple(S.shape[2:]))
            if given is None:
                assert rng is not None
                rows, lq = self.coarse_links[c].sample(B * nl, rng, context=ctx)
                rows = rows.reshape((B, nl) + eshape)
            else:
                rows = to_rows(given[c], ne, k)
                lq = self.coarse_links[c].log_prob(rows.reshape((B * nl,) + eshape), context=ctx)
            lq = lq.reshape(B, nl)
            if records is not None and geo is not None:
                records.append(Draw("coarse_link", self.dirs[c], self.block0[c] * self.units[c],
                                    geo.sites(self.coarse, self.block0), geo.batch, rows.detach(), lq.detach(),
                                    [(sw.tau, sw.delta) for sw in sandwiches], self.coarse_links[c]))
            links.append(from_rows(rows, ne, self.coarse))
            total = lq.sum(1) if total is None else total + lq.sum(1)
        assert total is not None
        return torch.stack(links, dim=1), total

    # -- Algorithm 2 -------------------------------------------------------------------------------
    def sample(self, n: int, rng: Generator, sandwiches: Sequence[Sandwich] = (), geo: Geometry | None = None,
               records: list[Draw] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fields ``(n, k, *G, *target)`` and their ``log q`` (``n`` = the sandwiches' batch for slices)."""
        if len(sandwiches) != self.m:
            raise ValueError(f"sandwiches: this model was built for {self.m}, got {len(sandwiches)}")
        U, lq = self._coarse(None, n, rng, sandwiches, geo, records)
        for layer in self.layers:
            U, lql = layer.sample(U, sandwiches, rng, geo, records)
            lq = lq + lql
        return U, lq

    def log_prob(self, U: torch.Tensor, sandwiches: Sequence[Sandwich] = (), geo: Geometry | None = None,
                 records: list[Draw] | None = None) -> torch.Tensor:
        """``log q`` ``(B,)`` of fields ``U`` ``(B, k, *G, *target)``; ``records`` get the draws in sampling order."""
        if len(sandwiches) != self.m:
            raise ValueError(f"sandwiches: this model was built for {self.m}, got {len(sandwiches)}")
        blocks: list[list[Draw]] = []
        total = None
        for layer in reversed(self.layers):
            blk: list[Draw] | None = [] if records is not None else None
            U, lql = layer.inverse(U, sandwiches, geo, blk)
            total = lql if total is None else total + lql
            if blk is not None:
                blocks.insert(0, blk)
        head: list[Draw] | None = [] if records is not None else None
        _, lq = self._coarse(U, U.shape[0], None, sandwiches, geo, head)
        if records is not None:
            assert head is not None
            records.extend(head)
            for blk in blocks:
                records.extend(blk)
        return lq if total is None else lq + total


class MultiscalePrior(Prior):
    """The top-level multiscale model (Algorithm 2) as the prior of a fine-lattice flow (module docstring).

    Parameters
    ----------
    group : Group
        ``latticekit.U1`` or ``SU(N)``.
    lattice : Lattice
        The target (fine) lattice, ``Nd >= 2``.
    coarse : sequence of int
        The coarse lattice; the target must be ``coarse x 2^k`` in every direction (one site per direction is
        allowed).
    order : sequence of int, optional
        Doubling directions (default: the directions in turn).
    coarse_prior : str or Prior
        ``"haar"`` (default), ``"theory"`` (the coarse Wilson theory at ``coarse_beta``, :mod:`.coarse_priors`),
        or a prior of fields ``(n, Nd, *G, *coarse)``.
    coarse_beta : float, optional
        Coupling of the coarse theory prior.
    coarse_sweeps : int
        Heatbath sweeps per draw of the coarse theory prior.
    spec : ConditionalSpec, optional
        Options of every staple-conditional model.

    Examples
    --------
    >>> import latticekit as lk
    >>> MultiscalePrior(lk.U1, lk.Lattice((8, 6)), (2, 2))
    Traceback (most recent call last):
    ...
    ValueError: coarse=(2, 2): the target lattice (8, 6) must be coarse x 2^k in every direction; direction 1 has 6 = 2 x 3
    """

    def __init__(self, group: Group, lattice: Lattice, coarse: Sequence[int], *, order: Sequence[int] | None = None,
                 coarse_prior: str | Prior = "haar", coarse_beta: float | None = None, coarse_sweeps: int = 20,
                 spec: ConditionalSpec | None = None) -> None:
        super().__init__()
        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd < 2:
            raise ValueError(f"lattice={lattice}: a multiscale gauge model needs at least 2 dimensions")
        if not isinstance(coarse, (tuple, list)) or any(isinstance(c, bool) or not isinstance(c, numbers.Integral)
                                                          for c in coarse):
            raise ValueError(f"coarse={coarse!r}: expected the coarse lattice's extents, a sequence of integers")
        coarse = tuple(int(c) for c in coarse)
        doublings(coarse, lattice.shape)                                   # refuses a bad coarse lattice
        order = doubling_order(coarse, lattice.shape, order)
        spec = spec if spec is not None else ConditionalSpec()
        if not isinstance(spec, ConditionalSpec):
            raise TypeError(f"spec={spec!r}: expected a ConditionalSpec (e.g. ConditionalSpec(n_layers=1))")
        spec.check(group)
        if coarse_beta is not None and not (isinstance(coarse_prior, str) and coarse_prior == "theory"):
            raise ValueError(f"coarse_beta={coarse_beta!r}: only read with coarse_prior='theory' (the coarse "
                             f"prior here is {coarse_prior!r})")
        clat = Lattice(coarse)
        prior = make_coarse_prior(group, clat, coarse_prior, beta=coarse_beta, sweeps=coarse_sweeps) \
            if isinstance(coarse_prior, str) else coarse_prior
        want = (lattice.nd,) + tuple(group.element_shape) + coarse
        if not isinstance(prior, Prior) or tuple(getattr(prior, "event_shape", ())) != want:
            raise ValueError(f"coarse_prior={coarse_prior!r}: expected 'haar', 'theory' or a prior of fields "
                             f"(n, {', '.join(map(str, want))})")
        self.group, self.lattice, self.coarse, self.spec = group, lattice, coarse, spec
        self.order = order
        self.event_shape = (lattice.nd,) + tuple(group.element_shape) + lattice.shape
        nd = lattice.nd
        self.model = MultiscaleModel(group, coarse=coarse, target=lattice.shape, dirs=tuple(range(nd)), order=order,
                                     n_sandwiches=0, spec=spec, units=(1,) * nd, top_coarse=coarse, top_order=order,
                                     coarse_prior=prior)

    def extra_repr(self) -> str:
        return f"group={self.group.name}, lattice={self.lattice.shape}, coarse={self.coarse}, order={self.order}"

    def _flat(self, z: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        nev = len(self.event_shape)
        # an unbatched field (batch ``()``) gives a 0-d log q, as HaarPrior's (DESIGN.md: batch axes possibly none)
        if not isinstance(z, torch.Tensor) or z.ndim < nev or tuple(z.shape[z.ndim - nev:]) != self.event_shape:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"z has shape {got}; expected (*batch, {', '.join(map(str, self.event_shape))})")
        self.group.check_dtype(z, name="z")
        # the prior's own dtype (its reference buffer follows .to(dtype)), with or without parameters: a float32
        # field in a float64 model failed inside nn.Linear, and one without parameters returned another dtype
        real = self.dtype
        cplx = torch.complex128 if real == torch.float64 else torch.complex64
        want = cplx if z.is_complex() else real
        if z.dtype != want:
            raise TypeError(f"z has dtype {z.dtype}; the model is {real}, so expected {want} "
                            "(convert the field, or the model with .to(dtype))")
        batch = tuple(z.shape[:z.ndim - nev])
        return z.reshape((-1,) + self.event_shape), batch

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        check_rng(rng)
        n = _check_n(n)
        return self.model.sample(n, rng)

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_context(context)
        flat, batch = self._flat(z)
        return self.model.log_prob(flat).reshape(batch)

    def sample_with_record(self, n: int, rng: Generator) -> tuple[torch.Tensor, torch.Tensor, list[Draw]]:
        """Like :meth:`sample`, also returning every draw with its fine-lattice geometry (:class:`~.recursion.Draw`)."""
        check_rng(rng)
        records: list[Draw] = []
        U, lq = self.model.sample(n, rng, (), Geometry.top(n, self.lattice.nd, self.device), records)
        return U, lq, records

    def log_prob_with_record(self, z: torch.Tensor) -> tuple[torch.Tensor, list[Draw]]:
        """Like :meth:`log_prob` (one batch axis), also returning the recovered draws in sampling order."""
        flat, batch = self._flat(z)
        if len(batch) != 1:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected exactly one batch axis")
        records: list[Draw] = []
        lq = self.model.log_prob(flat, (), Geometry.top(flat.shape[0], self.lattice.nd, flat.device), records)
        return lq, records
