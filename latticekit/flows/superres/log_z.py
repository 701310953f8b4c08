"""The partition-function term of a super-resolving flow with learnable couplings (Sec. V, eqs. 31-36).

The reverse KL of eq. (31) splits into ``D^(I)`` (an expectation over the flow's samples, eq. 32) and
``D^(II) = log Z_fine - log Z_coarse`` (eq. 33), which depends on the couplings when they are trained. Its
gradient needs Monte Carlo samples of the theory *at the current couplings* (eq. 34)::

    grad_c log Z[c] = -E_{phi ~ p[c]} [grad_c S[c](phi)]

and, because the couplings change slowly, one set of samples drawn at ``c`` serves later couplings ``c'`` by
reweighting (eq. 36)::

    grad_c log Z[c'] = -E_c[grad S[c'] w] / E_c[w],     w = exp(-S[c'](phi) + S[c](phi)).

:class:`LogZGradient` keeps such a sample set. It is a *separate* set that is never pushed through the flow
(Sec. V: one set for the ``D^(I)`` gradient, the other for ``D^(II)``). Whenever the Kish ESS/N of the
reweighting factors falls below ``threshold`` (``R_W``, default 0.85) it draws a new set at the current
couplings with the sampler it was given (which may restart from the previous set: re-thermalisation).
:meth:`LogZGradient.surrogate` is a zero-valued scalar whose gradient with respect to the couplings is the
estimate above, so a training loss is ``D^(I) surrogate +- surrogate`` (sign by which side's couplings are
learned: ``-log Z_coarse`` for IR-matching, ``+log Z_fine`` for UV-matching).

Statistical error of the self-normalised estimate (delta method; ``wbar`` the normalised weights, ``g_i``
the per-sample gradients, ``ghat = sum wbar_i g_i``): ``var ghat = sum_i wbar_i^2 (g_i - ghat)^2``, which is
``var(g)/N`` for equal weights. It assumes independent samples (independent chains, or a chain thinned
beyond its autocorrelation time).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.superres import Phi4Couplings
>>> lat = lk.Lattice((4, 4)); c = Phi4Couplings(kappa=0.2, lam=0.0)
>>> lz = LogZGradient(c, lat, hmc_sampler(n_traj=20), 64)
>>> rng = lk.backends.rng(0, backend="torch")
>>> g, err = lz.estimate(rng)
>>> g.shape, lz.n_draws
(torch.Size([2]), 1)
>>> lz.surrogate(rng).item()
0.0
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from latticekit.actions.phi4 import Phi4Action, phi4_action
from latticekit.analysis import ess as kish_ess
from latticekit.backends import Generator
from latticekit.lattice import Lattice

from .cnf_base import _count, _positive_real
from .couplings import Phi4Couplings

__all__ = ["LogZGradient", "Phi4Sampler", "check_theory", "hmc_sampler"]

#: ``sampler(action, n, previous, rng) -> (n, *L)``: ``n`` independent configurations of ``action`` (a
#: :class:`~latticekit.actions.Phi4Action` with float couplings) drawn with the latticekit generator ``rng``;
#: ``previous`` is the last sample set (or None) to restart from. Taking the caller's generator keeps a training
#: run reproducible and resumable from its checkpoint (the trainer's generator state is saved there).
Phi4Sampler = Callable[[Phi4Action, int, "torch.Tensor | None", Generator], torch.Tensor]


def hmc_sampler(*, n_traj: int = 50, step_size: float = 0.1, n_steps: int = 10,
                dtype: torch.dtype = torch.float64) -> Phi4Sampler:
    """A :data:`Phi4Sampler`: ``n`` independent HMC chains (:class:`latticekit.mc.HMC`), ``n_traj`` trajectories
    each, started from the previous set (re-thermalisation) or from unit Gaussian fields; returns the last
    configuration of every chain."""
    n_traj = _count(n_traj, "n_traj", 1)
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not 0 < step_size < math.inf:
        raise ValueError(f"step_size={step_size!r}: expected a finite step size > 0")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps={n_steps!r}: expected an integer number of leapfrog steps >= 1")
    from latticekit.mc import HMC, RealField

    def sample(action: Phi4Action, n: int, previous: torch.Tensor | None, rng: Generator) -> torch.Tensor:
        lat = action.lattice
        x = previous if previous is not None and previous.shape[0] == n else \
            rng.normal((n,) + tuple(lat.shape)).to(dtype)
        hmc = HMC(action, RealField(lat.nd), rng=rng, step_size=step_size, n_steps=n_steps)
        for _ in range(n_traj):
            x, _ = hmc.step(x)
        return x

    return sample


class LogZGradient:
    """Monte Carlo ``grad_c log Z[c]`` (eq. 34) with sample reuse by reweighting (eq. 36); module docstring.

    Parameters
    ----------
    couplings : Phi4Couplings
        The learnable couplings whose ``log Z`` is differentiated.
    lattice : Lattice
        The lattice of that theory (the coarse one for IR-matching, the fine one for UV-matching).
    sampler : Phi4Sampler
        Draws a new set at the current couplings (:func:`hmc_sampler`, or Langevin for IR-matching).
    n_samples : int
        Size of the set.
    threshold : float
        ``R_W``: a new set is drawn when the Kish ESS/N of the reweighting factors falls below it.
    """

    def __init__(self, couplings: Phi4Couplings, lattice: Lattice, sampler: Phi4Sampler, n_samples: int, *,
                 threshold: float = 0.85) -> None:
        if not isinstance(couplings, Phi4Couplings):
            raise TypeError(f"couplings={type(couplings).__name__}: expected Phi4Couplings")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if not callable(sampler):
            raise TypeError(f"sampler={sampler!r}: expected a callable sampler(action, n, previous, rng)")
        self.n_samples = _count(n_samples, "n_samples", 2)
        self.threshold = _positive_real(threshold, "threshold", at_most=1.0)   # R_W in (0, 1]
        self.couplings, self.lattice, self.sampler = couplings, lattice, sampler
        self.samples: torch.Tensor | None = None
        self.c0: tuple[float, float] | None = None  # the couplings the set was drawn at
        self.S0: torch.Tensor | None = None         # S[c0] of every sample
        self.n_draws = 0

    def get_state(self) -> dict:
        """The sample set and its bookkeeping (checkpointed by :class:`~.coarse_theory.CoarseTheoryPrior`)."""
        return {"samples": self.samples, "S0": self.S0, "c0": self.c0, "n_draws": self.n_draws}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned."""
        self.samples, self.S0, self.c0, self.n_draws = state["samples"], state["S0"], state["c0"], state["n_draws"]

    def refresh(self, rng: Generator) -> None:
        """Draw a new set at the current couplings (restarting the sampler from the previous set)."""
        k, l = float(self.couplings.kappa.detach()), float(self.couplings.lam.detach())
        with torch.no_grad():
            x = self.sampler(Phi4Action(self.lattice, k, l), self.n_samples, self.samples, rng)
            if tuple(x.shape) != (self.n_samples,) + tuple(self.lattice.shape):
                raise ValueError(f"sampler returned shape {tuple(x.shape)}; expected "
                                 f"{(self.n_samples,) + tuple(self.lattice.shape)}")
            self.samples = x.detach().to(self.couplings.kappa.dtype)
            self.S0 = phi4_action(self.samples, self.lattice, k, l)
        self.c0 = (k, l)
        self.n_draws += 1

    def _log_w(self) -> torch.Tensor:
        """``log w = -S[c'] + S[c0]`` (eq. 36) at the current couplings, detached, ``(N,)``."""
        assert self.samples is not None and self.S0 is not None
        with torch.no_grad():
            return -self.couplings.action(self.samples, self.lattice) + self.S0

    def ess(self) -> float:
        """Kish ESS/N of the reweighting factors (1 right after a draw)."""
        if self.samples is None:
            return 0.0
        return float(kish_ess(self._log_w()))

    def _ready(self, rng: Generator | None) -> torch.Tensor:
        """Normalised weights at the current couplings, drawing a new set first when ``ESS/N < R_W`` (and a
        generator is given; without one the current set is reweighted, eq. 36 stays valid, only noisier)."""
        if self.samples is None and rng is None:
            raise ValueError("rng: the log Z gradient has no sample set yet and the first one needs a generator; "
                             "pass rng= or call refresh(rng) first")
        if rng is not None and (self.samples is None or self.ess() < self.threshold):
            self.refresh(rng)
        return torch.softmax(self._log_w(), 0)

    def estimate(self, rng: Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(grad log Z, standard error)``, each ``(2,)`` in the order ``(kappa, lam)`` (eq. 36)."""
        wbar = self._ready(rng)
        g = self.couplings.action_gradients(self.samples, self.lattice)  # (N, 2), eq. 35
        ghat = (wbar[:, None] * g).sum(0)
        err = torch.sqrt((wbar[:, None] ** 2 * (g - ghat) ** 2).sum(0))
        return -ghat, err

    def surrogate(self, rng: Generator | None = None) -> torch.Tensor:
        """Zero-valued scalar whose gradient w.r.t. the couplings is the estimate of ``grad log Z`` (eq. 36).

        ``s = -sum_i wbar_i S[c'](phi_i)`` with the weights detached: ``ds/dc' = -sum_i wbar_i grad S[c'](phi_i)``.
        """
        wbar = self._ready(rng)
        s = -(wbar * self.couplings.action(self.samples, self.lattice)).sum()
        return s - s.detach()


def check_theory(lattice: Lattice, couplings: Phi4Couplings, log_z: "LogZGradient | None", owner: str) -> None:
    """Argument checks shared by the theories with learnable couplings (the coarse prior of IR-matching, the fine
    target of UV-matching): a lattice, Phi4Couplings, and a log Z estimator of these couplings on this lattice
    whenever a coupling is learned (the loss needs the gradient of eq. 34)."""
    if not isinstance(lattice, Lattice):
        raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
    if not isinstance(couplings, Phi4Couplings):
        raise TypeError(f"couplings={type(couplings).__name__}: expected Phi4Couplings")
    if couplings.learn and log_z is None:
        raise ValueError(f"log_z: the couplings {couplings.learn} are learned, so the loss needs the log Z "
                         "gradient of eq. (34); pass log_z=LogZGradient(couplings, lattice, sampler, n)")
    if log_z is not None and (log_z.couplings is not couplings or tuple(log_z.lattice.shape) != tuple(lattice.shape)):
        raise ValueError(f"log_z: estimates the log Z gradient of other couplings or another lattice than this "
                         f"{owner}'s")
