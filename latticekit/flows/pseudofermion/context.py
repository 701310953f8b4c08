"""Context function of the pseudofermion layers (App. B.2 of arXiv:2207.08945).

The matrices ``M`` of the PTCs (eq. 26) and ``A(x)`` (eq. 28) are outputs of a "context function"
of the gauge field only (never of the pseudofermions, which keeps each layer linear in ``phi``), with
gauge-invariant inputs (which makes each layer gauge equivariant). As in App. B.2:

* inputs (eq. B2, B3): ``Re tr P(x)``, ``Im tr P(x)`` (2D: the plaquette ``P_01``; 4D: summed over the
  planes ``mu < nu``) and ``I_i(x) = x_i mod 4`` for every direction (a constant input with
  periodicity 4: "improves the quality, but is nonessential"; ``coords=False`` drops it);
* a *shared* part, :class:`PFContextTrunk`: a periodic convolution ``N_i -> N_hidden`` followed by ELU,
  shared by all pseudofermion layers and, with Hasenbusch targets, by all monomials;
* a *per-layer* part (:class:`PFContextHead`, owned by each layer): periodic convolutions
  ``N_hidden -> ... -> N_o`` with ELU between them and ``tanh`` on the last.

:class:`PFContext` is what a pseudofermion layer receives as its ``context``: the gauge field and the
trunk features, computed once per gauge field.

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4)); U = lk.U1.random(lk.backends.rng(0, backend="torch"), (3, 2), lat.shape)
>>> trunk = PFContextTrunk(lk.U1, lat, n_hidden=16).to(torch.float64)
>>> ctx = trunk.context(U)
>>> ctx.features.shape
torch.Size([3, 16, 4, 4])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from latticekit.groups import Group
from latticekit.lattice import Lattice
from latticekit.observables.plaquette import plaquettes

from ..nets import ConvNet
from .parallel_transport import TransportLinks

__all__ = ["PFContext", "PFContextHead", "PFContextTrunk", "context_inputs", "xavier_init"]


def xavier_init(module: nn.Module, gain: float, bias_std: float = 0.0) -> None:
    """Xavier-normal weights with ``gain`` for every convolution of ``module`` (App. B.1); biases zero, or
    normal with standard deviation ``bias_std`` (the 4D QCD conditional model: 0.05, arXiv:2208.03832 Sec. 3.1).
    Draws from torch's global generator (the jobs seed it, :func:`~latticekit.app.flows.models.build_flow`)."""
    if not bias_std >= 0.0:
        raise ValueError(f"bias_std={bias_std!r}: expected >= 0")
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                if bias_std > 0:
                    nn.init.normal_(m.bias, 0.0, bias_std)
                else:
                    nn.init.zeros_(m.bias)


def context_inputs(U: torch.Tensor, group: Group, lattice: Lattice, coords: bool = True) -> torch.Tensor:
    """Gauge-invariant inputs (eqs. B2, B3): ``(B, 2 + Nd, *L)`` (``(B, 2, *L)`` without ``coords``)."""
    nd = lattice.nd
    tr = None
    for mu, nu in lattice.planes():
        t = group.trace(plaquettes(U, group, lattice, mu, nu), nd=nd)  # complex (B, *L)
        tr = t if tr is None else tr + t
    feats = [tr.real, tr.imag]  # type: ignore[union-attr]
    if coords:
        c = lattice.coords(backend="torch", device=U.device) % 4  # (nd, *L)
        b = U.shape[0]
        feats += [c[i].to(tr.real.dtype).expand((b,) + tuple(lattice.shape)) for i in range(nd)]  # type: ignore[union-attr]
    return torch.stack(feats, dim=1)


@dataclass
class PFContext:
    """The context of a pseudofermion layer: the gauge field and the shared trunk features.

    Attributes
    ----------
    U : torch.Tensor
        Gauge field ``(B, Nd, *G, *L)``.
    features : torch.Tensor
        Trunk output ``(B, N_hidden, *L)`` (gauge invariant).
    cache : dict or None
        ``None`` (default): every layer computes its parameters from ``features``. A dict: each layer stores
        its parameters ``(M_k, A)`` there, keyed by the layer, on first use and reuses them, which is exact because
        they depend on ``U`` alone (eq. 28); :meth:`JointModel.sample_conditionals` uses one for its ``N_pf``
        draws per gauge field when no gradient is recorded. Only for a context whose ``U`` and network weights stay
        fixed while it lives, and not under activation checkpointing (a rerun layer must save the same tensors).
    links : TransportLinks or None
        The links of ``U`` prepared for the layers' parallel transports (:meth:`PFContextTrunk.context` builds
        them, outside the layers); None: each PTCN prepares its own.
    """

    U: torch.Tensor
    features: torch.Tensor
    cache: dict[int, Any] | None = field(default=None, repr=False, compare=False)
    links: TransportLinks | None = field(default=None, repr=False, compare=False)


class PFContextTrunk(nn.Module):
    """Shared first part of the context function: periodic conv ``N_i -> N_hidden`` + ELU (App. B.2).

    Parameters
    ----------
    group, lattice
        Gauge group and lattice.
    n_hidden : int
        ``N_hidden`` (16 in the paper's Schwinger and SU(3) models).
    kernel_size : int
        Odd convolution kernel size (3).
    coords : bool
        Feed ``I_i = x_i mod 4`` (eq. B3).
    """

    def __init__(self, group: Group, lattice: Lattice, n_hidden: int = 16, kernel_size: int = 3,
                 coords: bool = True) -> None:
        super().__init__()
        self.group, self.lattice, self.coords = group, lattice, bool(coords)
        self.n_in = 2 + (lattice.nd if coords else 0)
        self.n_hidden = int(n_hidden)
        self.net = ConvNet(lattice.nd, self.n_in, self.n_hidden, hidden=(), kernel_size=kernel_size)
        self.act = nn.ELU()

    def forward(self, U: torch.Tensor) -> torch.Tensor:
        """Trunk features ``(B, N_hidden, *L)`` of gauge fields ``(B, Nd, *G, *L)``."""
        return self.act(self.net(context_inputs(U, self.group, self.lattice, self.coords)))

    def context(self, U: torch.Tensor) -> PFContext:
        """:class:`PFContext` of ``U`` (with its :class:`~.parallel_transport.TransportLinks`)."""
        return PFContext(U, self(U), links=TransportLinks(U, self.group, self.lattice))


class PFContextHead(nn.Module):
    """Per-layer part of the context function: ``N_hidden -> hidden... -> N_o``, ELU inside, ``tanh`` last.

    In 4D (separable blocks) the output ``N_o`` is wide (1760 channels for ``n_PT = 6``, ``H = 4``): the 1D
    convolutions of a block keep the input width and only the last one widens (``separable_width="in"``),
    otherwise the head would hold ``3 (nd - 1) N_o^2`` weights (28 M per layer)."""

    def __init__(self, nd: int, n_hidden: int, n_out: int, hidden: Sequence[int] = (), kernel_size: int = 3) -> None:
        super().__init__()
        self.net = ConvNet(nd, n_hidden, n_out, hidden=tuple(hidden), kernel_size=kernel_size, act="elu",
                           final_tanh=True, separable_width="in")

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


