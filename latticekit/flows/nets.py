"""Context networks: periodic convolutional nets on the lattice (Albergo et al. 2019 architecture).

:class:`ConvNet` maps ``(N, C_in, *L)`` to ``(N, C_out, *L)`` for a lattice with any number of
dimensions ``Nd >= 1``. It is a stack of periodic convolutions with odd kernel size and an
activation between layers, so it is equivariant under every lattice translation (the lattice is
periodic). Two kinds of layer are available:

* native ``Conv1d/2d/3d`` with periodic padding (default for ``Nd <= 3``; full
  ``kernel_size**Nd`` kernels). The padding is an ``index_select`` with ``arange(-p, L + p) mod L``
  along each lattice axis: the same values as ``padding_mode="circular"``, but its backward pass is
  2-3x cheaper on the small lattices of flow training (and kernels longer than the lattice wrap);
* *spatially separated* blocks (default for ``Nd >= 4``, where torch has no ``Conv4d``; optional in
  any ``Nd``): each block is the sequential application of a periodic one-dimensional convolution
  along each lattice axis, bias on the last one only, with the number of channels between the 1D
  convolutions equal to the block's output channels. This is the architecture of the 4D networks of
  Abbott et al., *Sampling QCD field configurations with gauge-equivariant flow models*, LATTICE2022,
  arXiv:2208.03832, Sec. 3.1 ("Spatially separated convolutions are used").

Examples
--------
>>> import torch
>>> net = ConvNet(2, 1, 3, hidden=(4,), kernel_size=3)
>>> net(torch.zeros(5, 1, 4, 4)).shape
torch.Size([5, 3, 4, 4])
>>> net4 = ConvNet(4, 1, 2, hidden=(3,))          # separable blocks
>>> net4(torch.zeros(2, 1, 2, 4, 2, 2)).shape
torch.Size([2, 2, 2, 4, 2, 2])
"""

from __future__ import annotations

import operator
from typing import Any, Sequence

import torch
from torch import nn

from .conv_pieces import conv_in_pieces

__all__ = ["ACTIVATIONS", "ConvNet", "activation", "mlp", "periodic_pad"]

_ACT = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU, "elu": nn.ELU}
#: names accepted by :func:`activation` (and the ``act`` options of the layers)
ACTIVATIONS: tuple[str, ...] = tuple(sorted(_ACT))


def activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``leaky_relu``, ``tanh``, ``gelu``, ``silu``, ``elu``).

    Examples
    --------
    >>> activation("tanh")
    Tanh()
    """
    try:
        return _ACT[name]()
    except KeyError:
        raise ValueError(f"activation={name!r}: expected one of {sorted(_ACT)}") from None


def _is_int(v: object) -> bool:
    if isinstance(v, bool):
        return False
    try:
        operator.index(v)  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


_WRAP_INDEX: dict[tuple[int, int, str], torch.Tensor] = {}


# the direct C++ apply relies on a private torch function (present in torch 2.x); without it, torch's own apply
_DIRECT_APPLY = hasattr(torch._C, "_are_functorch_transforms_active")


class _PeriodicPadAxis(torch.autograd.Function):
    """Periodic padding of one axis by ``p <= L`` sites: the forward is one ``cat`` of two end slices and
    the tensor (contiguous copies), the backward the middle of the gradient plus the two padded end
    slices folded back onto the opposite ends (two in-place adds on one copy). The same values as the
    ``index_select`` padding and the same gradients bit for bit (per axis an element receives its two or
    three terms in the order of the ``index_add``, up to swapping the first two). On the hidden
    activations of flow training (batch 1024, 32 channels, 8 x 8) forward and backward take about half
    the time of the ``index_select`` / ``index_add`` pair."""

    generate_vmap_rule = True

    @classmethod
    def apply(cls, x: torch.Tensor, axis: int, p: int) -> torch.Tensor:  # type: ignore[override]
        # torch's Function.apply binds the arguments to the signature of forward (inspect.signature, about
        # 10 us a call, 1-3% of a small-batch flow step); with no functorch transform active it only
        # forwards to the C++ apply, which is called directly here (vmap/grad transforms take torch's path)
        if not _DIRECT_APPLY or torch._C._are_functorch_transforms_active():
            return super().apply(x, axis, p)
        return super(torch.autograd.Function, cls).apply(x, axis, p)  # type: ignore[misc]

    @staticmethod
    def forward(x: torch.Tensor, axis: int, p: int) -> torch.Tensor:  # type: ignore[override]
        n = x.shape[axis]
        return torch.cat([x.narrow(axis, n - p, p), x, x.narrow(axis, 0, p)], axis)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        _, axis, p = inputs
        ctx.axis, ctx.p = axis, p

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        a, p = ctx.axis, ctx.p
        n = g.shape[a] - 2 * p
        out = g.narrow(a, p, n).clone()
        out.narrow(a, n - p, p).add_(g.narrow(a, 0, p))
        out.narrow(a, 0, p).add_(g.narrow(a, n + p, p))
        return out, None, None


def periodic_pad(x: torch.Tensor, p: int, axes: Sequence[int]) -> torch.Tensor:
    """Pad ``x`` periodically by ``p`` sites on both sides of every axis in ``axes``.

    Equal to ``F.pad(..., mode="circular")`` for ``p <= L``, and also defined for ``p > L`` (the
    padding then wraps around the axis several times). For ``p <= L`` one ``cat`` per axis with a
    hand-written backward (:class:`_PeriodicPadAxis`); for ``p > L`` one ``index_select`` per axis with
    ``arange(-p, L + p) mod L``. Both backward passes are 2-3x cheaper than that of the circular pad,
    the first about 2x cheaper again than the ``index_select`` one on the activations of flow training.

    Examples
    --------
    >>> import torch
    >>> periodic_pad(torch.arange(4.0)[None], 1, axes=(1,)).tolist()
    [[3.0, 0.0, 1.0, 2.0, 3.0, 0.0]]
    >>> periodic_pad(torch.arange(2.0)[None], 3, axes=(1,)).tolist()
    [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]]
    """
    for a in axes:
        a = operator.index(a) % x.ndim
        L = x.shape[a]
        if p <= L:
            x = _PeriodicPadAxis.apply(x, a, p)
            continue
        key = (L, p, str(x.device))
        idx = _WRAP_INDEX.get(key)
        if idx is None:
            idx = _WRAP_INDEX[key] = torch.remainder(torch.arange(-p, L + p, device=x.device), L)
        x = x.index_select(a, idx)
    return x


def _periodic_pad_index(x: torch.Tensor, p: int, axes: Sequence[int]) -> torch.Tensor:
    """The ``index_select`` padding for every ``p`` (reference of the tests and benchmarks)."""
    for a in axes:
        L = x.shape[a]
        x = x.index_select(a, torch.remainder(torch.arange(-p, L + p, device=x.device), L))
    return x


class _PeriodicConvMixin:
    """A native ``Conv{nd}d(..., padding=k // 2, padding_mode="circular")`` whose periodic padding is
    :func:`periodic_pad` instead of ``F.pad(mode="circular")``: the same values, a cheaper backward
    pass, and kernels longer than an extent wrap. The attributes, parameter names and ``repr`` are
    those of the native module, so checkpoint architecture hashes are unchanged."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        k = self.kernel_size  # type: ignore[attr-defined]
        nd = len(k)
        x = periodic_pad(input, k[0] // 2, range(input.ndim - nd, input.ndim)) if k[0] // 2 else input
        # in batch pieces where torch's float64 CPU convolution would unfold a large batch (conv_pieces)
        return conv_in_pieces(x, weight, bias, self.stride, 0, self.dilation, self.groups)  # type: ignore[attr-defined]

    def _get_name(self) -> str:
        return type(self).__mro__[2].__name__


class _PeriodicConv1d(_PeriodicConvMixin, nn.Conv1d):
    pass


class _PeriodicConv2d(_PeriodicConvMixin, nn.Conv2d):
    pass


class _PeriodicConv3d(_PeriodicConvMixin, nn.Conv3d):
    pass


_CONV = {1: _PeriodicConv1d, 2: _PeriodicConv2d, 3: _PeriodicConv3d}


class _AxisConv(nn.Module):
    """Periodic 1D convolution along lattice axis ``axis`` of an ``(N, C, L_0, ..., L_{nd-1})`` tensor.

    The axis is moved last and the other lattice axes are folded into the batch, so one
    ``nn.Conv1d`` (``padding=0``) acts on ``(N * prod_{nu != axis} L_nu, C, L_axis)``. The periodic
    padding by ``p = kernel_size // 2`` is an ``index_select`` with ``arange(-p, L + p) mod L``, which
    (unlike ``padding_mode="circular"``, which refuses ``p > L``) also works when the kernel is
    longer than the lattice extent: the kernel then wraps around the periodic axis several times.
    """

    def __init__(self, nd: int, axis: int, in_channels: int, out_channels: int, kernel_size: int,
                 bias: bool) -> None:
        super().__init__()
        self.nd = nd
        self.axis = axis
        self.pad = kernel_size // 2
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=0, bias=bias)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, periodic_pad={self.pad}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = 2 + self.axis
        L = x.shape[a]
        h = torch.movedim(x, (1, a), (-2, -1))                 # (N, *other L, C, L_axis)
        rest = tuple(h.shape[:-2])
        h = h.reshape(-1, h.shape[-2], L)
        if self.pad:
            h = periodic_pad(h, self.pad, (h.ndim - 1,))
        h = conv_in_pieces(h, self.conv.weight, self.conv.bias)  # (N * prod other L, C_out, L_axis)
        h = h.reshape(rest + (h.shape[-2], L))
        return torch.movedim(h, (-2, -1), (1, a))


class _SeparableBlock(nn.Module):
    """``C_in -> C_out`` by one periodic 1D convolution per lattice axis (bias on the last one only); the
    channels between them are ``C_out`` (``widen_first``) or ``C_in`` (the last convolution widens)."""

    def __init__(self, nd: int, in_channels: int, out_channels: int, kernel_size: int,
                 widen_first: bool = True) -> None:
        super().__init__()
        self.nd = nd
        mid = out_channels if widen_first else in_channels
        chans = [in_channels] + [mid] * (nd - 1) + [out_channels]
        self.convs = nn.ModuleList(
            _AxisConv(nd, k, chans[k], chans[k + 1], kernel_size, bias=k == nd - 1) for k in range(nd))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != self.nd + 2:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (N, C, L_0, ..., L_{self.nd - 1}) "
                             f"with {self.nd} lattice axes")
        for conv in self.convs:
            x = conv(x)
        return x


class ConvNet(nn.Module):
    """Periodic CNN ``(N, in_channels, *L) -> (N, out_channels, *L)`` for any number of lattice axes.

    Layers ``in_channels -> hidden[0] -> ... -> hidden[-1] -> out_channels`` with the activation
    ``act`` between them (not after the last). Every layer is periodic and has odd kernel size, so
    the lattice shape is kept and the network commutes with all lattice translations.

    Layer kinds. With ``separable=False`` a layer is a native torch ``Conv{nd}d`` on the
    periodically padded input (:func:`periodic_pad`; ``nd <= 3`` only: torch has no ``Conv4d``).
    With ``separable=True`` a layer is a *separable block*: ``nd`` successive periodic 1D convolutions, one along each
    lattice axis ``0, 1, ..., nd - 1`` (the first ``C_in -> C_out``, the others ``C_out -> C_out``),
    with a bias on the last one only and no activation inside the block. A block has
    ``k (C_in C_out + (nd - 1) C_out^2) + C_out`` parameters instead of ``k^nd C_in C_out + C_out``
    and the same receptive field (``k^nd`` sites). This is the "spatially separated convolution" of
    the 4D QCD flows of Abbott et al., arXiv:2208.03832, Sec. 3.1. The default ``separable=None``
    uses native convolutions for ``nd <= 3`` (the parameter names, hence checkpoints, are those of
    earlier versions) and separable blocks for ``nd >= 4``.

    Parameters
    ----------
    nd : int
        Number of lattice dimensions (any ``nd >= 1``).
    in_channels, out_channels : int
        Input and output channels (positive).
    hidden : sequence of int
        Channels of the hidden layers (positive); ``()`` gives a single layer.
    kernel_size : int
        Odd kernel size per axis (the receptive field grows by ``kernel_size - 1`` per layer).
        Kernels longer than the lattice extent wrap around the periodic axis.
    act : str
        Activation between layers (see :func:`activation`).
    final_tanh : bool
        Apply ``tanh`` to the output (bounded outputs, e.g. affine log-scales).
    zero_init : bool
        Initialise the last convolution (weights and bias; for separable blocks, the last 1D
        convolution of the last block) to zero, so the output is 0 and a coupling layer starts as
        the identity.
    separable : bool or None
        ``None``: native for ``nd <= 3``, separable for ``nd >= 4``; ``True``: separable blocks in
        any ``nd``; ``False``: native (``nd <= 3``).
    separable_width : {"out", "in"}
        Channels between the 1D convolutions of a separable block: ``"out"`` (the paper's rule, above) or
        ``"in"`` (the first ``nd - 1`` convolutions keep ``C_in`` channels and the last one maps to ``C_out``):
        for wide outputs from narrow inputs, e.g. the per-layer heads of the 4D pseudofermion layers
        (8 -> 1760 channels: 3 (8 * 8 * 3 + 8 * 1760) instead of 3 (8 * 1760 + 3 * 1760^2) weights).

    Examples
    --------
    >>> net = ConvNet(3, 2, 2, hidden=(), kernel_size=1)
    >>> sum(p.numel() for p in net.parameters())
    6
    >>> sep = ConvNet(3, 2, 2, hidden=(), kernel_size=1, separable=True)   # 2*2 + 2*2 + 2*2 + 2
    >>> sum(p.numel() for p in sep.parameters())
    14
    >>> import torch
    >>> ConvNet(4, 1, 1, zero_init=True)(torch.randn(1, 1, 2, 2, 2, 2)).abs().max().item()
    0.0
    """

    def __init__(self, nd: int, in_channels: int, out_channels: int, hidden: Sequence[int] = (8, 8),
                 kernel_size: int = 3, act: str = "leaky_relu", final_tanh: bool = False,
                 zero_init: bool = False, separable: bool | None = None, separable_width: str = "out") -> None:
        super().__init__()
        if separable_width not in ("out", "in"):
            raise ValueError(f"separable_width={separable_width!r}: expected 'out' or 'in'")
        if not _is_int(nd) or nd < 1:
            raise ValueError(f"nd={nd!r}: expected a positive number of lattice dimensions")
        if separable is not None and not isinstance(separable, bool):
            raise ValueError(f"separable={separable!r}: expected None (native for nd <= 3, separable for nd >= 4), "
                             "True or False")
        sep = nd > 3 if separable is None else separable
        if not sep and nd not in _CONV:
            raise ValueError(f"separable=False with nd={nd}: torch offers native convolutions for 1, 2 or 3 "
                             "lattice dimensions only (Conv1d/2d/3d); use separable=True or None")
        if not _is_int(kernel_size) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size!r}: expected an odd positive size (keeps the lattice shape)")
        if not _is_int(in_channels) or in_channels < 1:
            raise ValueError(f"in_channels={in_channels!r}: expected a positive number of channels")
        if not _is_int(out_channels) or out_channels < 1:
            raise ValueError(f"out_channels={out_channels!r}: expected a positive number of channels")
        hidden = tuple(hidden)
        if any(not _is_int(h) or h < 1 for h in hidden):
            raise ValueError(f"hidden={hidden}: expected positive numbers of channels")
        if act not in _ACT:
            raise ValueError(f"act={act!r}: expected one of {sorted(_ACT)}")
        nd, kernel_size = int(nd), int(kernel_size)
        chans = [int(in_channels), *(int(h) for h in hidden), int(out_channels)]
        mods: list[nn.Module] = []
        last: nn.Conv1d | nn.Conv2d | nn.Conv3d
        for i in range(len(chans) - 1):
            if sep:
                block = _SeparableBlock(nd, chans[i], chans[i + 1], kernel_size, separable_width == "out")
                last = block.convs[-1].conv
                mods.append(block)
            else:
                last = _CONV[nd](chans[i], chans[i + 1], kernel_size, padding=kernel_size // 2,
                                 padding_mode="circular")
                mods.append(last)
            if i < len(chans) - 2:
                mods.append(activation(act))
        if final_tanh:
            mods.append(nn.Tanh())
        self.net = nn.Sequential(*mods)
        self.nd = nd
        self.separable = sep
        if zero_init:
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    #: dtype of the convolutions for float32 inputs (``None``: float32 itself); set on a whole model by
    #: :func:`~latticekit.flows.context_precision.set_context_dtype`
    compute_dtype: torch.dtype | None = None

    def _in_compute_dtype(self, fn: Any, x: torch.Tensor, *args: Any) -> torch.Tensor:
        """``fn(x, *args)``, for a float32 ``x`` with its convolutions in ``compute_dtype`` when that is set
        (torch.autocast casts their inputs and weights; the activations between them stay in it) and the
        output back in float32 (context_precision.py)."""
        if self.compute_dtype is None or x.dtype != torch.float32:
            return fn(x, *args)
        with torch.autocast(x.device.type, dtype=self.compute_dtype):
            out = fn(x, *args)
        return out.to(x.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._in_compute_dtype(self.net, x)

    def forward_stripe(self, x: torch.Tensor, axis: int, period: int, offset: int) -> torch.Tensor:
        """The output on the stripe ``x_axis = offset (mod period)`` only: equal to
        ``forward(x).index_select(2 + axis, arange(offset, L_axis, period))``.

        Coupling layers need their parameters at the active sites only (a quarter of the lattice for
        the 2D gauge stripes). The last layer, usually the widest (``3 K`` spline channels), is then
        evaluated on the needed rows only: the ``2 p + 1`` rows around each output row
        (``p = kernel_size // 2``, periodic) are gathered, and a convolution with stride ``2 p + 1``
        along ``axis``, periodic padding along the other axes, gives exactly the stripe. This halves
        the cost of the widest convolution on the 2D gauge layers (forward and backward). When
        ``2 p + 1 < period`` (the 2D gauge stripes: period 4, ``p = 1``) the second-to-last convolution
        is restricted too: the ``4 p + 1`` rows around each stripe row are folded into the batch and
        both convolutions run on these slabs (:meth:`_stripe_slabs`), so the second-to-last one
        evaluates 3/4 of the lattice (0.90 of the U(1) training step at L = 8, benchmarks/README.md).
        Separable nets (``nd >= 4``) evaluate the full output and select the stripe.

        Parameters
        ----------
        x : Tensor, shape ``(N, in_channels, *L)``
        axis : int
            Lattice axis of the stripe (``0 <= axis < nd``).
        period, offset : int
            ``L_axis`` must be a multiple of ``period``; ``0 <= offset < period``.

        Returns
        -------
        Tensor, shape ``(N, out_channels, *L)`` with ``L_axis`` replaced by ``L_axis // period``.

        Examples
        --------
        >>> import torch
        >>> net = ConvNet(2, 2, 5, hidden=(3,))
        >>> x = torch.randn(4, 2, 8, 6)
        >>> full = net(x)[:, :, 1::4]
        >>> bool(torch.allclose(net.forward_stripe(x, axis=0, period=4, offset=1), full, atol=1e-6))
        True
        """
        nd = self.nd
        if not _is_int(axis) or not 0 <= axis < nd:
            raise ValueError(f"axis={axis!r}: expected a lattice axis in 0..{nd - 1}")
        if x.ndim != nd + 2:
            raise ValueError(f"x has shape {tuple(x.shape)}; expected (N, C, L_0, ..., L_{nd - 1})")
        L = x.shape[2 + axis]
        if not _is_int(period) or period < 1 or L % period:
            raise ValueError(f"period={period!r}: expected a positive divisor of L_{axis} = {L}")
        if not _is_int(offset) or not 0 <= offset < period:
            raise ValueError(f"offset={offset!r}: expected 0 <= offset < period = {period}")
        return self._in_compute_dtype(self._forward_stripe, x, axis, period, offset)

    def _forward_stripe(self, x: torch.Tensor, axis: int, period: int, offset: int) -> torch.Tensor:
        """:meth:`forward_stripe` on checked arguments."""
        nd = self.nd
        L = x.shape[2 + axis]
        rows = torch.arange(offset, L, period, device=x.device)
        last = self.net[-1]
        if self.separable or not isinstance(last, nn.modules.conv._ConvNd):
            return self.net(x).index_select(2 + axis, rows)
        mods = list(self.net)  # (not self.net[:-1](x): the slice builds a new Sequential per call)
        k = last.kernel_size[0]
        p = k // 2
        convs = [i for i, m in enumerate(mods) if isinstance(m, nn.modules.conv._ConvNd)]
        if len(convs) >= 2 and p and 2 * p + 1 < period:
            return self._stripe_slabs(x, mods, convs[-2], axis, rows, p)
        h = x
        for mod in mods[:-1]:
            h = mod(h)
        # rows r - p .. r + p around every output row r, periodic: (N, C, ..., (2p+1) L/period, ...)
        idx = torch.remainder(rows[:, None] + torch.arange(-p, p + 1, device=x.device)[None, :], L).reshape(-1)
        h = h.index_select(2 + axis, idx)
        if p:
            # periodic padding of the other axes
            h = periodic_pad(h, p, [2 + a for a in range(nd) if a != axis])
        stride = [1] * nd
        stride[axis] = k
        return conv_in_pieces(h, last.weight, last.bias, stride=tuple(stride))

    def _stripe_slabs(self, x: torch.Tensor, mods: list[nn.Module], j: int, axis: int, rows: torch.Tensor,
                      p: int) -> torch.Tensor:
        """:meth:`forward_stripe` with the last two convolutions on row slabs: the ``4 p + 1`` rows around each
        stripe row are gathered from the input of module ``j`` (the second-to-last convolution) and folded into
        the batch; both convolutions then run unpadded along ``axis`` (periodic padding along the others), the
        first giving the ``2 p + 1`` rows the last one reads, the last one row. With ``2 p + 1 < period`` the
        second-to-last convolution evaluates ``(2 p + 1) / period`` of the lattice instead of all of it (3/4 for
        the 2D gauge stripes; benchmarks/conv_variants.py: 0.88-0.96 of the time of the net)."""
        nd = self.nd
        h = x
        for mod in mods[:j]:
            h = mod(h)
        N, C = h.shape[0], h.shape[1]
        L = h.shape[2 + axis]
        n = rows.numel()
        W = 4 * p + 1
        idx = torch.remainder(rows[:, None] + torch.arange(-2 * p, 2 * p + 1, device=x.device)[None, :], L)
        h = h.index_select(2 + axis, idx.reshape(-1)).movedim(2 + axis, 2)       # (N, C, n W, other axes)
        rest = h.shape[3:]
        h = h.reshape(N, C, n, W, *rest).movedim(2, 1).reshape(N * n, C, W, *rest)
        others = list(range(3, 2 + nd))
        for mod in mods[j:]:
            if isinstance(mod, nn.modules.conv._ConvNd):
                # the stripe axis is now the first lattice axis: move the kernel's axis there too
                w = mod.weight.movedim(2 + axis, 2)
                h = conv_in_pieces(periodic_pad(h, p, others) if others else h, w, mod.bias)
            else:
                h = mod(h)
        out = h.reshape(N, n, h.shape[1], *rest).movedim(1, 2)                   # (N, C_out, n, other axes)
        return out.movedim(2, 2 + axis)


def mlp(n_in: int, n_out: int, hidden: Sequence[int], act: str, zero_init: bool) -> nn.Sequential:
    """An MLP ``n_in -> hidden -> n_out``; ``zero_init`` zeroes the last layer (output 0).

    Examples
    --------
    >>> import torch
    >>> net = mlp(4, 3, (8,), "tanh", zero_init=True)
    >>> net(torch.ones(2, 4)).abs().max().item()
    0.0
    """
    if any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden={tuple(hidden)}: expected positive widths")
    dims = [int(n_in), *(int(h) for h in hidden), int(n_out)]
    mods: list[nn.Module] = []
    for i in range(len(dims) - 1):
        mods.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            mods.append(activation(act))
    if zero_init:
        nn.init.zeros_(mods[-1].weight)
        nn.init.zeros_(mods[-1].bias)
    return nn.Sequential(*mods)
