"""Independence Metropolis and reweighting with flow proposals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import latticekit as lk
from latticekit.actions import Phi4Action
from latticekit.flows import (
    AffineCoupling,
    Flow,
    GaussianPrior,
    Model,
    draw_weighted,
    independence_metropolis,
    reweight_observable,
)
from latticekit.flows.sampling import metropolis_chain, metropolis_chain_on_values
from latticekit.testing import assert_close

F64 = torch.float64


def trng(seed: int) -> lk.backends.Generator:
    return lk.backends.rng(seed, backend="torch")


def gaussian_model(n: int = 1) -> Model:
    return Model(GaussianPrior((n,)), Flow([])).to(F64)


def shifted(x: torch.Tensor) -> torch.Tensor:
    """Target N(1, 1) per component (unnormalised)."""
    return 0.5 * ((x - 1.0) ** 2).sum(-1)


def test_exact_proposal_accepts_everything() -> None:
    res = independence_metropolis(gaussian_model(3), lambda x: 0.5 * (x ** 2).sum(-1), 200, trng(0),
                                  observables={"x0": lambda x: x[:, 0]})
    assert res.accepted.all() and res.acceptance.rate == 1.0
    assert_close(res.proposal_ess, 1.0, rtol=0, atol=1e-12)
    assert res.analysis["x0"].tau_int < 1.0


def test_metropolis_targets_the_action() -> None:
    # proposals N(0, 1), target N(1, 1): the chain mean converges to 1, not to 0
    res = independence_metropolis(gaussian_model(), shifted, 20000, trng(1), batch_size=4096,
                                  observables={"x": lambda x: x[:, 0], "x2": lambda x: x[:, 0] ** 2},
                                  keep_configs=True)
    g = res.analysis["x"]
    assert abs(g.value - 1.0) < 5 * g.error and g.error < 0.05
    assert abs(res.analysis["x2"].value - 2.0) < 5 * res.analysis["x2"].error
    assert 0.3 < res.acceptance.rate < 0.8
    assert g.tau_int > 0.7                                   # rejections make the chain correlated
    assert res.configs is not None and res.configs.shape == (20000, 1)
    assert_close(torch.as_tensor(res.observables["x"]), res.configs[:, 0], rtol=1e-7, atol=1e-7, check_dtype=True)
    # the chain repeats the state exactly where it rejects
    rej = np.flatnonzero(~res.accepted)
    assert np.array_equal(res.observables["x"][rej], res.observables["x"][rej - 1])
    assert res.acceptance.longest_rejection_run >= 1


def test_proposal_records_give_the_reweighting_estimate() -> None:
    # proposals N(0, 1), target N(1, 1): the unweighted proposal mean is the model's <x>_q = 0, the
    # reweighted one the target's <x>_p = 1, and the chain is the proposals indexed by the chain state
    res = independence_metropolis(gaussian_model(), shifted, 20000, trng(5), batch_size=4096,
                                  observables={"x": lambda x: x[:, 0]})
    xp, lw = res.proposal_observables["x"], res.proposal_log_w
    assert xp.shape == (20000,) and lw.shape == (20000,)
    # 5 sigma of a unit-variance mean of 20000 draws
    assert abs(xp.mean()) < 5 / np.sqrt(20000)
    r = lk.analysis.reweight(xp, lw)
    assert abs(r.value - 1.0) < 5 * r.error and r.error < 0.05
    assert_close(res.proposal_ess, float(lk.analysis.ess(lw)), rtol=1e-6, atol=0)
    # the chain state after step i is the last accepted proposal up to i
    last = np.maximum.accumulate(np.where(res.accepted, np.arange(20000), 0))
    assert np.array_equal(res.observables["x"], xp[last])
    # the chain's log-weights are those of its states; log w = -S - log q of the proposal itself
    assert np.array_equal(res.log_w, lw[last])
    x = torch.as_tensor(xp, dtype=F64)[:, None]
    assert_close(torch.as_tensor(lw), -shifted(x) - gaussian_model().log_prob(x),
                 rtol=1e-7, atol=1e-7, check_dtype=True)


def test_reweighting() -> None:
    r = reweight_observable(gaussian_model(), shifted, lambda x: x[:, 0], 40000, trng(2))
    assert abs(r.value - 1.0) < 5 * r.error and r.error < 0.05
    assert abs(r.ess - np.exp(-1.0)) < 0.05                     # ESS/N = E[w]^2 / E[w^2] = e^{-1}


def test_flow_mcmc_on_phi4_runs_with_latticekit_action() -> None:
    torch.manual_seed(0)
    lat = lk.Lattice((4, 4))
    m = Model(GaussianPrior(lat.shape), Flow([AffineCoupling(lat, i % 2, hidden=(4,)) for i in range(2)])).to(F64)
    S = Phi4Action(lat, 0.1, 0.1)
    x, lw = draw_weighted(m, S, 64, trng(3), batch_size=20)
    assert x.shape == (64, 4, 4) and lw.shape == (64,)
    res = independence_metropolis(m, S, 100, trng(4), observables={"M": lambda v: v.mean(dim=(-2, -1))})
    assert res.log_w.shape == (100,) and 0 < res.acceptance.rate <= 1
    assert np.isfinite(res.analysis["M"].value)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_steps"):
        independence_metropolis(gaussian_model(), shifted, 1, trng(0))
    with pytest.raises(TypeError, match="rng"):
        independence_metropolis(gaussian_model(), shifted, 10, np.random.default_rng(0))
    with pytest.raises(ValueError, match="observables"):
        independence_metropolis(gaussian_model(), shifted, 10, trng(0), observables={"bad": lambda x: x[:3]})


def test_chain_on_measured_values_is_the_same_chain() -> None:
    # proposals N(0, 1), target N(1, 1): the chain over precomputed values accepts exactly as the chain that
    # measures them (same uniforms), and its estimate targets the action, not the proposals
    x, lw = draw_weighted(gaussian_model(), shifted, 8000, trng(6), batch_size=4096)
    a = metropolis_chain(x, lw, trng(7), observables={"x": lambda v: v[:, 0]})
    b = metropolis_chain_on_values({"x": x[:, 0]}, lw, trng(7))
    assert np.array_equal(a.accepted, b.accepted) and np.array_equal(a.observables["x"], b.observables["x"])
    assert np.array_equal(a.log_w, b.log_w) and b.configs is None
    assert a.analysis["x"].value == b.analysis["x"].value and a.analysis["x"].error == b.analysis["x"].error
    g = b.analysis["x"]
    assert abs(g.value - 1.0) < 5 * g.error and g.error < 0.06    # 5 sigma (Gamma-method error)
    # other weights, other chain: flat weights accept every proposal, and the chain is the proposals
    c = metropolis_chain_on_values({"x": x[:, 0].numpy()}, torch.zeros(8000, dtype=F64), trng(7))
    assert c.accepted.all() and np.array_equal(c.observables["x"], x[:, 0].numpy())
    with pytest.raises(ValueError, match=r"values\['x'\] has shape \(3,\); expected \(8000, ...\)"):
        metropolis_chain_on_values({"x": np.zeros(3)}, lw, trng(7))


def test_draw_batches_resumes_and_recovers_from_a_damaged_batch(tmp_path) -> None:
    """draw_batches with a BatchProgress: a rerun loads the stored batches and continues the random stream; a batch
    file that cannot be read is drawn again from the state after the last good one (the same numbers); another
    identity starts over."""
    from latticekit.flows import BatchProgress, draw_batches

    def run(seed: int, ident: dict, stop: int | None = None) -> list:
        rng = lk.backends.rng(seed, backend="torch")
        calls = []

        def draw(b: int):
            if stop is not None and len(calls) == stop:
                raise KeyboardInterrupt  # stands for the kill
            calls.append(b)
            return {"x": rng.normal((b,))}

        try:
            out = draw_batches(10, 3, rng, draw, BatchProgress(tmp_path / "p", ident))
        except KeyboardInterrupt:
            return calls
        return [out, calls, rng.normal((2,))]

    ref, ref_calls, ref_next = run(1, {"a": 1}, None)
    assert ref_calls == [3, 3, 3, 1]
    again, calls, _ = run(1, {"a": 1}, 2)     # everything stored: loaded, nothing drawn
    assert calls == [] and all(torch.equal(a["x"], b["x"]) for a, b in zip(again, ref))
    for f in (tmp_path / "p").glob("batch_*.pt"):
        f.unlink()
    assert run(1, {"a": 1}, 2) == [3, 3]      # killed after two batches
    (tmp_path / "p" / "batch_000001.pt").write_bytes(b"damaged")
    out, calls, nxt = run(7, {"a": 1})        # another seed: the stored batch 0 restores the stream
    assert calls == [3, 3, 1] and torch.equal(nxt, ref_next)
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(out, ref))
    out, calls, _ = run(1, {"a": 2})          # another identity: drawn anew
    assert calls == [3, 3, 3, 1]
