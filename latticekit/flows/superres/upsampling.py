"""Naive upsampling ``U`` and its left inverse, the block average ``U^dagger`` (paper Sec. IV A, eqs. 17-18).

``U`` copies every coarse site ``x`` into the ``b^d`` fine sites of its block
``B(x) = {b x + r : r in {0..b-1}^d}``; ``U^dagger`` averages each block, so ``U^dagger U = 1``. Fields are
real scalar fields of shape ``(*batch, L_0, ..., L_{d-1})`` (DESIGN.md): the lattice axes are the last ``nd``.

Change of density (eq. 18). ``U`` maps ``R^{L^d}`` onto the block-constant subspace of ``R^{(bL)^d}``. An
orthonormal coordinate of that subspace is ``sqrt(b^d) phi_x`` per block (the block vector ``phi_x (1,...,1)``
has norm ``sqrt(b^d) |phi_x|``), so the density of ``psi = U(phi)`` with respect to Lebesgue measure on the
subspace is ``p_L(phi) (b^d)^{-L^d/2}``:

    log p_U(psi) = log p_L(phi) - 1/2 L^d log(b^d),

equivalently ``-1/2 log det(J_U^T J_U)`` with ``J_U^T J_U = b^d 1`` (eq. 17). :meth:`NaiveUpsampling.log_det`
returns ``+1/2 log det(J_U^T J_U) = +1/2 L^d log(b^d)`` (the paper's "log det J_U", subtracted from the
log-density), :meth:`NaiveUpsampling.log_prob_shift` the term ``-1/2 L^d log(b^d)`` added in eq. (18).

Examples
--------
>>> import torch
>>> up = NaiveUpsampling(2, nd=2)
>>> phi = torch.arange(4.0).reshape(1, 2, 2)
>>> up.up(phi)[0]
tensor([[0., 0., 1., 1.],
        [0., 0., 1., 1.],
        [2., 2., 3., 3.],
        [2., 2., 3., 3.]])
>>> bool((up.down(up.up(phi)) == phi).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["NaiveUpsampling", "check_block_factor"]


def check_block_factor(b: Any, name: str = "b") -> int:
    """Validate an upsampling factor: an integer ``>= 2``.

    Examples
    --------
    >>> check_block_factor(2)
    2
    """
    if isinstance(b, bool) or not isinstance(b, int) or b < 2:
        raise ValueError(f"{name}={b!r}: expected an integer upsampling factor >= 2")
    return int(b)


def _check_nd(nd: Any) -> int:
    if isinstance(nd, bool) or not isinstance(nd, int) or nd < 1:
        raise ValueError(f"nd={nd!r}: expected a positive number of lattice dimensions")
    return int(nd)


class NaiveUpsampling(nn.Module):
    """Naive upsampling by a factor ``b`` on the last ``nd`` axes (eq. 17) and the block average (left inverse).

    Parameters
    ----------
    b : int
        Linear upsampling factor (``>= 2``; the paper uses 2). A block has ``n = b^nd`` fine sites.
    nd : int
        Number of lattice dimensions (keyword-only); the lattice axes are the last ``nd`` axes.

    Examples
    --------
    >>> import math, torch
    >>> u = NaiveUpsampling(2, nd=1)
    >>> u.up(torch.tensor([[1.0, 2.0]])).tolist()
    [[1.0, 1.0, 2.0, 2.0]]
    >>> u.down(torch.tensor([[1.0, 3.0, 2.0, 2.0]])).tolist()
    [[2.0, 2.0]]
    >>> math.isclose(u.log_det((2,)), math.log(2.0))
    True
    """

    def __init__(self, b: int = 2, *, nd: int) -> None:
        super().__init__()
        self.b = check_block_factor(b)
        self.nd = _check_nd(nd)

    @property
    def block_size(self) -> int:
        """Number ``n = b^d`` of fine sites per block."""
        return self.b ** self.nd

    def extra_repr(self) -> str:
        return f"b={self.b}, nd={self.nd}"

    def _check_field(self, x: Any, name: str) -> None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name}: expected a torch tensor (*batch, *lattice), got {type(x).__name__}")
        if x.ndim < self.nd:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (*batch, L_0, ..., L_{self.nd - 1}) "
                             f"with {self.nd} lattice axes")

    def fine_shape(self, coarse_shape: Sequence[int]) -> tuple[int, ...]:
        """Fine lattice shape ``b * coarse_shape``.

        Examples
        --------
        >>> NaiveUpsampling(2, nd=2).fine_shape((3, 4))
        (6, 8)
        """
        cs = self._check_shape(coarse_shape, "coarse_shape")
        return tuple(self.b * s for s in cs)

    def coarse_shape(self, fine_shape: Sequence[int]) -> tuple[int, ...]:
        """Coarse lattice shape ``fine_shape / b`` (each fine extent must be a multiple of ``b``).

        Examples
        --------
        >>> NaiveUpsampling(2, nd=2).coarse_shape((4, 6))
        (2, 3)
        """
        fs = self._check_shape(fine_shape, "fine_shape")
        if any(s % self.b for s in fs):
            raise ValueError(f"fine_shape={fs}: expected every extent to be a multiple of b={self.b}")
        return tuple(s // self.b for s in fs)

    def _check_shape(self, shape: Any, name: str) -> tuple[int, ...]:
        try:
            shp = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(f"{name}={shape!r}: expected a sequence of {self.nd} positive extents") from None
        if len(shp) != self.nd or any(s < 1 for s in shp):
            raise ValueError(f"{name}={shape!r}: expected {self.nd} positive extents")
        return shp

    def up(self, phi: torch.Tensor) -> torch.Tensor:
        """``psi = U(phi)``: copy every coarse site into its ``b^d`` block (eq. 17).

        Parameters
        ----------
        phi : torch.Tensor
            Shape ``(*batch, L_0, ..., L_{d-1})``.

        Returns
        -------
        torch.Tensor
            Shape ``(*batch, b L_0, ..., b L_{d-1})``; ``psi[..., y] = phi[..., y // b]``.

        Examples
        --------
        >>> import torch
        >>> NaiveUpsampling(3, nd=1).up(torch.tensor([[1.0, 2.0]])).tolist()
        [[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]]
        """
        self._check_field(phi, "phi")
        batch = tuple(phi.shape[: phi.ndim - self.nd])
        lat = tuple(phi.shape[phi.ndim - self.nd:])
        # (*B, L0, 1, L1, 1, ...) -> expand the unit axes to b -> merge each (L_mu, b) pair into b L_mu
        inter = batch + tuple(v for s in lat for v in (s, 1))
        expd = batch + tuple(v for s in lat for v in (s, self.b))
        return phi.reshape(inter).expand(expd).reshape(batch + tuple(self.b * s for s in lat))

    def down(self, psi: torch.Tensor) -> torch.Tensor:
        """``phi = U^dagger(psi)``: the average over each ``b^d`` block (left inverse of :meth:`up`, eq. 18).

        Parameters
        ----------
        psi : torch.Tensor
            Shape ``(*batch, b L_0, ..., b L_{d-1})``; every lattice extent must be a multiple of ``b``.

        Examples
        --------
        >>> import torch
        >>> NaiveUpsampling(2, nd=1).down(torch.tensor([0.0, 2.0, 5.0, 7.0])).tolist()
        [1.0, 6.0]
        """
        self._check_field(psi, "psi")
        batch = tuple(psi.shape[: psi.ndim - self.nd])
        lat = tuple(psi.shape[psi.ndim - self.nd:])
        if any(s % self.b for s in lat):
            raise ValueError(f"psi has lattice shape {lat}; expected every extent to be a multiple of b={self.b}")
        split = batch + tuple(v for s in lat for v in (s // self.b, self.b))
        nb = len(batch)
        return psi.reshape(split).mean(dim=tuple(nb + 2 * mu + 1 for mu in range(self.nd)))

    def log_det(self, coarse_shape: Sequence[int]) -> float:
        """``1/2 log det(J_U^T J_U) = 1/2 L^d log(b^d)`` for a coarse lattice of ``L^d`` sites (eqs. 17-18).

        This is the paper's "log det J_U": ``log p_U(U phi) = log p_L(phi) - log_det`` (eq. 18), with the
        density of ``U phi`` taken w.r.t. Lebesgue measure on the block-constant subspace (module docstring).

        Examples
        --------
        >>> import math
        >>> math.isclose(NaiveUpsampling(2, nd=2).log_det((4, 4)), 0.5 * 16 * math.log(4))
        True
        """
        n_coarse = math.prod(self._check_shape(coarse_shape, "coarse_shape"))
        return 0.5 * n_coarse * math.log(self.block_size)

    def log_prob_shift(self, coarse_shape: Sequence[int]) -> float:
        """The constant ``-1/2 L^d log(b^d)`` added to the log-density by the upsampling (eq. 18).

        Examples
        --------
        >>> NaiveUpsampling(2, nd=2).log_prob_shift((2, 2)) == -NaiveUpsampling(2, nd=2).log_det((2, 2))
        True
        """
        return -self.log_det(coarse_shape)

    def forward(self, phi: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`up`."""
        return self.up(phi)
