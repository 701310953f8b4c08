"""The SU(N) spectral kernel (Boyda et al. 2021): conjugation-equivariant maps from flows on the canonical cell.

One-link log-dets (SU(2), SU(3), SU(4)) against autograd, conjugation equivariance, kept eigenvectors,
zero init, the canonical cell, normalisation of q by quadrature with the Weyl density (SU(2) and
SU(3)), and a one-link training run. (The coupling layers built on the kernel: test_gauge_couplings.py.)
"""

from __future__ import annotations

import math

import pytest
import torch

import latticekit as lk
from latticekit.flows import (
    HaarPrior,
    Model,
    SUSpectralKernel,
    TrainConfig,
    Trainer,
    canonical_cell_flow,
    su_canonical_angles,
    weyl_log_density,
)
from latticekit.testing import assert_close, assert_logdet_matches, randomize_parameters

F64 = torch.float64


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    torch.manual_seed(1234)


_randomize = randomize_parameters  # seeded perturbation, then float64


def _trng(seed: int, device: str = "cpu") -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


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
    assert_close(Yx, G.mul(X, G.mul_adj(Y, X, nd=1), nd=1), rtol=0, atol=1e-10, check_dtype=True)
    assert_close(ldx, ld, rtol=1e-7, atol=1e-7, check_dtype=True)
    # eigenvectors are kept: h(W) commutes with W; h really changes W and stays in SU(N)
    comm = G.mul(Y, W, nd=1) - G.mul(W, Y, nd=1)
    assert_close(comm, 0.0, rtol=0, atol=1e-10)
    assert float((Y - W).abs().max()) > 1e-2
    assert_close(G.defect(Y, nd=1), 0.0, rtol=0, atol=1e-12)


def test_kernel_zero_init_is_identity() -> None:
    for N in (2, 3):
        G = lk.SU(N)
        h = SUSpectralKernel(G, bins=4, features=2, zero_init=True).to(F64)
        W = G.random(_trng(0), (4,))
        Y, ld = h(W, context=torch.randn(4, 2, dtype=F64))
        assert_close(Y, W, rtol=1e-7, atol=1e-7, check_dtype=True)
        assert_close(ld, torch.zeros(4, dtype=F64), rtol=0, atol=1e-10, check_dtype=True)


def test_canonical_cell() -> None:
    N = 4
    G = lk.SU(N)
    W = G.random(_trng(2), (50,))
    phi, _ = G.eig(W, nd=0)
    theta, idx = su_canonical_angles(phi)
    assert bool((theta[..., :-1] >= theta[..., 1:]).all())
    assert bool((theta[..., 0] - theta[..., -1] <= 2 * math.pi).all())
    assert_close(theta.sum(-1), torch.zeros(50, dtype=F64), rtol=0, atol=1e-12, check_dtype=True)
    d = theta - torch.gather(phi, -1, idx)
    assert_close(torch.cos(d), torch.ones_like(d), rtol=1e-7, atol=1e-7, check_dtype=True)
    # the class is independent of the order of the eigen-angles
    perm = torch.randperm(N)
    assert_close(su_canonical_angles(phi[..., perm])[0], theta, rtol=1e-7, atol=1e-7, check_dtype=True)
    # Weyl density of SU(2): |e^{it} - e^{-it}|^2 = 4 sin^2 t
    t = torch.tensor([0.3, 1.2], dtype=F64)
    assert_close(weyl_log_density(torch.stack([t, -t], -1)), torch.log(4 * torch.sin(t) ** 2),
                 rtol=1e-7, atol=1e-7, check_dtype=True)


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
    assert_close(integral, 1.0, rtol=0, atol=1e-5)


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
    assert_close(integral, 1.0, rtol=0, atol=1e-3)


def test_canonical_cell_flow_identity_and_bad_params() -> None:
    th = torch.tensor([[1.0, 0.2, -1.2]], dtype=F64)
    out, ld = canonical_cell_flow(th, lambda k, u: torch.zeros(u.shape[:-1] + (10,), dtype=F64))
    assert_close(out, th, rtol=1e-7, atol=1e-7, check_dtype=True)
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


# -- errors ----------------------------------------------------------------------------------------
def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="features"):
        SUSpectralKernel(lk.SU(2), features=2).to(F64)(lk.SU(2).random(_trng(0), (3,)))
    with pytest.raises(TypeError, match="SU\\(N\\)"):
        SUSpectralKernel(lk.U1)


def test_su2_layer_keeps_links_finite_at_plus_minus_one() -> None:
    """At W = +-1 the SU(2) closed form divides 0 by 0 (sin(t')/s with s = 0): a cold field came out with NaN links
    (user probe). The end points are fixed points of the cell flow, so W' = W there; the links stay finite and the
    gradient of a loss of the links is finite too (the log-det there is documented as non-finite: start flows
    from Haar samples)."""
    from latticekit.flows import sun_gauge_flow

    lat = lk.Lattice((4, 4))
    torch.manual_seed(0)
    flow = sun_gauge_flow(lk.SU(2), lat, 1, hidden=(4,)).to(torch.float64)
    randomize_parameters(flow, scale=0.1, seed=1)
    cold = torch.as_tensor(lk.SU(2).identity((1, 2), lat.shape)).to(torch.complex128)
    V, _ = flow(cold)
    assert bool(torch.isfinite(torch.view_as_real(V)).all())
    assert_close(V, cold, atol=1e-15, rtol=0)        # plaquettes equal 1 stay 1: every link unchanged
    loss = torch.view_as_real(V).sum()
    loss.backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in flow.parameters() if p.grad is not None)
