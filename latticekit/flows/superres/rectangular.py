"""Rectangular super-resolving flow ``T = F o N o U`` and the model built from it (paper Sec. IV, Fig. 2, eqs. 17-30).

One :class:`RectangularFlow` maps a coarse field ``phi`` on ``L^d`` sites to a fine field on ``(bL)^d`` sites:

    psi = U(phi)                  naive upsampling (eqs. 17-18),
    Psi = psi + zeta              zero-sum noise per b^d block (eqs. 19-21),
    phi_fine = F(Psi)             a square bijection on the fine lattice (eqs. 22-28; any flow layer).

Sign convention (eq. 29). ``log_det_J`` is the paper's "log det J_T", the amount *subtracted* from the coarse
log-density:

    log q_fine(phi_fine) = log p_coarse(phi) - log_det_J,
    log_det_J = +1/2 L^d log(b^d) - log p_zeta(zeta) + log|det dF/dPsi|,

with ``p_zeta`` the density of :class:`~latticekit.flows.superres.ZeroSumNoise` on the zero-sum hyperplanes and
``1/2 L^d log(b^d) = 1/2 log det(J_U^T J_U)`` (:meth:`NaiveUpsampling.log_det`). Densities of fine fields are
w.r.t. Lebesgue measure on ``R^{(bL)^d}``. The left inverse (eq. 30) recomputes everything from the fine field
alone: ``Psi = F^{-1}(phi_fine)``, ``phi = U^dagger(Psi)`` (block average), ``zeta = Psi - U(phi)``, and
``log|det dF/dPsi| = -log|det dF^{-1}/dphi_fine|`` from ``flow.inverse``.

:class:`SuperResolvingModel` is a coarse prior followed by rectangular flows, each enlarging the lattice by its
``b``; ``log_q`` is tracked exactly while sampling and recomputed through the left inverses by
:meth:`SuperResolvingModel.log_prob`.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows import GaussianPrior
>>> T = RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=0.5))
>>> model = SuperResolvingModel(GaussianPrior((2, 2)), [T]).to(torch.float64)
>>> x, log_q = model.sample(3, lk.backends.rng(0, backend="torch"))
>>> x.shape
torch.Size([3, 4, 4])
>>> bool(torch.allclose(log_q, model.log_prob(x)))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from latticekit.backends import Generator

from .upsampling import NaiveUpsampling
from .zero_sum_noise import ZeroSumNoise

__all__ = ["RectangularFlow", "SuperResolvingModel"]


def _shape_tuple(shape: Any, name: str) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{name}={shape!r}: expected a sequence of positive lattice extents") from None
    if not shp or any(s < 1 for s in shp):
        raise ValueError(f"{name}={shape!r}: expected a non-empty sequence of positive lattice extents")
    return shp


class RectangularFlow(nn.Module):
    """``T = F o N o U`` from a coarse lattice to the ``b`` times finer one (Fig. 2, eqs. 17-30).

    Parameters
    ----------
    coarse_shape : sequence of int
        Coarse lattice shape ``(L_0, ..., L_{d-1})``; the fine lattice is ``b * coarse_shape``.
    noise : ZeroSumNoise
        The noise module; its ``b`` and ``nd`` fix the upsampling factor and must match ``coarse_shape``.
    flow : torch.nn.Module or None
        Square bijection ``F`` on fine fields ``(B, *fine_shape)`` obeying the layer contract
        (``forward(x, context=None) -> (y, log|det dy/dx|)``, ``inverse``), e.g. a
        :class:`~latticekit.flows.Flow` or the local CNF; ``None`` is the identity.

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> T = RectangularFlow((2,), ZeroSumNoise(2, nd=1)).to(torch.float64)
    >>> phi = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    >>> x, ldj = T(phi, lk.backends.rng(0, backend="torch"))
    >>> x.shape, T.fine_shape
    (torch.Size([1, 4]), (4,))
    >>> back, ldj2 = T.left_inverse(x)
    >>> bool(torch.allclose(back, phi)), bool(torch.allclose(ldj, ldj2))
    (True, True)
    """

    def __init__(self, coarse_shape: Sequence[int], noise: ZeroSumNoise, flow: nn.Module | None = None) -> None:
        super().__init__()
        self.coarse_shape = _shape_tuple(coarse_shape, "coarse_shape")
        if not isinstance(noise, ZeroSumNoise):
            raise TypeError(f"noise={type(noise).__name__}: expected a ZeroSumNoise")
        if noise.nd != len(self.coarse_shape):
            raise ValueError(f"noise has nd={noise.nd}; expected nd={len(self.coarse_shape)} to match "
                             f"coarse_shape={self.coarse_shape}")
        if flow is not None and (not isinstance(flow, nn.Module) or not callable(getattr(flow, "inverse", None))):
            raise TypeError(f"flow={type(flow).__name__}: expected None or a flow layer (nn.Module with "
                            "forward(x, context=None) and inverse(y, context=None))")
        self.noise = noise
        self.flow = flow
        self.upsampling = NaiveUpsampling(noise.b, nd=noise.nd)
        self.fine_shape = self.upsampling.fine_shape(self.coarse_shape)
        # a layer that declares its lattice (the CNFs' lattice_shape) or its block size (LocalCNF.block) must
        # match: otherwise it fails at the first call (another lattice) or silently ties its weights over
        # blocks other than the upsampling's (another b)
        shape = getattr(flow, "lattice_shape", None)
        if shape is not None and tuple(shape) != self.fine_shape:
            raise ValueError(f"flow acts on the lattice {tuple(shape)}; expected the fine lattice {self.fine_shape} "
                             f"(coarse_shape={self.coarse_shape} times b={noise.b})")
        block = getattr(flow, "block", None)
        if block is not None and block != noise.b:
            raise ValueError(f"flow ties its weights over blocks of b={block} sites but noise has b={noise.b}; "
                             "expected the same b")

    @property
    def b(self) -> int:
        """Linear upsampling factor."""
        return self.upsampling.b

    @property
    def nd(self) -> int:
        """Number of lattice dimensions."""
        return self.upsampling.nd

    def extra_repr(self) -> str:
        return f"coarse_shape={self.coarse_shape}, fine_shape={self.fine_shape}"

    def _check(self, x: Any, want: tuple[int, ...], name: str) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{name}: expected a real floating torch tensor (B, *{want})")
        if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{name} has shape {tuple(x.shape)}; expected (B, *{want})")

    def forward_with_noise(self, phi_coarse: torch.Tensor, rng: Generator
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`forward`, also returning the drawn noise: ``(phi_fine, log_det_J, zeta)``.

        Examples
        --------
        >>> import torch, latticekit as lk
        >>> T = RectangularFlow((2,), ZeroSumNoise(2, nd=1)).to(torch.float64)
        >>> x, ldj, zeta = T.forward_with_noise(torch.zeros(1, 2, dtype=torch.float64), lk.backends.rng(0, backend="torch"))
        >>> bool(torch.equal(x, zeta))   # flow=None and phi = 0: the fine field is the noise
        True
        """
        self._check(phi_coarse, self.coarse_shape, "phi_coarse")
        psi = self.upsampling.up(phi_coarse)                       # eq. (17)
        zeta, log_p_zeta = self.noise.sample(psi, rng)             # eqs. (19)-(20)
        Psi = psi + zeta                                           # eq. (21)
        log_det_J = self.upsampling.log_det(self.coarse_shape) - log_p_zeta   # eqs. (18), (21)
        if self.flow is None:
            return Psi, log_det_J, zeta
        phi_fine, ld_flow = self.flow(Psi)                        # eq. (26); ld_flow = log|det dF/dPsi|
        return phi_fine, log_det_J + ld_flow, zeta                # eqs. (28)-(29)

    def forward(self, phi_coarse: torch.Tensor, rng: Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi_fine = T(phi_coarse; zeta)`` with fresh noise and ``log_det_J`` of eq. (29).

        Parameters
        ----------
        phi_coarse : torch.Tensor
            Shape ``(B, *coarse_shape)``.
        rng : latticekit.backends.Generator
            Torch generator for the noise.

        Returns
        -------
        phi_fine : torch.Tensor
            Shape ``(B, *fine_shape)``.
        log_det_J : torch.Tensor
            Shape ``(B,)``: ``1/2 L^d log(b^d) - log p_zeta(zeta) + log|det dF|``, so that
            ``log q_fine(phi_fine) = log p_coarse(phi_coarse) - log_det_J``.
        """
        phi_fine, log_det_J, _ = self.forward_with_noise(phi_coarse, rng)
        return phi_fine, log_det_J

    def decompose(self, phi_fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The coarse field, the noise and ``log_det_J`` of a fine field (eq. 30): ``(phi_coarse, zeta, log_det_J)``.

        Examples
        --------
        >>> import torch
        >>> T = RectangularFlow((2,), ZeroSumNoise(2, nd=1))
        >>> phi, zeta, _ = T.decompose(torch.tensor([[1.0, 3.0, 0.0, 0.0]]))
        >>> phi.tolist(), zeta.tolist()
        ([[2.0, 0.0]], [[-1.0, 1.0, 0.0, 0.0]])
        """
        self._check(phi_fine, self.fine_shape, "phi_fine")
        if self.flow is None:
            Psi, ld_inv = phi_fine, None
        else:
            Psi, ld_inv = self.flow.inverse(phi_fine)             # ld_inv = log|det dF^{-1}/dphi_fine| = -log|det dF|
        phi_coarse = self.upsampling.down(Psi)                    # eq. (30): phi = U^dagger F^{-1}(phi_fine)
        zeta = Psi - self.upsampling.up(phi_coarse)               # eq. (30): zeta = F^{-1}(phi_fine) - U(phi)
        log_det_J = self.upsampling.log_det(self.coarse_shape) - self.noise.log_prob(zeta)
        if ld_inv is not None:
            log_det_J = log_det_J - ld_inv
        return phi_coarse, zeta, log_det_J

    def left_inverse(self, phi_fine: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``phi_coarse = T^dagger(phi_fine) = U^dagger F^{-1}(phi_fine)`` and the same ``log_det_J`` as :meth:`forward`.

        Parameters
        ----------
        phi_fine : torch.Tensor
            Shape ``(B, *fine_shape)``; any fine field (the noise it implies is recomputed by eq. 30).

        Returns
        -------
        phi_coarse : torch.Tensor
            Shape ``(B, *coarse_shape)``.
        log_det_J : torch.Tensor
            Shape ``(B,)``, with the sign convention of :meth:`forward`.
        """
        phi_coarse, _, log_det_J = self.decompose(phi_fine)
        return phi_coarse, log_det_J


class SuperResolvingModel(nn.Module):
    """A coarse prior followed by rectangular flows: ``x = T_k o ... o T_1(phi)``, ``phi ~ p_coarse``.

    ``log q(x) = log p_coarse(phi) - sum_j log_det_J_j`` (eq. 29 applied at every level).

    Parameters
    ----------
    prior : object
        Has ``sample(n, rng) -> (phi, log_p)`` and ``log_prob(phi) -> log_p`` for coarse fields
        ``(n, *coarse_shape)`` (e.g. :class:`~latticekit.flows.GaussianPrior` or a flow
        :class:`~latticekit.flows.Model` of the coarse theory). Registered as a submodule if it is one.
    flows : sequence of RectangularFlow
        ``flows[k]`` must act on the lattice ``coarse_shape * b_0 * ... * b_{k-1}``.
    coarse_shape : sequence of int, optional
        The coarsest lattice; taken from ``prior.event_shape`` when omitted (and must agree with it when both
        are given).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.flows import GaussianPrior
    >>> Ts = [RectangularFlow((2,), ZeroSumNoise(2, nd=1)), RectangularFlow((4,), ZeroSumNoise(2, nd=1))]
    >>> m = SuperResolvingModel(GaussianPrior((2,)), Ts).to(torch.float64)
    >>> m.fine_shape
    (8,)
    >>> x, lq = m.sample(2, lk.backends.rng(0, backend="torch"))
    >>> bool(torch.allclose(lq, m.log_prob(x)))
    True
    """

    def __init__(self, prior: Any, flows: Sequence[RectangularFlow],
                 coarse_shape: Sequence[int] | None = None) -> None:
        super().__init__()
        if not callable(getattr(prior, "sample", None)) or not callable(getattr(prior, "log_prob", None)):
            raise TypeError(f"prior={type(prior).__name__}: expected an object with sample(n, rng) -> (x, log_p) "
                            "and log_prob(x)")
        prior_shape = getattr(prior, "event_shape", None)
        if coarse_shape is None:
            if prior_shape is None:
                raise ValueError("coarse_shape: the prior has no event_shape; pass coarse_shape=(L_0, ..., L_{d-1})")
            cs = _shape_tuple(prior_shape, "prior.event_shape")
        else:
            cs = _shape_tuple(coarse_shape, "coarse_shape")
            if prior_shape is not None and tuple(int(s) for s in prior_shape) != cs:
                raise ValueError(f"coarse_shape={cs} but prior.event_shape={tuple(prior_shape)}; expected them equal")
        flows = list(flows)
        want = cs
        for k, T in enumerate(flows):
            if not isinstance(T, RectangularFlow):
                raise TypeError(f"flows[{k}]={type(T).__name__}: expected a RectangularFlow")
            if T.coarse_shape != want:
                how = "coarse_shape" if k == 0 else f"coarse_shape {cs} times the factors b of flows[0..{k - 1}]"
                raise ValueError(f"flows[{k}] acts on the lattice {T.coarse_shape}; expected {want} ({how})")
            want = T.fine_shape
        self.prior = prior
        self.flows = nn.ModuleList(flows)
        self.coarse_shape = cs
        self.fine_shape = want

    def _check_fine(self, x: Any) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"x_fine: expected a real floating torch tensor (B, *{self.fine_shape})")
        if x.ndim != len(self.fine_shape) + 1 or tuple(x.shape[1:]) != self.fine_shape:
            raise ValueError(f"x_fine has shape {tuple(x.shape)}; expected (B, *{self.fine_shape})")

    def _sample_prior(self, n: int, rng: Generator) -> tuple[torch.Tensor, torch.Tensor]:
        phi, log_p = self.prior.sample(n, rng)
        if tuple(phi.shape[1:]) != self.coarse_shape:
            raise ValueError(f"prior.sample returned shape {tuple(phi.shape)}; expected (n, *{self.coarse_shape})")
        return phi, log_p

    def sample_with_draws(self, n: int, rng: Generator
                          ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """Like :meth:`sample`, also returning the intermediate draws: ``(x_fine, log_q, fields, noises)``.

        ``fields[0]`` is the prior draw and ``fields[k]`` the input of ``flows[k]``; ``noises[k]`` is the zero-sum
        noise drawn by ``flows[k]``.

        Examples
        --------
        >>> import torch, latticekit as lk
        >>> from latticekit.flows import GaussianPrior
        >>> m = SuperResolvingModel(GaussianPrior((2,)), [RectangularFlow((2,), ZeroSumNoise(2, nd=1))])
        >>> x, lq, fields, noises = m.sample_with_draws(1, lk.backends.rng(0, backend="torch"))
        >>> [tuple(f.shape) for f in fields], [tuple(z.shape) for z in noises]
        ([(1, 2)], [(1, 4)])
        """
        x, log_q = self._sample_prior(n, rng)
        fields: list[torch.Tensor] = []
        noises: list[torch.Tensor] = []
        for T in self.flows:
            fields.append(x)
            x, log_det_J, zeta = T.forward_with_noise(x, rng)
            noises.append(zeta)
            log_q = log_q - log_det_J                              # eq. (29)
        if not fields:
            fields.append(x)
        return x, log_q, fields, noises

    @staticmethod
    def _no_context(context: Any) -> None:
        if context is not None:
            raise ValueError("context: a super-resolving model takes no external context")

    def sample(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` fine samples and their exact ``log q`` (eq. 29 at every level).

        Gradients flow through both outputs (reverse-KL training with :class:`~latticekit.flows.Trainer`);
        wrap in ``torch.no_grad()`` for sampling. ``context`` exists for the model protocol and must be None.
        """
        self._no_context(context)
        x, log_q, _, _ = self.sample_with_draws(n, rng)
        return x, log_q

    def log_prob(self, x_fine: torch.Tensor, context: Any = None) -> torch.Tensor:
        """``log q(x_fine)`` recomputed through the left inverses (eq. 30) down to the coarse prior.

        Parameters
        ----------
        x_fine : torch.Tensor
            Shape ``(B, *fine_shape)``.
        """
        self._no_context(context)
        self._check_fine(x_fine)
        x = x_fine
        total: torch.Tensor | None = None
        for T in reversed(self.flows):
            x, log_det_J = T.left_inverse(x)
            total = log_det_J if total is None else total + log_det_J
        log_p = self.prior.log_prob(x)
        return log_p if total is None else log_p - total

    def forward(self, n: int, rng: Generator, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as :meth:`sample`."""
        return self.sample(n, rng, context)
