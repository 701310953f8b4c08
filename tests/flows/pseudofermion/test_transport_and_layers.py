"""Parallel transport (eq. 25), PTC/PTCN (eq. 26), pseudofermion masks and coupling layers (eqs. 27-32).

The transport is checked against the Wilson-Dirac operator (one PTC with the hopping matrices is ``D``), gauge
covariance, linearity; every mask kind of the coupling layer: inverse, log-det against the dense autograd
Jacobian on the support, gauge equivariance, frozen and odd-site components untouched.
"""

from __future__ import annotations

import pytest
import torch

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac, gamma_matrices
from latticekit.gauge import gauge_transform
from latticekit.flows.pseudofermion import (
    PFContextTrunk,
    PseudofermionCoupling,
    RowMask,
    SiteMask,
    SpinMask,
    parallel_transport,
    pf_masks,
    ptc,
    ptcn,
    support_mask,
)

GROUPS = [lk.U1, lk.SU(2), lk.SU(3)]


def _omega_act(G, Om, phi):
    return G.act(Om.unsqueeze(1), phi, nd=2)


def _field(G, lat, rng, b, k=2):
    return rng.complex_normal((b, k, G.N) + lat.shape)


@pytest.mark.parametrize("G", GROUPS, ids=lambda g: g.name)
@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 2, 4)], ids=["2d", "4d"])
def test_one_ptc_with_the_hopping_matrices_is_the_wilson_dirac_operator(G, shape, device) -> None:
    lat = lk.Lattice(shape)
    nd, ns = lat.nd, 2 if lat.nd == 2 else 4
    rng = lk.backends.rng(0, backend="torch", device=device)
    U = G.random(rng, (2, nd), lat.shape)
    chi = _field(G, lat, rng, 2, k=ns)
    kappa = 0.17
    gam = torch.tensor(gamma_matrices(nd), dtype=torch.complex128, device=device)  # (nd, Ns, Ns)
    one = torch.eye(ns, dtype=torch.complex128, device=device)
    # feature blocks: [phi(y), U_mu phi(y+mu) for mu, U_mu^dag phi(y-mu) for mu] (eq. 25)
    blocks = [one] + [-kappa * (one - gam[mu]) for mu in range(nd)] + [-kappa * (one + gam[mu]) for mu in range(nd)]
    M = torch.cat(blocks, dim=1)  # (Ns, (2d+1) Ns): M[s, block*Ns + t]
    M = M.reshape((1, ns, (2 * nd + 1) * ns) + (1,) * nd).expand((2, ns, (2 * nd + 1) * ns) + lat.shape)
    out = ptc(U, chi, M, G, lat)
    ref = WilsonDirac(U, G, lat, kappa=kappa).apply(chi)
    # both are sums of the same products in double precision (2D Pauli, 4D DeGrand-Rossi gammas)
    assert torch.allclose(out, ref, atol=1e-12)


def test_transport_against_explicit_shifts_and_the_antiperiodic_sign(device) -> None:
    G, lat = lk.U1, lk.Lattice((4, 6))
    rng = lk.backends.rng(1, backend="torch", device=device)
    U = G.random(rng, (1, 2), lat.shape)
    phi = _field(G, lat, rng, 1, k=1)
    out = parallel_transport(U, phi, G, lat)
    e = torch.exp(1j * U)  # (1, 2, *L)
    for mu in range(2):
        sign = torch.ones(lat.shape, dtype=torch.complex128, device=device)
        if mu == 0:
            sign[-1, :] = -1  # y + 0 crosses the time boundary from the last time slice
        fwd = e[:, mu, None, None] * torch.roll(phi, -1, dims=3 + mu) * sign
        assert torch.allclose(out[:, 1 + mu], fwd[:, 0], atol=1e-14)
        bsign = torch.ones(lat.shape, dtype=torch.complex128, device=device)
        if mu == 0:
            bsign[0, :] = -1  # y - 0 crosses it from the first time slice
        bwd = torch.roll(torch.conj(e[:, mu, None, None]) * phi, 1, dims=3 + mu) * bsign
        assert torch.allclose(out[:, 3 + mu], bwd[:, 0], atol=1e-14)
    assert torch.equal(out[:, 0], phi[:, 0])


@pytest.mark.parametrize("G", GROUPS, ids=lambda g: g.name)
def test_transport_is_gauge_covariant_and_ptcn_linear(G, device) -> None:
    lat = lk.Lattice((4, 4))
    rng = lk.backends.rng(2, backend="torch", device=device)
    U = G.random(rng, (2, 2), lat.shape)
    phi, psi = _field(G, lat, rng, 2), _field(G, lat, rng, 2)
    Om = G.random(rng, (2,), lat.shape)
    out = parallel_transport(U, phi, G, lat)
    out_t = parallel_transport(gauge_transform(U, Om, G, lat), _omega_act(G, Om, phi), G, lat)
    assert torch.allclose(out_t, _omega_act(G, Om, out), atol=1e-12)
    Ms = [rng.complex_normal((2, 3, 10) + lat.shape), rng.complex_normal((2, 2, 15) + lat.shape)]
    a, b = 0.3 - 1.2j, -0.7 + 0.4j
    lhs = ptcn(U, a * phi + b * psi, Ms, G, lat)
    assert torch.allclose(lhs, a * ptcn(U, phi, Ms, G, lat) + b * ptcn(U, psi, Ms, G, lat), atol=1e-11)


@pytest.mark.parametrize("kind", ["spatial", "spin", "alternating"])
@pytest.mark.parametrize("even_odd", [False, True])
def test_masks_cover_every_support_component_once_per_cycle(kind, even_odd) -> None:
    lat = lk.Lattice((4, 6))
    cycle = {"spatial": 2, "spin": 2, "alternating": 4}[kind]
    masks = pf_masks(kind, lat, cycle, even_odd=even_odd)
    count = torch.zeros((2,) + lat.shape, dtype=torch.int64)
    for m in masks:
        sites = m.active_sites(lat, even_odd)
        for s in m.active_spins(2):
            count[s] += sites.long()
    sup = support_mask(lat, even_odd)
    per = 2 if kind == "alternating" else 1  # alternating = one spatial and one spin cycle
    assert torch.equal(count, per * sup.long().expand(2, *lat.shape))


CASES = [(SiteMask(0), False), (SiteMask(1), False), (RowMask(1, 0), True), (RowMask(1, 1), True),
         (SpinMask((0,)), False), (SpinMask((1,)), True)]


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=lambda g: g.name)
@pytest.mark.parametrize("mask, even_odd", CASES, ids=[f"{m!r}-eo{e}" for m, e in CASES])
def test_coupling_layer_properties(G, mask, even_odd, device) -> None:
    lat = lk.Lattice((2, 4))
    rng = lk.backends.rng(3, backend="torch", device=device)
    torch.manual_seed(0)
    trunk = PFContextTrunk(G, lat, 4).to(torch.float64).to(device)
    layer = PseudofermionCoupling(G, lat, mask, n_pt=2, hidden_features=3, n_hidden=4,
                                  even_odd=even_odd).to(torch.float64).to(device)
    U = G.random(rng, (1, 2), lat.shape)
    ctx = trunk.context(U)
    sup = support_mask(lat, even_odd).to(device)
    phi = _field(G, lat, rng, 1) * sup
    y, ld = layer(phi, ctx)
    x, ld_inv = layer.inverse(y, ctx)
    assert torch.allclose(x, phi, atol=1e-12) and torch.allclose(ld, -ld_inv, atol=1e-12)
    assert torch.count_nonzero(y * ~sup) == 0  # odd sites of an even/odd field stay exactly zero
    # frozen components are unchanged bit for bit
    act = (torch.zeros(2, dtype=torch.bool, device=device).index_fill(0, torch.tensor(mask.active_spins(2),
           device=device), True)[:, None, None] & layer.sites.to(device)).unsqueeze(1)
    assert torch.equal(torch.where(act, 0, y), torch.where(act, 0, phi))
    # log|det| against the real Jacobian on the support components: eqs. (30), (32)
    idx = sup.expand(phi.shape[1:]).reshape(-1).nonzero().squeeze(1)
    n = idx.numel()

    def f(v):
        z = torch.zeros(phi.numel(), dtype=phi.dtype, device=device)
        z = z.index_put((idx,), torch.complex(v[:n], v[n:]))
        out = layer(z.reshape(phi.shape), ctx)[0].reshape(-1)[idx]
        return torch.cat([out.real, out.imag])

    p = phi.reshape(-1)[idx]
    J = torch.autograd.functional.jacobian(f, torch.cat([p.real, p.imag]))
    assert abs(float(torch.linalg.slogdet(J)[1]) - float(ld.detach())) < 1e-10  # both exact in float64
    # gauge equivariance of the output, invariance of the log-det
    Om = G.random(rng, (1,), lat.shape)
    yt, ldt = layer(_omega_act(G, Om, phi), trunk.context(gauge_transform(U, Om, G, lat)))
    assert torch.allclose(yt, _omega_act(G, Om, y), atol=1e-12) and torch.allclose(ldt, ld, atol=1e-12)


@pytest.mark.parametrize("mask, even_odd", [(SpinMask((2, 3)), True), (RowMask(1, 1), True), (SiteMask(1), False)],
                         ids=["chiral-eo", "rows-eo", "checkerboard"])
def test_coupling_layer_in_4d(mask, even_odd, device) -> None:
    """4D (Ns = 4, DeGrand-Rossi): inverse, log-det against the dense Jacobian, gauge equivariance."""
    G, lat = lk.SU(2), lk.Lattice((2, 2, 2, 2))
    rng = lk.backends.rng(4, backend="torch", device=device)
    torch.manual_seed(1)
    trunk = PFContextTrunk(G, lat, 3).to(torch.float64).to(device)
    layer = PseudofermionCoupling(G, lat, mask, n_pt=2, hidden_features=2, n_hidden=3,
                                  even_odd=even_odd).to(torch.float64).to(device)
    U = G.random(rng, (1, 4), lat.shape)
    ctx = trunk.context(U)
    sup = support_mask(lat, even_odd).to(device)
    phi = _field(G, lat, rng, 1, k=4) * sup
    y, ld = layer(phi, ctx)
    x, ld_inv = layer.inverse(y, ctx)
    assert torch.allclose(x, phi, atol=1e-12) and torch.allclose(ld, -ld_inv, atol=1e-12)
    idx = sup.expand(phi.shape[1:]).reshape(-1).nonzero().squeeze(1)
    n = idx.numel()

    def f(v):
        z = torch.zeros(phi.numel(), dtype=phi.dtype, device=device).index_put((idx,), torch.complex(v[:n], v[n:]))
        out = layer(z.reshape(phi.shape), ctx)[0].reshape(-1)[idx]
        return torch.cat([out.real, out.imag])

    p = phi.reshape(-1)[idx]
    J = torch.autograd.functional.jacobian(f, torch.cat([p.real, p.imag]))
    assert abs(float(torch.linalg.slogdet(J)[1]) - float(ld.detach())) < 1e-10  # both exact in float64
    Om = G.random(rng, (1,), lat.shape)
    yt, ldt = layer(G.act(Om.unsqueeze(1), phi, nd=4), trunk.context(gauge_transform(U, Om, G, lat)))
    assert torch.allclose(yt, G.act(Om.unsqueeze(1), y, nd=4), atol=1e-12) and torch.allclose(ldt, ld, atol=1e-12)


def test_coupling_layer_refusals() -> None:
    G, lat = lk.U1, lk.Lattice((4, 4))
    with pytest.raises(ValueError, match="n_pt=1: even/odd targets need n_pt >= 2"):
        PseudofermionCoupling(G, lat, RowMask(1, 0), n_pt=1, even_odd=True)
    layer = PseudofermionCoupling(G, lat, SiteMask(0), n_pt=1, n_hidden=4).double()
    trunk = PFContextTrunk(G, lat, 4).double()
    U = G.random(lk.backends.rng(0, backend="torch"), (1, 2), lat.shape)
    with pytest.raises(ValueError, match="phi has shape"):
        layer(torch.zeros(1, 4, 1, 4, 4, dtype=torch.complex128), trunk.context(U))
    with pytest.raises(TypeError, match="PFContext"):
        layer(torch.zeros(1, 2, 1, 4, 4, dtype=torch.complex128), U)
    with pytest.raises(ValueError, match="partitioning"):
        pf_masks("random", lat, 2)
    with pytest.raises(ValueError, match="spatial partitioning needs even extents"):
        pf_masks("spatial", lk.Lattice((4, 3)), 2)
