"""Every scalar flow layer in the catalogue enters every property test (DESIGN.md, flow layer contract).

Properties: inverse round trip and log-det against an autograd Jacobian on a tiny lattice; batch
handling; translation equivariance under mask-preserving shifts; float32 execution. The gauge layers
(U(1) and SU(N) on every mask) have the same catalogue with gauge equivariance in
test_gauge_couplings.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import pytest
import torch

import latticekit as lk
from latticekit.flows import AffineCoupling, Flow, InverseFlow, SplineCoupling, scalar_coupling_flow
from latticekit.testing import assert_close, assert_logdet_matches, randomize_parameters


@pytest.fixture(autouse=True)
def _float32_default():
    # the layers of this module are built in float32 (the default dtype); set here, not at import, and
    # restored, so that no other test module runs with a default this module chose
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    # layer constructors draw their initial weights from torch's global generator
    torch.manual_seed(1234)

@dataclass
class Entry:
    name: str
    make: Callable[[lk.Lattice], torch.nn.Module]
    kind: str                      # "scalar"
    tiny: tuple[int, ...]          # lattice for the Jacobian
    big: tuple[int, ...]           # lattice for translations
    shifts: list[tuple[int, int]]  # (direction, step) preserving the masks
    context_channels: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


_randomize = randomize_parameters  # seeded perturbation, then float64


CATALOGUE = [
    Entry("affine-2d-even", lambda lat: AffineCoupling(lat, 0, hidden=(4,)), "scalar", (4, 4), (6, 6),
          [(0, 2), (1, 2)]),
    Entry("affine-2d-odd-notanh", lambda lat: AffineCoupling(lat, 1, hidden=(4, 4), tanh_scale=False), "scalar",
          (2, 4), (4, 6), [(0, 2), (1, 2)]),
    Entry("affine-1d", lambda lat: AffineCoupling(lat, 1, hidden=(3,)), "scalar", (6,), (8,), [(0, 2)]),
    Entry("affine-3d", lambda lat: AffineCoupling(lat, 0, hidden=(3,)), "scalar", (2, 2, 2), (4, 4, 2),
          [(0, 2), (1, 2), (2, 2)]),
    Entry("affine-context", lambda lat: AffineCoupling(lat, 0, hidden=(4,), context_channels=2), "scalar", (4, 4),
          (6, 6), [(0, 2), (1, 2)], context_channels=2),
    Entry("spline-2d", lambda lat: SplineCoupling(lat, 1, bins=5, bound=1.5, hidden=(4,)), "scalar", (4, 4),
          (6, 6), [(0, 2), (1, 2)]),
    Entry("spline-context", lambda lat: SplineCoupling(lat, 0, bins=4, bound=2.0, hidden=(4,), context_channels=1),
          "scalar", (2, 2), (4, 4), [(0, 2), (1, 2)], context_channels=1),
    Entry("scalar-stack", lambda lat: scalar_coupling_flow(lat, 3, "spline", bins=4, bound=2.0, hidden=(3,)),
          "scalar", (2, 2), (4, 4), [(0, 2), (1, 2)]),
    Entry("inverse-affine", lambda lat: InverseFlow(AffineCoupling(lat, 1, hidden=(4,))), "scalar", (4, 4), (6, 6),
          [(0, 2), (1, 2)]),
    # 4D scalar couplings: the CNN uses separable blocks (one periodic 1D conv per axis)
    Entry("affine-4d", lambda lat: AffineCoupling(lat, 0, hidden=(3,)), "scalar", (2, 2, 2, 2), (4, 4, 2, 2),
          [(0, 2), (1, 2), (2, 2), (3, 2)]),
    Entry("spline-4d", lambda lat: SplineCoupling(lat, 1, bins=4, bound=2.0, hidden=(3,)), "scalar", (2, 2, 2, 2),
          (2, 4, 2, 4), [(0, 2), (1, 2), (2, 2), (3, 2)]),
]


@pytest.fixture(params=CATALOGUE, ids=[e.name for e in CATALOGUE])
def entry(request: Any) -> Entry:
    return request.param


def _inputs(e: Entry, shape: tuple[int, ...], batch: tuple[int, ...] = (2,), seed: int = 0,
            device: str = "cpu") -> tuple[lk.Lattice, torch.Tensor, torch.Tensor | None]:
    lat = lk.Lattice(shape)
    rng = lk.backends.rng(seed, backend="torch", device=device)
    x = 1.5 * rng.normal(batch + lat.shape)
    ctx = rng.normal(batch + (e.context_channels,) + lat.shape) if e.context_channels else None
    return lat, x, ctx


def test_logdet_and_inverse(entry: Entry, device: str) -> None:
    lat, x, ctx = _inputs(entry, entry.tiny, device=device)
    layer = _randomize(entry.make(lat), 1).to(device)
    assert_logdet_matches(layer, x, context=ctx, check_inverse=True, msg=entry.name)


def test_logdet_is_not_trivial(entry: Entry) -> None:
    # the layers under test really transform (otherwise the other properties would be vacuous)
    lat, x, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1)
    with torch.no_grad():
        y, ld = layer(x, context=ctx)
    assert float((y - x).abs().max()) > 1e-3
    assert float(ld.abs().max()) > 1e-4


@torch.no_grad()
def test_batch_axes(entry: Entry) -> None:
    lat, x, ctx = _inputs(entry, entry.tiny, batch=(2, 3))
    layer = _randomize(entry.make(lat), 2)
    y, ld = layer(x, context=ctx)
    assert y.shape == x.shape and ld.shape == (2, 3)
    flat_ctx = None if ctx is None else ctx.reshape((6,) + ctx.shape[2:])
    y2, ld2 = layer(x.reshape((6,) + x.shape[2:]), context=flat_ctx)
    assert_close(y.reshape(y2.shape), y2, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(ld.reshape(6), ld2, rtol=1e-7, atol=1e-7, check_dtype=True)


@torch.no_grad()
def test_translation_equivariance(entry: Entry, device: str) -> None:
    lat, x, ctx = _inputs(entry, entry.big, seed=3, device=device)
    layer = _randomize(entry.make(lat), 4).to(device)
    y, ld = layer(x, context=ctx)
    for mu, step in entry.shifts:
        def T(f: torch.Tensor) -> torch.Tensor:
            return lat.shift(f, mu, step)

        yt, ldt = layer(T(x), context=None if ctx is None else T(ctx))
        d = yt - T(y)
        assert_close(d, 0.0, rtol=0, atol=1e-10, msg=f"{entry.name} mu={mu} step={step}")
        assert_close(ldt, ld, rtol=1e-7, atol=1e-7, check_dtype=True)


@torch.no_grad()
def test_translation_by_one_breaks_checkerboard() -> None:
    # a shift that does not preserve the mask is NOT a symmetry: the test above can fail
    lat, x, _ = _inputs(CATALOGUE[0], (6, 6))
    layer = _randomize(AffineCoupling(lat, 0, hidden=(4,)), 4)
    y, _ = layer(x)
    yt, _ = layer(lat.shift(x, 0, 1))
    assert float((yt - lat.shift(y, 0, 1)).abs().max()) > 1e-3


@torch.no_grad()
def test_float32(entry: Entry) -> None:
    lat, x, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1).to(torch.float32)
    x32 = x.to(torch.float32)
    c32 = None if ctx is None else ctx.to(torch.float32)
    y, ld = layer(x32, context=c32)
    xb, ldi = layer.inverse(y, context=c32)
    assert y.dtype == torch.float32 and ld.dtype == torch.float32 and xb.dtype == torch.float32
    # round trip checked in the well-conditioned direction: randomised splines can be nearly flat
    # (g' ~ 1e-6), where x = g^{-1}(y) is ill-conditioned in float32 (the float64 test checks x)
    yb, _ = layer(xb, context=c32)
    d = yb - y
    assert_close(d, 0.0, rtol=0, atol=1e-4)
    assert_close(ldi, -layer(xb, context=c32)[1], rtol=1e-3, atol=1e-3, check_dtype=True)


@torch.no_grad()
def test_flow_composition_sums_logdets() -> None:
    lat = lk.Lattice((4, 4))
    a = _randomize(AffineCoupling(lat, 0, hidden=(4,)), 1)
    b = _randomize(SplineCoupling(lat, 1, bins=4, hidden=(4,)), 2)
    x = torch.randn(3, 4, 4, dtype=torch.float64)
    y1, l1 = a(x)
    y2, l2 = b(y1)
    y, ld = Flow([a, b])(x)
    assert_close(y, y2, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(ld, l1 + l2, rtol=1e-7, atol=1e-7, check_dtype=True)
    xb, ldi = Flow([a, b]).inverse(y)
    assert_close(xb, x, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(ldi, -ld, rtol=1e-7, atol=1e-7, check_dtype=True)


def test_bad_inputs() -> None:
    with pytest.raises(TypeError, match="layers"):
        Flow([torch.nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="parity"):
        AffineCoupling(lk.Lattice((4, 4)), 2)
    layer = AffineCoupling(lk.Lattice((4, 4)), 0)
    with pytest.raises(lk.LatticeMismatchError):
        layer(torch.zeros(2, 4, 6))
    with pytest.raises(ValueError, match="context"):
        layer(torch.zeros(2, 4, 4), context=torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="context"):
        AffineCoupling(lk.Lattice((4, 4)), 0, context_channels=1)(torch.zeros(2, 4, 4))
