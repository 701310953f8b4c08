"""The conditional flow ``q(phi | U)`` of one pseudofermion monomial (eqs. 22-23 of arXiv:2207.08945).

``phi = f_c(chi | U)`` with ``chi`` from the spherical Gaussian ``r_c(chi) = exp(-chi^dag chi) / pi^n`` on
the ``n`` complex components of the support (every site; the even sites for even/odd targets, whose
odd sites stay zero) and ``f_c`` a stack of :class:`~.coupling.PseudofermionCoupling` layers acting
on the pseudofermions only (the gauge field is unchanged, Sec. III.B)::

    log q(phi | U) = log r_c(chi) - sum_layers log|det d phi'/d phi|                         (eq. 22)

The context function's shared trunk (:class:`~.context.PFContextTrunk`) is passed in, so several
monomials can share it (App. B.2).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.pseudofermion import PFContextTrunk, PFTarget
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> t = PFTarget(lk.U1, lat, 0.2)
>>> trunk = PFContextTrunk(lk.U1, lat, 4)
>>> cond = ConditionalPFModel.build(t, trunk, n_layers=2, n_pt=2).double()
>>> U = lk.U1.random(rng, (3, 2), lat.shape)
>>> phi, log_q = cond.sample(U, rng)
>>> bool(torch.allclose(log_q, cond.log_prob(U, phi)))
True
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn

from ..base import Flow
from ._checks import check_int
from .context import PFContext, PFContextTrunk
from .coupling import PseudofermionCoupling
from .masks import pf_masks
from .targets import PFTarget

__all__ = ["ConditionalPFModel"]


def complex_dtype(U: torch.Tensor) -> torch.dtype:
    """The complex dtype of pseudofermions on gauge field ``U`` (U(1) angles are real)."""
    if U.is_complex():
        return U.dtype
    return torch.complex64 if U.dtype == torch.float32 else torch.complex128


class ConditionalPFModel(nn.Module):
    """``q(phi | U)``: Gaussian prior on the support and pseudofermion layers (module docstring).

    Parameters
    ----------
    target : PFTarget
        The monomial (lattice, group, even/odd support).
    layers : sequence of PseudofermionCoupling
    trunk : PFContextTrunk
        Shared context trunk.
    """

    def __init__(self, target: PFTarget, layers: Sequence[PseudofermionCoupling], trunk: PFContextTrunk) -> None:
        super().__init__()
        if not isinstance(target, PFTarget):
            raise TypeError(f"target={target!r}: expected a PFTarget")
        for i, layer in enumerate(layers):
            if not isinstance(layer, PseudofermionCoupling):
                raise TypeError(f"layers[{i}]={type(layer).__name__}: expected a PseudofermionCoupling")
            if layer.even_odd != target.even_odd:
                raise ValueError(f"layers[{i}]: even_odd={layer.even_odd} but the target has even_odd={target.even_odd}")
        if not isinstance(trunk, PFContextTrunk):
            raise TypeError(f"trunk={type(trunk).__name__}: expected a PFContextTrunk")
        if trunk.group != target.group or tuple(trunk.lattice.shape) != tuple(target.lattice.shape):
            # otherwise the first sample failed with a lattice mismatch about U
            raise ValueError(f"trunk: built for {trunk.group.name} on {trunk.lattice}, but the target is "
                             f"{target.group.name} on {target.lattice}; expected the same group and lattice")
        self.target = target
        self.flow = Flow(list(layers))
        self.trunk = trunk
        self.register_buffer("support", target.support(torch.zeros(())), persistent=False)

    @classmethod
    def build(cls, target: PFTarget, trunk: PFContextTrunk, *, n_layers: int = 8, partitioning: str = "spatial",
              n_pt: int | None = None, hidden_features: int = 2, head_hidden: Sequence[int] = (),
              kernel_size: int = 3, init_gain: float = 0.5, init_bias_std: float = 0.0) -> "ConditionalPFModel":
        """The paper's conditional model: ``n_layers`` layers with the masks of
        :func:`~.masks.pf_masks` and ``n_PT`` PTCs each (default 6 for even/odd targets, 3 otherwise, App. B.3)."""
        npt = (6 if target.even_odd else 3) if n_pt is None else check_int(n_pt, "n_pt", 1)
        masks = pf_masks(partitioning, target.lattice, n_layers, even_odd=target.even_odd)
        layers = [PseudofermionCoupling(target.group, target.lattice, m, n_pt=npt, hidden_features=hidden_features,
                                        n_hidden=trunk.n_hidden, head_hidden=head_hidden, kernel_size=kernel_size,
                                        even_odd=target.even_odd, init_gain=init_gain, init_bias_std=init_bias_std)
                  for m in masks]
        return cls(target, layers, trunk)

    def context(self, U: torch.Tensor, ctx: PFContext | None = None) -> PFContext:
        return self.trunk.context(U) if ctx is None else ctx

    def _prior_log_prob(self, chi: torch.Tensor) -> torch.Tensor:
        # r_c(chi) = exp(-|chi|^2) / pi^n over the n complex components of the support
        return -(chi.real ** 2 + chi.imag ** 2).flatten(1).sum(1) - self.target.ndof * math.log(math.pi)

    def sample(self, U: torch.Tensor, rng: Any, ctx: PFContext | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One pseudofermion per gauge field: ``(phi (B, Ns, Nc, *L), log q(phi | U) (B,))``."""
        ctx = self.context(U, ctx)
        dt = complex_dtype(U)
        chi = rng.complex_normal((U.shape[0],) + self.target.field_shape, dtype=str(dt).replace("torch.", ""))
        chi = chi * self.support.to(chi.device)
        phi, ld = self.flow(chi, context=ctx)
        return phi, self._prior_log_prob(chi) - ld

    def log_prob(self, U: torch.Tensor, phi: torch.Tensor, ctx: PFContext | None = None) -> torch.Tensor:
        """``log q(phi | U)`` through the inverse flow."""
        self.target.check_field(phi)
        sup = self.support.to(phi.device)
        if bool((phi * ~sup).abs().max() > 0):
            raise ValueError("phi: an even/odd pseudofermion must vanish on the odd sites")
        chi, ld_inv = self.flow.inverse(phi, context=self.context(U, ctx))
        return self._prior_log_prob(chi) + ld_inv
