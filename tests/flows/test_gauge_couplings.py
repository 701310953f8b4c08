"""The gauge-equivariant plaquette couplings, U(1) and SU(N), on every kind of mask (DESIGN.md, flow layer contract).

Every (group, mask) entry of ``CATALOGUE`` (2D stripes, stripes in 3D, checkerboards in 2D, 3D, 4D, a
mask with two active directions, and stacks) enters every property test: log-det against the
autograd Jacobian (all links, or the active links with the others checked to pass through
bit-exactly) and inverse round trip from any point, non-triviality, invariance of the network input
under the layer (frozen plaquettes unchanged, passive ones changed as a negative control), batch axes,
gauge equivariance with a gauge-invariant log-det (forward and inverse), translation equivariance
under the mask's own translations with a unit step across the pattern as negative control, float32.
Also: the network input of the named patterns against independent constructions, stacks (round
trip, coverage, full Jacobian, identity start, unitarity in deep float32 stacks), training runs, the
Wilson action in the loss, argument errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import pytest
import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import (
    HaarPrior,
    Model,
    SUPlaquetteCoupling,
    TrainConfig,
    Trainer,
    U1PlaquetteCoupling,
    reverse_kl_loss,
    sun_gauge_flow,
    u1_gauge_flow,
)
from latticekit.flows.masks import CheckerboardMask, LinkMask, StripeMask
from latticekit.flows.shifted_masks import ShiftedStripeMask, shifted_stripe_masks
from latticekit.loops import LoopBuilder, staple_order
from latticekit.observables import plaquettes
from latticekit.testing import assert_close, assert_logdet_matches, gauge_equivariance_error, randomize_parameters
from latticekit.testing.jacobian import autograd_logdet

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    # layer constructors draw their initial weights from torch's global generator
    torch.manual_seed(4321)


_randomize = randomize_parameters  # seeded perturbation, then float64


def _trng(seed: int, device: str = "cpu") -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


def two_directions(lat: lk.Lattice) -> LinkMask:
    """Active U_0 on x_1 = 0 (mod 4), x_0 even (loop on the +1 side) and U_1 on x_1 = 2 (mod 4), x_0 odd
    (loop on the -0 side): a valid mask with two active directions (tests/flows/test_masks.py)."""
    c = lat.coords(backend="torch")
    return LinkMask(lat, {0: (c[1] % 4 == 0) & (c[0] % 2 == 0), 1: (c[1] % 4 == 2) & (c[0] % 2 == 1)},
                    {0: (1, 1), 1: (0, -1)}, translations=[(2, 0), (0, 4)], name="two-directions")


def _u1(mask: Callable[[lk.Lattice], Any], **kw: Any) -> Callable[[lk.Lattice], torch.nn.Module]:
    opts = dict(bins=4, hidden=(4,)) | kw
    return lambda lat: U1PlaquetteCoupling(lat, mask(lat), **opts)


def _su(N: int, mask: Callable[[lk.Lattice], Any], **kw: Any) -> Callable[[lk.Lattice], torch.nn.Module]:
    opts = dict(bins=4, hidden=(4,), embed=4, head_hidden=(6,)) | kw
    return lambda lat: SUPlaquetteCoupling(lk.SU(N), lat, mask(lat), **opts)


def _stripe(mu: int, off: int, **kw: Any) -> Callable[[lk.Lattice], StripeMask]:
    return lambda lat: StripeMask(lat, mu, off, **kw)


def _checker(mu: int, nu: int, p: int) -> Callable[[lk.Lattice], CheckerboardMask]:
    return lambda lat: CheckerboardMask(lat, mu, nu, p)


@dataclass
class Entry:
    name: str
    N: int                                  # 1: U(1), else SU(N)
    make: Callable[[lk.Lattice], torch.nn.Module]
    tiny: tuple[int, ...]                   # lattice of the Jacobian test
    big: tuple[int, ...]                    # lattice of the symmetry tests
    context_channels: int = 0
    shifts: list[tuple[int, ...]] | None = None    # stacks: mask-preserving translations (layers: the mask's)
    full_jacobian: bool = True              # False: autograd over the active links only (SU(N) in Nd > 2)
    # size of the random parameter perturbation: the stacks compose several random maps, whose
    # Jacobians then span more than float64 can resolve (singular values down to 1e-16 at 0.3)
    scale: float = 0.3
    f32_roundtrip: bool = False             # float32: also x -> y -> x (the 2D SU(N) entries of earlier tests)

    @property
    def group(self) -> Any:
        return lk.U1 if self.N == 1 else lk.SU(self.N)


CATALOGUE = [
    # U(1), 2D stripes (Kanwar et al.)
    Entry("u1-stripes-mu0", 1, _u1(_stripe(0, 1)), (4, 4), (8, 8)),
    Entry("u1-stripes-mu1", 1, _u1(_stripe(1, 3), bins=5), (4, 4), (8, 8)),
    Entry("u1-stripes-plaquettes-only", 1, _u1(_stripe(1, 0), loop_context=False), (4, 4), (8, 8)),
    Entry("u1-stripes-context", 1, _u1(_stripe(0, 2), bins=3, hidden=(3,), context_channels=1), (4, 4), (8, 8),
          context_channels=1),
    Entry("u1-stripes-3d", 1, _u1(_stripe(1, 2, parity=1)), (2, 2, 4), (4, 2, 8)),
    Entry("u1-stripes-stack", 1, lambda lat: u1_gauge_flow(lat, 4, bins=3, hidden=(3,)), (4, 4), (8, 8),
          shifts=[(4, 0), (0, 4)], scale=0.2),
    # U(1), checkerboard (mu > nu cases test the orientation sign)
    Entry("u1-checker-2d-mu0nu1p1", 1, _u1(_checker(0, 1, 1)), (4, 4), (4, 4)),
    Entry("u1-checker-2d-mu1nu0p0", 1, _u1(_checker(1, 0, 0)), (4, 2), (8, 4)),
    Entry("u1-checker-2d-constant", 1, _u1(_checker(1, 0, 1), loop_context=False), (2, 4), (4, 4)),
    Entry("u1-checker-3d-mu0nu2p0", 1, _u1(_checker(0, 2, 0)), (4, 2, 2), (4, 4, 4)),
    Entry("u1-checker-3d-mu2nu0p1", 1, _u1(_checker(2, 0, 1)), (2, 2, 2), (4, 4, 4)),
    Entry("u1-checker-3d-context", 1, _u1(_checker(1, 2, 0), context_channels=2), (2, 2, 4), (4, 4, 4),
          context_channels=2),
    Entry("u1-checker-3d-noloops", 1, _u1(_checker(1, 0, 0), loop_context=False), (2, 2, 2), (4, 4, 4)),
    Entry("u1-checker-4d-mu1nu3p0", 1, _u1(_checker(1, 3, 0)), (2, 2, 2, 2), (4, 4, 4, 4)),
    Entry("u1-checker-4d-mu3nu1p1", 1, _u1(_checker(3, 1, 1)), (2, 2, 2, 2), (4, 4, 4, 4)),
    Entry("u1-checker-4d-noloops", 1, _u1(_checker(2, 0, 1), loop_context=False), (2, 2, 2, 2), (2, 4, 2, 4)),
    Entry("u1-checker-stack-3d", 1, lambda lat: u1_gauge_flow(lat, 6, masks="checkerboard", bins=3, hidden=(2,)),
          (2, 2, 2), (4, 4, 4), shifts=[(2, 0, 0), (0, 2, 0), (0, 0, 2)], scale=0.1),
    Entry("u1-two-directions", 1, _u1(two_directions), (2, 4), (4, 8)),
    # SU(N), 2D stripes
    Entry("su2-stripes-mu0", 2, _su(2, _stripe(0, 1)), (2, 4), (4, 8), f32_roundtrip=True),
    Entry("su2-stripes-mu1", 2, _su(2, _stripe(1, 2)), (4, 2), (8, 4), f32_roundtrip=True),
    Entry("su2-stripes-staples", 2, _su(2, _stripe(1, 0), loop="staples", alpha=(1.0, 0.6)), (4, 2), (8, 4), f32_roundtrip=True),
    Entry("su3-stripes-mu0", 3, _su(3, _stripe(0, 3)), (1, 4), (4, 4), f32_roundtrip=True),
    Entry("su3-stripes-staples", 3, _su(3, _stripe(1, 1), loop="staples", alpha=(0.8, 0.5)), (4, 1), (4, 4), f32_roundtrip=True),
    Entry("su3-stripes-plaquettes-only", 3, _su(3, _stripe(1, 2), loop_context=False), (4, 1), (4, 4), f32_roundtrip=True),
    Entry("su3-stripes-context", 3, _su(3, _stripe(0, 0), context_channels=1), (1, 4), (4, 4), context_channels=1, f32_roundtrip=True),
    Entry("su2-stripes-3d", 2, _su(2, _stripe(0, 1)), (2, 4, 2), (4, 8, 2), full_jacobian=False),
    Entry("su2-stripes-stack", 2, lambda lat: sun_gauge_flow(lk.SU(2), lat, 2, bins=3, hidden=(3,), embed=3,
                                                              head_hidden=(4,)), (4, 4), (4, 8), shifts=[(4, 0), (0, 4)],
          scale=0.2, f32_roundtrip=True),
    # SU(N), checkerboard
    Entry("su2-checker-3d-mu0nu1p0", 2, _su(2, _checker(0, 1, 0)), (2, 2, 2), (4, 4, 2), full_jacobian=False),
    Entry("su2-checker-3d-staples", 2, _su(2, _checker(2, 0, 1), loop="staples", alpha=(0.3, 0.7, 1.0, 0.4)),
          (2, 2, 2), (4, 4, 2)),                                     # full Jacobian: checks the block structure
    Entry("su3-checker-3d-mu1nu2p1", 3, _su(3, _checker(1, 2, 1)), (2, 2, 2), (4, 2, 4), full_jacobian=False),
    Entry("su3-checker-3d-context", 3, _su(3, _checker(2, 1, 0), context_channels=1), (2, 2, 2), (4, 2, 4),
          context_channels=1, full_jacobian=False, scale=0.2),
    Entry("su3-checker-3d-noloops", 3, _su(3, _checker(0, 2, 1), loop_context=False), (2, 2, 2), (4, 2, 4),
          full_jacobian=False),
    Entry("su2-checker-4d-mu3nu1p0", 2, _su(2, _checker(3, 1, 0)), (2, 2, 2, 2), (2, 4, 2, 4), full_jacobian=False),
    Entry("su3-checker-4d-mu1nu3p1", 3, _su(3, _checker(1, 3, 1)), (2, 2, 2, 2), (2, 4, 2, 4), full_jacobian=False, f32_roundtrip=True),
    Entry("su3-checker-4d-staples", 3, _su(3, _checker(0, 2, 0), loop="staples",
                                          alpha=(0.2, 0.5, 1.0, 0.3, -0.4, 0.6)), (2, 2, 2, 2), (2, 4, 2, 4),
          full_jacobian=False),
    # SU(N) and U(1), the shifted-stripe masks of the 4D QCD flows (latticekit.flows.shifted_masks)
    Entry("su3-shifted-4d-paper", 3, _su(3, lambda lat: ShiftedStripeMask(lat, (0,), 4, 1, (0, 1, 2, 3), (1, 2, 1, 1))),
          (4, 2, 4, 4), (4, 2, 4, 4), full_jacobian=False),
    Entry("su2-shifted-4d-width2", 2, _su(2, lambda lat: shifted_stripe_masks(lat, 3)[2]), (2, 2, 2, 2), (2, 4, 2, 4),
          full_jacobian=False),
    Entry("u1-shifted-3d", 1, _u1(lambda lat: ShiftedStripeMask(lat, (1,), 4, 3, (1, 2, 0), (1, 2, 1))), (4, 4, 2),
          (8, 4, 4)),
    Entry("su2-checker-2d-constant", 2, _su(2, _checker(1, 0, 1), loop_context=False), (2, 2), (4, 4)),
    Entry("su2-two-directions", 2, _su(2, two_directions, loop="staples", alpha=(1.0, 0.3, 0.5, 0.9)), (2, 4),
          (4, 8)),
]
IDS = [e.name for e in CATALOGUE]
LAYERS = [e for e in CATALOGUE if e.shifts is None]


@pytest.fixture(params=CATALOGUE, ids=IDS)
def entry(request: Any) -> Entry:
    return request.param


def _inputs(e: Entry, shape: tuple[int, ...], batch: tuple[int, ...] = (2,), seed: int = 0,
            device: str = "cpu") -> tuple[lk.Lattice, torch.Tensor, torch.Tensor | None]:
    lat = lk.Lattice(shape)
    rng = _trng(seed, device)
    U = e.group.random(rng, batch + (lat.nd,), lat.shape)
    ctx = rng.normal(batch + (e.context_channels,) + lat.shape) if e.context_channels else None
    return lat, U, ctx


def _link_diff(a: torch.Tensor, b: torch.Tensor, u1: bool) -> torch.Tensor:
    """a - b (U(1) angles modulo 2 pi, in [-pi, pi))."""
    d = a - b
    if u1:
        d = torch.remainder(d + math.pi, 2 * math.pi) - math.pi
    return d


def _diff(a: torch.Tensor, b: torch.Tensor, u1: bool) -> float:
    """max |a - b| (U(1) angles modulo 2 pi): for the negative controls."""
    if a.numel() == 0:
        return 0.0
    return float(_link_diff(a, b, u1).abs().max())


def _layers(module: torch.nn.Module) -> list[Any]:
    return list(module.layers) if hasattr(module, "layers") else [module]


def _moved(module: torch.nn.Module, U: torch.Tensor, G: Any, nd: int) -> torch.Tensor:
    """Boolean mask of the links the layers of ``module`` update, broadcast to ``U``."""
    links = sum(layer.mask_links.to(torch.int64) for layer in _layers(module)) > 0      # (Nd, *L)
    inner = (1,) * len(G.element_shape)
    return links.reshape((nd,) + inner + tuple(links.shape[1:])).to(U.device).expand(U.shape)


def _active_jacobian_logdet(layer: Any, U: torch.Tensor, ctx: torch.Tensor | None) -> torch.Tensor:
    """Autograd log-det of the map active links -> active links (algebra coordinates).

    The non-active links are passed through unchanged (checked by the caller), so the full Jacobian
    is block triangular ``[[A, *], [0, 1]]`` and ``log|det| = log|det A|``.
    """
    lat, G = layer.lattice, layer.group
    nd, V = lat.nd, lat.volume
    B = U.shape[0]
    flat = U.reshape((B, nd) + tuple(G.element_shape) + (V,))
    parts = [(mu, layer.active_index(k)) for k, mu in enumerate(layer.directions)]

    def gather(T: torch.Tensor) -> torch.Tensor:
        T = T.reshape(flat.shape)
        return torch.cat([T[:, mu][..., idx] for mu, idx in parts], dim=-1)

    def embed(A: torch.Tensor) -> torch.Tensor:
        links = list(flat.unbind(1))
        off = 0
        for mu, idx in parts:
            links[mu] = links[mu].index_copy(-1, idx, A[..., off:off + len(idx)])
            off += len(idx)
        return torch.stack(links, 1).reshape(U.shape)

    def f(A: torch.Tensor) -> torch.Tensor:
        y, _ = layer(embed(A), context=ctx)
        return gather(y)

    return autograd_logdet(f, gather(U), group=G, nd=1)


# -- log-det and inverse ---------------------------------------------------------------------------------
def test_logdet_and_inverse(entry: Entry, device: str) -> None:
    small = entry.N == 1 or math.prod(entry.tiny) <= 8
    lat, U, ctx = _inputs(entry, entry.tiny, batch=(2,) if small else (1,), device=device)
    layer = _randomize(entry.make(lat), 1, scale=entry.scale).to(device)
    G, nd, u1 = entry.group, lat.nd, entry.N == 1
    if entry.full_jacobian:
        assert_logdet_matches(layer, U, group=G, nd=None if u1 else nd, context=ctx, check_inverse=True,
                              msg=entry.name)
    else:
        with torch.no_grad():
            V, ld = layer(U, context=ctx)
            W, ldi = layer.inverse(V, context=ctx)
        act = _moved(layer, U, G, nd)
        assert torch.equal(V[~act], U[~act])
        assert_close(_active_jacobian_logdet(layer, U, ctx), ld, rtol=1e-8, atol=1e-8, msg=entry.name)
        assert_close(W, U, rtol=1e-10, atol=1e-10, msg="inverse round trip")
        assert_close(ldi, -ld, rtol=1e-10, atol=1e-10, msg="inverse logdet")
    # the inverse is the inverse of the forward map from any point, not only on its image
    with torch.no_grad():
        X, ldx = layer.inverse(U, context=ctx)
        Y, ldy = layer(X, context=ctx)
    assert_close(_link_diff(Y, U, u1), 0.0, rtol=0, atol=1e-10)
    assert_close(ldy, -ldx, rtol=1e-10, atol=1e-10, check_dtype=True)


@torch.no_grad()
def test_logdet_is_not_trivial(entry: Entry) -> None:
    # the layers under test really transform (otherwise the other properties would be vacuous)
    lat, U, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1, scale=entry.scale)
    V, ld = layer(U, context=ctx)
    assert _diff(V, U, entry.N == 1) > 1e-3
    assert float(ld.abs().min()) > 1e-4
    if entry.N > 1:
        assert_close(entry.group.defect(V, nd=lat.nd), 0.0, rtol=0, atol=1e-12)


# -- the network input ---------------------------------------------------------------------------------
def _plaquette_field(U: torch.Tensor, G: Any, lat: lk.Lattice) -> torch.Tensor:
    return torch.stack([plaquettes(U, G, lat, a, b) for a, b in lat.planes()], dim=1)


@pytest.mark.parametrize("e", LAYERS, ids=[e.name for e in LAYERS])
@torch.no_grad()
def test_network_input_is_invariant_and_only_active_links_move(e: Entry) -> None:
    # the inverse recomputes the network input from the output: this needs the features (frozen
    # plaquettes and two-plaquette loops) to be unchanged by the layer
    lat, U, ctx = _inputs(e, e.tiny, seed=2)
    layer = _randomize(e.make(lat), 1, scale=e.scale)
    G, nd, u1 = e.group, lat.nd, e.N == 1
    V, _ = layer(U, context=ctx)
    assert_close(layer.invariant_features(V), layer.invariant_features(U), rtol=0, atol=1e-12, check_dtype=True)
    act = _moved(layer, U, G, nd)
    assert torch.equal(V[~act], U[~act])                      # non-active links passed through bit-exactly
    cl = layer.mask.plaquette_classes()
    PU, PV = _plaquette_field(U, G, lat), _plaquette_field(V, G, lat)

    def select(P: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        inner = (1,) * len(G.element_shape)
        return P[m.reshape(m.shape[:1] + inner + m.shape[1:]).expand(P.shape[1:]).expand(P.shape)]

    assert_close(_link_diff(select(PV, cl["frozen"]), select(PU, cl["frozen"]), u1), 0.0, rtol=0, atol=1e-12)
    # negative control: the passive plaquettes do change, so they could not enter the input
    assert _diff(select(PV, cl["passive"]), select(PU, cl["passive"]), u1) > 1e-3
    if not u1:
        assert_close(G.defect(V, nd=nd), 0.0, rtol=0, atol=1e-12)
        if layer.loop == "plaquette":
            # the new active loop h(P) = U' S keeps the eigenvectors of P = U S (commutes with it)
            lbu = LoopBuilder(U, G, lat)
            for k, mu in enumerate(layer.directions):
                S = lbu.staple(mu, *layer.active_staples[k])
                P, Pn = G.mul(U[:, mu], S, nd=nd), G.mul(V[:, mu], S, nd=nd)
                assert_close(G.mul(P, Pn, nd=nd), G.mul(Pn, P, nd=nd), rtol=0, atol=1e-10)
                assert float((Pn - P).abs().max()) > 1e-3


def test_network_input_of_the_named_patterns() -> None:
    # one generic rule gives Kanwar's input for the 2D stripes ((cos, sin) of the frozen plaquettes and
    # of the 2 x 1 rectangle P(x) + P(x - nu)) and the checkerboard input (frozen planes and the
    # 2 Nd - 3 two-plaquette loops), computed here independently
    lat = lk.Lattice((4, 8))
    U = lk.U1.random(_trng(3), (2, 2), lat.shape)
    P = plaquettes(U, lk.U1, lat, 0, 1)
    c = lat.coords(backend="torch")
    for mu, off in [(0, 1), (1, 3)]:
        nu = 1 - mu
        layer = U1PlaquetteCoupling(lat, StripeMask(lat, mu, off), hidden=(2,)).to(F64)
        x = c[nu] % 4
        fr = ((x == (off + 1) % 4) | (x == (off + 2) % 4)).to(F64)
        act = (x == off).to(F64)
        R = P + lat.shift(P, nu, -1)
        want = torch.stack([fr * torch.cos(P), fr * torch.sin(P), act * torch.cos(R), act * torch.sin(R)], dim=1)
        assert_close(layer.invariant_features(U), want, rtol=0, atol=1e-13, check_dtype=True)
    # SU(3) checkerboard: frozen planes (those without mu), then tr(S_act^dag S_q) / N at the active sites
    lat, G = lk.Lattice((2, 4, 2)), lk.SU(3)
    U = G.random(_trng(4), (1, 3), lat.shape)
    lb = LoopBuilder(U, G, lat)
    for mu, nu, p in [(0, 2, 1), (2, 1, 0)]:
        layer = SUPlaquetteCoupling(G, lat, CheckerboardMask(lat, mu, nu, p), hidden=(2,)).to(F64)
        chans = []
        for a, b in lat.planes():
            if mu not in (a, b):
                t = G.trace(plaquettes(U, G, lat, a, b), nd=3) / 3
                chans += [t.real, t.imag]
        sites = ((sum(c for r, c in enumerate(lat.coords(backend="torch")) if r != mu) % 2) == p).to(F64)
        up = lb.staple(mu, nu, 1)
        for rho, side in staple_order(3, mu):
            if (rho, side) != (nu, 1):
                t = G.trace(G.adj_mul(up, lb.staple(mu, rho, side), nd=3), nd=3) / 3
                chans += [sites * t.real, sites * t.imag]
        assert len(chans) == layer.n_features == 2 * 1 + 2 * 3
        assert_close(layer.invariant_features(U), torch.stack(chans, 1), rtol=0, atol=1e-13, check_dtype=True)


def test_feature_counts_and_shared_masks() -> None:
    lat = lk.Lattice((2, 4, 2, 2))
    m = CheckerboardMask(lat, 2, 0, 1)
    su, u1 = SUPlaquetteCoupling(lk.SU(3), lat, m, hidden=(1,)), U1PlaquetteCoupling(lat, m, hidden=(1,))
    assert torch.equal(su.mask_links, u1.mask_links) and torch.equal(su.mask_links, m.active_links())
    assert su.n_features == u1.n_features == 2 * 3 + 2 * 5         # 3 frozen planes, 2 Nd - 3 = 5 loops
    assert U1PlaquetteCoupling(lat, m, hidden=(1,), loop_context=False).n_features == 2 * 3
    lat2 = lk.Lattice((4, 8))
    assert U1PlaquetteCoupling(lat2, StripeMask(lat2, 1, 2), hidden=(1,)).n_features == 4
    assert U1PlaquetteCoupling(lat2, CheckerboardMask(lat2, 0, 1, 0), hidden=(1,), loop_context=False).n_features == 1
    assert U1PlaquetteCoupling(lat2, two_directions(lat2), hidden=(1,)).n_features == 2 + 2 * 2


# -- batch, symmetries, precision ------------------------------------------------------------------------
@torch.no_grad()
def test_batch_axes(entry: Entry) -> None:
    lat, U, ctx = _inputs(entry, entry.tiny, batch=(2, 3))
    layer = _randomize(entry.make(lat), 2, scale=entry.scale)
    V, ld = layer(U, context=ctx)
    assert V.shape == U.shape and ld.shape == (2, 3)
    flat_ctx = None if ctx is None else ctx.reshape((6,) + ctx.shape[2:])
    V2, ld2 = layer(U.reshape((6,) + U.shape[2:]), context=flat_ctx)
    assert_close(V.reshape(V2.shape), V2, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(ld.reshape(6), ld2, rtol=1e-7, atol=1e-7, check_dtype=True)


@torch.no_grad()
def test_gauge_equivariance(entry: Entry, device: str) -> None:
    lat, U, ctx = _inputs(entry, entry.big, seed=5, device=device)
    layer = _randomize(entry.make(lat), 6, scale=entry.scale).to(device)
    G = entry.group
    # also checks that the log-det is gauge invariant (second output)
    assert gauge_equivariance_error(layer, U, G, lat, _trng(7, device), context=ctx) < 1e-10
    assert gauge_equivariance_error(layer.inverse, U, G, lat, _trng(8, device), context=ctx) < 1e-10


@pytest.mark.parametrize("N", [1, 2, 3])
def test_non_equivariant_map_is_detected(N: int) -> None:
    lat = lk.Lattice((4, 4))
    G = lk.U1 if N == 1 else lk.SU(N)
    U = G.random(_trng(0), (1, 2), lat.shape)
    bad = (lambda V: 2 * V) if N == 1 else (lambda V: G.mul(V, V, nd=2))
    assert gauge_equivariance_error(bad, U, G, lat, _trng(1)) > 0.1


def _translate(lat: lk.Lattice, t: tuple[int, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    def T(f: torch.Tensor) -> torch.Tensor:
        for d, s in enumerate(t):
            if s:
                f = lat.shift(f, d, s)
        return f
    return T


@torch.no_grad()
def test_translation_equivariance(entry: Entry, device: str) -> None:
    lat, U, ctx = _inputs(entry, entry.big, seed=3, device=device)
    layer = _randomize(entry.make(lat), 4, scale=entry.scale).to(device)
    u1 = entry.N == 1
    V, ld = layer(U, context=ctx)
    shifts = entry.shifts if entry.shifts is not None else layer.mask.translations()
    assert shifts
    for t in shifts:
        T = _translate(lat, t)
        Vt, ldt = layer(T(U), context=None if ctx is None else T(ctx))
        assert_close(_link_diff(Vt, T(V), u1), 0.0, rtol=0, atol=1e-10, msg=f"{entry.name} shift {t}")
        assert_close(ldt, ld, rtol=1e-7, atol=1e-7, check_dtype=True)
    # negative control: a unit step that does not preserve the mask is not a symmetry
    if entry.shifts is None:
        d = next(d for d in range(lat.nd) if not layer.mask.is_symmetry(tuple(int(i == d) for i in range(lat.nd))))
    else:
        d = 0
    T = _translate(lat, tuple(int(i == d) for i in range(lat.nd)))
    Vt, _ = layer(T(U), context=None if ctx is None else T(ctx))
    assert _diff(Vt, T(V), u1) > 1e-3


@torch.no_grad()
def test_float32(entry: Entry) -> None:
    lat, U, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1, scale=entry.scale).to(torch.float32)
    c32 = None if ctx is None else ctx.to(torch.float32)
    u1 = entry.N == 1
    x32 = U.to(torch.float32 if u1 else torch.complex64)
    y, ld = layer(x32, context=c32)
    xb, ldi = layer.inverse(y, context=c32)
    assert y.dtype == x32.dtype and ld.dtype == torch.float32 and xb.dtype == x32.dtype
    # round trip checked in the well-conditioned direction: randomised splines can be nearly flat
    # (g' ~ 1e-6), where x = g^{-1}(y) is ill-conditioned in float32 (the float64 tests check x)
    yb, ldb = layer(xb, context=c32)
    assert_close(_link_diff(yb, y, u1), 0.0, rtol=0, atol=1e-4)
    assert_close(ldi, -ldb, rtol=1e-3, atol=1e-3, check_dtype=True)
    if entry.f32_roundtrip:
        assert_close(xb, x32, rtol=0, atol=1e-3)
        assert_close(ldi, -ld, rtol=1e-3, atol=1e-2, check_dtype=True)
    if not u1:
        assert_close(entry.group.defect(y, nd=lat.nd), 0.0, rtol=0, atol=1e-5)


# -- stacks ------------------------------------------------------------------------------------------------
def test_u1_checkerboard_stack_4d_roundtrip_and_logdet() -> None:
    lat = lk.Lattice((2, 2, 2, 2))
    flow = _randomize(u1_gauge_flow(lat, masks="checkerboard", bins=3, hidden=(2,)), 3, scale=0.2)
    combos = [(l.mask.mu, l.mask.nu, l.mask.parity) for l in flow.layers]
    assert len(combos) == 4 * 3 * 2 and len(set(combos)) == len(combos)
    for k in range(3):                                    # every block of 2 Nd layers updates every link once
        cover = sum(l.mask_links.to(torch.int64) for l in flow.layers[8 * k:8 * (k + 1)])
        assert torch.equal(cover, torch.ones_like(cover))
    U = lk.U1.random(_trng(11), (2, 4), lat.shape)
    assert_logdet_matches(flow, U, group=lk.U1, check_inverse=True, msg="u1 checkerboard stack 4d")


def test_u1_stripe_stack_3d_roundtrip_and_logdet() -> None:
    lat = lk.Lattice((4, 4, 4))                     # nu = mu + 1 (mod 3): every extent is a stripe direction
    full = u1_gauge_flow(lat, bins=3, hidden=(2,))
    assert len(full) == 2 * 3 * 4
    cover = sum(l.mask_links.to(torch.int64) for l in full.layers)
    assert torch.equal(cover, torch.ones_like(cover))      # (mu, offset, parity): every link once
    # the Jacobian of the first 6 layers (more random layers make it too ill-conditioned for autograd)
    flow = _randomize(u1_gauge_flow(lat, 6, bins=3, hidden=(2,)), 3, scale=0.1)
    assert_logdet_matches(flow, lk.U1.random(_trng(12), (1, 3), lat.shape), group=lk.U1, check_inverse=True,
                          msg="u1 stripe stack 3d")


def test_u1_stack_3d_repeats_cycle_and_zero_init_is_identity() -> None:
    lat = lk.Lattice((2, 2, 4))
    flow = u1_gauge_flow(lat, 15, masks="checkerboard", bins=3, hidden=(2,), zero_init=True).to(F64)
    combos = [(l.mask.mu, l.mask.nu, l.mask.parity) for l in flow.layers]
    assert combos[12:] == combos[:3]
    U = lk.U1.random(_trng(12), (2, 3), lat.shape)
    with torch.no_grad():
        V, ld = flow(U)
    assert_close(_link_diff(V, U, True), 0.0, rtol=0, atol=1e-12)
    assert_close(ld, 0.0, rtol=0, atol=1e-12)


def test_sun_checkerboard_stack_4d_roundtrip_and_coverage() -> None:
    lat, G = lk.Lattice((2, 2, 2, 2)), lk.SU(2)
    flow = _randomize(sun_gauge_flow(G, lat, masks="checkerboard", bins=3, hidden=(2,), embed=2, head_hidden=(3,)),
                      3, scale=0.2)
    combos = [(l.mask.mu, l.mask.nu, l.mask.parity) for l in flow.layers]
    assert len(combos) == 4 * 3 * 2 and len(set(combos)) == len(combos)
    for k in range(3):                                    # every block of 2 Nd layers updates every link once
        cover = sum(l.mask_links.to(torch.int64) for l in flow.layers[8 * k:8 * (k + 1)])
        assert torch.equal(cover, torch.ones_like(cover))
    U = G.random(_trng(11), (2, 4), lat.shape)
    with torch.no_grad():
        V, ld = flow(U)
        W, ldi = flow.inverse(V)
    assert float((V - U).abs().max()) > 1e-2
    # re-unitarised updates: rounding does not compound through the 24 layers (it grew ~1.5x per
    # layer, to ~1e-10, when U' = delta U was used as is)
    assert_close(G.defect(V, nd=4), 0.0, rtol=0, atol=1e-13)
    assert_close(W, U, rtol=0, atol=1e-12, check_dtype=True)
    assert_close(ldi, -ld, rtol=0, atol=1e-10, check_dtype=True)


def test_sun_stack_3d_full_jacobian_and_zero_init() -> None:
    lat, G = lk.Lattice((2, 2, 2)), lk.SU(2)
    flow = _randomize(sun_gauge_flow(G, lat, 6, masks="checkerboard", bins=3, hidden=(2,), embed=2,
                                     head_hidden=(3,)), 5, scale=0.2)
    assert_logdet_matches(flow, G.random(_trng(12), (1, 3), lat.shape), group=G, nd=3, msg="sun stack 3d")
    ident = sun_gauge_flow(lk.SU(3), lat, 14, masks="checkerboard", bins=3, hidden=(2,), embed=2,
                           zero_init=True).to(F64)
    assert [(l.mask.mu, l.mask.nu, l.mask.parity) for l in ident.layers][12:] == [(0, 1, 0), (1, 2, 0)]
    U = lk.SU(3).random(_trng(13), (2, 3), lat.shape)
    with torch.no_grad():
        V, ld = ident(U)
    assert_close(V, U, rtol=0, atol=1e-12, check_dtype=True)
    assert_close(ld, 0.0, rtol=0, atol=1e-10)


def test_deep_float32_stack_stays_unitary(device: str) -> None:
    """48 float32 layers: updated links are re-unitarised (``reunitarize``), so the defect stays at the
    level of the input. Without the projection it grew to about 4e-5 (measured, SU(3), 8x8), 100x the
    input's 4e-7, which this bound would catch."""
    G, lat = lk.SU(3), lk.Lattice((8, 8))
    f = _randomize(sun_gauge_flow(G, lat, 48, hidden=(4,)), 1, scale=0.5, dtype="float32").to(device)
    U = G.random(_trng(0, device), (4, 2), lat.shape).to(torch.complex64)
    with torch.no_grad():
        V, _ = f(U)
    assert float(G.defect(V, nd=2).max()) < 5.0 * float(G.defect(U, nd=2).max()) + 1e-6


# -- training ------------------------------------------------------------------------------------------------
def test_u1_training_3d_lowers_reverse_kl() -> None:
    lat = lk.Lattice((2, 4, 4))
    model = Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 6, masks="checkerboard", bins=4, hidden=(4,)))
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, beta=1.0),
                 TrainConfig(steps=30, batch_size=32, lr=1e-2, seed=3, eval_batch_size=512))
    before = tr.evaluate()
    tr.train()
    after = tr.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.5, (before, after)


def test_sun_training_su2_wilson_4x4() -> None:
    lat, G = lk.Lattice((4, 4)), lk.SU(2)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 2, bins=4, hidden=(8,), embed=4, head_hidden=(8,)))
    S = WilsonGaugeAction(G, lat, beta=2.0)
    tr = Trainer(model, S, TrainConfig(steps=12, batch_size=16, lr=2e-2, seed=1, dtype="float64", log_every=1000))
    before = tr.evaluate(128)
    tr.train()
    assert tr.evaluate(128)["eval_loss"] < before["eval_loss"] - 1.0


def test_sun_training_4d_su2_lowers_reverse_kl() -> None:
    lat, G = lk.Lattice((2, 2, 2, 2)), lk.SU(2)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 8, masks="checkerboard", bins=4, hidden=(4,), embed=4,
                                                   head_hidden=(8,)))
    tr = Trainer(model, WilsonGaugeAction(G, lat, beta=2.0),
                 TrainConfig(steps=20, batch_size=16, lr=2e-2, seed=1, dtype="float64", eval_batch_size=128,
                             log_every=1000))
    before = tr.evaluate()
    tr.train()
    after = tr.evaluate()
    # measured: about 18.7 -> -24.5 (the bound -log Z is near -40 at beta = 2 on 2^4)
    assert after["eval_loss"] < before["eval_loss"] - 10.0, (before, after)


def test_loss_uses_wilson_action() -> None:
    lat, G = lk.Lattice((4, 4)), lk.SU(3)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 2, bins=3, hidden=(3,))).to(F64)
    S = WilsonGaugeAction(G, lat, beta=1.5)
    loss, lw = reverse_kl_loss(model, S, 4, _trng(0))
    x, log_q = model.sample(4, _trng(0))
    assert_close(loss, (log_q + S(x)).mean(), rtol=1e-7, atol=1e-7, check_dtype=True)


# -- errors ----------------------------------------------------------------------------------------------------
def test_bad_inputs_u1() -> None:
    lat = lk.Lattice((2, 2, 2))
    m = CheckerboardMask(lat, 0, 1, 0)
    with pytest.raises(TypeError, match="lattice"):
        U1PlaquetteCoupling((2, 2, 2), m)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="GaugeMask"):
        U1PlaquetteCoupling(lat, (0, 1, 0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="is on"):
        U1PlaquetteCoupling(lk.Lattice((2, 2, 4)), m)
    with pytest.raises(ValueError, match="bins"):
        U1PlaquetteCoupling(lat, m, bins=0)
    with pytest.raises(ValueError, match="context_channels"):
        U1PlaquetteCoupling(lat, m, context_channels=-1)
    with pytest.raises(ValueError, match="n_layers"):
        u1_gauge_flow(lk.Lattice((2, 2)), 0, masks="checkerboard")
    with pytest.raises(ValueError, match="n_layers"):
        u1_gauge_flow(lat, 3, masks=[m])
    layer = U1PlaquetteCoupling(lat, m, hidden=(2,))
    with pytest.raises(lk.LatticeMismatchError):
        layer(torch.zeros(2, 3, 2, 2, 4))
    with pytest.raises(lk.LatticeMismatchError):
        layer(torch.zeros(2, 2, 2, 2, 2))                      # Nd axis of length 2, not 3
    with pytest.raises(TypeError, match="complex"):
        layer(torch.zeros(2, 3, 2, 2, 2, dtype=torch.complex64))
    with pytest.raises(TypeError, match="floating-point"):
        layer(torch.zeros(2, 3, 2, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="batch axis"):
        layer(torch.zeros(3, 2, 2, 2))
    with pytest.raises(ValueError, match="context"):
        layer(torch.zeros(2, 3, 2, 2, 2), context=torch.zeros(2, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="context"):
        U1PlaquetteCoupling(lat, m, hidden=(2,), context_channels=1)(torch.zeros(2, 3, 2, 2, 2))


def test_bad_inputs_sun() -> None:
    lat, G = lk.Lattice((2, 2, 2)), lk.SU(2)
    m = CheckerboardMask(lat, 0, 1, 0)
    with pytest.raises(TypeError, match="SU\\(N\\)"):
        SUPlaquetteCoupling(lk.U1, lat, m)
    with pytest.raises(TypeError, match="SU\\(N\\)"):
        sun_gauge_flow(lk.U1, lat)
    with pytest.raises(TypeError, match="lattice"):
        SUPlaquetteCoupling(G, (2, 2, 2), m)  # type: ignore[arg-type]
    for kw, match in [({"bins": 0}, "bins"), ({"embed": 0}, "embed"), ({"loop": "wilson"}, "loop"),
                      ({"loop": "staples", "alpha": (1.0, 0.0)}, "4 staple weights"),
                      ({"alpha": (1.0, 0.0, 0.0, 0.0)}, "loop='staples'")]:
        with pytest.raises(ValueError, match=match):
            SUPlaquetteCoupling(G, lat, m, **kw)
    with pytest.raises(ValueError, match="n_layers"):
        sun_gauge_flow(G, lat, 0, masks="checkerboard")
    with pytest.raises(ValueError, match="must be even"):
        sun_gauge_flow(G, lk.Lattice((3, 2, 2)), masks="checkerboard")
    with pytest.raises(ValueError, match="multiple of 4"):
        sun_gauge_flow(G, lk.Lattice((4, 6)))
    layer = SUPlaquetteCoupling(G, lat, m, hidden=(2,)).to(F64)
    U = G.random(_trng(0), (1, 3), lat.shape)
    with pytest.raises(TypeError, match="complex"):
        layer(U.real)
    with pytest.raises(lk.LatticeMismatchError):
        layer(lk.SU(3).random(_trng(0), (1, 3), lat.shape))
    with pytest.raises(lk.LatticeMismatchError):
        layer(G.random(_trng(0), (1, 3), (2, 2, 4)))
    with pytest.raises(ValueError, match="batch axis"):
        layer(U[0])
    with pytest.raises(ValueError, match="context"):
        layer(U, context=torch.zeros(1, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="context"):
        SUPlaquetteCoupling(G, lat, m, hidden=(2,), context_channels=1).to(F64)(U)


def test_repr_names_the_mask() -> None:
    lat = lk.Lattice((4, 8))
    assert U1PlaquetteCoupling(lat, StripeMask(lat, 1, 3)).extra_repr() == (
        "lattice=(4, 8), mask=StripeMask(lattice=(4, 8), mu=1, nu=0, offset=3, period=4), bins=8, "
        "context_channels=0, loop_context=True")
    lat = lk.Lattice((4, 2, 2, 2))
    assert SUPlaquetteCoupling(lk.SU(3), lat, CheckerboardMask(lat, 1, 3, 0)).extra_repr() == (
        "group=SU(3), lattice=(4, 2, 2, 2), mask=CheckerboardMask(lattice=(4, 2, 2, 2), mu=1, nu=3, parity=0), "
        "bins=8, loop=plaquette, context_channels=0, loop_context=True")
