"""The coarse phi^4 theory with learnable couplings as the prior of a super-resolving model (IR-matching, Sec. VI).

IR-matching fixes the fine action and learns the coarse couplings ``c`` together with the flow. The coarse
configurations come from batched Langevin dynamics (eq. 37) at ``c``::

    phi <- phi - tau grad_phi S[c](phi) + sqrt(2 tau) eta,

differentiable in ``c`` (:class:`latticekit.mc.Langevin` with tensor couplings; "we simply backpropagate
through the Langevin process"). The batch is thermalised once (``n_therm`` steps, App. C: 5e4 from i.i.d.
Gaussians) and re-thermalised by ``n_steps`` steps (App. C: 500) at every draw, starting from the previous
batch; the gradient flows through those ``n_steps`` steps only. The batch is a pool of chains: a draw of ``n``
advances the first ``n`` of them, and only chains the pool does not yet hold are thermalised from scratch.

Density. ``log p_L(phi) = -S[c](phi) - log Z[c]``. ``log Z[c]`` is not known, but the training loss only
needs its gradient (eqs. 33-34), which :class:`~.log_z.LogZGradient` estimates from a separate sample set;
:meth:`CoarseTheoryPrior.log_prob` therefore returns ``-S[c](phi) - s`` with ``s`` the zero-valued surrogate
whose gradient is ``grad_c log Z[c]``. The reverse-KL loss of :class:`~latticekit.flows.Trainer`
(``mean(log q + S_fine)``) then has the gradient of eqs. (31)-(33) with no change to the trainer, and its value
is the KL up to the constant ``log Z_fine - log Z_L[c]`` (which does not change ESS or Metropolis ratios). The
surrogate has no value of its own, so :meth:`CoarseTheoryPrior.log_prob` leaves it out where it would carry no
gradient, and refuses (naming the remedy) to form a coupling gradient before a log Z sample set exists.

What is exact and what is estimated: the flow's log-density is exact given the coarse density; Langevin has an
``O(tau)`` step-size bias and successive draws of one batch are correlated, so the coarse draws are only
approximately ``p_L[c]``. For flow MCMC on the fine lattice (and for UV-matching, whose coarse couplings are
fixed) pass ``sampler=hmc_sampler(...)`` instead: independent HMC chains, exact stationary distribution,
restarted from the previous batch, not differentiable in the couplings.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.superres import LogZGradient, Phi4Couplings, hmc_sampler
>>> lat, rng = lk.Lattice((4, 4)), lk.backends.rng(0, backend="torch")
>>> c = Phi4Couplings(0.2, 0.01)
>>> log_z = LogZGradient(c, lat, hmc_sampler(n_traj=10), 32)
>>> prior = CoarseTheoryPrior(lat, c, log_z=log_z, n_therm=100, n_steps=10)
>>> phi, log_p = prior.sample(8, rng)
>>> phi.shape, log_p.shape
(torch.Size([8, 4, 4]), torch.Size([8]))
>>> g = torch.autograd.grad(log_p.sum() + phi.sum(), c.kappa)   # through the Langevin steps and log Z
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latticekit.actions.phi4 import Phi4Action
from latticekit.backends import Generator
from latticekit.lattice import Lattice

from ..priors import _check_n
from .cnf_base import _count, _positive_real
from .couplings import Phi4Couplings
from .log_z import LogZGradient, Phi4Sampler, check_theory

__all__ = ["CoarseTheoryPrior"]


class CoarseTheoryPrior(nn.Module):
    """Coarse phi^4 configurations from batched, differentiable Langevin at learnable couplings (module docstring).

    Parameters
    ----------
    lattice : Lattice
        The coarse lattice.
    couplings : Phi4Couplings
        The coarse couplings (trained in IR-matching; frozen ones are fixed).
    log_z : LogZGradient, optional
        Estimator of ``grad log Z[c]`` on a separate sample set (required when a coupling is learned, so that
        the loss has the gradient of eq. 33).
    sampler : "langevin" or Phi4Sampler
        ``"langevin"``: the persistent, differentiable Langevin batch (training); a :data:`~.log_z.Phi4Sampler`
        (e.g. :func:`~.log_z.hmc_sampler`): draws at the current couplings without gradients.
    step_size : float
        Langevin ``tau`` (App. C: 0.01).
    n_therm, n_steps : int
        Thermalisation steps of the first draw and re-thermalisation steps of every draw (App. C: 5e4, 500).
    """

    def __init__(self, lattice: Lattice, couplings: Phi4Couplings, *, log_z: LogZGradient | None = None,
                 sampler: str | Phi4Sampler = "langevin", step_size: float = 0.01, n_therm: int = 50000,
                 n_steps: int = 500) -> None:
        super().__init__()
        check_theory(lattice, couplings, log_z, "prior")
        if not (sampler == "langevin" or callable(sampler)):
            raise ValueError(f"sampler={sampler!r}: expected 'langevin' or a callable sampler(action, n, previous, "
                             "rng)")
        self.step_size = _positive_real(step_size, "step_size")   # Langevin tau, eq. (37)
        self.n_therm, self.n_steps = _count(n_therm, "n_therm", 0), _count(n_steps, "n_steps", 1)
        self.lattice, self.couplings, self.log_z, self.sampler = lattice, couplings, log_z, sampler
        self.event_shape = tuple(lattice.shape)
        self.state: torch.Tensor | None = None  # the persistent Langevin batch (detached)

    def extra_repr(self) -> str:
        return f"lattice={self.lattice}, tau={self.step_size}, n_therm={self.n_therm}, n_steps={self.n_steps}"

    def _langevin(self, x: torch.Tensor, n: int, rng: Generator) -> torch.Tensor:
        from latticekit.mc import Langevin, RealField

        lan = Langevin(self.couplings.action_object(self.lattice), RealField(self.lattice.nd), rng=rng,
                       step_size=self.step_size)
        for _ in range(n):
            x, _ = lan.step(x)
        return x

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` coarse configurations (the persistent batch after ``n_steps`` more Langevin steps) and
        ``log_prob`` of them; differentiable in the couplings when grad mode is on."""
        if context is not None:
            raise ValueError("context: the coarse theory prior takes no context")
        n = _check_n(n)
        dtype, device = self.couplings.kappa.dtype, self.couplings.kappa.device
        # the persistent batch is a pool of chains in equilibrium: a draw of n advances its first n chains (any
        # subset of stationary chains stays stationary), and only chains beyond the pool are thermalised, so a
        # draw of another size (an evaluation batch, model.sample(1)) no longer re-thermalises everything
        pool = self.state if self.state is not None and self.state.dtype == dtype else None
        have = 0 if pool is None else pool.shape[0]
        if self.sampler != "langevin":
            k, l = float(self.couplings.kappa.detach()), float(self.couplings.lam.detach())
            with torch.no_grad():
                x = self.sampler(Phi4Action(self.lattice, k, l), n, pool[:n] if have >= n else None,
                                 rng).to(dtype=dtype, device=device)
            self.state = x if have <= n else torch.cat([x, pool[n:]])
            return x, self._log_prob(x, rng)
        if have < n:
            x0 = rng.normal((n - have,) + self.event_shape).to(dtype=dtype, device=device)
            with torch.no_grad():
                fresh = self._langevin(x0, self.n_therm, rng)
            pool = fresh if pool is None else torch.cat([pool, fresh])
        x = self._langevin(pool[:n], self.n_steps, rng)
        self.state = x.detach() if pool.shape[0] == n else torch.cat([x.detach(), pool[n:]])
        return x, self._log_prob(x, rng)

    def _log_prob(self, phi: torch.Tensor, rng: Generator | None) -> torch.Tensor:
        out = -self.couplings.action(phi, self.lattice)
        if self.log_z is not None and torch.is_grad_enabled() and (rng is not None or self.log_z.samples is not None):
            out = out - self.log_z.surrogate(rng)
        return out

    def log_prob(self, phi: torch.Tensor, context: Any = None) -> torch.Tensor:
        """``-S[c](phi)`` minus the zero-valued log Z surrogate (module docstring), ``(B,)``.

        The log Z sample set is reused as it is (a new set is drawn only by :meth:`sample`, which has the
        generator). The surrogate's value is 0, so the returned values never depend on it; it only carries
        ``-grad_c log Z[c]`` (eqs. 33-34). It is therefore left out where no gradient reaches the couplings (under
        :func:`torch.no_grad`, or when no coupling requires grad): exactly the same value and gradient. Where a
        coupling does get a gradient but no sample set has been drawn yet (a fresh model), that gradient would
        lack ``-grad log Z`` and be wrong, so a ValueError says what to do instead of dropping the term.
        """
        if context is not None:
            raise ValueError("context: the coarse theory prior takes no context")
        if self.log_z is not None and self.log_z.samples is None and torch.is_grad_enabled() \
                and any(p.requires_grad for p in self.couplings.parameters()):   # else _log_prob leaves it out
            raise ValueError("log_prob: the coarse couplings are learned and no log Z sample set exists yet, so the "
                             "gradient of -log Z[c] (eqs. 33-34) cannot be formed; call model.sample(n, rng) (or "
                             "prior.log_z.refresh(rng)) first, or evaluate under torch.no_grad() when only the "
                             "values are needed")
        return self._log_prob(phi, None)

    # checkpoints: the persistent Langevin batch and the log Z sample set travel in the state dict, so a run
    # resumed from its checkpoint continues exactly (every random number comes from the caller's generator)
    def get_extra_state(self) -> dict:
        return {"state": self.state, "log_z": self.log_z.get_state() if self.log_z is not None else None}

    def set_extra_state(self, state: dict) -> None:
        self.state = state["state"]
        if self.log_z is not None and state["log_z"] is not None:
            self.log_z.set_state(state["log_z"])
