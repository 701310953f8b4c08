"""Rational-quadratic splines: round trips, derivatives, boundaries, circular continuity, normalisation."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latticekit.flows import circular_rq_spline, rq_spline, rq_spline_knots, rq_spline_on_knots
from latticekit.testing import assert_close

F64 = torch.float64
TWO_PI = 2 * math.pi


def _params(seed: int, shape: tuple[int, ...], K: int, nd: int, scale: float = 1.5) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return tuple(scale * torch.randn(shape + (n,), generator=g, dtype=F64) for n in (K, K, nd))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(2, 9), bound=st.floats(0.5, 4.0))
def test_interval_round_trip_and_logdet(seed: int, K: int, bound: float) -> None:
    g = torch.Generator().manual_seed(seed + 1)
    x = 2.5 * bound * (2 * torch.rand(50, generator=g, dtype=F64) - 1)      # inside and outside
    w, h, d = _params(seed, (50,), K, K - 1)
    y, ld = rq_spline(x, w, h, d, bound=bound)
    xb, ldi = rq_spline(y, w, h, d, bound=bound, inverse=True)
    assert_close(xb, x, rtol=1e-9, atol=1e-9, check_dtype=True)
    assert_close(ldi, -ld, rtol=1e-8, atol=1e-8, check_dtype=True)
    outside = x.abs() > bound
    assert torch.equal(y[outside], x[outside]) and bool((ld[outside] == 0).all())
    assert bool((y[~outside].abs() <= bound + 1e-12).all())


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 9))
def test_circular_round_trip(seed: int, K: int) -> None:
    g = torch.Generator().manual_seed(seed + 1)
    th = TWO_PI * torch.rand(40, generator=g, dtype=F64)
    w, h, d = _params(seed, (40,), K, K)
    y, ld = circular_rq_spline(th, w, h, d)
    xb, ldi = circular_rq_spline(y, w, h, d, inverse=True)
    assert_close(xb, th, rtol=0, atol=1e-9, check_dtype=True)
    assert_close(ldi, -ld, rtol=1e-8, atol=1e-8, check_dtype=True)
    assert bool(((y >= 0) & (y <= TWO_PI)).all())


def test_logdet_is_autograd_derivative() -> None:
    w, h, d = _params(3, (30,), 6, 5)
    x = torch.linspace(-2.5, 2.5, 30, dtype=F64, requires_grad=True)
    y, ld = rq_spline(x, w, h, d, bound=2.0)
    (g,) = torch.autograd.grad(y.sum(), x)
    assert_close(torch.log(g), ld, rtol=1e-7, atol=1e-7, check_dtype=True)
    wc, hc, dc = _params(4, (30,), 6, 6)
    th = torch.linspace(0.01, TWO_PI - 0.01, 30, dtype=F64, requires_grad=True)
    y, ld = circular_rq_spline(th, wc, hc, dc)
    (g,) = torch.autograd.grad(y.sum(), th)
    assert_close(torch.log(g), ld, rtol=1e-7, atol=1e-7, check_dtype=True)


def test_monotone() -> None:
    w, h, d = _params(5, (), 7, 6)
    x = torch.linspace(-3, 3, 2001, dtype=F64)
    y, _ = rq_spline(x, w, h, d, bound=2.0)
    assert bool((torch.diff(y) > 0).all())


def test_zero_parameters_give_identity() -> None:
    z = torch.zeros(5, 4, dtype=F64)
    x = torch.linspace(-3, 3, 5, dtype=F64)
    y, ld = rq_spline(x, z, z, z[:, :3], bound=2.0)
    assert_close(y, x, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(ld, torch.zeros_like(ld), rtol=1e-7, atol=1e-7, check_dtype=True)
    th = torch.linspace(0, 6, 5, dtype=F64)
    y, ld = circular_rq_spline(th, z, z, z)
    assert_close(y, th, rtol=1e-7, atol=1e-7, check_dtype=True)


def test_knots_are_exact_at_the_ends() -> None:
    w, h, d = _params(6, (), 8, 9)
    xk, yk, dk = rq_spline_knots(w, h, d, left=-1.0, right=2.0, bottom=0.0, top=5.0)
    assert float(xk[0]) == -1.0 and float(xk[-1]) == 2.0 and float(yk[0]) == 0.0 and float(yk[-1]) == 5.0
    assert bool((torch.diff(xk) > 0).all() and (dk > 0).all())
    y, _ = rq_spline_on_knots(xk, xk, yk, dk)          # knots map onto knots
    assert_close(y, yk, rtol=1e-7, atol=1e-7, check_dtype=True)


def test_circular_spline_is_smooth_on_the_circle() -> None:
    w, h, d = _params(7, (), 6, 6)
    eps = 1e-7
    th = torch.tensor([0.0, TWO_PI - eps, eps], dtype=F64)
    y, ld = circular_rq_spline(th, w, h, d)
    assert_close(y[0], 0.0, rtol=0, atol=1e-12)  # 0 -> 0
    assert_close(float(y[1]), TWO_PI, rtol=0, atol=1e-5)  # 2 pi -> 2 pi
    assert_close(float(ld[1]), float(ld[2]), rtol=0, atol=1e-4)  # g'(2 pi^-) = g'(0^+)
    # theta and theta + 2 pi are the same point
    y2, _ = circular_rq_spline(th[2:] + TWO_PI, w, h, d)
    assert_close(y2, y[2:], rtol=1e-7, atol=1e-7, check_dtype=True)


def test_gradients_finite_at_and_beyond_boundaries() -> None:
    w, h, d = (t.requires_grad_() for t in _params(8, (6,), 5, 4))
    x = torch.tensor([-2.0, 2.0, -1e6, 1e6, 0.0, 1.999999999], dtype=F64, requires_grad=True)
    for inverse in (False, True):
        y, ld = rq_spline(x, w, h, d, bound=2.0, inverse=inverse)
        grads = torch.autograd.grad((y.sum() + ld.sum()), [x, w, h, d])
        assert all(bool(torch.isfinite(g).all()) for g in grads)
    wc, hc, dc = (t.requires_grad_() for t in _params(9, (4,), 5, 5))
    th = torch.tensor([0.0, TWO_PI, -1e-300, 1e3], dtype=F64, requires_grad=True)
    for inverse in (False, True):
        y, ld = circular_rq_spline(th, wc, hc, dc, inverse=inverse)
        grads = torch.autograd.grad(y.sum() + ld.sum(), [th, wc, hc, dc])
        assert all(bool(torch.isfinite(g).all()) for g in grads)


def test_one_link_density_is_normalised() -> None:
    # q(theta) = r(g^{-1}(theta)) |d g^{-1}/d theta| with r = 1/(2 pi) (Haar); its integral is 1
    w, h, d = _params(10, (), 7, 7, scale=2.0)
    n = 200_001
    th = torch.linspace(0, TWO_PI, n, dtype=F64)
    _, ldi = circular_rq_spline(th, w, h, d, inverse=True)
    q = torch.exp(ldi) / TWO_PI
    integral = float(torch.trapezoid(q, th))
    assert_close(integral, 1.0, rtol=0, atol=1e-4)  # trapezoid error of a sharply peaked density
    # and the density is genuinely non-uniform
    assert float(q.max() / q.min()) > 2.0


@pytest.mark.parametrize("inverse", [False, True])
def test_on_knots_equal_shapes_and_broadcast_paths_agree(inverse: bool) -> None:
    """rq_spline_on_knots skips torch.broadcast_shapes when the knots already have the shape of x; knots
    with a broadcast axis take the broadcasting path. Both give the same values bit for bit."""
    g = torch.Generator().manual_seed(5)
    w, h, d = (torch.randn(1, 6, n, generator=g, dtype=torch.float64) for n in (4, 4, 5))
    xk, yk, dk = rq_spline_knots(w, h, d, left=-2.0, right=2.0)
    x = 4 * torch.rand(3, 6, generator=g, dtype=torch.float64) - 2
    y_b, ld_b = rq_spline_on_knots(x, xk, yk, dk, inverse=inverse)                  # broadcast (1, 6) -> (3, 6)
    y_e, ld_e = rq_spline_on_knots(x, *(t.expand(3, 6, 5).contiguous() for t in (xk, yk, dk)), inverse=inverse)
    assert torch.equal(y_b, y_e) and torch.equal(ld_b, ld_e)
    with pytest.raises(RuntimeError):
        rq_spline_on_knots(x, xk[:, :5], yk[:, :5], dk[:, :5])


def test_bad_shapes() -> None:
    z = torch.zeros(3, 4, dtype=F64)
    with pytest.raises(ValueError, match="raw_derivatives"):
        rq_spline(torch.zeros(3, dtype=F64), z, z, z, bound=1.0)
    with pytest.raises(ValueError, match="raw_derivatives"):
        circular_rq_spline(torch.zeros(3, dtype=F64), z, z, z[:, :3])
    with pytest.raises(ValueError, match="tails"):
        rq_spline(torch.zeros(3, dtype=F64), z, z, z[:, :3], tails="quadratic")
    with pytest.raises(ValueError, match="bound"):
        rq_spline(torch.zeros(3, dtype=F64), z, z, z[:, :3], bound=-1.0)


def test_compile_splines_matches_eager() -> None:
    """``compile_splines`` switches every spline layer to one shared compiled function; the map and
    log-det agree with the eager evaluation up to rounding, and ``enabled=False`` switches back."""
    import latticekit as lk
    from latticekit.flows import compile_splines, u1_gauge_flow
    from latticekit.testing import randomize_parameters

    lat = lk.Lattice((4, 4))
    flow = randomize_parameters(u1_gauge_flow(lat, n_layers=2, hidden=(4,)), 0)
    U = lk.U1.random(lk.backends.rng(1, backend="torch"), (3, 2), lat.shape)
    y0, ld0 = flow(U)
    assert compile_splines(flow) == 2
    assert flow.layers[0]._spline is flow.layers[1]._spline is not circular_rq_spline
    y1, ld1 = flow(U)
    assert_close(y1, y0, rtol=1e-5, atol=1e-12)
    assert_close(ld1, ld0, rtol=1e-5, atol=1e-12)
    assert compile_splines(flow, enabled=False) == 2 and flow.layers[0]._spline is circular_rq_spline
    with pytest.raises(TypeError, match="module"):
        compile_splines(circular_rq_spline)  # type: ignore[arg-type]


@pytest.mark.parametrize("inverse", [False, True])
def test_autograd_derivative_at_the_domain_edges_is_the_analytic_one(inverse: bool) -> None:
    """At x exactly on a domain edge (theta = 0 of the circular spline, x = +-bound of the bounded one) autograd's
    dh/dx was half the analytic value (the clamp split its gradient with the bound), so ``autograd_logdet`` of a
    U(1) layer on a cold field disagreed with the layer's exact log-det (user probe)."""
    g = torch.Generator().manual_seed(1)
    raw = [torch.randn(3, 8, dtype=torch.float64, generator=g) for _ in range(3)]
    for x0 in (0.0, 1e-9, 2.0 * math.pi - 1e-9, 1.0):
        x = torch.full((3,), x0, dtype=torch.float64, requires_grad=True)
        y, ld = circular_rq_spline(x, *raw, inverse=inverse)
        (gr,) = torch.autograd.grad(y.sum(), x)
        assert_close(gr.log(), ld.detach(), rtol=0, atol=1e-9)
    rd = torch.randn(3, 7, dtype=torch.float64, generator=g)   # linear tails: K - 1 interior derivatives
    for x0 in (-3.0, 3.0, -2.5, 0.3):
        x = torch.full((3,), x0, dtype=torch.float64, requires_grad=True)
        y, ld = rq_spline(x, raw[0], raw[1], rd, bound=3.0, inverse=inverse)
        (gr,) = torch.autograd.grad(y.sum(), x)
        assert_close(gr.log(), ld.detach(), rtol=0, atol=1e-9)
