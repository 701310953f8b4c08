"""Invertible zero-sum Gaussian noise ``N`` on the upsampling blocks (paper Sec. IV B and D, eqs. 19-21, 30).

Per block ``B`` of ``n = b^d`` fine sites the paper draws ``zeta_1..zeta_{n-1}`` from a Gaussian with covariance
``Sigma = sigma^2 (1_{n-1} - 1/n)`` (eq. 19) and fixes ``zeta_n = -sum_{i<n} zeta_i`` (eq. 20), so the noise
sums to zero on every block and the block average ``U^dagger`` of ``Psi = psi + zeta`` is the coarse field
(eq. 21); conversely ``zeta = Psi - U U^dagger Psi`` (eq. 30, :meth:`ZeroSumNoise.project`).

Sampling. Let ``xi ~ N(0, sigma^2 1_n)`` on the whole block and ``zeta = P0 xi`` with the orthogonal projector
``P0 = 1_n - 1 1^T / n`` onto the zero-sum hyperplane ``H`` (subtract the block mean). Then
``Cov(zeta) = sigma^2 P0``: its leading ``(n-1) x (n-1)`` block is ``sigma^2 (1 - 1/n)``, eq. (19), and
``zeta_n = -sum_{i<n} zeta_i`` holds because ``1^T P0 = 0``, eq. (20). In an orthonormal basis
``E = (e_1..e_{n-1})`` of ``H`` the coordinates ``c = E^T zeta = E^T xi`` are ``N(0, sigma^2 1_{n-1})``:
the noise is exactly isotropic Gaussian with variance ``sigma^2`` per orthonormal direction of ``H``.

Density. With respect to Lebesgue (``(n-1)``-dimensional Hausdorff) measure on ``H`` and ``|c| = |zeta|``,

    log p_zeta(zeta_B) = -(n-1)/2 log(2 pi sigma^2) - |zeta_B|^2 / (2 sigma^2)     (one block),

summed over the independent blocks (``|.|``: the norm of the full ``n``-vector). In the paper's coordinates
``(zeta_1..zeta_{n-1})`` the density of eq. (19) is larger by ``1/2 log n`` per block: the embedding
``(zeta_1..zeta_{n-1}) -> zeta`` has Jacobian ``V = (1; -1^T)`` with ``sqrt(det V^T V) = sqrt(det(1 + 1 1^T))
= sqrt(n)``. The measure on ``H`` is the one for which the fine density factorises as ``p_U(psi) p_zeta(zeta)``
w.r.t. Lebesgue measure on ``R^{(bL)^d}`` (eq. 21): the block-constant subspace and the product of the
hyperplanes are orthogonal complements, so Lebesgue measure is the product of the two Lebesgue measures.

Examples
--------
>>> import torch, latticekit as lk
>>> noise = ZeroSumNoise(2, nd=2, sigma=0.5, dtype=torch.float64)
>>> zeta, log_p = noise.sample((3, 4, 4), lk.backends.rng(0, backend="torch"))
>>> zeta.shape, log_p.shape
(torch.Size([3, 4, 4]), torch.Size([3]))
>>> bool(noise.upsampling.down(zeta).abs().max() < 1e-12)   # zero sum on every 2x2 block
True
>>> bool(torch.allclose(log_p, noise.log_prob(zeta)))
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from latticekit.backends import Generator

from ..priors import check_rng
from .upsampling import NaiveUpsampling

__all__ = ["ZeroSumNoise", "configuration_std"]


def configuration_std(phi: torch.Tensor, *, nd: int) -> float:
    """``sqrt(mean_c Var_x phi_c(x))``: the spread of each configuration about its own mean, averaged over the
    configurations (the initial noise width of App. C, "the variance of the configurations phi on the coarse
    lattice ... to ensure that the noise does not dominate the flow at the beginning of the training").

    The variance of all entries pooled adds ``Var_c(mean_x phi_c)``, the spread of the configuration means
    (``<M^2>`` for a Z2-symmetric ensemble), which the zero-sum noise does not model: the noise is the field's
    fluctuation *within* each block, and its block sums vanish. In the broken phase that term is almost all of the
    pooled variance (4x4 phi^4 at kappa = 0.30, lambda = 0.01: pooled 3.15, per configuration 0.57).

    Parameters
    ----------
    phi : torch.Tensor
        Configurations, shape ``(B, *L)`` with ``nd`` lattice axes last.
    nd : int
        Number of lattice axes.

    Examples
    --------
    >>> import torch
    >>> configuration_std(torch.tensor([[1.0, -1.0], [4.0, 2.0]], dtype=torch.float64), nd=1)
    1.0
    """
    if phi.ndim < nd + 1:
        raise ValueError(f"phi has shape {tuple(phi.shape)}; expected configurations (B, *L) with {nd} lattice axes")
    sites = tuple(range(phi.ndim - nd, phi.ndim))
    return float(phi.var(dim=sites, unbiased=False).mean().sqrt())


def _check_sigma(sigma: Any) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma={sigma!r}: expected a positive finite standard deviation") from None
    if not (s > 0 and math.isfinite(s)):
        raise ValueError(f"sigma={sigma!r}: expected a positive finite standard deviation")
    return s


class ZeroSumNoise(nn.Module):
    """Zero-sum Gaussian noise per ``b^d`` block with a learnable ``log sigma`` (eqs. 19-20).

    Parameters
    ----------
    b : int
        Linear upsampling factor (``>= 2``); blocks are those of :class:`NaiveUpsampling`.
    nd : int
        Number of lattice dimensions (keyword-only).
    sigma : float
        Initial noise scale; the parameter is ``log_sigma`` (so ``sigma > 0`` throughout training). The paper
        (App. C) initialises it to the standard deviation of the coarse configurations: :meth:`from_coarse`.
    dtype : torch.dtype, optional
        Dtype of ``log_sigma`` (default: torch's default dtype). Pass ``torch.float64`` for an initial value exact
        in double precision: ``.to(torch.float64)`` after construction keeps the single-precision rounding of
        ``log(sigma)`` made under a float32 default.

    Examples
    --------
    >>> import math, torch
    >>> noise = ZeroSumNoise(2, nd=1, sigma=2.0)
    >>> math.isclose(float(noise.sigma.detach()), 2.0)
    True
    >>> noise.project(torch.tensor([1.0, 3.0, 0.0, 4.0])).tolist()
    [-1.0, 1.0, -2.0, 2.0]
    """

    def __init__(self, b: int = 2, *, nd: int, sigma: float = 1.0, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.upsampling = NaiveUpsampling(b, nd=nd)
        s = _check_sigma(sigma)
        if dtype is None:
            dtype = torch.get_default_dtype()
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype={dtype!r}: expected a real floating torch dtype")
        self.log_sigma = nn.Parameter(torch.tensor(math.log(s), dtype=dtype))

    @classmethod
    def from_coarse(cls, phi_coarse: torch.Tensor, b: int = 2, *, nd: int) -> ZeroSumNoise:
        """Noise whose initial ``sigma`` is the standard deviation of coarse configurations (paper App. C).

        ``sigma`` is :func:`configuration_std` of ``phi_coarse`` (samples of the coarse field, shape ``(B, *L)``):
        App. C's "variance of the configurations phi on the coarse lattice", each configuration about its own
        mean; the parameter takes ``phi_coarse``'s dtype.

        Examples
        --------
        >>> import math, torch
        >>> phi = torch.tensor([[1.0, -1.0], [4.0, 2.0]], dtype=torch.float64)   # means 0 and 3, spreads 1 and 1
        >>> math.isclose(float(ZeroSumNoise.from_coarse(phi, nd=1).sigma.detach()), 1.0)
        True
        """
        if not isinstance(phi_coarse, torch.Tensor) or not phi_coarse.is_floating_point():
            raise ValueError("phi_coarse: expected a real floating torch tensor of coarse samples (B, *L)")
        if phi_coarse.ndim < nd + 1 or phi_coarse.numel() < 2:
            raise ValueError(f"phi_coarse has shape {tuple(phi_coarse.shape)}; expected samples (B, *L) with "
                             f"{nd} lattice axes and at least two entries")
        sigma = _check_sigma(configuration_std(phi_coarse.detach(), nd=nd))
        return cls(b, nd=nd, sigma=sigma, dtype=phi_coarse.dtype).to(phi_coarse.device)

    @property
    def b(self) -> int:
        """Linear upsampling factor."""
        return self.upsampling.b

    @property
    def nd(self) -> int:
        """Number of lattice dimensions."""
        return self.upsampling.nd

    @property
    def block_size(self) -> int:
        """Number ``n = b^d`` of fine sites per block."""
        return self.upsampling.block_size

    @property
    def sigma(self) -> torch.Tensor:
        """``exp(log_sigma)`` (differentiable)."""
        return torch.exp(self.log_sigma)

    def extra_repr(self) -> str:
        return f"b={self.b}, nd={self.nd}"  # no trained values: checkpoints compare the repr

    def _lattice(self, shape: tuple[int, ...], name: str) -> tuple[int, ...]:
        if len(shape) < self.nd:
            raise ValueError(f"{name} has shape {shape}; expected (*batch, L_0, ..., L_{self.nd - 1}) "
                             f"with {self.nd} lattice axes")
        lat = shape[len(shape) - self.nd:]
        if any(s < 1 or s % self.b for s in lat):
            raise ValueError(f"{name} has lattice shape {lat}; expected positive multiples of b={self.b}")
        return lat

    def project(self, Psi: torch.Tensor) -> torch.Tensor:
        """``zeta = Psi - U(U^dagger(Psi))``: the block-zero-sum part of a fine field (eq. 30 with ``F = 1``).

        Examples
        --------
        >>> import torch
        >>> ZeroSumNoise(2, nd=1).project(torch.tensor([[2.0, 0.0]])).tolist()
        [[1.0, -1.0]]
        """
        return Psi - self.upsampling.up(self.upsampling.down(Psi))

    def log_prob(self, zeta: torch.Tensor) -> torch.Tensor:
        """Log-density of zero-sum noise w.r.t. Lebesgue measure on the product of the blocks' hyperplanes.

        Per block ``-(n-1)/2 log(2 pi sigma^2) - |zeta_B|^2 / (2 sigma^2)`` (module docstring; eq. 19 in
        orthonormal coordinates), summed over the blocks. ``zeta`` must sum to zero on every block (as
        :meth:`sample` and :meth:`project` produce); this is not checked.

        Parameters
        ----------
        zeta : torch.Tensor
            Shape ``(*batch, *fine_lattice)``.

        Returns
        -------
        torch.Tensor
            Shape ``batch``; differentiable in ``log_sigma``.

        Examples
        --------
        >>> import math, torch
        >>> noise = ZeroSumNoise(2, nd=1, sigma=1.0).to(torch.float64)
        >>> lp = noise.log_prob(torch.zeros(1, 2, dtype=torch.float64))
        >>> math.isclose(float(lp[0].detach()), -0.5 * math.log(2 * math.pi))
        True
        """
        if not isinstance(zeta, torch.Tensor) or not zeta.is_floating_point():
            raise ValueError("zeta: expected a real floating torch tensor (*batch, *fine_lattice)")
        lat = self._lattice(tuple(zeta.shape), "zeta")
        n_blocks = math.prod(lat) // self.block_size
        log_sigma = self.log_sigma.to(dtype=zeta.dtype, device=zeta.device)
        sq = (zeta * zeta).sum(dim=tuple(range(-self.nd, 0)))
        # eq. (19) in orthonormal coordinates of each block's zero-sum hyperplane: (n - 1) directions per block
        norm = -(self.block_size - 1) * n_blocks * (0.5 * math.log(2.0 * math.pi) + log_sigma)
        return norm - 0.5 * sq * torch.exp(-2.0 * log_sigma)

    def sample(self, psi_or_fine_shape: torch.Tensor | Sequence[int], rng: Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw zero-sum noise ``zeta`` (eqs. 19-20) and its log-density (:meth:`log_prob`).

        Parameters
        ----------
        psi_or_fine_shape : torch.Tensor or sequence of int
            A fine field ``(*batch, *fine_lattice)`` whose shape, dtype and device the noise takes, or the
            shape itself (dtype and device of the module).
        rng : latticekit.backends.Generator
            A torch generator (``latticekit.backends.rng(seed, backend="torch", device=...)``).

        Returns
        -------
        zeta : torch.Tensor
            Same shape as the field; sums to zero on every ``b^d`` block. Reparametrised: differentiable in
            ``log_sigma``.
        log_p : torch.Tensor
            Shape ``batch``.

        Examples
        --------
        >>> import torch, latticekit as lk
        >>> noise = ZeroSumNoise(2, nd=1).to(torch.float64)
        >>> zeta, lp = noise.sample(torch.zeros(5, 6, dtype=torch.float64), lk.backends.rng(1, backend="torch"))
        >>> bool(zeta.reshape(5, 3, 2).sum(-1).abs().max() < 1e-12)
        True
        """
        check_rng(rng)
        if isinstance(psi_or_fine_shape, torch.Tensor):
            if not psi_or_fine_shape.is_floating_point():
                raise ValueError("psi_or_fine_shape: expected a real floating tensor or a shape")
            shape = tuple(psi_or_fine_shape.shape)
            dtype, device = psi_or_fine_shape.dtype, psi_or_fine_shape.device
        else:
            try:
                shape = tuple(int(s) for s in psi_or_fine_shape)
            except TypeError:
                raise ValueError(f"psi_or_fine_shape={psi_or_fine_shape!r}: expected a fine field or its shape "
                                 "(*batch, *fine_lattice)") from None
            dtype, device = self.log_sigma.dtype, self.log_sigma.device
        self._lattice(shape, "psi_or_fine_shape")
        xi = rng.normal(shape, dtype=dtype).to(device)
        # xi ~ N(0, sigma^2) on all n block components; subtracting the block mean (orthogonal projection onto
        # the zero-sum hyperplane) gives covariance sigma^2 (1 - 1 1^T / n): eqs. (19)-(20), module docstring
        zeta = torch.exp(self.log_sigma).to(dtype=dtype, device=device) * self.project(xi)
        return zeta, self.log_prob(zeta)

    def forward(self, psi_or_fine_shape: torch.Tensor | Sequence[int], rng: Generator
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`sample`."""
        return self.sample(psi_or_fine_shape, rng)
