"""Gauge-equivariant spectral coupling layers for 2D SU(N) gauge theory (Boyda et al. 2021).

Boyda et al., PRD 103, 074504 (2021), arXiv:2008.05456 (spectral flows); staple-conditional active
loops as in Abbott et al., *Multiscale normalizing flows for gauge theories*, eqs. 12-14.

Links ``U_mu(x)``, field shape ``(*B, 2, N, N, L0, L1)`` (DESIGN.md). One layer with active direction
``mu``, offset ``off`` and ``nu = 1 - mu`` uses the stripe masks of the U(1) layers
(:func:`~latticekit.flows.u1_couplings.u1_plaquette_masks`): active links ``U_mu(x)`` with
``x_nu = off (mod 4)``, frozen plaquettes at ``x_nu = off + 1, off + 2``.

Active loop starting with the active link, ``P = U_mu(x) S(x)``, where ``S`` contains no active link:

* ``loop="plaquette"``: ``S = S_up(x) = U_nu(x+mu) U_mu(x+nu)^dag U_nu(x)^dag``, so ``P = P_01(x)``
  for ``mu = 0`` and ``P = P_01(x)^dag`` for ``mu = 1`` (the plaquette read from the active link);
* ``loop="staples"``: ``P = Proj_SU(N)(U (alpha_up S_up + alpha_down S_down))`` (multiscale paper,
  eq. 12) with ``S_down(x) = U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu)`` and real, learnable (or
  fixed) ``alpha``. Because ``Proj(U M) = U Proj(M)`` for ``U`` in SU(N) (the polar factor is
  left-covariant and ``det U = 1``), this is again ``P = U S`` with ``S = Proj(M)`` in SU(N).

Update (eq. 14): ``U' = h(P) P^dag U = h(P) S^dag``, so the new loop is ``P' = U' S = h(P)`` exactly.
``h`` is the conjugation-equivariant spectral kernel :class:`~latticekit.flows.spectral.SUSpectralKernel`
conditioned on a periodic CNN of the gauge-invariant features ``(Re tr P_01, Im tr P_01) / N`` of the
frozen plaquettes (plus optional context channels). At fixed non-active links, ``U -> P = U S`` is
right multiplication by a fixed group element (Haar preserving), so
``log|det| = sum_{active links} log|det dh|_Haar(P)``. Gauge equivariance: under
``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` the loop transforms as ``P -> Omega(x) P Omega(x)^dag``
(``S`` runs from ``x + mu`` back to ``x``), the features are invariant, and
``h(Omega P Omega^dag) = Omega h(P) Omega^dag`` gives ``U'`` transformed like ``U``.

This layer is 2D only (a ValueError says so; any Nd: :mod:`~latticekit.flows.sun_nd_couplings`); lattice
extents in the stripe direction must be multiples of 4. The log-det is not finite at loops with
degenerate eigenvalues (e.g. the identity, a Haar-null set): start from Haar samples, not cold fields.

Examples
--------
>>> import torch, latticekit as lk
>>> lat, G = lk.Lattice((4, 4)), lk.SU(2)
>>> layer = SUPlaquetteCoupling(G, lat, mu=0, offset=1, bins=4, hidden=(4,)).to(torch.float64)
>>> U = G.random(lk.backends.rng(0, backend="torch"), (2, 2), lat.shape)
>>> V, ld = layer(U)
>>> W, ldi = layer.inverse(V)
>>> bool(torch.allclose(W, U)), bool(torch.allclose(ld, -ldi))
(True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from latticekit.groups import SUGroup
from latticekit.lattice import Lattice

from .base import Flow, FlowLayer, append_context, sum_sites
from .nets import ConvNet
from .spectral import SUSpectralKernel, reunitarize
from .u1_couplings import _stack_offset, u1_plaquette_masks

__all__ = ["SUPlaquetteCoupling", "sun_gauge_flow"]

_PERIOD = 4
_LOOPS = ("plaquette", "staples")


def _check(group: Any, lattice: Any, mu: int, offset: int) -> None:
    if not isinstance(group, SUGroup):
        raise TypeError(f"group={group!r}: expected SU(N) (use U1PlaquetteCoupling for U(1))")
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd != 2:
        raise ValueError(f"lattice={lattice}: this SU(N) stripe coupling is 2D only; use SUNdPlaquetteCoupling "
                         "(sun_nd_couplings) in other dimensions")
    if mu not in (0, 1):
        raise ValueError(f"mu={mu!r}: expected the active link direction 0 or 1")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < _PERIOD:
        raise ValueError(f"offset={offset!r}: expected 0 <= offset < {_PERIOD}")
    nu = 1 - mu
    if lattice.shape[nu] % _PERIOD:
        raise ValueError(f"lattice={lattice}: L_{nu} = {lattice.shape[nu]} must be a multiple of {_PERIOD} for the "
                         f"stripe masks of a layer with active direction mu={mu}")


class SUPlaquetteCoupling(FlowLayer):
    """Gauge-equivariant SU(N) coupling layer with a spectral kernel on the active loops.

    Parameters
    ----------
    group : SUGroup
        ``SU(N)``.
    lattice : Lattice
        2D, with ``L_nu`` a multiple of 4 (``nu = 1 - mu``).
    mu : int
        Direction of the active links.
    offset : int
        Stripe offset in ``0..3``.
    bins : int
        RQ spline bins per canonical-cell coordinate.
    hidden, kernel_size, act : options of the context CNN (:class:`~latticekit.flows.nets.ConvNet`)
    context_channels : int
        Extra gauge-invariant input channels from ``context`` (shape ``(*B, C, L0, L1)``).
    zero_init : bool
        Start as the identity.
    embed : int
        Output channels of the CNN (features of the kernel).
    head_hidden : sequence of int
        Hidden widths of the kernel's per-site MLPs.
    loop : {"plaquette", "staples"}
        Active loop (module docstring).
    alpha : (float, float)
        Initial ``(alpha_up, alpha_down)`` of ``loop="staples"`` (default ``(1, 0)``: the plaquette).
    learn_alpha : bool
        Make ``alpha`` trainable (``loop="staples"`` only).
    rectangle_context : bool
        Also feed ``(Re tr R, Im tr R) / N`` of the 2x1 loop ``R = S_down^dag S_up`` around the active
        link's two plaquettes (at the active sites) to the CNN. ``R`` contains no active link, so the
        layer leaves it unchanged; it is the SU(N) analogue of the U(1) rectangle context.

    Examples
    --------
    >>> import latticekit as lk
    >>> SUPlaquetteCoupling(lk.SU(3), lk.Lattice((4, 8)), mu=1, offset=3).extra_repr()
    'group=SU(3), lattice=(4, 8), mu=1, offset=3, bins=8, loop=plaquette, context_channels=0, rectangle_context=True'
    """

    def __init__(self, group: SUGroup, lattice: Lattice, mu: int, offset: int, bins: int = 8,
                 hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                 context_channels: int = 0, zero_init: bool = False, embed: int = 8,
                 head_hidden: Sequence[int] = (16,), loop: str = "plaquette",
                 alpha: tuple[float, float] = (1.0, 0.0), learn_alpha: bool = True,
                 rectangle_context: bool = True) -> None:
        super().__init__()
        _check(group, lattice, mu, offset)
        if bins < 1:
            raise ValueError(f"bins={bins}: expected at least one bin")
        if context_channels < 0:
            raise ValueError(f"context_channels={context_channels}: expected >= 0")
        if embed < 1:
            raise ValueError(f"embed={embed}: expected at least one feature channel")
        if loop not in _LOOPS:
            raise ValueError(f"loop={loop!r}: expected one of {_LOOPS}")
        self.group = group
        self.lattice = lattice
        self.mu = int(mu)
        self.nu = 1 - self.mu
        self.offset = int(offset)
        self.bins = int(bins)
        self.loop = loop
        self.context_channels = int(context_channels)
        masks = u1_plaquette_masks(lattice, mu, offset)
        self.register_buffer("mask_frozen", masks["frozen"])
        self.register_buffer("mask_active", masks["active"])
        self.rectangle_context = bool(rectangle_context)
        n_in = 2 + (2 if self.rectangle_context else 0) + self.context_channels
        self.net = ConvNet(2, n_in, embed, hidden, kernel_size, act)
        self.kernel = SUSpectralKernel(group, bins, features=embed, hidden=head_hidden, act=act,
                                       zero_init=zero_init, nd=2)
        if loop == "staples":
            if len(alpha) != 2:
                raise ValueError(f"alpha={alpha!r}: expected (alpha_up, alpha_down)")
            a = torch.tensor([float(alpha[0]), float(alpha[1])], dtype=torch.get_default_dtype())
            if learn_alpha:
                self.alpha = nn.Parameter(a)
            else:
                self.register_buffer("alpha", a)

    def extra_repr(self) -> str:
        return (f"group={self.group.name}, lattice={self.lattice.shape}, mu={self.mu}, offset={self.offset}, "
                f"bins={self.bins}, loop={self.loop}, context_channels={self.context_channels}, "
                f"rectangle_context={self.rectangle_context}")

    def _active(self, t: torch.Tensor) -> torch.Tensor:
        """Restrict the last two (lattice) axes to the active stripe ``x_nu = offset (mod 4)``."""
        sl = slice(self.offset, None, _PERIOD)
        return t[..., :, sl] if self.nu == 1 else t[..., sl, :]

    def _features(self, P: torch.Tensor, R: torch.Tensor | None, batch: tuple[int, ...], context: Any
                  ) -> torch.Tensor:
        G, lat = self.group, self.lattice
        tr = G.trace(P, nd=2) / G.N
        fr = self.mask_frozen.to(tr.real.dtype)
        chans = [fr * tr.real, fr * tr.imag]
        if R is not None:
            trR = G.trace(R, nd=2) / G.N
            act = self.mask_active.to(tr.real.dtype)
            chans += [act * trR.real, act * trR.imag]
        feats = torch.stack(chans, dim=-3).reshape((-1, len(chans)) + lat.shape)
        feats = append_context(feats, context, self.context_channels, batch, lat.shape)
        return self.net(feats).reshape(batch + (-1,) + lat.shape)

    def _transform(self, U: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        G, lat, N = self.group, self.lattice, self.group.N
        lat.check(U, "U", inner=(2, N, N))
        if not U.is_complex():
            raise TypeError(f"U: SU({N}) links must be complex; got dtype {U.dtype}")
        batch = tuple(U.shape[:-5])
        if not batch:
            raise ValueError(f"U has shape {tuple(U.shape)}; expected a batch axis (*B, 2, {N}, {N}, L0, L1)")
        mu, nu = self.mu, self.nu
        Umu, Unu = U.select(-5, mu), U.select(-5, nu)
        Unu_xmu = lat.shift(Unu, mu, +1)
        up = G.mul_adj(G.mul_adj(Unu_xmu, lat.shift(Umu, nu, +1), nd=2), Unu, nd=2)
        # S_down(x) = U_nu(x+mu-nu)^dag U_mu(x-nu)^dag U_nu(x-nu): from x + mu back to x below the link
        lo = (lat.shift(G.adj_mul(G.mul(Umu, Unu_xmu, nd=2), Unu, nd=2), nu, -1)
              if self.loop == "staples" or self.rectangle_context else None)
        R = G.adj_mul(lo, up, nd=2) if self.rectangle_context else None   # 2x1 loop at x, no active link
        emb = self._features(G.mul(Umu, up, nd=2), R, batch, context)
        if self.loop == "plaquette":
            S = self._active(up)
        else:
            a = self.alpha.to(U.real.dtype).to(U.dtype)
            M = self._active(a[0] * up + a[1] * lo)
            if N == 2:
                # a real combination of SU(2) matrices is |q| times an SU(2) matrix, so M^dag M = |q|^2 1 is
                # degenerate (no eigh gradient); the polar projection is M / |q|, |q|^2 = sum |M_ij|^2 / 2
                q2 = 0.5 * torch.sum(M.real ** 2 + M.imag ** 2, dim=(-4, -3))
                S = M / torch.sqrt(q2).to(M.dtype)[..., None, None, :, :]
            else:
                S = G.project(M, nd=2)
        Ua = self._active(Umu)
        P = G.mul(Ua, S, nd=2)
        _, delta, ld = self.kernel.transform(P, self._active(emb), nd=2, inverse=inverse)
        # re-unitarised (the identity on SU(N)): stops rounding defects of delta U compounding in deep stacks
        Un = reunitarize(G.mul(delta, Ua, nd=2), N, nd=2)
        new = Umu.clone()
        if nu == 1:
            new[..., :, self.offset::_PERIOD] = Un
        else:
            new[..., self.offset::_PERIOD, :] = Un
        out = torch.stack([new, Unu] if mu == 0 else [Unu, new], dim=-5)
        return out, sum_sites(ld, 2)


def sun_gauge_flow(group: SUGroup, lattice: Lattice, n_layers: int | None = None, bins: int = 8,
                   hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                   context_channels: int = 0, zero_init: bool = False, embed: int = 8,
                   head_hidden: Sequence[int] = (16,), loop: str = "plaquette",
                   alpha: tuple[float, float] = (1.0, 0.0), learn_alpha: bool = True,
                   rectangle_context: bool = True) -> Flow:
    """The standard SU(N) stack: layer ``i`` has ``mu = i mod 2`` and ``offset = 3 - (i // 2) mod 4``.

    Mirrors :func:`~latticekit.flows.u1_couplings.u1_gauge_flow`; the default ``n_layers = 16`` runs
    through every (direction, offset) pair twice, so every link is updated twice; the offsets run
    downwards so that a layer's passive stripe has not just been transformed (see ``u1_gauge_flow``).
    The other arguments are those of :class:`SUPlaquetteCoupling`.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = sun_gauge_flow(lk.SU(3), lk.Lattice((4, 4)), n_layers=4, bins=4)
    >>> len(f), [(l.mu, l.offset) for l in f.layers]
    (4, [(0, 3), (1, 3), (0, 2), (1, 2)])
    """
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if n_layers is None:
        n_layers = 2 * lattice.nd * _PERIOD
    if n_layers < 1:
        raise ValueError(f"n_layers={n_layers}: expected at least one layer")
    layers = [SUPlaquetteCoupling(group, lattice, i % 2, _stack_offset(i), bins, hidden, kernel_size, act,
                                  context_channels, zero_init, embed, head_hidden, loop, alpha, learn_alpha,
                                  rectangle_context)
              for i in range(n_layers)]
    return Flow(layers)
