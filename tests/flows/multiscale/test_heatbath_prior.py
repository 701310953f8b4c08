"""The heatbath-like priors of staple-conditional models (arXiv:2404.10819 eq. 6): exact normalisation by
quadrature, Bessel ratios and CDFs against SciPy, the implicit-reparametrisation gradients against finite
differences of the exact inverse CDF, the law of the draws, and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special, stats

import latticekit as lk
from latticekit.flows.multiscale import (
    HaarLinkPrior,
    SU2HeatbathPrior,
    U1HeatbathPrior,
    bessel_ratios,
    heatbath_prior,
    su2_a0_cdf,
    von_mises_cdf,
)
from latticekit.testing import assert_close

F64 = torch.float64


def _trng(seed: int, device: str = "cpu") -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


def test_su2_quadrature_is_exact_for_haar_moments(su2_quadrature) -> None:
    U, w = su2_quadrature()
    assert_close(float(w.sum()), 1.0, rtol=0, atol=1e-12)
    tr = U[:, 0, 0] + U[:, 1, 1]
    # Haar: <|tr U|^2> = 1, <tr U> = 0, <|tr U|^4> = 2
    assert_close(float((w * tr.abs() ** 2).sum()), 1.0, rtol=0, atol=1e-12)
    assert_close(float((w * tr.real).sum()), 0.0, rtol=0, atol=1e-12)
    assert_close(float((w * tr.abs() ** 4).sum()), 2.0, rtol=0, atol=1e-12)


def test_bessel_ratios_match_scipy() -> None:
    c = torch.tensor([0.0, 1e-3, 0.7, 5.0, 40.0, 400.0], dtype=F64)
    r = bessel_ratios(c, 30)
    n = np.arange(31)
    for i, cv in enumerate(c.tolist()):
        ref = special.ive(n, cv) / special.ive(0, cv) if cv > 0 else (n == 0).astype(float)
        assert_close(r[i].numpy(), ref, rtol=1e-11, atol=1e-300)


@pytest.mark.parametrize("kappa", [0.0, 0.3, 4.0, 35.0])
def test_von_mises_cdf_matches_scipy(kappa: float) -> None:
    t = torch.linspace(-math.pi, math.pi, 41, dtype=F64)
    got = von_mises_cdf(t, torch.full_like(t, kappa)).numpy()
    ref = stats.vonmises.cdf(t.numpy(), kappa) if kappa > 0 else (t.numpy() + math.pi) / (2 * math.pi)
    assert_close(got, ref, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("c", [0.0, 0.5, 6.0, 30.0])
def test_su2_a0_cdf_matches_quadrature(c: float) -> None:
    a = np.linspace(-1, 1, 21)
    got = su2_a0_cdf(torch.as_tensor(a), torch.full((21,), c, dtype=F64)).numpy()
    f = lambda x: math.sqrt(1 - x * x) * math.exp(c * (x - 1))  # noqa: E731
    Z = integrate.quad(f, -1, 1, epsabs=1e-14, epsrel=1e-13)[0]
    ref = [integrate.quad(f, -1, ai, epsabs=1e-14, epsrel=1e-13)[0] / Z for ai in a]
    assert_close(got, ref, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("beta", [0.4, 3.0, 12.0])
def test_u1_heatbath_prior_is_normalised(beta: float) -> None:
    """int r(theta | S) d theta / (2 pi) = 1 (the I_0 normaliser), trapezoid rule (exact for trigonometric
    polynomials up to the grid size; the integrand's Fourier coefficients beyond 1024 are < 1e-300)."""
    prior = U1HeatbathPrior(3, beta=beta).to(F64)
    S = lk.U1.random(_trng(0), (4, 3))
    t = 2 * math.pi * torch.arange(2048, dtype=F64) / 2048 - math.pi
    lp = prior.log_prob(t.repeat(4), context=S.repeat_interleave(2048, 0)).reshape(4, 2048)
    assert_close(torch.exp(lp).mean(1).detach().numpy(), 1.0, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("beta", [0.2, 2.0, 6.0])
def test_su2_heatbath_prior_is_normalised(beta: float, su2_quadrature) -> None:
    """int r(U | S) dU = 1 over SU(2) by hyperspherical quadrature (the 2 I_1(k)/k normaliser). The quadrature
    points are rotated, U = U_q V^dag with V the direction of sum beta_i S_i (allowed by the right invariance of
    Haar measure), so that the peak of r sits at chi = 0, where the Gauss-Legendre rule in chi resolves it."""
    prior = SU2HeatbathPrior(2, beta=beta).to(F64)
    G = lk.SU(2)
    Uq, w = su2_quadrature()
    S = G.random(_trng(3), (3, 2))
    _, V = prior.concentration(S)
    for i in range(3):
        U = G.mul_adj(Uq, V[i].detach().expand(Uq.shape[0], 2, 2), nd=0)
        lp = prior.log_prob(U, context=S[i:i + 1].expand(U.shape[0], 2, 2, 2))
        assert_close(float((w * torch.exp(lp.detach())).sum()), 1.0, rtol=0, atol=1e-10)


def _u1_fd(prior: U1HeatbathPrior, z: torch.Tensor, kappa: float, h: float = 1e-5) -> np.ndarray:
    """d theta / d kappa at fixed CDF value u = F(theta; kappa), by the exact inverse CDF (SciPy)."""
    u = stats.vonmises.cdf(z, kappa)
    return (stats.vonmises.ppf(u, kappa + h) - stats.vonmises.ppf(u, kappa - h)) / (2 * h)


def test_u1_implicit_gradient_matches_inverse_cdf() -> None:
    """The draw theta = F^{-1}(u; kappa) moves with kappa as -dF/dkappa / p (implicit reparametrisation)."""
    prior = U1HeatbathPrior(1, beta=2.5).to(F64)
    S = torch.zeros(6, 1, dtype=F64)                      # kappa = beta, m = 0
    z, _ = prior.sample(6, _trng(4), context=S)
    per_link = [torch.autograd.grad(z[i], prior.beta, retain_graph=True)[0].item() for i in range(6)]
    assert_close(per_link, _u1_fd(prior, z.detach().numpy(), 2.5), rtol=1e-6, atol=1e-8)


def test_su2_implicit_gradient_matches_inverse_cdf() -> None:
    G = lk.SU(2)
    prior = SU2HeatbathPrior(1, beta=3.0).to(F64)
    S = G.random(_trng(5), (5, 1))
    U, _ = prior.sample(5, _trng(6), context=S)
    a0 = 0.5 * G.re_trace(G.mul(U, S[:, 0], nd=0), nd=0)       # M = beta S: k = beta, V = S
    grads = [torch.autograd.grad(a0[i], prior.beta, retain_graph=True)[0].item() for i in range(5)]

    def ppf(u: float, c: float) -> float:
        lo, hi = -1.0, 1.0
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if float(su2_a0_cdf(torch.tensor([mid], dtype=F64), torch.tensor([c], dtype=F64))) < u:
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    h = 1e-5
    for i in range(5):
        x = float(a0[i].detach())
        u = float(su2_a0_cdf(torch.tensor([x], dtype=F64), torch.tensor([3.0], dtype=F64)))
        fd = (ppf(u, 3.0 + h) - ppf(u, 3.0 - h)) / (2 * h)
        assert_close(grads[i], fd, rtol=0, atol=1e-5 * max(1.0, abs(fd)), msg=f"link {i}: autograd vs inverse CDF")


@torch.no_grad()
def test_draws_follow_the_law() -> None:
    """Sample means against the exact ones: <cos(theta - m)> = I_1/I_0 (U(1)), <a_0> = I_2(k)/I_1(k) (SU(2)).
    The draws are independent (exact samplers); tolerance 5 standard errors of the per-link deviations, so a
    mean shifted by more than ~0.01 (a wrong centre, sign or concentration) fails."""
    n = 40000
    p1 = U1HeatbathPrior(2, beta=1.7).to(F64)
    S = lk.U1.random(_trng(7), (n, 2))
    z, _ = p1.sample(n, _trng(8), context=S)
    kappa, m = p1.concentration(S)
    dev = (torch.cos(z - m) - torch.special.i1e(kappa) / torch.special.i0e(kappa)).numpy()
    assert abs(dev.mean()) < 5 * dev.std() / math.sqrt(n)
    G = lk.SU(2)
    p2 = SU2HeatbathPrior(2, beta=2.2).to(F64)
    S2 = G.random(_trng(9), (n, 2))
    U, _ = p2.sample(n, _trng(10), context=S2)
    k, V = p2.concentration(S2)
    a0 = 0.5 * G.re_trace(G.mul(U, V, nd=0), nd=0)
    dev = (a0 - torch.as_tensor(special.iv(2, k.numpy()) / special.iv(1, k.numpy()))).numpy()
    assert abs(dev.mean()) < 5 * dev.std() / math.sqrt(n)
    assert_close(G.defect(U, nd=0), 0.0, rtol=0, atol=1e-12)


def test_bad_input() -> None:
    p = U1HeatbathPrior(2).to(F64)
    with pytest.raises(ValueError, match=r"context has shape \(3, 3\); expected \(M, 2\)"):
        p.sample(3, _trng(0), context=torch.zeros(3, 3, dtype=F64))
    with pytest.raises(ValueError, match="n=4 links but the staples hold 3 rows"):
        p.sample(4, _trng(0), context=torch.zeros(3, 2, dtype=F64))
    with pytest.raises(ValueError, match="no closed-form normalisation"):
        heatbath_prior(lk.SU(3), 2, "heatbath")
    with pytest.raises(TypeError, match="expected latticekit.U1 or SU"):
        heatbath_prior("SU3", 2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prior='gauss'"):
        heatbath_prior(lk.U1, 2, "gauss")
    with pytest.raises(TypeError, match="SU\\(N\\) staples must be complex"):
        SU2HeatbathPrior(1).log_prob(torch.zeros(2, 2, 2), context=torch.zeros(2, 1, 2, 2))
    assert isinstance(heatbath_prior(lk.SU(3), 2, "haar"), HaarLinkPrior)
    # trainable weights starting at zero: the pathwise gradient through the direction of the staple sum is
    # singular there (NaN at 0, ~1/|A| near it), and training stopped on a NaN gradient norm (user probe)
    for cls in (U1HeatbathPrior, SU2HeatbathPrior):
        with pytest.raises(ValueError, match=r"^beta=0 with learn_beta=True: the gradient .* is singular"):
            cls(2, beta=0.0)
        assert float(cls(2, beta=0.0, learn_beta=False).beta.abs().max()) == 0.0     # fixed: the Haar prior


@torch.no_grad()
def test_float32_draws_at_every_concentration() -> None:
    """float32 models draw in float64 and cast: the Best-Fisher envelope fails in float32 near kappa ~ 1e-4."""
    S = torch.zeros(13, 1, dtype=torch.float32)
    for beta in (0.0, 1e-8, 1e-4, 1e-2, 1.0, 1e2, 1e4):
        learn = beta != 0.0      # zero trainable weights are refused (test_bad_input)
        p = U1HeatbathPrior(1, beta=beta, learn_beta=learn).to(torch.float32)
        z, lp = p.sample(13, _trng(0), context=S)
        assert z.dtype == torch.float32 and bool(torch.isfinite(lp).all())
        q = SU2HeatbathPrior(1, beta=beta, learn_beta=learn).to(torch.float32)
        U, lq = q.sample(13, _trng(0), context=lk.SU(2).identity((13, 1), precision="single", backend="torch"))
        assert U.dtype == torch.complex64 and bool(torch.isfinite(lq).all())
