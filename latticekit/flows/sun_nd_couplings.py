"""Gauge-equivariant SU(N) spectral coupling layers in any dimension ``Nd >= 2``.

The spectral construction of Boyda et al., PRD 103, 074504 (2021), arXiv:2008.05456, with the mask
of :mod:`~latticekit.flows.u1_nd_couplings`, i.e. the kind of layer used for 4D SU(3) by Abbott et
al., *Sampling QCD field configurations with gauge-equivariant flow models*, LATTICE2022,
arXiv:2208.03832. Links ``U_mu(x)`` in SU(N), field shape ``(*B, Nd, N, N, L0, ..., L_{Nd-1})``
(DESIGN.md).

Masks
-----
One layer has an active direction ``mu``, a plane direction ``nu != mu`` and a ``parity``; the masks
are those of :func:`~latticekit.flows.u1_nd_couplings.u1_nd_plaquette_masks` (the argument there is
purely combinatorial, so it holds for any group):

* **active links** ``U_mu(x)``, ``x`` in ``A = {x : sum_{rho != mu} x_rho = parity (mod 2)}`` (a
  checkerboard in the ``Nd - 1`` directions orthogonal to ``mu``; those extents must be even);
* no plaquette contains two active links: the only other ``mu``-link of a plaquette through
  ``U_mu(x)`` sits at ``x +- rho``, on the other parity;
* **frozen plaquettes**: all plaquettes of the ``(Nd - 1)(Nd - 2) / 2`` planes without ``mu``; the
  layer does not touch them. Every plaquette of a plane ``(mu, rho)`` holds one active link and changes.

Staples and the active loop
---------------------------
For ``rho != mu`` the two staples of ``U_mu(x)`` in the plane ``(mu, rho)`` run from ``x + mu`` back
to ``x`` (:func:`sun_nd_staples`)::

    S_rho^+(x) = U_rho(x+mu)       U_mu(x+rho)^dag U_rho(x)^dag            (the +rho side)
    S_rho^-(x) = U_rho(x+mu-rho)^dag U_mu(x-rho)^dag U_rho(x-rho)          (the -rho side)

so that ``U_mu(x) S_rho^+(x)`` is the plaquette ``P_{mu rho}(x)`` of DESIGN.md with the *ordered*
pair ``(mu, rho)`` (the library's ``plaquettes(U, G, lat, mu, rho)`` for ``mu < rho``, its adjoint for
``mu > rho``), and ``U_mu(x) S_rho^-(x)`` is ``P_{mu rho}(x - rho)^dag`` read from ``x`` (conjugated by
``U_rho(x - rho)``). A staple of an active link contains ``U_mu(x +- rho)`` (other parity) and
``rho``-links only, hence **no active link**.

The **active loop** starts with the active link, ``P(x) = U_mu(x) S(x)``:

* ``loop="plaquette"`` (default): ``S = S_nu^+``, i.e. ``P = P_{mu nu}(x)`` in the ``(mu, nu)``
  orientation (``P_{nu mu}(x)^dag`` of the library when ``mu > nu``); this orientation is the
  layer's convention, the same for every ``(mu, nu)``;
* ``loop="staples"``: ``P = Proj(U_mu(x) M(x))`` with ``M = sum_q alpha_q S_q`` over the
  ``2 (Nd - 1)`` staples in the order of :func:`sun_nd_staples` (``rho`` ascending, ``+`` then ``-``)
  and real, learnable (or fixed) ``alpha`` (default: ``1`` on ``S_nu^+``, ``0`` elsewhere, the
  plaquette). This is the staple-conditioned loop of the multiscale paper (Abbott et al., eq. 12)
  in ``Nd`` dimensions. The polar projection is left-covariant and ``det U = 1``, so
  ``Proj(U M) = U Proj(M)``: again ``P = U S`` with ``S = Proj(M)`` in SU(N) free of active links.
  (SU(2): a real combination of SU(2) matrices is ``|q|`` times an SU(2) matrix, and ``Proj(M) =
  M / |q|`` with ``|q|^2 = sum |M_ij|^2 / 2`` is used; the eigh-based projection has no gradient at
  the degenerate ``M^dag M``.)

Update and log-det
------------------
``U'_mu(x) = h(P) P^dag U_mu(x) = h(P) S^dag`` on the active sites, so the new loop is
``P' = U' S = h(P)`` exactly; ``h`` is the conjugation-equivariant spectral kernel
:class:`~latticekit.flows.spectral.SUSpectralKernel` (eigenvectors kept, eigen-angles moved on the
canonical cell), conditioned per active site on ``embed`` channels of a periodic CNN
(:class:`~latticekit.flows.nets.ConvNet`, separable blocks for ``Nd >= 4``). All other links are
passed through unchanged. The new links are re-unitarised (Gram-Schmidt / SU(2) closed form, the
identity on SU(N)), so that rounding errors do not compound through deep stacks (without it the
unitarity defect grew by ~1.5x per layer in a 4D stack). At fixed non-active links ``S`` and the
CNN input are fixed, and ``U -> P = U S`` is right multiplication by a fixed group element (Haar
preserving), so the Jacobian (w.r.t. the product Haar measure) is block triangular with one block
per active link::

    log|det| = sum_{x in A} log|det dh|_Haar(P(x)).

The inverse recomputes ``S`` and the CNN input from its input (both free of active links) and
applies ``h^{-1}``.

Context features
----------------
The CNN sees only gauge-invariant quantities the layer leaves unchanged, ``(*B, C, *L)`` with

* ``(Re tr, Im tr) / N`` of the plaquettes of every plane without ``mu`` (frozen; two channels per
  plane, in the order of ``lattice.planes()``; none in 2D);
* with ``loop_context=True`` (default), at the active sites (zero elsewhere), ``(Re, Im)
  tr(S_nu^{+dag} S_Q) / N`` for each of the other ``2 Nd - 3`` staples ``S_Q`` of the active link
  (order of :func:`sun_nd_staples`, ``S_nu^+`` skipped). Since ``S_nu^{+dag} S_Q = (U S_nu^+)^dag
  (U S_Q)``, the active link cancels: it is the two-plaquette loop ``P^dag P_Q`` (the ``2 x 1``
  rectangle for ``Q = S_nu^-``, bent "chair" loops for ``rho != nu``), built from non-active links
  only, hence invariant under the layer; it transforms as ``Omega(x) (.) Omega(x)^dag``, so its
  trace is gauge invariant. It is the SU(N) analogue of the U(1) two-plaquette loops of
  :class:`~latticekit.flows.U1NdPlaquetteCoupling` (and the complex conjugate of the ``tr R`` of
  :class:`~latticekit.flows.SUPlaquetteCoupling` for ``Q = S_nu^-``). Unlike U(1), these traces do
  not fix the one-link conditional ``exp((beta/N) Re tr(P (1 + sum_Q S_nu^{+dag} S_Q)))`` of the
  Wilson action as a function of ``P`` (it depends on the matrices, not only their traces);
* ``context_channels`` extra channels of an external gauge-invariant context ``(*B, C, *L)``;
* if none of these exists (2D, ``loop_context=False``, no context), one constant channel (the
  active-site indicator): the kernel is then learned but the same on every active site.

For SU(2) the traces are real and the ``Im`` channels vanish identically (kept for uniformity).

Gauge equivariance
------------------
Under ``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` every staple transforms as
``S(x) -> Omega(x+mu) S(x) Omega(x)^dag`` (so does ``Proj(M)``: the polar factor is covariant on both
sides), hence ``P -> Omega(x) P Omega(x)^dag``. The CNN input is invariant, ``h(Omega P Omega^dag) =
Omega h(P) Omega^dag``, and ``U' = h(P) S^dag -> Omega(x) U' Omega(x+mu)^dag``; the log-det depends
on ``P`` only through its class, so it is invariant. The layer is translation equivariant under the
shifts that map ``A`` to itself: 1 along ``mu``, 2 along an orthogonal direction, 1 along two
orthogonal directions at once.

The log-det is not finite at loops with degenerate eigenvalues (e.g. the identity, a Haar-null set):
start from Haar samples, not cold fields.

Examples
--------
>>> import torch, latticekit as lk
>>> lat, G = lk.Lattice((2, 2, 2)), lk.SU(2)
>>> layer = SUNdPlaquetteCoupling(G, lat, mu=2, nu=0, parity=1, bins=4, hidden=(4,)).to(torch.float64)
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

from latticekit.backends import array_namespace
from latticekit.groups import Group, SUGroup
from latticekit.lattice import Lattice

from .base import Flow, FlowLayer, append_context, sum_sites
from .nets import ConvNet
from .spectral import SUSpectralKernel, reunitarize
from .u1_nd_couplings import _check_layer, _is_int, _stack_layers, u1_nd_plaquette_masks

__all__ = ["SUNdPlaquetteCoupling", "sun_nd_gauge_flow", "sun_nd_staples"]

_LOOPS = ("plaquette", "staples")


def _check_lattice(lattice: Any) -> None:
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if lattice.nd < 2:
        raise ValueError(f"lattice={lattice}: SU(N) plaquette couplings need at least 2 dimensions")


def _check_group(group: Any) -> None:
    if not isinstance(group, SUGroup):
        raise TypeError(f"group={group!r}: expected SU(N) (use U1NdPlaquetteCoupling for U(1))")


def _staple_order(nd: int, mu: int) -> list[tuple[int, int]]:
    """``(rho, side)`` of the staples of a ``mu``-link: ``rho`` ascending (``!= mu``), side ``+1`` then ``-1``."""
    return [(rho, s) for rho in range(nd) if rho != mu for s in (1, -1)]


def _staple(links: Sequence[Any], group: Group, lattice: Lattice, mu: int, rho: int, side: int) -> Any:
    """One staple ``S_rho^{side}(x)`` of ``U_mu(x)`` from the list of link fields (module docstring)."""
    nd = lattice.nd
    Umu, Urho = links[mu], links[rho]
    Urho_xmu = lattice.shift(Urho, mu, +1)
    if side > 0:
        # U_rho(x+mu) U_mu(x+rho)^dag U_rho(x)^dag
        return group.mul_adj(group.mul_adj(Urho_xmu, lattice.shift(Umu, rho, +1), nd=nd), Urho, nd=nd)
    # T(y) = U_rho(y+mu)^dag U_mu(y)^dag U_rho(y), taken at y = x - rho
    return lattice.shift(group.adj_mul(group.mul(Umu, Urho_xmu, nd=nd), Urho, nd=nd), rho, -1)


def sun_nd_staples(U: Any, group: Group, lattice: Lattice, mu: int) -> Any:
    """The ``2 (Nd - 1)`` staples of the links ``U_mu(x)``, each running from ``x + mu`` back to ``x``.

    Output shape ``(*B, 2 (Nd - 1), *G, *L)``; staple ``2 i + 0`` / ``2 i + 1`` is ``S_rho^+`` /
    ``S_rho^-`` of the ``i``-th direction ``rho != mu`` in ascending order::

        S_rho^+(x) = U_rho(x+mu) U_mu(x+rho)^dag U_rho(x)^dag
        S_rho^-(x) = U_rho(x+mu-rho)^dag U_mu(x-rho)^dag U_rho(x-rho)

    so ``U_mu(x) S_rho^+(x) = P_{mu rho}(x)`` (DESIGN.md formula with the ordered pair ``(mu, rho)``)
    and ``U_mu(x) sum_q S_q(x)`` is the usual staple sum of the Wilson action. Works for any group of
    :mod:`latticekit.groups` (U(1) angles too, where products are sums of angles).

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.observables import plaquettes
    >>> lat, G = lk.Lattice((2, 2, 2)), lk.SU(3)
    >>> U = G.random(lk.backends.rng(0), (3,), lat.shape)
    >>> S = sun_nd_staples(U, G, lat, mu=1)                  # rho = 0 (+, -), rho = 2 (+, -)
    >>> S.shape
    (4, 3, 3, 2, 2, 2)
    >>> P12 = G.mul(U[1], S[2], nd=3)                        # U_1(x) S_2^+(x) = P_12(x)
    >>> bool(abs(P12 - plaquettes(U, G, lat, 1, 2)).max() < 1e-12)
    True
    """
    _check_lattice(lattice)
    if not isinstance(group, Group):
        raise TypeError(f"group={group!r}: expected U1 or SU(N)")
    nd = lattice.nd
    if not _is_int(mu) or not 0 <= mu < nd:
        raise ValueError(f"mu={mu!r}: expected a direction in 0..{nd - 1}")
    lattice.check(U, "U", inner=(nd,) + tuple(group.element_shape))
    k = U.ndim - nd - len(group.element_shape) - 1                    # the direction axis
    links = [U[(slice(None),) * k + (d, ...)] for d in range(nd)]
    out = [_staple(links, group, lattice, mu, rho, s) for rho, s in _staple_order(nd, mu)]
    return array_namespace(U).stack(out, axis=k)


def _tr_adj_mul(a: torch.Tensor, b: torch.Tensor, nd: int) -> torch.Tensor:
    """``tr(a^dag b) = sum_ij conj(a_ij) b_ij`` over the colour axes (no matrix product)."""
    return torch.sum(a.conj() * b, dim=(-nd - 2, -nd - 1))


def _tr_mul_adj(a: torch.Tensor, b: torch.Tensor, nd: int) -> torch.Tensor:
    """``tr(a b^dag) = sum_ij a_ij conj(b_ij)`` over the colour axes."""
    return torch.sum(a * b.conj(), dim=(-nd - 2, -nd - 1))


class SUNdPlaquetteCoupling(FlowLayer):
    """Gauge-equivariant SU(N) spectral coupling in any ``Nd >= 2`` (active links on a checkerboard).

    See the module docstring for masks, active loop, context, log-det and equivariance.

    Parameters
    ----------
    group : SUGroup
        ``SU(N)``.
    lattice : Lattice
        ``Nd >= 2``; the extents orthogonal to ``mu`` must be even.
    mu : int
        Direction of the active links.
    nu : int
        Second direction of the active loop (plane ``(mu, nu)``), ``nu != mu``.
    parity : int
        ``0`` or ``1``: active sites have ``sum_{rho != mu} x_rho = parity (mod 2)``.
    bins : int
        RQ spline bins per canonical-cell coordinate of the spectral kernel.
    hidden, kernel_size, act : options of the context CNN (:class:`~latticekit.flows.nets.ConvNet`)
    context_channels : int
        Extra gauge-invariant input channels from ``context`` (shape ``(*B, C, *L)``).
    zero_init : bool
        Start as the identity (the kernel's output layers are zero).
    loop_context : bool
        Feed ``(Re, Im) tr(S_nu^{+dag} S_Q) / N`` of the ``2 Nd - 3`` layer-invariant two-plaquette
        loops at the active sites to the CNN.
    embed : int
        Output channels of the CNN (features of the kernel).
    head_hidden : sequence of int
        Hidden widths of the kernel's per-site MLPs.
    loop : {"plaquette", "staples"}
        Active loop (module docstring).
    alpha : sequence of float, optional
        ``loop="staples"`` only: initial weights of the ``2 (Nd - 1)`` staples in the order of
        :func:`sun_nd_staples`; default ``1`` on ``S_nu^+`` and ``0`` elsewhere.
    learn_alpha : bool
        Make ``alpha`` trainable (``loop="staples"`` only).

    Examples
    --------
    >>> import latticekit as lk
    >>> layer = SUNdPlaquetteCoupling(lk.SU(3), lk.Lattice((4, 2, 2, 2)), mu=1, nu=3, parity=0)
    >>> layer.extra_repr()
    'group=SU(3), lattice=(4, 2, 2, 2), mu=1, nu=3, parity=0, bins=8, loop=plaquette, context_channels=0, loop_context=True'
    >>> layer.n_features       # 3 frozen planes (0,2), (0,3), (2,3) + 5 loops, (Re, Im) each
    16
    """

    def __init__(self, group: SUGroup, lattice: Lattice, mu: int, nu: int, parity: int, bins: int = 8,
                 hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                 context_channels: int = 0, zero_init: bool = False, loop_context: bool = True, embed: int = 8,
                 head_hidden: Sequence[int] = (16,), loop: str = "plaquette",
                 alpha: Sequence[float] | None = None, learn_alpha: bool = True) -> None:
        super().__init__()
        _check_group(group)
        _check_lattice(lattice)
        _check_layer(lattice, mu, nu, parity)
        if not _is_int(bins) or bins < 1:
            raise ValueError(f"bins={bins!r}: expected at least one bin")
        if not _is_int(context_channels) or context_channels < 0:
            raise ValueError(f"context_channels={context_channels!r}: expected an integer >= 0")
        if not _is_int(embed) or embed < 1:
            raise ValueError(f"embed={embed!r}: expected at least one feature channel")
        if loop not in _LOOPS:
            raise ValueError(f"loop={loop!r}: expected one of {_LOOPS}")
        nd = lattice.nd
        self.group = group
        self.lattice = lattice
        self.mu, self.nu, self.parity = int(mu), int(nu), int(parity)
        self.bins = int(bins)
        self.context_channels = int(context_channels)
        self.loop_context = bool(loop_context)
        self.loop = loop
        masks = u1_nd_plaquette_masks(lattice, mu, nu, parity)
        self.register_buffer("mask_sites", masks["sites"])
        self.register_buffer("mask_links", masks["links"])
        self.register_buffer("active_index", torch.nonzero(masks["sites"].reshape(-1) > 0)[:, 0], persistent=False)
        #: planes ``(a, b)`` (``a < b``) whose plaquettes are all frozen: those without ``mu``
        self.frozen_planes = [(a, b) for a, b in lattice.planes() if mu not in (a, b)]
        #: ``(rho, side)`` of the staples of :func:`sun_nd_staples`; the active loop's is ``(nu, +1)``
        self.staple_order = _staple_order(nd, self.mu)
        self._up = self.staple_order.index((self.nu, 1))
        n_feat = 2 * len(self.frozen_planes) + (2 * (len(self.staple_order) - 1) if self.loop_context else 0)
        self._constant_feature = n_feat == 0
        #: number of layer-invariant input channels built from the field (without ``context``)
        self.n_features = max(n_feat, 1)
        self.net = ConvNet(nd, self.n_features + self.context_channels, embed, hidden, kernel_size, act)
        self.kernel = SUSpectralKernel(group, bins, features=embed, hidden=head_hidden, act=act,
                                       zero_init=zero_init, nd=1)
        if loop == "staples":
            n = len(self.staple_order)
            if alpha is None:
                a = torch.zeros(n, dtype=torch.get_default_dtype())
                a[self._up] = 1.0
            else:
                vals = [float(v) for v in alpha]
                if len(vals) != n:
                    raise ValueError(f"alpha={tuple(alpha)!r}: expected {n} staple weights (order of sun_nd_staples: "
                                     f"(rho, side) = {self.staple_order})")
                a = torch.tensor(vals, dtype=torch.get_default_dtype())
            if learn_alpha:
                self.alpha = nn.Parameter(a)
            else:
                self.register_buffer("alpha", a)
        elif alpha is not None:
            raise ValueError(f"alpha={alpha!r}: staple weights need loop='staples'")

    def extra_repr(self) -> str:
        return (f"group={self.group.name}, lattice={self.lattice.shape}, mu={self.mu}, nu={self.nu}, "
                f"parity={self.parity}, bins={self.bins}, loop={self.loop}, context_channels={self.context_channels}, "
                f"loop_context={self.loop_context}")

    # -- pieces ------------------------------------------------------------------------------------
    def _check_field(self, U: Any) -> tuple[int, ...]:
        G, lat, N, nd = self.group, self.lattice, self.group.N, self.lattice.nd
        if not isinstance(U, torch.Tensor):
            raise TypeError(f"U: expected a torch.Tensor, got {type(U).__name__}")
        lat.check(U, "U", inner=(nd, N, N))
        if not U.is_complex():
            raise TypeError(f"U: SU({N}) links must be complex; got dtype {U.dtype}")
        batch = tuple(U.shape[:-nd - 3])
        if not batch:
            raise ValueError(f"U has shape {tuple(U.shape)}; expected a batch axis (*B, {nd}, {N}, {N}, *L) "
                             f"for {G.name} on {lat}")
        return batch

    def _staples(self, links: Sequence[torch.Tensor], which: Sequence[int]) -> dict[int, torch.Tensor]:
        lat, G = self.lattice, self.group
        return {q: _staple(links, G, lat, self.mu, *self.staple_order[q]) for q in which}

    def _invariant_features(self, links: Sequence[torch.Tensor], staples: dict[int, torch.Tensor]) -> torch.Tensor:
        G, lat, N, nd = self.group, self.lattice, self.group.N, self.lattice.nd
        rdt = links[0].real.dtype
        sites = self.mask_sites.to(rdt)
        if self._constant_feature:
            return sites.expand(tuple(links[0].shape[:-nd - 2]) + (1,) + lat.shape)
        chans: list[torch.Tensor] = []
        for a, b in self.frozen_planes:
            # P_ab(x) = [U_a(x) U_b(x+a)] [U_b(x) U_a(x+b)]^dag; only its trace is needed
            left = G.mul(links[a], lat.shift(links[b], a, +1), nd=nd)
            right = G.mul(links[b], lat.shift(links[a], b, +1), nd=nd)
            t = _tr_mul_adj(left, right, nd) / N
            chans += [t.real, t.imag]
        if self.loop_context:
            up = staples[self._up]
            for q in range(len(self.staple_order)):
                if q != self._up:
                    t = _tr_adj_mul(up, staples[q], nd) / N
                    chans += [sites * t.real, sites * t.imag]
        return torch.stack(chans, dim=-nd - 1)

    def invariant_features(self, U: torch.Tensor) -> torch.Tensor:
        """Network input built from the field ``U``, shape ``(*B, n_features, *L)``.

        Only frozen plaquettes and loops without an active link enter, so the features of a field and
        of its image under the layer agree (up to rounding); see the module docstring.
        """
        self._check_field(U)
        nd = self.lattice.nd
        links = list(U.unbind(dim=U.ndim - nd - 3))
        return self._invariant_features(links, self._staples(links, self._needed_staples()))

    def _needed_staples(self) -> list[int]:
        if self.loop_context or self.loop == "staples":
            return list(range(len(self.staple_order)))
        return [self._up]

    def _embedding(self, feats: torch.Tensor, batch: tuple[int, ...], context: Any) -> torch.Tensor:
        """CNN output at the active sites, ``(*B, embed, n_active)``."""
        shape = self.lattice.shape
        feats = feats.reshape((-1, self.n_features) + shape)
        feats = append_context(feats, context, self.context_channels, batch, shape)
        out = self.net(feats).flatten(2)[..., self.active_index]          # (nb, embed, n_active)
        return out.reshape(batch + tuple(out.shape[1:]))

    def _active(self, t: torch.Tensor) -> torch.Tensor:
        """``(..., *L) -> (..., n_active)``: the values at the active sites."""
        nd = self.lattice.nd
        return t.reshape(tuple(t.shape[:-nd]) + (self.lattice.volume,))[..., self.active_index]

    def _loop_staple(self, staples: dict[int, torch.Tensor]) -> torch.Tensor:
        """``S`` of the active loop ``P = U S`` at the active sites, ``(*B, N, N, n_active)``."""
        if self.loop == "plaquette":
            return self._active(staples[self._up])
        G, N = self.group, self.group.N
        ref = staples[self._up]
        a = self.alpha.to(device=ref.device, dtype=ref.real.dtype).to(ref.dtype)
        M = sum(a[q] * self._active(staples[q]) for q in range(len(self.staple_order)))
        if N == 2:
            q2 = 0.5 * torch.sum(M.real ** 2 + M.imag ** 2, dim=(-3, -2))
            return M / torch.sqrt(q2).to(M.dtype)[..., None, None, :]
        return G.project(M, nd=1)

    def _transform(self, U: torch.Tensor, context: Any, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        G, lat, nd = self.group, self.lattice, self.lattice.nd
        batch = self._check_field(U)
        axis = U.ndim - nd - 3
        links = list(U.unbind(dim=axis))
        staples = self._staples(links, self._needed_staples())
        emb = self._embedding(self._invariant_features(links, staples), batch, context)
        Umu = links[self.mu]
        Ua = self._active(Umu)                                             # (*B, N, N, n_active)
        P = G.mul(Ua, self._loop_staple(staples), nd=1)
        _, delta, ld = self.kernel.transform(P, emb, nd=1, inverse=inverse)
        flat = Umu.reshape(tuple(Umu.shape[:-nd]) + (lat.volume,))
        new = flat.index_copy(flat.ndim - 1, self.active_index, reunitarize(G.mul(delta, Ua, nd=1), G.N, nd=1))
        links[self.mu] = new.reshape(Umu.shape)
        return torch.stack(links, dim=axis), sum_sites(ld, 1)


def sun_nd_gauge_flow(group: SUGroup, lattice: Lattice, n_layers: int | None = None, bins: int = 8,
                      hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                      context_channels: int = 0, zero_init: bool = False, loop_context: bool = True,
                      embed: int = 8, head_hidden: Sequence[int] = (16,), loop: str = "plaquette",
                      learn_alpha: bool = True) -> Flow:
    """A stack of :class:`SUNdPlaquetteCoupling` layers cycling through all ``(mu, nu, parity)``.

    The order of :func:`~latticekit.flows.u1_nd_gauge_flow`: one cycle has ``Nd (Nd - 1) 2`` layers
    (the default ``n_layers``)::

        for k in 1 .. Nd-1:            # plane partner nu = (mu + k) mod Nd
            for parity in (0, 1):
                for mu in 0 .. Nd-1:
                    layer (mu, nu = (mu + k) mod Nd, parity)

    Every block of ``2 Nd`` consecutive layers updates every link exactly once; over a cycle every
    link is updated ``Nd - 1`` times, with its active loop in each plane ``(mu, nu)`` once. Longer
    stacks repeat the cycle. All lattice extents must be even. With ``loop="staples"`` every layer
    starts from its own plaquette (``alpha`` one-hot on ``S_nu^+``). The other arguments are those of
    :class:`SUNdPlaquetteCoupling`.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = sun_nd_gauge_flow(lk.SU(2), lk.Lattice((2, 2, 2)), hidden=(2,), embed=2, head_hidden=(2,))
    >>> len(f), [(l.mu, l.nu, l.parity) for l in f.layers][:7]
    (12, [(0, 1, 0), (1, 2, 0), (2, 0, 0), (0, 1, 1), (1, 2, 1), (2, 0, 1), (0, 2, 0)])
    """
    _check_group(group)
    _check_lattice(lattice)
    layers = [SUNdPlaquetteCoupling(group, lattice, mu, nu, parity, bins=bins, hidden=hidden,
                                    kernel_size=kernel_size, act=act, context_channels=context_channels,
                                    zero_init=zero_init, loop_context=loop_context, embed=embed,
                                    head_hidden=head_hidden, loop=loop, learn_alpha=learn_alpha)
              for mu, nu, parity in _stack_layers(lattice, n_layers)]
    return Flow(layers)
