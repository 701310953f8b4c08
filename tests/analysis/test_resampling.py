"""Jackknife, bootstrap and blocking analysis: exact identities and statistical checks.

Fixed seeds make every test deterministic; tolerances are stated in units of the
known sampling error of the quantity tested.
"""

import numpy as np
import pytest
from scipy.signal import lfilter

from latticekit.analysis import (
    BlockingResult,
    ResamplingResult,
    bin_series,
    blocking_analysis,
    bootstrap,
    gamma_method,
    jackknife,
)
from latticekit.testing import assert_close


def ar1(rho, n, rng, batch=()):
    """Stationary unit-variance AR(1), exact tau_int = (1/2)(1+rho)/(1-rho)."""
    eta = rng.standard_normal(batch + (n,))
    c = np.sqrt(1.0 - rho**2)
    y = lfilter([c], [1.0, -rho], eta, axis=-1)
    return y + (1.0 - c) * eta[..., :1] * rho ** np.arange(n)


def correlated_pair(n, rng, mx=2.0, my=5.0, sx=1.0, sy=0.5, c=0.6):
    """iid samples of (X, Y) with correlation c, and the exact delta-method error of <X>/<Y>."""
    z1, z2 = rng.standard_normal((2, n))
    data = np.stack([mx + sx * z1, my + sy * (c * z1 + np.sqrt(1 - c**2) * z2)])
    gx, gy = 1 / my, -mx / my**2
    exact = np.sqrt((gx**2 * sx**2 + gy**2 * sy**2 + 2 * gx * gy * c * sx * sy) / n)
    return data, exact


def ratio(a):
    return a[0] / a[1]


def test_jackknife_mean_equals_naive_error_exactly():
    x = np.random.default_rng(0).exponential(size=(3, 1001))
    r = jackknife(x)
    assert isinstance(r, ResamplingResult) and r.method == "jackknife"
    assert_close(r.value, x.mean(-1), rtol=1e-14, atol=0)
    assert_close(r.error, x.std(-1, ddof=1) / np.sqrt(x.shape[-1]), rtol=1e-12, atol=0)
    assert_close(r.bias, 0.0, rtol=0, atol=1e-12)  # the mean is unbiased
    assert r.samples.shape == (3, 1001)


def test_jackknife_binned_equals_naive_error_of_bin_means():
    x = np.random.default_rng(1).standard_normal(1000)
    r = jackknife(x, bin_size=10)
    b = x.reshape(100, 10).mean(-1)
    assert r.n_bins == 100 and r.bin_size == 10
    assert_close(r.error, b.std(ddof=1) / 10, rtol=1e-12, atol=0)


def test_jackknife_linear_func_equals_primary():
    x = np.random.default_rng(2).standard_normal((2, 500))
    r = jackknife(x, lambda a: 2 * a[0] - 3 * a[1])
    p = jackknife(2 * x[0] - 3 * x[1])
    assert_close([r.value, r.error], [p.value, p.error], rtol=1e-12, atol=0)


def test_jackknife_and_bootstrap_ratio_against_delta_method():
    # error of an error from N = 1e5 iid samples: ~1/sqrt(2N) = 0.2% (jackknife);
    # bootstrap with 1000 samples adds 1/sqrt(2*1000) = 2.2%: tolerances 2% / 8%.
    data, exact = correlated_pair(100_000, np.random.default_rng(3))
    jk = jackknife(data, ratio)
    assert_close(jk.error, exact, rtol=0.02, atol=0)
    assert abs(jk.value - 0.4) < 4 * exact
    bs = bootstrap(data, ratio, rng=4, n_boot=1000)
    assert_close(bs.error, exact, rtol=0.08, atol=0)
    assert bs.value == jk.value and bs.samples.shape == (1000,)
    # the three estimators agree with each other
    gm = gamma_method(data, ratio)
    assert_close(jk.error, gm.error, rtol=0.01, atol=0)


def test_jackknife_bias_of_nonlinear_function():
    """Bias of <x>^2 is Var(x)/N; the jackknife estimates it (exactly, for this f)."""
    x = np.random.default_rng(5).normal(1.0, 2.0, size=400)
    r = jackknife(x[None], lambda a: a[0] ** 2)
    assert_close(r.bias, x.var(ddof=1) / x.size, rtol=1e-10, atol=0)


def test_bootstrap_reproducible_and_seeded():
    x = np.random.default_rng(6).standard_normal(5000)
    a = bootstrap(x, rng=7, n_boot=300)
    b = bootstrap(x, rng=np.random.default_rng(7), n_boot=300)
    c = bootstrap(x, rng=8, n_boot=300)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    # iid: bootstrap error = naive error within 4/sqrt(2*300) = 16%
    assert abs(a.error / (x.std(ddof=1) / np.sqrt(x.size)) - 1) < 0.16
    with pytest.raises(TypeError, match="rng"):
        bootstrap(x, rng=None)
    try:
        from latticekit.backends import rng as lk_rng
    except ImportError:
        pass
    else:  # the library's own generator is accepted and reproducible
        d = bootstrap(x, rng=lk_rng(3), n_boot=50)
        np.testing.assert_array_equal(d.samples, bootstrap(x, rng=lk_rng(3), n_boot=50).samples)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap(x, rng=1, n_boot=1)


def test_bootstrap_chunking_is_invisible(monkeypatch):
    import latticekit.analysis.resampling as rs

    x = np.random.default_rng(9).standard_normal((2, 997))
    full = bootstrap(x, rng=10, n_boot=50)
    monkeypatch.setattr(rs, "_CHUNK_ENTRIES", 3000)  # 3 samples per chunk
    chunked = bootstrap(x, rng=10, n_boot=50)
    assert_close(chunked.samples, full.samples, rtol=1e-13, atol=0)


def test_binning_recovers_autocorrelated_error():
    """Jackknife/bootstrap with bins >> tau_int match the Gamma method and the exact error.

    AR(1) rho = 0.8 (tau_int = 4.5), N = 2e5, bins of 200 -> 1000 bins: relative
    precision of a binned error ~1/sqrt(2000) = 2.2% plus the O(tau/b) = 2% bias of
    binning; tolerance 10%.
    """
    rho, n = 0.8, 200_000
    x = ar1(rho, n, np.random.default_rng(11))
    t = np.arange(1, n)
    exact = np.sqrt((1 + 2 * np.sum((1 - t / n) * rho**t)) / n)
    naive = jackknife(x).error
    assert naive < 0.4 * exact  # unbinned errors are badly underestimated
    binned = jackknife(x, bin_size=200).error
    boot = bootstrap(x, rng=12, bin_size=200, n_boot=1000).error
    assert abs(binned / exact - 1) < 0.10
    assert abs(boot / exact - 1) < 0.12


def test_replica_bins_do_not_straddle():
    rng = np.random.default_rng(13)
    reps = [rng.standard_normal(10), rng.standard_normal(11)]
    r = jackknife(reps, bin_size=3)
    assert r.n_bins == 6  # 3 + 3, remainders dropped per replica
    assert_close(r.value, np.concatenate(reps).mean(), rtol=1e-7, atol=0)
    expected_bins = np.concatenate([bin_series(reps[0], 3), bin_series(reps[1], 3)])
    assert_close(r.error, expected_bins.std(ddof=1) / np.sqrt(6), rtol=1e-12, atol=0)
    b = bootstrap(reps, rng=1, bin_size=3, n_boot=20)
    assert b.n_bins == 6 and b.samples.shape == (20,)


def test_bin_series_and_errors():
    np.testing.assert_array_equal(bin_series(np.arange(7.0), 3), [1.0, 4.0])
    np.testing.assert_array_equal(bin_series(np.arange(12.0).reshape(2, 6), 2), [[0.5, 2.5, 4.5], [6.5, 8.5, 10.5]])
    with pytest.raises(ValueError, match="bin_size"):
        bin_series(np.arange(5.0), 0)
    with pytest.raises(ValueError, match="bin_size"):
        bin_series(np.arange(5.0), 6)
    with pytest.raises(ValueError, match="bin_size"):
        jackknife(np.arange(5.0), bin_size=5)  # one bin only
    with pytest.raises(ValueError, match="func"):
        jackknife(np.ones((2, 3, 10)), lambda a: np.sum(a))


def test_blocking_analysis_plateau_at_tau_int():
    """Blocked tau_int estimate plateaus at the exact tau_int = 4.5 (AR(1), rho = 0.8).

    At bin size 256 (~780 bins) the relative error of an error is ~2.5%, so
    tau (~error^2) to 5%, plus a binning bias tau/b ~ 2%: tolerance 15%.
    """
    x = ar1(0.8, 200_000, np.random.default_rng(14))
    res = blocking_analysis(x)
    assert isinstance(res, BlockingResult)
    assert res.bin_sizes[0] == 1 and np.all(np.diff(res.bin_sizes) > 0)
    assert np.all(res.n_bins >= 16)
    assert_close(res.tau_int[0], 0.5, rtol=1e-6, atol=0)
    k = int(np.flatnonzero(res.bin_sizes == 256)[0])
    assert abs(res.tau_int[k] / 4.5 - 1) < 0.15
    assert np.all(np.diff(res.errors[:6]) > 0)  # error grows while bins < tau
    g = gamma_method(x)
    assert abs(res.errors[k] / g.error - 1) < 0.1
    r2 = blocking_analysis(x, bin_sizes=[1, 10, 100])
    np.testing.assert_array_equal(r2.bin_sizes, [1, 10, 100])
    assert r2.errors.shape == (3,)
    for bad in (0, 1, True, 2.0):     # min_bins=0 failed later with a message about the jackknife's bin_size
        with pytest.raises(ValueError, match=r"^min_bins: expected an integer >= 2"):
            blocking_analysis(x, min_bins=bad)


def test_blocking_batched_and_derived():
    data, _ = correlated_pair(4096, np.random.default_rng(15))
    res = blocking_analysis(data, ratio)
    assert res.errors.shape == res.bin_sizes.shape
    res_b = blocking_analysis(np.stack([data, data], axis=1), ratio)
    assert res_b.errors.shape == (2,) + res.bin_sizes.shape
    assert_close(res_b.errors[1], res.errors, rtol=1e-12, atol=0)


def test_torch_input():
    torch = pytest.importorskip("torch", reason="torch not installed: backend input check skipped")
    x = np.random.default_rng(16).standard_normal(100)
    assert jackknife(torch.from_numpy(x)).error == jackknife(x).error


@pytest.mark.parametrize("data, bin_size, where", [
    (np.arange(1.0), 1, "the series"),
    (np.arange(100.0), 60, "the series"),
    ([np.arange(50.0), np.arange(50.0)], 50, "replica 0"),
    ([np.arange(50.0), np.arange(10.0)], 6, "replica 1"),
])
def test_bootstrap_refuses_a_replica_of_one_bin(data, bin_size, where):
    """A replica of one bin is always redrawn as itself: it would add no variance (the error came out 0)."""
    with pytest.raises(ValueError, match=f"bin_size: {bin_size} leaves {where} with 1 bin"):
        bootstrap(data, rng=1, bin_size=bin_size)


def test_bias_of_linear_functions_is_zero_when_bins_leave_a_remainder():
    """With a bin size that does not divide N, the remainder is left out of the bins while ``value`` uses every
    measurement; the bias must compare like with like: zero for a mean and for a linear function (it was
    (K-1)(mean of kept - mean of all): 0.30 for this N = 10 series, about 3 errors)."""
    x = np.random.default_rng(3).standard_normal(10) + 5.0
    two = np.stack([x, 2.0 * x + 1.0])
    for r in (jackknife(x, bin_size=3), jackknife(two, lambda a: a[0] + a[1], bin_size=3),
              jackknife([x, x[:7]], bin_size=3)):
        assert_close(r.bias, 0.0, rtol=0, atol=1e-12, msg=r.method)
    # the bootstrap's is the mean of n_boot resampled means minus the kept mean: zero up to its Monte Carlo error
    # error / sqrt(n_boot) (about 0.01 here; the offset was 0.149); 4 of those
    for r in (bootstrap(x, rng=1, bin_size=3), bootstrap(two, lambda a: a[0] + a[1], rng=1, bin_size=3)):
        assert abs(r.bias) < 4 * r.error / np.sqrt(r.samples.shape[-1]), (r.bias, r.error)
    assert_close(jackknife(x, bin_size=3).value, x.mean(), rtol=1e-15, atol=0)   # the value still uses all 10
    # a non-linear function: the jackknife bias formula on the 3 bins of 3 measurements
    bins = x[:9].reshape(3, 3).mean(axis=1)
    loo = (bins.sum() - bins) / 2
    want = 2 * (np.mean(loo**2) - bins.mean() ** 2)
    assert_close(jackknife(np.stack([x]), lambda a: a[0] ** 2, bin_size=3).bias, want, rtol=1e-12, atol=0)


def test_blocking_default_bin_sizes_keep_min_bins_over_replica():
    """The jackknife counts sum_r N_r // b bins (bins never straddle replica); the default bin sizes promised
    ``min_bins`` but counted N // b: 10 replica of 31 got b = 16 with 10 bins, not 16."""
    reps = [np.random.default_rng(20 + r).standard_normal(31) for r in range(10)]
    res = blocking_analysis(reps)
    np.testing.assert_array_equal(res.bin_sizes, [1, 2, 4, 8])
    np.testing.assert_array_equal(res.n_bins, [310, 150, 70, 30])
    assert np.all(res.n_bins >= 16)
    res = blocking_analysis(reps, min_bins=30)
    np.testing.assert_array_equal(res.n_bins, [310, 150, 70, 30])
    res = blocking_analysis(reps, min_bins=31)
    np.testing.assert_array_equal(res.n_bins, [310, 150, 70])


def test_blocking_of_a_constant_series_is_gamma_methods_convention():
    """No fluctuation: errors 0 and tau_int 1/2 as gamma_method (was 0/0 = NaN, or a ratio of rounding errors
    of the mean of 0.1s), also with replica and for a derived quantity of constant inputs; a fluctuating batch
    entry beside it keeps its own values."""
    for data in (np.ones(64), np.full(64, 0.1), [np.full(40, 0.1), np.full(24, 0.1)]):
        res = blocking_analysis(data)
        g = gamma_method(data)
        assert_close(res.tau_int, np.full(res.bin_sizes.shape, g.tau_int), rtol=0, atol=0)
        assert_close(res.errors, np.zeros(res.bin_sizes.shape), rtol=0, atol=0)
    res = blocking_analysis(np.stack([np.full(64, 0.1), np.full(64, 3.0)]), ratio)
    assert_close(res.tau_int, np.full(res.bin_sizes.shape, 0.5), rtol=0, atol=0)
    x = np.random.default_rng(21).standard_normal(64)
    res = blocking_analysis(np.stack([np.full(64, 0.1), x]))
    assert_close(res.tau_int[0], np.full(res.bin_sizes.shape, 0.5), rtol=0, atol=0)
    assert_close(res.tau_int[1], blocking_analysis(x).tau_int, rtol=1e-12, atol=0)
    assert_close(res.errors[1], blocking_analysis(x).errors, rtol=1e-12, atol=0)
