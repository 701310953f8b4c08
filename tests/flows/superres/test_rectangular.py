"""Rectangular flow T = F o N o U and SuperResolvingModel: exact log-likelihood (eqs. 17-21, 29) and left inverse (30).

The strongest checks are Gaussian: with a Gaussian coarse prior of known covariance C and T = N o U (or an affine
F), the fine field is exactly Gaussian, with covariance U C U^T + sigma^2 (1 - P) (P: block-average projector),
and the model's log q must be that MultivariateNormal density to float64 roundoff. A nonlinear F is checked
against a dense autograd Jacobian of the square map (phi, c) -> F(U phi + E c), E an orthonormal basis of the
zero-sum hyperplanes.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

import latticekit as lk
from latticekit.flows import FlowLayer, GaussianPrior, scalar_coupling_flow
from latticekit.flows.superres.rectangular import RectangularFlow, SuperResolvingModel
from latticekit.flows.superres.zero_sum_noise import ZeroSumNoise
from latticekit.testing import assert_close, randomize_parameters

F64 = torch.float64


def trng(seed: int, device: str) -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


def upsampling_matrix(coarse_shape: tuple[int, ...], b: int) -> torch.Tensor:
    """Dense ``U`` of eq. (17) from index arithmetic (row-major flattening): ``U[y, x] = 1`` iff ``y // b == x``."""
    fine = tuple(b * s for s in coarse_shape)
    grids = torch.meshgrid(*[torch.arange(s) for s in fine], indexing="ij")
    cidx = torch.zeros_like(grids[0])
    for g, s in zip(grids, coarse_shape):
        cidx = cidx * s + g // b
    cidx = cidx.reshape(-1)
    U = torch.zeros(cidx.numel(), math.prod(coarse_shape), dtype=F64)
    U[torch.arange(cidx.numel()), cidx] = 1.0
    return U


def fine_covariance(C: torch.Tensor, coarse_shape: tuple[int, ...], b: int, sigma: float) -> torch.Tensor:
    """Covariance of ``N o U (phi)``, ``phi ~ N(0, C)``: ``U C U^T + sigma^2 (1 - P)``, ``P = U U^T / b^d``."""
    U = upsampling_matrix(coarse_shape, b).to(C.device)
    P = U @ U.T / b ** len(coarse_shape)
    return U @ C @ U.T + sigma ** 2 * (torch.eye(U.shape[0], dtype=F64, device=C.device) - P)


def random_spd(n: int, seed: int) -> torch.Tensor:
    A = lk.backends.rng(seed, backend="torch").normal((n, n), dtype=F64)
    return A @ A.T / n + 0.5 * torch.eye(n, dtype=F64)


class MVNPrior(nn.Module):
    """Test prior: a Gaussian with full covariance over the flattened coarse lattice."""

    def __init__(self, cov: torch.Tensor, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.register_buffer("cov", cov.clone())
        self.register_buffer("chol", torch.linalg.cholesky(cov))

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        mvn = torch.distributions.MultivariateNormal(torch.zeros_like(self.cov[0]), scale_tril=self.chol)
        return mvn.log_prob(x.reshape(x.shape[0], -1))

    def sample(self, n: int, rng: lk.backends.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        eps = rng.normal((n, self.cov.shape[0]), dtype=self.cov.dtype).to(self.cov.device)
        x = (eps @ self.chol.T).reshape((n,) + self.event_shape)
        return x, self.log_prob(x)


class SiteAffine(FlowLayer):
    """Test layer: ``y = exp(s) * x + t`` with site-dependent ``s``, ``t``; ``log|det dy/dx| = sum s``."""

    def __init__(self, shape: tuple[int, ...], seed: int) -> None:
        super().__init__()
        g = lk.backends.rng(seed, backend="torch")
        self.s = nn.Parameter(0.4 * g.normal(shape, dtype=F64))
        self.t = nn.Parameter(g.normal(shape, dtype=F64))

    def forward(self, x: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.exp(self.s) * x + self.t, self.s.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        return (y - self.t) * torch.exp(-self.s), (-self.s.sum()).expand(y.shape[0])


def coupling_flow(shape: tuple[int, ...], seed: int) -> nn.Module:
    """A latticekit affine checkerboard coupling flow with random (non-identity) weights, float64."""
    with torch.random.fork_rng(devices=[]):  # the constructor draws initial weights from torch's global RNG
        torch.manual_seed(seed)
        flow = scalar_coupling_flow(lk.Lattice(shape), 2, hidden=(4,))
    return randomize_parameters(flow, seed, scale=0.3)


# ------------------------------------------------------------------------------------------------
# the Gaussian fine distribution: eqs. (17)-(21) and (29) together


@pytest.mark.parametrize("coarse_shape,b,sigma", [((2, 2), 2, 0.8), ((3,), 2, 1.4), ((2,), 3, 0.6),
                                                  ((2, 2, 2), 2, 0.5)])
def test_noise_upsampling_gives_the_exact_gaussian(device: str, coarse_shape: tuple[int, ...], b: int,
                                                   sigma: float) -> None:
    nd = len(coarse_shape)
    C = random_spd(math.prod(coarse_shape), seed=11).to(device)
    T = RectangularFlow(coarse_shape, ZeroSumNoise(b, nd=nd, sigma=sigma, dtype=F64), flow=None)
    model = SuperResolvingModel(MVNPrior(C, coarse_shape), [T]).to(device)
    with torch.no_grad():
        x, log_q = model.sample(64, trng(12, device))
        lp = model.log_prob(x)
    assert x.shape == (64,) + tuple(b * s for s in coarse_shape)
    ref = torch.distributions.MultivariateNormal(
        torch.zeros(x[0].numel(), dtype=F64, device=device),
        covariance_matrix=fine_covariance(C, coarse_shape, b, sigma)).log_prob(x.reshape(64, -1))
    # log densities of O(10-100) from different routes (Cholesky of the fine covariance vs the factorised
    # formula): roundoff ~1e-13 relative; rtol 1e-10 (the default). A wrong constant (e.g. 1/2 log n per block,
    # the sign of eq. 18) shifts every value by >= 0.3.
    assert_close(log_q, ref, rtol=1e-10, msg="log q from sampling vs exact Gaussian")
    assert_close(lp, ref, rtol=1e-10, msg="log q from the left inverse vs exact Gaussian")


def test_two_doublings_compose_the_covariance(device: str) -> None:
    cs, s1, s2 = (2, 2), 0.8, 0.3
    C = random_spd(4, seed=13).to(device)
    Ts = [RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=s1, dtype=F64)),
          RectangularFlow((4, 4), ZeroSumNoise(2, nd=2, sigma=s2, dtype=F64))]
    model = SuperResolvingModel(MVNPrior(C, cs), Ts).to(device)
    assert model.fine_shape == (8, 8)
    with torch.no_grad():
        x, log_q, fields, noises = model.sample_with_draws(32, trng(14, device))
        lp = model.log_prob(x)
    cov = fine_covariance(fine_covariance(C, (2, 2), 2, s1), (4, 4), 2, s2)
    ref = torch.distributions.MultivariateNormal(torch.zeros(64, dtype=F64, device=device),
                                                 covariance_matrix=cov).log_prob(x.reshape(32, -1))
    # as above: roundoff only, default float64 tolerance
    assert_close(log_q, ref, rtol=1e-10, msg="two doublings: log q vs exact Gaussian")
    assert_close(lp, ref, rtol=1e-10, msg="two doublings: log_prob vs exact Gaussian")
    # the recorded draws reassemble x: x = U(U(phi) + zeta_1) + zeta_2 (flow=None); copies and sums, roundoff
    up = Ts[0].upsampling.up
    assert_close(up(up(fields[0]) + noises[0]) + noises[1], x, msg="x from the recorded draws")
    assert_close(fields[1], up(fields[0]) + noises[0], msg="intermediate field")


# ------------------------------------------------------------------------------------------------
# a nontrivial square flow F


def test_affine_flow_gaussian_and_left_inverse(device: str) -> None:
    cs, b, sigma = (2, 2), 2, 0.7
    C = random_spd(4, seed=15).to(device)
    F = SiteAffine((4, 4), seed=16)
    T = RectangularFlow(cs, ZeroSumNoise(b, nd=2, sigma=sigma, dtype=F64), flow=F)
    model = SuperResolvingModel(MVNPrior(C, cs), [T]).to(device)
    with torch.no_grad():
        x, log_q, fields, noises = model.sample_with_draws(48, trng(17, device))
        lp = model.log_prob(x)
        phi_back, zeta_back, _ = T.decompose(x)
        x2, ldj_fwd = T(fields[0], trng(30, device))
        _, ldj_back = T.left_inverse(x2)
    # x = exp(s) * Psi + t is Gaussian with mean t and covariance D Sigma_fine D, D = diag(exp(s)): this checks
    # the sign and placement of log|det dF| in log_det_J (eq. 29) to roundoff (default float64 tolerance)
    D = torch.diag(torch.exp(F.s.detach()).reshape(-1))
    ref = torch.distributions.MultivariateNormal(F.t.detach().reshape(-1),
                                                 covariance_matrix=D @ fine_covariance(C, cs, b, sigma) @ D
                                                 ).log_prob(x.reshape(48, -1))
    assert_close(log_q, ref, rtol=1e-10, msg="affine F: log q vs exact Gaussian")
    assert_close(lp, log_q, rtol=1e-10, msg="affine F: log_prob(x) vs log q of sample")
    # eq. (30): the left inverse recovers the coarse field and the noise (affine inverse: roundoff ~1e-15)
    assert_close(phi_back, fields[0], atol=1e-12, msg="left inverse recovers phi_coarse")
    assert_close(zeta_back, noises[0], atol=1e-12, msg="eq. (30) recovers zeta")
    assert_close(ldj_back, ldj_fwd, rtol=1e-10, msg="log_det_J forward vs left inverse")


def test_coupling_flows_two_levels(device: str) -> None:
    # latticekit's checkerboard affine couplings (random weights) on both fine lattices
    Ts = [RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=0.9, dtype=F64), flow=coupling_flow((4, 4), 18)),
          RectangularFlow((4, 4), ZeroSumNoise(2, nd=2, sigma=0.4, dtype=F64), flow=coupling_flow((8, 8), 19))]
    model = SuperResolvingModel(GaussianPrior((2, 2)).to(F64), Ts).to(device)
    with torch.no_grad():
        x, log_q, fields, noises = model.sample_with_draws(16, trng(20, device))
        lp = model.log_prob(x)
        phi1, zeta2, _ = Ts[1].decompose(x)
        phi0, zeta1, _ = Ts[0].decompose(phi1)
    # network evaluations forward and inverse agree to ~1e-15 relative; log q ~ O(100): default rtol 1e-10
    assert_close(lp, log_q, rtol=1e-10, msg="coupling F: log_prob vs log q of sample")
    assert_close(phi1, fields[1], atol=1e-12, msg="level 2 left inverse")
    assert_close(zeta2, noises[1], atol=1e-12, msg="level 2 noise, eq. (30)")
    assert_close(phi0, fields[0], atol=1e-12, msg="level 1 left inverse")
    assert_close(zeta1, noises[0], atol=1e-12, msg="level 1 noise, eq. (30)")


def test_log_det_J_against_dense_jacobian(device: str) -> None:
    # Independent check of eq. (29) with a nonlinear F. Let E be an orthonormal basis of the zero-sum hyperplanes
    # (the orthogonal complement of range U) and c = E^T zeta ~ N(0, sigma^2 1) (isotropic on the hyperplanes,
    # so log N(c) = log p_zeta(zeta)). The square map g(phi, c) = F(U phi + E c) is a bijection, hence
    #   log q(x) = log p(phi) + log p_zeta(zeta) - log|det J_g|,   i.e.   log_det_J = log|det J_g| - log p_zeta.
    # |det J_g| = |det dF| |det (U, E)| = |det dF| b^{d L^d / 2}: the factor of eq. (18) appears by itself.
    cs, b, sigma = (2, 2), 2, 0.6
    T = RectangularFlow(cs, ZeroSumNoise(b, nd=2, sigma=sigma, dtype=F64), flow=coupling_flow((4, 4), 21)).to(device)
    U = upsampling_matrix(cs, b).to(device)
    n_c, n_f = U.shape[1], U.shape[0]
    evals, evecs = torch.linalg.eigh(torch.eye(n_f, dtype=F64, device=device) - U @ U.T / b ** 2)
    E = evecs[:, n_c:]                              # eigenvalue 1: the zero-sum directions
    assert_close(evals[n_c:], torch.ones(n_f - n_c, dtype=F64, device=device), atol=1e-12, msg="projector spectrum")

    def g(v: torch.Tensor) -> torch.Tensor:
        Psi = (U @ v[:n_c] + E @ v[n_c:]).reshape((1, 4, 4))
        return T.flow(Psi)[0].reshape(-1)

    phi = trng(22, device).normal((3,) + cs, dtype=F64)
    with torch.no_grad():
        x, ldj, zeta = T.forward_with_noise(phi, trng(23, device))
    for i in range(3):  # three samples, dense 16 x 16 Jacobians
        v = torch.cat([phi[i].reshape(-1), E.T @ zeta[i].reshape(-1)])
        Jg = torch.autograd.functional.jacobian(g, v)
        with torch.no_grad():
            want = torch.linalg.slogdet(Jg).logabsdet - T.noise.log_prob(zeta[i: i + 1])[0]
        # autograd Jacobian and LU determinant of a 16 x 16 matrix: roundoff ~1e-14; default float64 tolerance
        assert_close(ldj[i], want, msg=f"log_det_J vs dense Jacobian, sample {i}")
        assert_close(g(v).detach(), x[i].reshape(-1), msg="g reproduces the sample")


def test_gradients_reach_sigma_and_flow(device: str) -> None:
    T = RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=0.5, dtype=F64), flow=SiteAffine((4, 4), seed=24))
    model = SuperResolvingModel(GaussianPrior((2, 2)).to(F64), [T]).to(device)
    x, log_q = model.sample(8, trng(25, device))
    (log_q.mean() + (x ** 2).mean()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and float(p.grad.abs().max()) > 0, name


# ------------------------------------------------------------------------------------------------
# refusals


class _NoLogProb(GaussianPrior):
    def log_prob(self, z: torch.Tensor, context: Any = None) -> torch.Tensor:
        raise AssertionError("the prior must not be reached for malformed input")


class _Shapeless:
    def sample(self, n: int, rng: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise AssertionError("not called")

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("not called")


def test_refusals() -> None:
    def rect(cs: tuple[int, ...], b: int = 2) -> RectangularFlow:
        return RectangularFlow(cs, ZeroSumNoise(b, nd=len(cs), dtype=F64))

    prior = GaussianPrior((2, 2)).to(F64)
    with pytest.raises(ValueError, match=r"flows\[1\] acts on the lattice \(2, 2\); expected \(4, 4\)"):
        SuperResolvingModel(prior, [rect((2, 2)), rect((2, 2))])
    with pytest.raises(ValueError, match=r"flows\[0\] acts on the lattice \(4, 4\); expected \(2, 2\)"):
        SuperResolvingModel(prior, [rect((4, 4))])
    with pytest.raises(ValueError, match=r"flows\[2\] .*expected \(12, 12\)"):   # b = 3 then b = 2
        SuperResolvingModel(prior, [rect((2, 2), 3), rect((6, 6)), rect((6, 6))])
    with pytest.raises(ValueError, match="coarse_shape"):
        SuperResolvingModel(prior, [rect((2, 2))], coarse_shape=(4, 4))
    with pytest.raises(ValueError, match="coarse_shape"):
        SuperResolvingModel(_Shapeless(), [rect((2, 2))])
    assert SuperResolvingModel(_Shapeless(), [rect((2, 2))], coarse_shape=(2, 2)).fine_shape == (4, 4)
    with pytest.raises(TypeError, match="prior"):
        SuperResolvingModel(object(), [])
    with pytest.raises(TypeError, match=r"flows\[0\]"):
        SuperResolvingModel(prior, [SiteAffine((4, 4), 0)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="noise has nd=1"):
        RectangularFlow((2, 2), ZeroSumNoise(2, nd=1))
    with pytest.raises(TypeError, match="noise"):
        RectangularFlow((2, 2), 0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="flow"):
        RectangularFlow((2, 2), ZeroSumNoise(2, nd=2), flow=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="coarse_shape"):
        RectangularFlow((0, 2), ZeroSumNoise(2, nd=2))
    T = rect((2, 2))
    g = lk.backends.rng(0, backend="torch")
    with pytest.raises(ValueError, match=r"phi_coarse has shape \(3, 4, 4\); expected \(B, \*\(2, 2\)\)"):
        T(torch.zeros(3, 4, 4, dtype=F64), g)
    with pytest.raises(ValueError, match=r"phi_fine has shape \(3, 2, 2\); expected \(B, \*\(4, 4\)\)"):
        T.left_inverse(torch.zeros(3, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match="phi_fine"):
        T.left_inverse(torch.zeros(4, 4, dtype=F64))   # no batch axis
    # malformed input is refused before any work (the prior's log_prob would raise AssertionError)
    model = SuperResolvingModel(_NoLogProb((2, 2)).to(F64), [rect((2, 2)), rect((4, 4))])
    with pytest.raises(ValueError, match=r"x_fine has shape \(2, 4, 4\); expected \(B, \*\(8, 8\)\)"):
        model.log_prob(torch.zeros(2, 4, 4, dtype=F64))


def test_a_cnf_of_another_lattice_or_block_is_refused() -> None:
    """A CNF declares its lattice (``lattice_shape``) and LocalCNF its block size (``block`` = 2): another fine
    lattice would fail at the first call, another ``b`` would tie the weights over the wrong blocks (user probe:
    both were accepted)."""
    from latticekit.flows.superres import FullKernelCNF, LocalCNF
    with pytest.raises(ValueError, match=r"flow acts on the lattice \(8, 8\); expected the fine lattice \(4, 4\)"):
        RectangularFlow((2, 2), ZeroSumNoise(2, nd=2), flow=LocalCNF((8, 8)))
    with pytest.raises(ValueError, match=r"blocks of b=2 sites but noise has b=3"):
        RectangularFlow((2, 2), ZeroSumNoise(3, nd=2), flow=LocalCNF((6, 6)))
    assert RectangularFlow((2, 2), ZeroSumNoise(3, nd=2), flow=FullKernelCNF((6, 6))).fine_shape == (6, 6)
    assert RectangularFlow((2, 2), ZeroSumNoise(2, nd=2), flow=LocalCNF((4, 4))).fine_shape == (4, 4)
