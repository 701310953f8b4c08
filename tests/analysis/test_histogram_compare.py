"""Density histograms with blocked-bootstrap errors and the chi^2 residual test
(latticekit.analysis.histogram_compare): errors against the exact multinomial and AR(1) values, the test's
size and power, bad input. Host-only (analysis/ works on time series of measurements)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import signal

from latticekit.analysis import (
    Chi2Summary,
    block_length,
    combine_chi2,
    compare_histograms,
    density_histogram,
    histogram_edges,
    joint_chi2,
)
from latticekit.testing import assert_close


def _ar1(rho: float, n: int, seed: int) -> np.ndarray:
    """Stationary Gaussian AR(1) with unit variance: x_t = rho x_{t-1} + sqrt(1 - rho^2) eta_t."""
    rng = np.random.default_rng(seed)
    eta = rng.standard_normal(n)
    x, _ = signal.lfilter([math.sqrt(1 - rho ** 2)], [1.0, -rho], eta, zi=[rho * rng.standard_normal()])
    return x


def _hermite_coefficients(a: float, b: float, kmax: int) -> np.ndarray:
    """c_k = <1_[a,b), h_k> for the normalised Hermite polynomials h_k = He_k / sqrt(k!), k = 1..kmax, under
    the standard normal density phi: int_a^b phi He_k = phi(a) He_{k-1}(a) - phi(b) He_{k-1}(b)."""
    def h(x: float) -> np.ndarray:                    # h_0 .. h_{kmax-1} at x (stable recurrence)
        out = np.empty(kmax)
        out[0] = 1.0
        if kmax > 1:
            out[1] = x
        for k in range(1, kmax - 1):
            out[k + 1] = (x * out[k] - math.sqrt(k) * out[k - 1]) / math.sqrt(k + 1)
        return out

    phi = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)   # noqa: E731
    k = np.arange(1, kmax + 1)
    return (phi(a) * h(a) - phi(b) * h(b)) / np.sqrt(k)   # He_{k-1}/sqrt(k!) = h_{k-1}/sqrt(k)


def test_density_and_counts_are_numpy_histogram() -> None:
    x = np.random.default_rng(5).normal(size=3001)
    edges = histogram_edges(x, x, bins=13)
    h = density_histogram(x, edges, rng=0, n_boot=20, block=1)
    counts, _ = np.histogram(x, edges)
    np.testing.assert_array_equal(h.counts, counts)
    assert_close(h.density, np.histogram(x, edges, density=True)[0], rtol=1e-13, atol=0)
    assert h.counts.sum() == x.size and (h.n, h.n_chains, h.block) == (3001, 1, 1)


def test_bootstrap_error_is_the_multinomial_error_for_iid_draws() -> None:
    """N = 20000 uniform draws in 10 bins of width 0.1 (p = 0.1 each): the error of a density is
    sqrt(p (1 - p) / N) / w. Tolerance 6%: the bootstrap standard deviation of n_boot = 4000 resamples has
    a relative sampling error 1/sqrt(2 n_boot) = 1.1%, and it is the multinomial error at the observed
    p_hat, off by (1 - 2p)/(2 (1 - p)) |p_hat - p|/p = 1.0% (one sigma of p_hat) at most; 6% is 4 sigma of
    the two together."""
    n, p, w = 20_000, 0.1, 0.1
    x = np.random.default_rng(11).uniform(size=n)
    h = density_histogram(x, np.linspace(0.0, 1.0, 11), rng=12, n_boot=4000, block=1)
    exact = math.sqrt(p * (1 - p) / n) / w
    assert_close(h.error, np.full(10, exact), rtol=0.06, atol=0)
    assert_close(h.density, np.full(10, 1.0), rtol=0.05, atol=0)   # 5% = 5 sigma of the density itself (1%)


def test_identical_inputs_give_zero_residuals_and_p_one() -> None:
    x = np.random.default_rng(3).normal(size=2000)
    c = compare_histograms(x, x, bins=12, n_boot=100, rng=4)
    assert c.dof == 12 and np.all(c.residuals[c.used] == 0.0) and c.chi2 == 0.0 and c.p_value == 1.0
    assert np.all(c.ratio[c.used] == 1.0)


def test_same_distribution_passes_and_a_shift_fails() -> None:
    """Two independent samples of one normal distribution (fixed seeds): p > 0.01 (a 1% false-alarm rate at
    most); a shift of 0.2 standard deviations with N = 5000 each moves ~8% of the mass across the bins, far
    beyond the errors: p < 1e-6."""
    rng = np.random.default_rng(21)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    same = compare_histograms(a, b, bins=20, n_boot=1000, rng=22)
    assert same.p_value > 0.01 and same.dof >= 15
    shifted = compare_histograms(a, rng.normal(0.2, 1.0, size=5000), bins=20, n_boot=1000, rng=22)
    assert shifted.p_value < 1e-6
    tot = combine_chi2([same, shifted])
    assert (tot.chi2, tot.dof) == (same.chi2 + shifted.chi2, same.dof + shifted.dof) and tot.p_value < 1e-6
    assert math.isnan(combine_chi2([]).p_value) and combine_chi2([Chi2Summary(0.0, 3, 1.0)]).p_value == 1.0


def test_blocked_bootstrap_on_an_ar1_chain_is_the_autocorrelated_error() -> None:
    """AR(1), rho = 0.8 (tau_int of x: 4.5), N = 2e5. For a bin B of the standard normal the indicator's
    autocovariance is sum_k c_k^2 rho^(k t) (Mehler's formula, c_k its Hermite coefficients), so its exact
    error is the iid error sqrt(p (1 - p) / N) / w times sqrt(2 tau_B), 2 tau_B = 1 + 2 sum_k c_k^2 rho^k /
    ((1 - rho^k) p (1 - p)), and blocks of length m estimate the variance (p (1 - p) + sum_k c_k^2
    (g_m(rho^k) - 1)) / N with g_m(r) = (1 + r)/(1 - r) - 2 r (1 - r^m) / (m (1 - r)^2) (the correlations
    across block boundaries are lost).

    Checked in the bins with p > 0.02 (fewer entries make p_hat itself uncertain by more than 3%):

    * the blocked error (block ceil(10 tau_int) = 45 from the estimated tau_int) equals the exact blocked
      value within 8%: 4 sigma of its sampling error, 1.3% from the K = 4400 block means (sqrt((2 +
      kurtosis)/K)/2 with the excess kurtosis ~1 of block means of an indicator) and 1/sqrt(2 n_boot) = 1.6%
      from the 2000 resamples;
    * that value lies within 5% below iid * sqrt(2 tau_B) (the finite-block bias, about tau_B / (2 m)), so the
      blocked error matches iid * sqrt(2 tau_B) within 8% + 5% = 13%;
    * the unblocked bootstrap gives the iid error within 9% (4 sigma of 1/sqrt(2 * 1000) = 2.2% and 0.5% from
      p_hat), smaller by the factor sqrt(2 tau_B), 1.6 .. 1.9 here.
    """
    rho, n = 0.8, 200_000
    x = _ar1(rho, n, seed=31)
    edges = histogram_edges(x, x, bins=10)
    blocked = density_histogram(x, edges, rng=32, n_boot=2000)
    plain = density_histogram(x, edges, rng=33, n_boot=1000, block=1)
    assert abs(blocked.tau_int - 4.5) < 0.5 and blocked.block == math.ceil(10 * blocked.tau_int)
    assert blocked.reliable and blocked.n_blocks == n // blocked.block
    from scipy.stats import norm

    m = blocked.block
    checked = 0
    for k in range(10):
        a, b = edges[k], edges[k + 1]
        p, w = norm.cdf(b) - norm.cdf(a), b - a
        if p <= 0.02:
            continue
        c2 = _hermite_coefficients(a, b, 200) ** 2
        r = rho ** np.arange(1, 201)            # rho^200 = 4e-20: the neglected terms are below rounding
        two_tau = 1 + 2 * np.sum(c2 * r / (1 - r)) / (p * (1 - p))
        g_m_minus_1 = 2 * r / (1 - r) - 2 * r * (1 - r ** m) / (m * (1 - r) ** 2)
        exact_blocked = math.sqrt((p * (1 - p) + np.sum(c2 * g_m_minus_1)) / n) / w
        iid = math.sqrt(p * (1 - p) / n) / w
        assert_close(blocked.error[k], exact_blocked, rtol=0.08, atol=0)
        assert 0.95 < exact_blocked / (iid * math.sqrt(two_tau)) <= 1.0
        assert_close(blocked.error[k], iid * math.sqrt(two_tau), rtol=0.13, atol=0)
        assert_close(plain.error[k], iid, rtol=0.09, atol=0)
        assert blocked.error[k] > 1.3 * plain.error[k] and two_tau > 2.4
        checked += 1
    assert checked == 6


def test_blocks_avoid_false_alarms_on_correlated_chains() -> None:
    """Two independent AR(1) chains of one distribution (rho = 0.95, 2 tau_int = 39, N = 40000 each): with
    blocked errors they are consistent (p > 0.01); resampling single configurations makes the errors too
    small by sqrt(2 tau_B) ~ 2-3, chi^2 several times dof and p < 1e-6: the false alarm the blocks prevent.
    (Ten seed pairs gave blocked p-values 0.2 .. 0.99 and unblocked ones 6e-4 .. 2e-22.)"""
    a, b = _ar1(0.95, 40_000, seed=41), _ar1(0.95, 40_000, seed=42)
    blocked = compare_histograms(a, b, bins=16, n_boot=1000, rng=43)
    assert blocked.p_value > 0.01
    plain = compare_histograms(a, b, bins=16, n_boot=1000, rng=43, blocks=(1, 1))
    assert plain.p_value < 1e-6 and plain.chi2 > 4 * plain.dof


def test_a_flow_mcmc_chain_against_iid_draws_of_its_target() -> None:
    """Independence Metropolis (the flow-MCMC sampler) for a standard normal target with the proposal
    N(0, 4^2): acceptance 0.31, every rejection repeats the configuration (tau_int ~ 2). Against 4 chains of
    iid target draws the blocked comparison is consistent (p > 0.01; 20 seeds gave p-values of mean 0.46, 2
    below 0.05), and its flow errors are larger than the single-configuration ones by sqrt(2 tau_int) ~ 2
    (median over the bins above 1.6)."""
    from scipy import stats

    rng = np.random.default_rng(200)
    n = 40_000
    prop, u = rng.normal(0.0, 4.0, n), rng.uniform(size=n)
    log_w = stats.norm.logpdf(prop) - stats.norm.logpdf(prop, scale=4.0)
    x, cur, lw, acc = np.empty(n), prop[0], log_w[0], 0
    for i in range(n):
        if math.log(u[i]) < log_w[i] - lw:
            cur, lw, acc = prop[i], log_w[i], acc + 1
        x[i] = cur
    assert 0.28 < acc / n < 0.34
    target = list(rng.normal(size=(4, 2000)))
    c = compare_histograms(x, target, rng=0, n_boot=500)
    assert c.p_value > 0.01 and c.a.block >= 15 and c.a.reliable and c.b.reliable
    plain = compare_histograms(x, target, rng=0, n_boot=500, blocks=(1, None))
    used = c.a.counts > 100
    assert float(np.median(c.a.error[used] / plain.a.error[used])) > 1.6


def test_chains_are_blocked_separately() -> None:
    """Several chains: blocks stay inside a chain, the block is capped by the shortest chain."""
    rng = np.random.default_rng(7)
    chains = [rng.normal(size=40), rng.normal(size=6)]
    blk, tau, ok = block_length(chains)
    assert blk <= 6 and tau > 0
    h = density_histogram(chains, histogram_edges(chains, chains, bins=4), rng=1, n_boot=50)
    assert h.n == 46 and h.n_chains == 2 and h.n_blocks == 40 // h.block + 6 // h.block
    assert not h.reliable                    # fewer than 20 blocks in all
    c = compare_histograms(np.full(10, 2.0), np.full(7, 2.0), bins=3, n_boot=10, rng=0)
    assert c.edges.tolist() == [1.5, 2.0 - 1 / 6, 2.0 + 1 / 6, 2.5] and c.dof == 0 and math.isnan(c.p_value)


@pytest.mark.parametrize("kwargs, match", [
    ({"bins": 1}, r"^bins: expected an integer >= 2, got 1"),
    ({"bins": 2.5}, r"^bins: expected an integer >= 2"),
    ({"n_boot": 9}, r"^n_boot: expected an integer >= 10, got 9"),
    ({"block_factor": 0.0}, r"^block_factor: expected a finite number > 0"),
    ({"blocks": (0, None)}, r"^blocks\[0\]: expected an integer >= 1, got 0"),
    ({"blocks": (None, 500)}, r"^blocks\[1\]: 500 leaves the shortest chain \(100 configurations\) fewer than 2"),
    # one block per chain: the bootstrap failed later with a message about `bin_size` (user probe)
    ({"blocks": (100, None)}, r"^blocks\[0\]: 100 leaves .* fewer than 2 blocks; expected at most 50"),
    ({"blocks": 5}, r"^blocks=5: expected a pair"),
])
def test_bad_arguments_are_refused(kwargs, match) -> None:
    x = np.random.default_rng(0).normal(size=100)
    with pytest.raises(ValueError, match=match):
        compare_histograms(x, x, rng=0, **kwargs)


def test_bad_data_are_refused() -> None:
    x = np.random.default_rng(0).normal(size=100)
    with pytest.raises(ValueError, match=r"^b: contains NaN"):
        compare_histograms(x, np.where(x > 1, np.nan, x), rng=0)
    with pytest.raises(ValueError, match=r"^a: expected one value per configuration .* got shape \(2, 50\)"):
        compare_histograms(x.reshape(2, 50), x, rng=0)
    with pytest.raises(ValueError, match=r"^data: 1 value\(s\) outside the edges"):
        density_histogram(np.append(x, 99.0), histogram_edges(x, x), rng=0, n_boot=10)
    with pytest.raises(ValueError, match=r"^edges: expected at least 3 finite, strictly increasing"):
        density_histogram(x, [0.0, 1.0], rng=0, n_boot=10)
    with pytest.raises(TypeError, match=r"^rng: expected a numpy.random.Generator or an integer seed"):
        density_histogram(x, histogram_edges(x, x), rng=None, n_boot=10)


def test_p_values_of_equal_autocorrelated_chains_are_calibrated():
    """60 pairs of independent AR(1) chains (rho = 0.9, tau_int = 9.5, 8000 steps) of the same law: a calibrated
    test gives p < 0.01 for 0.6 of them and p < 0.05 for 3 (binomial sd 0.8 and 1.7); the bounds 2 and 6 are about
    2 sd above. With chi2.sf(sum r^2, dof) (bins' correlation ignored, blocks from the observable's tau_int and
    10% short of variance) 5 and 8 of these fixed-seed pairs fell below 0.01 and 0.05; now 0 and 4."""
    def ar1(n, rho, rng):
        eta = rng.standard_normal(n)
        x, _ = signal.lfilter([np.sqrt(1 - rho ** 2)], [1.0, -rho], eta, zi=[rho * rng.standard_normal()])
        return x

    ps = []
    for k in range(60):
        rng = np.random.default_rng(1000 + k)
        c = compare_histograms(ar1(8000, 0.9, rng), ar1(8000, 0.9, rng), bins=20, n_boot=200, rng=k)
        assert c.dof_effective is not None and 1 <= c.dof_effective < c.dof   # the residuals are correlated
        ps.append(c.p_value)
    ps = np.asarray(ps)
    assert int(np.sum(ps < 0.01)) <= 2 and int(np.sum(ps < 0.05)) <= 6, np.sort(ps)[:8]


def _functions_of_normal_draws(seed: int, n: int = 2000) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """x, |x| and x^2 of n standard normal draws, for two independent ensembles of the same law."""
    rng = np.random.default_rng(seed)
    x, y = rng.standard_normal(n), rng.standard_normal(n)
    return {"x": x, "|x|": np.abs(x), "x^2": x ** 2}, {"x": y, "|x|": np.abs(y), "x^2": y ** 2}


def test_joint_total_of_correlated_observables_is_calibrated():
    """60 pairs of equally distributed ensembles of three strongly correlated observables (x, |x|, x^2 of the same
    iid draws). The standardised total z = (chi^2 - dof) / sqrt(2 dof^2 / h) has unit variance when h is right.
    Summing the observables' variances as if independent (combine_chi2, h ~ 27 of 30) gives var z = 1.57 on these
    fixed seeds (the p-values run low); the joint bootstrap (h ~ 14) gives 0.85. The sample variance of 60 values
    of z has a standard deviation of about 0.2, so the bounds [0.55, 1.45] are ~2 sd; the negative control (> 1.3)
    fails for the joint estimate. 200 pairs (20 bins, 4000 draws): 3.0% below 0.05 (joint) against 10.5%
    (independent); AR(1) chains (tau 9.5): 6.0% against 10.0%."""
    z_joint, z_ind, p_joint = [], [], []
    for k in range(60):
        fa, fb = _functions_of_normal_draws(2000 + k)
        cs = {n: compare_histograms(fa[n], fb[n], bins=10, n_boot=100, rng=3 * k + i) for i, n in enumerate(fa)}
        ind, tot = combine_chi2(cs.values()), joint_chi2(cs, fa, fb, rng=k, n_boot=100)
        assert (tot.chi2, tot.dof) == (ind.chi2, ind.dof) and tot.dof_effective < 0.7 * ind.dof_effective
        z_joint.append((tot.chi2 - tot.dof) / math.sqrt(2 * tot.dof ** 2 / tot.dof_effective))
        z_ind.append((ind.chi2 - ind.dof) / math.sqrt(2 * ind.dof ** 2 / ind.dof_effective))
        p_joint.append(tot.p_value)
    assert 0.55 < np.var(z_joint, ddof=1) < 1.45 and np.var(z_ind, ddof=1) > 1.3, (np.var(z_joint), np.var(z_ind))
    assert int(np.sum(np.asarray(p_joint) < 0.05)) <= 6   # 3 expected (sd 1.7)


def test_joint_total_reduces_to_the_independent_sum_and_keeps_its_power():
    """One observable: exactly combine_chi2. Independent observables (x and an unrelated draw z): the cross
    correlations are sampling noise, removed by the bias correction, so h stays within 10% of the independent
    sum's. A shifted observable is still found (p < 1e-6)."""
    fa, fb = _functions_of_normal_draws(5)
    c = compare_histograms(fa["x"], fb["x"], bins=10, n_boot=200, rng=1)
    assert joint_chi2({"x": c}, fa, fb, rng=0, n_boot=200) == combine_chi2([c])
    rng = np.random.default_rng(6)
    fa["z"], fb["z"] = rng.standard_normal(2000), rng.standard_normal(2000)
    cs = {n: compare_histograms(fa[n], fb[n], bins=10, n_boot=200, rng=i) for i, n in enumerate(("x", "z"))}
    tot, ind = joint_chi2(cs, fa, fb, rng=2, n_boot=200), combine_chi2(cs.values())
    assert 0.9 * ind.dof_effective <= tot.dof_effective <= ind.dof_effective + 1e-9, (tot, ind)
    fb["z"] = fb["z"] + 0.3
    cs["z"] = compare_histograms(fa["z"], fb["z"], bins=10, n_boot=200, rng=1)
    assert joint_chi2(cs, fa, fb, rng=2, n_boot=200).p_value < 1e-6


def test_joint_total_refuses_series_of_other_configurations():
    fa, fb = _functions_of_normal_draws(7, n=400)
    cs = {n: compare_histograms(fa[n], fb[n], bins=5, n_boot=20, rng=0) for n in ("x", "|x|")}
    with pytest.raises(ValueError, match=r"^b: no series for 'x' \(expected one per comparison\)"):
        joint_chi2(cs, fa, {"|x|": fb["|x|"]}, rng=0, n_boot=20)
    short = dict(fa, **{"|x|": [fa["|x|"][:200], fa["|x|"][200:]]})
    with pytest.raises(ValueError, match=r"^a: '\|x\|' has chains of \[200, 200\] configurations, 'x' of \[400\]"):
        joint_chi2(cs, short, fb, rng=0, n_boot=20)
    with pytest.raises(ValueError, match=r"^n_boot: expected an integer >= 10"):
        joint_chi2(cs, fa, fb, rng=0, n_boot=5)


def test_a_chain_of_one_configuration_is_refused_up_front() -> None:
    """The blocked bootstrap resamples within each chain: a chain of one configuration failed inside it with a
    message about `bin_size`, an argument the user never passed (block_length skips such a chain: it only
    estimates tau_int from the others)."""
    rng = np.random.default_rng(0)
    chains = [rng.normal(size=500), rng.normal(size=1)]
    block, tau, ok = block_length(chains)
    assert (block, ok) == (1, True)
    assert_close(tau, block_length(chains[0])[1], rtol=0, atol=0)
    msg = "a chain of 1 configuration; the blocked bootstrap needs at least 2 per chain"
    with pytest.raises(ValueError, match=rf"^data\[1\]: {msg}"):
        density_histogram(chains, np.linspace(-4, 4, 9), rng=1, n_boot=50)
    with pytest.raises(ValueError, match=rf"^data: {msg}"):
        density_histogram(np.array([0.5]), np.linspace(-4, 4, 9), rng=1, n_boot=50)
    with pytest.raises(ValueError, match=rf"^a\[1\]: {msg}"):
        compare_histograms(chains, rng.normal(size=500), bins=8, n_boot=50, rng=1)
    with pytest.raises(ValueError, match=rf"^b\[0\]: {msg}"):
        compare_histograms(rng.normal(size=500), chains[::-1], bins=8, n_boot=50, rng=1)
    fa, fb = _functions_of_normal_draws(7, n=400)
    cs = {n: compare_histograms(fa[n], fb[n], bins=5, n_boot=20, rng=0) for n in ("x", "|x|")}
    split = {n: [fa[n][:399], fa[n][399:]] for n in ("x", "|x|")}
    with pytest.raises(ValueError, match=rf"^a\['x'\]\[1\]: {msg}"):
        joint_chi2(cs, split, fb, rng=0, n_boot=20)
    # two configurations per chain are enough (blocks of 1)
    h = density_histogram([chains[0], rng.normal(size=2)], np.linspace(-5, 5, 9), rng=1, n_boot=50)
    assert h.n == 502 and h.n_chains == 2 and h.block == 1
