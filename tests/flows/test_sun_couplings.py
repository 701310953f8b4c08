"""SU(N) spectral kernels and gauge-equivariant SU(N) coupling layers (Boyda et al. 2021).

Every layer of ``SU_CATALOGUE`` enters every property test (as the catalogue of test_layers.py):
log-det against the autograd Jacobian in algebra coordinates and inverse round trip, non-triviality,
batch axes, translation equivariance under mask-preserving shifts, gauge equivariance with
gauge-invariant log-det, float32. Kernel tests: one-link log-dets (SU(2), SU(3), SU(4)),
conjugation equivariance, kept eigenvectors, canonical cell, normalisation of q by quadrature with
the Weyl density (SU(2) and SU(3)). Training: one-link and 4x4 Wilson action lower the KL.
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
    SUSpectralKernel,
    TrainConfig,
    Trainer,
    canonical_cell_flow,
    reverse_kl_loss,
    su_canonical_angles,
    sun_gauge_flow,
    weyl_log_density,
)
from latticekit.testing import assert_logdet_matches, gauge_equivariance_error, randomize_parameters

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)


_randomize = randomize_parameters  # seeded perturbation, then float64


def _trng(seed: int, device: str = "cpu") -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


@dataclass
class Entry:
    name: str
    N: int
    make: Callable[[lk.Lattice], torch.nn.Module]
    tiny: tuple[int, int]           # lattice of the Jacobian test
    big: tuple[int, int]            # lattice of the translation / gauge tests
    shifts: list[tuple[int, int]]   # (direction, step) preserving the masks
    context_channels: int = 0


def _coupling(N: int, mu: int, off: int, **kw: Any) -> Callable[[lk.Lattice], torch.nn.Module]:
    return lambda lat: SUPlaquetteCoupling(lk.SU(N), lat, mu, off, bins=4, hidden=(4,), embed=4, head_hidden=(6,),
                                           **kw)


SU_CATALOGUE = [
    Entry("su2-plaq-mu0", 2, _coupling(2, 0, 1), (2, 4), (4, 8), [(0, 1), (1, 4)]),
    Entry("su2-plaq-mu1", 2, _coupling(2, 1, 2), (4, 2), (8, 4), [(1, 1), (0, 4)]),
    Entry("su2-staples", 2, _coupling(2, 1, 0, loop="staples", alpha=(1.0, 0.6)), (4, 2), (8, 4),
          [(1, 1), (0, 4)]),
    Entry("su3-plaq-mu0", 3, _coupling(3, 0, 3), (1, 4), (4, 4), [(0, 1), (1, 4)]),
    Entry("su3-staples", 3, _coupling(3, 1, 1, loop="staples", alpha=(0.8, 0.5)), (4, 1), (4, 4),
          [(1, 1), (0, 4)]),
    Entry("su3-plaquettes-only", 3, _coupling(3, 1, 2, rectangle_context=False), (4, 1), (4, 4),
          [(1, 1), (0, 4)]),
    Entry("su3-context", 3, _coupling(3, 0, 0, context_channels=1), (1, 4), (4, 4), [(0, 1), (1, 4)],
          context_channels=1),
    Entry("su2-stack", 2, lambda lat: sun_gauge_flow(lk.SU(2), lat, 2, bins=3, hidden=(3,), embed=3,
                                                      head_hidden=(4,)), (4, 4), (4, 8), [(0, 4), (1, 4)]),
]


@pytest.fixture(params=SU_CATALOGUE, ids=[e.name for e in SU_CATALOGUE])
def entry(request: Any) -> Entry:
    return request.param


def _inputs(e: Entry, shape: tuple[int, int], batch: tuple[int, ...] = (2,), seed: int = 0,
            device: str = "cpu") -> tuple[lk.Lattice, torch.Tensor, torch.Tensor | None]:
    lat = lk.Lattice(shape)
    rng = _trng(seed, device)
    U = lk.SU(e.N).random(rng, batch + (2,), lat.shape)
    ctx = rng.normal(batch + (e.context_channels,) + lat.shape) if e.context_channels else None
    return lat, U, ctx


# -- catalogue properties ------------------------------------------------------------------------
def test_logdet_and_inverse(entry: Entry, device: str) -> None:
    # batch 2 also checks that batch elements do not mix; keep the Jacobians small (vmap is slow)
    small = entry.N == 2 and math.prod(entry.tiny) <= 8
    lat, U, ctx = _inputs(entry, entry.tiny, batch=(2,) if small else (1,), device=device)
    layer = _randomize(entry.make(lat), 1).to(device)
    assert_logdet_matches(layer, U, group=lk.SU(entry.N), nd=2, context=ctx, check_inverse=True, msg=entry.name)


@torch.no_grad()
def test_logdet_is_not_trivial(entry: Entry) -> None:
    lat, U, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1)
    V, ld = layer(U, context=ctx)
    assert float((V - U).abs().max()) > 1e-3
    assert float(ld.abs().max()) > 1e-3
    assert float(lk.SU(entry.N).defect(V, nd=2).max()) < 1e-12


@torch.no_grad()
def test_batch_axes(entry: Entry) -> None:
    lat, U, ctx = _inputs(entry, entry.tiny, batch=(2, 3))
    layer = _randomize(entry.make(lat), 2)
    V, ld = layer(U, context=ctx)
    assert V.shape == U.shape and ld.shape == (2, 3)
    flat_ctx = None if ctx is None else ctx.reshape((6,) + ctx.shape[2:])
    V2, ld2 = layer(U.reshape((6,) + U.shape[2:]), context=flat_ctx)
    torch.testing.assert_close(V.reshape(V2.shape), V2)
    torch.testing.assert_close(ld.reshape(6), ld2)


@torch.no_grad()
def test_translation_equivariance(entry: Entry, device: str) -> None:
    lat, U, ctx = _inputs(entry, entry.big, seed=3, device=device)
    layer = _randomize(entry.make(lat), 4).to(device)
    V, ld = layer(U, context=ctx)
    for mu, step in entry.shifts:
        def T(f: torch.Tensor) -> torch.Tensor:
            return lat.shift(f, mu, step)

        Vt, ldt = layer(T(U), context=None if ctx is None else T(ctx))
        assert float((Vt - T(V)).abs().max()) < 1e-10, (entry.name, mu, step)
        torch.testing.assert_close(ldt, ld)


@torch.no_grad()
def test_gauge_equivariance(entry: Entry, device: str) -> None:
    lat, U, ctx = _inputs(entry, entry.big, seed=5, device=device)
    layer = _randomize(entry.make(lat), 6).to(device)
    G = lk.SU(entry.N)
    # also checks that the log-det is gauge invariant (second output)
    assert gauge_equivariance_error(layer, U, G, lat, _trng(7, device), context=ctx) < 1e-10
    assert gauge_equivariance_error(layer.inverse, U, G, lat, _trng(8, device), context=ctx) < 1e-10


@torch.no_grad()
def test_float32(entry: Entry) -> None:
    lat, U, ctx = _inputs(entry, entry.tiny)
    layer = _randomize(entry.make(lat), 1).to(torch.float32)
    U32 = U.to(torch.complex64)
    c32 = None if ctx is None else ctx.to(torch.float32)
    V, ld = layer(U32, context=c32)
    Ub, ldi = layer.inverse(V, context=c32)
    assert V.dtype == torch.complex64 and ld.dtype == torch.float32 and Ub.dtype == torch.complex64
    assert float((Ub - U32).abs().max()) < 1e-3
    torch.testing.assert_close(ldi, -ld, atol=1e-2, rtol=1e-3)


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


def test_non_equivariant_map_is_detected() -> None:
    lat, G = lk.Lattice((4, 4)), lk.SU(3)
    U = G.random(_trng(0), (1, 2), lat.shape)
    assert gauge_equivariance_error(lambda V: G.mul(V, V, nd=2), U, G, lat, _trng(1)) > 0.1


# -- the spectral kernel ---------------------------------------------------------------------------
@pytest.mark.parametrize("N", [2, 3, 4])
def test_kernel_logdet_one_link(N: int) -> None:
    G = lk.SU(N)
    h = _randomize(SUSpectralKernel(G, bins=5, features=2, hidden=(8,)), 3, scale=0.5)
    W = G.random(_trng(N), (3,))
    feats = torch.randn(3, 2, dtype=F64)
    assert_logdet_matches(h, W, group=G, nd=0, context=feats, check_inverse=True, msg=f"SU({N}) kernel")
    h0 = _randomize(SUSpectralKernel(G, bins=3), 4)          # no features: learnable spline parameters
    assert_logdet_matches(h0, W, group=G, nd=0, check_inverse=True, msg=f"SU({N}) kernel, no features")


@pytest.mark.parametrize("N", [2, 3, 4])
@torch.no_grad()
def test_kernel_conjugation_equivariance(N: int) -> None:
    G = lk.SU(N)
    h = _randomize(SUSpectralKernel(G, bins=4, features=1, nd=1), 5, scale=0.5)
    W = G.random(_trng(0), (2,), (5,))
    X = G.random(_trng(1), (2,), (5,))
    c = torch.randn(2, 1, 5, dtype=F64)
    Y, ld = h(W, context=c)
    Yx, ldx = h(G.mul(X, G.mul_adj(W, X, nd=1), nd=1), context=c)
    torch.testing.assert_close(Yx, G.mul(X, G.mul_adj(Y, X, nd=1), nd=1), atol=1e-10, rtol=0)
    torch.testing.assert_close(ldx, ld)
    # eigenvectors are kept: h(W) commutes with W; h really changes W and stays in SU(N)
    comm = G.mul(Y, W, nd=1) - G.mul(W, Y, nd=1)
    assert float(comm.abs().max()) < 1e-10
    assert float((Y - W).abs().max()) > 1e-2
    assert float(G.defect(Y, nd=1).max()) < 1e-12


def test_kernel_zero_init_is_identity() -> None:
    for N in (2, 3):
        G = lk.SU(N)
        h = SUSpectralKernel(G, bins=4, features=2, zero_init=True).to(F64)
        W = G.random(_trng(0), (4,))
        Y, ld = h(W, context=torch.randn(4, 2, dtype=F64))
        torch.testing.assert_close(Y, W)
        torch.testing.assert_close(ld, torch.zeros(4, dtype=F64), atol=1e-10, rtol=0)


def test_canonical_cell() -> None:
    N = 4
    G = lk.SU(N)
    W = G.random(_trng(2), (50,))
    phi, _ = G.eig(W, nd=0)
    theta, idx = su_canonical_angles(phi)
    assert bool((theta[..., :-1] >= theta[..., 1:]).all())
    assert bool((theta[..., 0] - theta[..., -1] <= 2 * math.pi).all())
    torch.testing.assert_close(theta.sum(-1), torch.zeros(50, dtype=F64), atol=1e-12, rtol=0)
    d = theta - torch.gather(phi, -1, idx)
    torch.testing.assert_close(torch.cos(d), torch.ones_like(d))
    # the class is independent of the order of the eigen-angles
    perm = torch.randperm(N)
    torch.testing.assert_close(su_canonical_angles(phi[..., perm])[0], theta)
    # Weyl density of SU(2): |e^{it} - e^{-it}|^2 = 4 sin^2 t
    t = torch.tensor([0.3, 1.2], dtype=F64)
    torch.testing.assert_close(weyl_log_density(torch.stack([t, -t], -1)), torch.log(4 * torch.sin(t) ** 2))


@torch.no_grad()
def test_normalisation_su2() -> None:
    # q(W) = exp(logdet of the inverse at W) for a Haar prior; int_0^pi (2/pi) sin^2 t q(t) dt = 1
    G = lk.SU(2)
    h = _randomize(SUSpectralKernel(G, bins=6), 11, scale=1.0)
    n = 4000
    t = (torch.arange(n, dtype=F64) + 0.5) * math.pi / n
    e = torch.polar(torch.ones_like(t), t)
    W = torch.zeros(n, 2, 2, dtype=torch.complex128)
    W[:, 0, 0], W[:, 1, 1] = e, e.conj()
    _, ld_inv = h.inverse(W)
    assert float(ld_inv.abs().max()) > 0.1
    integral = float(torch.sum((2 / math.pi) * torch.sin(t) ** 2 * ld_inv.exp()) * math.pi / n)
    assert abs(integral - 1.0) < 1e-5


@torch.no_grad()
def test_normalisation_su3() -> None:
    # Weyl: int_SU(3) f = (1/3!) int_{T^2} f J(theta) d theta_1 d theta_2 / (2 pi)^2
    G = lk.SU(3)
    # moderate parameters: with extreme knot derivatives the density is sharply peaked near the
    # centre elements (vertices of the cell) and the grid no longer resolves it
    h = _randomize(SUSpectralKernel(G, bins=5), 12, scale=0.3)
    n = 160
    a = (torch.arange(n, dtype=F64) + 0.5) * 2 * math.pi / n - math.pi
    t1, t2 = torch.meshgrid(a, a + 0.37 * 2 * math.pi / n, indexing="ij")
    th = torch.stack([t1.reshape(-1), t2.reshape(-1), -(t1 + t2).reshape(-1)], -1)
    W = torch.diag_embed(torch.polar(torch.ones_like(th), th))
    _, ld_inv = h.inverse(W)
    assert float(ld_inv.abs().max()) > 0.1
    integrand = torch.exp(weyl_log_density(th) + ld_inv)
    integral = float(integrand.sum() / (n * n)) / 6.0
    assert abs(integral - 1.0) < 1e-3


def test_canonical_cell_flow_identity_and_bad_params() -> None:
    th = torch.tensor([[1.0, 0.2, -1.2]], dtype=F64)
    out, ld = canonical_cell_flow(th, lambda k, u: torch.zeros(u.shape[:-1] + (10,), dtype=F64))
    torch.testing.assert_close(out, th)
    with pytest.raises(ValueError, match="3 K \\+ 1"):
        canonical_cell_flow(th, lambda k, u: torch.zeros(u.shape[:-1] + (9,), dtype=F64))


# -- training --------------------------------------------------------------------------------------
@pytest.mark.parametrize("N", [2, 3])
def test_training_one_link(N: int) -> None:
    # one SU(N) matrix with S(W) = -(beta/N) Re tr W: a class function, which a kernel can learn
    G, beta = lk.SU(N), 3.0
    model = Model(HaarPrior(G, lk.Lattice((1,))), SUSpectralKernel(G, bins=8, hidden=(16,), nd=1))

    def action(x: torch.Tensor) -> torch.Tensor:
        return -(beta / N) * G.re_trace(x, nd=1).sum(dim=(1, 2))

    tr = Trainer(model, action, TrainConfig(steps=30, batch_size=64, lr=3e-2, seed=3, dtype="float64",
                                            log_every=1000))
    before = tr.evaluate(1024)
    tr.train()
    after = tr.evaluate(1024)
    assert after["eval_loss"] < before["eval_loss"] - 0.2
    assert after["eval_ess"] > max(before["eval_ess"] + 0.2, 0.6)


def test_training_su2_wilson_4x4() -> None:
    lat, G = lk.Lattice((4, 4)), lk.SU(2)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 2, bins=4, hidden=(8,), embed=4, head_hidden=(8,)))
    S = WilsonGaugeAction(G, lat, beta=2.0)
    tr = Trainer(model, S, TrainConfig(steps=12, batch_size=16, lr=2e-2, seed=1, dtype="float64", log_every=1000))
    before = tr.evaluate(128)
    tr.train()
    assert tr.evaluate(128)["eval_loss"] < before["eval_loss"] - 1.0


def test_loss_uses_wilson_action() -> None:
    lat, G = lk.Lattice((4, 4)), lk.SU(3)
    model = Model(HaarPrior(G, lat), sun_gauge_flow(G, lat, 2, bins=3, hidden=(3,))).to(F64)
    S = WilsonGaugeAction(G, lat, beta=1.5)
    loss, lw = reverse_kl_loss(model, S, 4, _trng(0))
    x, log_q = model.sample(4, _trng(0))
    torch.testing.assert_close(loss, (log_q + S(x)).mean())


# -- errors ----------------------------------------------------------------------------------------
def test_bad_inputs() -> None:
    lat = lk.Lattice((4, 4))
    with pytest.raises(TypeError, match="SU\\(N\\)"):
        SUPlaquetteCoupling(lk.U1, lat, 0, 0)
    with pytest.raises(ValueError, match="2D"):
        SUPlaquetteCoupling(lk.SU(2), lk.Lattice((4, 4, 4)), 0, 0)
    with pytest.raises(ValueError, match="multiple of 4"):
        SUPlaquetteCoupling(lk.SU(2), lk.Lattice((4, 6)), 0, 0)
    with pytest.raises(ValueError, match="offset"):
        SUPlaquetteCoupling(lk.SU(2), lat, 0, 4)
    with pytest.raises(ValueError, match="loop"):
        SUPlaquetteCoupling(lk.SU(2), lat, 0, 0, loop="wilson")
    layer = SUPlaquetteCoupling(lk.SU(2), lat, 0, 0).to(F64)
    U = lk.SU(2).random(_trng(0), (1, 2), lat.shape)
    with pytest.raises(TypeError, match="complex"):
        layer(U.real)
    with pytest.raises(lk.LatticeMismatchError):
        layer(lk.SU(3).random(_trng(0), (1, 2), lat.shape))
    with pytest.raises(ValueError, match="batch axis"):
        layer(U[0])
    with pytest.raises(ValueError, match="context"):
        layer(U, context=torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="features"):
        SUSpectralKernel(lk.SU(2), features=2).to(F64)(lk.SU(2).random(_trng(0), (3,)))
    with pytest.raises(TypeError, match="SU\\(N\\)"):
        SUSpectralKernel(lk.U1)
