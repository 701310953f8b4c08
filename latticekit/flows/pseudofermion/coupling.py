"""Pseudofermion coupling layer (eqs. 27-32 of arXiv:2207.08945).

With the projector ``P`` of a :class:`~latticekit.flows.pseudofermion.masks.PFMask` (active sites
``m(x)``, active spin components ``S``), ``phi_a = P phi``, ``phi_f = (1 - P) phi`` (eq. 27)::

    phi_a'(x) = A(x) phi_a(x) + PTCN[U, phi_f](x),      phi_f' = phi_f                     (eq. 28)

``A(x)`` is a complex ``|S| x |S|`` matrix on the active spin components (the identity on colour, so
that it commutes with gauge transformations) and the PTCN is a stack of ``n_PT`` parallel-transport
convolutions (eq. 26) acting on the frozen part only; both come from the context function
(:mod:`.context`; ``A`` = identity + network output, App. B.2). The map is affine in ``phi`` with a
block-triangular Jacobian, so

    log|det d phi'/d phi| = 2 Nc sum_{x: m(x)} log|det A(x)|                        (eqs. 30, 32)

(the factor 2: a complex linear map ``z -> a z`` scales the real 2-volume by ``|a|^2``; the factor
``Nc``: ``A`` acts as ``A (x) 1_colour``). Spatial partitioning has ``S`` = all spins (eq. 30: a spin
matrix per site), spin partitioning ``|S| = 1`` in 2D (eq. 32: a complex scalar). The inverse is
``phi_a = A^{-1} (phi_a' - PTCN[U, phi_f'])`` (the frozen part is unchanged, so the PTCN term is the
same). Equivariance: ``L[U, phi]`` transforms covariantly and ``M``, ``A`` are gauge invariant, so
``phi -> Omega phi`` (with ``U`` transformed) maps ``phi' -> Omega phi'``.

Examples
--------
>>> import torch, latticekit as lk
>>> from latticekit.flows.pseudofermion import PFContextTrunk, SiteMask
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> trunk = PFContextTrunk(lk.U1, lat, 4).double()
>>> layer = PseudofermionCoupling(lk.U1, lat, SiteMask(0), n_pt=2, hidden_features=2, n_hidden=4).double()
>>> U = lk.U1.random(rng, (2, 2), lat.shape); ctx = trunk.context(U)
>>> phi = rng.complex_normal((2, 2, 1, 4, 4))
>>> y, ld = layer(phi, ctx); x, ld_inv = layer.inverse(y, ctx)
>>> bool(torch.allclose(x, phi)), bool(torch.allclose(ld, -ld_inv))
(True, True)
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.actions.dirac import spin_dim
from latticekit.groups import Group
from latticekit.lattice import Lattice

from ..base import FlowLayer
from .context import PFContext, PFContextHead, xavier_init
from .masks import PFMask
from .parallel_transport import n_transport_features, ptcn

__all__ = ["PseudofermionCoupling"]


def _det_inv(A: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``det A`` and ``A^{-1}`` for ``A`` of shape ``(B, n, n, *L)`` (closed forms for n = 1, 2)."""
    n = A.shape[1]
    if n == 1:
        return A[:, 0, 0], 1.0 / A
    if n == 2:
        a, b, c, d = A[:, 0, 0], A[:, 0, 1], A[:, 1, 0], A[:, 1, 1]
        det = a * d - b * c
        inv = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / det[:, None, None]
        return det, inv
    Am = torch.movedim(torch.movedim(A, 1, -1), 1, -1)  # (B, *L, n, n)
    return torch.linalg.det(Am), torch.movedim(torch.movedim(torch.linalg.inv(Am), -1, 1), -1, 1)


def _matvec(A: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(A v)[b, s, c, x] = sum_t A[b, s, t, x] v[b, t, c, x]`` for ``A (B, n, m, *L)``, ``v (B, m, Nc, *L)``."""
    return (A.unsqueeze(3) * v.unsqueeze(1)).sum(dim=2)


class PseudofermionCoupling(FlowLayer):
    """One pseudofermion layer, eq. (28) (module docstring).

    Parameters
    ----------
    group, lattice
        Gauge group and lattice (2D or 4D).
    mask : PFMask
        The partitioning ``P`` (eq. 27).
    n_pt : int
        PTCs in the PTCN (``n_PT``; at least 2 for even/odd targets, Sec. III.D.1).
    hidden_features : int
        ``H`` of the intermediate PTCs (the last one has ``H = Ns``).
    n_hidden : int
        Channels of the shared context trunk (input of this layer's head).
    head_hidden : sequence of int
        Hidden channels of this layer's context head (App. B.2 uses none).
    even_odd : bool
        Even/odd target: only even sites carry variables.
    antiperiodic : bool
        Antiperiodic time boundary of the parallel transports.
    init_gain : float
        Xavier-normal gain of the head's convolutions (App. B.1: 0.5).
    init_bias_std : float
        Standard deviation of the normal initial biases of the head (0: zero biases).
    """

    def __init__(self, group: Group, lattice: Lattice, mask: PFMask, *, n_pt: int = 3, hidden_features: int = 2,
                 n_hidden: int = 16, head_hidden: Sequence[int] = (), kernel_size: int = 3, even_odd: bool = False,
                 antiperiodic: bool = True, init_gain: float = 0.5, init_bias_std: float = 0.0) -> None:
        super().__init__()
        if not isinstance(mask, PFMask):
            raise TypeError(f"mask={mask!r}: expected a PFMask")
        if int(n_pt) < 1:
            raise ValueError(f"n_pt={n_pt!r}: expected at least one PTC")
        if even_odd and int(n_pt) < 2:
            raise ValueError(f"n_pt={n_pt}: even/odd targets need n_pt >= 2 (one PTC only connects even to odd sites, "
                             "Sec. III.D.1 of arXiv:2207.08945)")
        if int(hidden_features) < 1:
            raise ValueError(f"hidden_features={hidden_features!r}: expected >= 1")
        self.group, self.lattice, self.mask = group, lattice, mask
        self.nd, self.ns, self.nc = lattice.nd, spin_dim(lattice.nd), group.N
        self.even_odd, self.antiperiodic = bool(even_odd), bool(antiperiodic)
        self.spins = mask.active_spins(self.ns)
        self.register_buffer("sites", mask.active_sites(lattice, even_odd), persistent=False)
        g = n_transport_features(self.nd)
        feats = [self.ns] + [int(hidden_features)] * (int(n_pt) - 1) + [self.ns]
        # PTC k: complex H_k x (2d+1) H_{k-1}  ->  2 H_k (2d+1) H_{k-1} real outputs (App. B.2)
        self.m_shapes = [(feats[k + 1], g * feats[k]) for k in range(int(n_pt))]
        na = len(self.spins)
        self.n_out = sum(2 * h * k for h, k in self.m_shapes) + 2 * na * na
        self.head = PFContextHead(self.nd, n_hidden, self.n_out, head_hidden, kernel_size)
        xavier_init(self.head, init_gain, init_bias_std)
        ind = torch.zeros(self.ns, dtype=torch.bool)
        ind[list(self.spins)] = True
        self.register_buffer("spin_active", ind, persistent=False)
        # masks with a non-diagonal projector (GammaMask): the layer acts on psi = V^dag phi (masks.py)
        # kept outside the buffers: Module.to(dtype=float64) would cast a complex buffer to real
        V = mask.spin_basis(self.ns)
        self._basis = None if V is None else V.to(torch.complex128)
        self._basis_cache: dict[tuple[Any, Any], torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"mask={self.mask!r}, n_pt={len(self.m_shapes)}, spins={self.spins}, even_odd={self.even_odd}"

    def _params(self, ctx: PFContext) -> tuple[list[torch.Tensor], torch.Tensor]:
        # M_k and A depend on U alone (eq. 28): a context with a cache computes them once for all its draws
        if ctx.cache is not None:
            key = id(self)
            if key not in ctx.cache:
                ctx.cache[key] = self._head_params(ctx)
            return ctx.cache[key]
        return self._head_params(ctx)

    def _head_params(self, ctx: PFContext) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = self.head(ctx.features)  # (B, n_out, *L), in (-1, 1)
        b, L = out.shape[0], tuple(out.shape[2:])
        na = len(self.spins)
        # real and imaginary parts of M_1..M_n and of A, consecutive channel blocks; one split (its backward is one
        # cat) rather than a slice per block (a full-size zero tensor per slice in the backward)
        parts = out.split([h * k for h, k in self.m_shapes for _ in (0, 1)] + [na * na, na * na], dim=1)
        Ms = [torch.complex(parts[2 * j], parts[2 * j + 1]).reshape((b, h, k) + L)
              for j, (h, k) in enumerate(self.m_shapes)]
        a = torch.complex(parts[-2], parts[-1]).reshape((b, na, na) + L)
        eye = torch.eye(na, dtype=a.dtype, device=a.device).reshape((1, na, na) + (1,) * len(L))
        return Ms, eye + a  # "the identity added to A" (App. B.2)

    def _check(self, phi: torch.Tensor, ctx: Any) -> None:
        if not isinstance(ctx, PFContext):
            raise TypeError(f"context: a pseudofermion layer needs a PFContext (gauge field and trunk features), got "
                            f"{type(ctx).__name__}")
        want = (self.ns, self.nc) + tuple(self.lattice.shape)
        if phi.ndim != len(want) + 1 or tuple(phi.shape[1:]) != want or not phi.is_complex():
            raise ValueError(f"phi has shape {tuple(phi.shape)} and dtype {phi.dtype}; expected a complex "
                             f"pseudofermion (B, Ns, Nc, *L) = (B, {', '.join(map(str, want))})")

    def _transform(self, phi: torch.Tensor, ctx: PFContext, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(phi, ctx)
        V = self._spin_basis(phi)
        if V is not None:  # psi = V^dag phi; V unitary: no log-det, colour untouched (equivariance kept)
            phi = torch.einsum("ts,bt...->bs...", V.conj(), phi)
        out, ld = self._transform_diagonal(phi, ctx, inverse)
        if V is not None:
            out = torch.einsum("st,bt...->bs...", V, out)
        return out, ld

    def _spin_basis(self, phi: torch.Tensor) -> torch.Tensor | None:
        if self._basis is None:
            return None
        key = (phi.device, phi.dtype)
        if key not in self._basis_cache:
            self._basis_cache[key] = self._basis.to(device=phi.device, dtype=phi.dtype)
        return self._basis_cache[key]

    def _transform_diagonal(self, phi: torch.Tensor, ctx: PFContext, inverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (28) in the basis where the projector is diagonal."""
        Ms, A = self._params(ctx)
        act = self.sites.to(phi.device)  # (*L)
        # frozen part: every component but (active spin, active site)
        P = (self.spin_active.to(phi.device).reshape((-1,) + (1,) * self.nd) & act).unsqueeze(1)  # (Ns, 1, *L)
        phi_f = torch.where(P, torch.zeros((), dtype=phi.dtype, device=phi.device), phi)
        U = ctx.U if ctx.links is None else ctx.links
        t = ptcn(U, phi_f, Ms, self.group, self.lattice, antiperiodic=self.antiperiodic)  # (B, Ns, Nc, *L)
        S = list(self.spins)
        det, Ainv = _det_inv(A)
        if inverse:
            new = _matvec(Ainv, phi[:, S] - t[:, S])
        else:
            new = _matvec(A, phi[:, S]) + t[:, S]
        out = phi.clone()
        out[:, S] = torch.where(act, new, phi[:, S])
        # eqs. (30), (32): 2 Nc sum_{active x} log|det A(x)|
        ld = 2.0 * self.nc * (torch.log(torch.abs(det)) * act).flatten(1).sum(1)
        return out, (-ld if inverse else ld)
