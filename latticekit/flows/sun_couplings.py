"""Gauge-equivariant SU(N) spectral coupling layers for any mask and any ``Nd >= 2`` (Boyda et al. 2021).

Boyda et al., PRD 103, 074504 (2021), arXiv:2008.05456 (spectral flows); staple-conditional active
loops as in Abbott et al., *Multiscale normalizing flows for gauge theories*, arXiv:2404.10819,
eqs. 12-14; the layers used for 4D SU(3) by Abbott et al., arXiv:2208.03832. Links ``U_mu(x)`` in
SU(N), field shape ``(*B, Nd, N, N, L0, ..., L_{Nd-1})`` (DESIGN.md); masks:
:mod:`latticekit.flows.masks`.

Staples and the active loop
---------------------------
The staples of ``U_mu(x)`` run from ``x + mu`` back to ``x`` (:class:`~latticekit.loops.LoopBuilder`)::

    S_rho^+(x) = U_rho(x+mu)       U_mu(x+rho)^dag U_rho(x)^dag            (the +rho side)
    S_rho^-(x) = U_rho(x+mu-rho)^dag U_mu(x-rho)^dag U_rho(x-rho)          (the -rho side)

A valid mask puts no other active link into the plaquettes of an active link, so its staples hold no
active link. The **active loop** starts with the active link, ``P(x) = U_mu(x) S(x)``:

* ``loop="plaquette"`` (default): ``S`` is the mask's active staple ``S_nu^side`` (``P = P_{mu nu}(x)``
  read from ``U_mu(x)`` for the side ``+1`` of the stripe and checkerboard masks);
* ``loop="staples"``: ``P = Proj(U_mu(x) M(x))`` with ``M = sum_q alpha_q S_q`` over the
  ``2 (Nd - 1)`` staples in the order of :func:`~latticekit.loops.staple_order` (``rho`` ascending,
  ``+`` then ``-``) and real, learnable (or fixed) ``alpha`` (default: ``1`` on the active staple,
  ``0`` elsewhere: the plaquette); eq. 12 of the multiscale paper. The polar projection is
  left-covariant and ``det U = 1``, so ``Proj(U M) = U Proj(M)``: again ``P = U S`` with
  ``S = Proj(M)`` in SU(N) free of active links. (SU(2): a real combination of SU(2) matrices is
  ``|q|`` times an SU(2) matrix, and ``Proj(M) = M / |q|`` with ``|q|^2 = sum |M_ij|^2 / 2`` is used;
  the eigh-based projection has no gradient at the degenerate ``M^dag M``.)

Update and log-det
------------------
``U'_mu(x) = h(P) P^dag U_mu(x) = h(P) S^dag`` on the active sites (eq. 14), so the new loop is
``P' = U' S = h(P)`` exactly; ``h`` is the conjugation-equivariant spectral kernel
:class:`~latticekit.flows.spectral.SUSpectralKernel` (eigenvectors kept, eigen-angles moved on the
canonical cell), conditioned per active site on ``embed`` channels of a periodic CNN. All other links
are passed through unchanged. The new links are re-unitarised (:func:`~latticekit.flows.spectral.reunitarize`,
the identity on SU(N)), so that rounding errors do not compound through deep stacks. At fixed
non-active links ``S`` and the CNN input are fixed, and ``U -> P = U S`` is right multiplication by a
fixed group element (Haar preserving), so the Jacobian (w.r.t. the product Haar measure) is block
triangular with one block per active link::

    log|det| = sum_{active x} log|det dh|_Haar(P(x)).

The inverse recomputes ``S`` and the CNN input from its input (both free of active links) and applies
``h^{-1}``.

Context features
----------------
The CNN sees only gauge-invariant quantities the layer leaves unchanged (:mod:`~latticekit.flows.plaquette_coupling`):
``(Re tr, Im tr) / N`` of the frozen plaquettes ``P_ab`` (``a < b``, the orientation of
:func:`latticekit.observables.plaquettes`); with ``loop_context=True`` (default), at the active sites,
``(Re, Im) tr(S_act^dag S_Q) / N`` for each other staple ``S_Q`` of the active link: since
``S_act^dag S_Q = (U S_act)^dag (U S_Q)`` the active link cancels, it is the two-plaquette loop
``P^dag P_Q`` (the ``2 x 1`` rectangle, or a bent "chair" loop), built from non-active links only and
transforming as ``Omega(x) (.) Omega(x)^dag``; plus ``context_channels`` external channels. Unlike
U(1), these traces do not fix the one-link conditional of the Wilson action as a function of ``P``.
For SU(2) the traces are real and the ``Im`` channels vanish identically (kept for uniformity).

Gauge equivariance
------------------
Under ``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` every staple transforms as
``S(x) -> Omega(x+mu) S(x) Omega(x)^dag`` (so does ``Proj(M)``), hence ``P -> Omega(x) P Omega(x)^dag``.
The CNN input is invariant, ``h(Omega P Omega^dag) = Omega h(P) Omega^dag``, and ``U' = h(P) S^dag``
transforms like ``U``; the log-det depends on ``P`` only through its class. The layer is translation
equivariant under the translations of its mask.

The log-det is not finite at loops with degenerate eigenvalues (e.g. the identity, a Haar-null set):
start from Haar samples, not cold fields.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.masks import CheckerboardMask
>>> lat, G = lk.Lattice((2, 2, 2)), lk.SU(2)
>>> layer = SUPlaquetteCoupling(G, lat, CheckerboardMask(lat, mu=2, nu=0, parity=1), bins=4,
...                             hidden=(4,)).to(torch.float64)
>>> U = G.random(lk.backends.rng(0, backend="torch"), (2, 3), lat.shape)
>>> V, ld = layer(U)
>>> W, ldi = layer.inverse(V)
>>> bool(torch.allclose(W, U)), bool(torch.allclose(ld, -ldi)), tuple(ld.shape)
(True, True, (2,))
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from latticekit.groups import SUGroup
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder, staple_order, trace_adj_mul

from .base import Flow, sum_sites
from .masks import GaugeMask, gauge_masks
from .plaquette_coupling import PlaquetteCoupling
from .spectral import SUSpectralKernel, reunitarize

__all__ = ["SUPlaquetteCoupling", "sun_gauge_flow"]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)

_LOOPS = ("plaquette", "staples")


def _check_group(group: Any) -> None:
    if not isinstance(group, SUGroup):
        raise TypeError(f"group={group!r}: expected SU(N) (use U1PlaquetteCoupling for U(1))")


class SUPlaquetteCoupling(PlaquetteCoupling):
    """Gauge-equivariant SU(N) spectral coupling on the active links of a mask (module docstring).

    Parameters
    ----------
    group : SUGroup
        ``SU(N)``.
    lattice : Lattice
        ``Nd >= 2``.
    mask : GaugeMask
        Active links (:mod:`latticekit.flows.masks`).
    bins : int
        RQ spline bins per canonical-cell coordinate of the spectral kernel.
    hidden, kernel_size, act : options of the context CNN (:class:`~latticekit.flows.nets.ConvNet`)
    context_channels : int
        Extra gauge-invariant input channels from ``context`` (shape ``(*B, C, *L)``).
    zero_init : bool
        Start as the identity (the kernel's output layers are zero).
    loop_context : bool
        Feed ``(Re, Im) tr(S_act^dag S_Q) / N`` of the layer-invariant two-plaquette loops at the
        active sites to the CNN.
    embed : int
        CNN output channels per active direction (features of the kernel).
    head_hidden : sequence of int
        Hidden widths of the kernel's per-site MLPs.
    loop : {"plaquette", "staples"}
        Active loop (module docstring).
    alpha : sequence of float, optional
        ``loop="staples"`` only: initial weights of the ``2 (Nd - 1)`` staples of each active direction
        in the order of :func:`~latticekit.loops.staple_order` (directions one after the other);
        default ``1`` on the active staple and ``0`` elsewhere.
    learn_alpha : bool
        Make ``alpha`` trainable (``loop="staples"`` only).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows.masks import CheckerboardMask
    >>> lat = lk.Lattice((4, 2, 2, 2))
    >>> layer = SUPlaquetteCoupling(lk.SU(3), lat, CheckerboardMask(lat, mu=1, nu=3, parity=0))
    >>> layer.n_features       # 3 frozen planes (0,2), (0,3), (2,3) + 5 loops, (Re, Im) each
    16
    """

    def __init__(self, group: SUGroup, lattice: Lattice, mask: GaugeMask, *, bins: int = 8,
                 hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                 context_channels: int = 0, zero_init: bool = False, loop_context: bool = True, embed: int = 8,
                 head_hidden: Sequence[int] = (16,), loop: str = "plaquette", alpha: Sequence[float] | None = None,
                 learn_alpha: bool = True) -> None:
        _check_group(group)
        if not _is_int(bins) or bins < 1:
            raise ValueError(f"bins={bins!r}: expected at least one bin")
        if not _is_int(embed) or embed < 1:
            raise ValueError(f"embed={embed!r}: expected at least one feature channel")
        if loop not in _LOOPS:
            raise ValueError(f"loop={loop!r}: expected one of {_LOOPS}")
        super().__init__(lattice, mask, out_channels=int(embed), hidden=hidden, kernel_size=kernel_size, act=act,
                         context_channels=context_channels, loop_context=loop_context, zero_init_net=False)
        self.group = group
        self.bins = int(bins)
        self.loop = loop
        self.kernel = SUSpectralKernel(group, bins, features=embed, hidden=head_hidden, act=act,
                                       zero_init=zero_init, nd=1)
        #: ``(rho, side)`` of the staples of an active link of each direction (:func:`~latticekit.loops.staple_order`)
        self.staple_orders = [staple_order(lattice.nd, mu) for mu in self.directions]
        n = len(self.staple_orders[0])
        if loop == "staples":
            n_all = n * len(self.directions)
            if alpha is None:
                a = torch.zeros(n_all, dtype=torch.get_default_dtype())
                for k, act_q in enumerate(self.active_staples):
                    a[k * n + self.staple_orders[k].index(act_q)] = 1.0
            else:
                vals = [float(v) for v in alpha]
                if len(vals) != n_all:
                    raise ValueError(f"alpha={tuple(alpha)!r}: expected {n_all} staple weights (order of staple_order: "
                                     f"(rho, side) = {self.staple_orders[0]} per active direction)")
                a = torch.tensor(vals, dtype=torch.get_default_dtype())
            if learn_alpha:
                self.alpha = nn.Parameter(a)
            else:
                self.register_buffer("alpha", a)
        elif alpha is not None:
            raise ValueError(f"alpha={alpha!r}: staple weights need loop='staples'")

    def extra_repr(self) -> str:
        return (f"group={self.group.name}, lattice={self.lattice.shape}, mask={self.mask!r}, bins={self.bins}, "
                f"loop={self.loop}, context_channels={self.context_channels}, loop_context={self.loop_context}")

    # -- pieces ------------------------------------------------------------------------------------
    def _check_field(self, U: Any) -> tuple[int, ...]:
        N, nd = self.group.N, self.lattice.nd
        if not isinstance(U, torch.Tensor):
            raise TypeError(f"U: expected a torch.Tensor, got {type(U).__name__}")
        batch = self._batch(U, (nd, N, N), f"(*B, {nd}, {N}, {N}, *L) for {self.group.name} on {self.lattice}")
        if not U.is_complex():
            raise TypeError(f"U: SU({N}) links must be complex; got dtype {U.dtype}")
        return batch

    def _staples(self, lb: LoopBuilder) -> list[dict[tuple[int, int], torch.Tensor]]:
        """The staples each direction needs: the active one, and all with loops or ``loop="staples"``."""
        out = []
        for k, mu in enumerate(self.directions):
            every = self.loop_context or self.loop == "staples"
            which = self.staple_orders[k] if every else [self.active_staples[k]]
            out.append({q: lb.staple(mu, *q) for q in which})
        return out

    def _features(self, lb: LoopBuilder, staples: list[dict[tuple[int, int], torch.Tensor]],
                  batch: tuple[int, ...], rdt: torch.dtype) -> torch.Tensor:
        if self._constant_feature:
            return self._constant(batch, rdt)
        G, N, nd = self.group, self.group.N, self.lattice.nd
        chans: list[torch.Tensor] = []
        for j, (_, (a, b), _) in enumerate(self.frozen_planes):
            t = lb.trace_plaquette(a, b) / N                   # tr(x y^dag) of the halves: no third product
            chans += [self._frozen_masked(j, t.real), self._frozen_masked(j, t.imag)]
        if self.loop_context:
            for k in range(len(self.directions)):
                sites = self.mask_sites[k]
                act = staples[k][self.active_staples[k]]
                for q in self.loops[k]:
                    t = trace_adj_mul(act, staples[k][q], G, nd=nd) / N
                    chans += [sites * t.real, sites * t.imag]
        return torch.stack(chans, dim=len(batch))

    def invariant_features(self, U: torch.Tensor) -> torch.Tensor:
        """Network input built from the field ``U``, ``(*B, n_features, *L)`` (without ``context``).

        Only frozen plaquettes and loops without an active link enter, so the features of a field and
        of its image under the layer agree (up to rounding).
        """
        batch = self._check_field(U)
        nd = self.lattice.nd
        lb = LoopBuilder.from_links(list(U.unbind(dim=U.ndim - nd - 3)), self.group, self.lattice, cache=True)
        return self._features(lb, self._staples(lb), batch, U.real.dtype)

    def _loop_staple(self, staples: dict[tuple[int, int], torch.Tensor], k: int) -> torch.Tensor:
        """``S`` of the active loop ``P = U S`` at the active sites of direction ``k``, ``(*B, N, N, n_active)``."""
        if self.loop == "plaquette":
            return self._active(staples[self.active_staples[k]], k)
        G, N = self.group, self.group.N
        order = self.staple_orders[k]
        ref = staples[order[0]]
        a = self.alpha.to(device=ref.device, dtype=ref.real.dtype).to(ref.dtype)
        n = len(order)
        M = sum(a[k * n + i] * self._active(staples[q], k) for i, q in enumerate(order))
        if N == 2:
            q2 = 0.5 * torch.sum(M.real ** 2 + M.imag ** 2, dim=(-3, -2))
            return M / torch.sqrt(q2).to(M.dtype)[..., None, None, :]
        return G.project(M, nd=1)

    def _transform(self, U: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        G, lat = self.group, self.lattice
        nd, V = lat.nd, lat.volume
        batch = self._check_field(U)
        axis = U.ndim - nd - 3
        links = list(U.unbind(dim=axis))
        lb = LoopBuilder.from_links(links, G, lat, cache=True)
        staples = self._staples(lb)
        outs = self._net_outputs(self._features(lb, staples, batch, U.real.dtype), batch, context)
        new = list(links)
        total: torch.Tensor | None = None
        for k, mu in enumerate(self.directions):
            emb = outs[k].reshape(batch + tuple(outs[k].shape[1:]))            # (*B, embed, n_active)
            Ua = self._active(links[mu], k)                                   # (*B, N, N, n_active)
            P = G.mul(Ua, self._loop_staple(staples[k], k), nd=1)
            _, delta, ld = self.kernel.transform(P, emb, nd=1, inverse=inverse)
            flat = links[mu].reshape(tuple(links[mu].shape[:-nd]) + (V,))
            Un = reunitarize(G.mul(delta, Ua, nd=1), G.N, nd=1)              # the identity on SU(N)
            new[mu] = flat.index_copy(flat.ndim - 1, self.active_index(k), Un).reshape(links[mu].shape)
            ld = sum_sites(ld, 1)
            total = ld if total is None else total + ld
        assert total is not None
        return torch.stack(new, dim=axis), total


def sun_gauge_flow(group: SUGroup, lattice: Lattice, n_layers: int | None = None, *,
                   masks: str | Sequence[GaugeMask] = "stripes", bins: int = 8, hidden: Sequence[int] = (8, 8),
                   kernel_size: int = 3, act: str = "leaky_relu", context_channels: int = 0, zero_init: bool = False,
                   embed: int = 8, head_hidden: Sequence[int] = (16,), loop: str = "plaquette",
                   alpha: Sequence[float] | None = None, learn_alpha: bool = True, loop_context: bool = True) -> Flow:
    """A stack of :class:`SUPlaquetteCoupling` layers, one per mask.

    ``masks``: ``"stripes"`` (Kanwar et al.'s order, default ``n_layers = 2 Nd 4``), ``"checkerboard"``
    (the ``(mu, nu, parity)`` cycle, default ``2 Nd (Nd - 1)`` layers), or an explicit sequence of masks
    (then ``n_layers`` is left out); see :func:`~latticekit.flows.u1_gauge_flow`. With
    ``loop="staples"`` every layer starts from its own plaquette unless ``alpha`` is given. The other
    arguments are those of :class:`SUPlaquetteCoupling`.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = sun_gauge_flow(lk.SU(3), lk.Lattice((4, 4)), n_layers=4, bins=4)
    >>> len(f), [(l.mask.mu, l.mask.offset) for l in f.layers]
    (4, [(0, 3), (1, 3), (0, 2), (1, 2)])
    """
    _check_group(group)
    return Flow(SUPlaquetteCoupling(group, lattice, m, bins=bins, hidden=hidden, kernel_size=kernel_size, act=act,
                                    context_channels=context_channels, zero_init=zero_init,
                                    loop_context=loop_context, embed=embed, head_hidden=head_hidden, loop=loop,
                                    alpha=alpha, learn_alpha=learn_alpha)
                for m in gauge_masks(lattice, masks, n_layers))
