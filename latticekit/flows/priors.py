"""Base distributions (priors) of flow models.

Every prior is a :class:`torch.nn.Module` with ``sample(n, rng, context=None) -> (z, log_prob)``
and ``log_prob(z, context=None)``; ``rng`` is a torch generator made by
``latticekit.backends.rng(seed, backend="torch", device=...)`` and all randomness goes through its
public methods (``normal``, ``uniform``, group ``random``). The dtype and device of samples follow
the module (``prior.to(torch.float64)``, ``prior.to("cuda")``).

* :class:`GaussianPrior` — independent standard normal (or ``N(0, std^2)``) per site;
* :class:`HaarPrior` — Haar-random U(1) angles or SU(N) matrices; log-density 0 with respect to the
  normalised Haar measure (DESIGN.md);
* :class:`ConditionalGaussianPrior` — a Gaussian whose mean and log standard deviation per site are
  computed from a context tensor by a user network.

Examples
--------
>>> import torch, latticekit as lk
>>> prior = GaussianPrior((4, 4)).to(torch.float64)
>>> z, lp = prior.sample(3, lk.backends.rng(0, backend="torch"))
>>> z.shape, lp.shape
(torch.Size([3, 4, 4]), torch.Size([3]))
>>> bool(torch.allclose(lp, prior.log_prob(z)))
True
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

import torch
from torch import nn

from latticekit.backends import Generator
from latticekit.backends import check_rng as check_backend_rng
from latticekit.groups import Group, SUGroup, U1Group, wrap_angle
from latticekit.lattice import Lattice

from .base import sum_sites

__all__ = ["ConditionalGaussianPrior", "GaussianPrior", "HaarPrior", "Prior", "check_rng"]


def check_rng(rng: Any) -> Generator:
    """Validate that ``rng`` is a latticekit torch generator.

    Examples
    --------
    >>> import latticekit as lk
    >>> check_rng(lk.backends.rng(0, backend="torch")).backend
    'torch'
    """
    if check_backend_rng(rng).backend != "torch":
        raise TypeError(f"rng={rng!r}: expected latticekit.backends.rng(seed, backend='torch', device=...)")
    return rng


def _check_n(n: Any) -> int:
    """``n`` as a Python int: a positive integer (NumPy integers included), else a ValueError naming it."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n={n!r}: expected a positive integer number of samples")
    return int(n)


class Prior(nn.Module):
    """Base class: a module holding a dtype/device reference buffer.

    Examples
    --------
    >>> import torch
    >>> GaussianPrior((2,)).to(torch.float64).dtype
    torch.float64
    """

    #: whether :meth:`sample` and :meth:`log_prob` need a ``context``
    conditional: bool = False

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("_ref", torch.zeros((), dtype=torch.get_default_dtype()), persistent=False)

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of samples."""
        return self._ref.dtype

    @property
    def device(self) -> torch.device:
        """Device of samples."""
        return self._ref.device

    def _check_context(self, context: Any) -> None:
        if context is not None and not self.conditional:
            raise ValueError(f"context: {type(self).__name__} is unconditional; got a context tensor")

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples and their log-densities."""
        raise TypeError(f"{type(self).__name__} does not implement sample()")

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        """Log-density per batch element."""
        raise TypeError(f"{type(self).__name__} does not implement log_prob()")


class GaussianPrior(Prior):
    """Independent ``N(0, std^2)`` per site for fields of shape ``(n, *event_shape)``.

    Parameters
    ----------
    event_shape : sequence of int
        Shape of one sample (e.g. the lattice shape).
    std : float
        Standard deviation (default 1: standard normal).

    Examples
    --------
    >>> import math, torch
    >>> p = GaussianPrior((2,)).to(torch.float64)
    >>> round(float(p.log_prob(torch.zeros(1, 2))[0]), 6) == round(-math.log(2 * math.pi), 6)
    True
    """

    def __init__(self, event_shape: Sequence[int], std: float = 1.0) -> None:
        super().__init__()
        shape = tuple(event_shape)
        # (4.7, 4) was truncated to (4, 4); std=inf gave infinite samples and NaN densities (user probe)
        if any(isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1 for s in shape):
            raise ValueError(f"event_shape={event_shape!r}: expected positive integer extents")
        self.event_shape = tuple(int(s) for s in shape)
        if isinstance(std, bool) or not isinstance(std, numbers.Real) or not (std > 0 and math.isfinite(std)):
            raise ValueError(f"std={std!r}: expected a finite positive standard deviation")
        self.std = float(std)

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, std={self.std}"

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_context(context)
        nev = len(self.event_shape)
        if tuple(z.shape[z.ndim - nev:]) != self.event_shape:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (*batch, {self.event_shape})")
        dens = -0.5 * (z / self.std) ** 2 - math.log(self.std) - 0.5 * math.log(2.0 * math.pi)
        return sum_sites(dens, nev)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        check_rng(rng)
        z = rng.normal((_check_n(n),) + self.event_shape, dtype=self.dtype, std=self.std)
        return z.to(self.device), self.log_prob(z.to(self.device))


class HaarPrior(Prior):
    """Haar-random gauge fields ``(n, Nd, *G, *L)``; log-density 0 w.r.t. normalised Haar measure.

    U(1) angles are uniform in ``(-pi, pi]``; SU(N) matrices come from ``group.random``.

    Parameters
    ----------
    group : Group
        ``U1`` or ``SU(N)``.
    lattice : Lattice

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> p = HaarPrior(lk.U1, lk.Lattice((4, 4))).to(torch.float64)
    >>> U, lp = p.sample(2, lk.backends.rng(0, backend="torch"))
    >>> U.shape, lp.tolist()
    (torch.Size([2, 2, 4, 4]), [0.0, 0.0])
    """

    def __init__(self, group: Group, lattice: Lattice) -> None:
        super().__init__()
        if not isinstance(group, Group):
            raise TypeError(f"group={group!r}: expected U1 or SU(N)")
        if not isinstance(lattice, Lattice):
            raise TypeError(f"lattice={lattice!r}: expected a latticekit.Lattice")
        self.group = group
        self.lattice = lattice
        self.event_shape = (lattice.nd,) + tuple(group.element_shape) + lattice.shape

    def extra_repr(self) -> str:
        return f"group={self.group.name}, lattice={self.lattice.shape}"

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        self._check_context(context)
        nev = len(self.event_shape)
        if tuple(z.shape[z.ndim - nev:]) != self.event_shape:
            raise ValueError(f"z has shape {tuple(z.shape)}; expected (*batch, {self.event_shape})")
        real = z.real.dtype if z.is_complex() else z.dtype
        return torch.zeros(z.shape[: z.ndim - nev], dtype=real, device=z.device)

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_context(context)
        check_rng(rng)
        n = _check_n(n)
        single = self.dtype == torch.float32
        if isinstance(self.group, U1Group):
            z = wrap_angle(rng.uniform((n,) + self.event_shape, low=-math.pi, high=math.pi, dtype=self.dtype))
        elif isinstance(self.group, SUGroup):
            z = self.group.random(rng, (n, self.lattice.nd), self.lattice.shape,
                                  precision="single" if single else "double")
        else:
            raise TypeError(f"group={self.group!r}: expected U1 or SU(N)")
        z = z.to(self.device)
        return z, self.log_prob(z)


class ConditionalGaussianPrior(Prior):
    """Gaussian per site with mean and log standard deviation computed from a context.

    ``net(context) -> (mean, log_std)``, each of shape ``(n, *event_shape)``. ``sample(n, rng,
    context)`` needs ``context`` with ``n`` batch elements.

    Parameters
    ----------
    event_shape : sequence of int
    net : torch.nn.Module
        Maps the context to ``(mean, log_std)``.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> class Net(torch.nn.Module):
    ...     def forward(self, c):
    ...         return c, torch.zeros_like(c)
    >>> p = ConditionalGaussianPrior((3,), Net()).to(torch.float64)
    >>> c = torch.ones(2, 3, dtype=torch.float64)
    >>> z, lp = p.sample(2, lk.backends.rng(0, backend="torch"), context=c)
    >>> bool(torch.allclose(lp, p.log_prob(z, context=c)))
    True
    """

    conditional = True

    def __init__(self, event_shape: Sequence[int], net: nn.Module) -> None:
        super().__init__()
        self.event_shape = tuple(int(s) for s in event_shape)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net={net!r}: expected a torch.nn.Module mapping context -> (mean, log_std)")
        self.net = net

    def _params(self, context: Any, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if context is None:
            raise ValueError("context: ConditionalGaussianPrior needs a context tensor")
        mean, log_std = self.net(context)
        want = (mean.shape[0],) + self.event_shape
        if tuple(mean.shape) != want or tuple(log_std.shape) != want:
            raise ValueError(f"net returned shapes {tuple(mean.shape)}, {tuple(log_std.shape)}; expected "
                             f"(n, {self.event_shape}) each")
        if n is not None and mean.shape[0] != n:
            raise ValueError(f"n={n} but the context has {mean.shape[0]} batch elements")
        return mean, log_std

    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        mean, log_std = self._params(context, z.shape[0])
        dens = -0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * math.log(2.0 * math.pi)
        return sum_sites(dens, len(self.event_shape))

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        check_rng(rng)
        mean, log_std = self._params(context, _check_n(n))
        eps = rng.normal((n,) + self.event_shape, dtype=mean.dtype).to(mean.device)
        z = mean + torch.exp(log_std) * eps
        return z, self.log_prob(z, context=context)
