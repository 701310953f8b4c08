"""The coarse theory prior of IR-matching (Sec. VI: differentiable Langevin, eq. 37, with the log Z term of
eqs. 33-34) and flow MCMC with a super-resolving model on a fine lattice whose answer is known exactly.

References: autograd against central finite differences with common random numbers (the Langevin path is a
deterministic function of the couplings for a fixed noise stream); the closed-form coupling derivatives and the
log Z estimator of :mod:`latticekit.flows.superres.log_z` (tested against the free theory in test_log_z.py);
the exact free-field susceptibility and propagator of ``latticekit.exact`` for flow MCMC.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import latticekit as lk
from latticekit.actions.phi4 import Phi4Action
from latticekit.exact import free_scalar_propagator, free_scalar_susceptibility
from latticekit.flows import (
    TrainConfig,
    Trainer,
    independence_metropolis,
    scalar_coupling_flow,
)
from latticekit.flows.superres import (
    CoarseTheoryPrior,
    LocalCNF,
    LogZGradient,
    NaiveUpsampling,
    Phi4Couplings,
    RectangularFlow,
    SuperResolvingModel,
    ZeroSumNoise,
    hmc_sampler,
)
from latticekit.testing import assert_close, randomize_parameters

F64 = torch.float64
COARSE = lk.Lattice((2, 2))


def _trng(seed: int, device: str = "cpu") -> Any:
    return lk.backends.rng(seed, backend="torch", device=device)


def _coupling_flow(lat: lk.Lattice, seed: int) -> nn.Module:
    """Two affine checkerboard couplings at the identity (zero-initialised), global torch state untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return scalar_coupling_flow(lat, 2, hidden=(4,), zero_init=True)


def _free_covariance(shape: tuple[int, ...], kappa: float) -> torch.Tensor:
    """The exact covariance ``C_xy = G(y - x)`` of the free field (``latticekit.exact``), ``(V, V)``."""
    G = free_scalar_propagator(shape, kappa=kappa, backend="numpy")
    idx = np.indices(shape).reshape(len(shape), -1).T
    diff = (idx[None] - idx[:, None]) % np.array(shape)
    return torch.tensor(G[tuple(diff[..., k] for k in range(len(shape)))], dtype=F64)


class _GaussianCoarsePrior(nn.Module):
    """Independent draws of a Gaussian coarse field with covariance ``C`` (Cholesky) and its exact normalised
    log-density (a construction independent of the flow code)."""

    def __init__(self, shape: tuple[int, ...], C: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("chol", torch.linalg.cholesky(C))
        self.event_shape = tuple(shape)

    def _mvn(self) -> torch.distributions.MultivariateNormal:
        return torch.distributions.MultivariateNormal(torch.zeros(self.chol.shape[0], dtype=F64,
                                                                  device=self.chol.device), scale_tril=self.chol)

    def sample(self, n: int, rng: Any, context: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        z = rng.normal((n, self.chol.shape[0])).to(F64) @ self.chol.T
        return z.reshape((n,) + self.event_shape), self._mvn().log_prob(z)

    def log_prob(self, x: torch.Tensor, context: Any = None) -> torch.Tensor:
        return self._mvn().log_prob(x.reshape(x.shape[0], -1))


def test_log_prob_carries_the_log_z_gradient(device: str) -> None:
    """d/dc of mean(log_prob) = -mean(dS/dc) (eq. 35) - grad log Z (the eq. 36 estimate): eqs. 32-34."""
    c = Phi4Couplings(0.2, 0.05).to(device)
    lz = LogZGradient(c, COARSE, hmc_sampler(n_traj=10), 64)
    prior = CoarseTheoryPrior(COARSE, c, log_z=lz, n_therm=50, n_steps=5)
    lz.refresh(_trng(0, device))
    phi = _trng(1, device).normal((16, 2, 2)).to(F64)
    lp = prior.log_prob(phi)
    assert_close(lp.detach(), -c.action(phi, COARSE).detach(), rtol=1e-14, atol=0)  # the surrogate's value is 0
    g = torch.stack(torch.autograd.grad(lp.mean(), [c.kappa, c.lam]))
    ref = -c.action_gradients(phi, COARSE).mean(0) - lz.estimate()[0]
    assert_close(g, ref, rtol=1e-12, atol=1e-12)  # the same float64 sums in another order


def test_log_prob_before_the_first_log_z_set() -> None:
    """A fresh prior has no log Z sample set. Its surrogate is 0 in value, so without a gradient to carry it is
    left out (same value, same gradient, no generator needed); a coupling gradient without it would lack
    -grad log Z (eqs. 33-34), so that is refused with the remedy named; after a draw it is formed as before."""
    phi = _trng(1).normal((4, 2, 2)).to(F64)

    def fresh() -> tuple[Phi4Couplings, CoarseTheoryPrior]:
        c = Phi4Couplings(0.2, 0.05)
        return c, CoarseTheoryPrior(COARSE, c, log_z=LogZGradient(c, COARSE, hmc_sampler(n_traj=2), 8), n_therm=5,
                                    n_steps=2)

    c, prior = fresh()
    with torch.no_grad():
        assert_close(prior.log_prob(phi), -c.action(phi, COARSE), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"^log_prob: the coarse couplings are learned and no log Z sample set .*"
                                         r"call model\.sample\(n, rng\) .* or evaluate under torch\.no_grad\(\)"):
        prior.log_prob(phi)
    assert prior.log_z.samples is None and prior.log_z.n_draws == 0   # nothing drawn behind the caller's back
    c.requires_grad_(False)   # couplings held fixed: the surrogate would carry no gradient
    phi_g = phi.clone().requires_grad_(True)
    lp = prior.log_prob(phi_g)
    assert_close(lp.detach(), -c.action(phi, COARSE), rtol=0, atol=0)
    g, = torch.autograd.grad(lp.sum(), phi_g)
    assert_close(g, -torch.func.grad(lambda p: c.action(p, COARSE).sum())(phi), rtol=1e-14, atol=1e-14)
    c, prior = fresh()
    prior.sample(2, _trng(2))   # draws the first log Z set
    lp = prior.log_prob(phi)
    assert_close(lp.detach(), -c.action(phi, COARSE).detach(), rtol=0, atol=0)
    gk, = torch.autograd.grad(lp.mean(), c.kappa)
    assert_close(gk, -c.action_gradients(phi, COARSE)[:, 0].mean() - prior.log_z.estimate()[0][0], rtol=1e-12,
                 atol=1e-12)


def test_langevin_draws_are_persistent_and_differentiable(device: str) -> None:
    """The pathwise derivative through the re-thermalisation steps against central finite differences with the
    same noise (common random numbers): the Langevin map is smooth in the couplings."""
    c = Phi4Couplings(0.2, 0.05, learn=()).to(device)
    prior = CoarseTheoryPrior(COARSE, c, n_therm=200, n_steps=20)
    x1, _ = prior.sample(8, _trng(2, device))
    assert prior.state is not None and torch.equal(prior.state, x1.detach())
    start = prior.state.clone()
    c.kappa.requires_grad_(True)

    def f(kappa: float | None) -> torch.Tensor:
        prior.state = start.clone()
        if kappa is not None:
            with torch.no_grad():
                c.kappa.fill_(kappa)
        x, _ = prior.sample(8, _trng(3, device))  # the same noise stream every time
        assert not torch.equal(x, start)  # continued from the stored batch
        return (x ** 2).sum()

    g, = torch.autograd.grad(f(0.2), c.kappa)
    h = 1e-5
    with torch.no_grad():
        fd = (float(f(0.2 + h)) - float(f(0.2 - h))) / (2 * h)
    assert_close(float(g), fd, rtol=1e-6, atol=0)  # central difference: O(h^2) ~ 1e-10 relative, rounding ~1e-9


def test_draws_of_another_size_use_the_pool_of_chains(monkeypatch: pytest.MonkeyPatch) -> None:
    """The persistent batch is a pool of stationary chains: a draw of n advances its first n chains; only chains the
    pool lacks are thermalised (n_therm steps). Before, every change of n re-thermalised the whole batch (a probe:
    sample(64), sample(1), sample(64) on 4x4 paid 22 s, 16 s and 12 s at the default n_therm = 5e4)."""
    c = Phi4Couplings(0.2, 0.05, learn=())
    prior = CoarseTheoryPrior(COARSE, c, n_therm=50, n_steps=5)
    calls: list[tuple[int, int]] = []
    run = CoarseTheoryPrior._langevin

    def counted(self: CoarseTheoryPrior, x: torch.Tensor, n: int, rng: Any) -> torch.Tensor:
        calls.append((x.shape[0], n))
        return run(self, x, n, rng)

    monkeypatch.setattr(CoarseTheoryPrior, "_langevin", counted)
    g = _trng(4)
    with torch.no_grad():
        a, _ = prior.sample(8, g)
        b, _ = prior.sample(2, g)
        assert torch.equal(prior.state[2:], a[2:]) and torch.equal(prior.state[:2], b)   # chains 2-7 wait
        prior.sample(8, g)
        prior.sample(np.int64(12), g)
    assert calls == [(8, 50), (8, 5), (2, 5), (8, 5), (4, 50), (12, 5)]
    assert prior.state.shape[0] == 12
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match=r"^n=.*: expected a positive integer number of samples"):
            prior.sample(bad, g)


def test_ir_matching_trains_flow_noise_and_coarse_couplings() -> None:
    """The Trainer's reverse KL on a super-resolving model with the coarse theory prior: gradients reach the
    coarse couplings (through Langevin and log Z), the noise width and the flow, and the couplings move."""
    fine = lk.Lattice((4, 4))
    c = Phi4Couplings(0.22, 0.02)
    lz = LogZGradient(c, COARSE, hmc_sampler(n_traj=10), 64)
    prior = CoarseTheoryPrior(COARSE, c, log_z=lz, n_therm=200, n_steps=10)
    flow = randomize_parameters(_coupling_flow(fine, 5), 5, scale=0.1)
    model = SuperResolvingModel(prior, [RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=0.5, dtype=F64),
                                                        flow)])
    tr = Trainer(model, Phi4Action(fine, 0.22, 0.02), TrainConfig(steps=3, batch_size=16, lr=1e-2, seed=6,
                                                                  progress=False))
    tr.train_step()
    named = dict(model.named_parameters())
    for key in ("prior.couplings.kappa", "prior.couplings.lam", "flows.0.noise.log_sigma"):
        assert named[key].grad is not None and float(named[key].grad.abs()) > 0, key
    assert any(p.grad is not None and float(p.grad.abs().max()) > 0 for n, p in named.items() if ".flow." in n)
    before = c.vector().detach().clone()
    tr.train(2)
    assert not torch.equal(c.vector().detach(), before)


def test_flow_mcmc_reproduces_the_exact_fine_free_theory() -> None:
    """Independence Metropolis on the 4x4 free theory at kappa = 0.2 with a super-resolving proposal: a Gaussian
    2x2 coarse field with 1.5 times the target's block-average covariance (1.5 B C B^T), zero-sum noise of width
    1.1 and a random nonlinear flow. Without the flow the proposal covariance exceeds the target's by at least 0.25
    in every direction, so the weights are bounded and the chain is uniformly ergodic (a proposal narrower than
    the target in some direction gives a chain that sticks). The susceptibility and <phi^2> agree with
    latticekit.exact within 4 Gamma-method errors (autocorrelation-corrected, fixed seeds). The proposal is not
    the target (acceptance ~0.08), so a wrong log q (eq. 29: the eq. 18 constant, the noise density, the flow's
    log-det) would bias the chain. ~5 s."""
    fine = lk.Lattice((4, 4))
    C = _free_covariance((4, 4), 0.2)
    B = torch.stack([x.reshape(-1) for x in NaiveUpsampling(2, nd=2).down(torch.eye(16, dtype=F64).reshape(16, 4, 4))],
                    dim=1)  # (4, 16): the block average as a matrix
    flow = randomize_parameters(_coupling_flow(fine, 7), 7, scale=0.05)
    model = SuperResolvingModel(_GaussianCoarsePrior((2, 2), 1.5 * B @ C @ B.T),
                                [RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=1.1, dtype=F64), flow)]).to(F64)
    obs = {"chi": lambda x: x.sum((1, 2)) ** 2 / 16, "phi2": lambda x: (x ** 2).mean((1, 2))}
    res = independence_metropolis(model, Phi4Action(fine, 0.2, 0.0), 60000, _trng(8), observables=obs,
                                  batch_size=20000)
    assert 0.05 < res.acceptance.rate < 0.95, res.acceptance.rate
    ref = {"chi": free_scalar_susceptibility((4, 4), kappa=0.2),
           "phi2": float(free_scalar_propagator((4, 4), kappa=0.2, backend="numpy")[0, 0])}
    for name, val in ref.items():
        g = res.analysis[name]
        assert abs(g.value - val) < 4 * g.error, (name, g.value, g.error, val)
        assert g.error < 0.05 * val  # resolved to 5%: the comparison has teeth
    assert math.isfinite(res.proposal_ess) and res.proposal_ess < 0.99


def test_refusals() -> None:
    c = Phi4Couplings(0.2, 0.0)
    with pytest.raises(ValueError, match="log_z"):
        CoarseTheoryPrior(COARSE, c)  # learned couplings need the log Z gradient
    other = LogZGradient(Phi4Couplings(0.2, 0.0), COARSE, hmc_sampler(), 8)
    with pytest.raises(ValueError, match="log_z"):
        CoarseTheoryPrior(COARSE, c, log_z=other)
    frozen = Phi4Couplings(0.2, 0.0, learn=())
    with pytest.raises(ValueError, match="sampler"):
        CoarseTheoryPrior(COARSE, frozen, sampler="metropolis")
    with pytest.raises(ValueError, match="step_size"):
        CoarseTheoryPrior(COARSE, frozen, step_size=0.0)
    with pytest.raises(ValueError, match="n_steps"):
        CoarseTheoryPrior(COARSE, frozen, n_steps=0)
    with pytest.raises(ValueError, match="context"):
        CoarseTheoryPrior(COARSE, frozen, n_therm=1, n_steps=1).sample(2, _trng(0), context=torch.zeros(1))
    # wrong types and non-integer counts are refused by name (2.7 was truncated to 2, "abc" gave a bare error)
    for kw, match in (({"step_size": "abc"}, r"^step_size='abc': expected a finite number > 0"),
                      ({"step_size": None}, r"^step_size=None: expected a finite number > 0"),
                      ({"step_size": math.inf}, r"^step_size=inf"),
                      ({"n_therm": 2.7}, r"^n_therm=2\.7: expected an integer >= 0"),
                      ({"n_therm": -1}, r"^n_therm=-1: expected an integer >= 0"),
                      ({"n_steps": "x"}, r"^n_steps='x': expected an integer >= 1")):
        with pytest.raises(ValueError, match=match):
            CoarseTheoryPrior(COARSE, frozen, **kw)
    assert CoarseTheoryPrior(COARSE, frozen, n_therm=np.int64(0), n_steps=np.int32(3)).n_steps == 3
    for bad in ("x", 2.5, 0):
        with pytest.raises(ValueError, match=rf"^n_traj={bad!r}: expected an integer >= 1"):
            hmc_sampler(n_traj=bad)
    with pytest.raises(ValueError, match=r"^learn='kappa': expected a sequence of coupling names, e.g. \['kappa'\]"):
        Phi4Couplings(0.2, 0.0, learn="kappa")
    with pytest.raises(ValueError, match=r"^step_size=-1: expected a finite step size > 0"):
        hmc_sampler(step_size=-1)
    with pytest.raises(ValueError, match=r"^n_steps=0: expected an integer number of leapfrog steps >= 1"):
        hmc_sampler(n_steps=0)
    # NumPy and one-element torch scalars are numbers (np.float64 was, np.float32 was refused)
    assert float(Phi4Couplings(np.float32(0.25), torch.tensor(0.01)).kappa.detach()) == 0.25


def test_local_cnf_inside_a_two_level_model(device: str) -> None:
    """2x2 -> 4x4 -> 8x8 with the paper's F (random-weight local CNFs, kernel sizes 2 and 3): log q recomputed
    through the left inverses (eq. 30, the CNFs integrated backwards) equals the log q tracked while sampling,
    the recorded coarse draw is recovered, and one Trainer step reaches every CNF and noise parameter."""
    cnfs = []
    for shape, k in (((4, 4), 2), ((8, 8), 3)):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(11)
            cnf = LocalCNF(shape, n_basis=3, n_time=2, bond_basis=3, bond_time=2, kernel_size=k, rtol=1e-10,
                           atol=1e-10)
        cnfs.append(randomize_parameters(cnf, 12, scale=0.1))
    c = Phi4Couplings(0.2, 0.0, learn=())
    model = SuperResolvingModel(CoarseTheoryPrior(COARSE, c, n_therm=100, n_steps=5),
                                [RectangularFlow((2, 2), ZeroSumNoise(2, nd=2, sigma=0.5, dtype=F64), cnfs[0]),
                                 RectangularFlow((4, 4), ZeroSumNoise(2, nd=2, sigma=0.3, dtype=F64), cnfs[1])]
                                ).to(dtype=F64, device=device)
    with torch.no_grad():
        x, log_q, fields, _ = model.sample_with_draws(4, _trng(13, device))
        assert_close(model.log_prob(x), log_q, rtol=0, atol=1e-7)  # two ODE solves each way at tolerance 1e-10
        phi, _ = model.flows[0].left_inverse(model.flows[1].left_inverse(x)[0])
        assert_close(phi, fields[0], rtol=0, atol=1e-8)
    tr = Trainer(model, Phi4Action(lk.Lattice((8, 8)), 0.2, 0.0),
                 TrainConfig(steps=1, batch_size=4, lr=1e-3, seed=14, progress=False, device=device))
    tr.train_step()
    for name, p in model.named_parameters():
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name
    assert all(float(p.grad.abs().max()) > 0 for n, p in model.named_parameters() if "w_spatial" in n or "log_sigma" in n)


def test_state_dict_carries_the_langevin_batch_and_the_log_z_set() -> None:
    """A prior restored from its state dict continues exactly: the persistent Langevin batch and the log Z sample
    set are checkpointed (every random number comes from the caller's generator, whose state the trainer saves)."""

    def make() -> CoarseTheoryPrior:
        c = Phi4Couplings(0.2, 0.05)
        return CoarseTheoryPrior(COARSE, c, log_z=LogZGradient(c, COARSE, hmc_sampler(n_traj=5), 32, threshold=0.99),
                                 n_therm=50, n_steps=5)

    a = make()
    a.sample(8, _trng(20))
    state = a.state_dict()
    b = make()
    b.load_state_dict(state)
    assert b.log_z is not None and b.log_z.n_draws == 1 and torch.equal(b.state, a.state)
    for p in (a, b):
        with torch.no_grad():
            p.couplings.kappa.fill_(0.23)  # far enough for a new log Z set (ESS/N < 0.99)
    xa, la = a.sample(8, _trng(21))
    xb, lb = b.sample(8, _trng(21))
    assert torch.equal(xa, xb) and torch.equal(la, lb)
    assert a.log_z.n_draws == 2 and torch.equal(a.log_z.samples, b.log_z.samples)
