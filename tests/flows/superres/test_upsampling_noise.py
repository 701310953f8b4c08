"""Naive upsampling (eqs. 17-18) and zero-sum noise (eqs. 19-20, 30) of the super-resolving flow.

Reference objects are built independently of the code under test: the dense upsampling matrix from index
arithmetic (fine site y belongs to coarse site y // b), blocks by an explicit reshape/permute, the noise
density from torch.distributions.MultivariateNormal in the paper's coordinates zeta_1..zeta_{n-1}.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.flows.superres.upsampling import NaiveUpsampling
from latticekit.flows.superres.zero_sum_noise import ZeroSumNoise
from latticekit.testing import assert_close

F64 = torch.float64

# (coarse lattice shape, b): 1D, 2D, 3D and a b = 3 case
CASES = [((3,), 2), ((2, 3), 2), ((2, 2, 2), 2), ((2,), 3), ((2, 2), 3)]


def trng(seed: int, device: str) -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch", device=device)


def upsampling_matrix(coarse_shape: tuple[int, ...], b: int, device: str) -> torch.Tensor:
    """Dense ``U`` (eq. 17), ``(prod(b L), prod(L))``, row-major flattening: ``U[y, x] = 1`` iff ``y // b == x``."""
    fine = tuple(b * s for s in coarse_shape)
    grids = torch.meshgrid(*[torch.arange(s, device=device) for s in fine], indexing="ij")
    cidx = torch.zeros_like(grids[0])
    for g, s in zip(grids, coarse_shape):       # row-major ravel of the coarse coordinates (loop over axes)
        cidx = cidx * s + g // b
    cidx = cidx.reshape(-1)
    U = torch.zeros(cidx.numel(), math.prod(coarse_shape), dtype=F64, device=device)
    U[torch.arange(cidx.numel(), device=device), cidx] = 1.0
    return U


def blocks(x: torch.Tensor, b: int, nd: int) -> torch.Tensor:
    """``(B, *fine) -> (B, n_blocks, b^nd)``: the b^nd sites of each block, in row-major order within the block."""
    B, lat = x.shape[0], x.shape[1:]
    split = (B,) + tuple(v for s in lat for v in (s // b, b))
    perm = (0,) + tuple(1 + 2 * mu for mu in range(nd)) + tuple(2 + 2 * mu for mu in range(nd))
    return x.reshape(split).permute(perm).reshape(B, -1, b ** nd)


# ------------------------------------------------------------------------------------------------
# naive upsampling


@pytest.mark.parametrize("coarse_shape,b", CASES)
def test_up_is_the_matrix_of_eq17_and_down_its_left_inverse(device: str, coarse_shape: tuple[int, ...],
                                                             b: int) -> None:
    nd = len(coarse_shape)
    u = NaiveUpsampling(b, nd=nd)
    U = upsampling_matrix(coarse_shape, b, device)
    g = trng(1, device)
    phi = g.normal((3,) + coarse_shape, dtype=F64)
    psi = u.up(phi)
    assert psi.shape == (3,) + tuple(b * s for s in coarse_shape)
    # copies: exact, so zero tolerance
    assert_close(psi.reshape(3, -1), phi.reshape(3, -1) @ U.T, rtol=0.0, atol=0.0, msg="up = U phi")
    # averaging b^d equal copies rounds at the 1e-16 level: default float64 tolerance
    assert_close(u.down(psi), phi, msg="down(up(phi)) = phi")
    # U^dagger = (U^T U)^{-1} U^T = U^T / b^d on any fine field (block average); summation roundoff only
    Psi = g.normal(psi.shape, dtype=F64)
    assert_close(u.down(Psi).reshape(3, -1), Psi.reshape(3, -1) @ U / b ** nd, msg="down = U^T / b^d")
    # batch axes are free: none, or several
    assert_close(u.up(phi[0]), psi[0], rtol=0.0, atol=0.0, msg="up without batch axis")
    assert_close(u.up(phi.reshape((3, 1) + coarse_shape)), psi.reshape((3, 1) + psi.shape[1:]), rtol=0.0,
                 atol=0.0, msg="up with two batch axes")


@pytest.mark.parametrize("coarse_shape,b", [((2, 3), 2), ((2, 2, 2), 2), ((3,), 3)])
def test_up_jacobian_and_log_det(device: str, coarse_shape: tuple[int, ...], b: int) -> None:
    nd = len(coarse_shape)
    u = NaiveUpsampling(b, nd=nd)
    n_c = math.prod(coarse_shape)
    phi = trng(2, device).normal(coarse_shape, dtype=F64)
    J = torch.autograd.functional.jacobian(u.up, phi).reshape(-1, n_c)
    # the autograd Jacobian of a copy is exactly the 0/1 matrix of eq. (17)
    assert_close(J, upsampling_matrix(coarse_shape, b, device), rtol=0.0, atol=0.0, msg="J_U")
    JtJ = J.T @ J
    assert_close(JtJ, (b ** nd) * torch.eye(n_c, dtype=F64, device=device), rtol=0.0, atol=0.0,
                 msg="J_U^T J_U = b^d 1")
    half_logdet = 0.5 * torch.linalg.slogdet(JtJ).logabsdet
    # slogdet of a diagonal integer matrix: roundoff of a sum of n_c logs, default float64 tolerance
    assert_close(half_logdet, u.log_det(coarse_shape), msg="1/2 log det J^T J = log_det")
    assert_close(-half_logdet, u.log_prob_shift(coarse_shape), msg="eq. (18) shift")
    assert_close(u.log_prob_shift(coarse_shape), -0.5 * n_c * math.log(b ** nd), msg="-1/2 L^d log b^d")


def test_upsampling_refusals() -> None:
    with pytest.raises(ValueError, match="b="):
        NaiveUpsampling(1, nd=2)
    with pytest.raises(ValueError, match="b="):
        NaiveUpsampling(2.0, nd=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nd="):
        NaiveUpsampling(2, nd=0)
    u = NaiveUpsampling(2, nd=2)
    with pytest.raises(ValueError, match="phi has shape"):
        u.up(torch.zeros(3, dtype=F64))
    with pytest.raises(ValueError, match="psi has shape"):
        u.down(torch.zeros(4, dtype=F64))
    with pytest.raises(ValueError, match="psi has lattice shape .*multiple of b=2"):
        u.down(torch.zeros(1, 4, 5, dtype=F64))
    with pytest.raises(ValueError, match="coarse_shape"):
        u.log_det((2, 2, 2))
    with pytest.raises(ValueError, match="fine_shape"):
        u.coarse_shape((4, 3))
    with pytest.raises(TypeError, match="phi"):
        u.up([[1.0]])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# zero-sum noise


@pytest.mark.parametrize("fine_shape,b", [((6,), 3), ((4, 6), 2), ((4, 4, 4), 2)])
def test_noise_sums_to_zero_per_block(device: str, fine_shape: tuple[int, ...], b: int) -> None:
    nd = len(fine_shape)
    noise = ZeroSumNoise(b, nd=nd, sigma=1.3, dtype=F64).to(device)
    zeta, _ = noise.sample((5,) + fine_shape, trng(3, device))
    assert zeta.device.type == torch.device(device).type and zeta.dtype == F64
    zb = blocks(zeta, b, nd)
    # eq. (20): the last component is minus the sum of the others; roundoff of n ~ O(1) numbers
    assert_close(zb[..., -1], -zb[..., :-1].sum(-1), atol=1e-13, msg="eq. (20)")
    assert_close(zb.sum(-1), torch.zeros_like(zb[..., 0]), atol=1e-13, msg="block sums")
    assert float(zb.detach().abs().max()) > 0.1  # not trivially zero
    # eq. (30) with F = 1: the projection returns the noise of Psi = U(phi) + zeta
    phi = trng(4, device).normal((5,) + tuple(s // b for s in fine_shape), dtype=F64)
    assert_close(noise.project(noise.upsampling.up(phi) + zeta), zeta, atol=1e-13, msg="project recovers zeta")


def test_noise_covariance_is_eq19(device: str) -> None:
    b, nd, sigma = 2, 2, 0.7
    n = b ** nd
    noise = ZeroSumNoise(b, nd=nd, sigma=sigma, dtype=F64).to(device)
    with torch.no_grad():
        zeta, _ = noise.sample((4000, 4, 4), trng(5, device))
    zb = blocks(zeta, b, nd)                    # (4000, 4 blocks, 4)
    samples = zb.reshape(-1, n)                 # 16000 independent blocks (blocks are independent)
    N = samples.shape[0]
    emp = samples[:, : n - 1].T @ samples[:, : n - 1] / N     # known zero mean: no centering
    Sigma = sigma ** 2 * (torch.eye(n - 1, dtype=F64, device=device) - 1.0 / n)   # eq. (19)
    # standard error of a Gaussian second moment E[z_i z_j]: sqrt((S_ii S_jj + S_ij^2) / N); 5 standard
    # errors (~0.04 sigma^2 here) with a fixed seed. Wrong models are far outside: without the mean
    # subtraction the diagonal would be sigma^2 (off by 0.25 sigma^2), the off-diagonal 0 (off by 0.25 sigma^2).
    se = torch.sqrt((torch.diagonal(Sigma)[:, None] * torch.diagonal(Sigma)[None, :] + Sigma ** 2) / N)
    assert_close(emp, Sigma, rtol=0.0, atol=float(5 * se.max()), msg="Cov(zeta_1..zeta_{n-1})")
    # independent blocks: covariance of block 0 and block 1 components is zero (same standard-error bound)
    cross = zb[:, 0, :].T @ zb[:, 1, :] / zb.shape[0]
    assert_close(cross, torch.zeros_like(cross), rtol=0.0, atol=float(5 * sigma ** 2 * math.sqrt(1.0 / zb.shape[0])),
                 msg="blocks independent")


@pytest.mark.parametrize("fine_shape,b,sigma", [((6,), 3, 0.4), ((4, 6), 2, 1.7), ((4, 4, 4), 2, 0.9)])
def test_noise_log_prob_is_eq19_density_on_the_hyperplane(device: str, fine_shape: tuple[int, ...], b: int,
                                                          sigma: float) -> None:
    # Derivation of the reference. The paper's coordinates are c = (zeta_1..zeta_{n-1}) ~ N(0, Sigma) with Sigma
    # of eq. (19). The embedding c -> zeta = V c in R^n, V = (1_{n-1}; -1^T) (eq. 20), maps onto the zero-sum
    # hyperplane H; Lebesgue measure on H is sqrt(det V^T V) dc = sqrt(n) dc (V^T V = 1 + 1 1^T has
    # determinant n). Hence the density on H is the MultivariateNormal density of c minus 1/2 log n per block.
    nd = len(fine_shape)
    n = b ** nd
    V = torch.cat([torch.eye(n - 1, dtype=F64), -torch.ones(1, n - 1, dtype=F64)])
    assert_close(0.5 * torch.linalg.slogdet(V.T @ V).logabsdet, 0.5 * math.log(n), msg="volume factor sqrt(n)")

    noise = ZeroSumNoise(b, nd=nd, sigma=sigma, dtype=F64).to(device)
    with torch.no_grad():
        zeta, log_p = noise.sample((7,) + fine_shape, trng(6, device))
        lp = noise.log_prob(zeta)
    Sigma = sigma ** 2 * (torch.eye(n - 1, dtype=F64, device=device) - 1.0 / n)
    mvn = torch.distributions.MultivariateNormal(torch.zeros(n - 1, dtype=F64, device=device), covariance_matrix=Sigma)
    zb = blocks(zeta, b, nd)
    ref = mvn.log_prob(zb[..., : n - 1]).sum(-1) - zb.shape[1] * 0.5 * math.log(n)
    # Cholesky route vs closed form: roundoff ~1e-14 relative, default float64 tolerance (rtol 1e-10)
    assert_close(log_p, ref, msg="sample's log_p vs MultivariateNormal - 1/2 log n per block")
    assert_close(lp, ref, msg="log_prob vs MultivariateNormal - 1/2 log n per block")


def test_noise_gradient_in_log_sigma(device: str) -> None:
    b, nd = 2, 2
    shape = (3, 4, 4)
    noise = ZeroSumNoise(b, nd=nd, sigma=0.8, dtype=F64).to(device)
    w = trng(7, device).normal(shape, dtype=F64)

    def loss(log_sigma: float | None = None) -> torch.Tensor:
        # same seed every call: the reparametrised sample depends on sigma only through zeta = sigma P0 xi
        if log_sigma is not None:
            with torch.no_grad():
                noise.log_sigma.fill_(log_sigma)
        zeta, lp = noise.sample(shape, trng(8, device))
        return lp.sum() + (w * zeta).sum()

    ls0 = math.log(0.8)
    noise.zero_grad()
    loss(ls0).backward()
    grad = noise.log_sigma.grad.clone()
    h = 1e-5
    with torch.no_grad():
        fd = (loss(ls0 + h) - loss(ls0 - h)) / (2 * h)
    # central difference: truncation h^2 f'''/6 ~ 1e-10 |f|, roundoff eps |f| / h ~ 1e-11 |f| with |f| ~ 1e2;
    # rtol 1e-7 is far above both and far below any wrong factor
    assert_close(grad, fd, rtol=1e-7, atol=1e-9, msg="d loss / d log sigma vs finite differences")

    # closed form at fixed zeta: d/d log sigma [-(n-1) N_B log sigma - |zeta|^2 / (2 sigma^2)]
    #                            = -(n-1) N_B + |zeta|^2 / sigma^2
    with torch.no_grad():
        noise.log_sigma.fill_(ls0)
        zeta, _ = noise.sample(shape, trng(9, device))
    noise.zero_grad()
    noise.log_prob(zeta).sum().backward()
    n_blocks = 16 // 4
    want = 3 * (-(4 - 1) * n_blocks) + float((zeta ** 2).sum()) / 0.8 ** 2
    assert_close(noise.log_sigma.grad, torch.tensor(want, dtype=F64, device=device), msg="closed-form gradient")


def test_noise_from_coarse_and_init(device: str) -> None:
    fluct = trng(10, device).normal((50, 4, 4), dtype=F64, std=2.5)
    # a broken-phase-like ensemble: every configuration shifted by +-3 (its magnetisation)
    signs = torch.where(torch.arange(50, device=fluct.device) % 2 == 0, 3.0, -3.0).to(F64)
    phi = fluct + signs[:, None, None]
    noise = ZeroSumNoise.from_coarse(phi, 2, nd=2)
    assert noise.log_sigma.dtype == F64 and noise.log_sigma.device.type == torch.device(device).type
    # the initial sigma is the spread of each configuration about its own mean, averaged over configurations
    # (App. C, "the variance of the configurations"): recomputed with numpy, one exp(log(.)) round trip
    x = lk.backends.to_numpy(phi).reshape(50, -1)
    want = np.sqrt(np.mean(np.mean((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1)))
    assert_close(noise.sigma.detach().cpu(), torch.tensor(want, dtype=F64), msg="sigma from coarse samples")
    # the configuration means do not enter: the shifted and unshifted ensembles give the same width, where the
    # pooled standard deviation (the +-3 included) is about 3.9 against ~2.4
    assert_close(ZeroSumNoise.from_coarse(fluct, 2, nd=2).sigma.detach(), noise.sigma.detach(),
                 msg="invariant under a constant shift per configuration")
    assert float(phi.std()) > 3.5 and float(noise.sigma.detach()) < 2.7
    assert_close(ZeroSumNoise(2, nd=1, sigma=0.3, dtype=F64).sigma.detach().cpu(), torch.tensor(0.3, dtype=F64),
                 msg="sigma argument")


def test_noise_refusals() -> None:
    with pytest.raises(ValueError, match="sigma="):
        ZeroSumNoise(2, nd=2, sigma=0.0)
    with pytest.raises(ValueError, match="sigma="):
        ZeroSumNoise(2, nd=2, sigma=float("nan"))
    with pytest.raises(ValueError, match="b="):
        ZeroSumNoise(1, nd=2)
    with pytest.raises(ValueError, match="nd="):
        ZeroSumNoise(2, nd=0)
    with pytest.raises(ValueError, match="dtype="):
        ZeroSumNoise(2, nd=2, dtype=torch.int64)
    noise = ZeroSumNoise(2, nd=2, dtype=F64)
    g = lk.backends.rng(0, backend="torch")
    with pytest.raises(ValueError, match="psi_or_fine_shape has lattice shape .*multiples of b=2"):
        noise.sample((3, 4, 5), g)
    with pytest.raises(ValueError, match="psi_or_fine_shape has shape"):
        noise.sample((4,), g)
    with pytest.raises(ValueError, match="zeta has lattice shape"):
        noise.log_prob(torch.zeros(2, 3, 4, dtype=F64))
    with pytest.raises(TypeError, match="rng"):
        noise.sample((1, 4, 4), torch.Generator())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="phi_coarse"):
        ZeroSumNoise.from_coarse(torch.zeros(4, 4, dtype=F64), nd=2)
