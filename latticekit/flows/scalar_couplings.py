"""Checkerboard coupling layers for real scalar fields (phi^4) in any number of dimensions.

Albergo, Kanwar & Shanahan, PRD 100, 034515 (2019): the sites of one parity are *active*, the
others *frozen*; a periodic CNN reads the frozen sublattice (active sites zeroed) and outputs
parameters of an elementwise bijection of the active sites. The Jacobian is triangular, so the
log-det is the sum over active sites of the elementwise log-derivatives.

* :class:`AffineCoupling` — ``phi' = phi exp(s) + t`` (real NVP), ``s`` optionally ``tanh``-bounded;
* :class:`SplineCoupling` — monotone RQ spline on ``[-bound, bound]`` with identity tails.

Both accept an optional ``context`` tensor ``(*B, C, *L)`` (``context_channels = C``) that is fed to
the network as extra input channels (conditioning, e.g. on a coarse field). Fields have shape
``(*B, *L)`` (DESIGN.md). The layers are translation equivariant under shifts that preserve the
checkerboard (even total shift).

The lattice may have any ``Nd >= 1`` (with even extents the checkerboard is consistent across
the periodic boundary; :class:`~latticekit.app.config.FlowConfig` requires them). The network is a
:class:`~latticekit.flows.nets.ConvNet` with its default layers: native ``Conv{Nd}d`` for
``Nd <= 3`` and, for ``Nd >= 4`` (no ``Conv4d`` in torch), spatially separated blocks of periodic
1D convolutions along each axis (Abbott et al., arXiv:2208.03832).

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4))
>>> layer = AffineCoupling(lat, parity=0).to(torch.float64)
>>> phi = torch.randn(3, 4, 4, dtype=torch.float64)
>>> y, ld = layer(phi)
>>> x, ldi = layer.inverse(y)
>>> bool(torch.allclose(x, phi)), bool(torch.allclose(ld, -ldi))
(True, True)
>>> layer4 = SplineCoupling(lk.Lattice((2, 2, 2, 4)), parity=1, bins=4, hidden=(2,)).to(torch.float64)
>>> y4, ld4 = layer4(torch.randn(3, 2, 2, 2, 4, dtype=torch.float64))
>>> tuple(y4.shape), tuple(ld4.shape)
((3, 2, 2, 2, 4), (3,))
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.lattice import Lattice

from .base import Flow, FlowLayer, append_context, sum_sites
from .nets import ConvNet
from .splines import rq_spline

__all__ = ["AffineCoupling", "SplineCoupling", "checkerboard_mask", "scalar_coupling_flow"]


def checkerboard_mask(lattice: Lattice, parity: int) -> torch.Tensor:
    """Float mask (default dtype) equal to 1 on the sites of ``parity`` (``sum_mu x_mu mod 2``).

    Examples
    --------
    >>> import latticekit as lk
    >>> checkerboard_mask(lk.Lattice((2, 2)), 0).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    return lattice.checkerboard(parity, backend="torch", dtype="bool").to(torch.get_default_dtype())


class _CheckerboardCoupling(FlowLayer):
    n_params: int = 0

    def __init__(self, lattice: Lattice, parity: int, hidden: Sequence[int], kernel_size: int, act: str,
                 context_channels: int, zero_init: bool, final_tanh: bool = False) -> None:
        super().__init__()
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if parity not in (0, 1):
            raise ValueError(f"parity={parity!r}: expected 0 (even sites active) or 1 (odd sites active)")
        if context_channels < 0:
            raise ValueError(f"context_channels={context_channels}: expected >= 0")
        self.lattice = lattice
        self.parity = parity
        self.context_channels = int(context_channels)
        self.register_buffer("mask", checkerboard_mask(lattice, parity))
        self.net = ConvNet(lattice.nd, 1 + self.context_channels, self.n_params, hidden, kernel_size, act,
                           final_tanh=final_tanh, zero_init=zero_init)

    def extra_repr(self) -> str:
        return f"lattice={self.lattice.shape}, parity={self.parity}, context_channels={self.context_channels}"

    def _params(self, x: torch.Tensor, context: Any) -> tuple[torch.Tensor, tuple[int, ...]]:
        """Network output ``(*B, P, *L)`` computed from the frozen sites (and the context)."""
        self.lattice.check(x, "x")
        nd = self.lattice.nd
        batch = tuple(x.shape[: x.ndim - nd])
        if len(batch) == 0:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected at least one batch axis (*B, *L)")
        frozen = (x * (1.0 - self.mask)).reshape((-1, 1) + self.lattice.shape)
        frozen = append_context(frozen, context, self.context_channels, batch, self.lattice.shape)
        out = self.net(frozen)
        return out.reshape(batch + (self.n_params,) + self.lattice.shape), batch


class AffineCoupling(_CheckerboardCoupling):
    """Real-NVP checkerboard coupling ``phi'_a = phi_a exp(s(phi_f)) + t(phi_f)`` on active sites ``a``.

    Parameters
    ----------
    lattice : Lattice
        Any number of dimensions (for ``Nd >= 4`` the CNN uses separable blocks, see
        :class:`~latticekit.flows.nets.ConvNet`).
    parity : int
        Parity of the active sites.
    hidden : sequence of int
        Hidden channels of the periodic CNN.
    kernel_size : int
    act : str
    tanh_scale : bool
        Bound ``s`` by ``tanh`` (Albergo et al.).
    context_channels : int
        Extra input channels read from ``context``.
    zero_init : bool
        Start as the identity.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> layer = AffineCoupling(lk.Lattice((4, 4)), 1, zero_init=True)
    >>> y, ld = layer(torch.ones(2, 4, 4))
    >>> bool((y == 1).all()), ld.tolist()
    (True, [0.0, 0.0])
    """

    n_params = 2

    def __init__(self, lattice: Lattice, parity: int, hidden: Sequence[int] = (8, 8), kernel_size: int = 3,
                 act: str = "leaky_relu", tanh_scale: bool = True, context_channels: int = 0,
                 zero_init: bool = False) -> None:
        self.tanh_scale = bool(tanh_scale)
        super().__init__(lattice, parity, hidden, kernel_size, act, context_channels, zero_init)

    def extra_repr(self) -> str:
        # part of a checkpoint's architecture description: tanh_scale changes the map (a checkpoint of one loaded
        # into the other silently; user probe). Shown only when off, so that checkpoints of the default still load.
        return super().extra_repr() + ("" if self.tanh_scale else ", tanh_scale=False")

    def _st(self, x: torch.Tensor, context: Any) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self._params(x, context)
        k = out.ndim - self.lattice.nd - 1
        s = out.select(k, 0)
        t = out.select(k, 1)
        if self.tanh_scale:
            s = torch.tanh(s)
        return s * self.mask, t * self.mask

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(x, context)
        y = x * torch.exp(s) + t            # s = t = 0 on frozen sites
        return y, sum_sites(s, self.lattice.nd)

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        s, t = self._st(y, context)         # frozen sites of y equal those of x
        x = (y - t) * torch.exp(-s)
        return x, -sum_sites(s, self.lattice.nd)


class SplineCoupling(_CheckerboardCoupling):
    """Checkerboard coupling with a monotone RQ spline per active site (identity tails).

    Parameters
    ----------
    lattice : Lattice
    parity : int
    bins : int
        Number of spline bins ``K`` (the net outputs ``3 K - 1`` channels).
    bound : float
        Spline interval ``[-bound, bound]``; identity outside.
    hidden, kernel_size, act, context_channels, zero_init
        As in :class:`AffineCoupling`.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> layer = SplineCoupling(lk.Lattice((4,)), 0, bins=4, zero_init=True)
    >>> y, ld = layer(torch.linspace(-1, 1, 4)[None])
    >>> bool(torch.allclose(y, torch.linspace(-1, 1, 4)[None])), ld.abs().max().item() < 1e-6
    (True, True)
    """

    def __init__(self, lattice: Lattice, parity: int, bins: int = 8, bound: float = 4.0,
                 hidden: Sequence[int] = (8, 8), kernel_size: int = 3, act: str = "leaky_relu",
                 context_channels: int = 0, zero_init: bool = False) -> None:
        if bins < 2:
            raise ValueError(f"bins={bins}: expected at least 2 bins")
        if not bound > 0:
            raise ValueError(f"bound={bound}: expected a positive half width")
        self.bins = int(bins)
        self.bound = float(bound)
        self.n_params = 3 * self.bins - 1
        super().__init__(lattice, parity, hidden, kernel_size, act, context_channels, zero_init)
        # spline function (compile_splines may point _spline at a compiled version)
        self._spline_eager = self._spline = rq_spline

    def extra_repr(self) -> str:
        return super().extra_repr() + f", bins={self.bins}, bound={self.bound}"

    def _transform(self, x: torch.Tensor, src: torch.Tensor, context: Any, inverse: bool
               ) -> tuple[torch.Tensor, torch.Tensor]:
        out, _ = self._params(src, context)
        K = self.bins
        k = out.ndim - self.lattice.nd - 1
        p = torch.movedim(out, k, -1)                       # (*B, *L, 3K-1)
        w, h, d = p[..., :K], p[..., K:2 * K], p[..., 2 * K:]
        y, ld = self._spline(x, w, h, d, bound=self.bound, tails="linear", inverse=inverse)
        m = self.mask
        y = m * y + (1.0 - m) * x
        return y, sum_sites(m * ld, self.lattice.nd)

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._transform(x, x, context, inverse=False)

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._transform(y, y, context, inverse=True)


def scalar_coupling_flow(lattice: Lattice, n_layers: int = 8, coupling: str = "affine", **kwargs: Any) -> Flow:
    """A stack of checkerboard couplings alternating the active parity (0, 1, 0, 1, ...).

    Parameters
    ----------
    lattice : Lattice
    n_layers : int
        Number of layers (even, so both sublattices are updated equally often).
    coupling : {"affine", "spline"}
    **kwargs
        Passed to :class:`AffineCoupling` / :class:`SplineCoupling`.

    Examples
    --------
    >>> import latticekit as lk
    >>> f = scalar_coupling_flow(lk.Lattice((4, 4)), 4, "spline", bins=4)
    >>> [layer.parity for layer in f.layers]
    [0, 1, 0, 1]
    """
    kinds = {"affine": AffineCoupling, "spline": SplineCoupling}
    if coupling not in kinds:
        raise ValueError(f"coupling={coupling!r}: expected one of {sorted(kinds)}")
    if n_layers < 1:
        raise ValueError(f"n_layers={n_layers}: expected at least one layer")
    return Flow([kinds[coupling](lattice, i % 2, **kwargs) for i in range(n_layers)])
