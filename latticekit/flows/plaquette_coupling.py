"""The part of the gauge-equivariant plaquette couplings that does not depend on the group.

:class:`PlaquetteCoupling` turns a mask (:mod:`latticekit.flows.masks`) into what a coupling layer
needs: the active sites and their flat indices per active direction (non-persistent buffers), the
planes that hold frozen plaquettes, the two-plaquette loops of each active link, the number of
network input channels, and the context network with its output at the active sites only (the last
convolution on the active stripe where the mask has one, :meth:`~latticekit.flows.nets.ConvNet.forward_stripe`).
The group layers (:class:`~latticekit.flows.U1PlaquetteCoupling`,
:class:`~latticekit.flows.SUPlaquetteCoupling`) add the group-valued features, the active loop and
the update.

Network input (one generic rule for every mask), ``(*B, C, *L)`` in this order:

1. for every plane ``(a, b)`` of ``lattice.planes()`` that holds frozen plaquettes: two channels
   (U(1): ``(cos, sin)`` of the angle; SU(N): ``(Re, Im) tr P_ab / N``) of the plaquette ``P_ab``,
   multiplied by the plane's frozen mask where not all of its plaquettes are frozen;
2. with ``loop_context``: for every active direction and every other staple ``(rho, side)`` of its
   active links (:meth:`~latticekit.flows.masks.GaugeMask.loops`), two channels of the two-plaquette
   loop, at the active sites (zero elsewhere);
3. ``context_channels`` channels of an external gauge-invariant context.

If 1-3 are all empty, one constant channel (the active-site indicator) is used. For the 2D stripes
of Kanwar et al. this gives the two frozen-plaquette channels and the ``2 x 1`` rectangle of the
active and passive plaquette; for the checkerboard masks the frozen planes (those without ``mu``) and
the ``2 Nd - 3`` two-plaquette loops.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.lattice import Lattice

from .base import FlowLayer, append_context
from .masks import GaugeMask, Stripe
from .nets import ConvNet

__all__ = ["PlaquetteCoupling"]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class PlaquetteCoupling(FlowLayer):
    """Mask bookkeeping and context network of a gauge coupling layer (module docstring).

    Parameters
    ----------
    lattice : Lattice
        ``Nd >= 2``.
    mask : GaugeMask
        A valid mask on ``lattice``.
    out_channels : int
        Network outputs per active site and direction.
    hidden, kernel_size, act : options of the :class:`~latticekit.flows.nets.ConvNet`
    context_channels : int
        External context channels.
    loop_context : bool
        Feed the two-plaquette loops of the active links to the network.
    zero_init_net : bool
        Zero the last convolution of the network.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows import U1PlaquetteCoupling
    >>> from latticekit.flows.masks import StripeMask
    >>> lat = lk.Lattice((4, 8))
    >>> layer = U1PlaquetteCoupling(lat, StripeMask(lat, mu=1, offset=2), hidden=(2,))
    >>> type(layer).__mro__[1].__name__, layer.frozen_planes, layer.loops, layer.n_features
    ('PlaquetteCoupling', [(0, (0, 1), False)], [[(0, -1)]], 4)
    """

    def __init__(self, lattice: Lattice, mask: GaugeMask, *, out_channels: int, hidden: Sequence[int],
                 kernel_size: int, act: str, context_channels: int, loop_context: bool,
                 zero_init_net: bool) -> None:
        super().__init__()
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd < 2:
            raise ValueError(f"lattice={lattice}: gauge coupling layers need at least 2 dimensions")
        if not isinstance(mask, GaugeMask):
            raise TypeError(f"mask={mask!r}: expected a GaugeMask (latticekit.flows.masks), e.g. StripeMask or "
                            "CheckerboardMask")
        if mask.lattice != lattice:
            raise ValueError(f"mask={mask!r} is on {mask.lattice}; the layer is on {lattice}")
        if not _is_int(context_channels) or context_channels < 0:
            raise ValueError(f"context_channels={context_channels!r}: expected an integer >= 0")
        self.lattice = lattice
        self.mask = mask
        self.context_channels = int(context_channels)
        self.loop_context = bool(loop_context)
        nd = lattice.nd
        #: active link directions
        self.directions: tuple[int, ...] = tuple(mask.directions)
        #: active staple (nu, side) per direction (the active loop is U_mu S_nu^side)
        self.active_staples = [mask.active_staple(mu) for mu in self.directions]
        #: other staples of the active links per direction (their two-plaquette loops are context)
        self.loops = [mask.loops(mu) for mu in self.directions]
        classes = mask.plaquette_classes()
        planes = lattice.planes()
        #: (plane index, plane, fully frozen) of the planes holding frozen plaquettes
        self.frozen_planes: list[tuple[int, tuple[int, int], bool]] = []
        partial = []
        for i in mask.frozen_planes():
            full = bool(classes["frozen"][i].all())
            self.frozen_planes.append((i, planes[i], full))
            partial.append(classes["frozen"][i])
        self.register_buffer("mask_frozen", torch.stack(partial) if partial else torch.zeros((0,) + lattice.shape,
                             dtype=torch.bool), persistent=False)
        self.register_buffer("mask_links", mask.active_links(), persistent=False)
        sites = [mask.sites(mu) for mu in self.directions]
        self.register_buffer("mask_sites", torch.stack(sites), persistent=False)
        for k, s in enumerate(sites):
            self.register_buffer(f"active_index_{k}", torch.nonzero(s.reshape(-1))[:, 0], persistent=False)
        # stripe of the last convolution (single direction only: one output block)
        self._stripe: Stripe | None = mask.stripe(self.directions[0]) if len(self.directions) == 1 else None
        self._stripe_partial = False
        if self._stripe is not None:
            st = self._stripe
            rows = torch.arange(st.offset, lattice.shape[st.axis], st.period)
            inside = sites[0].index_select(st.axis, rows).reshape(-1)
            self._stripe_partial = not bool(inside.all())
            self.register_buffer("stripe_index", torch.nonzero(inside)[:, 0], persistent=False)
        n_feat = 2 * len(self.frozen_planes) + (2 * sum(len(q) for q in self.loops) if self.loop_context else 0)
        self._constant_feature = n_feat == 0
        #: number of layer-invariant input channels built from the field (without ``context``)
        self.n_features = max(n_feat, 1)
        self.out_channels = int(out_channels)
        self.net = ConvNet(nd, self.n_features + self.context_channels, self.out_channels * len(self.directions),
                           hidden, kernel_size, act, zero_init=zero_init_net)

    # -- pieces for the group layers ------------------------------------------------------------------
    def active_index(self, k: int) -> torch.Tensor:
        """Flat site indices of the active links of direction ``self.directions[k]`` (ascending)."""
        return getattr(self, f"active_index_{k}")

    def _active(self, t: torch.Tensor, k: int) -> torch.Tensor:
        """``(..., *L) -> (..., n_active)``: the values at the active sites of direction ``k``."""
        nd = self.lattice.nd
        return t.reshape(tuple(t.shape[:-nd]) + (self.lattice.volume,))[..., self.active_index(k)]

    def _constant(self, batch: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The one constant input channel (active-site indicator), ``(*B, 1, *L)``."""
        ind = self.mask_sites.any(0).to(dtype)
        return ind.expand(batch + (1,) + self.lattice.shape)

    def _frozen_masked(self, j: int, t: torch.Tensor) -> torch.Tensor:
        """``t`` times the frozen mask of the ``j``-th frozen plane (unchanged for a fully frozen plane)."""
        return t if self.frozen_planes[j][2] else self.mask_frozen[j] * t

    def _net_outputs(self, feats: torch.Tensor, batch: tuple[int, ...], context: Any) -> list[torch.Tensor]:
        """Network output at the active sites per direction, each ``(prod(batch), out_channels, n_active)``.

        ``feats`` is the field input ``(*B, n_features, *L)``; the external context is appended.
        """
        shape = self.lattice.shape
        x = feats.reshape((-1, self.n_features) + shape)
        x = append_context(x, context, self.context_channels, batch, shape)
        if self._stripe is not None:
            st = self._stripe
            out = self.net.forward_stripe(x, st.axis, st.period, st.offset).flatten(2)   # (nb, C, n_stripe)
            return [out.index_select(2, self.stripe_index) if self._stripe_partial else out]
        out = self.net(x).flatten(2)
        C = self.out_channels
        return [out[:, k * C:(k + 1) * C].index_select(2, self.active_index(k)) for k in range(len(self.directions))]

    def _batch(self, x: torch.Tensor, inner: tuple[int, ...], layout: str) -> tuple[int, ...]:
        """Leading batch axes of a field with ``inner + lattice`` trailing axes (at least one is required)."""
        lat = self.lattice
        lat.check(x, "U", inner=inner)
        batch = tuple(x.shape[:x.ndim - len(inner) - lat.nd])
        if not batch:
            raise ValueError(f"U has shape {tuple(x.shape)}; expected a batch axis {layout}")
        return batch
