"""Context networks: periodic convolutional nets on the lattice (Albergo et al. 2019 architecture).

:class:`ConvNet` is a stack of ``Conv{1,2,3}d`` layers with ``padding_mode="circular"`` (the lattice
is periodic), odd kernel size, and an activation between layers. It maps ``(N, C_in, *L)`` to
``(N, C_out, *L)`` and is equivariant under lattice translations.

Limitation: torch has convolutions for 1, 2 and 3 spatial dimensions only, so lattices with
``Nd = 1, 2, 3`` are supported; ``Nd = 4`` raises a ValueError naming the limitation.

Examples
--------
>>> import torch
>>> net = ConvNet(2, 1, 3, hidden=(4,), kernel_size=3)
>>> net(torch.zeros(5, 1, 4, 4)).shape
torch.Size([5, 3, 4, 4])
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["ConvNet", "activation"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_ACT = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``leaky_relu``, ``tanh``, ``gelu``, ``silu``).

    Examples
    --------
    >>> activation("tanh")
    Tanh()
    """
    try:
        return _ACT[name]()
    except KeyError:
        raise ValueError(f"activation={name!r}: expected one of {sorted(_ACT)}") from None


class ConvNet(nn.Module):
    """Periodic CNN ``(N, in_channels, *L) -> (N, out_channels, *L)``.

    Parameters
    ----------
    nd : int
        Number of lattice dimensions (1, 2 or 3).
    in_channels, out_channels : int
    hidden : sequence of int
        Channels of the hidden layers.
    kernel_size : int
        Odd kernel size (the receptive field grows by ``kernel_size - 1`` per layer).
    act : str
        Activation between layers.
    final_tanh : bool
        Apply ``tanh`` to the output (bounded outputs, e.g. affine log-scales).
    zero_init : bool
        Initialise the last layer to zero, so a coupling layer starts as the identity.

    Examples
    --------
    >>> net = ConvNet(3, 2, 2, hidden=(), kernel_size=1)
    >>> sum(p.numel() for p in net.parameters())
    6
    """

    def __init__(self, nd: int, in_channels: int, out_channels: int, hidden: Sequence[int] = (8, 8),
                 kernel_size: int = 3, act: str = "leaky_relu", final_tanh: bool = False,
                 zero_init: bool = False) -> None:
        super().__init__()
        if nd not in _CONV:
            raise ValueError(f"nd={nd}: torch offers periodic convolutions for 1, 2 or 3 lattice dimensions only "
                             "(Conv1d/2d/3d); a 4D context network is not available in this layer")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size={kernel_size}: expected an odd positive size (keeps the lattice shape)")
        if in_channels < 1 or out_channels < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"channels: expected positive numbers, got in={in_channels}, out={out_channels}, "
                             f"hidden={tuple(hidden)}")
        conv = _CONV[nd]
        chans = [in_channels, *hidden, out_channels]
        mods: list[nn.Module] = []
        for i in range(len(chans) - 1):
            mods.append(conv(chans[i], chans[i + 1], kernel_size, padding=kernel_size // 2,
                             padding_mode="circular"))
            if i < len(chans) - 2:
                mods.append(activation(act))
        if final_tanh:
            mods.append(nn.Tanh())
        self.net = nn.Sequential(*mods)
        self.nd = nd
        if zero_init:
            last = [m for m in mods if isinstance(m, conv)][-1]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
