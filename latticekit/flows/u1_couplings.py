"""Gauge-equivariant U(1) plaquette couplings for any mask and any ``Nd >= 2`` (Kanwar et al. 2020).

Kanwar, Albergo, Boyda, Cranmer, Hackett, Racaniere, Rezende & Shanahan, PRL 125, 121601 (2020),
arXiv:2003.06413; masking patterns: :mod:`latticekit.flows.masks` (the stripes of the tutorial of
Albergo et al., arXiv:2101.08176, in 2D; checkerboards in any dimension; any valid mask).

Links are angles ``theta_mu(x)``, field shape ``(*B, Nd, L0, ..., L_{Nd-1})`` (DESIGN.md). Plaquette
angles are those of :func:`latticekit.observables.plaquettes` (planes ``(a, b)``, ``a < b``)::

    theta_ab(x) = theta_a(x) + theta_b(x + a) - theta_a(x + b) - theta_b(x).

One layer updates the active links ``U_mu(x)`` of its mask. The active loop of ``U_mu(x)`` is the
plaquette of its active staple ``(nu, side)``: ``P = theta_{min, max}`` of the plane ``(mu, nu)`` at
``x`` (side ``+1``) or at ``x - nu`` (side ``-1``), in which ``theta_mu(x)`` enters with the sign
``s = s(mu, nu) side`` (``s(mu, nu) = +1`` if ``mu < nu``, else ``-1``; :func:`~latticekit.loops.staple_plaquette`).

* The active plaquette angle, taken in ``[0, 2 pi)``, is mapped by a circular rational-quadratic
  spline, ``theta'_P = h(theta_P)``, and the change goes onto the active link,
  ``theta'_mu(x) = theta_mu(x) + s (theta'_P - theta_P)``, so ``theta'_P = h(theta_P)`` (mod 2 pi)
  exactly. Updated links are wrapped to ``(-pi, pi]``; all other links pass through untouched.
* Log-det: the mask puts at most one active link into every plaquette, so at fixed non-active links
  the map active links -> active plaquettes is ``t -> s t + const`` per link, and the network input
  (below) does not depend on the active links: the Jacobian is triangular with diagonal ``h'``,
  ``log|det| = sum_{active P} log h'(theta_P)``.
* Network input (:mod:`~latticekit.flows.plaquette_coupling`): ``(cos, sin)`` of the frozen
  plaquettes, and with ``loop_context=True`` (the default), at the active sites, ``(cos, sin)`` of
  each two-plaquette loop ``L_Q = Q - q s P``: the active plaquette ``P`` combined with another
  plaquette ``Q`` through the same link (``q`` its sign there, ``Q`` in its library orientation) so that
  the link cancels. For the 2D stripes this is the ``2 x 1`` rectangle ``P(x) + P(x - nu)`` of the
  active and passive plaquette; for the checkerboard the ``2 Nd - 3`` rectangle and bent ("chair")
  loops, which together fix the exact one-link conditional density of the Wilson action
  ``exp(beta sum_Q cos Q)`` as a function of ``P``. Kanwar et al. use frozen plaquettes only
  (``loop_context=False``); the loops lowered the log-weight variance reached in a fixed training time
  on 2D U(1) by about a third (docs/flows.md). Plus ``context_channels`` external channels.
* Gauge equivariance: plaquettes are gauge invariant and a phase commutes with everything in U(1).
  Translation equivariance: under the translations of the mask
  (:meth:`~latticekit.flows.masks.GaugeMask.translations`).

The spline is evaluated on the active sites only, on contiguous ``(batch, sites, 3K)`` parameters, and
so is the last (widest) convolution of the net where the mask has a stripe
(:meth:`~latticekit.flows.nets.ConvNet.forward_stripe`); :func:`~latticekit.flows.compile_splines` can
point the spline at a compiled version.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.masks import StripeMask
>>> lat = lk.Lattice((4, 4))
>>> layer = U1PlaquetteCoupling(lat, StripeMask(lat, mu=0, offset=1)).to(torch.float64)
>>> U = lk.U1.random(lk.backends.rng(0, backend="torch"), (2, 2), lat.shape)
>>> V, ld = layer(U)
>>> W, ldi = layer.inverse(V)
>>> bool(torch.allclose(torch.cos(W - U), torch.ones_like(U))), bool(torch.allclose(ld, -ldi))
(True, True)
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from latticekit.groups import U1, wrap_angle
from latticekit.lattice import Lattice
from latticekit.loops import LoopBuilder, staple_plaquette

from .base import Flow
from .masks import GaugeMask, gauge_masks
from .plaquette_coupling import PlaquetteCoupling
from .splines import circular_rq_spline

__all__ = ["U1PlaquetteCoupling", "u1_gauge_flow"]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class U1PlaquetteCoupling(PlaquetteCoupling):
    """Gauge-equivariant U(1) coupling: circular spline on the active plaquettes of a mask (module docstring).

    Parameters
    ----------
    lattice : Lattice
        ``Nd >= 2``.
    mask : GaugeMask
        Active links (:mod:`latticekit.flows.masks`: ``StripeMask``, ``CheckerboardMask``, ...).
    bins : int
        Number of circular spline bins ``K`` (the net outputs ``3 K`` channels per active direction).
    hidden, kernel_size, act : network options (see :class:`~latticekit.flows.nets.ConvNet`)
    context_channels : int
        Extra gauge-invariant input channels from ``context`` (shape ``(*B, C, *L)``).
    zero_init : bool
        Start as the identity.
    loop_context : bool
        Also feed the layer-invariant two-plaquette loops at the active sites (module docstring).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows.masks import CheckerboardMask
    >>> lat = lk.Lattice((4, 2, 2))
    >>> layer = U1PlaquetteCoupling(lat, CheckerboardMask(lat, mu=1, nu=2, parity=0))
    >>> layer.n_features       # 1 frozen plane (0, 2) + 3 loops, (cos, sin) each
    8
    """

    def __init__(self, lattice: Lattice, mask: GaugeMask, *, bins: int = 8, hidden: Sequence[int] = (8, 8),
                 kernel_size: int = 3, act: str = "leaky_relu", context_channels: int = 0, zero_init: bool = False,
                 loop_context: bool = True) -> None:
        if not _is_int(bins) or bins < 1:
            raise ValueError(f"bins={bins!r}: expected at least one bin")
        super().__init__(lattice, mask, out_channels=3 * int(bins), hidden=hidden, kernel_size=kernel_size, act=act,
                         context_channels=context_channels, loop_context=loop_context, zero_init_net=zero_init)
        # spline function (compile_splines may point _spline at a compiled version)
        self._spline_eager = self._spline = circular_rq_spline
        self.bins = int(bins)
        planes = lattice.planes()
        # the active plaquette of each direction: (plane index, shift along nu, sign s of the link in it)
        self._active_plaquettes = []
        for mu, (nu, side) in zip(self.directions, self.active_staples):
            (a, b), shift, sign = staple_plaquette(mu, nu, side)
            self._active_plaquettes.append((planes.index((a, b)), shift, float(sign)))
        need = {i for i, _, _ in self.frozen_planes} | {i for i, _, _ in self._active_plaquettes}
        if self.loop_context:
            for mu, qs in zip(self.directions, self.loops):
                need |= {planes.index(staple_plaquette(mu, rho, side)[0]) for rho, side in qs}
        self._planes_needed = sorted(need)

    def extra_repr(self) -> str:
        return (f"lattice={self.lattice.shape}, mask={self.mask!r}, bins={self.bins}, "
                f"context_channels={self.context_channels}, loop_context={self.loop_context}")

    # -- pieces ------------------------------------------------------------------------------------
    def _plaquettes(self, theta: torch.Tensor) -> dict[int, torch.Tensor]:
        """Plaquette angles (unwrapped) of the planes the layer needs, ``(*B, *L)`` each."""
        nd = self.lattice.nd
        lb = LoopBuilder.from_links(list(theta.unbind(dim=theta.ndim - nd - 1)), U1, self.lattice, cache=True)
        planes = self.lattice.planes()
        return {i: lb.plaquette(*planes[i]) for i in self._planes_needed}

    def _active_plaquette(self, P: dict[int, torch.Tensor], k: int) -> tuple[torch.Tensor, float]:
        """Angle of the active plaquette of the link ``U_mu(x)`` at ``x`` (``(*B, *L)``) and the link's sign in it."""
        i, shift, sign = self._active_plaquettes[k]
        Pk = P[i]
        if shift:
            Pk = self.lattice.shift(Pk, self.active_staples[k][0], shift)
        return Pk, sign

    def _features(self, P: dict[int, torch.Tensor], batch: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        if self._constant_feature:
            return self._constant(batch, dtype)
        lat = self.lattice
        planes = lat.planes()
        chans: list[torch.Tensor] = []
        for j, (i, _, _) in enumerate(self.frozen_planes):
            chans += [self._frozen_masked(j, torch.cos(P[i])), self._frozen_masked(j, torch.sin(P[i]))]
        if self.loop_context:
            for k, mu in enumerate(self.directions):
                Pact, s = self._active_plaquette(P, k)
                sites = self.mask_sites[k]
                for rho, side in self.loops[k]:
                    plane, shift, q = staple_plaquette(mu, rho, side)
                    Q = P[planes.index(plane)]
                    if shift:
                        Q = lat.shift(Q, rho, shift)
                    loop = Q + (-q * s) * Pact                  # L_Q = Q - q s P: the active link cancels
                    chans += [sites * torch.cos(loop), sites * torch.sin(loop)]
        return torch.stack(chans, dim=len(batch))

    def invariant_features(self, U: torch.Tensor) -> torch.Tensor:
        """Network input built from the field ``U``, ``(*B, n_features, *L)`` (without ``context``).

        Only frozen plaquettes and loops without an active link enter, so the features of a field and
        of its image under the layer agree (up to rounding).
        """
        batch = self._check_field(U)
        return self._features(self._plaquettes(U), batch, U.dtype)

    def _check_field(self, theta: torch.Tensor) -> tuple[int, ...]:
        nd = self.lattice.nd
        if not isinstance(theta, torch.Tensor):
            raise TypeError(f"U: expected a torch.Tensor, got {type(theta).__name__}")
        batch = self._batch(theta, (nd,), f"(*B, {nd}, *L)")
        if theta.is_complex():
            raise TypeError("U: U(1) links are real angles; got a complex tensor")
        if not theta.is_floating_point():
            raise TypeError(f"U: expected a floating-point tensor of link angles, got dtype {theta.dtype}")
        return batch

    def _transform(self, theta: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lat = self.lattice
        nd, V, K = lat.nd, lat.volume, self.bins
        batch = self._check_field(theta)
        P = self._plaquettes(theta)
        outs = self._net_outputs(self._features(P, batch, theta.dtype), batch, context)
        axis = theta.ndim - nd - 1
        links = list(theta.unbind(dim=axis))
        total: torch.Tensor | None = None
        for k, mu in enumerate(self.directions):
            p = outs[k].transpose(1, 2).contiguous()                   # (nb, n_active, 3K)
            Pact, s = self._active_plaquette(P, k)
            flat = Pact.reshape(-1, V)
            idx = self.active_index(k)
            Pa = torch.remainder(flat[:, idx], 2.0 * math.pi)
            Pn, ld = self._spline(Pa, p[..., :K], p[..., K:2 * K], p[..., 2 * K:], inverse=inverse)
            # theta'_P = theta_P + s * (change of the active link): the change is s (Pn - Pa)
            delta = torch.zeros_like(flat).index_copy(1, idx, Pn - Pa)
            t = links[mu]
            moved = wrap_angle(t + s * delta.reshape(t.shape))
            links[mu] = torch.where(self.mask_sites[k], moved, t)
            ld = ld.sum(-1)
            total = ld if total is None else total + ld
        assert total is not None
        return torch.stack(links, dim=axis), total.reshape(batch)


def u1_gauge_flow(lattice: Lattice, n_layers: int | None = None, *, masks: str | Sequence[GaugeMask] = "stripes",
                  bins: int = 8, hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                  context_channels: int = 0, zero_init: bool = False, loop_context: bool = True) -> Flow:
    """A stack of :class:`U1PlaquetteCoupling` layers, one per mask.

    ``masks``: ``"stripes"`` (Kanwar et al.'s order, :func:`~latticekit.flows.masks.stripe_masks`;
    default ``n_layers = 2 Nd 4``, 16 in 2D, every link updated twice there), ``"checkerboard"`` (the
    ``(mu, nu, parity)`` cycle, :func:`~latticekit.flows.masks.checkerboard_masks`; default one cycle
    of ``2 Nd (Nd - 1)`` layers), or an explicit sequence of masks (then ``n_layers`` is left out). The
    other arguments are those of :class:`U1PlaquetteCoupling`.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = u1_gauge_flow(lk.Lattice((4, 4)))
    >>> len(f), [(l.mask.mu, l.mask.offset) for l in f.layers][:4]
    (16, [(0, 3), (1, 3), (0, 2), (1, 2)])
    >>> g = u1_gauge_flow(lk.Lattice((2, 2, 2)), masks="checkerboard", hidden=(2,))
    >>> len(g), [(l.mask.mu, l.mask.nu, l.mask.parity) for l in g.layers][:4]
    (12, [(0, 1, 0), (1, 2, 0), (2, 0, 0), (0, 1, 1)])
    """
    return Flow(U1PlaquetteCoupling(lattice, m, bins=bins, hidden=hidden, kernel_size=kernel_size, act=act,
                                    context_channels=context_channels, zero_init=zero_init, loop_context=loop_context)
                for m in gauge_masks(lattice, masks, n_layers))
