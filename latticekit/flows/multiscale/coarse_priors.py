"""Coarse priors of multiscale models (arXiv:2404.10819, Sec. 3): the distribution of the coarsest field.

"The coarse prior can be any tractable density that can be sampled; for instance, the coarse prior might be
taken as a gauge theory with a coarser lattice spacing than the target density, or the coarse gauge links
could be sampled from the uniform (Haar) distribution."

* ``"haar"``: :class:`~latticekit.flows.HaarPrior` on the coarse lattice (any extents, down to one site per
  direction); log-density 0, exact.
* :class:`CoarseTheoryPrior`: the Wilson gauge theory of the coarse lattice at its own coupling
  ``beta_c``, ``q(U) = exp(-S_c(U)) / Z_c`` with ``S_c = -(beta_c / N) sum_P Re tr P`` (the library's action,
  :class:`latticekit.actions.WilsonGaugeAction`).

What is exact and what is estimated (coarse theory prior):

* the *density formula* ``-S_c(U) - log Z_c`` is exact wherever ``Z_c`` is known: in 2D ``log Z_c`` comes from
  :func:`latticekit.exact.u1_2d_log_z` / :func:`~latticekit.exact.sun_2d_log_z` (character expansion);
  in ``d > 2`` it is not known and is set to 0 (``log_z_exact = False``): ``log q`` is then off by the constant
  ``-log Z_c``, which cancels in the ESS, in flow-MCMC acceptance and in reverse-KL gradients, but shifts the
  KL and the ``log Z`` estimate (:mod:`.diagnostics`) by ``log Z_c``;
* the *samples* come from a Markov chain: every call starts ``n`` independent chains from Haar-random
  fields and runs ``sweeps`` heatbath sweeps (:class:`latticekit.mc.Heatbath`, ``overrelax``
  overrelaxation sweeps each). They follow ``exp(-S_c) / Z_c`` only up to the chain's distance from
  equilibrium, which decays exponentially in ``sweeps`` (fast on the few-site coarse lattices); this error is
  not in ``log q``, so a flow-MCMC chain built on it is exact only up to it. Use the Haar prior where
  exactness matters; raise ``sweeps`` otherwise.

The heatbath needs even coarse extents (two or more sites per direction).

Examples
--------
>>> import torch, latticekit as lk
>>> p = CoarseTheoryPrior(lk.U1, lk.Lattice((2, 2)), beta=1.0, sweeps=5).to(torch.float64)
>>> U, lq = p.sample(3, lk.backends.rng(0, backend="torch"))
>>> U.shape, p.log_z_exact, bool(torch.allclose(lq, p.log_prob(U)))
(torch.Size([3, 2, 2, 2]), True, True)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from latticekit.backends import Generator
from latticekit.groups import Group, SUGroup, U1Group
from latticekit.lattice import Lattice

from ..priors import HaarPrior, Prior, _check_n, check_rng

__all__ = ["CoarseTheoryPrior", "coarse_prior"]


class CoarseTheoryPrior(Prior):
    """The coarse-lattice Wilson gauge theory at coupling ``beta`` as a prior (module docstring).

    Parameters
    ----------
    group : Group
        ``U1`` or ``SU(N)``.
    lattice : Lattice
        The coarse lattice (even extents, ``Nd >= 2``).
    beta : float
        Coupling of the coarse theory, ``>= 0``.
    sweeps : int
        Heatbath sweeps per draw, from a Haar start.
    overrelax : int
        Overrelaxation sweeps after each heatbath sweep.
    """

    def __init__(self, group: Group, lattice: Lattice, beta: float, *, sweeps: int = 20, overrelax: int = 1) -> None:
        super().__init__()
        from latticekit.actions import WilsonGaugeAction

        if not isinstance(group, (U1Group, SUGroup)):
            raise TypeError(f"group={group!r}: expected latticekit.U1 or SU(N)")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        if lattice.nd < 2 or any(L % 2 for L in lattice.shape):
            raise ValueError(f"lattice={lattice}: the coarse theory prior is sampled by the heatbath, which needs at "
                             "least 2 dimensions and even extents (use the Haar coarse prior for odd or 1-site extents)")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta={beta!r}: expected a finite coupling >= 0")
        for name, v, lo in (("sweeps", sweeps, 1), ("overrelax", overrelax, 0)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}={v!r}: expected an integer >= {lo}")
        self.group, self.lattice, self.beta = group, lattice, float(beta)
        self.sweeps, self.overrelax = int(sweeps), int(overrelax)
        self.event_shape = (lattice.nd,) + tuple(group.element_shape) + lattice.shape
        self.action = WilsonGaugeAction(group, lattice, self.beta)
        self.log_z, self.log_z_exact = self._log_z()

    def _log_z(self) -> tuple[float, bool]:
        if self.lattice.nd != 2:
            return 0.0, False
        from latticekit import exact

        if isinstance(self.group, U1Group):
            return float(exact.u1_2d_log_z(self.beta, self.lattice.shape)), True
        return float(exact.sun_2d_log_z(self.beta, self.group.N, self.lattice.shape)), True

    def extra_repr(self) -> str:
        return (f"group={self.group.name}, lattice={self.lattice.shape}, beta={self.beta}, sweeps={self.sweeps}, "
                f"overrelax={self.overrelax}")

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_context(context)
        nev = len(self.event_shape)
        if tuple(z.shape[z.ndim - nev:]) != self.event_shape:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (*batch, {self.event_shape})")
        return -self.action.action(z) - self.log_z

    @torch.no_grad()
    def _draw(self, n: int, rng: Generator) -> torch.Tensor:
        from latticekit.mc import Heatbath

        single = self.dtype == torch.float32
        if isinstance(self.group, U1Group):
            U = self.group.random(rng, (n, self.lattice.nd), self.lattice.shape, precision="double")
        else:
            U = self.group.random(rng, (n, self.lattice.nd), self.lattice.shape, precision="double")
        hb = Heatbath(self.group, self.lattice, self.beta, rng=rng, n_overrelax=self.overrelax)
        U, _ = hb.run(U, self.sweeps)
        U = torch.as_tensor(U)
        return U.to(torch.float32 if single and isinstance(self.group, U1Group) else
                    torch.complex64 if single else U.dtype)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        check_rng(rng)
        n = _check_n(n)
        z = self._draw(n, rng).to(self.device)
        return z, self.log_prob(z)


def coarse_prior(group: Group, lattice: Lattice, kind: str = "haar", *, beta: float | None = None,
                 sweeps: int = 20, overrelax: int = 1) -> Prior:
    """The coarse prior ``kind = "haar"`` or ``"theory"`` (coupling ``beta``) on ``lattice`` (module docstring).

    Examples
    --------
    >>> import latticekit as lk
    >>> type(coarse_prior(lk.SU(2), lk.Lattice((1, 1)))).__name__
    'HaarPrior'
    >>> coarse_prior(lk.U1, lk.Lattice((2, 2)), "theory")
    Traceback (most recent call last):
    ...
    ValueError: beta=None: the coarse theory prior needs its coupling
    >>> coarse_prior(lk.U1, lk.Lattice((2, 2)), "haar", beta=3.0)
    Traceback (most recent call last):
    ...
    ValueError: beta=3.0: only read by the coarse theory prior (kind='theory'), not by 'haar'
    """
    if kind == "haar":
        if beta is not None:   # a coupling the user thinks is in force, but Haar has none
            raise ValueError(f"beta={beta!r}: only read by the coarse theory prior (kind='theory'), not by 'haar'")
        return HaarPrior(group, lattice)
    if kind == "theory":
        if beta is None:
            raise ValueError("beta=None: the coarse theory prior needs its coupling")
        return CoarseTheoryPrior(group, lattice, beta, sweeps=sweeps, overrelax=overrelax)
    raise ValueError(f"coarse_prior={kind!r}: expected 'haar' or 'theory'")
