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

__all__ = ["TransportLinks", "n_transport_features", "parallel_transport", "ptc", "ptcn"]


def n_transport_features(nd: int) -> int:
    """``2 d + 1``: the number of fields gathered by ``L[U, phi]`` per input feature (eq. 25)."""
    return 2 * nd + 1


class TransportLinks:
    """The links of a gauge field prepared once for many transports ``L[U, .]`` (eq. 25).

    A PTCN applies ``n_PT`` transports, a conditional flow one PTCN per layer, and the pseudo-marginal sampler
    repeats them for ``N_pf`` draws, all with the same ``U``: the links of each direction are taken out of ``U``
    once, and for U(1) the phases ``exp(i theta)`` and their conjugates are computed once (``U1.act`` computes the
    phase from the angle at every call: 10% of a ``latticekit sample`` of the Schwinger example). The context of a
    pseudofermion layer carries one (:class:`~.context.PFContext`), built outside the layers, so a layer rerun by
    activation checkpointing finds the same tensors.

    Parameters
    ----------
    U : torch.Tensor
        Gauge field ``(B, Nd, *G, *L)``.
    group, lattice
        Its gauge group and lattice.
    """

    def __init__(self, U: torch.Tensor, group: Group, lattice: Lattice) -> None:
        self.U, self.group, self.lattice, self.nd = U, group, lattice, lattice.nd
        self.abelian = len(group.element_shape) == 0
        self.links: list[tuple[torch.Tensor, torch.Tensor | None]] = []
        for mu in range(self.nd):
            Umu = link(U, mu, group, lattice).unsqueeze(1)   # (B, 1, *G, *L): broadcast over the feature axis
            if self.abelian:   # (B, 1, 1, *L): the phase before the colour axis; conj(e^{i theta}) = e^{-i theta}
                ph = group.to_matrix(Umu, nd=self.nd).unsqueeze(2)
                self.links.append((ph, ph.conj()))
            else:
                self.links.append((Umu, None))

        # The time links times -1 on the last time slice: the antiperiodic boundary of eq. (25) folded into the
        # links, so both time hops become plain rolls. A forward hop from y_0 = L_0 - 1 and a backward hop into
        # y_0 = 0 use the link on the slice L_0 - 1, the only two that cross the boundary; the sign is exact in
        # floating point, so the result is bit-identical to the phase applied to the shifted field. Made here,
        # not on first use: a layer rerun by activation checkpointing must record the same operations.
        L0 = lattice.shape[0]
        sign = torch.ones(L0, dtype=torch.float64, device=U.device)
        sign[L0 - 1] = -1.0
        s = sign.reshape((L0,) + (1,) * (self.nd - 1))          # broadcasts over the trailing lattice axes
        Um, Uc = self.links[0]
        self._signed0 = (Um * s.to(Um.dtype), None if Uc is None else Uc * s.to(Uc.dtype))

    def _time_signed(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The time links with the antiperiodic sign folded in (see ``__init__``)."""
        return self._signed0

    def act(self, mu: int, v: torch.Tensor, adj: bool, *, time_signed: bool = False) -> torch.Tensor:
        """``U_mu v`` (``U_mu^dag v`` for ``adj``) for ``v`` of shape ``(B, K, Nc, *L)``; ``time_signed`` (``mu = 0``
        only): with the antiperiodic sign folded into the links."""
        Um, Uc = self._time_signed() if time_signed else self.links[mu]
        if self.abelian:
            return (Uc if adj else Um) * v
        return self.group.act_adj(Um, v, nd=self.nd) if adj else self.group.act(Um, v, nd=self.nd)


def _links(U: torch.Tensor | TransportLinks, group: Group, lattice: Lattice) -> TransportLinks:
    if isinstance(U, TransportLinks):
        if U.group != group or tuple(U.lattice.shape) != tuple(lattice.shape):
            raise ValueError(f"U: TransportLinks of {U.group.name} on {U.lattice}; expected {group.name} on {lattice}")
        return U
    return TransportLinks(U, group, lattice)


def parallel_transport(U: torch.Tensor | TransportLinks, phi: torch.Tensor, group: Group, lattice: Lattice, *,
                       antiperiodic: bool = True) -> torch.Tensor:
    """``L[U, phi]`` of eq. (25): ``(B, K, Nc, *L) -> (B, (2d+1) K, Nc, *L)`` (module docstring).

    Parameters
    ----------
    U : torch.Tensor or TransportLinks
        Gauge field ``(B, Nd, *G, *L)``, or its links prepared by :class:`TransportLinks`.
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
    T = _links(U, group, lattice)
    fwd, bwd = [], []
    for mu in range(nd):
        signed = mu == 0 and antiperiodic   # the boundary sign sits in the time links: plain rolls below
        # forward neighbour: U_mu(y) phi(y + mu)
        fwd.append(T.act(mu, lattice.shift(phi, mu, +1), adj=False, time_signed=signed))
        # backward neighbour: U_mu(y - mu)^dag phi(y - mu)  = shift_{-mu}(U_mu^dag phi)
        bwd.append(lattice.shift(T.act(mu, phi, adj=True, time_signed=signed), mu, -1))
    return torch.cat([phi] + fwd + bwd, dim=1)


def ptc(U: torch.Tensor | TransportLinks, phi: torch.Tensor, M: torch.Tensor, group: Group, lattice: Lattice, *,
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
    # out[b, h, c, x] = sum_g M[b, h, g, x] Lphi[b, g, c, x]. Chosen by measurement (2026-12-07, one thread,
    # complex128, B 16-256, H 2-4, G 10-36, V 64-256): the broadcast product summed over g takes 0.24-0.39x the
    # time of torch.einsum (a batched matrix product per (b, x) with permuting copies) for Nc = 1, 0.4-0.8x for
    # Nc = 3 without a gradient; forward and backward 0.46x for Nc = 1, but 1.05-1.7x for Nc = 3, where einsum
    # stays (and does not materialise the (B, H, G, Nc, V) product)
    Mf, Lf = M.flatten(3), Lphi.flatten(3)
    if Lf.shape[2] == 1:
        out = (Mf * Lf[:, None, :, 0]).sum(2).unsqueeze(2)
    elif not (torch.is_grad_enabled() and (Mf.requires_grad or Lf.requires_grad)):
        out = (Mf.unsqueeze(3) * Lf.unsqueeze(1)).sum(2)
    else:
        out = torch.einsum("bhgx,bgcx->bhcx", Mf, Lf)
    return out.reshape(out.shape[:3] + Lphi.shape[3:])


def ptcn(U: torch.Tensor | TransportLinks, phi: torch.Tensor, Ms: Sequence[torch.Tensor], group: Group,
         lattice: Lattice, *, antiperiodic: bool = True) -> torch.Tensor:
    """A parallel-transport convolutional network: ``n_PT = len(Ms)`` PTCs applied in turn (Sec. III.C).

    Linear in ``phi`` (no nonlinearity between the PTCs: the paper's PTCN is a linear operator on the
    pseudofermions; all nonlinearity sits in the context network that produces the ``Ms``).
    """
    T = _links(U, group, lattice)   # the links prepared once for the n_PT transports
    out = phi
    for M in Ms:
        out = ptc(T, out, M, group, lattice, antiperiodic=antiperiodic)
    return out
