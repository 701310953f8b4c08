"""U(1) plaquette couplings in any dimension (latticekit.flows.u1_nd_couplings).

Properties: the mask argument (no plaquette holds two active links, checked on the plaquette/link
incidence matrix of the library's own plaquette function), invariance of the network input under
the layer, log-det against an autograd Jacobian and inverse round trip, non-triviality, batch axes,
gauge and translation equivariance, a full stack in 4D, and a short training run in 3D.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest
import torch

import latticekit as lk
from latticekit.actions import WilsonGaugeAction
from latticekit.flows import (
    HaarPrior,
    Model,
    TrainConfig,
    Trainer,
    U1NdPlaquetteCoupling,
    u1_nd_gauge_flow,
    u1_nd_plaquette_masks,
    u1_nd_plaquettes,
)
from latticekit.observables import plaquettes
from latticekit.testing import assert_logdet_matches, gauge_equivariance_error, randomize_parameters


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    # layer constructors draw their initial weights from torch's global generator
    torch.manual_seed(4321)


_randomize = randomize_parameters  # seeded perturbation, then float64


def _field(lat: lk.Lattice, batch: tuple[int, ...] = (2,), seed: int = 0, device: str = "cpu") -> torch.Tensor:
    return lk.U1.random(lk.backends.rng(seed, backend="torch", device=device), batch + (lat.nd,), lat.shape)


def _angle_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.numel() == 0:                                          # e.g. the frozen plaquettes in 2D: none
        return 0.0
    return float((torch.remainder(a - b + math.pi, 2 * math.pi) - math.pi).abs().max())


# (lattice for the Jacobian, mu, nu, parity, layer options); mu > nu cases test the orientation sign
CASES = [
    ((4, 4), 0, 1, 1, {}),
    ((4, 2), 1, 0, 0, {}),
    ((2, 4), 1, 0, 1, {"rectangle_context": False}),           # 2D without loops: constant feature
    ((4, 2, 2), 0, 2, 0, {}),
    ((2, 2, 2), 2, 0, 1, {}),
    ((2, 2, 4), 1, 2, 0, {"context_channels": 2}),
    ((2, 2, 2), 1, 0, 0, {"rectangle_context": False}),
    ((2, 2, 2, 2), 1, 3, 0, {}),
    ((2, 2, 2, 2), 3, 1, 1, {}),
    ((2, 2, 2, 2), 2, 0, 1, {"rectangle_context": False}),
]
IDS = [f"{len(s)}d-{'x'.join(map(str, s))}-mu{m}nu{n}p{p}" + "".join(f"-{k}" for k in o) for s, m, n, p, o in CASES]


def _make(case: tuple[Any, ...], seed: int = 1) -> tuple[lk.Lattice, U1NdPlaquetteCoupling]:
    shape, mu, nu, parity, opts = case
    lat = lk.Lattice(shape)
    layer = U1NdPlaquetteCoupling(lat, mu, nu, parity, bins=4, hidden=(4,), **opts)
    return lat, _randomize(layer, seed)


def _context(layer: U1NdPlaquetteCoupling, U: torch.Tensor, seed: int = 9) -> torch.Tensor | None:
    if not layer.context_channels:
        return None
    g = torch.Generator().manual_seed(seed)
    nd = layer.lattice.nd
    shape = U.shape[:-nd - 1] + (layer.context_channels,) + layer.lattice.shape
    return torch.randn(shape, generator=g, dtype=U.dtype).to(U.device)


# -- the mask argument --------------------------------------------------------------------------------

def _incidence(lat: lk.Lattice) -> torch.Tensor:
    """Signed plaquette/link incidence matrix ``(n_planes * V, Nd * V)`` of the library's plaquettes."""
    nd = lat.nd

    def P(flat: torch.Tensor) -> torch.Tensor:
        th = flat.reshape((nd,) + lat.shape)
        return torch.stack([plaquettes(th, lk.U1, lat, a, b) for a, b in lat.planes()]).reshape(-1)

    return torch.autograd.functional.jacobian(P, torch.zeros(nd * lat.volume, dtype=torch.float64))


MASK_LATTICES = [(2, 4), (4, 2), (2, 2, 4), (3, 2, 2), (2, 2, 2, 2), (1, 4, 2, 2)]


@pytest.mark.parametrize("shape", MASK_LATTICES, ids=["x".join(map(str, s)) for s in MASK_LATTICES])
def test_no_plaquette_holds_two_active_links(shape: tuple[int, ...]) -> None:
    lat = lk.Lattice(shape)
    nd, V = lat.nd, lat.volume
    J = _incidence(lat)
    assert set(J.unique().tolist()) <= {-1.0, 0.0, 1.0}
    for mu, nu, parity in itertools.product(range(nd), range(nd), (0, 1)):
        if nu == mu or any(lat.shape[r] % 2 for r in range(nd) if r != mu):
            continue
        m = {k: v.to(torch.float64) for k, v in u1_nd_plaquette_masks(lat, mu, nu, parity).items()}
        act_links = m["links"].reshape(-1)
        count = (J.abs() @ act_links).reshape((len(lat.planes()),) + lat.shape)
        assert float(count.max()) <= 1.0, (shape, mu, nu, parity)
        # the classes of the layer are exactly: active + passive = plaquettes with one active link
        assert torch.equal(m["active"] + m["passive"] + m["frozen"], torch.ones_like(count))
        torch.testing.assert_close(count, m["active"] + m["passive"], rtol=0, atol=0)
        # each active plaquette P_{mu nu}(x) holds its own link U_mu(x), with the layer's sign
        layer = U1NdPlaquetteCoupling(lat, mu, nu, parity, hidden=(1,))
        pi = lat.planes().index((min(mu, nu), max(mu, nu)))
        sites = torch.nonzero(m["sites"].reshape(-1))[:, 0]
        assert len(sites) == V // 2
        own = J[pi * V + sites, mu * V + sites]
        assert torch.equal(own, torch.full_like(own, layer.sign))
        assert float(m["active"].sum()) == V // 2
        # and every active link lies in 2 (Nd - 1) plaquettes: one active, 2 Nd - 3 passive
        per_link = J.abs()[:, mu * V + sites]
        assert torch.equal(per_link.sum(0), torch.full((V // 2,), 2.0 * (nd - 1), dtype=torch.float64))
        assert torch.equal((per_link * m["active"].reshape(-1, 1)).sum(0), torch.ones(V // 2, dtype=torch.float64))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@torch.no_grad()
def test_network_input_is_invariant_and_only_active_links_move(case: tuple[Any, ...]) -> None:
    # the inverse recomputes the spline parameters from the output: this needs the features
    # (frozen plaquettes and two-plaquette loops) to be unchanged by the layer
    lat, layer = _make(case)
    U = _field(lat, seed=2)
    V, _ = layer(U, context=_context(layer, U))
    PU, PV = u1_nd_plaquettes(U, lat), u1_nd_plaquettes(V, lat)
    fu, fv = layer.invariant_features(PU), layer.invariant_features(PV)
    torch.testing.assert_close(fu, fv, rtol=0, atol=1e-12)
    m = u1_nd_plaquette_masks(lat, layer.mu, layer.nu, layer.parity)
    still = m["links"].to(torch.bool).logical_not().expand(U.shape)
    assert torch.equal(V[still], U[still])                     # non-active links passed through bit-exactly
    frozen = m["frozen"].to(torch.bool).expand(PU.shape)
    assert _angle_diff(PV[frozen], PU[frozen]) < 1e-12
    # negative control: the passive plaquettes do change, so they could not enter the context
    passive = m["passive"].to(torch.bool).expand(PU.shape)
    assert _angle_diff(PV[passive], PU[passive]) > 1e-3


# -- log-det, inverse, batch, equivariance ------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_logdet_and_inverse(case: tuple[Any, ...], device: str) -> None:
    lat, layer = _make(case)
    layer = layer.to(device)
    U = _field(lat, device=device)
    assert_logdet_matches(layer, U, group=lk.U1, context=_context(layer, U), check_inverse=True, msg=str(case))


@pytest.mark.parametrize("case", CASES, ids=IDS)
@torch.no_grad()
def test_logdet_is_not_trivial(case: tuple[Any, ...]) -> None:
    lat, layer = _make(case)
    U = _field(lat)
    V, ld = layer(U, context=_context(layer, U))
    assert _angle_diff(V, U) > 1e-3
    assert float(ld.abs().min()) > 1e-4


@pytest.mark.parametrize("case", CASES[::3], ids=IDS[::3])
@torch.no_grad()
def test_batch_axes(case: tuple[Any, ...]) -> None:
    lat, layer = _make(case, seed=2)
    U = _field(lat, batch=(2, 3))
    ctx = _context(layer, U)
    V, ld = layer(U, context=ctx)
    assert V.shape == U.shape and ld.shape == (2, 3)
    nd = lat.nd
    flat_ctx = None if ctx is None else ctx.reshape((6,) + ctx.shape[2:])
    V2, ld2 = layer(U.reshape((6,) + U.shape[2:]), context=flat_ctx)
    torch.testing.assert_close(V.reshape(V2.shape), V2)
    torch.testing.assert_close(ld.reshape(6), ld2)
    assert V2.shape[-nd - 1:] == (nd,) + lat.shape


# bigger lattices for the symmetry tests: (shape, mu, nu, parity)
SYM = [((4, 4), 1, 0, 0), ((4, 4, 4), 0, 2, 1), ((4, 4, 4), 2, 1, 0), ((4, 4, 4, 4), 1, 3, 0),
       ((4, 4, 4, 4), 3, 0, 1)]
SYM_IDS = [f"{len(s)}d-mu{m}nu{n}p{p}" for s, m, n, p in SYM]


def _sym_layer(case: tuple[Any, ...], seed: int) -> tuple[lk.Lattice, U1NdPlaquetteCoupling]:
    return _make(case + ({"context_channels": 0},), seed=seed)


@pytest.mark.parametrize("case", SYM, ids=SYM_IDS)
@torch.no_grad()
def test_gauge_equivariance(case: tuple[Any, ...], device: str) -> None:
    lat, layer = _sym_layer(case, 6)
    layer = layer.to(device)
    U = _field(lat, seed=5, device=device)
    err = gauge_equivariance_error(layer, U, lk.U1, lat, lk.backends.rng(7, backend="torch", device=device))
    assert err < 1e-10
    err_inv = gauge_equivariance_error(layer.inverse, U, lk.U1, lat, lk.backends.rng(8, backend="torch", device=device))
    assert err_inv < 1e-10


def _shifts(nd: int, mu: int) -> list[list[tuple[int, int]]]:
    """Mask-preserving translations, each a list of (direction, step)."""
    orth = [r for r in range(nd) if r != mu]
    out = [[(mu, 1)]] + [[(r, 2)] for r in orth]
    out += [[(a, 1), (b, 1)] for a, b in itertools.combinations(orth, 2)]
    return out


@pytest.mark.parametrize("case", SYM, ids=SYM_IDS)
@torch.no_grad()
def test_translation_equivariance(case: tuple[Any, ...], device: str) -> None:
    lat, layer = _sym_layer(case, 4)
    layer = layer.to(device)
    U = _field(lat, seed=3, device=device)
    V, ld = layer(U)
    mu = layer.mu
    for moves in _shifts(lat.nd, mu):
        def T(f: torch.Tensor) -> torch.Tensor:
            for d, s in moves:
                f = lat.shift(f, d, s)
            return f

        Vt, ldt = layer(T(U))
        assert _angle_diff(Vt, T(V)) < 1e-10, moves
        torch.testing.assert_close(ldt, ld)
    # negative control: one step along one orthogonal direction exchanges the parities
    rho = (mu + 1) % lat.nd
    Vt, _ = layer(lat.shift(U, rho, 1))
    assert _angle_diff(Vt, lat.shift(V, rho, 1)) > 1e-3


# -- stacks, identity start, training -------------------------------------------------------------------

def test_stack_4d_roundtrip_and_logdet() -> None:
    lat = lk.Lattice((2, 2, 2, 2))
    flow = _randomize(u1_nd_gauge_flow(lat, bins=3, hidden=(2,)), 3, scale=0.2)
    combos = [(l.mu, l.nu, l.parity) for l in flow.layers]
    assert len(combos) == 4 * 3 * 2 and len(set(combos)) == len(combos)
    # every block of 2 Nd layers updates every link once
    for k in range(3):
        block = combos[8 * k:8 * (k + 1)]
        assert sorted((m, p) for m, _, p in block) == sorted(itertools.product(range(4), (0, 1)))
    U = _field(lat, seed=11)
    assert_logdet_matches(flow, U, group=lk.U1, check_inverse=True, msg="u1_nd_gauge_flow 4d")


def test_stack_3d_repeats_cycle_and_zero_init_is_identity() -> None:
    lat = lk.Lattice((2, 2, 4))
    flow = u1_nd_gauge_flow(lat, 15, bins=3, hidden=(2,), zero_init=True).to(torch.float64)
    assert [(l.mu, l.nu, l.parity) for l in flow.layers][12:] == [(l.mu, l.nu, l.parity) for l in flow.layers][:3]
    U = _field(lat, seed=12)
    with torch.no_grad():
        V, ld = flow(U)
    assert _angle_diff(V, U) < 1e-12
    assert float(ld.abs().max()) < 1e-12


def test_training_3d_lowers_reverse_kl() -> None:
    lat = lk.Lattice((2, 4, 4))
    model = Model(HaarPrior(lk.U1, lat), u1_nd_gauge_flow(lat, 6, bins=4, hidden=(4,)))
    tr = Trainer(model, WilsonGaugeAction(lk.U1, lat, beta=1.0),
                 TrainConfig(steps=30, batch_size=32, lr=1e-2, seed=3, eval_batch_size=512))
    before = tr.evaluate()
    tr.train()
    after = tr.evaluate()
    assert after["eval_loss"] < before["eval_loss"] - 0.5, (before, after)


# -- errors ------------------------------------------------------------------------------------------------

def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="lattice"):
        U1NdPlaquetteCoupling((4, 4), 0, 1, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        U1NdPlaquetteCoupling(lk.Lattice((4,)), 0, 0, 0)
    with pytest.raises(ValueError, match=r"Lattice.*L_2 = 3 \(axis 2\)"):
        U1NdPlaquetteCoupling(lk.Lattice((4, 4, 3)), 0, 1, 0)
    U1NdPlaquetteCoupling(lk.Lattice((3, 4, 2)), 0, 1, 0)       # L_mu may be odd
    with pytest.raises(ValueError, match="mu=3"):
        U1NdPlaquetteCoupling(lk.Lattice((2, 2, 2)), 3, 1, 0)
    with pytest.raises(ValueError, match="nu=-1"):
        U1NdPlaquetteCoupling(lk.Lattice((2, 2, 2)), 0, -1, 0)
    with pytest.raises(ValueError, match="different directions"):
        U1NdPlaquetteCoupling(lk.Lattice((2, 2, 2)), 1, 1, 0)
    with pytest.raises(ValueError, match="parity=2"):
        U1NdPlaquetteCoupling(lk.Lattice((2, 2, 2)), 0, 1, 2)
    with pytest.raises(ValueError, match="bins"):
        U1NdPlaquetteCoupling(lk.Lattice((2, 2, 2)), 0, 1, 0, bins=0)
    with pytest.raises(ValueError, match="n_layers"):
        u1_nd_gauge_flow(lk.Lattice((2, 2)), 0)
    lat = lk.Lattice((2, 2, 2))
    layer = U1NdPlaquetteCoupling(lat, 0, 1, 0, hidden=(2,))
    with pytest.raises(lk.LatticeMismatchError):
        layer(torch.zeros(2, 3, 2, 2, 4))
    with pytest.raises(lk.LatticeMismatchError):
        layer(torch.zeros(2, 2, 2, 2, 2))                      # Nd axis of length 2, not 3
    with pytest.raises(TypeError, match="complex"):
        layer(torch.zeros(2, 3, 2, 2, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="batch axis"):
        layer(torch.zeros(3, 2, 2, 2))
    with pytest.raises(ValueError, match="context"):
        layer(torch.zeros(2, 3, 2, 2, 2), context=torch.zeros(2, 1, 2, 2, 2))
    with pytest.raises(ValueError, match="context"):
        U1NdPlaquetteCoupling(lat, 0, 1, 0, hidden=(2,), context_channels=1)(torch.zeros(2, 3, 2, 2, 2))
