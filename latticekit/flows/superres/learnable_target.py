"""The fine-lattice phi^4 theory with learnable couplings: the target of UV-matching (App. A, eqs. 31-36).

UV-matching fixes the coarse couplings and trains the fine ones ``c`` together with the flow. The reverse KL
of eq. (31) is then

    D_KL = E_q[log q(phi) + S[c](phi)] + log Z[c]                     (eqs. 32-33, log p = -S[c] - log Z[c])

and its gradient in ``c`` is ``E_q[grad_c S[c]] + grad_c log Z[c] = E_q[grad_c S] - E_{p[c]}[grad_c S]``: the
action seen by the flow's samples minus the same derivative on samples of the theory itself (eq. 34), which
:class:`~.log_z.LogZGradient` estimates on a separate set of fine-lattice configurations reused by reweighting
(eq. 36) until its ESS/N falls below ``R_W``.

:class:`LearnableTargetAction` is that action as a module. Its :meth:`~LearnableTargetAction.action` returns
``S[c](phi) + s`` per sample, where ``s`` is the zero-valued surrogate of :meth:`LogZGradient.surrogate`
(gradient ``grad_c log Z[c]``), so the reverse-KL loss ``mean(log q + S)`` of :class:`~latticekit.flows.Trainer`
has the gradient above with no change to the trainer, and the same values (ESS, log w) as with the plain
action. The surrogate is only formed when autograd records (``torch.is_grad_enabled()``): evaluations under
``torch.no_grad`` neither need its gradient nor draw new log Z sets, so they leave the training stream alone.

The log Z set is drawn with the module's own latticekit generator (seeded by ``seed``); its state, the set and
the couplings travel in ``state_dict()`` (``get_extra_state``), so a model that holds this module (e.g.
:class:`~.uv_matching.UVMatchingModel`) is checkpointed and resumed with everything it needs.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.superres import LogZGradient, Phi4Couplings, hmc_sampler
>>> lat = lk.Lattice((4, 4)); c = Phi4Couplings(0.2, 0.01, learn=("kappa",))
>>> S = LearnableTargetAction(lat, c, LogZGradient(c, lat, hmc_sampler(n_traj=5), 16), seed=1)
>>> phi = torch.zeros(3, 4, 4, dtype=torch.float64, requires_grad=True)
>>> s = S.action(phi)                      # S[c](0) = 0, plus the zero-valued log Z surrogate
>>> s.tolist(), s.requires_grad
([0.0, 0.0, 0.0], True)
>>> g, = torch.autograd.grad(s.mean(), c.kappa)   # = grad log Z = -<dS/dkappa>_{p[c]} > 0 at kappa > 0
>>> bool(g > 0)
True
"""

from __future__ import annotations

import torch
from torch import nn

from latticekit import backends
from latticekit.lattice import Lattice

from .couplings import Phi4Couplings
from .log_z import LogZGradient, check_theory

__all__ = ["LearnableTargetAction"]


class LearnableTargetAction(nn.Module):
    """``S[c]`` on the fine lattice with learnable couplings and the ``log Z[c]`` gradient (module docstring).

    Parameters
    ----------
    lattice : Lattice
        The fine lattice.
    couplings : Phi4Couplings
        The fine couplings (the learned ones are trained with the flow).
    log_z : LogZGradient or None
        Estimator of ``grad log Z[c]`` on ``lattice``; required when a coupling is learned.
    seed : int
        Seed of the generator that draws the log Z sample sets.
    """

    def __init__(self, lattice: Lattice, couplings: Phi4Couplings, log_z: LogZGradient | None = None, *,
                 seed: int = 0) -> None:
        super().__init__()
        check_theory(lattice, couplings, log_z, "action")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r}: expected a non-negative integer")
        self.lattice, self.couplings, self.log_z, self.seed = lattice, couplings, log_z, seed
        self.rng = backends.rng(seed, backend="torch")

    def extra_repr(self) -> str:
        return f"lattice={self.lattice}"

    def action(self, phi: torch.Tensor) -> torch.Tensor:
        """``S[c](phi)`` per sample ``(B,)``, plus the zero-valued log Z surrogate while autograd records."""
        S = self.couplings.action(phi, self.lattice)
        if self.log_z is not None and self.couplings.learn and torch.is_grad_enabled():
            S = S + self.log_z.surrogate(self.rng).to(S.dtype)
        return S

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        return self.action(phi)

    def get_extra_state(self) -> dict:
        return {"rng": self.rng.get_state(), "log_z": self.log_z.get_state() if self.log_z is not None else None}

    def set_extra_state(self, state: dict) -> None:
        self.rng.set_state(state["rng"])
        if self.log_z is not None and state["log_z"] is not None:
            self.log_z.set_state(state["log_z"])
