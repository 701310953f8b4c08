"""Priors and Model: exact log-densities, sampling consistency, normalisation of q by quadrature."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.flows import (
    AffineCoupling,
    ConditionalGaussianPrior,
    Flow,
    GaussianPrior,
    HaarPrior,
    Model,
    SplineCoupling,
    u1_gauge_flow,
)
from latticekit.testing import assert_close, randomize_parameters

F64 = torch.float64


def trng(seed: int) -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch")



@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    # layer constructors draw their initial weights from torch's global generator
    torch.manual_seed(1234)

_randomize = randomize_parameters  # seeded perturbation, then float64


def test_gaussian_prior_exact() -> None:
    p = GaussianPrior((3, 2), std=2.0).to(F64)
    z = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]], dtype=F64)
    expect = -0.5 * (1 + 4) / 4 - 6 * math.log(2.0) - 3 * math.log(2 * math.pi)
    assert_close(float(p.log_prob(z)[0]), expect, rtol=0, atol=1e-12)
    s, lp = p.sample(4000, trng(0))
    assert s.dtype == F64 and s.shape == (4000, 3, 2)
    assert abs(float(s.std()) - 2.0) < 0.05 and abs(float(s.mean())) < 0.05
    assert_close(lp, p.log_prob(s), rtol=1e-7, atol=1e-7, check_dtype=True)
    s2, _ = p.sample(4000, trng(0))
    assert torch.equal(s, s2)                         # same seed, same samples


def test_haar_priors() -> None:
    lat = lk.Lattice((4, 4))
    p = HaarPrior(lk.U1, lat).to(F64)
    U, lp = p.sample(500, trng(1))
    assert U.shape == (500, 2, 4, 4) and bool((lp == 0).all())
    assert float(U.max()) <= math.pi and float(U.min()) > -math.pi
    assert abs(float(torch.cos(U).mean())) < 0.02      # uniform angles: <cos> = 0
    pS = HaarPrior(lk.SU(2), lat).to(F64)
    V, lpS = pS.sample(3, trng(2))
    assert V.shape == (3, 2, 2, 2, 4, 4) and V.dtype == torch.complex128 and bool((lpS == 0).all())
    assert_close(lk.SU(2).defect(V, nd=2), 0.0, rtol=0, atol=1e-12)
    assert bool((pS.log_prob(V) == 0).all())


def test_conditional_prior() -> None:
    class Net(torch.nn.Module):
        def forward(self, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return 2 * c, torch.full_like(c, math.log(0.5))

    p = ConditionalGaussianPrior((2,), Net()).to(F64)
    c = torch.ones(5000, 2, dtype=F64)
    z, lp = p.sample(5000, trng(3), context=c)
    assert abs(float(z.mean()) - 2.0) < 0.03 and abs(float(z.std()) - 0.5) < 0.03
    zz = torch.tensor([[2.0, 2.5]], dtype=F64)
    expect = -0.5 * 1.0 - 2 * math.log(0.5) - math.log(2 * math.pi)
    assert_close(float(p.log_prob(zz, context=c[:1])[0]), expect, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="context"):
        p.sample(2, trng(0))
    with pytest.raises(ValueError, match="n=3"):
        p.sample(3, trng(0), context=c[:2])


def test_prior_errors() -> None:
    p = GaussianPrior((2,))
    with pytest.raises(TypeError, match="rng"):
        p.sample(2, lk.backends.rng(0, backend="numpy"))
    with pytest.raises(ValueError, match="n="):
        p.sample(0, trng(0))
    with pytest.raises(ValueError, match="unconditional"):
        p.sample(2, trng(0), context=torch.zeros(2))
    with pytest.raises(ValueError, match="z has shape"):
        p.log_prob(torch.zeros(2, 3))
    # a fractional extent was truncated ((4.7, 4) -> (4, 4)), std=inf gave infinite samples (user probe)
    for shape in ((4.7, 4), (0, 4), (True, 4)):
        with pytest.raises(ValueError, match=r"^event_shape=.*: expected positive integer extents"):
            GaussianPrior(shape)
    for std in (math.inf, math.nan, 0.0, True):
        with pytest.raises(ValueError, match=r"^std=.*: expected a finite positive standard deviation"):
            GaussianPrior((2,), std=std)
    assert GaussianPrior((np.int64(2), 3)).event_shape == (2, 3)


@pytest.mark.parametrize("kind", ["affine", "spline"])
def test_model_sample_matches_log_prob(kind: str) -> None:
    lat = lk.Lattice((4, 4))
    layers = [AffineCoupling(lat, i % 2, hidden=(4,)) if kind == "affine" else
              SplineCoupling(lat, i % 2, bins=4, bound=2.0, hidden=(4,)) for i in range(3)]
    m = _randomize(Model(GaussianPrior(lat.shape), Flow(layers)), 0)
    x, log_q = m.sample(5, trng(4))
    assert_close(log_q, m.log_prob(x), rtol=1e-7, atol=1e-7, check_dtype=True)
    x2, log_q2, z = m.sample_with_prior(5, trng(4))
    assert_close(x2, x, rtol=1e-7, atol=1e-7, check_dtype=True)
    assert_close(m.flow(z)[0], x, rtol=1e-7, atol=1e-7, check_dtype=True)


def test_u1_model_sample_matches_log_prob() -> None:
    lat = lk.Lattice((4, 4))
    m = _randomize(Model(HaarPrior(lk.U1, lat), u1_gauge_flow(lat, 4, bins=4, hidden=(4,))), 1)
    x, log_q = m.sample(3, trng(5))
    assert_close(log_q, m.log_prob(x), rtol=1e-7, atol=1e-7, check_dtype=True)
    assert float(log_q.detach().abs().max()) > 1e-3          # not the Haar density


def test_two_site_model_is_normalised() -> None:
    # q on a 2-site 1D lattice integrated over a grid: int q(x) dx = 1
    lat = lk.Lattice((2,))
    flow = Flow([AffineCoupling(lat, 0, hidden=(3,)), SplineCoupling(lat, 1, bins=5, bound=2.0, hidden=(3,)),
                 AffineCoupling(lat, 0, hidden=(3,))])
    m = _randomize(Model(GaussianPrior(lat.shape), flow), 2, scale=0.15)
    t = torch.linspace(-12, 12, 801, dtype=F64)
    X, Y = torch.meshgrid(t, t, indexing="ij")
    with torch.no_grad():
        q = torch.exp(m.log_prob(torch.stack([X, Y], dim=-1).reshape(-1, 2))).reshape(X.shape)
    integral = float(torch.trapezoid(torch.trapezoid(q, t, dim=1), t))
    assert_close(integral, 1.0, rtol=0, atol=1e-4)
    # the model is not the prior (the test would be weak otherwise)
    with torch.no_grad():
        z = torch.stack([X, Y], dim=-1).reshape(-1, 2)
        r = torch.exp(m.prior.log_prob(z)).reshape(X.shape)
    assert float((q - r).abs().max()) > 1e-2


def test_model_type_errors() -> None:
    with pytest.raises(TypeError, match="prior"):
        Model(torch.nn.Linear(1, 1), Flow([]))
    with pytest.raises(TypeError, match="flow"):
        Model(GaussianPrior((1,)), torch.nn.Linear(1, 1))
