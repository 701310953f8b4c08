"""Tests of Wolff's Gamma method against processes with known autocorrelation.

All random data come from fixed seeds, so every test is deterministic; the
tolerances are statistical (a few standard deviations of the quantity's own
error estimate) so that a wrong formula (a factor of 2 in tau_int, a missing
sqrt, a wrong gradient) fails, while the correct one passes for any seed with
overwhelming probability.
"""

import warnings

import numpy as np
import pytest
from scipy.signal import lfilter

from latticekit.analysis import GammaResult, autocovariance, gamma_method
from latticekit.testing import assert_close


def ar1(rho, n, rng, batch=()):
    """Stationary AR(1): x_0 ~ N(0,1), x_{t+1} = rho x_t + sqrt(1-rho^2) eta_t.

    Unit variance, Gamma(t) = rho^|t|, exact tau_int = (1/2)(1+rho)/(1-rho).
    """
    eta = rng.standard_normal(batch + (n,))
    c = np.sqrt(1.0 - rho**2)
    y = lfilter([c], [1.0, -rho], eta, axis=-1)  # y_0 = c eta_0
    return y + (1.0 - c) * eta[..., :1] * rho ** np.arange(n)  # x_0 = eta_0


def tau_exact(rho):
    return 0.5 * (1.0 + rho) / (1.0 - rho)


def var_of_mean_exact(rho, n):
    """Exact Var(mean of n values) = (1/n)[1 + 2 sum_{t<n} (1 - t/n) rho^t]."""
    t = np.arange(1, n)
    return (1.0 + 2.0 * np.sum((1.0 - t / n) * rho**t)) / n


def test_ar1_generator_is_stationary_with_right_autocorrelation():
    x = ar1(0.7, 200_000, np.random.default_rng(0))
    g = autocovariance([x - x.mean()], 3)
    # sampling error of Gamma(t) ~ sqrt(2 tau_int / N) ~ 0.008
    assert_close(g, 0.7 ** np.arange(4), rtol=1e-7, atol=0.04)


@pytest.mark.parametrize("rho,seed", [(0.5, 1), (0.8, 2), (0.9, 3)])
def test_tau_int_ar1_within_own_error(rho, seed):
    n = 200_000
    x = ar1(rho, n, np.random.default_rng(seed))
    r = gamma_method(x)
    assert isinstance(r, GammaResult)
    # 4 sigma of the method's own error estimate ([W] eq. 42): a correct
    # estimator fails with probability ~6e-5; the truncation bias of the window
    # (rho^W / (1 - rho) < 1e-2 here) is far below sigma (~0.05-0.3).
    assert abs(r.tau_int - tau_exact(rho)) < 4 * r.tau_int_error
    # the error estimate is meaningful (not huge): relative error of tau ~ sqrt(W/N)
    assert r.tau_int_error < 0.1 * tau_exact(rho)
    # error of the mean against the exact variance of the mean, within 4 of its own
    # error-of-error; and the mean is compatible with 0 within 4 sigma.
    exact_err = np.sqrt(var_of_mean_exact(rho, n))
    assert abs(r.error - exact_err) < 4 * r.error_error
    assert abs(r.value) < 4 * exact_err
    # window ~ a few tau_int, well inside the chain
    assert tau_exact(rho) < r.window < n // 100
    # normalised autocorrelation function: rho(0) = 1, rho(1) ~ rho
    assert r.rho[0] == 1.0
    assert abs(r.rho[1] - rho) < 0.02


def test_tau_int_iid_is_one_half():
    x = np.random.default_rng(4).standard_normal(200_000)
    r = gamma_method(x)
    assert abs(r.tau_int - 0.5) < 4 * max(r.tau_int_error, 1 / np.sqrt(x.size))
    # for iid data the error is the naive standard error (up to O(W/N) and the
    # small variance of the tau estimate)
    assert_close(r.error, x.std(ddof=1) / np.sqrt(x.size), rtol=0.02, atol=0)


def test_error_calibration_over_many_chains():
    """Spread of the means of 400 independent chains vs the estimated errors.

    std over 400 chains has relative precision 1/sqrt(2*399) = 3.5%; tolerance
    12% (3.4 sigma) also absorbs the O(tau/N) bias of the Gamma error.
    """
    rho, n, b = 0.6, 5000, 400
    x = ar1(rho, n, np.random.default_rng(5), batch=(b,))
    r = gamma_method(x)
    assert r.value.shape == (b,) and r.error.shape == (b,) and r.window.shape == (b,)
    assert r.rho.shape == (b, n // 2 + 1)
    spread = np.std(r.value, ddof=1)
    rms_err = np.sqrt(np.mean(r.error**2))
    assert abs(rms_err / spread - 1) < 0.12
    assert abs(rms_err / np.sqrt(var_of_mean_exact(rho, n)) - 1) < 0.05
    tau = np.mean(r.tau_int)
    assert abs(tau - tau_exact(rho)) < 4 * np.std(r.tau_int, ddof=1) / np.sqrt(b) + 0.05


def test_batch_equals_loop():
    x = ar1(0.5, 3000, np.random.default_rng(6), batch=(2, 3))
    r = gamma_method(x)
    for i in range(2):
        for j in range(3):
            s = gamma_method(x[i, j])
            assert s.window == r.window[i, j]
            assert_close([s.value, s.error, s.tau_int, s.tau_int_error],
                         [r.value[i, j], r.error[i, j], r.tau_int[i, j], r.tau_int_error[i, j]], rtol=1e-12, atol=0)


def test_replica_of_different_lengths():
    rho = 0.8
    rng = np.random.default_rng(7)
    reps = [ar1(rho, n, rng) for n in (120_000, 60_000, 30_000)]
    r = gamma_method(reps)
    assert r.n == 210_000 and r.n_replica == 3
    assert abs(r.tau_int - tau_exact(rho)) < 4 * r.tau_int_error
    exact_err = np.sqrt(var_of_mean_exact(rho, r.n))  # independent chains: ~ same
    assert abs(r.error - exact_err) < 4 * r.error_error + 0.02 * exact_err
    # Gamma(t) is normalised by N - R t: a single replica equals the plain chain
    s1, s2 = gamma_method([reps[0]]), gamma_method(reps[0])
    assert s1.error == s2.error and s1.tau_int == s2.tau_int


def test_replica_are_not_concatenated():
    """Two replica must not correlate across their boundary."""
    a = np.tile([1.0, -1.0], 50)
    r_split = gamma_method([a, -a], S=0)
    g = autocovariance([a - 0.0, -a - 0.0], 1)
    assert_close(g, [1.0, -1.0], rtol=1e-7, atol=0)  # the joint series would give rho(1) != -1 at the seam
    assert r_split.n == 200


def test_derived_ratio_against_delta_method():
    """Ratio of means of correlated iid Gaussians vs the exact delta method.

    Var(r) = (1/N) grad^T C grad with grad = (1/mu_y, -mu_x/mu_y^2). The estimate
    of an error from N = 2e5 iid samples has relative precision ~1/sqrt(2N) = 0.16%;
    2% tolerance (>10 sigma) also covers O(1/N) nonlinearity of the ratio.
    """
    n = 200_000
    mx, my, sx, sy, c = 2.0, 5.0, 1.0, 0.5, 0.6
    rng = np.random.default_rng(8)
    z1, z2 = rng.standard_normal((2, n))
    data = np.stack([mx + sx * z1, my + sy * (c * z1 + np.sqrt(1 - c**2) * z2)])
    gx, gy = 1 / my, -mx / my**2
    exact = np.sqrt((gx**2 * sx**2 + gy**2 * sy**2 + 2 * gx * gy * c * sx * sy) / n)
    r = gamma_method(data, lambda a: a[0] / a[1])
    assert_close(r.error, exact, rtol=0.02, atol=0)
    assert abs(r.value - mx / my) < 4 * exact
    assert abs(r.tau_int - 0.5) < 4 * max(r.tau_int_error, 1 / np.sqrt(n))
    # analytic gradient gives the same as UWerr's numerical one
    ra = gamma_method(data, lambda a: a[0] / a[1], grad=lambda a: np.stack([1 / a[1], -a[0] / a[1] ** 2]))
    assert_close(ra.error, r.error, rtol=1e-6, atol=0)
    # a primary observable through func = identity reproduces the primary analysis
    ri = gamma_method(data[:1], lambda a: a[0])
    rp = gamma_method(data[0])
    assert_close([ri.error, ri.tau_int], [rp.error, rp.tau_int], rtol=1e-8, atol=0)


def test_derived_autocorrelated_product():
    """F = <x> * <y> for two independent AR(1) chains: the error follows the gradient."""
    n = 200_000
    rng = np.random.default_rng(9)
    x = 3.0 + ar1(0.8, n, rng)
    y = -1.0 + ar1(0.5, n, rng)
    r = gamma_method(np.stack([x, y]), lambda a: a[0] * a[1])
    exact = np.sqrt(1.0**2 * var_of_mean_exact(0.8, n) + 3.0**2 * var_of_mean_exact(0.5, n))
    assert abs(r.error - exact) < 4 * r.error_error + 0.01 * exact
    assert abs(r.value + 3.0) < 4 * exact


def test_derived_batched():
    rng = np.random.default_rng(10)
    d = rng.normal(1.0, 0.1, size=(2, 4, 1000)) + np.array([0.0, 1.0])[:, None, None]
    r = gamma_method(d, lambda a: a[0] / a[1])
    assert r.value.shape == (4,) and r.error.shape == (4,)
    for k in range(4):
        assert_close(gamma_method(d[:, k], lambda a: a[0] / a[1]).error, r.error[k], rtol=1e-10, atol=0)


def test_S_zero_is_naive_error():
    x = ar1(0.9, 10_000, np.random.default_rng(11))
    r = gamma_method(x, S=0)
    assert r.window == 0
    assert_close(r.tau_int, 0.5, rtol=1e-6, atol=0)
    # bias-corrected Gamma(0)(1 + 1/N) = sum d^2 (N+1)/N^2 = naive variance to O(1/N^2)
    assert_close(r.error, x.std(ddof=1) / np.sqrt(x.size), rtol=1e-6, atol=0)


def test_constant_series():
    r = gamma_method(np.full(50, 3.25))
    assert (r.value, r.error, r.tau_int, r.window) == (3.25, 0.0, 0.5, 0)
    r = gamma_method(np.stack([np.full(50, 2.0), np.full(50, 4.0)]), lambda a: a[0] / a[1])
    assert r.value == 0.5 and r.error == 0.0


def test_strongly_correlated_short_chain_window_inside_range():
    x = ar1(0.999, 60, np.random.default_rng(12))
    r = gamma_method(x)
    assert 1 <= r.window <= 30 and not r.windowing_failed
    assert r.tau_int > 1.0  # visibly correlated; the exact 999.5 is unreachable with N = 60


def test_bad_input_messages():
    with pytest.raises(ValueError, match="S"):
        gamma_method(np.zeros(10), S=-1)
    with pytest.raises(TypeError, match="complex"):
        gamma_method(np.zeros(10, complex))
    with pytest.raises(ValueError, match="func"):
        gamma_method(np.ones((2, 3, 10)), lambda a: a.sum())
    with pytest.raises(ValueError, match=r"data\[1\]"):
        gamma_method([np.ones((2, 10)), np.ones((3, 10))])
    with pytest.raises(ValueError, match="NaN"):
        gamma_method(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="at least 2"):
        gamma_method(np.ones(1))


def test_torch_input():
    torch = pytest.importorskip("torch", reason="torch not installed: backend input check skipped")
    x = ar1(0.5, 5000, np.random.default_rng(13))
    r_np = gamma_method(x)
    r_t = gamma_method(torch.from_numpy(x))
    assert r_t.error == r_np.error and r_t.tau_int == r_np.tau_int


# ---------------------------------------------------------------- pyerrors
def _pe():
    return pytest.importorskip(
        "pyerrors", reason="pyerrors not installed: cross-check of the Gamma method skipped"
    )


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.9])
def test_cross_check_pyerrors_primary(rho):
    pe = _pe()
    x = ar1(rho, 50_000, np.random.default_rng(14))
    r = gamma_method(x, S=1.5)
    o = pe.Obs([x], ["ens"])
    o.gamma_method(S=1.5)
    assert r.window == o.e_windowsize["ens"]
    # same value and error: identical formulas (C_F (1 + (2W+1)/N) / N)
    assert_close(r.value, o.value, rtol=1e-12, atol=1e-15)
    if rho == 0.0:
        # pyerrors clamps tau_int(W) to >= 1/2 before forming the error; UWerr (and we)
        # allow tau_int(W) < 1/2 (here the first sample autocorrelation is negative)
        assert r.tau_int < 0.5 <= o.e_tauint["ens"]
        assert_close(r.error, o.dvalue, rtol=2e-2, atol=0)
        return
    assert_close(r.error, o.dvalue, rtol=1e-10, atol=0)
    # tau_int: pyerrors approximates the bias factor by (1+(2W+1)/N)/(1+1/N); ours is
    # exact, C/(2 Gamma_c(0)); they differ at O(tau/N) ~ 1e-4.
    assert_close(r.tau_int, o.e_tauint["ens"], rtol=1e-3, atol=0)
    assert_close(r.tau_int_error, o.e_dtauint["ens"], rtol=1e-2, atol=0)


def test_cross_check_pyerrors_derived():
    pe = _pe()
    rng = np.random.default_rng(15)
    x = 2.0 + ar1(0.7, 40_000, rng)
    y = 5.0 + 0.5 * ar1(0.3, 40_000, rng) + 0.2 * x
    r = gamma_method(np.stack([x, y]), lambda a: a[0] / a[1])
    q = pe.Obs([x], ["ens"]) / pe.Obs([y], ["ens"])
    q.gamma_method(S=1.5)
    assert_close(r.value, q.value, rtol=1e-12, atol=0)
    assert_close(r.error, q.dvalue, rtol=1e-6, atol=0)  # numerical vs autograd gradient
    assert r.window == q.e_windowsize["ens"]


def test_cross_check_pyerrors_replica():
    pe = _pe()
    rng = np.random.default_rng(16)
    reps = [ar1(0.8, 30_000, rng), ar1(0.8, 20_000, rng)]
    r = gamma_method(reps)
    o = pe.Obs(reps, ["ens|r0", "ens|r1"])
    o.gamma_method(S=1.5)
    assert_close(r.value, o.value, rtol=1e-12, atol=1e-15)
    # pyerrors subtracts each replica's own mean, Wolff (and we) the global mean:
    # the difference is O(R tau / N) relative, well below 3%.
    assert_close(r.error, o.dvalue, rtol=3e-2, atol=0)
    assert_close(r.tau_int, o.e_tauint["ens"], rtol=5e-2, atol=0)


def test_no_warnings_for_normal_use():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gamma_method(ar1(0.5, 10_000, np.random.default_rng(17)))


def test_a_short_replica_does_not_cap_the_window_of_the_others():
    """Gamma(t) at lags beyond a short replica comes from the longer ones; the window is not capped at half the
    shortest replica (the error of a tau_int = 9.5 chain fell 2x with a 4-measurement replica added)."""
    rng = np.random.default_rng(21)
    a = ar1(0.9, 20_000, rng)
    alone, both = gamma_method(a), gamma_method([a, ar1(0.9, 4, rng)])
    assert both.window > 2 and both.window == alone.window
    # four more measurements of 20,000: the same error to O(4/N)
    assert_close(both.error, alone.error, rtol=2e-3, atol=0)
    assert_close(both.tau_int, alone.tau_int, rtol=2e-3, atol=0)
    assert both.rho.shape[-1] == 20_000 // 2 + 1


@pytest.mark.parametrize("lengths", [(2,), (5,), (40,), (3, 7)])
def test_S0_gives_the_naive_error_exactly(lengths):
    rng = np.random.default_rng(22)
    reps = [rng.standard_normal(n) + 3.0 for n in lengths]
    x = np.concatenate(reps)
    r = gamma_method(reps if len(reps) > 1 else reps[0], S=0)
    assert r.window == 0
    assert_close(r.error, x.std(ddof=1) / np.sqrt(x.size), rtol=1e-13, atol=0)
    assert_close(r.tau_int, 0.5, rtol=1e-13, atol=0)


def test_func_and_grad_must_be_callable():
    x = np.random.default_rng(23).standard_normal((2, 50)) + 3
    with pytest.raises(TypeError, match="grad: expected a callable"):
        gamma_method(x, lambda a: a[0] / a[1], grad=np.ones(2))
    with pytest.raises(TypeError, match="func: expected a callable"):
        gamma_method(x, np.ones(2))


def test_bad_arguments_are_named():
    """Errors that named no argument (an ufunc TypeError, a broadcasting error, 'int' object is not callable,
    IndexError ...) or silently broadcast a wrong gradient; and autocovariance beyond the longest replica
    (it returned inf)."""
    from latticekit.analysis import blocking_analysis, bootstrap, jackknife, reweight

    x = np.arange(10.0)
    for bad in ("1.5", None, True):
        with pytest.raises(TypeError, match=r"^S: expected a finite number >= 0"):
            gamma_method(x, S=bad)
    gamma_method(x, S=np.float32(1.5))            # any real number type
    two = np.ones((2, 3, 50)) + np.arange(50)
    for grad in (lambda a: np.ones(2), lambda a: 1.0, lambda a: np.ones((1, 3)), lambda a: np.ones((2, 3, 1))):
        with pytest.raises(ValueError, match=r"^grad: expected output of shape \(2, 3\)"):
            gamma_method(two, lambda a: a[0] / a[1], grad=grad)
    with pytest.raises(TypeError, match=r"^func: expected a callable"):
        jackknife(np.ones((2, 10)), func=3)
    with pytest.raises(TypeError, match=r"^func: expected a callable"):
        bootstrap(np.ones((2, 10)), func=3, rng=1)
    with pytest.raises(TypeError, match=r"^func: expected a callable"):
        blocking_analysis(np.ones((2, 10)), func=3)
    with pytest.raises(TypeError, match=r"^bin_sizes: expected a sequence of positive integers, got 4"):
        blocking_analysis(x, bin_sizes=4)
    with pytest.raises(ValueError, match=r"^bin_sizes\[1\]: expected a positive integer, got 0"):
        blocking_analysis(x, bin_sizes=[1, 0])
    with pytest.raises(ValueError, match=r"^obs: expected an array \(\*B, N\) .* got a scalar"):
        reweight(1.0, np.zeros(5))
    d = np.array([1.0, -1.0, 1.0, -1.0])
    with pytest.raises(TypeError, match=r"^deltas: expected a list or tuple of arrays"):
        autocovariance(d, 2)
    with pytest.raises(ValueError, match=r"^deltas: empty list"):
        autocovariance([], 1)
    with pytest.raises(ValueError, match=r"^deltas\[1\]: leading shape \(2,\) differs"):
        autocovariance([d, np.ones((2, 4))], 1)
    with pytest.raises(ValueError, match=r"^deltas\[0\]: expected an array"):
        autocovariance([np.float64(1.0)], 0)
    for lag in (4, 6, -1):
        with pytest.raises(ValueError, match=rf"^max_lag: expected 0 <= max_lag < 4 \(the longest replica\), "
                                             rf"got {lag}"):
            autocovariance([d, d[:2]], lag)
    with pytest.raises(TypeError, match=r"^max_lag: expected an integer"):
        autocovariance([d], 1.0)
    assert_close(autocovariance((d, d[:2]), 3), np.array([1.0, -1.0, 1.0, -1.0]), rtol=1e-12, atol=1e-15)
