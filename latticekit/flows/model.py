"""A flow model: a prior pushed forward through a flow, ``x = f(z)``, ``z ~ r``.

``log q(x) = log r(z) - log|det df/dz|`` (DESIGN.md), computed either while sampling
(:meth:`Model.sample`) or for given ``x`` through the inverse flow (:meth:`Model.log_prob`).

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import GaussianPrior, Model, scalar_coupling_flow
>>> lat = lk.Lattice((4, 4))
>>> model = Model(GaussianPrior(lat.shape), scalar_coupling_flow(lat, 2)).to(torch.float64)
>>> x, log_q = model.sample(3, lk.backends.rng(0, backend="torch"))
>>> bool(torch.allclose(log_q, model.log_prob(x)))
True
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from latticekit.backends import Generator

from .priors import Prior

__all__ = ["Model"]


class Model(nn.Module):
    """``q = f_* r``: prior ``r`` and flow ``f`` (a layer or :class:`~latticekit.flows.Flow`).

    Parameters
    ----------
    prior : Prior
        Has ``sample(n, rng, context=None)`` and ``log_prob(z, context=None)``.
    flow : torch.nn.Module
        Obeys the layer contract ``forward(z, context) -> (x, logdet)``, ``inverse``.

    Examples
    --------
    >>> import latticekit as lk
    >>> from latticekit.flows import HaarPrior, u1_gauge_flow
    >>> lat = lk.Lattice((4, 4))
    >>> m = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 2))
    >>> type(m.flow).__name__
    'Flow'
    """

    def __init__(self, prior: Prior, flow: nn.Module) -> None:
        super().__init__()
        if not isinstance(prior, nn.Module) or not callable(getattr(prior, "sample", None)) \
                or not callable(getattr(prior, "log_prob", None)):
            raise TypeError(f"prior={type(prior).__name__}: expected a Prior (nn.Module with sample and log_prob)")
        if not isinstance(flow, nn.Module) or not callable(getattr(flow, "inverse", None)):
            raise TypeError(f"flow={type(flow).__name__}: expected a flow layer (nn.Module with forward and inverse)")
        self.prior = prior
        self.flow = flow

    def _prior_context(self, context: Any) -> Any:
        return context if getattr(self.prior, "conditional", False) else None

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples ``x = f(z)`` and ``log q(x) = log r(z) - logdet``.

        Gradients flow through both outputs (reverse-KL training); wrap the call in
        ``torch.no_grad()`` for pure sampling.
        """
        z, log_r = self.prior.sample(n, rng, context=self._prior_context(context))
        x, logdet = self.flow(z, context=context)
        return x, log_r - logdet

    def sample_with_prior(self, n: int, rng: Generator, context: Any = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`sample` but also returns the prior sample ``z``: ``(x, log_q, z)``."""
        z, log_r = self.prior.sample(n, rng, context=self._prior_context(context))
        x, logdet = self.flow(z, context=context)
        return x, log_r - logdet, z

    def log_prob(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        """``log q(x) = log r(f^{-1}(x)) + log|det d f^{-1}/dx|`` per batch element."""
        z, logdet_inv = self.flow.inverse(x, context=context)
        return self.prior.log_prob(z, context=self._prior_context(context)) + logdet_inv

    def forward(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`sample`."""
        return self.sample(n, rng, context=context)
