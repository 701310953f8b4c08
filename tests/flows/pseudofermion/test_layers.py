"""Parallel transport ``L[U, phi]`` (eq. 25), PTC/PTCN (eq. 26), pseudofermion masks and coupling layers
(eqs. 27-32 of arXiv:2207.08945).

References that share no code with the layers: the transport against explicit site-by-site index arithmetic
(the antiperiodic sign written out), one PTC with the Wilson hopping matrices against both
``WilsonDirac.apply`` and a dense Wilson-Dirac matrix assembled entry by entry from the DESIGN.md formula;
the coupling's log-det against the real Jacobian of torch autograd on the support components.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.actions.dirac import WilsonDirac, gamma5_matrix, gamma_matrices
from latticekit.flows.pseudofermion import (
    PARTITIONINGS,
    GammaMask,
    PFContextTrunk,
    PseudofermionCoupling,
    RowMask,
    SiteMask,
    SpinMask,
    TransportLinks,
    n_transport_features,
    parallel_transport,
    pf_masks,
    ptc,
    projector_basis,
    ptcn,
    support_mask,
)
from latticekit.gauge import gauge_transform
from latticekit.testing import assert_close

C128 = torch.complex128
GROUPS = [lk.U1, lk.SU(2), lk.SU(3)]
SHAPES = [(2, 4), (4, 4)]
gid = lambda g: g.name  # noqa: E731
sid = lambda s: "x".join(map(str, s))  # noqa: E731


def _rng(seed: int, device: str) -> Any:
    return lk.backends.rng(seed, backend="torch", device=device)


def _field(G: Any, lat: lk.Lattice, rng: Any, b: int, k: int = 2) -> torch.Tensor:
    """A complex field with ``k`` features, ``(b, k, Nc, *L)``."""
    return rng.complex_normal((b, k, G.N) + tuple(lat.shape))


def _gauge_act(G: Any, Om: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """``phi(x) -> Omega(x) phi(x)`` on every feature (DESIGN.md)."""
    return G.act(Om.unsqueeze(1), phi, nd=2)


def _link_matrices(U: torch.Tensor, G: Any) -> torch.Tensor:
    """Links as complex colour matrices ``(B, nd, N, N, *L)`` (U(1): ``exp(i theta)`` as 1x1)."""
    if G is lk.U1:
        return torch.exp(1j * U)[:, :, None, None]
    return U


def _site(v: torch.Tensor, y: tuple[int, ...]) -> torch.Tensor:
    return v[(...,) + tuple(y)]


def _transport_reference(U: torch.Tensor, phi: torch.Tensor, G: Any, lat: lk.Lattice,
                         antiperiodic: bool = True) -> torch.Tensor:
    """``L[U, phi]`` by explicit index arithmetic, one site at a time (eq. 25 with the order of the module
    docstring and the sign -1 on every hop across the time boundary)."""
    nd, L = lat.nd, tuple(lat.shape)
    Um = _link_matrices(U, G)
    b, k = phi.shape[:2]
    out = torch.zeros((b, (2 * nd + 1) * k) + tuple(phi.shape[2:]), dtype=phi.dtype, device=phi.device)
    for y in itertools.product(*(range(n) for n in L)):
        out[(slice(None), slice(0, k), slice(None)) + y] = _site(phi, y)
        for mu in range(nd):
            yp, ym = list(y), list(y)
            yp[mu], ym[mu] = (y[mu] + 1) % L[mu], (y[mu] - 1) % L[mu]
            sf = -1.0 if (antiperiodic and mu == 0 and y[mu] == L[mu] - 1) else 1.0  # y + 0 wraps around
            sb = -1.0 if (antiperiodic and mu == 0 and y[mu] == 0) else 1.0           # y - 0 wraps around
            Uf = _site(Um[:, mu], y)                                   # U_mu(y), (B, N, N)
            Ub = _site(Um[:, mu], tuple(ym)).conj().transpose(-1, -2)  # U_mu(y - mu)^dag
            f = sf * torch.einsum("bij,bkj->bki", Uf, _site(phi, tuple(yp)))
            g = sb * torch.einsum("bij,bkj->bki", Ub, _site(phi, tuple(ym)))
            out[(slice(None), slice((1 + mu) * k, (2 + mu) * k), slice(None)) + y] = f
            out[(slice(None), slice((1 + nd + mu) * k, (2 + nd + mu) * k), slice(None)) + y] = g
    return out


def _dense_wilson(U: torch.Tensor, G: Any, lat: lk.Lattice, kappa: float) -> torch.Tensor:
    """The Wilson-Dirac matrix written out from DESIGN.md, ``(B, n, n)`` with the row-major index (s, c, *y):
    ``D = 1 - kappa sum_mu [(1 - gamma_mu) U_mu(x) delta_{x+mu,y} + (1 + gamma_mu) U_mu(x-mu)^dag delta_{x-mu,y}]``,
    antiperiodic in time."""
    nd, L, N = lat.nd, tuple(lat.shape), G.N
    ns = 2
    gam = torch.tensor(gamma_matrices(nd), dtype=C128, device=U.device)
    one = torch.eye(ns, dtype=C128, device=U.device)
    Um = _link_matrices(U, G)
    b = U.shape[0]
    shape = (ns, N) + L
    D = torch.zeros((b,) + shape + shape, dtype=C128, device=U.device)
    for s, c in itertools.product(range(ns), range(N)):
        for y in itertools.product(*(range(n) for n in L)):
            D[(slice(None), s, c) + y + (s, c) + y] += 1.0
    for y in itertools.product(*(range(n) for n in L)):
        for mu in range(nd):
            yp, ym = list(y), list(y)
            yp[mu], ym[mu] = (y[mu] + 1) % L[mu], (y[mu] - 1) % L[mu]
            sf = -1.0 if (mu == 0 and y[mu] == L[mu] - 1) else 1.0
            sb = -1.0 if (mu == 0 and y[mu] == 0) else 1.0
            Uf = _site(Um[:, mu], y)
            Ub = _site(Um[:, mu], tuple(ym)).conj().transpose(-1, -2)
            for s, t in itertools.product(range(ns), range(ns)):
                pf, pb = (one - gam[mu])[s, t], (one + gam[mu])[s, t]
                # += : on L_0 = 2 the forward and backward time neighbours are the same site
                D[(slice(None), s, slice(None)) + y + (t, slice(None)) + tuple(yp)] += -kappa * sf * pf * Uf
                D[(slice(None), s, slice(None)) + y + (t, slice(None)) + tuple(ym)] += -kappa * sb * pb * Ub
    n = ns * N * lat.volume
    return D.reshape(b, n, n)


# -- parallel transport ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_transport_is_gauge_covariant(G: Any, shape: tuple[int, int], device: str) -> None:
    lat = lk.Lattice(shape)
    rng = _rng(10, device)
    U = G.random(rng, (2, 2), lat.shape)
    phi = _field(G, lat, rng, 2, k=3)
    Om = G.random(rng, (2,), lat.shape)
    out = parallel_transport(U, phi, G, lat)
    assert out.shape == (2, n_transport_features(2) * 3, G.N) + shape
    out_t = parallel_transport(gauge_transform(U, Om, G, lat), _gauge_act(G, Om, phi), G, lat)
    # every one of the 5 K features transforms as Omega(y); float64 products of unitary matrices: ~1e-15
    assert_close(out_t, _gauge_act(G, Om, out), atol=1e-12, rtol=0)
    # negative control: a feature that is not parallel transported is not covariant (the test has teeth)
    naive = lat.shift(_gauge_act(G, Om, phi), 1, +1)
    assert float((naive - _gauge_act(G, Om, lat.shift(phi, 1, +1))).abs().max()) > 1e-3


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=gid)
def test_transport_on_a_cold_field_is_a_shift_with_the_antiperiodic_sign(G: Any, shape: tuple[int, int],
                                                                         device: str) -> None:
    lat = lk.Lattice(shape)
    rng = _rng(11, device)
    U = G.identity((1, 2), lat.shape, backend="torch", device=device)
    phi = _field(G, lat, rng, 1, k=2)
    out = parallel_transport(U, phi, G, lat)
    # torch.roll by hand, then the sign -1 on the hops across the time boundary (mu = 0, axis -2)
    fwd0, fwd1 = torch.roll(phi, -1, dims=-2), torch.roll(phi, -1, dims=-1)
    bwd0, bwd1 = torch.roll(phi, 1, dims=-2), torch.roll(phi, 1, dims=-1)
    fwd0[..., -1, :] *= -1  # y = (L0 - 1, .): y + 0 = (0, .) across the boundary
    bwd0[..., 0, :] *= -1   # y = (0, .): y - 0 = (L0 - 1, .) across the boundary
    ref = torch.cat([phi, fwd0, fwd1, bwd0, bwd1], dim=1)
    # unit links: products with 1 and 0 and the sign are exact in IEEE arithmetic
    assert torch.equal(out, ref)
    assert torch.equal(out, _transport_reference(U, phi, G, lat))
    # a periodic transport has no sign
    per = parallel_transport(U, phi, G, lat, antiperiodic=False)
    assert torch.equal(per[:, 2:4], torch.roll(phi, -1, dims=-2)) and torch.equal(per[:, 6:8], torch.roll(phi, 1, dims=-2))


@pytest.mark.parametrize("antiperiodic", [True, False])
@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_transport_against_explicit_index_arithmetic(G: Any, antiperiodic: bool, device: str) -> None:
    lat = lk.Lattice((2, 4))  # L_0 = 2: forward and backward time neighbours coincide, with different signs
    rng = _rng(12, device)
    U = G.random(rng, (2, 2), lat.shape)
    phi = _field(G, lat, rng, 2, k=2)
    out = parallel_transport(U, phi, G, lat, antiperiodic=antiperiodic)
    ref = _transport_reference(U, phi, G, lat, antiperiodic=antiperiodic)
    # the same few products summed in a different order: float64 round-off ~1e-16 per term
    assert_close(out, ref, atol=1e-13, rtol=0)
    # prepared links also keep the time links with the boundary sign folded in: those must serve
    # the antiperiodic transports only, whatever order the two kinds come in
    T = TransportLinks(U, G, lat)
    for anti in (antiperiodic, not antiperiodic, antiperiodic):
        assert_close(parallel_transport(T, phi, G, lat, antiperiodic=anti),
                     _transport_reference(U, phi, G, lat, antiperiodic=anti), atol=1e-13, rtol=0)


def _wilson_M(kappa: float, b: int, lat: lk.Lattice, device: str) -> torch.Tensor:
    """``M (B, Ns, 5 Ns, *L)`` of one PTC that is the Wilson-Dirac operator: feature blocks
    ``[phi(y), fwd 0, fwd 1, bwd 0, bwd 1]`` with ``M[s, block * Ns + t] = block[s, t]``."""
    gam = torch.tensor(gamma_matrices(2), dtype=C128, device=device)
    one = torch.eye(2, dtype=C128, device=device)
    blocks = [one, -kappa * (one - gam[0]), -kappa * (one - gam[1]), -kappa * (one + gam[0]), -kappa * (one + gam[1])]
    M = torch.cat(blocks, dim=1)  # (2, 10)
    return M.reshape(1, 2, 10, 1, 1).expand((b, 2, 10) + tuple(lat.shape))


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_one_ptc_with_the_hopping_matrices_is_the_wilson_dirac_operator(G: Any, shape: tuple[int, int],
                                                                        device: str) -> None:
    lat = lk.Lattice(shape)
    rng = _rng(13, device)
    kappa = 0.173
    U = G.random(rng, (2, 2), lat.shape)
    chi = _field(G, lat, rng, 2)
    out = ptc(U, chi, _wilson_M(kappa, 2, lat, device), G, lat)
    ref = WilsonDirac(U, G, lat, kappa=kappa).apply(chi)
    # both are sums of the same ~20 products of O(1) numbers in float64
    assert_close(out, ref, atol=1e-13, rtol=0)
    if shape == (2, 4) and G.N <= 2:  # the entry-by-entry matrix is cheap only on the smallest lattice
        D = _dense_wilson(U, G, lat, kappa)
        dense = torch.einsum("bij,bj->bi", D, chi.reshape(2, -1)).reshape(chi.shape)
        assert_close(out, dense, atol=1e-13, rtol=0)  # same: a few float64 products per entry


@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_ptcn_is_complex_linear_in_phi(G: Any, device: str) -> None:
    lat = lk.Lattice((2, 4))
    rng = _rng(14, device)
    U = G.random(rng, (2, 2), lat.shape)
    phi, psi = _field(G, lat, rng, 2), _field(G, lat, rng, 2)
    # three PTCs 2 -> 3 -> 4 -> 2 features, site-dependent complex M
    Ms = [rng.complex_normal((2, 3, 10) + lat.shape), rng.complex_normal((2, 4, 15) + lat.shape),
          rng.complex_normal((2, 2, 20) + lat.shape)]
    a, b = 0.3 - 1.2j, -0.7 + 0.4j
    lhs = ptcn(U, a * phi + b * psi, Ms, G, lat)
    rhs = a * ptcn(U, phi, Ms, G, lat) + b * ptcn(U, psi, Ms, G, lat)
    scale = float(rhs.abs().max())
    # three layers of sums of ~20-100 terms of size O(scale): relative round-off well below 1e-13
    assert_close(lhs, rhs, atol=1e-13 * scale, rtol=0)
    assert scale > 1.0  # not trivially zero
    with pytest.raises(ValueError, match="M has 9 input features"):
        ptc(U, phi, rng.complex_normal((2, 2, 9) + lat.shape), G, lat)


@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_ptc_contraction_paths_and_prepared_links(G: Any, device: str) -> None:
    """PTC's sum over the transported features (a broadcast product for Nc = 1 and without a gradient, einsum with
    one for Nc > 1) against the sum written out, with and without a gradient recorded; a PTCN from prepared
    TransportLinks is bit-identical to one from U."""
    lat = lk.Lattice((2, 4))
    rng = _rng(15, device)
    U = G.random(rng, (2, 2), lat.shape)
    phi = _field(G, lat, rng, 2)
    M = rng.complex_normal((2, 3, 10) + lat.shape)
    Lphi = parallel_transport(U, phi, G, lat)
    ref = sum(M[:, :, g, None] * Lphi[:, None, g] for g in range(10))  # (B, H, Nc, *L)
    with torch.no_grad():
        plain = ptc(U, phi, M, G, lat)
    Mg = M.clone().requires_grad_()
    graph = ptc(U, phi, Mg, G, lat)
    assert graph.requires_grad
    # 10 products of O(1) numbers summed in another order: float64 round-off ~1e-15
    assert_close(plain, ref, atol=1e-13, rtol=0)
    assert_close(graph.detach(), ref, atol=1e-13, rtol=0)
    (g_m,) = torch.autograd.grad(graph.real.sum(), Mg)
    assert_close(g_m, Lphi.conj().sum(2)[:, None].expand_as(M), atol=1e-13, rtol=0)  # d Re out / d M, per (h, g)
    T = TransportLinks(U, G, lat)
    Ms = [M, rng.complex_normal((2, 2, 15) + lat.shape)]
    assert torch.equal(ptcn(T, phi, Ms, G, lat), ptcn(U, phi, Ms, G, lat))
    big = lk.Lattice((4, 4))
    with pytest.raises(ValueError, match="U: TransportLinks of .* expected"):
        parallel_transport(TransportLinks(G.random(rng, (2, 2), big.shape), G, big), phi, G, lat)


def test_parallel_transport_refuses_bad_phi() -> None:
    lat = lk.Lattice((2, 4))
    U = lk.SU(2).random(_rng(0, "cpu"), (1, 2), lat.shape)
    with pytest.raises(ValueError, match="phi has shape"):
        parallel_transport(U, torch.zeros(1, 2, 3, 2, 4, dtype=C128), lk.SU(2), lat)  # 3 colours for SU(2)
    with pytest.raises(ValueError, match="phi has shape"):
        parallel_transport(U, torch.zeros(2, 2, 4, dtype=C128), lk.SU(2), lat)


# -- masks ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("even_odd", [False, True])
@pytest.mark.parametrize("scheme", PARTITIONINGS)
def test_masks_cover_every_support_component_exactly_once_per_cycle(scheme: str, even_odd: bool,
                                                                    shape: tuple[int, int]) -> None:
    lat = lk.Lattice(shape)
    sup = support_mask(lat, even_odd)
    masks = pf_masks(scheme, lat, 8, even_odd=even_odd)
    cycle = {"spatial": 2, "spin": 2, "alternating": 4, "gamma": 8}[scheme]
    assert [repr(m) for m in masks] == [repr(m) for m in masks[:cycle]] * (8 // cycle)  # the cycle repeats
    if scheme == "gamma":
        # spatial pair, then (1 + gamma_mu)/2, (1 - gamma_mu)/2 for mu = 0, 1, 5 (2D)
        assert [repr(m) for m in masks[2:]] == [repr(GammaMask(mu, s)) for mu in (0, 1, 5) for s in (1, -1)]
        for plus, minus in zip(masks[2::2], masks[3::2]):
            gam = torch.tensor(gamma5_matrix(2) if plus.mu == 5 else gamma_matrices(2)[plus.mu], dtype=C128)
            V = plus.spin_basis(2)
            assert torch.equal(V, minus.spin_basis(2))
            # V is unitary and diagonalises gamma_mu with +1 on the components the "+" mask updates
            assert_close(V.mH @ V, torch.eye(2, dtype=C128), atol=1e-14, rtol=0)
            assert_close(V.mH @ gam @ V, torch.diag(torch.tensor([1.0, -1.0], dtype=C128)), atol=1e-14, rtol=0)
            assert plus.active_spins(2) == (0,) and minus.active_spins(2) == (1,)
        masks = masks[:2]
        scheme = "spatial"
        cycle = 2
    # "alternating" is a spatial cycle followed by a spin cycle: each pair covers every variable once
    groups = [masks[:2], masks[2:4]] if scheme == "alternating" else [masks[:cycle]]
    kinds = [SiteMask if not even_odd else RowMask, SpinMask] if scheme == "alternating" else \
        [{"spatial": RowMask if even_odd else SiteMask, "spin": SpinMask}[scheme]]
    for grp, kind in zip(groups, kinds):
        count = torch.zeros((2,) + shape, dtype=torch.int64)
        for m in grp:
            assert isinstance(m, kind)
            sites = m.active_sites(lat, even_odd)
            assert not bool((sites & ~sup).any())  # never outside the support
            for s in m.active_spins(2):
                count[s] += sites.long()
        assert torch.equal(count, sup.long().expand(2, *shape))  # each support component once, nothing else


def test_mask_objects_and_refusals() -> None:
    lat = lk.Lattice((4, 4))
    par = lat.parity(backend="torch")
    assert torch.equal(SiteMask(1).active_sites(lat, False), par == 1)
    x1 = lat.coords(backend="torch")[1]
    assert torch.equal(RowMask(1, 1).active_sites(lat, True), (x1 % 2 == 1) & (par == 0))
    assert SpinMask((1,)).active_spins(2) == (1,) and SiteMask(0).active_spins(2) == (0, 1)
    with pytest.raises(ValueError, match="no active site"):
        SiteMask(1).active_sites(lat, True)  # odd sites carry no even/odd variables
    with pytest.raises(ValueError, match="parity"):
        SiteMask(2)
    with pytest.raises(ValueError, match="spins"):
        SpinMask((0, 0))
    with pytest.raises(ValueError, match="do not exist"):
        SpinMask((2,)).active_spins(2)
    with pytest.raises(ValueError, match="partitioning"):
        pf_masks("checkerboard", lat, 2)
    with pytest.raises(ValueError, match="even extents"):
        pf_masks("spatial", lk.Lattice((4, 3)), 2)
    # a negative count gave no layers; bools were taken as 0/1
    for bad in (-3, 0, 2.5, True):
        with pytest.raises(ValueError, match=r"^n_layers=.*: expected an integer >= 1"):
            pf_masks("spatial", lat, bad)
    for make in (lambda: SiteMask(True), lambda: RowMask(1, True), lambda: RowMask(True, 0),
                 lambda: SpinMask((True,))):
        with pytest.raises(ValueError):
            make()
    assert len(pf_masks("spin", lk.Lattice((4, 3)), 3)) == 3  # spin partitioning works on odd extents


# -- the coupling layer ---------------------------------------------------------------------------------------
CASES = [(SiteMask(0), False), (SiteMask(1), False), (RowMask(1, 0), True), (RowMask(1, 1), True),
         (SpinMask((0,)), False), (SpinMask((1,)), False), (SpinMask((0,)), True), (SpinMask((1,)), True)]
CASE_IDS = [f"{m!r}-eo{int(e)}" for m, e in CASES]


def _layer(G: Any, lat: lk.Lattice, mask: Any, even_odd: bool, device: str, coords: bool = True
           ) -> tuple[PFContextTrunk, PseudofermionCoupling]:
    with torch.random.fork_rng(devices=[]):  # initial parameters from a fixed seed, global state restored
        torch.manual_seed(3)
        trunk = PFContextTrunk(G, lat, n_hidden=4, coords=coords)
        layer = PseudofermionCoupling(G, lat, mask, n_pt=2, hidden_features=3, n_hidden=4, even_odd=even_odd,
                                      init_gain=1.0)
    return trunk.to(dtype=torch.float64, device=device), layer.to(dtype=torch.float64, device=device)


def _active(layer: PseudofermionCoupling, mask: Any, device: str) -> torch.Tensor:
    """``P`` as a boolean ``(Ns, 1, *L)``: active spin and active site."""
    spins = torch.zeros(2, dtype=torch.bool, device=device)
    spins[list(mask.active_spins(2))] = True
    return (spins[:, None, None] & layer.sites.to(device)).unsqueeze(1)


@pytest.mark.parametrize("G", GROUPS, ids=gid)
@pytest.mark.parametrize("mask, even_odd", CASES, ids=CASE_IDS)
def test_coupling_inverse_frozen_parts_and_logdet_against_autograd(G: Any, mask: Any, even_odd: bool,
                                                                   device: str) -> None:
    lat = lk.Lattice((2, 4))
    rng = _rng(20, device)
    trunk, layer = _layer(G, lat, mask, even_odd, device)
    U = G.random(rng, (2, 2), lat.shape)
    ctx = trunk.context(U)
    sup = support_mask(lat, even_odd).to(device)
    phi = _field(G, lat, rng, 2) * sup
    y, ld = layer(phi, ctx)
    x, ld_inv = layer.inverse(y, ctx)
    assert ld.shape == (2,)
    # affine map with |det A| = O(1) per site: float64 round trip to ~1e-15
    assert_close(x, phi, atol=1e-12, rtol=0)
    assert_close(ld_inv, -ld, atol=1e-12, rtol=0)
    P = _active(layer, mask, device)
    assert torch.equal(torch.where(P, 0, y), torch.where(P, 0, phi))  # frozen components: bit for bit
    assert bool(((y - phi).abs() > 1e-3)[P.expand_as(y)].all())     # every active component moves: teeth
    if even_odd:
        assert torch.count_nonzero(y * ~sup) == 0 and torch.count_nonzero(x * ~sup) == 0  # odd sites stay 0
    # log|det d phi'/d phi| against the real Jacobian on the support components [Re, Im] (eqs. 30, 32)
    idx = sup.expand(phi.shape[1:]).reshape(-1).nonzero().squeeze(1)
    n = idx.numel()
    assert n == 2 * G.N * lat.volume // (2 if even_odd else 1)
    for i in range(2):
        ctx_i = trunk.context(U[i:i + 1])

        def f(v: torch.Tensor) -> torch.Tensor:
            z = torch.zeros(phi[0].numel(), dtype=C128, device=device).index_put((idx,), torch.complex(v[:n], v[n:]))
            out = layer(z.reshape((1,) + phi.shape[1:]), ctx_i)[0].reshape(-1)[idx]
            return torch.cat([out.real, out.imag])

        p = phi[i].reshape(-1)[idx]
        J = torch.autograd.functional.jacobian(f, torch.cat([p.real, p.imag]))
        sign, logabs = torch.linalg.slogdet(J)
        # an LU of a <= 96 x 96 well-conditioned float64 matrix: ~1e-13 absolute on log|det|
        assert_close(logabs, ld[i].detach(), atol=1e-10, rtol=0)
        assert float(sign) > 0  # a complex-linear map has a positive real Jacobian determinant |det_C|^2


@pytest.mark.parametrize("shape", SHAPES, ids=sid)
@pytest.mark.parametrize("G", GROUPS, ids=gid)
@pytest.mark.parametrize("mask, even_odd", CASES, ids=CASE_IDS)
def test_coupling_gauge_equivariance(G: Any, mask: Any, even_odd: bool, shape: tuple[int, int], device: str) -> None:
    lat = lk.Lattice(shape)
    rng = _rng(21, device)
    trunk, layer = _layer(G, lat, mask, even_odd, device)
    U = G.random(rng, (2, 2), lat.shape)
    phi = _field(G, lat, rng, 2) * support_mask(lat, even_odd).to(device)
    Om = G.random(rng, (2,), lat.shape)
    Ut, phit = gauge_transform(U, Om, G, lat), _gauge_act(G, Om, phi)
    y, ld = layer(phi, trunk.context(U))
    yt, ldt = layer(phit, trunk.context(Ut))
    # the context sees only plaquette traces (gauge invariant to round-off); float64 throughout
    assert_close(yt, _gauge_act(G, Om, y), atol=1e-11, rtol=0)
    assert_close(ldt, ld, atol=1e-11, rtol=0)  # the log-det is invariant
    xt, _ = layer.inverse(yt, trunk.context(Ut))
    assert_close(xt, phit, atol=1e-11, rtol=0)


@pytest.mark.parametrize("G", [lk.U1, lk.SU(2)], ids=gid)
@pytest.mark.parametrize("mask, even_odd", CASES, ids=CASE_IDS)
def test_coupling_translation_equivariance_in_space(G: Any, mask: Any, even_odd: bool, device: str) -> None:
    """Without the coordinate inputs (coords=False) a shift by 2 along the spatial axis 1 maps every mask onto
    itself (parity, rows x_1 mod 2, spins; the antiperiodic boundary is in time) and commutes with the layer."""
    lat = lk.Lattice((4, 4))
    rng = _rng(22, device)
    trunk, layer = _layer(G, lat, mask, even_odd, device, coords=False)
    U = G.random(rng, (2, 2), lat.shape)
    phi = _field(G, lat, rng, 2) * support_mask(lat, even_odd).to(device)
    T = lambda v: torch.roll(v, 2, dims=-1)  # noqa: E731
    y, ld = layer(phi, trunk.context(U))
    yT, ldT = layer(T(phi), trunk.context(T(U)))
    # periodic convolutions and shifts commute exactly up to summation order: float64 round-off
    assert_close(yT, T(y), atol=1e-12, rtol=0)
    assert_close(ldT, ld, atol=1e-12, rtol=0)


def test_coupling_layer_refusals() -> None:
    G, lat = lk.U1, lk.Lattice((4, 4))
    with pytest.raises(ValueError, match="n_pt"):
        PseudofermionCoupling(G, lat, RowMask(1, 0), n_pt=1, even_odd=True)
    with pytest.raises(ValueError, match="n_pt"):
        PseudofermionCoupling(G, lat, SiteMask(0), n_pt=0)
    with pytest.raises(TypeError, match="PFMask"):
        PseudofermionCoupling(G, lat, "even")  # type: ignore[arg-type]
    trunk = PFContextTrunk(G, lat, 4).double()
    layer = PseudofermionCoupling(G, lat, SiteMask(0), n_pt=1, n_hidden=4).double()
    U = G.random(_rng(0, "cpu"), (1, 2), lat.shape)
    ctx = trunk.context(U)
    with pytest.raises(ValueError, match="phi"):
        layer(torch.zeros(1, 2, 2, 4, 4, dtype=C128), ctx)  # two colours for U(1)
    with pytest.raises(ValueError, match="phi"):
        layer(torch.zeros(1, 2, 1, 4, 2, dtype=C128), ctx)  # wrong lattice
    with pytest.raises(ValueError, match="phi"):
        layer(torch.zeros(1, 2, 1, 4, 4, dtype=torch.float64), ctx)  # real
    with pytest.raises(ValueError, match="phi"):
        layer.inverse(torch.zeros(2, 1, 4, 4, dtype=C128), ctx)  # no batch axis
    with pytest.raises(TypeError, match="PFContext"):
        layer(torch.zeros(1, 2, 1, 4, 4, dtype=C128), U)
    with pytest.raises(TypeError, match="PFContext"):
        layer(torch.zeros(1, 2, 1, 4, 4, dtype=C128), None)


# -- 4D (Ns = 4, DeGrand-Rossi gammas) -------------------------------------------------------------------------
@pytest.mark.parametrize("G", GROUPS, ids=gid)
def test_one_ptc_with_the_hopping_matrices_is_the_4d_wilson_dirac_operator(G: Any, device: str) -> None:
    lat = lk.Lattice((2, 2, 2, 4))
    nd, ns = 4, 4
    rng = _rng(30, device)
    U = G.random(rng, (2, nd), lat.shape)
    chi = rng.complex_normal((2, ns, G.N) + tuple(lat.shape))
    kappa = 0.17
    gam = torch.tensor(gamma_matrices(nd), dtype=C128, device=device)  # (nd, Ns, Ns)
    one = torch.eye(ns, dtype=C128, device=device)
    # feature blocks: [phi(y), U_mu phi(y+mu) for mu, U_mu^dag phi(y-mu) for mu] (eq. 25)
    blocks = [one] + [-kappa * (one - gam[mu]) for mu in range(nd)] + [-kappa * (one + gam[mu]) for mu in range(nd)]
    M = torch.cat(blocks, dim=1).reshape((1, ns, (2 * nd + 1) * ns) + (1,) * nd)
    out = ptc(U, chi, M.expand((2, ns, (2 * nd + 1) * ns) + tuple(lat.shape)), G, lat)
    ref = WilsonDirac(U, G, lat, kappa=kappa).apply(chi)
    assert_close(out, ref, atol=1e-12, rtol=0)  # the same ~36 float64 products per entry, summed differently


@pytest.mark.parametrize("mask, even_odd", [(SpinMask((2, 3)), True), (RowMask(1, 1), True), (SiteMask(1), False),
                                           (GammaMask(0, 1), False), (GammaMask(3, -1), True), (GammaMask(5, 1), False)],
                         ids=["chiral-eo", "rows-eo", "checkerboard", "gamma0+", "gamma3-eo", "gamma5+"])
def test_coupling_layer_in_4d(mask: Any, even_odd: bool, device: str) -> None:
    """Inverse, log-det against the real autograd Jacobian on the support, gauge equivariance."""
    G, lat = lk.SU(2), lk.Lattice((2, 2, 2, 2))
    rng = _rng(31, device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        trunk = PFContextTrunk(G, lat, 3)
        layer = PseudofermionCoupling(G, lat, mask, n_pt=2, hidden_features=2, n_hidden=3, even_odd=even_odd,
                                      init_gain=1.0)
    trunk, layer = trunk.to(dtype=torch.float64, device=device), layer.to(dtype=torch.float64, device=device)
    U = G.random(rng, (1, 4), lat.shape)
    ctx = trunk.context(U)
    sup = support_mask(lat, even_odd).to(device)
    phi = rng.complex_normal((1, 4, G.N) + tuple(lat.shape)) * sup
    y, ld = layer(phi, ctx)
    x, ld_inv = layer.inverse(y, ctx)
    assert_close(x, phi, atol=1e-12, rtol=0)  # float64 round trip through one affine map
    assert_close(ld_inv, -ld, atol=1e-12, rtol=0)
    if isinstance(mask, GammaMask):
        # the frozen part (1 - P) phi with P = (1 + sign gamma_mu)/2 is unchanged, the active part P phi moves
        gam = torch.tensor(gamma5_matrix(4) if mask.mu == 5 else gamma_matrices(4)[mask.mu], dtype=C128,
                           device=device)
        P = (torch.eye(4, dtype=C128, device=device) + mask.sign * gam) / 2
        proj = lambda M, v: torch.einsum("st,bt...->bs...", M, v)  # noqa: E731
        Q = torch.eye(4, dtype=C128, device=device) - P
        assert_close(proj(Q, y), proj(Q, phi), atol=1e-13, rtol=0)   # a unitary rotation there and back
        assert float((proj(P, y) - proj(P, phi)).detach().abs().max()) > 1e-2
    idx = sup.expand(phi.shape[1:]).reshape(-1).nonzero().squeeze(1)
    n = idx.numel()

    def f(v: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(phi.numel(), dtype=phi.dtype, device=device).index_put((idx,), torch.complex(v[:n], v[n:]))
        out = layer(z.reshape(phi.shape), ctx)[0].reshape(-1)[idx]
        return torch.cat([out.real, out.imag])

    p = phi.reshape(-1)[idx]
    J = torch.autograd.functional.jacobian(f, torch.cat([p.real, p.imag]))
    assert_close(ld.detach().reshape(()), torch.linalg.slogdet(J)[1], atol=1e-10, rtol=0)  # both exact in float64
    Om = G.random(rng, (1,), lat.shape)
    yt, ldt = layer(G.act(Om.unsqueeze(1), phi, nd=4), trunk.context(gauge_transform(U, Om, G, lat)))
    assert_close(yt, G.act(Om.unsqueeze(1), y, nd=4), atol=1e-12, rtol=0)
    assert_close(ldt, ld, atol=1e-12, rtol=0)


def test_gamma5_mask_is_the_chiral_spin_mask(device: str) -> None:
    """In the DeGrand-Rossi basis gamma_5 = diag(1, 1, -1, -1): the basis of GammaMask(5, +-1) is the identity
    (Gram-Schmidt on the columns of the diagonal projector) and the layer is the SpinMask layer of the chiral half."""
    G, lat = lk.SU(2), lk.Lattice((2, 2, 2, 2))
    assert torch.equal(GammaMask(5, 1).spin_basis(4), torch.eye(4, dtype=C128))
    rng = _rng(32, device)
    U = G.random(rng, (2, 4), lat.shape)
    phi = rng.complex_normal((2, 4, G.N) + tuple(lat.shape))
    outs = []
    for mask in (GammaMask(5, -1), SpinMask((2, 3))):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            trunk = PFContextTrunk(G, lat, 3)
            layer = PseudofermionCoupling(G, lat, mask, n_pt=2, hidden_features=2, n_hidden=3, init_gain=1.0)
        trunk, layer = trunk.to(dtype=torch.float64, device=device), layer.to(dtype=torch.float64, device=device)
        outs.append(layer(phi, trunk.context(U)))
    assert_close(outs[0][0], outs[1][0], atol=1e-14, rtol=0)
    assert_close(outs[0][1], outs[1][1], atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="mu=4"):
        GammaMask(4, 1)
    with pytest.raises(ValueError, match="sign=0"):
        GammaMask(0, 0)
    with pytest.raises(ValueError, match="gamma_3 does not exist in 2D"):
        GammaMask(3, 1).spin_basis(2)
    with pytest.raises(ValueError, match="Hermitian"):
        projector_basis(torch.eye(2) * 2)
