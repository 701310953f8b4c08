"""The standard CNF with a lattice-spanning kernel (Sec. VI B's comparison, ``flows/superres/full_kernel_cnf.py``):
the orbits of the point group, the FFT field against the dense sum assembled offset by offset, the closed-form
divergence against the autograd trace, the log-det against the Jacobian of the solver map, inverse round trips,
equivariance under one-site translations, rotations, reflections and Z2, the identity at initialisation, the
step bound and recompute inherited from the shared base, and flow MCMC on the exactly solvable free theory."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.actions.phi4 import Phi4Action
from latticekit.exact import free_scalar_propagator, free_scalar_susceptibility
from latticekit.flows import GaussianPrior, Model
from latticekit.flows.sampling import independence_metropolis
from latticekit.flows.superres import FullKernelCNF, ODESolverError
from latticekit.flows.superres.full_kernel_cnf import offset_orbits
from latticekit.testing import assert_close, autograd_logdet, randomize_parameters

F64 = torch.float64
SMALL = {"n_basis": 3, "n_time": 3, "bond_basis": 4, "bond_time": 3}


def _layer(shape: tuple[int, ...], device: str, seed: int = 0, tol: float = 1e-10, scale: float = 0.2,
           **kw: Any) -> FullKernelCNF:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = FullKernelCNF(shape, rtol=tol, atol=tol, **{**SMALL, **kw})
    return randomize_parameters(layer, seed=seed + 100, scale=scale).to(device)


def _field(shape: tuple[int, ...], device: str, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=F64).to(device)


@pytest.mark.parametrize("shape,count", [((4, 4), 6), ((6, 6), 10), ((32, 32), 153), ((64, 64), 561),
                                         ((4, 6), 12), ((5,), 3), ((4, 4, 4), 10)])
def test_offset_orbits(shape: tuple[int, ...], count: int) -> None:
    """Orbit counts: (L/2+1)(L/2+2)/2 on L x L (the 153 and 561 of Sec. VI B), (L0/2+1)(L1/2+1) without the
    transposition on unequal extents, floor(L/2)+1 in 1D; every orbit is closed under the group."""
    orbits = offset_orbits(shape)
    assert int(orbits.max()) + 1 == count and len(np.unique(orbits)) == count and orbits.flat[0] == 0
    nd = len(shape)
    for axis in range(nd):   # sign flips: o_mu -> -o_mu
        assert np.array_equal(orbits, np.roll(np.flip(orbits, axis), 1, axis))
    for a, b in itertools.combinations(range(nd), 2):   # transpositions of equal axes (unequal: not lattice maps,
        if shape[a] == shape[b]:                        # not tied, as the count for (4, 6) shows)
            assert np.array_equal(orbits, np.swapaxes(orbits, a, b))


@pytest.mark.parametrize("shape", [(4, 6), (5, 5), (6,), (4, 2, 3)])
def test_field_equals_the_dense_sum(shape: tuple[int, ...], device: str) -> None:
    """Eq. (23) assembled independently: the features H = (u, sin(omega u)), the weight of offset o read from
    the orbit parameters, and the sum over every offset by rolls (the FFT's circular correlation, pinned to the
    convention y = x + o)."""
    layer = _layer(shape, device, scale=0.5)
    psi = _field((3,) + shape, device)
    t = 0.41
    dims = tuple(range(1, len(shape) + 1))
    with torch.no_grad():
        h = torch.stack([psi] + [torch.sin(w * psi) for w in layer.omega], dim=1)            # (N, F, *L)
        hb = torch.einsum("gf,nf...->ng...", layer.w_basis, h)
        kt = layer.w_time @ layer.time_kernel(t)
        orbits = torch.as_tensor(offset_orbits(shape), device=device)
        ref = torch.zeros_like(psi)
        for o in itertools.product(*[range(n) for n in shape]):
            a = torch.einsum("d,df->f", kt, layer.w_spatial[:, :, int(orbits[o])])             # (F',)
            rolled = torch.roll(hb, [-v for v in o], dims=[d + 1 for d in dims])              # hb(x + o)
            ref += torch.einsum("f,nf...->n...", a, rolled)
        field = layer.vector_field(psi, t)
    # a few hundred float64 products summed in another order (and by FFT): default tolerances (1e-10, 1e-12)
    assert_close(field, ref)
    assert float(ref.abs().max()) > 1e-2


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (6,)])
def test_divergence_equals_autograd_trace(shape: tuple[int, ...], device: str) -> None:
    layer = _layer(shape, device, scale=0.5)
    psi = _field((2,) + shape, device)
    n = math.prod(shape)
    for t in (0.0, 0.37):
        closed = layer.divergence(psi, t)
        for b in range(psi.shape[0]):
            J = torch.autograd.functional.jacobian(
                lambda v, t=t: layer.vector_field(v.reshape((1,) + shape), t).reshape(-1), psi[b].reshape(-1))
            # O(10) sums of O(n) float64 terms and an FFT: round-off ~1e-14; default rtol 1e-10
            assert_close(closed[b], torch.trace(J), msg=f"t={t}, batch element {b}")
        assert float(J.fill_diagonal_(0).abs().max()) > 1e-2   # the kernel couples distant sites


def test_logdet_and_inverse(device: str) -> None:
    layer = _layer((4, 4), device, tol=1e-10)
    psi = _field((2, 4, 4), device)
    y, ld = layer(psi)
    assert float(ld.detach().abs().min()) > 0.1, "non-trivial log-det"
    ref = autograd_logdet(layer, psi, vectorize=True, check_batch_independence=False)
    # the Jacobian of the discretised solve and the integrated divergence: both within ~C tol (1e-10) of the
    # exact log-det summed over 16 sites; observed <= 1e-8, bound 1e-6 (as for LocalCNF)
    assert_close(ld, ref, rtol=0, atol=1e-6)
    back, ld_inv = layer.inverse(y)
    assert_close(back, psi, rtol=0, atol=1e-7)      # forward and backward solves at 1e-10: observed ~1e-10
    assert_close(ld_inv, -ld, rtol=0, atol=1e-7)


def _rotate(x: torch.Tensor) -> torch.Tensor:   # 90 degrees about the origin: (x0, x1) -> (-x1, x0)
    return torch.roll(torch.flip(x.transpose(-2, -1), [-2]), 1, -2)


@pytest.mark.parametrize("name,g", [
    ("translation by one site", lambda x: torch.roll(x, 1, -1)),
    ("translation along axis 0", lambda x: torch.roll(x, 3, -2)),
    ("rotation by 90 degrees", _rotate),
    ("reflection", lambda x: torch.flip(x, [-1])),
    ("transposition", lambda x: x.transpose(-2, -1)),
    ("Z2", lambda x: -x),
])
def test_equivariance(name: str, g: Any, device: str) -> None:
    """F(g psi) = g F(psi) and the same log-det for every lattice symmetry (one-site translations, unlike the
    LocalCNF's two-site ones) and Z2. The solver's error norm is invariant under these permutations, so both
    solves take the same steps: round-off only."""
    layer = _layer((6, 6), device, tol=1e-8)
    psi = _field((2, 6, 6), device)
    y, ld = layer(psi)
    yg, ldg = layer(g(psi))
    assert_close(yg, g(y), msg=name)
    assert_close(ldg, ld, msg=name)
    assert float((y - psi).detach().abs().max()) > 0.1, "the layer must really move the field"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identity_at_initialisation(dtype: torch.dtype, device: str) -> None:
    layer = FullKernelCNF((4, 6)).to(device=device, dtype=dtype)   # the paper's sizes F = 30, D = 10, F' = D' = 20
    psi = _field((3, 4, 6), device).to(dtype)
    for y, ld in (layer(psi), layer.inverse(psi)):
        # W~ = 0: G = 0 and div G = 0, the displacement state stays exactly zero
        assert_close(y, psi, rtol=0, atol=0)
        assert_close(ld, torch.zeros(3, dtype=dtype, device=device), rtol=0, atol=0)


def test_the_base_is_abstract() -> None:
    """SineBasisCNF leaves the spatial weights to its subclasses: it cannot be built alone."""
    from latticekit.flows.superres import SineBasisCNF

    with pytest.raises(TypeError, match="abstract"):
        SineBasisCNF((4, 4), 2, 2, 2, 2, 0.0, 1.0, "dopri5", None, None, False, None, None, None, None)


def test_initialisations() -> None:
    """``"gerdes"`` (the default here): frequencies in (0, 5), ``W^H = Q/F`` and ``W^K = Q'/D`` with orthonormal
    rows (or columns, for the taller ``W^K``); ``"normal"``: frequencies 1..F-1 and unit-scale rows."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        g = FullKernelCNF((4, 4))
    omega = g.omega.detach()
    assert g.init == "gerdes" and float(omega.min()) > 0 and float(omega.max()) < 5
    eye20 = torch.eye(20, dtype=g.w_basis.dtype)
    assert_close(30 * g.w_basis @ (30 * g.w_basis).T, eye20, rtol=0, atol=1e-6)          # (F' = 20, F = 30)
    assert_close((10 * g.w_time).T @ (10 * g.w_time), eye20[:10, :10], rtol=0, atol=1e-6)  # (D' = 20, D = 10)
    n = FullKernelCNF((4, 4), init="normal")
    assert torch.equal(n.omega, torch.arange(1.0, 30.0, dtype=n.omega.dtype))
    assert 0.5 < float(n.w_basis.detach().norm(dim=1).mean()) < 1.5          # rows of about unit norm
    for layer in (g, n):
        assert not layer.w_spatial.any()                                                # the identity either way


def test_recompute_and_the_step_bound(device: str) -> None:
    """Inherited from the shared base: recompute gives the same gradients (bitwise in practice), and max_steps
    stops a solve that needs more steps with the error naming the option."""
    layer = _layer((4, 4), device, tol=1e-8)
    psi = _field((2, 4, 4), device).requires_grad_(True)

    def grads() -> list[torch.Tensor]:
        y, ld = layer(psi)
        return list(torch.autograd.grad((y ** 3).sum() + ld.sum(), [psi] + list(layer.parameters())))

    direct = grads()
    layer.recompute = True
    for a, b in zip(grads(), direct):
        assert_close(a, b, rtol=1e-12, atol=1e-13 * float(b.abs().max()))
    layer.max_steps = 2
    with pytest.raises(ODESolverError, match=r"FullKernelCNF: the dopri5 solve.*max_num_steps exceeded \(2>=2\)"):
        layer(psi)


@pytest.mark.parametrize("kwargs,name", [
    ({"lattice_shape": (4, 0)}, "lattice_shape"),
    ({"lattice_shape": "44"}, "lattice_shape"),
    ({"n_basis": 0}, "n_basis"),
    ({"bond_time": 1.5}, "bond_time"),
    ({"method": "leapfrog"}, "method"),
    ({"max_steps": -1}, "max_steps"),
    ({"init": "xavier"}, "init"),
])
def test_refuses_bad_arguments(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        FullKernelCNF(**{"lattice_shape": (4, 4), **kwargs})
    with pytest.raises(ValueError, match=r"x has shape \(2, 4, 5\)"):
        FullKernelCNF((4, 4)).to(F64)(_field((2, 4, 5), "cpu"))


def _contracting_flow(shape: tuple[int, ...], contraction: float, bend: float, hop: float) -> FullKernelCNF:
    """A FullKernelCNF set by hand: time-independent field ``G = -log(contraction) Psi_x + bend sin(Psi_x) + hop
    sum_{|o| = 1} Psi_{x+o}`` (W^K K(t) = e_0, W^H = identity on the first two basis functions, weights on the
    orbits of the offsets 0 and the nearest neighbours)."""
    flow = FullKernelCNF(shape, rtol=1e-9, atol=1e-9, n_basis=2, n_time=1, bond_basis=2, bond_time=1).to(F64)
    orbits = offset_orbits(shape)
    with torch.no_grad():
        flow.omega.fill_(1.0)
        flow.w_time.fill_(1.0)
        flow.w_basis.copy_(torch.eye(2, dtype=F64))
        flow.w_spatial.zero_()
        flow.w_spatial[0, 0, 0] = -math.log(contraction)
        flow.w_spatial[0, 1, 0] = bend
        flow.w_spatial[0, 0, int(orbits[(0,) * (len(shape) - 1) + (1,)])] = hop
    return flow


def test_flow_mcmc_reproduces_the_exact_free_theory() -> None:
    """Independence Metropolis on the 4x4 free theory at kappa = 0.1 (the target's variances span 0.36-0.83) with
    a Gaussian-prior model (the family ``cnf``): the prior 1.6 times wider than the target's widest direction, the
    flow contracting it by 1.6, bending it (a sine term) and coupling neighbours, so that log|det| varies from
    field to field by O(1) and the proposal is not the target (acceptance well below 1): a wrong log q (the
    flow's log-det dropped or of the wrong sign) biases the chain (checked by hand: chi then misses by 4 and 11
    errors, <phi^2> by 7 and 11). chi and <phi^2> agree with latticekit.exact within 4 Gamma-method errors
    (autocorrelation-corrected, fixed seeds), each resolved to 5%. ~10 s."""
    shape = (4, 4)
    G = free_scalar_propagator(shape, kappa=0.1, backend="numpy")
    idx = np.indices(shape).reshape(2, -1)
    C = G[tuple((idx[:, None, :] - idx[:, :, None]) % np.array(shape)[:, None, None])]   # C_xy = G(y - x)
    std = 1.6 * math.sqrt(float(np.linalg.eigvalsh(C).max()))
    model = Model(GaussianPrior(shape, std=std), _contracting_flow(shape, 1.6, 0.15, 0.05)).to(F64)
    obs = {"chi": lambda x: x.sum((1, 2)) ** 2 / 16, "phi2": lambda x: (x ** 2).mean((1, 2))}
    res = independence_metropolis(model, Phi4Action(lk.Lattice(shape), 0.1, 0.0), 40000,
                                  lk.backends.rng(8, backend="torch", device="cpu"), observables=obs,
                                  batch_size=10000)
    assert 0.05 < res.acceptance.rate < 0.95, res.acceptance.rate
    ref = {"chi": free_scalar_susceptibility(shape, kappa=0.1), "phi2": float(G[0, 0])}
    for name, val in ref.items():
        g = res.analysis[name]
        assert abs(g.value - val) < 4 * g.error, (name, g.value, g.error, val)
        assert g.error < 0.05 * val
