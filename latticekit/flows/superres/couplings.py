"""Learnable phi^4 couplings (Sec. V of Bauer, Kapust, Pawlowski, Temmen, "super-resolving flows").

The base (IR-matching, Sec. VI) or target (UV-matching, App. A) action of a super-resolving flow is the
hopping-form phi^4 action of DESIGN.md with couplings ``c = (kappa, lam)`` that are trained with the flow::

    S[c](phi) = sum_x [(1 - 2 lam) phi_x^2 + lam phi_x^4 - 2 kappa sum_mu phi_x phi_{x+mu}]

and its derivatives with respect to the couplings (eq. 35)::

    dS/dkappa = -2 sum_{x, mu} phi_x phi_{x+mu},       dS/dlam = sum_x (phi_x^4 - 2 phi_x^2).

:class:`Phi4Couplings` holds ``kappa`` and ``lam`` as torch parameters (either can be frozen) and evaluates the
action through :func:`latticekit.actions.phi4.phi4_action`, the library's one phi^4 action, so gradients reach
the couplings by autograd; :meth:`Phi4Couplings.action_gradients` is eq. (35) in closed form (the log Z
gradient of eqs. 34 and 36 averages it, :mod:`.log_z`).

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4))
>>> c = Phi4Couplings(kappa=0.2, lam=0.02)
>>> phi = torch.ones(3, 4, 4, dtype=torch.float64)
>>> [round(v, 12) for v in c.action(phi, lat).tolist()]      # 16 * (1 - 0.04 + 0.02 - 2 * 0.2 * 2)
[2.88, 2.88, 2.88]
>>> c.action_gradients(phi, lat)[0].tolist()   # (-2 * 16 * 2, 16 * (1 - 2))
[-64.0, -16.0]
"""

from __future__ import annotations

import math
import numbers
from typing import Sequence

import torch
from torch import nn

from latticekit.actions.phi4 import Phi4Action, phi4_action
from latticekit.lattice import Lattice

__all__ = ["COUPLING_NAMES", "Phi4Couplings"]

#: the couplings in the order of :meth:`Phi4Couplings.vector` and :meth:`Phi4Couplings.action_gradients`
COUPLING_NAMES = ("kappa", "lam")


def _check_field(phi: torch.Tensor, lattice: Lattice) -> None:
    if not isinstance(phi, torch.Tensor) or phi.ndim != lattice.nd + 1 or tuple(phi.shape[1:]) != tuple(lattice.shape):
        shape = tuple(phi.shape) if hasattr(phi, "shape") else type(phi).__name__
        raise ValueError(f"phi has shape {shape}; expected a real field (B, *L) = (B, "
                         f"{', '.join(map(str, lattice.shape))}) on {lattice}")


class Phi4Couplings(nn.Module):
    """Hopping-form couplings ``(kappa, lam)`` as trainable parameters (module docstring).

    Parameters
    ----------
    kappa, lam : float
        Initial values (IR-matching starts from the fine lattice's couplings, Sec. VI A).
    learn : sequence of str
        Which couplings are trained (``"kappa"``, ``"lam"``); the others are buffers.
    dtype : torch.dtype
        Of the coupling tensors (float64 by default: log Z gradients are differences of large sums).
    """

    def __init__(self, kappa: float, lam: float, *, learn: Sequence[str] = COUPLING_NAMES,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        for name, v in (("kappa", kappa), ("lam", lam)):
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)):
                raise ValueError(f"{name}={v!r}: expected a finite number")
        kappa, lam = float(kappa), float(lam)
        if lam < 0:
            raise ValueError(f"lam={lam!r}: expected lam >= 0 (the phi^4 action is unbounded below for lam < 0)")
        if isinstance(learn, str):
            raise ValueError(f"learn={learn!r}: expected a sequence of coupling names, e.g. [{learn!r}]")
        bad = [k for k in learn if k not in COUPLING_NAMES]
        if bad:
            raise ValueError(f"learn={list(learn)!r}: unknown couplings {bad}; expected a subset of {COUPLING_NAMES}")
        self.learn = tuple(k for k in COUPLING_NAMES if k in learn)
        for name, v in (("kappa", kappa), ("lam", lam)):
            t = torch.tensor(float(v), dtype=dtype)
            if name in self.learn:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

    def extra_repr(self) -> str:
        # the structure only: trained values would change the repr, which checkpoints compare
        return f"learn={self.learn}"

    def vector(self) -> torch.Tensor:
        """``(kappa, lam)`` as one tensor of shape (2,) (differentiable)."""
        return torch.stack([self.kappa, self.lam])

    def action_object(self, lattice: Lattice) -> Phi4Action:
        """A :class:`~latticekit.actions.Phi4Action` with these couplings as tensors (for HMC/Langevin; gradients
        of the sampled fields flow back to the couplings, DESIGN.md "Langevin")."""
        return Phi4Action(lattice, self.kappa, self.lam)

    def action(self, phi: torch.Tensor, lattice: Lattice) -> torch.Tensor:
        """``S[c](phi)`` per batch element ``(B,)``, differentiable in ``phi`` and the couplings.

        Raises ValueError when a learned ``lam`` has become negative (the action is then unbounded below and
        the samplers diverge): training stops before the optimizer moves again.
        """
        _check_field(phi, lattice)
        if "lam" in self.learn and bool(self.lam.detach() < 0):
            raise ValueError(f"couplings.lam = {float(self.lam.detach()):.6g}: the learned quartic coupling became "
                             "negative, so the phi^4 action is unbounded below; lower train.lr or keep lam fixed "
                             "(model.learn = ['kappa'])")
        return phi4_action(phi, lattice, self.kappa, self.lam)

    def action_gradients(self, phi: torch.Tensor, lattice: Lattice) -> torch.Tensor:
        """``(dS/dkappa, dS/dlam)`` of eq. (35) per batch element, ``(B, 2)``; independent of the couplings."""
        _check_field(phi, lattice)
        dims = tuple(range(1, phi.ndim))
        hop = sum(phi * lattice.shift(phi, mu, +1) for mu in range(lattice.nd))  # sum_mu phi_x phi_{x+mu}
        p2 = phi * phi
        return torch.stack([-2.0 * hop.sum(dims), (p2 * p2 - 2.0 * p2).sum(dims)], dim=-1)
