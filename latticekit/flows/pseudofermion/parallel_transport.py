"""Parallel transport layer ``L[U, phi]`` (eq. 25), parallel-transport convolutions PTC (eq. 26) and PTCN.

Pseudofermion paper: Abbott et al., arXiv:2207.08945, Sec. III.C.

Fields. A pseudofermion-like field with ``K`` features is ``(B, K, Nc, *L)`` complex (the fermion
layout of DESIGN.md with the spin axis read as a feature axis: ``K = Ns`` for a pseudofermion).
Links ``U`` are ``(B, Nd, *G, *L)`` (U(1): angles; SU(N): matrices).

``L[U, phi](y)`` collects ``phi(y)`` and its ``2 d`` nearest neighbours parallel transported to
``y`` (eq. 25), in the order::

    [phi(y), U_0(y) phi(y+0), ..., U_{d-1}(y) phi(y+d-1),
             U_0(y-0)^dag phi(y-0), ..., U_{d-1}(y-d+1)^dag phi(y-d+1)]

with the antiperiodic time boundary: a neighbour reached across the time boundary carries a factor
``-1`` (the phases of the Wilson-Dirac operator, :meth:`latticekit.Lattice.shift` with
``phase=-1``). The output has ``(2 d + 1) K`` features, ``(B, (2d+1) K, Nc, *L)``. Under
``U_mu(x) -> Omega(x) U_mu(x) Omega(x+mu)^dag`` and ``phi(x) -> Omega(x) phi(x)`` every feature
transforms as ``Omega(y)`` (eq. 6), so any site-dependent complex matrix acting on the feature axis
and built from gauge-invariant inputs gives a gauge-equivariant map (eq. 24).

``PTC[U, phi]_alpha(y) = sum_gamma M_{alpha gamma}(y) L[U, phi]_gamma(y)`` (eq. 26) with ``M(y)``
complex ``H x (2d+1)K``; a PTCN is ``n_PT`` stacked PTCs, the last with ``H = Ns``: a *linear* map of
``phi`` for fixed ``U`` and fixed context.

Examples
--------
>>> import torch, latticekit as lk
>>> lat = lk.Lattice((4, 4)); rng = lk.backends.rng(0, backend="torch")
>>> U = lk.U1.random(rng, (1, 2), lat.shape)
>>> phi = rng.complex_normal((1, 2, 1, 4, 4))
>>> parallel_transport(U, phi, lk.U1, lat).shape
torch.Size([1, 10, 1, 4, 4])
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from latticekit.gauge import link
from latticekit.groups import Group
from latticekit.lattice import Lattice

__all__ = ["n_transport_features", "parallel_transport", "ptc", "ptcn"]


def n_transport_features(nd: int) -> int:
    """``2 d + 1``: the number of fields gathered by ``L[U, phi]`` per input feature (eq. 25)."""
    return 2 * nd + 1


def _act(group: Group, Umu: torch.Tensor, v: torch.Tensor, nd: int, adj: bool) -> torch.Tensor:
    """``U v`` (``U^dag v``) for ``v`` of shape ``(B, K, Nc, *L)`` and links ``Umu`` ``(B, *G, *L)``."""
    Ue = Umu.unsqueeze(1)  # (B, 1, *G, *L): broadcast over the feature axis
    return group.act_adj(Ue, v, nd=nd) if adj else group.act(Ue, v, nd=nd)


def parallel_transport(U: torch.Tensor, phi: torch.Tensor, group: Group, lattice: Lattice, *,
                       antiperiodic: bool = True) -> torch.Tensor:
    """``L[U, phi]`` of eq. (25): ``(B, K, Nc, *L) -> (B, (2d+1) K, Nc, *L)`` (module docstring).

    Parameters
    ----------
    U : torch.Tensor
        Gauge field ``(B, Nd, *G, *L)``.
    phi : torch.Tensor
        Complex field ``(B, K, Nc, *L)``.
    group, lattice
        The gauge group and lattice of ``U``.
    antiperiodic : bool
        Antiperiodic time direction (the fermion boundary of DESIGN.md; default).

    Examples
    --------
    >>> import torch, latticekit as lk
    >>> from latticekit.gauge import cold_gauge_field
    >>> lat = lk.Lattice((2, 2)); U = cold_gauge_field(lk.U1, lat, backend="torch")[None]
    >>> phi = torch.zeros(1, 1, 1, 2, 2, dtype=torch.complex128); phi[0, 0, 0, 1, 0] = 1
    >>> out = parallel_transport(U, phi, lk.U1, lat)
    >>> out[0, 1, 0, 0, 0].item(), out[0, 3, 0, 0, 0].item()   # forward/backward in time, antiperiodic
    ((1+0j), (-1+0j))
    """
    nd = lattice.nd
    if phi.ndim != nd + 3:
        raise ValueError(f"phi has shape {tuple(phi.shape)}; expected (B, K, Nc, *L) with L = {lattice.shape}")
    if tuple(phi.shape[-nd:]) != tuple(lattice.shape) or phi.shape[2] != group.N:
        raise ValueError(f"phi has shape {tuple(phi.shape)}; expected (B, K, {group.N}, {', '.join(map(str, lattice.shape))})")
    fwd, bwd = [], []
    for mu in range(nd):
        phase = -1 if (mu == 0 and antiperiodic) else None
        Umu = link(U, mu, group, lattice)
        # forward neighbour: U_mu(y) phi(y + mu)
        fwd.append(_act(group, Umu, lattice.shift(phi, mu, +1, phase=phase), nd, adj=False))
        # backward neighbour: U_mu(y - mu)^dag phi(y - mu)  = shift_{-mu}(U_mu^dag phi)
        bwd.append(lattice.shift(_act(group, Umu, phi, nd, adj=True), mu, -1, phase=phase))
    return torch.cat([phi] + fwd + bwd, dim=1)


def ptc(U: torch.Tensor, phi: torch.Tensor, M: torch.Tensor, group: Group, lattice: Lattice, *,
        antiperiodic: bool = True) -> torch.Tensor:
    """One parallel-transport convolution, eq. (26): ``sum_gamma M_{alpha gamma}(y) L[U, phi]_gamma(y)``.

    Parameters
    ----------
    M : torch.Tensor
        Complex ``(B, H, (2d+1) K, *L)`` (site-dependent; gauge invariant for equivariance).

    Returns
    -------
    torch.Tensor
        ``(B, H, Nc, *L)``.
    """
    Lphi = parallel_transport(U, phi, group, lattice, antiperiodic=antiperiodic)  # (B, G, Nc, *L)
    if M.shape[2] != Lphi.shape[1]:
        raise ValueError(f"M has {M.shape[2]} input features; L[U, phi] has {Lphi.shape[1]} = (2d+1) K")
    # out[b, h, c, x] = sum_g M[b, h, g, x] Lphi[b, g, c, x]: a batched matrix product per (b, x), without
    # materialising the (B, H, G, Nc, V) broadcast product
    out = torch.einsum("bhgx,bgcx->bhcx", M.flatten(3), Lphi.flatten(3))
    return out.reshape(out.shape[:3] + Lphi.shape[3:])


def ptcn(U: torch.Tensor, phi: torch.Tensor, Ms: Sequence[torch.Tensor], group: Group, lattice: Lattice, *,
         antiperiodic: bool = True) -> torch.Tensor:
    """A parallel-transport convolutional network: ``n_PT = len(Ms)`` PTCs applied in turn (Sec. III.C).

    Linear in ``phi`` (no nonlinearity between the PTCs: the paper's PTCN is a linear operator on the
    pseudofermions; all nonlinearity sits in the context network that produces the ``Ms``).
    """
    out = phi
    for M in Ms:
        out = ptc(U, out, M, group, lattice, antiperiodic=antiperiodic)
    return out
