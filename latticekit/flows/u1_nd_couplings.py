"""Gauge-equivariant U(1) plaquette couplings in any dimension ``Nd >= 2``.

Kanwar, Albergo, Boyda, Cranmer, Hackett, Racaniere, Rezende & Shanahan, PRL 125, 121601 (2020),
arXiv:2003.06413, with a mask that works in every dimension. Links are angles ``theta_mu(x)``, field
shape ``(*B, Nd, L0, ..., L_{Nd-1})`` (DESIGN.md). Plaquettes are those of
:func:`latticekit.observables.plaquettes` in the planes ``(a, b)``, ``a < b``, of ``lattice.planes()``::

    theta_ab(x) = theta_a(x) + theta_b(x + a) - theta_a(x + b) - theta_b(x).

One layer has an active direction ``mu``, a plane direction ``nu != mu`` and a ``parity``.

* **Active links** ``U_mu(x)`` for ``x`` in ``A = {x : sum_{rho != mu} x_rho = parity (mod 2)}``: a
  checkerboard in the ``Nd - 1`` directions orthogonal to ``mu`` (constant along ``mu``). Every
  extent ``L_rho``, ``rho != mu``, must be even.
* **Mask argument.** The link ``U_mu(x)`` lies in the plaquettes of the planes ``(mu, rho)``,
  ``rho != mu``, only: in ``P_{mu rho}(x)`` with sign ``s_rho`` (``+1`` if ``mu < rho``, else ``-1``:
  the plane is taken in the ``(min, max)`` orientation) and in ``P_{mu rho}(x - rho)`` with sign
  ``-s_rho``. Each of these contains one other ``mu``-link, ``U_mu(x +- rho)``, whose site has the
  other orthogonal parity (``L_rho`` even), so it is not active; the remaining links point along
  ``rho != mu`` and are never active. Hence **no plaquette contains two active links**. Moreover in
  a plane ``(mu, rho)`` *every* plaquette ``P(y)`` contains exactly one active link (``U_mu(y)`` or
  ``U_mu(y + rho)``), so:
* **active plaquettes** ``P_{mu nu}(x)``, ``x`` in ``A`` (one per active link, sign ``s_nu``);
* **passive plaquettes**: the other ``2 (Nd - 1) - 1`` plaquettes of each active link, i.e. the rest
  of every plane containing ``mu``; they change only as a consequence;
* **frozen plaquettes**: all plaquettes of the ``(Nd - 1)(Nd - 2) / 2`` planes *not* containing
  ``mu``, and no others. In 2D there are none.

The spline parameters come from a periodic CNN (:class:`~latticekit.flows.nets.ConvNet`) that sees
only quantities the layer leaves unchanged, so the inverse can recompute them from its input:

* ``(cos, sin)`` of the frozen plaquettes, one pair of channels per plane not containing ``mu``;
* with ``rectangle_context=True`` (the default), at the active sites, ``(cos, sin)`` of the
  ``2 Nd - 3`` two-plaquette loops ``L_Q = Q - q s_nu P`` obtained by combining the active
  plaquette ``P = P_{mu nu}(x)`` with each passive plaquette ``Q`` of the same link (``q`` = sign of
  the link in ``Q``), so that the active link cancels. For ``Q = P_{mu nu}(x - nu)`` this is the
  2x1 rectangle ``P_{mu nu}(x) + P_{mu nu}(x - nu)`` of :class:`~latticekit.flows.U1PlaquetteCoupling`;
  for ``rho != nu`` these are the bent ("chair") loops ``P_{mu rho}(x) - s_rho s_nu P`` and
  ``P_{mu rho}(x - rho) + s_rho s_nu P``. Their other links are non-active, so they are invariant
  under the layer, and (as sums of plaquettes) gauge invariant. Together they determine the exact
  one-link conditional density of the Wilson action, ``exp(beta sum_Q cos(Q))``, as a function of
  the active plaquette angle;
* ``context_channels`` extra channels of an external gauge-invariant context;
* if none of these exists (2D with ``rectangle_context=False`` and no context), one constant channel
  (the active-site indicator): the spline is then learned but the same on every active site.

The active plaquette angle, taken in ``[0, 2 pi)``, is mapped by a circular rational-quadratic
spline, ``theta'_P = h(theta_P)``, and the change goes onto the active link,
``theta'_mu(x) = theta_mu(x) + s_nu (theta'_P - theta_P)``, so ``theta'_P = h(theta_P)`` (mod 2 pi)
exactly. At fixed non-active links the map from active links to active plaquettes is ``t -> s_nu t +
const`` per link, and the network input does not depend on the active links, so the Jacobian is
triangular with diagonal ``h'`` and ``log|det| = sum_{active P} log h'(theta_P)``. A phase commutes
with everything in U(1), and all network inputs are gauge invariant, so the layer is gauge
equivariant. It is translation equivariant under the shifts that map ``A`` to itself: by 1 along
``mu``, by 2 along any orthogonal direction, by 1 along two orthogonal directions at once. Updated
links are wrapped to ``(-pi, pi]``; the others are passed through untouched.

In 2D this layer is valid too but is not the Kanwar layer of :mod:`~latticekit.flows.u1_couplings`:
the active links form stripes of period 2 (not 4), and there are no frozen plaquettes.

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((2, 2, 2, 2))
>>> layer = U1NdPlaquetteCoupling(lat, mu=2, nu=0, parity=1, bins=4, hidden=(4,)).to(torch.float64)
>>> U = lk.U1.random(lk.backends.rng(0, backend="torch"), (3, 4), lat.shape)
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
from latticekit.observables import plaquettes

from .base import Flow, FlowLayer, append_context
from .nets import ConvNet
from .splines import circular_rq_spline

__all__ = ["U1NdPlaquetteCoupling", "u1_nd_gauge_flow", "u1_nd_plaquette_masks", "u1_nd_plaquettes"]


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_lattice(lattice: Lattice) -> None:
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd < 2:
        raise ValueError(f"lattice={lattice}: U(1) plaquette couplings need at least 2 dimensions")


def _check_layer(lattice: Lattice, mu: int, nu: int, parity: int) -> None:
    _check_lattice(lattice)
    nd = lattice.nd
    for name, d in (("mu", mu), ("nu", nu)):
        if not _is_int(d) or not 0 <= d < nd:
            raise ValueError(f"{name}={d!r}: expected a direction in 0..{nd - 1}")
    if mu == nu:
        raise ValueError(f"mu={mu}, nu={nu}: expected two different directions (the active plane (mu, nu))")
    if not _is_int(parity) or parity not in (0, 1):
        raise ValueError(f"parity={parity!r}: expected 0 or 1")
    for rho in range(nd):
        if rho != mu and lattice.shape[rho] % 2:
            raise ValueError(f"lattice={lattice}: L_{rho} = {lattice.shape[rho]} (axis {rho}) must be even for the "
                             f"checkerboard of active links orthogonal to mu={mu}")


def _plane_index(lattice: Lattice, a: int, b: int) -> int:
    return lattice.planes().index((min(a, b), max(a, b)))


def _orientation(mu: int, rho: int) -> float:
    """Sign of ``theta_mu(x)`` in ``P_{min(mu, rho), max(mu, rho)}(x)``."""
    return 1.0 if mu < rho else -1.0


def u1_nd_plaquettes(theta: torch.Tensor, lattice: Lattice) -> torch.Tensor:
    """Plaquette angles (unwrapped) of every plane, shape ``(*B, n_planes, *L)``.

    Planes in the order of ``lattice.planes()`` (``a < b``); plane ``(a, b)`` holds
    :func:`latticekit.observables.plaquettes` ``(U, U1, lattice, a, b)``, i.e.
    ``theta_a(x) + theta_b(x + a) - theta_a(x + b) - theta_b(x)``.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> lat = lk.Lattice((2, 2, 2))
    >>> th = torch.zeros(3, 2, 2, 2); th[2, 0, 1, 0] = 0.5      # theta_2 at x = (0, 1, 0)
    >>> P = u1_nd_plaquettes(th, lat)                           # planes (0,1), (0,2), (1,2)
    >>> P.shape, P[1, 0, 1, 0].item(), P[1, 1, 1, 0].item(), P[2, 0, 1, 0].item()
    (torch.Size([3, 2, 2, 2]), -0.5, 0.5, -0.5)
    """
    _check_lattice(lattice)
    nd = lattice.nd
    lattice.check(theta, "theta", inner=(nd,))
    return torch.stack([plaquettes(theta, U1, lattice, a, b) for a, b in lattice.planes()], dim=-nd - 1)


def u1_nd_plaquette_masks(lattice: Lattice, mu: int, nu: int, parity: int) -> dict[str, torch.Tensor]:
    """Masks (default float dtype) of one layer of :class:`U1NdPlaquetteCoupling`.

    Keys: ``sites`` ``(*L)`` (the set ``A``), ``links`` ``(Nd, *L)`` (active links), and the
    plaquette masks ``active``, ``passive``, ``frozen``, each ``(n_planes, *L)`` with planes in the
    order of ``lattice.planes()`` (module docstring). Every plaquette is in exactly one of them.

    Examples
    --------
    >>> import latticekit as lk
    >>> m = u1_nd_plaquette_masks(lk.Lattice((2, 2, 2)), mu=0, nu=2, parity=0)
    >>> m["sites"][0].tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    >>> [float(m[k][p].sum()) for k in ("active", "passive", "frozen") for p in range(3)]
    [0.0, 4.0, 0.0, 8.0, 4.0, 0.0, 0.0, 0.0, 8.0]
    """
    _check_layer(lattice, mu, nu, parity)
    nd = lattice.nd
    dt = torch.get_default_dtype()
    c = lattice.coords(backend="torch")
    orth = sum(c[rho] for rho in range(nd) if rho != mu)
    sites = (orth % 2 == parity).to(dt)
    links = torch.zeros((nd,) + lattice.shape, dtype=dt)
    links[mu] = sites
    planes = lattice.planes()
    active = torch.zeros((len(planes),) + lattice.shape, dtype=dt)
    passive = torch.zeros_like(active)
    frozen = torch.zeros_like(active)
    for i, (a, b) in enumerate(planes):
        if mu not in (a, b):
            frozen[i] = 1.0
        elif {a, b} == {mu, nu}:
            active[i] = sites
            passive[i] = 1.0 - sites
        else:
            passive[i] = 1.0
    return {"sites": sites, "links": links, "active": active, "passive": passive, "frozen": frozen}


class U1NdPlaquetteCoupling(FlowLayer):
    """Gauge-equivariant U(1) coupling in any ``Nd >= 2``: circular spline on active plaquettes.

    See the module docstring for masks, context and log-det.

    Parameters
    ----------
    lattice : Lattice
        ``Nd >= 2``; the extents orthogonal to ``mu`` must be even.
    mu : int
        Direction of the active links.
    nu : int
        The second direction of the active plaquettes (plane ``(mu, nu)``), ``nu != mu``.
    parity : int
        ``0`` or ``1``: active sites have ``sum_{rho != mu} x_rho = parity (mod 2)``.
    bins : int
        Number of circular spline bins ``K`` (the net outputs ``3 K`` channels).
    hidden, kernel_size, act : network options (see :class:`~latticekit.flows.nets.ConvNet`)
    context_channels : int
        Extra gauge-invariant input channels from ``context`` (shape ``(*B, C, *L)``).
    zero_init : bool
        Start as the identity.
    rectangle_context : bool
        Also feed ``(cos, sin)`` of the ``2 Nd - 3`` layer-invariant two-plaquette loops (the active
        plaquette combined with each passive plaquette of the active link) at the active sites.

    Examples
    --------
    >>> import latticekit as lk
    >>> layer = U1NdPlaquetteCoupling(lk.Lattice((4, 2, 2)), mu=1, nu=2, parity=0)
    >>> layer.extra_repr()
    'lattice=(4, 2, 2), mu=1, nu=2, parity=0, bins=8, context_channels=0, rectangle_context=True'
    >>> layer.n_features       # 1 frozen plane (0, 2) + 3 loops, (cos, sin) each
    8
    """

    def __init__(self, lattice: Lattice, mu: int, nu: int, parity: int, bins: int = 8,
                 hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                 context_channels: int = 0, zero_init: bool = False, rectangle_context: bool = True) -> None:
        super().__init__()
        # spline function (compile_splines may point _spline at a compiled version)
        self._spline_eager = self._spline = circular_rq_spline
        _check_layer(lattice, mu, nu, parity)
        if not _is_int(bins) or bins < 1:
            raise ValueError(f"bins={bins!r}: expected at least one bin")
        if not _is_int(context_channels) or context_channels < 0:
            raise ValueError(f"context_channels={context_channels!r}: expected an integer >= 0")
        self.lattice = lattice
        self.mu, self.nu, self.parity = int(mu), int(nu), int(parity)
        self.bins = int(bins)
        self.context_channels = int(context_channels)
        self.rectangle_context = bool(rectangle_context)
        nd = lattice.nd
        masks = u1_nd_plaquette_masks(lattice, mu, nu, parity)
        self.register_buffer("mask_sites", masks["sites"])
        self.register_buffer("mask_links", masks["links"])
        self.register_buffer("active_index", torch.nonzero(masks["sites"].reshape(-1) > 0)[:, 0], persistent=False)
        planes = lattice.planes()
        #: planes (indices into lattice.planes()) whose plaquettes are all frozen: those without mu
        self.frozen_planes = [i for i, (a, b) in enumerate(planes) if mu not in (a, b)]
        self.active_plane = _plane_index(lattice, mu, nu)
        self.sign = _orientation(mu, nu)
        # loops L_Q = Q - q s_nu P: (plane index, shift direction or None, coefficient of P)
        loops: list[tuple[int, int | None, float]] = [(self.active_plane, nu, 1.0)]
        for rho in range(nd):
            if rho not in (mu, nu):
                s_rho = _orientation(mu, rho)
                i = _plane_index(lattice, mu, rho)
                loops.append((i, None, -s_rho * self.sign))       # Q = P_{mu rho}(x),       q = +s_rho
                loops.append((i, rho, s_rho * self.sign))         # Q = P_{mu rho}(x - rho), q = -s_rho
        self._loops = loops if self.rectangle_context else []
        n_feat = 2 * len(self.frozen_planes) + 2 * len(self._loops)
        self._constant_feature = n_feat == 0
        #: number of layer-invariant input channels built from the field (without ``context``)
        self.n_features = max(n_feat, 1)
        self.net = ConvNet(nd, self.n_features + self.context_channels, 3 * self.bins, hidden, kernel_size, act,
                           zero_init=zero_init)

    def extra_repr(self) -> str:
        return (f"lattice={self.lattice.shape}, mu={self.mu}, nu={self.nu}, parity={self.parity}, bins={self.bins}, "
                f"context_channels={self.context_channels}, rectangle_context={self.rectangle_context}")

    def invariant_features(self, P: torch.Tensor) -> torch.Tensor:
        """Network input built from the plaquettes ``P`` (:func:`u1_nd_plaquettes`), ``(*B, n_features, *L)``.

        Only frozen plaquettes and loops without an active link enter, so the features of a field
        and of its image under the layer agree (up to rounding); see the module docstring.
        """
        nd = self.lattice.nd
        a = P.ndim - nd - 1                                      # the plane axis
        sites = self.mask_sites
        if self._constant_feature:
            return sites.expand(P.shape[:a] + (1,) + self.lattice.shape)
        chans = []
        for i in self.frozen_planes:
            Pi = P.select(a, i)
            chans += [torch.cos(Pi), torch.sin(Pi)]
        Pact = P.select(a, self.active_plane)
        for i, rho, coef in self._loops:
            Q = P.select(a, i)
            if rho is not None:
                Q = self.lattice.shift(Q, rho, -1)
            loop = Q + coef * Pact
            chans += [sites * torch.cos(loop), sites * torch.sin(loop)]
        return torch.stack(chans, dim=a)

    def _spline_params(self, P: torch.Tensor, batch: tuple[int, ...], context: Any) -> torch.Tensor:
        """Spline parameters at the active sites, shape ``(prod(batch), n_active, 3K)``."""
        shape = self.lattice.shape
        feats = self.invariant_features(P).reshape((-1, self.n_features) + shape)
        feats = append_context(feats, context, self.context_channels, batch, shape)
        out = self.net(feats).flatten(2)[..., self.active_index]          # (nb, 3K, n_active)
        return out.transpose(1, 2).contiguous()                            # (nb, n_active, 3K)

    def _transform(self, theta: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        lat = self.lattice
        nd = lat.nd
        lat.check(theta, "U", inner=(nd,))
        if theta.is_complex():
            raise TypeError("U: U(1) links are real angles; got a complex tensor")
        if not theta.is_floating_point():
            raise TypeError(f"U: expected a floating-point tensor of link angles, got dtype {theta.dtype}")
        batch = tuple(theta.shape[:-nd - 1])
        if not batch:
            raise ValueError(f"U has shape {tuple(theta.shape)}; expected a batch axis (*B, {nd}, *L)")
        P = u1_nd_plaquettes(theta, lat)
        p = self._spline_params(P, batch, context)
        K = self.bins
        Pact = P.select(P.ndim - nd - 1, self.active_plane).reshape(-1, lat.volume)
        Pa = torch.remainder(Pact[:, self.active_index], 2.0 * math.pi)
        Pn, ld = self._spline(Pa, p[..., :K], p[..., K:2 * K], p[..., 2 * K:], inverse=inverse)
        # theta'_P = theta_P + s_nu * (change of the active link): the change is s_nu (Pn - Pa)
        delta = torch.zeros_like(Pact).index_copy(1, self.active_index, Pn - Pa)
        links = list(theta.unbind(dim=theta.ndim - nd - 1))
        t_mu = links[self.mu]
        moved = wrap_angle(t_mu + self.sign * delta.reshape(t_mu.shape))
        links[self.mu] = torch.where(self.mask_sites > 0, moved, t_mu)
        return torch.stack(links, dim=theta.ndim - nd - 1), ld.sum(-1).reshape(batch)


def _stack_order(nd: int) -> list[tuple[int, int, int]]:
    """``(mu, nu, parity)`` of one cycle of :func:`u1_nd_gauge_flow` (``Nd (Nd - 1) 2`` layers)."""
    return [(mu, (mu + k) % nd, p) for k in range(1, nd) for p in (0, 1) for mu in range(nd)]


def _stack_layers(lattice: Lattice, n_layers: int | None) -> list[tuple[int, int, int]]:
    """``(mu, nu, parity)`` of each layer of a checkerboard stack (the cycle of :func:`_stack_order`,
    repeated; ``None``: one cycle); checks the lattice and ``n_layers``."""
    _check_lattice(lattice)
    order = _stack_order(lattice.nd)
    if n_layers is None:
        n_layers = len(order)
    if not _is_int(n_layers) or n_layers < 1:
        raise ValueError(f"n_layers={n_layers!r}: expected at least one layer")
    return [order[i % len(order)] for i in range(n_layers)]


def u1_nd_gauge_flow(lattice: Lattice, n_layers: int | None = None, bins: int = 8, hidden: Sequence[int] = (8, 8),
                     kernel_size: int = 3, act: str = "leaky_relu", context_channels: int = 0,
                     zero_init: bool = False, rectangle_context: bool = True) -> Flow:
    """A stack of :class:`U1NdPlaquetteCoupling` layers cycling through all ``(mu, nu, parity)``.

    One cycle has ``Nd (Nd - 1) 2`` layers (the default ``n_layers``), ordered as::

        for k in 1 .. Nd-1:            # plane partner nu = (mu + k) mod Nd
            for parity in (0, 1):
                for mu in 0 .. Nd-1:
                    layer (mu, nu = (mu + k) mod Nd, parity)

    Every block of ``2 Nd`` consecutive layers (one ``k``) updates every link exactly once (all
    directions, both parities), each in a different plane, and over a cycle every link is updated
    ``Nd - 1`` times, with its spline acting on the plaquette of each plane ``(mu, nu)`` once.
    Longer stacks repeat the cycle. All lattice extents must be even.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = u1_nd_gauge_flow(lk.Lattice((2, 2, 2)), hidden=(2,))
    >>> len(f), [(l.mu, l.nu, l.parity) for l in f.layers][:7]
    (12, [(0, 1, 0), (1, 2, 0), (2, 0, 0), (0, 1, 1), (1, 2, 1), (2, 0, 1), (0, 2, 0)])
    """
    layers = [U1NdPlaquetteCoupling(lattice, mu, nu, parity, bins=bins, hidden=hidden,
                                    kernel_size=kernel_size, act=act, context_channels=context_channels,
                                    zero_init=zero_init, rectangle_context=rectangle_context)
              for mu, nu, parity in _stack_layers(lattice, n_layers)]
    return Flow(layers)
